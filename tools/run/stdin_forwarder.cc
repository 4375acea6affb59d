#include "run/stdin_forwarder.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace podgate::run {

StdinForwarder::StdinForwarder(Sender* sender, int fd, int err_fd)
    : sender_(sender), fd_(fd), err_fd_(err_fd) {
  if (pipe2(wake_, O_CLOEXEC) != 0) {
    wake_[0] = wake_[1] = -1;
  }
  done_ = finished_.get_future();
  thread_ = std::thread([this] { Loop(); });
}

StdinForwarder::~StdinForwarder() {
  (void)Stop(absl::ZeroDuration());
  thread_.join();
  for (int fd : wake_) {
    if (fd >= 0) {
      close(fd);
    }
  }
}

bool StdinForwarder::Stop(absl::Duration grace) {
  if (!stop_.exchange(true) && wake_[1] >= 0) {
    const char x = 'x';
    (void)!write(wake_[1], &x, 1);
  }
  return done_.wait_for(absl::ToChronoNanoseconds(grace)) == std::future_status::ready;
}

void StdinForwarder::Loop() {
  std::string buf(kStdinChunk, '\0');
  podgate::exec::v1::SessionRequest req;
  bool end_of_input = false;
  while (!stop_.load()) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    const int ready = poll(fds, wake_[0] >= 0 ? 2 : 1, -1);
    if (ready < 0 && errno == EINTR) {
      continue;
    }
    if (ready < 0 || (fds[1].revents & POLLIN) != 0) {
      break;
    }
    const ssize_t n = read(fd_, buf.data(), buf.size());
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
      continue;
    }
    if (n < 0) {
      Say(err_fd_, absl::StrCat("reading standard input: ", std::strerror(errno),
                                "; the command's stdin is closed"));
    }
    if (n <= 0) {
      end_of_input = true;
      break;
    }
    req.mutable_stdin()->set_data(buf.data(), static_cast<size_t>(n));
    if (!sender_->Send(req)) {
      break;  // the stream ended; the reader sees why
    }
  }
  if (end_of_input && !stop_.load()) {
    req.mutable_stdin()->clear_data();
    req.mutable_stdin()->set_eof(true);
    (void)sender_->Send(req);
  }
  finished_.set_value();
}

}  // namespace podgate::run
