# Shared by the shell benchmarks (bench/peer, bench/pooler): a throwaway stack in a temp dir
# and wrk with a summary line of our own. Source it after scripts/lib/prereqs.sh and
# ensure_prereqs; it sets `work`, `pids`, `admin` (a superuser URL without database) and the
# functions below, and cleans everything up on exit.

# The client of the same cluster as the server binaries (a fresh machine may have no other).
psql() { "$PG_BIN_DIR/psql" "$@"; }

work=$(mktemp -d)
pids=()
cleanup() {
  # Each child leads its own process group (setsid): npx's node and PostGraphile's cluster
  # workers go with it.
  for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -f "$work/pg/postmaster.pid" ] && pg stop -D "$work/pg" -m immediate >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pg() {
  local tool=pg_ctl
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$PG_BIN_DIR/$tool" "$@"; else "$PG_BIN_DIR/$tool" "$@"; fi
}
wait_for() { # what, seconds, command...
  local what=$1 limit=$2 i
  shift 2
  for ((i = 0; i < limit * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  die "$what not ready after ${limit} s (logs in $work)"
}

# Starts Postgres (fsync off, 300 connections) and a Temporal dev server in $work, creates the
# databases named as arguments, exports DATABASE_URL (the first of them), TEMPORAL_ADDRESS,
# LOG_LEVEL and JWT_SECRET, and seeds the demo data with `temporal-bff dev` ($bin) until the
# 1,211-node release $release has succeeded.
start_stack() {
  log "starting Postgres and a Temporal dev server in $work"
  pg_port=$(free_port)
  mkdir "$work/pg" && { [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$work/pg"; }
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$PG_BIN_DIR/initdb" -D "$work/pg" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  else
    "$PG_BIN_DIR/initdb" -D "$work/pg" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  fi
  pg start -D "$work/pg" -w -l "$work/pg/log" \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off -c synchronous_commit=off -c max_connections=300" >/dev/null
  admin="postgres://postgres@127.0.0.1:$pg_port"
  local db
  for db in "$@"; do psql -qX "$admin/postgres" -c "CREATE DATABASE $db"; done
  t_port=$(free_port)
  setsid "$TEMPORAL_CLI" server start-dev --headless --ip 127.0.0.1 --port "$t_port" --ui-port "$(free_port)" \
    --db-filename "$work/temporal.sqlite" --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=off \
    --log-level warn >/dev/null 2>"$work/temporal.log" &
  pids+=($!)
  temporal_pid=$!
  wait_for temporal 60 "$TEMPORAL_CLI" operator namespace describe --namespace default --address "127.0.0.1:$t_port"

  export DATABASE_URL="$admin/$1" TEMPORAL_ADDRESS="127.0.0.1:$t_port" LOG_LEVEL=warn
  export JWT_SECRET="peer-bench-$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
  log "seeding the demo data (temporal-bff dev: worker and demo, its own server unused)"
  PORT=$(free_port) setsid "$bin" dev >"$work/dev.log" 2>&1 &
  pids+=($!)
  wait_for "the 1,211-node demo release" 300 \
    bash -c "[ \"\$('$PG_BIN_DIR/psql' -qtAX '$DATABASE_URL' -c \"SELECT status FROM bff.release_projection WHERE id = '$release'\")\" = SUCCEEDED ]"
}

# A GraphQL request body: query $1 with variable `id` = $2.
body() { python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1], "variables": {"id": sys.argv[2]}}))' "$1" "$2"; }

# wrk with a summary line of our own: requests, req/s, p50 ms, p99 ms, errors. An empty body
# is a plain GET (where any 200 counts).
wrk_run() { # url body connections [token]
  local script="$work/wrk-$RANDOM.lua"
  python3 - "$2" "${4:-}" >"$script" <<'PY'
import json, sys
body, token = sys.argv[1], sys.argv[2]
if body:
    print('wrk.method = "POST"')
    print('wrk.body = %s' % json.dumps(body))
    print('wrk.headers["Content-Type"] = "application/json"')
if token:
    print('wrk.headers["Authorization"] = "Bearer %s"' % token)
print('''
responses = 0
response = function(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then wrk.thread:set("bad", (wrk.thread:get("bad") or 0) + 1) end
end
threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (t:get("bad") or 0) end
  local e = summary.errors
  io.write(string.format("RESULT %d %.1f %.1f %.1f %d\\n", summary.requests,
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, bad + e.connect + e.read + e.write + e.timeout))
end''')
PY
  wrk -t2 -c"$3" -d"${seconds}s" --timeout 10s -s "$script" "$1" | grep '^RESULT'
}
