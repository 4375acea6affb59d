"""Runs one exec through the official Kubernetes Python client and prints the result as JSON.

Usage: exec_client.py KUBECONFIG NAMESPACE POD CONTAINER [TTY] -- ARGV...
Prints {"stdout": ..., "stderr": ..., "returncode": N} on stdout.
"""
import json
import sys

from kubernetes import client, config
from kubernetes.stream import stream


def main():
    sep = sys.argv.index("--")
    kubeconfig, namespace, pod, container = sys.argv[1:5]
    command = sys.argv[sep + 1:]
    config.load_kube_config(config_file=kubeconfig)
    api = client.CoreV1Api()
    resp = stream(api.connect_get_namespaced_pod_exec, pod, namespace, container=container,
                  command=command, stderr=True, stdin=False, stdout=True, tty=False,
                  _preload_content=False)
    resp.run_forever(timeout=20)
    out = {"stdout": resp.read_stdout(), "stderr": resp.read_stderr(),
           "returncode": resp.returncode}
    resp.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
