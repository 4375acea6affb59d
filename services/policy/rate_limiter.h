// Per-rule rate limits (`rateLimit` in the policy document): at most N allowed decisions of a
// rule per window, counted per pod, per user or per user and pod.
//
// Counted by the policy replica that answers, in memory: with R replicas behind a balancer a
// principal can get up to R x N in the worst case, and a restart forgets the counts. That is
// stated in docs/policy.md; a rule that must hold exactly runs policy with one replica.
// Memory is bounded: at most `max_keys` (rule, scope) keys, each holding at most `count`
// timestamps; when the table is full of live keys, a new key is refused (fail closed) rather
// than an old one forgotten.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "policy/compiled_policy.h"

namespace podgate::policy {

class RateLimiter {
 public:
  explicit RateLimiter(size_t max_keys = 100000) : max_keys_(max_keys) {}

  // Counts one allowed decision of `rule` for (user, target) at `now`. Returns nullopt when it
  // is within the limit, else the reason for refusing it ("at most 2 per pod per 1h; the next
  // is possible in 41m").
  std::optional<std::string> Admit(const Rule& rule, const std::string& user,
                                   const podgate::common::v1::Target& target, absl::Time now);

  size_t keys() const;

 private:
  void EvictExpiredLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_keys_;
  mutable absl::Mutex mu_;
  struct Window {
    std::deque<absl::Time> times;
    absl::Duration per;
  };
  absl::flat_hash_map<std::string, Window> windows_ ABSL_GUARDED_BY(mu_);
};

}  // namespace podgate::policy
