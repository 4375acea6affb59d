// The Session reactor's own part: the stream to the client (ordered writes, each with what to do
// once written), audit records, reading and dispatching client messages, the idle timer, and
// closing. Opening is in session_open.cc, command mode in command_run.cc, shell mode in
// shell_run.cc, the hub in session_hub.cc.
#include "exec/session.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "exec/policy_stream.h"
#include "exec/session_reactor.h"
#include "runtime/ids.h"
#include "runtime/log.h"
#include "runtime/trace_metadata.h"
#include "wire/enum_label.h"
#include "wire/time.h"

namespace podgate::exec {

namespace common = podgate::common::v1;
namespace pb = podgate::exec::v1;

// --- messages to the client ------------------------------------------------------------------

void Session::SendLocked(pb::SessionResponse message, std::function<void()> after_write) {
  if (finished_ || finish_pending_) {
    if (after_write) {
      after_write();
    }
    return;
  }
  if (!watchers_.empty()) {
    FanOutLocked(message, 0);
  }
  out_.push_back({std::move(message), std::move(after_write)});
  MaybeWriteLocked();
}

void Session::SendOutputLocked(pb::SessionResponse message, std::function<void()> resume) {
  if (finished_ || finish_pending_) {
    resume();
    return;
  }
  pb::OutputData* data = message.has_stdout() ? message.mutable_stdout() : message.mutable_stderr();
  const size_t bytes = data->data().size();
  if (!watchers_.empty()) {
    FanOutLocked(message, bytes);
  }
  // The message at the back may take this chunk when it carries the same stream of the same
  // command (the one being written is not in out_; a replayed one keeps its seq as sent).
  Outgoing* last = out_.empty() ? nullptr : &out_.back();
  if (last != nullptr && last->output_bytes > 0 && last->message.seq() == 0 &&
      last->output_bytes + bytes <= kMaxOutputMessageBytes &&
      last->message.kind_case() == message.kind_case()) {
    pb::OutputData* into =
        message.has_stdout() ? last->message.mutable_stdout() : last->message.mutable_stderr();
    if (into->command_id() == data->command_id()) {
      into->mutable_data()->append(data->data());
      last->output_bytes += bytes;
      data = nullptr;
    }
  }
  if (data != nullptr) {
    out_.push_back({std::move(message), nullptr, bytes});
  }
  out_output_bytes_ += bytes;
  if (out_output_bytes_ <= kOutputWindowBytes) {
    resume();
  } else if (output_resume_) {
    // One stream reads at a time (a command's, or the shell's): a second holder would be a
    // stream that outlived its command; let it drain rather than hold it.
    resume();
  } else {
    output_resume_ = std::move(resume);
  }
  MaybeWriteLocked();
}

void Session::MaybeWriteLocked() {
  if (finished_) {
    return;
  }
  Session* link = link_;
  if (link == nullptr) {
    // Detached: messages wait for a resume; a session ending meanwhile has nobody to tell.
    if (finish_pending_) {
      finished_ = true;
      if (own_call_done_) {
        std::shared_ptr<Session> self = shared_from_this();
        hub_->timers()->After(absl::ZeroDuration(), [self] { self->End(); });
      }
    }
    return;
  }
  if (link->writing_ || link->call_finished_) {
    return;
  }
  if (out_.empty()) {
    if (finish_pending_) {
      finished_ = true;
      link->call_finished_ = true;
      link->Finish(finish_status_);
    }
    return;
  }
  link->writing_ = true;
  link->in_flight_ = std::move(out_.front());
  out_.pop_front();
  pb::SessionResponse& m = link->in_flight_.message;
  if (opts_.resume_grace > absl::ZeroDuration() && !watcher_ && m.seq() == 0 && !m.has_ready() &&
      !m.has_resumed()) {
    output_offset_ += link->in_flight_.output_bytes;
    m.set_seq(++next_seq_);
    m.set_output_offset(output_offset_);
  }
  if (m.seq() > 0) {
    // Kept from the moment it is written: a resume may come before a broken stream's write
    // has failed, and must still find it.
    KeepForResumeLocked(Outgoing{m, nullptr, link->in_flight_.output_bytes});
  }
  link->StartWrite(&m);
}

void Session::OnWriteDone(bool ok) {
  std::shared_ptr<Session> owner = OwnerOf();
  (owner != nullptr ? owner.get() : this)->LinkWriteDone(this, ok);
}

void Session::LinkWriteDone(Session* link, bool ok) {
  std::function<void()> after;
  {
    std::lock_guard<std::mutex> lock(mu_);
    link->writing_ = false;
    Outgoing done = std::move(link->in_flight_);
    link->in_flight_ = Outgoing{};
    after = std::move(done.after_write);
    out_output_bytes_ -= done.output_bytes;
    if (output_resume_ &&
        (out_output_bytes_ <= kOutputResumeBytes || (!ok && link == link_ && !CanDetachLocked()))) {
      // Below the low watermark (or nothing will be written any more): the pod's stream reads on.
      std::function<void()> resume = std::move(output_resume_);
      output_resume_ = nullptr;
      if (after) {
        after = [first = std::move(after), resume = std::move(resume)] {
          first();
          resume();
        };
      } else {
        after = std::move(resume);
      }
    }
    if (link != link_) {
      FinishStaleLinkLocked(link);  // a stream the session has left
    } else if (!ok) {
      LinkBrokeLocked(link, "the client stopped reading", /*drop_queue=*/true);
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

// --- the calls that carry the stream, and resume --------------------------------------------

std::shared_ptr<Session> Session::OwnerOf() {
  std::lock_guard<std::mutex> lock(mu_);
  return owner_;
}

bool Session::CanDetachLocked() const {
  return opts_.resume_grace > absl::ZeroDuration() && state_ == State::kReady &&
         !resume_token_hash_.empty() && !finish_pending_ && !finished_;
}

void Session::LinkBrokeLocked(Session* link, const std::string& why, bool drop_queue) {
  if (CanDetachLocked()) {
    DetachLocked(link, why);
    return;
  }
  if (drop_queue) {
    for (Outgoing& o : out_) {
      if (o.after_write) {
        o.after_write();
      }
    }
    out_.clear();
    out_output_bytes_ = 0;
  }
  CloseLocked(common::CLOSE_REASON_DISCONNECTED, why);
  // The session may have been closing already (its `closed` message was the write that
  // failed): the call must still be finished, or it never ends (and a server shutdown waits
  // for it forever).
  MaybeWriteLocked();
}

void Session::DetachLocked(Session* link, const std::string& why) {
  link_ = nullptr;
  FinishStaleLinkLocked(link);
  detached_ = true;
  detached_why_ = why;
  hub_->metrics()->sessions_detached.Increment();
  std::weak_ptr<Session> weak = shared_from_this();
  grace_timer_ = hub_->timers()->After(opts_.resume_grace, [weak] {
    std::shared_ptr<Session> s = weak.lock();
    if (s == nullptr) {
      return;
    }
    std::lock_guard<std::mutex> lock(s->mu_);
    if (!s->detached_ || s->state_ != State::kReady) {
      return;
    }
    s->hub_->metrics()->session_resumes_total.Add({{"result", "expired"}}).Increment();
    s->CloseLocked(common::CLOSE_REASON_DISCONNECTED,
                   absl::StrCat(s->detached_why_, "; no resume within ",
                                absl::FormatDuration(s->opts_.resume_grace)));
  });
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_SESSION_DETACH);
  e.mutable_session_detach()->set_reason(why);
  *e.mutable_session_detach()->mutable_grace() = wire::ToProtoDuration(opts_.resume_grace);
  // Not waited for: nothing new runs because of it (each command is audited as ever).
  hub_->audit()->Record(std::move(e), [](absl::Status) {});
  log::Info("session detached; waiting for a resume",
            {{"session_id", session_id_},
             {"trace_id", trace_.trace_id},
             {"why", why},
             {"grace", absl::FormatDuration(opts_.resume_grace)},
             {"queued_messages", static_cast<int64_t>(out_.size())}});
}

void Session::FinishStaleLinkLocked(Session* link) {
  if (link->writing_ || link->call_finished_) {
    return;  // its write in flight finishes it (LinkWriteDone)
  }
  link->call_finished_ = true;
  link->Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                            "this stream no longer carries the session (it broke, or the session "
                            "was resumed on another stream)"));
}

void Session::KeepForResumeLocked(Outgoing done) {
  done.kept_bytes = done.message.ByteSizeLong();
  replay_bytes_ += done.kept_bytes;
  replay_.push_back(std::move(done));
  while (replay_bytes_ > opts_.resume_buffer_bytes && !replay_.empty()) {
    trimmed_seq_ = replay_.front().message.seq();
    trimmed_offset_ = replay_.front().message.output_offset();
    replay_bytes_ -= replay_.front().kept_bytes;
    replay_.pop_front();
  }
}

// --- audit -----------------------------------------------------------------------------------

common::AuditEvent Session::BaseEventLocked(common::EventKind kind) {
  common::AuditEvent e;
  const absl::Time now = absl::Now();
  e.set_id(runtime::EventIdAt(now));
  *e.mutable_time() = wire::ToProtoTimestamp(now);
  e.set_kind(kind);
  e.set_source_service("exec");
  e.set_session_id(session_id_);
  *e.mutable_principal() = principal_;
  *e.mutable_target() = target_;
  e.set_source_address(source_address_);
  e.set_trace_id(trace_.trace_id);
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
      log::Error("audit event not recorded", {{"session_id", self->session_id_},
                                              {"trace_id", self->trace_.trace_id},
                                              {"kind", kind},
                                              {"error", s.ToString()}});
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
  std::shared_ptr<Session> owner = OwnerOf();
  (owner != nullptr ? owner.get() : this)->LinkReadDone(this, ok);
}

void Session::LinkReadDone(Session* link, bool ok) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (link != link_) {
      FinishStaleLinkLocked(link);  // a stream the session has left: nothing more is read
      return;
    }
    link->in_read_done_ = true;
  }
  const bool again = HandleReadDone(link, ok);
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ == State::kLink) {
    return;  // this reactor's call now carries another session, which reads it
  }
  link->in_read_done_ = false;
  // read_paused_: stdin is backed up, and the next read waits for it to drain.
  if (again && link == link_ && !link->call_finished_ && !read_paused_ && !finished_ &&
      !finish_pending_ && state_ != State::kClosed) {
    link->StartRead(&link->request_);
  }
}

// Handles one client message; false when no further message is to be read.
bool Session::HandleReadDone(Session* link, bool ok) {
  bool watcher;
  {
    std::lock_guard<std::mutex> lock(mu_);
    watcher = watcher_;
  }
  if (watcher) {
    return HandleWatcherMessage(link->request_, ok);
  }
  if (!ok) {
    std::lock_guard<std::mutex> lock(mu_);
    if (link->call_->IsCancelled()) {
      // The stream broke without a close (the caller crashed or its connection dropped).
      LinkBrokeLocked(link, "the client's stream broke without a close", /*drop_queue=*/false);
    } else {
      // A half-close: the client ended the stream cleanly.
      CloseLocked(common::CLOSE_REASON_CLIENT, "the client ended the stream");
    }
    return false;
  }
  pb::SessionRequest req = std::move(link->request_);
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
      if (req.open().has_resume()) {
        HandleResume(req.open());
        return false;  // the resumed session reads this call once attached
      }
      if (req.open().has_join()) {
        HandleJoin(req.open());
        break;  // read on: the user may leave while the join is decided
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
      if (mode_ == common::SESSION_MODE_SHELL && waiting_for_moderator_) {
        // Nothing reaches the container before a moderator is there, and nothing is kept for
        // later: what was typed blind would run unseen by the moderator.
        if (!told_waiting_) {
          told_waiting_ = true;
          SendCommandErrorLocked("moderation", grpc::StatusCode::FAILED_PRECONDITION,
                                 "the shell starts once a moderator has joined; input is "
                                 "discarded until then");
        }
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
    case pb::SessionRequest::kRenew:
      HandleRenew(req.renew());
      break;
    default: {
      std::lock_guard<std::mutex> lock(mu_);
      FinishLocked(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty or unknown SessionRequest"));
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
  Session* link = link_;
  if (link == nullptr || link->in_read_done_ || link->call_finished_) {
    return;  // detached (Attach reads), or OnReadDone starts the next read when it returns
  }
  if (!finished_ && !finish_pending_ && state_ != State::kClosed) {
    link->StartRead(&link->request_);
  }
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

// --- closing ---------------------------------------------------------------------------------

void Session::CloseLocked(common::CloseReason reason, const std::string& message) {
  if (state_ == State::kClosed) {
    return;
  }
  if (watcher_) {
    // A joined stream: it ends alone (the session it watches goes on, unless this is a
    // shutdown, which closes that too); OnDone tells the session it left.
    const bool joined = state_ == State::kWatching;
    state_ = State::kClosed;
    if (reason == common::CLOSE_REASON_SHUTDOWN) {
      leave_reason_ = "session_ended";
    }
    if (!joined || reason == common::CLOSE_REASON_DISCONNECTED) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, message));
      return;
    }
    pb::SessionResponse closed;
    closed.mutable_closed()->set_reason(reason);
    closed.mutable_closed()->set_message(message);
    SendLocked(std::move(closed));
    FinishLocked(grpc::Status::OK);
    return;
  }
  const State before = state_;
  state_ = State::kClosed;
  if (waiting_for_moderator_) {
    waiting_for_moderator_ = false;
    hub_->metrics()->sessions_waiting_for_moderator.Decrement();
  }
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
                              {"trace_id", trace_.trace_id},
                              {"reason", wire::EnumLabel(reason, "error")},
                              {"commands", commands_}});
  pb::SessionResponse closed;
  closed.mutable_closed()->set_reason(reason);
  closed.mutable_closed()->set_message(message);
  SendLocked(std::move(closed));  // those who joined get it too, and their streams end
  while (!watchers_.empty()) {
    DropWatcherLocked(watchers_.size() - 1, "session_ended");
  }
  FinishLocked(grpc::Status::OK);
}

void Session::OnCancel() {
  std::shared_ptr<Session> owner = OwnerOf();
  (owner != nullptr ? owner.get() : this)->LinkCancelled(this);
}

void Session::LinkCancelled(Session* link) {
  std::lock_guard<std::mutex> lock(mu_);
  if (link != link_) {
    FinishStaleLinkLocked(link);
    return;
  }
  LinkBrokeLocked(link, "the client went away", /*drop_queue=*/false);
}

void Session::OnDone() {
  std::shared_ptr<Session> watched;
  std::string why;
  {
    std::lock_guard<std::mutex> lock(mu_);
    watched = std::move(watched_);
    why = leave_reason_.empty() ? "disconnected" : leave_reason_;
  }
  if (watched != nullptr) {
    watched->RemoveWatcher(this, why);  // a joined stream that ended without leaving first
  }
  std::shared_ptr<Session> owner = OwnerOf();
  if (owner != nullptr) {
    owner->LinkDone(this);
    std::shared_ptr<Session> self;
    {
      std::lock_guard<std::mutex> lock(mu_);
      self = std::move(self_);
      owner_.reset();
    }
    return;  // `owner` and `self` go last, outside the locks
  }
  bool end;
  {
    std::lock_guard<std::mutex> lock(mu_);
    call_done_ = true;
    own_call_done_ = true;
    if (link_ == this) {
      // The call carried the session to its end (or a refusal during open).
      link_ = nullptr;
      end = true;
    } else {
      // Detached, or resumed on another call: the session lives on until it closes.
      end = ShouldEndLocked();
    }
  }
  if (end) {
    End();
  }
}

void Session::LinkDone(Session* link) {
  bool end;
  {
    std::lock_guard<std::mutex> lock(mu_);
    link->call_done_ = true;
    if (link_ == link) {
      link_ = nullptr;  // its call ended with the session (Finish after `closed`)
    }
    end = ShouldEndLocked();
  }
  if (end) {
    End();
  }
}

bool Session::ShouldEndLocked() const {
  return !ended_ && own_call_done_ && (state_ == State::kClosed || finished_) &&
         (link_ == nullptr || link_->call_done_);
}

void Session::End() {
  std::unique_ptr<PolicyStream> policy;
  std::shared_ptr<Session> self;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_) {
      return;
    }
    ended_ = true;
    if (state_ != State::kClosed) {
      // Finished without a close (a refusal during open).
      state_ = State::kClosed;
      hub_->timers()->Cancel(idle_timer_);
      hub_->timers()->Cancel(limit_timer_);
    }
    hub_->timers()->Cancel(grace_timer_);
    if (detached_) {
      detached_ = false;
      hub_->metrics()->sessions_detached.Decrement();
    }
    for (Outgoing& o : out_) {
      if (o.after_write) {
        o.after_write();
      }
    }
    out_.clear();
    replay_.clear();
    replay_bytes_ = 0;
    out_output_bytes_ = 0;
    if (output_resume_) {
      std::function<void()> resume = std::move(output_resume_);
      output_resume_ = nullptr;
      resume();
    }
    if (admitted_) {
      hub_->Leave(this, principal_.user());
    }
    if (registered_) {
      hub_->Forget(session_id_);
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

namespace {

// A gRPC Session call carrying one session: the reactor gRPC drives, reporting to the session.
class GrpcSessionCall final
    : public grpc::ServerBidiReactor<pb::SessionRequest, pb::SessionResponse>,
      public SessionCall {
 public:
  explicit GrpcSessionCall(grpc::CallbackServerContext* context) : context_(context) {}

  void Begin(SessionHub* hub) {
    session_ = std::make_shared<Session>(hub, this);
    session_->Start();
  }

  void StartRead(pb::SessionRequest* request) override {
    grpc::ServerBidiReactor<pb::SessionRequest, pb::SessionResponse>::StartRead(request);
  }
  void StartWrite(const pb::SessionResponse* response) override {
    grpc::ServerBidiReactor<pb::SessionRequest, pb::SessionResponse>::StartWrite(response);
  }
  void Finish(const grpc::Status& status) override {
    grpc::ServerBidiReactor<pb::SessionRequest, pb::SessionResponse>::Finish(status);
  }
  bool IsCancelled() const override { return context_->IsCancelled(); }
  std::string peer() const override { return context_->peer(); }
  runtime::TraceContext trace() const override { return runtime::TraceOfCall(*context_); }

  void OnReadDone(bool ok) override { session_->OnReadDone(ok); }
  void OnWriteDone(bool ok) override { session_->OnWriteDone(ok); }
  void OnCancel() override { session_->OnCancel(); }
  void OnDone() override {
    session_->OnDone();
    delete this;
  }

 private:
  grpc::CallbackServerContext* const context_;
  std::shared_ptr<Session> session_;
};

}  // namespace

grpc::ServerBidiReactor<pb::SessionRequest, pb::SessionResponse>* StartSession(
    SessionHub* hub, grpc::CallbackServerContext* context) {
  auto* call = new GrpcSessionCall(context);
  call->Begin(hub);
  return call;
}

}  // namespace podgate::exec
