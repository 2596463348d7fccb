#!/usr/bin/env python3
# A 10,211-node release (10 waves x 10 clusters x 1 bundle x 100 apps) rolled out by the
# reference worker at its natural rate (stepMillis 0: each deploy as fast as Temporal and the
# worker go), read in part while it runs (issue 26). It prints:
#   - the rollout: time, history events, domain events per second;
#   - the projection triggers: their time per event and their share of the rollout, from
#     pg_stat_user_functions (turned on for the run with track_functions = 'pl');
#   - whether the projection kept up: how far it trailed the workflow's close;
#   - reads of the running release: server p50 / p99 from `Server-Timing: app`.
#
#   rm -rf .dev && RELEASE_CACHE_BYTES=0 PORT=18556 temporal-bff dev &
#   bench/rollout.py [http://127.0.0.1:18556] [.dev]
#
# Needs `psql` and the `temporal` CLI (scripts/test installs both).
import json, os, re, statistics, subprocess, sys, tempfile, threading, time, urllib.request, uuid

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:18556"
dev = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else ".dev")
port = open(f"{dev}/postgres/data/postmaster.pid").read().splitlines()[3].strip()
db = f"postgres://postgres@127.0.0.1:{port}/temporal_bff"
WAVES, CLUSTERS, APPS = 10, 10, 100


def temporal_address():
    """The gRPC port of the Temporal dev server `dev` started, from its command line."""
    for pid in os.listdir("/proc"):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in cmd]
        if "start-dev" in args and any(dev in a for a in args) and "--port" in args:
            return "127.0.0.1:" + args[args.index("--port") + 1]
    sys.exit("no Temporal dev server of " + dev)


def psql(*statements):
    """Runs each statement on its own (ALTER SYSTEM cannot share a transaction)."""
    commands = [arg for sql in statements for arg in ("-c", sql)]
    out = subprocess.run(["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", db, *commands], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def temporal(*args):
    out = subprocess.run(["temporal", *args, "--address", address], check=True, capture_output=True, text=True)
    return out.stdout


def gql(query, variables=None, token=None):
    req = urllib.request.Request(base + "/graphql", json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 {"content-type": "application/json"})
    if token:
        req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=60) as r:
        body = json.loads(r.read())
        timing = r.headers.get("server-timing", "")
    app = next((float(p.split("dur=")[1]) for p in timing.split(",") if p.strip().startswith("app") and "dur=" in p), None)
    return body, app


address = temporal_address()
key = "rollout-" + uuid.uuid4().hex[:8]
rid = f"release:{key}"
regions = ["us-west", "us-east", "eu-central", "ap-south"]
spec = {"key": key, "name": "Rollout bench", "options": {"stepMillis": 0}, "waves": [
    {"key": f"wave-{w + 1}", "name": f"Wave {w + 1}", "clusters": [
        {"key": f"cluster-{c + 1}", "name": f"Cluster {c + 1}", "region": regions[c % 4],
         "bundle": {"key": "web-services", "name": "Web services", "version": "2025.1.0",
                    "apps": [{"key": f"app-{a + 1}", "name": f"App {a + 1}", "version": f"1.{a}.0"}
                             for a in range(APPS)]}}
        for c in range(CLUSTERS)]} for w in range(WAVES)]}

token = gql('mutation { login(email: "admin@example.com", password: "admin123") { token } }')[0]["data"]["login"]["token"]
reads = {
    "nodes(status: [IN_PROGRESS], first: 100)":
        "query($id: ID!) { release(id: $id) { nodes(status: [IN_PROGRESS], first: 100) { totalCount edges { path { key } node { ... on App { id status } } } } } }",
    "waves(first: 20) with progress":
        "query($id: ID!) { release(id: $id) { waves(first: 20) { key status progress { total succeeded percent } } } }",
    "tree(status: [IN_PROGRESS])":
        "query($id: ID!) { release(id: $id) { tree(status: [IN_PROGRESS]) { key clusters { key apps { key status } } } } }",
    "timeline":
        "query($id: ID!) { release(id: $id) { timeline { id status startedAt completedAt } } }",
}
times = {name: [] for name in reads}
errors = []
done = threading.Event()


def reader():
    """Reads the running release in a loop, one read at a time, as a dashboard refreshing would."""
    while not done.is_set():
        for name, query in reads.items():
            body, app = gql(query, {"id": rid}, token)
            if body.get("errors"):
                errors.append((name, body["errors"][0].get("extensions", {}).get("code")))
            elif app is not None and (body.get("data") or {}).get("release"):
                times[name].append(app)


psql("ALTER SYSTEM SET track_functions = 'pl'", "SELECT pg_reload_conf()", "SELECT pg_stat_reset()")
try:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(spec, f)
        f.flush()
        started = time.time()
        temporal("workflow", "start", "--type", "ReleaseWorkflow", "--task-queue", "releases",
                 "--workflow-id", rid, "--input-file", f.name)
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    temporal("workflow", "result", "--workflow-id", rid)
    closed = time.time()
    # How long after the workflow's end the projection shows the release finished.
    while psql(f"SELECT status FROM bff.release_projection WHERE id = '{rid}'") not in ("SUCCEEDED", "FAILED"):
        time.sleep(0.01)
    projected = time.time()
    done.set()
    thread.join()
    triggers = psql("SELECT coalesce(sum(self_time), 0), coalesce(sum(calls), 0) FROM pg_stat_user_functions "
                    "WHERE schemaname = 'bff'").split("|")
finally:
    psql("ALTER SYSTEM RESET track_functions", "SELECT pg_reload_conf()")

describe = temporal("workflow", "describe", "--workflow-id", rid)
history = int(re.search(r"HistoryLength\s+(\d+)", describe).group(1))
events = int(psql(f"SELECT count(*) FROM domain_events WHERE event_data ->> 'releaseId' = '{rid}' OR event_data ->> 'id' = '{rid}'"))
took = closed - started
trigger_ms = float(triggers[0])
print(f"rollout of {WAVES * CLUSTERS * APPS:,} apps ({WAVES * CLUSTERS * (APPS + 2) + WAVES + 1:,} nodes): {took:.1f} s, "
      f"{history:,} history events (limit 51,200), {events:,} domain events = {events / took:,.0f} events/s")
# Trigger time includes waits for the wave's and the release's rows, whose roll-ups the ten
# clusters' writers all update.
print(f"projection triggers: {trigger_ms / 1000:.2f} s in {int(triggers[1]):,} calls = {trigger_ms / events:.3f} ms per event "
      f"(row-lock waits included), {trigger_ms / 10 / took:.1f} % of the rollout's wall time")
print(f"projection finished {1000 * (projected - closed):.0f} ms after the workflow's result was read")
print(f"reads while it ran: {sum(len(t) for t in times.values())}, errors: {errors[:5] or 'none'}\n")
print("| read while the rollout runs | reads | server p50 ms | p99 ms |")
print("|---|---|---|---|")
for name, t in times.items():
    t.sort()
    if t:
        print(f"| {name} | {len(t)} | {statistics.median(t):.1f} | {t[max(0, int(len(t) * 0.99) - 1)]:.1f} |")
