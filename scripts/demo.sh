#!/usr/bin/env bash
# The main job on a local default: start moto and a good and a bad version of a demo app
# on 127.0.0.1, then deploy each with a canary. The good release is promoted; the bad one
# fails its smoke test and is rolled back automatically (see examples/quickstart/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
echo "demo: building deployer (the first build takes several minutes)"
cargo build --quiet --locked -p deployer
exec examples/quickstart/run.sh "${CARGO_TARGET_DIR:-target}/debug/deployer"
