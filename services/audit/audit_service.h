// The audit service's gRPC implementation: Record (group-committed, acked when durable),
// Query (filtered, paged, server-streamed; or following new records), Verify (hash chains,
// signed checkpoints) and CreateCheckpoint (signs the head now).
//
// Store reads run on a small executor so that no gRPC callback thread blocks on the database;
// writes go through the single group-commit Writer.
#pragma once

#include <memory>

#include "audit/audit_metrics.h"
#include "audit/checkpointer.h"
#include "audit/executor.h"
#include "audit/follow_hub.h"
#include "audit/record_reactor.h"
#include "audit/store.h"
#include "audit/writer.h"
#include "podgate/audit/v1/audit.grpc.pb.h"

namespace podgate::audit {

struct AuditServiceOptions {
  // Threads running queries and verifications.
  int read_threads = 2;
  // Queries and verifications waiting for a thread, at most; more answer RESOURCE_EXHAUSTED.
  size_t max_queued_reads = 64;
  // Signs heads for CreateCheckpoint; null: audit runs without a checkpoint key.
  Checkpointer* checkpointer = nullptr;
  // The live tail (Query with follow).
  FollowOptions follow;
};

// The most checkpoints one VerifyRequest may carry.
inline constexpr int kMaxVerifyCheckpoints = 10000;

class AuditServiceImpl final : public podgate::audit::v1::AuditService::CallbackService {
 public:
  // `store`, `writer` and `metrics` must outlive the service.
  AuditServiceImpl(Store* store, Writer* writer, AuditMetrics* metrics,
                   AuditServiceOptions options = {});
  ~AuditServiceImpl() override;

  grpc::ServerBidiReactor<podgate::audit::v1::RecordRequest, podgate::audit::v1::RecordResponse>*
  Record(grpc::CallbackServerContext* context) override;

  grpc::ServerWriteReactor<podgate::audit::v1::QueryResponse>* Query(
      grpc::CallbackServerContext* context,
      const podgate::audit::v1::QueryRequest* request) override;

  grpc::ServerUnaryReactor* Verify(grpc::CallbackServerContext* context,
                                   const podgate::audit::v1::VerifyRequest* request,
                                   podgate::audit::v1::VerifyResponse* response) override;

  grpc::ServerUnaryReactor* CreateCheckpoint(
      grpc::CallbackServerContext* context,
      const podgate::audit::v1::CreateCheckpointRequest* request,
      podgate::audit::v1::CreateCheckpointResponse* response) override;

  // For the server's drain hook: Record streams stop reading and end with UNAVAILABLE once
  // what they read is acked; streams opened later end right away.
  // Following Query streams end with UNAVAILABLE.
  void Drain() {
    record_streams_.DrainAll();
    follow_hub_.Drain();
  }

 private:
  Store* const store_;
  Writer* const writer_;
  AuditMetrics* const metrics_;
  Checkpointer* const checkpointer_;
  Executor executor_;
  RecordStreams record_streams_;
  FollowHub follow_hub_;
};

}  // namespace podgate::audit
