#include "exec/access_cache.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace podgate::exec {

AccessCache::AccessCache(KubeApi* kube, absl::Duration ttl, size_t max_entries,
                         std::function<absl::Time()> now)
    : kube_(kube), ttl_(ttl), max_entries_(max_entries), now_(std::move(now)) {}

void AccessCache::MayExec(const KubeIdentity& as, const std::string& namespace_name,
                          std::function<void(absl::StatusOr<bool>)> done) {
  // The identity as the API server sees it: user, groups and extras (NUL never occurs in a
  // header value, so it separates them unambiguously). The session extra differs per session,
  // and is left out: it does not change what RBAC allows.
  std::string key =
      absl::StrCat(as.user, std::string(1, '\0'), absl::StrJoin(as.groups, std::string(1, '\x01')),
                   std::string(1, '\0'), namespace_name);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = answers_.find(key);
    if (it != answers_.end() && now_() - it->second.second < ttl_) {
      const bool allowed = it->second.first;
      done(allowed);
      return;
    }
  }
  KubeIdentity subject = as;
  subject.extra.clear();
  AccessQuery query{"create", "", "pods", "exec", namespace_name, ""};
  kube_->ReviewAccess(
      subject, query,
      [this, key = std::move(key), done = std::move(done)](absl::StatusOr<bool> allowed) {
        if (allowed.ok()) {
          std::lock_guard<std::mutex> lock(mu_);
          if (answers_.size() >= max_entries_) {
            answers_.clear();
          }
          answers_[key] = {*allowed, now_()};
        }
        done(allowed);
      });
}

size_t AccessCache::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return answers_.size();
}

}  // namespace podgate::exec
