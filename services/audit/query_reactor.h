// The server side of one AuditService.Query stream: runs the page query on the executor, then
// writes the records one at a time and the page_end.
#pragma once

#include <vector>

#include "audit/audit_metrics.h"
#include "audit/executor.h"
#include "audit/store.h"
#include "grpcpp/grpcpp.h"
#include "podgate/audit/v1/audit.grpc.pb.h"

namespace podgate::audit {

class QueryReactor final : public grpc::ServerWriteReactor<podgate::audit::v1::QueryResponse> {
 public:
  QueryReactor(Store* store, Executor* executor, AuditMetrics* metrics,
               const podgate::audit::v1::QueryRequest& request);

  void OnWriteDone(bool ok) override;
  void OnDone() override;

 private:
  // Runs on the executor; the reactor stays alive because it has not finished yet.
  void RunQuery(podgate::audit::v1::QueryRequest request);
  void WriteNext();

  Store* const store_;
  AuditMetrics* const metrics_;
  // Touched by the executor job, then only by the write chain (never concurrently).
  QueryPage page_;
  size_t next_ = 0;
  bool end_written_ = false;
  podgate::audit::v1::QueryResponse message_;
};

}  // namespace podgate::audit
