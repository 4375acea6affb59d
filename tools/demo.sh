#!/usr/bin/env bash
# Runs the whole podgate suite locally on embedded defaults: kubesim as the Kubernetes API,
# policy, audit, exec and edge (the browser's port), and prints the page's URL and demo tokens.
# Ctrl+C stops every process cleanly (each drains and exits on SIGINT/SIGTERM).
set -euo pipefail
BUILD_DIR="${1:-build}"
BIN="$BUILD_DIR/services"
STATE="${PODGATE_DEMO_DIR:-$BUILD_DIR/demo}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# The policy the demo serves; edit it while the demo runs and podgate-policy reloads it.
POLICY_FILE="${PODGATE_DEMO_POLICY:-$ROOT/deploy/policy/example.yaml}"
EDGE_PORT="${PODGATE_DEMO_HTTP_PORT:-8080}"
ISSUER="https://podgate.local"
mkdir -p "$STATE/logs"
STATE="$(realpath "$STATE")"

# A demo HS256 secret for end-user tokens (exec and edge verify, podgate-token signs).
if [ ! -s "$STATE/jwt.secret" ]; then
  (umask 077 && head -c 48 /dev/urandom | base64 | tr -d '\n' >"$STATE/jwt.secret")
fi
JWT_FLAGS=(--jwt_key_file="$STATE/jwt.secret" --jwt_algorithm=HS256 --jwt_issuer="$ISSUER")

# The demo cluster: namespaces the example policy names (app-*, staging).
cat >"$STATE/cluster.yaml" <<'YAML'
namespaces:
  - name: app-shop
  - name: staging
pods:
  - name: orders-7d4b9c
    namespace: app-shop
    labels: {app: orders}
    annotations: {kubectl.kubernetes.io/default-container: app}
    containers:
      - name: app
      - name: istio-proxy
  - name: web-5f6d8
    namespace: staging
    labels: {app: web}
    containers:
      - name: app
      - name: debug
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec, namespaces]
    namespaces: ["*"]
YAML
echo "demo-exec-token,podgate-exec,1" >"$STATE/kube-tokens.csv"

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

"$BUILD_DIR/tools/kubesim/kubesim" --cluster="$STATE/cluster.yaml" \
  --token_file="$STATE/kube-tokens.csv" --state_dir="$STATE/kubesim" --port=0 \
  2>"$STATE/logs/kubesim.log" &
pids+=("$!")
for _ in $(seq 1 100); do
  grep -q '"serving"' "$STATE/logs/kubesim.log" 2>/dev/null && break
  sleep 0.1
done

start policy 7101 9101 --policy_file="$POLICY_FILE"
start audit 7103 9103 --store="sqlite://$STATE/audit.db" --chain_id=demo
start exec 7102 9102 --kubeconfig="$STATE/kubesim/kubeconfig" "${JWT_FLAGS[@]}"
start edge 7104 9104 --http_address="127.0.0.1:$EDGE_PORT" \
  --allowed_origins="http://127.0.0.1:$EDGE_PORT,http://localhost:$EDGE_PORT" \
  --web_root="$ROOT/services/edge/web" "${JWT_FLAGS[@]}"

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

token() {  # user groups
  "$BUILD_DIR/tools/token/podgate-token" --key_file="$STATE/jwt.secret" --algorithm=HS256 \
    --issuer="$ISSUER" --subject="$1" --groups="$2" --ttl=8h
}
DEV_TOKEN="$(token dev developers)"
SRE_TOKEN="$(token sre sre)"
AUDITOR_TOKEN="$(token auditor podgate-auditors)"

cat <<MSG
podgate demo is running (logs in $STATE/logs):
  page      http://127.0.0.1:$EDGE_PORT/   (WebSockets: /ws/v1/{namespace}/{pod}, /ws/seed/...;
                                           protocol: docs/protocol.md)
  service   gRPC              metrics
  policy    127.0.0.1:7101    http://127.0.0.1:9101/metrics   (policy: $POLICY_FILE)
  exec      127.0.0.1:7102    http://127.0.0.1:9102/metrics
  audit     127.0.0.1:7103    http://127.0.0.1:9103/metrics  (store: $STATE/audit.db)
  edge      127.0.0.1:7104    http://127.0.0.1:9104/metrics
Audit records: $BIN/audit/podgate-audit-cli --server=127.0.0.1:7103 query (or verify)

Demo tokens (HS256, secret in $STATE/jwt.secret, 8 hours):
  developer (group developers: diagnostics in app-* and staging):
    $DEV_TOKEN
  SRE (group sre: also a shell in staging/web-5f6d8, containers app and debug):
    $SRE_TOKEN
  auditor (group podgate-auditors: GET /api/v1/audit):
    $AUDITOR_TOKEN
Try: curl -H "Authorization: Bearer \$TOKEN" http://127.0.0.1:$EDGE_PORT/api/v1/targets
Press Ctrl+C to stop.
MSG
wait -n "${pids[@]}" || true
echo "demo: a process exited; see $STATE/logs" >&2
