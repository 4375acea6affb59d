// The two stores behind one interface, each against the real database: SQLite files and a real
// PostgreSQL 15 server started by the test. Covers idempotent appends, chain continuity across
// reopening, several chains in one database, tamper detection by Verify after direct edits,
// every Query filter, cursor paging, retention with checkpoints and migrations.
#include "audit/store.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "audit/checkpoint_sign.h"
#include "audit/query_sql.h"
#include "audit/store_sql.h"
#include "audit/verify.h"
#include "audit_testing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/test_pki.h"

namespace podgate::audit {
namespace {

using ::podgate::audit::v1::QueryRequest;
using ::podgate::common::v1::AuditEvent;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// One server per test process, started on first use (gtest_discover_tests runs each test in
// its own process, so this costs one initdb per PostgreSQL test) and stopped by the
// environment's TearDown.
std::unique_ptr<testing::PostgresServer>& PostgresSlot() {
  static auto* slot = new std::unique_ptr<testing::PostgresServer>();
  return *slot;
}

testing::PostgresServer* SharedPostgres() {
  if (PostgresSlot() == nullptr) {
    auto started = testing::PostgresServer::Start();
    if (!started.ok()) {
      ADD_FAILURE() << started.status();
      return nullptr;
    }
    PostgresSlot() = *std::move(started);
  }
  return PostgresSlot().get();
}

class PostgresEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { PostgresSlot().reset(); }
};

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "sqlite") {
      tmp_ = std::make_unique<testing::TempDir>("podgate-audit-store");
      dir_ = tmp_->path();
      url_ = absl::StrCat("sqlite://", dir_, "/audit.db");
    } else {
      ASSERT_NE(SharedPostgres(), nullptr);
      static std::atomic<int> counter{0};
      database_ = absl::StrCat("t", getpid(), "_", counter++);
      auto url = SharedPostgres()->CreateDatabase(database_);
      ASSERT_TRUE(url.ok()) << url.status();
      url_ = *url;
    }
    store_ = Open();
  }

  std::unique_ptr<Store> Open() {
    auto store = OpenStore(url_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  bool postgres() const { return GetParam() == "postgresql"; }

  // Runs SQL directly on the database, bypassing the store.
  void Tamper(const std::string& sql) {
    if (postgres()) {
      ASSERT_TRUE(SharedPostgres()->Exec(database_, sql).ok()) << sql;
      return;
    }
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(absl::StrCat(dir_, "/audit.db").c_str(), &db), SQLITE_OK);
    char* error = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
    EXPECT_EQ(rc, SQLITE_OK) << (error != nullptr ? error : "") << " in " << sql;
    sqlite3_free(error);
    sqlite3_close(db);
  }

  void Append(ChainHead* head, const std::vector<AuditEvent>& events, int64_t stored_us = 1000) {
    std::vector<const AuditEvent*> pointers;
    for (const AuditEvent& e : events) {
      pointers.push_back(&e);
    }
    ASSERT_TRUE(store_->Append(head, pointers, stored_us).ok());
  }

  ChainHead Head(const std::string& chain = "c1") {
    auto head = store_->LoadHead(chain);
    EXPECT_TRUE(head.ok()) << head.status();
    return head.ok() ? *head : ChainHead{};
  }

  // Appends events e1..en on chain c1, one per transaction.
  void AppendN(int n) {
    ChainHead head = Head();
    for (int i = 1; i <= n; ++i) {
      Append(&head, {testing::MakeEvent(absl::StrCat("e", i))}, 1000 * i);
    }
  }

  podgate::audit::v1::ChainReport VerifyOne(const std::string& chain = "c1") {
    auto report = VerifyChain(*store_, chain);
    EXPECT_TRUE(report.ok()) << report.status();
    return report.ok() ? *report : podgate::audit::v1::ChainReport{};
  }

  std::vector<std::string> Ids(const QueryRequest& request, std::string* next = nullptr) {
    auto page = store_->Query(request);
    EXPECT_TRUE(page.ok()) << page.status();
    std::vector<std::string> ids;
    if (page.ok()) {
      for (const auto& record : page->records) {
        ids.push_back(record.event().id());
      }
      if (next != nullptr) {
        *next = page->next_page_token;
      }
    }
    return ids;
  }

  // One value read directly from the database, bypassing the store.
  std::string Value(const std::string& sql) {
    if (postgres()) {
      auto value = SharedPostgres()->QueryValue(database_, sql);
      EXPECT_TRUE(value.ok()) << value.status() << " in " << sql;
      return value.ok() ? *value : "";
    }
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open(absl::StrCat(dir_, "/audit.db").c_str(), &db), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
    std::string value;
    if (sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* text = sqlite3_column_text(stmt, 0);
      value = text != nullptr ? reinterpret_cast<const char*>(text) : "";
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return value;
  }

  std::unique_ptr<testing::TempDir> tmp_;
  std::string dir_;
  std::string database_;
  std::string url_;
  std::unique_ptr<Store> store_;

  void TearDown() override { store_.reset(); }
};

TEST_P(StoreTest, AppendLinksRecordsAndStoresAResentIdOnce) {
  ChainHead head = Head();
  EXPECT_EQ(head.sequence, 0);
  EXPECT_EQ(head.hash, std::string(kHashBytes, '\0'));
  Append(&head, {testing::MakeEvent("a"), testing::MakeEvent("b"), testing::MakeEvent("c")});
  EXPECT_EQ(head.sequence, 3);
  // "b" again, and "d" twice in one batch.
  Append(&head, {testing::MakeEvent("b"), testing::MakeEvent("d"), testing::MakeEvent("d")});
  EXPECT_EQ(head.sequence, 4);
  EXPECT_THAT(Ids(QueryRequest()), ElementsAre("a", "b", "c", "d"));

  auto page = store_->Query(QueryRequest());
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->records[0].previous_hash(), std::string(kHashBytes, '\0'));
  for (size_t i = 1; i < page->records.size(); ++i) {
    EXPECT_EQ(page->records[i].sequence(), static_cast<int64_t>(i + 1));
    EXPECT_EQ(page->records[i].previous_hash(), page->records[i - 1].hash());
  }
  EXPECT_EQ(page->records[3].hash(), head.hash);
  const auto report = VerifyOne();
  EXPECT_TRUE(report.intact()) << report.problem();
  EXPECT_EQ(report.records(), 4);
}

// A batch as large as the writer makes (PostgreSQL loads it with one COPY in binary format,
// SQLite binds each row without copying): every column of every row must be what Verify
// derives from the stored event, non-ASCII text included; a batch holding a stored id in its
// middle (PostgreSQL: the COPY fails on the id's unique index and the batch is stored the
// careful way) and repeats of its own still stores each new id once, in order.
TEST_P(StoreTest, LargeBatchesStoreEveryColumnAndSkipStoredIds) {
  ChainHead head = Head();
  std::vector<AuditEvent> events;
  for (int i = 0; i < 1500; ++i) {
    AuditEvent e = testing::MakeEvent(absl::StrCat("big", i), i % 2 == 0 ? "zoë" : "bob", "shop",
                                      absl::StrCat("api-", i % 7),
                                      absl::StrCat("jcmd ", i, " Thread.print ünïcødé"));
    e.mutable_principal()->add_groups("sre-日本");
    e.mutable_target()->set_cluster("eu-1");
    e.mutable_target()->set_container("app");
    e.set_trace_id(absl::StrCat("4bf92f3577b34da6a3ce929d0e0e", 1000 + i));
    if (i % 3 == 0) {
      e.set_kind(podgate::common::v1::EVENT_KIND_DECISION);
      e.mutable_decision()->set_verdict(podgate::common::v1::VERDICT_DENY);
      e.mutable_decision()->set_rule("no-jcmd");
    }
    events.push_back(std::move(e));
  }
  Append(&head, events, 5000);
  EXPECT_EQ(head.sequence, 1500);
  auto report = VerifyOne();
  EXPECT_TRUE(report.intact()) << report.problem();
  EXPECT_EQ(report.records(), 1500);
  QueryRequest r;
  r.add_users("zoë");
  r.add_groups("sre-日本");
  r.add_pods("api-3");
  r.set_page_size(1000);
  auto page = store_->Query(r);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->records.size(), 107u);  // even i below 1500 with i % 7 == 3
  EXPECT_EQ(page->records[0].event().id(), "big10");
  EXPECT_EQ(page->records[0].event().command_request().line(), "jcmd 10 Thread.print ünïcødé");

  // 300 events: "big700" (stored) in the middle, "new5" twice.
  std::vector<AuditEvent> more;
  for (int i = 0; i < 300; ++i) {
    more.push_back(testing::MakeEvent(absl::StrCat("new", i)));
  }
  more[150] = testing::MakeEvent("big700");
  more[200] = testing::MakeEvent("new5");
  Append(&head, more, 6000);
  EXPECT_EQ(head.sequence, 1500 + 298);
  const ChainHead stored = Head();
  EXPECT_EQ(stored.sequence, head.sequence);
  EXPECT_EQ(stored.hash, head.hash);
  report = VerifyOne();
  EXPECT_TRUE(report.intact()) << report.problem();
  EXPECT_EQ(report.records(), 1798);
  QueryRequest last;
  last.set_newest_first(true);
  last.set_page_size(2);
  EXPECT_THAT(Ids(last), ElementsAre("new299", "new298"));
}

// AppendUnsynced commits without waiting for durability (SQLite: the WAL is fdatasync'ed by
// Sync); what the exporter and the live tail read stops at the last synced record, so they never
// hand on a record a machine crash could still take back. Append and Sync make it all durable.
TEST_P(StoreTest, ExportReadsStopAtTheLastSyncedRecord) {
  ChainHead head = Head();
  Append(&head, {testing::MakeEvent("a"), testing::MakeEvent("b")});
  std::vector<AuditEvent> later = {testing::MakeEvent("c"), testing::MakeEvent("d")};
  ASSERT_TRUE(store_->AppendUnsynced(&head, {&later[0], &later[1]}, 2000).ok());
  EXPECT_EQ(head.sequence, 4);
  const int64_t visible = postgres() ? 4 : 2;  // PostgreSQL's COMMIT is durable already
  auto rows = store_->ReadChainAfter("c1", 0, 10);
  ASSERT_TRUE(rows.ok()) << rows.status();
  EXPECT_EQ(static_cast<int64_t>(rows->size()), visible);
  auto chains = store_->ListExportChains();
  ASSERT_TRUE(chains.ok()) << chains.status();
  ASSERT_EQ(chains->size(), 1u);
  EXPECT_EQ((*chains)[0].head_sequence, visible);
  rows = store_->ReadChainAfter("c1", 2, 10);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(static_cast<int64_t>(rows->size()), visible - 2);

  ASSERT_TRUE(store_->Sync().ok());
  rows = store_->ReadChainAfter("c1", 0, 10);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 4u);
  EXPECT_EQ((*rows)[3].event_id, "d");
  chains = store_->ListExportChains();
  ASSERT_TRUE(chains.ok());
  EXPECT_EQ((*chains)[0].head_sequence, 4);
  // Append is durable on return: nothing held back.
  Append(&head, {testing::MakeEvent("e")});
  rows = store_->ReadChainAfter("c1", 4, 10);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_TRUE(VerifyOne().intact());
}

TEST_P(StoreTest, ReopenedStoreContinuesTheChain) {
  ChainHead head = Head();
  Append(&head, {testing::MakeEvent("a"), testing::MakeEvent("b")});
  store_.reset();
  store_ = Open();
  ASSERT_NE(store_, nullptr);
  ChainHead reloaded = Head();
  EXPECT_EQ(reloaded.sequence, 2);
  EXPECT_EQ(reloaded.hash, head.hash);
  Append(&reloaded, {testing::MakeEvent("c")});
  EXPECT_TRUE(VerifyOne().intact());
  EXPECT_EQ(VerifyOne().records(), 3);
}

TEST_P(StoreTest, MigrationsRunOnce) {
  store_.reset();
  store_ = Open();
  store_ = Open();
  ASSERT_NE(store_, nullptr);
  if (postgres()) {
    EXPECT_EQ(*SharedPostgres()->QueryValue(database_, "SELECT count(*) FROM schema_migrations"),
              absl::StrCat(Migrations(Dialect::kPostgres).size()));
  } else {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(absl::StrCat(dir_, "/audit.db").c_str(), &db), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM schema_migrations", -1, &stmt, nullptr);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    EXPECT_EQ(sqlite3_column_int(stmt, 0), static_cast<int>(Migrations(Dialect::kSqlite).size()));
    sqlite3_finalize(stmt);
    // WAL with full fsync on commit.
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "wal");
    sqlite3_finalize(stmt);
    sqlite3_close(db);
  }
}

// A result record names its command line, so argv_contains finds a command's request and its
// result (with the exit code) together. Result records stored before migration 6 (argv_text
// empty) get theirs from the event bytes when the store opens, and still verify.
TEST_P(StoreTest, ResultRecordsAreFoundByTheirCommandLineAlsoWhenStoredBeforeMigration6) {
  auto result = [](const std::string& id, const std::string& line) {
    AuditEvent e = testing::MakeEvent(id, "alice", "shop", "orders", "");
    e.clear_command_request();
    e.set_kind(podgate::common::v1::EVENT_KIND_COMMAND_RESULT);
    e.mutable_command_result()->set_line(line);
    e.mutable_command_result()->set_exit_code(3);
    return e;
  };
  ChainHead head = Head();
  Append(&head, {testing::MakeEvent("req", "alice", "shop", "orders", "jstack 1"),
                 result("res", "jstack 1"),
                 testing::MakeEvent("other", "alice", "shop", "orders", "free -m"),
                 result("other-res", "free -m")});
  QueryRequest q;
  q.set_argv_contains("jstack");
  EXPECT_THAT(Ids(q), ElementsAre("req", "res"));

  // As an audit before migration 6 stored them: result records with an empty argv_text.
  store_.reset();
  Tamper(absl::StrCat("UPDATE records SET argv_text = '' WHERE kind = ",
                      static_cast<int>(podgate::common::v1::EVENT_KIND_COMMAND_RESULT)));
  Tamper("DELETE FROM schema_migrations WHERE version = 6");
  store_ = Open();
  ASSERT_NE(store_, nullptr);
  EXPECT_THAT(Ids(q), ElementsAre("req", "res"));
  q.set_argv_contains("free");
  EXPECT_THAT(Ids(q), ElementsAre("other", "other-res"));
  EXPECT_TRUE(VerifyOne().intact());
}

TEST_P(StoreTest, TwoWritersKeepTwoIntactChainsInOneDatabase) {
  std::unique_ptr<Store> other = Open();
  ASSERT_NE(other, nullptr);
  ChainHead h1 = Head("replica-1");
  auto h2 = other->LoadHead("replica-2");
  ASSERT_TRUE(h2.ok());
  for (int i = 0; i < 5; ++i) {
    Append(&h1, {testing::MakeEvent(absl::StrCat("one-", i))});
    AuditEvent e = testing::MakeEvent(absl::StrCat("two-", i));
    ASSERT_TRUE(other->Append(&*h2, {&e}, 1000).ok());
  }
  // An id the other replica stored is not stored again.
  Append(&h1, {testing::MakeEvent("two-0")});
  EXPECT_EQ(h1.sequence, 5);
  auto result = VerifyChains(*store_, "");
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->intact());
  ASSERT_EQ(result->chains_size(), 2);
  EXPECT_EQ(result->chains(0).chain_id(), "replica-1");
  EXPECT_EQ(result->chains(0).records(), 5);
  EXPECT_EQ(result->chains(1).records(), 5);
  EXPECT_EQ(VerifyChains(*store_, "nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(StoreTest, VerifyDetectsAnEditedEvent) {
  AppendN(5);
  Tamper(postgres() ? "UPDATE records SET event = decode(replace(encode(event, 'hex'), "
                      "encode('jstack'::bytea, 'hex'), encode('jmap!!'::bytea, 'hex')), 'hex') "
                      "WHERE sequence = 3"
                    : "UPDATE records SET event = CAST(replace(CAST(event AS TEXT), 'jstack', "
                      "'jmap!!') AS BLOB) WHERE sequence = 3");
  const auto report = VerifyOne();
  EXPECT_FALSE(report.intact());
  EXPECT_EQ(report.first_broken_sequence(), 3);
  EXPECT_THAT(report.problem(), HasSubstr("hash mismatch"));
}

TEST_P(StoreTest, VerifyDetectsAnEditedColumn) {
  AppendN(5);
  Tamper("UPDATE records SET user_name = 'mallory' WHERE sequence = 2");
  const auto report = VerifyOne();
  EXPECT_FALSE(report.intact());
  EXPECT_EQ(report.first_broken_sequence(), 2);
  EXPECT_THAT(report.problem(), HasSubstr("column user_name"));
}

TEST_P(StoreTest, VerifyDetectsAnEditedStoredTime) {
  AppendN(5);
  Tamper("UPDATE records SET stored_time_us = stored_time_us + 1 WHERE sequence = 4");
  const auto report = VerifyOne();
  EXPECT_FALSE(report.intact());
  EXPECT_EQ(report.first_broken_sequence(), 4);
}

TEST_P(StoreTest, VerifyDetectsADeletedRow) {
  AppendN(5);
  Tamper("DELETE FROM records WHERE sequence = 3");
  const auto report = VerifyOne();
  EXPECT_FALSE(report.intact());
  EXPECT_EQ(report.first_broken_sequence(), 4);
  EXPECT_THAT(report.problem(), HasSubstr("sequence gap after 2"));
}

TEST_P(StoreTest, VerifyDetectsReorderedRows) {
  AppendN(5);
  Tamper(
      "UPDATE records SET sequence = -1 WHERE sequence = 2; "
      "UPDATE records SET sequence = 2 WHERE sequence = 3; "
      "UPDATE records SET sequence = 3 WHERE sequence = -1");
  const auto report = VerifyOne();
  EXPECT_FALSE(report.intact());
  EXPECT_EQ(report.first_broken_sequence(), 2);
  EXPECT_THAT(report.problem(), HasSubstr("previous_hash"));
}

TEST_P(StoreTest, VerifyDetectsARehashedRecord) {
  // An attacker who edits a record and recomputes its hash breaks the next link.
  AppendN(5);
  Tamper(postgres() ? "UPDATE records SET hash = sha256(hash) WHERE sequence = 2"
                    : "UPDATE records SET hash = randomblob(32) WHERE sequence = 2");
  const auto report = VerifyOne();
  EXPECT_FALSE(report.intact());
  EXPECT_EQ(report.first_broken_sequence(), 2);
}

TEST_P(StoreTest, QueryFiltersEachField) {
  ChainHead head = Head();
  std::vector<AuditEvent> events = {
      testing::MakeEvent("1", "alice", "shop", "api-0", "jstack 1"),
      testing::MakeEvent("2", "bob", "shop", "api-1", "jmap -histo 1"),
      testing::MakeEvent("3", "alice", "pay", "db-0", "ps aux"),
  };
  events[1].mutable_principal()->clear_groups();
  events[1].mutable_principal()->add_groups("sre");
  events[2].set_kind(podgate::common::v1::EVENT_KIND_DECISION);
  events[2].mutable_decision()->set_verdict(podgate::common::v1::VERDICT_DENY);
  events[2].mutable_decision()->set_rule("no-ps");
  events[2].mutable_target()->set_container("sidecar");
  events[2].mutable_time()->set_seconds(1795000100);
  Append(&head, events);

  QueryRequest r;
  r.add_users("alice");
  EXPECT_THAT(Ids(r), ElementsAre("1", "3"));
  r.add_users("bob");
  EXPECT_THAT(Ids(r), ElementsAre("1", "2", "3"));
  r.add_namespaces("shop");
  EXPECT_THAT(Ids(r), ElementsAre("1", "2"));  // AND across fields
  QueryRequest q;
  q.add_groups("sre");
  EXPECT_THAT(Ids(q), ElementsAre("2"));
  q.Clear();
  q.add_groups("dev");
  EXPECT_THAT(Ids(q), ElementsAre("1", "3"));
  q.Clear();
  q.add_pods("api-1");
  EXPECT_THAT(Ids(q), ElementsAre("2"));
  q.Clear();
  q.add_containers("sidecar");
  EXPECT_THAT(Ids(q), ElementsAre("3"));
  q.Clear();
  q.add_kinds(podgate::common::v1::EVENT_KIND_DECISION);
  EXPECT_THAT(Ids(q), ElementsAre("3"));
  q.Clear();
  q.add_verdicts(podgate::common::v1::VERDICT_DENY);
  EXPECT_THAT(Ids(q), ElementsAre("3"));
  q.add_verdicts(podgate::common::v1::VERDICT_ALLOW);  // any of the values
  EXPECT_THAT(Ids(q), ElementsAre("3"));
  q.Clear();
  q.add_kinds(podgate::common::v1::EVENT_KIND_COMMAND_RESULT);
  EXPECT_THAT(Ids(q), ElementsAre());
  q.add_kinds(podgate::common::v1::EVENT_KIND_COMMAND_REQUEST);
  EXPECT_THAT(Ids(q), ElementsAre("1", "2"));
  q.add_kinds(podgate::common::v1::EVENT_KIND_DECISION);
  EXPECT_THAT(Ids(q), ElementsAre("1", "2", "3"));
  q.add_verdicts(podgate::common::v1::VERDICT_ALLOW);  // AND with the kinds
  EXPECT_THAT(Ids(q), ElementsAre());
  q.Clear();
  q.add_rules("no-ps");
  EXPECT_THAT(Ids(q), ElementsAre("3"));
  q.Clear();
  q.add_session_ids("s-bob");
  EXPECT_THAT(Ids(q), ElementsAre("2"));
  q.Clear();
  q.set_argv_contains("-histo");
  EXPECT_THAT(Ids(q), ElementsAre("2"));
  q.set_argv_contains("%");  // no wildcard meaning
  EXPECT_THAT(Ids(q), ElementsAre());
  q.Clear();
  q.mutable_start_time()->set_seconds(1795000050);
  EXPECT_THAT(Ids(q), ElementsAre("3"));
  q.Clear();
  q.mutable_end_time()->set_seconds(1795000050);
  EXPECT_THAT(Ids(q), ElementsAre("1", "2"));
  q.Clear();
  q.add_users("alice' OR '1'='1");
  EXPECT_THAT(Ids(q), ElementsAre());
  // Prefixes of user names, alone or with exact names (any of them), never a wildcard.
  q.Clear();
  q.add_user_prefixes("al");
  EXPECT_THAT(Ids(q), ElementsAre("1", "3"));
  q.add_user_prefixes("b");
  EXPECT_THAT(Ids(q), ElementsAre("1", "2", "3"));
  q.Clear();
  q.add_users("bob");
  q.add_user_prefixes("ali");
  EXPECT_THAT(Ids(q), ElementsAre("1", "2", "3"));
  q.Clear();
  q.add_user_prefixes("alice");
  EXPECT_THAT(Ids(q), ElementsAre("1", "3"));
  q.Clear();
  q.add_user_prefixes("alicex");
  EXPECT_THAT(Ids(q), ElementsAre());
  q.Clear();
  q.add_user_prefixes("lic");  // a prefix, not a substring
  EXPECT_THAT(Ids(q), ElementsAre());
  q.Clear();
  q.add_user_prefixes("%");
  EXPECT_THAT(Ids(q), ElementsAre());
  q.Clear();
  q.add_user_prefixes("_lice");
  EXPECT_THAT(Ids(q), ElementsAre());
  q.Clear();
  q.add_user_prefixes("a' OR '1'='1");
  EXPECT_THAT(Ids(q), ElementsAre());
}

TEST_P(StoreTest, QueryPagesWithCursorTokens) {
  AppendN(25);
  QueryRequest r;
  r.set_page_size(10);
  std::string next;
  std::vector<std::string> all;
  for (int page = 0; page < 3; ++page) {
    auto ids = Ids(r, &next);
    EXPECT_EQ(ids.size(), page < 2 ? 10u : 5u);
    all.insert(all.end(), ids.begin(), ids.end());
    EXPECT_EQ(next.empty(), page == 2);
    r.set_page_token(next);
  }
  ASSERT_EQ(all.size(), 25u);
  EXPECT_EQ(all.front(), "e1");
  EXPECT_EQ(all.back(), "e25");

  QueryRequest newest;
  newest.set_page_size(3);
  newest.set_newest_first(true);
  EXPECT_THAT(Ids(newest, &next), ElementsAre("e25", "e24", "e23"));
  newest.set_page_token(next);
  EXPECT_THAT(Ids(newest, &next), ElementsAre("e22", "e21", "e20"));

  // A token from the other direction, or garbage, is refused.
  QueryRequest bad;
  bad.set_page_token(next);
  EXPECT_EQ(store_->Query(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.set_page_token("not-a-token");
  EXPECT_EQ(store_->Query(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.Clear();
  bad.set_page_size(1001);
  EXPECT_EQ(store_->Query(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(StoreTest, RetentionRemovesOldRecordsAndKeepsTheChainVerifiable) {
  AppendN(10);  // stored at 1000, 2000, ... 10000 us
  auto removed = store_->DeleteBefore(4500);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, 4);
  auto cp = store_->GetCheckpoint("c1");
  ASSERT_TRUE(cp.ok());
  EXPECT_EQ(cp->sequence, 4);
  auto report = VerifyOne();
  EXPECT_TRUE(report.intact()) << report.problem();
  EXPECT_EQ(report.records(), 6);
  // The writer continues after retention, and even when everything is old the newest record
  // stays, so the head survives a restart.
  ChainHead head = Head();
  EXPECT_EQ(head.sequence, 10);
  ASSERT_EQ(*store_->DeleteBefore(1000000), 5);
  EXPECT_EQ(Head().sequence, 10);
  Append(&head, {testing::MakeEvent("later")}, 2000000);
  EXPECT_TRUE(VerifyOne().intact());
  EXPECT_EQ(VerifyOne().records(), 2);
  // Deleting the first remaining record is still detected against the checkpoint.
  Tamper("DELETE FROM records WHERE sequence = 10");
  report = VerifyOne();
  EXPECT_FALSE(report.intact());
  EXPECT_EQ(report.first_broken_sequence(), 11);
}

// An event as an exec that serves several clusters sends it.
AuditEvent InCluster(AuditEvent event, const std::string& cluster) {
  event.mutable_target()->set_cluster(cluster);
  return event;
}

TEST_P(StoreTest, QueryFiltersByCluster) {
  ChainHead head = Head();
  Append(&head, {InCluster(testing::MakeEvent("eu", "alice", "shop", "api-0"), "eu-prod"),
                 InCluster(testing::MakeEvent("us", "alice", "shop", "api-0"), "us-staging"),
                 testing::MakeEvent("old", "alice", "shop", "api-0"),
                 InCluster(testing::MakeEvent("eu-pay", "bob", "pay", "db-0"), "eu-prod")});
  QueryRequest q;
  q.add_clusters("eu-prod");
  EXPECT_THAT(Ids(q), ElementsAre("eu", "eu-pay"));
  q.add_namespaces("shop");  // AND across fields
  EXPECT_THAT(Ids(q), ElementsAre("eu"));
  q.Clear();
  q.add_clusters("eu-prod");
  q.add_clusters("us-staging");  // any of the values
  q.add_pods("api-0");
  EXPECT_THAT(Ids(q), ElementsAre("eu", "us"));
  q.Clear();
  q.add_clusters("");  // events from an exec before clusters
  EXPECT_THAT(Ids(q), ElementsAre("old"));
  q.Clear();
  q.add_clusters("eu-*");  // an exact value, not a pattern
  EXPECT_THAT(Ids(q), ElementsAre());
  q.Clear();
  q.add_clusters("eu-prod' OR '1'='1");
  EXPECT_THAT(Ids(q), ElementsAre());
  // The records carry the cluster in their event.
  q.Clear();
  q.add_clusters("us-staging");
  auto page = store_->Query(q);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->records.size(), 1u);
  EXPECT_EQ(page->records[0].event().target().cluster(), "us-staging");
  EXPECT_TRUE(VerifyOne().intact());
}

// The details of SQLite's plan for a Query page (EXPLAIN QUERY PLAN, parameters unbound: the
// store's statistics are per index, not per value, so the plan does not depend on them).
std::vector<std::string> SqlitePlan(const std::string& path, const QueryRequest& request) {
  std::vector<std::string> details;
  absl::StatusOr<SqlQuery> query = BuildQuery(request, Dialect::kSqlite);
  EXPECT_TRUE(query.ok()) << query.status();
  if (!query.ok()) {
    return details;
  }
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  const std::string sql = "EXPLAIN QUERY PLAN " + query->sql;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  while (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW) {
    details.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3)));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return details;
}

// docs/audit.md, "Query": each indexed filter alone (and the target's combinations) is a search
// of its own index on SQLite, in either direction and on a later page, never a scan of the
// records; where the index ends in the row id, the page comes in id order without a sort; a
// broad filter with a narrow one is a search of the narrow one's index.
TEST(StoreQueryPlanTest, EachIndexedFilterSearchesItsIndexOnSqlite) {
  testing::TempDir tmp("podgate-audit-plan");
  const std::string path = absl::StrCat(tmp.path(), "/audit.db");
  {
    auto store = OpenStore(absl::StrCat("sqlite://", path));
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->CheckWritable("plan").ok());  // migrated
  }
  // Every index of the records table has its statistics, one number per column and the rows: an
  // index added without them would get SQLite's defaults and could win plans it should not.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "SELECT i.name, (SELECT count(*) FROM pragma_index_info(i.name)), "
                                 "(SELECT stat FROM sqlite_stat1 s WHERE s.tbl = 'records' AND "
                                 "s.idx = i.name) FROM sqlite_master i WHERE i.type = 'index' "
                                 "AND i.tbl_name = 'records'",
                                 -1, &stmt, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    int indexes = 0;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      ++indexes;
      const std::string name = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
      const int columns = sqlite3_column_int(stmt, 1);
      const unsigned char* stat = sqlite3_column_text(stmt, 2);
      ASSERT_NE(stat, nullptr) << name << " has no row in sqlite_stat1";
      const std::vector<std::string> numbers =
          absl::StrSplit(reinterpret_cast<const char*>(stat), ' ');
      EXPECT_EQ(numbers.size(), static_cast<size_t>(columns + 1)) << name << ": " << stat;
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    EXPECT_EQ(indexes, 12);  // ten query indexes and the two unique constraints'
  }
  struct Case {
    const char* name;
    std::function<void(QueryRequest*)> filter;
    const char* index;
    bool sorted_by_index;  // the index ends in id: no temporary sort for ORDER BY id
  };
  const Case cases[] = {
      {"users", [](QueryRequest* q) { q->add_users("alice"); }, "records_user", true},
      {"namespaces", [](QueryRequest* q) { q->add_namespaces("shop"); }, "records_namespace_pod",
       false},
      {"namespaces and pods",
       [](QueryRequest* q) {
         q->add_namespaces("shop");
         q->add_pods("api-0");
       },
       "records_namespace_pod", true},
      {"pods", [](QueryRequest* q) { q->add_pods("api-0"); }, "records_pod", true},
      {"clusters", [](QueryRequest* q) { q->add_clusters("eu-prod"); }, "records_cluster", true},
      {"clusters, namespaces and pods",
       [](QueryRequest* q) {
         q->add_clusters("eu-prod");
         q->add_namespaces("shop");
         q->add_pods("api-0");
       },
       "records_namespace_pod", true},
      {"clusters and namespaces",
       [](QueryRequest* q) {
         q->add_clusters("eu-prod");
         q->add_namespaces("shop");
       },
       "records_namespace_pod", false},
      // A broad filter with a narrow one: the narrow one's index (kPlannerStats); without the
      // statistics these read every record of the cluster, or of the kind or rule.
      {"clusters and pods",
       [](QueryRequest* q) {
         q->add_clusters("eu-prod");
         q->add_pods("api-0");
       },
       "records_pod", true},
      {"clusters and users",
       [](QueryRequest* q) {
         q->add_clusters("eu-prod");
         q->add_users("alice");
       },
       "records_user", true},
      {"users and session_ids",
       [](QueryRequest* q) {
         q->add_users("alice");
         q->add_session_ids("s1");
       },
       "records_session", true},
      {"kinds and session_ids",
       [](QueryRequest* q) {
         q->add_kinds(common::v1::EVENT_KIND_COMMAND_RESULT);
         q->add_session_ids("s1");
       },
       "records_session", true},
      {"users and trace_ids",
       [](QueryRequest* q) {
         q->add_users("alice");
         q->add_trace_ids("0af7651916cd43dd8448eb211c80319c");
       },
       "records_trace", true},
      {"rules and users",
       [](QueryRequest* q) {
         q->add_rules("jvm-diagnostics");
         q->add_users("alice");
       },
       "records_user", true},
      {"session_ids", [](QueryRequest* q) { q->add_session_ids("s1"); }, "records_session", true},
      {"trace_ids", [](QueryRequest* q) { q->add_trace_ids("0af7651916cd43dd8448eb211c80319c"); },
       "records_trace", true},
      {"kinds", [](QueryRequest* q) { q->add_kinds(common::v1::EVENT_KIND_SESSION_OPEN); },
       "records_kind_verdict", false},
      {"kinds and verdicts",
       [](QueryRequest* q) {
         q->add_kinds(common::v1::EVENT_KIND_DECISION);
         q->add_verdicts(common::v1::VERDICT_DENY);
       },
       "records_kind_verdict", true},
      {"rules", [](QueryRequest* q) { q->add_rules("jvm-diagnostics"); }, "records_rule", true},
      {"event time",
       [](QueryRequest* q) {
         q->mutable_start_time()->set_seconds(1700000000);
         q->mutable_end_time()->set_seconds(1700000060);
       },
       "records_event_time", false},
  };
  auto check = [&](const Case& c) {
    for (bool newest_first : {false, true}) {
      for (bool later_page : {false, true}) {
        QueryRequest q;
        c.filter(&q);
        q.set_newest_first(newest_first);
        if (later_page) {
          q.set_page_token(EncodePageToken(1000, newest_first));
        }
        const std::vector<std::string> plan = SqlitePlan(path, q);
        const std::string shown = absl::StrJoin(plan, " | ");
        SCOPED_TRACE(absl::StrCat(c.name, newest_first ? ", newest first" : ", oldest first",
                                  later_page ? ", a later page" : "", ": ", shown));
        ASSERT_FALSE(plan.empty());
        // Where the index does not give the id order, a later page may instead search the row
        // ids past its token (stopping at a full page) or another index: never a scan.
        if (c.sorted_by_index || !later_page) {
          EXPECT_THAT(plan, ::testing::Contains(::testing::HasSubstr(
                                absl::StrCat("SEARCH records USING INDEX ", c.index, " ("))));
        }
        EXPECT_THAT(plan, ::testing::Each(::testing::Not(::testing::StartsWith("SCAN"))));
        if (c.sorted_by_index) {
          EXPECT_THAT(plan, ::testing::Each(::testing::Not(::testing::HasSubstr("TEMP B-TREE"))));
        }
      }
    }
  };
  for (const Case& c : cases) {
    check(c);
  }

  // Statistics removed (or replaced by an ANALYZE by hand) are written again at the next start.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "DELETE FROM sqlite_stat1", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
    QueryRequest q;
    q.add_clusters("eu-prod");
    q.add_users("alice");
    EXPECT_THAT(SqlitePlan(path, q),
                ::testing::Not(::testing::Contains(::testing::HasSubstr("records_user"))))
        << "the attack: without statistics the plan is the schema's tie-break";
    auto store = OpenStore(absl::StrCat("sqlite://", path));
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->CheckWritable("plan").ok());
  }
  for (const Case& c : cases) {
    if (std::string(c.name) == "clusters and users") {
      check(c);
    }
  }
}

TEST_P(StoreTest, QueryRefusesTooManyOrTooLongClusters) {
  QueryRequest q;
  for (int i = 0; i < 101; ++i) {
    q.add_clusters(absl::StrCat("c", i));
  }
  auto page = store_->Query(q);
  if (page.ok()) {  // stores trust a validated request; the validation is shared
    ASSERT_FALSE(ValidateQuery(q).ok());
  }
  EXPECT_THAT(std::string(ValidateQuery(q).status().message()),
              HasSubstr("clusters: 101 values; the limit is 100"));
  q.Clear();
  q.add_clusters(std::string(2000, 'x'));
  EXPECT_EQ(ValidateQuery(q).status().code(), absl::StatusCode::kInvalidArgument);
}

// Signed checkpoints at the store level, on both stores: retention's signature travels
// beside its cut, HashAt finds a record, the integrity check runs, and verification against
// a checkpoint catches a truncated or rewritten chain.
TEST_P(StoreTest, RetentionStoresItsSignatureBesideTheCut) {
  testing::TempDir tmp("podgate-store-ckpt");
  const std::string pem = tmp.path() + "/k.pem";
  ASSERT_EQ(std::system(("openssl genpkey -algorithm ed25519 -out " + pem).c_str()), 0);
  auto key = CheckpointKey::LoadPrivate(pem);
  ASSERT_TRUE(key.ok()) << key.status();
  AppendN(10);
  auto removed = store_->DeleteBefore(4500, [&](Checkpoint* cut) {
    v1::SignedCheckpoint c;
    c.set_kind(v1::SignedCheckpoint::KIND_RETENTION_CUT);
    c.set_chain_id(cut->chain_id);
    c.set_sequence(cut->sequence);
    c.set_hash(cut->hash);
    c.mutable_time()->set_seconds(1700000000);
    absl::Status s = (*key)->Sign(&c);
    cut->signed_time_us = 1700000000000000;
    cut->key_id = c.key_id();
    cut->signature = c.signature();
    return s;
  });
  ASSERT_TRUE(removed.ok()) << removed.status();
  auto report = VerifyOne();
  EXPECT_TRUE(report.intact()) << report.problem();
  EXPECT_EQ(report.head_sequence(), 10);
  EXPECT_EQ(report.retention_cut().sequence(), 4);
  EXPECT_TRUE(CheckCheckpoint({*key}, report.retention_cut()).ok());
  // A cut moved in the database no longer matches its signature.
  Tamper("UPDATE checkpoints SET sequence = 3");
  EXPECT_FALSE(CheckCheckpoint({*key}, VerifyOne().retention_cut()).ok());
  // A failing signer leaves that chain uncut.
  Tamper("UPDATE checkpoints SET sequence = 4");
  auto refused = store_->DeleteBefore(
      1000000, [](Checkpoint*) { return absl::InternalError("no key today"); });
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(store_->GetCheckpoint("c1")->sequence, 4);
  EXPECT_EQ(VerifyOne().records(), 6);
}

TEST_P(StoreTest, HashAtAndTheIntegrityCheck) {
  AppendN(3);
  ChainHead head = Head();
  auto hash = store_->HashAt("c1", 3);
  ASSERT_TRUE(hash.ok());
  EXPECT_EQ(*hash, head.hash);
  EXPECT_EQ(store_->HashAt("c1", 4).status().code(), absl::StatusCode::kNotFound);
  std::string note;
  auto problems = store_->CheckIntegrity(&note);
  ASSERT_TRUE(problems.ok()) << problems.status();
  EXPECT_TRUE(problems->empty());
  EXPECT_THAT(note,
              ::testing::HasSubstr(postgres() ? "amcheck is not installed" : "integrity_check"));
  if (postgres()) {
    // With amcheck (part of Debian's PostgreSQL server package) every B-tree index is checked.
    Tamper("CREATE EXTENSION IF NOT EXISTS amcheck");
    problems = store_->CheckIntegrity(&note);
    ASSERT_TRUE(problems.ok()) << problems.status();
    EXPECT_TRUE(problems->empty()) << absl::StrJoin(*problems, "; ");
    EXPECT_EQ(note, "amcheck bt_index_check");
  }
}

TEST_P(StoreTest, VerifyAgainstASignedHeadCatchesTruncationAndRewriting) {
  AppendN(6);
  v1::SignedCheckpoint head;
  head.set_chain_id("c1");
  head.set_sequence(6);
  head.set_hash(Head().hash);
  VerifyOptions options;
  options.checkpoints = {head};
  auto response = VerifyChains(*store_, options);
  ASSERT_TRUE(response.ok());
  EXPECT_TRUE(response->intact()) << response->DebugString();
  Tamper("DELETE FROM records WHERE sequence = 6");
  response = VerifyChains(*store_, options);
  ASSERT_TRUE(response.ok());
  EXPECT_FALSE(response->intact());
  EXPECT_THAT(response->chains(0).problem(),
              ::testing::HasSubstr("the chain ends at sequence 5, before its signed checkpoint"));
  Tamper("DELETE FROM records");
  response = VerifyChains(*store_, options);
  ASSERT_TRUE(response.ok());
  EXPECT_FALSE(response->intact());
  EXPECT_THAT(response->problems(0), ::testing::HasSubstr("chain c1: missing from the store"));
}

TEST_P(StoreTest, VerifyDetectsAnEditedCluster) {
  ChainHead head = Head();
  Append(&head, {InCluster(testing::MakeEvent("e1"), "eu-prod"),
                 InCluster(testing::MakeEvent("e2"), "eu-prod")});
  // Moving a record out of a cluster's queries is tampering like any other edit.
  Tamper("UPDATE records SET cluster = 'us-staging' WHERE sequence = 2");
  const auto report = VerifyOne();
  EXPECT_FALSE(report.intact());
  EXPECT_EQ(report.first_broken_sequence(), 2);
  EXPECT_THAT(report.problem(), HasSubstr("column cluster"));
}

constexpr char kOldTraceId[] = "4bf92f3577b34da6a3ce929d0e0e4736";

// An event as a service that propagates trace context sends it.
AuditEvent InTrace(AuditEvent event, const std::string& trace_id) {
  event.set_trace_id(trace_id);
  return event;
}

TEST_P(StoreTest, QueryFiltersByTraceId) {
  const std::string a(32, 'a');
  const std::string b(32, 'b');
  ChainHead head = Head();
  Append(&head, {InTrace(testing::MakeEvent("a1", "alice", "shop", "api-0"), a),
                 InTrace(testing::MakeEvent("b1", "bob", "shop", "api-0"), b),
                 testing::MakeEvent("none", "alice", "shop", "api-0"),
                 InTrace(testing::MakeEvent("a2", "alice", "pay", "db-0"), a)});
  QueryRequest q;
  q.add_trace_ids(a);
  EXPECT_THAT(Ids(q), ElementsAre("a1", "a2"));
  q.add_namespaces("pay");  // AND across fields
  EXPECT_THAT(Ids(q), ElementsAre("a2"));
  q.Clear();
  q.add_trace_ids(a);
  q.add_trace_ids(b);  // any of the values
  EXPECT_THAT(Ids(q), ElementsAre("a1", "b1", "a2"));
  q.Clear();
  q.add_trace_ids("");  // events without a trace id
  EXPECT_THAT(Ids(q), ElementsAre("none"));
  q.Clear();
  q.add_trace_ids(a.substr(0, 31));  // an exact value, not a prefix
  EXPECT_THAT(Ids(q), ElementsAre());
  q.Clear();
  q.add_trace_ids("x' OR '1'='1");
  EXPECT_THAT(Ids(q), ElementsAre());
  q.Clear();
  q.add_trace_ids(b);
  auto page = store_->Query(q);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->records.size(), 1u);
  EXPECT_EQ(page->records[0].event().trace_id(), b);
  EXPECT_TRUE(VerifyOne().intact());
  q.Clear();
  for (int i = 0; i < 101; ++i) {
    q.add_trace_ids(absl::StrCat("t", i));
  }
  EXPECT_THAT(std::string(ValidateQuery(q).status().message()),
              HasSubstr("trace_ids: 101 values; the limit is 100"));
}

TEST_P(StoreTest, VerifyDetectsAnEditedTraceId) {
  ChainHead head = Head();
  Append(&head, {InTrace(testing::MakeEvent("e1"), std::string(32, 'a')),
                 InTrace(testing::MakeEvent("e2"), std::string(32, 'a'))});
  // Moving a record out of a trace's queries is tampering like any other edit.
  Tamper("UPDATE records SET trace_id = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' WHERE sequence = 2");
  const auto report = VerifyOne();
  EXPECT_FALSE(report.intact());
  EXPECT_EQ(report.first_broken_sequence(), 2);
  EXPECT_THAT(report.problem(), HasSubstr("column trace_id"));
}

// A database written by the release before clusters: its schema (migration 1 only) and rows as
// that release inserted them (no cluster column). Opening it with this release adds the column
// ("" for the old rows, the event's cluster where a newer exec already sent one: the previous
// release kept it in the event bytes as an unknown field), the old chain still verifies, and
// the writer continues it.
TEST_P(StoreTest, UpgradesADatabaseWrittenBeforeClusters) {
  store_.reset();
  std::string old_url;
  std::function<void(const std::string&)> run;
  std::string old_database;
  if (postgres()) {
    old_database = database_ + "_old";
    auto url = SharedPostgres()->CreateDatabase(old_database);
    ASSERT_TRUE(url.ok()) << url.status();
    old_url = *url;
    run = [&](const std::string& sql) {
      ASSERT_TRUE(SharedPostgres()->Exec(old_database, sql).ok()) << sql;
    };
  } else {
    const std::string path = absl::StrCat(dir_, "/old.db");
    old_url = absl::StrCat("sqlite://", path);
    run = [path](const std::string& sql) {
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
      char* error = nullptr;
      const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
      EXPECT_EQ(rc, SQLITE_OK) << (error != nullptr ? error : "") << " in " << sql;
      sqlite3_free(error);
      sqlite3_close(db);
    };
  }
  const Dialect dialect = postgres() ? Dialect::kPostgres : Dialect::kSqlite;
  const auto bytes = [&](const std::string& b) {
    const std::string hex = absl::BytesToHexString(b);
    return postgres() ? absl::StrCat("'\\x", hex, "'::bytea") : absl::StrCat("X'", hex, "'");
  };
  const auto text = [](const std::string& t) {
    std::string out = "'";
    for (char c : t) {
      out += c == '\'' ? std::string("''") : std::string(1, c);
    }
    return out + "'";
  };
  // The first release's migration bookkeeping and schema, exactly as it ran them.
  run(postgres() ? "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_us "
                   "BIGINT NOT NULL)"
                 : "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_us "
                   "INTEGER NOT NULL)");
  run(Migrations(dialect)[0]);
  run("INSERT INTO schema_migrations VALUES (1, 1700000000000000)");
  // Its rows: the chain is computed the same way (the hash covers the event bytes only).
  ChainHead old_head;
  old_head.chain_id = "c1";
  for (int i = 1; i <= 3; ++i) {
    AuditEvent event = testing::MakeEvent(absl::StrCat("old", i));
    if (i == 3) {
      event.mutable_target()->set_cluster("eu-prod");  // from a newer exec
    }
    if (i == 2) {
      event.set_trace_id(kOldTraceId);  // from a newer exec: kept in the event bytes only
    }
    const StoredRow row = LinkNext(&old_head, event, 1000 * i);
    const EventColumns& c = row.columns;
    run(absl::StrCat(
        "INSERT INTO records (event_id, chain_id, sequence, stored_time_us, event, hash, "
        "previous_hash, event_time_us, kind, user_name, groups_text, namespace, pod, container, "
        "verdict, rule, session_id, argv_text) VALUES (",
        absl::StrJoin(
            {text(row.event_id), text(row.chain_id), absl::StrCat(row.sequence),
             absl::StrCat(row.stored_time_us), bytes(row.event_bytes), bytes(row.hash),
             bytes(row.previous_hash), absl::StrCat(c.event_time_us), absl::StrCat(c.kind),
             text(c.user), text(c.groups), text(c.namespace_name), text(c.pod), text(c.container),
             absl::StrCat(c.verdict), text(c.rule), text(c.session_id), text(c.argv_text)},
            ", "),
        ")"));
  }

  auto upgraded = OpenStore(old_url);
  ASSERT_TRUE(upgraded.ok()) << upgraded.status();
  store_ = *std::move(upgraded);
  auto report = VerifyOne();
  EXPECT_TRUE(report.intact()) << report.problem();
  EXPECT_EQ(report.records(), 3);
  QueryRequest q;
  q.add_clusters("");
  EXPECT_THAT(Ids(q), ElementsAre("old1", "old2"));
  q.Clear();
  q.add_clusters("eu-prod");
  EXPECT_THAT(Ids(q), ElementsAre("old3"));
  q.Clear();
  q.add_trace_ids(kOldTraceId);
  EXPECT_THAT(Ids(q), ElementsAre("old2"));
  q.Clear();
  q.add_trace_ids("");
  EXPECT_THAT(Ids(q), ElementsAre("old1", "old3"));

  // The writer continues the old chain with records that carry a cluster.
  ChainHead head = Head();
  EXPECT_EQ(head.sequence, 3);
  EXPECT_EQ(head.hash, old_head.hash);
  Append(&head, {InCluster(testing::MakeEvent("new1"), "eu-prod")}, 4000);
  report = VerifyOne();
  EXPECT_TRUE(report.intact()) << report.problem();
  EXPECT_EQ(report.records(), 4);
  q.Clear();
  q.add_clusters("eu-prod");
  EXPECT_THAT(Ids(q), ElementsAre("old3", "new1"));
  q.Clear();
  q.add_namespaces("shop");
  EXPECT_THAT(Ids(q), ElementsAre("old1", "old2", "old3", "new1"));

  // Opening again applies nothing twice.
  store_.reset();
  upgraded = OpenStore(old_url);
  ASSERT_TRUE(upgraded.ok()) << upgraded.status();
  store_ = *std::move(upgraded);
  EXPECT_TRUE(VerifyOne().intact());
  if (postgres()) {
    EXPECT_EQ(*SharedPostgres()->QueryValue(old_database, "SELECT count(*) FROM schema_migrations"),
              std::to_string(Migrations(Dialect::kPostgres).size()));
    EXPECT_EQ(*SharedPostgres()->QueryValue(old_database,
                                            "SELECT count(*) FROM records WHERE cluster = ''"),
              "2");
  }
}

TEST_P(StoreTest, CheckWritableUpdatesTheChainsHeartbeatRowOnly) {
  AppendN(2);
  EXPECT_EQ(Value("SELECT count(*) FROM store_heartbeat"), "0");
  ASSERT_TRUE(store_->CheckWritable("c1").ok());
  const std::string first = Value("SELECT checked_us FROM store_heartbeat WHERE chain_id = 'c1'");
  // The database's clock in microseconds (after 2020).
  EXPECT_GT(std::stoll(first), 1577836800000000);
  // Again: the existing row is updated, not duplicated; another chain has its own row.
  absl::SleepFor(absl::Milliseconds(2));
  ASSERT_TRUE(store_->CheckWritable("c1").ok());
  ASSERT_TRUE(store_->CheckWritable("c2").ok());
  EXPECT_EQ(Value("SELECT count(*) FROM store_heartbeat"), "2");
  EXPECT_GT(std::stoll(Value("SELECT checked_us FROM store_heartbeat WHERE chain_id = 'c1'")),
            std::stoll(first));
  // Records and chains are untouched: c2 is no chain, c1 still verifies with its two records.
  auto chains = store_->ListChains();
  ASSERT_TRUE(chains.ok());
  EXPECT_THAT(*chains, ElementsAre("c1"));
  EXPECT_EQ(Head().sequence, 2);
  EXPECT_TRUE(VerifyOne().intact());
  EXPECT_EQ(VerifyOne().records(), 2);
}

// While appends fail, CheckWritable fails with the same code, and both work again together.
// SQLite: another process holds the write lock (the store waits 100 ms for it). PostgreSQL: the
// database turned read-only (a standby after failover) and the store's connection was cut.
TEST_P(StoreTest, CheckWritableFailsWhileAppendsFailAndRecoversWithThem) {
  sqlite3* blocker = nullptr;
  // PostgreSQL: the database turned read-only (or writable again), and the connections to it
  // cut so that the setting applies to the store's next one.
  auto set_read_only = [&](bool on) {
    ASSERT_TRUE(SharedPostgres()
                    ->Exec("postgres",
                           absl::StrCat("ALTER DATABASE ", database_,
                                        " SET default_transaction_read_only = ", on ? "on" : "off"))
                    .ok());
    ASSERT_TRUE(SharedPostgres()
                    ->Exec("postgres", absl::StrCat("SELECT pg_terminate_backend(pid) FROM "
                                                    "pg_stat_activity WHERE datname = '",
                                                    database_, "'"))
                    .ok());
  };
  if (postgres()) {
    set_read_only(true);
  } else {
    store_.reset();
    auto store = OpenSqliteStore(dir_ + "/audit.db", absl::Milliseconds(100));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    ASSERT_TRUE(store_->CheckWritable("c1").ok());  // the row exists: the next one is an update
    ASSERT_EQ(sqlite3_open((dir_ + "/audit.db").c_str(), &blocker), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(blocker, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  }
  // Twice: the first attempt may meet the broken connection, the second a new one.
  for (int attempt = 0; attempt < 2; ++attempt) {
    absl::Status check = store_->CheckWritable("c1");
    EXPECT_EQ(check.code(), absl::StatusCode::kUnavailable) << check;
    ChainHead head;
    head.chain_id = "c1";
    AuditEvent e = testing::MakeEvent("refused");
    absl::Status append = store_->Append(&head, {&e}, 1000);
    EXPECT_EQ(append.code(), absl::StatusCode::kUnavailable) << append;
  }

  if (postgres()) {
    set_read_only(false);
    // The cut connection is found broken by the next call, which reconnects on the one after.
    store_->CheckWritable("c1").IgnoreError();
  } else {
    ASSERT_EQ(sqlite3_exec(blocker, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(blocker);
  }
  absl::Status check = store_->CheckWritable("c1");
  EXPECT_TRUE(check.ok()) << check;
  ChainHead head = Head();
  Append(&head, {testing::MakeEvent("stored")});
  EXPECT_EQ(head.sequence, 1);
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

TEST(StoreUrlTest, BadUrlsSayWhatIsWrong) {
  EXPECT_THAT(std::string(OpenStore("mysql://x").status().message()),
              HasSubstr("must start with sqlite:// or postgresql://"));
  EXPECT_THAT(std::string(OpenStore("sqlite://").status().message()), HasSubstr("no file path"));
  auto missing = OpenStore("sqlite:///nonexistent-dir/audit.db");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kUnavailable);
  auto unreachable = OpenStore("postgresql://nobody@/x?host=/nonexistent&port=1");
  EXPECT_EQ(unreachable.status().code(), absl::StatusCode::kUnavailable);
}

TEST(SqliteStoreTest, LockedDatabaseMakesAppendUnavailableThenRecovers) {
  testing::TempDir tmp("podgate-audit-lock");
  const std::string& dir = tmp.path();
  const std::string path = dir + "/audit.db";
  auto store = OpenSqliteStore(path, absl::Milliseconds(100));
  ASSERT_TRUE(store.ok());
  auto head = (*store)->LoadHead("c");
  ASSERT_TRUE(head.ok());
  sqlite3* blocker = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &blocker), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(blocker, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  AuditEvent e = testing::MakeEvent("x");
  const ChainHead before = *head;
  absl::Status status = (*store)->Append(&*head, {&e}, 1);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(head->sequence, before.sequence);
  ASSERT_EQ(sqlite3_exec(blocker, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(blocker);
  EXPECT_TRUE((*store)->Append(&*head, {&e}, 1).ok());
  EXPECT_EQ(head->sequence, 1);
}

// A full disk, as a file-size limit (RLIMIT_FSIZE) at the WAL's current size: updating the
// existing heartbeat row still appends a frame to the WAL, so CheckWritable fails exactly while
// Append fails, and both work once the WAL may grow again. In a child process (the limit is
// per process); each step exits with its own code.
// The check must write something every time: SQLite skips a page whose content does not change,
// and two checks within one tick of the database's clock would otherwise set the same value and
// write nothing, so a full disk would pass the check.
TEST(SqliteStoreTest, EveryCheckWritableWritesEvenWithinOneClockTick) {
  testing::TempDir tmp("podgate-audit-heartbeat");
  const std::string path = tmp.path() + "/audit.db";
  auto store = OpenSqliteStore(path, absl::Milliseconds(100));
  ASSERT_TRUE(store.ok()) << store.status();
  // A reader keeps the store's connection from checkpointing the WAL away.
  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(reader, "SELECT count(*) FROM records", nullptr, nullptr, nullptr),
            SQLITE_OK);
  ASSERT_TRUE((*store)->CheckWritable("c").ok());
  auto wal_size = [&] {
    struct stat wal;
    return stat((path + "-wal").c_str(), &wal) == 0 ? static_cast<int64_t>(wal.st_size) : -1;
  };
  for (int i = 0; i < 50; ++i) {
    const int64_t before = wal_size();
    ASSERT_TRUE((*store)->CheckWritable("c").ok());
    ASSERT_GT(wal_size(), before) << "check " << i << " wrote nothing";
  }
  sqlite3* check = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &check, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(check, "SELECT count(*) FROM store_heartbeat", -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 1) << "one heartbeat row per chain";
  sqlite3_finalize(stmt);
  sqlite3_close(check);
  sqlite3_close(reader);
}

TEST(SqliteStoreTest, CheckWritableFailsLikeAppendWhenTheWalCannotGrow) {
  testing::TempDir tmp("podgate-audit-fsize");
  const std::string path = tmp.path() + "/audit.db";
  const pid_t pid = fork();
  ASSERT_NE(pid, -1);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);  // a write past the limit fails with EFBIG instead
    auto fail = [](int code, const absl::Status& status) {
      fprintf(stderr, "step %d: %s\n", code, status.ToString().c_str());
      _exit(code);
    };
    auto store = OpenSqliteStore(path, absl::Milliseconds(100));
    if (!store.ok()) {
      fail(10, store.status());
    }
    // A second connection keeps the WAL from being checkpointed away when the store reopens
    // its connection after a failure (SQLite does that only as the last connection).
    sqlite3* reader = nullptr;
    sqlite3_open_v2(path.c_str(), &reader, SQLITE_OPEN_READONLY, nullptr);
    if (sqlite3_exec(reader, "SELECT count(*) FROM records", nullptr, nullptr, nullptr) !=
        SQLITE_OK) {
      fail(11, absl::InternalError(sqlite3_errmsg(reader)));
    }
    absl::StatusOr<ChainHead> head = (*store)->LoadHead("c");
    if (!head.ok()) {
      fail(12, head.status());
    }
    AuditEvent first = testing::MakeEvent("first");
    if (absl::Status s = (*store)->Append(&*head, {&first}, 1); !s.ok()) {
      fail(13, s);
    }
    if (absl::Status s = (*store)->CheckWritable("c"); !s.ok()) {
      fail(14, s);
    }
    struct stat wal;
    if (stat((path + "-wal").c_str(), &wal) != 0 || wal.st_size == 0) {
      fail(15, absl::InternalError("no WAL"));
    }
    struct rlimit limit;
    getrlimit(RLIMIT_FSIZE, &limit);
    const rlim_t hard = limit.rlim_max;
    limit.rlim_cur = static_cast<rlim_t>(wal.st_size);
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) {
      fail(16, absl::InternalError("setrlimit"));
    }
    // Full: the heartbeat row exists, yet its update fails like an append, several times.
    for (int i = 0; i < 3; ++i) {
      if (absl::Status s = (*store)->CheckWritable("c"); !absl::IsUnavailable(s)) {
        fail(20, s);
      }
      AuditEvent refused = testing::MakeEvent(absl::StrCat("refused", i));
      const int64_t before = head->sequence;
      if (absl::Status s = (*store)->Append(&*head, {&refused}, 2); !absl::IsUnavailable(s)) {
        fail(21, s);
      }
      if (head->sequence != before) {
        fail(22, absl::InternalError("head moved"));
      }
    }
    limit.rlim_cur = hard;
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) {
      fail(23, absl::InternalError("setrlimit"));
    }
    if (absl::Status s = (*store)->CheckWritable("c"); !s.ok()) {
      fail(30, s);
    }
    AuditEvent second = testing::MakeEvent("second");
    if (absl::Status s = (*store)->Append(&*head, {&second}, 3); !s.ok()) {
      fail(31, s);
    }
    if (head->sequence != 2) {
      fail(32, absl::InternalError("sequence"));
    }
    sqlite3_close(reader);
    store->reset();
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's failed step (its stderr names the error)";
}

const auto* const kPostgresEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

}  // namespace
}  // namespace podgate::audit
