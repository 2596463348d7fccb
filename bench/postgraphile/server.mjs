// PostGraphile 5.1.5 as bench/peer runs it: the `bff` schema of the given database, served by
// grafserv on Node's own HTTP server under node:cluster with WORKERS processes (2 by default,
// one per core, as PostGraphile 4's --cluster-workers 2 did), in production mode (no
// GraphiQL, no explain, no query log). Lists are plain lists ("simple collections only"), so
// every server answers the same nested arrays. Amber names the `id` column `rowId` (`id` is
// the Relay node ID); bench/peer asks for it as `id: rowId`.
//   node server.mjs <connection string> <port>
import cluster from "node:cluster";
import { createServer } from "node:http";

const [connectionString, port] = process.argv.slice(2);
const workers = Number(process.env.WORKERS ?? 2);

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on("exit", (worker, code) => {
    console.error(`worker ${worker.process.pid} exited with ${code}`);
    process.exit(1);
  });
} else {
  const { postgraphile } = await import("postgraphile");
  const { grafserv } = await import("postgraphile/grafserv/node");
  const { PostGraphileAmberPreset } = await import("postgraphile/presets/amber");
  const { makePgService } = await import("postgraphile/adaptors/pg");
  const preset = {
    extends: [PostGraphileAmberPreset],
    pgServices: [makePgService({ connectionString, schemas: ["bff"], poolConfig: { max: 10 } })],
    schema: { defaultBehavior: "-connection +list" },
    grafserv: { graphqlPath: "/graphql", graphiql: false, explain: false, watch: false },
    grafast: { explain: false },
  };
  const pgl = postgraphile(preset);
  const serv = pgl.createServ(grafserv);
  const server = createServer();
  server.on("error", (error) => {
    console.error(error);
    process.exit(1);
  });
  await serv.addTo(server);
  server.listen(Number(port), "127.0.0.1");
}
