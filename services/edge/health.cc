#include "edge/health.h"

#include <algorithm>
#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "edge/http_reply.h"
#include "edge/live_count.h"
#include "runtime/timer.h"

namespace podgate::edge {

namespace bhttp = boost::beast::http;
using http::Request;
using http::Response;
using http::RouteResult;

namespace {

// How long /readyz waits for an idle or connecting backend channel to settle. Short of the
// 1 s a Kubernetes probe waits by default.
constexpr absl::Duration kReadyWait = absl::Milliseconds(800);

// Probes not yet destroyed, for WaitReadyProbesDone: a probe's reply holds its HTTP connection.
constinit LiveCount g_live_probes;

// One /readyz probe: the backend channels' states, asked to connect; answers once every
// channel is READY or has failed (TRANSIENT_FAILURE, SHUTDOWN), or when the wait runs out.
// IDLE (never used, or unused for a while) and CONNECTING are not failures: a healthy backend
// answers 200 on the first probe.
class ReadyProbe : public std::enable_shared_from_this<ReadyProbe> {
 public:
  // Holds the channels themselves: a probe may outlive the router by its wait.
  ReadyProbe(const EdgeContext& context, Request request, absl::Time deadline)
      : channels_{{{"exec", context.exec_channel},
                   {"policy", context.policy_channel},
                   {"audit", context.audit_channel}}},
        request_(std::move(request)),
        deadline_(deadline) {}

  // The answer if every channel has settled (or `final`), else nullopt.
  std::optional<Response> Check(bool final) {
    nlohmann::json body = nlohmann::json::object();
    bool ready = true;
    bool settled = true;
    for (const auto& [name, channel] : channels_) {
      if (channel == nullptr) {
        continue;
      }
      const grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
      const bool up = state == GRPC_CHANNEL_READY;
      settled = settled &&
                (up || state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN);
      body[name] = up ? "ready" : "not ready";
      // audit is optional for the page (only the audit view needs it).
      if (!up && std::string(name) != "audit") {
        ready = false;
      }
    }
    if (!settled && !final) {
      return std::nullopt;
    }
    return Json(request_, ready ? bhttp::status::ok : bhttp::status::service_unavailable, body);
  }

  // Polls until Check answers, on the shared timer thread (GetState does not block).
  void Wait(std::function<void(Response)> reply) {
    reply_ = std::move(reply);
    Poll();
  }

 private:
  void Poll() {
    const bool final = absl::Now() >= deadline_;
    if (std::optional<Response> answer = Check(final)) {
      reply_(*std::move(answer));
      return;  // the reply goes with the probe
    }
    runtime::TimerQueue::Default().After(absl::Milliseconds(10),
                                         [self = shared_from_this()] { self->Poll(); });
  }

  LiveCount::Member live_{g_live_probes};  // first: destroyed last
  const std::array<std::pair<const char*, std::shared_ptr<grpc::Channel>>, 3> channels_;
  const Request request_;
  const absl::Time deadline_;
  std::function<void(Response)> reply_;
};

}  // namespace

bool WaitReadyProbesDone(absl::Time deadline) { return g_live_probes.WaitNone(deadline); }

RouteResult HealthEndpoints::Healthz(const Request& request) const {
  return Answer(http::MakeResponse(request, bhttp::status::ok, "text/plain", "ok\n"));
}

RouteResult HealthEndpoints::Ready(const Request& request) const {
  if (context_->sessions->draining()) {
    // Load balancers stop sending browsers here while the open sessions wind down.
    return Answer(Json(request, bhttp::status::service_unavailable, {{"edge", "shutting down"}}));
  }
  auto probe = std::make_shared<ReadyProbe>(
      *context_, RequestLine(request),
      absl::Now() + std::min(kReadyWait, context_->options.backend_timeout));
  if (std::optional<Response> answer = probe->Check(/*final=*/false)) {
    return Answer(*std::move(answer));
  }
  RouteResult result;
  result.deferred = [probe](std::function<void(Response)> reply) { probe->Wait(std::move(reply)); };
  return result;
}

}  // namespace podgate::edge
