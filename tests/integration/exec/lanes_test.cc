// exec's Sessions stream (many sessions as lanes of one gRPC stream) through real podgate-exec,
// podgate-policy and podgate-audit processes against kubesim: sessions side by side on one
// stream, a reader that stops reading holds up only its own lane, a client that ignores its
// window loses only that lane, malformed streams are refused, a half-close or a break reaches
// every session, and a shutdown ends even an idle stream. (The whole exec suite also runs over
// lanes: the "lanes." tests.)
#include <atomic>
#include <csignal>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "support/audit_records.h"
#include "support/exec_lanes.h"
#include "support/exec_session.h"
#include "support/prometheus_text.h"
#include "support/stack.h"
#include "support/subprocess.h"

namespace podgate {
namespace {

using ::testing::HasSubstr;
namespace common = podgate::common::v1;
namespace pb = podgate::exec::v1;
using testing::ExecLanes;
using testing::ExecSession;

constexpr char kCluster[] = R"(namespaces:
  - name: team
pods:
  - name: app-1
    namespace: team
    containers:
      - name: main
        image: demo/app:1
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec, namespaces]
    namespaces: ["*"]
)";

constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
defaults: {timeLimit: 60s, outputLimitBytes: 67108864}
rules:
  - id: admins-anything
    effect: allow
    subjects: {groups: [admins]}
    targets: {namespaces: [team]}
    superuser: true
    allowProgramRunners: true  # the tests drive the pod with sh -c
)";

class ExecLanesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::StackOptions options;
    options.binaries = {PODGATE_KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN,
                        PODGATE_EXEC_BIN};
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    options.exec_flags = {"--interrupt_grace=1s", "--max_sessions_per_user=20"};
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  static double Sample(const std::string& sample) {
    return testing::MetricSample(stack_->exec_metrics_port(), sample);
  }
  static double Count(const std::string& sample) { return std::max(0.0, Sample(sample)); }
  // Waits up to 10 s for `sample` to read `want`.
  static bool WaitForSample(const std::string& sample, double want) {
    for (int i = 0; i < 200; ++i) {
      if (Sample(sample) == want) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }
  static std::shared_ptr<ExecLanes> NewStream() {
    return std::make_shared<ExecLanes>(testing::LoopbackChannel(stack_->exec_port()));
  }
  // The reason of the session's SESSION_CLOSE record, once audit has it.
  static common::CloseReason CloseReasonOf(const std::string& session_id) {
    auto events = testing::AuditEventsOf(stack_->audit_port(), session_id,
                                         common::EVENT_KIND_SESSION_CLOSE, 1);
    return events.empty() ? common::CLOSE_REASON_UNSPECIFIED : events[0].session_close().reason();
  }

  static testing::Stack* stack_;
};
testing::Stack* ExecLanesTest::stack_ = nullptr;

TEST_F(ExecLanesTest, SessionsOnOneStreamRunSideBySideEachWithItsOwnUserAndOutput) {
  auto lanes = NewStream();
  ExecSession alice(lanes->Open());
  ExecSession bob(lanes->Open());
  auto a = alice.Open(stack_->Token("alice", {"admins"}), "team", "app-1");
  auto b = bob.Open(stack_->Token("bob", {"admins"}), "team", "app-1");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(a->session_id(), b->session_id());
  EXPECT_EQ(a->principal().user(), "alice");
  EXPECT_EQ(b->principal().user(), "bob");
  EXPECT_EQ(Sample("podgate_exec_session_streams"), 1);
  EXPECT_EQ(Sample("podgate_exec_session_lanes"), 2);

  // Both run at once: each command waits for a file only the other creates.
  const std::string dir = "/tmp";
  const std::string tag = absl::StrCat(getpid(), "-", absl::ToUnixNanos(absl::Now()));
  alice.Command(absl::StrCat("sh -c 'touch ", dir, "/a-", tag, "; while [ ! -e ", dir, "/b-", tag,
                             " ]; do sleep 0.05; done; echo alice-done'"),
                "a1");
  bob.Command(absl::StrCat("sh -c 'touch ", dir, "/b-", tag, "; while [ ! -e ", dir, "/a-", tag,
                           " ]; do sleep 0.05; done; echo bob-done'"),
              "b1");
  testing::CommandOutcome ra = alice.Wait();
  testing::CommandOutcome rb = bob.Wait();
  ASSERT_TRUE(ra.exit.has_value());
  ASSERT_TRUE(rb.exit.has_value());
  EXPECT_EQ(ra.stdout_text, "alice-done\n");
  EXPECT_EQ(rb.stdout_text, "bob-done\n");
  EXPECT_EQ(ra.exit->command_id(), "a1");
  EXPECT_EQ(rb.exit->command_id(), "b1");

  EXPECT_EQ(alice.Close(), common::CLOSE_REASON_CLIENT);
  EXPECT_TRUE(WaitForSample("podgate_exec_session_lanes", 1));
  // The other session is untouched by the first one's end.
  testing::CommandOutcome again = bob.Run("echo still-here");
  ASSERT_TRUE(again.exit.has_value());
  EXPECT_EQ(again.stdout_text, "still-here\n");
  grpc::Status status;
  EXPECT_EQ(bob.Close(&status), common::CLOSE_REASON_CLIENT);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(WaitForSample("podgate_exec_session_lanes", 0));
  EXPECT_EQ(CloseReasonOf(a->session_id()), common::CLOSE_REASON_CLIENT);
  EXPECT_EQ(CloseReasonOf(b->session_id()), common::CLOSE_REASON_CLIENT);
  // The stream outlives its lanes, and a new lane opens on it.
  ExecSession carol(lanes->Open());
  auto c = carol.Open(stack_->Token("carol", {"admins"}), "team", "app-1");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(carol.Close(), common::CLOSE_REASON_CLIENT);
}

TEST_F(ExecLanesTest, ManyLanesOpenedAtOnceFromSeveralThreadsAllAnswer) {
  auto lanes = NewStream();
  // Sessions that open, run a command and close first, one after another.
  for (int i = 0; i < 10; ++i) {
    ExecSession s(lanes->Open(absl::Seconds(20)));
    ASSERT_TRUE(s.Open(stack_->Token("first", {"admins"}), "team", "app-1").ok()) << i;
    testing::CommandOutcome r = s.Run("echo warm");
    ASSERT_TRUE(r.exit.has_value()) << i;
    ASSERT_EQ(s.Close(), common::CLOSE_REASON_CLIENT) << i;
  }
  constexpr int kThreads = 4;
  constexpr int kEach = 15;
  std::vector<std::unique_ptr<ExecSession>> held(kThreads * kEach);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string token = stack_->Token(absl::StrCat("user", t), {"admins"});
      for (int i = 0; i < kEach; ++i) {
        auto s = std::make_unique<ExecSession>(lanes->Open(absl::Seconds(20)));
        auto ready = s->Open(token, "team", "app-1");
        if (!ready.ok()) {
          ADD_FAILURE() << "thread " << t << " session " << i << ": " << ready.status();
          ++failures;
          return;
        }
        held[static_cast<size_t>(t * kEach + i)] = std::move(s);
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  ASSERT_EQ(failures.load(), 0);
  EXPECT_EQ(Sample("podgate_exec_session_lanes"), kThreads * kEach);
  EXPECT_EQ(Sample("podgate_exec_session_streams"), 1);
  for (size_t i = 0; i < held.size(); i += 7) {
    testing::CommandOutcome r = held[i]->Run(absl::StrCat("echo n", i));
    ASSERT_TRUE(r.exit.has_value()) << i;
    EXPECT_EQ(r.stdout_text, absl::StrCat("n", i, "\n"));
  }
  held.clear();  // each lane cancelled
  EXPECT_TRUE(WaitForSample("podgate_exec_session_lanes", 0));
}

TEST_F(ExecLanesTest, AReaderThatStopsReadingHoldsUpOnlyItsOwnLaneAndLosesNothing) {
  auto lanes = NewStream();
  ExecSession slow(lanes->Open());
  ExecSession quick(lanes->Open());
  const std::string token = stack_->Token("alice", {"admins"});
  ASSERT_TRUE(slow.Open(token, "team", "app-1").ok());
  ASSERT_TRUE(quick.Open(token, "team", "app-1").ok());
  // 8 MiB of output that the slow lane's reader does not read for now.
  constexpr int64_t kBytes = 8 * 1024 * 1024;
  slow.Command(absl::StrCat("head -c ", kBytes, " /dev/zero"), "big");
  absl::SleepFor(absl::Seconds(1));
  // The other lane answers meanwhile, command after command.
  for (int i = 0; i < 5; ++i) {
    testing::CommandOutcome r = quick.Run(absl::StrCat("echo quick-", i));
    ASSERT_TRUE(r.exit.has_value()) << i;
    EXPECT_EQ(r.stdout_text, absl::StrCat("quick-", i, "\n"));
  }
  // Now the slow reader reads: every byte arrives, and the command ended normally.
  int64_t seen = 0;
  testing::CommandOutcome big = slow.Wait(&seen);
  ASSERT_TRUE(big.exit.has_value()) << big.stream_ended;
  EXPECT_EQ(big.exit->termination(), common::TERMINATION_EXITED);
  EXPECT_EQ(seen, kBytes);
  EXPECT_EQ(big.exit->output_bytes(), kBytes);
  EXPECT_EQ(slow.Close(), common::CLOSE_REASON_CLIENT);
  EXPECT_EQ(quick.Close(), common::CLOSE_REASON_CLIENT);
}

TEST_F(ExecLanesTest, ExecSendsALaneNoMoreThanItsWindowBeforeTheClientGivesCredit) {
  // A raw lane that never gives credit: what exec sends stops at the window (plus the one
  // message that may pass it), and the command waits instead of losing output.
  auto lanes = NewStream();
  const uint64_t id = lanes->NextLane();
  pb::SessionsRequest open;
  open.set_lane(id);
  open.mutable_message()->mutable_open()->mutable_credential()->set_bearer_token(
      stack_->Token("alice", {"admins"}));
  open.mutable_message()->mutable_open()->mutable_target()->set_namespace_("team");
  open.mutable_message()->mutable_open()->mutable_target()->set_pod("app-1");
  ASSERT_TRUE(lanes->WriteRaw(open));
  pb::SessionsRequest command;
  command.set_lane(id);
  command.mutable_message()->mutable_command()->set_line("head -c 8388608 /dev/zero");
  command.mutable_message()->mutable_command()->set_command_id("big");
  ASSERT_TRUE(lanes->WriteRaw(command));
  // The lane is not registered with Open, so its frames are counted as stray: their count
  // bounds what exec sent. Wait until it stops growing.
  int64_t last = -1;
  for (int i = 0; i < 50; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    const int64_t now = lanes->stray_frames();
    if (now == last && now > 0) {
      break;
    }
    last = now;
  }
  EXPECT_GT(lanes->stray_frames(), 1);  // ready and some output
  // The output window of 512 KiB in messages of at most 256 KiB: ready + at most 3 outputs.
  EXPECT_LE(lanes->stray_frames(), 4);
  EXPECT_EQ(Sample("podgate_exec_session_lanes"), 1);
  lanes->Cancel();
  EXPECT_TRUE(WaitForSample("podgate_exec_session_lanes", 0));
}

TEST_F(ExecLanesTest, AClientThatSendsPastItsWindowLosesThatLaneAndOnlyThatLane) {
  auto lanes = NewStream();
  ExecSession other(lanes->Open());
  const std::string token = stack_->Token("alice", {"admins"});
  ASSERT_TRUE(other.Open(token, "team", "app-1").ok());
  const double refused = Count("podgate_exec_lane_refusals_total{reason=\"window\"}");

  auto raw_stream = lanes->Open();
  ExecSession flooder(std::move(raw_stream));
  ASSERT_TRUE(flooder.Open(token, "team", "app-1").ok());
  // A command that never reads its stdin; then stdin as raw frames that ignore the window.
  flooder.Command("sleep 277", "stuck");
  ASSERT_TRUE(testing::WaitForProcesses({"sleep", "277"}, 1)) << "the command did not start";
  // The lane just opened by `flooder`.
  const uint64_t id = lanes->LastLane();
  pb::SessionsRequest stdin_frame;
  stdin_frame.set_lane(id);
  stdin_frame.mutable_message()->mutable_stdin()->set_data(std::string(32 * 1024, 'x'));
  bool refused_seen = false;
  for (int i = 0; i < 8192 && !refused_seen; ++i) {  // up to 256 MiB
    if (!lanes->WriteRaw(stdin_frame)) {
      break;
    }
    if (i % 64 == 63) {
      refused_seen = Count("podgate_exec_lane_refusals_total{reason=\"window\"}") > refused;
    }
  }
  EXPECT_TRUE(refused_seen ||
              WaitForSample("podgate_exec_lane_refusals_total{reason=\"window\"}", refused + 1));
  // The flooder's lane has ended with RESOURCE_EXHAUSTED (its session saw a client that went
  // away, and its command was stopped) ...
  pb::SessionResponse res;
  while (flooder.stream()->Read(&res)) {
  }
  grpc::Status status = flooder.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), HasSubstr("window"));
  // ... and the other session on the same stream goes on.
  testing::CommandOutcome r = other.Run("echo unaffected");
  ASSERT_TRUE(r.exit.has_value());
  EXPECT_EQ(r.stdout_text, "unaffected\n");
  EXPECT_EQ(other.Close(), common::CLOSE_REASON_CLIENT);
}

TEST_F(ExecLanesTest, AMalformedStreamIsRefusedWithInvalidArgument) {
  {
    auto lanes = NewStream();
    pb::SessionsRequest zero;
    zero.set_lane(0);
    zero.mutable_message()->mutable_close();
    lanes->WriteRaw(zero);
    grpc::Status status = lanes->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("lane 0"));
  }
  {
    // Credit for a lane never opened; and it ends the sessions already on the stream.
    auto lanes = NewStream();
    ExecSession open(lanes->Open());
    auto ready = open.Open(stack_->Token("alice", {"admins"}), "team", "app-1");
    ASSERT_TRUE(ready.ok()) << ready.status();
    pb::SessionsRequest credit;
    credit.set_lane(lanes->NextLane());
    credit.set_credit(1000);
    lanes->WriteRaw(credit);
    grpc::Status status = lanes->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("never opened"));
    EXPECT_EQ(CloseReasonOf(ready->session_id()), common::CLOSE_REASON_DISCONNECTED);
  }
  {
    // A frame that carries nothing, for an open lane.
    auto lanes = NewStream();
    ExecSession open(lanes->Open());
    ASSERT_TRUE(open.Open(stack_->Token("alice", {"admins"}), "team", "app-1").ok());
    pb::SessionsRequest nothing;
    nothing.set_lane(lanes->LastLane());
    lanes->WriteRaw(nothing);
    grpc::Status status = lanes->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("carried nothing"));
  }
  {
    // A lane numbered below one opened before: that lane is refused, the stream goes on.
    auto lanes = NewStream();
    const double before = Count("podgate_exec_lane_refusals_total{reason=\"order\"}");
    const uint64_t low = lanes->NextLane();
    const uint64_t high = lanes->NextLane();
    pb::SessionsRequest open;
    open.mutable_message()->mutable_open()->mutable_credential()->set_bearer_token(
        stack_->Token("alice", {"admins"}));
    open.mutable_message()->mutable_open()->mutable_target()->set_namespace_("team");
    open.mutable_message()->mutable_open()->mutable_target()->set_pod("app-1");
    open.set_lane(high);
    ASSERT_TRUE(lanes->WriteRaw(open));
    open.set_lane(low);
    ASSERT_TRUE(lanes->WriteRaw(open));
    EXPECT_TRUE(WaitForSample("podgate_exec_lane_refusals_total{reason=\"order\"}", before + 1));
    ExecSession later(lanes->Open());
    ASSERT_TRUE(later.Open(stack_->Token("alice", {"admins"}), "team", "app-1").ok());
    EXPECT_EQ(later.Close(), common::CLOSE_REASON_CLIENT);
    lanes->Cancel();
  }
  EXPECT_TRUE(WaitForSample("podgate_exec_session_lanes", 0));
  EXPECT_TRUE(WaitForSample("podgate_exec_session_streams", 0));
}

TEST_F(ExecLanesTest, AMessageForALaneThatEndedIsDroppedAndNumbersOnlyGoUp) {
  auto lanes = NewStream();
  const std::string token = stack_->Token("alice", {"admins"});
  uint64_t first_id = 0;
  {
    ExecSession first(lanes->Open());
    ASSERT_TRUE(first.Open(token, "team", "app-1").ok());
    first_id = lanes->LastLane();
    EXPECT_EQ(first.Close(), common::CLOSE_REASON_CLIENT);
  }
  // A late stdin frame for the ended lane crosses its end: dropped, not an error, and it opens
  // nothing.
  pb::SessionsRequest late;
  late.set_lane(first_id);
  late.mutable_message()->mutable_stdin()->set_data("late");
  ASSERT_TRUE(lanes->WriteRaw(late));
  ExecSession second(lanes->Open());
  auto ready = second.Open(token, "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(Sample("podgate_exec_session_lanes"), 1);
  EXPECT_EQ(second.Close(), common::CLOSE_REASON_CLIENT);
}

TEST_F(ExecLanesTest, AHalfClosedStreamClosesEverySessionAndThenEndsWithOk) {
  auto lanes = NewStream();
  ExecSession a(lanes->Open());
  ExecSession b(lanes->Open());
  auto ra = a.Open(stack_->Token("alice", {"admins"}), "team", "app-1");
  auto rb = b.Open(stack_->Token("bob", {"admins"}), "team", "app-1");
  ASSERT_TRUE(ra.ok() && rb.ok());
  lanes->WritesDone();
  for (ExecSession* s : {&a, &b}) {
    pb::SessionResponse res;
    common::CloseReason reason = common::CLOSE_REASON_UNSPECIFIED;
    while (s->stream()->Read(&res)) {
      if (res.has_closed()) {
        reason = res.closed().reason();
      }
    }
    EXPECT_EQ(reason, common::CLOSE_REASON_CLIENT);
    EXPECT_TRUE(s->Finish().ok());
  }
  EXPECT_TRUE(lanes->Finish().ok());
  EXPECT_EQ(CloseReasonOf(ra->session_id()), common::CLOSE_REASON_CLIENT);
  EXPECT_EQ(CloseReasonOf(rb->session_id()), common::CLOSE_REASON_CLIENT);
}

TEST_F(ExecLanesTest, ACancelledLaneOrABrokenStreamIsAClientThatWentAway) {
  auto lanes = NewStream();
  const std::string token = stack_->Token("alice", {"admins"});
  auto gone = std::make_unique<ExecSession>(lanes->Open());
  ExecSession stays(lanes->Open());
  auto rg = gone->Open(token, "team", "app-1");
  auto rs = stays.Open(token, "team", "app-1");
  ASSERT_TRUE(rg.ok() && rs.ok());
  // A command runs when its lane is cancelled: it is stopped, the session closes. The lane is
  // cancelled once the command's process runs (a fixed pause is not enough on a loaded
  // machine).
  gone->Command("sleep 429", "long");
  ASSERT_TRUE(testing::WaitForProcesses({"sleep", "429"}, 1)) << "the command did not start";
  gone.reset();  // cancels the lane
  EXPECT_EQ(CloseReasonOf(rg->session_id()), common::CLOSE_REASON_DISCONNECTED);
  auto results = testing::AuditEventsOf(stack_->audit_port(), rg->session_id(),
                                        common::EVENT_KIND_COMMAND_RESULT, 1);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_NE(results[0].command_result().termination(), common::TERMINATION_EXITED);
  testing::CommandOutcome r = stays.Run("echo on");
  ASSERT_TRUE(r.exit.has_value());
  EXPECT_EQ(r.stdout_text, "on\n");
  // The whole stream breaks: the other session goes the same way.
  lanes->Cancel();
  EXPECT_EQ(CloseReasonOf(rs->session_id()), common::CLOSE_REASON_DISCONNECTED);
  EXPECT_TRUE(WaitForSample("podgate_exec_session_lanes", 0));
  EXPECT_TRUE(WaitForSample("podgate_exec_session_streams", 0));
}

TEST_F(ExecLanesTest, AShutdownClosesTheSessionsAndEndsEvenAnIdleStreamAtOnce) {
  auto idle = NewStream();
  auto busy = NewStream();
  ExecSession s(busy->Open());
  auto ready = s.Open(stack_->Token("alice", {"admins"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_TRUE(WaitForSample("podgate_exec_session_streams", 2));
  const absl::Time start = absl::Now();
  stack_->exec()->Signal(SIGTERM);
  pb::SessionResponse res;
  common::CloseReason reason = common::CLOSE_REASON_UNSPECIFIED;
  while (s.stream()->Read(&res)) {
    if (res.has_closed()) {
      reason = res.closed().reason();
    }
  }
  EXPECT_EQ(reason, common::CLOSE_REASON_SHUTDOWN);
  grpc::Status idle_status = idle->Finish();
  EXPECT_EQ(idle_status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(idle_status.error_message(), HasSubstr("shutting down"));
  auto exited = stack_->exec()->WaitExit(absl::Seconds(20));
  ASSERT_TRUE(exited.ok()) << exited.status();
  EXPECT_EQ(*exited, 0);
  // Well before the drain timeout (exec's default is 30 s): nothing waited for the idle stream.
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

}  // namespace
}  // namespace podgate
