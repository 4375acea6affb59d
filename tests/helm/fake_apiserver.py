"""A loopback, plaintext stand-in for the slice of the Kubernetes API that Helm's `lookup` and
`helm template --dry-run=server` use: version, discovery of the kinds the chart renders, and
GET of Secrets held in memory (404 for anything else). It lets the chart tests exercise the
templates' `lookup` branches (reusing the certificates of an earlier install, signing with an
existing CA) without a cluster.

    with FakeApiServer({("ns", "name"): secret_dict}) as api:
        helm template ... --dry-run=server --kubeconfig api.kubeconfig
"""
import json
import os
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# (group, version) -> [(resource, kind, namespaced)]
RESOURCES = {
    ("", "v1"): [("secrets", "Secret", True), ("configmaps", "ConfigMap", True),
                 ("services", "Service", True), ("serviceaccounts", "ServiceAccount", True),
                 ("pods", "Pod", True), ("namespaces", "Namespace", False),
                 ("persistentvolumeclaims", "PersistentVolumeClaim", True)],
    ("apps", "v1"): [("deployments", "Deployment", True), ("statefulsets", "StatefulSet", True)],
    ("policy", "v1"): [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("autoscaling", "v2"): [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    ("networking.k8s.io", "v1"): [("networkpolicies", "NetworkPolicy", True),
                                  ("ingresses", "Ingress", True)],
    ("rbac.authorization.k8s.io", "v1"): [("roles", "Role", True), ("rolebindings", "RoleBinding", True),
                                          ("clusterroles", "ClusterRole", False),
                                          ("clusterrolebindings", "ClusterRoleBinding", False)],
    ("monitoring.coreos.com", "v1"): [("servicemonitors", "ServiceMonitor", True),
                                      ("prometheusrules", "PrometheusRule", True)],
    ("cert-manager.io", "v1"): [("certificates", "Certificate", True), ("issuers", "Issuer", True),
                                ("clusterissuers", "ClusterIssuer", False)],
}


def _resource_list(group, version):
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
        {"name": r, "singularName": k.lower(), "namespaced": ns, "kind": k,
         "verbs": ["get", "list", "create", "update", "patch", "delete"]}
        for r, k, ns in RESOURCES[(group, version)]]}


class FakeApiServer:
    def __init__(self, secrets):
        self.secrets = secrets  # {(namespace, name): {"data": {...}, "type": ...}}
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                path = self.path.split("?")[0].rstrip("/")
                outer.requests.append(path)
                if path == "/version":
                    return self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0",
                                            "platform": "linux/amd64"})
                if path == "/api":
                    return self._send(200, {"kind": "APIVersions", "versions": ["v1"],
                                            "serverAddressByClientCIDRs": [
                                                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
                if path == "/apis":
                    groups = {}
                    for g, v in RESOURCES:
                        if g:
                            groups.setdefault(g, []).append(v)
                    return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                        {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                         "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
                        for g, vs in groups.items()]})
                if path == "/api/v1":
                    return self._send(200, _resource_list("", "v1"))
                parts = path.strip("/").split("/")
                if len(parts) == 3 and parts[0] == "apis" and (parts[1], parts[2]) in RESOURCES:
                    return self._send(200, _resource_list(parts[1], parts[2]))
                # /api/v1/namespaces/<ns>/secrets/<name>
                if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "secrets":
                    secret = outer.secrets.get((parts[3], parts[5]))
                    if secret is not None:
                        body = {"apiVersion": "v1", "kind": "Secret",
                                "metadata": {"name": parts[5], "namespace": parts[3]}}
                        body.update(secret)
                        return self._send(200, body)
                return self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "reason": "NotFound", "code": 404,
                                        "message": f"{path} not found"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._dir = tempfile.mkdtemp()
        self.kubeconfig = os.path.join(self._dir, "kubeconfig")

    def __enter__(self):
        self._thread.start()
        port = self._server.server_address[1]
        with open(self.kubeconfig, "w") as fh:
            json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                       "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                       "users": [{"name": "fake", "user": {"token": "fake"}}],
                       "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}, fh)
        os.chmod(self.kubeconfig, 0o600)
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        os.unlink(self.kubeconfig)
        os.rmdir(self._dir)
