#!/usr/bin/env bash
# Runs every cargo fuzz target (fuzz/fuzz_targets) for a bounded time, from
# the seed corpus in fuzz/corpus; any crash, leak or timeout fails. Works on
# the stable toolchain: cargo fuzz's sanitizer and coverage flags are -Z
# flags, which RUSTC_BOOTSTRAP=1 allows there (the machine's one toolchain
# is stable; no nightly can be fetched). Installs cargo-fuzz from crates.io
# when it is missing.
#
# usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60, env FUZZ_SECONDS)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-${FUZZ_SECONDS:-60}}"
cargo_fuzz_version=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
    echo "fuzz: installing cargo-fuzz $cargo_fuzz_version" >&2
    cargo install --locked --quiet cargo-fuzz --version "$cargo_fuzz_version"
fi

cd "$repo/fuzz"
export RUSTC_BOOTSTRAP=1
# One build for all targets (address sanitizer, debug assertions on, so an
# arithmetic overflow is a crash too).
cargo fuzz build --debug-assertions
failed=0
for target in $(cargo fuzz list); do
    work="$repo/fuzz/target/corpus/$target"
    mkdir -p "$work"
    echo "fuzz: $target for ${secs}s" >&2
    # New inputs go to the work corpus, never into the committed seeds.
    if ! cargo fuzz run --debug-assertions "$target" "$work" "corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=262144 \
        -print_final_stats=1 2> "$repo/fuzz/target/$target.log"; then
        echo "fuzz: $target FAILED; last lines of fuzz/target/$target.log:" >&2
        tail -n 40 "$repo/fuzz/target/$target.log" >&2
        failed=1
    else
        grep -E "stat::number_of_executed_units|Done" "$repo/fuzz/target/$target.log" >&2 || true
    fi
done
exit "$failed"
