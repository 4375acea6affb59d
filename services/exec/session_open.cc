// Opening a session: the steps (session_open.h) and the session's continuations that run them
// in order, from `open` to `ready` (or a refusal).
#include "exec/session_open.h"

#include <openssl/crypto.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "crypto/sha256.h"
#include "exec/container_probe.h"
#include "exec/credential.h"
#include "exec/impersonation.h"
#include "exec/policy_stream.h"
#include "exec/probe_run.h"
#include "exec/session_reactor.h"
#include "k8s/names.h"
#include "runtime/ids.h"
#include "runtime/log.h"
#include "runtime/trace_metadata.h"
#include "wire/status.h"
#include "wire/time.h"

namespace podgate::exec {

namespace common = podgate::common::v1;
namespace pb = podgate::exec::v1;

namespace {

// One ListAllowed call, alive until its answer.
struct ScopeCall {
  grpc::ClientContext context;
  podgate::policy::v1::ListAllowedRequest request;
  podgate::policy::v1::ListAllowedResponse answer;
};

}  // namespace

void AskScope(podgate::policy::v1::PolicyService::StubInterface* policy,
              const common::Principal& principal, const common::Target& target, bool labels_known,
              absl::Duration timeout, std::function<void(absl::StatusOr<ScopeAnswer>)> done,
              const runtime::TraceContext& trace) {
  auto call = std::make_shared<ScopeCall>();
  runtime::AddTraceMetadata(&call->context, trace);
  *call->request.mutable_principal() = principal;
  *call->request.mutable_target() = target;
  call->request.set_ignore_pod_labels(!labels_known);
  call->context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
  policy->async()->ListAllowed(
      &call->context, &call->request, &call->answer,
      [call, done = std::move(done)](grpc::Status status) mutable {
        absl::StatusOr<ScopeAnswer> in_scope =
            status.ok() ? absl::StatusOr<ScopeAnswer>(ScopeAnswer{
                              .in_scope = call->answer.commands_size() > 0 ||
                                          call->answer.shell_allowed() || call->answer.superuser(),
                              .labels_irrelevant = call->answer.pod_labels_irrelevant()})
                        : absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                                       status.error_message());
        // The call (its context holds a reference to the channel) is released before the answer
        // goes on: whoever waits for the answer may then drop the stub and its channel at once.
        call.reset();
        done(std::move(in_scope));
      });
}

// --- the root guard --------------------------------------------------------------------------

RootGuard::RootGuard(KubeApi* kube, runtime::TimerQueue* timers, ExecMetrics* metrics,
                     absl::Duration probe_timeout, absl::Duration ttl)
    : kube_(kube), timers_(timers), metrics_(metrics), probe_timeout_(probe_timeout), ttl_(ttl) {}

void RootGuard::Check(const KubeIdentity& as, const PodView& pod, const std::string& container,
                      bool root_allowed, std::function<void(absl::Status)> next) {
  const std::string key = absl::StrCat(pod.uid, "/", container);
  auto judge = [this, container, root_allowed](absl::StatusOr<int64_t> uid) -> absl::Status {
    if (uid.ok() && *uid != 0) {
      metrics_->root_guard_total.Add({{"result", "allowed"}}).Increment();
      return absl::OkStatus();
    }
    if (root_allowed) {
      metrics_->root_guard_total.Add({{"result", "root_allowed"}}).Increment();
      return absl::OkStatus();
    }
    if (uid.ok()) {
      metrics_->root_guard_total.Add({{"result", "root_denied"}}).Increment();
      return absl::PermissionDeniedError(absl::StrCat(
          "container ", container, " runs as root (uid 0) and the rule does not allow root"));
    }
    metrics_->root_guard_total.Add({{"result", "unknown_denied"}}).Increment();
    return absl::PermissionDeniedError(absl::StrCat("the container's uid could not be determined (",
                                                    uid.status().message(),
                                                    "), so it is treated as root"));
  };
  // What the spec declares comes first: a container declared to run as root (its effective
  // securityContext.runAsUser is 0; the container's field overrides the pod's) is root
  // whatever a probe would say, and is refused without one. Anything else is probed.
  const SecurityContextView declared = EffectiveSecurityContext(pod, container);
  if (declared.run_as_user.has_value() && *declared.run_as_user == 0) {
    if (root_allowed) {
      metrics_->root_guard_total.Add({{"result", "root_allowed"}}).Increment();
      next(absl::OkStatus());
      return;
    }
    metrics_->root_guard_total.Add({{"result", "declared_root_denied"}}).Increment();
    next(absl::PermissionDeniedError(absl::StrCat(
        "container ", container, " is declared to run as root (securityContext.runAsUser: 0",
        declared.run_as_non_root.value_or(false)
            ? ", with runAsNonRoot: true, which the kubelet refuses"
            : "",
        ") and the rule does not allow root")));
    return;
  }
  if (std::optional<int64_t> cached = CachedUid(key); cached.has_value()) {
    next(judge(*cached));
    return;
  }
  ExecSpec spec;
  spec.as = as;
  spec.namespace_name = pod.namespace_name;
  spec.pod = pod.name;
  spec.container = container;
  spec.argv = UidProbeArgv();
  RunProbe(kube_, timers_, spec, probe_timeout_,
           [this, key, judge, next](absl::StatusOr<ProbeOutput> out) {
             if (!out.ok() && IsKubernetesRbacDenial(out.status())) {
               // Kubernetes refused the probe to the user: that is the answer, not a uid
               // unknown (and nothing is cached: another user may be allowed).
               next(out.status());
               return;
             }
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
               CacheUid(key, *uid);
             }
             next(judge(uid));
           });
}

std::optional<int64_t> RootGuard::CachedUid(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = uid_cache_.find(key);
  if (it == uid_cache_.end() || absl::Now() - it->second.second > ttl_) {
    return std::nullopt;
  }
  return it->second.first;
}

void RootGuard::CacheUid(const std::string& key, int64_t uid) {
  std::lock_guard<std::mutex> lock(mu_);
  if (uid_cache_.size() > 10000) {
    uid_cache_.clear();  // bounded: a rebuild costs one `id -u` per container
  }
  uid_cache_[key] = {uid, absl::Now()};
}

// --- the session's open steps ------------------------------------------------------------------

void Session::HandleOpen(const pb::OpenSession& open) {
  std::unique_lock<std::mutex> lock(mu_);
  state_ = State::kOpening;
  session_id_ = runtime::RandomId();
  close_event_id_ = runtime::EventId();
  opened_at_ = absl::Now();
  open_step_ = opened_at_;
  client_ = open.client().substr(0, 256);
  mode_ = open.mode() == common::SESSION_MODE_SHELL ? common::SESSION_MODE_SHELL
                                                    : common::SESSION_MODE_COMMAND;
  if (open.has_size() && open.size().width() > 0 && open.size().height() > 0) {
    width_ = std::min<uint32_t>(open.size().width(), 1000);
    height_ = std::min<uint32_t>(open.size().height(), 1000);
  }
  if (!open.source_address().empty()) {
    // Recorded as reported by the calling service, next to the caller's own address.
    source_address_ = absl::StrCat(open.source_address().substr(0, 128), " via ", call_->peer());
  }
  // 1. The credential, verified here: exec never trusts a caller's word for who the user is
  //    (at once, or once a key set fetch its unknown key id asked for is over: credential.h).
  std::string token = open.credential().bearer_token();
  lock.unlock();
  std::weak_ptr<Session> weak = shared_from_this();
  VerifyCredential(hub_->verifier(), hub_->timers(), std::move(token),
                   [weak, open](absl::StatusOr<auth::VerifiedToken> verified) {
                     std::shared_ptr<Session> s = weak.lock();
                     if (s == nullptr) {
                       return;
                     }
                     std::unique_lock<std::mutex> lock(s->mu_);
                     if (s->state_ != State::kOpening) {
                       return;  // closed meanwhile: the client left, or the server drains
                     }
                     s->ContinueOpenLocked(open, std::move(verified), std::move(lock));
                   });
}

// The one refusal for a session that is gone, past its grace or another user's: a session id
// alone tells nothing.
constexpr char kNoSessionToResume[] =
    "no session to resume: it has ended, its grace period is over, or it is not yours";

void Session::HandleResume(const pb::OpenSession& open) {
  std::unique_lock<std::mutex> lock(mu_);
  state_ = State::kOpening;
  // This reactor's own id for its log lines and a refusal's audit record; a resume that
  // succeeds carries the resumed session's id from then on.
  session_id_ = runtime::RandomId();
  client_ = open.client().substr(0, 256);
  if (!open.source_address().empty()) {
    source_address_ = absl::StrCat(open.source_address().substr(0, 128), " via ", call_->peer());
  }
  std::string token = open.credential().bearer_token();
  lock.unlock();
  std::weak_ptr<Session> weak = shared_from_this();
  VerifyCredential(
      hub_->verifier(), hub_->timers(), std::move(token),
      [weak, resume = open.resume()](absl::StatusOr<auth::VerifiedToken> verified) {
        std::shared_ptr<Session> s = weak.lock();
        if (s == nullptr) {
          return;
        }
        {
          std::unique_lock<std::mutex> lock(s->mu_);
          if (s->state_ != State::kOpening) {
            return;  // the client left meanwhile
          }
          if (!verified.ok()) {
            s->RefuseCredentialLocked(verified.status());
            return;
          }
          s->principal_ = verified->principal;
        }
        std::shared_ptr<Session> target = s->hub_->Find(resume.session_id());
        absl::Status attached = target == nullptr ? absl::NotFoundError(kNoSessionToResume)
                                                  : target->Attach(s, resume, verified->principal);
        if (target == nullptr) {
          s->hub_->metrics()->session_resumes_total.Add({{"result", "unknown"}}).Increment();
        }
        std::unique_lock<std::mutex> lock(s->mu_);
        if (attached.ok() || s->state_ != State::kOpening) {
          return;
        }
        log::Info("resume refused", {{"session_id", resume.session_id().substr(0, 64)},
                                     {"user", s->principal_.user()},
                                     {"reason", std::string(attached.message())}});
        s->FinishLocked(wire::ToGrpcStatus(attached));
      });
}

absl::Status Session::Attach(const std::shared_ptr<Session>& link, const pb::ResumeSession& resume,
                             const common::Principal& who) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto refuse = [&](const char* result, absl::Status status) {
    hub_->metrics()->session_resumes_total.Add({{"result", result}}).Increment();
    return status;
  };
  const absl::Status unknown = absl::NotFoundError(kNoSessionToResume);
  if (state_ != State::kReady || finish_pending_ || finished_ || resume_token_hash_.empty() ||
      who.issuer() != principal_.issuer() || who.user() != principal_.user()) {
    return refuse("unknown", unknown);
  }
  const std::string presented = crypto::Sha256Hex(resume.token());
  if (presented.size() != resume_token_hash_.size() ||
      CRYPTO_memcmp(presented.data(), resume_token_hash_.data(), presented.size()) != 0) {
    log::Warn(
        "resume refused: wrong token",
        {{"session_id", session_id_}, {"trace_id", trace_.trace_id}, {"user", principal_.user()}});
    return refuse("bad_token", absl::PermissionDeniedError(
                                   "the resume token is not this session's latest (each token "
                                   "resumes once; `resumed` carries the next)"));
  }
  if (resume.last_seq() > next_seq_ || resume.output_offset() > output_offset_) {
    return refuse("bad_position",
                  absl::InvalidArgumentError(absl::StrCat(
                      "last_seq ", resume.last_seq(), " / output_offset ", resume.output_offset(),
                      " is past what the session sent (", next_seq_, " / ", output_offset_, ")")));
  }
  {
    // Lock order: the resumed session, then the resuming reactor.
    std::lock_guard<std::mutex> link_lock(link->mu_);
    if (link->state_ != State::kOpening) {
      return absl::CancelledError("the resuming stream ended");
    }
    link->state_ = State::kLink;
    link->owner_ = shared_from_this();
    resumed_from_ = link->source_address_;
    resumed_client_ = link->client_;
  }
  // The stream the client has left, if exec has not seen it break yet, ends now.
  if (link_ != nullptr) {
    Session* old = link_;
    link_ = nullptr;
    FinishStaleLinkLocked(old);
  }
  if (detached_) {
    detached_ = false;
    hub_->metrics()->sessions_detached.Decrement();
    hub_->timers()->Cancel(grace_timer_);
    grace_timer_ = 0;
  }
  link_ = link.get();
  // What the client missed: the kept messages after last_seq go again, in front of what was
  // never sent; older kept messages are known received and dropped.
  while (!replay_.empty() && replay_.front().message.seq() <= resume.last_seq()) {
    replay_bytes_ -= replay_.front().kept_bytes;
    replay_.pop_front();
  }
  uint64_t lost_messages = 0;
  uint64_t lost_bytes = 0;
  if (resume.last_seq() < trimmed_seq_) {
    lost_messages = trimmed_seq_ - resume.last_seq();
    lost_bytes =
        trimmed_offset_ > resume.output_offset() ? trimmed_offset_ - resume.output_offset() : 0;
  }
  const uint64_t replayed = replay_.size();
  uint64_t replayed_bytes = 0;
  for (Outgoing& o : replay_) {
    replayed_bytes += o.output_bytes;
    out_output_bytes_ += o.output_bytes;
  }
  out_.splice(out_.begin(), replay_);
  replay_bytes_ = 0;
  pb::SessionResponse resumed;
  *resumed.mutable_resumed()->mutable_ready() = ReadyLocked();
  resumed.mutable_resumed()->set_replayed_messages(replayed);
  resumed.mutable_resumed()->set_lost_messages(lost_messages);
  resumed.mutable_resumed()->set_lost_bytes(lost_bytes);
  out_.push_front({std::move(resumed), nullptr, 0});
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_SESSION_RESUME);
  e.set_source_address(resumed_from_);
  e.mutable_session_resume()->set_replayed_messages(replayed);
  e.mutable_session_resume()->set_lost_messages(lost_messages);
  e.mutable_session_resume()->set_lost_bytes(lost_bytes);
  e.mutable_session_resume()->set_client(resumed_client_);
  // Not waited for, as the detach: the replay is output already audited by its command.
  hub_->audit()->Record(std::move(e), [](absl::Status) {});
  hub_->metrics()->session_resumes_total.Add({{"result", "resumed"}}).Increment();
  hub_->metrics()->resume_replayed_bytes_total.Increment(static_cast<double>(replayed_bytes));
  hub_->metrics()->resume_lost_bytes_total.Increment(static_cast<double>(lost_bytes));
  log::Info("session resumed", {{"session_id", session_id_},
                                {"trace_id", trace_.trace_id},
                                {"user", principal_.user()},
                                {"last_seq", static_cast<int64_t>(resume.last_seq())},
                                {"replayed_messages", static_cast<int64_t>(replayed)},
                                {"lost_bytes", static_cast<int64_t>(lost_bytes)}});
  if (state_ == State::kReady) {
    ResetIdleTimerLocked();
  }
  if (!read_paused_) {
    link->StartRead(&link->request_);
  }
  MaybeWriteLocked();
  return absl::OkStatus();
}

pb::SessionReady Session::ReadyLocked() {
  pb::SessionReady ready;
  ready.set_session_id(session_id_);
  *ready.mutable_principal() = principal_;
  *ready.mutable_target() = target_;
  ready.set_mode(mode_);
  *ready.mutable_expires_time() = wire::ToProtoTimestamp(expires_);
  ready.set_role(common::PARTICIPANT_ROLE_OWNER);
  ready.set_moderator_required(moderator_required_);
  if (opts_.resume_grace > absl::ZeroDuration()) {
    // 256 random bits; only its hash is kept, and each token resumes once.
    const std::string token = runtime::RandomId() + runtime::RandomId();
    resume_token_hash_ = crypto::Sha256Hex(token);
    ready.set_resume_token(token);
    *ready.mutable_resume_grace() = wire::ToProtoDuration(opts_.resume_grace);
  }
  return ready;
}

void Session::RefuseCredentialLocked(const absl::Status& status) {
  const std::string reason = auth::AuthFailureReason(status);
  hub_->metrics()->auth_failures_total.Add({{"reason", reason}}).Increment();
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_AUTH_FAILURE);
  e.clear_principal();
  e.mutable_auth_failure()->set_reason(reason);
  e.mutable_auth_failure()->set_message(std::string(status.message()));
  hub_->audit()->Record(std::move(e), [](absl::Status) {});
  RefuseOpenLocked(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                absl::StrCat("credential refused: ", status.message())));
}

void Session::ContinueOpenLocked(const pb::OpenSession& open,
                                 absl::StatusOr<auth::VerifiedToken> verified,
                                 std::unique_lock<std::mutex> lock) {
  if (!verified.ok()) {
    RefuseCredentialLocked(verified.status());
    return;
  }
  OpenStepDoneLocked(ExecMetrics::OpenStage::kCredential);
  principal_ = verified->principal;
  expires_ = std::min(verified->expires, opened_at_ + opts_.max_session);
  expiry_is_credential_ = verified->expires < opened_at_ + opts_.max_session;
  // Whom Kubernetes will see: a user exec may not impersonate is refused here, before anything
  // is asked of anyone (exec never falls back to acting as itself for a user).
  if (absl::Status s = UpdateKubeIdentityLocked(); !s.ok()) {
    RefuseOpenLocked(wire::ToGrpcStatus(s));
    return;
  }

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
  // The cluster: an empty one is the default, and from here on the target names it (policy,
  // audit and the client see the resolved name).
  absl::StatusOr<Cluster*> cluster = hub_->ResolveCluster(open.target().cluster());
  if (!cluster.ok()) {
    hub_->metrics()
        ->cluster_sessions_total.Add({{"cluster", "unknown"}, {"outcome", "refused"}})
        .Increment();
    RefuseOpenLocked(wire::ToGrpcStatus(cluster.status()));
    return;
  }
  cluster_ = *cluster;
  target_.set_cluster(cluster_->name());

  // 3. Admission.
  if (absl::Status s = hub_->Admit(shared_from_this(), principal_.user()); !s.ok()) {
    RefuseOpenLocked(wire::ToGrpcStatus(s));
    return;
  }
  admitted_ = true;
  lock.unlock();

  // 4. Policy: a target the user has no rule for is refused before Kubernetes is asked.
  std::shared_ptr<Session> self = shared_from_this();
  hub_->metrics()->scope_before_pod.Increment();
  AskScope(false,
           [self](absl::StatusOr<ScopeAnswer> in_scope) { self->OnScope(std::move(in_scope)); });
}

void Session::AskScope(bool labels_known, std::function<void(absl::StatusOr<ScopeAnswer>)> done) {
  common::Principal principal;
  common::Target target;
  {
    std::lock_guard<std::mutex> lock(mu_);
    principal = principal_;
    target = target_;
  }
  exec::AskScope(hub_->policy(), principal, target, labels_known, opts_.policy_timeout,
                 std::move(done), trace_);
}

absl::Status Session::UpdateKubeIdentityLocked() {
  absl::StatusOr<KubeIdentity> as = MapIdentity(
      opts_.impersonation, principal_.user(),
      {principal_.groups().begin(), principal_.groups().end()}, session_id_, principal_.subject());
  if (!as.ok()) {
    common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_DECISION);
    e.mutable_decision()->set_verdict(common::VERDICT_DENY);
    e.mutable_decision()->set_rule("kubernetes-identity");
    e.mutable_decision()->set_reason(std::string(as.status().message()));
    hub_->audit()->Record(std::move(e), [](absl::Status) {});
    return as.status();
  }
  kube_as_ = *std::move(as);
  return absl::OkStatus();
}

void Session::RefuseKubernetesLocked(const absl::Status& status) {
  hub_->metrics()->kubernetes_denials_total.Add({{"at", "open"}}).Increment();
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_DECISION);
  e.mutable_decision()->set_verdict(common::VERDICT_DENY);
  e.mutable_decision()->set_rule("kubernetes-rbac");
  e.mutable_decision()->set_reason(std::string(status.message()));
  hub_->audit()->Record(std::move(e), [](absl::Status) {});
  log::Info("kubernetes refused the user", {{"session_id", session_id_},
                                            {"trace_id", trace_.trace_id},
                                            {"user", principal_.user()},
                                            {"reason", std::string(status.message())}});
  RefuseOpenLocked(wire::ToGrpcStatus(status));
}

void Session::RefuseOpenLocked(grpc::Status status) {
  const char* mode = mode_ == common::SESSION_MODE_SHELL ? "shell" : "command";
  hub_->metrics()->sessions_total.Add({{"mode", mode}, {"outcome", "refused"}}).Increment();
  if (cluster_ != nullptr) {
    hub_->metrics()
        ->cluster_sessions_total.Add({{"cluster", cluster_->name()}, {"outcome", "refused"}})
        .Increment();
  }
  FinishLocked(std::move(status));
}

void Session::RefuseTargetLocked(const std::string& why) {
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_DECISION);
  e.mutable_decision()->set_verdict(common::VERDICT_DENY);
  e.mutable_decision()->set_rule("target");
  e.mutable_decision()->set_reason(why);
  hub_->audit()->Record(std::move(e), [](absl::Status) {});
  log::Info("target refused", {{"session_id", session_id_},
                               {"trace_id", trace_.trace_id},
                               {"user", principal_.user()},
                               {"cluster", target_.cluster()},
                               {"namespace", target_.namespace_()},
                               {"pod", target_.pod()},
                               {"reason", why}});
  RefuseOpenLocked(grpc::Status(grpc::StatusCode::NOT_FOUND, kTargetUnavailable));
}

void Session::OnScope(absl::StatusOr<ScopeAnswer> in_scope) {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed || finished_ || finish_pending_) {
    return;
  }
  OpenStepDoneLocked(ExecMetrics::OpenStage::kPolicy);
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
  if (!in_scope->in_scope) {
    RefuseTargetLocked(absl::StrCat("no rule lets ", principal_.user(), " use ",
                                    target_.namespace_(), "/", target_.pod(),
                                    target_.container().empty() ? "" : "/", target_.container(),
                                    " (asked before any Kubernetes call)"));
    return;
  }
  scope_labels_irrelevant_ = in_scope->labels_irrelevant;
  lock.unlock();
  // 5. The pod, from the API.
  std::shared_ptr<Session> self = shared_from_this();
  KubeIdentity as;
  {
    std::lock_guard<std::mutex> lock(mu_);
    as = kube_as_;
  }
  cluster_->kube()->GetPod(as, target_.namespace_(), target_.pod(),
                           [self](absl::StatusOr<PodView> pod) { self->OnPod(std::move(pod)); });
}

void Session::OnPod(absl::StatusOr<PodView> pod) {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed || finished_ || finish_pending_) {
    return;
  }
  OpenStepDoneLocked(ExecMetrics::OpenStage::kPod);
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
    if (IsKubernetesRbacDenial(pod.status())) {
      // A rule is in scope (asked above), so the user may learn that Kubernetes said no.
      RefuseKubernetesLocked(pod.status());
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
  if (scope_labels_irrelevant_) {
    // No rule in scope selects pods by label: the answer asked before the pod stands.
    hub_->metrics()->scope_labels_irrelevant.Increment();
    lock.unlock();
    OnPodInScope(*std::move(pod), ScopeAnswer{.in_scope = true, .labels_irrelevant = true});
    return;
  }
  hub_->metrics()->scope_with_labels.Increment();
  std::shared_ptr<Session> self = shared_from_this();
  lock.unlock();
  AskScope(true, [self, pod = *std::move(pod)](absl::StatusOr<ScopeAnswer> in_scope) mutable {
    self->OnPodInScope(std::move(pod), std::move(in_scope));
  });
}

void Session::OnPodInScope(PodView found, absl::StatusOr<ScopeAnswer> in_scope) {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed || finished_ || finish_pending_) {
    return;
  }
  OpenStepDoneLocked(ExecMetrics::OpenStage::kPolicy);
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
  if (!in_scope->in_scope) {
    RefuseTargetLocked(absl::StrCat("no rule lets ", principal_.user(), " use ",
                                    target_.namespace_(), "/", target_.pod(), " with its labels"));
    return;
  }
  absl::StatusOr<PodView> pod = std::move(found);
  if (pod->phase != "Running") {
    refuse(absl::FailedPreconditionError(absl::StrCat(
        "pod ", target_.namespace_(), "/", target_.pod(), " is ", pod->phase, ", not Running")));
    return;
  }
  absl::StatusOr<std::string> container = ResolveContainer(*pod, target_.container());
  if (!container.ok()) {
    refuse(container.status());
    return;
  }
  pod_ = *std::move(pod);
  // The session keeps what the root guard reads: the pod's identity and its security contexts
  // of the one container it runs in. The labels are in target_ already (policy reads them
  // there), the other containers are not its own.
  pod_.labels.clear();
  pod_.default_container_annotation.clear();
  std::erase_if(pod_.containers,
                [&container](const ContainerView& c) { return c.name != *container; });
  target_.set_container(*container);
  policy_ = std::make_unique<PolicyStream>(hub_->policy(), trace_, hub_->timers());

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
  OpenStepDoneLocked(ExecMetrics::OpenStage::kPolicy);
  common::Decision decision;
  if (!answer.ok()) {
    hub_->metrics()
        ->policy_failures_total.Add({{"reason", absl::StatusCodeToString(answer.status().code())}})
        .Increment();
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
        self->moderator_required_ = decision.moderator_required();
        lock.unlock();
        self->CheckRootThen(decision.root_allowed(), [self](absl::Status s) {
          if (!s.ok()) {
            std::lock_guard<std::mutex> lock(self->mu_);
            if (IsKubernetesRbacDenial(s)) {
              self->RefuseKubernetesLocked(s);  // the probe was refused to the user
              return;
            }
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
  KubeIdentity as;
  {
    std::lock_guard<std::mutex> lock(mu_);
    as = kube_as_;
  }
  cluster_->root_guard()->Check(as, pod_, target_.container(), root_allowed, std::move(next));
}

void Session::OpenStepDoneLocked(ExecMetrics::OpenStage stage) {
  const absl::Time now = absl::Now();
  const absl::Duration took = now - open_step_;
  open_step_ = now;
  if (stage == ExecMetrics::OpenStage::kPolicy) {
    open_policy_ += took;
  } else {
    hub_->metrics()->SessionOpen(stage).Observe(absl::ToDoubleSeconds(took));
  }
}

void Session::SendReady() {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed || finished_ || finish_pending_) {
    return;
  }
  if (mode_ == common::SESSION_MODE_SHELL) {
    OpenStepDoneLocked(ExecMetrics::OpenStage::kChecks);
  } else {
    open_step_ = absl::Now();  // a command session has no checks at open
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
        self->OpenStepDoneLocked(ExecMetrics::OpenStage::kAudit);
        self->hub_->metrics()
            ->SessionOpen(ExecMetrics::OpenStage::kPolicy)
            .Observe(absl::ToDoubleSeconds(self->open_policy_));
        self->hub_->metrics()
            ->SessionOpen(ExecMetrics::OpenStage::kTotal)
            .Observe(absl::ToDoubleSeconds(absl::Now() - self->opened_at_));
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
        self->hub_->metrics()
            ->sessions_active.Add({{"mode", shell ? "shell" : "command"}})
            .Increment();
        self->hub_->metrics()
            ->cluster_sessions_total
            .Add({{"cluster", self->cluster_->name()}, {"outcome", "opened"}})
            .Increment();
        pb::SessionResponse ready;
        *ready.mutable_ready() = self->ReadyLocked();
        self->hub_->Register(self->session_id_, self);
        self->registered_ = true;
        self->SendLocked(std::move(ready));
        if (shell) {
          // The recording starts with `ready`, under the same lock: keystrokes sent right after
          // it (before the shell's stream is asked for) are recorded after the header.
          self->recording_.Start(self->width_, self->height_, absl::Now(),
                                 absl::StrCat(self->target_.namespace_(), "/", self->target_.pod(),
                                              "/", self->target_.container()));
        }
        log::Info("session open", {{"session_id", self->session_id_},
                                   {"trace_id", self->trace_.trace_id},
                                   {"user", self->principal_.user()},
                                   {"cluster", self->target_.cluster()},
                                   {"namespace", self->target_.namespace_()},
                                   {"pod", self->target_.pod()},
                                   {"container", self->target_.container()},
                                   {"mode", shell ? "shell" : "command"}});
        self->ScheduleLimitLocked();
        self->ResetIdleTimerLocked();
        if (shell && self->moderator_required_) {
          // A moderated shell: it starts when a moderator joins (AddWatcher).
          self->waiting_for_moderator_ = true;
          self->hub_->metrics()->sessions_waiting_for_moderator.Increment();
          self->BroadcastParticipantsLocked();
          log::Info("moderated shell waits for a moderator",
                    {{"session_id", self->session_id_}, {"trace_id", self->trace_.trace_id}});
          return;
        }
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

void Session::ScheduleLimitLocked() {
  std::weak_ptr<Session> weak = shared_from_this();
  limit_timer_ = hub_->timers()->Schedule(expires_, [weak] {
    if (auto s = weak.lock()) {
      std::lock_guard<std::mutex> lock(s->mu_);
      if (absl::Now() < s->expires_) {
        return;  // renewed meanwhile: a later timer closes it
      }
      const bool credential = s->expiry_is_credential_;
      s->CloseLocked(
          credential ? common::CLOSE_REASON_CREDENTIAL_EXPIRED : common::CLOSE_REASON_SESSION_LIMIT,
          credential ? "the credential expired" : "the session reached its time limit");
    }
  });
}

void Session::HandleRenew(const pb::RenewCredential& renew) {
  // Verified like open's (credential.h): a refreshed token signed with a key the provider has
  // just published is waited for, not refused.
  std::weak_ptr<Session> weak = shared_from_this();
  VerifyCredential(hub_->verifier(), hub_->timers(), renew.credential().bearer_token(),
                   [weak](absl::StatusOr<auth::VerifiedToken> verified) {
                     if (std::shared_ptr<Session> s = weak.lock()) {
                       s->OnRenewVerified(std::move(verified));
                     }
                   });
}

void Session::OnRenewVerified(absl::StatusOr<auth::VerifiedToken> verified) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kReady) {
    return;  // not open yet, or closing: the first credential's end stands
  }
  absl::Status refused;
  if (!verified.ok()) {
    const std::string reason = auth::AuthFailureReason(verified.status());
    hub_->metrics()->auth_failures_total.Add({{"reason", reason}}).Increment();
    common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_AUTH_FAILURE);
    e.mutable_auth_failure()->set_reason(reason);
    e.mutable_auth_failure()->set_message(
        absl::StrCat("credential renewal: ", verified.status().message()));
    hub_->audit()->Record(std::move(e), [](absl::Status) {});
    refused = absl::UnauthenticatedError(
        absl::StrCat("the new credential was refused: ", verified.status().message()));
  } else if (verified->principal.user() != principal_.user() ||
             verified->principal.issuer() != principal_.issuer()) {
    refused = absl::UnauthenticatedError(
        "the new credential names another user: a session keeps the user it was opened for");
  }
  if (!refused.ok()) {
    log::Info("credential renewal refused", {{"session_id", session_id_},
                                             {"trace_id", trace_.trace_id},
                                             {"message", std::string(refused.message())}});
    pb::SessionResponse msg;
    msg.mutable_error()->set_command_id("renew");
    msg.mutable_error()->mutable_status()->set_code(grpc::StatusCode::UNAUTHENTICATED);
    msg.mutable_error()->mutable_status()->set_message(std::string(refused.message()));
    SendLocked(std::move(msg));
    return;
  }
  // The session limit and a shell rule's time limit still bound it.
  absl::Time limit = opened_at_ + opts_.max_session;
  if (mode_ == common::SESSION_MODE_SHELL && shell_limits_.has_time_limit() &&
      wire::FromProtoDuration(shell_limits_.time_limit()) > absl::ZeroDuration()) {
    limit = std::min(limit, opened_at_ + wire::FromProtoDuration(shell_limits_.time_limit()));
  }
  expires_ = std::min(verified->expires, limit);
  expiry_is_credential_ = verified->expires < limit;
  // The provider's current word on the user's groups applies from the next command on.
  principal_ = verified->principal;
  if (absl::Status s = UpdateKubeIdentityLocked(); !s.ok()) {
    // The renewed groups map to something exec never impersonates: the session ends rather
    // than go on as the old identity (a running command is stopped, the close recorded).
    CloseLocked(common::CLOSE_REASON_ERROR, std::string(s.message()));
    return;
  }
  log::Info(
      "credential renewed",
      {{"session_id", session_id_}, {"trace_id", trace_.trace_id}, {"user", principal_.user()}});
  hub_->timers()->Cancel(limit_timer_);
  ScheduleLimitLocked();
}

}  // namespace podgate::exec
