#include "runtime/flags.h"

#include <map>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "runtime/version.h"

ABSL_FLAG(int, runtime_test_port, 7000, "A port, for the flags test.");
ABSL_FLAG(std::string, runtime_test_name, "default", "A name, for the flags test.");
ABSL_FLAG(bool, runtime_test_verbose, false, "A switch, for the flags test.");
ABSL_FLAG(absl::Duration, runtime_test_wait, absl::Seconds(3), "A duration, for the flags test.");

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
    absl::SetFlag(&FLAGS_runtime_test_verbose, false);
    absl::SetFlag(&FLAGS_runtime_test_wait, absl::Seconds(3));
  }

  // Parses `args` (argv[0] included) with ParseCommandLineArgs; positional arguments come back
  // as strings.
  absl::StatusOr<CommandLine> Parse(std::vector<std::string> args) {
    args_ = std::move(args);
    argv_.clear();
    for (auto& a : args_) {
      argv_.push_back(a.data());
    }
    return ParseCommandLineArgs(static_cast<int>(argv_.size()), argv_.data());
  }

  static std::vector<std::string> Strings(const std::vector<char*>& v) {
    return std::vector<std::string>(v.begin(), v.end());
  }

 private:
  std::vector<std::string> args_;
  std::vector<char*> argv_;
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

TEST_F(FlagsTest, ParsesEveryAbseilSpelling) {
  absl::StatusOr<CommandLine> line =
      Parse({"prog", "--runtime_test_port=8080", "-runtime_test_name", "x y",
             "--runtime_test_verbose", "--runtime_test_wait=250ms"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(line->action, CommandLine::Action::kRun);
  EXPECT_EQ(absl::GetFlag(FLAGS_runtime_test_port), 8080);
  EXPECT_EQ(absl::GetFlag(FLAGS_runtime_test_name), "x y");
  EXPECT_TRUE(absl::GetFlag(FLAGS_runtime_test_verbose));
  EXPECT_EQ(absl::GetFlag(FLAGS_runtime_test_wait), absl::Milliseconds(250));
  ASSERT_TRUE(Parse({"prog", "--noruntime_test_verbose"}).ok());
  EXPECT_FALSE(absl::GetFlag(FLAGS_runtime_test_verbose));
  ASSERT_TRUE(Parse({"prog", "--runtime_test_verbose=true", "--runtime_test_name="}).ok());
  EXPECT_TRUE(absl::GetFlag(FLAGS_runtime_test_verbose));
  EXPECT_EQ(absl::GetFlag(FLAGS_runtime_test_name), "");
}

TEST_F(FlagsTest, PositionalArgumentsKeepTheirOrderAndDoubleDashEndsFlags) {
  absl::StatusOr<CommandLine> line = Parse(
      {"prog", "query", "--runtime_test_port=1", "-", "--", "ls", "--runtime_test_port=2", "-h"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(Strings(line->positional),
            (std::vector<std::string>{"prog", "query", "-", "ls", "--runtime_test_port=2", "-h"}));
  EXPECT_EQ(absl::GetFlag(FLAGS_runtime_test_port), 1);
}

TEST_F(FlagsTest, HelpAndVersionAreActions) {
  for (const char* help : {"--help", "-h", "--helpfull", "-help", "--helpshort"}) {
    absl::StatusOr<CommandLine> line = Parse({"prog", "--runtime_test_port=1", help});
    ASSERT_TRUE(line.ok()) << help << ": " << line.status();
    EXPECT_EQ(line->action, CommandLine::Action::kHelp) << help;
  }
  absl::StatusOr<CommandLine> filtered = Parse({"prog", "--help=runtime_test_w"});
  ASSERT_TRUE(filtered.ok());
  EXPECT_EQ(filtered->help_filter, "runtime_test_w");
  absl::StatusOr<CommandLine> version = Parse({"prog", "--version"});
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(version->action, CommandLine::Action::kVersion);
}

TEST_F(FlagsTest, UnknownFlagIsNamed) {
  absl::StatusOr<CommandLine> line = Parse({"prog", "--runtime_test_nope=1"});
  ASSERT_FALSE(line.ok());
  EXPECT_EQ(line.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(line.status().message(), "unknown flag --runtime_test_nope");
  // "no" + a flag that is not a bool is no negation.
  EXPECT_EQ(Parse({"prog", "--noruntime_test_port"}).status().message(),
            "unknown flag --noruntime_test_port");
  EXPECT_EQ(Parse({"prog", "---runtime_test_port=1"}).status().message(),
            "'---runtime_test_port=1' is not a flag");
}

TEST_F(FlagsTest, BadValueNamesFlagValueAndType) {
  EXPECT_EQ(Parse({"prog", "--runtime_test_port=seventy"}).status().message(),
            "--runtime_test_port: 'seventy' is not a valid int");
  EXPECT_EQ(Parse({"prog", "--runtime_test_wait", "x"}).status().message(),
            "--runtime_test_wait: 'x' is not a valid duration");
  EXPECT_EQ(Parse({"prog", "--runtime_test_verbose=maybe"}).status().message(),
            "--runtime_test_verbose: 'maybe' is not a valid bool");
  EXPECT_EQ(Parse({"prog", "--noruntime_test_verbose=true"}).status().message(),
            "--noruntime_test_verbose takes no value (use --runtime_test_verbose=true|false)");
  EXPECT_EQ(absl::GetFlag(FLAGS_runtime_test_port), 7000);
}

TEST_F(FlagsTest, MissingValueIsAnError) {
  EXPECT_EQ(Parse({"prog", "--runtime_test_port"}).status().message(),
            "--runtime_test_port needs a value (--runtime_test_port=int)");
  // The next flag is not taken as the value.
  EXPECT_EQ(Parse({"prog", "--runtime_test_name", "--runtime_test_verbose"}).status().message(),
            "--runtime_test_name needs a value (--runtime_test_name=string)");
}

TEST_F(FlagsTest, HelpListsPodgateFlagsWithTypeDefaultAndEnvironment) {
  const std::string help = HelpText("prog: does things.\n");
  EXPECT_THAT(help, ::testing::StartsWith("prog: does things.\n"));
  EXPECT_THAT(help, HasSubstr("  --runtime_test_port (int, default 7000, env "
                              "PODGATE_RUNTIME_TEST_PORT)\n      A port, for the flags test.\n"));
  EXPECT_THAT(help, HasSubstr("  --runtime_test_name (string, default \"default\", env "
                              "PODGATE_RUNTIME_TEST_NAME)\n"));
  EXPECT_THAT(help, HasSubstr("  --runtime_test_wait (duration, default 3s, env "));
  EXPECT_THAT(help, HasSubstr("--help, -h"));
  // Abseil's own flags are not listed.
  EXPECT_THAT(help, ::testing::Not(HasSubstr("--flagfile")));
  EXPECT_THAT(help, ::testing::Not(HasSubstr("--helpfull (")));
  // Sorted by name.
  EXPECT_LT(help.find("--runtime_test_name"), help.find("--runtime_test_port"));
  EXPECT_LT(help.find("--runtime_test_port"), help.find("--runtime_test_verbose"));

  const std::string filtered = HelpText("prog", "runtime_test_w");
  EXPECT_THAT(filtered, HasSubstr("--runtime_test_wait"));
  EXPECT_THAT(filtered, ::testing::Not(HasSubstr("--runtime_test_port")));
}

TEST_F(FlagsTest, VersionLineHasVersionAndCommit) {
  EXPECT_EQ(Version(), PODGATE_TEST_VERSION);
  EXPECT_FALSE(Commit().empty());
  EXPECT_EQ(VersionLine("prog"),
            absl::StrCat("prog ", PODGATE_TEST_VERSION, " (", std::string(Commit()), ")"));
}

}  // namespace
}  // namespace podgate::runtime
