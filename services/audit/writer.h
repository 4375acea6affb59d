// The group-commit writer: one thread (the committer) drains a bounded queue of events and
// stores as many as are waiting in one transaction; a second thread (the syncer) makes the
// committed transactions durable (Store::Sync: one fsync for every transaction committed since
// the last) and only then tells each event's stream which ids are durable. So the next batch is
// written while the previous one is being synced and acked, and a store whose commit is already
// durable (PostgreSQL) still has its acks sent beside the next transaction.
//
// Backpressure: TryEnqueue refuses when the queue is full and calls the given callback once
// room frees, so a stream stops reading instead of buffering. Failure: when a transaction
// fails, every stream with an event in it is told (and must end with UNAVAILABLE; nothing in
// the batch is acked), the writer reloads its chain head and retries later events after a
// back-off, so it recovers by itself when the store returns. While the store is unhealthy and
// no event arrives (readiness is off, so clients go elsewhere), the committer re-checks the
// store on its own every store_recheck_interval with a real write and a sync
// (Store::CheckWritable, Store::Sync), so that readiness comes back without waiting for an
// event.
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

// Receives the writer's outcome for the events a stream queued. Called on a writer thread,
// without writer locks held; must not block.
class CommitSink {
 public:
  virtual ~CommitSink() = default;
  // These ids are durable (in commit order).
  virtual void OnCommitted(std::vector<std::string> ids) = 0;
  // A transaction holding some of this sink's events failed; they are not durable.
  virtual void OnFailed(const absl::Status& status) = 0;
  // Called once after TryEnqueue refused one of this sink's events (the queue was full), when
  // room frees: the stream retries.
  virtual void OnSpace() {}
};

struct WriterOptions {
  // The chain this writer appends to (one per audit replica).
  std::string chain_id;
  // Events waiting for the writer, at most; as many again may be committed and waiting for
  // their sync.
  size_t queue_capacity = 8192;
  // Events per transaction, at most.
  size_t max_batch = 1024;
  // Pause after a failed transaction before the next attempt.
  absl::Duration retry_backoff = absl::Milliseconds(200);
  // Called on a writer thread when the store turns unusable (false, a transaction or its sync
  // failed) or usable again (true, the next sync succeeded): the service's readiness follows
  // it.
  std::function<void(bool healthy)> on_store_health;
  // While the store is unusable, how long after the last failed attempt the writer re-checks
  // it by itself when no event came (Store::CheckWritable and Store::Sync after reloading the
  // chain head). Zero: never (readiness then waits for the next event's commit).
  absl::Duration store_recheck_interval = absl::Seconds(5);
  // Called on the syncer thread after each batch made durable (the exporter wakes up);
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

// Told after each batch made durable (the live tail reads the new records). Called on the
// syncer thread without writer locks held; must return at once.
using CommitListener = std::function<void()>;

class Writer {
 public:
  // Loads the chain head and starts the thread; fails when the store is unreachable.
  static absl::StatusOr<std::unique_ptr<Writer>> Start(Store* store, WriterOptions options,
                                                       AuditMetrics* metrics);
  // Commits what is queued (one last attempt), then stops the thread.
  ~Writer();

  // Queues `*event` for `sink`, moving it into the queue (no copy: `*event` is left empty).
  // Returns false when the queue is full, leaving `*event` as it was; `sink->OnSpace()` is then
  // called once (on the committer thread) when room frees, and the caller retries.
  bool TryEnqueue(podgate::common::v1::AuditEvent* event, const std::shared_ptr<CommitSink>& sink);
  // Queues events[0..n) in order under one lock, as many as there is room for, and returns how
  // many it took (moved out of `events`). When it took fewer than n, `sink->OnSpace()` is
  // called once when room frees, as after a refused TryEnqueue.
  size_t TryEnqueueMany(podgate::common::v1::AuditEvent* events, size_t n,
                        const std::shared_ptr<CommitSink>& sink);

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
    absl::Time queued;  // its entry into the queue
  };
  // A batch the store committed, waiting for the sync that makes it durable.
  struct Committed {
    std::vector<Item> items;
    ChainHead head;      // the chain head after it
    int64_t stored = 0;  // records it added (resent ids are acked but not stored again)
    absl::Time start;
    absl::Time committed;  // the transaction's end, before its sync
  };

  Writer(Store* store, WriterOptions options, AuditMetrics* metrics);
  void Run();
  void RunSyncer();
  void CommitBatch(std::vector<Item>& batch);
  // Tells each stream of `items` once that its events are not durable.
  static void FailItems(std::vector<Item>& items, const absl::Status& status);
  // Acks a durable batch, whose sync started at `sync_start`.
  void Acknowledge(Committed& batch, absl::Time sync_start);
  // Calls on_store_health when the store's state changed (either thread).
  void SetHealthy(bool healthy);
  bool Healthy();
  // After a failed sync (sync_failed_): waits until the syncer settled every batch committed
  // before it, then marks the head for reloading and keeps the failed batches' ids.
  void SettleSyncFailureLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The chain head from the store after a failure (head_valid_ false), checked with
  // CheckReloadedHead when asked to; OK when the head is valid already.
  absl::Status ReloadHeadIfNeeded();
  // The re-check while the store is unusable (WriterOptions::store_recheck_interval).
  void RecheckStore();
  // See WriterOptions::refuse_foreign_records.
  absl::Status CheckReloadedHead(const ChainHead& reloaded);
  // CheckReloadedHead's walk of the rows above the committed head.
  absl::Status JudgeReloadedHead(const ChainHead& committed, const ChainHead& reloaded);

  Store* const store_;
  const WriterOptions options_;
  AuditMetrics* const metrics_;
  ChainHead head_;  // only the committer touches it after Start
  bool head_valid_ = true;
  absl::Mutex health_mu_;
  bool store_healthy_ ABSL_GUARDED_BY(health_mu_) = true;
  // When the next re-check is due while the store is unusable (committer only).
  absl::Time next_recheck_ = absl::InfiniteFuture();
  // Ids of the batches that failed since the head was last confirmed (committer only).
  std::set<std::string> unconfirmed_ids_;
  // The last head CheckReloadedHead refused as foreign, with what it knew then (committer
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
  std::vector<std::shared_ptr<CommitSink>> space_waiters_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Committed batches waiting for the syncer, oldest first, and their events.
  std::deque<Committed> unsynced_ ABSL_GUARDED_BY(mu_);
  size_t unsynced_events_ ABSL_GUARDED_BY(mu_) = 0;
  // The syncer holds batches taken from unsynced_.
  bool syncing_ ABSL_GUARDED_BY(mu_) = false;
  // A sync failed: the committer reloads the chain head once the syncer is idle. The ids of
  // the failed batches go to failed_ids_ (see refuse_foreign_records).
  bool sync_failed_ ABSL_GUARDED_BY(mu_) = false;
  // The committer waits with a re-check deadline. While it waits without one, a failed sync
  // wakes it so that the failure starts the re-checks even if no event follows.
  bool committer_rechecking_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> failed_ids_ ABSL_GUARDED_BY(mu_);
  bool committer_done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
  std::thread syncer_;
};

}  // namespace podgate::audit
