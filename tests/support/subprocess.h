// Runs a podgate binary as a child process for integration tests: arguments and environment
// given, stderr (the JSON log) read line by line, signals and exit status observed; and the
// processes of the machine found by their argv.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace podgate::testing {

class Subprocess {
 public:
  // Starts `path` with `args` (argv[1..]) and `env` added to the current environment.
  static absl::StatusOr<std::unique_ptr<Subprocess>> Start(
      const std::string& path, const std::vector<std::string>& args,
      const std::map<std::string, std::string>& env = {});

  // How a child run to its end ended: its exit status and its stderr lines joined by "\n".
  struct Finished {
    int exit_code = -1;
    std::string err;
  };
  // Starts `path` and waits up to `timeout` for it to exit (a one-shot tool such as
  // podgate-probe).
  static absl::StatusOr<Finished> Run(const std::string& path, const std::vector<std::string>& args,
                                      const std::map<std::string, std::string>& env = {},
                                      absl::Duration timeout = absl::Seconds(20));

  // Sends SIGKILL if still running and reaps the child.
  ~Subprocess();

  // Waits until a stderr line contains `needle`; returns that line.
  absl::StatusOr<std::string> WaitForLine(const std::string& needle, absl::Duration timeout);

  // Every stderr line so far.
  std::vector<std::string> Lines();

  void Signal(int sig);

  // Stops reading the child's stderr (after the read in progress), as a stuck log collector
  // would: once the pipe's buffer is full, the child's writes to stderr block (or fail with
  // EAGAIN). ResumeReading() reads on; the destructor resumes by itself.
  void PauseReading();
  void ResumeReading();

  // SIGSTOP, then waits until every thread of the child is stopped (kill() returns before the
  // stop takes effect: a thread already running could still answer a request).
  absl::Status Freeze(absl::Duration timeout = absl::Seconds(5));

  // Waits for the child to exit; returns its exit status (128+signal when killed), or
  // DeadlineExceeded. Once it returns, Lines() holds everything the child wrote.
  absl::StatusOr<int> WaitExit(absl::Duration timeout);

  pid_t pid() const { return pid_; }

 private:
  Subprocess() = default;
  void ReadLoop();

  pid_t pid_ = -1;
  int stderr_fd_ = -1;
  std::optional<int> exit_status_;
  absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<std::thread> reader_;
};

// The whole of a /proc file (`/proc/<pid>/cmdline`, `.../stat`); empty when it cannot be read.
// A process that exits while its file is read makes read() fail with ESRCH: that is "gone",
// never an exception (a std::istreambuf_iterator over an ifstream throws there).
std::string ReadProcFile(const std::string& path);

// Processes on this machine, zombies aside, whose argv is exactly `argv` (kubesim's containers
// are real processes: a test sees a command start or end here).
std::vector<pid_t> ProcessesWithArgv(const std::vector<std::string>& argv);

// Waits up to `timeout` until `count` such processes run; whether they do.
bool WaitForProcesses(const std::vector<std::string>& argv, int count,
                      absl::Duration timeout = absl::Seconds(20));

}  // namespace podgate::testing
