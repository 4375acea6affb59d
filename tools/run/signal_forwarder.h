// podgate-run's Ctrl+C: SIGINT and SIGTERM while a command runs. The first asks exec to
// interrupt the command (exec stops the remote process; the run ends with 130 and
// TERMINATION_INTERRUPTED, audited so); a second ends podgate-run at once, as the signal would
// have (exec then stops the process when the stream breaks). Before the command is sent, a
// signal cancels the call. The handler only writes a byte to a pipe; a thread does the rest.
#pragma once

#include <signal.h>

#include <atomic>
#include <thread>

#include "grpcpp/grpcpp.h"
#include "run/stream_io.h"

namespace podgate::run {

// One at a time per process: it installs the handlers and restores the previous ones when
// destroyed.
class SignalForwarder {
 public:
  // `sender` and `ctx` outlive it; "interrupting" is said on `err_fd`.
  SignalForwarder(Sender* sender, grpc::ClientContext* ctx, int err_fd);
  ~SignalForwarder();
  SignalForwarder(const SignalForwarder&) = delete;
  SignalForwarder& operator=(const SignalForwarder&) = delete;

  // From now on a signal interrupts the command (before: it cancels the call).
  void CommandSent() { command_sent_ = true; }

 private:
  void Loop();

  Sender* sender_;
  grpc::ClientContext* ctx_;
  const int err_fd_;
  int pipe_[2] = {-1, -1};
  struct sigaction old_int_ = {};
  struct sigaction old_term_ = {};
  std::atomic<bool> stop_{false};
  std::atomic<bool> command_sent_{false};
  std::thread thread_;
};

}  // namespace podgate::run
