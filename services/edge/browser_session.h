// One browser WebSocket bridged to one exec Session stream (v1 or seed protocol).
//
// Everything runs on the connection's strand: WebSocket events arrive there, and ExecStream
// posts gRPC reactions there. Flow control both ways, no thread per connection:
// - exec → browser: one exec read at a time; when the WebSocket queue passes its high
//   watermark the next read waits for OnWritable, so exec (and the Kubernetes stream behind
//   it) stops at the slow browser.
// - browser → exec: one exec write at a time; past `max_pending_requests` queued requests edge
//   stops reading the WebSocket until the queue drains.
// Message rate (per connection and per user), idle time, the credential's expiry and the
// authentication deadline close the connection with a documented code (docs/protocol.md).
//
// On shutdown (Drain) a session without a running command says so (v1 `closed` reason
// `shutdown`, seed a stderr line) and closes with 1001 at once; one with a running command
// refuses new commands and closes the same way right after that command's result, so the
// browser never loses it. CloseNow ends whatever is left when the drain deadline passes.
//
// The session's state is explicit (session_state.h): its life, its exec stream's phase, the
// pool its connection slot is in and its one exec read. Each changes only through Enter,
// EnterExec or EnterPool, which check the change against the transition tables there; one
// they do not allow is refused, logged and counted. What the messages mean and what the bytes
// are is not decided here: protocol.h parses, codec.h encodes.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <list>
#include <memory>
#include <optional>
#include <string>

#include "auth/jwt.h"
#include "edge/edge_context.h"
#include "edge/exec_stream.h"
#include "edge/limits.h"
#include "edge/protocol.h"
#include "edge/session_state.h"
#include "http/server.h"
#include "runtime/trace.h"

namespace podgate::edge {

enum class Protocol { kV1, kSeed };

struct SessionParams {
  Protocol protocol = Protocol::kV1;
  podgate::common::v1::Target target;
  podgate::common::v1::SessionMode mode = podgate::common::v1::SESSION_MODE_COMMAND;
  // Verified at the handshake (and counted against the user's connections), or empty: the
  // first message authenticates.
  // The session keeps its principal and expiry, not the token's other claims.
  std::optional<auth::VerifiedToken> verified;
  // The credential, until it is handed to exec (the open, or a renewal).
  std::string token;
  std::string source_address;
  std::string client;  // the User-Agent, until it is handed to exec with the open
  std::string path;  // the request path, for the audit of a refused credential
  // From an auth proxy (ProxyTrust): a credential the first message brings must agree with it.
  std::optional<AuthProxyRequest> auth_proxy;
  // Behind a trusted proxy: the forwarded client's place (ProxyTrust::AcquireClientSlot), given
  // back when the session ends.
  std::shared_ptr<void> client_slot;
  // v1: the session to resume instead of opening one (the `podgate.resume.` sub-protocol
  // entry, docs/protocol.md "Resuming a session"); exec checks it.
  std::optional<podgate::exec::v1::ResumeSession> resume;
  // v1: another user's session to join (/ws/join/{session_id}, docs/protocol.md "Joining a
  // session"); exec asks policy and refuses or adds this user to it.
  std::optional<podgate::exec::v1::JoinSession> join;
  // The upgrade's trace (edge's span of it, RouteTable): the session's trace_id on every log
  // line and audit event, the parent of the exec stream's span.
  runtime::TraceContext trace;
};

class BrowserSession : public http::WebSocketHandler,
                       public ExecStreamEvents,
                       public std::enable_shared_from_this<BrowserSession> {
 public:
  // The replica-wide connection slot is already taken: Limits::AcquireConnection when the
  // handshake was authenticated, else Limits::AcquireUnauthenticated (the session moves to the
  // replica's pool once its first message authenticates); the session gives it back when it
  // closes. Its place in context->sessions is reserved too
  // (SessionRegistry::Reserve): it registers there in OnOpen and leaves when destroyed.
  BrowserSession(EdgeContext* context, SessionParams params);
  ~BrowserSession() override;

  void OnOpen(std::shared_ptr<http::WebSocketConnection> connection) override;
  void OnMessage(std::string_view data, bool binary) override;
  void OnWritable() override;
  void OnClose(std::string reason) override;

  void OnExecRead(bool ok, podgate::exec::v1::SessionResponse response) override;
  void OnExecWriteDone(bool ok) override;
  void OnExecDone(grpc::Status status) override;

  // Edge is shutting down: end the session at once, or right after the running command's
  // result. Any thread; only after OnOpen (the registry sees the session from then on).
  void Drain();
  // The drain deadline passed: close (1001) now, even with a command running. Any thread.
  void CloseNow();

 private:
  const char* protocol_name() const { return params_.protocol == Protocol::kV1 ? "v1" : "seed"; }
  void Authenticate(const std::string& token);
  void StartExec();
  void HandleV1(std::string data, bool binary);
  // A v1 `renew`: a fresh credential of the same user moves the session's end (and exec's)
  // to its expiry. False (an error sent, the session going on) when refused.
  bool Renew(const V1ClientMessage& m);
  void HandleSeed(std::string data, bool binary);
  // Answers, as the seed's consumer does, the lines it answers itself: an empty line, `exit`
  // and a later `Authorization: Bearer` line. False for a command line (exec's to run).
  bool AnswerSeedLine(const std::string& line);
  // A login line on an open seed session: the seed's welcome for a credential of the session's
  // user; any other is audited, answered "Please login first" and closed (1008).
  void SeedRelogin(const std::string& line);
  // The seed's answer to a connection that is not logged in: "Please login first", close 1008.
  void SeedLoginFirst(const std::string& close_reason);
  void SendNextSeedCommand();
  void Enqueue(podgate::exec::v1::SessionRequest request);
  void Pump();
  void EndExec();
  // Leaves a resumable session to exec (docs/protocol.md, "Resuming a session"): the exec call
  // is cancelled instead of ended, so exec keeps the session for its resume grace and the page
  // resumes it, here or through another edge. `why` labels the metric.
  void DetachExec(const char* why);
  void MaybeRelease();
  void ReadExec();
  // Sends to the browser; false when the WebSocket queue is above its high watermark.
  bool Send(std::string data, bool binary);
  // Sends a v1 output message (`kind`, then `data`) the way Send(V1Binary(kind, data)) would,
  // without copying `data` again.
  bool SendOutput(BinaryKind kind, std::string data);
  void SendError(const std::string& code, const std::string& message);
  void CloseBrowser(uint16_t code, const std::string& reason);
  void ArmTimer();
  void OnTimer(boost::system::error_code ec);
  void OnDrain();
  void OnCloseNow();
  bool CommandRunning() const { return !commands_in_exec_.empty(); }
  // The exec stream broke under an open session (the exec replica died, or the connection to
  // it was lost): audited (the trail is never silent), and the browser is told what became of
  // its command before the close (1013).
  void ExecLost(const grpc::Status& status);
  // Tells the browser edge is shutting down and closes with 1001; `when` labels the metric.
  void CloseForShutdown(const char* when);

  EdgeContext* const context_;
  SessionParams params_;
  std::shared_ptr<http::WebSocketConnection> connection_;
  boost::asio::any_io_executor strand_;  // the connection's, set in OnOpen and kept
  uint64_t registry_key_ = 0;            // non-zero once registered in context_->sessions
  std::unique_ptr<boost::asio::steady_timer> timer_;
  std::optional<TokenBucket> bucket_;
  std::string user_;  // set once authenticated and counted
  absl::Time opened_;
  absl::Time last_message_;
  absl::Time expires_ = absl::InfiniteFuture();

  // The session's state (session_state.h). Changed only through these, which refuse (and
  // log) a transition the tables do not allow; returns whether the change was made.
  bool Enter(SessionState next);
  bool EnterExec(ExecPhase next);
  bool EnterPool(SlotPool next);
  // The one check behind them: counted ("state", "exec", "slot") and logged when refused.
  template <class State>
  bool Change(State& current, State next, const char* what);
  SessionState state_ = SessionState::kUpgrading;
  ExecPhase exec_phase_ = ExecPhase::kNone;
  SlotPool pool_ = SlotPool::kUnauthenticated;
  // Whether the browser may still be written to: not closing and not gone.
  bool BrowserOpen() const { return state_ < SessionState::kClosing; }

  ExecStream* exec_ = nullptr;  // null before StartExec and after Release
  // Flow control, one operation in flight per direction (not states of the session: each
  // runs alongside any of them).
  ExecRead exec_read_ = ExecRead::kIdle;
  bool write_in_flight_ = false;
  bool browser_paused_ = false;  // the WebSocket is not read until the queue drains
  // Lists, not deques, here and below: an empty list holds no memory (a deque keeps a block of
  // its own even when empty), and a session is idle, its queues empty, most of its life.
  std::list<podgate::exec::v1::SessionRequest> pending_;

  // Seed lines not yet answered, in order: commands waiting their turn, and (before exec's
  // `ready`) any line, held so that the welcome comes first. A list: an empty one holds no
  // memory, and an idle session's is empty.
  std::list<std::string> seed_commands_;
  // The seed protocol runs one line at a time: the front of seed_commands_ is in exec.
  bool seed_command_running_ = false;
  uint64_t next_command_ = 0;
  // The ids of commands handed to exec and not yet answered with exit, denied or error (exec
  // answers every command with exactly one of them), oldest first.
  std::list<std::string> commands_in_exec_;
  // From exec's `ready`, for the audit of a lost exec stream.
  std::string session_id_;
  podgate::common::v1::Principal principal_;
  podgate::common::v1::Target resolved_target_;
  // What exec said on the stream: `ready` (counted as an open session) and `closed` (the
  // stream then ends on purpose, not lost).
  bool exec_ready_ = false;
  bool exec_closed_ = false;
  // v1 only: exec's `ready` (or `resumed`) carried a resume token, so a WebSocket that breaks
  // without `close` leaves the session to exec (DetachExec) instead of ending it.
  bool resumable_ = false;
  bool close_requested_ = false;  // the browser sent `close`: the session ends
  bool detached_ = false;         // DetachExec ran
  // The position a resume started from (no token kept): `resumed` tells the page where the
  // replay goes on.
  podgate::exec::v1::ResumeSession resumed_from_;
  uint64_t commands_started_ = 0;           // commands handed to exec
  std::optional<absl::Time> command_sent_;  // for the first-output latency

  void ReleaseSlots();
  // Counts, audits and answers a refused or missing credential, then closes with 1008.
  void RefuseCredential(const std::string& reason, const std::string& message,
                        const std::string& seed_reply, const std::string& close_reason);
  // Counts and audits a refused seed login; says nothing yet, as the seed's consumer
  // (kLoginRefused).
  void RefuseSeedLogin(const std::string& reason, const std::string& message);
};

}  // namespace podgate::edge
