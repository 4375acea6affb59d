// podgate-edge: terminates browser WebSockets, serves the web page and its HTTP API, and turns
// browser frames into exec sessions. gRPC (health) and /metrics come from the shared skeleton;
// the browser-facing HTTP server runs beside it on its own I/O threads.
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "auth/auth_flags.h"
#include "edge/edge_context.h"
#include "edge/edge_metrics.h"
#include "edge/edge_server.h"
#include "edge/limits.h"
#include "http/server.h"
#include "runtime/flags.h"
#include "runtime/log.h"
#include "runtime/peer_flags.h"
#include "runtime/server.h"
#include "runtime/server_flags.h"

ABSL_FLAG(std::string, http_address, "[::]:8080",
          "host:port of the browser-facing HTTP/WebSocket server. Default [::]:8080.");
ABSL_FLAG(std::string, tls_cert_http, "",
          "PEM certificate of the HTTP server. Without it plain HTTP is served only on a "
          "loopback address or with --behind_tls_proxy. Default: none.");
ABSL_FLAG(std::string, tls_key_http, "", "PEM key of --tls_cert_http. Default: none.");
ABSL_FLAG(bool, behind_tls_proxy, false,
          "A TLS-terminating ingress sits in front: plain HTTP on any address. Default false.");
ABSL_FLAG(int, http_threads, 2, "I/O threads of the HTTP server. Default 2.");
ABSL_FLAG(std::string, allowed_origins, "",
          "Comma-separated exact Origins allowed on WebSocket handshakes and login, e.g. "
          "https://podgate.example.com. Default: none (every browser refused).");
ABSL_FLAG(bool, allow_missing_origin, false,
          "Accept WebSocket handshakes without Origin (CLI clients; browsers always send one). "
          "Default false.");
ABSL_FLAG(std::string, web_root, "",
          "Directory of the page's static files, loaded at start (at most 32 MiB). Default: "
          "none.");
ABSL_FLAG(std::string, auditor_groups, "podgate-auditors",
          "Comma-separated groups that may read the audit trail. Default podgate-auditors.");
ABSL_FLAG(int64_t, max_message_bytes, 64 * 1024,
          "Largest WebSocket message from a browser, in bytes; larger closes with 1009. Default "
          "65536.");
ABSL_FLAG(double, messages_per_second, 50,
          "Message rate per connection (token bucket refill, per second). Default 50.");
ABSL_FLAG(double, message_burst, 200, "Message burst per connection. Default 200.");
ABSL_FLAG(double, user_messages_per_second, 100,
          "Message rate per user over all connections, per second. Default 100.");
ABSL_FLAG(double, user_message_burst, 400, "Message burst per user. Default 400.");
ABSL_FLAG(int, max_connections, 10000, "WebSocket connections per replica. Default 10000.");
ABSL_FLAG(int, max_connections_per_user, 20, "WebSocket connections per user. Default 20.");
ABSL_FLAG(absl::Duration, ws_idle_timeout, absl::Minutes(15),
          "Close a WebSocket after this long without a browser message. Default 15m.");
ABSL_FLAG(absl::Duration, ws_keepalive, absl::Seconds(30),
          "Ping a silent browser after half of this; close when silent this long. Default 30s.");
ABSL_FLAG(absl::Duration, auth_timeout, absl::Seconds(5),
          "Time a WebSocket has to authenticate when the handshake carried no token. "
          "Default 5s.");
ABSL_FLAG(int, max_unauthenticated_connections, 1000,
          "WebSockets waiting for their first-message credential, per replica: a pool apart "
          "from --max_connections. Default 1000.");
ABSL_FLAG(int, max_connections_per_source, 256,
          "Connections (HTTP and WebSocket) per source address, the peer's IP; behind a proxy "
          "that is the proxy's address. 0: no limit. Default 256.");
ABSL_FLAG(int, max_unauthenticated_per_source, 32,
          "Connections per source address that have not authenticated (yet). 0: no limit. "
          "Default 32.");
ABSL_FLAG(absl::Duration, http_idle_timeout, absl::Seconds(60),
          "Keep-alive of an HTTP connection between requests once a request on it was "
          "authenticated. Default 60s.");
ABSL_FLAG(absl::Duration, http_unauthenticated_idle_timeout, absl::Seconds(5),
          "Keep-alive of an HTTP connection between requests while none on it was "
          "authenticated. Default 5s.");
ABSL_FLAG(int, auth_audit_queue, 1000,
          "Authentication failures waiting for audit's ack; beyond, failures are counted "
          "(podgate_edge_auth_audit_dropped_total) but not audited. Default 1000.");
ABSL_FLAG(absl::Duration, backend_timeout, absl::Seconds(5),
          "Deadline of HTTP API calls to exec, policy and audit. Default 5s.");
ABSL_FLAG(int64_t, write_buffer_bytes, 256 * 1024,
          "Bytes queued towards a browser before edge stops reading from exec. Default 262144.");

namespace {

namespace rt = podgate::runtime;

// After the drain deadline, how long the close frames of the sessions closed then may take to
// leave before the process exits.
constexpr absl::Duration kCloseGrace = absl::Seconds(2);

bool IsLoopback(const std::string& host) {
  return host == "127.0.0.1" || host == "::1" || host == "localhost" ||
         absl::StartsWith(host, "127.");
}

void CheckPositive(absl::Duration d, const char* name) {
  if (d <= absl::ZeroDuration()) {
    rt::ExitWithError(absl::StrCat("--", name, " must be positive"));
  }
}

std::shared_ptr<grpc::Channel> Channel(const rt::PeerFlags& peer) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = rt::CreatePeerChannel(peer);
  if (!channel.ok()) {
    rt::ExitWithError(std::string(channel.status().message()));
  }
  return *channel;
}

}  // namespace

int main(int argc, char** argv) {
  rt::BlockShutdownSignals();
  rt::ParseFlags(argc, argv,
                 "podgate-edge: the browser-facing service of podgate.\n"
                 "Every flag may also be set as PODGATE_<FLAG>.");
  rt::InitLoggingFromFlags("edge");
  const rt::ServiceDefaults defaults{"edge", "[::]:7104", "[::]:9104"};
  // The shared flags first: a bad one is the only line printed.
  if (absl::StatusOr<rt::ServerOptions> shared = rt::ServerOptionsFromFlags(defaults);
      !shared.ok()) {
    rt::ExitWithError(std::string(shared.status().message()));
  }
  // The JWKS URL source (if any) registers its metrics here.
  auto registry = std::make_shared<prometheus::Registry>();
  absl::StatusOr<podgate::auth::Verifier> verifier = podgate::auth::VerifierFromFlags(registry);
  if (!verifier.ok()) {
    rt::ExitWithError(std::string(verifier.status().message()));
  }

  // --http_address
  std::string http_address = absl::GetFlag(FLAGS_http_address);
  size_t colon = http_address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(http_address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    rt::ExitWithError("--http_address must be host:port");
  }
  std::string host = http_address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  podgate::http::ServerOptions http_options;
  http_options.address = host;
  http_options.port = static_cast<uint16_t>(port);
  http_options.response_headers = podgate::edge::SecurityHeaderList();
  http_options.cert_file = absl::GetFlag(FLAGS_tls_cert_http);
  http_options.key_file = absl::GetFlag(FLAGS_tls_key_http);
  if (http_options.cert_file.empty() != http_options.key_file.empty()) {
    rt::ExitWithError("--tls_cert_http and --tls_key_http go together");
  }
  const bool plain = http_options.cert_file.empty();
  if (plain && !IsLoopback(host) && !absl::GetFlag(FLAGS_behind_tls_proxy)) {
    rt::ExitWithError(
        "--http_address is not a loopback address: set --tls_cert_http/--tls_key_http, or "
        "--behind_tls_proxy when a TLS ingress terminates browser connections");
  }
  int64_t max_message = absl::GetFlag(FLAGS_max_message_bytes);
  if (max_message < 1024 || max_message > (16 << 20)) {
    rt::ExitWithError("--max_message_bytes must be 1024 to 16777216");
  }
  int64_t write_buffer = absl::GetFlag(FLAGS_write_buffer_bytes);
  if (write_buffer < 4096 || write_buffer > (64 << 20)) {
    rt::ExitWithError("--write_buffer_bytes must be 4096 to 67108864");
  }
  http_options.websocket_message_limit_bytes = static_cast<size_t>(max_message);
  http_options.write_high_watermark_bytes = static_cast<size_t>(write_buffer);
  http_options.write_hard_limit_bytes = static_cast<size_t>(write_buffer) * 4 + (1 << 20);
  http_options.websocket_keepalive = absl::GetFlag(FLAGS_ws_keepalive);
  if (absl::GetFlag(FLAGS_max_unauthenticated_connections) < 1 ||
      absl::GetFlag(FLAGS_max_connections_per_source) < 0 ||
      absl::GetFlag(FLAGS_max_unauthenticated_per_source) < 0 ||
      absl::GetFlag(FLAGS_auth_audit_queue) < 1) {
    rt::ExitWithError(
        "--max_unauthenticated_connections and --auth_audit_queue must be >= 1, "
        "--max_connections_per_source and --max_unauthenticated_per_source >= 0");
  }
  // Room for every WebSocket of both pools, plus plain HTTP requests.
  http_options.max_connections =
      static_cast<size_t>(absl::GetFlag(FLAGS_max_connections)) +
      static_cast<size_t>(absl::GetFlag(FLAGS_max_unauthenticated_connections)) + 256;
  http_options.max_connections_per_source =
      static_cast<size_t>(absl::GetFlag(FLAGS_max_connections_per_source));
  http_options.max_unauthenticated_per_source =
      static_cast<size_t>(absl::GetFlag(FLAGS_max_unauthenticated_per_source));
  http_options.idle_timeout = absl::GetFlag(FLAGS_http_idle_timeout);
  http_options.unauthenticated_idle_timeout =
      absl::GetFlag(FLAGS_http_unauthenticated_idle_timeout);
  for (auto [d, name] : {std::pair{absl::GetFlag(FLAGS_ws_idle_timeout), "ws_idle_timeout"},
                         std::pair{absl::GetFlag(FLAGS_http_idle_timeout), "http_idle_timeout"},
                         std::pair{absl::GetFlag(FLAGS_http_unauthenticated_idle_timeout),
                                   "http_unauthenticated_idle_timeout"},
                         std::pair{absl::GetFlag(FLAGS_ws_keepalive), "ws_keepalive"},
                         std::pair{absl::GetFlag(FLAGS_auth_timeout), "auth_timeout"},
                         std::pair{absl::GetFlag(FLAGS_backend_timeout), "backend_timeout"}}) {
    CheckPositive(d, name);
  }
  podgate::edge::LimitOptions limit_options;
  limit_options.messages_per_second = absl::GetFlag(FLAGS_messages_per_second);
  limit_options.message_burst = absl::GetFlag(FLAGS_message_burst);
  limit_options.user_messages_per_second = absl::GetFlag(FLAGS_user_messages_per_second);
  limit_options.user_message_burst = absl::GetFlag(FLAGS_user_message_burst);
  limit_options.max_connections = absl::GetFlag(FLAGS_max_connections);
  limit_options.max_connections_per_user = absl::GetFlag(FLAGS_max_connections_per_user);
  limit_options.max_unauthenticated_connections =
      absl::GetFlag(FLAGS_max_unauthenticated_connections);
  if (limit_options.messages_per_second <= 0 || limit_options.message_burst < 1 ||
      limit_options.user_messages_per_second <= 0 || limit_options.user_message_burst < 1) {
    rt::ExitWithError("message rates must be positive and bursts at least 1");
  }
  if (limit_options.max_connections < 1 || limit_options.max_connections_per_user < 1 ||
      absl::GetFlag(FLAGS_http_threads) < 1 || absl::GetFlag(FLAGS_http_threads) > 64) {
    rt::ExitWithError(
        "--max_connections and --max_connections_per_user must be >= 1, "
        "--http_threads 1 to 64");
  }

  podgate::edge::EdgeMetrics metrics(*registry);
  podgate::edge::Limits limits(limit_options);
  // Outlives the I/O context: sessions leave it from their destructors.
  podgate::edge::SessionRegistry sessions;
  podgate::edge::EdgeContext context;
  context.options.allowed_origins = absl::GetFlag(FLAGS_allowed_origins);
  context.options.allow_missing_origin = absl::GetFlag(FLAGS_allow_missing_origin);
  context.options.auditor_groups =
      absl::StrSplit(absl::GetFlag(FLAGS_auditor_groups), ',', absl::SkipWhitespace());
  context.options.auth_timeout = absl::GetFlag(FLAGS_auth_timeout);
  context.options.idle_timeout = absl::GetFlag(FLAGS_ws_idle_timeout);
  context.options.backend_timeout = absl::GetFlag(FLAGS_backend_timeout);
  context.options.secure_cookie = !plain || absl::GetFlag(FLAGS_behind_tls_proxy);
  context.options.web_root = absl::GetFlag(FLAGS_web_root);
  context.exec_channel = Channel(rt::ExecPeerFlags());
  context.policy_channel = Channel(rt::PolicyPeerFlags());
  context.audit_channel = Channel(rt::AuditPeerFlags());
  auto exec_stub = podgate::exec::v1::ExecService::NewStub(context.exec_channel);
  auto policy_stub = podgate::policy::v1::PolicyService::NewStub(context.policy_channel);
  auto audit_stub = podgate::audit::v1::AuditService::NewStub(context.audit_channel);
  context.verifier = &*verifier;
  context.exec = exec_stub.get();
  context.policy = policy_stub.get();
  context.audit = audit_stub.get();
  context.limits = &limits;
  context.metrics = &metrics;
  context.sessions = &sessions;
  podgate::edge::AuthFailureAudit auth_audit(
      context.audit_channel, static_cast<size_t>(absl::GetFlag(FLAGS_auth_audit_queue)), &metrics);
  context.auth_audit = &auth_audit;

  // Refusals at accept are counted; a backoff of the accept loop (out of descriptors) is
  // counted and logged at most every 10s.
  http_options.on_refusal = [&metrics](std::string_view reason) {
    metrics.Rejection(std::string(reason));
  };
  auto last_backoff_log = std::make_shared<std::atomic<int64_t>>(0);
  auto backoffs_since_log = std::make_shared<std::atomic<int64_t>>(0);
  http_options.on_accept_backoff = [&metrics, last_backoff_log, backoffs_since_log](
                                       const std::string& error, absl::Duration pause) {
    metrics.AcceptBackoff();
    ++*backoffs_since_log;
    const int64_t now = absl::ToUnixSeconds(absl::Now());
    int64_t last = last_backoff_log->load();
    if (now - last >= 10 && last_backoff_log->compare_exchange_strong(last, now)) {
      podgate::log::Warn("accept failing, backing off",
                         {{"error", error},
                          {"pause_ms", absl::ToInt64Milliseconds(pause)},
                          {"backoffs", backoffs_since_log->exchange(0)}});
    }
  };

  absl::StatusOr<podgate::edge::StaticFiles> files =
      podgate::edge::StaticFiles::Load(context.options.web_root);
  if (!files.ok()) {
    rt::ExitWithError(std::string(files.status().message()));
  }
  auto router = std::make_shared<podgate::edge::EdgeRouter>(&context, *std::move(files));

  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  absl::StatusOr<std::unique_ptr<podgate::http::Server>> http_server = podgate::http::Server::Start(
      io, http_options,
      [router](const podgate::http::Request& request, const podgate::http::RequestContext& peer,
               bool is_upgrade) { return router->Route(request, peer, is_upgrade); });
  if (!http_server.ok()) {
    rt::ExitWithError(absl::StrCat("--http_address: ", http_server.status().message()));
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < absl::GetFlag(FLAGS_http_threads); ++i) {
    threads.emplace_back([&io] { io.run(); });
  }
  int status = rt::RunServer(defaults, {}, registry, [&](rt::Server& server) {
    podgate::log::Info("http serving", {{"http_port", static_cast<int>((*http_server)->port())},
                                        {"tls", !plain},
                                        {"web_root", context.options.web_root}});
    // New connections are refused and /readyz turns 503; every browser session is told to
    // end (at once, or after its running command) with a close frame.
    server.AddDrainHook([&] {
      (*http_server)->Stop();
      const int64_t open = static_cast<int64_t>(sessions.size());
      sessions.BeginDrain();
      // Logged once every session's drain is queued on its strand: whatever a browser sends
      // after this line is handled after it.
      podgate::log::Info("draining browser sessions", {{"sessions", open}});
    });
    server.AddDrainWait([&](absl::Time deadline) {
      if (sessions.WaitEmpty(deadline)) {
        return;
      }
      podgate::log::Warn("drain deadline: closing the remaining browser sessions",
                         {{"sessions", static_cast<int64_t>(sessions.size())}});
      sessions.CloseAll();
      sessions.WaitEmpty(absl::Now() + kCloseGrace);
    });
  });
  (*http_server)->Stop();
  work.reset();
  io.stop();
  for (std::thread& t : threads) {
    t.join();
  }
  return status;
}
