#include "audit/export/exporter.h"

#include <algorithm>
#include <deque>
#include <map>
#include <random>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "audit/chain.h"
#include "runtime/log.h"

namespace podgate::audit::exporting {
namespace {

using podgate::audit::v1::SignedCheckpoint;

// Failure logs per sink: the first at once, then one per interval with the count in between.
constexpr absl::Duration kLogInterval = absl::Seconds(30);

}  // namespace

absl::StatusOr<std::vector<ConfiguredSink>> MakeSinks(std::vector<SinkSettings> settings) {
  std::vector<ConfiguredSink> sinks;
  for (SinkSettings& s : settings) {
    absl::StatusOr<std::unique_ptr<Sink>> sink;
    switch (s.config.kind_case()) {
      case podgate::audit::v1::SinkConfig::kWebhook:
        sink = MakeWebhookSink(s.config);
        break;
      case podgate::audit::v1::SinkConfig::kSyslog:
        sink = MakeSyslogSink(s.config);
        break;
      case podgate::audit::v1::SinkConfig::kFile:
        sink = MakeFileSink(s.config);
        break;
      default:
        sink = absl::InvalidArgumentError(absl::StrCat("sink ", s.name, ": unknown sink type"));
    }
    if (!sink.ok()) {
      return sink.status();
    }
    sinks.push_back(ConfiguredSink{std::move(s), *std::move(sink)});
  }
  return sinks;
}

class Exporter::Runner {
 public:
  Runner(Store* store, ConfiguredSink sink, const ExporterOptions& options, ExportMetrics* metrics)
      : store_(store),
        settings_(std::move(sink.settings)),
        sink_(std::move(sink.sink)),
        options_(options),
        metrics_(metrics->ForSink(settings_.name)),
        rng_(std::random_device{}()) {
    thread_ = std::thread([this] { Run(); });
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        return;
      }
      stopping_ = true;
    }
    sink_->Cancel();
    if (thread_.joinable()) {
      thread_.join();
    }
    if (epoch_ > 0) {
      store_->ReleaseExportLease(settings_.name, options_.owner).IgnoreError();
    }
    metrics_.lease_held->Set(0);
  }

  void Notify() {
    absl::MutexLock lock(&mu_);
    notified_ = true;
  }

  void Publish(const SignedCheckpoint& checkpoint) {
    absl::MutexLock lock(&mu_);
    auto it = checkpoints_.find(checkpoint.chain_id());
    if (it == checkpoints_.end() || it->second.sequence() <= checkpoint.sequence()) {
      checkpoints_[checkpoint.chain_id()] = checkpoint;
    }
    notified_ = true;
  }

  absl::Status Admission() const {
    if (!blocking_.load(std::memory_order_relaxed)) {
      return absl::OkStatus();
    }
    absl::MutexLock lock(&mu_);
    return absl::UnavailableError(blocking_message_);
  }

 private:
  struct Batch {
    std::vector<ExportItem> items;
    int64_t records = 0;
    int64_t checkpoints = 0;
    // The oldest record's store time (0 when the batch holds none): while the batch is stuck,
    // the age of the oldest undelivered record.
    int64_t oldest_us = 0;
    // The cursors after this batch, per chain it touched.
    std::vector<std::pair<std::string, int64_t>> cursors;
  };

  // Waits until notified, stopped or `timeout` passed. Returns false when stopping.
  bool Wait(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](Runner* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(r->mu_) {
                               return r->stopping_ || r->notified_;
                             },
                             this),
                         timeout);
    notified_ = false;
    return !stopping_;
  }

  // Sleeps `timeout` unless stopped (a commit does not cut a back-off short).
  bool Sleep(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), timeout);
    return !stopping_;
  }

  bool stopping() {
    absl::MutexLock lock(&mu_);
    return stopping_;
  }

  void LogFailure(std::string_view what, const absl::Status& status) {
    ++suppressed_;
    const absl::Time now = absl::Now();
    if (now - last_log_ < kLogInterval) {
      return;
    }
    log::Warn(what, {{"sink", settings_.name},
                     {"error", std::string(status.message())},
                     {"failures_since_last_log", suppressed_}});
    last_log_ = now;
    suppressed_ = 0;
  }

  // Takes or renews the lease when due. Returns whether this replica holds it.
  bool RefreshLease() {
    const absl::Time now = absl::Now();
    if (now < renew_at_ && epoch_ > 0) {
      return true;
    }
    absl::StatusOr<ExportLease> lease =
        store_->AcquireExportLease(settings_.name, options_.owner, options_.lease_ttl);
    if (!lease.ok()) {
      LogFailure("audit export lease failed", lease.status());
      // Still ours until it expires; the cursor fence catches a lapse.
      if (epoch_ > 0 && now >= held_until_) {
        epoch_ = 0;
      }
    } else if (lease->held) {
      if (epoch_ == 0) {
        log::Info("audit export lease taken", {{"sink", settings_.name}, {"epoch", lease->epoch}});
      }
      epoch_ = lease->epoch;
      held_until_ = now + options_.lease_ttl;
      renew_at_ = now + options_.lease_ttl / 3;
    } else {
      if (epoch_ > 0) {
        log::Warn("audit export lease lost", {{"sink", settings_.name}, {"holder", lease->owner}});
      }
      epoch_ = 0;
    }
    metrics_.lease_held->Set(epoch_ > 0 ? 1 : 0);
    return epoch_ > 0;
  }

  // The lag and blocking state as the store has them now (while a batch is stuck).
  void UpdateLagFromStore() {
    absl::StatusOr<std::vector<ExportChain>> chains = store_->ListExportChains();
    absl::StatusOr<std::map<std::string, int64_t>> cursors =
        store_->LoadExportCursors(settings_.name);
    if (chains.ok() && cursors.ok()) {
      MoveToDelivered(*cursors);
      UpdateLag(*chains, *cursors);
    }
  }

  // Lag per chain and in total; sets the gauges and the blocking state.
  void UpdateLag(const std::vector<ExportChain>& chains,
                 const std::map<std::string, int64_t>& cursors) {
    int64_t total = 0;
    int64_t worst = 0;
    for (const ExportChain& chain : chains) {
      auto it = cursors.find(chain.chain_id);
      const int64_t delivered =
          std::max(it == cursors.end() ? 0 : it->second, chain.checkpoint_sequence);
      const int64_t lag = std::max<int64_t>(0, chain.head_sequence - delivered);
      total += lag;
      worst = std::max(worst, lag);
    }
    metrics_.lag_records->Set(static_cast<double>(total));
    if (total == 0) {
      metrics_.lag_seconds->Set(0);
    }
    lag_total_ = total;
    const int64_t bound = settings_.blocking_max_lag_records;
    const bool blocking = bound > 0 && worst > bound;
    if (blocking != blocking_.load(std::memory_order_relaxed)) {
      if (blocking) {
        log::Error("audit export blocking Record",
                   {{"sink", settings_.name}, {"lag_records", worst}, {"bound", bound}});
      } else {
        log::Info("audit export caught up, Record accepted again", {{"sink", settings_.name}});
      }
    }
    if (blocking) {
      absl::MutexLock lock(&mu_);
      blocking_message_ =
          absl::StrCat("export sink ", settings_.name, " lags ", worst, " records (bound ", bound,
                       "); audit refuses new records until it catches up");
    }
    blocking_.store(blocking, std::memory_order_relaxed);
    metrics_.blocking->Set(blocking ? 1 : 0);
  }

  // Reads the next batch after the cursors. Chains take turns being first so that one busy
  // chain does not starve the others.
  absl::StatusOr<Batch> ReadBatch(const std::vector<ExportChain>& chains,
                                  const std::map<std::string, int64_t>& cursors) {
    Batch batch;
    std::map<std::string, SignedCheckpoint> pending;
    {
      absl::MutexLock lock(&mu_);
      pending = checkpoints_;
    }
    int remaining = settings_.max_batch;
    int64_t oldest_us = 0;
    const size_t n = chains.size();
    for (size_t k = 0; k < n; ++k) {
      const ExportChain& chain = chains[(first_chain_ + k) % n];
      auto it = cursors.find(chain.chain_id);
      const int64_t start = it == cursors.end() ? 0 : it->second;
      int64_t cursor = start;
      if (remaining > 0 && chain.head_sequence > cursor) {
        absl::StatusOr<std::vector<StoredRow>> rows =
            store_->ReadChainAfter(chain.chain_id, cursor, remaining);
        if (!rows.ok()) {
          return rows.status();
        }
        if (rows->empty() && chain.checkpoint_sequence > cursor) {
          Lost(chain.chain_id, cursor, chain.checkpoint_sequence);
          cursor = chain.checkpoint_sequence;
        }
        for (const StoredRow& row : *rows) {
          if (row.sequence > cursor + 1) {
            Lost(chain.chain_id, cursor, row.sequence - 1);
          }
          cursor = row.sequence;
          absl::StatusOr<podgate::audit::v1::AuditRecord> record = ToRecord(row);
          if (!record.ok()) {
            // A corrupt row cannot be sent as a record; Verify reports it.
            log::Error("audit export skips a record whose event does not parse",
                       {{"sink", settings_.name},
                        {"chain_id", chain.chain_id},
                        {"sequence", row.sequence}});
            metrics_.lost_records->Increment();
            continue;
          }
          if (oldest_us == 0 || row.stored_time_us < oldest_us) {
            oldest_us = row.stored_time_us;
          }
          ExportItem item;
          item.kind = ExportItem::Kind::kRecord;
          item.record = *std::move(record);
          batch.items.push_back(std::move(item));
          ++batch.records;
        }
        remaining -= static_cast<int>(rows->size());
      }
      if (auto cp = pending.find(chain.chain_id);
          cp != pending.end() && cp->second.sequence() <= cursor) {
        ExportItem item;
        item.kind = ExportItem::Kind::kCheckpoint;
        item.checkpoint = cp->second;
        batch.items.push_back(std::move(item));
        ++batch.checkpoints;
      }
      if (cursor != start) {
        batch.cursors.emplace_back(chain.chain_id, cursor);
      }
    }
    first_chain_ = n == 0 ? 0 : (first_chain_ + 1) % n;
    batch.oldest_us = oldest_us;
    SetLagSeconds(batch);
    return batch;
  }

  // The age of the batch's oldest record, when it holds one.
  void SetLagSeconds(const Batch& batch) {
    if (batch.oldest_us > 0) {
      metrics_.lag_seconds->Set(std::max(
          0.0, absl::ToDoubleSeconds(absl::Now() - absl::FromUnixMicros(batch.oldest_us))));
    }
  }

  void Lost(const std::string& chain, int64_t cursor, int64_t through) {
    const int64_t lost = through - cursor;
    metrics_.lost_records->Increment(static_cast<double>(lost));
    log::Error("audit export: retention removed records before the sink received them",
               {{"sink", settings_.name},
                {"chain_id", chain},
                {"from_sequence", cursor + 1},
                {"to_sequence", through},
                {"records", lost}});
  }

  // Delivers until it succeeds, the lease is lost or the exporter stops. Returns whether the
  // batch was delivered.
  bool DeliverWithRetry(const Batch& batch, size_t* bytes) {
    absl::Duration backoff = settings_.initial_backoff;
    for (bool retry = false;; retry = true) {
      if (retry) {
        metrics_.retries->Increment();
      }
      DeliveryResult result = sink_->Deliver(batch.items);
      if (result.status.ok()) {
        *bytes = result.bytes;
        return true;
      }
      metrics_.failures->Increment();
      if (stopping()) {
        return false;
      }
      LogFailure(absl::IsUnavailable(result.status) || absl::IsDeadlineExceeded(result.status)
                     ? "audit export delivery failed; retrying"
                     : "audit export delivery failed (permanent error?); retrying",
                 result.status);
      std::uniform_real_distribution<double> jitter(0.8, 1.2);
      absl::Duration delay = backoff * jitter(rng_);
      delay = std::max(delay, result.retry_after);
      backoff = std::min(backoff * 2, settings_.max_backoff);
      // Renew the lease while waiting so that a long outage does not hand the sink over, and
      // follow the store's lag every poll interval: a long backoff must not let records pass
      // the blocking bound unchecked until it ends.
      const absl::Time until = absl::Now() + delay;
      while (absl::Now() < until) {
        if (!Sleep(
                std::min({until - absl::Now(), options_.lease_ttl / 3, options_.poll_interval}))) {
          return false;
        }
        if (!RefreshLease()) {
          return false;  // another replica delivers from the stored cursor
        }
        if (absl::Now() < until) {
          UpdateLagFromStore();  // the wait's last measurement is the one below
        }
        SetLagSeconds(batch);
      }
      UpdateLagFromStore();
      // The stuck batch's records keep ageing: an outage shows in lag_seconds.
      SetLagSeconds(batch);
    }
  }

  void Run() {
    absl::Time pending_since = absl::InfiniteFuture();
    while (!stopping()) {
      const bool held = RefreshLease();
      absl::StatusOr<std::vector<ExportChain>> chains = store_->ListExportChains();
      absl::StatusOr<std::map<std::string, int64_t>> cursors =
          chains.ok() ? store_->LoadExportCursors(settings_.name)
                      : absl::StatusOr<std::map<std::string, int64_t>>(chains.status());
      if (!cursors.ok()) {
        LogFailure("audit export cannot read the store", cursors.status());
        Sleep(options_.poll_interval);
        continue;
      }
      MoveToDelivered(*cursors);
      UpdateLag(*chains, *cursors);
      if (!held) {
        pending_since = absl::InfiniteFuture();
        Wait(options_.poll_interval);
        continue;
      }
      bool checkpoint_due = false;
      {
        absl::MutexLock lock(&mu_);
        checkpoint_due = !checkpoints_.empty();
      }
      if (lag_total_ == 0 && !checkpoint_due) {
        pending_since = absl::InfiniteFuture();
        Wait(options_.poll_interval);
        continue;
      }
      // A partial batch waits up to max_wait for more records.
      const absl::Time now = absl::Now();
      if (pending_since == absl::InfiniteFuture()) {
        pending_since = now;
      }
      if (lag_total_ < settings_.max_batch && now < pending_since + settings_.max_wait) {
        Wait(std::min(pending_since + settings_.max_wait - now, options_.poll_interval));
        continue;
      }
      absl::StatusOr<Batch> batch = ReadBatch(*chains, *cursors);
      if (!batch.ok()) {
        LogFailure("audit export cannot read records", batch.status());
        Sleep(options_.poll_interval);
        continue;
      }
      if (batch->items.empty() && batch->cursors.empty()) {
        // Only checkpoints ahead of their chain's cursor are pending.
        pending_since = absl::InfiniteFuture();
        Wait(options_.poll_interval);
        continue;
      }
      size_t bytes = 0;
      if (!batch->items.empty() && !DeliverWithRetry(*batch, &bytes)) {
        continue;
      }
      metrics_.delivered_records->Increment(static_cast<double>(batch->records));
      metrics_.delivered_checkpoints->Increment(static_cast<double>(batch->checkpoints));
      if (batch->checkpoints > 0) {
        absl::MutexLock lock(&mu_);
        for (const ExportItem& item : batch->items) {
          if (item.kind != ExportItem::Kind::kCheckpoint) {
            continue;
          }
          auto it = checkpoints_.find(item.checkpoint.chain_id());
          if (it != checkpoints_.end() && it->second.sequence() == item.checkpoint.sequence()) {
            checkpoints_.erase(it);
          }
        }
      }
      pending_since =
          lag_total_ > batch->records ? absl::Now() - settings_.max_wait : absl::InfiniteFuture();
      if (batch->cursors.empty()) {
        continue;
      }
      const size_t window = sink_->UnconfirmedWindowBytes();
      if (window == 0) {
        StoreCursors(batch->cursors);
        continue;
      }
      // The receiver may not have read this batch yet: it only moves the cursors in memory. The
      // stored ones follow once a window's worth of newer batches went out (each whole batch
      // outside the window), so that a restart re-sends at least what the sink would re-send.
      for (const auto& [chain, sequence] : batch->cursors) {
        delivered_[chain] = sequence;
      }
      unconfirmed_bytes_ += bytes;
      unconfirmed_.push_back(Unconfirmed{batch->cursors, bytes});
      std::map<std::string, int64_t> confirmed;
      while (!unconfirmed_.empty() && unconfirmed_bytes_ - unconfirmed_.front().bytes >= window) {
        for (const auto& [chain, sequence] : unconfirmed_.front().cursors) {
          confirmed[chain] = sequence;  // later batches end later in each chain
        }
        unconfirmed_bytes_ -= unconfirmed_.front().bytes;
        unconfirmed_.pop_front();
      }
      if (!confirmed.empty()) {
        StoreCursors({confirmed.begin(), confirmed.end()});
      }
    }
  }

  // Moves the stored `cursors` forward to what this replica delivered under its current lease
  // (sinks with an unconfirmed window store them later). Forgets that once the lease is gone:
  // whoever holds it next starts from the stored cursors.
  void MoveToDelivered(std::map<std::string, int64_t>& cursors) {
    if (epoch_ == 0 || epoch_ != delivered_epoch_) {
      delivered_.clear();
      unconfirmed_.clear();
      unconfirmed_bytes_ = 0;
      delivered_epoch_ = epoch_;
      return;
    }
    for (const auto& [chain, sequence] : delivered_) {
      int64_t& cursor = cursors[chain];
      cursor = std::max(cursor, sequence);
    }
  }

  void StoreCursors(const std::vector<std::pair<std::string, int64_t>>& cursors) {
    absl::Status advanced =
        store_->AdvanceExportCursors(settings_.name, options_.owner, epoch_, cursors);
    if (absl::IsFailedPrecondition(advanced)) {
      log::Warn(
          "audit export lease lost before the cursor moved; the batch will be delivered again",
          {{"sink", settings_.name}});
      epoch_ = 0;
      renew_at_ = absl::InfinitePast();
      metrics_.lease_held->Set(0);
    } else if (!advanced.ok()) {
      LogFailure("audit export cannot store the cursor; the batch will be delivered again",
                 advanced);
      Sleep(options_.poll_interval);
    }
  }

  // A delivered batch whose cursors are not stored yet (sinks with an unconfirmed window).
  struct Unconfirmed {
    std::vector<std::pair<std::string, int64_t>> cursors;
    size_t bytes = 0;
  };

  Store* const store_;
  const SinkSettings settings_;
  const std::unique_ptr<Sink> sink_;
  const ExporterOptions options_;
  const SinkMetrics metrics_;

  // Only the runner's thread touches these.
  std::mt19937_64 rng_;
  int64_t epoch_ = 0;  // 0: not held
  absl::Time renew_at_ = absl::InfinitePast();
  absl::Time held_until_ = absl::InfinitePast();
  absl::Time last_log_ = absl::InfinitePast();
  int64_t suppressed_ = 0;
  int64_t lag_total_ = 0;
  size_t first_chain_ = 0;
  // What was delivered beyond the stored cursors, under lease epoch delivered_epoch_.
  int64_t delivered_epoch_ = 0;
  std::map<std::string, int64_t> delivered_;
  std::deque<Unconfirmed> unconfirmed_;
  size_t unconfirmed_bytes_ = 0;

  std::atomic<bool> blocking_{false};
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
  std::string blocking_message_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, SignedCheckpoint> checkpoints_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

Exporter::Exporter(Store* store, std::vector<ConfiguredSink> sinks, ExporterOptions options,
                   ExportMetrics* metrics) {
  for (ConfiguredSink& sink : sinks) {
    runners_.push_back(std::make_unique<Runner>(store, std::move(sink), options, metrics));
  }
}

Exporter::~Exporter() { Stop(); }

void Exporter::Stop() {
  for (auto& runner : runners_) {
    runner->Stop();
  }
}

void Exporter::NotifyCommit() {
  for (auto& runner : runners_) {
    runner->Notify();
  }
}

void Exporter::PublishCheckpoint(const SignedCheckpoint& checkpoint) {
  for (auto& runner : runners_) {
    runner->Publish(checkpoint);
  }
}

absl::Status Exporter::Admission() const {
  for (const auto& runner : runners_) {
    if (absl::Status s = runner->Admission(); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace podgate::audit::exporting
