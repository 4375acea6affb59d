// How exec shows Kubernetes the end user: the impersonation mode and the mapping of a verified
// principal to the identity exec's API calls impersonate (docs/exec.md, Impersonation).
//
// - off: every call is exec's own service account (Kubernetes RBAC sees only podgate).
// - user: calls for a user carry Impersonate-User: <user_prefix><user> and the session id as
//   Impersonate-Extra-podgate-session; RBAC is evaluated for that user (and
//   system:authenticated) alone.
// - user+groups: as user, plus one Impersonate-Group: <group_prefix><group> per token group.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "exec/kube.h"

namespace podgate::exec {

enum class ImpersonationMode { kOff, kUser, kUserAndGroups };

struct ImpersonationOptions {
  ImpersonationMode mode = ImpersonationMode::kOff;
  // Prepended to the user name and to each group name.
  std::string user_prefix;
  std::string group_prefix;
  // Sends the session id as Impersonate-Extra-podgate-session (so the API server's audit log
  // ties each call to the podgate session and its audit trail).
  bool session_extra = true;
  // Sends the credential's subject (JWT `sub`) as Impersonate-Uid, so the API server's audit
  // log carries the user's stable id beside the name (needs impersonate on uids).
  bool uid = false;
};

// The extra key carrying the session id.
inline constexpr char kSessionExtraKey[] = "podgate-session";

// "off", "user", "user+groups"; anything else is INVALID_ARGUMENT.
absl::StatusOr<ImpersonationMode> ParseImpersonationMode(const std::string& text);
const char* ImpersonationModeName(ImpersonationMode mode);

// The identity to impersonate for `user` in `groups` during `session_id`: empty in mode off.
// PERMISSION_DENIED when a mapped name is empty, starts with "system:" (Kubernetes' own users
// and groups — system:masters is cluster-admin — are never impersonated, whatever a token
// says) or holds a control character.
// `subject` (the credential's `sub`, may be empty) becomes the uid when options.uid is set; a
// subject with a control character is refused like a name.
absl::StatusOr<KubeIdentity> MapIdentity(const ImpersonationOptions& options,
                                         const std::string& user,
                                         const std::vector<std::string>& groups,
                                         const std::string& session_id,
                                         const std::string& subject = "");

// The start-up check: a SelfSubjectAccessReview as exec itself. With the session extra on it
// asks for impersonate on userextras/podgate-session (granted without resourceNames, so the
// answer is conclusive): a "no" is FAILED_PRECONDITION, saying what to grant — main stops
// there. Without the extra it asks for impersonate on users with no name, which a grant limited
// by resourceNames refuses too: a "no" is then only UNKNOWN (main warns, and the first call
// decides). A review that cannot be made is UNAVAILABLE (warn, and the first call decides).
// Waits at most `timeout`.
absl::Status CheckImpersonationGrant(KubeApi* kube, const ImpersonationOptions& options,
                                     absl::Duration timeout);

}  // namespace podgate::exec
