// kubesim: a Kubernetes API server simulator for local runs and tests. Serves discovery,
// namespaces, pods and pods/exec over HTTPS from a cluster YAML, running execs as real child
// processes; writes a kubeconfig for itself. See docs/kubesim.md.
#include <signal.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "api_server.h"
#include "pki.h"
#include "runtime/flags.h"
#include "runtime/log.h"
#include "runtime/server_flags.h"

ABSL_FLAG(std::string, address, "127.0.0.1", "Listen address (default 127.0.0.1).");
ABSL_FLAG(int, port, 6443, "HTTPS port; 0 picks a free one (default 6443).");
ABSL_FLAG(std::string, cluster, "",
          "Cluster YAML: namespaces, pods, access list, rbac (required).");
ABSL_FLAG(std::string, token_file, "",
          "Static token file, token,user,uid[,\"groups\"] per line (required).");
ABSL_FLAG(std::string, state_dir, "",
          "Directory for generated certificates, the kubeconfig and container working "
          "directories (required).");
ABSL_FLAG(std::string, serving_cert, "",
          "Serving certificate (PEM); default: generated in state_dir.");
ABSL_FLAG(std::string, serving_key, "", "Serving key (PEM); default: generated in state_dir.");
ABSL_FLAG(std::string, client_ca, "",
          "CA for client certificates; default: the generated CA (or none with --serving_cert).");
ABSL_FLAG(std::string, kubeconfig, "",
          "Where to write the kubeconfig (default state_dir/kubeconfig).");
ABSL_FLAG(std::string, kubeconfig_user, "",
          "User from the token file whose token goes into the kubeconfig (default: first line).");
ABSL_FLAG(std::string, client_cert_user, "",
          "When set (and the CA is generated), issue a client certificate with this user as CN "
          "and write a second kubeconfig, <kubeconfig>-<user>, that authenticates with it "
          "(default: none).");
ABSL_FLAG(std::string, protocols, "v5,v4,v1",
          "Exec sub-protocols accepted, of v5, v4, v1 (default v5,v4,v1; v4 acts as an older "
          "cluster).");
ABSL_FLAG(std::string, audit_log, "",
          "Append an API-server-style audit log (audit.k8s.io/v1 Event JSON lines, level "
          "Metadata) to this file (default: empty, none).");
ABSL_FLAG(int, max_execs, 64, "Cap on concurrent exec processes (default 64).");
ABSL_FLAG(int, threads, 2, "I/O threads (default 2).");
ABSL_FLAG(int, max_frame_bytes, 1024 * 1024,
          "Largest WebSocket message accepted from a client, in bytes (default 1048576).");
ABSL_FLAG(int, handshake_timeout_ms, 10000,
          "TLS handshake + request header + upgrade timeout in milliseconds (default 10000).");

namespace {

using podgate::runtime::ExitWithError;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    ExitWithError("cannot read " + path);
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
  podgate::runtime::ParseFlags(argc, argv,
                               "kubesim: a Kubernetes API server simulator (discovery, pods, "
                               "pods/exec over WebSocket).\nEvery flag may also be set as "
                               "PODGATE_<FLAG>.");
  podgate::runtime::InitLoggingFromFlags("kubesim");
  signal(SIGPIPE, SIG_IGN);

  // Absolute, because kubectl resolves relative paths in a kubeconfig against its directory.
  std::string state_dir = absl::GetFlag(FLAGS_state_dir);
  if (!state_dir.empty()) {
    state_dir = std::filesystem::absolute(state_dir).lexically_normal().string();
  }
  if (state_dir.empty() || absl::GetFlag(FLAGS_cluster).empty() ||
      absl::GetFlag(FLAGS_token_file).empty()) {
    ExitWithError("--cluster, --token_file and --state_dir are required");
  }
  absl::StatusOr<podgate::kubesim::Cluster> cluster =
      podgate::kubesim::LoadCluster(absl::GetFlag(FLAGS_cluster));
  if (!cluster.ok()) {
    ExitWithError(std::string(cluster.status().message()));
  }
  absl::StatusOr<std::vector<podgate::kubesim::TokenUser>> tokens =
      podgate::kubesim::ParseTokenFile(ReadFile(absl::GetFlag(FLAGS_token_file)));
  if (!tokens.ok()) {
    ExitWithError(std::string(tokens.status().message()));
  }

  const podgate::kubesim::TokenUser* kube_user = &(*tokens)[0];
  if (!absl::GetFlag(FLAGS_kubeconfig_user).empty()) {
    kube_user = nullptr;
    for (const auto& t : *tokens) {
      if (t.user == absl::GetFlag(FLAGS_kubeconfig_user)) {
        kube_user = &t;
      }
    }
    if (kube_user == nullptr) {
      ExitWithError("--kubeconfig_user: no token for user \"" +
                    absl::GetFlag(FLAGS_kubeconfig_user) + "\" in the token file");
    }
  }

  podgate::kubesim::ApiServerOptions options;
  options.protocols.clear();
  for (absl::string_view p :
       absl::StrSplit(absl::GetFlag(FLAGS_protocols), ',', absl::SkipEmpty())) {
    if (p == "v5") {
      options.protocols.push_back(podgate::k8s::ExecProtocol::kV5);
    } else if (p == "v4") {
      options.protocols.push_back(podgate::k8s::ExecProtocol::kV4);
    } else if (p == "v1") {
      options.protocols.push_back(podgate::k8s::ExecProtocol::kV1);
    } else {
      ExitWithError(
          absl::StrCat("--protocols: unknown protocol \"", std::string(p), "\" (use v5, v4, v1)"));
    }
  }
  if (options.protocols.empty()) {
    ExitWithError("--protocols must name at least one protocol");
  }
  if (absl::GetFlag(FLAGS_max_execs) < 1 || absl::GetFlag(FLAGS_threads) < 1 ||
      absl::GetFlag(FLAGS_max_frame_bytes) < 1024) {
    ExitWithError("--max_execs and --threads must be >= 1, --max_frame_bytes >= 1024");
  }
  options.max_execs = static_cast<size_t>(absl::GetFlag(FLAGS_max_execs));
  options.state_dir = state_dir;
  options.audit_log_path = absl::GetFlag(FLAGS_audit_log);

  podgate::http::ServerOptions http_options;
  http_options.address = absl::GetFlag(FLAGS_address);
  http_options.port = static_cast<uint16_t>(absl::GetFlag(FLAGS_port));
  http_options.websocket_message_limit_bytes =
      static_cast<size_t>(absl::GetFlag(FLAGS_max_frame_bytes));
  http_options.handshake_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_handshake_timeout_ms));
  podgate::kubesim::PkiFiles pki;
  if (absl::GetFlag(FLAGS_serving_cert).empty()) {
    if (absl::Status s = podgate::kubesim::EnsurePki(state_dir + "/pki", &pki); !s.ok()) {
      ExitWithError(absl::StrCat("generating certificates: ", s.message()));
    }
    http_options.cert_file = pki.server_cert;
    http_options.key_file = pki.server_key;
    http_options.client_ca_file = pki.ca_cert;
  } else {
    http_options.cert_file = absl::GetFlag(FLAGS_serving_cert);
    http_options.key_file = absl::GetFlag(FLAGS_serving_key);
    pki.ca_cert = absl::GetFlag(FLAGS_client_ca);
  }
  if (!absl::GetFlag(FLAGS_client_ca).empty()) {
    http_options.client_ca_file = absl::GetFlag(FLAGS_client_ca);
  }

  auto api = std::make_shared<podgate::kubesim::ApiServer>(*std::move(cluster), *tokens, options);
  if (absl::Status s = api->OpenAuditLog(); !s.ok()) {
    ExitWithError(std::string(s.message()));
  }
  if (absl::Status s = api->PrepareContainers(); !s.ok()) {
    ExitWithError(std::string(s.message()));
  }
  boost::asio::io_context io;
  absl::StatusOr<std::unique_ptr<podgate::http::Server>> server = podgate::http::Server::Start(
      io, http_options,
      [api](const podgate::http::Request& req, const podgate::http::RequestContext& ctx,
            bool upgrade) { return api->Route(req, ctx, upgrade); });
  if (!server.ok()) {
    ExitWithError(std::string(server.status().message()));
  }
  uint16_t port = (*server)->port();
  api->set_http_stats(&(*server)->stats());
  api->set_server_address(absl::StrCat(http_options.address, ":", port));
  if (absl::Status s = api->StartMainProcesses(io); !s.ok()) {
    api->processes()->KillAll(SIGKILL);
    ExitWithError(std::string(s.message()));
  }

  // The kubeconfig names the chosen user's token and the CA that signed the serving cert.
  std::string kubeconfig = absl::GetFlag(FLAGS_kubeconfig);
  if (kubeconfig.empty()) {
    kubeconfig = state_dir + "/kubeconfig";
  }
  std::string host = http_options.address == "0.0.0.0" ? "127.0.0.1" : http_options.address;
  podgate::kubesim::KubeconfigSpec spec;
  spec.server = absl::StrCat("https://", host, ":", port);
  spec.ca_file =
      std::filesystem::absolute(pki.ca_cert.empty() ? http_options.cert_file : pki.ca_cert)
          .string();
  spec.token = kube_user->token;
  spec.user = kube_user->user;
  if (absl::Status s = podgate::kubesim::WriteKubeconfig(kubeconfig, spec); !s.ok()) {
    ExitWithError(std::string(s.message()));
  }
  if (std::string user = absl::GetFlag(FLAGS_client_cert_user); !user.empty()) {
    if (pki.ca_key.empty()) {
      ExitWithError("--client_cert_user needs the generated CA (no --serving_cert)");
    }
    podgate::kubesim::KubeconfigSpec cert_spec = spec;
    cert_spec.token.clear();
    cert_spec.user = user;
    if (absl::Status s = podgate::kubesim::IssueClientCert(
            pki, state_dir + "/pki", user, &cert_spec.client_cert_file, &cert_spec.client_key_file);
        !s.ok()) {
      ExitWithError(absl::StrCat("issuing the client certificate: ", s.message()));
    }
    if (absl::Status s = podgate::kubesim::WriteKubeconfig(kubeconfig + "-" + user, cert_spec);
        !s.ok()) {
      ExitWithError(std::string(s.message()));
    }
  }

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int sig) {
    podgate::log::Info("stopping", {{"signal", sig}});
    (*server)->Stop();
    api->processes()->KillAll(SIGKILL);
    io.stop();
  });
  podgate::log::Info("serving", {{"port", static_cast<int>(port)},
                                 {"kubeconfig", kubeconfig},
                                 {"ca", spec.ca_file},
                                 {"can_switch_user", podgate::kubesim::CanSwitchUser()}});
  std::vector<std::thread> threads;
  for (int i = 1; i < absl::GetFlag(FLAGS_threads); ++i) {
    threads.emplace_back([&io] { io.run(); });
  }
  io.run();
  for (auto& t : threads) {
    t.join();
  }
  return 0;
}
