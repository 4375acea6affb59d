#!/usr/bin/env python3
"""Tests of the podgate OCI image (tools/image/build.sh): build/image/podgate.oci.tar.

  image_test.py archive BUILD_DIR
      the archive as a registry or a node sees it: OCI labels and their values, user, ports,
      reproducible `created`, the root's content (no shell, stripped binaries, every shared
      library present, users, writable paths), the SBOM against the root, `podman load`. The
      labels are compared with build/image/podgate.build.json, the build's record of what it
      stamped (not with the tree's HEAD now: a commit made meanwhile changes nothing here), and
      the record with the source tree (the version in CMakeLists.txt, a revision that is a
      commit of this repository, the epoch that commit's time).
  image_test.py reproducible BUILD_DIR
      a second build into another folder, with the recorded revision and SOURCE_DATE_EPOCH,
      gives the same archive, byte for byte.
  image_test.py smoke BUILD_DIR --health=BIN --kubesim=BIN --policy=FILE
      unpacks the image with umoci and runs audit (SQLite in /var/lib/podgate), policy (the
      example policy), exec (against a kubesim cluster run on this machine) and edge (with its
      page) from the image's own filesystem: each in its own mount namespace, the unpacked root
      bind-mounted read-only with tmpfs on /tmp, /var/lib/podgate and /dev, /proc mounted,
      chrooted as uid/gid 10001 without supplementary groups. Each answers grpc.health.v1
      SERVING (asked from this side over loopback, and by the image's podgate-probe from inside)
      and serves /metrics; a policy from the image serving mutual TLS (a CA, server and client
      certificates made for the test) is SERVING to the image's podgate-probe with the client
      certificate and refused, exit 1 and one line, with a certificate of another CA;
      podgate-audit-cli from the image queries and verifies the audit trail; the root is
      read-only and every process runs as 10001.

Needs root (mount namespaces, chroot) and exits 77 (skipped) otherwise.
"""
import argparse
import base64
import datetime
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
# Every binary the image holds, all required (the chart's probes run podgate-probe).
BINARIES = ["podgate-edge", "podgate-exec", "podgate-policy", "podgate-audit", "podgate-audit-cli",
            "podgate-probe"]
UID = 10001

failures = []


def check(cond, what):
    if cond:
        print(f"ok: {what}")
    else:
        print(f"FAIL: {what}")
        failures.append(what)
    return cond


def finish():
    if failures:
        print(f"{len(failures)} check(s) failed:")
        for f in failures:
            print(f"  - {f}")
        sys.exit(1)
    print("all checks passed")


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run(cmd, check=False, **kw)


def need_root():
    if os.geteuid() != 0:
        print("skipped: the image tests need root (mount namespaces, chroot, private storage)")
        sys.exit(77)


def project_version():
    with open(os.path.join(REPO, "CMakeLists.txt")) as f:
        m = re.search(r"^project\(podgate VERSION ([0-9.]+)", f.read(), re.M)
    return m.group(1)


def git(*args):
    r = run(["git", "-C", REPO, *args])
    return r.stdout.strip() if r.returncode == 0 else None


def archive_path(build_dir):
    path = os.path.join(build_dir, "image", "podgate.oci.tar")
    if not os.path.isfile(path):
        sys.exit(f"{path} is missing: the image.build test (tools/image/build.sh) makes it")
    return path


def build_record(image_dir):
    """What tools/image/build.sh stamped into the archive beside it (podgate.build.json)."""
    path = os.path.join(image_dir, "podgate.build.json")
    if not os.path.isfile(path):
        sys.exit(f"{path} is missing: tools/image/build.sh writes it with the archive")
    with open(path) as f:
        return json.load(f)


def created_from_epoch(epoch):
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def configured_source_dir(build_dir):
    """The source tree BUILD_DIR was configured from (CMakeCache.txt), or None."""
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            m = re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.+)$", f.read(), re.M)
    except OSError:
        return None
    return os.path.realpath(m.group(1)) if m else None


def check_record(record, build_dir, version):
    """The record against the tree the build directory was configured from."""
    source_dir = configured_source_dir(build_dir)
    check(source_dir is not None and os.path.realpath(record.get("source_dir", "")) == source_dir,
          f"record: built from {record.get('source_dir')!r}, the tree {build_dir} was configured "
          f"from ({source_dir!r})")
    check(record.get("version") == version,
          f"record: version {record.get('version')!r} is CMakeLists.txt's {version!r}")
    revision = record.get("revision", "")
    epoch = record.get("source_date_epoch")
    check(isinstance(epoch, int) and epoch >= 0, f"record: source_date_epoch {epoch!r} is seconds")
    check(record.get("created") == created_from_epoch(epoch or 0),
          f"record: created {record.get('created')!r} is SOURCE_DATE_EPOCH {epoch!r}")
    if git("rev-parse", "--git-dir") is None:
        check(revision == "unknown", f"record: revision 'unknown' outside git (is {revision!r})")
        return
    if check(re.fullmatch(r"[0-9a-f]{40}", revision) is not None,
             f"record: revision {revision!r} is a 40-hex commit id"):
        exists = run(["git", "-C", REPO, "cat-file", "-e", f"{revision}^{{commit}}"]).returncode == 0
        check(exists, f"record: revision {revision[:12]} is a commit of {REPO}")
        if exists and record.get("epoch_from") == "commit":
            commit_time = git("log", "-1", "--format=%ct", revision)
            check(str(epoch) == commit_time,
                  f"record: SOURCE_DATE_EPOCH {epoch} is the time of commit {revision[:12]} "
                  f"({commit_time})")
    check(record.get("epoch_from") in ("commit", "environment", "default"),
          f"record: epoch_from {record.get('epoch_from')!r} says where the epoch came from")


def unpack(archive, workdir):
    """The image's root filesystem, unpacked by umoci from the archive's OCI layout."""
    layout = os.path.join(workdir, "oci")
    os.makedirs(layout)
    subprocess.run(["tar", "-C", layout, "-xf", archive], check=True)
    with open(os.path.join(layout, "index.json")) as f:
        ref = json.load(f)["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    bundle = os.path.join(workdir, "bundle")
    r = run(["umoci", "unpack", "--image", f"{layout}:{ref}", bundle])
    if r.returncode != 0:
        sys.exit(f"umoci unpack failed: {r.stderr}")
    return os.path.join(bundle, "rootfs")


def inside(rootfs, path):
    """Resolves `path` as the image would (symlinks relative to rootfs); None if dangling."""
    parts = [p for p in path.split("/") if p]
    resolved = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(rootfs, *resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    full = os.path.join(rootfs, *resolved)
    return full if os.path.exists(full) else None


def readelf(args, path):
    return run(["readelf", "-W", *args, path]).stdout


# ---- archive -------------------------------------------------------------------------------

def test_archive(args):
    need_root()
    archive = archive_path(args.build_dir)
    version = project_version()
    print(f"archive {archive}: {os.path.getsize(archive)} bytes")

    r = run(["skopeo", "inspect", "--config", f"oci-archive:{archive}"])
    if not check(r.returncode == 0, f"skopeo inspect --config reads the archive {r.stderr.strip()}"):
        finish()
    config = json.loads(r.stdout)
    cfg = config["config"]
    labels = cfg.get("Labels") or {}
    # What the build stamped, from its record: the tree's HEAD may have moved on since.
    record = build_record(os.path.join(args.build_dir, "image"))
    check_record(record, args.build_dir, version)
    created = record.get("created")
    revision = record.get("revision")
    expected = {
        "org.opencontainers.image.title": "podgate",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.created": created,
    }
    for key, value in expected.items():
        check(labels.get(key) == value, f"label {key} = {value!r} (is {labels.get(key)!r})")
    check(re.match(r"^https://\S+$", labels.get("org.opencontainers.image.source", "")) is not None,
          f"label org.opencontainers.image.source is a URL ({labels.get('org.opencontainers.image.source')!r})")
    check(labels.get("org.opencontainers.image.description", "") != "", "label description set")
    check(config.get("created") == created, f"image created = SOURCE_DATE_EPOCH ({config.get('created')})")
    check(all(h.get("created") == created for h in config.get("history", [])),
          "history entries carry SOURCE_DATE_EPOCH")
    check(cfg.get("User") == "10001:10001", f"user 10001:10001 (is {cfg.get('User')!r})")
    check(cfg.get("WorkingDir") == "/tmp", "working directory /tmp")
    check(not cfg.get("Entrypoint"), f"no entrypoint (is {cfg.get('Entrypoint')!r})")
    check(cfg.get("Cmd") == ["podgate-edge", "--help"], f"cmd podgate-edge --help (is {cfg.get('Cmd')})")
    check(cfg.get("StopSignal") == "SIGTERM", "stop signal SIGTERM")
    with open(os.path.join(REPO, "deploy", "docker", "Dockerfile")) as f:
        expose = re.search(r"^EXPOSE (.+)$", f.read(), re.M).group(1).split()
    check(sorted(cfg.get("ExposedPorts", {})) == sorted(expose),
          f"exposed ports as the Dockerfile's EXPOSE {expose} (are {sorted(cfg.get('ExposedPorts', {}))})")
    check(config.get("architecture") == "amd64" and config.get("os") == "linux", "linux/amd64")
    with open(os.path.join(args.build_dir, "image", "image-id")) as f:
        image_id = f.read().strip()
    raw = json.loads(run(["skopeo", "inspect", "--raw", f"oci-archive:{archive}"]).stdout)
    check(raw["config"]["digest"] == "sha256:" + image_id, "build/image/image-id is the config digest")
    check(record.get("image_id") == image_id and record.get("tag") == f"podgate:{version}",
          f"record: image id and tag are the archive's ({record.get('image_id')}, {record.get('tag')})")
    check(labels.get("org.opencontainers.image.source") == record.get("source_url"),
          "label org.opencontainers.image.source is the recorded source URL")
    check(len(raw["layers"]) == 1 and raw["layers"][0]["mediaType"].endswith("tar+gzip"),
          "one gzip-compressed layer")

    work = tempfile.mkdtemp(prefix="podgate-image-archive-")
    try:
        rootfs = unpack(archive, work)
        check_rootfs(rootfs)
        check_sbom(rootfs, args.build_dir, version)
        check_podman_load(archive, work, image_id, version)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    finish()


def check_rootfs(rootfs):
    # No shell, no package manager, nothing in /usr/bin but podgate's binaries.
    for shell in ["bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/bash", "bin/busybox",
                  "usr/bin/busybox", "usr/bin/dpkg", "usr/bin/apt"]:
        check(not os.path.lexists(os.path.join(rootfs, shell)), f"no /{shell} in the image")
    found_shells = [p for p in glob.glob(os.path.join(rootfs, "**", "*sh"), recursive=True)
                    if os.path.basename(p) in ("sh", "bash", "dash", "ash", "zsh")]
    check(not found_shells, f"no shell anywhere ({found_shells})")
    usr_bin = sorted(os.listdir(os.path.join(rootfs, "usr", "bin")))
    check(set(usr_bin) == set(BINARIES), f"/usr/bin holds exactly the podgate binaries ({usr_bin})")
    for name in usr_bin:
        path = os.path.join(rootfs, "usr", "bin", name)
        sections = readelf(["-S"], path)
        check(".debug_info" not in sections and ".symtab" not in sections, f"{name} is stripped")
        st = os.stat(path)
        check(st.st_uid == 0 and st.st_mode & 0o7777 == 0o755, f"{name} is root-owned 0755")

    # Every ELF file finds its loader and every library it needs inside the image.
    libdir = os.path.join(rootfs, "usr", "lib", "x86_64-linux-gnu")
    elves = []
    for dirpath, _, names in os.walk(rootfs):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        elves.append(p)
    missing = []
    for elf in elves:
        interp = re.search(r"Requesting program interpreter: ([^\]]+)\]", readelf(["-l"], elf))
        if interp and not inside(rootfs, interp.group(1)):
            missing.append(f"{elf}: loader {interp.group(1)}")
        for needed in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf(["-d"], elf)):
            if not inside(rootfs, "/usr/lib/x86_64-linux-gnu/" + needed):
                missing.append(f"{os.path.relpath(elf, rootfs)} needs {needed}")
    check(not missing, f"every ELF file's loader and libraries are in the image ({len(elves)} files) {missing[:5]}")
    check(os.path.isdir(libdir), "/usr/lib/x86_64-linux-gnu exists")

    # Users, writable paths, data.
    with open(os.path.join(rootfs, "etc", "passwd")) as f:
        passwd = {l.split(":")[0]: l.strip().split(":") for l in f if l.strip()}
    check(passwd.get("podgate", [None] * 4)[2:4] == ["10001", "10001"], "passwd: podgate is 10001:10001")
    check(passwd.get("nobody", [None] * 4)[2] == "65534", "passwd: nobody is 65534")
    with open(os.path.join(rootfs, "etc", "group")) as f:
        check(any(l.startswith("podgate:x:10001:") for l in f), "group: podgate is 10001")
    with open(os.path.join(rootfs, "etc", "nsswitch.conf")) as f:
        check(re.search(r"^hosts:\s+files dns", f.read(), re.M), "nsswitch.conf: hosts files dns")
    st = os.stat(os.path.join(rootfs, "var", "lib", "podgate"))
    check((st.st_uid, st.st_gid, st.st_mode & 0o7777) == (UID, UID, 0o750),
          "/var/lib/podgate is 10001:10001 0750")
    st = os.stat(os.path.join(rootfs, "tmp"))
    check(st.st_mode & 0o7777 == 0o1777, "/tmp is 1777")
    check(os.path.getsize(os.path.join(rootfs, "etc/ssl/certs/ca-certificates.crt")) > 10000,
          "CA certificates bundle present")
    check(inside(rootfs, "/usr/lib/ssl/cert.pem") is not None, "OpenSSL's default cert.pem resolves")
    for tz in ["UTC", "Europe/Berlin", "America/New_York"]:
        p = inside(rootfs, f"/usr/share/zoneinfo/{tz}")
        check(p is not None and open(p, "rb").read(4) == b"TZif", f"zoneinfo {tz}")
    check(os.path.getsize(os.path.join(rootfs, "usr/share/podgate/web/index.html")) > 0,
          "the terminal page is at /usr/share/podgate/web")
    for d in ["proc", "dev", "sys"]:
        check(os.path.isdir(os.path.join(rootfs, d)), f"mount point /{d}")


def check_sbom(rootfs, build_dir, version):
    inner = os.path.join(rootfs, "usr/share/doc/podgate/sbom.spdx.json")
    outer = os.path.join(build_dir, "image", "podgate.spdx.json")
    with open(inner, "rb") as a, open(outer, "rb") as b:
        check(a.read() == b.read(), "the SBOM inside equals build/image/podgate.spdx.json")
    with open(inner) as f:
        sbom = json.load(f)
    check(sbom.get("spdxVersion") == "SPDX-2.3" and sbom.get("dataLicense") == "CC0-1.0"
          and sbom.get("SPDXID") == "SPDXRef-DOCUMENT", "SPDX 2.3 document header")
    check(sbom.get("documentNamespace", "").startswith("https://"), "document namespace is a URI")
    ids = [e["SPDXID"] for e in sbom["packages"] + sbom["files"]]
    check(len(ids) == len(set(ids)), "SPDX ids are unique")
    idset = set(ids) | {"SPDXRef-DOCUMENT"}
    check(all(r["spdxElementId"] in idset and r["relatedSpdxElement"] in idset
              for r in sbom["relationships"]), "relationships name existing elements")
    files = {e["fileName"][2:]: e for e in sbom["files"]}

    # Every regular file but the SBOM itself, with its real checksums; every .so (regular or
    # link) resolves to a listed file.
    unlisted, wrong, sos = [], [], []
    for dirpath, _, names in os.walk(rootfs):
        for n in names:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, rootfs)
            if ".so" in n:
                real = inside(rootfs, "/" + rel)
                sos.append(rel)
                if real is None or os.path.relpath(real, rootfs) not in files:
                    unlisted.append(rel)
                continue
            if os.path.islink(p) or rel == "usr/share/doc/podgate/sbom.spdx.json":
                continue
            if rel not in files:
                unlisted.append(rel)
                continue
            with open(p, "rb") as f:
                sha = hashlib.sha256(f.read()).hexdigest()
            sums = {c["algorithm"]: c["checksumValue"] for c in files[rel]["checksums"]}
            if sums.get("SHA256") != sha or "SHA1" not in sums:
                wrong.append(rel)
    check(len(sos) > 50, f"the image holds shared libraries ({len(sos)})")
    check(not unlisted, f"the SBOM lists every file and every .so in the root (unlisted: {unlisted[:5]})")
    check(not wrong, f"the SBOM's checksums match the files ({wrong[:5]})")

    packages = {p["SPDXID"]: p for p in sbom["packages"]}
    podgate = packages.get("SPDXRef-Package-podgate", {})
    check(podgate.get("versionInfo") == version and podgate.get("licenseDeclared") == "Apache-2.0",
          "podgate package: version and Apache-2.0")
    owned = set(podgate.get("hasFiles", []))
    for name in BINARIES:
        entry = files.get(f"usr/bin/{name}")
        check(entry is not None and entry["SPDXID"] in owned, f"SBOM: {name} belongs to podgate")
    debs = [p for p in sbom["packages"] if p["SPDXID"].startswith("SPDXRef-Package-deb-")]
    names = {p["name"] for p in debs}
    check({"libc6", "libgrpc29", "libssl3", "tzdata", "ca-certificates", "libsqlite3-0"} <= names,
          f"SBOM: the Debian packages include libc6, libgrpc29, libssl3, tzdata, ca-certificates, libsqlite3-0")
    bad_versions = []
    for p in debs:
        v = run(["dpkg-query", "-W", "-f=${Version}", p["name"]]).stdout
        if v != p["versionInfo"]:
            bad_versions.append((p["name"], p["versionInfo"], v))
        purl = p["externalRefs"][0]["referenceLocator"]
        if not purl.startswith(f"pkg:deb/debian/{urllib.parse.quote(p['name'])}@"):
            bad_versions.append((p["name"], purl))
    check(not bad_versions, f"SBOM: Debian package versions and purls as dpkg has them {bad_versions[:3]}")
    grpc = next((p for p in debs if p["name"] == "libgrpc29"), {})
    check(grpc.get("licenseDeclared") == "Apache-2.0", "SBOM: libgrpc29 declared Apache-2.0 (its copyright file)")
    libc_so = files.get("usr/lib/x86_64-linux-gnu/libc.so.6")
    libc = next((p for p in debs if p["name"] == "libc6"), {})
    check(libc_so is not None and libc_so["SPDXID"] in libc.get("hasFiles", []), "SBOM: libc.so.6 belongs to libc6")
    codes_ok = True
    sha1 = {e["SPDXID"]: next(c["checksumValue"] for c in e["checksums"] if c["algorithm"] == "SHA1")
            for e in sbom["files"]}
    for p in sbom["packages"]:
        if p.get("filesAnalyzed"):
            code = hashlib.sha1("".join(sorted(sha1[f] for f in p["hasFiles"])).encode()).hexdigest()
            codes_ok &= p["packageVerificationCode"]["packageVerificationCodeValue"] == code
    check(codes_ok, "SBOM: package verification codes match their files")
    owners = [f for p in sbom["packages"] for f in p.get("hasFiles", [])]
    check(sorted(owners) == sorted(files[k]["SPDXID"] for k in files),
          "SBOM: every file belongs to exactly one package")
    # Required SPDX 2.3 fields, and licence expressions that parse against the SPDX licence
    # list (with npm's own spdx-expression-parse, which Debian's npm ships).
    check(sbom["creationInfo"].get("created") and sbom["creationInfo"].get("creators"),
          "SBOM: creationInfo has created and creators")
    check(all(p.get("name") and p.get("downloadLocation") and "filesAnalyzed" in p and
              (not p["filesAnalyzed"] or p.get("packageVerificationCode"))
              for p in sbom["packages"]), "SBOM: every package has name, downloadLocation, filesAnalyzed")
    check(all(f.get("fileName", "").startswith("./") and
              any(c["algorithm"] == "SHA1" for c in f.get("checksums", [])) for f in sbom["files"]),
          "SBOM: every file has a ./ name and a SHA1 checksum")
    refs = {e["licenseId"] for e in sbom.get("hasExtractedLicensingInfos", [])}
    exprs = sorted({p[k] for p in sbom["packages"] for k in ("licenseDeclared", "licenseConcluded")
                    if p.get(k) not in (None, "NOASSERTION", "NONE")})
    check(all(r in refs for e in exprs for r in re.findall(r"LicenseRef-[A-Za-z0-9.-]+", e)),
          "SBOM: every LicenseRef is defined in hasExtractedLicensingInfos")
    parser = "/usr/lib/node_modules/npm/node_modules/spdx-expression-parse"
    if shutil.which("node") and os.path.isdir(parser):
        r = run(["node", "-e", f"const p=require({json.dumps(parser)});"
                 "for (const e of JSON.parse(process.argv[1])) {"
                 "try { p(e) } catch (err) { console.log(e + ': ' + err.message) } }",
                 json.dumps(exprs)])
        check(r.returncode == 0 and not r.stdout.strip(),
              f"SBOM: the {len(exprs)} licence expressions are valid SPDX ({r.stdout.strip()} {r.stderr.strip()[-200:]})")
    else:
        print(f"note: {parser} is missing; licence expressions not parsed")
    npm = [p["name"] for p in sbom["packages"] if p["SPDXID"].startswith("SPDXRef-Package-npm-")]
    check("@xterm/xterm" in npm, f"SBOM: the page's bundled npm packages ({npm})")


def check_podman_load(archive, work, image_id, version):
    store = ["podman", "--root", os.path.join(work, "storage"), "--runroot",
             os.path.join(work, "run"), "--storage-driver", "vfs"]
    r = run(store + ["load", "-i", archive])
    check(r.returncode == 0 and "Loaded image" in r.stdout,
          f"podman load -i into a private storage root ({r.stdout.strip()} {r.stderr.strip()[-300:]})")
    r = run(store + ["image", "inspect", f"podgate:{version}"])
    if check(r.returncode == 0, f"podman knows podgate:{version} after the load {r.stderr.strip()[-200:]}"):
        info = json.loads(r.stdout)[0]
        check(info["Id"] == image_id, f"podman's image id is build/image/image-id ({info['Id']})")
        check(info["Config"].get("User") == "10001:10001", "podman sees user 10001:10001")
    run(store + ["rmi", "--all", "--force"])


# ---- reproducible --------------------------------------------------------------------------

def test_reproducible(args):
    need_root()
    archive = archive_path(args.build_dir)
    record = build_record(os.path.join(args.build_dir, "image"))
    out = tempfile.mkdtemp(prefix="podgate-image-again-")
    try:
        # Stamped as the first build was (a commit made since moves neither).
        env = dict(os.environ, PODGATE_IMAGE_DIR=out, PODGATE_IMAGE_REVISION=record["revision"],
                   SOURCE_DATE_EPOCH=str(record["source_date_epoch"]))
        r = run(["bash", os.path.join(REPO, "tools/image/build.sh"), args.build_dir], env=env)
        print(r.stdout + r.stderr)
        if check(r.returncode == 0, "a second build into another folder succeeds"):
            again_record = build_record(out)
            same = ("image_id", "tag", "version", "revision", "source_date_epoch", "created",
                    "source_url", "source_dir")
            check({k: again_record.get(k) for k in same} == {k: record.get(k) for k in same},
                  f"the second build records the same stamp ({again_record})")
            check(again_record.get("epoch_from") == "environment",
                  "the second build took SOURCE_DATE_EPOCH from the environment")
            again = os.path.join(out, "podgate.oci.tar")
            digest = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()
            check(digest(again) == digest(archive),
                  f"the second archive is byte-identical ({digest(again)[:16]} vs {digest(archive)[:16]})")
            layers = [json.loads(run(["skopeo", "inspect", f"oci-archive:{p}"]).stdout)["Layers"]
                      for p in (archive, again)]
            check(layers[0] == layers[1], f"same layer digest {layers[0]}")
            with open(os.path.join(out, "podgate.spdx.json"), "rb") as a, \
                    open(os.path.join(args.build_dir, "image", "podgate.spdx.json"), "rb") as b:
                check(a.read() == b.read(), "same SBOM")
        check_build_refusals(args.build_dir, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    finish()


def check_build_refusals(build_dir, work):
    """build.sh refuses, with one line and before building, a revision or epoch that is not one,
    and a build tree without podgate-probe (required: the chart's probes run it)."""
    script = os.path.join(REPO, "tools/image/build.sh")
    out = os.path.join(work, "refused")
    for env, want in (({"PODGATE_IMAGE_REVISION": "main"}, "PODGATE_IMAGE_REVISION must be a 40-hex commit"),
                      ({"SOURCE_DATE_EPOCH": "yesterday"}, "SOURCE_DATE_EPOCH must be seconds")):
        r = run(["bash", script, build_dir], env=dict(os.environ, PODGATE_IMAGE_DIR=out, **env))
        check(r.returncode == 1 and r.stderr.startswith(f"image: {want}") and
              r.stderr.count("\n") == 1 and not os.path.exists(os.path.join(out, "podgate.oci.tar")),
              f"build.sh refuses {env} with one line ({r.stderr.strip()!r})")
    # A build tree holding every binary but the probe.
    partial = os.path.join(work, "partial")
    for rel in ["services/edge/podgate-edge", "services/exec/podgate-exec",
                "services/policy/podgate-policy", "services/audit/podgate-audit",
                "services/audit/podgate-audit-cli"]:
        os.makedirs(os.path.dirname(os.path.join(partial, rel)), exist_ok=True)
        os.symlink(os.path.join(build_dir, rel), os.path.join(partial, rel))
    r = run(["bash", script, partial], env=dict(os.environ, PODGATE_IMAGE_DIR=out))
    check(r.returncode == 1 and f"image: {partial}/tools/probe/podgate-probe is missing" in r.stderr
          and not os.path.exists(os.path.join(out, "podgate.oci.tar")),
          f"build.sh refuses a build without podgate-probe ({r.stderr.strip()[-200:]!r})")


# ---- smoke ---------------------------------------------------------------------------------

# Runs as root in a new mount namespace: the root read-only, scratch file systems, then the
# command chrooted as uid/gid 10001 (unshare drops supplementary groups with --setgid).
SANDBOX = r"""
set -eu
rootfs=$1 mnt=$2 config=$3 uid=$4
shift 4
mount --bind "$rootfs" "$mnt"
# PODGATE_SANDBOX_RW=1: the control run of the read-only check, root writable.
[ "${PODGATE_SANDBOX_RW:-0}" = 1 ] || mount -o remount,bind,ro "$mnt"
mount -t tmpfs -o mode=1777,size=64m tmpfs "$mnt/tmp"
mount -t tmpfs -o mode=0750,uid=10001,gid=10001,size=64m tmpfs "$mnt/var/lib/podgate"
mount -t tmpfs -o mode=0755,size=1m tmpfs "$mnt/dev"
for d in null zero random urandom; do
  : >"$mnt/dev/$d"
  mount --bind "/dev/$d" "$mnt/dev/$d"
done
mount -t proc proc "$mnt/proc"
# As a container runtime does (runc mounts sysfs read-only): without it glibc's CPU count
# fails with ENOENT, and gRPC 1.51 can report that stale errno as a failed connect (it reads
# errno after other calls; fixed upstream by grpc/grpc#35064, "Defend against connect errno
# being overwritten").
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$mnt/sys"
if [ -n "$config" ]; then
  mkdir "$mnt/tmp/config"
  cp -r "$config/." "$mnt/tmp/config/"
  chmod -R a+rX "$mnt/tmp/config"
fi
if [ "${PODGATE_SANDBOX_RW:-0}" != 1 ] && touch "$mnt/.podgate-write-check" 2>/dev/null; then
  echo "sandbox: the image's root is writable" >&2
  exit 97
fi
exec unshare --root="$mnt" --wd=/tmp --setuid="$uid" --setgid="$uid" -- "$@"
"""


class Sandbox:
    def __init__(self, rootfs, work):
        self.rootfs = rootfs
        self.work = work
        self.mnt = os.path.join(work, "mnt")
        os.makedirs(self.mnt, exist_ok=True)
        self.procs = []

    def command(self, argv, config="", uid=UID):
        return ["unshare", "--mount", "--propagation", "private", "--", "bash", "-c", SANDBOX,
                "sandbox", self.rootfs, self.mnt, config, str(uid), *argv]

    def run(self, argv, config="", timeout=60, uid=UID):
        return run(self.command(argv, config, uid), timeout=timeout)

    def start(self, name, argv, config=""):
        log = open(os.path.join(self.work, f"{name}.log"), "w+")
        proc = subprocess.Popen(self.command(argv, config), stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((name, proc, log))
        return proc, log

    def stop(self):
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for name, proc, log in self.procs:
            try:
                code = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            log.close()
            yield name, code


def wait_log(proc, log, msg, timeout=30):
    """The first JSON log line whose msg is `msg`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        log.seek(0)
        for line in log.read().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") == msg:
                return entry
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    log.seek(0)
    sys.exit(f"no '{msg}' log line (exit {proc.poll()}):\n{log.read()[-3000:]}")


def http_get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read().decode("utf-8", "replace")


def status_field(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].split()
    return None


def make_pki(d):
    """A CA, a server certificate for localhost and 127.0.0.1, a client certificate, and a client
    certificate of another CA, made with the openssl command as tests/support/test_pki.cc makes
    the C++ tests' (EC P-256, two days)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")

    def openssl(*argv):
        r = run(["openssl", *argv], cwd=d)
        if r.returncode != 0:
            sys.exit(f"openssl {' '.join(argv)} failed: {r.stderr}")

    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-days", "2", "-subj", f"/CN=test-{ca}", "-keyout",
                f"{ca}.key", "-out", f"{ca}.crt")
    for name, ca, ext in (("server", "ca", ["-extfile", "server.ext"]), ("client", "ca", []),
                          ("wrong-client", "other-ca", [])):
        cn = "localhost" if name == "server" else f"podgate-{name}"
        openssl("req", *ec, "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-days", "2", *ext, "-out", f"{name}.crt")
    for name in os.listdir(d):
        if name.endswith((".key", ".csr", ".srl", ".ext")) and name not in (
                "server.key", "client.key", "wrong-client.key"):
            os.remove(os.path.join(d, name))


def check_probe_mtls(box, work, policy_doc):
    """The image's podgate-probe against a policy from the image that requires client
    certificates (--tls_cert, --tls_key, --tls_client_ca): SERVING with the client certificate of
    the policy's CA; exit 1 with one line naming the failure with another CA's certificate or
    none."""
    pki = os.path.join(work, "config-policy-mtls")
    os.makedirs(pki)
    make_pki(pki)
    with open(os.path.join(pki, "policy.yaml"), "w") as f:
        f.write(policy_doc)
    proc, log = box.start("policy-mtls", [
        "/usr/bin/podgate-policy", "--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
        "--drain_timeout=2s", "--policy_file=/tmp/config/policy.yaml",
        "--tls_cert=/tmp/config/server.crt", "--tls_key=/tmp/config/server.key",
        "--tls_client_ca=/tmp/config/ca.crt"], pki)
    port = wait_log(proc, log, "serving")["grpc_port"]
    print(f"policy with mutual TLS: pid {proc.pid}, gRPC {port}")
    address = f"127.0.0.1:{port}"
    probe = ["/usr/bin/podgate-probe", f"--address={address}", "--service=policy",
             "--ca=/tmp/config/ca.crt", "--timeout=3s"]
    # The image's probe runs inside the image, the PEM files in /tmp/config as a mounted Secret.
    r = box.run(probe + ["--cert=/tmp/config/client.crt", "--key=/tmp/config/client.key"], pki)
    check(r.returncode == 0 and r.stdout.strip() ==
          f'podgate-probe: {address} service "policy": SERVING',
          f"policy over mTLS: the image's podgate-probe with the CA's client certificate says "
          f"SERVING (exit {r.returncode}: {r.stdout.strip()} {r.stderr.strip()})")
    for what, extra in (("a client certificate of another CA",
                         ["--cert=/tmp/config/wrong-client.crt", "--key=/tmp/config/wrong-client.key"]),
                        ("no client certificate", [])):
        r = box.run(probe + extra, pki)
        err = r.stderr.strip()
        check(r.returncode == 1 and r.stdout == "" and "\n" not in err and
              err.startswith(f'podgate-probe: {address} service "policy": UNAVAILABLE'),
              f"policy over mTLS: the image's podgate-probe with {what} exits 1 with one line "
              f"(exit {r.returncode}: {err!r})")
    check(proc.poll() is None, "policy over mTLS still runs after the refused handshakes")


def test_smoke(args):
    need_root()
    if run(["unshare", "--mount", "true"]).returncode != 0:
        print("skipped: unshare --mount is not permitted here")
        sys.exit(77)
    archive = archive_path(args.build_dir)
    work = tempfile.mkdtemp(prefix="podgate-image-smoke-")
    os.chmod(work, 0o755)
    box = None
    kubesim = None
    try:
        rootfs = unpack(archive, work)
        box = Sandbox(rootfs, work)

        # A process from the image cannot write to / even as uid 0 (the root is read-only; the
        # sandbox itself also refuses to start, exit 97, when it could write there). The control:
        # the same command with the root mounted writable creates the database.
        audit_ro = ["/usr/bin/podgate-audit", "--grpc_address=127.0.0.1:0",
                    "--metrics_address=127.0.0.1:0", "--store=sqlite:///podgate-ro.db",
                    "--chain_id=ro", "--drain_timeout=1s"]
        r = box.run(audit_ro, uid=0)
        check(r.returncode not in (0, 97) and "unable to open database file" in r.stderr,
              f"audit from the image, as root, cannot create a database in / (exit {r.returncode}: "
              f"{(r.stdout + r.stderr).strip()[-300:]})")
        control = subprocess.Popen(box.command(audit_ro, uid=0), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True,
                                   env=dict(os.environ, PODGATE_SANDBOX_RW="1"))
        created = False
        for _ in range(100):
            created = os.path.exists(os.path.join(rootfs, "podgate-ro.db"))
            if created or control.poll() is not None:
                break
            time.sleep(0.1)
        control.terminate()
        control.communicate(timeout=20)
        check(created, "control: with the root writable the same command creates /podgate-ro.db")
        if created:
            os.remove(os.path.join(rootfs, "podgate-ro.db"))

        # kubesim on this side (exec reaches it over loopback) with one namespace and pod.
        ks = os.path.join(work, "kubesim")
        os.makedirs(ks)
        with open(os.path.join(ks, "tokens.csv"), "w") as f:
            f.write(f"{hashlib.sha256(os.urandom(16)).hexdigest()},podgate-exec,1001\n")
        with open(os.path.join(ks, "cluster.yaml"), "w") as f:
            f.write("namespaces:\n  - name: app-shop\npods:\n  - name: web-1\n    namespace: app-shop\n"
                    "    containers:\n      - name: app\n        image: shop/web:1\naccess:\n"
                    "  - user: podgate-exec\n    verbs: [get, list, create]\n"
                    "    resources: [pods, pods/exec, namespaces]\n    namespaces: [\"*\"]\n")
        ks_log = open(os.path.join(work, "kubesim.log"), "w+")
        kubesim = subprocess.Popen([args.kubesim, "--port=0", f"--cluster={ks}/cluster.yaml",
                                    f"--token_file={ks}/tokens.csv", f"--state_dir={ks}",
                                    "--kubeconfig_user=podgate-exec"],
                                   stdout=ks_log, stderr=subprocess.STDOUT)
        wait_log(kubesim, ks_log, "serving")
        with open(os.path.join(ks, "kubeconfig")) as f:
            kubeconfig = f.read()
        ca = re.search(r"certificate-authority: (\S+)", kubeconfig).group(1)
        with open(ca, "rb") as f:
            ca_data = base64.b64encode(f.read()).decode()
        kubeconfig = kubeconfig.replace(f"certificate-authority: {ca}",
                                        f"certificate-authority-data: {ca_data}")

        # Configuration each service finds at /tmp/config inside.
        def config_dir(name, files):
            d = os.path.join(work, f"config-{name}")
            os.makedirs(d)
            for fname, content in files.items():
                with open(os.path.join(d, fname), "w") as f:
                    f.write(content)
            return d

        jwt_key = hashlib.sha256(os.urandom(32)).hexdigest()
        with open(args.policy) as f:
            policy_doc = f.read()
        common = ["--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0", "--drain_timeout=2s"]
        jwt = ["--jwt_issuer=https://podgate.test", "--jwt_algorithm=HS256",
               "--jwt_key_file=/tmp/config/jwt.key", "--jwt_audience=podgate"]
        ports = {}

        def start(name, flags, files=None):
            argv = [f"/usr/bin/podgate-{name}", *common, *flags]
            proc, log = box.start(name, argv, config_dir(name, files) if files else "")
            serving = wait_log(proc, log, "serving")
            ports[name] = (serving["grpc_port"], serving["metrics_port"], proc)
            print(f"{name}: pid {proc.pid}, gRPC {serving['grpc_port']}, metrics {serving['metrics_port']}")
            return proc, log

        start("audit", ["--store=sqlite:///var/lib/podgate/audit.db", "--chain_id=image-smoke"])
        audit = f"--audit_address=127.0.0.1:{ports['audit'][0]}"
        # policy reaches audit by name: localhost from the image's /etc/hosts (nsswitch.conf).
        start("policy", ["--policy_file=/tmp/config/policy.yaml",
                         f"--audit_address=localhost:{ports['audit'][0]}"], {"policy.yaml": policy_doc})
        policy = f"--policy_address=127.0.0.1:{ports['policy'][0]}"
        start("exec", ["--kubeconfig=/tmp/config/kubeconfig", policy, audit, *jwt],
              {"kubeconfig": kubeconfig, "jwt.key": jwt_key})
        edge_proc, edge_log = start(
            "edge", ["--http_address=127.0.0.1:0", "--allowed_origins=http://127.0.0.1",
                     "--web_root=/usr/share/podgate/web",
                     f"--exec_address=127.0.0.1:{ports['exec'][0]}", policy, audit, *jwt],
            {"jwt.key": jwt_key})
        http_port = wait_log(edge_proc, edge_log, "http serving")["http_port"]

        for name, (grpc_port, metrics_port, proc) in ports.items():
            # Health from this side over loopback (the network namespace is shared).
            answer = ""
            for _ in range(100):
                r = run([args.health, str(grpc_port)])
                answer = r.stdout.strip()
                if r.returncode == 0:
                    break
                time.sleep(0.2)
            check(answer == "SERVING", f"{name}: grpc.health.v1 SERVING from the host ({answer})")
            r = box.run(["/usr/bin/podgate-probe", f"--address=127.0.0.1:{grpc_port}"])
            check(r.returncode == 0 and r.stdout.strip() ==
                  f'podgate-probe: 127.0.0.1:{grpc_port} service "": SERVING',
                  f"{name}: the image's podgate-probe, inside, says SERVING "
                  f"({r.stdout.strip()} {r.stderr.strip()})")
            status, body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
            check(status == 200 and f"podgate_{name}_" in body,
                  f"{name}: /metrics serves podgate_{name}_* metrics")
            # The process runs as 10001:10001 with no other groups, chrooted, root read-only.
            uids, gids = status_field(proc.pid, "Uid"), status_field(proc.pid, "Gid")
            groups = status_field(proc.pid, "Groups")
            check(uids == [str(UID)] * 4 and gids == [str(UID)] * 4 and groups == [],
                  f"{name}: runs as uid/gid 10001 without groups (Uid {uids}, Gid {gids}, Groups {groups})")
            check(os.path.exists(f"/proc/{proc.pid}/root/usr/bin/podgate-{name}") and
                  not os.path.lexists(f"/proc/{proc.pid}/root/bin/sh"),
                  f"{name}: chrooted into the image (its root has podgate-{name} and no /bin/sh)")
            with open(f"/proc/{proc.pid}/mountinfo") as f:
                root_mounts = [l.split() for l in f if l.split()[4] == "/"]
            check(root_mounts and "ro" in root_mounts[-1][5].split(","),
                  f"{name}: its / is mounted read-only ({root_mounts[-1][5] if root_mounts else None})")
            with open(f"/proc/{proc.pid}/root/usr/bin/podgate-{name}", "rb") as a, \
                    open(os.path.join(rootfs, f"usr/bin/podgate-{name}"), "rb") as b:
                check(a.read(64) == b.read(64), f"{name}: /usr/bin/podgate-{name} is the unpacked image's")

        # edge serves the page from the image.
        status, body = http_get(f"http://127.0.0.1:{http_port}/")
        with open(os.path.join(rootfs, "usr/share/podgate/web/index.html")) as f:
            check(status == 200 and body == f.read(), "edge serves /usr/share/podgate/web/index.html")
        status, _ = http_get(f"http://127.0.0.1:{http_port}/readyz")
        check(status == 200, "edge /readyz answers 200 with its backends up")
        r = box.run(["/usr/bin/podgate-probe", f"--http=http://127.0.0.1:{http_port}/readyz"])
        check(r.returncode == 0, f"edge: the image's podgate-probe --http /readyz says healthy "
                                 f"({r.stdout.strip()} {r.stderr.strip()})")
        check_probe_mtls(box, work, policy_doc)
        # audit writes its SQLite database into the writable /var/lib/podgate.
        audit_pid = ports["audit"][2].pid
        check(os.path.exists(f"/proc/{audit_pid}/root/var/lib/podgate/audit.db"),
              "audit's SQLite database is in /var/lib/podgate")

        # A command through the deployment: podgate-run on this side -> exec (image) -> policy
        # (image) -> kubesim -> audit (image). The example policy lets developers run `free`
        # in app-* and refuses `cat /etc/shadow`.
        if args.run and args.token:
            key_file = os.path.join(work, "config-exec", "jwt.key")
            token = run([args.token, f"--key_file={key_file}", "--algorithm=HS256",
                         "--issuer=https://podgate.test", "--audience=podgate", "--subject=dana",
                         "--groups=developers", "--ttl=10m"]).stdout.strip()
            env = dict(os.environ, PODGATE_TOKEN=token)
            base = [args.run, f"--exec_address=127.0.0.1:{ports['exec'][0]}", "--namespace=app-shop",
                    "--pod=web-1", "--timeout=60s"]
            r = run(base + ["--", "free", "-m"], env=env, stdin=subprocess.DEVNULL, timeout=90)
            check(r.returncode == 0 and "Mem:" in r.stdout,
                  f"podgate-run free -m through the image's exec and policy (exit {r.returncode}: "
                  f"{r.stdout.strip()[:200]} {r.stderr.strip()[-300:]})")
            r = run(base + ["--", "cat", "/etc/shadow"], env=env, stdin=subprocess.DEVNULL, timeout=90)
            check(r.returncode != 0 and "root:" not in r.stdout,
                  f"podgate-run cat /etc/shadow is refused (exit {r.returncode}: {r.stderr.strip()[-200:]})")

        # podgate-audit-cli from the image against audit: query and verify.
        server = f"--server=127.0.0.1:{ports['audit'][0]}"
        r = box.run(["/usr/bin/podgate-audit-cli", server, "query", "--format=json"])
        records = []
        for line in r.stdout.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
        check(r.returncode == 0 and records,
              f"podgate-audit-cli query from the image lists audit's records ({len(records)}; exit "
              f"{r.returncode}: {r.stdout.strip()[:300]} {r.stderr.strip()[-300:]})")
        sources = {rec.get("event", {}).get("source_service") for rec in records}
        check("policy" in sources, f"audit holds policy's load record, sent to localhost ({sources})")
        if args.run and args.token:
            dana = [rec for rec in records if "dana" in json.dumps(rec)]
            kinds = {rec.get("event", {}).get("kind") for rec in dana}
            check(len(dana) >= 2 and any("DECISION" in str(k) for k in kinds),
                  f"audit holds dana's commands and their decisions ({len(dana)} records, {kinds})")
        r = box.run(["/usr/bin/podgate-audit-cli", server, "verify"])
        check(r.returncode == 0, f"podgate-audit-cli verify from the image (exit {r.returncode}: "
                                 f"{r.stdout.strip()[-300:]} {r.stderr.strip()[-300:]})")
        for name, code in box.stop():
            check(code == 0, f"{name}: stops cleanly on SIGTERM (exit {code})")
        box = None
    finally:
        if box is not None:
            list(box.stop())
        if kubesim is not None:
            kubesim.terminate()
            kubesim.wait(timeout=20)
        for log in sorted(glob.glob(os.path.join(work, "*.log"))):
            if failures:
                with open(log) as f:
                    print(f"---- {os.path.basename(log)}\n{f.read()[-2000:]}")
        shutil.rmtree(work, ignore_errors=True)
    finish()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["archive", "reproducible", "smoke"])
    parser.add_argument("build_dir")
    parser.add_argument("--health")
    parser.add_argument("--kubesim")
    parser.add_argument("--policy")
    parser.add_argument("--run", help="podgate-run (a client on this side)")
    parser.add_argument("--token", help="podgate-token (mints the client's JWT)")
    args = parser.parse_args()
    args.build_dir = os.path.realpath(args.build_dir)
    {"archive": test_archive, "reproducible": test_reproducible, "smoke": test_smoke}[args.command](args)


if __name__ == "__main__":
    main()
