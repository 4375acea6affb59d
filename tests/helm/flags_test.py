#!/usr/bin/env python3
"""Every flag and PODGATE_* variable the chart gives a container is one its binary knows.

Renders the chart with each CI values file, collects the command, args and env of every
podgate container, and checks each `--flag` and each `PODGATE_FLAG` against the flags the real
binary lists in `--helpfull`. A renamed flag in a binary then fails here, not in a cluster.

usage: flags_test.py CHART_DIR VALUES_DIR BINARY...
"""
import os
import re
import subprocess
import sys

import yaml


def known_flags(binary):
    out = subprocess.run([binary, "--helpfull"], capture_output=True, text=True)
    return set(re.findall(r"^\s+--([a-z0-9_]+) \(", out.stdout + out.stderr, re.M))


def main(argv):
    chart, values_dir, binaries = argv[1], argv[2], argv[3:]
    flags = {os.path.basename(b): known_flags(b) for b in binaries}
    failures = []
    checked = 0
    for values in sorted(os.listdir(values_dir)):
        path = os.path.join(values_dir, values)
        r = subprocess.run(["helm", "template", "podgate", chart, "-f", path],
                           capture_output=True, text=True)
        if r.returncode != 0:
            failures.append(f"{values}: helm template failed: {r.stderr.strip()}")
            continue
        for doc in yaml.safe_load_all(r.stdout):
            if not doc or doc.get("kind") not in ("Deployment", "StatefulSet"):
                continue
            spec = doc["spec"]["template"]["spec"]
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                command = c.get("command") or []
                binary = os.path.basename(command[0]) if command else ""
                if binary not in flags:
                    continue
                for arg in command[1:] + (c.get("args") or []):
                    m = re.match(r"--([a-z0-9_]+)(=|$)", arg)
                    if not m:
                        continue
                    checked += 1
                    if m.group(1) not in flags[binary]:
                        failures.append(f"{values}: {binary} has no flag --{m.group(1)}")
                for env in c.get("env") or []:
                    name = env.get("name", "")
                    if name.startswith("PODGATE_"):
                        checked += 1
                        flag = name[len("PODGATE_"):].lower()
                        if flag not in flags[binary]:
                            failures.append(f"{values}: {binary} has no flag --{flag} ({name})")
    if checked == 0:
        failures.append("no podgate container flags found in the rendered chart")
    if failures:
        print(f"FAIL chart flags: {len(failures)} problems in {checked} flags")
        for f in sorted(set(failures)):
            print("  - " + f)
        return 1
    print(f"ok chart flags: {checked} flags known to their binaries")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
