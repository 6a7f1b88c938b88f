"""Drives a Skiff cluster with the official Python `kubernetes` client.

Usage: client.py KUBECONFIG. Prints one line per step; python_client.rs checks them.
"""

import json
import sys

from kubernetes import client, config
from kubernetes.client.rest import ApiException


def main(kubeconfig: str) -> None:
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()

    names = sorted(ns.metadata.name for ns in core.list_namespace().items)
    print("namespaces:", " ".join(names))

    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="from-python", labels={"client": "python"}),
        data={"greeting": "hello from python"},
    )
    created = core.create_namespaced_config_map("default", body)
    print("created:", created.metadata.name)

    read = core.read_namespaced_config_map("from-python", "default")
    print("read:", read.metadata.name, f"greeting={read.data['greeting']}")

    # A write against an outdated resourceVersion is refused.
    stale = read
    stale.data["greeting"] = "changed once"
    core.replace_namespaced_config_map("from-python", "default", stale)
    stale.data["greeting"] = "changed twice"
    try:
        core.replace_namespaced_config_map("from-python", "default", stale)
        print("conflict: none")
    except ApiException as e:
        print("conflict:", e.status, e.reason)
    # Put the value back for the Rust side to read.
    fresh = core.read_namespaced_config_map("from-python", "default")
    fresh.data["greeting"] = "hello from python"
    core.replace_namespaced_config_map("from-python", "default", fresh)

    try:
        core.read_namespaced_config_map("no-such-map", "default")
        print("missing: found")
    except ApiException as e:
        print("missing:", e.status, json.loads(e.body)["reason"])


if __name__ == "__main__":
    main(sys.argv[1])
