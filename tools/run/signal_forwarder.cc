#include "run/signal_forwarder.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>

namespace podgate::run {
namespace {

// The handler's state: async-signal-safe atomics only.
std::atomic<int> g_signal_pipe{-1};
std::atomic<int> g_signals{0};

void OnSignal(int sig) {
  if (g_signals.fetch_add(1) >= 1) {
    struct sigaction dfl = {};
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, nullptr);
    raise(sig);
    return;
  }
  const int fd = g_signal_pipe.load();
  if (fd >= 0) {
    const char x = 'x';
    (void)!write(fd, &x, 1);
  }
}

}  // namespace

SignalForwarder::SignalForwarder(Sender* sender, grpc::ClientContext* ctx, int err_fd)
    : sender_(sender), ctx_(ctx), err_fd_(err_fd) {
  if (pipe2(pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    pipe_[0] = pipe_[1] = -1;
    return;  // signals keep their default action
  }
  g_signals = 0;
  g_signal_pipe = pipe_[1];
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int_);
  sigaction(SIGTERM, &sa, &old_term_);
  thread_ = std::thread([this] { Loop(); });
}

SignalForwarder::~SignalForwarder() {
  if (pipe_[0] < 0) {
    return;
  }
  sigaction(SIGINT, &old_int_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
  stop_ = true;
  const char x = 's';
  (void)!write(pipe_[1], &x, 1);
  thread_.join();
  g_signal_pipe = -1;
  close(pipe_[0]);
  close(pipe_[1]);
}

void SignalForwarder::Loop() {
  while (true) {
    pollfd fd = {pipe_[0], POLLIN, 0};
    if (poll(&fd, 1, -1) < 0 && errno != EINTR) {
      return;
    }
    char c;
    while (read(pipe_[0], &c, 1) == 1) {
      if (c == 's' || stop_.load()) {
        return;
      }
      if (command_sent_.load()) {
        Say(err_fd_, "interrupting the command (again to quit at once)");
        podgate::exec::v1::SessionRequest req;
        req.mutable_interrupt();
        (void)sender_->Send(req);
      } else {
        ctx_->TryCancel();
      }
    }
  }
}

}  // namespace podgate::run
