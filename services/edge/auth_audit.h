// Every authentication failure at edge becomes one EVENT_KIND_AUTH_FAILURE audit event: the
// reason (never the credential), the source address and the path (with the target of a
// WebSocket path).
//
// Bounded: events go through the shared audit recorder (one Record stream, acks per event)
// with at most `max_pending` events waiting for an ack. Past that a failure is dropped at once
// and counted (podgate_edge_auth_audit_dropped_total{reason="queue_full"}), as is one audit
// could not store in time ({reason="failed"}): a flood of bad tokens costs a counter, not
// memory. Edge never waits for these acks: a refused credential is refused either way.
#pragma once

#include <memory>
#include <string>

#include "clients/audit_client.h"
#include "edge/edge_metrics.h"
#include "podgate/common/v1/common.pb.h"

namespace podgate::edge {

struct AuthFailureEvent {
  std::string reason;                  // AuthFailureReason, or "missing"
  std::string message;                 // the verifier's message (never holds the token)
  std::string source_address;          // the peer, "ip:port"
  std::string path;                    // the request path, without the query
  podgate::common::v1::Target target;  // for WebSocket paths
};

class AuthFailureAudit {
 public:
  AuthFailureAudit(std::shared_ptr<grpc::Channel> channel, size_t max_pending,
                   EdgeMetrics* metrics);
  ~AuthFailureAudit();

  // Queues the event (with `trace_id`, the request's, when known); never blocks.
  void Record(const AuthFailureEvent& failure, const std::string& trace_id = "");
  // Queues another event edge records (the loss of a session's exec stream), with the same
  // bound; the outcome is counted in podgate_edge_exec_lost_audit_total{result}. Never blocks.
  void RecordEvent(podgate::common::v1::AuditEvent event);

 private:
  EdgeMetrics* const metrics_;
  std::unique_ptr<clients::AuditClient> client_;
};

}  // namespace podgate::edge
