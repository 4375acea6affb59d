// Fuzzes the policy document loader (services/policy/policy_loader.h): YAML parsing, strict
// validation and compilation, as `podgate-policy --check` and hot reload run them on a
// ConfigMap. Checks, besides crashes and undefined behaviour:
//  - a document is accepted exactly when no issue is an error, and an accepted one has a
//    compiled policy whose version is the document's SHA-256 (64 lower-case hex digits);
//  - every issue has a message and a position (line and column >= 0), and FirstError names
//    the first error;
//  - loading is deterministic (the same issues, the same rule count);
//  - an accepted policy decides a few fixed requests (commands and a shell) without crashing,
//    and every allow names its rule and carries the policy version.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "policy/policy_loader.h"
#include "require.h"

using podgate::fuzz::Require;

namespace policy = podgate::policy;
namespace v1 = podgate::policy::v1;

namespace {

bool IsHex64(const std::string& s) {
  if (s.size() != 64) {
    return false;
  }
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

v1::AuthorizeRequest Request(const char* user, const char* ns, std::vector<std::string> argv) {
  v1::AuthorizeRequest request;
  request.mutable_principal()->set_user(user);
  request.mutable_principal()->add_groups("developers");
  request.mutable_target()->set_namespace_(ns);
  request.mutable_target()->set_pod("orders-7d4b9c");
  request.mutable_target()->set_container("app");
  if (argv.empty()) {
    request.mutable_shell();
  } else {
    for (std::string& arg : argv) {
      request.mutable_command()->add_argv(std::move(arg));
    }
  }
  return request;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const policy::LoadResult result = policy::LoadPolicy(input, "fuzz.yaml");

  bool has_error = false;
  for (const policy::LoadIssue& issue : result.issues) {
    Require(!issue.message.empty(), "an issue has a message", input);
    Require(issue.line >= 0 && issue.column >= 0, "an issue has a position", input);
    has_error = has_error || issue.severity == v1::SEVERITY_ERROR;
  }
  Require(result.ok() == !has_error, "accepted exactly when no issue is an error", input);
  Require(result.ok() == result.FirstError().empty(), "FirstError names the first error", input);
  Require(result.version == policy::DocumentVersion(input) && IsHex64(result.version),
          "the version is the document's SHA-256", input);

  const policy::LoadResult again = policy::LoadPolicy(input, "fuzz.yaml");
  Require(again.ok() == result.ok() && again.issues.size() == result.issues.size() &&
              again.rule_count == result.rule_count,
          "loading is deterministic", input);
  for (size_t i = 0; i < again.issues.size(); ++i) {
    Require(again.issues[i].ToString() == result.issues[i].ToString(), "the same issues", input);
  }
  if (!result.ok()) {
    return 0;
  }

  Require(result.policy->version() == result.version, "the policy carries the version", input);
  Require(result.rule_count >= 0 &&
              static_cast<size_t>(result.rule_count) <= result.policy->rules().size() + 16,
          "rule count", input);
  const std::vector<v1::AuthorizeRequest> requests = {
      Request("dev", "app-shop", {"jstack", "1"}),
      Request("dev", "app-shop", {"jmap", "-histo", "1"}),
      Request("dev", "app-shop", {"cat", "/etc/shadow"}),
      Request("dev", "app-shop", {"curl", "-I", "http://169.254.169.254/latest"}),
      Request("sre", "staging", {"sh", "-c", "id"}),
      Request("sre", "staging", {}),
  };
  for (const v1::AuthorizeRequest& request : requests) {
    std::vector<std::string> explanation;
    const podgate::common::v1::Decision decision = result.policy->Evaluate(request, &explanation);
    if (decision.verdict() == podgate::common::v1::VERDICT_ALLOW) {
      Require(!decision.rule().empty(), "an allow names its rule", input);
      Require(decision.policy_version() == result.version, "an allow carries the version", input);
    }
  }
  return 0;
}
