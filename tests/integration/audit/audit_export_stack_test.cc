// Blocking mode end to end: podgate-exec, podgate-policy, podgate-audit (with a file sink whose
// blocking_max_lag_records is small) and kubesim as real processes. While the sink cannot write
// (its file's place is taken by a folder), audit stops acknowledging records once the lag passes
// the bound; exec then refuses commands (fail closed, strict mode) and the user is told why. Once
// the path is usable again the sink catches up and commands run again, without a restart.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "audit_testing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/exec_session.h"
#include "support/stack.h"

namespace podgate {
namespace {

using ::testing::HasSubstr;

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
    resources: [pods, pods/exec]
    namespaces: ["*"]
)";

constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
defaults: {timeLimit: 30s}
rules:
  - id: team-echo
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    command:
      program: echo
      args:
        - {name: word, type: regex, pattern: "[a-z0-9-]+", optional: true, repeat: true}
)";

TEST(AuditExportBlockingTest, ExecRefusesCommandsWithTheReasonWhileTheSinkLagsThenResumes) {
  audit::testing::TempDir exports("podgate-export-blocking");
  const std::string sink_path = exports.path() + "/export.log";
  const std::string config = exports.path() + "/export.json";
  std::ofstream(config) << R"({"sinks":[{"name":"archive","blockingMaxLagRecords":"20",)"
                        << R"("maxWait":"20ms","initialBackoff":"10s","maxBackoff":"10s",)"
                        << R"("file":{"path":")" << sink_path << R"("}}]})";
  testing::StackOptions options;
  options.binaries = {PODGATE_KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN, PODGATE_EXEC_BIN};
  options.cluster_yaml = kCluster;
  options.policy_yaml = kPolicy;
  options.audit_flags = {"--export_config=" + config, "--export_poll_interval=50ms"};
  options.exec_flags = {"--audit_ack_timeout=2s"};
  auto stack = testing::Stack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();

  testing::ExecSession session((*stack)->exec_port());
  auto ready = session.Open((*stack)->Token("dave", {"devs"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  testing::CommandOutcome first = session.Run("echo first");
  ASSERT_TRUE(first.exit.has_value());
  EXPECT_EQ(first.stdout_text, "first\n");

  // A real failure even for root: a folder where the sink's file should be.
  std::filesystem::remove(sink_path);
  std::filesystem::create_directory(sink_path);
  const absl::Time broke = absl::Now();
  std::string refusal;
  int ran = 0;
  for (int i = 0; i < 200 && refusal.empty(); ++i) {
    testing::CommandOutcome o = session.Run(absl::StrCat("echo n", i));
    ASSERT_FALSE(o.stream_ended);
    if (o.exit.has_value()) {
      ++ran;  // still under the bound
    } else {
      ASSERT_TRUE(o.error.has_value()) << "neither ran nor refused";
      refusal = o.error->status().message();
    }
  }
  ASSERT_FALSE(refusal.empty()) << "exec never refused while the sink lagged";
  std::cout << "refused after " << ran << " commands: " << refusal << "\n";
  // The first failed delivery comes while the lag is still under the bound (a command records
  // 3 to 5 events), then waits out a 10 s backoff (8-12 s with its jitter) while commands go on.
  // The lag is measured every poll interval (50 ms here) during that wait too, so audit refuses
  // once it passes 20, long before the backoff ends: the refusal comes within exec's wait for
  // the ack it never gets (--audit_ack_timeout=2s) plus the few commands that ran meanwhile.
  // Measured only when the backoff ended, it came after 10 s or more.
  EXPECT_LT(absl::Now() - broke, absl::Seconds(7)) << ran << " commands ran before audit refused";
  EXPECT_THAT(refusal, HasSubstr("audit is unavailable, so the command was not run"));
  EXPECT_THAT(refusal, HasSubstr("export sink archive lags"));
  EXPECT_THAT(refusal, HasSubstr("(bound 20)"));
  // Still refused: nothing reaches the pod while audit cannot keep the record.
  testing::CommandOutcome again = session.Run("echo refused");
  EXPECT_FALSE(again.exit.has_value());
  EXPECT_TRUE(again.stdout_text.empty());

  // Fixed: the sink catches up, audit acknowledges again, commands run.
  std::filesystem::remove(sink_path);
  bool resumed = false;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (!resumed && absl::Now() < deadline) {
    testing::CommandOutcome o = session.Run("echo back");
    resumed = o.exit.has_value() && o.stdout_text == "back\n";
  }
  EXPECT_TRUE(resumed) << absl::StrJoin((*stack)->audit()->Lines(), "\n");
  // Every record up to now reaches the file, the refused commands' "not run" results included
  // (the export follows the store: the last records may still be on their way).
  int lines = 0;
  bool saw_not_run = false;
  for (const absl::Time until = absl::Now() + absl::Seconds(20);
       !saw_not_run && absl::Now() < until; absl::SleepFor(absl::Milliseconds(100))) {
    std::ifstream in(sink_path);
    lines = 0;
    for (std::string line; std::getline(in, line); ++lines) {
      saw_not_run =
          saw_not_run || line.find("not run: audit did not acknowledge") != std::string::npos;
    }
  }
  EXPECT_GT(lines, 0);
  EXPECT_TRUE(saw_not_run);
  session.Close();
}

}  // namespace
}  // namespace podgate
