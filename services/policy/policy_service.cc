#include "policy/policy_service.h"

#include "absl/time/time.h"
#include "policy/policy_loader.h"
#include "runtime/log.h"
#include "runtime/trace_metadata.h"
#include "wire/time.h"

namespace podgate::policy {
namespace {

grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, grpc::Status status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(std::move(status));
  return reactor;
}

// What a unary Authorize needs before any rule can look at it.
grpc::Status CheckStructure(const podgate::policy::v1::AuthorizeRequest& request) {
  if (request.principal().user().empty()) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "principal.user is required"};
  }
  if (request.target().namespace_().empty() || request.target().pod().empty()) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "target.namespace and target.pod are required"};
  }
  if (request.action_case() == podgate::policy::v1::AuthorizeRequest::ACTION_NOT_SET) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "an action (command or shell) is required"};
  }
  return grpc::Status::OK;
}

}  // namespace

PolicyServiceImpl::PolicyServiceImpl(PolicyStore* store, PolicyMetrics* metrics, bool log_allowed)
    : store_(store), authorizer_(store, metrics, log_allowed) {}

grpc::ServerUnaryReactor* PolicyServiceImpl::Authorize(
    grpc::CallbackServerContext* context, const podgate::policy::v1::AuthorizeRequest* request,
    podgate::policy::v1::AuthorizeResponse* response) {
  if (grpc::Status s = CheckStructure(*request); !s.ok()) {
    return Reply(context, s);
  }
  // The trace is read (or a new one made) only for a decision that is logged.
  *response = authorizer_.Authorize(*request, [context] { return runtime::TraceOfCall(*context); });
  return Reply(context, grpc::Status::OK);
}

grpc::ServerBidiReactor<podgate::policy::v1::AuthorizeStreamRequest,
                        podgate::policy::v1::AuthorizeStreamResponse>*
PolicyServiceImpl::AuthorizeStream(grpc::CallbackServerContext* context) {
  return new AuthorizeStreamReactor(&authorizer_, &streams_, runtime::TraceOfCall(*context));
}

grpc::ServerUnaryReactor* PolicyServiceImpl::ListAllowed(
    grpc::CallbackServerContext* context, const podgate::policy::v1::ListAllowedRequest* request,
    podgate::policy::v1::ListAllowedResponse* response) {
  if (request->principal().user().empty()) {
    return Reply(context, {grpc::StatusCode::INVALID_ARGUMENT, "principal.user is required"});
  }
  if (request->target().namespace_().empty() || request->target().pod().empty()) {
    return Reply(context, {grpc::StatusCode::INVALID_ARGUMENT,
                           "target.namespace and target.pod are required"});
  }
  *response = store_->Current()->ListAllowed(*request);
  const runtime::TraceContext trace = runtime::TraceOfCall(*context);
  log::Debug("allowed commands listed", {{"user", request->principal().user()},
                                         {"cluster", request->target().cluster()},
                                         {"namespace", request->target().namespace_()},
                                         {"pod", request->target().pod()},
                                         {"commands", response->commands_size()},
                                         {"trace_id", trace.trace_id},
                                         {"span_id", trace.span_id}});
  return Reply(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* PolicyServiceImpl::GetPolicy(
    grpc::CallbackServerContext* context, const podgate::policy::v1::GetPolicyRequest* request,
    podgate::policy::v1::GetPolicyResponse* response) {
  const std::shared_ptr<const CompiledPolicy> policy = store_->Current();
  response->set_version(policy->version());
  *response->mutable_loaded_time() = wire::ToProtoTimestamp(policy->loaded_time());
  response->set_source(policy->source());
  response->set_rule_count(static_cast<int32_t>(policy->rules().size()));
  response->set_rejected_reloads(store_->rejected_reloads());
  response->set_last_rejection(store_->last_rejection());
  return Reply(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* PolicyServiceImpl::ValidatePolicy(
    grpc::CallbackServerContext* context, const podgate::policy::v1::ValidatePolicyRequest* request,
    podgate::policy::v1::ValidatePolicyResponse* response) {
  LoadResult result = LoadPolicy(request->document(), "ValidatePolicy");
  response->set_valid(result.ok());
  response->set_version(result.version);
  response->set_rule_count(result.rule_count);
  for (const LoadIssue& issue : result.issues) {
    podgate::policy::v1::ValidationIssue* out = response->add_issues();
    out->set_severity(issue.severity);
    out->set_line(issue.line);
    out->set_column(issue.column);
    out->set_message(issue.message);
  }
  return Reply(context, grpc::Status::OK);
}

}  // namespace podgate::policy
