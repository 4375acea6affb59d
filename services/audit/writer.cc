#include "audit/writer.h"

#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/log.h"

namespace podgate::audit {
namespace {

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

std::string ErrorKind(const absl::Status& status) {
  if (absl::IsUnavailable(status)) {
    return "store_unavailable";
  }
  if (absl::IsAborted(status)) {
    return "store_conflict";
  }
  return "store_other";
}

constexpr size_t kMaxUnconfirmedIds = 100000;

}  // namespace

absl::StatusOr<std::unique_ptr<Writer>> Writer::Start(Store* store, WriterOptions options,
                                                      AuditMetrics* metrics) {
  if (options.chain_id.empty()) {
    return absl::InvalidArgumentError("chain id is empty");
  }
  if (options.queue_capacity == 0 || options.max_batch == 0) {
    return absl::InvalidArgumentError("queue capacity and batch size must be at least 1");
  }
  if (options.store_recheck_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("store re-check interval must not be negative");
  }
  std::unique_ptr<Writer> writer(new Writer(store, std::move(options), metrics));
  absl::StatusOr<ChainHead> head = store->LoadHead(writer->options_.chain_id);
  if (!head.ok()) {
    return head.status();
  }
  writer->head_ = *std::move(head);
  {
    absl::MutexLock lock(&writer->head_mu_);
    writer->committed_head_ = writer->head_;
  }
  writer->thread_ = std::thread([w = writer.get()] { w->Run(); });
  writer->syncer_ = std::thread([w = writer.get()] { w->RunSyncer(); });
  return writer;
}

Writer::Writer(Store* store, WriterOptions options, AuditMetrics* metrics)
    : store_(store), options_(std::move(options)), metrics_(metrics) {}

Writer::~Writer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) {
    thread_.join();
  }
  {
    absl::MutexLock lock(&mu_);
    committer_done_ = true;
  }
  if (syncer_.joinable()) {
    syncer_.join();
  }
}

bool Writer::TryEnqueue(podgate::common::v1::AuditEvent* event,
                        const std::shared_ptr<CommitSink>& sink) {
  return TryEnqueueMany(event, 1, sink) == 1;
}

size_t Writer::TryEnqueueMany(podgate::common::v1::AuditEvent* events, size_t n,
                              const std::shared_ptr<CommitSink>& sink) {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  size_t taken = 0;
  while (taken < n && queue_.size() < options_.queue_capacity) {
    Item& item = queue_.emplace_back();
    item.sink = sink;
    item.queued = now;
    item.event.Swap(&events[taken]);
    ++taken;
  }
  if (taken < n) {
    space_waiters_.push_back(sink);
  }
  metrics_->queue_depth().Set(static_cast<double>(queue_.size()));
  return taken;
}

void Writer::SetCommitListener(CommitListener listener) {
  absl::MutexLock lock(&listener_mu_);
  listener_ = std::move(listener);
}

void Writer::Run() {
  while (true) {
    std::vector<Item> batch;
    std::vector<std::shared_ptr<CommitSink>> waiters;
    // next_recheck_ belongs to this thread; the health may change on the syncer's.
    const bool rechecking = !Healthy() && options_.store_recheck_interval > absl::ZeroDuration();
    if (rechecking && next_recheck_ == absl::InfiniteFuture()) {
      next_recheck_ = absl::Now() + options_.store_recheck_interval;  // a sync failed
    }
    {
      absl::MutexLock lock(&mu_);
      // Room for another batch beside those waiting for their sync (bounded memory: a slow
      // sync holds the committer, the queue fills and the streams stop being read).
      // A sync failing while the committer waits without a re-check deadline wakes it: the
      // loop starts over and waits with one (the syncer marks the store unhealthy first).
      committer_rechecking_ = rechecking;
      const absl::Condition work(
          +[](Writer* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
            return w->stopping_ ||
                   (!w->queue_.empty() && w->unsynced_events_ < w->options_.queue_capacity) ||
                   (w->sync_failed_ && !w->committer_rechecking_ &&
                    w->options_.store_recheck_interval > absl::ZeroDuration());
          },
          this);
      if (rechecking && !mu_.AwaitWithDeadline(work, next_recheck_)) {
        // Nothing came before the re-check was due: it runs below, without the queue's lock.
      } else {
        mu_.Await(work);
        if (queue_.empty()) {
          if (!stopping_) {
            continue;  // woken by a failed sync: wait again, now with a re-check deadline
          }
          return;  // stopping, nothing left
        }
        // Stopping with a sync backlog: the syncer still finishes it.
        mu_.Await(absl::Condition(
            +[](Writer* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
              return w->unsynced_events_ < w->options_.queue_capacity;
            },
            this));
        SettleSyncFailureLocked();
        const size_t n = std::min(queue_.size(), options_.max_batch);
        batch.reserve(n);
        for (size_t i = 0; i < n; ++i) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        metrics_->queue_depth().Set(static_cast<double>(queue_.size()));
        waiters.swap(space_waiters_);
      }
    }
    if (batch.empty()) {
      {
        absl::MutexLock lock(&mu_);
        SettleSyncFailureLocked();
      }
      RecheckStore();
      continue;
    }
    for (auto& waiter : waiters) {
      waiter->OnSpace();
    }
    CommitBatch(batch);
  }
}

void Writer::SettleSyncFailureLocked() {
  if (!sync_failed_) {
    return;
  }
  // Reload the head only once every batch committed before the failure was settled.
  mu_.Await(absl::Condition(
      +[](Writer* w)
           ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) { return w->unsynced_.empty() && !w->syncing_; },
      this));
  sync_failed_ = false;
  head_valid_ = false;
  for (std::string& id : failed_ids_) {
    if (options_.refuse_foreign_records && unconfirmed_ids_.size() < kMaxUnconfirmedIds) {
      unconfirmed_ids_.insert(std::move(id));
    }
  }
  failed_ids_.clear();
}

absl::Status Writer::ReloadHeadIfNeeded() {
  if (head_valid_) {
    return absl::OkStatus();
  }
  // After a failure the store may hold more or less than we believed; ask it.
  absl::StatusOr<ChainHead> head = store_->LoadHead(options_.chain_id);
  absl::Status status = head.status();
  if (head.ok() && options_.refuse_foreign_records) {
    status = CheckReloadedHead(*head);
  }
  if (status.ok()) {
    head_ = *std::move(head);
    head_valid_ = true;
    unconfirmed_ids_.clear();
  }
  return status;
}

void Writer::RecheckStore() {
  // The head first: a chain changed behind the writer's back fails every commit, so the store
  // is not usable although it takes writes.
  absl::Status status = ReloadHeadIfNeeded();
  if (status.ok()) {
    status = store_->CheckWritable(options_.chain_id);
  }
  if (status.ok()) {
    status = store_->Sync();  // after a failed sync, the sync is what must work again
  }
  metrics_->store_rechecks(status.ok() ? "ok" : "failed").Increment();
  if (!status.ok()) {
    next_recheck_ = absl::Now() + options_.store_recheck_interval;
    log::Warn("audit store re-check failed", {{"error", std::string(status.message())}});
    return;
  }
  next_recheck_ = absl::InfiniteFuture();
  log::Info("audit store writable again", {{"chain_id", options_.chain_id}});
  SetHealthy(true);
}

bool Writer::Healthy() {
  absl::MutexLock lock(&health_mu_);
  return store_healthy_;
}

void Writer::SetHealthy(bool healthy) {
  absl::MutexLock lock(&health_mu_);
  if (healthy != store_healthy_) {
    store_healthy_ = healthy;
    if (options_.on_store_health) {
      options_.on_store_health(healthy);
    }
  }
}

void Writer::FailItems(std::vector<Item>& items, const absl::Status& status) {
  std::vector<CommitSink*> told;
  for (Item& item : items) {
    if (std::find(told.begin(), told.end(), item.sink.get()) == told.end()) {
      told.push_back(item.sink.get());
      item.sink->OnFailed(status);
    }
  }
}

void Writer::CommitBatch(std::vector<Item>& batch) {
  absl::Status status = ReloadHeadIfNeeded();
  const int64_t before = head_.sequence;
  const absl::Time start = absl::Now();
  if (status.ok()) {
    std::vector<const podgate::common::v1::AuditEvent*> events;
    events.reserve(batch.size());
    for (const Item& item : batch) {
      events.push_back(&item.event);
    }
    status = store_->AppendUnsynced(&head_, events, NowMicros());
  }
  if (!status.ok()) {
    SetHealthy(false);
    head_valid_ = false;
    next_recheck_ = absl::Now() + options_.store_recheck_interval;
    // Bounded: a writer failing for long only remembers the latest batches' ids.
    if (options_.refuse_foreign_records && unconfirmed_ids_.size() < kMaxUnconfirmedIds) {
      for (const Item& item : batch) {
        unconfirmed_ids_.insert(item.event.id());
      }
    }
    metrics_->Error(absl::IsDataLoss(status) ? "foreign_records" : ErrorKind(status)).Increment();
    log::Warn("audit commit failed", {{"error", std::string(status.message())},
                                      {"events", static_cast<int64_t>(batch.size())}});
    FailItems(batch, status);
    absl::MutexLock lock(&mu_);
    // Wait out the back-off unless shutting down.
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.retry_backoff);
    return;
  }
  Committed committed;
  committed.items = std::move(batch);
  committed.head = head_;
  committed.stored = head_.sequence - before;
  committed.start = start;
  committed.committed = absl::Now();
  absl::MutexLock lock(&mu_);
  unsynced_events_ += committed.items.size();
  unsynced_.push_back(std::move(committed));
}

void Writer::RunSyncer() {
  while (true) {
    std::deque<Committed> batches;
    bool earlier_failure = false;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Writer* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
            return w->committer_done_ || !w->unsynced_.empty();
          },
          this));
      if (unsynced_.empty()) {
        return;  // the committer stopped and everything is settled
      }
      batches.swap(unsynced_);
      syncing_ = true;
      earlier_failure = sync_failed_;
    }
    // One sync for every batch committed so far. After a failed sync, batches committed before
    // the committer reloaded the head are failed too: they may build on records that are not
    // durable.
    const absl::Time sync_start = absl::Now();
    const absl::Status status =
        earlier_failure ? absl::UnavailableError("an earlier sync of the audit store failed")
                        : store_->Sync();
    size_t events = 0;
    if (status.ok()) {
      SetHealthy(true);
      for (Committed& batch : batches) {
        events += batch.items.size();
        Acknowledge(batch, sync_start);
      }
    } else {
      SetHealthy(false);
      metrics_->Error(ErrorKind(status)).Increment();
      log::Warn("audit sync failed", {{"error", std::string(status.message())},
                                      {"batches", static_cast<int64_t>(batches.size())}});
      std::vector<std::string> ids;
      for (Committed& batch : batches) {
        events += batch.items.size();
        if (options_.refuse_foreign_records) {
          for (const Item& item : batch.items) {
            ids.push_back(item.event.id());
          }
        }
        FailItems(batch.items, status);
      }
      absl::MutexLock lock(&mu_);
      sync_failed_ = true;
      for (std::string& id : ids) {
        if (failed_ids_.size() < kMaxUnconfirmedIds) {
          failed_ids_.push_back(std::move(id));
        }
      }
    }
    absl::MutexLock lock(&mu_);
    unsynced_events_ -= events;
    syncing_ = false;
  }
}

void Writer::Acknowledge(Committed& batch, absl::Time sync_start) {
  const absl::Time durable = absl::Now();
  metrics_->commit_latency().Observe(absl::ToDoubleSeconds(durable - batch.start));
  // The batch's oldest event (the queue is in arrival order) is the one that waited longest.
  const absl::Time queued = batch.items.front().queued;
  metrics_->ack_latency(AuditMetrics::AckStage::kQueued)
      .Observe(absl::ToDoubleSeconds(batch.start - queued));
  metrics_->ack_latency(AuditMetrics::AckStage::kCommit)
      .Observe(absl::ToDoubleSeconds(batch.committed - batch.start));
  metrics_->ack_latency(AuditMetrics::AckStage::kSyncWait)
      .Observe(absl::ToDoubleSeconds(sync_start - batch.committed));
  metrics_->ack_latency(AuditMetrics::AckStage::kSync)
      .Observe(absl::ToDoubleSeconds(durable - sync_start));
  metrics_->ack_latency(AuditMetrics::AckStage::kTotal)
      .Observe(absl::ToDoubleSeconds(durable - queued));
  metrics_->batch_size().Observe(static_cast<double>(batch.items.size()));
  metrics_->events_stored().Increment(static_cast<double>(batch.stored));
  {
    absl::MutexLock lock(&head_mu_);
    committed_head_ = batch.head;
  }
  // Group the acks per stream, keeping commit order (a map: a batch may hold events of
  // hundreds of streams).
  std::vector<std::pair<CommitSink*, std::vector<std::string>>> acks;
  std::unordered_map<CommitSink*, size_t> ack_index;
  for (Item& item : batch.items) {
    auto [it, added] = ack_index.try_emplace(item.sink.get(), acks.size());
    if (added) {
      acks.emplace_back(item.sink.get(), std::vector<std::string>{});
    }
    acks[it->second].second.push_back(std::move(*item.event.mutable_id()));
  }
  metrics_->events_acked().Increment(static_cast<double>(batch.items.size()));
  for (auto& [sink, ids] : acks) {
    sink->OnCommitted(std::move(ids));
  }
  if (options_.on_commit) {
    options_.on_commit();
  }
  {
    absl::MutexLock lock(&listener_mu_);
    if (listener_) {
      listener_();
    }
  }
}

absl::Status Writer::CheckReloadedHead(const ChainHead& reloaded) {
  const ChainHead committed = committed_head();
  if (reloaded.sequence == committed.sequence && reloaded.hash == committed.hash) {
    return absl::OkStatus();
  }
  // The same head refused before (every later batch and re-check reloads it): the same rows,
  // so the same verdict, without walking the chain and logging it again.
  if (!refused_.status.ok() && reloaded.sequence == refused_.head.sequence &&
      reloaded.hash == refused_.head.hash && unconfirmed_ids_.size() == refused_.unconfirmed) {
    return refused_.status;
  }
  absl::Status verdict = JudgeReloadedHead(committed, reloaded);
  if (absl::IsDataLoss(verdict)) {
    refused_ = Refused{reloaded, unconfirmed_ids_.size(), verdict};
  }
  return verdict;
}

absl::Status Writer::JudgeReloadedHead(const ChainHead& committed, const ChainHead& reloaded) {
  auto foreign = [&](const std::string& what) {
    const std::string message =
        absl::StrCat("chain ", options_.chain_id, ": ", what, " (this writer committed up to ",
                     committed.sequence,
                     "): the database was changed behind audit's back; not continuing the chain");
    log::Error("audit chain changed behind the writer", {{"error", message}});
    return absl::DataLossError(message);
  };
  if (reloaded.sequence <= committed.sequence) {
    return foreign(absl::StrCat("the database's head is now at sequence ", reloaded.sequence));
  }
  // Rare (only after a failed commit whose outcome was unknown): walking the chain from its
  // start is acceptable here.
  std::string expected_previous = committed.hash;
  std::string problem;
  absl::Status scan = store_->ScanChain(options_.chain_id, [&](const StoredRow& row) {
    if (row.sequence <= committed.sequence) {
      return true;
    }
    if (row.previous_hash != expected_previous) {
      problem = absl::StrCat("record ", row.sequence, " does not link to the committed head");
      return false;
    }
    if (unconfirmed_ids_.count(row.event_id) == 0) {
      problem = absl::StrCat("record ", row.sequence, " (event ", row.event_id,
                             ") was not written by this writer");
      return false;
    }
    expected_previous = row.hash;
    return true;
  });
  if (!scan.ok()) {
    return scan;
  }
  return problem.empty() ? absl::OkStatus() : foreign(problem);
}

}  // namespace podgate::audit
