// The edge service's Prometheus metrics, declared in one place.
#pragma once

#include <string>

#include "absl/time/time.h"
#include "http/server.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace podgate::edge {

class EdgeMetrics {
 public:
  explicit EdgeMetrics(prometheus::Registry& registry);

  // A WebSocket connection of `protocol` ("v1" or "seed") opened / closed.
  void ConnectionOpened(const std::string& protocol);
  void ConnectionClosed(const std::string& protocol);
  // An exec session opened (ready) / ended.
  void SessionOpened();
  void SessionClosed();
  // A refused credential, by AuthFailureReason ("missing" when none was given).
  void AuthFailure(const std::string& reason);
  // A refused connection, handshake or closed connection: "origin", "size", "rate", "limit",
  // "unauthenticated_limit", "max_connections", "per_source", "unauthenticated_per_source",
  // "shutdown". Any thread.
  void Rejection(const std::string& reason);
  // The accept loop paused for lack of descriptors or memory.
  void AcceptBackoff();
  // The outcome of an auth-failure audit event: "recorded", "queue_full", "failed".
  void AuthAudit(const std::string& outcome);
  // A session's exec stream broke (docs/protocol.md, "Exec lost").
  void ExecLost();
  // A resumable session left to exec for a resume: "browser_gone" (the WebSocket broke without
  // `close`) or "shutdown" (edge is shutting down).
  void SessionDetached(const std::string& why);
  // A session resumed through this edge (exec answered `resumed`).
  void SessionResumed();
  // The outcome of the audit record of such a loss: "recorded", "queue_full", "failed".
  void ExecLostAudit(const std::string& outcome);
  // A browser session refused a state change its transition tables do not allow (a bug; the
  // session logs it): "state", "exec" (its exec stream's phase) or "slot" (its connection pool).
  void InvalidTransition(const std::string& what);
  // A browser connection closed because edge is shutting down: "at_once" (no command was
  // running), "after_command" (right after the running command's result), "deadline" (still
  // open when --drain_timeout ran out).
  void DrainClose(const std::string& when);
  // WebSocket messages and payload bytes, "in" (from the browser) or "out".
  void Frame(const std::string& direction, size_t bytes);
  // Seconds from a command leaving edge to its first output byte reaching edge.
  void FirstOutputLatency(double seconds);
  // HTTP API requests by route and status class ("2xx", "4xx", "5xx").
  void ApiRequest(const std::string& route, int status);
  // Single sign-on (sso.h): a sign-in's outcome ("ok" or why it was refused), a session
  // refresh's, and a logout.
  void OidcLogin(const std::string& result);
  void OidcRefresh(const std::string& result);
  void OidcLogout();

 private:
  prometheus::Family<prometheus::Gauge>& connections_;
  prometheus::Family<prometheus::Counter>& connections_total_;
  prometheus::Gauge& sessions_;
  prometheus::Counter& sessions_total_;
  prometheus::Family<prometheus::Counter>& auth_failures_;
  prometheus::Family<prometheus::Counter>& rejections_;
  prometheus::Family<prometheus::Counter>& drain_closes_;
  prometheus::Family<prometheus::Counter>& frames_;
  prometheus::Family<prometheus::Counter>& bytes_;
  prometheus::Histogram& first_output_latency_;
  prometheus::Family<prometheus::Counter>& api_requests_;
  prometheus::Counter& accept_backoffs_;
  prometheus::Counter& auth_audit_recorded_;
  prometheus::Family<prometheus::Counter>& auth_audit_dropped_;
  prometheus::Counter& exec_lost_;
  prometheus::Family<prometheus::Counter>& sessions_detached_;
  prometheus::Counter& sessions_resumed_;
  prometheus::Family<prometheus::Counter>& exec_lost_audit_;
  prometheus::Family<prometheus::Counter>& invalid_transitions_;
  prometheus::Family<prometheus::Counter>& oidc_logins_;
  prometheus::Family<prometheus::Counter>& oidc_refreshes_;
  prometheus::Counter& oidc_logouts_;
};

// Sets the HTTP server's `on_refusal` and `on_accept_backoff`: each connection refused at
// accept is counted by reason; each backoff of the accept loop (out of descriptors) is counted
// and logged at most once per `log_every`, with the number of backoffs since the last line.
// `metrics` outlives the server.
void ReportServerEvents(EdgeMetrics* metrics, http::ServerOptions& options,
                        absl::Duration log_every = absl::Seconds(10));

}  // namespace podgate::edge
