#include "impersonation.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace podgate::kubesim {
namespace {

constexpr char kExtraPrefix[] = "impersonate-extra-";
constexpr char kAuthenticationGroup[] = "authentication.k8s.io";

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// Go's url.PathUnescape; on a malformed escape the key is kept as sent, as the API server does.
std::string UnescapeExtraKey(const std::string& key) {
  std::string out;
  for (size_t i = 0; i < key.size(); ++i) {
    if (key[i] != '%') {
      out += key[i];
      continue;
    }
    if (i + 2 >= key.size()) {
      return key;
    }
    int hi = HexValue(key[i + 1]);
    int lo = HexValue(key[i + 2]);
    if (hi < 0 || lo < 0) {
      return key;
    }
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// "system:serviceaccount:<ns>:<name>" → (ns, name).
std::optional<std::pair<std::string, std::string>> SplitServiceAccount(const std::string& user) {
  std::vector<std::string> parts = absl::StrSplit(user, ':');
  if (parts.size() != 4 || parts[0] != "system" || parts[1] != "serviceaccount" ||
      parts[2].empty() || parts[3].empty()) {
    return std::nullopt;
  }
  return std::make_pair(parts[2], parts[3]);
}

}  // namespace

absl::StatusOr<ImpersonationRequest> ParseImpersonationHeaders(
    const std::vector<std::pair<std::string, std::string>>& headers) {
  ImpersonationRequest r;
  std::vector<std::string> asked;
  bool has_user = false;
  for (const auto& [raw_name, value] : headers) {
    std::string name = absl::AsciiStrToLower(raw_name);
    if (name == "impersonate-user") {
      // Like Go's Header.Get: the first value counts.
      if (!has_user) {
        has_user = true;
        r.user = value;
      }
    } else if (name == "impersonate-group") {
      r.groups.push_back(value);
      asked.push_back(absl::StrCat("group ", value));
    } else if (name == "impersonate-uid") {
      if (r.uid.empty()) {
        r.uid = value;
        asked.push_back(absl::StrCat("uid ", value));
      }
    } else if (absl::StartsWith(name, kExtraPrefix)) {
      std::string key = UnescapeExtraKey(name.substr(sizeof(kExtraPrefix) - 1));
      r.extras.emplace_back(key, value);
      asked.push_back(absl::StrCat("extra ", key, "=", value));
    }
  }
  if (r.user.empty() && !asked.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("requested [", absl::StrJoin(asked, ", "), "] without impersonating a user"));
  }
  return r;
}

ImpersonationResult Impersonate(const Cluster& cluster, const UserInfo& requestor,
                                const ImpersonationRequest& request) {
  ImpersonationResult result;
  UserInfo as;
  as.name = request.user;
  std::vector<Attributes> checks;
  if (auto sa = SplitServiceAccount(request.user); sa.has_value()) {
    checks.push_back({"impersonate", "", "serviceaccounts", "", sa->first, sa->second});
    if (request.groups.empty()) {
      // A service account's groups are fixed: the API server adds them.
      as.groups = {"system:serviceaccounts", "system:serviceaccounts:" + sa->first};
    }
  } else {
    checks.push_back({"impersonate", "", "users", "", "", request.user});
  }
  for (const std::string& group : request.groups) {
    checks.push_back({"impersonate", "", "groups", "", "", group});
    as.groups.push_back(group);
  }
  for (const auto& [key, value] : request.extras) {
    checks.push_back({"impersonate", kAuthenticationGroup, "userextras", key, "", value});
    as.extra[key].push_back(value);
  }
  if (!request.uid.empty()) {
    checks.push_back({"impersonate", kAuthenticationGroup, "uids", "", "", request.uid});
    as.uid = request.uid;
  }
  for (const Attributes& a : checks) {
    if (!cluster.Authorize(requestor, a)) {
      result.denied = a;
      return result;
    }
  }
  bool add_authenticated = true;
  for (const std::string& g : as.groups) {
    if (g == "system:authenticated" || g == "system:unauthenticated") {
      add_authenticated = false;
    }
  }
  if (as.name == "system:anonymous") {
    add_authenticated = false;
    bool has_unauthenticated = false;
    for (const std::string& g : as.groups) {
      has_unauthenticated |= g == "system:unauthenticated";
    }
    if (!has_unauthenticated) {
      as.groups.push_back("system:unauthenticated");
    }
  }
  if (add_authenticated) {
    as.groups.push_back("system:authenticated");
  }
  result.user = std::move(as);
  return result;
}

}  // namespace podgate::kubesim
