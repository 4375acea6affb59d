// The audit hash chain: the canonical content of a record, its hash, and the columns a store
// derives from an event for queries.
//
// Canonical content of a record (every integer big-endian, every string length-prefixed):
//   "podgate.audit.v1\n" | u32 len | chain_id | u64 sequence | i64 stored_time_us |
//   u32 len | event_bytes
// where event_bytes is the event's deterministic protobuf serialization, taken once at ingest
// and stored as is: verification hashes the stored bytes and never re-serializes, so a change
// in the protobuf library cannot break old chains.
//   hash = SHA-256(previous_hash || canonical), previous_hash = 32 zero bytes for sequence 1
// (or the checkpoint's hash after retention removed the chain's start).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "podgate/audit/v1/audit.pb.h"
#include "podgate/common/v1/common.pb.h"

namespace podgate::audit {

inline constexpr size_t kHashBytes = 32;

// The last record of a chain as seen by its writer: the next record links to it.
struct ChainHead {
  std::string chain_id;
  int64_t sequence = 0;  // 0: empty chain
  std::string hash = std::string(kHashBytes, '\0');
};

// The columns a store keeps beside the event for filtering. Verify recomputes them from the
// stored event, so editing a column is detected like editing the event.
struct EventColumns {
  int64_t event_time_us = 0;
  int32_t kind = 0;
  std::string user;
  std::string groups;  // "\n" + each group + "\n", so a group matches as "\n<group>\n"
  std::string cluster;  // "" in events from an exec that predates clusters
  std::string namespace_name;
  std::string pod;
  std::string container;
  int32_t verdict = 0;
  std::string rule;
  std::string session_id;
  std::string argv_text;  // the command line, then the argv joined by spaces
  std::string trace_id;   // "" in events without a trace context
};

// One stored row, as a store reads it back.
struct StoredRow {
  std::string event_id;
  std::string chain_id;
  int64_t sequence = 0;
  int64_t stored_time_us = 0;
  std::string event_bytes;
  std::string hash;
  std::string previous_hash;
  EventColumns columns;
};

// The query columns of an event, derived the same way at insert and at verification.
EventColumns ColumnsOf(const podgate::common::v1::AuditEvent& event);

std::string CanonicalContent(const std::string& chain_id, int64_t sequence, int64_t stored_time_us,
                             const std::string& event_bytes);

// SHA-256(previous_hash || canonical).
std::string LinkHash(const std::string& previous_hash, const std::string& canonical);

// Builds the next row of `head`'s chain for `event` (serialized deterministically) and
// advances `head`.
StoredRow LinkNext(ChainHead* head, const podgate::common::v1::AuditEvent& event,
                   int64_t stored_time_us);

// Checks an event before it is queued; the message says what is wrong.
absl::Status ValidateEvent(const podgate::common::v1::AuditEvent& event);

// The API view of a stored row; fails when the stored event bytes do not parse.
absl::StatusOr<podgate::audit::v1::AuditRecord> ToRecord(const StoredRow& row);

}  // namespace podgate::audit
