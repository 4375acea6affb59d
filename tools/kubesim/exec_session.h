// One `pods/exec` stream: a WebSocket speaking the Kubernetes channel protocol on one side, a
// real child process on the other. Output is read from the child only while the WebSocket's
// write queue is below its watermark, so a slow client bounds the memory an exec holds. Like a
// kubelet, a non-tty process outlives a client that closes the WebSocket (its stdin gets EOF
// and its output is drained and dropped); a tty process gets SIGHUP when the pty closes.
#pragma once

#include <atomic>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "absl/synchronization/mutex.h"
#include "http/server.h"
#include "k8s/exec_protocol.h"
#include "process.h"

namespace podgate::kubesim {

// The processes kubesim started, so they can be killed on shutdown and counted against the cap.
class ProcessTable {
 public:
  explicit ProcessTable(size_t max_execs) : max_execs_(max_execs) {}
  // Reserves an exec slot; false when the cap is reached.
  bool TryReserveExec();
  void ReleaseExec();
  void Add(pid_t pid);
  void Remove(pid_t pid);
  void KillAll(int sig);
  size_t active_execs() const { return active_execs_.load(); }
  size_t live_processes();

  std::atomic<uint64_t> execs_started{0};
  std::atomic<uint64_t> execs_rejected{0};
  std::atomic<uint64_t> client_gone{0};     // WebSocket closed before the process ended
  std::atomic<uint64_t> ignored_frames{0};  // empty or malformed client frames
  // Wake-ups of a process's pidfd wait while the process still ran (see WaitForExit).
  std::atomic<uint64_t> spurious_exit_wakeups{0};
  // Exec sessions not yet destroyed: one lives until its WebSocket has closed (OnClose), so a
  // test waits for zero before stopping the io_context (or LeakSanitizer reports the session
  // and its connection, which hold each other until then).
  std::atomic<size_t> live_sessions{0};

 private:
  const size_t max_execs_;
  std::atomic<size_t> active_execs_{0};
  absl::Mutex mu_;
  std::set<pid_t> pids_ ABSL_GUARDED_BY(mu_);
};

struct ExecRequest {
  k8s::ExecProtocol protocol = k8s::ExecProtocol::kV5;
  k8s::ExecOptions options;
  ProcessSpec spec;
  size_t read_chunk_bytes = 32 * 1024;
  size_t stdin_queue_limit_bytes = 1024 * 1024;
};

// Calls `done` with the exit code of `pid` once it has exited and been reaped, from `pidfd`'s
// executor; never blocks a thread. A readable pidfd is only a hint: epoll can wake a wait for
// a readiness the pidfd never had. (asio does not remove a closed descriptor from epoll, as the
// kernel does once the last copy of it closes; while a child forked by another thread still
// holds a copy, the registration stays, with the reactor state asio has since handed to the
// next descriptor it registered, such as this pidfd.) So each wake-up reaps without blocking
// and, while the process runs, counts itself in `spurious` and waits again. Reaping with a
// blocking waitpid there held the exec's strand until the process exited, and the process,
// the launch wrapper, waited on the stdin that strand forwards: the stall in
// docs/benchmarks.md. `pidfd` must outlive the wait (`done` may hold its owner); nothing is
// called when the wait is cancelled.
void WaitForExit(boost::asio::posix::stream_descriptor& pidfd, pid_t pid,
                 std::function<void(int exit_code)> done, std::atomic<uint64_t>* spurious);

// Creates the handler for an accepted upgrade. The exec slot must already be reserved; the
// handler releases it when the process has been reaped.
std::shared_ptr<http::WebSocketHandler> NewExecSession(ExecRequest request,
                                                       std::shared_ptr<ProcessTable> table);

}  // namespace podgate::kubesim
