#!/usr/bin/env python3
"""The SPDX 2.3 JSON SBOM of the podgate image's root (tools/image/build.sh), stdlib only.

  sbom.py owners < host-paths
      prints the Debian packages that own the given files, one a line, sorted.
  sbom.py generate --rootfs DIR --manifest FILE --version V --revision R --source URL
                   --created RFC3339 --out FILE [--exclude PATH]... [--web-lock package-lock.json]
      writes the SBOM of every regular file under DIR.

The manifest (written by build.sh) maps each image path that is a copy of a Debian file to
that file on this machine (`<image path>\t<host path>`); its package comes from `dpkg-query -S`
and its version from `dpkg-query -W`, the package's declared licence from the `Files: *`
paragraph of /usr/share/doc/<package>/copyright (machine-readable copyright files only;
NOASSERTION otherwise). Every other file is podgate's: the binaries, the terminal page (which
bundles the npm packages named in its package-lock.json), /etc files made by build.sh. Each
package has `filesAnalyzed: true`, its files (SHA-1 and SHA-256) and their verification code.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.parse

# Files that no package owns in dpkg's database but that one makes (update-ca-certificates).
GENERATED_BY = {"/etc/ssl/certs/ca-certificates.crt": "ca-certificates"}

PUBLIC_DOMAIN = "LicenseRef-public-domain"

# Debian copyright-format short names -> SPDX licence identifiers.
DEBIAN_TO_SPDX = {
    "apache-2.0": "Apache-2.0", "apache-2": "Apache-2.0",
    "bsd-2-clause": "BSD-2-Clause", "bsd-2": "BSD-2-Clause",
    "bsd-3-clause": "BSD-3-Clause", "bsd-3": "BSD-3-Clause", "bsd-4-clause": "BSD-4-Clause",
    "expat": "MIT", "mit": "MIT", "x11": "X11", "isc": "ISC", "zlib": "Zlib",
    "bsl-1.0": "BSL-1.0", "cc0-1.0": "CC0-1.0", "curl": "curl", "openssl": "OpenSSL",
    "openldap-2.8": "OLDAP-2.8", "mpl-1.1": "MPL-1.1", "mpl-2.0": "MPL-2.0",
    "gpl-2": "GPL-2.0-only", "gpl-2+": "GPL-2.0-or-later", "gpl-2.0+": "GPL-2.0-or-later",
    "gpl-3": "GPL-3.0-only", "gpl-3+": "GPL-3.0-or-later", "gplv3+": "GPL-3.0-or-later",
    "lgpl-2": "LGPL-2.0-only", "lgpl-2+": "LGPL-2.0-or-later",
    "lgpl-2.1": "LGPL-2.1-only", "lgpl-2.1+": "LGPL-2.1-or-later",
    "lgpl-3": "LGPL-3.0-only", "lgpl-3+": "LGPL-3.0-or-later",
    "gfdl-1.3+": "GFDL-1.3-or-later", "artistic": "Artistic-1.0", "gpl-1+": "GPL-1.0-or-later",
    "postgresql": "PostgreSQL", "bsd-3-clause~google": "BSD-3-Clause", "bsd-3-google": "BSD-3-Clause",
    # No SPDX identifier: a LicenseRef defined in the document (hasExtractedLicensingInfos).
    "public-domain": PUBLIC_DOMAIN,
}
EXCEPTIONS = {
    "gcc-exception-3.1": "GCC-exception-3.1", "autoconf exception": "Autoconf-exception-2.0",
    "openssl exception": "OpenSSL-exception",
}

NOASSERTION = "NOASSERTION"


def dpkg_owners(paths):
    """{host path: 'package:arch'} for the paths dpkg knows (merged /usr aliases tried too)."""
    candidates = {}
    for path in paths:
        alts = [path, os.path.realpath(path)]
        for alt in list(alts):
            if alt.startswith("/usr/lib/") or alt.startswith("/usr/lib64/"):
                alts.append(alt[len("/usr"):])
            elif alt.startswith("/lib/") or alt.startswith("/lib64/"):
                alts.append("/usr" + alt)
        candidates[path] = list(dict.fromkeys(alts))
    queried = sorted({a for alts in candidates.values() for a in alts})
    found = {}
    for i in range(0, len(queried), 200):
        out = subprocess.run(["dpkg-query", "-S", *queried[i:i + 200]], capture_output=True,
                             text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("diversion ") or ": " not in line:
                continue
            pkgs, path = line.split(": ", 1)
            # One architecture per image: the package's name is its key (libc6, not libc6:amd64).
            found.setdefault(path, pkgs.split(",")[0].strip().split(":")[0])
    owners = {}
    for path, alts in candidates.items():
        for alt in alts:
            if alt in found:
                owners[path] = found[alt]
                break
        else:
            if path in GENERATED_BY:
                owners[path] = GENERATED_BY[path]
    return owners


def dpkg_info(package):
    fmt = "${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\t${Homepage}"
    out = subprocess.run(["dpkg-query", "-W", "-f=" + fmt, package], capture_output=True,
                         text=True, check=True).stdout
    name, version, arch, src, src_version, homepage = out.split("\t")
    return {"name": name, "version": version, "arch": arch, "source": src,
            "source_version": src_version, "homepage": homepage.strip()}


def spdx_license(debian):
    """An SPDX expression for a Debian licence field, or None when a part has no SPDX id."""
    text = " ".join(debian.split()).lower()
    parts = []
    for alt in re.split(r"\s+or\s+|\s*\|\s*", text):
        conj = []
        for item in re.split(r"\s+and\s+|\s*,\s*", alt):
            exception = None
            m = re.match(r"(.+?)\s+with\s+(.+)$", item)
            if m:
                item, exc = m.group(1), m.group(2)
                exception = EXCEPTIONS.get(exc.strip())
                if exception is None:
                    return None
            spdx = DEBIAN_TO_SPDX.get(item.strip())
            if spdx is None:
                return None
            conj.append(f"{spdx} WITH {exception}" if exception else spdx)
        parts.append(" AND ".join(conj) if len(conj) == 1 else "(" + " AND ".join(conj) + ")")
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def debian_license(package_name):
    """(declared SPDX expression or NOASSERTION, a comment naming the file's licences)."""
    path = f"/usr/share/doc/{package_name}/copyright"
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return NOASSERTION, f"{path} is missing"
    return parse_copyright(text, path)


def parse_copyright(text, path):
    """debian_license's answer for the text of a copyright file."""
    if not text.startswith("Format:"):
        return NOASSERTION, f"{path} is not in the machine-readable copyright format"
    declared = None
    names = []
    for para in re.split(r"\n\s*\n", text):
        fields = {}
        key = None
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and key:
                continue
            if ":" in line:
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
        lic = fields.get("license")
        if not lic:
            continue
        if "files" in fields and lic not in names:
            names.append(lic)
        if declared is None and "files" in fields and "*" in fields["files"].split():
            declared = lic
    if declared is None and names:
        declared = names[0]
    expr = spdx_license(declared) if declared else None
    comment = "Debian copyright file " + path + ", License fields of its Files paragraphs: " + (
        "; ".join(names) if names else "none")
    if declared and expr is None:
        comment += f". The Files: * licence '{declared}' has no SPDX identifier here"
    return expr or NOASSERTION, comment


def checksums(path):
    sha1, sha256 = hashlib.sha1(), hashlib.sha256()
    with open(path, "rb") as f:
        head = f.read(4)
        sha1.update(head)
        sha256.update(head)
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha1.update(chunk)
            sha256.update(chunk)
    return sha1.hexdigest(), sha256.hexdigest(), head == b"\x7fELF"


def spdx_id(kind, text):
    return f"SPDXRef-{kind}-" + re.sub(r"[^A-Za-z0-9.-]", "-", text)


def read_manifest(path):
    mapping = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                sys.exit(f"sbom: {path}:{n}: expected '<image path><TAB><host path>', got {line!r}")
            mapping[parts[0]] = parts[1]
    return mapping


def npm_packages(lock_path):
    if not lock_path or not os.path.exists(lock_path):
        return []
    with open(lock_path) as f:
        lock = json.load(f)
    out = []
    for key, pkg in sorted(lock.get("packages", {}).items()):
        if not key or pkg.get("dev") or "node_modules/" not in key:
            continue
        name = key.rsplit("node_modules/", 1)[1]
        out.append({"name": name, "version": pkg.get("version", ""),
                    "license": pkg.get("license") or NOASSERTION,
                    "resolved": pkg.get("resolved") or NOASSERTION})
    return out


def generate(args):
    manifest = read_manifest(args.manifest)
    owners = dpkg_owners(sorted(set(manifest.values())))
    rootfs = args.rootfs.rstrip("/")
    exclude = {e.strip("/") for e in args.exclude}

    files = []  # (image path, sha1, sha256, elf, package key)
    for dirpath, dirnames, filenames in os.walk(rootfs):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, rootfs)
            if rel in exclude or os.path.islink(full) or not os.path.isfile(full):
                continue
            sha1, sha256, elf = checksums(full)
            host = manifest.get(rel)
            if host is not None and host not in owners:
                sys.exit(f"sbom: /{rel} is a copy of {host}, which no Debian package owns")
            files.append((rel, sha1, sha256, elf, owners[host] if host else "podgate"))
    files.sort()

    packages = {}
    for key in sorted({f[4] for f in files}):
        if key == "podgate":
            continue
        info = dpkg_info(key)
        declared, comment = debian_license(info["name"])
        distro = "debian"
        try:
            with open("/etc/os-release") as f:
                osr = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
            distro = f"{osr.get('ID', 'debian')}-{osr.get('VERSION_ID', '').strip(chr(34))}"
        except OSError:
            pass
        purl = (f"pkg:deb/debian/{urllib.parse.quote(info['name'])}@"
                f"{urllib.parse.quote(info['version'])}?arch={info['arch']}&distro={distro}")
        if info["source"] and info["source"] != info["name"]:
            purl += "&upstream=" + urllib.parse.quote(info["source"] + "@" + info["source_version"])
        pkg = {
            "SPDXID": spdx_id("Package-deb", info["name"]),
            "name": info["name"],
            "versionInfo": info["version"],
            "supplier": "Organization: Debian",
            "downloadLocation": NOASSERTION,
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": declared,
            "licenseComments": comment,
            "copyrightText": NOASSERTION,
            "sourceInfo": f"Debian source package {info['source']} {info['source_version']}",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": purl}],
            "primaryPackagePurpose": "LIBRARY",
        }
        if info["homepage"]:
            pkg["homepage"] = info["homepage"]
        packages[key] = pkg

    source = args.source
    podgate = {
        "SPDXID": "SPDXRef-Package-podgate",
        "name": "podgate",
        "versionInfo": args.version,
        "supplier": "Organization: podgate",
        "downloadLocation": f"git+{source}@{args.revision}" if args.revision != "unknown" else source,
        "homepage": source,
        "licenseConcluded": "Apache-2.0",
        "licenseDeclared": "Apache-2.0",
        "copyrightText": NOASSERTION,
        "sourceInfo": f"built from revision {args.revision}",
        "primaryPackagePurpose": "APPLICATION",
        "comment": "The services (podgate-edge, -exec, -policy, -audit), podgate-audit-cli and "
                   "the probe where built, stripped; the terminal page; /etc files of the image.",
    }
    packages["podgate"] = podgate

    file_entries = []
    by_package = {}
    for n, (rel, sha1, sha256, elf, key) in enumerate(files, 1):
        fid = f"SPDXRef-File-{n}"
        file_entries.append({
            "SPDXID": fid,
            "fileName": "./" + rel,
            "checksums": [{"algorithm": "SHA1", "checksumValue": sha1},
                          {"algorithm": "SHA256", "checksumValue": sha256}],
            "fileTypes": ["BINARY"] if elf else ["OTHER"],
            "licenseConcluded": NOASSERTION,
            "copyrightText": NOASSERTION,
        })
        by_package.setdefault(key, []).append((fid, sha1))
    for key, pkg in packages.items():
        entries = by_package.get(key, [])
        pkg["filesAnalyzed"] = True
        pkg["hasFiles"] = [fid for fid, _ in entries]
        code = hashlib.sha1("".join(sorted(s for _, s in entries)).encode()).hexdigest()
        pkg["packageVerificationCode"] = {"packageVerificationCodeValue": code}

    npm = []
    for dep in npm_packages(args.web_lock):
        npm.append({
            "SPDXID": spdx_id("Package-npm", dep["name"]),
            "name": dep["name"],
            "versionInfo": dep["version"],
            "downloadLocation": dep["resolved"],
            "filesAnalyzed": False,
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": dep["license"],
            "copyrightText": NOASSERTION,
            "comment": "Bundled into the terminal page (/usr/share/podgate/web).",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": "pkg:npm/" + urllib.parse.quote(dep["name"]) +
                              "@" + dep["version"]}],
            "primaryPackagePurpose": "LIBRARY",
        })

    image = {
        "SPDXID": "SPDXRef-Package-image",
        "name": "podgate-image",
        "versionInfo": args.version,
        "supplier": "Organization: podgate",
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "CONTAINER",
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                          "referenceLocator": f"pkg:oci/podgate?tag={args.version}"}],
        "comment": "The OCI image built by tools/image/build.sh: the packages below and nothing "
                   "else (no shell, no package manager).",
    }

    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": image["SPDXID"]}]
    for pkg in packages.values():
        relationships.append({"spdxElementId": image["SPDXID"], "relationshipType": "CONTAINS",
                              "relatedSpdxElement": pkg["SPDXID"]})
    for pkg in npm:
        relationships.append({"spdxElementId": podgate["SPDXID"], "relationshipType": "CONTAINS",
                              "relatedSpdxElement": pkg["SPDXID"]})

    content = hashlib.sha256("".join(f[2] for f in files).encode()).hexdigest()
    doc = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"podgate-image-{args.version}",
        "documentNamespace": f"{source}/spdx/podgate-image-{args.version}-{content[:32]}",
        "creationInfo": {"created": args.created,
                         "creators": ["Tool: podgate-tools-image-sbom.py", "Organization: podgate"]},
        "packages": [image, podgate] + [p for k, p in packages.items() if k != "podgate"] + npm,
        "files": file_entries,
        "relationships": relationships,
    }
    if any(PUBLIC_DOMAIN in p.get("licenseDeclared", "") for p in doc["packages"]):
        doc["hasExtractedLicensingInfos"] = [{
            "licenseId": PUBLIC_DOMAIN, "name": "public domain",
            "extractedText": "Dedicated to the public domain, as the package's Debian copyright "
                             "file says (License: public-domain).",
        }]
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"sbom: {len(file_entries)} files, {len(packages) - 1} Debian packages, "
          f"{len(npm)} npm packages -> {args.out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("owners", help="Debian packages owning the paths read from stdin")
    gen = sub.add_parser("generate", help="write the SBOM of a root")
    gen.add_argument("--rootfs", required=True)
    gen.add_argument("--manifest", required=True)
    gen.add_argument("--version", required=True)
    gen.add_argument("--revision", required=True)
    gen.add_argument("--source", required=True)
    gen.add_argument("--created", required=True)
    gen.add_argument("--out", required=True)
    gen.add_argument("--exclude", action="append", default=[])
    gen.add_argument("--web-lock")
    args = parser.parse_args()
    if args.command == "owners":
        paths = [p for p in sys.stdin.read().split("\n") if p]
        owners = dpkg_owners(paths)
        missing = [p for p in paths if p not in owners]
        if missing:
            sys.exit("sbom: no Debian package owns " + ", ".join(missing[:5]))
        print("\n".join(sorted(set(owners.values()))))
    else:
        generate(args)


if __name__ == "__main__":
    main()
