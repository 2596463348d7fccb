//! `history` on the hierarchy's nodes: status transitions from the event store, on a real
//! rollout through the reference worker.

use serde_json::{Value, json};

use crate::fixtures::{finished_release, finished_release_for_a_viewer};
use crate::harness::error_code;

const HISTORY: &str = "query($id: ID!, $first: Int, $after: String) { entity(id: $id) {
  ... on App { history(first: $first, after: $after) {
    edges { cursor node { from to at attempt message actor } }
    pageInfo { hasNextPage hasPreviousPage } } } } }";

/// (from, to, attempt, has a message, actor) of each transition of a page.
fn shape(page: &Value) -> Vec<(Value, Value, Value, bool, Value)> {
    page["data"]["entity"]["history"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|edge| {
            let t = &edge["node"];
            (
                t["from"].clone(),
                t["to"].clone(),
                t["attempt"].clone(),
                t["message"].is_string(),
                t["actor"].clone(),
            )
        })
        .collect()
}

/// The shape of a node that started once and ended `to` (with a message or not).
fn started_then(to: &str, message: bool) -> Vec<(Value, Value, Value, bool, Value)> {
    vec![
        (
            Value::Null,
            json!("IN_PROGRESS"),
            json!(1),
            false,
            Value::Null,
        ),
        (
            json!("IN_PROGRESS"),
            json!(to),
            json!(1),
            message,
            Value::Null,
        ),
    ]
}

#[tokio::test]
async fn an_apps_history_is_its_transitions_in_order_with_the_failures_message() {
    // Arrange: a 2×2×2 rollout whose app-2s fail.
    let (app, token, release) = finished_release_for_a_viewer().await;
    let key = release.trim_start_matches("release:");
    let deployed = format!("app:{key}/wave-1/cluster-1/web-services/app-1");
    let failed = format!("app:{key}/wave-1/cluster-1/web-services/app-2");

    // Act
    let deployed = app
        .graphql_as(&token, HISTORY, json!({ "id": deployed }))
        .await;
    let failed = app
        .graphql_as(&token, HISTORY, json!({ "id": failed }))
        .await;

    // Assert
    assert!(deployed["errors"].is_null(), "{deployed}");
    assert_eq!(
        shape(&deployed),
        started_then("SUCCEEDED", false),
        "{deployed}"
    );
    assert_eq!(shape(&failed), started_then("FAILED", true), "{failed}");
    let edges = &deployed["data"]["entity"]["history"]["edges"];
    assert!(
        edges[0]["node"]["at"].as_str() < edges[1]["node"]["at"].as_str(),
        "in the order they happened: {edges}"
    );
}

#[tokio::test]
async fn history_pages_continue_from_their_cursor_and_refuse_another_nodes_cursor() {
    // Arrange
    let (app, token, release) = finished_release_for_a_viewer().await;
    let key = release.trim_start_matches("release:");
    let node = format!("app:{key}/wave-1/cluster-2/web-services/app-1");
    let other = format!("app:{key}/wave-1/cluster-2/web-services/app-2");
    let whole = app.graphql_as(&token, HISTORY, json!({ "id": node })).await;

    // Act
    let first = app
        .graphql_as(&token, HISTORY, json!({ "id": node, "first": 1 }))
        .await;
    let cursor = first["data"]["entity"]["history"]["edges"][0]["cursor"].clone();
    let rest = app
        .graphql_as(&token, HISTORY, json!({ "id": node, "after": cursor }))
        .await;
    let foreign = app
        .graphql_as(&token, HISTORY, json!({ "id": other, "after": cursor }))
        .await;
    let huge = app
        .graphql_as(&token, HISTORY, json!({ "id": node, "first": 1000 }))
        .await;
    let overflowing = temporal_bff::graphql::connection::encode_cursor(&format!(
        "history|{node}|99999999999999999999999"
    ));
    let overflow = app
        .graphql_as(&token, HISTORY, json!({ "id": node, "after": overflowing }))
        .await;
    // The last place there is: nothing comes after it, and it must not wrap around to 0.
    let last_place =
        temporal_bff::graphql::connection::encode_cursor(&format!("history|{node}|{}", usize::MAX));
    let at_the_end = app
        .graphql_as(&token, HISTORY, json!({ "id": node, "after": last_place }))
        .await;

    // Assert
    let mut paged = shape(&first);
    paged.extend(shape(&rest));
    assert_eq!(paged, shape(&whole));
    assert_eq!(
        first["data"]["entity"]["history"]["pageInfo"],
        json!({ "hasNextPage": true, "hasPreviousPage": false })
    );
    assert_eq!(
        rest["data"]["entity"]["history"]["pageInfo"],
        json!({ "hasNextPage": false, "hasPreviousPage": true })
    );
    assert_eq!(error_code(&foreign), "BAD_USER_INPUT", "{foreign}");
    assert_eq!(error_code(&huge), "BAD_USER_INPUT", "{huge}");
    assert_eq!(error_code(&overflow), "BAD_USER_INPUT", "{overflow}");
    assert_eq!(error_code(&at_the_end), "BAD_USER_INPUT", "{at_the_end}");
}

#[tokio::test]
async fn the_histories_of_a_whole_tree_take_one_statement() {
    // Arrange
    let app = crate::harness::TestApp::spawn_with_worker(&[]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let release = finished_release(&app).await;
    let before = app.metric("bff_sql_statements_total").await;

    // Act: every app's first transition, in one document.
    let body = app
        .graphql_as(
            &token,
            "query($id: ID!) { release(id: $id) { waves { clusters {
               bundle { apps { history(first: 1) { nodes { to } } } } } } } }",
            json!({ "id": release }),
        )
        .await;

    // Assert: the release row, its tree, and one statement for all 8 apps' histories (the
    // counter is the process's: a background poll may add one).
    assert!(body["errors"].is_null(), "{body}");
    let statements = app.metric("bff_sql_statements_total").await - before;
    assert!(
        statements < 8.0,
        "{statements} statements: one per app, not one for all"
    );
    let first = &body["data"]["release"]["waves"][0]["clusters"][0]["bundle"]["apps"][0];
    assert_eq!(first["history"]["nodes"], json!([{ "to": "IN_PROGRESS" }]));
}
