// Signed checkpoints with the real binaries: podgate-audit started with --checkpoint_key signs
// its head (periodically, at stop, and on `podgate-audit-cli checkpoint`) into its state file;
// `podgate-audit-cli verify --checkpoint --public_key` passes on the untouched store; after
// the database's newest records are deleted, podgate-audit refuses to start with one line
// naming both heads, and verify (against an audit started without a key) exits 1 naming the
// chain and the sequence.
#include <sqlite3.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "audit_testing.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "podgate/audit/v1/audit.grpc.pb.h"
#include "support/grpc_health.h"
#include "support/subprocess.h"

namespace podgate::audit {
namespace {

using ::podgate::audit::v1::AuditService;
using ::podgate::testing::Subprocess;
using ::testing::HasSubstr;

struct Running {
  std::unique_ptr<Subprocess> process;
  std::unique_ptr<AuditService::Stub> stub;
  std::string address;
};

Running StartAudit(const std::string& db, const std::vector<std::string>& extra) {
  Running running;
  std::vector<std::string> args = {"--grpc_address=127.0.0.1:0",
                                   "--metrics_address=", "--store=sqlite://" + db,
                                   "--chain_id=ckpt-chain", "--drain_timeout=1s"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto process = Subprocess::Start(PODGATE_AUDIT_BIN, args);
  EXPECT_TRUE(process.ok()) << process.status();
  running.process = *std::move(process);
  auto line = running.process->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
  EXPECT_TRUE(line.ok()) << line.status();
  if (line.ok()) {
    const nlohmann::json j = nlohmann::json::parse(*line);
    running.stub = AuditService::NewStub(podgate::testing::LocalChannel(j["grpc_port"]));
    running.address = absl::StrCat("127.0.0.1:", j["grpc_port"].get<int>());
  }
  return running;
}

std::pair<int, std::string> Shell(const std::string& command) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  std::string out;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    out.append(buffer, n);
  }
  const int status = pclose(pipe);
  return {WEXITSTATUS(status), out};
}

void Record(AuditService::Stub& stub, int n) {
  grpc::ClientContext ctx;
  auto stream = stub.Record(&ctx);
  for (int i = 0; i < n; ++i) {
    v1::RecordRequest request;
    *request.mutable_event() = testing::MakeEvent(absl::StrCat("ckpt-", i));
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

TEST(AuditCheckpointBinaryTest, RefusesToStartOnAHeadTruncatedBelowItsCheckpoint) {
  testing::TempDir tmp("podgate-audit-ckpt");
  const std::string db = tmp.path() + "/audit.db";
  const std::string key = tmp.path() + "/audit.pem";
  const std::string pub = tmp.path() + "/audit.pub.pem";
  const std::string state = tmp.path() + "/state.jsonl";
  ASSERT_EQ(Shell("openssl genpkey -algorithm ed25519 -out " + key + " && openssl pkey -in " + key +
                  " -pubout -out " + pub)
                .first,
            0);
  const std::vector<std::string> signing = {
      "--checkpoint_key=" + key, "--checkpoint_state=" + state, "--checkpoint_interval=1s"};
  const std::string cli = PODGATE_AUDIT_CLI_BIN;
  {
    Running audit = StartAudit(db, signing);
    ASSERT_NE(audit.stub, nullptr);
    Record(*audit.stub, 5);
    auto [status, line] = Shell(cli + " --server=" + audit.address + " checkpoint");
    ASSERT_EQ(status, 0) << line;
    const nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_EQ(j["chainId"], "ckpt-chain");
    EXPECT_EQ(j["sequence"], "5");
    EXPECT_EQ(j["kind"], "KIND_HEAD");
    auto [ok, out] = Shell(cli + " --server=" + audit.address + " verify --checkpoint=" + state +
                           " --public_key=" + pub);
    EXPECT_EQ(ok, 0) << out;
    EXPECT_EQ(out, "chain ckpt-chain: intact, 5 records\n");
    audit.process->Signal(SIGTERM);
    auto exit = audit.process->WaitExit(absl::Seconds(20));
    ASSERT_TRUE(exit.ok());
    EXPECT_EQ(*exit, 0);
  }
  {
    sqlite3* handle = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &handle), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(handle, "DELETE FROM records WHERE sequence > 2", nullptr, nullptr, nullptr),
        SQLITE_OK);
    sqlite3_close(handle);
  }
  auto process =
      Subprocess::Start(PODGATE_AUDIT_BIN, {"--grpc_address=127.0.0.1:0",
                                            "--metrics_address=", "--store=sqlite://" + db,
                                            "--chain_id=ckpt-chain", signing[0], signing[1]});
  ASSERT_TRUE(process.ok());
  auto exit = (*process)->WaitExit(absl::Seconds(20));
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(*exit, 2);
  const auto lines = (*process)->Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("chain ckpt-chain: the store's head is at sequence 2"));
  EXPECT_THAT(lines[0], HasSubstr("is at sequence 5"));
  EXPECT_THAT(lines[0], HasSubstr("refusing to start"));

  // An audit without the key serves the damaged store; verify names the damage and exits 1.
  Running plain = StartAudit(db, {});
  ASSERT_NE(plain.stub, nullptr);
  auto [status, out] = Shell(cli + " --server=" + plain.address + " verify --checkpoint=" + state +
                             " --public_key=" + pub);
  EXPECT_EQ(status, 1) << out;
  EXPECT_THAT(out, HasSubstr("chain ckpt-chain: BROKEN at sequence 3: the chain ends at sequence "
                             "2, before its signed checkpoint at sequence 5"));
  // Usage errors exit 2.
  EXPECT_EQ(Shell(cli + " --server=" + plain.address + " verify --checkpoint=" + state).first, 2);
  EXPECT_EQ(Shell(cli + " --server=" + plain.address + " checkpoint").first, 2);
}

// Signed checkpoints leave the box through the export sinks, and the SIEM's copy is the evidence
// that still holds when an attacker can also erase audit's local state file: the truncated
// store, served by a restarted audit, fails verify against the checkpoints the sink received.
TEST(AuditCheckpointBinaryTest, CheckpointsReachTheSinkAndTheirCopyCatchesATruncation) {
  testing::TempDir tmp("podgate-audit-ckpt-sink");
  const std::string db = tmp.path() + "/audit.db";
  const std::string key = tmp.path() + "/audit.pem";
  const std::string pub = tmp.path() + "/audit.pub.pem";
  const std::string state = tmp.path() + "/state.jsonl";
  const std::string sink = tmp.path() + "/siem.jsonl";
  const std::string config = tmp.path() + "/export.json";
  ASSERT_EQ(Shell("openssl genpkey -algorithm ed25519 -out " + key + " && openssl pkey -in " + key +
                  " -pubout -out " + pub)
                .first,
            0);
  {
    std::ofstream out(config);
    out << R"({"sinks":[{"name":"siem","maxWait":"50ms","file":{"path":")" << sink << R"("}}]})";
  }
  const std::vector<std::string> flags = {"--checkpoint_key=" + key, "--checkpoint_state=" + state,
                                          "--checkpoint_interval=1s", "--export_config=" + config,
                                          "--export_poll_interval=50ms"};
  const std::string cli = PODGATE_AUDIT_CLI_BIN;
  // The sink's file holds a signed checkpoint of the head after the records it covers.
  auto sink_checkpoint_at = [&](int64_t sequence) {
    std::ifstream in(sink);
    int64_t records = 0;
    bool covered = false;
    for (std::string line; std::getline(in, line);) {
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded()) {
        continue;
      }
      if (j.value("type", "") == "record") {
        ++records;
      } else if (j.value("type", "") == "checkpoint" &&
                 j.value("sequence", "") == absl::StrCat(sequence)) {
        covered = records >= sequence;
      }
    }
    return covered;
  };
  {
    Running audit = StartAudit(db, flags);
    ASSERT_NE(audit.stub, nullptr);
    Record(*audit.stub, 40);
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (!sink_checkpoint_at(40) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(100));
    }
    ASSERT_TRUE(sink_checkpoint_at(40)) << "no checkpoint of sequence 40 after its records";
    auto [ok, out] = Shell(cli + " --server=" + audit.address + " verify --checkpoint=" + sink +
                           " --public_key=" + pub);
    EXPECT_EQ(ok, 0) << out;
    EXPECT_EQ(out, "chain ckpt-chain: intact, 40 records\n");
    audit.process->Signal(SIGTERM);
    ASSERT_TRUE(audit.process->WaitExit(absl::Seconds(20)).ok());
  }
  // The attacker truncates the store and removes audit's own state file.
  {
    sqlite3* handle = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &handle), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(handle, "DELETE FROM records WHERE sequence > 30", nullptr, nullptr, nullptr),
        SQLITE_OK);
    sqlite3_close(handle);
  }
  ASSERT_EQ(std::remove(state.c_str()), 0);
  Running audit = StartAudit(db, flags);
  ASSERT_NE(audit.stub, nullptr);
  auto [status, out] = Shell(cli + " --server=" + audit.address + " verify --checkpoint=" + sink +
                             " --public_key=" + pub);
  EXPECT_EQ(status, 1) << out;
  EXPECT_THAT(out, HasSubstr("before its signed checkpoint at sequence 40")) << out;
  audit.process->Signal(SIGTERM);
  EXPECT_TRUE(audit.process->WaitExit(absl::Seconds(20)).ok());
}

}  // namespace
}  // namespace podgate::audit
