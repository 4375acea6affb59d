// The red-team table (tests/policy/redteam.tsv) against the example policy
// (deploy/policy/example.yaml). Every line of the table is a command line as a user types it,
// who types it, where, and whether it must be denied (harmful) or allowed (harmless). Each line
// goes through SplitCommandLine exactly as the exec service does (a refusal counts as denied)
// and then through CompiledPolicy::Evaluate. The test lists EVERY line whose verdict differs,
// grouped by attack class, with the rule and reason of the decision, then fails once; it also
// prints the counters per class.
//
// The format is documented in the table's header. A malformed line fails the test with its line
// number, so the table cannot rot silently.
//
// To judge another policy or table without rebuilding (e.g. a policy being rewritten), set
// PODGATE_REDTEAM_POLICY=/path/policy.yaml and/or PODGATE_REDTEAM_TABLE=/path/table.tsv when
// running build/tests/unit/policy/policy_redteam_test.
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "exec/command_line.h"
#include "gtest/gtest.h"
#include "policy/policy_loader.h"

namespace podgate::policy {
namespace {

using podgate::common::v1::VERDICT_ALLOW;

constexpr char kShellRequest[] = "<shell>";

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string PathFromEnv(const char* variable, const char* fallback) {
  const char* value = std::getenv(variable);
  return value != nullptr && value[0] != '\0' ? value : fallback;
}

struct Who {
  std::string user;
  std::vector<std::string> groups;
};

std::optional<Who> LookUpWho(absl::string_view who) {
  if (who == "developer") return Who{"dev-alice", {"developers"}};
  if (who == "sre") return Who{"sre-bob", {"sre"}};
  if (who == "admin") return Who{"admin-carol", {"platform-admins"}};
  if (who == "nobody") return Who{"nobody-dan", {}};
  return std::nullopt;
}

struct TableLine {
  int line_number = 0;
  bool harmful = false;
  std::string who;
  std::string ns;
  std::string pod;
  std::string container;
  std::string command;  // as typed; kShellRequest asks for a shell
  std::string note;
  std::string attack_class;  // the note's first word
};

bool IsClassName(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

// Parses the table; every malformed line adds one message "name:N: what is wrong" to `errors`.
std::vector<TableLine> ParseTable(absl::string_view text, absl::string_view name,
                                  std::vector<std::string>* errors) {
  std::vector<TableLine> lines;
  int number = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++number;
    const auto fail = [&](absl::string_view what) {
      errors->push_back(absl::StrCat(name, ":", number, ": ", what));
    };
    if (raw.empty() || raw.front() == '#') continue;
    if (raw.find('\r') != absl::string_view::npos) {
      fail("carriage return (save the table with LF line ends)");
      continue;
    }
    const std::vector<absl::string_view> fields = absl::StrSplit(raw, '\t');
    if (fields.size() != 5) {
      fail(
          absl::StrCat("expected 5 tab-separated fields (expected, who, target, line, note), "
                       "found ",
                       fields.size()));
      continue;
    }
    TableLine t;
    t.line_number = number;
    if (fields[0] == "harmful") {
      t.harmful = true;
    } else if (fields[0] != "harmless") {
      fail(absl::StrCat("expected must be 'harmful' or 'harmless', not '", fields[0], "'"));
      continue;
    }
    if (!LookUpWho(fields[1]).has_value()) {
      fail(absl::StrCat("who must be developer, sre, admin or nobody, not '", fields[1], "'"));
      continue;
    }
    t.who = std::string(fields[1]);
    const std::vector<absl::string_view> target = absl::StrSplit(fields[2], '/');
    if (target.size() != 3 || target[0].empty() || target[1].empty()) {
      fail(
          absl::StrCat("target must be namespace/pod/container (the container may be empty), "
                       "not '",
                       fields[2], "'"));
      continue;
    }
    t.ns = std::string(target[0]);
    t.pod = std::string(target[1]);
    t.container = std::string(target[2]);
    if (fields[3].empty() || fields[3].front() == ' ' || fields[3].back() == ' ') {
      fail("the command line is empty or starts or ends with a space");
      continue;
    }
    t.command = std::string(fields[3]);
    const size_t space = fields[4].find(' ');
    const absl::string_view attack_class = fields[4].substr(0, space);
    if (!IsClassName(attack_class) || space == absl::string_view::npos ||
        space + 1 == fields[4].size()) {
      fail(absl::StrCat("note must be '<class> <text>' with a class of [a-z0-9-], not '", fields[4],
                        "'"));
      continue;
    }
    t.attack_class = std::string(attack_class);
    t.note = std::string(fields[4]);
    lines.push_back(std::move(t));
  }
  return lines;
}

struct Outcome {
  bool allowed = false;
  bool split_refused = false;
  std::string rule;
  std::string reason;
  std::string argv;  // the split argv, for the mismatch report
};

Outcome Decide(const CompiledPolicy& policy, const TableLine& t) {
  Outcome o;
  podgate::policy::v1::AuthorizeRequest request;
  const Who who = *LookUpWho(t.who);
  request.mutable_principal()->set_user(who.user);
  for (const std::string& g : who.groups) {
    request.mutable_principal()->add_groups(g);
  }
  request.mutable_target()->set_namespace_(t.ns);
  request.mutable_target()->set_pod(t.pod);
  request.mutable_target()->set_container(t.container);
  if (t.command == kShellRequest) {
    request.mutable_shell();
    o.argv = kShellRequest;
  } else {
    absl::StatusOr<std::vector<std::string>> argv = podgate::exec::SplitCommandLine(t.command);
    if (!argv.ok()) {
      o.split_refused = true;
      o.rule = "(splitter)";
      o.reason = std::string(argv.status().message());
      return o;
    }
    for (const std::string& a : *argv) {
      request.mutable_command()->add_argv(a);
    }
    o.argv = absl::StrCat("[", absl::StrJoin(*argv, "] ["), "]");
  }
  const podgate::common::v1::Decision d = policy.Evaluate(request);
  o.allowed = d.verdict() == VERDICT_ALLOW;
  o.rule = d.rule();
  o.reason = d.reason();
  return o;
}

TEST(RedTeamTableParserTest, MalformedLinesAreReportedWithTheirNumbers) {
  const std::string text =
      "# comment\n"
      "\n"
      "harmful\tdeveloper\tapp-shop/p/app\tjstack -F 1\tjstack ok\n"    // 3: fine
      "harmfull\tdeveloper\tapp-shop/p/app\tjstack 1\tjstack typo\n"    // 4
      "harmful\tdev\tapp-shop/p/app\tjstack 1\tjstack who\n"            // 5
      "harmful\tdeveloper\tapp-shop/p\tjstack 1\tjstack target\n"       // 6
      "harmful\tdeveloper\t/p/app\tjstack 1\tjstack namespace\n"        // 7
      "harmful\tdeveloper\tapp-shop/p/app\t\tjstack empty\n"            // 8
      "harmful\tdeveloper\tapp-shop/p/app\t jstack 1\tjstack space\n"   // 9
      "harmful\tdeveloper\tapp-shop/p/app\tjstack 1\tJStack caps\n"     // 10
      "harmful\tdeveloper\tapp-shop/p/app\tjstack 1\tjstack\n"          // 11: no text
      "harmful developer app-shop/p/app jstack 1 jstack spaces\n"       // 12
      "harmful\tdeveloper\tapp-shop/p/app\tjstack 1\tjstack x\tmore\n"  // 13
      "harmless\tsre\tstaging/web-1/\t<shell>\tshell-mode ok\r\n"       // 14
      "harmless\tsre\tstaging/web-1/\t<shell>\tshell-mode ok\n";        // 15: fine
  std::vector<std::string> errors;
  const std::vector<TableLine> lines = ParseTable(text, "t.tsv", &errors);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].line_number, 3);
  EXPECT_TRUE(lines[0].harmful);
  EXPECT_EQ(lines[0].attack_class, "jstack");
  EXPECT_EQ(lines[1].line_number, 15);
  EXPECT_EQ(lines[1].container, "");
  EXPECT_EQ(lines[1].command, "<shell>");
  std::vector<std::string> where;
  for (const std::string& e : errors) {
    where.push_back(e.substr(0, e.find(':', 6)));
  }
  EXPECT_EQ(absl::StrJoin(where, " "),
            "t.tsv:4 t.tsv:5 t.tsv:6 t.tsv:7 t.tsv:8 t.tsv:9 t.tsv:10 t.tsv:11 t.tsv:12 t.tsv:13 "
            "t.tsv:14")
      << absl::StrJoin(errors, "\n");
  EXPECT_NE(errors[0].find("'harmfull'"), std::string::npos) << errors[0];
  EXPECT_NE(errors[8].find("found 1"), std::string::npos) << errors[8];
}

class RedTeamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    table_path_ = PathFromEnv("PODGATE_REDTEAM_TABLE", PODGATE_REDTEAM_TABLE);
    policy_path_ = PathFromEnv("PODGATE_REDTEAM_POLICY", PODGATE_EXAMPLE_POLICY);
    const std::optional<std::string> table = ReadFile(table_path_);
    ASSERT_TRUE(table.has_value()) << "cannot read " << table_path_;
    std::vector<std::string> errors;
    lines_ = ParseTable(*table, table_path_, &errors);
    ASSERT_TRUE(errors.empty()) << errors.size() << " malformed table line(s):\n"
                                << absl::StrJoin(errors, "\n");
  }

  std::string table_path_;
  std::string policy_path_;
  std::vector<TableLine> lines_;
};

TEST_F(RedTeamTest, TableIsLargeAndBalanced) {
  int harmless = 0;
  for (const TableLine& t : lines_) {
    harmless += t.harmful ? 0 : 1;
  }
  EXPECT_GE(lines_.size(), 350u);
  EXPECT_GE(harmless, 60);
  EXPECT_GE(static_cast<int>(lines_.size()) - harmless, 250);
}

TEST_F(RedTeamTest, ExamplePolicyDecidesEveryLineAsExpected) {
  const std::optional<std::string> document = ReadFile(policy_path_);
  ASSERT_TRUE(document.has_value()) << "cannot read " << policy_path_;
  const LoadResult loaded = LoadPolicy(*document, policy_path_);
  std::vector<std::string> issues;
  for (const LoadIssue& issue : loaded.issues) {
    issues.push_back(issue.ToString());
  }
  ASSERT_TRUE(loaded.ok()) << policy_path_ << " does not load:\n" << absl::StrJoin(issues, "\n");

  struct ClassCount {
    int harmful = 0;
    int harmful_denied = 0;
    int harmless = 0;
    int harmless_allowed = 0;
    std::vector<std::string> mismatches;
  };
  std::map<std::string, ClassCount> by_class;
  int harmful = 0, harmful_denied = 0, split_refused = 0, harmless = 0, harmless_allowed = 0;
  int mismatches = 0;
  for (const TableLine& t : lines_) {
    const Outcome o = Decide(*loaded.policy, t);
    ClassCount& c = by_class[t.attack_class];
    const bool as_expected = t.harmful != o.allowed;
    if (t.harmful) {
      ++harmful;
      ++c.harmful;
      harmful_denied += o.allowed ? 0 : 1;
      c.harmful_denied += o.allowed ? 0 : 1;
      split_refused += o.split_refused ? 1 : 0;
    } else {
      ++harmless;
      ++c.harmless;
      harmless_allowed += o.allowed ? 1 : 0;
      c.harmless_allowed += o.allowed ? 1 : 0;
    }
    if (!as_expected) {
      ++mismatches;
      c.mismatches.push_back(
          absl::StrCat("  line ", t.line_number, ": ",
                       t.harmful ? "harmful line ALLOWED" : "harmless line DENIED", " by ", o.rule,
                       "\n    ", t.who, " @ ", t.ns, "/", t.pod, "/", t.container, " $ ", t.command,
                       "\n    argv: ", o.argv, "\n    note: ", t.note, "\n    reason: ", o.reason));
    }
  }

  std::ostringstream summary;
  summary << "red-team table " << table_path_ << " against " << policy_path_ << " (version "
          << loaded.version.substr(0, 12) << "):\n"
          << "  " << harmful_denied << " of " << harmful << " harmful lines denied ("
          << split_refused << " by the splitter), " << harmless_allowed << " of " << harmless
          << " harmless lines allowed, " << mismatches << " mismatch(es)\n"
          << "  class             harmful denied  harmless allowed\n";
  const auto pad = [](std::string s, size_t width) {
    s.resize(std::max(width, s.size() + 1), ' ');
    return s;
  };
  for (const auto& [name, c] : by_class) {
    summary << "  " << pad(name, 18) << pad(absl::StrCat(c.harmful_denied, "/", c.harmful), 16)
            << absl::StrCat(c.harmless_allowed, "/", c.harmless) << "\n";
  }
  std::cout << summary.str() << std::flush;

  if (mismatches > 0) {
    std::ostringstream report;
    report << mismatches << " line(s) of " << table_path_ << " decided against expectation by "
           << policy_path_ << ":\n";
    for (const auto& [name, c] : by_class) {
      if (c.mismatches.empty()) continue;
      report << "[" << name << "] " << c.mismatches.size() << "\n"
             << absl::StrJoin(c.mismatches, "\n") << "\n";
    }
    ADD_FAILURE() << report.str() << summary.str();
  }
}

}  // namespace
}  // namespace podgate::policy
