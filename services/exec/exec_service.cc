#include "exec/exec_service.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <set>

#include "absl/strings/str_cat.h"
#include "exec/credential.h"
#include "exec/impersonation.h"
#include "k8s/names.h"
#include "runtime/log.h"
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
void KeepWhereKubernetesAllows(SessionHub* hub, const KubeIdentity& as, std::vector<PodView> pods,
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
    hub->access_cache()->MayExec(as, ns, [pending, ns](absl::StatusOr<bool> allowed) {
      std::vector<PodView> kept;
      {
        std::lock_guard<std::mutex> lock(pending->mu);
        if (!allowed.ok()) {
          log::Warn("access review failed: the namespace is not listed",
                    {{"namespace", ns}, {"error", std::string(allowed.status().message())}});
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

class TargetLister : public std::enable_shared_from_this<TargetLister> {
 public:
  TargetLister(SessionHub* hub, grpc::ServerUnaryReactor* reactor,
               pb::ListTargetsResponse* response, podgate::common::v1::Principal principal,
               std::vector<PodView> pods)
      : hub_(hub),
        reactor_(reactor),
        response_(response),
        principal_(std::move(principal)),
        pods_(std::move(pods)) {}

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
      reactor_->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                    absl::StrCat("policy could not be asked: ",
                                                 status.error_message())));
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
    for (auto& [ns, pods] : by_namespace_) {
      pb::NamespaceInfo* info = response_->add_namespaces();
      info->set_name(ns);
      std::sort(pods.begin(), pods.end(),
                [](const pb::PodInfo& a, const pb::PodInfo& b) { return a.name() < b.name(); });
      for (pb::PodInfo& p : pods) {
        *info->add_pods() = std::move(p);
      }
    }
    reactor_->Finish(grpc::Status::OK);
  }

  SessionHub* const hub_;
  grpc::ServerUnaryReactor* const reactor_;
  pb::ListTargetsResponse* const response_;
  const podgate::common::v1::Principal principal_;
  std::vector<PodView> pods_;
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
                    absl::StatusOr<auth::VerifiedToken> verified);

}  // namespace

grpc::ServerBidiReactor<pb::SessionRequest, pb::SessionResponse>* ExecServiceImpl::Session(
    grpc::CallbackServerContext* context) {
  return StartSession(hub_, context);
}

grpc::ServerUnaryReactor* ExecServiceImpl::ListTargets(grpc::CallbackServerContext* context,
                                                       const pb::ListTargetsRequest* request,
                                                       pb::ListTargetsResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  SessionHub* hub = hub_;
  const std::string ns = request->namespace_();
  // At once, or from the timer thread once a key set fetch is over (credential.h).
  VerifyCredential(hub_->verifier(), hub_->timers(), request->credential().bearer_token(),
                   [hub, reactor, response, ns](absl::StatusOr<auth::VerifiedToken> verified) {
                     ListTargetsFor(hub, reactor, response, ns, std::move(verified));
                   });
  return reactor;
}

namespace {

void ListTargetsFor(SessionHub* hub, grpc::ServerUnaryReactor* reactor,
                    pb::ListTargetsResponse* response, const std::string& ns,
                    absl::StatusOr<auth::VerifiedToken> verified) {
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
  podgate::common::v1::Principal principal = verified->principal;
  // With impersonation on, one namespace is listed as the user: what Kubernetes RBAC does not
  // let them list is not shown. Every namespace at once is listed as exec itself (a user can
  // rarely list pods cluster-wide). Either way each namespace listed is then kept only when
  // Kubernetes says the user may exec there (AccessCache: a SelfSubjectAccessReview as them).
  KubeIdentity user_as;
  if (hub->options().impersonation.mode != ImpersonationMode::kOff) {
    absl::StatusOr<KubeIdentity> mapped =
        MapIdentity(hub->options().impersonation, principal.user(),
                    {principal.groups().begin(), principal.groups().end()}, "");
    if (!mapped.ok()) {
      reactor->Finish(wire::ToGrpcStatus(mapped.status()));
      return;
    }
    user_as = *std::move(mapped);
  }
  const KubeIdentity list_as = ns.empty() ? KubeIdentity{} : user_as;
  hub->kube()->ListPods(
      list_as, ns,
      [hub, reactor, response, principal, user_as](absl::StatusOr<std::vector<PodView>> pods) {
        if (!pods.ok() && IsKubernetesRbacDenial(pods.status())) {
          pods = std::vector<PodView>{};  // RBAC hides the namespace from this user
        }
        if (!pods.ok()) {
          hub->metrics()
              ->api_errors_total.Add({{"code", absl::StatusCodeToString(pods.status().code())}})
              .Increment();
          reactor->Finish(wire::ToGrpcStatus(pods.status()));
          return;
        }
        if (pods->size() > kMaxTargetPods) {
          log::Warn("ListTargets cut", {{"pods", static_cast<int64_t>(pods->size())},
                                        {"limit", static_cast<int64_t>(kMaxTargetPods)}});
          pods->resize(kMaxTargetPods);
        }
        auto list = [hub, reactor, response, principal](std::vector<PodView> kept) {
          auto lister =
              std::make_shared<TargetLister>(hub, reactor, response, principal, std::move(kept));
          lister->Next();
        };
        if (user_as.empty()) {
          list(*std::move(pods));
          return;
        }
        KeepWhereKubernetesAllows(hub, user_as, *std::move(pods), std::move(list));
      });
}

}  // namespace

}  // namespace podgate::exec
