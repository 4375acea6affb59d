// `podgate-run login` end to end: the podgate-run binary signs in with the device flow
// (RFC 8628) against a real OpenID provider (tools/oidc-provider), the user approves in the
// provider's own pages as they would in a browser, the token cache is written, and commands
// then run through a real stack (kubesim, policy, audit, exec) whose exec trusts the provider
// (its jwks_uri, issuer, audience = the command line's client id) with the cached token,
// refreshed past a short ID token lifetime without a new login.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "auth/base64url.h"
#include "auth/oidc.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/client.h"
#include "http/url.h"
#include "nlohmann/json.hpp"
#include "support/oidc_provider.h"
#include "support/stack.h"
#include "support/subprocess.h"
#include "support/test_pki.h"

namespace podgate {
namespace {

using testing::Browser;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::OidcProvider;
using testing::Subprocess;

constexpr char kClientId[] = "podgate-cli";

constexpr char kCluster[] = R"(namespaces:
  - name: team
pods:
  - name: app-1
    namespace: team
    containers:
      - name: main
        image: demo/app:1
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec, namespaces]
    namespaces: ["*"]
)";

// Only the provider's user "developer" may run anything: a command that runs proves exec
// verified the provider's token and read the user from it.
constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
rules:
  - id: developer-echo
    effect: allow
    subjects: {users: [developer]}
    targets: {namespaces: [team]}
    command:
      program: echo
      args:
        - {name: word, type: regex, pattern: "[a-z]+", optional: true, repeat: true}
)";

nlohmann::json ProviderConfig(int id_token_ttl = 300, int device_code_ttl = 600,
                              nlohmann::json device_flow = {{"interval", 1}}) {
  return {
      {"ttl", {{"IdToken", id_token_ttl}, {"DeviceCode", device_code_ttl}}},
      {"deviceFlow", device_flow},
      {"clients",
       {{{"client_id", kClientId},
         {"grant_types", {"urn:ietf:params:oauth:grant-type:device_code", "refresh_token"}},
         {"response_types", nlohmann::json::array()},
         {"token_endpoint_auth_method", "none"}}}},
  };
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

mode_t Mode(const std::string& path) {
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

nlohmann::json Claims(const std::string& jwt) {
  std::vector<std::string> parts = absl::StrSplit(jwt, '.');
  if (parts.size() != 3) {
    return {};
  }
  std::optional<std::string> payload = auth::Base64UrlDecode(parts[1]);
  return payload ? nlohmann::json::parse(*payload, nullptr, false) : nlohmann::json();
}

// A finished podgate-run: its exit status and its stderr.
struct Ran {
  int status = -1;
  std::string err;
};

Ran Finish(Subprocess& p, absl::Duration timeout = absl::Seconds(30)) {
  absl::StatusOr<int> status = p.WaitExit(timeout);
  EXPECT_TRUE(status.ok()) << "podgate-run did not finish: " << status.status();
  if (!status.ok()) {
    p.Signal(SIGKILL);
    (void)p.WaitExit(absl::Seconds(5));
  }
  return {status.value_or(-1), absl::StrJoin(p.Lines(), "\n")};
}

class RunLoginTest : public ::testing::Test {
 protected:
  void TearDown() override {
    stack_.reset();
    provider_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StartProvider(nlohmann::json config) {
    auto provider = OidcProvider::Start(std::move(config));
    ASSERT_TRUE(provider.ok()) << provider.status();
    provider_ = *std::move(provider);
  }

  // A stack whose exec trusts the provider: its keys from the jwks_uri, its issuer, the web
  // client's and the command line's client ids as audiences; no leeway, so an expired ID token
  // is refused at once.
  void StartStack() {
    auto url = auth::oidc::DiscoveryUrl(provider_->issuer());
    ASSERT_TRUE(url.ok());
    http::ClientOptions o;
    o.port = url->port;
    auto doc = http::Fetch(o, "GET", url->target);
    ASSERT_TRUE(doc.ok()) << doc.status();
    auto metadata = auth::oidc::ParseDiscovery(doc->body, provider_->issuer());
    ASSERT_TRUE(metadata.ok()) << metadata.status();
    metadata_ = *metadata;
    testing::StackOptions options;
    options.binaries = {PODGATE_KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN,
                        PODGATE_EXEC_BIN};
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    options.exec_flags = {"--jwt_key_file=",
                          "--jwt_algorithm=RS256",
                          "--jwt_jwks_url=" + metadata->jwks_uri.ToString(),
                          "--jwt_jwks_refresh_min=1s",
                          "--jwt_issuer=" + provider_->issuer(),
                          std::string("--jwt_audience=podgate,") + kClientId,
                          "--jwt_user_claim=preferred_username",
                          "--jwt_leeway=0s"};
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
  }

  // podgate-run with the test's configuration directory as XDG_CONFIG_HOME (so the default
  // cache path is used).
  std::unique_ptr<Subprocess> Start(const std::vector<std::string>& args) {
    auto p = Subprocess::Start(PODGATE_RUN_BIN, args, {{"XDG_CONFIG_HOME", config_home_}});
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *std::move(p) : nullptr;
  }

  std::unique_ptr<Subprocess> StartLogin() {
    return Start({"login", "--oidc_issuer=" + provider_->issuer(),
                  std::string("--oidc_client_id=") + kClientId});
  }

  // What podgate-run login told the user: where to go and the code to type.
  struct Prompt {
    std::string uri;
    std::string user_code;
  };
  static Prompt ReadPrompt(Subprocess& login) {
    absl::StatusOr<std::string> line = login.WaitForLine("enter the code", absl::Seconds(20));
    EXPECT_TRUE(line.ok()) << absl::StrJoin(login.Lines(), "\n");
    std::smatch m;
    Prompt prompt;
    const std::string text = line.value_or("");
    if (std::regex_search(text, m,
                          std::regex(R"(open (\S+) in a browser and enter the code (\S+))"))) {
      prompt.uri = m[1];
      prompt.user_code = m[2];
    }
    EXPECT_FALSE(prompt.user_code.empty()) << text;
    return prompt;
  }

  // Signs in as `user` through podgate-run login; returns login's outcome.
  Ran Login(const std::string& user = "developer") {
    std::unique_ptr<Subprocess> login = StartLogin();
    if (login == nullptr) {
      return {};
    }
    Prompt prompt = ReadPrompt(*login);
    absl::Status approved = browser_.ApproveDevice(prompt.uri, prompt.user_code, user, user);
    EXPECT_TRUE(approved.ok()) << approved;
    return Finish(*login);
  }

  // `echo hello` in team/app-1 through exec, with `extra` flags (e.g. --token).
  Ran Echo(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {absl::StrCat("--exec_address=127.0.0.1:", stack_->exec_port()),
                                     "--namespace=team", "--pod=app-1"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--", "echo", "hello"});
    std::unique_ptr<Subprocess> run = Start(args);
    return run == nullptr ? Ran{} : Finish(*run);
  }

  std::string dir_ = testing::MakeTempDir("podgate-run-login");
  std::string config_home_ = dir_ + "/config";
  std::string cache_ = config_home_ + "/podgate/token.json";
  std::unique_ptr<OidcProvider> provider_;
  auth::oidc::ProviderMetadata metadata_;
  std::unique_ptr<testing::Stack> stack_;
  Browser browser_;
};

TEST_F(RunLoginTest, LoginCachesAVerifiedTokenAndCommandsRunWithIt) {
  StartProvider(ProviderConfig());
  StartStack();
  Ran login = Login("developer");
  ASSERT_EQ(login.status, 0) << login.err;
  EXPECT_THAT(login.err, HasSubstr("Signed in as developer"));
  EXPECT_THAT(login.err, HasSubstr(cache_));

  // The cache: 0600 in a new 0700 directory, the provider's tokens for this client.
  ASSERT_TRUE(std::filesystem::exists(cache_)) << login.err;
  EXPECT_EQ(Mode(cache_), 0600u);
  EXPECT_EQ(Mode(config_home_ + "/podgate"), 0700u);
  const std::string text = Slurp(cache_);
  const nlohmann::json cache = nlohmann::json::parse(text, nullptr, false);
  ASSERT_TRUE(cache.is_object()) << text;
  EXPECT_EQ(cache["issuer"], provider_->issuer());
  EXPECT_EQ(cache["client_id"], kClientId);
  const std::string id_token = cache["id_token"];
  const std::string refresh_token = cache["refresh_token"];
  EXPECT_FALSE(refresh_token.empty());
  const nlohmann::json claims = Claims(id_token);
  EXPECT_EQ(claims["aud"], kClientId);
  EXPECT_EQ(claims["iss"], provider_->issuer());
  EXPECT_EQ(claims["preferred_username"], "developer");
  EXPECT_EQ(cache["expiry"], claims["exp"]);
  // Nothing secret on the terminal: the user code only.
  EXPECT_THAT(login.err, Not(HasSubstr(id_token)));
  EXPECT_THAT(login.err, Not(HasSubstr(refresh_token)));
  EXPECT_THAT(login.err, Not(HasSubstr("device_code")));

  // A command without --token runs as the cached user; the token was fresh, so the cache is
  // left as it was (no refresh).
  Ran run = Echo();
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(Slurp(cache_), text);

  // A cache from another provider than the flags name is refused before exec is asked.
  Ran other = Echo({"--oidc_issuer=https://sso.example.com"});
  EXPECT_EQ(other.status, 125);
  EXPECT_THAT(other.err, HasSubstr("not for --oidc_issuer/--oidc_client_id"));

  // logout revokes the refresh token at the provider and deletes the cache; the next run says
  // what to do.
  std::unique_ptr<Subprocess> logout = Start({"logout"});
  ASSERT_NE(logout, nullptr);
  Ran out = Finish(*logout);
  EXPECT_EQ(out.status, 0) << out.err;
  EXPECT_THAT(out.err, HasSubstr("The refresh token was revoked at the identity provider"));
  EXPECT_FALSE(std::filesystem::exists(cache_));
  http::ClientOptions o;
  o.port = metadata_.token_endpoint.port;
  o.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
  auto refresh = http::Fetch(o, "POST", metadata_.token_endpoint.target,
                             http::EncodeQuery({{"client_id", kClientId},
                                                {"grant_type", "refresh_token"},
                                                {"refresh_token", refresh_token}}));
  ASSERT_TRUE(refresh.ok()) << refresh.status();
  EXPECT_EQ(refresh->status, 400);
  EXPECT_THAT(refresh->body, HasSubstr("invalid_grant"));
  Ran after = Echo();
  EXPECT_EQ(after.status, 125);
  EXPECT_THAT(after.err, HasSubstr("run podgate-run login"));
}

TEST_F(RunLoginTest, AShortLivedIdTokenIsRefreshedWithoutANewLogin) {
  StartProvider(ProviderConfig(/*id_token_ttl=*/3));
  StartStack();
  Ran login = Login();
  ASSERT_EQ(login.status, 0) << login.err;
  const nlohmann::json first = nlohmann::json::parse(Slurp(cache_));
  const std::string old_token = first["id_token"];

  // Within a minute of its expiry, the run refreshes first and rewrites the cache.
  Ran run = Echo();
  EXPECT_EQ(run.status, 0) << run.err;
  const nlohmann::json second = nlohmann::json::parse(Slurp(cache_));
  EXPECT_NE(second["id_token"], old_token);
  EXPECT_GE(second["expiry"].get<int64_t>(), first["expiry"].get<int64_t>());
  EXPECT_EQ(Mode(cache_), 0600u);
  EXPECT_THAT(run.err, Not(HasSubstr(second["id_token"].get<std::string>())));

  // Past the first token's lifetime: exec refuses it, the cached sign-in still works.
  absl::SleepFor(absl::FromUnixSeconds(first["expiry"].get<int64_t>()) + absl::Seconds(1.2) -
                 absl::Now());
  Ran expired = Echo({"--token=" + old_token});
  EXPECT_EQ(expired.status, 125);
  EXPECT_THAT(expired.err, HasSubstr("credential refused"));
  Ran again = Echo();
  EXPECT_EQ(again.status, 0) << again.err;

  // The refresh token is revoked at the provider (RFC 7009, as when a session is ended there):
  // the refresh is refused and the user is told to sign in again; the run does nothing.
  ASSERT_TRUE(metadata_.revocation_endpoint.has_value());
  const std::string refresh_token = nlohmann::json::parse(Slurp(cache_))["refresh_token"];
  http::ClientOptions o;
  o.port = metadata_.revocation_endpoint->port;
  o.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
  auto revoked = http::Fetch(o, "POST", metadata_.revocation_endpoint->target,
                             http::EncodeQuery({{"client_id", kClientId},
                                                {"token", refresh_token},
                                                {"token_type_hint", "refresh_token"}}));
  ASSERT_TRUE(revoked.ok() && revoked->status == 200) << revoked.status();
  Ran refused = Echo();
  EXPECT_EQ(refused.status, 125);
  EXPECT_THAT(refused.err, HasSubstr("could not be refreshed"));
  EXPECT_THAT(refused.err, HasSubstr("invalid_grant"));
  EXPECT_THAT(refused.err, HasSubstr("run podgate-run login again"));
  EXPECT_THAT(refused.err, Not(HasSubstr(refresh_token)));

  // The provider is down at refresh time: the same advice, naming what failed.
  provider_->process()->Signal(SIGKILL);
  ASSERT_TRUE(provider_->process()->WaitExit(absl::Seconds(10)).ok());
  Ran down = Echo();
  EXPECT_EQ(down.status, 125);
  EXPECT_THAT(down.err, HasSubstr("discovery at"));
  EXPECT_THAT(down.err, HasSubstr("run podgate-run login again"));

  // logout with the provider down: the cache is deleted all the same, and the user told that
  // the provider's grant lives on.
  std::unique_ptr<Subprocess> logout = Start({"logout"});
  ASSERT_NE(logout, nullptr);
  Ran out = Finish(*logout);
  EXPECT_EQ(out.status, 0) << out.err;
  EXPECT_THAT(out.err, HasSubstr("could not be revoked at the identity provider"));
  EXPECT_FALSE(std::filesystem::exists(cache_));
}

// Runs started together all need a refresh at once. The provider rotates refresh tokens and
// treats a used one's reuse as theft (it revokes the grant), so they must not each refresh with
// the same cached refresh token.
TEST_F(RunLoginTest, ConcurrentRunsRefreshOnceAndAllRun) {
  StartProvider(ProviderConfig(/*id_token_ttl=*/3));
  StartStack();
  ASSERT_EQ(Login().status, 0);
  std::vector<std::unique_ptr<Subprocess>> runs;
  for (int i = 0; i < 4; ++i) {
    runs.push_back(Start({absl::StrCat("--exec_address=127.0.0.1:", stack_->exec_port()),
                          "--namespace=team", "--pod=app-1", "--", "echo", "hello"}));
    ASSERT_NE(runs.back(), nullptr);
  }
  for (auto& run : runs) {
    Ran out = Finish(*run);
    EXPECT_EQ(out.status, 0) << out.err;
  }
  Ran after = Echo();
  EXPECT_EQ(after.status, 0) << after.err;
  EXPECT_EQ(Mode(cache_), 0600u);
}

TEST_F(RunLoginTest, AMissingFlagOrTheUserDenyingTheSignInEndsLoginWithoutACache) {
  std::unique_ptr<Subprocess> usage = Start({"login"});
  ASSERT_NE(usage, nullptr);
  Ran bad = Finish(*usage);
  EXPECT_EQ(bad.status, 2);
  EXPECT_THAT(bad.err, HasSubstr("--oidc_issuer and --oidc_client_id are required"));
  StartProvider(ProviderConfig());
  std::unique_ptr<Subprocess> login = StartLogin();
  ASSERT_NE(login, nullptr);
  Prompt prompt = ReadPrompt(*login);
  ASSERT_TRUE(browser_.DenyDevice(prompt.uri, prompt.user_code).ok());
  Ran out = Finish(*login);
  EXPECT_EQ(out.status, 1);
  EXPECT_THAT(out.err, HasSubstr("the sign-in was denied at the identity provider"));
  EXPECT_FALSE(std::filesystem::exists(cache_));
}

TEST_F(RunLoginTest, AnExpiredDeviceCodeEndsLoginWithoutACache) {
  StartProvider(ProviderConfig(300, /*device_code_ttl=*/2));
  std::unique_ptr<Subprocess> login = StartLogin();
  ASSERT_NE(login, nullptr);
  Prompt prompt = ReadPrompt(*login);  // and nobody approves
  Ran out = Finish(*login);
  EXPECT_EQ(out.status, 1);
  EXPECT_THAT(out.err, HasSubstr("the code expired before the sign-in was approved"));
  EXPECT_FALSE(std::filesystem::exists(cache_));
  // The code is useless afterwards.
  EXPECT_FALSE(browser_.ApproveDevice(prompt.uri, prompt.user_code, "developer", "developer").ok());
}

TEST_F(RunLoginTest, LoginFailsClearlyWhenTheProviderIsDownOrAnotherIssuer) {
  StartProvider(ProviderConfig());
  // The same provider under another name: its discovery document names another issuer.
  const std::string alias =
      absl::StrReplaceAll(provider_->issuer(), {{"http://127.0.0.1", "http://localhost"}});
  std::unique_ptr<Subprocess> mixup =
      Start({"login", "--oidc_issuer=" + alias, std::string("--oidc_client_id=") + kClientId});
  ASSERT_NE(mixup, nullptr);
  Ran wrong = Finish(*mixup);
  EXPECT_EQ(wrong.status, 1);
  EXPECT_THAT(wrong.err, HasSubstr("discovery at " + alias));
  EXPECT_THAT(wrong.err, HasSubstr("issuer"));
  EXPECT_THAT(wrong.err, Not(HasSubstr("enter the code")));

  provider_->process()->Signal(SIGKILL);
  ASSERT_TRUE(provider_->process()->WaitExit(absl::Seconds(10)).ok());
  std::unique_ptr<Subprocess> login = StartLogin();
  ASSERT_NE(login, nullptr);
  Ran down = Finish(*login);
  EXPECT_EQ(down.status, 1);
  EXPECT_THAT(down.err, HasSubstr("discovery at " + provider_->issuer()));
  EXPECT_THAT(down.err, HasSubstr("Connection refused"));
  EXPECT_FALSE(std::filesystem::exists(cache_));
}

// RFC 8628 3.5: a client backs off when the token endpoint cannot be reached; three failures in a
// row end the login.
TEST_F(RunLoginTest, TheProviderGoingDownWhileWaitingEndsLoginAfterThreeTriesBackingOff) {
  StartProvider(ProviderConfig());
  std::unique_ptr<Subprocess> login = StartLogin();
  ASSERT_NE(login, nullptr);
  ReadPrompt(*login);
  const absl::Time down = absl::Now();
  provider_->process()->Signal(SIGKILL);
  ASSERT_TRUE(provider_->process()->WaitExit(absl::Seconds(10)).ok());
  Ran out = Finish(*login);
  // Polls 1 s, then 2 s, then 4 s apart (interval 1 s, doubled after each failure).
  EXPECT_GE(absl::Now() - down, absl::Seconds(6));
  EXPECT_EQ(out.status, 1);
  EXPECT_THAT(out.err, HasSubstr("waiting for the sign-in: connect: Connection refused"));
  EXPECT_FALSE(std::filesystem::exists(cache_));
}

// A provider serving https is verified: against the system's roots by default (the test CA is
// not among them), against --oidc_ca_file when given, for login and for the revocation at logout.
TEST_F(RunLoginTest, AnHttpsProviderIsVerifiedAgainstTheGivenCa) {
  auto pki = testing::MakeTestPki(dir_);
  ASSERT_TRUE(pki.ok()) << pki.status();
  nlohmann::json config = ProviderConfig();
  config["tls"] = {{"cert", pki->server_cert}, {"key", pki->server_key}};
  StartProvider(config);
  ASSERT_TRUE(absl::StartsWith(provider_->issuer(), "https://")) << provider_->issuer();
  browser_.TrustCa(pki->ca_cert);

  std::unique_ptr<Subprocess> untrusted = StartLogin();
  ASSERT_NE(untrusted, nullptr);
  Ran refused = Finish(*untrusted);
  EXPECT_EQ(refused.status, 1);
  EXPECT_THAT(refused.err, HasSubstr("discovery at " + provider_->issuer()));
  EXPECT_THAT(refused.err, HasSubstr("certificate verify failed"));

  std::unique_ptr<Subprocess> login =
      Start({"login", "--oidc_issuer=" + provider_->issuer(),
             std::string("--oidc_client_id=") + kClientId, "--oidc_ca_file=" + pki->ca_cert});
  ASSERT_NE(login, nullptr);
  Prompt prompt = ReadPrompt(*login);
  ASSERT_TRUE(absl::StartsWith(prompt.uri, "https://")) << prompt.uri;
  ASSERT_TRUE(browser_.ApproveDevice(prompt.uri, prompt.user_code, "developer", "developer").ok());
  Ran out = Finish(*login);
  ASSERT_EQ(out.status, 0) << out.err;
  EXPECT_EQ(nlohmann::json::parse(Slurp(cache_))["issuer"], provider_->issuer());

  std::unique_ptr<Subprocess> logout = Start({"logout", "--oidc_ca_file=" + pki->ca_cert});
  ASSERT_NE(logout, nullptr);
  Ran bye = Finish(*logout);
  EXPECT_EQ(bye.status, 0);
  EXPECT_THAT(bye.err, HasSubstr("The refresh token was revoked at the identity provider"));
}

TEST_F(RunLoginTest, SlowDownAddsFiveSecondsToThePollingInterval) {
  // The provider asks for polls 1 s apart but wants 3 s: the first poll gets slow_down.
  StartProvider(ProviderConfig(300, 600, {{"interval", 1}, {"slowDownBelow", 3}}));
  std::unique_ptr<Subprocess> login = StartLogin();
  ASSERT_NE(login, nullptr);
  Prompt prompt = ReadPrompt(*login);
  ASSERT_TRUE(browser_.ApproveDevice(prompt.uri, prompt.user_code, "sre", "sre").ok());
  Ran out = Finish(*login);
  ASSERT_EQ(out.status, 0) << out.err;
  std::vector<nlohmann::json> polls;
  for (const std::string& line : provider_->process()->Lines()) {
    if (absl::StrContains(line, "\"device poll\"")) {
      polls.push_back(nlohmann::json::parse(line));
    }
  }
  ASSERT_EQ(polls.size(), 2u);
  EXPECT_EQ(polls[0]["result"], "slow_down");
  EXPECT_GE(polls[0]["since_ms"].get<int>(), 1000);  // the announced interval
  EXPECT_EQ(polls[1]["result"], "tokens");
  EXPECT_GE(polls[1]["since_ms"].get<int>(), 6000);  // 1 s + 5 s
}

TEST_F(RunLoginTest, ACacheOthersCanReadIsRefusedAndTheTokenFlagWins) {
  StartProvider(ProviderConfig());
  StartStack();
  ASSERT_EQ(Login().status, 0);
  const std::string id_token = nlohmann::json::parse(Slurp(cache_))["id_token"];

  ASSERT_EQ(chmod(cache_.c_str(), 0644), 0);
  Ran refused = Echo();
  EXPECT_EQ(refused.status, 125);
  EXPECT_THAT(refused.err, HasSubstr("has mode 0644: others can read or change it"));
  // --token does not read the cache at all.
  Ran with_token = Echo({"--token=" + id_token});
  EXPECT_EQ(with_token.status, 0) << with_token.err;

  // A good cache does not override --token.
  ASSERT_EQ(chmod(cache_.c_str(), 0600), 0);
  ASSERT_EQ(Echo().status, 0);
  Ran wrong = Echo({"--token=not-a-token"});
  EXPECT_EQ(wrong.status, 125);
  EXPECT_THAT(wrong.err, HasSubstr("credential refused"));
}

}  // namespace
}  // namespace podgate
