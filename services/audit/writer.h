// The group-commit writer: one thread drains a bounded queue of events, stores as many as are
// waiting in one transaction (one fsync), then tells each event's stream which ids are durable.
//
// Backpressure: TryEnqueue refuses when the queue is full and calls the given callback once
// room frees, so a stream stops reading instead of buffering. Failure: when a transaction
// fails, every stream with an event in it is told (and must end with UNAVAILABLE; nothing in
// the batch is acked), the writer reloads its chain head and retries later events after a
// back-off, so it recovers by itself when the store returns. While the store is unhealthy and
// no event arrives (readiness is off, so clients go elsewhere), the writer re-checks the store
// on its own every store_recheck_interval with a real write (Store::CheckWritable), so that
// readiness comes back without waiting for an event.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "audit/audit_metrics.h"
#include "audit/store.h"
#include "podgate/common/v1/common.pb.h"

namespace podgate::audit {

// Receives the writer's outcome for the events a stream queued. Called on the writer thread,
// without writer locks held; must not block.
class CommitSink {
 public:
  virtual ~CommitSink() = default;
  // These ids are durable (in commit order).
  virtual void OnCommitted(std::vector<std::string> ids) = 0;
  // A transaction holding some of this sink's events failed; they are not durable.
  virtual void OnFailed(const absl::Status& status) = 0;
};

struct WriterOptions {
  // The chain this writer appends to (one per audit replica).
  std::string chain_id;
  // Events waiting for the writer, at most.
  size_t queue_capacity = 8192;
  // Events per transaction, at most.
  size_t max_batch = 1024;
  // Pause after a failed transaction before the next attempt.
  absl::Duration retry_backoff = absl::Milliseconds(200);
  // Called on the writer thread when the store turns unusable (false, a transaction failed) or
  // usable again (true, the next one or a re-check succeeded): the service's readiness follows
  // it.
  std::function<void(bool healthy)> on_store_health;
  // While the store is unusable, how long after the last failed attempt the writer re-checks
  // it by itself when no event came (Store::CheckWritable after reloading the chain head).
  // Zero: never (readiness then waits for the next event's commit).
  absl::Duration store_recheck_interval = absl::Seconds(5);
  // Called on the writer thread after each committed transaction (the exporter wakes up);
  // must not block.
  std::function<void()> on_commit;
  // Whether Record may accept new events now: OK, or a status naming why not (an export sink
  // in blocking mode lags too far). Called on gRPC threads for each event read; must be cheap.
  std::function<absl::Status()> admission;
  // With signed checkpoints (main sets it with --checkpoint_key): after a failed transaction
  // the head reloaded from the store may be ahead of what this writer committed only by records
  // of its own failed batches (a commit that was durable although it reported an error).
  // Records someone else put into the chain make every later commit fail with DATA_LOSS
  // (errors_total{kind="foreign_records"}) instead of being continued and then signed.
  bool refuse_foreign_records = false;
};

// Told after each successful commit (the live tail reads the new records). Called on the
// writer thread without writer locks held; must return at once.
using CommitListener = std::function<void()>;

class Writer {
 public:
  // Loads the chain head and starts the thread; fails when the store is unreachable.
  static absl::StatusOr<std::unique_ptr<Writer>> Start(Store* store, WriterOptions options,
                                                       AuditMetrics* metrics);
  // Commits what is queued (one last attempt), then stops the thread.
  ~Writer();

  // Queues `event` for `sink`. Returns false when the queue is full; `on_space` is then
  // called once (on the writer thread) when room frees, and the caller retries.
  bool TryEnqueue(const podgate::common::v1::AuditEvent& event, std::shared_ptr<CommitSink> sink,
                  std::function<void()> on_space);

  const std::string& chain_id() const { return options_.chain_id; }

  // WriterOptions::admission's answer (OK when none is set).
  absl::Status Admission() const {
    return options_.admission ? options_.admission() : absl::OkStatus();
  }

  // The chain head as of the last successful commit (or as loaded at start): what the writer
  // itself made durable, the head a signed checkpoint attests. Thread-safe.
  ChainHead committed_head() const {
    absl::MutexLock lock(&head_mu_);
    return committed_head_;
  }
  // Replaces the commit listener (empty: none). Thread-safe; once it returns, the previous
  // listener is not running and is never called again.
  void SetCommitListener(CommitListener listener);

 private:
  struct Item {
    podgate::common::v1::AuditEvent event;
    std::shared_ptr<CommitSink> sink;
  };

  Writer(Store* store, WriterOptions options, AuditMetrics* metrics);
  void Run();
  void CommitBatch(std::vector<Item>& batch);
  // The chain head from the store after a failure (head_valid_ false), checked with
  // CheckReloadedHead when asked to; OK when the head is valid already.
  absl::Status ReloadHeadIfNeeded();
  // The re-check while the store is unusable (WriterOptions::store_recheck_interval).
  void RecheckStore();
  // Reports a change of the store's health to on_store_health.
  void SetStoreHealth(bool healthy);
  // See WriterOptions::refuse_foreign_records.
  absl::Status CheckReloadedHead(const ChainHead& reloaded);
  // CheckReloadedHead's walk of the rows above the committed head.
  absl::Status JudgeReloadedHead(const ChainHead& committed, const ChainHead& reloaded);

  Store* const store_;
  const WriterOptions options_;
  AuditMetrics* const metrics_;
  ChainHead head_;  // only the writer thread touches it after Start
  bool head_valid_ = true;
  bool store_healthy_ = true;
  // When the next re-check is due while the store is unusable (writer thread only).
  absl::Time next_recheck_ = absl::InfiniteFuture();
  // Ids of the batches that failed since the head was last confirmed (writer thread only).
  std::set<std::string> unconfirmed_ids_;
  // The last head CheckReloadedHead refused as foreign, with what it knew then (writer thread
  // only); status OK when none.
  struct Refused {
    ChainHead head;
    size_t unconfirmed = 0;
    absl::Status status;
  };
  Refused refused_;

  mutable absl::Mutex head_mu_;
  ChainHead committed_head_ ABSL_GUARDED_BY(head_mu_);

  absl::Mutex listener_mu_;
  CommitListener listener_ ABSL_GUARDED_BY(listener_mu_);

  absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> space_waiters_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace podgate::audit
