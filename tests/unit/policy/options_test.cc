// podgate-policy's flags → PolicyOptions: the values given, the defaults, and one clear error
// a bad flag.
#include "policy/options.h"

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "gtest/gtest.h"

ABSL_DECLARE_FLAG(std::string, policy_file);
ABSL_DECLARE_FLAG(absl::Duration, policy_poll_interval);
ABSL_DECLARE_FLAG(std::string, check);
ABSL_DECLARE_FLAG(std::string, grpc_address);
ABSL_DECLARE_FLAG(std::string, metrics_address);
ABSL_DECLARE_FLAG(absl::Duration, drain_timeout);
ABSL_DECLARE_FLAG(std::string, audit_address);
ABSL_DECLARE_FLAG(std::string, log_level);

namespace podgate::policy {
namespace {

class PolicyOptionsTest : public ::testing::Test {
 protected:
  absl::FlagSaver saver_;  // every test starts from the defaults
};

TEST_F(PolicyOptionsTest, DefaultsServeAnEmptyPolicyOnThePolicyPorts) {
  absl::StatusOr<PolicyOptions> o = PolicyOptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->check_file, "");
  EXPECT_EQ(o->server.service_name, "policy");
  EXPECT_EQ(o->server.grpc_address, "[::]:7101");
  EXPECT_EQ(o->server.metrics_address, "[::]:9101");
  EXPECT_EQ(o->server.drain_timeout, absl::Seconds(10));
  EXPECT_EQ(o->policy_file, "");
  EXPECT_EQ(o->poll_interval, absl::Seconds(1));
  EXPECT_EQ(o->audit.address, "");  // audit is optional for policy
}

TEST_F(PolicyOptionsTest, GoodFlagsBecomeTheOptions) {
  absl::SetFlag(&FLAGS_policy_file, "/etc/podgate/policy.yaml");
  absl::SetFlag(&FLAGS_policy_poll_interval, absl::Milliseconds(10));
  absl::SetFlag(&FLAGS_grpc_address, "127.0.0.1:0");
  absl::SetFlag(&FLAGS_metrics_address, "");
  absl::SetFlag(&FLAGS_drain_timeout, absl::Seconds(2));
  absl::SetFlag(&FLAGS_audit_address, "dns:///podgate-audit:7103");
  absl::StatusOr<PolicyOptions> o = PolicyOptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->policy_file, "/etc/podgate/policy.yaml");
  EXPECT_EQ(o->poll_interval, absl::Milliseconds(10));
  EXPECT_EQ(o->server.grpc_address, "127.0.0.1:0");
  EXPECT_EQ(o->server.metrics_address, "");
  EXPECT_EQ(o->server.drain_timeout, absl::Seconds(2));
  EXPECT_EQ(o->audit.address, "dns:///podgate-audit:7103");
}

TEST_F(PolicyOptionsTest, EachBadFlagIsOneLineNamingIt) {
  {
    absl::FlagSaver one;
    absl::SetFlag(&FLAGS_drain_timeout, absl::Minutes(11));
    absl::StatusOr<PolicyOptions> o = PolicyOptionsFromFlags();
    ASSERT_FALSE(o.ok());
    EXPECT_EQ(o.status().message(), "--drain_timeout: 11m is out of range (0s to 10m)");
  }
  {
    absl::FlagSaver one;
    absl::SetFlag(&FLAGS_policy_file, "/p.yaml");
    absl::SetFlag(&FLAGS_policy_poll_interval, absl::Milliseconds(9));
    absl::StatusOr<PolicyOptions> o = PolicyOptionsFromFlags();
    ASSERT_FALSE(o.ok());
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(o.status().message(),
              "--policy_poll_interval: the poll interval must be at least 10ms");
  }
}

// Without a file nothing is polled, so the interval is not checked (as before).
TEST_F(PolicyOptionsTest, ThePollIntervalMattersOnlyForAFile) {
  absl::SetFlag(&FLAGS_policy_poll_interval, absl::Milliseconds(1));
  EXPECT_TRUE(PolicyOptionsFromFlags().ok());
}

// --check validates a document and exits: the serving flags are neither read nor checked.
TEST_F(PolicyOptionsTest, CheckReadsNothingElse) {
  absl::SetFlag(&FLAGS_check, "/tmp/p.yaml");
  absl::SetFlag(&FLAGS_drain_timeout, absl::Minutes(11));
  absl::StatusOr<PolicyOptions> o = PolicyOptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->check_file, "/tmp/p.yaml");
}

// The shared --log_level reaches the service, which builds allowed decisions' (debug) log lines
// only at debug level; a bad level is one line naming the flag.
TEST_F(PolicyOptionsTest, TheLogLevelIsRead) {
  {
    absl::StatusOr<PolicyOptions> o = PolicyOptionsFromFlags();
    ASSERT_TRUE(o.ok()) << o.status();
    EXPECT_EQ(o->log_level, log::Level::kInfo);
  }
  {
    absl::FlagSaver one;
    absl::SetFlag(&FLAGS_log_level, "debug");
    absl::StatusOr<PolicyOptions> o = PolicyOptionsFromFlags();
    ASSERT_TRUE(o.ok()) << o.status();
    EXPECT_EQ(o->log_level, log::Level::kDebug);
  }
  {
    absl::FlagSaver one;
    absl::SetFlag(&FLAGS_log_level, "loud");
    absl::StatusOr<PolicyOptions> o = PolicyOptionsFromFlags();
    ASSERT_FALSE(o.ok());
    EXPECT_EQ(o.status().message(),
              "--log_level: unknown log level 'loud' (want debug, info, warn or error)");
  }
}

}  // namespace
}  // namespace podgate::policy
