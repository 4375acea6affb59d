#!/usr/bin/env python3
"""`make bench`: every benchmark of the suite, one after another, then the goals.

    tools/bench/bench.py --build_dir=build [--quick] [--only=chain,policy,audit,export,idle]
                         [--out=DIR]
    tools/bench/bench.py --check=JSON

Each benchmark binary starts what it needs (kubesim, the services, a temporary PostgreSQL),
prints its side-by-side tables (tools/bench/report.h) and writes its results as JSON; this
driver runs them, merges their JSON into DIR/results.json (default <build_dir>/bench) and
prints the table of goals from docs/performance.md, each with the measured value.

--quick is the smoke mode ctest runs (label `bench`): small sizes, a few seconds per
benchmark; it proves that every benchmark runs end to end, not how fast anything is. The goals
are printed but judged only on a full run, and the exit status says only whether every
benchmark ran (0) or not (1); 2 on a usage error.

--check=JSON runs nothing: it checks that one benchmark's JSON (its --json file) holds every
metric that the goals and their measured limits below name for that suite (ctest
`bench.audit_metrics` checks the audit benchmark's smoke run).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

# (suite, binary relative to the build folder, extra arguments)
BENCHMARKS = [
    ("chain", "tools/bench/podgate-bench-chain", []),
    ("policy", "tools/bench/podgate-bench-policy", []),
    ("audit", "services/audit/podgate-audit-bench", []),
    # Issue #17: export to the file and syslog sinks keeps up with ingest (docs/audit.md).
    ("export", "services/audit/podgate-audit-export-bench", []),
    # The 10,000 sessions held on one edge and one exec, each still answering: podgate-bench-idle
    # holds them with one descriptor each (the chain's sessions section holds 2,000).
    ("idle", "tools/bench/podgate-bench-idle", ["--sessions=10000", "--sample=200"]),
]

# Arguments that replace a suite's extra ones in --quick (a smoke run of the same binary).
QUICK_ARGS = {"idle": ["--sessions=50", "--warmup=10", "--sample=10"]}

# (metric, comparison, goal, what it is) — issue #19's goals, docs/performance.md.
GOALS = [
    ("bulk.ratio.podgate_run_vs_kubectl", ">=", 1.0,
     "bulk output, podgate-run / kubectl exec"),
    ("bulk.ratio.edge_vs_direct", ">=", 0.8,
     "bulk output, edge WebSocket / straight to the API server"),
    ("roundtrip.added.p50_ms", "<=", 0.5, "round trip added by the chain, p50 (ms)"),
    ("roundtrip.added.p99_ms", "<=", 2.0, "round trip added by the chain, p99 (ms)"),
    ("sessions.edge.kib_per_session", "<=", 12, "edge memory per idle session (KiB)"),
    ("sessions.exec.kib_per_session", "<=", 8, "exec memory per idle session (KiB)"),
    # Opens as a busy edge sees them: 64 handshakes in flight while 10,000 sessions open.
    ("idle.open_per_s", ">=", 1000, "session opens through the chain, 64 in flight (/s)"),
    ("idle.held", ">=", 10000, "concurrent sessions held, each answering"),
    ("audit.sqlite.strict.w256.records_per_s", ">=", 50000,
     "audit SQLite, 256 strict writers (records/s)"),
    ("audit.sqlite.pipelined.records_per_s", ">=", 150000,
     "audit SQLite, pipelined, one event per message (records/s)"),
    # What exec's audit client sends under load: what queued behind a write, in one message.
    ("audit.sqlite.pipelined_batched.records_per_s", ">=", 150000,
     "audit SQLite, pipelined, batched as the client sends (records/s)"),
    ("audit.sqlite.strict_client.w256.records_per_s", ">=", 50000,
     "audit SQLite, 256 strict writers on one audit client (records/s)"),
    ("audit.postgres.strict.w256.records_per_s", ">=", 30000,
     "audit PostgreSQL, 256 strict writers (records/s)"),
    ("audit.postgres.strict_client.w256.records_per_s", ">=", 30000,
     "audit PostgreSQL, 256 strict writers on one audit client (records/s)"),
    ("policy.unary.decisions_per_s", ">=", 50000, "policy decisions, unary Authorize (/s)"),
    ("policy.stream.decisions_per_s", ">=", 50000,
     "policy decisions, AuthorizeStream (/s)"),
]

# A goal's measured limit: the metric of what the same run measured as the most the part under
# the goal can reach on this machine, and what it is. For audit: the store alone, Store::Append
# of batches from one thread with no gRPC (a batch of 256 is what 256 strict writers can at most
# fill). For unary Authorize: grpc.health.v1.Health/Check on the same policy server from the same
# client, the lightest unary call that server answers, and the same Authorize calls against
# podgate-bench-stream-floor's policy server, answered with no decision (the lower binds). For
# AuthorizeStream: the same streams
# against podgate-bench-stream-floor's policy server, podgate-policy's stream with no decision.
# For the 256 strict writers, two ceilings: the store alone at the row's own mean commit (strict
# writers' commits hold about half of them: the others wait for their acks), and the shape
# alone (the same writers, a stream each or on one audit client, against a store that keeps
# nothing); the lower one binds. A goal's entry is one (metric, what) pair or a list of them:
# for a ">=" goal the lowest measured one is shown, for a "<=" goal the highest.
STORE_ALONE = "the store alone"
STORE_AT_COMMIT = "the store alone at the row's own commit size"
SHAPE_ALONE = ("audit.no_store.strict.w256.records_per_s",
               "the same 256 streams against a store that keeps nothing")
CLIENT_SHAPE_ALONE = ("audit.no_store.strict_client.w256.records_per_s",
                      "the same 256 writers on one audit client, a store that keeps nothing")
LIMITS = {
    "audit.sqlite.strict.w256.records_per_s":
        [("audit.sqlite.store_at_commit.strict.w256.records_per_s", STORE_AT_COMMIT),
         SHAPE_ALONE],
    "audit.sqlite.strict_client.w256.records_per_s":
        [("audit.sqlite.store_at_commit.strict_client.w256.records_per_s", STORE_AT_COMMIT),
         CLIENT_SHAPE_ALONE],
    "audit.sqlite.pipelined.records_per_s":
        ("audit.sqlite.store_alone.b1024.records_per_s", STORE_ALONE),
    "audit.sqlite.pipelined_batched.records_per_s":
        ("audit.sqlite.store_alone.b1024.records_per_s", STORE_ALONE),
    "audit.postgres.strict.w256.records_per_s":
        [("audit.postgres.store_at_commit.strict.w256.records_per_s", STORE_AT_COMMIT),
         SHAPE_ALONE],
    "audit.postgres.strict_client.w256.records_per_s":
        [("audit.postgres.store_at_commit.strict_client.w256.records_per_s", STORE_AT_COMMIT),
         CLIENT_SHAPE_ALONE],
    "policy.unary.decisions_per_s":
        [("policy.unary_ceiling.calls_per_s", "an empty unary call, Health/Check"),
         ("policy.unary_floor.answers_per_s", "unary Authorize with no decision")],
    "policy.stream.decisions_per_s":
        ("policy.stream_ceiling.answers_per_s", "AuthorizeStream with no decision"),
    # A floor, not a ceiling: what exec's launch wrapper alone adds to a direct exec.
    "roundtrip.added.p50_ms": ("roundtrip.added_by_wrapper.p50_ms", "the launch wrapper alone"),
    "roundtrip.added.p99_ms": ("roundtrip.added_by_wrapper.p99_ms", "the launch wrapper alone"),
    # The most a relay can move on these cores: the direct path's CPU per MiB plus one gRPC
    # hop with no podgate code (podgate-bench-stream-floor), against the same baseline.
    "bulk.ratio.podgate_run_vs_kubectl":
        ("bulk.ratio_limit.podgate_run_vs_kubectl", "a relay of direct + one gRPC hop"),
    "bulk.ratio.edge_vs_direct":
        ("bulk.ratio_limit.edge_vs_direct", "direct + a gRPC sender + edge's hop"),
    # Floors too: what an idle exec.v1 Session stream costs gRPC alone on each side
    # (podgate-bench-stream-floor), one per session between edge and exec.
    "sessions.edge.kib_per_session":
        ("sessions.grpc_stream_floor.client_kib", "an idle gRPC stream alone, client"),
    "sessions.exec.kib_per_session":
        ("sessions.grpc_stream_floor.server_kib", "an idle gRPC stream alone, server"),
}


def binding_limit(metrics, metric, op):
    """The goal's measured limit that binds, and what it is; (None, "") when none was measured."""
    entry = LIMITS.get(metric, [])
    candidates = [(metrics[m], what) for m, what in ([entry] if isinstance(entry, tuple) else entry)
                  if metrics.get(m) is not None]
    if not candidates:
        return None, ""
    return (min if op == ">=" else max)(candidates, key=lambda c: c[0])


def limit_metrics():
    """Every metric LIMITS names."""
    for entry in LIMITS.values():
        for m, _ in ([entry] if isinstance(entry, tuple) else entry):
            yield m


def check(json_path):
    """--check: the goals' and limits' metrics of one benchmark's suite are all in its JSON.

    A benchmark that renames or stops measuring a metric would otherwise leave a goal without
    its value or its limit in `make bench`, silently. Exit status 0 when every named metric is
    there and is a positive number, 1 when not (each missing one printed), 2 when the file
    cannot be read or names no suite whose metrics the goals use."""
    try:
        with open(json_path) as f:
            data = json.load(f)
    except (OSError, ValueError) as error:
        print(f"bench: --check: cannot read {json_path}: {error}", file=sys.stderr)
        return 2
    suite = data.get("suite", "")
    named = sorted({m for m in [g[0] for g in GOALS] + list(limit_metrics())
                    if m.startswith(f"{suite}.")})
    if not suite or not named:
        print(f"bench: --check: no goal or limit names a metric of suite '{suite}' "
              f"({json_path})", file=sys.stderr)
        return 2
    metrics = data.get("metrics", {})
    bad = [m for m in named
           if not isinstance(metrics.get(m), (int, float)) or not metrics[m] > 0]
    for m in bad:
        print(f"bench: --check: {suite}: {m} is {'missing' if m not in metrics else metrics[m]} "
              f"(a goal or a limit of `make bench` needs it)", file=sys.stderr)
    print(f"bench: --check: {suite}: {len(named) - len(bad)} of {len(named)} goal and limit "
          f"metrics present")
    return 1 if bad else 0


def machine():
    cores = os.cpu_count() or 0
    mem_kib = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = -1
    return {"cores": cores, "mem_gib": round(mem_kib / 1048576, 1),
            "kernel": platform.release(), "load_at_start": round(load, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build_dir", default="build")
    parser.add_argument("--quick", action="store_true",
                        help="smoke mode: small sizes, proves each benchmark runs")
    parser.add_argument("--only", default="",
                        help="comma-separated suites to run (chain, policy, audit, export, idle); "
                        "default all")
    parser.add_argument("--out", default="", help="results folder (default <build_dir>/bench)")
    parser.add_argument("--check", default="", metavar="JSON",
                        help="run nothing: check that one benchmark's JSON holds every metric "
                        "the goals and their limits name for its suite (exit 1 when not)")
    args = parser.parse_args()
    if args.check:
        return check(args.check)

    known = [name for name, _, _ in BENCHMARKS]
    only = [s for s in args.only.split(",") if s]
    for suite in only:
        if suite not in known:
            print(f"bench: unknown suite '{suite}' (one of {', '.join(known)})", file=sys.stderr)
            return 2
    out_dir = args.out or os.path.join(args.build_dir, "bench")
    os.makedirs(out_dir, exist_ok=True)

    results = {"machine": machine(), "quick": args.quick,
               "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "suites": {}, "metrics": {}}
    failed = []
    for suite, binary, extra in BENCHMARKS:
        if only and suite not in only:
            continue
        path = os.path.join(args.build_dir, binary)
        json_path = os.path.join(out_dir, f"{suite}.json")
        if os.path.exists(json_path):
            os.remove(json_path)
        if args.quick:
            extra = QUICK_ARGS.get(suite, extra + ["--quick"])
        command = [path, f"--json={json_path}"] + extra
        print(f"\n## {suite}: {' '.join(command)}", flush=True)
        start = time.monotonic()
        try:
            status = subprocess.call(command)
        except OSError as error:
            print(f"bench: {suite}: cannot run {path}: {error}", file=sys.stderr)
            status = -1
        seconds = time.monotonic() - start
        if status != 0 or not os.path.exists(json_path):
            print(f"bench: {suite} FAILED (exit status {status}, {seconds:.0f}s)", file=sys.stderr)
            failed.append(suite)
            continue
        with open(json_path) as f:
            data = json.load(f)
        data["seconds"] = round(seconds, 1)
        results["suites"][suite] = data
        results["metrics"].update(data.get("metrics", {}))

    print("\n## Goals" + (" (smoke run: sizes too small to judge)" if args.quick else ""))
    print("\n| goal | measured | target | met | measured limit |\n|---|---|---|---|---|")
    verdicts = {}
    for metric, op, goal, what in GOALS:
        value = results["metrics"].get(metric)
        limit, limit_what = binding_limit(results["metrics"], metric, op)
        if value is None:
            met = "not measured"
        elif args.quick:
            met = "-"
        else:
            met = "yes" if (value >= goal if op == ">=" else value <= goal) else "no"
        verdicts[metric] = met
        shown = "-" if value is None else f"{value:.2f}".rstrip("0").rstrip(".")
        limit_shown = "" if limit is None else \
            f"{limit:.0f} ({limit_what})" if abs(limit) >= 100 else f"{limit:.2f} ({limit_what})"
        print(f"| {what} | {shown} | {op} {goal:g} | {met} | {limit_shown} |")
    results["goals"] = verdicts

    results_path = os.path.join(out_dir, "results.json")
    with open(results_path, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"\nbench: results in {results_path}")
    if failed:
        print(f"bench: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
