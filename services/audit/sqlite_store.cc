// The SQLite store: one file in WAL mode. Append returns once its transaction is committed and
// the WAL fdatasync'ed; the group-commit writer acks a batch (AppendUnsynced, then Sync on
// another thread) while it commits the next. One connection writes (the group-commit
// writer); every read opens its own read-only connection, which WAL lets run beside the writer.
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "audit/store.h"
#include "audit/store_sql.h"

namespace podgate::audit {
namespace {

using podgate::common::v1::AuditEvent;

absl::Status SqliteError(sqlite3* db, int rc, absl::string_view what) {
  const std::string message =
      absl::StrCat("sqlite: ", what, ": ", db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      return absl::AbortedError(message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(message);
    default:
      // Full disk, I/O errors, a locked or read-only file, a missing directory: the store is
      // unavailable until an operator or time fixes it.
      return absl::UnavailableError(message);
  }
}

// What SQLite's planner is told about the records table (sqlite_stat1: per index, the rows and
// the rows per distinct value of each leading column list), written by the writer connection
// after the migrations. Without statistics SQLite cannot tell a selective filter from a broad
// one and breaks ties between equally matched indexes by their order in the schema: a Query by
// cluster and user then read every record of the cluster. These are the shape of an audit
// table, not counts (a session's records are few, a trace's fewer, a user's and a pod's
// thousands, a cluster's most of the table, a chain all of it), so they hold at any size and
// the plans do not change as the table grows. Every index of the table has its row: one
// without would get SQLite's defaults, which rate any equality as narrow. The store never runs
// ANALYZE, and an ANALYZE run by hand is undone at the next start. docs/audit.md, "Query";
// StoreQueryPlanTest checks the plans they give.
constexpr const char* kPlannerStats[][2] = {
    {nullptr, "1000000"},  // the table's own row: its rows
    {"records_user", "1000000 5000 1"},
    {"records_namespace_pod", "1000000 50000 2000 1"},
    {"records_pod", "1000000 2000 1"},
    {"records_cluster", "1000000 500000 1"},
    {"records_session", "1000000 50 1"},
    {"records_trace", "1000000 4 1"},
    {"records_event_time", "1000000 1"},
    {"records_kind_verdict", "1000000 50000 20000 1"},
    {"records_rule", "1000000 50000 1"},
    {"records_stored_time", "1000000 1000000 1"},
    // The unique constraints' own indexes: the event id, and the chain with its sequence.
    {"sqlite_autoindex_records_1", "1000000 1"},
    {"sqlite_autoindex_records_2", "1000000 1000000 1"},
};

class Db {
 public:
  static absl::StatusOr<std::unique_ptr<Db>> Open(const std::string& path, bool read_only,
                                                  absl::Duration busy_timeout = absl::Seconds(5)) {
    sqlite3* raw = nullptr;
    const int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    const int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
    auto db = std::unique_ptr<Db>(new Db(raw));
    if (rc != SQLITE_OK) {
      return SqliteError(raw, rc, absl::StrCat("opening ", path));
    }
    sqlite3_busy_timeout(raw, static_cast<int>(absl::ToInt64Milliseconds(busy_timeout)));
    return db;
  }
  ~Db() { sqlite3_close_v2(db_); }
  sqlite3* get() { return db_; }

  absl::Status Exec(const std::string& sql) {
    char* error = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
    sqlite3_free(error);
    if (rc != SQLITE_OK) {
      return SqliteError(db_, rc, sql.substr(0, 40));
    }
    return absl::OkStatus();
  }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

class Stmt {
 public:
  Stmt(Db* db, const std::string& sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db->get(), sql.c_str(), -1, &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  absl::Status status() const {
    return rc_ == SQLITE_OK ? absl::OkStatus() : SqliteError(db_->get(), rc_, "prepare");
  }
  void Bind(int i, const std::string& text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  }
  void BindBlob(int i, const std::string& blob) {
    sqlite3_bind_blob(stmt_, i, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  // Without a copy: `text` must stay valid until the statement is reset.
  void BindStatic(int i, absl::string_view text) {
    sqlite3_bind_text(stmt_, i, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
  }
  void BindBlobStatic(int i, absl::string_view blob) {
    sqlite3_bind_blob(stmt_, i, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
  }
  void Bind(int i, const SqlParam& p) {
    switch (p.type) {
      case SqlParam::Type::kText:
        Bind(i, p.text);
        break;
      case SqlParam::Type::kInt:
        Bind(i, p.int_value);
        break;
      case SqlParam::Type::kBytes:
        BindBlob(i, p.text);
        break;
    }
  }
  // SQLITE_ROW: true; SQLITE_DONE: false; else error.
  absl::StatusOr<bool> Step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) {
      return true;
    }
    if (rc == SQLITE_DONE) {
      return false;
    }
    return SqliteError(db_->get(), rc, "step");
  }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) {
    const void* p = sqlite3_column_blob(stmt_, col);
    const int n = sqlite3_column_bytes(stmt_, col);
    return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), n);
  }
  std::string Bytes(int col) { return Text(col); }
  bool IsNull(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

 private:
  Db* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string path, absl::Duration busy_timeout)
      : path_(std::move(path)), busy_timeout_(busy_timeout) {}
  ~SqliteStore() override {
    absl::MutexLock lock(&mu_);
    Disconnect();
  }

  absl::Status Init() {
    absl::MutexLock lock(&mu_);
    return Connect();
  }

  std::string kind() const override { return "sqlite"; }

  absl::StatusOr<ChainHead> LoadHead(const std::string& chain_id) override {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Connect(); !s.ok()) {
      return s;
    }
    Stmt s(writer_.get(), ForDialect(kLastRecordSql, Dialect::kSqlite));
    if (!s.status().ok()) {
      return s.status();
    }
    s.Bind(1, chain_id);
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) {
      return row.status();
    }
    if (*row) {
      ChainHead head;
      head.chain_id = chain_id;
      head.sequence = s.Int(0);
      head.hash = s.Bytes(1);
      return head;
    }
    absl::StatusOr<Checkpoint> cp = CheckpointOn(writer_.get(), chain_id);
    if (!cp.ok()) {
      return cp.status();
    }
    return HeadAfterCheckpoint(chain_id, *cp);
  }

  absl::Status Append(ChainHead* head, const std::vector<const AuditEvent*>& events,
                      int64_t stored_time_us) override {
    ChainHead next = *head;
    if (absl::Status s = AppendUnsynced(&next, events, stored_time_us); !s.ok()) {
      return s;
    }
    if (absl::Status s = Sync(); !s.ok()) {
      return s;
    }
    *head = next;
    return absl::OkStatus();
  }

  // The connection commits with synchronous=FULL, so COMMIT itself syncs the WAL; Sync's
  // fdatasync then finds nothing left to write and marks the batch durable for readers. (With
  // synchronous=NORMAL and the fsync in Sync only, measured on the 2-core machine, the committer
  // ran ahead in smaller transactions and ingest was no faster, pipelined up to a third slower:
  // docs/performance.md, Audit.) Sync stays the one place that declares records durable.
  absl::Status AppendUnsynced(ChainHead* head, const std::vector<const AuditEvent*>& events,
                              int64_t stored_time_us) override {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Connect(); !s.ok()) {
      return s;
    }
    ChainHead next = *head;
    absl::Status status = AppendLocked(&next, events, stored_time_us);
    if (!status.ok()) {
      writer_->Exec("ROLLBACK").IgnoreError();
      // A failed connection (e.g. a full disk) is reopened on the next call.
      if (absl::IsUnavailable(status)) {
        Disconnect();
      }
      return status;
    }
    {
      absl::MutexLock durable_lock(&durable_mu_);
      synced_.try_emplace(head->chain_id, head->sequence);
      committed_[head->chain_id] = next.sequence;
    }
    *head = next;
    return absl::OkStatus();
  }

  // The same BEGIN IMMEDIATE .. COMMIT on the write connection as Append: it waits out the
  // busy timeout for a lock another process holds, and the changed page goes to the WAL (an
  // existing row's update too), so a full disk or a file-size limit fails it like an append.
  absl::Status CheckWritable(const std::string& chain_id) override {
    return InWriteTransaction([&](Db* db) -> absl::Status {
      Stmt s(db, ForDialect(kHeartbeatSql, Dialect::kSqlite));
      if (!s.status().ok()) {
        return s.status();
      }
      s.Bind(1, chain_id);
      return s.Step().status();
    });
  }

  absl::Status Sync() override {
    absl::MutexLock lock(&sync_mu_);
    return SyncWalLocked();
  }

  absl::StatusOr<QueryPage> Query(const podgate::audit::v1::QueryRequest& request) override {
    absl::StatusOr<SqlQuery> q = BuildQuery(request, Dialect::kSqlite);
    if (!q.ok()) {
      return q.status();
    }
    absl::StatusOr<std::unique_ptr<Db>> db = Db::Open(path_, /*read_only=*/true);
    if (!db.ok()) {
      return db.status();
    }
    Stmt s(db->get(), q->sql);
    if (!s.status().ok()) {
      return s.status();
    }
    for (size_t i = 0; i < q->params.size(); ++i) {
      s.Bind(static_cast<int>(i + 1), q->params[i]);
    }
    PageBuilder page(*q);
    while (true) {
      absl::StatusOr<bool> more = s.Step();
      if (!more.ok()) {
        return more.status();
      }
      if (!*more || page.full()) {
        return std::move(page).Finish(*more);
      }
      int64_t id = 0;
      const StoredRow row = ReadStoredRow(s, &id);
      if (absl::Status added = page.Add(row, id); !added.ok()) {
        return added;
      }
    }
  }

  absl::StatusOr<std::vector<std::string>> ListChains() override {
    absl::StatusOr<std::unique_ptr<Db>> db = Db::Open(path_, true);
    if (!db.ok()) {
      return db.status();
    }
    Stmt s(db->get(),
           "SELECT chain_id FROM records UNION SELECT chain_id FROM checkpoints ORDER BY 1");
    if (!s.status().ok()) {
      return s.status();
    }
    std::vector<std::string> chains;
    while (true) {
      absl::StatusOr<bool> more = s.Step();
      if (!more.ok()) {
        return more.status();
      }
      if (!*more) {
        return chains;
      }
      chains.push_back(s.Text(0));
    }
  }

  absl::StatusOr<Checkpoint> GetCheckpoint(const std::string& chain_id) override {
    absl::StatusOr<std::unique_ptr<Db>> db = Db::Open(path_, true);
    if (!db.ok()) {
      return db.status();
    }
    return CheckpointOn(db->get(), chain_id);
  }

  absl::Status ScanChain(const std::string& chain_id,
                         const std::function<bool(const StoredRow&)>& visit) override {
    absl::StatusOr<std::unique_ptr<Db>> db = Db::Open(path_, true);
    if (!db.ok()) {
      return db.status();
    }
    Stmt s(db->get(), absl::StrCat("SELECT ", kRowColumns,
                                   " FROM records WHERE chain_id = ?1 ORDER BY sequence"));
    if (!s.status().ok()) {
      return s.status();
    }
    s.Bind(1, chain_id);
    while (true) {
      absl::StatusOr<bool> more = s.Step();
      if (!more.ok()) {
        return more.status();
      }
      int64_t id = 0;
      if (!*more || !visit(ReadStoredRow(s, &id))) {
        return absl::OkStatus();
      }
    }
  }

  absl::StatusOr<std::string> HashAt(const std::string& chain_id, int64_t sequence) override {
    absl::StatusOr<std::unique_ptr<Db>> db = Db::Open(path_, true);
    if (!db.ok()) {
      return db.status();
    }
    Stmt s(db->get(), ForDialect(kHashAtSql, Dialect::kSqlite));
    if (!s.status().ok()) {
      return s.status();
    }
    s.Bind(1, chain_id);
    s.Bind(2, sequence);
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) {
      return row.status();
    }
    if (!*row) {
      return absl::NotFoundError(absl::StrCat("chain ", chain_id, " has no record ", sequence));
    }
    return s.Bytes(0);
  }

  absl::StatusOr<std::vector<std::string>> CheckIntegrity(std::string* note) override {
    absl::StatusOr<std::unique_ptr<Db>> db = Db::Open(path_, true);
    if (!db.ok()) {
      return db.status();
    }
    if (note != nullptr) {
      *note = "PRAGMA integrity_check";
    }
    // The full check: besides the b-trees' structure it matches every index entry with its
    // row, which quick_check skips.
    Stmt s(db->get(), "PRAGMA integrity_check(100)");
    std::vector<std::string> problems;
    if (!s.status().ok()) {
      problems.push_back(std::string(s.status().message()));
      return problems;
    }
    while (true) {
      absl::StatusOr<bool> more = s.Step();
      if (!more.ok()) {
        problems.push_back(std::string(more.status().message()));
        return problems;
      }
      if (!*more) {
        return problems;
      }
      if (std::string line = s.Text(0); line != "ok") {
        problems.push_back(std::move(line));
      }
    }
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
        writer_->Exec("ROLLBACK").IgnoreError();
        return n.status();
      }
      removed += *n;
    }
    absl::MutexLock sync_lock(&sync_mu_);
    if (absl::Status s = SyncWalLocked(); !s.ok()) {
      return s;
    }
    return removed;
  }

  absl::StatusOr<std::vector<ExportChain>> ListExportChains() override {
    absl::StatusOr<std::unique_ptr<Db>> db = Db::Open(path_, true);
    if (!db.ok()) {
      return db.status();
    }
    Stmt s(db->get(), ForDialect(kExportChainsSql, Dialect::kSqlite));
    if (!s.status().ok()) {
      return s.status();
    }
    std::vector<ExportChain> chains;
    while (true) {
      absl::StatusOr<bool> more = s.Step();
      if (!more.ok()) {
        return more.status();
      }
      if (!*more) {
        return chains;
      }
      ExportChain chain;
      chain.chain_id = s.Text(0);
      chain.checkpoint_sequence = s.Int(2);
      chain.head_sequence = std::max(s.Int(1), chain.checkpoint_sequence);
      if (std::optional<int64_t> limit = DurableLimit(chain.chain_id); limit.has_value()) {
        chain.head_sequence =
            std::max(std::min(chain.head_sequence, *limit), chain.checkpoint_sequence);
      }
      chains.push_back(std::move(chain));
    }
  }

  absl::StatusOr<std::vector<StoredRow>> ReadChainAfter(const std::string& chain_id,
                                                        int64_t after_sequence,
                                                        int limit) override {
    const std::optional<int64_t> durable = DurableLimit(chain_id);
    if (durable.has_value() && after_sequence >= *durable) {
      return std::vector<StoredRow>{};
    }
    absl::StatusOr<std::unique_ptr<Db>> db = Db::Open(path_, true);
    if (!db.ok()) {
      return db.status();
    }
    Stmt s(db->get(),
           absl::StrCat("SELECT ", kRowColumns,
                        " FROM records WHERE chain_id = ?1 AND sequence > ?2 ORDER BY sequence "
                        "LIMIT ?3"));
    if (!s.status().ok()) {
      return s.status();
    }
    s.Bind(1, chain_id);
    s.Bind(2, after_sequence);
    s.Bind(3, static_cast<int64_t>(limit));
    std::vector<StoredRow> rows;
    while (true) {
      absl::StatusOr<bool> more = s.Step();
      if (!more.ok()) {
        return more.status();
      }
      if (!*more) {
        return rows;
      }
      int64_t id = 0;
      StoredRow row = ReadStoredRow(s, &id);
      if (durable.has_value() && row.sequence > *durable) {
        return rows;
      }
      rows.push_back(std::move(row));
    }
  }

  absl::StatusOr<std::map<std::string, int64_t>> LoadExportCursors(
      const std::string& sink) override {
    absl::StatusOr<std::unique_ptr<Db>> db = Db::Open(path_, true);
    if (!db.ok()) {
      return db.status();
    }
    Stmt s(db->get(), ForDialect(kCursorsSql, Dialect::kSqlite));
    if (!s.status().ok()) {
      return s.status();
    }
    s.Bind(1, sink);
    std::map<std::string, int64_t> cursors;
    while (true) {
      absl::StatusOr<bool> more = s.Step();
      if (!more.ok()) {
        return more.status();
      }
      if (!*more) {
        return cursors;
      }
      cursors[s.Text(0)] = s.Int(1);
    }
  }

  absl::StatusOr<ExportLease> AcquireExportLease(const std::string& sink, const std::string& owner,
                                                 absl::Duration ttl) override {
    ExportLease lease;
    absl::Status status = InWriteTransaction([&](Db* db) -> absl::Status {
      Stmt take(db, ForDialect(kAcquireLeaseSql, Dialect::kSqlite));
      if (!take.status().ok()) {
        return take.status();
      }
      take.Bind(1, sink);
      take.Bind(2, owner);
      take.Bind(3, absl::ToInt64Microseconds(ttl));
      if (absl::StatusOr<bool> r = take.Step(); !r.ok()) {
        return r.status();
      }
      Stmt read(db, ForDialect(kLeaseSql, Dialect::kSqlite));
      if (!read.status().ok()) {
        return read.status();
      }
      read.Bind(1, sink);
      absl::StatusOr<bool> row = read.Step();
      if (!row.ok()) {
        return row.status();
      }
      if (*row) {
        lease.owner = read.Text(0);
        lease.epoch = read.Int(1);
        lease.held = lease.owner == owner && read.Int(2) == 1;
      }
      return absl::OkStatus();
    });
    if (!status.ok()) {
      return status;
    }
    return lease;
  }

  absl::Status ReleaseExportLease(const std::string& sink, const std::string& owner) override {
    return InWriteTransaction([&](Db* db) -> absl::Status {
      Stmt s(db, ForDialect(kReleaseLeaseSql, Dialect::kSqlite));
      s.Bind(1, sink);
      s.Bind(2, owner);
      return s.Step().status();
    });
  }

  absl::Status AdvanceExportCursors(
      const std::string& sink, const std::string& owner, int64_t epoch,
      const std::vector<std::pair<std::string, int64_t>>& cursors) override {
    return InWriteTransaction([&](Db* db) -> absl::Status {
      Stmt fence(db, ForDialect(kFenceLeaseSql, Dialect::kSqlite));
      if (!fence.status().ok()) {
        return fence.status();
      }
      fence.Bind(1, sink);
      fence.Bind(2, owner);
      fence.Bind(3, epoch);
      if (absl::StatusOr<bool> r = fence.Step(); !r.ok()) {
        return r.status();
      }
      if (sqlite3_changes(db->get()) != 1) {
        return absl::FailedPreconditionError(
            absl::StrCat("export lease of sink ", sink, " is no longer held by ", owner));
      }
      Stmt advance(db, ForDialect(kAdvanceCursorSql, Dialect::kSqlite));
      if (!advance.status().ok()) {
        return advance.status();
      }
      for (const auto& [chain, sequence] : cursors) {
        advance.Bind(1, sink);
        advance.Bind(2, chain);
        advance.Bind(3, sequence);
        absl::StatusOr<bool> r = advance.Step();
        advance.Reset();
        if (!r.ok()) {
          return r.status();
        }
      }
      return absl::OkStatus();
    });
  }

 private:
  // Runs `body` inside BEGIN IMMEDIATE .. COMMIT on the write connection; rolls back when it
  // fails.
  absl::Status InWriteTransaction(const std::function<absl::Status(Db*)>& body) {
    absl::MutexLock lock(&mu_);
    if (absl::Status s = Connect(); !s.ok()) {
      return s;
    }
    absl::Status status = writer_->Exec("BEGIN IMMEDIATE");
    if (status.ok()) {
      status = body(writer_.get());
    }
    if (status.ok()) {
      status = writer_->Exec("COMMIT");
      if (status.ok()) {
        absl::MutexLock sync_lock(&sync_mu_);
        return SyncWalLocked();
      }
    }
    if (!status.ok()) {
      writer_->Exec("ROLLBACK").IgnoreError();
      if (absl::IsUnavailable(status)) {
        Disconnect();
      }
    }
    return status;
  }

  absl::Status Connect() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (broken_.exchange(false)) {
      Disconnect();
    }
    if (writer_ != nullptr) {
      return absl::OkStatus();
    }
    absl::StatusOr<std::unique_ptr<Db>> db = Db::Open(path_, /*read_only=*/false, busy_timeout_);
    if (!db.ok()) {
      return db.status();
    }
    for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL"}) {
      if (absl::Status s = (*db)->Exec(pragma); !s.ok()) {
        return s;
      }
    }
    if (absl::Status s = Migrate(db->get()); !s.ok()) {
      return s;
    }
    if (absl::Status s = WritePlannerStats(db->get()); !s.ok()) {
      return s;
    }
    // The WAL, opened for Sync's fdatasync, and its folder synced once, so that the WAL's own
    // directory entry is durable.
    const std::string wal_path = path_ + "-wal";
    const int wal_fd = open(wal_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (wal_fd < 0) {
      return absl::UnavailableError(
          absl::StrCat("sqlite: opening ", wal_path, ": ", std::strerror(errno)));
    }
    {
      absl::MutexLock sync_lock(&sync_mu_);
      if (wal_fd_ >= 0) {
        close(wal_fd_);
      }
      wal_fd_ = wal_fd;
      wal_path_ = wal_path;
      // Whatever an earlier connection (or process) committed is durable from here on.
      if (absl::Status s = FdatasyncWalLocked(); !s.ok()) {
        return s;
      }
      absl::MutexLock lock(&durable_mu_);
      committed_.clear();
      synced_.clear();
    }
    const std::string folder = std::filesystem::path(path_).parent_path().string();
    if (const int dir_fd = open(folder.empty() ? "." : folder.c_str(), O_RDONLY | O_CLOEXEC);
        dir_fd >= 0) {
      const int rc = fsync(dir_fd);
      const int error = errno;
      close(dir_fd);
      if (rc != 0) {
        return absl::UnavailableError(
            absl::StrCat("sqlite: syncing the folder of ", path_, ": ", std::strerror(error)));
      }
    }
    // Append's statements, prepared once per connection.
    auto exists = std::make_unique<Stmt>(db->get(), "SELECT 1 FROM records WHERE event_id = ?1");
    auto insert = std::make_unique<Stmt>(
        db->get(), absl::StrCat(kInsertRecordsSql,
                                "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                                "?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)"));
    for (Stmt* s : {exists.get(), insert.get()}) {
      if (!s->status().ok()) {
        return s->status();
      }
    }
    writer_ = *std::move(db);
    exists_ = std::move(exists);
    insert_ = std::move(insert);
    return absl::OkStatus();
  }

  // Drops the write connection (reopened by the next Connect), its statements first. A Sync
  // until then fails: what the connection committed is settled by its close (SQLite
  // checkpoints the WAL into the database and syncs it) or not at all.
  void Disconnect() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    exists_.reset();
    insert_.reset();
    writer_.reset();
    absl::MutexLock sync_lock(&sync_mu_);
    if (wal_fd_ >= 0) {
      close(wal_fd_);
      wal_fd_ = -1;
    }
  }

  // Readers that hand records on (the exporter, the live tail) see a chain only up to its
  // last synced record: a record is visible to other connections once committed, a moment
  // before Sync makes it durable, and a crash of the machine in that moment would take it back
  // after it was exported. Empty: the whole chain is durable.
  std::optional<int64_t> DurableLimit(const std::string& chain_id) {
    absl::MutexLock lock(&durable_mu_);
    auto committed = committed_.find(chain_id);
    auto synced = synced_.find(chain_id);
    if (committed == committed_.end() || synced == synced_.end() ||
        synced->second >= committed->second) {
      return std::nullopt;
    }
    return synced->second;
  }

  absl::Status SyncWalLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_) {
    std::map<std::string, int64_t> covered;
    {
      absl::MutexLock lock(&durable_mu_);
      covered = committed_;
    }
    absl::Status status = FdatasyncWalLocked();
    if (status.ok()) {
      absl::MutexLock lock(&durable_mu_);
      for (const auto& [chain, sequence] : covered) {
        int64_t& synced = synced_[chain];
        synced = std::max(synced, sequence);
      }
    }
    return status;
  }

  absl::Status FdatasyncWalLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_) {
    if (wal_fd_ < 0) {
      return absl::UnavailableError("sqlite: the write connection was closed before its sync");
    }
    if (fdatasync(wal_fd_) != 0) {
      const int error = errno;
      // The file's state is unknown now (a failed fsync may drop the dirty pages): reconnect
      // before the next write.
      broken_.store(true);
      return absl::UnavailableError(
          absl::StrCat("sqlite: syncing ", wal_path_, ": ", std::strerror(error)));
    }
    return absl::OkStatus();
  }

  // kPlannerStats in one transaction; connections opened after it plan with them (each read
  // opens its own). `ANALYZE sqlite_schema` creates sqlite_stat1 without reading the records.
  static absl::Status WritePlannerStats(Db* db) {
    absl::Status s = db->Exec("BEGIN IMMEDIATE");
    if (!s.ok()) {
      return s;
    }
    s = db->Exec("ANALYZE sqlite_schema");
    if (s.ok()) {
      s = db->Exec("DELETE FROM sqlite_stat1 WHERE tbl = 'records'");
    }
    Stmt insert(db, "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('records', ?1, ?2)");
    if (s.ok()) {
      s = insert.status();
    }
    for (const auto& [index, stat] : kPlannerStats) {
      if (!s.ok()) {
        break;
      }
      insert.Reset();  // and its bindings: the table's own row binds no index (NULL)
      if (index != nullptr) {
        insert.BindStatic(1, index);
      }
      insert.BindStatic(2, stat);
      s = insert.Step().status();
    }
    if (s.ok()) {
      s = db->Exec("COMMIT");
    }
    if (!s.ok()) {
      db->Exec("ROLLBACK").IgnoreError();
    }
    return s;
  }

  // Each migration runs once, in order, inside a transaction that also records its version.
  static absl::Status Migrate(Db* db) {
    const std::vector<std::string>& migrations = Migrations(Dialect::kSqlite);
    if (absl::Status s =
            db->Exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                     "applied_us INTEGER NOT NULL)");
        !s.ok()) {
      return s;
    }
    for (size_t i = 0; i < migrations.size(); ++i) {
      const int64_t version = static_cast<int64_t>(i + 1);
      if (absl::Status s = db->Exec("BEGIN IMMEDIATE"); !s.ok()) {
        return s;
      }
      Stmt check(db, "SELECT 1 FROM schema_migrations WHERE version = ?1");
      check.Bind(1, version);
      absl::StatusOr<bool> applied = check.Step();
      absl::Status s = applied.status();
      if (s.ok() && !*applied) {
        s = db->Exec(migrations[i]);
        if (const ColumnBackfill* backfill = BackfillFor(static_cast<int>(version));
            s.ok() && backfill != nullptr) {
          s = BackfillColumn(db, *backfill);
        }
        if (s.ok()) {
          s = db->Exec(
              absl::StrCat("INSERT INTO schema_migrations VALUES (", version,
                           ", CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER))"));
        }
      }
      check.Reset();
      if (s.ok()) {
        s = db->Exec("COMMIT");
      }
      if (!s.ok()) {
        db->Exec("ROLLBACK").IgnoreError();
        return s;
      }
    }
    return absl::OkStatus();
  }

  // See ColumnBackfill (kClusterMigration, kTraceIdMigration); runs inside the migration's
  // transaction.
  static absl::Status BackfillColumn(Db* db, const ColumnBackfill& backfill) {
    Stmt batch(db, ForDialect(kClusterBackfillBatchSql, Dialect::kSqlite));
    Stmt set(db, ForDialect(backfill.set_sql, Dialect::kSqlite));
    for (Stmt* s : {&batch, &set}) {
      if (!s->status().ok()) {
        return s->status();
      }
    }
    int64_t last = 0;
    for (;;) {
      std::vector<std::pair<int64_t, std::string>> updates;
      bool any = false;
      batch.Bind(1, last);
      for (;;) {
        absl::StatusOr<bool> row = batch.Step();
        if (!row.ok()) {
          batch.Reset();
          return row.status();
        }
        if (!*row) {
          break;
        }
        any = true;
        last = batch.Int(0);
        if (std::string value = backfill.value_of(batch.Bytes(1)); !value.empty()) {
          updates.emplace_back(last, std::move(value));
        }
      }
      batch.Reset();
      if (!any) {
        return absl::OkStatus();
      }
      for (const auto& [id, value] : updates) {
        set.Bind(1, value);
        set.Bind(2, id);
        absl::StatusOr<bool> done = set.Step();
        set.Reset();
        if (!done.ok()) {
          return done.status();
        }
      }
    }
  }

  static absl::StatusOr<Checkpoint> CheckpointOn(Db* db, const std::string& chain_id) {
    Stmt s(db, ForDialect(kCheckpointSql, Dialect::kSqlite));
    if (!s.status().ok()) {
      return s.status();
    }
    s.Bind(1, chain_id);
    Checkpoint cp;
    cp.chain_id = chain_id;
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) {
      return row.status();
    }
    if (*row) {
      cp.sequence = s.Int(0);
      cp.hash = s.Bytes(1);
      cp.signed_time_us = s.Int(2);
      cp.key_id = s.Text(3);
      cp.signature = s.Bytes(4);
    }
    return cp;
  }

  absl::Status AppendLocked(ChainHead* head, const std::vector<const AuditEvent*>& events,
                            int64_t stored_time_us) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Db* db = writer_.get();
    if (absl::Status s = db->Exec("BEGIN IMMEDIATE"); !s.ok()) {
      return s;
    }
    // Binds straight from the row: it outlives the step and the reset.
    struct Binder {
      Stmt* s;
      void Text(int i, absl::string_view v) { s->BindStatic(i, v); }
      void Int64(int i, int64_t v) { s->Bind(i, v); }
      void Int32(int i, int32_t v) { s->Bind(i, static_cast<int64_t>(v)); }
      void Bytes(int i, absl::string_view v) { s->BindBlobStatic(i, v); }
    } binder{insert_.get()};
    for (const AuditEvent* event : events) {
      exists_->BindStatic(1, event->id());
      absl::StatusOr<bool> found = exists_->Step();
      exists_->Reset();
      if (!found.ok()) {
        return found.status();
      }
      if (*found) {
        continue;  // stored before: acked again, stored once
      }
      const StoredRow row = LinkNext(head, *event, stored_time_us);
      VisitRecordValues(row, binder);
      absl::StatusOr<bool> done = insert_->Step();
      insert_->Reset();
      if (!done.ok()) {
        return done.status();
      }
    }
    return db->Exec("COMMIT");
  }

  absl::StatusOr<int64_t> CutChain(const std::string& chain, int64_t cutoff_us,
                                   const CutSigner& sign) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Db* db = writer_.get();
    if (absl::Status s = db->Exec("BEGIN IMMEDIATE"); !s.ok()) {
      return s;
    }
    Stmt find(db, ForDialect(kCutPointSql, Dialect::kSqlite));
    if (!find.status().ok()) {
      return find.status();
    }
    find.Bind(1, chain);
    find.Bind(2, cutoff_us);
    absl::StatusOr<bool> row = find.Step();
    if (!row.ok()) {
      return row.status();
    }
    if (!*row) {
      if (absl::Status s = db->Exec("COMMIT"); !s.ok()) {
        return s;
      }
      return 0;
    }
    const int64_t cut = find.Int(0);
    const std::string hash = find.Bytes(1);
    find.Reset();
    Stmt del(db, "DELETE FROM records WHERE chain_id = ?1 AND sequence <= ?2");
    del.Bind(1, chain);
    del.Bind(2, cut);
    if (absl::StatusOr<bool> r = del.Step(); !r.ok()) {
      return r.status();
    }
    const int64_t removed = sqlite3_changes(db->get());
    Checkpoint signed_cut;
    signed_cut.chain_id = chain;
    signed_cut.sequence = cut;
    signed_cut.hash = hash;
    if (sign) {
      if (absl::Status s = sign(&signed_cut); !s.ok()) {
        return s;
      }
    }
    Stmt cp(db, ForDialect(kUpsertCheckpointSql, Dialect::kSqlite));
    cp.Bind(1, chain);
    cp.Bind(2, cut);
    cp.BindBlob(3, hash);
    cp.Bind(4, cutoff_us);
    cp.Bind(5, signed_cut.signed_time_us);
    cp.Bind(6, signed_cut.key_id);
    cp.BindBlob(7, signed_cut.signature);
    if (absl::StatusOr<bool> r = cp.Step(); !r.ok()) {
      return r.status();
    }
    if (absl::Status s = db->Exec("COMMIT"); !s.ok()) {
      return s;
    }
    return removed;
  }

  const std::string path_;
  const absl::Duration busy_timeout_;
  absl::Mutex mu_;
  std::unique_ptr<Db> writer_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Stmt> exists_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Stmt> insert_ ABSL_GUARDED_BY(mu_);
  // The write connection's WAL, for Sync (taken inside mu_ when both are held).
  absl::Mutex sync_mu_ ABSL_ACQUIRED_AFTER(mu_);
  int wal_fd_ ABSL_GUARDED_BY(sync_mu_) = -1;
  std::string wal_path_ ABSL_GUARDED_BY(sync_mu_);
  // A sync failed: Connect reopens the write connection.
  std::atomic<bool> broken_{false};
  // Per chain written through this store with commits not synced yet: the newest committed
  // and the newest synced sequence (DurableLimit).
  absl::Mutex durable_mu_ ABSL_ACQUIRED_AFTER(sync_mu_);
  std::map<std::string, int64_t> committed_ ABSL_GUARDED_BY(durable_mu_);
  std::map<std::string, int64_t> synced_ ABSL_GUARDED_BY(durable_mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path,
                                                       absl::Duration busy_timeout) {
  auto store = std::make_unique<SqliteStore>(path, busy_timeout);
  if (absl::Status s = store->Init(); !s.ok()) {
    return s;
  }
  return store;
}

}  // namespace podgate::audit
