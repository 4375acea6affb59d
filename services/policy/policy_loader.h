// Reads a policy document (YAML, apiVersion podgate.io/v1, see docs/policy.md), validates it
// strictly and compiles it. Every finding carries the 1-based line and column of the node at
// fault, so `podgate-policy --check` prints editor-friendly "file:line:col: error: ..." lines.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "podgate/policy/v1/policy.pb.h"
#include "policy/compiled_policy.h"

namespace podgate::policy {

struct LoadIssue {
  podgate::policy::v1::Severity severity = podgate::policy::v1::SEVERITY_ERROR;
  int line = 0;
  int column = 0;
  std::string message;

  // "line:column: error: message".
  std::string ToString() const;
};

struct LoadResult {
  // Null when any issue is an error.
  std::shared_ptr<const CompiledPolicy> policy;
  // Every finding, in document order.
  std::vector<LoadIssue> issues;
  // SHA-256 of the document bytes, hex.
  std::string version;
  int rule_count = 0;

  bool ok() const { return policy != nullptr; }
  // The first error as "line:column: message", for logs and GetPolicy.last_rejection.
  std::string FirstError() const;
};

// The largest document accepted, so a runaway ConfigMap cannot exhaust memory.
inline constexpr size_t kMaxDocumentBytes = 4 << 20;

// Parses, validates and compiles `document`; `source` names it (a file path) in the result.
LoadResult LoadPolicy(std::string_view document, std::string source);

// The version of a document: SHA-256 of its bytes, lower-case hex.
std::string DocumentVersion(std::string_view document);

}  // namespace podgate::policy
