//! Fixtures more than one test file uses: releases and bootstraps started or seeded, logins,
//! tokens of every kind, a raw socket, the store's fingerprint. Test files import from here and
//! from `harness`, never from each other.

use std::{collections::HashMap, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use futures::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use temporal_bff::{
    auth::token::Claims,
    contracts::{ids::Key, release::ReleaseSpec},
    worker::release::ReleaseWorkflow,
};
use temporalio_client::{Client, WorkflowStartOptions};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
use uuid::Uuid;

use crate::harness::TestApp;

/// A login sent through a trusted proxy on behalf of `client`.
pub async fn login_from(app: &TestApp, client: &str, email: &str, password: &str) -> Value {
    app.http
        .post(app.url("/graphql"))
        .header("x-forwarded-for", client)
        .json(&json!({
            "query": "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
            "variables": { "e": email, "p": password },
        }))
        .send()
        .await.expect("the request is answered")
        .json()
        .await.expect("the answer is JSON")
}

/// Appends the events of a closed, one-node release created at `minute` past an hour.
pub async fn seed_closed_release(app: &TestApp, key: &str, name: &str, minute: u32, status: &str) {
    let at = format!("2025-01-01T10:{minute:02}:00Z");
    let id = format!("release:{key}");
    let events = json!([
        { "type": "release.created", "data": { "id": id, "key": key, "name": name, "at": at,
          "nodes": [{ "id": id, "kind": "release", "key": key, "name": name, "position": 0 }] } },
        { "type": "release.status_changed", "data": { "id": id, "kind": "release", "status": status, "at": at } },
    ]);
    for event in events.as_array().into_iter().flatten() {
        sqlx::query(
            "INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data, created_at)
             VALUES ($1, 'release', gen_random_uuid(), $2, $3::timestamptz)",
        )
        .bind(event["type"].as_str())
        .bind(&event["data"])
        .bind(&at)
        .execute(&app.db)
        .await.expect("the statement runs");
    }
}

/// A release written straight into the event store, as another team's worker would: one
/// wave, one cluster, one bundle and the apps `app-1` … `app-{apps}`, all `PENDING`.
pub async fn foreign_release(app: &TestApp, apps: usize) -> String {
    let key = unique_key("push");
    let id = format!("release:{key}");
    let wave = format!("wave:{key}/w");
    let cluster = format!("cluster:{key}/w/c");
    let bundle = format!("bundle:{key}/w/c/b");
    let mut nodes = vec![
        json!({ "id": id, "kind": "release", "key": key, "name": key }),
        json!({ "id": wave, "kind": "wave", "key": "w", "name": "w", "parentId": id, "position": 1 }),
        json!({ "id": cluster, "kind": "cluster", "key": "c", "name": "c", "parentId": wave, "region": "eu" }),
        json!({ "id": bundle, "kind": "bundle", "key": "b", "name": "b", "parentId": cluster, "version": "1" }),
    ];
    for n in 1..=apps {
        nodes.push(json!({ "id": format!("app:{key}/w/c/b/app-{n}"), "kind": "app",
            "key": format!("app-{n}"), "name": format!("app-{n}"), "parentId": bundle, "position": n }));
    }
    insert_event(
        app,
        "release.created",
        json!({ "id": id, "key": key, "name": key, "nodes": nodes }),
    )
    .await;
    id
}

/// Sets a node of a [`foreign_release`] to `status`.
pub async fn set_status(app: &TestApp, release: &str, node: &str, status: &str) {
    let key = release.trim_start_matches("release:");
    let (kind, id) = match node {
        "release" => ("release", release.to_owned()),
        app_key => ("release.app", format!("app:{key}/w/c/b/{app_key}")),
    };
    insert_event(
        app,
        &format!("{kind}.status_changed"),
        json!({ "id": id, "releaseId": release, "status": status, "at": chrono::Utc::now() }),
    )
    .await;
}

/// Starts onboarding organization `name` (subdomain `{name}-push`) as an admin who sees every
/// organization; returns the admin's token and the organization's ID.
pub async fn start_bootstrap(app: &TestApp, name: &str) -> (String, String) {
    let token = app
        .token_for(
            "admin@example.com",
            None,
            &["organization.create_root", "organization.view_all"],
        )
        .await;
    let started = app
        .graphql_as(
            &token,
            "mutation($name: String!, $subdomain: String!) { startOrganizationBootstrap(input: {
                name: $name, subdomain: $subdomain, type: PROVIDER,
                adminUsers: [{ email: \"ops@example.test\", firstName: \"O\", lastName: \"P\" }] })
                { organizationId } }",
            json!({ "name": name, "subdomain": format!("{name}-push") }),
        )
        .await;
    let org = started["data"]["startOrganizationBootstrap"]["organizationId"]
        .as_str()
        .unwrap_or_else(|| panic!("{started}"))
        .to_owned();
    (token, org)
}

/// Waits (at most 30 s) until organization `org`'s bootstrap shows `COMPLETED` to `token`.
pub async fn bootstrap_completes(app: &TestApp, token: &str, org: &str) -> bool {
    crate::harness::eventually(std::time::Duration::from_secs(30), || async {
        let body = app
            .graphql_as(
                token,
                "query($id: ID!) { organization(id: $id) { bootstrap { state } } }",
                json!({ "id": org }),
            )
            .await;
        (body["data"]["organization"]["bootstrap"]["state"] == "COMPLETED").then_some(())
    })
    .await
    .is_some()
}

/// A raw WebSocket on `/graphql/ws`, for what the real client would never send.
pub struct RawSocket(
    pub tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

/// What the server did next.
#[derive(Debug, PartialEq)]
pub enum Heard {
    Message(Value),
    Closed(u16),
    Nothing,
}

impl RawSocket {
    pub async fn open(app: &TestApp) -> Self {
        let mut request = format!("ws://{}/graphql/ws", app.addr)
            .into_client_request()
            .expect("the socket URL is a request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            tungstenite::http::HeaderValue::from_static("graphql-transport-ws"),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("cannot open the socket");
        Self(socket)
    }

    pub async fn send(&mut self, message: tungstenite::Message) {
        let _ = self.0.send(message).await;
    }

    /// Sends `message`; `false` once the socket is closed.
    pub async fn try_send_json(&mut self, message: Value) -> bool {
        self.0
            .send(tungstenite::Message::text(message.to_string()))
            .await
            .is_ok()
    }

    /// The close frame's code and reason, skipping any message before it.
    pub async fn close_reason(&mut self) -> Option<(u16, String)> {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.0.next()).await {
                Ok(Some(Ok(tungstenite::Message::Close(frame)))) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Ok(Some(Ok(_))) => {}
                _ => return None,
            }
        }
    }

    pub async fn send_json(&mut self, message: Value) {
        self.send(tungstenite::Message::text(message.to_string()))
            .await;
    }

    pub async fn init(&mut self, token: &str) {
        self.send_json(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
            .await;
        assert_eq!(
            self.heard().await,
            Heard::Message(json!({ "type": "connection_ack" }))
        );
    }

    pub async fn heard(&mut self) -> Heard {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.0.next()).await {
                Ok(Some(Ok(tungstenite::Message::Text(text)))) => {
                    let message: Value =
                        serde_json::from_str(text.as_str()).expect("the server sends JSON");
                    if message["type"] != "ping" {
                        return Heard::Message(message);
                    }
                }
                Ok(Some(Ok(tungstenite::Message::Close(frame)))) => {
                    return Heard::Closed(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => {}
                _ => return Heard::Nothing,
            }
        }
    }
}

/// A generated spec of `waves` × `clusters` × `apps` (keys `wave-1`, `cluster-1`, `app-1`, …).
pub fn spec(
    key: &str,
    waves: usize,
    clusters: usize,
    apps: usize,
    options: serde_json::Value,
) -> ReleaseSpec {
    let key = Key::parse(key).expect("it parses");
    let options = serde_json::from_value(options).expect("the input deserializes");
    ReleaseSpec::synthetic(
        &key,
        &format!("Release {key}"),
        (waves, clusters, apps),
        options,
    )
}

/// A release key no other test uses.
pub fn unique_key(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub async fn start(
    client: &Client,
    app: &TestApp,
    spec: ReleaseSpec,
) -> temporalio_client::WorkflowHandle<
    Client,
    <ReleaseWorkflow as temporalio_common::HasWorkflowDefinition>::Run,
> {
    let id = spec.id().to_string();
    client
        .start_workflow(
            ReleaseWorkflow::run,
            spec,
            WorkflowStartOptions::new(app.config.temporal.release_task_queue.clone(), id).build(),
        )
        .await
        .expect("cannot start the release")
}

/// The issuer of Supabase's legacy tokens (HS256 with the project's secret).
pub const SUPABASE_ISSUER: &str = "https://ref.supabase.co/auth/v1";
/// That project's secret (`SUPABASE_JWT_SECRET`).
pub const SUPABASE_SECRET: &str = "supabase-legacy-project-secret-0123456789";

/// The `AUTH_ISSUERS` entry of Supabase's legacy tokens, lifetime at most an hour.
pub fn supabase_entry() -> Value {
    json!({ "issuer": SUPABASE_ISSUER, "audience": "authenticated",
            "hs256_secret_env": "SUPABASE_JWT_SECRET", "algorithms": ["HS256"],
            "max_lifetime_seconds": 3600 })
}

/// The variables that make an app trust `issuers` (a JSON list), with Supabase's secret.
pub fn supabase_env(issuers: Value) -> Vec<(&'static str, String)> {
    vec![
        ("AUTH_ISSUERS", issuers.to_string()),
        ("SUPABASE_JWT_SECRET", SUPABASE_SECRET.to_owned()),
    ]
}

/// Supabase's claims, with the custom `permissions`, `org_id` and `user_role`, valid for ten
/// minutes.
pub fn supabase_claims(permissions: &[&str]) -> Value {
    let now = Utc::now().timestamp();
    json!({ "iss": SUPABASE_ISSUER, "aud": "authenticated", "sub": Uuid::new_v4().to_string(),
            "email": "ops@platform.example", "role": "authenticated", "iat": now, "exp": now + 600,
            "permissions": permissions, "org_id": Uuid::new_v4().to_string(),
            "user_role": "provider_admin" })
}

/// Every kind of token the corpus can send, all signed for this app unless the kind says not.
/// The `supabase_*` kinds are refused by an app trusting [`supabase_entry`] too.
pub async fn tokens(app: &TestApp) -> HashMap<&'static str, String> {
    let viewer = app.token_for("viewer@example.com", None, &[]).await;
    let admin = app
        .token_for(
            "admin@example.com",
            None,
            &["organization.create_root", "organization.view_all"],
        )
        .await;
    let disabled_user = app.create_user("gone@example.com", None, &[]).await;
    sqlx::query("UPDATE users SET disabled = true WHERE id = $1")
        .bind(disabled_user.id)
        .execute(&app.db)
        .await
        .expect("the statement runs");
    let key = secret(app);
    let now = Utc::now().timestamp();
    let base = serde_json::to_value(Claims {
        email: "platform@example.com".into(),
        ..platform_claims(
            app,
            &Uuid::new_v4().to_string(),
            &["organization.create_root", "organization.view_all"],
        )
    })
    .unwrap_or_default();
    let with = |changes: Value| {
        let mut claims = base.clone();
        if let (Some(claims), Some(changes)) = (claims.as_object_mut(), changes.as_object()) {
            for (k, v) in changes {
                if v.is_null() {
                    claims.remove(k);
                } else {
                    claims.insert(k.clone(), v.clone());
                }
            }
        }
        claims
    };
    let hs256 = |claims: Value| sign(&claims, Header::new(Algorithm::HS256), &key);
    let supabase = |edit: &dyn Fn(&mut Value)| {
        let mut claims = supabase_claims(&["organization.create_root", "organization.view_all"]);
        edit(&mut claims);
        if let Some(claims) = claims.as_object_mut() {
            claims.retain(|_, v| !v.is_null());
        }
        sign(
            &claims,
            Header::new(Algorithm::HS256),
            SUPABASE_SECRET.as_bytes(),
        )
    };
    let rs256 = {
        // An RS256 header over an HMAC signature: the classic algorithm-confusion attempt.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&base).unwrap_or_default());
        let valid = hs256(base.clone());
        let signature = valid.rsplit('.').next().unwrap_or_default().to_owned();
        format!("{header}.{payload}.{signature}")
    };
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&base).unwrap_or_default())
    );
    HashMap::from([
        ("viewer", viewer),
        ("admin", admin),
        ("alg_none", alg_none),
        ("rs256", rs256),
        ("hs512", sign(&base, Header::new(Algorithm::HS512), &key)),
        (
            "wrong_key",
            sign(
                &base,
                Header::new(Algorithm::HS256),
                b"not-the-secret-not-the-secret-!!",
            ),
        ),
        (
            "expired",
            hs256(with(json!({ "iat": now - 7200, "exp": now - 3600 }))),
        ),
        ("future_nbf", hs256(with(json!({ "nbf": now + 3600 })))),
        ("no_exp", hs256(with(json!({ "exp": null })))),
        ("wrong_iss", hs256(with(json!({ "iss": "someone-else" })))),
        ("wrong_aud", hs256(with(json!({ "aud": "another-app" })))),
        (
            "aud_array",
            hs256(with(
                json!({ "aud": ["another-app", app.config.auth.jwt_audience] }),
            )),
        ),
        ("blank_sub", hs256(with(json!({ "sub": "" })))),
        ("space_sub", hs256(with(json!({ "sub": "   " })))),
        (
            "disabled_user",
            hs256(with(json!({ "sub": disabled_user.id.to_string() }))),
        ),
        ("garbage", "not.a.jwt".to_owned()),
        ("supabase_no_exp", supabase(&|c| c["exp"] = Value::Null)),
        (
            "supabase_long_lifetime",
            supabase(&|c| c["exp"] = json!(now + 7 * 86_400)),
        ),
        (
            "supabase_wrong_aud",
            supabase(&|c| c["aud"] = json!("someone-else")),
        ),
        (
            "supabase_future_nbf",
            supabase(&|c| c["nbf"] = json!(now + 3600)),
        ),
        (
            "supabase_wrong_secret",
            sign(
                &supabase_claims(&["organization.view_all"]),
                Header::new(Algorithm::HS256),
                b"not-the-project-secret-0123456789abcdef",
            ),
        ),
        ("supabase_rs256_jku", {
            // An RS256 header naming the attacker's keys, over the project secret's signature.
            let valid = supabase(&|_| {});
            let header = URL_SAFE_NO_PAD.encode(
                br#"{"alg":"RS256","kid":"attacker","jku":"https://evil.example/jwks.json"}"#,
            );
            let rest = valid
                .split_once('.')
                .map(|(_, rest)| rest)
                .unwrap_or_default();
            format!("{header}.{rest}")
        }),
    ])
}

/// What the corpora must never change: every row of the event store and the projections.
pub async fn fingerprint(app: &TestApp) -> Vec<Option<String>> {
    let mut prints = Vec::new();
    for table in [
        "domain_events",
        "organizations_projection",
        "invitations_projection",
        "workflow_queue_projection",
        "release_projection",
        "release_entity_projection",
    ] {
        let sql = format!("SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t");
        let print: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&app.db)
            .await
            .expect("the query answers");
        prints.push(print);
    }
    prints
}

pub async fn insert_event(app: &TestApp, event_type: &str, data: Value) {
    sqlx::query(
        "INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data)
         VALUES ($1, 'release', gen_random_uuid(), $2)",
    )
    .bind(event_type)
    .bind(data)
    .execute(&app.db)
    .await
    .expect("the statement runs");
}

pub fn sign(claims: &impl serde::Serialize, header: Header, key: &[u8]) -> String {
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key))
        .expect("the token is signed")
}

/// The app's shared signing key, as the platform's identity service holds it.
pub fn secret(app: &TestApp) -> Vec<u8> {
    app.config
        .auth
        .jwt_secret
        .expose_secret()
        .as_bytes()
        .to_vec()
}

/// The claims the platform signs for subject `sub` with `permissions`, valid for ten minutes
/// (no e-mail, organization or role; no user row in this service).
pub fn platform_claims(app: &TestApp, sub: &str, permissions: &[&str]) -> Claims {
    let now = Utc::now().timestamp();
    Claims {
        sub: sub.to_owned(),
        email: String::new(),
        org_id: None,
        user_role: None,
        permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        iat: now,
        exp: now + 600,
        nbf: None,
        iss: app.config.auth.jwt_issuer.clone(),
        aud: app.config.auth.jwt_audience.clone(),
        local_user: false,
    }
}

/// [`platform_claims`], signed HS256 with the shared secret.
pub fn platform_token(app: &TestApp, sub: &str, permissions: &[&str]) -> String {
    sign(
        &platform_claims(app, sub, permissions),
        Header::new(Algorithm::HS256),
        &secret(app),
    )
}

/// Who am I: every field a caller's token shows.
pub const ME: &str = "{ me { id email role orgId permissions } }";

/// Whether an answer holds no data at all.
pub fn no_data(body: &Value) -> bool {
    body.get("data").is_none_or(Value::is_null)
}

/// `GET path` on the operations listener (the readiness report is there).
pub async fn get_json(app: &TestApp, path: &str) -> (u16, Value) {
    get_url(app, &app.ops_url(path)).await
}

/// `GET url`: its status and JSON body.
pub async fn get_url(app: &TestApp, url: &str) -> (u16, Value) {
    let response = app
        .http
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
    let status = response.status().as_u16();
    let body = response.json().await.expect("the answer is JSON");
    (status, body)
}

/// A new RSA key named `kid`: for signing, and its public JWK.
pub fn rsa_key(kid: &str) -> (jsonwebtoken::EncodingKey, Value) {
    let script = "const { generateKeyPairSync } = require('crypto');
        const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
        console.log(JSON.stringify({ der: privateKey.export({ type: 'pkcs1', format: 'der' }).toString('base64'),
                                     jwk: publicKey.export({ format: 'jwk' }) }));";
    let made = (0..3)
        .find_map(|_| node_within(script, Duration::from_secs(30)))
        .expect("node makes a key within 30 s, in one of three tries");
    let made: Value = serde_json::from_slice(&made).expect("node prints the key");
    let mut jwk = made["jwk"].clone();
    jwk["kid"] = json!(kid);
    jwk["alg"] = json!("RS256");
    jwk["use"] = json!("sig");
    let der = base64::engine::general_purpose::STANDARD
        .decode(made["der"].as_str().unwrap_or_default())
        .expect("the key is base64");
    (jsonwebtoken::EncodingKey::from_rsa_der(&der), jwk)
}

/// What `node -e script` prints, or `None` if it has not finished within `limit` (it is then
/// killed). Node has been seen to hang at start, asleep, in a fresh machine's chroot; the key
/// it makes is pure, so another try is safe.
fn node_within(script: &str, limit: Duration) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut child = std::process::Command::new("node")
        .args(["-e", script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node starts");
    let started = std::time::Instant::now();
    loop {
        // The key is a few KB, well within a pipe's buffer: node never waits on the reader.
        if child.try_wait().ok().flatten().is_some() {
            let mut out = Vec::new();
            child.stdout.take()?.read_to_end(&mut out).ok()?;
            return Some(out);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A JWKS endpoint the test controls, as Supabase's `/auth/v1/.well-known/jwks.json` serves
/// one: its keys can change, and it can go down (503).
pub struct KeyServer {
    /// Where the key set is served.
    pub url: String,
    keys: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl KeyServer {
    pub async fn start(keys: Vec<Value>) -> Self {
        use std::sync::{Arc, Mutex, atomic::AtomicBool};
        let keys = Arc::new(Mutex::new(keys));
        let down = Arc::new(AtomicBool::new(false));
        let (served, gate) = (Arc::clone(&keys), Arc::clone(&down));
        let router = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                let (served, gate) = (Arc::clone(&served), Arc::clone(&gate));
                async move {
                    use axum::response::IntoResponse;
                    if gate.load(std::sync::atomic::Ordering::SeqCst) {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                    let keys = served.lock().map(|k| k.clone()).unwrap_or_default();
                    (
                        [(axum::http::header::CACHE_CONTROL, "max-age=3600")],
                        axum::Json(json!({ "keys": keys })),
                    )
                        .into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the key server binds");
        let url = format!(
            "http://{}/jwks.json",
            listener.local_addr().expect("it has an address")
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, keys, down }
    }

    pub fn publish(&self, keys: Vec<Value>) {
        if let Ok(mut served) = self.keys.lock() {
            *served = keys;
        }
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// An `AUTH_ISSUERS` entry for Supabase's asymmetric keys, served here.
    pub fn entry(&self, max_stale_seconds: u64) -> Value {
        self.entry_for(ASYMMETRIC_ISSUER, max_stale_seconds)
    }

    /// An `AUTH_ISSUERS` entry for `issuer`, whose keys are served here.
    pub fn entry_for(&self, issuer: &str, max_stale_seconds: u64) -> Value {
        json!({ "issuer": issuer, "audience": "authenticated",
                "jwks_url": self.url, "allow_http_loopback": true, "algorithms": ["RS256"],
                "leeway_seconds": 0, "jwks_max_stale_seconds": max_stale_seconds })
    }
}

/// A Supabase-shaped token from the asymmetric issuer, signed with `key` named `kid`, valid
/// for `seconds`.
pub fn asymmetric(key: &jsonwebtoken::EncodingKey, kid: &str, seconds: i64) -> String {
    let mut claims = supabase_claims(&["release.control"]);
    claims["iss"] = json!(ASYMMETRIC_ISSUER);
    claims["exp"] = json!(Utc::now().timestamp() + seconds);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims, key).expect("the token is signed")
}

/// The issuer of [`KeyServer::entry`]: a Supabase project on asymmetric keys.
pub const ASYMMETRIC_ISSUER: &str = "https://asym.supabase.co/auth/v1";
/// A second issuer with keys of its own, for tokens that borrow its key.
pub const OTHER_ISSUER: &str = "https://other.supabase.co/auth/v1";

/// The hostile token kinds of an issuer with public keys (JWKS), each refused: `asym_*` for the
/// corpus. `k1` is the issuer's published key; `other` the key `OTHER_ISSUER` publishes.
pub fn asymmetric_hostile_tokens(
    k1: &EncodingKey,
    jwk1: &Value,
    other: &EncodingKey,
) -> HashMap<&'static str, String> {
    let (attacker, attacker_jwk) = rsa_key("attacker");
    let now = Utc::now().timestamp();
    let claims = |edit: &dyn Fn(&mut Value)| {
        let mut claims = supabase_claims(&["organization.create_root", "organization.view_all"]);
        claims["iss"] = json!(ASYMMETRIC_ISSUER);
        edit(&mut claims);
        if let Some(claims) = claims.as_object_mut() {
            claims.retain(|_, v| !v.is_null());
        }
        claims
    };
    let rs256 = |claims: &Value, key: &EncodingKey, header: Header| {
        jsonwebtoken::encode(&header, claims, key).expect("the token is signed")
    };
    let with_kid = |kid: &str| Header {
        kid: Some(kid.to_owned()),
        ..Header::new(Algorithm::RS256)
    };
    let modulus = URL_SAFE_NO_PAD
        .decode(jwk1["n"].as_str().unwrap_or_default())
        .expect("n is base64url");
    let valid = claims(&|_| {});
    HashMap::from([
        // Algorithm confusion: HS256 keyed with the issuer's public key.
        (
            "asym_hs256_public_key",
            sign(&valid, Header::new(Algorithm::HS256), &modulus),
        ),
        (
            "asym_hs256_jwk_json",
            sign(
                &valid,
                Header::new(Algorithm::HS256),
                jwk1.to_string().as_bytes(),
            ),
        ),
        (
            "asym_alg_none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(valid.to_string())
            ),
        ),
        // Keys named by the token itself: never fetched, never used.
        (
            "asym_jku",
            rs256(
                &valid,
                &attacker,
                Header {
                    jku: Some("http://127.0.0.1:1/jwks.json".into()),
                    ..with_kid("attacker")
                },
            ),
        ),
        (
            "asym_x5u",
            rs256(
                &valid,
                &attacker,
                Header {
                    x5u: Some("http://127.0.0.1:1/cert.pem".into()),
                    ..with_kid("attacker")
                },
            ),
        ),
        (
            "asym_embedded_jwk",
            rs256(
                &valid,
                &attacker,
                Header {
                    jwk: serde_json::from_value(attacker_jwk).ok(),
                    ..Header::new(Algorithm::RS256)
                },
            ),
        ),
        (
            "asym_unknown_kid",
            rs256(&valid, &attacker, with_kid("k404")),
        ),
        (
            "asym_other_issuers_kid",
            rs256(&valid, other, with_kid("other-1")),
        ),
        (
            "asym_unknown_iss",
            rs256(
                &claims(&|c| c["iss"] = json!("https://evil.example/auth/v1")),
                k1,
                with_kid("k1"),
            ),
        ),
        (
            "asym_no_exp",
            rs256(&claims(&|c| c["exp"] = Value::Null), k1, with_kid("k1")),
        ),
        (
            "asym_long_lifetime",
            rs256(
                &claims(&|c| c["exp"] = json!(now + 7 * 86_400)),
                k1,
                with_kid("k1"),
            ),
        ),
        (
            "asym_wrong_aud",
            rs256(
                &claims(&|c| c["aud"] = json!("someone-else")),
                k1,
                with_kid("k1"),
            ),
        ),
        (
            "asym_future_nbf",
            rs256(
                &claims(&|c| c["nbf"] = json!(now + 3_600)),
                k1,
                with_kid("k1"),
            ),
        ),
        (
            "asym_expired",
            rs256(
                &claims(&|c| c["exp"] = json!(now - 3_600)),
                k1,
                with_kid("k1"),
            ),
        ),
    ])
}

/// A TCP proxy to `upstream` that can freeze: frozen, it stops moving bytes either way and
/// keeps every connection open, as a hung Temporal frontend does.
pub struct FreezableProxy {
    pub addr: std::net::SocketAddr,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FreezableProxy {
    pub async fn start(upstream: String) -> Self {
        use std::sync::{Arc, atomic::AtomicBool};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy binds");
        let addr = listener.local_addr().expect("the proxy has an address");
        let frozen = Arc::new(AtomicBool::new(false));
        let gate = Arc::clone(&frozen);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = inbound.into_split();
                let (server_read, server_write) = outbound.into_split();
                tokio::spawn(pump(client_read, server_write, Arc::clone(&gate)));
                tokio::spawn(pump(server_read, client_write, Arc::clone(&gate)));
            }
        });
        Self { addr, frozen }
    }

    pub fn freeze(&self) {
        self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        if frozen.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let read = tokio::time::timeout(Duration::from_millis(100), from.read(&mut buffer)).await;
        match read {
            Err(_) => continue,
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(n)) => {
                // Bytes read just before a freeze are held too: what a client sends after
                // `freeze()` returns must never get through while frozen.
                while frozen.load(std::sync::atomic::Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if to.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs a 2×2×2 release whose `app-2`s fail to the end; returns its global ID.
pub async fn finished_release(app: &TestApp) -> String {
    let key = unique_key("reads");
    run_to_the_end(
        app,
        spec(
            &key,
            2,
            2,
            2,
            json!({ "stepMillis": 1, "failApps": ["app-2"] }),
        ),
    )
    .await
}

/// Runs the release of `spec` through the app's worker until its workflow closes; returns
/// its global ID.
pub async fn run_to_the_end(app: &TestApp, spec: ReleaseSpec) -> String {
    let client = app.temporal().await;
    let id = spec.id().to_string();
    let handle = start(&client, app, spec).await;
    let _ = handle
        .get_result(temporalio_client::WorkflowGetResultOptions::default())
        .await;
    id
}

/// An app with the reference worker, a viewer's token, and a [`finished_release`] in it.
pub async fn finished_release_for_a_viewer() -> (TestApp, String, String) {
    let app = TestApp::spawn_with_worker(&[]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let release = finished_release(&app).await;
    (app, token, release)
}
