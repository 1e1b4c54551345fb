# The provenant image, built from source: `docker build -t provenant .`
# Same result as images/provenant.Containerfile, which scripts/build-images.sh
# uses with a locally built binary (the test machines cannot pull the Rust
# base image below, so this file is not exercised by the tests).
FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
# glibc with crt-static: one self-contained binary for a FROM scratch image.
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --bin provenant \
        --target "$(uname -m)-unknown-linux-gnu" --target-dir /target \
 && cp "/target/$(uname -m)-unknown-linux-gnu/release/provenant" /provenant \
 && strip --strip-debug /provenant \
 && mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp \
 && chmod 1777 /rootfs/tmp \
 && printf 'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' >/rootfs/etc/group \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/

FROM scratch
COPY --from=build /rootfs/ /
COPY --from=build /provenant /bin/provenant
# Never root by default; see images/provenant.Containerfile.
USER 65532:65532
WORKDIR /workspace
ENTRYPOINT ["/bin/provenant"]
