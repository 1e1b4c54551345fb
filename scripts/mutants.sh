#!/usr/bin/env bash
# The mutation check of the suite (docs/testing.md): cargo-mutants mutates
# src/verify, src/sign and src/provenance one change at a time and runs the
# test targets that exercise them; a mutant no test catches is a hole in the
# suite or an equivalent change (docs/testing.md lists each one).
#
# Not part of scripts/test.sh or CI: all 1,948 mutants (at c7df7b8) take
# about 9 hours on a 2-core machine, one module 1.3-4 hours. A shard is a
# reproducible, evenly spread sample (round-robin over the list cargo-mutants
# generates, which is deterministic for a given tree); a module is a census.
#
# usage: scripts/mutants.sh [WHAT [OUTPUT_DIR]]
#   WHAT        k/n, e.g. 0/40: a round-robin shard of all three modules;
#               "all" for every mutant; or one of the modules (e.g.
#               src/provenance) or one of their files (src/sign/dsse.rs)
#               for every mutant of that module or file
#   OUTPUT_DIR  default target/mutants-out/<what>; results in mutants.out/
# Extra cargo-mutants options go in CARGO_MUTANTS_ARGS (e.g. "--list");
# MUTANTS_TESTS replaces the test targets (e.g. "lib verify registry");
# MUTANTS_RESUME=1 goes on with a census (below).
#
# Installs cargo-mutants and cargo-nextest from crates.io when missing. Needs the
# interop venv and sigstore-js (scripts/interop-venv.sh, scripts/sigstore-js.sh;
# scripts/test.sh makes both).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
cargo_mutants_version=27.1.0
shard="${1:-0/40}"
case "$shard" in
src/*) name="${shard//\//-}" ;;
*) name="${shard//\//-of-}" ;;
esac
out="${2:-target/mutants-out/$name}"

if ! cargo mutants --version 2>/dev/null | grep -q "$cargo_mutants_version"; then
    echo "mutants: installing cargo-mutants $cargo_mutants_version" >&2
    cargo install --locked --quiet cargo-mutants --version "$cargo_mutants_version"
fi
# The tests run under nextest (below); this kind of machine ships it, a
# plain Debian one does not.
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "mutants: installing cargo-nextest" >&2
    cargo install --locked --quiet cargo-nextest
fi

# Each mutated copy (in /tmp; the tree itself is never mutated) builds in
# its own target directory, without debug information and, where mold is
# installed, linked with mold: each mutant rebuilds the crate and relinks a
# dozen test binaries, and with debug information that took 35-50 s per
# mutant, without it 7-13 s alone and 8-28 s with two copies side by side
# (the dependencies take 2 minutes, once per copy). Neither changes what the tests check. A build and a test run each
# keep about one core busy, so two copies are tested side by side
# (MUTANTS_JOBS, default: the number of cores, at most 4).
unset CARGO_TARGET_DIR
export CARGO_PROFILE_DEV_DEBUG=0
if command -v mold >/dev/null && [ -z "${RUSTFLAGS:-}" ]; then
    export RUSTFLAGS="-C link-arg=-fuse-ld=mold"
fi
jobs="${MUTANTS_JOBS:-$(n=$(nproc); echo $((n > 4 ? 4 : n)))}"
# The copies have no target/interop-venv or target/sigstore-js of their own.
export PROVENANT_PYTHON="${PROVENANT_PYTHON:-$repo/target/interop-venv/bin/python}"
export SIGSTORE_JS_DIR="${SIGSTORE_JS_DIR:-$repo/target/sigstore-js}"

files=(--file 'src/verify/**' --file 'src/sign/**' --file 'src/provenance/**')
case "$shard" in
all) shard_args=() ;;
src/verify | src/sign | src/provenance) shard_args=() files=(--file "$shard/**") ;;
src/verify/*.rs | src/sign/*.rs | src/provenance/*.rs) # a case * matches / too
    [ -f "$shard" ] || { echo "mutants: no such file: $shard" >&2; exit 2; }
    shard_args=() files=(--file "$shard") ;;
[0-9]*/[0-9]*) shard_args=(--shard "$shard" --sharding round-robin) ;;
*) echo "mutants: WHAT is k/n, all, src/verify, src/sign, src/provenance or one of their files (not $shard)" >&2; exit 2 ;;
esac
# cargo-mutants creates only the last component of -o.
mkdir -p "$out"

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
# shard 1/40 missed four of their mutants), and the subjects chosen by
# pattern and the other outputs (tests/subjects.rs, added after the census
# of src/provenance). tests/registry.rs reaches the registry checks of
# claims too, but takes 75 s a run: the survivors it would catch are
# rechecked with it (docs/testing.md).
#
# A census of src/verify builds fewer: every integration test crate is
# compiled again for each mutant (the library it links changed), about 3 s
# of CPU each, nearly half of a mutant's build. The in-toto link, sidecar
# and signer-service tests reach src/verify only through a `verify` of
# what they wrote, which tests/verify.rs and tests/policy.rs already make;
# tests/audit.rs (`inspect`, which reads src/verify/facts.rs) is added.
# Survivors are rechecked with the full set and tests/registry.rs.
targets=(lib verify policy intoto chain signer signer_identity interop record keyless subjects)
case "$shard" in
src/verify | src/verify/*) targets=(lib verify policy chain interop keyless subjects audit) ;;
esac
[ -n "${MUTANTS_TESTS:-}" ] && read -r -a targets <<<"$MUTANTS_TESTS"
target_args=()
for t in "${targets[@]}"; do
    if [ "$t" = lib ]; then target_args+=(--cargo-arg=--lib); else target_args+=("--cargo-arg=--test=$t"); fi
done
# A census longer than a working session goes on where it stopped: with
# MUTANTS_RESUME=1, cargo-mutants' --iterate skips the mutants an earlier
# run into the same OUTPUT_DIR caught or found unviable, and a new
# OUTPUT_DIR starts from docs/mutants/NAME.done (those lists, committed).
# The names carry line numbers, so a mutant whose line moved since is
# tested again.
iterate=()
if [ "${MUTANTS_RESUME:-}" = 1 ]; then
    iterate=(--iterate)
    if [ -f "docs/mutants/$name.done" ] && [ ! -e "$out/mutants.out" ]; then
        mkdir -p "$out/mutants.out"
        cp "docs/mutants/$name.done" "$out/mutants.out/previously_caught.txt"
    fi
fi
# The tests run under nextest, in the `mutants` profile of
# .config/nextest.toml: it stops at the first failing test and runs first
# the tests likeliest to fail cheaply (a caught mutant's tests took 20-30 s
# in cargo test's order, 5-8 s in this one). A mutant that loops forever
# is stopped after MUTANTS_TIMEOUT seconds (150): all the targets take
# 35 s alone, up to 80 s beside a second copy and other work, and each of
# the census's loops held a job for 6 minutes at the 240 s it had before.
# shellcheck disable=SC2086
exec cargo mutants --jobs "$jobs" --timeout "${MUTANTS_TIMEOUT:-150}" --build-timeout 900 \
    "${files[@]}" "${shard_args[@]}" -o "$out" \
    --test-tool=nextest --cargo-arg=--profile=mutants --no-shuffle \
    "${target_args[@]}" "${iterate[@]}" ${CARGO_MUTANTS_ARGS:-}
