// Where audit records live. Two implementations share this interface: SQLite (embedded, one
// writer process) and PostgreSQL (several audit replicas, one chain each, one database).
//
// Every method is thread-safe: the group-commit writer appends on its thread while queries
// and verification run on the service's executor threads.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "audit/chain.h"
#include "podgate/audit/v1/audit.pb.h"
#include "podgate/common/v1/common.pb.h"

namespace podgate::audit {

// Where retention cut a chain: the last removed record. The first remaining record links to it.
// With a checkpoint key, retention signs the cut (a SignedCheckpoint of kind RETENTION_CUT over
// chain_id, sequence, hash and signed_time_us) and the signature is stored beside it, so a cut
// forged in the database does not verify.
struct Checkpoint {
  std::string chain_id;
  int64_t sequence = 0;
  std::string hash;
  // Empty signature: retention ran without a key (or the row was written by someone else).
  int64_t signed_time_us = 0;
  std::string key_id;
  std::string signature;
};

// One chain as the exporter sees it.
struct ExportChain {
  std::string chain_id;
  // The newest stored sequence (the checkpoint's when retention removed every record).
  int64_t head_sequence = 0;
  // Where retention cut the chain (0: never); records up to it are gone.
  int64_t checkpoint_sequence = 0;
};

// A sink's export lease as the store answered it.
struct ExportLease {
  // Whether the asking owner holds it now.
  bool held = false;
  // The holder (the asking owner when held).
  std::string owner;
  // Grows whenever the lease changes hands; cursor updates carry it as a fence.
  int64_t epoch = 0;
};
// Signs a retention cut: fills `cut`'s signed_time_us, key_id and signature. Called inside
// DeleteBefore's transaction; a failure rolls that chain's cut back.
using CutSigner = std::function<absl::Status(Checkpoint* cut)>;

// One page of query results.
struct QueryPage {
  std::vector<podgate::audit::v1::AuditRecord> records;
  std::string next_page_token;  // empty on the last page
};

class Store {
 public:
  virtual ~Store() = default;

  // The newest record of `chain_id` (sequence 0 and zero hash for a new chain, or the
  // checkpoint when retention removed every record).
  virtual absl::StatusOr<ChainHead> LoadHead(const std::string& chain_id) = 0;

  // In one durable transaction: stores each event whose id is not stored yet as the next
  // record of `head`'s chain. On success `head` has advanced and every id is durable; on
  // failure nothing was stored and `head` is unchanged. Unavailable: the store cannot be
  // reached or is full (retry later); other codes: a bug or a corrupt store.
  virtual absl::Status Append(ChainHead* head,
                              const std::vector<const podgate::common::v1::AuditEvent*>& events,
                              int64_t stored_time_us) = 0;

  // Whether an append to `chain_id` would be stored now: one write transaction on the
  // connection appends use, which updates the chain's heartbeat row. OK when it committed;
  // otherwise the error Append would report (Unavailable: locked, full, read-only or
  // unreachable). The writer re-checks the store with it while appends fail, so that readiness
  // comes back without waiting for an event.
  virtual absl::Status CheckWritable(const std::string& chain_id) = 0;

  // Append without waiting for durability: the transaction is committed (readers see it) but
  // becomes durable only once a Sync that started after this call returned returns OK. The
  // group-commit writer syncs on another thread while it writes the next batch. The default is
  // Append (already durable: PostgreSQL's COMMIT waits for its WAL flush).
  virtual absl::Status AppendUnsynced(
      ChainHead* head, const std::vector<const podgate::common::v1::AuditEvent*>& events,
      int64_t stored_time_us) {
    return Append(head, events, stored_time_us);
  }

  // Makes every transaction committed before this call durable (one fsync for them all).
  // Thread-safe; runs beside AppendUnsynced. After a failure, transactions committed before it
  // may or may not be durable. The default has nothing to do.
  virtual absl::Status Sync() { return absl::OkStatus(); }

  // Records matching `request` (already validated), one page.
  virtual absl::StatusOr<QueryPage> Query(const podgate::audit::v1::QueryRequest& request) = 0;

  // Every chain id, sorted.
  virtual absl::StatusOr<std::vector<std::string>> ListChains() = 0;

  // The chain's checkpoint; sequence 0 when retention never cut it.
  virtual absl::StatusOr<Checkpoint> GetCheckpoint(const std::string& chain_id) = 0;

  // Calls `visit` for each row of `chain_id` in sequence order; stops early when it returns
  // false.
  virtual absl::Status ScanChain(const std::string& chain_id,
                                 const std::function<bool(const StoredRow&)>& visit) = 0;

  // Retention: removes, per chain, the leading records stored before `cutoff_us`, keeping at
  // least the newest record of each chain, and moves the chain's checkpoint to the last
  // removed record in the same transaction, signed by `sign` when given. Returns how many
  // records were removed.
  virtual absl::StatusOr<int64_t> DeleteBefore(int64_t cutoff_us,
                                               const CutSigner& sign = nullptr) = 0;

  // The hash of record `sequence` of `chain_id`; NotFound when there is no such record.
  virtual absl::StatusOr<std::string> HashAt(const std::string& chain_id, int64_t sequence) = 0;

  // The database's own consistency check (SQLite: PRAGMA integrity_check; PostgreSQL:
  // amcheck's bt_index_check on the audit tables' indexes when the extension is installed).
  // Returns the problems found, empty when none; `note` (optional) says what was checked.
  virtual absl::StatusOr<std::vector<std::string>> CheckIntegrity(std::string* note) = 0;

  // Export. Every chain with its head and retention checkpoint, sorted by chain id.
  virtual absl::StatusOr<std::vector<ExportChain>> ListExportChains() = 0;

  // Up to `limit` rows of `chain_id` with a sequence above `after_sequence`, in sequence order
  // (the exporter's and the live tail's per-chain cursors: a chain has one writer, so its
  // sequences become visible in order, unlike row ids under concurrent PostgreSQL
  // transactions).
  virtual absl::StatusOr<std::vector<StoredRow>> ReadChainAfter(const std::string& chain_id,
                                                                int64_t after_sequence,
                                                                int limit) = 0;

  // Sink `sink`'s cursors: chain id -> the last delivered sequence (chains absent: nothing
  // delivered yet).
  virtual absl::StatusOr<std::map<std::string, int64_t>> LoadExportCursors(
      const std::string& sink) = 0;

  // Takes or renews `sink`'s lease for `owner` until `ttl` from now (the database's clock), in
  // one transaction. Not held when another owner holds an unexpired lease.
  virtual absl::StatusOr<ExportLease> AcquireExportLease(const std::string& sink,
                                                         const std::string& owner,
                                                         absl::Duration ttl) = 0;

  // Gives the lease up (at shutdown) so another replica takes over at once.
  virtual absl::Status ReleaseExportLease(const std::string& sink, const std::string& owner) = 0;

  // In one transaction: checks that `owner` still holds `sink`'s lease with `epoch` unexpired,
  // then moves each (chain, sequence) cursor forward (never back). FailedPrecondition when the
  // lease is lost (nothing moved): another replica delivers from the stored cursor.
  virtual absl::Status AdvanceExportCursors(
      const std::string& sink, const std::string& owner, int64_t epoch,
      const std::vector<std::pair<std::string, int64_t>>& cursors) = 0;

  // "sqlite" or "postgresql".
  virtual std::string kind() const = 0;
};

// Opens a store from a URL: "sqlite:///absolute/path.db", "sqlite://relative.db" or
// "postgresql://user@host:port/db?..." (libpq syntax). Applies pending migrations. Errors
// name the URL's problem.
absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& url);

// `busy_timeout`: how long a write waits for a lock another process holds before the store
// reports itself unavailable.
absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(
    const std::string& path, absl::Duration busy_timeout = absl::Seconds(5));
absl::StatusOr<std::unique_ptr<Store>> OpenPostgresStore(const std::string& conninfo);

// Page tokens: opaque to clients; they carry the last row id and the direction.
std::string EncodePageToken(int64_t last_row_id, bool newest_first);
absl::StatusOr<int64_t> DecodePageToken(const std::string& token, bool newest_first);

// Checks a QueryRequest's limits; returns the effective page size.
absl::StatusOr<int> ValidateQuery(const podgate::audit::v1::QueryRequest& request);

}  // namespace podgate::audit
