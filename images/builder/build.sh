#!/bin/sh
# An ordinary builder that knows nothing about provenance: it reads the
# sources in /workspace/source and writes its outputs to /workspace/out over
# a few seconds, the way real builds churn files: one output is rewritten,
# one is written under a temporary name and renamed, one is created and
# deleted again.
#
# It also plays the attacker once: it tries to read the signing key of the
# provenant sidecar and to reach the sidecar's state directory, directly and
# through /proc/PID/root of every process it can see (with
# shareProcessNamespace it sees the sidecar's). Neither is mounted in this
# container, so it must print KEY-NOT-READABLE and STATE-NOT-REACHABLE; the
# end-to-end tests check for those lines. Where to look is not written
# here: PROBE_KEY_FILE and PROBE_STATE_DIR name the key file and the state
# directory as the provenant containers of the pod mount them
# (tests/pod_e2e.rs reads them from the manifest it plays). Without them
# the probe is skipped and says so, and neither line is printed.
set -eu
src=/workspace/source
out=/workspace/out

echo "build.sh: building $src into $out"
mkdir -p "$out"
version="$(cat "$src/VERSION")"

echo "status: building $version" >"$out/status.txt"
ls -lR "$src" >"$out/listing.tmp"
sleep 1

{
    echo '#!/bin/sh'
    echo "# hello $version"
    cat "$src/lib/greet.sh"
    echo 'greet "${1:-world}"'
} >"$out/hello"
chmod 755 "$out/hello"
tar -C "$src" -cf "$out/source.tar" .
echo "built hello $version from $(wc -l <"$out/listing.tmp") listing lines" >"$out/build.log.partial"

# The key-isolation probe, while the sidecar is surely running.
key_file="${PROBE_KEY_FILE:-}"
state_dir="${PROBE_STATE_DIR:-}"
if [ -z "$key_file" ] || [ -z "$state_dir" ]; then
    echo "build.sh: PROBE-SKIPPED (PROBE_KEY_FILE and PROBE_STATE_DIR not set)"
else
    key_read=
    state_reached=
    for f in "$key_file" /proc/[0-9]*/root"$key_file"; do
        if cat "$f" >/dev/null 2>&1; then
            echo "build.sh: KEY-READABLE at $f"
            key_read=yes
        fi
    done
    for d in "$state_dir" /proc/[0-9]*/root"$state_dir"; do
        if [ -e "$d/snapshot.json" ] || touch "$d/.probe" 2>/dev/null; then
            echo "build.sh: STATE-REACHABLE at $d"
            state_reached=yes
        fi
    done
    [ -n "$key_read" ] || echo "build.sh: KEY-NOT-READABLE at $key_file"
    [ -n "$state_reached" ] || echo "build.sh: STATE-NOT-REACHABLE at $state_dir"
fi
sleep 1

sha256sum "$out/hello" "$out/source.tar" >>"$out/build.log.partial"
mv "$out/build.log.partial" "$out/build.log"
rm "$out/listing.tmp"
sleep 1
echo "status: done $version" >"$out/status.txt"
echo "build.sh: done"
