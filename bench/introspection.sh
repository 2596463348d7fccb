#!/usr/bin/env bash
# What the worst introspection document costs the server: its time and the server's peak RSS.
#
#   bench/introspection.sh [BINARY]     # default: this tree's debug build
#
# Starts BINARY's `dev` (its own Postgres, Temporal dev server and demo data, in a temp dir),
# logs in as the demo admin, then sends, with that token: GraphiQL's introspection query twice
# (the second one comes from kept bytes on builds that keep them), then the review's attack:
# 20 aliased `__type(name: "Node")` roots, each nesting `possibleTypes { interfaces { … } }`
# 7 times (depth 16, inside the depth limit). Prints each answer's time, size and code, and the
# server process's peak RSS (VmHWM) before and after the attack. Give an older build as BINARY
# to get the "before" figures.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-${CARGO_TARGET_DIR:-target}/debug/temporal-bff}
[ -x "$bin" ] || cargo build --quiet --bin temporal-bff
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
dir=$(mktemp -d)
chmod 755 "$dir"
DEV_DIR="$dir" PORT="$port" HOST=127.0.0.1 METRICS_ADDR="127.0.0.1:$(free_port)" LOG_LEVEL=warn LOG_FORMAT=json \
  setsid "$bin" dev >"$dir/dev.log" 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null; sleep 3; kill -KILL -- -$pid 2>/dev/null; rm -rf "$dir"' EXIT
base="http://127.0.0.1:$port"
token=""
for _ in $(seq 1 240); do
  token=$(curl -sf -X POST "$base/api/auth/login" -d 'username=admin@example.com&password=admin123' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' 2>/dev/null) && [ -n "$token" ] && break
  sleep 0.5
done
[ -n "$token" ] || { cat "$dir/dev.log"; exit 1; }
hwm() { awk '/VmHWM/ {print $2 " kB"}' "/proc/$pid/status"; }
send() { # name, document
  python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1]}))' "$2" >"$dir/body.json"
  curl -s -o "$dir/answer.json" -w '%{time_total} %{size_download}' -H "authorization: Bearer $token" \
    -H 'content-type: application/json' --data-binary @"$dir/body.json" "$base/graphql" >"$dir/timing"
  read -r seconds bytes <"$dir/timing" || true  # no newline at the end
  code=$(python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); print((a.get("errors") or [{}])[0].get("extensions",{}).get("code","ok"))' "$dir/answer.json" 2>/dev/null || echo "?")
  printf '%-34s %8.1f ms %10s bytes  %s\n' "$1" "$(python3 -c "print($seconds*1000)")" "$bytes" "$code"
}
attack=$(python3 - <<'PY'
inner = "name"
for _ in range(7):
    inner = f"name possibleTypes {{ name interfaces {{ {inner} }} }}"
print("{ " + " ".join(f't{i}: __type(name: "Node") {{ {inner} }}' for i in range(20)) + " }")
PY
)
echo "binary: $bin"
echo "attack document: ${#attack} bytes"
echo "peak RSS after start-up: $(hwm)"
send "GraphiQL's introspection" "$(cat tests/corpus/introspection/graphiql.graphql)"
send "GraphiQL's introspection, again" "$(cat tests/corpus/introspection/graphiql.graphql)"
send "nested Node attack (20 x 7 pairs)" "$attack"
echo "peak RSS after the attack: $(hwm)"
