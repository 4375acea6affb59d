#include "exec/impersonation.h"

#include <algorithm>
#include <future>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace podgate::exec {
namespace {

absl::Status CheckName(const std::string& name, const char* what) {
  if (name.empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat("the ", what, " name to show Kubernetes is empty"));
  }
  if (absl::StartsWith(name, "system:")) {
    return absl::PermissionDeniedError(
        absl::StrCat("the ", what, " \"", name,
                     "\" is one of Kubernetes' own (system:), which exec never impersonates"));
  }
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) {
      return absl::PermissionDeniedError(
          absl::StrCat("the ", what, " name to show Kubernetes contains a control character"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ImpersonationMode> ParseImpersonationMode(const std::string& text) {
  if (text == "off") {
    return ImpersonationMode::kOff;
  }
  if (text == "user") {
    return ImpersonationMode::kUser;
  }
  if (text == "user+groups") {
    return ImpersonationMode::kUserAndGroups;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("impersonation mode \"", text, "\" is not one of off, user, user+groups"));
}

const char* ImpersonationModeName(ImpersonationMode mode) {
  switch (mode) {
    case ImpersonationMode::kOff:
      return "off";
    case ImpersonationMode::kUser:
      return "user";
    case ImpersonationMode::kUserAndGroups:
      return "user+groups";
  }
  return "off";
}

absl::StatusOr<KubeIdentity> MapIdentity(const ImpersonationOptions& options,
                                         const std::string& user,
                                         const std::vector<std::string>& groups,
                                         const std::string& session_id,
                                         const std::string& subject) {
  KubeIdentity id;
  if (options.mode == ImpersonationMode::kOff) {
    return id;
  }
  if (user.empty()) {
    return absl::PermissionDeniedError("the user name to show Kubernetes is empty");
  }
  id.user = options.user_prefix + user;
  if (absl::Status s = CheckName(id.user, "user"); !s.ok()) {
    return s;
  }
  if (options.mode == ImpersonationMode::kUserAndGroups) {
    for (const std::string& g : groups) {
      std::string mapped = options.group_prefix + g;
      if (absl::Status s = CheckName(mapped, "group"); !s.ok()) {
        return s;
      }
      id.groups.push_back(std::move(mapped));
    }
  }
  if (options.session_extra && !session_id.empty()) {
    id.extra.emplace_back(kSessionExtraKey, session_id);
  }
  if (options.uid && !subject.empty()) {
    if (std::any_of(subject.begin(), subject.end(),
                    [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
      return absl::PermissionDeniedError(
          "the credential's subject holds a control character; it cannot be shown to Kubernetes");
    }
    id.uid = subject;
  }
  return id;
}

absl::Status CheckImpersonationGrant(KubeApi* kube, const ImpersonationOptions& options,
                                     absl::Duration timeout) {
  if (options.mode == ImpersonationMode::kOff) {
    return absl::OkStatus();
  }
  AccessQuery query = options.session_extra ? AccessQuery{"impersonate",
                                                          "authentication.k8s.io",
                                                          "userextras",
                                                          kSessionExtraKey,
                                                          "",
                                                          "start-up-check"}
                                            : AccessQuery{"impersonate", "", "users", "", "", ""};
  auto answer = std::make_shared<std::promise<absl::StatusOr<bool>>>();
  std::future<absl::StatusOr<bool>> future = answer->get_future();
  kube->ReviewAccess(KubeIdentity{}, query,
                     [answer](absl::StatusOr<bool> allowed) { answer->set_value(allowed); });
  if (future.wait_for(absl::ToChronoNanoseconds(timeout)) != std::future_status::ready) {
    return absl::UnavailableError("the access review did not answer in time");
  }
  absl::StatusOr<bool> allowed = future.get();
  if (!allowed.ok()) {
    return absl::UnavailableError(
        absl::StrCat("the access review could not be made: ", allowed.status().message()));
  }
  if (*allowed) {
    return absl::OkStatus();
  }
  if (options.session_extra) {
    return absl::FailedPreconditionError(
        "--kube_impersonation is on, but exec's Kubernetes identity may not impersonate (a "
        "SelfSubjectAccessReview for impersonate on userextras/podgate-session said no): grant "
        "it the impersonate verb on users (and groups) and userextras/podgate-session "
        "(docs/deploy.md, Impersonation)");
  }
  return absl::UnknownError(
      "exec's Kubernetes identity may not impersonate just any user (fine when its grant lists "
      "resourceNames; otherwise every session will fail until it is granted)");
}

}  // namespace podgate::exec
