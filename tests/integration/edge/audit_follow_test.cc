// The live tail through the real edge binary in front of the real podgate-audit (SQLite):
// GET /api/v1/audit?follow=1 streams Server-Sent Events (or JSON lines) of the records
// committed after the stream opened, filtered; only auditors; bad combinations are 400; the
// per-user cap answers 429 and frees when the client goes away.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "podgate/audit/v1/audit.grpc.pb.h"
#include "support/stack.h"
#include "support/subprocess.h"

namespace podgate {
namespace {

using ::podgate::testing::Subprocess;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kCluster[] = R"(namespaces:
  - name: demo
pods:
  - name: web-1
    namespace: demo
    containers:
      - {name: app, image: demo/web:1}
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec]
    namespaces: ["*"]
)";

constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
rules:
  - id: echo
    effect: allow
    subjects: {groups: [developers]}
    targets: {namespaces: [demo]}
    command:
      program: echo
)";

// A plain HTTP/1.1 client that reads a streamed answer as it comes.
class RawStream {
 public:
  // A `receive_buffer` above 0 caps the socket's receive buffer (set before connecting): a
  // client that does not read then holds up the stream after a few KiB.
  RawStream(int port, const std::string& target, const std::string& token, int receive_buffer = 0) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer > 0) {
      EXPECT_EQ(setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer)), 0);
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    Get(target, token);
  }
  // Sends another request on the same (keep-alive) connection.
  void Get(const std::string& target, const std::string& token) {
    const std::string request = absl::StrCat("GET ", target,
                                             " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
                                             "Bearer ",
                                             token, "\r\n\r\n");
    EXPECT_EQ(send(fd_, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  }
  ~RawStream() { Close(); }
  void Close() {
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  // Reads until `text` was received (true) or `timeout` / the end of the stream (false).
  bool ReadUntil(const std::string& text, absl::Duration timeout = absl::Seconds(20)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (received_.find(text) == std::string::npos) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return false;
      }
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1) <= 0) {
        continue;
      }
      char buf[4096];
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) {
        return received_.find(text) != std::string::npos;
      }
      received_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  const std::string& received() const { return received_; }

 private:
  int fd_ = -1;
  std::string received_;
};

class EdgeAuditFollowTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::StackOptions options;
    options.binaries = {KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN, PODGATE_EXEC_BIN};
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
    auto edge = StartEdge(&http_port_);
    ASSERT_TRUE(edge.ok()) << edge.status();
    edge_ = edge->release();
  }

  // An edge in front of the stack; its HTTP port in `*port`.
  static absl::StatusOr<std::unique_ptr<Subprocess>> StartEdge(int* port) {
    auto edge = Subprocess::Start(
        PODGATE_EDGE_BIN,
        {"--grpc_address=127.0.0.1:0", "--metrics_address=", "--http_address=127.0.0.1:0",
         absl::StrCat("--exec_address=127.0.0.1:", stack_->exec_port()),
         absl::StrCat("--policy_address=127.0.0.1:", stack_->policy_port()),
         absl::StrCat("--audit_address=127.0.0.1:", stack_->audit_port()),
         "--max_audit_follows_per_user=1", "--jwt_key_file=" + stack_->jwt_secret_file(),
         "--jwt_algorithm=HS256", std::string("--jwt_issuer=") + testing::Stack::kIssuer,
         "--jwt_audience=podgate"});
    if (!edge.ok()) {
      return edge.status();
    }
    auto line = (*edge)->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(20));
    if (!line.ok()) {
      return line.status();
    }
    *port = nlohmann::json::parse(*line)["http_port"].get<int>();
    return edge;
  }

  static void TearDownTestSuite() {
    if (::testing::UnitTest::GetInstance()->current_test_suite()->Failed() && edge_ != nullptr) {
      for (const std::string& l : edge_->Lines()) {
        std::cerr << l << "\n";
      }
    }
    delete edge_;
    edge_ = nullptr;
    delete stack_;
    stack_ = nullptr;
  }

  static std::string Ann() { return stack_->Token("ann", {"podgate-auditors"}); }

  // A command request of `user` that runs `echo <argument>`, as exec records it.
  static podgate::audit::v1::RecordRequest CommandRequest(const std::string& id,
                                                          const std::string& user,
                                                          const std::string& argument) {
    podgate::audit::v1::RecordRequest request;
    auto* e = request.mutable_event();
    e->set_id(id);
    e->mutable_time()->set_seconds(absl::ToUnixSeconds(absl::Now()));
    e->set_kind(podgate::common::v1::EVENT_KIND_COMMAND_REQUEST);
    e->set_source_service("exec");
    e->set_session_id("s-" + user);
    e->mutable_principal()->set_user(user);
    e->mutable_target()->set_namespace_("demo");
    e->mutable_target()->set_pod("web-1");
    e->mutable_target()->set_container("app");
    e->mutable_command_request()->set_line("echo " + argument);
    e->mutable_command_request()->add_argv("echo");
    e->mutable_command_request()->add_argv(argument);
    return request;
  }

  static std::unique_ptr<podgate::audit::v1::AuditService::Stub> AuditStub() {
    return podgate::audit::v1::AuditService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", stack_->audit_port()), grpc::InsecureChannelCredentials()));
  }

  // Records one event of `user` straight into audit (as exec would).
  static void Record(const std::string& id, const std::string& user) {
    auto stub = AuditStub();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto stream = stub->Record(&ctx);
    ASSERT_TRUE(stream->Write(CommandRequest(id, user, id)));
    podgate::audit::v1::RecordResponse ack;
    ASSERT_TRUE(stream->Read(&ack));
    EXPECT_EQ(ack.ack().ids_size(), 1);
    stream->WritesDone();
    EXPECT_TRUE(stream->Finish().ok());
  }

  // Records `n` events of `user` on one stream, each with a command line of `line_bytes`.
  static void RecordMany(const std::string& prefix, const std::string& user, int n,
                         size_t line_bytes) {
    auto stub = AuditStub();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto stream = stub->Record(&ctx);
    std::thread acks([&] {
      podgate::audit::v1::RecordResponse ack;
      int acked = 0;
      while (acked < n && stream->Read(&ack)) {
        acked += ack.ack().ids_size();
      }
      EXPECT_EQ(acked, n);
    });
    const std::string padding(line_bytes, 'x');
    for (int i = 0; i < n; ++i) {
      if (!stream->Write(CommandRequest(absl::StrCat(prefix, "-", i), user, padding))) {
        break;
      }
    }
    stream->WritesDone();
    acks.join();
    EXPECT_TRUE(stream->Finish().ok());
  }

  static testing::Stack* stack_;
  static Subprocess* edge_;
  static int http_port_;
};

testing::Stack* EdgeAuditFollowTest::stack_ = nullptr;
Subprocess* EdgeAuditFollowTest::edge_ = nullptr;
int EdgeAuditFollowTest::http_port_ = 0;

TEST_F(EdgeAuditFollowTest, ServerSentEventsCarryNewMatchingRecordsAndTheCapFreesOnClose) {
  Record("before-1", "carol");
  auto follow = std::make_unique<RawStream>(http_port_, "/api/v1/audit?follow=1&user=carol", Ann());
  ASSERT_TRUE(follow->ReadUntil("event: ready")) << follow->received();
  EXPECT_THAT(follow->received(), HasSubstr("HTTP/1.1 200"));
  EXPECT_THAT(follow->received(), HasSubstr("Content-Type: text/event-stream"));
  EXPECT_THAT(follow->received(), HasSubstr("Transfer-Encoding: chunked"));
  EXPECT_THAT(follow->received(), HasSubstr("before-1"));  // the backlog

  // dave's record is filtered out; carol's, committed after it, arrives.
  Record("dave-1", "dave");
  Record("carol-1", "carol");
  ASSERT_TRUE(follow->ReadUntil("carol-1")) << follow->received();
  EXPECT_THAT(follow->received(), HasSubstr("event: record\ndata: {"));
  EXPECT_THAT(follow->received(), ::testing::Not(HasSubstr("dave-1")));

  // One stream per user here (--max_audit_follows_per_user=1).
  RawStream second(http_port_, "/api/v1/audit?follow=1", Ann());
  ASSERT_TRUE(second.ReadUntil("\r\n\r\n"));
  ASSERT_TRUE(second.ReadUntil("}\n"));
  EXPECT_THAT(second.received(), HasSubstr("HTTP/1.1 429"));
  EXPECT_THAT(second.received(), HasSubstr("Retry-After: 5"));
  EXPECT_THAT(second.received(), HasSubstr("RESOURCE_EXHAUSTED"));

  // The client leaves: edge cancels the audit call and the slot frees.
  follow.reset();
  bool reopened = false;
  for (int i = 0; i < 100 && !reopened; ++i) {
    RawStream again(http_port_, "/api/v1/audit?follow=1&format=jsonl&user=carol", Ann());
    ASSERT_TRUE(again.ReadUntil("\r\n\r\n"));
    if (again.received().find("HTTP/1.1 200") != std::string::npos) {
      reopened = true;
      EXPECT_THAT(again.received(), HasSubstr("Content-Type: application/x-ndjson"));
      Record("carol-2", "carol");
      ASSERT_TRUE(again.ReadUntil("carol-2")) << again.received();
      EXPECT_THAT(again.received(), HasSubstr("{\"event\":{"));
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  EXPECT_TRUE(reopened);
}

TEST_F(EdgeAuditFollowTest, OnlyAuditorsAndOnlySensibleCombinations) {
  RawStream developer(http_port_, "/api/v1/audit?follow=1", stack_->Token("dana", {"developers"}));
  ASSERT_TRUE(developer.ReadUntil("}\n"));
  EXPECT_THAT(developer.received(), HasSubstr("HTTP/1.1 403"));
  for (const char* bad :
       {"/api/v1/audit?follow=1&newest_first=1",
        "/api/v1/audit?follow=1&end_time=2026-01-01T00:00:00Z", "/api/v1/audit?follow=yes"}) {
    RawStream s(http_port_, bad, Ann());
    ASSERT_TRUE(s.ReadUntil("}\n")) << bad;
    EXPECT_THAT(s.received(), HasSubstr("HTTP/1.1 400")) << bad;
    EXPECT_THAT(s.received(), HasSubstr("INVALID_ARGUMENT")) << bad;
  }
}

// edge's shutdown ends every open stream (a last "end" event and the last chunk) instead of
// waiting for the clients, and exits cleanly. Several streams end at once: each one's audit
// call finishes on a gRPC thread while edge's main thread goes on to destroy the I/O context
// once the last stream is gone (under the sanitizers, a connection's strand still held by a
// finishing call at that moment is reported as use of a destroyed object).
TEST_F(EdgeAuditFollowTest, ShutdownEndsOpenStreams) {
  int port = 0;
  auto edge = StartEdge(&port);
  ASSERT_TRUE(edge.ok()) << edge.status();
  constexpr int kStreams = 8;  // one per auditor: the edge allows one per user
  std::vector<std::unique_ptr<RawStream>> follows;
  for (int i = 0; i < kStreams; ++i) {
    follows.push_back(std::make_unique<RawStream>(
        port, "/api/v1/audit?follow=1",
        stack_->Token(absl::StrCat("auditor-", i), {"podgate-auditors"})));
  }
  for (auto& follow : follows) {
    ASSERT_TRUE(follow->ReadUntil("event: ready")) << follow->received();
  }
  (*edge)->Signal(SIGTERM);
  for (auto& follow : follows) {
    ASSERT_TRUE(follow->ReadUntil("\r\n0\r\n\r\n")) << follow->received();
    EXPECT_THAT(follow->received(), HasSubstr("event: end"));
  }
  auto exit = (*edge)->WaitExit(absl::Seconds(30));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(*exit, 0);
}

// A follower that stops reading: edge stops reading audit's stream for it (its answer's queue
// is full) and resumes only when the client takes more, a read started from outside gRPC's
// callbacks. The call holds itself open for that read (without the hold, gRPC could finish and
// destroy the call while paused and the resumed read would touch freed memory); the hold goes
// when nothing can resume the read any more: the client leaves (its slot must free), or the
// drain cancels the stream.
TEST_F(EdgeAuditFollowTest, AFollowerThatStopsReadingIsEndedByShutdownOrByLeaving) {
  int port = 0;
  auto edge = StartEdge(&port);
  ASSERT_TRUE(edge.ok()) << edge.status();
  const std::string frank = stack_->Token("frank", {"podgate-auditors"});
  const std::string grace = stack_->Token("grace", {"podgate-auditors"});
  auto leaves = std::make_unique<RawStream>(port, "/api/v1/audit?follow=1&user=erin", frank, 4096);
  auto stays = std::make_unique<RawStream>(port, "/api/v1/audit?follow=1&user=erin", grace, 4096);
  ASSERT_TRUE(leaves->ReadUntil("event: ready")) << leaves->received();
  ASSERT_TRUE(stays->ReadUntil("event: ready")) << stays->received();
  // About 12 MiB for each follower: far more than its answer's queue (256 KiB) and the sockets'
  // buffers hold, so edge's reads for both stop.
  RecordMany("flood", "erin", 3000, 4096);
  std::this_thread::sleep_for(std::chrono::seconds(1));

  // Still open, both: the one stream allowed per user is taken.
  {
    RawStream again(port, "/api/v1/audit?follow=1&user=erin", frank);
    ASSERT_TRUE(again.ReadUntil("}\n"));
    EXPECT_THAT(again.received(), HasSubstr("HTTP/1.1 429"));
  }
  // The first leaves without reading on: its slot frees.
  leaves.reset();
  bool reopened = false;
  for (int i = 0; i < 100 && !reopened; ++i) {
    RawStream again(port, "/api/v1/audit?follow=1&user=nobody", frank);
    ASSERT_TRUE(again.ReadUntil("\r\n\r\n"));
    reopened = again.received().find("HTTP/1.1 200") != std::string::npos;
    if (!reopened) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  EXPECT_TRUE(reopened) << "the slot of a follower that left while paused never freed";

  // The second is paused when the drain cancels its stream; reading on, it gets what was queued
  // and then the end, and edge exits cleanly.
  (*edge)->Signal(SIGTERM);
  ASSERT_TRUE(stays->ReadUntil("\r\n0\r\n\r\n", absl::Seconds(30)))
      << stays->received().size() << " bytes";
  EXPECT_THAT(stays->received(), HasSubstr("flood-0"));
  EXPECT_THAT(stays->received(), HasSubstr("event: end"));
  auto exit = (*edge)->WaitExit(absl::Seconds(30));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(*exit, 0);
}

// A stream asked for after edge's drain has begun, on a keep-alive connection opened before
// it, is refused with 503 instead of starting a stream that nothing would end (the drain has
// already ended the open ones), and edge still exits cleanly. An edge with nothing else open
// may finish its drain and close the connection before the request arrives: then no answer
// comes at all, which refuses it too; what must never come is a started stream.
TEST_F(EdgeAuditFollowTest, AStreamAskedForDuringShutdownIsRefused) {
  int port = 0;
  auto edge = StartEdge(&port);
  ASSERT_TRUE(edge.ok()) << edge.status();
  RawStream connection(port, "/healthz", Ann());
  ASSERT_TRUE(connection.ReadUntil("ok\n")) << connection.received();
  (*edge)->Signal(SIGTERM);
  ASSERT_TRUE((*edge)->WaitForLine("draining browser sessions", absl::Seconds(20)).ok());
  connection.Get("/api/v1/audit?follow=1", Ann());
  connection.ReadUntil("}\n");  // false when edge closed the connection first
  const std::string answer = connection.received().substr(connection.received().find("ok\n") + 3);
  EXPECT_THAT(answer, Not(HasSubstr("HTTP/1.1 200"))) << answer;
  if (!answer.empty()) {
    EXPECT_THAT(answer, HasSubstr("HTTP/1.1 503"));
    EXPECT_THAT(answer, HasSubstr("UNAVAILABLE"));
  }
  connection.Close();
  auto exit = (*edge)->WaitExit(absl::Seconds(30));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(*exit, 0);
}

}  // namespace
}  // namespace podgate
