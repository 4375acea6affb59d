#include "process.h"

#include <fcntl.h>
#include <grp.h>
#include <pty.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace podgate::kubesim {
namespace {

// Only async-signal-safe calls between fork and exec: write, open, dup2, _exit...
void WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) {
        continue;
      }
      return;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
}

void WriteStr(int fd, const char* s) { WriteAll(fd, s, strlen(s)); }

[[noreturn]] void ChildFail(const char* what, int err, int code) {
  WriteStr(2, "kubesim: ");
  WriteStr(2, what);
  WriteStr(2, ": ");
  WriteStr(2, strerror(err));
  WriteStr(2, "\n");
  _exit(code);
}

bool WriteFile(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  size_t len = strlen(text);
  bool ok = write(fd, text, len) == static_cast<ssize_t>(len);
  close(fd);
  return ok;
}

// Resolves argv[0] against the container's PATH before forking (no allocation after fork).
std::string ResolveExecutable(const std::string& name,
                              const std::vector<std::pair<std::string, std::string>>& env) {
  if (name.find('/') != std::string::npos) {
    return name;
  }
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& [k, v] : env) {
    if (k == "PATH") {
      path = v;
    }
  }
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", name);
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      return candidate;
    }
  }
  return "";
}

}  // namespace

bool CanSwitchUser() { return geteuid() == 0; }

absl::StatusOr<Process> SpawnProcess(const ProcessSpec& spec) {
  if (spec.argv.empty()) {
    return absl::InvalidArgumentError("empty command");
  }
  // Everything the child needs is prepared here, before fork.
  std::string exe = ResolveExecutable(spec.argv[0], spec.env);
  std::string not_found =
      absl::StrCat("exec: \"", spec.argv[0], "\": executable file not found in $PATH\n");
  std::vector<char*> argv;
  for (const std::string& a : spec.argv) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : spec.env) {
    env_strings.push_back(absl::StrCat(k, "=", v));
  }
  std::vector<char*> envp;
  for (std::string& e : env_strings) {
    envp.push_back(e.data());
  }
  envp.push_back(nullptr);
  std::string uid_map = absl::StrCat("0 ", geteuid(), " 1\n");
  std::string gid_map = absl::StrCat("0 ", getegid(), " 1\n");
  bool switch_user = !spec.root && CanSwitchUser();
  auto uid = static_cast<uid_t>(spec.uid);
  auto gid = static_cast<gid_t>(spec.uid);

  int in_pipe[2] = {-1, -1};
  int out_pipe[2] = {-1, -1};
  int err_pipe[2] = {-1, -1};
  int master = -1;
  int slave = -1;
  int out_file = -1;
  auto close_all = [&] {
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1],
                   master, slave, out_file}) {
      if (fd >= 0) {
        close(fd);
      }
    }
  };
  if (spec.tty) {
    if (openpty(&master, &slave, nullptr, nullptr, nullptr) != 0) {
      return absl::ResourceExhaustedError(absl::StrCat("openpty: ", strerror(errno)));
    }
    fcntl(master, F_SETFD, FD_CLOEXEC);
    fcntl(slave, F_SETFD, FD_CLOEXEC);
  } else if (!spec.output_file.empty()) {
    out_file = open(spec.output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out_file < 0) {
      return absl::InternalError(absl::StrCat("open ", spec.output_file, ": ", strerror(errno)));
    }
  } else {
    if ((spec.stdin && pipe2(in_pipe, O_CLOEXEC) != 0) || pipe2(out_pipe, O_CLOEXEC) != 0 ||
        pipe2(err_pipe, O_CLOEXEC) != 0) {
      int err = errno;
      close_all();
      return absl::ResourceExhaustedError(absl::StrCat("pipe: ", strerror(err)));
    }
  }

  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close_all();
    return absl::ResourceExhaustedError(absl::StrCat("fork: ", strerror(err)));
  }
  if (pid == 0) {
    // The child: a new session (so the pty becomes its controlling terminal and signals from
    // the line discipline reach it), its streams, its identity, its directory, then exec.
    // Like a container runtime, the process starts with every signal unblocked and at its
    // default action (the actions are reset just before execve, below).
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    setsid();
    int devnull = open("/dev/null", O_RDWR);
    if (spec.tty) {
      ioctl(slave, TIOCSCTTY, 0);
      dup2(spec.stdin ? slave : devnull, 0);
      dup2(slave, 1);
      dup2(slave, 2);
    } else if (out_file >= 0) {
      dup2(devnull, 0);
      dup2(out_file, 1);
      dup2(out_file, 2);
    } else {
      dup2(spec.stdin ? in_pipe[0] : devnull, 0);
      dup2(out_pipe[1], 1);
      dup2(err_pipe[1], 2);
    }
    // No descriptor of kubesim leaks into the container's processes.
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
      for (int fd = 3; fd < 1024; ++fd) {
        close(fd);
      }
    }
    if (spec.root) {
      if (unshare(CLONE_NEWUSER) != 0) {
        ChildFail("unshare(CLONE_NEWUSER)", errno, 126);
      }
      if (!WriteFile("/proc/self/setgroups", "deny") ||
          !WriteFile("/proc/self/uid_map", uid_map.c_str()) ||
          !WriteFile("/proc/self/gid_map", gid_map.c_str())) {
        ChildFail("user namespace mapping", errno, 126);
      }
    } else if (switch_user) {
      if (setgroups(0, nullptr) != 0 || setresgid(gid, gid, gid) != 0 ||
          setresuid(uid, uid, uid) != 0) {
        ChildFail("switch user", errno, 126);
      }
    }
    if (!spec.working_dir.empty() && chdir(spec.working_dir.c_str()) != 0) {
      ChildFail("chdir", errno, 126);
    }
    if (exe.empty()) {
      WriteStr(2, not_found.c_str());
      _exit(127);
    }
    // Every signal at its default action: an ignored SIGINT (what a shell gives a job it starts
    // in the background) survives exec, and Ctrl+C on the pty would then not interrupt the
    // command. The kernel's own call resets glibc's internal signals too (32 and 33, which
    // signal() refuses), and it comes last: setresuid above broadcasts signal 33 to every
    // thread of a multithreaded process, and a forked child can have threads (ThreadSanitizer
    // starts its background thread in it), so with 33 already at its default action the
    // switch of user would kill the child.
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig != SIGKILL && sig != SIGSTOP) {
        SetKernelSignalAction(sig, SIG_DFL);
      }
    }
    execve(exe.c_str(), argv.data(), envp.data());
    int err = errno;
    WriteStr(2, "exec: \"");
    WriteStr(2, argv[0]);
    WriteStr(2, "\": ");
    WriteStr(2, strerror(err));
    WriteStr(2, "\n");
    _exit(err == ENOENT ? 127 : 126);
  }

  Process p;
  p.pid = pid;
  p.pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (p.pidfd < 0) {
    int err = errno;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    close_all();
    return absl::InternalError(absl::StrCat("pidfd_open: ", strerror(err)));
  }
  fcntl(p.pidfd, F_SETFD, FD_CLOEXEC);
  if (spec.tty) {
    close(slave);
    p.stdout_fd = master;
    p.stdin_fd = spec.stdin ? fcntl(master, F_DUPFD_CLOEXEC, 0) : -1;
  } else if (out_file >= 0) {
    close(out_file);
  } else {
    if (in_pipe[0] >= 0) {
      close(in_pipe[0]);
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    p.stdin_fd = in_pipe[1];
    p.stdout_fd = out_pipe[0];
    p.stderr_fd = err_pipe[0];
  }
  return p;
}

int SetKernelSignalAction(int sig, void (*handler)(int)) {
  // The kernel's struct sigaction (x86-64 and arm64 layout): no restorer is needed for SIG_DFL
  // or SIG_IGN; the mask is empty.
  struct {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)();
    unsigned long mask;
  } action = {handler, 0, nullptr, 0};
  return static_cast<int>(syscall(SYS_rt_sigaction, sig, &action, nullptr, sizeof(action.mask)));
}

std::optional<int> TryReapProcess(pid_t pid) {
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) {
    return std::nullopt;  // still running
  }
  if (r < 0) {
    return 255;  // not our child any more (reaped elsewhere): nothing to wait for
  }
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  if (WIFSIGNALED(status)) {
    return 128 + WTERMSIG(status);
  }
  return 255;
}

}  // namespace podgate::kubesim
