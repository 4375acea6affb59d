// Kubernetes' word on "may this user exec into pods in this namespace?" (a
// SelfSubjectAccessReview made as the user), cached briefly: ListTargets asks it for every
// namespace it would list, and a page asks ListTargets often. Only answers are cached, never
// errors (a review that failed is asked again next time, and counts as "no" meanwhile).
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "exec/kube.h"

namespace podgate::exec {

class AccessCache {
 public:
  // `kube` must outlive the cache. At most `max_entries` answers are kept (the whole cache is
  // dropped when it is full: it is refilled by the next questions).
  AccessCache(KubeApi* kube, absl::Duration ttl, size_t max_entries = 10000,
              std::function<absl::Time()> now = absl::Now);

  // Calls `done` with whether `as` may create pods/exec in `namespace_name`: from the cache
  // when a fresh answer is there (at once), else from a review (on the client's thread).
  void MayExec(const KubeIdentity& as, const std::string& namespace_name,
               std::function<void(absl::StatusOr<bool>)> done);

  size_t size();

 private:
  KubeApi* const kube_;
  const absl::Duration ttl_;
  const size_t max_entries_;
  const std::function<absl::Time()> now_;
  std::mutex mu_;
  std::map<std::string, std::pair<bool, absl::Time>> answers_;
};

}  // namespace podgate::exec
