#!/usr/bin/env bash
# The mutation check of the suite (docs/testing.md): cargo-mutants mutates
# src/verify, src/sign and src/provenance one change at a time and runs the
# test targets that exercise them; a mutant no test catches is a hole in the
# suite or an equivalent change (docs/testing.md lists each one).
#
# Not part of scripts/test.sh or CI: all 1,410 mutants take about a day on a
# 2-core machine. A shard is a reproducible, evenly spread sample (round-robin
# over the list cargo-mutants generates, which is deterministic for a given
# tree).
#
# usage: scripts/mutants.sh [SHARD [OUTPUT_DIR]]
#   SHARD       k/n, e.g. 0/40 (the recorded run); "all" for every mutant
#   OUTPUT_DIR  default target/mutants-out/<shard>; results in mutants.out/
# Extra cargo-mutants options go in CARGO_MUTANTS_ARGS (e.g. "--list").
#
# Installs cargo-mutants from crates.io when it is missing. Needs the
# interop venv and sigstore-js (scripts/interop-venv.sh, scripts/sigstore-js.sh;
# scripts/test.sh makes both).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
cargo_mutants_version=27.1.0
shard="${1:-0/40}"
out="${2:-target/mutants-out/${shard//\//-of-}}"

if ! cargo mutants --version 2>/dev/null | grep -q "$cargo_mutants_version"; then
    echo "mutants: installing cargo-mutants $cargo_mutants_version" >&2
    cargo install --locked --quiet cargo-mutants --version "$cargo_mutants_version"
fi

# The mutated copies (in /tmp) build into their own target directory, so
# the tree's own target/debug is never overwritten with a mutated binary.
# Seeded once from target/debug's dependency artifacts where those exist:
# the dependencies are then not rebuilt (about 10 minutes on 2 cores).
export CARGO_TARGET_DIR="$repo/target/mutants"
if [ ! -d "$CARGO_TARGET_DIR/debug/deps" ] && [ -d target/debug/deps ]; then
    mkdir -p "$CARGO_TARGET_DIR/debug/deps"
    cp -a target/debug/.fingerprint target/debug/build "$CARGO_TARGET_DIR/debug/"
    find target/debug/deps -maxdepth 1 \( -name '*.rlib' -o -name '*.rmeta' -o -name '*.so' \) \
        -exec cp -a -t "$CARGO_TARGET_DIR/debug/deps/" {} +
fi
# The copies have no target/interop-venv or target/sigstore-js of their own.
export PROVENANT_PYTHON="${PROVENANT_PYTHON:-$repo/target/interop-venv/bin/python}"
export SIGSTORE_JS_DIR="${SIGSTORE_JS_DIR:-$repo/target/sigstore-js}"

# cargo-mutants creates only the last component of -o.
mkdir -p "$out"

shard_args=(--shard "$shard" --sharding round-robin)
[ "$shard" = all ] && shard_args=()

# --cargo-arg applies to the build as well as the test run: only these
# targets are built for each mutant. They are the ones that exercise the
# three modules: the unit tests, and the integration tests of verify,
# policies, in-toto chains, stage-to-stage gates, the signer service and
# the independent verifiers (tests/interop.rs), and the sidecar's claimed
# subjects (tests/record.rs compares Claim::to_subject's names and digests
# exactly; the other tests reaching it need a registry or pods), and
# keyless signing with Rekor and a timestamp against sigstore-js's mock
# services, verified by sigstore-js (tests/keyless.rs: src/sign/keyless.rs,
# rekor.rs, tsa.rs and witness.rs are reached by nothing else; added after
# shard 1/40 missed four of their mutants).
# shellcheck disable=SC2086
exec cargo mutants --jobs 1 --timeout 240 --build-timeout 900 \
    --file 'src/verify/**' --file 'src/sign/**' --file 'src/provenance/**' \
    "${shard_args[@]}" -o "$out" \
    --cargo-arg=--lib --cargo-arg=--test=verify --cargo-arg=--test=policy \
    --cargo-arg=--test=intoto --cargo-arg=--test=chain --cargo-arg=--test=signer \
    --cargo-arg=--test=signer_identity --cargo-arg=--test=interop \
    --cargo-arg=--test=record --cargo-arg=--test=keyless \
    ${CARGO_MUTANTS_ARGS:-}
