//! `Query.nodes`: waves, clusters, bundles and apps across every release, on real rollouts
//! through the reference worker.

use serde_json::{Value, json};

use crate::fixtures::finished_release;
use crate::harness::{TestApp, error_code};

const SEARCH: &str = "query($kind: NodeKind, $key: String, $status: [RolloutStatus!], $since: DateTime, $first: Int, $after: String) {
  nodes(kind: $kind, key: $key, status: $status, since: $since, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage hasPreviousPage }
    edges { cursor path { kind key } node { __typename ... on App { id key status } ... on Cluster { id key status } } } } }";

fn ids(body: &Value) -> Vec<String> {
    body["data"]["nodes"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|edge| edge["node"]["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_search_by_kind_key_and_status_finds_those_nodes_of_every_release_newest_first() {
    // Arrange: two 2×2×2 rollouts whose app-2s fail.
    let app = TestApp::spawn_with_worker(&[]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    finished_release(&app).await;
    finished_release(&app).await;
    let expected: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM release_entity_projection
          WHERE kind = 'app' AND key = 'app-2' AND status = 'FAILED'
          ORDER BY updated_at DESC, id DESC",
    )
    .fetch_all(&app.db)
    .await
    .expect("the projection answers");
    let failed = json!({ "kind": "APP", "key": "app-2", "status": ["FAILED"] });

    // Act
    let all = app.graphql_as(&token, SEARCH, failed.clone()).await;
    let mut paged = Vec::new();
    let mut after = Value::Null;
    for _ in 0..10 {
        let mut variables = failed.clone();
        variables["first"] = json!(1);
        variables["after"] = after.clone();
        // Without `totalCount`: the page's statement alone.
        let page = app
            .graphql_as(&token, &SEARCH.replacen("totalCount ", "", 1), variables)
            .await;
        paged.extend(ids(&page));
        if page["data"]["nodes"]["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = page["data"]["nodes"]["edges"][0]["cursor"].clone();
    }
    let clusters = app
        .graphql_as(
            &token,
            SEARCH,
            json!({ "kind": "CLUSTER", "status": ["FAILED"] }),
        )
        .await;
    let future = app
        .graphql_as(
            &token,
            SEARCH,
            json!({ "key": "app-2", "since": "2999-01-01T00:00:00Z" }),
        )
        .await;

    // Assert
    assert!(all["errors"].is_null(), "{all}");
    assert_eq!(expected.len(), 4, "two failed app-2s in each release");
    assert_eq!(ids(&all), expected);
    assert_eq!(all["data"]["nodes"]["totalCount"], json!(4));
    assert_eq!(paged, expected, "pages of one add up to the list");
    let edges = all["data"]["nodes"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for edge in &edges {
        assert_eq!(edge["node"]["status"], "FAILED");
        assert_eq!(edge["node"]["key"], "app-2");
        let kinds: Vec<&Value> = edge["path"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|step| &step["kind"])
            .collect();
        assert_eq!(
            kinds,
            [
                &Value::Null,
                &json!("WAVE"),
                &json!("CLUSTER"),
                &json!("BUNDLE")
            ],
            "the path from the release: {edge}"
        );
    }
    let cluster_kinds: Vec<&Value> = clusters["data"]["nodes"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|edge| &edge["node"]["__typename"])
        .collect();
    assert_eq!(cluster_kinds, vec![&json!("Cluster"); 4], "{clusters}");
    assert_eq!(future["data"]["nodes"]["totalCount"], json!(0), "{future}");
    assert!(ids(&future).is_empty());
}

#[tokio::test]
async fn a_search_refuses_a_bad_key_a_foreign_cursor_and_a_huge_page() {
    // Arrange
    let app = TestApp::spawn().await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let releases_cursor =
        temporal_bff::graphql::connection::encode_keyset(chrono::Utc::now(), "release:somewhere");

    // Act
    let bad_key = app
        .graphql_as(&token, SEARCH, json!({ "key": "not a key\u{0}" }))
        .await;
    let foreign = app
        .graphql_as(&token, SEARCH, json!({ "after": releases_cursor }))
        .await;
    let huge = app
        .graphql_as(&token, SEARCH, json!({ "first": 101 }))
        .await;
    let anonymous = app.graphql(SEARCH, json!({})).await;

    // Assert
    assert_eq!(error_code(&bad_key), "BAD_USER_INPUT", "{bad_key}");
    assert_eq!(error_code(&foreign), "BAD_USER_INPUT", "{foreign}");
    assert_eq!(error_code(&huge), "BAD_USER_INPUT", "{huge}");
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED", "{anonymous}");
    for body in [&bad_key, &foreign, &huge, &anonymous] {
        assert!(
            body["data"].is_null() || body["data"]["nodes"].is_null(),
            "{body}"
        );
    }
}
