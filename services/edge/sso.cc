#include "edge/sso.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "auth/base64url.h"
#include "crypto/aead.h"
#include "crypto/sha256.h"
#include "edge/http_reply.h"
#include "edge/protocol.h"
#include "http/client.h"
#include "http/url.h"
#include "runtime/log.h"

namespace podgate::edge {

namespace bhttp = boost::beast::http;
using http::Request;
using http::Response;
using http::RouteResult;

namespace {

// The largest answer accepted from the provider (discovery, token endpoint).
constexpr size_t kMaxProviderAnswerBytes = 1 << 20;
// The largest ID token set as a cookie: a browser keeps at most 4096 bytes of name, value and
// attributes.
constexpr size_t kMaxTokenCookieBytes = 3900;
// Used states remembered (for the replay check) at most; past it the oldest are forgotten
// first. A forgotten state's replay still fails at the token endpoint (a code is good once).
constexpr size_t kMaxUsedStates = 100000;

std::string HtmlEscape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

// The page a refused sign-in ends on: what went wrong and the way back. No script, no style
// (the security headers' CSP allows neither inline).
Response ErrorPage(const Request& request, bhttp::status status, const std::string& title,
                   const std::string& message) {
  std::string body = absl::StrCat(
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>podgate: ",
      HtmlEscape(title), "</title></head>\n<body>\n<h1 id=\"sso-error-title\">", HtmlEscape(title),
      "</h1>\n<p id=\"sso-error\">", HtmlEscape(message),
      "</p>\n<p>Nothing was signed in. <a id=\"sso-retry\" href=\"/auth/login\">Sign in "
      "again</a> or go <a href=\"/\">back to podgate</a>.</p>\n</body></html>\n");
  Response res = http::MakeResponse(request, status, "text/html; charset=utf-8", std::move(body));
  SecurityHeaders(res);
  return res;
}

std::string CookieValue(const Request& request, std::string_view name) {
  return FindCookie(Header(request, bhttp::field::cookie), name).value_or("");
}

int64_t Seconds(absl::Duration d) { return std::max<int64_t>(0, absl::ToInt64Seconds(d)); }

// scheme://host[:port] of a URL ("" when it is not one).
std::string OriginOf(const std::string& url) {
  absl::StatusOr<http::HttpUrl> parsed = http::ParseHttpUrl(url);
  if (!parsed.ok()) {
    return "";
  }
  parsed->target.clear();
  parsed->target.push_back('/');
  return std::string(absl::StripSuffix(parsed->ToString(), "/"));
}

// A small pool of threads for blocking calls to the provider, with a bound on the calls running
// and waiting together.
class Workers {
 public:
  Workers(int threads, size_t max_pending) : max_pending_(max_pending) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this] { Run(); });
    }
  }
  ~Workers() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      jobs_.clear();
    }
    cv_.notify_all();
    for (std::thread& t : threads_) {
      t.join();
    }
  }
  // False when max_pending calls are running or waiting already (or the pool is stopping).
  bool Submit(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ || pending_ >= max_pending_) {
        return false;
      }
      ++pending_;
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
    return true;
  }

 private:
  void Run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
        if (stopping_) {
          return;
        }
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
      std::lock_guard<std::mutex> lock(mu_);
      --pending_;
    }
  }

  const size_t max_pending_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  size_t pending_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace

struct Sso::Impl {
  SsoOptions options;
  EdgeContext* context = nullptr;
  std::string post_logout_redirect;

  mutable std::mutex mu;
  std::condition_variable stop_cv;
  bool stopping = false;
  std::shared_ptr<const auth::oidc::ProviderMetadata> metadata;  // null until discovered
  auth::oidc::ClientConfig client;                               // checked against it
  std::string discovery_error = "not tried yet";
  // Hash of each used state -> when its login cookie expires.
  std::map<std::string, absl::Time> used_states;
  std::multimap<absl::Time, std::string> used_by_expiry;

  std::thread discovery;
  std::unique_ptr<Workers> workers;

  http::ClientOptions ClientFor(const http::HttpUrl& url) const {
    return http::ClientOptionsFor(url, options.ca_file, options.timeout, kMaxProviderAnswerBytes);
  }

  void Discover() {
    absl::Duration retry = options.discovery_retry;
    for (;;) {
      absl::Status status = DiscoverOnce();
      std::unique_lock<std::mutex> lock(mu);
      if (status.ok()) {
        return;
      }
      discovery_error = std::string(status.message());
      log::Warn("oidc discovery failed; retrying",
                {{"issuer", options.issuer},
                 {"error", discovery_error},
                 {"retry_ms", absl::ToInt64Milliseconds(retry)}});
      if (stop_cv.wait_for(lock, absl::ToChronoMilliseconds(retry), [this] { return stopping; })) {
        return;
      }
      retry = std::min(retry * 2, absl::Seconds(30));
    }
  }

  absl::Status DiscoverOnce() {
    absl::StatusOr<http::HttpUrl> url = auth::oidc::DiscoveryUrl(options.issuer);
    if (!url.ok()) {
      return url.status();
    }
    absl::StatusOr<http::ClientResponse> answer = http::Fetch(ClientFor(*url), "GET", url->target);
    if (!answer.ok()) {
      return absl::UnavailableError(absl::StrCat(url->ToString(), ": ", answer.status().message()));
    }
    if (answer->status != 200) {
      return absl::UnavailableError(absl::StrCat(url->ToString(), ": HTTP ", answer->status));
    }
    absl::StatusOr<auth::oidc::ProviderMetadata> parsed =
        auth::oidc::ParseDiscovery(answer->body, options.issuer);
    if (!parsed.ok()) {
      return parsed.status();
    }
    auth::oidc::ClientConfig checked = options.client;
    if (absl::Status ok = auth::oidc::CheckClient(checked, *parsed); !ok.ok()) {
      return absl::FailedPreconditionError(absl::StrCat("--oidc_*: ", ok.message()));
    }
    std::lock_guard<std::mutex> lock(mu);
    client = checked;
    metadata = std::make_shared<const auth::oidc::ProviderMetadata>(*std::move(parsed));
    log::Info("oidc provider discovered",
              {{"issuer", options.issuer},
               {"token_endpoint", metadata->token_endpoint.ToString()},
               {"jwks_uri", metadata->jwks_uri.ToString()},
               {"client_auth", client.auth_method},
               {"end_session", metadata->end_session_endpoint.has_value()}});
    return absl::OkStatus();
  }

  // The metadata and client once discovered; null before.
  std::shared_ptr<const auth::oidc::ProviderMetadata> Provider(auth::oidc::ClientConfig* out,
                                                               std::string* error) const {
    std::lock_guard<std::mutex> lock(mu);
    if (metadata != nullptr && out != nullptr) {
      *out = client;
    }
    if (error != nullptr) {
      *error = discovery_error;
    }
    return metadata;
  }

  std::string Seal(const char* name, const nlohmann::json& value) const {
    return auth::Base64UrlEncode(crypto::AeadSeal(options.cookie_key, value.dump(), name));
  }
  std::optional<nlohmann::json> Open(const char* name, const std::string& cookie) const {
    std::optional<std::string> raw = auth::Base64UrlDecode(cookie);
    if (!raw.has_value()) {
      return std::nullopt;
    }
    std::optional<std::string> plain = crypto::AeadOpen(options.cookie_key, *raw, name);
    if (!plain.has_value()) {
      return std::nullopt;
    }
    nlohmann::json doc = nlohmann::json::parse(*plain, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      return std::nullopt;
    }
    return doc;
  }

  std::string Secure() const { return context->options.secure_cookie ? "; Secure" : ""; }
  std::string ClearLogin() const {
    return absl::StrCat(kLoginCookie, "=; Path=/auth/; Max-Age=0; HttpOnly", Secure(),
                        "; SameSite=Lax");
  }
  std::string ClearToken() const {
    return absl::StrCat(kTokenCookie, "=; Path=/; Max-Age=0; HttpOnly", Secure(),
                        "; SameSite=Strict");
  }
  std::string ClearRefresh() const {
    return absl::StrCat(kRefreshCookie, "=; Path=/auth/; Max-Age=0; HttpOnly", Secure(),
                        "; SameSite=Strict");
  }

  // A refused sign-in: counted, audited, logged, answered with the error page; the login
  // cookie is cleared (one answer per login).
  Response Refuse(const Request& request, const std::string& peer, const std::string& path,
                  const std::string& result, bhttp::status status, const std::string& message) {
    context->metrics->OidcLogin(result);
    AuthFailed(context, {"oidc_" + result, message, peer, path, {}});
    log::Info("sign-in refused", {{"result", result}, {"source", peer}, {"message", message}});
    Response res = ErrorPage(request, status, "Sign-in failed", message);
    res.insert(bhttp::field::set_cookie, ClearLogin());
    return res;
  }

  // Marks `state` used; false when it was used already (a replayed answer).
  bool UseState(const std::string& state, absl::Time expires) {
    const std::string key = crypto::Sha256(state);
    const absl::Time now = absl::Now();
    std::lock_guard<std::mutex> lock(mu);
    while (!used_by_expiry.empty() &&
           (used_by_expiry.begin()->first < now || used_by_expiry.size() >= kMaxUsedStates)) {
      used_states.erase(used_by_expiry.begin()->second);
      used_by_expiry.erase(used_by_expiry.begin());
    }
    if (!used_states.emplace(key, expires).second) {
      return false;
    }
    used_by_expiry.emplace(expires, key);
    return true;
  }

  // Verifies an ID token that has just come from the provider's token endpoint (on a worker).
  // A kid the key set lacks then means the provider has rotated its key, not a forgery: the
  // refusal started a (rate-limited) fetch of the set, so wait for that fetch, up to
  // --oidc_timeout, and verify once more, rather than fail the sign-in or end the session of
  // whoever comes first after a rotation.
  absl::StatusOr<auth::VerifiedToken> VerifyFromProvider(const std::string& id_token,
                                                         const std::string& nonce,
                                                         const std::string& client_id) const {
    const auth::Verifier& verifier = *context->verifier;
    absl::StatusOr<auth::VerifiedToken> verified =
        auth::oidc::VerifyIdToken(verifier, id_token, nonce, client_id);
    if (verified.ok() || auth::AuthFailureReason(verified.status()) != "unknown_key") {
      return verified;
    }
    // The fetch may be over already: one more verification either way (rate-limited, it asks
    // for no further fetch).
    const absl::Time deadline = absl::Now() + options.timeout;
    while (verifier.KeysBeingFetched() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    return auth::oidc::VerifyIdToken(verifier, id_token, nonce, client_id);
  }

  // One call to the token endpoint (on a worker).
  absl::StatusOr<auth::oidc::TokenResponse> Tokens(const auth::oidc::TokenRequest& req) const {
    http::ClientOptions o = ClientFor(req.url);
    o.headers = req.headers;
    absl::StatusOr<http::ClientResponse> answer = http::Fetch(o, "POST", req.url.target, req.body);
    if (!answer.ok()) {
      return absl::UnavailableError(absl::StrCat("the identity provider's token endpoint (",
                                                 req.url.ToString(),
                                                 ") did not answer: ", answer.status().message()));
    }
    return auth::oidc::ParseTokenResponse(answer->status, answer->body);
  }

  // The cookies of a signed-in browser: the ID token (what edge and exec verify) and the
  // sealed refresh token with the session's end and subject.
  void SetSessionCookies(Response& res, const std::string& id_token,
                         const auth::VerifiedToken& verified, const std::string& refresh_token,
                         absl::Time session_end) const {
    const absl::Time now = absl::Now();
    res.insert(bhttp::field::set_cookie,
               absl::StrCat(kTokenCookie, "=", id_token,
                            "; Path=/; Max-Age=", Seconds(verified.expires - now), "; HttpOnly",
                            Secure(), "; SameSite=Strict"));
    if (refresh_token.empty()) {
      res.insert(bhttp::field::set_cookie, ClearRefresh());
      return;
    }
    const std::string sub = verified.claims.value("sub", "");
    res.insert(bhttp::field::set_cookie,
               absl::StrCat(kRefreshCookie, "=",
                            Seal(kRefreshCookie, {{"r", refresh_token},
                                                  {"u", sub},
                                                  {"e", absl::ToUnixSeconds(session_end)}}),
                            "; Path=/auth/; Max-Age=", Seconds(session_end - now), "; HttpOnly",
                            Secure(), "; SameSite=Strict"));
  }

  // Same-origin POSTs only (refresh, logout): a cookie rides along with cross-site requests.
  std::optional<Response> CheckOrigin(const Request& request) const {
    const std::string origin = Header(request, bhttp::field::origin);
    if (OriginAllowed(origin, context->options.allowed_origins)) {
      return std::nullopt;
    }
    context->metrics->Rejection("origin");
    return JsonError(request, bhttp::status::forbidden, "PERMISSION_DENIED",
                     origin.empty() ? "an Origin header is required"
                                    : absl::StrCat("Origin ", origin.substr(0, 200),
                                                   " is not allowed: edge's --allowed_origins "
                                                   "must list it"));
  }
};

absl::StatusOr<std::unique_ptr<Sso>> Sso::Start(SsoOptions options, EdgeContext* context) {
  const auth::VerifierOptions& verifier = context->verifier->options();
  if (verifier.issuer != options.issuer) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--oidc_issuer ", options.issuer, " needs --jwt_issuer=", options.issuer,
        " (and --jwt_jwks_url set to the provider's jwks_uri): edge and exec verify the ID "
        "tokens of signed-in browsers with the --jwt_* flags"));
  }
  if (std::find(verifier.audiences.begin(), verifier.audiences.end(), options.client.client_id) ==
      verifier.audiences.end()) {
    return absl::InvalidArgumentError(absl::StrCat("--jwt_audience must include --oidc_client_id (",
                                                   options.client.client_id,
                                                   "): an ID token's audience is the client id"));
  }
  if (options.cookie_key.size() != crypto::kAeadKeyBytes) {
    return absl::InvalidArgumentError("the cookie key must be 32 bytes");
  }
  auto impl = std::make_shared<Impl>();
  impl->options = std::move(options);
  impl->context = context;
  impl->post_logout_redirect = OriginOf(impl->options.client.redirect_uri) + "/";
  impl->workers = std::make_unique<Workers>(impl->options.threads, impl->options.max_pending);
  Impl* raw = impl.get();
  impl->discovery = std::thread([raw] { raw->Discover(); });
  return std::unique_ptr<Sso>(new Sso(std::move(impl)));
}

Sso::~Sso() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->stop_cv.notify_all();
  impl_->discovery.join();
  // Joins the workers; calls still waiting are dropped (their connections close).
  impl_->workers.reset();
}

const std::string& Sso::provider_name() const { return impl_->options.provider_name; }

RouteResult Sso::Login(const RouteRequest& r) {
  Impl& s = *impl_;
  auth::oidc::ClientConfig client;
  std::string error;
  std::shared_ptr<const auth::oidc::ProviderMetadata> provider = s.Provider(&client, &error);
  if (provider == nullptr) {
    s.context->metrics->OidcLogin("provider_unavailable");
    return Answer(
        ErrorPage(r.request, bhttp::status::service_unavailable, "Sign-in is not available yet",
                  absl::StrCat("edge has not reached the identity provider ", s.options.issuer,
                               " yet (", error, "); it keeps trying. Try again in a moment.")));
  }
  const std::string state = auth::oidc::RandomUrlToken();
  const std::string nonce = auth::oidc::RandomUrlToken();
  const std::string verifier = auth::oidc::RandomUrlToken();
  const absl::Time expires = absl::Now() + s.options.login_lifetime;
  Response res = http::MakeResponse(r.request, bhttp::status::found, "text/plain", "");
  res.set(bhttp::field::location,
          auth::oidc::AuthorizationRequestUrl(*provider, client, state, nonce,
                                              auth::oidc::PkceChallenge(verifier)));
  res.insert(bhttp::field::set_cookie,
             absl::StrCat(kLoginCookie, "=",
                          s.Seal(kLoginCookie, {{"s", state},
                                                {"n", nonce},
                                                {"v", verifier},
                                                {"e", absl::ToUnixSeconds(expires)}}),
                          "; Path=/auth/; Max-Age=", Seconds(s.options.login_lifetime),
                          "; HttpOnly", s.Secure(), "; SameSite=Lax"));
  SecurityHeaders(res);
  return Answer(std::move(res));
}

RouteResult Sso::Callback(const RouteRequest& r) {
  Impl& s = *impl_;
  const std::string peer = r.peer.remote_address;
  const std::string path = "/auth/callback";
  auto refuse = [&](const char* result, bhttp::status status, const std::string& message) {
    return Answer(s.Refuse(r.request, peer, path, result, status, message));
  };
  auth::oidc::ClientConfig client;
  std::string error;
  std::shared_ptr<const auth::oidc::ProviderMetadata> provider = s.Provider(&client, &error);
  if (provider == nullptr) {
    return refuse("provider_unavailable", bhttp::status::service_unavailable,
                  absl::StrCat("edge has not reached the identity provider yet (", error, ")"));
  }
  const std::string cookie = CookieValue(r.request, kLoginCookie);
  if (cookie.empty()) {
    return refuse("no_login", bhttp::status::bad_request,
                  "this browser has no sign-in in progress (it took longer than "
                  "10 minutes, cookies are blocked, or this answer was used already): start "
                  "again");
  }
  std::optional<nlohmann::json> login = s.Open(kLoginCookie, cookie);
  if (!login.has_value() || !(*login)["s"].is_string() || !(*login)["n"].is_string() ||
      !(*login)["v"].is_string() || !(*login)["e"].is_number_integer()) {
    return refuse("bad_login_cookie", bhttp::status::bad_request,
                  "the sign-in cookie is not one edge made (changed, or sealed with another "
                  "key): start again");
  }
  const absl::Time expires = absl::FromUnixSeconds((*login)["e"].get<int64_t>());
  if (expires < absl::Now()) {
    return refuse("expired_login", bhttp::status::bad_request,
                  "the sign-in took too long (over 10 minutes): start again");
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> query =
      http::ParseQuery(r.query);
  if (!query.ok()) {
    return refuse(
        "bad_request", bhttp::status::bad_request,
        absl::StrCat("the sign-in answer is not a valid query: ", query.status().message()));
  }
  const std::string state = (*login)["s"];
  absl::StatusOr<std::string> code = auth::oidc::CheckCallback(*query, state, *provider);
  if (!code.ok()) {
    const bool provider_error = code.status().code() == absl::StatusCode::kPermissionDenied;
    const bool iss = absl::StrContains(code.status().message(), "iss mismatch");
    return refuse(provider_error ? "provider_error"
                  : iss          ? "issuer"
                                 : "state",
                  provider_error ? bhttp::status::forbidden : bhttp::status::bad_request,
                  std::string(code.status().message()));
  }
  if (!s.UseState(state, expires)) {
    return refuse("replayed_state", bhttp::status::bad_request,
                  "this sign-in answer was used already (a replayed state): start again");
  }
  const std::string nonce = (*login)["n"];
  const auth::oidc::TokenRequest exchange =
      auth::oidc::CodeExchange(*provider, client, *code, (*login)["v"].get<std::string>());
  const Request req = RequestLine(r.request);
  std::shared_ptr<Impl> self = impl_;
  RouteResult result;
  result.deferred = [self, req, peer, path, exchange, nonce,
                     client](std::function<void(Response)> reply) {
    Impl* s = self.get();
    const bool queued = s->workers->Submit([self, req, peer, path, exchange, nonce, client, reply] {
      Impl* s = self.get();
      absl::StatusOr<auth::oidc::TokenResponse> tokens = s->Tokens(exchange);
      if (!tokens.ok()) {
        const bool refused = tokens.status().code() == absl::StatusCode::kFailedPrecondition;
        reply(s->Refuse(
            req, peer, path, refused ? "code_refused" : "provider_unavailable",
            refused ? bhttp::status::unauthorized : bhttp::status::bad_gateway,
            refused ? absl::StrCat(tokens.status().message(), " (a code is good once: start again)")
                    : std::string(tokens.status().message())));
        return;
      }
      absl::StatusOr<auth::VerifiedToken> verified =
          s->VerifyFromProvider(tokens->id_token, nonce, client.client_id);
      if (!verified.ok()) {
        const std::string reason = auth::AuthFailureReason(verified.status());
        reply(s->Refuse(req, peer, path, "id_token", bhttp::status::unauthorized,
                        absl::StrCat("the identity provider's ID token was refused",
                                     reason.empty() ? "" : absl::StrCat(" (", reason, ")"), ": ",
                                     verified.status().message())));
        return;
      }
      // Browsers drop a cookie over 4096 bytes without a word: the sign-in would loop.
      if (tokens->id_token.size() > kMaxTokenCookieBytes) {
        reply(s->Refuse(
            req, peer, path, "id_token_too_large", bhttp::status::bad_gateway,
            absl::StrCat("the identity provider's ID token is ", tokens->id_token.size(),
                         " bytes, more than a browser keeps in a cookie (", kMaxTokenCookieBytes,
                         "): have the provider put fewer claims or groups in it")));
        return;
      }
      s->context->metrics->OidcLogin("ok");
      log::Info("signed in", {{"user", verified->principal.user()}, {"source", peer}});
      Response res = http::MakeResponse(req, bhttp::status::found, "text/plain", "");
      res.set(bhttp::field::location, "/");
      res.insert(bhttp::field::set_cookie, s->ClearLogin());
      s->SetSessionCookies(res, tokens->id_token, *verified, tokens->refresh_token,
                           absl::Now() + s->options.session_lifetime);
      SecurityHeaders(res);
      reply(std::move(res));
    });
    if (!queued) {
      reply(s->Refuse(req, peer, path, "busy", bhttp::status::service_unavailable,
                      "edge has too many sign-ins waiting for the identity provider: try again "
                      "in a moment"));
    }
  };
  return result;
}

RouteResult Sso::Refresh(const RouteRequest& r) {
  Impl& s = *impl_;
  if (std::optional<Response> refused = s.CheckOrigin(r.request)) {
    return Answer(*std::move(refused));
  }
  const std::string peer = r.peer.remote_address;
  const Request req = RequestLine(r.request);
  auto refuse = [&s, peer](const Request& request, const std::string& result,
                           const std::string& message, bool clear) {
    s.context->metrics->OidcRefresh(result);
    // A page signed in with a pasted token asks too before its token expires: no session to
    // refresh is counted, not audited.
    if (result != "no_session") {
      AuthFailed(s.context, {"oidc_refresh_" + result, message, peer, "/auth/refresh", {}});
    }
    Response res = JsonError(request, bhttp::status::unauthorized, "UNAUTHENTICATED",
                             absl::StrCat(message, ": sign in again"));
    if (clear) {
      res.insert(bhttp::field::set_cookie, s.ClearRefresh());
      res.insert(bhttp::field::set_cookie, s.ClearToken());
    }
    return res;
  };
  const std::string cookie = CookieValue(r.request, kRefreshCookie);
  if (cookie.empty()) {
    return Answer(
        refuse(req, "no_session", "there is no single sign-on session to refresh", false));
  }
  std::optional<nlohmann::json> session = s.Open(kRefreshCookie, cookie);
  if (!session.has_value() || !(*session)["r"].is_string() || !(*session)["u"].is_string() ||
      !(*session)["e"].is_number_integer()) {
    return Answer(refuse(req, "bad_cookie", "the session cookie is not one edge made", true));
  }
  const absl::Time session_end = absl::FromUnixSeconds((*session)["e"].get<int64_t>());
  if (session_end < absl::Now()) {
    return Answer(refuse(req, "session_ended",
                         "the single sign-on session reached its maximum lifetime", true));
  }
  auth::oidc::ClientConfig client;
  std::shared_ptr<const auth::oidc::ProviderMetadata> provider = s.Provider(&client, nullptr);
  if (provider == nullptr) {
    return Answer(refuse(req, "provider_unavailable",
                         "edge has not reached the identity provider yet", false));
  }
  const auth::oidc::TokenRequest request =
      auth::oidc::RefreshRequest(*provider, client, (*session)["r"].get<std::string>());
  const std::string refresh_token = (*session)["r"];
  const std::string sub = (*session)["u"];
  std::shared_ptr<Impl> self = impl_;
  RouteResult result;
  result.deferred = [self, req, request, refresh_token, sub, session_end, client,
                     refuse](std::function<void(Response)> reply) {
    const bool queued = self->workers->Submit([self, req, request, refresh_token, sub, session_end,
                                               client, refuse, reply] {
      Impl* s = self.get();
      absl::StatusOr<auth::oidc::TokenResponse> tokens = s->Tokens(request);
      if (!tokens.ok()) {
        const bool refused = tokens.status().code() == absl::StatusCode::kFailedPrecondition;
        reply(refuse(req, refused ? "refused" : "provider_unavailable",
                     refused ? std::string(tokens.status().message())
                             : absl::StrCat("the identity provider is unreachable (",
                                            tokens.status().message(), ")"),
                     refused));
        return;
      }
      absl::StatusOr<auth::VerifiedToken> verified =
          s->VerifyFromProvider(tokens->id_token, "", client.client_id);
      if (verified.ok() && verified->claims.value("sub", "") != sub) {
        verified = absl::UnauthenticatedError("the refreshed ID token names another subject");
      }
      if (!verified.ok()) {
        reply(refuse(
            req, "id_token",
            absl::StrCat("the refreshed ID token was refused: ", verified.status().message()),
            true));
        return;
      }
      s->context->metrics->OidcRefresh("ok");
      Response res = Json(
          req, bhttp::status::ok,
          {{"user", verified->principal.user()},
           {"groups", verified->principal.groups()},
           {"expires",
            absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", verified->expires, absl::UTCTimeZone())},
           {"renew_ticket",
            s->Seal(kRenewTicket, {{"t", tokens->id_token},
                                   {"e", absl::ToUnixSeconds(absl::Now() + absl::Minutes(1))}})}});
      s->SetSessionCookies(res, tokens->id_token, *verified,
                           tokens->refresh_token.empty() ? refresh_token : tokens->refresh_token,
                           session_end);
      reply(std::move(res));
    });
    if (!queued) {
      self->context->metrics->OidcRefresh("busy");
      reply(JsonError(req, bhttp::status::service_unavailable, "UNAVAILABLE",
                      "edge has too many calls waiting for the identity provider: try again in "
                      "a moment"));
    }
  };
  return result;
}

RouteResult Sso::Logout(const RouteRequest& r) {
  Impl& s = *impl_;
  if (std::optional<Response> refused = s.CheckOrigin(r.request)) {
    return Answer(*std::move(refused));
  }
  auth::oidc::ClientConfig client;
  std::shared_ptr<const auth::oidc::ProviderMetadata> provider = s.Provider(&client, nullptr);
  std::optional<std::string> to;
  // The provider's session ends too when this browser signed in through it (it holds the
  // refresh cookie); a pasted token's sign-out stays at edge.
  if (provider != nullptr && !CookieValue(r.request, kRefreshCookie).empty()) {
    to = auth::oidc::LogoutUrl(*provider, client, CookieValue(r.request, kTokenCookie),
                               s.post_logout_redirect);
  }
  // The page asks with fetch (a form POST under its no-referrer policy carries "Origin: null")
  // and goes where the JSON says; other clients follow the 303.
  const bool json = absl::StrContains(Header(r.request, bhttp::field::accept), "application/json");
  Response res = json ? Json(r.request, bhttp::status::ok, {{"redirect_to", to.value_or("/")}})
                      : http::MakeResponse(r.request, bhttp::status::see_other, "text/plain", "");
  if (!json) {
    res.set(bhttp::field::location, to.value_or("/"));
  }
  res.insert(bhttp::field::set_cookie, s.ClearToken());
  res.insert(bhttp::field::set_cookie, s.ClearRefresh());
  res.insert(bhttp::field::set_cookie, s.ClearLogin());
  SecurityHeaders(res);
  s.context->metrics->OidcLogout();
  return Answer(std::move(res));
}

std::string Sso::RenewTicket(const std::string& id_token) const {
  return impl_->Seal(kRenewTicket,
                     {{"t", id_token}, {"e", absl::ToUnixSeconds(absl::Now() + absl::Minutes(1))}});
}

std::optional<std::string> Sso::OpenRenewTicket(const std::string& ticket) const {
  std::optional<nlohmann::json> doc = impl_->Open(kRenewTicket, ticket);
  if (!doc.has_value() || !(*doc)["t"].is_string() || !(*doc)["e"].is_number_integer() ||
      absl::FromUnixSeconds((*doc)["e"].get<int64_t>()) < absl::Now()) {
    return std::nullopt;
  }
  return (*doc)["t"].get<std::string>();
}

RouteResult AuthConfig(const Request& request, const Sso* sso) {
  nlohmann::json body = {{"sso", sso != nullptr}};
  if (sso != nullptr) {
    body["provider_name"] = sso->provider_name();
    body["login_url"] = "/auth/login";
    body["refresh_url"] = "/auth/refresh";
    body["logout_url"] = "/auth/logout";
  }
  return Answer(Json(request, bhttp::status::ok, body));
}

}  // namespace podgate::edge
