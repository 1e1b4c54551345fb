#!/usr/bin/env bash
# Builds, with local podman and nothing pulled, the stand-in image of the
# kpack build pod that tests/webhook.rs plays (images/kpack-standin.Containerfile):
#
#   localhost/kpack-standin:dev   busybox FROM scratch + the step scripts + the example app
#
# The same way scripts/build-images.sh builds its images: the context is
# assembled in a temporary directory and the image rebuilt only when its
# hash (label dev.provenant.context) changed. Run scripts/podman-setup.sh
# once before. KPACK_STANDIN_IMAGE overrides the tag.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
image="${KPACK_STANDIN_IMAGE:-localhost/kpack-standin:dev}"
command -v podman >/dev/null || { echo "build-kpack-standins: podman not found (run scripts/podman-setup.sh)" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "build-kpack-standins: /bin/busybox missing (run scripts/podman-setup.sh)" >&2; exit 1; }

work="$(mktemp -d /tmp/provenant-kpack-standin.XXXXXX)"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root/etc" "$root/tmp" "$root/bin" "$root/opt" "$root/workspace"
chmod 1777 "$root/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\ncnb:x:1000:1000:cnb:/home/cnb:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\ncnb:x:1000:\n' >"$root/etc/group"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
cp -R "$repo/images/kpack-standin/cnb" "$root/cnb"
chmod -R u=rwX,go=rX "$root/cnb"
chmod 755 "$root"/cnb/process/* "$root"/cnb/lifecycle/*
cp -R "$repo/images/builder/source" "$root/opt/source"
chmod -R u=rwX,go=rX "$root/opt/source"
cp "$repo/images/kpack-standin.Containerfile" "$work/Containerfile"
hash="$(
    cd "$work"
    find . -mindepth 1 -printf '%p %y %m %l\n' | LC_ALL=C sort | sha256sum | cut -d' ' -f1
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
)"
hash="$(printf '%s' "$hash" | sha256sum | cut -d' ' -f1)"
have="$(podman image inspect --format '{{index .Labels "dev.provenant.context"}}' "$image" 2>/dev/null || true)"
if [ "$have" = "$hash" ]; then
    echo "build-kpack-standins: $image up to date" >&2
else
    echo "build-kpack-standins: building $image" >&2
    podman build --quiet --network none --label "dev.provenant.context=$hash" \
        -t "$image" -f "$work/Containerfile" "$work" >/dev/null
fi
podman run --rm --network none "$image" sh -c 'command -v exporter >/dev/null'
echo "build-kpack-standins: $image ready" >&2
