// The steps that open a session, apart from the session that sequences them:
//
//   1. the credential, verified by exec itself (auth::Verifier);
//   2. the target's names (k8s::ValidateTarget), before they reach a URL;
//   3. admission (SessionHub::Admit: sessions per user and per replica);
//   4. scope: whether the user has any rule for the target (AskScope), asked before any
//      Kubernetes call and again once the pod's labels are known (unless policy said that no
//      rule in scope selects pods by label);
//   5. the pod and container (KubeApi::GetPod, ResolveContainer);
//   6. the root guard (RootGuard), in shell mode at open and in command mode before each command.
//
// Session::HandleOpen and its continuations (session_open.cc) run them in that order.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "exec/exec_metrics.h"
#include "exec/kube.h"
#include "podgate/common/v1/common.pb.h"
#include "podgate/policy/v1/policy.grpc.pb.h"
#include "runtime/timer.h"
#include "runtime/trace.h"

namespace podgate::exec {

// The one answer to a target that does not exist or that no rule lets the user use.
inline constexpr char kTargetUnavailable[] =
    "no such target, or no rule lets you use it (the targets you may use are listed by "
    "ListTargets)";

// Policy's answer to "has the user any rule for the target?".
struct ScopeAnswer {
  bool in_scope = false;
  // The pod's labels cannot change the answer (ListAllowedResponse.pod_labels_irrelevant): no
  // rule in scope selects pods by label, so the answer asked before the pod was looked up is
  // final. False from a policy service that predates the field.
  bool labels_irrelevant = false;
};

// Asks policy whether `principal` has any rule for `target` (ListAllowed): `labels_known` false
// before the pod is looked up (a rule's podLabels then count as matching when they allow, never
// when they deny). `done` gets the answer or the call's error (policy unreachable, past
// `timeout`), on a gRPC thread. The call carries `trace` (when valid) as its traceparent.
void AskScope(podgate::policy::v1::PolicyService::StubInterface* policy,
              const podgate::common::v1::Principal& principal,
              const podgate::common::v1::Target& target, bool labels_known, absl::Duration timeout,
              std::function<void(absl::StatusOr<ScopeAnswer>)> done,
              const runtime::TraceContext& trace = {});

// Refuses a container that runs as root unless the rule allows root. What the pod spec declares
// comes first (an effective securityContext.runAsUser of 0 is root, refused without a probe);
// anything else is asked with `id -u` in the container (a probe), whose answer is cached per
// (pod uid, container) for `ttl`. A uid that cannot be determined counts as root (fail closed).
class RootGuard {
 public:
  // None is owned; each must outlive the guard.
  RootGuard(KubeApi* kube, runtime::TimerQueue* timers, ExecMetrics* metrics,
            absl::Duration probe_timeout, absl::Duration ttl);

  // Calls `next` once with OK when `container` of `pod` may be used, or PERMISSION_DENIED with
  // the reason; at once (declared or cached) or from the probe's callback.
  // The probe runs as `as` (the session's user, by impersonation); a KubernetesRbacDenial of
  // it is passed to `next` as it is.
  void Check(const KubeIdentity& as, const PodView& pod, const std::string& container,
             bool root_allowed, std::function<void(absl::Status)> next);

  // The cache: the uid of (pod uid, container), if known and fresh.
  std::optional<int64_t> CachedUid(const std::string& key);
  void CacheUid(const std::string& key, int64_t uid);

 private:
  KubeApi* const kube_;
  runtime::TimerQueue* const timers_;
  ExecMetrics* const metrics_;
  const absl::Duration probe_timeout_;
  const absl::Duration ttl_;
  std::mutex mu_;
  std::map<std::string, std::pair<int64_t, absl::Time>> uid_cache_;
};

}  // namespace podgate::exec
