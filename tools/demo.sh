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
# Ports: the defaults below, or all moved together from PODGATE_DEMO_PORT_BASE (tests run the
# demo beside other work): kubesim base (eu-prod) and base+6 (us-staging), gRPC base+1..4, the
# OpenID provider base+5, metrics
# base+11..14, the page base+20.
BASE="${PODGATE_DEMO_PORT_BASE:-}"
port() {  # default offset
  if [ -n "$BASE" ]; then echo $((BASE + $2)); else echo "$1"; fi
}
KUBESIM_PORT=$(port 7443 0)
KUBESIM_US_PORT=$(port 7444 6)
OIDC_PORT=$(port 7100 5)
POLICY_PORT=$(port 7101 1) EXEC_PORT=$(port 7102 2) AUDIT_PORT=$(port 7103 3) EDGE_PORT_GRPC=$(port 7104 4)
POLICY_METRICS=$(port 9101 11) EXEC_METRICS=$(port 9102 12) AUDIT_METRICS=$(port 9103 13)
EDGE_METRICS=$(port 9104 14)
# The terminal page, built by `make build` (services/edge/web, npm + Vite).
WEB_ROOT="${PODGATE_DEMO_WEB_ROOT:-$(realpath "$BUILD_DIR")/services/edge/web/dist}"
if [ ! -s "$WEB_ROOT/index.html" ]; then
  echo "demo: the terminal page is not built ($WEB_ROOT/index.html is missing): run make build" >&2
  exit 1
fi
mkdir -p "$STATE/logs"

pids=()
stop() {
  # A second Ctrl+C or SIGTERM must not cut the orderly stop short (and orphan the services).
  trap '' INT TERM
  trap - EXIT
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

# kubesim: the embedded default cluster (a JVM pod, a root container, ...), HTTPS with a
# generated CA, serving certificate, token file and kubeconfig under $STATE/kubesim.
KUBESIM_STATE="$STATE/kubesim"
mkdir -p "$KUBESIM_STATE"
chmod 0755 "$STATE" "$KUBESIM_STATE"
if [ ! -s "$KUBESIM_STATE/tokens.csv" ]; then
  umask 077
  {
    echo "$(openssl rand -hex 24),podgate-exec,1001"
    echo "$(openssl rand -hex 24),admin,1000"
  } >"$KUBESIM_STATE/tokens.csv"
  umask 022
fi
DEMO_APP="$(cd "$(dirname "$0")/kubesim/demo" && pwd)/DemoApp.java"
sed "s|\$DEMO_APP|$DEMO_APP|" "$(dirname "$0")/kubesim/demo-cluster.yaml" >"$KUBESIM_STATE/cluster.yaml"
"$BUILD_DIR/tools/kubesim/kubesim" --port="$KUBESIM_PORT" --cluster="$KUBESIM_STATE/cluster.yaml" \
  --token_file="$KUBESIM_STATE/tokens.csv" --state_dir="$KUBESIM_STATE" \
  --kubeconfig_user=podgate-exec --audit_log="$STATE/logs/kube-audit.log" \
  2>"$STATE/logs/kubesim.log" &
pids+=("$!")

# A second cluster, us-staging, with other pods (and the same access and RBAC): exec serves
# both, eu-prod (the first kubesim) as the default.
KUBESIM_US_STATE="$STATE/kubesim-us-staging"
mkdir -p "$KUBESIM_US_STATE"
chmod 0755 "$KUBESIM_US_STATE"
{
  cat "$(dirname "$0")/kubesim/demo-cluster-us-staging.yaml"
  sed -n '/^access:/,$p' "$KUBESIM_STATE/cluster.yaml"
} >"$KUBESIM_US_STATE/cluster.yaml"
"$BUILD_DIR/tools/kubesim/kubesim" --port="$KUBESIM_US_PORT" --cluster="$KUBESIM_US_STATE/cluster.yaml" \
  --token_file="$KUBESIM_STATE/tokens.csv" --state_dir="$KUBESIM_US_STATE" \
  --kubeconfig_user=podgate-exec --audit_log="$STATE/logs/kube-audit-us-staging.log" \
  2>"$STATE/logs/kubesim-us-staging.log" &
pids+=("$!")

# Wait for the kubeconfigs before exec reads them; exec serves each file of $STATE/clusters
# as the cluster its name says.
for log in kubesim kubesim-us-staging; do
  for _ in $(seq 1 100); do
    grep -q '"msg":"serving"' "$STATE/logs/$log.log" 2>/dev/null && break
    sleep 0.1
  done
done
mkdir -p "$STATE/clusters"
ln -sf "$(realpath "$KUBESIM_STATE/kubeconfig")" "$STATE/clusters/eu-prod.yaml"
ln -sf "$(realpath "$KUBESIM_US_STATE/kubeconfig")" "$STATE/clusters/us-staging.yaml"

# The identity provider: tools/oidc-provider (oidc-provider from npm, OpenID Certified) on
# loopback, with three demo users who sign in on its own login page. edge offers "Sign in with
# SSO" (the authorization code flow with PKCE); edge and exec verify its ID tokens with its JWKS.
# ID tokens live PODGATE_DEMO_ID_TOKEN_TTL seconds (default 300); the page refreshes them.
EDGE_PORT="${PODGATE_DEMO_HTTP_PORT:-$(port 8080 20)}"
OIDC_DIR="$STATE/oidc"
ISSUER="http://127.0.0.1:$OIDC_PORT"
if [ ! -s "$ROOT/tools/oidc-provider/node_modules/oidc-provider/package.json" ]; then
  echo "demo: the OpenID provider's packages are missing (tools/oidc-provider/node_modules): run make build" >&2
  exit 1
fi
mkdir -p "$OIDC_DIR"
(
  umask 077
  [ -s "$OIDC_DIR/client.secret" ] || openssl rand -hex 24 >"$OIDC_DIR/client.secret"
  [ -s "$OIDC_DIR/cookie.key" ] || openssl rand -hex 32 >"$OIDC_DIR/cookie.key"
  cat >"$OIDC_DIR/provider.json" <<JSON
{
  "keys": "$OIDC_DIR/keys.json",
  "ttl": {"IdToken": ${PODGATE_DEMO_ID_TOKEN_TTL:-300}},
  "users": [
    {"username": "developer", "password": "developer", "groups": ["developers"], "name": "Dana Developer"},
    {"username": "sre", "password": "sre", "groups": ["sre", "developers"], "name": "Sam SRE"},
    {"username": "auditor", "password": "auditor", "groups": ["podgate-auditors"], "name": "Ari Auditor"}
  ],
  "clients": [{
    "client_id": "podgate",
    "client_secret": "$(cat "$OIDC_DIR/client.secret")",
    "redirect_uris": ["http://127.0.0.1:$EDGE_PORT/auth/callback"],
    "post_logout_redirect_uris": ["http://127.0.0.1:$EDGE_PORT/"],
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "token_endpoint_auth_method": "client_secret_basic"
  }, {
    "client_id": "podgate-cli",
    "grant_types": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
    "response_types": [],
    "token_endpoint_auth_method": "none"
  }]
}
JSON
)
node "$ROOT/tools/oidc-provider/provider.mjs" --port="$OIDC_PORT" --config="$OIDC_DIR/provider.json" \
  2>"$STATE/logs/oidc-provider.log" &
pids+=("$!")
for _ in $(seq 1 100); do
  grep -q '"msg":"listening"' "$STATE/logs/oidc-provider.log" 2>/dev/null && break
  sleep 0.1
done
if ! grep -q '"msg":"listening"' "$STATE/logs/oidc-provider.log"; then
  echo "demo: the OpenID provider did not start:" >&2
  cat "$STATE/logs/oidc-provider.log" >&2
  exit 1
fi

# End-user tokens: the provider's ID tokens (single sign-on), and tokens to paste, minted with
# podgate-token and the provider's own signing key (so the same verifier accepts both).
JWT_FLAGS=(--jwt_issuer="$ISSUER" --jwt_jwks_url="$ISSUER/jwks")
# An ID token's audience is the client it was issued to: edge's (podgate) for the page; exec
# also accepts the command line's (podgate-cli, `podgate-run login`, the device flow).
EDGE_AUDIENCE=podgate
EXEC_AUDIENCE=podgate,podgate-cli
# The command line's sign-in stays in the demo's folder (not the user's ~/.config/podgate).
RUN="$BUILD_DIR/tools/run/podgate-run"
RUN_CACHE="$(realpath "$STATE")/token.json"
KID=$(node -e 'const c=require("crypto"),fs=require("fs");
const k=JSON.parse(fs.readFileSync(process.argv[1],"utf8")).keys[0];
fs.writeFileSync(process.argv[2],c.createPrivateKey({key:k,format:"jwk"}).export({type:"pkcs8",format:"pem"}),{mode:0o600});
console.log(k.kid)' "$OIDC_DIR/keys.json" "$OIDC_DIR/signing.pem")
TOKEN="$BUILD_DIR/tools/token/podgate-token"
mint() {  # user groups
  "$TOKEN" --key_file="$OIDC_DIR/signing.pem" --algorithm=RS256 --key_id="$KID" \
    --issuer="$ISSUER" --audience=podgate --subject="$1" --groups="$2" --ttl=12h
}

start audit "$AUDIT_PORT" "$AUDIT_METRICS" --store="sqlite://$(realpath "$STATE")/audit.db" --chain_id=demo
start policy "$POLICY_PORT" "$POLICY_METRICS" --policy_file="$POLICY_FILE" \
  --audit_address="127.0.0.1:$AUDIT_PORT"
start exec "$EXEC_PORT" "$EXEC_METRICS" --kubeconfig_dir="$STATE/clusters" --kube_default_cluster=eu-prod \
  --policy_address="127.0.0.1:$POLICY_PORT" --audit_address="127.0.0.1:$AUDIT_PORT" "${JWT_FLAGS[@]}" \
  --jwt_audience="$EXEC_AUDIENCE" \
  --kube_impersonation=user+groups --kube_impersonate_user_prefix=oidc: \
  --kube_impersonate_group_prefix=oidc: \
  --resume_grace=2m
# edge: the browser's port (plain HTTP on loopback only), the page and the WebSocket protocols,
# and single sign-on with the demo provider.
start edge "$EDGE_PORT_GRPC" "$EDGE_METRICS" --http_address="127.0.0.1:$EDGE_PORT" \
  --allowed_origins="http://127.0.0.1:$EDGE_PORT,http://localhost:$EDGE_PORT" \
  --web_root="$WEB_ROOT" --exec_address="127.0.0.1:$EXEC_PORT" \
  --policy_address="127.0.0.1:$POLICY_PORT" --audit_address="127.0.0.1:$AUDIT_PORT" "${JWT_FLAGS[@]}" \
  --jwt_audience="$EDGE_AUDIENCE" --oidc_issuer="$ISSUER" --oidc_client_id=podgate --oidc_client_secret_file="$OIDC_DIR/client.secret" \
  --oidc_redirect_url="http://127.0.0.1:$EDGE_PORT/auth/callback" \
  --oidc_cookie_key_file="$OIDC_DIR/cookie.key" \
  --oidc_scopes="openid profile email groups offline_access"

# Wait until every service logs that it is serving.
for name in kubesim kubesim-us-staging policy exec audit edge; do
  for _ in $(seq 1 100); do
    grep -q '"msg":"serving"' "$STATE/logs/$name.log" 2>/dev/null && break
    sleep 0.1
  done
  if ! grep -q '"msg":"serving"' "$STATE/logs/$name.log"; then
    echo "demo: $name did not start:" >&2
    cat "$STATE/logs/$name.log" >&2
    exit 1
  fi
done

cat <<MSG
podgate demo is running (logs in $STATE/logs):
  page      http://127.0.0.1:$EDGE_PORT/  (the web terminal; WebSockets /ws/v1/{namespace}/{pod},
            HTTP API /api/v1/...: docs/protocol.md)
  service   gRPC              metrics
  policy    127.0.0.1:$POLICY_PORT    http://127.0.0.1:$POLICY_METRICS/metrics   (policy: $POLICY_FILE)
  exec      127.0.0.1:$EXEC_PORT    http://127.0.0.1:$EXEC_METRICS/metrics
  audit     127.0.0.1:$AUDIT_PORT    http://127.0.0.1:$AUDIT_METRICS/metrics  (store: $STATE/audit.db)
  edge      127.0.0.1:$EDGE_PORT_GRPC    http://127.0.0.1:$EDGE_METRICS/metrics
  kubesim   https://127.0.0.1:$KUBESIM_PORT     cluster eu-prod (the default): app-shop, app-payments, staging, ops
  kubesim   https://127.0.0.1:$KUBESIM_US_PORT     cluster us-staging: app-shop, staging (other pods)
  provider  $ISSUER (OpenID provider: sign-in page, /.well-known/openid-configuration)
kubeconfig: $KUBESIM_STATE/kubeconfig
  try: kubectl --kubeconfig $KUBESIM_STATE/kubeconfig get pods -A
       kubectl --kubeconfig $KUBESIM_STATE/kubeconfig exec -n app-shop orders-7d4b9c -- jps
Audit records: $BIN/audit/podgate-audit-cli --server=127.0.0.1:$AUDIT_PORT query (or verify)
The cluster's own audit log names each developer (exec impersonates them, prefix oidc:):
  grep impersonatedUser $STATE/logs/kube-audit.log

Sign in: open http://127.0.0.1:$EDGE_PORT/ and click "Sign in with SSO"; on the provider's page
(the demo OpenID provider, $ISSUER) use one of
  user       password   groups
  developer  developer  developers
  sre        sre        sre, developers   (may open a shell in namespace staging)
  auditor    auditor    podgate-auditors  (sees the Audit tab)
Or paste a token ("Or paste an access token"; valid 12 h, signed with the provider's key; exec
verifies them, so any backend may use them):
  developer  DEV_TOKEN=$(mint dana developers)
  sre        SRE_TOKEN=$(mint sam sre)   (may open a shell in namespace staging)
  auditor    AUDITOR_TOKEN=$(mint ava podgate-auditors)
In the browser: sign in as developer (or paste DEV_TOKEN), pick app-shop / orders-7d4b9c, then
  jps                (the demo JVM's pid)       jstack <pid>     (a thread dump)
  cat /etc/shadow    (refused, with the rule)   Tab completes, the side panel lists what is allowed
  SRE_TOKEN opens a recorded shell in staging; AUDITOR_TOKEN sees the Audit tab and replays it.
Run a command as the developer from the command line (stdout and stderr apart, the exit status):
  export PODGATE_TOKEN=\$DEV_TOKEN   (or --token_file=PATH; a token in the arguments shows in ps)
  $RUN --exec_address=127.0.0.1:$EXEC_PORT -n app-shop orders-7d4b9c -- free -m
  ... -- jstack \$(pgrep -f DemoApp.java)    (kubesim's containers share this machine's pids)
  ... -- cat /etc/shadow                       (refused, with the rule and the reason)
  ... --cluster=us-staging -n app-shop orders-8e2a71 -- free -m   (the other cluster)
Or sign the command line in with SSO (the device flow: it prints a link and a code; open it,
enter the code, sign in as one of the users above), then run without a token (unset PODGATE_TOKEN):
  $RUN login --oidc_issuer=$ISSUER --oidc_client_id=podgate-cli --token_cache=$RUN_CACHE
  $RUN --token_cache=$RUN_CACHE --exec_address=127.0.0.1:$EXEC_PORT -n app-shop orders-7d4b9c -- free -m
Ask edge's API as the developer:
  curl -H "Authorization: Bearer \$DEV_TOKEN" http://127.0.0.1:$EDGE_PORT/api/v1/targets
Press Ctrl+C to stop.
MSG
wait -n "${pids[@]}" || true
echo "demo: a process exited; see $STATE/logs" >&2
