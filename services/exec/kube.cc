#include "exec/kube.h"

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace podgate::exec {
namespace {

constexpr char kRbacDenialPayload[] = "type.podgate.dev/kubernetes-rbac-denial";

}  // namespace

absl::Status KubernetesRbacDenial(std::string message) {
  absl::Status s = absl::PermissionDeniedError(std::move(message));
  s.SetPayload(kRbacDenialPayload, absl::Cord("1"));
  return s;
}

bool IsKubernetesRbacDenial(const absl::Status& status) {
  return status.code() == absl::StatusCode::kPermissionDenied &&
         status.GetPayload(kRbacDenialPayload).has_value();
}

absl::StatusOr<std::string> ResolveContainer(const PodView& pod, const std::string& requested) {
  std::vector<std::string> names;
  for (const ContainerView& c : pod.containers) {
    names.push_back(c.name);
  }
  if (names.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("pod ", pod.name, " has no containers"));
  }
  if (requested.empty()) {
    if (!pod.default_container_annotation.empty()) {
      for (const std::string& n : names) {
        if (n == pod.default_container_annotation) {
          return n;
        }
      }
    }
    return names.front();
  }
  for (const std::string& n : names) {
    if (n == requested) {
      return n;
    }
  }
  return absl::NotFoundError(absl::StrCat("container ", requested, " is not in pod ", pod.name,
                                          " (it has: ", absl::StrJoin(names, ", "), ")"));
}

SecurityContextView EffectiveSecurityContext(const PodView& pod, const std::string& container) {
  SecurityContextView out = pod.security;
  for (const ContainerView& c : pod.containers) {
    if (c.name == container) {
      if (c.security.run_as_user.has_value()) {
        out.run_as_user = c.security.run_as_user;
      }
      if (c.security.run_as_non_root.has_value()) {
        out.run_as_non_root = c.security.run_as_non_root;
      }
    }
  }
  return out;
}

}  // namespace podgate::exec
