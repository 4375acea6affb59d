// Single sign-on through edge against a real, certified OpenID provider (tools/oidc-provider),
// with real processes behind it (kubesim, policy, audit, exec through support/stack.h; exec
// verifies the provider's ID tokens itself): the browser's part is support/oidc_provider.h's
// Browser on the provider's own login page and plain HTTP requests to edge carrying the cookies
// edge set, as a browser would.
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "auth/base64url.h"
#include "crypto/aead.h"
#include "crypto/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/client.h"
#include "http/url.h"
#include "nlohmann/json.hpp"
#include "support/exec_session.h"
#include "support/oidc_provider.h"
#include "support/prometheus_text.h"
#include "support/stack.h"
#include "support/subprocess.h"
#include "support/test_pki.h"

namespace podgate {
namespace {

using ::podgate::testing::Browser;
using ::podgate::testing::OidcProvider;
using ::podgate::testing::Subprocess;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kCluster[] = R"(
namespaces:
  - name: demo
pods:
  - name: web-1
    namespace: demo
    containers:
      - name: app
access:
  - user: podgate-exec
    verbs: ["*"]
    resources: ["*"]
    namespaces: ["*"]
)";

constexpr char kPolicy[] = R"(
apiVersion: podgate.io/v1
kind: CommandPolicy
rules:
  - id: dev-echo
    effect: allow
    subjects: {groups: [developers]}
    targets: {namespaces: [demo]}
    command:
      program: echo
      args:
        - {name: word, type: regex, pattern: "[A-Za-z0-9._-]+", repeat: true, maxCount: 8}
)";

constexpr char kCookieKey[] = "0123456789abcdef0123456789abcdef-sso-test";
constexpr char kSecret[] = "podgate-sso-test-secret";
// The issuer a mixed-up ID token names.
constexpr char kOtherIssuer[] = "https://other-idp.test";
// ID tokens live 3 s (the verifiers allow 1 s of skew): refresh is needed within a test.
constexpr int kIdTokenSeconds = 5;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

std::string HeaderOf(const http::ClientResponse& r, absl::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (absl::EqualsIgnoreCase(k, name)) {
      return v;
    }
  }
  return "";
}

// Every Set-Cookie of a response.
std::vector<std::string> SetCookies(const http::ClientResponse& r) {
  std::vector<std::string> out;
  for (const auto& [k, v] : r.headers) {
    if (absl::EqualsIgnoreCase(k, "Set-Cookie")) {
      out.push_back(v);
    }
  }
  return out;
}

// The value a response sets for cookie `name` ("" when it sets none or clears it).
std::string CookieSet(const http::ClientResponse& r, const std::string& name) {
  for (const std::string& c : SetCookies(r)) {
    if (absl::StartsWith(c, name + "=")) {
      const std::string value = c.substr(name.size() + 1, c.find(';') - name.size() - 1);
      return absl::StrContains(c, "Max-Age=0") ? "" : value;
    }
  }
  return "";
}

// The Set-Cookie line for `name` (attributes included), "" when none.
std::string CookieLine(const http::ClientResponse& r, const std::string& name) {
  for (const std::string& c : SetCookies(r)) {
    if (absl::StartsWith(c, name + "=")) {
      return c;
    }
  }
  return "";
}

class SsoTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::MakeTempDir("sso-test"));
    provider_port_ = new testing::ReservedPort();
    edge_port_ = new testing::ReservedPort();
    WriteFile(*dir_ + "/cookie.key", kCookieKey);
    WriteFile(*dir_ + "/client.secret", kSecret);
    ASSERT_TRUE(StartProvider());
    testing::StackOptions options;
    options.binaries = {KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN, PODGATE_EXEC_BIN};
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    options.exec_jwt_flags = JwtFlags(Issuer());
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
    edge_port_->Release();
    edge_ = StartEdge(edge_port_->port(), {}).release();
    ASSERT_NE(edge_, nullptr);
  }

  static void TearDownTestSuite() {
    if (edge_ != nullptr) {
      edge_->Signal(SIGTERM);
      (void)edge_->WaitExit(absl::Seconds(10));
    }
    delete edge_;
    delete provider_;
    delete stack_;
    delete edge_port_;
    delete provider_port_;
  }

  // A test that stopped the provider gets it back (at the same issuer, with the same keys).
  void SetUp() override {
    if (provider_ == nullptr || provider_->process()->WaitExit(absl::ZeroDuration()).ok()) {
      ASSERT_TRUE(StartProvider());
    }
  }

  static std::string Issuer() { return absl::StrCat("http://127.0.0.1:", provider_port_->port()); }
  static std::string EdgeOrigin() { return absl::StrCat("http://127.0.0.1:", edge_port_->port()); }

  static std::vector<std::string> JwtFlags(const std::string& issuer) {
    return {"--jwt_issuer=" + issuer, "--jwt_jwks_url=" + issuer + "/jwks",
            "--jwt_audience=podgate", "--jwt_user_claim=preferred_username", "--jwt_leeway=1s",
            "--jwt_jwks_refresh_min=1s",
            // The provider's /jwks has no caching headers: without this, a withdrawn key would
            // be noticed after the default hour.
            "--jwt_jwks_refresh_max=2s", "--jwt_jwks_timeout=2s"};
  }

  static bool StartProvider() {
    delete provider_;
    provider_ = nullptr;
    provider_port_->Release();
    // A user whose ID token is too large for a cookie (groups by the hundred, as Azure AD
    // sends them).
    nlohmann::json many = nlohmann::json::array();
    for (int i = 0; i < 200; ++i) {
      many.push_back(absl::StrCat("group-with-a-long-name-", i));
    }
    nlohmann::json config = {
        {"users",
         {{{"username", "developer"}, {"password", "developer"}, {"groups", {"developers"}}},
          {{"username", "sre"}, {"password", "sre"}, {"groups", {"sre", "developers"}}},
          {{"username", "auditor"}, {"password", "auditor"}, {"groups", {"auditors"}}},
          {{"username", "many"}, {"password", "many"}, {"groups", many}},
          // Users whose ID tokens the provider spoils on the way out (its test-only
          // tamperIdToken): another issuer's, unsigned, expired.
          {{"username", "mixup"},
           {"password", "mixup"},
           {"groups", {"developers"}},
           {"tamperIdToken", {{"iss", kOtherIssuer}}}},
          {{"username", "unsigned"},
           {"password", "unsigned"},
           {"groups", {"developers"}},
           {"tamperIdToken", {{"alg", "none"}}}},
          {{"username", "expired"},
           {"password", "expired"},
           {"groups", {"developers"}},
           {"tamperIdToken", {{"expiresIn", -60}}}}}},
        {"keys", *dir_ + "/provider-keys.json"},
        {"ttl", {{"IdToken", kIdTokenSeconds}}},
        {"clients",
         {{{"client_id", "podgate"},
           {"client_secret", kSecret},
           {"redirect_uris", {EdgeOrigin() + "/auth/callback"}},
           {"post_logout_redirect_uris", {EdgeOrigin() + "/"}},
           {"grant_types", {"authorization_code", "refresh_token"}},
           {"response_types", {"code"}},
           {"token_endpoint_auth_method", "client_secret_basic"}}}}};
    auto provider = OidcProvider::Start(config, provider_port_->port());
    EXPECT_TRUE(provider.ok()) << provider.status();
    if (!provider.ok()) {
      return false;
    }
    provider_ = provider->release();
    return true;
  }

  // An edge replica on `port` with single sign-on at `issuer` (default: the test provider).
  static std::unique_ptr<Subprocess> StartEdge(int port, const std::vector<std::string>& extra,
                                               std::string issuer = "") {
    issuer = issuer.empty() ? Issuer() : issuer;
    std::vector<std::string> args = {
        "--grpc_address=127.0.0.1:0",
        "--metrics_address=127.0.0.1:0",
        absl::StrCat("--http_address=127.0.0.1:", port),
        absl::StrCat("--exec_address=127.0.0.1:", stack_->exec_port()),
        absl::StrCat("--policy_address=127.0.0.1:", stack_->policy_port()),
        absl::StrCat("--audit_address=127.0.0.1:", stack_->audit_port()),
        "--allowed_origins=" + EdgeOrigin(),
        "--oidc_issuer=" + issuer,
        "--oidc_client_id=podgate",
        "--oidc_client_secret_file=" + *dir_ + "/client.secret",
        "--oidc_redirect_url=" + EdgeOrigin() + "/auth/callback",
        "--oidc_cookie_key_file=" + *dir_ + "/cookie.key",
        "--oidc_scopes=openid profile email groups offline_access",
        "--oidc_provider_name=Test IdP",
        "--oidc_timeout=1s",
        "--auditor_groups=auditors"};
    for (const std::string& f : JwtFlags(issuer)) {
      args.push_back(f);
    }
    args.insert(args.end(), extra.begin(), extra.end());
    auto edge = Subprocess::Start(PODGATE_EDGE_BIN, args);
    EXPECT_TRUE(edge.ok()) << edge.status();
    if (!edge.ok()) {
      return nullptr;
    }
    auto line = (*edge)->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
    EXPECT_TRUE(line.ok()) << line.status() << absl::StrJoin((*edge)->Lines(), "\n");
    if (!line.ok()) {
      return nullptr;
    }
    if (issuer == Issuer()) {
      // Discovery runs in the background; sign-in starts once it is done.
      line = (*edge)->WaitForLine("oidc provider discovered", absl::Seconds(20));
      EXPECT_TRUE(line.ok()) << line.status() << absl::StrJoin((*edge)->Lines(), "\n");
    }
    return *std::move(edge);
  }

  static int MetricsPort(Subprocess* edge) {
    auto line = edge->WaitForLine("\"msg\":\"serving\"", absl::Seconds(1));
    return line.ok() ? nlohmann::json::parse(*line)["metrics_port"].get<int>() : 0;
  }

  // One request to an edge replica (no redirect followed) with `cookies` and the page's Origin.
  static http::ClientResponse Edge(const std::string& method, const std::string& target,
                                   const std::vector<std::pair<std::string, std::string>>& cookies,
                                   int port = 0, bool origin = true) {
    http::ClientOptions o;
    o.port = static_cast<uint16_t>(port == 0 ? edge_port_->port() : port);
    if (origin) {
      o.headers.push_back({"Origin", EdgeOrigin()});
    }
    std::vector<std::string> jar;
    for (const auto& [k, v] : cookies) {
      jar.push_back(k + "=" + v);
    }
    if (!jar.empty()) {
      o.headers.push_back({"Cookie", absl::StrJoin(jar, "; ")});
    }
    auto r = http::Fetch(o, method, target);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.value_or(http::ClientResponse{});
  }

  // GET /auth/login: the provider URL and the login cookie.
  struct Login {
    std::string url;
    std::string cookie;
  };
  static Login StartLogin(int port = 0) {
    http::ClientResponse r = Edge("GET", "/auth/login", {}, port, false);
    EXPECT_EQ(r.status, 302) << r.body;
    Login login{HeaderOf(r, "Location"), CookieSet(r, "podgate_login")};
    EXPECT_THAT(login.url, StartsWith(Issuer() + "/auth?")) << login.url;
    EXPECT_FALSE(login.cookie.empty());
    return login;
  }

  // Signs in at the provider; returns the callback's target on edge (path and query).
  static std::string Authorize(Browser& browser, const Login& login,
                               const std::string& user = "developer") {
    auto callback = browser.SignIn(login.url, user, user);
    EXPECT_TRUE(callback.ok()) << callback.status();
    const std::string url = callback.value_or("");
    EXPECT_THAT(url, StartsWith(EdgeOrigin() + "/auth/callback?")) << url;
    return url.substr(EdgeOrigin().size());
  }

  struct Session {
    std::string token;
    std::string refresh;
  };
  // The whole sign-in: login, the provider's page, the callback.
  static Session SignIn(const std::string& user = "developer") {
    Browser browser;
    Login login = StartLogin();
    const std::string callback = Authorize(browser, login, user);
    http::ClientResponse r = Edge("GET", callback, {{"podgate_login", login.cookie}}, 0, false);
    EXPECT_EQ(r.status, 302) << r.body;
    EXPECT_EQ(HeaderOf(r, "Location"), "/");
    return {CookieSet(r, "podgate_token"), CookieSet(r, "podgate_refresh")};
  }

  // A refused callback: the page names the problem, nothing is signed in, the login cookie is
  // cleared.
  static void ExpectRefused(const http::ClientResponse& r, int status, const std::string& text) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_THAT(r.content_type, HasSubstr("text/html"));
    EXPECT_THAT(r.body, HasSubstr("Sign-in failed"));
    EXPECT_THAT(r.body, HasSubstr(text));
    EXPECT_THAT(r.body, HasSubstr("Nothing was signed in"));
    EXPECT_EQ(CookieSet(r, "podgate_token"), "");
    EXPECT_EQ(CookieSet(r, "podgate_refresh"), "");
    EXPECT_THAT(CookieLine(r, "podgate_login"), HasSubstr("Max-Age=0"));
  }

  static double LoginCount(const std::string& result, Subprocess* edge = nullptr) {
    http::ClientOptions o;
    o.port = static_cast<uint16_t>(MetricsPort(edge == nullptr ? edge_ : edge));
    auto r = http::Fetch(o, "GET", "/metrics");
    EXPECT_TRUE(r.ok()) << r.status();
    auto page = testing::ParsePrometheusText(r.value_or(http::ClientResponse{}).body);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) {
      return -1;
    }
    auto it =
        page->samples.find(absl::StrCat("podgate_edge_oidc_logins_total{result=\"", result, "\"}"));
    return it == page->samples.end() ? 0 : it->second;
  }

  // The AUTH_FAILURE record edge wrote since `start` with `reason` and a message containing
  // `text`, read by the auditor through edge's API (null when none appears within 10 s).
  static nlohmann::json FindAuthFailure(absl::Time start, const std::string& reason,
                                        const std::string& text,
                                        const std::string& must_not_contain = "") {
    const std::string query =
        absl::StrCat("/api/v1/audit?kind=auth_failure&page_size=1000&start_time=",
                     absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", start, absl::UTCTimeZone()));
    for (absl::Time deadline = absl::Now() + absl::Seconds(10); absl::Now() < deadline;) {
      // ID tokens live seconds here: a fresh sign-in per look.
      Session auditor = SignIn("auditor");
      http::ClientResponse audit = Edge("GET", query, {{"podgate_token", auditor.token}});
      EXPECT_EQ(audit.status, 200) << audit.body;
      if (!must_not_contain.empty()) {
        EXPECT_THAT(audit.body, Not(HasSubstr(must_not_contain)));
      }
      const nlohmann::json body = nlohmann::json::parse(audit.body, nullptr, false);
      if (body.is_object() && body.contains("records")) {
        for (const nlohmann::json& r : body["records"]) {
          const nlohmann::json& e = r["event"];
          if (e.value("source_service", "") == "edge" && e.contains("auth_failure") &&
              e["auth_failure"].value("reason", "") == reason &&
              absl::StrContains(e["auth_failure"].value("message", ""), text)) {
            return e;
          }
        }
      }
      absl::SleepFor(absl::Milliseconds(200));
    }
    return nullptr;
  }

  // A sign-in whose ID token (spoiled by the provider for `user`) edge must refuse: the error
  // page names `reason`, nothing is signed in, the refusal is counted and audited.
  static void ExpectIdTokenRefused(const std::string& user, const std::string& reason,
                                   const std::string& detail) {
    const absl::Time start = absl::Now() - absl::Seconds(1);
    const double before = LoginCount("id_token");
    const double ok_before = LoginCount("ok");
    const size_t lines_before = provider_->process()->Lines().size();
    Browser browser;
    Login login = StartLogin();
    const std::string callback = Authorize(browser, login, user);
    http::ClientResponse r = Edge("GET", callback, {{"podgate_login", login.cookie}}, 0, false);
    // The provider did hand out a spoiled token (the test proves edge's check, not a typo). Its
    // line reaches the test through a pipe and a reader thread, maybe after edge's answer: it is
    // waited for.
    bool tampered = false;
    std::vector<std::string> lines;
    for (const absl::Time until = absl::Now() + absl::Seconds(10); !tampered;) {
      lines = provider_->process()->Lines();
      tampered = std::any_of(lines.begin() + lines_before, lines.end(), [](const std::string& l) {
        return absl::StrContains(l, "id token tampered");
      });
      if (tampered || absl::Now() > until) {
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_TRUE(tampered) << absl::StrJoin(lines, "\n");
    ExpectRefused(r, 401, "ID token was refused");
    EXPECT_THAT(r.body, HasSubstr(reason));
    EXPECT_THAT(r.body, HasSubstr(detail));
    EXPECT_EQ(LoginCount("id_token"), before + 1);
    EXPECT_EQ(LoginCount("ok"), ok_before);
    // The code was spent on the spoiled token: the same answer again signs nothing in either.
    ExpectRefused(Edge("GET", callback, {{"podgate_login", login.cookie}}, 0, false), 400,
                  "used already");
    const nlohmann::json record = FindAuthFailure(start, "oidc_id_token", reason);
    ASSERT_FALSE(record.is_null()) << "no oidc_id_token AUTH_FAILURE record naming " << reason;
    EXPECT_THAT(record["auth_failure"].value("message", ""), HasSubstr(detail));
    EXPECT_THAT(record.value("source_address", ""), StartsWith("127.0.0.1:"));
  }

  // The login cookie's content, opened and sealed again with edge's key (the test wrote the key
  // file): what only someone holding the key could do; here, to put another login's nonce in.
  static std::string Key() {
    return crypto::Sha256(absl::StrCat("podgate edge sso cookie key v1\n", kCookieKey));
  }
  static nlohmann::json OpenLoginCookie(const std::string& cookie) {
    auto raw = auth::Base64UrlDecode(cookie);
    EXPECT_TRUE(raw.has_value());
    auto plain = crypto::AeadOpen(Key(), raw.value_or(""), "podgate_login");
    EXPECT_TRUE(plain.has_value());
    return nlohmann::json::parse(plain.value_or("{}"));
  }
  static std::string SealLoginCookie(const nlohmann::json& login) {
    return auth::Base64UrlEncode(crypto::AeadSeal(Key(), login.dump(), "podgate_login"));
  }

  static std::string* dir_;
  static testing::ReservedPort* provider_port_;
  static testing::ReservedPort* edge_port_;
  static OidcProvider* provider_;
  static testing::Stack* stack_;
  static Subprocess* edge_;
};

std::string* SsoTest::dir_ = nullptr;
testing::ReservedPort* SsoTest::provider_port_ = nullptr;
testing::ReservedPort* SsoTest::edge_port_ = nullptr;
OidcProvider* SsoTest::provider_ = nullptr;
testing::Stack* SsoTest::stack_ = nullptr;
Subprocess* SsoTest::edge_ = nullptr;

TEST_F(SsoTest, ThePageLearnsThatSsoIsOn) {
  http::ClientResponse r = Edge("GET", "/api/v1/auth-config", {});
  ASSERT_EQ(r.status, 200) << r.body;
  nlohmann::json config = nlohmann::json::parse(r.body);
  EXPECT_EQ(config["sso"], true);
  EXPECT_EQ(config["provider_name"], "Test IdP");
  EXPECT_EQ(config["login_url"], "/auth/login");
}

TEST_F(SsoTest, TheCodeFlowSignsInThroughTheProvidersPageAndACommandRunsWithTheCookie) {
  const double ok_before = LoginCount("ok");
  Browser browser;
  Login login = StartLogin();
  // The login cookie: sealed, HttpOnly, Lax (it must come back on the provider's redirect),
  // only for /auth/, ten minutes.
  http::ClientResponse start = Edge("GET", "/auth/login", {}, 0, false);
  const std::string login_line = CookieLine(start, "podgate_login");
  EXPECT_THAT(login_line, HasSubstr("HttpOnly"));
  EXPECT_THAT(login_line, HasSubstr("SameSite=Lax"));
  EXPECT_THAT(login_line, HasSubstr("Path=/auth/"));
  EXPECT_THAT(login_line, HasSubstr("Max-Age=600"));
  EXPECT_THAT(login.url, HasSubstr("code_challenge_method=S256"));
  EXPECT_THAT(login.url, HasSubstr("client_id=podgate"));

  const std::string callback = Authorize(browser, login, "developer");
  http::ClientResponse r = Edge("GET", callback, {{"podgate_login", login.cookie}}, 0, false);
  ASSERT_EQ(r.status, 302) << r.body;
  EXPECT_EQ(HeaderOf(r, "Location"), "/");
  const std::string token = CookieSet(r, "podgate_token");
  const std::string refresh = CookieSet(r, "podgate_refresh");
  ASSERT_FALSE(token.empty());
  ASSERT_FALSE(refresh.empty());
  EXPECT_THAT(CookieLine(r, "podgate_token"), HasSubstr("HttpOnly"));
  EXPECT_THAT(CookieLine(r, "podgate_token"), HasSubstr("SameSite=Strict"));
  EXPECT_THAT(CookieLine(r, "podgate_refresh"), HasSubstr("Path=/auth/"));
  EXPECT_THAT(CookieLine(r, "podgate_login"), HasSubstr("Max-Age=0"));
  EXPECT_EQ(LoginCount("ok"), ok_before + 1);

  // The token cookie is the provider's ID token: who edge says the caller is...
  http::ClientResponse who = Edge("GET", "/api/v1/session", {{"podgate_token", token}});
  ASSERT_EQ(who.status, 200) << who.body;
  nlohmann::json session = nlohmann::json::parse(who.body);
  EXPECT_EQ(session["user"], "developer");
  EXPECT_EQ(session["issuer"], Issuer());
  EXPECT_THAT(session["groups"], ::testing::ElementsAre("developers"));

  // ...and what exec verifies itself: a command runs through the WebSocket with the cookie.
  http::ClientOptions o;
  o.port = static_cast<uint16_t>(edge_port_->port());
  o.headers = {{"Origin", EdgeOrigin()}, {"Cookie", "podgate_token=" + token}};
  auto ws = http::WebSocketClient::Connect(o, "/ws/v1/demo/web-1", {"podgate.v1"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  auto ready = (*ws)->Read(absl::Seconds(10));
  ASSERT_TRUE(ready.ok()) << ready.status();
  ASSERT_EQ(nlohmann::json::parse(ready->data)["type"], "ready") << ready->data;
  ASSERT_TRUE((*ws)->Write(R"({"type":"command","id":"c1","line":"echo signed-in"})", false).ok());
  auto out = (*ws)->Read(absl::Seconds(10));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->data, std::string("\x01", 1) + "signed-in\n");
  auto exit = (*ws)->Read(absl::Seconds(10));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(nlohmann::json::parse(exit->data)["code"], 0) << exit->data;
}

TEST_F(SsoTest, RefreshOutlivesAShortIdTokenWithoutSigningInAgain) {
  Session s = SignIn("developer");
  ASSERT_FALSE(s.refresh.empty());
  // Past the ID token's life (and the verifiers' 1 s of skew): the token alone is refused.
  absl::SleepFor(absl::Seconds(kIdTokenSeconds + 1.5));
  EXPECT_EQ(Edge("GET", "/api/v1/session", {{"podgate_token", s.token}}).status, 401);

  http::ClientResponse r = Edge("POST", "/auth/refresh", {{"podgate_refresh", s.refresh}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(nlohmann::json::parse(r.body)["user"], "developer");
  const std::string fresh = CookieSet(r, "podgate_token");
  ASSERT_FALSE(fresh.empty());
  EXPECT_NE(fresh, s.token);
  EXPECT_FALSE(CookieSet(r, "podgate_refresh").empty());
  http::ClientResponse who = Edge("GET", "/api/v1/session", {{"podgate_token", fresh}});
  ASSERT_EQ(who.status, 200) << who.body;
  EXPECT_EQ(nlohmann::json::parse(who.body)["user"], "developer");

  // Same origin only; a cookie edge did not seal is refused and cleared; no cookie, no session.
  EXPECT_EQ(Edge("POST", "/auth/refresh", {{"podgate_refresh", s.refresh}}, 0, false).status, 403);
  std::string forged = s.refresh;
  forged[forged.size() / 2] = forged[forged.size() / 2] == 'A' ? 'B' : 'A';
  http::ClientResponse bad = Edge("POST", "/auth/refresh", {{"podgate_refresh", forged}});
  EXPECT_EQ(bad.status, 401);
  EXPECT_THAT(bad.body, HasSubstr("sign in again"));
  EXPECT_THAT(CookieLine(bad, "podgate_refresh"), HasSubstr("Max-Age=0"));
  http::ClientResponse none = Edge("POST", "/auth/refresh", {});
  EXPECT_EQ(none.status, 401);
  EXPECT_THAT(none.body, HasSubstr("no single sign-on session"));
}

// When a JWT expires (its `exp`; the provider rounds it down to the second).
absl::Time ExpiryOf(const std::string& jwt) {
  const std::vector<std::string> parts = absl::StrSplit(jwt, '.');
  if (parts.size() != 3) {
    return absl::InfinitePast();
  }
  const std::optional<std::string> payload = auth::Base64UrlDecode(parts[1]);
  const nlohmann::json claims =
      nlohmann::json::parse(payload.value_or(""), nullptr, /*allow_exceptions=*/false);
  if (!claims.is_object() || !claims.contains("exp") || !claims["exp"].is_number_integer()) {
    return absl::InfinitePast();
  }
  return absl::FromUnixSeconds(claims["exp"].get<int64_t>());
}

TEST_F(SsoTest, AnOpenTerminalSessionOutlivesTheIdTokenItOpenedWith) {
  const absl::Time signed_in = absl::Now();
  Session s = SignIn("developer");
  // Timed from the token's own end, not from the sign-in: the provider rounds `exp` down, and
  // a slow machine (TSan) makes the sign-in, the refresh and the command take their time.
  const absl::Time first_end = ExpiryOf(s.token);
  ASSERT_GT(first_end, signed_in) << s.token;
  http::ClientOptions o;
  o.port = static_cast<uint16_t>(edge_port_->port());
  o.headers = {{"Origin", EdgeOrigin()}, {"Cookie", "podgate_token=" + s.token}};
  auto ws = http::WebSocketClient::Connect(o, "/ws/v1/demo/web-1", {"podgate.v1"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  auto ready = (*ws)->Read(absl::Seconds(10));
  ASSERT_TRUE(ready.ok()) << ready.status();
  ASSERT_EQ(nlohmann::json::parse(ready->data)["type"], "ready") << ready->data;

  // A ticket edge did not seal is refused; the session goes on.
  ASSERT_TRUE((*ws)->Write(R"({"type":"renew","ticket":"bm90LWEtdGlja2V0"})", false).ok());
  auto refused = (*ws)->Read(absl::Seconds(10));
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_THAT(refused->data, HasSubstr("renewal ticket is not one edge made"));

  // Late in the first token's life the page refreshes; the ticket from /auth/refresh renews
  // the open session at edge and exec.
  // 1.5 s before the first token ends: the refreshed one ends at least 2.5 s after it.
  absl::SleepFor(first_end - absl::Seconds(1.5) - absl::Now());
  http::ClientResponse r = Edge("POST", "/auth/refresh", {{"podgate_refresh", s.refresh}});
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string ticket = nlohmann::json::parse(r.body).value("renew_ticket", "");
  ASSERT_FALSE(ticket.empty());
  EXPECT_THAT(ticket, Not(HasSubstr(".")));  // sealed, not a JWT
  ASSERT_TRUE(
      (*ws)->Write(nlohmann::json({{"type", "renew"}, {"ticket", ticket}}).dump(), false).ok());
  auto renewed = (*ws)->Read(absl::Seconds(10));
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(nlohmann::json::parse(renewed->data)["type"], "renewed") << renewed->data;

  // Past the first token's end (when edge and exec would have closed the session), it still
  // runs commands.
  absl::SleepFor(first_end + absl::Seconds(0.3) - absl::Now());
  ASSERT_TRUE((*ws)->Write(R"({"type":"command","id":"r1","line":"echo renewed"})", false).ok());
  auto out = (*ws)->Read(absl::Seconds(10));
  ASSERT_TRUE(out.ok()) << out.status();
  // On failure, when each end was and what the renewal said (a TSan run once saw edge close the
  // session as expired here).
  EXPECT_EQ(out->data, std::string("\x01", 1) + "renewed\n")
      << "signed in at " << absl::FormatTime(signed_in) << ", now " << absl::FormatTime(absl::Now())
      << "; refresh answered " << r.body << "; renewal answered " << renewed->data;

  // Another user's credential does not take over the session.
  Session other = SignIn("sre");
  ASSERT_TRUE(
      (*ws)->Write(nlohmann::json({{"type", "renew"}, {"token", other.token}}).dump(), false).ok());
  for (int i = 0; i < 3; ++i) {
    auto m = (*ws)->Read(absl::Seconds(10));
    ASSERT_TRUE(m.ok()) << m.status();
    if (absl::StrContains(m->data, "renewal refused")) {
      EXPECT_THAT(m->data, HasSubstr("another user"));
      break;
    }
  }
}

// The provider rotates its signing key while edge and exec run, both on its --jwt_jwks_url:
// tokens signed with the new key run commands through edge and at exec without a restart; once
// the old key leaves the published set, a token it signed is refused by both.
TEST_F(SsoTest, EdgeAndExecFollowTheProvidersKeyRotationWithoutRestart) {
  std::ifstream in(provider_->keys_file());
  const nlohmann::json old_key = nlohmann::json::parse(in)["keys"][0];
  // A token the old key signed, valid for ten minutes (the provider's own live 3 s here, less
  // than a rotation takes): when it is refused below, its key is the only reason.
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  absl::StatusOr<std::string> old_token =
      OidcProvider::Sign(old_key, {{"iss", Issuer()},
                                   {"aud", "podgate"},
                                   {"sub", "developer"},
                                   {"preferred_username", "developer"},
                                   {"groups", {"developers"}},
                                   {"iat", now},
                                   {"exp", now + 600}});
  ASSERT_TRUE(old_token.ok()) << old_token.status();
  ASSERT_EQ(Edge("GET", "/api/v1/session", {{"podgate_token", *old_token}}).status, 200);
  {
    testing::ExecSession exec(stack_->exec_port(), absl::Seconds(30));
    auto ready = exec.Open(*old_token, "demo", "web-1");
    ASSERT_TRUE(ready.ok()) << ready.status();
  }

  // The provider signs with a new key and still publishes the old one.
  absl::StatusOr<nlohmann::json> fresh = OidcProvider::NewRsaKey();
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  const std::string new_kid = (*fresh)["kid"];
  ASSERT_TRUE(provider_->Rotate({{"keys", {*fresh, old_key}}}).ok());

  // The first sign-in after the rotation works at the first try: the ID token's kid is new to
  // edge, whose callback waits for the set that kid made it fetch.
  Session s = SignIn("developer");
  const std::string header = s.token.substr(0, s.token.find('.'));
  ASSERT_EQ(nlohmann::json::parse(auth::Base64UrlDecode(header).value_or("{}")).value("kid", ""),
            new_kid);
  // exec, called directly as another backend would, opens a session for it at the first try
  // too: the kid is new to exec, whose open waits the same way (without blocking the stream).
  {
    testing::ExecSession exec(stack_->exec_port(), absl::Seconds(30));
    auto ready = exec.Open(s.token, "demo", "web-1");
    ASSERT_TRUE(ready.ok()) << ready.status();
    testing::CommandOutcome out = exec.Run("echo direct");
    EXPECT_EQ(out.stdout_text, "direct\n");
    ASSERT_TRUE(out.exit.has_value());
    EXPECT_EQ(out.exit->exit_code(), 0);
  }
  // And a command runs end to end through edge with the same token.
  {
    http::ClientOptions o;
    o.port = static_cast<uint16_t>(edge_port_->port());
    o.headers = {{"Origin", EdgeOrigin()}, {"Cookie", "podgate_token=" + s.token}};
    http::ClientResponse refused;
    auto ws = http::WebSocketClient::Connect(o, "/ws/v1/demo/web-1", {"podgate.v1"}, &refused);
    ASSERT_TRUE(ws.ok()) << ws.status() << " " << refused.status << " " << refused.body;
    auto ready = (*ws)->Read(absl::Seconds(10));
    ASSERT_TRUE(ready.ok()) << ready.status();
    ASSERT_EQ(nlohmann::json::parse(ready->data)["type"], "ready") << ready->data;
    ASSERT_TRUE((*ws)->Write(R"({"type":"command","id":"k1","line":"echo rotated"})", false).ok());
    auto out = (*ws)->Read(absl::Seconds(10));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->data, std::string("\x01", 1) + "rotated\n");
  }
  // The old key is still published: its token is still good.
  EXPECT_EQ(Edge("GET", "/api/v1/session", {{"podgate_token", *old_token}}).status, 200);

  // The provider withdraws the old key and signs with a third one. The page's first call after
  // the next sign-in, the target list, is answered at the first try: edge hands the token with
  // the new kid to exec's ListTargets, which waits for the key set like open does.
  absl::StatusOr<nlohmann::json> third = OidcProvider::NewRsaKey();
  ASSERT_TRUE(third.ok()) << third.status();
  // Unknown kids ask for at most one fetch per --jwt_jwks_refresh_min (1 s here), and the last
  // rotation's did moments ago: real rotations are months apart.
  absl::SleepFor(absl::Seconds(1.2));
  ASSERT_TRUE(provider_->Rotate({{"keys", {*third, *fresh}}}).ok());
  Session later = SignIn("developer");
  const std::string later_header = later.token.substr(0, later.token.find('.'));
  ASSERT_EQ(
      nlohmann::json::parse(auth::Base64UrlDecode(later_header).value_or("{}")).value("kid", ""),
      (*third)["kid"].get<std::string>());
  http::ClientResponse targets = Edge("GET", "/api/v1/targets", {{"podgate_token", later.token}});
  EXPECT_EQ(targets.status, 200) << targets.body;
  EXPECT_THAT(targets.body, HasSubstr("web-1"));

  // The old key's token is refused now (edge and exec fetched the set without it for that kid;
  // otherwise their next background refresh, --jwt_jwks_refresh_max=2s here, would): edge
  // with 401...
  http::ClientResponse refused;
  for (absl::Time deadline = absl::Now() + absl::Seconds(10); absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(200))) {
    refused = Edge("GET", "/api/v1/session", {{"podgate_token", *old_token}});
    if (refused.status != 200) {
      break;
    }
  }
  EXPECT_EQ(refused.status, 401) << refused.body;
  EXPECT_THAT(refused.body, HasSubstr("key id that is not configured"));
  http::ClientOptions o;
  o.port = static_cast<uint16_t>(edge_port_->port());
  o.headers = {{"Origin", EdgeOrigin()}, {"Cookie", "podgate_token=" + *old_token}};
  http::ClientResponse ws_refusal;
  EXPECT_FALSE(
      http::WebSocketClient::Connect(o, "/ws/v1/demo/web-1", {"podgate.v1"}, &ws_refusal).ok());
  EXPECT_EQ(ws_refusal.status, 401);
  // ...and exec, over gRPC, with UNAUTHENTICATED.
  absl::Status at_exec;
  for (absl::Time deadline = absl::Now() + absl::Seconds(10); absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(200))) {
    testing::ExecSession exec(stack_->exec_port(), absl::Seconds(30));
    at_exec = exec.Open(*old_token, "demo", "web-1").status();
    if (!at_exec.ok()) {
      break;
    }
  }
  EXPECT_EQ(at_exec.code(), absl::StatusCode::kUnauthenticated) << at_exec;
  EXPECT_THAT(at_exec.message(), HasSubstr("key id that is not configured"));
  // The still published keys' tokens go on working at both.
  Session last = SignIn("developer");
  EXPECT_EQ(Edge("GET", "/api/v1/session", {{"podgate_token", last.token}}).status, 200);
  testing::ExecSession exec(stack_->exec_port(), absl::Seconds(30));
  ASSERT_TRUE(exec.Open(last.token, "demo", "web-1").ok());

  // A session open across a third rotation takes a refreshed token signed with the newest key
  // at the first try too: the renewal is exec's first sight of that kid.
  absl::StatusOr<nlohmann::json> fourth = OidcProvider::NewRsaKey();
  ASSERT_TRUE(fourth.ok()) << fourth.status();
  absl::SleepFor(absl::Seconds(1.2));  // past the unknown-kid rate limit, as above
  ASSERT_TRUE(provider_->Rotate({{"keys", {*fourth, *third}}}).ok());
  Session renewed = SignIn("developer");
  exec::v1::SessionRequest renew;
  renew.mutable_renew()->mutable_credential()->set_bearer_token(renewed.token);
  exec.Send(renew);
  testing::CommandOutcome after = exec.Run("echo renewed");
  EXPECT_FALSE(after.error.has_value()) << after.error->ShortDebugString();
  EXPECT_EQ(after.stdout_text, "renewed\n");
}

TEST_F(SsoTest, LogoutClearsTheCookiesAndEndsTheProvidersSession) {
  Session s = SignIn("sre");
  http::ClientResponse r =
      Edge("POST", "/auth/logout", {{"podgate_token", s.token}, {"podgate_refresh", s.refresh}});
  ASSERT_EQ(r.status, 303) << r.body;
  const std::string to = HeaderOf(r, "Location");
  EXPECT_THAT(to, StartsWith(Issuer() + "/session/end?"));
  EXPECT_THAT(to, HasSubstr("id_token_hint=" + s.token));
  EXPECT_THAT(to, HasSubstr("post_logout_redirect_uri=" + http::UrlEncode(EdgeOrigin() + "/")));
  EXPECT_THAT(CookieLine(r, "podgate_token"), HasSubstr("Max-Age=0"));
  EXPECT_THAT(CookieLine(r, "podgate_refresh"), HasSubstr("Max-Age=0"));
  // The provider's end-session page takes the hint.
  Browser browser;
  std::string page;
  auto out = browser.Open(to, &page);
  ASSERT_TRUE(out.ok()) << out.status();
  // Logout is same-origin only (a cross-site page cannot sign users out).
  EXPECT_EQ(Edge("POST", "/auth/logout", {}, 0, false).status, 403);
  // The page asks for JSON (it navigates itself) and gets the same place.
  http::ClientOptions as_page;
  as_page.port = static_cast<uint16_t>(edge_port_->port());
  as_page.headers = {{"Origin", EdgeOrigin()},
                     {"Accept", "application/json"},
                     {"Cookie", "podgate_token=" + s.token + "; podgate_refresh=" + s.refresh}};
  auto asked = http::Fetch(as_page, "POST", "/auth/logout");
  ASSERT_TRUE(asked.ok()) << asked.status();
  EXPECT_EQ(asked->status, 200);
  EXPECT_THAT(nlohmann::json::parse(asked->body).value("redirect_to", ""),
              StartsWith(Issuer() + "/session/end?"));
  EXPECT_THAT(CookieLine(*asked, "podgate_token"), HasSubstr("Max-Age=0"));
  // A browser signed in with a pasted token (no refresh cookie) signs out at edge only.
  http::ClientResponse pasted = Edge("POST", "/auth/logout", {{"podgate_token", s.token}});
  EXPECT_EQ(pasted.status, 303);
  EXPECT_EQ(HeaderOf(pasted, "Location"), "/");
  EXPECT_THAT(CookieLine(pasted, "podgate_token"), HasSubstr("Max-Age=0"));
}

TEST_F(SsoTest, AnAnswerThatDoesNotMatchItsLoginSignsNothingIn) {
  const double state_before = LoginCount("state");
  Browser browser;
  Login first = StartLogin();
  Login second = StartLogin();
  const std::string callback = Authorize(browser, first);
  // Another login's cookie (the second tab, or an attacker's own login forced on a victim).
  ExpectRefused(Edge("GET", callback, {{"podgate_login", second.cookie}}, 0, false), 400,
                "state mismatch");
  // A changed state.
  const std::string changed = absl::StrCat(callback, "&state=x");
  ExpectRefused(Edge("GET", changed, {{"podgate_login", first.cookie}}, 0, false), 400, "repeats");
  EXPECT_EQ(LoginCount("state"), state_before + 2);
  // No login cookie; a tampered one.
  ExpectRefused(Edge("GET", callback, {}, 0, false), 400, "no sign-in in progress");
  std::string tampered = first.cookie;
  tampered[5] = tampered[5] == 'A' ? 'B' : 'A';
  ExpectRefused(Edge("GET", callback, {{"podgate_login", tampered}}, 0, false), 400,
                "not one edge made");
  // The provider's own refusal, and an answer naming another issuer (mix-up).
  const std::string state =
      callback.substr(callback.find("state=") + 6,
                      callback.find('&', callback.find("state=")) - callback.find("state=") - 6);
  ExpectRefused(Edge("GET",
                     "/auth/callback?error=access_denied&error_description=no&iss=" +
                         http::UrlEncode(Issuer()) + "&state=" + state,
                     {{"podgate_login", first.cookie}}, 0, false),
                403, "access_denied");
  ExpectRefused(
      Edge("GET",
           "/auth/callback?code=c&iss=" + http::UrlEncode("https://evil.test") + "&state=" + state,
           {{"podgate_login", first.cookie}}, 0, false),
      400, "another identity provider");
  // The page never echoes the code.
  http::ClientResponse r = Edge("GET", callback, {{"podgate_login", second.cookie}}, 0, false);
  const std::string code = callback.substr(callback.find("code=") + 5, 20);
  EXPECT_THAT(r.body, Not(HasSubstr(code)));
}

TEST_F(SsoTest, ARefusedSignInIsAuditedWithoutTheCode) {
  const absl::Time start = absl::Now() - absl::Seconds(1);
  Browser browser;
  Login first = StartLogin();
  Login second = StartLogin();
  const std::string callback = Authorize(browser, first);
  ExpectRefused(Edge("GET", callback, {{"podgate_login", second.cookie}}, 0, false), 400,
                "state mismatch");
  const std::string code = callback.substr(callback.find("code=") + 5, 20);
  // The auditor reads the trail; no record carries the code.
  const nlohmann::json found = FindAuthFailure(start, "oidc_state", "state mismatch", code);
  ASSERT_FALSE(found.is_null()) << "no oidc_state AUTH_FAILURE record from edge";
  EXPECT_THAT(found.value("source_address", ""), StartsWith("127.0.0.1:"));
}

// The provider's token endpoint answers with an ID token that is wrong in one way each; the
// code exchange itself succeeds, so only edge's verification stands between it and a session.
TEST_F(SsoTest, AnIdTokenFromAnotherIssuerIsRefused) {
  // Signed with the provider's own key, but naming another issuer (a mix-up).
  ExpectIdTokenRefused("mixup", "bad_issuer", "issuer is not the configured issuer");
}

TEST_F(SsoTest, AnUnsignedIdTokenIsRefused) {
  // alg none, no signature.
  ExpectIdTokenRefused("unsigned", "unsupported_algorithm", "is not supported (HS256, RS256");
}

TEST_F(SsoTest, AnExpiredIdTokenIsRefused) {
  // Signed with the provider's key, expired a minute ago (beyond the verifiers' 1 s of skew).
  ExpectIdTokenRefused("expired", "expired", "token expired at");
}

TEST_F(SsoTest, AReplayedAnswerOrCodeIsRefused) {
  Browser browser;
  Login login = StartLogin();
  const std::string callback = Authorize(browser, login);
  ASSERT_EQ(Edge("GET", callback, {{"podgate_login", login.cookie}}, 0, false).status, 302);
  // The same answer again, with the login cookie an attacker kept: the state was used.
  ExpectRefused(Edge("GET", callback, {{"podgate_login", login.cookie}}, 0, false), 400,
                "used already");
  // At another replica (which has not seen the state): the provider refuses the code.
  testing::ReservedPort other_port;
  other_port.Release();
  auto other = StartEdge(other_port.port(), {});
  ASSERT_NE(other, nullptr);
  ExpectRefused(Edge("GET", callback, {{"podgate_login", login.cookie}}, other_port.port(), false),
                401, "invalid_grant");
  EXPECT_EQ(LoginCount("code_refused", other.get()), 1);
}

TEST_F(SsoTest, AnIdTokenForAnotherLoginsNonceIsRefused) {
  Browser browser;
  Login login = StartLogin();
  const std::string callback = Authorize(browser, login);
  // The same state and PKCE verifier (so the provider hands out tokens), another nonce: the
  // provider's ID token carries the nonce of the login that asked for it, not this one.
  nlohmann::json content = OpenLoginCookie(login.cookie);
  ASSERT_TRUE(content.contains("n"));
  content["n"] = "the-nonce-of-another-login";
  const double before = LoginCount("id_token");
  ExpectRefused(Edge("GET", callback, {{"podgate_login", SealLoginCookie(content)}}, 0, false), 401,
                "nonce");
  EXPECT_EQ(LoginCount("id_token"), before + 1);
}

TEST_F(SsoTest, AnIdTokenTooLargeForACookieIsRefusedWithAReason) {
  Browser browser;
  Login login = StartLogin();
  const std::string callback = Authorize(browser, login, "many");
  ExpectRefused(Edge("GET", callback, {{"podgate_login", login.cookie}}, 0, false), 502,
                "more than a browser keeps in a cookie");
}

TEST_F(SsoTest, AnExpiredLoginIsRefused) {
  Browser browser;
  Login login = StartLogin();
  const std::string callback = Authorize(browser, login);
  nlohmann::json content = OpenLoginCookie(login.cookie);
  content["e"] = absl::ToUnixSeconds(absl::Now() - absl::Seconds(1));
  ExpectRefused(Edge("GET", callback, {{"podgate_login", SealLoginCookie(content)}}, 0, false), 400,
                "took too long");
}

TEST_F(SsoTest, TheProviderDownAtSignInOrDuringARefreshSignsNothingIn) {
  Session s = SignIn("developer");
  ASSERT_FALSE(s.refresh.empty());
  Browser browser;
  Login login = StartLogin();
  const std::string callback = Authorize(browser, login);
  provider_->process()->Signal(SIGKILL);
  ASSERT_TRUE(provider_->process()->WaitExit(absl::Seconds(10)).ok());

  const double before = LoginCount("provider_unavailable");
  ExpectRefused(Edge("GET", callback, {{"podgate_login", login.cookie}}, 0, false), 502,
                "did not answer");
  EXPECT_EQ(LoginCount("provider_unavailable"), before + 1);

  http::ClientResponse r = Edge("POST", "/auth/refresh", {{"podgate_refresh", s.refresh}});
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_THAT(r.body, HasSubstr("unreachable"));
  EXPECT_THAT(r.body, HasSubstr("sign in again"));
  EXPECT_EQ(CookieSet(r, "podgate_token"), "");
}

TEST_F(SsoTest, CallsPastTheBoundAreRefusedAtOnce) {
  Session s = SignIn("developer");
  ASSERT_FALSE(s.refresh.empty());
  testing::ReservedPort port;
  port.Release();
  auto edge = StartEdge(port.port(), {"--oidc_max_pending=1"});
  ASSERT_NE(edge, nullptr);
  // A provider that accepts connections and never answers: the call waits out --oidc_timeout.
  ASSERT_TRUE(provider_->process()->Freeze().ok());
  http::ClientResponse slow;
  std::thread first([&] {
    slow = Edge("POST", "/auth/refresh", {{"podgate_refresh", s.refresh}}, port.port());
  });
  absl::SleepFor(absl::Milliseconds(300));
  const absl::Time start = absl::Now();
  http::ClientResponse busy =
      Edge("POST", "/auth/refresh", {{"podgate_refresh", s.refresh}}, port.port());
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  first.join();
  provider_->process()->Signal(SIGCONT);
  EXPECT_EQ(busy.status, 503) << busy.body;
  EXPECT_THAT(busy.body, HasSubstr("too many"));
  EXPECT_EQ(slow.status, 401) << slow.body;
  EXPECT_THAT(slow.body, HasSubstr("unreachable"));
}

TEST_F(SsoTest, SignInWaitsForAProviderUnreachableAtStart) {
  testing::ReservedPort closed;  // nothing listens: the provider is down when edge starts
  testing::ReservedPort port;
  port.Release();
  const std::string issuer = absl::StrCat("http://127.0.0.1:", closed.port());
  auto edge = StartEdge(port.port(), {}, issuer);
  ASSERT_NE(edge, nullptr);
  http::ClientResponse r = Edge("GET", "/auth/login", {}, port.port(), false);
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_THAT(r.body, HasSubstr("has not reached the identity provider"));
  EXPECT_EQ(CookieSet(r, "podgate_login"), "");
}

TEST_F(SsoTest, ABadCombinationOfFlagsStopsEdgeWithAClearError) {
  struct Case {
    std::vector<std::string> flags;
    std::string error;
  };
  for (const Case& c : std::vector<Case>{
           {{"--jwt_issuer=https://other.test"}, "needs --jwt_issuer="},
           {{"--jwt_audience=other"}, "--jwt_audience must include --oidc_client_id"},
           {{"--oidc_cookie_key_file="}, "needs --oidc_cookie_key_file"},
           {{"--oidc_redirect_url=http://127.0.0.1:1/callback"}, "/auth/callback"},
           {{"--allowed_origins=https://elsewhere.test"}, "--allowed_origins must list"}}) {
    testing::ReservedPort port;
    port.Release();
    std::vector<std::string> args = {"--grpc_address=127.0.0.1:0",
                                     "--metrics_address=",
                                     absl::StrCat("--http_address=127.0.0.1:", port.port()),
                                     "--allowed_origins=" + EdgeOrigin(),
                                     "--oidc_issuer=" + Issuer(),
                                     "--oidc_client_id=podgate",
                                     "--oidc_redirect_url=" + EdgeOrigin() + "/auth/callback",
                                     "--oidc_cookie_key_file=" + *dir_ + "/cookie.key"};
    for (const std::string& f : JwtFlags(Issuer())) {
      args.push_back(f);
    }
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    auto edge = Subprocess::Start(PODGATE_EDGE_BIN, args);
    ASSERT_TRUE(edge.ok());
    auto status = (*edge)->WaitExit(absl::Seconds(20));
    ASSERT_TRUE(status.ok()) << c.error;
    EXPECT_NE(*status, 0) << c.error;
    EXPECT_THAT(absl::StrJoin((*edge)->Lines(), "\n"), HasSubstr(c.error));
  }
}

}  // namespace
}  // namespace podgate
