#include "audit/audit_service.h"

#include "audit/follow_reactor.h"
#include "audit/query_reactor.h"
#include "audit/record_reactor.h"
#include "audit/verify.h"
#include "wire/status.h"

namespace podgate::audit {

AuditServiceImpl::AuditServiceImpl(Store* store, Writer* writer, AuditMetrics* metrics,
                                   AuditServiceOptions options)
    : store_(store),
      writer_(writer),
      metrics_(metrics),
      executor_(options.read_threads, options.max_queued_reads),
      follow_hub_(store, metrics, writer->chain_id(), options.follow) {
  writer_->SetCommitListener([hub = &follow_hub_] { hub->Notify(); });
}

AuditServiceImpl::~AuditServiceImpl() { writer_->SetCommitListener(nullptr); }

grpc::ServerBidiReactor<podgate::audit::v1::RecordRequest, podgate::audit::v1::RecordResponse>*
AuditServiceImpl::Record(grpc::CallbackServerContext* context) {
  return new RecordReactor(writer_, metrics_, &record_streams_);
}

grpc::ServerWriteReactor<podgate::audit::v1::QueryResponse>* AuditServiceImpl::Query(
    grpc::CallbackServerContext* context, const podgate::audit::v1::QueryRequest* request) {
  if (request->follow()) {
    return new FollowReactor(&follow_hub_, store_, &executor_, metrics_, *request);
  }
  return new QueryReactor(store_, &executor_, metrics_, *request);
}

grpc::ServerUnaryReactor* AuditServiceImpl::Verify(grpc::CallbackServerContext* context,
                                                   const podgate::audit::v1::VerifyRequest* request,
                                                   podgate::audit::v1::VerifyResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const std::string chain_id = request->chain_id();
  if (!executor_.TrySubmit([this, reactor, chain_id, response] {
        absl::StatusOr<podgate::audit::v1::VerifyResponse> result = VerifyChains(*store_, chain_id);
        if (!result.ok()) {
          metrics_->Error("verify_failed").Increment();
          reactor->Finish(wire::ToGrpcStatus(result.status()));
          return;
        }
        *response = *std::move(result);
        reactor->Finish(grpc::Status::OK);
      })) {
    metrics_->Error("executor_full").Increment();
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "too many verifications in progress; retry later"));
  }
  return reactor;
}

}  // namespace podgate::audit
