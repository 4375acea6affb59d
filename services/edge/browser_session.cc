#include "edge/browser_session.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <chrono>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "edge/codec.h"
#include "edge/exec_lanes.h"
#include "edge/sso.h"
#include "runtime/log.h"
#include "wire/enum_label.h"
#include "wire/status.h"

namespace podgate::edge {

namespace {

using podgate::exec::v1::SessionRequest;
using podgate::exec::v1::SessionResponse;

std::chrono::steady_clock::time_point SteadyAt(absl::Time t) {
  absl::Duration d = t - absl::Now();
  if (d < absl::ZeroDuration()) {
    d = absl::ZeroDuration();
  }
  if (d > absl::Hours(24 * 365)) {
    d = absl::Hours(24 * 365);
  }
  return std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(d);
}

// What a browser is told when edge shuts down (docs/protocol.md, "Shutdown").
constexpr char kShutdownMessage[] = "edge is shutting down; reconnect to continue";
constexpr char kSeedShutdownMessage[] = "edge is shutting down";

// Close reasons are at most 123 bytes (RFC 6455 §5.5).
std::string CloseReasonText(absl::string_view text) { return std::string(text.substr(0, 120)); }

}  // namespace

BrowserSession::BrowserSession(EdgeContext* context, SessionParams params)
    : context_(context), params_(std::move(params)) {
  if (params_.verified.has_value()) {
    user_ = params_.verified->principal.user();
    expires_ = params_.verified->expires;
    params_.verified->claims = nlohmann::json();  // the principal is all the session uses
  }
  pool_ = params_.verified.has_value() ? SlotPool::kConnections : SlotPool::kUnauthenticated;
}

BrowserSession::~BrowserSession() {
  ReleaseSlots();
  if (registry_key_ != 0) {
    context_->sessions->Remove(registry_key_);
  } else {
    context_->sessions->Unreserve();  // the upgrade failed: OnOpen never ran
  }
}

// The replica and user connection slots; also when the upgrade failed and OnClose never ran.
void BrowserSession::ReleaseSlots() {
  const SlotPool pool = pool_;
  if (pool == SlotPool::kReleased) {
    return;
  }
  EnterPool(SlotPool::kReleased);
  if (pool == SlotPool::kConnections) {
    context_->limits->ReleaseConnection();
  } else {
    context_->limits->ReleaseUnauthenticated();
  }
  if (!user_.empty()) {
    context_->limits->ReleaseUser(user_);
  }
}

template <class State>
bool BrowserSession::Change(State& current, State next, const char* what) {
  if (next == current) {
    return true;
  }
  if (!TransitionAllowed(current, next)) {
    context_->metrics->InvalidTransition(what);
    log::Error("browser session: invalid transition refused", {{"trace_id", params_.trace.trace_id},
                                                               {"what", what},
                                                               {"from", StateName(current)},
                                                               {"to", StateName(next)},
                                                               {"user", user_}});
    return false;
  }
  current = next;
  return true;
}

bool BrowserSession::Enter(SessionState next) { return Change(state_, next, "state"); }

bool BrowserSession::EnterExec(ExecPhase next) { return Change(exec_phase_, next, "exec"); }

bool BrowserSession::EnterPool(SlotPool next) { return Change(pool_, next, "slot"); }

void BrowserSession::OnOpen(std::shared_ptr<http::WebSocketConnection> connection) {
  connection_ = std::move(connection);
  context_->metrics->ConnectionOpened(protocol_name());
  opened_ = context_->limits->Now();
  last_message_ = opened_;
  const LimitOptions& lo = context_->limits->options();
  bucket_.emplace(lo.messages_per_second, lo.message_burst, opened_);
  timer_ = std::make_unique<boost::asio::steady_timer>(connection_->executor());
  if (params_.verified.has_value()) {
    Enter(SessionState::kOpening);
    StartExec();
  } else {
    Enter(SessionState::kAuthenticating);
  }
  ArmTimer();
  strand_ = connection_->executor();
  registry_key_ = context_->sessions->Add(weak_from_this());
}

void BrowserSession::OnMessage(std::string_view data, bool binary) {
  context_->metrics->Frame("in", data.size());
  if (!BrowserOpen()) {
    return;
  }
  absl::Time now = context_->limits->Now();
  last_message_ = now;
  if (!bucket_->Take(now) || (!user_.empty() && !context_->limits->TakeUserMessage(user_))) {
    context_->metrics->Rejection("rate");
    log::Warn(
        "browser message rate exceeded",
        {{"trace_id", params_.trace.trace_id}, {"user", user_}, {"protocol", protocol_name()}});
    CloseBrowser(kClosePolicy, "message rate exceeded");
    return;
  }
  if (params_.protocol == Protocol::kV1) {
    HandleV1(std::string(data), binary);
  } else {
    HandleSeed(std::string(data), binary);
  }
}

void BrowserSession::Authenticate(const std::string& token) {
  absl::StatusOr<auth::VerifiedToken> verified = context_->verifier->Verify(token);
  if (!verified.ok()) {
    if (params_.protocol == Protocol::kSeed) {
      RefuseSeedLogin(auth::AuthFailureReason(verified.status()),
                      std::string(verified.status().message()));
      return;
    }
    RefuseCredential(auth::AuthFailureReason(verified.status()),
                     std::string(verified.status().message()), "", "authentication failed");
    return;
  }
  if (params_.auth_proxy.has_value() && context_->proxies != nullptr) {
    if (absl::Status s = context_->proxies->CheckIdentity(*params_.auth_proxy, *verified);
        !s.ok()) {
      if (params_.protocol == Protocol::kSeed) {
        RefuseSeedLogin(kProxyMismatchReason, std::string(s.message()));
        return;
      }
      RefuseCredential(kProxyMismatchReason, std::string(s.message()), "", "authentication failed");
      return;
    }
  }
  if (!context_->limits->AcquireUser(verified->principal.user())) {
    context_->metrics->Rejection("limit");
    if (params_.protocol == Protocol::kV1) {
      SendError("RESOURCE_EXHAUSTED", "too many connections for this user");
    } else {
      Send(SeedReply("stderr", "Too many connections for this user"), false);
    }
    CloseBrowser(kClosePolicy, "too many connections for this user");
    return;
  }
  // From the unauthenticated pool to the replica's.
  if (!context_->limits->AcquireConnection()) {
    context_->limits->ReleaseUser(verified->principal.user());
    context_->metrics->Rejection("limit");
    if (params_.protocol == Protocol::kV1) {
      SendError("RESOURCE_EXHAUSTED", "too many connections");
    } else {
      Send(SeedReply("stderr", "Too many connections"), false);
    }
    CloseBrowser(kClosePolicy, "too many connections");
    return;
  }
  context_->limits->ReleaseUnauthenticated();
  EnterPool(SlotPool::kConnections);
  if (connection_ != nullptr) {
    connection_->SetAuthenticated();
  }
  user_ = verified->principal.user();
  expires_ = verified->expires;
  params_.token = token;
  params_.verified = *std::move(verified);
  params_.verified->claims = nlohmann::json();
  Enter(SessionState::kOpening);
  StartExec();
  ArmTimer();
}

void BrowserSession::RefuseCredential(const std::string& reason, const std::string& message,
                                      const std::string& seed_reply,
                                      const std::string& close_reason) {
  AuthFailed(context_, {reason, message, params_.source_address, params_.path, params_.target},
             params_.trace.trace_id);
  log::Info("browser authentication refused", {{"trace_id", params_.trace.trace_id},
                                               {"reason", reason},
                                               {"source", params_.source_address}});
  if (params_.protocol == Protocol::kV1) {
    SendError("UNAUTHENTICATED", message);
  } else {
    Send(SeedReply("stderr", seed_reply), false);
  }
  CloseBrowser(kClosePolicy, close_reason);
}

void BrowserSession::RefuseSeedLogin(const std::string& reason, const std::string& message) {
  AuthFailed(context_, {reason, message, params_.source_address, params_.path, params_.target},
             params_.trace.trace_id);
  log::Info("browser authentication refused", {{"trace_id", params_.trace.trace_id},
                                               {"reason", reason},
                                               {"source", params_.source_address}});
  // The seed's consumer answers a refused login with nothing and keeps the connection; its next
  // message is told to log in. The authentication deadline still holds (OnTimer).
  Enter(SessionState::kLoginRefused);
}

void BrowserSession::SeedLoginFirst(const std::string& close_reason) {
  Send(SeedReply("stderr", kSeedLoginFirst), false);
  CloseBrowser(kClosePolicy, close_reason);
}

void BrowserSession::StartExec() {
  SessionRequest open;
  auto* o = open.mutable_open();
  // The credential goes to exec once; the session does not keep it (a renewal brings its own).
  o->mutable_credential()->set_bearer_token(std::exchange(params_.token, std::string()));
  *o->mutable_target() = params_.target;
  o->set_mode(params_.mode);
  o->mutable_size()->set_width(80);
  o->mutable_size()->set_height(24);
  o->set_source_address(params_.source_address);
  o->set_client(std::exchange(params_.client, std::string()));
  if (params_.resume.has_value()) {
    resumed_from_.set_last_seq(params_.resume->last_seq());
    resumed_from_.set_output_offset(params_.resume->output_offset());
    *o->mutable_resume() = *std::move(params_.resume);
    params_.resume.reset();
  }
  if (params_.join.has_value()) {
    *o->mutable_join() = *params_.join;
  }
  EnterExec(ExecPhase::kStreaming);
  exec_read_ = ExecRead::kInFlight;
  write_in_flight_ = true;
  if (context_->exec_lanes != nullptr) {
    exec_ = context_->exec_lanes->Open(shared_from_this(), connection_->executor(), open,
                                       params_.trace);
  }
  if (exec_ == nullptr) {
    exec_ = new ExecCallStream(
        context_->exec_sessions != nullptr ? context_->exec_sessions : context_->exec,
        shared_from_this(), connection_->executor(), std::move(open), params_.trace);
  }
}

void BrowserSession::HandleV1(std::string data, bool binary) {
  absl::StatusOr<V1ClientMessage> parsed = binary ? ParseV1Binary(data) : ParseV1Text(data);
  if (!parsed.ok()) {
    SendError("INVALID_ARGUMENT", std::string(parsed.status().message()));
    CloseBrowser(binary ? kCloseUnsupportedData : kCloseInvalidPayload,
                 std::string(parsed.status().message()));
    return;
  }
  V1ClientMessage& m = *parsed;
  if (state_ == SessionState::kAuthenticating) {
    if (m.type != V1ClientMessage::Type::kAuth) {
      RefuseCredential("missing", "the first message must be {\"type\":\"auth\",...}", "",
                       "authentication required");
      return;
    }
    Authenticate(m.token);
    return;
  }
  SessionRequest request;
  switch (m.type) {
    case V1ClientMessage::Type::kAuth:
      SendError("FAILED_PRECONDITION", "already authenticated");
      CloseBrowser(kClosePolicy, "second auth message");
      return;
    case V1ClientMessage::Type::kCommand:
      if (m.id.empty()) {
        m.id = absl::StrCat("c", ++next_command_);
      }
      if (state_ == SessionState::kDraining) {
        // The running command may finish, nothing new starts: the session closes after it.
        Send(V1Error("UNAVAILABLE", kShutdownMessage, m.id), false);
        return;
      }
      request.mutable_command()->set_command_id(m.id);
      request.mutable_command()->set_line(m.line);
      command_sent_ = absl::Now();
      break;
    case V1ClientMessage::Type::kStdin:
      request.mutable_stdin()->set_data(m.data);
      request.mutable_stdin()->set_eof(m.eof);
      break;
    case V1ClientMessage::Type::kResize:
      request.mutable_resize()->mutable_size()->set_width(m.cols);
      request.mutable_resize()->mutable_size()->set_height(m.rows);
      break;
    case V1ClientMessage::Type::kInterrupt:
      request.mutable_interrupt();
      break;
    case V1ClientMessage::Type::kClose:
      close_requested_ = true;
      EndExec();
      return;
    case V1ClientMessage::Type::kRenew:
      if (!Renew(m)) {
        return;
      }
      request.mutable_renew()->mutable_credential()->set_bearer_token(
          std::exchange(params_.token, std::string()));
      break;
  }
  Enqueue(std::move(request));
}

bool BrowserSession::Renew(const V1ClientMessage& m) {
  std::string token = m.token;
  if (!m.ticket.empty()) {
    std::optional<std::string> opened =
        context_->sso != nullptr ? context_->sso->OpenRenewTicket(m.ticket) : std::nullopt;
    if (!opened.has_value()) {
      SendError("UNAUTHENTICATED",
                "the renewal ticket is not one edge made or is over a minute old; the session "
                "keeps its end");
      return false;
    }
    token = *std::move(opened);
  }
  absl::StatusOr<auth::VerifiedToken> verified = context_->verifier->Verify(token);
  std::string reason = verified.ok() ? "" : auth::AuthFailureReason(verified.status());
  if (verified.ok() && (verified->principal.user() != user_ ||
                        verified->principal.issuer() != params_.verified->principal.issuer())) {
    reason = "other_user";
    verified = absl::UnauthenticatedError(
        "the new credential names another user: a session keeps the user it was opened for");
  }
  if (!verified.ok()) {
    AuthFailed(context_, {reason, std::string(verified.status().message()), params_.source_address,
                          params_.path, params_.target});
    SendError("UNAUTHENTICATED", absl::StrCat("renewal refused: ", verified.status().message(),
                                              "; the session keeps its end"));
    return false;
  }
  expires_ = verified->expires;
  params_.token = token;
  params_.verified = *std::move(verified);
  params_.verified->claims = nlohmann::json();
  Send(nlohmann::json(
           {{"type", "renewed"},
            {"expires", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", expires_, absl::UTCTimeZone())}})
           .dump(),
       false);
  ArmTimer();
  return true;
}

// In the order of the seed's consumer (consumer.py, `receive`): a login line, then "not logged
// in", then an empty line, `exit`, and last a command line.
void BrowserSession::HandleSeed(std::string data, bool binary) {
  const bool login = !binary && absl::StartsWith(data, kSeedAuthPrefix);
  if (state_ == SessionState::kLoginRefused) {
    // Already audited. Unlike the seed's consumer, a second credential is not tried on the
    // same connection: one refused login is the connection's last.
    SeedLoginFirst("authentication failed");
    return;
  }
  if (state_ == SessionState::kAuthenticating) {
    if (!login) {
      RefuseCredential("missing", "the first message must be \"Authorization: Bearer <token>\"",
                       kSeedLoginFirst, "authentication required");
      return;
    }
    // "Authorization: Bearer " alone is a login with an empty token, refused like a bad one.
    Authenticate(ParseSeedAuth(data).value_or(""));
    return;
  }
  if (binary) {
    CloseBrowser(kCloseUnsupportedData, "text messages only");
    return;
  }
  if (state_ == SessionState::kOpening) {
    // Before exec's `ready` (and the welcome it brings) every line waits, answered in order.
    if (seed_commands_.size() >= context_->options.max_pending_requests) {
      context_->metrics->Rejection("limit");
      Send(SeedReply("stderr", "Too many commands waiting"), false);
      CloseBrowser(kClosePolicy, "too many commands waiting");
      return;
    }
    seed_commands_.push_back(std::move(data));
    return;
  }
  if (AnswerSeedLine(data)) {
    return;
  }
  if (state_ == SessionState::kDraining) {
    Send(SeedReply("stderr", kSeedShutdownMessage), false);
    return;
  }
  if (seed_commands_.size() >= context_->options.max_pending_requests) {
    context_->metrics->Rejection("limit");
    Send(SeedReply("stderr", "Too many commands waiting"), false);
    CloseBrowser(kClosePolicy, "too many commands waiting");
    return;
  }
  seed_commands_.push_back(std::move(data));
  SendNextSeedCommand();
}

bool BrowserSession::AnswerSeedLine(const std::string& line) {
  if (absl::StartsWith(line, kSeedAuthPrefix)) {
    SeedRelogin(line);
    return true;
  }
  if (line.empty()) {
    Send(SeedReply("stdout", kSeedEmptyLine), false);
    return true;
  }
  if (line == kSeedExit) {
    // Like the consumer, `bye!` is the last word: a command still running is stopped (exec is
    // asked to end the session) and its later output is not sent.
    Send(SeedReply("stdout", kSeedBye), false);
    CloseBrowser(kCloseNormal, "bye");
    return true;
  }
  // A line of spaces, ` exit` and everything else is a command line: exec decides (a line of
  // spaces is refused by its parser, which the seed's refusal text reports).
  return false;
}

void BrowserSession::SeedRelogin(const std::string& line) {
  absl::StatusOr<auth::VerifiedToken> verified =
      context_->verifier->Verify(ParseSeedAuth(line).value_or(""));
  std::string reason = verified.ok() ? "" : auth::AuthFailureReason(verified.status());
  if (verified.ok() && (verified->principal.user() != user_ ||
                        verified->principal.issuer() != params_.verified->principal.issuer())) {
    reason = "other_user";
    verified = absl::UnauthenticatedError(
        "the new credential names another user: a session keeps the user it was opened for");
  }
  if (!verified.ok()) {
    AuthFailed(context_,
               {reason, std::string(verified.status().message()), params_.source_address,
                params_.path, params_.target},
               params_.trace.trace_id);
    // The consumer logs the connection out and tells its next message to log in; podgate ends
    // the session at once rather than keep it open for a user who is not logged in.
    SeedLoginFirst("authentication failed");
    return;
  }
  // The session keeps the credential it opened with (its end is not moved: v1's `renew` does
  // that); the line is acknowledged as the consumer does, and never reaches exec or audit as a
  // command.
  Send(SeedReply("stdout", kSeedWelcome), false);
}

void BrowserSession::SendNextSeedCommand() {
  // Only once exec is ready (kOpen), never while draining or closing, one line at a time.
  // Lines the seed's consumer answers itself, held while exec was not ready, are answered
  // when they reach the front.
  while (state_ == SessionState::kOpen && !seed_command_running_ && !seed_commands_.empty()) {
    std::string line = seed_commands_.front();
    if (!AnswerSeedLine(line)) {
      break;
    }
    if (!seed_commands_.empty()) {  // CloseBrowser (exit, a refused login) may have cleared it
      seed_commands_.pop_front();
    }
  }
  if (state_ != SessionState::kOpen || exec_phase_ != ExecPhase::kStreaming ||
      seed_command_running_ || seed_commands_.empty()) {
    return;
  }
  SessionRequest request;
  request.mutable_command()->set_command_id(absl::StrCat("c", ++next_command_));
  request.mutable_command()->set_line(seed_commands_.front());
  seed_command_running_ = true;
  command_sent_ = absl::Now();
  Enqueue(std::move(request));
}

void BrowserSession::Enqueue(SessionRequest request) {
  if (exec_phase_ != ExecPhase::kStreaming) {
    return;
  }
  if (request.has_command()) {
    commands_in_exec_.push_back(request.command().command_id());
    ++commands_started_;
  }
  pending_.push_back(std::move(request));
  if (pending_.size() >= context_->options.max_pending_requests && !browser_paused_ &&
      connection_ != nullptr) {
    browser_paused_ = true;
    connection_->PauseReading();
  }
  Pump();
}

void BrowserSession::Pump() {
  if (exec_ == nullptr || write_in_flight_ || exec_phase_ == ExecPhase::kFinished) {
    return;
  }
  if (!pending_.empty()) {
    write_in_flight_ = true;
    exec_->Write(std::move(pending_.front()));
    pending_.pop_front();
    if (browser_paused_ && pending_.size() < context_->options.max_pending_requests / 2 &&
        connection_ != nullptr && state_ < SessionState::kBrowserGone) {
      browser_paused_ = false;
      connection_->ResumeReading();
    }
    return;
  }
  if (exec_phase_ == ExecPhase::kEnding) {
    EnterExec(ExecPhase::kHalfClosed);
    exec_->CloseWrites();
  }
}

// Asks exec to end the session cleanly: `close`, then half-close.
void BrowserSession::EndExec() {
  if (detached_) {
    return;  // left to exec for a resume
  }
  if (exec_phase_ == ExecPhase::kNone) {
    CloseBrowser(kCloseNormal, "bye");
    return;
  }
  if (exec_phase_ != ExecPhase::kStreaming) {
    return;  // already ending, or exec has ended the stream
  }
  SessionRequest close;
  close.mutable_close();
  pending_.push_back(std::move(close));
  EnterExec(ExecPhase::kEnding);
  Pump();
}

void BrowserSession::DetachExec(const char* why) {
  if (detached_ || exec_ == nullptr || exec_phase_ != ExecPhase::kStreaming || exec_closed_) {
    return;  // nothing to leave: exec has ended the session (or is asked to)
  }
  detached_ = true;
  pending_.clear();
  context_->metrics->SessionDetached(why);
  log::Info("session left to exec for a resume", {{"trace_id", params_.trace.trace_id},
                                                  {"session_id", session_id_},
                                                  {"user", user_},
                                                  {"why", why}});
  // A cancelled call is what exec takes for a broken stream: it keeps the session.
  exec_->Cancel();
}

void BrowserSession::ReadExec() {
  if (exec_ == nullptr || exec_read_ == ExecRead::kInFlight ||
      exec_phase_ == ExecPhase::kFinished) {
    return;
  }
  exec_read_ = ExecRead::kInFlight;
  exec_->Read();
}

void BrowserSession::MaybeRelease() {
  if (exec_ != nullptr && exec_phase_ == ExecPhase::kFinished && !write_in_flight_ &&
      exec_read_ != ExecRead::kInFlight) {
    ExecStream* exec = exec_;
    exec_ = nullptr;
    exec->Release();
  }
}

void BrowserSession::OnExecWriteDone(bool ok) {
  write_in_flight_ = false;
  if (!ok) {
    pending_.clear();
    // The stream is broken; the outstanding read reports the end.
    MaybeRelease();
    return;
  }
  Pump();
  MaybeRelease();
}

void BrowserSession::OnExecRead(bool ok, SessionResponse response) {
  exec_read_ = ExecRead::kIdle;
  if (!ok) {
    EnterExec(ExecPhase::kFinished);
    pending_.clear();
    MaybeRelease();
    return;
  }
  if (EndsCommand(response.kind_case()) && !commands_in_exec_.empty()) {
    auto it = std::find(commands_in_exec_.begin(), commands_in_exec_.end(), CommandIdOf(response));
    commands_in_exec_.erase(it == commands_in_exec_.end() ? commands_in_exec_.begin() : it);
  }
  if (response.has_ready() || response.has_resumed()) {
    podgate::exec::v1::SessionReady* ready = response.has_ready()
                                                 ? response.mutable_ready()
                                                 : response.mutable_resumed()->mutable_ready();
    // An exec from before clusters leaves the resolved cluster out: the page is told the one
    // it asked for (empty: exec's default, which such an exec does not name).
    if (ready->target().cluster().empty()) {
      ready->mutable_target()->set_cluster(params_.target.cluster());
    }
    session_id_ = ready->session_id();
    if (!params_.join.has_value()) {
      principal_ = ready->principal();  // a joined session's `ready` names its owner
    }
    resolved_target_ = ready->target();
    // The seed's page cannot resume: its sessions end with their WebSocket.
    resumable_ = params_.protocol == Protocol::kV1 && !ready->resume_token().empty();
  } else if (response.has_closed()) {
    exec_closed_ = true;
  }
  bool more = true;
  if (BrowserOpen()) {
    const bool v1 = params_.protocol == Protocol::kV1;
    switch (response.kind_case()) {
      case SessionResponse::kReady: {
        exec_ready_ = true;
        if (state_ == SessionState::kOpening) {
          Enter(SessionState::kOpen);
        }
        context_->metrics->SessionOpened();
        const auto& r = response.ready();
        log::Info("session open", {{"trace_id", params_.trace.trace_id},
                                   {"session_id", r.session_id()},
                                   {"user", r.principal().user()},
                                   {"cluster", r.target().cluster()},
                                   {"namespace", r.target().namespace_()},
                                   {"pod", r.target().pod()},
                                   {"container", r.target().container()},
                                   {"protocol", protocol_name()}});
        if (v1) {
          more = Send(V1Ready(r, params_.trace.trace_id), false);
        } else {
          // The seed's consumer welcomes a login once the container's stream is open.
          more = Send(SeedReply("stdout", kSeedWelcome), false);
        }
        SendNextSeedCommand();
        break;
      }
      case SessionResponse::kStdout:
      case SessionResponse::kStderr: {
        const bool out = response.kind_case() == SessionResponse::kStdout;
        std::string& data = out ? *response.mutable_stdout()->mutable_data()
                                : *response.mutable_stderr()->mutable_data();
        if (command_sent_.has_value()) {
          context_->metrics->FirstOutputLatency(
              absl::ToDoubleSeconds(absl::Now() - *command_sent_));
          command_sent_.reset();
        }
        if (v1) {
          more = SendOutput(out ? BinaryKind::kStdout : BinaryKind::kStderr, std::move(data));
        } else {
          more = Send(SeedReply(out ? "stdout" : "stderr", data), false);
        }
        break;
      }
      case SessionResponse::kExit: {
        const auto& e = response.exit();
        command_sent_.reset();
        if (v1) {
          more = Send(WithPosition(V1Exit(e), response.seq(), response.output_offset()), false);
        } else {
          if (std::optional<std::string> reply = SeedExit(e)) {
            more = Send(*std::move(reply), false);
          }
          seed_command_running_ = false;
          if (!seed_commands_.empty()) {
            seed_commands_.pop_front();
          }
          SendNextSeedCommand();
        }
        break;
      }
      case SessionResponse::kDenied: {
        const auto& d = response.denied();
        command_sent_.reset();
        // The reason may quote the line, which may hold secrets: only the rule is logged.
        log::Info("command denied",
                  {{"trace_id", params_.trace.trace_id}, {"user", user_}, {"rule", d.rule()}});
        if (v1) {
          more = Send(WithPosition(V1Denied(d), response.seq(), response.output_offset()), false);
        } else {
          // The seed's shell says "deny root user" when the container runs as root; exec's
          // root guard refuses such a container (and one whose uid it cannot tell).
          more = Send(d.rule() == kRootGuardRule
                          ? SeedReply("stderr", kSeedDenyRoot)
                          : SeedDenial(seed_commands_.empty() ? "" : seed_commands_.front()),
                      false);
          seed_command_running_ = false;
          if (!seed_commands_.empty()) {
            seed_commands_.pop_front();
          }
          SendNextSeedCommand();
        }
        break;
      }
      case SessionResponse::kError: {
        const auto& e = response.error();
        if (e.command_id() != "renew") {  // a refused renewal is not about the command
          command_sent_.reset();
        }
        if (v1) {
          more = Send(WithPosition(V1CommandError(e), response.seq(), response.output_offset()),
                      false);
        } else {
          more = Send(SeedReply("stderr", e.status().message()), false);
          seed_command_running_ = false;
          if (!seed_commands_.empty()) {
            seed_commands_.pop_front();
          }
          SendNextSeedCommand();
        }
        break;
      }
      case SessionResponse::kClosed: {
        const auto& c = response.closed();
        const PageClose page = PageCloseFor(c.reason());
        if (v1) {
          Send(WithPosition(V1Closed(page.reason, c.message()), response.seq(),
                            response.output_offset()),
               false);
        } else if (page.code == kCloseInternal) {
          Send(SeedReply("stderr", c.message().empty() ? "The session failed" : c.message()),
               false);
        }
        CloseBrowser(page.code, std::string(page.reason));
        break;
      }
      case SessionResponse::kResumed: {
        // Only a v1 page asks to resume (the handshake's resume entry).
        exec_ready_ = true;
        if (state_ == SessionState::kOpening) {
          Enter(SessionState::kOpen);
        }
        context_->metrics->SessionOpened();
        context_->metrics->SessionResumed();
        const auto& r = response.resumed();
        log::Info("session resumed",
                  {{"trace_id", params_.trace.trace_id},
                   {"session_id", r.ready().session_id()},
                   {"user", r.ready().principal().user()},
                   {"replayed_messages", static_cast<int64_t>(r.replayed_messages())},
                   {"lost_bytes", static_cast<int64_t>(r.lost_bytes())}});
        // The replay goes on from the position the page gave, moved past what was lost.
        more =
            Send(V1Resumed(r, params_.trace.trace_id, resumed_from_.last_seq() + r.lost_messages(),
                           resumed_from_.output_offset() + r.lost_bytes()),
                 false);
        break;
      }
      case SessionResponse::kParticipants:
        if (v1) {  // the seed's page has no participant list
          more = Send(WithPosition(V1Participants(response.participants()), response.seq(),
                                   response.output_offset()),
                      false);
        }
        break;
      case SessionResponse::kCommand:
        if (v1) {
          more = Send(V1CommandStarted(response.command()), false);
        }
        break;
      case SessionResponse::KIND_NOT_SET:
        break;
    }
    // Shutting down, the running command's result has just been queued: close after it.
    if (state_ == SessionState::kDraining && !CommandRunning()) {
      CloseForShutdown("after_command");
    }
  }
  if (more || !BrowserOpen()) {
    ReadExec();
  } else {
    exec_read_ = ExecRead::kWaitsForBrowser;  // OnWritable resumes
  }
}

void BrowserSession::OnWritable() {
  if (exec_read_ == ExecRead::kWaitsForBrowser) {
    ReadExec();
  }
}

void BrowserSession::OnExecDone(grpc::Status status) {
  exec_ = nullptr;
  EnterExec(ExecPhase::kDone);
  if (exec_ready_) {
    context_->metrics->SessionClosed();
  }
  if (exec_ready_ && !exec_closed_ && status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    ExecLost(status);
  } else if (!status.ok() && BrowserOpen()) {
    std::string code = wire::StatusCodeName(status.error_code());
    std::string message = status.error_message();
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE && !exec_ready_) {
      message = absl::StrCat("the exec service is unavailable: ", message);
    }
    log::Info("exec session ended",
              {{"trace_id", params_.trace.trace_id}, {"code", code}, {"user", user_}});
    if (params_.protocol == Protocol::kV1) {
      SendError(code, message);
    } else {
      Send(SeedReply("stderr", message), false);
    }
    CloseBrowser(CloseCodeForStatus(status.error_code()), message);
  } else if (BrowserOpen()) {
    CloseBrowser(kCloseNormal, "session closed");
  }
  if (state_ >= SessionState::kBrowserGone) {
    Enter(SessionState::kClosed);
    if (timer_ != nullptr) {
      timer_->cancel();  // no drain to wait for any more
    }
  }
}

void BrowserSession::ExecLost(const grpc::Status& status) {
  context_->metrics->ExecLost();
  const std::string running = absl::StrJoin(commands_in_exec_, ",");
  log::Warn("exec stream lost", {{"trace_id", params_.trace.trace_id},
                                 {"session_id", session_id_},
                                 {"user", user_},
                                 {"command_id", running},
                                 {"error", status.error_message()}});
  // A joined stream's loss ends no session (its owner's goes on): nothing to record here.
  if (context_->auth_audit != nullptr && !params_.join.has_value()) {
    podgate::common::v1::AuditEvent e;
    e.set_kind(podgate::common::v1::EVENT_KIND_SESSION_CLOSE);
    e.set_session_id(session_id_);
    e.set_trace_id(params_.trace.trace_id);
    if (!commands_in_exec_.empty()) {
      e.set_command_id(commands_in_exec_.front());
    }
    *e.mutable_principal() = principal_;
    *e.mutable_target() = resolved_target_;
    e.set_source_address(params_.source_address.substr(0, 128));
    auto* c = e.mutable_session_close();
    c->set_reason(podgate::common::v1::CLOSE_REASON_ERROR);
    c->set_message(
        absl::StrCat("edge lost the exec stream (", status.error_message().substr(0, 200), ")",
                     running.empty() ? std::string("; no command was running")
                                     : absl::StrCat(" while command ", running.substr(0, 200),
                                                    " ran; its outcome is unknown to edge")));
    const absl::Duration lasted = context_->limits->Now() - opened_;
    c->mutable_duration()->set_seconds(absl::ToInt64Seconds(lasted));
    c->mutable_duration()->set_nanos(
        static_cast<int32_t>(absl::ToInt64Nanoseconds(lasted % absl::Seconds(1))));
    c->set_commands(static_cast<int64_t>(commands_started_));
    context_->auth_audit->RecordEvent(std::move(e));
  }
  if (!BrowserOpen()) {
    return;
  }
  if (params_.protocol == Protocol::kV1) {
    for (const std::string& id : commands_in_exec_) {
      Send(V1ExecLostExit(id), false);
    }
    Send(V1Closed(kExecLostReason, kExecLostMessage), false);
  } else {
    if (!commands_in_exec_.empty()) {
      Send(SeedExecLostCommand(), false);
    }
    Send(SeedReply("stderr", kExecLostMessage), false);
  }
  commands_in_exec_.clear();
  CloseBrowser(kCloseTryAgainLater, "exec service lost");
}

bool BrowserSession::Send(std::string data, bool binary) {
  if (connection_ == nullptr || state_ >= SessionState::kBrowserGone) {
    return true;
  }
  context_->metrics->Frame("out", data.size());
  return connection_->Send(std::move(data), binary);
}

bool BrowserSession::SendOutput(BinaryKind kind, std::string data) {
  if (connection_ == nullptr || state_ >= SessionState::kBrowserGone) {
    return true;
  }
  const char head = static_cast<char>(kind);
  context_->metrics->Frame("out", 1 + data.size());
  // V1Binary(kind, data), without copying the output into a new string.
  return connection_->SendWithHead(std::string_view(&head, 1), std::move(data));
}

void BrowserSession::SendError(const std::string& code, const std::string& message) {
  Send(V1Error(code, message), false);
}

void BrowserSession::CloseBrowser(uint16_t code, const std::string& reason) {
  if (!BrowserOpen() || connection_ == nullptr) {
    return;
  }
  Enter(SessionState::kClosing);
  connection_->Close(code, CloseReasonText(reason));
  EndExec();
}

void BrowserSession::ArmTimer() {
  if (timer_ == nullptr) {
    return;
  }
  absl::Time next;
  if (state_ == SessionState::kBrowserGone) {
    next = absl::Now() + absl::Seconds(5);
  } else if (state_ == SessionState::kAuthenticating || state_ == SessionState::kLoginRefused) {
    next = opened_ + context_->options.auth_timeout;
  } else {
    next = std::min(expires_, last_message_ + context_->options.idle_timeout);
  }
  timer_->expires_at(SteadyAt(next));
  timer_->async_wait(
      [self = shared_from_this()](boost::system::error_code ec) { self->OnTimer(ec); });
}

void BrowserSession::OnTimer(boost::system::error_code ec) {
  if (ec == boost::asio::error::operation_aborted) {
    return;
  }
  if (state_ == SessionState::kBrowserGone) {
    if (exec_ != nullptr) {
      exec_->Cancel();  // exec did not end the session in time
    }
    return;
  }
  if (!BrowserOpen()) {
    return;
  }
  absl::Time now = context_->limits->Now();
  if (state_ == SessionState::kAuthenticating || state_ == SessionState::kLoginRefused) {
    if (now >= opened_ + context_->options.auth_timeout) {
      if (state_ == SessionState::kAuthenticating) {
        AuthFailed(context_, {"missing", "no credential within --auth_timeout",
                              params_.source_address, params_.path, params_.target});
      }  // a refused login was audited when it was refused
      if (params_.protocol == Protocol::kSeed) {
        // The seed's consumer has no deadline; its page learns why it is closed in its words.
        SeedLoginFirst("authentication timeout");
      } else {
        CloseBrowser(kClosePolicy, "authentication timeout");
      }
      return;
    }
  } else if (absl::Now() >= expires_) {
    if (params_.protocol == Protocol::kV1) {
      SendError("UNAUTHENTICATED", "the credential has expired");
    } else {
      Send(SeedReply("stderr", "Session expired, please sign in again"), false);
    }
    CloseBrowser(kClosePolicy, "credential expired");
    return;
  } else if (now >= last_message_ + context_->options.idle_timeout) {
    CloseBrowser(kCloseGoingAway, "idle timeout");
    return;
  }
  ArmTimer();
}

void BrowserSession::Drain() {
  boost::asio::post(strand_, [self = shared_from_this()] { self->OnDrain(); });
}

void BrowserSession::CloseNow() {
  boost::asio::post(strand_, [self = shared_from_this()] { self->OnCloseNow(); });
}

void BrowserSession::OnDrain() {
  if (state_ >= SessionState::kDraining) {
    return;
  }
  // Seed lines still waiting their turn never run; the running one (the front) may finish.
  while (seed_commands_.size() > (seed_command_running_ ? 1u : 0u)) {
    seed_commands_.pop_back();
  }
  // A resumable session need not wait for its command: it goes on in exec.
  if (!CommandRunning() || (resumable_ && !close_requested_)) {
    CloseForShutdown("at_once");
  } else {
    Enter(SessionState::kDraining);
  }
}

void BrowserSession::OnCloseNow() { CloseForShutdown("deadline"); }

void BrowserSession::CloseForShutdown(const char* when) {
  if (!BrowserOpen() || connection_ == nullptr) {
    return;
  }
  context_->metrics->DrainClose(when);
  if (resumable_ && !close_requested_) {
    // The page resumes through another replica; the command runs on meanwhile.
    DetachExec("shutdown");
  }
  if (params_.protocol == Protocol::kV1) {
    Send(V1Closed("shutdown", kShutdownMessage), false);
  } else {
    Send(SeedReply("stderr", kSeedShutdownMessage), false);
  }
  // Also ends the exec stream cleanly: `close`, then half-close.
  CloseBrowser(kCloseGoingAway, "shutdown");
}

void BrowserSession::OnClose(std::string reason) {
  context_->metrics->ConnectionClosed(protocol_name());
  if (absl::StrContains(reason, "exceeded the locally configured limit") ||
      absl::StrContains(reason, "too big")) {
    context_->metrics->Rejection("size");
  }
  ReleaseSlots();
  connection_.reset();
  seed_commands_.clear();
  if (exec_ != nullptr) {
    Enter(SessionState::kBrowserGone);
    if (resumable_ && !close_requested_) {
      DetachExec("browser_gone");  // the page may come back within the grace
    }
    EndExec();   // nothing once detached
    ReadExec();  // drain what exec still sends
    if (timer_ != nullptr) {
      timer_->cancel();
      ArmTimer();
    }
  } else {
    Enter(SessionState::kClosed);
    if (timer_ != nullptr) {
      timer_->cancel();
    }
  }
}

}  // namespace podgate::edge
