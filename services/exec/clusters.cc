#include "exec/clusters.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "k8s/names.h"
#include "runtime/log.h"

namespace podgate::exec {

namespace {

absl::Status AddCluster(std::string name, KubeConfig config, const std::string& from,
                        ClusterConfigs* out) {
  if (absl::Status s = k8s::ValidateClusterName(name); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(from, ": ", s.message()));
  }
  for (const NamedKubeConfig& c : out->clusters) {
    if (c.name == name) {
      return absl::InvalidArgumentError(absl::StrCat(
          from, ": cluster '", name, "' is configured twice (also from ", c.config.source,
          c.config.context.empty() ? "" : " context ", c.config.context, ")"));
    }
  }
  if (out->clusters.size() >= kMaxClusters) {
    return absl::InvalidArgumentError(
        absl::StrCat(from, ": more than ", kMaxClusters, " clusters; run another exec"));
  }
  out->clusters.push_back({std::move(name), std::move(config)});
  return absl::OkStatus();
}

absl::Status FromKubeconfig(const ClusterSources& sources, ClusterConfigs* out,
                            std::string* current) {
  absl::StatusOr<KubeconfigContexts> contexts = ListKubeconfigContexts(sources.kubeconfig);
  if (!contexts.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--kubeconfig: ", contexts.status().message()));
  }
  // (name, context) pairs to serve.
  std::vector<std::pair<std::string, std::string>> wanted;
  if (sources.contexts.empty()) {
    if (contexts->current.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--kubeconfig: '", sources.kubeconfig,
          "' has no current-context; name the contexts to serve with --kube_contexts"));
    }
    wanted.emplace_back(contexts->current, contexts->current);
  } else if (sources.contexts.size() == 1 && sources.contexts[0] == "*") {
    for (const std::string& c : contexts->names) {
      wanted.emplace_back(c, c);
    }
    if (wanted.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--kube_contexts: '", sources.kubeconfig, "' has no contexts"));
    }
  } else {
    for (const std::string& item : sources.contexts) {
      const size_t eq = item.find('=');
      std::string name = eq == std::string::npos ? item : item.substr(0, eq);
      std::string context = eq == std::string::npos ? item : item.substr(eq + 1);
      if (name.empty() || context.empty() || context == "*") {
        return absl::InvalidArgumentError(absl::StrCat(
            "--kube_contexts: '", item, "' is not CONTEXT or NAME=CONTEXT (or '*' alone)"));
      }
      if (std::find(contexts->names.begin(), contexts->names.end(), context) ==
          contexts->names.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--kube_contexts: '", sources.kubeconfig, "' has no context '", context,
                         "' (it has: ", absl::StrJoin(contexts->names, ", "), ")"));
      }
      wanted.emplace_back(std::move(name), std::move(context));
    }
  }
  for (auto& [name, context] : wanted) {
    absl::StatusOr<KubeConfig> config =
        LoadKubeconfig(sources.kubeconfig, sources.allow_insecure, context);
    if (!config.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--kubeconfig: context '", context, "': ", config.status().message()));
    }
    const std::string from = absl::StrCat("--kubeconfig context '", context, "'");
    if (absl::Status s = k8s::ValidateClusterName(name); !s.ok() && name == context) {
      return absl::InvalidArgumentError(
          absl::StrCat(from, ": ", s.message(), "; name it with --kube_contexts=NAME=", context));
    }
    if (context == contexts->current && current->empty()) {
      *current = name;
    }
    if (absl::Status s = AddCluster(name, *std::move(config), from, out); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status FromDirectory(const ClusterSources& sources, ClusterConfigs* out) {
  const std::string& dir = sources.kubeconfig_dir;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kubeconfig_dir: cannot read '", dir, "': ", std::strerror(errno)));
  }
  std::vector<std::string> files;
  while (dirent* entry = readdir(d)) {
    const std::string file = entry->d_name;
    if (file.empty() || file[0] == '.') {
      continue;  // dotfiles, and a Secret volume's ..data links
    }
    struct stat st;
    if (stat(absl::StrCat(dir, "/", file).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      files.push_back(file);
    }
  }
  closedir(d);
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kubeconfig_dir: '", dir, "' holds no kubeconfig file"));
  }
  for (const std::string& file : files) {
    std::string name = file;
    for (const char* ext : {".yaml", ".yml", ".conf", ".kubeconfig"}) {
      if (absl::EndsWith(name, ext)) {
        name.resize(name.size() - std::string_view(ext).size());
        break;
      }
    }
    const std::string path = absl::StrCat(dir, "/", file);
    absl::StatusOr<KubeConfig> config = LoadKubeconfig(path, sources.allow_insecure);
    if (!config.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--kubeconfig_dir: ", config.status().message()));
    }
    if (absl::Status s = AddCluster(name, *std::move(config),
                                    absl::StrCat("--kubeconfig_dir '", path, "'"), out);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ClusterConfigs> LoadClusterConfigs(const ClusterSources& sources) {
  ClusterConfigs out;
  std::string current;
  if (!sources.contexts.empty() && sources.kubeconfig.empty()) {
    return absl::InvalidArgumentError("--kube_contexts: needs --kubeconfig");
  }
  if (!sources.kubeconfig.empty()) {
    if (absl::Status s = FromKubeconfig(sources, &out, &current); !s.ok()) {
      return s;
    }
  }
  if (!sources.kubeconfig_dir.empty()) {
    if (absl::Status s = FromDirectory(sources, &out); !s.ok()) {
      return s;
    }
  }
  const bool in_cluster = !sources.in_cluster_name.empty() || out.clusters.empty();
  if (in_cluster) {
    absl::StatusOr<KubeConfig> config = InClusterConfig(sources.service_account_dir);
    if (!config.ok()) {
      return absl::Status(config.status().code(),
                          absl::StrCat(sources.in_cluster_name.empty() ? "--kubeconfig: "
                                                                       : "--kube_in_cluster_name: ",
                                       config.status().message()));
    }
    const std::string name =
        sources.in_cluster_name.empty() ? std::string("in-cluster") : sources.in_cluster_name;
    if (absl::Status s = AddCluster(name, *std::move(config), "--kube_in_cluster_name", &out);
        !s.ok()) {
      return s;
    }
  }
  if (!sources.default_cluster.empty()) {
    const bool known =
        std::any_of(out.clusters.begin(), out.clusters.end(),
                    [&](const NamedKubeConfig& c) { return c.name == sources.default_cluster; });
    if (!known) {
      std::vector<std::string> names;
      for (const NamedKubeConfig& c : out.clusters) {
        names.push_back(c.name);
      }
      return absl::InvalidArgumentError(
          absl::StrCat("--kube_default_cluster: no cluster '", sources.default_cluster,
                       "' is configured (configured: ", absl::StrJoin(names, ", "), ")"));
    }
    out.default_name = sources.default_cluster;
  } else {
    out.default_name = current.empty() ? out.clusters.front().name : current;
  }
  return out;
}

Cluster::Cluster(std::string name, KubeApi* kube, runtime::TimerQueue* timers, ExecMetrics* metrics,
                 absl::Duration probe_timeout, absl::Duration root_guard_ttl,
                 absl::Duration access_review_ttl)
    : name_(std::move(name)),
      kube_(kube),
      root_guard_(kube, timers, metrics, probe_timeout, root_guard_ttl),
      access_cache_(kube, access_review_ttl) {}

absl::Status Cluster::health() {
  absl::MutexLock lock(&mu_);
  return absl::Status(health_code_, health_message_);
}

void Cluster::set_health(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  health_code_ = status.code();
  health_message_ = std::string(status.message());
}

ClusterHealth::ClusterHealth(std::vector<Cluster*> clusters, ExecMetrics* metrics,
                             runtime::TimerQueue* timers, absl::Duration interval)
    : clusters_(std::move(clusters)), metrics_(metrics), timers_(timers), interval_(interval) {
  for (Cluster* c : clusters_) {
    metrics_->cluster_up.Add({{"cluster", c->name()}}).Set(1);
  }
}

ClusterHealth::~ClusterHealth() { Stop(); }

void ClusterHealth::Start() { Round(); }

void ClusterHealth::Stop() {
  runtime::TimerQueue::Id timer;
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
    observer_ = nullptr;
    timer = timer_;
    timer_ = 0;
  }
  if (timer != 0) {
    timers_->Cancel(timer);
  }
  // A round already asked finishes before Stop returns: nothing is counted after it.
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int* in_flight) { return *in_flight == 0; }, &in_flight_));
}

void ClusterHealth::Round() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) {
      return;
    }
    timer_ = 0;
    in_flight_ = static_cast<int>(clusters_.size());
  }
  for (Cluster* c : clusters_) {
    c->kube()->CheckHealth([this, c](absl::Status status) {
      const absl::Status before = c->health();
      if (before.ok() != status.ok()) {
        if (status.ok()) {
          log::Info("cluster reachable again", {{"cluster", c->name()}});
        } else {
          log::Warn("cluster unreachable",
                    {{"cluster", c->name()}, {"reason", std::string(status.message())}});
        }
      }
      // The state first, then what reports it: a scrape that shows a cluster down finds it down.
      c->set_health(status);
      metrics_->cluster_up.Add({{"cluster", c->name()}}).Set(status.ok() ? 1 : 0);
      metrics_->cluster_health_checks_total
          .Add({{"cluster", c->name()}, {"result", status.ok() ? "ok" : "failed"}})
          .Increment();
      absl::MutexLock lock(&mu_);
      if (observer_) {
        observer_(c->name(), status.ok());
      }
      if (--in_flight_ == 0) {
        Schedule();
      }
    });
  }
}

void ClusterHealth::Schedule() {
  if (stopped_) {
    return;
  }
  timer_ = timers_->After(interval_, [this] { Round(); });
}

}  // namespace podgate::exec
