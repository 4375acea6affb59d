// The policy service on an in-process server over a real local socket: AuthorizeStream under
// concurrent reloads (every answer matches the version that made it), and shutdown ending open
// streams with UNAVAILABLE instead of waiting for the drain deadline.
#include "policy/policy_service.h"

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "policy/policy_loader.h"
#include "runtime/server.h"
#include "support/grpc_health.h"
#include "support/test_pki.h"

namespace podgate::policy {
namespace {

namespace fs = std::filesystem;
namespace pb = podgate::policy::v1;

std::string Doc(const std::string& rule, const std::string& program) {
  return absl::StrCat("apiVersion: podgate.io/v1\nkind: CommandPolicy\nrules:\n  - id: ", rule,
                      "\n    effect: allow\n    subjects: {groups: [dev]}\n"
                      "    targets: {namespaces: [app]}\n    command: {program: ",
                      program, "}\n");
}

void ReplaceFile(const std::string& path, const std::string& text) {
  {
    std::ofstream out(path + ".tmp", std::ios::binary | std::ios::trunc);
    out << text;
  }
  fs::rename(path + ".tmp", path);
}

pb::AuthorizeRequest Request(const std::string& program) {
  pb::AuthorizeRequest r;
  r.mutable_principal()->set_user("u");
  r.mutable_principal()->add_groups("dev");
  r.mutable_target()->set_namespace_("app");
  r.mutable_target()->set_pod("p");
  r.mutable_target()->set_container("c");
  r.mutable_command()->add_argv(program);
  return r;
}

class PolicyServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = podgate::testing::MakeTempDir("policy-svc");
    path_ = dir_ + "/policy.yaml";
    ReplaceFile(path_, Doc("a", "free"));
    ASSERT_TRUE(store_.LoadFile(path_).ok());
    runtime::ServerOptions options;
    options.service_name = "policy";
    options.grpc_address = "127.0.0.1:0";
    options.drain_timeout = absl::Seconds(10);
    auto server = runtime::Server::Start(options, {&service_}, registry_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    server_->AddDrainHook([this] { service_.Drain(); });
    stub_ = pb::PolicyService::NewStub(podgate::testing::LocalChannel(server_->grpc_port()));
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }

  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  PolicyMetrics metrics_{*registry_};
  PolicyStore store_{&metrics_, nullptr};
  PolicyServiceImpl service_{&store_, &metrics_};
  std::unique_ptr<runtime::Server> server_;
  std::unique_ptr<pb::PolicyService::Stub> stub_;
  std::string dir_;
  std::string path_;
};

TEST_F(PolicyServiceTest, StreamsUnderConcurrentReloadSeeOneVersionPerAnswer) {
  const std::string va = DocumentVersion(Doc("a", "free"));
  const std::string doc_b = Doc("b", "df");
  const std::string vb = DocumentVersion(doc_b);
  std::atomic<bool> stop{false};
  std::thread reloader([&] {
    for (int i = 0; !stop.load(); ++i) {
      ReplaceFile(path_, i % 2 == 0 ? doc_b : Doc("a", "free"));
      EXPECT_TRUE(store_.Reload().ok());
      absl::SleepFor(absl::Milliseconds(2));
    }
  });
  constexpr int kStreams = 4;
  constexpr int kPerStream = 1500;
  std::atomic<int> wrong{0}, seen_a{0}, seen_b{0}, answered{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kStreams; ++c) {
    clients.emplace_back([&, c] {
      grpc::ClientContext context;
      auto stream = stub_->AuthorizeStream(&context);
      std::thread writer([&] {
        for (int i = 0; i < kPerStream; ++i) {
          pb::AuthorizeStreamRequest request;
          request.set_correlation_id(absl::StrCat(c, "-", i));
          *request.mutable_request() = Request("free");
          if (!stream->Write(request)) {
            break;
          }
        }
        stream->WritesDone();
      });
      pb::AuthorizeStreamResponse response;
      int n = 0;
      while (stream->Read(&response)) {
        const auto& d = response.response().decision();
        const bool is_a = d.policy_version() == va && d.rule() == "a" &&
                          d.verdict() == podgate::common::v1::VERDICT_ALLOW;
        const bool is_b = d.policy_version() == vb && d.rule() == "default-deny" &&
                          d.verdict() == podgate::common::v1::VERDICT_DENY;
        if (response.correlation_id() != absl::StrCat(c, "-", n) || !(is_a || is_b)) {
          ++wrong;
        }
        (is_a ? seen_a : seen_b)++;
        ++n;
        ++answered;
      }
      writer.join();
      EXPECT_TRUE(stream->Finish().ok());
    });
  }
  for (auto& t : clients) {
    t.join();
  }
  stop = true;
  reloader.join();
  EXPECT_EQ(answered.load(), kStreams * kPerStream);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(seen_a.load(), 0);
  EXPECT_GT(seen_b.load(), 0);
}

TEST_F(PolicyServiceTest, ShutdownEndsOpenStreamsWithUnavailable) {
  grpc::ClientContext context;
  auto stream = stub_->AuthorizeStream(&context);
  pb::AuthorizeStreamRequest request;
  request.set_correlation_id("1");
  *request.mutable_request() = Request("free");
  ASSERT_TRUE(stream->Write(request));
  pb::AuthorizeStreamResponse response;
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_EQ(response.response().decision().rule(), "a");

  // The stream stays open (no half-close): only the drain hook can end it before the 10s
  // drain deadline.
  const absl::Time start = absl::Now();
  std::thread shutdown([&] { server_->Shutdown(); });
  EXPECT_FALSE(stream->Read(&response));
  grpc::Status status = stream->Finish();
  shutdown.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_EQ(status.error_message(), "the policy service is shutting down; reconnect");
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(PolicyServiceTest, AnswersQueuedBehindEachOtherAllArriveWithoutAHalfClose) {
  // Answers written while more wait behind them are sent with gRPC's buffer hint (one socket
  // write for several): the last of a run must still go out on its own, with no later answer,
  // half-close or end of stream to push it. The client sends a burst, stops reading so the
  // server's queue fills, then reads with the stream still open.
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto stream = stub_->AuthorizeStream(&context);
  for (int round = 0; round < 3; ++round) {
    const int count = 7 + 50 * round;  // a short run, a full queue, more than a queue
    for (int i = 0; i < count; ++i) {
      pb::AuthorizeStreamRequest request;
      request.set_correlation_id(absl::StrCat(round, "-", i));
      *request.mutable_request() = Request(i % 3 == 0 ? "df" : "free");
      ASSERT_TRUE(stream->Write(request));
    }
    absl::SleepFor(absl::Milliseconds(200));
    for (int i = 0; i < count; ++i) {
      pb::AuthorizeStreamResponse response;
      ASSERT_TRUE(stream->Read(&response))
          << "round " << round << ": answer " << i << " of " << count << " never came";
      ASSERT_EQ(response.correlation_id(), absl::StrCat(round, "-", i));
      EXPECT_EQ(response.response().decision().rule(), i % 3 == 0 ? "default-deny" : "a");
    }
  }
  stream->WritesDone();
  pb::AuthorizeStreamResponse extra;
  EXPECT_FALSE(stream->Read(&extra));
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(PolicyServiceTest, ShutdownDuringBusyStreamsLosesNoAnswerAndEndsEachOnce) {
  // Streams with many questions in flight while the server drains: each stream gets its
  // answers in order with no gap, then ends with UNAVAILABLE (or OK if it finished first);
  // none hangs. Reads, writes and the drain race here (the TSan job runs this test).
  constexpr int kStreams = 6;
  std::atomic<int> answered{0}, out_of_order{0}, bad_end{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kStreams; ++c) {
    clients.emplace_back([&, c] {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
      auto stream = stub_->AuthorizeStream(&context);
      std::thread writer([&] {
        for (int i = 0; i < 200000; ++i) {
          pb::AuthorizeStreamRequest request;
          request.set_correlation_id(absl::StrCat(c, "-", i));
          *request.mutable_request() = Request("free");
          if (!stream->Write(request)) {
            break;
          }
        }
        stream->WritesDone();
      });
      pb::AuthorizeStreamResponse response;
      int n = 0;
      while (stream->Read(&response)) {
        if (response.correlation_id() != absl::StrCat(c, "-", n)) {
          ++out_of_order;
        }
        ++n;
        ++answered;
      }
      const grpc::Status status = stream->Finish();
      writer.join();
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE && !status.ok()) {
        ++bad_end;
        ADD_FAILURE() << "stream " << c << " ended " << status.error_code() << ": "
                      << status.error_message();
      }
    });
  }
  while (answered.load() < 2000) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  server_->Shutdown();
  for (auto& t : clients) {
    t.join();
  }
  EXPECT_EQ(out_of_order.load(), 0);
  EXPECT_EQ(bad_end.load(), 0);
}

TEST_F(PolicyServiceTest, RateLimitedRuleRefusesOverTheServiceAndSurvivesAReload) {
  const std::string limited = Doc("histo", "jmap") + "    rateLimit: {count: 2, per: 1h}\n";
  ReplaceFile(path_, limited);
  ASSERT_TRUE(store_.LoadFile(path_).ok());
  const auto ask = [&] {
    grpc::ClientContext ctx;
    pb::AuthorizeResponse response;
    grpc::Status status = stub_->Authorize(&ctx, Request("jmap"), &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.decision();
  };
  EXPECT_EQ(ask().verdict(), podgate::common::v1::VERDICT_ALLOW);
  EXPECT_EQ(ask().verdict(), podgate::common::v1::VERDICT_ALLOW);
  podgate::common::v1::Decision third = ask();
  EXPECT_EQ(third.verdict(), podgate::common::v1::VERDICT_DENY);
  EXPECT_EQ(third.rule(), "histo");
  EXPECT_NE(third.reason().find("rate limit"), std::string::npos) << third.reason();
  EXPECT_EQ(third.limits().output_limit_bytes(), 0);
  // A new document version with the same rule keeps the counts.
  ReplaceFile(path_, limited + "# edited\n");
  ASSERT_TRUE(store_.LoadFile(path_).ok());
  EXPECT_EQ(ask().verdict(), podgate::common::v1::VERDICT_DENY);
  bool counted = false;
  for (const auto& family : registry_->Collect()) {
    if (family.name == "podgate_policy_rate_limited_total") {
      for (const auto& metric : family.metric) {
        counted = counted || metric.counter.value >= 2;
      }
    }
  }
  EXPECT_TRUE(counted);
}

}  // namespace
}  // namespace podgate::policy
