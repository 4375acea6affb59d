// The audit client against a scripted audit server over a real gRPC socket: acks, rejections,
// broken streams, silence and an absent server.
#include "clients/audit_client.h"

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "support/stack.h"

namespace podgate::clients {
namespace {

using podgate::audit::v1::RecordRequest;
using podgate::audit::v1::RecordResponse;

enum class Mode { kAck, kSilent, kBreakAfter3 };

class ScriptedAudit final : public podgate::audit::v1::AuditService::CallbackService {
 public:
  Mode mode = Mode::kAck;
  // Every stream ends UNAVAILABLE with this message at its first event (audit refusing, e.g. in
  // export blocking mode); empty: off.
  std::atomic<const char*> refuse_all{nullptr};
  // Says in its initial metadata that it takes batches of up to this many events, as audit
  // does (0: says nothing, as an audit that does not know batches).
  std::atomic<int> batch_max{0};
  // While set, the reactor does not read its next message (acks stop too): the client's
  // events queue up behind the message in flight.
  std::atomic<bool> hold_reads{false};

  grpc::ServerBidiReactor<RecordRequest, RecordResponse>* Record(
      grpc::CallbackServerContext* context) override {
    const int max = batch_max.load();
    if (max > 0) {
      context->AddInitialMetadata("podgate-record-batch-max", absl::StrCat(max));
    }
    return new Reactor(this, streams_++ == 0 ? mode : Mode::kAck, max > 0);
  }

  // Events per message received, in order.
  std::vector<int> message_sizes() {
    absl::MutexLock lock(&mu_);
    return message_sizes_;
  }
  // Encoded bytes per message received, in order.
  std::vector<size_t> message_bytes() {
    absl::MutexLock lock(&mu_);
    return message_bytes_;
  }

  std::map<std::string, int> received() {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  std::vector<podgate::common::v1::AuditEvent> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  class Reactor final : public grpc::ServerBidiReactor<RecordRequest, RecordResponse> {
   public:
    Reactor(ScriptedAudit* owner, Mode mode, bool batches) : owner_(owner), mode_(mode) {
      if (batches) {
        StartSendInitialMetadata();
      }
      StartRead(&req_);
    }
    void OnSendInitialMetadataDone(bool /*ok*/) override {}
    void OnReadDone(bool ok) override {
      if (!ok) {
        absl::MutexLock lock(&mu_);
        reads_done_ = true;
        MaybeFinishLocked();
        return;
      }
      while (owner_->hold_reads.load()) {
        absl::SleepFor(absl::Milliseconds(5));
      }
      std::vector<podgate::common::v1::AuditEvent> events;
      if (req_.has_batch()) {
        events.assign(req_.batch().events().begin(), req_.batch().events().end());
      } else {
        events.push_back(req_.event());
      }
      {
        absl::MutexLock lock(&owner_->mu_);
        owner_->message_sizes_.push_back(static_cast<int>(events.size()));
        owner_->message_bytes_.push_back(req_.ByteSizeLong());
      }
      for (const auto& event : events) {
        if (!OnEvent(event)) {
          return;
        }
      }
      StartRead(&req_);
    }
    // Returns false once the stream is finished.
    bool OnEvent(const podgate::common::v1::AuditEvent& event) {
      const std::string id = event.id();
      {
        absl::MutexLock lock(&owner_->mu_);
        owner_->received_[id]++;
        owner_->events_.push_back(event);
      }
      ++count_;
      if (const char* refusal = owner_->refuse_all.load(); refusal != nullptr) {
        Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, refusal));
        return false;
      }
      if (mode_ == Mode::kBreakAfter3 && count_ == 3) {
        Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "store went away"));
        return false;
      }
      if (mode_ == Mode::kAck) {
        RecordResponse res;
        if (id.rfind("bad", 0) == 0) {
          res.mutable_rejection()->set_id(id);
          res.mutable_rejection()->set_reason("kind is unspecified");
        } else {
          res.mutable_ack()->add_ids(id);
        }
        absl::MutexLock lock(&mu_);
        queue_.push_back(std::move(res));
        MaybeWriteLocked();
      }
      return true;
    }
    void OnWriteDone(bool ok) override {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      queue_.pop_front();
      MaybeWriteLocked();
      MaybeFinishLocked();
    }
    void OnDone() override { delete this; }

   private:
    void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (!writing_ && !queue_.empty()) {
        writing_ = true;
        StartWrite(&queue_.front());
      }
    }
    void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (reads_done_ && !writing_ && queue_.empty() && !finished_) {
        finished_ = true;
        Finish(grpc::Status::OK);
      }
    }
    ScriptedAudit* owner_;
    Mode mode_;
    RecordRequest req_;
    int count_ = 0;
    absl::Mutex mu_;
    std::deque<RecordResponse> queue_ ABSL_GUARDED_BY(mu_);
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
    bool finished_ ABSL_GUARDED_BY(mu_) = false;
  };

  std::atomic<int> streams_{0};
  absl::Mutex mu_;
  std::map<std::string, int> received_ ABSL_GUARDED_BY(mu_);
  std::vector<podgate::common::v1::AuditEvent> events_ ABSL_GUARDED_BY(mu_);
  std::vector<int> message_sizes_ ABSL_GUARDED_BY(mu_);
  std::vector<size_t> message_bytes_ ABSL_GUARDED_BY(mu_);
};

struct Outcome {
  absl::Mutex mu;
  std::map<std::string, absl::Status> results ABSL_GUARDED_BY(mu);

  AuditClient::Callback For(const std::string& id) {
    return [this, id](absl::Status s) {
      absl::MutexLock lock(&mu);
      results.emplace(id, std::move(s));
    };
  }
  bool WaitFor(size_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return results.size() >= n; };
    return mu.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }
  absl::Status Get(const std::string& id) {
    absl::MutexLock lock(&mu);
    return results.at(id);
  }
};

podgate::common::v1::AuditEvent Event(const std::string& id) {
  podgate::common::v1::AuditEvent e;
  e.set_id(id);
  e.set_kind(podgate::common::v1::EVENT_KIND_COMMAND_REQUEST);
  e.mutable_command_request()->set_line("jstack 1");
  return e;
}

class AuditClientTest : public ::testing::Test {
 protected:
  void StartServer(int port = 0) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat("127.0.0.1:", port), grpc::InsecureServerCredentials(),
                             &port_);
    // No BDP probing: the stream's flow-control window stays at HTTP/2's 64 KiB, so a write
    // larger than that stays in flight for as long as the server does not read (PlugTheStream),
    // however slow the machine (a sanitizer's probes once grew the window past the plug).
    builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    builder.RegisterService(&audit_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  std::unique_ptr<AuditClient> Client(AuditClientOptions options = {}) {
    options.source_service = "exec";
    if (options.ack_timeout == absl::Seconds(10)) {
      options.ack_timeout = absl::Seconds(5);
    }
    return std::make_unique<AuditClient>(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials()),
        options);
  }
  void TearDown() override {
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    }
  }

  // Declared before any client so that it outlives every callback.
  Outcome outcome;
  ScriptedAudit audit_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(AuditClientTest, AcksReachEachEventsCallbackAndFieldsAreFilled) {
  StartServer();
  auto client = Client();
  for (int i = 0; i < 50; ++i) {
    client->Record(Event(absl::StrCat("e", i)), outcome.For(absl::StrCat("e", i)));
  }
  podgate::common::v1::AuditEvent anonymous = Event("");
  client->Record(anonymous, outcome.For("anonymous"));
  ASSERT_TRUE(outcome.WaitFor(51, absl::Seconds(10)));
  for (int i = 0; i < 50; ++i) {
    EXPECT_TRUE(outcome.Get(absl::StrCat("e", i)).ok());
  }
  EXPECT_TRUE(outcome.Get("anonymous").ok());
  EXPECT_EQ(client->pending(), 0u);
  EXPECT_EQ(client->streams_opened(), 1);
  const auto events = audit_.events();
  ASSERT_EQ(events.size(), 51u);
  EXPECT_EQ(events[0].source_service(), "exec");
  EXPECT_GT(events[0].time().seconds(), 1'700'000'000);
  EXPECT_EQ(events[50].id().size(), 32u);  // a random id was assigned
}

// Starts the client's stream and waits until its first event is acked (the server's initial
// metadata, which says whether it takes batches, arrives before that ack). Then the server
// stops reading after the next event ("held"), and a "plug" of 2 MB fills the stream's
// flow-control window: its write stays in flight, and what the test records next queues behind
// it (the write completes only once all but its last 64 KiB are through a 64 KiB window: see
// StartServer). Three events in all; the test sets hold_reads to false to let everything
// through.
void PlugTheStream(ScriptedAudit* audit, AuditClient* client, Outcome* outcome) {
  client->Record(Event("first"), outcome->For("first"));
  ASSERT_TRUE(outcome->WaitFor(1, absl::Seconds(10)));
  absl::SleepFor(absl::Milliseconds(100));  // the metadata's callback, on another thread
  audit->hold_reads = true;
  client->Record(Event("held"), outcome->For("held"));
  absl::SleepFor(absl::Milliseconds(100));  // the server reads it and holds
  auto plug = Event("plug");
  plug.mutable_command_request()->set_line(std::string(2'000'000, 'p'));
  client->Record(plug, outcome->For("plug"));
}

// Events that queue while a message is in flight go out together, in order, on a stream whose
// server says it takes batches; each is still acked (or rejected) on its own.
TEST_F(AuditClientTest, EventsThatQueueBehindAWriteGoOutInBatches) {
  audit_.batch_max = 1024;
  StartServer();
  auto client = Client();
  PlugTheStream(&audit_, client.get(), &outcome);
  for (int i = 0; i < 600; ++i) {
    const std::string id = i == 300 ? "bad-300" : absl::StrCat("e", i);
    client->Record(Event(id), outcome.For(id));
  }
  absl::SleepFor(absl::Milliseconds(200));
  audit_.hold_reads = false;
  ASSERT_TRUE(outcome.WaitFor(603, absl::Seconds(10)));
  for (int i = 0; i < 600; ++i) {
    if (i != 300) {
      EXPECT_TRUE(outcome.Get(absl::StrCat("e", i)).ok()) << i;
    }
  }
  EXPECT_TRUE(outcome.Get("plug").ok());
  EXPECT_EQ(outcome.Get("bad-300").code(), absl::StatusCode::kInvalidArgument);
  const std::vector<int> sizes = audit_.message_sizes();
  ASSERT_GE(sizes.size(), 4u);
  EXPECT_THAT(std::vector<int>(sizes.begin(), sizes.begin() + 3),
              ::testing::ElementsAre(1, 1, 1));  // first, held, plug
  // The 600 queued behind the plug go out 256 to a message (the client's bound).
  const std::vector<int> rest(sizes.begin() + 3, sizes.end());
  EXPECT_THAT(rest, ::testing::ElementsAre(256, 256, 88));
  const auto events = audit_.events();
  ASSERT_EQ(events.size(), 603u);  // each once, in the order recorded
  for (int i = 0; i < 600; ++i) {
    EXPECT_EQ(events[i + 3].id(), i == 300 ? "bad-300" : absl::StrCat("e", i));
  }
}

// A batch stays under the client's byte bound of 1 MiB (audit takes 4 MiB per message): large
// events travel in smaller batches, and one larger than the bound still goes, alone.
TEST_F(AuditClientTest, ABatchStaysUnderItsByteBound) {
  audit_.batch_max = 1024;
  StartServer();
  auto client = Client();
  PlugTheStream(&audit_, client.get(), &outcome);
  for (int i = 0; i < 10; ++i) {
    auto event = Event(absl::StrCat("big", i));
    event.mutable_command_request()->set_line(std::string(i == 5 ? 1'500'000 : 300'000, 'x'));
    client->Record(event, outcome.For(absl::StrCat("big", i)));
  }
  absl::SleepFor(absl::Milliseconds(200));
  audit_.hold_reads = false;
  ASSERT_TRUE(outcome.WaitFor(13, absl::Seconds(10)));
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(outcome.Get(absl::StrCat("big", i)).ok()) << i;
  }
  // first, held, the plug, then 300 kB events three to a message (a fourth would pass 1 MiB)
  // and the 1.5 MB one alone.
  EXPECT_THAT(audit_.message_sizes(), ::testing::ElementsAre(1, 1, 1, 3, 2, 1, 3, 1));
  const std::vector<int> sizes = audit_.message_sizes();
  const std::vector<size_t> bytes = audit_.message_bytes();
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (sizes[i] > 1) {
      EXPECT_LE(bytes[i], size_t{1} << 20) << i;
    }
  }
}

// An audit that does not say it takes batches (an older version) gets one event per message.
TEST_F(AuditClientTest, AServerThatDoesNotSayItTakesBatchesGetsOneEventPerMessage) {
  StartServer();
  auto client = Client();
  PlugTheStream(&audit_, client.get(), &outcome);
  for (int i = 0; i < 50; ++i) {
    client->Record(Event(absl::StrCat("e", i)), outcome.For(absl::StrCat("e", i)));
  }
  absl::SleepFor(absl::Milliseconds(200));
  audit_.hold_reads = false;
  ASSERT_TRUE(outcome.WaitFor(53, absl::Seconds(10)));
  EXPECT_THAT(audit_.message_sizes(), ::testing::Each(1));
  EXPECT_EQ(audit_.message_sizes().size(), 53u);
}

TEST_F(AuditClientTest, RejectionIsReportedAsInvalidArgument) {
  StartServer();
  auto client = Client();
  client->Record(Event("bad-1"), outcome.For("bad-1"));
  client->Record(Event("good"), outcome.For("good"));
  ASSERT_TRUE(outcome.WaitFor(2, absl::Seconds(10)));
  EXPECT_EQ(outcome.Get("bad-1").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(outcome.Get("bad-1").message()), ::testing::HasSubstr("unspecified"));
  EXPECT_TRUE(outcome.Get("good").ok());
}

TEST_F(AuditClientTest, UnackedEventsAreResentOnANewStreamWhenOneBreaks) {
  audit_.mode = Mode::kBreakAfter3;
  StartServer();
  auto client = Client();
  for (int i = 0; i < 10; ++i) {
    client->Record(Event(absl::StrCat("e", i)), outcome.For(absl::StrCat("e", i)));
  }
  ASSERT_TRUE(outcome.WaitFor(10, absl::Seconds(10)));
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(outcome.Get(absl::StrCat("e", i)).ok()) << i;
  }
  EXPECT_GE(client->streams_opened(), 2);
  const auto received = audit_.received();
  EXPECT_EQ(received.at("e0"), 2);  // sent on the broken stream, then again
  for (int i = 0; i < 10; ++i) {
    EXPECT_GE(received.at(absl::StrCat("e", i)), 1);
  }
}

TEST_F(AuditClientTest, SilenceEndsInDeadlineExceeded) {
  audit_.mode = Mode::kSilent;
  StartServer();
  AuditClientOptions options;
  options.ack_timeout = absl::Milliseconds(300);
  auto client = Client(options);
  const absl::Time start = absl::Now();
  client->Record(Event("e1"), outcome.For("e1"));
  ASSERT_TRUE(outcome.WaitFor(1, absl::Seconds(5)));
  EXPECT_EQ(outcome.Get("e1").code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(290));
  // The caller stopped waiting; the event did not stop trying.
  EXPECT_EQ(client->pending(), 1u);
}

TEST_F(AuditClientTest, ATimeoutSaysWhyAuditEndedTheStream) {
  audit_.refuse_all = "export sink siem lags 12 records (bound 10)";
  StartServer();
  AuditClientOptions options;
  options.ack_timeout = absl::Milliseconds(500);
  auto client = Client(options);
  client->Record(Event("e1"), outcome.For("e1"));
  ASSERT_TRUE(outcome.WaitFor(1, absl::Seconds(5)));
  EXPECT_EQ(outcome.Get("e1").code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(outcome.Get("e1").message()),
              ::testing::HasSubstr("(audit said: export sink siem lags 12 records (bound 10))"));
  // Audit accepts again: the event, still waiting, is resent and acked.
  audit_.refuse_all = nullptr;
  for (int i = 0; i < 100 && client->pending() > 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(client->pending(), 0u);
}

// Events exec records without waiting (results, requests, closes) were dropped when their ack
// timeout passed during an audit restart: users saw exit 0 while audit had no result. An event
// now waits for its ack however long it takes, within the max_pending bound.
TEST_F(AuditClientTest, AnEventWhoseCallerStoppedWaitingIsDeliveredWhenAuditReturns) {
  audit_.mode = Mode::kSilent;
  StartServer();
  AuditClientOptions options;
  options.ack_timeout = absl::Milliseconds(300);
  options.initial_backoff = absl::Milliseconds(50);
  options.max_backoff = absl::Milliseconds(200);
  auto client = Client(options);
  client->Record(Event("e1"), outcome.For("e1"));
  client->Record(Event("e2"), outcome.For("e2"));
  ASSERT_TRUE(outcome.WaitFor(2, absl::Seconds(5)));
  EXPECT_EQ(outcome.Get("e1").code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(client->pending(), 2u);
  // Audit restarts: the silent stream breaks, and the events go out on the next one.
  const int port = port_;
  server_->Shutdown(std::chrono::system_clock::now());
  server_.reset();
  StartServer(port);
  for (int i = 0; i < 200 && client->pending() > 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(client->pending(), 0u);
  EXPECT_EQ(client->acked_late(), 2);
  const auto received = audit_.received();
  EXPECT_GE(received.at("e1"), 2);
  EXPECT_GE(received.at("e2"), 2);
}

TEST_F(AuditClientTest, EventsPastTheirCallersTimeoutStillCountAgainstTheBound) {
  audit_.mode = Mode::kSilent;
  StartServer();
  AuditClientOptions options;
  options.max_pending = 2;
  options.ack_timeout = absl::Milliseconds(100);
  auto client = Client(options);
  client->Record(Event("a"), outcome.For("a"));
  EXPECT_FALSE(client->saturated());
  client->Record(Event("b"), outcome.For("b"));
  ASSERT_TRUE(outcome.WaitFor(2, absl::Seconds(5)));
  EXPECT_TRUE(client->saturated());
  client->Record(Event("c"), outcome.For("c"));
  ASSERT_TRUE(outcome.WaitFor(3, absl::Seconds(5)));
  EXPECT_EQ(outcome.Get("c").code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(AuditClientTest, TooManyWaitingEventsFailAtOnce) {
  audit_.mode = Mode::kSilent;
  StartServer();
  AuditClientOptions options;
  options.max_pending = 2;
  auto client = Client(options);
  client->Record(Event("a"), outcome.For("a"));
  client->Record(Event("b"), outcome.For("b"));
  client->Record(Event("c"), outcome.For("c"));
  ASSERT_TRUE(outcome.WaitFor(1, absl::Seconds(1)));
  EXPECT_EQ(outcome.Get("c").code(), absl::StatusCode::kResourceExhausted);
  client->Record(Event("a"), outcome.For("dup"));
  ASSERT_TRUE(outcome.WaitFor(2, absl::Seconds(1)));
  EXPECT_EQ(outcome.Get("dup").code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(AuditClientTest, AnImmediateOutcomeIsNeverDeliveredInsideRecord) {
  audit_.mode = Mode::kSilent;
  StartServer();
  AuditClientOptions options;
  options.max_pending = 1;
  auto client = Client(options);
  client->Record(Event("a"), outcome.For("a"));
  // Callers hold their own locks around Record; a callback taking that lock must not run here.
  std::mutex caller_lock;
  std::atomic<bool> ran_inside{false};
  absl::Notification delivered;
  // Outside the block: the callback runs on another thread after the block ends (ASan found it
  // reading `caller` out of scope).
  const std::thread::id caller = std::this_thread::get_id();
  {
    std::lock_guard<std::mutex> hold(caller_lock);
    client->Record(Event("b"), [&](absl::Status s) {
      ran_inside = std::this_thread::get_id() == caller;
      {
        std::lock_guard<std::mutex> l(caller_lock);
        EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
      }
      // Last: once notified, the test may return and `caller_lock` (on its stack) go (TSan saw
      // the unlock after the notification race with the stack's reuse).
      delivered.Notify();
    });
  }
  ASSERT_TRUE(delivered.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_FALSE(ran_inside);
}

TEST_F(AuditClientTest, DuplicateIdWhileWaitingIsRefused) {
  audit_.mode = Mode::kSilent;
  StartServer();
  auto client = Client();
  client->Record(Event("a"), outcome.For("first"));
  client->Record(Event("a"), outcome.For("second"));
  ASSERT_TRUE(outcome.WaitFor(1, absl::Seconds(1)));
  EXPECT_EQ(outcome.Get("second").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AuditClientTest, EventsWaitForAServerThatComesUpLater) {
  // A port that refuses connections for a while (held, so nothing else takes it meanwhile).
  testing::ReservedPort reserved;
  const int port = reserved.port();
  port_ = port;
  auto client = Client();
  client->Record(Event("early"), outcome.For("early"));
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_FALSE(outcome.WaitFor(1, absl::ZeroDuration()));
  reserved.Release();
  StartServer(port);
  ASSERT_TRUE(outcome.WaitFor(1, absl::Seconds(5)));
  EXPECT_TRUE(outcome.Get("early").ok());
  EXPECT_EQ(audit_.received().at("early"), 1);
}

TEST_F(AuditClientTest, DestructionCancelsWaitingEvents) {
  audit_.mode = Mode::kSilent;
  StartServer();
  auto client = Client();
  client->Record(Event("a"), outcome.For("a"));
  absl::SleepFor(absl::Milliseconds(100));
  client.reset();
  ASSERT_TRUE(outcome.WaitFor(1, absl::Seconds(1)));
  EXPECT_EQ(outcome.Get("a").code(), absl::StatusCode::kCancelled);
}

// exec crashed at exit with a double free in gRPC (grpc_cq_internal_unref on a callback
// thread): the client's stub, and with it the last reference to the channel, lived in the
// stream's state, which a stream's OnDone releases last on gRPC's callback thread after
// CloseAndWait has seen the stream end. A grpc::Channel destroyed there releases gRPC's shared
// callback completion queue, which joins and frees its own threads, the current one included.
// The client must give the channel back when its destructor returns, on the destroying thread.
TEST_F(AuditClientTest, TheChannelIsReleasedByTheThreadThatDestroysTheClient) {
  StartServer();
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials());
  AuditClientOptions options;
  options.source_service = "exec";
  // The race the bug needs is narrow: many rounds make a release on the wrong thread likely.
  for (int round = 0; round < 200; ++round) {
    std::atomic<bool> released{false};
    std::thread::id released_on;
    {
      // Shares `channel`'s object; its deleter notes where the client's last reference went.
      std::shared_ptr<grpc::Channel> tracked(channel.get(),
                                             [channel, &released, &released_on](grpc::Channel*) {
                                               released_on = std::this_thread::get_id();
                                               released.store(true, std::memory_order_release);
                                             });
      AuditClient client(std::move(tracked), options);
      const std::string id = absl::StrCat("r", round);
      client.Record(Event(id), outcome.For(id));
      ASSERT_TRUE(outcome.WaitFor(static_cast<size_t>(round) + 1, absl::Seconds(5)));
    }
    ASSERT_TRUE(released.load(std::memory_order_acquire))
        << "round " << round << ": the channel outlived its client";
    ASSERT_EQ(released_on, std::this_thread::get_id())
        << "round " << round << ": the channel was released on another thread";
    // The stream's call context holds the channel too (grpc::ClientContext keeps it): it must be
    // gone as well, or the last reference may still be dropped on a gRPC thread.
    ASSERT_EQ(channel.use_count(), 1)
        << "round " << round << ": a call context outlived the client";
  }
}

}  // namespace
}  // namespace podgate::clients
