// Processes on this machine standing in for a container's: exec's probes are run here for real,
// as a container would run them, against real processes.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace podgate::exec::local {

// Runs argv like a container would (here: on this machine) and returns (exit status, stdout).
inline std::pair<int, std::string> RunArgv(const std::vector<std::string>& argv) {
  int out[2];
  EXPECT_EQ(pipe(out), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    std::vector<char*> args;
    for (const auto& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  std::string text;
  char buf[256];
  ssize_t n;
  while ((n = read(out[0], buf, sizeof(buf))) > 0) {
    text.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text};
}

// Whether a child of this process is still running (it is reaped once it is not).
inline bool Alive(pid_t pid) {
  int status;
  return waitpid(pid, &status, WNOHANG) == 0;
}

// Whether any process `pid` exists and is not a zombie (without reaping it).
inline bool Runs(pid_t pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(stat, line)) {
    return false;
  }
  const size_t paren = line.rfind(") ");
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z';
}

inline pid_t StartSleep(const std::string& seconds) {
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sleep", "sleep", seconds.c_str(), nullptr);
    _exit(127);
  }
  return pid;
}

}  // namespace podgate::exec::local
