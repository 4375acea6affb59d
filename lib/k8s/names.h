// Kubernetes object names, checked as the API server checks them, so that every podgate service
// refuses the same names (and before they reach a URL):
//   - namespace: a DNS-1123 label (ValidateNamespaceName in k8s.io/apimachinery);
//   - pod: a DNS-1123 subdomain (ValidatePodName = NameIsDNSSubdomain);
//   - container: a DNS-1123 label (validateContainers: IsDNS1123Label);
//   - cluster: podgate's own name for a cluster exec serves (Target.cluster), held to the same
//     DNS-1123 label rule so that it is safe in URLs, metrics labels and file names.
// A DNS-1123 label is 1-63 characters of [a-z0-9-] starting and ending with [a-z0-9]; a subdomain
// is 1-253 characters of such labels joined by '.'.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace podgate::k8s {

inline constexpr size_t kMaxLabelLength = 63;
inline constexpr size_t kMaxSubdomainLength = 253;

bool IsDns1123Label(std::string_view name);
bool IsDns1123Subdomain(std::string_view name);

// InvalidArgument naming the field, the (shortened) value and the rule it breaks.
absl::Status ValidateNamespaceName(std::string_view name);
absl::Status ValidatePodName(std::string_view name);
absl::Status ValidateContainerName(std::string_view name);
// An empty cluster is not valid here: callers that accept "" (exec's default) check for it.
absl::Status ValidateClusterName(std::string_view name);
// A target's cluster as a request gives it: empty (exec's default cluster; in an audit filter,
// the records from before clusters) or a cluster name.
absl::Status ValidateTargetCluster(std::string_view name);

// The three names of an exec target; an empty container means the pod's default container.
absl::Status ValidateTarget(std::string_view namespace_name, std::string_view pod,
                            std::string_view container);

}  // namespace podgate::k8s
