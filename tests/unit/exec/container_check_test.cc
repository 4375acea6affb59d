// The checks exec makes in a container before a command: the probes' argv builders and strict
// parsers, and the probes run for real against processes and files on this machine (a real
// JVM, a JVM started with -Xrs, a sleep, symbolic links in and out of a prefix).
#include "exec/container_check.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "exec/container_probe.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "local_process.h"
#include "support/subprocess.h"
#include "support/test_pki.h"

namespace podgate::exec {
namespace {

namespace common = podgate::common::v1;
using ::testing::HasSubstr;
using ::testing::Not;
using Result = CheckOutcome::Result;

common::ContainerCheck JvmCheck(uint32_t index) {
  common::ContainerCheck c;
  c.set_kind(common::ContainerCheck::KIND_JVM_PID);
  c.set_arg_index(index);
  return c;
}

common::ContainerCheck PathCheck(uint32_t index, std::vector<std::string> prefixes) {
  common::ContainerCheck c;
  c.set_kind(common::ContainerCheck::KIND_PATH_UNDER);
  c.set_arg_index(index);
  for (auto& p : prefixes) {
    c.add_prefixes(p);
  }
  return c;
}

// A check from start to end as exec makes it, with this machine standing in for the container.
CheckOutcome Check(const common::ContainerCheck& check, const std::vector<std::string>& argv) {
  auto prepared = PrepareCheck(check, argv, "pod-1/app");
  if (auto* outcome = std::get_if<CheckOutcome>(&prepared)) {
    return *outcome;
  }
  auto [status, out] = local::RunArgv(std::get<std::vector<std::string>>(prepared));
  ProbeOutput answer;
  answer.exit_code = status;
  answer.stdout_text = out;
  return JudgeCheck(check, argv, answer, "pod-1/app");
}

// --- the builders and parsers ----------------------------------------------------------------

TEST(JvmProbeArgvTest, AcceptsOnlyAStrictPid) {
  for (const char* good : {"1", "42", "4242", "4194304"}) {
    auto argv = JvmProbeArgv(good);
    ASSERT_TRUE(argv.ok()) << good;
    ASSERT_EQ(argv->size(), 5u);
    EXPECT_EQ((*argv)[0], "/bin/sh");
    EXPECT_EQ((*argv)[4], good) << "the pid is an argument of its own";
  }
  EXPECT_THAT((*JvmProbeArgv("4242"))[2], Not(HasSubstr("4242"))) << "never pasted into script";
  for (const char* bad :
       {"",      "0",    "00",   "01",   "-1",      "+1",          " 1",
        "1 ",    "1\n",  "0x10", "1e3",  "4194305", "99999999999", "1;touch /tmp/x",
        "$(id)", "`id`", "1 2",  "１２", "$$",      "self",        "/proc/1"}) {
    auto argv = JvmProbeArgv(bad);
    EXPECT_EQ(argv.status().code(), absl::StatusCode::kInvalidArgument) << "'" << bad << "'";
    EXPECT_THAT(argv.status().message(), HasSubstr("is not a process id"));
  }
}

TEST(ParseJvmProbeTest, EachVerdictHasOneExactAnswer) {
  EXPECT_EQ(*ParseJvmProbe("42", 0, "jvm 42\n"), JvmProbeVerdict::kJvm);
  EXPECT_EQ(*ParseJvmProbe("42", 1, ""), JvmProbeVerdict::kNotJvm);
  EXPECT_EQ(*ParseJvmProbe("42", 3, ""), JvmProbeVerdict::kNoProcess);
  EXPECT_EQ(*ParseJvmProbe("42", 4, ""), JvmProbeVerdict::kUnreadable);
  EXPECT_EQ(*ParseJvmProbe("42", 5, ""), JvmProbeVerdict::kNoQuitHandler);
  EXPECT_EQ(*ParseJvmProbe("42", 6, ""), JvmProbeVerdict::kThread);
  // Success must name the pid asked about, once, and nothing else.
  for (const char* bad : {"", "jvm 42", "jvm 43\n", "jvm 42\n\n", "jvm 42\njvm 42\n", " jvm 42\n",
                          "JVM 42\n", "jvm  42\n", "jvm 42\r\n"}) {
    EXPECT_FALSE(ParseJvmProbe("42", 0, bad).ok()) << "'" << bad << "'";
  }
  // A refusal with output, a usage error, a missing shell: errors, never a verdict.
  EXPECT_FALSE(ParseJvmProbe("42", 1, "jvm 42\n").ok());
  EXPECT_FALSE(ParseJvmProbe("42", 2, "").ok());
  EXPECT_FALSE(ParseJvmProbe("42", -1, "").ok());
  EXPECT_THAT(ParseJvmProbe("42", 127, "").status().message(), HasSubstr("/bin/sh"));
}

TEST(ParsePathProbeTest, AcceptsOnlyOneCanonicalAbsolutePath) {
  EXPECT_EQ(*ParsePathProbe(0, "/var/log/app/current.log\n"), "/var/log/app/current.log");
  EXPECT_EQ(*ParsePathProbe(0, "/\n"), "/");
  EXPECT_EQ(*ParsePathProbe(0, "/a b/c\n"), "/a b/c");
  // A file name in Chinese (or any text) resolves like any other.
  EXPECT_EQ(*ParsePathProbe(0, "/var/log/app/\xe6\x97\xa5\xe5\xbf\x97.log\n"),
            "/var/log/app/\xe6\x97\xa5\xe5\xbf\x97.log");
  EXPECT_EQ(*ParsePathProbe(0, "/caf\xc3\xa9\n"), "/caf\xc3\xa9");
  for (const char* bad : {"", "\n", "/a/b", "/a/b\n\n", "/a\n/b\n", "a/b\n", "./a\n", "/a//b\n",
                          "/a/./b\n", "/a/../b\n", "/a/b/\n", "/a\tb\n", "/a\rb\n", "/a\x1b[31m\n",
                          "/a\xe2\x80\xae\n", "/a\xff\n",
                          "/a\xe3\x80\x80"
                          "b\n",
                          "/\xef\xbc\x8f"
                          "etc\n"}) {
    EXPECT_FALSE(ParsePathProbe(0, bad).ok()) << "'" << absl::CHexEscape(bad) << "'";
  }
  EXPECT_FALSE(ParsePathProbe(0, absl::StrCat("/", std::string(5000, 'a'), "\n")).ok());
  EXPECT_EQ(ParsePathProbe(3, "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ParsePathProbe(6, "").status().message(), HasSubstr("readlink"));
  EXPECT_THAT(ParsePathProbe(127, "").status().message(), HasSubstr("/bin/sh"));
  EXPECT_FALSE(ParsePathProbe(1, "/a\n").ok());
}

TEST(ArgvToRunTest, TheDecisionsArgvWinsWhenSet) {
  common::Decision d;
  EXPECT_EQ(ArgvToRun(d, {"curl", "http://x"}), (std::vector<std::string>{"curl", "http://x"}));
  d.add_argv("curl");
  d.add_argv("-q");
  d.add_argv("http://x");
  EXPECT_EQ(ArgvToRun(d, {"curl", "http://x"}),
            (std::vector<std::string>{"curl", "-q", "http://x"}));
}

TEST(PrepareCheckTest, WhatCannotBeCheckedIsRefusedWithoutAProbe) {
  common::ContainerCheck unknown;
  auto o = std::get<CheckOutcome>(PrepareCheck(unknown, {"jstack", "1"}, "p/c"));
  EXPECT_EQ(o.result, Result::kError);
  EXPECT_THAT(o.reason, HasSubstr("does not know"));
  EXPECT_STREQ(CheckKindLabel(unknown), "unspecified");
  common::ContainerCheck future = JvmCheck(1);
  future.set_kind(static_cast<common::ContainerCheck::Kind>(99));
  EXPECT_EQ(std::get<CheckOutcome>(PrepareCheck(future, {"jstack", "1"}, "p/c")).result,
            Result::kError);

  o = std::get<CheckOutcome>(PrepareCheck(JvmCheck(2), {"jstack", "1"}, "p/c"));
  EXPECT_EQ(o.result, Result::kError);
  EXPECT_THAT(o.reason, HasSubstr("argument 2"));
  o = std::get<CheckOutcome>(PrepareCheck(PathCheck(5, {"/"}), {"cat", "/x"}, "p/c"));
  EXPECT_EQ(o.result, Result::kError);

  o = std::get<CheckOutcome>(PrepareCheck(JvmCheck(1), {"jstack", "1;reboot"}, "p/c"));
  EXPECT_EQ(o.result, Result::kRefused);
  EXPECT_THAT(o.reason, HasSubstr("\"1;reboot\" is not a process id"));
  EXPECT_THAT(o.reason, HasSubstr("jstack was not run"));
  o = std::get<CheckOutcome>(PrepareCheck(PathCheck(1, {"/"}), {"cat", ""}, "p/c"));
  EXPECT_EQ(o.result, Result::kRefused);

  auto probe = PrepareCheck(JvmCheck(2), {"jcmd", "-l", "77"}, "p/c");
  ASSERT_TRUE(std::holds_alternative<std::vector<std::string>>(probe));
  EXPECT_EQ(std::get<std::vector<std::string>>(probe).back(), "77");
  probe = PrepareCheck(PathCheck(1, {"/var/log"}), {"cat", "/var/log/x"}, "p/c");
  ASSERT_TRUE(std::holds_alternative<std::vector<std::string>>(probe));
  EXPECT_EQ(std::get<std::vector<std::string>>(probe).back(), "/var/log/x");
}

TEST(JudgeCheckTest, AProbeThatFailsRefusesTheCommand) {
  const std::vector<std::string> argv = {"jstack", "42"};
  CheckOutcome o = JudgeCheck(JvmCheck(1), argv, absl::DeadlineExceededError("no answer"), "p/c");
  EXPECT_EQ(o.result, Result::kError);
  EXPECT_THAT(o.reason, HasSubstr("could not be checked (no answer)"));
  ProbeOutput no_shell;
  no_shell.exit_code = 127;
  o = JudgeCheck(JvmCheck(1), argv, no_shell, "p/c");
  EXPECT_EQ(o.result, Result::kError);
  EXPECT_THAT(o.reason, HasSubstr("/bin/sh"));
  o = JudgeCheck(PathCheck(1, {"/"}), {"cat", "/x"}, no_shell, "p/c");
  EXPECT_EQ(o.result, Result::kError);
  ProbeOutput odd;
  odd.stdout_text = "/etc/shadow\n/var/log/x\n";
  o = JudgeCheck(PathCheck(1, {"/var/log"}), {"cat", "/var/log/x"}, odd, "p/c");
  EXPECT_EQ(o.result, Result::kError);
  // A prefix that is not normalised cannot widen anything.
  ProbeOutput shadow;
  shadow.stdout_text = "/etc/shadow\n";
  o = JudgeCheck(PathCheck(1, {"/var/log/../../etc", "etc"}), {"cat", "/var/log/x"}, shadow, "p/c");
  EXPECT_NE(o.result, Result::kPassed);
  EXPECT_STREQ(CheckResultLabel(o.result), "error");
}

// --- the JVM probe against real processes ----------------------------------------------------

class JvmProbeTest : public ::testing::Test {
 protected:
  // A failure here fails every test (after a failed SetUpTestSuite gtest only skips them).
  static void SetUpTestSuite() { setup_error_ = new std::string(StartJvms()); }
  void SetUp() override { ASSERT_EQ(*setup_error_, "") << "the JVMs did not start"; }

  static std::string StartJvms() {
    const std::string made = podgate::testing::MakeTempDir("podgate-jvm");
    if (made.empty()) {
      return "mkdtemp failed";
    }
    dir_ = new std::string(made);
    const std::string source = *dir_ + "/Sleeper.java";
    std::ofstream(source) << "public class Sleeper {\n"
                             "  public static void main(String[] a) throws Exception {\n"
                             "    System.err.println(\"ready\");\n"
                             "    Thread.sleep(600_000);\n"
                             "  }\n"
                             "}\n";
    if (access("/usr/bin/java", X_OK) != 0) {
      return "java is missing: tools/install-deps.sh installs openjdk-17-jdk-headless";
    }
    const std::vector<std::string> opts = {"-Xmx32m", "-XX:+UseSerialGC",
                                           "-XX:TieredStopAtLevel=1"};
    std::vector<std::string> plain = opts;
    plain.push_back(source);
    std::vector<std::string> xrs = {"-Xrs"};
    xrs.insert(xrs.end(), opts.begin(), opts.end());
    xrs.push_back(source);
    auto a = testing::Subprocess::Start("/usr/bin/java", plain);
    auto b = testing::Subprocess::Start("/usr/bin/java", xrs);
    if (!a.ok() || !b.ok()) {
      return "java did not start";
    }
    jvm_ = a->release();
    xrs_jvm_ = b->release();
    if (!jvm_->WaitForLine("ready", absl::Seconds(90)).ok() ||
        !xrs_jvm_->WaitForLine("ready", absl::Seconds(90)).ok()) {
      return "the JVMs did not get ready";
    }
    return "";
  }
  static void TearDownTestSuite() {
    delete jvm_;
    delete xrs_jvm_;
    if (dir_ != nullptr) {
      unlink((*dir_ + "/Sleeper.java").c_str());
      rmdir(dir_->c_str());
      delete dir_;
    }
    delete setup_error_;
  }

  static std::string* setup_error_;
  static std::string* dir_;
  static testing::Subprocess* jvm_;
  static testing::Subprocess* xrs_jvm_;
};
std::string* JvmProbeTest::setup_error_ = nullptr;
std::string* JvmProbeTest::dir_ = nullptr;
testing::Subprocess* JvmProbeTest::jvm_ = nullptr;
testing::Subprocess* JvmProbeTest::xrs_jvm_ = nullptr;

TEST_F(JvmProbeTest, ARealJvmIsAccepted) {
  const std::vector<std::string> argv = {"jstack", absl::StrCat(jvm_->pid())};
  CheckOutcome o = Check(JvmCheck(1), argv);
  EXPECT_EQ(o.result, Result::kPassed) << o.reason;
  EXPECT_EQ(o.argv, argv);
  EXPECT_TRUE(local::Runs(jvm_->pid()));
}

TEST_F(JvmProbeTest, AProcessThatIsNotAJvmIsRefusedAndLeftAlone) {
  const pid_t sleeper = local::StartSleep("60");
  absl::SleepFor(absl::Milliseconds(100));
  CheckOutcome o = Check(JvmCheck(1), {"jstack", absl::StrCat(sleeper)});
  EXPECT_EQ(o.result, Result::kRefused);
  EXPECT_EQ(o.reason, absl::StrCat("pid ", sleeper,
                                   " is not a Java virtual machine in pod-1/app (jstack would "
                                   "kill it); run jps to list JVMs"));
  EXPECT_TRUE(local::Alive(sleeper)) << "the probe must not signal anything";
  kill(sleeper, SIGKILL);
  waitpid(sleeper, nullptr, 0);
}

TEST_F(JvmProbeTest, AJvmThatDoesNotCatchSigquitIsRefusedAndLeftAlone) {
  CheckOutcome o = Check(JvmCheck(1), {"jmap", "-histo", absl::StrCat(xrs_jvm_->pid())});
  EXPECT_EQ(o.result, Result::kRefused) << "index 1 is -histo: not a pid";
  EXPECT_THAT(o.reason, HasSubstr("\"-histo\" is not a process id"));
  o = Check(JvmCheck(2), {"jmap", "-histo", absl::StrCat(xrs_jvm_->pid())});
  EXPECT_EQ(o.result, Result::kRefused);
  EXPECT_THAT(o.reason, HasSubstr("does not catch SIGQUIT"));
  EXPECT_THAT(o.reason, HasSubstr("jmap would kill it"));
  EXPECT_TRUE(local::Runs(xrs_jvm_->pid()));
}

TEST_F(JvmProbeTest, AMissingPidAndAThreadIdAreRefused) {
  // A pid that was just freed: a child that exited and was reaped.
  const pid_t gone = fork();
  if (gone == 0) {
    _exit(0);
  }
  waitpid(gone, nullptr, 0);
  CheckOutcome o = Check(JvmCheck(1), {"jstack", absl::StrCat(gone)});
  EXPECT_EQ(o.result, Result::kRefused);
  EXPECT_THAT(o.reason, HasSubstr(absl::StrCat("there is no process ", gone)));
  o = Check(JvmCheck(1), {"jstack", "4194304"});
  EXPECT_EQ(o.result, Result::kRefused);

  // One of the JVM's threads: /proc/<tid> exists and maps libjvm, but it is not a process.
  std::string tid;
  DIR* tasks = opendir(absl::StrCat("/proc/", jvm_->pid(), "/task").c_str());
  ASSERT_NE(tasks, nullptr);
  while (dirent* e = readdir(tasks)) {
    if (e->d_name[0] != '.' && absl::StrCat(jvm_->pid()) != e->d_name) {
      tid = e->d_name;
    }
  }
  closedir(tasks);
  ASSERT_FALSE(tid.empty());
  o = Check(JvmCheck(1), {"jstack", tid});
  EXPECT_EQ(o.result, Result::kRefused);
  EXPECT_THAT(o.reason, HasSubstr("is a thread id, not a process id"));
}

TEST_F(JvmProbeTest, HostilePidsNeverReachAShell) {
  const std::string canary = absl::StrCat(*dir_, "/canary");
  for (const std::string& bad :
       {absl::StrCat("1; touch ", canary), absl::StrCat("$(touch ", canary, ")"),
        absl::StrCat(jvm_->pid(), " ", jvm_->pid())}) {
    auto prepared = PrepareCheck(JvmCheck(1), {"jstack", bad}, "p/c");
    ASSERT_TRUE(std::holds_alternative<CheckOutcome>(prepared)) << bad;
    EXPECT_EQ(std::get<CheckOutcome>(prepared).result, Result::kRefused);
  }
  // Even handed to the script directly, the pid is data.
  auto [status, out] = local::RunArgv(
      {"/bin/sh", "-c", (*JvmProbeArgv("1"))[2], "x", absl::StrCat("$(touch ", canary, ")")});
  EXPECT_EQ(status, 2);
  EXPECT_NE(access(canary.c_str(), F_OK), 0) << "the probe executed its input";
}

// --- the path probe against real files -------------------------------------------------------

class PathProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string made = podgate::testing::MakeTempDir("podgate-path");
    ASSERT_NE(made, "");
    char* real = realpath(made.c_str(), nullptr);
    root_ = real;
    free(real);
    allowed_ = root_ + "/logs";
    ASSERT_EQ(mkdir(allowed_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir((root_ + "/logs2").c_str(), 0755), 0);
    std::ofstream(allowed_ + "/ok.log") << "fine\n";
    std::ofstream(root_ + "/secret") << "secret\n";
    std::ofstream(root_ + "/logs2/x.log") << "sibling\n";
    ASSERT_EQ(symlink("../secret", (allowed_ + "/link-to-outside").c_str()), 0);
    ASSERT_EQ(symlink("ok.log", (allowed_ + "/link-inside").c_str()), 0);
    ASSERT_EQ(symlink("nowhere", (allowed_ + "/dangling").c_str()), 0);
    ASSERT_EQ(symlink("..", (allowed_ + "/up").c_str()), 0);
    ASSERT_EQ(symlink("../logs2/x.log", (allowed_ + "/sibling").c_str()), 0);
  }
  void TearDown() override {
    for (const char* f :
         {"/logs/ok.log", "/secret", "/logs2/x.log", "/logs/link-to-outside", "/logs/link-inside",
          "/logs/dangling", "/logs/up", "/logs/sibling", "/canary"}) {
      unlink((root_ + f).c_str());
    }
    rmdir((root_ + "/logs2").c_str());
    rmdir(allowed_.c_str());
    rmdir(root_.c_str());
  }

  CheckOutcome Cat(const std::string& path) {
    return Check(PathCheck(2, {"/nonexistent/prefix", allowed_}), {"cat", "--", path});
  }

  std::string root_;
  std::string allowed_;
};

TEST_F(PathProbeTest, AFileUnderThePrefixIsAcceptedAsItIs) {
  CheckOutcome o = Cat(allowed_ + "/ok.log");
  ASSERT_EQ(o.result, Result::kPassed) << o.reason;
  EXPECT_EQ(o.argv, (std::vector<std::string>{"cat", "--", allowed_ + "/ok.log"}));
  // Spelled with "//" and "/./", it runs as the canonical path.
  o = Cat(root_ + "//logs/./ok.log");
  ASSERT_EQ(o.result, Result::kPassed) << o.reason;
  EXPECT_EQ(o.argv[2], allowed_ + "/ok.log");
}

TEST_F(PathProbeTest, ALinkStayingInsideIsAcceptedAndRunsResolved) {
  CheckOutcome o = Cat(allowed_ + "/link-inside");
  ASSERT_EQ(o.result, Result::kPassed) << o.reason;
  EXPECT_EQ(o.argv, (std::vector<std::string>{"cat", "--", allowed_ + "/ok.log"}));
}

TEST_F(PathProbeTest, ALinkLeadingOutsideIsRefused) {
  CheckOutcome o = Cat(allowed_ + "/link-to-outside");
  EXPECT_EQ(o.result, Result::kRefused);
  EXPECT_EQ(o.reason, absl::StrCat(allowed_, "/link-to-outside resolves to ", root_,
                                   "/secret in pod-1/app, which is not under /nonexistent/prefix "
                                   "or ",
                                   allowed_));
  // A link to a directory on the way, and a sibling whose name merely starts like the prefix.
  EXPECT_EQ(Cat(allowed_ + "/up/secret").result, Result::kRefused);
  EXPECT_EQ(Cat(allowed_ + "/sibling").result, Result::kRefused);
  EXPECT_THAT(Cat(allowed_ + "/sibling").reason, HasSubstr(root_ + "/logs2/x.log"));
  // The way back in through the same link is fine: only where it lands counts.
  EXPECT_EQ(Cat(allowed_ + "/up/logs/ok.log").result, Result::kPassed);
}

TEST_F(PathProbeTest, MissingFilesAndDanglingLinksAreRefused) {
  for (const std::string& p : {allowed_ + "/missing.log", allowed_ + "/dangling",
                               allowed_ + "/missing/deeper.log", root_ + "/nothing"}) {
    CheckOutcome o = Cat(p);
    EXPECT_EQ(o.result, Result::kRefused) << p;
    EXPECT_EQ(o.reason, absl::StrCat(p,
                                     " does not exist in pod-1/app (or the container's user "
                                     "cannot reach it)"));
  }
}

TEST_F(PathProbeTest, ThePathIsDataNotCode) {
  const std::string canary = root_ + "/canary";
  for (const std::string& p :
       {absl::StrCat(allowed_, "/$(touch ", canary, ")"), absl::StrCat("`touch ", canary, "`"),
        std::string("-e"), std::string("="), std::string("!"), std::string("--help")}) {
    CheckOutcome o = Cat(p);
    EXPECT_EQ(o.result, Result::kRefused) << p;
    EXPECT_THAT(o.reason, HasSubstr("does not exist")) << p;
  }
  EXPECT_NE(access(canary.c_str(), F_OK), 0) << "the probe executed its input";
}

}  // namespace
}  // namespace podgate::exec
