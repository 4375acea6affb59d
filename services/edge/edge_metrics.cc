#include "edge/edge_metrics.h"

#include <atomic>
#include <memory>

#include "runtime/log.h"

namespace podgate::edge {

EdgeMetrics::EdgeMetrics(prometheus::Registry& registry)
    : connections_(prometheus::BuildGauge()
                       .Name("podgate_edge_websocket_connections")
                       .Help("Open browser WebSocket connections, by protocol.")
                       .Register(registry)),
      connections_total_(prometheus::BuildCounter()
                             .Name("podgate_edge_websocket_connections_total")
                             .Help("Browser WebSocket connections accepted, by protocol.")
                             .Register(registry)),
      sessions_(prometheus::BuildGauge()
                    .Name("podgate_edge_sessions")
                    .Help("Open exec sessions bridged to a browser.")
                    .Register(registry)
                    .Add({})),
      sessions_total_(prometheus::BuildCounter()
                          .Name("podgate_edge_sessions_total")
                          .Help("Exec sessions opened for browsers.")
                          .Register(registry)
                          .Add({})),
      auth_failures_(prometheus::BuildCounter()
                         .Name("podgate_edge_auth_failures_total")
                         .Help("Refused browser credentials, by reason.")
                         .Register(registry)),
      rejections_(prometheus::BuildCounter()
                      .Name("podgate_edge_rejections_total")
                      .Help("Refused connections, handshakes and closed connections, by "
                            "reason (origin, size, rate, limit, unauthenticated_limit, "
                            "max_connections, per_source, unauthenticated_per_source, "
                            "shutdown).")
                      .Register(registry)),
      drain_closes_(prometheus::BuildCounter()
                        .Name("podgate_edge_drain_closes_total")
                        .Help("Browser connections closed (1001) because edge is shutting "
                              "down, by when (at_once, after_command, deadline).")
                        .Register(registry)),
      frames_(prometheus::BuildCounter()
                  .Name("podgate_edge_websocket_messages_total")
                  .Help("WebSocket messages, by direction (in = from the browser).")
                  .Register(registry)),
      bytes_(prometheus::BuildCounter()
                 .Name("podgate_edge_websocket_bytes_total")
                 .Help("WebSocket payload bytes, by direction (in = from the browser).")
                 .Register(registry)),
      first_output_latency_(
          prometheus::BuildHistogram()
              .Name("podgate_edge_first_output_latency_seconds")
              .Help("Time from a command leaving edge to its first output byte arriving.")
              .Register(registry)
              .Add({},
                   prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                           0.1, 0.25, 0.5, 1, 2.5, 5, 10})),
      api_requests_(prometheus::BuildCounter()
                        .Name("podgate_edge_api_requests_total")
                        .Help("HTTP API requests, by route and status class.")
                        .Register(registry)),
      accept_backoffs_(prometheus::BuildCounter()
                           .Name("podgate_edge_accept_backoffs_total")
                           .Help("Pauses of the accept loop for lack of file descriptors or "
                                 "memory (EMFILE, ENFILE, ENOBUFS, ENOMEM).")
                           .Register(registry)
                           .Add({})),
      auth_audit_recorded_(prometheus::BuildCounter()
                               .Name("podgate_edge_auth_audit_recorded_total")
                               .Help("Authentication failures audit acknowledged.")
                               .Register(registry)
                               .Add({})),
      auth_audit_dropped_(prometheus::BuildCounter()
                              .Name("podgate_edge_auth_audit_dropped_total")
                              .Help("Authentication failures not audited, by reason "
                                    "(queue_full: too many waiting for audit; failed: audit "
                                    "did not acknowledge in time or refused).")
                              .Register(registry)),
      exec_lost_(prometheus::BuildCounter()
                     .Name("podgate_edge_exec_lost_total")
                     .Help("Open sessions whose exec stream broke (the exec replica died or "
                           "the connection to it was lost).")
                     .Register(registry)
                     .Add({})),
      sessions_detached_(prometheus::BuildCounter()
                             .Name("podgate_edge_sessions_detached_total")
                             .Help("Resumable sessions left to exec to wait for a resume, by why "
                                   "(browser_gone, shutdown).")
                             .Register(registry)),
      sessions_resumed_(prometheus::BuildCounter()
                            .Name("podgate_edge_sessions_resumed_total")
                            .Help("Sessions resumed through this edge.")
                            .Register(registry)
                            .Add({})),
      exec_lost_audit_(prometheus::BuildCounter()
                           .Name("podgate_edge_exec_lost_audit_total")
                           .Help("Audit records of lost exec streams, by result (recorded, "
                                 "queue_full, failed).")
                           .Register(registry)),
      invalid_transitions_(
          prometheus::BuildCounter()
              .Name("podgate_edge_session_invalid_transitions_total")
              .Help("State changes a browser session refused as invalid (a bug), by what "
                    "changed (state, exec, slot).")
              .Register(registry)),
      oidc_logins_(prometheus::BuildCounter()
                       .Name("podgate_edge_oidc_logins_total")
                       .Help("Single sign-on callbacks, by result (ok, or why the sign-in was "
                             "refused: state, replayed_state, code_refused, id_token, "
                             "provider_unavailable, ...).")
                       .Register(registry)),
      oidc_refreshes_(prometheus::BuildCounter()
                          .Name("podgate_edge_oidc_refreshes_total")
                          .Help("Single sign-on session refreshes, by result (ok, refused, "
                                "provider_unavailable, no_session, ...).")
                          .Register(registry)),
      oidc_logouts_(prometheus::BuildCounter()
                        .Name("podgate_edge_oidc_logouts_total")
                        .Help("Single sign-on logouts.")
                        .Register(registry)
                        .Add({})) {
  for (const char* what : {"state", "exec", "slot"}) {
    invalid_transitions_.Add({{"what", what}});
  }
  for (const char* result : {"recorded", "queue_full", "failed"}) {
    exec_lost_audit_.Add({{"result", result}});
  }
  for (const char* why : {"browser_gone", "shutdown"}) {
    sessions_detached_.Add({{"why", why}});
  }
  for (const char* reason : {"queue_full", "failed"}) {
    auth_audit_dropped_.Add({{"reason", reason}});
  }
  for (const char* reason :
       {"origin", "size", "rate", "limit", "unauthenticated_limit", "max_connections", "per_source",
        "unauthenticated_per_source", "shutdown"}) {
    rejections_.Add({{"reason", reason}});
  }
  for (const char* when : {"at_once", "after_command", "deadline"}) {
    drain_closes_.Add({{"when", when}});
  }
  for (const char* direction : {"in", "out"}) {
    frames_.Add({{"direction", direction}});
    bytes_.Add({{"direction", direction}});
  }
}

void EdgeMetrics::ConnectionOpened(const std::string& protocol) {
  connections_.Add({{"protocol", protocol}}).Increment();
  connections_total_.Add({{"protocol", protocol}}).Increment();
}

void EdgeMetrics::ConnectionClosed(const std::string& protocol) {
  connections_.Add({{"protocol", protocol}}).Decrement();
}

void EdgeMetrics::SessionOpened() {
  sessions_.Increment();
  sessions_total_.Increment();
}

void EdgeMetrics::SessionClosed() { sessions_.Decrement(); }

void EdgeMetrics::AuthFailure(const std::string& reason) {
  auth_failures_.Add({{"reason", reason.empty() ? "other" : reason}}).Increment();
}

void EdgeMetrics::OidcLogin(const std::string& result) {
  oidc_logins_.Add({{"result", result}}).Increment();
}

void EdgeMetrics::OidcRefresh(const std::string& result) {
  oidc_refreshes_.Add({{"result", result}}).Increment();
}

void EdgeMetrics::OidcLogout() { oidc_logouts_.Increment(); }

void EdgeMetrics::AcceptBackoff() { accept_backoffs_.Increment(); }

void EdgeMetrics::AuthAudit(const std::string& outcome) {
  if (outcome == "recorded") {
    auth_audit_recorded_.Increment();
  } else {
    auth_audit_dropped_.Add({{"reason", outcome}}).Increment();
  }
}

void EdgeMetrics::ExecLost() { exec_lost_.Increment(); }

void EdgeMetrics::SessionDetached(const std::string& why) {
  sessions_detached_.Add({{"why", why}}).Increment();
}

void EdgeMetrics::SessionResumed() { sessions_resumed_.Increment(); }

void EdgeMetrics::InvalidTransition(const std::string& what) {
  invalid_transitions_.Add({{"what", what}}).Increment();
}

void EdgeMetrics::ExecLostAudit(const std::string& outcome) {
  exec_lost_audit_.Add({{"result", outcome}}).Increment();
}

void EdgeMetrics::Rejection(const std::string& reason) {
  rejections_.Add({{"reason", reason}}).Increment();
}

void EdgeMetrics::DrainClose(const std::string& when) {
  drain_closes_.Add({{"when", when}}).Increment();
}

void EdgeMetrics::Frame(const std::string& direction, size_t bytes) {
  frames_.Add({{"direction", direction}}).Increment();
  bytes_.Add({{"direction", direction}}).Increment(static_cast<double>(bytes));
}

void EdgeMetrics::FirstOutputLatency(double seconds) { first_output_latency_.Observe(seconds); }

void EdgeMetrics::ApiRequest(const std::string& route, int status) {
  std::string klass = std::to_string(status / 100) + "xx";
  api_requests_.Add({{"route", route}, {"code", klass}}).Increment();
}

void ReportServerEvents(EdgeMetrics* metrics, http::ServerOptions& options,
                        absl::Duration log_every) {
  options.on_refusal = [metrics](std::string_view reason) {
    metrics->Rejection(std::string(reason));
  };
  auto last_log = std::make_shared<std::atomic<int64_t>>(0);
  auto since_log = std::make_shared<std::atomic<int64_t>>(0);
  const int64_t every_ms = absl::ToInt64Milliseconds(log_every);
  options.on_accept_backoff = [metrics, last_log, since_log, every_ms](const std::string& error,
                                                                       absl::Duration pause) {
    metrics->AcceptBackoff();
    ++*since_log;
    const int64_t now = absl::ToUnixMillis(absl::Now());
    int64_t last = last_log->load();
    if (now - last >= every_ms && last_log->compare_exchange_strong(last, now)) {
      log::Warn("accept failing, backing off", {{"error", error},
                                                {"pause_ms", absl::ToInt64Milliseconds(pause)},
                                                {"backoffs", since_log->exchange(0)}});
    }
  };
}

}  // namespace podgate::edge
