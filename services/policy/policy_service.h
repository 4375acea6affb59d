// The policy service's gRPC implementation. Evaluates commands against the policy document: Authorize, AuthorizeStream, ListAllowed, GetPolicy, ValidatePolicy.
//
// Methods not yet implemented answer UNIMPLEMENTED (the generated base class's behaviour); no
// method pretends to succeed.
#pragma once

#include "podgate/policy/v1/policy.grpc.pb.h"

namespace podgate::policy {

class PolicyServiceImpl final : public podgate::policy::v1::PolicyService::CallbackService {
 public:
  PolicyServiceImpl() = default;
};

}  // namespace podgate::policy
