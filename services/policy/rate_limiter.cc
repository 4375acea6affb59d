#include "policy/rate_limiter.h"

#include "absl/strings/str_cat.h"

namespace podgate::policy {
namespace {

std::string ScopeKey(const RateLimit& limit, const std::string& user,
                     const podgate::common::v1::Target& target) {
  // The same pod name in two clusters is two pods. The cluster goes first, length-prefixed, so
  // no cluster name can make two keys collide.
  const std::string pod = absl::StrCat(target.cluster().size(), ":", target.cluster(), "/",
                                       target.namespace_(), "/", target.pod());
  switch (limit.scope) {
    case RateLimit::Scope::kTarget:
      return pod;
    case RateLimit::Scope::kUser:
      return user;
    case RateLimit::Scope::kUserTarget:
      return absl::StrCat(user, "@", pod);
  }
  return pod;
}

const char* ScopeWords(RateLimit::Scope scope) {
  switch (scope) {
    case RateLimit::Scope::kTarget:
      return "per pod";
    case RateLimit::Scope::kUser:
      return "per user";
    case RateLimit::Scope::kUserTarget:
      return "per user and pod";
  }
  return "";
}

}  // namespace

std::optional<std::string> RateLimiter::Admit(const Rule& rule, const std::string& user,
                                              const podgate::common::v1::Target& target,
                                              absl::Time now) {
  if (!rule.rate_limit) {
    return std::nullopt;
  }
  const RateLimit& limit = *rule.rate_limit;
  // The rule id keys the window, so counts survive a reload that keeps the rule.
  const std::string key = absl::StrCat(rule.id, "\n", ScopeKey(limit, user, target));
  const std::string what = absl::StrCat("at most ", limit.count, " ", ScopeWords(limit.scope),
                                        " per ", absl::FormatDuration(limit.per));
  absl::MutexLock lock(&mu_);
  auto it = windows_.find(key);
  if (it == windows_.end()) {
    if (windows_.size() >= max_keys_) {
      EvictExpiredLocked(now);
    }
    if (windows_.size() >= max_keys_) {
      return absl::StrCat("rule ", rule.id, " allows ", what,
                          ", and this policy replica's rate-limit table is full (", max_keys_,
                          " keys), so it refuses rather than forget a count");
    }
    it = windows_.emplace(key, Window{}).first;
  }
  Window& w = it->second;
  w.per = limit.per;
  while (!w.times.empty() && w.times.front() <= now - limit.per) {
    w.times.pop_front();
  }
  while (w.times.size() > static_cast<size_t>(limit.count)) {  // the limit was lowered
    w.times.pop_front();
  }
  if (w.times.size() >= static_cast<size_t>(limit.count)) {
    const absl::Duration wait = absl::Ceil(w.times.front() + limit.per - now, absl::Seconds(1));
    return absl::StrCat("rule ", rule.id, " allows ", what, "; the next is possible in ",
                        absl::FormatDuration(wait));
  }
  w.times.push_back(now);
  return std::nullopt;
}

void RateLimiter::EvictExpiredLocked(absl::Time now) {
  for (auto it = windows_.begin(); it != windows_.end();) {
    const Window& w = it->second;
    if (w.times.empty() || w.times.back() <= now - w.per) {
      windows_.erase(it++);
    } else {
      ++it;
    }
  }
}

size_t RateLimiter::keys() const {
  absl::MutexLock lock(&mu_);
  return windows_.size();
}

}  // namespace podgate::policy
