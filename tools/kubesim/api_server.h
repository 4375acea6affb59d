// kubesim's API server: the slice of the Kubernetes REST API that kubectl, the official Python
// client and podgate's exec service use — discovery, namespaces, pods (with label and field
// selectors and kubectl's Table format) and `pods/exec` over WebSocket — with bearer-token and
// client-certificate authentication, impersonation (impersonation.h), authorization by an access
// list and RBAC (rbac.h), an audit log (audit_log.h), and errors as `Status` objects with the
// real reasons and codes.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "audit_log.h"
#include "cluster.h"
#include "exec_session.h"
#include "http/server.h"
#include "k8s/exec_protocol.h"

namespace podgate::kubesim {

struct ApiServerOptions {
  // Exec sub-protocols this server accepts, e.g. only v4 to act as an older cluster.
  std::vector<k8s::ExecProtocol> protocols = {k8s::ExecProtocol::kV5, k8s::ExecProtocol::kV4,
                                              k8s::ExecProtocol::kV1};
  size_t max_execs = 64;
  std::string state_dir;       // container working directories live under it
  std::string server_address;  // "127.0.0.1:port", reported by /api
  // Where to append the audit log (audit.k8s.io/v1 Events, JSON lines); empty: none.
  std::string audit_log_path;
};

class ApiServer {
 public:
  ApiServer(Cluster cluster, std::vector<TokenUser> tokens, ApiServerOptions options);

  // Opens the audit log when options name one.
  absl::Status OpenAuditLog();
  // Creates each container's private working directory (owned by its uid).
  absl::Status PrepareContainers();
  // Starts the containers' main processes (e.g. a JVM), reaped on `io`'s threads.
  absl::Status StartMainProcesses(boost::asio::io_context& io);

  http::RouteResult Route(const http::Request& request, const http::RequestContext& context,
                          bool is_upgrade);

  void set_server_address(std::string address) { options_.server_address = std::move(address); }
  // The HTTP server's counters, exported on /metrics with kubesim's own.
  void set_http_stats(const http::ServerStats* stats) { http_stats_ = stats; }
  // Prometheus text exposition of kubesim's counters (served on /metrics, unauthenticated).
  std::string MetricsText();
  const std::shared_ptr<ProcessTable>& processes() const { return processes_; }
  std::string ContainerDir(const Pod& pod, const Container& container) const;

  std::atomic<uint64_t> unauthorized{0};
  std::atomic<uint64_t> forbidden{0};

 private:
  // Everything after the unauthenticated endpoints: authentication, impersonation,
  // authorization and the API; fills `record` for the audit log as it goes.
  http::RouteResult Serve(const http::Request& request, const http::RequestContext& context,
                          bool is_upgrade, const std::string& path, const std::string& query,
                          AuditRecord& record);

  Cluster cluster_;
  std::unique_ptr<AuditLog> audit_log_;
  std::vector<TokenUser> tokens_;
  ApiServerOptions options_;
  std::shared_ptr<ProcessTable> processes_;
  const http::ServerStats* http_stats_ = nullptr;
};

}  // namespace podgate::kubesim
