#include "support/stack.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "auth/jwt.h"
#include "nlohmann/json.hpp"
#include "support/test_pki.h"

namespace podgate::testing {
namespace {

absl::StatusOr<nlohmann::json> ServingLine(Subprocess* p, const std::string& name) {
  absl::StatusOr<std::string> line = p->WaitForLine("\"msg\":\"serving\"", absl::Seconds(30));
  if (!line.ok()) {
    std::string log;
    for (const std::string& l : p->Lines()) {
      absl::StrAppend(&log, "\n  ", l);
    }
    return absl::UnavailableError(absl::StrCat(name, " did not start: ", line.status().message(), log));
  }
  return nlohmann::json::parse(*line);
}

}  // namespace

ReservedPort::ReservedPort() {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::abort();  // no port for the test to use: nothing sensible to test
  }
  port_ = ntohs(addr.sin_port);
}

ReservedPort::~ReservedPort() { Release(); }

void ReservedPort::Release() {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
}

absl::StatusOr<std::unique_ptr<Stack>> Stack::Start(const StackOptions& options) {
  std::unique_ptr<Stack> s(new Stack());
  s->dir_ = MakeTempDir("podgate-stack");
  const std::string& d = s->dir_;
  std::ofstream(d + "/cluster.yaml") << options.cluster_yaml;
  std::ofstream(d + "/policy.yaml") << options.policy_yaml;
  std::ofstream(d + "/tokens.csv") << "exec-sa-token,podgate-exec,1001\n";
  s->secret_file_ = d + "/jwt.secret";
  std::ofstream(s->secret_file_) << "a-test-secret-that-is-long-enough-0123456789\n";

  std::vector<std::string> kubesim_args = {"--port=0", "--cluster=" + d + "/cluster.yaml",
                                           "--token_file=" + d + "/tokens.csv",
                                           "--state_dir=" + d + "/kubesim"};
  kubesim_args.insert(kubesim_args.end(), options.kubesim_flags.begin(),
                      options.kubesim_flags.end());
  auto kubesim = Subprocess::Start(options.binaries.kubesim, kubesim_args);
  if (!kubesim.ok()) {
    return kubesim.status();
  }
  s->kubesim_ = *std::move(kubesim);
  absl::StatusOr<nlohmann::json> k = ServingLine(s->kubesim_.get(), "kubesim");
  if (!k.ok()) {
    return k.status();
  }
  s->kubesim_port_ = (*k)["port"];
  s->kubeconfig_ = (*k)["kubeconfig"];
  if (!options.more_clusters.empty()) {
    s->kubeconfig_dir_ = d + "/clusters";
    mkdir(s->kubeconfig_dir_.c_str(), 0700);
    auto copy = [&](const std::string& from, const std::string& name) {
      std::ifstream in(from);
      std::ofstream(absl::StrCat(s->kubeconfig_dir_, "/", name, ".yaml")) << in.rdbuf();
    };
    copy(s->kubeconfig_, options.cluster_name);
    for (const auto& [name, yaml] : options.more_clusters) {
      const std::string cd = absl::StrCat(d, "/cluster-", name);
      mkdir(cd.c_str(), 0700);
      std::ofstream(cd + "/cluster.yaml") << yaml;
      std::vector<std::string> args = {"--port=0", "--cluster=" + cd + "/cluster.yaml",
                                       "--token_file=" + d + "/tokens.csv",
                                       "--state_dir=" + cd + "/kubesim"};
      args.insert(args.end(), options.kubesim_flags.begin(), options.kubesim_flags.end());
      auto more = Subprocess::Start(options.binaries.kubesim, args);
      if (!more.ok()) {
        return more.status();
      }
      absl::StatusOr<nlohmann::json> m = ServingLine(more->get(), "kubesim");
      if (!m.ok()) {
        return m.status();
      }
      copy((*m)["kubeconfig"], name);
      s->more_kubesims_.emplace_back(name, *std::move(more));
    }
  }

  const std::vector<std::string> common = {"--grpc_address=127.0.0.1:0", "--metrics_address=",
                                           "--drain_timeout=2s"};
  if (options.start_audit) {
    std::vector<std::string> args = common;
    args.push_back("--store=sqlite://" + d + "/audit.db");
    args.push_back("--chain_id=test");
    args.insert(args.end(), options.audit_flags.begin(), options.audit_flags.end());
    auto audit = Subprocess::Start(options.binaries.audit, args);
    if (!audit.ok()) {
      return audit.status();
    }
    s->audit_ = *std::move(audit);
    absl::StatusOr<nlohmann::json> a = ServingLine(s->audit_.get(), "podgate-audit");
    if (!a.ok()) {
      return a.status();
    }
    s->audit_port_ = (*a)["grpc_port"];
    s->audit_metrics_port_ = a->value("metrics_port", 0);
  } else {
    s->closed_audit_ = std::make_unique<ReservedPort>();
    s->audit_port_ = s->closed_audit_->port();
  }

  if (options.start_policy) {
    std::vector<std::string> args = common;
    args.push_back("--policy_file=" + d + "/policy.yaml");
    if (options.start_audit) {
      args.push_back(absl::StrCat("--audit_address=127.0.0.1:", s->audit_port_));
    }
    args.insert(args.end(), options.policy_flags.begin(), options.policy_flags.end());
    auto policy = Subprocess::Start(options.binaries.policy, args);
    if (!policy.ok()) {
      return policy.status();
    }
    s->policy_ = *std::move(policy);
    absl::StatusOr<nlohmann::json> p = ServingLine(s->policy_.get(), "podgate-policy");
    if (!p.ok()) {
      return p.status();
    }
    s->policy_port_ = (*p)["grpc_port"];
  } else {
    s->closed_policy_ = std::make_unique<ReservedPort>();
    s->policy_port_ = s->closed_policy_->port();
  }
  std::vector<std::string> args = common;
  for (const std::string& f :
       {std::string("--metrics_address=127.0.0.1:0"),
        s->kubeconfig_dir_.empty() ? "--kubeconfig=" + s->kubeconfig_
                                   : "--kubeconfig_dir=" + s->kubeconfig_dir_,
        absl::StrCat("--policy_address=127.0.0.1:", s->policy_port_),
        absl::StrCat("--audit_address=127.0.0.1:", s->audit_port_)}) {
    args.push_back(f);
  }
  if (options.exec_jwt_flags.empty()) {
    for (const std::string& f :
         {"--jwt_key_file=" + s->secret_file_, std::string("--jwt_algorithm=HS256"),
          std::string("--jwt_issuer=") + kIssuer, std::string("--jwt_audience=podgate")}) {
      args.push_back(f);
    }
  } else {
    args.insert(args.end(), options.exec_jwt_flags.begin(), options.exec_jwt_flags.end());
  }
  args.insert(args.end(), options.exec_flags.begin(), options.exec_flags.end());
  s->exec_binary_ = options.binaries.exec;
  s->exec_args_ = args;
  if (absl::Status started = s->RestartExec(); !started.ok()) {
    return started;
  }
  return s;
}

absl::Status Stack::RestartExec() {
  if (exec_ != nullptr && !exec_->WaitExit(absl::ZeroDuration()).ok()) {
    exec_->Signal(SIGKILL);
    (void)exec_->WaitExit(absl::Seconds(10));
  }
  auto exec = Subprocess::Start(exec_binary_, exec_args_);
  if (!exec.ok()) {
    return exec.status();
  }
  exec_ = *std::move(exec);
  absl::StatusOr<nlohmann::json> e = ServingLine(exec_.get(), "podgate-exec");
  if (!e.ok()) {
    return e.status();
  }
  exec_port_ = (*e)["grpc_port"];
  exec_metrics_port_ = (*e)["metrics_port"];
  return absl::OkStatus();
}

Subprocess* Stack::cluster_kubesim(const std::string& name) const {
  for (const auto& [n, p] : more_kubesims_) {
    if (n == name) {
      return p.get();
    }
  }
  return nullptr;
}

Stack::~Stack() {
  for (auto& [name, p] : more_kubesims_) {
    p->Signal(SIGTERM);
  }
  for (auto* p : {exec_.get(), policy_.get(), audit_.get(), kubesim_.get()}) {
    if (p != nullptr) {
      p->Signal(SIGTERM);
      if (!p->WaitExit(absl::Seconds(10)).ok()) {
        p->Signal(SIGKILL);
      }
    }
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string Stack::Token(const std::string& user, const std::vector<std::string>& groups,
                         absl::Duration ttl) const {
  absl::StatusOr<auth::Key> key = auth::LoadSigningKey(secret_file_, auth::Algorithm::kHS256, "");
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  nlohmann::json claims = {{"iss", kIssuer},
                           {"aud", "podgate"},
                           {"sub", user},
                           {"groups", groups},
                           {"iat", now - 60 + std::min<int64_t>(0, absl::ToInt64Seconds(ttl))},
                           {"exp", now + absl::ToInt64Seconds(ttl)}};
  return *auth::Sign(claims, *key);
}

std::string Stack::ContainerDir(const std::string& ns, const std::string& pod,
                                const std::string& container) const {
  return absl::StrCat(dir_, "/kubesim/containers/", ns, "/", pod, "/", container);
}

}  // namespace podgate::testing
