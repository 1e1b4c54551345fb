#!/usr/bin/env bash
# Makes rootful podman work on this kind of machine (Debian 12, no systemd as
# PID 1, no CAP_SYS_RESOURCE, no network but the package mirrors) for the pod
# end-to-end tests (tests/pod_e2e.rs). Idempotent: installs only what is
# missing, rewrites one drop-in file, then runs a smoke test.
#
# What is needed, and why (found by running podman here, podman 4.3.1):
#
# * Packages: podman, runc (the OCI runtime used; crun is not required),
#   catatonit (podman builds its pause image `localhost/podman-pause:VERSION`
#   from /usr/bin/catatonit locally, so `podman kube play` needs no pull of
#   k8s.gcr.io/pause; the infra container is what shareProcessNamespace and
#   the shared network namespace hang off), busybox-static (the builder
#   image is busybox FROM scratch; nothing can be pulled from a registry).
# * /etc/containers/containers.conf.d/50-provenant.conf:
#   - [containers] default_ulimits: podman's default RLIMIT_NOFILE is
#     1048576 and the sandbox has no CAP_SYS_RESOURCE to raise the hard limit,
#     so every container fails with "error setting rlimit type 7: operation
#     not permitted" unless the limits are lowered to what the host allows.
#   - [engine] runtime = "runc": runc works here.
#   - [engine] cgroup_manager = "cgroupfs": there is no systemd to ask for
#     scopes (podman picks cgroupfs itself when systemd is absent; said
#     explicitly so a machine with a half-working systemd does not differ).
#   - [engine] events_logger = "file": no journald.
#   Storage: the default overlay driver works (kernel overlayfs, rootful);
#   nothing to set.
# * Networking: the tests run pods with `podman kube play --network none`,
#   so containers of a pod share only a loopback interface (enough for the
#   HTTP completion on 127.0.0.1) and no bridge or DNS is set up.
# * Secrets: podman 4.3 `kube play` writes a Secret volume's `data:` values
#   still base64-encoded and ignores `stringData:` (podman issue #16625,
#   fixed in 4.4), and it crashes on a secret volume without an explicit
#   `optional:`. The tests therefore mount the key with a hostPath volume in
#   the pod variant they generate (the podmanize function in
#   tests/pod_e2e.rs); the manifests
#   under manifests/examples keep the Secret volume for Kubernetes.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "podman-setup: must run as root (the e2e tests use rootful podman)" >&2
    exit 1
fi

need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v catatonit >/dev/null || need+=(catatonit)
# The builder image copies /bin/busybox into a FROM scratch image: it must be
# the static build (package busybox-static, which replaces busybox).
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' ||
    need+=(busybox-static)
if ((${#need[@]})); then
    echo "podman-setup: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

mkdir -p /etc/containers/containers.conf.d
conf=/etc/containers/containers.conf.d/50-provenant.conf
want='# Written by provenant scripts/podman-setup.sh: rootful podman in a
# sandbox without CAP_SYS_RESOURCE, systemd or journald.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"'
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
    printf '%s\n' "$want" >"$conf"
    echo "podman-setup: wrote $conf" >&2
fi

# Smoke test: a FROM scratch busybox image built locally, run once.
smoke=localhost/provenant-smoke:dev
if ! podman image exists "$smoke"; then
    ctx="$(mktemp -d /tmp/provenant-smoke.XXXXXX)"
    trap 'rm -rf "$ctx"' EXIT
    mkdir -p "$ctx/bin"
    cp /bin/busybox "$ctx/bin/busybox"
    ln -s busybox "$ctx/bin/sh"
    printf 'FROM scratch\nCOPY bin/ /bin/\nENTRYPOINT ["/bin/sh"]\n' >"$ctx/Containerfile"
    podman build --quiet -t "$smoke" "$ctx" >/dev/null
fi
if ! out="$(podman run --rm --network none "$smoke" -c 'echo ok' 2>&1)" || [ "$out" != ok ]; then
    echo "podman-setup: smoke test failed: podman run printed:" >&2
    echo "$out" >&2
    exit 1
fi
echo "podman-setup: podman $(podman version --format '{{.Client.Version}}') works" >&2
