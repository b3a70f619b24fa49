#!/usr/bin/env bash
# The quickstart: moto on 127.0.0.1 with an ALB, two target groups and an ECS service on
# task sets; a good and a bad version of a demo app behind it; then a canary of each.
# The good release (web:2) is promoted to 100%; the bad one (web:3, whose /health
# answers 500) fails its smoke test through the test listener and is rolled back.
#
# Usage: examples/quickstart/run.sh PATH/TO/deployer   (scripts/demo.sh builds it first)
# Env: DEPLOYER_TOOLS (default ~/.cache/deployer) holds the moto venv from scripts/setup.sh.
set -euo pipefail
deployer="$(realpath "$1")"
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
python="${DEPLOYER_TOOLS:-$HOME/.cache/deployer}/moto-venv/bin/python"
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$python" "$root/tests/support/moto_ecs.py" "$port" >"$work/moto.log" 2>&1 &
pids+=($!)
endpoint="http://127.0.0.1:$port"
for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
world=$("$python" "$root/tests/support/moto_world.py" "$endpoint")
get() { "$python" -c "import urllib.request as u,sys
try: print(u.urlopen(sys.argv[1]).read().decode().strip())
except Exception as e: print(e)" "$1"; }
field() { "$python" -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$2" "$1"; }

"$python" "$here/ground.py" "$endpoint" shop/web:3 >"$work/ground.json" 2>"$work/ground.log" &
pids+=($!)
for _ in $(seq 300); do
    [ -s "$work/ground.json" ] && break
    sleep 0.1
done
ports=$(head -1 "$work/ground.json")

# The config is examples/quickstart/deployer.toml with this run's values filled in.
sed -e "s|@endpoint@|$endpoint|" \
    -e "s|@listener@|$(field listener "$world")|" \
    -e "s|@test_listener@|$(field test_listener "$world")|" \
    -e "s|@blue@|$(field blue "$world")|" \
    -e "s|@green@|$(field green "$world")|" \
    -e "s|@test_port@|$(field test "$ports")|" \
    "$here/deployer.toml" >"$work/deployer.toml"
if grep -q '@[a-z_]*@' "$work/deployer.toml"; then
    echo "quickstart: a value of deployer.toml was not filled in:" >&2
    grep -n '@[a-z_]*@' "$work/deployer.toml" >&2
    exit 1
fi

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
cd "$work"
run() {
    echo
    echo "\$ deployer $*"
    "$deployer" "$@"
}
echo "quickstart: moto at $endpoint; production listener on 127.0.0.1:$(field production "$ports"), test listener on 127.0.0.1:$(field test "$ports")"

status=0
run run canary --release web:2 || status=$?
[ "$status" -eq 0 ] || { echo "quickstart: the good release should have been promoted (exit $status)" >&2; exit 1; }
echo "production now answers: $(get "http://127.0.0.1:$(field production "$ports")/health")"

status=0
run run canary --release web:3 || status=$?
[ "$status" -eq 1 ] || { echo "quickstart: the bad release should have been rolled back (exit $status)" >&2; exit 1; }
echo "production still answers: $(get "http://127.0.0.1:$(field production "$ports")/health")"

run status
run history
echo
echo "quickstart: web:2 promoted, web:3 rolled back automatically (exit code 1), production on web:2"
