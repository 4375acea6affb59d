#include "exec/session.h"

#include <openssl/evp.h>

#include <deque>
#include <functional>
#include <unordered_set>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "crypto/openssl_ptr.h"
#include "exec/command_line.h"
#include "exec/container_check.h"
#include "exec/container_probe.h"
#include "exec/policy_stream.h"
#include "exec/probe_run.h"
#include "k8s/names.h"
#include "nlohmann/json.hpp"
#include "runtime/ids.h"
#include "runtime/log.h"
#include "wire/enum_label.h"
#include "wire/status.h"
#include "wire/time.h"

namespace podgate::exec {

namespace common = podgate::common::v1;
namespace pb = podgate::exec::v1;

namespace {

}  // namespace

// ---------------------------------------------------------------------------------------------

class Session final
    : public grpc::ServerBidiReactor<pb::SessionRequest, pb::SessionResponse>,
      public std::enable_shared_from_this<Session> {
 public:
  Session(SessionHub* hub, grpc::CallbackServerContext* context)
      : hub_(hub), context_(context), opts_(hub->options()) {
    hub_->metrics()->live_sessions.Increment();
  }
  ~Session() override { hub_->metrics()->live_sessions.Decrement(); }

  void Start() {
    self_ = shared_from_this();
    source_address_ = context_->peer();
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  // Closes the session from outside (server drain).
  void CloseFromHub(common::CloseReason reason, const std::string& message) {
    std::lock_guard<std::mutex> lock(mu_);
    CloseLocked(reason, message);
  }

 private:
  enum class State { kAwaitOpen, kOpening, kReady, kClosed };

  struct Command;
  class CommandObserver;
  class ShellObserver;

  // One queued message to the client, and what to do once it is written.
  struct Outgoing {
    pb::SessionResponse message;
    std::function<void()> after_write;
  };

  // Handles one client message (without the lock); false when no further message is to be read.
  bool HandleReadDone(bool ok);

  // --- helpers, all called with mu_ held unless noted ---
  void SendLocked(pb::SessionResponse message, std::function<void()> after_write = nullptr);
  void MaybeWriteLocked();
  void FinishLocked(const grpc::Status& status);
  void CloseLocked(common::CloseReason reason, const std::string& message);
  void ResetIdleTimerLocked();
  common::AuditEvent BaseEventLocked(common::EventKind kind);
  // Records `event`; in strict mode `then` runs only after the ack (else at once); on failure
  // in strict mode, `on_fail` runs instead. Both run without the lock held.
  void Audit(common::AuditEvent event, std::function<void()> then,
             std::function<void(absl::Status)> on_fail);

  void HandleOpen(const pb::OpenSession& open);
  // Asks policy whether the user has any rule for the target (ListAllowed): `labels_known`
  // false before the pod is looked up (a rule's podLabels then count as matching).
  void AskScope(bool labels_known, std::function<void(absl::StatusOr<bool>)> done);
  void OnScope(absl::StatusOr<bool> in_scope);
  // Refuses the target with the one message that says neither whether it exists nor whether a
  // rule lets the user in; `why` (the real reason) goes to audit only.
  // Counts a session refused while opening and ends its call with `status`.
  void RefuseOpenLocked(grpc::Status status);
  void RefuseTargetLocked(const std::string& why);
  void OnPod(absl::StatusOr<PodView> pod);
  void OnPodInScope(PodView pod, absl::StatusOr<bool> in_scope);
  void AfterShellDecision(absl::StatusOr<podgate::policy::v1::AuthorizeResponse> answer);
  void CheckRootThen(bool root_allowed, std::function<void(absl::Status)> next);
  void SendReady();
  void HandleCommand(const pb::RunCommand& run);
  void OnDecision(std::shared_ptr<Command> cmd,
                  absl::StatusOr<podgate::policy::v1::AuthorizeResponse> answer);
  void RunChecks(std::shared_ptr<Command> cmd, int index);
  void RefuseByCheckLocked(const std::shared_ptr<Command>& cmd, const common::ContainerCheck& check,
                           const CheckOutcome& outcome);
  void StartCommand(std::shared_ptr<Command> cmd);
  // Records a refusal made before policy was asked (parser, busy) as a DECISION event.
  void RecordRefusalLocked(const std::string& command_id, const std::string& line,
                           const std::string& rule, const std::string& reason);
  void DenyLocked(const std::string& command_id, const std::string& rule,
                  const std::string& reason);
  void StopCommandLocked(common::Termination why);
  // The launch wrapper reported the command's pid: let it run ("go"), unless it was stopped.
  void OnLaunchReportedLocked(const std::shared_ptr<Command>& cmd);
  void SendGoLocked(const std::shared_ptr<Command>& cmd);
  // The command cannot be let run (its process could not be identified, or not journaled):
  // it is not run. `why` completes "the command was not run: ".
  void LaunchFailedLocked(const std::shared_ptr<Command>& cmd, const std::string& why);
  // The command's process is known to be gone (or never ran).
  void MarkGoneLocked(const std::shared_ptr<Command>& cmd);
  // Drops the command's journal entry once its process is gone and its result acknowledged.
  void MaybeUnjournalLocked(const std::shared_ptr<Command>& cmd);
  // Stops exactly the command's process (SIGINT, SIGKILL after the grace period), once.
  void StartStopLocked(const std::shared_ptr<Command>& cmd);
  void RunStopStep(std::shared_ptr<Command> cmd, std::string signal, int attempt);
  // Reads the next client message again after stdin backpressure paused reading.
  void ResumeReadsLocked();
  // No command is running any more: stdin that was held for it no longer holds the reads.
  void ClearRunningLocked() {
    running_ = nullptr;
    ResumeReadsLocked();
  }
  ExecSpec TargetSpecLocked() const;
  void FinishCommandLocked(const std::shared_ptr<Command>& cmd, const ExecResult& result);
  void StartShell();
  void RecordShellLocked(char kind, const std::string& data);
  void FlushRecordingLocked();

  SessionHub* const hub_;
  grpc::CallbackServerContext* const context_;
  const ExecOptions& opts_;
  std::shared_ptr<Session> self_;

  std::mutex mu_;
  State state_ = State::kAwaitOpen;
  pb::SessionRequest request_;
  std::deque<Outgoing> out_;
  bool writing_ = false;
  bool finish_pending_ = false;
  bool finished_ = false;
  grpc::Status finish_status_;
  // No read is outstanding because stdin is backed up (flow control towards the client).
  bool read_paused_ = false;
  // OnReadDone is running: it, not ResumeReadsLocked, starts the next read.
  bool in_read_done_ = false;

  std::string session_id_;
  // The id of the session's SESSION_CLOSE event, chosen at open: journal recovery records the
  // close of a session whose exec died under the same id, so it is stored once.
  std::string close_event_id_;
  std::string source_address_;
  std::string client_;
  common::SessionMode mode_ = common::SESSION_MODE_COMMAND;
  common::Principal principal_;
  common::Target target_;
  PodView pod_;
  absl::Time expires_;
  // Whether expires_ is the credential's expiry (else a session time limit).
  bool expiry_is_credential_ = false;
  absl::Time opened_at_;
  bool admitted_ = false;
  int64_t commands_ = 0;
  // Every command id this session has seen (hashes: 8 bytes a command), so none is reused.
  std::unordered_set<size_t> used_ids_;
  std::unique_ptr<PolicyStream> policy_;
  std::shared_ptr<Command> running_;
  runtime::TimerQueue::Id idle_timer_ = 0;
  runtime::TimerQueue::Id limit_timer_ = 0;
  uint32_t width_ = 80;
  uint32_t height_ = 24;
  // The deciding shell rule's limits (its time limit bounds the shell session).
  common::Limits shell_limits_;

  // Shell mode.
  std::unique_ptr<ExecHandle> shell_;
  std::string recording_;
  int64_t recording_seq_ = 0;
  // Keystrokes that arrived before the shell's stream existed.
  std::string early_stdin_;
  // Stdin held for a command not yet running: past this, reading from the client pauses.
  static constexpr size_t kMaxEarlyStdin = 64 * 1024;
  absl::Time recording_last_flush_;
};

// A command from request to result.
struct Session::Command {
  explicit Command(prometheus::Gauge* live) : live(live) { live->Increment(); }
  ~Command() { live->Decrement(); }
  Command(const Command&) = delete;
  Command& operator=(const Command&) = delete;
  prometheus::Gauge* const live;
  std::string id;
  // The id of its COMMAND_RESULT event (also its journal entry's name).
  const std::string result_event_id = runtime::RandomId();
  // A journal entry exists for it; audit acknowledged its COMMAND_RESULT.
  bool journaled = false;
  bool result_acked = false;
  std::string line;
  // The argv as asked (and decided on by policy).
  std::vector<std::string> argv;
  // The argv that runs: Decision.argv when policy set it, then with every path a
  // KIND_PATH_UNDER check resolved put in. It runs inside the launch wrapper, which is recorded
  // nowhere as the user's command.
  std::vector<std::string> run_argv;
  common::Decision decision;
  absl::Time start;
  absl::Duration time_limit;
  int64_t output_limit = 0;
  int64_t stdout_bytes = 0;
  int64_t stderr_bytes = 0;
  int64_t forwarded = 0;
  crypto::EvpMdCtxPtr sha{EVP_MD_CTX_new()};
  std::string excerpt;
  bool excerpt_truncated = false;
  common::Termination stop_reason = common::TERMINATION_UNSPECIFIED;
  // StartCommand ran: an exec stream exists or is being opened (or an interrupt that came
  // before it ended the command there).
  bool launched = false;
  // The WebSocket upgrade succeeded.
  bool started = false;
  bool finished = false;
  std::unique_ptr<ExecHandle> handle;
  // The launch wrapper's report (pid and start time of the command's process).
  LaunchReport report;
  // Why the report was not understood (the command is then not run).
  std::string launch_error;
  // "go" was sent: the wrapper execs the argv, so a process runs as report.pid().
  bool go_sent = false;
  // The stop helper runs (or ran) against the process.
  bool stop_started = false;
  // The stop helper found the process leading its own process group: the SIGKILL follow-up
  // also reaches the group's survivors once the process itself has exited.
  bool group = false;
  // The process is known to be gone: its exit status arrived, it never ran, or the stop helper
  // found it gone or SIGKILLed it. Until then the time limit stays armed.
  bool gone = false;
  // Input that arrived before the process may run (bounded: reading pauses past it).
  std::string early_stdin;
  bool early_eof = false;
  runtime::TimerQueue::Id limit_timer = 0;
  absl::Time upgrade_started;
};

// Receives one command's stream. Owned by the stream; refers to the session and the command
// weakly, so a finished session is freed even while a stream winds down.
class Session::CommandObserver final : public ExecObserver {
 public:
  CommandObserver(std::weak_ptr<Session> session, std::weak_ptr<Command> cmd)
      : session_(std::move(session)), cmd_(std::move(cmd)) {}

  void OnStarted(const std::string& protocol) override {
    std::shared_ptr<Session> s = session_.lock();
    std::shared_ptr<Command> cmd = cmd_.lock();
    if (s == nullptr || cmd == nullptr) {
      return;
    }
    s->hub_->metrics()->protocol_total.Add({{"protocol", protocol}}).Increment();
    std::lock_guard<std::mutex> lock(s->mu_);
    cmd->started = true;
    s->hub_->metrics()->upgrade_latency.Observe(
        absl::ToDoubleSeconds(absl::Now() - cmd->upgrade_started));
  }

  void OnOutput(int channel, std::string data, std::function<void()> resume) override {
    std::shared_ptr<Session> s = session_.lock();
    std::shared_ptr<Command> cmd = cmd_.lock();
    if (s == nullptr || cmd == nullptr) {
      resume();
      return;
    }
    std::lock_guard<std::mutex> lock(s->mu_);
    Command& c = *cmd;
    if (c.report.status() != LaunchReport::Status::kReported) {
      // The first line of stderr is the launch wrapper's report, never the command's output;
      // nothing may come before it.
      if (c.report.status() == LaunchReport::Status::kInvalid || !c.launch_error.empty()) {
        resume();
        return;
      }
      std::string rest;
      const LaunchReport::Status st =
          channel == 2 ? c.report.Feed(data, &rest) : LaunchReport::Status::kInvalid;
      if (st == LaunchReport::Status::kInvalid) {
        s->LaunchFailedLocked(cmd, channel == 2
                                       ? "its process could not be identified (its launch "
                                         "report was malformed), so it could not have been "
                                         "stopped"
                                       : "its process could not be identified (it wrote output "
                                         "before its launch report), so it could not have been "
                                         "stopped");
        resume();
        return;
      }
      if (st == LaunchReport::Status::kPending) {
        resume();
        return;
      }
      s->OnLaunchReportedLocked(cmd);
      data = std::move(rest);
      if (data.empty()) {
        resume();
        return;
      }
    }
    (channel == 2 ? c.stderr_bytes : c.stdout_bytes) += static_cast<int64_t>(data.size());
    if (c.finished || s->state_ == State::kClosed ||
        c.stop_reason != common::TERMINATION_UNSPECIFIED) {
      resume();  // drain and drop: the command is being stopped
      return;
    }
    if (c.forwarded + static_cast<int64_t>(data.size()) > c.output_limit) {
      data.resize(static_cast<size_t>(std::max<int64_t>(0, c.output_limit - c.forwarded)));
      s->StopCommandLocked(common::TERMINATION_OUTPUT_LIMIT);
    }
    if (data.empty()) {
      resume();
      return;
    }
    c.forwarded += static_cast<int64_t>(data.size());
    const char tag = static_cast<char>(channel);
    EVP_DigestUpdate(c.sha.get(), &tag, 1);
    EVP_DigestUpdate(c.sha.get(), data.data(), data.size());
    if (c.excerpt.size() < s->opts_.excerpt_bytes) {
      const size_t room = s->opts_.excerpt_bytes - c.excerpt.size();
      c.excerpt.append(data, 0, room);
      c.excerpt_truncated = c.excerpt_truncated || data.size() > room;
    } else {
      c.excerpt_truncated = true;
    }
    s->hub_->metrics()
        ->output_bytes_total.Add({{"channel", channel == 2 ? "stderr" : "stdout"}})
        .Increment(static_cast<double>(data.size()));
    pb::SessionResponse msg;
    pb::OutputData* out = channel == 2 ? msg.mutable_stderr() : msg.mutable_stdout();
    out->set_command_id(c.id);
    out->set_data(std::move(data));
    // Backpressure: the pod's stream resumes only once this chunk is written to the client.
    s->SendLocked(std::move(msg), std::move(resume));
  }

  void OnExit(ExecResult result) override {
    std::shared_ptr<Session> s = session_.lock();
    std::shared_ptr<Command> cmd = cmd_.lock();
    if (s == nullptr || cmd == nullptr) {
      return;
    }
    std::lock_guard<std::mutex> lock(s->mu_);
    s->FinishCommandLocked(cmd, result);
  }

  void OnWritable() override {
    std::shared_ptr<Session> s = session_.lock();
    std::shared_ptr<Command> cmd = cmd_.lock();
    if (s == nullptr || cmd == nullptr) {
      return;
    }
    std::lock_guard<std::mutex> lock(s->mu_);
    if (s->running_ == cmd) {
      s->ResumeReadsLocked();
    }
  }

 private:
  const std::weak_ptr<Session> session_;
  const std::weak_ptr<Command> cmd_;
};

class Session::ShellObserver final : public ExecObserver {
 public:
  explicit ShellObserver(std::weak_ptr<Session> session) : session_(std::move(session)) {}

  void OnStarted(const std::string& protocol) override {
    if (std::shared_ptr<Session> s = session_.lock()) {
      s->hub_->metrics()->protocol_total.Add({{"protocol", protocol}}).Increment();
    }
  }

  void OnOutput(int, std::string data, std::function<void()> resume) override {
    std::shared_ptr<Session> s = session_.lock();
    if (s == nullptr) {
      resume();
      return;
    }
    std::lock_guard<std::mutex> lock(s->mu_);
    if (s->state_ == State::kClosed) {
      resume();
      return;
    }
    s->hub_->metrics()->output_bytes_total.Add({{"channel", "tty"}}).Increment(
        static_cast<double>(data.size()));
    s->RecordShellLocked('o', data);
    pb::SessionResponse msg;
    msg.mutable_stdout()->set_data(std::move(data));
    s->SendLocked(std::move(msg), std::move(resume));
  }

  void OnExit(ExecResult result) override {
    std::shared_ptr<Session> session = session_.lock();
    if (session == nullptr) {
      return;
    }
    std::lock_guard<std::mutex> lock(session->mu_);
    if (result.status.ok()) {
      session->CloseLocked(common::CLOSE_REASON_REMOTE_EXIT,
                           absl::StrCat("the shell exited with status ", result.exit_code));
    } else {
      session->CloseLocked(common::CLOSE_REASON_ERROR,
                           absl::StrCat("the shell stream failed: ", result.status.message()));
    }
  }

  void OnWritable() override {
    if (std::shared_ptr<Session> s = session_.lock()) {
      std::lock_guard<std::mutex> lock(s->mu_);
      s->ResumeReadsLocked();
    }
  }

 private:
  const std::weak_ptr<Session> session_;
};

// --- messages to the client ------------------------------------------------------------------

void Session::SendLocked(pb::SessionResponse message, std::function<void()> after_write) {
  if (finished_ || finish_pending_) {
    if (after_write) {
      after_write();
    }
    return;
  }
  out_.push_back({std::move(message), std::move(after_write)});
  MaybeWriteLocked();
}

void Session::MaybeWriteLocked() {
  if (writing_ || finished_) {
    return;
  }
  if (out_.empty()) {
    if (finish_pending_) {
      finished_ = true;
      Finish(finish_status_);
    }
    return;
  }
  writing_ = true;
  StartWrite(&out_.front().message);
}

void Session::OnWriteDone(bool ok) {
  std::function<void()> after;
  {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    after = std::move(out_.front().after_write);
    out_.pop_front();
    if (!ok) {
      // The client is gone; the stream ends with OnCancel/OnDone.
      for (Outgoing& o : out_) {
        if (o.after_write) {
          o.after_write();
        }
      }
      out_.clear();
      CloseLocked(common::CLOSE_REASON_DISCONNECTED, "the client stopped reading");
      // The session may have been closing already (its `closed` message was the write that
      // failed): the call must still be finished, or it never ends (and a server shutdown
      // waits for it forever).
      MaybeWriteLocked();
    } else {
      MaybeWriteLocked();
    }
  }
  if (after) {
    after();
  }
}

void Session::FinishLocked(const grpc::Status& status) {
  if (finished_ || finish_pending_) {
    return;
  }
  finish_pending_ = true;
  finish_status_ = status;
  MaybeWriteLocked();
}

// --- audit -----------------------------------------------------------------------------------

common::AuditEvent Session::BaseEventLocked(common::EventKind kind) {
  common::AuditEvent e;
  e.set_id(runtime::RandomId());
  *e.mutable_time() = wire::ToProtoTimestamp(absl::Now());
  e.set_kind(kind);
  e.set_source_service("exec");
  e.set_session_id(session_id_);
  *e.mutable_principal() = principal_;
  *e.mutable_target() = target_;
  e.set_source_address(source_address_);
  return e;
}

void Session::Audit(common::AuditEvent event, std::function<void()> then,
                    std::function<void(absl::Status)> on_fail) {
  const bool strict = opts_.strict_audit;
  std::shared_ptr<Session> self = shared_from_this();
  const std::string kind = common::EventKind_Name(event.kind());
  hub_->audit()->Record(std::move(event), [self, strict, then, on_fail, kind](absl::Status s) {
    if (!s.ok()) {
      self->hub_->metrics()
          ->audit_failures_total.Add({{"reason", absl::StatusCodeToString(s.code())}})
          .Increment();
      log::Error("audit event not recorded",
                 {{"session_id", self->session_id_}, {"kind", kind}, {"error", s.ToString()}});
    }
    if (!strict) {
      return;  // `then` already ran
    }
    if (s.ok()) {
      if (then) {
        then();
      }
    } else if (on_fail) {
      on_fail(s);
    }
  });
  if (!strict && then) {
    then();
  }
}

// --- reading ---------------------------------------------------------------------------------

void Session::OnReadDone(bool ok) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_read_done_ = true;
  }
  const bool again = HandleReadDone(ok);
  std::lock_guard<std::mutex> lock(mu_);
  in_read_done_ = false;
  // read_paused_: stdin is backed up, and the next read waits for it to drain.
  if (again && !read_paused_ && !finished_ && !finish_pending_ && state_ != State::kClosed) {
    StartRead(&request_);
  }
}

// Handles one client message; false when no further message is to be read.
bool Session::HandleReadDone(bool ok) {
  if (!ok) {
    std::lock_guard<std::mutex> lock(mu_);
    if (context_->IsCancelled()) {
      // The stream broke without a close (the caller crashed or its connection dropped).
      CloseLocked(common::CLOSE_REASON_DISCONNECTED, "the client's stream broke without a close");
    } else {
      // A half-close: the client ended the stream cleanly.
      CloseLocked(common::CLOSE_REASON_CLIENT, "the client ended the stream");
    }
    return false;
  }
  pb::SessionRequest req = std::move(request_);
  State state;
  {
    std::lock_guard<std::mutex> lock(mu_);
    state = state_;
    if (state_ == State::kReady) {
      ResetIdleTimerLocked();
    }
  }
  switch (req.kind_case()) {
    case pb::SessionRequest::kOpen:
      if (state != State::kAwaitOpen) {
        std::lock_guard<std::mutex> lock(mu_);
        FinishLocked(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                  "the session is already open; `open` comes once"));
        return false;
      }
      HandleOpen(req.open());
      break;
    case pb::SessionRequest::kCommand:
      HandleCommand(req.command());
      break;
    case pb::SessionRequest::kStdin: {
      std::lock_guard<std::mutex> lock(mu_);
      if (state_ != State::kReady) {
        break;
      }
      if (mode_ == common::SESSION_MODE_SHELL) {
        RecordShellLocked('i', req.stdin().data());
        if (shell_ != nullptr) {
          read_paused_ = !shell_->WriteStdin(req.stdin().data());
        } else if (early_stdin_.size() + req.stdin().data().size() <= kMaxEarlyStdin) {
          // Typed between `ready` and the shell's stream: kept for it (bounded).
          early_stdin_ += req.stdin().data();
        }
      } else if (running_ != nullptr && !running_->finished) {
        Command& c = *running_;
        if (c.go_sent && c.handle != nullptr) {
          // Flow control: past the stream's high watermark, the client is not read until the
          // stream drains (OnWritable), so the Kubernetes stream is never overrun.
          if (!req.stdin().data().empty()) {
            read_paused_ = !c.handle->WriteStdin(req.stdin().data());
          }
          if (req.stdin().eof()) {
            c.handle->CloseStdin();
          }
        } else {
          // The command is still being decided, started or identified: its input waits, and
          // past kMaxEarlyStdin the client is not read until it runs.
          c.early_stdin += req.stdin().data();
          c.early_eof = c.early_eof || req.stdin().eof();
          read_paused_ = c.early_stdin.size() >= kMaxEarlyStdin;
        }
      }
      break;
    }
    case pb::SessionRequest::kResize: {
      std::lock_guard<std::mutex> lock(mu_);
      const uint32_t w = std::clamp<uint32_t>(req.resize().size().width(), 1, 1000);
      const uint32_t h = std::clamp<uint32_t>(req.resize().size().height(), 1, 1000);
      width_ = w;
      height_ = h;
      if (shell_ != nullptr) {
        shell_->Resize(w, h);
        RecordShellLocked('r', absl::StrCat(w, "x", h));
      }
      break;
    }
    case pb::SessionRequest::kInterrupt: {
      std::lock_guard<std::mutex> lock(mu_);
      if (shell_ != nullptr) {
        RecordShellLocked('i', "\x03");
        (void)shell_->WriteStdin("\x03");
      } else if (running_ != nullptr) {
        StopCommandLocked(common::TERMINATION_INTERRUPTED);
      }
      break;
    }
    case pb::SessionRequest::kClose: {
      std::lock_guard<std::mutex> lock(mu_);
      CloseLocked(common::CLOSE_REASON_CLIENT, "the client closed the session");
      return false;
    }
    default: {
      std::lock_guard<std::mutex> lock(mu_);
      FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                "empty or unknown SessionRequest"));
      return false;
    }
  }
  return true;
}

void Session::ResumeReadsLocked() {
  if (!read_paused_) {
    return;
  }
  read_paused_ = false;
  if (in_read_done_) {
    return;  // OnReadDone starts the next read when it returns
  }
  if (!finished_ && !finish_pending_ && state_ != State::kClosed) {
    StartRead(&request_);
  }
}

// --- open ------------------------------------------------------------------------------------

void Session::HandleOpen(const pb::OpenSession& open) {
  std::unique_lock<std::mutex> lock(mu_);
  state_ = State::kOpening;
  session_id_ = runtime::RandomId();
  close_event_id_ = runtime::RandomId();
  opened_at_ = absl::Now();
  client_ = open.client().substr(0, 256);
  mode_ = open.mode() == common::SESSION_MODE_SHELL ? common::SESSION_MODE_SHELL
                                                     : common::SESSION_MODE_COMMAND;
  if (open.has_size() && open.size().width() > 0 && open.size().height() > 0) {
    width_ = std::min<uint32_t>(open.size().width(), 1000);
    height_ = std::min<uint32_t>(open.size().height(), 1000);
  }
  if (!open.source_address().empty()) {
    // Recorded as reported by the calling service, next to the caller's own address.
    source_address_ = absl::StrCat(open.source_address().substr(0, 128), " via ", context_->peer());
  }
  // 1. The credential, verified here: exec never trusts a caller's word for who the user is.
  absl::StatusOr<auth::VerifiedToken> verified =
      hub_->verifier()->Verify(open.credential().bearer_token());
  if (!verified.ok()) {
    const std::string reason = auth::AuthFailureReason(verified.status());
    hub_->metrics()->auth_failures_total.Add({{"reason", reason}}).Increment();
    common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_AUTH_FAILURE);
    e.clear_principal();
    e.mutable_auth_failure()->set_reason(reason);
    e.mutable_auth_failure()->set_message(std::string(verified.status().message()));
    hub_->audit()->Record(std::move(e), [](absl::Status) {});
    RefuseOpenLocked(
        grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                     absl::StrCat("credential refused: ", verified.status().message())));
    return;
  }
  principal_ = verified->principal;
  expires_ = std::min(verified->expires, opened_at_ + opts_.max_session);
  expiry_is_credential_ = verified->expires < opened_at_ + opts_.max_session;

  // 2. The target's names, before they reach a URL.
  target_.set_namespace_(open.target().namespace_());
  target_.set_pod(open.target().pod());
  target_.set_container(open.target().container());
  if (absl::Status s =
          k8s::ValidateTarget(target_.namespace_(), target_.pod(), target_.container());
      !s.ok()) {
    RefuseOpenLocked(wire::ToGrpcStatus(s));
    return;
  }

  // 3. Admission.
  if (absl::Status s = hub_->Admit(shared_from_this(), principal_.user()); !s.ok()) {
    RefuseOpenLocked(wire::ToGrpcStatus(s));
    return;
  }
  admitted_ = true;
  lock.unlock();

  // 4. Policy: a target the user has no rule for is refused before Kubernetes is asked.
  std::shared_ptr<Session> self = shared_from_this();
  AskScope(false, [self](absl::StatusOr<bool> in_scope) { self->OnScope(std::move(in_scope)); });
}

namespace {

// The one answer to a target that does not exist or that no rule lets the user use.
constexpr char kTargetUnavailable[] =
    "no such target, or no rule lets you use it (the targets you may use are listed by "
    "ListTargets)";

// One ListAllowed call, alive until its answer.
struct ScopeCall {
  grpc::ClientContext context;
  podgate::policy::v1::ListAllowedRequest request;
  podgate::policy::v1::ListAllowedResponse answer;
};

}  // namespace

void Session::AskScope(bool labels_known, std::function<void(absl::StatusOr<bool>)> done) {
  auto call = std::make_shared<ScopeCall>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    *call->request.mutable_principal() = principal_;
    *call->request.mutable_target() = target_;
    call->request.set_ignore_pod_labels(!labels_known);
  }
  call->context.set_deadline(std::chrono::system_clock::now() +
                             absl::ToChronoNanoseconds(opts_.policy_timeout));
  hub_->policy()->async()->ListAllowed(
      &call->context, &call->request, &call->answer,
      [call, done = std::move(done)](grpc::Status status) {
        if (!status.ok()) {
          done(absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                            status.error_message()));
          return;
        }
        done(call->answer.commands_size() > 0 || call->answer.shell_allowed() ||
             call->answer.superuser());
      });
}

void Session::RefuseOpenLocked(grpc::Status status) {
  const char* mode = mode_ == common::SESSION_MODE_SHELL ? "shell" : "command";
  hub_->metrics()->sessions_total.Add({{"mode", mode}, {"outcome", "refused"}}).Increment();
  FinishLocked(std::move(status));
}

void Session::RefuseTargetLocked(const std::string& why) {
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_DECISION);
  e.mutable_decision()->set_verdict(common::VERDICT_DENY);
  e.mutable_decision()->set_rule("target");
  e.mutable_decision()->set_reason(why);
  hub_->audit()->Record(std::move(e), [](absl::Status) {});
  log::Info("target refused", {{"session_id", session_id_},
                               {"user", principal_.user()},
                               {"namespace", target_.namespace_()},
                               {"pod", target_.pod()},
                               {"reason", why}});
  RefuseOpenLocked(grpc::Status(grpc::StatusCode::NOT_FOUND, kTargetUnavailable));
}

void Session::OnScope(absl::StatusOr<bool> in_scope) {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed || finished_ || finish_pending_) {
    return;
  }
  if (!in_scope.ok()) {
    // Fail closed: without policy, no target is looked up.
    hub_->metrics()
        ->policy_failures_total
        .Add({{"reason", absl::StatusCodeToString(in_scope.status().code())}})
        .Increment();
    RefuseOpenLocked(grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        absl::StrCat("policy could not be asked about the target: ", in_scope.status().message())));
    return;
  }
  if (!*in_scope) {
    RefuseTargetLocked(absl::StrCat("no rule lets ", principal_.user(), " use ",
                                    target_.namespace_(), "/", target_.pod(),
                                    target_.container().empty() ? "" : "/", target_.container(),
                                    " (asked before any Kubernetes call)"));
    return;
  }
  lock.unlock();
  // 5. The pod, from the API.
  std::shared_ptr<Session> self = shared_from_this();
  hub_->kube()->GetPod(target_.namespace_(), target_.pod(),
                       [self](absl::StatusOr<PodView> pod) { self->OnPod(std::move(pod)); });
}

void Session::OnPod(absl::StatusOr<PodView> pod) {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed || finished_ || finish_pending_) {
    return;
  }
  auto refuse = [&](const absl::Status& s) { RefuseOpenLocked(wire::ToGrpcStatus(s)); };
  if (!pod.ok()) {
    hub_->metrics()
        ->api_errors_total.Add({{"code", absl::StatusCodeToString(pod.status().code())}})
        .Increment();
    if (pod.status().code() == absl::StatusCode::kNotFound) {
      // The same answer as for a target without a rule.
      RefuseTargetLocked(absl::StrCat("pod not found: ", pod.status().message()));
      return;
    }
    refuse(pod.status());
    return;
  }
  // With the pod's labels known, a rule must still be in scope (rules may select by label)
  // before the pod's phase or containers are told.
  for (const auto& [k, v] : pod->labels) {
    (*target_.mutable_pod_labels())[k] = v;
  }
  std::shared_ptr<Session> self = shared_from_this();
  lock.unlock();
  AskScope(true, [self, pod = *std::move(pod)](absl::StatusOr<bool> in_scope) mutable {
    self->OnPodInScope(std::move(pod), std::move(in_scope));
  });
}

void Session::OnPodInScope(PodView found, absl::StatusOr<bool> in_scope) {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed || finished_ || finish_pending_) {
    return;
  }
  auto refuse = [&](const absl::Status& s) { RefuseOpenLocked(wire::ToGrpcStatus(s)); };
  if (!in_scope.ok()) {
    hub_->metrics()
        ->policy_failures_total
        .Add({{"reason", absl::StatusCodeToString(in_scope.status().code())}})
        .Increment();
    refuse(absl::UnavailableError(
        absl::StrCat("policy could not be asked about the target: ", in_scope.status().message())));
    return;
  }
  if (!*in_scope) {
    RefuseTargetLocked(absl::StrCat("no rule lets ", principal_.user(), " use ",
                                    target_.namespace_(), "/", target_.pod(), " with its labels"));
    return;
  }
  absl::StatusOr<PodView> pod = std::move(found);
  if (pod->phase != "Running") {
    refuse(absl::FailedPreconditionError(absl::StrCat("pod ", target_.namespace_(), "/",
                                                      target_.pod(), " is ", pod->phase,
                                                      ", not Running")));
    return;
  }
  absl::StatusOr<std::string> container = ResolveContainer(*pod, target_.container());
  if (!container.ok()) {
    refuse(container.status());
    return;
  }
  pod_ = *pod;
  target_.set_container(*container);
  policy_ = std::make_unique<PolicyStream>(hub_->policy(), hub_->timers());

  if (mode_ == common::SESSION_MODE_SHELL) {
    podgate::policy::v1::AuthorizeRequest ask;
    *ask.mutable_principal() = principal_;
    *ask.mutable_target() = target_;
    ask.mutable_shell();
    std::shared_ptr<Session> self = shared_from_this();
    lock.unlock();
    policy_->Ask(std::move(ask), opts_.policy_timeout,
                 [self](absl::StatusOr<podgate::policy::v1::AuthorizeResponse> answer) {
                   self->AfterShellDecision(std::move(answer));
                 });
    return;
  }
  lock.unlock();
  SendReady();
}

void Session::AfterShellDecision(absl::StatusOr<podgate::policy::v1::AuthorizeResponse> answer) {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed || finished_ || finish_pending_) {
    return;
  }
  common::Decision decision;
  if (!answer.ok()) {
    hub_->metrics()->policy_failures_total.Add({{"reason", absl::StatusCodeToString(answer.status().code())}}).Increment();
    decision.set_verdict(common::VERDICT_DENY);
    decision.set_rule("policy-unavailable");
    decision.set_reason(absl::StrCat("policy could not be asked: ", answer.status().message()));
  } else {
    decision = answer->decision();
  }
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_DECISION);
  *e.mutable_decision() = decision;
  std::shared_ptr<Session> self = shared_from_this();
  lock.unlock();
  const bool allowed = decision.verdict() == common::VERDICT_ALLOW;
  Audit(
      std::move(e),
      [self, allowed, decision] {
        std::unique_lock<std::mutex> lock(self->mu_);
        if (!allowed) {
          self->RefuseOpenLocked(grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                              absl::StrCat("shell not allowed: ", decision.reason(),
                                                           " (rule ", decision.rule(), ")")));
          return;
        }
        self->shell_limits_ = decision.limits();
        lock.unlock();
        self->CheckRootThen(decision.root_allowed(), [self](absl::Status s) {
          if (!s.ok()) {
            std::lock_guard<std::mutex> lock(self->mu_);
            self->RefuseOpenLocked(wire::ToGrpcStatus(s));
            return;
          }
          self->SendReady();
        });
      },
      [self](absl::Status s) {
        std::lock_guard<std::mutex> lock(self->mu_);
        self->FinishLocked(grpc::Status(
            grpc::StatusCode::UNAVAILABLE,
            absl::StrCat("audit is unavailable, so nothing may run (strict mode): ", s.message())));
      });
}

// Runs `next` with OK when the container may be used, or PERMISSION_DENIED from the root guard.
void Session::CheckRootThen(bool root_allowed, std::function<void(absl::Status)> next) {
  const std::string key = absl::StrCat(pod_.uid, "/", target_.container());
  auto judge = [this, root_allowed](absl::StatusOr<int64_t> uid) -> absl::Status {
    if (uid.ok() && *uid != 0) {
      hub_->metrics()->root_guard_total.Add({{"result", "allowed"}}).Increment();
      return absl::OkStatus();
    }
    if (root_allowed) {
      hub_->metrics()->root_guard_total.Add({{"result", "root_allowed"}}).Increment();
      return absl::OkStatus();
    }
    if (uid.ok()) {
      hub_->metrics()->root_guard_total.Add({{"result", "root_denied"}}).Increment();
      return absl::PermissionDeniedError(
          absl::StrCat("container ", target_.container(),
                       " runs as root (uid 0) and the rule does not allow root"));
    }
    hub_->metrics()->root_guard_total.Add({{"result", "unknown_denied"}}).Increment();
    return absl::PermissionDeniedError(
        absl::StrCat("the container's uid could not be determined (", uid.status().message(),
                     "), so it is treated as root"));
  };
  // What the spec declares comes first: a container declared to run as root (its effective
  // securityContext.runAsUser is 0; the container's field overrides the pod's) is root
  // whatever a probe would say, and is refused without one. Anything else is probed.
  const SecurityContextView declared = EffectiveSecurityContext(pod_, target_.container());
  if (declared.run_as_user.has_value() && *declared.run_as_user == 0) {
    if (root_allowed) {
      hub_->metrics()->root_guard_total.Add({{"result", "root_allowed"}}).Increment();
      next(absl::OkStatus());
      return;
    }
    hub_->metrics()->root_guard_total.Add({{"result", "declared_root_denied"}}).Increment();
    next(absl::PermissionDeniedError(
        absl::StrCat("container ", target_.container(),
                     " is declared to run as root (securityContext.runAsUser: 0",
                     declared.run_as_non_root.value_or(false)
                         ? ", with runAsNonRoot: true, which the kubelet refuses"
                         : "",
                     ") and the rule does not allow root")));
    return;
  }
  if (std::optional<int64_t> cached = hub_->CachedUid(key); cached.has_value()) {
    next(judge(*cached));
    return;
  }
  ExecSpec spec;
  spec.namespace_name = target_.namespace_();
  spec.pod = target_.pod();
  spec.container = target_.container();
  spec.argv = UidProbeArgv();
  std::shared_ptr<Session> self = shared_from_this();
  RunProbe(hub_->kube(), hub_->timers(), spec, opts_.probe_timeout,
           [self, key, judge, next](absl::StatusOr<ProbeOutput> out) {
             absl::StatusOr<int64_t> uid = absl::UnknownError("");
             if (!out.ok()) {
               uid = out.status();
             } else if (out->exit_code != 0) {
               uid = absl::FailedPreconditionError(
                   absl::StrCat("`id -u` exited with status ", out->exit_code));
             } else {
               uid = ParseUid(out->stdout_text);
             }
             if (uid.ok()) {
               self->hub_->CacheUid(key, *uid);
             }
             next(judge(uid));
           });
}

void Session::SendReady() {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed || finished_ || finish_pending_) {
    return;
  }
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_SESSION_OPEN);
  e.mutable_session_open()->set_mode(mode_);
  e.mutable_session_open()->set_client(client_);
  std::shared_ptr<Session> self = shared_from_this();
  // Without the lock: outside strict mode `then` runs at once and takes it.
  lock.unlock();
  Audit(
      std::move(e),
      [self] {
        std::unique_lock<std::mutex> lock(self->mu_);
        if (self->state_ == State::kClosed || self->finished_ || self->finish_pending_) {
          return;
        }
        self->state_ = State::kReady;
        const bool shell = self->mode_ == common::SESSION_MODE_SHELL;
        // A shell rule's time limit bounds the whole shell session.
        if (shell && self->shell_limits_.has_time_limit() &&
            wire::FromProtoDuration(self->shell_limits_.time_limit()) > absl::ZeroDuration()) {
          const absl::Time rule_end =
              self->opened_at_ + wire::FromProtoDuration(self->shell_limits_.time_limit());
          if (rule_end < self->expires_) {
            self->expires_ = rule_end;
            self->expiry_is_credential_ = false;
          }
        }

        self->hub_->metrics()
            ->sessions_total.Add({{"mode", shell ? "shell" : "command"}, {"outcome", "opened"}})
            .Increment();
        self->hub_->metrics()->sessions_active.Add({{"mode", shell ? "shell" : "command"}}).Increment();
        pb::SessionResponse ready;
        ready.mutable_ready()->set_session_id(self->session_id_);
        *ready.mutable_ready()->mutable_principal() = self->principal_;
        *ready.mutable_ready()->mutable_target() = self->target_;
        ready.mutable_ready()->set_mode(self->mode_);
        *ready.mutable_ready()->mutable_expires_time() = wire::ToProtoTimestamp(self->expires_);
        self->SendLocked(std::move(ready));
        log::Info("session open", {{"session_id", self->session_id_},
                                   {"user", self->principal_.user()},
                                   {"namespace", self->target_.namespace_()},
                                   {"pod", self->target_.pod()},
                                   {"container", self->target_.container()},
                                   {"mode", shell ? "shell" : "command"}});
        std::weak_ptr<Session> weak = self;
        self->limit_timer_ = self->hub_->timers()->Schedule(self->expires_, [weak] {
          if (auto s = weak.lock()) {
            std::lock_guard<std::mutex> lock(s->mu_);
            const bool credential = s->expiry_is_credential_;
            s->CloseLocked(credential ? common::CLOSE_REASON_CREDENTIAL_EXPIRED
                                      : common::CLOSE_REASON_SESSION_LIMIT,
                           credential ? "the credential expired" : "the session reached its time limit");
          }
        });
        self->ResetIdleTimerLocked();
        lock.unlock();
        if (shell) {
          self->StartShell();
        }
      },
      [self](absl::Status s) {
        std::lock_guard<std::mutex> lock(self->mu_);
        self->FinishLocked(grpc::Status(
            grpc::StatusCode::UNAVAILABLE,
            absl::StrCat("audit is unavailable, so nothing may run (strict mode): ", s.message())));
      });
}

void Session::ResetIdleTimerLocked() {
  if (idle_timer_ != 0) {
    hub_->timers()->Cancel(idle_timer_);
  }
  std::weak_ptr<Session> weak = shared_from_this();
  idle_timer_ = hub_->timers()->After(opts_.idle_timeout, [weak] {
    if (auto s = weak.lock()) {
      std::lock_guard<std::mutex> lock(s->mu_);
      if (s->running_ != nullptr || s->shell_ != nullptr) {
        // Output is activity too; a running command or shell keeps the session.
        s->ResetIdleTimerLocked();
        return;
      }
      s->CloseLocked(common::CLOSE_REASON_IDLE_TIMEOUT,
                     absl::StrCat("no input for ", absl::FormatDuration(s->opts_.idle_timeout)));
    }
  });
}

// --- command mode ----------------------------------------------------------------------------

void Session::DenyLocked(const std::string& command_id, const std::string& rule,
                         const std::string& reason) {
  pb::SessionResponse msg;
  msg.mutable_denied()->set_command_id(command_id);
  msg.mutable_denied()->set_rule(rule);
  msg.mutable_denied()->set_reason(reason);
  SendLocked(std::move(msg));
}

void Session::RecordRefusalLocked(const std::string& command_id, const std::string& line,
                                  const std::string& rule, const std::string& reason) {
  // Every refusal is one DECISION record, so `rule=<rule> verdict=deny` queries find it.
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_DECISION);
  e.set_command_id(command_id);
  e.mutable_decision()->set_verdict(common::VERDICT_DENY);
  e.mutable_decision()->set_rule(rule);
  e.mutable_decision()->set_reason(reason);
  e.mutable_command_request()->set_line(line.substr(0, 16384));
  hub_->audit()->Record(std::move(e), [](absl::Status) {});
}

void Session::HandleCommand(const pb::RunCommand& run) {
  std::unique_lock<std::mutex> lock(mu_);
  const std::string id = run.command_id().empty() ? runtime::RandomId()
                                                  : run.command_id().substr(0, 64);
  if (state_ != State::kReady || mode_ != common::SESSION_MODE_COMMAND) {
    pb::SessionResponse msg;
    msg.mutable_error()->set_command_id(id);
    msg.mutable_error()->mutable_status()->set_code(
        static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
    msg.mutable_error()->mutable_status()->set_message(
        state_ != State::kReady ? "the session is not ready" : "commands need command mode");
    SendLocked(std::move(msg));
    return;
  }
  if (!used_ids_.insert(std::hash<std::string>{}(id)).second) {
    // Ids are unique per session: a reused one would make two commands one in audit.
    const std::string why = absl::StrCat(
        "command id \"", id,
        "\" was already used in this session; ids are unique per session (send none and exec "
        "assigns one)");
    RecordRefusalLocked(id, run.line(), "duplicate-id", why);
    pb::SessionResponse msg;
    msg.mutable_error()->set_command_id(id);
    msg.mutable_error()->mutable_status()->set_code(
        static_cast<int>(grpc::StatusCode::ALREADY_EXISTS));
    msg.mutable_error()->mutable_status()->set_message(why);
    SendLocked(std::move(msg));
    return;
  }
  if (running_ != nullptr) {
    constexpr char kBusy[] = "a command is running; interrupt it or wait for its exit";
    RecordRefusalLocked(id, run.line(), "busy", kBusy);
    pb::SessionResponse msg;
    msg.mutable_error()->set_command_id(id);
    msg.mutable_error()->mutable_status()->set_code(
        static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
    msg.mutable_error()->mutable_status()->set_message(kBusy);
    SendLocked(std::move(msg));
    return;
  }
  if (hub_->audit()->saturated()) {
    // Records wait for audit's ack and are never dropped; past the client's bound, no new
    // command starts (fail closed) rather than a record being forgotten.
    hub_->metrics()->commands_total.Add({{"decision", "error"}, {"result", "refused"}}).Increment();
    pb::SessionResponse msg;
    msg.mutable_error()->set_command_id(id);
    msg.mutable_error()->mutable_status()->set_code(
        static_cast<int>(grpc::StatusCode::UNAVAILABLE));
    msg.mutable_error()->mutable_status()->set_message(
        absl::StrCat("audit has ", hub_->audit()->pending(),
                     " records not yet acknowledged, so no command runs until they are durable"));
    SendLocked(std::move(msg));
    return;
  }
  auto cmd = std::make_shared<Command>(&hub_->metrics()->live_commands);
  cmd->id = id;
  cmd->line = run.line().substr(0, 16384);
  running_ = cmd;
  ++commands_;

  common::AuditEvent request = BaseEventLocked(common::EVENT_KIND_COMMAND_REQUEST);
  request.set_command_id(id);
  request.mutable_command_request()->set_line(cmd->line);
  absl::StatusOr<std::vector<std::string>> argv = SplitCommandLine(run.line());
  if (!argv.ok()) {
    request.mutable_command_request()->set_parse_error(std::string(argv.status().message()));
    hub_->audit()->Record(std::move(request), [](absl::Status) {});
    RecordRefusalLocked(id, cmd->line, "parser", std::string(argv.status().message()));
    hub_->metrics()->commands_total.Add({{"decision", "deny"}, {"result", "refused"}}).Increment();
    ClearRunningLocked();
    DenyLocked(id, "parser", std::string(argv.status().message()));
    return;
  }
  cmd->argv = *argv;
  for (const std::string& a : cmd->argv) {
    request.mutable_command_request()->add_argv(a);
  }
  hub_->audit()->Record(std::move(request), [](absl::Status) {});

  podgate::policy::v1::AuthorizeRequest ask;
  *ask.mutable_principal() = principal_;
  *ask.mutable_target() = target_;
  for (const std::string& a : cmd->argv) {
    ask.mutable_command()->add_argv(a);
  }
  std::shared_ptr<Session> self = shared_from_this();
  lock.unlock();
  policy_->Ask(std::move(ask), opts_.policy_timeout,
               [self, cmd](absl::StatusOr<podgate::policy::v1::AuthorizeResponse> answer) {
                 self->OnDecision(cmd, std::move(answer));
               });
}

void Session::OnDecision(std::shared_ptr<Command> cmd,
                         absl::StatusOr<podgate::policy::v1::AuthorizeResponse> answer) {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed || running_ != cmd) {
    return;
  }
  if (!answer.ok()) {
    hub_->metrics()
        ->policy_failures_total.Add({{"reason", absl::StatusCodeToString(answer.status().code())}})
        .Increment();
    cmd->decision.set_verdict(common::VERDICT_DENY);
    cmd->decision.set_rule("policy-unavailable");
    cmd->decision.set_reason(
        absl::StrCat("policy could not be asked, so the command is refused: ",
                     answer.status().message()));
  } else {
    cmd->decision = answer->decision();
  }
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_DECISION);
  e.set_command_id(cmd->id);
  *e.mutable_decision() = cmd->decision;
  e.mutable_command_request()->set_line(cmd->line);
  for (const std::string& a : cmd->argv) {
    e.mutable_command_request()->add_argv(a);
  }
  std::shared_ptr<Session> self = shared_from_this();
  lock.unlock();
  Audit(
      std::move(e),
      [self, cmd] {
        std::unique_lock<std::mutex> lock(self->mu_);
        if (self->state_ == State::kClosed || self->running_ != cmd) {
          return;
        }
        if (cmd->decision.verdict() != common::VERDICT_ALLOW) {
          self->hub_->metrics()->commands_total.Add({{"decision", "deny"}, {"result", "refused"}}).Increment();
          self->ClearRunningLocked();
          self->DenyLocked(cmd->id, cmd->decision.rule(), cmd->decision.reason());
          return;
        }
        lock.unlock();
        self->CheckRootThen(cmd->decision.root_allowed(), [self, cmd](absl::Status s) {
          if (!s.ok()) {
            std::lock_guard<std::mutex> lock(self->mu_);
            if (self->running_ != cmd) {
              return;
            }
            self->hub_->metrics()->commands_total.Add({{"decision", "deny"}, {"result", "refused"}}).Increment();
            self->ClearRunningLocked();
            common::AuditEvent denial = self->BaseEventLocked(common::EVENT_KIND_DECISION);
            denial.set_command_id(cmd->id);
            denial.mutable_decision()->set_verdict(common::VERDICT_DENY);
            denial.mutable_decision()->set_rule("root-guard");
            denial.mutable_decision()->set_reason(std::string(s.message()));
            denial.mutable_decision()->set_policy_version(cmd->decision.policy_version());
            self->hub_->audit()->Record(std::move(denial), [](absl::Status) {});
            self->DenyLocked(cmd->id, "root-guard", std::string(s.message()));
            return;
          }
          {
            std::lock_guard<std::mutex> lock(self->mu_);
            cmd->run_argv = ArgvToRun(cmd->decision, cmd->argv);
          }
          self->RunChecks(cmd, 0);
        });
      },
      [self, cmd](absl::Status s) {
        std::lock_guard<std::mutex> lock(self->mu_);
        if (self->running_ != cmd) {
          return;
        }
        self->ClearRunningLocked();
        self->hub_->metrics()->commands_total.Add({{"decision", "error"}, {"result", "refused"}}).Increment();
        // The decision keeps being sent until audit acks it, and it may say allow: the trail
        // must also say the command never ran.
        common::AuditEvent not_run = self->BaseEventLocked(common::EVENT_KIND_COMMAND_RESULT);
        not_run.set_id(cmd->result_event_id);
        not_run.set_command_id(cmd->id);
        not_run.mutable_command_result()->set_line(cmd->line);
        not_run.mutable_command_result()->set_termination(common::TERMINATION_ERROR);
        not_run.mutable_command_result()->set_error(
            absl::StrCat("not run: audit did not acknowledge the decision in time (strict mode): ",
                         s.message()));
        self->hub_->audit()->Record(std::move(not_run), [](absl::Status) {});
        pb::SessionResponse msg;
        msg.mutable_error()->set_command_id(cmd->id);
        msg.mutable_error()->mutable_status()->set_code(static_cast<int>(grpc::StatusCode::UNAVAILABLE));
        msg.mutable_error()->mutable_status()->set_message(absl::StrCat(
            "audit is unavailable, so the command was not run (strict mode): ", s.message()));
        self->SendLocked(std::move(msg));
      });
}

// Runs the decision's checks in the container from `index` on, one probe at a time and in
// order; each may change the argv to run. The first that does not pass refuses the command.
void Session::RunChecks(std::shared_ptr<Command> cmd, int index) {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed || running_ != cmd) {
    return;
  }
  if (index >= cmd->decision.checks_size() || cmd->stop_reason != common::TERMINATION_UNSPECIFIED) {
    lock.unlock();
    StartCommand(cmd);
    return;
  }
  const common::ContainerCheck& check = cmd->decision.checks(index);
  const std::string where = absl::StrCat(target_.pod(), "/", target_.container());
  std::variant<std::vector<std::string>, CheckOutcome> prepared =
      PrepareCheck(check, cmd->run_argv, where);
  if (auto* outcome = std::get_if<CheckOutcome>(&prepared)) {
    RefuseByCheckLocked(cmd, check, *outcome);
    return;
  }
  ExecSpec spec;
  spec.namespace_name = target_.namespace_();
  spec.pod = target_.pod();
  spec.container = target_.container();
  spec.argv = std::get<std::vector<std::string>>(std::move(prepared));
  std::shared_ptr<Session> self = shared_from_this();
  lock.unlock();
  RunProbe(hub_->kube(), hub_->timers(), spec, opts_.probe_timeout,
           [self, cmd, index, where](absl::StatusOr<ProbeOutput> answer) {
             {
               std::lock_guard<std::mutex> lock(self->mu_);
               if (self->state_ == State::kClosed || self->running_ != cmd) {
                 return;
               }
               const common::ContainerCheck& check = cmd->decision.checks(index);
               CheckOutcome outcome = JudgeCheck(check, cmd->run_argv, answer, where);
               if (outcome.result != CheckOutcome::Result::kPassed) {
                 self->RefuseByCheckLocked(cmd, check, outcome);
                 return;
               }
               self->hub_->metrics()
                   ->container_checks_total
                   .Add({{"kind", CheckKindLabel(check)}, {"result", "passed"}})
                   .Increment();
               cmd->run_argv = std::move(outcome.argv);
             }
             self->RunChecks(cmd, index + 1);
           });
}

// A check refused the command: recorded like the root guard's refusal, as a second decision
// (deny, rule container-check) of the same policy version.
void Session::RefuseByCheckLocked(const std::shared_ptr<Command>& cmd,
                                  const common::ContainerCheck& check,
                                  const CheckOutcome& outcome) {
  hub_->metrics()
      ->container_checks_total
      .Add({{"kind", CheckKindLabel(check)}, {"result", CheckResultLabel(outcome.result)}})
      .Increment();
  hub_->metrics()->commands_total.Add({{"decision", "deny"}, {"result", "refused"}}).Increment();
  ClearRunningLocked();
  common::AuditEvent denial = BaseEventLocked(common::EVENT_KIND_DECISION);
  denial.set_command_id(cmd->id);
  denial.mutable_decision()->set_verdict(common::VERDICT_DENY);
  denial.mutable_decision()->set_rule("container-check");
  denial.mutable_decision()->set_reason(outcome.reason);
  denial.mutable_decision()->set_policy_version(cmd->decision.policy_version());
  hub_->audit()->Record(std::move(denial), [](absl::Status) {});
  log::Info("container check refused", {{"session_id", session_id_},
                                        {"command_id", cmd->id},
                                        {"kind", CheckKindLabel(check)},
                                        {"result", CheckResultLabel(outcome.result)}});
  DenyLocked(cmd->id, "container-check", outcome.reason);
}

void Session::StartCommand(std::shared_ptr<Command> cmd) {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed || running_ != cmd) {
    return;
  }
  cmd->launched = true;
  cmd->start = absl::Now();
  cmd->upgrade_started = cmd->start;
  EVP_DigestInit_ex(cmd->sha.get(), EVP_sha256(), nullptr);
  if (cmd->stop_reason != common::TERMINATION_UNSPECIFIED) {
    // Interrupted while it was being decided or checked: it never reaches the pod.
    FinishCommandLocked(cmd, ExecResult{});
    return;
  }
  const common::Limits& limits = cmd->decision.limits();
  cmd->time_limit =
      limits.has_time_limit() && wire::FromProtoDuration(limits.time_limit()) > absl::ZeroDuration()
          ? wire::FromProtoDuration(limits.time_limit())
          : opts_.default_time_limit;
  cmd->output_limit = limits.output_limit_bytes() > 0 ? limits.output_limit_bytes()
                                                      : opts_.default_output_limit_bytes;
  ExecSpec spec = TargetSpecLocked();
  // The launch wrapper reports the process's pid before it execs the argv (see
  // LaunchWrapperArgv): that is how a stop reaches exactly this command's process.
  spec.argv = LaunchWrapperArgv(cmd->run_argv);
  spec.stdin = true;
  auto observer = std::make_shared<CommandObserver>(weak_from_this(), cmd);
  // The time limit holds whatever happens to the stream: the timer is cancelled only once the
  // process is known to be gone, and it holds the session until then.
  std::shared_ptr<Session> self = shared_from_this();
  cmd->limit_timer = hub_->timers()->After(cmd->time_limit, [self, cmd] {
    std::lock_guard<std::mutex> lock(self->mu_);
    if (!cmd->finished) {
      if (self->running_ == cmd) {
        self->StopCommandLocked(common::TERMINATION_TIME_LIMIT);
      }
    } else if (!cmd->gone) {
      log::Warn("time limit reached by a process whose stream has ended: stopping it",
                {{"session_id", self->session_id_}, {"command_id", cmd->id}});
      self->StartStopLocked(cmd);
    }
  });
  log::Info("command start",
            {{"session_id", session_id_}, {"command_id", cmd->id}, {"rule", cmd->decision.rule()}});
  lock.unlock();
  std::unique_ptr<ExecHandle> handle = hub_->kube()->Exec(spec, std::move(observer));
  lock.lock();
  if (!cmd->finished) {
    cmd->handle = std::move(handle);
    if (!cmd->launch_error.empty() ||
        (!cmd->go_sent && cmd->stop_reason != common::TERMINATION_UNSPECIFIED)) {
      // Not identified, or stopped before it ran: close the stream, and the wrapper exits
      // without running the argv.
      cmd->handle->Close();
    } else if (cmd->report.status() == LaunchReport::Status::kReported && !cmd->go_sent) {
      SendGoLocked(cmd);  // the report came before the handle
    }
  }
}

ExecSpec Session::TargetSpecLocked() const {
  ExecSpec spec;
  spec.namespace_name = target_.namespace_();
  spec.pod = target_.pod();
  spec.container = target_.container();
  return spec;
}

void Session::OnLaunchReportedLocked(const std::shared_ptr<Command>& cmd) {
  if (cmd->handle != nullptr) {
    SendGoLocked(cmd);
  }
  // else StartCommand sends it once the handle exists.
}

void Session::SendGoLocked(const std::shared_ptr<Command>& cmd) {
  if (cmd->finished || cmd->go_sent) {
    return;
  }
  if (cmd->stop_reason != common::TERMINATION_UNSPECIFIED || state_ == State::kClosed) {
    // Stopped while it was being identified: it never runs.
    cmd->handle->Close();
    return;
  }
  if (Journal* journal = hub_->journal(); journal != nullptr) {
    // Durable before the process may run: an exec that dies now leaves the entry behind, and
    // the next one stops the process and records what this one could not.
    JournalEntry entry;
    entry.result_event_id = cmd->result_event_id;
    entry.close_event_id = close_event_id_;
    entry.session_id = session_id_;
    entry.command_id = cmd->id;
    entry.principal = principal_;
    entry.target.set_namespace_(target_.namespace_());
    entry.target.set_pod(target_.pod());
    entry.target.set_container(target_.container());
    entry.source_address = source_address_;
    entry.pid = cmd->report.pid();
    entry.start_ticks = cmd->report.start_ticks();
    entry.started = cmd->start;
    entry.session_opened = opened_at_;
    entry.line = cmd->line;
    if (absl::Status s = journal->Add(entry); !s.ok()) {
      LaunchFailedLocked(cmd, absl::StrCat("exec could not journal it (", s.message(),
                                           "), so it could not have been stopped after a crash"));
      return;
    }
    cmd->journaled = true;
  }
  cmd->go_sent = true;
  hub_->ProcessStarted();
  std::string first = "go\n";
  first += cmd->early_stdin;
  cmd->early_stdin.clear();
  cmd->early_stdin.shrink_to_fit();
  const bool writable = cmd->handle->WriteStdin(std::move(first));
  if (cmd->early_eof) {
    cmd->handle->CloseStdin();
  }
  if (writable) {
    ResumeReadsLocked();
  }
}

void Session::LaunchFailedLocked(const std::shared_ptr<Command>& cmd, const std::string& why) {
  if (!cmd->launch_error.empty()) {
    return;
  }
  cmd->launch_error = why;
  log::Warn("command not run",
            {{"session_id", session_id_}, {"command_id", cmd->id}, {"error", why}});
  if (cmd->handle != nullptr) {
    cmd->handle->Close();
  }
}

// Stops the running command. Its process is known exactly (the launch wrapper's report), so
// the stop helper signals that process (and its process group) and nothing else: SIGINT, then
// SIGKILL after the grace period. A closed stream alone would leave it running. A command not
// yet running (being decided, checked or identified) never runs.
void Session::StopCommandLocked(common::Termination why) {
  std::shared_ptr<Command> cmd = running_;
  if (cmd == nullptr || cmd->finished || cmd->stop_reason != common::TERMINATION_UNSPECIFIED) {
    return;
  }
  cmd->stop_reason = why;
  if (!cmd->launched) {
    // Nothing runs yet (policy, the root guard or a check is still answering): StartCommand
    // sees the stop and ends the command without starting it.
    return;
  }
  if (!cmd->go_sent) {
    // The wrapper waits for "go": closing the stream ends it without running the argv.
    if (cmd->handle != nullptr) {
      cmd->handle->Close();
    }
    return;
  }
  if (cmd->handle != nullptr) {
    cmd->handle->CloseStdin();
  }
  StartStopLocked(cmd);
}

void Session::StartStopLocked(const std::shared_ptr<Command>& cmd) {
  if (cmd->stop_started || cmd->gone || !cmd->go_sent) {
    return;
  }
  cmd->stop_started = true;
  log::Info("stopping process",
            {{"session_id", session_id_}, {"command_id", cmd->id}, {"pid", cmd->report.pid()}});
  std::shared_ptr<Session> self = shared_from_this();
  hub_->timers()->After(absl::ZeroDuration(), [self, cmd] { self->RunStopStep(cmd, "INT", 0); });
}

// One step of a stop: the stop helper sends `signal` to the command's process if it is still
// that process. SIGINT is followed by SIGKILL after the grace period, and the stream is closed
// a grace period after that if the process's exit has not ended it. A helper that fails is
// retried (three times, a grace period apart); after that the time limit tries again.
void Session::RunStopStep(std::shared_ptr<Command> cmd, std::string signal, int attempt) {
  ExecSpec spec;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cmd->gone && !(signal == "KILL" && cmd->group)) {
      return;
    }
    spec = TargetSpecLocked();
    spec.argv = StopHelperArgv(cmd->report.pid(), cmd->report.start_ticks(), signal, cmd->group);
  }
  std::shared_ptr<Session> self = shared_from_this();
  RunProbe(hub_->kube(), hub_->timers(), spec, opts_.probe_timeout,
           [self, cmd, signal, attempt](absl::StatusOr<ProbeOutput> out) {
             const bool signalled = out.ok() && out->exit_code == 0;
             const bool gone = out.ok() && out->exit_code == 3;
             runtime::TimerQueue* timers = self->hub_->timers();
             const absl::Duration grace = self->opts_.interrupt_grace;
             self->hub_->metrics()
                 ->stops_total
                 .Add({{"signal", signal},
                       {"result", signalled ? "signalled"
                                  : gone    ? "gone"
                                            : "error"}})
                 .Increment();
             std::lock_guard<std::mutex> lock(self->mu_);
             if (signalled && signal == "INT" && out->stdout_text.rfind("group ", 0) == 0) {
               cmd->group = true;
             }
             if (gone || (signalled && signal == "KILL")) {
               // SIGKILL cannot be caught: the process (group) is gone.
               self->MarkGoneLocked(cmd);
               if (cmd->finished) {
                 self->hub_->timers()->Cancel(cmd->limit_timer);
               }
               log::Info("process stopped", {{"session_id", self->session_id_},
                                             {"command_id", cmd->id},
                                             {"pid", cmd->report.pid()},
                                             {"how", gone ? "gone" : "SIGKILL"}});
               if (!cmd->finished) {
                 timers->After(grace, [self, cmd] {
                   std::lock_guard<std::mutex> lock(self->mu_);
                   if (!cmd->finished && cmd->handle != nullptr) {
                     cmd->handle->Close();
                   }
                 });
               }
               return;
             }
             if (!signalled) {
               log::Warn("stop helper failed",
                         {{"session_id", self->session_id_},
                          {"command_id", cmd->id},
                          {"signal", signal},
                          {"attempt", attempt},
                          {"error",
                           out.ok() ? absl::StrCat("exit ", out->exit_code, ": ", out->stderr_text)
                                    : out.status().ToString()}});
               if (attempt < 3) {
                 timers->After(grace, [self, cmd, signal, attempt] {
                   self->RunStopStep(cmd, signal, attempt + 1);
                 });
               } else {
                 // The time limit (still armed while the process may run) tries again.
                 cmd->stop_started = false;
               }
               return;
             }
             // SIGINT delivered: SIGKILL after the grace period unless the process is gone by then.
             timers->After(grace, [self, cmd] { self->RunStopStep(cmd, "KILL", 0); });
           });
}

void Session::MarkGoneLocked(const std::shared_ptr<Command>& cmd) {
  if (cmd->gone) {
    return;
  }
  cmd->gone = true;
  if (cmd->go_sent) {
    hub_->ProcessGone();
  }
  MaybeUnjournalLocked(cmd);
}

void Session::MaybeUnjournalLocked(const std::shared_ptr<Command>& cmd) {
  if (cmd->journaled && cmd->gone && cmd->result_acked && hub_->journal() != nullptr) {
    cmd->journaled = false;
    hub_->journal()->Remove(cmd->result_event_id);
  }
}

void Session::FinishCommandLocked(const std::shared_ptr<Command>& cmd, const ExecResult& result) {
  if (cmd->finished) {
    return;
  }
  cmd->finished = true;
  // What the audit record and the client are told (the stream's result, explained).
  ExecResult outcome = result;
  if (!cmd->go_sent) {
    // The argv never ran: the wrapper waits for "go" and exits without it.
    cmd->gone = true;
    if (cmd->stop_reason == common::TERMINATION_UNSPECIFIED) {
      cmd->started = false;  // reported as an error, not an exit
      if (!cmd->launch_error.empty()) {
        outcome.status = absl::FailedPreconditionError(
            absl::StrCat("the command was not run: ", cmd->launch_error));
      } else if (outcome.status.ok()) {
        outcome.status = absl::FailedPreconditionError(absl::StrCat(
            "the command was not run: the launch wrapper exited with status ", outcome.exit_code,
            " before it reported its pid (podgate runs commands through /bin/sh, which the image "
            "may lack)"));
      } else {
        outcome.status =
            absl::Status(outcome.status.code(),
                         absl::StrCat(outcome.status.message(), " (the command was not run)"));
      }
    } else {
      outcome.status = absl::OkStatus();
      outcome.exit_code = 0;
    }
  } else if (result.status.ok()) {
    MarkGoneLocked(cmd);  // its exit status arrived
  } else {
    // The stream ended before the process did (a broken stream, the session closing, a
    // shutdown): the process is stopped, never forgotten.
    StartStopLocked(cmd);
    outcome.status =
        absl::Status(result.status.code(),
                     absl::StrCat(result.status.message(), "; exec stops its process (pid ",
                                  cmd->report.pid(), ") with SIGINT, then SIGKILL"));
  }
  if (cmd->gone) {
    hub_->timers()->Cancel(cmd->limit_timer);
  }
  ResumeReadsLocked();
  const absl::Duration duration = absl::Now() - cmd->start;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (cmd->launched) {
    EVP_DigestFinal_ex(cmd->sha.get(), digest, &digest_len);
  }

  common::Termination termination = cmd->stop_reason;
  if (termination == common::TERMINATION_UNSPECIFIED) {
    termination = outcome.status.ok() ? common::TERMINATION_EXITED : common::TERMINATION_ERROR;
  }
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_COMMAND_RESULT);
  e.set_id(cmd->result_event_id);
  e.set_command_id(cmd->id);
  common::CommandResultDetail* r = e.mutable_command_result();
  r->set_line(cmd->line);
  r->set_termination(termination);
  r->set_exit_code(outcome.exit_code);
  *r->mutable_duration() = wire::ToProtoDuration(duration);
  r->set_stdout_bytes(cmd->stdout_bytes);
  r->set_stderr_bytes(cmd->stderr_bytes);
  r->set_output_sha256(digest, digest_len);
  r->set_output_excerpt(cmd->excerpt);
  r->set_excerpt_truncated(cmd->excerpt_truncated);
  if (!outcome.status.ok()) {
    r->set_error(std::string(outcome.status.message()));
  }
  if (cmd->run_argv != cmd->argv) {
    for (const std::string& a : cmd->run_argv) {
      r->add_argv(a);
    }
  }
  std::function<void(absl::Status)> recorded = [](absl::Status) {};
  if (cmd->journaled) {
    // The journal entry goes once this record is durable and the process is gone.
    std::shared_ptr<Session> self = shared_from_this();
    recorded = [self, cmd](absl::Status s) {
      if (s.ok()) {
        std::lock_guard<std::mutex> lock(self->mu_);
        cmd->result_acked = true;
        self->MaybeUnjournalLocked(cmd);
      }
    };
  }
  hub_->audit()->Record(std::move(e), std::move(recorded));
  hub_->metrics()
      ->commands_total
      .Add({{"decision", "allow"},
            {"result", !cmd->started && !outcome.status.ok()
                           ? "error"
                           : wire::EnumLabel(termination, "error")}})
      .Increment();
  if (!outcome.status.ok()) {
    hub_->metrics()
        ->api_errors_total.Add({{"code", absl::StatusCodeToString(outcome.status.code())}})
        .Increment();
  }
  log::Info("command end", {{"session_id", session_id_},
                            {"command_id", cmd->id},
                            {"termination", wire::EnumLabel(termination, "error")},
                            {"exit_code", outcome.exit_code},
                            {"duration_ms", absl::ToInt64Milliseconds(duration)}});
  if (running_ == cmd) {
    ClearRunningLocked();
  }
  if (state_ == State::kClosed) {
    return;
  }
  pb::SessionResponse msg;
  if (!cmd->started && !outcome.status.ok() &&
      cmd->stop_reason == common::TERMINATION_UNSPECIFIED) {
    // It never ran: an error, not an exit.
    msg.mutable_error()->set_command_id(cmd->id);
    msg.mutable_error()->mutable_status()->set_code(static_cast<int>(outcome.status.code()));
    msg.mutable_error()->mutable_status()->set_message(std::string(outcome.status.message()));
  } else {
    msg.mutable_exit()->set_command_id(cmd->id);
    msg.mutable_exit()->set_termination(termination);
    msg.mutable_exit()->set_exit_code(outcome.exit_code);
    *msg.mutable_exit()->mutable_duration() = wire::ToProtoDuration(duration);
    msg.mutable_exit()->set_output_bytes(cmd->stdout_bytes + cmd->stderr_bytes);
    if (termination == common::TERMINATION_ERROR && !outcome.status.ok()) {
      msg.mutable_exit()->set_error(std::string(outcome.status.message()));
    }
  }
  SendLocked(std::move(msg));
  // Release the stream outside this observer callback's own bookkeeping.
  cmd->handle.reset();
}

// --- shell mode ------------------------------------------------------------------------------

void Session::StartShell() {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ != State::kReady) {
    return;
  }
  ExecSpec spec;
  spec.namespace_name = target_.namespace_();
  spec.pod = target_.pod();
  spec.container = target_.container();
  spec.argv = opts_.shell_argv;
  spec.stdin = true;
  spec.tty = true;
  spec.width = width_;
  spec.height = height_;
  nlohmann::json header = {{"version", 2},
                           {"width", width_},
                           {"height", height_},
                           {"timestamp", absl::ToUnixSeconds(absl::Now())},
                           {"title", absl::StrCat(target_.namespace_(), "/", target_.pod(), "/",
                                                  target_.container())}};
  recording_ = header.dump() + "\n";
  recording_last_flush_ = absl::Now();
  auto observer = std::make_shared<ShellObserver>(weak_from_this());
  lock.unlock();
  std::unique_ptr<ExecHandle> handle = hub_->kube()->Exec(spec, std::move(observer));
  lock.lock();
  shell_ = std::move(handle);
  // A resize that arrived while the stream was being opened found no shell: apply it now.
  if (width_ != spec.width || height_ != spec.height) {
    shell_->Resize(width_, height_);
    RecordShellLocked('r', absl::StrCat(width_, "x", height_));
  }
  if (!early_stdin_.empty()) {
    (void)shell_->WriteStdin(std::move(early_stdin_));
    early_stdin_.clear();
  }
  if (state_ == State::kClosed) {
    shell_->Close();
  }
}

void Session::RecordShellLocked(char kind, const std::string& data) {
  const double t = absl::ToDoubleSeconds(absl::Now() - opened_at_);
  nlohmann::json event = {t, std::string(1, kind),
                          nlohmann::json(data).dump(-1, ' ', false,
                                                    nlohmann::json::error_handler_t::replace)};
  // The event's data is the JSON string of the bytes (invalid UTF-8 replaced).
  event[2] = nlohmann::json::parse(event[2].get<std::string>());
  recording_ += event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  recording_ += "\n";
  if (recording_.size() >= opts_.recording_chunk_bytes ||
      absl::Now() - recording_last_flush_ >= opts_.recording_flush) {
    FlushRecordingLocked();
  }
}

void Session::FlushRecordingLocked() {
  if (recording_.empty()) {
    return;
  }
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_SHELL_RECORDING);
  e.mutable_shell_recording()->set_sequence(recording_seq_++);
  e.mutable_shell_recording()->set_asciicast(std::move(recording_));
  recording_.clear();
  recording_last_flush_ = absl::Now();
  std::weak_ptr<Session> weak = shared_from_this();
  const bool strict = opts_.strict_audit;
  hub_->audit()->Record(std::move(e), [weak, strict](absl::Status s) {
    if (!s.ok() && strict) {
      if (auto self = weak.lock()) {
        std::lock_guard<std::mutex> lock(self->mu_);
        self->CloseLocked(common::CLOSE_REASON_ERROR,
                          absl::StrCat("the shell recording could not be audited: ", s.message()));
      }
    }
  });
}

// --- closing ---------------------------------------------------------------------------------

void Session::CloseLocked(common::CloseReason reason, const std::string& message) {
  if (state_ == State::kClosed) {
    return;
  }
  const State before = state_;
  state_ = State::kClosed;
  hub_->timers()->Cancel(idle_timer_);
  hub_->timers()->Cancel(limit_timer_);
  if (before != State::kReady) {
    // Never opened: end the call; nothing was audited as open.
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, message));
    return;
  }
  if (running_ != nullptr && !running_->launched) {
    ClearRunningLocked();  // still waiting for policy or audit: it never reaches the pod
  }
  if (running_ != nullptr && !running_->finished) {
    std::shared_ptr<Command> cmd = running_;
    // The process must not outlive the session.
    state_ = State::kReady;
    StopCommandLocked(common::TERMINATION_INTERRUPTED);
    state_ = State::kClosed;
    ExecResult gone;
    gone.status = absl::CancelledError("the session closed");
    FinishCommandLocked(cmd, gone);
  }
  if (shell_ != nullptr) {
    FlushRecordingLocked();
    shell_->Close();
  }
  const bool shell = mode_ == common::SESSION_MODE_SHELL;
  hub_->metrics()->sessions_active.Add({{"mode", shell ? "shell" : "command"}}).Decrement();
  hub_->metrics()
      ->session_close_total.Add({{"reason", wire::EnumLabel(reason, "error")}})
      .Increment();
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_SESSION_CLOSE);
  e.set_id(close_event_id_);
  e.mutable_session_close()->set_reason(reason);
  e.mutable_session_close()->set_message(message);
  *e.mutable_session_close()->mutable_duration() = wire::ToProtoDuration(absl::Now() - opened_at_);
  e.mutable_session_close()->set_commands(commands_);
  hub_->audit()->Record(std::move(e), [](absl::Status) {});
  log::Info("session close", {{"session_id", session_id_},
                              {"reason", wire::EnumLabel(reason, "error")},
                              {"commands", commands_}});
  pb::SessionResponse closed;
  closed.mutable_closed()->set_reason(reason);
  closed.mutable_closed()->set_message(message);
  SendLocked(std::move(closed));
  FinishLocked(grpc::Status::OK);
}

void Session::OnCancel() {
  std::lock_guard<std::mutex> lock(mu_);
  CloseLocked(common::CLOSE_REASON_DISCONNECTED, "the client went away");
  // Also when the session was already closing: a cancelled call still needs its Finish.
  MaybeWriteLocked();
}

void Session::OnDone() {
  std::unique_ptr<PolicyStream> policy;
  std::shared_ptr<Session> self;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kClosed) {
      // Finished without a close (a refusal during open).
      state_ = State::kClosed;
      hub_->timers()->Cancel(idle_timer_);
      hub_->timers()->Cancel(limit_timer_);
    }
    for (Outgoing& o : out_) {
      if (o.after_write) {
        o.after_write();
      }
    }
    out_.clear();
    if (admitted_) {
      hub_->Leave(this, principal_.user());
    }
    policy = std::move(policy_);
    self = std::move(self_);
  }
  // Outside the lock: ending the policy stream answers its pending questions, and their
  // callbacks take the session's lock.
  policy.reset();
  // `self` may be the last reference: the session is destroyed when it goes out of scope,
  // unless a pending callback still holds it (it then finds the session closed).
}

// --- the hub ---------------------------------------------------------------------------------

SessionHub::SessionHub(ExecOptions options, const auth::Verifier* verifier,
                       podgate::policy::v1::PolicyService::StubInterface* policy,
                       clients::AuditClient* audit, KubeApi* kube, ExecMetrics* metrics,
                       runtime::TimerQueue* timers)
    : options_(std::move(options)),
      verifier_(verifier),
      policy_(policy),
      audit_(audit),
      kube_(kube),
      metrics_(metrics),
      timers_(timers) {}

absl::Status SessionHub::Admit(const std::shared_ptr<Session>& session, const std::string& user) {
  std::lock_guard<std::mutex> lock(mu_);
  if (static_cast<int>(live_.size()) >= options_.max_sessions) {
    return absl::ResourceExhaustedError(
        absl::StrCat("this exec replica has ", live_.size(), " sessions, its limit"));
  }
  if (per_user_[user] >= options_.max_sessions_per_user) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "user ", user, " already has ", per_user_[user], " sessions, the limit per user"));
  }
  per_user_[user]++;
  live_.emplace(session.get(), session);
  return absl::OkStatus();
}

void SessionHub::Leave(Session* session, const std::string& user) {
  std::lock_guard<std::mutex> lock(mu_);
  if (live_.erase(session) == 0) {
    return;
  }
  if (--per_user_[user] <= 0) {
    per_user_.erase(user);
  }
}

void SessionHub::CloseAll() {
  std::vector<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [raw, weak] : live_) {
      if (auto s = weak.lock()) {
        sessions.push_back(std::move(s));
      }
    }
  }
  for (auto& s : sessions) {
    s->CloseFromHub(common::CLOSE_REASON_SHUTDOWN, "the exec service is shutting down");
  }
}

bool SessionHub::Drain(absl::Time deadline) {
  const absl::Time start = absl::Now();
  while ((running_processes() > 0 || audit_->pending() > 0) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const bool done = running_processes() == 0 && audit_->pending() == 0;
  (done ? log::Info : log::Warn)(done ? "drained" : "drain ran out of time",
                                 {{"processes_left", running_processes()},
                                  {"audit_pending", static_cast<int64_t>(audit_->pending())},
                                  {"drain_ms", absl::ToInt64Milliseconds(absl::Now() - start)}});
  return done;
}

int SessionHub::active() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(live_.size());
}

std::optional<int64_t> SessionHub::CachedUid(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = uid_cache_.find(key);
  if (it == uid_cache_.end() || absl::Now() - it->second.second > options_.root_guard_ttl) {
    return std::nullopt;
  }
  return it->second.first;
}

void SessionHub::CacheUid(const std::string& key, int64_t uid) {
  std::lock_guard<std::mutex> lock(mu_);
  if (uid_cache_.size() > 10000) {
    uid_cache_.clear();  // bounded: a rebuild costs one `id -u` per container
  }
  uid_cache_[key] = {uid, absl::Now()};
}

grpc::ServerBidiReactor<pb::SessionRequest, pb::SessionResponse>* StartSession(
    SessionHub* hub, grpc::CallbackServerContext* context) {
  auto session = std::make_shared<Session>(hub, context);
  session->Start();
  return session.get();
}

}  // namespace podgate::exec
