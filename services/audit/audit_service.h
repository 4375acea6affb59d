// The audit service's gRPC implementation. Persists audit records: Record, Query, Verify.
//
// Methods not yet implemented answer UNIMPLEMENTED (the generated base class's behaviour); no
// method pretends to succeed.
#pragma once

#include "podgate/audit/v1/audit.grpc.pb.h"

namespace podgate::audit {

class AuditServiceImpl final : public podgate::audit::v1::AuditService::CallbackService {
 public:
  AuditServiceImpl() = default;
};

}  // namespace podgate::audit
