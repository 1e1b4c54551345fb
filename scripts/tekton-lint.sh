#!/usr/bin/env bash
# Installs (or reuses) the pinned Tekton linter (@ibm/tekton-lint) that
# tests/install.rs runs over manifests/tekton. Same scheme as
# scripts/sigstore-js.sh: the pins live in tests/interop/tekton-lint/
# {package.json,package-lock.json}, copied into target/tekton-lint and
# installed there with `npm ci`; skipped when the lock file is unchanged
# since the last successful install.
#
# Prints progress to stderr and, as its last stdout line, the directory
# holding node_modules (REPO/target/tekton-lint): pass it as TEKTON_LINT_DIR.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
src="$repo/tests/interop/tekton-lint"
dest="$repo/target/tekton-lint"
lock="$src/package-lock.json"
stamp="$dest/.package-lock.sha256"
say() { echo "tekton-lint: $*" >&2; }
for tool in node npm sha256sum; do
    command -v "$tool" >/dev/null || { say "$tool not found on PATH"; exit 1; }
done
want="$(sha256sum "$lock" | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$dest/node_modules/.bin/tekton-lint" ]]; then
    say "up to date: $dest"
else
    say "installing pinned packages into $dest"
    rm -rf "$dest"
    mkdir -p "$dest"
    cp "$src/package.json" "$src/package-lock.json" "$dest/"
    (cd "$dest" && npm ci --no-audit --no-fund --no-update-notifier >&2)
    echo "$want" >"$stamp"
fi
echo "$dest"
