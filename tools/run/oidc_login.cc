#include "run/oidc_login.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "auth/jwks_url.h"
#include "auth/jwt.h"
#include "auth/oidc.h"
#include "http/client.h"
#include "http/url.h"

namespace podgate::run {

namespace {

namespace oidc = auth::oidc;

http::ClientOptions Options(const http::HttpUrl& url, const ProviderOptions& options) {
  return http::ClientOptionsFor(url, options.ca_file, options.timeout, 1024 * 1024);
}

absl::StatusOr<http::ClientResponse> Send(const oidc::TokenRequest& req,
                                          const ProviderOptions& options) {
  http::ClientOptions o = Options(req.url, options);
  o.headers = req.headers;
  return http::Fetch(o, "POST", req.url.target, req.body);
}

absl::StatusOr<oidc::ProviderMetadata> Discover(const ProviderOptions& options) {
  absl::StatusOr<http::HttpUrl> url = oidc::DiscoveryUrl(options.issuer);
  if (!url.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--oidc_issuer: ", url.status().message()));
  }
  absl::StatusOr<http::ClientResponse> r = http::Fetch(Options(*url, options), "GET", url->target);
  if (!r.ok()) {
    return absl::Status(r.status().code(),
                        absl::StrCat("discovery at ", url->ToString(), ": ", r.status().message()));
  }
  if (r->status != 200) {
    return absl::UnavailableError(
        absl::StrCat("discovery at ", url->ToString(), ": HTTP ", r->status, " (expected 200)"));
  }
  absl::StatusOr<oidc::ProviderMetadata> metadata = oidc::ParseDiscovery(r->body, options.issuer);
  if (!metadata.ok()) {
    return absl::Status(metadata.status().code(), absl::StrCat("discovery at ", url->ToString(),
                                                               ": ", metadata.status().message()));
  }
  return metadata;
}

// The ID token checked as the relying party must, with the keys from the provider's jwks_uri;
// the token with its expiry filled in.
absl::StatusOr<CachedToken> Verified(const oidc::ProviderMetadata& provider,
                                     const ProviderOptions& options,
                                     const oidc::TokenResponse& tokens,
                                     std::string* who = nullptr) {
  auth::JwksUrlOptions jwks;
  jwks.url = provider.jwks_uri.ToString();
  jwks.ca_file = options.ca_file;
  jwks.timeout = options.timeout;
  jwks.initial_wait = options.timeout;
  absl::StatusOr<std::shared_ptr<auth::JwksUrlSource>> source = auth::JwksUrlSource::Start(jwks);
  if (!source.ok()) {
    return absl::Status(source.status().code(),
                        absl::StrCat("the provider's jwks_uri: ", source.status().message()));
  }
  auth::VerifierOptions verify;
  verify.issuer = provider.issuer;
  verify.audiences = {options.client_id};
  absl::StatusOr<auth::Verifier> verifier = auth::Verifier::Create(*source, verify);
  if (!verifier.ok()) {
    return verifier.status();
  }
  absl::StatusOr<auth::VerifiedToken> id =
      oidc::VerifyIdToken(*verifier, tokens.id_token, "", options.client_id);
  if (!id.ok()) {
    return absl::UnauthenticatedError(
        absl::StrCat("the identity provider's ID token was refused: ", id.status().message()));
  }
  if (who != nullptr) {
    for (const char* name : {"preferred_username", "email", "sub"}) {
      auto it = id->claims.find(name);
      if (it != id->claims.end() && it->is_string()) {
        *who = TerminalSafe(it->get<std::string>());
        break;
      }
    }
  }
  CachedToken out;
  out.id_token = tokens.id_token;
  out.refresh_token = tokens.refresh_token;
  out.expiry = id->expires;
  out.issuer = provider.issuer;
  out.client_id = options.client_id;
  return out;
}

}  // namespace

std::string TerminalSafe(absl::string_view text) {
  std::string out;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u >= 0x7f) ? '?' : c;
  }
  return out;
}

bool NeedsRefresh(const CachedToken& token, absl::Time now, absl::Duration margin) {
  return token.expiry - margin <= now;
}

absl::StatusOr<CachedToken> DeviceLogin(const ProviderOptions& options, const Say& say) {
  if (options.client_id.empty()) {
    return absl::InvalidArgumentError("--oidc_client_id is required");
  }
  absl::StatusOr<oidc::ProviderMetadata> provider = Discover(options);
  if (!provider.ok()) {
    return provider.status();
  }
  oidc::ClientConfig client;
  client.client_id = options.client_id;
  client.scopes = options.scopes;
  if (absl::Status s = oidc::CheckClient(client, *provider, /*needs_redirect=*/false); !s.ok()) {
    return s;
  }
  absl::StatusOr<oidc::TokenRequest> start = oidc::DeviceAuthorizationRequest(*provider, client);
  if (!start.ok()) {
    return start.status();
  }
  absl::StatusOr<http::ClientResponse> answer = Send(*start, options);
  if (!answer.ok()) {
    return absl::Status(answer.status().code(), absl::StrCat("the device authorization endpoint: ",
                                                             answer.status().message()));
  }
  absl::StatusOr<oidc::DeviceAuthorization> device =
      oidc::ParseDeviceAuthorization(answer->status, answer->body);
  if (!device.ok()) {
    return device.status();
  }
  say(absl::StrCat("To sign in, open ", TerminalSafe(device->verification_uri),
                   " in a browser and enter the code ", TerminalSafe(device->user_code)));
  if (!device->verification_uri_complete.empty()) {
    say(absl::StrCat("  or open ", TerminalSafe(device->verification_uri_complete)));
  }
  say(absl::StrCat("Waiting for the sign-in (the code expires in ",
                   absl::FormatDuration(device->expires_in), ")..."));

  // RFC 8628 3.5: poll no faster than `interval`; each slow_down adds 5 s for good; network
  // failures back off (doubling), three in a row end the wait.
  absl::Duration interval = std::max(device->interval, absl::Seconds(1));
  // The provider says expired_token itself; this only bounds a provider that never does.
  const absl::Time give_up = absl::Now() + device->expires_in + 2 * interval;
  int failures = 0;
  const oidc::TokenRequest poll = oidc::DeviceTokenRequest(*provider, client, device->device_code);
  for (;;) {
    absl::SleepFor(interval * (1 << failures));
    if (absl::Now() > give_up) {
      return absl::DeadlineExceededError(
          "the code expired before the sign-in was approved; run podgate-run login again");
    }
    absl::StatusOr<http::ClientResponse> r = Send(poll, options);
    absl::StatusOr<oidc::TokenResponse> tokens =
        r.ok() ? oidc::ParseTokenResponse(r->status, r->body) : r.status();
    if (tokens.ok()) {
      std::string who;
      absl::StatusOr<CachedToken> out = Verified(*provider, options, *tokens, &who);
      if (out.ok()) {
        say(absl::StrCat("Signed in as ", who, "."));
      }
      return out;
    }
    const std::string error = oidc::OAuthError(tokens.status());
    if (error == "authorization_pending") {
      failures = 0;
      continue;
    }
    if (error == "slow_down") {
      failures = 0;
      interval += absl::Seconds(5);
      continue;
    }
    if (error == "expired_token") {
      return absl::DeadlineExceededError(
          "the code expired before the sign-in was approved; run podgate-run login again");
    }
    if (error == "access_denied") {
      return absl::PermissionDeniedError(
          "the sign-in was denied at the identity provider; nothing was saved");
    }
    if (error.empty() && (tokens.status().code() == absl::StatusCode::kUnavailable ||
                          tokens.status().code() == absl::StatusCode::kDeadlineExceeded)) {
      if (++failures < 3) {
        continue;
      }
    }
    return absl::Status(tokens.status().code(),
                        absl::StrCat("waiting for the sign-in: ", tokens.status().message()));
  }
}

absl::StatusOr<CachedToken> RefreshToken(const CachedToken& cached,
                                         const ProviderOptions& transport) {
  if (cached.refresh_token.empty()) {
    return absl::FailedPreconditionError("the cached sign-in has expired and has no refresh token");
  }
  ProviderOptions options = transport;
  options.issuer = cached.issuer;
  options.client_id = cached.client_id;
  absl::StatusOr<oidc::ProviderMetadata> provider = Discover(options);
  if (!provider.ok()) {
    return provider.status();
  }
  oidc::ClientConfig client;
  client.client_id = options.client_id;
  absl::StatusOr<http::ClientResponse> r =
      Send(oidc::RefreshRequest(*provider, client, cached.refresh_token), options);
  absl::StatusOr<oidc::TokenResponse> tokens =
      r.ok() ? oidc::ParseTokenResponse(r->status, r->body) : r.status();
  if (!tokens.ok()) {
    return absl::Status(tokens.status().code(),
                        absl::StrCat("the token endpoint: ", tokens.status().message()));
  }
  if (tokens->refresh_token.empty()) {
    tokens->refresh_token = cached.refresh_token;
  }
  return Verified(*provider, options, *tokens);
}

absl::Status RevokeRefreshToken(const CachedToken& cached, const ProviderOptions& transport) {
  if (cached.refresh_token.empty()) {
    return absl::FailedPreconditionError("the cached sign-in has no refresh token");
  }
  ProviderOptions options = transport;
  options.issuer = cached.issuer;
  options.client_id = cached.client_id;
  absl::StatusOr<oidc::ProviderMetadata> provider = Discover(options);
  if (!provider.ok()) {
    return provider.status();
  }
  if (!provider->revocation_endpoint.has_value()) {
    return absl::FailedPreconditionError("the identity provider has no revocation endpoint");
  }
  oidc::TokenRequest req;
  req.url = *provider->revocation_endpoint;
  req.body = http::EncodeQuery({{"token", cached.refresh_token},
                                {"token_type_hint", "refresh_token"},
                                {"client_id", cached.client_id}});
  req.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
  absl::StatusOr<http::ClientResponse> r = Send(req, options);
  if (!r.ok()) {
    return absl::Status(r.status().code(),
                        absl::StrCat("the revocation endpoint: ", r.status().message()));
  }
  if (r->status != 200) {
    return absl::UnavailableError(
        absl::StrCat("the revocation endpoint: HTTP ", r->status, " (expected 200)"));
  }
  return absl::OkStatus();
}

}  // namespace podgate::run
