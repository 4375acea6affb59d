#!/usr/bin/env python3
"""Structure checks of deploy/docker/Dockerfile (no Docker engine is needed or used).

Usage: dockerfile_test.py <Dockerfile> [binary ...]

Checks that the build stage uses the project's install script and CMake/Ninja, that the
runtime stage is Debian 12, installs no build tools or -dev packages, copies only the four
binaries, ends as a numeric non-root user and leaves the root filesystem read-only friendly.
Given the built service binaries, it also checks that every shared library they link comes
from a package the runtime stage installs (or the Debian base image), using ldd and dpkg.
"""
import os
import re
import shutil
import subprocess
import sys

# Packages in debian:12-slim itself (Priority: required) that the binaries may link.
BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}
BUILD_TOOLS = re.compile(
    r"(build-essential|gcc|g\+\+|clang|cmake|ninja-build|make|ccache|pkg-config|git|"
    r"protobuf-compiler[-a-z]*|[a-z0-9.+-]+-dev)")
SERVICES = ("edge", "exec", "policy", "audit")


def parse(path):
    """Returns stages: [{'base','name','instructions': [(op, args)]}], joining continuations."""
    with open(path) as f:
        text = f.read()
    text = re.sub(r"\\\n", " ", text)
    stages, args = [], {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op = op.upper()
        rest = rest.strip()
        if op == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k] = v
            continue
        if op == "FROM":
            m = re.match(r"^(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            base = re.sub(r"\$\{(\w+)\}", lambda g: args.get(g.group(1), ""), m.group(1))
            stages.append({"base": base, "name": m.group(2), "instructions": []})
            continue
        stages[-1]["instructions"].append((op, rest))
    return stages


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    failures = []
    checks = 0

    def check(cond, msg):
        nonlocal checks
        checks += 1
        if not cond:
            failures.append(msg)

    stages = parse(argv[1])
    check(len(stages) >= 2, f"expected a multi-stage build, got {len(stages)} stage(s)")
    if len(stages) < 2:
        print("\n".join(failures))
        return 1
    build, runtime = stages[0], stages[-1]
    for s in stages:
        check(re.match(r"^debian:(12|bookworm)(-slim)?(@sha256:[0-9a-f]{64})?$", s["base"]),
              f"stage {s['name']}: base {s['base']} is not Debian 12")
    build_runs = " ".join(a for op, a in build["instructions"] if op == "RUN")
    check("tools/install-deps.sh" in build_runs, "build stage does not run tools/install-deps.sh")
    check("-G Ninja" in build_runs and "cmake --build" in build_runs,
          "build stage does not configure with CMake/Ninja and build")
    for s in SERVICES:
        check(f"podgate-{s}" in build_runs, f"build stage does not build podgate-{s}")
    check("podgate-audit-cli" in build_runs and "/out/usr/bin/podgate-audit-cli" in build_runs,
          "build stage does not build and install podgate-audit-cli")
    # Required, not optional: the chart's probes and its `helm test` Pod run /usr/bin/podgate-probe.
    check(re.search(r"--target [^&]*\bpodgate-probe\b", build_runs) is not None and
          "install -m 0755 /build/tools/probe/podgate-probe /out/usr/bin/" in build_runs and
          "if [ -f tools/probe" not in build_runs,
          "build stage does not always build and install podgate-probe")

    rt = runtime["instructions"]
    ops = [op for op, _ in rt]
    runs = [a for op, a in rt if op == "RUN"]
    installed = set()
    for r in runs:
        m = re.search(r"apt-get install\s+(.*?)(&&|$)", r)
        if m:
            installed |= {w for w in m.group(1).split() if not w.startswith("-")}
    check(installed, "runtime stage installs no runtime libraries")
    for pkg in sorted(installed):
        check(not BUILD_TOOLS.fullmatch(pkg), f"runtime stage installs build tool/dev package {pkg}")
    check(all("--no-install-recommends" in r for r in runs if "apt-get install" in r),
          "runtime apt-get install without --no-install-recommends")
    check(all("rm -rf /var/lib/apt/lists" in r for r in runs if "apt-get install" in r),
          "runtime stage keeps the apt lists")
    check("ADD" not in ops, "runtime stage uses ADD (use COPY; no remote fetches)")
    copies = [a for op, a in rt if op == "COPY"]
    check(copies and all(a.startswith(f"--from={build['name']}") for a in copies),
          f"runtime stage copies from outside the build stage: {copies}")
    check(all("/usr/bin/" in a or "/usr/share/podgate/" in a for a in copies),
          f"runtime copies more than the binaries and the page: {copies}")
    check(any("/usr/share/podgate/" in a for a in copies), "runtime stage lacks the web page")
    check("podgate-web" in build_runs, "build stage does not build the web page (podgate-web)")
    users = [a for op, a in rt if op == "USER"]
    check(users, "runtime stage has no USER")
    if users:
        m = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
        check(m and int(m.group(1)) > 0 and (m.group(2) is None or int(m.group(2)) > 0),
              f"runtime USER {users[-1]} is not a numeric non-root uid[:gid]")
        last_user = max(i for i, op in enumerate(ops) if op == "USER")
        check(all(op not in ("RUN", "COPY") for op in ops[last_user + 1:]),
              "runtime stage runs or copies after dropping to the non-root user")
    check("VOLUME" not in ops, "VOLUME in the runtime stage (the chart mounts volumes)")
    check(any(op in ("CMD", "ENTRYPOINT") for op in ops), "runtime stage has no CMD/ENTRYPOINT")

    # Package names exist in Debian (when apt-cache is available, as on Debian CI).
    if shutil.which("apt-cache") and installed:
        r = subprocess.run(["apt-cache", "show", "--no-all-versions", *sorted(installed)],
                           capture_output=True, text=True)
        found = set(re.findall(r"^Package: (\S+)$", r.stdout, re.M))
        check(found == installed, f"packages unknown to apt: {sorted(installed - found)}")

    # Every library the real binaries link is provided by the runtime stage's packages.
    linked = {}  # library path -> binaries linking it
    for binary in argv[2:]:
        check(os.path.exists(binary), f"binary {binary} does not exist")
        if not os.path.exists(binary):
            continue
        ldd = subprocess.run(["ldd", binary], capture_output=True, text=True)
        libs = re.findall(r"=>\s+(/\S+)", ldd.stdout)
        check(libs, f"{binary}: ldd found no shared libraries: {ldd.stderr}")
        for lib in libs:
            linked.setdefault(lib, []).append(os.path.basename(binary))
    if linked:
        # dpkg records merged-/usr paths either way: ask for every spelling in one call.
        candidates = {}
        for lib in linked:
            real = os.path.realpath(lib)
            for c in (lib, real, lib.replace("/lib/", "/usr/lib/", 1),
                      real.replace("/lib/", "/usr/lib/", 1)):
                candidates.setdefault(c, lib)
        r = subprocess.run(["dpkg", "-S", *sorted(candidates)], capture_output=True, text=True)
        owners = {}
        for line in r.stdout.splitlines():
            pkgs, _, path = line.partition(": ")
            if path in candidates:
                owners[candidates[path]] = pkgs.split(",")[0].split(":")[0].strip()
        # apt installs each listed package's dependencies too: those count as installed.
        provided = set(installed) | BASE_PACKAGES
        if shutil.which("apt-cache") and installed:
            r = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends",
                                "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
                                "--no-enhances", *sorted(installed)],
                               capture_output=True, text=True)
            for line in r.stdout.splitlines():
                line = line.strip()
                if line.startswith(("Depends:", "PreDepends:")):
                    line = line.split(":", 1)[1].strip()
                if line and not line.startswith("<") and ":" not in line and " " not in line:
                    provided.add(line)
        for lib, binaries in sorted(linked.items()):
            owner = owners.get(lib)
            check(owner in provided,
                  f"{', '.join(sorted(set(binaries)))} link {lib} from package {owner}, "
                  "which the runtime stage does not install")

    if failures:
        print(f"FAIL Dockerfile: {len(failures)} of {checks} checks failed")
        for m in failures:
            print("  - " + m)
        return 1
    print(f"ok Dockerfile: {checks} checks")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
