#include "cluster.h"

#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace podgate::kubesim {
namespace {

absl::Status CheckKeys(const YAML::Node& node, const std::set<std::string>& allowed,
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

absl::StatusOr<std::map<std::string, std::string>> StringMap(const YAML::Node& node,
                                                             const std::string& where) {
  std::map<std::string, std::string> out;
  if (!node) {
    return out;
  }
  if (!node.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": expected a mapping of strings"));
  }
  for (const auto& kv : node) {
    if (!kv.second.IsScalar()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": value of \"", kv.first.as<std::string>(), "\" must be a string"));
    }
    out[kv.first.as<std::string>()] = kv.second.as<std::string>();
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> StringList(const YAML::Node& node,
                                                    const std::string& where) {
  std::vector<std::string> out;
  if (!node) {
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
  return out;
}

// DNS-1123 label, as Kubernetes requires of namespace, pod and container names.
bool ValidName(const std::string& s) {
  if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-') {
    return false;
  }
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

constexpr char kCreated[] = "2026-01-01T00:00:00Z";

absl::StatusOr<DeclaredSecurityContext> ParseSecurityContext(const YAML::Node& node,
                                                             const std::string& where) {
  if (!node.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": securityContext must be a map"));
  }
  if (absl::Status s = CheckKeys(node, {"runAsUser", "runAsNonRoot"}, where + " securityContext");
      !s.ok()) {
    return s;
  }
  DeclaredSecurityContext sc;
  try {
    if (node["runAsUser"]) {
      sc.run_as_user = node["runAsUser"].as<int64_t>();
    }
    if (node["runAsNonRoot"]) {
      sc.run_as_non_root = node["runAsNonRoot"].as<bool>();
    }
  } catch (const YAML::Exception&) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": runAsUser must be a number and runAsNonRoot a boolean"));
  }
  return sc;
}

absl::StatusOr<Container> ParseContainer(const YAML::Node& node, const std::string& where) {
  if (absl::Status s = CheckKeys(
          node, {"name", "image", "user", "uid", "env", "workingDir", "command", "securityContext"},
          where);
      !s.ok()) {
    return s;
  }
  Container c;
  c.name = node["name"] ? node["name"].as<std::string>() : "";
  if (!ValidName(c.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": invalid container name \"", c.name, "\""));
  }
  std::string at = absl::StrCat(where, " (", c.name, ")");
  c.image = node["image"] ? node["image"].as<std::string>() : "kubesim/" + c.name + ":latest";
  std::string user = node["user"] ? node["user"].as<std::string>() : "nonroot";
  if (user == "root") {
    c.root = true;
  } else if (user != "nonroot") {
    return absl::InvalidArgumentError(absl::StrCat(at, ": user must be root or nonroot"));
  }
  if (node["uid"]) {
    c.uid = node["uid"].as<int64_t>();
    if (c.uid <= 0 || c.uid > 0x7fffffff || c.root) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ": uid must be a positive number on a nonroot container"));
    }
  }
  absl::StatusOr<std::map<std::string, std::string>> env = StringMap(node["env"], at + " env");
  if (!env.ok()) {
    return env.status();
  }
  for (auto& [k, v] : *env) {
    c.env.emplace_back(k, v);
  }
  if (node["workingDir"]) {
    c.working_dir = node["workingDir"].as<std::string>();
    if (c.working_dir.empty() || c.working_dir[0] != '/') {
      return absl::InvalidArgumentError(absl::StrCat(at, ": workingDir must be absolute"));
    }
  }
  absl::StatusOr<std::vector<std::string>> cmd = StringList(node["command"], at + " command");
  if (!cmd.ok()) {
    return cmd.status();
  }
  c.command = *std::move(cmd);
  if (node["securityContext"]) {
    absl::StatusOr<DeclaredSecurityContext> sc = ParseSecurityContext(node["securityContext"], at);
    if (!sc.ok()) {
      return sc.status();
    }
    c.security_context = *sc;
  }
  return c;
}

}  // namespace

const Namespace* Cluster::FindNamespace(const std::string& name) const {
  for (const Namespace& ns : namespaces) {
    if (ns.name == name) {
      return &ns;
    }
  }
  return nullptr;
}

const Pod* Cluster::FindPod(const std::string& ns, const std::string& name) const {
  for (const Pod& pod : pods) {
    if (pod.namespace_name == ns && pod.name == name) {
      return &pod;
    }
  }
  return nullptr;
}

bool Cluster::Allowed(const std::string& user, const std::string& verb, const std::string& resource,
                      const std::string& ns) const {
  auto has = [](const std::vector<std::string>& list, const std::string& v) {
    for (const std::string& item : list) {
      if (item == "*" || (!v.empty() && item == v)) {
        return true;
      }
    }
    return false;
  };
  for (const AccessRule& rule : access) {
    if (rule.user == user && has(rule.verbs, verb) && has(rule.resources, resource) &&
        has(rule.namespaces, ns)) {
      return true;
    }
  }
  return false;
}

bool Cluster::Authorize(const UserInfo& user, const Attributes& a) const {
  if (a.api_group.empty()) {
    std::string resource = a.subresource.empty() ? a.resource : a.resource + "/" + a.subresource;
    if (Allowed(user.name, a.verb, resource, a.namespace_name)) {
      return true;
    }
  }
  return rbac.Allows(user, a);
}

absl::StatusOr<Cluster> ParseCluster(const std::string& yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("cluster YAML: ", e.what()));
  }
  Cluster cluster;
  try {
    if (absl::Status s = CheckKeys(root, {"namespaces", "pods", "access", "rbac"}, "cluster");
        !s.ok()) {
      return s;
    }
    for (const auto& n : root["namespaces"]) {
      std::string where = absl::StrCat("namespaces[", cluster.namespaces.size(), "]");
      if (absl::Status s = CheckKeys(n, {"name", "labels"}, where); !s.ok()) {
        return s;
      }
      Namespace ns;
      ns.name = n["name"] ? n["name"].as<std::string>() : "";
      if (!ValidName(ns.name)) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": invalid name \"", ns.name, "\""));
      }
      if (cluster.FindNamespace(ns.name) != nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": duplicate namespace ", ns.name));
      }
      absl::StatusOr<std::map<std::string, std::string>> labels =
          StringMap(n["labels"], where + " labels");
      if (!labels.ok()) {
        return labels.status();
      }
      ns.labels = *std::move(labels);
      ns.created = kCreated;
      cluster.namespaces.push_back(std::move(ns));
    }
    for (const auto& p : root["pods"]) {
      std::string where = absl::StrCat("pods[", cluster.pods.size(), "]");
      if (absl::Status s = CheckKeys(p,
                                     {"name", "namespace", "labels", "annotations", "phase",
                                      "containers", "securityContext"},
                                     where);
          !s.ok()) {
        return s;
      }
      Pod pod;
      pod.name = p["name"] ? p["name"].as<std::string>() : "";
      pod.namespace_name = p["namespace"] ? p["namespace"].as<std::string>() : "default";
      if (!ValidName(pod.name)) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": invalid name \"", pod.name, "\""));
      }
      where = absl::StrCat(where, " (", pod.namespace_name, "/", pod.name, ")");
      if (cluster.FindNamespace(pod.namespace_name) == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": unknown namespace ", pod.namespace_name));
      }
      if (cluster.FindPod(pod.namespace_name, pod.name) != nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": duplicate pod"));
      }
      auto labels = StringMap(p["labels"], where + " labels");
      if (!labels.ok()) {
        return labels.status();
      }
      pod.labels = *std::move(labels);
      auto annotations = StringMap(p["annotations"], where + " annotations");
      if (!annotations.ok()) {
        return annotations.status();
      }
      pod.annotations = *std::move(annotations);
      if (p["phase"]) {
        pod.phase = p["phase"].as<std::string>();
        static const std::set<std::string> kPhases = {"Pending", "Running", "Succeeded", "Failed",
                                                      "Unknown"};
        if (kPhases.count(pod.phase) == 0) {
          return absl::InvalidArgumentError(absl::StrCat(where, ": unknown phase ", pod.phase));
        }
      }
      if (p["securityContext"]) {
        absl::StatusOr<DeclaredSecurityContext> sc =
            ParseSecurityContext(p["securityContext"], where);
        if (!sc.ok()) {
          return sc.status();
        }
        pod.security_context = *sc;
      }
      if (!p["containers"] || !p["containers"].IsSequence() || p["containers"].size() == 0) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": needs at least one container"));
      }
      for (const auto& c : p["containers"]) {
        absl::StatusOr<Container> container =
            ParseContainer(c, absl::StrCat(where, " containers[", pod.containers.size(), "]"));
        if (!container.ok()) {
          return container.status();
        }
        for (const Container& other : pod.containers) {
          if (other.name == container->name) {
            return absl::InvalidArgumentError(
                absl::StrCat(where, ": duplicate container ", other.name));
          }
        }
        pod.containers.push_back(*std::move(container));
      }
      char uid[48];
      std::snprintf(uid, sizeof(uid), "00000000-0000-4000-8000-%012zu", cluster.pods.size() + 1);
      pod.uid = uid;
      pod.created = kCreated;
      cluster.pods.push_back(std::move(pod));
    }
    for (const auto& a : root["access"]) {
      std::string where = absl::StrCat("access[", cluster.access.size(), "]");
      if (absl::Status s = CheckKeys(a, {"user", "verbs", "resources", "namespaces"}, where);
          !s.ok()) {
        return s;
      }
      AccessRule rule;
      rule.user = a["user"] ? a["user"].as<std::string>() : "";
      if (rule.user.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": needs a user"));
      }
      for (auto [key, field] :
           {std::pair{"verbs", &rule.verbs}, std::pair{"resources", &rule.resources},
            std::pair{"namespaces", &rule.namespaces}}) {
        auto list = StringList(a[key], absl::StrCat(where, " ", key));
        if (!list.ok()) {
          return list.status();
        }
        if (list->empty()) {
          return absl::InvalidArgumentError(absl::StrCat(where, ": ", key, " must not be empty"));
        }
        *field = *std::move(list);
      }
      cluster.access.push_back(std::move(rule));
    }
    absl::StatusOr<Rbac> rbac = ParseRbac(root["rbac"]);
    if (!rbac.ok()) {
      return rbac.status();
    }
    cluster.rbac = *std::move(rbac);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("cluster YAML: ", e.what()));
  }
  return cluster;
}

absl::StatusOr<Cluster> LoadCluster(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read cluster file ", path));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseCluster(ss.str());
}

absl::StatusOr<std::vector<TokenUser>> ParseTokenFile(const std::string& text) {
  std::vector<TokenUser> out;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripTrailingAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') {
      continue;
    }
    // Three plain columns, then an optional quoted group list that may contain commas.
    std::vector<std::string> cols = absl::StrSplit(line, absl::MaxSplits(',', 3));
    if (cols.size() < 3 || cols[0].empty() || cols[1].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token file line ", line_no, ": expected token,user,uid[,\"groups\"]"));
    }
    TokenUser t{cols[0], cols[1], cols[2], {}};
    if (cols.size() == 4) {
      absl::string_view groups = cols[3];
      if (groups.size() >= 2 && groups.front() == '"' && groups.back() == '"') {
        groups = groups.substr(1, groups.size() - 2);
      } else if (groups.find('"') != absl::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("token file line ", line_no, ": unbalanced quote in groups"));
      }
      for (absl::string_view g : absl::StrSplit(groups, ',', absl::SkipEmpty())) {
        t.groups.emplace_back(g);
      }
    }
    for (const TokenUser& other : out) {
      if (other.token == t.token) {
        return absl::InvalidArgumentError(
            absl::StrCat("token file line ", line_no, ": duplicate token"));
      }
    }
    out.push_back(std::move(t));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError("token file has no tokens");
  }
  return out;
}

}  // namespace podgate::kubesim
