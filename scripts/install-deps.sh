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
# sigstore-js (tests/interop/sigstore-js) runs on the machine's Node.js.
command -v npm >/dev/null || need+=(npm)
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
