#include "policy/policy_store.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "policy/policy_loader.h"
#include "runtime/log.h"

namespace podgate::policy {
namespace {

absl::StatusOr<std::string> ReadDocument(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::string text;
  char buf[64 * 1024];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxDocumentBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " is larger than ", kMaxDocumentBytes, " bytes"));
    }
  }
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("error reading ", path));
  }
  return text;
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    return ".";
  }
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

PolicyStore::PolicyStore(PolicyMetrics* metrics, PolicyChangeSink* sink)
    : metrics_(metrics), sink_(sink), current_(CompiledPolicy::Empty("")) {}

PolicyStore::~PolicyStore() {
  if (watcher_.joinable()) {
    const uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof(one));
    watcher_.join();
  }
  if (stop_fd_ >= 0) {
    close(stop_fd_);
  }
}

std::shared_ptr<const CompiledPolicy> PolicyStore::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

int64_t PolicyStore::rejected_reloads() const {
  absl::MutexLock lock(&mu_);
  return rejected_;
}

std::string PolicyStore::last_rejection() const {
  absl::MutexLock lock(&mu_);
  return last_rejection_;
}

absl::Status PolicyStore::LoadFile(const std::string& path) {
  {
    absl::MutexLock lock(&mu_);
    path_ = path;
  }
  absl::MutexLock reload(&reload_mu_);
  const FileId id = StatFile();
  {
    absl::MutexLock lock(&mu_);
    loaded_file_id_ = id;
  }
  absl::StatusOr<std::string> text = ReadDocument(path);
  if (!text.ok()) {
    return text.status();
  }
  LoadResult result = LoadPolicy(*text, path);
  if (!result.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ":", result.FirstError()));
  }
  podgate::common::v1::PolicyChangeDetail change;
  change.set_version(result.version);
  change.set_accepted(true);
  change.set_source(path);
  {
    absl::MutexLock lock(&mu_);
    change.set_previous_version(current_->version());
    current_ = result.policy;
  }
  if (metrics_ != nullptr) {
    metrics_->SetVersion(result.version, path, result.rule_count);
  }
  log::Info("policy loaded",
            {{"path", path}, {"version", result.version}, {"rules", result.rule_count}});
  if (sink_ != nullptr) {
    sink_->OnPolicyChange(change);
  }
  return absl::OkStatus();
}

void PolicyStore::Reject(const std::string& version, const std::string& message) {
  std::string in_force;
  std::string path;
  {
    absl::MutexLock lock(&mu_);
    if (!version.empty() && version == last_rejected_version_) {
      return;  // the same bad document seen again: already counted and logged
    }
    last_rejected_version_ = version;
    ++rejected_;
    last_rejection_ = message;
    in_force = current_->version();
    path = path_;
  }
  if (metrics_ != nullptr) {
    metrics_->ReloadFailed();
  }
  log::Warn(
      "policy reload refused; keeping the version in force",
      {{"path", path}, {"version", in_force}, {"refused_version", version}, {"error", message}});
  if (sink_ != nullptr) {
    podgate::common::v1::PolicyChangeDetail change;
    change.set_version(in_force);
    change.set_previous_version(in_force);
    change.set_accepted(false);
    change.set_message(message);
    change.set_source(path);
    sink_->OnPolicyChange(change);
  }
}

absl::Status PolicyStore::Reload() {
  absl::MutexLock reload(&reload_mu_);
  std::string path;
  std::string in_force;
  {
    absl::MutexLock lock(&mu_);
    path = path_;
    in_force = current_->version();
  }
  if (path.empty()) {
    return absl::FailedPreconditionError("no policy file is configured");
  }
  absl::StatusOr<std::string> text = ReadDocument(path);
  if (!text.ok()) {
    // A missing file (a ConfigMap mid-swap, a deleted file) is refused like a bad document;
    // the same failure is only counted once.
    Reject(absl::StrCat("unreadable:", text.status().message()),
           std::string(text.status().message()));
    return text.status();
  }
  const std::string version = DocumentVersion(*text);
  if (version == in_force) {
    absl::MutexLock lock(&mu_);
    last_rejected_version_.clear();
    return absl::OkStatus();
  }
  LoadResult result = LoadPolicy(*text, path);
  if (!result.ok()) {
    const std::string message = absl::StrCat(path, ":", result.FirstError());
    Reject(version, message);
    return absl::InvalidArgumentError(message);
  }
  podgate::common::v1::PolicyChangeDetail change;
  change.set_version(version);
  change.set_previous_version(in_force);
  change.set_accepted(true);
  change.set_source(path);
  {
    absl::MutexLock lock(&mu_);
    current_ = result.policy;
    last_rejected_version_.clear();
  }
  if (metrics_ != nullptr) {
    metrics_->SetVersion(version, path, result.rule_count);
  }
  log::Info("policy reloaded", {{"path", path},
                                {"version", version},
                                {"previous_version", in_force},
                                {"rules", result.rule_count}});
  if (sink_ != nullptr) {
    sink_->OnPolicyChange(change);
  }
  return absl::OkStatus();
}

PolicyStore::FileId PolicyStore::StatFile() const {
  std::string path;
  {
    absl::MutexLock lock(&mu_);
    path = path_;
  }
  struct stat st;
  FileId id;
  if (stat(path.c_str(), &st) == 0) {  // follows symlinks: a ConfigMap swap changes the inode
    id.dev = st.st_dev;
    id.ino = st.st_ino;
    id.size = st.st_size;
    id.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  }
  return id;
}

absl::Status PolicyStore::StartWatching(absl::Duration poll_interval, bool use_inotify) {
  std::string path;
  FileId last;
  {
    absl::MutexLock lock(&mu_);
    path = path_;
    last = loaded_file_id_;
  }
  if (path.empty()) {
    return absl::FailedPreconditionError("LoadFile must succeed before StartWatching");
  }
  if (watcher_.joinable()) {
    return absl::FailedPreconditionError("the watcher is already running");
  }
  if (poll_interval < absl::Milliseconds(10)) {
    return absl::InvalidArgumentError("the poll interval must be at least 10ms");
  }
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) {
    return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  }
  int inotify_fd = use_inotify ? inotify_init1(IN_CLOEXEC | IN_NONBLOCK) : -1;
  if (inotify_fd >= 0) {
    // Only events that mark a finished document: close after write, rename into place,
    // deletion. A ConfigMap swap renames `..data_tmp` to `..data` (IN_MOVED_TO).
    const uint32_t mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB;
    if (inotify_add_watch(inotify_fd, DirectoryOf(path).c_str(), mask) < 0) {
      log::Warn("inotify unavailable for the policy directory; polling only",
                {{"path", path}, {"error", std::strerror(errno)}});
      close(inotify_fd);
      inotify_fd = -1;
    }
  } else if (use_inotify) {
    log::Warn("inotify unavailable; polling only", {{"error", std::strerror(errno)}});
  }
  watcher_ = std::thread(
      [this, inotify_fd, poll_interval, last] { WatchLoop(inotify_fd, poll_interval, last); });
  return absl::OkStatus();
}

void PolicyStore::WatchLoop(int inotify_fd, absl::Duration poll_interval, FileId last) {
  const int poll_ms = static_cast<int>(absl::ToInt64Milliseconds(poll_interval));
  for (;;) {
    pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {inotify_fd, POLLIN, 0}};
    const int n = poll(fds, inotify_fd >= 0 ? 2 : 1, poll_ms);
    if (n < 0 && errno != EINTR) {
      log::Error("policy watcher poll failed", {{"error", std::strerror(errno)}});
      break;
    }
    if (fds[0].revents & POLLIN) {
      break;
    }
    bool changed = false;
    if (inotify_fd >= 0 && (fds[1].revents & POLLIN)) {
      // Drain, then let a burst of events (a ConfigMap swap is several) settle for 20ms.
      alignas(inotify_event) char buf[4096];
      do {
        while (read(inotify_fd, buf, sizeof(buf)) > 0) {
        }
        pollfd again = {inotify_fd, POLLIN, 0};
        if (poll(&again, 1, 20) <= 0) {
          break;
        }
      } while (true);
      changed = true;
    }
    const FileId now = StatFile();
    if (now != last) {
      changed = true;
    }
    if (changed) {
      last = now;
      (void)Reload();  // refusals are logged, counted and reported inside
    }
  }
  if (inotify_fd >= 0) {
    close(inotify_fd);
  }
}

}  // namespace podgate::policy
