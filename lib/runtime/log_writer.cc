#include "runtime/log_writer.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace podgate::log {

struct LineWriter::Core {
  Core(int fd, size_t limit, std::string service)
      : fd(fd), limit(limit), service_json(std::move(service)) {}

  const int fd;
  const size_t limit;
  const std::string service_json;

  mutable absl::Mutex mu;
  std::string queued ABSL_GUARDED_BY(mu);
  uint64_t queued_lines ABSL_GUARDED_BY(mu) = 0;
  // The batch the thread is writing (outside the lock).
  size_t writing_bytes ABSL_GUARDED_BY(mu) = 0;
  // Lines appended, and lines whose write is over (written, or failed and counted as dropped).
  uint64_t appended ABSL_GUARDED_BY(mu) = 0;
  uint64_t settled ABSL_GUARDED_BY(mu) = 0;
  uint64_t written ABSL_GUARDED_BY(mu) = 0;
  uint64_t dropped ABSL_GUARDED_BY(mu) = 0;
  // Dropped since the last notice line.
  uint64_t unreported ABSL_GUARDED_BY(mu) = 0;
  bool stop ABSL_GUARDED_BY(mu) = false;

  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return !queued.empty() || unreported > 0 || stop;
  }

  std::string Notice(uint64_t count) const {
    return absl::StrCat("{\"ts\":\"",
                        absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
                        "\",\"level\":\"warning\",\"service\":", service_json,
                        ",\"msg\":\"log lines dropped\",\"dropped\":", count, "}\n");
  }

  // Writes all of `data`; false when the descriptor refuses it (closed pipe, bad descriptor).
  bool WriteAll(std::string_view data) const {
    while (!data.empty()) {
      const ssize_t n = ::write(fd, data.data(), data.size());
      if (n > 0) {
        data.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        // A descriptor someone else made non-blocking: wait until it takes more.
        pollfd p{fd, POLLOUT, 0};
        ::poll(&p, 1, 1000);
        continue;
      }
      return false;
    }
    return true;
  }

  void Run() {
    std::string batch;
    absl::MutexLock lock(&mu);
    while (true) {
      mu.Await(absl::Condition(this, &Core::HasWork));
      if (queued.empty() && unreported == 0) {
        return;  // stop, and nothing left
      }
      batch.swap(queued);
      const uint64_t lines = queued_lines;
      queued_lines = 0;
      const uint64_t notice = unreported;
      unreported = 0;
      writing_bytes = batch.size();
      mu.Unlock();
      bool ok = WriteAll(batch);
      // The notice goes after the lines that were queued when it was due; lines dropped while
      // this batch was written are in the next one.
      if (ok && notice > 0) {
        ok = WriteAll(Notice(notice));
      }
      batch.clear();
      mu.Lock();
      writing_bytes = 0;
      settled += lines;
      if (ok) {
        written += lines;
      } else {
        dropped += lines;  // nobody can read them: counted, and the next batch tries again
      }
      if (batch.capacity() > limit) {
        std::string().swap(batch);  // keep no more than one buffer's worth between batches
      }
    }
  }
};

LineWriter::LineWriter(int fd, size_t limit_bytes, std::string service_json)
    : core_(std::make_shared<Core>(fd, limit_bytes, std::move(service_json))) {
  // The thread takes no signals: the services wait for theirs with sigwait, and a closed pipe's
  // SIGPIPE becomes EPIPE from write(2) instead of ending the process.
  sigset_t all;
  sigset_t old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  std::thread([core = core_] { core->Run(); }).detach();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

LineWriter::~LineWriter() {
  Flush(absl::Seconds(2));
  absl::MutexLock lock(&core_->mu);
  core_->stop = true;
}

bool LineWriter::Append(std::string_view line) {
  Core& c = *core_;
  absl::MutexLock lock(&c.mu);
  if (c.queued.size() + c.writing_bytes + line.size() + 1 > c.limit) {
    ++c.dropped;
    ++c.unreported;
    return false;
  }
  c.queued.append(line);
  c.queued.push_back('\n');
  ++c.queued_lines;
  ++c.appended;
  return true;
}

bool LineWriter::Flush(absl::Duration timeout) {
  Core& c = *core_;
  absl::MutexLock lock(&c.mu);
  const uint64_t target = c.appended;
  struct Arg {
    Core* core;
    uint64_t target;
  } arg{&c, target};
  return c.mu.AwaitWithTimeout(
      absl::Condition(
          +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS { return a->core->settled >= a->target; },
          &arg),
      timeout);
}

WriterStats LineWriter::Stats() const {
  const Core& c = *core_;
  absl::MutexLock lock(&c.mu);
  WriterStats s;
  s.lines_written = c.written;
  s.lines_dropped = c.dropped;
  s.buffer_bytes = c.queued.size() + c.writing_bytes;
  s.buffer_limit_bytes = c.limit;
  return s;
}

}  // namespace podgate::log
