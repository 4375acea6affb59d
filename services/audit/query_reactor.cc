#include "audit/query_reactor.h"

#include "audit/audit_service.h"
#include "wire/status.h"

namespace podgate::audit {

QueryReactor::QueryReactor(Store* store, Executor* executor, AuditMetrics* metrics,
                           const podgate::audit::v1::QueryRequest& request)
    : store_(store), metrics_(metrics) {
  if (absl::StatusOr<int> valid = ValidateQuery(request); !valid.ok()) {
    Finish(wire::ToGrpcStatus(valid.status()));
    return;
  }
  if (!executor->TrySubmit([this, request] { RunQuery(request); })) {
    metrics_->Error("executor_full").Increment();
    Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "too many queries in progress; retry later"));
  }
}

void QueryReactor::RunQuery(podgate::audit::v1::QueryRequest request) {
  absl::StatusOr<QueryPage> page = store_->Query(request);
  if (!page.ok()) {
    metrics_->Error("query_failed").Increment();
    Finish(wire::ToGrpcStatus(page.status()));
    return;
  }
  page_ = *std::move(page);
  WriteNext();
}

void QueryReactor::WriteNext() {
  message_.Clear();
  if (next_ < page_.records.size()) {
    *message_.mutable_record() = std::move(page_.records[next_++]);
    StartWrite(&message_);
    return;
  }
  if (!end_written_) {
    end_written_ = true;
    message_.mutable_page_end()->set_next_page_token(page_.next_page_token);
    StartWrite(&message_);
    return;
  }
  Finish(grpc::Status::OK);
}

void QueryReactor::OnWriteDone(bool ok) {
  if (!ok) {
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    return;
  }
  WriteNext();
}

void QueryReactor::OnDone() { delete this; }

}  // namespace podgate::audit
