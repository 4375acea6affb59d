// The exec service as another backend uses it: a gRPC client opens sessions and runs commands
// through real podgate-exec, podgate-policy and podgate-audit processes against kubesim, whose
// containers are real processes with real uids.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "exec/kube_client.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "podgate/audit/v1/audit.grpc.pb.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "support/audit_records.h"
#include "support/exec_session.h"
#include "support/http_client.h"
#include "support/prometheus_text.h"
#include "support/stack.h"
#include "support/subprocess.h"
#include "support/test_pki.h"
#include "wire/status.h"
#include "wire/time.h"

namespace podgate {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace common = podgate::common::v1;
namespace pb = podgate::exec::v1;

constexpr char kCluster[] = R"(namespaces:
  - name: team
  - name: other
  - name: decl
pods:
  - name: app-1
    namespace: team
    labels: {app: demo}
    annotations: {kubectl.kubernetes.io/default-container: main}
    containers:
      - name: sidecar
        image: demo/sidecar:1
      - name: main
        image: demo/app:1
  - name: root-1
    namespace: team
    containers:
      - name: toolbox
        image: demo/toolbox:1
        user: root
        securityContext: {}  # root without saying so: the probe finds uid 0
  - name: pending-1
    namespace: team
    phase: Pending
    containers:
      - name: c
        image: demo/c:1
  - name: hidden-1
    namespace: other
    containers:
      - name: c
        image: demo/c:1
  - name: declared-root-1
    namespace: decl
    securityContext: {runAsUser: 0}
    containers:
      - name: app
        image: demo/app:1
        securityContext: {}  # the pod's runAsUser applies
  - name: overridden-1
    namespace: decl
    securityContext: {runAsUser: 0}
    containers:
      - name: app
        image: demo/app:1
        securityContext: {runAsUser: 65534, runAsNonRoot: true}
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec, namespaces]
    namespaces: ["*"]
)";

constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
defaults: {timeLimit: 30s, outputLimitBytes: 209715200}
rules:
  - id: admins-anything
    effect: allow
    subjects: {groups: [admins]}
    targets: {namespaces: [team, decl]}
    superuser: true
    allowProgramRunners: true  # the tests drive the pod with sh -c
  - id: rooters-anything
    effect: allow
    subjects: {groups: [rooters]}
    targets: {namespaces: [team]}
    allowRoot: true
    superuser: true
    allowProgramRunners: true
  - id: devs-echo
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    command:
      program: echo
      args:
        - {name: word, type: regex, pattern: "[a-z]+", optional: true, repeat: true}
  - id: devs-sleep
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    limits: {timeLimit: 2s}
    command:
      program: sleep
      args:
        - {name: seconds, type: integer}
  - id: devs-seq-tail
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    limits: {outputLimitBytes: 100, outputKeep: end}
    command:
      program: seq
      args:
        - {name: last, type: integer, min: 1, max: 1000000}
  - id: devs-head
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    limits: {outputLimitBytes: 1000}
    command:
      program: head
      flags:
        - {name: -c, value: {type: integer}}
      args:
        - {name: file, type: path, prefixes: [/dev]}
  - id: devs-shell
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    limits: {timeLimit: 3s}
    shell: true
  - id: labelled-echo
    effect: allow
    subjects: {groups: [labelled]}
    targets: {namespaces: [team], podLabels: {app: demo}}
    command:
      program: echo
      args:
        - {name: word, type: regex, pattern: "[a-z]+", optional: true, repeat: true}
)";

testing::BinaryPaths Binaries() {
  return {PODGATE_KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN, PODGATE_EXEC_BIN};
}

// exec's Session stream as a backend drives it (tests/support/exec_session.h).
using Outcome = testing::CommandOutcome;
using SessionClient = testing::ExecSession;

int64_t ResidentBytes(pid_t pid) { return testing::ResidentKiB(pid) * 1024; }

int CountProcesses(const std::vector<std::string>& argv) {
  return static_cast<int>(testing::ProcessesWithArgv(argv).size());
}

using testing::AuditRecords;

class ExecTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::StackOptions options;
    options.binaries = Binaries();
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    options.exec_flags = {"--interrupt_grace=1s", "--idle_timeout=4s", "--max_sessions_per_user=3"};
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
    metrics_port_ = stack_->exec_metrics_port();
  }

  // The value of one sample of the exec service's /metrics (-1 when absent).
  static double Sample(const std::string& sample) {
    return testing::MetricSample(metrics_port_, sample);
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }

  // Every audit record of a session, oldest first.
  std::vector<podgate::audit::v1::AuditRecord> AuditOf(const std::string& session_id) {
    return AuditRecords(stack_->audit_port(), session_id);
  }

  static testing::Stack* stack_;
  static int metrics_port_;
};
testing::Stack* ExecTest::stack_ = nullptr;
int ExecTest::metrics_port_ = 0;

// Two users run the same line a moment apart; the second one's interrupt must stop the second
// one's process, never the first one's (the old helper picked the oldest process with that argv
// that was "young enough").
TEST_F(ExecTest, AnInterruptStopsOnlyTheProcessItsCommandStarted) {
  const std::vector<std::string> argv = {"sleep", "333"};
  SessionClient first(stack_->exec_port());
  ASSERT_TRUE(first.Open(stack_->Token("alice", {"admins"}), "team", "app-1").ok());
  SessionClient second(stack_->exec_port());
  auto second_ready = second.Open(stack_->Token("bob", {"admins"}), "team", "app-1");
  ASSERT_TRUE(second_ready.ok());
  first.Command("sleep 333");
  for (int i = 0; i < 100 && CountProcesses(argv) == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(CountProcesses(argv), 1) << "the first command did not start";
  const pid_t first_pid = testing::ProcessesWithArgv(argv)[0];
  absl::SleepFor(absl::Milliseconds(600));
  second.Command("sleep 333");
  for (int i = 0; i < 100 && CountProcesses(argv) < 2; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(CountProcesses(argv), 2) << "the second command did not start";
  second.Interrupt();
  Outcome o = second.Wait();
  ASSERT_TRUE(o.exit.has_value());
  EXPECT_EQ(o.exit->termination(), common::TERMINATION_INTERRUPTED);
  for (int i = 0; i < 150 && CountProcesses(argv) != 1; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  absl::SleepFor(absl::Milliseconds(1500));  // past the grace period and its SIGKILL
  std::vector<pid_t> left = testing::ProcessesWithArgv(argv);
  ASSERT_EQ(left.size(), 1u) << "the interrupt stopped both commands, or neither";
  EXPECT_EQ(left[0], first_pid) << "the second user's interrupt stopped the first user's process";
  first.Interrupt();
  EXPECT_TRUE(first.Wait().exit.has_value());
  for (int i = 0; i < 150 && CountProcesses(argv) != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(CountProcesses(argv), 0);
  first.Close();
  second.Close();
  // Audit shows the user's argv; the launch wrapper is recorded nowhere as the command.
  bool result_seen = false;
  for (const auto& r : AuditOf(second_ready->session_id())) {
    EXPECT_THAT(r.event().DebugString(), Not(HasSubstr("podgate-launch")));
    if (r.event().kind() == common::EVENT_KIND_COMMAND_REQUEST) {
      EXPECT_THAT(r.event().command_request().argv(), ::testing::ElementsAre("sleep", "333"));
    }
    if (r.event().kind() == common::EVENT_KIND_COMMAND_RESULT) {
      result_seen = true;
      EXPECT_TRUE(r.event().command_result().argv().empty()) << "it ran as asked";
    }
  }
  EXPECT_TRUE(result_seen);
}

// A client that floods stdin to a command that does not read it: exec stops reading the client
// (flow control) instead of overrunning the Kubernetes stream, and the time limit (2 s for
// devs-sleep) still stops the process, which is gone from /proc within limit + grace.
TEST_F(ExecTest, AStdinFloodCannotOutliveTheTimeLimit) {
  const std::vector<std::string> argv = {"sleep", "48"};
  SessionClient s(stack_->exec_port(), absl::Seconds(90));
  ASSERT_TRUE(s.Open(stack_->Token("dave", {"devs"}), "team", "app-1").ok());
  const absl::Time start = absl::Now();
  s.Command("sleep 48");
  std::atomic<bool> stop{false};
  std::atomic<int64_t> sent{0};
  std::thread flood([&] {
    pb::SessionRequest in;
    in.mutable_stdin()->set_data(std::string(256 * 1024, 'x'));
    while (!stop.load() && sent.load() < (int64_t{256} << 20)) {
      if (!s.stream()->Write(in)) {
        return;
      }
      sent += 256 * 1024;
    }
  });
  Outcome o = s.Wait();
  stop = true;
  // Flow control kept the stream intact: the time limit ended the command, not a broken stream.
  ASSERT_TRUE(o.exit.has_value());
  EXPECT_EQ(o.exit->termination(), common::TERMINATION_TIME_LIMIT);
  EXPECT_LT(ResidentBytes(stack_->exec()->pid()), 200 << 20) << "exec buffered the flood";
  // Limit 2 s, grace 1 s (SIGINT, then SIGKILL), plus slack for the helper's execs.
  const absl::Time deadline = start + absl::Seconds(2 + 2 * 1 + 3);
  while (CountProcesses(argv) != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(CountProcesses(argv), 0)
      << "the command outlived its time limit by " << (absl::Now() - start - absl::Seconds(2))
      << " after " << sent.load() << " bytes of stdin";
  flood.join();
  s.Close();
  for (int i = 0; i < 1000 && CountProcesses(argv) != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));  // do not leave it to the next test
  }
}

// Flow control loses nothing: 20 MiB of stdin, sent as fast as the client can (held while the
// command is decided and identified, then paced by the stream), all reach `wc -c`.
TEST_F(ExecTest, FlowControlledStdinArrivesWhole) {
  SessionClient s(stack_->exec_port(), absl::Seconds(120));
  ASSERT_TRUE(s.Open(stack_->Token("alice", {"admins"}), "team", "app-1").ok());
  constexpr int64_t kBytes = int64_t{20} << 20;
  s.Command("wc -c");
  std::thread writer([&] {
    pb::SessionRequest in;
    in.mutable_stdin()->set_data(std::string(100 * 1000, 'y'));
    int64_t sent = 0;
    while (sent + 100 * 1000 <= kBytes && s.stream()->Write(in)) {
      sent += 100 * 1000;
    }
    in.mutable_stdin()->set_data(std::string(static_cast<size_t>(kBytes - sent), 'y'));
    in.mutable_stdin()->set_eof(true);
    s.stream()->Write(in);
  });
  Outcome o = s.Wait();
  writer.join();
  ASSERT_TRUE(o.exit.has_value());
  EXPECT_EQ(o.exit->exit_code(), 0);
  EXPECT_EQ(o.stdout_text, absl::StrCat(kBytes, "\n"));
  s.Close();
}

// Every Session and Command object is destroyed once its session ends: hundreds of sessions,
// each running a command, and as many shell sessions, leave no live object behind.
TEST_F(ExecTest, SessionsAndCommandsAreFreedOnceClosed) {
  // 300 rounds (600 sessions, 300 commands) in CI; PODGATE_LIFETIME_ROUNDS=1000 for a longer run.
  const int kRounds = std::getenv("PODGATE_LIFETIME_ROUNDS") != nullptr
                          ? std::atoi(std::getenv("PODGATE_LIFETIME_ROUNDS"))
                          : 300;
  for (int i = 0; i < kRounds; ++i) {
    {
      SessionClient s(stack_->exec_port());
      ASSERT_TRUE(s.Open(stack_->Token("frank", {"devs"}), "team", "app-1").ok());
      Outcome o = s.Run("echo hi");
      ASSERT_TRUE(o.exit.has_value()) << "round " << i;
      ASSERT_EQ(o.stdout_text, "hi\n");
      s.Close();
    }
    {
      SessionClient s(stack_->exec_port());
      ASSERT_TRUE(
          s.Open(stack_->Token("frank", {"devs"}), "team", "app-1", "", common::SESSION_MODE_SHELL)
              .ok());
      pb::SessionRequest in;
      in.mutable_stdin()->set_data("exit 0\n");
      s.Send(in);
      pb::SessionResponse res;
      while (s.stream()->Read(&res)) {
      }
      s.Finish();
    }
  }
  double sessions = -1;
  double commands = -1;
  for (int i = 0; i < 300; ++i) {
    sessions = Sample(R"(podgate_exec_live_objects{kind="session"})");
    commands = Sample(R"(podgate_exec_live_objects{kind="command"})");
    if (sessions == 0 && commands == 0) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(sessions, 0) << "Session objects still alive after " << kRounds << " rounds";
  EXPECT_EQ(commands, 0) << "Command objects still alive after " << kRounds << " rounds";
}

TEST_F(ExecTest, AllowedCommandKeepsStdoutAndStderrApartAndReportsTheExitCode) {
  SessionClient s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("alice", {"admins"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->principal().user(), "alice");
  EXPECT_EQ(ready->target().container(), "main");  // from the default-container annotation
  Outcome o = s.Run("sh -c 'echo out; echo err >&2; exit 3'");
  ASSERT_TRUE(o.exit.has_value()) << (o.error ? o.error->status().message() : "no exit");
  EXPECT_EQ(o.stdout_text, "out\n");
  EXPECT_EQ(o.stderr_text, "err\n");
  EXPECT_EQ(o.exit->termination(), common::TERMINATION_EXITED);
  EXPECT_EQ(o.exit->exit_code(), 3);
  Outcome missing = s.Run("no-such-program");
  ASSERT_TRUE(missing.exit.has_value() || missing.error.has_value());
  if (missing.exit.has_value()) {
    EXPECT_NE(missing.exit->exit_code(), 0);
  }
  EXPECT_EQ(s.Close(), common::CLOSE_REASON_CLIENT);
}

// podgate_exec_command_start_seconds accounts for a started command stage by stage (each stage
// once, within the total), and for a denied one only up to its audited decision.
TEST_F(ExecTest, ACommandsStartIsMeasuredStageByStage) {
  const auto count = [](const char* stage) {
    return Sample(absl::StrCat("podgate_exec_command_start_seconds_count{stage=\"", stage, "\"}"));
  };
  const auto sum = [](const char* stage) {
    return Sample(absl::StrCat("podgate_exec_command_start_seconds_sum{stage=\"", stage, "\"}"));
  };
  const char* const kStages[] = {"policy", "audit", "checks", "upgrade", "launch", "total"};
  std::map<std::string, double> counts;
  std::map<std::string, double> sums;
  for (const char* stage : kStages) {
    counts[stage] = std::max(0.0, count(stage));
    sums[stage] = std::max(0.0, sum(stage));
  }
  SessionClient s(stack_->exec_port());
  ASSERT_TRUE(s.Open(stack_->Token("alice", {"admins"}), "team", "app-1").ok());
  ASSERT_TRUE(s.Run("true").exit.has_value());
  for (const char* stage : kStages) {
    EXPECT_EQ(count(stage), counts[stage] + 1) << stage;
  }
  EXPECT_LE(count("journal"), 0) << "this exec has no --journal_dir";
  // The audit stage overlaps the checks, the upgrade and the launch ("go" waits for both); the
  // others follow one another.
  double parts = 0;
  for (const char* stage : {"policy", "checks", "upgrade", "launch"}) {
    const double took = sum(stage) - sums[stage];
    EXPECT_GT(took, 0) << stage;
    parts += took;
  }
  const double total = sum("total") - sums["total"];
  EXPECT_LE(parts, total + 1e-6);
  const double audit = sum("audit") - sums["audit"];
  EXPECT_GT(audit, 0);
  EXPECT_LE(audit + sum("policy") - sums["policy"], total + 1e-6);
  s.Close();

  SessionClient dave(stack_->exec_port());
  ASSERT_TRUE(dave.Open(stack_->Token("dave", {"devs"}), "team", "app-1").ok());
  ASSERT_TRUE(dave.Run("touch never").denied.has_value());
  dave.Close();
  EXPECT_EQ(count("policy"), counts["policy"] + 2);
  EXPECT_EQ(count("audit"), counts["audit"] + 2);
  for (const char* stage : {"checks", "upgrade", "launch", "total"}) {
    EXPECT_EQ(count(stage), counts[stage] + 1) << stage << ": a denied command never starts";
  }
}

// podgate_exec_session_open_seconds accounts for an open stage by stage: a command session's
// credential, policy, pod and audit within its total, a shell's checks besides, and an open
// refused before the pod only up to its credential.
TEST_F(ExecTest, ASessionsOpenIsMeasuredStageByStage) {
  const auto count = [](const char* stage) {
    return std::max(0.0, Sample(absl::StrCat("podgate_exec_session_open_seconds_count{stage=\"",
                                             stage, "\"}")));
  };
  const auto sum = [](const char* stage) {
    return std::max(
        0.0, Sample(absl::StrCat("podgate_exec_session_open_seconds_sum{stage=\"", stage, "\"}")));
  };
  const char* const kStages[] = {"credential", "policy", "pod", "checks", "audit", "total"};
  std::map<std::string, double> counts;
  std::map<std::string, double> sums;
  const auto snapshot = [&] {
    for (const char* stage : kStages) {
      counts[stage] = count(stage);
      sums[stage] = sum(stage);
    }
  };
  snapshot();
  {
    SessionClient s(stack_->exec_port());
    ASSERT_TRUE(s.Open(stack_->Token("alice", {"admins"}), "team", "app-1").ok());
    for (const char* stage : {"credential", "policy", "pod", "audit", "total"}) {
      EXPECT_EQ(count(stage), counts[stage] + 1) << stage;
    }
    EXPECT_EQ(count("checks"), counts["checks"]) << "a command session has no checks at open";
    // The stages follow one another within the total; policy was asked once (before the pod:
    // no rule in scope selects pods by label), the pod read once, the open's record
    // acknowledged.
    double parts = 0;
    for (const char* stage : {"credential", "policy", "pod", "audit"}) {
      const double took = sum(stage) - sums[stage];
      EXPECT_GE(took, 0) << stage;
      parts += took;
    }
    for (const char* stage : {"policy", "pod", "audit"}) {
      EXPECT_GT(sum(stage) - sums[stage], 0) << stage;
    }
    EXPECT_LE(parts, sum("total") - sums["total"] + 1e-6);
    s.Close();
  }

  snapshot();
  {
    SessionClient shell(stack_->exec_port());
    ASSERT_TRUE(
        shell.Open(stack_->Token("dave", {"devs"}), "team", "app-1", "", common::SESSION_MODE_SHELL)
            .ok());
    for (const char* stage : kStages) {
      EXPECT_EQ(count(stage), counts[stage] + 1) << stage;
    }
    EXPECT_GT(sum("checks") - sums["checks"], 0) << "the shell's decision and the root guard";
    shell.Close();
  }

  snapshot();
  {
    SessionClient refused(stack_->exec_port());
    EXPECT_FALSE(refused.Open(stack_->Token("mallory", {"nobody"}), "team", "app-1").ok());
    EXPECT_EQ(count("credential"), counts["credential"] + 1);
    for (const char* stage : {"policy", "pod", "checks", "audit", "total"}) {
      EXPECT_EQ(count(stage), counts[stage]) << stage << ": the open was refused by policy";
    }
  }
}

// The launch wrapper starts while audit stores the decision, but "go" waits for audit's ack:
// with audit frozen, an allowed command is launched and identified, never run, and refused with
// the reason once the ack's deadline passes; the trail gets its decision and its "not run"
// result when audit is back.
TEST(ExecAuditOverlapTest, ALaunchedCommandWhoseDecisionIsNeverAcknowledgedNeverRuns) {
  testing::StackOptions options;
  options.binaries = Binaries();
  options.cluster_yaml = kCluster;
  options.policy_yaml = kPolicy;
  options.exec_flags = {"--audit_ack_timeout=2s"};
  auto stack = testing::Stack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  const std::string dir = (*stack)->ContainerDir("team", "app-1", "main");
  const int metrics = (*stack)->exec_metrics_port();
  const auto launched = [metrics] {
    return testing::MetricSample(metrics,
                                 "podgate_exec_command_start_seconds_count{stage=\"launch\"}");
  };
  SessionClient s((*stack)->exec_port());
  auto ready = s.Open((*stack)->Token("alice", {"admins"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  ASSERT_TRUE(s.Run("true").exit.has_value());  // the root guard's probe is cached
  const double launched_before = launched();
  ASSERT_GE(launched_before, 1);

  ASSERT_TRUE((*stack)->audit()->Freeze().ok());
  Outcome o = s.Run("touch never-ran");
  EXPECT_FALSE(o.exit.has_value());
  ASSERT_TRUE(o.error.has_value());
  EXPECT_EQ(o.error->status().code(), static_cast<int>(grpc::StatusCode::UNAVAILABLE));
  EXPECT_THAT(o.error->status().message(),
              HasSubstr("audit is unavailable, so the command was not run"));
  // It went as far as the wrapper's report: the launch did not wait for audit.
  EXPECT_EQ(launched(), launched_before + 1);
  absl::SleepFor(absl::Milliseconds(300));  // a late "go" would have run it by now
  EXPECT_NE(access((dir + "/never-ran").c_str(), F_OK), 0) << "the command ran without its ack";

  (*stack)->audit()->Signal(SIGCONT);
  std::vector<common::AuditEvent> results = testing::AuditEventsOf(
      (*stack)->audit_port(), ready->session_id(), common::EVENT_KIND_COMMAND_RESULT, 2);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[1].command_result().line(), "touch never-ran");
  EXPECT_EQ(results[1].command_result().termination(), common::TERMINATION_ERROR);
  EXPECT_THAT(results[1].command_result().error(),
              HasSubstr("not run: audit did not acknowledge the decision"));
  // Audit is back: the next command runs.
  Outcome after = s.Run("touch ran-after");
  ASSERT_TRUE(after.exit.has_value()) << (after.error ? after.error->status().message() : "");
  EXPECT_EQ(access((dir + "/ran-after").c_str(), F_OK), 0);
  EXPECT_NE(access((dir + "/never-ran").c_str(), F_OK), 0);
  s.Close();
}

TEST_F(ExecTest, EveryStepIsInAuditAndTheDeniedCommandNeverReachesThePod) {
  const std::string dir = stack_->ContainerDir("team", "app-1", "main");
  SessionClient s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("dave", {"devs"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  Outcome denied = s.Run("touch denied-marker");
  ASSERT_TRUE(denied.denied.has_value());
  EXPECT_EQ(denied.denied->rule(), "default-deny");
  Outcome allowed = s.Run("echo hello world");
  ASSERT_TRUE(allowed.exit.has_value());
  EXPECT_EQ(allowed.stdout_text, "hello world\n");
  s.Close();
  EXPECT_NE(access((dir + "/denied-marker").c_str(), F_OK), 0)
      << "a denied command reached the pod";

  // An allowed write does land: the probe above would have seen it.
  SessionClient admin(stack_->exec_port());
  ASSERT_TRUE(admin.Open(stack_->Token("alice", {"admins"}), "team", "app-1").ok());
  ASSERT_TRUE(admin.Run("touch allowed-marker").exit.has_value());
  admin.Close();
  EXPECT_EQ(access((dir + "/allowed-marker").c_str(), F_OK), 0);

  std::vector<std::string> kinds;
  for (const auto& r : AuditOf(ready->session_id())) {
    kinds.push_back(common::EventKind_Name(r.event().kind()));
    EXPECT_EQ(r.event().principal().user(), "dave");
    EXPECT_EQ(r.event().target().pod(), "app-1");
  }
  EXPECT_THAT(kinds, ::testing::ElementsAre("EVENT_KIND_SESSION_OPEN", "EVENT_KIND_COMMAND_REQUEST",
                                            "EVENT_KIND_DECISION", "EVENT_KIND_COMMAND_REQUEST",
                                            "EVENT_KIND_DECISION", "EVENT_KIND_COMMAND_RESULT",
                                            "EVENT_KIND_SESSION_CLOSE"));
  for (const auto& r : AuditOf(ready->session_id())) {
    if (r.event().kind() == common::EVENT_KIND_DECISION &&
        r.event().command_request().argv(0) == "touch") {
      EXPECT_EQ(r.event().decision().verdict(), common::VERDICT_DENY);
      EXPECT_EQ(r.event().decision().rule(), "default-deny");
    }
    if (r.event().kind() == common::EVENT_KIND_COMMAND_RESULT) {
      EXPECT_EQ(r.event().command_result().exit_code(), 0);
      EXPECT_EQ(r.event().command_result().stdout_bytes(), 12);
      EXPECT_EQ(r.event().command_result().output_excerpt(), "hello world\n");
      EXPECT_EQ(r.event().command_result().output_sha256().size(), 32u);
    }
  }
}

// exec's audit event ids are time-ordered (runtime::EventId): the first 12 hex digits are the
// millisecond the id was made, so the store's unique index on them grows at its end. An event
// made on the spot carries its own time in its id; the result's and the close's ids are chosen
// earlier (the journal and the session's start need them), so theirs are not later than their
// events' times.
TEST_F(ExecTest, ExecsEventIdsStartWithTheMillisecondTheyWereMade) {
  const int64_t before_ms = absl::ToUnixMillis(absl::Now());
  SessionClient s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("alice", {"admins"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  ASSERT_TRUE(s.Run("echo ordered").exit.has_value());
  s.Close();
  const int64_t after_ms = absl::ToUnixMillis(absl::Now());
  const std::vector<podgate::audit::v1::AuditRecord> records = AuditOf(ready->session_id());
  ASSERT_GE(records.size(), 5u);
  std::set<std::string> ids;
  for (const auto& r : records) {
    const common::AuditEvent& e = r.event();
    const std::string& id = e.id();
    SCOPED_TRACE(absl::StrCat(common::EventKind_Name(e.kind()), " ", id));
    ASSERT_EQ(id.size(), 32u);
    ASSERT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
    EXPECT_TRUE(ids.insert(id).second) << "repeated id";
    const int64_t id_ms = std::stoll(id.substr(0, 12), nullptr, 16);
    const int64_t event_ms = absl::ToUnixMillis(wire::FromProtoTimestamp(e.time()));
    EXPECT_GE(id_ms, before_ms);
    EXPECT_LE(id_ms, after_ms);
    if (e.kind() == common::EVENT_KIND_COMMAND_RESULT ||
        e.kind() == common::EVENT_KIND_SESSION_CLOSE) {
      EXPECT_LE(id_ms, event_ms);
    } else {
      EXPECT_EQ(id_ms, event_ms);
    }
  }
}

TEST_F(ExecTest, PolicyVersionsAreRecordedInAudit) {
  auto stub = podgate::audit::v1::AuditService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", stack_->audit_port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  podgate::audit::v1::QueryRequest req;
  req.add_kinds(common::EVENT_KIND_POLICY_CHANGE);
  auto reader = stub->Query(&ctx, req);
  podgate::audit::v1::QueryResponse res;
  int changes = 0;
  while (reader->Read(&res)) {
    if (res.has_record()) {
      ++changes;
      EXPECT_TRUE(res.record().event().policy_change().accepted());
      EXPECT_EQ(res.record().event().policy_change().version().size(), 64u);
      EXPECT_EQ(res.record().event().source_service(), "policy");
    }
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(changes, 1);
}

TEST_F(ExecTest, StdinSentWithTheCommandReachesIt) {
  SessionClient s(stack_->exec_port());
  ASSERT_TRUE(s.Open(stack_->Token("alice", {"admins"}), "team", "app-1").ok());
  // Input right behind the command line, before policy has even answered.
  s.Command("cat");
  pb::SessionRequest in;
  in.mutable_stdin()->set_data("piped data\n");
  in.mutable_stdin()->set_eof(true);
  s.Send(in);
  Outcome o = s.Wait();
  ASSERT_TRUE(o.exit.has_value());
  EXPECT_EQ(o.exit->exit_code(), 0);
  EXPECT_EQ(o.stdout_text, "piped data\n");
  s.Close();
}

TEST_F(ExecTest, SessionsClosingMidDecisionLeavePolicyWorking) {
  for (int i = 0; i < 20; ++i) {
    SessionClient s(stack_->exec_port());
    auto opened = s.Open(stack_->Token("dave", {"devs"}), "team", "app-1");
    ASSERT_TRUE(opened.ok()) << i << ": " << opened.status();
    s.Command("echo gone");
    s.Close();  // right behind the command: its decision may still be pending
  }
  SessionClient after(stack_->exec_port());
  ASSERT_TRUE(after.Open(stack_->Token("dave", {"devs"}), "team", "app-1").ok());
  const absl::Time start = absl::Now();
  Outcome o = after.Run("echo fine");
  ASSERT_TRUE(o.exit.has_value()) << (o.denied ? o.denied->reason() : "no exit");
  EXPECT_EQ(o.stdout_text, "fine\n");
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  after.Close();
}

TEST_F(ExecTest, ShellSyntaxIsRefusedBeforePolicy) {
  SessionClient s(stack_->exec_port());
  ASSERT_TRUE(s.Open(stack_->Token("alice", {"admins"}), "team", "app-1").ok());
  Outcome o = s.Run("echo a; touch x");
  ASSERT_TRUE(o.denied.has_value());
  EXPECT_EQ(o.denied->rule(), "parser");
  EXPECT_THAT(o.denied->reason(), HasSubstr("not a shell"));
  s.Close();
}

// A parser refusal and a command sent while another runs left no DECISION record, so
// `rule=parser verdict=deny` queries found nothing. Each is one denial record now.
TEST_F(ExecTest, RefusalsBeforePolicyAreDecisionRecords) {
  SessionClient s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("alice", {"admins"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  Outcome parsed = s.Run("echo a; touch x");
  ASSERT_TRUE(parsed.denied.has_value());
  s.Command("sleep 3", "long");
  absl::SleepFor(absl::Milliseconds(300));
  s.Command("echo second", "second");
  Outcome first = s.Wait();  // the refusal of "second" comes first
  ASSERT_TRUE(first.error.has_value());
  EXPECT_THAT(first.error->status().message(), HasSubstr("a command is running"));
  s.Interrupt();
  s.Wait();
  s.Close();
  int parser = 0;
  int busy = 0;
  for (const auto& r : AuditOf(ready->session_id())) {
    const common::AuditEvent& e = r.event();
    if (e.kind() != common::EVENT_KIND_DECISION || e.decision().verdict() != common::VERDICT_DENY) {
      continue;
    }
    if (e.decision().rule() == "parser") {
      ++parser;
      EXPECT_EQ(e.command_request().line(), "echo a; touch x");
    }
    if (e.decision().rule() == "busy") {
      ++busy;
      EXPECT_EQ(e.command_id(), "second");
      EXPECT_EQ(e.command_request().line(), "echo second");
    }
  }
  EXPECT_EQ(parser, 1);
  EXPECT_EQ(busy, 1);
}

// Client-chosen command ids used to repeat, so two commands shared one id in audit, and a
// result record did not say what ran. A reused id is refused (and that refusal recorded once);
// a result record carries the line.
TEST_F(ExecTest, ACommandIdIsUsedOncePerSessionAndResultsSayWhatRan) {
  SessionClient s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("alice", {"admins"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  s.Command("echo one", "c1");
  Outcome first = s.Wait();
  ASSERT_TRUE(first.exit.has_value());
  s.Command("echo two", "c1");
  Outcome reused = s.Wait();
  ASSERT_TRUE(reused.error.has_value()) << "a reused command id was run";
  EXPECT_EQ(reused.error->command_id(), "c1");
  EXPECT_EQ(reused.error->status().code(), static_cast<int>(grpc::StatusCode::ALREADY_EXISTS));
  EXPECT_THAT(reused.error->status().message(), HasSubstr("already used in this session"));
  EXPECT_TRUE(reused.stdout_text.empty());
  s.Command("echo three", "c2");
  Outcome third = s.Wait();
  ASSERT_TRUE(third.exit.has_value());
  EXPECT_EQ(third.stdout_text, "three\n");
  s.Close();
  int refusals = 0;
  std::map<std::string, std::vector<std::string>> result_lines;
  for (const auto& r : AuditOf(ready->session_id())) {
    const common::AuditEvent& e = r.event();
    if (e.kind() == common::EVENT_KIND_DECISION && e.decision().rule() == "duplicate-id") {
      ++refusals;
      EXPECT_EQ(e.decision().verdict(), common::VERDICT_DENY);
      EXPECT_EQ(e.command_request().line(), "echo two");
    }
    if (e.kind() == common::EVENT_KIND_COMMAND_REQUEST) {
      EXPECT_NE(e.command_request().line(), "echo two") << "the reused id reached policy";
    }
    if (e.kind() == common::EVENT_KIND_COMMAND_RESULT) {
      result_lines[e.command_id()].push_back(e.command_result().line());
    }
  }
  EXPECT_EQ(refusals, 1);
  EXPECT_THAT(result_lines["c1"], ::testing::ElementsAre("echo one"));
  EXPECT_THAT(result_lines["c2"], ::testing::ElementsAre("echo three"));
}

// A developer with no rule for a target learnt pods, phases, containers and API paths from
// open's errors. Now a target without a rule is refused before Kubernetes is asked, with one
// message whether the pod exists or not, and the refusal is audited with the real reason.
TEST_F(ExecTest, ATargetWithoutARuleIsRefusedBeforeKubernetesIsAsked) {
  const std::string dave = stack_->Token("dave", {"devs"});
  auto open = [&](const std::string& token, const std::string& ns, const std::string& pod,
                  const std::string& container = "") {
    SessionClient s(stack_->exec_port());
    return s.Open(token, ns, pod, container);
  };
  absl::StatusOr<pb::SessionReady> existing = open(dave, "other", "hidden-1");
  absl::StatusOr<pb::SessionReady> missing = open(dave, "other", "nope-9");
  absl::StatusOr<pb::SessionReady> missing_ns = open(dave, "ghost", "nope-9");
  // A pod in scope that does not exist says the same.
  absl::StatusOr<pb::SessionReady> missing_in_scope = open(dave, "team", "nope-9");
  // A label-selected rule: its pods open, others in the namespace are refused the same way.
  const std::string lena = stack_->Token("lena", {"labelled"});
  absl::StatusOr<pb::SessionReady> labelled = open(lena, "team", "app-1");
  absl::StatusOr<pb::SessionReady> unlabelled = open(lena, "team", "pending-1");
  EXPECT_TRUE(labelled.ok()) << labelled.status();
  for (const auto* r : {&existing, &missing, &missing_ns, &missing_in_scope, &unlabelled}) {
    ASSERT_FALSE(r->ok());
    EXPECT_EQ(r->status().code(), absl::StatusCode::kNotFound) << r->status();
    EXPECT_EQ(r->status().message(), existing.status().message());
    EXPECT_THAT(r->status().message(), Not(HasSubstr("api/v1")));
    EXPECT_THAT(r->status().message(), Not(HasSubstr("Pending")));
    EXPECT_THAT(r->status().message(), Not(HasSubstr("hidden")));
  }
  // Audited, each with its real reason: the no-rule refusals without a Kubernetes call.
  auto stub = podgate::audit::v1::AuditService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", stack_->audit_port()), grpc::InsecureChannelCredentials()));
  std::map<std::string, std::string> reasons;
  for (int attempt = 0; attempt < 50 && reasons.size() < 5; ++attempt) {
    reasons.clear();
    grpc::ClientContext ctx;
    podgate::audit::v1::QueryRequest req;
    req.add_kinds(common::EVENT_KIND_DECISION);
    req.set_page_size(1000);
    auto reader = stub->Query(&ctx, req);
    podgate::audit::v1::QueryResponse res;
    while (reader->Read(&res)) {
      const common::AuditEvent& e = res.record().event();
      if (res.has_record() && e.decision().rule() == "target") {
        EXPECT_EQ(e.decision().verdict(), common::VERDICT_DENY);
        reasons[absl::StrCat(e.principal().user(), " ", e.target().namespace_(), "/",
                             e.target().pod())] = e.decision().reason();
      }
    }
    reader->Finish();
    if (reasons.size() < 5) {
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
  EXPECT_THAT(reasons["dave other/hidden-1"], HasSubstr("no rule"));
  EXPECT_THAT(reasons["dave other/nope-9"], HasSubstr("no rule"));
  EXPECT_THAT(reasons["dave ghost/nope-9"], HasSubstr("no rule"));
  EXPECT_THAT(reasons["dave team/nope-9"], HasSubstr("not found"));
  EXPECT_THAT(reasons["lena team/pending-1"], HasSubstr("no rule"));
}

// A command's exec upgrade goes out on a connection made ahead (TCP and TLS done): after the
// first, each takes a spare and another is made, and every command still runs and answers.
TEST_F(ExecTest, CommandsGoOutOnConnectionsMadeAhead) {
  auto events = [](const std::string& event) {
    absl::StatusOr<testing::HttpResponse> page = testing::HttpGet(metrics_port_, "/metrics");
    double sum = 0;
    if (page.ok()) {
      absl::StatusOr<testing::MetricsPage> parsed = testing::ParsePrometheusText(page->body);
      for (const auto& [name, value] :
           parsed.ok() ? parsed->samples : std::map<std::string, double>{}) {
        if (absl::StartsWith(name, "podgate_exec_kube_spare_connections_total{") &&
            absl::StrContains(name, absl::StrCat("event=\"", event, "\""))) {
          sum += value;
        }
      }
    }
    return sum;
  };
  SessionClient s(stack_->exec_port());
  ASSERT_TRUE(s.Open(stack_->Token("frank", {"devs"}), "team", "app-1").ok());
  Outcome first = s.Run("echo first");
  EXPECT_EQ(first.stdout_text, "first\n");
  const double used = events("used");
  for (int i = 0; i < 5; ++i) {
    const std::string word(static_cast<size_t>(i) + 1, 'x');
    Outcome o = s.Run("echo " + word);
    ASSERT_TRUE(o.exit.has_value()) << i;
    EXPECT_EQ(o.exit->exit_code(), 0);
    EXPECT_EQ(o.stdout_text, word + "\n");
  }
  // Each command takes a spare made while the previous one ran (one may still be on its way
  // on a slow machine).
  EXPECT_GE(events("used"), used + 4);
  EXPECT_EQ(events("retried"), 0);
  s.Close();
}

// Policy is asked whether a target is in scope before the pod is looked up, and again with the
// pod's labels only when a rule in scope selects pods by label: one round trip per open less
// for everyone else, and the label rules still decide for the rest.
TEST_F(ExecTest, TheScopeIsAskedAgainWithThePodsLabelsOnlyWhenARuleSelectsByThem) {
  auto count = [](const std::string& step) {
    return std::max(0.0,
                    Sample(absl::StrCat("podgate_exec_scope_checks_total{step=\"", step, "\"}")));
  };
  auto open = [&](const std::string& token, const std::string& pod) {
    SessionClient s(stack_->exec_port());
    absl::StatusOr<pb::SessionReady> ready = s.Open(token, "team", pod);
    s.Close();
    return ready;
  };
  const double before = count("before_pod");
  const double again = count("with_labels");
  const double skipped = count("labels_irrelevant");
  // dave's rules in team select no pods by label: asked once.
  EXPECT_TRUE(open(stack_->Token("dave", {"devs"}), "app-1").ok());
  EXPECT_EQ(count("before_pod"), before + 1);
  EXPECT_EQ(count("labels_irrelevant"), skipped + 1);
  EXPECT_EQ(count("with_labels"), again);
  // lena's only rule selects pods by label: asked again with them, and they decide.
  const std::string lena = stack_->Token("lena", {"labelled"});
  EXPECT_TRUE(open(lena, "app-1").ok());
  absl::StatusOr<pb::SessionReady> unlabelled = open(lena, "pending-1");
  ASSERT_FALSE(unlabelled.ok());
  EXPECT_EQ(unlabelled.status().code(), absl::StatusCode::kNotFound) << unlabelled.status();
  EXPECT_EQ(count("before_pod"), before + 3);
  EXPECT_EQ(count("with_labels"), again + 2);
  EXPECT_EQ(count("labels_irrelevant"), skipped + 1);
}

// A client whose stream breaks without a close (an edge replica killed) is audited as
// disconnected, not as a client that closed its session.
TEST_F(ExecTest, ABrokenClientStreamIsAuditedAsDisconnected) {
  std::string session_id;
  {
    SessionClient s(stack_->exec_port());
    auto ready = s.Open(stack_->Token("alice", {"admins"}), "team", "app-1");
    ASSERT_TRUE(ready.ok()) << ready.status();
    session_id = ready->session_id();
    ASSERT_TRUE(s.Run("echo hi").exit.has_value());
  }  // cancelled, never closed
  common::CloseReason reason = common::CLOSE_REASON_UNSPECIFIED;
  for (const auto& r : AuditOf(session_id)) {
    if (r.event().kind() == common::EVENT_KIND_SESSION_CLOSE) {
      reason = r.event().session_close().reason();
    }
  }
  EXPECT_EQ(common::CloseReason_Name(reason), "CLOSE_REASON_DISCONNECTED");
}

// Resume is off by default (--resume_grace=0): no token, no positions, and a broken stream
// closes the session at once (above); a resuming open finds nothing.
TEST_F(ExecTest, WithoutAResumeGraceNoSessionCanBeResumed) {
  const std::string token = stack_->Token("alice", {"admins"});
  std::string session_id;
  {
    SessionClient s(stack_->exec_port());
    auto ready = s.Open(token, "team", "app-1");
    ASSERT_TRUE(ready.ok()) << ready.status();
    EXPECT_TRUE(ready->resume_token().empty());
    EXPECT_FALSE(ready->has_resume_grace());
    session_id = ready->session_id();
    s.Command("echo hi");
    pb::SessionResponse res;
    while (s.stream()->Read(&res) && !res.has_exit()) {
      EXPECT_EQ(res.seq(), 0u);
      EXPECT_EQ(res.output_offset(), 0u);
    }
  }  // cancelled, never closed
  SessionClient again(stack_->exec_port());
  auto resumed = again.Resume(token, session_id, std::string(64, 'a'));
  EXPECT_EQ(resumed.status().code(), absl::StatusCode::kNotFound) << resumed.status();
  EXPECT_THAT(resumed.status().message(), HasSubstr("no session to resume"));
}

TEST_F(ExecTest, RootGuardRefusesARootContainerUnlessTheRuleAllowsRoot) {
  SessionClient admin(stack_->exec_port());
  ASSERT_TRUE(admin.Open(stack_->Token("alice", {"admins"}), "team", "root-1").ok());
  Outcome o = admin.Run("id -u");
  ASSERT_TRUE(o.denied.has_value());
  EXPECT_EQ(o.denied->rule(), "root-guard");
  EXPECT_THAT(o.denied->reason(), HasSubstr("uid 0"));
  admin.Close();

  SessionClient rooter(stack_->exec_port());
  ASSERT_TRUE(rooter.Open(stack_->Token("rita", {"rooters"}), "team", "root-1").ok());
  Outcome allowed = rooter.Run("id -u");
  ASSERT_TRUE(allowed.exit.has_value());
  EXPECT_EQ(allowed.stdout_text, "0\n");
  rooter.Close();

  // A non-root container passes the guard for the same admin.
  SessionClient plain(stack_->exec_port());
  ASSERT_TRUE(plain.Open(stack_->Token("alice", {"admins"}), "team", "app-1").ok());
  Outcome uid = plain.Run("id -u");
  ASSERT_TRUE(uid.exit.has_value());
  EXPECT_NE(uid.stdout_text, "0\n");
  plain.Close();
}

// The root guard ignored the pod's securityContext. A container declared to run as root (here
// by the pod's runAsUser: 0, while kubesim runs it as a non-root user) is refused without a
// probe; a container whose own securityContext overrides the pod's is probed as before.
TEST_F(ExecTest, TheRootGuardHonoursTheDeclaredSecurityContext) {
  auto execs = [&] {
    int n = 0;
    for (const std::string& line : stack_->kubesim()->Lines()) {
      n += absl::StrContains(line, "\"msg\":\"exec\"") ? 1 : 0;
    }
    return n;
  };
  SessionClient declared(stack_->exec_port());
  ASSERT_TRUE(declared.Open(stack_->Token("alice", {"admins"}), "decl", "declared-root-1").ok());
  const int before = execs();
  Outcome o = declared.Run("id -u");
  ASSERT_TRUE(o.denied.has_value()) << "a container declared to run as root ran a command";
  EXPECT_EQ(o.denied->rule(), "root-guard");
  EXPECT_THAT(o.denied->reason(), HasSubstr("declared to run as root"));
  EXPECT_EQ(execs(), before) << "the root guard probed a container declared to run as root";
  declared.Close();

  SessionClient overridden(stack_->exec_port());
  ASSERT_TRUE(overridden.Open(stack_->Token("alice", {"admins"}), "decl", "overridden-1").ok());
  Outcome uid = overridden.Run("id -u");
  ASSERT_TRUE(uid.exit.has_value()) << (uid.denied ? uid.denied->reason() : "no exit");
  EXPECT_NE(uid.stdout_text, "0\n");
  overridden.Close();
}

TEST_F(ExecTest, OpenFailuresSayWhatIsWrong) {
  const std::string token = stack_->Token("alice", {"admins"});
  {
    SessionClient s(stack_->exec_port());
    auto r = s.Open(token, "team", "nope-1");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  }
  {
    SessionClient s(stack_->exec_port());
    auto r = s.Open(token, "team", "app-1", "nope");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(r.status().message(), HasSubstr("sidecar"));
  }
  {
    SessionClient s(stack_->exec_port());
    auto r = s.Open(token, "team", "pending-1");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(r.status().message(), HasSubstr("Pending"));
  }
  {
    SessionClient s(stack_->exec_port());
    auto r = s.Open(token, "team", "../../etc");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  }
  {
    SessionClient s(stack_->exec_port());
    auto r = s.Open(stack_->Token("alice", {"admins"}, -absl::Minutes(5)), "team", "app-1");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(r.status().message(), HasSubstr("expired"));
  }
  {
    SessionClient s(stack_->exec_port());
    auto r = s.Open("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.", "team", "app-1");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
  }
  {
    SessionClient s(stack_->exec_port());
    auto r = s.Open(token, "team", "app-1", "", common::SESSION_MODE_SHELL);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  }
}

TEST_F(ExecTest, InterruptStopsTheRemoteProcess) {
  SessionClient s(stack_->exec_port());
  ASSERT_TRUE(s.Open(stack_->Token("alice", {"admins"}), "team", "app-1").ok());
  const std::vector<std::string> argv = {"sleep", "321"};
  s.Command("sleep 321");
  for (int i = 0; i < 100 && CountProcesses(argv) == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(CountProcesses(argv), 1) << "the command did not start";
  const absl::Time start = absl::Now();
  s.Interrupt();
  Outcome o = s.Wait();
  ASSERT_TRUE(o.exit.has_value());
  EXPECT_EQ(o.exit->termination(), common::TERMINATION_INTERRUPTED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  for (int i = 0; i < 100 && CountProcesses(argv) != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(CountProcesses(argv), 0) << "the remote process outlived the interrupt";
  // The session goes on.
  EXPECT_TRUE(s.Run("true").exit.has_value());
  s.Close();
}

TEST_F(ExecTest, TimeLimitAndOutputCapStopTheCommand) {
  SessionClient s(stack_->exec_port());
  ASSERT_TRUE(s.Open(stack_->Token("dave", {"devs"}), "team", "app-1").ok());
  const absl::Time start = absl::Now();
  Outcome slow = s.Run("sleep 47");
  ASSERT_TRUE(slow.exit.has_value());
  EXPECT_EQ(slow.exit->termination(), common::TERMINATION_TIME_LIMIT);
  EXPECT_LT(absl::Now() - start, absl::Seconds(12));
  for (int i = 0; i < 100 && CountProcesses({"sleep", "47"}) != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(CountProcesses({"sleep", "47"}), 0);

  // Past the limit exec reads on, only counting, so the user learns how much there was: the
  // command ends by itself, and its total and exit code are real.
  Outcome big = s.Run("head -c 100000 /dev/zero");
  ASSERT_TRUE(big.exit.has_value());
  EXPECT_EQ(big.exit->termination(), common::TERMINATION_OUTPUT_LIMIT);
  EXPECT_EQ(big.stdout_text.size(), 1000u);
  EXPECT_EQ(big.exit->shown_bytes(), 1000);
  EXPECT_EQ(big.exit->output_bytes(), 100000);
  EXPECT_TRUE(big.exit->output_complete());
  EXPECT_EQ(big.exit->exit_code(), 0);
  // More than --output_overrun_bytes (64 MiB) past the limit: stopped, the total a lower bound.
  const std::vector<std::string> endless = {"head", "-c", "900000000", "/dev/zero"};
  Outcome huge = s.Run("head -c 900000000 /dev/zero");
  ASSERT_TRUE(huge.exit.has_value());
  EXPECT_EQ(huge.exit->termination(), common::TERMINATION_OUTPUT_LIMIT);
  EXPECT_EQ(huge.stdout_text.size(), 1000u);
  EXPECT_EQ(huge.exit->shown_bytes(), 1000);
  EXPECT_GT(huge.exit->output_bytes(), 1000 + (int64_t{64} << 20));
  EXPECT_LT(huge.exit->output_bytes(), 900000000);
  EXPECT_FALSE(huge.exit->output_complete());
  for (int i = 0; i < 100 && CountProcesses(endless) != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(CountProcesses(endless), 0) << "the overrunning command was not stopped";
  s.Close();
}

// A rule that keeps the end of the output (tail-like programs): the last bytes are shown, sent
// when the command ends, and the exit says how much there was.
TEST_F(ExecTest, ARuleThatKeepsTheEndShowsTheLastBytes) {
  SessionClient s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("dave", {"devs"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  std::string all;
  for (int i = 1; i <= 5000; ++i) {
    absl::StrAppend(&all, i, "\n");
  }
  Outcome cut = s.Run("seq 5000");
  ASSERT_TRUE(cut.exit.has_value());
  EXPECT_EQ(cut.exit->termination(), common::TERMINATION_OUTPUT_LIMIT);
  EXPECT_EQ(cut.stdout_text, all.substr(all.size() - 100)) << "the last 100 bytes, in order";
  EXPECT_EQ(cut.exit->shown_bytes(), 100);
  EXPECT_EQ(cut.exit->output_bytes(), static_cast<int64_t>(all.size()));
  EXPECT_TRUE(cut.exit->output_complete());
  EXPECT_TRUE(cut.exit->kept_end());
  EXPECT_EQ(cut.exit->exit_code(), 0);
  // Short output is all shown, and the command simply exited.
  Outcome small = s.Run("seq 5");
  ASSERT_TRUE(small.exit.has_value());
  EXPECT_EQ(small.exit->termination(), common::TERMINATION_EXITED);
  EXPECT_EQ(small.stdout_text, "1\n2\n3\n4\n5\n");
  // The audit record hashes and excerpts what was shown.
  const std::string session_id = ready->session_id();
  s.Close();
  bool found = false;
  for (const auto& r : AuditOf(session_id)) {
    if (r.event().has_command_result() && r.event().command_result().line() == "seq 5000") {
      found = true;
      EXPECT_EQ(r.event().command_result().termination(), common::TERMINATION_OUTPUT_LIMIT);
      EXPECT_EQ(r.event().command_result().output_excerpt(), all.substr(all.size() - 100));
      EXPECT_EQ(r.event().command_result().stdout_bytes(), static_cast<int64_t>(all.size()));
    }
  }
  EXPECT_TRUE(found) << "no result record for seq 5000";
}

TEST_F(ExecTest, HundredMegabytesStreamWithBoundedMemory) {
  SessionClient s(stack_->exec_port(), absl::Seconds(120));
  ASSERT_TRUE(s.Open(stack_->Token("alice", {"admins"}), "team", "app-1").ok());
  const int64_t before = ResidentBytes(stack_->exec()->pid());
  s.Command("head -c 100000000 /dev/zero");
  int64_t bytes = 0;
  Outcome o = s.Wait(&bytes);
  ASSERT_TRUE(o.exit.has_value());
  EXPECT_EQ(o.exit->exit_code(), 0);
  EXPECT_EQ(bytes, 100000000);
  const int64_t after = ResidentBytes(stack_->exec()->pid());
  EXPECT_LT(after - before, 64 << 20) << "exec grew by " << (after - before) << " bytes";
  s.Close();
}

TEST_F(ExecTest, ASlowConsumerSlowsThePodDown) {
  SessionClient s(stack_->exec_port(), absl::Seconds(120));
  ASSERT_TRUE(s.Open(stack_->Token("alice", {"admins"}), "team", "app-1").ok());
  s.Command("head -c 50000000 /dev/zero");
  // Read nothing for a while: exec must not buffer the whole output.
  absl::SleepFor(absl::Seconds(3));
  const int64_t rss = ResidentBytes(stack_->exec()->pid());
  int64_t bytes = 0;
  Outcome o = s.Wait(&bytes);
  ASSERT_TRUE(o.exit.has_value());
  EXPECT_EQ(bytes, 50000000);
  EXPECT_LT(rss, 200 << 20) << "exec buffered the output of a slow consumer";
  s.Close();
}

TEST_F(ExecTest, ShellModeRunsATtyAndRecordsIt) {
  SessionClient s(stack_->exec_port());
  auto ready =
      s.Open(stack_->Token("dave", {"devs"}), "team", "app-1", "", common::SESSION_MODE_SHELL);
  ASSERT_TRUE(ready.ok()) << ready.status();
  pb::SessionRequest in;
  in.mutable_stdin()->set_data("echo shell-$((6*7))\n");
  s.Send(in);
  std::string screen;
  pb::SessionResponse res;
  while (screen.find("shell-42") == std::string::npos && s.stream()->Read(&res)) {
    if (res.has_stdout()) {
      screen += res.stdout().data();
    }
  }
  EXPECT_THAT(screen, HasSubstr("shell-42"));
  in.mutable_stdin()->set_data("exit 0\n");
  s.Send(in);
  common::CloseReason reason = common::CLOSE_REASON_UNSPECIFIED;
  while (s.stream()->Read(&res)) {
    if (res.has_closed()) {
      reason = res.closed().reason();
    }
  }
  EXPECT_EQ(reason, common::CLOSE_REASON_REMOTE_EXIT);
  s.Finish();
  std::string recording;
  for (const auto& r : AuditOf(ready->session_id())) {
    if (r.event().kind() == common::EVENT_KIND_SHELL_RECORDING) {
      recording += r.event().shell_recording().asciicast();
    }
  }
  EXPECT_THAT(recording, HasSubstr("\"version\":2"));
  EXPECT_THAT(recording, HasSubstr("shell-42"));
}

TEST_F(ExecTest, AShellRulesTimeLimitEndsTheShellSession) {
  SessionClient s(stack_->exec_port());
  const absl::Time start = absl::Now();
  ASSERT_TRUE(
      s.Open(stack_->Token("dave", {"devs"}), "team", "app-1", "", common::SESSION_MODE_SHELL)
          .ok());
  pb::SessionResponse res;
  common::CloseReason reason = common::CLOSE_REASON_UNSPECIFIED;
  while (s.stream()->Read(&res)) {
    if (res.has_closed()) {
      reason = res.closed().reason();
    }
  }
  s.Finish();
  EXPECT_EQ(reason, common::CLOSE_REASON_SESSION_LIMIT);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(2900));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST_F(ExecTest, ARenewedCredentialMovesTheSessionsEndAndOnlyTheSameUsersIsTaken) {
  SessionClient s(stack_->exec_port());
  const absl::Time start = absl::Now();
  auto ready = s.Open(stack_->Token("rena", {"admins"}, absl::Seconds(2)), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  auto renew = [&s](const std::string& token) {
    pb::SessionRequest req;
    req.mutable_renew()->mutable_credential()->set_bearer_token(token);
    s.Send(req);
  };
  // Another user's credential does not take the session over.
  renew(stack_->Token("otto", {"admins"}));
  Outcome other = s.Wait();
  ASSERT_TRUE(other.error.has_value());
  EXPECT_EQ(other.error->command_id(), "renew");
  EXPECT_EQ(other.error->status().code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(other.error->status().message(), HasSubstr("another user"));
  // A credential the verifier refuses moves nothing either.
  renew(stack_->Token("rena", {"admins"}, absl::Seconds(-99)));
  Outcome expired = s.Wait();
  ASSERT_TRUE(expired.error.has_value());
  EXPECT_THAT(expired.error->status().message(), HasSubstr("the new credential was refused"));
  // The same user's fresh credential: the session outlives the first one's two seconds.
  renew(stack_->Token("rena", {"admins"}, absl::Hours(1)));
  absl::SleepFor(start + absl::Seconds(3) - absl::Now());
  Outcome o = s.Run("echo still-open");
  ASSERT_TRUE(o.exit.has_value()) << (o.error ? o.error->status().message() : "no exit");
  EXPECT_EQ(o.stdout_text, "still-open\n");
  EXPECT_EQ(s.Close(), common::CLOSE_REASON_CLIENT);
}

TEST_F(ExecTest, IdleSessionsCloseAndSessionsPerUserAreCapped) {
  SessionClient idle(stack_->exec_port());
  auto ready = idle.Open(stack_->Token("ida", {"devs"}), "team", "app-1");
  ASSERT_TRUE(ready.ok());
  pb::SessionResponse res;
  common::CloseReason reason = common::CLOSE_REASON_UNSPECIFIED;
  const absl::Time start = absl::Now();
  while (idle.stream()->Read(&res)) {
    if (res.has_closed()) {
      reason = res.closed().reason();
    }
  }
  EXPECT_EQ(reason, common::CLOSE_REASON_IDLE_TIMEOUT);
  EXPECT_GE(absl::Now() - start, absl::Seconds(3));
  idle.Finish();

  std::vector<std::unique_ptr<SessionClient>> open;
  const std::string token = stack_->Token("uma", {"devs"});
  for (int i = 0; i < 3; ++i) {
    open.push_back(std::make_unique<SessionClient>(stack_->exec_port()));
    ASSERT_TRUE(open.back()->Open(token, "team", "app-1").ok()) << i;
  }
  SessionClient fourth(stack_->exec_port());
  auto refused = fourth.Open(token, "team", "app-1");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  open.back()->Close();
  open.pop_back();
  // A closed session frees its slot (the server lets go of it just after the stream ends).
  bool reopened = false;
  for (int i = 0; i < 40 && !reopened; ++i) {
    SessionClient again(stack_->exec_port());
    reopened = again.Open(token, "team", "app-1").ok();
    if (reopened) {
      again.Close();
    } else {
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  EXPECT_TRUE(reopened);
  for (auto& s : open) {
    s->Close();
  }
}

TEST_F(ExecTest, ListTargetsShowsOnlyWhatPolicyAllows) {
  auto stub = pb::ExecService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", stack_->exec_port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  pb::ListTargetsRequest req;
  req.mutable_credential()->set_bearer_token(stack_->Token("dave", {"devs"}));
  pb::ListTargetsResponse res;
  ASSERT_TRUE(stub->ListTargets(&ctx, req, &res).ok());
  ASSERT_EQ(res.namespaces_size(), 1);
  EXPECT_EQ(res.namespaces(0).name(), "team");
  std::vector<std::string> pods;
  for (const auto& p : res.namespaces(0).pods()) {
    pods.push_back(p.name());
  }
  EXPECT_THAT(pods, ::testing::ElementsAre("app-1", "root-1"));  // pending-1 is not Running
  const auto& app = res.namespaces(0).pods(0);
  ASSERT_EQ(app.containers_size(), 2);
  EXPECT_EQ(app.containers(0).name(), "sidecar");
  EXPECT_FALSE(app.containers(0).default_());
  EXPECT_EQ(app.containers(1).name(), "main");
  EXPECT_TRUE(app.containers(1).default_());
  EXPECT_TRUE(app.containers(1).shell_allowed());  // rule devs-shell
  grpc::ClientContext bad;
  req.mutable_credential()->set_bearer_token("garbage");
  EXPECT_EQ(stub->ListTargets(&bad, req, &res).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

// podgate-run, the command-line client: exit status, streams apart, refusals.
TEST_F(ExecTest, PodgateRunPassesTheExitStatusAndStreams) {
  auto run = [&](const std::string& token, std::vector<std::string> argv) {
    std::vector<std::string> args = {absl::StrCat("--exec_address=127.0.0.1:", stack_->exec_port()),
                                     "--namespace=team", "--pod=app-1", "--"};
    args.insert(args.end(), argv.begin(), argv.end());
    // The token through the environment: on the command line podgate-run warns (ps shows it).
    auto p = testing::Subprocess::Start(PODGATE_RUN_BIN, args, {{"PODGATE_TOKEN", token}});
    EXPECT_TRUE(p.ok());
    auto status = (*p)->WaitExit(absl::Seconds(30));
    (*p)->WaitForLine("\x01never", absl::Milliseconds(100)).IgnoreError();
    return std::make_pair(status.ok() ? *status : -1, absl::StrJoin((*p)->Lines(), "\n"));
  };
  auto [code, err] =
      run(stack_->Token("alice", {"admins"}), {"sh", "-c", "echo 'it''s'; echo oops >&2; exit 4"});
  EXPECT_EQ(code, 4);
  EXPECT_EQ(err, "oops");  // stderr only; stdout went to the terminal
  auto [denied, why] = run(stack_->Token("dave", {"devs"}), {"cat", "/etc/passwd"});
  EXPECT_EQ(denied, 126);
  EXPECT_THAT(why, HasSubstr("default-deny"));
  auto [refused, auth] = run("not-a-token", {"true"});
  EXPECT_EQ(refused, 125);
  EXPECT_THAT(auth, HasSubstr("credential refused"));
}

// --- checks in the container ------------------------------------------------------------------
// What policy cannot see in the argv, exec checks in the container: that a JVM tool's pid is a
// JVM (a wrapper script would die of the attach signal), that a path does not leave its prefix
// through a symbolic link. The rules also put fixed arguments in (prependArgs).

// A directory kubesim's containers (uid 65534) can read: the JVM's source, and files whose
// links lead in and out of the prefix the policy allows.
std::string MakeWorldReadableDir() {
  const std::string dir = testing::MakeTempDir("podgate-checks");
  EXPECT_NE(dir, "");
  chmod(dir.c_str(), 0755);
  return dir;
}

class ContainerCheckTest : public ::testing::Test {
 protected:
  // A failure here fails every test (gtest would only skip them after a failed
  // SetUpTestSuite, and a skipped test does not fail the build).
  static void SetUpTestSuite() { setup_error_ = new std::string(StartAll()); }
  void SetUp() override { ASSERT_EQ(*setup_error_, "") << "the stack did not start"; }

  static std::string StartAll() {
    dir_ = new std::string(MakeWorldReadableDir());
    const std::string& d = *dir_;
    std::ofstream(d + "/Sleeper.java")
        << "public class Sleeper {\n"
           "  public static void main(String[] a) throws Exception {\n"
           "    java.nio.file.Files.writeString(java.nio.file.Path.of(\"ready\"), \"1\");\n"
           "    Thread.sleep(600_000);\n"
           "  }\n"
           "}\n";
    if (mkdir((d + "/logs").c_str(), 0755) != 0) {
      return "mkdir failed";
    }
    std::ofstream(d + "/logs/ok.log") << "fine\n";
    std::ofstream(d + "/secret") << "top secret\n";
    for (const char* f : {"/Sleeper.java", "/logs/ok.log", "/secret"}) {
      chmod((d + f).c_str(), 0644);
    }
    if (symlink("../secret", (d + "/logs/link-to-outside").c_str()) != 0 ||
        symlink("ok.log", (d + "/logs/link-inside").c_str()) != 0) {
      return "symlink failed";
    }

    // The JVM runs under a wrapper script, as many images start it: the script is the kind of
    // process jstack would kill.
    wrapper_ = new std::vector<std::string>{"sh", "-c", JvmCommandLine() + "; exit 0"};
    const std::string cluster = absl::StrCat(R"(namespaces:
  - name: team
pods:
  - name: jvm-1
    namespace: team
    containers:
      - name: app
        image: demo/jvm:1
        command: [sh, -c, ")",
                                             (*wrapper_)[2], R"("]
  - name: files-1
    namespace: team
    containers:
      - name: app
        image: demo/files:1
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec, namespaces]
    namespaces: ["*"]
)");
    const std::string policy = absl::StrCat(R"(apiVersion: podgate.io/v1
kind: CommandPolicy
defaults: {timeLimit: 60s}
rules:
  - id: admins-anything
    effect: allow
    subjects: {groups: [admins]}
    targets: {namespaces: [team]}
    superuser: true
  - id: devs-jstack
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    command:
      program: jstack
      args:
        - {name: pid, type: pid, jvm: true}
  - id: devs-cat
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    command:
      program: cat
      prependArgs: ["--"]
      args:
        - {name: file, type: path, prefixes: [)",
                                            d, R"(/logs]}
  - id: devs-echo
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    command:
      program: echo
      prependArgs: [podgate-fixed]
      args:
        - {name: word, type: regex, pattern: "[a-z]+", repeat: true}
  - id: devs-sleep
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    command:
      program: sleep
      prependArgs: ["--"]
      args:
        - {name: seconds, type: integer}
)");
    testing::StackOptions options;
    options.binaries = Binaries();
    options.cluster_yaml = cluster;
    options.policy_yaml = policy;
    options.exec_flags = {"--interrupt_grace=1s"};
    auto stack = testing::Stack::Start(options);
    if (!stack.ok()) {
      return stack.status().ToString();
    }
    stack_ = stack->release();
    metrics_port_ = stack_->exec_metrics_port();
    // The single-file program compiles in memory first: wait until it runs.
    const std::string ready = stack_->ContainerDir("team", "jvm-1", "app") + "/ready";
    for (int i = 0; i < 900 && access(ready.c_str(), F_OK) != 0; ++i) {
      absl::SleepFor(absl::Milliseconds(100));
    }
    return access(ready.c_str(), F_OK) == 0 ? "" : "the JVM in jvm-1/app did not start";
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
    if (dir_ != nullptr) {
      for (const char* f : {"/Sleeper.java", "/logs/ok.log", "/secret", "/logs/link-to-outside",
                            "/logs/link-inside"}) {
        unlink((*dir_ + f).c_str());
      }
      rmdir((*dir_ + "/logs").c_str());
      rmdir(dir_->c_str());
      delete dir_;
      dir_ = nullptr;
    }
    delete wrapper_;
    wrapper_ = nullptr;
    delete setup_error_;
    setup_error_ = nullptr;
  }

  static std::string JvmCommandLine() {
    return absl::StrCat("java -Xmx32m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 ", *dir_,
                        "/Sleeper.java");
  }
  static std::vector<std::string> JvmArgv() {
    return {"java", "-Xmx32m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            *dir_ + "/Sleeper.java"};
  }

  // The attach socket /tmp/.java_pid<pid> of a JVM that was killed (SIGKILL leaves it) stays
  // behind; a later JVM of another user given the same pid makes jstack refuse it ("file should
  // be owned by the current user"). CI runs thousands of processes, so pids come round: a stale
  // file not owned by the JVM's user is removed before the attach.
  static void RemoveStaleAttachFile(pid_t jvm) {
    struct stat process {};
    struct stat file {};
    const std::string path = absl::StrCat("/tmp/.java_pid", jvm);
    if (stat(absl::StrCat("/proc/", jvm).c_str(), &process) == 0 &&
        lstat(path.c_str(), &file) == 0 && file.st_uid != process.st_uid) {
      unlink(path.c_str());
    }
  }

  static pid_t OnlyPid(const std::vector<std::string>& argv) {
    std::vector<pid_t> pids = testing::ProcessesWithArgv(argv);
    EXPECT_EQ(pids.size(), 1u) << absl::StrJoin(argv, " ");
    return pids.empty() ? 0 : pids[0];
  }

  double Metric(const std::string& family, const std::vector<std::string>& labels) {
    auto page = testing::HttpGet(metrics_port_, "/metrics");
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) {
      return -1;
    }
    auto parsed = testing::ParsePrometheusText(page->body);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    double sum = 0;
    for (const auto& [name, value] : parsed->samples) {
      bool match = name.rfind(family + "{", 0) == 0;
      for (const std::string& l : labels) {
        match = match && name.find(l) != std::string::npos;
      }
      sum += match ? value : 0;
    }
    return sum;
  }

  static std::string* setup_error_;
  static std::string* dir_;
  static std::vector<std::string>* wrapper_;
  static testing::Stack* stack_;
  static int metrics_port_;
};
std::string* ContainerCheckTest::setup_error_ = nullptr;
std::string* ContainerCheckTest::dir_ = nullptr;
std::vector<std::string>* ContainerCheckTest::wrapper_ = nullptr;
testing::Stack* ContainerCheckTest::stack_ = nullptr;
int ContainerCheckTest::metrics_port_ = 0;

bool Runs(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string st;
  return std::getline(stat, st) && st.find(") Z") == std::string::npos;
}

TEST_F(ContainerCheckTest, JstackOfAProcessThatIsNotAJvmIsRefusedAndTheProcessLives) {
  const pid_t script = OnlyPid(*wrapper_);
  ASSERT_GT(script, 0);
  const double refused_before =
      Metric("podgate_exec_container_checks_total", {R"(kind="jvm_pid")", R"(result="refused")"});
  SessionClient s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("dave", {"devs"}), "team", "jvm-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  Outcome o = s.Run(absl::StrCat("jstack ", script));
  ASSERT_TRUE(o.denied.has_value()) << o.stdout_text << o.stderr_text;
  EXPECT_EQ(o.denied->rule(), "container-check");
  EXPECT_EQ(o.denied->reason(),
            absl::StrCat("pid ", script,
                         " is not a Java virtual machine in jvm-1/app (jstack would kill it); "
                         "run jps to list JVMs"));
  // A pid that is no process at all.
  Outcome gone = s.Run("jstack 4194304");
  ASSERT_TRUE(gone.denied.has_value());
  EXPECT_THAT(gone.denied->reason(), HasSubstr("there is no process 4194304 in jvm-1/app"));
  s.Close();
  absl::SleepFor(absl::Seconds(1));
  EXPECT_TRUE(Runs(script)) << "the wrapper script died: jstack reached it";
  EXPECT_EQ(
      Metric("podgate_exec_container_checks_total", {R"(kind="jvm_pid")", R"(result="refused")"}) -
          refused_before,
      2);

  // Audit: the allow of policy, then the refusal, with the same policy version; nothing ran.
  std::vector<std::string> kinds;
  std::string allowed_version;
  for (const auto& r : AuditRecords(stack_->audit_port(), ready->session_id())) {
    const common::AuditEvent& e = r.event();
    kinds.push_back(common::EventKind_Name(e.kind()));
    if (e.kind() == common::EVENT_KIND_DECISION &&
        e.decision().verdict() == common::VERDICT_ALLOW) {
      EXPECT_EQ(e.decision().rule(), "devs-jstack");
      ASSERT_EQ(e.decision().checks_size(), 1);
      EXPECT_EQ(e.decision().checks(0).kind(), common::ContainerCheck::KIND_JVM_PID);
      EXPECT_EQ(e.decision().checks(0).arg_index(), 1u);
      allowed_version = e.decision().policy_version();
    }
    if (e.kind() == common::EVENT_KIND_DECISION && e.decision().verdict() == common::VERDICT_DENY) {
      EXPECT_EQ(e.decision().rule(), "container-check");
      EXPECT_FALSE(e.decision().reason().empty());
      EXPECT_EQ(e.decision().policy_version(), allowed_version);
      EXPECT_FALSE(allowed_version.empty());
    }
  }
  EXPECT_THAT(kinds, ::testing::ElementsAre("EVENT_KIND_SESSION_OPEN", "EVENT_KIND_COMMAND_REQUEST",
                                            "EVENT_KIND_DECISION", "EVENT_KIND_DECISION",
                                            "EVENT_KIND_COMMAND_REQUEST", "EVENT_KIND_DECISION",
                                            "EVENT_KIND_DECISION", "EVENT_KIND_SESSION_CLOSE"));
}

TEST_F(ContainerCheckTest, JstackOfARealJvmWorks) {
  const pid_t jvm = OnlyPid(JvmArgv());
  ASSERT_GT(jvm, 0);
  RemoveStaleAttachFile(jvm);
  SessionClient s(stack_->exec_port());
  ASSERT_TRUE(s.Open(stack_->Token("dave", {"devs"}), "team", "jvm-1").ok());
  Outcome o = s.Run(absl::StrCat("jstack ", jvm));
  ASSERT_TRUE(o.exit.has_value()) << (o.denied ? o.denied->reason() : o.stderr_text);
  EXPECT_EQ(o.exit->exit_code(), 0) << o.stderr_text;
  EXPECT_THAT(o.stdout_text, HasSubstr("Full thread dump"));
  s.Close();
  EXPECT_TRUE(Runs(jvm));
  EXPECT_GE(
      Metric("podgate_exec_container_checks_total", {R"(kind="jvm_pid")", R"(result="passed")"}),
      1);
}

TEST_F(ContainerCheckTest, ALinkOutOfThePrefixIsRefusedAndItsTargetNeverReachesTheClient) {
  const std::string& d = *dir_;
  // The target is readable in the container: only the check stands between it and the user.
  SessionClient admin(stack_->exec_port());
  ASSERT_TRUE(admin.Open(stack_->Token("alice", {"admins"}), "team", "files-1").ok());
  Outcome control = admin.Run(absl::StrCat("cat ", d, "/secret"));
  ASSERT_TRUE(control.exit.has_value());
  EXPECT_EQ(control.stdout_text, "top secret\n");
  admin.Close();

  SessionClient s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("dave", {"devs"}), "team", "files-1");
  ASSERT_TRUE(ready.ok());
  Outcome o = s.Run(absl::StrCat("cat ", d, "/logs/link-to-outside"));
  ASSERT_TRUE(o.denied.has_value()) << o.stdout_text;
  EXPECT_EQ(o.denied->rule(), "container-check");
  EXPECT_EQ(o.denied->reason(),
            absl::StrCat(d, "/logs/link-to-outside resolves to ", d,
                         "/secret in files-1/app, which is not under ", d, "/logs"));
  EXPECT_THAT(o.stdout_text, Not(HasSubstr("secret")));
  Outcome missing = s.Run(absl::StrCat("cat ", d, "/logs/missing.log"));
  ASSERT_TRUE(missing.denied.has_value());
  EXPECT_THAT(missing.denied->reason(), HasSubstr("missing.log does not exist in files-1/app"));
  s.Close();
  for (const auto& r : AuditRecords(stack_->audit_port(), ready->session_id())) {
    EXPECT_NE(r.event().kind(), common::EVENT_KIND_COMMAND_RESULT) << "a refused command ran";
    EXPECT_THAT(r.event().command_result().output_excerpt(), Not(HasSubstr("top secret")));
  }
}

TEST_F(ContainerCheckTest, FilesUnderThePrefixAreReadAndTheArgvThatRanIsAudited) {
  const std::string& d = *dir_;
  SessionClient s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("dave", {"devs"}), "team", "files-1");
  ASSERT_TRUE(ready.ok());
  Outcome plain = s.Run(absl::StrCat("cat ", d, "/logs/ok.log"));
  ASSERT_TRUE(plain.exit.has_value()) << (plain.denied ? plain.denied->reason() : "");
  EXPECT_EQ(plain.stdout_text, "fine\n");
  Outcome link = s.Run(absl::StrCat("cat ", d, "/logs/link-inside"));
  ASSERT_TRUE(link.exit.has_value()) << (link.denied ? link.denied->reason() : "");
  EXPECT_EQ(link.stdout_text, "fine\n");
  s.Close();
  // What ran: the rule's "--" and the path resolved in the container.
  std::vector<std::vector<std::string>> ran;
  for (const auto& r : AuditRecords(stack_->audit_port(), ready->session_id())) {
    if (r.event().kind() == common::EVENT_KIND_COMMAND_RESULT) {
      const auto& argv = r.event().command_result().argv();
      ran.emplace_back(argv.begin(), argv.end());
    }
  }
  EXPECT_THAT(ran,
              ::testing::ElementsAre(std::vector<std::string>{"cat", "--", d + "/logs/ok.log"},
                                     std::vector<std::string>{"cat", "--", d + "/logs/ok.log"}));
}

TEST_F(ContainerCheckTest, PrependArgsReachThePodAndInterruptsFindTheCommandThatRan) {
  SessionClient s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("dave", {"devs"}), "team", "files-1");
  ASSERT_TRUE(ready.ok());
  Outcome o = s.Run("echo hello world");
  ASSERT_TRUE(o.exit.has_value()) << (o.denied ? o.denied->reason() : "");
  EXPECT_EQ(o.stdout_text, "podgate-fixed hello world\n");

  // The process runs `sleep -- N` (the argv that ran): the interrupt must stop exactly it.
  const std::string seconds = absl::StrCat(5000 + getpid() % 1000);
  const std::vector<std::string> argv = {"sleep", "--", seconds};
  s.Command("sleep " + seconds);
  for (int i = 0; i < 100 && CountProcesses(argv) == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(CountProcesses(argv), 1) << "the command did not start as sleep -- N";
  s.Interrupt();
  Outcome stopped = s.Wait();
  ASSERT_TRUE(stopped.exit.has_value());
  EXPECT_EQ(stopped.exit->termination(), common::TERMINATION_INTERRUPTED);
  for (int i = 0; i < 100 && CountProcesses(argv) != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(CountProcesses(argv), 0) << "the remote process outlived the interrupt";
  s.Close();
  std::vector<std::string> echoed;
  for (const auto& r : AuditRecords(stack_->audit_port(), ready->session_id())) {
    if (r.event().kind() == common::EVENT_KIND_COMMAND_RESULT && echoed.empty()) {
      echoed.assign(r.event().command_result().argv().begin(),
                    r.event().command_result().argv().end());
    }
  }
  EXPECT_EQ(echoed, (std::vector<std::string>{"echo", "podgate-fixed", "hello", "world"}));
}

// A decision that audit did not acknowledge in time is still sent until audit acks it, and it
// may say allow; the user was told the command did not run, and the trail must say so too.
// (It was stored later as a bare allow.) Audit is frozen with SIGSTOP, as in the incident.
TEST(ExecAuditFreezeTest, ADecisionNotAckedInTimeIsFollowedByANotRunRecord) {
  testing::StackOptions options;
  options.binaries = Binaries();
  options.cluster_yaml = kCluster;
  options.policy_yaml = kPolicy;
  options.exec_flags = {"--audit_ack_timeout=1s"};
  auto stack = testing::Stack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  SessionClient s((*stack)->exec_port());
  auto ready = s.Open((*stack)->Token("dave", {"devs"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  ASSERT_TRUE((*stack)->audit()->Freeze().ok());
  Outcome o = s.Run("echo frozen");
  (*stack)->audit()->Signal(SIGCONT);
  ASSERT_TRUE(o.error.has_value());
  EXPECT_THAT(o.error->status().message(), HasSubstr("not run"));
  s.Close();
  bool allowed = false;
  bool not_run = false;
  for (const auto& r : AuditRecords((*stack)->audit_port(), ready->session_id())) {
    const common::AuditEvent& e = r.event();
    if (e.kind() == common::EVENT_KIND_DECISION &&
        e.decision().verdict() == common::VERDICT_ALLOW) {
      allowed = true;
    }
    if (e.kind() == common::EVENT_KIND_COMMAND_RESULT &&
        absl::StrContains(e.command_result().error(), "not run")) {
      not_run = true;
    }
  }
  EXPECT_TRUE(allowed) << "the decision was stored once audit came back";
  EXPECT_TRUE(not_run) << "a record says the allowed command did not run";
}

// A launch that is never confirmed (here: kubesim frozen, so the exec stream neither opens nor
// reports the wrapper's pid) ends within --launch_timeout as not run, audited so, instead of
// at its time limit (30 s); nothing runs once kubesim goes on, and the next command runs.
TEST(ExecLaunchTimeoutTest, AnUnconfirmedLaunchEndsAtOnceAsNotRun) {
  testing::StackOptions options;
  options.binaries = Binaries();
  options.cluster_yaml = kCluster;
  options.policy_yaml = kPolicy;
  options.exec_flags = {"--launch_timeout=1s"};
  auto stack = testing::Stack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  const std::string dir = (*stack)->ContainerDir("team", "app-1", "main");
  SessionClient s((*stack)->exec_port());
  auto ready = s.Open((*stack)->Token("alice", {"admins"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  // The root guard's verdict for the container is cached by the first command.
  ASSERT_TRUE(s.Run("touch first-marker").exit.has_value());
  ASSERT_TRUE((*stack)->kubesim()->Freeze().ok());
  const absl::Time start = absl::Now();
  Outcome o = s.Run("touch stalled-marker");
  const absl::Duration took = absl::Now() - start;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  (*stack)->kubesim()->Signal(SIGCONT);
  ASSERT_TRUE(o.error.has_value())
      << "exit: " << (o.exit ? o.exit->ShortDebugString() : "none")
      << " denied: " << (o.denied ? o.denied->ShortDebugString() : "none") << " took " << took;
  EXPECT_THAT(o.error->status().message(), HasSubstr("not run"));
  EXPECT_THAT(o.error->status().message(), HasSubstr("launch was not confirmed within 1s"));
  EXPECT_LT(took, absl::Seconds(5)) << "it waited for more than its launch bound";

  Outcome next = s.Run("touch next-marker");
  ASSERT_TRUE(next.exit.has_value()) << (next.error ? next.error->ShortDebugString() : "");
  EXPECT_EQ(next.exit->exit_code(), 0);
  s.Close();
  std::this_thread::sleep_for(std::chrono::seconds(1));  // a wrapper kubesim started late exits
  EXPECT_NE(access((dir + "/stalled-marker").c_str(), F_OK), 0)
      << "a command whose launch was not confirmed ran";
  EXPECT_EQ(access((dir + "/next-marker").c_str(), F_OK), 0);
  bool not_run = false;
  for (const auto& r : AuditRecords((*stack)->audit_port(), ready->session_id())) {
    const common::AuditEvent& e = r.event();
    if (e.kind() == common::EVENT_KIND_COMMAND_RESULT &&
        e.command_result().line() == "touch stalled-marker") {
      EXPECT_EQ(e.command_result().termination(), common::TERMINATION_ERROR);
      EXPECT_THAT(e.command_result().error(), HasSubstr("not run"));
      not_run = true;
    }
  }
  EXPECT_TRUE(not_run) << "audit has the unconfirmed launch's result";
}

// Fail closed: without policy or without audit, nothing opens.
// A client that goes away (an edge replica killed, say) cancels its session: exec must still
// finish the call, or the session never ends and SIGTERM waits for it forever.
TEST(ExecShutdownTest, CancelledSessionsEndAndSigtermExitsPromptly) {
  testing::StackOptions options;
  options.binaries = Binaries();
  options.cluster_yaml = kCluster;
  options.policy_yaml = kPolicy;
  auto stack = testing::Stack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  {
    // Idle, and right after a command: both cancelled without a close.
    SessionClient idle((*stack)->exec_port());
    ASSERT_TRUE(idle.Open((*stack)->Token("alice", {"admins"}), "team", "app-1").ok());
    SessionClient busy((*stack)->exec_port());
    ASSERT_TRUE(busy.Open((*stack)->Token("alice", {"admins"}), "team", "app-1").ok());
    Outcome o = busy.Run("echo hi");
    ASSERT_TRUE(o.exit.has_value());
    EXPECT_EQ(o.exit->exit_code(), 0);
  }  // ~SessionClient cancels both calls
  // Both sessions closed (logged as "session close") before the signal.
  auto closes = [&] {
    int n = 0;
    for (const std::string& line : (*stack)->exec()->Lines()) {
      n += line.find("\"msg\":\"session close\"") != std::string::npos ? 1 : 0;
    }
    return n;
  };
  for (int i = 0; i < 200 && closes() < 2; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_EQ(closes(), 2) << absl::StrJoin((*stack)->exec()->Lines(), "\n");
  const absl::Time start = absl::Now();
  (*stack)->exec()->Signal(SIGTERM);
  absl::StatusOr<int> status = (*stack)->exec()->WaitExit(absl::Seconds(30));
  ASSERT_TRUE(status.ok()) << "exec did not exit after SIGTERM: " << status.status();
  EXPECT_EQ(*status, 0);
  // The stack runs exec with --drain_timeout=2s: nothing was left to wait for.
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(ExecFailClosedTest, PolicyDownAndAuditDownRefuse) {
  {
    testing::StackOptions options;
    options.binaries = Binaries();
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    options.start_policy = false;
    options.exec_flags = {"--policy_timeout=1s"};
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    // Policy is asked about the target before Kubernetes: without it, nothing opens.
    SessionClient s((*stack)->exec_port());
    auto r = s.Open((*stack)->Token("alice", {"admins"}), "team", "app-1");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr("policy could not be asked"));
  }
  {
    testing::StackOptions options;
    options.binaries = Binaries();
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    options.start_audit = false;
    options.exec_flags = {"--audit_ack_timeout=1s"};
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    SessionClient s((*stack)->exec_port());
    auto r = s.Open((*stack)->Token("alice", {"admins"}), "team", "app-1");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(r.status().message(), HasSubstr("audit"));
  }
  {
    // Outside strict mode, commands run while audit is away (and each loss is logged).
    testing::StackOptions options;
    options.binaries = Binaries();
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    options.start_audit = false;
    options.exec_flags = {"--audit_strict=false", "--audit_ack_timeout=1s"};
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    SessionClient s((*stack)->exec_port());
    ASSERT_TRUE(s.Open((*stack)->Token("dave", {"devs"}), "team", "app-1").ok());
    Outcome o = s.Run("echo lenient");
    ASSERT_TRUE(o.exit.has_value());
    EXPECT_EQ(o.stdout_text, "lenient\n");
    s.Close();
  }
}

// A stream that breaks under a running command (here: kubesim refuses a stdin frame above its
// --max_frame_bytes and drops the WebSocket; the process, like under a kubelet, runs on) is not
// forgotten: exec stops the process long before its 30 s time limit, and audit says so.
TEST(ExecStreamBreakTest, TheProcessOfABrokenStreamIsStopped) {
  testing::StackOptions options;
  options.binaries = Binaries();
  options.cluster_yaml = kCluster;
  options.policy_yaml = kPolicy;
  options.kubesim_flags = {"--max_frame_bytes=1024"};
  options.exec_flags = {"--interrupt_grace=1s"};
  auto stack = testing::Stack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  const std::vector<std::string> argv = {"sleep", "49"};
  SessionClient s((*stack)->exec_port());
  auto ready = s.Open((*stack)->Token("alice", {"admins"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  s.Command("sleep 49");
  for (int i = 0; i < 100 && CountProcesses(argv) == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(CountProcesses(argv), 1) << "the command did not start";
  const absl::Time broken = absl::Now();
  pb::SessionRequest in;
  in.mutable_stdin()->set_data(std::string(8192, 'x'));  // one 8 KiB frame > 1 KiB
  s.Send(in);
  Outcome o = s.Wait();
  ASSERT_TRUE(o.exit.has_value());
  EXPECT_EQ(o.exit->termination(), common::TERMINATION_ERROR);
  while (CountProcesses(argv) != 0 && absl::Now() < broken + absl::Seconds(6)) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(CountProcesses(argv), 0) << "the process of a broken stream was left running";
  s.Close();
  std::string error;
  for (const auto& r : AuditRecords((*stack)->audit_port(), ready->session_id())) {
    if (r.event().kind() == common::EVENT_KIND_COMMAND_RESULT) {
      error = r.event().command_result().error();
    }
  }
  EXPECT_THAT(error, HasSubstr("exec stops its process (pid "));
  for (int i = 0; i < 1000 && CountProcesses(argv) != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
}

// A fresh, empty directory for exec's journal.
std::string TempDir() {
  const std::string dir = testing::MakeTempDir("podgate-journal");
  EXPECT_NE(dir, "");
  return dir;
}

std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') {
        names.push_back(e->d_name);
      }
    }
    closedir(d);
  }
  return names;
}

// The result and close records of a session (waits until both are there).
std::pair<std::optional<common::AuditEvent>, std::optional<common::AuditEvent>> ResultAndClose(
    int audit_port, const std::string& session_id) {
  std::optional<common::AuditEvent> result;
  std::optional<common::AuditEvent> close;
  for (int attempt = 0; attempt < 3 && !(result && close); ++attempt) {
    for (const auto& r : AuditRecords(audit_port, session_id)) {
      if (r.event().kind() == common::EVENT_KIND_COMMAND_RESULT) {
        EXPECT_FALSE(result.has_value()) << "two results";
        result = r.event();
      }
      if (r.event().kind() == common::EVENT_KIND_SESSION_CLOSE) {
        EXPECT_FALSE(close.has_value()) << "two closes";
        close = r.event();
      }
    }
    if (!(result && close)) {
      result.reset();
      close.reset();
    }
  }
  return {result, close};
}

// On SIGTERM exec drains: a running command's process is stopped with the stop helper, its
// result and the session's close are recorded and acknowledged, and only then exec exits.
TEST(ExecDrainTest, SigtermStopsRunningCommandsAndRecordsThemBeforeExiting) {
  const std::string journal = TempDir();
  testing::StackOptions options;
  options.binaries = Binaries();
  options.cluster_yaml = kCluster;
  options.policy_yaml = kPolicy;
  options.exec_flags = {"--interrupt_grace=500ms", "--drain_timeout=8s",
                        "--journal_dir=" + journal};
  auto stack = testing::Stack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  const std::vector<std::string> argv = {"sleep", "76"};
  SessionClient s((*stack)->exec_port());
  auto ready = s.Open((*stack)->Token("alice", {"admins"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  s.Command("sleep 76", "drained");
  for (int i = 0; i < 100 && CountProcesses(argv) == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(CountProcesses(argv), 1) << "the command did not start";
  EXPECT_EQ(FilesIn(journal).size(), 1u) << "the running command is not journaled";
  // The journal's write is a stage of the command's start, within its total.
  const int metrics = (*stack)->exec_metrics_port();
  EXPECT_EQ(
      testing::MetricSample(metrics, "podgate_exec_command_start_seconds_count{stage=\"journal\"}"),
      1);
  const double journal_s =
      testing::MetricSample(metrics, "podgate_exec_command_start_seconds_sum{stage=\"journal\"}");
  EXPECT_GT(journal_s, 0);
  EXPECT_LE(journal_s, testing::MetricSample(
                           metrics, "podgate_exec_command_start_seconds_sum{stage=\"total\"}"));
  const absl::Time sigterm = absl::Now();
  (*stack)->exec()->Signal(SIGTERM);
  // The drain closes the session; the client sees that and ends its call, as an edge would.
  ASSERT_TRUE((*stack)->exec()->WaitForLine("\"reason\":\"shutdown\"", absl::Seconds(10)).ok());
  EXPECT_EQ(s.Close(), common::CLOSE_REASON_SHUTDOWN);
  absl::StatusOr<int> status = (*stack)->exec()->WaitExit(absl::Seconds(20));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(CountProcesses(argv), 0) << "the command outlived the exec that started it";
  // The drain itself (SIGINT, the 500 ms grace, the SIGKILL step, the acks) takes under a
  // second, and exec exits right after it (about 1 s in all): gRPC's shutdown no longer waits
  // for the client's idle connection (it took 5 s more).
  EXPECT_LT(absl::Now() - sigterm, absl::Seconds(3))
      << absl::StrJoin((*stack)->exec()->Lines(), "\n");
  bool drained = false;
  for (const std::string& line : (*stack)->exec()->Lines()) {
    drained = drained || absl::StrContains(line, "\"msg\":\"drained\"");
  }
  EXPECT_TRUE(drained) << "the drain ran out of time";
  EXPECT_THAT(FilesIn(journal), ::testing::IsEmpty()) << "a drained command stayed journaled";
  auto [result, close] = ResultAndClose((*stack)->audit_port(), ready->session_id());
  ASSERT_TRUE(result.has_value()) << "no COMMAND_RESULT for the drained command";
  EXPECT_EQ(result->command_id(), "drained");
  EXPECT_EQ(result->command_result().line(), "sleep 76");
  ASSERT_TRUE(close.has_value());
  EXPECT_EQ(close->session_close().reason(), common::CLOSE_REASON_SHUTDOWN);
}

// A drain that runs out of time leaves a stop step in flight: here the command ignores SIGINT,
// so its SIGKILL step comes a grace period (2 s) after the drain's deadline (1 s). exec waits
// for that step before it tears down what the step uses (it used to return from main with the
// step still queued: the process outlived exec, and under the sanitizers the step ran on freed
// memory).
TEST(ExecDrainTest, AStopStepStillRunningWhenTheDrainEndsFinishesBeforeExecExits) {
  testing::StackOptions options;
  options.binaries = Binaries();
  options.cluster_yaml = kCluster;
  options.policy_yaml = kPolicy;
  options.exec_flags = {"--interrupt_grace=2s", "--drain_timeout=1s"};
  auto stack = testing::Stack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  const std::vector<std::string> argv = {"sleep", "74"};
  SessionClient s((*stack)->exec_port());
  auto ready = s.Open((*stack)->Token("alice", {"admins"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  s.Command("sh -c 'trap \"\" INT; sleep 74'", "stubborn");
  for (int i = 0; i < 100 && CountProcesses(argv) == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(CountProcesses(argv), 1) << "the command did not start";
  (*stack)->exec()->Signal(SIGTERM);
  absl::StatusOr<int> status = (*stack)->exec()->WaitExit(absl::Seconds(20));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, 0);
  EXPECT_EQ(CountProcesses(argv), 0) << "the command outlived the exec that started it\n"
                                     << absl::StrJoin((*stack)->exec()->Lines(), "\n");
}

// The journal's entry is written on the journal's own thread; a write that fails there (here the
// journal's directory was removed under exec, as a cleaned-up volume would be) ends the command
// as not run, with the reason, and frees its place: once the directory is back, commands run.
TEST(ExecJournalTest, AnEntryThatCannotBeWrittenMeansTheCommandDoesNotRun) {
  const std::string journal = TempDir();
  testing::StackOptions options;
  options.binaries = Binaries();
  options.cluster_yaml = kCluster;
  options.policy_yaml = kPolicy;
  options.exec_flags = {"--journal_dir=" + journal, "--journal_max_entries=1"};
  auto stack = testing::Stack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  SessionClient s((*stack)->exec_port());
  ASSERT_TRUE(s.Open((*stack)->Token("alice", {"admins"}), "team", "app-1").ok());
  ASSERT_TRUE(s.Run("true").exit.has_value());
  // Its entry goes once audit acknowledged its result (just after the client saw it).
  for (int i = 0; i < 200 && !FilesIn(journal).empty(); ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_THAT(FilesIn(journal), ::testing::IsEmpty());

  const std::string marks = TempDir();
  // The pod's processes run as the container's user: the marks go where it may write.
  std::filesystem::permissions(marks, std::filesystem::perms::all);
  std::filesystem::remove_all(journal);
  Outcome refused = s.Run("touch " + marks + "/not-journaled");
  ASSERT_TRUE(refused.error.has_value());
  EXPECT_THAT(refused.error->status().message(), HasSubstr("could not journal it"));
  EXPECT_THAT(refused.error->status().message(), HasSubstr("No such file or directory"));

  // With one entry allowed, a place still taken by the failed write would refuse this one.
  std::filesystem::create_directories(journal);
  Outcome ran = s.Run("touch " + marks + "/journaled");
  ASSERT_TRUE(ran.exit.has_value()) << (ran.error.has_value() ? ran.error->status().message() : "");
  EXPECT_EQ(ran.exit->exit_code(), 0);
  s.Close();
  EXPECT_TRUE(std::filesystem::exists(marks + "/journaled"));
  EXPECT_FALSE(std::filesystem::exists(marks + "/not-journaled")) << "it ran unjournaled";
}

// kill -9 of exec leaves a command running in the pod (a closed exec stream does not stop it).
// The exec started next on the same journal stops it and records its result and its session's
// close before it serves; a corrupt entry is skipped with a log line. A full journal refuses
// to run a command it could not journal.
TEST(ExecJournalTest, AnExecKilledMidCommandIsCleanedUpByTheNextOne) {
  const std::string journal = TempDir();
  testing::StackOptions options;
  options.binaries = Binaries();
  options.cluster_yaml = kCluster;
  options.policy_yaml = kPolicy;
  options.exec_flags = {"--interrupt_grace=500ms", "--journal_dir=" + journal,
                        "--journal_max_entries=1"};
  auto stack = testing::Stack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  const std::vector<std::string> argv = {"sleep", "79"};
  std::string session_id;
  {
    SessionClient s((*stack)->exec_port());
    auto ready = s.Open((*stack)->Token("alice", {"admins"}), "team", "app-1");
    ASSERT_TRUE(ready.ok()) << ready.status();
    session_id = ready->session_id();
    s.Command("sleep 79", "orphan");
    for (int i = 0; i < 100 && CountProcesses(argv) == 0; ++i) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_EQ(CountProcesses(argv), 1) << "the command did not start";
    // The journal holds one entry: a second command is not run.
    SessionClient other((*stack)->exec_port());
    ASSERT_TRUE(other.Open((*stack)->Token("bob", {"admins"}), "team", "app-1").ok());
    Outcome refused = other.Run("sleep 78");
    ASSERT_TRUE(refused.error.has_value());
    EXPECT_THAT(refused.error->status().message(), HasSubstr("journal"));
    EXPECT_EQ(CountProcesses({"sleep", "78"}), 0);

    (*stack)->exec()->Signal(SIGKILL);
    ASSERT_TRUE((*stack)->exec()->WaitExit(absl::Seconds(10)).ok());
    absl::SleepFor(absl::Milliseconds(300));
    ASSERT_EQ(CountProcesses(argv), 1) << "the process did not survive exec (kubelet-like)";
  }
  std::ofstream(journal + "/0123abcd.json") << "{\"version\": 1, \"pid\": ";
  ASSERT_TRUE((*stack)->RestartExec().ok());
  EXPECT_EQ(CountProcesses(argv), 0) << "the restarted exec served before stopping the orphan";
  // Logged before exec served, but written by the log's own thread: waited for.
  EXPECT_TRUE((*stack)->exec()->WaitForLine("journal entry skipped", absl::Seconds(10)).ok())
      << "a corrupt entry was not reported";
  EXPECT_THAT(FilesIn(journal), ::testing::IsEmpty());
  auto [result, close] = ResultAndClose((*stack)->audit_port(), session_id);
  ASSERT_TRUE(result.has_value()) << "no COMMAND_RESULT for the orphan";
  EXPECT_EQ(result->command_id(), "orphan");
  EXPECT_EQ(result->command_result().line(), "sleep 79");
  EXPECT_THAT(result->command_result().error(), HasSubstr("stopped: exec restarted"));
  EXPECT_EQ(result->principal().user(), "alice");
  ASSERT_TRUE(close.has_value());
  EXPECT_EQ(close->session_close().reason(), common::CLOSE_REASON_DISCONNECTED);
  // The restarted exec works.
  SessionClient after((*stack)->exec_port());
  ASSERT_TRUE(after.Open((*stack)->Token("alice", {"admins"}), "team", "app-1").ok());
  EXPECT_EQ(after.Run("echo back").stdout_text, "back\n");
  after.Close();
}

// A command's entry is written while it is launched, before it may run: every command that
// ends without running (stopped at any point of its launch, before or after its entry or its
// pid is durable) or that ran must leave no entry behind. With one entry allowed, an entry left
// behind would refuse every later command.
TEST(ExecJournalTest, NoCommandLeavesItsEntryBehindWhereverItIsStopped) {
  const std::string journal = TempDir();
  testing::StackOptions options;
  options.binaries = Binaries();
  options.cluster_yaml = kCluster;
  options.policy_yaml = kPolicy;
  options.exec_flags = {"--journal_dir=" + journal, "--journal_max_entries=1",
                        "--interrupt_grace=200ms"};
  auto stack = testing::Stack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  SessionClient s((*stack)->exec_port());
  ASSERT_TRUE(s.Open((*stack)->Token("alice", {"admins"}), "team", "app-1").ok());
  // An entry goes once audit acknowledged the command's result, just after the client saw it;
  // that of a command stopped before "go" once its write is over. The metric counts what is
  // being written too.
  const int metrics = (*stack)->exec_metrics_port();
  EXPECT_EQ(testing::MetricSample(metrics, "podgate_exec_journal_entries_limit"), 1);
  auto journal_empties = [&] {
    for (int i = 0; i < 300; ++i) {
      if (FilesIn(journal).empty() &&
          testing::MetricSample(metrics, "podgate_exec_journal_entries") == 0) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  };
  for (int delay_us : {0, 200, 500, 1000, 2000, 3000, 5000, 10000, 50000}) {
    SCOPED_TRACE(delay_us);
    s.Command("sleep 74", absl::StrCat("stopped-", delay_us));
    absl::SleepFor(absl::Microseconds(delay_us));
    s.Interrupt();
    Outcome stopped = s.Wait();
    EXPECT_TRUE(stopped.exit.has_value() || stopped.error.has_value());
    ASSERT_TRUE(journal_empties()) << "an entry was left behind";
    Outcome ran = s.Run("true");
    ASSERT_TRUE(ran.exit.has_value())
        << (ran.error.has_value() ? ran.error->status().message() : "");
    ASSERT_TRUE(journal_empties()) << "an entry was left behind";
  }
  s.Close();
  EXPECT_EQ(CountProcesses({"sleep", "74"}), 0);
}

// An entry written while its command was launched, whose pid never became durable (the exec
// that wrote it died between its launch and "go"): its wrapper never got "go", so nothing ran.
// The next exec records that, result and close, stops nothing, and clears the entry. The file is
// written here byte for byte as docs/exec.md describes it: the launch line "podgate-launch -",
// padded to 64 bytes, then the entry's JSON.
TEST(ExecJournalTest, AnEntryNeverLaunchedIsRecordedAsNotRunByTheNextExec) {
  const std::string journal = TempDir();
  std::string launch_line = "podgate-launch -";
  launch_line.resize(63, ' ');
  std::ofstream(journal + "/5eed01.json")
      << launch_line << "\n"
      << R"({"version":2,"result_event_id":"5eed01","close_event_id":"5eed01c",)"
      << R"("session_id":"s-launching","trace_id":"","command_id":"launching","user":"alice",)"
      << R"("groups":["admins"],"namespace":"team","pod":"app-1","container":"main",)"
      << R"("cluster":"","source_address":"ipv4:127.0.0.1:5555","started_unix_ms":1700000000123,)"
      << R"("session_opened_unix_ms":1700000000000,"line":"sleep 75"})"
      << "\n";
  testing::StackOptions options;
  options.binaries = Binaries();
  options.cluster_yaml = kCluster;
  options.policy_yaml = kPolicy;
  options.exec_flags = {"--journal_dir=" + journal};
  auto stack = testing::Stack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  EXPECT_THAT(FilesIn(journal), ::testing::IsEmpty());
  auto [result, close] = ResultAndClose((*stack)->audit_port(), "s-launching");
  ASSERT_TRUE(result.has_value()) << "no COMMAND_RESULT for the entry";
  EXPECT_EQ(result->id(), "5eed01");
  EXPECT_EQ(result->command_id(), "launching");
  EXPECT_EQ(result->command_result().line(), "sleep 75");
  EXPECT_EQ(result->command_result().termination(), common::TERMINATION_ERROR);
  EXPECT_THAT(result->command_result().error(),
              HasSubstr("not run: exec restarted while the command was being launched"));
  EXPECT_EQ(result->principal().user(), "alice");
  ASSERT_TRUE(close.has_value());
  EXPECT_EQ(close->id(), "5eed01c");
  EXPECT_EQ(close->session_close().reason(), common::CLOSE_REASON_DISCONNECTED);
  absl::StatusOr<std::string> settled =
      (*stack)->exec()->WaitForLine("\"outcome\":\"not run\"", absl::Seconds(10));
  ASSERT_TRUE(settled.ok()) << absl::StrJoin((*stack)->exec()->Lines(), "\n");
  EXPECT_THAT(*settled, HasSubstr("journal: command settled"));
}

// exec refuses the names edge refuses (lib/k8s/names.h), with the same words.
TEST_F(ExecTest, TargetNamesAreCheckedAsKubernetesChecksThem) {
  const std::string long_label(253, 'a');
  const std::vector<std::pair<std::string, std::string>> refused = {
      {long_label, "namespace"}, {"team", "pod"}, {"team", "container"}};
  for (const auto& [ns, field] : refused) {
    SessionClient s(stack_->exec_port());
    absl::StatusOr<pb::SessionReady> ready =
        s.Open(stack_->Token("alice", {"admins"}), ns, field == "pod" ? "a..b" : "app-1",
               field == "container" ? long_label : "");
    ASSERT_FALSE(ready.ok()) << field;
    EXPECT_EQ(ready.status().code(), absl::StatusCode::kInvalidArgument) << ready.status();
    EXPECT_THAT(ready.status().message(), HasSubstr(field + " \""));
    EXPECT_THAT(ready.status().message(), HasSubstr("is not a Kubernetes name: a DNS-1123"));
  }
}

TEST(ExecProtocolTest, WorksAgainstAV4OnlyServerAndRefusesALegacyOne) {
  for (const char* protocols : {"v4", "v1"}) {
    SCOPED_TRACE(protocols);
    testing::StackOptions options;
    options.binaries = Binaries();
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    options.kubesim_flags = {absl::StrCat("--protocols=", protocols)};
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    SessionClient s((*stack)->exec_port());
    ASSERT_TRUE(s.Open((*stack)->Token("rita", {"rooters"}), "team", "app-1").ok());
    Outcome o = s.Run("sh -c 'echo v; exit 5'");
    if (std::string(protocols) == "v4") {
      ASSERT_TRUE(o.exit.has_value());
      EXPECT_EQ(o.exit->exit_code(), 5);
      EXPECT_EQ(o.stdout_text, "v\n");
    } else {
      ASSERT_TRUE(o.error.has_value());
      EXPECT_THAT(o.error->status().message(), HasSubstr("protocol"));
    }
    s.Close();
  }
}

// The stack's kubesim, and exec's own Kubernetes client configured from its kubeconfig.
class KubeStackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::StackOptions options;
    options.binaries = Binaries();
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = std::move(*stack);
    absl::StatusOr<exec::KubeConfig> config = exec::LoadKubeconfig(stack_->kubeconfig(), false);
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *std::move(config);
  }

  std::unique_ptr<testing::Stack> stack_;
  exec::KubeConfig config_;
};
class KubeClientStreamsTest : public KubeStackTest {};
class KubeClientRestTest : public KubeStackTest {};

// The Kubernetes client counts its exec streams until each observer's OnExit has returned, so
// exec's main waits for a stop step's last stream before it destroys what the observers use
// (LeakSanitizer once found such a stream, with its TLS state, alive at exec's exit).
class SlowExitObserver final : public exec::ExecObserver {
 public:
  void OnStarted(const std::string&) override {}
  void OnOutput(int, std::string, std::function<void()> resume) override { resume(); }
  void OnExit(exec::ExecResult result) override {
    absl::SleepFor(absl::Milliseconds(300));  // WaitForStreams must wait for this to return
    status = result.status;
    exit_code = result.exit_code;
    exited.store(true);
  }
  absl::Status status = absl::UnknownError("no OnExit");
  int exit_code = -1;
  std::atomic<bool> exited{false};
};

TEST_F(KubeClientStreamsTest, EveryStreamIsCountedUntilItsObserverHasExited) {
  exec::KubeClient kube(config_);
  EXPECT_TRUE(kube.WaitForStreams(absl::Now()));  // none yet

  exec::ExecSpec spec;
  spec.namespace_name = "team";
  spec.pod = "app-1";
  spec.container = "main";
  spec.argv = {"sh", "-c", "sleep 0.5; exit 3"};
  auto ends = std::make_shared<SlowExitObserver>();
  std::unique_ptr<exec::ExecHandle> handle = kube.Exec(spec, ends);
  EXPECT_EQ(kube.open_streams(), 1);
  EXPECT_FALSE(kube.WaitForStreams(absl::Now() + absl::Milliseconds(100)));
  ASSERT_TRUE(kube.WaitForStreams(absl::Now() + absl::Seconds(20)));
  EXPECT_TRUE(ends->exited.load()) << "counted as ended before its OnExit returned";
  EXPECT_TRUE(ends->status.ok()) << ends->status;
  EXPECT_EQ(ends->exit_code, 3);
  EXPECT_EQ(kube.open_streams(), 0);
  handle.reset();

  // A stream closed by its owner (the process still running) ends too, and is counted until
  // then; a refused one (no such pod) as well.
  spec.argv = {"sleep", "71"};
  auto closed = std::make_shared<SlowExitObserver>();
  handle = kube.Exec(spec, closed);
  exec::ExecSpec missing = spec;
  missing.pod = "no-such-pod";
  auto refused = std::make_shared<SlowExitObserver>();
  std::unique_ptr<exec::ExecHandle> refused_handle = kube.Exec(missing, refused);
  EXPECT_EQ(kube.open_streams(), 2);
  for (int i = 0; i < 100 && CountProcesses({"sleep", "71"}) == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  handle.reset();
  ASSERT_TRUE(kube.WaitForStreams(absl::Now() + absl::Seconds(20)));
  EXPECT_TRUE(closed->exited.load());
  EXPECT_FALSE(closed->status.ok());  // ended without an exit status
  EXPECT_TRUE(refused->exited.load());
  EXPECT_EQ(refused->status.code(), absl::StatusCode::kNotFound) << refused->status;
  // The process a closed stream leaves behind is the stop helper's to end (kubelet semantics);
  // the test ends it so that nothing outlives it.
  for (pid_t pid : testing::ProcessesWithArgv({"sleep", "71"})) {
    kill(pid, SIGKILL);
  }
}

// Output that already waits behind a frame is delivered with it, as one chunk of at most
// 256 KiB of one channel (kube_client.cc, ExecBridge::TakeOutput); output with nothing behind
// it is delivered at once. Each chunk's arrival, channel and bytes are recorded; the first
// chunk's resume can be held back so that the pod's output piles up on the connection.
class ChunkObserver final : public exec::ExecObserver {
 public:
  struct Chunk {
    int channel;
    std::string data;
    absl::Time at;
  };
  explicit ChunkObserver(absl::Duration hold_first) : hold_first_(hold_first) {}
  void OnStarted(const std::string&) override {}
  void OnOutput(int channel, std::string data, std::function<void()> resume) override {
    bool hold;
    {
      absl::MutexLock lock(&mu_);
      chunks_.push_back({channel, std::move(data), absl::Now()});
      hold = chunks_.size() == 1 && hold_first_ > absl::ZeroDuration();
    }
    if (hold) {
      std::thread([resume = std::move(resume), d = hold_first_] {
        absl::SleepFor(d);
        resume();
      }).detach();
      return;
    }
    resume();
  }
  void OnExit(exec::ExecResult result) override {
    absl::MutexLock lock(&mu_);
    status_ = result.status;
    exit_code_ = result.exit_code;
    chunks_at_exit_ = chunks_.size();
    exited_ = true;
  }
  // Runs `spec` with a new observer; the chunks delivered before its OnExit.
  static std::vector<Chunk> Run(exec::KubeClient& kube, const exec::ExecSpec& spec,
                                absl::Duration hold_first, absl::Status* status, int* exit_code) {
    auto observer = std::make_shared<ChunkObserver>(hold_first);
    std::unique_ptr<exec::ExecHandle> handle = kube.Exec(spec, observer);
    return observer->Wait(status, exit_code);
  }
  // Waits for OnExit; the chunks delivered before it.
  std::vector<Chunk> Wait(absl::Status* status, int* exit_code) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&exited_), absl::Seconds(60));
    *status = exited_ ? status_ : absl::DeadlineExceededError("no OnExit");
    *exit_code = exit_code_;
    return std::vector<Chunk>(chunks_.begin(), chunks_.begin() + chunks_at_exit_);
  }

 private:
  const absl::Duration hold_first_;
  absl::Mutex mu_;
  std::vector<Chunk> chunks_ ABSL_GUARDED_BY(mu_);
  size_t chunks_at_exit_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  int exit_code_ ABSL_GUARDED_BY(mu_) = -1;
  bool exited_ ABSL_GUARDED_BY(mu_) = false;
};

TEST_F(KubeClientStreamsTest, OutputWaitingBehindAFrameGoesWithItAndOutputThatTricklesAtOnce) {
  exec::KubeClient kube(config_);
  exec::ExecSpec spec;
  spec.namespace_name = "team";
  spec.pod = "app-1";
  spec.container = "main";
  constexpr size_t kFrame = 32 * 1024;  // kubesim's frames, like an API server's
  constexpr size_t kChunkMax = 256 * 1024;

  {
    // 4 MiB while the first chunk is not taken for 300 ms: the frames behind it arrive
    // together, every byte is delivered before the exit, none in a chunk over 256 KiB.
    SCOPED_TRACE("bulk");
    constexpr size_t kTotal = 4 * 1024 * 1024;
    spec.argv = {"head", "-c", std::to_string(kTotal), "/dev/zero"};
    absl::Status status;
    int exit_code;
    std::vector<ChunkObserver::Chunk> chunks =
        ChunkObserver::Run(kube, spec, absl::Milliseconds(300), &status, &exit_code);
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_EQ(exit_code, 0);
    size_t total = 0, largest = 0;
    for (const ChunkObserver::Chunk& c : chunks) {
      EXPECT_EQ(c.channel, 1);
      total += c.data.size();
      largest = std::max(largest, c.data.size());
    }
    EXPECT_EQ(total, kTotal);
    EXPECT_GT(largest, kFrame) << "frames that waited together were delivered one by one";
    EXPECT_LE(largest, kChunkMax);
    EXPECT_LT(chunks.size(), kTotal / kFrame) << chunks.size() << " chunks";
  }
  {
    // A byte, a second of nothing, a byte: the first is delivered before the second is
    // written, not held for it.
    SCOPED_TRACE("trickle");
    spec.argv = {"sh", "-c", "printf a; sleep 1; printf b"};
    absl::Status status;
    int exit_code;
    std::vector<ChunkObserver::Chunk> chunks =
        ChunkObserver::Run(kube, spec, absl::ZeroDuration(), &status, &exit_code);
    ASSERT_TRUE(status.ok()) << status;
    ASSERT_EQ(chunks.size(), 2u);
    EXPECT_EQ(chunks[0].data, "a");
    EXPECT_EQ(chunks[1].data, "b");
    EXPECT_GE(chunks[1].at - chunks[0].at, absl::Milliseconds(800));
  }
  {
    // stdout, a line of stderr, stdout again, all piled up behind a held first chunk: each
    // channel's bytes arrive whole and in order, never in the other channel's chunks.
    SCOPED_TRACE("two channels");
    spec.argv = {"sh", "-c", "seq 1 60000; echo between >&2; seq 60001 120000; echo end >&2"};
    absl::Status status;
    int exit_code;
    std::vector<ChunkObserver::Chunk> chunks =
        ChunkObserver::Run(kube, spec, absl::Milliseconds(300), &status, &exit_code);
    ASSERT_TRUE(status.ok()) << status;
    EXPECT_EQ(exit_code, 0);
    std::string out, err;
    for (const ChunkObserver::Chunk& c : chunks) {
      ASSERT_TRUE(c.channel == 1 || c.channel == 2) << c.channel;
      (c.channel == 1 ? out : err) += c.data;
      EXPECT_LE(c.data.size(), kChunkMax);
    }
    std::string want;
    for (int i = 1; i <= 120000; ++i) {
      absl::StrAppend(&want, i, "\n");
    }
    EXPECT_TRUE(out == want) << "stdout: " << out.size() << " bytes, want " << want.size();
    EXPECT_EQ(err, "between\nend\n");
  }
}

// REST calls (a session open reads its pod) share kept-alive connections to the API server
// instead of a TCP connection and TLS handshake each; an error answer keeps the connection too.
TEST_F(KubeClientRestTest, CallsReuseAKeptAliveConnection) {
  exec::KubeClient kube(config_);
  auto get = [&kube](const std::string& pod) {
    absl::Notification done;
    absl::StatusOr<exec::PodView> result = absl::UnknownError("no answer");
    kube.GetPod(exec::KubeIdentity{}, "team", pod, [&](absl::StatusOr<exec::PodView> p) {
      result = std::move(p);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  };
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<exec::PodView> pod = get("app-1");
    ASSERT_TRUE(pod.ok()) << pod.status();
    EXPECT_EQ(pod->name, "app-1");
  }
  EXPECT_EQ(get("no-such-pod").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(get("app-1").ok());
  EXPECT_EQ(kube.rest_connections_opened(), 1u);
}

}  // namespace
}  // namespace podgate
