// The checks on user-controlled strings and typed values.
#include "policy/text_checks.h"

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
            "argument 1 contains a bidi control U+202E; only printable ASCII is accepted");
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

}  // namespace
}  // namespace podgate::policy
