// The exporter: delivers every stored record to every configured sink at least once, in chain
// order per chain, from a durable cursor per (sink, chain) in the store.
//
// One thread per sink, one batch in flight per sink (memory stays bounded by max_batch). Each
// thread wakes when the local writer commits (NotifyCommit) and polls for other replicas'
// chains. A batch is read after the cursors, delivered, and only then the cursors move: a crash
// between delivery and cursor update delivers the batch again (duplicates only around failures).
// A sink with an unconfirmed window (syslog: acknowledged is not yet read) moves the cursor in
// memory only; the stored cursor follows a window's worth of batches behind, so the next process
// or replica re-sends what the receiver may not have read.
// Records that retention removed before delivery are skipped (counted and logged).
//
// Several replicas on one PostgreSQL: a sink is exported by the replica holding its lease (owner,
// epoch, expiry in the database); cursor updates are fenced by the lease in the same
// transaction, so a replica that lost the lease cannot move the cursor.
//
// Blocking mode: a sink with blocking_max_lag_records > 0 that lags more records than that
// behind a chain head makes Admission() refuse, which Record answers with UNAVAILABLE.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "audit/audit_metrics.h"
#include "audit/export/config.h"
#include "audit/export/sink.h"
#include "audit/store.h"

namespace podgate::audit::exporting {

struct ExporterOptions {
  // This replica's name in the lease table (its chain id).
  std::string owner;
  // How long a lease lasts without renewal; renewed every third of it.
  absl::Duration lease_ttl = absl::Seconds(15);
  // How often a sink looks for records without a local commit (other replicas' chains, lag).
  absl::Duration poll_interval = absl::Milliseconds(500);
};

// A configured sink and its destination.
struct ConfiguredSink {
  SinkSettings settings;
  std::unique_ptr<Sink> sink;
};

// Builds each sink with its kind's factory; fails naming the first sink that cannot be built.
absl::StatusOr<std::vector<ConfiguredSink>> MakeSinks(std::vector<SinkSettings> settings);

class Exporter {
 public:
  // Starts one thread per sink. `store` and `metrics` must outlive the exporter.
  Exporter(Store* store, std::vector<ConfiguredSink> sinks, ExporterOptions options,
           ExportMetrics* metrics);
  // Stop().
  ~Exporter();

  // Cancels deliveries in progress, releases the leases and joins the threads. Idempotent.
  void Stop();

  // The local writer committed: sinks look for new records now. Never blocks.
  void NotifyCommit();

  // Delivers `checkpoint` to every sink after the chain's records up to its sequence. Only the
  // newest pending checkpoint per chain is kept.
  void PublishCheckpoint(const podgate::audit::v1::SignedCheckpoint& checkpoint);

  // OK, or UNAVAILABLE naming a blocking sink and its lag.
  absl::Status Admission() const;

 private:
  class Runner;
  std::vector<std::unique_ptr<Runner>> runners_;
};

}  // namespace podgate::audit::exporting
