// podgate-run's token cache file: where it lives, that it is written atomically with mode 0600
// under a 0700 directory, that a file others could read or change is refused, and the lock runs
// take to refresh it; also the sign-in's pure helpers (when to refresh, terminal-safe text).
#include "run/token_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "run/oidc_login.h"
#include "support/test_pki.h"

namespace podgate::run {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Env FakeEnv(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) {
      return std::nullopt;
    }
    return it->second;
  };
}

CachedToken Sample() {
  CachedToken t;
  t.id_token = "eyJ.id-token-value.sig";
  t.refresh_token = "refresh-token-value";
  t.expiry = absl::FromUnixSeconds(1900000000);
  t.issuer = "https://sso.example.com";
  t.client_id = "podgate-cli";
  return t;
}

mode_t Mode(const std::string& path) {
  struct stat st;
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class TokenCacheTest : public ::testing::Test {
 protected:
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_ = testing::MakeTempDir("podgate-token-cache");
};

TEST(DefaultTokenCachePathTest, FollowsXdgConfigHomeThenHome) {
  EXPECT_EQ(*DefaultTokenCachePath(FakeEnv({{"XDG_CONFIG_HOME", "/x/cfg"}, {"HOME", "/home/u"}})),
            "/x/cfg/podgate/token.json");
  EXPECT_EQ(*DefaultTokenCachePath(FakeEnv({{"HOME", "/home/u"}})),
            "/home/u/.config/podgate/token.json");
  // A relative XDG_CONFIG_HOME is invalid (XDG Base Directory spec) and ignored.
  EXPECT_EQ(*DefaultTokenCachePath(FakeEnv({{"XDG_CONFIG_HOME", "cfg"}, {"HOME", "/home/u"}})),
            "/home/u/.config/podgate/token.json");
  auto none = DefaultTokenCachePath(FakeEnv({}));
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(none.status().message(), HasSubstr("--token_cache"));
}

TEST_F(TokenCacheTest, IsWrittenWithMode0600UnderNew0700DirectoriesAndReadBack) {
  const std::string path = dir_ + "/a/b/token.json";
  ASSERT_TRUE(WriteTokenCache(path, Sample()).ok());
  EXPECT_EQ(Mode(dir_ + "/a"), 0700u);
  EXPECT_EQ(Mode(dir_ + "/a/b"), 0700u);
  EXPECT_EQ(Mode(path), 0600u);
  // Only the cache in its directory: no temporary file left behind.
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_ + "/a/b")) {
    ++entries;
  }
  EXPECT_EQ(entries, 1);
  const nlohmann::json doc = nlohmann::json::parse(Slurp(path));
  EXPECT_EQ(doc["id_token"], "eyJ.id-token-value.sig");
  EXPECT_EQ(doc["refresh_token"], "refresh-token-value");
  EXPECT_EQ(doc["expiry"], 1900000000);
  EXPECT_EQ(doc["issuer"], "https://sso.example.com");
  EXPECT_EQ(doc["client_id"], "podgate-cli");
  absl::StatusOr<CachedToken> back = ReadTokenCache(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->id_token, Sample().id_token);
  EXPECT_EQ(back->refresh_token, Sample().refresh_token);
  EXPECT_EQ(back->expiry, Sample().expiry);
  EXPECT_EQ(back->issuer, Sample().issuer);
  EXPECT_EQ(back->client_id, Sample().client_id);
}

TEST_F(TokenCacheTest, AnExistingDirectoryKeepsItsMode) {
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
  ASSERT_TRUE(WriteTokenCache(dir_ + "/token.json", Sample()).ok());
  EXPECT_EQ(Mode(dir_), 0755u);
  EXPECT_EQ(Mode(dir_ + "/token.json"), 0600u);
}

TEST_F(TokenCacheTest, ARewriteReplacesTheFileInsteadOfWritingIntoIt) {
  const std::string path = dir_ + "/token.json";
  std::ofstream(path) << "old";
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  // A second name for the old file: an in-place write would change what it shows.
  ASSERT_EQ(link(path.c_str(), (dir_ + "/old").c_str()), 0);
  ASSERT_TRUE(WriteTokenCache(path, Sample()).ok());
  EXPECT_EQ(Slurp(dir_ + "/old"), "old");
  EXPECT_EQ(Mode(path), 0600u);
  EXPECT_TRUE(ReadTokenCache(path).ok());
}

TEST_F(TokenCacheTest, AFileOthersCanReadOrChangeIsRefused) {
  const std::string path = dir_ + "/token.json";
  ASSERT_TRUE(WriteTokenCache(path, Sample()).ok());
  for (mode_t mode : {0644, 0640, 0604, 0620, 0602, 0660}) {
    ASSERT_EQ(chmod(path.c_str(), mode), 0);
    absl::StatusOr<CachedToken> read = ReadTokenCache(path);
    ASSERT_FALSE(read.ok()) << std::oct << mode;
    EXPECT_EQ(read.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(read.status().message(), HasSubstr(path));
    EXPECT_THAT(read.status().message(), HasSubstr("others can read or change it"));
    EXPECT_THAT(read.status().message(), Not(HasSubstr("id-token-value")));
  }
  ASSERT_EQ(chmod(path.c_str(), 0400), 0);  // stricter than 0600 is fine
  EXPECT_TRUE(ReadTokenCache(path).ok());
}

TEST_F(TokenCacheTest, AFileOfAnotherUserIsRefused) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "needs root to give a file to another user";
  }
  const std::string path = dir_ + "/token.json";
  ASSERT_TRUE(WriteTokenCache(path, Sample()).ok());
  ASSERT_EQ(chown(path.c_str(), 65534, 65534), 0);
  absl::StatusOr<CachedToken> read = ReadTokenCache(path);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(read.status().message(), HasSubstr("owned by uid 65534"));
}

TEST_F(TokenCacheTest, ALinkADirectoryOrAFifoIsRefused) {
  const std::string real = dir_ + "/real.json";
  ASSERT_TRUE(WriteTokenCache(real, Sample()).ok());
  ASSERT_EQ(symlink(real.c_str(), (dir_ + "/link.json").c_str()), 0);
  EXPECT_THAT(ReadTokenCache(dir_ + "/link.json").status().message(),
              HasSubstr("is a symbolic link"));
  ASSERT_EQ(mkdir((dir_ + "/dir.json").c_str(), 0700), 0);
  EXPECT_THAT(ReadTokenCache(dir_ + "/dir.json").status().message(),
              HasSubstr("not a regular file"));
  ASSERT_EQ(mkfifo((dir_ + "/fifo.json").c_str(), 0600), 0);
  EXPECT_THAT(ReadTokenCache(dir_ + "/fifo.json").status().message(),
              HasSubstr("not a regular file"));
}

TEST_F(TokenCacheTest, AMissingCacheIsNotFoundAndLogoutRemovesIt) {
  const std::string path = dir_ + "/token.json";
  EXPECT_EQ(ReadTokenCache(path).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(WriteTokenCache(path, Sample()).ok());
  EXPECT_TRUE(RemoveTokenCache(path).ok());
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_EQ(RemoveTokenCache(path).code(), absl::StatusCode::kNotFound);
}

TEST_F(TokenCacheTest, APathThroughAFileCannotBeWritten) {
  std::ofstream(dir_ + "/file") << "x";
  absl::Status s = WriteTokenCache(dir_ + "/file/token.json", Sample());
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("is not a directory"));
}

TEST_F(TokenCacheTest, AFileThatIsNotACacheIsRefusedNamingTheField) {
  const std::string path = dir_ + "/token.json";
  auto write = [&](const std::string& text) {
    std::ofstream(path, std::ios::trunc) << text;
    chmod(path.c_str(), 0600);
    return ReadTokenCache(path).status();
  };
  EXPECT_THAT(write("not json").message(), HasSubstr("not a JSON object"));
  nlohmann::json doc = nlohmann::json::parse(SerializeToken(Sample()));
  for (const char* field : {"id_token", "issuer", "client_id", "expiry"}) {
    nlohmann::json broken = doc;
    broken.erase(field);
    absl::Status s = write(broken.dump());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("\"", field, "\""))) << field;
    EXPECT_THAT(s.message(), Not(HasSubstr("id-token-value")));
  }
  doc["expiry"] = "tomorrow";
  EXPECT_THAT(write(doc.dump()).message(), HasSubstr("\"expiry\""));
  // Without a refresh token it is still a cache (the provider may issue none).
  doc = nlohmann::json::parse(SerializeToken(Sample()));
  doc.erase("refresh_token");
  EXPECT_TRUE(write(doc.dump()).ok());
}

TEST_F(TokenCacheTest, OneRunAtATimeHoldsTheLock) {
  const std::string path = dir_ + "/token.json";
  ASSERT_TRUE(WriteTokenCache(path, Sample()).ok());
  {
    absl::StatusOr<TokenCacheLock> first = TokenCacheLock::Acquire(path, absl::Seconds(1));
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_EQ(Mode(path + ".lock"), 0600u);
    const absl::Time start = absl::Now();
    absl::StatusOr<TokenCacheLock> second = TokenCacheLock::Acquire(path, absl::Milliseconds(200));
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.status().code(), absl::StatusCode::kDeadlineExceeded);
    EXPECT_THAT(second.status().message(), HasSubstr("still locked by another podgate-run"));
    EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
  }
  // Released with its holder; logout removes the lock file with the cache.
  EXPECT_TRUE(TokenCacheLock::Acquire(path, absl::Milliseconds(200)).ok());
  ASSERT_TRUE(RemoveTokenCache(path).ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".lock"));
}

TEST(TerminalSafeTest, ProviderTextCannotDriveTheTerminal) {
  EXPECT_EQ(TerminalSafe("WDJB-MJHT"), "WDJB-MJHT");
  EXPECT_EQ(TerminalSafe("https://sso.example.com/device?user_code=A-B"),
            "https://sso.example.com/device?user_code=A-B");
  EXPECT_EQ(TerminalSafe("\x1b]0;pwned\x07"
                         "AB\r\nCD\x7f\xc3\xa9"),
            "?]0;pwned?AB??CD???");
}

TEST(NeedsRefreshTest, WithinAMinuteOfExpiryOrAfter) {
  CachedToken t = Sample();
  const absl::Time now = t.expiry - absl::Minutes(5);
  EXPECT_FALSE(NeedsRefresh(t, now));
  EXPECT_FALSE(NeedsRefresh(t, t.expiry - absl::Seconds(61)));
  EXPECT_TRUE(NeedsRefresh(t, t.expiry - absl::Seconds(60)));
  EXPECT_TRUE(NeedsRefresh(t, t.expiry + absl::Hours(1)));
}

}  // namespace
}  // namespace podgate::run
