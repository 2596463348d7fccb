//! The hostile-input corpus (`tests/corpus/hostile.jsonl`), run against the real stack: every
//! entry must get its expected status and `extensions.code`, no data for what it was after, no
//! 5xx, and write nothing to the event store or the projections.
//!
//! An entry is one JSON line:
//! - `name`; `method` (`POST`), `path` (`/graphql`);
//! - `auth`: a token kind (see [`tokens`]) sent as `Bearer <token>`, or `headers` with
//!   `{token:KIND}` placeholders for odd header shapes;
//! - the body: `body` (JSON, sent as is), `raw` (a string), or `query` with `operationName`
//!   and `variables`; `repeat: {count, item, wrap}` builds a query from `{i}`-numbered items;
//! - `contentType` (default `application/json`);
//! - `status` and `code` (`null` when the answer is not a GraphQL error).

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use temporal_bff::auth::token::Claims;
use uuid::Uuid;

use crate::harness::TestApp;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(default = "post")]
    method: String,
    #[serde(default = "graphql_path")]
    path: String,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    headers: HashMap<String, String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    raw: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Option<Value>,
    #[serde(default)]
    repeat: Option<Repeat>,
    #[serde(default)]
    pad_bytes: Option<usize>,
    status: u16,
    code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Repeat {
    count: usize,
    item: String,
    wrap: String,
}

fn post() -> String {
    "POST".into()
}

fn graphql_path() -> String {
    "/graphql".into()
}

fn corpus() -> Vec<Entry> {
    let text = include_str!("../corpus/hostile.jsonl");
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with("//"))
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("hostile.jsonl entry {}: {e}", i + 1))
        })
        .collect()
}

fn sign(claims: &Value, header: Header, key: &[u8]) -> String {
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Every kind of token the corpus can send, all signed for this app unless the kind says not.
pub(crate) async fn tokens(app: &TestApp) -> HashMap<&'static str, String> {
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
        .unwrap_or_else(|e| panic!("{e}"));
    let key = app
        .config
        .auth
        .jwt_secret
        .expose_secret()
        .as_bytes()
        .to_vec();
    let now = Utc::now().timestamp();
    let base = serde_json::to_value(Claims {
        sub: Uuid::new_v4().to_string(),
        email: "platform@example.com".into(),
        org_id: None,
        user_role: None,
        permissions: [
            "organization.create_root".to_owned(),
            "organization.view_all".to_owned(),
        ]
        .into(),
        iat: now,
        exp: now + 600,
        nbf: None,
        iss: app.config.auth.jwt_issuer.clone(),
        aud: app.config.auth.jwt_audience.clone(),
        local_user: false,
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
            .unwrap_or_else(|e| panic!("{e}"));
        prints.push(print);
    }
    prints
}

/// Something worth stealing: a release and an organization.
async fn seed(app: &TestApp) {
    let org = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data) VALUES
         ('release.created', 'release', gen_random_uuid(), $1),
         ('organization.created', 'organization', $2, $3)",
    )
    .bind(json!({
        "id": "release:rel-2025-05", "key": "rel-2025-05", "name": "May release",
        "nodes": [
            { "id": "release:rel-2025-05", "kind": "release", "key": "rel-2025-05", "name": "May release", "position": 1 },
            { "id": "wave:rel-2025-05/wave-1", "parentId": "release:rel-2025-05", "kind": "wave", "key": "wave-1", "name": "Wave 1", "position": 1 }
        ]
    }))
    .bind(org)
    .bind(json!({ "name": "Secret Org", "type": "provider", "slug": "secret-org", "fqdn": "secret-org.example.test" }))
    .execute(&app.db)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

fn fill(template: &str, tokens: &HashMap<&'static str, String>) -> String {
    let mut text = template.to_owned();
    for (kind, token) in tokens {
        text = text.replace(&format!("{{token:{kind}}}"), token);
    }
    text
}

fn body_of(entry: &Entry) -> Vec<u8> {
    if let Some(raw) = &entry.raw {
        return raw.clone().into_bytes();
    }
    if let Some(body) = &entry.body {
        return serde_json::to_vec(body).unwrap_or_default();
    }
    let query = match (&entry.query, &entry.repeat) {
        (Some(query), _) => query.clone(),
        (None, Some(repeat)) => {
            let items: Vec<String> = (0..repeat.count)
                .map(|i| repeat.item.replace("{i}", &i.to_string()))
                .collect();
            repeat.wrap.replace("{items}", &items.join(" "))
        }
        (None, None) => String::new(),
    };
    let mut body = json!({ "query": query });
    if let Some(name) = &entry.operation_name {
        body["operationName"] = json!(name);
    }
    if let Some(variables) = &entry.variables {
        body["variables"] = variables.clone();
    }
    if let Some(pad) = entry.pad_bytes {
        body["padding"] = json!("x".repeat(pad));
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// No field of the answer carries data: `data` is absent, null, or an object of nulls.
fn carries_data(answer: &Value) -> bool {
    match answer.get("data") {
        None | Some(Value::Null) => false,
        Some(Value::Object(fields)) => fields.values().any(|v| !v.is_null()),
        Some(_) => true,
    }
}

#[tokio::test]
async fn every_hostile_request_gets_its_code_no_data_no_5xx_and_writes_nothing() {
    // Arrange: the per-address login limit is out of the way, so each entry meets the rule
    // it is about rather than the address lock earlier entries set off.
    let app = TestApp::spawn_with(&[("LOGIN_MAX_FAILURES_PER_ADDRESS", "100000".into())]).await;
    seed(&app).await;
    let tokens = tokens(&app).await;
    let entries = corpus();
    let before = fingerprint(&app).await;
    let mut failures = Vec::new();

    for entry in &entries {
        // Act
        let method =
            reqwest::Method::from_bytes(entry.method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let mut request = app
            .http
            .request(method.clone(), app.url(&fill(&entry.path, &tokens)))
            .header(
                "content-type",
                entry.content_type.as_deref().unwrap_or("application/json"),
            );
        if let Some(kind) = &entry.auth {
            let token = tokens
                .get(kind.as_str())
                .unwrap_or_else(|| panic!("{}: unknown token kind {kind}", entry.name));
            request = request.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in &entry.headers {
            request = request.header(name.as_str(), fill(value, &tokens));
        }
        if method != reqwest::Method::GET {
            request = request.body(body_of(entry));
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                failures.push(format!("{}: no answer: {error}", entry.name));
                continue;
            }
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);

        // Assert
        let code = answer["errors"][0]["extensions"]["code"].as_str();
        let mut wrong = Vec::new();
        if status >= 500 {
            wrong.push(format!("a {status}"));
        }
        if status != entry.status {
            wrong.push(format!("status {status}, expected {}", entry.status));
        }
        if code != entry.code.as_deref() {
            wrong.push(format!("code {code:?}, expected {:?}", entry.code));
        }
        if carries_data(&answer) {
            wrong.push("data in the answer".to_owned());
        }
        if text.contains("Secret Org") || text.contains("May release") {
            wrong.push("protected data in the body".to_owned());
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {} — {}",
                entry.name,
                wrong.join(", "),
                &text[..text.len().min(300)]
            ));
        }
    }

    // Assert: nothing was written by any of them.
    assert!(
        entries.len() >= 60,
        "the corpus has {} entries",
        entries.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} entries failed:\n{}",
        failures.len(),
        entries.len(),
        failures.join("\n")
    );
    assert_eq!(
        before,
        fingerprint(&app).await,
        "the corpus wrote to the event store or projections"
    );
}

#[tokio::test]
async fn twenty_identical_starts_at_once_create_exactly_one_organization() {
    // Arrange
    let app = TestApp::spawn_with_worker(&[]).await;
    let token = app
        .token_for("root@example.com", None, &["organization.create_root"])
        .await;
    let input = json!({
        "name": "Once Only", "subdomain": format!("once-{}", &Uuid::new_v4().simple().to_string()[..8]),
        "type": "PROVIDER",
        "adminUsers": [{ "email": "ada@once.example", "firstName": "Ada", "lastName": "Lovelace" }],
    });
    let start = "mutation($input: StartOrganizationBootstrapInput!) { startOrganizationBootstrap(input: $input) { organizationId status } }";

    // Act
    let answers = futures::future::join_all(
        (0..20).map(|_| app.graphql_as(&token, start, json!({ "input": input }))),
    )
    .await;

    // Assert
    let ids: std::collections::HashSet<&str> = answers
        .iter()
        .filter_map(|a| a["data"]["startOrganizationBootstrap"]["organizationId"].as_str())
        .collect();
    let started = answers
        .iter()
        .filter(|a| a["data"]["startOrganizationBootstrap"]["status"] == "STARTED")
        .count();
    let (organizations, requests): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM organizations_projection),
                (SELECT count(*) FROM domain_events WHERE event_type = 'organization.bootstrap.initiated')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap_or_default();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(started, 1, "{answers:?}");
    assert_eq!((organizations, requests), (1, 1));
}
