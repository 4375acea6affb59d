// What every part of an edge replica shares: options, the token verifier, the backend stubs,
// limits, metrics and the registry of live sessions. Owned by main (or a test) and outliving
// the HTTP server.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "auth/jwt.h"
#include "edge/auth_audit.h"
#include "edge/edge_metrics.h"
#include "edge/limits.h"
#include "edge/proxy_trust.h"
#include "edge/session_registry.h"
#include "grpcpp/grpcpp.h"
#include "podgate/audit/v1/audit.grpc.pb.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "podgate/policy/v1/policy.grpc.pb.h"

namespace podgate::edge {

class ExecLanes;
class Sso;

struct EdgeOptions {
  // Comma-separated exact origins allowed on WebSocket handshakes and cookie requests.
  std::string allowed_origins;
  // Whether a handshake without Origin (a CLI client, never a browser) is accepted.
  bool allow_missing_origin = false;
  // Groups whose members may query audit.
  std::vector<std::string> auditor_groups = {"podgate-auditors"};
  // A connection without a handshake credential must authenticate within this.
  absl::Duration auth_timeout = absl::Seconds(10);
  // Closed (1001) after this long without a message from the browser.
  absl::Duration idle_timeout = absl::Minutes(15);
  // Deadline of HTTP API calls to the backends.
  absl::Duration backend_timeout = absl::Seconds(5);
  // Requests waiting for exec (and seed commands waiting their turn) per connection before
  // edge stops reading from the browser.
  size_t max_pending_requests = 32;
  // Whether the login cookie is marked Secure (always, unless plain HTTP on loopback).
  bool secure_cookie = true;
  // Static files of the page; empty serves none.
  std::string web_root;
};

struct EdgeContext {
  EdgeOptions options;
  const auth::Verifier* verifier = nullptr;
  podgate::exec::v1::ExecService::StubInterface* exec = nullptr;
  // The browser sessions' Session streams go to exec on a channel of their own, without gRPC's
  // retry filter (runtime::ChannelCalls::kSessionStreams); null: through `exec`.
  podgate::exec::v1::ExecService::StubInterface* exec_sessions = nullptr;
  // The browser sessions' lanes to exec (exec_lanes.h); null: a Session call each.
  ExecLanes* exec_lanes = nullptr;
  podgate::policy::v1::PolicyService::StubInterface* policy = nullptr;
  podgate::audit::v1::AuditService::StubInterface* audit = nullptr;
  std::shared_ptr<grpc::Channel> exec_channel;
  std::shared_ptr<grpc::Channel> policy_channel;
  std::shared_ptr<grpc::Channel> audit_channel;
  Limits* limits = nullptr;
  EdgeMetrics* metrics = nullptr;
  // Every open browser session, for the shutdown drain.
  SessionRegistry* sessions = nullptr;
  // Audits authentication failures; null records none (unit tests).
  AuthFailureAudit* auth_audit = nullptr;
  // Single sign-on (sso.h); null when --oidc_issuer is not set.
  Sso* sso = nullptr;
  // Trusted proxies and auth-proxy mode; null trusts none (unit tests).
  const ProxyTrust* proxies = nullptr;
};

// A refused (or missing) credential: counted by reason, logged without the token, and
// audited once as EVENT_KIND_AUTH_FAILURE.
// `trace_id`: the request's trace (RouteTable), recorded on the event; empty when unknown.
void AuthFailed(EdgeContext* context, const AuthFailureEvent& failure,
                const std::string& trace_id = "");

}  // namespace podgate::edge
