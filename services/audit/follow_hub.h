// The live tail's source of new records: one thread reads what every chain committed after a
// per-chain cursor and hands each row to the following Query streams whose filter it matches.
//
// Why per-chain cursors: a chain has exactly one writer, which commits one transaction at a
// time, so a chain's sequences become visible in order. Row ids do not (on PostgreSQL a
// BIGSERIAL id is taken before commit, so a smaller id can commit after a larger one is seen);
// a cursor on ids could skip rows.
//
// When: the local Writer calls Notify after each commit (never blocking the writer thread), and
// the hub also polls every poll_interval for the chains of other replicas sharing a PostgreSQL
// store. New chains are looked for every chain_discovery_interval. With no follower the hub
// reads nothing and forgets its cursors; the first follower sets them to the chains' heads.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "audit/audit_metrics.h"
#include "audit/store.h"
#include "podgate/audit/v1/audit.pb.h"

namespace podgate::audit {

// Whether a stored row matches a (validated) request's filters, exactly as BuildQuery's WHERE
// clause would select it (page_token aside).
bool RowMatches(const podgate::audit::v1::QueryRequest& request, const StoredRow& row);

// A following stream as the hub sees it.
class Follower {
 public:
  virtual ~Follower() = default;
  virtual const podgate::audit::v1::QueryRequest& filter() const = 0;
  // A new matching record, in commit order per chain. Called on the hub thread with the
  // hub's lock held: must not block nor call the hub.
  virtual void Deliver(const podgate::audit::v1::AuditRecord& record) = 0;
  // The server drains: end the stream (UNAVAILABLE). Same calling rules as Deliver.
  virtual void EndForDrain() = 0;
};

struct FollowOptions {
  // Followers at once, at most; more are refused with RESOURCE_EXHAUSTED.
  size_t max_followers = 256;
  // Records waiting to be written to one follower, at most; a follower with more is ended
  // with RESOURCE_EXHAUSTED (it cannot keep up).
  size_t queue_records = 1024;
  // How often the store is read when no local commit woke the hub (other replicas' chains).
  absl::Duration poll_interval = absl::Seconds(1);
  // How often the hub looks for chains it does not know yet.
  absl::Duration chain_discovery_interval = absl::Seconds(10);
};

// Per-chain cursors: the last sequence handed to followers.
using ChainCursors = std::map<std::string, int64_t>;

class FollowHub {
 public:
  // `local_chain_id`: this replica's chain (always known without discovery). `store` and
  // `metrics` must outlive the hub.
  FollowHub(Store* store, AuditMetrics* metrics, std::string local_chain_id, FollowOptions options);
  ~FollowHub();

  const FollowOptions& options() const { return options_; }

  // Takes a follower slot: RESOURCE_EXHAUSTED at max_followers, UNAVAILABLE when draining.
  // Non-blocking; each success is matched by one Release.
  absl::Status Reserve();
  void Release();

  // Adds a follower; from now on it gets every matching record committed after the returned
  // cursors (a chain missing from them is new: all its records come live). Reads the store
  // when the cursors are not set: call it off the gRPC threads.
  absl::StatusOr<ChainCursors> Register(Follower* follower);
  // After it returns, `follower` is never called again.
  void Unregister(Follower* follower);

  // A local commit happened: read soon. Never blocks for long (the writer thread calls it).
  void Notify();

  // Ends every follower with UNAVAILABLE; later Reserve calls fail.
  void Drain();

 private:
  void Run();
  void Poll();
  absl::Status InitCursors() ABSL_EXCLUSIVE_LOCKS_REQUIRED(poll_mu_);

  Store* const store_;
  AuditMetrics* const metrics_;
  const std::string local_chain_id_;
  const FollowOptions options_;

  // Serializes reads of the store, the cursors, and registration against delivery, so that a
  // follower registered at cursors C receives exactly the rows after C.
  absl::Mutex poll_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  ChainCursors cursors_ ABSL_GUARDED_BY(poll_mu_);
  bool cursors_valid_ ABSL_GUARDED_BY(poll_mu_) = false;
  absl::Time last_discovery_ ABSL_GUARDED_BY(poll_mu_);

  absl::Mutex mu_;
  std::vector<Follower*> followers_ ABSL_GUARDED_BY(mu_);
  size_t reserved_ ABSL_GUARDED_BY(mu_) = 0;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::thread thread_;
};

}  // namespace podgate::audit
