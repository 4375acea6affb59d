// What every session of one exec service shares: its dependencies (verifier, policy, audit,
// Kubernetes, metrics, timers, journal), its options, admission (sessions per user and per
// replica), the registry of live sessions (closed all at once on shutdown), the count of running
// processes (the drain waits for them), and the root guard with its uid cache.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "auth/jwt.h"
#include "clients/audit_client.h"
#include "exec/access_cache.h"
#include "exec/clusters.h"
#include "exec/exec_metrics.h"
#include "exec/journal.h"
#include "exec/kube.h"
#include "exec/options.h"
#include "exec/session_open.h"
#include "podgate/policy/v1/policy.grpc.pb.h"
#include "runtime/timer.h"

namespace podgate::exec {

class Session;

// State shared by every session of one exec service: dependencies, limits, live sessions.
class SessionHub {
 public:
  // The clusters served, by name (at least one; `default_cluster` among them). Each KubeApi
  // must outlive the hub.
  SessionHub(ExecOptions options, const auth::Verifier* verifier,
             podgate::policy::v1::PolicyService::StubInterface* policy, clients::AuditClient* audit,
             std::vector<std::pair<std::string, KubeApi*>> clusters,
             const std::string& default_cluster, ExecMetrics* metrics,
             runtime::TimerQueue* timers = &runtime::TimerQueue::Default());
  // One cluster, named "default".
  SessionHub(ExecOptions options, const auth::Verifier* verifier,
             podgate::policy::v1::PolicyService::StubInterface* policy, clients::AuditClient* audit,
             KubeApi* kube, ExecMetrics* metrics,
             runtime::TimerQueue* timers = &runtime::TimerQueue::Default());

  const ExecOptions& options() const { return options_; }
  const auth::Verifier* verifier() const { return verifier_; }
  podgate::policy::v1::PolicyService::StubInterface* policy() const { return policy_; }
  clients::AuditClient* audit() const { return audit_; }
  // The cluster a target names; the default one for "". INVALID_ARGUMENT naming the clusters
  // served for a name this exec does not serve.
  absl::StatusOr<Cluster*> ResolveCluster(const std::string& name) const;
  Cluster* default_cluster() const { return default_; }
  // Every cluster, in configuration order.
  std::vector<Cluster*> clusters() const;
  ExecMetrics* metrics() const { return metrics_; }
  runtime::TimerQueue* timers() const { return timers_; }
  // The journal of running commands (journal.h); null when --journal_dir is not set.
  Journal* journal() const { return journal_; }
  void set_journal(Journal* journal) { journal_ = journal; }

  // Admission: RESOURCE_EXHAUSTED past the per-user or per-replica limit.
  absl::Status Admit(const std::shared_ptr<Session>& session, const std::string& user);
  void Leave(Session* session, const std::string& user);
  // The open sessions by id, which a client may resume (--resume_grace) or another user join:
  // registered at `ready`, forgotten when the session ends.
  void Register(const std::string& session_id, const std::shared_ptr<Session>& session);
  void Forget(const std::string& session_id);
  std::shared_ptr<Session> Find(const std::string& session_id) const;
  // Every registered session, oldest id first (ListSessions).
  std::vector<std::shared_ptr<Session>> OpenSessions() const;
  // Closes every live session with CLOSE_REASON_SHUTDOWN (the server's drain hook), then tells
  // the drain listeners.
  void CloseAll();
  // `fn` runs once CloseAll has closed the sessions (a Sessions call then ends once its lanes
  // have). The id removes it.
  uint64_t AddDrainListener(std::function<void()> fn);
  void RemoveDrainListener(uint64_t id);
  int active() const;
  // Processes started by a command ("go" sent) and not yet known to be gone.
  void ProcessStarted() { ++running_processes_; }
  void ProcessGone() { --running_processes_; }
  int running_processes() const { return running_processes_.load(); }
  // The drain after CloseAll: waits until every stopped command's process is gone and audit
  // has acknowledged every record, or until `deadline`. True when both happened.
  bool Drain(absl::Time deadline);

  // Session objects alive, closed or not: after a close, a stop step, a probe or an audit ack
  // still in flight holds its Session, which points at this hub and at what main owns. main
  // waits for them (bounded) before it tears those down.
  void SessionCreated();
  void SessionDestroyed();
  // True when no Session object is left by `deadline`.
  bool WaitForSessionObjects(absl::Time deadline);

 private:
  const ExecOptions options_;
  const auth::Verifier* const verifier_;
  podgate::policy::v1::PolicyService::StubInterface* const policy_;
  clients::AuditClient* const audit_;
  ExecMetrics* const metrics_;
  runtime::TimerQueue* const timers_;
  Journal* journal_ = nullptr;
  std::atomic<int> running_processes_{0};

  mutable std::mutex mu_;
  std::map<std::string, int> per_user_;
  std::map<Session*, std::weak_ptr<Session>> live_;
  std::map<std::string, std::weak_ptr<Session>> by_id_;
  std::map<uint64_t, std::function<void()>> drain_listeners_;
  uint64_t next_listener_ = 1;
  std::vector<std::unique_ptr<Cluster>> clusters_;
  Cluster* default_ = nullptr;
  std::mutex objects_mu_;
  std::condition_variable objects_cv_;
  int objects_ = 0;
};

}  // namespace podgate::exec
