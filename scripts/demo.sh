#!/usr/bin/env bash
# The main job on a local default: compute the canary, blue-green and rolling plans of
# the example ECS service with the built-in WASM strategies. Touches no cloud.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo build --quiet --locked -p deployer
deployer="${CARGO_TARGET_DIR:-target}/debug/deployer"
for strategy in canary blue-green rolling; do
    "$deployer" plan "$strategy" --config examples/ecs-canary/deployer.toml
    echo
done
