// kubesim against real Kubernetes clients: kubectl 1.32 (WebSocket v5) and the official Python
// client (v4), through the kubeconfig kubesim writes. What works here works against a cluster.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "support/subprocess.h"
#include "support/test_pki.h"

namespace podgate {
namespace {

using ::testing::HasSubstr;

constexpr char kCluster[] = R"(
namespaces:
  - name: demo
  - name: secret
pods:
  - name: web-1
    namespace: demo
    labels: {app: web}
    annotations: {kubectl.kubernetes.io/default-container: app}
    containers:
      - name: app
      - name: sidecar
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
rbac:
  clusterRoles:
    - name: impersonate-alice
      rules:
        - {apiGroups: [""], resources: [users], verbs: [impersonate], resourceNames: [alice]}
        - {apiGroups: [""], resources: [groups], verbs: [impersonate], resourceNames: [devs]}
    - name: pod-reader
      rules:
        - {apiGroups: [""], resources: [pods], verbs: [get, list]}
  roles:
    - name: exec-pods
      namespace: demo
      rules:
        - {apiGroups: [""], resources: [pods, pods/exec], verbs: [get, list, create]}
  clusterRoleBindings:
    - name: impersonator
      roleRef: {kind: ClusterRole, name: impersonate-alice}
      subjects: [{kind: User, name: impersonator}]
  roleBindings:
    - name: devs-exec
      namespace: demo
      roleRef: {kind: Role, name: exec-pods}
      subjects: [{kind: Group, name: devs}]
    - name: alice-reads-secret
      namespace: secret
      roleRef: {kind: ClusterRole, name: pod-reader}
      subjects: [{kind: User, name: alice}]
)";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// kubectl 1.31+ (WebSocket exec); tools/install-k8s-tools.sh installs 1.32.
std::string Kubectl() {
  if (const char* env = std::getenv("PODGATE_KUBECTL"); env != nullptr) {
    return env;
  }
  return access("/usr/local/bin/kubectl", X_OK) == 0 ? "/usr/local/bin/kubectl" : "kubectl";
}

struct Result {
  int code = -1;
  std::string out;
  std::string err;
};

class ConformanceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::MakeTempDir("kubesim-conformance"));
    WriteFile(*dir_ + "/cluster.yaml", kCluster);
    WriteFile(*dir_ + "/tokens.csv",
              "admin-token,admin,1\ndev-token,dev,2\nimp-token,impersonator,3\n");
    auto p = testing::Subprocess::Start(
        KUBESIM_BIN, {"--cluster", *dir_ + "/cluster.yaml", "--token_file", *dir_ + "/tokens.csv",
                      "--state_dir", *dir_ + "/state", "--port", "0", "--client_cert_user", "dev",
                      "--audit_log", *dir_ + "/audit.log"});
    ASSERT_TRUE(p.ok()) << p.status();
    kubesim_ = p->release();
    ASSERT_TRUE(kubesim_->WaitForLine("\"serving\"", absl::Seconds(20)).ok());
    kubeconfig_ = new std::string(*dir_ + "/state/kubeconfig");
    // A second kubeconfig for the restricted user.
    std::string dev = ReadFile(*kubeconfig_);
    size_t at = dev.find("token: admin-token");
    ASSERT_NE(at, std::string::npos);
    dev.replace(at, 18, "token: dev-token");
    WriteFile(*dir_ + "/dev.kubeconfig", dev);
    std::string imp = ReadFile(*kubeconfig_);
    imp.replace(imp.find("token: admin-token"), 18, "token: imp-token");
    WriteFile(*dir_ + "/imp.kubeconfig", imp);
    Result v = Run(Kubectl() + " version --client -o json");
    ASSERT_EQ(v.code, 0) << "kubectl not found: run tools/install-k8s-tools.sh";
    int minor = std::atoi(
        nlohmann::json::parse(v.out)["clientVersion"]["minor"].get<std::string>().c_str());
    ASSERT_GE(minor, 31) << "kubectl is too old for WebSocket exec; run "
                            "tools/install-k8s-tools.sh or set PODGATE_KUBECTL";
  }

  static void TearDownTestSuite() {
    delete kubesim_;
    kubesim_ = nullptr;
  }

  // Runs `command` under sh with stdout and stderr captured apart.
  //
  // kubectl 1.32's WebSocket executor (client-go tools/remotecommand/websocket.go) starts
  // reading before it has created its streams, and drops what arrives for a stream it has not
  // created yet ("Unknown stream id 1, discarding message"). A real API server's first bytes
  // come after it has reached the kubelet, which hides that; kubesim answers at once, so on a
  // loaded machine kubectl can lose them. Such a run says nothing about kubesim and is run
  // again (every command here can be); any other outcome counts.
  static Result Run(const std::string& command) {
    Result r;
    for (int attempt = 0; attempt < 5; ++attempt) {
      std::string out = *dir_ + "/out";
      std::string err = *dir_ + "/err";
      std::string full = absl::StrCat("HOME=", *dir_, " ", command, " >", out, " 2>", err);
      int status = std::system(full.c_str());
      r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      r.out = ReadFile(out);
      r.err = ReadFile(err);
      if (r.err.find("Unknown stream id") == std::string::npos) {
        break;
      }
      std::cerr << "kubectl dropped output before creating its streams; running again: " << command
                << "\n";
    }
    return r;
  }

  static std::string K(const std::string& args, const std::string& kubeconfig = "") {
    return absl::StrCat(Kubectl(), " --kubeconfig ", kubeconfig.empty() ? *kubeconfig_ : kubeconfig,
                        " ", args);
  }

  static std::string* dir_;
  static std::string* kubeconfig_;
  static testing::Subprocess* kubesim_;
};

std::string* ConformanceTest::dir_ = nullptr;
std::string* ConformanceTest::kubeconfig_ = nullptr;
testing::Subprocess* ConformanceTest::kubesim_ = nullptr;

TEST_F(ConformanceTest, KubectlGetPods) {
  Result r = Run(K("get pods -n demo"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("NAME"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("web-1 +2/2 +Running +0"));
  r = Run(K("get pod web-1 -n demo -o jsonpath={.status.phase}"));
  EXPECT_EQ(r.out, "Running");
  r = Run(K("get pods -n demo -l app=web -o name"));
  EXPECT_EQ(r.out, "pod/web-1\n");
  r = Run(K("get pod nope -n demo"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("pods \"nope\" not found"));
}

TEST_F(ConformanceTest, KubectlExecKeepsStreamsApartAndExitsWithTheCode) {
  Result r = Run(K("exec -n demo web-1 -- sh -c 'echo out; echo err >&2; exit 3'"));
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_EQ(r.out, "out\n");
  // kubectl may add its own log lines to stderr under load (e.g. about the closing WebSocket).
  EXPECT_THAT(r.err, HasSubstr("err\n"));
  EXPECT_THAT(r.err, ::testing::Not(HasSubstr("out")));
  r = Run(K("exec -n demo web-1 -- sh -c 'echo fine'"));
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "fine\n");
  r = Run(K("exec -n demo web-1 -- sh -c 'exit 127'"));
  EXPECT_EQ(r.code, 127);
  r = Run(K("exec -n demo web-1 -- no-such-command"));
  EXPECT_EQ(r.code, 127);
  EXPECT_THAT(r.err, HasSubstr("executable file not found"));
}

TEST_F(ConformanceTest, KubectlExecPipesStdin) {
  Result r = Run("printf 'data\\nmore\\n' | " + K("exec -i -n demo web-1 -- cat"));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "data\nmore\n");
  r = Run("echo 5 | " + K("exec -i -n demo web-1 -c sidecar -- sh -c 'read n; exit $n'"));
  EXPECT_EQ(r.code, 5);
}

TEST_F(ConformanceTest, KubectlExecWithTty) {
  // A pty gives kubectl a terminal so that -t is honoured. Python's pty.spawn reads the pty
  // until its last writer has closed it (the kernel hands over what was written before it
  // reports the end) and writes nothing into it when its own stdin ends. `script` is not a
  // faithful harness here: at the end of its stdin it types ^D into kubectl's terminal, and it
  // stops reading 10 ms after its child exits whether or not the pty is drained, which lost
  // kubectl's last line on a loaded machine.
  Result r =
      Run("python3 -c 'import os, pty, sys; "
          "sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))' sh -c \"" +
          K("exec -it -n demo web-1 -- sh -c 'tty; echo err >&2'") + "\" </dev/null");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("/dev/pts/"));
  EXPECT_THAT(r.out, HasSubstr("err"));  // merged into stdout by the pty
}

TEST_F(ConformanceTest, KubectlSeesApiErrors) {
  Result r = Run(K("exec -n demo web-1 -c nope -- true"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("container nope is not valid for pod web-1"));
  r = Run(K("exec -n secret vault -- true", *dir_ + "/dev.kubeconfig"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("forbidden"));
  r = Run(K("get pods -n secret", *dir_ + "/dev.kubeconfig"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("User \"dev\" cannot list resource \"pods\""));
  std::string bad = ReadFile(*kubeconfig_);
  bad.replace(bad.find("token: admin-token"), 18, "token: wrong-token");
  WriteFile(*dir_ + "/bad.kubeconfig", bad);
  r = Run(K("get pods -n demo", *dir_ + "/bad.kubeconfig"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("Unauthorized"));
}

// kubectl --as/--as-group: allowed as the impersonated user, refused with the API server's own
// messages (for the impersonation and for what the impersonated user may not do), and the
// audit log names both the caller and the user.
TEST_F(ConformanceTest, KubectlImpersonates) {
  std::string imp = *dir_ + "/imp.kubeconfig";
  Result r = Run(K("get pods -n demo", imp));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("pods is forbidden: User \"impersonator\" cannot list resource "
                               "\"pods\" in API group \"\" in the namespace \"demo\""));
  r = Run(K("--as alice --as-group devs get pods -n demo", imp));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("web-1"));
  r = Run(K("--as alice --as-group devs exec -n demo web-1 -c app -- echo as-alice", imp));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "as-alice\n");
  // alice alone is not in devs: the caller's groups and the missing header add nothing.
  r = Run(K("--as alice get pods -n demo", imp));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("Error from server (Forbidden): pods is forbidden: User \"alice\" "
                               "cannot list resource \"pods\" in API group \"\" in the "
                               "namespace \"demo\""));
  // alice may read pods in secret but not exec into them.
  r = Run(K("--as alice exec -n secret vault -- true", imp));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("pods \"vault\" is forbidden: User \"alice\" cannot create "
                               "resource \"pods/exec\" in API group \"\" in the namespace "
                               "\"secret\""));
  r = Run(K("--as mallory get pods -n demo", imp));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("Error from server (Forbidden): users \"mallory\" is forbidden: "
                               "User \"impersonator\" cannot impersonate resource \"users\" in "
                               "API group \"\" at the cluster scope"));
  r = Run(K("--as alice --as-group system:masters get pods -n demo", imp));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("groups \"system:masters\" is forbidden: User \"impersonator\" "
                               "cannot impersonate resource \"groups\""));
  r = Run(K("--as alice get pods -n demo", *dir_ + "/dev.kubeconfig"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("User \"dev\" cannot impersonate resource \"users\""));

  // kubectl auth can-i: a SelfSubjectAccessReview, answered for the impersonated user.
  r = Run(K("--as alice --as-group devs auth can-i create pods/exec -n demo", imp));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "yes\n");
  r = Run(K("--as alice --as-group devs auth can-i create pods/exec -n secret", imp));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "no\n");
  r = Run(K("auth can-i impersonate users/alice", imp));
  EXPECT_EQ(r.out, "yes\n") << r.err;
  r = Run(K("auth can-i impersonate users/mallory", imp));
  EXPECT_EQ(r.out, "no\n") << r.err;

  bool found = false;
  std::stringstream log(ReadFile(*dir_ + "/audit.log"));
  for (std::string line; std::getline(log, line);) {
    nlohmann::json e = nlohmann::json::parse(line);
    nlohmann::json ref = e.value("objectRef", nlohmann::json::object());
    if (ref.value("subresource", "") == "exec" && ref.value("name", "") == "web-1" &&
        e.contains("impersonatedUser")) {
      found = true;
      EXPECT_EQ(e["user"]["username"], "impersonator");
      EXPECT_EQ(e["impersonatedUser"]["username"], "alice");
      EXPECT_EQ(e["responseStatus"]["code"], 101);
      EXPECT_THAT(e["requestURI"].get<std::string>(), HasSubstr("command=as-alice"));
    }
    if (ref.value("name", "") == "vault" && ref.value("subresource", "") == "exec") {
      EXPECT_EQ(e["impersonatedUser"]["username"], "alice");
      EXPECT_EQ(e["responseStatus"]["code"], 403);
      EXPECT_EQ(e["annotations"]["authorization.k8s.io/decision"], "forbid");
    }
  }
  EXPECT_TRUE(found) << "no impersonated exec in kubesim's audit log";
}

TEST_F(ConformanceTest, KubectlWithClientCertificate) {
  // The second kubeconfig authenticates with a client certificate (CN=dev), no token.
  std::string cert_config = *kubeconfig_ + "-dev";
  ASSERT_THAT(ReadFile(cert_config), HasSubstr("client-certificate:"));
  ASSERT_THAT(ReadFile(cert_config), ::testing::Not(HasSubstr("token:")));
  Result r = Run(K("exec -n demo web-1 -- id -u", cert_config));
  EXPECT_EQ(r.code, 0) << r.err;
  r = Run(K("get pods -n secret", cert_config));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("User \"dev\" cannot list resource \"pods\""));
}

TEST_F(ConformanceTest, PythonClientReportsReturncode) {
  Result r = Run(absl::StrCat("/usr/bin/python3 ", EXEC_CLIENT_PY, " ", *kubeconfig_,
                              " demo web-1 app -- sh -c 'echo out; echo err >&2; exit 3'"));
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["stdout"], "out\n");
  EXPECT_EQ(j["stderr"], "err\n");
  EXPECT_EQ(j["returncode"], 3);
  r = Run(absl::StrCat("/usr/bin/python3 ", EXEC_CLIENT_PY, " ", *kubeconfig_,
                       " demo web-1 sidecar -- echo hi"));
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["stdout"], "hi\n");
  EXPECT_EQ(j["returncode"], 0);
}

// Start-up errors are clear and fail the process (exit status 2).
TEST(KubesimStartup, RejectsBadConfiguration) {
  std::string dir = testing::MakeTempDir("kubesim-startup");
  WriteFile(dir + "/good.yaml", kCluster);
  WriteFile(dir + "/bad.yaml", "pods: [{name: p, namespace: nowhere, containers: [{name: c}]}]");
  WriteFile(dir + "/tokens.csv", "t,admin,1\n");
  WriteFile(dir + "/bad-tokens.csv", "only-a-token\n");
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& k : std::vector<Case>{
           {{"--state_dir", dir + "/s"}, "--cluster, --token_file and --state_dir are required"},
           {{"--cluster", dir + "/bad.yaml", "--token_file", dir + "/tokens.csv", "--state_dir",
             dir + "/s"},
            "unknown namespace nowhere"},
           {{"--cluster", dir + "/good.yaml", "--token_file", dir + "/bad-tokens.csv",
             "--state_dir", dir + "/s"},
            "token file line 1"},
           {{"--cluster", dir + "/good.yaml", "--token_file", dir + "/tokens.csv", "--state_dir",
             dir + "/s", "--protocols", "v9"},
            "unknown protocol \"v9\""},
           {{"--cluster", dir + "/good.yaml", "--token_file", dir + "/tokens.csv", "--state_dir",
             dir + "/s", "--kubeconfig_user", "nobody"},
            "no token for user \"nobody\""},
           {{"--cluster", dir + "/missing.yaml", "--token_file", dir + "/tokens.csv", "--state_dir",
             dir + "/s"},
            "cannot read cluster file"},
       }) {
    auto p = testing::Subprocess::Start(KUBESIM_BIN, k.args);
    ASSERT_TRUE(p.ok()) << p.status();
    absl::StatusOr<int> code = (*p)->WaitExit(absl::Seconds(10));
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 2) << k.message;
    std::string all;
    for (const std::string& line : (*p)->Lines()) {
      all += line + "\n";
    }
    EXPECT_THAT(all, HasSubstr(k.message));
  }
}

}  // namespace
}  // namespace podgate
