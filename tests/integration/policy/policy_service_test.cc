// The real podgate-policy binary over a real socket: each RPC, the ordered and bounded
// AuthorizeStream, hot reload of the file it was started with (a good edit changes decisions
// within a second; a broken one changes only a metric and a log line), metrics, and the
// --check command line.
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "podgate/policy/v1/policy.grpc.pb.h"
#include "support/grpc_health.h"
#include "support/http_client.h"
#include "support/prometheus_text.h"
#include "support/subprocess.h"
#include "support/test_pki.h"

namespace podgate {
namespace {

using ::podgate::common::v1::VERDICT_ALLOW;
using ::podgate::common::v1::VERDICT_DENY;
using ::podgate::policy::v1::PolicyService;
using ::podgate::testing::Subprocess;
using ::testing::HasSubstr;
namespace fs = std::filesystem;
namespace pb = ::podgate::policy::v1;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void ReplaceFile(const std::string& path, const std::string& text) {
  {
    std::ofstream out(path + ".tmp", std::ios::binary | std::ios::trunc);
    out << text;
  }
  fs::rename(path + ".tmp", path);
}

pb::AuthorizeRequest Command(std::vector<std::string> argv, const std::string& user = "dana",
                             const std::string& group = "developers") {
  pb::AuthorizeRequest r;
  r.mutable_principal()->set_user(user);
  r.mutable_principal()->add_groups(group);
  r.mutable_target()->set_namespace_("app-shop");
  r.mutable_target()->set_pod("shop-7d9f");
  r.mutable_target()->set_container("app");
  for (auto& a : argv) {
    r.mutable_command()->add_argv(a);
  }
  return r;
}

// Runs `podgate-policy` with a copy of the example policy in a temporary directory.
class PolicyServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = podgate::testing::MakeTempDir("policy-it");
    path_ = dir_ + "/policy.yaml";
    example_ = ReadFile(PODGATE_EXAMPLE_POLICY);
    ASSERT_FALSE(example_.empty());
    ReplaceFile(path_, example_);
    std::vector<std::string> args = {"--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
                                     "--drain_timeout=200ms", "--policy_file=" + path_,
                                     "--policy_poll_interval=200ms"};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    auto process = Subprocess::Start(PODGATE_POLICY_BIN, args);
    ASSERT_TRUE(process.ok()) << process.status();
    process_ = *std::move(process);
    auto line = process_->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    const nlohmann::json j = nlohmann::json::parse(*line);
    grpc_port_ = j["grpc_port"];
    metrics_port_ = j["metrics_port"];
    channel_ = podgate::testing::LocalChannel(grpc_port_);
    stub_ = PolicyService::NewStub(channel_);
  }

  void TearDown() override {
    if (process_ != nullptr) {
      process_->Signal(SIGTERM);
      auto status = process_->WaitExit(absl::Seconds(10));
      EXPECT_TRUE(status.ok() && *status == 0);
    }
    fs::remove_all(dir_);
  }

  pb::AuthorizeResponse Authorize(const pb::AuthorizeRequest& request,
                                  grpc::Status* status_out = nullptr) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    pb::AuthorizeResponse response;
    grpc::Status status = stub_->Authorize(&context, request, &response);
    if (status_out != nullptr) {
      *status_out = status;
    } else {
      EXPECT_TRUE(status.ok()) << status.error_message();
    }
    return response;
  }

  pb::GetPolicyResponse GetPolicy() {
    grpc::ClientContext context;
    pb::GetPolicyResponse response;
    EXPECT_TRUE(stub_->GetPolicy(&context, pb::GetPolicyRequest(), &response).ok());
    return response;
  }

  std::map<std::string, double> Metrics() {
    auto page = podgate::testing::HttpGet(metrics_port_, "/metrics");
    EXPECT_TRUE(page.ok()) << page.status();
    auto parsed = podgate::testing::ParsePrometheusText(page->body);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    return parsed->samples;
  }

  // More flags for podgate-policy (a derived fixture's constructor sets them).
  std::vector<std::string> extra_args_;
  std::string dir_;
  std::string path_;
  std::string example_;
  std::unique_ptr<Subprocess> process_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<PolicyService::Stub> stub_;
};

TEST_F(PolicyServiceTest, AuthorizeAllowsAndDeniesWithRuleAndReason) {
  auto allowed = Authorize(Command({"jstack", "4242"}));
  EXPECT_EQ(allowed.decision().verdict(), VERDICT_ALLOW);
  EXPECT_EQ(allowed.decision().rule(), "dev-jstack");
  EXPECT_EQ(allowed.decision().limits().time_limit().seconds(), 30);
  EXPECT_TRUE(allowed.explanation().empty());

  auto denied = Authorize(Command({"curl", "-k", "https://orders.app-shop.svc/health"}));
  EXPECT_EQ(denied.decision().verdict(), VERDICT_DENY);
  EXPECT_EQ(denied.decision().rule(), "dev-curl");
  EXPECT_EQ(denied.decision().reason(), "flag -k is not allowed for curl (rule dev-curl)");

  auto escape = Authorize(Command({"find", "/", "-exec", "sh", ";"}));
  EXPECT_EQ(escape.decision().rule(), "deny-program-runners");

  auto nobody = Authorize(Command({"jstack", "1"}, "eve", "visitors"));
  EXPECT_EQ(nobody.decision().rule(), "default-deny");
  EXPECT_EQ(allowed.decision().policy_version(), GetPolicy().version());
}

TEST_F(PolicyServiceTest, AuthorizeExplainsOnRequest) {
  auto request = Command({"jcmd", "1", "VM.set_flag", "X"});
  request.set_explain(true);
  auto response = Authorize(request);
  EXPECT_EQ(response.decision().rule(), "deny-jcmd-dangerous");
  ASSERT_FALSE(response.explanation().empty());
  EXPECT_THAT(response.explanation(response.explanation_size() - 1),
              HasSubstr("decision: deny by deny-jcmd-dangerous"));
}

TEST_F(PolicyServiceTest, AuthorizeRefusesMalformedRequests) {
  grpc::Status status;
  auto no_user = Command({"free"}, "");
  Authorize(no_user, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("principal.user"));
  auto no_action = Command({});
  no_action.clear_action();
  Authorize(no_action, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto no_pod = Command({"free"});
  no_pod.mutable_target()->clear_pod();
  Authorize(no_pod, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // A hostile argv is a decision, not an error: the user typed it.
  auto huge = Command(std::vector<std::string>(1000, "x"));
  auto d = Authorize(huge, &status);
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(d.decision().rule(), "argv-check");
  EXPECT_EQ(d.decision().reason(), "the command has 1000 arguments (the limit is 128)");
}

TEST_F(PolicyServiceTest, AuthorizeStreamAnswersInOrderWithCorrelationIds) {
  grpc::ClientContext context;
  auto stream = stub_->AuthorizeStream(&context);
  constexpr int kCount = 600;
  std::thread writer([&] {
    for (int i = 0; i < kCount; ++i) {
      pb::AuthorizeStreamRequest request;
      request.set_correlation_id(absl::StrCat("c-", i));
      if (i % 100 == 99) {
        // No request inside: still answered, as a denial.
      } else if (i % 3 == 0) {
        *request.mutable_request() = Command({"jstack", absl::StrCat(i + 1)});
      } else if (i % 3 == 1) {
        *request.mutable_request() = Command({"curl", "-o", "/tmp/x", "https://example.com"});
      } else {
        *request.mutable_request() = Command({"ps", "e"});
      }
      if (!stream->Write(request)) {
        break;
      }
    }
    stream->WritesDone();
  });
  pb::AuthorizeStreamResponse response;
  int n = 0;
  while (stream->Read(&response)) {
    EXPECT_EQ(response.correlation_id(), absl::StrCat("c-", n));
    const std::string& rule = response.response().decision().rule();
    if (n % 100 == 99) {
      EXPECT_EQ(rule, "invalid-request");
    } else if (n % 3 == 0) {
      EXPECT_EQ(rule, "dev-jstack");
      EXPECT_EQ(response.response().decision().verdict(), VERDICT_ALLOW);
    } else if (n % 3 == 1) {
      EXPECT_EQ(rule, "deny-curl-writes-and-redirection");
    } else {
      EXPECT_EQ(rule, "deny-ps-environment");
    }
    ++n;
  }
  writer.join();
  grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(n, kCount);
}

TEST_F(PolicyServiceTest, AuthorizeStreamStopsReadingWhenTheClientDoesNotRead) {
  // A client channel with a fixed 64 KiB receive window (no BDP growth), so the answers it
  // does not read fill the window quickly.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", grpc_port_),
                                           grpc::InsecureChannelCredentials(), args);
  auto stub = PolicyService::NewStub(channel);
  grpc::ClientContext context;
  auto stream = stub->AuthorizeStream(&context);
  // Once the answers stop flowing the server's queue fills, it stops reading, and flow control
  // stalls the writer long before it sends everything (60 MB of requests).
  constexpr int kCount = 20000;
  std::atomic<int> written{0};
  std::thread writer([&] {
    pb::AuthorizeStreamRequest request;
    *request.mutable_request() =
        Command({"cat", "/var/log/app/" + std::string(3000, 'a') + ".log"});
    for (int i = 0; i < kCount; ++i) {
      request.set_correlation_id(absl::StrCat(i));
      if (!stream->Write(request)) {
        break;
      }
      ++written;
    }
    stream->WritesDone();
  });
  // Wait until the writer makes no progress for 500 ms.
  int stalled_at = -1;
  for (int last = -1; stalled_at < 0;) {
    absl::SleepFor(absl::Milliseconds(500));
    const int now = written.load();
    if (now == last || now == kCount) {
      stalled_at = now;
    }
    last = now;
  }
  std::cout << "writer stalled after " << stalled_at << " of " << kCount << " requests\n";
  EXPECT_LT(stalled_at, kCount / 4) << "the server kept reading without bound";
  // Reading resumes the flow; every answer arrives, in order.
  pb::AuthorizeStreamResponse response;
  int n = 0;
  while (stream->Read(&response)) {
    ASSERT_EQ(response.correlation_id(), absl::StrCat(n));
    ++n;
  }
  writer.join();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(n, kCount);
}

TEST_F(PolicyServiceTest, ListAllowedGetPolicyAndValidatePolicy) {
  pb::ListAllowedRequest list_request;
  list_request.mutable_principal()->set_user("dana");
  list_request.mutable_principal()->add_groups("developers");
  list_request.mutable_target()->set_namespace_("app-shop");
  list_request.mutable_target()->set_pod("shop-7d9f");
  pb::ListAllowedResponse list;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->ListAllowed(&context, list_request, &list).ok());
  }
  EXPECT_EQ(list.commands_size(), 16);
  EXPECT_EQ(list.commands(0).program(), "cat");
  EXPECT_FALSE(list.shell_allowed());
  {
    grpc::ClientContext context;
    list_request.mutable_principal()->clear_user();
    grpc::Status s = stub_->ListAllowed(&context, list_request, &list);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }

  const pb::GetPolicyResponse policy = GetPolicy();
  EXPECT_EQ(policy.source(), path_);
  EXPECT_EQ(policy.rule_count(), 31);
  EXPECT_EQ(policy.version().size(), 64u);
  EXPECT_EQ(policy.rejected_reloads(), 0);
  EXPECT_LE(std::abs(policy.loaded_time().seconds() - absl::ToUnixSeconds(absl::Now())), 60);

  pb::ValidatePolicyRequest validate;
  validate.set_document(example_);
  pb::ValidatePolicyResponse result;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->ValidatePolicy(&context, validate, &result).ok());
  }
  EXPECT_TRUE(result.valid());
  EXPECT_EQ(result.version(), policy.version());
  EXPECT_EQ(result.rule_count(), 31);
  validate.set_document(
      "apiVersion: podgate.io/v1\nkind: CommandPolicy\nrules:\n  - id: x\n"
      "    effect: allow\n    subjects: {users: [a]}\n"
      "    targets: {namespaces: [a]}\n    command: {program: curl, flags: [o]}\n");
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub_->ValidatePolicy(&context, validate, &result).ok());
  }
  EXPECT_FALSE(result.valid());
  ASSERT_EQ(result.issues_size(), 1);
  EXPECT_EQ(result.issues(0).severity(), pb::SEVERITY_ERROR);
  EXPECT_EQ(result.issues(0).line(), 8);
  EXPECT_EQ(result.issues(0).column(), 38);
  EXPECT_THAT(result.issues(0).message(), HasSubstr("flag 'o' must start with '-'"));
  // ValidatePolicy is a dry run: the policy in force did not change.
  EXPECT_EQ(GetPolicy().version(), policy.version());
}

// The example's sre-shell-staging-clusters names clusters; every other rule applies in every
// cluster, and to requests from an exec that sends no cluster.
TEST_F(PolicyServiceTest, ClustersScopeRulesListAllowedAndExplanations) {
  const auto shell = [](const std::string& cluster) {
    pb::AuthorizeRequest r = Command({}, "sam", "sre");
    r.clear_command();
    r.mutable_shell();
    r.mutable_target()->set_cluster(cluster);
    r.set_explain(true);
    return r;
  };
  pb::AuthorizeResponse staging = Authorize(shell("us-staging"));
  EXPECT_EQ(staging.decision().verdict(), VERDICT_ALLOW);
  EXPECT_EQ(staging.decision().rule(), "sre-shell-staging-clusters");

  pb::AuthorizeResponse prod = Authorize(shell("eu-prod"));
  EXPECT_EQ(prod.decision().verdict(), VERDICT_DENY);
  EXPECT_EQ(prod.decision().rule(), "default-deny");
  EXPECT_EQ(prod.decision().reason(),
            "no rule allows a shell for sam on app-shop/shop-7d9f/app in cluster eu-prod");
  EXPECT_THAT(prod.explanation(),
              ::testing::Contains("rule sre-shell-staging-clusters: cluster eu-prod is not in "
                                  "scope"));

  // An exec that predates clusters sends none: a rule naming clusters does not apply.
  pb::AuthorizeResponse old_exec = Authorize(shell(""));
  EXPECT_EQ(old_exec.decision().verdict(), VERDICT_DENY);
  EXPECT_THAT(old_exec.explanation(),
              ::testing::Contains("rule sre-shell-staging-clusters: the request names no cluster "
                                  "and the rule names clusters"));

  // Rules without clusters apply in every cluster and to requests without one.
  for (const char* cluster : {"eu-prod", "us-staging", ""}) {
    pb::AuthorizeRequest jstack = Command({"jstack", "4242"});
    jstack.mutable_target()->set_cluster(cluster);
    EXPECT_EQ(Authorize(jstack).decision().rule(), "dev-jstack") << cluster;
  }

  const auto shell_listed = [&](const std::string& cluster) {
    pb::ListAllowedRequest list_request;
    list_request.mutable_principal()->set_user("sam");
    list_request.mutable_principal()->add_groups("sre");
    list_request.mutable_target()->set_cluster(cluster);
    list_request.mutable_target()->set_namespace_("app-shop");
    list_request.mutable_target()->set_pod("shop-7d9f");
    list_request.mutable_target()->set_container("app");
    pb::ListAllowedResponse list;
    grpc::ClientContext context;
    EXPECT_TRUE(stub_->ListAllowed(&context, list_request, &list).ok());
    EXPECT_GT(list.commands_size(), 0);
    return list.shell_allowed();
  };
  EXPECT_TRUE(shell_listed("us-staging"));
  EXPECT_FALSE(shell_listed("eu-prod"));
  EXPECT_FALSE(shell_listed(""));
}

// sre-jmap-histo-live allows two per pod per hour: the same namespace and pod name in another
// cluster is another pod.
TEST_F(PolicyServiceTest, RateLimitsCountPerClusterPod) {
  const auto histo = [&](const std::string& cluster) {
    pb::AuthorizeRequest r = Command({"jmap", "-histo:live", "4242"}, "sam", "sre");
    r.mutable_target()->set_cluster(cluster);
    return Authorize(r).decision();
  };
  EXPECT_EQ(histo("eu-prod").verdict(), VERDICT_ALLOW);
  EXPECT_EQ(histo("eu-prod").verdict(), VERDICT_ALLOW);
  const podgate::common::v1::Decision third = histo("eu-prod");
  EXPECT_EQ(third.verdict(), VERDICT_DENY);
  EXPECT_EQ(third.rule(), "sre-jmap-histo-live");
  EXPECT_THAT(third.reason(), HasSubstr("rate limit: "));
  EXPECT_EQ(histo("us-staging").verdict(), VERDICT_ALLOW);
  EXPECT_EQ(histo("us-staging").verdict(), VERDICT_ALLOW);
  EXPECT_EQ(histo("us-staging").verdict(), VERDICT_DENY);
  EXPECT_EQ(histo("").verdict(), VERDICT_ALLOW);
}

// A reload with a bad clusters list keeps the policy in force and says where the problem is.
TEST_F(PolicyServiceTest, BadClustersInAnEditAreRefusedWithTheirLine) {
  const std::string before = GetPolicy().version();
  const std::string edited =
      absl::StrCat(example_,
                   "\n  - id: dev-uptime\n    effect: allow\n    subjects: {groups: [developers]}\n"
                   "    targets: {clusters: eu-prod, namespaces: [\"app-*\"]}\n"
                   "    command: {program: uptime}\n");
  const int line = static_cast<int>(std::count(example_.begin(), example_.end(), '\n')) + 5;
  ReplaceFile(path_, edited);
  ASSERT_TRUE(process_->WaitForLine("policy reload refused", absl::Seconds(5)).ok());
  const pb::GetPolicyResponse policy = GetPolicy();
  EXPECT_EQ(policy.version(), before);
  EXPECT_THAT(policy.last_rejection(),
              HasSubstr(absl::StrCat(line, ":25: clusters of rule dev-uptime must be a list")));
}

TEST_F(PolicyServiceTest, EditsChangeDecisionsWithinASecondAndBrokenEditsChangeNothing) {
  ASSERT_EQ(Authorize(Command({"uptime"})).decision().rule(), "default-deny");
  const std::string before = GetPolicy().version();

  // A good edit: allow uptime.
  const std::string edited =
      absl::StrCat(example_,
                   "\n  - id: dev-uptime\n    effect: allow\n    subjects: {groups: [developers]}\n"
                   "    targets: {namespaces: [\"app-*\"]}\n    command: {program: uptime}\n");
  const absl::Time start = absl::Now();
  ReplaceFile(path_, edited);
  std::string rule;
  while (absl::Now() - start < absl::Seconds(5)) {
    rule = Authorize(Command({"uptime"})).decision().rule();
    if (rule == "dev-uptime") {
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(rule, "dev-uptime");
  EXPECT_LT(took, absl::Seconds(1));
  const std::string after = GetPolicy().version();
  EXPECT_NE(after, before);

  // A broken edit: the decision stays, a metric and a log line say why.
  ReplaceFile(path_, absl::StrCat(edited, "    bogus: 1\n"));
  ASSERT_TRUE(process_->WaitForLine("policy reload refused", absl::Seconds(5)).ok());
  EXPECT_EQ(Authorize(Command({"uptime"})).decision().rule(), "dev-uptime");
  const pb::GetPolicyResponse policy = GetPolicy();
  EXPECT_EQ(policy.version(), after);
  EXPECT_EQ(policy.rejected_reloads(), 1);
  EXPECT_THAT(policy.last_rejection(), HasSubstr("unknown key 'bogus' in a rule"));
  auto metrics = Metrics();
  EXPECT_EQ(metrics["podgate_policy_reload_failures_total"], 1);
  EXPECT_EQ(metrics["podgate_policy_reloads_total"], 2);
  EXPECT_EQ(metrics[absl::StrCat("podgate_policy_version_info{source=\"", path_, "\",version=\"",
                                 after, "\"}")],
            1);
  // Let a few poll intervals pass: the same broken file is not counted again.
  absl::SleepFor(absl::Milliseconds(600));
  EXPECT_EQ(GetPolicy().rejected_reloads(), 1);
}

TEST_F(PolicyServiceTest, MetricsCountDecisionsByVerdictAndRule) {
  for (int i = 0; i < 3; ++i) {
    Authorize(Command({"jstack", "1"}));
  }
  Authorize(Command({"ps", "e"}));
  auto metrics = Metrics();
  EXPECT_EQ(metrics["podgate_policy_decisions_total{rule=\"dev-jstack\",verdict=\"allow\"}"], 3);
  EXPECT_EQ(
      metrics["podgate_policy_decisions_total{rule=\"deny-ps-environment\",verdict=\"deny\"}"], 1);
  EXPECT_EQ(metrics["podgate_policy_evaluation_duration_seconds_count"], 4);
  EXPECT_EQ(metrics["podgate_policy_rules"], 31);
}

// podgate-policy with the smallest log buffer, so that a few thousand lines overflow it.
class PolicyLogTest : public PolicyServiceTest {
 protected:
  PolicyLogTest() { extra_args_ = {"--log_buffer_bytes=65536"}; }
};

// A log collector that stops reading the service's stderr (a stuck container runtime, a node's
// full disk) must not stop decisions. Every denial writes a log line; with stderr unread the
// pipe is full after a few hundred, and a service that writes its lines on the threads that
// answer stops answering. Here the lines past the log buffer are dropped and counted, and once
// stderr is read again the log says how many: every denial is either a line or counted.
TEST_F(PolicyLogTest, AStalledLogReaderDoesNotStopDecisions) {
  process_->PauseReading();
  constexpr int kDenials = 3000;
  for (int i = 0; i < kDenials; ++i) {
    grpc::Status status;
    const pb::AuthorizeResponse r = Authorize(Command({"ps", "e"}), &status);
    ASSERT_TRUE(status.ok()) << "decision " << i
                             << " with the log unread: " << status.error_message();
    ASSERT_EQ(r.decision().verdict(), VERDICT_DENY);
  }
  auto metrics = Metrics();
  const double dropped = metrics["podgate_log_lines_dropped_total"];
  EXPECT_GT(dropped, 0) << "3000 lines of about 350 bytes fit a 64 KiB pipe and a 64 KiB buffer";
  EXPECT_LT(dropped, kDenials);
  EXPECT_LE(metrics["podgate_log_buffer_bytes"], 65536);
  EXPECT_EQ(metrics["podgate_log_buffer_limit_bytes"], 65536);

  process_->ResumeReading();
  // Every denial is a decision line or in a "log lines dropped" notice, and every line is whole.
  int decisions = 0;
  double noticed = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    decisions = 0;
    noticed = 0;
    for (const std::string& line : process_->Lines()) {
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      ASSERT_FALSE(j.is_discarded()) << "not a whole JSON line: " << line;
      if (j.value("msg", "") == "decision") {
        ++decisions;
      } else if (j.value("msg", "") == "log lines dropped") {
        EXPECT_EQ(j.value("level", ""), "warning");
        noticed += j.value("dropped", 0.0);
      }
    }
    if (decisions + noticed >= kDenials) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(noticed, dropped);
  EXPECT_EQ(decisions + noticed, kDenials);
  EXPECT_EQ(Metrics()["podgate_log_lines_dropped_total"], dropped);
}

// The same stalled reader must not keep the service from stopping: SIGTERM ends it within the
// drain and the log's bounded exit flush (2 s), where it used to hang writing "signal received".
TEST_F(PolicyLogTest, AStalledLogReaderDoesNotStopShutdown) {
  process_->PauseReading();
  for (int i = 0; i < 3000; ++i) {
    grpc::Status status;
    Authorize(Command({"ps", "e"}), &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  const absl::Time start = absl::Now();
  process_->Signal(SIGTERM);
  // Until the process is gone (a zombie: WaitExit would also wait up to 2 s for its stderr's
  // end, which the paused reader never sees).
  const std::string stat = absl::StrCat("/proc/", process_->pid(), "/stat");
  absl::Duration took = absl::InfiniteDuration();
  while (absl::Now() - start < absl::Seconds(10)) {
    const std::string text = podgate::testing::ReadProcFile(stat);
    const size_t close = text.rfind(')');
    if (text.empty() || (close != std::string::npos && text.substr(close + 2, 1) == "Z")) {
      took = absl::Now() - start;
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  // The drain (200 ms here) and the log's exit flush (at most 2 s), with room for a slow machine.
  EXPECT_LT(took, absl::Seconds(4));
  auto status = process_->WaitExit(absl::Seconds(10));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, 0);
  process_.reset();  // exited and reaped: TearDown has nothing to stop
}

// --check: the command line a user's CI runs.
struct CheckRun {
  int exit_code = -1;
  std::string output;
};

CheckRun RunCheck(const std::string& path) {
  CheckRun run;
  FILE* pipe = popen(absl::StrCat(PODGATE_POLICY_BIN, " --check=", path, " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) {
    run.output.append(buf, n);
  }
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

TEST(PolicyCheckTest, ValidInvalidAndUnreadableFiles) {
  CheckRun ok = RunCheck(PODGATE_EXAMPLE_POLICY);
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("example.yaml: valid, 31 rules, version "));

  const std::string dir = podgate::testing::MakeTempDir("policy-check");
  const std::string bad = dir + "/bad.yaml";
  ReplaceFile(bad,
              "apiVersion: podgate.io/v1\nkind: CommandPolicy\nrules:\n  - id: r\n"
              "    effect: allow\n    subjects: {users: [a]}\n    targets: {namespaces: [a]}\n"
              "    command:\n      program: grep\n      args: [{name: p, type: regex, "
              "pattern: \"(\"}]\n");
  CheckRun invalid = RunCheck(bad);
  EXPECT_EQ(invalid.exit_code, 1);
  EXPECT_THAT(invalid.output, HasSubstr(absl::StrCat(bad, ":10:46: error: bad regex '(':")));
  EXPECT_THAT(invalid.output, HasSubstr(absl::StrCat(bad, ": invalid")));

  CheckRun missing = RunCheck(dir + "/missing.yaml");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.output, HasSubstr("cannot read the file"));
  fs::remove_all(dir);
}

TEST(PolicyStartupTest, InvalidPolicyFileStopsStartupWithOneClearLine) {
  const std::string dir = podgate::testing::MakeTempDir("policy-start");
  ReplaceFile(dir + "/p.yaml", "apiVersion: podgate.io/v1\nkind: Nope\nrules: []\n");
  auto process = Subprocess::Start(
      PODGATE_POLICY_BIN,
      {"--grpc_address=127.0.0.1:0", "--metrics_address=", "--policy_file=" + dir + "/p.yaml"});
  ASSERT_TRUE(process.ok());
  auto status = (*process)->WaitExit(absl::Seconds(10));
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(*status, 2);
  auto line = (*process)->WaitForLine("--policy_file:", absl::Seconds(1));
  ASSERT_TRUE(line.ok());
  EXPECT_THAT(*line, HasSubstr("p.yaml:2:7: kind must be CommandPolicy"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace podgate
