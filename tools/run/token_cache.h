// podgate-run's token cache: what `podgate-run login` got from the identity provider, kept in a
// file only its user can read, so later runs need no --token.
//
// The file is JSON: {"id_token", "refresh_token", "expiry" (the ID token's `exp`, Unix
// seconds), "issuer", "client_id"}. It is written atomically (a temporary file in the same
// directory, mode 0600, flushed, then renamed over the old one), its missing parent directories
// are created 0700, and it is refused when it is not a regular file of this user that only this
// user can read and write (mode 0600 or stricter): a token others could read is a token others
// could use.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace podgate::run {

struct CachedToken {
  std::string id_token;
  std::string refresh_token;  // empty when the provider issued none
  absl::Time expiry = absl::InfinitePast();
  std::string issuer;
  std::string client_id;
};

// Looks an environment variable up; nullopt when it is not set.
using Env = std::function<std::optional<std::string>(const std::string&)>;

// $XDG_CONFIG_HOME/podgate/token.json, else $HOME/.config/podgate/token.json. An
// XDG_CONFIG_HOME that is not absolute is ignored (XDG Base Directory spec). FailedPrecondition
// when neither variable gives a directory.
absl::StatusOr<std::string> DefaultTokenCachePath(const Env& env);

// The JSON text of `token` and back. Parsing errors name the field (never a token's value).
std::string SerializeToken(const CachedToken& token);
absl::StatusOr<CachedToken> ParseToken(const std::string& text);

// Reads the cache at `path`. NotFound when there is none; FailedPrecondition naming the path
// and the reason when the file is unsafe to use (a symbolic link, not a regular file, owned by
// another user, readable or writable by group or others); InvalidArgument when it is not a
// cache; the errno's text for other failures.
absl::StatusOr<CachedToken> ReadTokenCache(const std::string& path);

// Writes `token` to `path` atomically with mode 0600, creating missing parent directories with
// mode 0700.
absl::Status WriteTokenCache(const std::string& path, const CachedToken& token);

// Deletes the cache (and its lock file). NotFound when there was no cache.
absl::Status RemoveTokenCache(const std::string& path);

// An exclusive lock on the cache at `path` (flock on "<path>.lock", created 0600 next to it),
// held while a run reads, refreshes and rewrites the cache: runs started together then refresh
// once, and the others read the fresh token. (Providers that rotate refresh tokens revoke the
// whole grant when a used one comes back, so two runs refreshing with the same one would end
// the sign-in.) Released when destroyed.
class TokenCacheLock {
 public:
  // Waits up to `timeout`; DeadlineExceeded naming the lock file when another holder keeps it.
  static absl::StatusOr<TokenCacheLock> Acquire(const std::string& path, absl::Duration timeout);
  TokenCacheLock(TokenCacheLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  TokenCacheLock& operator=(TokenCacheLock&&) = delete;
  TokenCacheLock(const TokenCacheLock&) = delete;
  ~TokenCacheLock();

 private:
  explicit TokenCacheLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace podgate::run
