#!/usr/bin/env bash
# Installs everything the build and the test suites need, idempotently, on a fresh
# machine or an old one: the wasm targets for plugin components, and in a private venv
# moto (the AWS emulator the end-to-end suites run against) and componentize-py (which
# builds the Python example plugin offline), an npm cache with componentize-js (the
# JavaScript example's build), and a local Kubernetes control plane
# (kube-apiserver, kube-controller-manager, etcd; built once from Debian's sources by
# scripts/k8s-local.sh, ~10 min) for the EKS suite, and Debian's Prometheus server
# (/usr/bin/prometheus) that the Prometheus gate and metrics tests scrape real apps with.
# Safe to run again: each step checks for what it installs first and skips it if present.
#
# Usage: setup.sh [--kubernetes]   (the control plane only with --kubernetes: test.sh
# needs it, the demo and the benchmarks do not)
# Env: DEPLOYER_TOOLS (default ~/.cache/deployer) is where tools are installed.
set -euo pipefail
tools="${DEPLOYER_TOOLS:-$HOME/.cache/deployer}"
mkdir -p "$tools"

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo is missing; install Rust 1.95+ with rustup first" >&2
    exit 1
fi

installed_targets=$(rustup target list --installed)
for target in wasm32-unknown-unknown wasm32-wasip2; do
    if ! grep -qx "$target" <<<"$installed_targets"; then
        echo "setup: adding Rust target $target"
        rustup target add "$target"
    fi
done

venv="$tools/moto-venv"
moto_spec='moto[server]>=5.2,<5.3'
componentize_spec='componentize-py==0.25.1'
if ! "$venv/bin/python" -c 'import moto, sys; sys.exit(0 if moto.__version__.startswith("5.2.") else 1)' 2>/dev/null; then
    echo "setup: installing $moto_spec into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$moto_spec"
fi
if ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -q ' 0.25.1'; then
    echo "setup: installing $componentize_spec into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$componentize_spec"
fi
"$venv/bin/python" -c 'import moto; print("setup: moto", moto.__version__, "ready")'
echo "setup: $("$venv/bin/componentize-py" --version) ready"

# componentize-js (npm) builds the JavaScript example plugin. Its test runs `npm ci
# --offline` from the example's lockfile against this npm cache, so the cache is filled
# once per lockfile: the copy of the lockfile beside it says which one it holds.
npm_cache="$tools/npm"
js_lock="$(cd "$(dirname "$0")/.." && pwd)/plugins/examples/js-health/package-lock.json"
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if ! command -v npm >/dev/null 2>&1 || [ "$node_major" -lt 20 ]; then
    echo "setup: Node.js 20+ with npm is missing (the JavaScript example needs it); install it first" >&2
    exit 1
fi
if ! cmp -s "$js_lock" "$npm_cache/js-health.package-lock.json"; then
    echo "setup: filling $npm_cache from plugins/examples/js-health/package-lock.json"
    scratch=$(mktemp -d)
    cp "$(dirname "$js_lock")/package.json" "$js_lock" "$scratch/"
    (cd "$scratch" && npm ci --cache "$npm_cache" --no-audit --no-fund --loglevel=error >/dev/null)
    "$scratch/node_modules/.bin/componentize-js" --version >/dev/null
    cp "$js_lock" "$npm_cache/js-health.package-lock.json"
    rm -rf "$scratch"
fi
echo "setup: componentize-js $(node -p 'require(process.argv[1]).packages["node_modules/@bytecodealliance/componentize-js"].version' "$js_lock") (npm cache $npm_cache) ready"

# The Prometheus suites start /usr/bin/prometheus itself (tests/support/prometheus.rs).
if [ ! -x /usr/bin/prometheus ]; then
    echo "setup: installing Debian's prometheus package"
    # Only the binary is used: the package's own service is not needed by the tests.
    sudo_if_needed=()
    [ "$(id -u)" -eq 0 ] || sudo_if_needed=(sudo)
    "${sudo_if_needed[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_if_needed[@]}" apt-get install -y --no-install-recommends prometheus
fi
echo "setup: $(/usr/bin/prometheus --version 2>&1 | head -n1) ready"

[ "${1:-}" = "--kubernetes" ] || exit 0
k8s="$tools/k8s"
if [ ! -x "$k8s/bin/kube-apiserver" ] || [ ! -x "$k8s/bin/kube-controller-manager" ] || [ ! -x "$k8s/bin/etcd" ]; then
    echo "setup: building the local Kubernetes control plane into $k8s (about 10 minutes, once)"
    "$(dirname "$0")/k8s-local.sh" "$k8s" > "$tools/k8s-build.log" 2>&1 || {
        echo "setup: building Kubernetes failed; see $tools/k8s-build.log" >&2
        exit 1
    }
    # Only the binaries are needed: drop the sources and Go toolchain (~3 GiB).
    find "$k8s" -mindepth 1 -maxdepth 1 ! -name bin -exec rm -rf {} +
fi
echo "setup: Kubernetes $("$k8s/bin/kube-apiserver" --version 2>/dev/null | awk '{print $2}') ready"
