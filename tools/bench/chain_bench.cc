// podgate-bench-chain: the chain (edge, exec, policy, audit) against the same API server
// reached directly, measured side by side, each comparison interleaved in one run
// (docs/performance.md, "Chain"). Starts kubesim, podgate-policy, podgate-audit (SQLite, strict),
// podgate-exec (tests/support/stack.h) and podgate-edge, then:
//   1. round trip of `true`: direct v5 exec to the API server, exec's gRPC Session stream (one
//      session), podgate-run (a process per command: its start-up is included), the edge
//      WebSocket v1 protocol (one session, command after command);
//   2. bulk output (`head -c N /dev/zero`): kubectl exec, podgate-run, one gRPC hop with no
//      podgate code (podgate-bench-stream-floor), exec's Session stream, the edge WebSocket,
//      direct v5; and from their CPU per MiB, the most a relay could move on these cores;
//   3. sessions: N idle v1 sessions through edge: memory and descriptors of edge and exec,
//      the open rate, and a sample of the open sessions still answering a command.
// Prints Markdown tables; with --json=FILE writes them and the metrics (tools/bench/report.h)
// for tools/bench/bench.py. Exit status 0 when every section ran, 1 when a measurement failed,
// 2 on a usage error.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/chain_clients.h"
#include "bench/report.h"
#include "bench/stream_floor_server.h"
#include "bench_fixtures.h"
#include "exec/container_probe.h"
#include "http/client.h"
#include "nlohmann/json.hpp"
#include "runtime/flags.h"
#include "support/exec_session.h"
#include "support/prometheus_text.h"
#include "support/stack.h"
#include "support/subprocess.h"
#include "support/test_pki.h"

ABSL_FLAG(std::string, json, "", "Write the tables and metrics as JSON to this file.");
ABSL_FLAG(bool, quick, false,
          "Smoke mode (ctest, label bench): small sizes; proves the benchmark runs end to end, "
          "not how fast anything is.");
ABSL_FLAG(std::string, sections, "roundtrip,bulk,sessions",
          "Comma-separated sections to run: roundtrip, bulk, sessions. Default all.");
ABSL_FLAG(int, roundtrip_rounds, 0,
          "Round trip: commands per path, interleaved. 0: 200 (quick 20).");
ABSL_FLAG(int, bulk_mib, 0, "Bulk output: MiB per command. 0: 256 (quick 8).");
ABSL_FLAG(int, bulk_rounds, 0, "Bulk output: transfers per path, interleaved. 0: 3 (quick 1).");
ABSL_FLAG(int, sessions, 0,
          "Sessions: idle v1 sessions held through edge. 0: 2000 (quick 50). Each costs the "
          "benchmark about 4 descriptors (its blocking client's socket and event loop), "
          "measured on the warm-up and refused above RLIMIT_NOFILE; podgate-bench-idle holds "
          "10000 with one each (docs/performance.md).");
ABSL_FLAG(int, session_sample, 20, "Sessions: open sessions asked to run a command. Default 20.");
ABSL_FLAG(int, open_concurrency, 8, "Sessions: clients opening sessions in parallel. Default 8.");
ABSL_FLAG(std::string, kubectl, "/usr/local/bin/kubectl",
          "kubectl (1.31+, WebSocket exec) for the bulk comparison; missing: that column is "
          "skipped with a note.");
ABSL_FLAG(bool, exec_journal, true,
          "Run exec with its journal of running commands (--journal_dir, in a temporary "
          "directory), as the Helm chart deploys it (exec.journal.enabled): each command's "
          "start then waits for its entry's fsyncs (stage 'journal'). --noexec_journal "
          "measures without. Default true.");
ABSL_FLAG(std::string, kubesim_bin, PODGATE_KUBESIM_BIN, "kubesim binary.");
ABSL_FLAG(std::string, policy_bin, PODGATE_POLICY_BIN, "podgate-policy binary.");
ABSL_FLAG(std::string, audit_bin, PODGATE_AUDIT_BIN, "podgate-audit binary.");
ABSL_FLAG(std::string, exec_bin, PODGATE_EXEC_BIN, "podgate-exec binary (or a wrapper).");
ABSL_FLAG(std::string, edge_bin, PODGATE_EDGE_BIN, "podgate-edge binary (or a wrapper).");
ABSL_FLAG(std::string, run_bin, PODGATE_RUN_BIN, "podgate-run binary.");
ABSL_FLAG(std::string, stream_floor_bin, PODGATE_STREAM_FLOOR_BIN,
          "podgate-bench-stream-floor binary (sessions: what an idle Session stream costs gRPC "
          "alone).");

namespace podgate::bench {
namespace {

constexpr char kNamespace[] = "bench";
constexpr char kPod[] = "app-1";
constexpr char kContainer[] = "main";
constexpr char kOrigin[] = "https://bench.podgate.test";
constexpr absl::Duration kCommandTimeout = absl::Seconds(120);

// `true` and `head -c N /dev/zero`, with an output limit above the bulk size.
std::string Policy(int64_t output_limit) {
  return absl::StrCat(R"(apiVersion: podgate.io/v1
kind: CommandPolicy
defaults: {timeLimit: 120s, outputLimitBytes: )",
                      output_limit, R"(}
rules:
  - id: bench-true
    effect: allow
    subjects: {groups: [bench]}
    targets: {namespaces: [bench]}
    command:
      program: "true"
  - id: bench-head
    effect: allow
    subjects: {groups: [bench]}
    targets: {namespaces: [bench]}
    command:
      program: head
      flags:
        - {name: -c, value: {type: integer, min: 1}}
      args:
        - {name: file, type: regex, pattern: "/dev/zero"}
)");
}

struct Sizes {
  bool quick = false;
  int roundtrip_rounds = 0;
  int64_t bulk_bytes = 0;
  int bulk_rounds = 0;
  int sessions = 0;
  int session_sample = 0;
  int open_concurrency = 0;
  // This process's RLIMIT_NOFILE once raised to the hard limit (its children inherit it).
  int64_t fd_limit = 0;
};

// Everything the sections share: the stack, edge, a token, the direct client.
struct Chain {
  std::unique_ptr<testing::Stack> stack;
  std::unique_ptr<testing::Subprocess> edge;
  int edge_port = 0;
  std::string token;
  std::string home;  // HOME of kubectl and podgate-run (their caches)
  std::unique_ptr<DirectExec> direct;
};

int JsonPort(const std::string& line, const char* key) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  return j.is_object() && j.contains(key) && j[key].is_number_integer() ? j[key].get<int>() : 0;
}

absl::StatusOr<Chain> StartChain(const Sizes& sizes) {
  Chain c;
  testing::StackOptions options;
  options.binaries = {absl::GetFlag(FLAGS_kubesim_bin), absl::GetFlag(FLAGS_policy_bin),
                      absl::GetFlag(FLAGS_audit_bin), absl::GetFlag(FLAGS_exec_bin)};
  options.cluster_yaml = bench::kBenchCluster;
  options.policy_yaml = Policy(std::max<int64_t>(2 * sizes.bulk_bytes, 1 << 20));
  // Room for every held session of the one benchmark user, and a few more.
  const int room = sizes.sessions + 64;
  options.exec_flags = {absl::StrCat("--max_sessions=", room),
                        absl::StrCat("--max_sessions_per_user=", room)};
  if (absl::GetFlag(FLAGS_exec_journal)) {
    // On the machine's disk, as the chart's emptyDir is on the node's.
    options.exec_flags.push_back("--journal_dir=" + testing::MakeTempDir("bench-journal"));
  }
  // audit's /metrics too: the round trip splits its ack by stage.
  options.audit_flags = {"--metrics_address=127.0.0.1:0"};
  auto stack = testing::Stack::Start(options);
  if (!stack.ok()) {
    return stack.status();
  }
  c.stack = *std::move(stack);
  c.token = c.stack->Token("bench", {"bench"}, absl::Hours(4));
  c.home = c.stack->dir() + "/home";
  std::filesystem::create_directories(c.home);

  // edge with its caps raised for one user from one address, and no keepalive or idle close
  // while the benchmark's clients sit silent (its blocking client answers pings only while it
  // reads).
  std::vector<std::string> edge_args = {
      "--grpc_address=127.0.0.1:0",
      "--metrics_address=127.0.0.1:0",
      "--http_address=127.0.0.1:0",
      absl::StrCat("--exec_address=127.0.0.1:", c.stack->exec_port()),
      absl::StrCat("--policy_address=127.0.0.1:", c.stack->policy_port()),
      absl::StrCat("--audit_address=127.0.0.1:", c.stack->audit_port()),
      std::string("--allowed_origins=") + kOrigin,
      "--jwt_key_file=" + c.stack->jwt_secret_file(),
      "--jwt_algorithm=HS256",
      std::string("--jwt_issuer=") + testing::Stack::kIssuer,
      "--jwt_audience=podgate",
      "--messages_per_second=1000000",
      "--message_burst=1000000",
      "--user_messages_per_second=1000000",
      "--user_message_burst=1000000",
      absl::StrCat("--max_connections=", std::max(room, 10000)),
      absl::StrCat("--max_connections_per_user=", room),
      "--max_connections_per_source=0",
      "--max_unauthenticated_per_source=0",
      "--ws_keepalive=2h",
      "--ws_idle_timeout=2h",
      "--drain_timeout=2s"};
  auto edge = testing::Subprocess::Start(absl::GetFlag(FLAGS_edge_bin), edge_args);
  if (!edge.ok()) {
    return edge.status();
  }
  c.edge = *std::move(edge);
  auto line = c.edge->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(30));
  if (!line.ok()) {
    std::string log;
    for (const std::string& l : c.edge->Lines()) {
      absl::StrAppend(&log, "\n  ", l);
    }
    return absl::UnavailableError(absl::StrCat("podgate-edge did not start: ", log));
  }
  c.edge_port = JsonPort(*line, "http_port");
  auto direct = DirectExec::FromKubeconfig(c.stack->kubeconfig());
  if (!direct.ok()) {
    return direct.status();
  }
  c.direct = std::make_unique<DirectExec>(*std::move(direct));
  return c;
}

std::vector<std::string> PodgateRun(const Chain& c, const std::vector<std::string>& command) {
  std::vector<std::string> argv = {absl::GetFlag(FLAGS_run_bin),
                                   absl::StrCat("--exec_address=127.0.0.1:", c.stack->exec_port()),
                                   "-n",
                                   kNamespace,
                                   "-c",
                                   kContainer,
                                   kPod,
                                   "--"};
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

std::map<std::string, std::string> RunEnv(const Chain& c) {
  return {{"PODGATE_TOKEN", c.token}, {"HOME", c.home}};
}

double Ms(absl::Duration d) { return absl::ToDoubleMicroseconds(d) / 1000.0; }

absl::Status ExpectExit0(const std::string& what, int code) {
  return code == 0 ? absl::OkStatus()
                   : absl::InternalError(absl::StrCat(what, ": exit code ", code));
}

// An ExecSession command's outcome as a status (exit 0 expected); `bytes` gets stdout's size.
absl::Status ExecOutcome(const std::string& what, const testing::CommandOutcome& o) {
  if (o.exit.has_value() && o.exit->termination() == common::v1::TERMINATION_EXITED &&
      o.exit->exit_code() == 0) {
    return absl::OkStatus();
  }
  return absl::InternalError(absl::StrCat(
      what, " did not exit 0: ", o.stream_ended ? "the stream ended; " : "",
      o.exit ? o.exit->ShortDebugString() : "", o.error ? o.error->ShortDebugString() : "",
      o.denied ? o.denied->ShortDebugString() : "", " stderr: ", o.stderr_text.substr(0, 500)));
}

// A stage histogram's stages in order, each with what it measures.
using StageList = std::vector<std::pair<std::string, std::string>>;
// One read of a service's /metrics page; an error when it could not be fetched or parsed.
using MetricsRead = absl::StatusOr<testing::MetricsPage>;

MetricsRead ReadMetrics(int metrics_port) {
  http::ClientOptions o;
  o.port = static_cast<uint16_t>(metrics_port);
  absl::StatusOr<http::ClientResponse> page = http::Fetch(o, "GET", "/metrics");
  if (!page.ok()) {
    return page.status();
  }
  return testing::ParsePrometheusText(page->body);
}

// A latency table's row: `leading` cells, then the samples' p50, p90, p99 and mean in ms and
// their count.
std::vector<std::string> LatencyRow(std::vector<std::string> leading, Samples& samples) {
  for (double value :
       {samples.Percentile(50), samples.Percentile(90), samples.Percentile(99), samples.Mean()}) {
    leading.push_back(Cell(value, 2));
  }
  leading.push_back(absl::StrCat(samples.size()));
  return leading;
}

// One row per stage of histogram `metric`{stage=...} between the two reads: what it measures,
// the mean, the median and the 99th percentile in ms (estimated from the buckets, as
// histogram_quantile does: exact to the buckets' bounds) and the count; metrics
// `<prefix>.<stage>.{mean,p50,p99}_ms`. A stage not observed in between is noted (as `who`'s),
// not shown; a percentile the buckets cannot give is noted and shown as n/a.
void AddStageRows(Table& table, Report& report, const std::string& prefix, const StageList& stages,
                  const std::string& metric, const MetricsRead& before, const MetricsRead& after,
                  const std::string& who = "exec") {
  for (const auto& [stage, what] : stages) {
    const std::string labels = absl::StrCat("stage=\"", stage, "\"");
    const auto value = [&](const MetricsRead& read, const std::string& name) {
      if (!read.ok()) {
        return -1.0;
      }
      auto it = read->samples.find(absl::StrCat(name, "{", labels, "}"));
      return it == read->samples.end() ? -1.0 : it->second;
    };
    const double sum0 = value(before, metric + "_sum");
    const double count0 = value(before, metric + "_count");
    const double sum1 = value(after, metric + "_sum");
    const double count1 = value(after, metric + "_count");
    if (sum1 < 0 || count1 < 0 || sum0 < 0 || count0 < 0 || count1 <= count0) {
      report.Note(absl::StrCat(prefix, ": ", who, "'s stage '", stage, "' was not measured"));
      continue;
    }
    const double mean_ms = (sum1 - sum0) / (count1 - count0) * 1000;
    report.Metric(absl::StrCat(prefix, ".", stage, ".mean_ms"), mean_ms);
    std::vector<std::string> row = {stage, what, Cell(mean_ms, 2)};
    for (int p : {50, 99}) {
      // Every observation is 0 when their sum is (durations are never negative); the buckets
      // alone would put the quantile inside the first bucket.
      absl::StatusOr<double> q =
          sum1 == sum0 ? 0.0
                       : testing::HistogramQuantile(*before, *after, metric, labels, p / 100.0);
      if (!q.ok()) {
        report.Note(absl::StrCat(prefix, ": ", who, "'s stage '", stage, "' p", p, ": ",
                                 q.status().message()));
        row.push_back("n/a");
        continue;
      }
      report.Metric(absl::StrCat(prefix, ".", stage, ".p", p, "_ms"), *q * 1000);
      row.push_back(Cell(*q * 1000, 2));
    }
    row.push_back(Cell(count1 - count0, 0));
    table.AddRow(row);
  }
}

// --- 1. round trip ------------------------------------------------------------------------

absl::Status RoundTrip(Chain& c, const Sizes& sizes, Report& report) {
  testing::ExecSession exec_session(c.stack->exec_port(), absl::Hours(4));
  if (auto ready = exec_session.Open(c.token, kNamespace, kPod, kContainer); !ready.ok()) {
    return absl::Status(ready.status().code(),
                        absl::StrCat("exec Session open: ", ready.status().message()));
  }
  auto edge = EdgeSession::Open(c.edge_port, kOrigin, c.token, kNamespace, kPod, absl::Seconds(30));
  if (!edge.ok()) {
    return edge.status();
  }
  Samples direct;
  Samples wrapped;
  // The wrapped direct path's own upgrade and launch, timed by its client.
  Samples wrapped_upgrade;
  Samples wrapped_launch;
  Samples session;
  Samples run;
  Samples ws;
  bool recording = false;
  int n = 0;
  auto timed = [&](Samples& into, const std::function<absl::Status()>& one) -> absl::Status {
    const absl::Time start = absl::Now();
    absl::Status s = one();
    const absl::Duration took = absl::Now() - start;
    if (s.ok() && recording) {
      into.Add(Ms(took));
    }
    return s;
  };
  const std::vector<std::function<absl::Status(int)>> sides = {
      [&](int) {
        return timed(direct, [&]() -> absl::Status {
          auto r = c.direct->Run(kNamespace, kPod, kContainer, {"true"}, kCommandTimeout);
          return r.ok() ? ExpectExit0("direct true", r->exit_code) : r.status();
        });
      },
      [&](int) {
        // What exec asks the API server to run for `true`: its launch wrapper, which reports
        // the process's pid and start time and waits for "go" (docs/exec.md).
        return timed(wrapped, [&]() -> absl::Status {
          auto r = c.direct->Run(kNamespace, kPod, kContainer, exec::LaunchWrapperArgv({"true"}),
                                 kCommandTimeout, /*answer_launch_report=*/true);
          if (r.ok() && r->exit_code == 0 && recording) {
            wrapped_upgrade.Add(Ms(r->upgrade));
            wrapped_launch.Add(Ms(r->launch));
          }
          return r.ok() ? ExpectExit0("direct launch wrapper", r->exit_code) : r.status();
        });
      },
      [&](int) {
        return timed(session, [&]() -> absl::Status {
          return ExecOutcome("exec Session true", exec_session.Run("true", absl::StrCat("t", ++n)));
        });
      },
      [&](int) {
        return timed(run, [&]() -> absl::Status {
          auto r = RunProcess(PodgateRun(c, {"true"}), RunEnv(c), kCommandTimeout);
          return r.ok() ? ExpectExit0("podgate-run true", r->exit_code) : r.status();
        });
      },
      [&](int) {
        return timed(ws, [&]() -> absl::Status {
          auto r = (*edge)->Run("true", absl::StrCat("t", ++n), kCommandTimeout);
          return r.ok() ? ExpectExit0("edge true", r->exit_code) : r.status();
        });
      },
  };
  // A few unrecorded rounds first: the container's uid check, connections, caches.
  if (absl::Status s = RunInterleaved(3, sides); !s.ok()) {
    return s;
  }
  // exec's own account of where a command's start goes (podgate_exec_command_start_seconds),
  // over the recorded rounds only.
  StageList stage_list = {
      {"policy", "asking policy (AuthorizeStream) to its answer"},
      {"audit", "the decision sent to audit to its durable ack (strict)"},
      {"checks", "root guard and container checks (cached after the first command)"},
      {"upgrade", "pods/exec call to the WebSocket upgrade (TCP, TLS, HTTP upgrade)"},
      {"launch", "the upgrade to the launch wrapper's pid report (the API server starts it)"}};
  if (absl::GetFlag(FLAGS_exec_journal)) {
    stage_list.push_back(
        {"journal", "the pid into the command's journal entry (queued, in place, fdatasync)"});
  }
  stage_list.push_back(
      {"audit_wait", "ready for \"go\" until audit's ack of the decision (0 if it came first)"});
  stage_list.push_back({"total", "the command received to \"go\" (the process runs)"});
  const std::string kMetric = "podgate_exec_command_start_seconds";
  const MetricsRead exec_before = ReadMetrics(c.stack->exec_metrics_port());
  // audit's own account of its acks (podgate_audit_ack_latency_seconds): every batch of the
  // recorded rounds, each command's request, decision and result events among them.
  const StageList audit_stage_list = {
      {"queued", "the batch's oldest event in the writer's queue until its transaction starts"},
      {"commit", "the transaction (the insert, no sync)"},
      {"sync_wait", "the transaction's end until its sync starts (the syncer busy)"},
      {"sync", "the sync (fdatasync) that makes it durable"},
      {"total", "the oldest event's entry into the queue until durable (its ack is sent)"}};
  const std::string kAuditMetric = "podgate_audit_ack_latency_seconds";
  const MetricsRead audit_before = ReadMetrics(c.stack->audit_metrics_port());
  recording = true;
  if (absl::Status s = RunInterleaved(sizes.roundtrip_rounds, sides); !s.ok()) {
    return s;
  }
  Table audit_stages(
      "Where audit's ack goes: each committed batch by stage, ms (audit's "
      "podgate_audit_ack_latency_seconds over the recorded rounds, all paths; p50 and p99 "
      "from its buckets)",
      {"stage", "what", "mean ms", "p50 ms", "p99 ms", "batches"});
  AddStageRows(audit_stages, report, "roundtrip.audit_stage", audit_stage_list, kAuditMetric,
               audit_before, ReadMetrics(c.stack->audit_metrics_port()), "audit");
  Table stages(
      "Where exec's share goes: a command's start by stage, ms (exec's "
      "podgate_exec_command_start_seconds over the recorded commands of the three exec paths; "
      "p50 and p99 from its buckets)",
      {"stage", "what", "mean ms", "p50 ms", "p99 ms", "commands"});
  AddStageRows(stages, report, "roundtrip.exec_stage", stage_list, kMetric, exec_before,
               ReadMetrics(c.stack->exec_metrics_port()));
  // The same two stages on the direct path, beside exec's: where the chain's load slows the API
  // server's part, and what the services' share of a percentile is made of.
  Table direct_stages(
      "The launch wrapper's upgrade and launch on the direct path, ms (its client's clock, the "
      "recorded rounds; exec's upgrade uses a connection made ahead, the direct one dials)",
      {"stage", "what", "p50", "p90", "p99", "mean", "commands"});
  for (const auto& [stage, what, samples] :
       {std::tuple<const char*, const char*, Samples*>{
            "upgrade", "the call to the WebSocket upgrade (TCP, TLS, HTTP upgrade)",
            &wrapped_upgrade},
        std::tuple<const char*, const char*, Samples*>{
            "launch", "the upgrade to the launch wrapper's pid report", &wrapped_launch}}) {
    direct_stages.AddRow(LatencyRow({stage, what}, *samples));
    for (int p : {50, 99}) {
      report.Metric(absl::StrCat("roundtrip.direct_wrapped.", stage, ".p", p, "_ms"),
                    samples->Percentile(p));
    }
  }
  Table table(absl::StrCat("Round trip of `true`, ms (", sizes.roundtrip_rounds,
                           " commands per path, interleaved)"),
              {"path", "p50", "p90", "p99", "mean", "commands"});
  struct Row {
    const char* label;
    const char* metric;
    Samples* samples;
  };
  for (const Row& row : {
           Row{"direct v5 exec to the API server (a connection per command)", "direct", &direct},
           Row{"direct v5 exec of exec's launch wrapper around `true`, answered", "direct_wrapped",
               &wrapped},
           Row{"exec gRPC Session stream (one session), no edge", "exec_session", &session},
           Row{"podgate-run (a process per command, start-up included)", "exec", &run},
           Row{"edge WebSocket v1 (one session) → exec → API server", "edge", &ws},
       }) {
    table.AddRow(LatencyRow({row.label}, *row.samples));
    for (int p : {50, 90, 99}) {
      report.Metric(absl::StrCat("roundtrip.", row.metric, ".p", p, "_ms"),
                    row.samples->Percentile(p));
    }
  }
  const double added50 = ws.Percentile(50) - direct.Percentile(50);
  const double added90 = ws.Percentile(90) - direct.Percentile(90);
  const double added99 = ws.Percentile(99) - direct.Percentile(99);
  table.AddRow({"added by the chain (edge − direct)", Cell(added50, 2), Cell(added90, 2),
                Cell(added99, 2), Cell(ws.Mean() - direct.Mean(), 2), ""});
  report.Metric("roundtrip.added.p50_ms", added50);
  report.Metric("roundtrip.added.p99_ms", added99);
  // The chain's share without the wrapper: policy, audit (strict) and the hops edge → exec.
  const double own50 = ws.Percentile(50) - wrapped.Percentile(50);
  const double own99 = ws.Percentile(99) - wrapped.Percentile(99);
  table.AddRow({"  of which the launch wrapper (direct wrapper − direct)",
                Cell(wrapped.Percentile(50) - direct.Percentile(50), 2),
                Cell(wrapped.Percentile(90) - direct.Percentile(90), 2),
                Cell(wrapped.Percentile(99) - direct.Percentile(99), 2),
                Cell(wrapped.Mean() - direct.Mean(), 2), ""});
  table.AddRow({"  of which the services (edge − direct wrapper)", Cell(own50, 2),
                Cell(ws.Percentile(90) - wrapped.Percentile(90), 2), Cell(own99, 2),
                Cell(ws.Mean() - wrapped.Mean(), 2), ""});
  // The wrapper's share: what the security design costs before any service does anything.
  report.Metric("roundtrip.added_by_wrapper.p50_ms",
                wrapped.Percentile(50) - direct.Percentile(50));
  report.Metric("roundtrip.added_by_wrapper.p99_ms",
                wrapped.Percentile(99) - direct.Percentile(99));
  report.Metric("roundtrip.added_by_services.p50_ms", own50);
  report.Metric("roundtrip.added_by_services.p99_ms", own99);
  report.Add(table);
  report.Add(stages);
  report.Add(direct_stages);
  report.Add(audit_stages);
  exec_session.Close();
  return absl::OkStatus();
}

// podgate-bench-stream-floor's server (exec.v1 Session streams with no podgate code); its
// host:port in `*address`.
absl::StatusOr<std::unique_ptr<testing::Subprocess>> StartSessionFloorServer(std::string* address) {
  int port = 0;
  auto server =
      StartStreamFloorServer(absl::GetFlag(FLAGS_stream_floor_bin), {"--role=server"}, &port);
  if (server.ok()) {
    *address = absl::StrCat("127.0.0.1:", port);
  }
  return server;
}

// --- 2. bulk output -----------------------------------------------------------------------

absl::Status Bulk(Chain& c, const Sizes& sizes, Report& report) {
  const int64_t n = sizes.bulk_bytes;
  const std::vector<std::string> command = {"head", "-c", absl::StrCat(n), "/dev/zero"};
  const std::string line = absl::StrCat("head -c ", n, " /dev/zero");
  const double mib = static_cast<double>(n) / (1 << 20);
  const std::string kubectl = absl::GetFlag(FLAGS_kubectl);
  const bool have_kubectl = access(kubectl.c_str(), X_OK) == 0;
  if (!have_kubectl) {
    report.Note(absl::StrCat("bulk: kubectl not found at ", kubectl,
                             " (tools/install-k8s-tools.sh installs it; --kubectl=PATH): the "
                             "kubectl column and bulk.ratio.podgate_run_vs_kubectl are skipped."));
  }
  testing::ExecSession exec_session(c.stack->exec_port(), absl::Hours(4));
  if (auto ready = exec_session.Open(c.token, kNamespace, kPod, kContainer); !ready.ok()) {
    return absl::Status(ready.status().code(),
                        absl::StrCat("exec Session open: ", ready.status().message()));
  }
  auto edge = EdgeSession::Open(c.edge_port, kOrigin, c.token, kNamespace, kPod, absl::Seconds(30));
  if (!edge.ok()) {
    return edge.status();
  }
  // The limit beside podgate-run: one gRPC hop alone, podgate-bench-stream-floor's server
  // answering `head -c N /dev/zero` with N bytes in exec's largest output messages to its bulk
  // client, which writes them to its stdout as podgate-run does.
  std::string floor_address;
  auto floor = StartSessionFloorServer(&floor_address);
  if (!floor.ok()) {
    return floor.status();
  }
  struct Side {
    std::string label;
    std::string metric;
    std::function<absl::StatusOr<int64_t>()> transfer;  // stdout bytes received
    // The process in the exec column: exec, or the server that stands in for it.
    pid_t exec_pid = 0;
    Samples rate{};
    // CPU seconds used during this side's transfers, by process: kubesim, exec, edge, and the
    // client (this benchmark's own threads, or the kubectl / podgate-run process it spawned).
    double cpu_kubesim = 0;
    double cpu_exec = 0;
    double cpu_edge = 0;
    double cpu_client = 0;
    double seconds = 0;
    int transfers = 0;
  };
  const pid_t kubesim_pid = c.stack->kubesim()->pid();
  const pid_t exec_pid = c.stack->exec()->pid();
  const pid_t edge_pid = c.edge->pid();
  int id = 0;
  std::vector<Side> sides;
  if (have_kubectl) {
    sides.push_back({"kubectl exec (a process)", "kubectl", [&]() -> absl::StatusOr<int64_t> {
                       std::vector<std::string> argv = {
                           kubectl, "--kubeconfig", c.stack->kubeconfig(),
                           "exec",  "-n",           kNamespace,
                           "-c",    kContainer,     kPod,
                           "--"};
                       argv.insert(argv.end(), command.begin(), command.end());
                       auto r = RunProcess(argv, {{"HOME", c.home}}, kCommandTimeout);
                       if (!r.ok()) {
                         return r.status();
                       }
                       return r->stdout_bytes;
                     }});
  }
  sides.push_back(
      {"podgate-run (a process) → exec", "podgate_run", [&]() -> absl::StatusOr<int64_t> {
         auto r = RunProcess(PodgateRun(c, command), RunEnv(c), kCommandTimeout);
         if (!r.ok()) {
           return r.status();
         }
         return r->stdout_bytes;
       }});
  sides.push_back({"gRPC stream alone, no podgate code (a process)", "grpc_alone",
                   [&]() -> absl::StatusOr<int64_t> {
                     auto r =
                         RunProcess({absl::GetFlag(FLAGS_stream_floor_bin), "--role=bulk-client",
                                     "--address=" + floor_address, absl::StrCat("--bytes=", n)},
                                    {}, kCommandTimeout);
                     if (!r.ok()) {
                       return r.status();
                     }
                     if (absl::Status s = ExpectExit0("gRPC stream alone", r->exit_code); !s.ok()) {
                       return s;
                     }
                     return r->stdout_bytes;
                   },
                   (*floor)->pid()});
  sides.push_back(
      {"exec gRPC Session stream, no edge", "exec_session", [&]() -> absl::StatusOr<int64_t> {
         exec_session.Command(line, absl::StrCat("b", ++id));
         int64_t bytes = 0;
         testing::CommandOutcome o = exec_session.Wait(&bytes);
         if (absl::Status s = ExecOutcome("exec Session " + line, o); !s.ok()) {
           return s;
         }
         return bytes;
       }});
  sides.push_back(
      {"edge WebSocket v1 → exec → API server", "edge", [&]() -> absl::StatusOr<int64_t> {
         auto r = (*edge)->Run(line, absl::StrCat("b", ++id), kCommandTimeout);
         if (!r.ok()) {
           return r.status();
         }
         if (absl::Status s = ExpectExit0("edge " + line, r->exit_code); !s.ok()) {
           return s;
         }
         return r->stdout_bytes;
       }});
  sides.push_back({"direct v5 exec to the API server", "direct", [&]() -> absl::StatusOr<int64_t> {
                     auto r = c.direct->Run(kNamespace, kPod, kContainer, command, kCommandTimeout);
                     if (!r.ok()) {
                       return r.status();
                     }
                     if (absl::Status s = ExpectExit0("direct " + line, r->exit_code); !s.ok()) {
                       return s;
                     }
                     return r->stdout_bytes;
                   }});
  std::vector<std::function<absl::Status(int)>> runs;
  for (Side& side : sides) {
    if (side.exec_pid == 0) {
      side.exec_pid = exec_pid;
    }
    runs.push_back([&side, n, mib, kubesim_pid, edge_pid](int) -> absl::Status {
      const double kubesim0 = CpuSeconds(kubesim_pid);
      const double exec0 = CpuSeconds(side.exec_pid);
      const double edge0 = CpuSeconds(edge_pid);
      const double client0 = CpuSeconds(0) + ReapedChildrenCpuSeconds();
      const absl::Time start = absl::Now();
      absl::StatusOr<int64_t> bytes = side.transfer();
      const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
      side.cpu_kubesim += CpuSeconds(kubesim_pid) - kubesim0;
      side.cpu_exec += CpuSeconds(side.exec_pid) - exec0;
      side.cpu_edge += CpuSeconds(edge_pid) - edge0;
      side.cpu_client += CpuSeconds(0) + ReapedChildrenCpuSeconds() - client0;
      side.seconds += seconds;
      ++side.transfers;
      if (!bytes.ok()) {
        return absl::Status(bytes.status().code(),
                            absl::StrCat(side.label, ": ", bytes.status().message()));
      }
      if (*bytes != n) {
        return absl::DataLossError(
            absl::StrCat(side.label, ": ", *bytes, " bytes of stdout, expected ", n));
      }
      side.rate.Add(mib / seconds);
      return absl::OkStatus();
    });
  }
  if (absl::Status s = RunInterleaved(sizes.bulk_rounds, runs); !s.ok()) {
    return s;
  }
  Table table(absl::StrCat("Bulk output, `", line, "` (", Cell(mib, 0), " MiB), MiB/s (",
                           sizes.bulk_rounds, " transfers per path, interleaved)"),
              {"path", "median", "min", "max"});
  std::map<std::string, double> median;
  for (Side& side : sides) {
    median[side.metric] = side.rate.Percentile(50);
    table.AddRow({side.label, Cell(side.rate.Percentile(50)), Cell(side.rate.Percentile(0)),
                  Cell(side.rate.Percentile(100))});
    report.Metric(absl::StrCat("bulk.", side.metric, ".mib_per_s"), median[side.metric]);
  }
  report.Add(table);
  // Where the CPU goes: every process of a path shares the machine's cores, so a path whose
  // processes together need C ms of CPU per MiB cannot move more than cores × 1000 / C MiB/s.
  const double cores = static_cast<double>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  // By path, CPU ms per MiB: every process's, exec's (or its stand-in's), edge's and the
  // client's together.
  struct CpuPerMib {
    double total = 0;
    double exec = 0;
    double edge_and_client = 0;
  };
  std::map<std::string, CpuPerMib> cpu_per_mib;
  Table cpu(absl::StrCat("Bulk output, CPU ms per MiB by process (all transfers of a path), and "
                         "the rate the ",
                         Cell(cores, 0), " cores allow at that cost"),
            {"path", "kubesim", "exec", "edge", "client", "total", "CPU-bound ceiling, MiB/s",
             "measured, MiB/s", "cores busy"});
  for (Side& side : sides) {
    const double total_mib = mib * side.transfers;
    if (total_mib <= 0 || side.seconds <= 0) {
      continue;
    }
    const auto per_mib = [total_mib](double cpu_s) { return cpu_s * 1000 / total_mib; };
    const double total =
        per_mib(side.cpu_kubesim + side.cpu_exec + side.cpu_edge + side.cpu_client);
    const double ceiling = total > 0 ? cores * 1000 / total : 0;
    cpu.AddRow(
        {side.label, Cell(per_mib(side.cpu_kubesim), 2), Cell(per_mib(side.cpu_exec), 2),
         Cell(per_mib(side.cpu_edge), 2), Cell(per_mib(side.cpu_client), 2), Cell(total, 2),
         Cell(ceiling), Cell(total_mib / side.seconds),
         Cell((side.cpu_kubesim + side.cpu_exec + side.cpu_edge + side.cpu_client) / side.seconds,
              2)});
    report.Metric(absl::StrCat("bulk.", side.metric, ".cpu_ms_per_mib"), total);
    cpu_per_mib[side.metric] = {total, per_mib(side.cpu_exec),
                                per_mib(side.cpu_edge + side.cpu_client)};
  }
  report.Add(cpu);
  // The measured limit: whatever relays the output pays for the direct path's work (the API
  // server sending, a WebSocket client receiving it) plus one gRPC hop; with no podgate code in
  // it (the stream-floor pair), that sum is the least CPU any such relay needs per MiB, and the
  // cores cannot move more than cores × 1000 / that. edge's path has a second hop: the gRPC
  // hop's sending side alone, then edge (receiving it, sending the WebSocket) and its client as
  // measured.
  Table limits(absl::StrCat("Bulk output: the limit of a relay on these ", Cell(cores, 0),
                            " cores (CPU ms per MiB that no relay avoids, the rate it allows)"),
               {"path", "least CPU ms per MiB", "ceiling, MiB/s", "ceiling / baseline",
                "measured / baseline"});
  if (cpu_per_mib.count("direct") > 0 && cpu_per_mib.count("grpc_alone") > 0) {
    const double relay = cpu_per_mib["direct"].total + cpu_per_mib["grpc_alone"].total;
    const double relay_ceiling = cores * 1000 / relay;
    report.Metric("bulk.relay_floor.cpu_ms_per_mib", relay);
    report.Metric("bulk.relay_ceiling.mib_per_s", relay_ceiling);
    if (have_kubectl && median["kubectl"] > 0) {
      const double limit = relay_ceiling / median["kubectl"];
      limits.AddRow({"podgate-run: direct + one gRPC hop alone (baseline kubectl)", Cell(relay, 2),
                     Cell(relay_ceiling), Cell(limit, 2),
                     Cell(median["podgate_run"] / median["kubectl"], 2)});
      report.Metric("bulk.ratio_limit.podgate_run_vs_kubectl", limit);
    }
    if (median["direct"] > 0 && cpu_per_mib.count("edge") > 0) {
      const double edge_floor = cpu_per_mib["direct"].total + cpu_per_mib["grpc_alone"].exec +
                                cpu_per_mib["edge"].edge_and_client;
      const double edge_ceiling = cores * 1000 / edge_floor;
      const double limit = edge_ceiling / median["direct"];
      limits.AddRow(
          {"edge: direct + a gRPC hop's sender alone + edge and its client as "
           "measured (baseline direct)",
           Cell(edge_floor, 2), Cell(edge_ceiling), Cell(limit, 2),
           Cell(median["edge"] / median["direct"], 2)});
      report.Metric("bulk.ratio_limit.edge_vs_direct", limit);
    }
    report.Add(limits);
  }
  Table ratios("Bulk output ratios (medians)", {"ratio", "value", "goal"});
  if (have_kubectl && median["kubectl"] > 0) {
    const double r = median["podgate_run"] / median["kubectl"];
    ratios.AddRow({"podgate-run / kubectl exec", Cell(r, 2), "≥ 1.0"});
    report.Metric("bulk.ratio.podgate_run_vs_kubectl", r);
  }
  if (median["direct"] > 0) {
    const double r = median["edge"] / median["direct"];
    ratios.AddRow({"edge WebSocket / direct v5", Cell(r, 2), "≥ 0.8"});
    report.Metric("bulk.ratio.edge_vs_direct", r);
  }
  report.Add(ratios);
  exec_session.Close();
  return absl::OkStatus();
}

// --- 3. sessions --------------------------------------------------------------------------

struct ProcessUse {
  int64_t rss_kib = 0;
  int fds = 0;
};

ProcessUse Use(pid_t pid) { return {testing::ResidentKiB(pid), testing::OpenDescriptors(pid)}; }

// What `streams` idle exec.v1 Session streams cost gRPC alone, KiB per stream on the client
// (edge's side) and the server (exec's): podgate-bench-stream-floor as both, on one channel with
// edge's settings, each stream having sent `open` and received `ready` as a session's does.
struct StreamFloor {
  double client_kib = 0;
  double server_kib = 0;
};

absl::StatusOr<StreamFloor> MeasureStreamFloor(int streams) {
  const std::string bin = absl::GetFlag(FLAGS_stream_floor_bin);
  std::string address;
  auto server = StartSessionFloorServer(&address);
  if (!server.ok()) {
    return server.status();
  }
  auto client = testing::Subprocess::Start(
      bin, {"--role=client", "--address=" + address, absl::StrCat("--streams=", streams)});
  if (!client.ok()) {
    return client.status();
  }
  if (auto warm = (*client)->WaitForLine("warm", absl::Seconds(30)); !warm.ok()) {
    return absl::InternalError(
        absl::StrCat("the stream-floor client did not warm up: ", warm.status().message()));
  }
  absl::SleepFor(absl::Seconds(1));
  const int64_t client_before = testing::ResidentKiB((*client)->pid());
  const int64_t server_before = testing::ResidentKiB((*server)->pid());
  (*client)->Signal(SIGUSR1);
  if (auto held = (*client)->WaitForLine("held", absl::Seconds(150)); !held.ok()) {
    return absl::InternalError(absl::StrCat("the stream-floor client did not hold its streams: ",
                                            held.status().message()));
  }
  absl::SleepFor(absl::Seconds(2));
  StreamFloor floor;
  floor.client_kib =
      static_cast<double>(testing::ResidentKiB((*client)->pid()) - client_before) / streams;
  floor.server_kib =
      static_cast<double>(testing::ResidentKiB((*server)->pid()) - server_before) / streams;
  return floor;  // the destructors kill both
}

absl::Status Sessions(Chain& c, const Sizes& sizes, Report& report) {
  const int total = sizes.sessions;
  const pid_t edge_pid = c.edge->pid();
  const pid_t exec_pid = c.stack->exec()->pid();
  auto open = [&]() {
    return EdgeSession::Open(c.edge_port, kOrigin, c.token, kNamespace, kPod, absl::Seconds(60));
  };
  // Warm-up: what the first sessions allocate once (gRPC channel, pools, caches) is not per
  // session.
  {
    constexpr int kWarm = 16;
    const int own_before = testing::OpenDescriptors(getpid());
    std::vector<std::unique_ptr<EdgeSession>> warm;
    for (int i = 0; i < kWarm; ++i) {
      auto s = open();
      if (!s.ok()) {
        return s.status();
      }
      warm.push_back(*std::move(s));
    }
    // This benchmark's blocking client holds more than its socket per session (its own event
    // loop's descriptors): refuse a count this process cannot hold before opening any, rather
    // than failing at the descriptor limit halfway.
    const int per_session = (testing::OpenDescriptors(getpid()) - own_before + kWarm - 1) / kWarm;
    const int64_t needed = int64_t{total} * per_session + own_before + 256;
    if (needed > sizes.fd_limit) {
      return absl::FailedPreconditionError(absl::StrCat(
          "holding ", total, " sessions needs about ", needed, " descriptors in this benchmark (",
          per_session,
          " per session: the socket and its client's event loop), above its RLIMIT_NOFILE of ",
          sizes.fd_limit, "; raise the hard limit (ulimit -Hn) or lower --sessions"));
    }
    if (auto r = warm[0]->Run("true", "w1", kCommandTimeout); !r.ok()) {
      return r.status();
    }
    for (auto& s : warm) {
      s->Abort();
    }
  }
  absl::SleepFor(absl::Seconds(2));
  const ProcessUse edge_before = Use(edge_pid);
  const ProcessUse exec_before = Use(exec_pid);

  // exec's own account of where an open goes (podgate_exec_session_open_seconds), over the
  // measured opens only (command sessions: no checks stage).
  const StageList kOpenStages = {
      {"credential", "the open received to the user's token verified"},
      {"policy",
       "the target's scope asked of policy (again with the pod's labels only if a rule selects by "
       "them)"},
      {"pod", "the pod read from the API server"},
      {"audit", "the open's record sent to audit to its durable ack (strict)"},
      {"total", "the open received to `ready`"}};
  const std::string kOpenMetric = "podgate_exec_session_open_seconds";
  const MetricsRead open_stages_before = ReadMetrics(c.stack->exec_metrics_port());
  std::vector<std::unique_ptr<EdgeSession>> held(static_cast<size_t>(total));
  std::atomic<int> next{0};
  std::atomic<int> failed{0};
  absl::Mutex mu;
  absl::Status first_failure;
  const absl::Time start = absl::Now();
  std::vector<std::thread> openers;
  for (int t = 0; t < std::max(1, sizes.open_concurrency); ++t) {
    openers.emplace_back([&] {
      for (int i = next++; i < total; i = next++) {
        auto s = open();
        if (!s.ok()) {
          ++failed;
          absl::MutexLock lock(&mu);
          if (first_failure.ok()) {
            first_failure = absl::Status(s.status().code(),
                                         absl::StrCat("session ", i, ": ", s.status().message()));
          }
          continue;
        }
        held[static_cast<size_t>(i)] = *std::move(s);
      }
    });
  }
  for (std::thread& t : openers) {
    t.join();
  }
  const double open_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const MetricsRead open_stages_after = ReadMetrics(c.stack->exec_metrics_port());
  const int opened = total - failed.load();
  absl::SleepFor(absl::Seconds(2));
  const ProcessUse edge_after = Use(edge_pid);
  const ProcessUse exec_after = Use(exec_pid);

  // A sample spread over the open sessions, each running a command.
  const int sample = std::min(sizes.session_sample, opened);
  int answered = 0;
  Samples sample_ms;
  std::string sample_failure;
  for (int k = 0; k < sample; ++k) {
    size_t i = static_cast<size_t>(static_cast<int64_t>(k) * total / std::max(1, sample));
    while (i < held.size() && held[i] == nullptr) {
      ++i;
    }
    if (i >= held.size()) {
      break;
    }
    const absl::Time t0 = absl::Now();
    auto r = held[i]->Run("true", absl::StrCat("s", k), kCommandTimeout);
    if (r.ok() && r->exit_code == 0) {
      ++answered;
      sample_ms.Add(Ms(absl::Now() - t0));
    } else if (sample_failure.empty()) {
      sample_failure = absl::StrCat(
          "session ", i, ": ",
          r.ok() ? absl::StrCat("exit ", r->exit_code) : std::string(r.status().message()));
    }
  }
  for (auto& s : held) {
    if (s != nullptr) {
      s->Abort();
    }
  }
  held.clear();

  const double open_rate = opened / open_seconds;
  const double edge_kib =
      static_cast<double>(edge_after.rss_kib - edge_before.rss_kib) / std::max(1, opened);
  const double exec_kib =
      static_cast<double>(exec_after.rss_kib - exec_before.rss_kib) / std::max(1, opened);
  const int held_count = opened == total && answered == sample ? opened : 0;
  Table table(absl::StrCat(total, " idle v1 sessions through edge (one user, ",
                           sizes.open_concurrency, " clients opening)"),
              {"", "edge", "exec"});
  table.AddRow(
      {"VmRSS before, KiB", absl::StrCat(edge_before.rss_kib), absl::StrCat(exec_before.rss_kib)});
  table.AddRow({"VmRSS with the sessions open, KiB", absl::StrCat(edge_after.rss_kib),
                absl::StrCat(exec_after.rss_kib)});
  table.AddRow({"KiB per session", Cell(edge_kib, 1), Cell(exec_kib, 1)});
  table.AddRow(
      {"open descriptors before", absl::StrCat(edge_before.fds), absl::StrCat(exec_before.fds)});
  table.AddRow({"open descriptors with the sessions open", absl::StrCat(edge_after.fds),
                absl::StrCat(exec_after.fds)});
  report.Add(table);
  Table opens("Session opens and the held sessions answering", {"", "value"});
  opens.AddRow({"sessions opened", absl::StrCat(opened, " of ", total)});
  opens.AddRow({"open rate, sessions/s", Cell(open_rate, 0)});
  opens.AddRow({"sample answering `true`", absl::StrCat(answered, " of ", sample)});
  opens.AddRow(
      {"sample round trip p50 / max, ms",
       absl::StrCat(Cell(sample_ms.Percentile(50), 2), " / ", Cell(sample_ms.Percentile(100), 2))});
  opens.AddRow({"held (opened, every sampled one answering)", absl::StrCat(held_count)});
  report.Add(opens);
  Table open_stages(
      absl::StrCat("Where exec's share of an open goes, by stage, ms (exec's ", kOpenMetric,
                   " over the measured opens; p50 and p99 from its "
                   "buckets)"),
      {"stage", "what", "mean ms", "p50 ms", "p99 ms", "opens"});
  AddStageRows(open_stages, report, "sessions.open_stage", kOpenStages, kOpenMetric,
               open_stages_before, open_stages_after);
  report.Add(open_stages);
  report.Metric("sessions.edge.kib_per_session", edge_kib);
  report.Metric("sessions.exec.kib_per_session", exec_kib);
  report.Metric("sessions.open_per_s", open_rate);
  report.Metric("sessions.held", held_count);
  report.Metric("sessions.edge.fds", edge_after.fds);
  report.Metric("sessions.exec.fds", exec_after.fds);
  if (!first_failure.ok()) {
    return absl::Status(first_failure.code(),
                        absl::StrCat(failed.load(), " of ", total,
                                     " sessions did not open; first: ", first_failure.message()));
  }
  if (answered != sample) {
    return absl::InternalError(
        absl::StrCat(sample - answered, " of ", sample,
                     " sampled sessions did not answer; first: ", sample_failure));
  }
  // The measured limit beside the memory goals: the same number of idle streams with no
  // podgate code on either side (after the sessions' own checks, so its failure never hides
  // theirs).
  absl::StatusOr<StreamFloor> floor = MeasureStreamFloor(total);
  if (!floor.ok()) {
    return floor.status();
  }
  Table floors(absl::StrCat(total,
                            " idle exec.v1 Session streams with no podgate code (gRPC alone: "
                            "podgate-bench-stream-floor, `open` sent and `ready` received)"),
               {"", "client (edge's side)", "server (exec's side)"});
  floors.AddRow({"KiB per stream", Cell(floor->client_kib, 1), Cell(floor->server_kib, 1)});
  floors.AddRow({"KiB per session through the chain, above", Cell(edge_kib, 1), Cell(exec_kib, 1)});
  report.Add(floors);
  report.Metric("sessions.grpc_stream_floor.client_kib", floor->client_kib);
  report.Metric("sessions.grpc_stream_floor.server_kib", floor->server_kib);
  return absl::OkStatus();
}

// Every metric bench.py's goals read from this suite (the kubectl ratio only with kubectl).
std::vector<std::string> RequiredMetrics(const std::set<std::string>& sections, bool kubectl) {
  std::vector<std::string> names;
  if (sections.count("roundtrip") > 0) {
    for (const char* path : {"direct", "exec", "edge"}) {
      for (const char* p : {"p50", "p90", "p99"}) {
        names.push_back(absl::StrCat("roundtrip.", path, ".", p, "_ms"));
      }
    }
    names.push_back("roundtrip.added.p50_ms");
    names.push_back("roundtrip.added.p99_ms");
  }
  if (sections.count("bulk") > 0) {
    for (const char* m :
         {"bulk.podgate_run.mib_per_s", "bulk.edge.mib_per_s", "bulk.direct.mib_per_s",
          "bulk.grpc_alone.mib_per_s", "bulk.ratio.edge_vs_direct", "bulk.relay_ceiling.mib_per_s",
          "bulk.ratio_limit.edge_vs_direct"}) {
      names.push_back(m);
    }
    if (kubectl) {
      names.push_back("bulk.kubectl.mib_per_s");
      names.push_back("bulk.ratio.podgate_run_vs_kubectl");
      names.push_back("bulk.ratio_limit.podgate_run_vs_kubectl");
    }
  }
  if (sections.count("sessions") > 0) {
    for (const char* m :
         {"sessions.edge.kib_per_session", "sessions.exec.kib_per_session", "sessions.open_per_s",
          "sessions.held", "sessions.edge.fds", "sessions.exec.fds"}) {
      names.push_back(m);
    }
  }
  return names;
}

int Usage(const std::string& problem) {
  std::fprintf(stderr, "podgate-bench-chain: %s (see --help)\n", problem.c_str());
  return 2;
}

int Main(int argc, char** argv) {
  std::vector<char*> args = runtime::ParseFlags(
      argc, argv,
      "podgate-bench-chain [--json=FILE] [--quick] [sizes]: the chain (edge, exec, policy, "
      "audit) against direct exec to the same API server, side by side (docs/performance.md)");
  if (args.size() > 1) {
    return Usage(absl::StrCat("unexpected argument '", args[1], "'"));
  }
  Sizes sizes;
  sizes.quick = absl::GetFlag(FLAGS_quick);
  auto pick = [&](int flag, int full, int quick) {
    return flag > 0 ? flag : sizes.quick ? quick : full;
  };
  for (auto [value, name] : {std::pair{absl::GetFlag(FLAGS_roundtrip_rounds), "roundtrip_rounds"},
                             std::pair{absl::GetFlag(FLAGS_bulk_mib), "bulk_mib"},
                             std::pair{absl::GetFlag(FLAGS_bulk_rounds), "bulk_rounds"},
                             std::pair{absl::GetFlag(FLAGS_sessions), "sessions"}}) {
    if (value < 0) {
      return Usage(absl::StrCat("--", name, " must be >= 0 (0: the mode's default)"));
    }
  }
  if (absl::GetFlag(FLAGS_session_sample) < 1 || absl::GetFlag(FLAGS_open_concurrency) < 1) {
    return Usage("--session_sample and --open_concurrency must be >= 1");
  }
  if (absl::GetFlag(FLAGS_bulk_mib) > 8192) {
    return Usage("--bulk_mib must be at most 8192");
  }
  sizes.roundtrip_rounds = pick(absl::GetFlag(FLAGS_roundtrip_rounds), 200, 20);
  sizes.bulk_bytes = static_cast<int64_t>(pick(absl::GetFlag(FLAGS_bulk_mib), 256, 8)) << 20;
  sizes.bulk_rounds = pick(absl::GetFlag(FLAGS_bulk_rounds), 3, 1);
  sizes.sessions = pick(absl::GetFlag(FLAGS_sessions), 2000, 50);
  sizes.session_sample = absl::GetFlag(FLAGS_session_sample);
  sizes.open_concurrency = absl::GetFlag(FLAGS_open_concurrency);
  std::set<std::string> sections;
  for (absl::string_view s :
       absl::StrSplit(absl::GetFlag(FLAGS_sections), ',', absl::SkipEmpty())) {
    if (s != "roundtrip" && s != "bulk" && s != "sessions") {
      return Usage(
          absl::StrCat("--sections: unknown section '", s, "' (roundtrip, bulk, sessions)"));
    }
    sections.emplace(s);
  }
  if (sections.empty()) {
    return Usage("--sections names no section");
  }

  // Every held session is a descriptor in this process and in edge (children inherit this).
  const int64_t fd_limit = testing::RaiseDescriptorLimit();
  sizes.fd_limit = fd_limit;
  Report report("chain", sizes.quick);
  if (sections.count("sessions") > 0 && fd_limit < sizes.sessions + 256) {
    return Usage(absl::StrCat("--sessions=", sizes.sessions, " needs RLIMIT_NOFILE of at least ",
                              sizes.sessions + 256, "; the hard limit here is ", fd_limit,
                              " (raise it: ulimit -Hn, docs/performance.md)"));
  }
  absl::StatusOr<Chain> chain = StartChain(sizes);
  if (!chain.ok()) {
    std::fprintf(stderr, "podgate-bench-chain: cannot start the chain: %s\n",
                 chain.status().ToString().c_str());
    report.Note(absl::StrCat("the chain did not start: ", chain.status().message()));
    (void)report.WriteJson(absl::GetFlag(FLAGS_json));
    return 1;
  }
  std::printf(
      "podgate-bench-chain%s: kubesim, policy, audit (SQLite, strict), exec, edge on "
      "loopback; RLIMIT_NOFILE %lld; %d cores\n",
      sizes.quick ? " --quick" : "", static_cast<long long>(fd_limit),
      static_cast<int>(std::thread::hardware_concurrency()));
  std::fflush(stdout);
  bool failed = false;
  auto section = [&](const char* name, absl::Status (*run)(Chain&, const Sizes&, Report&)) {
    if (sections.count(name) == 0) {
      return;
    }
    const absl::Time start = absl::Now();
    absl::Status s = run(*chain, sizes, report);
    std::printf("\n(%s: %.1f s)\n", name, absl::ToDoubleSeconds(absl::Now() - start));
    if (!s.ok()) {
      failed = true;
      report.Note(absl::StrCat(name, " FAILED: ", s.ToString()));
    }
  };
  section("roundtrip", RoundTrip);
  section("bulk", Bulk);
  section("sessions", Sessions);

  const nlohmann::json metrics = report.ToJson()["metrics"];
  for (const std::string& name :
       RequiredMetrics(sections, access(absl::GetFlag(FLAGS_kubectl).c_str(), X_OK) == 0)) {
    if (!metrics.contains(name)) {
      failed = true;
      report.Note(absl::StrCat("metric ", name, " was not measured"));
    }
  }
  if (absl::Status s = report.WriteJson(absl::GetFlag(FLAGS_json)); !s.ok()) {
    std::fprintf(stderr, "podgate-bench-chain: %s\n", s.ToString().c_str());
    return 1;
  }
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace podgate::bench

int main(int argc, char** argv) { return podgate::bench::Main(argc, argv); }
