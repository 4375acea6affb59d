// edge's liveness and readiness endpoints.
//
//   GET /healthz   200 "ok" while the process serves HTTP
//   GET /readyz    200 once exec and policy are reachable (audit is reported, not required);
//                  503 while they are not, and from the start of a shutdown drain
#pragma once

#include "absl/time/time.h"
#include "edge/edge_context.h"
#include "http/server.h"

namespace podgate::edge {

class HealthEndpoints {
 public:
  explicit HealthEndpoints(EdgeContext* context) : context_(context) {}

  http::RouteResult Healthz(const http::Request& request) const;
  // Answers at once when every backend channel has settled (READY or failed), else deferred
  // until they do or a short wait (under a probe's default 1 s) runs out: a channel that is
  // IDLE or CONNECTING is not a failure.
  http::RouteResult Ready(const http::Request& request) const;

 private:
  EdgeContext* const context_;
};

// Waits until every deferred /readyz probe has answered and let go of its connection (each does
// within 800 ms), or until `deadline`; true when none is left. A probe polls on a timer thread
// of its own and holds its HTTP connection: edge waits here before it destroys the I/O context
// the connection belongs to.
bool WaitReadyProbesDone(absl::Time deadline);

}  // namespace podgate::edge
