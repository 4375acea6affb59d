#include "support/subprocess.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace podgate::testing {

absl::StatusOr<std::unique_ptr<Subprocess>> Subprocess::Start(
    const std::string& path, const std::vector<std::string>& args,
    const std::map<std::string, std::string>& env) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    const std::string key = entry.substr(0, entry.find('='));
    if (env.count(key) == 0) {
      env_strings.push_back(std::move(entry));
    }
  }
  for (const auto& [k, v] : env) {
    env_strings.push_back(absl::StrCat(k, "=", v));
  }
  std::vector<char*> envp;
  for (auto& s : env_strings) {
    envp.push_back(s.data());
  }
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = {path};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) {
    argv.push_back(s.data());
  }
  argv.push_back(nullptr);

  const pid_t pid = fork();
  if (pid < 0) {
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    dup2(fds[1], STDERR_FILENO);
    // A test runner may block signals; the child starts with a clean mask.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(path.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  close(fds[1]);
  std::unique_ptr<Subprocess> p(new Subprocess());
  p->pid_ = pid;
  p->stderr_fd_ = fds[0];
  p->reader_ = std::make_unique<std::thread>([raw = p.get()] { raw->ReadLoop(); });
  return p;
}

Subprocess::~Subprocess() {
  if (!exit_status_.has_value()) {
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
  }
  ResumeReading();
  if (reader_ != nullptr) {
    reader_->join();
  }
  close(stderr_fd_);
}

void Subprocess::PauseReading() {
  absl::MutexLock lock(&mu_);
  paused_ = true;
}

void Subprocess::ResumeReading() {
  absl::MutexLock lock(&mu_);
  paused_ = false;
}

void Subprocess::ReadLoop() {
  std::string partial;
  char buf[4096];
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](bool* paused) { return !*paused; }, &paused_));
    }
    const ssize_t n = read(stderr_fd_, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    partial.append(buf, static_cast<size_t>(n));
    size_t pos;
    while ((pos = partial.find('\n')) != std::string::npos) {
      absl::MutexLock lock(&mu_);
      lines_.push_back(partial.substr(0, pos));
      partial.erase(0, pos + 1);
    }
  }
  absl::MutexLock lock(&mu_);
  if (!partial.empty()) {
    lines_.push_back(partial);
  }
  eof_ = true;
}

absl::StatusOr<std::string> Subprocess::WaitForLine(const std::string& needle,
                                                    absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  size_t checked = 0;
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    for (; checked < lines_.size(); ++checked) {
      if (lines_[checked].find(needle) != std::string::npos) {
        return lines_[checked];
      }
    }
    if (eof_) {
      return absl::NotFoundError(absl::StrCat("process exited before printing '", needle, "'"));
    }
    const size_t seen = lines_.size();
    auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return lines_.size() != seen || eof_;
    };
    if (!mu_.AwaitWithDeadline(absl::Condition(&changed), deadline)) {
      return absl::DeadlineExceededError(absl::StrCat("no line with '", needle, "'"));
    }
  }
}

std::vector<std::string> Subprocess::Lines() {
  absl::MutexLock lock(&mu_);
  return lines_;
}

void Subprocess::Signal(int sig) { kill(pid_, sig); }

std::string ReadProcFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return "";
  }
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      text.append(buf, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      if (n < 0) {
        text.clear();  // gone mid-read: nothing half-read is returned
      }
      break;
    }
  }
  close(fd);
  return text;
}

absl::Status Subprocess::Freeze(absl::Duration timeout) {
  Signal(SIGSTOP);
  const absl::Time deadline = absl::Now() + timeout;
  const std::string tasks = absl::StrCat("/proc/", pid_, "/task");
  while (absl::Now() < deadline) {
    bool all_stopped = true;
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
      // /proc/<pid>/task/<tid>/stat: "tid (comm) S ..."; the comm may hold spaces and ')'.
      const std::string stat = ReadProcFile(task.path() / "stat");
      const size_t close = stat.rfind(')');
      if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'T' &&
          stat[close + 2] != 't') {
        all_stopped = false;
        break;
      }
    }
    if (ec) {
      return absl::NotFoundError(absl::StrCat("no such process: ", pid_));
    }
    if (all_stopped) {
      return absl::OkStatus();
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  return absl::DeadlineExceededError(absl::StrCat("process ", pid_, " did not stop"));
}

absl::StatusOr<Subprocess::Finished> Subprocess::Run(const std::string& path,
                                                     const std::vector<std::string>& args,
                                                     const std::map<std::string, std::string>& env,
                                                     absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<Subprocess>> process = Start(path, args, env);
  if (!process.ok()) {
    return process.status();
  }
  absl::StatusOr<int> status = (*process)->WaitExit(timeout);
  if (!status.ok()) {
    return status.status();
  }
  return Finished{*status, absl::StrJoin((*process)->Lines(), "\n")};
}

absl::StatusOr<int> Subprocess::WaitExit(absl::Duration timeout) {
  if (exit_status_.has_value()) {
    return *exit_status_;
  }
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      // Let the reader take the last lines: stderr reaches EOF once the child is gone (unless
      // a grandchild still holds it, hence the bound).
      absl::MutexLock lock(&mu_);
      auto eof = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return eof_; };
      mu_.AwaitWithTimeout(absl::Condition(&eof), absl::Seconds(2));
      return *exit_status_;
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError("process did not exit in time");
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

std::vector<pid_t> ProcessesWithArgv(const std::vector<std::string>& argv) {
  const std::string want = absl::StrJoin(argv, std::string(1, '\0')) + std::string(1, '\0');
  std::vector<pid_t> pids;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) {
    return pids;
  }
  while (dirent* e = readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') {
      continue;
    }
    if (ReadProcFile(absl::StrCat("/proc/", e->d_name, "/cmdline")) != want) {
      continue;
    }
    // "pid (comm) S ...": the comm may hold spaces and ')'.
    const std::string stat = ReadProcFile(absl::StrCat("/proc/", e->d_name, "/stat"));
    const size_t close = stat.rfind(')');
    const bool zombie =
        close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
    if (!zombie) {
      pids.push_back(static_cast<pid_t>(std::stol(e->d_name)));
    }
  }
  closedir(proc);
  return pids;
}

bool WaitForProcesses(const std::vector<std::string>& argv, int count, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (static_cast<int>(ProcessesWithArgv(argv).size()) < count) {
    if (absl::Now() >= deadline) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

}  // namespace podgate::testing
