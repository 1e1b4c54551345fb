#!/usr/bin/env bash
# Installs (or reuses) the pinned sigstore-js packages: @sigstore/verify and
# @sigstore/bundle (tests/interop/sigstore_verify.mjs uses them as an
# independent verifier of the Sigstore bundles provenant writes) and
# @sigstore/mock (tests/interop/sigstore_mock_server.mjs serves its Fulcio,
# Rekor and TSA on loopback for the keyless tests). @sigstore/mock 0.13 declares
# Node ^22.22; npm only warns on Node 20, where its handlers run as they are.
#
# The pins live in tests/interop/sigstore-js/{package.json,package-lock.json};
# they are copied into target/sigstore-js and installed there with `npm ci`, so
# node_modules never lands in the source tree. The install is skipped when the
# lock file's sha256 equals the stamp written after the last successful install.
#
# Prints progress to stderr and, as its last stdout line, the absolute path of
# the directory holding node_modules (REPO/target/sigstore-js): pass it to the
# verifier as SIGSTORE_JS_DIR.
#
# To change the pins: edit tests/interop/sigstore-js/package.json, then in that
# directory run `npm install --package-lock-only --no-audit --no-fund` (this
# writes only package-lock.json, no node_modules).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
src="$repo/tests/interop/sigstore-js"
dest="$repo/target/sigstore-js"
lock="$src/package-lock.json"
stamp="$dest/.package-lock.sha256"

say() { echo "sigstore-js: $*" >&2; }

for tool in node npm sha256sum; do
    command -v "$tool" >/dev/null || { say "$tool not found on PATH"; exit 1; }
done
# @sigstore/verify 3.x and @sigstore/bundle 4.x need Node ^20.17 || >=22.9.
node_version="$(node --version)"
if ! node -e '
    const [maj, min] = process.versions.node.split(".").map(Number);
    process.exit((maj === 20 && min >= 17) || (maj === 22 && min >= 9) || maj > 22 ? 0 : 1);
'; then
    say "Node.js $node_version is too old: need ^20.17.0 || >=22.9.0"
    exit 1
fi

want="$(sha256sum "$lock" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" &&
    -f "$dest/node_modules/@sigstore/verify/package.json" &&
    -f "$dest/node_modules/@sigstore/bundle/package.json" &&
    -f "$dest/node_modules/@sigstore/mock/package.json" ]]; then
    say "up to date: $dest"
else
    say "installing pinned packages into $dest (node $node_version, npm $(npm --version 2>/dev/null))"
    rm -rf "$dest"
    mkdir -p "$dest"
    cp "$src/package.json" "$src/package-lock.json" "$dest/"
    (cd "$dest" && npm ci --no-audit --no-fund --no-update-notifier >&2)
    echo "$want" >"$stamp"
    installed="$(cd "$dest" && node -p '
        const fs = require("fs");
        ["verify", "bundle", "core", "protobuf-specs", "mock"].map((p) => "@sigstore/" + p + "@" +
            JSON.parse(fs.readFileSync("node_modules/@sigstore/" + p + "/package.json")).version)
            .join(" ")')"
    say "installed: $installed"
fi
echo "$dest"
