// The exec service's gRPC implementation. Holds the Kubernetes exec streams: Session and ListTargets.
//
// Methods not yet implemented answer UNIMPLEMENTED (the generated base class's behaviour); no
// method pretends to succeed.
#pragma once

#include "podgate/exec/v1/exec.grpc.pb.h"

namespace podgate::exec {

class ExecServiceImpl final : public podgate::exec::v1::ExecService::CallbackService {
 public:
  ExecServiceImpl() = default;
};

}  // namespace podgate::exec
