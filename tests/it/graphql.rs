//! The GraphQL endpoint, the production switches and the committed schema (GraphiQL itself:
//! `graphiql.rs`).

use serde_json::{Value, json};

use crate::harness::TestApp;

#[tokio::test]
async fn a_query_is_answered_over_http() {
    let app = TestApp::spawn().await;
    let token = app.token_for("ada@example.com", None, &[]).await;

    let body = app.graphql_as(&token, "{ version }", json!({})).await;

    assert_eq!(body["data"]["version"], env!("CARGO_PKG_VERSION"), "{body}");
}

#[tokio::test]
async fn malformed_requests_get_a_client_error_not_a_crash() {
    let app = TestApp::spawn().await;
    let token = app.token_for("ada@example.com", None, &[]).await;

    let garbage = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("the request is answered");
    let bad_query = app
        .graphql_as(&token, "{ version { nope } ", json!({}))
        .await;
    let anonymous_bad_query = app.graphql("{ version { nope } ", json!({})).await;
    let health = app.http.get(app.url("/health")).send().await;

    assert_eq!(garbage.status().as_u16(), 400);
    assert!(bad_query["errors"][0]["message"].is_string(), "{bad_query}");
    assert_eq!(
        bad_query["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{bad_query}"
    );
    assert_eq!(
        anonymous_bad_query["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "what the gate cannot read needs a token: {anonymous_bad_query}"
    );
    assert!(health.is_ok_and(|r| r.status().is_success()));
}

#[test]
fn schema_graphql_in_the_repo_equals_the_printed_sdl() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .unwrap_or_default();
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_temporal-bff"))
        .arg("schema")
        .output()
        .expect("the process runs");

    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(!printed.is_empty());
    assert_eq!(
        committed, printed,
        "schema.graphql is stale: run `cargo run -q -- schema > schema.graphql`"
    );
}

#[tokio::test]
async fn every_query_the_readme_shows_is_valid_against_the_schema() {
    let app = TestApp::spawn().await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    // The one-line queries of the README's `graphql` blocks (mutations would write).
    let readme = include_str!("../../README.md");
    let mut queries = Vec::new();
    let mut in_block = false;
    for line in readme.lines() {
        match line.trim() {
            "```graphql" => in_block = true,
            "```" => in_block = false,
            query if in_block && query.starts_with('{') => queries.push(query),
            _ => {}
        }
    }

    assert!(
        queries.len() >= 4,
        "the README's queries were found: {queries:?}"
    );
    for query in queries {
        let body = app.graphql_as(&token, query, json!({})).await;
        let invalid: Vec<&Value> = body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["path"].is_null())
            .collect();
        assert!(invalid.is_empty(), "{query}: {body}");
    }
}

#[tokio::test]
async fn in_production_graphiql_can_be_off_and_introspection_kept_for_signed_in_callers() {
    // Arrange
    let app = TestApp::spawn_with(&[
        ("GRAPHIQL", "false".into()),
        ("INTROSPECTION", "false".into()),
    ])
    .await;
    let token = app.token_for("ada@example.com", None, &[]).await;
    let introspect = "{ __schema { queryType { name } } }";

    // Act
    let page = app.get("/graphql").await;
    let asset = app.get("/graphql/assets/graphiql-3.9.0.min.js").await;
    let anonymous = app.graphql(introspect, json!({})).await;
    let named = app
        .post_graphql(json!({ "query": "query Q { __type(name: \"Release\") { name } }", "operationName": "Q" }))
        .await;
    let signed_in = app.graphql_as(&token, introspect, json!({})).await;
    let login = app.login("ada@example.com", crate::harness::PASSWORD).await;

    // Assert
    assert_eq!(page.status().as_u16(), 404, "no GraphiQL page");
    assert_eq!(asset.status().as_u16(), 404, "nor its assets");
    for refused in [&anonymous, &named] {
        assert_eq!(
            crate::harness::error_code(refused),
            "UNAUTHENTICATED",
            "{refused}"
        );
        assert!(refused["data"].is_null(), "{refused}");
    }
    assert_eq!(signed_in["data"]["__schema"]["queryType"]["name"], "Query");
    assert!(
        login["data"]["login"]["token"].is_string(),
        "logging in still works: {login}"
    );
}
