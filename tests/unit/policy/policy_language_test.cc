// The parts of the policy language that reach past the argv: fixed arguments (prependArgs),
// container checks (JVM pids, paths), network destinations (hosts, ports, paths, globbing),
// deny rules that understand option syntax and program classes, superuser limits, and rate
// limits. Each test loads a small document through the real loader.
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/authorizer.h"
#include "policy/policy_loader.h"
#include "policy/program_classes.h"
#include "policy/text_checks.h"

namespace podgate::policy {
namespace {

using podgate::common::v1::ContainerCheck;
using podgate::common::v1::Decision;
using podgate::common::v1::VERDICT_ALLOW;
using podgate::common::v1::VERDICT_DENY;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kHeader[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
rules:
)";

std::shared_ptr<const CompiledPolicy> Load(const std::string& rules) {
  LoadResult r = LoadPolicy(std::string(kHeader) + rules, "test.yaml");
  for (const LoadIssue& issue : r.issues) {
    if (issue.severity == podgate::policy::v1::SEVERITY_ERROR) {
      ADD_FAILURE() << issue.ToString();
    }
  }
  return r.policy;
}

// Every error of a document, one per line.
std::string AllErrors(const std::string& rules) {
  LoadResult r = LoadPolicy(std::string(kHeader) + rules, "test.yaml");
  std::string out;
  for (const LoadIssue& issue : r.issues) {
    if (issue.severity == podgate::policy::v1::SEVERITY_ERROR) {
      out += issue.ToString() + "\n";
    }
  }
  return out;
}

// The first error of a document that must not load, "" when it loads.
std::string FirstError(const std::string& rules) {
  LoadResult r = LoadPolicy(std::string(kHeader) + rules, "test.yaml");
  return r.ok() ? "" : r.FirstError();
}

std::vector<std::string> Warnings(const std::string& rules) {
  LoadResult r = LoadPolicy(std::string(kHeader) + rules, "test.yaml");
  std::vector<std::string> out;
  for (const LoadIssue& issue : r.issues) {
    if (issue.severity == podgate::policy::v1::SEVERITY_WARNING) {
      out.push_back(issue.message);
    }
  }
  return out;
}

podgate::policy::v1::AuthorizeRequest Ask(std::vector<std::string> argv,
                                          std::vector<std::string> groups = {"dev"},
                                          std::string user = "dana", std::string pod = "p-1") {
  podgate::policy::v1::AuthorizeRequest req;
  req.mutable_principal()->set_user(std::move(user));
  for (std::string& g : groups) {
    req.mutable_principal()->add_groups(std::move(g));
  }
  req.mutable_target()->set_namespace_("app");
  req.mutable_target()->set_pod(std::move(pod));
  req.mutable_target()->set_container("c");
  for (std::string& a : argv) {
    req.mutable_command()->add_argv(std::move(a));
  }
  return req;
}

Decision Decide(const CompiledPolicy& policy, std::vector<std::string> argv,
                std::vector<std::string> groups = {"dev"}) {
  return policy.Evaluate(Ask(std::move(argv), std::move(groups)));
}

std::vector<std::string> RunArgv(const Decision& d) {
  return std::vector<std::string>(d.argv().begin(), d.argv().end());
}

constexpr char kScope[] = R"(
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app]}
)";

std::string AllowRule(const std::string& id, const std::string& command) {
  return "  - id: " + id + kScope + "    command:\n" + command;
}

TEST(PrependArgs, DecisionCarriesTheArgvToRunWithCheckIndicesShifted) {
  auto policy = Load(AllowRule("cat-logs", R"(      program: cat
      prependArgs: [-u, --]
      args:
        - {name: f, type: path, prefixes: [/var/log/app], repeat: true, maxCount: 4}
)"));
  ASSERT_NE(policy, nullptr);
  Decision d = Decide(*policy, {"cat", "/var/log/app/a.log", "/var/log/app/b.log"});
  ASSERT_EQ(d.verdict(), VERDICT_ALLOW) << d.reason();
  EXPECT_EQ(RunArgv(d), (std::vector<std::string>{"cat", "-u", "--", "/var/log/app/a.log",
                                                  "/var/log/app/b.log"}));
  ASSERT_EQ(d.checks_size(), 2);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(d.checks(i).kind(), ContainerCheck::KIND_PATH_UNDER);
    EXPECT_EQ(d.checks(i).arg_index(), static_cast<uint32_t>(3 + i));
    EXPECT_EQ(RunArgv(d)[d.checks(i).arg_index()],
              i == 0 ? "/var/log/app/a.log" : "/var/log/app/b.log");
    ASSERT_EQ(d.checks(i).prefixes_size(), 1);
    EXPECT_EQ(d.checks(i).prefixes(0), "/var/log/app");
  }
}

TEST(PrependArgs, WithoutThemTheArgvIsRunAsAsked) {
  auto policy = Load(AllowRule("free", "      program: free\n      flags: [-m]\n"));
  Decision d = Decide(*policy, {"free", "-m"});
  ASSERT_EQ(d.verdict(), VERDICT_ALLOW);
  EXPECT_EQ(d.argv_size(), 0);
  EXPECT_EQ(d.checks_size(), 0);
}

TEST(PrependArgs, BadListsAreRefused) {
  EXPECT_NE(FirstError(AllowRule("x", "      program: curl\n      prependArgs: []\n")), "");
  EXPECT_NE(FirstError(AllowRule("x", "      program: curl\n      prependArgs: -q\n")), "");
  EXPECT_NE(FirstError(AllowRule("x", "      program: curl\n      prependArgs: [\"\"]\n")), "");
  // A repeated fixed argument is fine (-H a -H b).
  EXPECT_EQ(FirstError(AllowRule("x", "      program: curl\n      prependArgs: [-H, a, -H, b]\n")),
            "");
}

TEST(JvmPid, PidWithJvmEmitsACheckAndPlainPidDoesNot) {
  auto policy = Load(AllowRule("jstack", R"(      program: jstack
      flags: [-l]
      args:
        - {name: pid, type: pid, jvm: true}
)") + AllowRule("kill", R"(      program: kill
      args:
        - {name: pid, type: pid}
)"));
  Decision d = Decide(*policy, {"jstack", "-l", "4242"});
  ASSERT_EQ(d.verdict(), VERDICT_ALLOW) << d.reason();
  ASSERT_EQ(d.checks_size(), 1);
  EXPECT_EQ(d.checks(0).kind(), ContainerCheck::KIND_JVM_PID);
  EXPECT_EQ(d.checks(0).arg_index(), 2u);
  d = Decide(*policy, {"kill", "4242"});
  ASSERT_EQ(d.verdict(), VERDICT_ALLOW);
  EXPECT_EQ(d.checks_size(), 0);
  EXPECT_NE(FirstError(AllowRule("x", R"(      program: kill
      args:
        - {name: n, type: integer, jvm: true}
)"))
                .find("'jvm' does not apply to type integer"),
            std::string::npos);
}

TEST(JvmPid, FlagValuesAreCheckedTooAndMustBeSeparate) {
  auto policy = Load(AllowRule("jmap", R"(      program: jhsdb
      flags:
        - {name: --pid, value: {type: pid, jvm: true}}
)"));
  Decision d = Decide(*policy, {"jhsdb", "--pid", "17"});
  ASSERT_EQ(d.verdict(), VERDICT_ALLOW) << d.reason();
  ASSERT_EQ(d.checks_size(), 1);
  EXPECT_EQ(d.checks(0).arg_index(), 2u);
  d = Decide(*policy, {"jhsdb", "--pid=17"});
  EXPECT_EQ(d.verdict(), VERDICT_DENY);
  EXPECT_NE(d.reason().find("separate argument"), std::string::npos) << d.reason();
}

TEST(SuperuserJvmTools, EveryPidArgumentOfAnAttachToolIsChecked) {
  auto policy = Load(R"(  - id: admins
    effect: allow
    subjects: {groups: [admins]}
    targets: {namespaces: ["*"]}
    superuser: true
)");
  Decision d = Decide(*policy, {"/usr/bin/jstack", "-l", "31"}, {"admins"});
  ASSERT_EQ(d.verdict(), VERDICT_ALLOW);
  ASSERT_EQ(d.checks_size(), 1);
  EXPECT_EQ(d.checks(0).kind(), ContainerCheck::KIND_JVM_PID);
  EXPECT_EQ(d.checks(0).arg_index(), 2u);
  d = Decide(*policy, {"kill", "-9", "31"}, {"admins"});
  EXPECT_EQ(d.checks_size(), 0);
}

constexpr char kCurlRule[] = R"(      program: curl
      flags: [-s]
      args:
        - name: url
          type: url
          hosts: ["*.svc.cluster.local", "*.svc", "10.0.0.0/8", "localhost"]
          ports: [80, 8080-8081]
          paths: [/, /health, /actuator/health, /actuator/health/*]
)";

TEST(UrlType, HostsPortsAndPathsAreMatchedOnTheCanonicalUrl) {
  auto policy = Load(AllowRule("curl", kCurlRule));
  ASSERT_NE(policy, nullptr);
  for (const char* ok : {"http://orders.shop.svc.cluster.local:8080/actuator/health",
                         "http://orders.shop.svc/actuator/health/liveness",
                         "http://ORDERS.shop.svc.cluster.local./health", "http://10.1.2.3:8081/",
                         "http://orders.shop.svc/actuator/info/../health",
                         "http://localhost/health", "http://0xa.0.0.1/"}) {
    Decision d = Decide(*policy, {"curl", "-s", ok});
    EXPECT_EQ(d.verdict(), VERDICT_ALLOW) << ok << ": " << d.reason();
  }
  struct Bad {
    const char* url;
    const char* reason;
  };
  for (const Bad& bad : std::vector<Bad>{
           {"http://example.com/", "not among the hosts"},
           {"http://kubernetes.default.svc.cluster.local/", "API server"},
           {"http://orders.shop.svc:9090/health", "port 9090"},
           {"http://orders.shop.svc:443/health", "port 443"},
           {"http://orders.shop.svc/actuator/heapdump", "path"},
           {"http://orders.shop.svc/actuator/health/../heapdump", "path"},
           {"http://orders.shop.svc/actuator/health/..;/heapdump", "'..;'"},
           {"http://orders.shop.svc/actuator/health/%2e%2e/heapdump", "percent-encoded '.'"},
           {"http://orders.shop.svc/actuator/health;/heapdump", "'%' or ';'"},
           {"http://orders.shop.svc/[1-100]", "globbing"},
           {"http://{a,b}.shop.svc/", "globbing"},
           {"http://2852039166/", "169.254.169.254 is the cloud metadata address"},
           {"http://127.1/", "127.0.0.1 is a loopback address"},
           {"ftp://orders.shop.svc/", "scheme"}}) {
    Decision d = Decide(*policy, {"curl", "-s", bad.url});
    EXPECT_EQ(d.verdict(), VERDICT_DENY) << bad.url << ": " << d.reason();
    EXPECT_NE(d.reason().find(bad.reason), std::string::npos) << bad.url << ": " << d.reason();
  }
}

TEST(UrlType, WithoutHostsSensitiveDestinationsAreRefusedAndOnlyTheDefaultPort) {
  auto policy = Load(AllowRule("curl", R"(      program: curl
      args:
        - {name: url, type: url}
)"));
  for (const char* bad :
       {"http://169.254.169.254/latest/meta-data/", "http://0251.0376.0251.0376/",
        "http://[::ffff:a9fe:a9fe]/", "http://metadata.google.internal/", "http://127.0.0.1/",
        "http://0:8080/", "http://169.254.169.254.nip.io/", "http://example.com:8080/"}) {
    EXPECT_EQ(Decide(*policy, {"curl", bad}).verdict(), VERDICT_DENY) << bad;
  }
  EXPECT_EQ(Decide(*policy, {"curl", "https://example.com/"}).verdict(), VERDICT_ALLOW);
  EXPECT_EQ(Decide(*policy, {"curl", "https://example.com:443/"}).verdict(), VERDICT_ALLOW);
}

TEST(UrlType, GlobOptInAndLoaderChecks) {
  auto policy = Load(AllowRule("curl", R"(      program: curl
      args:
        - {name: url, type: url, hosts: ["*.svc"], glob: true}
)"));
  EXPECT_EQ(Decide(*policy, {"curl", "http://a.svc/[1-3]"}).verdict(), VERDICT_ALLOW);
  const std::vector<std::string> warnings = Warnings(
      AllowRule("curl", "      program: curl\n      args:\n        - {name: u, type: url}\n"));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("without 'hosts'"), std::string::npos) << warnings[0];
  EXPECT_NE(FirstError(AllowRule("c", R"(      program: curl
      args:
        - {name: u, type: url, hosts: ["*.svc"], ports: [0]}
)"))
                .find("port '0'"),
            std::string::npos);
  EXPECT_NE(FirstError(AllowRule("c", R"(      program: curl
      args:
        - {name: u, type: url, hosts: ["*.svc"], ports: [90-80]}
)")),
            "");
  EXPECT_NE(FirstError(AllowRule("c", R"(      program: curl
      args:
        - {name: u, type: url, hosts: ["*.svc"], paths: ["health"]}
)")),
            "");
  EXPECT_NE(FirstError(AllowRule("c", R"(      program: curl
      args:
        - {name: u, type: url, hosts: ["0.0.0.0/0"]}
)")),
            "");
  EXPECT_NE(FirstError(AllowRule("c", R"(      program: ping
      args:
        - {name: u, type: host, ports: [80]}
)"))
                .find("'ports' does not apply to type host"),
            std::string::npos);
}

TEST(HostTypes, EverySpellingIsCanonicalisedBeforeJudging) {
  auto policy = Load(AllowRule("ping", R"(      program: ping
      args:
        - {name: host, type: host}
)") + AllowRule("dig", R"(      program: dig
      args:
        - {name: name, type: hostname}
)") + AllowRule("ip", R"(      program: traceroute
      args:
        - {name: ip, type: ip, hosts: ["10.0.0.0/8"]}
)"));
  for (const char* bad : {"2852039166", "0xa9fea9fe", "127.1", "0", "::1", "::ffff:7f00:1",
                          "localhost", "metadata.google.internal", "100.100.100.200"}) {
    EXPECT_EQ(Decide(*policy, {"ping", bad}).verdict(), VERDICT_DENY) << bad;
  }
  EXPECT_EQ(Decide(*policy, {"ping", "orders.shop.svc"}).verdict(), VERDICT_ALLOW);
  EXPECT_EQ(Decide(*policy, {"ping", "10.1.2.3"}).verdict(), VERDICT_ALLOW);
  Decision d = Decide(*policy, {"dig", "10.1.2.3"});
  EXPECT_EQ(d.verdict(), VERDICT_DENY);
  EXPECT_NE(d.reason().find("not a host name"), std::string::npos) << d.reason();
  EXPECT_EQ(Decide(*policy, {"dig", "1.2.3"}).verdict(), VERDICT_DENY);
  EXPECT_EQ(Decide(*policy, {"traceroute", "012.1"}).verdict(), VERDICT_ALLOW);
  EXPECT_EQ(Decide(*policy, {"traceroute", "11.0.0.1"}).verdict(), VERDICT_DENY);
  EXPECT_EQ(Decide(*policy, {"traceroute", "orders.svc"}).verdict(), VERDICT_DENY);
}

constexpr char kDenyCurl[] = R"(  - id: deny-curl
    effect: deny
    subjects: {users: ["*"]}
    targets: {namespaces: ["*"]}
    deny:
      programs: [curl]
      options: [-o, -K, --config, --output, -dump]
  - id: admins
    effect: allow
    subjects: {groups: [admins]}
    targets: {namespaces: ["*"]}
    superuser: true
)";

TEST(DenyOptions, LongPrefixesAttachedValuesAndClustersAreAllSeen) {
  auto policy = Load(kDenyCurl);
  ASSERT_NE(policy, nullptr);
  for (std::vector<std::string> bad :
       std::vector<std::vector<std::string>>{{"curl", "--conf", "x"},
                                             {"curl", "--config=x"},
                                             {"curl", "--c", "x"},
                                             {"curl", "--out", "/tmp/x", "http://a/"},
                                             {"curl", "--output=/tmp/x"},
                                             {"curl", "-so/tmp/x", "http://a/"},
                                             {"curl", "-K/cfg"},
                                             {"curl", "-sSK", "/cfg"},
                                             {"curl", "-dump:file=/x"},
                                             {"/usr/bin/curl", "-o", "x"}}) {
    Decision d = Decide(*policy, bad, {"admins"});
    EXPECT_EQ(d.verdict(), VERDICT_DENY) << bad[1];
    EXPECT_EQ(d.rule(), "deny-curl") << bad[1];
  }
  for (std::vector<std::string> ok :
       std::vector<std::vector<std::string>>{{"curl", "-sS", "http://a/"},
                                             {"curl", "--connect-timeout", "3", "http://a/"},
                                             {"curl", "--compressed", "http://a/"},
                                             {"curl", "http://a/-o"}}) {
    EXPECT_EQ(Decide(*policy, ok, {"admins"}).verdict(), VERDICT_ALLOW) << ok[1];
  }
}

TEST(DenyOptions, TheIndexedLookupAgreesWithEachOptionsOwnRule) {
  DenyMatcher m;
  for (const char* text : {"--output", "--config", "--conf-x", "-o", "-K", "-dump", "-histo:f"}) {
    DeniedOption o;
    o.source = text;
    const std::string t = text;
    if (t.rfind("--", 0) == 0) {
      o.form = DeniedOption::Form::kLong;
      o.name = t.substr(2);
    } else if (t.size() == 2) {
      o.form = DeniedOption::Form::kShort;
      o.name = t.substr(1);
    } else {
      o.form = DeniedOption::Form::kSingleDashLong;
      o.name = t.substr(1);
    }
    m.options.push_back(o);
  }
  m.Index();
  // Every argument built from a small alphabet, up to five characters.
  const std::string alphabet = "-=ocnfKdumphist:x";
  std::vector<std::string> args = {""};
  int checked = 0;
  for (int len = 1; len <= 5; ++len) {
    std::vector<std::string> next;
    for (const std::string& prefix : args) {
      for (char c : alphabet) {
        next.push_back(prefix + c);
      }
    }
    for (const std::string& arg : next) {
      bool expected = false;
      for (const DeniedOption& o : m.options) {
        expected = expected || o.Matches(arg);
      }
      ASSERT_EQ(m.MatchesOption(arg), expected) << arg;
      ++checked;
    }
    args = std::move(next);
  }
  EXPECT_GT(checked, 1000000);
}

TEST(DenyOptions, JoinedArgumentsAreSplitIntoWords) {
  auto policy = Load(R"(  - id: deny-jcmd
    effect: deny
    subjects: {users: ["*"]}
    targets: {namespaces: ["*"]}
    deny:
      programs: [jcmd]
      joinArgs: true
      options: [-f]
      anyArg: ["GC\\.heap_dump.*", "VM\\.set_flag.*"]
  - id: admins
    effect: allow
    subjects: {groups: [admins]}
    targets: {namespaces: ["*"]}
    superuser: true
)");
  for (std::vector<std::string> bad : std::vector<std::vector<std::string>>{
           {"jcmd", "42", "GC.heap_dump /p"},
           {"jcmd", "42", " VM.set_flag HeapDumpOnOutOfMemoryError true"},
           {"jcmd", "42", "GC.heap_dump\t/p"},
           {"jcmd", "42 -f /tmp/cmds"},
           {"jcmd", "42", "Thread.print", "GC.heap_dump"}}) {
    EXPECT_EQ(Decide(*policy, bad, {"admins"}).verdict(), VERDICT_DENY) << bad[2 % bad.size()];
  }
  EXPECT_EQ(Decide(*policy, {"jcmd", "42", "Thread.print"}, {"admins"}).verdict(), VERDICT_ALLOW);
}

TEST(DenyOptions, LoaderRefusesBadOptionsAndOptionsWithoutPrograms) {
  const std::string head = R"(  - id: d
    effect: deny
    subjects: {users: ["*"]}
    targets: {namespaces: ["*"]}
    deny:
)";
  EXPECT_NE(FirstError(head + "      programs: [curl]\n      options: [o]\n"), "");
  EXPECT_NE(FirstError(head + "      programs: [curl]\n      options: [\"--\"]\n"), "");
  EXPECT_NE(FirstError(head + "      programs: [curl]\n      options: [\"-o x\"]\n"), "");
  EXPECT_NE(FirstError(head + "      options: [-o]\n"), "");
  EXPECT_NE(FirstError(head + "      programs: [curl]\n      joinArgs: true\n"), "");
  EXPECT_NE(AllErrors(head + "      classes: [interpreters]\n").find("unknown program class"),
            std::string::npos);
}

TEST(ProgramClasses, VersionSuffixesLoadersAndWrappers) {
  EXPECT_EQ(StripVersionSuffix("python3.11"), "python");
  EXPECT_EQ(StripVersionSuffix("python3.7m"), "python");
  EXPECT_EQ(StripVersionSuffix("perl5.36.0"), "perl");
  EXPECT_EQ(StripVersionSuffix("php-8.2"), "php");
  EXPECT_EQ(StripVersionSuffix("lua5.4"), "lua");
  EXPECT_EQ(StripVersionSuffix("curl"), "curl");
  EXPECT_EQ(StripVersionSuffix("123"), "123");
  for (const char* runner : {"sh",
                             "/bin/sh",
                             "python3.11",
                             "/usr/bin/python3",
                             "pypy3",
                             "/lib64/ld-linux-x86-64.so.2",
                             "/lib/ld-musl-x86_64.so.1",
                             "ld.so",
                             "ionice",
                             "taskset",
                             "unshare",
                             "flock",
                             "rbash",
                             "busybox",
                             "env",
                             "/usr/bin/env",
                             "xargs",
                             "find",
                             "awk",
                             "gawk",
                             "perl5.36",
                             "node18",
                             "ruby3.1",
                             "nice",
                             "stdbuf",
                             "timeout",
                             "setpriv",
                             "chrt",
                             "nsenter",
                             "tclsh8.6"}) {
    EXPECT_TRUE(InProgramClass(ProgramClass::kProgramRunners, runner)) << runner;
  }
  for (const char* plain : {"curl", "cat", "jstack", "jcmd", "ps", "kill", "ls", "free", "df",
                            "sha256sum", "base64", "/usr/bin/tail"}) {
    EXPECT_FALSE(InProgramClass(ProgramClass::kProgramRunners, plain)) << plain;
  }
}

TEST(Superusers, AreNotAShellUnlessTheRuleSaysSo) {
  auto policy = Load(R"(  - id: admins
    effect: allow
    subjects: {groups: [admins]}
    targets: {namespaces: ["*"]}
    superuser: true
  - id: root-admins
    effect: allow
    subjects: {groups: [root-admins]}
    targets: {namespaces: ["*"]}
    superuser: true
    allowProgramRunners: true
  - id: admins-find
    effect: allow
    subjects: {groups: [admins]}
    targets: {namespaces: ["*"]}
    command:
      program: find
      args:
        - {name: dir, type: path, prefixes: [/var/log]}
)");
  ASSERT_NE(policy, nullptr);
  for (std::vector<std::string> bad :
       std::vector<std::vector<std::string>>{{"python3.11", "-c", "import os"},
                                             {"/lib64/ld-linux-x86-64.so.2", "/bin/sh"},
                                             {"ionice", "sh"},
                                             {"taskset", "1", "sh"},
                                             {"unshare", "sh"},
                                             {"flock", "/tmp/x", "sh"},
                                             {"rbash", "-c", "id"},
                                             {"/usr/bin/env", "-i", "sh"},
                                             {"xargs", "sh"}}) {
    Decision d = Decide(*policy, bad, {"admins"});
    EXPECT_EQ(d.verdict(), VERDICT_DENY) << bad[0];
    EXPECT_NE(d.reason().find("runs other programs"), std::string::npos)
        << bad[0] << ": " << d.reason();
  }
  // A command rule for the program still applies with its grammar, and only it.
  EXPECT_EQ(Decide(*policy, {"find", "/var/log"}, {"admins"}).verdict(), VERDICT_ALLOW);
  Decision find = Decide(*policy, {"find", "/", "-exec", "sh", ";"}, {"admins"});
  EXPECT_EQ(find.verdict(), VERDICT_DENY);
  EXPECT_EQ(find.rule(), "admins-find");
  EXPECT_EQ(Decide(*policy, {"rm", "-f", "/tmp/x"}, {"admins"}).verdict(), VERDICT_ALLOW);
  EXPECT_EQ(Decide(*policy, {"python3.11", "-c", "1"}, {"root-admins"}).verdict(), VERDICT_ALLOW);
  EXPECT_NE(FirstError(AllowRule("x", "      program: ls\n") + "    allowProgramRunners: true\n"),
            "");
}

TEST(DenyPrograms, VersionedNamesAndClassesMatch) {
  auto policy = Load(R"(  - id: deny-python
    effect: deny
    subjects: {users: ["*"]}
    targets: {namespaces: ["*"]}
    deny:
      programs: [python]
  - id: deny-runners
    effect: deny
    subjects: {users: ["*"]}
    targets: {namespaces: ["*"]}
    deny:
      classes: [program-runners]
  - id: admins
    effect: allow
    subjects: {groups: [admins]}
    targets: {namespaces: ["*"]}
    superuser: true
    allowProgramRunners: true
)");
  Decision d = Decide(*policy, {"/usr/bin/python3.11", "x.py"}, {"admins"});
  EXPECT_EQ(d.rule(), "deny-python");
  d = Decide(*policy, {"ionice", "-c3", "ls"}, {"admins"});
  EXPECT_EQ(d.verdict(), VERDICT_DENY);
  EXPECT_EQ(d.rule(), "deny-runners");
  // An allow rule a class denial always overrides is unreachable.
  EXPECT_NE(FirstError(R"(  - id: deny-runners
    effect: deny
    subjects: {users: ["*"]}
    targets: {namespaces: ["*"]}
    deny:
      classes: [program-runners]
)" + AllowRule("env", "      program: env\n"))
                .find("unreachable"),
            std::string::npos);
}

TEST(RateLimit, CountsPerPodAcrossUsersAndSaysWhenTheNextIsPossible) {
  const std::string doc = std::string(kHeader) + AllowRule("histo-live", R"(      program: jmap
      flags: [-histo:live]
      args:
        - {name: pid, type: pid}
)") + "    rateLimit: {count: 2, per: 1h}\n";
  LoadResult loaded = LoadPolicy(doc, "test.yaml");
  ASSERT_TRUE(loaded.ok()) << loaded.FirstError();
  const Rule* rule = loaded.policy->FindRule("histo-live");
  ASSERT_NE(rule, nullptr);
  ASSERT_TRUE(rule->rate_limit.has_value());
  RateLimiter limiter;
  podgate::common::v1::Target pod1;
  pod1.set_namespace_("app");
  pod1.set_pod("p-1");
  podgate::common::v1::Target pod2 = pod1;
  pod2.set_pod("p-2");
  const absl::Time t0 = absl::FromUnixSeconds(1'800'000'000);
  EXPECT_FALSE(limiter.Admit(*rule, "ann", pod1, t0).has_value());
  EXPECT_FALSE(limiter.Admit(*rule, "bob", pod1, t0 + absl::Minutes(1)).has_value());
  std::optional<std::string> refused = limiter.Admit(*rule, "cid", pod1, t0 + absl::Minutes(2));
  ASSERT_TRUE(refused.has_value());
  EXPECT_NE(refused->find("at most 2 per pod per 1h"), std::string::npos) << *refused;
  EXPECT_NE(refused->find("58m"), std::string::npos) << *refused;
  EXPECT_FALSE(limiter.Admit(*rule, "ann", pod2, t0 + absl::Minutes(2)).has_value());
  // The window slides: an hour after the first, one more is possible, and then not again
  // until the second has left the window.
  EXPECT_FALSE(limiter.Admit(*rule, "ann", pod1, t0 + absl::Seconds(3630)).has_value());
  EXPECT_TRUE(limiter.Admit(*rule, "ann", pod1, t0 + absl::Seconds(3640)).has_value());
  EXPECT_FALSE(limiter.Admit(*rule, "ann", pod1, t0 + absl::Seconds(3661)).has_value());
}

TEST(RateLimit, TheTableIsBoundedAndRefusesWhenFullOfLiveKeys) {
  LoadResult loaded = LoadPolicy(std::string(kHeader) + AllowRule("r", "      program: jmap\n") +
                                     "    rateLimit: {count: 1, per: 10m, scope: user}\n",
                                 "t.yaml");
  ASSERT_TRUE(loaded.ok()) << loaded.FirstError();
  const Rule& rule = *loaded.policy->FindRule("r");
  RateLimiter limiter(3);
  podgate::common::v1::Target t;
  const absl::Time t0 = absl::FromUnixSeconds(1'800'000'000);
  for (const char* u : {"a", "b", "c"}) {
    EXPECT_FALSE(limiter.Admit(rule, u, t, t0).has_value());
  }
  std::optional<std::string> full = limiter.Admit(rule, "d", t, t0);
  ASSERT_TRUE(full.has_value());
  EXPECT_NE(full->find("table is full"), std::string::npos) << *full;
  // Once the windows have passed, expired keys make room.
  EXPECT_FALSE(limiter.Admit(rule, "d", t, t0 + absl::Minutes(11)).has_value());
  EXPECT_LE(limiter.keys(), 3u);
}

TEST(RateLimit, LoaderChecks) {
  const std::string rule = AllowRule("r", "      program: jmap\n");
  EXPECT_NE(FirstError(rule + "    rateLimit: {count: 0, per: 1h}\n"), "");
  EXPECT_NE(FirstError(rule + "    rateLimit: {count: 2}\n"), "");
  EXPECT_NE(FirstError(rule + "    rateLimit: {count: 2, per: 1h, scope: cluster}\n"), "");
  EXPECT_NE(FirstError(rule + "    rateLimit: {count: 2, per: forever}\n"), "");
  EXPECT_NE(FirstError(R"(  - id: s
    effect: allow
    subjects: {groups: [x]}
    targets: {namespaces: ["*"]}
    shell: true
    rateLimit: {count: 2, per: 1h}
)"),
            "");
}


// A denial carries what helps the user recover: the deciding rule's description and whom to ask,
// the rule's own contact first, then the document's.
TEST(DenialHelpTest, DenialsCarryTheRuleDescriptionAndWhomToAsk) {
  LoadResult r = LoadPolicy(R"(apiVersion: podgate.io/v1
kind: CommandPolicy
metadata:
  contact: "#platform-help"
  requestUrl: https://access.example.com/request
rules:
  - id: dev-curl
    description: HTTP checks of the app's own health endpoints
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app]}
    command:
      program: curl
      flags: [-s]
      args: [{name: url, type: url, hosts: [localhost]}]
  - id: no-wget
    description: wget writes files; use curl -s
    contact: "#shop-team"
    effect: deny
    subjects: {users: ["*"]}
    targets: {namespaces: ["*"]}
    deny: {programs: [wget]}
  - id: dev-free
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app]}
    command: {program: free}
)",
                            "test.yaml");
  ASSERT_TRUE(r.ok()) << r.FirstError();
  const auto decide = [&](std::vector<std::string> argv) {
    return r.policy->Evaluate(Ask(std::move(argv)));
  };
  // A grammar refusal: the allow rule that read the argv speaks, the document's contact.
  Decision flag = decide({"curl", "-o", "/tmp/x", "http://localhost/"});
  ASSERT_EQ(flag.verdict(), VERDICT_DENY);
  EXPECT_EQ(flag.rule(), "dev-curl");
  EXPECT_EQ(flag.rule_description(), "HTTP checks of the app's own health endpoints");
  EXPECT_EQ(flag.contact(), "#platform-help");
  EXPECT_EQ(flag.request_url(), "https://access.example.com/request");
  // An explicit denial with a contact of its own; its request URL falls back to the document's.
  Decision wget = decide({"wget", "http://localhost/"});
  ASSERT_EQ(wget.verdict(), VERDICT_DENY);
  EXPECT_EQ(wget.rule(), "no-wget");
  EXPECT_EQ(wget.rule_description(), "wget writes files; use curl -s");
  EXPECT_EQ(wget.contact(), "#shop-team");
  EXPECT_EQ(wget.request_url(), "https://access.example.com/request");
  // No rule matched: no description, whom to ask all the same.
  Decision none = decide({"rm", "-rf", "/"});
  EXPECT_EQ(none.rule(), "default-deny");
  EXPECT_EQ(none.rule_description(), "");
  EXPECT_EQ(none.contact(), "#platform-help");
  // The built-in argv check too.
  Decision bidi = decide({"free", "\xe2\x80\xae"});
  EXPECT_EQ(bidi.rule(), "argv-check");
  EXPECT_EQ(bidi.contact(), "#platform-help");
  // Allowed decisions carry none of it.
  Decision ok = decide({"free"});
  ASSERT_EQ(ok.verdict(), VERDICT_ALLOW);
  EXPECT_EQ(ok.contact(), "");
  EXPECT_EQ(ok.rule_description(), "");
  // ListAllowed names whom to ask for more.
  podgate::policy::v1::ListAllowedRequest list;
  list.mutable_principal()->set_user("dana");
  list.mutable_principal()->add_groups("dev");
  list.mutable_target()->set_namespace_("app");
  list.mutable_target()->set_pod("p-1");
  const auto allowed = r.policy->ListAllowed(list);
  EXPECT_EQ(allowed.contact(), "#platform-help");
  EXPECT_EQ(allowed.request_url(), "https://access.example.com/request");
}

// dana in `group` asks about pod p-1 of namespace app, no container named.
podgate::policy::v1::ListAllowedRequest ListRequest(const std::string& group = "dev") {
  podgate::policy::v1::ListAllowedRequest list;
  list.mutable_principal()->set_user("dana");
  list.mutable_principal()->add_groups(group);
  list.mutable_target()->set_namespace_("app");
  list.mutable_target()->set_pod("p-1");
  return list;
}

podgate::policy::v1::ListAllowedResponse ListFor(const CompiledPolicy& policy,
                                                 const std::string& group,
                                                 std::map<std::string, std::string> labels,
                                                 bool labels_known) {
  podgate::policy::v1::ListAllowedRequest list = ListRequest(group);
  for (auto& [k, v] : labels) {
    (*list.mutable_target()->mutable_pod_labels())[k] = v;
  }
  list.set_ignore_pod_labels(!labels_known);
  return policy.ListAllowed(list);
}

std::vector<std::string> Programs(const podgate::policy::v1::ListAllowedResponse& r) {
  std::vector<std::string> out;
  for (const auto& c : r.commands()) {
    out.push_back(c.program());
  }
  return out;
}

// Before exec knows a pod's labels it asks with ignore_pod_labels, and refuses the session when
// nothing is in scope. That first answer must only leave out what no labels could allow: a
// deny rule that selects *other* pods by label must not hide a command (it did: a user whose
// jstack was denied only on database pods was refused every pod of the namespace).
TEST(ListAllowedScope, ALabelSelectingDenyDoesNotHideACommandBeforeTheLabelsAreKnown) {
  auto policy = Load(AllowRule("jstack", R"(      program: jstack
      args:
        - {name: pid, type: pid}
)") + R"(  - id: no-jstack-on-databases
    effect: deny
    subjects: {groups: [dev]}
    targets: {namespaces: [app], podLabels: {tier: db}}
    deny: {programs: [jstack]}
)");
  ASSERT_NE(policy, nullptr);
  EXPECT_THAT(Programs(ListFor(*policy, "dev", {}, false)), ElementsAre("jstack"))
      << "labels unknown: the deny may not apply to this pod";
  EXPECT_THAT(Programs(ListFor(*policy, "dev", {{"tier", "web"}}, true)), ElementsAre("jstack"));
  EXPECT_THAT(Programs(ListFor(*policy, "dev", {{"tier", "db"}}, true)), IsEmpty());
  EXPECT_FALSE(ListFor(*policy, "dev", {}, false).pod_labels_irrelevant())
      << "a rule in scope selects by label: exec must ask again with the labels";
}

// The same for containers: a request that names no container asks about any container of the
// pod, so a deny rule for one container must not hide a command the others allow (it did:
// denying jstack in the sidecar refused every session opened without a container name).
TEST(ListAllowedScope, AContainerSelectingDenyDoesNotHideACommandForTheOtherContainers) {
  auto policy = Load(AllowRule("jstack", R"(      program: jstack
      args:
        - {name: pid, type: pid}
)") + R"(  - id: no-jstack-in-the-sidecar
    effect: deny
    subjects: {groups: [dev]}
    targets: {namespaces: [app], containers: [sidecar]}
    deny: {programs: [jstack]}
)");
  ASSERT_NE(policy, nullptr);
  podgate::policy::v1::ListAllowedRequest list = ListRequest();
  for (bool labels_known : {false, true}) {
    list.set_ignore_pod_labels(!labels_known);
    list.mutable_target()->set_container("");
    EXPECT_THAT(Programs(policy->ListAllowed(list)), ElementsAre("jstack"))
        << "any container: the deny covers only the sidecar";
    list.mutable_target()->set_container("main");
    EXPECT_THAT(Programs(policy->ListAllowed(list)), ElementsAre("jstack"));
    list.mutable_target()->set_container("sidecar");
    EXPECT_THAT(Programs(policy->ListAllowed(list)), IsEmpty());
  }
}

// A shell rule for one container is in scope of a session opened without a container name
// (the default container may be that one; the shell is decided for the resolved container),
// unless a deny in scope refuses shells whichever the container.
TEST(ListAllowedScope, AShellRuleForSomeContainersCountsWhenNoContainerIsNamed) {
  const std::string debug_shell = R"(  - id: debug-shell
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app], containers: [debug]}
    shell: true
)";
  auto policy = Load(debug_shell);
  ASSERT_NE(policy, nullptr);
  podgate::policy::v1::ListAllowedRequest list = ListRequest();
  for (bool labels_known : {false, true}) {
    list.set_ignore_pod_labels(!labels_known);
    list.mutable_target()->set_container("");
    EXPECT_TRUE(policy->ListAllowed(list).shell_allowed()) << "labels known: " << labels_known;
    list.mutable_target()->set_container("debug");
    EXPECT_TRUE(policy->ListAllowed(list).shell_allowed());
    list.mutable_target()->set_container("main");
    EXPECT_FALSE(policy->ListAllowed(list).shell_allowed());
  }
  // A deny for one container does not refuse the others; a deny for every container does.
  auto sidecar_denied = Load(debug_shell + R"(  - id: no-sidecar-shells
    effect: deny
    subjects: {groups: [dev]}
    targets: {namespaces: [app], containers: [sidecar]}
    deny: {shell: true}
)");
  ASSERT_NE(sidecar_denied, nullptr);
  list.mutable_target()->set_container("");
  EXPECT_TRUE(sidecar_denied->ListAllowed(list).shell_allowed());
  auto all_denied = Load(debug_shell + R"(  - id: no-shells-on-p-1
    effect: deny
    subjects: {groups: [dev]}
    targets: {namespaces: [app], pods: [p-1]}
    deny: {shell: true}
)");
  ASSERT_NE(all_denied, nullptr);
  for (bool labels_known : {false, true}) {
    list.set_ignore_pod_labels(!labels_known);
    EXPECT_FALSE(all_denied->ListAllowed(list).shell_allowed());
  }
}

// The answer says when the pod's labels cannot change it (no rule whose subjects and targets
// match, labels aside, selects pods by label), so exec asks once instead of twice per session.
// It is never set when they could: with it, exec takes the first answer as final.
TEST(ListAllowedScope, TheAnswerSaysWhenPodLabelsCannotChangeIt) {
  auto policy = Load(AllowRule("free", "      program: free\n") + R"(  - id: ops-web-shell
    effect: allow
    subjects: {groups: [ops]}
    targets: {namespaces: [app], podLabels: {tier: web}}
    shell: true
  - id: dev-elsewhere
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [other], podLabels: {tier: web}}
    command: {program: df}
)");
  ASSERT_NE(policy, nullptr);
  // dev: free everywhere in app; the only label rule for dev is in another namespace.
  for (bool known : {false, true}) {
    const auto dev = ListFor(*policy, "dev", {{"tier", "web"}}, known);
    EXPECT_TRUE(dev.pod_labels_irrelevant()) << "labels known: " << known;
    EXPECT_THAT(Programs(dev), ElementsAre("free"));
    EXPECT_FALSE(dev.shell_allowed());
  }
  // ops: only a label-selecting shell rule: the labels decide.
  EXPECT_FALSE(ListFor(*policy, "ops", {}, false).pod_labels_irrelevant());
  EXPECT_TRUE(ListFor(*policy, "ops", {}, false).shell_allowed()) << "it may be a web pod";
  EXPECT_FALSE(ListFor(*policy, "ops", {{"tier", "web"}}, true).pod_labels_irrelevant());
  EXPECT_TRUE(ListFor(*policy, "ops", {{"tier", "web"}}, true).shell_allowed());
  EXPECT_FALSE(ListFor(*policy, "ops", {{"tier", "db"}}, true).shell_allowed());
  // Shells in the namespace but not on p-1, no labels anywhere: the answer before the labels
  // are known is the final one (the pre-check counted every shell rule in scope as allowing,
  // so it said yes where the full check says no).
  auto plain = Load(AllowRule("free", "      program: free\n") + R"(  - id: shells
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app]}
    shell: true
  - id: no-shell-on-p-1
    effect: deny
    subjects: {groups: [dev]}
    targets: {namespaces: [app], pods: [p-1]}
    deny: {shell: true}
)");
  ASSERT_NE(plain, nullptr);
  const auto before = ListFor(*plain, "dev", {}, false);
  const auto after = ListFor(*plain, "dev", {{"tier", "web"}}, true);
  EXPECT_TRUE(before.pod_labels_irrelevant());
  EXPECT_TRUE(after.pod_labels_irrelevant());
  EXPECT_FALSE(after.shell_allowed());
  EXPECT_EQ(before.shell_allowed(), after.shell_allowed());
  EXPECT_THAT(Programs(before), ElementsAre("free"));
}

// A reason quotes at most 64 bytes of an argument and never cuts a character in two (a proto
// string must be valid UTF-8, or the decision could not be sent).
TEST(DenialHelpTest, AQuotedLongArgumentIsCutAtACharacter) {
  LoadResult r = LoadPolicy(R"(apiVersion: podgate.io/v1
kind: CommandPolicy
rules:
  - id: dev-cat
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app]}
    command:
      program: cat
      args: [{name: f, type: enum, values: [a]}]
)",
                            "test.yaml");
  ASSERT_TRUE(r.ok()) << r.FirstError();
  for (int shift = 0; shift < 3; ++shift) {
    std::string arg(static_cast<size_t>(shift), 'x');
    for (int i = 0; i < 40; ++i) {
      arg += "\xe6\x97\xa5";  // 日, three bytes
    }
    const Decision d = r.policy->Evaluate(Ask({"cat", arg}));
    ASSERT_EQ(d.verdict(), VERDICT_DENY);
    EXPECT_FALSE(DescribeUnsafeCharacter(d.reason()).has_value()) << d.reason();
    EXPECT_THAT(d.reason(), ::testing::HasSubstr("...'"));
    std::string wire;
    EXPECT_TRUE(d.SerializeToString(&wire));
  }
}


// outputKeep travels in the decision's limits, from the rule or the defaults.
TEST(OutputKeepTest, TheDecisionSaysWhichPartOfTheOutputIsShown) {
  LoadResult r = LoadPolicy(R"(apiVersion: podgate.io/v1
kind: CommandPolicy
defaults: {outputLimitBytes: 4096}
rules:
  - id: tail-end
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app]}
    limits: {outputKeep: end}
    command: {program: tail}
  - id: cat-start
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app]}
    command: {program: cat}
)",
                            "test.yaml");
  ASSERT_TRUE(r.ok()) << r.FirstError();
  const auto decide = [&](const std::string& program) {
    return r.policy->Evaluate(Ask({program}));
  };
  const Decision tail = decide("tail");
  ASSERT_EQ(tail.verdict(), VERDICT_ALLOW);
  EXPECT_TRUE(tail.limits().output_keep_end());
  EXPECT_EQ(tail.limits().output_limit_bytes(), 4096);
  const Decision cat = decide("cat");
  ASSERT_EQ(cat.verdict(), VERDICT_ALLOW);
  EXPECT_FALSE(cat.limits().output_keep_end());
}

}  // namespace
}  // namespace podgate::policy
