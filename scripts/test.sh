#!/usr/bin/env bash
# Runs every test of the project on a fresh Debian machine with only the Rust
# toolchain and Python present: installs what the tests need first (system
# packages, the Python venv of independent verifiers), then lint and tests.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

"$repo/scripts/install-deps.sh"
# Rootful podman with runc and the ulimits this kind of machine allows, for
# the real-pod tests (tests/pod_e2e.rs); those build their images with
# scripts/build-images.sh themselves.
"$repo/scripts/podman-setup.sh"
PROVENANT_PYTHON="$("$repo/scripts/interop-venv.sh" | tail -n 1)"
export PROVENANT_PYTHON
# sigstore-js, the independent verifier of our Sigstore bundles, and
# @sigstore/mock, the local Fulcio, Rekor and TSA of tests/keyless.rs.
SIGSTORE_JS_DIR="$("$repo/scripts/sigstore-js.sh" | tail -n 1)"
export SIGSTORE_JS_DIR
# The Tekton linter that checks manifests/tekton (tests/install.rs).
TEKTON_LINT_DIR="$("$repo/scripts/tekton-lint.sh" | tail -n 1)"
export TEKTON_LINT_DIR

# Writing to a device must never replace it (a root `-o /dev/null` once could):
# the machine's /dev/null is checked before and after everything below.
check_dev_null() {
    if [ ! -c /dev/null ]; then
        echo "test.sh: FAIL: /dev/null is not a character device ($1)" >&2
        ls -l /dev/null >&2 || true
        exit 1
    fi
}
check_dev_null "before the tests"

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test --all-targets
# Test hooks (src/hooks.rs) exist only with debug assertions: the same
# unit tests built without them (as a release build is) must find every
# hook inert. Only the provenant crate is rebuilt for this.
cargo test --lib --config 'profile.dev.package.provenant.debug-assertions=false' hooks::
# The fuzz targets, each for a bounded time: any crash fails CI.
"$repo/scripts/fuzz.sh" "${FUZZ_SECONDS:-60}"
check_dev_null "after the tests"
