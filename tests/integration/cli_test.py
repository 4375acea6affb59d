#!/usr/bin/env python3
"""Every podgate binary follows the same command-line conventions (lib/runtime/flags.h).

For each binary: --help, -h and --helpfull print its own flags (a flag known to be that
binary's, with its PODGATE_* variable) on stdout and exit 0; --version prints
`<name> <version> (<commit>)` and exits 0; an unknown flag, a bad value, a missing value and a bad
environment value each exit 2 with exactly one line `<name>: ... (see --help)` on stderr. Also
checks that no podgate-* executable in the build directory is missing from the list.

usage: cli_test.py SOURCE_DIR BUILD_DIR VERSION PATH=OWN_FLAG...
"""
import os
import re
import subprocess
import sys

TYPED = re.compile(r"^  --([a-z0-9_]+) \((int|uint|duration|number)\b", re.M)


def run(args, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    # The binaries' own environment must not leak in (PODGATE_* from a developer's shell).
    for name in list(full_env):
        if name.startswith("PODGATE_") and name not in (env or {}):
            del full_env[name]
    r = subprocess.run(args, capture_output=True, text=True, timeout=30, env=full_env,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


class Checker:
    def __init__(self):
        self.failures = []
        self.checks = 0

    def expect(self, ok, what):
        self.checks += 1
        if not ok:
            self.failures.append(what)

    def one_error_line(self, name, label, result, expected_start):
        code, out, err = result
        self.expect(code == 2, f"{name} {label}: exit {code}, want 2 (stderr {err!r})")
        self.expect(out == "", f"{name} {label}: stdout not empty: {out[:200]!r}")
        lines = err.splitlines()
        self.expect(len(lines) == 1 and err.endswith("\n"),
                    f"{name} {label}: want one stderr line, got {err!r}")
        self.expect(err.startswith(expected_start) and err.rstrip().endswith("(see --help)"),
                    f"{name} {label}: stderr {err!r}, want it to start with {expected_start!r} "
                    "and end with '(see --help)'")


def main(argv):
    source_dir, build_dir, version, specs = argv[1], argv[2], argv[3], argv[4:]
    c = Checker()
    in_git = subprocess.run(["git", "-C", source_dir, "rev-parse", "HEAD"],
                            capture_output=True).returncode == 0
    listed = set()
    for spec in specs:
        path, own_flag = spec.rsplit("=", 1)
        name = os.path.basename(path)
        listed.add(os.path.realpath(path))

        for help_flag in ("--help", "-h", "--helpfull"):
            code, out, err = run([path, help_flag])
            c.expect(code == 0, f"{name} {help_flag}: exit {code}, want 0 ({err.strip()!r})")
            c.expect(err == "", f"{name} {help_flag}: stderr not empty: {err[:300]!r}")
            c.expect(f"\n  --{own_flag} (" in out,
                     f"{name} {help_flag}: its own flag --{own_flag} is not listed")
            c.expect(f"env PODGATE_{own_flag.upper()})" in out,
                     f"{name} {help_flag}: PODGATE_{own_flag.upper()} is not named")
            c.expect("No flags matched" not in out, f"{name} {help_flag}: 'No flags matched'")
            c.expect("--flagfile" not in out, f"{name} {help_flag}: lists Abseil's --flagfile")
            c.expect("--version" in out and "--help, -h" in out,
                     f"{name} {help_flag}: does not mention --help/-h and --version")
        help_text = run([path, "--help"])[1]
        flags = re.findall(r"^  --([a-z0-9_]+) \(", help_text, re.M)
        c.expect(flags == sorted(flags), f"{name} --help: flags not sorted: {flags}")

        code, out, err = run([path, "--version"])
        c.expect(code == 0, f"{name} --version: exit {code}, want 0")
        commit = r"[0-9a-f]{12}" if in_git else r"[0-9A-Za-z._-]+"
        c.expect(re.fullmatch(rf"{re.escape(name)} {re.escape(version)} \({commit}\)\n", out)
                 is not None, f"{name} --version: {out!r}, want '{name} {version} (<commit>)'")

        c.one_error_line(name, "unknown flag", run([path, "--no_such_flag"]),
                         f"{name}: unknown flag --no_such_flag")
        c.one_error_line(name, "unknown flag with value", run([path, "--no_such_flag=1"]),
                         f"{name}: unknown flag --no_such_flag")
        typed = TYPED.search(help_text)
        c.expect(typed is not None, f"{name}: no int or duration flag to give a bad value")
        if typed:
            flag = typed.group(1)
            c.one_error_line(name, f"--{flag}=x", run([path, f"--{flag}=x"]),
                             f"{name}: --{flag}: 'x' is not a valid {typed.group(2)}")
            c.one_error_line(name, f"--{flag} without a value", run([path, f"--{flag}"]),
                             f"{name}: --{flag} needs a value")
            c.one_error_line(name, f"PODGATE_{flag.upper()}=x",
                             run([path], env={f"PODGATE_{flag.upper()}": "x"}),
                             f"{name}: environment variable PODGATE_{flag.upper()}")

    # Every podgate binary built is listed here (a new one must be added with its own flag).
    for sub in ("services", "tools"):
        for root, _, files in os.walk(os.path.join(build_dir, sub)):
            if "CMakeFiles" in root or "node_modules" in root:
                continue
            for f in files:
                p = os.path.join(root, f)
                if (f.startswith("podgate-") or f == "kubesim") and os.access(p, os.X_OK) \
                        and os.path.isfile(p) and "." not in f:
                    c.expect(os.path.realpath(p) in listed,
                             f"{p}: a podgate binary not checked by this test")

    if c.failures:
        print(f"FAIL cli conventions: {len(c.failures)} of {c.checks} checks")
        for f in c.failures:
            print("  - " + f)
        return 1
    print(f"ok cli conventions: {c.checks} checks over {len(specs)} binaries")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
