#include "exec/exec_metrics.h"

namespace podgate::exec {

namespace {

// One histogram per stage name, in the order of the stage enum.
template <size_t N>
std::array<prometheus::Histogram*, N> StageHistograms(
    prometheus::Family<prometheus::Histogram>& family, const std::array<const char*, N>& names) {
  // Fine from 0.5 to 35 ms, where a command's stages fall on a loaded machine, so that a
  // percentile read from the buckets (histogram_quantile) is close to the truth there.
  static const prometheus::Histogram::BucketBoundaries kBuckets{
      0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075,
      0.01,   0.0125,  0.015,  0.02,    0.025, 0.035,  0.05,  0.1,   0.25,  1,     5};
  std::array<prometheus::Histogram*, N> stages{};
  for (size_t i = 0; i < stages.size(); ++i) {
    stages[i] = &family.Add({{"stage", names[i]}}, kBuckets);
  }
  return stages;
}

}  // namespace

ExecMetrics::ExecMetrics(prometheus::Registry& registry)
    : sessions_active(prometheus::BuildGauge()
                          .Name("podgate_exec_sessions_active")
                          .Help("Sessions open now, by mode.")
                          .Register(registry)),
      sessions_total(prometheus::BuildCounter()
                         .Name("podgate_exec_sessions_total")
                         .Help("Session open attempts, by mode and outcome (opened, refused).")
                         .Register(registry)),
      session_close_total(prometheus::BuildCounter()
                              .Name("podgate_exec_session_close_total")
                              .Help("Sessions closed, by reason.")
                              .Register(registry)),
      commands_total(prometheus::BuildCounter()
                         .Name("podgate_exec_commands_total")
                         .Help("Commands, by policy decision and result.")
                         .Register(registry)),
      upgrade_latency(
          prometheus::BuildHistogram()
              .Name("podgate_exec_upgrade_latency_seconds")
              .Help("Time from starting a pods/exec call to the WebSocket upgrade.")
              .Register(registry)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.025,
                                                               0.05, 0.1, 0.25, 0.5, 1, 2.5, 5})),
      command_start(prometheus::BuildHistogram()
                        .Name("podgate_exec_command_start_seconds")
                        .Help("Where a command's start goes, by stage: policy, audit, checks, "
                              "upgrade, launch, journal (with --journal_dir), audit_wait (ready "
                              "for go until audit's ack; 0 if it came first), and total "
                              "(received to running).")
                        .Register(registry)),
      session_open(prometheus::BuildHistogram()
                       .Name("podgate_exec_session_open_seconds")
                       .Help("Where a session's open goes, by stage: credential, policy, pod, "
                             "checks (shells), audit, and total (open received to ready).")
                       .Register(registry)),
      kube_spare_connections_total(
          prometheus::BuildCounter()
              .Name("podgate_exec_kube_spare_connections_total")
              .Help("Connections to each cluster's API server made ahead for exec upgrades, by "
                    "event: used, missed (none ready), expired, closed (by the server), stale, "
                    "dial_failed, retried (broke before the answer, sent again).")
              .Register(registry)),
      output_bytes_total(prometheus::BuildCounter()
                             .Name("podgate_exec_output_bytes_total")
                             .Help("Output bytes forwarded to clients, by channel.")
                             .Register(registry)),
      output_bytes_stdout(output_bytes_total.Add({{"channel", "stdout"}})),
      output_bytes_stderr(output_bytes_total.Add({{"channel", "stderr"}})),
      output_bytes_tty(output_bytes_total.Add({{"channel", "tty"}})),
      api_errors_total(prometheus::BuildCounter()
                           .Name("podgate_exec_api_errors_total")
                           .Help("Kubernetes API failures, by gRPC code they map to.")
                           .Register(registry)),
      protocol_total(prometheus::BuildCounter()
                         .Name("podgate_exec_protocol_total")
                         .Help("Exec streams, by negotiated WebSocket sub-protocol.")
                         .Register(registry)),
      scope_checks_total(prometheus::BuildCounter()
                             .Name("podgate_exec_scope_checks_total")
                             .Help("Opens' questions whether a target is in scope, by step: "
                                   "before_pod, with_labels, or labels_irrelevant (not asked "
                                   "again: no rule in scope selects pods by label).")
                             .Register(registry)),
      scope_before_pod(scope_checks_total.Add({{"step", "before_pod"}})),
      scope_with_labels(scope_checks_total.Add({{"step", "with_labels"}})),
      scope_labels_irrelevant(scope_checks_total.Add({{"step", "labels_irrelevant"}})),
      policy_failures_total(prometheus::BuildCounter()
                                .Name("podgate_exec_policy_failures_total")
                                .Help("Commands denied because policy did not answer.")
                                .Register(registry)),
      audit_failures_total(prometheus::BuildCounter()
                               .Name("podgate_exec_audit_failures_total")
                               .Help("Audit events that were not acknowledged, by reason.")
                               .Register(registry)),
      auth_failures_total(prometheus::BuildCounter()
                              .Name("podgate_exec_auth_failures_total")
                              .Help("Refused end-user credentials, by reason.")
                              .Register(registry)),
      root_guard_total(prometheus::BuildCounter()
                           .Name("podgate_exec_root_guard_total")
                           .Help("Root guard checks, by result.")
                           .Register(registry)),
      container_checks_total(
          prometheus::BuildCounter()
              .Name("podgate_exec_container_checks_total")
              .Help("Checks made in the container before a command, by kind and result.")
              .Register(registry)),
      stops_total(prometheus::BuildCounter()
                      .Name("podgate_exec_stops_total")
                      .Help("Stop helper runs against a command's process, by signal and result.")
                      .Register(registry)),
      kubernetes_denials_total(
          prometheus::BuildCounter()
              .Name("podgate_exec_kubernetes_denials_total")
              .Help("Calls Kubernetes RBAC refused to the impersonated user, by where (open, "
                    "command, shell).")
              .Register(registry)),
      cluster_up(prometheus::BuildGauge()
                     .Name("podgate_exec_cluster_up")
                     .Help("1 when the cluster's API server answered the last health check.")
                     .Register(registry)),
      cluster_health_checks_total(prometheus::BuildCounter()
                                      .Name("podgate_exec_cluster_health_checks_total")
                                      .Help("Health checks of each cluster's API server, by "
                                            "result (ok, failed).")
                                      .Register(registry)),
      cluster_sessions_total(prometheus::BuildCounter()
                                 .Name("podgate_exec_cluster_sessions_total")
                                 .Help("Sessions asked for, by cluster and outcome (opened, "
                                       "refused).")
                                 .Register(registry)),
      sessions_detached(prometheus::BuildGauge()
                            .Name("podgate_exec_sessions_detached")
                            .Help("Sessions whose client stream broke, waiting for a resume.")
                            .Register(registry)
                            .Add({})),
      session_resumes_total(
          prometheus::BuildCounter()
              .Name("podgate_exec_session_resumes_total")
              .Help("Resume attempts and expiries, by result (resumed, unknown, bad_token, "
                    "bad_position, expired).")
              .Register(registry)),
      resume_replayed_bytes_total(prometheus::BuildCounter()
                                      .Name("podgate_exec_resume_replayed_bytes_total")
                                      .Help("Output bytes re-sent to resuming clients.")
                                      .Register(registry)
                                      .Add({})),
      resume_lost_bytes_total(
          prometheus::BuildCounter()
              .Name("podgate_exec_resume_lost_bytes_total")
              .Help("Output bytes resuming clients missed that were no longer kept.")
              .Register(registry)
              .Add({})),
      session_joins_total(prometheus::BuildCounter()
                              .Name("podgate_exec_session_joins_total")
                              .Help("Users joining other users' sessions, by role (observer, "
                                    "moderator) and result (joined, denied, not_found, full, "
                                    "limit, unauthenticated).")
                              .Register(registry)),
      session_watchers(prometheus::BuildGauge()
                           .Name("podgate_exec_session_watchers")
                           .Help("Users joined to other users' sessions (watching or moderating).")
                           .Register(registry)
                           .Add({})),
      session_leaves_total(prometheus::BuildCounter()
                               .Name("podgate_exec_session_leaves_total")
                               .Help("Users who had joined a session and left it, by reason "
                                     "(client, disconnected, fell_behind, session_ended).")
                               .Register(registry)),
      sessions_waiting_for_moderator(prometheus::BuildGauge()
                                         .Name("podgate_exec_sessions_waiting_for_moderator")
                                         .Help("Moderated shells waiting for a moderator to join.")
                                         .Register(registry)
                                         .Add({})),
      session_streams(prometheus::BuildGauge()
                          .Name("podgate_exec_session_streams")
                          .Help("Sessions calls open; each carries many sessions as lanes.")
                          .Register(registry)
                          .Add({})),
      session_lanes(prometheus::BuildGauge()
                        .Name("podgate_exec_session_lanes")
                        .Help("Lanes open on Sessions calls.")
                        .Register(registry)
                        .Add({})),
      lane_refusals_total(prometheus::BuildCounter()
                              .Name("podgate_exec_lane_refusals_total")
                              .Help("Lanes ended by exec rather than by their session, by reason "
                                    "(limit, window, order, shutdown).")
                              .Register(registry)),
      live_objects(prometheus::BuildGauge()
                       .Name("podgate_exec_live_objects")
                       .Help("Session and command objects alive in memory, by kind.")
                       .Register(registry)),
      live_sessions(live_objects.Add({{"kind", "session"}})),
      live_commands(live_objects.Add({{"kind", "command"}})),
      journal_entries(prometheus::BuildGauge()
                          .Name("podgate_exec_journal_entries")
                          .Help("Commands in exec's journal now: entries on disk or being "
                                "written (--journal_dir).")
                          .Register(registry)
                          .Add({})),
      journal_entries_limit(prometheus::BuildGauge()
                                .Name("podgate_exec_journal_entries_limit")
                                .Help("Most commands journaled at once (--journal_max_entries; 0 "
                                      "without a journal); past it commands are not run.")
                                .Register(registry)
                                .Add({})),
      command_start_stages(StageHistograms<8>(
          command_start,
          {"policy", "audit", "checks", "upgrade", "launch", "journal", "audit_wait", "total"})),
      session_open_stages(StageHistograms<6>(
          session_open, {"credential", "policy", "pod", "checks", "audit", "total"})) {}

}  // namespace podgate::exec
