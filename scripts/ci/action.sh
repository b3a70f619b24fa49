#!/usr/bin/env bash
# The steps of the GitHub Actions composite action (action.yml), one per argument:
#   source   the version this action is, and a key of its source for the build cache;
#            `installed=true` when the `deployer` on PATH is that version already
#   install  find or build a `deployer` of that version (INPUT_INSTALL: auto | path) and
#            output its absolute `path`; on failure, `exit-code` 3 (bad input) or 4
#   run      run that binary with INPUT_COMMAND split into words (never through a shell),
#            `--config INPUT_CONFIG` if set; its exit code is the output `exit-code`
#            and the step's own
#
# Nothing a caller passes is echoed into the log: the runner reads `::command::` lines
# in a step's output, and a PR title in `command` must not become one.
set -euo pipefail
# Only absolute PATH entries: a relative one finds programs in whatever directory a step
# runs in, where a contributor could plant a `python3` or a `deployer`.
PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep '^/' | paste -sd: -)
export PATH
action="${GITHUB_ACTION_PATH:-$(cd "$(dirname "$0")/../.." && pwd)}"

# `0.1.0`: the workspace version in the action's Cargo.toml.
version() {
    sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$action/Cargo.toml"
}

# The version a `deployer` binary reports (`deployer 0.1.0 (…)` -> `0.1.0`).
version_of() {
    "$1" --version 2>/dev/null | sed -n '1s/^deployer \([0-9A-Za-z.+-]*\) .*/\1/p'
}

# The absolute path of the `deployer` PATH finds from here, if any.
on_path() {
    local found
    found=$(command -v deployer) || return 1
    echo "$(cd "$(dirname "$found")" && pwd -P)/$(basename "$found")"
}

# Whether the `deployer` PATH finds is version $1; its absolute path in `found` if any.
on_path_is() {
    found=$(on_path) && [ "$(version_of "$found")" = "$1" ]
}

fail() { # exit-code message
    echo "exit-code=$1" >>"$GITHUB_OUTPUT"
    echo "::error title=deployer::$2"
    exit "$1"
}

case "${1:-}" in
source)
    want=$(version)
    installed=false
    if on_path_is "$want"; then
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
    case "${INPUT_INSTALL:-auto}" in
    auto | path) ;;
    *) fail 3 "the install input is auto (the default) or path" ;;
    esac
    if on_path_is "$want"; then
        echo "deployer: using $found ($("$found" --version))"
        echo "path=$found" >>"$GITHUB_OUTPUT"
        exit 0
    fi
    if [ "${INPUT_INSTALL:-auto}" = path ]; then
        there="none"
        [ -z "${found:-}" ] || there="another version at $found"
        fail 3 "install: path needs deployer $want on PATH, and there is $there. Install it in an earlier step, or use install: auto"
    fi
    # One directory per source: a runner that keeps HOME never runs another source's build.
    root="$HOME/.deployer-action/${DEPLOYER_SOURCE_KEY:?}"
    if [ "$(version_of "$root/bin/deployer")" != "$want" ]; then
        echo "deployer: building $want from $action (cached for the next run)"
        trap 'echo "exit-code=4" >>"$GITHUB_OUTPUT"' ERR
        rustup target add wasm32-unknown-unknown
        cargo install --locked --path "$action/host/cli" --root "$root"
        trap - ERR
        if [ "$(version_of "$root/bin/deployer")" != "$want" ]; then
            fail 4 "the build of deployer $want left no working $root/bin/deployer"
        fi
    fi
    echo "deployer: using $root/bin/deployer ($("$root/bin/deployer" --version))"
    echo "path=$root/bin/deployer" >>"$GITHUB_OUTPUT"
    ;;
run)
    command -v python3 >/dev/null || fail 4 "python3 is needed to split the command input into words"
    # Words as a shell splits them (quotes group, `#` starts a comment), without a shell:
    # nothing in the command is executed. A control character (a quoted newline, a C1
    # control, a Unicode line separator) in a word or in `config` is refused: no deploy
    # needs one, and deployer may echo a word it refuses into the log the runner reads.
    words=$(mktemp)
    problem=$(python3 -c '
import os, shlex, sys
def controlled(text):
    return any(ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u2028\u2029" for c in text)
try:
    words = shlex.split(os.environ["INPUT_COMMAND"], comments=True)
except ValueError as err:
    sys.exit(f"the command input is not words a shell could split ({err}): check its quotes")
if not words:
    sys.exit("the command input is empty: give deployer arguments, e.g. run canary --service web --release web:42")
if any(controlled(word) for word in words):
    sys.exit("a word of the command input holds a control character (a quoted newline?): write the command on one line")
config = os.environ.get("INPUT_CONFIG", "")
if controlled(config):
    sys.exit("the config input holds a control character: give the path of deployer.toml")
if config:
    words.append("--config=" + config)
sys.stdout.write("".join(word + "\0" for word in words))
' 2>&1 >"$words") || fail 3 "$problem"
    mapfile -d '' args <"$words"
    rm -f "$words"
    # Into the working directory only now, with every program above already found.
    cd -- "${INPUT_WORKING_DIRECTORY:-.}" 2>/dev/null ||
        fail 3 "the working-directory input is not a directory of the workspace"
    status=0
    "${DEPLOYER_BIN:?}" "${args[@]}" || status=$?
    echo "exit-code=$status" >>"$GITHUB_OUTPUT"
    exit "$status"
    ;;
*)
    echo "usage: $0 source|install|run" >&2
    exit 2
    ;;
esac
