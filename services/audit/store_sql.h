// What the SQLite and PostgreSQL stores share: the schema migrations, the statements whose SQL
// both dialects agree on, the column order of a records row and the assembly of a query page.
// Each store keeps what is its own: connections, transactions, parameter binding, error
// mapping, how a batch finds the ids already stored and how retention deletes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "audit/chain.h"
#include "audit/query_sql.h"
#include "audit/store.h"

namespace podgate::audit {

// The schema migrations in `dialect`, version 1 first. Version N is written once for both
// dialects, with the column types each spells differently filled in. Released versions are
// never edited (StoreSqlTest pins their text); a change is a new version.
const std::vector<std::string>& Migrations(Dialect dialect);

// Statements both dialects agree on, written with ?N placeholders; ForDialect spells them for
// the store's dialect.

// Migration 2 adds the cluster column with "" in every existing row. An audit of the previous
// release that received events from a newer exec kept their cluster inside the event bytes
// (protobuf keeps unknown fields), so each store then walks the rows in id order, a batch at a
// time, and sets the column to what ColumnsOf derives from the event: Verify agrees afterwards.
inline constexpr int kClusterMigration = 2;
// Rows after id ?1: id, event.
inline constexpr char kClusterBackfillBatchSql[] =
    "SELECT id, event FROM records WHERE id > ?1 ORDER BY id LIMIT 1000";
inline constexpr char kSetClusterSql[] = "UPDATE records SET cluster = ?1 WHERE id = ?2";

// The cluster a stored event names; "" when it names none or does not parse (Verify reports a
// record whose event does not parse on its own).
std::string ClusterOfStoredEvent(const std::string& event_bytes);

// Migration 3 adds the trace_id column, backfilled the same way from the stored events (an
// audit of the previous release kept a newer service's AuditEvent.trace_id in the event bytes).
inline constexpr int kTraceIdMigration = 5;
inline constexpr char kSetTraceIdSql[] = "UPDATE records SET trace_id = ?1 WHERE id = ?2";
// The trace id a stored event carries; "" when none or when it does not parse.
std::string TraceIdOfStoredEvent(const std::string& event_bytes);

// Migration 6: a result record's argv_text is its command line (CommandResultDetail.line and
// argv), so that argv_contains finds it with its request; result records stored before get it
// from their event bytes.
inline constexpr int kResultLineMigration = 6;
inline constexpr char kSetArgvTextSql[] = "UPDATE records SET argv_text = ?1 WHERE id = ?2";
// The argv_text of a stored result event; "" for any other event or one that does not parse.
std::string ResultLineOfStoredEvent(const std::string& event_bytes);

// A migration that adds a column derived from the event: after its SQL, each store walks the
// rows (kClusterBackfillBatchSql) and runs `set_sql` (?1 value, ?2 row id) for each row whose
// event gives a non-empty value.
struct ColumnBackfill {
  int version;
  const char* set_sql;
  std::string (*value_of)(const std::string& event_bytes);
};
// The backfill of migration `version`; null when it has none.
const ColumnBackfill* BackfillFor(int version);

// Store::CheckWritable's write: chain ?1's heartbeat row (migration 7) set to the database's
// clock. Inserted the first time, updated afterwards; either way a page of the table changes,
// so the write goes through the same journal (SQLite's WAL, PostgreSQL's WAL) as an append.
// The value always moves forward by at least one: SQLite writes no page when a row's content is
// unchanged, and its clock ticks in milliseconds, so two checks within one tick would otherwise
// write nothing and pass on a full disk.
inline constexpr char kHeartbeatSql[] =
    "INSERT INTO store_heartbeat (chain_id, checked_us) VALUES (?1, {now_us}) "
    "ON CONFLICT (chain_id) DO UPDATE SET checked_us = CASE "
    "WHEN excluded.checked_us > store_heartbeat.checked_us THEN excluded.checked_us "
    "ELSE store_heartbeat.checked_us + 1 END";

// The newest record of chain ?1: sequence, hash.
inline constexpr char kLastRecordSql[] =
    "SELECT sequence, hash FROM records WHERE chain_id = ?1 ORDER BY sequence DESC LIMIT 1";

// The checkpoint of chain ?1: sequence, hash, signed_us, key_id, signature.
inline constexpr char kCheckpointSql[] =
    "SELECT sequence, hash, signed_us, key_id, signature FROM checkpoints WHERE chain_id = ?1";

// The hash of record ?2 of chain ?1.
inline constexpr char kHashAtSql[] =
    "SELECT hash FROM records WHERE chain_id = ?1 AND sequence = ?2";

// Retention's last record to remove from chain ?1 for the cutoff ?2 (sequence, hash): just
// before the first record stored at or after the cutoff, and never the chain's newest record
// (the writer's head must stay readable).
inline constexpr char kCutPointSql[] =
    "SELECT r.sequence, r.hash FROM records r WHERE r.chain_id = ?1 AND r.sequence < "
    "COALESCE((SELECT MIN(sequence) FROM records WHERE chain_id = ?1 AND stored_time_us >= "
    "?2), (SELECT MAX(sequence) FROM records WHERE chain_id = ?1)) ORDER BY r.sequence DESC "
    "LIMIT 1";

// Moves chain ?1's checkpoint to sequence ?2 and hash ?3, created at ?4, signed at ?5 by key
// ?6 with signature ?7 (0, '' and '' when retention has no key).
inline constexpr char kUpsertCheckpointSql[] =
    "INSERT INTO checkpoints (chain_id, sequence, hash, created_us, signed_us, key_id, "
    "signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (chain_id) DO UPDATE SET "
    "sequence = excluded.sequence, hash = excluded.hash, created_us = excluded.created_us, "
    "signed_us = excluded.signed_us, key_id = excluded.key_id, signature = excluded.signature";

// Export (migration 3). {now_us} is the database's clock in microseconds (one clock for every
// replica, so leases do not depend on the replicas' clocks agreeing).
//
// Takes or renews sink ?1's lease for owner ?2 for ?3 microseconds: a free, expired or own
// lease becomes ?2's; the epoch grows whenever the lease changes hands or had expired.
inline constexpr char kAcquireLeaseSql[] =
    "INSERT INTO export_leases (sink, owner, epoch, expires_us) VALUES (?1, ?2, 1, {now_us} + ?3) "
    "ON CONFLICT (sink) DO UPDATE SET epoch = CASE WHEN export_leases.owner = excluded.owner AND "
    "export_leases.expires_us > {now_us} THEN export_leases.epoch ELSE export_leases.epoch + 1 "
    "END, owner = excluded.owner, expires_us = excluded.expires_us WHERE export_leases.owner = "
    "excluded.owner OR export_leases.expires_us <= {now_us}";
// Sink ?1's lease: owner, epoch, and whether it is still valid (1/0).
inline constexpr char kLeaseSql[] =
    "SELECT owner, epoch, CASE WHEN expires_us > {now_us} THEN 1 ELSE 0 END FROM export_leases "
    "WHERE sink = ?1";
// The fence: touches sink ?1's lease row only while owner ?2 holds it with epoch ?3 unexpired
// (and, in PostgreSQL, locks it until the transaction ends, so a taker waits for the cursor).
inline constexpr char kFenceLeaseSql[] =
    "UPDATE export_leases SET expires_us = expires_us WHERE sink = ?1 AND owner = ?2 AND epoch = "
    "?3 AND expires_us > {now_us}";
// Gives sink ?1's lease up (owner ?2) so another replica takes over without waiting.
inline constexpr char kReleaseLeaseSql[] =
    "UPDATE export_leases SET expires_us = 0 WHERE sink = ?1 AND owner = ?2";
// Moves sink ?1's cursor on chain ?2 forward to ?3 (never back).
inline constexpr char kAdvanceCursorSql[] =
    "INSERT INTO export_cursors (sink, chain_id, sequence, updated_us) VALUES (?1, ?2, ?3, "
    "{now_us}) ON CONFLICT (sink, chain_id) DO UPDATE SET sequence = excluded.sequence, "
    "updated_us = excluded.updated_us WHERE excluded.sequence > export_cursors.sequence";
// Sink ?1's cursors: chain_id, sequence.
inline constexpr char kCursorsSql[] =
    "SELECT chain_id, sequence FROM export_cursors WHERE sink = ?1 ORDER BY chain_id";
// Every chain's head and checkpoint: chain_id, newest sequence (0 if none), checkpoint
// sequence (0 if none).
// (The chain ids come from a loose index scan over records' (chain_id, sequence) index: one
// lookup per chain, not a scan of every row.)
inline constexpr char kExportChainsSql[] =
    "WITH RECURSIVE t(c) AS (SELECT (SELECT chain_id FROM records ORDER BY chain_id LIMIT 1) "
    "UNION ALL SELECT (SELECT chain_id FROM records WHERE chain_id > t.c ORDER BY chain_id LIMIT "
    "1) FROM t WHERE t.c IS NOT NULL), chains(chain_id) AS (SELECT c FROM t WHERE c IS NOT NULL "
    "UNION SELECT chain_id FROM checkpoints) SELECT ch.chain_id, COALESCE((SELECT MAX(sequence) "
    "FROM records r WHERE r.chain_id = ch.chain_id), 0), COALESCE((SELECT sequence FROM "
    "checkpoints k WHERE k.chain_id = ch.chain_id), 0) FROM chains ch ORDER BY ch.chain_id";

// `sql` with PostgreSQL's $N placeholders in place of ?N for kPostgres, and {now_us} spelled
// for the dialect.
std::string ForDialect(const char* sql, Dialect dialect);

// The start of an INSERT of records rows; each store appends its rows of placeholders, one
// per value of RecordParams in order.
inline constexpr char kInsertRecordsSql[] =
    "INSERT INTO records (event_id, chain_id, sequence, stored_time_us, event, hash, "
    "previous_hash, event_time_us, kind, user_name, groups_text, namespace, pod, container, "
    "verdict, rule, session_id, argv_text, cluster, trace_id) VALUES ";

// The number of columns kInsertRecordsSql names.
inline constexpr int kRecordColumns = 20;

// Hands each value of `row` to `out`, in kInsertRecordsSql's column order (column 1 first),
// without copying: out.Text(column, string_view), out.Int64(column, int64_t) for a 64-bit
// column, out.Int32(column, int32_t) for an INTEGER column, out.Bytes(column, string_view).
// The stores bind straight from the row (SQLite) or encode it for COPY (PostgreSQL).
template <typename Out>
void VisitRecordValues(const StoredRow& row, Out& out) {
  out.Text(1, row.event_id);
  out.Text(2, row.chain_id);
  out.Int64(3, row.sequence);
  out.Int64(4, row.stored_time_us);
  out.Bytes(5, row.event_bytes);
  out.Bytes(6, row.hash);
  out.Bytes(7, row.previous_hash);
  out.Int64(8, row.columns.event_time_us);
  out.Int32(9, row.columns.kind);
  out.Text(10, row.columns.user);
  out.Text(11, row.columns.groups);
  out.Text(12, row.columns.namespace_name);
  out.Text(13, row.columns.pod);
  out.Text(14, row.columns.container);
  out.Int32(15, row.columns.verdict);
  out.Text(16, row.columns.rule);
  out.Text(17, row.columns.session_id);
  out.Text(18, row.columns.argv_text);
  out.Text(19, row.columns.cluster);
  out.Text(20, row.columns.trace_id);
}

// The values of `row` in kInsertRecordsSql's column order (VisitRecordValues, copied).
std::vector<SqlParam> RecordParams(const StoredRow& row);

// Reads a row selected with kRowColumns into `*row_id` and the returned row. `Row` reads the
// current row's columns: Int(column), Text(column) and Bytes(column).
template <typename Row>
StoredRow ReadStoredRow(Row& r, int64_t* row_id) {
  StoredRow row;
  *row_id = r.Int(0);
  row.event_id = r.Text(1);
  row.chain_id = r.Text(2);
  row.sequence = r.Int(3);
  row.stored_time_us = r.Int(4);
  row.event_bytes = r.Bytes(5);
  row.hash = r.Bytes(6);
  row.previous_hash = r.Bytes(7);
  row.columns.event_time_us = r.Int(8);
  row.columns.kind = static_cast<int32_t>(r.Int(9));
  row.columns.user = r.Text(10);
  row.columns.groups = r.Text(11);
  row.columns.namespace_name = r.Text(12);
  row.columns.pod = r.Text(13);
  row.columns.container = r.Text(14);
  row.columns.verdict = static_cast<int32_t>(r.Int(15));
  row.columns.rule = r.Text(16);
  row.columns.session_id = r.Text(17);
  row.columns.argv_text = r.Text(18);
  row.columns.cluster = r.Text(19);
  row.columns.trace_id = r.Text(20);
  return row;
}

// The head of chain `chain_id` when it has no records: where retention cut it (`checkpoint`),
// or the start of a new chain.
ChainHead HeadAfterCheckpoint(const std::string& chain_id, const Checkpoint& checkpoint);

// Assembles a query page from the rows of a BuildQuery statement, in their order.
class PageBuilder {
 public:
  explicit PageBuilder(const SqlQuery& query)
      : page_size_(query.page_size), newest_first_(query.newest_first) {}

  // Whether the page holds its page_size records: a further row only shows there is a next page.
  bool full() const { return static_cast<int>(page_.records.size()) == page_size_; }

  // Adds the record of a row; fails when its stored event does not parse.
  absl::Status Add(const StoredRow& row, int64_t row_id);

  // The page; `more`: the statement returned a row beyond it, so the page carries a token.
  QueryPage Finish(bool more) &&;

 private:
  const int page_size_;
  const bool newest_first_;
  int64_t last_row_id_ = 0;
  QueryPage page_;
};

}  // namespace podgate::audit
