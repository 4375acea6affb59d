#include "audit/store_sql.h"

#include <utility>

#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"

namespace podgate::audit {
namespace {

// {int64}: a 64-bit integer column; {bytes}: a byte string; {row_id}: the records row id,
// assigned in insertion order and never reused (page tokens rely on it).
const char* const kMigrationTemplates[] = {
    // 1: records, chain checkpoints, and the indexes the Query filters use.
    R"sql(
CREATE TABLE records (
  id {row_id},
  event_id TEXT NOT NULL UNIQUE,
  chain_id TEXT NOT NULL,
  sequence {int64} NOT NULL,
  stored_time_us {int64} NOT NULL,
  event {bytes} NOT NULL,
  hash {bytes} NOT NULL,
  previous_hash {bytes} NOT NULL,
  event_time_us {int64} NOT NULL,
  kind INTEGER NOT NULL,
  user_name TEXT NOT NULL,
  groups_text TEXT NOT NULL,
  namespace TEXT NOT NULL,
  pod TEXT NOT NULL,
  container TEXT NOT NULL,
  verdict INTEGER NOT NULL,
  rule TEXT NOT NULL,
  session_id TEXT NOT NULL,
  argv_text TEXT NOT NULL,
  UNIQUE (chain_id, sequence)
);
CREATE INDEX records_user ON records (user_name, id);
CREATE INDEX records_namespace_pod ON records (namespace, pod, id);
CREATE INDEX records_pod ON records (pod, id);
CREATE INDEX records_session ON records (session_id, id);
CREATE INDEX records_event_time ON records (event_time_us);
CREATE INDEX records_kind_verdict ON records (kind, verdict, id);
CREATE INDEX records_rule ON records (rule, id);
CREATE INDEX records_stored_time ON records (chain_id, stored_time_us);
CREATE TABLE checkpoints (
  chain_id TEXT PRIMARY KEY,
  sequence {int64} NOT NULL,
  hash {bytes} NOT NULL,
  created_us {int64} NOT NULL
);
)sql",
    // 2: the target cluster. Rows stored before it get "" (their events name no cluster),
    // the value ColumnsOf derives from such an event, so they still verify.
    R"sql(
ALTER TABLE records ADD COLUMN cluster TEXT NOT NULL DEFAULT '';
CREATE INDEX records_cluster ON records (cluster, namespace, pod, id);
)sql",
    // 3: export: per (sink, chain) the last delivered sequence, and per sink the lease that
    // lets one replica at a time deliver (epoch bumps whenever the owner changes; a cursor
    // update is fenced by owner, epoch and expiry in the same transaction).
    R"sql(
CREATE TABLE export_cursors (
  sink TEXT NOT NULL,
  chain_id TEXT NOT NULL,
  sequence {int64} NOT NULL,
  updated_us {int64} NOT NULL,
  PRIMARY KEY (sink, chain_id)
);
CREATE TABLE export_leases (
  sink TEXT PRIMARY KEY,
  owner TEXT NOT NULL,
  epoch {int64} NOT NULL,
  expires_us {int64} NOT NULL
);
)sql",
    // 4: retention's signature of its cut (docs/audit.md, "Signed checkpoints and
    // verification"); cuts made before it, or without a key, keep the empty signature.
    R"sql(
ALTER TABLE checkpoints ADD COLUMN signed_us {int64} NOT NULL DEFAULT 0;
ALTER TABLE checkpoints ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE checkpoints ADD COLUMN signature {bytes} NOT NULL DEFAULT {empty_bytes};
)sql",
    // 5: the W3C trace id (AuditEvent.trace_id). Rows stored before it get "", then the
    // backfill (kTraceIdMigration) sets what their event bytes carry.
    R"sql(
ALTER TABLE records ADD COLUMN trace_id TEXT NOT NULL DEFAULT '';
CREATE INDEX records_trace ON records (trace_id, id);
)sql",
    // 6: result records' command line in argv_text (ColumnsOf derives it from
    // command_result.line since this version). No schema change: the backfill
    // (kResultLineMigration) sets the column of the result records stored before.
    R"sql(
SELECT 1;
)sql",
    // 7: the store's heartbeat, one row per chain: while appends fail, the writer re-checks
    // the store on its own by updating its chain's row in a write transaction
    // (Store::CheckWritable), a real write that fails when appends would (a lock held, a full
    // disk, a read-only database).
    R"sql(
CREATE TABLE store_heartbeat (
  chain_id TEXT PRIMARY KEY,
  checked_us {int64} NOT NULL
);
)sql",
    // 8: the cluster index keeps only the cluster, so a Query by cluster reads its page in id
    // order instead of sorting all of the cluster's records. One that also names namespaces or
    // pods is served by records_namespace_pod or records_pod, as without a cluster
    // (docs/performance.md, "The query indexes").
    R"sql(
DROP INDEX records_cluster;
CREATE INDEX records_cluster ON records (cluster, id);
)sql",
};

std::vector<std::string> Render(Dialect dialect) {
  const bool sqlite = dialect == Dialect::kSqlite;
  std::vector<std::string> out;
  for (const char* migration : kMigrationTemplates) {
    out.push_back(absl::StrReplaceAll(
        migration,
        {{"{row_id}", sqlite ? "INTEGER PRIMARY KEY AUTOINCREMENT" : "BIGSERIAL PRIMARY KEY"},
         {"{int64}", sqlite ? "INTEGER" : "BIGINT"},
         {"{bytes}", sqlite ? "BLOB" : "BYTEA"},
         {"{empty_bytes}", sqlite ? "X''" : "''::bytea"}}));
  }
  return out;
}

}  // namespace

const std::vector<std::string>& Migrations(Dialect dialect) {
  static const auto* const kSqlite = new std::vector<std::string>(Render(Dialect::kSqlite));
  static const auto* const kPostgres = new std::vector<std::string>(Render(Dialect::kPostgres));
  return dialect == Dialect::kSqlite ? *kSqlite : *kPostgres;
}

std::string ForDialect(const char* sql, Dialect dialect) {
  const bool sqlite = dialect == Dialect::kSqlite;
  return absl::StrReplaceAll(
      sql, {{"?", sqlite ? "?" : "$"},
            {"{now_us}", sqlite ? "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
                                : "(extract(epoch from clock_timestamp()) * 1000000)::bigint"}});
}

std::vector<SqlParam> RecordParams(const StoredRow& row) {
  struct Collect {
    std::vector<SqlParam> params;
    void Text(int, absl::string_view v) { params.push_back(SqlText(std::string(v))); }
    void Int64(int, int64_t v) { params.push_back(SqlInt(v)); }
    void Int32(int, int32_t v) { params.push_back(SqlInt(v)); }
    void Bytes(int, absl::string_view v) { params.push_back(SqlBytes(std::string(v))); }
  } collect;
  collect.params.reserve(kRecordColumns);
  VisitRecordValues(row, collect);
  return std::move(collect.params);
}

namespace {

// One column derived from a stored event (ColumnsOf); "" when its bytes do not parse (Verify
// reports such a record) or, with `results_only`, when it is not a command result.
std::string StoredEventColumn(const std::string& event_bytes, std::string EventColumns::*column,
                              bool results_only = false) {
  podgate::common::v1::AuditEvent event;
  if (!event.ParseFromString(event_bytes) || (results_only && !event.has_command_result())) {
    return "";
  }
  return ColumnsOf(event).*column;
}

}  // namespace

std::string ClusterOfStoredEvent(const std::string& event_bytes) {
  return StoredEventColumn(event_bytes, &EventColumns::cluster);
}

std::string TraceIdOfStoredEvent(const std::string& event_bytes) {
  return StoredEventColumn(event_bytes, &EventColumns::trace_id);
}

std::string ResultLineOfStoredEvent(const std::string& event_bytes) {
  return StoredEventColumn(event_bytes, &EventColumns::argv_text, /*results_only=*/true);
}

const ColumnBackfill* BackfillFor(int version) {
  static const ColumnBackfill kBackfills[] = {
      {kClusterMigration, kSetClusterSql, &ClusterOfStoredEvent},
      {kTraceIdMigration, kSetTraceIdSql, &TraceIdOfStoredEvent},
      {kResultLineMigration, kSetArgvTextSql, &ResultLineOfStoredEvent},
  };
  for (const ColumnBackfill& b : kBackfills) {
    if (b.version == version) {
      return &b;
    }
  }
  return nullptr;
}

ChainHead HeadAfterCheckpoint(const std::string& chain_id, const Checkpoint& checkpoint) {
  ChainHead head;
  head.chain_id = chain_id;
  if (checkpoint.sequence > 0) {
    head.sequence = checkpoint.sequence;
    head.hash = checkpoint.hash;
  }
  return head;
}

absl::Status PageBuilder::Add(const StoredRow& row, int64_t row_id) {
  last_row_id_ = row_id;
  absl::StatusOr<podgate::audit::v1::AuditRecord> record = ToRecord(row);
  if (!record.ok()) {
    return record.status();
  }
  page_.records.push_back(*std::move(record));
  return absl::OkStatus();
}

QueryPage PageBuilder::Finish(bool more) && {
  if (more) {
    page_.next_page_token = EncodePageToken(last_row_id_, newest_first_);
  }
  return std::move(page_);
}

}  // namespace podgate::audit
