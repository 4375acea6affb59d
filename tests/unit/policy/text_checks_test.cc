// The checks on user-controlled strings and typed values.
#include "policy/text_checks.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace podgate::policy {
namespace {

TEST(TextChecksTest, StrictIntegers) {
  EXPECT_EQ(ParseStrictInteger("0"), 0);
  EXPECT_EQ(ParseStrictInteger("42"), 42);
  EXPECT_EQ(ParseStrictInteger("-7"), -7);
  EXPECT_EQ(ParseStrictInteger("9223372036854775807"), 9223372036854775807LL);
  for (const char* bad : {"", "-", "+1", "01", " 1", "1 ", "1e3", "0x10", "1.0",
                          "9223372036854775808", "99999999999999999999", "--1"}) {
    EXPECT_FALSE(ParseStrictInteger(bad).has_value()) << bad;
  }
}

TEST(TextChecksTest, PathsAreNormalisedAndTraversalRefused) {
  EXPECT_EQ(NormaliseAbsolutePath("/var//log/./app/"), "/var/log/app");
  EXPECT_EQ(NormaliseAbsolutePath("/"), "/");
  EXPECT_FALSE(NormaliseAbsolutePath("var/log").has_value());
  EXPECT_FALSE(NormaliseAbsolutePath("/var/log/app/../../etc/shadow").has_value());
  EXPECT_FALSE(NormaliseAbsolutePath("/var/..").has_value());
  EXPECT_TRUE(NormaliseAbsolutePath("/var/..x").has_value());  // a name, not a parent
  EXPECT_TRUE(PathIsUnder("/var/log/app", "/var/log/app"));
  EXPECT_TRUE(PathIsUnder("/var/log/app/x", "/var/log/app"));
  EXPECT_FALSE(PathIsUnder("/var/log/app2", "/var/log/app"));
  EXPECT_FALSE(PathIsUnder("/var/log", "/var/log/app"));
  EXPECT_TRUE(PathIsUnder("/etc", "/"));
}

TEST(TextChecksTest, GlobMatching) {
  EXPECT_TRUE(GlobMatch("app-*", "app-shop"));
  EXPECT_TRUE(GlobMatch("app-*", "app-"));
  EXPECT_FALSE(GlobMatch("app-*", "app"));
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("w?b-*-x", "web-1-x"));
  EXPECT_FALSE(GlobMatch("w?b", "wb"));
  EXPECT_TRUE(GlobMatch("*a*b*", "xxaxxbxx"));
  EXPECT_FALSE(GlobMatch("*a*b", "xxaxxbxxc"));
}

TEST(TextChecksTest, ArgvLimitsAndCharacters) {
  EXPECT_FALSE(CheckArgv({"ls", "-l", "a b"}).has_value());
  EXPECT_EQ(*CheckArgv({}), "the command is empty");
  EXPECT_EQ(*CheckArgv(std::vector<std::string>(kMaxArgc + 1, "x")),
            "the command has 129 arguments (the limit is 128)");
  EXPECT_FALSE(CheckArgv(std::vector<std::string>(kMaxArgc, "x")).has_value());
  EXPECT_EQ(*CheckArgv({"ls", std::string(kMaxArgBytes + 1, 'a')}),
            "argument 1 is 4097 bytes long (the limit is 4096)");
  EXPECT_FALSE(CheckArgv({"ls", std::string(kMaxArgBytes, 'a')}).has_value());
  EXPECT_EQ(*CheckArgv({"ls", "\xe2\x80\xae"}),
            "argument 1 contains a bidi control U+202E, which is never accepted");
  // The program is a name on PATH: printable ASCII only.
  EXPECT_EQ(*CheckArgv({"l\xc3\xb3"}),
            "the program name contains a non-ASCII character U+00F3; only printable ASCII is "
            "accepted");
  // Arguments may be text in any language; the value types decide where it may go.
  EXPECT_FALSE(CheckArgv({"cat", "/var/log/\xe6\x97\xa5\xe5\xbf\x97.log"}).has_value());
  EXPECT_EQ(*CheckArgv({"cat",
                        "/var/log/a\xe3\x80\x80"
                        "b"}),
            "argument 1 contains a non-ASCII space U+3000, which is never accepted");
  EXPECT_EQ(*DescribeForbiddenCharacter("\xe2\x80\x8f"), "bidi control U+200F");
  EXPECT_EQ(*DescribeForbiddenCharacter("\xd8\x9c"), "bidi control U+061C");
  EXPECT_EQ(*DescribeForbiddenCharacter("\xe3\x80\x80"), "non-ASCII space U+3000");
  EXPECT_EQ(*DescribeForbiddenCharacter("\xef\xbb\xbf"), "invisible character U+FEFF");
  EXPECT_EQ(*DescribeForbiddenCharacter("ab\xf0\x9f\x98\x80"), "non-ASCII character U+1F600");
  EXPECT_EQ(*DescribeForbiddenCharacter("ab\xf0\x9f\x98"), "invalid UTF-8 at byte 2");
  EXPECT_EQ(*DescribeForbiddenCharacter("\xf4\x90\x80\x80"), "invalid UTF-8 at byte 0");
  EXPECT_EQ(*DescribeForbiddenCharacter("\xe0\x80\xaf"), "invalid UTF-8 at byte 0");
  EXPECT_EQ(*DescribeForbiddenCharacter("\x80"), "invalid UTF-8 at byte 0");
  EXPECT_FALSE(DescribeForbiddenCharacter(" ~!").has_value());
}

TEST(TextChecksTest, TextInAnyLanguageButNeverWhatHidesOrImitates) {
  for (const char* good :
       {"", "plain ascii ~!", "\xe4\xbd\xa0\xe5\xa5\xbd",                            // 你好
        "caf\xc3\xa9", "\xd0\xbf\xd1\x80\xd0\xb8",                                   // при
        "\xe9\x94\x99\xe8\xaf\xaf\xef\xbc\x8c\xe8\xaf\xb7",                          // 错误，请
        "\xef\xbc\x88\xef\xbc\x89\xef\xbc\x9a\xef\xbc\x9b\xef\xbc\x81\xef\xbc\x9f",  // （）：；！？
        "\xf0\x9f\x98\x80", "e\xcc\x81"}) {  // an emoji; e + combining acute
    EXPECT_FALSE(DescribeUnsafeCharacter(good).has_value()) << absl::CHexEscape(good);
  }
  const std::vector<std::pair<std::string, std::string>> bad = {
      {std::string("a\0", 2), "NUL byte"},
      {"a\x1b[2J", "control character U+001B"},
      {"\xc2\x85", "control character U+0085"},
      {"a\xe3\x80\x80"
       "b",
       "non-ASCII space U+3000"},
      {"\xc2\xa0", "non-ASCII space U+00A0"},
      {"\xe2\x80\xa8", "line or paragraph separator U+2028"},
      {"\xe2\x80\xae", "bidi control U+202E"},
      {"\xe2\x81\xa6", "bidi control U+2066"},
      {"\xe2\x80\x8b", "invisible character U+200B"},
      {"\xe2\x81\xa0", "invisible character U+2060"},
      {"\xc2\xad", "invisible character U+00AD"},
      {"\xef\xb8\x8f", "invisible character U+FE0F"},
      {"\xf3\xa0\x80\x81", "invisible character U+E0001"},
      {"\xe3\x85\xa4", "invisible character U+3164"},
      {"\xee\x80\x80", "private-use character U+E000"},
      {"\xf3\xb0\x80\x80", "private-use character U+F0000"},
      {"\xef\xb7\x90", "noncharacter U+FDD0"},
      {"\xef\xbf\xbe", "noncharacter U+FFFE"},
      {"\xef\xbd\x8a", "fullwidth look-alike U+FF4A of 'j'"},
      {"\xef\xbc\x8d", "fullwidth look-alike U+FF0D of '-'"},
      {"\xef\xbc\x8f", "fullwidth look-alike U+FF0F of '/'"},
      {"\xef\xbc\x8e", "fullwidth look-alike U+FF0E of '.'"},
      {"ab\xf0\x9f\x98", "invalid UTF-8 at byte 2"},
      {"\xed\xa0\x80", "invalid UTF-8 at byte 0"},  // a surrogate
      {"\xe0\x80\xaf", "invalid UTF-8 at byte 0"},  // overlong '/'
  };
  for (const auto& [text, name] : bad) {
    EXPECT_EQ(DescribeUnsafeCharacter(text).value_or("accepted"), name) << absl::CHexEscape(text);
  }
  EXPECT_TRUE(IsAscii("abc ~"));
  EXPECT_FALSE(IsAscii("caf\xc3\xa9"));
}

}  // namespace
}  // namespace podgate::policy
