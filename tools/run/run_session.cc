#include "run/run_session.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
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

// The stream's writes, one at a time: the stdin forwarder's and the interrupt's come from their
// own threads (gRPC allows one Write in flight beside one Read).
class Sender {
 public:
  explicit Sender(Stream* stream) : stream_(stream) {}
  bool Send(const pb::SessionRequest& req) {
    std::lock_guard<std::mutex> lock(mu_);
    return stream_->Write(req);
  }

 private:
  std::mutex mu_;
  Stream* stream_;
};

// SIGINT and SIGTERM while a command runs: the first asks exec to interrupt it (the remote
// process is stopped and the run ends with 130 and TERMINATION_INTERRUPTED, audited so); a
// second ends podgate-run at once, as the signal would have (exec then stops the process when
// the stream breaks). The handler only writes a byte to a pipe; a thread does the rest.
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

class SignalForwarder {
 public:
  SignalForwarder(Sender* sender, grpc::ClientContext* ctx, int err_fd)
      : sender_(sender), ctx_(ctx), err_fd_(err_fd) {
    if (pipe2(pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
      pipe_[0] = pipe_[1] = -1;
      return;
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

  ~SignalForwarder() {
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

  SignalForwarder(const SignalForwarder&) = delete;
  SignalForwarder& operator=(const SignalForwarder&) = delete;

  // From now on a signal interrupts the command (before: it cancels the call).
  void CommandSent() { command_sent_ = true; }

 private:
  void Loop() {
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
          WriteAll(err_fd_, "podgate-run: interrupting the command (again to quit at once)\n");
          pb::SessionRequest req;
          req.mutable_interrupt();
          (void)sender_->Send(req);
        } else {
          ctx_->TryCancel();
        }
      }
    }
  }

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

void Say(int fd, absl::string_view line) {
  WriteAll(fd, absl::StrCat("podgate-run: ", line, "\n"));
}

// -i: reads stdin_fd on a thread of its own and writes it to the running command, then `stdin`
// with eof at its end. The thread waits in poll() on the input and on a pipe, so Stop() ends it
// even while a terminal has nothing to read.
class StdinForwarder {
 public:
  StdinForwarder(Sender* sender, int fd, int err_fd) : sender_(sender), fd_(fd), err_fd_(err_fd) {
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

  Sender* sender_;
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
  Sender sender(stream.get());
  std::unique_ptr<SignalForwarder> signals;
  if (options.interrupt_on_signals) {
    signals = std::make_unique<SignalForwarder>(&sender, &ctx, options.stderr_fd);
  }
  pb::SessionRequest req;
  auto* open = req.mutable_open();
  open->mutable_credential()->set_bearer_token(options.token);
  open->mutable_target()->set_namespace_(options.namespace_name);
  open->mutable_target()->set_pod(options.pod);
  open->mutable_target()->set_container(options.container);
  open->mutable_target()->set_cluster(options.cluster);
  open->set_client("podgate-run");
  (void)sender.Send(req);
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
  (void)sender.Send(req);
  if (signals != nullptr) {
    signals->CommandSent();
  }
  std::unique_ptr<StdinForwarder> forwarder;
  if (options.forward_stdin) {
    forwarder = std::make_unique<StdinForwarder>(&sender, options.stdin_fd, options.stderr_fd);
  } else {
    // Without -i the command reads end of file at once, as with kubectl exec without -i: `wc`
    // or `cat` ends instead of waiting for its time limit.
    req.Clear();
    req.mutable_stdin()->set_eof(true);
    (void)sender.Send(req);
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
  signals.reset();
  req.Clear();
  req.mutable_close();
  (void)sender.Send(req);
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
