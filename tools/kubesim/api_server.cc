#include "api_server.h"

#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "access_review.h"
#include "impersonation.h"
#include "runtime/log.h"

namespace podgate::kubesim {
namespace {

namespace bhttp = boost::beast::http;
using nlohmann::json;

std::string Rfc3339Now() {
  std::time_t now = std::time(nullptr);
  char buf[32];
  std::tm tm;
  gmtime_r(&now, &tm);
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

http::Response JsonResponse(const http::Request& req, int code, const json& body) {
  return http::MakeResponse(req, static_cast<bhttp::status>(code), "application/json", body.dump());
}

http::RouteResult Reply(http::Response res) {
  http::RouteResult r;
  r.response = std::move(res);
  return r;
}

http::RouteResult StatusReply(const http::Request& req, k8s::ApiStatus status) {
  return Reply(http::MakeResponse(req, static_cast<bhttp::status>(status.code), "application/json",
                                  k8s::ApiStatusJson(status)));
}

http::RouteResult NotFound(const http::Request& req, const std::string& kind,
                           const std::string& name) {
  return StatusReply(
      req, {404, "NotFound", absl::StrCat(kind, " \"", name, "\" not found"), name, kind});
}

http::RouteResult BadRequest(const http::Request& req, const std::string& message) {
  return StatusReply(req, {400, "BadRequest", message, "", ""});
}

// A label selector of equality requirements: a=b, a==b, a!=b, a, !a (set-based `in` is not
// needed by podgate and is rejected clearly).
absl::StatusOr<std::function<bool(const std::map<std::string, std::string>&)>> ParseLabelSelector(
    const std::string& text) {
  struct Req {
    std::string key;
    std::string value;
    enum { kEq, kNe, kExists, kNotExists } op;
  };
  std::vector<Req> reqs;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::string p(absl::StripAsciiWhitespace(part));
    Req r;
    size_t pos;
    if ((pos = p.find("!=")) != std::string::npos) {
      r = {p.substr(0, pos), p.substr(pos + 2), Req::kNe};
    } else if ((pos = p.find("==")) != std::string::npos) {
      r = {p.substr(0, pos), p.substr(pos + 2), Req::kEq};
    } else if ((pos = p.find('=')) != std::string::npos) {
      r = {p.substr(0, pos), p.substr(pos + 1), Req::kEq};
    } else if (!p.empty() && p[0] == '!') {
      r = {p.substr(1), "", Req::kNotExists};
    } else {
      r = {p, "", Req::kExists};
    }
    if (r.key.empty() || r.key.find_first_of(" ()") != std::string::npos ||
        r.value.find_first_of(" ()") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("unable to parse requirement: \"", p,
                                                     "\" (set-based selectors are not "
                                                     "supported)"));
    }
    reqs.push_back(std::move(r));
  }
  return [reqs](const std::map<std::string, std::string>& labels) {
    for (const Req& r : reqs) {
      auto it = labels.find(r.key);
      switch (r.op) {
        case Req::kEq:
          if (it == labels.end() || it->second != r.value) {
            return false;
          }
          break;
        case Req::kNe:
          if (it != labels.end() && it->second == r.value) {
            return false;
          }
          break;
        case Req::kExists:
          if (it == labels.end()) {
            return false;
          }
          break;
        case Req::kNotExists:
          if (it != labels.end()) {
            return false;
          }
          break;
      }
    }
    return true;
  };
}

// Field selectors the API server supports on pods that podgate and kubectl use.
absl::StatusOr<std::function<bool(const Pod&)>> ParseFieldSelector(const std::string& text) {
  std::vector<std::function<bool(const Pod&)>> preds;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::string p(part);
    bool negate = false;
    size_t pos = p.find("!=");
    std::string field;
    std::string value;
    if (pos != std::string::npos) {
      negate = true;
      field = p.substr(0, pos);
      value = p.substr(pos + 2);
    } else if ((pos = p.find("==")) != std::string::npos) {
      field = p.substr(0, pos);
      value = p.substr(pos + 2);
    } else if ((pos = p.find('=')) != std::string::npos) {
      field = p.substr(0, pos);
      value = p.substr(pos + 1);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid selector: '", p, "'; can't understand '", p, "'"));
    }
    std::function<std::string(const Pod&)> get;
    if (field == "metadata.name") {
      get = [](const Pod& pod) { return pod.name; };
    } else if (field == "metadata.namespace") {
      get = [](const Pod& pod) { return pod.namespace_name; };
    } else if (field == "status.phase") {
      get = [](const Pod& pod) { return pod.phase; };
    } else if (field == "spec.nodeName") {
      get = [](const Pod&) { return std::string("kubesim"); };
    } else {
      return absl::InvalidArgumentError(absl::StrCat("field label not supported: ", field));
    }
    preds.push_back([get, value, negate](const Pod& pod) { return (get(pod) == value) != negate; });
  }
  return [preds](const Pod& pod) {
    for (const auto& pred : preds) {
      if (!pred(pod)) {
        return false;
      }
    }
    return true;
  };
}

json SecurityContextJson(const DeclaredSecurityContext& sc) {
  json out = json::object();
  if (sc.run_as_user.has_value()) {
    out["runAsUser"] = *sc.run_as_user;
  }
  if (sc.run_as_non_root.has_value()) {
    out["runAsNonRoot"] = *sc.run_as_non_root;
  }
  return out;
}

json PodJson(const Pod& pod) {
  json containers = json::array();
  json statuses = json::array();
  bool running = pod.phase == "Running";
  for (const Container& c : pod.containers) {
    json env = json::array();
    for (const auto& [k, v] : c.env) {
      env.push_back({{"name", k}, {"value", v}});
    }
    json sc = c.root ? json{{"runAsUser", 0}} : json{{"runAsUser", c.uid}, {"runAsNonRoot", true}};
    if (c.security_context.has_value()) {
      sc = SecurityContextJson(*c.security_context);
    }
    json cj = {{"name", c.name},
               {"image", c.image},
               {"securityContext", sc},
               {"terminationMessagePath", "/dev/termination-log"},
               {"imagePullPolicy", "IfNotPresent"}};
    if (!env.empty()) {
      cj["env"] = env;
    }
    if (!c.command.empty()) {
      cj["command"] = c.command;
    }
    if (!c.working_dir.empty()) {
      cj["workingDir"] = c.working_dir;
    }
    containers.push_back(cj);
    json state = running ? json{{"running", {{"startedAt", pod.created}}}}
                 : pod.phase == "Pending"
                     ? json{{"waiting", {{"reason", "ContainerCreating"}}}}
                     : json{{"terminated",
                             {{"exitCode", pod.phase == "Succeeded" ? 0 : 1},
                              {"reason", pod.phase == "Succeeded" ? "Completed" : "Error"},
                              {"startedAt", pod.created},
                              {"finishedAt", pod.created}}}};
    statuses.push_back({{"name", c.name},
                        {"image", c.image},
                        {"imageID", ""},
                        {"containerID", absl::StrCat("kubesim://", pod.uid, "-", c.name)},
                        {"ready", running},
                        {"started", running},
                        {"restartCount", 0},
                        {"state", state}});
  }
  json metadata = {{"name", pod.name},
                   {"namespace", pod.namespace_name},
                   {"uid", pod.uid},
                   {"resourceVersion", "1"},
                   {"creationTimestamp", pod.created}};
  if (!pod.labels.empty()) {
    metadata["labels"] = pod.labels;
  }
  if (!pod.annotations.empty()) {
    metadata["annotations"] = pod.annotations;
  }
  json spec = {{"containers", containers},
               {"nodeName", "kubesim"},
               {"restartPolicy", "Always"},
               {"dnsPolicy", "ClusterFirst"}};
  if (pod.security_context.has_value()) {
    spec["securityContext"] = SecurityContextJson(*pod.security_context);
  }
  return {
      {"kind", "Pod"},
      {"apiVersion", "v1"},
      {"metadata", metadata},
      {"spec", spec},
      {"status",
       {{"phase", pod.phase},
        {"hostIP", "127.0.0.1"},
        {"podIP", "127.0.0.1"},
        {"startTime", pod.created},
        {"conditions", json::array({{{"type", "Ready"}, {"status", running ? "True" : "False"}}})},
        {"containerStatuses", statuses}}}};
}

json NamespaceJson(const Namespace& ns) {
  json metadata = {{"name", ns.name},
                   {"uid", absl::StrCat("ns-", ns.name)},
                   {"resourceVersion", "1"},
                   {"creationTimestamp", ns.created}};
  json labels = ns.labels;
  labels["kubernetes.io/metadata.name"] = ns.name;
  metadata["labels"] = labels;
  return {{"kind", "Namespace"},
          {"apiVersion", "v1"},
          {"metadata", metadata},
          {"spec", {{"finalizers", {"kubernetes"}}}},
          {"status", {{"phase", "Active"}}}};
}

std::string Age(const std::string& created) {
  std::tm tm = {};
  strptime(created.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  long secs = static_cast<long>(std::time(nullptr) - timegm(&tm));
  if (secs < 120) {
    return absl::StrCat(std::max(0L, secs), "s");
  }
  if (secs < 7200) {
    return absl::StrCat(secs / 60, "m");
  }
  if (secs < 172800) {
    return absl::StrCat(secs / 3600, "h");
  }
  return absl::StrCat(secs / 86400, "d");
}

// kubectl asks for server-side printing: a meta.k8s.io Table.
bool WantsTable(const http::Request& req) {
  auto it = req.find(bhttp::field::accept);
  return it != req.end() &&
         absl::StrContains(absl::string_view(it->value().data(), it->value().size()), "as=Table");
}

json Column(const std::string& name, const std::string& format = "") {
  return {
      {"name", name}, {"type", "string"}, {"format", format}, {"description", ""}, {"priority", 0}};
}

json PartialMetadata(const json& object) {
  return {{"kind", "PartialObjectMetadata"},
          {"apiVersion", "meta.k8s.io/v1"},
          {"metadata", object["metadata"]}};
}

json PodTable(const std::vector<const Pod*>& pods) {
  json rows = json::array();
  for (const Pod* pod : pods) {
    size_t ready = pod->phase == "Running" ? pod->containers.size() : 0;
    rows.push_back({{"cells",
                     {pod->name, absl::StrCat(ready, "/", pod->containers.size()), pod->phase, 0,
                      Age(pod->created)}},
                    {"object", PartialMetadata(PodJson(*pod))}});
  }
  return {{"kind", "Table"},
          {"apiVersion", "meta.k8s.io/v1"},
          {"metadata", {{"resourceVersion", "1"}}},
          {"columnDefinitions",
           {Column("Name", "name"),
            Column("Ready"),
            Column("Status"),
            {{"name", "Restarts"},
             {"type", "integer"},
             {"format", ""},
             {"description", ""},
             {"priority", 0}},
            Column("Age")}},
          {"rows", rows}};
}

json NamespaceTable(const std::vector<const Namespace*>& list) {
  json rows = json::array();
  for (const Namespace* ns : list) {
    rows.push_back({{"cells", {ns->name, "Active", Age(ns->created)}},
                    {"object", PartialMetadata(NamespaceJson(*ns))}});
  }
  return {{"kind", "Table"},
          {"apiVersion", "meta.k8s.io/v1"},
          {"metadata", {{"resourceVersion", "1"}}},
          {"columnDefinitions", {Column("Name", "name"), Column("Status"), Column("Age")}},
          {"rows", rows}};
}

json ApiResourceList() {
  auto resource = [](const char* name, const char* singular, bool namespaced, const char* kind,
                     std::vector<std::string> verbs, std::vector<std::string> short_names) {
    json r = {{"name", name},
              {"singularName", singular},
              {"namespaced", namespaced},
              {"kind", kind},
              {"verbs", verbs}};
    if (!short_names.empty()) {
      r["shortNames"] = short_names;
    }
    return r;
  };
  return {{"kind", "APIResourceList"},
          {"groupVersion", "v1"},
          {"resources",
           {resource("namespaces", "namespace", false, "Namespace", {"get", "list"}, {"ns"}),
            resource("pods", "pod", true, "Pod", {"get", "list"}, {"po"}),
            resource("pods/exec", "", true, "PodExecOptions", {"create", "get"}, {})}}};
}

const Container* FindContainer(const Pod& pod, const std::string& name) {
  for (const Container& c : pod.containers) {
    if (c.name == name) {
      return &c;
    }
  }
  return nullptr;
}

}  // namespace

ApiServer::ApiServer(Cluster cluster, std::vector<TokenUser> tokens, ApiServerOptions options)
    : cluster_(std::move(cluster)),
      tokens_(std::move(tokens)),
      options_(std::move(options)),
      processes_(std::make_shared<ProcessTable>(options_.max_execs)) {
  std::string now = Rfc3339Now();
  for (Namespace& ns : cluster_.namespaces) {
    ns.created = now;
  }
  for (Pod& pod : cluster_.pods) {
    pod.created = now;
  }
}

std::string ApiServer::ContainerDir(const Pod& pod, const Container& container) const {
  if (!container.working_dir.empty()) {
    return container.working_dir;
  }
  return absl::StrCat(options_.state_dir, "/containers/", pod.namespace_name, "/", pod.name, "/",
                      container.name);
}

absl::Status ApiServer::PrepareContainers() {
  for (const Pod& pod : cluster_.pods) {
    for (const Container& c : pod.containers) {
      std::string dir = ContainerDir(pod, c);
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      if (ec) {
        return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
      }
      if (c.working_dir.empty() && !c.root && CanSwitchUser()) {
        if (chown(dir.c_str(), static_cast<uid_t>(c.uid), static_cast<gid_t>(c.uid)) != 0) {
          return absl::InternalError(absl::StrCat("cannot chown ", dir));
        }
        // Parents must be traversable by the unprivileged uid.
        for (auto p = std::filesystem::path(dir).parent_path(); !p.empty() && p != "/";
             p = p.parent_path()) {
          struct stat st;
          if (stat(p.c_str(), &st) == 0) {
            chmod(p.c_str(), st.st_mode | S_IXOTH);
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ApiServer::OpenAuditLog() {
  if (options_.audit_log_path.empty()) {
    return absl::OkStatus();
  }
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(options_.audit_log_path);
  if (!log.ok()) {
    return log.status();
  }
  audit_log_ = *std::move(log);
  return absl::OkStatus();
}

namespace {

std::vector<std::pair<std::string, std::string>> ContainerEnv(const Pod& pod, const Container& c,
                                                              const std::string& dir, bool tty) {
  std::vector<std::pair<std::string, std::string>> env = {
      {"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
      {"HOSTNAME", pod.name},
      {"HOME", dir},
  };
  if (tty) {
    env.emplace_back("TERM", "xterm");
  }
  for (const auto& kv : c.env) {
    bool replaced = false;
    for (auto& existing : env) {
      if (existing.first == kv.first) {
        existing.second = kv.second;
        replaced = true;
      }
    }
    if (!replaced) {
      env.push_back(kv);
    }
  }
  return env;
}

// Watches a main process and reaps it when it exits.
void WatchMainProcess(boost::asio::io_context& io, pid_t pid, int pidfd,
                      std::shared_ptr<ProcessTable> table, std::string name) {
  auto desc = std::make_shared<boost::asio::posix::stream_descriptor>(io, pidfd);
  WaitForExit(
      *desc, pid,
      [desc, pid, table, name](int code) {
        table->Remove(pid);
        podgate::log::Info("main process exited", {{"container", name}, {"exit_code", code}});
      },
      &table->spurious_exit_wakeups);
}

}  // namespace

absl::Status ApiServer::StartMainProcesses(boost::asio::io_context& io) {
  for (const Pod& pod : cluster_.pods) {
    if (pod.phase != "Running") {
      continue;
    }
    for (const Container& c : pod.containers) {
      if (c.command.empty()) {
        continue;
      }
      std::string dir = ContainerDir(pod, c);
      ProcessSpec spec;
      spec.argv = c.command;
      spec.env = ContainerEnv(pod, c, dir, false);
      spec.working_dir = dir;
      spec.root = c.root;
      spec.uid = c.uid;
      spec.output_file = absl::StrCat(options_.state_dir, "/containers/", pod.namespace_name, "-",
                                      pod.name, "-", c.name, ".log");
      absl::StatusOr<Process> p = SpawnProcess(spec);
      if (!p.ok()) {
        return absl::InternalError(absl::StrCat("main process of ", pod.namespace_name, "/",
                                                pod.name, "/", c.name, ": ", p.status().message()));
      }
      processes_->Add(p->pid);
      std::string name = absl::StrCat(pod.namespace_name, "/", pod.name, "/", c.name);
      podgate::log::Info("main process started", {{"container", name}, {"pid", p->pid}});
      WatchMainProcess(io, p->pid, p->pidfd, processes_, name);
    }
  }
  return absl::OkStatus();
}

std::string ApiServer::MetricsText() {
  std::string out;
  auto metric = [&out](const char* name, const char* type, const char* help, uint64_t value) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name, " ",
                    value, "\n");
  };
  metric("podgate_kubesim_execs_started_total", "counter", "Exec processes started.",
         processes_->execs_started.load());
  metric("podgate_kubesim_execs_rejected_total", "counter",
         "Exec requests refused at the concurrency cap (429).", processes_->execs_rejected.load());
  metric("podgate_kubesim_execs_active", "gauge", "Exec slots in use (processes not yet reaped).",
         processes_->active_execs());
  metric("podgate_kubesim_exec_clients_gone_total", "counter",
         "Execs whose client closed the WebSocket before the process ended.",
         processes_->client_gone.load());
  metric("podgate_kubesim_exec_ignored_frames_total", "counter",
         "Client exec frames skipped as empty or malformed (as the API server skips them).",
         processes_->ignored_frames.load());
  metric("podgate_kubesim_spurious_exit_wakeups_total", "counter",
         "Wake-ups of a process's exit wait while it still ran (ignored: it is waited for again).",
         processes_->spurious_exit_wakeups.load());
  metric("podgate_kubesim_processes", "gauge", "Live child processes (execs and main processes).",
         processes_->live_processes());
  metric("podgate_kubesim_unauthorized_total", "counter", "Requests answered 401.",
         unauthorized.load());
  metric("podgate_kubesim_forbidden_total", "counter", "Requests answered 403.", forbidden.load());
  if (http_stats_ != nullptr) {
    metric("podgate_kubesim_http_requests_total", "counter", "HTTP requests parsed.",
           http_stats_->requests.load());
    metric("podgate_kubesim_http_bad_requests_total", "counter",
           "Requests rejected as malformed or over limits.", http_stats_->bad_requests.load());
    metric("podgate_kubesim_tls_handshake_failures_total", "counter", "Failed TLS handshakes.",
           http_stats_->tls_handshake_failures.load());
    metric("podgate_kubesim_connections", "gauge", "Open connections.",
           static_cast<uint64_t>(std::max<int64_t>(0, http_stats_->connections_open.load())));
    metric("podgate_kubesim_websocket_slow_peer_closes_total", "counter",
           "WebSocket connections dropped because the peer stopped reading.",
           http_stats_->websocket_slow_peer_closes.load());
  }
  return out;
}

http::RouteResult ApiServer::Route(const http::Request& req, const http::RequestContext& context,
                                   bool is_upgrade) {
  std::string target(req.target());
  std::string path = target.substr(0, target.find('?'));
  std::string query =
      target.find('?') == std::string::npos ? "" : target.substr(target.find('?') + 1);
  while (path.size() > 1 && path.back() == '/') {
    path.pop_back();
  }

  if (path == "/metrics") {
    return Reply(
        http::MakeResponse(req, bhttp::status::ok, "text/plain; version=0.0.4", MetricsText()));
  }
  if (path == "/healthz" || path == "/livez" || path == "/readyz") {
    return Reply(http::MakeResponse(req, bhttp::status::ok, "text/plain", "ok"));
  }
  if (path == "/version") {
    return Reply(JsonResponse(req, 200,
                              {{"major", "1"},
                               {"minor", "32"},
                               {"gitVersion", "v1.32.0-kubesim"},
                               {"gitCommit", "kubesim"},
                               {"gitTreeState", "clean"},
                               {"buildDate", "2026-01-01T00:00:00Z"},
                               {"goVersion", "go1.23.0"},
                               {"compiler", "gc"},
                               {"platform", "linux/amd64"}}));
  }

  AuditRecord record;
  record.request_uri = target;
  record.source_ip = context.remote_address.substr(0, context.remote_address.rfind(':'));
  if (auto ua = req.find(bhttp::field::user_agent); ua != req.end()) {
    record.user_agent = std::string(ua->value());
  }
  record.received = AuditTimestamp();
  record.verb = req.method() == bhttp::verb::post ? "create" : "get";
  http::RouteResult result = Serve(req, context, is_upgrade, path, query, record);
  if (audit_log_ != nullptr) {
    if (result.websocket != nullptr) {
      record.code = 101;
    } else if (result.response.has_value()) {
      record.code = static_cast<int>(result.response->result_int());
      if (record.code >= 300) {
        absl::StatusOr<k8s::ApiStatus> status = k8s::ParseApiStatus(result.response->body());
        if (status.ok()) {
          record.status_reason = status->reason;
          record.status_message = status->message;
        }
      }
    }
    audit_log_->Write(record);
  }
  return result;
}

http::RouteResult ApiServer::Serve(const http::Request& req, const http::RequestContext& context,
                                   bool is_upgrade, const std::string& path,
                                   const std::string& query, AuditRecord& record) {
  // Authentication: a bearer token, else a verified client certificate. Every authenticated
  // user is also in system:authenticated, as the API server adds it.
  std::optional<UserInfo> requestor;
  auto auth = req.find(bhttp::field::authorization);
  if (auth != req.end()) {
    std::string value(auth->value());
    if (absl::StartsWith(value, "Bearer ")) {
      std::string token = value.substr(7);
      for (const TokenUser& t : tokens_) {
        if (t.token.size() == token.size() &&
            CRYPTO_memcmp(t.token.data(), token.data(), token.size()) == 0) {
          requestor = UserInfo{t.user, t.uid, t.groups, {}};
        }
      }
    }
  } else if (!context.peer_common_name.empty()) {
    requestor = UserInfo{context.peer_common_name, "", {}, {}};
  }
  if (!requestor.has_value()) {
    ++unauthorized;
    return StatusReply(req, {401, "Unauthorized", "Unauthorized", "", ""});
  }
  requestor->groups.push_back("system:authenticated");
  record.user = requestor;

  // Impersonation (the API server's WithImpersonation filter): the caller needs `impersonate`
  // on everything it names; the request is then authorized as the impersonated identity.
  std::vector<std::pair<std::string, std::string>> headers;
  for (const auto& field : req) {
    headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  absl::StatusOr<ImpersonationRequest> impersonation = ParseImpersonationHeaders(headers);
  if (!impersonation.ok()) {
    return BadRequest(req, std::string(impersonation.status().message()));
  }
  UserInfo effective = *requestor;
  if (!impersonation->empty()) {
    ImpersonationResult as = Impersonate(cluster_, *requestor, *impersonation);
    if (!as.user.has_value()) {
      ++forbidden;
      record.attributes = as.denied;
      record.allowed = false;
      return StatusReply(req, {403, "Forbidden", ForbiddenMessage(requestor->name, as.denied),
                               as.denied.name, as.denied.resource});
    }
    effective = *as.user;
    record.impersonated_user = effective;
    podgate::log::Info("impersonating", {{"user", requestor->name}, {"as", effective.name}});
  }
  const std::string& user = effective.name;
  // The authorizer, for `effective`; the audit record keeps the last decision's attributes.
  auto allowed = [&](const std::string& verb, const std::string& resource, const std::string& ns,
                     const std::string& name) {
    Attributes a;
    a.verb = verb;
    a.resource = resource.substr(0, resource.find('/'));
    if (resource.find('/') != std::string::npos) {
      a.subresource = resource.substr(resource.find('/') + 1);
    }
    a.namespace_name = ns;
    a.name = name;
    record.attributes = a;
    record.allowed = cluster_.Authorize(effective, a);
    return record.allowed;
  };
  // The 403 for the decision `allowed` just made (its attributes are in the record).
  auto forbidden_reply = [&]() {
    ++forbidden;
    const Attributes& a = *record.attributes;
    return StatusReply(req, {403, "Forbidden", ForbiddenMessage(user, a), a.name, a.resource});
  };

  std::vector<std::string> parts = absl::StrSplit(path, '/', absl::SkipEmpty());
  bool exec = parts.size() == 7 && parts[0] == "api" && parts[1] == "v1" &&
              parts[2] == "namespaces" && parts[4] == "pods" && parts[6] == "exec";
  // authorization.k8s.io/v1 access reviews (POST): a self review is open to every
  // authenticated user (system:basic-user grants it), a SubjectAccessReview needs `create` on
  // subjectaccessreviews. Both answer for the impersonated identity when there is one.
  if (parts.size() == 4 && parts[0] == "apis" && parts[1] == "authorization.k8s.io" &&
      parts[2] == "v1" &&
      (parts[3] == "selfsubjectaccessreviews" || parts[3] == "subjectaccessreviews")) {
    const bool self = parts[3] == "selfsubjectaccessreviews";
    if (req.method() != bhttp::verb::post) {
      return StatusReply(
          req, {405, "MethodNotAllowed",
                "the server does not allow this method on the requested resource", "", ""});
    }
    Attributes a{"create", "authorization.k8s.io", parts[3], "", "", ""};
    record.attributes = a;
    record.allowed = self || cluster_.Authorize(effective, a);
    if (!record.allowed) {
      ++forbidden;
      return StatusReply(req, {403, "Forbidden", ForbiddenMessage(user, a), "", parts[3]});
    }
    std::string body = req.body();
    auto content_type = req.find(bhttp::field::content_type);
    if (content_type != req.end() &&
        std::string(content_type->value()).rfind("application/vnd.kubernetes.protobuf", 0) == 0) {
      absl::StatusOr<std::string> converted = AccessReviewProtobufToJson(body, self);
      if (!converted.ok()) {
        return BadRequest(req, std::string(converted.status().message()));
      }
      body = *std::move(converted);
    }
    absl::StatusOr<std::string> answer = AnswerAccessReview(cluster_, effective, self, body);
    if (!answer.ok()) {
      if (answer.status().code() == absl::StatusCode::kFailedPrecondition) {
        return StatusReply(req,
                           {422, "Invalid", std::string(answer.status().message()), "", parts[3]});
      }
      return BadRequest(req, std::string(answer.status().message()));
    }
    return Reply(
        http::MakeResponse(req, bhttp::status::created, "application/json", *std::move(answer)));
  }
  if (!exec && req.method() != bhttp::verb::get) {
    return StatusReply(req,
                       {405, "MethodNotAllowed",
                        "the server does not allow this method on the requested resource", "", ""});
  }
  if (path == "/api") {
    return Reply(JsonResponse(
        req, 200,
        {{"kind", "APIVersions"},
         {"versions", {"v1"}},
         {"serverAddressByClientCIDRs",
          {{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", options_.server_address}}}}}));
  }
  if (path == "/apis") {
    json version = {{"groupVersion", "authorization.k8s.io/v1"}, {"version", "v1"}};
    return Reply(JsonResponse(req, 200,
                              {{"kind", "APIGroupList"},
                               {"apiVersion", "v1"},
                               {"groups",
                                {{{"name", "authorization.k8s.io"},
                                  {"versions", {version}},
                                  {"preferredVersion", version}}}}}));
  }
  if (path == "/apis/authorization.k8s.io/v1") {
    auto review = [](const char* name, const char* kind) {
      return json{{"name", name},
                  {"singularName", ""},
                  {"namespaced", false},
                  {"kind", kind},
                  {"verbs", {"create"}}};
    };
    return Reply(JsonResponse(req, 200,
                              {{"kind", "APIResourceList"},
                               {"apiVersion", "v1"},
                               {"groupVersion", "authorization.k8s.io/v1"},
                               {"resources",
                                {review("selfsubjectaccessreviews", "SelfSubjectAccessReview"),
                                 review("subjectaccessreviews", "SubjectAccessReview")}}}));
  }
  if (path == "/api/v1") {
    return Reply(JsonResponse(req, 200, ApiResourceList()));
  }
  if (parts.size() < 3 || parts[0] != "api" || parts[1] != "v1") {
    return StatusReply(
        req, {404, "NotFound", "the server could not find the requested resource", "", ""});
  }

  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> params = k8s::ParseQuery(query);
  if (!params.ok()) {
    return BadRequest(req, std::string(params.status().message()));
  }
  std::string label_selector;
  std::string field_selector;
  for (const auto& [k, v] : *params) {
    if (k == "labelSelector") {
      label_selector = v;
    } else if (k == "fieldSelector") {
      field_selector = v;
    }
  }

  // /api/v1/namespaces[/{ns}]
  if (parts[2] == "namespaces" && parts.size() <= 4) {
    if (parts.size() == 3) {
      if (!allowed("list", "namespaces", "", "")) {
        return forbidden_reply();
      }
      std::vector<const Namespace*> list;
      for (const Namespace& ns : cluster_.namespaces) {
        list.push_back(&ns);
      }
      if (WantsTable(req)) {
        return Reply(JsonResponse(req, 200, NamespaceTable(list)));
      }
      json items = json::array();
      for (const Namespace* ns : list) {
        items.push_back(NamespaceJson(*ns));
      }
      return Reply(JsonResponse(req, 200,
                                {{"kind", "NamespaceList"},
                                 {"apiVersion", "v1"},
                                 {"metadata", {{"resourceVersion", "1"}}},
                                 {"items", items}}));
    }
    // A namespace's own name is its namespace, as the API server's request info has it.
    if (!allowed("get", "namespaces", parts[3], parts[3])) {
      return forbidden_reply();
    }
    const Namespace* ns = cluster_.FindNamespace(parts[3]);
    if (ns == nullptr) {
      return NotFound(req, "namespaces", parts[3]);
    }
    if (WantsTable(req)) {
      return Reply(JsonResponse(req, 200, NamespaceTable({ns})));
    }
    return Reply(JsonResponse(req, 200, NamespaceJson(*ns)));
  }

  // Pod lists: /api/v1/pods, /api/v1/namespaces/{ns}/pods
  bool all_namespaces = parts.size() == 3 && parts[2] == "pods";
  bool namespaced_list = parts.size() == 5 && parts[2] == "namespaces" && parts[4] == "pods";
  if (all_namespaces || namespaced_list) {
    std::string ns = namespaced_list ? parts[3] : "";
    if (!allowed("list", "pods", ns, "")) {
      return forbidden_reply();
    }
    auto labels = ParseLabelSelector(label_selector);
    if (!labels.ok()) {
      return BadRequest(req, std::string(labels.status().message()));
    }
    auto fields = ParseFieldSelector(field_selector);
    if (!fields.ok()) {
      return BadRequest(req, std::string(fields.status().message()));
    }
    std::vector<const Pod*> list;
    for (const Pod& pod : cluster_.pods) {
      if ((ns.empty() || pod.namespace_name == ns) && (*labels)(pod.labels) && (*fields)(pod)) {
        list.push_back(&pod);
      }
    }
    if (WantsTable(req)) {
      return Reply(JsonResponse(req, 200, PodTable(list)));
    }
    json items = json::array();
    for (const Pod* pod : list) {
      items.push_back(PodJson(*pod));
    }
    return Reply(JsonResponse(req, 200,
                              {{"kind", "PodList"},
                               {"apiVersion", "v1"},
                               {"metadata", {{"resourceVersion", "1"}}},
                               {"items", items}}));
  }

  if (parts.size() < 6 || parts[2] != "namespaces" || parts[4] != "pods" || parts.size() > 7 ||
      (parts.size() == 7 && !exec)) {
    return StatusReply(
        req, {404, "NotFound", "the server could not find the requested resource", "", ""});
  }
  const std::string& ns = parts[3];
  const std::string& name = parts[5];
  if (!exec) {
    if (!allowed("get", "pods", ns, name)) {
      return forbidden_reply();
    }
    const Pod* pod = cluster_.FindPod(ns, name);
    if (pod == nullptr) {
      return NotFound(req, "pods", name);
    }
    if (WantsTable(req)) {
      return Reply(JsonResponse(req, 200, PodTable({pod})));
    }
    return Reply(JsonResponse(req, 200, PodJson(*pod)));
  }

  // pods/exec: RBAC needs both get and create on pods/exec.
  for (const char* verb : {"create", "get"}) {
    if (!allowed(verb, "pods/exec", ns, name)) {
      return forbidden_reply();
    }
  }
  const Pod* pod = cluster_.FindPod(ns, name);
  if (pod == nullptr) {
    return NotFound(req, "pods", name);
  }
  absl::StatusOr<k8s::ExecOptions> options = k8s::ParseExecQuery(query);
  if (!options.ok()) {
    return BadRequest(req, std::string(options.status().message()));
  }
  if (!options->stdin && !options->stdout && !options->stderr) {
    return BadRequest(req, "you must specify at least 1 of stdin, stdout, stderr");
  }
  std::string container_name = options->container;
  if (container_name.empty()) {
    auto it = pod->annotations.find("kubectl.kubernetes.io/default-container");
    if (it != pod->annotations.end()) {
      container_name = it->second;
    } else if (pod->containers.size() == 1) {
      container_name = pod->containers[0].name;
    } else {
      std::vector<std::string> names;
      for (const Container& c : pod->containers) {
        names.push_back(c.name);
      }
      return BadRequest(req, absl::StrCat("a container name must be specified for pod ", name,
                                          ", choose one of: [", absl::StrJoin(names, " "), "]"));
    }
  }
  const Container* container = FindContainer(*pod, container_name);
  if (container == nullptr) {
    return BadRequest(req,
                      absl::StrCat("container ", container_name, " is not valid for pod ", name));
  }
  if (pod->phase != "Running") {
    return BadRequest(req, absl::StrCat("pod ", name, " is not running (phase ", pod->phase,
                                        "): unable to upgrade connection: container not found (\"",
                                        container_name, "\")"));
  }
  if (!is_upgrade) {
    return BadRequest(req, "Upgrade request required");
  }
  std::vector<std::string> offered;
  auto proto_header = req.find(bhttp::field::sec_websocket_protocol);
  if (proto_header != req.end()) {
    offered = k8s::SplitProtocolHeader(
        std::string_view(proto_header->value().data(), proto_header->value().size()));
  }
  std::optional<k8s::ExecProtocol> protocol;
  if (offered.empty()) {
    // No header: the API server falls back to the original binary protocol.
    for (k8s::ExecProtocol p : options_.protocols) {
      if (p == k8s::ExecProtocol::kV1) {
        protocol = p;
      }
    }
  } else {
    protocol = k8s::NegotiateProtocol(offered, options_.protocols);
  }
  if (!protocol.has_value()) {
    std::vector<std::string> supported;
    for (k8s::ExecProtocol p : options_.protocols) {
      supported.emplace_back(k8s::ProtocolName(p));
    }
    return BadRequest(req, absl::StrCat("unable to upgrade connection: unable to negotiate "
                                        "protocol: client supports [",
                                        absl::StrJoin(offered, " "), "], server accepts [",
                                        absl::StrJoin(supported, " "), "]"));
  }
  if (!processes_->TryReserveExec()) {
    return StatusReply(
        req, {429, "TooManyRequests",
              absl::StrCat("too many concurrent exec sessions (limit ", options_.max_execs, ")"),
              "", ""});
  }
  ExecRequest exec_request;
  exec_request.protocol = *protocol;
  exec_request.options = *options;
  if (exec_request.options.tty) {
    exec_request.options.stderr = false;  // merged into stdout by the pty
  }
  std::string dir = ContainerDir(*pod, *container);
  exec_request.spec.argv = options->command;
  exec_request.spec.env = ContainerEnv(*pod, *container, dir, options->tty);
  exec_request.spec.working_dir = dir;
  exec_request.spec.root = container->root;
  exec_request.spec.uid = container->uid;
  exec_request.spec.tty = options->tty;
  exec_request.spec.stdin = options->stdin;
  podgate::log::Info("exec", {{"user", user},
                              {"namespace", ns},
                              {"pod", name},
                              {"container", container_name},
                              {"tty", options->tty},
                              {"protocol", std::string(k8s::ProtocolName(*protocol))}});
  http::RouteResult result;
  result.websocket = NewExecSession(std::move(exec_request), processes_);
  result.subprotocol = offered.empty() ? "" : std::string(k8s::ProtocolName(*protocol));
  return result;
}

}  // namespace podgate::kubesim
