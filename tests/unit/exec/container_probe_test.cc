#include "exec/container_probe.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
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

// The start time (field 22 of /proc/<pid>/stat) of a process on this machine.
std::string StartTicks(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(stat, line);
  std::vector<std::string> fields = absl::StrSplit(line.substr(line.rfind(") ") + 2), ' ');
  return fields.size() > 19 ? fields[19] : "";
}

// A process started like kubesim (and a container runtime) starts an exec: a new session,
// stdin and stderr on pipes.
struct Launched {
  pid_t pid = 0;
  int stdin_fd = -1;
  int stderr_fd = -1;
  int stdout_fd = -1;
};

Launched Launch(const std::vector<std::string>& argv) {
  int in[2], err[2], out[2];
  EXPECT_EQ(pipe(in), 0);
  EXPECT_EQ(pipe(err), 0);
  EXPECT_EQ(pipe(out), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    setsid();
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    for (int fd : {in[0], in[1], err[0], err[1], out[0], out[1]}) {
      close(fd);
    }
    std::vector<char*> args;
    for (const auto& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(in[0]);
  close(err[1]);
  close(out[1]);
  return {pid, in[1], err[0], out[0]};
}

std::string ReadAll(int fd) {
  std::string text;
  char buf[256];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) {
    text.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return text;
}

// Reads the launch report from the wrapper's stderr.
LaunchReport ReadReport(int fd) {
  LaunchReport report;
  std::string rest;
  char c;
  while (report.status() == LaunchReport::Status::kPending && read(fd, &c, 1) == 1) {
    report.Feed(absl::string_view(&c, 1), &rest);
  }
  return report;
}

std::vector<pid_t> PidsWithCmdline(const std::vector<std::string>& argv) {
  std::string want;
  for (const std::string& a : argv) {
    want += a;
    want += '\0';
  }
  std::vector<pid_t> pids;
  DIR* proc = opendir("/proc");
  while (dirent* e = readdir(proc)) {
    int64_t pid;
    if (!absl::SimpleAtoi(e->d_name, &pid)) {
      continue;
    }
    const std::string cmdline = testing::ReadProcFile(absl::StrCat("/proc/", pid, "/cmdline"));
    if (cmdline == want && local::Runs(static_cast<pid_t>(pid))) {
      pids.push_back(static_cast<pid_t>(pid));
    }
  }
  closedir(proc);
  return pids;
}

TEST(LaunchReportTest, AcceptsExactlyOneWellFormedLine) {
  LaunchReport r;
  std::string rest;
  EXPECT_EQ(r.Feed("podgate-pid 12", &rest), LaunchReport::Status::kPending);
  EXPECT_EQ(r.Feed("3 987654\nerr", &rest), LaunchReport::Status::kReported);
  EXPECT_EQ(r.pid(), "123");
  EXPECT_EQ(r.start_ticks(), "987654");
  EXPECT_EQ(rest, "err");
  EXPECT_EQ(r.Feed("more", &rest), LaunchReport::Status::kReported);
  EXPECT_EQ(rest, "more");
  for (absl::string_view bad :
       {"podgate-pid 0 5\n", "podgate-pid 01 5\n", "podgate-pid 1 05\n", "podgate-pid 1\n",
        "podgate-pid -1 5\n", "podgate-pid 1 5 6\n", "podgate-pid  1 5\n", "pid 1 5\n",
        "podgate-pid 4194305 5\n", "podgate-pid 1 x\n", "sh: 1: cannot open /proc\n",
        "podgate-pid 1 123456789012345678901234567890\n"}) {
    LaunchReport b;
    EXPECT_EQ(b.Feed(bad, &rest), LaunchReport::Status::kInvalid) << bad;
  }
  LaunchReport endless;
  EXPECT_EQ(endless.Feed(std::string(65, '1'), &rest), LaunchReport::Status::kInvalid);
}

TEST(LaunchWrapperTest, ReportsThePidThatThenRunsTheArgvOnlyAfterGo) {
  const std::string marker = absl::StrCat(500 + getpid() % 1000);
  Launched l = Launch(LaunchWrapperArgv({"/bin/sleep", marker}));
  LaunchReport report = ReadReport(l.stderr_fd);
  ASSERT_EQ(report.status(), LaunchReport::Status::kReported);
  EXPECT_EQ(report.pid(), absl::StrCat(l.pid));
  EXPECT_EQ(report.start_ticks(), StartTicks(l.pid));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_TRUE(PidsWithCmdline({"/bin/sleep", marker}).empty()) << "it ran before go";
  ASSERT_EQ(write(l.stdin_fd, "go\n", 3), 3);
  for (int i = 0; i < 100 && PidsWithCmdline({"/bin/sleep", marker}).empty(); ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  // The pid reported is the command's own, with the same start time.
  EXPECT_EQ(PidsWithCmdline({"/bin/sleep", marker}), std::vector<pid_t>{l.pid});
  EXPECT_EQ(StartTicks(l.pid), report.start_ticks());
  kill(l.pid, SIGKILL);
  waitpid(l.pid, nullptr, 0);
  close(l.stdin_fd);
  close(l.stderr_fd);
  close(l.stdout_fd);
}

TEST(LaunchWrapperTest, WithoutGoNothingRunsAndTheArgvIsData) {
  const std::string canary = absl::StrCat("/tmp/podgate-canary-", getpid());
  unlink(canary.c_str());
  // EOF instead of "go": the command never runs.
  Launched l = Launch(LaunchWrapperArgv({"/usr/bin/touch", canary}));
  ASSERT_EQ(ReadReport(l.stderr_fd).status(), LaunchReport::Status::kReported);
  close(l.stdin_fd);
  int status = 0;
  waitpid(l.pid, &status, 0);
  EXPECT_EQ(WEXITSTATUS(status), 125);
  EXPECT_NE(access(canary.c_str(), F_OK), 0) << "the command ran without go";
  close(l.stderr_fd);
  close(l.stdout_fd);
  // Something else than "go": nothing runs either.
  l = Launch(LaunchWrapperArgv({"/usr/bin/touch", canary}));
  ASSERT_EQ(ReadReport(l.stderr_fd).status(), LaunchReport::Status::kReported);
  ASSERT_EQ(write(l.stdin_fd, "gone\n", 5), 5);
  waitpid(l.pid, &status, 0);
  EXPECT_EQ(WEXITSTATUS(status), 125);
  EXPECT_NE(access(canary.c_str(), F_OK), 0);
  close(l.stdin_fd);
  close(l.stderr_fd);
  close(l.stdout_fd);
  // Hostile arguments stay data; the command's stdin follows "go" byte for byte.
  l = Launch(LaunchWrapperArgv({"/bin/sh", "-c", "read x; printf '%s|%s|%s' \"$1\" \"$2\" \"$x\"",
                                "sh", absl::StrCat("$(touch ", canary, ")"),
                                absl::StrCat("`touch ", canary, "`; touch ", canary)}));
  ASSERT_EQ(ReadReport(l.stderr_fd).status(), LaunchReport::Status::kReported);
  const std::string input = "go\nline one\n";
  ASSERT_EQ(write(l.stdin_fd, input.data(), input.size()), static_cast<ssize_t>(input.size()));
  close(l.stdin_fd);
  EXPECT_EQ(ReadAll(l.stdout_fd), absl::StrCat("$(touch ", canary, ")|`touch ", canary, "`; touch ",
                                               canary, "|line one"));
  waitpid(l.pid, &status, 0);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(ReadAll(l.stderr_fd), "");
  EXPECT_NE(access(canary.c_str(), F_OK), 0) << "the wrapper executed its input";
}

TEST(StopHelperTest, SignalsExactlyThatProcessAndItsGroup) {
  const std::string marker = absl::StrCat(600 + getpid() % 1000);
  // Two identical commands a moment apart, each in its own session like an exec.
  Launched first = Launch({"/bin/sleep", marker});
  absl::SleepFor(absl::Milliseconds(50));
  Launched second = Launch(
      {"/bin/sh", "-c", absl::StrCat("/bin/sleep ", marker, "1 & exec /bin/sleep ", marker)});
  for (int i = 0; i < 100 && PidsWithCmdline({"/bin/sleep", absl::StrCat(marker, "1")}).empty();
       ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const std::vector<pid_t> child = PidsWithCmdline({"/bin/sleep", absl::StrCat(marker, "1")});
  ASSERT_EQ(child.size(), 1u);
  // A wrong start time (a pid handed to another process) is never signalled.
  auto [s0, o0] = RunArgv(StopHelperArgv(absl::StrCat(second.pid), "1", "KILL"));
  EXPECT_EQ(s0, 3);
  EXPECT_EQ(o0, "gone\n");
  EXPECT_TRUE(Alive(second.pid));
  auto [s1, o1] = RunArgv(StopHelperArgv(absl::StrCat(second.pid), StartTicks(second.pid), "INT"));
  EXPECT_EQ(s1, 0);
  EXPECT_EQ(o1, absl::StrCat("group ", second.pid, "\n"));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_FALSE(Alive(second.pid));
  EXPECT_TRUE(Alive(first.pid)) << "an identical command of someone else was signalled";
  // A background child ignores SIGINT (sh starts it so); the SIGKILL follow-up reaches it in
  // the group whose leader is gone.
  EXPECT_TRUE(local::Runs(child[0]));
  auto [sk, ok] =
      RunArgv(StopHelperArgv(absl::StrCat(second.pid), StartTicks(first.pid), "KILL", true));
  EXPECT_EQ(sk, 0);
  EXPECT_EQ(ok, absl::StrCat("orphans ", second.pid, "\n"));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_FALSE(local::Runs(child[0])) << "a child in the command's group was left running";
  EXPECT_TRUE(Alive(first.pid));
  // Without the flag, a leader that is gone means nothing is signalled.
  auto [sn, on] = RunArgv(StopHelperArgv(absl::StrCat(second.pid), "5", "KILL"));
  EXPECT_EQ(sn, 3);
  // Once gone, the same pid and start time are "gone".
  auto [s2, o2] = RunArgv(StopHelperArgv(absl::StrCat(second.pid), "5", "KILL"));
  EXPECT_EQ(s2, 3);
  // Hostile inputs are refused or stay data.
  const std::string canary = absl::StrCat("/tmp/podgate-canary-stop-", getpid());
  auto [s3, o3] = RunArgv(StopHelperArgv(absl::StrCat("1; touch ", canary), "1", "KILL"));
  EXPECT_EQ(s3, 2);
  auto [s4, o4] = RunArgv(StopHelperArgv(absl::StrCat(first.pid), StartTicks(first.pid),
                                         absl::StrCat("INT; touch ", canary)));
  EXPECT_NE(s4, 0);
  EXPECT_NE(access(canary.c_str(), F_OK), 0);
  EXPECT_TRUE(Alive(first.pid));
  for (const Launched& l : {first, second}) {
    kill(l.pid, SIGKILL);
    waitpid(l.pid, nullptr, 0);
    close(l.stdin_fd);
    close(l.stderr_fd);
    close(l.stdout_fd);
  }
}

}  // namespace
}  // namespace podgate::exec
