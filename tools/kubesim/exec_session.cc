#include "exec_session.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace podgate::kubesim {

bool ProcessTable::TryReserveExec() {
  size_t current = active_execs_.load();
  while (current < max_execs_) {
    if (active_execs_.compare_exchange_weak(current, current + 1)) {
      return true;
    }
  }
  ++execs_rejected;
  return false;
}

void ProcessTable::ReleaseExec() { --active_execs_; }

void ProcessTable::Add(pid_t pid) {
  absl::MutexLock lock(&mu_);
  pids_.insert(pid);
}

void ProcessTable::Remove(pid_t pid) {
  absl::MutexLock lock(&mu_);
  pids_.erase(pid);
}

void ProcessTable::KillAll(int sig) {
  absl::MutexLock lock(&mu_);
  for (pid_t pid : pids_) {
    // Each child leads its own session and process group: reach its descendants too.
    kill(-pid, sig);
    kill(pid, sig);
  }
}

size_t ProcessTable::live_processes() {
  absl::MutexLock lock(&mu_);
  return pids_.size();
}

void WaitForExit(boost::asio::posix::stream_descriptor& pidfd, pid_t pid,
                 std::function<void(int exit_code)> done, std::atomic<uint64_t>* spurious) {
  pidfd.async_wait(
      boost::asio::posix::stream_descriptor::wait_read,
      [&pidfd, pid, done = std::move(done), spurious](boost::system::error_code ec) mutable {
        if (std::optional<int> code = TryReapProcess(pid); code.has_value()) {
          done(*code);
          return;
        }
        if (ec) {
          return;  // cancelled: the descriptor is closing
        }
        ++*spurious;
        WaitForExit(pidfd, pid, std::move(done), spurious);
      });
}

namespace {

namespace net = boost::asio;
using Descriptor = net::posix::stream_descriptor;
using error_code = boost::system::error_code;

class ExecSession : public http::WebSocketHandler,
                    public std::enable_shared_from_this<ExecSession> {
 public:
  ExecSession(ExecRequest request, std::shared_ptr<ProcessTable> table)
      : request_(std::move(request)), table_(std::move(table)) {
    ++table_->live_sessions;
  }

  ~ExecSession() override {
    --table_->live_sessions;
    if (!released_) {
      table_->ReleaseExec();
    }
  }

  void OnOpen(std::shared_ptr<http::WebSocketConnection> connection) override {
    conn_ = std::move(connection);
    auto ex = conn_->executor();
    absl::StatusOr<Process> process = SpawnProcess(request_.spec);
    if (!process.ok()) {
      SendStatus(k8s::ErrorStatusJson(std::string(process.status().message())), "");
      conn_->Close(1000, "");
      return;
    }
    ++table_->execs_started;
    pid_ = process->pid;
    table_->Add(pid_);
    pidfd_.emplace(ex, process->pidfd);
    if (process->stdout_fd >= 0) {
      out_.emplace(ex, process->stdout_fd);
      open_outputs_++;
    }
    if (process->stderr_fd >= 0) {
      err_.emplace(ex, process->stderr_fd);
      open_outputs_++;
    }
    if (process->stdin_fd >= 0) {
      in_.emplace(ex, process->stdin_fd);
    }
    // The exit is watched before the stream is announced: once the client has the first frame,
    // a wake-up of the pidfd (spurious or not) always finds the wait queued.
    WaitForExit(
        *pidfd_, pid_, [self = shared_from_this()](int code) { self->OnExit(code); },
        &table_->spurious_exit_wakeups);
    // The API server announces the stream with an empty frame on the first writable channel.
    uint8_t first = request_.options.stdout                              ? k8s::kStdout
                    : (request_.options.stderr && !request_.options.tty) ? k8s::kStderr
                                                                         : k8s::kStatus;
    conn_->Send(k8s::EncodeFrame(first, ""));
    if (out_) {
      ReadOutput(&*out_, request_.options.tty || request_.options.stdout ? k8s::kStdout : 0,
                 out_buf_);
    }
    if (err_) {
      ReadOutput(&*err_, request_.options.stderr ? k8s::kStderr : 0, err_buf_);
    }
  }

  void OnMessage(std::string_view data, bool binary) override {
    // Like the API server, frames that are empty or name no valid channel are skipped (and
    // counted, so tests can assert that a client never sends them).
    absl::StatusOr<k8s::Frame> frame = k8s::DecodeFrame(data, request_.protocol);
    if (!frame.ok()) {
      ++table_->ignored_frames;
      return;
    }
    switch (frame->channel) {
      case k8s::kStdin:
        WriteStdin(std::string(frame->payload));
        break;
      case k8s::kResize:
        Resize(frame->payload);
        break;
      case k8s::kClose:
        if (static_cast<uint8_t>(frame->payload[0]) == k8s::kStdin) {
          stdin_close_pending_ = true;
          MaybeCloseStdin();
        }
        break;
      default:
        break;  // the server ignores data on output channels
    }
  }

  void OnWritable() override {
    // Resume every output stream that paused for the slow client.
    std::vector<Paused> paused = std::move(paused_);
    paused_.clear();
    for (const Paused& p : paused) {
      ReadOutput(p.desc, p.channel, *p.buf);
    }
  }

  void OnClose(std::string reason) override {
    bool done = exit_code_.has_value() && open_outputs_ == 0;
    conn_.reset();
    if (!done) {
      ++table_->client_gone;
    }
    // The client is gone: stdin reaches EOF; output is drained and dropped so the process never
    // blocks on a full pipe. A tty process gets SIGHUP when its pty master closes.
    stdin_queue_.clear();
    if (!stdin_writing_) {
      CloseStdin();
    } else {
      stdin_close_pending_ = true;
    }
    if (request_.options.tty) {
      error_code ignored;
      if (out_) {
        out_->close(ignored);
      }
    }
    OnWritable();
  }

 private:
  struct Paused {
    Descriptor* desc;
    uint8_t channel;
    std::string* buf;
  };

  void ReadOutput(Descriptor* desc, uint8_t channel, std::string& buf) {
    if (!desc->is_open()) {
      --open_outputs_;
      MaybeFinish();
      return;
    }
    buf.resize(request_.read_chunk_bytes);
    desc->async_read_some(net::buffer(buf), [self = shared_from_this(), desc, channel, &buf](
                                                error_code ec, size_t n) {
      self->OnOutput(desc, channel, buf, ec, n);
    });
  }

  void OnOutput(Descriptor* desc, uint8_t channel, std::string& buf, error_code ec, size_t n) {
    if (ec) {
      // EOF on a pipe, EIO on a pty master once the last slave closed: the stream ended.
      error_code ignored;
      desc->close(ignored);
      --open_outputs_;
      MaybeFinish();
      return;
    }
    bool more = true;
    if (conn_ != nullptr && channel != 0) {
      more = conn_->Send(k8s::EncodeFrame(channel, std::string_view(buf.data(), n)));
    }
    if (more) {
      ReadOutput(desc, channel, buf);
    } else {
      paused_.push_back({desc, channel, &buf});
    }
  }

  void WriteStdin(std::string data) {
    if (!in_ || !in_->is_open() || stdin_close_pending_ || data.empty()) {
      return;
    }
    stdin_bytes_ += data.size();
    stdin_queue_.push_back(std::move(data));
    if (stdin_bytes_ > request_.stdin_queue_limit_bytes && conn_ != nullptr && !reading_paused_) {
      reading_paused_ = true;
      conn_->PauseReading();
    }
    if (!stdin_writing_) {
      DoWriteStdin();
    }
  }

  void DoWriteStdin() {
    if (stdin_queue_.empty() || !in_ || !in_->is_open()) {
      MaybeCloseStdin();
      return;
    }
    stdin_writing_ = true;
    net::async_write(*in_, net::buffer(stdin_queue_.front()),
                     [self = shared_from_this()](error_code ec, size_t) {
                       self->stdin_writing_ = false;
                       if (self->stdin_queue_.empty()) {
                         self->MaybeCloseStdin();
                         return;
                       }
                       self->stdin_bytes_ -= self->stdin_queue_.front().size();
                       self->stdin_queue_.pop_front();
                       if (ec) {
                         // The process closed its stdin: drop what the client still sends.
                         self->stdin_queue_.clear();
                         self->stdin_bytes_ = 0;
                         self->CloseStdin();
                       }
                       if (self->reading_paused_ &&
                           self->stdin_bytes_ <= self->request_.stdin_queue_limit_bytes / 2 &&
                           self->conn_ != nullptr) {
                         self->reading_paused_ = false;
                         self->conn_->ResumeReading();
                       }
                       self->DoWriteStdin();
                     });
  }

  void MaybeCloseStdin() {
    if (stdin_close_pending_ && !stdin_writing_ && stdin_queue_.empty()) {
      CloseStdin();
    }
  }

  void CloseStdin() {
    if (in_ && in_->is_open()) {
      if (request_.options.tty) {
        // A pty has no half-close: EOF is the line discipline's ^D.
        static const char kEof = 4;
        ::write(in_->native_handle(), &kEof, 1);
      }
      error_code ignored;
      in_->close(ignored);
    }
  }

  void Resize(std::string_view payload) {
    if (!request_.options.tty || !out_ || !out_->is_open()) {
      return;
    }
    absl::StatusOr<k8s::TerminalSize> size = k8s::ParseResize(payload);
    if (!size.ok()) {
      return;  // the kubelet logs and ignores a bad resize
    }
    struct winsize ws = {};
    ws.ws_col = size->width;
    ws.ws_row = size->height;
    ioctl(out_->native_handle(), TIOCSWINSZ, &ws);
  }

  void OnExit(int code) {
    exit_code_ = code;
    table_->Remove(pid_);
    error_code ignored;
    pidfd_->close(ignored);
    MaybeFinish();
  }

  void MaybeFinish() {
    if (!exit_code_.has_value() || open_outputs_ > 0 || finished_) {
      return;
    }
    finished_ = true;
    CloseStdin();
    if (conn_ != nullptr) {
      int code = *exit_code_;
      if (request_.protocol == k8s::ExecProtocol::kV1) {
        // channel.k8s.io carries no exit code: only an error text for a failed command.
        if (code != 0) {
          SendStatus("", absl::StrCat("command terminated with non-zero exit code: error "
                                      "executing command [",
                                      absl::StrJoin(request_.options.command, " "), "], exit code ",
                                      code));
        }
      } else {
        SendStatus(code == 0 ? k8s::SuccessStatusJson() : k8s::ExitCodeStatusJson(code), "");
      }
      conn_->Close(1000, "");
    }
    table_->ReleaseExec();
    released_ = true;
  }

  void SendStatus(const std::string& json, const std::string& v1_text) {
    if (conn_ == nullptr) {
      return;
    }
    if (request_.protocol == k8s::ExecProtocol::kV1) {
      if (!v1_text.empty()) {
        conn_->Send(k8s::EncodeFrame(k8s::kStatus, v1_text));
      } else if (!json.empty() && json.find("\"Success\"") == std::string::npos) {
        conn_->Send(k8s::EncodeFrame(k8s::kStatus, json));
      }
      return;
    }
    conn_->Send(k8s::EncodeFrame(k8s::kStatus, json));
  }

  ExecRequest request_;
  std::shared_ptr<ProcessTable> table_;
  std::shared_ptr<http::WebSocketConnection> conn_;
  pid_t pid_ = -1;
  std::optional<Descriptor> pidfd_;
  std::optional<Descriptor> out_;
  std::optional<Descriptor> err_;
  std::optional<Descriptor> in_;
  std::string out_buf_;
  std::string err_buf_;
  int open_outputs_ = 0;
  std::vector<Paused> paused_;
  std::deque<std::string> stdin_queue_;
  size_t stdin_bytes_ = 0;
  bool stdin_writing_ = false;
  bool stdin_close_pending_ = false;
  bool reading_paused_ = false;
  std::optional<int> exit_code_;
  bool finished_ = false;
  bool released_ = false;
};

}  // namespace

std::shared_ptr<http::WebSocketHandler> NewExecSession(ExecRequest request,
                                                       std::shared_ptr<ProcessTable> table) {
  return std::make_shared<ExecSession>(std::move(request), std::move(table));
}

}  // namespace podgate::kubesim
