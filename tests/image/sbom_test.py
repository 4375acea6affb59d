#!/usr/bin/env python3
"""Unit tests of tools/image/sbom.py's parsers: Debian licence names to SPDX expressions, the
machine-readable copyright file, the manifest, the web page's package-lock.json."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools", "image"))
import sbom  # noqa: E402

SBOM_PY = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "image", "sbom.py")


class SpdxLicense(unittest.TestCase):
    def test_single_names(self):
        self.assertEqual(sbom.spdx_license("Apache-2.0"), "Apache-2.0")
        self.assertEqual(sbom.spdx_license("Expat"), "MIT")
        self.assertEqual(sbom.spdx_license("GPL-2+"), "GPL-2.0-or-later")
        self.assertEqual(sbom.spdx_license("LGPL-2.1"), "LGPL-2.1-only")
        self.assertEqual(sbom.spdx_license("BSD-3-clause"), "BSD-3-Clause")
        self.assertEqual(sbom.spdx_license("public-domain"), sbom.PUBLIC_DOMAIN)

    def test_or_and_with(self):
        self.assertEqual(sbom.spdx_license("LGPL-3+ or GPL-2+"),
                         "(LGPL-3.0-or-later OR GPL-2.0-or-later)")
        self.assertEqual(sbom.spdx_license("BSL-1.0 and MIT"), "(BSL-1.0 AND MIT)")
        self.assertEqual(sbom.spdx_license("GPL-2+ with Autoconf exception"),
                         "GPL-2.0-or-later WITH Autoconf-exception-2.0")

    def test_unknown_names_give_none(self):
        self.assertIsNone(sbom.spdx_license("Custom-regex"))
        self.assertIsNone(sbom.spdx_license("MIT or Custom"))
        self.assertIsNone(sbom.spdx_license("GPL-2+ with some exception"))


class Copyright(unittest.TestCase):
    DEP5 = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
            "Upstream-Name: x\n\n"
            "Files: debian/*\nCopyright: someone\nLicense: GPL-2+\n text\n .\n more\n\n"
            "Files: * src/*\nCopyright: 2020 Google\nLicense: Apache-2.0\n\n"
            "Files: third_party/*\nCopyright: other\nLicense: Custom-thing\n\n"
            "License: Custom-thing\n Permission is granted.\n")

    def test_files_star_paragraph_is_declared(self):
        declared, comment = sbom.parse_copyright(self.DEP5, "/x/copyright")
        self.assertEqual(declared, "Apache-2.0")
        self.assertIn("GPL-2+; Apache-2.0; Custom-thing", comment)

    def test_unknown_declared_licence_is_noassertion(self):
        text = self.DEP5.replace("License: Apache-2.0", "License: Custom-thing")
        declared, comment = sbom.parse_copyright(text, "/x/copyright")
        self.assertEqual(declared, "NOASSERTION")
        self.assertIn("'Custom-thing' has no SPDX identifier", comment)

    def test_free_form_file_is_noassertion(self):
        declared, comment = sbom.parse_copyright("This is the Debian package of x.\n", "/x/c")
        self.assertEqual(declared, "NOASSERTION")
        self.assertIn("not in the machine-readable copyright format", comment)


class Manifest(unittest.TestCase):
    def test_reads_pairs_and_refuses_bad_lines(self):
        with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as f:
            f.write("usr/lib/a.so\t/lib/a.so\n\n")
        try:
            self.assertEqual(sbom.read_manifest(f.name), {"usr/lib/a.so": "/lib/a.so"})
            with open(f.name, "a") as g:
                g.write("no-tab-here\n")
            with self.assertRaises(SystemExit) as cm:
                sbom.read_manifest(f.name)
            self.assertIn(":3: expected '<image path><TAB><host path>'", str(cm.exception))
        finally:
            os.unlink(f.name)


class NpmLock(unittest.TestCase):
    def test_runtime_dependencies_only(self):
        lock = {"lockfileVersion": 3, "packages": {
            "": {"name": "web"},
            "node_modules/@xterm/xterm": {"version": "5.5.0", "license": "MIT", "resolved": "u"},
            "node_modules/vite": {"version": "6.4.6", "license": "MIT", "dev": True},
            "node_modules/a/node_modules/b": {"version": "1.0.0"}}}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(lock, f)
        try:
            got = sbom.npm_packages(f.name)
        finally:
            os.unlink(f.name)
        self.assertEqual([(p["name"], p["version"], p["license"]) for p in got],
                         [("@xterm/xterm", "5.5.0", "MIT"), ("b", "1.0.0", "NOASSERTION")])


class Owners(unittest.TestCase):
    def test_merged_usr_paths_and_unowned_files(self):
        ok = subprocess.run([sys.executable, SBOM_PY, "owners"], input="/usr/lib/x86_64-linux-gnu/libc.so.6\n",
                            capture_output=True, text=True)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertEqual(ok.stdout.split(), ["libc6"])
        bad = subprocess.run([sys.executable, SBOM_PY, "owners"], input="/nonexistent/file\n",
                             capture_output=True, text=True)
        self.assertNotEqual(bad.returncode, 0)
        self.assertIn("no Debian package owns /nonexistent/file", bad.stderr)


if __name__ == "__main__":
    unittest.main()
