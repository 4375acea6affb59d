#include "exec/journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "exec/container_probe.h"
#include "exec/probe_run.h"
#include "runtime/ids.h"
#include "runtime/log.h"
#include "wire/time.h"

namespace podgate::exec {

namespace common = podgate::common::v1;

namespace {

constexpr char kSuffix[] = ".json";

absl::Status Errno(const std::string& what) {
  return absl::Status(absl::StatusCode::kUnavailable, absl::StrCat(what, ": ", strerror(errno)));
}

absl::Status WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return Errno("write");
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(const std::string& dir, int max_entries) {
  if (dir.empty()) {
    return absl::InvalidArgumentError("the journal directory is empty");
  }
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Errno(absl::StrCat("cannot create ", dir));
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(dir, " is not a directory"));
  }
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    return Errno(absl::StrCat(dir, " is not writable"));
  }
  const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    return Errno(absl::StrCat("open ", dir));
  }
  std::unique_ptr<Journal> journal(new Journal(dir, max_entries, dir_fd));
  journal->Load();  // counts the entries (and drops unreadable ones)
  journal->writer_ = std::thread([j = journal.get()] { j->WriteLoop(); });
  return journal;
}

Journal::~Journal() {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    stop_ = true;
  }
  queue_cv_.notify_one();
  if (writer_.joinable()) {
    writer_.join();  // what is queued is written and its callbacks run first
  }
  close(dir_fd_);
}

std::string Journal::PathOf(const std::string& id) const {
  return absl::StrCat(dir_, "/", id, kSuffix);
}

namespace {

// Starts a write with `start` (given the write's `done`) and waits for its completion.
absl::Status WaitFor(
    const std::function<absl::Status(absl::AnyInvocable<void(absl::Status)>)>& start) {
  absl::Notification written;
  absl::Status result;
  if (absl::Status s = start([&](absl::Status s) {
        result = std::move(s);
        written.Notify();
      });
      !s.ok()) {
    return s;
  }
  written.WaitForNotification();
  return result;
}

}  // namespace

absl::Status Journal::Add(const JournalEntry& entry) {
  return WaitFor([&](auto done) { return AddAsync(entry, std::move(done)); });
}

absl::Status Journal::AddAsync(const JournalEntry& entry,
                               absl::AnyInvocable<void(absl::Status)> done) {
  std::string text = EncodeJournalEntry(entry);
  if (text.size() > kMaxEntryBytes) {
    return absl::InvalidArgumentError("the journal entry is too large");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_ >= max_entries_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the journal of running commands is full (", max_entries_, " entries)"));
    }
    SetSizeLocked(entries_ + 1);
  }
  Queue(PathOf(entry.result_event_id), std::move(text), false, std::move(done));
  return absl::OkStatus();
}

absl::Status Journal::RecordLaunch(const std::string& result_event_id, const std::string& pid,
                                   const std::string& start_ticks) {
  return WaitFor([&](auto done) {
    return RecordLaunchAsync(result_event_id, pid, start_ticks, std::move(done));
  });
}

absl::Status Journal::RecordLaunchAsync(const std::string& result_event_id, const std::string& pid,
                                        const std::string& start_ticks,
                                        absl::AnyInvocable<void(absl::Status)> done) {
  if (!IsJournalEntryId(result_event_id)) {
    return absl::InvalidArgumentError("not a journal entry's id");
  }
  if (!IsJournalNumber(pid) || !IsJournalNumber(start_ticks)) {
    return absl::InvalidArgumentError("the pid or start time is not a number");
  }
  Queue(PathOf(result_event_id), JournalLaunchLine(pid, start_ticks), true, std::move(done));
  return absl::OkStatus();
}

void Journal::Queue(std::string path, std::string text, bool launch,
                    absl::AnyInvocable<void(absl::Status)> done) {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    queue_.push_back({std::move(path), std::move(text), launch, std::move(done)});
  }
  queue_cv_.notify_one();
}

// Written in place, not to a temporary file renamed: a crash in the middle leaves a cut-off
// file, which Load skips and removes — rightly, since "go" is sent only once the entry and its
// launch line are durable, so its command never ran. That saves the rename and the second
// journal commit it costs on ext4 (0.36-0.42 ms -> 0.25-0.27 ms per entry here at the median).
absl::Status Journal::WriteFile(const std::string& path, const std::string& text) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Errno(absl::StrCat("cannot create ", path));  // an existing file stays as it is
  }
  absl::Status s = WriteAll(fd, text);
  if (s.ok() && fsync(fd) != 0) {
    s = Errno(absl::StrCat("fsync ", path));
  }
  close(fd);
  if (!s.ok()) {
    unlink(path.c_str());
  }
  return s;
}

// The launch line, over the "not launched" one the entry was created with: same size, same
// sector, so fdatasync writes one block and no metadata (0.08-0.09 ms here at the median,
// against 0.24-0.26 for a new entry). A crash before it is durable leaves "not launched": the
// wrapper never got "go".
absl::Status Journal::WriteLaunchLine(const std::string& path, const std::string& line) {
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    return Errno(absl::StrCat("cannot open ", path));
  }
  absl::Status s;
  const ssize_t n = pwrite(fd, line.data(), line.size(), 0);
  if (n < 0) {
    s = Errno(absl::StrCat("write ", path));
  } else if (static_cast<size_t>(n) != line.size()) {
    s = absl::UnavailableError(absl::StrCat("write ", path, ": short write"));
  } else if (fdatasync(fd) != 0) {
    s = Errno(absl::StrCat("fdatasync ", path));
  }
  close(fd);
  return s;
}

void Journal::WriteLoop() {
  while (true) {
    std::deque<Pending> batch;
    {
      std::unique_lock<std::mutex> lock(queue_mu_);
      queue_cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) {
        return;  // stopped, nothing left
      }
      batch.swap(queue_);
    }
    // Every entry of the batch, then one fsync of the directory for all their names (group
    // commit: entries queued while a batch was written share the next batch's).
    // A launch line needs no directory fsync: its entry's name is durable already.
    std::vector<absl::Status> results;
    results.reserve(batch.size());
    bool any = false;
    for (const Pending& p : batch) {
      if (p.launch) {
        results.push_back(WriteLaunchLine(p.path, p.text));
        continue;
      }
      results.push_back(WriteFile(p.path, p.text));
      any = any || results.back().ok();
    }
    if (any && fsync(dir_fd_) != 0) {
      const absl::Status dir_error = Errno(absl::StrCat("fsync ", dir_));
      for (size_t i = 0; i < batch.size(); ++i) {
        if (!batch[i].launch && results[i].ok()) {
          unlink(batch[i].path.c_str());
          results[i] = dir_error;
        }
      }
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!batch[i].launch && !results[i].ok()) {
        std::lock_guard<std::mutex> lock(mu_);
        SetSizeLocked(entries_ - 1);
      }
      batch[i].done(std::move(results[i]));
    }
  }
}

void Journal::Remove(const std::string& result_event_id) {
  if (unlink(PathOf(result_event_id).c_str()) == 0) {
    std::lock_guard<std::mutex> lock(mu_);
    SetSizeLocked(entries_ - 1);
  } else if (errno != ENOENT) {
    log::Warn("journal entry not removed",
              {{"entry", result_event_id}, {"error", std::string(strerror(errno))}});
  }
}

void Journal::SetSizeLocked(int entries) {
  entries_ = entries;
  if (size_gauge_ != nullptr) {
    size_gauge_->Set(entries);
  }
}

void Journal::set_size_gauge(prometheus::Gauge* entries) {
  std::lock_guard<std::mutex> lock(mu_);
  size_gauge_ = entries;
  SetSizeLocked(entries_);
}

int Journal::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_;
}

std::vector<JournalEntry> Journal::Load() {
  std::vector<JournalEntry> out;
  DIR* d = opendir(dir_.c_str());
  if (d == nullptr) {
    log::Error("journal not readable", {{"dir", dir_}, {"error", std::string(strerror(errno))}});
    return out;
  }
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") {
      names.push_back(name);
    }
  }
  closedir(d);
  for (const std::string& name : names) {
    const std::string path = absl::StrCat(dir_, "/", name);
    if (absl::EndsWith(name, ".tmp")) {
      unlink(path.c_str());  // a write that never finished: its command never ran
      continue;
    }
    auto skip = [&](const std::string& why) {
      log::Error("journal entry skipped", {{"file", path}, {"error", why}});
      unlink(path.c_str());
    };
    if (!absl::EndsWith(name, kSuffix)) {
      skip("not a journal entry");
      continue;
    }
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
        static_cast<size_t>(st.st_size) > kMaxEntryBytes) {
      skip("not a regular file of at most 64 KiB");
      continue;
    }
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<JournalEntry> entry = DecodeJournalEntry(text.str());
    if (!entry.ok()) {
      skip(std::string(entry.status().message()));
      continue;
    }
    if (PathOf(entry->result_event_id) != path) {
      skip("its file name is not its result event id");
      continue;
    }
    out.push_back(*std::move(entry));
  }
  std::lock_guard<std::mutex> lock(mu_);
  SetSizeLocked(static_cast<int>(out.size()));
  return out;
}

// --- recovery --------------------------------------------------------------------------------

namespace {

// Waits for every entry's recovery to settle (or the deadline).
struct Countdown {
  std::mutex mu;
  std::condition_variable cv;
  int left = 0;
  int settled = 0;
  void Done(bool ok) {
    std::lock_guard<std::mutex> lock(mu);
    --left;
    settled += ok ? 1 : 0;
    cv.notify_all();
  }
};

class Recovery : public std::enable_shared_from_this<Recovery> {
 public:
  Recovery(JournalEntry entry, Journal* journal, KubeApi* kube, clients::AuditClient* audit,
           runtime::TimerQueue* timers, RecoveryOptions options,
           std::shared_ptr<Countdown> countdown)
      : entry_(std::move(entry)),
        journal_(journal),
        kube_(kube),
        audit_(audit),
        timers_(timers),
        options_(options),
        countdown_(std::move(countdown)) {}

  void Start() {
    if (entry_.pid.empty()) {
      // Journaled while it was launched, but its pid never became durable, and "go" follows
      // that: the wrapper got none and ran nothing of the user's (it exits at EOF on stdin).
      Record("not run",
             "not run: exec restarted while the command was being launched (the exec that "
             "launched it ended without a drain: kill -9, OOM or a crash); its launch wrapper "
             "never got \"go\"");
      return;
    }
    Stop("INT", false, 0);
  }

 private:
  void Stop(const std::string& signal, bool group, int attempt) {
    ExecSpec spec;
    spec.namespace_name = entry_.target.namespace_();
    spec.pod = entry_.target.pod();
    spec.container = entry_.target.container();
    spec.argv = StopHelperArgv(entry_.pid, entry_.start_ticks, signal, group);
    auto self = shared_from_this();
    RunProbe(kube_, timers_, spec, options_.probe_timeout,
             [self, signal, group, attempt](absl::StatusOr<ProbeOutput> out) {
               self->OnStop(signal, group, attempt, std::move(out));
             });
  }

  void OnStop(const std::string& signal, bool group, int attempt, absl::StatusOr<ProbeOutput> out) {
    const bool signalled = out.ok() && out->exit_code == 0;
    const bool gone = out.ok() && out->exit_code == 3;
    if (signal == "INT") {
      if (gone) {
        Record("gone",
               "gone: its process had already exited when exec restarted; its exit "
               "status and the rest of its output are unknown");
        return;
      }
      if (!out.ok() && out.status().code() == absl::StatusCode::kNotFound) {
        Record("gone", absl::StrCat("gone: its pod or container no longer exists (",
                                    out.status().message(), ")"));
        return;
      }
      if (signalled) {
        const bool leads_group = out->stdout_text.rfind("group ", 0) == 0;
        auto self = shared_from_this();
        timers_->After(options_.interrupt_grace,
                       [self, leads_group] { self->Stop("KILL", leads_group, 0); });
        return;
      }
    } else if (signalled || gone) {
      Record("stopped",
             "stopped: exec restarted (the exec that ran it ended without a drain: "
             "kill -9, OOM or a crash); its exit status is unknown");
      return;
    }
    const std::string error =
        out.ok() ? absl::StrCat("exit ", out->exit_code, ": ", out->stderr_text.substr(0, 200))
                 : out.status().ToString();
    log::Warn("journal: stop helper failed", {{"session_id", entry_.session_id},
                                              {"trace_id", entry_.trace_id},
                                              {"command_id", entry_.command_id},
                                              {"signal", signal},
                                              {"attempt", attempt},
                                              {"error", error}});
    if (attempt < 3) {
      auto self = shared_from_this();
      timers_->After(options_.interrupt_grace,
                     [self, signal, group, attempt] { self->Stop(signal, group, attempt + 1); });
      return;
    }
    // Kept for the next start: nothing is recorded as stopped that may still run.
    log::Error("journal: a command's process could not be stopped; its entry stays",
               {{"session_id", entry_.session_id},
                {"trace_id", entry_.trace_id},
                {"command_id", entry_.command_id},
                {"pod", absl::StrCat(entry_.target.namespace_(), "/", entry_.target.pod())},
                {"pid", entry_.pid}});
    countdown_->Done(false);
  }

  common::AuditEvent Base(common::EventKind kind, const std::string& id) const {
    common::AuditEvent e;
    e.set_id(id);
    *e.mutable_time() = wire::ToProtoTimestamp(absl::Now());
    e.set_kind(kind);
    e.set_source_service("exec");
    e.set_session_id(entry_.session_id);
    *e.mutable_principal() = entry_.principal;
    *e.mutable_target() = entry_.target;
    e.set_source_address(entry_.source_address);
    e.set_trace_id(entry_.trace_id);
    return e;
  }

  // `outcome`: "stopped", "gone" or "not run".
  void Record(const std::string& outcome, const std::string& what) {
    log::Info("journal: command settled", {{"session_id", entry_.session_id},
                                           {"trace_id", entry_.trace_id},
                                           {"command_id", entry_.command_id},
                                           {"pid", entry_.pid},
                                           {"outcome", outcome}});
    common::AuditEvent result = Base(common::EVENT_KIND_COMMAND_RESULT, entry_.result_event_id);
    result.set_command_id(entry_.command_id);
    common::CommandResultDetail* r = result.mutable_command_result();
    r->set_line(entry_.line);
    r->set_termination(common::TERMINATION_ERROR);
    r->set_error(what);
    *r->mutable_duration() =
        wire::ToProtoDuration(std::max(absl::ZeroDuration(), absl::Now() - entry_.started));
    common::AuditEvent close = Base(common::EVENT_KIND_SESSION_CLOSE, entry_.close_event_id);
    close.mutable_session_close()->set_reason(common::CLOSE_REASON_DISCONNECTED);
    close.mutable_session_close()->set_message(
        absl::StrCat("exec restarted during command ", entry_.command_id,
                     ": the exec that served the session ended without closing it"));
    *close.mutable_session_close()->mutable_duration() =
        wire::ToProtoDuration(std::max(absl::ZeroDuration(), absl::Now() - entry_.session_opened));
    auto self = shared_from_this();
    auto acks = std::make_shared<std::atomic<int>>(0);
    auto failed = std::make_shared<std::atomic<bool>>(false);
    auto on_ack = [self, acks, failed](absl::Status s) {
      if (!s.ok()) {
        failed->store(true);
        log::Error("journal: a recovery record was not acknowledged; the entry stays",
                   {{"session_id", self->entry_.session_id},
                    {"trace_id", self->entry_.trace_id},
                    {"error", s.ToString()}});
      }
      if (acks->fetch_add(1) + 1 == 2) {
        if (!failed->load()) {
          self->journal_->Remove(self->entry_.result_event_id);
        }
        self->countdown_->Done(!failed->load());
      }
    };
    audit_->Record(std::move(result), on_ack);
    audit_->Record(std::move(close), on_ack);
  }

  const JournalEntry entry_;
  Journal* const journal_;
  KubeApi* const kube_;
  clients::AuditClient* const audit_;
  runtime::TimerQueue* const timers_;
  const RecoveryOptions options_;
  const std::shared_ptr<Countdown> countdown_;
};

}  // namespace

int RecoverJournal(Journal* journal, KubeApi* kube, clients::AuditClient* audit,
                   runtime::TimerQueue* timers, const RecoveryOptions& options) {
  return RecoverJournal(
      journal, [kube](const std::string&) { return kube; }, audit, timers, options);
}

int RecoverJournal(Journal* journal, const std::function<KubeApi*(const std::string&)>& kube_for,
                   clients::AuditClient* audit, runtime::TimerQueue* timers,
                   const RecoveryOptions& options) {
  std::vector<JournalEntry> entries = journal->Load();
  if (entries.empty()) {
    return 0;
  }
  log::Info("journal: stopping commands of an exec that ended without a drain",
            {{"entries", static_cast<int64_t>(entries.size())}, {"dir", journal->dir()}});
  auto countdown = std::make_shared<Countdown>();
  countdown->left = static_cast<int>(entries.size());
  for (JournalEntry& e : entries) {
    KubeApi* kube = kube_for(e.target.cluster());
    if (kube == nullptr) {
      // Its cluster is not served by this exec (any more): nothing can stop the process from
      // here, so nothing is recorded as stopped; the entry stays for an exec that serves it.
      log::Error("journal: a command's cluster is not served; its entry stays",
                 {{"session_id", e.session_id},
                  {"command_id", e.command_id},
                  {"cluster", e.target.cluster()},
                  {"pid", e.pid}});
      countdown->Done(false);
      continue;
    }
    std::make_shared<Recovery>(std::move(e), journal, kube, audit, timers, options, countdown)
        ->Start();
  }
  std::unique_lock<std::mutex> lock(countdown->mu);
  if (!countdown->cv.wait_for(lock, absl::ToChronoNanoseconds(options.deadline),
                              [&] { return countdown->left == 0; })) {
    log::Error("journal: recovery ran out of time; what is left stays journaled",
               {{"left", countdown->left}});
  }
  return countdown->settled;
}

}  // namespace podgate::exec
