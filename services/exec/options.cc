#include "exec/options.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

ABSL_FLAG(std::string, kubeconfig, "",
          "Kubeconfig file: its current context, or the contexts --kube_contexts names, each a "
          "cluster. Empty (and no --kubeconfig_dir): the in-cluster service account. Default: "
          "empty.");
ABSL_FLAG(std::vector<std::string>, kube_contexts, {},
          "Contexts of --kubeconfig to serve, comma-separated, each CONTEXT (served under its "
          "name) or NAME=CONTEXT; '*' alone: every context. Empty: the current context. Default: "
          "empty.");
ABSL_FLAG(std::string, kubeconfig_dir, "",
          "A directory of kubeconfig files (dotfiles skipped), each file's current context a "
          "cluster named after the file without extension (eu-prod.yaml: eu-prod). Default: "
          "empty.");
ABSL_FLAG(std::string, kube_in_cluster_name, "",
          "Also serve the in-cluster service account's cluster under this name. Without "
          "--kubeconfig and --kubeconfig_dir it is served alone, under this name or "
          "'in-cluster'. Default: empty.");
ABSL_FLAG(std::string, kube_default_cluster, "",
          "The cluster a target without one means. Empty: the kubeconfig's current context if "
          "served, else the first cluster configured. Default: empty.");
ABSL_FLAG(absl::Duration, kube_health_interval, absl::Seconds(15),
          "How often each cluster's API server is checked (GET /readyz); a cluster that failed "
          "its last check is listed unreachable. 1s to 10m. Default 15s.");
ABSL_FLAG(int, kube_spare_connections, 2,
          "Connections to each cluster's API server made ahead (TCP and TLS done) so that a "
          "command's exec upgrade costs one request; each serves one upgrade, and another is made "
          "when one is taken. 0 to 16; 0: none. Default 2.");
ABSL_FLAG(absl::Duration, kube_spare_idle, absl::Seconds(20),
          "A spare connection unused this long is closed (keep it below the API server's idle "
          "timeout; a rotated CA or client certificate is used within it). 1s to 5m. "
          "Default 20s.");
ABSL_FLAG(bool, kube_allow_insecure, false,
          "Accept a kubeconfig with insecure-skip-tls-verify. Default false.");
ABSL_FLAG(bool, audit_strict, true,
          "Strict audit: run nothing until its audit event is acknowledged. Default true.");
ABSL_FLAG(absl::Duration, audit_ack_timeout, absl::Seconds(10),
          "How long an audit event may wait for its ack. Default 10s.");
ABSL_FLAG(absl::Duration, policy_timeout, absl::Seconds(2),
          "How long policy may take per decision before the command is denied. Default 2s.");
ABSL_FLAG(absl::Duration, idle_timeout, absl::Minutes(15),
          "Close a session after this long without input. Default 15m.");
ABSL_FLAG(absl::Duration, max_session, absl::Hours(8), "Longest session. Default 8h.");
ABSL_FLAG(int, max_sessions_per_user, 10, "Concurrent sessions per user. Default 10.");
ABSL_FLAG(int, max_commands_per_session, 10000,
          "Commands one session may ask for (run, denied or refused alike), 1 to 1000000; past "
          "it each command is refused with RESOURCE_EXHAUSTED and the session must be reopened. "
          "Default 10000.");
ABSL_FLAG(absl::Duration, resume_grace, absl::ZeroDuration(),
          "How long a session whose client stream broke is kept for a resume (its command or "
          "shell running on, output held); 0 closes it at once, up to 1h. Default 0.");
ABSL_FLAG(int64_t, resume_buffer_bytes, 1 << 20,
          "Output already sent that each session keeps for a resume, 4096 to 67108864 bytes; a "
          "client that missed more is told how many bytes were lost. Default 1048576 (1 MiB).");
ABSL_FLAG(int64_t, observer_buffer_bytes, 1 << 20,
          "Output waiting to be written to one user who joined a session (to watch or moderate "
          "it), 65536 to 67108864 bytes; one who reads slower is dropped from the session, "
          "which never waits for them. Default 1048576 (1 MiB).");
ABSL_FLAG(int, max_sessions, 2000, "Concurrent sessions per replica. Default 2000.");
ABSL_FLAG(absl::Duration, default_time_limit, absl::Minutes(5),
          "Command time limit when the rule sets none. Default 5m.");
ABSL_FLAG(int64_t, default_output_limit_bytes, 64 << 20,
          "Command output cap when the rule sets none, in bytes. Default 67108864 (64 MiB).");
ABSL_FLAG(int64_t, output_overrun_bytes, 64 << 20,
          "Past a command's output limit, how many more output bytes are read and discarded "
          "(only counted) before the command is stopped, so that the user learns how much "
          "output there was; 0 stops a command at its limit. Default 67108864 (64 MiB).");
ABSL_FLAG(int, audit_excerpt_bytes, 4096,
          "Output bytes kept verbatim in each command's audit record. Default 4096.");
ABSL_FLAG(std::string, shell_command, "/bin/sh",
          "argv of the shell in shell mode, space separated. Default /bin/sh.");
ABSL_FLAG(absl::Duration, interrupt_grace, absl::Seconds(3),
          "After an interrupt, how long before SIGKILL. Default 3s.");
ABSL_FLAG(absl::Duration, launch_timeout, absl::Seconds(10),
          "A command whose launch is not confirmed (its process's pid reported from the "
          "container) this long after its exec stream was asked for ends as not run, with an "
          "error, instead of at its time limit. Default 10s.");
ABSL_FLAG(std::string, journal_dir, "",
          "Directory of the journal of running commands (one small file per command whose "
          "process may run): at start-up, commands an exec that died without a drain left "
          "running are stopped and recorded before exec serves. Empty: no journal. Default "
          "empty.");
ABSL_FLAG(int, journal_max_entries, 4096,
          "Most commands journaled at once; past it, a command is not run. Default 4096.");
ABSL_FLAG(absl::Duration, journal_recovery_timeout, absl::Seconds(30),
          "How long start-up may spend stopping and recording journaled commands; what is "
          "left stays journaled for the next start. Default 30s.");
ABSL_FLAG(std::string, kube_impersonation, "off",
          "Whom Kubernetes sees behind the API calls exec makes for a user: off (exec's own "
          "service account), user (Impersonate-User), user+groups (and Impersonate-Group per token "
          "group). Default off.");
ABSL_FLAG(std::string, kube_impersonate_user_prefix, "",
          "Prepended to the user name exec impersonates (e.g. podgate:). Default empty.");
ABSL_FLAG(std::string, kube_impersonate_group_prefix, "",
          "Prepended to each group name exec impersonates in user+groups mode (e.g. podgate:). "
          "Default empty.");
ABSL_FLAG(bool, kube_impersonate_uid, false,
          "With --kube_impersonation on, send the credential's subject (JWT sub) as "
          "Impersonate-Uid; exec then needs impersonate on uids. Default false.");
ABSL_FLAG(bool, kube_impersonate_session_extra, true,
          "Send the session id as Impersonate-Extra-podgate-session when impersonating. Default "
          "true.");
ABSL_FLAG(std::string, service_account_dir, "/var/run/secrets/kubernetes.io/serviceaccount",
          "Where the in-cluster token and CA are. Default the standard path.");

namespace podgate::exec {
namespace {

absl::Status CheckFlags() {
  auto positive = [](absl::Duration d, const char* name) -> absl::Status {
    if (d <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " must be positive"));
    }
    return absl::OkStatus();
  };
  for (auto [d, name] : {std::pair{absl::GetFlag(FLAGS_policy_timeout), "policy_timeout"},
                         std::pair{absl::GetFlag(FLAGS_idle_timeout), "idle_timeout"},
                         std::pair{absl::GetFlag(FLAGS_max_session), "max_session"},
                         std::pair{absl::GetFlag(FLAGS_default_time_limit), "default_time_limit"},
                         std::pair{absl::GetFlag(FLAGS_interrupt_grace), "interrupt_grace"},
                         std::pair{absl::GetFlag(FLAGS_launch_timeout), "launch_timeout"},
                         std::pair{absl::GetFlag(FLAGS_audit_ack_timeout), "audit_ack_timeout"}}) {
    if (absl::Status s = positive(d, name); !s.ok()) {
      return s;
    }
  }
  if (absl::GetFlag(FLAGS_max_sessions_per_user) < 1 || absl::GetFlag(FLAGS_max_sessions) < 1) {
    return absl::InvalidArgumentError("--max_sessions and --max_sessions_per_user must be >= 1");
  }
  if (absl::GetFlag(FLAGS_resume_grace) < absl::ZeroDuration() ||
      absl::GetFlag(FLAGS_resume_grace) > absl::Hours(1)) {
    return absl::InvalidArgumentError("--resume_grace must be 0 (off) to 1h");
  }
  if (absl::GetFlag(FLAGS_resume_buffer_bytes) < 4096 ||
      absl::GetFlag(FLAGS_resume_buffer_bytes) > (int64_t{64} << 20)) {
    return absl::InvalidArgumentError("--resume_buffer_bytes must be 4096 to 67108864");
  }
  if (absl::GetFlag(FLAGS_observer_buffer_bytes) < 65536 ||
      absl::GetFlag(FLAGS_observer_buffer_bytes) > (int64_t{64} << 20)) {
    return absl::InvalidArgumentError("--observer_buffer_bytes must be 65536 to 67108864");
  }
  if (absl::GetFlag(FLAGS_max_commands_per_session) < 1 ||
      absl::GetFlag(FLAGS_max_commands_per_session) > 1000000) {
    return absl::InvalidArgumentError("--max_commands_per_session must be 1 to 1000000");
  }
  if (std::vector<std::string>(
          absl::StrSplit(absl::GetFlag(FLAGS_shell_command), ' ', absl::SkipEmpty()))
          .empty()) {
    return absl::InvalidArgumentError(
        "--shell_command must name a program (a space-separated argv, e.g. /bin/sh)");
  }
  if (absl::GetFlag(FLAGS_default_output_limit_bytes) < 1) {
    return absl::InvalidArgumentError("--default_output_limit_bytes must be >= 1");
  }
  if (absl::GetFlag(FLAGS_output_overrun_bytes) < 0 ||
      absl::GetFlag(FLAGS_output_overrun_bytes) > (int64_t{1} << 40)) {
    return absl::InvalidArgumentError("--output_overrun_bytes must be 0 to 1099511627776 (1 TiB)");
  }
  if (absl::GetFlag(FLAGS_journal_max_entries) < 1 ||
      absl::GetFlag(FLAGS_journal_max_entries) > 100000) {
    return absl::InvalidArgumentError("--journal_max_entries must be 1 to 100000");
  }
  if (absl::GetFlag(FLAGS_journal_recovery_timeout) <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--journal_recovery_timeout must be positive");
  }
  if (absl::Status s = ParseImpersonationMode(absl::GetFlag(FLAGS_kube_impersonation)).status();
      !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--kube_impersonation: ", s.message()));
  }
  for (auto [value, name] : {std::pair{absl::GetFlag(FLAGS_kube_impersonate_user_prefix),
                                       "kube_impersonate_user_prefix"},
                             std::pair{absl::GetFlag(FLAGS_kube_impersonate_group_prefix),
                                       "kube_impersonate_group_prefix"}}) {
    if (absl::StartsWith(value, "system:") ||
        std::any_of(value.begin(), value.end(),
                    [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " must not start with system: or hold a control character"));
    }
  }
  if (absl::GetFlag(FLAGS_kube_health_interval) < absl::Seconds(1) ||
      absl::GetFlag(FLAGS_kube_health_interval) > absl::Minutes(10)) {
    return absl::InvalidArgumentError("--kube_health_interval must be 1s to 10m");
  }
  if (absl::GetFlag(FLAGS_kube_spare_connections) < 0 ||
      absl::GetFlag(FLAGS_kube_spare_connections) > 16) {
    return absl::InvalidArgumentError("--kube_spare_connections must be 0 to 16");
  }
  if (absl::GetFlag(FLAGS_kube_spare_idle) < absl::Seconds(1) ||
      absl::GetFlag(FLAGS_kube_spare_idle) > absl::Minutes(5)) {
    return absl::InvalidArgumentError("--kube_spare_idle must be 1s to 5m");
  }
  if (absl::GetFlag(FLAGS_audit_excerpt_bytes) < 0 ||
      absl::GetFlag(FLAGS_audit_excerpt_bytes) > 1 << 20) {
    return absl::InvalidArgumentError("--audit_excerpt_bytes must be 0 to 1048576");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ExecServiceOptions> ExecServiceOptionsFromFlags() {
  if (absl::Status s = CheckFlags(); !s.ok()) {
    return s;
  }
  ExecServiceOptions service;
  ExecOptions& options = service.sessions;
  options.policy_timeout = absl::GetFlag(FLAGS_policy_timeout);
  options.idle_timeout = absl::GetFlag(FLAGS_idle_timeout);
  options.max_session = absl::GetFlag(FLAGS_max_session);
  options.max_sessions_per_user = absl::GetFlag(FLAGS_max_sessions_per_user);
  options.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  options.max_commands_per_session = absl::GetFlag(FLAGS_max_commands_per_session);
  options.default_time_limit = absl::GetFlag(FLAGS_default_time_limit);
  options.default_output_limit_bytes = absl::GetFlag(FLAGS_default_output_limit_bytes);
  options.output_overrun_bytes = absl::GetFlag(FLAGS_output_overrun_bytes);
  options.excerpt_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_audit_excerpt_bytes));
  options.strict_audit = absl::GetFlag(FLAGS_audit_strict);
  options.shell_argv = absl::StrSplit(absl::GetFlag(FLAGS_shell_command), ' ', absl::SkipEmpty());
  options.interrupt_grace = absl::GetFlag(FLAGS_interrupt_grace);
  options.launch_timeout = absl::GetFlag(FLAGS_launch_timeout);
  options.resume_grace = absl::GetFlag(FLAGS_resume_grace);
  options.resume_buffer_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_resume_buffer_bytes));
  options.observer_buffer_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_observer_buffer_bytes));
  options.impersonation.mode = *ParseImpersonationMode(absl::GetFlag(FLAGS_kube_impersonation));
  options.impersonation.user_prefix = absl::GetFlag(FLAGS_kube_impersonate_user_prefix);
  options.impersonation.group_prefix = absl::GetFlag(FLAGS_kube_impersonate_group_prefix);
  options.impersonation.session_extra = absl::GetFlag(FLAGS_kube_impersonate_session_extra);
  options.impersonation.uid = absl::GetFlag(FLAGS_kube_impersonate_uid);
  service.clusters.kubeconfig = absl::GetFlag(FLAGS_kubeconfig);
  service.clusters.contexts = absl::GetFlag(FLAGS_kube_contexts);
  service.clusters.kubeconfig_dir = absl::GetFlag(FLAGS_kubeconfig_dir);
  service.clusters.in_cluster_name = absl::GetFlag(FLAGS_kube_in_cluster_name);
  service.clusters.default_cluster = absl::GetFlag(FLAGS_kube_default_cluster);
  service.clusters.allow_insecure = absl::GetFlag(FLAGS_kube_allow_insecure);
  service.clusters.service_account_dir = absl::GetFlag(FLAGS_service_account_dir);
  service.cluster_health_interval = absl::GetFlag(FLAGS_kube_health_interval);
  service.spare_connections = static_cast<size_t>(absl::GetFlag(FLAGS_kube_spare_connections));
  service.spare_idle = absl::GetFlag(FLAGS_kube_spare_idle);
  service.audit_ack_timeout = absl::GetFlag(FLAGS_audit_ack_timeout);
  service.journal_dir = absl::GetFlag(FLAGS_journal_dir);
  service.journal_max_entries = absl::GetFlag(FLAGS_journal_max_entries);
  service.journal_recovery_timeout = absl::GetFlag(FLAGS_journal_recovery_timeout);
  return service;
}

}  // namespace podgate::exec
