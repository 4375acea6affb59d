// podgate-run's kubectl-shaped command line (tools/run/run_args.h): every spelling of every
// flag, `--` and the words after it, the pod positional, the verbs, and each refusal.
#include "run/run_args.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podgate::run {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

// podgate-run's own flags, as RegisteredFlagKind finds them in the binary.
FlagKind Kind(absl::string_view name) {
  for (absl::string_view v : {"namespace", "container", "pod", "token", "token_file", "cluster",
                              "timeout", "exec_address", "token_cache", "oidc_issuer"}) {
    if (name == v) {
      return FlagKind::kValue;
    }
  }
  return name == "stdin" ? FlagKind::kBool : FlagKind::kUnknown;
}

absl::StatusOr<RunArgs> Parse(std::vector<std::string> words) {
  words.insert(words.begin(), "podgate-run");
  return NormaliseArgs(words, Kind);
}

// The flags handed to ParseFlags, without argv[0].
std::vector<std::string> Flags(const std::vector<std::string>& words) {
  absl::StatusOr<RunArgs> args = Parse(words);
  EXPECT_TRUE(args.ok()) << args.status();
  if (!args.ok()) {
    return {};
  }
  EXPECT_EQ(args->flags.front(), "podgate-run");
  return {args->flags.begin() + 1, args->flags.end()};
}

std::string Error(const std::vector<std::string>& words) {
  absl::StatusOr<RunArgs> args = Parse(words);
  EXPECT_FALSE(args.ok()) << "accepted";
  EXPECT_TRUE(args.ok() || absl::IsInvalidArgument(args.status())) << args.status();
  return args.ok() ? "" : std::string(args.status().message());
}

TEST(RunArgsTest, EveryKubectlSpellingOfANamespace) {
  for (const std::vector<std::string>& words :
       std::vector<std::vector<std::string>>{{"-n", "shop"},
                                             {"-nshop"},
                                             {"-n=shop"},
                                             {"--namespace", "shop"},
                                             {"--namespace=shop"},
                                             {"-namespace=shop"},  // Abseil's single dash
                                             {"-namespace", "shop"}}) {
    EXPECT_THAT(Flags(words), ElementsAre("--namespace=shop")) << words[0];
    EXPECT_THAT(Parse(words)->given, ElementsAre("namespace")) << words[0];
  }
}

TEST(RunArgsTest, EverySpellingOfAContainer) {
  for (const std::vector<std::string>& words : std::vector<std::vector<std::string>>{
           {"-c", "app"}, {"-capp"}, {"-c=app"}, {"--container", "app"}, {"--container=app"}}) {
    EXPECT_THAT(Flags(words), ElementsAre("--container=app")) << words[0];
  }
}

TEST(RunArgsTest, ShortFlagsGroupAsInPflag) {
  EXPECT_THAT(Flags({"-i"}), ElementsAre("--stdin"));
  EXPECT_THAT(Flags({"-in", "shop"}), ElementsAre("--stdin", "--namespace=shop"));
  EXPECT_THAT(Flags({"-inshop"}), ElementsAre("--stdin", "--namespace=shop"));
  EXPECT_THAT(Flags({"-ic", "app", "-n", "shop"}),
              ElementsAre("--stdin", "--container=app", "--namespace=shop"));
  EXPECT_THAT(Flags({"-i=false"}), ElementsAre("--stdin=false"));
  EXPECT_THAT(Parse({"-in", "shop"})->given, UnorderedElementsAre("stdin", "namespace"));
}

TEST(RunArgsTest, BooleansTakeNoValueFromTheNextWord) {
  absl::StatusOr<RunArgs> args = Parse({"--stdin", "api-7d9", "--", "wc", "-c"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_THAT(args->flags, ElementsAre("podgate-run", "--stdin"));
  EXPECT_EQ(args->pod, "api-7d9");
  EXPECT_THAT(Flags({"--stdin=false"}), ElementsAre("--stdin=false"));
  EXPECT_THAT(Flags({"--nostdin"}), ElementsAre("--nostdin"));
  EXPECT_THAT(Parse({"--nostdin"})->given, ElementsAre("stdin"));
  EXPECT_THAT(Error({"--nostdin=true"}), HasSubstr("--nostdin takes no value"));
}

TEST(RunArgsTest, ThePodIsThePositionalAndTheCommandFollowsTheSeparator) {
  absl::StatusOr<RunArgs> args =
      Parse({"-n", "shop", "-c", "app", "api-7d9", "--", "jmap", "-histo", "1"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->pod, "api-7d9");
  EXPECT_TRUE(args->has_separator);
  EXPECT_THAT(args->command, ElementsAre("jmap", "-histo", "1"));
  EXPECT_THAT(args->flags, ElementsAre("podgate-run", "--namespace=shop", "--container=app"));
  EXPECT_EQ(args->verb, "");
  // Flags may come after the pod too, as kubectl takes them.
  args = Parse({"api-7d9", "-n", "shop", "--", "true"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->pod, "api-7d9");
  EXPECT_THAT(args->flags, ElementsAre("podgate-run", "--namespace=shop"));
}

TEST(RunArgsTest, WordsAfterTheSeparatorAreTheCommandsEvenWhenTheyLookLikeFlags) {
  absl::StatusOr<RunArgs> args = Parse({"-n", "shop", "p", "--", "grep", "-n", "-c",
                                        "--namespace=x", "--token=t", "--", "-i", "-t", "--bogus"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_THAT(args->command, ElementsAre("grep", "-n", "-c", "--namespace=x", "--token=t", "--",
                                         "-i", "-t", "--bogus"));
  EXPECT_THAT(args->flags, ElementsAre("podgate-run", "--namespace=shop"));
  EXPECT_THAT(args->secrets, IsEmpty());
  EXPECT_THAT(args->given, ElementsAre("namespace"));
}

TEST(RunArgsTest, TheOldFlagFormStillWorks) {
  absl::StatusOr<RunArgs> args =
      Parse({"--namespace=app-shop", "--pod=orders-7d4b9c", "--", "jcmd", "1", "VM.flags"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->pod, "");
  EXPECT_THAT(args->flags,
              ElementsAre("podgate-run", "--namespace=app-shop", "--pod=orders-7d4b9c"));
  EXPECT_THAT(args->command, ElementsAre("jcmd", "1", "VM.flags"));
  EXPECT_THAT(args->given, UnorderedElementsAre("namespace", "pod"));
}

TEST(RunArgsTest, ASeparatorWithNothingAfterItIsAnEmptyCommand) {
  absl::StatusOr<RunArgs> args = Parse({"p", "--"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_TRUE(args->has_separator);
  EXPECT_THAT(args->command, IsEmpty());
  args = Parse({});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_FALSE(args->has_separator);
  EXPECT_EQ(args->pod, "");
}

TEST(RunArgsTest, KubectlsTypeSlashNameIsAcceptedForPodsOnly) {
  EXPECT_EQ(Parse({"pod/api-7d9", "--", "true"})->pod, "api-7d9");
  EXPECT_EQ(Parse({"pods/api-7d9", "--", "true"})->pod, "api-7d9");
  EXPECT_THAT(Error({"deploy/api", "--", "true"}), HasSubstr("reaches pods only"));
}

TEST(RunArgsTest, MissingValuesAreRefusedWithTheFlagsName) {
  EXPECT_EQ(Error({"-n"}), "-n needs a value: -n NAMESPACE");
  EXPECT_EQ(Error({"p", "-c"}), "-c needs a value: -c CONTAINER");
  EXPECT_EQ(Error({"-n", "--", "ls"}), "-n needs a value: -n NAMESPACE");
  EXPECT_EQ(Error({"-in"}), "-n needs a value: -n NAMESPACE");
  EXPECT_THAT(Error({"--namespace"}), HasSubstr("--namespace needs a value"));
  EXPECT_THAT(Error({"--token_file", "--", "ls"}), HasSubstr("--token_file needs a value"));
  // An explicit empty value is a value (the caller says the namespace is required).
  EXPECT_THAT(Flags({"-n="}), ElementsAre("--namespace="));
  EXPECT_THAT(Flags({"--namespace="}), ElementsAre("--namespace="));
}

TEST(RunArgsTest, UnknownFlagsAreRefused) {
  EXPECT_THAT(Error({"-x"}), HasSubstr("unknown short flag \"-x\" in \"-x\""));
  EXPECT_THAT(Error({"-ix"}), HasSubstr("unknown short flag \"-x\" in \"-ix\""));
  EXPECT_THAT(Error({"--bogus"}), HasSubstr("unknown flag --bogus (see --help)"));
  // The value of an unknown flag is never repeated (it may be a secret mistyped).
  const std::string error = Error({"--tokn=s3cret-value"});
  EXPECT_THAT(error, HasSubstr("unknown flag --tokn "));
  EXPECT_THAT(error, Not(HasSubstr("s3cret")));
  EXPECT_THAT(Error({"-\x1b[31m"}), Not(HasSubstr("\x1b")));
}

TEST(RunArgsTest, TerminalModeIsRefusedWithWhatToDoInstead) {
  EXPECT_THAT(Error({"-t"}), HasSubstr("no terminal mode"));
  EXPECT_THAT(Error({"-it", "p", "--", "sh"}), HasSubstr("-t: podgate-run has no terminal mode"));
  EXPECT_THAT(Error({"--tty"}), HasSubstr("podgate-run has no terminal mode"));
}

TEST(RunArgsTest, HelpIsLeftToParseFlags) {
  EXPECT_THAT(Flags({"-h"}), ElementsAre("--help"));
  EXPECT_THAT(Flags({"--help"}), ElementsAre("--help"));
  EXPECT_THAT(Flags({"-help"}), ElementsAre("--help"));
  EXPECT_THAT(Flags({"--helpfull"}), ElementsAre("--helpfull"));
  EXPECT_THAT(Flags({"--help=run/main"}), ElementsAre("--help=run/main"));
  EXPECT_THAT(Flags({"--version"}), ElementsAre("--version"));
  EXPECT_THAT(Flags({"-ih"}), ElementsAre("--stdin", "--help"));
  EXPECT_THAT(Parse({"-h"})->given, IsEmpty());
}

TEST(RunArgsTest, OnlyOnePodBeforeTheSeparator) {
  EXPECT_THAT(Error({"api-7d9", "ls", "--", "x"}), HasSubstr("\"ls\": one pod before --"));
  EXPECT_THAT(Error({"api-7d9", "ls", "x"}), HasSubstr("\"ls\": the command goes after --"));
  EXPECT_THAT(Error({"api-7d9"}), HasSubstr("no command after the pod \"api-7d9\""));
}

TEST(RunArgsTest, LoginAndLogoutAreVerbsOnALineWithoutACommand) {
  absl::StatusOr<RunArgs> args = Parse({"login", "--oidc_issuer=https://sso.example.com"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->verb, "login");
  EXPECT_EQ(args->pod, "");
  args = Parse({"--token_cache=/tmp/t.json", "logout"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->verb, "logout");
  EXPECT_THAT(Error({"login", "now"}), HasSubstr("login takes no arguments besides flags"));
  // With a command, a pod may be called login.
  args = Parse({"-n", "ns", "login", "--", "ls"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->verb, "");
  EXPECT_EQ(args->pod, "login");
}

TEST(RunArgsTest, TheTokensPlaceInArgvIsReportedForScrubbing) {
  std::vector<std::string> words = {"podgate-run", "--token=abc", "-n", "ns", "--token",
                                    "def",         "-token=ghi",  "p",  "--", "--token=cmd"};
  absl::StatusOr<RunArgs> args = NormaliseArgs(words, Kind);
  ASSERT_TRUE(args.ok()) << args.status();
  using P = std::pair<size_t, size_t>;
  EXPECT_THAT(args->secrets, ElementsAre(P{1, 8}, P{5, 0}, P{6, 7}));
  for (const auto& [index, offset] : args->secrets) {
    EXPECT_THAT(words[index].substr(offset), ::testing::AnyOf("abc", "def", "ghi"));
  }
  EXPECT_THAT(args->given, UnorderedElementsAre("token", "namespace"));
}

TEST(RunArgsTest, RegisteredFlagKindKnowsNoUnregisteredName) {
  EXPECT_EQ(RegisteredFlagKind("no-such-flag-anywhere"), FlagKind::kUnknown);
}

}  // namespace
}  // namespace podgate::run
