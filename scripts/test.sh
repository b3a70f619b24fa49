#!/usr/bin/env bash
# The test command: install what the suites need (once), then run every suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export DEPLOYER_MOTO_VENV="${DEPLOYER_TOOLS:-$HOME/.cache/deployer}/moto-venv"
exec cargo test --workspace --locked "$@"
