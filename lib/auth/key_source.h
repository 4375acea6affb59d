// Where a Verifier takes its keys from: a fixed set loaded at start (PEM, HMAC secret or JWKS
// files), or a source that changes while the process runs (a JWKS URL refreshed in the
// background, jwks_url.h). Verification reads one consistent snapshot per token.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "auth/keys.h"

namespace podgate::auth {

class KeySource {
 public:
  virtual ~KeySource() = default;

  // The keys to verify with now. Null when the source has none it may use (a remote set that
  // was never fetched, or whose last good copy aged out): every token is then refused.
  virtual std::shared_ptr<const KeySet> Current() const = 0;

  // Why Current() is null, for the refusal message (never contains a token).
  virtual std::string Unavailable() const { return "no signing keys are available"; }

  // A token named a key id that Current() does not have. A remote source may refresh early
  // (rate-limited); must not block. Returns a hint for the refusal message ("" for none).
  virtual std::string UnknownKey(absl::string_view /*kid*/) { return ""; }

  // True while a fetch that an unknown kid asked for has not finished. A caller that may wait
  // (a token it knows comes from the provider, or one it can re-check later without blocking)
  // verifies once more when this turns false: the set then holds whatever the provider
  // published by the time it was asked.
  virtual bool FetchPending() const { return false; }
};

// A set that never changes.
class StaticKeySource : public KeySource {
 public:
  explicit StaticKeySource(KeySet keys) : keys_(std::make_shared<const KeySet>(std::move(keys))) {}
  std::shared_ptr<const KeySet> Current() const override { return keys_; }

 private:
  std::shared_ptr<const KeySet> keys_;
};

}  // namespace podgate::auth
