# The deployer image: a non-root, distroless runtime holding one binary.
#
#   docker build --build-arg DEPLOYER_GIT_COMMIT=$(git rev-parse HEAD) -t deployer .
#   docker run --rm -v "$PWD:/work" -e AWS_REGION -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
#       -e AWS_SESSION_TOKEN deployer run canary --release web:42 --service web
#
# The build stage runs the README's install command. The runtime stage is
# distroless/cc (glibc and libgcc, which the binary links; no shell, no package manager)
# as its `nonroot` user (uid 65532). tests/all/container_image.rs checks both stages'
# promises: the install command, the libraries, the user, the entrypoint.

FROM docker.io/library/rust:1.95-bookworm AS build
# The built-in strategies are WebAssembly components, built by the host's build script.
RUN rustup target add wasm32-unknown-unknown
WORKDIR /src
COPY . .
# `.git` is not in the build context: the commit `deployer --version` shows comes from here.
ARG DEPLOYER_GIT_COMMIT=""
RUN DEPLOYER_GIT_COMMIT="$DEPLOYER_GIT_COMMIT" cargo install --locked --path host/cli --root /out

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/bin/deployer /usr/local/bin/deployer
# The project's deployer.toml and its `.deployer/` state live in the mounted directory.
WORKDIR /work
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/deployer"]
CMD ["--help"]
