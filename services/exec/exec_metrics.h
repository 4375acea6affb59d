// Every metric the exec service exports, declared in one place.
#pragma once

#include <array>
#include <memory>
#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace podgate::exec {

struct ExecMetrics {
  explicit ExecMetrics(prometheus::Registry& registry);

  // podgate_exec_sessions_active{mode}
  prometheus::Family<prometheus::Gauge>& sessions_active;
  // podgate_exec_sessions_total{mode,outcome}: outcome opened|refused
  prometheus::Family<prometheus::Counter>& sessions_total;
  // podgate_exec_session_close_total{reason}
  prometheus::Family<prometheus::Counter>& session_close_total;
  // podgate_exec_commands_total{decision,result}: decision allow|deny|error, result
  // exited|interrupted|time_limit|output_limit|error|refused
  prometheus::Family<prometheus::Counter>& commands_total;
  // podgate_exec_upgrade_latency_seconds: exec call to WebSocket upgrade
  prometheus::Histogram& upgrade_latency;
  // podgate_exec_command_start_seconds{stage}: where a command's start goes, stage by stage:
  // policy (asked to answered), audit (decision sent to acknowledged), checks (root guard and
  // container checks), upgrade (pods/exec call to upgrade), launch (upgrade to the launch
  // wrapper's report), journal (with --journal_dir: the report to the pid durable in the
  // command's journal entry, whose launch line is rewritten in place and fdatasynced on the
  // journal's thread; the entry itself is written during the launch; on the critical path since
  // "go" waits for it), audit_wait (ready for "go" until audit acknowledged the decision: what
  // audit's ack added to the start beyond everything else; 0 when it came first), and total (the
  // command received to "go").
  prometheus::Family<prometheus::Histogram>& command_start;
  enum class Stage { kPolicy, kAudit, kChecks, kUpgrade, kLaunch, kJournal, kAuditWait, kTotal };
  prometheus::Histogram& CommandStart(Stage stage) {
    return *command_start_stages[static_cast<size_t>(stage)];
  }
  // podgate_exec_session_open_seconds{stage}: where a session's open goes, stage by stage:
  // credential (open received to the credential verified), policy (the target's scope asked
  // before and after the pod's labels are known, and a shell's decision), pod (the pod read from
  // the API), checks (a shell's decision recorded and the root guard; shells only), audit (the
  // open's record sent to its durable ack), and total (open received to `ready`). Each stage
  // counts the opens that got past it; total counts the opens that became ready.
  prometheus::Family<prometheus::Histogram>& session_open;
  enum class OpenStage { kCredential, kPolicy, kPod, kChecks, kAudit, kTotal };
  prometheus::Histogram& SessionOpen(OpenStage stage) {
    return *session_open_stages[static_cast<size_t>(stage)];
  }
  // podgate_exec_output_bytes_total{channel}: stdout|stderr|tty
  // podgate_exec_kube_spare_connections_total{cluster,event}: connections to an API server made
  // ahead for exec upgrades: used, missed (none ready), expired, closed (by the server), stale,
  // dial_failed, retried (http::SpareConnections::Event).
  prometheus::Family<prometheus::Counter>& kube_spare_connections_total;
  prometheus::Family<prometheus::Counter>& output_bytes_total;
  // Its children, looked up once (every output chunk counts).
  prometheus::Counter& output_bytes_stdout;
  prometheus::Counter& output_bytes_stderr;
  prometheus::Counter& output_bytes_tty;
  // podgate_exec_api_errors_total{code}: gRPC code name of Kubernetes API failures
  prometheus::Family<prometheus::Counter>& api_errors_total;
  // podgate_exec_protocol_total{protocol}: negotiated sub-protocol
  prometheus::Family<prometheus::Counter>& protocol_total;
  // podgate_exec_scope_checks_total{step}: the opens' scope questions: before_pod (policy asked
  // before the pod is looked up), with_labels (asked again with the pod's labels),
  // labels_irrelevant (not asked again: no rule in scope selects pods by label); each step's
  // counter looked up once, as the stages' histograms are (one per open otherwise)
  prometheus::Family<prometheus::Counter>& scope_checks_total;
  prometheus::Counter& scope_before_pod;
  prometheus::Counter& scope_with_labels;
  prometheus::Counter& scope_labels_irrelevant;
  // podgate_exec_policy_failures_total{reason}: unavailable|deadline
  prometheus::Family<prometheus::Counter>& policy_failures_total;
  // podgate_exec_audit_failures_total{reason}
  prometheus::Family<prometheus::Counter>& audit_failures_total;
  // podgate_exec_auth_failures_total{reason}
  prometheus::Family<prometheus::Counter>& auth_failures_total;
  // podgate_exec_root_guard_total{result}: allowed|root_denied|unknown_denied|root_allowed
  prometheus::Family<prometheus::Counter>& root_guard_total;
  // podgate_exec_container_checks_total{kind,result}: kind jvm_pid|path_under|unspecified,
  // result passed|refused|error
  prometheus::Family<prometheus::Counter>& container_checks_total;
  // podgate_exec_stops_total{signal,result}: the stop helper's answers; signal INT|KILL,
  // result signalled|gone|error
  prometheus::Family<prometheus::Counter>& stops_total;
  // podgate_exec_kubernetes_denials_total{at}: Kubernetes RBAC refused the impersonated user;
  // at open (the pod read or a shell's probe), command (a probe or its stream), shell (its stream)
  prometheus::Family<prometheus::Counter>& kubernetes_denials_total;
  // podgate_exec_cluster_up{cluster}: 1 when the cluster's API server answered its last health
  // check, 0 when it did not
  prometheus::Family<prometheus::Gauge>& cluster_up;
  // podgate_exec_cluster_health_checks_total{cluster,result}: result ok|failed
  prometheus::Family<prometheus::Counter>& cluster_health_checks_total;
  // podgate_exec_cluster_sessions_total{cluster,outcome}: sessions asked for per cluster;
  // outcome opened|refused (a refusal of an unknown cluster name counts under "unknown")
  prometheus::Family<prometheus::Counter>& cluster_sessions_total;
  // podgate_exec_sessions_detached: sessions whose stream broke, waiting for a resume
  prometheus::Gauge& sessions_detached;
  // podgate_exec_session_resumes_total{result}: resumed|unknown (no such session waiting, or
  // not the user's)|bad_token|bad_position|expired (the grace period ended without a resume)
  prometheus::Family<prometheus::Counter>& session_resumes_total;
  // podgate_exec_resume_replayed_bytes_total, podgate_exec_resume_lost_bytes_total: output
  // re-sent on resumes, and output a resuming client missed that was no longer kept
  prometheus::Counter& resume_replayed_bytes_total;
  prometheus::Counter& resume_lost_bytes_total;
  // podgate_exec_session_joins_total{role,result}: role observer|moderator, result
  // joined|denied (policy)|not_found|full (32 joined)|limit (the user's
  // sessions)|unauthenticated
  prometheus::Family<prometheus::Counter>& session_joins_total;
  // podgate_exec_session_watchers: users joined to other users' sessions now
  prometheus::Gauge& session_watchers;
  // podgate_exec_session_leaves_total{reason}: client|disconnected|fell_behind|session_ended
  prometheus::Family<prometheus::Counter>& session_leaves_total;
  // podgate_exec_sessions_waiting_for_moderator: moderated shells not started (yet)
  prometheus::Gauge& sessions_waiting_for_moderator;
  // podgate_exec_session_streams: Sessions calls open (each carries many sessions as lanes);
  // podgate_exec_session_lanes: lanes open on them
  prometheus::Gauge& session_streams;
  prometheus::Gauge& session_lanes;
  // podgate_exec_lane_refusals_total{reason}: lanes ended by exec rather than by their session:
  // limit (65,536 open on the stream), window (the client sent past the lane's window),
  // order (a lane opened with a number not above an earlier one), shutdown (a lane opened
  // while exec shut down)
  prometheus::Family<prometheus::Counter>& lane_refusals_total;
  // podgate_exec_live_objects{kind}: session|command objects alive in memory (a leak shows
  // here: closed sessions must reach zero)
  prometheus::Family<prometheus::Gauge>& live_objects;
  prometheus::Gauge& live_sessions;
  prometheus::Gauge& live_commands;
  // podgate_exec_journal_entries: commands journaled now (with --journal_dir: entries on disk
  // or being written); podgate_exec_journal_entries_limit: --journal_max_entries (0 without a
  // journal). At the limit, commands are not run.
  prometheus::Gauge& journal_entries;
  prometheus::Gauge& journal_entries_limit;
  // The histogram of each Stage, looked up once (a label lookup per command is a map search
  // under the family's lock).
  const std::array<prometheus::Histogram*, 8> command_start_stages;
  const std::array<prometheus::Histogram*, 6> session_open_stages;
};

}  // namespace podgate::exec
