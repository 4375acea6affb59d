// kubesim's authorizer: Kubernetes RBAC (Roles, ClusterRoles, RoleBindings, ClusterRoleBindings
// with User, Group and ServiceAccount subjects, apiGroups, resources with subresources and
// resourceNames) evaluated for a user's name and groups, as the API server's RBAC authorizer
// does: default deny, a ClusterRoleBinding grants everywhere, a RoleBinding only in its own
// namespace.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace YAML {
class Node;
}

namespace podgate::kubesim {

// Who a request acts as, after authentication (and impersonation).
struct UserInfo {
  std::string name;
  std::string uid;
  std::vector<std::string> groups;
  std::map<std::string, std::vector<std::string>> extra;
};

// What a request asks to do: the API server's authorizer attributes of a resource request.
struct Attributes {
  std::string verb;  // get, list, create, impersonate, ...
  std::string api_group;
  std::string resource;  // pods, users, userextras, ...
  std::string subresource;
  std::string namespace_name;  // "" for cluster-scoped requests
  std::string name;            // "" for lists
};

struct PolicyRule {
  std::vector<std::string> api_groups;
  std::vector<std::string> resources;
  std::vector<std::string> verbs;
  std::vector<std::string> resource_names;  // empty: any name
};

struct Role {
  std::string name;
  std::string namespace_name;  // "" for a ClusterRole
  std::vector<PolicyRule> rules;
};

struct Subject {
  std::string kind;  // User, Group, ServiceAccount
  std::string name;
  std::string namespace_name;  // ServiceAccount only
};

struct Binding {
  std::string name;
  std::string namespace_name;  // "" for a ClusterRoleBinding
  std::string role_kind;       // Role or ClusterRole
  std::string role_name;
  std::vector<Subject> subjects;
};

struct Rbac {
  std::vector<Role> cluster_roles;
  std::vector<Role> roles;
  std::vector<Binding> cluster_role_bindings;
  std::vector<Binding> role_bindings;

  // True when some binding that applies to `user` grants `attributes`.
  bool Allows(const UserInfo& user, const Attributes& attributes) const;
};

// True when `rule` covers `attributes` (verb, API group, resource/subresource, name), with
// RBAC's wildcards: "*" everywhere, "*/sub" for a subresource of any resource.
bool RuleAllows(const PolicyRule& rule, const Attributes& attributes);

// Parses the cluster file's `rbac:` section. Unknown keys, missing names, empty rule lists,
// unknown subject or roleRef kinds, duplicate names and bindings to roles that do not exist are
// errors naming the entry.
absl::StatusOr<Rbac> ParseRbac(const YAML::Node& node);

// The API server's message for a refusal (responsewriters.Forbidden): `pods "x" is forbidden:
// User "u" cannot create resource "pods/exec" in API group "" in the namespace "ns"`.
std::string ForbiddenMessage(const std::string& user, const Attributes& attributes);

}  // namespace podgate::kubesim
