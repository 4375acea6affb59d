// kubesim's model of a cluster: namespaces, pods and containers loaded from a YAML file, the
// identities of its clients (a kube-apiserver style static token file, client certificates) and
// who may do what: a small per-user access list (verbs x resources x namespaces) and Kubernetes
// RBAC (rbac.h) for users, groups and service accounts.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rbac.h"

namespace podgate::kubesim {

// A securityContext as the pod JSON declares it (runAsUser, runAsNonRoot). Declared only: it
// does not change how kubesim runs a container's processes (`user` does), so a test can
// declare what a container does not do.
struct DeclaredSecurityContext {
  std::optional<int64_t> run_as_user;
  std::optional<bool> run_as_non_root;
};

struct Container {
  std::string name;
  std::string image;
  bool root = false;    // user: root (uid 0 in a user namespace)
  int64_t uid = 65534;  // the uid of a non-root container
  std::vector<std::pair<std::string, std::string>> env;
  std::string working_dir;           // "" = a private directory under the state dir
  std::vector<std::string> command;  // optional long-running main process
  // `securityContext`: replaces the one derived from `user` in the pod JSON.
  std::optional<DeclaredSecurityContext> security_context;
};

struct Pod {
  std::string name;
  std::string namespace_name;
  std::string uid;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::string phase = "Running";  // Pending, Running, Succeeded, Failed, Unknown
  std::vector<Container> containers;
  std::string created;  // RFC 3339
  // `securityContext`: the pod-level one in the pod JSON.
  std::optional<DeclaredSecurityContext> security_context;
};

struct Namespace {
  std::string name;
  std::map<std::string, std::string> labels;
  std::string created;
};

struct AccessRule {
  std::string user;
  std::vector<std::string> verbs;       // get, list, create, or "*"
  std::vector<std::string> resources;   // namespaces, pods, pods/exec, or "*"
  std::vector<std::string> namespaces;  // or "*"
};

struct Cluster {
  std::vector<Namespace> namespaces;
  std::vector<Pod> pods;
  std::vector<AccessRule> access;
  Rbac rbac;

  const Namespace* FindNamespace(const std::string& name) const;
  const Pod* FindPod(const std::string& ns, const std::string& name) const;
  // Default deny: true only when some rule of `user` names the verb, resource and namespace
  // (namespace "" for cluster-scoped requests matches only "*").
  bool Allowed(const std::string& user, const std::string& verb, const std::string& resource,
               const std::string& ns) const;
  // The authorizer: the access list (core API group only; `resource` with its subresource, as
  // "pods/exec"), then RBAC for the user's name and groups.
  bool Authorize(const UserInfo& user, const Attributes& attributes) const;
};

// Parses the cluster YAML (see docs/kubesim.md). Unknown keys, duplicate names, pods in unknown
// namespaces, bad phases and containers without names are errors naming the offending entry.
absl::StatusOr<Cluster> ParseCluster(const std::string& yaml_text);
absl::StatusOr<Cluster> LoadCluster(const std::string& path);

struct TokenUser {
  std::string token;
  std::string user;
  std::string uid;
  std::vector<std::string> groups;
};

// kube-apiserver's --token-auth-file format: `token,user,uid[,"group1,group2"]` per line; blank
// lines and lines starting with '#' are skipped. Errors name the line number; tokens never
// appear in messages.
absl::StatusOr<std::vector<TokenUser>> ParseTokenFile(const std::string& text);

}  // namespace podgate::kubesim
