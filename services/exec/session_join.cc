// Other users in a session: joining it to watch or to moderate it (policy's JoinAction decides),
// the participants every stream is told about, the copy of the owner's output each joined
// stream gets (bounded: one who reads slower is dropped, the session never waits), moderated
// shells (started by a moderator's arrival, ended by the last one's departure), and the
// sessions a user may join (ListSessions).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "exec/credential.h"
#include "exec/session_reactor.h"
#include "runtime/ids.h"
#include "runtime/log.h"
#include "wire/enum_label.h"
#include "wire/status.h"
#include "wire/time.h"

namespace podgate::exec {

namespace common = podgate::common::v1;
namespace pb = podgate::exec::v1;
namespace policy_pb = podgate::policy::v1;

namespace {

// One answer for a session that does not exist, has ended, or is not open yet: an id alone
// tells nothing.
constexpr char kNoSessionToJoin[] = "no live session with this id on this exec replica";

const char* RoleLabel(common::ParticipantRole role) {
  return role == common::PARTICIPANT_ROLE_MODERATOR ? "moderator" : "observer";
}

// The kinds of message those who joined are shown: what the owner's terminal shows of the
// commands and their output, and the end. Not the owner's `ready`, `resumed`, or errors other
// than one that ends a command they were shown (FanOutLocked).
bool ForWatchers(const pb::SessionResponse& m) {
  switch (m.kind_case()) {
    case pb::SessionResponse::kStdout:
    case pb::SessionResponse::kStderr:
    case pb::SessionResponse::kExit:
    case pb::SessionResponse::kDenied:
    case pb::SessionResponse::kClosed:
    case pb::SessionResponse::kCommand:
      return true;
    default:
      return false;
  }
}

// Policy's question for `principal` joining `live`: a JoinAction on the session's target.
std::shared_ptr<policy_pb::AuthorizeRequest> JoinQuestion(const common::Principal& principal,
                                                          const pb::LiveSession& live) {
  auto request = std::make_shared<policy_pb::AuthorizeRequest>();
  *request->mutable_principal() = principal;
  *request->mutable_target() = live.target();
  request->mutable_join()->set_session_user(live.principal().user());
  request->mutable_join()->set_mode(live.mode());
  return request;
}

}  // namespace

// --- the joining stream ----------------------------------------------------------------------

void Session::HandleJoin(const pb::OpenSession& open) {
  std::unique_lock<std::mutex> lock(mu_);
  state_ = State::kOpening;
  watcher_ = true;
  role_ = open.join().moderator() ? common::PARTICIPANT_ROLE_MODERATOR
                                  : common::PARTICIPANT_ROLE_OBSERVER;
  // This reactor's own id for its log lines until it has joined; then the session's.
  session_id_ = runtime::RandomId();
  opened_at_ = absl::Now();
  client_ = open.client().substr(0, 256);
  if (!open.source_address().empty()) {
    source_address_ = absl::StrCat(open.source_address().substr(0, 128), " via ", call_->peer());
  }
  std::string token = open.credential().bearer_token();
  lock.unlock();
  std::weak_ptr<Session> weak = shared_from_this();
  VerifyCredential(
      hub_->verifier(), hub_->timers(), std::move(token),
      [weak, join = open.join()](absl::StatusOr<auth::VerifiedToken> verified) {
        std::shared_ptr<Session> s = weak.lock();
        if (s == nullptr) {
          return;
        }
        const char* role = join.moderator() ? "moderator" : "observer";
        {
          std::lock_guard<std::mutex> lock(s->mu_);
          if (s->state_ != State::kOpening) {
            return;  // the user left meanwhile
          }
          if (!verified.ok()) {
            s->hub_->metrics()
                ->session_joins_total.Add({{"role", role}, {"result", "unauthenticated"}})
                .Increment();
            s->RefuseCredentialLocked(verified.status());
            return;
          }
          s->principal_ = verified->principal;
          // A joined stream counts as one of the user's sessions (--max_sessions_per_user,
          // --max_sessions): watching is not a way around the limits.
          if (absl::Status admitted = s->hub_->Admit(s, s->principal_.user()); !admitted.ok()) {
            s->hub_->metrics()
                ->session_joins_total.Add({{"role", role}, {"result", "limit"}})
                .Increment();
            s->FinishLocked(wire::ToGrpcStatus(admitted));
            return;
          }
          s->admitted_ = true;
        }
        std::shared_ptr<Session> target = s->hub_->Find(join.session_id());
        std::optional<pb::LiveSession> live = target != nullptr ? target->Describe() : std::nullopt;
        if (!live.has_value()) {
          s->hub_->metrics()
              ->session_joins_total.Add({{"role", role}, {"result", "not_found"}})
              .Increment();
          std::lock_guard<std::mutex> lock(s->mu_);
          s->FinishLocked(grpc::Status(grpc::StatusCode::NOT_FOUND, kNoSessionToJoin));
          return;
        }
        if (live->principal().user() == verified->principal.user() &&
            live->principal().issuer() == verified->principal.issuer()) {
          std::lock_guard<std::mutex> lock(s->mu_);
          s->FinishLocked(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                       "this is your own session: resume it instead of joining"));
          return;
        }
        // Policy decides on the session's target, for this user.
        std::shared_ptr<policy_pb::AuthorizeRequest> request =
            JoinQuestion(verified->principal, *live);
        auto answer = std::make_shared<policy_pb::AuthorizeResponse>();
        auto context = std::make_shared<grpc::ClientContext>();
        context->set_deadline(std::chrono::system_clock::now() +
                              absl::ToChronoNanoseconds(s->opts_.policy_timeout));
        common::Target where = live->target();
        s->hub_->policy()->async()->Authorize(
            context.get(), request.get(), answer.get(),
            [s, join, target, where, request, answer, context](grpc::Status status) {
              if (!status.ok()) {
                s->OnJoinDecision(join, target, where,
                                  absl::UnavailableError(absl::StrCat("policy could not be asked: ",
                                                                      status.error_message())));
                return;
              }
              s->OnJoinDecision(join, target, where, *answer);
            });
      });
}

void Session::OnJoinDecision(const pb::JoinSession& join, const std::shared_ptr<Session>& target,
                             const common::Target& where,
                             absl::StatusOr<policy_pb::AuthorizeResponse> answer) {
  const char* role = join.moderator() ? "moderator" : "observer";
  common::Decision decision;
  if (!answer.ok()) {
    hub_->metrics()
        ->policy_failures_total.Add({{"reason", absl::StatusCodeToString(answer.status().code())}})
        .Increment();
    decision.set_verdict(common::VERDICT_DENY);
    decision.set_rule("policy-unavailable");
    decision.set_reason(std::string(answer.status().message()));
  } else {
    decision = answer->decision();
  }
  if (decision.verdict() == common::VERDICT_ALLOW && join.moderator() && !decision.moderator()) {
    // Allowed to watch, asked to moderate: refused, so that a moderated shell never starts on
    // the word of someone who may only watch.
    decision.set_verdict(common::VERDICT_DENY);
    decision.set_reason(absl::StrCat("you may watch this session but not moderate it (rule ",
                                     decision.rule(), " is not a moderate rule)"));
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ != State::kOpening) {
    return;  // the user left meanwhile
  }
  // The decision is recorded like any other: the joiner, the session and its target.
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_DECISION);
  e.set_session_id(join.session_id().substr(0, 64));
  *e.mutable_target() = where;
  *e.mutable_decision() = decision;
  hub_->audit()->Record(std::move(e), [](absl::Status) {});
  if (decision.verdict() != common::VERDICT_ALLOW) {
    hub_->metrics()->session_joins_total.Add({{"role", role}, {"result", "denied"}}).Increment();
    log::Info("join refused", {{"session_id", join.session_id().substr(0, 64)},
                               {"user", principal_.user()},
                               {"role", role},
                               {"rule", decision.rule()},
                               {"reason", decision.reason()}});
    FinishLocked(grpc::Status(
        answer.ok() ? grpc::StatusCode::PERMISSION_DENIED : grpc::StatusCode::UNAVAILABLE,
        absl::StrCat("joining refused: ", decision.reason(), " (rule ", decision.rule(), ")")));
    return;
  }
  const common::Principal who = principal_;
  const common::ParticipantRole as = role_;
  lock.unlock();
  absl::Status joined = target->AddWatcher(shared_from_this(), as, who, decision.rule());
  if (joined.ok()) {
    return;
  }
  hub_->metrics()
      ->session_joins_total
      .Add({{"role", role},
            {"result",
             joined.code() == absl::StatusCode::kResourceExhausted ? "full" : "not_found"}})
      .Increment();
  lock.lock();
  if (state_ == State::kOpening) {
    FinishLocked(wire::ToGrpcStatus(joined));
  }
}

bool Session::HandleWatcherMessage(const pb::SessionRequest& req, bool ok) {
  if (!ok || req.kind_case() == pb::SessionRequest::kClose) {
    bool cancelled = !ok && call_->IsCancelled();
    LeaveWatched(cancelled ? "disconnected" : "client");
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (req.kind_case() == pb::SessionRequest::kOpen) {
    FinishLocked(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                              "the session is already open; `open` comes once"));
    return false;
  }
  if (state_ != State::kWatching) {
    return true;  // still joining: nothing to say yet
  }
  // Only the owner's input reaches the container.
  SendCommandErrorLocked(
      req.kind_case() == pb::SessionRequest::kCommand ? req.command().command_id().substr(0, 64)
                                                      : "",
      grpc::StatusCode::PERMISSION_DENIED,
      absl::StrCat("you joined this session to ",
                   role_ == common::PARTICIPANT_ROLE_MODERATOR ? "moderate" : "watch",
                   " it: only its owner can type in it"));
  return true;
}

void Session::LeaveWatched(const std::string& why) {
  std::shared_ptr<Session> watched;
  std::string reason;
  {
    std::lock_guard<std::mutex> lock(mu_);
    watched = std::move(watched_);
    // The first reason stands: a watcher dropped for falling behind (DeliverWatched) has its
    // stream finished, and the read that then fails must not turn it into "client" before the
    // watched session, which dropped it, reads the reason to record the leave.
    if (leave_reason_.empty()) {
      leave_reason_ = why;
    }
    reason = leave_reason_;
  }
  if (watched != nullptr) {
    watched->RemoveWatcher(this, reason);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (finish_pending_ || finished_) {
    return;
  }
  // CloseLocked ends a joined stream alone: `closed` when it had joined, a plain end otherwise.
  CloseLocked(
      why == "disconnected" ? common::CLOSE_REASON_DISCONNECTED : common::CLOSE_REASON_CLIENT,
      "you left the session; it goes on without you");
}

bool Session::DeliverWatched(const pb::SessionResponse& m, size_t output_bytes) {
  // Called with the watched session's lock held: watched_ stays (OnDone lets it go), so that
  // the watched session is never destroyed under its own lock.
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kWatching || finish_pending_ || finished_) {
    return false;
  }
  if (out_output_bytes_ + output_bytes > opts_.observer_buffer_bytes) {
    // Slower than the output: dropped, so that the session never waits for those who watch it
    // (its owner's backpressure is the owner's alone).
    state_ = State::kClosed;
    leave_reason_ = "fell_behind";
    pb::SessionResponse closed;
    closed.mutable_closed()->set_reason(common::CLOSE_REASON_ERROR);
    closed.mutable_closed()->set_message(absl::StrCat(
        "you fell behind the session's output by more than ", opts_.observer_buffer_bytes,
        " bytes (--observer_buffer_bytes) and were "
        "dropped from it; join again to go on watching"));
    out_.push_back({std::move(closed), nullptr, 0});
    FinishLocked(grpc::Status::OK);
    return false;
  }
  out_.push_back({m, nullptr, output_bytes});
  out_output_bytes_ += output_bytes;
  if (m.has_closed()) {
    state_ = State::kClosed;
    leave_reason_ = "session_ended";
    FinishLocked(grpc::Status::OK);
    return false;
  }
  MaybeWriteLocked();
  return true;
}

// --- the watched session ---------------------------------------------------------------------

absl::Status Session::AddWatcher(const std::shared_ptr<Session>& link, common::ParticipantRole role,
                                 const common::Principal& who, const std::string& rule) {
  bool start_shell = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kReady || finish_pending_ || finished_) {
      return absl::NotFoundError(kNoSessionToJoin);
    }
    if (watchers_.size() >= kMaxWatchers) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the session already has ", kMaxWatchers, " users who joined it"));
    }
    {
      // Lock order: the watched session, then the joining reactor.
      std::lock_guard<std::mutex> link_lock(link->mu_);
      if (link->state_ != State::kOpening) {
        return absl::CancelledError("the joining stream ended");
      }
      link->state_ = State::kWatching;
      link->watched_ = shared_from_this();
      link->session_id_ = session_id_;
      link->trace_ = trace_;
      link->target_ = target_;
      link->mode_ = mode_;
      link->opened_at_ = absl::Now();
      pb::SessionResponse ready;
      pb::SessionReady* r = ready.mutable_ready();
      r->set_session_id(session_id_);
      *r->mutable_principal() = principal_;
      *r->mutable_target() = target_;
      r->set_mode(mode_);
      *r->mutable_expires_time() = wire::ToProtoTimestamp(expires_);
      r->set_role(role);
      r->set_moderator_required(moderator_required_);
      link->out_.push_back({std::move(ready), nullptr, 0});
      link->MaybeWriteLocked();
    }
    Watcher w;
    w.raw = link.get();
    w.session = link;
    w.principal = who;
    w.role = role;
    w.joined = absl::Now();
    watchers_.push_back(std::move(w));
    hub_->metrics()->session_watchers.Increment();
    hub_->metrics()
        ->session_joins_total.Add({{"role", RoleLabel(role)}, {"result", "joined"}})
        .Increment();
    common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_SESSION_JOIN);
    *e.mutable_principal() = who;
    {
      std::lock_guard<std::mutex> link_lock(link->mu_);
      e.set_source_address(link->source_address_);
      e.mutable_session_join()->set_client(link->client_);
    }
    e.mutable_session_join()->set_role(role);
    e.mutable_session_join()->set_session_user(principal_.user());
    e.mutable_session_join()->set_rule(rule);
    hub_->audit()->Record(std::move(e), [](absl::Status) {});
    log::Info("user joined the session", {{"session_id", session_id_},
                                          {"trace_id", trace_.trace_id},
                                          {"user", who.user()},
                                          {"role", RoleLabel(role)},
                                          {"owner", principal_.user()}});
    if (role == common::PARTICIPANT_ROLE_MODERATOR && waiting_for_moderator_) {
      waiting_for_moderator_ = false;
      told_waiting_ = false;
      hub_->metrics()->sessions_waiting_for_moderator.Decrement();
      start_shell = true;
    }
    BroadcastParticipantsLocked();
  }
  if (start_shell) {
    StartShell();
  }
  return absl::OkStatus();
}

void Session::RemoveWatcher(Session* watcher, const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(watchers_.begin(), watchers_.end(),
                         [watcher](const Watcher& w) { return w.raw == watcher; });
  if (it == watchers_.end()) {
    return;  // already gone (the session ended, or it fell behind)
  }
  const std::string user = it->principal.user();
  DropWatcherLocked(static_cast<size_t>(it - watchers_.begin()), why);
  if (state_ != State::kReady) {
    return;
  }
  if (moderator_required_ && mode_ == common::SESSION_MODE_SHELL && !waiting_for_moderator_ &&
      !HasModeratorLocked()) {
    // The choice for a moderated shell whose last moderator leaves: it ends (not paused), so
    // that nothing runs unmoderated and no half-typed line waits for the next moderator.
    CloseLocked(common::CLOSE_REASON_MODERATOR_LEFT,
                absl::StrCat("the last moderator (", user,
                             ") left; a moderated shell runs only while a moderator is present"));
    return;
  }
  BroadcastParticipantsLocked();
}

void Session::DropWatcherLocked(size_t index, const std::string& why) {
  Watcher w = std::move(watchers_[index]);
  watchers_.erase(watchers_.begin() + static_cast<std::ptrdiff_t>(index));
  hub_->metrics()->session_watchers.Decrement();
  hub_->metrics()->session_leaves_total.Add({{"reason", why}}).Increment();
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_SESSION_LEAVE);
  *e.mutable_principal() = w.principal;
  e.mutable_session_leave()->set_role(w.role);
  e.mutable_session_leave()->set_reason(why);
  *e.mutable_session_leave()->mutable_duration() = wire::ToProtoDuration(absl::Now() - w.joined);
  hub_->audit()->Record(std::move(e), [](absl::Status) {});
  log::Info("user left the session", {{"session_id", session_id_},
                                      {"trace_id", trace_.trace_id},
                                      {"user", w.principal.user()},
                                      {"role", RoleLabel(w.role)},
                                      {"why", why}});
}

bool Session::HasModeratorLocked() const {
  return std::any_of(watchers_.begin(), watchers_.end(),
                     [](const Watcher& w) { return w.role == common::PARTICIPANT_ROLE_MODERATOR; });
}

void Session::FanOutLocked(const pb::SessionResponse& m, size_t output_bytes) {
  // An error ending the command they were shown is theirs too (else it would seem to run on).
  const bool their_error =
      m.has_error() && !announced_command_.empty() && m.error().command_id() == announced_command_;
  if (!ForWatchers(m) && !their_error) {
    return;
  }
  pb::SessionResponse copy = m;
  copy.clear_seq();
  copy.clear_output_offset();
  std::vector<size_t> gone;
  for (size_t i = 0; i < watchers_.size(); ++i) {
    std::shared_ptr<Session> w = watchers_[i].session.lock();
    if (w == nullptr || !w->DeliverWatched(copy, output_bytes)) {
      gone.push_back(i);
    }
  }
  if (m.has_closed()) {
    return;  // CloseLocked drops them all, as session_ended
  }
  for (auto it = gone.rbegin(); it != gone.rend(); ++it) {
    std::shared_ptr<Session> w = watchers_[*it].session.lock();
    std::string why = "disconnected";
    if (w != nullptr) {
      std::lock_guard<std::mutex> wl(w->mu_);
      if (!w->leave_reason_.empty()) {
        why = w->leave_reason_;
      }
    }
    DropWatcherLocked(*it, why);
  }
  if (!gone.empty()) {
    BroadcastParticipantsLocked();
  }
}

pb::Participants Session::ParticipantsLocked() const {
  pb::Participants p;
  pb::Participant* owner = p.add_participants();
  owner->set_user(principal_.user());
  owner->set_role(common::PARTICIPANT_ROLE_OWNER);
  *owner->mutable_joined_time() = wire::ToProtoTimestamp(opened_at_);
  for (const Watcher& w : watchers_) {
    pb::Participant* one = p.add_participants();
    one->set_user(w.principal.user());
    one->set_role(w.role);
    *one->mutable_joined_time() = wire::ToProtoTimestamp(w.joined);
  }
  p.set_waiting_for_moderator(waiting_for_moderator_);
  return p;
}

void Session::BroadcastParticipantsLocked() {
  pb::SessionResponse m;
  *m.mutable_participants() = ParticipantsLocked();
  for (const Watcher& w : watchers_) {
    if (std::shared_ptr<Session> s = w.session.lock()) {
      s->DeliverWatched(m, 0);
    }
  }
  SendLocked(std::move(m));  // participants are not fanned out (ForWatchers)
}

std::optional<pb::LiveSession> Session::Describe() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kReady || finish_pending_ || finished_ || watcher_) {
    return std::nullopt;
  }
  pb::LiveSession live;
  live.set_session_id(session_id_);
  *live.mutable_principal() = principal_;
  *live.mutable_target() = target_;
  live.set_mode(mode_);
  *live.mutable_opened_time() = wire::ToProtoTimestamp(opened_at_);
  pb::Participants p = ParticipantsLocked();
  *live.mutable_participants() = std::move(*p.mutable_participants());
  live.set_waiting_for_moderator(waiting_for_moderator_);
  return live;
}

// --- ListSessions --------------------------------------------------------------------------

void ListJoinableSessions(SessionHub* hub, const common::Principal& principal,
                          std::function<void(absl::StatusOr<std::vector<pb::LiveSession>>)> done) {
  std::vector<pb::LiveSession> live;
  for (const std::shared_ptr<Session>& s : hub->OpenSessions()) {
    std::optional<pb::LiveSession> one = s->Describe();
    if (one.has_value() && !(one->principal().user() == principal.user() &&
                             one->principal().issuer() == principal.issuer())) {
      live.push_back(*std::move(one));
    }
  }
  std::sort(live.begin(), live.end(), [](const pb::LiveSession& a, const pb::LiveSession& b) {
    return std::make_pair(a.opened_time().seconds(), a.opened_time().nanos()) <
           std::make_pair(b.opened_time().seconds(), b.opened_time().nanos());
  });
  if (live.empty()) {
    done(std::move(live));
    return;
  }
  // One question per session, all at once (bounded by --max_sessions); the answer is put
  // together when the last is in.
  struct Gather {
    std::mutex mu;
    std::vector<pb::LiveSession> live;
    std::vector<int> verdict;  // 0 denied, 1 observe, 2 moderate
    absl::Status failed = absl::OkStatus();
    size_t left = 0;
    std::function<void(absl::StatusOr<std::vector<pb::LiveSession>>)> done;
  };
  auto gather = std::make_shared<Gather>();
  gather->verdict.assign(live.size(), 0);
  gather->left = live.size();
  gather->done = std::move(done);
  gather->live = std::move(live);
  for (size_t i = 0; i < gather->live.size(); ++i) {
    std::shared_ptr<policy_pb::AuthorizeRequest> request = JoinQuestion(principal, gather->live[i]);
    auto answer = std::make_shared<policy_pb::AuthorizeResponse>();
    auto context = std::make_shared<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() +
                          absl::ToChronoNanoseconds(hub->options().policy_timeout));
    hub->policy()->async()->Authorize(
        context.get(), request.get(), answer.get(),
        [gather, i, request, answer, context](grpc::Status status) {
          {
            std::lock_guard<std::mutex> lock(gather->mu);
            if (!status.ok()) {
              gather->failed = absl::UnavailableError(
                  absl::StrCat("policy could not be asked: ", status.error_message()));
            } else if (answer->decision().verdict() == common::VERDICT_ALLOW) {
              gather->verdict[i] = answer->decision().moderator() ? 2 : 1;
            }
            if (--gather->left > 0) {
              return;
            }
          }
          if (!gather->failed.ok()) {
            gather->done(gather->failed);  // fail closed: nothing is listed
            return;
          }
          std::vector<pb::LiveSession> out;
          for (size_t k = 0; k < gather->live.size(); ++k) {
            if (gather->verdict[k] > 0) {
              gather->live[k].set_may_moderate(gather->verdict[k] == 2);
              out.push_back(std::move(gather->live[k]));
            }
          }
          gather->done(std::move(out));
        });
  }
}

}  // namespace podgate::exec
