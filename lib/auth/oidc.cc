#include "auth/oidc.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "auth/base64url.h"
#include "crypto/sha256.h"
#include "nlohmann/json.hpp"

namespace podgate::auth::oidc {

namespace {

using Params = std::vector<std::pair<std::string, std::string>>;

// https, or http when `allow_http` (a loopback issuer's provider).
absl::StatusOr<http::HttpUrl> EndpointUrl(const nlohmann::json& doc, const char* field,
                                          bool allow_http) {
  auto it = doc.find(field);
  if (it == doc.end() || !it->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("discovery: '", field, "' is missing or not a string"));
  }
  absl::StatusOr<http::HttpUrl> url = http::ParseHttpUrl(it->get<std::string>());
  if (!url.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("discovery: '", field, "': ", url.status().message()));
  }
  if (!url->tls && !allow_http) {
    return absl::InvalidArgumentError(
        absl::StrCat("discovery: '", field, "' is ", url->ToString(), ", not https"));
  }
  return url;
}

absl::StatusOr<std::optional<http::HttpUrl>> OptionalEndpoint(const nlohmann::json& doc,
                                                              const char* field, bool allow_http) {
  if (!doc.contains(field) || doc[field].is_null()) {
    return std::optional<http::HttpUrl>();
  }
  absl::StatusOr<http::HttpUrl> url = EndpointUrl(doc, field, allow_http);
  if (!url.ok()) {
    return url.status();
  }
  return std::optional<http::HttpUrl>(*std::move(url));
}

absl::StatusOr<std::vector<std::string>> StringList(const nlohmann::json& doc, const char* field) {
  std::vector<std::string> out;
  auto it = doc.find(field);
  if (it == doc.end() || it->is_null()) {
    return out;
  }
  if (!it->is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("discovery: '", field, "' is not an array of strings"));
  }
  for (const auto& v : *it) {
    if (!v.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("discovery: '", field, "' is not an array of strings"));
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

bool Contains(const std::vector<std::string>& list, absl::string_view want) {
  return std::find(list.begin(), list.end(), want) != list.end();
}

// client_secret_basic: the id and secret form-encoded, then joined and base64-encoded
// (RFC 6749 §2.3.1).
std::string BasicAuth(const ClientConfig& client) {
  return absl::StrCat("Basic ",
                      absl::Base64Escape(absl::StrCat(http::UrlEncode(client.client_id), ":",
                                                      http::UrlEncode(client.client_secret))));
}

// The client's credentials on a token-endpoint request, as its auth method says.
TokenRequest ClientRequest(const http::HttpUrl& url, const ClientConfig& client, Params params) {
  TokenRequest req;
  req.url = url;
  const std::string method = client.auth_method.empty()
                                 ? (client.client_secret.empty() ? "none" : "client_secret_basic")
                                 : client.auth_method;
  if (method == "client_secret_basic") {
    req.headers.emplace_back("Authorization", BasicAuth(client));
  } else if (method == "client_secret_post") {
    params.emplace_back("client_id", client.client_id);
    params.emplace_back("client_secret", client.client_secret);
  } else {
    params.emplace_back("client_id", client.client_id);
  }
  req.body = http::EncodeQuery(params);
  req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  req.headers.emplace_back("Accept", "application/json");
  return req;
}

std::string JsonString(const nlohmann::json& doc, const char* field) {
  auto it = doc.find(field);
  return it != doc.end() && it->is_string() ? it->get<std::string>() : "";
}

// A printable, bounded rendering of provider-supplied text for an error message.
std::string Printable(absl::string_view text) {
  std::string out;
  for (char c : text.substr(0, 200)) {
    out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  }
  return out;
}

}  // namespace

bool SecretsEqual(absl::string_view a, absl::string_view b) {
  const std::string ha = crypto::Sha256(std::string_view(a.data(), a.size()));
  const std::string hb = crypto::Sha256(std::string_view(b.data(), b.size()));
  return CRYPTO_memcmp(ha.data(), hb.data(), ha.size()) == 0 && a.size() == b.size();
}

absl::StatusOr<http::HttpUrl> DiscoveryUrl(absl::string_view issuer) {
  absl::StatusOr<http::HttpUrl> url = http::ParseHttpUrl(issuer);
  if (!url.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("issuer: ", url.status().message()));
  }
  if (!url->tls && !url->IsLoopback()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "issuer ", url->ToString(), ": http:// is allowed only to a loopback address; use https"));
  }
  if (absl::StrContains(url->target, '?')) {
    return absl::InvalidArgumentError("issuer: an issuer URL has no query");
  }
  std::string path = url->target;
  if (absl::EndsWith(path, "/")) {
    path.pop_back();
  }
  url->target = absl::StrCat(path, "/.well-known/openid-configuration");
  return url;
}

absl::StatusOr<ProviderMetadata> ParseDiscovery(absl::string_view body, absl::string_view issuer) {
  const nlohmann::json doc = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError("discovery: the document is not a JSON object");
  }
  absl::StatusOr<http::HttpUrl> issuer_url = http::ParseHttpUrl(issuer);
  if (!issuer_url.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("issuer: ", issuer_url.status().message()));
  }
  ProviderMetadata out;
  out.issuer = JsonString(doc, "issuer");
  // OpenID Connect Discovery §4.3: exactly the issuer the document was fetched for, or a
  // provider could vouch for another's tokens.
  if (out.issuer != issuer) {
    return absl::InvalidArgumentError(absl::StrCat(
        "discovery: 'issuer' is '", Printable(out.issuer), "', expected '", issuer, "'"));
  }
  const bool allow_http = !issuer_url->tls && issuer_url->IsLoopback();
  absl::StatusOr<http::HttpUrl> url = EndpointUrl(doc, "authorization_endpoint", allow_http);
  if (!url.ok()) {
    return url.status();
  }
  out.authorization_endpoint = *url;
  url = EndpointUrl(doc, "token_endpoint", allow_http);
  if (!url.ok()) {
    return url.status();
  }
  out.token_endpoint = *url;
  url = EndpointUrl(doc, "jwks_uri", allow_http);
  if (!url.ok()) {
    return url.status();
  }
  out.jwks_uri = *url;
  for (auto [field, target] :
       {std::pair{"end_session_endpoint", &out.end_session_endpoint},
        std::pair{"device_authorization_endpoint", &out.device_authorization_endpoint},
        std::pair{"revocation_endpoint", &out.revocation_endpoint}}) {
    absl::StatusOr<std::optional<http::HttpUrl>> optional =
        OptionalEndpoint(doc, field, allow_http);
    if (!optional.ok()) {
      return optional.status();
    }
    *target = *optional;
  }
  absl::StatusOr<std::vector<std::string>> methods =
      StringList(doc, "code_challenge_methods_supported");
  if (!methods.ok()) {
    return methods.status();
  }
  if (!methods->empty() && !Contains(*methods, "S256")) {
    return absl::InvalidArgumentError(
        "discovery: the provider does not offer PKCE with S256 (code_challenge_methods_supported)");
  }
  absl::StatusOr<std::vector<std::string>> responses = StringList(doc, "response_types_supported");
  if (!responses.ok()) {
    return responses.status();
  }
  if (!responses->empty() && !Contains(*responses, "code")) {
    return absl::InvalidArgumentError(
        "discovery: the provider does not offer the authorization code flow "
        "(response_types_supported)");
  }
  absl::StatusOr<std::vector<std::string>> algs =
      StringList(doc, "id_token_signing_alg_values_supported");
  if (!algs.ok()) {
    return algs.status();
  }
  if (!algs->empty() && !Contains(*algs, "RS256") && !Contains(*algs, "ES256")) {
    return absl::InvalidArgumentError(
        "discovery: the provider signs ID tokens with none of RS256, ES256 "
        "(id_token_signing_alg_values_supported)");
  }
  absl::StatusOr<std::vector<std::string>> auth_methods =
      StringList(doc, "token_endpoint_auth_methods_supported");
  if (!auth_methods.ok()) {
    return auth_methods.status();
  }
  out.token_endpoint_auth_methods =
      auth_methods->empty() ? std::vector<std::string>{"client_secret_basic"} : *auth_methods;
  if (auto it = doc.find("authorization_response_iss_parameter_supported");
      it != doc.end() && it->is_boolean()) {
    out.iss_parameter_supported = it->get<bool>();
  }
  return out;
}

absl::Status CheckClient(ClientConfig& client, const ProviderMetadata& provider,
                         bool needs_redirect) {
  if (client.client_id.empty()) {
    return absl::InvalidArgumentError("the client id is empty");
  }
  if (needs_redirect) {
    absl::StatusOr<http::HttpUrl> redirect = http::ParseHttpUrl(client.redirect_uri);
    if (!redirect.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the redirect URI: ", redirect.status().message()));
    }
    if (!redirect->tls && !redirect->IsLoopback()) {
      return absl::InvalidArgumentError(absl::StrCat("the redirect URI ", redirect->ToString(),
                                                     " must be https (http only to loopback)"));
    }
  }
  std::vector<absl::string_view> scopes = absl::StrSplit(client.scopes, ' ', absl::SkipEmpty());
  if (std::find(scopes.begin(), scopes.end(), "openid") == scopes.end()) {
    return absl::InvalidArgumentError("the scopes must include 'openid'");
  }
  if (client.auth_method.empty()) {
    client.auth_method = client.client_secret.empty() ? "none" : "client_secret_basic";
    if (!client.client_secret.empty() &&
        !Contains(provider.token_endpoint_auth_methods, "client_secret_basic") &&
        Contains(provider.token_endpoint_auth_methods, "client_secret_post")) {
      client.auth_method = "client_secret_post";
    }
  }
  if (client.auth_method != "client_secret_basic" && client.auth_method != "client_secret_post" &&
      client.auth_method != "none") {
    return absl::InvalidArgumentError(
        absl::StrCat("client auth method '", client.auth_method,
                     "' is not client_secret_basic, client_secret_post or none"));
  }
  if ((client.auth_method == "none") != client.client_secret.empty()) {
    return absl::InvalidArgumentError(
        client.client_secret.empty()
            ? absl::StrCat("client auth method ", client.auth_method, " needs a client secret")
            : "a client secret is set but the auth method is none");
  }
  if (!Contains(provider.token_endpoint_auth_methods, client.auth_method)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the provider does not accept client auth method ", client.auth_method, " (it offers ",
        absl::StrJoin(provider.token_endpoint_auth_methods, ", "), ")"));
  }
  return absl::OkStatus();
}

std::string RandomUrlToken(size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) {
    // Without randomness there is no safe state or verifier: stop rather than go on.
    std::abort();
  }
  return Base64UrlEncode(raw);
}

std::string PkceChallenge(absl::string_view verifier) {
  return Base64UrlEncode(crypto::Sha256(std::string_view(verifier.data(), verifier.size())));
}

std::string AuthorizationRequestUrl(const ProviderMetadata& provider, const ClientConfig& client,
                                    absl::string_view state, absl::string_view nonce,
                                    absl::string_view code_challenge) {
  const std::string target = provider.authorization_endpoint.target;
  const Params params = {{"response_type", "code"},
                         {"client_id", client.client_id},
                         {"redirect_uri", client.redirect_uri},
                         {"scope", client.scopes},
                         {"state", std::string(state)},
                         {"nonce", std::string(nonce)},
                         {"code_challenge", std::string(code_challenge)},
                         {"code_challenge_method", "S256"}};
  http::HttpUrl url = provider.authorization_endpoint;
  url.target =
      absl::StrCat(target, absl::StrContains(target, '?') ? "&" : "?", http::EncodeQuery(params));
  return url.ToString();
}

absl::StatusOr<std::string> CheckCallback(const Params& query, absl::string_view state,
                                          const ProviderMetadata& provider) {
  std::optional<std::string> got_state, code, error, description, iss;
  for (const auto& [name, value] : query) {
    std::optional<std::string>* slot = name == "state"               ? &got_state
                                       : name == "code"              ? &code
                                       : name == "error"             ? &error
                                       : name == "error_description" ? &description
                                       : name == "iss"               ? &iss
                                                                     : nullptr;
    if (slot == nullptr) {
      continue;
    }
    if (slot->has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("the sign-in answer repeats '", name, "'"));
    }
    *slot = value;
  }
  // The state first: an answer that does not belong to this login says nothing trustworthy.
  if (!got_state.has_value() || state.empty() || !SecretsEqual(*got_state, state)) {
    return absl::InvalidArgumentError(
        "the sign-in answer does not belong to this login (state mismatch): start again");
  }
  if (iss.has_value() ? *iss != provider.issuer : provider.iss_parameter_supported) {
    return absl::InvalidArgumentError(
        "the sign-in answer comes from another identity provider (iss mismatch)");
  }
  if (error.has_value()) {
    return absl::PermissionDeniedError(
        absl::StrCat("the identity provider refused the sign-in: ", Printable(*error),
                     description.has_value() ? absl::StrCat(": ", Printable(*description)) : ""));
  }
  if (!code.has_value() || code->empty()) {
    return absl::InvalidArgumentError("the sign-in answer has no code");
  }
  return *code;
}

TokenRequest CodeExchange(const ProviderMetadata& provider, const ClientConfig& client,
                          absl::string_view code, absl::string_view code_verifier) {
  return ClientRequest(provider.token_endpoint, client,
                       {{"grant_type", "authorization_code"},
                        {"code", std::string(code)},
                        {"redirect_uri", client.redirect_uri},
                        {"code_verifier", std::string(code_verifier)}});
}

TokenRequest RefreshRequest(const ProviderMetadata& provider, const ClientConfig& client,
                            absl::string_view refresh_token) {
  return ClientRequest(
      provider.token_endpoint, client,
      {{"grant_type", "refresh_token"}, {"refresh_token", std::string(refresh_token)}});
}

absl::StatusOr<TokenRequest> DeviceAuthorizationRequest(const ProviderMetadata& provider,
                                                        const ClientConfig& client) {
  if (!provider.device_authorization_endpoint.has_value()) {
    return absl::FailedPreconditionError(
        "the identity provider does not offer the device flow (no "
        "device_authorization_endpoint)");
  }
  return ClientRequest(*provider.device_authorization_endpoint, client, {{"scope", client.scopes}});
}

TokenRequest DeviceTokenRequest(const ProviderMetadata& provider, const ClientConfig& client,
                                absl::string_view device_code) {
  return ClientRequest(provider.token_endpoint, client,
                       {{"grant_type", "urn:ietf:params:oauth:grant-type:device_code"},
                        {"device_code", std::string(device_code)}});
}

std::string OAuthError(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kOAuthErrorPayload);
  return payload.has_value() ? std::string(*payload) : "";
}

namespace {

// A token or device endpoint's error answer, or nullopt when the body is not one.
std::optional<absl::Status> ProviderError(int status, const nlohmann::json& doc) {
  const std::string error = JsonString(doc, "error");
  if ((status != 400 && status != 401) || error.empty()) {
    return std::nullopt;
  }
  const std::string description = JsonString(doc, "error_description");
  absl::Status out = absl::FailedPreconditionError(
      absl::StrCat("the identity provider refused: ", Printable(error),
                   description.empty() ? "" : absl::StrCat(": ", Printable(description))));
  out.SetPayload(kOAuthErrorPayload, absl::Cord(Printable(error)));
  return out;
}

absl::StatusOr<nlohmann::json> EndpointAnswer(int status, absl::string_view body,
                                              const char* what) {
  const nlohmann::json doc = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (!doc.is_discarded() && doc.is_object()) {
    if (std::optional<absl::Status> refused = ProviderError(status, doc)) {
      return *refused;
    }
  }
  if (status != 200) {
    return absl::UnavailableError(absl::StrCat(what, ": HTTP ", status, " (expected 200)"));
  }
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::UnavailableError(absl::StrCat(what, ": the answer is not a JSON object"));
  }
  return doc;
}

absl::Duration Seconds(const nlohmann::json& doc, const char* field, absl::Duration fallback) {
  auto it = doc.find(field);
  if (it == doc.end() || !it->is_number() || it->get<double>() <= 0 ||
      it->get<double>() > 366 * 24 * 3600.0) {
    return fallback;
  }
  return absl::Seconds(it->get<double>());
}

}  // namespace

absl::StatusOr<TokenResponse> ParseTokenResponse(int status, absl::string_view body,
                                                 bool need_id_token) {
  absl::StatusOr<nlohmann::json> doc = EndpointAnswer(status, body, "token endpoint");
  if (!doc.ok()) {
    return doc.status();
  }
  TokenResponse out;
  out.id_token = JsonString(*doc, "id_token");
  out.access_token = JsonString(*doc, "access_token");
  out.refresh_token = JsonString(*doc, "refresh_token");
  out.expires_in = Seconds(*doc, "expires_in", absl::ZeroDuration());
  if (out.access_token.empty()) {
    return absl::UnavailableError("token endpoint: the answer has no access_token");
  }
  if (need_id_token && out.id_token.empty()) {
    return absl::UnavailableError(
        "token endpoint: the answer has no id_token (is 'openid' among the scopes?)");
  }
  if (const std::string type = JsonString(*doc, "token_type");
      !absl::EqualsIgnoreCase(type, "bearer")) {
    return absl::UnavailableError(
        absl::StrCat("token endpoint: token_type is '", Printable(type), "', not Bearer"));
  }
  return out;
}

absl::StatusOr<DeviceAuthorization> ParseDeviceAuthorization(int status, absl::string_view body) {
  absl::StatusOr<nlohmann::json> doc = EndpointAnswer(status, body, "device endpoint");
  if (!doc.ok()) {
    return doc.status();
  }
  DeviceAuthorization out;
  out.device_code = JsonString(*doc, "device_code");
  out.user_code = JsonString(*doc, "user_code");
  out.verification_uri = JsonString(*doc, "verification_uri");
  out.verification_uri_complete = JsonString(*doc, "verification_uri_complete");
  out.expires_in = Seconds(*doc, "expires_in", absl::ZeroDuration());
  out.interval = Seconds(*doc, "interval", absl::Seconds(5));
  if (out.device_code.empty() || out.user_code.empty() || out.verification_uri.empty() ||
      out.expires_in <= absl::ZeroDuration()) {
    return absl::UnavailableError(
        "device endpoint: the answer lacks device_code, user_code, verification_uri or "
        "expires_in");
  }
  for (const std::string* uri : {&out.verification_uri, &out.verification_uri_complete}) {
    if (!uri->empty() && !http::ParseHttpUrl(*uri).ok()) {
      return absl::UnavailableError("device endpoint: the verification URI is not a URL");
    }
  }
  return out;
}

absl::StatusOr<VerifiedToken> VerifyIdToken(const Verifier& verifier, absl::string_view id_token,
                                            absl::string_view nonce, absl::string_view client_id) {
  absl::StatusOr<VerifiedToken> token = verifier.Verify(id_token);
  if (!token.ok()) {
    return token;
  }
  const nlohmann::json& claims = token->claims;
  if (!nonce.empty()) {
    auto it = claims.find("nonce");
    if (it == claims.end() || !it->is_string() || !SecretsEqual(it->get<std::string>(), nonce)) {
      return absl::UnauthenticatedError(
          "the ID token's nonce does not match this login (a replayed or injected token)");
    }
  }
  if (auto aud = claims.find("aud"); aud != claims.end() && aud->is_array() && aud->size() > 1) {
    auto azp = claims.find("azp");
    if (azp == claims.end() || !azp->is_string() || azp->get<std::string>() != client_id) {
      return absl::UnauthenticatedError(
          "the ID token has several audiences and its azp is not this client");
    }
  }
  return token;
}

std::optional<std::string> LogoutUrl(const ProviderMetadata& provider, const ClientConfig& client,
                                     absl::string_view id_token_hint,
                                     absl::string_view post_logout_redirect_uri) {
  if (!provider.end_session_endpoint.has_value()) {
    return std::nullopt;
  }
  Params params = {{"client_id", client.client_id}};
  if (!id_token_hint.empty()) {
    params.emplace_back("id_token_hint", std::string(id_token_hint));
  }
  if (!post_logout_redirect_uri.empty()) {
    params.emplace_back("post_logout_redirect_uri", std::string(post_logout_redirect_uri));
  }
  http::HttpUrl url = *provider.end_session_endpoint;
  url.target = absl::StrCat(url.target, absl::StrContains(url.target, '?') ? "&" : "?",
                            http::EncodeQuery(params));
  return url.ToString();
}

}  // namespace podgate::auth::oidc
