// The exec service's gRPC implementation: Session (session.h), Sessions (session_lanes.h),
// ListTargets and ListSessions.
#pragma once

#include <memory>

#include "exec/session.h"
#include "podgate/exec/v1/exec.grpc.pb.h"

namespace podgate::exec {

class ExecServiceImpl final : public podgate::exec::v1::ExecService::CallbackService {
 public:
  // `hub` is not owned and must outlive the service.
  explicit ExecServiceImpl(SessionHub* hub) : hub_(hub) {}

  grpc::ServerBidiReactor<podgate::exec::v1::SessionRequest, podgate::exec::v1::SessionResponse>*
  Session(grpc::CallbackServerContext* context) override;

  grpc::ServerBidiReactor<podgate::exec::v1::SessionsRequest, podgate::exec::v1::SessionsResponse>*
  Sessions(grpc::CallbackServerContext* context) override;

  grpc::ServerUnaryReactor* ListTargets(grpc::CallbackServerContext* context,
                                        const podgate::exec::v1::ListTargetsRequest* request,
                                        podgate::exec::v1::ListTargetsResponse* response) override;

  grpc::ServerUnaryReactor* ListSessions(
      grpc::CallbackServerContext* context, const podgate::exec::v1::ListSessionsRequest* request,
      podgate::exec::v1::ListSessionsResponse* response) override;

 private:
  SessionHub* const hub_;
};

}  // namespace podgate::exec
