#!/usr/bin/env bash
# Builds, with local podman and nothing pulled, the two images the pod
# manifests and tests/pod_e2e.rs use:
#
#   localhost/provenant:dev          images/provenant.Containerfile (FROM scratch)
#   localhost/provenant-builder:dev  images/builder.Containerfile (FROM scratch)
#
# First the static provenant binary (glibc, crt-static) into target/static;
# cargo makes that a no-op when nothing changed. The build contexts are
# assembled in a temporary directory, so the repository (and its target/)
# is never sent as a context. An image is rebuilt only when its context or
# Containerfile changed (their hash is kept as the image label
# dev.provenant.context). Run scripts/podman-setup.sh once before.
#
# Environment: PROVENANT_IMAGE, BUILDER_IMAGE override the tags;
# PROVENANT_STATIC_BIN=PATH uses that static binary instead of building one.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
provenant_image="${PROVENANT_IMAGE:-localhost/provenant:dev}"
builder_image="${BUILDER_IMAGE:-localhost/provenant-builder:dev}"

for tool in podman cargo strip; do
    command -v "$tool" >/dev/null || {
        echo "build-images: $tool not found${tool/podman/ (run scripts/podman-setup.sh)}" >&2
        exit 1
    }
done
[ -x /bin/busybox ] || {
    echo "build-images: /bin/busybox missing (run scripts/podman-setup.sh)" >&2
    exit 1
}

if [ -n "${PROVENANT_STATIC_BIN:-}" ]; then
    bin="$PROVENANT_STATIC_BIN"
    echo "build-images: using $bin" >&2
else
    target="$(uname -m)-unknown-linux-gnu"
    echo "build-images: static provenant for $target" >&2
    (
        cd "$repo"
        RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release \
            --bin provenant --target "$target" --target-dir "$repo/target/static"
    )
    bin="$repo/target/static/$target/release/provenant"
fi
if ldd "$bin" >/dev/null 2>&1 && ! ldd "$bin" 2>&1 | grep -q 'statically linked'; then
    echo "build-images: $bin is not statically linked:" >&2
    ldd "$bin" >&2
    exit 1
fi

work="$(mktemp -d /tmp/provenant-images.XXXXXX)"
trap 'rm -rf "$work"' EXIT

# Files both images carry.
common_rootfs() {
    local root="$1"
    mkdir -p "$root/etc" "$root/tmp"
    chmod 1777 "$root/tmp"
    printf 'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
        >"$root/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
}

# build IMAGE CONTAINERFILE CONTEXT: podman build unless an image with the
# same context hash exists.
build() {
    local image="$1" containerfile="$2" ctx="$3" hash have
    cp "$containerfile" "$ctx/Containerfile"
    hash="$(
        cd "$ctx"
        find . -mindepth 1 -printf '%p %y %m %l\n' | LC_ALL=C sort | sha256sum | cut -d' ' -f1
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
    )"
    hash="$(printf '%s' "$hash" | sha256sum | cut -d' ' -f1)"
    have="$(podman image inspect --format '{{index .Labels "dev.provenant.context"}}' "$image" 2>/dev/null || true)"
    if [ "$have" = "$hash" ]; then
        echo "build-images: $image up to date" >&2
        return
    fi
    echo "build-images: building $image" >&2
    podman build --quiet --network none --label "dev.provenant.context=$hash" \
        -t "$image" -f "$ctx/Containerfile" "$ctx" >/dev/null
}

# provenant
ctx="$work/provenant"
common_rootfs "$ctx/rootfs"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$ctx/rootfs/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/"
fi
strip --strip-debug -o "$ctx/provenant" "$bin"
build "$provenant_image" "$repo/images/provenant.Containerfile" "$ctx"

# builder
ctx="$work/builder"
root="$ctx/rootfs"
common_rootfs "$root"
mkdir -p "$root/bin" "$root/usr/local/bin" "$root/opt"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
install -m 755 "$repo/images/builder/build.sh" "$root/usr/local/bin/build.sh"
# The hostile builder of the threat-model test (tests/pod_e2e.rs).
install -m 755 "$repo/images/builder/attack.sh" "$root/usr/local/bin/attack.sh"
cp -R "$repo/images/builder/source" "$root/opt/example-source"
chmod -R u=rwX,go=rX "$root/opt/example-source"
build "$builder_image" "$repo/images/builder.Containerfile" "$ctx"

# Both must start with nothing but what they carry.
v="$(podman run --rm --network none "$provenant_image" --version)"
podman run --rm --network none "$builder_image" sh -c 'command -v build.sh >/dev/null'
echo "build-images: $provenant_image ($v), $builder_image ready" >&2
