// The Kubernetes clusters one exec serves (docs/exec.md, "Clusters"): where their API
// configurations come from (contexts of a kubeconfig, a directory of kubeconfigs, in-cluster),
// each under a name; which one a request without a cluster means; and, per cluster, its API
// client with what is cached about it (root-guard verdicts, access reviews) and whether its
// API server answers (ClusterHealth). A cluster that is down affects only its own targets.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "exec/access_cache.h"
#include "exec/exec_metrics.h"
#include "exec/kube.h"
#include "exec/kube_client.h"
#include "exec/session_open.h"
#include "runtime/timer.h"

namespace podgate::exec {

// At most this many clusters per exec (each holds a client with its threads).
inline constexpr size_t kMaxClusters = 64;

// Where the clusters' API configurations come from (the --kube* flags).
struct ClusterSources {
  // --kubeconfig: a kubeconfig file.
  std::string kubeconfig;
  // --kube_contexts: which of its contexts to serve, each "CONTEXT" (served under the context's
  // name) or "NAME=CONTEXT"; "*" alone: every context, each under its own name. Empty: the
  // current context only, under its name.
  std::vector<std::string> contexts;
  // --kubeconfig_dir: a directory of kubeconfig files (dotfiles skipped); each serves its
  // current context under the file's name without extension (`eu-prod.yaml`: eu-prod).
  std::string kubeconfig_dir;
  // --kube_in_cluster_name: also serve the in-cluster service account under this name. When
  // neither a kubeconfig nor a directory is given, in-cluster is served alone, under this name
  // or "in-cluster".
  std::string in_cluster_name;
  // --kube_default_cluster: the cluster a target without one means. Empty: the kubeconfig's
  // current context when it is served, else the first cluster (kubeconfig, directory, then
  // in-cluster, in that order).
  std::string default_cluster;
  std::string service_account_dir;
  bool allow_insecure = false;
};

struct NamedKubeConfig {
  std::string name;
  KubeConfig config;
};

struct ClusterConfigs {
  std::vector<NamedKubeConfig> clusters;  // at least one, names unique
  std::string default_name;
};

// Reads every configured cluster. INVALID_ARGUMENT or FAILED_PRECONDITION naming the flag and
// the file or context at fault: an unreadable kubeconfig, a missing context, an invalid or
// duplicate name, an unknown default, more than kMaxClusters. Nothing is served half-configured.
absl::StatusOr<ClusterConfigs> LoadClusterConfigs(const ClusterSources& sources);

// One cluster exec serves, and what is kept about it.
class Cluster {
 public:
  // `kube` must outlive the cluster.
  Cluster(std::string name, KubeApi* kube, runtime::TimerQueue* timers, ExecMetrics* metrics,
          absl::Duration probe_timeout, absl::Duration root_guard_ttl,
          absl::Duration access_review_ttl);

  const std::string& name() const { return name_; }
  KubeApi* kube() const { return kube_; }
  // Root-guard verdicts for this cluster's pods.
  RootGuard* root_guard() { return &root_guard_; }
  // Kubernetes' answers on who may exec where in this cluster.
  AccessCache* access_cache() { return &access_cache_; }

  // The last health check: OK, or why the API server did not answer. OK until the first check.
  absl::Status health();
  void set_health(const absl::Status& status);

 private:
  const std::string name_;
  KubeApi* const kube_;
  RootGuard root_guard_;
  AccessCache access_cache_;
  // Kept as code and text, and a fresh Status made for each reader: copies of one Status
  // share its message through a reference count TSan cannot see.
  absl::Mutex mu_;
  absl::StatusCode health_code_ ABSL_GUARDED_BY(mu_) = absl::StatusCode::kOk;
  std::string health_message_ ABSL_GUARDED_BY(mu_);
};

// Checks every cluster's API server (GET /readyz) now and then every `interval`, and keeps
// podgate_exec_cluster_up{cluster} and each Cluster's health() current; a change is logged.
// Stop() cancels the next round and drops the observer at once (checks in flight finish
// unobserved); the destructor also waits for them.
class ClusterHealth {
 public:
  ClusterHealth(std::vector<Cluster*> clusters, ExecMetrics* metrics, runtime::TimerQueue* timers,
                absl::Duration interval);
  ~ClusterHealth();
  // Told every check's result (cluster name, answered), from a client thread; set before Start.
  void set_observer(std::function<void(const std::string&, bool)> observer) {
    absl::MutexLock lock(&mu_);
    observer_ = std::move(observer);
  }
  void Start();
  // No check starts after Stop; one in flight is waited for (each has the cluster's deadline).
  void Stop();

 private:
  void Round();
  void Schedule() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::vector<Cluster*> clusters_;
  ExecMetrics* const metrics_;
  runtime::TimerQueue* const timers_;
  const absl::Duration interval_;
  absl::Mutex mu_;
  std::function<void(const std::string&, bool)> observer_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  runtime::TimerQueue::Id timer_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace podgate::exec
