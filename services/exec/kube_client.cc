#include "exec/kube_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "http/async_client.h"
#include "k8s/exec_protocol.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace podgate::exec {
namespace {

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(absl::StrCat("cannot read '", path, "'"));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Splits "https://host:port[/path]" (IPv6 in brackets) into host, port and path prefix.
absl::Status ParseServer(const std::string& server, KubeConfig* config) {
  absl::string_view rest = server;
  if (!absl::ConsumePrefix(&rest, "https://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("server '", server, "' is not https:// (plaintext API access is refused)"));
  }
  if (rest.find_first_of("?#@") != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("server '", server,
                     "' has a query, a fragment or user information; give scheme, host, "
                     "port and path only"));
  }
  if (const size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    absl::string_view path = rest.substr(slash);
    while (absl::ConsumeSuffix(&path, "/")) {
    }
    for (char c : path) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '/' || c == '-' || c == '_' || c == '.' || c == '~';
      if (!ok) {
        return absl::InvalidArgumentError(absl::StrCat(
            "server '", server, "' has a path with characters other than [A-Za-z0-9/._~-]"));
      }
    }
    if (absl::StrContains(path, "/../") || absl::EndsWith(path, "/..") ||
        absl::StrContains(path, "//")) {
      return absl::InvalidArgumentError(
          absl::StrCat("server '", server, "' has a path with '..' or '//'"));
    }
    config->path_prefix = std::string(path);
    rest = rest.substr(0, slash);
  }
  std::string host;
  absl::string_view port_text;
  if (absl::ConsumePrefix(&rest, "[")) {
    const size_t close = rest.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("server '", server, "' has a bad IPv6 host"));
    }
    host = std::string(rest.substr(0, close));
    rest.remove_prefix(close + 1);
    if (absl::ConsumePrefix(&rest, ":")) {
      port_text = rest;
    }
  } else {
    const size_t colon = rest.rfind(':');
    host = std::string(rest.substr(0, colon));
    if (colon != absl::string_view::npos) {
      port_text = rest.substr(colon + 1);
    }
  }
  uint32_t port = 443;
  if (!port_text.empty() && (!absl::SimpleAtoi(port_text, &port) || port == 0 || port > 65535)) {
    return absl::InvalidArgumentError(absl::StrCat("server '", server, "' has a bad port"));
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("server '", server, "' has no host"));
  }
  config->host = host;
  config->port = static_cast<uint16_t>(port);
  return absl::OkStatus();
}

// The `field` of the entry called `name` in a kubeconfig list; a null node when absent.
YAML::Node Named(const YAML::Node& list, const std::string& name, const char* field) {
  if (list && list.IsSequence()) {
    for (const YAML::Node& item : list) {
      if (item["name"] && item["name"].as<std::string>() == name && item[field]) {
        return item[field];
      }
    }
  }
  return YAML::Node();
}

std::string Str(const YAML::Node& node, const char* key) {
  return node && node[key] && node[key].IsScalar() ? node[key].as<std::string>() : "";
}

absl::StatusOr<KubeConfig> ParseKubeconfig(const YAML::Node& doc, const std::string& path,
                                           bool allow_insecure, const std::string& context_wanted) {
  const std::string where = absl::StrCat("kubeconfig '", path, "'");
  const std::string context_name =
      context_wanted.empty() ? Str(doc, "current-context") : context_wanted;
  if (context_name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": no current-context"));
  }
  const YAML::Node context = Named(doc["contexts"], context_name, "context");
  if (!context.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": context '", context_name, "' not found"));
  }
  const YAML::Node cluster = Named(doc["clusters"], Str(context, "cluster"), "cluster");
  const YAML::Node user = Named(doc["users"], Str(context, "user"), "user");
  if (!cluster.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": cluster '", Str(context, "cluster"), "' not found"));
  }
  KubeConfig config;
  config.source = path;
  config.context = context_name;
  if (absl::Status s = ParseServer(Str(cluster, "server"), &config); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", s.message()));
  }
  if (cluster["proxy-url"]) {
    return absl::InvalidArgumentError(
        absl::StrCat(where,
                     ": proxy-url is not supported; reach the API server directly (or through a "
                     "transparent proxy the server URL names)"));
  }
  config.server_name = Str(cluster, "tls-server-name");
  if (cluster["insecure-skip-tls-verify"] && cluster["insecure-skip-tls-verify"].as<bool>()) {
    if (!allow_insecure) {
      return absl::InvalidArgumentError(
          absl::StrCat(where,
                       ": insecure-skip-tls-verify is set; refused (pass --kube_allow_insecure to "
                       "accept an unverified API server)"));
    }
    config.insecure_skip_verify = true;
  }
  const std::string base_dir =
      path.substr(0, path.rfind('/') == std::string::npos ? 0 : path.rfind('/'));
  auto resolve = [&](const std::string& file) {
    return file.empty() || file[0] == '/' || base_dir.empty() ? file
                                                              : absl::StrCat(base_dir, "/", file);
  };
  // A file path (resolved against the kubeconfig's folder) or base64 data decoded into memory.
  auto file_or_data = [&](const YAML::Node& node, const char* file_key, const char* data_key,
                          std::string* file, std::string* pem) -> absl::Status {
    *file = resolve(Str(node, file_key));
    if (!file->empty()) {
      return absl::OkStatus();
    }
    const std::string data = Str(node, data_key);
    if (data.empty()) {
      return absl::OkStatus();
    }
    // Standard base64 as kubectl writes it; Abseil also takes missing padding and line breaks.
    if (!absl::Base64Unescape(data, pem)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", data_key, " is not base64"));
    }
    return absl::OkStatus();
  };
  if (absl::Status s = file_or_data(cluster, "certificate-authority", "certificate-authority-data",
                                    &config.ca_file, &config.ca_pem);
      !s.ok()) {
    return s;
  }
  if (user.IsMap()) {
    config.token = Str(user, "token");
    config.token_file = resolve(Str(user, "tokenFile"));
    if (absl::Status s = file_or_data(user, "client-certificate", "client-certificate-data",
                                      &config.client_cert_file, &config.client_cert_pem);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = file_or_data(user, "client-key", "client-key-data",
                                      &config.client_key_file, &config.client_key_pem);
        !s.ok()) {
      return s;
    }
    if (config.client_cert_file.empty() != config.client_key_file.empty() ||
        config.client_cert_pem.empty() != config.client_key_pem.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where,
                       ": a client certificate needs its key, in the same form (both "
                       "files or both data)"));
    }
    if (user["exec"] || user["auth-provider"]) {
      return absl::InvalidArgumentError(
          absl::StrCat(where,
                       ": exec and auth-provider credential plugins are not supported; use a token "
                       "or a client certificate"));
    }
  }
  if (config.token.empty() && config.token_file.empty() && config.client_cert_file.empty() &&
      config.client_cert_pem.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": the user has no token and no client certificate"));
  }
  return config;
}

}  // namespace

absl::StatusOr<KubeConfig> LoadKubeconfig(const std::string& path, bool allow_insecure,
                                          const std::string& context) {
  // yaml-cpp reports a wrong type (a list where a name belongs, "maybe" for a bool) by
  // throwing; every such case becomes the same clear error naming the file.
  try {
    const YAML::Node doc = YAML::LoadFile(path);
    return ParseKubeconfig(doc, path, allow_insecure, context);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("kubeconfig '", path, "': ", e.what()));
  }
}

absl::StatusOr<KubeconfigContexts> ListKubeconfigContexts(const std::string& path) {
  try {
    const YAML::Node doc = YAML::LoadFile(path);
    KubeconfigContexts out;
    out.current = Str(doc, "current-context");
    const YAML::Node contexts = doc["contexts"];
    if (contexts && !contexts.IsSequence()) {
      return absl::InvalidArgumentError(
          absl::StrCat("kubeconfig '", path, "': contexts is not a list"));
    }
    if (contexts) {
      for (const YAML::Node& item : contexts) {
        const std::string name = Str(item, "name");
        if (name.empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat("kubeconfig '", path, "': a context without a name"));
        }
        out.names.push_back(name);
      }
    }
    return out;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("kubeconfig '", path, "': ", e.what()));
  }
}

absl::StatusOr<KubeConfig> InClusterConfig(const std::string& sa_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr || *host == '\0') {
    return absl::FailedPreconditionError(
        "not in a cluster (KUBERNETES_SERVICE_HOST/PORT unset); pass --kubeconfig");
  }
  KubeConfig config;
  config.source = "in-cluster";
  const std::string h(host);
  const std::string server = absl::StrContains(h, ':') ? absl::StrCat("https://[", h, "]:", port)
                                                       : absl::StrCat("https://", h, ":", port);
  if (absl::Status s = ParseServer(server, &config); !s.ok()) {
    return s;
  }
  config.token_file = absl::StrCat(sa_dir, "/token");
  config.ca_file = absl::StrCat(sa_dir, "/ca.crt");
  if (access(config.token_file.c_str(), R_OK) != 0 || access(config.ca_file.c_str(), R_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the service account token or CA under ", sa_dir, " is not readable"));
  }
  return config;
}

absl::Status ApiError(int http_status, const std::string& body, const std::string& what,
                      bool impersonating) {
  std::string message = absl::StrCat(what, ": HTTP ", http_status);
  absl::StatusOr<k8s::ApiStatus> status = k8s::ParseApiStatus(body);
  if (status.ok() && !status->message.empty()) {
    message = absl::StrCat(what, ": ", status->message);
  } else if (!body.empty() && body.size() < 512) {
    message = absl::StrCat(what, ": HTTP ", http_status, ": ", body);
  }
  switch (http_status) {
    case 401:
      return absl::UnauthenticatedError(message);
    case 403:
      if (!impersonating) {
        return absl::PermissionDeniedError(message);
      }
      // The impersonation filter's refusal names exec's own identity ("cannot impersonate
      // resource ..."): the cluster does not let exec act for users. A configuration error,
      // never a reason to act as exec itself instead.
      if (status.ok() && absl::StrContains(status->message, " cannot impersonate resource ")) {
        return absl::FailedPreconditionError(absl::StrCat(
            what, ": exec's Kubernetes identity may not impersonate this user (", status->message,
            "); grant it the impersonate verb (docs/deploy.md, Impersonation)"));
      }
      return KubernetesRbacDenial(absl::StrCat("Kubernetes RBAC refused it for you: ",
                                               status.ok() ? status->message : message));
    case 404:
      return absl::NotFoundError(message);
    case 409:
      return absl::AbortedError(message);
    case 400:
    case 422:
      return absl::FailedPreconditionError(message);
    default:
      return http_status >= 500 || http_status == 429 ? absl::UnavailableError(message)
                                                      : absl::UnknownError(message);
  }
}

// runAsUser and runAsNonRoot of a securityContext; a field of another JSON type is left unset
// (the root guard's probe then decides).
SecurityContextView ParseSecurityContext(const nlohmann::json& parent) {
  SecurityContextView out;
  auto it = parent.find("securityContext");
  if (it == parent.end() || !it->is_object()) {
    return out;
  }
  auto user = it->find("runAsUser");
  if (user != it->end() && user->is_number_integer()) {
    out.run_as_user = user->get<int64_t>();
  }
  auto non_root = it->find("runAsNonRoot");
  if (non_root != it->end() && non_root->is_boolean()) {
    out.run_as_non_root = non_root->get<bool>();
  }
  return out;
}

absl::StatusOr<PodView> ParsePodObject(const nlohmann::json& pod) {
  if (!pod.is_object() || !pod.contains("metadata")) {
    return absl::InvalidArgumentError("not a pod object");
  }
  PodView view;
  const nlohmann::json& meta = pod["metadata"];
  view.name = meta.value("name", "");
  view.namespace_name = meta.value("namespace", "");
  view.uid = meta.value("uid", "");
  if (meta.contains("labels") && meta["labels"].is_object()) {
    for (const auto& [k, v] : meta["labels"].items()) {
      if (v.is_string()) {
        view.labels[k] = v.get<std::string>();
      }
    }
  }
  if (meta.contains("annotations") && meta["annotations"].is_object()) {
    view.default_container_annotation =
        meta["annotations"].value("kubectl.kubernetes.io/default-container", "");
  }
  if (pod.contains("status") && pod["status"].is_object()) {
    view.phase = pod["status"].value("phase", "");
  }
  if (pod.contains("spec") && pod["spec"].contains("containers") &&
      pod["spec"]["containers"].is_array()) {
    for (const nlohmann::json& c : pod["spec"]["containers"]) {
      if (c.is_object()) {
        view.containers.push_back(
            {c.value("name", ""), c.value("image", ""), ParseSecurityContext(c)});
      }
    }
  }
  if (pod.contains("spec") && pod["spec"].is_object()) {
    view.security = ParseSecurityContext(pod["spec"]);
  }
  return view;
}

absl::StatusOr<PodView> ParsePod(const std::string& json) {
  nlohmann::json doc = nlohmann::json::parse(json, nullptr, false);
  if (doc.is_discarded()) {
    return absl::InvalidArgumentError("the API server sent a pod that is not JSON");
  }
  return ParsePodObject(doc);
}

// --- exec streams ----------------------------------------------------------------------------

namespace {

// Bridges one WebSocket to an ExecObserver: decodes channel frames, applies backpressure,
// turns the status channel into the exit code.
class ExecBridge final : public http::WebSocketHandler,
                         public std::enable_shared_from_this<ExecBridge> {
 public:
  ExecBridge(std::shared_ptr<ExecObserver> observer, std::shared_ptr<OpenStreams> streams,
             bool impersonating)
      : observer_(std::move(observer)),
        streams_(std::move(streams)),
        impersonating_(impersonating) {
    streams_->Add();
  }
  ~ExecBridge() override {
    if (observer_ != nullptr) {
      streams_->Done();  // never ended (its connection went with a stopped client)
    }
  }

  void OnHandshake(const http::HandshakeResult& result) {
    std::vector<std::string> pending;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!result.status.ok()) {
        finished_ = true;
      } else {
        protocol_name_ = result.subprotocol;
        std::optional<k8s::ExecProtocol> p = k8s::ProtocolFromName(result.subprotocol);
        protocol_ = p.value_or(k8s::ExecProtocol::kV1);
      }
    }
    if (!result.status.ok()) {
      ExecResult r;
      r.status = result.status;
      if (result.refusal.status != 0) {
        r.status =
            ApiError(result.refusal.status, result.refusal.body, "exec refused", impersonating_);
      }
      Exit(std::move(r));
      return;
    }
    if (result.subprotocol != k8s::kProtocolV5 && result.subprotocol != k8s::kProtocolV4) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = absl::FailedPreconditionError(absl::StrCat(
          "the API server does not speak v5.channel.k8s.io or v4.channel.k8s.io (chose '",
          result.subprotocol, "'); exit codes would be lost, so the stream is refused"));
    }
    if (std::shared_ptr<ExecObserver> observer = Observer()) {
      observer->OnStarted(result.subprotocol);
    }
  }

  void OnOpen(std::shared_ptr<http::WebSocketConnection> connection) override {
    std::vector<std::string> pending;
    bool close_now;
    {
      std::lock_guard<std::mutex> lock(mu_);
      connection_ = connection;
      pending.swap(pending_);
      close_now = close_requested_ || !error_.ok();
    }
    bool writable = true;
    for (std::string& frame : pending) {
      writable = connection->Send(std::move(frame), true);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_bytes_ = 0;
    }
    if (close_now) {
      connection->Close(1000, "");
    } else if (writable) {
      OnWritable();
    }
  }

  void OnWritable() override {
    if (std::shared_ptr<ExecObserver> observer = Observer()) {
      observer->OnWritable();
    }
  }

  void OnMessage(std::string_view data, bool binary) override {
    if (data.empty()) {
      return;
    }
    std::shared_ptr<http::WebSocketConnection> conn;
    {
      std::lock_guard<std::mutex> lock(mu_);
      conn = connection_;
    }
    absl::StatusOr<k8s::Frame> frame = k8s::DecodeFrame(data, protocol_);
    if (!frame.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (error_.ok()) {
        error_ = absl::InternalError(
            absl::StrCat("bad frame from the API server: ", frame.status().message()));
      }
      if (connection_ != nullptr) {
        connection_->Close(1002, "protocol error");
      }
      return;
    }
    if (frame->channel == k8s::kStdout || frame->channel == k8s::kStderr) {
      TakeOutput(conn, frame->channel, frame->payload);
      return;
    }
    // Output held for the frames after it goes before anything else the stream says.
    if (!held_.empty()) {
      Deliver(conn, held_channel_, TakeHeld());
    }
    if (frame->channel == k8s::kStatus) {
      absl::StatusOr<int> code = k8s::ParseExitStatus(frame->payload);
      std::lock_guard<std::mutex> lock(mu_);
      if (code.ok()) {
        exit_code_ = *code;
      } else if (error_.ok()) {
        error_ = code.status();
      }
    }
    (void)binary;
  }

  void OnClose(std::string reason) override {
    if (!held_.empty()) {
      // Nothing more will be read: what is held is the stream's last output.
      if (std::shared_ptr<ExecObserver> observer = Observer()) {
        observer->OnOutput(held_channel_, TakeHeld(), [] {});
      }
    }
    ExecResult result;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) {
        return;
      }
      finished_ = true;
      result.protocol = protocol_name_;
      if (!error_.ok()) {
        result.status = error_;
      } else if (exit_code_.has_value()) {
        result.exit_code = *exit_code_;
      } else {
        result.status = absl::UnavailableError(
            absl::StrCat("the exec stream ended without an exit status (", reason, ")"));
      }
      connection_.reset();
    }
    Exit(std::move(result));
  }

  // Returns false while the frames not yet written are above the high watermark.
  bool Send(std::string frame) {
    StreamHold hold(streams_);  // before `conn`: released after it
    std::shared_ptr<http::WebSocketConnection> conn;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_ || close_requested_) {
        return true;  // dropped: nothing will drain, so nobody should wait for it
      }
      if (connection_ == nullptr) {
        pending_bytes_ += frame.size();
        pending_.push_back(std::move(frame));
        return pending_bytes_ <= kPendingHighWatermark;
      }
      conn = connection_;
      hold.Take();
    }
    return conn->Send(std::move(frame), true);
  }

  void CloseStdin() {
    bool v5;
    {
      std::lock_guard<std::mutex> lock(mu_);
      v5 = protocol_ == k8s::ExecProtocol::kV5 || connection_ == nullptr;
    }
    if (v5) {
      (void)Send(k8s::EncodeFrame(k8s::kClose, std::string(1, '\0')));
    }
  }

  void Close() {
    StreamHold hold(streams_);  // before `conn`: released after it
    std::shared_ptr<http::WebSocketConnection> conn;
    {
      std::lock_guard<std::mutex> lock(mu_);
      close_requested_ = true;
      conn = connection_;
      if (conn != nullptr) {
        hold.Take();
      }
    }
    if (conn != nullptr) {
      conn->Close(1000, "");
    }
  }

 private:
  // Keeps the open-stream count above zero while a thread that is not one of the I/O threads
  // (a gRPC callback, the timer thread) uses the connection: that thread's copies of the
  // connection and of its strand must be gone before exec's shutdown, which waits for the
  // count, destroys the I/O context. Taken under mu_ while connection_ is set, so the count
  // never passes through zero in between (the stream's own count ends only after OnClose has
  // cleared connection_).
  class StreamHold {
   public:
    explicit StreamHold(const std::shared_ptr<OpenStreams>& streams) : streams_(streams) {}
    ~StreamHold() {
      if (held_) {
        streams_->Done();
      }
    }
    StreamHold(const StreamHold&) = delete;
    StreamHold& operator=(const StreamHold&) = delete;
    void Take() {
      streams_->Add();
      held_ = true;
    }

   private:
    const std::shared_ptr<OpenStreams>& streams_;
    bool held_ = false;
  };

  // Frames queued before the WebSocket is open count like a connection's queue.
  static constexpr size_t kPendingHighWatermark = 256 * 1024;

  // Output is delivered in chunks of up to kHoldBytes of one channel. A frame read while the
  // next one already waits on the connection (InputWaiting) is held and goes out with the
  // frames after it: a bulk transfer costs the observer, and the gRPC stream behind it, one
  // chunk per 256 KiB instead of one per API server frame (32 KiB). A frame with nothing
  // waiting behind it is delivered at once, so output that trickles is not delayed. What is
  // held is delivered before any other frame's effect, and when the stream closes. All of this
  // runs on the connection's strand.
  static constexpr size_t kHoldBytes = 256 * 1024;

  // `data` points into the connection's read buffer: it is copied once, into held_, which is
  // what goes to the observer (a chunk that will be held gets its full size at once, so the
  // frames appended to it never move it).
  void TakeOutput(const std::shared_ptr<http::WebSocketConnection>& conn, int channel,
                  std::string_view data) {
    if (conn == nullptr) {
      return;
    }
    const bool more = conn->InputWaiting();
    if (!held_.empty() && (held_channel_ != channel || held_.size() + data.size() > kHoldBytes)) {
      // What is held goes first. This frame follows once that has been taken: at once then if
      // nothing waits behind it, else with the frames that do.
      std::string first = TakeHeld();
      const int first_channel = std::exchange(held_channel_, channel);
      Hold(data, more);
      Deliver(conn, first_channel, std::move(first), /*then_held=*/!more);
      return;
    }
    if (held_.empty()) {
      held_channel_ = channel;
    }
    Hold(data, more);
    if (held_.empty() || (more && held_.size() < kHoldBytes)) {
      return;  // nothing to hand on, or the next frame is already here: read it first
    }
    Deliver(conn, held_channel_, TakeHeld());
  }

  // What is held, handed on. A hold cut short (by the other stream, the exit status or the
  // end) gives back the rest of its 256 KiB, so a chunk queued towards the client costs its
  // size, not the hold's.
  std::string TakeHeld() {
    std::string out = std::exchange(held_, {});
    if (out.capacity() > 2 * out.size()) {
      out.shrink_to_fit();
    }
    return out;
  }

  void Hold(std::string_view data, bool more) {
    if (held_.empty() && more) {
      held_.reserve(kHoldBytes);
    }
    held_.append(data);
  }

  // Reads nothing more from the API server until the observer has taken `data`: that is how a
  // slow consumer slows the pod down. Then the held frame follows if `then_held`, else reading
  // resumes.
  void Deliver(const std::shared_ptr<http::WebSocketConnection>& conn, int channel,
               std::string data, bool then_held = false) {
    conn->PauseReading();
    std::shared_ptr<ExecObserver> observer = Observer();
    if (observer == nullptr) {
      return;
    }
    std::weak_ptr<ExecBridge> weak_self = weak_from_this();
    std::weak_ptr<http::WebSocketConnection> weak = conn;
    observer->OnOutput(channel, std::move(data), [weak_self, weak, then_held] {
      std::shared_ptr<http::WebSocketConnection> c = weak.lock();
      if (c == nullptr) {
        return;
      }
      std::shared_ptr<ExecBridge> self = weak_self.lock();
      if (!then_held || self == nullptr) {
        c->ResumeReading();
        return;
      }
      // The held frame goes next, from the strand's queue: never from inside the observer
      // (which may call this holding its own lock, as exec's Session does).
      boost::asio::post(c->executor(), [self, c] { self->DeliverHeld(c); });
    });
  }

  void DeliverHeld(const std::shared_ptr<http::WebSocketConnection>& conn) {
    if (held_.empty()) {
      conn->ResumeReading();
      return;
    }
    Deliver(conn, held_channel_, TakeHeld());
  }

  // The observer until its OnExit has returned; null after.
  std::shared_ptr<ExecObserver> Observer() {
    std::lock_guard<std::mutex> lock(mu_);
    return observer_;
  }

  // The last call to the observer, which the bridge then releases.
  void Exit(ExecResult result) {
    std::shared_ptr<ExecObserver> observer = Observer();
    if (observer == nullptr) {
      return;
    }
    observer->OnExit(std::move(result));
    {
      std::lock_guard<std::mutex> lock(mu_);
      observer_.reset();
    }
    streams_->Done();
  }

  std::shared_ptr<ExecObserver> observer_;
  const std::shared_ptr<OpenStreams> streams_;
  const bool impersonating_;
  size_t pending_bytes_ = 0;
  std::mutex mu_;
  std::shared_ptr<http::WebSocketConnection> connection_;
  std::vector<std::string> pending_;
  k8s::ExecProtocol protocol_ = k8s::ExecProtocol::kV5;
  std::string protocol_name_;
  std::optional<int> exit_code_;
  absl::Status error_;
  bool close_requested_ = false;
  bool finished_ = false;
  // On the strand only.
  std::string held_;
  int held_channel_ = 0;
};

class ExecStream final : public ExecHandle {
 public:
  explicit ExecStream(std::shared_ptr<ExecBridge> bridge) : bridge_(std::move(bridge)) {}
  ~ExecStream() override { bridge_->Close(); }
  // Large writes go as several frames: API servers (and kubesim's --max_frame_bytes) cap the
  // size of one message.
  bool WriteStdin(std::string data) override {
    constexpr size_t kMaxFrame = 32 * 1024;
    bool writable = true;
    for (size_t at = 0; at < data.size(); at += kMaxFrame) {
      writable = bridge_->Send(
          k8s::EncodeFrame(k8s::kStdin, std::string_view(data).substr(at, kMaxFrame)));
    }
    return writable;
  }
  void CloseStdin() override { bridge_->CloseStdin(); }
  void Resize(uint32_t width, uint32_t height) override {
    k8s::TerminalSize size;
    size.width = static_cast<uint16_t>(std::min<uint32_t>(width, 65535));
    size.height = static_cast<uint16_t>(std::min<uint32_t>(height, 65535));
    (void)bridge_->Send(k8s::EncodeFrame(k8s::kResize, k8s::EncodeResize(size)));
  }
  void Close() override { bridge_->Close(); }

 private:
  std::shared_ptr<ExecBridge> bridge_;
};

}  // namespace

void OpenStreams::Add() {
  absl::MutexLock lock(&mu_);
  ++open_;
}

void OpenStreams::Done() {
  absl::MutexLock lock(&mu_);
  --open_;
}

int OpenStreams::Count() {
  absl::MutexLock lock(&mu_);
  return open_;
}

bool OpenStreams::WaitForNone(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto none = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return open_ == 0; };
  mu_.AwaitWithDeadline(absl::Condition(&none), deadline);
  return open_ == 0;
}

KubeClient::KubeClient(KubeConfig config, KubeClientOptions options)
    : config_(std::move(config)),
      options_(std::move(options)),
      work_(std::make_unique<
            boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
          io_.get_executor())),
      rest_pool_(static_cast<size_t>(std::max(1, options_.rest_threads))) {
  if (options_.spare_connections > 0) {
    spares_ = std::make_unique<http::SpareConnections>(
        io_, http::SpareConnections::Options{options_.spare_connections, options_.spare_idle},
        options_.on_spare_event);
  }
  for (int i = 0; i < std::max(1, options_.io_threads); ++i) {
    io_threads_.emplace_back([this] { io_.run(); });
  }
}

KubeClient::~KubeClient() {
  spares_.reset();  // closes the spares on their strands while the I/O threads still run
  work_.reset();
  io_.stop();
  for (std::thread& t : io_threads_) {
    t.join();
  }
  rest_pool_.join();
}

std::string KubeClient::Token() {
  if (config_.token_file.empty()) {
    return config_.token;
  }
  absl::MutexLock lock(&token_mu_);
  if (absl::Now() - token_read_ > absl::Minutes(1)) {
    absl::StatusOr<std::string> token = ReadSmallFile(config_.token_file);
    if (token.ok()) {
      token_ = std::string(absl::StripAsciiWhitespace(*token));
      token_read_ = absl::Now();
    }
  }
  return token_;
}

namespace {

// How long a REST connection is reused: a newer one picks up a rotated CA or client certificate.
constexpr absl::Duration kRestConnectionLifetime = absl::Minutes(1);

// Refuses what cannot be a header value (a control character would end the header).
absl::Status CheckHeaderValue(const std::string& value, const char* what) {
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("the ", what, " to impersonate contains a control character"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ImpersonationHeaders(const KubeIdentity& as,
                                  std::vector<std::pair<std::string, std::string>>* headers) {
  if (as.empty()) {
    return absl::OkStatus();
  }
  if (absl::Status s = CheckHeaderValue(as.user, "user"); !s.ok()) {
    return s;
  }
  headers->emplace_back("Impersonate-User", as.user);
  if (!as.uid.empty()) {
    if (absl::Status s = CheckHeaderValue(as.uid, "uid"); !s.ok()) {
      return s;
    }
    headers->emplace_back("Impersonate-Uid", as.uid);
  }
  for (const std::string& g : as.groups) {
    if (absl::Status s = CheckHeaderValue(g, "group"); !s.ok()) {
      return s;
    }
    headers->emplace_back("Impersonate-Group", g);
  }
  for (const auto& [key, value] : as.extra) {
    // A key is a header name token: lower-case letters, digits and '-' here (the API server
    // lower-cases keys; anything else would need percent-encoding).
    if (key.empty() || !std::all_of(key.begin(), key.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
        })) {
      return absl::InvalidArgumentError(
          absl::StrCat("impersonation extra key \"", key, "\" is not [a-z0-9-]+"));
    }
    if (absl::Status s = CheckHeaderValue(value, "extra value"); !s.ok()) {
      return s;
    }
    headers->emplace_back(absl::StrCat("Impersonate-Extra-", key), value);
  }
  return absl::OkStatus();
}

http::ClientOptions KubeClient::ConnectionOptions() {
  http::ClientOptions o;
  o.host = config_.host;
  o.port = config_.port;
  o.tls = true;
  o.ca_file = config_.ca_file;
  o.ca_pem = config_.ca_pem;
  o.server_name = config_.server_name;
  o.insecure_skip_verify = config_.insecure_skip_verify;
  o.client_cert_file = config_.client_cert_file;
  o.client_key_file = config_.client_key_file;
  o.client_cert_pem = config_.client_cert_pem;
  o.client_key_pem = config_.client_key_pem;
  o.timeout = options_.timeout;
  const std::string token = Token();
  if (!token.empty()) {
    o.headers.emplace_back("Authorization", absl::StrCat("Bearer ", token));
  }
  return o;
}

absl::StatusOr<http::ClientResponse> KubeClient::Rest(
    const std::string& method, const std::string& target, const std::string& body,
    std::vector<std::pair<std::string, std::string>> headers) {
  http::ClientOptions options = ConnectionOptions();
  // The connection carries no header of its own: the token (re-read every minute) and the
  // identity go with each request.
  headers.insert(headers.begin(), options.headers.begin(), options.headers.end());
  options.headers.clear();
  IdleConnection c;
  {
    absl::MutexLock lock(&rest_mu_);
    const absl::Time now = absl::Now();
    while (!idle_rest_.empty() && c.connection == nullptr) {
      IdleConnection last = std::move(idle_rest_.back());
      idle_rest_.pop_back();
      if (now - last.opened < kRestConnectionLifetime) {
        c = std::move(last);
      }
    }
  }
  if (c.connection == nullptr) {
    absl::StatusOr<std::unique_ptr<http::ClientConnection>> created =
        http::ClientConnection::Create(options);
    if (!created.ok()) {
      return created.status();
    }
    c = {*std::move(created), absl::Now()};
    ++rest_connections_opened_;
  }
  absl::StatusOr<http::ClientResponse> res = c.connection->Request(method, target, body, headers);
  if (res.ok()) {
    absl::MutexLock lock(&rest_mu_);
    if (idle_rest_.size() < static_cast<size_t>(std::max(1, options_.rest_threads))) {
      idle_rest_.push_back(std::move(c));
    }
  }
  return res;
}

absl::StatusOr<std::string> KubeClient::Get(const KubeIdentity& as, const std::string& target) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (absl::Status s = ImpersonationHeaders(as, &headers); !s.ok()) {
    return s;
  }
  absl::StatusOr<http::ClientResponse> res =
      Rest("GET", config_.ApiPath(target), "", std::move(headers));
  if (!res.ok()) {
    return absl::UnavailableError(absl::StrCat("Kubernetes API: ", res.status().message()));
  }
  if (res->status != 200) {
    return ApiError(res->status, res->body, absl::StrCat("GET ", target), !as.empty());
  }
  return res->body;
}

void KubeClient::CheckHealth(std::function<void(absl::Status)> done) {
  boost::asio::post(rest_pool_, [this, done = std::move(done)] {
    absl::StatusOr<std::string> body = Get(KubeIdentity{}, "/readyz");
    done(body.ok() ? absl::OkStatus() : body.status());
  });
}

void KubeClient::GetPod(const KubeIdentity& as, const std::string& namespace_name,
                        const std::string& name,
                        std::function<void(absl::StatusOr<PodView>)> done) {
  boost::asio::post(rest_pool_, [this, as, namespace_name, name, done = std::move(done)] {
    absl::StatusOr<std::string> body =
        Get(as, absl::StrCat("/api/v1/namespaces/", k8s::UrlEncode(namespace_name), "/pods/",
                             k8s::UrlEncode(name)));
    if (!body.ok()) {
      done(body.status());
      return;
    }
    done(ParsePod(*body));
  });
}

void KubeClient::ListPods(const KubeIdentity& as, const std::string& namespace_name,
                          std::function<void(absl::StatusOr<std::vector<PodView>>)> done) {
  boost::asio::post(rest_pool_, [this, as, namespace_name, done = std::move(done)] {
    const std::string target =
        namespace_name.empty() ? "/api/v1/pods?limit=500"
                               : absl::StrCat("/api/v1/namespaces/", k8s::UrlEncode(namespace_name),
                                              "/pods?limit=500");
    absl::StatusOr<std::string> body = Get(as, target);
    if (!body.ok()) {
      done(body.status());
      return;
    }
    nlohmann::json doc = nlohmann::json::parse(*body, nullptr, false);
    if (doc.is_discarded() || !doc.contains("items") || !doc["items"].is_array()) {
      done(absl::InternalError("the API server sent a pod list that is not a PodList"));
      return;
    }
    std::vector<PodView> pods;
    for (const nlohmann::json& item : doc["items"]) {
      absl::StatusOr<PodView> pod = ParsePodObject(item);
      if (pod.ok()) {
        pods.push_back(*std::move(pod));
      }
    }
    done(std::move(pods));
  });
}

void KubeClient::ReviewAccess(const KubeIdentity& as, const AccessQuery& query,
                              std::function<void(absl::StatusOr<bool>)> done) {
  boost::asio::post(rest_pool_, [this, as, query, done = std::move(done)] {
    nlohmann::json attrs = {{"verb", query.verb}, {"resource", query.resource}};
    for (const auto& [key, value] :
         {std::pair{"group", &query.group}, std::pair{"subresource", &query.subresource},
          std::pair{"namespace", &query.namespace_name}, std::pair{"name", &query.name}}) {
      if (!value->empty()) {
        attrs[key] = *value;
      }
    }
    const nlohmann::json review = {{"kind", "SelfSubjectAccessReview"},
                                   {"apiVersion", "authorization.k8s.io/v1"},
                                   {"spec", {{"resourceAttributes", attrs}}}};
    std::vector<std::pair<std::string, std::string>> headers;
    if (absl::Status s = ImpersonationHeaders(as, &headers); !s.ok()) {
      done(s);
      return;
    }
    headers.emplace_back("Content-Type", "application/json");
    const std::string target = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    absl::StatusOr<http::ClientResponse> res =
        Rest("POST", config_.ApiPath(target), review.dump(), std::move(headers));
    if (!res.ok()) {
      done(absl::UnavailableError(absl::StrCat("Kubernetes API: ", res.status().message())));
      return;
    }
    if (res->status != 201 && res->status != 200) {
      done(ApiError(res->status, res->body, absl::StrCat("POST ", target), !as.empty()));
      return;
    }
    nlohmann::json answer = nlohmann::json::parse(res->body, nullptr, false);
    if (answer.is_discarded() || !answer.contains("status") || !answer["status"].is_object() ||
        !answer["status"].contains("allowed") || !answer["status"]["allowed"].is_boolean()) {
      done(absl::InternalError("the API server answered an access review without status.allowed"));
      return;
    }
    done(answer["status"]["allowed"].get<bool>());
  });
}

absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> KubeClient::StreamTlsContext(
    const http::ClientOptions& options) {
  absl::MutexLock lock(&tls_mu_);
  const absl::Time now = absl::Now();
  if (stream_tls_ == nullptr || now - stream_tls_made_ >= kRestConnectionLifetime) {
    absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> made =
        http::MakeSharedClientTlsContext(options);
    if (!made.ok()) {
      return made.status();  // the files are checked again on the next stream
    }
    stream_tls_ = *std::move(made);
    stream_tls_made_ = now;
  }
  return stream_tls_;
}

std::unique_ptr<ExecHandle> KubeClient::Exec(const ExecSpec& spec,
                                             std::shared_ptr<ExecObserver> observer) {
  k8s::ExecOptions query;
  query.command = spec.argv;
  query.container = spec.container;
  query.stdin = spec.stdin;
  query.stdout = true;
  query.stderr = !spec.tty;
  query.tty = spec.tty;
  const std::string target = config_.ApiPath(
      absl::StrCat("/api/v1/namespaces/", k8s::UrlEncode(spec.namespace_name), "/pods/",
                   k8s::UrlEncode(spec.pod), "/exec?", k8s::EncodeExecQuery(query)));
  auto bridge = std::make_shared<ExecBridge>(std::move(observer), streams_, !spec.as.empty());
  auto handle = std::make_unique<ExecStream>(bridge);
  if (spec.tty && spec.width > 0 && spec.height > 0) {
    handle->Resize(spec.width, spec.height);
  }
  http::AsyncClientOptions options;
  options.connection = ConnectionOptions();
  absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> tls =
      StreamTlsContext(options.connection);
  if (!tls.ok()) {
    boost::asio::post(io_, [bridge, s = tls.status()] {
      bridge->OnHandshake(http::HandshakeResult{s, "", {}});
    });
    return handle;
  }
  options.tls_context = *std::move(tls);
  options.spares = spares_.get();
  if (absl::Status s = ImpersonationHeaders(spec.as, &options.connection.headers); !s.ok()) {
    // Nothing is sent: the stream ends with the reason, on an I/O thread as any failure does.
    boost::asio::post(io_, [bridge, s] { bridge->OnHandshake(http::HandshakeResult{s, "", {}}); });
    return handle;
  }
  http::ConnectWebSocket(
      io_, options, target, options_.protocols, bridge,
      [bridge](const http::HandshakeResult& result) { bridge->OnHandshake(result); });
  return handle;
}

}  // namespace podgate::exec
