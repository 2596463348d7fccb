#!/usr/bin/env python3
# Reads of a 100,000-node release (issue 26): 100 waves x 10 clusters x 1 bundle x 99 apps
# (100,101 nodes), written into the event store as another team's worker would (one
# `release.created`, then 500 apps `FAILED` in one statement), then each read 100 times in a row,
# with the server's own time from `Server-Timing: app`.
#
#   rm -rf .dev && RELEASE_CACHE_BYTES=0 PORT=18556 temporal-bff dev &   # the demo, no caches
#   bench/large.py [http://127.0.0.1:18556] [.dev]
#
# Needs `psql` (scripts/test installs PostgreSQL). The release is larger than
# RELEASE_PART_ABOVE_NODES (10,000 by default), so each read reads only the rows it shows.
import base64, json, os, subprocess, sys, tempfile, time, urllib.request, uuid

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:18556"
dev = sys.argv[2] if len(sys.argv) > 2 else ".dev"
port = open(f"{dev}/postgres/data/postmaster.pid").read().splitlines()[3].strip()
db = f"postgres://postgres@127.0.0.1:{port}/temporal_bff"
WAVES, CLUSTERS, APPS, RUNS = 100, 10, 99, 100


def psql(sql):
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as f:
        f.write(sql)
        f.flush()
        started = time.time()
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", db, "-f", f.name], check=True)
        return time.time() - started


def gql(query, variables=None, token=None):
    req = urllib.request.Request(base + "/graphql", json.dumps({"query": query, "variables": variables or {}}).encode(),
                                 {"content-type": "application/json"})
    if token:
        req.add_header("authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=120) as r:
        body = r.read()
        timing = r.headers.get("server-timing", "")
    app = next((float(p.split("dur=")[1]) for p in timing.split(",") if p.strip().startswith("app") and "dur=" in p), None)
    return json.loads(body), len(body), app


# LARGE_KEY=<key> reads a release an earlier run created instead of creating one.
key = os.environ.get("LARGE_KEY") or "large-" + uuid.uuid4().hex[:8]
rid = f"release:{key}"
nodes = [{"id": rid, "kind": "release", "key": key, "name": key}]
for w in range(1, WAVES + 1):
    wave = f"wave:{key}/wave-{w}"
    nodes.append({"id": wave, "kind": "wave", "key": f"wave-{w}", "name": f"wave-{w}", "parentId": rid, "position": w})
    for c in range(1, CLUSTERS + 1):
        path = f"{key}/wave-{w}/cluster-{c}"
        nodes.append({"id": f"cluster:{path}", "kind": "cluster", "key": f"cluster-{c}", "name": f"cluster-{c}",
                      "parentId": wave, "region": "eu", "position": c})
        nodes.append({"id": f"bundle:{path}/b", "kind": "bundle", "key": "b", "name": "b", "parentId": f"cluster:{path}", "version": "1"})
        for a in range(1, APPS + 1):
            nodes.append({"id": f"app:{path}/b/app-{a}", "kind": "app", "key": f"app-{a}", "name": f"app-{a}",
                          "parentId": f"bundle:{path}/b", "position": a, "version": "1"})
created = json.dumps({"id": rid, "key": key, "name": key, "nodes": nodes})
print(f"{len(nodes)} nodes; release.created is {len(created) / 1e6:.1f} MB of JSON; key {key}")
took = os.environ.get("LARGE_KEY") or psql("INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data) "
            f"VALUES ('release.created', 'release', gen_random_uuid(), $json${created}$json$::jsonb);")
if not os.environ.get("LARGE_KEY"):
    print(f"release.created through the projection triggers: {took:.2f} s ({len(nodes) / took:,.0f} nodes/s, psql included)")
    took = psql("INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data) "
            "SELECT 'release.app.status_changed', 'release', gen_random_uuid(), jsonb_build_object("
            f"'id', 'app:{key}/wave-' || w || '/cluster-' || c || '/b/app-1', 'releaseId', '{rid}', "
            "'status', 'FAILED', 'at', now()) FROM generate_series(1, 100) w, generate_series(1, 5) c;")
    print(f"500 app.status_changed in one statement: {took:.2f} s ({500 / took:,.0f} events/s, psql included)")

token = gql('mutation { login(email: "admin@example.com", password: "admin123") { token } }')[0]["data"]["login"]["token"]
reads = [
    ("Release.nodes(status: [FAILED], first: 100)",
     "query($id: ID!) { release(id: $id) { nodes(kind: [APP], status: [FAILED], first: 100) { totalCount edges { path { key } node { ... on App { key status } } } } } }"),
    ("Release.waves(first: 20) with progress",
     "query($id: ID!) { release(id: $id) { waves(first: 20) { key status progress { total succeeded failed percent } } } }"),
    ("Release.tree(status: [FAILED]), 500 matches",
     "query($id: ID!) { release(id: $id) { tree(status: [FAILED]) { key clusters { key apps { key status } } } } }"),
    ("Release.nodes(first: 100), the second page",
     "query($id: ID!) { release(id: $id) { nodes(first: 100, after: \"%s\") { edges { node { ... on App { key } } } } } }"
     % base64.urlsafe_b64encode(f"node|wave:{key}/wave-2".encode()).decode().rstrip("=")),
    ("Release.timeline (1,100 spans)",
     "query($id: ID!) { release(id: $id) { timeline { id status startedAt } } }"),
    ("Query.nodes(kind: APP, status: [FAILED], first: 100)",
     "{ nodes(kind: APP, status: [FAILED], first: 100) { edges { node { ... on App { id } } } } }"),
    ("a wave opened: waves(first: 1, offset: 3) down to its apps",
     "query($id: ID!) { release(id: $id) { waves(first: 1, offset: 3) { key clusters { key bundle { apps { key status } } } } } }"),
    ("the failed waves' failed apps: waves(status: [FAILED]) { clusters(status: [FAILED]) { ... } }",
     "query($id: ID!) { release(id: $id) { waves(status: [FAILED]) { key clusters(status: [FAILED]) { key bundle { apps(status: [FAILED]) { key } } } } } }"),
    ("the whole tree (refused)",
     "query($id: ID!) { release(id: $id) { waves { key clusters { key bundle { apps { key status } } } } } }"),
]
print(f"\n| read ({RUNS} in a row) | answer bytes | errors | server p50 ms | p99 ms |")
print("|---|---|---|---|---|")
for name, query in reads:
    times = []
    for _ in range(RUNS):
        body, size, app = gql(query, {"id": rid}, token)
        times.append(app)
    times.sort()
    codes = ",".join(e.get("extensions", {}).get("code", "?") for e in body.get("errors", [])) or "none"
    print(f"| {name} | {size:,} | {codes} | {times[len(times) // 2]:.1f} | {times[int(len(times) * 0.99) - 1]:.1f} |")
