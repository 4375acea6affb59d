// Sign-in against a real, certified OpenID provider (tools/oidc-provider: the `oidc-provider`
// package run with node on loopback), through podgate's relying-party steps (lib/auth/oidc)
// and its JWKS URL source: discovery, the authorization code flow with PKCE through the
// provider's own login page, the ID token's checks, refresh, the device flow, key rotation,
// and the refusals a relying party must make on the way.
#include "auth/oidc.h"

#include <csignal>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "auth/base64url.h"
#include "auth/jwks_url.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/client.h"
#include "http/url.h"
#include "support/oidc_provider.h"

namespace podgate::auth::oidc {
namespace {

using testing::Browser;
using ::testing::HasSubstr;
using testing::OidcProvider;

constexpr char kRedirect[] = "http://127.0.0.1:8080/auth/callback";

absl::StatusOr<http::ClientResponse> Send(const TokenRequest& req) {
  http::ClientOptions options;
  options.host = req.url.host;
  options.port = req.url.port;
  options.tls = req.url.tls;
  options.headers = req.headers;
  return http::Fetch(options, "POST", req.url.target, req.body);
}

absl::StatusOr<TokenResponse> Tokens(const TokenRequest& req, bool need_id_token = true) {
  absl::StatusOr<http::ClientResponse> r = Send(req);
  if (!r.ok()) {
    return r.status();
  }
  return ParseTokenResponse(r->status, r->body, need_id_token);
}

absl::StatusOr<ProviderMetadata> Discover(const std::string& issuer) {
  absl::StatusOr<http::HttpUrl> url = DiscoveryUrl(issuer);
  if (!url.ok()) {
    return url.status();
  }
  http::ClientOptions options;
  options.host = url->host;
  options.port = url->port;
  absl::StatusOr<http::ClientResponse> r = http::Fetch(options, "GET", url->target);
  if (!r.ok()) {
    return r.status();
  }
  return ParseDiscovery(r->body, issuer);
}

class OidcProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto provider = OidcProvider::Start(Config());
    ASSERT_TRUE(provider.ok()) << provider.status();
    provider_ = *std::move(provider);
    auto metadata = Discover(provider_->issuer());
    ASSERT_TRUE(metadata.ok()) << metadata.status();
    metadata_ = *metadata;
    web_.client_id = "podgate";
    web_.client_secret = "podgate-test-secret";
    web_.redirect_uri = kRedirect;
    ASSERT_TRUE(CheckClient(web_, metadata_).ok());
    cli_.client_id = "podgate-cli";
    ASSERT_TRUE(CheckClient(cli_, metadata_, /*needs_redirect=*/false).ok());
    JwksUrlOptions jwks;
    jwks.url = metadata_.jwks_uri.ToString();
    jwks.min_refresh = absl::Milliseconds(200);
    auto source = JwksUrlSource::Start(jwks);
    ASSERT_TRUE(source.ok()) << source.status();
    VerifierOptions options;
    options.issuer = provider_->issuer();
    options.audiences = {web_.client_id};
    options.user_claim = "preferred_username";
    options.groups_claim = "realm_access.roles";
    auto verifier = Verifier::Create(*source, options);
    ASSERT_TRUE(verifier.ok()) << verifier.status();
    verifier_ = std::make_unique<Verifier>(*std::move(verifier));
  }

  virtual nlohmann::json Config() {
    return {
        {"groupsClaim", "realm_access.roles"},
        {"ttl", {{"IdToken", 300}}},
        {"clients",
         {{{"client_id", "podgate"},
           {"client_secret", "podgate-test-secret"},
           {"redirect_uris", {kRedirect}},
           {"post_logout_redirect_uris", {"http://127.0.0.1:8080/"}},
           {"grant_types", {"authorization_code", "refresh_token"}},
           {"response_types", {"code"}},
           {"token_endpoint_auth_method", "client_secret_basic"}},
          {{"client_id", "podgate-cli"},
           {"grant_types", {"urn:ietf:params:oauth:grant-type:device_code", "refresh_token"}},
           {"response_types", nlohmann::json::array()},
           {"token_endpoint_auth_method", "none"}}}},
    };
  }

  struct Login {
    std::string state = RandomUrlToken();
    std::string nonce = RandomUrlToken();
    std::string verifier = RandomUrlToken();
    std::string url;
  };
  Login StartLogin() {
    Login login;
    login.url = AuthorizationRequestUrl(metadata_, web_, login.state, login.nonce,
                                        PkceChallenge(login.verifier));
    return login;
  }
  // The callback's query string as the browser brought it back.
  static std::vector<std::pair<std::string, std::string>> Query(const std::string& url) {
    const size_t q = url.find('?');
    if (q == std::string::npos) {
      return {};
    }
    auto params = http::ParseQuery(url.substr(q + 1));
    EXPECT_TRUE(params.ok()) << params.status();
    return params.value_or(std::vector<std::pair<std::string, std::string>>{});
  }

  std::unique_ptr<OidcProvider> provider_;
  ProviderMetadata metadata_;
  ClientConfig web_, cli_;
  std::unique_ptr<Verifier> verifier_;
  Browser browser_;
};

TEST_F(OidcProviderTest, TheCodeFlowSignsInThroughTheProvidersLoginPageAndRefreshes) {
  EXPECT_TRUE(metadata_.end_session_endpoint.has_value());
  Login login = StartLogin();
  auto callback = browser_.SignIn(login.url, "sre", "sre");
  ASSERT_TRUE(callback.ok()) << callback.status();
  ASSERT_TRUE(absl::StartsWith(*callback, kRedirect)) << *callback;
  auto code = CheckCallback(Query(*callback), login.state, metadata_);
  ASSERT_TRUE(code.ok()) << code.status();
  auto tokens = Tokens(CodeExchange(metadata_, web_, *code, login.verifier));
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_FALSE(tokens->refresh_token.empty());
  auto id = VerifyIdToken(*verifier_, tokens->id_token, login.nonce, web_.client_id);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->principal.user(), "sre");
  EXPECT_THAT(id->principal.groups(), ::testing::ElementsAre("sre", "developers"));

  // The same token checked against another login's nonce: a replayed or injected ID token.
  auto replayed = VerifyIdToken(*verifier_, tokens->id_token, RandomUrlToken(), web_.client_id);
  ASSERT_FALSE(replayed.ok());
  EXPECT_THAT(replayed.status().message(), HasSubstr("nonce"));

  // Refresh: a new ID token for the same user, no login page.
  auto refreshed = Tokens(RefreshRequest(metadata_, web_, tokens->refresh_token));
  ASSERT_TRUE(refreshed.ok()) << refreshed.status();
  auto id2 = VerifyIdToken(*verifier_, refreshed->id_token, "", web_.client_id);
  ASSERT_TRUE(id2.ok()) << id2.status();
  EXPECT_EQ(id2->principal.user(), "sre");
  // A made-up refresh token is refused by the provider.
  auto forged = Tokens(RefreshRequest(metadata_, web_, "made-up"));
  EXPECT_EQ(OAuthError(forged.status()), "invalid_grant");

  // A code is good once (RFC 6749 4.1.2); its replay also revokes what it granted, so a
  // stolen-and-replayed code ends the victim's refreshes too.
  auto again = Tokens(CodeExchange(metadata_, web_, *code, login.verifier));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(OAuthError(again.status()), "invalid_grant");
  const std::string latest =
      refreshed->refresh_token.empty() ? tokens->refresh_token : refreshed->refresh_token;
  EXPECT_EQ(OAuthError(Tokens(RefreshRequest(metadata_, web_, latest)).status()), "invalid_grant");

  // RP-initiated logout: the provider's end-session page accepts the hint.
  auto logout = LogoutUrl(metadata_, web_, refreshed->id_token, "http://127.0.0.1:8080/");
  ASSERT_TRUE(logout.has_value());
  std::string page;
  auto out = browser_.Open(*logout, &page);
  ASSERT_TRUE(out.ok()) << out.status();
}

TEST_F(OidcProviderTest, ACodeIsUselessWithoutItsVerifierOrWithAWrongSecret) {
  Login login = StartLogin();
  auto callback = browser_.SignIn(login.url, "developer", "developer");
  ASSERT_TRUE(callback.ok()) << callback.status();
  auto code = CheckCallback(Query(*callback), login.state, metadata_);
  ASSERT_TRUE(code.ok()) << code.status();
  // An attacker who stole the code has no verifier (PKCE).
  auto stolen = Tokens(CodeExchange(metadata_, web_, *code, RandomUrlToken()));
  ASSERT_FALSE(stolen.ok());
  EXPECT_EQ(OAuthError(stolen.status()), "invalid_grant");
  // A wrong client secret.
  ClientConfig wrong = web_;
  wrong.client_secret = "guess";
  Login second = StartLogin();
  auto callback2 = browser_.SignIn(second.url, "developer", "developer");
  ASSERT_TRUE(callback2.ok()) << callback2.status();
  auto code2 = CheckCallback(Query(*callback2), second.state, metadata_);
  ASSERT_TRUE(code2.ok());
  auto refused = Tokens(CodeExchange(metadata_, wrong, *code2, second.verifier));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(OAuthError(refused.status()), "invalid_client");
  // The answer of one login does not complete another (state).
  EXPECT_THAT(CheckCallback(Query(*callback2), login.state, metadata_).status().message(),
              HasSubstr("state mismatch"));
}

TEST_F(OidcProviderTest, AWrongPasswordGivesNoCode) {
  Login login = StartLogin();
  std::string page;
  auto callback = browser_.SignIn(login.url, "sre", "wrong", &page);
  ASSERT_TRUE(callback.ok()) << callback.status();
  EXPECT_EQ(*callback, "");  // still on the provider's login page
  EXPECT_THAT(page, HasSubstr("Wrong username or password"));
}

TEST_F(OidcProviderTest, TheDeviceFlowSignsInTheCommandLine) {
  auto start = DeviceAuthorizationRequest(metadata_, cli_);
  ASSERT_TRUE(start.ok()) << start.status();
  auto answer = Send(*start);
  ASSERT_TRUE(answer.ok()) << answer.status();
  auto device = ParseDeviceAuthorization(answer->status, answer->body);
  ASSERT_TRUE(device.ok()) << device.status();
  // Before the user approves: authorization_pending.
  auto pending = Tokens(DeviceTokenRequest(metadata_, cli_, device->device_code));
  ASSERT_FALSE(pending.ok());
  EXPECT_EQ(OAuthError(pending.status()), "authorization_pending");
  ASSERT_TRUE(
      browser_.ApproveDevice(device->verification_uri, device->user_code, "auditor", "auditor")
          .ok());
  auto tokens = Tokens(DeviceTokenRequest(metadata_, cli_, device->device_code));
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  // The CLI's ID token is for the CLI's client id.
  VerifierOptions options = verifier_->options();
  options.audiences = {"podgate-cli"};
  JwksUrlOptions jwks;
  jwks.url = metadata_.jwks_uri.ToString();
  auto cli_verifier = Verifier::Create(*JwksUrlSource::Start(jwks), options);
  ASSERT_TRUE(cli_verifier.ok());
  auto id = VerifyIdToken(*cli_verifier, tokens->id_token, "", "podgate-cli");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->principal.user(), "auditor");
  // The web client does not accept the CLI's token (audience).
  EXPECT_EQ(AuthFailureReason(verifier_->Verify(tokens->id_token).status()), "bad_audience");
}

TEST_F(OidcProviderTest, KeyRotationIsFollowedWithoutRestartAndARemovedKeyIsRefused) {
  Login login = StartLogin();
  auto callback = browser_.SignIn(login.url, "sre", "sre");
  ASSERT_TRUE(callback.ok()) << callback.status();
  auto code = CheckCallback(Query(*callback), login.state, metadata_);
  ASSERT_TRUE(code.ok());
  auto tokens = Tokens(CodeExchange(metadata_, web_, *code, login.verifier));
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  const std::string old_token = tokens->id_token;
  ASSERT_TRUE(verifier_->Verify(old_token).ok());

  // The provider publishes a new key and signs with it; the old one stays published.
  std::ifstream in(provider_->keys_file());
  nlohmann::json jwks = nlohmann::json::parse(in);
  auto fresh = OidcProvider::NewRsaKey();
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  nlohmann::json rotated = {{"keys", {*fresh, jwks["keys"][0]}}};
  ASSERT_TRUE(provider_->Rotate(rotated).ok());
  auto refreshed = Tokens(RefreshRequest(metadata_, web_, tokens->refresh_token));
  ASSERT_TRUE(refreshed.ok()) << refreshed.status();
  // The first verification names an unknown kid and starts an early fetch; it succeeds
  // once that fetch is in.
  absl::StatusOr<VerifiedToken> verified = verifier_->Verify(refreshed->id_token);
  for (int i = 0; i < 50 && !verified.ok(); ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    verified = verifier_->Verify(refreshed->id_token);
  }
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verifier_->Verify(old_token).ok());

  // The old key is withdrawn: tokens it signed are refused once the set is fetched again.
  ASSERT_TRUE(provider_->Rotate({{"keys", {*fresh}}}).ok());
  // A token naming the new key again fetches nothing; force a refetch with an unknown kid.
  absl::StatusOr<VerifiedToken> old = verifier_->Verify(old_token);
  for (int i = 0; i < 50 && old.ok(); ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    auto other = OidcProvider::NewRsaKey();  // a kid nobody publishes triggers a fetch
    ASSERT_TRUE(other.ok());
    (void)verifier_->Verify(absl::StrCat(
        Base64UrlEncode(nlohmann::json({{"alg", "RS256"}, {"kid", (*other)["kid"]}}).dump()),
        ".e30.c2ln"));
    old = verifier_->Verify(old_token);
  }
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(AuthFailureReason(old.status()), "unknown_key");
  EXPECT_TRUE(verifier_->Verify(refreshed->id_token).ok());
}

TEST(OidcProviderDownTest, DiscoveryAndTokenCallsFailClearlyWhenTheProviderIsDown) {
  auto provider = OidcProvider::Start();
  ASSERT_TRUE(provider.ok()) << provider.status();
  const std::string issuer = (*provider)->issuer();
  auto metadata = Discover(issuer);
  ASSERT_TRUE(metadata.ok()) << metadata.status();
  (*provider)->process()->Signal(SIGKILL);
  ASSERT_TRUE((*provider)->process()->WaitExit(absl::Seconds(10)).ok());
  auto down = Discover(issuer);
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable);
  ClientConfig web;
  web.client_id = "podgate";
  web.client_secret = "podgate-demo-secret";
  web.redirect_uri = kRedirect;
  auto refresh = Tokens(RefreshRequest(*metadata, web, "rt"));
  ASSERT_FALSE(refresh.ok());
  EXPECT_EQ(refresh.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(OAuthError(refresh.status()), "");
}

}  // namespace
}  // namespace podgate::auth::oidc
