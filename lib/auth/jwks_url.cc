#include "auth/jwks_url.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "http/client.h"
#include "http/url.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "runtime/log.h"

namespace podgate::auth {
namespace {

constexpr absl::Duration kFirstRetry = absl::Seconds(1);

absl::Time ParseHttpDate(const std::string& text) {
  absl::Time t;
  std::string err;
  if (absl::ParseTime("%a, %d %b %Y %H:%M:%S GMT", text, absl::UTCTimeZone(), &t, &err)) {
    return t;
  }
  return absl::InfinitePast();
}

}  // namespace

// How long a response may be cached, before clamping: from Cache-Control (max-age, no-cache,
// no-store), else Expires minus Date; nullopt when the response says nothing.
std::optional<absl::Duration> CacheLifetime(const http::ClientResponse& response) {
  const std::string cache_control = absl::AsciiStrToLower(response.Header("Cache-Control"));
  for (absl::string_view directive : absl::StrSplit(cache_control, ',', absl::SkipWhitespace())) {
    directive = absl::StripAsciiWhitespace(directive);
    if (directive == "no-cache" || directive == "no-store") {
      return absl::ZeroDuration();
    }
    if (absl::ConsumePrefix(&directive, "max-age=")) {
      int64_t seconds = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(directive), &seconds) && seconds >= 0) {
        return absl::Seconds(seconds);
      }
    }
  }
  const std::string expires = response.Header("Expires");
  if (!expires.empty()) {
    const absl::Time at = ParseHttpDate(expires);
    absl::Time date = ParseHttpDate(response.Header("Date"));
    if (date == absl::InfinitePast()) {
      date = absl::Now();
    }
    // An unparseable Expires means "already expired" (RFC 9111 §5.3).
    return at == absl::InfinitePast() ? absl::ZeroDuration()
                                      : std::max(absl::ZeroDuration(), at - date);
  }
  return std::nullopt;
}

struct JwksUrlSource::Impl {
  JwksUrlOptions options;
  http::HttpUrl url;
  std::string origin;  // the URL for messages

  mutable std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  bool urgent = false;
  int fetches_done = 0;
  absl::Time next_fetch = absl::InfinitePast();
  absl::Time last_unknown_fetch = absl::InfinitePast();
  // Early fetches asked for by unknown kids, and how many of them a finished fetch (good or
  // failed) has answered: a fetch answers the requests made before it started.
  int64_t unknown_requested = 0;
  int64_t unknown_answered = 0;
  absl::Time last_success = absl::InfinitePast();
  absl::Duration backoff = kFirstRetry;
  // What the last 200 said about caching; a 304 without cache headers keeps it (RFC 9111
  // §4.3.4: the stored response's headers are updated, not replaced).
  std::optional<absl::Duration> last_cache_lifetime;
  std::shared_ptr<const KeySet> keys;
  std::string etag;
  std::string last_error;

  prometheus::Counter* fetch_ok = nullptr;
  prometheus::Counter* fetch_not_modified = nullptr;
  prometheus::Counter* fetch_error = nullptr;
  prometheus::Counter* unknown_kid_fetches = nullptr;
  prometheus::Gauge* key_count = nullptr;
  prometheus::Gauge* last_success_gauge = nullptr;
  prometheus::Gauge* usable = nullptr;

  std::thread thread;

  bool UsableLocked(absl::Time now) const {
    return keys != nullptr && now - last_success <= options.max_stale;
  }

  void Run() {
    std::unique_lock<std::mutex> lock(mu);
    while (!stop) {
      const absl::Time now = absl::Now();
      if (!urgent && now < next_fetch) {
        // Wake at the next fetch, and when the last good set turns stale (for the gauge).
        absl::Time wake = next_fetch;
        if (keys != nullptr) {
          wake = std::min(wake, last_success + options.max_stale + absl::Milliseconds(1));
        }
        if (wake <= now) {
          wake = next_fetch;
        }
        cv.wait_until(lock, absl::ToChronoTime(wake));
        if (usable != nullptr) {
          usable->Set(UsableLocked(absl::Now()) ? 1 : 0);
        }
        continue;
      }
      urgent = false;
      const int64_t answers = unknown_requested;
      const std::string if_none_match = etag;
      lock.unlock();
      std::optional<absl::Duration> cached;
      std::string new_etag;
      absl::StatusOr<std::shared_ptr<const KeySet>> fetched =
          Fetch(if_none_match, &cached, &new_etag);
      lock.lock();
      const absl::Time done = absl::Now();
      ++fetches_done;
      unknown_answered = std::max(unknown_answered, answers);
      if (fetched.ok()) {
        if (*fetched != nullptr) {
          keys = *std::move(fetched);
          etag = new_etag;
          last_cache_lifetime = cached;
          if (fetch_ok != nullptr) {
            fetch_ok->Increment();
          }
        } else if (fetch_not_modified != nullptr) {
          fetch_not_modified->Increment();
        }
        last_success = done;
        last_error.clear();
        backoff = kFirstRetry;
        if (!cached.has_value()) {
          cached = last_cache_lifetime;
        }
        next_fetch = done + std::clamp(cached.value_or(options.max_refresh), options.min_refresh,
                                       options.max_refresh);
        if (key_count != nullptr) {
          key_count->Set(static_cast<double>(keys->keys().size()));
          last_success_gauge->Set(absl::ToDoubleSeconds(done - absl::UnixEpoch()));
        }
      } else {
        last_error = std::string(fetched.status().message());
        next_fetch = done + backoff;
        backoff = std::min(backoff * 2, options.min_refresh);
        if (fetch_error != nullptr) {
          fetch_error->Increment();
        }
        log::Warn("jwks fetch failed; keeping the last good key set",
                  {{"url", origin},
                   {"error", last_error},
                   {"usable", UsableLocked(done)},
                   {"retry_in", absl::FormatDuration(next_fetch - done)}});
      }
      if (usable != nullptr) {
        usable->Set(UsableLocked(done) ? 1 : 0);
      }
      cv.notify_all();
    }
  }

  // One GET. OK with a set (200), OK with null (304), or the failure.
  absl::StatusOr<std::shared_ptr<const KeySet>> Fetch(const std::string& if_none_match,
                                                      std::optional<absl::Duration>* lifetime,
                                                      std::string* new_etag) const {
    // The parser refuses a body larger than max_bytes.
    http::ClientOptions client =
        http::ClientOptionsFor(url, options.ca_file, options.timeout, options.max_bytes);
    client.headers.emplace_back("Accept", "application/jwk-set+json, application/json");
    if (!if_none_match.empty()) {
      client.headers.emplace_back("If-None-Match", if_none_match);
    }
    absl::StatusOr<http::ClientResponse> response = http::Fetch(client, "GET", url.target);
    if (!response.ok()) {
      return absl::UnavailableError(absl::StrCat(origin, ": ", response.status().message()));
    }
    *lifetime = CacheLifetime(*response);
    if (response->status == 304 && !if_none_match.empty()) {
      return std::shared_ptr<const KeySet>();
    }
    if (response->status != 200) {
      return absl::UnavailableError(
          absl::StrCat(origin, ": HTTP ", response->status, " (expected 200)"));
    }
    absl::StatusOr<KeySet> set = KeySet::FromJwks(response->body, origin);
    if (!set.ok()) {
      return set.status();
    }
    if (set->empty()) {
      return absl::UnavailableError(absl::StrCat(origin, ": the key set has no usable key"));
    }
    *new_etag = response->Header("ETag");
    return std::make_shared<const KeySet>(*std::move(set));
  }
};

absl::StatusOr<std::shared_ptr<JwksUrlSource>> JwksUrlSource::Start(
    JwksUrlOptions options, std::shared_ptr<prometheus::Registry> registry) {
  absl::StatusOr<http::HttpUrl> url = http::ParseHttpUrl(options.url);
  if (!url.ok()) {
    return url.status();
  }
  if (!url->tls && !url->IsLoopback()) {
    return absl::InvalidArgumentError(
        absl::StrCat("JWKS URL ", url->ToString(),
                     ": http:// is allowed only to a loopback address; use https"));
  }
  if (options.min_refresh <= absl::ZeroDuration() || options.max_refresh < options.min_refresh) {
    return absl::InvalidArgumentError(
        "JWKS refresh: need 0 < minimum refresh interval <= maximum refresh interval");
  }
  if (options.max_stale < options.max_refresh) {
    return absl::InvalidArgumentError(
        "JWKS max staleness must be at least the maximum refresh interval (or keys would age "
        "out before the next fetch)");
  }
  if (options.timeout <= absl::ZeroDuration() || options.max_bytes == 0) {
    return absl::InvalidArgumentError("JWKS fetch timeout and size limit must be positive");
  }
  auto impl = std::make_shared<Impl>();
  impl->options = std::move(options);
  impl->url = *std::move(url);
  impl->origin = impl->url.ToString();
  if (registry != nullptr) {
    auto& fetches = prometheus::BuildCounter()
                        .Name("podgate_auth_jwks_fetches_total")
                        .Help("JWKS fetches from the identity provider, by result")
                        .Register(*registry);
    impl->fetch_ok = &fetches.Add({{"result", "ok"}});
    impl->fetch_not_modified = &fetches.Add({{"result", "not_modified"}});
    impl->fetch_error = &fetches.Add({{"result", "error"}});
    impl->unknown_kid_fetches =
        &prometheus::BuildCounter()
             .Name("podgate_auth_jwks_unknown_kid_fetches_total")
             .Help("Early JWKS fetches triggered by a token naming an unknown key id")
             .Register(*registry)
             .Add({});
    impl->key_count = &prometheus::BuildGauge()
                           .Name("podgate_auth_jwks_keys")
                           .Help("Keys in the JWKS set in use")
                           .Register(*registry)
                           .Add({});
    impl->last_success_gauge =
        &prometheus::BuildGauge()
             .Name("podgate_auth_jwks_last_success_timestamp_seconds")
             .Help("When the JWKS was last fetched (or confirmed) successfully")
             .Register(*registry)
             .Add({});
    impl->usable = &prometheus::BuildGauge()
                        .Name("podgate_auth_jwks_usable")
                        .Help("1 while there is a key set to verify with, 0 when it aged out")
                        .Register(*registry)
                        .Add({});
  }
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->Run(); });
  {
    std::unique_lock<std::mutex> lock(impl->mu);
    impl->cv.wait_for(lock, absl::ToChronoNanoseconds(impl->options.initial_wait),
                      [raw] { return raw->fetches_done > 0; });
    if (impl->keys == nullptr) {
      log::Warn("jwks not available yet; tokens are refused until a fetch succeeds",
                {{"url", impl->origin}, {"error", impl->last_error}});
    }
  }
  return std::shared_ptr<JwksUrlSource>(new JwksUrlSource(std::move(impl)));
}

JwksUrlSource::~JwksUrlSource() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) {
    impl_->thread.join();
  }
}

std::shared_ptr<const KeySet> JwksUrlSource::Current() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->UsableLocked(absl::Now()) ? impl_->keys : nullptr;
}

std::string JwksUrlSource::Unavailable() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->keys == nullptr) {
    return absl::StrCat("the signing keys from ", impl_->origin,
                        " have not been fetched yet; sign-in is refused until they are");
  }
  return absl::StrCat(
      "the signing keys from ", impl_->origin, " could not be refreshed for ",
      absl::FormatDuration(absl::Trunc(absl::Now() - impl_->last_success, absl::Seconds(1))),
      "; sign-in is refused until they are");
}

bool JwksUrlSource::FetchPending() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return !impl_->stop && impl_->unknown_answered < impl_->unknown_requested;
}

std::string JwksUrlSource::UnknownKey(absl::string_view /*kid*/) {
  constexpr char kHint[] =
      " (the key set is fetched again from the identity provider at most every "
      "--jwt_jwks_refresh_min; a key it has just published is accepted after that)";
  std::lock_guard<std::mutex> lock(impl_->mu);
  const absl::Time now = absl::Now();
  if (now - impl_->last_unknown_fetch < impl_->options.min_refresh) {
    return kHint;
  }
  impl_->last_unknown_fetch = now;
  impl_->urgent = true;
  ++impl_->unknown_requested;
  if (impl_->unknown_kid_fetches != nullptr) {
    impl_->unknown_kid_fetches->Increment();
  }
  impl_->cv.notify_all();
  return kHint;
}

}  // namespace podgate::auth
