#!/usr/bin/env bash
# The test command: install what the suites need (once), then run every suite: the
# workspace, and the example plugins' own unit tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --kubernetes
export DEPLOYER_MOTO_VENV="${DEPLOYER_TOOLS:-$HOME/.cache/deployer}/moto-venv"
export DEPLOYER_NPM_CACHE="${DEPLOYER_TOOLS:-$HOME/.cache/deployer}/npm"
cargo test --locked --manifest-path plugins/examples/Cargo.toml
exec cargo test --workspace --locked "$@"
