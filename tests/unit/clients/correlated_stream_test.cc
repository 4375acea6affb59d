// The correlated stream over a real gRPC socket, with the runtime tests' echo service as the
// peer: a request's text is its id and its echo settles it. Silence is the client ignoring
// echoes; a broken stream is the server shutting down.
#include "clients/correlated_stream.h"

#include <atomic>
#include <mutex>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "echo.grpc.pb.h"
#include "echo_service.h"
#include "gtest/gtest.h"
#include "runtime/server.h"
#include "support/grpc_health.h"

namespace podgate::clients {
namespace {

using ::podgate::testing::v1::EchoRequest;
using ::podgate::testing::v1::EchoResponse;

// What the tests control and see of the peer: while `deaf` is set, echoes are ignored (the peer
// seems silent) and counted.
struct Hearing {
  std::atomic<bool> deaf{false};
  std::atomic<int> ignored{0};
};

// Echo as a correlated stream. `resend`: an entry whose stream broke is sent again, else it
// fails.
class EchoProtocol {
 public:
  using Request = EchoRequest;
  using Response = EchoResponse;
  using Result = absl::StatusOr<std::string>;

  EchoProtocol(const std::shared_ptr<grpc::Channel>& channel, bool resend,
               std::shared_ptr<Hearing> hearing)
      : stub_(podgate::testing::v1::EchoService::NewStub(channel)),
        resend_(resend),
        hearing_(std::move(hearing)) {}

  // The errors first: the tests check their wording.
  absl::Status Closing() const { return absl::CancelledError("closing"); }
  absl::Status TimedOut(absl::Duration timeout) const {
    return absl::DeadlineExceededError(
        absl::StrCat("no echo within ", absl::FormatDuration(timeout)));
  }
  void Open(grpc::ClientContext* context,
            grpc::ClientBidiReactor<EchoRequest, EchoResponse>* reactor) const {
    stub_->async()->Echo(context, reactor);
  }
  std::string IdOf(const EchoRequest& request) const { return request.text(); }
  bool Settle(const EchoResponse& response,
              std::vector<std::pair<std::string, Result>>* settled) const {
    if (hearing_->deaf.load()) {
      ++hearing_->ignored;
      return false;
    }
    settled->emplace_back(response.text(), response.text());
    return true;
  }
  std::optional<absl::Status> OnBreak(const EchoRequest& /*request*/) const {
    if (resend_) {
      return std::nullopt;
    }
    return absl::UnavailableError("the echo stream broke");
  }

 private:
  std::unique_ptr<podgate::testing::v1::EchoService::Stub> stub_;
  const bool resend_;
  const std::shared_ptr<Hearing> hearing_;
};

using EchoStream = CorrelatedStream<EchoProtocol>;

EchoRequest Text(const std::string& text) {
  EchoRequest request;
  request.set_text(text);
  return request;
}

// Outcomes in the order their callbacks ran, with the thread each ran on.
class Arrivals {
 public:
  struct Arrival {
    std::string id;
    EchoProtocol::Result result;
    std::thread::id thread;
  };

  // Records the outcome for `id`, taking `caller_lock` first when given (a callback run under
  // the caller's lock would deadlock here). The caller's lock is released before the outcome is
  // recorded: once AwaitCount has seen it, the test may end and destroy that lock (ThreadSanitizer
  // saw the timer thread unlock it after the fixture was gone).
  EchoStream::Callback For(std::string id, std::mutex* caller_lock = nullptr) {
    return [this, id = std::move(id), caller_lock](EchoProtocol::Result result) {
      if (caller_lock != nullptr) {
        std::lock_guard<std::mutex> caller(*caller_lock);
      }
      absl::MutexLock lock(&mu_);
      list_.push_back({id, std::move(result), std::this_thread::get_id()});
    };
  }
  std::vector<Arrival> AwaitCount(size_t count, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return list_.size() >= count; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
    return list_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Arrival> list_ ABSL_GUARDED_BY(mu_);
};

class CorrelatedStreamTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(0); }
  void TearDown() override {
    if (stream_ != nullptr) {
      stream_->CloseAndWait();
    }
    if (server_ != nullptr) {
      server_->Shutdown();
    }
  }

  void StartServer(int port) {
    runtime::ServerOptions options;
    options.service_name = "echo";
    options.grpc_address = absl::StrCat("127.0.0.1:", port);
    // Echo streams end only when the client half-closes: shutdown cancels them after this.
    options.drain_timeout = absl::Milliseconds(100);
    auto server =
        runtime::Server::Start(options, {&echo_}, std::make_shared<prometheus::Registry>());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    port_ = server_->grpc_port();
  }
  // Breaks every open stream.
  void StopServer() {
    server_->Shutdown();
    server_.reset();
  }
  // Waits until `count` echoes have been ignored.
  void AwaitIgnored(int count) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (hearing_->ignored.load() < count && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    ASSERT_EQ(hearing_->ignored.load(), count);
  }
  EchoStream& Open(bool resend, CorrelatedStreamOptions options = {}) {
    channel_ = podgate::testing::LocalChannel(port_);
    stream_ = std::make_unique<EchoStream>(EchoProtocol(channel_, resend, hearing_), options,
                                           &runtime::TimerQueue::Default());
    return *stream_;
  }

  Arrivals arrivals_;
  // A lock of the caller's that its callbacks take.
  std::mutex caller_lock_;
  std::shared_ptr<Hearing> hearing_ = std::make_shared<Hearing>();
  podgate::testing::EchoServiceImpl echo_;
  std::unique_ptr<runtime::Server> server_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<EchoStream> stream_;
};

TEST_F(CorrelatedStreamTest, EchoesSettleTheirEntriesInOrderOnOneStream) {
  EchoStream& stream = Open(/*resend=*/false);
  for (int i = 0; i < 20; ++i) {
    stream.Submit(Text(absl::StrCat("q", i)), absl::Seconds(10),
                  arrivals_.For(absl::StrCat("q", i)));
  }
  const auto arrived = arrivals_.AwaitCount(20);
  ASSERT_EQ(arrived.size(), 20u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(arrived[i].id, absl::StrCat("q", i));
    ASSERT_TRUE(arrived[i].result.ok()) << arrived[i].result.status();
    EXPECT_EQ(*arrived[i].result, arrived[i].id);
  }
  EXPECT_EQ(stream.pending(), 0u);
  EXPECT_EQ(stream.streams_opened(), 1);
}

TEST_F(CorrelatedStreamTest, SilenceEndsInTheEntrysTimeout) {
  EchoStream& stream = Open(/*resend=*/false);
  hearing_->deaf = true;
  const absl::Time start = absl::Now();
  stream.Submit(Text("a"), absl::Milliseconds(300), arrivals_.For("a"));
  const auto arrived = arrivals_.AwaitCount(1);
  ASSERT_EQ(arrived.size(), 1u);
  EXPECT_EQ(arrived[0].result.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(arrived[0].result.status().message(), "no echo within 300ms");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(290));
  EXPECT_EQ(stream.pending(), 0u);
}

TEST_F(CorrelatedStreamTest, RefusalsArriveOnTheTimerThreadNeverInsideSubmit) {
  CorrelatedStreamOptions options;
  options.max_pending = 2;
  EchoStream& stream = Open(/*resend=*/false, options);
  hearing_->deaf = true;
  // A caller holds its own lock around Submit, and its callbacks take that lock.
  {
    std::lock_guard<std::mutex> hold(caller_lock_);
    auto locked = [&](const std::string& id) { return arrivals_.For(id, &caller_lock_); };
    stream.Submit(Text("a"), absl::Seconds(10), locked("a"));
    stream.Submit(Text("a"), absl::Seconds(10), locked("a again"));
    stream.Submit(Text("b"), absl::Seconds(10), locked("b"));
    stream.Submit(Text("c"), absl::Seconds(10), locked("c"));
  }
  const auto arrived = arrivals_.AwaitCount(2);
  ASSERT_EQ(arrived.size(), 2u);
  EXPECT_EQ(arrived[0].id, "a again");
  EXPECT_EQ(arrived[0].result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(arrived[0].result.status().message(), "id a is already waiting");
  EXPECT_EQ(arrived[1].id, "c");
  EXPECT_EQ(arrived[1].result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(arrived[1].result.status().message(), "2 requests already wait (limit 2)");
  for (const auto& a : arrived) {
    EXPECT_NE(a.thread, std::this_thread::get_id()) << a.id;
  }
  EXPECT_EQ(stream.pending(), 2u);
}

TEST_F(CorrelatedStreamTest, ABrokenStreamFailsWhatWaitedAndTheNextSubmitReopens) {
  EchoStream& stream = Open(/*resend=*/false);
  hearing_->deaf = true;
  stream.Submit(Text("a"), absl::Seconds(30), arrivals_.For("a"));
  stream.Submit(Text("b"), absl::Seconds(30), arrivals_.For("b"));
  AwaitIgnored(2);
  StopServer();
  auto arrived = arrivals_.AwaitCount(2, absl::Seconds(5));
  ASSERT_EQ(arrived.size(), 2u);
  for (const auto& a : arrived) {
    EXPECT_EQ(a.result.status().code(), absl::StatusCode::kUnavailable) << a.id;
    EXPECT_EQ(a.result.status().message(), "the echo stream broke");
  }
  EXPECT_EQ(stream.pending(), 0u);
  EXPECT_EQ(stream.streams_opened(), 1);  // nothing to send again: no reconnect

  StartServer(port_);
  hearing_->deaf = false;
  // A stream opened while the channel waits to reconnect would break at once, and fail.
  ASSERT_TRUE(channel_->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(10))));
  stream.Submit(Text("c"), absl::Seconds(10), arrivals_.For("c"));
  arrived = arrivals_.AwaitCount(3);
  ASSERT_EQ(arrived.size(), 3u);
  EXPECT_TRUE(arrived[2].result.ok()) << arrived[2].result.status();
  EXPECT_EQ(stream.streams_opened(), 2);
}

TEST_F(CorrelatedStreamTest, ABrokenStreamSendsWhatWaitedAgainOldestFirst) {
  CorrelatedStreamOptions options;
  options.initial_backoff = absl::Milliseconds(50);
  options.max_backoff = absl::Milliseconds(200);
  EchoStream& stream = Open(/*resend=*/true, options);
  hearing_->deaf = true;
  for (const char* id : {"a", "b", "c"}) {
    stream.Submit(Text(id), absl::Seconds(30), arrivals_.For(id));
  }
  AwaitIgnored(3);  // so they were written on the stream that breaks
  StopServer();
  EXPECT_EQ(stream.pending(), 3u);
  hearing_->deaf = false;
  StartServer(port_);
  const auto arrived = arrivals_.AwaitCount(3, absl::Seconds(20));
  ASSERT_EQ(arrived.size(), 3u);
  EXPECT_EQ(arrived[0].id, "a");
  EXPECT_EQ(arrived[1].id, "b");
  EXPECT_EQ(arrived[2].id, "c");
  for (const auto& a : arrived) {
    EXPECT_TRUE(a.result.ok()) << a.id << ": " << a.result.status();
  }
  EXPECT_GE(stream.streams_opened(), 2);
  EXPECT_EQ(stream.pending(), 0u);
}

TEST_F(CorrelatedStreamTest, CloseAnswersWhatWaitsOnTheTimerThread) {
  EchoStream& stream = Open(/*resend=*/true);
  hearing_->deaf = true;
  // The owner may close under a lock that the callbacks take.
  stream.Submit(Text("a"), absl::Seconds(30), arrivals_.For("a", &caller_lock_));
  {
    std::lock_guard<std::mutex> hold(caller_lock_);
    stream.Close();
    EXPECT_EQ(stream.pending(), 0u);
    stream.Submit(Text("b"), absl::Seconds(30), arrivals_.For("b", &caller_lock_));
  }
  const auto arrived = arrivals_.AwaitCount(2);
  ASSERT_EQ(arrived.size(), 2u);
  for (const auto& a : arrived) {
    EXPECT_EQ(a.result.status().code(), absl::StatusCode::kCancelled) << a.id;
    EXPECT_EQ(a.result.status().message(), "closing");
    EXPECT_NE(a.thread, std::this_thread::get_id()) << a.id;
  }
}

TEST_F(CorrelatedStreamTest, CloseAndWaitAnswersWhatWaitsBeforeItReturns) {
  EchoStream& stream = Open(/*resend=*/true);
  hearing_->deaf = true;
  stream.Submit(Text("a"), absl::Seconds(30), arrivals_.For("a"));
  stream.CloseAndWait();
  const auto arrived = arrivals_.AwaitCount(1, absl::ZeroDuration());
  ASSERT_EQ(arrived.size(), 1u);
  EXPECT_EQ(arrived[0].result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(arrived[0].thread, std::this_thread::get_id());
}

}  // namespace
}  // namespace podgate::clients
