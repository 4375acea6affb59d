// The loader's strict validation: every refusal names the line and column of the node at
// fault, and nothing invalid compiles.
#include "policy/policy_loader.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podgate::policy {
namespace {

using ::testing::HasSubstr;

constexpr char kHeader[] = "apiVersion: podgate.io/v1\nkind: CommandPolicy\nrules:\n";

// A rule with the standard subjects and targets, then `body` (already indented by 4).
std::string Rule(const std::string& id, const std::string& body,
                 const std::string& effect = "allow") {
  return absl::StrCat("  - id: ", id, "\n    effect: ", effect,
                      "\n    subjects: {groups: [dev]}\n    targets: {namespaces: [app]}\n", body);
}

std::vector<std::string> Issues(const std::string& doc) {
  LoadResult r = LoadPolicy(doc, "test.yaml");
  std::vector<std::string> out;
  for (const LoadIssue& issue : r.issues) {
    out.push_back(issue.ToString());
  }
  return out;
}

std::string Joined(const std::string& doc) { return absl::StrJoin(Issues(doc), "\n"); }

TEST(PolicyLoaderTest, MinimalDocumentCompiles) {
  const std::string doc = absl::StrCat(kHeader, Rule("r1", "    command: {program: free}\n"));
  LoadResult r = LoadPolicy(doc, "test.yaml");
  ASSERT_TRUE(r.ok()) << r.FirstError();
  EXPECT_TRUE(r.issues.empty());
  EXPECT_EQ(r.rule_count, 1);
  EXPECT_EQ(r.version, DocumentVersion(doc));
  EXPECT_EQ(r.policy->version(), r.version);
  EXPECT_EQ(r.policy->source(), "test.yaml");
}

TEST(PolicyLoaderTest, VersionIsTheSha256OfTheBytes) {
  EXPECT_EQ(DocumentVersion(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(DocumentVersion("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(PolicyLoaderTest, UnknownKeyNamesLineAndColumn) {
  const std::string doc = absl::StrCat(kHeader, Rule("dev-curl", "    comand: {program: curl}\n"));
  EXPECT_THAT(Joined(doc), HasSubstr("8:5: error: unknown key 'comand' in a rule"));
  EXPECT_FALSE(LoadPolicy(doc, "").ok());
}

TEST(PolicyLoaderTest, UnknownTopLevelAndNestedKeys) {
  EXPECT_THAT(Joined(absl::StrCat(kHeader, "  []\nextra: 1\n")),
              HasSubstr("5:1: error: unknown key 'extra' in the document"));
  const std::string doc = absl::StrCat(
      kHeader, Rule("r",
                    "    command:\n      program: curl\n      flags:\n        - {name: -m, "
                    "valu: integer}\n"));
  EXPECT_THAT(Joined(doc), HasSubstr("11:22: error: unknown key 'valu' in a flag of rule r"));
}

TEST(PolicyLoaderTest, DuplicateKeysAreRefused) {
  const std::string doc =
      absl::StrCat(kHeader, Rule("r", "    command: {program: free}\n    effect: deny\n"));
  EXPECT_THAT(Joined(doc), HasSubstr("9:5: error: duplicate key 'effect' in a rule"));
}

TEST(PolicyLoaderTest, BadRegexNamesThePattern) {
  const std::string doc = absl::StrCat(
      kHeader,
      Rule("r",
           "    command:\n      program: grep\n      args:\n        - {name: x, type: regex, "
           "pattern: \"a(b\"}\n"));
  EXPECT_THAT(Joined(doc), HasSubstr("11:43: error: bad regex 'a(b': missing ): a(b"));
  const std::string deny = absl::StrCat(
      kHeader, Rule("d", "    deny: {programs: [curl], anyArg: [\"[z-a]\"]}\n", "deny"));
  EXPECT_THAT(Joined(deny), HasSubstr("8:39: error: bad regex '[z-a]'"));
}

TEST(PolicyLoaderTest, YamlSyntaxErrorHasAPlace) {
  EXPECT_THAT(Joined("apiVersion: podgate.io/v1\nrules: [\n  - {a: b\n"),
              HasSubstr("error: YAML syntax:"));
  const auto issues = Issues("a: [b\n");
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].rfind("0:0", 0), 0u) << issues[0];
}

TEST(PolicyLoaderTest, HeaderIsChecked) {
  EXPECT_THAT(Joined("apiVersion: podgate.io/v2\nkind: CommandPolicy\nrules: []\n"),
              HasSubstr("1:13: error: apiVersion must be podgate.io/v1"));
  EXPECT_THAT(Joined("apiVersion: podgate.io/v1\nkind: Policy\nrules: []\n"),
              HasSubstr("2:7: error: kind must be CommandPolicy"));
  EXPECT_THAT(Joined("apiVersion: podgate.io/v1\nkind: CommandPolicy\n"),
              HasSubstr("rules must be a list"));
  EXPECT_THAT(Joined(""), HasSubstr("the document is empty"));
  EXPECT_THAT(Joined("- a\n- b\n"), HasSubstr("1:1: error: the document must be a mapping"));
}

TEST(PolicyLoaderTest, HugeDocumentIsRefusedBeforeParsing) {
  const std::string doc(kMaxDocumentBytes + 1, '#');
  EXPECT_THAT(Joined(doc), HasSubstr("bytes long (the limit is 4194304)"));
}

TEST(PolicyLoaderTest, EmptyRulesDenyEverything) {
  LoadResult r = LoadPolicy("apiVersion: podgate.io/v1\nkind: CommandPolicy\nrules: []\n", "");
  ASSERT_TRUE(r.ok());
  podgate::policy::v1::AuthorizeRequest req;
  req.mutable_principal()->set_user("u");
  req.mutable_target()->set_namespace_("n");
  req.mutable_target()->set_pod("p");
  req.mutable_command()->add_argv("free");
  EXPECT_EQ(r.policy->Evaluate(req).rule(), "default-deny");
}

TEST(PolicyLoaderTest, RuleIdsAreCheckedAndUnique) {
  const std::string doc = absl::StrCat(kHeader, Rule("r", "    command: {program: free}\n"),
                                       Rule("r", "    command: {program: df}\n"),
                                       Rule("Bad Id", "    command: {program: ps}\n"),
                                       Rule("default-deny", "    command: {program: ss}\n"));
  const std::string all = Joined(doc);
  EXPECT_THAT(all, HasSubstr("9:9: error: duplicate rule id 'r' (first on line 4)"));
  EXPECT_THAT(all, HasSubstr("14:9: error: rule id 'Bad Id' must be lower-case"));
  EXPECT_THAT(all, HasSubstr("19:9: error: rule id 'default-deny'"));
}

TEST(PolicyLoaderTest, UnreachableRulesAreErrors) {
  const std::string shadowed =
      absl::StrCat(kHeader, Rule("allow-curl", "    command: {program: curl}\n"),
                   "  - id: no-curl\n    effect: deny\n    subjects: {users: ['*']}\n"
                   "    targets: {namespaces: ['*']}\n    deny: {programs: [curl]}\n");
  EXPECT_THAT(Joined(shadowed),
              HasSubstr("4:1: error: unreachable: rule allow-curl is always overridden by deny "
                        "rule no-curl"));
  // A narrower denial (other namespaces, or only some arguments) leaves the rule reachable.
  const std::string narrower =
      absl::StrCat(kHeader, Rule("allow-curl", "    command: {program: curl}\n"),
                   "  - id: no-curl\n    effect: deny\n    subjects: {users: ['*']}\n"
                   "    targets: {namespaces: [prod]}\n    deny: {programs: [curl]}\n");
  EXPECT_TRUE(LoadPolicy(narrower, "").ok()) << Joined(narrower);
  const std::string repeated = absl::StrCat(kHeader, Rule("a", "    command: {program: free}\n"),
                                            Rule("b", "    command: {program: free}\n"));
  EXPECT_THAT(Joined(repeated),
              HasSubstr("9:5: error: unreachable: rule b repeats rule a (same program, grammar "
                        "and scope)"));
  const std::string after_repeat =
      absl::StrCat(kHeader, Rule("c",
                                 "    command:\n      program: cat\n      args:\n"
                                 "        - {name: f, type: path, prefixes: [/x], repeat: true}\n"
                                 "        - {name: g, type: pid}\n"));
  EXPECT_THAT(Joined(after_repeat),
              HasSubstr("12:11: error: unreachable: an argument after a repeated one"));
}

TEST(PolicyLoaderTest, ConflictingDefinitionsAreErrors) {
  const std::string doc = absl::StrCat(
      kHeader, Rule("r", "    command:\n      program: curl\n      flags: [-s, -I, -s]\n"));
  EXPECT_THAT(Joined(doc),
              HasSubstr("10:23: error: conflicting: flag -s is listed twice in rule r"));
  const std::string kinds =
      absl::StrCat(kHeader, Rule("r", "    shell: true\n    command: {program: free}\n"));
  EXPECT_THAT(Joined(kinds),
              HasSubstr("needs exactly one of command, shell: true, superuser: true"));
  const std::string deny_with_command = absl::StrCat(
      kHeader, Rule("d", "    deny: {programs: [sh]}\n    command: {program: sh}\n", "deny"));
  EXPECT_THAT(Joined(deny_with_command),
              HasSubstr("9:14: error: 'command' does not apply to deny rule d"));
  const std::string ambiguous =
      absl::StrCat(kHeader, Rule("r",
                                 "    command:\n      program: x\n      args:\n"
                                 "        - {name: a, type: pid, optional: true}\n"
                                 "        - {name: b, type: pid}\n"));
  EXPECT_THAT(Joined(ambiguous), HasSubstr("a required argument after an optional one"));
}

// Whom to ask goes with every denial (metadata, overridden per rule); both are checked as text
// printed in a terminal and a link the page opens.
TEST(PolicyLoaderTest, ContactAndRequestUrlAreChecked) {
  const std::string rules = Rule("r", "    command: {program: free}\n");
  const auto with_metadata = [&](const std::string& metadata) {
    return absl::StrCat("apiVersion: podgate.io/v1\nkind: CommandPolicy\nmetadata: ", metadata,
                        "\nrules:\n", rules);
  };
  LoadResult ok = LoadPolicy(
      with_metadata("{name: x, contact: \"#platform-help \xe6\x88\x96 platform@example.com\", "
                    "requestUrl: \"https://access.example.com/request?tool=podgate\"}"),
      "test.yaml");
  ASSERT_TRUE(ok.ok()) << ok.FirstError();
  EXPECT_EQ(ok.policy->contact().contact, "#platform-help \xe6\x88\x96 platform@example.com");
  EXPECT_EQ(ok.policy->contact().request_url, "https://access.example.com/request?tool=podgate");
  EXPECT_THAT(Joined(with_metadata("{contact: \"a\\e[31mb\"}")),
              HasSubstr("contact contains a control character U+001B"));
  EXPECT_THAT(Joined(with_metadata("{contact: \"\"}")),
              HasSubstr("contact must be 1 to 256 bytes of text"));
  EXPECT_THAT(Joined(with_metadata(absl::StrCat("{contact: ", std::string(257, 'a'), "}"))),
              HasSubstr("contact must be 1 to 256 bytes of text"));
  EXPECT_THAT(Joined(with_metadata("{requestUrl: \"javascript:alert(1)\"}")),
              HasSubstr("requestUrl: "));
  EXPECT_THAT(Joined(with_metadata("{requestUrl: \"https://user@example.com/\"}")),
              HasSubstr("requestUrl: "));
  EXPECT_THAT(Joined(with_metadata("{requestUrl: \"https://ex ample.com/\"}")),
              HasSubstr("requestUrl: "));
  EXPECT_THAT(Joined(with_metadata("{contact: [a]}")), HasSubstr("contact must be a string"));
  EXPECT_THAT(Joined(with_metadata("{owner: a}")), HasSubstr("unknown key 'owner' in metadata"));
  // Per rule, the same checks.
  LoadResult per_rule =
      LoadPolicy(absl::StrCat(kHeader, Rule("r",
                                            "    contact: \"#shop-team\"\n"
                                            "    requestUrl: https://shop.example.com/access\n"
                                            "    command: {program: free}\n")),
                 "test.yaml");
  ASSERT_TRUE(per_rule.ok()) << per_rule.FirstError();
  EXPECT_EQ(per_rule.policy->rules()[0].contact.contact, "#shop-team");
  EXPECT_EQ(per_rule.policy->rules()[0].contact.request_url, "https://shop.example.com/access");
  EXPECT_THAT(Joined(absl::StrCat(kHeader, Rule("r",
                                                "    requestUrl: ftp://x/\n"
                                                "    command: {program: free}\n"))),
              HasSubstr("requestUrl: "));
}

// Descriptions and the values of text types may be written in any language; names may not.
TEST(PolicyLoaderTest, TextMayBeInAnyLanguageNamesMayNot) {
  LoadResult r = LoadPolicy(
      absl::StrCat(kHeader,
                   Rule("r",
                        "    description: \"\xe6\x9f\xa5\xe7\x9c\x8b\xe6\x97\xa5\xe5\xbf\x97\"\n"
                        "    command:\n      program: cat\n      args:\n"
                        "        - {name: f, type: path, prefixes: "
                        "[\"/var/log/\xe5\xba\x94\xe7\x94\xa8\"]}\n")),
      "test.yaml");
  ASSERT_TRUE(r.ok()) << r.FirstError();
  EXPECT_EQ(r.policy->rules()[0].description, "\xe6\x9f\xa5\xe7\x9c\x8b\xe6\x97\xa5\xe5\xbf\x97");
  EXPECT_THAT(Joined(absl::StrCat(kHeader, Rule("r",
                                                "    description: \"a\\u202eb\"\n"
                                                "    command: {program: free}\n"))),
              HasSubstr("description contains a bidi control U+202E"));
  EXPECT_THAT(Joined(absl::StrCat(kHeader, Rule("r",
                                                "    command:\n      program: free\n"
                                                "      flags: [\"-\xe4\xbd\xa0\"]\n"))),
              HasSubstr("non-ASCII character U+4F60"));
}

TEST(PolicyLoaderTest, ProgramsFlagsAndTypesAreChecked) {
  const auto one = [](const std::string& body) {
    return Joined(absl::StrCat(kHeader, Rule("r", body)));
  };
  EXPECT_THAT(one("    command: {program: /bin/ls}\n"), HasSubstr("must be a bare name"));
  EXPECT_THAT(one("    command: {program: ./ls}\n"), HasSubstr("must be a bare name"));
  EXPECT_THAT(one("    command: {program: \"l\\u00f3\"}\n"),
              HasSubstr("non-ASCII character U+00F3"));
  EXPECT_THAT(one("    command: {program: ls, paths: [/bin/../bin/ls]}\n"),
              HasSubstr("must be absolute and normalised"));
  EXPECT_THAT(one("    command: {program: ls, paths: [/bin/cat]}\n"),
              HasSubstr("does not end in the program name ls"));
  EXPECT_THAT(one("    command: {program: ls, flags: [l]}\n"), HasSubstr("must start with '-'"));
  EXPECT_THAT(one("    command: {program: ls, flags: [--]}\n"), HasSubstr("must start with '-'"));
  EXPECT_THAT(one("    command: {program: ls, flags: [{name: -n, value: number}]}\n"),
              HasSubstr("unknown type 'number' in the value of flag -n (integer, pid, port, "
                        "hostname, ip, host, url, path, enum, regex, literal)"));
  EXPECT_THAT(one("    command: {program: ls, flags: [{name: -n, value: {type: integer, min: 5, "
                  "max: 1}}]}\n"),
              HasSubstr("min 5 is above max 1"));
  EXPECT_THAT(one("    command: {program: ls, flags: [{name: -n, value: {type: pid, min: 5}}]}\n"),
              HasSubstr("'min' does not apply to type pid"));
  EXPECT_THAT(one("    command: {program: cat, args: [{name: f, type: path}]}\n"),
              HasSubstr("of type path needs 'prefixes'"));
  EXPECT_THAT(
      one("    command: {program: cat, args: [{name: f, type: path, prefixes: [/var/]}]}\n"),
      HasSubstr("prefix '/var/' must be an absolute normalised path"));
  EXPECT_THAT(one("    command: {program: x, args: [{name: f, type: enum}]}\n"),
              HasSubstr("of type enum needs 'values'"));
  EXPECT_THAT(one("    command: {program: x, args: [{name: f, type: enum, values: []}]}\n"),
              HasSubstr("values is empty"));
  EXPECT_THAT(one("    command: {program: x, args: [{name: f, type: pid, maxCount: 3}]}\n"),
              HasSubstr("maxCount needs repeat: true"));
  EXPECT_THAT(one("    command: {program: x}\n    limits: {timeLimit: forever}\n"),
              HasSubstr("timeLimit must be a duration"));
  EXPECT_THAT(one("    command: {program: x}\n    limits: {outputLimitBytes: 0}\n"),
              HasSubstr("outputLimitBytes must be between 1"));
  EXPECT_THAT(one("    command: {program: x}\n    limits: {outputKeep: middle}\n"),
              HasSubstr("outputKeep must be start or end"));
  EXPECT_THAT(one("    command: {program: x}\n    limits: {outputKeep: end, outputLimitBytes: "
                  "8388609}\n"),
              HasSubstr("outputKeep: end holds the output in exec until the command ends: "
                        "outputLimitBytes must be at most 8388608"));
  // From the defaults too: a rule that keeps the end inherits a limit too large for it.
  EXPECT_THAT(Joined(absl::StrCat("apiVersion: podgate.io/v1\nkind: CommandPolicy\n"
                                  "defaults: {outputLimitBytes: 16777216}\nrules:\n",
                                  Rule("r",
                                       "    command: {program: x}\n"
                                       "    limits: {outputKeep: end}\n"))),
              HasSubstr("outputLimitBytes must be at most 8388608"));
  EXPECT_THAT(one("    command: {program: x}\n    allowRoot: yes\n"),
              HasSubstr("allowRoot must be true or false"));
}

TEST(PolicyLoaderTest, SubjectsAndTargetsAreRequired) {
  const std::string no_subjects = absl::StrCat(
      kHeader, "  - id: r\n    effect: allow\n    targets: {namespaces: [a]}\n    shell: true\n");
  EXPECT_THAT(Joined(no_subjects), HasSubstr("4:5: error: rule r has no 'subjects'"));
  const std::string empty_subjects = absl::StrCat(
      kHeader,
      "  - id: r\n    effect: allow\n    subjects: {}\n    targets: {namespaces: [a]}\n"
      "    shell: true\n");
  EXPECT_THAT(Joined(empty_subjects), HasSubstr("6:15: error: rule r names no users or groups"));
  const std::string no_ns = absl::StrCat(
      kHeader,
      "  - id: r\n    effect: allow\n    subjects: {users: [a]}\n    targets: {pods: [x]}\n"
      "    shell: true\n");
  EXPECT_THAT(Joined(no_ns), HasSubstr("7:14: error: the targets of rule r need 'namespaces'"));
  const std::string star_group =
      absl::StrCat(kHeader,
                   "  - id: r\n    effect: allow\n    subjects: {groups: ['*']}\n"
                   "    targets: {namespaces: [a]}\n    shell: true\n");
  EXPECT_THAT(Joined(star_group), HasSubstr("groups cannot be '*'"));
  const std::string no_effect =
      absl::StrCat(kHeader,
                   "  - id: r\n    subjects: {users: [a]}\n    targets: {namespaces: [a]}\n"
                   "    shell: true\n");
  EXPECT_THAT(Joined(no_effect), HasSubstr("4:5: error: rule r: effect must be allow or deny"));
}

TEST(PolicyLoaderTest, FileSchemeIsAWarningNotAnError) {
  const std::string doc = absl::StrCat(
      kHeader, Rule("r",
                    "    command:\n      program: curl\n      args:\n        - {name: u, "
                    "type: url, schemes: [https, file]}\n"));
  LoadResult r = LoadPolicy(doc, "");
  EXPECT_TRUE(r.ok());
  EXPECT_THAT(Joined(doc), HasSubstr("11:41: warning: scheme 'file' lets a URL read any file"));
}

TEST(PolicyLoaderTest, IssuesComeInDocumentOrder) {
  const std::string doc = absl::StrCat(kHeader, Rule("a", "    bogus1: 1\n    shell: true\n"),
                                       Rule("b", "    bogus2: 1\n    shell: true\n"));
  const auto issues = Issues(doc);
  ASSERT_EQ(issues.size(), 2u);
  EXPECT_THAT(issues[0], HasSubstr("bogus1"));
  EXPECT_THAT(issues[1], HasSubstr("bogus2"));
}

// Every kind has one name, read and written through the same table: the loader accepts what
// ListAllowed's hints and Describe() print.
TEST(PolicyLoaderTest, EveryKindNameRoundTrips) {
  int kinds = 0;
  for (int i = 0; i <= static_cast<int>(ValueType::Kind::kLiteral); ++i) {
    const auto kind = static_cast<ValueType::Kind>(i);
    const std::string_view name = KindName(kind);
    EXPECT_EQ(KindFromName(name), kind) << name;
    EXPECT_THAT(KindNames(), HasSubstr(name));
    ++kinds;
  }
  EXPECT_EQ(kinds, 11);
  EXPECT_EQ(KindFromName("number"), std::nullopt);
  EXPECT_EQ(KindFromName("URL"), std::nullopt);
  ValueType pid;
  pid.kind = ValueType::Kind::kPid;
  EXPECT_EQ(pid.Describe(), "pid");
}

}  // namespace
}  // namespace podgate::policy
