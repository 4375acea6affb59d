// The policy service's gRPC implementation: Authorize, AuthorizeStream, ListAllowed,
// GetPolicy and ValidatePolicy over the policy version the PolicyStore holds.
//
// Structurally invalid unary requests (no user, namespace, pod or action) get
// INVALID_ARGUMENT; everything about the argv itself is a decision (a denial with a reason),
// because the user typed it and the audit trail records it.
#pragma once

#include "podgate/policy/v1/policy.grpc.pb.h"
#include "policy/authorize_stream_reactor.h"
#include "policy/authorizer.h"
#include "policy/policy_metrics.h"
#include "policy/policy_store.h"

namespace podgate::policy {

class PolicyServiceImpl final : public podgate::policy::v1::PolicyService::CallbackService {
 public:
  // Neither is owned; `metrics` may be null. `log_allowed`: whether allowed decisions are
  // logged (at debug level: true when the service logs at debug level; Authorizer).
  PolicyServiceImpl(PolicyStore* store, PolicyMetrics* metrics, bool log_allowed = true);

  grpc::ServerUnaryReactor* Authorize(grpc::CallbackServerContext* context,
                                      const podgate::policy::v1::AuthorizeRequest* request,
                                      podgate::policy::v1::AuthorizeResponse* response) override;

  grpc::ServerBidiReactor<podgate::policy::v1::AuthorizeStreamRequest,
                          podgate::policy::v1::AuthorizeStreamResponse>*
  AuthorizeStream(grpc::CallbackServerContext* context) override;

  grpc::ServerUnaryReactor* ListAllowed(
      grpc::CallbackServerContext* context, const podgate::policy::v1::ListAllowedRequest* request,
      podgate::policy::v1::ListAllowedResponse* response) override;

  grpc::ServerUnaryReactor* GetPolicy(grpc::CallbackServerContext* context,
                                      const podgate::policy::v1::GetPolicyRequest* request,
                                      podgate::policy::v1::GetPolicyResponse* response) override;

  grpc::ServerUnaryReactor* ValidatePolicy(
      grpc::CallbackServerContext* context,
      const podgate::policy::v1::ValidatePolicyRequest* request,
      podgate::policy::v1::ValidatePolicyResponse* response) override;

  // Ends every open AuthorizeStream after its queued answers, with UNAVAILABLE, and refuses
  // new ones: the server's drain hook, so clients move to another replica without waiting
  // for the drain deadline.
  void Drain() { streams_.DrainAll(); }

 private:
  PolicyStore* const store_;
  Authorizer authorizer_;
  StreamRegistry streams_;
};

}  // namespace podgate::policy
