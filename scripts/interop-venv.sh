#!/usr/bin/env bash
# Creates (or reuses) the Python venv of independent verifiers that
# tests/interop.rs runs: securesystemslib (DSSE), in-toto-attestation
# (statement and SLSA provenance schemas), in-toto.
# Prints the venv's python as its last stdout line; everything else goes to
# stderr. Skips the install when requirements.txt has not changed since.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$repo/target/interop-venv"
reqs="$repo/tests/interop/requirements.txt"
stamp="$venv/.requirements.sha256"
python="$venv/bin/python"

want="$(sha256sum "$reqs" | cut -d' ' -f1)"
if [[ -x "$python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "interop venv up to date: $venv" >&2
else
    echo "creating interop venv: $venv" >&2
    rm -rf "$venv"
    mkdir -p "$repo/target"
    python3 -m venv "$venv" >&2
    "$python" -m pip install --quiet --disable-pip-version-check -r "$reqs" >&2
    echo "$want" >"$stamp"
fi
echo "$python"
