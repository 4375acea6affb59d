#include "exec/command_line.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podgate::exec {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Split(absl::string_view line) {
  auto argv = SplitCommandLine(line);
  EXPECT_TRUE(argv.ok()) << line << ": " << argv.status();
  return argv.ok() ? *argv : std::vector<std::string>{};
}

std::string Error(absl::string_view line, const CommandLineLimits& limits = {}) {
  auto argv = SplitCommandLine(line, limits);
  EXPECT_FALSE(argv.ok()) << line;
  EXPECT_EQ(argv.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(argv.status().message());
}

TEST(CommandLineTest, PlainWords) {
  EXPECT_THAT(Split("jstack 1"), ElementsAre("jstack", "1"));
  EXPECT_THAT(Split("  free   -m  "), ElementsAre("free", "-m"));
  EXPECT_THAT(Split("jmap -histo:live 42"), ElementsAre("jmap", "-histo:live", "42"));
  EXPECT_THAT(Error("curl -I https://example.com/a?b"), HasSubstr("glob"));
}

TEST(CommandLineTest, QuotesFollowPosixRules) {
  EXPECT_THAT(Split("echo 'a b' \"c d\""), ElementsAre("echo", "a b", "c d"));
  EXPECT_THAT(Split("echo 'it''s'"), ElementsAre("echo", "its"));
  EXPECT_THAT(Split("echo a'b'\"c\"d"), ElementsAre("echo", "abcd"));
  EXPECT_THAT(Split("echo '' \"\""), ElementsAre("echo", "", ""));
  EXPECT_THAT(Split("echo '$HOME; rm -rf / | x'"), ElementsAre("echo", "$HOME; rm -rf / | x"));
  EXPECT_THAT(Split("echo \"a\\\"b\\\\c\\$d\\`e\""), ElementsAre("echo", "a\"b\\c$d`e"));
  // Inside double quotes a backslash before other characters stays.
  EXPECT_THAT(Split("echo \"a\\nb\""), ElementsAre("echo", "a\\nb"));
  // Inside single quotes a backslash is literal.
  EXPECT_THAT(Split("echo 'a\\'"), ElementsAre("echo", "a\\"));
  EXPECT_THAT(Split("curl -I 'https://example.com/a?b=1&c=2'"),
              ElementsAre("curl", "-I", "https://example.com/a?b=1&c=2"));
}

TEST(CommandLineTest, BackslashEscapesOneCharacter) {
  EXPECT_THAT(Split("echo a\\ b \\; \\|"), ElementsAre("echo", "a b", ";", "|"));
  EXPECT_THAT(Split("echo \\é"), ElementsAre("echo", "é"));
  EXPECT_THAT(Error("echo a\\"), HasSubstr("trailing backslash"));
}

TEST(CommandLineTest, ShellOperatorsAreRefusedWithTheirColumn) {
  for (absl::string_view line :
       {"ps aux; rm -rf /", "ps aux | grep x", "sleep 1 &", "cat < /etc/passwd",
        "echo x > /tmp/y", "echo x >> /tmp/y", "true && false", "false || true", "(id)",
        "echo x)"}) {
    EXPECT_THAT(Error(line), HasSubstr("not a shell")) << line;
  }
  EXPECT_THAT(Error("ps aux; rm"), HasSubstr("column 7"));
  EXPECT_THAT(Error("ps aux; rm"), HasSubstr("quote it (';')"));
}

TEST(CommandLineTest, SubstitutionsAndExpansionsAreRefused) {
  EXPECT_THAT(Error("echo `id`"), HasSubstr("command substitution"));
  EXPECT_THAT(Error("echo $(id)"), HasSubstr("command substitution"));
  EXPECT_THAT(Error("echo \"$(id)\""), HasSubstr("$ expansion"));
  EXPECT_THAT(Error("echo \"`id`\""), HasSubstr("command substitution"));
  EXPECT_THAT(Error("echo $HOME"), HasSubstr("$ expansion"));
  EXPECT_THAT(Error("echo ${HOME}"), HasSubstr("$ expansion"));
  EXPECT_THAT(Error("echo \"$HOME\""), HasSubstr("$ expansion"));
  // A lone $ expands to nothing special in sh either.
  EXPECT_THAT(Split("echo $ 5$"), ElementsAre("echo", "$", "5$"));
}

TEST(CommandLineTest, GlobsBracesTildeAndCommentsAreRefused) {
  EXPECT_THAT(Error("ls *.log"), HasSubstr("glob"));
  EXPECT_THAT(Error("ls a?"), HasSubstr("glob"));
  EXPECT_THAT(Error("ls [ab]"), HasSubstr("glob"));
  EXPECT_THAT(Error("echo {a,b}"), HasSubstr("brace"));
  EXPECT_THAT(Error("ls ~"), HasSubstr("home directory"));
  EXPECT_THAT(Error("ls ~root"), HasSubstr("home directory"));
  EXPECT_THAT(Error("ls # comment"), HasSubstr("comment"));
  // Inside a word they are ordinary in sh.
  EXPECT_THAT(Split("echo a~b a#b"), ElementsAre("echo", "a~b", "a#b"));
  EXPECT_THAT(Split("ls '*.log' \"[ab]\""), ElementsAre("ls", "*.log", "[ab]"));
}

TEST(CommandLineTest, ControlCharactersAreRefusedEvenQuoted) {
  EXPECT_THAT(Error(absl::string_view("echo a\0b", 8)), HasSubstr("NUL"));
  EXPECT_THAT(Error("echo 'a\nb'"), HasSubstr("newline"));
  EXPECT_THAT(Error("echo a\rb"), HasSubstr("carriage return"));
  EXPECT_THAT(Error("echo\tx"), HasSubstr("tab"));
  EXPECT_THAT(Error("echo \x1b[31m"), HasSubstr("escape"));
  EXPECT_THAT(Error("echo \x7f"), HasSubstr("U+007F"));
  EXPECT_THAT(Error("echo \xc2\x85"), HasSubstr("U+0085"));  // C1 NEL
  EXPECT_THAT(Error("echo x\x08"), HasSubstr("column 7"));
}

TEST(CommandLineTest, BidiControlsAndInvalidUtf8AreRefused) {
  EXPECT_THAT(Error("cat \xe2\x80\xae" "gol.txt"), HasSubstr("U+202E"));
  EXPECT_THAT(Error("cat '\xe2\x81\xa6x'"), HasSubstr("U+2066"));
  EXPECT_THAT(Error("cat \xff"), HasSubstr("invalid UTF-8"));
  EXPECT_THAT(Error("cat \xc0\xaf"), HasSubstr("invalid UTF-8"));        // overlong '/'
  EXPECT_THAT(Error("cat \xed\xa0\x80"), HasSubstr("invalid UTF-8"));    // surrogate
  EXPECT_THAT(Error("cat \xe2\x82"), HasSubstr("invalid UTF-8"));        // truncated
  // Valid non-ASCII text is fine; policy decides about look-alikes.
  EXPECT_THAT(Split("echo 'héllo wörld' ｊstack"), ElementsAre("echo", "héllo wörld", "ｊstack"));
  // Columns count characters, not bytes.
  EXPECT_THAT(Error("echo é; x"), HasSubstr("column 7"));
}

TEST(CommandLineTest, UnterminatedQuotesAndEmptyLines) {
  EXPECT_THAT(Error("echo 'abc"), HasSubstr("column 6: unterminated ' quote"));
  EXPECT_THAT(Error("echo \"abc"), HasSubstr("unterminated \" quote"));
  EXPECT_THAT(Error(""), HasSubstr("empty command"));
  EXPECT_THAT(Error("    "), HasSubstr("empty command"));
}

TEST(CommandLineTest, LimitsAreEnforced) {
  CommandLineLimits limits;
  limits.max_line_bytes = 20;
  limits.max_args = 3;
  limits.max_arg_bytes = 5;
  EXPECT_THAT(Error(std::string(21, 'a'), limits), HasSubstr("the limit is 20"));
  EXPECT_THAT(Error("a b c d", limits), HasSubstr("more than 3 arguments"));
  EXPECT_THAT(Error("a bbbbbb", limits), HasSubstr("argument 2 is 6 bytes"));
  EXPECT_THAT(Split("a b c"), ElementsAre("a", "b", "c"));
  // Defaults: 8 KiB line.
  EXPECT_THAT(Error(std::string(8193, 'a')), HasSubstr("the limit is 8192"));
}

}  // namespace
}  // namespace podgate::exec
