#!/bin/sh
# The hostile builder (tests/pod_e2e.rs, pod_with_a_hostile_builder): it
# builds something, then tries every attack of docs/trust.md's threat
# model on the provenant sidecar through the files the sidecar reads. Paths
# name the sidecar's mounts (/keys is where the sidecar's key is; the
# builder itself does not have it), because a link is resolved by whoever
# follows it.
set -u
w=/workspace
mkdir -p "$w/out" "$w/layout" /results /report

echo "attack.sh: building"
echo "what the build really wrote" >"$w/out/app.bin"

# Key exfiltration: a Tekton result that is a link to the sidecar's key.
echo "localhost:5000/team/app" >/results/IMAGE_URL
ln -s /keys/cosign.key /results/IMAGE_DIGEST
# ...and a result that is a link to its environment (COSIGN_PASSWORD).
echo "localhost:5000/team/app" >/results/X_IMAGE_URL
ln -s /proc/self/environ /results/X_IMAGE_DIGEST
# Denial of service: a report nobody writes to (a FIFO), an index that is
# /dev/zero, a 1 GiB list of images.
mkfifo /report/report.toml
echo '{"imageLayoutVersion":"1.0.0"}' >"$w/layout/oci-layout"
ln -s /dev/zero "$w/layout/index.json"
truncate -s 1G /results/IMAGES
# Terminal injection: a product whose name prints as a second subject line
# ("out/x", newline, "sha256:<hex>  out/installer.sh").
fake="$w/out/x
sha256:0000000000000000000000000000000000000000000000000000000000000000  out"
mkdir -p "$fake"
printf 'x' >"$fake/installer.sh"
# A file only root may read (the sidecar runs as 65532).
echo "root only" >"$w/out/root-only.bin"
chmod 600 "$w/out/root-only.bin"
# Done: the completion marker, itself a link to the key (its content would
# be the exit code).
ln -s /keys/cosign.key "$w/.build-done"
echo "attack.sh: done"
