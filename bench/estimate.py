#!/usr/bin/env python3
# Release.estimate against what happened, on the demo data: polls the estimate of the demo's
# rolling release (rel-2025-04: 4 waves of 3 clusters x 5 apps, 4 s per app, 15 s between waves)
# every 5 s until it finishes, then prints each estimate's error against the real completion.
#
#   rm -rf .dev && PORT=18555 temporal-bff dev &   # a fresh demo, so the release starts now
#   bench/estimate.py [http://127.0.0.1:18555]
import json, time, urllib.request
import sys
base = (sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:18555") + "/graphql"
def gql(q, v=None, token=None):
    req = urllib.request.Request(base, json.dumps({"query": q, "variables": v or {}}).encode(), {"content-type": "application/json"})
    if token: req.add_header("authorization", "Bearer " + token)
    return json.load(urllib.request.urlopen(req, timeout=10))
token = gql('mutation { login(email: "admin@example.com", password: "admin123") { token } }')["data"]["login"]["token"]
samples = []
from datetime import datetime
while True:
    d = gql('query { release(id: "release:rel-2025-04") { status startedAt completedAt estimate { completesAt appsPerMinute basis } progress { percent } } }', token=token)["data"]["release"]
    now = time.time()
    if d["status"] != "IN_PROGRESS":
        print("final", d["status"], d["completedAt"]); break
    samples.append((now, d["progress"]["percent"], d["estimate"]))
    time.sleep(5)
end = datetime.fromisoformat(d["completedAt"].replace("Z", "+00:00")).timestamp()
start = datetime.fromisoformat(d["startedAt"].replace("Z", "+00:00")).timestamp()
print(f"release ran {end-start:.1f} s")
for now, pct, est in samples:
    if est is None:
        print(f"t={now-start:6.1f}s  {pct:5.1f}%  estimate null"); continue
    e = datetime.fromisoformat(est["completesAt"].replace("Z", "+00:00")).timestamp()
    print(f"t={now-start:6.1f}s  {pct:5.1f}%  error {e-end:+6.1f}s  rate {est['appsPerMinute']:.1f}/min  {est['basis']}")
