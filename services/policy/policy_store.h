// Holds the policy version in force and reloads it from its file.
//
// Decisions take a std::shared_ptr<const CompiledPolicy> snapshot under a short lock and
// evaluate it without any lock: a reload builds the new version completely, then swaps the
// pointer, so a decision sees the old or the new version, never a mix.
//
// Reloading watches the file's directory with inotify (an editor's write-and-close or rename, a
// Kubernetes ConfigMap mount swapping its `..data` symlink) and also stats the file every poll
// interval, for file systems without inotify. A document that fails to read, parse or validate
// leaves the last good version in force, is logged once with its first error, counted in
// podgate_policy_reload_failures_total and reported to the PolicyChangeSink.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "podgate/common/v1/common.pb.h"
#include "policy/compiled_policy.h"
#include "policy/policy_metrics.h"

namespace podgate::policy {

// Receives every policy change: a new version accepted, or a document refused. The audit
// client implements it; the store calls it from the reloading thread, so it must not block.
class PolicyChangeSink {
 public:
  virtual ~PolicyChangeSink() = default;
  virtual void OnPolicyChange(const podgate::common::v1::PolicyChangeDetail& change) = 0;
};

class PolicyStore {
 public:
  // `metrics` and `sink` may be null; neither is owned and both must outlive the store.
  PolicyStore(PolicyMetrics* metrics, PolicyChangeSink* sink);
  // Stops the watcher.
  ~PolicyStore();

  PolicyStore(const PolicyStore&) = delete;
  PolicyStore& operator=(const PolicyStore&) = delete;

  // Loads `path` for the first time. An unreadable or invalid document is an error (the
  // service refuses to start rather than run without its policy).
  absl::Status LoadFile(const std::string& path);

  // Re-reads the file now. An unchanged document is a no-op; a refused one keeps the version
  // in force and returns why.
  absl::Status Reload();

  // Starts the watcher thread (inotify, unless `use_inotify` is false, plus a stat every
  // `poll_interval`). LoadFile first.
  absl::Status StartWatching(absl::Duration poll_interval, bool use_inotify = true);

  // The version in force: an empty deny-everything policy until LoadFile succeeds.
  std::shared_ptr<const CompiledPolicy> Current() const;

  int64_t rejected_reloads() const;
  std::string last_rejection() const;

 private:
  struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = -1;
    int64_t mtime_ns = 0;
    bool operator==(const FileId&) const = default;
  };
  FileId StatFile() const;
  void Reject(const std::string& version, const std::string& message);
  void WatchLoop(int inotify_fd, absl::Duration poll_interval, FileId last);

  PolicyMetrics* const metrics_;
  PolicyChangeSink* const sink_;

  mutable absl::Mutex mu_;
  std::shared_ptr<const CompiledPolicy> current_ ABSL_GUARDED_BY(mu_);
  std::string path_ ABSL_GUARDED_BY(mu_);
  int64_t rejected_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_rejection_ ABSL_GUARDED_BY(mu_);
  std::string last_rejected_version_ ABSL_GUARDED_BY(mu_);
  // The file as stat() saw it just before LoadFile read it: the watcher's starting point, so a
  // change between LoadFile and StartWatching is not missed.
  FileId loaded_file_id_ ABSL_GUARDED_BY(mu_);

  // Serialises reloads (the watcher and explicit Reload calls).
  absl::Mutex reload_mu_;

  int stop_fd_ = -1;
  std::thread watcher_;
};

}  // namespace podgate::policy
