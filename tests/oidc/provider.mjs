// A real OpenID provider for the integration tests (tests/it/identity.rs): oidc-provider, a
// certified implementation, on loopback. It issues JWT access tokens by the client
// credentials grant with a resource indicator (audience `urn:temporal-bff`): client `dash-rs`
// gets RS256 tokens, `dash-es` ES256 ones. Discovery is at
// `{issuer}/.well-known/openid-configuration`.
//
// Usage: node provider.mjs '{"port": 9000, "scope": "release.control organization.view_all",
//                             "ttl": 300, "keysFile": "/tmp/keys.json", "rotate": "add"}'
// Prints `ready <issuer>` when it listens.
//
// Keys are new on every start, unless `keysFile` names where they are kept: then they are read
// from it (and written on the first start), so a restart on the same port is the same provider.
// `rotate` changes them on the way, as an operator rotates a provider's keys by restarting it
// with a new key set: `add` publishes a new RS256 key beside the signing one (tokens are still
// signed with the old one), `promote` makes the newest RS256 key the one that signs (the first
// of its algorithm, as oidc-provider picks it), the old one still published.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import Provider from 'oidc-provider';
import { exportJWK, generateKeyPair } from 'jose';

const plan = JSON.parse(process.argv[2]);
const issuer = `http://127.0.0.1:${plan.port}`;
const audience = 'urn:temporal-bff';
const key = async (alg, kid) => {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  return { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' };
};
const client = (id, alg) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  scope: plan.scope,
  // Only what routes the resource server's signing algorithm below.
  'urn:test:alg': alg,
});

let keys;
if (plan.keysFile && existsSync(plan.keysFile)) {
  keys = JSON.parse(readFileSync(plan.keysFile, 'utf8'));
} else {
  keys = [await key('RS256', 'rsa-1'), await key('ES256', 'ec-1')];
}
const rsa = keys.filter((k) => k.alg === 'RS256');
if (plan.rotate === 'add') {
  keys.push(await key('RS256', `rsa-${rsa.length + 1}`));
} else if (plan.rotate === 'promote') {
  const newest = rsa[rsa.length - 1];
  keys = [newest, ...keys.filter((k) => k !== newest)];
}
const provider = new Provider(issuer, {
  cookies: { keys: ['test-only-cookie-key'] },
  clients: [client('dash-rs', 'RS256'), client('dash-es', 'ES256')],
  extraClientMetadata: { properties: ['urn:test:alg'] },
  jwks: { keys },
  scopes: plan.scope.split(' '),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, _resource, client) => ({
        scope: plan.scope,
        audience,
        accessTokenTTL: plan.ttl ?? 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: client['urn:test:alg'] } },
      }),
    },
  },
});
// The keys are kept only once it listens: a start that fails (the port still held by the
// provider just stopped) changes nothing, and a retry rotates from the same keys.
const server = provider.listen(plan.port, '127.0.0.1', () => {
  if (plan.keysFile) writeFileSync(plan.keysFile, JSON.stringify(keys));
  process.stdout.write(`ready ${issuer}\n`);
});
server.on('error', (error) => {
  console.error(error.message);
  process.exit(1);
});
