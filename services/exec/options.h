// The exec service's options: the limits and behaviour of its sessions (ExecOptions, held by
// the SessionHub), and everything podgate-exec's own flags set (ExecServiceOptions), read and
// checked by ExecServiceOptionsFromFlags. The flags shared by every server (addresses, TLS,
// drain, logging), the token verifier's and the peers' are read by their own libraries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "exec/clusters.h"
#include "exec/impersonation.h"

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
  // Commands one session may ask for (run, denied or refused alike); past it the session must
  // be reopened. Bounds what a session remembers (its command ids).
  int max_commands_per_session = 10000;
  // Limits for a rule that sets none.
  absl::Duration default_time_limit = absl::Minutes(5);
  int64_t default_output_limit_bytes = 64 << 20;
  // Past a command's output limit, how much more output is read and discarded (only counted)
  // before the command is stopped, so that the user learns how much there was ("shown 4.0 MiB
  // of 8.0 MiB"); 0 stops it at the limit.
  int64_t output_overrun_bytes = 64 << 20;
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
  // Whom the API server sees behind each call made for a user (impersonation.h).
  ImpersonationOptions impersonation;
  // How long a session waits for its client to come back (ResumeSession) after its stream
  // breaks; the command or shell keeps running meanwhile, its output held (and the pod slowed
  // by backpressure). Zero: a broken stream closes the session at once.
  absl::Duration resume_grace = absl::ZeroDuration();
  // Output already sent that a session keeps for a resume (the newest messages, by encoded
  // size); a client that missed more is told how much was lost.
  size_t resume_buffer_bytes = 1 << 20;
  // Output queued for one user who joined a session: past it that user is dropped (the session
  // never waits for those who watch it).
  size_t observer_buffer_bytes = 1 << 20;
  // How long Kubernetes' answer to "may this user exec in this namespace" is reused
  // (ListTargets with impersonation on).
  absl::Duration access_review_ttl = absl::Seconds(30);
};

// What podgate-exec's own flags set (docs/exec.md, "Flags").
struct ExecServiceOptions {
  // The sessions: --policy_timeout, --idle_timeout, --max_session, --max_sessions_per_user,
  // --max_sessions, --default_time_limit, --default_output_limit_bytes, --output_overrun_bytes,
  // --audit_excerpt_bytes,
  // --audit_strict, --shell_command, --interrupt_grace, --resume_grace, --resume_buffer_bytes,
  // --observer_buffer_bytes.
  ExecOptions sessions;
  // The Kubernetes clusters: contexts of a kubeconfig, a directory of kubeconfigs, the in-cluster
  // service account (clusters.h).
  ClusterSources clusters;
  // How often each cluster's API server is checked.
  absl::Duration cluster_health_interval = absl::Seconds(15);
  // Connections to each API server made ahead for exec upgrades, and how long one may wait.
  size_t spare_connections = 2;
  absl::Duration spare_idle = absl::Seconds(20);
  // How long an audit event may wait for its ack.
  absl::Duration audit_ack_timeout = absl::Seconds(10);
  // The journal of running commands (journal.h); empty: none.
  std::string journal_dir;
  int journal_max_entries = 4096;
  absl::Duration journal_recovery_timeout = absl::Seconds(30);
};

// Reads podgate-exec's flags (after parsing); INVALID_ARGUMENT naming the flag when one is out of
// range.
absl::StatusOr<ExecServiceOptions> ExecServiceOptionsFromFlags();

}  // namespace podgate::exec
