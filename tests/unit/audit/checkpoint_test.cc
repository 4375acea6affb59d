// Signed checkpoints against someone with write access to the audit database: each attack is
// done with real SQL (or bytes) on a real SQLite file after a real audit (store, writer,
// checkpointer, gRPC service) recorded events, and `verify` (cli::RunVerify against an
// in-process server, with the state file and the public key) must fail naming the problem.
// Also: the key and checkpoint parsers, the signing input, the restart check, and a clean
// store with retention cuts that verifies.
#include <openssl/pem.h>
#include <sqlite3.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "audit/audit_service.h"
#include "audit/checkpoint_sign.h"
#include "audit/checkpointer.h"
#include "audit/cli.h"
#include "audit/export/sink.h"
#include "audit/store.h"
#include "audit/verify.h"
#include "audit/writer.h"
#include "audit_testing.h"
#include "crypto/openssl_ptr.h"
#include "crypto/sha256.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "runtime/server.h"
#include "support/grpc_health.h"

namespace podgate::audit {
namespace {

using ::podgate::audit::v1::AuditService;
using ::podgate::audit::v1::SignedCheckpoint;
using ::podgate::common::v1::AuditEvent;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kChain[] = "test-chain";

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A fresh key pair written as PEM files; `type` is an OpenSSL key type ("ED25519", "EC").
struct KeyFiles {
  std::string private_path;
  std::string public_path;
};

KeyFiles MakeKey(const std::string& dir, const std::string& name, const char* type = "ED25519") {
  crypto::EvpPkeyPtr key(std::string(type) == "EC"
                             ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")
                             : EVP_PKEY_Q_keygen(nullptr, nullptr, type));
  EXPECT_NE(key, nullptr);
  KeyFiles files{absl::StrCat(dir, "/", name, ".pem"), absl::StrCat(dir, "/", name, ".pub.pem")};
  crypto::BioPtr priv(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(priv.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  crypto::BioPtr pub(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(pub.get(), key.get());
  for (auto [bio, path] :
       {std::pair{priv.get(), files.private_path}, std::pair{pub.get(), files.public_path}}) {
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    WriteFile(path, std::string(data, static_cast<size_t>(n)));
  }
  return files;
}

// Runs SQL on the SQLite file as an attacker would (no audit code involved).
void Sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  EXPECT_EQ(rc, SQLITE_OK) << (error != nullptr ? error : "") << " in " << sql;
  sqlite3_free(error);
  sqlite3_close(db);
}

int64_t SqlInt(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
  int64_t value = -1;
  if (sqlite3_step(stmt) == SQLITE_ROW) {
    value = sqlite3_column_int64(stmt, 0);
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

// Recomputes every record's previous_hash and hash of `chain` in sequence order, as an
// attacker who knows the (public) chain format does after editing or inserting records.
void Rehash(const std::string& path, const std::string& chain) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* read = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT id, sequence, stored_time_us, event FROM records WHERE "
                               "chain_id = ?1 ORDER BY sequence",
                               -1, &read, nullptr),
            SQLITE_OK);
  sqlite3_bind_text(read, 1, chain.c_str(), -1, SQLITE_TRANSIENT);
  struct Row {
    int64_t id, sequence, stored;
    std::string event;
  };
  std::vector<Row> rows;
  while (sqlite3_step(read) == SQLITE_ROW) {
    rows.push_back({sqlite3_column_int64(read, 0), sqlite3_column_int64(read, 1),
                    sqlite3_column_int64(read, 2),
                    std::string(static_cast<const char*>(sqlite3_column_blob(read, 3)),
                                static_cast<size_t>(sqlite3_column_bytes(read, 3)))});
  }
  sqlite3_finalize(read);
  sqlite3_stmt* write = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "UPDATE records SET previous_hash = ?1, hash = ?2 WHERE id = ?3",
                               -1, &write, nullptr),
            SQLITE_OK);
  std::string previous(kHashBytes, '\0');
  for (const Row& row : rows) {
    const std::string hash =
        LinkHash(previous, CanonicalContent(chain, row.sequence, row.stored, row.event));
    sqlite3_bind_blob(write, 1, previous.data(), static_cast<int>(previous.size()),
                      SQLITE_TRANSIENT);
    sqlite3_bind_blob(write, 2, hash.data(), static_cast<int>(hash.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(write, 3, row.id);
    ASSERT_EQ(sqlite3_step(write), SQLITE_DONE);
    sqlite3_reset(write);
    previous = hash;
  }
  sqlite3_finalize(write);
  sqlite3_close(db);
}

// The serialized event with the user renamed (what an attacker edits).
std::string EditedEvent(const std::string& path, int64_t sequence, AuditEvent* event) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db, "SELECT event FROM records WHERE sequence = ?1", -1, &stmt, nullptr);
  sqlite3_bind_int64(stmt, 1, sequence);
  EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  event->ParseFromArray(sqlite3_column_blob(stmt, 0), sqlite3_column_bytes(stmt, 0));
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  event->mutable_principal()->set_user("mallory");
  return event->SerializeAsString();
}

// A real audit on a SQLite file: store, writer, checkpointer (key, state file), service and
// gRPC server. Stop() ends it (the checkpointer signs the final head).
class Audit {
 public:
  Audit(const std::string& db, const std::string& key, const std::string& state,
        bool with_checkpointer = true, absl::Duration store_recheck = absl::Seconds(5)) {
    auto store = OpenSqliteStore(db);
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    metrics_ = std::make_unique<AuditMetrics>(registry_);
    WriterOptions options;
    options.chain_id = kChain;
    options.refuse_foreign_records = with_checkpointer;
    options.retry_backoff = absl::Milliseconds(10);
    options.store_recheck_interval = store_recheck;
    options.on_store_health = [this](bool healthy) {
      absl::MutexLock lock(&health_mu_);
      health_.push_back(healthy);
    };
    auto writer = Writer::Start(store_.get(), options, metrics_.get());
    EXPECT_TRUE(writer.ok()) << writer.status();
    writer_ = *std::move(writer);
    AuditServiceOptions service_options;
    if (with_checkpointer) {
      CheckpointerOptions c;
      c.chain_id = kChain;
      auto loaded = CheckpointKey::LoadPrivate(key);
      EXPECT_TRUE(loaded.ok()) << loaded.status();
      c.key = *loaded;
      c.interval = absl::ZeroDuration();
      c.state_path = state;
      c.head = [w = writer_.get()] { return w->committed_head(); };
      c.metrics = metrics_.get();
      c.on_checkpoint = [this](const SignedCheckpoint& checkpoint) {
        hooked_.push_back(checkpoint);
      };
      auto checkpointer = Checkpointer::Start(std::move(c));
      EXPECT_TRUE(checkpointer.ok()) << checkpointer.status();
      checkpointer_ = *std::move(checkpointer);
      service_options.checkpointer = checkpointer_.get();
    }
    service_ = std::make_unique<AuditServiceImpl>(store_.get(), writer_.get(), metrics_.get(),
                                                  service_options);
    runtime::ServerOptions server_options;
    server_options.service_name = "audit";
    server_options.grpc_address = "127.0.0.1:0";
    server_options.drain_timeout = absl::Seconds(5);
    auto server = runtime::Server::Start(server_options, {service_.get()},
                                         std::make_shared<prometheus::Registry>());
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = AuditService::NewStub(podgate::testing::LocalChannel(server_->grpc_port()));
  }
  ~Audit() { Stop(); }

  void Stop() {
    if (server_ != nullptr) {
      server_->Shutdown();
    }
    server_.reset();
    service_.reset();
    checkpointer_.reset();
    writer_.reset();
    store_.reset();
  }

  // Records one event; the stream's status.
  grpc::Status RecordOne(const std::string& id) {
    grpc::ClientContext ctx;
    auto stream = stub_->Record(&ctx);
    v1::RecordRequest request;
    *request.mutable_event() = testing::MakeEvent(id);
    stream->Write(request);
    stream->WritesDone();
    v1::RecordResponse response;
    while (stream->Read(&response)) {
    }
    return stream->Finish();
  }

  // Records `n` events over a real Record stream and waits for every ack.
  void Record(const std::string& prefix, int n) {
    grpc::ClientContext ctx;
    auto stream = stub_->Record(&ctx);
    for (int i = 0; i < n; ++i) {
      v1::RecordRequest request;
      *request.mutable_event() = testing::MakeEvent(absl::StrCat(prefix, i));
      ASSERT_TRUE(stream->Write(request));
    }
    stream->WritesDone();
    int acked = 0;
    v1::RecordResponse response;
    while (stream->Read(&response)) {
      acked += response.ack().ids_size();
    }
    ASSERT_TRUE(stream->Finish().ok());
    ASSERT_EQ(acked, n);
  }

  AuditService::Stub& stub() { return *stub_; }
  // The readiness flips the writer reported.
  std::vector<bool> health() {
    absl::MutexLock lock(&health_mu_);
    return health_;
  }
  Store& store() { return *store_; }
  AuditMetrics& metrics() { return *metrics_; }
  Checkpointer& checkpointer() { return *checkpointer_; }
  const std::vector<SignedCheckpoint>& hooked() const { return hooked_; }

 private:
  prometheus::Registry registry_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<AuditMetrics> metrics_;
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<Checkpointer> checkpointer_;
  std::unique_ptr<AuditServiceImpl> service_;
  std::unique_ptr<runtime::Server> server_;
  std::unique_ptr<AuditService::Stub> stub_;
  std::vector<SignedCheckpoint> hooked_;
  absl::Mutex health_mu_;
  std::vector<bool> health_ ABSL_GUARDED_BY(health_mu_);
};

class TamperTest : public ::testing::Test {
 protected:
  TamperTest()
      : tmp_("podgate-ckpt"),
        db_(tmp_.path() + "/audit.db"),
        state_(tmp_.path() + "/state.jsonl"),
        key_(MakeKey(tmp_.path(), "audit")) {}

  // An insider appends a well-formed record to the chain behind the running audit's back.
  void AppendForgedRecord() {
    auto store = OpenSqliteStore(db_);
    ASSERT_TRUE(store.ok());
    auto head = (*store)->LoadHead(kChain);
    ASSERT_TRUE(head.ok());
    const AuditEvent forged = testing::MakeEvent("forged");
    ASSERT_TRUE((*store)->Append(&*head, {&forged}, 1).ok());
  }

  // A real audit records 10 events (checkpoints signed at start, on demand after 6, and at
  // stop) and stops.
  void RecordTen() {
    Audit audit(db_, key_.private_path, state_);
    audit.Record("a", 6);
    std::ostringstream out;
    ASSERT_TRUE(cli::RunCheckpoint(audit.stub(), out).ok());
    collected_ << out.str();
    audit.Record("b", 4);
    audit.Stop();
    collected_ << ReadFile(state_);
    WriteFile(tmp_.path() + "/collected.jsonl", collected_.str());
  }

  // `verify --checkpoint=state --public_key=pub` against a plain audit on the (tampered) file.
  std::pair<bool, std::string> Verify(std::vector<std::string> checkpoint_files = {},
                                      int64_t max_unsigned = 0) {
    if (checkpoint_files.empty()) {
      checkpoint_files = {state_};
    }
    Audit verifier(db_, "", "", /*with_checkpointer=*/false);
    cli::VerifyFlags flags;
    flags.checkpoint_files = checkpoint_files;
    flags.public_key_files = {key_.public_path};
    flags.max_unsigned_records = max_unsigned;
    std::ostringstream out;
    absl::StatusOr<bool> intact = cli::RunVerify(verifier.stub(), flags, out);
    EXPECT_TRUE(intact.ok()) << intact.status();
    return {intact.ok() && *intact, out.str()};
  }

  testing::TempDir tmp_;
  const std::string db_;
  const std::string state_;
  const KeyFiles key_;
  std::ostringstream collected_;
};

TEST_F(TamperTest, AnUntouchedStoreVerifies) {
  RecordTen();
  auto [intact, out] = Verify();
  EXPECT_TRUE(intact) << out;
  EXPECT_EQ(out, "chain test-chain: intact, 10 records\n");
  // Every checkpoint collected on the way (the on-demand one, the state file) verifies too.
  auto [all_intact, all_out] = Verify({tmp_.path() + "/collected.jsonl"});
  EXPECT_TRUE(all_intact) << all_out;
}

TEST_F(TamperTest, Attack1DeletingTheLastRecordsIsDetected) {
  RecordTen();
  Sql(db_, "DELETE FROM records WHERE sequence > 7");
  auto [intact, out] = Verify();
  EXPECT_FALSE(intact);
  EXPECT_THAT(out, HasSubstr("chain test-chain: BROKEN at sequence 8: the chain ends at sequence "
                             "7, before its signed checkpoint at sequence 10"));
}

TEST_F(TamperTest, Attack2AppendingAForgedRecordWithItsHashRecomputedIsDetected) {
  RecordTen();
  {
    // The attacker appends through the chain format itself: a perfect link.
    auto store = OpenSqliteStore(db_);
    ASSERT_TRUE(store.ok());
    auto head = (*store)->LoadHead(kChain);
    ASSERT_TRUE(head.ok());
    const AuditEvent forged = testing::MakeEvent("forged", "alice", "shop", "api-0", "ls");
    ASSERT_TRUE((*store)->Append(&*head, {&forged}, 1).ok());
  }
  // The chain's links all hold ...
  auto plain = VerifyChains(**OpenSqliteStore(db_), "");
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->intact());
  // ... but no signature covers record 11.
  auto [intact, out] = Verify();
  EXPECT_FALSE(intact);
  EXPECT_THAT(out, HasSubstr("chain test-chain: BROKEN at sequence 11: records 11 to 11 are not "
                             "covered by a signed checkpoint (the newest is at sequence 10"));
  // Allowing one unsigned record (records appended since the last signing) accepts it: the
  // operator's choice, documented.
  EXPECT_TRUE(Verify({}, 1).first);
}

// Attack 2 while audit runs: the writer's next commit conflicts with the forged record; it
// must not then continue (and sign) the chain from the forged head.
TEST_F(TamperTest, Attack2AForgedRecordAppendedWhileAuditRunsIsNeitherContinuedNorSigned) {
  Audit audit(db_, key_.private_path, state_);
  audit.Record("a", 3);
  AppendForgedRecord();
  EXPECT_EQ(audit.RecordOne("b1").error_code(), grpc::StatusCode::UNAVAILABLE);  // the conflict
  EXPECT_EQ(audit.RecordOne("b2").error_code(), grpc::StatusCode::UNAVAILABLE);  // refused
  EXPECT_EQ(audit.metrics().Error("foreign_records").Value(), 1);
  std::ostringstream line;
  auto signed_head = cli::RunCheckpoint(audit.stub(), line);
  ASSERT_TRUE(signed_head.ok());
  EXPECT_EQ(signed_head->sequence(), 3);  // the forged record 4 is not attested
  audit.Stop();
  auto [intact, out] = Verify();
  EXPECT_FALSE(intact);
  EXPECT_THAT(out, HasSubstr("records 4 to 4 are not covered by a signed checkpoint"));
}

// The writer's own re-checks reload the head first: a chain changed behind its back fails
// every one of them, so readiness stays off although the database takes writes.
TEST_F(TamperTest, AForgedRecordKeepsTheReplicaNotReadyAcrossRechecks) {
  Audit audit(db_, key_.private_path, state_, /*with_checkpointer=*/true, absl::Milliseconds(20));
  audit.Record("a", 3);
  AppendForgedRecord();
  EXPECT_EQ(audit.RecordOne("b1").error_code(), grpc::StatusCode::UNAVAILABLE);  // the conflict
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (audit.metrics().store_rechecks("failed").Value() < 5 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GE(audit.metrics().store_rechecks("failed").Value(), 5);
  EXPECT_EQ(audit.metrics().store_rechecks("ok").Value(), 0);
  EXPECT_EQ(audit.health(), (std::vector<bool>{false}));
  EXPECT_EQ(audit.RecordOne("b2").error_code(), grpc::StatusCode::UNAVAILABLE);  // refused
  EXPECT_EQ(audit.health(), (std::vector<bool>{false}));
}

TEST_F(TamperTest, Attack3RehashingAfterAnEditIsDetected) {
  RecordTen();
  AuditEvent event;
  const std::string edited = EditedEvent(db_, 3, &event);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db, "UPDATE records SET event = ?1, user_name = 'mallory' WHERE sequence = 3",
                     -1, &stmt, nullptr);
  sqlite3_bind_blob(stmt, 1, edited.data(), static_cast<int>(edited.size()), SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_DONE);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  Rehash(db_, kChain);
  auto plain = VerifyChains(**OpenSqliteStore(db_), "");
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->intact());  // a perfect chain again
  auto [intact, out] = Verify();
  EXPECT_FALSE(intact);
  EXPECT_THAT(out, HasSubstr("chain test-chain: BROKEN at sequence 10: the record's hash differs "
                             "from the signed checkpoint at sequence 10 (the chain was rewritten"));
}

TEST_F(TamperTest, Attack3RehashingAfterAnInsertIsDetected) {
  RecordTen();
  // Make room at sequence 5 (two steps so the UNIQUE index never sees a duplicate), insert a
  // well-formed event (record 4's under a new id, so every column agrees), re-hash.
  AuditEvent event;
  EditedEvent(db_, 4, &event);
  event.mutable_principal()->set_user("alice");
  event.set_id("inserted");
  const std::string bytes = event.SerializeAsString();
  Sql(db_, "UPDATE records SET sequence = -sequence WHERE sequence >= 5");
  Sql(db_, "UPDATE records SET sequence = 1 - sequence WHERE sequence < 0");
  Sql(db_,
      absl::StrCat(
          "INSERT INTO records (event_id, chain_id, sequence, stored_time_us, event, hash, "
          "previous_hash, event_time_us, kind, user_name, groups_text, namespace, pod, container, "
          "verdict, rule, session_id, argv_text, cluster) SELECT 'inserted', chain_id, 5, "
          "stored_time_us, X'",
          absl::BytesToHexString(bytes),
          "', hash, previous_hash, event_time_us, kind, user_name, groups_text, "
          "namespace, pod, container, verdict, rule, session_id, argv_text, cluster FROM records "
          "WHERE sequence = 4"));
  Rehash(db_, kChain);
  auto plain = VerifyChains(**OpenSqliteStore(db_), "");
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->intact()) << plain->DebugString();
  Rehash(db_, kChain);
  auto [intact, out] = Verify();
  EXPECT_FALSE(intact);
  EXPECT_THAT(out, HasSubstr("chain test-chain: BROKEN at sequence 10: the record's hash differs "
                             "from the signed checkpoint"));
}

TEST_F(TamperTest, Attack4DeletingTheOldestRecordsBehindAForgedRetentionCheckpointIsDetected) {
  RecordTen();
  Sql(db_,
      "INSERT INTO checkpoints (chain_id, sequence, hash, created_us) SELECT chain_id, "
      "sequence, hash, 0 FROM records WHERE sequence = 4");
  Sql(db_, "DELETE FROM records WHERE sequence <= 4");
  auto plain = VerifyChains(**OpenSqliteStore(db_), "");
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->intact());  // links fine from the forged cut
  auto [intact, out] = Verify();
  EXPECT_FALSE(intact);
  EXPECT_THAT(out, HasSubstr("chain test-chain: BROKEN at sequence 4: retention checkpoint not "
                             "trusted: chain test-chain sequence 4 (retention cut checkpoint"));
  EXPECT_THAT(out, HasSubstr("which is not among the public keys given"));

  // Signed with another key (the attacker's own) is no better.
  const KeyFiles mine = MakeKey(tmp_.path(), "attacker");
  auto attacker = CheckpointKey::LoadPrivate(mine.private_path);
  ASSERT_TRUE(attacker.ok());
  Checkpoint cut = *(*OpenSqliteStore(db_))->GetCheckpoint(kChain);
  SignedCheckpoint forged;
  forged.set_kind(SignedCheckpoint::KIND_RETENTION_CUT);
  forged.set_chain_id(kChain);
  forged.set_sequence(4);
  forged.set_hash(cut.hash);
  ASSERT_TRUE((*attacker)->Sign(&forged).ok());
  // ... even when the attacker also puts our key id on it.
  Sql(db_, absl::StrCat("UPDATE checkpoints SET signature = X'",
                        absl::BytesToHexString(forged.signature()), "', key_id = '",
                        (*CheckpointKey::LoadPublic(key_.public_path))->key_id(), "'"));
  auto [intact2, out2] = Verify();
  EXPECT_FALSE(intact2);
  EXPECT_THAT(out2, HasSubstr("retention checkpoint not trusted"));
  EXPECT_THAT(out2, HasSubstr("the signature is not valid"));
}

TEST_F(TamperTest, Attack5APhantomSecondChainIsDetected) {
  RecordTen();
  {
    auto store = OpenSqliteStore(db_);
    ASSERT_TRUE(store.ok());
    ChainHead head;
    head.chain_id = "phantom";
    const AuditEvent event = testing::MakeEvent("phantom-1");
    ASSERT_TRUE((*store)->Append(&head, {&event}, 1).ok());
  }
  auto [intact, out] = Verify();
  EXPECT_FALSE(intact);
  EXPECT_THAT(out, HasSubstr("chain phantom: BROKEN at sequence 1: the chain has no signed "
                             "checkpoint"));
  EXPECT_THAT(out, HasSubstr("chain test-chain: intact, 10 records"));
}

TEST_F(TamperTest, Attack6DeletingEveryRecordIsDetected) {
  RecordTen();
  Sql(db_, "DELETE FROM records");
  auto [intact, out] = Verify();
  EXPECT_FALSE(intact);
  EXPECT_THAT(out, HasSubstr("chain test-chain: missing from the store, but signed checkpoint at "
                             "sequence 10 attests it"));
  // Even without checkpoints, an empty store is not "intact".
  Audit verifier(db_, "", "", false);
  std::ostringstream plain;
  auto result = cli::RunVerify(verifier.stub(), "", plain);
  ASSERT_TRUE(result.ok());
  EXPECT_FALSE(*result);
  EXPECT_THAT(plain.str(), HasSubstr("the store holds no chains"));
}

TEST_F(TamperTest, Attack7ACorruptIndexPageIsDetected) {
  RecordTen();
  const int64_t page_size = SqlInt(db_, "PRAGMA page_size");
  const int64_t root =
      SqlInt(db_, "SELECT rootpage FROM sqlite_master WHERE name = 'records_user'");
  ASSERT_GT(root, 1);
  Sql(db_, "PRAGMA journal_mode=DELETE");  // the WAL folded into the file
  {
    std::fstream file(db_, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(file.good());
    file.seekp((root - 1) * page_size);
    const std::string garbage(static_cast<size_t>(page_size), '\x5a');
    file.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  auto [intact, out] = Verify();
  EXPECT_FALSE(intact);
  EXPECT_THAT(out, HasSubstr("database integrity check: "));
}

TEST_F(TamperTest, Attack8RestartOnATruncatedHeadIsRefused) {
  RecordTen();
  auto key = CheckpointKey::LoadPrivate(key_.private_path);
  ASSERT_TRUE(key.ok());
  {
    auto store = OpenSqliteStore(db_);
    ASSERT_TRUE(store.ok());
    EXPECT_TRUE(CheckStoreAgainstState(**store, kChain, **key, state_).ok());
    // A head ahead of the checkpoint (records committed after the last signing, then a crash)
    // is fine.
    ChainHead head = *(*store)->LoadHead(kChain);
    const AuditEvent event = testing::MakeEvent("late");
    ASSERT_TRUE((*store)->Append(&head, {&event}, 1).ok());
    EXPECT_TRUE(CheckStoreAgainstState(**store, kChain, **key, state_).ok());
  }
  Sql(db_, "DELETE FROM records WHERE sequence > 6");
  auto store = OpenSqliteStore(db_);
  ASSERT_TRUE(store.ok());
  absl::Status refused = CheckStoreAgainstState(**store, kChain, **key, state_);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr("chain test-chain: the store's head is at sequence 6"));
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr("its last signed checkpoint in " + state_ + " is at sequence 10"));
  EXPECT_THAT(std::string(refused.message()), HasSubstr("refusing to start"));

  // Rewritten below the checkpoint (same length, another hash) is refused too.
  Sql(db_, "DELETE FROM records");
  {
    Audit other(db_, "", "", false);
    other.Record("x", 12);
  }
  refused = CheckStoreAgainstState(**store, kChain, **key, state_);
  EXPECT_THAT(std::string(refused.message()), HasSubstr("the store's record 10 has hash"));
  // The state file of another chain, or a forged one, is refused; none at all is a first start.
  EXPECT_THAT(std::string(CheckStoreAgainstState(**store, "other", **key, state_).message()),
              HasSubstr("not of this replica's chain other"));
  auto other_key = CheckpointKey::LoadPrivate(MakeKey(tmp_.path(), "k2").private_path);
  EXPECT_THAT(std::string(CheckStoreAgainstState(**store, kChain, **other_key, state_).message()),
              HasSubstr("signed by key"));
  EXPECT_TRUE(CheckStoreAgainstState(**store, kChain, **key, tmp_.path() + "/none").ok());
}

TEST_F(TamperTest, RetentionCutsAreSignedAndAStoreWithCutsVerifies) {
  std::string before;
  {
    Audit audit(db_, key_.private_path, state_);
    audit.Record("a", 6);
    std::ostringstream line;
    ASSERT_TRUE(cli::RunCheckpoint(audit.stub(), line).ok());
    before = line.str();
    // Retention with the checkpointer's signer removes every record but the newest.
    auto removed = audit.store().DeleteBefore(
        absl::ToUnixMicros(absl::Now()) + 1000000,
        [&](Checkpoint* cut) { return audit.checkpointer().SignCut(cut); });
    ASSERT_TRUE(removed.ok()) << removed.status();
    EXPECT_EQ(*removed, 5);
    audit.Record("b", 3);
    // The hook saw the on-demand head checkpoint and the retention cut.
    bool saw_cut = false;
    for (const SignedCheckpoint& c : audit.hooked()) {
      saw_cut |= c.kind() == SignedCheckpoint::KIND_RETENTION_CUT && c.sequence() == 5;
    }
    EXPECT_TRUE(saw_cut);
    EXPECT_EQ(audit.metrics().checkpoints_signed("retention_cut").Value(), 1);
    EXPECT_GE(audit.metrics().checkpoints_signed("head").Value(), 1);
    EXPECT_EQ(audit.metrics().checkpoint_head_sequence().Value(), 6);
  }
  const Checkpoint cut = *(*OpenSqliteStore(db_))->GetCheckpoint(kChain);
  EXPECT_EQ(cut.sequence, 5);
  EXPECT_FALSE(cut.signature.empty());
  auto [intact, out] = Verify();
  EXPECT_TRUE(intact) << out;
  EXPECT_EQ(out, "chain test-chain: intact, 4 records\n");
  // The head signed before the cut (sequence 6, kept as the head then) still proves the chain:
  // the signed cut is at 5 and the record at 6 holds its hash.
  WriteFile(tmp_.path() + "/before.jsonl", before);
  auto [before_intact, before_out] = Verify({tmp_.path() + "/before.jsonl"}, 3);
  EXPECT_TRUE(before_intact) << before_out;
}

TEST(CheckpointKeyTest, KeyFilesAreCheckedWithClearErrors) {
  testing::TempDir tmp("podgate-ckpt-keys");
  const KeyFiles ed = MakeKey(tmp.path(), "ed");
  const KeyFiles ec = MakeKey(tmp.path(), "ec", "EC");
  auto priv = CheckpointKey::LoadPrivate(ed.private_path);
  ASSERT_TRUE(priv.ok()) << priv.status();
  EXPECT_TRUE((*priv)->has_private());
  EXPECT_EQ((*priv)->key_id().size(), 16u);
  auto pub = CheckpointKey::LoadPublic(ed.public_path);
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ((*pub)->key_id(), (*priv)->key_id());
  EXPECT_FALSE((*pub)->has_private());
  // A verifier may be given the private key file: only its public half is kept.
  auto pub_from_priv = CheckpointKey::LoadPublic(ed.private_path);
  ASSERT_TRUE(pub_from_priv.ok());
  EXPECT_FALSE((*pub_from_priv)->has_private());

  auto missing = CheckpointKey::LoadPrivate(tmp.path() + "/nope.pem");
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("nope.pem: cannot be read"));
  auto public_for_private = CheckpointKey::LoadPrivate(ed.public_path);
  EXPECT_THAT(std::string(public_for_private.status().message()),
              HasSubstr("holds a public key; signing needs the Ed25519 private key"));
  auto not_ed = CheckpointKey::LoadPrivate(ec.private_path);
  EXPECT_THAT(std::string(not_ed.status().message()), HasSubstr("checkpoints need an Ed25519 key"));
  EXPECT_THAT(std::string(not_ed.status().message()), HasSubstr("EC"));
  EXPECT_FALSE(CheckpointKey::LoadPublic(ec.public_path).ok());
  WriteFile(tmp.path() + "/junk.pem", "hello");
  EXPECT_THAT(std::string(CheckpointKey::LoadPublic(tmp.path() + "/junk.pem").status().message()),
              HasSubstr("not a PEM key"));
  WriteFile(tmp.path() + "/broken.pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  EXPECT_THAT(
      std::string(CheckpointKey::LoadPrivate(tmp.path() + "/broken.pem").status().message()),
      HasSubstr("does not parse"));
  // A public key cannot sign.
  SignedCheckpoint c;
  EXPECT_EQ((*pub)->Sign(&c).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(CheckpointKeyTest, TheOpensslCliKeyWorksAndTheKeyIdIsTheDocumentedFingerprint) {
  testing::TempDir tmp("podgate-ckpt-cli");
  const std::string priv = tmp.path() + "/k.pem";
  const std::string pub = tmp.path() + "/k.pub.pem";
  const std::string raw = tmp.path() + "/k.raw";
  ASSERT_EQ(
      std::system(("openssl genpkey -algorithm ed25519 -out " + priv + " && openssl pkey -in " +
                   priv + " -pubout -out " + pub + " && openssl pkey -pubin -in " + pub +
                   " -outform DER | tail -c 32 > " + raw)
                      .c_str()),
      0);
  auto key = CheckpointKey::LoadPrivate(priv);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ((*key)->key_id(), crypto::Sha256Hex(ReadFile(raw)).substr(0, 16));
}

SignedCheckpoint Signed(const CheckpointKey& key, SignedCheckpoint::Kind kind, int64_t seq) {
  SignedCheckpoint c;
  c.set_kind(kind);
  c.set_chain_id("c1");
  c.set_sequence(seq);
  c.set_hash(std::string(32, '\x07'));
  *c.mutable_time() = google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(1700000000000001);
  EXPECT_TRUE(key.Sign(&c).ok());
  return c;
}

TEST(CheckpointSignatureTest, EveryFieldIsCoveredAndKindsDoNotMix) {
  testing::TempDir tmp("podgate-ckpt-sig");
  auto key = *CheckpointKey::LoadPrivate(MakeKey(tmp.path(), "k").private_path);
  auto other = *CheckpointKey::LoadPrivate(MakeKey(tmp.path(), "o").private_path);
  const std::vector<std::shared_ptr<const CheckpointKey>> keys = {other, key};
  const SignedCheckpoint good = Signed(*key, SignedCheckpoint::KIND_HEAD, 9);
  EXPECT_TRUE(CheckCheckpoint(keys, good).ok());
  auto fails = [&](const std::function<void(SignedCheckpoint*)>& change, const std::string& why) {
    SignedCheckpoint c = good;
    change(&c);
    absl::Status s = CheckCheckpoint(keys, c);
    EXPECT_FALSE(s.ok()) << why;
    return std::string(s.message());
  };
  EXPECT_THAT(fails([](SignedCheckpoint* c) { c->set_sequence(10); }, "sequence"),
              HasSubstr("the signature is not valid"));
  fails([](SignedCheckpoint* c) { c->set_chain_id("c2"); }, "chain");
  fails([](SignedCheckpoint* c) { c->mutable_hash()->back() = 'x'; }, "hash");
  fails([](SignedCheckpoint* c) { c->mutable_time()->set_nanos(2000); }, "time");
  EXPECT_THAT(
      fails([](SignedCheckpoint* c) { c->set_kind(SignedCheckpoint::KIND_RETENTION_CUT); }, "kind"),
      HasSubstr("retention cut checkpoint"));
  EXPECT_THAT(fails([](SignedCheckpoint* c) { c->set_kind(SignedCheckpoint::KIND_UNSPECIFIED); },
                    "no kind"),
              HasSubstr("has no kind"));
  EXPECT_THAT(fails([](SignedCheckpoint* c) { c->set_key_id("0123456789abcdef"); }, "key id"),
              HasSubstr("not among the public keys given"));
  EXPECT_THAT(fails([](SignedCheckpoint* c) { c->clear_signature(); }, "unsigned"),
              HasSubstr("not signed"));
  EXPECT_THAT(fails([](SignedCheckpoint* c) { c->set_hash("short"); }, "short hash"),
              HasSubstr("32-byte hash"));
  // The signing input: domain, kind, then length-prefixed fields (docs/audit.md).
  const std::string input = CheckpointSigningInput(good);
  EXPECT_EQ(input.substr(0, 28), "podgate.audit.checkpoint.v1\n");
  EXPECT_EQ(input.size(), 28u + 4 + 4 + 2 + 8 + 4 + 32 + 8 + 4);
}

TEST(CheckpointFileTest, ParsesStateFilesAndSinkLinesAndNamesBadLines) {
  testing::TempDir tmp("podgate-ckpt-file");
  auto key = *CheckpointKey::LoadPrivate(MakeKey(tmp.path(), "k").private_path);
  const SignedCheckpoint head = Signed(*key, SignedCheckpoint::KIND_HEAD, 3);
  exporting::ExportItem item;
  item.kind = exporting::ExportItem::Kind::kCheckpoint;
  item.checkpoint = Signed(*key, SignedCheckpoint::KIND_RETENTION_CUT, 2);
  exporting::ExportItem record;
  record.record.set_chain_id("c1");
  record.record.set_sequence(1);
  const std::string text = absl::StrCat(CheckpointJson(head), "\n\n", exporting::ItemJson(item),
                                        "\n", exporting::ItemJson(record), "\n");
  auto parsed = ParseCheckpointLines(text, "f.jsonl");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[0].SerializeAsString(), head.SerializeAsString());
  EXPECT_EQ((*parsed)[1].SerializeAsString(), item.checkpoint.SerializeAsString());
  EXPECT_TRUE(CheckCheckpoint({key}, (*parsed)[1]).ok());

  for (const auto& [bad, needle] : std::vector<std::pair<std::string, std::string>>{
           {"{\"chainId\":", "f.jsonl:2: not a JSON object"},
           {"[1]", "f.jsonl:2: not a JSON object"},
           {"{\"type\":\"gossip\"}", "f.jsonl:2: \"type\" is \"gossip\""},
           {"{\"type\":3}", "\"type\" is not a string"},
           {"{\"sequence\":\"x\"}", "f.jsonl:2: not a SignedCheckpoint"},
           {"{\"colour\":1}", "f.jsonl:2: not a SignedCheckpoint"}}) {
    auto result = ParseCheckpointLines(absl::StrCat(CheckpointJson(head), "\n", bad), "f.jsonl");
    EXPECT_THAT(std::string(result.status().message()), HasSubstr(needle)) << bad;
  }
  EXPECT_THAT(std::string(ReadCheckpointFile(tmp.path() + "/none").status().message()),
              HasSubstr("cannot be read"));
}

TEST(CheckpointCliTest, VerifyFlagsAreCheckedAndABadCheckpointIsReported) {
  testing::TempDir tmp("podgate-ckpt-cli-flags");
  const KeyFiles key = MakeKey(tmp.path(), "k");
  const std::string state = tmp.path() + "/state.jsonl";
  Audit audit(tmp.path() + "/audit.db", key.private_path, state);
  audit.Record("a", 2);
  std::ostringstream out;
  cli::VerifyFlags flags;
  flags.checkpoint_files = {state};
  EXPECT_THAT(std::string(cli::RunVerify(audit.stub(), flags, out).status().message()),
              HasSubstr("--checkpoint needs --public_key"));
  flags.public_key_files = {tmp.path() + "/missing.pem"};
  EXPECT_THAT(std::string(cli::RunVerify(audit.stub(), flags, out).status().message()),
              HasSubstr("--public_key: "));
  flags.public_key_files = {key.public_path};
  flags.max_unsigned_records = -1;
  EXPECT_FALSE(cli::RunVerify(audit.stub(), flags, out).ok());
  flags.max_unsigned_records = 0;

  // The on-demand checkpoint covers both records; a forged line in the file is reported.
  std::ostringstream line;
  auto signed_head = cli::RunCheckpoint(audit.stub(), line);
  ASSERT_TRUE(signed_head.ok()) << signed_head.status();
  EXPECT_EQ(signed_head->sequence(), 2);
  SignedCheckpoint forged = *signed_head;
  forged.set_sequence(1);
  WriteFile(tmp.path() + "/c.jsonl", line.str() + CheckpointJson(forged) + "\n");
  flags.checkpoint_files = {tmp.path() + "/c.jsonl"};
  std::ostringstream report;
  auto intact = cli::RunVerify(audit.stub(), flags, report);
  ASSERT_TRUE(intact.ok());
  EXPECT_FALSE(*intact);
  EXPECT_THAT(report.str(), HasSubstr("BAD: chain test-chain sequence 1 (head checkpoint"));
  EXPECT_THAT(report.str(), HasSubstr("the signature is not valid"));
  EXPECT_THAT(report.str(), HasSubstr("chain test-chain: intact, 2 records"));
}

TEST(CheckpointCliTest, VerifyRequestLimitsAreEnforcedByTheServer) {
  testing::TempDir tmp("podgate-ckpt-limits");
  Audit audit(tmp.path() + "/audit.db", "", "", false);
  audit.Record("a", 1);
  v1::VerifyRequest request;
  request.set_max_unsigned_records(-1);
  v1::VerifyResponse response;
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(audit.stub().Verify(&ctx, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  request.set_max_unsigned_records(0);
  for (int i = 0; i <= kMaxVerifyCheckpoints; ++i) {
    request.add_checkpoints()->set_chain_id("c");
  }
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(audit.stub().Verify(&ctx, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  request.mutable_checkpoints()->RemoveLast();
  {
    // At the limit the request is served (the bogus chain "c" is reported missing).
    grpc::ClientContext ctx;
    ASSERT_TRUE(audit.stub().Verify(&ctx, request, &response).ok());
    EXPECT_FALSE(response.intact());
    EXPECT_THAT(response.problems(0), HasSubstr("chain c: missing from the store"));
  }
}

TEST(CheckpointCliTest, CreateCheckpointWithoutAKeyIsAFailedPrecondition) {
  testing::TempDir tmp("podgate-ckpt-nokey");
  Audit audit(tmp.path() + "/audit.db", "", "", false);
  std::ostringstream out;
  auto result = cli::RunCheckpoint(audit.stub(), out);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("--checkpoint_key"));
}

TEST(CheckpointerTest, SignsOnlyWhenTheHeadMovedAndKeepsTheStateFile) {
  testing::TempDir tmp("podgate-ckpt-periodic");
  const KeyFiles key = MakeKey(tmp.path(), "k");
  absl::Mutex mu;
  ChainHead head;
  head.chain_id = "c1";
  std::vector<SignedCheckpoint> seen;
  CheckpointerOptions options;
  options.chain_id = "c1";
  options.key = *CheckpointKey::LoadPrivate(key.private_path);
  options.interval = absl::Milliseconds(10);
  options.state_path = tmp.path() + "/state";
  options.head = [&] {
    absl::MutexLock lock(&mu);
    return head;
  };
  options.on_checkpoint = [&](const SignedCheckpoint& c) {
    absl::MutexLock lock(&mu);
    seen.push_back(c);
  };
  {
    auto checkpointer = Checkpointer::Start(options);
    ASSERT_TRUE(checkpointer.ok());
    // An empty chain has nothing to sign.
    EXPECT_EQ((*checkpointer)->CheckpointNow().status().code(),
              absl::StatusCode::kFailedPrecondition);
    {
      absl::MutexLock lock(&mu);
      head.sequence = 4;
      head.hash = std::string(32, '\x04');
      auto signed_once = [&] { return !seen.empty(); };
      mu.Await(absl::Condition(&signed_once));
    }
    auto parsed = ReadCheckpointFile(options.state_path);
    ASSERT_TRUE(parsed.ok());
    ASSERT_EQ(parsed->size(), 1u);
    EXPECT_EQ((*parsed)[0].sequence(), 4);
    EXPECT_TRUE(CheckCheckpoint({options.key}, (*parsed)[0]).ok());
    absl::SleepFor(absl::Milliseconds(50));  // several intervals: the head did not move
    absl::MutexLock lock(&mu);
    EXPECT_EQ(seen.size(), 1u);
  }
  // Bad options are refused.
  CheckpointerOptions bad = options;
  bad.key = *CheckpointKey::LoadPublic(key.public_path);
  EXPECT_FALSE(Checkpointer::Start(bad).ok());
  bad = options;
  bad.head = nullptr;
  EXPECT_FALSE(Checkpointer::Start(bad).ok());
  // A state file that cannot be written fails the signing (and the hook is not told).
  bad = options;
  bad.state_path = tmp.path() + "/no/such/dir/state";
  bad.interval = absl::ZeroDuration();
  EXPECT_FALSE(Checkpointer::Start(bad).ok());
}

}  // namespace
}  // namespace podgate::audit
