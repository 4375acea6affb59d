// Resuming an exec session (--resume_grace) through real podgate-exec, podgate-policy and
// podgate-audit processes against kubesim: a client whose stream breaks comes back on a new
// stream with its resume token and what it last received, gets what it missed, and carries on;
// the token is single use and the user's own; a session nobody resumes closes after the grace
// period and stops its command; output the replay buffer no longer holds is counted as lost.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "support/audit_records.h"
#include "support/exec_session.h"
#include "support/prometheus_text.h"
#include "support/stack.h"

namespace podgate {
namespace {

using ::testing::HasSubstr;
namespace common = podgate::common::v1;
namespace pb = podgate::exec::v1;
using SessionClient = testing::ExecSession;

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
defaults: {timeLimit: 30s}
rules:
  - id: admins-anything
    effect: allow
    subjects: {groups: [admins]}
    targets: {namespaces: [team]}
    superuser: true
    allowProgramRunners: true  # the tests drive the pod with sh -c
)";

// What a client has received of a session: the last seq and output offset (what a resume
// names), the output text, and how the running command ended.
struct Received {
  uint64_t last_seq = 0;
  uint64_t output_offset = 0;
  std::string output;
  std::optional<pb::CommandExit> exit;
  std::optional<pb::SessionClosed> closed;
  // Every message after the first carried the next seq.
  bool contiguous = true;

  void Take(const pb::SessionResponse& res) {
    if (res.seq() != 0) {
      if (last_seq != 0 && res.seq() != last_seq + 1) {
        contiguous = false;
      }
      last_seq = res.seq();
      output_offset = res.output_offset();
    }
    if (res.has_stdout()) {
      output += res.stdout().data();
    } else if (res.has_stderr()) {
      output += res.stderr().data();
    } else if (res.has_exit()) {
      exit = res.exit();
    } else if (res.has_closed()) {
      closed = res.closed();
    }
  }
  // Reads until `done` holds or the stream ends; false when it ended first.
  template <typename Done>
  bool ReadUntil(SessionClient& s, Done done) {
    pb::SessionResponse res;
    while (!done(*this)) {
      if (!s.stream()->Read(&res)) {
        return false;
      }
      Take(res);
    }
    return true;
  }
};

class ExecResumeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::StackOptions options;
    options.binaries = {PODGATE_KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN,
                        PODGATE_EXEC_BIN};
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    options.exec_flags = {"--resume_grace=3s", "--resume_buffer_bytes=4096",
                          "--interrupt_grace=1s"};
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
  // exec's count of the output it took from commands' stdout.
  static constexpr char kStdoutBytes[] = "podgate_exec_output_bytes_total{channel=\"stdout\"}";
  // A counter's value; 0 before its first sample appears.
  static double Count(const std::string& sample) { return std::max(0.0, Sample(sample)); }
  // The session's SESSION_CLOSE records, once audit has them (up to 10 s).
  static std::vector<common::SessionCloseDetail> ClosesOf(const std::string& session_id) {
    std::vector<common::SessionCloseDetail> closes;
    for (int i = 0; i < 200 && closes.empty(); ++i) {
      for (const auto& r : testing::AuditRecords(stack_->audit_port(), session_id)) {
        if (r.event().kind() == common::EVENT_KIND_SESSION_CLOSE) {
          closes.push_back(r.event().session_close());
        }
      }
      if (closes.empty()) {
        absl::SleepFor(absl::Milliseconds(50));
      }
    }
    return closes;
  }

  // The session's records of `kind`, once audit has `want` of them (up to 10 s).
  static std::vector<common::AuditEvent> EventsOf(const std::string& session_id,
                                                  common::EventKind kind, size_t want) {
    return testing::AuditEventsOf(stack_->audit_port(), session_id, kind, want);
  }

  static testing::Stack* stack_;
};
testing::Stack* ExecResumeTest::stack_ = nullptr;

TEST_F(ExecResumeTest, ACommandRunsOnWhileItsClientIsAwayAndWhatItMissedIsReplayed) {
  const std::string token = stack_->Token("alice", {"admins"});
  const double resumed_before = Count("podgate_exec_session_resumes_total{result=\"resumed\"}");
  auto first = std::make_unique<SessionClient>(stack_->exec_port());
  auto ready = first->Open(token, "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  ASSERT_EQ(ready->resume_token().size(), 64u);
  EXPECT_EQ(ready->resume_grace().seconds(), 3);
  first->Command("sh -c 'for i in 1 2 3 4 5 6 7 8; do echo line-$i; sleep 0.25; done'", "loop");
  Received got;
  ASSERT_TRUE(got.ReadUntil(
      *first, [](const Received& r) { return r.output.find("line-2\n") != std::string::npos; }));
  // The client's connection drops mid-command; the command runs on without it.
  const double stdout_at_break = Count(kStdoutBytes);
  first.reset();
  for (int i = 0; i < 100 && Sample("podgate_exec_sessions_detached") != 1; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(Sample("podgate_exec_sessions_detached"), 1);
  // A line written after the break waits for the client. Waiting for one (exec's count of the
  // command's output grows) rather than a fixed pause keeps the resume well inside the 3 s
  // grace on a loaded machine.
  for (int i = 0; i < 100 && Count(kStdoutBytes) <= stdout_at_break; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GT(Count(kStdoutBytes), stdout_at_break) << "no line was written after the break";

  SessionClient second(stack_->exec_port());
  auto resumed = second.Resume(token, ready->session_id(), ready->resume_token(), got.last_seq,
                               got.output_offset);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->ready().session_id(), ready->session_id());
  EXPECT_EQ(resumed->ready().principal().user(), "alice");
  EXPECT_EQ(resumed->ready().target().pod(), "app-1");
  EXPECT_EQ(resumed->ready().resume_token().size(), 64u);
  EXPECT_NE(resumed->ready().resume_token(), ready->resume_token());
  EXPECT_EQ(resumed->lost_messages(), 0u);
  EXPECT_EQ(resumed->lost_bytes(), 0u);
  ASSERT_TRUE(got.ReadUntil(second, [](const Received& r) { return r.exit.has_value(); }));
  EXPECT_TRUE(got.contiguous);
  EXPECT_EQ(got.output, "line-1\nline-2\nline-3\nline-4\nline-5\nline-6\nline-7\nline-8\n");
  EXPECT_EQ(got.exit->termination(), common::TERMINATION_EXITED);
  EXPECT_EQ(got.exit->exit_code(), 0);
  EXPECT_EQ(got.output_offset, got.output.size());
  EXPECT_EQ(Sample("podgate_exec_sessions_detached"), 0);
  EXPECT_EQ(Sample("podgate_exec_session_resumes_total{result=\"resumed\"}"), resumed_before + 1);

  // The session carries on on the new stream, and closes once.
  testing::CommandOutcome again = second.Run("echo again");
  ASSERT_TRUE(again.exit.has_value());
  EXPECT_EQ(again.stdout_text, "again\n");
  EXPECT_EQ(second.Close(), common::CLOSE_REASON_CLIENT);
  const auto closes = ClosesOf(ready->session_id());
  ASSERT_EQ(closes.size(), 1u);
  EXPECT_EQ(closes[0].reason(), common::CLOSE_REASON_CLIENT);
  EXPECT_EQ(closes[0].commands(), 2);
  // The break and the resume are audited: one record each, with the user and what was sent.
  const auto detaches = EventsOf(ready->session_id(), common::EVENT_KIND_SESSION_DETACH, 1);
  ASSERT_EQ(detaches.size(), 1u);
  EXPECT_EQ(detaches[0].principal().user(), "alice");
  EXPECT_FALSE(detaches[0].session_detach().reason().empty());
  EXPECT_EQ(detaches[0].session_detach().grace().seconds(), 3);
  const auto resumes = EventsOf(ready->session_id(), common::EVENT_KIND_SESSION_RESUME, 1);
  ASSERT_EQ(resumes.size(), 1u);
  EXPECT_EQ(resumes[0].principal().user(), "alice");
  EXPECT_EQ(resumes[0].session_resume().replayed_messages(), resumed->replayed_messages());
  EXPECT_EQ(resumes[0].session_resume().lost_bytes(), 0u);
  EXPECT_FALSE(resumes[0].source_address().empty());
}

TEST_F(ExecResumeTest, OnlyTheSameUserWithTheLatestTokenResumesAndOnlyOnce) {
  const std::string alice = stack_->Token("alice", {"admins"});
  auto first = std::make_unique<SessionClient>(stack_->exec_port());
  auto ready = first->Open(alice, "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  first.reset();
  const auto attempt = [&](const std::string& credential, const std::string& session_id,
                           const std::string& resume_token, uint64_t last_seq = 0) {
    SessionClient s(stack_->exec_port());
    auto resumed = s.Resume(credential, session_id, resume_token, last_seq);
    if (resumed.ok()) {
      return absl::StatusOr<std::string>(resumed->ready().resume_token());
    }
    return absl::StatusOr<std::string>(resumed.status());
  };
  // Another user holding the token learns nothing: the same answer as for no such session.
  auto bob = attempt(stack_->Token("bob", {"admins"}), ready->session_id(), ready->resume_token());
  EXPECT_EQ(bob.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(bob.status().message(), HasSubstr("no session to resume"));
  auto unknown = attempt(alice, "0123456789abcdef0123456789abcdef", ready->resume_token());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(unknown.status().message(), bob.status().message());
  // A credential that does not verify is refused as at open.
  auto expired = attempt(stack_->Token("alice", {"admins"}, absl::Seconds(-99)),
                         ready->session_id(), ready->resume_token());
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kUnauthenticated);
  // A wrong token, or a position past what was sent.
  auto wrong = attempt(alice, ready->session_id(), std::string(64, 'a'));
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kPermissionDenied);
  auto ahead = attempt(alice, ready->session_id(), ready->resume_token(), 99);
  EXPECT_EQ(ahead.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ahead.status().message(), HasSubstr("last_seq 99"));
  // None of that used the session up: the right token resumes it, once.
  auto next = attempt(alice, ready->session_id(), ready->resume_token());
  ASSERT_TRUE(next.ok()) << next.status();
  auto replayed = attempt(alice, ready->session_id(), ready->resume_token());
  EXPECT_EQ(replayed.status().code(), absl::StatusCode::kPermissionDenied);
  SessionClient last(stack_->exec_port());
  auto latest = last.Resume(alice, ready->session_id(), *next);
  ASSERT_TRUE(latest.ok()) << latest.status();
  EXPECT_EQ(last.Close(), common::CLOSE_REASON_CLIENT);
  EXPECT_GE(Sample("podgate_exec_session_resumes_total{result=\"bad_token\"}"), 2);
  EXPECT_GE(Sample("podgate_exec_session_resumes_total{result=\"unknown\"}"), 2);
  EXPECT_GE(Sample("podgate_exec_session_resumes_total{result=\"bad_position\"}"), 1);
}

TEST_F(ExecResumeTest, ASessionNobodyResumesClosesAfterTheGraceAndStopsItsCommand) {
  const std::string token = stack_->Token("carol", {"admins"});
  const double expired_before = Count("podgate_exec_session_resumes_total{result=\"expired\"}");
  auto first = std::make_unique<SessionClient>(stack_->exec_port());
  auto ready = first->Open(token, "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  first->Command("sleep 29", "long");
  absl::SleepFor(absl::Milliseconds(500));
  const absl::Time dropped = absl::Now();
  first.reset();
  const auto closes = ClosesOf(ready->session_id());
  // ClosesOf waits up to 10 s; the close comes once the 3 s grace is over.
  ASSERT_EQ(closes.size(), 1u);
  EXPECT_GE(absl::Now() - dropped, absl::Seconds(3));
  EXPECT_EQ(closes[0].reason(), common::CLOSE_REASON_DISCONNECTED);
  EXPECT_THAT(closes[0].message(), HasSubstr("no resume within 3s"));
  std::optional<common::Termination> ended;
  for (int i = 0; i < 100 && !ended; ++i) {
    for (const auto& r : testing::AuditRecords(stack_->audit_port(), ready->session_id())) {
      if (r.event().kind() == common::EVENT_KIND_COMMAND_RESULT) {
        ended = r.event().command_result().termination();
      }
    }
    if (!ended) {
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(*ended, common::TERMINATION_INTERRUPTED);
  SessionClient late(stack_->exec_port());
  auto refused = late.Resume(token, ready->session_id(), ready->resume_token());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Sample("podgate_exec_session_resumes_total{result=\"expired\"}"), expired_before + 1);
  // The session leaves the gauge when it ends, on the timer thread just after its close and its
  // command's result (which a resume already finds refused): wait for that, within 5 s.
  double detached = Sample("podgate_exec_sessions_detached");
  for (int i = 0; i < 100 && detached != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    detached = Sample("podgate_exec_sessions_detached");
  }
  EXPECT_EQ(detached, 0);
}

TEST_F(ExecResumeTest, AClientThatEndsItsStreamClosesTheSessionForGood) {
  const std::string token = stack_->Token("dora", {"admins"});
  SessionClient s(stack_->exec_port());
  auto ready = s.Open(token, "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  // A half-close is a deliberate end, not a broken connection: nothing waits for a resume.
  s.stream()->WritesDone();
  Received got;
  EXPECT_FALSE(got.ReadUntil(s, [](const Received&) { return false; }));
  ASSERT_TRUE(got.closed.has_value());
  EXPECT_EQ(got.closed->reason(), common::CLOSE_REASON_CLIENT);
  EXPECT_TRUE(s.Finish().ok());
  SessionClient again(stack_->exec_port());
  EXPECT_EQ(again.Resume(token, ready->session_id(), ready->resume_token()).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ExecResumeTest, ResumingWhileTheOldStreamStillStandsMovesTheSession) {
  const std::string token = stack_->Token("erin", {"admins"});
  SessionClient first(stack_->exec_port());
  auto ready = first.Open(token, "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  // The client came back before exec saw its old connection break (a half-open TCP
  // connection): the new stream takes the session, the old one ends.
  SessionClient second(stack_->exec_port());
  auto resumed = second.Resume(token, ready->session_id(), ready->resume_token());
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  pb::SessionResponse res;
  EXPECT_FALSE(first.stream()->Read(&res));
  grpc::Status old = first.Finish();
  EXPECT_EQ(old.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_THAT(old.error_message(), HasSubstr("no longer carries the session"));
  testing::CommandOutcome moved = second.Run("echo moved");
  ASSERT_TRUE(moved.exit.has_value());
  EXPECT_EQ(moved.stdout_text, "moved\n");
  EXPECT_EQ(second.Close(), common::CLOSE_REASON_CLIENT);
}

TEST_F(ExecResumeTest, OutputTheReplayBufferNoLongerHoldsIsCountedAsLost) {
  const std::string token = stack_->Token("finn", {"admins"});
  constexpr int kBytes = 300000;
  auto first = std::make_unique<SessionClient>(stack_->exec_port());
  auto ready = first->Open(token, "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  // The client reads nothing more: exec writes until the stream's flow control stops it, far
  // more than the 4096 bytes it keeps for a resume. The break comes once exec has taken at
  // least 64 KiB of the output from the pod (a fixed pause is not enough: on a loaded machine
  // the command may not have started yet, and then nothing is lost).
  const double stdout_before = Count(kStdoutBytes);
  first->Command(absl::StrCat("head -c ", kBytes, " /dev/zero"), "zeros");
  for (int i = 0; i < 1000 && Count(kStdoutBytes) < stdout_before + 64 * 1024; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_GE(Count(kStdoutBytes), stdout_before + 64 * 1024)
      << "exec took less than 64 KiB of the command's output in 20 s";
  first.reset();
  SessionClient second(stack_->exec_port());
  auto resumed = second.Resume(token, ready->session_id(), ready->resume_token());
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_GT(resumed->lost_messages(), 0u);
  EXPECT_GT(resumed->lost_bytes(), 4096u);
  Received got;
  ASSERT_TRUE(got.ReadUntil(second, [](const Received& r) { return r.exit.has_value(); }));
  EXPECT_TRUE(got.contiguous);
  EXPECT_EQ(got.exit->output_bytes(), kBytes);
  // What arrived and what was reported lost add up to exactly what the command wrote.
  EXPECT_EQ(got.output.size() + resumed->lost_bytes(), static_cast<size_t>(kBytes));
  EXPECT_EQ(got.output_offset, static_cast<uint64_t>(kBytes));
  EXPECT_GE(Sample("podgate_exec_resume_lost_bytes_total"), resumed->lost_bytes());
  EXPECT_EQ(second.Close(), common::CLOSE_REASON_CLIENT);
  // The audit record of the resume says what was lost, as the client was told.
  const auto resumes = EventsOf(ready->session_id(), common::EVENT_KIND_SESSION_RESUME, 1);
  ASSERT_EQ(resumes.size(), 1u);
  EXPECT_EQ(resumes[0].session_resume().lost_bytes(), resumed->lost_bytes());
  EXPECT_EQ(resumes[0].session_resume().lost_messages(), resumed->lost_messages());
}

}  // namespace
}  // namespace podgate
