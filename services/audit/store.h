// Where audit records live. Two implementations share this interface: SQLite (embedded, one
// writer process) and PostgreSQL (several audit replicas, one chain each, one database).
//
// Every method is thread-safe: the group-commit writer appends on its thread while queries
// and verification run on the service's executor threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "audit/chain.h"
#include "podgate/audit/v1/audit.pb.h"
#include "podgate/common/v1/common.pb.h"

namespace podgate::audit {

// Where retention cut a chain: the last removed record. The first remaining record links to it.
struct Checkpoint {
  std::string chain_id;
  int64_t sequence = 0;
  std::string hash;
};

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

  // Up to `limit` rows of `chain_id` with a sequence above `after_sequence`, in sequence order
  // (the live tail's per-chain cursor: a chain has one writer, so its sequences become
  // visible in order, unlike row ids under concurrent PostgreSQL transactions). The default
  // scans the chain; both stores override it with an indexed read.
  virtual absl::StatusOr<std::vector<StoredRow>> ReadChainAfter(const std::string& chain_id,
                                                                int64_t after_sequence, int limit);

  // Retention: removes, per chain, the leading records stored before `cutoff_us`, keeping at
  // least the newest record of each chain, and moves the chain's checkpoint to the last
  // removed record in the same transaction. Returns how many records were removed.
  virtual absl::StatusOr<int64_t> DeleteBefore(int64_t cutoff_us) = 0;

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
