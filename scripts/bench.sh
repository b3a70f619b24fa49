#!/usr/bin/env bash
# Reproduces every number in BENCHMARKS.md: the plugin host and fleet benchmarks, the
# deployment overhead, the state reads against a long history and a release of 50
# services in moto (these three run the release `deployer` binary).
# Takes a while: a release build of wasmtime and the AWS SDKs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo build --release --locked -p deployer
cargo bench --locked -p deployer-plugin-host --bench plugin_host
cargo bench --locked -p deployer --bench fleet
cargo bench --locked -p deployer-tests --bench hook_host
cargo bench --locked -p deployer-tests --bench deploy_overhead
cargo bench --locked -p deployer-tests --bench startup
cargo bench --locked -p deployer-tests --bench state_history
cargo bench --locked -p deployer-tests --bench release_fleet
