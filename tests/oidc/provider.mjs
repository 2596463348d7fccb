// A real OpenID provider for the integration tests (tests/it/identity.rs): oidc-provider, a
// certified implementation, on loopback. It issues JWT access tokens by the client
// credentials grant with a resource indicator (audience `urn:temporal-bff`): client `dash-rs`
// gets RS256 tokens, `dash-es` ES256 ones. Discovery is at
// `{issuer}/.well-known/openid-configuration`.
//
// Usage: node provider.mjs '{"port": 9000, "scope": "release.control organization.view_all",
//                             "ttl": 300}'
// Prints `ready <issuer>` when it listens.
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

const provider = new Provider(issuer, {
  cookies: { keys: ['test-only-cookie-key'] },
  clients: [client('dash-rs', 'RS256'), client('dash-es', 'ES256')],
  extraClientMetadata: { properties: ['urn:test:alg'] },
  jwks: { keys: [await key('RS256', 'rsa-1'), await key('ES256', 'ec-1')] },
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
provider.listen(plan.port, '127.0.0.1', () => process.stdout.write(`ready ${issuer}\n`));
