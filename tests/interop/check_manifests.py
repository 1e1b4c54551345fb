"""Validates provenant's Kubernetes manifests with kubernetes-validate
(strict: unknown fields are errors) against the Kubernetes versions we
support, and checks the isolation rules every example must keep:

* the signing key and the state volume are mounted only by provenant's
  own containers (the image named provenant), never by the builder;
* a service-account token is never auto-mounted into the builder when the
  pod uses the API (kube mode mounts it explicitly into the sidecar).

Usage: check_manifests.py VERSION[,VERSION...] FILE...
Prints one line per resource; exits 1 on the first problem class found.
"""
import sys

import kubernetes_validate
import yaml

PRIVATE_VOLUMES = {"signing-key", "state", "api-token"}


def is_provenant(c):
    return c.get("image", "").split("/")[-1].split(":")[0].split("@")[0] == "provenant"


def check_pod(name, pod):
    problems = []
    spec = pod["spec"]
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    for c in containers:
        mounts = {m["name"] for m in c.get("volumeMounts", [])}
        if not is_provenant(c):
            leaked = mounts & PRIVATE_VOLUMES
            if leaked:
                problems.append(f"{name}: container {c['name']} mounts {sorted(leaked)}")
    if any(v.get("secret") for v in spec.get("volumes", [])):
        if not any("signing-key" in {m["name"] for m in c.get("volumeMounts", [])} for c in containers if is_provenant(c)):
            problems.append(f"{name}: no provenant container mounts the signing key")
    return problems


def main():
    versions = sys.argv[1].split(",")
    problems = []
    for path in sys.argv[2:]:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            kind, name = doc["kind"], doc["metadata"]["name"]
            for v in versions:
                try:
                    kubernetes_validate.validate(doc, v, strict=True)
                except kubernetes_validate.ValidationError as e:
                    problems.append(f"{path}: {kind}/{name} invalid for Kubernetes {v}: {e.message} at {list(e.path)}")
                    continue
            if kind == "ServiceAccount" and doc.get("automountServiceAccountToken") is not False:
                problems.append(f"{path}: ServiceAccount {name} must set automountServiceAccountToken: false")
            if kind == "Pod":
                problems += [f"{path}: {p}" for p in check_pod(name, doc)]
            print(f"ok {path} {kind}/{name}")
    for p in problems:
        print(p, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
