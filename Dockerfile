# The provenant image, built from source, for any registry:
#
#   docker build -t provenant .                    # or: podman build -t provenant .
#   docker buildx build --platform linux/amd64,linux/arm64 \
#       --build-arg VCS_REF="$(git rev-parse HEAD)" \
#       --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
#       -t registry.example.com/provenant:0.1.0 --push .
#
# The same image as images/provenant.Containerfile, which
# scripts/build-images.sh uses with a locally built binary: FROM scratch,
# one statically linked binary at /bin/provenant, user 65532.
#
# RUST_IMAGE pins the build stage by digest (the index of
# rust:1.95.0-bookworm, the toolchain the project is tested with): a moved tag
# cannot change what is built. Override it to move to another toolchain or to
# use a mirror, always with a digest. The test machines pull nothing, so they
# check this file with a locally made base image instead (README, Install).
ARG RUST_IMAGE=docker.io/library/rust:1.95.0-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1

FROM ${RUST_IMAGE} AS build
# Set by BuildKit and buildah per platform; a plain `docker build` without
# BuildKit leaves it empty, and the build machine's own architecture is used.
ARG TARGETARCH
WORKDIR /src
# Each platform is built natively (under emulation when it is not the build
# machine's): glibc's static libraries for crt-static come with the image.
RUN arch="${TARGETARCH:-$(dpkg --print-architecture)}" \
 && case "$arch" in \
      amd64) echo x86_64-unknown-linux-gnu ;; \
      arm64) echo aarch64-unknown-linux-gnu ;; \
      *) echo "provenant: unsupported TARGETARCH $arch (amd64, arm64)" >&2; exit 1 ;; \
    esac >/target-triple

# Dependencies first, in a layer of their own: it is reused as long as
# Cargo.toml and Cargo.lock do not change, so editing provenant's sources
# rebuilds provenant only. The crate's own files are empty stand-ins here.
COPY Cargo.toml Cargo.lock build.rs ./
COPY build/ build/
RUN mkdir -p src benches \
 && echo 'fn main() {}' >src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' >benches/hot_paths.rs \
 && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --bin provenant \
        --target "$(cat /target-triple)" --target-dir /target \
 && rm -rf src benches

COPY src/ src/
COPY benches/ benches/
COPY .git_archival.txt ./
# The build context has no .git: build.rs takes the commit for --version from
# here (or from .git_archival.txt when the context is a git archive).
ARG VCS_REF=
ENV PROVENANT_GIT_COMMIT=${VCS_REF}
# COPY keeps the files' times, which may be older than the stand-ins': touch
# the crate roots so cargo rebuilds provenant itself.
RUN touch src/main.rs src/lib.rs \
 && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --bin provenant \
        --target "$(cat /target-triple)" --target-dir /target \
 && cp "/target/$(cat /target-triple)/release/provenant" /provenant \
 && strip --strip-debug /provenant \
 && /provenant --version \
 && mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp \
 && chmod 1777 /rootfs/tmp \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' >/rootfs/etc/group \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/

FROM scratch
ARG RUST_IMAGE
ARG VCS_REF=
ARG CREATED=
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="provenant" \
      org.opencontainers.image.description="Signed SLSA provenance for builders you cannot modify" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${CREATED}" \
      dev.provenant.build-image="${RUST_IMAGE}"
COPY --from=build /rootfs/ /
COPY --from=build /provenant /bin/provenant
# Never root by default: with shareProcessNamespace a process of the same uid
# in the builder container could reach the key through /proc/PID/root.
USER 65532:65532
WORKDIR /workspace
ENTRYPOINT ["/bin/provenant"]
