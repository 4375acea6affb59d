// Starts the four podgate binaries on free ports and checks what every service must do:
// health SERVING over gRPC, a valid Prometheus page over HTTP, a clean exit on SIGTERM, and
// one clear line for a bad flag or an unreadable certificate.
#include <signal.h>

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
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

using ::podgate::testing::Subprocess;
using ::testing::HasSubstr;

// podgate-audit needs a writable store: every audit started here uses one SQLite file in a
// temporary folder (PODGATE_STORE is inherited by the child processes).
class AuditStoreEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    dir_ = podgate::testing::MakeTempDir("podgate-services-audit");
    setenv("PODGATE_STORE", absl::StrCat("sqlite://", dir_, "/audit.db").c_str(), 1);
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

 private:
  std::string dir_;
};

const auto* const kAuditStoreEnvironment =
    ::testing::AddGlobalTestEnvironment(new AuditStoreEnvironment);

struct Binary {
  std::string name;
  std::string path;
};

const Binary kBinaries[] = {
    {"policy", PODGATE_POLICY_BIN},
    {"exec", PODGATE_EXEC_BIN},
    {"audit", PODGATE_AUDIT_BIN},
    {"edge", PODGATE_EDGE_BIN},
};

// The flags a service cannot start without (its own configuration), in a scratch folder.
std::vector<std::string> RequiredFlags(const std::string& name) {
  static const std::string dir = [] {
    std::string d = podgate::testing::MakeTempDir("podgate-services");
    std::ofstream(d + "/jwt.secret") << std::string(40, 's');
    std::ofstream(d + "/kubeconfig")
        << "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
           "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n"
           "users: [{name: u, user: {token: t}}]\n"
           "contexts: [{name: c, context: {cluster: k, user: u}}]\n";
    return d;
  }();
  if (name == "exec") {
    return {"--jwt_key_file=" + dir + "/jwt.secret", "--jwt_algorithm=HS256",
            "--jwt_issuer=https://podgate.test", "--kubeconfig=" + dir + "/kubeconfig"};
  }
  if (name == "edge") {
    return {"--jwt_key_file=" + dir + "/jwt.secret", "--jwt_algorithm=HS256",
            "--jwt_issuer=https://podgate.test", "--http_address=127.0.0.1:0"};
  }
  return {};
}

struct Running {
  std::unique_ptr<Subprocess> process;
  int grpc_port = 0;
  int metrics_port = 0;
};

Running StartOnFreePorts(const Binary& binary, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--grpc_address=127.0.0.1:0",
                                   "--metrics_address=127.0.0.1:0", "--drain_timeout=2s"};
  for (const std::string& flag : RequiredFlags(binary.name)) {
    args.push_back(flag);
  }
  args.insert(args.end(), extra.begin(), extra.end());
  auto process = Subprocess::Start(binary.path, args);
  EXPECT_TRUE(process.ok()) << process.status();
  Running running;
  running.process = *std::move(process);
  auto line = running.process->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
  EXPECT_TRUE(line.ok()) << binary.name << ": " << line.status();
  if (line.ok()) {
    const nlohmann::json j = nlohmann::json::parse(*line);
    EXPECT_EQ(j["service"], binary.name);
    running.grpc_port = j["grpc_port"];
    running.metrics_port = j["metrics_port"];
  }
  return running;
}

TEST(ServicesTest, AllFourServeHealthAndMetricsAndStopOnSigterm) {
  std::vector<Running> running;
  for (const Binary& binary : kBinaries) {
    running.push_back(StartOnFreePorts(binary));
  }
  for (size_t i = 0; i < running.size(); ++i) {
    const Binary& binary = kBinaries[i];
    SCOPED_TRACE(binary.name);
    ASSERT_NE(running[i].grpc_port, 0);
    auto channel = podgate::testing::LocalChannel(running[i].grpc_port);
    auto health = podgate::testing::CheckHealth(channel);
    ASSERT_TRUE(health.ok()) << health.status();
    EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);
    EXPECT_EQ(*podgate::testing::CheckHealth(channel, binary.name),
              grpc::health::v1::HealthCheckResponse::SERVING);

    auto page = podgate::testing::HttpGet(running[i].metrics_port, "/metrics");
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_EQ(page->status, 200);
    EXPECT_THAT(page->content_type, HasSubstr("text/plain"));
    auto parsed = podgate::testing::ParsePrometheusText(page->body);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_GT(parsed->samples["process_resident_memory_bytes"], 0);
    EXPECT_EQ(parsed->samples.count(absl::StrCat("podgate_build_info{service=\"", binary.name,
                                                 "\",version=\"0.1.0\"}")),
              1u);
  }
  for (size_t i = 0; i < running.size(); ++i) {
    running[i].process->Signal(SIGTERM);
  }
  for (size_t i = 0; i < running.size(); ++i) {
    SCOPED_TRACE(kBinaries[i].name);
    auto status = running[i].process->WaitExit(absl::Seconds(10));
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(*status, 0);
    EXPECT_TRUE(running[i].process->WaitForLine("\"msg\":\"stopped\"", absl::Seconds(1)).ok());
  }
}

TEST(ServicesTest, SigintStopsAsCleanly) {
  Running policy = StartOnFreePorts(kBinaries[0]);
  policy.process->Signal(SIGINT);
  auto status = policy.process->WaitExit(absl::Seconds(10));
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(*status, 0);
}

TEST(ServicesTest, EnvironmentConfiguresAService) {
  std::vector<std::string> args = RequiredFlags(kBinaries[2].name);
  args.push_back("--metrics_address=");
  auto process = Subprocess::Start(kBinaries[2].path, args,
                                   {{"PODGATE_GRPC_ADDRESS", "127.0.0.1:0"},
                                    {"PODGATE_LOG_LEVEL", "debug"}});
  ASSERT_TRUE(process.ok());
  auto line = (*process)->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
  ASSERT_TRUE(line.ok()) << line.status();
  const nlohmann::json j = nlohmann::json::parse(*line);
  EXPECT_NE(j["grpc_port"], 0);
  EXPECT_EQ(j["metrics_port"], 0);  // --metrics_address= disabled metrics
}

// One line on stderr, naming the flag or file, and a non-zero exit.
void ExpectStartupFailure(std::vector<std::string> args,
                          const std::map<std::string, std::string>& env,
                          const std::vector<std::string>& needles) {
  args.insert(args.begin(), "--metrics_address=127.0.0.1:0");
  for (const Binary& binary : kBinaries) {
    SCOPED_TRACE(binary.name);
    std::vector<std::string> all = RequiredFlags(binary.name);
    all.insert(all.end(), args.begin(), args.end());
    auto process = Subprocess::Start(binary.path, all, env);
    ASSERT_TRUE(process.ok());
    auto status = (*process)->WaitExit(absl::Seconds(20));
    ASSERT_TRUE(status.ok());
    EXPECT_NE(*status, 0);
    // Let the reader thread take the last bytes.
    (*process)->WaitForLine("\x01never", absl::Milliseconds(200)).IgnoreError();
    const std::vector<std::string> lines = (*process)->Lines();
    ASSERT_EQ(lines.size(), 1u) << absl::StrJoin(lines, "\n");
    for (const std::string& needle : needles) {
      EXPECT_THAT(lines[0], HasSubstr(needle));
    }
  }
}

TEST(ServicesTest, BadFlagValueExitsWithOneClearLine) {
  ExpectStartupFailure({"--grpc_address=127.0.0.1:0", "--drain_timeout=forever"}, {},
                       {"drain_timeout", "forever"});
  ExpectStartupFailure({"--grpc_address=127.0.0.1:0", "--drain_timeout=1h"}, {},
                       {"--drain_timeout", "out of range"});
  ExpectStartupFailure({"--grpc_address=127.0.0.1:0", "--log_level=loud"}, {},
                       {"--log_level", "loud"});
  ExpectStartupFailure({"--grpc_address=not-an-address"}, {}, {"--grpc_address"});
  ExpectStartupFailure({"--grpc_address=127.0.0.1:0", "--log_buffer_bytes=1000"}, {},
                       {"--log_buffer_bytes: 1000 is out of range (65536 to 268435456)"});
  ExpectStartupFailure({"--grpc_address=127.0.0.1:0", "--log_buffer_bytes=lots"}, {},
                       {"log_buffer_bytes", "lots"});
}

TEST(ServicesTest, BadEnvironmentValueExitsWithOneClearLine) {
  ExpectStartupFailure({"--grpc_address=127.0.0.1:0"}, {{"PODGATE_DRAIN_TIMEOUT", "soon"}},
                       {"PODGATE_DRAIN_TIMEOUT", "--drain_timeout"});
}

TEST(ServicesTest, UnreadableCertificateExitsWithOneClearLine) {
  ExpectStartupFailure({"--grpc_address=127.0.0.1:0", "--tls_cert=/nonexistent/cert.pem", "--tls_key=/nonexistent/key.pem"},
                       {}, {"--tls_cert", "/nonexistent/cert.pem", "No such file"});
}

TEST(ServicesTest, PolicyAnswersValidatePolicy) {
  // Every policy RPC is implemented: a dry run of an empty document is an answer, not
  // UNIMPLEMENTED (tests/integration/policy covers the service in depth).
  Running policy = StartOnFreePorts(kBinaries[0]);
  auto stub = podgate::policy::v1::PolicyService::NewStub(
      podgate::testing::LocalChannel(policy.grpc_port));
  grpc::ClientContext ctx;
  podgate::policy::v1::ValidatePolicyRequest req;
  podgate::policy::v1::ValidatePolicyResponse res;
  grpc::Status status = stub->ValidatePolicy(&ctx, req, &res);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(res.valid());
  ASSERT_EQ(res.issues_size(), 1);
  EXPECT_EQ(res.issues(0).message(), "the document is empty");
}

}  // namespace
}  // namespace podgate
