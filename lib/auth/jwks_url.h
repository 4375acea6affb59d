// Verification keys from an OpenID provider's `jwks_uri`, kept fresh while the process runs, so
// a provider's key rotation needs no restart and no one's action.
//
// - Fetched at start, then again when the cached copy expires: its lifetime comes from the
//   response's `Cache-Control: max-age` (or `Expires` minus `Date`), clamped to
//   [min_refresh, max_refresh]; `no-cache`/`no-store` mean min_refresh. The ETag is sent back as
//   If-None-Match; a 304 keeps the set and renews its lifetime.
// - A token naming an unknown `kid` triggers an early fetch, at most once per min_refresh (so a
//   stream of made-up kids cannot turn edge into a load generator against the provider).
// - A failed fetch (network, TLS, HTTP status, a document that is not a usable JWKS, one over
//   max_bytes) keeps the last good set and retries with backoff (1 s doubling to min_refresh);
//   once the last good set is older than max_stale, the source has no keys and every token is
//   refused ("keys_unavailable"): fail closed.
// - One background thread per source, not per request; verification never waits for the
//   network.
//
// Metrics (when a registry is given): podgate_auth_jwks_fetches_total{result="ok|not_modified|
// error"}, podgate_auth_jwks_unknown_kid_fetches_total, podgate_auth_jwks_keys,
// podgate_auth_jwks_last_success_timestamp_seconds, podgate_auth_jwks_usable (1 while there are
// keys to verify with).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "auth/key_source.h"
#include "http/client.h"
#include "prometheus/registry.h"

namespace podgate::auth {

struct JwksUrlOptions {
  // https://, or http:// to a loopback address only.
  std::string url;
  // Verify the provider against this PEM CA bundle; empty: the system's roots.
  std::string ca_file;
  absl::Duration min_refresh = absl::Seconds(30);
  absl::Duration max_refresh = absl::Hours(1);
  absl::Duration max_stale = absl::Hours(2);
  absl::Duration timeout = absl::Seconds(10);  // per fetch: connect, TLS, request, response
  size_t max_bytes = 512 * 1024;
  // How long Start waits for the first fetch; on failure the source starts without keys and
  // keeps trying (tokens are refused until a fetch succeeds).
  absl::Duration initial_wait = absl::Seconds(10);
};

// How long an HTTP response may be cached, before clamping: Cache-Control `max-age`, or 0 for
// `no-cache`/`no-store`; else `Expires` minus `Date` (0 when Expires is unparseable); nullopt
// when the response says nothing.
std::optional<absl::Duration> CacheLifetime(const http::ClientResponse& response);

class JwksUrlSource : public KeySource {
 public:
  // Checks the options (clear errors naming what is wrong), then starts the background thread.
  static absl::StatusOr<std::shared_ptr<JwksUrlSource>> Start(
      JwksUrlOptions options, std::shared_ptr<prometheus::Registry> registry = nullptr);
  ~JwksUrlSource() override;

  std::shared_ptr<const KeySet> Current() const override;
  std::string Unavailable() const override;
  std::string UnknownKey(absl::string_view kid) override;
  bool FetchPending() const override;

  struct Impl;

 private:
  explicit JwksUrlSource(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace podgate::auth
