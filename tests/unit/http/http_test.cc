// The shared HTTP/WebSocket layer against real sockets: routing, limits, timeouts, TLS with
// client certificates, WebSocket sub-protocols, refused upgrades and write backpressure.
#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>
#include <fstream>
#include <map>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "http/async_client.h"
#include "http/client.h"
#include "http/client_connection.h"
#include "http/server.h"
#include "support/test_pki.h"

namespace podgate::http {
namespace {

using ::testing::HasSubstr;
namespace bhttp = boost::beast::http;

// One WebSocket frame as raw bytes (FIN set), so a test can write several with one write and
// they arrive together. A client's frame is masked, with the all-zero key (payload unchanged).
std::string RawFrame(uint8_t opcode, const std::string& payload, bool masked = false) {
  std::string f(1, static_cast<char>(0x80 | opcode));
  const char mask_bit = masked ? static_cast<char>(0x80) : 0;
  if (payload.size() < 126) {
    f.push_back(static_cast<char>(mask_bit | static_cast<char>(payload.size())));
  } else if (payload.size() < 65536) {
    f.push_back(static_cast<char>(mask_bit | 126));
    f.push_back(static_cast<char>(payload.size() >> 8));
    f.push_back(static_cast<char>(payload.size() & 0xff));
  } else {
    f.push_back(static_cast<char>(mask_bit | 127));
    for (int i = 7; i >= 0; --i) {
      f.push_back(static_cast<char>((static_cast<uint64_t>(payload.size()) >> (8 * i)) & 0xff));
    }
  }
  if (masked) {
    f.append(4, '\0');
  }
  return f + payload;
}

// A handler that echoes messages back and records what happened.
class EchoHandler : public WebSocketHandler {
 public:
  void OnOpen(std::shared_ptr<WebSocketConnection> c) override { conn = std::move(c); }
  void OnMessage(std::string_view data, bool binary) override {
    if (data == "flood") {
      // Send until the queue reports the watermark; count what was accepted.
      std::string chunk(64 * 1024, 'x');
      while (conn->Send(chunk, true)) {
        ++flood_accepted;
      }
      ++flood_accepted;
      return;
    }
    if (data == "close") {
      conn->Close(1000, "bye");
      return;
    }
    if (data == "with-head") {
      // A two-byte head (a zero byte in it) before a body larger than one TCP write, then a
      // plain message: the peer must get exactly head + body as one message, then the next.
      std::string body(200 * 1024 + 7, '\0');
      for (size_t i = 0; i < body.size(); ++i) {
        body[i] = static_cast<char>(i * 31 % 251);
      }
      with_head_below_watermark = conn->SendWithHead(std::string_view("\x01\x00", 2), body);
      conn->Send("after", false);
      return;
    }
    if (data.starts_with("resume")) {
      // Reading resumes inside the call, as a consumer that took the message at once does: the
      // message it was given must stay as it was until it returns.
      const std::string copy(data);
      conn->PauseReading();
      conn->ResumeReading();
      if (data != copy) {
        ++changed_in_call;
      }
    }
    conn->Send(std::string(data), binary);
  }
  void OnWritable() override { ++writable; }
  void OnClose(std::string reason) override {
    close_reason = reason;
    conn.reset();
    closed.Notify();
  }

  std::shared_ptr<WebSocketConnection> conn;
  std::atomic<int> flood_accepted{0};
  std::atomic<int> writable{0};
  std::atomic<int> changed_in_call{0};
  std::atomic<bool> with_head_below_watermark{false};
  std::string close_reason;
  absl::Notification closed;
};

class HttpTest : public ::testing::Test {
 protected:
  // A test PKI and a server on it that asks for client certificates.
  absl::StatusOr<testing::TestPki> StartMutualTlsServer(const std::string& name) {
    absl::StatusOr<testing::TestPki> pki = testing::MakeTestPki(testing::MakeTempDir(name));
    if (pki.ok()) {
      ServerOptions o;
      o.cert_file = pki->server_cert;
      o.key_file = pki->server_key;
      o.client_ca_file = pki->ca_cert;
      StartServer(o);
    }
    return pki;
  }
  void StartServer(ServerOptions options) {
    auto server = Server::Start(
        io_, options,
        [this](const Request& req, const RequestContext& ctx, bool upgrade) -> RouteResult {
          RouteResult r;
          if (req.target() == "/hello") {
            r.response =
                MakeResponse(req, bhttp::status::ok, "text/plain", "hello " + ctx.peer_common_name);
          } else if (req.target() == "/auth") {
            r.response = MakeResponse(req, bhttp::status::ok, "text/plain", "signed in");
            r.authenticated = true;
          } else if (req.target() == "/echo-body") {
            r.response = MakeResponse(req, bhttp::status::ok, "text/plain", req.body());
          } else if (req.target() == "/ws" && upgrade) {
            handler_ = std::make_shared<EchoHandler>();
            r.websocket = handler_;
            r.subprotocol = "v2.test";
          } else if (req.target() == "/later") {
            // Answered when the test calls the reply (a backend call that completes later).
            r.deferred = [this](std::function<void(Response)> reply) {
              std::lock_guard<std::mutex> lock(later_mu_);
              later_ = std::move(reply);
              later_asked_.Notify();
            };
          } else if (req.target() == "/ws-refused") {
            r.response = MakeResponse(req, bhttp::status::forbidden, "application/json",
                                      R"({"reason":"Forbidden"})");
          } else {
            r.response = MakeResponse(req, bhttp::status::not_found, "text/plain", "nope");
          }
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
    // The handler holds its connection until OnClose, and the session holds its handler. A test
    // that ends with a connection still open (or paused, so no read notices the peer leaving)
    // stops the io_context before OnClose: release the connection here, or LeakSanitizer (the
    // address job of tools/sanitizers.sh) reports the pair as leaked.
    if (handler_ != nullptr) {
      handler_->conn.reset();
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
  std::shared_ptr<EchoHandler> handler_;
  std::mutex later_mu_;
  std::function<void(Response)> later_;
  absl::Notification later_asked_;
};

TEST_F(HttpTest, RoutesRequests) {
  StartServer({});
  absl::StatusOr<ClientResponse> r = Fetch(Client(), "GET", "/hello");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello ");
  r = Fetch(Client(), "GET", "/missing");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  r = Fetch(Client(), "POST", "/echo-body", "payload");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->body, "payload");
  EXPECT_GE(server_->stats().requests.load(), 3u);
}

TEST_F(HttpTest, EnforcesBodyAndHeaderLimits) {
  ServerOptions o;
  o.body_limit_bytes = 1024;
  o.header_limit_bytes = 2048;
  StartServer(o);
  absl::StatusOr<ClientResponse> r = Fetch(Client(), "POST", "/echo-body", std::string(2000, 'a'));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 413);
  ClientOptions big = Client();
  big.headers.emplace_back("X-Big", std::string(4000, 'h'));
  r = Fetch(big, "GET", "/hello");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 431);
  EXPECT_EQ(server_->stats().bad_requests.load(), 2u);
}

TEST_F(HttpTest, MalformedRequestGets400) {
  StartServer({});
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket s(io);
  s.connect({boost::asio::ip::make_address("127.0.0.1"), server_->port()});
  boost::asio::write(s, boost::asio::buffer(std::string("NOT HTTP AT ALL\r\n\r\n")));
  std::string out;
  boost::system::error_code ec;
  char buf[512];
  size_t n;
  while ((n = s.read_some(boost::asio::buffer(buf), ec)) > 0) {
    out.append(buf, n);
  }
  EXPECT_THAT(out, HasSubstr("400 Bad Request"));
}

// response_headers go on every answer the server writes: the router's, and the parser's own
// 400, 413 and 431 (which no router sees); a header the router set wins.
TEST_F(HttpTest, ResponseHeadersGoOnEveryAnswerIncludingTheParsersOwn) {
  ServerOptions o;
  o.body_limit_bytes = 1024;
  o.header_limit_bytes = 2048;
  o.response_headers = {{"X-Frame-Options", "DENY"}, {"Content-Type", "text/never"}};
  StartServer(o);
  auto header = [](const ClientResponse& r, const std::string& name) {
    for (const auto& [k, v] : r.headers) {
      if (absl::EqualsIgnoreCase(k, name)) {
        return v;
      }
    }
    return std::string();
  };
  absl::StatusOr<ClientResponse> r = Fetch(Client(), "GET", "/hello");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(header(*r, "X-Frame-Options"), "DENY");
  EXPECT_NE(header(*r, "Content-Type"), "text/never");
  r = Fetch(Client(), "GET", "/missing");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(header(*r, "X-Frame-Options"), "DENY");
  r = Fetch(Client(), "POST", "/echo-body", std::string(2000, 'a'));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(header(*r, "X-Frame-Options"), "DENY");
  ClientOptions big = Client();
  big.headers.emplace_back("X-Big", std::string(4000, 'h'));
  r = Fetch(big, "GET", "/hello");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 431);
  EXPECT_EQ(header(*r, "X-Frame-Options"), "DENY");

  boost::asio::io_context io;
  boost::asio::ip::tcp::socket s(io);
  s.connect({boost::asio::ip::make_address("127.0.0.1"), server_->port()});
  boost::asio::write(s, boost::asio::buffer(std::string("NOT HTTP AT ALL\r\n\r\n")));
  std::string out;
  boost::system::error_code ec;
  char buf[512];
  size_t n;
  while ((n = s.read_some(boost::asio::buffer(buf), ec)) > 0) {
    out.append(buf, n);
  }
  EXPECT_THAT(out, HasSubstr("400 Bad Request"));
  EXPECT_THAT(out, HasSubstr("X-Frame-Options: DENY"));
}

TEST(ListenAddressTest, HostAndPortOrRefusalWithTheReason) {
  auto ok = [](std::string_view text, const std::string& host, uint16_t port) {
    absl::StatusOr<ListenAddress> a = ParseListenAddress(text);
    ASSERT_TRUE(a.ok()) << text << ": " << a.status();
    EXPECT_EQ(a->host, host) << text;
    EXPECT_EQ(a->port, port) << text;
  };
  ok("127.0.0.1:0", "127.0.0.1", 0);
  ok("0.0.0.0:9101", "0.0.0.0", 9101);
  ok("[::]:9104", "::", 9104);
  ok("[::1]:65535", "::1", 65535);
  auto bad = [](std::string_view text, const std::string& why) {
    absl::StatusOr<ListenAddress> a = ParseListenAddress(text);
    ASSERT_FALSE(a.ok()) << text;
    EXPECT_THAT(std::string(a.status().message()), HasSubstr(why)) << text;
  };
  bad("9101", "not host:port");
  bad("", "not host:port");
  bad("127.0.0.1:", "is not 0 to 65535");
  bad("127.0.0.1:65536", "is not 0 to 65535");
  bad("127.0.0.1:-1", "is not 0 to 65535");
  bad("127.0.0.1:+80", "is not 0 to 65535");
  bad("127.0.0.1: 80", "is not 0 to 65535");
  bad("::1:80", "in brackets");
  bad("localhost:80", "is not an IP address");
  bad(":80", "is not an IP address");
  bad("[]:80", "is not an IP address");
  bad("[::1:80", "in brackets");
}

TEST_F(HttpTest, HandshakeTimeoutClosesIdleConnection) {
  ServerOptions o;
  o.handshake_timeout = absl::Milliseconds(200);
  StartServer(o);
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket s(io);
  s.connect({boost::asio::ip::make_address("127.0.0.1"), server_->port()});
  auto start = absl::Now();
  char buf[16];
  boost::system::error_code ec;
  size_t n = s.read_some(boost::asio::buffer(buf), ec);  // blocks until the server gives up
  EXPECT_EQ(n, 0u);
  EXPECT_TRUE(ec) << "server should close a connection that sends nothing";
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

// A blocking keep-alive connection from a chosen loopback address (127.0.0.0/8 is all local on
// Linux), so tests can be several "source addresses" at once.
class SourceConnection {
 public:
  SourceConnection(uint16_t port, const std::string& source) : socket_(io_) {
    socket_.open(boost::asio::ip::tcp::v4());
    socket_.bind({boost::asio::ip::make_address(source), 0});
    socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  }

  // Sends a GET and reads one response: "<status> <body>", or "closed" when the server closed
  // the connection first.
  std::string Get(const std::string& target) {
    boost::system::error_code ec;
    boost::asio::write(
        socket_, boost::asio::buffer("GET " + target + " HTTP/1.1\r\nHost: test\r\n\r\n"), ec);
    return ReadResponse();
  }

  std::string ReadResponse() {
    std::string in;
    char buf[4096];
    boost::system::error_code ec;
    size_t header_end = std::string::npos;
    size_t length = 0;
    while (header_end == std::string::npos || in.size() < header_end + 4 + length) {
      size_t n = socket_.read_some(boost::asio::buffer(buf), ec);
      if (ec) {
        return in.empty() ? "closed" : "partial " + in;
      }
      in.append(buf, n);
      if (header_end == std::string::npos &&
          (header_end = in.find("\r\n\r\n")) != std::string::npos) {
        std::string lower = in.substr(0, header_end);
        for (char& c : lower) {
          c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        size_t cl = lower.find("content-length: ");
        length = cl == std::string::npos ? 0 : std::stoul(lower.substr(cl + 16));
        headers_ = in.substr(0, header_end);
      }
    }
    return in.substr(9, 3) + " " + in.substr(header_end + 4, length);
  }

  // Whether the server has closed the connection (waits up to `timeout` for it).
  bool ClosedWithin(absl::Duration timeout) {
    socket_.non_blocking(true);
    const absl::Time deadline = absl::Now() + timeout;
    char buf[64];
    while (absl::Now() < deadline) {
      boost::system::error_code ec;
      socket_.read_some(boost::asio::buffer(buf), ec);
      if (ec && ec != boost::asio::error::would_block) {
        socket_.non_blocking(false);
        return true;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    socket_.non_blocking(false);
    return false;
  }

  const std::string& headers() const { return headers_; }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  std::string headers_;
};

TEST_F(HttpTest, PerSourceLimitsRefuseOneAddressWhileAnotherIsServed) {
  ServerOptions o;
  o.max_connections_per_source = 4;
  o.max_unauthenticated_per_source = 2;
  auto refusals = std::make_shared<std::vector<std::string>>();
  auto mu = std::make_shared<std::mutex>();
  o.on_refusal = [refusals, mu](std::string_view reason) {
    std::lock_guard<std::mutex> lock(*mu);
    refusals->emplace_back(reason);
  };
  StartServer(o);
  const uint16_t port = server_->port();
  std::vector<std::unique_ptr<SourceConnection>> held;
  for (int i = 0; i < 2; ++i) {
    held.push_back(std::make_unique<SourceConnection>(port, "127.0.0.1"));
    EXPECT_EQ(held.back()->Get("/hello"), "200 hello ");
  }
  // A third anonymous connection from the same address is answered 429 and closed.
  SourceConnection refused(port, "127.0.0.1");
  std::string answer = refused.Get("/hello");
  EXPECT_THAT(answer, ::testing::StartsWith("429 ")) << answer;
  EXPECT_THAT(answer, HasSubstr("unauthenticated connections from this address"));
  EXPECT_THAT(refused.headers(), HasSubstr("Retry-After: 5"));
  // Another address is served all along.
  SourceConnection other(port, "127.0.0.2");
  EXPECT_EQ(other.Get("/hello"), "200 hello ");

  // An authenticated request frees its connection's unauthenticated place...
  EXPECT_EQ(held[0]->Get("/auth"), "200 signed in");
  EXPECT_EQ(held[1]->Get("/auth"), "200 signed in");
  for (int i = 0; i < 2; ++i) {
    held.push_back(std::make_unique<SourceConnection>(port, "127.0.0.1"));
    EXPECT_EQ(held.back()->Get("/hello"), "200 hello ");
  }
  // ...but every connection counts against the address's total.
  SourceConnection over(port, "127.0.0.1");
  answer = over.Get("/hello");
  EXPECT_THAT(answer, ::testing::StartsWith("429 ")) << answer;
  EXPECT_THAT(answer, HasSubstr("too many connections from this address"));
  EXPECT_EQ(server_->stats().connections_rejected_per_source.load(), 1u);
  EXPECT_EQ(server_->stats().connections_rejected_unauthenticated.load(), 1u);
  {
    std::lock_guard<std::mutex> lock(*mu);
    EXPECT_THAT(*refusals, ::testing::ElementsAre("unauthenticated_per_source", "per_source"));
  }
  // Closed connections give their places back.
  held.clear();
  absl::SleepFor(absl::Milliseconds(200));
  SourceConnection again(port, "127.0.0.1");
  EXPECT_EQ(again.Get("/hello"), "200 hello ");
}

TEST_F(HttpTest, UnauthenticatedKeepAliveIsShorter) {
  ServerOptions o;
  o.idle_timeout = absl::Seconds(30);
  o.unauthenticated_idle_timeout = absl::Milliseconds(300);
  StartServer(o);
  SourceConnection anonymous(server_->port(), "127.0.0.1");
  SourceConnection signed_in(server_->port(), "127.0.0.1");
  EXPECT_EQ(anonymous.Get("/hello"), "200 hello ");
  EXPECT_EQ(signed_in.Get("/auth"), "200 signed in");
  const absl::Time start = absl::Now();
  EXPECT_TRUE(anonymous.ClosedWithin(absl::Seconds(5)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_FALSE(signed_in.ClosedWithin(absl::Seconds(1)));
  EXPECT_EQ(signed_in.Get("/hello"), "200 hello ");
}

TEST_F(HttpTest, WebSocketEchoWithSubprotocol) {
  StartServer({});
  auto ws = WebSocketClient::Connect(Client(), "/ws", {"v3.test", "v2.test"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  EXPECT_EQ((*ws)->subprotocol(), "v2.test");
  ASSERT_TRUE((*ws)->Write(std::string("\x01hello", 6), true).ok());
  absl::StatusOr<Message> m = (*ws)->Read(absl::Seconds(5));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->data, std::string("\x01hello", 6));
  EXPECT_TRUE(m->binary);
  ASSERT_TRUE((*ws)->Write("text", false).ok());
  m = (*ws)->Read(absl::Seconds(5));
  ASSERT_TRUE(m.ok());
  EXPECT_FALSE(m->binary);
  ASSERT_TRUE((*ws)->Write("close", false).ok());
  m = (*ws)->Read(absl::Seconds(5));
  EXPECT_EQ(m.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(m.status().message(), HasSubstr("bye"));
  EXPECT_TRUE(handler_->closed.WaitForNotificationWithTimeout(absl::Seconds(5)));
}

// A request counts as waiting for its answer from when it is read until the answer is written:
// a deferred answer not given yet keeps WaitAnswersWritten waiting (a shutdown waits there
// before it stops the I/O context); an answered one, an idle keep-alive connection and an
// accepted WebSocket do not.
TEST_F(HttpTest, WaitAnswersWrittenWaitsForADeferredAnswer) {
  StartServer({});
  ASSERT_TRUE(Fetch(Client(), "GET", "/hello").ok());  // answered: not counted
  auto ws = WebSocketClient::Connect(Client(), "/ws", {"v2.test"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  EXPECT_EQ(server_->stats().answers_pending.load(), 0);
  EXPECT_TRUE(server_->WaitAnswersWritten(absl::Now()));

  absl::StatusOr<ClientResponse> later;
  std::thread client([&] { later = Fetch(Client(), "GET", "/later"); });
  ASSERT_TRUE(later_asked_.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_EQ(server_->stats().answers_pending.load(), 1);
  const absl::Time start = absl::Now();
  EXPECT_FALSE(server_->WaitAnswersWritten(start + absl::Milliseconds(100)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(100));
  {
    std::lock_guard<std::mutex> lock(later_mu_);
    Request request;
    later_(MakeResponse(request, bhttp::status::ok, "text/plain", "at last"));
  }
  EXPECT_TRUE(server_->WaitAnswersWritten(absl::Now() + absl::Seconds(5)));
  client.join();
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(later->status, 200);
  EXPECT_EQ(later->body, "at last");
  EXPECT_EQ(server_->stats().answers_pending.load(), 0);
  ASSERT_TRUE((*ws)->Write("close", false).ok());
}

// The Kubernetes API server accepts WebSocket upgrades on POST as well as GET.
TEST_F(HttpTest, AcceptsPostUpgrade) {
  StartServer({});
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket s(io);
  s.connect({boost::asio::ip::make_address("127.0.0.1"), server_->port()});
  boost::asio::write(s, boost::asio::buffer(std::string(
                            "POST /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
                            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            "Sec-WebSocket-Protocol: v2.test\r\n\r\n")));
  std::string out;
  char buf[512];
  boost::system::error_code ec;
  while (out.find("\r\n\r\n") == std::string::npos) {
    size_t n = s.read_some(boost::asio::buffer(buf), ec);
    if (ec) {
      break;
    }
    out.append(buf, n);
  }
  EXPECT_THAT(out, HasSubstr("101 Switching Protocols"));
  EXPECT_THAT(out, HasSubstr("Sec-WebSocket-Protocol: v2.test"));
}

// permessage-deflate is never negotiated (no zlib state per connection): a client that offers
// it gets a 101 without the extension.
TEST_F(HttpTest, PermessageDeflateIsNotNegotiated) {
  StartServer({});
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket s(io);
  s.connect({boost::asio::ip::make_address("127.0.0.1"), server_->port()});
  boost::asio::write(s, boost::asio::buffer(std::string(
                            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
                            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            "Sec-WebSocket-Extensions: permessage-deflate; "
                            "client_max_window_bits\r\n\r\n")));
  std::string out;
  char buf[512];
  boost::system::error_code ec;
  while (out.find("\r\n\r\n") == std::string::npos) {
    size_t n = s.read_some(boost::asio::buffer(buf), ec);
    if (ec) {
      break;
    }
    out.append(buf, n);
  }
  EXPECT_THAT(out, HasSubstr("101 Switching Protocols"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("permessage-deflate")));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("Sec-WebSocket-Extensions")));
}

// A message larger than what the read buffer keeps between messages (its memory is given back
// once the message is handled) arrives whole, and so do the small ones after it.
TEST_F(HttpTest, MessagesOfEverySizeArriveWholeAfterALargeOne) {
  StartServer({});
  auto ws = WebSocketClient::Connect(Client(), "/ws", {});
  ASSERT_TRUE(ws.ok()) << ws.status();
  for (const size_t size :
       {size_t{10}, size_t{200 * 1024}, size_t{1}, size_t{1536}, size_t{5000}, size_t{3}}) {
    const std::string data(size, static_cast<char>('a' + size % 26));
    ASSERT_TRUE((*ws)->Write(data, true).ok());
    absl::StatusOr<Message> m = (*ws)->Read(absl::Seconds(5));
    ASSERT_TRUE(m.ok()) << size << ": " << m.status();
    EXPECT_EQ(m->data, data) << size;
  }
}

// A handler sees each message in the connection's read buffer itself (OnMessage's
// string_view). Messages that arrive together, at a handler that resumes reading inside the
// call, each arrive whole, and none changes under the handler while it runs: no read starts
// until it returns (one started inside the call would decode the next message into that same
// buffer, and the consume after the call would drop it).
TEST_F(HttpTest, MessagesThatArriveTogetherStayWholeWhenTheHandlerResumesReadingInside) {
  StartServer({});
  boost::asio::io_context client_io;
  boost::asio::ip::tcp::socket socket(client_io);
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), server_->port()});
  const timeval timeout{5, 0};
  ASSERT_EQ(setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)),
            0);
  boost::beast::websocket::stream<boost::asio::ip::tcp::socket&> ws(socket);
  ws.handshake("127.0.0.1", "/ws");
  const std::vector<std::string> sent = {"resume" + std::string(64 * 1024, 'a'),
                                         "resume" + std::string(4096, 'b'), "resume-c"};
  std::string together;
  for (const std::string& message : sent) {
    together += RawFrame(0x2, message, /*masked=*/true);
  }
  boost::asio::write(socket, boost::asio::buffer(together));
  for (const std::string& expected : sent) {
    boost::beast::flat_buffer buffer;
    boost::system::error_code ec;
    ws.read(buffer, ec);
    ASSERT_FALSE(ec) << "echo of a " << expected.size() << "-byte message: " << ec.message();
    EXPECT_EQ(boost::beast::buffers_to_string(buffer.data()), expected);
  }
  EXPECT_EQ(handler_->changed_in_call.load(), 0);
}

// SendWithHead sends what Send(head + body) would: one binary message, in order with the
// others, and the head counts towards the queue's watermark.
TEST_F(HttpTest, AMessageSentWithAHeadArrivesAsHeadThenBody) {
  ServerOptions o;
  o.write_high_watermark_bytes = 200 * 1024 + 9;  // head + body reaches it, the body alone not
  StartServer(o);
  auto ws = WebSocketClient::Connect(Client(), "/ws", {});
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE((*ws)->Write("with-head", false).ok());
  absl::StatusOr<Message> m = (*ws)->Read(absl::Seconds(5));
  ASSERT_TRUE(m.ok()) << m.status();
  std::string expected("\x01\x00", 2);
  for (size_t i = 0; i < 200 * 1024 + 7; ++i) {
    expected += static_cast<char>(i * 31 % 251);
  }
  EXPECT_TRUE(m->binary);
  ASSERT_EQ(m->data.size(), expected.size());
  EXPECT_TRUE(m->data == expected) << "the message differs from head + body";
  absl::StatusOr<Message> after = (*ws)->Read(absl::Seconds(5));
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->data, "after");
  EXPECT_FALSE(after->binary);
  EXPECT_FALSE(handler_->with_head_below_watermark.load());
}

// A connection without a gathered write of its own (the async client's) joins head and body
// into one Send.
TEST(WebSocketConnectionTest, SendWithHeadJoinsHeadAndBodyWhereNotOverridden) {
  class Recorder : public WebSocketConnection {
   public:
    bool Send(std::string data, bool binary) override {
      sent.emplace_back(std::move(data), binary);
      return false;
    }
    void Close(uint16_t, std::string) override {}
    void PauseReading() override {}
    void ResumeReading() override {}
    size_t queued_bytes() const override { return 0; }
    boost::asio::any_io_executor executor() const override { return {}; }
    std::vector<std::pair<std::string, bool>> sent;
  } connection;
  EXPECT_FALSE(connection.SendWithHead(std::string_view("\x02", 1), "payload"));
  ASSERT_EQ(connection.sent.size(), 1u);
  EXPECT_EQ(connection.sent[0].first, "\x02payload");
  EXPECT_TRUE(connection.sent[0].second);
}

TEST_F(HttpTest, RefusedUpgradeReportsStatusAndBody) {
  StartServer({});
  ClientResponse refusal;
  auto ws = WebSocketClient::Connect(Client(), "/ws-refused", {"v2.test"}, &refusal);
  ASSERT_FALSE(ws.ok());
  EXPECT_EQ(ws.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refusal.status, 403);
  EXPECT_THAT(refusal.body, HasSubstr("Forbidden"));
}

TEST_F(HttpTest, OversizedMessageClosesConnection) {
  ServerOptions o;
  o.websocket_message_limit_bytes = 1024;
  StartServer(o);
  auto ws = WebSocketClient::Connect(Client(), "/ws", {});
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE((*ws)->Write(std::string(4096, 'a'), true).ok());
  absl::StatusOr<Message> m = (*ws)->Read(absl::Seconds(5));
  ASSERT_FALSE(m.ok());
  ASSERT_TRUE(handler_->closed.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_THAT(handler_->close_reason, HasSubstr("limit"));
}

TEST_F(HttpTest, SlowReaderHitsWatermarkThenGetsWritable) {
  ServerOptions o;
  o.write_high_watermark_bytes = 256 * 1024;
  StartServer(o);
  auto ws = WebSocketClient::Connect(Client(), "/ws", {});
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE((*ws)->Write("flood", false).ok());
  // The handler stopped at the watermark: 256 KiB of 64 KiB chunks.
  size_t received = 0;
  while (received < 4) {
    absl::StatusOr<Message> m = (*ws)->Read(absl::Seconds(5));
    ASSERT_TRUE(m.ok()) << m.status();
    ++received;
  }
  EXPECT_EQ(handler_->flood_accepted.load(), 4);
  for (int i = 0; i < 50 && handler_->writable.load() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(handler_->writable.load(), 1);
}

TEST_F(HttpTest, PeerThatNeverReadsIsClosedAtHardLimit) {
  ServerOptions o;
  o.write_high_watermark_bytes = 64 * 1024;
  o.write_hard_limit_bytes = 1024 * 1024;
  StartServer(o);
  auto ws = WebSocketClient::Connect(Client(), "/ws", {});
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE((*ws)->Write("hi", false).ok());
  ASSERT_TRUE((*ws)->Read(absl::Seconds(5)).ok());
  // Ignore the watermark: keep sending from the server side while the client reads nothing.
  std::shared_ptr<WebSocketConnection> conn = handler_->conn;
  std::string chunk(128 * 1024, 'y');
  for (int i = 0; i < 400 && !handler_->closed.HasBeenNotified(); ++i) {
    conn->Send(chunk, true);
  }
  EXPECT_TRUE(handler_->closed.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_GE(server_->stats().websocket_slow_peer_closes.load(), 1u);
}

TEST_F(HttpTest, TlsWithClientCertificate) {
  absl::StatusOr<testing::TestPki> pki = StartMutualTlsServer("http-tls");
  ASSERT_TRUE(pki.ok()) << pki.status();
  ClientOptions c = Client();
  c.tls = true;
  c.ca_file = pki->ca_cert;
  c.server_name = "localhost";
  absl::StatusOr<ClientResponse> r = Fetch(c, "GET", "/hello");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "hello ");  // no client certificate: no identity
  c.client_cert_file = pki->client_cert;
  c.client_key_file = pki->client_key;
  r = Fetch(c, "GET", "/hello");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "hello podgate-client");
  auto ws = WebSocketClient::Connect(c, "/ws", {"v2.test"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  EXPECT_EQ((*ws)->subprotocol(), "v2.test");
  // A client that trusts another CA refuses the server.
  ClientOptions wrong = Client();
  wrong.tls = true;
  wrong.ca_file = pki->other_ca_cert;
  wrong.server_name = "localhost";
  r = Fetch(wrong, "GET", "/hello");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("TLS handshake"));
}

// The CA and the client certificate held in memory (a kubeconfig's *-data fields), never
// written to a file.
TEST_F(HttpTest, TlsWithPemHeldInMemory) {
  absl::StatusOr<testing::TestPki> pki = StartMutualTlsServer("http-tls-pem");
  ASSERT_TRUE(pki.ok()) << pki.status();
  const auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  ClientOptions c = Client();
  c.tls = true;
  c.ca_pem = read(pki->ca_cert);
  c.client_cert_pem = read(pki->client_cert);
  c.client_key_pem = read(pki->client_key);
  c.server_name = "localhost";
  absl::StatusOr<ClientResponse> r = Fetch(c, "GET", "/hello");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "hello podgate-client");
  c.ca_pem = read(pki->other_ca_cert);
  r = Fetch(c, "GET", "/hello");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("TLS handshake"));
  c.ca_pem = "not a certificate";
  EXPECT_THAT(Fetch(c, "GET", "/hello").status().message(), HasSubstr("TLS client setup"));
}

// The TCP_NODELAY option of this process's connected loopback sockets whose local (`local`
// true) or peer port is `port`, found through /proc/self/fd.
std::vector<int> NoDelayOfSocketsOn(uint16_t port, bool local) {
  std::vector<int> found;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) {
    return found;
  }
  while (dirent* e = readdir(dir)) {
    const int fd = atoi(e->d_name);
    if (fd <= 2 || fd == dirfd(dir)) {
      continue;
    }
    sockaddr_in6 mine{}, peer{};
    socklen_t mine_len = sizeof(mine), peer_len = sizeof(peer);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&mine), &mine_len) != 0 ||
        getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
      continue;  // not a connected socket
    }
    if (mine.sin6_family != AF_INET && mine.sin6_family != AF_INET6) {
      continue;
    }
    // sin_port and sin6_port sit at the same offset.
    const uint16_t p = ntohs(local ? mine.sin6_port : peer.sin6_port);
    if (p != port) {
      continue;
    }
    int value = 0;
    socklen_t len = sizeof(value);
    if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &value, &len) == 0) {
      found.push_back(value);
    }
  }
  closedir(dir);
  return found;
}

// Every connection leaves Nagle's algorithm off on both ends: a small frame (a prompt, an exit
// status, a pong) must not wait for the peer's delayed ACK (up to 40 ms per exchange, which
// was most of a command's round trip through exec and the API server).
TEST_F(HttpTest, EveryConnectionSendsSmallFramesAtOnce) {
  StartServer({});
  const uint16_t port = server_->port();
  // The blocking WebSocket client.
  auto ws = WebSocketClient::Connect(Client(), "/ws", {"v2.test"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE((*ws)->Write("x", false).ok());
  ASSERT_TRUE((*ws)->Read(absl::Seconds(5)).ok());
  EXPECT_THAT(NoDelayOfSocketsOn(port, /*local=*/false), ::testing::ElementsAre(1));
  EXPECT_THAT(NoDelayOfSocketsOn(port, /*local=*/true), ::testing::ElementsAre(1));
  ws->reset();
  ASSERT_TRUE(handler_->closed.WaitForNotificationWithTimeout(absl::Seconds(5)));

  // The keep-alive HTTP client.
  auto conn = ClientConnection::Create(Client());
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_TRUE((*conn)->Request("GET", "/hello", "").ok());
  EXPECT_THAT(NoDelayOfSocketsOn(port, false), ::testing::ElementsAre(1));
  EXPECT_THAT(NoDelayOfSocketsOn(port, true), ::testing::ElementsAre(1));
  conn->reset();

  // The asynchronous WebSocket client (exec's and kubesim's clients use it).
  boost::asio::io_context client_io;
  auto client_handler = std::make_shared<EchoHandler>();
  HandshakeResult result;
  bool done = false;
  AsyncClientOptions async;
  async.connection = Client();
  ConnectWebSocket(client_io, async, "/ws", {"v2.test"}, client_handler,
                   [&](const HandshakeResult& r) {
                     result = r;
                     done = true;
                   });
  while (!done && client_io.run_one_for(std::chrono::seconds(5)) > 0) {
  }
  ASSERT_TRUE(done);
  ASSERT_TRUE(result.status.ok()) << result.status;
  std::vector<int> client_side = NoDelayOfSocketsOn(port, false);
  EXPECT_FALSE(client_side.empty());
  EXPECT_THAT(client_side, ::testing::Each(1));
  std::vector<int> server_side = NoDelayOfSocketsOn(port, true);
  EXPECT_FALSE(server_side.empty());
  EXPECT_THAT(server_side, ::testing::Each(1));
  if (client_handler->conn != nullptr) {
    client_handler->conn->Close(1000, "done");
  }
  client_io.run_for(std::chrono::milliseconds(200));
  client_handler->conn.reset();
}

// --- connections made ahead (SpareConnections) -----------------------------------------------

// The client side of an asynchronous WebSocket: records what it gets.
class ClientRecorder : public WebSocketHandler {
 public:
  void OnOpen(std::shared_ptr<WebSocketConnection> c) override {
    std::lock_guard<std::mutex> lock(mu);
    conn = std::move(c);
  }
  void OnMessage(std::string_view data, bool) override {
    std::lock_guard<std::mutex> lock(mu);
    messages.emplace_back(data);
  }
  void OnWritable() override {}
  void OnClose(std::string) override {
    std::lock_guard<std::mutex> lock(mu);
    conn.reset();
  }
  // Sends `text` and waits for the server's echo of it.
  bool Echoes(const std::string& text) {
    std::shared_ptr<WebSocketConnection> c;
    for (int i = 0; i < 500 && c == nullptr; ++i) {  // OnOpen follows the handshake's result
      {
        std::lock_guard<std::mutex> lock(mu);
        c = conn;
      }
      if (c == nullptr) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    if (c == nullptr) {
      return false;
    }
    c->Send(text, false);
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (std::find(messages.begin(), messages.end(), text) != messages.end()) {
          return true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  void CloseNow() {
    std::shared_ptr<WebSocketConnection> c;
    {
      std::lock_guard<std::mutex> lock(mu);
      c = conn;
    }
    if (c != nullptr) {
      c->Close(1000, "done");
    }
  }

  std::mutex mu;
  std::shared_ptr<WebSocketConnection> conn;
  std::vector<std::string> messages;
};

// A client I/O context on its own thread with a pool of spares, counting the pool's events.
class SpareClient {
 public:
  SpareClient(SpareConnections::Options options, ClientOptions connection)
      : work_(boost::asio::make_work_guard(io_)) {
    spares_ = std::make_unique<SpareConnections>(io_, options, [this](SpareConnections::Event e) {
      std::lock_guard<std::mutex> lock(mu_);
      ++events_[SpareConnections::EventName(e)];
    });
    options_.connection = std::move(connection);
    options_.tls_context = *MakeSharedClientTlsContext(options_.connection);
    options_.spares = spares_.get();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~SpareClient() {
    for (auto& h : handlers_) {
      h->CloseNow();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    spares_.reset();
    work_.reset();
    io_.stop();
    thread_.join();
    for (auto& h : handlers_) {
      std::lock_guard<std::mutex> lock(h->mu);
      h->conn.reset();
    }
  }

  // An upgrade to /ws through the pool; its handler (null when it failed).
  std::shared_ptr<ClientRecorder> Upgrade(absl::Status* status = nullptr) {
    auto handler = std::make_shared<ClientRecorder>();
    auto done = std::make_shared<absl::Notification>();
    auto result = std::make_shared<HandshakeResult>();
    ConnectWebSocket(io_, options_, "/ws", {"v2.test"}, handler,
                     [done, result](const HandshakeResult& r) {
                       *result = r;
                       done->Notify();
                     });
    if (!done->WaitForNotificationWithTimeout(absl::Seconds(10))) {
      result->status = absl::DeadlineExceededError("no handshake result");
    }
    if (status != nullptr) {
      *status = result->status;
    }
    if (!result->status.ok()) {
      return nullptr;
    }
    handlers_.push_back(handler);
    return handler;
  }

  int Count(const std::string& event) {
    std::lock_guard<std::mutex> lock(mu_);
    return events_[event];
  }
  // Waits until `n` spares are ready.
  bool WaitForReady(size_t n) {
    for (int i = 0; i < 500; ++i) {
      if (spares_->ready() == n && spares_->dialling() == 0) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  SpareConnections& spares() { return *spares_; }
  AsyncClientOptions& options() { return options_; }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::unique_ptr<SpareConnections> spares_;
  AsyncClientOptions options_;
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, int> events_;
  std::vector<std::shared_ptr<ClientRecorder>> handlers_;
};

ClientOptions TlsClient(const testing::TestPki& pki, uint16_t port) {
  ClientOptions c;
  c.port = port;
  c.timeout = absl::Seconds(5);
  c.tls = true;
  c.ca_file = pki.ca_cert;
  c.client_cert_file = pki.client_cert;
  c.client_key_file = pki.client_key;
  c.server_name = "localhost";
  return c;
}

// The first upgrade finds no spare and has one made; the next goes out on it (no TCP or TLS
// handshake of its own) and works like any other; the one taken is replaced, and no more than
// max_spares ever wait.
TEST_F(HttpTest, AnUpgradeGoesOutOnAConnectionMadeAhead) {
  absl::StatusOr<testing::TestPki> pki = StartMutualTlsServer("http-spares");
  ASSERT_TRUE(pki.ok()) << pki.status();
  SpareClient client({/*max_spares=*/2, absl::Seconds(30)}, TlsClient(*pki, server_->port()));
  absl::Status status;
  std::shared_ptr<ClientRecorder> first = client.Upgrade(&status);
  ASSERT_NE(first, nullptr) << status;
  EXPECT_TRUE(first->Echoes("one"));
  EXPECT_EQ(client.Count("missed"), 1);
  EXPECT_EQ(client.Count("used"), 0);
  ASSERT_TRUE(client.WaitForReady(2));
  for (int i = 0; i < 3; ++i) {
    std::shared_ptr<ClientRecorder> next = client.Upgrade(&status);
    ASSERT_NE(next, nullptr) << status;
    EXPECT_TRUE(next->Echoes("again " + std::to_string(i)));
    EXPECT_EQ(client.Count("used"), i + 1);
    ASSERT_TRUE(client.WaitForReady(2));
  }
  EXPECT_EQ(client.Count("missed"), 1);
  EXPECT_EQ(client.Count("dial_failed"), 0);
  EXPECT_EQ(client.Count("retried"), 0);
}

// A spare is closed unused after max_idle; one the server has closed meanwhile (here: its
// handshake timeout, as an API server's idle timeout would) is noticed when taken and never
// used; one made with another TLS context (a rotated CA or client certificate) is not used
// either. Each time the upgrade still succeeds on a connection of its own.
TEST_F(HttpTest, ASpareIsNeverUsedIdleTooLongClosedByTheServerOrWithAnotherTlsContext) {
  absl::StatusOr<testing::TestPki> pki =
      testing::MakeTestPki(testing::MakeTempDir("http-spare-idle"));
  ASSERT_TRUE(pki.ok()) << pki.status();
  ServerOptions o;
  o.cert_file = pki->server_cert;
  o.key_file = pki->server_key;
  o.client_ca_file = pki->ca_cert;
  o.handshake_timeout = absl::Milliseconds(400);
  StartServer(o);
  absl::Status status;
  {
    SpareClient client({1, absl::Milliseconds(150)}, TlsClient(*pki, server_->port()));
    ASSERT_NE(client.Upgrade(&status), nullptr) << status;
    ASSERT_TRUE(client.WaitForReady(1));
    for (int i = 0; i < 100 && client.Count("expired") == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(client.Count("expired"), 1);
    EXPECT_EQ(client.spares().ready(), 0u);
    std::shared_ptr<ClientRecorder> h = client.Upgrade(&status);
    ASSERT_NE(h, nullptr) << status;
    EXPECT_TRUE(h->Echoes("after expiry"));
    EXPECT_EQ(client.Count("missed"), 2);
    EXPECT_EQ(client.Count("used"), 0);
  }
  {
    SpareClient client({1, absl::Seconds(30)}, TlsClient(*pki, server_->port()));
    ASSERT_NE(client.Upgrade(&status), nullptr) << status;
    ASSERT_TRUE(client.WaitForReady(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(800));  // the server gave up on it
    std::shared_ptr<ClientRecorder> h = client.Upgrade(&status);
    ASSERT_NE(h, nullptr) << status;
    EXPECT_TRUE(h->Echoes("after the server closed it"));
    EXPECT_EQ(client.Count("closed"), 1);
    EXPECT_EQ(client.Count("used"), 0);
    EXPECT_EQ(client.Count("missed"), 2);

    ASSERT_TRUE(client.WaitForReady(1));
    client.options().tls_context = *MakeSharedClientTlsContext(client.options().connection);
    h = client.Upgrade(&status);
    ASSERT_NE(h, nullptr) << status;
    EXPECT_TRUE(h->Echoes("with a new TLS context"));
    EXPECT_EQ(client.Count("stale"), 1);
    EXPECT_EQ(client.Count("used"), 0);
  }
}

// A TCP listener on 127.0.0.1 at a port the kernel picks; -1 when none could be made.
int ListenOnLoopback(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 16) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) {
      close(fd);
    }
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

// A TCP relay that drops a connection without a word when its client sends again after being
// silent for `quiet`, as a middlebox with an idle timeout does: the request on a spare that
// waited that long is lost, while connections in use pass.
class IdleDroppingRelay {
 public:
  IdleDroppingRelay(uint16_t target, absl::Duration quiet) : target_(target), quiet_(quiet) {
    listener_ = ListenOnLoopback(&port_);
    EXPECT_GE(listener_, 0);
    accepter_ = std::thread([this] { Accept(); });
  }
  ~IdleDroppingRelay() {
    stop_ = true;
    accepter_.join();
    for (std::thread& t : pumps_) {
      t.join();
    }
    close(listener_);
  }
  uint16_t port() const { return port_; }
  int dropped() const { return dropped_.load(); }

 private:
  void Accept() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) {
        continue;
      }
      int client = accept(listener_, nullptr, nullptr);
      if (client < 0) {
        continue;
      }
      int server = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(target_);
      if (connect(server, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        close(client);
        close(server);
        continue;
      }
      pumps_.emplace_back([this, client, server] { Pump(client, server); });
    }
  }
  void Pump(int client, int server) {
    absl::Time last_from_client = absl::Now();
    char buf[16384];
    while (!stop_) {
      pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      if (poll(p, 2, 50) <= 0) {
        continue;
      }
      if (p[0].revents != 0) {
        if (absl::Now() - last_from_client >= quiet_) {
          ++dropped_;
          break;
        }
        ssize_t n = read(client, buf, sizeof(buf));
        if (n <= 0 || write(server, buf, static_cast<size_t>(n)) != n) {
          break;
        }
        last_from_client = absl::Now();
      }
      if (p[1].revents != 0) {
        ssize_t n = read(server, buf, sizeof(buf));
        if (n <= 0 || write(client, buf, static_cast<size_t>(n)) != n) {
          break;
        }
      }
    }
    close(client);
    close(server);
  }

  const uint16_t target_;
  const absl::Duration quiet_;
  int listener_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> dropped_{0};
  std::thread accepter_;
  std::vector<std::thread> pumps_;
};

// The spare looked alive when taken but its request never got an answer (dropped on the way):
// the upgrade goes again, once, on a new connection, and succeeds.
TEST_F(HttpTest, AnUpgradeWhoseSpareBreaksBeforeTheAnswerIsSentAgainOnANewConnection) {
  absl::StatusOr<testing::TestPki> pki = StartMutualTlsServer("http-spare-retry");
  ASSERT_TRUE(pki.ok()) << pki.status();
  IdleDroppingRelay relay(server_->port(), absl::Milliseconds(300));
  SpareClient client({1, absl::Seconds(30)}, TlsClient(*pki, relay.port()));
  absl::Status status;
  ASSERT_NE(client.Upgrade(&status), nullptr) << status;
  ASSERT_TRUE(client.WaitForReady(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::shared_ptr<ClientRecorder> h = client.Upgrade(&status);
  ASSERT_NE(h, nullptr) << status;
  EXPECT_TRUE(h->Echoes("sent again"));
  EXPECT_EQ(client.Count("used"), 1);
  EXPECT_EQ(client.Count("retried"), 1);
  EXPECT_EQ(relay.dropped(), 1);
}

// A WebSocket server on loopback that writes raw frames: once the client is open (Opened),
// each script step waits its delay, then sends its bytes with one write, so all the frames of a
// step arrive together. It holds the connection until Stop.
class RawFrameServer {
 public:
  struct Step {
    std::chrono::milliseconds delay;
    std::string bytes;
  };

  explicit RawFrameServer(std::vector<Step> script)
      : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}),
        thread_([this, script = std::move(script)] {
          boost::asio::ip::tcp::socket socket = acceptor_.accept();
          boost::beast::websocket::stream<boost::asio::ip::tcp::socket&> ws(socket);
          ws.accept();
          opened_.WaitForNotificationWithTimeout(absl::Seconds(10));
          for (const Step& step : script) {
            std::this_thread::sleep_for(step.delay);
            boost::asio::write(socket, boost::asio::buffer(step.bytes));
          }
          finished_.WaitForNotificationWithTimeout(absl::Seconds(10));
          boost::system::error_code ignored;
          socket.close(ignored);
        }) {}
  ~RawFrameServer() { Stop(); }

  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  void Opened() { opened_.Notify(); }
  void Stop() {
    if (!finished_.HasBeenNotified()) {
      finished_.Notify();
    }
    if (thread_.joinable()) {
      thread_.join();
    }
  }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  absl::Notification opened_;
  absl::Notification finished_;
  std::thread thread_;
};

// The async WebSocket client on an I/O thread of its own.
class AsyncClientThread {
 public:
  AsyncClientThread() : work_(boost::asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {}
  ~AsyncClientThread() { Stop(); }

  // Connects `handler` to ws://127.0.0.1:port/ws and waits for the handshake.
  absl::Status Connect(uint16_t port, std::shared_ptr<WebSocketHandler> handler) {
    AsyncClientOptions async;
    async.connection.port = port;
    async.connection.timeout = absl::Seconds(5);
    absl::Notification handshake;
    HandshakeResult result;
    ConnectWebSocket(io_, async, "/ws", {}, std::move(handler), [&](const HandshakeResult& r) {
      result = r;
      handshake.Notify();
    });
    if (!handshake.WaitForNotificationWithTimeout(absl::Seconds(10))) {
      return absl::DeadlineExceededError("no handshake within 10 s");
    }
    return result.status;
  }

  void Stop() {
    if (!thread_.joinable()) {
      return;
    }
    work_.reset();
    io_.run_for(std::chrono::milliseconds(200));
    io_.stop();
    thread_.join();
  }

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
};

// InputWaiting, asked inside OnMessage: true when part of a next message is already received,
// false when nothing is, and false when all that waits is a control frame (a server's ping),
// which would otherwise hold output behind a frame that is not output. The server writes each
// pair of frames with one write, so the second has arrived when the first is read.
TEST(HttpInputWaitingTest, ANextMessageCountsAPingAloneDoesNot) {
  // A message with a ping behind it; then a message with a message behind it; then the last.
  // The first write waits 200 ms: the client is reading by then.
  RawFrameServer server(
      {{std::chrono::milliseconds(200),
        RawFrame(0x2, std::string(64 * 1024, 'a')) + RawFrame(0x9, std::string(125, 'p'))},
       {std::chrono::milliseconds(300),
        RawFrame(0x2, std::string(64 * 1024, 'b')) + RawFrame(0x2, std::string(4096, 'c'))}});

  class Recorder : public WebSocketHandler {
   public:
    void OnOpen(std::shared_ptr<WebSocketConnection> c) override { conn = std::move(c); }
    void OnMessage(std::string_view data, bool) override {
      std::lock_guard<std::mutex> lock(mu);
      seen.push_back({data.empty() ? '?' : data[0], conn->InputWaiting()});
    }
    void OnClose(std::string) override { conn.reset(); }
    std::shared_ptr<WebSocketConnection> conn;
    std::mutex mu;
    std::vector<std::pair<char, bool>> seen;
  };
  auto recorder = std::make_shared<Recorder>();
  AsyncClientThread client;
  const absl::Status connected = client.Connect(server.port(), recorder);
  ASSERT_TRUE(connected.ok()) << connected;
  server.Opened();
  std::vector<std::pair<char, bool>> seen;
  for (int i = 0; i < 500 && seen.size() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::lock_guard<std::mutex> lock(recorder->mu);
    seen = recorder->seen;
  }
  server.Stop();
  client.Stop();
  recorder->conn.reset();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], std::make_pair('a', false)) << "a ping alone counted as a next message";
  EXPECT_EQ(seen[1], std::make_pair('b', true)) << "the message behind it was not seen waiting";
  EXPECT_EQ(seen[2], std::make_pair('c', false));
}

// The client side of the same rule: messages a server writes together reach a handler that
// resumes reading inside OnMessage each whole, in order, and unchanged while it runs.
TEST(HttpAsyncClientTest, MessagesThatArriveTogetherStayWholeWhenTheHandlerResumesReadingInside) {
  const std::vector<std::string> sent = {std::string(64 * 1024, 'a'), std::string(4096, 'b'),
                                         std::string(100, 'c'), std::string(70 * 1024, 'd')};
  std::string together;
  for (const std::string& message : sent) {
    together += RawFrame(0x2, message);
  }
  RawFrameServer server({{std::chrono::milliseconds(0), together}});

  class Resumer : public WebSocketHandler {
   public:
    void OnOpen(std::shared_ptr<WebSocketConnection> c) override { conn = std::move(c); }
    void OnMessage(std::string_view data, bool) override {
      const std::string copy(data);
      conn->PauseReading();
      conn->ResumeReading();
      std::lock_guard<std::mutex> lock(mu);
      changed_in_call += data != copy ? 1 : 0;
      received.push_back(copy);
    }
    void OnClose(std::string) override { conn.reset(); }
    std::shared_ptr<WebSocketConnection> conn;
    std::mutex mu;
    int changed_in_call = 0;
    std::vector<std::string> received;
  };
  auto resumer = std::make_shared<Resumer>();
  AsyncClientThread client;
  const absl::Status connected = client.Connect(server.port(), resumer);
  ASSERT_TRUE(connected.ok()) << connected;
  server.Opened();
  std::vector<std::string> received;
  int changed_in_call = 0;
  for (int i = 0; i < 300 && received.size() < sent.size(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::lock_guard<std::mutex> lock(resumer->mu);
    received = resumer->received;
    changed_in_call = resumer->changed_in_call;
  }
  server.Stop();
  client.Stop();
  resumer->conn.reset();
  ASSERT_EQ(received.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(received[i], sent[i]) << "message " << i;
  }
  EXPECT_EQ(changed_in_call, 0);
}

// A server that takes the upgrade request and closes without an answer: the failure names the
// broken connection; it is not reported as a refusal with an HTTP status the server never sent.
TEST_F(HttpTest, AnUpgradeThatGetsNoAnswerIsANetworkErrorNotARefusal) {
  uint16_t port = 0;
  int listener = ListenOnLoopback(&port);
  ASSERT_GE(listener, 0);
  std::thread server([listener] {
    int c = accept(listener, nullptr, nullptr);
    char buf[4096];
    (void)!read(c, buf, sizeof(buf));  // the request, then nothing
    close(c);
  });
  boost::asio::io_context client_io;
  AsyncClientOptions async;
  async.connection.port = port;
  async.connection.timeout = absl::Seconds(5);
  HandshakeResult result;
  bool done = false;
  ConnectWebSocket(client_io, async, "/ws", {"v2.test"}, std::make_shared<ClientRecorder>(),
                   [&](const HandshakeResult& r) {
                     result = r;
                     done = true;
                   });
  while (!done && client_io.run_one_for(std::chrono::seconds(5)) > 0) {
  }
  server.join();
  close(listener);
  ASSERT_TRUE(done);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kUnavailable) << result.status;
  EXPECT_THAT(result.status.message(), HasSubstr("WebSocket upgrade"));
  EXPECT_EQ(result.refusal.status, 0);
}

}  // namespace
}  // namespace podgate::http
