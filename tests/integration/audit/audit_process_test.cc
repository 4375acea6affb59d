// The real podgate-audit and podgate-audit-cli binaries. Acked means durable: podgate-audit
// takes a concurrent write load over gRPC, is killed with SIGKILL mid-load and restarted on the
// same store; every id acked before the kill must be stored exactly once, the chain must
// verify, and the restarted process continues the chain (SQLite and a real PostgreSQL 15).
// Also: two replicas on one PostgreSQL, the retention flag, bad flags, and the CLI's output and
// exit status.
#include <signal.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "audit_testing.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "podgate/audit/v1/audit.grpc.pb.h"
#include "support/grpc_health.h"
#include "support/http_client.h"
#include "support/loopback.h"
#include "support/prometheus_text.h"
#include "support/subprocess.h"

namespace podgate::audit {
namespace {

using ::podgate::audit::v1::AuditService;
using ::podgate::testing::Subprocess;

constexpr int kStreams = 8;
// Unacked events per stream, at most, as a real client (exec) keeps a bounded window.
constexpr int64_t kWindow = 500;

struct Running {
  std::unique_ptr<Subprocess> process;
  std::unique_ptr<AuditService::Stub> stub;
  std::string address;
  int metrics_port = 0;
};

Running StartAudit(const std::string& store_url, const std::string& chain_id = "crash-chain",
                   std::vector<std::string> extra = {}) {
  Running running;
  std::vector<std::string> args = {"--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
                                   "--store=" + store_url, "--chain_id=" + chain_id,
                                   "--drain_timeout=1s"};
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
    running.metrics_port = j["metrics_port"];
  }
  return running;
}

std::string Id(const std::string& prefix, int stream, int64_t i) {
  return absl::StrCat(prefix, stream, "-", i);
}

podgate::audit::v1::RecordRequest Request(const std::string& id) {
  podgate::audit::v1::RecordRequest request;
  *request.mutable_event() = testing::MakeEvent(id);
  return request;
}

// Writer load: kStreams Record streams, each sending ids as fast as flow control allows.
class Load {
 public:
  explicit Load(AuditService::Stub* stub, std::string prefix = "s") : prefix_(std::move(prefix)) {
    for (int k = 0; k < kStreams; ++k) {
      threads_.emplace_back([this, stub, k] { RunStream(stub, k); });
    }
  }
  ~Load() { Stop(); }

  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) {
        t.join();
      }
    }
  }

  size_t acked_count() {
    absl::MutexLock lock(&mu_);
    return acked_.size();
  }
  std::set<std::string> acked() {
    absl::MutexLock lock(&mu_);
    return acked_;
  }
  // Every id written to a stream (acked or not).
  std::vector<std::string> sent() {
    std::vector<std::string> ids;
    for (int k = 0; k < kStreams; ++k) {
      for (int64_t i = 0; i < sent_[k].load(); ++i) {
        ids.push_back(Id(prefix_, k, i));
      }
    }
    return ids;
  }

 private:
  void RunStream(AuditService::Stub* stub, int k) {
    grpc::ClientContext ctx;
    auto stream = stub->Record(&ctx);
    std::thread reader([&] {
      podgate::audit::v1::RecordResponse response;
      while (stream->Read(&response)) {
        absl::MutexLock lock(&mu_);
        for (const std::string& id : response.ack().ids()) {
          acked_.insert(id);
        }
        stream_acked_[k] += response.ack().ids_size();
      }
    });
    for (int64_t i = 0; !stop_; ++i) {
      while (!stop_ && i - stream_acked_[k].load() >= kWindow) {
        absl::SleepFor(absl::Milliseconds(1));
      }
      // Counted before the write: a write that fails may still have reached the server.
      sent_[k] = i + 1;
      if (!stream->Write(Request(Id(prefix_, k, i)))) {
        break;
      }
    }
    ctx.TryCancel();
    reader.join();
    stream->Finish().IgnoreError();
  }

  const std::string prefix_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> sent_[kStreams] = {};
  std::atomic<int64_t> stream_acked_[kStreams] = {};
  absl::Mutex mu_;
  std::set<std::string> acked_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

// Every stored id with its number of occurrences, through the Query RPC.
std::map<std::string, int> StoredIds(AuditService::Stub& stub) {
  std::map<std::string, int> ids;
  podgate::audit::v1::QueryRequest request;
  request.set_page_size(1000);
  while (true) {
    grpc::ClientContext ctx;
    auto reader = stub.Query(&ctx, request);
    podgate::audit::v1::QueryResponse response;
    std::string next;
    while (reader->Read(&response)) {
      if (response.has_record()) {
        ++ids[response.record().event().id()];
      } else {
        next = response.page_end().next_page_token();
      }
    }
    EXPECT_TRUE(reader->Finish().ok());
    if (next.empty()) {
      return ids;
    }
    request.set_page_token(next);
  }
}

podgate::audit::v1::VerifyResponse Verify(AuditService::Stub& stub) {
  grpc::ClientContext ctx;
  podgate::audit::v1::VerifyResponse response;
  grpc::Status status = stub.Verify(&ctx, podgate::audit::v1::VerifyRequest(), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response;
}

class CrashTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CrashTest, KillDuringLoadLosesNoAckedRecord) {
  testing::TempDir tmp("podgate-audit-crash");
  std::unique_ptr<testing::PostgresServer> pg;
  std::string url = absl::StrCat("sqlite://", tmp.path(), "/audit.db");
  if (GetParam() == "postgresql") {
    auto started = testing::PostgresServer::Start();
    ASSERT_TRUE(started.ok()) << started.status();
    pg = *std::move(started);
    auto created = pg->CreateDatabase("audit");
    ASSERT_TRUE(created.ok());
    url = *created;
  }

  Running audit = StartAudit(url);
  ASSERT_NE(audit.stub, nullptr);
  auto load = std::make_unique<Load>(audit.stub.get());
  // Up to 60 s: on a loaded machine PostgreSQL's commits slow down; the test is about what
  // survives the kill, not about throughput.
  for (int i = 0; i < 2400 && load->acked_count() < 5000; ++i) {
    absl::SleepFor(absl::Milliseconds(25));
  }
  ASSERT_GE(load->acked_count(), 5000u) << "the load did not get going";
  audit.process->Signal(SIGKILL);
  auto status = audit.process->WaitExit(absl::Seconds(10));
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(*status, 128 + SIGKILL);
  load->Stop();
  const std::set<std::string> acked = load->acked();
  const std::vector<std::string> sent = load->sent();
  ASSERT_GT(sent.size(), acked.size()) << "the kill should land mid-load";

  Running restarted = StartAudit(url);
  ASSERT_NE(restarted.stub, nullptr);
  std::map<std::string, int> stored = StoredIds(*restarted.stub);
  size_t missing = 0;
  for (const std::string& id : acked) {
    if (stored[id] != 1) {
      ++missing;
    }
  }
  EXPECT_EQ(missing, 0u) << "acked ids not stored exactly once";
  for (const auto& [id, count] : stored) {
    ASSERT_EQ(count, 1) << id;
  }
  auto verify = Verify(*restarted.stub);
  EXPECT_TRUE(verify.intact());
  ASSERT_EQ(verify.chains_size(), 1);
  EXPECT_EQ(verify.chains(0).records(), static_cast<int64_t>(stored.size()));
  std::cout << "acked before kill: " << acked.size() << ", stored: " << stored.size()
            << ", sent: " << sent.size() << "\n";

  // Clients resend what was not acked; the restarted process continues the same chain and
  // stores each id once.
  {
    grpc::ClientContext ctx;
    auto stream = restarted.stub->Record(&ctx);
    std::set<std::string> reacked;
    std::thread reader([&] {
      podgate::audit::v1::RecordResponse response;
      while (stream->Read(&response)) {
        for (const std::string& id : response.ack().ids()) {
          reacked.insert(id);
        }
      }
    });
    for (const std::string& id : sent) {
      ASSERT_TRUE(stream->Write(Request(id)));
    }
    stream->WritesDone();
    reader.join();
    ASSERT_TRUE(stream->Finish().ok());
    EXPECT_EQ(reacked.size(), sent.size());
  }
  stored = StoredIds(*restarted.stub);
  EXPECT_EQ(stored.size(), sent.size());
  verify = Verify(*restarted.stub);
  EXPECT_TRUE(verify.intact());
  EXPECT_EQ(verify.chains(0).records(), static_cast<int64_t>(sent.size()));

  // The metrics page shows the ingest.
  auto page = podgate::testing::HttpGet(restarted.metrics_port, "/metrics");
  ASSERT_TRUE(page.ok());
  auto parsed = podgate::testing::ParsePrometheusText(page->body);
  ASSERT_TRUE(parsed.ok());
  EXPECT_GT(parsed->samples["podgate_audit_events_acked_total"], 0);
  EXPECT_GT(parsed->samples["podgate_audit_commit_latency_seconds_count"], 0);
  restarted.process->Signal(SIGTERM);
  EXPECT_EQ(*restarted.process->WaitExit(absl::Seconds(10)), 0);
}

INSTANTIATE_TEST_SUITE_P(Stores, CrashTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

TEST(AuditReplicasTest, TwoReplicasWriteToOnePostgresAtOnce) {
  auto pg = testing::PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  auto url = (*pg)->CreateDatabase("audit");
  ASSERT_TRUE(url.ok());
  Running one = StartAudit(*url, "replica-1");
  Running two = StartAudit(*url, "replica-2");
  ASSERT_NE(one.stub, nullptr);
  ASSERT_NE(two.stub, nullptr);
  Load load_one(one.stub.get(), "a");
  Load load_two(two.stub.get(), "b");
  // Up to 60 s (a loaded machine slows PostgreSQL's commits; this is not a throughput test).
  for (int i = 0; i < 2400 && (load_one.acked_count() < 3000 || load_two.acked_count() < 3000);
       ++i) {
    absl::SleepFor(absl::Milliseconds(25));
  }
  load_one.Stop();
  load_two.Stop();
  ASSERT_GE(load_one.acked_count(), 3000u);
  ASSERT_GE(load_two.acked_count(), 3000u);
  // Events queued before the streams were cancelled are still committed; wait until the
  // writers are idle. Either replica answers for the whole database.
  std::map<std::string, int> stored = StoredIds(*two.stub);
  for (int i = 0; i < 50; ++i) {
    absl::SleepFor(absl::Milliseconds(200));
    std::map<std::string, int> again = StoredIds(*two.stub);
    if (again.size() == stored.size()) {
      break;
    }
    stored = std::move(again);
  }
  for (const auto& acked : {load_one.acked(), load_two.acked()}) {
    for (const std::string& id : acked) {
      EXPECT_EQ(stored[id], 1) << id;
    }
  }
  auto verify = Verify(*one.stub);
  EXPECT_TRUE(verify.intact());
  ASSERT_EQ(verify.chains_size(), 2);
  EXPECT_EQ(verify.chains(0).chain_id(), "replica-1");
  EXPECT_EQ(verify.chains(1).chain_id(), "replica-2");
  EXPECT_EQ(verify.chains(0).records() + verify.chains(1).records(),
            static_cast<int64_t>(stored.size()));
}

TEST(AuditRetentionTest, RetentionFlagRemovesOldRecordsAndTheChainStillVerifies) {
  testing::TempDir tmp("podgate-audit-retention");
  const std::string url = absl::StrCat("sqlite://", tmp.path(), "/audit.db");
  {
    Running audit = StartAudit(url);
    ASSERT_NE(audit.stub, nullptr);
    Load load(audit.stub.get());
    for (int i = 0; i < 400 && load.acked_count() < 1000; ++i) {
      absl::SleepFor(absl::Milliseconds(25));
    }
    load.Stop();
    audit.process->Signal(SIGTERM);
    ASSERT_EQ(*audit.process->WaitExit(absl::Seconds(10)), 0);
  }
  absl::SleepFor(absl::Seconds(1));
  Running audit = StartAudit(url, "crash-chain", {"--retention=500ms", "--retention_interval=1s"});
  ASSERT_NE(audit.stub, nullptr);
  ASSERT_TRUE(audit.process->WaitForLine("retention removed records", absl::Seconds(10)).ok());
  auto verify = Verify(*audit.stub);
  EXPECT_TRUE(verify.intact()) << verify.DebugString();
  ASSERT_EQ(verify.chains_size(), 1);
  EXPECT_EQ(verify.chains(0).records(), 1);  // the newest record stays as the chain's head
}

// Runs podgate-audit-cli to completion; returns its exit status and stdout.
std::pair<int, std::string> RunCli(const std::vector<std::string>& args) {
  std::string command = PODGATE_AUDIT_CLI_BIN;
  for (const std::string& arg : args) {
    command += " '" + arg + "'";
  }
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

// tail -f prints records stored after it started, and SIGINT ends it with exit status 0.
TEST(AuditCliBinaryTest, TailFollowPrintsNewRecordsUntilInterrupted) {
  testing::TempDir tmp("podgate-audit-cli");
  Running audit = StartAudit("sqlite://" + tmp.path() + "/audit.db", "tail-chain");
  ASSERT_NE(audit.stub, nullptr);
  auto record = [&](const std::string& id) {
    grpc::ClientContext ctx;
    auto stream = audit.stub->Record(&ctx);
    ASSERT_TRUE(stream->Write(Request(id)));
    stream->WritesDone();
    podgate::audit::v1::RecordResponse response;
    while (stream->Read(&response)) {
    }
    ASSERT_TRUE(stream->Finish().ok());
  };
  record("old-0");
  // The test reads the child's stderr: the shell sends stdout there and becomes the CLI.
  auto tail = Subprocess::Start("/bin/sh", {"-c", std::string("exec ") + PODGATE_AUDIT_CLI_BIN +
                                                      " --server=" + audit.address +
                                                      " --format=json --lines=1 tail -f 1>&2"});
  ASSERT_TRUE(tail.ok()) << tail.status();
  ASSERT_TRUE((*tail)->WaitForLine("\"id\":\"old-0\"", absl::Seconds(10)).ok());
  record("new-1");
  ASSERT_TRUE((*tail)->WaitForLine("\"id\":\"new-1\"", absl::Seconds(10)).ok());
  (*tail)->Signal(SIGINT);
  auto exit = (*tail)->WaitExit(absl::Seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(*exit, 0);
}

TEST(AuditCliBinaryTest, QueryAndVerifyWithExitStatus) {
  testing::TempDir tmp("podgate-audit-cli");
  const std::string db = tmp.path() + "/audit.db";
  Running audit = StartAudit("sqlite://" + db, "cli-chain");
  ASSERT_NE(audit.stub, nullptr);
  {
    grpc::ClientContext ctx;
    auto stream = audit.stub->Record(&ctx);
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(stream->Write(Request(absl::StrCat("cli-", i))));
    }
    stream->WritesDone();
    podgate::audit::v1::RecordResponse response;
    while (stream->Read(&response)) {
    }
    ASSERT_TRUE(stream->Finish().ok());
  }
  const std::string server = "--server=" + audit.address;
  auto [status, out] = RunCli({server, "verify"});
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(out, "chain cli-chain: intact, 5 records\n");

  std::tie(status, out) = RunCli({server, "--format=json", "--limit=2", "query"});
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2);
  EXPECT_THAT(out, ::testing::HasSubstr("\"id\":\"cli-0\""));

  std::tie(status, out) = RunCli({server, "--user=alice", "--kind=command_request", "query"});
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 6);  // header + 5

  std::tie(status, out) = RunCli({server, "--kind=nap", "query"});
  EXPECT_EQ(status, 2);
  EXPECT_THAT(out, ::testing::HasSubstr("--kind"));
  std::tie(status, out) = RunCli({server, "frobnicate"});
  EXPECT_EQ(status, 2);
  EXPECT_THAT(out, ::testing::HasSubstr("unknown command"));
  std::tie(status, out) = RunCli({"--server=127.0.0.1:1", "--connect_timeout=1s", "verify"});
  EXPECT_EQ(status, 2);

  sqlite3* handle = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &handle), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(handle, "UPDATE records SET pod = 'elsewhere' WHERE sequence = 4", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(handle);
  std::tie(status, out) = RunCli({server, "verify"});
  EXPECT_EQ(status, 1) << out;
  EXPECT_THAT(out, ::testing::HasSubstr("BROKEN at sequence 4: column pod"));
}

// The CLI rides out a server that is not up yet (--connect_timeout), and a server that takes a
// connection but never answers cannot hold it past --timeout. Either failure says why, in one
// line, with exit status 2.
TEST(AuditCliBinaryTest, WaitsForTheServerWithinItsTimeouts) {
  testing::TempDir tmp("podgate-audit-cli");
  const std::string address = absl::StrCat("127.0.0.1:", ::podgate::testing::UnusedLoopbackPort());
  // Started before audit listens: its first connection attempts are refused.
  auto early = Subprocess::Start(
      "/bin/sh", {"-c", std::string("exec ") + PODGATE_AUDIT_CLI_BIN + " --server=" + address +
                            " --connect_timeout=60s verify 1>&2"});
  ASSERT_TRUE(early.ok()) << early.status();
  absl::SleepFor(absl::Milliseconds(800));
  Running audit = StartAudit("sqlite://" + tmp.path() + "/audit.db", "late-chain",
                             {"--grpc_address=" + address});
  ASSERT_NE(audit.stub, nullptr);
  auto exit = (*early)->WaitExit(absl::Seconds(30));
  ASSERT_TRUE(exit.ok()) << exit.status();
  // Audit answered: its store is empty, so verify's answer is "nothing to verify" (exit 1).
  EXPECT_EQ(*exit, 1) << absl::StrJoin((*early)->Lines(), "\n");
  EXPECT_THAT((*early)->Lines(),
              ::testing::Contains(::testing::HasSubstr("the store holds no chains")));

  // Nothing listening: it gives up after --connect_timeout with the connection's reason.
  const std::string nobody =
      absl::StrCat("--server=127.0.0.1:", ::podgate::testing::UnusedLoopbackPort());
  auto [status, out] = RunCli({nobody, "--connect_timeout=1s", "--format=json", "query"});
  EXPECT_EQ(status, 2);
  EXPECT_THAT(out, ::testing::HasSubstr("Connection refused"));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;

  // A listener that never accepts: the kernel completes the TCP handshake and nothing answers.
  // The connection is not ready without the server's HTTP/2 SETTINGS: the command fails after
  // --connect_timeout, saying so.
  {
    ::podgate::testing::SilentListener silent;
    ASSERT_TRUE(silent.ok());
    const absl::Time start = absl::Now();
    std::tie(status, out) = RunCli(
        {absl::StrCat("--server=127.0.0.1:", silent.port()), "--connect_timeout=1s", "verify"});
    EXPECT_EQ(status, 2) << out;
    EXPECT_THAT(out, ::testing::HasSubstr("SETTINGS"));
    EXPECT_GE(absl::Now() - start, absl::Seconds(1));
  }

  // A gRPC server that takes every call and never answers: --timeout ends each command.
  grpc::AsyncGenericService mute_service;
  grpc::ServerBuilder builder;
  int mute_port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &mute_port);
  builder.RegisterAsyncGenericService(&mute_service);
  std::unique_ptr<grpc::ServerCompletionQueue> cq = builder.AddCompletionQueue();
  std::unique_ptr<grpc::Server> mute_server = builder.BuildAndStart();
  ASSERT_NE(mute_server, nullptr);
  // Its completion queue is polled (that drives its connections); no call is ever taken.
  std::thread poller([&cq] {
    void* tag = nullptr;
    bool ok = false;
    while (cq->Next(&tag, &ok)) {
    }
  });
  const std::string mute = absl::StrCat("--server=127.0.0.1:", mute_port);
  for (const char* command : {"verify", "query", "checkpoint", "tail"}) {
    const absl::Time start = absl::Now();
    std::tie(status, out) = RunCli({mute, "--timeout=2s", command});
    const absl::Duration took = absl::Now() - start;
    EXPECT_EQ(status, 2) << command << ": " << out;
    EXPECT_THAT(out, ::testing::HasSubstr("Deadline Exceeded")) << command;
    EXPECT_GE(took, absl::Seconds(2)) << command;
    EXPECT_LT(took, absl::Seconds(30)) << command;
  }
  mute_server->Shutdown(std::chrono::system_clock::now());
  cq->Shutdown();
  poller.join();

  // Bad durations: one line, before any connection.
  for (const char* flag : {"--timeout=-1s", "--connect_timeout=-1s", "--timeout=soon"}) {
    std::tie(status, out) = RunCli({"--server=127.0.0.1:1", flag, "verify"});
    EXPECT_EQ(status, 2) << flag;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << flag << ": " << out;
  }
}

// Waiting for a server that is not there never delays a usage error, and Ctrl-C stops a tail -f
// that is still connecting (exit 130), instead of being held until the connection is made.
TEST(AuditCliBinaryTest, UsageErrorsAndInterruptsDoNotWaitForTheServer) {
  const std::string nobody =
      absl::StrCat("--server=127.0.0.1:", ::podgate::testing::UnusedLoopbackPort());
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--kind=nap", "query"},
                                             {"--format=xml", "tail"},
                                             {"--limit=-1", "query"},
                                             {"--lines=0", "tail"},
                                             {"frobnicate"}}) {
    std::vector<std::string> full = {nobody, "--connect_timeout=10m"};
    full.insert(full.end(), args.begin(), args.end());
    auto ran = Subprocess::Run(PODGATE_AUDIT_CLI_BIN, full, {}, absl::Seconds(60));
    ASSERT_TRUE(ran.ok()) << args[0] << ": " << ran.status();
    EXPECT_EQ(ran->exit_code, 2) << args[0] << ": " << ran->err;
    EXPECT_THAT(ran->err, ::testing::HasSubstr("podgate-audit-cli: ")) << args[0];
  }

  auto tail = Subprocess::Start(PODGATE_AUDIT_CLI_BIN,
                                {nobody, "--connect_timeout=10m", "tail", "--follow"});
  ASSERT_TRUE(tail.ok()) << tail.status();
  // SIGINT is blocked (for sigwait) before the command connects: wait until it is.
  const std::string status_file = absl::StrCat("/proc/", (*tail)->pid(), "/status");
  bool blocked = false;
  for (int i = 0; i < 500 && !blocked; ++i) {
    std::ifstream in(status_file);
    for (std::string line; std::getline(in, line);) {
      if (absl::StartsWith(line, "SigBlk:")) {
        const uint64_t mask = std::stoull(line.substr(7), nullptr, 16);
        blocked = (mask & (uint64_t{1} << (SIGINT - 1))) != 0;
      }
    }
    if (!blocked) {
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  ASSERT_TRUE(blocked);
  absl::SleepFor(absl::Milliseconds(300));  // into the connection attempts
  (*tail)->Signal(SIGINT);
  auto exit = (*tail)->WaitExit(absl::Seconds(20));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(*exit, 130);
}

// Events from an exec serving several clusters, recorded over gRPC by the real binary on
// PostgreSQL (several replicas share one database there) and queried by cluster over gRPC and
// with the CLI.
TEST(AuditCliBinaryTest, QueryByClusterOverGrpcAndTheCli) {
  auto postgres = testing::PostgresServer::Start();
  ASSERT_TRUE(postgres.ok()) << postgres.status();
  auto url = (*postgres)->CreateDatabase("clusters");
  ASSERT_TRUE(url.ok()) << url.status();
  Running audit = StartAudit(*url, "cluster-chain");
  ASSERT_NE(audit.stub, nullptr);
  {
    grpc::ClientContext ctx;
    auto stream = audit.stub->Record(&ctx);
    const std::pair<const char*, const char*> events[] = {
        {"eu-1", "eu-prod"}, {"us-1", "us-staging"}, {"old-1", ""}, {"eu-2", "eu-prod"}};
    for (const auto& [id, cluster] : events) {
      podgate::audit::v1::RecordRequest request = Request(id);
      request.mutable_event()->mutable_target()->set_cluster(cluster);
      ASSERT_TRUE(stream->Write(request));
    }
    stream->WritesDone();
    podgate::audit::v1::RecordResponse response;
    while (stream->Read(&response)) {
    }
    ASSERT_TRUE(stream->Finish().ok());
  }
  const auto ids = [&](const std::vector<std::string>& clusters) {
    grpc::ClientContext ctx;
    podgate::audit::v1::QueryRequest request;
    for (const std::string& c : clusters) {
      request.add_clusters(c);
    }
    auto reader = audit.stub->Query(&ctx, request);
    std::vector<std::string> out;
    podgate::audit::v1::QueryResponse response;
    while (reader->Read(&response)) {
      if (response.has_record()) {
        out.push_back(response.record().event().id());
        EXPECT_TRUE(clusters.empty() ||
                    std::find(clusters.begin(), clusters.end(),
                              response.record().event().target().cluster()) != clusters.end());
      }
    }
    EXPECT_TRUE(reader->Finish().ok());
    return out;
  };
  EXPECT_THAT(ids({"eu-prod"}), ::testing::ElementsAre("eu-1", "eu-2"));
  EXPECT_THAT(ids({"us-staging", ""}), ::testing::ElementsAre("us-1", "old-1"));
  EXPECT_THAT(ids({}), ::testing::ElementsAre("eu-1", "us-1", "old-1", "eu-2"));

  const std::string server = "--server=" + audit.address;
  auto [status, out] = RunCli({server, "--cluster=us-staging", "--format=json", "query"});
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  EXPECT_THAT(out, ::testing::HasSubstr("\"id\":\"us-1\""));
  EXPECT_THAT(out, ::testing::HasSubstr("\"cluster\":\"us-staging\""));
  std::tie(status, out) = RunCli({server, "verify"});
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(out, "chain cluster-chain: intact, 4 records\n");
}

// The exit status and stderr (podgate-probe's one line when not healthy).
using ProbeRun = Subprocess::Finished;

// The real podgate-probe, as the chart's readiness (--service=audit) and liveness (--service=)
// probes run it.
ProbeRun Probe(const std::string& address, const std::string& service) {
  absl::StatusOr<Subprocess::Finished> done = Subprocess::Run(
      PODGATE_PROBE_BIN, {"--address=" + address, "--service=" + service, "--timeout=3s"});
  EXPECT_TRUE(done.ok()) << done.status();
  return done.value_or(ProbeRun{});
}

// Readiness follows the store, end to end: another process holds SQLite's write lock on the
// database of a real podgate-audit (BEGIN EXCLUSIVE), so audit's commit fails after its busy
// timeout. The real podgate-probe then reports the service "audit" NOT_SERVING (exit 1: the
// chart's readiness probe takes the pod out of rotation) while the server as a whole (service
// "", the liveness probe) stays SERVING, so the pod is not restarted. Once the lock is released
// the next commit succeeds and the probe reports SERVING again. (Readiness comes back with a
// commit that succeeds: audit does not test the store on its own while no event arrives.)
TEST(AuditBinaryTest, LockedStoreMakesTheProbeReportNotServingUntilItRecovers) {
  testing::TempDir tmp("podgate-audit-ready");
  const std::string db = tmp.path() + "/audit.db";
  Running audit = StartAudit("sqlite://" + db, "ready-chain", {"--store_recheck_interval=1s"});
  ASSERT_NE(audit.stub, nullptr);
  auto record = [&](const std::string& id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto stream = audit.stub->Record(&ctx);
    stream->Write(Request(id));
    stream->WritesDone();
    podgate::audit::v1::RecordResponse response;
    while (stream->Read(&response)) {
    }
    return stream->Finish();
  };
  const grpc::Status first = record("before-lock");
  ASSERT_TRUE(first.ok()) << first.error_message();
  ProbeRun ready = Probe(audit.address, "audit");
  ASSERT_EQ(ready.exit_code, 0) << ready.err;

  sqlite3* blocker = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &blocker), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(blocker, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  // The event waits out audit's busy timeout (5 s), then its commit fails.
  grpc::Status while_locked;
  std::thread writer([&] { while_locked = record("while-locked"); });
  ProbeRun not_ready;
  for (int i = 0; i < 150; ++i) {
    not_ready = Probe(audit.address, "audit");
    if (not_ready.exit_code != 0) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(not_ready.exit_code, 1);
  EXPECT_EQ(not_ready.err,
            absl::StrCat("podgate-probe: ", audit.address, " service \"audit\": NOT_SERVING"));
  ProbeRun alive = Probe(audit.address, "");
  EXPECT_EQ(alive.exit_code, 0) << alive.err;
  writer.join();
  EXPECT_EQ(while_locked.error_code(), grpc::StatusCode::UNAVAILABLE)
      << while_locked.error_message();
  EXPECT_GE(podgate::testing::MetricSample(
                audit.metrics_port, "podgate_audit_errors_total{kind=\"store_unavailable\"}"),
            1);
  EXPECT_TRUE(audit.process->WaitForLine("\"msg\":\"service not ready\"", absl::Seconds(1)).ok());
  // Still locked: audit re-checks the store by itself (each re-check waits out the busy
  // timeout, then fails) and stays not ready.
  const std::string failed_rechecks = "podgate_audit_store_rechecks_total{outcome=\"failed\"}";
  for (int i = 0;
       i < 300 && podgate::testing::MetricSample(audit.metrics_port, failed_rechecks) < 1; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_GE(podgate::testing::MetricSample(audit.metrics_port, failed_rechecks), 1);
  EXPECT_EQ(Probe(audit.address, "audit").exit_code, 1);
  EXPECT_TRUE(
      audit.process->WaitForLine("\"msg\":\"audit store re-check failed\"", absl::Seconds(1)).ok());

  // Released, and no event sent: the next re-check (within a few intervals) makes it ready.
  ASSERT_EQ(sqlite3_exec(blocker, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(blocker);
  const absl::Time released = absl::Now();
  ProbeRun serving_again;
  for (int i = 0; i < 100; ++i) {
    serving_again = Probe(audit.address, "audit");
    if (serving_again.exit_code == 0) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(serving_again.exit_code, 0) << serving_again.err;
  EXPECT_LT(absl::Now() - released, absl::Seconds(8));
  EXPECT_TRUE(audit.process->WaitForLine("\"msg\":\"service ready\"", absl::Seconds(1)).ok());
  EXPECT_EQ(podgate::testing::MetricSample(audit.metrics_port,
                                           "podgate_audit_store_rechecks_total{outcome=\"ok\"}"),
            1);
  // Events are stored again; the one refused while locked was not. The re-checks wrote no
  // record: the chain holds the two events, intact.
  const grpc::Status after = record("after-lock");
  ASSERT_TRUE(after.ok()) << after.error_message();
  auto [status, out] = RunCli({"--server=" + audit.address, "verify"});
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(out, "chain ready-chain: intact, 2 records\n");
}

TEST(AuditBinaryTest, BadFlagsExitWithOneClearLine) {
  for (const auto& [flag, needle] : std::vector<std::pair<std::string, std::string>>{
           {"--queue_capacity=0", "--queue_capacity"},
           {"--max_batch=100000", "--max_batch"},
           {"--retention=-1s", "--retention"},
           {"--store_recheck_interval=0s", "--store_recheck_interval"},
           {"--store_recheck_interval=1h", "--store_recheck_interval"},
           {"--chain_id=" + std::string(200, 'c'), "--chain_id"}}) {
    auto process = Subprocess::Start(PODGATE_AUDIT_BIN,
                                     {"--grpc_address=127.0.0.1:0", "--metrics_address=",
                                      "--store=sqlite:///nonexistent/never-opened.db", flag});
    ASSERT_TRUE(process.ok());
    auto status = (*process)->WaitExit(absl::Seconds(20));
    ASSERT_TRUE(status.ok());
    EXPECT_EQ(*status, 2);
    (*process)->WaitForLine("\x01never", absl::Milliseconds(200)).IgnoreError();
    const auto lines = (*process)->Lines();
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_THAT(lines[0], ::testing::HasSubstr(needle));
  }
}

TEST(AuditBinaryTest, BadStoreExitsWithOneClearLine) {
  for (const auto& [url, needle] : std::vector<std::pair<std::string, std::string>>{
           {"mysql://x", "must start with sqlite:// or postgresql://"},
           {"sqlite:///nonexistent-dir/a.db", "unable to open"},
           {"postgresql://nobody@/x?host=/nonexistent&port=1", "cannot connect"}}) {
    auto process = Subprocess::Start(
        PODGATE_AUDIT_BIN, {"--grpc_address=127.0.0.1:0", "--metrics_address=", "--store=" + url});
    ASSERT_TRUE(process.ok());
    auto status = (*process)->WaitExit(absl::Seconds(20));
    ASSERT_TRUE(status.ok());
    EXPECT_EQ(*status, 2);
    (*process)->WaitForLine("\x01never", absl::Milliseconds(200)).IgnoreError();
    const auto lines = (*process)->Lines();
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_THAT(lines[0], ::testing::HasSubstr("--store"));
    EXPECT_THAT(lines[0], ::testing::HasSubstr(needle));
  }
}

}  // namespace
}  // namespace podgate::audit
