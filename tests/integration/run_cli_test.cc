// podgate-run as kubectl exec's users type it, end to end: the binary runs as a child process
// with its own stdin, stdout and stderr pipes against a real stack (kubesim, whose containers are
// real processes, podgate-policy, podgate-audit, podgate-exec). Covered: -n/-c and the pod as a
// positional, -i forwarding standard input and closing the command's at its end (5 MiB whole,
// /dev/null, a command that stops reading), the command's stdin closed at once without -i, the
// token from --token_file, PODGATE_TOKEN or --token (warned and scrubbed from the process list),
// never printed, and the exit statuses.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/loopback.h"
#include "support/stack.h"
#include "support/test_pki.h"

extern char** environ;

namespace podgate {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kCluster[] = R"(namespaces:
  - name: team
pods:
  - name: app-1
    namespace: team
    annotations: {kubectl.kubernetes.io/default-container: main}
    containers:
      - name: main
        image: demo/app:1
      - name: sidecar
        image: demo/sidecar:1
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec, namespaces]
    namespaces: ["*"]
)";

// devs may count bytes (wc -c), print (echo), read the start of stdin (head -c N) and print the
// working directory; the commands' time limit is long enough that a command waiting for its
// stdin would end with TERMINATION_TIME_LIMIT (exit 130) well inside the test's patience.
constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
defaults: {timeLimit: 20s, outputLimitBytes: 1048576}
rules:
  - id: devs-wc
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    command:
      program: wc
      flags:
        - {name: -c}
  - id: devs-echo
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    command:
      program: echo
      args:
        - {name: word, type: regex, pattern: "[a-z0-9-]+", optional: true, repeat: true}
  - id: devs-head
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    command:
      program: head
      flags:
        - {name: -c, value: {type: integer}}
  - id: devs-pwd
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    command:
      program: pwd
  - id: devs-cat
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    command:
      program: cat
  - id: devs-ls
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    command:
      program: ls
      args:
        - {name: dir, type: regex, pattern: "/[a-z/]+"}
)";

// A finished podgate-run.
struct Ran {
  int status = -1;
  std::string out;
  std::string err;
};

// podgate-run as a child with three pipes of its own (testing::Subprocess keeps only stderr):
// stdin is the fd given (or /dev/null), stdout and stderr are read on threads.
class Cli {
 public:
  // `stdin_fd` becomes the child's fd 0 (-1: /dev/null). The environment is the test's without
  // PODGATE_* (so no flag leaks in), plus `env`.
  static std::unique_ptr<Cli> Start(const std::vector<std::string>& args,
                                    const std::map<std::string, std::string>& env,
                                    int stdin_fd = -1) {
    int out[2];
    int err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe: " << std::strerror(errno);
      return nullptr;
    }
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      if (!absl::StartsWith(*e, "PODGATE_")) {
        env_strings.emplace_back(*e);
      }
    }
    for (const auto& [k, v] : env) {
      env_strings.push_back(absl::StrCat(k, "=", v));
    }
    std::vector<char*> envp;
    for (std::string& s : env_strings) {
      envp.push_back(s.data());
    }
    envp.push_back(nullptr);
    std::vector<std::string> argv_strings = {PODGATE_RUN_BIN};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& s : argv_strings) {
      argv.push_back(s.data());
    }
    argv.push_back(nullptr);
    const int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    const pid_t pid = fork();
    if (pid == 0) {
      dup2(stdin_fd >= 0 ? stdin_fd : devnull, STDIN_FILENO);
      dup2(out[1], STDOUT_FILENO);
      dup2(err[1], STDERR_FILENO);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    close(devnull);
    close(out[1]);
    close(err[1]);
    std::unique_ptr<Cli> cli(new Cli());
    cli->pid_ = pid;
    cli->out_reader_ = std::thread([c = cli.get(), fd = out[0]] { c->Drain(fd, &c->out_); });
    cli->err_reader_ = std::thread([c = cli.get(), fd = err[0]] { c->Drain(fd, &c->err_); });
    return cli;
  }

  ~Cli() {
    if (!reaped_) {
      kill(pid_, SIGKILL);
      (void)Finish(absl::Seconds(10));
    }
  }

  pid_t pid() const { return pid_; }

  // Waits until stdout holds `needle`.
  bool WaitForOutput(const std::string& needle, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto found = [&] { return absl::StrContains(out_, needle); };
    return mu_.AwaitWithTimeout(absl::Condition(&found), timeout);
  }

  // Waits for the exit (SIGKILL past `timeout`, status -1) and for both streams' ends.
  Ran Finish(absl::Duration timeout = absl::Seconds(60)) {
    Ran ran;
    const absl::Time deadline = absl::Now() + timeout;
    int wstatus = 0;
    while (true) {
      const pid_t r = waitpid(pid_, &wstatus, WNOHANG);
      if (r == pid_) {
        ran.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
        break;
      }
      if (absl::Now() > deadline) {
        ADD_FAILURE() << "podgate-run did not finish within " << timeout;
        kill(pid_, SIGKILL);
        waitpid(pid_, &wstatus, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    reaped_ = true;
    if (out_reader_.joinable()) {
      out_reader_.join();
    }
    if (err_reader_.joinable()) {
      err_reader_.join();
    }
    absl::MutexLock lock(&mu_);
    ran.out = out_;
    ran.err = err_;
    return ran;
  }

 private:
  Cli() = default;

  void Drain(int fd, std::string* into) {
    char buf[65536];
    while (true) {
      const ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        break;
      }
      absl::MutexLock lock(&mu_);
      into->append(buf, static_cast<size_t>(n));
    }
    close(fd);
  }

  pid_t pid_ = -1;
  bool reaped_ = false;
  absl::Mutex mu_;
  std::string out_ ABSL_GUARDED_BY(mu_);
  std::string err_ ABSL_GUARDED_BY(mu_);
  std::thread out_reader_;
  std::thread err_reader_;
};

// A pipe whose write end the test keeps: what it writes (on a thread, so a large input does not
// block the test) is what podgate-run reads.
class InputPipe {
 public:
  InputPipe() {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    read_ = fds[0];
    write_ = fds[1];
  }
  ~InputPipe() {
    if (writer_.joinable()) {
      writer_.join();
    }
    CloseRead();
    if (write_ >= 0) {
      close(write_);
    }
  }
  int read_end() const { return read_; }
  // Once the child has it.
  void CloseRead() {
    if (read_ >= 0) {
      close(read_);
      read_ = -1;
    }
  }
  // Writes `data` on a thread, then closes the write end when `close_after`.
  void Feed(std::string data, bool close_after) {
    writer_ = std::thread([this, data = std::move(data), close_after] {
      size_t off = 0;
      while (off < data.size()) {
        const ssize_t n = write(write_, data.data() + off, data.size() - off);
        if (n < 0 && errno == EINTR) {
          continue;
        }
        if (n <= 0) {
          break;  // the reader went away (a command that stopped reading)
        }
        off += static_cast<size_t>(n);
      }
      if (close_after) {
        close(write_);
        write_ = -1;
      }
    });
  }
  void CloseWrite() {
    if (writer_.joinable()) {
      writer_.join();
    }
    if (write_ >= 0) {
      close(write_);
      write_ = -1;
    }
  }

 private:
  int read_ = -1;
  int write_ = -1;
  std::thread writer_;
};

class RunCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    signal(SIGPIPE, SIG_IGN);  // a command that stops reading closes the pipe under a writer
    testing::StackOptions options;
    options.binaries = {PODGATE_KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN,
                        PODGATE_EXEC_BIN};
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    auto stack = testing::Stack::Start(options);
    if (!stack.ok()) {
      setup_error_ = new std::string(stack.status().ToString());
      return;
    }
    stack_ = stack->release();
    config_home_ = new std::string(testing::MakeTempDir("podgate-run-cli"));
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
    if (config_home_ != nullptr) {
      std::filesystem::remove_all(*config_home_);
    }
  }
  void SetUp() override {
    ASSERT_EQ(setup_error_, nullptr) << "the stack did not start: " << *setup_error_;
  }

  static std::string Dev() { return stack_->Token("dave", {"devs"}); }

  // The environment of a run: an empty configuration home (no cached sign-in), plus `env`.
  static std::map<std::string, std::string> Env(std::map<std::string, std::string> env = {}) {
    env["XDG_CONFIG_HOME"] = *config_home_;
    return env;
  }

  // podgate-run `args` (after --exec_address) with PODGATE_TOKEN = dave's token.
  static std::unique_ptr<Cli> Start(std::vector<std::string> args, int stdin_fd = -1) {
    args.insert(args.begin(), absl::StrCat("--exec_address=127.0.0.1:", stack_->exec_port()));
    return Cli::Start(args, Env({{"PODGATE_TOKEN", Dev()}}), stdin_fd);
  }

  static Ran Run(std::vector<std::string> args, int stdin_fd = -1) {
    std::unique_ptr<Cli> cli = Start(std::move(args), stdin_fd);
    return cli == nullptr ? Ran{} : cli->Finish();
  }

  // podgate-run with `args` and `env` only (no token unless they give one).
  static Ran RunWith(std::vector<std::string> args, std::map<std::string, std::string> env) {
    args.insert(args.begin(), absl::StrCat("--exec_address=127.0.0.1:", stack_->exec_port()));
    std::unique_ptr<Cli> cli = Cli::Start(args, Env(std::move(env)));
    return cli == nullptr ? Ran{} : cli->Finish();
  }

  static std::string WriteFile(const std::string& name, const std::string& content) {
    const std::string path = *config_home_ + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }

  static inline testing::Stack* stack_ = nullptr;
  static inline std::string* setup_error_ = nullptr;
  static inline std::string* config_home_ = nullptr;
};

// --- kubectl's flags ---------------------------------------------------------------------------

TEST_F(RunCliTest, KubectlsShortFlagsAndThePositionalPodReachTheContainerNamed) {
  Ran ran = Run({"-n", "team", "-c", "sidecar", "app-1", "--", "pwd"});
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, stack_->ContainerDir("team", "app-1", "sidecar") + "\n");
  // Without -c, the pod's default container; the other spellings of the same flags.
  ran = Run({"--namespace", "team", "pod/app-1", "--", "pwd"});
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, stack_->ContainerDir("team", "app-1", "main") + "\n");
  ran = Run({"-nteam", "--container=sidecar", "app-1", "--", "pwd"});
  EXPECT_EQ(ran.out, stack_->ContainerDir("team", "app-1", "sidecar") + "\n") << ran.err;
  ran = Run({"-n=team", "--container", "main", "--pod=app-1", "--", "pwd"});
  EXPECT_EQ(ran.out, stack_->ContainerDir("team", "app-1", "main") + "\n") << ran.err;
}

TEST_F(RunCliTest, FlagsAfterTheSeparatorAreTheCommands) {
  // `-c` after `--` is wc's, not podgate-run's container.
  InputPipe in;
  in.Feed("abc", true);
  std::unique_ptr<Cli> cli = Start({"-i", "-n", "team", "app-1", "--", "wc", "-c"}, in.read_end());
  ASSERT_NE(cli, nullptr);
  in.CloseRead();
  Ran ran = cli->Finish();
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, "3\n");
}

TEST_F(RunCliTest, UsageErrorsExitTwoWithOneLine) {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {{"-n"}, "podgate-run: -n needs a value: -n NAMESPACE\n"},
           {{"-n", "team", "app-1", "-c"}, "podgate-run: -c needs a value: -c CONTAINER\n"},
           {{"-x", "app-1", "--", "pwd"}, "podgate-run: unknown short flag \"-x\""},
           {{"-it", "app-1", "--", "sh"}, "podgate-run: -t: podgate-run has no terminal mode"},
           {{"-n", "team", "app-1", "pwd"}, "podgate-run: \"pwd\": the command goes after --"},
           {{"-n", "team", "app-1"}, "podgate-run: no command after the pod \"app-1\""},
           {{"-n", "team", "app-1", "--"}, "podgate-run: a command after -- "},
           {{"app-1", "--", "pwd"}, "podgate-run: a namespace (-n NAMESPACE) is required\n"},
           {{"-n", "team", "--", "pwd"}, "podgate-run: a pod (podgate-run [flags] POD"},
           {{"-n", "team", "--pod=app-2", "app-1", "--", "pwd"}, "podgate-run: two pods"},
           {{"-n", "Team", "app-1", "--", "pwd"}, "podgate-run: namespace \"Team\""},
           {{"--timeout=0s", "-n", "team", "app-1", "--", "pwd"},
            "podgate-run: --timeout: must be more than 0\n"},
           {{"--connect_timeout=-1s", "-n", "team", "app-1", "--", "pwd"},
            "podgate-run: --connect_timeout: must be 0 or more\n"},
       }) {
    Ran ran = Run(c.args);
    EXPECT_EQ(ran.status, 2) << c.args[0] << ": " << ran.err;
    EXPECT_THAT(ran.err, StartsWith(c.says)) << c.args[0];
    EXPECT_EQ(std::count(ran.err.begin(), ran.err.end(), '\n'), 1) << ran.err;
    EXPECT_EQ(ran.out, "");
  }
}

// An exec that is not there: podgate-run tries again until --connect_timeout, then exits 125
// with the connection's reason in one line.
TEST_F(RunCliTest, AnExecThatIsNotThereEndsTheRunAfterConnectTimeoutSayingWhy) {
  const absl::Time start = absl::Now();
  std::unique_ptr<Cli> cli =
      Cli::Start({absl::StrCat("--exec_address=127.0.0.1:", testing::UnusedLoopbackPort()),
                  "--connect_timeout=1500ms", "-n", "team", "app-1", "--", "pwd"},
                 Env({{"PODGATE_TOKEN", Dev()}}));
  ASSERT_NE(cli, nullptr);
  Ran ran = cli->Finish();
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(ran.status, 125) << ran.err;
  EXPECT_THAT(ran.err, HasSubstr("Connection refused"));
  EXPECT_EQ(std::count(ran.err.begin(), ran.err.end(), '\n'), 1) << ran.err;
  EXPECT_GE(took, absl::Milliseconds(1500));
  EXPECT_LT(took, absl::Seconds(30));
}

// --- standard input ----------------------------------------------------------------------------

// Without -i the command reads end of file at once, even while podgate-run's own stdin stays
// open: `wc -c` prints 0 and exits 0 (had it waited for input, its 20 s time limit would have
// stopped it: exit 130).
TEST_F(RunCliTest, WithoutStdinTheCommandsStdinIsClosedAtOnce) {
  InputPipe in;  // never written, never closed while podgate-run runs
  std::unique_ptr<Cli> cli = Start({"-n", "team", "app-1", "--", "wc", "-c"}, in.read_end());
  ASSERT_NE(cli, nullptr);
  in.CloseRead();
  Ran ran = cli->Finish();
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, "0\n");
  EXPECT_EQ(ran.err, "");
}

TEST_F(RunCliTest, StdinIsForwardedAndItsEndClosesTheCommands) {
  InputPipe in;
  in.Feed("hello\n", true);
  std::unique_ptr<Cli> cli = Start({"-i", "-n", "team", "app-1", "--", "wc", "-c"}, in.read_end());
  ASSERT_NE(cli, nullptr);
  in.CloseRead();
  Ran ran = cli->Finish();
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, "6\n");
  // --stdin is -i.
  InputPipe again;
  again.Feed("hello\n", true);
  cli = Start({"--stdin", "-n", "team", "app-1", "--", "cat"}, again.read_end());
  ASSERT_NE(cli, nullptr);
  again.CloseRead();
  ran = cli->Finish();
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, "hello\n");
}

// 5 MiB through -i, faster than the pod can take it: flow control paces podgate-run, nothing is
// lost, and the end of the input ends the command.
TEST_F(RunCliTest, LargeStdinArrivesWhole) {
  constexpr size_t kBytes = size_t{5} << 20;
  std::string data(kBytes, '\0');
  for (size_t i = 0; i < kBytes; ++i) {
    data[i] = static_cast<char>('a' + i % 26);
  }
  InputPipe in;
  in.Feed(std::move(data), true);
  std::unique_ptr<Cli> cli = Start({"-i", "-n", "team", "app-1", "--", "wc", "-c"}, in.read_end());
  ASSERT_NE(cli, nullptr);
  in.CloseRead();
  Ran ran = cli->Finish(absl::Seconds(90));
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, absl::StrCat(kBytes, "\n"));
}

TEST_F(RunCliTest, StdinFromDevNullEndsTheCommand) {
  Ran ran = Run({"-i", "-n", "team", "app-1", "--", "wc", "-c"});  // stdin: /dev/null
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, "0\n");
  // A regular file.
  const int fd = open(WriteFile("input", "four").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ran = Run({"-i", "-n", "team", "app-1", "--", "wc", "-c"}, fd);
  close(fd);
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, "4\n");
}

// A command that ends before its input does (head -c 5 of an input that never ends):
// podgate-run stops forwarding and exits with the command's status.
TEST_F(RunCliTest, ACommandThatStopsReadingEndsTheRun) {
  InputPipe in;
  in.Feed(std::string(size_t{2} << 20, 'z'), false);  // then stays open
  std::unique_ptr<Cli> cli =
      Start({"-i", "-n", "team", "app-1", "--", "head", "-c", "5"}, in.read_end());
  ASSERT_NE(cli, nullptr);
  in.CloseRead();
  Ran ran = cli->Finish();
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, "zzzzz");
  in.CloseWrite();
}

// Ctrl+C (SIGINT) while the command runs: exec interrupts it, podgate-run says so and exits 130.
TEST_F(RunCliTest, SigintInterruptsTheRemoteCommand) {
  InputPipe in;
  std::unique_ptr<Cli> cli = Start({"-i", "-n", "team", "app-1", "--", "cat"}, in.read_end());
  ASSERT_NE(cli, nullptr);
  in.CloseRead();
  in.Feed("ping\n", false);
  ASSERT_TRUE(cli->WaitForOutput("ping", absl::Seconds(30)));
  kill(cli->pid(), SIGINT);
  Ran ran = cli->Finish();
  EXPECT_EQ(ran.status, 130) << ran.err;
  EXPECT_THAT(ran.err, HasSubstr("interrupting the command"));
  EXPECT_THAT(ran.err, HasSubstr("stopped (TERMINATION_INTERRUPTED): interrupted"));
  in.CloseWrite();
}

// --- the token -----------------------------------------------------------------------------------

TEST_F(RunCliTest, TheTokenComesFromAFileOrTheEnvironmentWithoutAWarning) {
  const std::string file = WriteFile("token", Dev() + "\n");
  Ran ran = RunWith({"--token_file=" + file, "-n", "team", "app-1", "--", "echo", "file"}, {});
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, "file\n");
  EXPECT_EQ(ran.err, "");
  ran = RunWith({"--token_file", file, "-n", "team", "app-1", "--", "echo", "spaced"}, {});
  EXPECT_EQ(ran.out, "spaced\n") << ran.err;
  ran = RunWith({"-n", "team", "app-1", "--", "echo", "env"}, {{"PODGATE_TOKEN_FILE", file}});
  EXPECT_EQ(ran.out, "env\n") << ran.err;
  ran = RunWith({"-n", "team", "app-1", "--", "echo", "variable"}, {{"PODGATE_TOKEN", Dev()}});
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, "variable\n");
  EXPECT_EQ(ran.err, "");
  // The command line wins over the environment.
  ran = RunWith({"--token_file=" + file, "-n", "team", "app-1", "--", "echo", "wins"},
                {{"PODGATE_TOKEN", "not-a-token"}});
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, "wins\n");
}

TEST_F(RunCliTest, ConflictingOrEmptyTokenSourcesAreRefused) {
  const std::string file = WriteFile("token2", Dev());
  Ran ran = RunWith({"--token_file=" + file, "--token=x", "-n", "team", "app-1", "--", "echo"}, {});
  EXPECT_EQ(ran.status, 2);
  EXPECT_THAT(ran.err, HasSubstr("give --token_file or --token, not both"));
  ran = RunWith({"-n", "team", "app-1", "--", "echo"},
                {{"PODGATE_TOKEN", Dev()}, {"PODGATE_TOKEN_FILE", file}});
  EXPECT_EQ(ran.status, 2);
  EXPECT_THAT(ran.err, HasSubstr("PODGATE_TOKEN and PODGATE_TOKEN_FILE are both set"));
  const std::string empty = WriteFile("empty", "\n");
  ran = RunWith({"--token_file=" + empty, "-n", "team", "app-1", "--", "echo"}, {});
  EXPECT_EQ(ran.status, 125);
  EXPECT_EQ(ran.err, absl::StrCat("podgate-run: the token file ", empty,
                                  " is empty; it should hold the token\n"));
  ran = RunWith({"--token_file=" + *config_home_ + "/missing", "-n", "team", "app-1", "--", "echo"},
                {});
  EXPECT_EQ(ran.status, 125);
  EXPECT_THAT(ran.err, HasSubstr("/missing: No such file or directory"));
  // No token anywhere and no sign-in cached.
  ran = RunWith({"-n", "team", "app-1", "--", "echo"}, {});
  EXPECT_EQ(ran.status, 125);
  EXPECT_THAT(ran.err,
              HasSubstr("run podgate-run login, or give --token_file=PATH or PODGATE_TOKEN"));
}

// --token still works, but says that `ps` shows it, and overwrites it in the process's argv
// so that `ps` stops showing it once podgate-run has started.
TEST_F(RunCliTest, ATokenOnTheCommandLineWorksWarnsAndIsScrubbedFromTheProcessList) {
  const std::string token = Dev();
  InputPipe in;
  std::unique_ptr<Cli> cli =
      Cli::Start({absl::StrCat("--exec_address=127.0.0.1:", stack_->exec_port()),
                  "--token=" + token, "-i", "-n", "team", "app-1", "--", "cat"},
                 Env(), in.read_end());
  ASSERT_NE(cli, nullptr);
  in.CloseRead();
  in.Feed("ping\n", false);
  ASSERT_TRUE(cli->WaitForOutput("ping", absl::Seconds(30)));
  std::ifstream cmdline(absl::StrCat("/proc/", cli->pid(), "/cmdline"), std::ios::binary);
  std::stringstream seen;
  seen << cmdline.rdbuf();
  EXPECT_THAT(seen.str(), Not(HasSubstr(token.substr(0, 20))));
  EXPECT_THAT(seen.str(), HasSubstr("--token=****"));
  in.CloseWrite();
  Ran ran = cli->Finish();
  EXPECT_EQ(ran.status, 0) << ran.err;
  EXPECT_EQ(ran.out, "ping\n");
  EXPECT_THAT(ran.err, HasSubstr("warning: a token on the command line is visible"));
  EXPECT_THAT(ran.err, HasSubstr("--token_file=PATH or PODGATE_TOKEN"));
  EXPECT_THAT(ran.err, Not(HasSubstr(token)));
}

// A token exec refuses is never repeated: not from a file, the environment or the command line.
TEST_F(RunCliTest, ARefusedTokenIsNeverPrinted) {
  const std::string bad = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.SECRETSIGNATUREzz";
  const std::string file = WriteFile("bad", bad);
  for (const auto& [args, env] :
       std::vector<std::pair<std::vector<std::string>, std::map<std::string, std::string>>>{
           {{"--token_file=" + file}, {}},
           {{}, {{"PODGATE_TOKEN", bad}}},
           {{"--token=" + bad}, {}},
           {{"--token", bad}, {}},
       }) {
    std::vector<std::string> argv = args;
    argv.insert(argv.end(), {"-n", "team", "app-1", "--", "echo", "x"});
    Ran ran = RunWith(argv, env);
    EXPECT_EQ(ran.status, 125) << ran.err;
    EXPECT_THAT(ran.err, HasSubstr("credential refused"));
    EXPECT_THAT(ran.err, Not(HasSubstr("SECRETSIGNATURE")));
    EXPECT_THAT(ran.err, Not(HasSubstr("eyJzdWIiOiJtYWxsb3J5In0")));
    EXPECT_EQ(ran.out, "");
  }
}

// --- exit statuses -------------------------------------------------------------------------------

TEST_F(RunCliTest, TheExitStatusIsTheCommandsOrSaysWhatStoppedIt) {
  // ls of a missing directory exits 2 (coreutils), with its own stderr.
  Ran ran = Run({"-n", "team", "app-1", "--", "ls", "/no/such/dir"});
  EXPECT_EQ(ran.status, 2) << ran.err;
  EXPECT_THAT(ran.err, HasSubstr("/no/such/dir"));
  EXPECT_THAT(ran.err, Not(HasSubstr("podgate-run")));
  EXPECT_EQ(ran.out, "");
  ran = Run({"-n", "team", "app-1", "--", "wc", "-c", "/no/such/file"});
  EXPECT_EQ(ran.status, 126) << ran.err;  // devs-wc takes no file argument: refused
  EXPECT_THAT(ran.err, HasSubstr("podgate-run: refused by rule"));
  ran = Run({"-n", "team", "app-1", "--", "head", "-c", "1", "/etc/hostname"});
  EXPECT_EQ(ran.status, 126) << ran.err;  // devs-head reads stdin only
  ran = Run({"-n", "team", "no-such-pod", "--", "pwd"});
  EXPECT_EQ(ran.status, 125);
  EXPECT_THAT(ran.err, HasSubstr("no such target"));
  EXPECT_EQ(std::count(ran.err.begin(), ran.err.end(), '\n'), 1) << ran.err;
}

}  // namespace
}  // namespace podgate
