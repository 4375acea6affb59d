// kubesim in-process on a real socket: the cluster and token parsers, REST answers and errors,
// and pods/exec over WebSocket against real child processes.
#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/str_split.h"
#include "api_server.h"
#include "cluster.h"
#include "http/client.h"
#include "http/server.h"
#include "k8s/exec_protocol.h"
#include "process.h"
#include "support/test_pki.h"

namespace podgate::kubesim {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

size_t CountOf(std::string_view text, std::string_view needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string_view::npos;
       at = text.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

constexpr char kClusterYaml[] = R"(
namespaces:
  - name: demo
  - name: secret
pods:
  - name: web-1
    namespace: demo
    labels: {app: web, tier: front}
    annotations: {kubectl.kubernetes.io/default-container: app}
    containers:
      - name: app
        env: {GREETING: hello}
      - name: sidecar
  - name: rooty
    namespace: demo
    labels: {app: root}
    containers:
      - name: main
        user: root
  - name: pending-1
    namespace: demo
    phase: Pending
    containers:
      - name: app
  - name: vault
    namespace: secret
    containers:
      - name: app
access:
  - user: admin
    verbs: ["*"]
    resources: ["*"]
    namespaces: ["*"]
  - user: dev
    verbs: [get, list, create]
    resources: [pods, pods/exec]
    namespaces: [demo]
  - user: reader
    verbs: [get, list]
    resources: ["*"]
    namespaces: [demo]
)";

TEST(ClusterParse, ParsesPodsAndAccess) {
  absl::StatusOr<Cluster> c = ParseCluster(kClusterYaml);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->pods.size(), 4u);
  const Pod* web = c->FindPod("demo", "web-1");
  ASSERT_NE(web, nullptr);
  EXPECT_EQ(web->labels.at("app"), "web");
  EXPECT_EQ(web->containers.size(), 2u);
  EXPECT_FALSE(web->containers[0].root);
  EXPECT_TRUE(c->FindPod("demo", "rooty")->containers[0].root);
  EXPECT_EQ(c->FindPod("demo", "pending-1")->phase, "Pending");
  EXPECT_TRUE(c->Allowed("dev", "create", "pods/exec", "demo"));
  EXPECT_FALSE(c->Allowed("dev", "create", "pods/exec", "secret"));
  EXPECT_FALSE(c->Allowed("reader", "create", "pods/exec", "demo"));
  EXPECT_FALSE(c->Allowed("nobody", "get", "pods", "demo"));
  EXPECT_FALSE(c->Allowed("dev", "list", "pods", ""));  // cluster scope needs "*"
  EXPECT_TRUE(c->Allowed("admin", "list", "pods", ""));
}

TEST(ClusterParse, RejectsBadDocuments) {
  struct Case {
    const char* yaml;
    const char* error;
  };
  for (const Case& k : std::vector<Case>{
           {"namespaces: [", "cluster YAML"},
           {"bogus: 1", "unknown key \"bogus\""},
           {"namespaces: [{name: Bad_Name}]", "invalid name"},
           {"namespaces: [{name: a}, {name: a}]", "duplicate namespace"},
           {"namespaces: [{name: a}]\npods: [{name: p, namespace: b, containers: [{name: c}]}]",
            "unknown namespace b"},
           {"namespaces: [{name: a}]\npods: [{name: p, namespace: a}]", "at least one container"},
           {"namespaces: [{name: a}]\npods: [{name: p, namespace: a, phase: Dancing, "
            "containers: [{name: c}]}]",
            "unknown phase"},
           {"namespaces: [{name: a}]\npods: [{name: p, namespace: a, containers: [{name: c}, "
            "{name: c}]}]",
            "duplicate container"},
           {"namespaces: [{name: a}]\npods: [{name: p, namespace: a, containers: [{name: c, "
            "user: admin}]}]",
            "user must be root or nonroot"},
           {"namespaces: [{name: a}]\npods: [{name: p, namespace: a, containers: [{name: c, "
            "workingDir: rel}]}]",
            "workingDir must be absolute"},
           {"namespaces: [{name: a}]\npods: [{name: p, namespace: a, containers: [{name: c, "
            "uid: 0}]}]",
            "uid must be a positive"},
           {"access: [{user: x, verbs: [], resources: ['*'], namespaces: ['*']}]",
            "verbs must not be empty"},
           {"access: [{verbs: [get], resources: ['*'], namespaces: ['*']}]", "needs a user"},
       }) {
    absl::StatusOr<Cluster> c = ParseCluster(k.yaml);
    ASSERT_FALSE(c.ok()) << k.yaml;
    EXPECT_THAT(c.status().message(), HasSubstr(k.error)) << k.yaml;
  }
}

TEST(TokenFile, ParsesKubeApiserverFormat) {
  absl::StatusOr<std::vector<TokenUser>> t =
      ParseTokenFile("# comment\n\nabc,alice,1\ndef,bob,2,\"dev,ops\"\n");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[1].user, "bob");
  EXPECT_THAT((*t)[1].groups, ::testing::ElementsAre("dev", "ops"));
}

TEST(TokenFile, RejectsBadLinesWithoutEchoingTokens) {
  EXPECT_THAT(ParseTokenFile("").status().message(), HasSubstr("no tokens"));
  absl::Status s = ParseTokenFile("s3cret-token,alice\n").status();
  EXPECT_THAT(s.message(), HasSubstr("line 1"));
  EXPECT_THAT(s.message(), ::testing::Not(HasSubstr("s3cret")));
  EXPECT_THAT(ParseTokenFile("a,b,1\na,c,2\n").status().message(), HasSubstr("duplicate token"));
  EXPECT_THAT(ParseTokenFile("a,b,1,\"x\n").status().message(), HasSubstr("unbalanced quote"));
  EXPECT_THAT(ParseTokenFile(",b,1\n").status().message(), HasSubstr("line 1"));
}

// A kubesim API server on a real TLS socket with the test PKI.
class KubesimTest : public ::testing::Test {
 protected:
  void Start(ApiServerOptions options = {}, size_t frame_limit = 1024 * 1024) {
    dir_ = testing::MakeTempDir("kubesim");
    absl::StatusOr<testing::TestPki> pki = testing::MakeTestPki(dir_);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *pki;
    absl::StatusOr<Cluster> cluster = ParseCluster(kClusterYaml);
    ASSERT_TRUE(cluster.ok());
    options.state_dir = dir_ + "/state";
    api_ = std::make_shared<ApiServer>(*cluster,
                                       std::vector<TokenUser>{{"admin-token", "admin", "1", {}},
                                                              {"dev-token", "dev", "2", {}},
                                                              {"reader-token", "reader", "3", {}}},
                                       options);
    ASSERT_TRUE(api_->PrepareContainers().ok());
    http::ServerOptions so;
    so.cert_file = pki_.server_cert;
    so.key_file = pki_.server_key;
    so.client_ca_file = pki_.ca_cert;
    so.websocket_message_limit_bytes = frame_limit;
    auto server = http::Server::Start(
        io_, so, [this](const http::Request& r, const http::RequestContext& c, bool u) {
          return api_->Route(r, c, u);
        });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    for (int i = 0; i < 2; ++i) {
      threads_.emplace_back([this] { io_.run(); });
    }
  }

  void TearDown() override {
    if (api_) {
      api_->processes()->KillAll(SIGKILL);
    }
    if (server_) {
      server_->Stop();
    }
    // Let reaping finish, and every exec session see its client gone, before stopping the loop:
    // a session and its connection hold each other until the WebSocket closes, so one still
    // open when the loop stops is never freed (LeakSanitizer, tools/sanitizers.sh address).
    for (int i = 0;
         i < 100 && api_ &&
         (api_->processes()->live_processes() > 0 || api_->processes()->live_sessions.load() > 0);
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (api_) {
      EXPECT_EQ(api_->processes()->live_sessions.load(), 0u)
          << "an exec session was still open 2 s after its test";
    }
    io_.stop();
    for (auto& t : threads_) {
      t.join();
    }
  }

  http::ClientOptions Client(const std::string& token = "admin-token") {
    http::ClientOptions o;
    o.port = server_->port();
    o.tls = true;
    o.ca_file = pki_.ca_cert;
    o.server_name = "localhost";
    if (!token.empty()) {
      o.headers.emplace_back("Authorization", "Bearer " + token);
    }
    return o;
  }

  http::ClientResponse Get(const std::string& target, const std::string& token = "admin-token",
                           const std::string& accept = "") {
    http::ClientOptions o = Client(token);
    if (!accept.empty()) {
      o.headers.emplace_back("Accept", accept);
    }
    absl::StatusOr<http::ClientResponse> r = http::Fetch(o, "GET", target);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : http::ClientResponse{};
  }

  struct ExecResult {
    std::string protocol;
    std::string out;
    std::string err;
    std::string status;
    bool first_frame_empty = false;
    int exit_code = -1;
  };

  // Runs an exec to completion, feeding `stdin_data` then a v5 close (or nothing).
  ExecResult Exec(const std::vector<std::string>& argv, const std::string& extra = "",
                  std::vector<std::string> protocols = {"v5.channel.k8s.io", "v4.channel.k8s.io"},
                  const std::string& stdin_data = "", const std::string& container = "") {
    k8s::ExecOptions o;
    o.command = argv;
    o.stdout = true;
    o.stderr = true;
    o.stdin = !stdin_data.empty();
    o.container = container;
    std::string target =
        "/api/v1/namespaces/demo/pods/web-1/exec?" + k8s::EncodeExecQuery(o) + extra;
    ExecResult r;
    auto ws = http::WebSocketClient::Connect(Client(), target, protocols);
    EXPECT_TRUE(ws.ok()) << ws.status();
    if (!ws.ok()) {
      return r;
    }
    r.protocol = (*ws)->subprotocol();
    if (!stdin_data.empty()) {
      EXPECT_TRUE((*ws)->Write(k8s::EncodeFrame(k8s::kStdin, stdin_data)).ok());
      EXPECT_TRUE((*ws)->Write(std::string("\xff\x00", 2)).ok());
    }
    bool first = true;
    while (true) {
      absl::StatusOr<http::Message> m = (*ws)->Read(absl::Seconds(10));
      if (!m.ok()) {
        break;
      }
      if (first) {
        r.first_frame_empty = m->data.size() == 1;
        first = false;
        if (r.first_frame_empty) {
          continue;
        }
      }
      if (m->data.empty()) {
        continue;
      }
      std::string payload = m->data.substr(1);
      switch (static_cast<uint8_t>(m->data[0])) {
        case k8s::kStdout:
          r.out += payload;
          break;
        case k8s::kStderr:
          r.err += payload;
          break;
        case k8s::kStatus:
          r.status += payload;
          break;
      }
    }
    if (!r.status.empty()) {
      absl::StatusOr<int> code = k8s::ParseExitStatus(r.status);
      if (code.ok()) {
        r.exit_code = *code;
      }
    }
    return r;
  }

  std::string dir_;
  testing::TestPki pki_;
  boost::asio::io_context io_;
  std::shared_ptr<ApiServer> api_;
  std::unique_ptr<http::Server> server_;
  std::vector<std::thread> threads_;
};

TEST_F(KubesimTest, DiscoveryAndVersion) {
  Start();
  http::ClientResponse r = Get("/version", "");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["major"], "1");
  r = Get("/api");
  EXPECT_EQ(json::parse(r.body)["versions"][0], "v1");
  r = Get("/api/v1");
  EXPECT_EQ(json::parse(r.body)["kind"], "APIResourceList");
  EXPECT_THAT(r.body, HasSubstr("pods/exec"));
  r = Get("/apis");
  EXPECT_EQ(json::parse(r.body)["kind"], "APIGroupList");
}

TEST_F(KubesimTest, AuthErrorsAreStatusObjects) {
  Start();
  http::ClientResponse r = Get("/api/v1/namespaces/demo/pods", "");
  EXPECT_EQ(r.status, 401);
  json s = json::parse(r.body);
  EXPECT_EQ(s["kind"], "Status");
  EXPECT_EQ(s["reason"], "Unauthorized");
  EXPECT_EQ(s["code"], 401);
  EXPECT_EQ(Get("/api/v1/namespaces/demo/pods", "wrong-token").status, 401);
  EXPECT_EQ(Get("/api/v1/namespaces/demo/pods", "admin-tokenX").status, 401);
  r = Get("/api/v1/namespaces/secret/pods", "dev-token");
  EXPECT_EQ(r.status, 403);
  s = json::parse(r.body);
  EXPECT_EQ(s["reason"], "Forbidden");
  EXPECT_EQ(s["message"],
            "pods is forbidden: User \"dev\" cannot list resource \"pods\" in API group \"\" in "
            "the namespace \"secret\"");
  EXPECT_EQ(Get("/api/v1/pods", "dev-token").status, 403);
  EXPECT_EQ(Get("/api/v1/namespaces/demo/pods", "dev-token").status, 200);
  EXPECT_EQ(api_->unauthorized.load(), 3u);
}

TEST_F(KubesimTest, ClientCertificateAuthenticates) {
  Start();
  http::ClientOptions o = Client("");
  o.client_cert_file = pki_.client_cert;  // CN=podgate-client: authenticated, no access rules
  o.client_key_file = pki_.client_key;
  absl::StatusOr<http::ClientResponse> r = http::Fetch(o, "GET", "/api/v1/namespaces/demo/pods");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 403);
  EXPECT_THAT(r->body, HasSubstr("User \\\"podgate-client\\\""));
}

TEST_F(KubesimTest, GetsAndListsPods) {
  Start();
  http::ClientResponse r = Get("/api/v1/namespaces/demo/pods/web-1");
  ASSERT_EQ(r.status, 200);
  json pod = json::parse(r.body);
  EXPECT_EQ(pod["kind"], "Pod");
  EXPECT_EQ(pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"], "app");
  EXPECT_EQ(pod["status"]["phase"], "Running");
  EXPECT_EQ(pod["spec"]["containers"][1]["name"], "sidecar");
  EXPECT_EQ(pod["status"]["containerStatuses"][0]["ready"], true);
  EXPECT_EQ(pod["spec"]["containers"][0]["securityContext"]["runAsUser"], 65534);

  r = Get("/api/v1/namespaces/demo/pods?labelSelector=app%3Dweb");
  EXPECT_EQ(json::parse(r.body)["items"].size(), 1u);
  r = Get("/api/v1/namespaces/demo/pods?labelSelector=app!%3Dweb");
  EXPECT_EQ(json::parse(r.body)["items"].size(), 2u);
  r = Get("/api/v1/namespaces/demo/pods?fieldSelector=metadata.name%3Drooty");
  ASSERT_EQ(json::parse(r.body)["items"].size(), 1u);
  EXPECT_EQ(json::parse(r.body)["items"][0]["metadata"]["name"], "rooty");
  r = Get("/api/v1/pods");
  EXPECT_EQ(json::parse(r.body)["items"].size(), 4u);

  r = Get("/api/v1/namespaces/demo/pods?fieldSelector=spec.bogus%3Dx");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("field label not supported: spec.bogus"));
  r = Get("/api/v1/namespaces/demo/pods?labelSelector=app+in+(a,b)");
  EXPECT_EQ(r.status, 400);
  r = Get("/api/v1/namespaces/demo/pods?labelSelector=%zz");
  EXPECT_EQ(r.status, 400);

  r = Get("/api/v1/namespaces/demo/pods/nope");
  EXPECT_EQ(r.status, 404);
  json s = json::parse(r.body);
  EXPECT_EQ(s["message"], "pods \"nope\" not found");
  EXPECT_EQ(s["details"]["kind"], "pods");
  r = Get("/api/v1/namespaces/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(Get("/api/v1/widgets").status, 404);
}

TEST_F(KubesimTest, ServesTablesForKubectl) {
  Start();
  http::ClientResponse r = Get("/api/v1/namespaces/demo/pods", "admin-token",
                               "application/json;as=Table;v=v1;g=meta.k8s.io,application/json");
  json t = json::parse(r.body);
  EXPECT_EQ(t["kind"], "Table");
  ASSERT_EQ(t["rows"].size(), 3u);
  EXPECT_EQ(t["rows"][0]["cells"][0], "web-1");
  EXPECT_EQ(t["rows"][0]["cells"][1], "2/2");
  EXPECT_EQ(t["rows"][2]["cells"][2], "Pending");
}

TEST_F(KubesimTest, ExecV5KeepsStreamsApartAndReportsExitCode) {
  Start();
  ExecResult r = Exec({"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.protocol, "v5.channel.k8s.io");
  EXPECT_TRUE(r.first_frame_empty);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_THAT(r.status, HasSubstr("NonZeroExitCode"));

  r = Exec({"echo", "hello"});
  EXPECT_EQ(r.out, "hello\n");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.status, HasSubstr("Success"));

  r = Exec({"no-such-binary"});
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_THAT(r.err, HasSubstr("executable file not found"));
}

TEST_F(KubesimTest, ExecRunsArgvWithoutAShell) {
  Start();
  ExecResult r = Exec({"echo", "a;b", "$(id)", "`x`"});
  EXPECT_EQ(r.out, "a;b $(id) `x`\n");
}

TEST_F(KubesimTest, ExecHasContainerEnvironmentIdentityAndDirectory) {
  Start();
  ExecResult r = Exec({"sh", "-c", "echo $GREETING; pwd; touch f && echo wrote"});
  EXPECT_EQ(r.out, "hello\n" + dir_ + "/state/containers/demo/web-1/app\nwrote\n") << r.err;
  if (CanSwitchUser()) {
    EXPECT_EQ(Exec({"id", "-u"}).out, "65534\n");
  } else {
    EXPECT_EQ(Exec({"id", "-u"}).out, std::to_string(geteuid()) + "\n");
  }
  // The other container has its own directory.
  r = Exec({"pwd"}, "", {"v5.channel.k8s.io"}, "", "sidecar");
  EXPECT_EQ(r.out, dir_ + "/state/containers/demo/web-1/sidecar\n");
}

TEST_F(KubesimTest, RootContainerRunsAsUidZeroInAUserNamespace) {
  Start();
  k8s::ExecOptions o;
  o.command = {"sh", "-c", "id -u; cat /proc/self/uid_map"};
  o.stdout = true;
  auto ws = http::WebSocketClient::Connect(
      Client(), "/api/v1/namespaces/demo/pods/rooty/exec?" + k8s::EncodeExecQuery(o),
      {"v4.channel.k8s.io"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  EXPECT_EQ((*ws)->subprotocol(), "v4.channel.k8s.io");
  std::string out;
  while (true) {
    absl::StatusOr<http::Message> m = (*ws)->Read(absl::Seconds(10));
    if (!m.ok()) {
      break;
    }
    if (m->data.size() > 1 && m->data[0] == k8s::kStdout) {
      out += m->data.substr(1);
    }
  }
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << out;
  EXPECT_EQ(lines[0], "0");
  // A one-uid mapping: the process is root only inside its own user namespace.
  std::vector<std::string> map = absl::StrSplit(lines[1], ' ', absl::SkipEmpty());
  ASSERT_EQ(map.size(), 3u);
  EXPECT_EQ(map[0], "0");
  EXPECT_EQ(map[1], std::to_string(geteuid()));
  EXPECT_EQ(map[2], "1");
}

TEST_F(KubesimTest, StdinThenV5CloseHalfClosesStdin) {
  Start();
  ExecResult r = Exec({"cat"}, "", {"v5.channel.k8s.io"}, "line one\nline two\n");
  EXPECT_EQ(r.out, "line one\nline two\n");
  EXPECT_EQ(r.exit_code, 0);
}

TEST_F(KubesimTest, ProtocolNegotiation) {
  ApiServerOptions v4_only;
  v4_only.protocols = {k8s::ExecProtocol::kV4};
  Start(v4_only);
  ExecResult r = Exec({"sh", "-c", "exit 2"});
  EXPECT_EQ(r.protocol, "v4.channel.k8s.io");
  EXPECT_EQ(r.exit_code, 2);
  http::ClientResponse refusal;
  k8s::ExecOptions o;
  o.command = {"true"};
  o.stdout = true;
  auto ws = http::WebSocketClient::Connect(
      Client(), "/api/v1/namespaces/demo/pods/web-1/exec?" + k8s::EncodeExecQuery(o),
      {"v5.channel.k8s.io"}, &refusal);
  ASSERT_FALSE(ws.ok());
  EXPECT_EQ(refusal.status, 400);
  EXPECT_THAT(refusal.body, HasSubstr("unable to negotiate protocol"));
}

TEST_F(KubesimTest, LegacyProtocolHasNoExitCode) {
  Start();
  ExecResult r = Exec({"sh", "-c", "echo x; exit 4"}, "", {"channel.k8s.io"});
  EXPECT_EQ(r.protocol, "channel.k8s.io");
  EXPECT_EQ(r.out, "x\n");
  EXPECT_EQ(r.exit_code, -1);  // no JSON status on the legacy protocol
  EXPECT_THAT(r.status, HasSubstr("exit code 4"));
  r = Exec({"true"}, "", {"channel.k8s.io"});
  EXPECT_EQ(r.status, "");
}

TEST_F(KubesimTest, ExecErrorsAreTheApiServers) {
  Start();
  struct Case {
    std::string target;
    std::string token;
    int code;
    std::string message;
  };
  std::string base = "/api/v1/namespaces/demo/pods/";
  for (const Case& k : std::vector<Case>{
           {base + "web-1/exec?command=true&stdout=1", "bad", 401, "Unauthorized"},
           {"/api/v1/namespaces/secret/pods/vault/exec?command=true&stdout=1", "dev-token", 403,
            "cannot create resource \\\"pods/exec\\\""},
           {base + "web-1/exec?command=true&stdout=1", "reader-token", 403, "forbidden"},
           {base + "nope/exec?command=true&stdout=1", "admin-token", 404,
            "pods \\\"nope\\\" not found"},
           {base + "web-1/exec?command=true&stdout=1&container=nope", "admin-token", 400,
            "container nope is not valid for pod web-1"},
           {base + "pending-1/exec?command=true&stdout=1", "admin-token", 400, "is not running"},
           {base + "web-1/exec?command=true", "admin-token", 400,
            "you must specify at least 1 of stdin, stdout, stderr"},
           {base + "web-1/exec?stdout=1", "admin-token", 400, "at least one command"},
           {base + "web-1/exec?command=true&stdout=maybe", "admin-token", 400, "invalid boolean"},
           {base + "web-1/exec?command=%zz&stdout=1", "admin-token", 400, "percent escape"},
       }) {
    http::ClientResponse refusal;
    auto ws =
        http::WebSocketClient::Connect(Client(k.token), k.target, {"v5.channel.k8s.io"}, &refusal);
    ASSERT_FALSE(ws.ok()) << k.target;
    EXPECT_EQ(refusal.status, k.code) << k.target;
    EXPECT_THAT(refusal.body, HasSubstr(k.message)) << k.target;
    EXPECT_THAT(refusal.body, HasSubstr("\"kind\":\"Status\"")) << k.target;
  }
  // A plain GET without the upgrade.
  http::ClientResponse r = Get(base + "web-1/exec?command=true&stdout=1");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("Upgrade request required"));
}

TEST_F(KubesimTest, OversizedFrameClosesTheStream) {
  Start({}, 4096);
  k8s::ExecOptions o;
  o.command = {"cat"};
  o.stdin = true;
  o.stdout = true;
  auto ws = http::WebSocketClient::Connect(
      Client(), "/api/v1/namespaces/demo/pods/web-1/exec?" + k8s::EncodeExecQuery(o),
      {"v5.channel.k8s.io"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE((*ws)->Read(absl::Seconds(5)).ok());  // the initial empty frame
  ASSERT_TRUE((*ws)->Write(k8s::EncodeFrame(k8s::kStdin, std::string(10000, 'a'))).ok());
  // The server fails the connection (close 1009); `cat` gets EOF on stdin and exits.
  absl::StatusOr<http::Message> m = (*ws)->Read(absl::Seconds(5));
  EXPECT_FALSE(m.ok());
  for (int i = 0; i < 100 && api_->processes()->active_execs() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(api_->processes()->active_execs(), 0u);
}

TEST_F(KubesimTest, MalformedFramesAreSkippedAndCounted) {
  Start();
  k8s::ExecOptions o;
  o.command = {"cat"};
  o.stdin = true;
  o.stdout = true;
  auto ws = http::WebSocketClient::Connect(
      Client(), "/api/v1/namespaces/demo/pods/web-1/exec?" + k8s::EncodeExecQuery(o),
      {"v4.channel.k8s.io"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE((*ws)->Read(absl::Seconds(5)).ok());
  ASSERT_TRUE((*ws)->Write(std::string("\x07zz", 3)).ok());    // no such channel
  ASSERT_TRUE((*ws)->Write("").ok());                          // no channel at all
  ASSERT_TRUE((*ws)->Write(std::string("\xff\x00", 2)).ok());  // v5 close, but this is v4
  ASSERT_TRUE((*ws)->Write(k8s::EncodeFrame(k8s::kStdin, "still here\n")).ok());
  absl::StatusOr<http::Message> m = (*ws)->Read(absl::Seconds(5));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->data, "\x01still here\n");
  EXPECT_EQ(api_->processes()->ignored_frames.load(), 3u);
}

TEST_F(KubesimTest, ClientVanishingLeavesNonTtyProcessRunning) {
  Start();
  k8s::ExecOptions o;
  o.command = {"sh", "-c", "echo started; sleep 1; echo finished > marker"};
  o.stdout = true;
  auto ws = http::WebSocketClient::Connect(
      Client(), "/api/v1/namespaces/demo/pods/web-1/exec?" + k8s::EncodeExecQuery(o),
      {"v5.channel.k8s.io"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE((*ws)->Read(absl::Seconds(5)).ok());
  absl::StatusOr<http::Message> m = (*ws)->Read(absl::Seconds(5));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->data, std::string("\x01started\n"));
  (*ws)->Abort();
  std::string marker = dir_ + "/state/containers/demo/web-1/app/marker";
  for (int i = 0; i < 100 && access(marker.c_str(), F_OK) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(access(marker.c_str(), F_OK), 0) << "the process should outlive its client";
  for (int i = 0; i < 100 && api_->processes()->active_execs() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(api_->processes()->active_execs(), 0u);
  EXPECT_EQ(api_->processes()->client_gone.load(), 1u);
}

TEST_F(KubesimTest, CapsConcurrentExecs) {
  ApiServerOptions o;
  o.max_execs = 1;
  Start(o);
  k8s::ExecOptions eo;
  eo.command = {"sleep", "2"};
  eo.stdout = true;
  std::string target = "/api/v1/namespaces/demo/pods/web-1/exec?" + k8s::EncodeExecQuery(eo);
  auto first = http::WebSocketClient::Connect(Client(), target, {"v5.channel.k8s.io"});
  ASSERT_TRUE(first.ok()) << first.status();
  http::ClientResponse refusal;
  auto second = http::WebSocketClient::Connect(Client(), target, {"v5.channel.k8s.io"}, &refusal);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(refusal.status, 429);
  EXPECT_THAT(refusal.body, HasSubstr("TooManyRequests"));
}

TEST_F(KubesimTest, SlowClientStopsTheChildAndLosesNothing) {
  Start();
  k8s::ExecOptions o;
  o.command = {"sh", "-c", "head -c 40000000 /dev/zero; echo done >&2"};
  o.stdout = true;
  o.stderr = true;
  auto ws = http::WebSocketClient::Connect(
      Client(), "/api/v1/namespaces/demo/pods/web-1/exec?" + k8s::EncodeExecQuery(o),
      {"v5.channel.k8s.io"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  // Unthrottled, `head` writes 40 MB in milliseconds. With the client not reading, kubesim
  // stops reading the pipe at its watermark, so the process is still blocked a second later.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(api_->processes()->live_processes(), 1u);
  size_t out = 0;
  std::string err;
  std::string status;
  while (true) {
    absl::StatusOr<http::Message> m = (*ws)->Read(absl::Seconds(10));
    if (!m.ok()) {
      break;
    }
    if (m->data.size() > 1 && m->data[0] == k8s::kStdout) {
      out += m->data.size() - 1;
    } else if (m->data.size() > 1 && m->data[0] == k8s::kStderr) {
      err += m->data.substr(1);
    } else if (m->data.size() > 1 && m->data[0] == k8s::kStatus) {
      status += m->data.substr(1);
    }
  }
  EXPECT_EQ(out, 40000000u);
  EXPECT_EQ(err, "done\n");
  EXPECT_EQ(*k8s::ParseExitStatus(status), 0);
}

TEST_F(KubesimTest, ExportsMetrics) {
  Start();
  Exec({"true"});
  Get("/api/v1/pods", "nope");
  http::ClientResponse r = Get("/metrics", "");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.body, HasSubstr("podgate_kubesim_execs_started_total 1\n"));
  EXPECT_THAT(r.body, HasSubstr("podgate_kubesim_unauthorized_total 1\n"));
  EXPECT_THAT(r.body, HasSubstr("# TYPE podgate_kubesim_execs_active gauge"));
}

size_t CountOpenFds() {
  size_t n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (readdir(d) != nullptr) {
    ++n;
  }
  closedir(d);
  return n;
}

TEST_F(KubesimTest, NoFdLeaksAndNoZombies) {
  Start();
  Exec({"true"});  // warm up lazily created descriptors
  size_t before = CountOpenFds();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Exec({"sh", "-c", "ls /proc/self/fd | wc -l"}).out, "4\n")
        << "the child sees only 0, 1, 2 and the fd of ls itself";
  }
  for (int i = 0; i < 50 && CountOpenFds() > before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Connections of earlier execs may still be closing when `before` is taken, so a leak shows
  // as more descriptors than before (5 execs leak at least 5).
  EXPECT_LE(CountOpenFds(), before);
  EXPECT_EQ(api_->processes()->live_processes(), 0u);
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1) << "no child left to reap";
}

// A shell starts a job in the background with SIGINT and SIGQUIT ignored, and an ignored signal
// survives exec. A container runtime starts the command with every signal at its default action,
// and so must kubesim, whatever its own process ignores: else Ctrl+C on a pty interrupts nothing.
// Signal 32 too (glibc's own, which glibc refuses to reset): CI's runner had it ignored.
TEST_F(KubesimTest, ProcessesStartWithEverySignalAtItsDefaultAction) {
  Start();
  struct sigaction ignore = {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction old_int = {};
  struct sigaction old_quit = {};
  ASSERT_EQ(sigaction(SIGINT, &ignore, &old_int), 0);
  ASSERT_EQ(sigaction(SIGQUIT, &ignore, &old_quit), 0);
  ASSERT_EQ(SetKernelSignalAction(32, SIG_IGN), 0) << strerror(errno);
  ExecResult r = Exec({"grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"});
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGQUIT, &old_quit, nullptr);
  SetKernelSignalAction(32, SIG_DFL);
  EXPECT_EQ(r.out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n") << r.err;
}

TEST_F(KubesimTest, TtyMergesStderrResizesAndInterrupts) {
  Start();
  k8s::ExecOptions o;
  o.command = {"sh", "-c", "read go; echo err >&2; stty size; cat; echo after-cat"};
  // Ctrl+C is sent once cat runs: the line discipline echoes "ping" as it is typed, and cat
  // prints it again once it has read it. (A Ctrl+C sent while stty was still ending reached only
  // the shell, which catches SIGINT while it waits for a command, as dash -c does, and went on.)
  o.stdin = true;
  o.stdout = true;
  o.tty = true;
  auto ws = http::WebSocketClient::Connect(
      Client(), "/api/v1/namespaces/demo/pods/web-1/exec?" + k8s::EncodeExecQuery(o),
      {"v5.channel.k8s.io"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE((*ws)->Write(k8s::EncodeFrame(k8s::kResize, R"({"Width":120,"Height":40})")).ok());
  ASSERT_TRUE((*ws)->Write(k8s::EncodeFrame(k8s::kStdin, "go\n")).ok());
  std::string out;
  std::string status;
  bool pinged = false;
  bool interrupted = false;
  while (true) {
    absl::StatusOr<http::Message> m = (*ws)->Read(absl::Seconds(10));
    if (!m.ok()) {
      break;
    }
    if (m->data.size() > 1 && m->data[0] == k8s::kStdout) {
      out += m->data.substr(1);
    } else if (m->data.size() > 1 && m->data[0] == k8s::kStatus) {
      status += m->data.substr(1);
    } else if (m->data.size() > 1 && m->data[0] == k8s::kStderr) {
      ADD_FAILURE() << "stderr must be merged into stdout with a tty";
    }
    if (!pinged && out.find("40 120") != std::string::npos) {
      pinged = true;
      ASSERT_TRUE((*ws)->Write(k8s::EncodeFrame(k8s::kStdin, "ping\n")).ok());
    }
    if (!interrupted && CountOf(out, "ping\r\n") == 2) {
      // Ctrl+C through the line discipline: SIGINT to the foreground process group.
      interrupted = true;
      ASSERT_TRUE((*ws)->Write(k8s::EncodeFrame(k8s::kStdin, "\x03")).ok());
    }
  }
  EXPECT_THAT(out, HasSubstr("err\r\n"));
  EXPECT_THAT(out, HasSubstr("40 120"));
  EXPECT_TRUE(interrupted);
  EXPECT_THAT(out, ::testing::Not(HasSubstr("after-cat")));
  EXPECT_EQ(*k8s::ParseExitStatus(status), 130);
}

// The soak stall of docs/benchmarks.md, made deterministic. asio does not take a socket it
// opened out of epoll when it closes it (the kernel does once the last copy of it closes), so
// while another copy lives — a child that another thread forked holds one until it closes its
// inherited descriptors; here a dup — epoll still reports that socket, naming the reactor state
// asio has since handed to the next descriptor it registered. Here every state the exec's
// descriptors get (its socket, pidfd and pipes) is such a state, and each stale socket is made
// readable while the launch-wrapper-like process waits for its stdin. The pidfd's wait wakes
// though the process runs: kubesim must wait again, not block the exec's strand in waitpid (it
// did: the process then never got its stdin, and the exec stalled until its client gave up).
TEST_F(KubesimTest, ASpuriousExitWakeupNeitherEndsNorStallsTheExec) {
  Start();
  namespace ip = boost::asio::ip;
  constexpr int kStale = 32;
  ip::tcp::acceptor acceptor(io_, ip::tcp::endpoint(ip::address_v4::loopback(), 0));
  std::vector<ip::tcp::socket> peers;
  std::vector<int> copies;
  {
    std::vector<ip::tcp::socket> stale;
    for (int i = 0; i < kStale; ++i) {
      stale.emplace_back(io_);
      stale.back().connect(acceptor.local_endpoint());
      peers.push_back(acceptor.accept());
      copies.push_back(dup(stale.back().native_handle()));
    }
  }  // closed, but still in epoll: their reactor states go to the exec's descriptors

  k8s::ExecOptions o;
  o.command = {"sh", "-c", "read go; echo \"got $go\""};
  o.stdin = true;
  o.stdout = true;
  auto ws = http::WebSocketClient::Connect(
      Client(), "/api/v1/namespaces/demo/pods/web-1/exec?" + k8s::EncodeExecQuery(o),
      {"v5.channel.k8s.io"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE((*ws)->Read(absl::Seconds(5)).ok());  // the empty first frame: the process runs
  for (ip::tcp::socket& peer : peers) {
    boost::asio::write(peer, boost::asio::buffer("x", 1));
  }
  for (int i = 0; i < 100 && api_->processes()->spurious_exit_wakeups.load() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GE(api_->processes()->spurious_exit_wakeups.load(), 1u)
      << "no wake-up reached the pidfd's wait: the test no longer reproduces the stall";
  EXPECT_EQ(api_->processes()->live_processes(), 1u) << "a wake-up was taken for an exit";
  ASSERT_TRUE((*ws)->Write(k8s::EncodeFrame(k8s::kStdin, "go\n")).ok());
  std::string out;
  std::string status;
  while (true) {
    absl::StatusOr<http::Message> m = (*ws)->Read(absl::Seconds(5));
    if (!m.ok()) {
      break;
    }
    if (m->data.size() > 1 && m->data[0] == k8s::kStdout) {
      out += m->data.substr(1);
    } else if (m->data.size() > 1 && m->data[0] == k8s::kStatus) {
      status += m->data.substr(1);
    }
  }
  EXPECT_EQ(out, "got go\n");
  absl::StatusOr<int> code = k8s::ParseExitStatus(status);
  ASSERT_TRUE(code.ok()) << code.status() << " (status \"" << status << "\")";
  EXPECT_EQ(*code, 0);
  for (int fd : copies) {
    close(fd);
  }
}

}  // namespace
}  // namespace podgate::kubesim
