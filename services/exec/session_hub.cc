#include "exec/session_hub.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "exec/session_reactor.h"
#include "k8s/names.h"
#include "runtime/log.h"

namespace podgate::exec {

namespace common = podgate::common::v1;

SessionHub::SessionHub(ExecOptions options, const auth::Verifier* verifier,
                       podgate::policy::v1::PolicyService::StubInterface* policy,
                       clients::AuditClient* audit,
                       std::vector<std::pair<std::string, KubeApi*>> clusters,
                       const std::string& default_cluster, ExecMetrics* metrics,
                       runtime::TimerQueue* timers)
    : options_(std::move(options)),
      verifier_(verifier),
      policy_(policy),
      audit_(audit),
      metrics_(metrics),
      timers_(timers) {
  for (auto& [name, kube] : clusters) {
    clusters_.push_back(std::make_unique<Cluster>(name, kube, timers, metrics,
                                                  options_.probe_timeout, options_.root_guard_ttl,
                                                  options_.access_review_ttl));
    if (name == default_cluster) {
      default_ = clusters_.back().get();
    }
  }
  if (default_ == nullptr && !clusters_.empty()) {
    default_ = clusters_.front().get();
  }
}

SessionHub::SessionHub(ExecOptions options, const auth::Verifier* verifier,
                       podgate::policy::v1::PolicyService::StubInterface* policy,
                       clients::AuditClient* audit, KubeApi* kube, ExecMetrics* metrics,
                       runtime::TimerQueue* timers)
    : SessionHub(std::move(options), verifier, policy, audit, {{"default", kube}}, "default",
                 metrics, timers) {}

absl::StatusOr<Cluster*> SessionHub::ResolveCluster(const std::string& name) const {
  if (name.empty()) {
    return default_;
  }
  std::vector<std::string> names;
  for (const auto& c : clusters_) {
    if (c->name() == name) {
      return c.get();
    }
    names.push_back(c->name());
  }
  if (absl::Status s = k8s::ValidateClusterName(name); !s.ok()) {
    return s;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "this exec serves no cluster '", name, "' (it serves: ", absl::StrJoin(names, ", "), ")"));
}

std::vector<Cluster*> SessionHub::clusters() const {
  std::vector<Cluster*> out;
  for (const auto& c : clusters_) {
    out.push_back(c.get());
  }
  return out;
}

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

void SessionHub::Register(const std::string& session_id, const std::shared_ptr<Session>& session) {
  std::lock_guard<std::mutex> lock(mu_);
  by_id_[session_id] = session;
}

void SessionHub::Forget(const std::string& session_id) {
  std::lock_guard<std::mutex> lock(mu_);
  by_id_.erase(session_id);
}

std::shared_ptr<Session> SessionHub::Find(const std::string& session_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_id_.find(session_id);
  return it == by_id_.end() ? nullptr : it->second.lock();
}

std::vector<std::shared_ptr<Session>> SessionHub::OpenSessions() const {
  std::vector<std::shared_ptr<Session>> out;
  std::lock_guard<std::mutex> lock(mu_);
  out.reserve(by_id_.size());
  for (const auto& [id, weak] : by_id_) {
    if (std::shared_ptr<Session> s = weak.lock()) {
      out.push_back(std::move(s));
    }
  }
  return out;
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
  std::vector<std::function<void()>> listeners;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, fn] : drain_listeners_) {
      listeners.push_back(fn);
    }
  }
  for (auto& fn : listeners) {
    fn();
  }
}

uint64_t SessionHub::AddDrainListener(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t id = next_listener_++;
  drain_listeners_.emplace(id, std::move(fn));
  return id;
}

void SessionHub::RemoveDrainListener(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  drain_listeners_.erase(id);
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

void SessionHub::SessionCreated() {
  std::lock_guard<std::mutex> lock(objects_mu_);
  ++objects_;
}

void SessionHub::SessionDestroyed() {
  // Notified under the lock: the waiter cannot return (and destroy the hub) before this
  // function is done with it.
  std::lock_guard<std::mutex> lock(objects_mu_);
  if (--objects_ == 0) {
    objects_cv_.notify_all();
  }
}

bool SessionHub::WaitForSessionObjects(absl::Time deadline) {
  std::unique_lock<std::mutex> lock(objects_mu_);
  return objects_cv_.wait_until(lock, absl::ToChronoTime(deadline),
                                [this] { return objects_ == 0; });
}

}  // namespace podgate::exec
