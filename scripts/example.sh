#!/usr/bin/env bash
# The main job: build provenant, record a signed attestation for the example
# build in examples/hello, then verify and summarise it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
bin="${CARGO_TARGET_DIR:-$repo/target}/release/provenant"
cd "$repo/examples/hello"
rm -rf out provenance.intoto.jsonl
"$bin" run --material src --material build.sh --product out -- ./build.sh
"$bin" verify --key .provenant/dev.pub provenance.intoto.jsonl
"$bin" inspect provenance.intoto.jsonl
