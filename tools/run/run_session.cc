#include "run/run_session.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace podgate::run {
namespace {

namespace pb = podgate::exec::v1;
namespace common = podgate::common::v1;
using Stream = grpc::ClientReaderWriterInterface<pb::SessionRequest, pb::SessionResponse>;

// stdin is forwarded in chunks of this size, one Write in flight: a Write blocked by gRPC's flow
// control stops the reading, so podgate-run holds at most one chunk whatever the input's size.
constexpr size_t kStdinChunk = 32 * 1024;

void WriteAll(int fd, absl::string_view data) {
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

void Say(int fd, absl::string_view line) {
  WriteAll(fd, absl::StrCat("podgate-run: ", line, "\n"));
}

// -i: reads stdin_fd on a thread of its own and writes it to the running command, then `stdin`
// with eof at its end. The thread waits in poll() on the input and on a pipe, so Stop() ends it
// even while a terminal has nothing to read.
class StdinForwarder {
 public:
  StdinForwarder(Stream* stream, int fd, int err_fd) : stream_(stream), fd_(fd), err_fd_(err_fd) {
    if (pipe2(wake_, O_CLOEXEC) != 0) {
      wake_[0] = wake_[1] = -1;
    }
    done_ = finished_.get_future();
    thread_ = std::thread([this] { Loop(); });
  }

  ~StdinForwarder() {
    (void)Stop(absl::ZeroDuration());
    thread_.join();
    for (int fd : wake_) {
      if (fd >= 0) {
        close(fd);
      }
    }
  }

  StdinForwarder(const StdinForwarder&) = delete;
  StdinForwarder& operator=(const StdinForwarder&) = delete;

  // Asks the thread to stop writing; true when it has within `grace` (it may be in a Write that
  // flow control holds: the caller then cancels the call, which ends the Write).
  bool Stop(absl::Duration grace) {
    if (!stop_.exchange(true) && wake_[1] >= 0) {
      const char x = 'x';
      (void)!write(wake_[1], &x, 1);
    }
    return done_.wait_for(absl::ToChronoNanoseconds(grace)) == std::future_status::ready;
  }

 private:
  void Loop() {
    std::string buf(kStdinChunk, '\0');
    pb::SessionRequest req;
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
      if (!stream_->Write(req)) {
        break;  // the stream ended; the reader sees why
      }
    }
    if (end_of_input && !stop_.load()) {
      req.mutable_stdin()->clear_data();
      req.mutable_stdin()->set_eof(true);
      (void)stream_->Write(req);
    }
    finished_.set_value();
  }

  Stream* stream_;
  const int fd_;
  const int err_fd_;
  int wake_[2] = {-1, -1};
  std::atomic<bool> stop_{false};
  std::promise<void> finished_;
  std::future<void> done_;
  std::thread thread_;
};

std::string Stopped(const pb::CommandExit& exit) {
  std::string why;
  switch (exit.termination()) {
    case common::TERMINATION_INTERRUPTED:
      why = "interrupted";
      break;
    case common::TERMINATION_TIME_LIMIT:
      why = "the rule's time limit";
      break;
    case common::TERMINATION_OUTPUT_LIMIT:
      why = "the rule's output limit";
      break;
    default:
      why = "the stream to the container failed; the command's exit status is unknown";
      break;
  }
  std::string line =
      absl::StrCat("stopped (", common::Termination_Name(exit.termination()), "): ", why);
  if (!exit.error().empty()) {
    absl::StrAppend(&line, ": ", exit.error());
  }
  return line;
}

}  // namespace

std::string QuoteLine(const std::vector<std::string>& argv) {
  std::string line;
  for (const std::string& arg : argv) {
    if (!line.empty()) {
      line += ' ';
    }
    line += "'" + absl::StrReplaceAll(arg, {{"'", "'\\''"}}) + "'";
  }
  return line;
}

int RunInPod(pb::ExecService::StubInterface& stub, const RunOptions& options) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  std::unique_ptr<Stream> stream = stub.Session(&ctx);
  pb::SessionRequest req;
  auto* open = req.mutable_open();
  open->mutable_credential()->set_bearer_token(options.token);
  open->mutable_target()->set_namespace_(options.namespace_name);
  open->mutable_target()->set_pod(options.pod);
  open->mutable_target()->set_container(options.container);
  open->mutable_target()->set_cluster(options.cluster);
  open->set_client("podgate-run");
  (void)stream->Write(req);
  pb::SessionResponse res;
  // The conversation: wait for `ready` before the command.
  if (!stream->Read(&res) || !res.has_ready()) {
    const grpc::Status final = stream->Finish();
    Say(options.stderr_fd,
        final.ok() ? "exec ended the session before it was ready" : final.error_message());
    return kExitCouldNotRun;
  }
  req.Clear();
  req.mutable_command()->set_line(QuoteLine(options.command));
  (void)stream->Write(req);
  std::unique_ptr<StdinForwarder> forwarder;
  if (options.forward_stdin) {
    forwarder = std::make_unique<StdinForwarder>(stream.get(), options.stdin_fd, options.stderr_fd);
  } else {
    // Without -i the command reads end of file at once, as with kubectl exec without -i: `wc`
    // or `cat` ends instead of waiting for its time limit.
    req.Clear();
    req.mutable_stdin()->set_eof(true);
    (void)stream->Write(req);
  }
  int status = kExitCouldNotRun;
  bool done = false;
  while (!done && stream->Read(&res)) {
    switch (res.kind_case()) {
      case pb::SessionResponse::kStdout:
        WriteAll(options.stdout_fd, res.stdout().data());
        break;
      case pb::SessionResponse::kStderr:
        WriteAll(options.stderr_fd, res.stderr().data());
        break;
      case pb::SessionResponse::kExit:
        if (res.exit().termination() == common::TERMINATION_EXITED) {
          status = res.exit().exit_code();
        } else {
          status = kExitStopped;
          Say(options.stderr_fd, Stopped(res.exit()));
        }
        done = true;
        break;
      case pb::SessionResponse::kDenied:
        Say(options.stderr_fd,
            absl::StrCat("refused by rule ", res.denied().rule(), ": ", res.denied().reason()));
        status = kExitRefused;
        done = true;
        break;
      case pb::SessionResponse::kError:
        Say(options.stderr_fd, res.error().status().message());
        done = true;
        break;
      case pb::SessionResponse::kClosed:
        Say(options.stderr_fd, absl::StrCat("exec closed the session (",
                                            common::CloseReason_Name(res.closed().reason()),
                                            "): ", res.closed().message()));
        done = true;
        break;
      default:
        break;
    }
  }
  if (forwarder != nullptr && !forwarder->Stop(options.stdin_stop_grace)) {
    ctx.TryCancel();  // ends the Write flow control holds; the outcome is known already
  }
  forwarder.reset();
  req.Clear();
  req.mutable_close();
  (void)stream->Write(req);
  (void)stream->WritesDone();
  while (stream->Read(&res)) {
  }
  const grpc::Status final = stream->Finish();
  if (!done) {
    Say(options.stderr_fd,
        final.ok() ? "exec ended the session before the command ended" : final.error_message());
  }
  return status;
}

}  // namespace podgate::run
