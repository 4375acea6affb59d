// What podgate-run's threads share about the exec stream and the terminal: the stream's type,
// one writer at a time on it, and whole writes to a file descriptor.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "podgate/exec/v1/exec.grpc.pb.h"

namespace podgate::run {

using SessionStream = grpc::ClientReaderWriterInterface<podgate::exec::v1::SessionRequest,
                                                        podgate::exec::v1::SessionResponse>;

// Writes all of `data` to `fd` (retrying short writes and EINTR); gives up on an error.
inline void WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// One line of podgate-run's own on `fd`: "podgate-run: <line>".
inline void Say(int fd, absl::string_view line) {
  WriteAll(fd, absl::StrCat("podgate-run: ", line, "\n"));
}

// The stream's writes, one at a time: the stdin forwarder's and the interrupt's come from their
// own threads (gRPC allows one Write in flight beside one Read).
class Sender {
 public:
  explicit Sender(SessionStream* stream) : stream_(stream) {}
  bool Send(const podgate::exec::v1::SessionRequest& req) {
    std::lock_guard<std::mutex> lock(mu_);
    return stream_->Write(req);
  }

 private:
  std::mutex mu_;
  SessionStream* stream_;
};

}  // namespace podgate::run
