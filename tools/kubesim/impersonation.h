// The API server's impersonation filter, as kubesim applies it: `Impersonate-User`,
// `Impersonate-Group` (repeated), `Impersonate-Uid` and `Impersonate-Extra-<key>` headers ask
// to act as another identity. The caller needs the `impersonate` verb on each thing it names
// (users or serviceaccounts, groups, uids, userextras/<key>, resourceNames honoured); the
// request is then authorized as the impersonated identity alone (the caller's own groups do not
// carry over), with `system:authenticated` added as the API server adds it.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "cluster.h"
#include "rbac.h"

namespace podgate::kubesim {

// What the headers ask for, in the order the API server checks it.
struct ImpersonationRequest {
  std::string user;
  std::vector<std::string> groups;
  std::string uid;
  // (key, value) per value: keys lower-cased and percent-decoded.
  std::vector<std::pair<std::string, std::string>> extras;

  bool empty() const { return user.empty() && groups.empty() && uid.empty() && extras.empty(); }
};

// Reads the impersonation headers out of `headers` (name, value) pairs; names are matched
// case-insensitively. Groups, a uid or extras without a user are InvalidArgument with the API
// server's message (a 400 BadRequest).
absl::StatusOr<ImpersonationRequest> ParseImpersonationHeaders(
    const std::vector<std::pair<std::string, std::string>>& headers);

struct ImpersonationResult {
  // Set when every part was allowed: the identity to authorize the request as.
  std::optional<UserInfo> user;
  // Otherwise the first part the caller may not impersonate (for the 403).
  Attributes denied;
};

// Checks each part of `request` against `cluster`'s authorizer for `requestor`.
ImpersonationResult Impersonate(const Cluster& cluster, const UserInfo& requestor,
                                const ImpersonationRequest& request);

}  // namespace podgate::kubesim
