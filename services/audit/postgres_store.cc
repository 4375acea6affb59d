// The PostgreSQL store: several audit replicas write to one database, each to its own chain,
// so they never contend on a chain head. A batch is one transaction (one binary COPY); libpq
// returns from COMMIT once the server has flushed its WAL (synchronous_commit=on, the server
// default), so Append returning OK means durable. Asynchronous commit would let the writer
// overlap flushes, but other replicas' exporters would then read records a server crash can
// still take back, so every commit waits for its flush. One connection writes (the group-commit
// writer); every read opens its own connection.
#include <libpq-fe.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "audit/store.h"
#include "audit/store_sql.h"

namespace podgate::audit {
namespace {

using podgate::common::v1::AuditEvent;

// Rows per multi-row INSERT: 20 parameters each, far below PostgreSQL's 65535.
constexpr size_t kInsertChunk = 200;

// COPY of kInsertRecordsSql's columns, in binary format (CopyEncoder).
const std::string& CopyRecordsSql() {
  static const auto* const kSql = new std::string(absl::StrReplaceAll(
      kInsertRecordsSql,
      {{"INSERT INTO records", "COPY records"}, {" VALUES ", " FROM STDIN (FORMAT binary)"}}));
  return *kSql;
}

class Result {
 public:
  explicit Result(PGresult* r) : r_(r) {}
  ~Result() { PQclear(r_); }
  Result(Result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  int rows() const { return PQntuples(r_); }
  std::string Get(int row, int col) const {
    return std::string(PQgetvalue(r_, row, col), PQgetlength(r_, row, col));
  }
  int64_t GetInt(int row, int col) const {
    int64_t v = 0;
    (void)absl::SimpleAtoi(PQgetvalue(r_, row, col), &v);
    return v;
  }
  // Decodes bytea's hex output format ("\x0a1b...").
  std::string GetBytes(int row, int col) const {
    const std::string hex = Get(row, col);
    std::string out;
    if (hex.size() < 2) {
      return out;
    }
    auto nibble = [](char c) -> int { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
    for (size_t i = 2; i + 1 < hex.size(); i += 2) {
      out.push_back(static_cast<char>(nibble(hex[i]) << 4 | nibble(hex[i + 1])));
    }
    return out;
  }

 private:
  PGresult* r_;
};

// libpq messages span several lines; logs and start-up errors want one.
std::string OneLine(const char* text) {
  std::string out;
  bool space = false;
  for (const char* p = text; p != nullptr && *p != '\0'; ++p) {
    if (*p == '\n' || *p == '\t' || *p == '\r' || *p == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) {
      out.push_back(' ');
      space = false;
    }
    out.push_back(*p);
  }
  return out;
}

absl::Status PgError(PGconn* conn, PGresult* result, absl::string_view what) {
  const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const std::string message = absl::StrCat(
      "postgresql: ", what, ": ",
      OneLine(result != nullptr ? PQresultErrorMessage(result) : PQerrorMessage(conn)));
  const std::string sqlstate = state != nullptr ? state : "";
  if (PQstatus(conn) != CONNECTION_OK) {
    return absl::UnavailableError(message);
  }
  if (sqlstate.rfind("23", 0) == 0) {
    return absl::AbortedError(message);  // a constraint: another writer on the same chain
  }
  if (sqlstate.rfind("42", 0) == 0) {
    return absl::InternalError(message);
  }
  // Connection loss, shutdown, disk full (53100), serialization: retry later.
  return absl::UnavailableError(message);
}

class Conn {
 public:
  static absl::StatusOr<std::unique_ptr<Conn>> Open(const std::string& conninfo) {
    PGconn* raw = PQconnectdb(conninfo.c_str());
    auto conn = std::unique_ptr<Conn>(new Conn(raw));
    if (raw == nullptr || PQstatus(raw) != CONNECTION_OK) {
      return absl::UnavailableError(
          absl::StrCat("postgresql: cannot connect: ",
                       raw != nullptr ? OneLine(PQerrorMessage(raw)) : "out of memory"));
    }
    return conn;
  }
  ~Conn() { PQfinish(conn_); }
  bool ok() const { return PQstatus(conn_) == CONNECTION_OK; }

  // Integers go as text, byte strings in binary format.
  absl::StatusOr<Result> Exec(const std::string& sql, const std::vector<SqlParam>& params = {}) {
    std::vector<std::string> ints(params.size());
    std::vector<const char*> values;
    std::vector<int> lengths;
    std::vector<int> formats;
    for (size_t i = 0; i < params.size(); ++i) {
      const SqlParam& p = params[i];
      if (p.type == SqlParam::Type::kInt) {
        ints[i] = absl::StrCat(p.int_value);
      }
      const std::string& value = p.type == SqlParam::Type::kInt ? ints[i] : p.text;
      values.push_back(value.data());
      lengths.push_back(static_cast<int>(value.size()));
      formats.push_back(p.type == SqlParam::Type::kBytes ? 1 : 0);
    }
    // Without parameters PQexec also runs several statements (the migrations).
    PGresult* r = params.empty()
                      ? PQexec(conn_, sql.c_str())
                      : PQexecParams(conn_, sql.c_str(), static_cast<int>(params.size()), nullptr,
                                     values.data(), lengths.data(), formats.data(), 0);
    const ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      absl::Status error = PgError(conn_, r, sql.substr(0, 40));
      PQclear(r);
      return error;
    }
    return Result(r);
  }

  absl::Status Run(const std::string& sql, const std::vector<SqlParam>& params = {}) {
    return Exec(sql, params).status();
  }

  // Runs `sql` (a COPY ... FROM STDIN) with `data` as its input. On an error, `*constraint`
  // names the violated constraint, if any.
  absl::Status CopyIn(const std::string& sql, const std::string& data, std::string* constraint) {
    PGresult* started = PQexec(conn_, sql.c_str());
    if (PQresultStatus(started) != PGRES_COPY_IN) {
      absl::Status error = PgError(conn_, started, sql.substr(0, 40));
      PQclear(started);
      return error;
    }
    PQclear(started);
    if (PQputCopyData(conn_, data.data(), static_cast<int>(data.size())) != 1 ||
        PQputCopyEnd(conn_, nullptr) != 1) {
      return absl::UnavailableError(
          absl::StrCat("postgresql: COPY: ", OneLine(PQerrorMessage(conn_))));
    }
    absl::Status status;
    while (PGresult* r = PQgetResult(conn_)) {
      if (PQresultStatus(r) != PGRES_COMMAND_OK && status.ok()) {
        status = PgError(conn_, r, sql.substr(0, 40));
        if (const char* name = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME); name != nullptr) {
          *constraint = name;
        }
      }
      PQclear(r);
    }
    return status;
  }

 private:
  explicit Conn(PGconn* c) : conn_(c) {}
  PGconn* conn_;
};

// Rows in COPY's binary format (the PostgreSQL manual, "COPY", "Binary Format"): a header,
// per row the field count and each field as a 32-bit length and its bytes (integers in network
// order, text as UTF-8, bytea as is), and a trailer. The columns are kInsertRecordsSql's.
class CopyEncoder {
 public:
  CopyEncoder() {
    out_.append("PGCOPY\n\377\r\n", 11);  // the signature, its final NUL included
    PutU32(0);                            // flags
    PutU32(0);                            // header extension length
  }
  void Reserve(size_t bytes) { out_.reserve(out_.size() + bytes); }
  void Row(const StoredRow& row) {
    PutU16(kRecordColumns);
    VisitRecordValues(row, *this);
  }
  std::string Finish() && {
    PutU16(0xffff);  // -1: the trailer
    return std::move(out_);
  }

  // VisitRecordValues' output.
  void Text(int, std::string_view v) { Field(v); }
  void Bytes(int, std::string_view v) { Field(v); }
  void Int64(int, int64_t v) {
    PutU32(8);
    PutU32(static_cast<uint32_t>(static_cast<uint64_t>(v) >> 32));
    PutU32(static_cast<uint32_t>(static_cast<uint64_t>(v)));
  }
  void Int32(int, int32_t v) {
    PutU32(4);
    PutU32(static_cast<uint32_t>(v));
  }

 private:
  void Field(std::string_view v) {
    PutU32(static_cast<uint32_t>(v.size()));
    out_.append(v.data(), v.size());
  }
  void PutU16(uint16_t v) {
    out_.push_back(static_cast<char>(v >> 8));
    out_.push_back(static_cast<char>(v));
  }
  void PutU32(uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      out_.push_back(static_cast<char>(v >> shift));
    }
  }
  std::string out_;
};

// Whether a row's text columns hold a NUL byte, which PostgreSQL text cannot store: COPY would
// refuse the row, so such a batch takes the INSERT path (whose text parameters end at the NUL,
// as they always did).
bool HasNulInText(const StoredRow& row) {
  struct Check {
    bool nul = false;
    void Text(int, std::string_view v) { nul = nul || v.find('\0') != std::string_view::npos; }
    void Bytes(int, std::string_view) {}
    void Int64(int, int64_t) {}
    void Int32(int, int32_t) {}
  } check;
  VisitRecordValues(row, check);
  return check.nul;
}

// The unique constraint on records.event_id (PostgreSQL's name for it).
constexpr char kEventIdConstraint[] = "records_event_id_key";

// Row `i` of a result, as ReadStoredRow reads it.
struct ResultRow {
  const Result& result;
  int i;
  int64_t Int(int col) const { return result.GetInt(i, col); }
  std::string Text(int col) const { return result.Get(i, col); }
  std::string Bytes(int col) const { return result.GetBytes(i, col); }
};

class PostgresStore final : public Store {
 public:
  explicit PostgresStore(std::string conninfo) : conninfo_(std::move(conninfo)) {}

  absl::Status Init() {
    absl::MutexLock lock(&mu_);
    return Connect();
  }

  std::string kind() const override { return "postgresql"; }

  absl::StatusOr<ChainHead> LoadHead(const std::string& chain_id) override {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Connect(); !s.ok()) {
      return s;
    }
    absl::StatusOr<Result> r =
        writer_->Exec(ForDialect(kLastRecordSql, Dialect::kPostgres), {SqlText(chain_id)});
    if (!r.ok()) {
      DropIfBroken();
      return r.status();
    }
    if (r->rows() == 1) {
      ChainHead head;
      head.chain_id = chain_id;
      head.sequence = r->GetInt(0, 0);
      head.hash = r->GetBytes(0, 1);
      return head;
    }
    absl::StatusOr<Checkpoint> cp = CheckpointOn(*writer_, chain_id);
    if (!cp.ok()) {
      DropIfBroken();
      return cp.status();
    }
    return HeadAfterCheckpoint(chain_id, *cp);
  }

  absl::Status Append(ChainHead* head, const std::vector<const AuditEvent*>& events,
                      int64_t stored_time_us) override {
    return AppendWith(head, events, stored_time_us, "BEGIN");
  }

  absl::Status AppendWith(ChainHead* head, const std::vector<const AuditEvent*>& events,
                          int64_t stored_time_us, const char* begin) {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Connect(); !s.ok()) {
      return s;
    }
    ChainHead next = *head;
    absl::Status status = AppendLocked(&next, events, stored_time_us, begin);
    if (!status.ok()) {
      if (writer_->ok()) {
        writer_->Run("ROLLBACK").IgnoreError();
      }
      DropIfBroken();
      return status;
    }
    *head = next;
    return absl::OkStatus();
  }

  // On the writer's connection, in a transaction like Append's: a server that is down, read
  // only (a standby after failover), out of disk or refusing the audit role's writes fails it.
  absl::Status CheckWritable(const std::string& chain_id) override {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Connect(); !s.ok()) {
      return s;
    }
    absl::Status status = writer_->Run("BEGIN");
    if (status.ok()) {
      status = writer_->Run(ForDialect(kHeartbeatSql, Dialect::kPostgres), {SqlText(chain_id)});
    }
    if (status.ok()) {
      status = writer_->Run("COMMIT");
    }
    if (!status.ok()) {
      if (writer_->ok()) {
        writer_->Run("ROLLBACK").IgnoreError();
      }
      DropIfBroken();
    }
    return status;
  }

  absl::StatusOr<QueryPage> Query(const podgate::audit::v1::QueryRequest& request) override {
    absl::StatusOr<SqlQuery> q = BuildQuery(request, Dialect::kPostgres);
    if (!q.ok()) {
      return q.status();
    }
    absl::StatusOr<std::unique_ptr<Conn>> conn = Conn::Open(conninfo_);
    if (!conn.ok()) {
      return conn.status();
    }
    absl::StatusOr<Result> r = (*conn)->Exec(q->sql, q->params);
    if (!r.ok()) {
      return r.status();
    }
    PageBuilder page(*q);
    for (int i = 0; i < r->rows(); ++i) {
      if (page.full()) {
        return std::move(page).Finish(/*more=*/true);
      }
      ResultRow result_row{*r, i};
      int64_t id = 0;
      const StoredRow row = ReadStoredRow(result_row, &id);
      if (absl::Status added = page.Add(row, id); !added.ok()) {
        return added;
      }
    }
    return std::move(page).Finish(/*more=*/false);
  }

  absl::StatusOr<std::vector<std::string>> ListChains() override {
    absl::StatusOr<std::unique_ptr<Conn>> conn = Conn::Open(conninfo_);
    if (!conn.ok()) {
      return conn.status();
    }
    absl::StatusOr<Result> r = (*conn)->Exec(
        "SELECT DISTINCT chain_id FROM records UNION SELECT chain_id FROM checkpoints "
        "ORDER BY 1");
    if (!r.ok()) {
      return r.status();
    }
    std::vector<std::string> chains;
    for (int i = 0; i < r->rows(); ++i) {
      chains.push_back(r->Get(i, 0));
    }
    return chains;
  }

  absl::StatusOr<Checkpoint> GetCheckpoint(const std::string& chain_id) override {
    absl::StatusOr<std::unique_ptr<Conn>> conn = Conn::Open(conninfo_);
    if (!conn.ok()) {
      return conn.status();
    }
    return CheckpointOn(**conn, chain_id);
  }

  absl::Status ScanChain(const std::string& chain_id,
                         const std::function<bool(const StoredRow&)>& visit) override {
    absl::StatusOr<std::unique_ptr<Conn>> conn = Conn::Open(conninfo_);
    if (!conn.ok()) {
      return conn.status();
    }
    // Pages of 1000 by sequence keep memory bounded on long chains.
    int64_t after = -1;
    while (true) {
      absl::StatusOr<Result> r = (*conn)->Exec(
          absl::StrCat("SELECT ", kRowColumns,
                       " FROM records WHERE chain_id = $1 AND sequence > $2 ORDER BY sequence "
                       "LIMIT 1000"),
          {SqlText(chain_id), SqlInt(after)});
      if (!r.ok()) {
        return r.status();
      }
      for (int i = 0; i < r->rows(); ++i) {
        ResultRow result_row{*r, i};
        int64_t id = 0;
        const StoredRow row = ReadStoredRow(result_row, &id);
        after = row.sequence;
        if (!visit(row)) {
          return absl::OkStatus();
        }
      }
      if (r->rows() < 1000) {
        return absl::OkStatus();
      }
    }
  }

  absl::StatusOr<std::string> HashAt(const std::string& chain_id, int64_t sequence) override {
    absl::StatusOr<std::unique_ptr<Conn>> conn = Conn::Open(conninfo_);
    if (!conn.ok()) {
      return conn.status();
    }
    absl::StatusOr<Result> r = (*conn)->Exec(ForDialect(kHashAtSql, Dialect::kPostgres),
                                             {SqlText(chain_id), SqlInt(sequence)});
    if (!r.ok()) {
      return r.status();
    }
    if (r->rows() == 0) {
      return absl::NotFoundError(absl::StrCat("chain ", chain_id, " has no record ", sequence));
    }
    return r->GetBytes(0, 0);
  }

  // PostgreSQL has no whole-database check like SQLite's; amcheck (a contrib extension an
  // administrator installs) checks each B-tree index's structure against its invariants. The
  // chain walk reads every row from the table itself, so damaged heap rows surface there.
  absl::StatusOr<std::vector<std::string>> CheckIntegrity(std::string* note) override {
    absl::StatusOr<std::unique_ptr<Conn>> conn = Conn::Open(conninfo_);
    if (!conn.ok()) {
      return conn.status();
    }
    std::vector<std::string> problems;
    absl::StatusOr<Result> installed =
        (*conn)->Exec("SELECT count(*) FROM pg_extension WHERE extname = 'amcheck'", {});
    if (!installed.ok()) {
      return installed.status();
    }
    if (installed->GetInt(0, 0) == 0) {
      if (note != nullptr) {
        *note = "amcheck is not installed: index check skipped";
      }
      return problems;
    }
    if (note != nullptr) {
      *note = "amcheck bt_index_check";
    }
    absl::StatusOr<Result> indexes = (*conn)->Exec(
        "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = "
        "i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = "
        "ic.relam WHERE c.relname IN ('records', 'checkpoints') AND am.amname = 'btree' AND "
        "c.relnamespace = to_regnamespace(current_schema())",
        {});
    if (!indexes.ok()) {
      return indexes.status();
    }
    for (int i = 0; i < indexes->rows(); ++i) {
      const std::string index = indexes->Get(i, 0);
      absl::StatusOr<Result> r =
          (*conn)->Exec("SELECT bt_index_check($1::regclass, true)", {SqlText(index)});
      if (!r.ok()) {
        problems.push_back(absl::StrCat("index ", index, ": ", r.status().message()));
      }
    }
    return problems;
  }

  absl::StatusOr<int64_t> DeleteBefore(int64_t cutoff_us, const CutSigner& sign) override {
    absl::StatusOr<std::vector<std::string>> chains = ListChains();
    if (!chains.ok()) {
      return chains.status();
    }
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Connect(); !s.ok()) {
      return s;
    }
    int64_t removed = 0;
    for (const std::string& chain : *chains) {
      absl::StatusOr<int64_t> n = CutChain(chain, cutoff_us, sign);
      if (!n.ok()) {
        if (writer_->ok()) {
          writer_->Run("ROLLBACK").IgnoreError();
        }
        DropIfBroken();
        return n.status();
      }
      removed += *n;
    }
    return removed;
  }

  absl::StatusOr<std::vector<ExportChain>> ListExportChains() override {
    absl::MutexLock lock(&export_mu_);
    if (absl::Status s = ConnectExport(); !s.ok()) {
      return s;
    }
    absl::StatusOr<Result> r = export_conn_->Exec(ForDialect(kExportChainsSql, Dialect::kPostgres));
    if (!r.ok()) {
      DropExportIfBroken();
      return r.status();
    }
    std::vector<ExportChain> chains;
    for (int i = 0; i < r->rows(); ++i) {
      ExportChain chain;
      chain.chain_id = r->Get(i, 0);
      chain.checkpoint_sequence = r->GetInt(i, 2);
      chain.head_sequence = std::max(r->GetInt(i, 1), chain.checkpoint_sequence);
      chains.push_back(std::move(chain));
    }
    return chains;
  }

  absl::StatusOr<std::vector<StoredRow>> ReadChainAfter(const std::string& chain_id,
                                                        int64_t after_sequence,
                                                        int limit) override {
    absl::MutexLock lock(&export_mu_);
    if (absl::Status s = ConnectExport(); !s.ok()) {
      return s;
    }
    absl::StatusOr<Result> r = export_conn_->Exec(
        absl::StrCat("SELECT ", kRowColumns,
                     " FROM records WHERE chain_id = $1 AND sequence > $2 ORDER BY sequence "
                     "LIMIT $3"),
        {SqlText(chain_id), SqlInt(after_sequence), SqlInt(limit)});
    if (!r.ok()) {
      DropExportIfBroken();
      return r.status();
    }
    std::vector<StoredRow> rows;
    rows.reserve(static_cast<size_t>(r->rows()));
    for (int i = 0; i < r->rows(); ++i) {
      ResultRow result_row{*r, i};
      int64_t id = 0;
      rows.push_back(ReadStoredRow(result_row, &id));
    }
    return rows;
  }

  absl::StatusOr<std::map<std::string, int64_t>> LoadExportCursors(
      const std::string& sink) override {
    absl::MutexLock lock(&export_mu_);
    if (absl::Status s = ConnectExport(); !s.ok()) {
      return s;
    }
    absl::StatusOr<Result> r =
        export_conn_->Exec(ForDialect(kCursorsSql, Dialect::kPostgres), {SqlText(sink)});
    if (!r.ok()) {
      DropExportIfBroken();
      return r.status();
    }
    std::map<std::string, int64_t> cursors;
    for (int i = 0; i < r->rows(); ++i) {
      cursors[r->Get(i, 0)] = r->GetInt(i, 1);
    }
    return cursors;
  }

  absl::StatusOr<ExportLease> AcquireExportLease(const std::string& sink, const std::string& owner,
                                                 absl::Duration ttl) override {
    ExportLease lease;
    absl::Status status = InExportTransaction([&](Conn& conn) -> absl::Status {
      if (absl::Status s =
              conn.Run(ForDialect(kAcquireLeaseSql, Dialect::kPostgres),
                       {SqlText(sink), SqlText(owner), SqlInt(absl::ToInt64Microseconds(ttl))});
          !s.ok()) {
        return s;
      }
      absl::StatusOr<Result> r =
          conn.Exec(ForDialect(kLeaseSql, Dialect::kPostgres), {SqlText(sink)});
      if (!r.ok()) {
        return r.status();
      }
      if (r->rows() == 1) {
        lease.owner = r->Get(0, 0);
        lease.epoch = r->GetInt(0, 1);
        lease.held = lease.owner == owner && r->GetInt(0, 2) == 1;
      }
      return absl::OkStatus();
    });
    if (!status.ok()) {
      return status;
    }
    return lease;
  }

  absl::Status ReleaseExportLease(const std::string& sink, const std::string& owner) override {
    return InExportTransaction([&](Conn& conn) {
      return conn.Run(ForDialect(kReleaseLeaseSql, Dialect::kPostgres),
                      {SqlText(sink), SqlText(owner)});
    });
  }

  absl::Status AdvanceExportCursors(
      const std::string& sink, const std::string& owner, int64_t epoch,
      const std::vector<std::pair<std::string, int64_t>>& cursors) override {
    return InExportTransaction([&](Conn& conn) -> absl::Status {
      // The fence locks the lease row until COMMIT: a replica taking the lease over waits for
      // this transaction and then reads the cursor it wrote.
      absl::StatusOr<Result> fence =
          conn.Exec(absl::StrCat(ForDialect(kFenceLeaseSql, Dialect::kPostgres), " RETURNING 1"),
                    {SqlText(sink), SqlText(owner), SqlInt(epoch)});
      if (!fence.ok()) {
        return fence.status();
      }
      if (fence->rows() != 1) {
        return absl::FailedPreconditionError(
            absl::StrCat("export lease of sink ", sink, " is no longer held by ", owner));
      }
      const std::string advance = ForDialect(kAdvanceCursorSql, Dialect::kPostgres);
      for (const auto& [chain, sequence] : cursors) {
        if (absl::Status s = conn.Run(advance, {SqlText(sink), SqlText(chain), SqlInt(sequence)});
            !s.ok()) {
          return s;
        }
      }
      return absl::OkStatus();
    });
  }

 private:
  // The exporter's own connection, apart from the writer's: a lease waiting on another
  // replica's lock never holds up Append.
  absl::Status ConnectExport() ABSL_EXCLUSIVE_LOCKS_REQUIRED(export_mu_) {
    if (export_conn_ != nullptr) {
      return absl::OkStatus();
    }
    absl::StatusOr<std::unique_ptr<Conn>> conn = Conn::Open(conninfo_);
    if (!conn.ok()) {
      return conn.status();
    }
    export_conn_ = *std::move(conn);
    return absl::OkStatus();
  }
  void DropExportIfBroken() ABSL_EXCLUSIVE_LOCKS_REQUIRED(export_mu_) {
    if (export_conn_ != nullptr && !export_conn_->ok()) {
      export_conn_.reset();
    }
  }
  absl::Status InExportTransaction(const std::function<absl::Status(Conn&)>& body) {
    absl::MutexLock lock(&export_mu_);
    if (absl::Status s = ConnectExport(); !s.ok()) {
      return s;
    }
    absl::Status status = export_conn_->Run("BEGIN");
    if (status.ok()) {
      status = body(*export_conn_);
    }
    if (status.ok()) {
      status = export_conn_->Run("COMMIT");
    }
    if (!status.ok() && export_conn_->ok()) {
      export_conn_->Run("ROLLBACK").IgnoreError();
    }
    DropExportIfBroken();
    return status;
  }

  void DropIfBroken() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writer_ != nullptr && !writer_->ok()) {
      writer_.reset();
    }
  }

  absl::Status Connect() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writer_ != nullptr) {
      return absl::OkStatus();
    }
    absl::StatusOr<std::unique_ptr<Conn>> conn = Conn::Open(conninfo_);
    if (!conn.ok()) {
      return conn.status();
    }
    if (absl::Status s = Migrate(**conn); !s.ok()) {
      return s;
    }
    writer_ = *std::move(conn);
    return absl::OkStatus();
  }

  // See ColumnBackfill (kClusterMigration, kTraceIdMigration); runs inside the migration's
  // transaction.
  static absl::Status BackfillColumn(Conn& conn, const ColumnBackfill& backfill) {
    const std::string batch_sql = ForDialect(kClusterBackfillBatchSql, Dialect::kPostgres);
    const std::string set_sql = ForDialect(backfill.set_sql, Dialect::kPostgres);
    int64_t last = 0;
    for (;;) {
      absl::StatusOr<Result> batch = conn.Exec(batch_sql, {SqlInt(last)});
      if (!batch.ok()) {
        return batch.status();
      }
      if (batch->rows() == 0) {
        return absl::OkStatus();
      }
      for (int i = 0; i < batch->rows(); ++i) {
        last = batch->GetInt(i, 0);
        if (std::string value = backfill.value_of(batch->GetBytes(i, 1)); !value.empty()) {
          if (absl::Status s = conn.Run(set_sql, {SqlText(value), SqlInt(last)}); !s.ok()) {
            return s;
          }
        }
      }
    }
  }

  // Each migration runs once, in order, under an advisory lock so that replicas starting
  // together do not race.
  static absl::Status Migrate(Conn& conn) {
    const std::vector<std::string>& migrations = Migrations(Dialect::kPostgres);
    absl::Status s = conn.Run("BEGIN");
    // One fixed advisory lock id for podgate audit migrations.
    if (s.ok()) {
      s = conn.Run("SELECT pg_advisory_xact_lock(123650166563188)");
    }
    if (s.ok()) {
      s = conn.Run(
          "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
          "applied_us BIGINT NOT NULL)");
    }
    for (size_t i = 0; s.ok() && i < migrations.size(); ++i) {
      const int64_t version = static_cast<int64_t>(i + 1);
      absl::StatusOr<Result> r =
          conn.Exec("SELECT 1 FROM schema_migrations WHERE version = $1", {SqlInt(version)});
      s = r.status();
      if (s.ok() && r->rows() == 0) {
        s = conn.Run(migrations[i]);
        if (const ColumnBackfill* backfill = BackfillFor(static_cast<int>(version));
            s.ok() && backfill != nullptr) {
          s = BackfillColumn(conn, *backfill);
        }
        if (s.ok()) {
          s = conn.Run(
              "INSERT INTO schema_migrations VALUES ($1, "
              "(extract(epoch from clock_timestamp()) * 1000000)::bigint)",
              {SqlInt(version)});
        }
      }
    }
    if (s.ok()) {
      s = conn.Run("COMMIT");
    }
    if (!s.ok() && conn.ok()) {
      conn.Run("ROLLBACK").IgnoreError();
    }
    return s;
  }

  static absl::StatusOr<Checkpoint> CheckpointOn(Conn& conn, const std::string& chain_id) {
    absl::StatusOr<Result> r =
        conn.Exec(ForDialect(kCheckpointSql, Dialect::kPostgres), {SqlText(chain_id)});
    if (!r.ok()) {
      return r.status();
    }
    Checkpoint cp;
    cp.chain_id = chain_id;
    if (r->rows() == 1) {
      cp.sequence = r->GetInt(0, 0);
      cp.hash = r->GetBytes(0, 1);
      cp.signed_time_us = r->GetInt(0, 2);
      cp.key_id = r->Get(0, 3);
      cp.signature = r->GetBytes(0, 4);
    }
    return cp;
  }

  // The common case in one COPY: no id of the batch is stored yet (only a client resending
  // after a failure repeats one). When one is, the COPY fails on the event id's unique index,
  // the transaction rolls back and the batch goes again through AppendChecked.
  absl::Status AppendLocked(ChainHead* head, const std::vector<const AuditEvent*>& events,
                            int64_t stored_time_us, const char* begin)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ChainHead next = *head;
    std::unordered_set<std::string_view> seen;
    seen.reserve(events.size());
    CopyEncoder copy;
    copy.Reserve(events.size() * 512);
    for (const AuditEvent* event : events) {
      if (!seen.insert(event->id()).second) {
        continue;  // a repeat inside this batch: stored once
      }
      const StoredRow row = LinkNext(&next, *event, stored_time_us);
      if (HasNulInText(row)) {
        return AppendChecked(head, events, stored_time_us, begin);
      }
      copy.Row(row);
    }
    Conn& conn = *writer_;
    if (absl::Status s = conn.Run(begin); !s.ok()) {
      return s;
    }
    std::string constraint;
    absl::Status status = conn.CopyIn(CopyRecordsSql(), std::move(copy).Finish(), &constraint);
    if (!status.ok()) {
      if (!absl::IsAborted(status) || constraint != kEventIdConstraint || !conn.ok()) {
        return status;
      }
      if (absl::Status s = conn.Run("ROLLBACK"); !s.ok()) {
        return s;
      }
      return AppendChecked(head, events, stored_time_us, begin);
    }
    if (absl::Status s = conn.Run("COMMIT"); !s.ok()) {
      return s;
    }
    *head = next;
    return absl::OkStatus();
  }

  // Finds the ids stored already first, then inserts the others with multi-row INSERTs.
  absl::Status AppendChecked(ChainHead* head, const std::vector<const AuditEvent*>& events,
                             int64_t stored_time_us, const char* begin)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Conn& conn = *writer_;
    if (absl::Status s = conn.Run(begin); !s.ok()) {
      return s;
    }
    // Which ids are stored already (one round trip per chunk).
    std::unordered_set<std::string> stored;
    for (size_t start = 0; start < events.size(); start += kInsertChunk) {
      const size_t end = std::min(events.size(), start + kInsertChunk);
      std::vector<SqlParam> params;
      std::vector<std::string> holes;
      for (size_t i = start; i < end; ++i) {
        params.push_back(SqlText(events[i]->id()));
        holes.push_back(absl::StrCat("$", params.size()));
      }
      absl::StatusOr<Result> r =
          conn.Exec(absl::StrCat("SELECT event_id FROM records WHERE event_id IN (",
                                 absl::StrJoin(holes, ","), ")"),
                    params);
      if (!r.ok()) {
        return r.status();
      }
      for (int i = 0; i < r->rows(); ++i) {
        stored.insert(r->Get(i, 0));
      }
    }
    std::vector<std::vector<SqlParam>> rows;
    for (const AuditEvent* event : events) {
      // Stored before: acked again, stored once; a repeat inside this batch likewise.
      if (!stored.insert(event->id()).second) {
        continue;
      }
      rows.push_back(RecordParams(LinkNext(head, *event, stored_time_us)));
    }
    for (size_t start = 0; start < rows.size(); start += kInsertChunk) {
      const size_t end = std::min(rows.size(), start + kInsertChunk);
      std::vector<SqlParam> params;
      std::vector<std::string> tuples;
      for (size_t i = start; i < end; ++i) {
        const size_t base = params.size();
        for (SqlParam& p : rows[i]) {
          params.push_back(std::move(p));
        }
        std::vector<std::string> holes;
        for (size_t k = base + 1; k <= params.size(); ++k) {
          holes.push_back(absl::StrCat("$", k));
        }
        tuples.push_back(absl::StrCat("(", absl::StrJoin(holes, ","), ")"));
      }
      if (absl::Status s =
              conn.Run(absl::StrCat(kInsertRecordsSql, absl::StrJoin(tuples, ",")), params);
          !s.ok()) {
        return s;
      }
    }
    return conn.Run("COMMIT");
  }

  absl::StatusOr<int64_t> CutChain(const std::string& chain, int64_t cutoff_us,
                                   const CutSigner& sign) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Conn& conn = *writer_;
    if (absl::Status s = conn.Run("BEGIN"); !s.ok()) {
      return s;
    }
    absl::StatusOr<Result> find = conn.Exec(ForDialect(kCutPointSql, Dialect::kPostgres),
                                            {SqlText(chain), SqlInt(cutoff_us)});
    if (!find.ok()) {
      return find.status();
    }
    if (find->rows() == 0) {
      if (absl::Status s = conn.Run("COMMIT"); !s.ok()) {
        return s;
      }
      return 0;
    }
    const int64_t cut = find->GetInt(0, 0);
    const std::string hash = find->GetBytes(0, 1);
    absl::StatusOr<Result> del = conn.Exec(
        "WITH d AS (DELETE FROM records WHERE chain_id = $1 AND sequence <= $2 "
        "RETURNING 1) SELECT count(*) FROM d",
        {SqlText(chain), SqlInt(cut)});
    if (!del.ok()) {
      return del.status();
    }
    const int64_t removed = del->GetInt(0, 0);
    Checkpoint signed_cut;
    signed_cut.chain_id = chain;
    signed_cut.sequence = cut;
    signed_cut.hash = hash;
    if (sign) {
      if (absl::Status s = sign(&signed_cut); !s.ok()) {
        return s;
      }
    }
    if (absl::Status s = conn.Run(ForDialect(kUpsertCheckpointSql, Dialect::kPostgres),
                                  {SqlText(chain), SqlInt(cut), SqlBytes(hash), SqlInt(cutoff_us),
                                   SqlInt(signed_cut.signed_time_us), SqlText(signed_cut.key_id),
                                   SqlBytes(signed_cut.signature)});
        !s.ok()) {
      return s;
    }
    if (absl::Status s = conn.Run("COMMIT"); !s.ok()) {
      return s;
    }
    return removed;
  }

  const std::string conninfo_;
  absl::Mutex mu_;
  std::unique_ptr<Conn> writer_ ABSL_GUARDED_BY(mu_);
  absl::Mutex export_mu_;
  std::unique_ptr<Conn> export_conn_ ABSL_GUARDED_BY(export_mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenPostgresStore(const std::string& conninfo) {
  auto store = std::make_unique<PostgresStore>(conninfo);
  if (absl::Status s = store->Init(); !s.ok()) {
    return s;
  }
  return store;
}

}  // namespace podgate::audit
