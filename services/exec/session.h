// One exec.v1 Session stream: a callback reactor that verifies the user, resolves the target,
// and then runs commands (command mode) or a TTY shell (shell mode), asking policy before
// every command and recording to audit before anything reaches the pod.
//
// No thread per session: every step is a callback (gRPC, policy, audit, Kubernetes, timers),
// serialized by the session's mutex. Output flows with backpressure: the Kubernetes stream
// reads nothing more until the previous chunk has been written to the client.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "auth/jwt.h"
#include "clients/audit_client.h"
#include "exec/exec_metrics.h"
#include "exec/journal.h"
#include "exec/kube.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "podgate/policy/v1/policy.grpc.pb.h"
#include "runtime/timer.h"

namespace podgate::exec {

struct ExecOptions {
  // How long policy may take to answer one question before the command is denied.
  absl::Duration policy_timeout = absl::Seconds(2);
  // A session with no client message for this long is closed.
  absl::Duration idle_timeout = absl::Minutes(15);
  // The longest a session may last.
  absl::Duration max_session = absl::Hours(8);
  // Concurrent sessions per user, and per exec replica.
  int max_sessions_per_user = 10;
  int max_sessions = 2000;
  // Limits for a rule that sets none.
  absl::Duration default_time_limit = absl::Minutes(5);
  int64_t default_output_limit_bytes = 64 << 20;
  // How much output the audit record keeps verbatim.
  size_t excerpt_bytes = 4096;
  // Strict audit: nothing reaches a pod until its audit event is acknowledged.
  bool strict_audit = true;
  // The shell shell mode runs.
  std::vector<std::string> shell_argv = {"/bin/sh"};
  // After an interrupt, how long the process gets before SIGKILL.
  absl::Duration interrupt_grace = absl::Seconds(3);
  // Deadline for exec's own probes (`id -u`, the checks, the stop helper).
  absl::Duration probe_timeout = absl::Seconds(10);
  // A command whose launch wrapper has not reported its pid this long after its exec stream was
  // asked for ends as not run ("go" was never sent, so nothing ran), not at its time limit.
  absl::Duration launch_timeout = absl::Seconds(10);
  // How long a root-guard verdict for a (pod uid, container) is reused.
  absl::Duration root_guard_ttl = absl::Minutes(10);
  // asciicast chunks of a shell recording are sent when this big or this old.
  size_t recording_chunk_bytes = 64 * 1024;
  absl::Duration recording_flush = absl::Seconds(5);
};

class Session;

// State shared by every session of one exec service: dependencies, limits, live sessions.
class SessionHub {
 public:
  SessionHub(ExecOptions options, const auth::Verifier* verifier,
             podgate::policy::v1::PolicyService::StubInterface* policy,
             clients::AuditClient* audit, KubeApi* kube, ExecMetrics* metrics,
             runtime::TimerQueue* timers = &runtime::TimerQueue::Default());

  const ExecOptions& options() const { return options_; }
  const auth::Verifier* verifier() const { return verifier_; }
  podgate::policy::v1::PolicyService::StubInterface* policy() const { return policy_; }
  clients::AuditClient* audit() const { return audit_; }
  KubeApi* kube() const { return kube_; }
  ExecMetrics* metrics() const { return metrics_; }
  runtime::TimerQueue* timers() const { return timers_; }
  // The journal of running commands (journal.h); null when --journal_dir is not set.
  Journal* journal() const { return journal_; }
  void set_journal(Journal* journal) { journal_ = journal; }

  // Admission: RESOURCE_EXHAUSTED past the per-user or per-replica limit.
  absl::Status Admit(const std::shared_ptr<Session>& session, const std::string& user);
  void Leave(Session* session, const std::string& user);
  // Closes every live session with CLOSE_REASON_SHUTDOWN (the server's drain hook).
  void CloseAll();
  int active() const;
  // Processes started by a command ("go" sent) and not yet known to be gone.
  void ProcessStarted() { ++running_processes_; }
  void ProcessGone() { --running_processes_; }
  int running_processes() const { return running_processes_.load(); }
  // The drain after CloseAll: waits until every stopped command's process is gone and audit
  // has acknowledged every record, or until `deadline`. True when both happened.
  bool Drain(absl::Time deadline);

  // Root guard cache: the uid of (pod uid, container), if known and fresh.
  std::optional<int64_t> CachedUid(const std::string& key);
  void CacheUid(const std::string& key, int64_t uid);

 private:
  const ExecOptions options_;
  const auth::Verifier* const verifier_;
  podgate::policy::v1::PolicyService::StubInterface* const policy_;
  clients::AuditClient* const audit_;
  KubeApi* const kube_;
  ExecMetrics* const metrics_;
  runtime::TimerQueue* const timers_;
  Journal* journal_ = nullptr;
  std::atomic<int> running_processes_{0};

  mutable std::mutex mu_;
  std::map<std::string, int> per_user_;
  std::map<Session*, std::weak_ptr<Session>> live_;
  std::map<std::string, std::pair<int64_t, absl::Time>> uid_cache_;
  friend class Session;
};

// Creates the reactor for one Session call.
grpc::ServerBidiReactor<podgate::exec::v1::SessionRequest, podgate::exec::v1::SessionResponse>*
StartSession(SessionHub* hub, grpc::CallbackServerContext* context);

}  // namespace podgate::exec
