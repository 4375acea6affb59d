// Kubernetes client configuration and API error mapping, without a server.
#include "exec/kube_client.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/test_pki.h"

namespace podgate::exec {
namespace {

using ::testing::HasSubstr;

class KubeconfigTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = podgate::testing::MakeTempDir("podgate-kubeconfig"); }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  std::string dir_;
};

constexpr char kBase[] = R"(apiVersion: v1
kind: Config
current-context: dev
contexts:
  - name: other
    context: {cluster: nowhere, user: nobody}
  - name: dev
    context: {cluster: c1, user: u1}
clusters:
  - name: c1
    cluster:
      server: https://[fd00::1]:6443
      certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==
users:
  - name: u1
    user:
      token: abc.def
)";

// Data fields used to be written to /tmp/podgate-exec-* and never deleted; they stay in
// memory now, and nothing appears on disk.
TEST_F(KubeconfigTest, ReadsTheCurrentContextAndKeepsDataFieldsInMemory) {
  const auto scratch_dirs = [] {
    int n = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/tmp")) {
      n += entry.path().filename().string().rfind("podgate-exec-", 0) == 0 ? 1 : 0;
    }
    return n;
  };
  const int before = scratch_dirs();
  auto config = LoadKubeconfig(Write("kc", kBase), false);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->host, "fd00::1");
  EXPECT_EQ(config->port, 6443);
  EXPECT_EQ(config->path_prefix, "");
  EXPECT_EQ(config->token, "abc.def");
  EXPECT_TRUE(config->ca_file.empty());
  EXPECT_EQ(config->ca_pem, "-----BEGIN CERTIFICATE-----\n");
  EXPECT_EQ(scratch_dirs(), before);
}

// `*-data` fields are standard base64 (padding optional; a folded YAML string keeps its line
// breaks); anything else names the field.
TEST_F(KubeconfigTest, DataFieldsAreStandardBase64) {
  constexpr char kPadded[] = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==";
  auto ca_data = [&](const std::string& data) {
    return LoadKubeconfig(Write("kc", absl::StrReplaceAll(kBase, {{kPadded, data}})), false);
  };
  for (const std::string ok : {"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg",
                               "\"LS0tLS1CRUdJTiBDRVJU\\nSUZJQ0FURS0tLS0tCg==\""}) {
    auto config = ca_data(ok);
    ASSERT_TRUE(config.ok()) << ok << ": " << config.status();
    EXPECT_EQ(config->ca_pem, "-----BEGIN CERTIFICATE-----\n") << ok;
  }
  for (const std::string bad :
       {"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t*g==", "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t_g==",
        "LS0tLS1CRUdJTiBDRVJU==SUZJQ0FURS0tLS0tCg==", "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=",
        "TQ=x"}) {
    EXPECT_THAT(ca_data(bad).status().ToString(),
                HasSubstr("certificate-authority-data is not base64"))
        << bad;
  }
}

TEST_F(KubeconfigTest, ServerPathTlsServerNameAndProxyUrl) {
  std::string text = absl::StrReplaceAll(
      kBase, {{"https://[fd00::1]:6443", "https://rancher.example.com/k8s/clusters/c-m-1/"}});
  text.insert(text.find("      certificate-authority-data"),
              "      tls-server-name: kubernetes.internal\n");
  auto config = LoadKubeconfig(Write("kc", text), false);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->host, "rancher.example.com");
  EXPECT_EQ(config->path_prefix, "/k8s/clusters/c-m-1");
  EXPECT_EQ(config->ApiPath("/api/v1/pods"), "/k8s/clusters/c-m-1/api/v1/pods");
  EXPECT_EQ(config->server_name, "kubernetes.internal");
  for (const char* bad : {"https://h/a/../b", "https://h/a?x=1", "https://h/a#f", "https://u@h/",
                          "https://h/a b", "https://h//a"}) {
    std::string t = absl::StrReplaceAll(kBase, {{"https://[fd00::1]:6443", bad}});
    EXPECT_FALSE(LoadKubeconfig(Write("kc", t), false).ok()) << bad;
  }
  std::string proxied = kBase;
  proxied.insert(proxied.find("      certificate-authority-data"),
                 "      proxy-url: http://proxy:3128\n");
  EXPECT_THAT(LoadKubeconfig(Write("p", proxied), false).status().ToString(),
              HasSubstr("proxy-url is not supported"));
}

TEST_F(KubeconfigTest, WrongYamlTypesAreErrorsNotExceptions) {
  std::string not_bool = kBase;
  not_bool.insert(not_bool.find("      certificate-authority-data"),
                  "      insecure-skip-tls-verify: maybe\n");
  EXPECT_THAT(LoadKubeconfig(Write("a", not_bool), true).status().ToString(),
              HasSubstr("kubeconfig"));
  std::string list_name = absl::StrReplaceAll(kBase, {{"  - name: dev\n", "  - name: [dev]\n"}});
  EXPECT_FALSE(LoadKubeconfig(Write("b", list_name), false).ok());
  std::string cert_without_key = absl::StrReplaceAll(
      kBase, {{"      token: abc.def", "      client-certificate-data: LS0tLQo="}});
  EXPECT_THAT(LoadKubeconfig(Write("c", cert_without_key), false).status().ToString(),
              HasSubstr("needs its key"));
}

TEST_F(KubeconfigTest, RelativeFilesResolveAgainstTheKubeconfigAndPortDefaultsTo443) {
  std::string text = kBase;
  text = absl::StrReplaceAll(text, {{"https://[fd00::1]:6443", "https://api.example.com"}});
  text = absl::StrReplaceAll(text, {{"certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==", "certificate-authority: ca.crt"}});
  auto config = LoadKubeconfig(Write("kc", text), false);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->host, "api.example.com");
  EXPECT_EQ(config->port, 443);
  EXPECT_EQ(config->ca_file, dir_ + "/ca.crt");
}

TEST_F(KubeconfigTest, UnsafeOrIncompleteConfigsAreRefusedClearly) {
  std::string insecure = kBase;
  insecure.insert(insecure.find("      certificate-authority-data"),
                  "      insecure-skip-tls-verify: true\n");
  EXPECT_THAT(LoadKubeconfig(Write("a", insecure), false).status().ToString(),
              HasSubstr("insecure-skip-tls-verify"));
  EXPECT_TRUE(LoadKubeconfig(Write("a", insecure), true).ok());

  std::string plain = kBase;
  plain = absl::StrReplaceAll(plain, {{"https://", "http://"}});
  EXPECT_THAT(LoadKubeconfig(Write("b", plain), false).status().ToString(),
              HasSubstr("not https://"));

  std::string no_context = kBase;
  no_context = absl::StrReplaceAll(no_context, {{"current-context: dev", "current-context: gone"}});
  EXPECT_THAT(LoadKubeconfig(Write("c", no_context), false).status().ToString(),
              HasSubstr("context 'gone' not found"));

  std::string plugin = kBase;
  plugin = absl::StrReplaceAll(plugin, {{"      token: abc.def", "      exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}"}});
  EXPECT_THAT(LoadKubeconfig(Write("d", plugin), false).status().ToString(),
              HasSubstr("not supported"));

  std::string bad_port = kBase;
  bad_port = absl::StrReplaceAll(bad_port, {{":6443", ":99999"}});
  EXPECT_THAT(LoadKubeconfig(Write("e", bad_port), false).status().ToString(),
              HasSubstr("bad port"));

  EXPECT_THAT(LoadKubeconfig(Write("f", "{not: [yaml"), false).status().ToString(),
              HasSubstr("kubeconfig"));
  EXPECT_FALSE(LoadKubeconfig(dir_ + "/missing", false).ok());
}

TEST_F(KubeconfigTest, InClusterConfigUsesTheServiceAccount) {
  unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_THAT(InClusterConfig(dir_).status().ToString(), HasSubstr("not in a cluster"));
  setenv("KUBERNETES_SERVICE_HOST", "fd00::10", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  EXPECT_THAT(InClusterConfig(dir_).status().ToString(), HasSubstr("not readable"));
  Write("token", "sa-token-1\n");
  Write("ca.crt", "ca");
  auto config = InClusterConfig(dir_);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->host, "fd00::10");
  EXPECT_EQ(config->port, 443);
  // The token is read from the file, so a rotated token is picked up.
  KubeClient client(*config);
  EXPECT_EQ(client.Token(), "sa-token-1");
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
}

TEST(ApiErrorTest, MapsStatusCodesAndKeepsTheApiMessage) {
  const std::string body =
      R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",)"
      R"("message":"pods \"x\" is forbidden: User \"u\" cannot create resource","reason":"Forbidden","code":403})";
  absl::Status s = ApiError(403, body, "exec");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("is forbidden"));
  EXPECT_EQ(ApiError(401, "", "x").code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(ApiError(404, "", "x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ApiError(409, "", "x").code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ApiError(400, "", "x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ApiError(429, "", "x").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ApiError(503, "<html>", "x").code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(ApiError(503, "<html>", "x").message(), HasSubstr("<html>"));
}

TEST(ParsePodTest, ReadsTheFieldsExecUses) {
  auto pod = ParsePod(R"({"metadata":{"name":"p","namespace":"n","uid":"u-1",
      "labels":{"app":"a"},"annotations":{"kubectl.kubernetes.io/default-container":"main"}},
      "spec":{"containers":[{"name":"side","image":"i1"},{"name":"main","image":"i2"}]},
      "status":{"phase":"Running"}})");
  ASSERT_TRUE(pod.ok());
  EXPECT_EQ(pod->uid, "u-1");
  EXPECT_EQ(pod->phase, "Running");
  EXPECT_EQ(pod->labels.at("app"), "a");
  EXPECT_EQ(*ResolveContainer(*pod, ""), "main");
  EXPECT_EQ(*ResolveContainer(*pod, "side"), "side");
  EXPECT_THAT(ResolveContainer(*pod, "x").status().ToString(), HasSubstr("side, main"));
  pod->default_container_annotation = "gone";
  EXPECT_EQ(*ResolveContainer(*pod, ""), "side");
  EXPECT_FALSE(ParsePod("not json").ok());
  EXPECT_FALSE(ParsePod("[]").ok());
}

}  // namespace
}  // namespace podgate::exec
