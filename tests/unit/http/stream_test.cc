// Streamed (chunked) responses of the shared HTTP server against real sockets: chunks arrive
// as the producer writes them and the body ends with the last chunk; the producer learns when
// the peer leaves; a peer that stops reading is cut off at the hard limit instead of growing
// the queue.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "http/server.h"

namespace podgate::http {
namespace {

using ::testing::HasSubstr;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;

class Producer : public StreamProducer {
 public:
  void OnStart(std::shared_ptr<ResponseStream> s) override {
    absl::MutexLock lock(&mu);
    stream = std::move(s);
    started.Notify();
  }
  void OnWritable() override { ++writable; }
  void OnClose(std::string r) override {
    {
      absl::MutexLock lock(&mu);
      reason = std::move(r);
      stream.reset();
    }
    closed.Notify();
  }
  std::shared_ptr<ResponseStream> Stream() {
    absl::MutexLock lock(&mu);
    return stream;
  }

  absl::Mutex mu;
  std::shared_ptr<ResponseStream> stream;
  std::string reason;
  std::atomic<int> writable{0};
  absl::Notification started;
  absl::Notification closed;
};

class StreamTest : public ::testing::Test {
 protected:
  void Start(ServerOptions options = {}) {
    auto server =
        Server::Start(io_, options, [this](const Request& req, const RequestContext&, bool) {
          RouteResult r;
          r.response = MakeResponse(req, bhttp::status::ok, "text/event-stream", "ignored");
          r.stream = producer_;
          return r;
        });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    server_->Stop();
    io_.stop();
    thread_.join();
  }

  net::ip::tcp::socket Connect() {
    net::ip::tcp::socket socket(client_io_);
    socket.connect({net::ip::make_address("127.0.0.1"), server_->port()});
    const std::string request = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
    net::write(socket, net::buffer(request));
    return socket;
  }

  std::shared_ptr<Producer> producer_ = std::make_shared<Producer>();
  net::io_context io_;
  net::io_context client_io_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
};

TEST_F(StreamTest, ChunksArriveAsWrittenAndEndCloses) {
  Start();
  auto socket = Connect();
  ASSERT_TRUE(producer_->started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  producer_->Stream()->Write("data: one\n\n");
  producer_->Stream()->Write("data: two\n\n");
  producer_->Stream()->End();
  std::string all;
  boost::system::error_code ec;
  char buf[1024];
  while (!ec) {
    size_t n = socket.read_some(net::buffer(buf), ec);
    all.append(buf, n);
  }
  EXPECT_EQ(ec, net::error::eof);
  EXPECT_THAT(all, HasSubstr("HTTP/1.1 200 OK"));
  EXPECT_THAT(all, HasSubstr("Transfer-Encoding: chunked"));
  EXPECT_THAT(all, HasSubstr("Content-Type: text/event-stream"));
  EXPECT_THAT(all, ::testing::Not(HasSubstr("ignored")));
  EXPECT_THAT(all, HasSubstr("b\r\ndata: one\n\n\r\nb\r\ndata: two\n\n\r\n0\r\n\r\n"));
  ASSERT_TRUE(producer_->closed.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(producer_->reason, "ended");
  EXPECT_EQ(server_->stats().streams_started.load(), 1u);
}

TEST_F(StreamTest, TheProducerLearnsWhenThePeerLeaves) {
  Start();
  {
    auto socket = Connect();
    ASSERT_TRUE(producer_->started.WaitForNotificationWithTimeout(absl::Seconds(10)));
    producer_->Stream()->Write("data: x\n\n");
  }  // closed without reading
  ASSERT_TRUE(producer_->closed.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(producer_->reason.empty());
}

TEST_F(StreamTest, APeerThatStopsReadingIsCutOffAtTheHardLimit) {
  ServerOptions o;
  o.write_high_watermark_bytes = 64 * 1024;
  o.write_hard_limit_bytes = 256 * 1024;
  Start(o);
  auto socket = Connect();  // never read
  ASSERT_TRUE(producer_->started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  const std::string chunk(16 * 1024, 'x');
  bool saw_backpressure = false;
  // Far more than the socket buffers hold: the queue must hit the hard limit.
  for (int i = 0; i < 200000 && !producer_->closed.HasBeenNotified(); ++i) {
    std::shared_ptr<ResponseStream> s = producer_->Stream();
    if (s == nullptr) {
      break;
    }
    if (!s->Write(chunk)) {
      saw_backpressure = true;
      EXPECT_LE(s->queued_bytes(), o.write_hard_limit_bytes);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  EXPECT_TRUE(saw_backpressure);
  ASSERT_TRUE(producer_->closed.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(producer_->reason, "peer too slow");
  EXPECT_EQ(server_->stats().stream_slow_peer_closes.load(), 1u);
}

}  // namespace
}  // namespace podgate::http
