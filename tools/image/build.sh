#!/usr/bin/env bash
# Builds the podgate OCI image on this machine, without a registry and without a base image:
# a distroless-style root made here from the build tree (stripped copies of the binaries, the
# terminal page) and from this machine's Debian packages (the shared libraries `ldd` names and
# the dynamic loader, CA certificates, tzdata, the packages' copyright files), committed with
# buildah into an OCI archive:
#
#   build/image/podgate.oci.tar      the image (podman load -i / docker load -i / skopeo copy)
#   build/image/podgate.spdx.json    its SPDX 2.3 SBOM (also inside: /usr/share/doc/podgate/)
#   build/image/image-id             the image id (the config's digest)
#   build/image/podgate.build.json   what the build stamped into the image: version, revision,
#                                    SOURCE_DATE_EPOCH (and where it came from), created, tag,
#                                    image id, the source tree; the image tests compare the image
#                                    with this record, never with the tree's current HEAD
#
# Usage: tools/image/build.sh [BUILD_DIR]   (`make image`; BUILD_DIR defaults to build)
# The binaries come from BUILD_DIR (`make build`, RelWithDebInfo), so CI compiles once.
# SOURCE_DATE_EPOCH (default: the time of the revision's commit) is the image's `created` time
# and every file's mtime: the same inputs give the same layer, config and manifest digests, and
# the same archive bytes. PODGATE_IMAGE_REVISION (default: `git rev-parse HEAD`) is the revision
# label, so that a rebuild of an earlier build (image.reproducible) stamps what that build
# stamped. Storage is private to BUILD_DIR/image (vfs driver): nothing outside it is touched.
# An archive whose root is unchanged is not rebuilt (delete it to force).
# Runs as root (CI, containers); another user gets a user namespace from `buildah unshare`.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  exec buildah unshare bash "$0" "$@"
fi

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD_DIR="$(realpath "${1:-build}")"
OUT="${PODGATE_IMAGE_DIR:-$BUILD_DIR/image}"  # PODGATE_IMAGE_DIR: another output folder
HERE="$ROOT/tools/image"

# Every binary in the image, relative to BUILD_DIR: the one list. All are required: the chart's
# probes and its `helm test` Pod run /usr/bin/podgate-probe.
PODGATE_IMAGE_BINARIES=(
  services/edge/podgate-edge
  services/exec/podgate-exec
  services/policy/podgate-policy
  services/audit/podgate-audit
  services/audit/podgate-audit-cli
  tools/probe/podgate-probe
)
WEB_DIST="$BUILD_DIR/services/edge/web/dist"

die() {
  echo "image: $*" >&2
  exit 1
}
for tool in buildah skopeo strip ldd dpkg-query python3; do
  command -v "$tool" >/dev/null || die "$tool is missing: run tools/install-deps.sh"
done

mkdir -p "$OUT"
# One build at a time per build tree (`make image` beside the ctest fixture, ctest -j).
exec 9>"$OUT/.lock"
flock 9

start_s=$(date +%s)

VERSION=$(sed -n 's/^project(podgate VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
[ -n "$VERSION" ] || die "no project(podgate VERSION ...) in CMakeLists.txt"
# Where the revision and the epoch come from, read once: a commit made while this runs (or while
# the tests read the image) changes neither what is stamped nor what the record says.
EPOCH_FROM=environment
[ -n "${SOURCE_DATE_EPOCH:-}" ] || EPOCH_FROM=""
if [ -n "${PODGATE_IMAGE_REVISION:-}" ]; then
  REVISION=$PODGATE_IMAGE_REVISION
  [[ "$REVISION" =~ ^([0-9a-f]{40}|unknown)$ ]] ||
    die "PODGATE_IMAGE_REVISION must be a 40-hex commit or 'unknown', not '$REVISION'"
elif REVISION=$(git -C "$ROOT" rev-parse --verify -q 'HEAD^{commit}' 2>/dev/null); then
  :
else
  REVISION=unknown
fi
if [ -z "$EPOCH_FROM" ] && [ "$REVISION" != unknown ] &&
  SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct "$REVISION" 2>/dev/null); then
  EPOCH_FROM=commit
fi
if [ -z "$EPOCH_FROM" ]; then
  SOURCE_DATE_EPOCH=0
  EPOCH_FROM=default
fi
[[ "$SOURCE_DATE_EPOCH" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be seconds since 1970, not '$SOURCE_DATE_EPOCH'"
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
# Where the source lives; the chart's default image is ghcr.io/podgate/podgate.
SOURCE_URL="${PODGATE_IMAGE_SOURCE:-https://github.com/podgate/podgate}"
TAG="podgate:$VERSION"

# ---- the root ----------------------------------------------------------------------------
ROOTFS="$OUT/rootfs"
MANIFEST="$OUT/rootfs.manifest"  # image path <TAB> the Debian file it is a copy of
rm -rf "$ROOTFS"
mkdir -p "$ROOTFS"
: >"$MANIFEST"
cd "$ROOTFS"
mkdir -p usr/bin usr/lib usr/lib64 usr/share/podgate usr/share/doc/podgate usr/share/zoneinfo \
  etc/ssl/certs tmp var/lib/podgate proc dev sys
# Debian 12's merged /usr: the loader's path in every binary is /lib64/ld-linux-x86-64.so.2.
ln -s usr/lib lib
ln -s usr/lib64 lib64

binaries=()
for path in "${PODGATE_IMAGE_BINARIES[@]}"; do
  [ -x "$BUILD_DIR/$path" ] || die "$BUILD_DIR/$path is missing: run make build"
  name=$(basename "$path")
  # A stripped copy; the build tree keeps its debug information.
  strip --strip-unneeded -o "usr/bin/$name" "$BUILD_DIR/$path"
  chmod 0755 "usr/bin/$name"
  binaries+=("$name")
done

# A Debian file into the root at its canonical (/usr) path, symlinks kept as relative links.
add_debian_file() {  # host path (as ldd or dpkg names it)
  local host=$1 real canon
  real=$(realpath "$host")
  canon="$(realpath "$(dirname "$host")")/$(basename "$host")"
  if [ ! -e "$ROOTFS$real" ]; then
    mkdir -p "$ROOTFS$(dirname "$real")"
    cp -L --preserve=mode "$real" "$ROOTFS$real"
    printf '%s\t%s\n' "${real#/}" "$host" >>"$MANIFEST"
  fi
  if [ "$canon" != "$real" ] && [ ! -L "$ROOTFS$canon" ]; then
    mkdir -p "$ROOTFS$(dirname "$canon")"
    ln -sr "$ROOTFS$real" "$ROOTFS$canon"
  fi
}

# The shared libraries and the dynamic loader, as ldd resolves them on this machine.
libs=$(for b in "${binaries[@]}"; do ldd "usr/bin/$b"; done)
if grep -q 'not found' <<<"$libs"; then
  die "unresolved shared libraries: $(grep 'not found' <<<"$libs" | sort -u | tr -s ' \t\n' ' ')"
fi
while read -r lib; do
  add_debian_file "$lib"
done < <(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$libs" | sort -u)

# CA certificates (the bundle update-ca-certificates makes) where OpenSSL looks by default.
add_debian_file /etc/ssl/certs/ca-certificates.crt
mkdir -p usr/lib/ssl
ln -s ../../../etc/ssl/certs usr/lib/ssl/certs
ln -s ../../../etc/ssl/certs/ca-certificates.crt usr/lib/ssl/cert.pem
# Time zones (TZ=Europe/Berlin works; the default is UTC).
cp -a /usr/share/zoneinfo/. usr/share/zoneinfo/
rm -f usr/share/zoneinfo/localtime  # a link to the host's /etc/localtime
(cd usr/share/zoneinfo && find . -type f | LC_ALL=C sort | sed 's|^\./\(.*\)|usr/share/zoneinfo/\1\t/usr/share/zoneinfo/\1|') >>"$MANIFEST"

# The copyright file of every Debian package in the image (licences travel with the binaries).
mapfile -t packages < <(cut -f2 "$MANIFEST" | python3 "$HERE/sbom.py" owners)
for pkg in "${packages[@]}"; do
  name=${pkg%%:*}
  copyright="/usr/share/doc/$name/copyright"
  if [ -f "$copyright" ]; then
    mkdir -p "usr/share/doc/$name"
    cp -L --preserve=mode "$copyright" "usr/share/doc/$name/copyright"
    printf '%s\t%s\n' "usr/share/doc/$name/copyright" "$copyright" >>"$MANIFEST"
  fi
done
for doc in LICENSE NOTICE; do
  [ -f "$ROOT/$doc" ] && install -m 0644 "$ROOT/$doc" "usr/share/doc/podgate/$doc"
done

# The terminal page edge serves (the chart passes --web_root=/usr/share/podgate/web).
[ -s "$WEB_DIST/index.html" ] || die "$WEB_DIST/index.html is missing: run make build"
cp -r "$WEB_DIST" usr/share/podgate/web

# Users: root, podgate (10001, the one the image runs as) and nobody; no login shells.
cat >etc/passwd <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
podgate:x:10001:10001:podgate:/var/lib/podgate:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >etc/group <<'EOF'
root:x:0:
podgate:x:10001:
nogroup:x:65534:
EOF
# glibc's lookups (libpq asks for the user name; gRPC and libpq resolve host names). Container
# runtimes mount their own /etc/hosts and /etc/resolv.conf over these.
cat >etc/nsswitch.conf <<'EOF'
passwd: files
group: files
shadow: files
hosts: files dns
networks: files
protocols: files
services: files
EOF
cat >etc/hosts <<'EOF'
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
EOF
: >etc/resolv.conf
chmod 0644 etc/passwd etc/group etc/nsswitch.conf etc/hosts etc/resolv.conf

# Writable when the root is read-only: /tmp (tmpfs or emptyDir) and /var/lib/podgate (audit's
# SQLite volume), the latter owned by the runtime user for plain `podman run`.
chmod 1777 tmp
chown 10001:10001 var/lib/podgate
chmod 0750 var/lib/podgate
chmod 0555 proc sys
chmod 0755 dev

# The SBOM of everything above, inside the image and beside the archive.
python3 "$HERE/sbom.py" generate --rootfs "$ROOTFS" --manifest "$MANIFEST" \
  --version "$VERSION" --revision "$REVISION" --source "$SOURCE_URL" --created "$CREATED" \
  --web-lock "$ROOT/services/edge/web/package-lock.json" \
  --exclude usr/share/doc/podgate/sbom.spdx.json --out "$OUT/podgate.spdx.json"
install -m 0644 "$OUT/podgate.spdx.json" usr/share/doc/podgate/sbom.spdx.json

# Every mtime clamped to SOURCE_DATE_EPOCH (buildah's --timestamp does it again in the layer).
find . -depth -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
if [ -e bin/sh ] || [ -e usr/bin/sh ]; then
  die "a shell got into the image"
fi
cd "$OUT"

# ---- unchanged since the last build? ----------------------------------------------------
labels=(
  "org.opencontainers.image.title=podgate"
  "org.opencontainers.image.description=podgate: allowlisted commands in Kubernetes pods from a browser terminal, authorized by policy and recorded in a tamper-evident audit trail (edge, exec, policy, audit, audit-cli)"
  "org.opencontainers.image.version=$VERSION"
  "org.opencontainers.image.revision=$REVISION"
  "org.opencontainers.image.source=$SOURCE_URL"
  "org.opencontainers.image.licenses=Apache-2.0"
  "org.opencontainers.image.created=$CREATED"
  "org.opencontainers.image.vendor=podgate"
)
inputs=$(
  cd "$ROOTFS"
  find . -printf '%p %y %m %U:%G %l\n' | LC_ALL=C sort
  find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  printf '%s\n' "${labels[@]}" "$SOURCE_DATE_EPOCH" "$TAG"
  sha256sum "$HERE/build.sh"
)
stamp=$(sha256sum <<<"$inputs" | cut -d' ' -f1)
ARCHIVE="$OUT/podgate.oci.tar"
RECORD="$OUT/podgate.build.json"

# The record of what this build stamped (the stamp above covers every value in it but
# EPOCH_FROM and the folders, which do not change the image).
write_record() {  # image id
  python3 - "$RECORD.tmp" "$1" "$VERSION" "$REVISION" "$SOURCE_DATE_EPOCH" "$EPOCH_FROM" \
    "$CREATED" "$TAG" "$SOURCE_URL" "$ROOT" "$BUILD_DIR" <<'PY'
import json, sys
out, image_id, version, revision, epoch, epoch_from, created, tag, url, root, build = sys.argv[1:]
record = {"archive": "podgate.oci.tar", "image_id": image_id, "tag": tag, "version": version,
          "revision": revision, "source_date_epoch": int(epoch), "epoch_from": epoch_from,
          "created": created, "source_url": url, "source_dir": root, "build_dir": build}
with open(out, "w") as f:
    json.dump(record, f, indent=2, sort_keys=True)
    f.write("\n")
PY
  mv "$RECORD.tmp" "$RECORD"
}

if [ -s "$ARCHIVE" ] && [ -s "$OUT/image-id" ] && [ "$(cat "$OUT/.stamp" 2>/dev/null)" = "$stamp" ]; then
  write_record "$(cat "$OUT/image-id")"
  echo "image: $ARCHIVE is up to date ($(du -h "$ARCHIVE" | cut -f1), id $(cat "$OUT/image-id"))"
  exit 0
fi
rm -f "$OUT/.stamp" "$RECORD"

# ---- the image ---------------------------------------------------------------------------
BUILDAH=(buildah --root "$OUT/storage" --runroot "$OUT/run" --storage-driver vfs)
"${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true
ctr=$("${BUILDAH[@]}" from --name podgate-image scratch)
cleanup() { "${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true; }
trap cleanup EXIT
mnt=$("${BUILDAH[@]}" mount "$ctr")
# cp -a keeps modes, owners (10001 on /var/lib/podgate) and relative symlinks.
cp -a "$ROOTFS/." "$mnt/"
"${BUILDAH[@]}" umount "$ctr" >/dev/null
config=(--user 10001:10001 --workingdir /tmp --entrypoint '[]'
  --cmd '["podgate-edge","--help"]' --env PATH=/usr/local/bin:/usr/bin --stop-signal SIGTERM
  --os linux --arch amd64 --author podgate --created-by "tools/image/build.sh")
for port in 7101 7102 7103 7104 8080 9101 9102 9103 9104; do
  config+=(--port "$port")
done
for label in "${labels[@]}"; do
  config+=(--label "$label")
done
"${BUILDAH[@]}" config "${config[@]}" "$ctr"
rm -rf "$OUT/oci"
"${BUILDAH[@]}" commit --quiet --format oci --timestamp "$SOURCE_DATE_EPOCH" --identity-label=false \
  --disable-compression=false "$ctr" "oci:$OUT/oci:$TAG" >/dev/null
# docker load names the image from this annotation, podman load from ref.name.
python3 - "$OUT/oci/index.json" "docker.io/library/$TAG" <<'PY'
import json, sys
path, name = sys.argv[1], sys.argv[2]
with open(path) as f:
    index = json.load(f)
for m in index["manifests"]:
    m.setdefault("annotations", {})["io.containerd.image.name"] = name
with open(path, "w") as f:
    json.dump(index, f, separators=(",", ":"), sort_keys=True)
PY
# The archive: the OCI layout in a tar whose bytes depend on its content only.
find "$OUT/oci" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
tar -C "$OUT/oci" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  --format=gnu -cf "$ARCHIVE.tmp" .
mv "$ARCHIVE.tmp" "$ARCHIVE"

id=$(skopeo inspect --raw "oci-archive:$ARCHIVE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"].split(":")[1])')
echo "$id" >"$OUT/image-id"
write_record "$id"
echo "$stamp" >"$OUT/.stamp"
size=$(stat -c %s "$ARCHIVE")
layer=$(skopeo inspect "oci-archive:$ARCHIVE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Layers"][0])')
echo "image: $ARCHIVE ($TAG, revision ${REVISION:0:12}, created $CREATED)"
echo "image: size $((size / 1024 / 1024)) MiB compressed ($size bytes), $(du -sh --apparent-size "$ROOTFS" | cut -f1) unpacked"
echo "image: binaries ${binaries[*]}"
echo "image: id $id, layer $layer"
echo "image: record $RECORD (SOURCE_DATE_EPOCH $SOURCE_DATE_EPOCH from $EPOCH_FROM)"
echo "image: SBOM $OUT/podgate.spdx.json; built in $(($(date +%s) - start_s)) s"
