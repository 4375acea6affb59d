#include "rbac.h"

#include <yaml-cpp/yaml.h>

#include <set>

#include "absl/strings/str_cat.h"

namespace podgate::kubesim {
namespace {

absl::Status Keys(const YAML::Node& node, const std::set<std::string>& allowed,
                  const std::string& where) {
  if (!node.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": expected a mapping"));
  }
  for (const auto& kv : node) {
    std::string key = kv.first.as<std::string>();
    if (allowed.count(key) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": unknown key \"", key, "\""));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> Strings(const YAML::Node& node, const std::string& where,
                                                 bool required) {
  std::vector<std::string> out;
  if (!node) {
    if (required) {
      return absl::InvalidArgumentError(absl::StrCat(where, " is required"));
    }
    return out;
  }
  if (!node.IsSequence()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": expected a list of strings"));
  }
  for (const auto& item : node) {
    if (!item.IsScalar()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": expected a list of strings"));
    }
    out.push_back(item.as<std::string>());
  }
  if (required && out.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " must not be empty"));
  }
  return out;
}

std::string Scalar(const YAML::Node& node) {
  return node && node.IsScalar() ? node.as<std::string>() : "";
}

absl::StatusOr<std::vector<Role>> ParseRoles(const YAML::Node& list, bool namespaced,
                                             const std::string& section) {
  std::vector<Role> out;
  if (!list) {
    return out;
  }
  if (!list.IsSequence()) {
    return absl::InvalidArgumentError(absl::StrCat("rbac.", section, ": expected a list"));
  }
  for (const auto& r : list) {
    std::string where = absl::StrCat("rbac.", section, "[", out.size(), "]");
    if (absl::Status s = Keys(r,
                              namespaced ? std::set<std::string>{"name", "namespace", "rules"}
                                         : std::set<std::string>{"name", "rules"},
                              where);
        !s.ok()) {
      return s;
    }
    Role role;
    role.name = Scalar(r["name"]);
    role.namespace_name = namespaced ? Scalar(r["namespace"]) : "";
    if (role.name.empty() || (namespaced && role.namespace_name.empty())) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, namespaced ? ": needs a name and a namespace" : ": needs a name"));
    }
    where = absl::StrCat(where, " (", role.name, ")");
    for (const Role& other : out) {
      if (other.name == role.name && other.namespace_name == role.namespace_name) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": duplicate name"));
      }
    }
    if (!r["rules"] || !r["rules"].IsSequence()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": rules must be a list"));
    }
    for (const auto& rule_node : r["rules"]) {
      std::string at = absl::StrCat(where, " rules[", role.rules.size(), "]");
      if (absl::Status s =
              Keys(rule_node, {"apiGroups", "resources", "verbs", "resourceNames"}, at);
          !s.ok()) {
        return s;
      }
      PolicyRule rule;
      absl::StatusOr<std::vector<std::string>> groups =
          Strings(rule_node["apiGroups"], at + " apiGroups", true);
      if (!groups.ok()) {
        return groups.status();
      }
      rule.api_groups = *std::move(groups);
      absl::StatusOr<std::vector<std::string>> resources =
          Strings(rule_node["resources"], at + " resources", true);
      if (!resources.ok()) {
        return resources.status();
      }
      rule.resources = *std::move(resources);
      absl::StatusOr<std::vector<std::string>> verbs =
          Strings(rule_node["verbs"], at + " verbs", true);
      if (!verbs.ok()) {
        return verbs.status();
      }
      rule.verbs = *std::move(verbs);
      absl::StatusOr<std::vector<std::string>> names =
          Strings(rule_node["resourceNames"], at + " resourceNames", false);
      if (!names.ok()) {
        return names.status();
      }
      rule.resource_names = *std::move(names);
      role.rules.push_back(std::move(rule));
    }
    out.push_back(std::move(role));
  }
  return out;
}

absl::StatusOr<std::vector<Binding>> ParseBindings(const YAML::Node& list, bool namespaced,
                                                   const std::string& section) {
  std::vector<Binding> out;
  if (!list) {
    return out;
  }
  if (!list.IsSequence()) {
    return absl::InvalidArgumentError(absl::StrCat("rbac.", section, ": expected a list"));
  }
  for (const auto& b : list) {
    std::string where = absl::StrCat("rbac.", section, "[", out.size(), "]");
    if (absl::Status s =
            Keys(b,
                 namespaced ? std::set<std::string>{"name", "namespace", "roleRef", "subjects"}
                            : std::set<std::string>{"name", "roleRef", "subjects"},
                 where);
        !s.ok()) {
      return s;
    }
    Binding binding;
    binding.name = Scalar(b["name"]);
    binding.namespace_name = namespaced ? Scalar(b["namespace"]) : "";
    if (binding.name.empty() || (namespaced && binding.namespace_name.empty())) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, namespaced ? ": needs a name and a namespace" : ": needs a name"));
    }
    where = absl::StrCat(where, " (", binding.name, ")");
    for (const Binding& other : out) {
      if (other.name == binding.name && other.namespace_name == binding.namespace_name) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": duplicate name"));
      }
    }
    const YAML::Node ref = b["roleRef"];
    if (!ref) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": needs a roleRef"));
    }
    if (absl::Status s = Keys(ref, {"kind", "name", "apiGroup"}, where + " roleRef"); !s.ok()) {
      return s;
    }
    binding.role_kind = Scalar(ref["kind"]);
    binding.role_name = Scalar(ref["name"]);
    if (!(binding.role_kind == "ClusterRole" || (namespaced && binding.role_kind == "Role")) ||
        binding.role_name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": roleRef needs a name and kind ",
                       namespaced ? "Role or ClusterRole" : "ClusterRole", " (got \"",
                       binding.role_kind, "\")"));
    }
    if (!b["subjects"] || !b["subjects"].IsSequence() || b["subjects"].size() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": subjects must be a non-empty list"));
    }
    for (const auto& s : b["subjects"]) {
      std::string at = absl::StrCat(where, " subjects[", binding.subjects.size(), "]");
      if (absl::Status st = Keys(s, {"kind", "name", "namespace", "apiGroup"}, at); !st.ok()) {
        return st;
      }
      Subject subject{Scalar(s["kind"]), Scalar(s["name"]), Scalar(s["namespace"])};
      if (subject.kind != "User" && subject.kind != "Group" && subject.kind != "ServiceAccount") {
        return absl::InvalidArgumentError(absl::StrCat(
            at, ": kind must be User, Group or ServiceAccount (got \"", subject.kind, "\")"));
      }
      if (subject.name.empty() ||
          (subject.kind == "ServiceAccount" && subject.namespace_name.empty())) {
        return absl::InvalidArgumentError(absl::StrCat(at, subject.kind == "ServiceAccount"
                                                               ? ": needs a name and a namespace"
                                                               : ": needs a name"));
      }
      binding.subjects.push_back(std::move(subject));
    }
    out.push_back(std::move(binding));
  }
  return out;
}

bool Contains(const std::vector<std::string>& list, const std::string& value) {
  for (const std::string& item : list) {
    if (item == value) {
      return true;
    }
  }
  return false;
}

bool SubjectMatches(const Subject& subject, const UserInfo& user) {
  if (subject.kind == "User") {
    return subject.name == user.name;
  }
  if (subject.kind == "Group") {
    return Contains(user.groups, subject.name);
  }
  return user.name ==
         absl::StrCat("system:serviceaccount:", subject.namespace_name, ":", subject.name);
}

}  // namespace

bool RuleAllows(const PolicyRule& rule, const Attributes& a) {
  if (!Contains(rule.verbs, a.verb) && !Contains(rule.verbs, "*")) {
    return false;
  }
  if (!Contains(rule.api_groups, a.api_group) && !Contains(rule.api_groups, "*")) {
    return false;
  }
  std::string combined = a.subresource.empty() ? a.resource : a.resource + "/" + a.subresource;
  bool resource = Contains(rule.resources, "*") || Contains(rule.resources, combined) ||
                  (!a.subresource.empty() && Contains(rule.resources, "*/" + a.subresource));
  if (!resource) {
    return false;
  }
  // resourceNames never match a request without a name (a list, a create by generated name).
  return rule.resource_names.empty() || (!a.name.empty() && Contains(rule.resource_names, a.name));
}

bool Rbac::Allows(const UserInfo& user, const Attributes& a) const {
  auto role_allows = [&](const std::string& kind, const std::string& name,
                         const std::string& binding_ns) {
    const std::vector<Role>& list = kind == "ClusterRole" ? cluster_roles : roles;
    for (const Role& role : list) {
      if (role.name != name || (kind == "Role" && role.namespace_name != binding_ns)) {
        continue;
      }
      for (const PolicyRule& rule : role.rules) {
        if (RuleAllows(rule, a)) {
          return true;
        }
      }
    }
    return false;
  };
  auto applies = [&](const Binding& b) {
    for (const Subject& s : b.subjects) {
      if (SubjectMatches(s, user)) {
        return true;
      }
    }
    return false;
  };
  for (const Binding& b : cluster_role_bindings) {
    if (applies(b) && role_allows(b.role_kind, b.role_name, "")) {
      return true;
    }
  }
  if (!a.namespace_name.empty()) {
    for (const Binding& b : role_bindings) {
      if (b.namespace_name == a.namespace_name && applies(b) &&
          role_allows(b.role_kind, b.role_name, b.namespace_name)) {
        return true;
      }
    }
  }
  return false;
}

absl::StatusOr<Rbac> ParseRbac(const YAML::Node& node) {
  Rbac rbac;
  if (!node) {
    return rbac;
  }
  if (absl::Status s =
          Keys(node, {"clusterRoles", "roles", "clusterRoleBindings", "roleBindings"}, "rbac");
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::vector<Role>> cluster_roles =
      ParseRoles(node["clusterRoles"], false, "clusterRoles");
  if (!cluster_roles.ok()) {
    return cluster_roles.status();
  }
  rbac.cluster_roles = *std::move(cluster_roles);
  absl::StatusOr<std::vector<Role>> roles = ParseRoles(node["roles"], true, "roles");
  if (!roles.ok()) {
    return roles.status();
  }
  rbac.roles = *std::move(roles);
  absl::StatusOr<std::vector<Binding>> crbs =
      ParseBindings(node["clusterRoleBindings"], false, "clusterRoleBindings");
  if (!crbs.ok()) {
    return crbs.status();
  }
  rbac.cluster_role_bindings = *std::move(crbs);
  absl::StatusOr<std::vector<Binding>> rbs =
      ParseBindings(node["roleBindings"], true, "roleBindings");
  if (!rbs.ok()) {
    return rbs.status();
  }
  rbac.role_bindings = *std::move(rbs);
  // A binding to a role that does not exist is legal in Kubernetes (it grants nothing), but in
  // a hand-written test cluster it is always a typo: refuse it.
  auto exists = [&](const Binding& b) {
    const std::vector<Role>& list = b.role_kind == "ClusterRole" ? rbac.cluster_roles : rbac.roles;
    for (const Role& r : list) {
      if (r.name == b.role_name &&
          (b.role_kind == "ClusterRole" || r.namespace_name == b.namespace_name)) {
        return true;
      }
    }
    return false;
  };
  for (const auto* list : {&rbac.cluster_role_bindings, &rbac.role_bindings}) {
    for (const Binding& b : *list) {
      if (!exists(b)) {
        return absl::InvalidArgumentError(absl::StrCat("rbac binding ", b.name, ": ", b.role_kind,
                                                       " \"", b.role_name, "\" does not exist"));
      }
    }
  }
  return rbac;
}

std::string ForbiddenMessage(const std::string& user, const Attributes& a) {
  std::string qualified = a.api_group.empty() ? a.resource : a.resource + "." + a.api_group;
  std::string subject = a.name.empty() ? qualified : absl::StrCat(qualified, " \"", a.name, "\"");
  std::string resource = a.subresource.empty() ? a.resource : a.resource + "/" + a.subresource;
  std::string where = a.namespace_name.empty()
                          ? "at the cluster scope"
                          : absl::StrCat("in the namespace \"", a.namespace_name, "\"");
  return absl::StrCat(subject, " is forbidden: User \"", user, "\" cannot ", a.verb, " resource \"",
                      resource, "\" in API group \"", a.api_group, "\" ", where);
}

}  // namespace podgate::kubesim
