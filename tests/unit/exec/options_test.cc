// podgate-exec's flags read into ExecServiceOptions: the defaults, values carried through, and
// each out-of-range flag refused with an error that names it.
#include "exec/options.h"

#include <ostream>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_DECLARE_FLAG(std::string, kubeconfig);
ABSL_DECLARE_FLAG(bool, kube_allow_insecure);
ABSL_DECLARE_FLAG(std::vector<std::string>, kube_contexts);
ABSL_DECLARE_FLAG(std::string, kubeconfig_dir);
ABSL_DECLARE_FLAG(std::string, kube_in_cluster_name);
ABSL_DECLARE_FLAG(std::string, kube_default_cluster);
ABSL_DECLARE_FLAG(absl::Duration, kube_health_interval);
ABSL_DECLARE_FLAG(int, kube_spare_connections);
ABSL_DECLARE_FLAG(absl::Duration, kube_spare_idle);
ABSL_DECLARE_FLAG(bool, audit_strict);
ABSL_DECLARE_FLAG(absl::Duration, audit_ack_timeout);
ABSL_DECLARE_FLAG(absl::Duration, policy_timeout);
ABSL_DECLARE_FLAG(absl::Duration, idle_timeout);
ABSL_DECLARE_FLAG(absl::Duration, max_session);
ABSL_DECLARE_FLAG(int, max_sessions_per_user);
ABSL_DECLARE_FLAG(int, max_sessions);
ABSL_DECLARE_FLAG(int, max_commands_per_session);
ABSL_DECLARE_FLAG(absl::Duration, default_time_limit);
ABSL_DECLARE_FLAG(int64_t, default_output_limit_bytes);
ABSL_DECLARE_FLAG(int64_t, output_overrun_bytes);
ABSL_DECLARE_FLAG(int, audit_excerpt_bytes);
ABSL_DECLARE_FLAG(std::string, shell_command);
ABSL_DECLARE_FLAG(absl::Duration, interrupt_grace);
ABSL_DECLARE_FLAG(std::string, journal_dir);
ABSL_DECLARE_FLAG(int, journal_max_entries);
ABSL_DECLARE_FLAG(absl::Duration, journal_recovery_timeout);
ABSL_DECLARE_FLAG(std::string, service_account_dir);
ABSL_DECLARE_FLAG(std::string, kube_impersonation);
ABSL_DECLARE_FLAG(std::string, kube_impersonate_user_prefix);
ABSL_DECLARE_FLAG(std::string, kube_impersonate_group_prefix);
ABSL_DECLARE_FLAG(bool, kube_impersonate_session_extra);
ABSL_DECLARE_FLAG(bool, kube_impersonate_uid);

namespace podgate::exec {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ExecOptionsTest, TheDefaultsAreTheDocumentedOnes) {
  absl::FlagSaver saver;
  absl::StatusOr<ExecServiceOptions> o = ExecServiceOptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  const ExecOptions defaults;
  EXPECT_EQ(o->sessions.policy_timeout, absl::Seconds(2));
  EXPECT_EQ(o->sessions.idle_timeout, absl::Minutes(15));
  EXPECT_EQ(o->sessions.max_session, absl::Hours(8));
  EXPECT_EQ(o->sessions.max_sessions_per_user, 10);
  EXPECT_EQ(o->sessions.max_sessions, 2000);
  EXPECT_EQ(o->sessions.max_commands_per_session, 10000);
  EXPECT_EQ(o->sessions.default_time_limit, absl::Minutes(5));
  EXPECT_EQ(o->sessions.default_output_limit_bytes, 64 << 20);
  EXPECT_EQ(o->sessions.output_overrun_bytes, 64 << 20);
  EXPECT_EQ(o->sessions.excerpt_bytes, 4096u);
  EXPECT_TRUE(o->sessions.strict_audit);
  EXPECT_THAT(o->sessions.shell_argv, ElementsAre("/bin/sh"));
  EXPECT_EQ(o->sessions.interrupt_grace, absl::Seconds(3));
  EXPECT_EQ(o->sessions.observer_buffer_bytes, size_t{1} << 20);
  // What no flag sets keeps ExecOptions' own defaults.
  EXPECT_EQ(o->sessions.probe_timeout, defaults.probe_timeout);
  EXPECT_EQ(o->sessions.root_guard_ttl, defaults.root_guard_ttl);
  EXPECT_EQ(o->sessions.recording_chunk_bytes, defaults.recording_chunk_bytes);
  EXPECT_EQ(o->clusters.kubeconfig, "");
  EXPECT_TRUE(o->clusters.contexts.empty());
  EXPECT_EQ(o->clusters.kubeconfig_dir, "");
  EXPECT_EQ(o->clusters.in_cluster_name, "");
  EXPECT_EQ(o->clusters.default_cluster, "");
  EXPECT_EQ(o->cluster_health_interval, absl::Seconds(15));
  EXPECT_EQ(o->spare_connections, 2u);
  EXPECT_EQ(o->spare_idle, absl::Seconds(20));
  EXPECT_FALSE(o->clusters.allow_insecure);
  EXPECT_EQ(o->clusters.service_account_dir, "/var/run/secrets/kubernetes.io/serviceaccount");
  EXPECT_EQ(o->audit_ack_timeout, absl::Seconds(10));
  EXPECT_EQ(o->journal_dir, "");
  EXPECT_EQ(o->journal_max_entries, 4096);
  EXPECT_EQ(o->journal_recovery_timeout, absl::Seconds(30));
  EXPECT_EQ(o->sessions.impersonation.mode, ImpersonationMode::kOff);
  EXPECT_EQ(o->sessions.impersonation.user_prefix, "");
  EXPECT_EQ(o->sessions.impersonation.group_prefix, "");
  EXPECT_TRUE(o->sessions.impersonation.session_extra);
  EXPECT_FALSE(o->sessions.impersonation.uid);
}

TEST(ExecOptionsTest, EveryFlagReachesItsOption) {
  absl::FlagSaver saver;
  absl::SetFlag(&FLAGS_kubeconfig, "/etc/kube/config");
  absl::SetFlag(&FLAGS_kube_allow_insecure, true);
  absl::SetFlag(&FLAGS_kube_contexts, std::vector<std::string>{"eu-prod=arn:eks/eu", "staging"});
  absl::SetFlag(&FLAGS_kubeconfig_dir, "/etc/podgate/clusters");
  absl::SetFlag(&FLAGS_kube_in_cluster_name, "home");
  absl::SetFlag(&FLAGS_kube_default_cluster, "staging");
  absl::SetFlag(&FLAGS_kube_health_interval, absl::Seconds(2));
  absl::SetFlag(&FLAGS_kube_spare_connections, 0);
  absl::SetFlag(&FLAGS_kube_spare_idle, absl::Minutes(5));
  absl::SetFlag(&FLAGS_audit_strict, false);
  absl::SetFlag(&FLAGS_audit_ack_timeout, absl::Seconds(1));
  absl::SetFlag(&FLAGS_policy_timeout, absl::Milliseconds(500));
  absl::SetFlag(&FLAGS_idle_timeout, absl::Minutes(1));
  absl::SetFlag(&FLAGS_max_session, absl::Hours(1));
  absl::SetFlag(&FLAGS_max_sessions_per_user, 1);
  absl::SetFlag(&FLAGS_max_sessions, 3);
  absl::SetFlag(&FLAGS_max_commands_per_session, 4);
  absl::SetFlag(&FLAGS_default_time_limit, absl::Seconds(7));
  absl::SetFlag(&FLAGS_default_output_limit_bytes, int64_t{1});
  absl::SetFlag(&FLAGS_output_overrun_bytes, int64_t{0});
  absl::SetFlag(&FLAGS_audit_excerpt_bytes, 0);
  absl::SetFlag(&FLAGS_shell_command, " /bin/bash  -l ");
  absl::SetFlag(&FLAGS_interrupt_grace, absl::Milliseconds(250));
  absl::SetFlag(&FLAGS_journal_dir, "/var/lib/journal");
  absl::SetFlag(&FLAGS_journal_max_entries, 100000);
  absl::SetFlag(&FLAGS_journal_recovery_timeout, absl::Seconds(5));
  absl::SetFlag(&FLAGS_service_account_dir, "/sa");
  absl::SetFlag(&FLAGS_kube_impersonation, "user+groups");
  absl::SetFlag(&FLAGS_kube_impersonate_user_prefix, "oidc:");
  absl::SetFlag(&FLAGS_kube_impersonate_group_prefix, "oidc-group:");
  absl::SetFlag(&FLAGS_kube_impersonate_session_extra, false);
  absl::SetFlag(&FLAGS_kube_impersonate_uid, true);
  absl::StatusOr<ExecServiceOptions> o = ExecServiceOptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->clusters.kubeconfig, "/etc/kube/config");
  EXPECT_TRUE(o->clusters.allow_insecure);
  EXPECT_THAT(o->clusters.contexts, ElementsAre("eu-prod=arn:eks/eu", "staging"));
  EXPECT_EQ(o->clusters.kubeconfig_dir, "/etc/podgate/clusters");
  EXPECT_EQ(o->clusters.in_cluster_name, "home");
  EXPECT_EQ(o->clusters.default_cluster, "staging");
  EXPECT_EQ(o->cluster_health_interval, absl::Seconds(2));
  EXPECT_EQ(o->spare_connections, 0u);
  EXPECT_EQ(o->spare_idle, absl::Minutes(5));
  EXPECT_FALSE(o->sessions.strict_audit);
  EXPECT_EQ(o->audit_ack_timeout, absl::Seconds(1));
  EXPECT_EQ(o->sessions.policy_timeout, absl::Milliseconds(500));
  EXPECT_EQ(o->sessions.idle_timeout, absl::Minutes(1));
  EXPECT_EQ(o->sessions.max_session, absl::Hours(1));
  EXPECT_EQ(o->sessions.max_sessions_per_user, 1);
  EXPECT_EQ(o->sessions.max_sessions, 3);
  EXPECT_EQ(o->sessions.max_commands_per_session, 4);
  EXPECT_EQ(o->sessions.default_time_limit, absl::Seconds(7));
  EXPECT_EQ(o->sessions.default_output_limit_bytes, 1);
  EXPECT_EQ(o->sessions.output_overrun_bytes, 0);
  EXPECT_EQ(o->sessions.excerpt_bytes, 0u);
  // Split on spaces, empty words dropped.
  EXPECT_THAT(o->sessions.shell_argv, ElementsAre("/bin/bash", "-l"));
  EXPECT_EQ(o->sessions.interrupt_grace, absl::Milliseconds(250));
  EXPECT_EQ(o->journal_dir, "/var/lib/journal");
  EXPECT_EQ(o->journal_max_entries, 100000);
  EXPECT_EQ(o->journal_recovery_timeout, absl::Seconds(5));
  EXPECT_EQ(o->clusters.service_account_dir, "/sa");
  EXPECT_EQ(o->sessions.impersonation.mode, ImpersonationMode::kUserAndGroups);
  EXPECT_EQ(o->sessions.impersonation.user_prefix, "oidc:");
  EXPECT_EQ(o->sessions.impersonation.group_prefix, "oidc-group:");
  EXPECT_FALSE(o->sessions.impersonation.session_extra);
  EXPECT_TRUE(o->sessions.impersonation.uid);
}

// One flag set out of range: the error names it.
struct BadFlag {
  const char* name;
  std::string value;
  const char* error;
};

void PrintTo(const BadFlag& flag, std::ostream* os) {
  *os << "--" << flag.name << "=" << flag.value;
}

class ExecOptionsBadFlagTest : public ::testing::TestWithParam<BadFlag> {};

TEST_P(ExecOptionsBadFlagTest, IsRefusedByName) {
  absl::FlagSaver saver;
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(GetParam().name);
  ASSERT_NE(flag, nullptr) << GetParam().name;
  std::string error;
  ASSERT_TRUE(flag->ParseFrom(GetParam().value, &error)) << error;
  absl::StatusOr<ExecServiceOptions> o = ExecServiceOptionsFromFlags();
  ASSERT_FALSE(o.ok()) << "--" << GetParam().name << "=" << GetParam().value << " was accepted";
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(o.status().message()), HasSubstr(GetParam().error));
}

INSTANTIATE_TEST_SUITE_P(
    EachFlag, ExecOptionsBadFlagTest,
    ::testing::Values(
        BadFlag{"policy_timeout", "0s", "--policy_timeout must be positive"},
        BadFlag{"policy_timeout", "-1s", "--policy_timeout must be positive"},
        BadFlag{"idle_timeout", "0s", "--idle_timeout must be positive"},
        BadFlag{"max_session", "0s", "--max_session must be positive"},
        BadFlag{"default_time_limit", "-5m", "--default_time_limit must be positive"},
        BadFlag{"interrupt_grace", "0s", "--interrupt_grace must be positive"},
        BadFlag{"audit_ack_timeout", "0s", "--audit_ack_timeout must be positive"},
        BadFlag{"max_sessions_per_user", "0",
                "--max_sessions and --max_sessions_per_user must be >= 1"},
        BadFlag{"max_sessions", "-1", "--max_sessions and --max_sessions_per_user must be >= 1"},
        BadFlag{"max_commands_per_session", "0", "--max_commands_per_session must be 1 to 1000000"},
        BadFlag{"max_commands_per_session", "1000001",
                "--max_commands_per_session must be 1 to 1000000"},
        BadFlag{"shell_command", "   ", "--shell_command must name a program"},
        BadFlag{"shell_command", "", "--shell_command must name a program"},
        BadFlag{"default_output_limit_bytes", "0", "--default_output_limit_bytes must be >= 1"},
        BadFlag{"output_overrun_bytes", "-1", "--output_overrun_bytes must be 0 to"},
        BadFlag{"output_overrun_bytes", "1099511627777", "--output_overrun_bytes must be 0 to"},
        BadFlag{"observer_buffer_bytes", "65535", "--observer_buffer_bytes must be 65536 to"},
        BadFlag{"observer_buffer_bytes", "67108865", "--observer_buffer_bytes must be 65536 to"},
        BadFlag{"journal_max_entries", "0", "--journal_max_entries must be 1 to 100000"},
        BadFlag{"journal_max_entries", "100001", "--journal_max_entries must be 1 to 100000"},
        BadFlag{"journal_recovery_timeout", "0s", "--journal_recovery_timeout must be positive"},
        BadFlag{"kube_health_interval", "999ms", "--kube_health_interval must be 1s to 10m"},
        BadFlag{"kube_health_interval", "11m", "--kube_health_interval must be 1s to 10m"},
        BadFlag{"kube_spare_connections", "-1", "--kube_spare_connections must be 0 to 16"},
        BadFlag{"kube_spare_connections", "17", "--kube_spare_connections must be 0 to 16"},
        BadFlag{"kube_spare_idle", "999ms", "--kube_spare_idle must be 1s to 5m"},
        BadFlag{"kube_spare_idle", "301s", "--kube_spare_idle must be 1s to 5m"},
        BadFlag{"audit_excerpt_bytes", "-1", "--audit_excerpt_bytes must be 0 to 1048576"},
        BadFlag{"audit_excerpt_bytes", "1048577", "--audit_excerpt_bytes must be 0 to 1048576"},
        BadFlag{"kube_impersonation", "on",
                "--kube_impersonation: impersonation mode \"on\" is not one of off, user, "
                "user+groups"},
        BadFlag{"kube_impersonation", "", "--kube_impersonation: impersonation mode"},
        BadFlag{"kube_impersonate_user_prefix",
                "system:", "--kube_impersonate_user_prefix must not start with system:"},
        BadFlag{"kube_impersonate_group_prefix", "system:podgate-",
                "--kube_impersonate_group_prefix must not start with system:"},
        BadFlag{"kube_impersonate_group_prefix", "a\nb",
                "--kube_impersonate_group_prefix must not start with system: or hold a control"}),
    [](const ::testing::TestParamInfo<BadFlag>& info) {
      std::string name = std::string(info.param.name) + "_" + info.param.value;
      for (char& c : name) {
        if (!isalnum(static_cast<unsigned char>(c))) {
          c = '_';
        }
      }
      return name;
    });

// The edges of each range are accepted.
TEST(ExecOptionsTest, TheEdgesOfEachRangeAreAccepted) {
  absl::FlagSaver saver;
  absl::SetFlag(&FLAGS_journal_max_entries, 1);
  absl::SetFlag(&FLAGS_audit_excerpt_bytes, 1 << 20);
  absl::SetFlag(&FLAGS_max_sessions, 1);
  absl::SetFlag(&FLAGS_max_sessions_per_user, 1);
  absl::SetFlag(&FLAGS_max_commands_per_session, 1);
  absl::SetFlag(&FLAGS_policy_timeout, absl::Nanoseconds(1));
  absl::StatusOr<ExecServiceOptions> o = ExecServiceOptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->sessions.excerpt_bytes, size_t{1} << 20);
  absl::SetFlag(&FLAGS_max_commands_per_session, 1000000);
  EXPECT_TRUE(ExecServiceOptionsFromFlags().ok());
}

}  // namespace
}  // namespace podgate::exec
