// ClientConnection against lib/http's own server on real sockets: keep-alive reuse, a
// connection the server closed while idle, the whole-request timeout, Cancel from another
// thread, refused connections and a server certificate that does not verify.
#include "http/client_connection.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "http/server.h"
#include "support/test_pki.h"

namespace podgate::http {
namespace {

using ::testing::HasSubstr;
namespace bhttp = boost::beast::http;

class ClientConnectionTest : public ::testing::Test {
 protected:
  void StartServer(ServerOptions options = {}) {
    auto server = Server::Start(
        io_, options, [this](const Request& req, const RequestContext&, bool) -> RouteResult {
          RouteResult r;
          if (req.target() == "/never") {
            // Answers only at teardown: a receiver that hangs.
            r.deferred = [this](std::function<void(Response)> reply) {
              std::lock_guard<std::mutex> lock(mu_);
              pending_.push_back(std::move(reply));
              hung_.Notify();
            };
            return r;
          }
          std::string echo(req["X-Echo"]);
          r.response =
              MakeResponse(req, bhttp::status::ok, "text/plain",
                           std::string(req.method_string()) + " " + echo + " " + req.body());
          return r;
        });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (server_) {
      server_->Stop();
    }
    io_.stop();
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  ClientOptions Client() {
    ClientOptions o;
    o.port = server_->port();
    o.timeout = absl::Seconds(5);
    return o;
  }

  boost::asio::io_context io_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::function<void(Response)>> pending_;
  absl::Notification hung_;
};

TEST_F(ClientConnectionTest, KeepsTheConnectionAlive) {
  StartServer();
  ClientOptions o = Client();
  o.headers = {{"X-Echo", "default"}};
  auto connection = ClientConnection::Create(o);
  ASSERT_TRUE(connection.ok()) << connection.status();
  for (int i = 0; i < 3; ++i) {
    auto r = (*connection)->Request("POST", "/x", "body" + std::to_string(i), {{"X-Echo", "mine"}});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "POST mine body" + std::to_string(i));  // per-request headers win
  }
  EXPECT_EQ((*connection)->connections_opened(), 1u);
  EXPECT_EQ(server_->stats().connections_accepted.load(), 1u);
}

TEST_F(ClientConnectionTest, ServerClosingAnIdleConnectionIsRetriedOnANewOne) {
  ServerOptions options;
  options.idle_timeout = absl::Milliseconds(100);
  StartServer(options);
  auto connection = ClientConnection::Create(Client());
  ASSERT_TRUE(connection.ok());
  ASSERT_TRUE((*connection)->Request("GET", "/x", "").ok());
  absl::SleepFor(absl::Milliseconds(500));  // the server drops the idle connection
  auto r = (*connection)->Request("GET", "/x", "");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*connection)->connections_opened(), 2u);
  EXPECT_EQ(server_->stats().requests.load(), 2u);
}

TEST_F(ClientConnectionTest, TimeoutBoundsTheWholeRequest) {
  StartServer();
  ClientOptions o = Client();
  o.timeout = absl::Milliseconds(300);
  auto connection = ClientConnection::Create(o);
  ASSERT_TRUE(connection.ok());
  auto r = (*connection)->Request("GET", "/never", "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("read response: timed out"));
  // The connection is dropped; the next request opens a new one.
  auto next = (*connection)->Request("GET", "/x", "");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ((*connection)->connections_opened(), 2u);
}

TEST_F(ClientConnectionTest, CancelAbortsARequestInProgressAndLaterOnes) {
  StartServer();
  ClientOptions o = Client();
  o.timeout = absl::Seconds(120);
  auto connection = ClientConnection::Create(o);
  ASSERT_TRUE(connection.ok());
  absl::StatusOr<ClientResponse> result;
  std::thread request([&] { result = (*connection)->Request("GET", "/never", ""); });
  ASSERT_TRUE(hung_.WaitForNotificationWithTimeout(absl::Seconds(30)));
  (*connection)->Cancel();
  request.join();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled) << result.status();
  auto later = (*connection)->Request("GET", "/x", "");
  EXPECT_EQ(later.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(server_->stats().requests.load(), 1u);
}

TEST_F(ClientConnectionTest, RefusedIsUnavailable) {
  // A port nothing listens on: bound, then closed.
  ClientOptions o;
  {
    boost::asio::ip::tcp::acceptor probe(
        io_, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    o.port = probe.local_endpoint().port();
  }
  auto connection = ClientConnection::Create(o);
  ASSERT_TRUE(connection.ok());
  auto r = (*connection)->Request("GET", "/x", "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("connect"));
}

TEST_F(ClientConnectionTest, TlsVerifiedOrRefusedWithTheReason) {
  auto pki = testing::MakeTestPki(testing::MakeTempDir("client-connection"));
  ASSERT_TRUE(pki.ok()) << pki.status();
  ServerOptions options;
  options.cert_file = pki->server_cert;
  options.key_file = pki->server_key;
  StartServer(options);
  ClientOptions o = Client();
  o.tls = true;
  o.ca_file = pki->ca_cert;
  auto good = ClientConnection::Create(o);
  ASSERT_TRUE(good.ok());
  auto r = (*good)->Request("GET", "/x", "");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE((*good)->Request("GET", "/x", "").ok());
  EXPECT_EQ((*good)->connections_opened(), 1u);

  o.ca_file = pki->other_ca_cert;
  auto wrong = ClientConnection::Create(o);
  ASSERT_TRUE(wrong.ok());
  r = (*wrong)->Request("GET", "/x", "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("unable to get local issuer certificate"));

  o.ca_file = pki->dir + "/does-not-exist.pem";
  EXPECT_EQ(ClientConnection::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace podgate::http
