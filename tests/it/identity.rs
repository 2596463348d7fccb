//! Tokens from the platform's identity providers (`AUTH_ISSUERS`): a real OpenID provider
//! (`oidc-provider` from npm, tests/oidc) found through discovery, with RS256 and ES256 access
//! tokens; Supabase's legacy HS256 tokens with their custom claims, which start bootstraps
//! through GraphQL and the old REST route; hostile tokens of each kind; `LOCAL_LOGIN=false`.

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
    fixtures::{ME, no_data, sign},
    harness::{PASSWORD, TestApp, error_code},
};

const AUDIENCE: &str = "urn:temporal-bff";
const SCOPE: &str = "release.control organization.view_all";
const SUPABASE: &str = "https://ref.supabase.co/auth/v1";

/// oidc-provider on a free loopback port, stopped when dropped.
struct OpenIdProvider {
    issuer: String,
    _child: tokio::process::Child,
}

impl OpenIdProvider {
    async fn start(ttl_seconds: u64) -> Self {
        let port = temporal_bff::devstack::free_port().expect("a free port");
        let plan = json!({ "port": port, "scope": SCOPE, "ttl": ttl_seconds });
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
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .unwrap_or_default();
        let issuer = ready
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("the provider did not start: {ready:?}"))
            .to_owned();
        Self {
            issuer,
            _child: child,
        }
    }

    /// An access token for `client` (`dash-rs`: RS256, `dash-es`: ES256).
    async fn token(&self, client: &str) -> String {
        let response: Value = reqwest::Client::new()
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
}

fn supabase_entry() -> Value {
    json!({ "issuer": SUPABASE, "audience": "authenticated",
            "hs256_secret_env": "SUPABASE_JWT_SECRET", "algorithms": ["HS256"],
            "max_lifetime_seconds": 3600 })
}

const SUPABASE_SECRET: &str = "supabase-legacy-project-secret-0123456789";

/// Supabase's claims, with the custom `permissions`, `org_id` and `user_role`.
fn supabase_claims(permissions: &[&str]) -> Value {
    let now = Utc::now().timestamp();
    json!({ "iss": SUPABASE, "aud": "authenticated", "sub": uuid::Uuid::new_v4().to_string(),
            "email": "ops@platform.example", "role": "authenticated", "iat": now, "exp": now + 600,
            "permissions": permissions, "org_id": uuid::Uuid::new_v4().to_string(),
            "user_role": "provider_admin" })
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    sign(claims, Header::new(Algorithm::HS256), secret)
}

async fn app_trusting(issuers: Value, extra: &[(&str, String)]) -> TestApp {
    let mut env = vec![
        ("AUTH_ISSUERS", issuers.to_string()),
        ("SUPABASE_JWT_SECRET", SUPABASE_SECRET.to_owned()),
    ];
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
