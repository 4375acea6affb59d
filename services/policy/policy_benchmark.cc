// Nanoseconds per policy decision on a realistic document: the example policy plus 30 teams'
// rules (about 200 rules in all), for allowed and denied commands. Not a test: run
// build/services/policy/policy_benchmark; docs/policy.md records the numbers.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "policy/authorizer.h"
#include "policy/policy_loader.h"
#include "policy/policy_metrics.h"
#include "policy/policy_store.h"

namespace podgate::policy {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The example policy with 6 rules per team for 30 teams appended.
std::string BigDocument() {
  std::string doc = ReadFile(PODGATE_EXAMPLE_POLICY);
  for (int t = 0; t < 30; ++t) {
    const std::string team = absl::StrCat("team-", t);
    const std::string scope =
        absl::StrCat("    subjects: {groups: [", team, "], users: [lead-", t,
                     "]}\n    targets: {namespaces: [\"", team,
                     "-*\"], pods: [\"svc-*\"], containers: [app, worker]}\n");
    absl::StrAppend(
        &doc, "  - id: ", team, "-curl\n    effect: allow\n", scope,
        "    command:\n      program: curl\n      flags:\n        - -s\n        - -I\n"
        "        - {name: -m, value: {type: integer, min: 1, max: 30}}\n"
        "        - {name: -H, value: {type: regex, pattern: \"X-Request-Id: [a-f0-9-]{1,64}\"}}\n"
        "      args:\n        - {name: url, type: url, schemes: [http, https], hosts: [\"*.",
        team, ".svc.cluster.local\"], ports: [8443]}\n", "  - id: ", team,
        "-jcmd\n    effect: allow\n", scope,
        "    command:\n      program: jcmd\n      args:\n        - {name: pid, type: pid}\n"
        "        - {name: command, type: enum, values: [GC.heap_info, Thread.print, VM.flags, "
        "VM.uptime]}\n",
        "  - id: ", team, "-cat\n    effect: allow\n", scope,
        "    command:\n      program: cat\n      args:\n        - {name: file, type: path, "
        "prefixes: [/var/log/",
        team, ", /srv/", team, "/logs], repeat: true, maxCount: 4}\n", "  - id: ", team,
        "-tail\n    effect: allow\n", scope,
        "    command:\n      program: tail\n      flags:\n"
        "        - {name: -n, value: {type: integer, min: 1, max: 5000}}\n"
        "      args:\n        - {name: file, type: path, prefixes: [/var/log/",
        team, "]}\n", "  - id: ", team, "-ping\n    effect: allow\n", scope,
        "    command:\n      program: ping\n      flags:\n"
        "        - {name: -c, required: true, value: {type: integer, min: 1, max: 5}}\n"
        "      args:\n        - {name: host, type: host}\n",
        "  - id: ", team, "-dig\n    effect: allow\n", scope,
        "    command:\n      program: dig\n      args:\n        - {name: name, type: hostname}\n"
        "        - {name: type, type: enum, values: [A, AAAA, SRV], optional: true}\n");
  }
  return doc;
}

const CompiledPolicy& Policy() {
  static const auto* policy = [] {
    LoadResult r = LoadPolicy(BigDocument(), "benchmark");
    if (!r.ok()) {
      std::fprintf(stderr, "benchmark policy invalid: %s\n", r.FirstError().c_str());
      std::abort();
    }
    return new std::shared_ptr<const CompiledPolicy>(r.policy);
  }();
  return **policy;
}

podgate::policy::v1::AuthorizeRequest Request(std::vector<std::string> argv) {
  podgate::policy::v1::AuthorizeRequest r;
  r.mutable_principal()->set_user("ana");
  r.mutable_principal()->add_groups("employees");
  r.mutable_principal()->add_groups("team-17");
  r.mutable_target()->set_namespace_("team-17-prod");
  r.mutable_target()->set_pod("svc-orders-5d8f7c9b6-x2x7q");
  r.mutable_target()->set_container("app");
  for (auto& a : argv) {
    r.mutable_command()->add_argv(std::move(a));
  }
  return r;
}

void Run(benchmark::State& state, const podgate::policy::v1::AuthorizeRequest& request,
         podgate::common::v1::Verdict expected) {
  const CompiledPolicy& policy = Policy();
  if (policy.Evaluate(request).verdict() != expected) {
    state.SkipWithError(
        absl::StrCat("unexpected decision: ", policy.Evaluate(request).reason()).c_str());
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(policy.Evaluate(request));
  }
  state.counters["rules"] = static_cast<double>(policy.rules().size());
}

using podgate::common::v1::VERDICT_ALLOW;
using podgate::common::v1::VERDICT_DENY;

void BM_AllowJcmd(benchmark::State& s) {
  Run(s, Request({"jcmd", "4242", "GC.heap_info"}), VERDICT_ALLOW);
}
void BM_AllowCurl(benchmark::State& s) {
  Run(s,
      Request({"curl", "-s", "-m", "5", "-H", "X-Request-Id: 3f2a-77",
               "https://orders.team-17.svc.cluster.local:8443/health"}),
      VERDICT_ALLOW);
}
void BM_AllowCatLogs(benchmark::State& s) {
  Run(s, Request({"cat", "/var/log/team-17/app.log", "/srv/team-17/logs/gc.log"}), VERDICT_ALLOW);
}
void BM_DenyCurlOutputByDenyRule(benchmark::State& s) {
  Run(s, Request({"curl", "-o", "/tmp/x", "https://example.com"}), VERDICT_DENY);
}
void BM_DenyJcmdGrammar(benchmark::State& s) {
  Run(s, Request({"jcmd", "4242", "VM.system_properties"}), VERDICT_DENY);
}
void BM_DenyPathTraversal(benchmark::State& s) {
  Run(s, Request({"tail", "-n", "50", "/var/log/team-17/../../../etc/shadow"}), VERDICT_DENY);
}
void BM_DenyUnknownProgram(benchmark::State& s) {
  Run(s, Request({"rm", "-rf", "/"}), VERDICT_DENY);
}
void BM_DenyInterpreter(benchmark::State& s) { Run(s, Request({"env", "sh"}), VERDICT_DENY); }
void BM_DenyFullwidth(benchmark::State& s) {
  Run(s, Request({"\xef\xbd\x8a\xef\xbd\x83\xef\xbd\x8d\xef\xbd\x84", "1"}), VERDICT_DENY);
}
void BM_DenyHugeArgv(benchmark::State& s) {
  Run(s, Request(std::vector<std::string>(10000, "x")), VERDICT_DENY);
}
void BM_AllowJcmdExplain(benchmark::State& s) {
  const CompiledPolicy& policy = Policy();
  const auto request = Request({"jcmd", "4242", "GC.heap_info"});
  for (auto _ : s) {
    std::vector<std::string> explanation;
    benchmark::DoNotOptimize(policy.Evaluate(request, &explanation));
  }
}
// The service path: snapshot from the store, evaluation, metrics and the (filtered) log line.
void BM_AllowJcmdThroughAuthorizer(benchmark::State& s) {
  static prometheus::Registry registry;
  static PolicyMetrics metrics(registry);
  static PolicyStore store(&metrics, nullptr);
  static bool loaded = [] {
    const std::string path = "/tmp/podgate-policy-benchmark.yaml";
    std::ofstream(path) << BigDocument();
    return store.LoadFile(path).ok();
  }();
  if (!loaded) {
    s.SkipWithError("could not load the policy");
    return;
  }
  Authorizer authorizer(&store, &metrics);
  const auto request = Request({"jcmd", "4242", "GC.heap_info"});
  for (auto _ : s) {
    benchmark::DoNotOptimize(authorizer.Authorize(request));
  }
}
void BM_CompileDocument(benchmark::State& s) {
  const std::string doc = BigDocument();
  for (auto _ : s) {
    benchmark::DoNotOptimize(LoadPolicy(doc, "benchmark"));
  }
}

BENCHMARK(BM_AllowJcmd);
BENCHMARK(BM_AllowCurl);
BENCHMARK(BM_AllowCatLogs);
BENCHMARK(BM_DenyCurlOutputByDenyRule);
BENCHMARK(BM_DenyJcmdGrammar);
BENCHMARK(BM_DenyPathTraversal);
BENCHMARK(BM_DenyUnknownProgram);
BENCHMARK(BM_DenyInterpreter);
BENCHMARK(BM_DenyFullwidth);
BENCHMARK(BM_DenyHugeArgv);
BENCHMARK(BM_AllowJcmdExplain);
BENCHMARK(BM_AllowJcmdThroughAuthorizer);
BENCHMARK(BM_CompileDocument)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_AllowJcmd)->Threads(2);

}  // namespace
}  // namespace podgate::policy

BENCHMARK_MAIN();
