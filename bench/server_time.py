#!/usr/bin/env python3
# Server time of one uncached tree read (issue 25, P2): N sequential POSTs of `bench/peer`'s
# document to a running `temporal-bff` (start it with RELEASE_CACHE_BYTES=0, e.g.
# `RELEASE_CACHE_BYTES=0 PORT=18556 temporal-bff dev`), p50 / p90 / p99 of `Server-Timing: app`.
# With SERVE_PID set, also the CPU per request of that process and of every `postgres` process
# of the machine (from /proc), over the same requests. QUERY replaces the document (`$id` is
# the release), and VARIABLES (a JSON object) adds variables.
#
#   bench/server_time.py [URL] [RELEASE_ID] [N]
#   SERVE_PID=$(pgrep -f 'temporal-bff dev') bench/server_time.py http://127.0.0.1:18556 release:rel-2025-05 1500
import json
import os
import subprocess
import sys
import urllib.request

url = (sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:18556").rstrip("/") + "/graphql"
release = sys.argv[2] if len(sys.argv) > 2 else "release:rel-2025-05"
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
serve_pid = os.environ.get("SERVE_PID")


def post(body, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bearer " + token
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request) as response:
        return response.read(), response.headers


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def postgres_pids():
    found = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


login = 'mutation { login(email: "admin@example.com", password: "admin123") { token } }'
token = json.loads(post({"query": login})[0])["data"]["login"]["token"]
fields = "id key name status startedAt completedAt message"
query = "query($id: ID!) { release(id: $id) { %s waves { %s clusters { %s bundle { %s apps { %s } } } } } }" % (
    (fields,) * 5
)
body = {
    "query": os.environ.get("QUERY", query),
    "variables": {"id": release, **json.loads(os.environ.get("VARIABLES", "{}"))},
}

for _ in range(min(runs, 300)):  # warm-up: connections, prepared statements, allocator
    post(body, token)

before = (cpu_ticks([serve_pid]) if serve_pid else 0, cpu_ticks(postgres_pids()))
times = []
for _ in range(runs):
    answer, headers = post(body, token)
    if b'"errors"' in answer[:200]:
        sys.exit("errors: %s" % answer[:500])
    timing = next(p for p in headers.get("Server-Timing", "").split(",") if p.strip().startswith("app"))
    times.append(float(timing.split("dur=")[1]))
after = (cpu_ticks([serve_pid]) if serve_pid else 0, cpu_ticks(postgres_pids()))

times.sort()
pick = lambda q: times[min(len(times) - 1, int(len(times) * q))]
line = "%s: %d bytes, %d reads, server ms p50 %.2f p90 %.2f p99 %.2f" % (
    release, len(answer), runs, pick(0.5), pick(0.9), pick(0.99))
if serve_pid:
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    line += ", CPU ms per read: serve %.2f, postgres %.2f" % (
        (after[0] - before[0]) * tick_ms / runs, (after[1] - before[1]) * tick_ms / runs)
print(line)
