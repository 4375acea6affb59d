// podgate-edge: terminates browser WebSockets, serves the web page and its HTTP API, and turns
// browser frames into exec sessions. gRPC (health) and /metrics come from the shared skeleton;
// the browser-facing HTTP server runs beside it on its own I/O threads.
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <cstdlib>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "auth/auth_flags.h"
#include "edge/audit_follow.h"
#include "edge/backend_calls.h"
#include "edge/descriptors.h"
#include "edge/edge_context.h"
#include "edge/edge_metrics.h"
#include "edge/edge_server.h"
#include "edge/exec_lanes.h"
#include "edge/health.h"
#include "edge/limits.h"
#include "edge/options.h"
#include "edge/proxy_trust.h"
#include "edge/sso.h"
#include "http/server.h"
#include "runtime/flags.h"
#include "runtime/log.h"
#include "runtime/peer_flags.h"
#include "runtime/server.h"
#include "runtime/server_flags.h"

// One source for the defaults: the validated options' own (edge/options.h).
const podgate::edge::EdgeFlags kDefaults;

ABSL_FLAG(std::string, http_address, kDefaults.http_address,
          "host:port of the browser-facing HTTP/WebSocket server. Default [::]:8080.");
ABSL_FLAG(std::string, tls_cert_http, kDefaults.tls_cert_http,
          "PEM certificate of the HTTP server. Without it plain HTTP is served only on a "
          "loopback address or with --behind_tls_proxy. Default: none.");
ABSL_FLAG(std::string, tls_key_http, kDefaults.tls_key_http,
          "PEM key of --tls_cert_http. Default: none.");
ABSL_FLAG(bool, behind_tls_proxy, kDefaults.behind_tls_proxy,
          "A TLS-terminating ingress sits in front: plain HTTP on any address. Default false.");
ABSL_FLAG(int, http_threads, kDefaults.http_threads, "I/O threads of the HTTP server. Default 2.");
ABSL_FLAG(std::string, allowed_origins, kDefaults.allowed_origins,
          "Comma-separated exact Origins allowed on WebSocket handshakes and login, e.g. "
          "https://podgate.example.com. Default: none (every browser refused).");
ABSL_FLAG(bool, allow_missing_origin, kDefaults.allow_missing_origin,
          "Accept WebSocket handshakes without Origin (CLI clients; browsers always send one). "
          "Default false.");
ABSL_FLAG(bool, exec_lanes, kDefaults.exec_lanes,
          "Carry the browser sessions to exec as lanes of one Sessions stream per exec "
          "connection (gRPC's per-stream memory paid once, not per session); false: a Session "
          "call each. Against an exec without Sessions, edge falls back to a call each by "
          "itself. Default true.");
ABSL_FLAG(std::string, web_root, kDefaults.web_root,
          "Directory of the page's static files, loaded at start (at most 32 MiB). Default: "
          "none.");
ABSL_FLAG(std::string, auditor_groups, kDefaults.auditor_groups,
          "Comma-separated groups that may read the audit trail. Default podgate-auditors.");
ABSL_FLAG(int64_t, max_message_bytes, kDefaults.max_message_bytes,
          "Largest WebSocket message from a browser, in bytes; larger closes with 1009. Default "
          "65536.");
ABSL_FLAG(double, messages_per_second, kDefaults.messages_per_second,
          "Message rate per connection (token bucket refill, per second). Default 50.");
ABSL_FLAG(double, message_burst, kDefaults.message_burst,
          "Message burst per connection. Default 200.");
ABSL_FLAG(double, user_messages_per_second, kDefaults.user_messages_per_second,
          "Message rate per user over all connections, per second. Default 100.");
ABSL_FLAG(double, user_message_burst, kDefaults.user_message_burst,
          "Message burst per user. Default 400.");
ABSL_FLAG(int, max_connections, kDefaults.max_connections,
          "WebSocket connections per replica. Default 10000.");
ABSL_FLAG(int, max_connections_per_user, kDefaults.max_connections_per_user,
          "WebSocket connections per user. Default 20.");
ABSL_FLAG(int, max_audit_follows, kDefaults.max_audit_follows,
          "Live audit streams (GET /api/v1/audit?follow=1) per replica; more are answered 429. "
          "Default 64.");
ABSL_FLAG(int, max_audit_follows_per_user, kDefaults.max_audit_follows_per_user,
          "Live audit streams per user; more are answered 429. Default 4.");
ABSL_FLAG(absl::Duration, ws_idle_timeout, kDefaults.ws_idle_timeout,
          "Close a WebSocket after this long without a browser message. Default 15m.");
ABSL_FLAG(absl::Duration, ws_keepalive, kDefaults.ws_keepalive,
          "Ping a silent browser after half of this; close when silent this long. Default 30s.");
ABSL_FLAG(absl::Duration, auth_timeout, kDefaults.auth_timeout,
          "Time a WebSocket has to authenticate when the handshake carried no token. "
          "Default 5s.");
ABSL_FLAG(int, max_unauthenticated_connections, kDefaults.max_unauthenticated_connections,
          "WebSockets waiting for their first-message credential, per replica: a pool apart "
          "from --max_connections. Default 1000.");
ABSL_FLAG(int, max_connections_per_source, kDefaults.max_connections_per_source,
          "Connections (HTTP and WebSocket) per source address, the peer's IP; behind a proxy "
          "that is the proxy's address, unless it is in --trusted_proxies: then the WebSockets "
          "of each forwarded client address are capped at the handshake instead. 0: no limit. "
          "Default 256.");
ABSL_FLAG(int, max_unauthenticated_per_source, kDefaults.max_unauthenticated_per_source,
          "Connections per source address that have not authenticated (yet). 0: no limit. "
          "Default 32.");
ABSL_FLAG(absl::Duration, http_idle_timeout, kDefaults.http_idle_timeout,
          "Keep-alive of an HTTP connection between requests once a request on it was "
          "authenticated. Default 60s.");
ABSL_FLAG(absl::Duration, http_unauthenticated_idle_timeout,
          kDefaults.http_unauthenticated_idle_timeout,
          "Keep-alive of an HTTP connection between requests while none on it was "
          "authenticated. Default 5s.");
ABSL_FLAG(int, auth_audit_queue, kDefaults.auth_audit_queue,
          "Authentication failures waiting for audit's ack; beyond, failures are counted "
          "(podgate_edge_auth_audit_dropped_total) but not audited. Default 1000.");
ABSL_FLAG(absl::Duration, backend_timeout, kDefaults.backend_timeout,
          "Deadline of HTTP API calls to exec, policy and audit. Default 5s.");
ABSL_FLAG(int64_t, write_buffer_bytes, kDefaults.write_buffer_bytes,
          "Bytes queued towards a browser before edge stops reading from exec. Default 262144.");
ABSL_FLAG(std::string, oidc_issuer, kDefaults.oidc_issuer,
          "Single sign-on: the OpenID provider's issuer URL (https; http only to loopback). "
          "Turns on /auth/login, /auth/callback, /auth/refresh, /auth/logout; needs "
          "--oidc_client_id, --oidc_redirect_url, --oidc_cookie_key_file, and --jwt_issuer equal "
          "to it with --jwt_jwks_url the provider's jwks_uri. Default: none (SSO off).");
ABSL_FLAG(std::string, oidc_client_id, kDefaults.oidc_client_id,
          "Single sign-on: edge's client id at the provider (also an ID token's audience: "
          "--jwt_audience must include it). Default: none.");
ABSL_FLAG(std::string, oidc_client_secret_file, kDefaults.oidc_client_secret_file,
          "Single sign-on: a file holding the client secret (a confidential client). Without "
          "it edge is a public client (PKCE only). Default: none.");
ABSL_FLAG(std::string, oidc_client_auth_method, kDefaults.oidc_client_auth_method,
          "Single sign-on: client_secret_basic, client_secret_post or none. Default: "
          "client_secret_basic with a secret (client_secret_post when the provider offers only "
          "that), none without.");
ABSL_FLAG(std::string, oidc_scopes, kDefaults.oidc_scopes,
          "Single sign-on: the scopes asked for, space separated; must include openid; "
          "offline_access gets a refresh token from most providers. Default \"openid profile "
          "email offline_access\".");
ABSL_FLAG(std::string, oidc_redirect_url, kDefaults.oidc_redirect_url,
          "Single sign-on: edge's public callback URL, https://<host>/auth/callback, as "
          "registered at the provider; its origin must be in --allowed_origins. Default: none.");
ABSL_FLAG(std::string, oidc_cookie_key_file, kDefaults.oidc_cookie_key_file,
          "Single sign-on: a file with 32 or more random bytes (e.g. openssl rand -hex 32) "
          "sealing the sign-in and session cookies (AES-256-GCM); every replica needs the same. "
          "Default: none.");
ABSL_FLAG(std::string, oidc_provider_name, kDefaults.oidc_provider_name,
          "Single sign-on: the provider's name on the page's button (\"Sign in with <name>\"). "
          "Default SSO.");
ABSL_FLAG(std::string, oidc_ca_file, kDefaults.oidc_ca_file,
          "Single sign-on: PEM CA bundle to verify the provider's discovery and token "
          "endpoints with. Default: the system's roots.");
ABSL_FLAG(absl::Duration, oidc_timeout, kDefaults.oidc_timeout,
          "Single sign-on: deadline of one call to the provider (discovery, token endpoint), "
          "1s to 1m. Default 10s.");
ABSL_FLAG(int, oidc_max_pending, kDefaults.oidc_max_pending,
          "Single sign-on: token-endpoint calls running or waiting; past it a sign-in or "
          "refresh is answered 503. Default 64.");
ABSL_FLAG(absl::Duration, oidc_session_lifetime, kDefaults.oidc_session_lifetime,
          "Single sign-on: how long a browser may refresh its ID token before it must sign in "
          "again (the provider may end it sooner), 1m to 720h. Default 12h.");
ABSL_FLAG(std::string, tls_client_ca_http, kDefaults.tls_client_ca_http,
          "PEM CA bundle: the HTTP server asks for client certificates and verifies them against "
          "it (not required; a verified one can name an auth proxy, "
          "--auth_proxy_client_names). Needs --tls_cert_http. Default: none.");
ABSL_FLAG(std::string, trusted_proxies, kDefaults.trusted_proxies,
          "Comma-separated CIDRs (IPv4 and IPv6; a bare address is one host) of proxies whose "
          "--forwarded_header names the client: the client's address is then the source of "
          "audit records and logs. From any other peer the header is ignored. Default: none.");
ABSL_FLAG(std::string, forwarded_header, kDefaults.forwarded_header,
          "The header a trusted proxy names the client in: x-forwarded-for or forwarded "
          "(RFC 7239). Only that one is read. Default x-forwarded-for.");
ABSL_FLAG(std::string, auth_proxy_user_header, kDefaults.auth_proxy_user_header,
          "Auth-proxy mode: the header an authenticating proxy (oauth2-proxy) names the signed-in "
          "user in, e.g. X-Auth-Request-User or X-Forwarded-User. The proxy must also forward "
          "the user's token (X-Forwarded-Access-Token or Authorization: Bearer), which is "
          "verified; the header must name the token's user. Default: none (off).");
ABSL_FLAG(std::string, auth_proxy_groups_header, kDefaults.auth_proxy_groups_header,
          "Auth-proxy mode: the header listing the user's groups, comma-separated, e.g. "
          "X-Auth-Request-Groups; each must be among the token's groups. Default: none.");
ABSL_FLAG(std::string, auth_proxy_cidrs, kDefaults.auth_proxy_cidrs,
          "Auth-proxy mode: comma-separated CIDRs of the auth proxy. Identity headers from "
          "other peers are refused and audited. Default: none.");
ABSL_FLAG(std::string, auth_proxy_client_names, kDefaults.auth_proxy_client_names,
          "Auth-proxy mode: comma-separated names (subject CN or DNS SAN) of the auth proxy's "
          "client certificate, verified against --tls_client_ca_http. Default: none.");

namespace {

namespace rt = podgate::runtime;

// After the drain deadline, how long the close frames of the sessions closed then may take to
// leave before the process exits.
constexpr absl::Duration kCloseGrace = absl::Seconds(2);

// Waits until `deadline` for edge's calls to exec, policy and audit to finish, then cancels
// the rest and waits up to kCloseGrace more; true when none is left.
bool EndBackendCalls(absl::Time deadline) {
  if (podgate::edge::WaitBackendCallsDone(deadline)) {
    return true;
  }
  podgate::log::Warn("cancelling backend calls still in flight",
                     {{"calls", podgate::edge::LiveBackendCalls()}});
  podgate::edge::CancelBackendCalls();
  return podgate::edge::WaitBackendCallsDone(absl::Now() + kCloseGrace);
}

std::shared_ptr<grpc::Channel> Channel(const rt::PeerFlags& peer,
                                       rt::ChannelCalls calls = rt::ChannelCalls::kDefault) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = rt::CreatePeerChannel(peer, calls);
  if (!channel.ok()) {
    rt::ExitWithError(std::string(channel.status().message()));
  }
  return *channel;
}

podgate::edge::EdgeFlags ReadFlags() {
  podgate::edge::EdgeFlags f;
  f.http_address = absl::GetFlag(FLAGS_http_address);
  f.tls_cert_http = absl::GetFlag(FLAGS_tls_cert_http);
  f.tls_key_http = absl::GetFlag(FLAGS_tls_key_http);
  f.behind_tls_proxy = absl::GetFlag(FLAGS_behind_tls_proxy);
  f.http_threads = absl::GetFlag(FLAGS_http_threads);
  f.allowed_origins = absl::GetFlag(FLAGS_allowed_origins);
  f.allow_missing_origin = absl::GetFlag(FLAGS_allow_missing_origin);
  f.web_root = absl::GetFlag(FLAGS_web_root);
  f.exec_lanes = absl::GetFlag(FLAGS_exec_lanes);
  f.auditor_groups = absl::GetFlag(FLAGS_auditor_groups);
  f.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  f.messages_per_second = absl::GetFlag(FLAGS_messages_per_second);
  f.message_burst = absl::GetFlag(FLAGS_message_burst);
  f.user_messages_per_second = absl::GetFlag(FLAGS_user_messages_per_second);
  f.user_message_burst = absl::GetFlag(FLAGS_user_message_burst);
  f.max_connections = absl::GetFlag(FLAGS_max_connections);
  f.max_connections_per_user = absl::GetFlag(FLAGS_max_connections_per_user);
  f.max_audit_follows = absl::GetFlag(FLAGS_max_audit_follows);
  f.max_audit_follows_per_user = absl::GetFlag(FLAGS_max_audit_follows_per_user);
  f.ws_idle_timeout = absl::GetFlag(FLAGS_ws_idle_timeout);
  f.ws_keepalive = absl::GetFlag(FLAGS_ws_keepalive);
  f.auth_timeout = absl::GetFlag(FLAGS_auth_timeout);
  f.max_unauthenticated_connections = absl::GetFlag(FLAGS_max_unauthenticated_connections);
  f.max_connections_per_source = absl::GetFlag(FLAGS_max_connections_per_source);
  f.max_unauthenticated_per_source = absl::GetFlag(FLAGS_max_unauthenticated_per_source);
  f.http_idle_timeout = absl::GetFlag(FLAGS_http_idle_timeout);
  f.http_unauthenticated_idle_timeout = absl::GetFlag(FLAGS_http_unauthenticated_idle_timeout);
  f.auth_audit_queue = absl::GetFlag(FLAGS_auth_audit_queue);
  f.backend_timeout = absl::GetFlag(FLAGS_backend_timeout);
  f.write_buffer_bytes = absl::GetFlag(FLAGS_write_buffer_bytes);
  f.oidc_issuer = absl::GetFlag(FLAGS_oidc_issuer);
  f.oidc_client_id = absl::GetFlag(FLAGS_oidc_client_id);
  f.oidc_client_secret_file = absl::GetFlag(FLAGS_oidc_client_secret_file);
  f.oidc_client_auth_method = absl::GetFlag(FLAGS_oidc_client_auth_method);
  f.oidc_scopes = absl::GetFlag(FLAGS_oidc_scopes);
  f.oidc_redirect_url = absl::GetFlag(FLAGS_oidc_redirect_url);
  f.oidc_cookie_key_file = absl::GetFlag(FLAGS_oidc_cookie_key_file);
  f.oidc_provider_name = absl::GetFlag(FLAGS_oidc_provider_name);
  f.oidc_ca_file = absl::GetFlag(FLAGS_oidc_ca_file);
  f.oidc_timeout = absl::GetFlag(FLAGS_oidc_timeout);
  f.oidc_max_pending = absl::GetFlag(FLAGS_oidc_max_pending);
  f.oidc_session_lifetime = absl::GetFlag(FLAGS_oidc_session_lifetime);
  f.tls_client_ca_http = absl::GetFlag(FLAGS_tls_client_ca_http);
  f.trusted_proxies = absl::GetFlag(FLAGS_trusted_proxies);
  f.forwarded_header = absl::GetFlag(FLAGS_forwarded_header);
  f.auth_proxy_user_header = absl::GetFlag(FLAGS_auth_proxy_user_header);
  f.auth_proxy_groups_header = absl::GetFlag(FLAGS_auth_proxy_groups_header);
  f.auth_proxy_cidrs = absl::GetFlag(FLAGS_auth_proxy_cidrs);
  f.auth_proxy_client_names = absl::GetFlag(FLAGS_auth_proxy_client_names);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  rt::PrepareServiceProcess();
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
  absl::StatusOr<podgate::edge::EdgeConfig> config =
      podgate::edge::EdgeConfigFromFlags(ReadFlags());
  if (!config.ok()) {
    rt::ExitWithError(std::string(config.status().message()));
  }
  podgate::http::ServerOptions& http_options = config->http;
  // One descriptor per connection: the soft limit goes up to the hard one (descriptors.h).
  if (absl::StatusOr<podgate::edge::DescriptorLimit> fds = podgate::edge::RaiseDescriptorLimit();
      !fds.ok()) {
    podgate::log::Warn("descriptor limit not raised", {{"error", fds.status().ToString()}});
  } else if (const uint64_t needed = podgate::edge::DescriptorsNeeded(http_options.max_connections);
             fds->soft < needed) {
    podgate::log::Warn(
        "descriptor limit below the connection caps: raise the hard limit (ulimit "
        "-Hn, the container runtime's default) or lower --max_connections",
        {{"limit", static_cast<int64_t>(fds->soft)}, {"needed", static_cast<int64_t>(needed)}});
  } else if (fds->soft != fds->before) {
    podgate::log::Info("descriptor limit raised", {{"from", static_cast<int64_t>(fds->before)},
                                                   {"to", static_cast<int64_t>(fds->soft)}});
  }

  podgate::edge::EdgeMetrics metrics(*registry);
  podgate::edge::Limits limits(config->limits);
  // Outlives the I/O context: sessions leave it from their destructors.
  podgate::edge::SessionRegistry sessions;
  podgate::edge::EdgeContext context;
  context.options = config->edge;
  context.exec_channel = Channel(rt::ExecPeerFlags());
  context.policy_channel = Channel(rt::PolicyPeerFlags());
  context.audit_channel = Channel(rt::AuditPeerFlags());
  auto exec_stub = podgate::exec::v1::ExecService::NewStub(context.exec_channel);
  // A second connection to exec, for the Session streams: one per browser session, each held
  // for the session's life, without the retry filter's per-call memory.
  auto exec_session_stub = podgate::exec::v1::ExecService::NewStub(
      Channel(rt::ExecPeerFlags(), rt::ChannelCalls::kSessionStreams));
  auto policy_stub = podgate::policy::v1::PolicyService::NewStub(context.policy_channel);
  auto audit_stub = podgate::audit::v1::AuditService::NewStub(context.audit_channel);
  context.verifier = &*verifier;
  context.exec = exec_stub.get();
  context.exec_sessions = exec_session_stub.get();
  // The browser sessions' lanes, on that connection (outlives the sessions: destroyed after the
  // I/O context's last handler, with the stubs).
  std::unique_ptr<podgate::edge::ExecLanes> exec_lanes;
  if (config->exec_lanes) {
    exec_lanes = std::make_unique<podgate::edge::ExecLanes>(exec_session_stub.get());
    context.exec_lanes = exec_lanes.get();
  }
  context.policy = policy_stub.get();
  context.audit = audit_stub.get();
  context.limits = &limits;
  context.metrics = &metrics;
  context.sessions = &sessions;
  podgate::edge::AuthFailureAudit auth_audit(context.audit_channel, config->auth_audit_queue,
                                             &metrics);
  context.auth_audit = &auth_audit;
  // Single sign-on; outlives the HTTP server (reset after its threads are joined, before `io`
  // is destroyed).
  std::unique_ptr<podgate::edge::Sso> sso;
  if (config->sso.has_value()) {
    absl::StatusOr<std::unique_ptr<podgate::edge::Sso>> started =
        podgate::edge::Sso::Start(*config->sso, &context);
    if (!started.ok()) {
      rt::ExitWithError(std::string(started.status().message()));
    }
    sso = *std::move(started);
    context.sso = sso.get();
  }
  const podgate::edge::ProxyTrust proxies(config->proxies, registry.get());
  context.proxies = &proxies;
  if (!config->proxies.trusted_proxies.empty()) {
    // A trusted proxy is not one source: edge counts the clients it forwards (WebSockets).
    http_options.per_source_exempt = [&proxies](const std::string& address) {
      return proxies.IsTrustedProxy(address);
    };
  }

  // Refusals at accept are counted; a backoff of the accept loop (out of descriptors) is
  // counted and logged at most every 10s.
  podgate::edge::ReportServerEvents(&metrics, http_options);

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
      [router, &proxies](const podgate::http::Request& request,
                         const podgate::http::RequestContext& peer, bool is_upgrade) {
        // Behind a trusted proxy, the client's address is the request's source from here on.
        return router->Route(request, proxies.ClientContext(request, peer), is_upgrade);
      });
  if (!http_server.ok()) {
    rt::ExitWithError(absl::StrCat("--http_address: ", http_server.status().message()));
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < config->http_threads; ++i) {
    threads.emplace_back([&io] { io.run(); });
  }
  int status = rt::RunServer(defaults, {}, registry, [&](rt::Server& server) {
    podgate::log::Info("http serving", {{"http_port", static_cast<int>((*http_server)->port())},
                                        {"tls", config->tls},
                                        {"web_root", context.options.web_root}});
    // New connections are refused and /readyz turns 503; every browser session is told to
    // end (at once, or after its running command) with a close frame.
    server.AddDrainHook([&] {
      (*http_server)->Stop();
      podgate::edge::CancelAuditFollowStreams();  // live audit streams end now
      const int64_t open = static_cast<int64_t>(sessions.size());
      sessions.BeginDrain();
      // Logged once every session's drain is queued on its strand: whatever a browser sends
      // after this line is handled after it.
      podgate::log::Info("draining browser sessions", {{"sessions", open}});
    });
    server.AddDrainWait([&](absl::Time deadline) {
      if (!podgate::edge::WaitAuditFollowStreamsEnded(deadline)) {
        podgate::log::Warn("drain deadline: audit streams still open", {});
      }
      if (!sessions.WaitEmpty(deadline)) {
        podgate::log::Warn("drain deadline: closing the remaining browser sessions",
                           {{"sessions", static_cast<int64_t>(sessions.size())}});
        sessions.CloseAll();
        sessions.WaitEmpty(absl::Now() + kCloseGrace);
      }
      // The sessions' lanes have ended: their stream to exec ends too (exec answers it once
      // its lanes are gone).
      if (exec_lanes != nullptr) {
        exec_lanes->CloseStreams();
      }
      // A closed session's exec stream may still wait for exec's status, an HTTP request for
      // its backend's answer, and their last events post to `io`: wait for them (exec answers
      // a closed stream at once), then cancel what is left.
      EndBackendCalls(std::min(deadline, absl::Now() + kCloseGrace));
    });
  });
  // A /readyz probe still polling answers while `io` runs (its connection belongs to `io`).
  if (!podgate::edge::WaitReadyProbesDone(absl::Now() + kCloseGrace)) {
    podgate::log::Error("readiness probes still in flight at exit", {});
    std::_Exit(status == 0 ? 1 : status);
  }
  // The answers those and the backend calls handed over are written before `io` stops.
  if (!(*http_server)->WaitAnswersWritten(absl::Now() + kCloseGrace)) {
    podgate::log::Warn("closing connections whose answer is not written",
                       {{"answers", (*http_server)->stats().answers_pending.load()}});
  }
  (*http_server)->Stop();
  work.reset();
  io.stop();
  for (std::thread& t : threads) {
    t.join();
  }
  // Normally none is left (the drain waited); `io` must outlive every call's last event.
  if (!EndBackendCalls(absl::Now())) {
    podgate::log::Error("backend calls still in flight at exit",
                        {{"calls", podgate::edge::LiveBackendCalls()}});
    std::_Exit(status == 0 ? 1 : status);
  }
  // The sign-in workers' calls hold HTTP connections too: joined while `io` still exists.
  sso.reset();
  return status;
}
