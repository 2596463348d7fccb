//! The GraphQL endpoint, GraphiQL and the committed schema.

use serde_json::json;

use crate::harness::TestApp;

#[tokio::test]
async fn graphiql_is_served_on_get_graphql() {
    let app = TestApp::spawn().await;

    let response = app
        .http
        .get(app.url("/graphql"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(response.status().as_u16(), 200);
    let page = response.text().await.unwrap_or_default();
    assert!(page.contains("graphiql"), "not a GraphiQL page");
    assert!(page.contains("/graphql"), "GraphiQL must point at /graphql");
}

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
        .unwrap_or_else(|e| panic!("{e}"));
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
        .unwrap_or_else(|e| panic!("{e}"));

    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(!printed.is_empty());
    assert_eq!(
        committed, printed,
        "schema.graphql is stale: run `cargo run -q -- schema > schema.graphql`"
    );
}
