// A closed-loop load with exact per-request latencies, for where wrk's latency figures cannot be
// trusted: while Temporal hangs, Debian's wrk 4.1 reported an average latency ten times what 16
// connections can physically accumulate in the run. `connections` loops each POST `body` to
// `url` one after another for `seconds`; prints "RESULT requests req/s p50 p99 errors" (ms).
//   node bench/latency.mjs '{"url": …, "body": …, "token": …, "connections": 16, "seconds": 6}'
const plan = JSON.parse(process.argv[2]);
const latencies = [];
let errors = 0;
const end = performance.now() + plan.seconds * 1000;
const headers = { "content-type": "application/json", authorization: `Bearer ${plan.token}` };
const loop = async () => {
  while (performance.now() < end) {
    const started = performance.now();
    try {
      const response = await fetch(plan.url, { method: "POST", headers, body: plan.body });
      const text = await response.text();
      if (response.status !== 200 || text.includes('"errors"')) errors++;
    } catch {
      errors++;
    }
    latencies.push(performance.now() - started);
  }
};
const started = performance.now();
await Promise.all(Array.from({ length: plan.connections }, loop));
const elapsed = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))];
console.log(
  `RESULT ${latencies.length} ${(latencies.length / elapsed).toFixed(1)} ${at(0.5).toFixed(1)} ${at(0.99).toFixed(1)} ${errors}`,
);
