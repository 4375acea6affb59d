// The policy document model in compiled form, and its evaluator.
//
// A CompiledPolicy is built once per document version by the loader (policy_loader.h) and is
// immutable afterwards, so any number of threads evaluate it without locks. Evaluation order:
//
//  1. Structural checks on the request and the built-in argv checks (sizes, printable ASCII):
//     refused with rule "invalid-request" or "argv-check".
//  2. Deny rules that apply to the principal and target: the first that matches the action
//     denies. Deny rules win over everything, superusers included.
//  3. Superuser rules (commands only): allow any argv[0] that is a bare name or absolute path.
//  4. Allow rules for argv[0]: the first whose argv grammar accepts the argv allows.
//  5. Otherwise deny: with the closest rule's grammar complaint when a rule for the program
//     applied, else rule "default-deny".
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "podgate/common/v1/common.pb.h"
#include "podgate/policy/v1/policy.pb.h"
#include "re2/re2.h"

namespace podgate::policy {

// Rule names used by decisions that no document rule made.
inline constexpr char kDefaultDenyRule[] = "default-deny";
inline constexpr char kArgvCheckRule[] = "argv-check";
inline constexpr char kInvalidRequestRule[] = "invalid-request";

// The type of a flag value or a positional argument.
struct ValueType {
  enum class Kind {
    kInteger,
    kPid,
    kPort,
    kHostName,
    kIp,
    kHost,
    kUrl,
    kPath,
    kEnum,
    kRegex,
    kLiteral
  };
  Kind kind = Kind::kLiteral;
  // kInteger bounds (inclusive).
  long long min = 0;
  long long max = 0;
  // kUrl allowed schemes.
  std::vector<std::string> schemes;
  // kPath allowed prefixes, normalised.
  std::vector<std::string> prefixes;
  // kEnum values; kLiteral uses values[0].
  std::vector<std::string> values;
  // kRegex, full match.
  std::shared_ptr<const RE2> regex;
  std::string regex_source;

  // Checks `value`; returns why it is refused, or nullopt.
  std::optional<std::string> Check(const std::string& value) const;
  // e.g. "integer(1..60)", "url(http,https)", "path(/var/log/app)".
  std::string Describe() const;
};

struct FlagSpec {
  // Exactly as typed, e.g. "-c", "--max-time", "-histo:live".
  std::string name;
  std::optional<ValueType> value;
  bool required = false;
  bool repeatable = false;
  std::string description;
};

struct PositionalSpec {
  std::string name;
  ValueType type;
  bool optional = false;
  // Takes every remaining positional (at most max_count of them).
  bool repeat = false;
  int max_count = 1;
};

// What an allow rule lets a principal run: one program with an argv grammar.
struct Grammar {
  std::string program;
  // Absolute forms of argv[0] accepted as the same program, e.g. /usr/bin/curl.
  std::vector<std::string> program_paths;
  std::vector<FlagSpec> flags;
  absl::flat_hash_map<std::string, size_t> flag_index;
  std::vector<PositionalSpec> positionals;
  // Whether "--" ends the flags (only for programs known to honour it).
  bool double_dash = false;

  // Checks argv (argv[0] already matched); returns the complaint or nullopt when accepted.
  std::optional<std::string> Match(const std::vector<std::string>& argv) const;
  // One-line usage, e.g. "jmap -histo[:live] <pid>".
  std::string Usage() const;
};

// What a deny rule refuses.
struct DenyMatcher {
  // The programs denied (exact argv[0], or its basename when argv[0] is a path); empty with
  // `shell` only for shell denials.
  std::vector<std::string> programs;
  // When set, the rule denies only if some argument (argv[1..]) fully matches one of these.
  std::vector<std::shared_ptr<const RE2>> any_arg;
  std::vector<std::string> any_arg_sources;
  bool shell = false;
};

struct Rule {
  enum class Effect { kAllow, kDeny };
  enum class Kind { kCommand, kShell, kSuperuser };
  std::string id;
  std::string description;
  Effect effect = Effect::kAllow;
  Kind kind = Kind::kCommand;
  int line = 0;

  // Subjects: "*" in users means every authenticated user.
  absl::flat_hash_set<std::string> users;
  absl::flat_hash_set<std::string> groups;
  bool any_user = false;

  // Targets.
  std::vector<std::string> namespaces;            // globs, at least one
  std::vector<std::string> pods;                  // globs; empty = any pod
  std::map<std::string, std::string> pod_labels;  // all must match
  std::vector<std::string> containers;            // globs; empty = any (a request must name it)

  Grammar grammar;   // kCommand allow rules
  DenyMatcher deny;  // deny rules

  std::optional<absl::Duration> time_limit;
  int64_t output_limit_bytes = 0;
  bool allow_root = false;

  bool AppliesToSubject(const podgate::common::v1::Principal& principal) const;
  // Returns why the target is out of scope, or nullopt.
  std::optional<std::string> TargetMismatch(const podgate::common::v1::Target& target) const;
};

class CompiledPolicy {
 public:
  // Rules in document order; `version` is the SHA-256 hex of the document bytes.
  CompiledPolicy(std::vector<Rule> rules, std::string version, std::string source);

  // A policy with no rules: denies everything. Used before any document is loaded.
  static std::shared_ptr<const CompiledPolicy> Empty(std::string source);

  // Decides; with `explanation` non-null, appends one line per rule considered.
  podgate::common::v1::Decision Evaluate(const podgate::policy::v1::AuthorizeRequest& request,
                                         std::vector<std::string>* explanation = nullptr) const;

  // The commands the principal may run on the target, ordered by program then rule.
  podgate::policy::v1::ListAllowedResponse ListAllowed(
      const podgate::policy::v1::ListAllowedRequest& request) const;

  const std::string& version() const { return version_; }
  const std::string& source() const { return source_; }
  const std::vector<Rule>& rules() const { return rules_; }
  absl::Time loaded_time() const { return loaded_time_; }

 private:
  podgate::common::v1::Decision Decide(const podgate::policy::v1::AuthorizeRequest& request,
                                       std::vector<std::string>* explanation) const;
  podgate::common::v1::Decision Make(bool allow, const Rule* rule, std::string rule_id,
                                     std::string reason) const;
  bool ApplicableTo(const Rule& rule, const podgate::policy::v1::AuthorizeRequest& request,
                    std::vector<std::string>* explanation) const;

  std::vector<Rule> rules_;
  std::string version_;
  std::string source_;
  absl::Time loaded_time_;
  std::vector<size_t> deny_rules_;
  std::vector<size_t> superuser_rules_;
  std::vector<size_t> shell_rules_;
  absl::flat_hash_map<std::string, std::vector<size_t>> command_rules_;  // by program
};

}  // namespace podgate::policy
