# The deployer image: a non-root, distroless runtime holding one binary.
#
#   docker build --build-arg DEPLOYER_GIT_COMMIT=$(git rev-parse HEAD) -t deployer .
#   docker run --rm -v "$PWD:/work" -e AWS_REGION -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
#       -e AWS_SESSION_TOKEN deployer run canary --release web:42 --service web
#
# The build stage runs the README's install command. The runtime stage is
# distroless/cc (glibc and libgcc, which the binary links; no shell, no package manager)
# as its `nonroot` user (uid 65532); `--target ci` is the same with a shell.
# tests/all/container_image.rs checks the stages' promises: the install command, the
# libraries, the user, the entrypoint.

FROM docker.io/library/rust:1.95-bookworm AS build
# The built-in strategies are WebAssembly components, built by the host's build script.
RUN rustup target add wasm32-unknown-unknown
WORKDIR /src
COPY . .
# `.git` is not in the build context: the commit `deployer --version` shows comes from here.
ARG DEPLOYER_GIT_COMMIT=""
RUN DEPLOYER_GIT_COMMIT="$DEPLOYER_GIT_COMMIT" cargo install --locked --path host/cli --root /out

# `--target ci`: the same binary with a shell, for CI systems that run a job's script
# inside the image (GitLab CI, Bitbucket Pipelines, Jenkins agents).
FROM docker.io/library/debian:bookworm-slim AS ci
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 65532 --user-group --create-home nonroot
COPY --from=build /out/bin/deployer /usr/local/bin/deployer
WORKDIR /work
USER 65532:65532

# The default target: no shell, no package manager, deployer as the entrypoint.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/bin/deployer /usr/local/bin/deployer
# The project's deployer.toml and its `.deployer/` state live in the mounted directory.
WORKDIR /work
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/deployer"]
CMD ["--help"]
