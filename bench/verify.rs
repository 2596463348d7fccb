//! What verifying a bearer token costs, with warm keys: the service's own HS256 tokens, and
//! RS256 and ES256 tokens of an `AUTH_ISSUERS` issuer whose JWKS this bench serves on
//! loopback, each through the code every request runs (`TokenService::verify`,
//! `ExternalIssuers::issuer_of` + `Issuer::verify`). No database, no Temporal.
//!
//!     cargo bench --bench verify          # 20,000 verifications per kind
//!     VERIFY_CALLS=100000 cargo bench --bench verify
//!
//! Keys are made by Node's crypto (`node` on the PATH, as the integration tests need).

#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::{sync::Arc, time::Instant};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use temporal_bff::{Config, auth::external::ExternalIssuers, auth::token::TokenService};

/// A key pair of `kind` (`rsa` or `ec`) made by Node: the private key as DER (PKCS#1 for RSA,
/// SEC1 for EC) and the public JWK.
fn key(kind: &str, kid: &str, alg: &str) -> (EncodingKey, Value) {
    let (options, der_type) = match kind {
        "rsa" => ("{ modulusLength: 2048 }", "pkcs1"),
        _ => ("{ namedCurve: 'P-256' }", "pkcs8"),
    };
    let script = format!(
        "const {{ generateKeyPairSync }} = require('crypto');
         const {{ privateKey, publicKey }} = generateKeyPairSync('{kind}', {options});
         console.log(JSON.stringify({{
           der: privateKey.export({{ type: '{der_type}', format: 'der' }}).toString('base64'),
           jwk: publicKey.export({{ format: 'jwk' }}) }}));"
    );
    let out = std::process::Command::new("node")
        .args(["-e", &script])
        .output()
        .expect("node makes a key");
    let made: Value = serde_json::from_slice(&out.stdout).expect("node prints the key");
    let der = base64::engine::general_purpose::STANDARD
        .decode(made["der"].as_str().unwrap())
        .unwrap();
    let mut jwk = made["jwk"].clone();
    jwk["kid"] = json!(kid);
    jwk["alg"] = json!(alg);
    jwk["use"] = json!("sig");
    let encoding = match kind {
        "rsa" => EncodingKey::from_rsa_der(&der),
        _ => EncodingKey::from_ec_der(&der),
    };
    (encoding, jwk)
}

/// p50 and p99 of `calls` runs of `verify`, in µs.
async fn measure<F, Fut>(calls: usize, mut verify: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        assert!(verify().await, "the token verifies");
        samples.push(started.elapsed());
    }
    samples.sort();
    let at = |q: f64| {
        samples[((samples.len() as f64 * q).ceil() as usize).saturating_sub(1)].as_secs_f64() * 1e6
    };
    (at(0.5), at(0.99))
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::var("VERIFY_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let (rsa, rsa_jwk) = key("rsa", "rsa-1", "RS256");
    let (ec, ec_jwk) = key("ec", "ec-1", "ES256");
    let jwks = json!({ "keys": [rsa_jwk, ec_jwk] });
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let issuer = "https://idp.bench/";
    let issuers = json!([{ "issuer": issuer, "audience": "bench", "jwks_url": jwks_url,
                           "allow_http_loopback": true, "algorithms": ["RS256", "ES256"] }]);
    let env = [
        (
            "DATABASE_URL",
            "postgres://bench@127.0.0.1/bench".to_owned(),
        ),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef".to_owned()),
        ("AUTH_ISSUERS", issuers.to_string()),
    ];
    let config = Config::from_lookup(|name| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    })
    .expect("the bench's config is valid");
    let external = Arc::new(
        ExternalIssuers::new(
            &config.auth.issuers,
            Arc::new(temporal_bff::metrics::Metrics::new()),
        )
        .unwrap(),
    );
    let own = TokenService::new(&config);

    let now = chrono::Utc::now().timestamp();
    let claims = json!({ "iss": issuer, "aud": "bench", "sub": "bench-user", "iat": now,
                         "exp": now + 3600, "permissions": ["release.control"] });
    let sign = |alg: Algorithm, kid: &str, key: &EncodingKey| {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    };
    let rs256 = sign(Algorithm::RS256, "rsa-1", &rsa);
    let es256 = sign(Algorithm::ES256, "ec-1", &ec);
    let principal = temporal_bff::auth::Principal {
        user_id: uuid::Uuid::new_v4().to_string(),
        email: "bench@example.com".into(),
        org_id: None,
        role: None,
        permissions: Default::default(),
    };
    let (hs256, _) = own.issue(&principal).unwrap();

    // Warm: the first external token fetches the keys.
    let warm = external.issuer_of(&rs256).unwrap().verify(&rs256).await;
    assert!(warm.is_ok(), "{:?}", warm.err());

    println!("| token | verifications | p50 µs | p99 µs |\n|---|---|---|---|");
    let (p50, p99) = measure(calls, || {
        let ok = own.verify(&hs256).is_ok();
        async move { ok }
    })
    .await;
    println!("| HS256, the service's own | {calls} | {p50:.1} | {p99:.1} |");
    for (name, token) in [
        ("RS256 (2048-bit), external", &rs256),
        ("ES256 (P-256), external", &es256),
    ] {
        let external = Arc::clone(&external);
        let (p50, p99) = measure(calls, || {
            let external = Arc::clone(&external);
            let token = token.clone();
            async move {
                match external.issuer_of(&token) {
                    Some(issuer) => issuer.verify(&token).await.is_ok(),
                    None => false,
                }
            }
        })
        .await;
        println!("| {name} | {calls} | {p50:.1} | {p99:.1} |");
    }
}
