// authorization.k8s.io/v1 access reviews as kubesim answers them: a SelfSubjectAccessReview
// asks "may I (the caller, or whom it impersonates) do this?", a SubjectAccessReview asks it for
// any user and groups. Both are answered by the same authorizer as every request (the access
// list and RBAC), so a review and the request it predicts never disagree.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "cluster.h"
#include "rbac.h"

namespace podgate::kubesim {

// Answers the review in `body` (JSON, kind SelfSubjectAccessReview when `self`, else
// SubjectAccessReview): the object as sent with its `status` ({"allowed": bool, "reason"}).
// For a self review the subject is `caller`; for a SubjectAccessReview it is spec.user,
// spec.groups and spec.extra. INVALID_ARGUMENT for a body that is not such an object (the API
// server's 400); FAILED_PRECONDITION for a spec the API server rejects as Invalid (422): no
// resourceAttributes (kubesim has no non-resource URLs to review), or a SubjectAccessReview
// naming neither a user nor a group.
absl::StatusOr<std::string> AnswerAccessReview(const Cluster& cluster, const UserInfo& caller,
                                               bool self, const std::string& body);

// kubectl sends built-in kinds as Kubernetes protobuf (`application/vnd.kubernetes.protobuf`:
// the magic "k8s\0", a runtime.Unknown envelope holding the object). Turns such a (Self)
// SubjectAccessReview into its JSON form, the fields the review reads only. INVALID_ARGUMENT
// for anything malformed (truncated, a wrong magic or kind, a bad wire type).
absl::StatusOr<std::string> AccessReviewProtobufToJson(std::string_view body, bool self);

}  // namespace podgate::kubesim
