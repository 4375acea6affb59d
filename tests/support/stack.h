// The whole back end as real processes for integration tests: kubesim (the Kubernetes API),
// podgate-policy, podgate-audit (SQLite) and podgate-exec, each on free ports, in a temporary
// folder, with an HS256 key to mint end-user tokens.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "support/subprocess.h"

namespace podgate::testing {

struct BinaryPaths {
  std::string kubesim;
  std::string policy;
  std::string audit;
  std::string exec;
};

struct StackOptions {
  BinaryPaths binaries;
  // Cluster and policy documents (YAML text).
  std::string cluster_yaml;
  std::string policy_yaml;
  std::vector<std::string> kubesim_flags;
  std::vector<std::string> exec_flags;
  // Start audit (otherwise exec's --audit_address points at a closed port).
  bool start_audit = true;
  // Start policy (otherwise exec's --policy_address points at a closed port).
  bool start_policy = true;
};

class Stack {
 public:
  static absl::StatusOr<std::unique_ptr<Stack>> Start(const StackOptions& options);
  ~Stack();

  // A token for `user` in `groups`, valid for `ttl` (negative: already expired).
  std::string Token(const std::string& user, const std::vector<std::string>& groups,
                    absl::Duration ttl = absl::Hours(1)) const;

  // Where kubesim keeps a container's working directory.
  std::string ContainerDir(const std::string& ns, const std::string& pod,
                           const std::string& container) const;

  const std::string& dir() const { return dir_; }
  int exec_port() const { return exec_port_; }
  int policy_port() const { return policy_port_; }
  int audit_port() const { return audit_port_; }
  int kubesim_port() const { return kubesim_port_; }
  const std::string& kubeconfig() const { return kubeconfig_; }
  const std::string& jwt_secret_file() const { return secret_file_; }
  Subprocess* exec() const { return exec_.get(); }
  Subprocess* kubesim() const { return kubesim_.get(); }
  // Starts podgate-exec again with the same flags (SIGKILL first when it still runs); the
  // new process's port is exec_port() once this returns.
  absl::Status RestartExec();
  Subprocess* audit() const { return audit_.get(); }

  static constexpr char kIssuer[] = "https://podgate.test";

 private:
  Stack() = default;
  std::string dir_;
  std::string secret_file_;
  std::string kubeconfig_;
  int exec_port_ = 0;
  int policy_port_ = 0;
  int audit_port_ = 0;
  int kubesim_port_ = 0;
  std::unique_ptr<Subprocess> kubesim_;
  std::unique_ptr<Subprocess> policy_;
  std::unique_ptr<Subprocess> audit_;
  std::unique_ptr<Subprocess> exec_;
  std::string exec_binary_;
  std::vector<std::string> exec_args_;
};

// A free TCP port on 127.0.0.1 with nothing listening (bound then released).
int UnusedPort();

}  // namespace podgate::testing
