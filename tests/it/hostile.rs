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

use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::fixtures::{
    KeyServer, OTHER_ISSUER, asymmetric, asymmetric_hostile_tokens, fingerprint, rsa_key, tokens,
};
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
    .await.expect("the statement runs");
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
    run_corpus(&[]).await;
}

#[tokio::test]
async fn every_hostile_request_meets_the_same_limits_when_releases_are_read_in_part() {
    // Every release above 0 nodes is read in part: the release entries meet the paged, ranged
    // and pruned statements of the big releases instead of the whole tree.
    run_corpus(&[("RELEASE_PART_ABOVE_NODES", "0".into())]).await;
}

/// Runs every entry of the corpus against a service started with `extra` set as well.
async fn run_corpus(extra: &[(&'static str, String)]) {
    // Arrange: the per-address login limit is out of the way, so each entry meets the rule
    // it is about rather than the address lock earlier entries set off.
    // It also trusts Supabase's legacy tokens, so the external kinds meet a real issuer.
    // And an issuer with public keys (JWKS), beside another one, for the `asym_*` kinds.
    let (k1, jwk1) = rsa_key("k1");
    let (other, other_jwk) = rsa_key("other-1");
    let keys = KeyServer::start(vec![jwk1.clone()]).await;
    let other_keys = KeyServer::start(vec![other_jwk]).await;
    let mut env = crate::fixtures::supabase_env(json!([
        crate::fixtures::supabase_entry(),
        keys.entry(3_600),
        other_keys.entry_for(OTHER_ISSUER, 3_600)
    ]));
    env.push(("LOGIN_MAX_FAILURES_PER_ADDRESS", "100000".into()));
    env.extend_from_slice(extra);
    let app = TestApp::spawn_with(&env).await;
    seed(&app).await;
    let mut tokens = tokens(&app).await;
    tokens.extend(asymmetric_hostile_tokens(&k1, &jwk1, &other));
    let honest = app
        .graphql_as(&asymmetric(&k1, "k1", 600), crate::fixtures::ME, json!({}))
        .await;
    assert!(
        honest["errors"].is_null(),
        "the JWKS issuer's own tokens work, so its hostile kinds meet a working issuer: {honest}"
    );
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
        let text = response.text().await.expect("the answer has a body");
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
