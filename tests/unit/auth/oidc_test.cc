#include "auth/oidc.h"

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/url.h"

namespace podgate::auth::oidc {
namespace {

using ::testing::HasSubstr;

constexpr char kIssuer[] = "https://login.example.com/realms/podgate";

nlohmann::json Discovery() {
  return {{"issuer", kIssuer},
          {"authorization_endpoint", absl::StrCat(kIssuer, "/auth")},
          {"token_endpoint", absl::StrCat(kIssuer, "/token")},
          {"jwks_uri", absl::StrCat(kIssuer, "/certs")},
          {"end_session_endpoint", absl::StrCat(kIssuer, "/logout")},
          {"device_authorization_endpoint", absl::StrCat(kIssuer, "/device")},
          {"response_types_supported", {"code", "id_token"}},
          {"code_challenge_methods_supported", {"plain", "S256"}},
          {"id_token_signing_alg_values_supported", {"RS256"}},
          {"token_endpoint_auth_methods_supported",
           {"client_secret_basic", "client_secret_post", "none"}},
          {"authorization_response_iss_parameter_supported", true}};
}

ProviderMetadata Provider() {
  auto p = ParseDiscovery(Discovery().dump(), kIssuer);
  EXPECT_TRUE(p.ok()) << p.status();
  return *p;
}

ClientConfig Client(std::string id, std::string secret, std::string method, std::string redirect,
                    std::string scopes = "openid profile email groups offline_access") {
  ClientConfig c;
  c.client_id = std::move(id);
  c.client_secret = std::move(secret);
  c.auth_method = std::move(method);
  c.redirect_uri = std::move(redirect);
  c.scopes = std::move(scopes);
  return c;
}

std::map<std::string, std::string> Form(const std::string& body) {
  std::map<std::string, std::string> out;
  auto params = http::ParseQuery(body);
  EXPECT_TRUE(params.ok()) << params.status();
  for (auto& [k, v] : params.value_or(std::vector<std::pair<std::string, std::string>>{})) {
    out[k] = v;
  }
  return out;
}

TEST(OidcDiscoveryTest, ADocumentForThisIssuerParses) {
  ProviderMetadata p = Provider();
  EXPECT_EQ(p.issuer, kIssuer);
  EXPECT_EQ(p.token_endpoint.ToString(), absl::StrCat(kIssuer, "/token"));
  EXPECT_EQ(p.jwks_uri.target, "/realms/podgate/certs");
  ASSERT_TRUE(p.end_session_endpoint.has_value());
  ASSERT_TRUE(p.device_authorization_endpoint.has_value());
  EXPECT_FALSE(p.revocation_endpoint.has_value());
  EXPECT_TRUE(p.iss_parameter_supported);
  EXPECT_EQ(DiscoveryUrl(kIssuer)->ToString(),
            absl::StrCat(kIssuer, "/.well-known/openid-configuration"));
  EXPECT_EQ(DiscoveryUrl("https://idp.example/")->target, "/.well-known/openid-configuration");
}

// Each broken document is refused with a message naming what is wrong.
TEST(OidcDiscoveryTest, BrokenOrForeignDocumentsAreRefusedClearly) {
  struct Case {
    const char* what;
    std::function<void(nlohmann::json&)> edit;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"another issuer (mix-up)", [](auto& d) { d["issuer"] = "https://evil.example"; },
       "expected 'https://login.example.com/realms/podgate'"},
      {"issuer with a trailing slash", [](auto& d) { d["issuer"] = absl::StrCat(kIssuer, "/"); },
       "'issuer' is"},
      {"no token endpoint", [](auto& d) { d.erase("token_endpoint"); }, "'token_endpoint'"},
      {"http endpoint", [](auto& d) { d["token_endpoint"] = "http://login.example.com/token"; },
       "not https"},
      {"endpoint with user info",
       [](auto& d) { d["jwks_uri"] = "https://user:pw@login.example.com/certs"; }, "'jwks_uri'"},
      {"no S256", [](auto& d) { d["code_challenge_methods_supported"] = {"plain"}; }, "S256"},
      {"no code flow", [](auto& d) { d["response_types_supported"] = {"id_token"}; },
       "authorization code flow"},
      {"only HS256", [](auto& d) { d["id_token_signing_alg_values_supported"] = {"HS256"}; },
       "RS256, ES256"},
      {"methods not a list", [](auto& d) { d["code_challenge_methods_supported"] = "S256"; },
       "not an array"},
      {"bad logout endpoint", [](auto& d) { d["end_session_endpoint"] = "javascript:alert(1)"; },
       "'end_session_endpoint'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    nlohmann::json d = Discovery();
    c.edit(d);
    auto p = ParseDiscovery(d.dump(), kIssuer);
    ASSERT_FALSE(p.ok());
    EXPECT_THAT(p.status().message(), HasSubstr(c.message));
  }
  EXPECT_THAT(ParseDiscovery("<html>", kIssuer).status().message(), HasSubstr("not a JSON"));
  EXPECT_THAT(ParseDiscovery("[]", kIssuer).status().message(), HasSubstr("not a JSON"));
  // http endpoints only for a loopback http issuer (tests and the demo).
  nlohmann::json local = Discovery();
  const std::string loopback = "http://127.0.0.1:9000";
  local["issuer"] = loopback;
  for (const char* f : {"authorization_endpoint", "token_endpoint", "jwks_uri"}) {
    local[f] = absl::StrCat(loopback, "/", f);
  }
  local["end_session_endpoint"] = absl::StrCat(loopback, "/logout");
  local["device_authorization_endpoint"] = absl::StrCat(loopback, "/device");
  EXPECT_TRUE(ParseDiscovery(local.dump(), loopback).ok());
  EXPECT_THAT(DiscoveryUrl("http://login.example.com").status().message(), HasSubstr("loopback"));
  EXPECT_THAT(DiscoveryUrl("https://login.example.com?x=1").status().message(),
              HasSubstr("no query"));
}

TEST(OidcClientTest, TheClientIsCheckedAgainstTheProvider) {
  ProviderMetadata p = Provider();
  ClientConfig c = Client("podgate", "s3cret", "", "https://podgate.example.com/auth/callback");
  ASSERT_TRUE(CheckClient(c, p).ok());
  EXPECT_EQ(c.auth_method, "client_secret_basic");
  ClientConfig pub = Client("podgate-cli", "", "", "");
  ASSERT_TRUE(CheckClient(pub, p, /*needs_redirect=*/false).ok()) << CheckClient(pub, p, false);
  EXPECT_EQ(pub.auth_method, "none");
  p.token_endpoint_auth_methods = {"client_secret_post", "none"};
  c.auth_method = "";
  ASSERT_TRUE(CheckClient(c, p).ok());
  EXPECT_EQ(c.auth_method, "client_secret_post");

  const std::vector<std::pair<ClientConfig, std::string>> bad = {
      {Client("", "s", "", "https://a.example/cb"), "client id"},
      {Client("id", "s", "", "http://a.example/cb"), "must be https"},
      {Client("id", "s", "", "not a url"), "redirect URI"},
      {Client("id", "s", "", "https://a.example/cb", "profile email"), "'openid'"},
      {Client("id", "s", "private_key_jwt", "https://a.example/cb"), "is not client_secret_basic"},
      {Client("id", "", "client_secret_post", "https://a.example/cb"), "needs a client secret"},
      {Client("id", "s", "none", "https://a.example/cb"), "auth method is none"},
      {Client("id", "s", "client_secret_basic", "https://a.example/cb"), "does not accept"},
  };
  for (auto [client, message] : bad) {
    SCOPED_TRACE(message);
    absl::Status s = CheckClient(client, p);
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.message(), HasSubstr(message));
  }
}

TEST(OidcRequestTest, TheAuthorizationRequestCarriesStateNonceAndPkce) {
  ProviderMetadata p = Provider();
  ClientConfig c = Client("podgate", "s3cret", "", "https://podgate.example.com/auth/callback");
  const std::string verifier = RandomUrlToken();
  EXPECT_EQ(verifier.size(), 43u);
  EXPECT_NE(verifier, RandomUrlToken());
  // RFC 7636, appendix B.
  EXPECT_EQ(PkceChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
  const std::string url =
      AuthorizationRequestUrl(p, c, "st&ate", "n=once", PkceChallenge(verifier));
  auto parsed = http::ParseHttpUrl(url);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_TRUE(absl::StartsWith(parsed->target, "/realms/podgate/auth?"));
  auto q = Form(parsed->target.substr(parsed->target.find('?') + 1));
  EXPECT_EQ(q["response_type"], "code");
  EXPECT_EQ(q["client_id"], "podgate");
  EXPECT_EQ(q["redirect_uri"], "https://podgate.example.com/auth/callback");
  EXPECT_EQ(q["state"], "st&ate");
  EXPECT_EQ(q["nonce"], "n=once");
  EXPECT_EQ(q["code_challenge_method"], "S256");
  EXPECT_EQ(q["code_challenge"], PkceChallenge(verifier));
  EXPECT_THAT(q["scope"], HasSubstr("openid"));
  EXPECT_EQ(q.count("client_secret"), 0u);
}

TEST(OidcRequestTest, TokenRequestsAuthenticateTheClientAsConfigured) {
  ProviderMetadata p = Provider();
  ClientConfig basic =
      Client("pod gate", "s3:cr/et", "client_secret_basic", "https://x.example/cb");
  TokenRequest r = CodeExchange(p, basic, "the-code", "the-verifier");
  EXPECT_EQ(r.url.ToString(), absl::StrCat(kIssuer, "/token"));
  auto f = Form(r.body);
  EXPECT_EQ(f["grant_type"], "authorization_code");
  EXPECT_EQ(f["code"], "the-code");
  EXPECT_EQ(f["code_verifier"], "the-verifier");
  EXPECT_EQ(f["redirect_uri"], "https://x.example/cb");
  EXPECT_EQ(f.count("client_secret"), 0u);
  // RFC 6749 2.3.1: id and secret form-encoded before base64.
  std::string auth;
  for (auto& [k, v] : r.headers) {
    if (k == "Authorization") {
      auth = v;
    }
  }
  std::string decoded;
  ASSERT_TRUE(absl::Base64Unescape(auth.substr(6), &decoded));
  EXPECT_EQ(decoded, "pod%20gate:s3%3Acr%2Fet");

  ClientConfig post = Client("podgate", "s3cret", "client_secret_post", "https://x.example/cb");
  f = Form(RefreshRequest(p, post, "rt").body);
  EXPECT_EQ(f["grant_type"], "refresh_token");
  EXPECT_EQ(f["refresh_token"], "rt");
  EXPECT_EQ(f["client_id"], "podgate");
  EXPECT_EQ(f["client_secret"], "s3cret");

  ClientConfig pub = Client("podgate-cli", "", "none", "");
  auto device = DeviceAuthorizationRequest(p, pub);
  ASSERT_TRUE(device.ok());
  EXPECT_EQ(device->url.ToString(), absl::StrCat(kIssuer, "/device"));
  f = Form(device->body);
  EXPECT_EQ(f["client_id"], "podgate-cli");
  EXPECT_EQ(f.count("client_secret"), 0u);
  f = Form(DeviceTokenRequest(p, pub, "dc").body);
  EXPECT_EQ(f["grant_type"], "urn:ietf:params:oauth:grant-type:device_code");
  EXPECT_EQ(f["device_code"], "dc");
  p.device_authorization_endpoint.reset();
  EXPECT_THAT(DeviceAuthorizationRequest(p, pub).status().message(), HasSubstr("device flow"));
}

TEST(OidcCallbackTest, OnlyTheAnswerToThisLoginFromThisProviderIsAccepted) {
  ProviderMetadata p = Provider();
  using Q = std::vector<std::pair<std::string, std::string>>;
  auto ok = CheckCallback({{"code", "c1"}, {"state", "s1"}, {"iss", kIssuer}}, "s1", p);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, "c1");
  const std::vector<std::pair<Q, std::string>> bad = {
      {{{"code", "c1"}, {"state", "s2"}, {"iss", kIssuer}}, "state mismatch"},
      {{{"code", "c1"}, {"iss", kIssuer}}, "state mismatch"},
      {{{"code", "c1"}, {"state", ""}, {"iss", kIssuer}}, "state mismatch"},
      {{{"code", "c1"}, {"state", "s1"}, {"iss", "https://evil.example"}}, "iss mismatch"},
      // This provider announced RFC 9207: an answer without iss is refused.
      {{{"code", "c1"}, {"state", "s1"}}, "iss mismatch"},
      {{{"state", "s1"}, {"iss", kIssuer}}, "no code"},
      {{{"code", "c1"}, {"code", "c2"}, {"state", "s1"}, {"iss", kIssuer}}, "repeats 'code'"},
      {{{"state", "s1"},
        {"iss", kIssuer},
        {"error", "access_denied"},
        {"error_description", "user\ncancelled"}},
       "refused the sign-in: access_denied: user?cancelled"},
  };
  for (const auto& [query, message] : bad) {
    SCOPED_TRACE(message);
    auto r = CheckCallback(query, "s1", p);
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr(message));
  }
  // A provider that did not announce RFC 9207 may omit iss (but not send a wrong one).
  p.iss_parameter_supported = false;
  EXPECT_TRUE(CheckCallback({{"code", "c1"}, {"state", "s1"}}, "s1", p).ok());
  EXPECT_FALSE(CheckCallback({{"code", "c1"}, {"state", "s1"}, {"iss", "x"}}, "s1", p).ok());
  // An empty expected state (a login that never started) matches nothing.
  EXPECT_FALSE(CheckCallback({{"code", "c1"}, {"state", ""}}, "", p).ok());
}

TEST(OidcTokenResponseTest, AnswersAndRefusalsAreReadAsTheProviderMeantThem) {
  auto ok = ParseTokenResponse(
      200, R"({"access_token":"at","id_token":"it","refresh_token":"rt","token_type":"Bearer",
               "expires_in":300})");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->id_token, "it");
  EXPECT_EQ(ok->refresh_token, "rt");
  EXPECT_EQ(ok->expires_in, absl::Seconds(300));
  auto refused = ParseTokenResponse(
      400, R"({"error":"invalid_grant","error_description":"grant request is invalid"})");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(OAuthError(refused.status()), "invalid_grant");
  EXPECT_THAT(refused.status().message(), HasSubstr("invalid_grant: grant request is invalid"));
  EXPECT_EQ(OAuthError(ParseTokenResponse(400, R"({"error":"authorization_pending"})").status()),
            "authorization_pending");
  for (auto [status, body, message] : std::vector<std::tuple<int, std::string, std::string>>{
           {500, R"({"error":"server_error"})", "HTTP 500"},
           {502, "<html>bad gateway</html>", "HTTP 502"},
           {200, "not json", "not a JSON object"},
           {200, R"({"id_token":"it","token_type":"Bearer"})", "no access_token"},
           {200, R"({"access_token":"at","token_type":"Bearer"})", "no id_token"},
           {200, R"({"access_token":"at","id_token":"it","token_type":"mac"})", "not Bearer"},
       }) {
    SCOPED_TRACE(body);
    auto r = ParseTokenResponse(status, body);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(r.status().message(), HasSubstr(message));
    EXPECT_EQ(OAuthError(r.status()), "");
  }
  EXPECT_TRUE(ParseTokenResponse(200, R"({"access_token":"at","token_type":"bearer"})",
                                 /*need_id_token=*/false)
                  .ok());
}

TEST(OidcTokenResponseTest, DeviceAuthorizationAnswersAreChecked) {
  auto ok = ParseDeviceAuthorization(
      200,
      R"({"device_code":"dc","user_code":"ABCD-EFGH","verification_uri":"https://x.example/device",
               "expires_in":600})");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->interval, absl::Seconds(5));
  EXPECT_EQ(ok->expires_in, absl::Seconds(600));
  auto r = ParseDeviceAuthorization(
      200,
      R"({"device_code":"dc","user_code":"x","verification_uri":"javascript:x","expires_in":6})");
  EXPECT_THAT(r.status().message(), HasSubstr("not a URL"));
  r = ParseDeviceAuthorization(200, R"({"device_code":"dc","expires_in":6})");
  EXPECT_THAT(r.status().message(), HasSubstr("lacks"));
  r = ParseDeviceAuthorization(400, R"({"error":"invalid_client"})");
  EXPECT_EQ(OAuthError(r.status()), "invalid_client");
}

TEST(OidcLogoutTest, TheLogoutUrlNamesTheClientAndWhereToReturn) {
  ProviderMetadata p = Provider();
  ClientConfig c = Client("podgate", "s", "", "https://x.example/cb");
  auto url = LogoutUrl(p, c, "id.tok.en", "https://x.example/");
  ASSERT_TRUE(url.has_value());
  auto parsed = http::ParseHttpUrl(*url);
  ASSERT_TRUE(parsed.ok());
  auto q = Form(parsed->target.substr(parsed->target.find('?') + 1));
  EXPECT_EQ(q["client_id"], "podgate");
  EXPECT_EQ(q["id_token_hint"], "id.tok.en");
  EXPECT_EQ(q["post_logout_redirect_uri"], "https://x.example/");
  p.end_session_endpoint.reset();
  EXPECT_FALSE(LogoutUrl(p, c, "", "").has_value());
}

TEST(OidcSecretsTest, ComparisonIsExact) {
  EXPECT_TRUE(SecretsEqual("abc", "abc"));
  EXPECT_FALSE(SecretsEqual("abc", "abd"));
  EXPECT_FALSE(SecretsEqual("abc", "abcd"));
  EXPECT_FALSE(SecretsEqual("", "a"));
  EXPECT_TRUE(SecretsEqual("", ""));
}

}  // namespace
}  // namespace podgate::auth::oidc
