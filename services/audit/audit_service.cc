#include "audit/audit_service.h"

#include "absl/strings/str_cat.h"
#include "audit/follow_reactor.h"
#include "audit/query_reactor.h"
#include "audit/record_reactor.h"
#include "audit/verify.h"
#include "runtime/log.h"
#include "runtime/trace_metadata.h"
#include "wire/status.h"

namespace podgate::audit {

AuditServiceImpl::AuditServiceImpl(Store* store, Writer* writer, AuditMetrics* metrics,
                                   AuditServiceOptions options)
    : store_(store),
      writer_(writer),
      metrics_(metrics),
      checkpointer_(options.checkpointer),
      executor_(options.read_threads, options.max_queued_reads),
      follow_hub_(store, metrics, writer->chain_id(), options.follow) {
  writer_->SetCommitListener([hub = &follow_hub_] { hub->Notify(); });
}

AuditServiceImpl::~AuditServiceImpl() { writer_->SetCommitListener(nullptr); }

grpc::ServerBidiReactor<podgate::audit::v1::RecordRequest, podgate::audit::v1::RecordResponse>*
AuditServiceImpl::Record(grpc::CallbackServerContext* context) {
  // Says that this stream takes batches (RecordRequest.batch), and how large; a client that
  // never hears it sends one event per message.
  context->AddInitialMetadata(std::string(RecordReactor::kBatchMetadata),
                              absl::StrCat(RecordReactor::kMaxBatchEvents));
  return new RecordReactor(writer_, metrics_, &record_streams_);
}

grpc::ServerWriteReactor<podgate::audit::v1::QueryResponse>* AuditServiceImpl::Query(
    grpc::CallbackServerContext* context, const podgate::audit::v1::QueryRequest* request) {
  const runtime::TraceContext trace = runtime::TraceOfCall(*context);
  log::Debug("query", {{"trace_ids", static_cast<int64_t>(request->trace_ids_size())},
                       {"session_ids", static_cast<int64_t>(request->session_ids_size())},
                       {"trace_id", trace.trace_id},
                       {"span_id", trace.span_id}});
  if (request->follow()) {
    return new FollowReactor(&follow_hub_, store_, &executor_, metrics_, *request);
  }
  return new QueryReactor(store_, &executor_, metrics_, *request);
}

grpc::ServerUnaryReactor* AuditServiceImpl::Verify(grpc::CallbackServerContext* context,
                                                   const podgate::audit::v1::VerifyRequest* request,
                                                   podgate::audit::v1::VerifyResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (request->checkpoints_size() > kMaxVerifyCheckpoints || request->max_unsigned_records() < 0) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                     absl::StrCat("at most ", kMaxVerifyCheckpoints,
                                  " checkpoints and max_unsigned_records of 0 or more")));
    return reactor;
  }
  VerifyOptions options;
  options.chain_id = request->chain_id();
  options.checkpoints.assign(request->checkpoints().begin(), request->checkpoints().end());
  options.max_unsigned_records = request->max_unsigned_records();
  if (!executor_.TrySubmit([this, reactor, options = std::move(options), response] {
        absl::StatusOr<podgate::audit::v1::VerifyResponse> result = VerifyChains(*store_, options);
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

grpc::ServerUnaryReactor* AuditServiceImpl::CreateCheckpoint(
    grpc::CallbackServerContext* context, const podgate::audit::v1::CreateCheckpointRequest*,
    podgate::audit::v1::CreateCheckpointResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (checkpointer_ == nullptr) {
    reactor->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                 "audit runs without --checkpoint_key: it signs no checkpoints"));
    return reactor;
  }
  // Signing writes the state file (an fsync): off the callback thread.
  if (!executor_.TrySubmit([this, reactor, response] {
        absl::StatusOr<podgate::audit::v1::SignedCheckpoint> signed_head =
            checkpointer_->CheckpointNow();
        if (!signed_head.ok()) {
          metrics_->Error("checkpoint_failed").Increment();
          reactor->Finish(wire::ToGrpcStatus(signed_head.status()));
          return;
        }
        *response->mutable_checkpoint() = *std::move(signed_head);
        reactor->Finish(grpc::Status::OK);
      })) {
    metrics_->Error("executor_full").Increment();
    reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                 "too many requests in progress; retry later"));
  }
  return reactor;
}

}  // namespace podgate::audit
