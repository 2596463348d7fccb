//! Dashboards that poll: `GET /graphql` queries with `ETag` and `If-None-Match` (a `304` with no
//! body while nothing changed), and automatic persisted queries so the poll is a short URL.

use std::time::Duration;

use serde_json::{Value, json};
use temporal_bff::http::persisted::sha256_hex;

use crate::harness::{TestApp, error_code, eventually};

const RELEASE: &str =
    "query($id: ID!) { release(id: $id) { id name status progress { percent } } }";

/// A closed one-node release, straight into the event store.
async fn closed_release(app: &TestApp, key: &str) -> String {
    let id = format!("release:{key}");
    sqlx::query(
        "INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data, created_at) VALUES
         ('release.created', 'release', gen_random_uuid(),
          jsonb_build_object('id', $1::text, 'key', $2::text, 'name', 'Polled',
            'nodes', jsonb_build_array(jsonb_build_object('id', $1::text, 'kind', 'release', 'key', $2::text, 'name', 'Polled'))),
          now() - interval '1 minute'),
         ('release.status_changed', 'release', gen_random_uuid(),
          jsonb_build_object('id', $1::text, 'kind', 'release', 'status', 'SUCCEEDED'), now())",
    )
    .bind(&id)
    .bind(key)
    .execute(&app.db)
    .await.expect("the statement runs");
    id
}

fn get_url(app: &TestApp, query: &str, variables: &Value) -> String {
    let mut url = url::Url::parse(&app.url("/graphql")).expect("the URL parses");
    url.query_pairs_mut()
        .append_pair("query", query)
        .append_pair("variables", &variables.to_string());
    url.to_string()
}

/// A dashboard's poll: status code, ETag and the size of the body as sent.
async fn poll(
    app: &TestApp,
    url: &str,
    token: &str,
    if_none_match: Option<&str>,
) -> (u16, String, usize) {
    let mut request = app.http.get(url).bearer_auth(token);
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    let response = request.send().await.expect("the request is answered");
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let size = response.bytes().await.map(|b| b.len()).unwrap_or(0);
    (status, etag, size)
}

/// Polls with `etag` until the server answers `304` without reading the release at all (no
/// statement, no cache lookup): the answer is remembered. `None` if that never happens.
async fn until_remembered(app: &TestApp, url: &str, token: &str, etag: &str) -> Option<()> {
    eventually(Duration::from_secs(10), || async {
        let (sql, hits) = (
            app.metric("bff_sql_statements_total").await,
            app.metric("bff_release_cache_hits_total").await,
        );
        let (status, _, _) = poll(app, url, token, Some(etag)).await;
        let untouched = app.metric("bff_sql_statements_total").await == sql
            && app.metric("bff_release_cache_hits_total").await == hits;
        (status == 304 && untouched).then_some(())
    })
    .await
}

#[tokio::test]
async fn an_unchanged_release_polled_with_its_etag_is_a_304_with_no_body_and_no_work() {
    // Arrange
    let app = TestApp::spawn().await;
    let token = app.token_for("dash@example.com", None, &[]).await;
    let release = closed_release(&app, "polled").await;
    let url = get_url(&app, RELEASE, &json!({ "id": release }));
    let (first, etag, size) = poll(&app, &url, &token, None).await;

    // Act: the same poll with the ETag, once the release is kept in memory.
    let remembered = until_remembered(&app, &url, &token, &etag).await;
    let (again, again_tag, again_size) = poll(&app, &url, &token, Some(&etag)).await;

    // Assert
    assert_eq!(first, 200);
    assert!(size > 0 && etag.starts_with('"'), "an ETag: {etag:?}");
    assert!(
        remembered.is_some(),
        "a poll of an unchanged closed release reads nothing, not even the cache"
    );
    assert_eq!((again, again_size), (304, 0), "no body");
    assert_eq!(again_tag, etag);
}

#[tokio::test]
async fn a_change_or_another_caller_gets_a_new_etag_and_get_never_runs_a_mutation() {
    // Arrange
    let app = TestApp::spawn().await;
    let token = app.token_for("dash@example.com", None, &[]).await;
    let other = app.token_for("other@example.com", None, &[]).await;
    let release = closed_release(&app, "changing").await;
    let url = get_url(&app, RELEASE, &json!({ "id": release }));
    let (_, etag, _) = poll(&app, &url, &token, None).await;
    let (_, other_etag, _) = poll(&app, &url, &other, None).await;
    let remembered = until_remembered(&app, &url, &token, &etag).await;

    // Act: the release is renamed by a new run; and a mutation is tried over GET.
    sqlx::query(
        "INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data) VALUES
         ('release.created', 'release', gen_random_uuid(),
          jsonb_build_object('id', $1::text, 'key', 'changing', 'name', 'Renamed',
            'nodes', jsonb_build_array(jsonb_build_object('id', $1::text, 'kind', 'release', 'key', 'changing', 'name', 'Renamed'))))",
    )
    .bind(&release)
    .execute(&app.db)
    .await.expect("the statement runs");
    let changed = eventually(Duration::from_secs(10), || async {
        let (status, tag, _) = poll(&app, &url, &token, Some(&etag)).await;
        (status == 200 && tag != etag).then_some(())
    })
    .await;
    let mutation = app
        .http
        .get(get_url(
            &app,
            "mutation { login(email: \"a@example.com\", password: \"guess-1234\") { token } }",
            &json!({}),
        ))
        .send()
        .await
        .expect("the request is answered");

    // Assert
    assert!(remembered.is_some());
    assert_ne!(etag, other_etag, "the caller's scope is part of the tag");
    assert!(
        changed.is_some(),
        "the change is a new answer with a new tag"
    );
    assert_eq!(mutation.status().as_u16(), 405);
    let body: Value = mutation.json().await.expect("the answer is JSON");
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_persisted_query_is_registered_once_and_then_polled_by_its_hash() {
    // Arrange
    let app = TestApp::spawn().await;
    let token = app.token_for("dash@example.com", None, &[]).await;
    let release = closed_release(&app, "persisted").await;
    let hash = sha256_hex(RELEASE);
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let by_hash = || {
        let mut url = url::Url::parse(&app.url("/graphql")).expect("the URL parses");
        url.query_pairs_mut()
            .append_pair("variables", &json!({ "id": release }).to_string())
            .append_pair("extensions", &extensions.to_string());
        app.http.get(url).bearer_auth(&token).send()
    };

    // Act
    let unknown: Value = by_hash()
        .await
        .expect("the request is answered")
        .json()
        .await
        .expect("the answer is JSON");
    let register = app
        .graphql_as(&token, RELEASE, json!({ "id": release }))
        .await;
    let registered = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(&token)
        .json(
            &json!({ "query": RELEASE, "variables": { "id": release }, "extensions": extensions }),
        )
        .send()
        .await
        .expect("the request is answered");
    let polled = by_hash().await.expect("the request is answered");
    let polled_etag = polled.headers().get("etag").cloned();
    let polled: Value = polled.json().await.expect("the answer is JSON");

    // Assert
    assert_eq!(
        error_code(&unknown),
        "PERSISTED_QUERY_NOT_FOUND",
        "{unknown}"
    );
    assert_eq!(unknown["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(register["data"]["release"]["name"], "Polled");
    assert!(registered.status().is_success());
    assert_eq!(polled["data"]["release"]["name"], "Polled", "{polled}");
    assert!(polled_etag.is_some());
}

#[tokio::test]
async fn a_get_query_without_a_token_is_unauthenticated_and_graphiql_stays_on_a_bare_get() {
    let app = TestApp::spawn().await;

    let anonymous: Value = serde_json::from_str(
        &app.get_text(&get_url(&app, "{ releases { totalCount } }", &json!({})))
            .await,
    )
    .unwrap_or_default();
    let page = app.get_text(&app.url("/graphql")).await;

    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
    assert!(anonymous["data"].is_null());
    assert!(page.contains("graphiql"));
}

/// A POST of `query` with `variables`: its status and body bytes.
async fn post(
    app: &TestApp,
    query: &str,
    variables: &Value,
    token: Option<&str>,
) -> (u16, Vec<u8>) {
    let mut request = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the request is answered");
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("a body").to_vec();
    (status, body)
}

/// Posts until the answer comes from its kept bytes (the kept-answer counter moves and no
/// statement runs, not even a cache lookup): that answer, or `None` if it never does.
async fn until_kept(app: &TestApp, variables: &Value, token: &str) -> Option<Vec<u8>> {
    eventually(Duration::from_secs(10), || async {
        let before = (
            app.metric("bff_answers_kept_total").await,
            app.metric("bff_sql_statements_total").await,
            app.metric("bff_release_cache_hits_total").await,
        );
        let (status, body) = post(app, RELEASE, variables, Some(token)).await;
        let after = (
            app.metric("bff_answers_kept_total").await,
            app.metric("bff_sql_statements_total").await,
            app.metric("bff_release_cache_hits_total").await,
        );
        (status == 200 && after == (before.0 + 1.0, before.1, before.2)).then_some(body)
    })
    .await
}

#[tokio::test]
async fn a_closed_release_posted_again_is_sent_from_its_kept_bytes_until_it_changes() {
    // Arrange
    let app = TestApp::spawn().await;
    let token = app.token_for("poster@example.com", None, &[]).await;
    let release = closed_release(&app, "posted").await;
    let variables = json!({ "id": release });
    let (_, first) = post(&app, RELEASE, &variables, Some(&token)).await;

    // Act: the same POST, then the release renamed by a new run, then the same POST again.
    let kept = until_kept(&app, &variables, &token).await;
    sqlx::query(
        "INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data) VALUES
         ('release.created', 'release', gen_random_uuid(),
          jsonb_build_object('id', $1::text, 'key', 'posted', 'name', 'Renamed',
            'nodes', jsonb_build_array(jsonb_build_object('id', $1::text, 'kind', 'release', 'key', 'posted', 'name', 'Renamed'))))",
    )
    .bind(&release)
    .execute(&app.db)
    .await
    .expect("the statement runs");
    let renamed = eventually(Duration::from_secs(10), || async {
        let (_, body) = post(&app, RELEASE, &variables, Some(&token)).await;
        let json: Value = serde_json::from_slice(&body).unwrap_or_default();
        (json["data"]["release"]["name"] == "Renamed").then_some(json)
    })
    .await;

    // Assert
    let first: Value = serde_json::from_slice(&first).expect("JSON");
    assert_eq!(first["data"]["release"]["name"], "Polled", "{first}");
    let kept = kept.expect("a repeated POST of an unchanged closed release runs nothing");
    assert_eq!(
        serde_json::from_slice::<Value>(&kept).expect("JSON"),
        first,
        "the kept bytes are the answer"
    );
    assert!(
        renamed.is_some(),
        "after the change the POST is answered anew, not from the kept bytes"
    );
}

#[tokio::test]
async fn a_kept_answer_reaches_no_other_caller_scope_and_no_caller_without_a_token() {
    // Arrange: an answer kept for one caller.
    let app = TestApp::spawn().await;
    let token = app.token_for("keeper@example.com", None, &[]).await;
    let viewer = app
        .token_for("viewer@example.com", None, &["organization.view_all"])
        .await;
    let release = closed_release(&app, "scoped").await;
    let variables = json!({ "id": release });
    let _ = post(&app, RELEASE, &variables, Some(&token)).await;
    assert!(until_kept(&app, &variables, &token).await.is_some());

    // Act
    let kept_before = app.metric("bff_answers_kept_total").await;
    let (anonymous, anonymous_body) = post(&app, RELEASE, &variables, None).await;
    let (forged, forged_body) = post(&app, RELEASE, &variables, Some("not.a.token")).await;
    let (other, _) = post(&app, RELEASE, &variables, Some(&viewer)).await;
    let kept_after = app.metric("bff_answers_kept_total").await;

    // Assert
    let anonymous: (u16, Value) = (
        anonymous,
        serde_json::from_slice(&anonymous_body).expect("JSON"),
    );
    let forged: (u16, Value) = (forged, serde_json::from_slice(&forged_body).expect("JSON"));
    for (status, body) in [&anonymous, &forged] {
        assert_eq!(error_code(body), "UNAUTHENTICATED", "{status} {body}");
        assert!(
            body.get("data").is_none_or(Value::is_null),
            "no data: {body}"
        );
    }
    assert_eq!(other, 200);
    assert_eq!(
        kept_after, kept_before,
        "neither a caller without a token nor another scope got the kept answer"
    );
}

#[tokio::test]
async fn a_refused_document_over_a_closed_release_is_refused_again_and_never_kept() {
    // Arrange: 500 aliases of a closed release's tree, past the complexity limit.
    let app = TestApp::spawn().await;
    let token = app.token_for("flooder@example.com", None, &[]).await;
    let release = closed_release(&app, "flooded").await;
    let aliases: String = (0..500)
        .map(|i| {
            format!("a{i}: release(id: $id) {{ id name waves {{ id clusters {{ id bundle {{ apps {{ id status }} }} }} }} }} ")
        })
        .collect();
    let flood = format!("query Flood($id: ID!) {{ {aliases} }}");
    let variables = json!({ "id": release });
    let kept_before = app.metric("bff_answers_kept_total").await;

    // Act: the same document, twice.
    let (first_status, first) = post(&app, &flood, &variables, Some(&token)).await;
    let (second_status, second) = post(&app, &flood, &variables, Some(&token)).await;
    let kept_after = app.metric("bff_answers_kept_total").await;

    // Assert
    for (status, body) in [(first_status, &first), (second_status, &second)] {
        let body: Value = serde_json::from_slice(body).expect("JSON");
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{status} {body}");
        assert!(
            body.get("data").is_none_or(Value::is_null),
            "no data: {body}"
        );
    }
    assert_eq!(kept_after, kept_before, "a refusal is never kept");
}
