#!/usr/bin/env bash
# The steps of the GitHub Actions composite action (action.yml), one per argument:
#   source   the version this action is, and a key of its source for the build cache;
#            `installed=true` when the `deployer` on PATH is that version already
#   install  put a `deployer` of that version on PATH (INPUT_INSTALL: auto | path)
#   run      run deployer with INPUT_COMMAND split into words (never through a shell),
#            `--config INPUT_CONFIG` if set; its exit code is the output `exit-code`
#            and the step's own
set -euo pipefail
action="${GITHUB_ACTION_PATH:-$(cd "$(dirname "$0")/../.." && pwd)}"
home="$HOME/.deployer-action"

# `0.1.0`: the workspace version in the action's Cargo.toml.
version() {
    sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$action/Cargo.toml"
}

# The version a `deployer` binary reports (`deployer 0.1.0 (…)` -> `0.1.0`).
version_of() {
    "$1" --version 2>/dev/null | sed -n 's/^deployer \([^ ]*\).*/\1/p'
}

case "${1:-}" in
source)
    want=$(version)
    installed=false
    if command -v deployer >/dev/null && [ "$(version_of deployer)" = "$want" ]; then
        installed=true
    fi
    # Everything the binary is built from; a branch ref moves, the sources' hash does not lie.
    key=$(cd "$action" && find Cargo.toml Cargo.lock host plugins/sdk plugins/build plugins/judge strategies wit \
        -type f -not -path '*/target/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
    {
        echo "version=$want"
        echo "key=$want-$key"
        echo "installed=$installed"
    } >>"$GITHUB_OUTPUT"
    ;;
install)
    want=$(version)
    if command -v deployer >/dev/null && [ "$(version_of deployer)" = "$want" ]; then
        echo "deployer: using $(command -v deployer) ($(deployer --version))"
        exit 0
    fi
    if [ "${INPUT_INSTALL:-auto}" = path ]; then
        found=$(command -v deployer || echo "no deployer")
        echo "::error title=deployer::install: path wants deployer $want on PATH; found: $found. Install it in an earlier step, or use install: auto"
        exit 3
    fi
    if [ "$(version_of "$home/bin/deployer")" != "$want" ]; then
        echo "deployer: building $want from $action (cached for the next run)"
        rustup target add wasm32-unknown-unknown
        cargo install --locked --path "$action/host/cli" --root "$home"
    fi
    echo "$home/bin" >>"$GITHUB_PATH"
    echo "deployer: using $home/bin/deployer ($("$home/bin/deployer" --version))"
    ;;
run)
    # Words as a shell splits them, without a shell: nothing in the command is executed.
    words=$(mktemp)
    if ! python3 -c '
import os, shlex, sys
for word in shlex.split(os.environ["INPUT_COMMAND"]):
    sys.stdout.write(word + "\0")
' >"$words"; then
        echo "::error title=deployer::the command input is not words a shell could split (an unclosed quote?): $INPUT_COMMAND"
        echo "exit-code=3" >>"$GITHUB_OUTPUT"
        exit 3
    fi
    mapfile -d '' args <"$words"
    rm -f "$words"
    if [ -n "${INPUT_CONFIG:-}" ]; then
        args+=(--config "$INPUT_CONFIG")
    fi
    status=0
    deployer "${args[@]}" || status=$?
    echo "exit-code=$status" >>"$GITHUB_OUTPUT"
    exit "$status"
    ;;
*)
    echo "usage: $0 source|install|run" >&2
    exit 2
    ;;
esac
