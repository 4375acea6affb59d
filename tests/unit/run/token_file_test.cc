// podgate-run's --token_file (tools/run/token_file.h): read once, whitespace around dropped,
// and every refusal names the file, never its content.
#include "run/token_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/test_pki.h"

namespace podgate::run {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class TokenFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("podgate-token-file");
    ASSERT_NE(dir_, "");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& content) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }

  std::string dir_;
};

TEST_F(TokenFileTest, TheTokenIsReadWithoutTheSurroundingWhitespace) {
  EXPECT_EQ(ReadTokenFile(Write("t", "eyJ.abc.def\n")).value_or(""), "eyJ.abc.def");
  EXPECT_EQ(ReadTokenFile(Write("u", "  eyJ.abc.def \r\n\n")).value_or(""), "eyJ.abc.def");
  EXPECT_EQ(ReadTokenFile(Write("v", "eyJ.abc.def")).value_or(""), "eyJ.abc.def");
}

TEST_F(TokenFileTest, AnEmptyFileIsRefusedByName) {
  for (const std::string& content : {std::string(), std::string(" \n\t\n")}) {
    const std::string path = Write("empty", content);
    absl::StatusOr<std::string> token = ReadTokenFile(path);
    ASSERT_FALSE(token.ok());
    EXPECT_TRUE(absl::IsInvalidArgument(token.status())) << token.status();
    EXPECT_EQ(token.status().message(),
              absl::StrCat("the token file ", path, " is empty; it should hold the token"));
  }
  EXPECT_THAT(ReadTokenFile("").status().message(), HasSubstr("--token_file is empty"));
}

TEST_F(TokenFileTest, AFileThatIsNotJustATokenIsRefusedWithoutShowingIt) {
  absl::StatusOr<std::string> token = ReadTokenFile(Write("two", "first-secret\nsecond-secret\n"));
  ASSERT_FALSE(token.ok());
  EXPECT_THAT(token.status().message(), HasSubstr("line breaks or control characters"));
  EXPECT_THAT(token.status().message(), Not(HasSubstr("secret")));
  token = ReadTokenFile(Write("big", std::string(kMaxTokenFileBytes + 1, 'a')));
  ASSERT_FALSE(token.ok());
  EXPECT_THAT(token.status().message(), HasSubstr("is larger than 64 KiB"));
  // The largest allowed is read whole.
  EXPECT_EQ(ReadTokenFile(Write("max", std::string(kMaxTokenFileBytes, 'a'))).value_or("").size(),
            kMaxTokenFileBytes);
}

TEST_F(TokenFileTest, AMissingFileIsNotFoundByName) {
  const std::string path = dir_ + "/nope";
  absl::StatusOr<std::string> token = ReadTokenFile(path);
  ASSERT_FALSE(token.ok());
  EXPECT_TRUE(absl::IsNotFound(token.status())) << token.status();
  EXPECT_THAT(token.status().message(), HasSubstr(path));
  EXPECT_THAT(token.status().message(), HasSubstr("No such file"));
  EXPECT_FALSE(ReadTokenFile(dir_).ok());  // a directory
}

// --token_file=<(pass show podgate): the shell's process substitution is a pipe.
TEST_F(TokenFileTest, APipeIsReadToItsEnd) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const std::string token = "eyJ.from-a-pipe.sig";
  ASSERT_EQ(write(fds[1], token.data(), token.size()), static_cast<ssize_t>(token.size()));
  close(fds[1]);
  EXPECT_EQ(ReadTokenFile(absl::StrCat("/dev/fd/", fds[0])).value_or(""), token);
  close(fds[0]);
}

}  // namespace
}  // namespace podgate::run
