// podgate-run -i: its standard input forwarded to the running command on a thread of its own, in
// chunks, one Write in flight (a Write that gRPC's flow control holds stops the reading, so any
// amount of input goes through in bounded memory), then `stdin` with eof at the input's end.
#pragma once

#include <atomic>
#include <future>
#include <thread>

#include "absl/time/time.h"
#include "run/stream_io.h"

namespace podgate::run {

// stdin is forwarded in chunks of this size.
inline constexpr size_t kStdinChunk = 32 * 1024;

// The thread waits in poll() on the input and on a pipe, so Stop() ends it even while a
// terminal has nothing to read.
class StdinForwarder {
 public:
  // Starts forwarding `fd` through `sender`; read errors are said on `err_fd`.
  StdinForwarder(Sender* sender, int fd, int err_fd);
  // Stops (without waiting for a Write flow control holds: cancel the call first) and joins.
  ~StdinForwarder();
  StdinForwarder(const StdinForwarder&) = delete;
  StdinForwarder& operator=(const StdinForwarder&) = delete;

  // Asks the thread to stop writing; true when it has within `grace` (it may be in a Write that
  // flow control holds: the caller then cancels the call, which ends the Write).
  bool Stop(absl::Duration grace);

 private:
  void Loop();

  Sender* sender_;
  const int fd_;
  const int err_fd_;
  int wake_[2] = {-1, -1};
  std::atomic<bool> stop_{false};
  std::promise<void> finished_;
  std::future<void> done_;
  std::thread thread_;
};

}  // namespace podgate::run
