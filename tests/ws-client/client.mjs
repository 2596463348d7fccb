// Drives the real `graphql-ws` client for the integration tests (tests/it/subscriptions.rs).
//
// Usage: node client.mjs '<plan as JSON>'
//   plan: { url, authorization?, clients?: n, subscriptions: [{ query, variables? }],
//           urls?: [url, ...], retryMs?: n }
// With `urls` and `retryMs`, a connection that closes is opened again after `retryMs` on the
// next URL of the list (another replica), and graphql-ws subscribes again to what was open.
// Opens `clients` connections, each running every subscription, and prints one JSON line per
// event on stdout:
//   {"client":0,"type":"connected"}
//   {"client":0,"sub":1,"type":"next","payload":{...}}
//   {"client":0,"sub":1,"type":"error","error":...}
//   {"client":0,"sub":1,"type":"complete"}
//   {"client":0,"type":"closed","code":4401,"reason":"..."}
// Every event also carries `at`: when it happened, in milliseconds since the epoch (for the
// push benchmark, bench/push.rs).
// Without them it never retries, and runs until it is killed or every connection closed.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const plan = JSON.parse(process.argv[2]);
const print = (event) =>
  process.stdout.write(JSON.stringify({ ...event, at: performance.timeOrigin + performance.now() }) + '\n');

const clients = plan.clients ?? 1;
let open = clients;
for (let client = 0; client < clients; client++) {
  let attempt = 0;
  const retry = plan.urls !== undefined && plan.retryMs !== undefined;
  const connection = createClient({
    url: retry ? () => plan.urls[attempt++ % plan.urls.length] : plan.url,
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: retry ? 5 : 0,
    shouldRetry: () => retry,
    retryWait: () => new Promise((resolve) => setTimeout(resolve, plan.retryMs ?? 0)),
    connectionParams: plan.authorization === undefined ? undefined : { authorization: plan.authorization },
    on: {
      connected: () => print({ client, type: 'connected' }),
      closed: (event) => {
        print({ client, type: 'closed', code: event?.code, reason: event?.reason });
        if (retry) return;
        open -= 1;
        // Exit once the line is out: a write to a pipe is asynchronous.
        if (open === 0) process.stdout.write('', () => process.exit(0));
      },
    },
  });
  plan.subscriptions.forEach((subscription, sub) => {
    connection.subscribe(
      { query: subscription.query, variables: subscription.variables ?? {} },
      {
        next: (payload) => print({ client, sub, type: 'next', payload }),
        error: (error) =>
          print({
            client,
            sub,
            type: 'error',
            error: Array.isArray(error) ? error : { code: error?.code, reason: error?.reason, message: String(error?.message ?? error) },
          }),
        complete: () => print({ client, sub, type: 'complete' }),
      },
    );
  });
}
