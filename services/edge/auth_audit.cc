#include "edge/auth_audit.h"

#include "absl/strings/str_cat.h"
#include "edge/edge_context.h"

namespace podgate::edge {

AuthFailureAudit::AuthFailureAudit(std::shared_ptr<grpc::Channel> channel, size_t max_pending,
                                   EdgeMetrics* metrics)
    : metrics_(metrics) {
  clients::AuditClientOptions options;
  options.source_service = "edge";
  options.max_pending = max_pending;
  client_ = std::make_unique<clients::AuditClient>(std::move(channel), options);
}

AuthFailureAudit::~AuthFailureAudit() = default;

void AuthFailureAudit::Record(const AuthFailureEvent& failure, const std::string& trace_id) {
  podgate::common::v1::AuditEvent e;
  e.set_kind(podgate::common::v1::EVENT_KIND_AUTH_FAILURE);
  e.set_source_service("edge");
  e.set_source_address(failure.source_address.substr(0, 128));
  e.set_trace_id(trace_id);
  if (!failure.target.namespace_().empty()) {
    *e.mutable_target() = failure.target;
  }
  e.mutable_auth_failure()->set_reason(failure.reason.substr(0, 64));
  e.mutable_auth_failure()->set_message(
      absl::StrCat(failure.message.substr(0, 256), " (path ", failure.path.substr(0, 256), ")"));
  EdgeMetrics* metrics = metrics_;
  client_->Record(std::move(e), [metrics](absl::Status status) {
    if (status.ok()) {
      metrics->AuthAudit("recorded");
    } else if (status.code() == absl::StatusCode::kResourceExhausted) {
      metrics->AuthAudit("queue_full");
    } else if (status.code() != absl::StatusCode::kCancelled) {
      metrics->AuthAudit("failed");
    }
  });
}

void AuthFailureAudit::RecordEvent(podgate::common::v1::AuditEvent event) {
  event.set_source_service("edge");
  EdgeMetrics* metrics = metrics_;
  client_->Record(std::move(event), [metrics](absl::Status status) {
    if (status.ok()) {
      metrics->ExecLostAudit("recorded");
    } else if (status.code() == absl::StatusCode::kResourceExhausted) {
      metrics->ExecLostAudit("queue_full");
    } else if (status.code() != absl::StatusCode::kCancelled) {
      metrics->ExecLostAudit("failed");
    }
  });
}

void AuthFailed(EdgeContext* context, const AuthFailureEvent& failure,
                const std::string& trace_id) {
  context->metrics->AuthFailure(failure.reason);
  if (context->auth_audit != nullptr) {
    context->auth_audit->Record(failure, trace_id);
  }
}

}  // namespace podgate::edge
