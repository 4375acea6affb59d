#!/usr/bin/env python3
"""Tests of the chart's integration features, each rendering with `helm template` and asserting
on the parsed manifests.

Usage:
  chart_features_test.py extensions        per-service extension points, anti-affinity, PDB,
                                           HPA behavior, NetworkPolicy extras, ServiceMonitor,
                                           commonAnnotations/commonLabels on every resource
  chart_features_test.py probes            the exact probes per mode (plaintext, mTLS with
                                           chart-made, cert-manager and existing certificates,
                                           edge over HTTPS)
  chart_features_test.py probe-flags DIR   the podgate-probe flags the chart uses are in
                                           `DIR/podgate-probe --help` (skipped, exit 77, when
                                           the binary is not built)
  chart_features_test.py certificates      existing Secrets, bring-your-own CA, cert-manager
  chart_features_test.py lookup            the `lookup` branches against a loopback fake API
                                           server (tests/helm/fake_apiserver.py): certificates
                                           of an earlier install reused, an existing CA signs
  chart_features_test.py subchart          podgate as a dependency of a parent chart
  chart_features_test.py monitoring        PrometheusRule (promtool check rules) and the
                                           Grafana dashboard; every metric they name exists in
                                           the source tree
  chart_features_test.py helm-test         the `helm test` Pod
  chart_features_test.py package           `helm package` and the archive's contents
  chart_features_test.py readme            README.md lists every value and is up to date
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chart_readme  # noqa: E402
from chart_test import (BASE_VALUES, CHART, COMPONENTS, NAMESPACE, RELEASE, Failures,  # noqa: E402
                        StrictLoader, by_kind, component_of, container, expected_probe_check,
                        helm_binary, is_hook, load_values, pod_spec, render, run, value_paths,
                        workload_of, workloads)

ROOT = os.path.normpath(os.path.join(CHART, "..", "..", ".."))
PROBE = "/usr/bin/podgate-probe"


def render_fails(sets, files=(BASE_VALUES,)):
    cmd = [helm_binary(), "template", RELEASE, CHART, "--namespace", NAMESPACE]
    for f in files:
        cmd += ["-f", f]
    for s in sets:
        cmd += ["--set", s]
    r = run(cmd)
    return r.returncode != 0, r.stderr


def write_values(tmp, name, data):
    path = os.path.join(tmp, name)
    with open(path, "w") as fh:
        yaml.safe_dump(data, fh)
    return path


# ---------------------------------------------------------------------------------------------


EXTRAS = {
    "commonAnnotations": {"team.example.com/owner": "platform"},
    "commonLabels": {"cost-center": "cc42"},
    "networkPolicy": {"metrics": {"from": "any"}},
    "serviceMonitor": {
        "enabled": True, "interval": "15s", "labels": {"release": "kps"},
        "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"],
                         "targetLabel": "node"}],
        "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "go_.*",
                               "action": "drop"}]},
}
for _c in COMPONENTS:
    EXTRAS[_c] = {
        "extraVolumes": [{"name": f"{_c}-extra", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": f"{_c}-extra", "mountPath": "/extra"}],
        "extraContainers": [{"name": "shipper", "image": "busybox:1.36",
                             "ports": [{"name": "shipper", "containerPort": 9999}],
                             "volumeMounts": [{"name": f"{_c}-extra", "mountPath": "/tmp"}],
                             "securityContext": {"runAsNonRoot": True, "runAsUser": 10002,
                                                 "readOnlyRootFilesystem": True,
                                                 "allowPrivilegeEscalation": False}}],
        "extraInitContainers": [{"name": "wait", "image": "busybox:1.36",
                                 "volumeMounts": [{"name": f"{_c}-extra", "mountPath": "/tmp"}],
                                 "securityContext": {"runAsNonRoot": True, "runAsUser": 10002,
                                                     "readOnlyRootFilesystem": True,
                                                     "allowPrivilegeEscalation": False}}],
        "lifecycle": {"preStop": {"exec": {"command": ["/usr/bin/podgate-probe", "--help"]}}},
        "extraEnv": [{"name": "EXTRA", "value": _c}],
        "networkPolicy": {
            "extraIngress": [{"from": [{"namespaceSelector": {"matchLabels": {"x": _c}}}],
                              "ports": [{"port": 9999, "protocol": "TCP"}]}],
            "extraEgress": [{"to": [{"ipBlock": {"cidr": "10.9.0.0/16"}}],
                             "ports": [{"port": 8443, "protocol": "TCP"}]}]},
    }
EXTRAS["edge"]["updateStrategy"] = {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "50%"}}
EXTRAS["audit"]["updateStrategy"] = {"type": "OnDelete"}
EXTRAS["exec"]["pdb"] = {"maxUnavailable": "25%"}
EXTRAS["exec"]["autoscaling"] = {
    "enabled": True, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 600}}}
EXTRAS["policy"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In",
                                                  "values": ["system"]}]}]}}}
EXTRAS["audit"]["podAntiAffinity"] = "none"


def cmd_extensions():
    f = Failures("extensions")
    tmp = tempfile.mkdtemp()
    try:
        path = write_values(tmp, "extras.yaml", EXTRAS)
        docs = render([BASE_VALUES, path])
        values = load_values([BASE_VALUES, path])
    finally:
        shutil.rmtree(tmp)
    # commonAnnotations and commonLabels on every resource.
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        md = d["metadata"]
        f.check((md.get("annotations") or {}).get("team.example.com/owner") == "platform",
                f"{name}: no commonAnnotations")
        f.check((md.get("labels") or {}).get("cost-center") == "cc42", f"{name}: no commonLabels")
    for comp in COMPONENTS:
        w = workload_of(docs, comp)
        spec = pod_spec(w)
        c = container(w)
        f.check(f"{comp}-extra" in [v["name"] for v in spec["volumes"]], f"{comp}: extraVolumes")
        f.check({"name": f"{comp}-extra", "mountPath": "/extra"} in c["volumeMounts"],
                f"{comp}: extraVolumeMounts")
        f.check([x["name"] for x in spec["containers"]] == [comp, "shipper"],
                f"{comp}: containers {[x['name'] for x in spec['containers']]}")
        f.check([x["name"] for x in spec.get("initContainers", [])] == ["wait"],
                f"{comp}: extraInitContainers")
        f.check(c.get("lifecycle") == EXTRAS[comp]["lifecycle"], f"{comp}: lifecycle {c.get('lifecycle')}")
        f.check({"name": "EXTRA", "value": comp} in c["env"], f"{comp}: extraEnv")
        # The podgate container stays first (kubectl's default container, the probes).
        f.check(spec["containers"][0]["command"] == [f"/usr/bin/podgate-{comp}"],
                f"{comp}: its own container is not first")
        sel = {"app.kubernetes.io/name": "podgate", "app.kubernetes.io/instance": RELEASE,
               "app.kubernetes.io/component": comp}
        aff = spec.get("affinity")
        if comp == "policy":
            f.check(aff == EXTRAS["policy"]["affinity"], f"policy: affinity not used as given: {aff}")
        elif comp == "audit":
            f.check(aff is None, f"audit: podAntiAffinity none still renders {aff}")
        else:
            f.check(aff == {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                    "labelSelector": {"matchLabels": sel}}}]}},
                    f"{comp}: default anti-affinity {aff}")
        # NetworkPolicy extras.
        np = [n for n in by_kind(docs, "NetworkPolicy") if component_of(n) == comp][0]
        f.check(EXTRAS[comp]["networkPolicy"]["extraIngress"][0] in np["spec"]["ingress"],
                f"{comp}: extraIngress missing")
        f.check(EXTRAS[comp]["networkPolicy"]["extraEgress"][0] in np["spec"]["egress"],
                f"{comp}: extraEgress missing")
        metrics = [r for r in np["spec"]["ingress"]
                   if r.get("ports") == [{"port": values[comp]["metricsPort"], "protocol": "TCP"}]]
        f.check(len(metrics) == 1 and "from" not in metrics[0],
                f"{comp}: metrics.from=any is not an open metrics rule: {metrics}")
        # ServiceMonitor.
        sm = [s for s in by_kind(docs, "ServiceMonitor") if component_of(s) == comp]
        if f.check(len(sm) == 1, f"{comp}: ServiceMonitor"):
            ep = sm[0]["spec"]["endpoints"][0]
            f.check(ep.get("relabelings") == EXTRAS["serviceMonitor"]["relabelings"], f"{comp}: relabelings")
            f.check(ep.get("metricRelabelings") == EXTRAS["serviceMonitor"]["metricRelabelings"],
                    f"{comp}: metricRelabelings")
            f.check(ep.get("interval") == "15s", f"{comp}: interval")
            f.check(sm[0]["metadata"]["labels"].get("release") == "kps", f"{comp}: labels")
    # Update strategies.
    edge = workload_of(docs, "edge")
    f.check(edge["spec"]["strategy"] == EXTRAS["edge"]["updateStrategy"], f"edge strategy {edge['spec']['strategy']}")
    f.check(workload_of(docs, "exec")["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "exec: default strategy")
    audit = workload_of(docs, "audit")
    f.check(audit["kind"] == "StatefulSet" and audit["spec"]["updateStrategy"] == {"type": "OnDelete"},
            f"audit updateStrategy {audit['spec'].get('updateStrategy')}")
    # PDB maxUnavailable, HPA behavior.
    pdb = [p for p in by_kind(docs, "PodDisruptionBudget") if component_of(p) == "exec"]
    f.check(pdb and pdb[0]["spec"].get("maxUnavailable") == "25%" and "minAvailable" not in pdb[0]["spec"],
            f"exec PDB {pdb and pdb[0]['spec']}")
    hpa = [h for h in by_kind(docs, "HorizontalPodAutoscaler") if component_of(h) == "exec"]
    f.check(hpa and hpa[0]["spec"].get("behavior") == EXTRAS["exec"]["autoscaling"]["behavior"],
            "exec HPA behavior")
    f.check(all("behavior" not in h["spec"] for h in by_kind(docs, "HorizontalPodAutoscaler")
                if component_of(h) != "exec"), "behavior on an HPA that has none")

    # Refusals: both PDB fields (schema), a partial set of existing TLS Secrets, a bad choice.
    failed, err = render_fails(["exec.pdb.maxUnavailable=1", "exec.pdb.minAvailable=1"])
    f.check(failed and "exec.pdb.minAvailable" in err and "null" in err,
            f"minAvailable and maxUnavailable together accepted: {err[-300:]}")
    failed, err = render_fails(["edge.podAntiAffinity=always"])
    f.check(failed and "podAntiAffinity" in err, f"podAntiAffinity=always accepted: {err[-300:]}")
    failed, err = render_fails(["networkPolicy.metrics.from=everyone"])
    f.check(failed and "from" in err, f"metrics.from=everyone accepted: {err[-300:]}")
    # Hard anti-affinity and an empty metrics source.
    docs = render([BASE_VALUES], ["edge.podAntiAffinity=hard", "networkPolicy.metrics.from=null"])
    aff = pod_spec(workload_of(docs, "edge")).get("affinity", {}).get("podAntiAffinity", {})
    f.check(list(aff) == ["requiredDuringSchedulingIgnoredDuringExecution"], f"hard anti-affinity {aff}")
    for np in by_kind(docs, "NetworkPolicy"):
        comp = component_of(np)
        f.check(not [r for r in np["spec"]["ingress"]
                     if {"port": 9100 + {"policy": 1, "exec": 2, "audit": 3, "edge": 4}[comp],
                         "protocol": "TCP"} in r.get("ports", [])],
                f"{comp}: metrics reachable with metrics.from empty")
    return f.finish()


# ---------------------------------------------------------------------------------------------


def probe_commands(docs):
    """Every podgate-probe command line in the rendered probes and the helm test Pod."""
    out = []
    for w in [d for d in docs if d.get("kind") in ("Deployment", "StatefulSet", "Pod")]:
        spec = pod_spec(w)
        for c in spec.get("initContainers", []) + spec["containers"]:
            if (c.get("command") or [None])[0] == PROBE:
                out.append(c["command"])
            for p in ("startupProbe", "livenessProbe", "readinessProbe"):
                cmd = c.get(p, {}).get("exec", {}).get("command")
                if cmd and cmd[0] == PROBE:
                    out.append(cmd)
    return out


def cmd_probes():
    f = Failures("probes")
    modes = {
        "mtls-chart-certificates": [],
        "plaintext": ["tls.enabled=false"],
        "mtls-cert-manager": ["tls.certManager.enabled=true"],
        "mtls-existing-secrets": [f"tls.existingSecrets.{c}=my-{c}-tls" for c in COMPONENTS],
        "edge-https": ["edge.behindTlsProxy=false", "edge.httpTls.secretName=edge-https"],
        "probe-timings": ["probes.readiness.timeoutSeconds=4", "probes.liveness.timeoutSeconds=7",
                          "probes.startup.timeoutSeconds=3"],
    }
    for mode, sets in modes.items():
        docs = render([BASE_VALUES], sets)
        values = load_values([BASE_VALUES])
        for s in sets:
            key, _, val = s.partition("=")
            node = values
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = {"true": True, "false": False}.get(val, int(val) if val.isdigit() else val)
        for comp in COMPONENTS:
            c = container(workload_of(docs, comp))
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                want = expected_probe_check(values, comp, probe, RELEASE)
                got = {k: v for k, v in c[probe].items() if k in ("grpc", "exec", "httpGet", "tcpSocket")}
                f.check(got == want, f"{mode}: {comp} {probe} is {got}, want {want}")
            if values["tls"]["enabled"]:
                # The files the probe reads are the pod's own mounted TLS Secret.
                mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
                f.check(mounts.get("tls") == "/etc/podgate/tls", f"{mode}: {comp} has no TLS mount")
                vols = {v["name"]: v for v in pod_spec(workload_of(docs, comp))["volumes"]}
                want_secret = (values["tls"].get("existingSecrets", {}).get(comp)
                               or f"{RELEASE}-podgate-{comp}-tls")
                f.check(vols.get("tls", {}).get("secret", {}).get("secretName") == want_secret,
                        f"{mode}: {comp} TLS Secret {vols.get('tls')}, want {want_secret}")
                # Readiness asks for the component's own health name, liveness for "".
                if comp != "edge":
                    f.check(f"--service={comp}" in c["readinessProbe"]["exec"]["command"],
                            f"{mode}: {comp} readiness does not ask for {comp!r}")
                f.check("--service=" in c["livenessProbe"]["exec"]["command"],
                        f"{mode}: {comp} liveness does not ask for the overall service")
    # The chart-made certificates carry clientAuth (the probe presents the pod's own).
    docs = render([BASE_VALUES])
    for s in by_kind(docs, "Secret"):
        if s["metadata"]["name"] == f"{RELEASE}-podgate-policy-tls":
            import base64
            pem = base64.b64decode(s["data"]["tls.crt"])
            r = subprocess.run(["openssl", "x509", "-noout", "-ext", "extendedKeyUsage"],
                               input=pem, capture_output=True)
            out = r.stdout.decode()
            f.check("TLS Web Client Authentication" in out and "TLS Web Server Authentication" in out,
                    f"policy's certificate lacks clientAuth/serverAuth: {out}")
    docs = render([BASE_VALUES], ["tls.certManager.enabled=true"])
    for cert in by_kind(docs, "Certificate"):
        if not cert["spec"].get("isCA"):
            f.check("client auth" in cert["spec"]["usages"], f"{cert['metadata']['name']}: no client auth")
    return f.finish()


def cmd_probe_flags(build_dir):
    binary = os.path.join(build_dir, "podgate-probe")
    if not os.path.exists(binary):
        found = [os.path.join(d, "podgate-probe") for d, _, files in os.walk(build_dir)
                 if "podgate-probe" in files and os.access(os.path.join(d, "podgate-probe"), os.X_OK)]
        if not found:
            print(f"SKIP probe-flags: podgate-probe is not built in {build_dir}")
            return 77
        binary = found[0]
    f = Failures("probe-flags")
    r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    known = set(re.findall(r"--([a-z0-9_]+)", r.stdout + r.stderr))
    f.check(known, f"podgate-probe --help lists no flags: {r.stdout[:300]} {r.stderr[:300]}")
    used = set()
    for sets in ([], ["tls.enabled=false"], ["edge.behindTlsProxy=false", "edge.httpTls.secretName=x"]):
        for cmd in probe_commands(render([BASE_VALUES], sets)):
            for arg in cmd[1:]:
                m = re.match(r"--([a-z0-9_]+)=", arg)
                f.check(m, f"probe argument {arg!r} is not --flag=value")
                if m:
                    used.add(m.group(1))
    f.check(used >= {"address", "service", "ca", "cert", "key", "server_name", "timeout", "http"},
            f"the chart uses only {sorted(used)}")
    for flag in sorted(used):
        f.check(flag in known, f"podgate-probe has no --{flag} (its --help lists {sorted(known)})")
    # The chart passes --timeout as a duration (`2s`, the project's flag convention): the
    # binary's default must look like one too, or the kubelet would run a probe that cannot parse
    # its own arguments.
    m = re.search(r"--timeout \((.*?)\); default: ([^;]+);", r.stdout + r.stderr, re.S)
    if m:
        default = m.group(2).strip().strip('"')
        f.check(re.fullmatch(r"([0-9.]+(ns|us|ms|s|m|h))+", default),
                f"podgate-probe --timeout's default {default!r} is not a duration like 2s")
    return f.finish()


# ---------------------------------------------------------------------------------------------


def cmd_certificates():
    f = Failures("certificates")
    # Existing Secrets: the chart makes none and mounts those given.
    sets = [f"tls.existingSecrets.{c}=corp-{c}-tls" for c in COMPONENTS]
    docs = render([BASE_VALUES], sets)
    tls_secrets = [s for s in by_kind(docs, "Secret") if s.get("type") == "kubernetes.io/tls"]
    f.check(not tls_secrets, f"existingSecrets: the chart still makes {[s['metadata']['name'] for s in tls_secrets]}")
    f.check(not by_kind(docs, "Certificate"), "existingSecrets: Certificates rendered")
    for comp in COMPONENTS:
        vols = {v["name"]: v for v in pod_spec(workload_of(docs, comp))["volumes"]}
        f.check(vols["tls"]["secret"]["secretName"] == f"corp-{comp}-tls", f"{comp}: TLS volume {vols['tls']}")
    test_pod = [d for d in docs if d["kind"] == "Pod" and is_hook(d)]
    f.check(test_pod and {"name": "tls", "secret": {"secretName": "corp-edge-tls", "defaultMode": 0o440}}
            in test_pod[0]["spec"]["volumes"], "helm test Pod does not use edge's existing Secret")
    # Two renders with existing Secrets are identical (nothing random): GitOps-stable.
    again = render([BASE_VALUES], sets)
    f.check(yaml.safe_dump_all(docs) == yaml.safe_dump_all(again), "existingSecrets: renders differ")
    # cert-manager: Certificates from the given ClusterIssuer, stable across renders.
    cm = ["tls.certManager.enabled=true", "tls.certManager.issuerRef.name=corp-ca",
          "tls.certManager.issuerRef.kind=ClusterIssuer"]
    docs = render([BASE_VALUES], cm)
    certs = by_kind(docs, "Certificate")
    f.check(len(certs) == 4 and all(c["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer",
                                                              "group": "cert-manager.io"} for c in certs),
            f"cert-manager: {[c['spec'].get('issuerRef') for c in certs]}")
    f.check(not [s for s in by_kind(docs, "Secret") if s.get("type") == "kubernetes.io/tls"],
            "cert-manager: chart-made TLS Secrets rendered too")
    f.check(yaml.safe_dump_all(docs) == yaml.safe_dump_all(render([BASE_VALUES], cm)),
            "cert-manager: renders differ")
    # Refusals.
    for sets, want in (
            (["tls.existingSecrets.edge=a"], "set all four"),
            (sets + ["tls.certManager.enabled=true"], "exclude each other"),
            (sets + ["tls.ca.existingSecret=corp-ca"], "exclude each other"),
            (["tls.ca.existingSecret=corp-ca", "tls.certManager.enabled=true"], "tls.ca.existingSecret"),
            # lookup finds nothing without a cluster: a clear error instead of a silent new CA.
            (["tls.ca.existingSecret=corp-ca"], 'Secret "corp-ca" not found')):
        failed, err = render_fails(sets)
        f.check(failed and want in err, f"{sets}: expected a refusal naming {want!r}, got {err[-300:]!r}")
    return f.finish()


def render_with_cluster(secrets, sets=()):
    """helm template --dry-run=server against a fake API server holding `secrets`."""
    from fake_apiserver import FakeApiServer
    with FakeApiServer(secrets) as api:
        cmd = [helm_binary(), "template", RELEASE, CHART, "--namespace", NAMESPACE, "-f", BASE_VALUES,
               "--dry-run=server", "--kubeconfig", api.kubeconfig]
        for x in sets:
            cmd += ["--set", x]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        looked_up = [p for p in api.requests if "/secrets/" in p]
    if r.returncode != 0:
        return None, r.stderr, looked_up
    return [d for d in yaml.load_all(r.stdout, Loader=StrictLoader) if d], r.stderr, looked_up


def tls_secrets(docs):
    return {s["metadata"]["name"]: s for s in by_kind(docs, "Secret") if s.get("type") == "kubernetes.io/tls"}


def as_cluster(secrets):
    return {(NAMESPACE, name): {"type": s["type"], "data": s["data"]} for name, s in secrets.items()}


def openssl_verify(ca_b64, cert_b64):
    import base64
    with tempfile.TemporaryDirectory() as d:
        ca, cert = os.path.join(d, "ca.pem"), os.path.join(d, "cert.pem")
        with open(ca, "wb") as fh:
            fh.write(base64.b64decode(ca_b64))
        with open(cert, "wb") as fh:
            fh.write(base64.b64decode(cert_b64))
        r = subprocess.run(["openssl", "verify", "-CAfile", ca, cert], capture_output=True, text=True)
        return r.returncode == 0


def cmd_lookup():
    f = Failures("lookup")
    names = [f"{RELEASE}-podgate-{c}-tls" for c in COMPONENTS]
    # A first install: nothing to find, the chart makes a CA and four certificates.
    first, err, looked = render_with_cluster({})
    if not f.check(first is not None, f"render against the fake API server failed: {err}"):
        return f.finish()
    f.check(f"/api/v1/namespaces/{NAMESPACE}/secrets/{RELEASE}-podgate-ca" in looked,
            f"the chart did not look its CA up: {looked}")
    made = tls_secrets(first)
    f.check(set(made) == set(names + [f"{RELEASE}-podgate-ca"]), f"first install made {sorted(made)}")
    # An upgrade: the Secrets exist, so every render gives the same certificates (and the same
    # checksum/tls, so pods do not roll).
    cluster = as_cluster(made)
    second, err, _ = render_with_cluster(cluster)
    third, _, _ = render_with_cluster(cluster)
    if f.check(second is not None and third is not None, f"upgrade render failed: {err}"):
        for name in made:
            f.check(tls_secrets(second)[name]["data"] == made[name]["data"], f"{name} was not reused")
        f.check(yaml.safe_dump_all(second) == yaml.safe_dump_all(third), "two upgrade renders differ")
        sums = {component_of(w): w["spec"]["template"]["metadata"]["annotations"].get("checksum/tls")
                for w in workloads(second)}
        sums3 = {component_of(w): w["spec"]["template"]["metadata"]["annotations"].get("checksum/tls")
                 for w in workloads(third)}
        f.check(all(sums.values()) and sums == sums3, f"checksum/tls not stable: {sums} {sums3}")
        first_sums = {component_of(w): w["spec"]["template"]["metadata"]["annotations"].get("checksum/tls")
                      for w in workloads(first)}
        f.check(first_sums != sums, "checksum/tls does not follow the Secrets")
    # A service Secret signed by another CA (the CA Secret was replaced) is made anew.
    other, _, _ = render_with_cluster({})
    mixed = dict(cluster)
    mixed[(NAMESPACE, names[0])] = {"type": "kubernetes.io/tls", "data": tls_secrets(other)[names[0]]["data"]}
    docs, err, _ = render_with_cluster(mixed)
    if f.check(docs is not None, f"render failed: {err}"):
        got = tls_secrets(docs)
        ca = made[f"{RELEASE}-podgate-ca"]["data"]["tls.crt"]
        f.check(got[names[0]]["data"] != mixed[(NAMESPACE, names[0])]["data"], "a certificate of another CA was kept")
        f.check(got[names[0]]["data"]["ca.crt"] == ca and openssl_verify(ca, got[names[0]]["data"]["tls.crt"]),
                "the new certificate is not signed by the CA in force")
        f.check(got[names[1]]["data"] == made[names[1]]["data"], "a certificate of the CA in force was replaced")
    # Bring your own CA: the chart signs with it and makes no CA Secret of its own.
    corp = tls_secrets(other)[f"{RELEASE}-podgate-ca"]["data"]
    byo = {(NAMESPACE, "corp-ca"): {"type": "Opaque", "data": {"ca.crt": corp["tls.crt"], "tls.key": corp["tls.key"]}}}
    docs, err, _ = render_with_cluster(byo, ["tls.ca.existingSecret=corp-ca"])
    if f.check(docs is not None, f"render with tls.ca.existingSecret failed: {err}"):
        got = tls_secrets(docs)
        f.check(set(got) == set(names), f"with tls.ca.existingSecret the chart made {sorted(got)}")
        for name in names:
            f.check(got[name]["data"]["ca.crt"] == corp["tls.crt"]
                    and openssl_verify(corp["tls.crt"], got[name]["data"]["tls.crt"]),
                    f"{name} is not signed by tls.ca.existingSecret")
        # ... and reuses them on the next render.
        again = dict(byo)
        again.update(as_cluster(got))
        docs2, _, _ = render_with_cluster(again, ["tls.ca.existingSecret=corp-ca"])
        f.check(docs2 is not None and all(tls_secrets(docs2)[n]["data"] == got[n]["data"] for n in names),
                "certificates signed by tls.ca.existingSecret are not reused")
    bad = {(NAMESPACE, "corp-ca"): {"type": "Opaque", "data": {"ca.crt": corp["tls.crt"]}}}
    docs, err, _ = render_with_cluster(bad, ["tls.ca.existingSecret=corp-ca"])
    f.check(docs is None and "needs tls.crt (or ca.crt) and tls.key" in err,
            f"a CA Secret without a key was accepted: {err[-300:]}")
    return f.finish()


# ---------------------------------------------------------------------------------------------


def cmd_subchart():
    f = Failures("subchart")
    helm = helm_binary()
    tmp = tempfile.mkdtemp()
    try:
        parent = os.path.join(tmp, "platform")
        os.makedirs(os.path.join(parent, "templates"))
        with open(os.path.join(parent, "Chart.yaml"), "w") as fh:
            yaml.safe_dump({"apiVersion": "v2", "name": "platform", "version": "1.0.0",
                            "dependencies": [{"name": "podgate", "version": "0.1.0",
                                              "repository": f"file://{CHART}"}]}, fh)
        with open(BASE_VALUES) as fh:
            podgate_values = yaml.safe_load(fh)
        podgate_values["commonAnnotations"] = {"platform.example.com/stack": "tools"}
        with open(os.path.join(parent, "values.yaml"), "w") as fh:
            yaml.safe_dump({"global": {"imageRegistry": "registry.example.com", "env": "prod"},
                            "podgate": podgate_values}, fh)
        r = run([helm, "dependency", "update", parent])
        if not f.check(r.returncode == 0, f"helm dependency update failed: {r.stderr}"):
            return f.finish()
        f.check(os.path.exists(os.path.join(parent, "charts", "podgate-0.1.0.tgz")),
                f"no charts/podgate-0.1.0.tgz: {os.listdir(os.path.join(parent, 'charts'))}")
        r = run([helm, "template", "acme", parent, "--namespace", "tools"])
        if not f.check(r.returncode == 0, f"helm template of the parent failed: {r.stderr}"):
            return f.finish()
        docs = [d for d in yaml.load_all(r.stdout, Loader=StrictLoader) if d]
        ws = workloads(docs)
        f.check(sorted(component_of(w) for w in ws) == sorted(COMPONENTS),
                f"workloads {[w['metadata']['name'] for w in ws]}")
        for d in docs:
            md = d["metadata"]
            name = f"{d['kind']}/{md['name']}"
            f.check(md["name"].startswith("acme-podgate") or d["kind"] in ("ClusterRole", "ClusterRoleBinding"),
                    f"{name}: not named after the parent's release")
            f.check(md["labels"].get("app.kubernetes.io/instance") == "acme", f"{name}: instance label")
            f.check(md.get("namespace") in (None, "tools"), f"{name}: namespace {md.get('namespace')}")
            f.check((md.get("annotations") or {}).get("platform.example.com/stack") == "tools",
                    f"{name}: the parent's podgate.commonAnnotations missing")
        edge = workload_of(docs, "edge")
        f.check(any(a == "--policy_address=dns:///acme-podgate-policy-headless.tools.svc.cluster.local:7101"
                    for a in container(edge)["args"]),
                f"edge's policy address: {[a for a in container(edge)['args'] if 'policy_address' in a]}")
        # The subchart's schema still refuses a typo under podgate:.
        with open(os.path.join(parent, "values.yaml"), "w") as fh:
            bad = dict(podgate_values)
            bad["edge"] = dict(bad.get("edge", {}), replicas=3)
            yaml.safe_dump({"global": {"env": "prod"}, "podgate": bad}, fh)
        r = run([helm, "template", "acme", parent, "--namespace", "tools"])
        f.check(r.returncode != 0 and "replicas" in r.stderr,
                f"a typo under podgate: passes the subchart's schema: {r.stderr[-300:]}")
    finally:
        shutil.rmtree(tmp)
    return f.finish()


# ---------------------------------------------------------------------------------------------


def source_literals():
    """Every lower-case identifier written as a string literal in the services', libraries' and
    tools' C++ sources: the metric names and the label values they set."""
    names = set()
    for top in ("services", "lib", "tools"):
        for d, _, files in os.walk(os.path.join(ROOT, top)):
            for fn in files:
                if fn.endswith((".cc", ".h")):
                    with open(os.path.join(d, fn), errors="replace") as fh:
                        names.update(re.findall(r'"([a-z][a-z0-9_]*)"', fh.read()))
    return names


def source_metrics(literals=None):
    """Every podgate_* metric name defined as a string in the sources."""
    return {n for n in (literals or source_literals()) if n.startswith("podgate_")}


# The grpc_code label of podgate_grpc_server_handled_total: the code as absl::StatusCodeToString
# names it (lib/runtime/grpc_metrics.cc via wire::StatusCodeName), not as Go's gRPC spells it.
GRPC_CODES = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
              "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
              "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
              "UNAUTHENTICATED"}
# Labels the chart's selector sets (the release's namespace, the scrape jobs) or Grafana fills.
SCRAPE_LABELS = {"namespace", "job", "pod", "instance"}


def check_label_values(exprs, where, literals, f):
    """Every value a podgate_* selector matches on (label="v", label=~"a|b", != and !~) is one the
    sources can write: a gRPC code name for grpc_code, else a string literal of the sources. A
    matcher on a value no service emits would make its alert or panel silently empty."""
    for e in exprs:
        for metric, body in re.findall(r"\b(podgate_[a-z0-9_]+)\{([^}]*)\}", e):
            for label, value in re.findall(r'([a-z_]+)\s*(?:=~|!~|!=|=)\s*"([^"]*)"', body):
                if label in SCRAPE_LABELS or "$" in value:
                    continue
                for alternative in value.split("|"):
                    known = GRPC_CODES if label == "grpc_code" else literals
                    f.check(alternative in known,
                            f"{where}: {metric}{{{label}}} matches {alternative!r}, a value the "
                            f"sources never write")


def metric_base(name):
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix) and name[: -len(suffix)]:
            return name[: -len(suffix)], True
    return name, False


def check_metrics_exist(exprs, where, known, f):
    used = set()
    for e in exprs:
        used.update(re.findall(r"\b(podgate_[a-z0-9_]+)", e))
    for name in sorted(used):
        base, suffixed = metric_base(name)
        ok = name in known or (suffixed and base in known)
        f.check(ok, f"{where}: metric {name} is not defined anywhere in the sources")
    return used


def cmd_monitoring():
    f = Failures("monitoring")
    literals = source_literals()
    known = source_metrics(literals)
    f.check(len(known) > 50, f"found only {len(known)} metric names in the sources")
    sets = ["prometheusRule.enabled=true", "grafanaDashboard.enabled=true",
            "prometheusRule.certificateExpiryDays=21", "prometheusRule.labels.release=kps",
            "prometheusRule.alertLabels.team=platform", "grafanaDashboard.annotations.grafana_folder=podgate",
            "grafanaDashboard.label.name=dashboards", "grafanaDashboard.label.value=podgate"]
    docs = render([BASE_VALUES], sets)
    rules = by_kind(docs, "PrometheusRule")
    if not f.check(len(rules) == 1, f"{len(rules)} PrometheusRules"):
        return f.finish()
    pr = rules[0]
    f.check(pr["apiVersion"] == "monitoring.coreos.com/v1", "PrometheusRule apiVersion")
    f.check(pr["metadata"]["labels"].get("release") == "kps", "PrometheusRule labels")
    all_rules = [r for g in pr["spec"]["groups"] for r in g["rules"]]
    alerts = {r["alert"]: r for r in all_rules}
    for want in ("PodgateTargetDown", "PodgateAuditStoreFailing", "PodgateAuditExportLagRecords",
                 "PodgateAuditExportLagSeconds", "PodgatePolicyReloadFailing",
                 "PodgateExecKubernetesErrors", "PodgateEdgeSessionLimitsHit",
                 "PodgateCertificateExpiringSoon", "PodgateGrpcErrorRatio",
                 "PodgateLogLinesDropped", "PodgateExecJournalNearlyFull"):
        f.check(want in alerts, f"no alert {want}")
    for name, r in alerts.items():
        f.check(r["labels"].get("severity") in ("critical", "warning"), f"{name}: severity")
        f.check(r["labels"].get("team") == "platform", f"{name}: alertLabels")
        f.check(r["annotations"].get("summary"), f"{name}: no summary")
        f.check(f'namespace="{NAMESPACE}"' in r["expr"], f"{name}: not scoped to the namespace")
        # The job regex matches the scrape jobs, i.e. the Services the ServiceMonitors select.
        m = re.search(r'job=~"([^"]+)"', r["expr"])
        if f.check(m, f"{name}: not scoped to podgate's scrape jobs"):
            jobs = [s["metadata"]["name"] for s in by_kind(docs, "Service")
                    if "metrics" in [p["name"] for p in s["spec"]["ports"]]]
            f.check(len(jobs) == 4 and all(re.fullmatch(m.group(1), j) for j in jobs),
                    f"{name}: job regex {m.group(1)} does not match every scraped Service {jobs}")
            f.check(not re.fullmatch(m.group(1), f"{RELEASE}-podgate-edge-headless"),
                    f"{name}: job regex matches a Service that does not exist")
    if "PodgateCertificateExpiringSoon" in alerts:
        f.check(f"< {21 * 86400}" in alerts["PodgateCertificateExpiringSoon"]["expr"],
                "certificateExpiryDays not applied")
    used_rules = check_metrics_exist([r["expr"] for r in all_rules], "PrometheusRule", known, f)
    check_label_values([r["expr"] for r in all_rules], "PrometheusRule", literals, f)
    for metric in ("podgate_audit_export_lag_records", "podgate_audit_export_lag_seconds",
                   "podgate_policy_reload_failures_total", "podgate_exec_api_errors_total",
                   "podgate_edge_rejections_total", "podgate_audit_errors_total",
                   "podgate_tls_certificate_expiry_timestamp_seconds",
                   "podgate_grpc_server_handled_total", "podgate_log_lines_dropped_total"):
        f.check(metric in used_rules, f"no alert uses {metric}")
    # promtool validates the rules (PromQL syntax, templates, durations).
    promtool = shutil.which("promtool")
    if f.check(promtool, "promtool is not on PATH (tools/install-deps.sh installs Debian's prometheus)"):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
            yaml.safe_dump(pr["spec"], fh)
            path = fh.name
        try:
            r = run([promtool, "check", "rules", path])
            f.check(r.returncode == 0, f"promtool check rules: {r.stdout} {r.stderr}")
            # And a deliberately broken copy is refused: the check can fail.
            broken = json.loads(json.dumps(pr["spec"]))
            broken["groups"][0]["rules"][0]["expr"] = "sum(rate(podgate_audit_errors_total[5m]"
            with open(path, "w") as fh:
                yaml.safe_dump(broken, fh)
            r = run([promtool, "check", "rules", path])
            f.check(r.returncode != 0, "promtool accepted a broken expression")
        finally:
            os.unlink(path)
    # Extra rules are appended.
    docs2 = render([BASE_VALUES], ["prometheusRule.enabled=true",
                                   "prometheusRule.extraRules[0].alert=Mine",
                                   "prometheusRule.extraRules[0].expr=vector(1)"])
    extra = [r for g in by_kind(docs2, "PrometheusRule")[0]["spec"]["groups"] for r in g["rules"]]
    f.check(extra[-1] == {"alert": "Mine", "expr": "vector(1)"}, f"extraRules: {extra[-1]}")

    # The dashboard.
    cms = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"] == f"{RELEASE}-podgate-dashboard"]
    if f.check(len(cms) == 1, "no dashboard ConfigMap"):
        cm = cms[0]
        f.check(cm["metadata"]["labels"].get("dashboards") == "podgate", "dashboard label not configurable")
        f.check(cm["metadata"]["annotations"].get("grafana_folder") == "podgate", "dashboard annotations")
        try:
            dash = json.loads(cm["data"]["podgate.json"])
        except (KeyError, ValueError) as e:
            f.check(False, f"dashboard is not valid JSON: {e}")
            return f.finish()
        panels = dash.get("panels", [])
        f.check(len(panels) >= 10, f"dashboard has {len(panels)} panels")
        exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
        f.check(all(p.get("targets") for p in panels), "a panel without a query")
        used = check_metrics_exist(exprs, "dashboard", known, f)
        check_label_values(exprs, "dashboard", literals, f)
        for metric in ("podgate_grpc_server_handled_total", "podgate_grpc_server_handling_seconds_bucket",
                       "podgate_edge_sessions", "podgate_audit_events_stored_total",
                       "podgate_audit_export_lag_records", "podgate_audit_export_lag_seconds",
                       "podgate_tls_certificate_expiry_timestamp_seconds"):
            f.check(metric in used, f"no dashboard panel uses {metric}")
        f.check(any("histogram_quantile(0.99" in e and "grpc_method" in e for e in exprs),
                "no p99 latency per method")
        ids = [p["id"] for p in panels]
        f.check(len(ids) == len(set(ids)), "duplicate panel ids")
    docs = render([BASE_VALUES])
    f.check(not by_kind(docs, "PrometheusRule") and not [
        c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")],
        "PrometheusRule or dashboard rendered while disabled")
    return f.finish()


# ---------------------------------------------------------------------------------------------


def cmd_helm_test():
    f = Failures("helm-test")
    for sets in ([], ["tls.enabled=false"], ["edge.behindTlsProxy=false", "edge.httpTls.secretName=edge-https",
                                             "edge.ingress.enabled=true", "edge.ingress.hosts={pg.example.com}"]):
        docs = render([BASE_VALUES], sets)
        values = load_values([BASE_VALUES])
        tls = "tls.enabled=false" not in sets
        pods = [d for d in docs if d["kind"] == "Pod"]
        if not f.check(len(pods) == 1 and is_hook(pods[0]), f"{sets}: expected one hook Pod"):
            continue
        pod = pods[0]
        f.check(pod["metadata"]["annotations"]["helm.sh/hook"] == "test", "hook is not test")
        spec = pod["spec"]
        f.check(spec["restartPolicy"] == "Never", "restartPolicy")
        f.check(spec["automountServiceAccountToken"] is False, "test Pod mounts a token")
        checks = {c["name"]: c["command"] for c in spec["initContainers"] + spec["containers"]}
        f.check("grpc-health-edge" not in checks, "edge's gRPC port has no Service: the test cannot reach it")
        for comp in ("exec", "policy", "audit"):
            cmd = checks.get(f"grpc-health-{comp}")
            if not f.check(cmd, f"{sets}: no gRPC health check of {comp}"):
                continue
            fqdn = f"{RELEASE}-podgate-{comp}-headless.{NAMESPACE}.svc.cluster.local"
            want = [PROBE, f"--address={fqdn}:{values[comp]['grpcPort']}", f"--service={comp}"]
            if tls:
                want += ["--ca=/etc/podgate/tls/ca.crt", "--cert=/etc/podgate/tls/tls.crt",
                         "--key=/etc/podgate/tls/tls.key", f"--server_name={RELEASE}-podgate-{comp}-headless"]
            want += ["--timeout=5s"]
            f.check(cmd == want, f"{sets}: {comp} check {cmd}, want {want}")
        edge_svc = f"{RELEASE}-podgate-edge.{NAMESPACE}.svc.cluster.local"
        readyz = checks.get("edge-readyz")
        if "edge.behindTlsProxy=false" in sets:
            f.check(readyz == [PROBE, f"--http=https://{edge_svc}:80/readyz", "--ca=/etc/podgate/http-tls/ca.crt",
                               "--server_name=pg.example.com", "--timeout=5s"], f"edge HTTPS readyz {readyz}")
        else:
            f.check(readyz == [PROBE, f"--http=http://{edge_svc}:80/readyz", "--timeout=5s"], f"edge readyz {readyz}")
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        if tls:
            f.check(vols.get("tls", {}).get("secret", {}).get("secretName") == f"{RELEASE}-podgate-edge-tls",
                    "test Pod does not use edge's TLS Secret")
        # The NetworkPolicies let the test Pod reach every gRPC port.
        for np in by_kind(docs, "NetworkPolicy"):
            comp = component_of(np)
            if comp == "edge":
                continue
            grpc = [r for r in np["spec"]["ingress"]
                    if {"port": values[comp]["grpcPort"], "protocol": "TCP"} in r.get("ports", [])]
            peers = [p["podSelector"]["matchLabels"].get("app.kubernetes.io/component")
                     for r in grpc for p in r.get("from", []) if "podSelector" in p]
            f.check("helm-test" in peers, f"{comp}: the test Pod cannot reach gRPC ({peers})")
        for c in spec["initContainers"] + spec["containers"]:
            f.check(c["securityContext"].get("readOnlyRootFilesystem") is True
                    and c["securityContext"].get("runAsNonRoot") is True, f"{c['name']}: securityContext")
    docs = render([BASE_VALUES], ["tests.enabled=false"])
    f.check(not [d for d in docs if d["kind"] == "Pod"], "test Pod rendered with tests.enabled=false")
    return f.finish()


# ---------------------------------------------------------------------------------------------


def cmd_package():
    f = Failures("package")
    tmp = tempfile.mkdtemp()
    try:
        r = run([helm_binary(), "package", CHART, "-d", tmp])
        if not f.check(r.returncode == 0, f"helm package failed: {r.stderr}"):
            return f.finish()
        with open(os.path.join(CHART, "Chart.yaml")) as fh:
            chart = yaml.safe_load(fh)
        archive = os.path.join(tmp, f"podgate-{chart['version']}.tgz")
        if not f.check(os.path.exists(archive), f"no {archive}: {os.listdir(tmp)}"):
            return f.finish()
        with tarfile.open(archive) as tar:
            names = set(tar.getnames())
            packaged_chart = yaml.safe_load(tar.extractfile("podgate/Chart.yaml"))
        for want in ("podgate/Chart.yaml", "podgate/values.yaml", "podgate/values.schema.json",
                     "podgate/README.md", "podgate/templates/_pod.tpl",
                     "podgate/templates/prometheusrule.yaml", "podgate/templates/tests/test-health.yaml",
                     "podgate/dashboards/podgate.json"):
            f.check(want in names, f"archive lacks {want}")
        f.check(any(n.startswith("podgate/templates/") for n in names), "archive lacks templates")
        # Chart metadata.
        for key in ("appVersion", "version", "home", "sources", "maintainers", "keywords", "kubeVersion",
                    "description"):
            f.check(packaged_chart.get(key), f"Chart.yaml has no {key}")
        f.check(packaged_chart.get("annotations", {}).get("artifacthub.io/license") == "Apache-2.0",
                "Chart.yaml: license annotation")
        # The packaged chart renders like the source one.
        r = run([helm_binary(), "template", RELEASE, archive, "-n", NAMESPACE, "-f", BASE_VALUES])
        f.check(r.returncode == 0, f"the archive does not render: {r.stderr[-300:]}")
    finally:
        shutil.rmtree(tmp)
    # The default image: <repository>:<appVersion>, no registry that does not exist.
    docs = render([BASE_VALUES], ["image.registry=", "image.tag="])
    with open(os.path.join(CHART, "values.yaml")) as fh:
        defaults = yaml.safe_load(fh)["image"]
    f.check(defaults["registry"] == "" and defaults["repository"] == "podgate", f"default image {defaults}")
    f.check(all(container(w)["image"] == f"podgate:{chart['appVersion']}" for w in workloads(docs)),
            f"default image is {container(workloads(docs)[0])['image']}")
    docs = render([BASE_VALUES], ["image.registry=registry.example.com", "image.tag=1.2.3"])
    f.check(all(container(w)["image"] == "registry.example.com/podgate:1.2.3" for w in workloads(docs)),
            "image.registry/tag not applied")
    return f.finish()


def cmd_readme():
    f = Failures("readme")
    f.check(chart_readme.main(["chart_readme.py", "--check"]) == 0,
            "README.md is stale: run tests/helm/chart_readme.py --write")
    with open(chart_readme.README) as fh:
        readme = fh.read()
    listed = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
    paths = value_paths()
    f.check(len(paths) > 100, f"parsed only {len(paths)} values")
    for path, _ in paths:
        parts = path.split(".")
        f.check(any(".".join(parts[:i]) in listed for i in range(len(parts), 0, -1)),
                f"README.md does not list {path}")
    for key, typ, default, desc in chart_readme.rows():
        f.check(desc, f"README.md: {key} has no description")
    return f.finish()


def main(argv):
    cmds = {"extensions": cmd_extensions, "probes": cmd_probes, "certificates": cmd_certificates,
            "lookup": cmd_lookup,
            "subchart": cmd_subchart, "monitoring": cmd_monitoring, "helm-test": cmd_helm_test,
            "package": cmd_package, "readme": cmd_readme}
    if len(argv) == 3 and argv[1] == "probe-flags":
        return cmd_probe_flags(argv[2])
    if len(argv) == 2 and argv[1] in cmds:
        return cmds[argv[1]]()
    print(__doc__)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except RuntimeError as e:
        print(f"FAIL: {e}")
        sys.exit(1)
