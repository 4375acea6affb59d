#!/usr/bin/env bash
# Runs the whole podgate suite locally on embedded defaults; Ctrl+C stops every process
# cleanly (each drains and exits on SIGINT/SIGTERM).
set -euo pipefail
BUILD_DIR="${1:-build}"
BIN="$BUILD_DIR/services"
STATE="${PODGATE_DEMO_DIR:-$BUILD_DIR/demo}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The policy the demo serves; edit it while the demo runs and podgate-policy reloads it.
POLICY_FILE="${PODGATE_DEMO_POLICY:-$ROOT/deploy/policy/example.yaml}"
mkdir -p "$STATE/logs"

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping ${#pids[@]} processes"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "demo: stopped"
  exit 0
}
trap stop INT TERM EXIT

start() {  # name grpc_port metrics_port [flags...]
  local name=$1 grpc=$2 metrics=$3
  shift 3
  "$BIN/$name/podgate-$name" --grpc_address="127.0.0.1:$grpc" \
    --metrics_address="127.0.0.1:$metrics" "$@" 2>"$STATE/logs/$name.log" &
  pids+=("$!")
}

start policy 7101 9101 --policy_file="$POLICY_FILE"
start exec 7102 9102
start audit 7103 9103 --store="sqlite://$(realpath "$STATE")/audit.db" --chain_id=demo
start edge 7104 9104

# Wait until every service logs that it is serving.
for name in policy exec audit edge; do
  for _ in $(seq 1 100); do
    grep -q '"msg":"serving"' "$STATE/logs/$name.log" 2>/dev/null && break
    sleep 0.1
  done
  if ! grep -q '"msg":"serving"' "$STATE/logs/$name.log"; then
    echo "demo: podgate-$name did not start:" >&2
    cat "$STATE/logs/$name.log" >&2
    exit 1
  fi
done

cat <<MSG
podgate demo is running (logs in $STATE/logs):
  service   gRPC              metrics
  policy    127.0.0.1:7101    http://127.0.0.1:9101/metrics   (policy: $POLICY_FILE)
  exec      127.0.0.1:7102    http://127.0.0.1:9102/metrics
  audit     127.0.0.1:7103    http://127.0.0.1:9103/metrics  (store: $STATE/audit.db)
  edge      127.0.0.1:7104    http://127.0.0.1:9104/metrics
Audit records: $BIN/audit/podgate-audit-cli --server=127.0.0.1:7103 query (or verify)
Press Ctrl+C to stop.
MSG
wait -n "${pids[@]}" || true
echo "demo: a process exited; see $STATE/logs" >&2
