// podgate-exec-bench: exec's memory across many sessions and a long soak, through the real
// processes (kubesim, podgate-policy, podgate-audit on SQLite, podgate-exec) started the way
// the integration tests start them. It prints numbers; it is not a timed test.
//
//   podgate-exec-bench sessions [--sessions=1500] [--warmup=200] [--report_every=100]
//       Opens, uses (one command) and closes sessions, one after another per client; after the
//       warm-up round prints exec's VmRSS and podgate_exec_live_objects every `report_every`
//       sessions, then the growth after warm-up in KiB per session.
//   podgate-exec-bench soak [--duration=10m] [--clients=8] [--report_interval=30s]
//                           [--session_commands=1000]
//       Keeps `clients` sessions open and runs commands in each back to back (one in ten is
//       refused by policy) for `duration`, reopening a session when it reaches exec's command
//       budget (--max_commands_per_session=session_commands); prints RSS over time and the
//       growth in KiB per thousand commands after the first interval.
//
//   podgate-exec-bench idle [--sessions=2000] [--concurrency=2] [--sample=100]
//       exec's memory per idle session, carried two ways, each on a fresh exec: a Session
//       stream per session, and lanes of one Sessions stream. Opens `sessions` sessions and
//       holds them, prints exec's RSS growth per session (baseline after a warm-up) and how
//       many of `sample` sessions still answer `echo`.
//
// Exit status: 0 when the growth is within --max_growth_kib (per session, or per thousand
// commands), every soak command ended as expected and no object outlives its session, 1 when
// not, 2 on an error.
// --exec_bin may name a wrapper (e.g. a script running `exec heaptrack -o FILE podgate-exec
// "$@"`) to profile exec while it runs.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench_fixtures.h"
#include "runtime/flags.h"
#include "support/exec_lanes.h"
#include "support/exec_session.h"
#include "support/http_client.h"
#include "support/prometheus_text.h"
#include "support/stack.h"

ABSL_FLAG(int, sessions, 1500, "sessions: sessions measured after the warm-up. Default 1500.");
ABSL_FLAG(int, warmup, 200, "sessions: sessions opened, used and closed first. Default 200.");
ABSL_FLAG(int, report_every, 100, "sessions: print a sample every this many. Default 100.");
ABSL_FLAG(int, concurrency, 2, "sessions: clients opening sessions in parallel. Default 2.");
ABSL_FLAG(int, sample, 100, "idle: sessions that run `echo` while all are held. Default 100.");
ABSL_FLAG(absl::Duration, duration, absl::Minutes(10), "soak: how long it runs. Default 10m.");
ABSL_FLAG(int, clients, 8, "soak: long-lived sessions running commands. Default 8.");
ABSL_FLAG(int, session_commands, 1000,
          "soak: exec's --max_commands_per_session; a client whose session reaches it opens a "
          "new one, so the soak also measures the budget's bound. Default 1000.");
ABSL_FLAG(absl::Duration, report_interval, absl::Seconds(30),
          "soak: print a sample this often. Default 30s.");
ABSL_FLAG(double, max_growth_kib, -1,
          "Verdict threshold, least-squares RSS growth after the warm-up: KiB per session "
          "(sessions; default 1) or per thousand commands (soak; default 10). The leak this "
          "guards against cost several KiB per session and 1.5 KiB per command; glibc's "
          "allocator settling costs well under these (docs/benchmarks.md).");
ABSL_FLAG(std::string, kubesim_bin, PODGATE_KUBESIM_BIN, "kubesim binary.");
ABSL_FLAG(std::string, policy_bin, PODGATE_POLICY_BIN, "podgate-policy binary.");
ABSL_FLAG(std::string, audit_bin, PODGATE_AUDIT_BIN, "podgate-audit binary.");
ABSL_FLAG(std::string, exec_bin, PODGATE_EXEC_BIN, "podgate-exec binary (or a wrapper).");

namespace podgate {
namespace {

struct Sample {
  double x = 0;  // sessions or commands so far
  int64_t rss_kib = 0;
};

// Least-squares slope of RSS over x.
double Slope(const std::vector<Sample>& samples) {
  if (samples.size() < 2) {
    return 0;
  }
  double mx = 0;
  double my = 0;
  for (const Sample& s : samples) {
    mx += s.x;
    my += static_cast<double>(s.rss_kib);
  }
  mx /= static_cast<double>(samples.size());
  my /= static_cast<double>(samples.size());
  double num = 0;
  double den = 0;
  for (const Sample& s : samples) {
    num += (s.x - mx) * (static_cast<double>(s.rss_kib) - my);
    den += (s.x - mx) * (s.x - mx);
  }
  return den == 0 ? 0 : num / den;
}

// "pid state argv" of every process whose argv holds `word` as one argument.
std::string ProcessesWith(const std::string& word) {
  std::string out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid = entry.path().filename().string();
    if (pid.empty() || pid[0] < '0' || pid[0] > '9') {
      continue;
    }
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> argv = absl::StrSplit(raw, '\0');
    if (std::find(argv.begin(), argv.end(), word) == argv.end()) {
      continue;
    }
    std::ifstream stat(entry.path() / "stat");
    std::string st;
    std::getline(stat, st);
    const size_t close = st.rfind(')');
    const std::string state = close == std::string::npos ? "?" : st.substr(close + 2, 1);
    std::ifstream wchan(entry.path() / "wchan");
    std::string wait;
    std::getline(wchan, wait);
    // Bytes waiting unread in its stdin and stderr pipes (FIONREAD on a read end of each):
    // whether "go" reached it, and whether its report left it.
    std::string unread;
    for (int fd : {0, 2}) {
      const int r = open(absl::StrCat("/proc/", pid, "/fd/", fd).c_str(), O_RDONLY | O_NONBLOCK);
      int n = -1;
      if (r >= 0) {
        if (ioctl(r, FIONREAD, &n) != 0) {
          n = -1;
        }
        ::close(r);
      }
      absl::StrAppend(&unread, fd == 0 ? "stdin unread " : ", stderr unread ", n);
    }
    absl::StrAppend(&out, out.empty() ? "" : "; ", pid, " ", state, " (", wait, ", ", unread, ") ",
                    absl::StrJoin(argv, " "));
  }
  return out;
}

// --max_growth_kib, or the mode's default when it is not set.
double MaxGrowth(double mode_default) {
  const double flag = absl::GetFlag(FLAGS_max_growth_kib);
  return flag < 0 ? mode_default : flag;
}

struct Live {
  double sessions = -1;
  double commands = -1;
};

Live LiveObjects(int metrics_port) {
  Live live;
  auto page = testing::HttpGet(metrics_port, "/metrics");
  if (!page.ok()) {
    return live;
  }
  auto parsed = testing::ParsePrometheusText(page->body);
  if (!parsed.ok()) {
    return live;
  }
  auto find = [&](const char* name) {
    auto it = parsed->samples.find(name);
    return it == parsed->samples.end() ? -1.0 : it->second;
  };
  live.sessions = find(R"(podgate_exec_live_objects{kind="session"})");
  live.commands = find(R"(podgate_exec_live_objects{kind="command"})");
  return live;
}

// Waits (up to 15 s) until no Session or Command object is alive; returns the last count.
Live WaitForNoLiveObjects(int metrics_port) {
  Live live;
  for (int i = 0; i < 300; ++i) {
    live = LiveObjects(metrics_port);
    if (live.sessions == 0 && live.commands == 0) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return live;
}

struct Bench {
  std::unique_ptr<testing::Stack> stack;
  int metrics_port = 0;
};

absl::StatusOr<Bench> StartStack(int max_sessions_per_user,
                                 std::vector<std::string> exec_flags = {}) {
  testing::StackOptions options;
  options.binaries = {absl::GetFlag(FLAGS_kubesim_bin), absl::GetFlag(FLAGS_policy_bin),
                      absl::GetFlag(FLAGS_audit_bin), absl::GetFlag(FLAGS_exec_bin)};
  options.cluster_yaml = bench::kBenchCluster;
  options.policy_yaml = bench::kBenchEchoPolicy;
  Bench b;
  options.exec_flags = std::move(exec_flags);
  options.exec_flags.push_back(absl::StrCat("--max_sessions_per_user=", max_sessions_per_user));
  auto stack = testing::Stack::Start(options);
  if (!stack.ok()) {
    return stack.status();
  }
  b.stack = *std::move(stack);
  b.metrics_port = b.stack->exec_metrics_port();
  return b;
}

// One session: open, `echo` a word, close. Returns an error naming what went wrong.
absl::Status OneSession(testing::Stack& stack, const std::shared_ptr<grpc::Channel>& channel,
                        const std::string& token, int n) {
  testing::ExecSession s(channel, absl::Seconds(30));
  auto ready = s.Open(token, "bench", "app-1");
  if (!ready.ok()) {
    return ready.status();
  }
  const std::string word = absl::StrCat("s", n);
  testing::CommandOutcome o = s.Run("echo " + word, "c1");
  if (!o.exit.has_value() || o.stdout_text != word + "\n") {
    return absl::InternalError(absl::StrCat(
        "session ", n, " (", ready->session_id(), "): echo ", word, " did not run as expected: ",
        o.stream_ended ? "the stream ended; " : "", o.exit ? o.exit->ShortDebugString() : "",
        o.error ? o.error->ShortDebugString() : "", o.denied ? o.denied->ShortDebugString() : "",
        " stdout: ", o.stdout_text, " stderr: ", o.stderr_text));
  }
  grpc::Status status;
  if (s.Close(&status) != common::v1::CLOSE_REASON_CLIENT || !status.ok()) {
    return absl::InternalError(absl::StrCat("session ", n, ": close: ", status.error_message()));
  }
  return absl::OkStatus();
}

// Runs sessions [first, first+count) on `concurrency` clients.
absl::Status RunSessions(testing::Stack& stack, const std::shared_ptr<grpc::Channel>& channel,
                         int first, int count, int concurrency) {
  std::atomic<int> next{first};
  absl::Mutex mu;
  absl::Status failure;
  std::vector<std::thread> clients;
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&, c] {
      const std::string token = stack.Token(absl::StrCat("bench", c), {"bench"});
      for (int n = next++; n < first + count; n = next++) {
        absl::Status s = OneSession(stack, channel, token, n);
        if (!s.ok()) {
          absl::MutexLock lock(&mu);
          failure.Update(s);
          return;
        }
      }
    });
  }
  for (std::thread& t : clients) {
    t.join();
  }
  return failure;
}

int Sessions() {
  const int total = absl::GetFlag(FLAGS_sessions);
  const int warmup = absl::GetFlag(FLAGS_warmup);
  const int every = std::max(1, absl::GetFlag(FLAGS_report_every));
  const int concurrency = std::max(1, absl::GetFlag(FLAGS_concurrency));
  auto bench = StartStack(concurrency + 1);
  if (!bench.ok()) {
    std::fprintf(stderr, "start: %s\n", bench.status().ToString().c_str());
    return 2;
  }
  testing::Stack& stack = *bench->stack;
  const int pid = stack.exec()->pid();
  auto channel = testing::LoopbackChannel(stack.exec_port());
  std::printf("exec pid %d, RSS at start %lld KiB\n", pid,
              static_cast<long long>(testing::ResidentKiB(pid)));
  const absl::Time warm_start = absl::Now();
  if (absl::Status s = RunSessions(stack, channel, 0, warmup, concurrency); !s.ok()) {
    std::fprintf(stderr, "warm-up: %s\n", s.ToString().c_str());
    return 2;
  }
  Live live = WaitForNoLiveObjects(bench->metrics_port);
  std::printf("warm-up: %d sessions in %.1f s, RSS %lld KiB, live sessions %.0f commands %.0f\n",
              warmup, absl::ToDoubleSeconds(absl::Now() - warm_start),
              static_cast<long long>(testing::ResidentKiB(pid)), live.sessions, live.commands);
  std::vector<Sample> samples = {{0, testing::ResidentKiB(pid)}};
  std::printf("%8s %10s %10s %8s %8s %8s %8s\n", "sessions", "rss_kib", "delta_kib", "live_ses",
              "live_cmd", "threads", "secs");
  std::printf("%8d %10lld %10d %8.0f %8.0f %8lld %8.1f\n", 0,
              static_cast<long long>(samples[0].rss_kib), 0, live.sessions, live.commands,
              static_cast<long long>(testing::ProcStatus(pid, "Threads")), 0.0);
  const absl::Time start = absl::Now();
  for (int done = 0; done < total;) {
    const int batch = std::min(every, total - done);
    if (absl::Status s = RunSessions(stack, channel, warmup + done, batch, concurrency); !s.ok()) {
      std::fprintf(stderr, "after %d sessions: %s\n", done, s.ToString().c_str());
      return 2;
    }
    done += batch;
    live = LiveObjects(bench->metrics_port);
    const int64_t rss = testing::ResidentKiB(pid);
    samples.push_back({static_cast<double>(done), rss});
    std::printf("%8d %10lld %10lld %8.0f %8.0f %8lld %8.1f\n", done, static_cast<long long>(rss),
                static_cast<long long>(rss - samples[0].rss_kib), live.sessions, live.commands,
                static_cast<long long>(testing::ProcStatus(pid, "Threads")),
                absl::ToDoubleSeconds(absl::Now() - start));
    std::fflush(stdout);
  }
  live = WaitForNoLiveObjects(bench->metrics_port);
  const int64_t end_rss = testing::ResidentKiB(pid);
  const double slope = Slope(samples);
  const double late_slope = Slope(std::vector<Sample>(
      samples.begin() + static_cast<std::ptrdiff_t>(samples.size() / 2), samples.end()));
  const double per_session =
      static_cast<double>(end_rss - samples[0].rss_kib) / static_cast<double>(total);
  const bool flat = slope <= MaxGrowth(1.0);
  const bool freed = live.sessions == 0 && live.commands == 0;
  std::printf(
      "after close: RSS %lld KiB, live sessions %.0f commands %.0f\n"
      "growth after warm-up: %+.3f KiB/session (end - start), slope %+.3f KiB/session "
      "(least squares over %zu samples), %+.3f KiB/session over the second half; "
      "%.1f sessions/s\n"
      "verdict: %s\n",
      static_cast<long long>(end_rss), live.sessions, live.commands, per_session, slope,
      samples.size(), late_slope, total / absl::ToDoubleSeconds(absl::Now() - start),
      flat && freed ? "FLAT (no growth, every object freed)"
      : !freed      ? "LEAK (objects outlive their sessions)"
                    : "GROWS");
  return flat && freed ? 0 : 1;
}

int Soak() {
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  const absl::Duration interval = absl::GetFlag(FLAGS_report_interval);
  const int clients = std::max(1, absl::GetFlag(FLAGS_clients));
  const int session_commands = absl::GetFlag(FLAGS_session_commands);
  auto bench = StartStack(2, {absl::StrCat("--max_commands_per_session=", session_commands)});
  if (!bench.ok()) {
    std::fprintf(stderr, "start: %s\n", bench.status().ToString().c_str());
    return 2;
  }
  testing::Stack& stack = *bench->stack;
  const int pid = stack.exec()->pid();
  auto channel = testing::LoopbackChannel(stack.exec_port());
  std::atomic<int64_t> commands{0};
  std::atomic<int64_t> refused{0};
  std::atomic<int64_t> anomalies{0};
  std::atomic<int64_t> reopened{0};
  // What each client is running now, for the stall watchdog below.
  struct InFlight {
    absl::Mutex mu;
    std::string word;
    absl::Time since = absl::InfiniteFuture();
    bool reported = false;
  };
  std::vector<InFlight> in_flight(static_cast<size_t>(clients));
  const absl::Time start = absl::Now();
  std::atomic<bool> stop{false};
  absl::Mutex mu;
  absl::Status failure;
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto fail = [&](absl::Status s) {
        absl::MutexLock lock(&mu);
        failure.Update(s);
        stop = true;
      };
      // A session that reaches exec's command budget is closed and a new one opened.
      std::unique_ptr<testing::ExecSession> s;
      absl::StatusOr<exec::v1::SessionReady> ready;
      auto open = [&]() -> bool {
        if (s != nullptr) {
          grpc::Status status;
          if (s->Close(&status) != common::v1::CLOSE_REASON_CLIENT) {
            fail(absl::InternalError(
                absl::StrCat("client ", c, ": close: ", status.error_message())));
            return false;
          }
        }
        s = std::make_unique<testing::ExecSession>(channel, duration + absl::Minutes(5));
        ready = s->Open(stack.Token(absl::StrCat("soak", c), {"bench"}, duration + absl::Hours(1)),
                        "bench", "app-1");
        if (!ready.ok()) {
          fail(ready.status());
          return false;
        }
        return true;
      };
      if (!open()) {
        return;
      }
      for (int64_t n = 0; !stop; ++n) {
        const bool deny = n % 10 == 9;
        const std::string word = absl::StrCat("c", c, "n", n);
        {
          absl::MutexLock lock(&in_flight[c].mu);
          in_flight[c].word = word;
          in_flight[c].since = absl::Now();
          in_flight[c].reported = false;
        }
        testing::CommandOutcome o =
            s->Run(deny ? "touch " + word : "echo " + word, absl::StrCat("c", n));
        if (o.error.has_value() &&
            o.error->status().code() == static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED) &&
            absl::StrContains(o.error->status().message(), "--max_commands_per_session")) {
          ++reopened;
          if (!open()) {
            return;
          }
          continue;
        }
        if (deny ? !o.denied.has_value() : (!o.exit.has_value() || o.stdout_text != word + "\n")) {
          // Counted and shown (the first few), not fatal: a soak measures the whole run.
          const int64_t seen = ++anomalies;
          if (seen <= 10) {
            std::printf(
                "anomaly %lld at %.0f s: session %s client %d command %lld (%s): %s%s%s%s "
                "stdout: %s stderr: %s\n",
                static_cast<long long>(seen), absl::ToDoubleSeconds(absl::Now() - start),
                ready->session_id().c_str(), c, static_cast<long long>(n), word.c_str(),
                o.stream_ended ? "the stream ended; " : "",
                o.exit ? o.exit->ShortDebugString().c_str() : "",
                o.error ? o.error->ShortDebugString().c_str() : "",
                o.denied ? o.denied->ShortDebugString().c_str() : "", o.stdout_text.c_str(),
                o.stderr_text.c_str());
            // What exec logged about it.
            int shown = 0;
            for (const std::string& line : stack.exec()->Lines()) {
              if (absl::StrContains(line, ready->session_id()) &&
                  (absl::StrContains(line, absl::StrCat("\"c", n, "\"")) ||
                   !absl::StrContains(line, "\"level\":\"info\"")) &&
                  shown++ < 20) {
                std::printf("  exec: %s\n", line.c_str());
              }
            }
            std::fflush(stdout);
          }
          if (o.stream_ended) {
            return fail(absl::InternalError(absl::StrCat("client ", c, ": the stream ended")));
          }
          continue;
        }
        ++commands;
        refused += deny ? 1 : 0;
      }
      grpc::Status status;
      if (s->Close(&status) != common::v1::CLOSE_REASON_CLIENT) {
        fail(absl::InternalError(absl::StrCat("client ", c, ": close: ", status.error_message())));
      }
    });
  }
  // A command still running after 5 s (an echo takes milliseconds) is shown while it stalls:
  // whether its launch wrapper runs in the container (and in what state) tells a stall in the
  // container start from one in exec's reading of the stream.
  std::thread watchdog([&] {
    while (!stop) {
      absl::SleepFor(absl::Seconds(1));
      for (int c = 0; c < clients; ++c) {
        absl::MutexLock lock(&in_flight[c].mu);
        if (in_flight[c].reported || absl::Now() - in_flight[c].since < absl::Seconds(5)) {
          continue;
        }
        in_flight[c].reported = true;
        std::string procs = ProcessesWith(in_flight[c].word);
        std::printf(
            "stall at %.0f s: client %d command %s running for %.1f s; processes with it "
            "in their argv: %s\n",
            absl::ToDoubleSeconds(absl::Now() - start), c, in_flight[c].word.c_str(),
            absl::ToDoubleSeconds(absl::Now() - in_flight[c].since),
            procs.empty() ? "none" : procs.c_str());
        std::fflush(stdout);
      }
    }
  });
  std::vector<Sample> samples;
  std::printf("exec pid %d, %d long-lived sessions for %s\n", pid, clients,
              absl::FormatDuration(duration).c_str());
  std::printf("%8s %10s %10s %10s %10s %8s %8s %8s\n", "secs", "commands", "cmds/s", "rss_kib",
              "delta_kib", "live_ses", "live_cmd", "threads");
  int64_t last_commands = 0;
  absl::Time last = start;
  bool budget_cycled = false;
  while (!stop && absl::Now() - start < duration) {
    absl::SleepFor(std::min(interval, duration - (absl::Now() - start)));
    const absl::Time now = absl::Now();
    const int64_t n = commands.load();
    const int64_t rss = testing::ResidentKiB(pid);
    Live live = LiveObjects(bench->metrics_port);
    // The first interval is the warm-up: growth is measured from its end; and once every
    // client has reopened its session at the budget, from the first sample after that (a
    // session's ids grow up to the budget by design, then start again).
    if (!budget_cycled && reopened.load() >= clients) {
      budget_cycled = true;
      samples.clear();
      std::printf("(every session has reached its budget once: growth is measured from here)\n");
    }
    samples.push_back({static_cast<double>(n), rss});
    std::printf("%8.0f %10lld %10.0f %10lld %10lld %8.0f %8.0f %8lld\n",
                absl::ToDoubleSeconds(now - start), static_cast<long long>(n),
                static_cast<double>(n - last_commands) / absl::ToDoubleSeconds(now - last),
                static_cast<long long>(rss), static_cast<long long>(rss - samples[0].rss_kib),
                live.sessions, live.commands,
                static_cast<long long>(testing::ProcStatus(pid, "Threads")));
    std::fflush(stdout);
    last_commands = n;
    last = now;
  }
  stop = true;
  for (std::thread& t : threads) {
    t.join();
  }
  watchdog.join();
  if (!failure.ok()) {
    std::fprintf(stderr, "soak: %s\n", failure.ToString().c_str());
    return 2;
  }
  Live live = WaitForNoLiveObjects(bench->metrics_port);
  const int64_t total = commands.load();
  const double per_k = samples.size() >= 2 ? 1000 * Slope(samples) : 0;
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const bool flat = per_k <= MaxGrowth(10.0) && anomalies == 0;
  const bool freed = live.sessions == 0 && live.commands == 0;
  std::printf(
      "%lld commands (%lld refused by policy, %lld with an unexpected outcome) in %.0f s, "
      "%.0f/s, %lld sessions reopened at the %d-command budget; after close: RSS %lld KiB, "
      "live sessions %.0f commands %.0f\n"
      "growth after the first interval: %+.3f KiB per 1000 commands (least squares over %zu "
      "samples), %+lld KiB in all\n"
      "verdict: %s\n",
      static_cast<long long>(total), static_cast<long long>(refused.load()),
      static_cast<long long>(anomalies.load()), seconds, static_cast<double>(total) / seconds,
      static_cast<long long>(reopened.load()), session_commands,
      static_cast<long long>(testing::ResidentKiB(pid)), live.sessions, live.commands, per_k,
      samples.size(),
      static_cast<long long>(samples.empty() ? 0 : samples.back().rss_kib - samples[0].rss_kib),
      flat && freed   ? "FLAT (no growth, every object freed)"
      : !freed        ? "LEAK (objects outlive their sessions)"
      : anomalies > 0 ? "ANOMALIES (commands that did not end as expected, above)"
                      : "GROWS");
  return flat && freed ? 0 : 1;
}

// One way of carrying idle sessions: how much exec grew per session, and how many answered.
struct IdleResult {
  double kib_per_session = 0;
  int answered = 0;
  int sampled = 0;
  double lanes = 0;
  double streams = 0;
};

absl::StatusOr<IdleResult> HoldIdle(bool lanes) {
  const int total = absl::GetFlag(FLAGS_sessions);
  const int concurrency = std::max(1, absl::GetFlag(FLAGS_concurrency));
  constexpr int kPerUser = 20;
  auto bench = StartStack(kPerUser, {absl::StrCat("--max_sessions=", total + 100)});
  if (!bench.ok()) {
    return bench.status();
  }
  testing::Stack& stack = *bench->stack;
  const int pid = stack.exec()->pid();
  auto channel = testing::LoopbackChannel(stack.exec_port());
  std::shared_ptr<testing::ExecLanes> stream;
  if (lanes) {
    stream = std::make_shared<testing::ExecLanes>(channel, absl::Hours(1));
  }
  auto open_one = [&](int n) -> absl::StatusOr<std::unique_ptr<testing::ExecSession>> {
    auto s = lanes ? std::make_unique<testing::ExecSession>(stream->Open(absl::Minutes(30)))
                   : std::make_unique<testing::ExecSession>(channel, absl::Minutes(30));
    auto ready =
        s->Open(stack.Token(absl::StrCat("idle", n / kPerUser), {"bench"}), "bench", "app-1");
    if (!ready.ok()) {
      return ready.status();
    }
    return s;
  };
  // Warm-up: sessions that run a command and close (allocator pools, gRPC's call sizes).
  for (int n = 0; n < 50; ++n) {
    auto s = open_one(n % kPerUser);
    if (!s.ok()) {
      return s.status();
    }
    (*s)->Run("echo warm");
    (*s)->Close();
  }
  WaitForNoLiveObjects(bench->metrics_port);
  absl::SleepFor(absl::Seconds(1));
  const int64_t base = testing::ResidentKiB(pid);
  std::vector<std::unique_ptr<testing::ExecSession>> held(static_cast<size_t>(total));
  std::atomic<int> next{0};
  absl::Mutex mu;
  absl::Status failure;
  std::vector<std::thread> clients;
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&] {
      for (int n = next++; n < total; n = next++) {
        auto s = open_one(n + kPerUser);  // users after the warm-up's
        if (!s.ok()) {
          absl::MutexLock lock(&mu);
          failure.Update(s.status());
          return;
        }
        held[static_cast<size_t>(n)] = *std::move(s);
      }
    });
  }
  for (std::thread& t : clients) {
    t.join();
  }
  if (!failure.ok()) {
    return failure;
  }
  absl::SleepFor(absl::Seconds(2));
  IdleResult r;
  r.kib_per_session =
      static_cast<double>(testing::ResidentKiB(pid) - base) / static_cast<double>(total);
  r.lanes = testing::MetricSample(bench->metrics_port, "podgate_exec_session_lanes");
  r.streams = testing::MetricSample(bench->metrics_port, "podgate_exec_session_streams");
  const int sample = std::min(total, std::max(0, absl::GetFlag(FLAGS_sample)));
  for (int i = 0; i < sample; ++i) {
    auto& s = held[static_cast<size_t>(i * (total / std::max(1, sample)))];
    testing::CommandOutcome o = s->Run("echo ok");
    ++r.sampled;
    if (o.exit.has_value() && o.stdout_text == "ok\n") {
      ++r.answered;
    }
  }
  held.clear();
  return r;
}

int Idle() {
  std::printf("%-22s %10s %14s %8s %8s\n", "carried as", "sessions", "exec_kib/sess", "answered",
              "lanes");
  int rc = 0;
  for (bool lanes : {false, true}) {
    auto r = HoldIdle(lanes);
    if (!r.ok()) {
      std::fprintf(stderr, "%s: %s\n", lanes ? "lanes" : "streams", r.status().ToString().c_str());
      return 2;
    }
    std::printf("%-22s %10d %14.2f %5d/%-3d %8.0f\n",
                lanes ? "lanes of one stream" : "a stream each", absl::GetFlag(FLAGS_sessions),
                r->kib_per_session, r->answered, r->sampled, r->lanes);
    std::fflush(stdout);
    if (r->answered != r->sampled) {
      rc = 1;
    }
  }
  return rc;
}

}  // namespace
}  // namespace podgate

int main(int argc, char** argv) {
  std::vector<char*> args = podgate::runtime::ParseFlags(
      argc, argv, "podgate-exec-bench sessions|soak|idle [flags]: exec's RSS over many sessions");
  const std::string mode = args.size() > 1 ? args[1] : "";
  if (mode == "sessions") {
    return podgate::Sessions();
  }
  if (mode == "soak") {
    return podgate::Soak();
  }
  if (mode == "idle") {
    return podgate::Idle();
  }
  std::fprintf(stderr, "usage: podgate-exec-bench sessions|soak|idle [flags] (--help for flags)\n");
  return 2;
}
