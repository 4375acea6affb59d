#include "runtime/flags.h"

#include <map>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(int, runtime_test_port, 7000, "A port, for the flags test.");
ABSL_FLAG(std::string, runtime_test_name, "default", "A name, for the flags test.");

namespace podgate::runtime {
namespace {

using ::testing::HasSubstr;

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) {
      return std::nullopt;
    }
    return it->second;
  };
}

class FlagsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::SetFlag(&FLAGS_runtime_test_port, 7000);
    absl::SetFlag(&FLAGS_runtime_test_name, "default");
  }
};

TEST_F(FlagsTest, EnvVarNameIsPrefixedUpperCase) {
  EXPECT_EQ(EnvVarForFlag("grpc_address"), "PODGATE_GRPC_ADDRESS");
  EXPECT_EQ(EnvVarForFlag("tls-cert"), "PODGATE_TLS_CERT");
}

TEST_F(FlagsTest, DefaultStaysWithoutEnv) {
  ASSERT_TRUE(ApplyEnvOverrides(FakeEnv({})).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_runtime_test_port), 7000);
}

TEST_F(FlagsTest, EnvOverridesDefault) {
  ASSERT_TRUE(ApplyEnvOverrides(FakeEnv({{"PODGATE_RUNTIME_TEST_PORT", "7443"},
                                         {"PODGATE_RUNTIME_TEST_NAME", "from-env"}}))
                  .ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_runtime_test_port), 7443);
  EXPECT_EQ(absl::GetFlag(FLAGS_runtime_test_name), "from-env");
}

TEST_F(FlagsTest, CommandLineOverridesEnv) {
  ASSERT_TRUE(ApplyEnvOverrides(FakeEnv({{"PODGATE_RUNTIME_TEST_PORT", "7443"},
                                         {"PODGATE_RUNTIME_TEST_NAME", "from-env"}}))
                  .ok());
  std::vector<std::string> args = {"prog", "--runtime_test_port=8443"};
  std::vector<char*> argv;
  for (auto& a : args) {
    argv.push_back(a.data());
  }
  absl::ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(absl::GetFlag(FLAGS_runtime_test_port), 8443);
  // Not on the command line: the environment's value stays.
  EXPECT_EQ(absl::GetFlag(FLAGS_runtime_test_name), "from-env");
}

TEST_F(FlagsTest, BadEnvValueNamesVariableAndFlagAndChangesNothing) {
  absl::Status s = ApplyEnvOverrides(FakeEnv({{"PODGATE_RUNTIME_TEST_NAME", "changed"},
                                              {"PODGATE_RUNTIME_TEST_PORT", "seventy"}}));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("PODGATE_RUNTIME_TEST_PORT"));
  EXPECT_THAT(s.message(), HasSubstr("--runtime_test_port"));
  EXPECT_EQ(absl::GetFlag(FLAGS_runtime_test_port), 7000);
  EXPECT_EQ(absl::GetFlag(FLAGS_runtime_test_name), "default");
}

TEST_F(FlagsTest, AbseilOwnFlagsAreNotReadFromEnv) {
  // PODGATE_FLAGFILE must not turn into --flagfile.
  ASSERT_TRUE(ApplyEnvOverrides(FakeEnv({{"PODGATE_FLAGFILE", "/nonexistent"}})).ok());
}

}  // namespace
}  // namespace podgate::runtime
