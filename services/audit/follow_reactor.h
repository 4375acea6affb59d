// The server side of one AuditService.Query stream with `follow` set (the live tail).
//
// Like `tail -f`: first the last page_size matching records already stored (oldest first),
// then one `page_end` (empty token) marking "caught up", then each matching record as it is
// committed, in commit order per chain, until the client cancels (CANCELLED) or the server
// drains (UNAVAILABLE). One write in flight; records waiting for the client are bounded by the
// hub's queue_records: a follower that cannot keep up is ended with RESOURCE_EXHAUSTED and
// the writer is never slowed down.
#pragma once

#include <deque>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "audit/audit_metrics.h"
#include "audit/executor.h"
#include "audit/follow_hub.h"
#include "audit/store.h"
#include "grpcpp/grpcpp.h"
#include "podgate/audit/v1/audit.grpc.pb.h"

namespace podgate::audit {

// Checks what only a follow rejects: a page token, newest_first, end_time.
absl::Status ValidateFollow(const podgate::audit::v1::QueryRequest& request);

class FollowReactor final : public grpc::ServerWriteReactor<podgate::audit::v1::QueryResponse>,
                            public Follower {
 public:
  FollowReactor(FollowHub* hub, Store* store, Executor* executor, AuditMetrics* metrics,
                const podgate::audit::v1::QueryRequest& request);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  const podgate::audit::v1::QueryRequest& filter() const override { return request_; }
  void Deliver(const podgate::audit::v1::AuditRecord& record) override;
  void EndForDrain() override;

 private:
  // Runs on the executor: registers with the hub, then reads the backlog.
  void Start();
  // Finishes now, or once the write in flight (or the start) is done.
  void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  FollowHub* const hub_;
  Store* const store_;
  AuditMetrics* const metrics_;
  const podgate::audit::v1::QueryRequest request_;
  bool reserved_ = false;
  bool registered_ = false;  // set by Start before it lets writes begin

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> pending_finish_ ABSL_GUARDED_BY(mu_);
  // The backlog and the page_end marker, written first.
  std::deque<podgate::audit::v1::QueryResponse> backlog_ ABSL_GUARDED_BY(mu_);
  // New records, at most the hub's queue_records.
  std::deque<podgate::audit::v1::AuditRecord> live_ ABSL_GUARDED_BY(mu_);
  podgate::audit::v1::QueryResponse message_ ABSL_GUARDED_BY(mu_);
};

}  // namespace podgate::audit
