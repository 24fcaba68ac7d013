# syntax=docker/dockerfile:1
#
# mongomirror-rs as a small container image: a static musl binary on a distroless base, run as
# a non-root user, with the binary as the entry point.
#
#   docker build -t mongomirror-rs .
#   docker run --rm -v mongomirror-data:/data mongomirror-rs --host rs0/src1:27017 --destination ...
#
# The image has every mechanism except GSSAPI (Kerberos needs the system library, which a static
# binary cannot link); see docs/cli.md. Building for another architecture works the same way with
# `docker buildx build --platform linux/arm64`.

# ---- build: Alpine's Rust targets musl, so the binary comes out statically linked.
FROM rust:1-alpine AS build
# A C compiler and the kernel headers: ring, zstd and aws-lc (MONGODB-AWS) compile C code.
RUN apk add --no-cache build-base linux-headers
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mongomirror \
 && strip target/release/mongomirror \
 && ./target/release/mongomirror --version \
 && mkdir /data

# ---- runtime: no shell, no package manager; CA certificates and a `nonroot` user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/mongomirror /usr/local/bin/mongomirror
# The bookmark file (mongomirror.bookmark) and the oplog spool are written to the working
# directory: mount a volume on /data so that a restart can resume.
COPY --from=build --chown=65532:65532 /data /data
WORKDIR /data
VOLUME ["/data"]
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/mongomirror"]
CMD ["--help"]
