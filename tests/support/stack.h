// The whole back end as real processes for integration tests: kubesim (the Kubernetes API),
// podgate-policy, podgate-audit (SQLite) and podgate-exec, each on a port the OS picks (port 0,
// read back from its "serving" line), in a temporary folder, with an HS256 key to mint end-user
// tokens.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "support/subprocess.h"

namespace podgate::testing {

// A TCP port on 127.0.0.1 that refuses connections: bound (port 0, chosen by the OS) but not
// listening, for as long as this object lives, so no other process can take it meanwhile (a
// port "found free" and released at once can be taken by anything before it is used). Servers
// bind port 0 themselves and report the port they got; this is only for a peer that is down.
class ReservedPort {
 public:
  ReservedPort();
  ~ReservedPort();
  ReservedPort(const ReservedPort&) = delete;
  ReservedPort& operator=(const ReservedPort&) = delete;

  int port() const { return port_; }
  // Gives the port up, for a server that is to bind it next (a peer that comes back).
  void Release();

 private:
  int fd_ = -1;
  int port_ = 0;
};

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
  // More flags for podgate-policy and podgate-audit (e.g. --log_level=debug).
  std::vector<std::string> policy_flags;
  std::vector<std::string> audit_flags;
  // exec's end-user verification flags; empty: the stack's HS256 key, kIssuer, audience
  // podgate (what Token() mints). Set: these instead (e.g. an OpenID provider's JWKS URL).
  std::vector<std::string> exec_jwt_flags;
  // Start audit (otherwise exec's --audit_address points at a closed port).
  bool start_audit = true;
  // Start policy (otherwise exec's --policy_address points at a closed port).
  bool start_policy = true;
  // More clusters, each a kubesim of its own: (name, cluster YAML). With any, exec serves them
  // all from --kubeconfig_dir, the first kubesim (cluster_yaml) as `cluster_name`.
  std::string cluster_name = "default";
  std::vector<std::pair<std::string, std::string>> more_clusters;
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
  // exec's /metrics port (bound by exec on port 0 and read from its "serving" line).
  int exec_metrics_port() const { return exec_metrics_port_; }
  int policy_port() const { return policy_port_; }
  int audit_port() const { return audit_port_; }
  // audit's /metrics port when its flags include --metrics_address=127.0.0.1:0; 0 otherwise.
  int audit_metrics_port() const { return audit_metrics_port_; }
  int kubesim_port() const { return kubesim_port_; }
  const std::string& kubeconfig() const { return kubeconfig_; }
  const std::string& jwt_secret_file() const { return secret_file_; }
  Subprocess* exec() const { return exec_.get(); }
  Subprocess* kubesim() const { return kubesim_.get(); }
  // The kubesim of one of options.more_clusters (null for another name).
  Subprocess* cluster_kubesim(const std::string& name) const;
  // Where exec's --kubeconfig_dir points (empty without more clusters).
  const std::string& kubeconfig_dir() const { return kubeconfig_dir_; }
  // Starts podgate-exec again with the same flags (SIGKILL first when it still runs); the
  // new process's port is exec_port() once this returns.
  absl::Status RestartExec();
  Subprocess* audit() const { return audit_.get(); }
  Subprocess* policy() const { return policy_.get(); }

  static constexpr char kIssuer[] = "https://podgate.test";

 private:
  Stack() = default;
  std::string dir_;
  std::string secret_file_;
  std::string kubeconfig_;
  int exec_port_ = 0;
  int exec_metrics_port_ = 0;
  // The ports of peers not started: refuse connections while the stack lives.
  std::unique_ptr<ReservedPort> closed_audit_;
  std::unique_ptr<ReservedPort> closed_policy_;
  int policy_port_ = 0;
  int audit_port_ = 0;
  int audit_metrics_port_ = 0;
  int kubesim_port_ = 0;
  std::unique_ptr<Subprocess> kubesim_;
  std::vector<std::pair<std::string, std::unique_ptr<Subprocess>>> more_kubesims_;
  std::string kubeconfig_dir_;
  std::unique_ptr<Subprocess> policy_;
  std::unique_ptr<Subprocess> audit_;
  std::unique_ptr<Subprocess> exec_;
  std::string exec_binary_;
  std::vector<std::string> exec_args_;
};

}  // namespace podgate::testing
