#include "k8s/names.h"

#include "absl/strings/str_cat.h"

namespace podgate::k8s {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// One label of [a-z0-9-], starting and ending with [a-z0-9], of any length.
bool IsLabelText(std::string_view s) {
  if (s.empty() || !IsLowerAlnum(s.front()) || !IsLowerAlnum(s.back())) {
    return false;
  }
  for (char c : s) {
    if (!IsLowerAlnum(c) && c != '-') {
      return false;
    }
  }
  return true;
}

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// The value as an error shows it: at most 64 characters, then the length.
std::string Shown(std::string_view name) {
  if (name.size() <= 64) {
    return absl::StrCat("\"", AV(name), "\"");
  }
  return absl::StrCat("\"", AV(name.substr(0, 64)), "...\" (", name.size(), " characters)");
}

absl::Status Refuse(std::string_view field, std::string_view name, bool subdomain) {
  return absl::InvalidArgumentError(absl::StrCat(
      AV(field), " ", Shown(name), " is not a Kubernetes name: ",
      subdomain ? "a DNS-1123 subdomain is at most 253 characters of lower-case letters, digits, "
                  "'-' and '.', each dot-separated part starting and ending with a letter or digit"
                : "a DNS-1123 label is at most 63 characters of lower-case letters, digits and "
                  "'-', starting and ending with a letter or digit"));
}

}  // namespace

bool IsDns1123Label(std::string_view name) {
  return name.size() <= kMaxLabelLength && IsLabelText(name);
}

bool IsDns1123Subdomain(std::string_view name) {
  if (name.empty() || name.size() > kMaxSubdomainLength) {
    return false;
  }
  size_t start = 0;
  while (true) {
    const size_t dot = name.find('.', start);
    if (!IsLabelText(name.substr(start, dot == std::string_view::npos ? dot : dot - start))) {
      return false;
    }
    if (dot == std::string_view::npos) {
      return true;
    }
    start = dot + 1;
  }
}

absl::Status ValidateNamespaceName(std::string_view name) {
  return IsDns1123Label(name) ? absl::OkStatus() : Refuse("namespace", name, false);
}

absl::Status ValidatePodName(std::string_view name) {
  return IsDns1123Subdomain(name) ? absl::OkStatus() : Refuse("pod", name, true);
}

absl::Status ValidateContainerName(std::string_view name) {
  return IsDns1123Label(name) ? absl::OkStatus() : Refuse("container", name, false);
}

absl::Status ValidateClusterName(std::string_view name) {
  return IsDns1123Label(name) ? absl::OkStatus() : Refuse("cluster", name, false);
}

absl::Status ValidateTargetCluster(std::string_view name) {
  return name.empty() ? absl::OkStatus() : ValidateClusterName(name);
}

absl::Status ValidateTarget(std::string_view namespace_name, std::string_view pod,
                            std::string_view container) {
  if (absl::Status s = ValidateNamespaceName(namespace_name); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidatePodName(pod); !s.ok()) {
    return s;
  }
  return container.empty() ? absl::OkStatus() : ValidateContainerName(container);
}

}  // namespace podgate::k8s
