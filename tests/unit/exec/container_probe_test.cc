#include "exec/container_probe.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "local_process.h"
#include "support/subprocess.h"

namespace podgate::exec {
namespace {

using local::Alive;
using local::RunArgv;
using local::StartSleep;

TEST(ParseUidTest, AcceptsOnlyAPlainNumber) {
  EXPECT_EQ(*ParseUid("0\n"), 0);
  EXPECT_EQ(*ParseUid("1000"), 1000);
  EXPECT_EQ(*ParseUid("65534\n"), 65534);
  for (absl::string_view bad : {"", "\n", "root\n", "0 \n", " 0", "0\n\n", "-1", "+5", "00",
                                "1e3", "4294967296", "12345678901", "0\r\n", "uid=0(root)"}) {
    EXPECT_FALSE(ParseUid(bad).ok()) << "'" << bad << "'";
  }
}

TEST(InterruptHelperTest, SignalsTheYoungestWindowsOldestMatchAndNothingElse) {
  const std::string marker = absl::StrCat(300 + getpid() % 1000);
  const pid_t old_one = StartSleep(marker);
  absl::SleepFor(absl::Seconds(3));
  const pid_t target = StartSleep(marker);
  const pid_t other = StartSleep(absl::StrCat(marker, "1"));
  absl::SleepFor(absl::Milliseconds(200));

  auto [status, out] = RunArgv(InterruptHelperArgv({"sleep", marker}, absl::Milliseconds(500), "INT"));
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(out, absl::StrCat(target, "\n"));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_FALSE(Alive(target));
  EXPECT_TRUE(Alive(old_one)) << "an older identical command must be left alone";
  EXPECT_TRUE(Alive(other)) << "a different command must be left alone";
  kill(old_one, SIGKILL);
  kill(other, SIGKILL);
  waitpid(old_one, nullptr, 0);
  waitpid(other, nullptr, 0);
}

TEST(InterruptHelperTest, NoMatchExitsThreeAndPidModeChecksTheCommand) {
  auto [status, out] =
      RunArgv(InterruptHelperArgv({"no-such-program", "x"}, absl::Seconds(5), "INT"));
  EXPECT_EQ(status, 3);
  const std::string marker = absl::StrCat(400 + getpid() % 1000);
  const pid_t pid = StartSleep(marker);
  absl::SleepFor(absl::Milliseconds(200));
  // A pid that does not run the target is not signalled.
  auto [s1, o1] = RunArgv(InterruptHelperArgv({"sleep", "1"}, absl::Seconds(5), "KILL",
                                          absl::StrCat(pid)));
  EXPECT_EQ(s1, 3);
  EXPECT_TRUE(Alive(pid));
  auto [s2, o2] = RunArgv(InterruptHelperArgv({"sleep", marker}, absl::Seconds(5), "KILL",
                                          absl::StrCat(pid)));
  EXPECT_EQ(s2, 0);
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_FALSE(Alive(pid));
}

TEST(InterruptHelperTest, HostileArgvIsDataNotCode) {
  // The target's argv travels as one argument; nothing in it is executed.
  const std::string canary = absl::StrCat("/tmp/podgate-canary-", getpid());
  unlink(canary.c_str());
  auto [status, out] = RunArgv(InterruptHelperArgv(
      {"x", absl::StrCat("$(touch ", canary, ")"), absl::StrCat("`touch ", canary, "`; touch ",
                                                                 canary)},
      absl::Seconds(1), "INT"));
  EXPECT_EQ(status, 3);
  EXPECT_NE(access(canary.c_str(), F_OK), 0) << "the helper executed its input";
  auto [s2, o2] = RunArgv(InterruptHelperArgv({"x"}, absl::Seconds(1), "INT; touch " + canary));
  EXPECT_NE(access(canary.c_str(), F_OK), 0);
}

}  // namespace
}  // namespace podgate::exec
