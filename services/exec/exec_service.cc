#include "exec/exec_service.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include "absl/strings/str_cat.h"
#include "exec/credential.h"
#include "exec/impersonation.h"
#include "exec/session_lanes.h"
#include "k8s/names.h"
#include "runtime/log.h"
#include "runtime/trace_metadata.h"
#include "wire/status.h"

namespace podgate::exec {

namespace pb = podgate::exec::v1;

namespace {

// The most pods ListTargets considers; beyond it the answer is cut (and says so in the log).
constexpr size_t kMaxTargetPods = 500;

// Asks policy about each container of each running pod in turn and fills the response;
// finishes the RPC at the end.
// Keeps the pods of the namespaces where Kubernetes lets `as` exec (one review per namespace,
// cached); a review that fails hides its namespace (fail closed). Calls `done` once, on
// whichever thread answers last.
void KeepWhereKubernetesAllows(Cluster* cluster, const KubeIdentity& as, std::vector<PodView> pods,
                               std::function<void(std::vector<PodView>)> done) {
  std::set<std::string> namespaces;
  for (const PodView& p : pods) {
    namespaces.insert(p.namespace_name);
  }
  if (namespaces.empty()) {
    done(std::move(pods));
    return;
  }
  struct Pending {
    std::mutex mu;
    std::vector<PodView> pods;
    std::set<std::string> denied;
    size_t left = 0;
    std::function<void(std::vector<PodView>)> done;
  };
  auto pending = std::make_shared<Pending>();
  pending->pods = std::move(pods);
  pending->left = namespaces.size();
  pending->done = std::move(done);
  for (const std::string& ns : namespaces) {
    const std::string name = cluster->name();
    cluster->access_cache()->MayExec(as, ns, [pending, ns, name](absl::StatusOr<bool> allowed) {
      std::vector<PodView> kept;
      {
        std::lock_guard<std::mutex> lock(pending->mu);
        if (!allowed.ok()) {
          log::Warn("access review failed: the namespace is not listed",
                    {{"cluster", name},
                     {"namespace", ns},
                     {"error", std::string(allowed.status().message())}});
        }
        if (!allowed.ok() || !*allowed) {
          pending->denied.insert(ns);
        }
        if (--pending->left > 0) {
          return;
        }
        for (PodView& p : pending->pods) {
          if (pending->denied.count(p.namespace_name) == 0) {
            kept.push_back(std::move(p));
          }
        }
      }
      pending->done(std::move(kept));
    });
  }
}

// The namespaces of one cluster, or why they could not be listed: a Kubernetes error (the
// cluster is shown unreachable) or a policy error (the whole answer fails, closed).
struct ClusterListing {
  absl::Status kubernetes = absl::OkStatus();
  absl::Status policy = absl::OkStatus();
  std::vector<pb::NamespaceInfo> namespaces;
};

class TargetLister : public std::enable_shared_from_this<TargetLister> {
 public:
  TargetLister(SessionHub* hub, std::string cluster, podgate::common::v1::Principal principal,
               std::vector<PodView> pods, std::function<void(ClusterListing)> done)
      : hub_(hub),
        cluster_(std::move(cluster)),
        principal_(std::move(principal)),
        pods_(std::move(pods)),
        done_(std::move(done)) {}

  // Asks policy about one container at a time (rules may name containers).
  void Next() {
    while (pod_ < pods_.size() &&
           (pods_[pod_].phase != "Running" || container_ >= pods_[pod_].containers.size())) {
      FlushPod();
    }
    if (pod_ >= pods_.size()) {
      Done();
      return;
    }
    const PodView& pod = pods_[pod_];
    request_.Clear();
    *request_.mutable_principal() = principal_;
    request_.mutable_target()->set_namespace_(pod.namespace_name);
    request_.mutable_target()->set_pod(pod.name);
    request_.mutable_target()->set_container(pod.containers[container_].name);
    request_.mutable_target()->set_cluster(cluster_);
    for (const auto& [k, v] : pod.labels) {
      (*request_.mutable_target()->mutable_pod_labels())[k] = v;
    }
    answer_.Clear();
    context_ = std::make_unique<grpc::ClientContext>();
    context_->set_deadline(std::chrono::system_clock::now() +
                           absl::ToChronoNanoseconds(hub_->options().policy_timeout));
    auto self = shared_from_this();
    hub_->policy()->async()->ListAllowed(context_.get(), &request_, &answer_,
                                          [self](grpc::Status status) { self->OnAnswer(status); });
  }

 private:
  void OnAnswer(const grpc::Status& status) {
    if (!status.ok()) {
      // Fail closed: without policy no target is reachable.
      ClusterListing failed;
      failed.policy = absl::UnavailableError(
          absl::StrCat("policy could not be asked: ", status.error_message()));
      done_(std::move(failed));
      return;
    }
    const PodView& pod = pods_[pod_];
    const ContainerView& c = pod.containers[container_++];
    if (answer_.commands_size() > 0 || answer_.shell_allowed()) {
      pb::ContainerInfo ci;
      ci.set_name(c.name);
      ci.set_image(c.image);
      absl::StatusOr<std::string> def = ResolveContainer(pod, "");
      ci.set_default_(def.ok() && *def == c.name);
      ci.set_shell_allowed(answer_.shell_allowed());
      reachable_.push_back(std::move(ci));
    }
    Next();
  }

  // Records the current pod (if any container is reachable) and moves to the next one.
  void FlushPod() {
    if (!reachable_.empty()) {
      const PodView& pod = pods_[pod_];
      pb::PodInfo info;
      info.set_name(pod.name);
      info.set_phase(pod.phase);
      for (const auto& [k, v] : pod.labels) {
        (*info.mutable_labels())[k] = v;
      }
      for (pb::ContainerInfo& ci : reachable_) {
        *info.add_containers() = std::move(ci);
      }
      by_namespace_[pod.namespace_name].push_back(std::move(info));
    }
    reachable_.clear();
    ++pod_;
    container_ = 0;
  }

  void Done() {
    ClusterListing listing;
    for (auto& [ns, pods] : by_namespace_) {
      pb::NamespaceInfo& info = listing.namespaces.emplace_back();
      info.set_name(ns);
      std::sort(pods.begin(), pods.end(),
                [](const pb::PodInfo& a, const pb::PodInfo& b) { return a.name() < b.name(); });
      for (pb::PodInfo& p : pods) {
        *info.add_pods() = std::move(p);
      }
    }
    done_(std::move(listing));
  }

  SessionHub* const hub_;
  const std::string cluster_;
  const podgate::common::v1::Principal principal_;
  std::vector<PodView> pods_;
  std::function<void(ClusterListing)> done_;
  size_t pod_ = 0;
  size_t container_ = 0;
  std::vector<pb::ContainerInfo> reachable_;
  std::unique_ptr<grpc::ClientContext> context_;
  podgate::policy::v1::ListAllowedRequest request_;
  podgate::policy::v1::ListAllowedResponse answer_;
  std::map<std::string, std::vector<pb::PodInfo>> by_namespace_;
};

// ListTargets once the credential is verified (or refused).
void ListTargetsFor(SessionHub* hub, grpc::ServerUnaryReactor* reactor,
                    pb::ListTargetsResponse* response, const std::string& ns,
                    const std::string& cluster, absl::StatusOr<auth::VerifiedToken> verified);

}  // namespace

grpc::ServerBidiReactor<pb::SessionRequest, pb::SessionResponse>* ExecServiceImpl::Session(
    grpc::CallbackServerContext* context) {
  return StartSession(hub_, context);
}

grpc::ServerBidiReactor<pb::SessionsRequest, pb::SessionsResponse>* ExecServiceImpl::Sessions(
    grpc::CallbackServerContext* context) {
  return StartSessions(hub_, context);
}

grpc::ServerUnaryReactor* ExecServiceImpl::ListTargets(grpc::CallbackServerContext* context,
                                                       const pb::ListTargetsRequest* request,
                                                       pb::ListTargetsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  SessionHub* hub = hub_;
  const std::string ns = request->namespace_();
  const std::string cluster = request->cluster();
  const runtime::TraceContext trace = runtime::TraceOfCall(*context);
  log::Debug("list targets", {{"cluster", cluster},
                              {"namespace", ns},
                              {"trace_id", trace.trace_id},
                              {"span_id", trace.span_id}});
  // At once, or from the timer thread once a key set fetch is over (credential.h).
  VerifyCredential(
      hub_->verifier(), hub_->timers(), request->credential().bearer_token(),
      [hub, reactor, response, ns, cluster](absl::StatusOr<auth::VerifiedToken> verified) {
        ListTargetsFor(hub, reactor, response, ns, cluster, std::move(verified));
      });
  return reactor;
}

grpc::ServerUnaryReactor* ExecServiceImpl::ListSessions(grpc::CallbackServerContext* context,
                                                        const pb::ListSessionsRequest* request,
                                                        pb::ListSessionsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  SessionHub* hub = hub_;
  VerifyCredential(
      hub_->verifier(), hub_->timers(), request->credential().bearer_token(),
      [hub, reactor, response](absl::StatusOr<auth::VerifiedToken> verified) {
        if (!verified.ok()) {
          hub->metrics()
              ->auth_failures_total.Add({{"reason", auth::AuthFailureReason(verified.status())}})
              .Increment();
          reactor->Finish(
              grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                           absl::StrCat("credential refused: ", verified.status().message())));
          return;
        }
        ListJoinableSessions(
            hub, verified->principal,
            [reactor, response](absl::StatusOr<std::vector<pb::LiveSession>> live) {
              if (!live.ok()) {
                reactor->Finish(wire::ToGrpcStatus(live.status()));
                return;
              }
              for (pb::LiveSession& s : *live) {
                *response->add_sessions() = std::move(s);
              }
              reactor->Finish(grpc::Status::OK);
            });
      });
  return reactor;
}

namespace {

// Lists one cluster's targets for `principal` and calls `done` once.
void ListCluster(SessionHub* hub, Cluster* cluster, const std::string& ns,
                 const podgate::common::v1::Principal& principal, const KubeIdentity& user_as,
                 std::function<void(ClusterListing)> done) {
  // With impersonation on, one namespace is listed as the user: what Kubernetes RBAC does not
  // let them list is not shown. Every namespace at once is listed as exec itself (a user can
  // rarely list pods cluster-wide). Either way each namespace listed is then kept only when
  // Kubernetes says the user may exec there (AccessCache: a SelfSubjectAccessReview as them).
  // A cluster whose last health check failed is shown unreachable at once: the others do not
  // wait for its timeout.
  if (absl::Status health = cluster->health(); !health.ok()) {
    ClusterListing down;
    down.kubernetes = absl::UnavailableError(
        absl::StrCat("cluster ", cluster->name(), " is unreachable: ", health.message()));
    done(std::move(down));
    return;
  }
  const KubeIdentity list_as = ns.empty() ? KubeIdentity{} : user_as;
  cluster->kube()->ListPods(
      list_as, ns,
      [hub, cluster, principal, user_as,
       done = std::move(done)](absl::StatusOr<std::vector<PodView>> pods) mutable {
        if (!pods.ok() && IsKubernetesRbacDenial(pods.status())) {
          pods = std::vector<PodView>{};  // RBAC hides the namespace from this user
        }
        if (!pods.ok()) {
          hub->metrics()
              ->api_errors_total.Add({{"code", absl::StatusCodeToString(pods.status().code())}})
              .Increment();
          ClusterListing failed;
          failed.kubernetes = pods.status();
          done(std::move(failed));
          return;
        }
        if (pods->size() > kMaxTargetPods) {
          log::Warn("ListTargets cut", {{"cluster", cluster->name()},
                                        {"pods", static_cast<int64_t>(pods->size())},
                                        {"limit", static_cast<int64_t>(kMaxTargetPods)}});
          pods->resize(kMaxTargetPods);
        }
        auto list = [hub, cluster, principal,
                     done = std::move(done)](std::vector<PodView> kept) mutable {
          auto lister = std::make_shared<TargetLister>(hub, cluster->name(), principal,
                                                       std::move(kept), std::move(done));
          lister->Next();
        };
        if (user_as.empty()) {
          list(*std::move(pods));
          return;
        }
        KeepWhereKubernetesAllows(cluster, user_as, *std::move(pods), std::move(list));
      });
}

void ListTargetsFor(SessionHub* hub, grpc::ServerUnaryReactor* reactor,
                    pb::ListTargetsResponse* response, const std::string& ns,
                    const std::string& cluster_name, absl::StatusOr<auth::VerifiedToken> verified) {
  if (!verified.ok()) {
    hub->metrics()
        ->auth_failures_total.Add({{"reason", auth::AuthFailureReason(verified.status())}})
        .Increment();
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                 absl::StrCat("credential refused: ", verified.status().message())));
    return;
  }
  if (!ns.empty()) {
    if (absl::Status s = k8s::ValidateNamespaceName(ns); !s.ok()) {
      reactor->Finish(wire::ToGrpcStatus(s));
      return;
    }
  }
  std::vector<Cluster*> clusters;
  if (cluster_name.empty()) {
    clusters = hub->clusters();
  } else {
    absl::StatusOr<Cluster*> one = hub->ResolveCluster(cluster_name);
    if (!one.ok()) {
      reactor->Finish(wire::ToGrpcStatus(one.status()));
      return;
    }
    clusters.push_back(*one);
  }
  podgate::common::v1::Principal principal = verified->principal;
  KubeIdentity user_as;
  if (hub->options().impersonation.mode != ImpersonationMode::kOff) {
    absl::StatusOr<KubeIdentity> mapped = MapIdentity(
        hub->options().impersonation, principal.user(),
        {principal.groups().begin(), principal.groups().end()}, "", principal.subject());
    if (!mapped.ok()) {
      reactor->Finish(wire::ToGrpcStatus(mapped.status()));
      return;
    }
    user_as = *std::move(mapped);
  }
  // Every cluster at once; the answer is put together when the last one is in, in the order
  // the clusters are configured.
  struct Gather {
    std::mutex mu;
    std::vector<ClusterListing> listings;
    size_t left = 0;
  };
  auto gather = std::make_shared<Gather>();
  gather->listings.resize(clusters.size());
  gather->left = clusters.size();
  for (size_t i = 0; i < clusters.size(); ++i) {
    ListCluster(hub, clusters[i], ns, principal, user_as,
                [hub, reactor, response, clusters, gather, i](ClusterListing listing) {
                  {
                    std::lock_guard<std::mutex> lock(gather->mu);
                    gather->listings[i] = std::move(listing);
                    if (--gather->left > 0) {
                      return;
                    }
                  }
                  // Policy unanswered anywhere: nothing is listed (fail closed). Every cluster
                  // down: the call fails as a single cluster's did. Otherwise a cluster that is
                  // down is listed as unreachable and the others answer.
                  size_t down = 0;
                  for (const ClusterListing& l : gather->listings) {
                    if (!l.policy.ok()) {
                      reactor->Finish(wire::ToGrpcStatus(l.policy));
                      return;
                    }
                    down += l.kubernetes.ok() ? 0 : 1;
                  }
                  if (down == gather->listings.size()) {
                    reactor->Finish(wire::ToGrpcStatus(gather->listings.front().kubernetes));
                    return;
                  }
                  for (size_t c = 0; c < clusters.size(); ++c) {
                    ClusterListing& l = gather->listings[c];
                    pb::ClusterInfo* info = response->add_clusters();
                    info->set_name(clusters[c]->name());
                    info->set_default_(clusters[c] == hub->default_cluster());
                    info->set_reachable(l.kubernetes.ok());
                    if (!l.kubernetes.ok()) {
                      info->set_error(std::string(l.kubernetes.message()));
                      continue;
                    }
                    for (pb::NamespaceInfo& n : l.namespaces) {
                      if (info->default_()) {
                        *response->add_namespaces() = n;
                      }
                      *info->add_namespaces() = std::move(n);
                    }
                  }
                  reactor->Finish(grpc::Status::OK);
                });
  }
}

}  // namespace

}  // namespace podgate::exec
