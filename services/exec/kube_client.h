// The real KubeApi: HTTPS to a Kubernetes API server for pods, and the WebSocket channel
// protocol (v5.channel.k8s.io, then v4) for `pods/exec`.
//
// Configuration comes from a kubeconfig file (current context: server, CA file or data, bearer
// token or client certificate) or from the pod's service account (in-cluster). The
// service-account token is re-read every minute, since bound tokens rotate. Insecure TLS
// (insecure-skip-tls-verify) is refused unless explicitly allowed.
//
// Exec streams are asynchronous (no thread per stream) on the client's I/O threads; REST calls
// are short and run on a small fixed pool.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "exec/kube.h"
#include "http/async_client.h"
#include "http/client.h"
#include "http/client_connection.h"

namespace podgate::exec {

struct KubeConfig {
  std::string host;
  uint16_t port = 443;
  // The server URL's path, e.g. "/k8s/clusters/c-1" behind a proxy; every API path goes under
  // it. Empty for a server at the root.
  std::string path_prefix;
  // tls-server-name: the name to verify the server certificate against (and SNI); empty: host.
  std::string server_name;
  // The CA as a file, or (certificate-authority-data) as PEM held in memory.
  std::string ca_file;
  std::string ca_pem;
  bool insecure_skip_verify = false;
  // A bearer token, or a file to (re-)read it from.
  std::string token;
  std::string token_file;
  // The client certificate and key as files, or (client-*-data) as PEM held in memory.
  std::string client_cert_file;
  std::string client_key_file;
  std::string client_cert_pem;
  std::string client_key_pem;
  // Where the config came from, for messages.
  std::string source;
  // The kubeconfig context it was read from; empty in-cluster.
  std::string context;

  // `path` ("/api/v1/...") under the server's path prefix.
  std::string ApiPath(const std::string& path) const { return path_prefix + path; }
};

// Reads a kubeconfig's `context` (empty: its current context). `*-data` fields stay in memory
// (nothing is written to disk). Honours the server URL's path and tls-server-name; refuses
// proxy-url, credential plugins and insecure-skip-tls-verify (unless `allow_insecure`) with a
// message naming them.
absl::StatusOr<KubeConfig> LoadKubeconfig(const std::string& path, bool allow_insecure,
                                          const std::string& context = "");

// The contexts a kubeconfig names, in file order, and its current context ("" when unset).
struct KubeconfigContexts {
  std::vector<std::string> names;
  std::string current;
};
absl::StatusOr<KubeconfigContexts> ListKubeconfigContexts(const std::string& path);

// The in-cluster configuration: KUBERNETES_SERVICE_HOST/PORT (IPv6 hosts included) and the
// service account's token and CA under `sa_dir` (normally
// /var/run/secrets/kubernetes.io/serviceaccount).
absl::StatusOr<KubeConfig> InClusterConfig(const std::string& sa_dir);

struct KubeClientOptions {
  // Deadline for REST calls and for the exec upgrade.
  absl::Duration timeout = absl::Seconds(10);
  // I/O threads for exec streams, and threads for REST calls.
  int io_threads = 2;
  int rest_threads = 4;
  // Sub-protocols offered, most preferred first.
  std::vector<std::string> protocols = {"v5.channel.k8s.io", "v4.channel.k8s.io"};
  // Connections made ahead for exec upgrades (http::SpareConnections); 0: none.
  size_t spare_connections = 2;
  absl::Duration spare_idle = absl::Seconds(20);
  // Told of each spare connection event (metrics), on an I/O or calling thread.
  std::function<void(http::SpareConnections::Event)> on_spare_event;
};

// The exec streams a KubeClient started that have not ended yet (an exec stream ends with its
// observer's OnExit, after which the client holds nothing of it). Shared with each stream, so
// a stream that outlives the client still counts down safely.
class OpenStreams {
 public:
  void Add();
  void Done();
  int Count();
  // Waits until no stream is open, or `deadline`; true when none is.
  bool WaitForNone(absl::Time deadline);

 private:
  absl::Mutex mu_;
  int open_ ABSL_GUARDED_BY(mu_) = 0;
};

class KubeClient final : public KubeApi {
 public:
  KubeClient(KubeConfig config, KubeClientOptions options = {});
  ~KubeClient() override;

  void GetPod(const KubeIdentity& as, const std::string& namespace_name, const std::string& name,
              std::function<void(absl::StatusOr<PodView>)> done) override;
  void ListPods(const KubeIdentity& as, const std::string& namespace_name,
                std::function<void(absl::StatusOr<std::vector<PodView>>)> done) override;
  void ReviewAccess(const KubeIdentity& as, const AccessQuery& query,
                    std::function<void(absl::StatusOr<bool>)> done) override;
  std::unique_ptr<ExecHandle> Exec(const ExecSpec& spec,
                                   std::shared_ptr<ExecObserver> observer) override;
  // GET /readyz as exec itself.
  void CheckHealth(std::function<void(absl::Status)> done) override;

  // The bearer token to send now (re-read from token_file at most once a minute).
  std::string Token();

  // Waits until every exec stream this client started has ended (its observer's OnExit has
  // returned), or `deadline`; true when none is left. The destructor stops the I/O threads
  // wherever the streams are: a stream still open then holds its connection (and its
  // observer) forever, so whoever owns what the observers use waits here first.
  bool WaitForStreams(absl::Time deadline) { return streams_->WaitForNone(deadline); }
  int open_streams() { return streams_->Count(); }
  // Lets every REST call already asked for (a pod read, a review, a health check) finish with its
  // callback, and takes no more: a callback still running on a REST thread uses what its caller
  // owns (the hub's caches), so main joins here before destroying those. Bounded by the REST
  // deadline.
  void FinishRest() { rest_pool_.join(); }
  // REST connections opened so far (the calls reuse them: kept alive between calls).
  uint64_t rest_connections_opened() const { return rest_connections_opened_.load(); }

 private:
  http::ClientOptions ConnectionOptions();
  absl::StatusOr<std::string> Get(const KubeIdentity& as, const std::string& target);
  // One REST exchange on a kept-alive connection to the API server: an idle one when there is
  // one, else a new one; put back for the next call once the exchange succeeded. A TLS
  // handshake per call (a session open reads its pod) cost more CPU than the rest of the open
  // together. `headers` go with this request only (the token, impersonation).
  absl::StatusOr<http::ClientResponse> Rest(
      const std::string& method, const std::string& target, const std::string& body,
      std::vector<std::pair<std::string, std::string>> headers);

  const KubeConfig config_;
  const KubeClientOptions options_;
  boost::asio::io_context io_;
  // After io_: closed before it goes.
  std::unique_ptr<http::SpareConnections> spares_;
  std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::vector<std::thread> io_threads_;
  boost::asio::thread_pool rest_pool_;
  const std::shared_ptr<OpenStreams> streams_ = std::make_shared<OpenStreams>();

  // Idle REST connections (at most rest_threads), with when each was opened: one older than
  // kRestConnectionLifetime is closed instead of reused, so rotated TLS files are picked up.
  struct IdleConnection {
    std::unique_ptr<http::ClientConnection> connection;
    absl::Time opened;
  };
  absl::Mutex rest_mu_;
  std::vector<IdleConnection> idle_rest_ ABSL_GUARDED_BY(rest_mu_);
  std::atomic<uint64_t> rest_connections_opened_{0};

  // The TLS context of exec streams, shared by them and rebuilt (the CA and client certificate
  // read again) once older than kRestConnectionLifetime: reading the files and building a
  // context per command cost about a millisecond of each command's round trip.
  absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> StreamTlsContext(
      const http::ClientOptions& options);
  absl::Mutex tls_mu_;
  std::shared_ptr<boost::asio::ssl::context> stream_tls_ ABSL_GUARDED_BY(tls_mu_);
  absl::Time stream_tls_made_ ABSL_GUARDED_BY(tls_mu_) = absl::InfinitePast();

  absl::Mutex token_mu_;
  std::string token_ ABSL_GUARDED_BY(token_mu_);
  absl::Time token_read_ ABSL_GUARDED_BY(token_mu_) = absl::InfinitePast();
};

// Turns a pod JSON object (as the API returns it) into a PodView.
absl::StatusOr<PodView> ParsePod(const std::string& json);

// Maps an API server HTTP status (with its Status body) to a status with the API's message:
// 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 NOT_FOUND, 409 ABORTED, 400 and 422
// FAILED_PRECONDITION, 429 and 5xx UNAVAILABLE. When the request impersonated a user
// (`impersonating`), a 403 is either the impersonation refused to exec itself
// (FAILED_PRECONDITION saying to grant it) or RBAC refusing the user (KubernetesRbacDenial).
absl::Status ApiError(int http_status, const std::string& body, const std::string& what,
                      bool impersonating = false);

// Appends the impersonation headers for `as` (none when it is empty): Impersonate-User, one
// Impersonate-Group per group, Impersonate-Extra-<key> per extra. INVALID_ARGUMENT for a value
// with a control character or a key outside [a-z0-9-]+ (nothing is sent then).
absl::Status ImpersonationHeaders(const KubeIdentity& as,
                                  std::vector<std::pair<std::string, std::string>>* headers);

}  // namespace podgate::exec
