// The journal of running commands: one small file per command whose process may be running
// in a pod. It is written in two steps: the entry (created, fsynced, its name made durable)
// while the command is launched, off the critical path, then the launch wrapper's pid, written
// in place into the entry's fixed-size first line (one fdatasync, no new name), before the
// wrapper is told `go`. It is removed once the process is known to be gone and its
// COMMAND_RESULT is acknowledged by audit, or at once when the command never got `go`. When exec
// dies without a drain (kill -9, OOM), the next exec started on the same directory stops every
// journaled process with the start-time-checked stop helper and records what the dead one
// could not (RecoverJournal), before it serves. See docs/exec.md, "A command never outlives
// its exec".
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "clients/audit_client.h"
#include "exec/journal_entry.h"
#include "exec/kube.h"
#include "prometheus/gauge.h"
#include "runtime/timer.h"

namespace podgate::exec {

class Journal {
 public:
  // Uses `dir` (created when missing, mode 0700). At most `max_entries` entries are kept; an
  // entry's file is at most kMaxEntryBytes.
  static absl::StatusOr<std::unique_ptr<Journal>> Open(const std::string& dir, int max_entries);
  ~Journal();

  static constexpr size_t kMaxEntryBytes = 64 * 1024;
  static constexpr size_t kLaunchLineBytes = kJournalLaunchLineBytes;

  // Writes the entry durably on the journal's own thread, so that a slow disk holds no I/O or
  // gRPC thread: its file (created, never overwritten), fsync, and an fsync of the directory
  // shared by every entry written in the same batch. A crash in between leaves a cut-off file
  // that Load skips (its command never ran). Returns RESOURCE_EXHAUSTED at once when
  // max_entries are journaled already (INVALID_ARGUMENT for an entry over kMaxEntryBytes), and
  // `done` is not called; otherwise `done` is called on the journal's thread, never inline,
  // with OK once the entry is durable or the error of a failed write (a full disk). Exec does
  // not run a command it could not journal.
  absl::Status AddAsync(const JournalEntry& entry, absl::AnyInvocable<void(absl::Status)> done);
  // The same, waiting for the write.
  absl::Status Add(const JournalEntry& entry);
  // Records the launch wrapper's report in the entry `result_event_id` (written by AddAsync,
  // whose `done` said OK): its first line is rewritten in place and fdatasynced, on the
  // journal's thread; `done` as for AddAsync. INVALID_ARGUMENT at once (and `done` not called)
  // when `pid` or `start_ticks` is not a decimal number the line has room for.
  absl::Status RecordLaunchAsync(const std::string& result_event_id, const std::string& pid,
                                 const std::string& start_ticks,
                                 absl::AnyInvocable<void(absl::Status)> done);
  // The same, waiting for the write.
  absl::Status RecordLaunch(const std::string& result_event_id, const std::string& pid,
                            const std::string& start_ticks);
  // Removes the entry (not fsynced: an entry that comes back after a crash is replayed
  // harmlessly — the stop helper finds its process gone, audit already has its records).
  void Remove(const std::string& result_event_id);
  // Every entry on disk. A file that cannot be read or parsed is logged ("journal entry
  // skipped") and removed, never fatal.
  std::vector<JournalEntry> Load();
  int size() const;
  const std::string& dir() const { return dir_; }
  // Keeps `entries` at size() from now on (the metric podgate_exec_journal_entries).
  void set_size_gauge(prometheus::Gauge* entries);

 private:
  Journal(std::string dir, int max_entries, int dir_fd)
      : dir_(std::move(dir)), max_entries_(max_entries), dir_fd_(dir_fd) {}
  std::string PathOf(const std::string& id) const;
  void SetSizeLocked(int entries);
  absl::Status WriteFile(const std::string& path, const std::string& text);
  absl::Status WriteLaunchLine(const std::string& path, const std::string& line);
  void Queue(std::string path, std::string text, bool launch,
             absl::AnyInvocable<void(absl::Status)> done);
  void WriteLoop();

  struct Pending {
    std::string path;
    std::string text;
    // The launch line of an existing entry, not a new entry.
    bool launch = false;
    absl::AnyInvocable<void(absl::Status)> done;
  };

  const std::string dir_;
  const int max_entries_;
  // The directory, open for the fsync that makes each new entry's name durable.
  const int dir_fd_;
  mutable std::mutex mu_;
  int entries_ = 0;
  prometheus::Gauge* size_gauge_ = nullptr;
  // Entries waiting for the writer thread (each counted in entries_ already, so at most
  // max_entries).
  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<Pending> queue_;
  bool stop_ = false;
  std::thread writer_;
};

struct RecoveryOptions {
  absl::Duration probe_timeout = absl::Seconds(10);
  absl::Duration interrupt_grace = absl::Seconds(3);
  // How long recovery may take in all (stops and audit acks); what is not done by then stays
  // journaled for the next start.
  absl::Duration deadline = absl::Seconds(30);
};

// Stops every journaled command's process (SIGINT, then SIGKILL after the grace period, each
// checked against the reported start time) and records a COMMAND_RESULT ("stopped: exec
// restarted", "gone" when it had already exited, "not run" for an entry never launched) and a
// SESSION_CLOSE (disconnected) for it;
// an entry is removed once both are acknowledged. Blocks until done or the deadline. Returns
// how many entries were settled.
int RecoverJournal(Journal* journal, KubeApi* kube, clients::AuditClient* audit,
                   runtime::TimerQueue* timers, const RecoveryOptions& options);
// The same over several clusters: `kube_for` gives the API of an entry's cluster ("" for an
// entry from before clusters: the default), or null when this exec does not serve it (the entry
// then stays, unsettled).
int RecoverJournal(Journal* journal, const std::function<KubeApi*(const std::string&)>& kube_for,
                   clients::AuditClient* audit, runtime::TimerQueue* timers,
                   const RecoveryOptions& options);

}  // namespace podgate::exec
