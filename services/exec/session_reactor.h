// The Session reactor (internal to exec; the service uses StartSession, session.h): one exec.v1
// Session stream's state, and the dispatch of its client messages. Its steps are defined by
// part:
//
//   session.cc         the stream to the client, audit records, reading and dispatch, the idle
//                      timer, closing;
//   session_open.cc    open: credential, target names, admission, scope, pod, root guard, ready;
//   command_run.cc     command mode: decision, checks, launch, stop steps, time limit, result;
//   shell_run.cc       shell mode: the TTY stream and its recording;
//   session_join.cc    other users joining a session (to watch or moderate it), moderated
//                      shells, and the list of sessions one may join.
//
// No thread per session: every step is a callback (gRPC, policy, audit, Kubernetes, timers),
// serialized by the session's mutex. Output flows with backpressure: the Kubernetes stream
// reads nothing more until the previous chunk has been written to the client.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "auth/jwt.h"
#include "exec/command_run.h"
#include "exec/container_check.h"
#include "exec/exec_metrics.h"
#include "exec/kube.h"
#include "exec/policy_stream.h"
#include "exec/session_call.h"
#include "exec/session_hub.h"
#include "exec/session_open.h"
#include "exec/shell_run.h"
#include "podgate/common/v1/common.pb.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "podgate/policy/v1/policy.grpc.pb.h"
#include "runtime/timer.h"
#include "runtime/trace_metadata.h"

namespace podgate::exec {

namespace common = podgate::common::v1;
namespace pb = podgate::exec::v1;

class Session final : public std::enable_shared_from_this<Session> {
 public:
  // `call` carries the session's stream until OnDone (the caller keeps it alive until then).
  Session(SessionHub* hub, SessionCall* call)
      : hub_(hub),
        call_(call),
        opts_(hub->options()),
        recording_(opts_.recording_chunk_bytes, opts_.recording_flush) {
    hub_->metrics()->live_sessions.Increment();
    hub_->SessionCreated();
  }
  ~Session() {
    hub_->metrics()->live_sessions.Decrement();
    hub_->SessionDestroyed();  // last: main may destroy the hub once the count is 0
  }

  void Start() {
    self_ = shared_from_this();
    source_address_ = call_->peer();
    trace_ = call_->trace();
    StartRead(&request_);
  }

  // Resumes this session (detached, or still on a stream the client has left) on `link`'s call:
  // `link` is the Session reactor whose open asked to resume (ResumeSession) for the verified
  // user `who`. On success the session's messages go to and come from that call, starting with
  // `resumed` and the messages after resume.last_seq(); on failure nothing changed.
  absl::Status Attach(const std::shared_ptr<Session>& link, const pb::ResumeSession& resume,
                      const common::Principal& who);

  // The call's reports (SessionCall).
  void OnReadDone(bool ok);
  void OnWriteDone(bool ok);
  void OnCancel();
  void OnDone();

  // Adds `link`, the reactor of a joining open whose user `who` policy allowed (`rule`), to
  // this session's participants as `role`: it receives `ready`, `participants` and from then on
  // what the session's owner sees. NOT_FOUND when the session is not open (any more).
  absl::Status AddWatcher(const std::shared_ptr<Session>& link, common::ParticipantRole role,
                          const common::Principal& who, const std::string& rule);
  // The session as ListSessions shows it; nullopt unless it is open. `owner` says whose it is.
  std::optional<pb::LiveSession> Describe();

  // Closes the session from outside (server drain).
  void CloseFromHub(common::CloseReason reason, const std::string& message) {
    std::lock_guard<std::mutex> lock(mu_);
    CloseLocked(reason, message);
  }

 private:
  // kLink: this reactor's call carries another session's stream (a resume): owner_.
  // kWatching: this reactor's call shows another session to a user who joined it (watched_).
  enum class State { kAwaitOpen, kOpening, kReady, kClosed, kLink, kWatching };

  class CommandObserver;
  class ShellObserver;

  // One queued message to the client, and what to do once it is written. `output_bytes` is the
  // command output it carries (0 for anything else).
  struct Outgoing {
    pb::SessionResponse message;
    std::function<void()> after_write;
    size_t output_bytes = 0;
    // Its encoded size, once kept for a resume (replay_).
    size_t kept_bytes = 0;
  };

  // Output from the pod waiting to be written to the client: up to kOutputWindowBytes the pod's
  // stream is read on at once (the writes to the client overlap the reads from the pod); above
  // it reading from the pod waits until the queue has drained below kOutputResumeBytes. So the
  // memory a session holds for a slow client is bounded by the window plus one frame from the
  // API server, and the pod is slowed down (backpressure) instead. Consecutive chunks of the
  // same stream still queued are written as one message of at most kMaxOutputMessageBytes.
  static constexpr size_t kOutputWindowBytes = 256 * 1024;
  static constexpr size_t kOutputResumeBytes = 128 * 1024;
  static constexpr size_t kMaxOutputMessageBytes = 256 * 1024;

  // --- the session's stream and the calls that carry it ----------------------------------
  // A session's stream is carried by one call at a time, its link: first the call that opened
  // it (the session's own reactor), after a resume the resuming call's reactor. Every reactor
  // callback goes to the session the call carries (OwnerOf); the link's call-level fields
  // (writing_, in_flight_, in_read_done_, call_finished_, call_done_, request_) are guarded by
  // that session's mu_.
  std::shared_ptr<Session> OwnerOf();
  void LinkReadDone(Session* link, bool ok);
  void LinkWriteDone(Session* link, bool ok);
  void LinkCancelled(Session* link);
  void LinkDone(Session* link);
  // Handles one client message that came on `link` (without the lock); false when no further
  // message is to be read.
  bool HandleReadDone(Session* link, bool ok);
  // The link's stream broke (`why`): the session waits for a resume (--resume_grace), else it
  // closes as disconnected.
  // drop_queue: the messages not yet written are dropped at once (a write failed) rather than
  // tried on the broken stream.
  void LinkBrokeLocked(Session* link, const std::string& why, bool drop_queue);
  bool CanDetachLocked() const;
  void DetachLocked(Session* link, const std::string& why);
  // Ends the call of a link the session no longer uses, once its write in flight is done.
  void FinishStaleLinkLocked(Session* link);
  // A written message kept for a resume; the oldest go past --resume_buffer_bytes.
  void KeepForResumeLocked(Outgoing done);
  // The `ready` message's body, with a new resume token when the session can be resumed.
  pb::SessionReady ReadyLocked();
  // A resuming open: the credential, then Attach on the named session.
  void HandleResume(const pb::OpenSession& open);
  // The session's end: leaves the hub, releases its policy stream and itself, once; called
  // once its calls are done (ShouldEndLocked), without the lock.
  bool ShouldEndLocked() const;
  void End();

  // --- helpers, all called with mu_ held unless noted ---
  void SendLocked(pb::SessionResponse message, std::function<void()> after_write = nullptr);
  // Queues command or shell output (`message` holds stdout or stderr) within the output window;
  // `resume` lets the pod's stream be read on: at once while the queue is within the window,
  // else once it has drained below kOutputResumeBytes (or the session ended).
  void SendOutputLocked(pb::SessionResponse message, std::function<void()> resume);
  void MaybeWriteLocked();
  void FinishLocked(const grpc::Status& status);
  void CloseLocked(common::CloseReason reason, const std::string& message);
  void ResetIdleTimerLocked();
  common::AuditEvent BaseEventLocked(common::EventKind kind);
  // Records `event`; in strict mode `then` runs only after the ack (else at once); on failure
  // in strict mode, `on_fail` runs instead. Both run without the lock held.
  void Audit(common::AuditEvent event, std::function<void()> then,
             std::function<void(absl::Status)> on_fail);

  // --- joining (session_join.cc) ---
  // A joining open: the credential, the session, policy's JoinAction, then AddWatcher.
  void HandleJoin(const pb::OpenSession& open);
  void OnJoinDecision(const pb::JoinSession& join, const std::shared_ptr<Session>& target,
                      const common::Target& where,
                      absl::StatusOr<podgate::policy::v1::AuthorizeResponse> answer);
  // A client message on a joined stream: `close` leaves, input is refused.
  bool HandleWatcherMessage(const pb::SessionRequest& req, bool ok);
  // This joined stream leaves the session it watches (`why`: SessionLeaveDetail.reason).
  void LeaveWatched(const std::string& why);
  // On the watched session: `watcher` is gone; audited, the others told.
  void RemoveWatcher(Session* watcher, const std::string& why);
  // On the watched session: a copy of `m` for everyone who joined (those who fell behind are
  // dropped), and whether `m` is of a kind they are shown.
  void FanOutLocked(const pb::SessionResponse& m, size_t output_bytes);
  // On a joined stream: queues `m`; false when the stream is over or fell behind (it then
  // closes itself).
  bool DeliverWatched(const pb::SessionResponse& m, size_t output_bytes);
  pb::Participants ParticipantsLocked() const;
  // Tells everyone in the session (owner included) who is in it.
  void BroadcastParticipantsLocked();
  // Audits a watcher's leaving and forgets it (index into watchers_).
  void DropWatcherLocked(size_t index, const std::string& why);
  bool HasModeratorLocked() const;

  void HandleOpen(const pb::OpenSession& open);
  // Open from the verified (or refused) credential on: steps 1 to 4 (session_open.cc).
  void ContinueOpenLocked(const pb::OpenSession& open, absl::StatusOr<auth::VerifiedToken> verified,
                          std::unique_lock<std::mutex> lock);
  // The same user's fresh credential: the session's end moves to its expiry (session_open.cc).
  void HandleRenew(const pb::RenewCredential& renew);
  void OnRenewVerified(absl::StatusOr<auth::VerifiedToken> verified);
  // Refuses the open: the credential did not verify (counted, audited as AUTH_FAILURE).
  void RefuseCredentialLocked(const absl::Status& status);
  // (Re)schedules the close at expires_.
  void ScheduleLimitLocked();
  // Asks policy whether the user has any rule for the target (ListAllowed): `labels_known`
  // false before the pod is looked up (a rule's podLabels then count as matching).
  void AskScope(bool labels_known, std::function<void(absl::StatusOr<ScopeAnswer>)> done);
  void OnScope(absl::StatusOr<ScopeAnswer> in_scope);
  // Refuses the target with the one message that says neither whether it exists nor whether a
  // rule lets the user in; `why` (the real reason) goes to audit only.
  // Counts a session refused while opening and ends its call with `status`.
  void RefuseOpenLocked(grpc::Status status);
  void RefuseTargetLocked(const std::string& why);
  // kube_as_ from principal_ and the impersonation options; a principal exec may not
  // impersonate is an error (audited as a DECISION with rule kubernetes-identity).
  absl::Status UpdateKubeIdentityLocked();
  // Refuses the open because Kubernetes RBAC refused the user (audited, rule kubernetes-rbac).
  void RefuseKubernetesLocked(const absl::Status& status);
  // A command refused after policy allowed it (root guard, Kubernetes RBAC): a second
  // DECISION (deny, `rule`) and `denied` to the client.
  void RefuseCommandLocked(const std::shared_ptr<Command>& cmd, const std::string& rule,
                           const std::string& reason);
  void OnPod(absl::StatusOr<PodView> pod);
  void OnPodInScope(PodView pod, absl::StatusOr<ScopeAnswer> in_scope);
  void AfterShellDecision(absl::StatusOr<podgate::policy::v1::AuthorizeResponse> answer);
  void CheckRootThen(bool root_allowed, std::function<void(absl::Status)> next);
  void SendReady();
  // The open's step that just ended took the time since the last one ended: observed as
  // `stage` (policy's steps are summed and observed once the open is ready). With mu_ held.
  void OpenStepDoneLocked(ExecMetrics::OpenStage stage);
  void HandleCommand(const pb::RunCommand& run);
  void OnDecision(std::shared_ptr<Command> cmd,
                  absl::StatusOr<podgate::policy::v1::AuthorizeResponse> answer);
  // The root guard, then RunChecks from the first check (an allowed command, its decision
  // being audited meanwhile).
  void StartChecks(std::shared_ptr<Command> cmd);
  void RunChecks(std::shared_ptr<Command> cmd, int index);
  void RefuseByCheckLocked(const std::shared_ptr<Command>& cmd, const common::ContainerCheck& check,
                           const CheckOutcome& outcome);
  void StartCommand(std::shared_ptr<Command> cmd);
  // Tells the client that command `command_id` ended in an error without running.
  void SendCommandErrorLocked(const std::string& command_id, grpc::StatusCode code,
                              const std::string& message);
  // Records a refusal made before policy was asked (parser, busy) as a DECISION event.
  void RecordRefusalLocked(const std::string& command_id, const std::string& line,
                           const std::string& rule, const std::string& reason);
  // Tells the client that command `command_id` was refused; `decision`, when policy refused it,
  // adds the rule's description and whom to ask.
  void DenyLocked(const std::string& command_id, const std::string& rule, const std::string& reason,
                  const common::Decision* decision = nullptr);
  void StopCommandLocked(common::Termination why);
  // Sends output of command `c` to the client: counted as shown, hashed and excerpted for the
  // audit record; `resume` runs once the session's output window has room (backpressure).
  void ForwardOutputLocked(Command& c, int channel, std::string data, std::function<void()> resume);
  // The launch wrapper reported the command's pid: let it run ("go"), unless it was stopped.
  void OnLaunchReportedLocked(const std::shared_ptr<Command>& cmd);
  void SendGoLocked(const std::shared_ptr<Command>& cmd);
  // The command cannot be let run (its process could not be identified, or not journaled):
  // it is not run. `why` completes "the command was not run: ".
  void LaunchFailedLocked(const std::shared_ptr<Command>& cmd, const std::string& why);
  // No launch report (or, with a journal, the entry and pid not durable) within
  // --launch_timeout: the command ends now, as not run.
  void LaunchTimedOutLocked(const std::shared_ptr<Command>& cmd);
  // Arms cmd->launch_timer for --launch_timeout from now.
  void ArmLaunchTimerLocked(const std::shared_ptr<Command>& cmd);
  // The command's process is known to be gone (or never ran).
  void MarkGoneLocked(const std::shared_ptr<Command>& cmd);
  // Drops the command's journal entry once its process is gone and its result acknowledged.
  void MaybeUnjournalLocked(const std::shared_ptr<Command>& cmd);
  // Queues the journal entry of `cmd`, not launched yet (StartCommand, with --journal_dir).
  void StartJournalLocked(const std::shared_ptr<Command>& cmd);
  // The journal's write of `cmd`'s entry (`launch` false) or launch line ended (on the
  // journal's thread; `asked`: when it was queued): "go" follows once both are durable, or the
  // command ends as not run.
  void JournalWrittenLocked(const std::shared_ptr<Command>& cmd, absl::Status written, bool launch,
                            absl::Time asked);
  void JournalFailedLocked(const std::shared_ptr<Command>& cmd, const absl::Status& s);
  // Removes the entry of a command that will never get "go" (it ended, failed or was stopped
  // before it), unless a write of it is under way (its completion removes it).
  void DropUnsentJournalLocked(const std::shared_ptr<Command>& cmd);
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

  // The call's operations (see SessionCall).
  void StartRead(pb::SessionRequest* request) { call_->StartRead(request); }
  void StartWrite(const pb::SessionResponse* response) { call_->StartWrite(response); }
  void Finish(const grpc::Status& status) { call_->Finish(status); }

  SessionHub* const hub_;
  SessionCall* const call_;
  const ExecOptions& opts_;
  std::shared_ptr<Session> self_;

  std::mutex mu_;
  State state_ = State::kAwaitOpen;
  pb::SessionRequest request_;
  // A list, not a deque: an empty list holds no memory (a deque keeps a block of its own even
  // when empty), and an idle session's queue is empty.
  std::list<Outgoing> out_;
  // The message being written on this reactor's call (as a link; see above).
  Outgoing in_flight_;
  // Output bytes in out_, and the pod stream's resume held while they are above the window.
  size_t out_output_bytes_ = 0;
  std::function<void()> output_resume_;
  bool writing_ = false;
  bool finish_pending_ = false;
  // The session's stream has ended (its last message written, or dropped while detached).
  bool finished_ = false;
  // This reactor's call: Finish was called; OnDone came.
  bool call_finished_ = false;
  bool call_done_ = false;
  // The session's own call (the one that opened it) is done; End ran.
  bool own_call_done_ = false;
  bool ended_ = false;
  // The call carrying the session's stream (this, a resuming reactor, or null while detached).
  Session* link_ = this;
  // As a link: the session this reactor's call carries (guarded by this->mu_).
  std::shared_ptr<Session> owner_;
  // Resume (--resume_grace): the hash of the single-use token, whether the stream is broken
  // and the session waits, and the timer that closes it if nobody comes back.
  std::string resume_token_hash_;
  bool detached_ = false;
  std::string detached_why_;
  // The latest resume's connection, for its audit record (copied from the resuming reactor).
  std::string resumed_from_;
  std::string resumed_client_;
  runtime::TimerQueue::Id grace_timer_ = 0;
  // Messages written (with their seq), kept for a resume; their encoded bytes.
  std::list<Outgoing> replay_;
  size_t replay_bytes_ = 0;
  // The last seq assigned, the output bytes sent through it, and the newest message dropped
  // from replay_ (seq and output offset).
  uint64_t next_seq_ = 0;
  uint64_t output_offset_ = 0;
  uint64_t trimmed_seq_ = 0;
  uint64_t trimmed_offset_ = 0;
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
  // The session's trace: a span of the caller's traceparent (edge's), or a new trace for a
  // client that sent none. Its trace_id goes on every log line and audit event of the session.
  runtime::TraceContext trace_;
  std::string client_;
  common::SessionMode mode_ = common::SESSION_MODE_COMMAND;
  common::Principal principal_;
  // Whom Kubernetes sees behind the calls made for this session's user (empty: exec itself),
  // from principal_ (again on a renewed credential).
  KubeIdentity kube_as_;
  common::Target target_;
  // The cluster target_ names (resolved at open; target_.cluster() holds its name). Set before
  // anything is asked of Kubernetes, never changed after.
  Cluster* cluster_ = nullptr;
  PodView pod_;
  absl::Time expires_;
  // Whether expires_ is the credential's expiry (else a session time limit).
  bool expiry_is_credential_ = false;
  absl::Time opened_at_;
  // Where the open's time goes (ExecMetrics::OpenStage): when its current step began, and the
  // time policy took over the steps that ask it.
  absl::Time open_step_;
  absl::Duration open_policy_;
  // Policy said the pod's labels cannot change whether the target is in scope: the open does
  // not ask again once it has them.
  bool scope_labels_irrelevant_ = false;
  bool admitted_ = false;
  int64_t commands_ = 0;
  // Every command id this session has seen (64-bit hashes, about 16 bytes a command), so none
  // is reused; at most ExecOptions::max_commands_per_session of them.
  absl::flat_hash_set<uint64_t> used_ids_;
  std::unique_ptr<PolicyStream> policy_;
  std::shared_ptr<Command> running_;
  runtime::TimerQueue::Id idle_timer_ = 0;
  runtime::TimerQueue::Id limit_timer_ = 0;
  uint32_t width_ = 80;
  uint32_t height_ = 24;
  // The deciding shell rule's limits (its time limit bounds the shell session).
  common::Limits shell_limits_;

  // Those who joined this session (it is their owner): each a joined stream's reactor.
  struct Watcher {
    Session* raw = nullptr;
    std::weak_ptr<Session> session;
    common::Principal principal;
    common::ParticipantRole role = common::PARTICIPANT_ROLE_OBSERVER;
    absl::Time joined;
  };
  std::vector<Watcher> watchers_;
  // At most this many users join one session.
  static constexpr size_t kMaxWatchers = 32;
  // The shell rule asked for a moderator (Decision.moderator_required); the shell waits for one.
  bool moderator_required_ = false;
  bool waiting_for_moderator_ = false;
  // Input refused while waiting for a moderator: said once per wait.
  bool told_waiting_ = false;
  // Registered in the hub by session id (at `ready`).
  bool registered_ = false;
  // As a joined stream: the session watched, this user's role, when and why it leaves.
  bool watcher_ = false;
  std::shared_ptr<Session> watched_;
  common::ParticipantRole role_ = common::PARTICIPANT_ROLE_OWNER;
  std::string leave_reason_;
  // The last command those who joined were shown (`command`): its `error`, if it ends so, is
  // theirs too.
  std::string announced_command_;

  // Shell mode.
  std::unique_ptr<ExecHandle> shell_;
  AsciicastRecording recording_;
  // Keystrokes that arrived before the shell's stream existed.
  std::string early_stdin_;
  // Stdin held for a command not yet running: past this, reading from the client pauses.
  static constexpr size_t kMaxEarlyStdin = 64 * 1024;
};

}  // namespace podgate::exec
