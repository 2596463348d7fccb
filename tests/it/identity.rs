//! Tokens from the platform's identity providers (`AUTH_ISSUERS`): a real OpenID provider
//! (`oidc-provider` from npm, tests/oidc) found through discovery, with RS256 and ES256 access
//! tokens; Supabase's legacy HS256 tokens with their custom claims, which start bootstraps
//! through GraphQL and the old REST route; Supabase's asymmetric and Zitadel's tokens from a key
//! set the test serves (rotation under load, the endpoint down, an oversized key set, expiry
//! on a socket); hostile tokens of each kind; `LOCAL_LOGIN=false`.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use base64::Engine;
use chrono::Utc;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{
    fixtures::{
        KeyServer, ME, SUPABASE_SECRET, asymmetric, no_data, rsa_key, sign, supabase_claims,
        supabase_entry, supabase_env,
    },
    harness::{PASSWORD, TestApp, error_code},
};

const AUDIENCE: &str = "urn:temporal-bff";
const SCOPE: &str = "release.control organization.view_all";

/// oidc-provider on a free loopback port, stopped when dropped.
struct OpenIdProvider {
    issuer: String,
    _child: tokio::process::Child,
}

impl OpenIdProvider {
    async fn start(ttl_seconds: u64) -> Self {
        let port = temporal_bff::devstack::free_port().expect("a free port");
        Self::start_on(port, ttl_seconds, None, None).await
    }

    /// A provider that can be stopped and started again as itself: its keys kept in a file of
    /// a scratch dir, on a port of its own. Returns it, the file and the port for
    /// [`Self::start_on`].
    async fn restartable(ttl_seconds: u64) -> (Self, std::path::PathBuf, u16) {
        let keys = crate::harness::scratch_dir("temporal-bff-oidc-").join("keys.json");
        let port = temporal_bff::devstack::free_port().expect("a free port");
        let provider = Self::start_on(port, ttl_seconds, Some(&keys), None).await;
        (provider, keys, port)
    }

    /// The provider on `port`, its keys kept in `keys_file` when given (so a restart is the
    /// same provider) and changed by `rotate` (`add`, `promote`: tests/oidc/provider.mjs).
    /// Retried for a few seconds while the port is still held by a provider just stopped.
    async fn start_on(
        port: u16,
        ttl_seconds: u64,
        keys_file: Option<&std::path::Path>,
        rotate: Option<&str>,
    ) -> Self {
        let plan = json!({ "port": port, "scope": SCOPE, "ttl": ttl_seconds,
                           "keysFile": keys_file, "rotate": rotate });
        let mut last = String::new();
        for _ in 0..20 {
            let mut child = tokio::process::Command::new("node")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/oidc/provider.mjs"
                ))
                .arg(plan.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("node runs the provider (scripts/test installs it)");
            let stdout = child.stdout.take().expect("the provider's stdout is piped");
            let mut lines = BufReader::new(stdout).lines();
            last = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
                .unwrap_or_default();
            if let Some(issuer) = last.strip_prefix("ready ") {
                return Self {
                    issuer: issuer.to_owned(),
                    _child: child,
                };
            }
            // The port is still held: the provider kept nothing, so the retry rotates alike.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("the provider did not start: {last:?}");
    }

    /// An access token for `client` (`dash-rs`: RS256, `dash-es`: ES256).
    async fn token(&self, client: &str) -> String {
        let response: Value = crate::harness::http_client()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(format!("{client}-secret")))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", AUDIENCE),
                ("scope", SCOPE),
            ])
            .send()
            .await
            .expect("the provider answers")
            .json()
            .await
            .expect("the provider answers JSON");
        response["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token: {response}"))
            .to_owned()
    }

    /// Its JWKS, as it publishes it.
    async fn jwks(&self) -> Value {
        reqwest::get(format!("{}/jwks", self.issuer))
            .await
            .expect("the provider answers")
            .json()
            .await
            .expect("the JWKS is JSON")
    }

    fn entry(&self) -> Value {
        json!({ "issuer": self.issuer, "audience": AUDIENCE, "discovery": true,
                "algorithms": ["RS256", "ES256"], "allow_http_loopback": true,
                "leeway_seconds": 0, "claims": { "permissions": "/scope" } })
    }

    /// [`Self::entry`], trusting fetched keys for `seconds` while the provider is down.
    fn entry_stale_after(&self, seconds: u64) -> Value {
        let mut entry = self.entry();
        entry["jwks_max_stale_seconds"] = json!(seconds);
        entry
    }
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    sign(claims, Header::new(Algorithm::HS256), secret)
}

async fn app_trusting(issuers: Value, extra: &[(&str, String)]) -> TestApp {
    let mut env = supabase_env(issuers);
    env.extend(extra.iter().cloned());
    TestApp::spawn_with_worker(&env).await
}

#[tokio::test]
async fn rs256_and_es256_tokens_of_a_real_openid_provider_are_verified_through_discovery() {
    // Arrange
    let provider = OpenIdProvider::start(300).await;
    let app = app_trusting(json!([provider.entry()]), &[]).await;
    let rs = provider.token("dash-rs").await;
    let es = provider.token("dash-es").await;

    // Act
    let with_rs = app.graphql_as(&rs, ME, json!({})).await;
    let with_es = app.graphql_as(&es, ME, json!({})).await;
    let releases = app
        .graphql_as(&es, "{ releases(first: 1) { totalCount } }", json!({}))
        .await;

    // Assert
    for (body, subject) in [(&with_rs, "dash-rs"), (&with_es, "dash-es")] {
        assert!(body["errors"].is_null(), "{body}");
        assert_eq!(body["data"]["me"]["id"], subject);
        let permissions = body["data"]["me"]["permissions"].to_string();
        assert!(
            permissions.contains("release.control")
                && permissions.contains("organization.view_all"),
            "the scope became permissions: {permissions}"
        );
    }
    assert!(releases["errors"].is_null(), "{releases}");
    let metrics = app.get_text(&app.ops_url("/metrics")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("bff_jwks_fetches_total{") && l.contains("outcome=\"ok\"")),
        "the key fetch is counted"
    );
}

/// Replaces `token`'s header with `header` (its signature then no longer matches).
fn with_header(token: &str, header: Value) -> String {
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string());
    let rest = token
        .split_once('.')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    format!("{encoded}.{rest}")
}

#[tokio::test]
async fn hostile_tokens_of_every_issuer_kind_are_refused_with_no_data() {
    // Arrange: a real provider, Supabase's legacy secret and the service's own tokens.
    let provider = OpenIdProvider::start(300).await;
    let app = app_trusting(json!([provider.entry(), supabase_entry()]), &[]).await;
    let real = provider.token("dash-rs").await;
    let jwks = provider.jwks().await;
    let rsa = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kty"] == "RSA"))
        .cloned()
        .expect("the provider publishes an RSA key");
    let now = Utc::now().timestamp();
    let provider_claims = json!({ "iss": provider.issuer, "aud": AUDIENCE, "sub": "mallory",
                                  "scope": SCOPE, "iat": now, "exp": now + 300 });
    let rsa_n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(rsa["n"].as_str().unwrap_or_default())
        .expect("n is base64url");
    let supabase = |edit: &dyn Fn(&mut Value)| {
        let mut claims = supabase_claims(&["organization.create_root"]);
        edit(&mut claims);
        hs256(&claims, SUPABASE_SECRET.as_bytes())
    };
    let hostile: Vec<(&str, String)> = vec![
        // Algorithm confusion: HS256 keyed with the provider's RSA public key.
        (
            "hs256 keyed with the rsa public key",
            hs256(&provider_claims, &rsa_n),
        ),
        (
            "hs256 keyed with the jwk json",
            hs256(&provider_claims, rsa.to_string().as_bytes()),
        ),
        ("alg none", {
            let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(provider_claims.to_string());
            format!("eyJhbGciOiJub25lIn0.{payload}.")
        }),
        (
            "jku to the attacker's keys",
            with_header(
                &real,
                json!({ "alg": "RS256", "kid": "attacker", "jku": "http://127.0.0.1:1/jwks" }),
            ),
        ),
        (
            "embedded jwk",
            with_header(&real, json!({ "alg": "RS256", "jwk": rsa })),
        ),
        (
            "x5u to the attacker's certificate",
            with_header(
                &real,
                json!({ "alg": "RS256", "kid": "attacker", "x5u": "http://127.0.0.1:1/cert.pem" }),
            ),
        ),
        (
            "unknown kid",
            with_header(&real, json!({ "alg": "RS256", "kid": "rsa-404" })),
        ),
        (
            "a kid of another issuer",
            with_header(&real, json!({ "alg": "ES256", "kid": "ec-of-supabase" })),
        ),
        ("unknown iss", {
            let mut claims = supabase_claims(&[]);
            claims["iss"] = json!("https://evil.example/auth/v1");
            hs256(&claims, SUPABASE_SECRET.as_bytes())
        }),
        (
            "missing exp",
            supabase(&|c| {
                c.as_object_mut().map(|o| o.remove("exp"));
            }),
        ),
        (
            "lifetime over the maximum",
            supabase(&|c| c["exp"] = json!(now + 7 * 86_400)),
        ),
        (
            "aud mismatch",
            supabase(&|c| c["aud"] = json!("someone-else")),
        ),
        (
            "nbf in the future",
            supabase(&|c| c["nbf"] = json!(now + 3_600)),
        ),
        ("expired", supabase(&|c| c["exp"] = json!(now - 3_600))),
        (
            "supabase claims signed with another secret",
            hs256(
                &supabase_claims(&["organization.create_root"]),
                b"not-the-project-secret-0123456789abcdef",
            ),
        ),
        (
            "the service's own issuer with a provider signature",
            with_header(&real, json!({ "alg": "RS256", "kid": "rsa-1" })).replace(
                real.split('.').nth(1).unwrap_or_default(),
                &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                    json!({ "iss": app.config.auth.jwt_issuer, "aud": app.config.auth.jwt_audience,
                            "sub": "mallory", "iat": now, "exp": now + 300,
                            "permissions": ["organization.create_root"] })
                    .to_string(),
                ),
            ),
        ),
    ];

    // Act and assert
    let started = Instant::now();
    for (kind, token) in &hostile {
        let body = app.graphql_as(token, ME, json!({})).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{kind}: {body}");
        assert!(no_data(&body), "{kind}: {body}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refusing {} tokens stays cheap: {:?}",
        hostile.len(),
        started.elapsed()
    );
    let still = app.graphql_as(&real, ME, json!({})).await;
    assert_eq!(still["data"]["me"]["id"], "dash-rs", "{still}");
}

#[tokio::test]
async fn a_supabase_legacy_token_starts_a_bootstrap_through_graphql_and_the_old_route() {
    // Arrange
    let app = app_trusting(json!([supabase_entry()]), &[]).await;
    let token = hs256(
        &supabase_claims(&["organization.create_root", "organization.view_all"]),
        SUPABASE_SECRET.as_bytes(),
    );
    let input = |subdomain: &str| {
        json!({ "name": "Supa Org", "subdomain": subdomain, "type": "PROVIDER",
                "adminUsers": [{ "email": "ada@supa.example", "firstName": "Ada",
                                 "lastName": "Lovelace" }] })
    };
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];

    // Act
    let me = app.graphql_as(&token, ME, json!({})).await;
    let by_graphql = app
        .graphql_as(
            &token,
            "mutation($input: StartOrganizationBootstrapInput!) {
               startOrganizationBootstrap(input: $input) { organizationId status } }",
            json!({ "input": input(&format!("supa-gql-{suffix}")) }),
        )
        .await;
    let mut rest_body = input(&format!("supa-rest-{suffix}"));
    rest_body["type"] = json!("provider");
    let by_rest = app
        .http
        .post(app.url("/api/v1/workflows/organization-bootstrap"))
        .bearer_auth(&token)
        .json(&rest_body)
        .send()
        .await
        .expect("the old route answers");
    let rest_status = by_rest.status().as_u16();

    // Assert
    assert_eq!(me["data"]["me"]["role"], "provider_admin", "{me}");
    assert_eq!(me["data"]["me"]["email"], "ops@platform.example", "{me}");
    assert!(me["data"]["me"]["orgId"].is_string(), "{me}");
    assert!(by_graphql["errors"].is_null(), "{by_graphql}");
    assert_eq!(rest_status, 201, "the old route accepts the Supabase token");
}

#[tokio::test]
async fn with_local_login_off_login_is_forbidden_on_both_routes_and_external_tokens_still_work() {
    // Arrange
    let app = app_trusting(
        json!([supabase_entry()]),
        &[("LOCAL_LOGIN", "false".to_owned())],
    )
    .await;
    app.create_user("local@example.com", None, &[]).await;
    let token = hs256(&supabase_claims(&[]), SUPABASE_SECRET.as_bytes());

    // Act
    let login = app.login("local@example.com", PASSWORD).await;
    let rest = app
        .http
        .post(app.url("/api/auth/login"))
        .form(&[("username", "local@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .expect("the REST login answers");
    let me = app.graphql_as(&token, ME, json!({})).await;

    // Assert
    assert_eq!(error_code(&login), "FORBIDDEN", "{login}");
    assert!(
        no_data(&login) || login["data"]["login"].is_null(),
        "{login}"
    );
    assert_eq!(rest.status().as_u16(), 403);
    assert!(me["errors"].is_null(), "{me}");
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_at_most_one_key_fetch() {
    // Arrange
    let provider = OpenIdProvider::start(300).await;
    let app = app_trusting(json!([provider.entry()]), &[]).await;
    let real = provider.token("dash-rs").await;
    let warm = app.graphql_as(&real, ME, json!({})).await;
    let fetched = || async {
        let metrics = app.get_text(&app.ops_url("/metrics")).await;
        metrics
            .lines()
            .filter(|l| l.starts_with("bff_jwks_fetches_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let before = fetched().await;

    // Act: 50 tokens at once, each naming a key the provider never published.
    let answers = futures::future::join_all((0..50).map(|n| {
        let token = with_header(
            &real,
            json!({ "alg": "RS256", "kid": format!("forged-{n}") }),
        );
        let app = &app;
        async move { app.graphql_as(&token, ME, json!({})).await }
    }))
    .await;
    let after = fetched().await;

    // Assert
    assert!(warm["errors"].is_null(), "{warm}");
    for answer in &answers {
        assert_eq!(error_code(answer), "UNAUTHENTICATED", "{answer}");
    }
    assert!(
        after - before <= 1.0,
        "unknown kids fetched the keys {} times",
        after - before
    );
}

/// An RSA key pair made by Node's own crypto: its private key (PKCS#1 DER) and its public JWK
/// named `kid`.
#[tokio::test]
async fn keys_that_rotate_while_eight_clients_call_cost_not_a_single_401() {
    // Arrange: the issuer publishes k1; eight clients call with k1 tokens.
    let (k1, jwk1) = rsa_key("k1");
    let (k2, jwk2) = rsa_key("k2");
    let server = KeyServer::start(vec![jwk1.clone()]).await;
    let app = app_trusting(json!([server.entry(3_600)]), &[]).await;
    let clients = Callers::start(&app, asymmetric(&k1, "k1", 600));

    // Act: k2 is published beside k1, then tokens move to k2, then k1 is retired.
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.publish(vec![jwk2.clone(), jwk1]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    clients.use_token(asymmetric(&k2, "k2", 600));
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.publish(vec![jwk2]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (calls, refused) = clients.stop().await;

    // Assert
    none_refused(calls, &refused);
}

/// Eight clients calling `ME` one request after another with the token they are given, until
/// stopped.
struct Callers {
    token: std::sync::Arc<std::sync::RwLock<String>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<(u32, Vec<Value>)>>,
}

impl Callers {
    fn start(app: &TestApp, token: String) -> Self {
        let token = std::sync::Arc::new(std::sync::RwLock::new(token));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients = (0..8)
            .map(|_| {
                let (http, url) = (app.http.clone(), app.url("/graphql"));
                let (token, stop) = (std::sync::Arc::clone(&token), std::sync::Arc::clone(&stop));
                tokio::spawn(async move {
                    let (mut calls, mut refused) = (0_u32, Vec::new());
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let bearer = token.read().map(|t| t.clone()).unwrap_or_default();
                        let body: Value = http
                            .post(&url)
                            .bearer_auth(&bearer)
                            .json(&json!({ "query": ME }))
                            .send()
                            .await
                            .expect("the service answers")
                            .json()
                            .await
                            .unwrap_or(Value::Null);
                        calls += 1;
                        if !body["errors"].is_null() {
                            refused.push(body);
                        }
                    }
                    (calls, refused)
                })
            })
            .collect();
        Self {
            token,
            stop,
            clients,
        }
    }

    /// From now on, every client calls with `token`.
    fn use_token(&self, token: String) {
        if let Ok(mut current) = self.token.write() {
            *current = token;
        }
    }

    /// Stops the clients: how many calls they made, and every refused answer.
    async fn stop(self) -> (u32, Vec<Value>) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (mut calls, mut refused) = (0, Vec::new());
        for client in self.clients {
            let (n, mut bad) = client.await.expect("the client ran");
            calls += n;
            refused.append(&mut bad);
        }
        (calls, refused)
    }
}

/// The clients kept calling (`calls`), and none of their calls was `refused`.
fn none_refused(calls: u32, refused: &[Value]) {
    assert!(calls > 40, "the clients kept calling: {calls}");
    assert!(
        refused.is_empty(),
        "{} of {calls} refused: {:?}",
        refused.len(),
        refused.first()
    );
}

/// The `kid` in a token's header.
fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .ok()
        .and_then(|header| header.kid)
        .unwrap_or_default()
}

#[tokio::test]
async fn the_real_providers_keys_rotated_by_restarts_while_eight_clients_call_cost_not_a_single_401()
 {
    // Arrange: oidc-provider keeps its keys in a file, so it can be restarted as itself; eight
    // clients call with its RS256 token.
    let (provider, keys, port) = OpenIdProvider::restartable(600).await;
    let app = app_trusting(json!([provider.entry()]), &[]).await;
    let first = provider.token("dash-rs").await;
    let clients = Callers::start(&app, first.clone());

    // Act: restarted with a new key published beside the signing one; restarted again with
    // the new key signing; the clients move to its tokens.
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(provider);
    let provider = OpenIdProvider::start_on(port, 600, Some(&keys), Some("add")).await;
    let published = provider.jwks().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(provider);
    let provider = OpenIdProvider::start_on(port, 600, Some(&keys), Some("promote")).await;
    let second = provider.token("dash-rs").await;
    clients.use_token(second.clone());
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (calls, refused) = clients.stop().await;

    // Assert
    assert_eq!(kid_of(&first), "rsa-1");
    assert_eq!(
        kid_of(&second),
        "rsa-2",
        "the provider signs with the new key"
    );
    assert!(
        published.to_string().contains("\"rsa-2\""),
        "the new key was published before it signed: {published}"
    );
    none_refused(calls, &refused);
}

#[tokio::test]
async fn while_the_key_endpoint_is_down_cached_keys_serve_then_tokens_are_refused_then_work_again()
{
    // Arrange: keys older than 2 s are not trusted; the endpoint answers 503 while down.
    let (key, jwk) = rsa_key("k1");
    let server = KeyServer::start(vec![jwk]).await;
    let app = app_trusting(json!([server.entry(2)]), &[]).await;
    let token = asymmetric(&key, "k1", 600);

    // Act and assert
    through_an_outage_of_the_keys(&app, &token, async |down| server.set_down(down)).await;
}

#[tokio::test]
async fn while_the_real_provider_is_stopped_cached_keys_serve_then_tokens_are_refused_then_work_again()
 {
    // Arrange: oidc-provider, restartable as itself; keys older than 2 s are not trusted.
    let (provider, keys, port) = OpenIdProvider::restartable(600).await;
    let app = app_trusting(json!([provider.entry_stale_after(2)]), &[]).await;
    let token = provider.token("dash-es").await;
    let mut running = Some(provider);

    // Act and assert: stopped (nothing listens), then started again.
    through_an_outage_of_the_keys(&app, &token, async |down| {
        if down {
            running = None;
        } else {
            running = Some(OpenIdProvider::start_on(port, 600, Some(&keys), None).await);
        }
    })
    .await;
}

/// Calls with `token` before, during and after an outage of its issuer's key endpoint
/// (`set_down(true)`, then `set_down(false)`), whose keys are trusted for 2 s: asserts the
/// cached keys serve at first, then the token is refused with no data and the failed fetches
/// are counted, then it works again.
async fn through_an_outage_of_the_keys(
    app: &TestApp,
    token: &str,
    mut set_down: impl AsyncFnMut(bool),
) {
    let works = || async { app.graphql_as(token, ME, json!({})).await["errors"].is_null() };
    let before = works().await;
    set_down(true).await;
    let right_after = works().await;
    let refused = crate::harness::eventually(Duration::from_secs(15), || async {
        (!works().await).then_some(())
    })
    .await;
    let refusal = app.graphql_as(token, ME, json!({})).await;
    let metrics = app.get_text(&app.ops_url("/metrics")).await;
    set_down(false).await;
    let back = crate::harness::eventually(Duration::from_secs(15), || async {
        works().await.then_some(())
    })
    .await;

    assert!(before, "the key is fetched and used");
    assert!(
        right_after,
        "the cached key serves while the endpoint is down"
    );
    assert!(
        refused.is_some(),
        "refused once the keys are older than the bound"
    );
    assert_eq!(error_code(&refusal), "UNAUTHENTICATED", "{refusal}");
    assert!(no_data(&refusal), "{refusal}");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("bff_jwks_fetches_total{") && l.contains("outcome=\"failed\"")),
        "failed fetches are counted"
    );
    assert!(
        back.is_some(),
        "tokens work again once the endpoint is back"
    );
}

#[tokio::test]
async fn a_socket_opened_with_an_external_token_closes_with_4401_when_it_expires() {
    // Arrange
    let (key, jwk) = rsa_key("k1");
    let server = KeyServer::start(vec![jwk]).await;
    let app = app_trusting(json!([server.entry(3_600)]), &[]).await;
    let token = asymmetric(&key, "k1", 3);

    // Act
    let mut socket = crate::fixtures::RawSocket::open(&app).await;
    socket.init(&token).await;
    let closed = socket.close_reason().await;

    // Assert
    assert_eq!(closed.map(|(code, _)| code), Some(4401));
}

#[tokio::test]
async fn a_zitadel_token_maps_its_roles_object_to_permissions_on_get_graphql_and_rest_me() {
    // Arrange: Zitadel's claims, its roles an object keyed by role name.
    let (key, jwk) = rsa_key("zitadel-1");
    let server = KeyServer::start(vec![jwk]).await;
    let org = uuid::Uuid::new_v4().to_string();
    let entry = json!({ "issuer": "https://acme.zitadel.cloud", "audience": "2912@temporal-bff",
        "jwks_url": server.url, "allow_http_loopback": true, "algorithms": ["RS256"],
        "claims": { "permissions": "/urn:zitadel:iam:org:project:roles",
                    "org_id": "/urn:zitadel:iam:user:resourceowner:id" } });
    let app = app_trusting(json!([entry]), &[]).await;
    let now = Utc::now().timestamp();
    let claims = json!({ "iss": "https://acme.zitadel.cloud", "aud": ["2912@temporal-bff", "2911"],
        "sub": "218765431", "iat": now, "exp": now + 600, "email": "ada@acme.example",
        "urn:zitadel:iam:org:project:roles": {
            "release.control": { "2447": "acme.zitadel.cloud" },
            "organization.view_all": { "2447": "acme.zitadel.cloud" } },
        "urn:zitadel:iam:user:resourceowner:id": org });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("zitadel-1".into());
    let token = jsonwebtoken::encode(&header, &claims, &key).expect("the token is signed");

    // Act
    let by_get: Value = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", ME)])
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET /graphql answers")
        .json()
        .await
        .expect("GET /graphql answers JSON");
    let rest = app
        .http
        .get(app.url("/api/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("/api/auth/me answers");
    let rest_status = rest.status().as_u16();
    let rest_me: Value = rest.json().await.unwrap_or(Value::Null);

    // Assert
    let me = &by_get["data"]["me"];
    assert_eq!(me["id"], "218765431", "{by_get}");
    assert_eq!(me["orgId"], org.as_str(), "{by_get}");
    assert_eq!(
        me["permissions"],
        json!(["organization.view_all", "release.control"]),
        "{by_get}"
    );
    assert_eq!(rest_status, 200, "{rest_me}");
    assert!(
        rest_me.to_string().contains("release.control"),
        "REST /api/auth/me shows the same caller: {rest_me}"
    );
}

#[tokio::test]
async fn a_key_set_over_the_size_cap_is_never_used_and_a_normal_one_is_taken_once_served() {
    // Arrange: the endpoint serves a key set of about a megabyte.
    let (key, jwk) = rsa_key("k1");
    let server = KeyServer::start(vec![jwk.clone(); 2_000]).await;
    let app = app_trusting(json!([server.entry(2)]), &[]).await;
    let token = asymmetric(&key, "k1", 600);

    // Act
    let refused = app.graphql_as(&token, ME, json!({})).await;
    server.publish(vec![jwk]);
    let works = crate::harness::eventually(Duration::from_secs(15), || async {
        app.graphql_as(&token, ME, json!({})).await["errors"]
            .is_null()
            .then_some(())
    })
    .await;

    // Assert
    assert_eq!(error_code(&refused), "UNAUTHENTICATED", "{refused}");
    assert!(no_data(&refused), "{refused}");
    assert!(works.is_some(), "the normal key set is fetched and used");
}
