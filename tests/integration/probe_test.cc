// podgate-probe against real services: policy over plaintext, TLS and mutual TLS (the test
// PKI), exec's per-cluster health turning NOT_SERVING when its cluster stops answering, a port
// that refuses connections, and edge's /healthz and /readyz over HTTP.
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "support/prometheus_text.h"
#include "support/stack.h"
#include "support/subprocess.h"
#include "support/test_pki.h"

namespace podgate {
namespace {

using ::testing::HasSubstr;
using testing::Subprocess;

// The exit status and stderr (podgate-probe's one line when not healthy).
using ProbeRun = Subprocess::Finished;

ProbeRun Probe(const std::vector<std::string>& args,
               const std::map<std::string, std::string>& env = {}) {
  absl::StatusOr<Subprocess::Finished> done = Subprocess::Run(PODGATE_PROBE_BIN, args, env);
  EXPECT_TRUE(done.ok()) << done.status();
  return done.value_or(ProbeRun{});
}

// A service started on free ports; the ports come from its "serving" line.
struct Service {
  std::unique_ptr<Subprocess> process;
  int grpc_port = 0;
  int metrics_port = 0;
  int http_port = 0;
  std::string address() const { return absl::StrCat("127.0.0.1:", grpc_port); }
};

Service Start(const std::string& binary, std::vector<std::string> args) {
  Service s;
  args.insert(args.end(), {"--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
                           "--drain_timeout=1s"});
  auto process = Subprocess::Start(binary, args);
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) {
    return s;
  }
  s.process = *std::move(process);
  if (binary == PODGATE_EDGE_BIN) {
    auto http = s.process->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(20));
    EXPECT_TRUE(http.ok()) << http.status();
    if (http.ok()) {
      s.http_port = nlohmann::json::parse(*http)["http_port"].get<int>();
    }
  }
  auto line = s.process->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
  EXPECT_TRUE(line.ok()) << line.status();
  if (line.ok()) {
    const nlohmann::json j = nlohmann::json::parse(*line);
    s.grpc_port = j["grpc_port"].get<int>();
    s.metrics_port = j["metrics_port"].get<int>();
  }
  return s;
}

class ProbeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::MakeTempDir("podgate-probe"));
    auto pki = testing::MakeTestPki(*dir_);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = new testing::TestPki(*pki);
  }
  static std::string* dir_;
  static testing::TestPki* pki_;
};
std::string* ProbeTest::dir_ = nullptr;
testing::TestPki* ProbeTest::pki_ = nullptr;

TEST_F(ProbeTest, PlaintextServerAndServiceServing) {
  Service policy = Start(PODGATE_POLICY_BIN, {});
  ASSERT_NE(policy.grpc_port, 0);
  EXPECT_EQ(Probe({"--address=" + policy.address()}).exit_code, 0);
  ProbeRun named = Probe({"--address=" + policy.address(), "--service=policy"});
  EXPECT_EQ(named.exit_code, 0) << named.err;
  EXPECT_EQ(named.err, "");
  // The flags also come from the environment (what a container's env gives).
  EXPECT_EQ(
      Probe({}, {{"PODGATE_ADDRESS", policy.address()}, {"PODGATE_SERVICE", "policy"}}).exit_code,
      0);
  ProbeRun unknown = Probe({"--address=" + policy.address(), "--service=nosuch"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(unknown.err, absl::StrCat("podgate-probe: ", policy.address(),
                                      " service \"nosuch\": NOT_FOUND: service name unknown"));
  // The process counted those calls (health Check named, though no protobuf descriptor of it is
  // linked into policy): 3 answered OK, 1 NOT_FOUND.
  const std::string check = R"(grpc_method="Check",grpc_service="grpc.health.v1.Health")";
  EXPECT_EQ(
      testing::MetricSample(policy.metrics_port,
                            "podgate_grpc_server_handled_total{grpc_code=\"OK\"," + check + "}"),
      3);
  EXPECT_EQ(testing::MetricSample(
                policy.metrics_port,
                "podgate_grpc_server_handled_total{grpc_code=\"NOT_FOUND\"," + check + "}"),
            1);
  EXPECT_EQ(testing::MetricSample(policy.metrics_port,
                                  "podgate_grpc_server_handling_seconds_count{" + check + "}"),
            4);
  // TLS to a plaintext server fails the handshake.
  EXPECT_EQ(
      Probe({"--address=" + policy.address(), "--ca=" + pki_->ca_cert, "--timeout=2s"}).exit_code,
      1);
}

TEST_F(ProbeTest, MutualTls) {
  Service policy =
      Start(PODGATE_POLICY_BIN, {"--tls_cert=" + pki_->server_cert, "--tls_key=" + pki_->server_key,
                                 "--tls_client_ca=" + pki_->ca_cert});
  ASSERT_NE(policy.grpc_port, 0);
  const std::string address = "--address=" + policy.address();
  ProbeRun ok = Probe({address, "--service=policy", "--ca=" + pki_->ca_cert,
                       "--cert=" + pki_->client_cert, "--key=" + pki_->client_key});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  // The certificates policy loaded, with their notAfter (two days from now, as the test PKI
  // makes them), and the Check counted.
  const double server_expiry = testing::MetricSample(
      policy.metrics_port, "podgate_tls_certificate_expiry_timestamp_seconds{path=\"" +
                               pki_->server_cert + "\",usage=\"server\"}");
  const double now = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  EXPECT_GT(server_expiry, now + 86400);
  EXPECT_LT(server_expiry, now + 3 * 86400);
  EXPECT_GT(testing::MetricSample(policy.metrics_port,
                                  "podgate_tls_certificate_expiry_timestamp_seconds{path=\"" +
                                      pki_->ca_cert + "\",usage=\"client_ca\"}"),
            now);
  EXPECT_EQ(
      testing::MetricSample(
          policy.metrics_port,
          R"(podgate_grpc_server_started_total{grpc_method="Check",grpc_service="grpc.health.v1.Health",grpc_type="unary"})"),
      1);
  // localhost is in the server certificate; a name that is not fails verification.
  EXPECT_EQ(Probe({address, "--ca=" + pki_->ca_cert, "--cert=" + pki_->client_cert,
                   "--key=" + pki_->client_key, "--server_name=localhost"})
                .exit_code,
            0);
  ProbeRun wrong_name = Probe({address, "--ca=" + pki_->ca_cert, "--cert=" + pki_->client_cert,
                               "--key=" + pki_->client_key, "--server_name=other.example"});
  EXPECT_EQ(wrong_name.exit_code, 1);
  // No client certificate: the server refuses the handshake.
  ProbeRun no_cert = Probe({address, "--ca=" + pki_->ca_cert, "--timeout=2s"});
  EXPECT_EQ(no_cert.exit_code, 1);
  EXPECT_THAT(no_cert.err, HasSubstr(policy.address() + " service \"\": UNAVAILABLE"));
  EXPECT_EQ(std::count(no_cert.err.begin(), no_cert.err.end(), '\n'), 0) << no_cert.err;
  // The server's certificate does not chain to this CA.
  ProbeRun wrong_ca = Probe({address, "--ca=" + pki_->other_ca_cert, "--cert=" + pki_->client_cert,
                             "--key=" + pki_->client_key, "--timeout=2s"});
  EXPECT_EQ(wrong_ca.exit_code, 1);
  EXPECT_THAT(wrong_ca.err, HasSubstr("UNAVAILABLE"));
  // Plaintext to a TLS server.
  EXPECT_EQ(Probe({address, "--timeout=2s"}).exit_code, 1);
}

TEST_F(ProbeTest, ConnectionRefusedIsOneClearLine) {
  testing::ReservedPort closed;
  const std::string address = absl::StrCat("127.0.0.1:", closed.port());
  ProbeRun run = Probe({"--address=" + address, "--service=policy"});
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, ::testing::StartsWith(absl::StrCat("podgate-probe: ", address,
                                                          " service \"policy\": UNAVAILABLE: ")));
  EXPECT_THAT(run.err, HasSubstr("Connection refused"));
  EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 0) << run.err;
  ProbeRun http = Probe({absl::StrCat("--http=http://", address, "/readyz")});
  EXPECT_EQ(http.exit_code, 1);
  EXPECT_EQ(http.err, absl::StrCat("podgate-probe: http://", address,
                                   "/readyz: connect: Connection refused"));
}

TEST_F(ProbeTest, BadFlagsExitTwo) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {},
           {"--address=127.0.0.1:1", "--http=http://127.0.0.1:1/"},
           {"--address=127.0.0.1:1", "--cert=" + pki_->client_cert},
           {"--address=127.0.0.1:1", "--cert=c.pem", "--key=k.pem"},
           {"--address=127.0.0.1:1", "--timeout=x"},
           {"--address=127.0.0.1:1", "--timeout=0s"},
           {"--address=127.0.0.1:1", "--no_such_flag"},
           {"--address=127.0.0.1:1", "--ca=/nonexistent/ca.pem"},
           {"--http=ftp://example/"},
           {"--http=http://127.0.0.1:1/", "--ca=" + pki_->ca_cert},
           {"--address=127.0.0.1:1", "extra"},
       }) {
    ProbeRun run = Probe(args);
    EXPECT_EQ(run.exit_code, 2) << absl::StrJoin(args, " ") << ": " << run.err;
    EXPECT_THAT(run.err, ::testing::StartsWith("podgate-probe: ")) << absl::StrJoin(args, " ");
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 0) << run.err;
  }
}

// exec answers NOT_SERVING for a cluster whose API server stops answering; edge's /readyz is
// 200 with its backends up and 503 without them.
TEST_F(ProbeTest, NotServingClusterAndEdgeReadiness) {
  testing::StackOptions options;
  options.binaries = {PODGATE_KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN, PODGATE_EXEC_BIN};
  options.cluster_yaml = R"(namespaces:
  - name: team
pods:
  - name: app
    namespace: team
    containers:
      - {name: main, image: demo/app:1}
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec]
    namespaces: ["*"]
)";
  options.policy_yaml = "apiVersion: podgate.io/v1\nkind: CommandPolicy\nrules: []\n";
  options.exec_flags = {"--kube_health_interval=1s"};
  auto stack = testing::Stack::Start(options);
  ASSERT_TRUE(stack.ok()) << stack.status();
  const std::string exec = absl::StrCat("--address=127.0.0.1:", (*stack)->exec_port());

  // edge in front of the stack: ready.
  std::ofstream(*dir_ + "/jwt.secret") << std::string(40, 's');
  const std::vector<std::string> edge_flags = {
      "--jwt_key_file=" + *dir_ + "/jwt.secret", "--jwt_algorithm=HS256",
      "--jwt_issuer=https://podgate.test", "--http_address=127.0.0.1:0"};
  std::vector<std::string> up = edge_flags;
  up.push_back(absl::StrCat("--exec_address=127.0.0.1:", (*stack)->exec_port()));
  up.push_back(absl::StrCat("--policy_address=127.0.0.1:", (*stack)->policy_port()));
  up.push_back(absl::StrCat("--audit_address=127.0.0.1:", (*stack)->audit_port()));
  Service edge = Start(PODGATE_EDGE_BIN, up);
  ASSERT_NE(edge.http_port, 0);
  const std::string readyz = absl::StrCat("--http=http://127.0.0.1:", edge.http_port, "/readyz");
  ProbeRun ready = Probe({readyz});
  EXPECT_EQ(ready.exit_code, 0) << ready.err;
  EXPECT_EQ(Probe({"--address=" + edge.address(), "--service=edge"}).exit_code, 0);

  // edge over HTTPS whose backends refuse connections: /healthz 200 (alive), /readyz 503 (not
  // ready).
  testing::ReservedPort closed;
  std::vector<std::string> down = edge_flags;
  down.push_back(absl::StrCat("--exec_address=127.0.0.1:", closed.port()));
  down.push_back(absl::StrCat("--policy_address=127.0.0.1:", closed.port()));
  down.push_back("--tls_cert_http=" + pki_->server_cert);
  down.push_back("--tls_key_http=" + pki_->server_key);
  Service lonely = Start(PODGATE_EDGE_BIN, down);
  ASSERT_NE(lonely.http_port, 0);
  const std::string base = absl::StrCat("--http=https://127.0.0.1:", lonely.http_port);
  ProbeRun alive = Probe({base + "/healthz", "--ca=" + pki_->ca_cert});
  EXPECT_EQ(alive.exit_code, 0) << alive.err;
  ProbeRun not_ready = Probe({base + "/readyz", "--ca=" + pki_->ca_cert});
  EXPECT_EQ(not_ready.exit_code, 1);
  EXPECT_THAT(not_ready.err,
              ::testing::StartsWith(absl::StrCat(
                  "podgate-probe: https://127.0.0.1:", lonely.http_port, "/readyz: HTTP 503")));
  // The server's certificate does not chain to this CA, nor to the system roots.
  ProbeRun wrong_ca = Probe({base + "/healthz", "--ca=" + pki_->other_ca_cert});
  EXPECT_EQ(wrong_ca.exit_code, 1);
  EXPECT_EQ(std::count(wrong_ca.err.begin(), wrong_ca.err.end(), '\n'), 0) << wrong_ca.err;
  EXPECT_EQ(Probe({base + "/healthz"}).exit_code, 1);

  // The cluster stops answering: exec's part for it turns NOT_SERVING, exec itself stays ready.
  // The cluster's name as exec calls it (the kubeconfig's context).
  auto kube = (*stack)->exec()->WaitForLine("\"msg\":\"kubernetes\"", absl::Seconds(10));
  ASSERT_TRUE(kube.ok()) << kube.status();
  const std::string part =
      "--service=exec/cluster/" + nlohmann::json::parse(*kube)["cluster"].get<std::string>();
  // (It answers once exec's first check of the cluster is done.)
  int first = -1;
  for (int i = 0; i < 100 && first != 0; ++i) {
    first = Probe({exec, part}).exit_code;
    if (first != 0) {
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
  ASSERT_EQ(first, 0);
  ASSERT_TRUE((*stack)->kubesim()->Freeze().ok());
  ProbeRun cluster;
  for (int i = 0; i < 100; ++i) {
    cluster = Probe({exec, part});
    if (cluster.exit_code != 0) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_EQ(cluster.exit_code, 1);
  EXPECT_EQ(cluster.err, absl::StrCat("podgate-probe: 127.0.0.1:", (*stack)->exec_port(),
                                      " service \"", part.substr(10), "\": NOT_SERVING"));
  EXPECT_EQ(Probe({exec, "--service=exec"}).exit_code, 0);
  (*stack)->kubesim()->Signal(SIGCONT);
}

}  // namespace
}  // namespace podgate
