//! Operating a release through GraphQL on the real stack: pause, resume and cancel reach the
//! workflow (checked with Temporal's describe) and the projection, are recorded as events with
//! their user and request ID, are refused with a clear code, and survive a Temporal outage.

use std::time::Duration;

use serde_json::{Value, json};
use temporal_bff::devstack::{LocalTemporal, free_port};
use temporalio_client::{UntypedWorkflow, WorkflowDescribeOptions, WorkflowExecutionStatus};

use crate::{
    fixtures::{spec, start, unique_key},
    harness::{TestApp, error_code, eventually, scratch_dir, watchdog},
};

const CONTROL: &str = "release.control";

const PAUSE: &str = "mutation($id: ID!) { pauseRelease(id: $id) { id status pendingControl } }";
const RESUME: &str = "mutation($id: ID!) { resumeRelease(id: $id) { id status pendingControl } }";
const CANCEL: &str = "mutation($id: ID!, $reason: String) {
  cancelRelease(id: $id, reason: $reason) { id status message pendingControl } }";

/// Starts a 1×1×`apps` release deploying one app every `step_ms` and waits until it deploys.
async fn rolling(app: &TestApp, apps: usize, step_ms: u64) -> String {
    let key = unique_key("ctl");
    let client = app.temporal().await;
    start(
        &client,
        app,
        spec(&key, 1, 1, apps, json!({ "stepMillis": step_ms })),
    )
    .await;
    let id = format!("release:{key}");
    let deploying = eventually(Duration::from_secs(20), || async {
        (status(app, &id).await == "IN_PROGRESS" && count_apps(app, &id, "IN_PROGRESS").await > 0)
            .then_some(())
    })
    .await;
    assert!(deploying.is_some(), "the rollout got going");
    id
}

async fn status(app: &TestApp, release: &str) -> String {
    sqlx::query_scalar("SELECT status FROM release_projection WHERE id = $1")
        .bind(release)
        .fetch_optional(&app.db)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

async fn count_apps(app: &TestApp, release: &str, status: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM release_entity_projection
          WHERE release_id = $1 AND kind = 'app' AND status = $2",
    )
    .bind(release)
    .bind(status)
    .fetch_one(&app.db)
    .await
    .unwrap_or(0)
}

/// The control events of `release`: (type, metadata).
async fn control_events(app: &TestApp, release: &str) -> Vec<(String, Value)> {
    sqlx::query_as(
        "SELECT event_type, event_metadata FROM domain_events
          WHERE event_type IN ('release.paused', 'release.resumed', 'release.cancel_requested')
            AND event_data ->> 'id' = $1 ORDER BY created_at",
    )
    .bind(release)
    .fetch_all(&app.db)
    .await
    .expect("the query answers")
}

async fn temporal_status(app: &TestApp, workflow: &str) -> WorkflowExecutionStatus {
    app.temporal()
        .await
        .get_workflow_handle::<UntypedWorkflow>(workflow)
        .describe(WorkflowDescribeOptions::default())
        .await
        .expect("describe")
        .status()
}

async fn until_status(app: &TestApp, release: &str, wanted: &str) -> bool {
    eventually(Duration::from_secs(30), || async {
        (status(app, release).await == wanted).then_some(())
    })
    .await
    .is_some()
}

#[tokio::test]
async fn pause_resume_and_cancel_reach_the_workflow_and_the_projection_and_are_recorded() {
    // Arrange
    let app = TestApp::spawn_with_worker(&[]).await;
    let operator = app
        .token_for("operator@example.com", None, &[CONTROL])
        .await;
    let release = rolling(&app, 8, 400).await;

    // Act / Assert: pause.
    let paused = app
        .graphql_as(&operator, PAUSE, json!({ "id": release }))
        .await;
    assert!(paused["errors"].is_null(), "{paused}");
    assert!(
        until_status(&app, &release, "PAUSED").await,
        "the projection shows PAUSED"
    );
    assert_eq!(
        temporal_status(&app, &release).await,
        WorkflowExecutionStatus::Running
    );
    let again = app
        .graphql_as(&operator, PAUSE, json!({ "id": release }))
        .await;
    assert_eq!(
        again["data"]["pauseRelease"]["status"], "PAUSED",
        "a no-op answering the state: {again}"
    );

    // Resume.
    let resumed = app
        .graphql_as(&operator, RESUME, json!({ "id": release }))
        .await;
    assert!(resumed["errors"].is_null(), "{resumed}");
    assert!(
        until_status(&app, &release, "IN_PROGRESS").await,
        "running again"
    );

    // Cancel.
    let cancelled = app
        .graphql_as(
            &operator,
            CANCEL,
            json!({ "id": release, "reason": "bad build" }),
        )
        .await;
    assert!(cancelled["errors"].is_null(), "{cancelled}");
    assert!(
        until_status(&app, &release, "CANCELLED").await,
        "the projection shows CANCELLED"
    );
    let closed = eventually(Duration::from_secs(20), || async {
        let status = temporal_status(&app, &release).await;
        (status == WorkflowExecutionStatus::Canceled).then_some(status)
    })
    .await;
    let after = app
        .graphql_as(&operator, PAUSE, json!({ "id": release }))
        .await;
    let events = control_events(&app, &release).await;
    let message: Option<String> =
        sqlx::query_scalar("SELECT message FROM release_projection WHERE id = $1")
            .bind(&release)
            .fetch_one(&app.db)
            .await
            .expect("the query answers");

    assert!(closed.is_some(), "Temporal says the workflow was cancelled");
    assert_eq!(message.as_deref(), Some("cancelled: bad build"));
    assert_eq!(
        count_apps(&app, &release, "PENDING").await,
        0,
        "nothing is left pending"
    );
    assert!(
        count_apps(&app, &release, "CANCELLED").await > 0,
        "what never ran is CANCELLED"
    );
    assert_eq!(count_apps(&app, &release, "IN_PROGRESS").await, 0);
    assert_eq!(
        error_code(&after),
        "BAD_USER_INPUT",
        "a closed release: {after}"
    );
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "release.paused",
            "release.resumed",
            "release.cancel_requested"
        ],
        "one event per action that changed something"
    );
    assert!(
        events
            .iter()
            .all(|(_, metadata)| metadata["user_id"].is_string()
                && metadata["correlation_id"].is_string()),
        "who asked, and under which request: {events:?}"
    );

    // A cancelled app's history ends in its cancellation, naming who asked for it.
    let cancelled_app: String = sqlx::query_scalar(
        "SELECT id FROM release_entity_projection
          WHERE release_id = $1 AND kind = 'app' AND status = 'CANCELLED' ORDER BY ord LIMIT 1",
    )
    .bind(&release)
    .fetch_one(&app.db)
    .await
    .expect("an app was cancelled");
    let history = app
        .graphql_as(
            &operator,
            "query($id: ID!) { entity(id: $id) { ... on App { history { edges { node { from to actor } } } } } }",
            json!({ "id": cancelled_app }),
        )
        .await;
    let edges = history["data"]["entity"]["history"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let last = edges.last().map(|edge| edge["node"].clone());
    assert_eq!(
        last.as_ref().map(|t| t["to"].clone()),
        Some(json!("CANCELLED")),
        "{history}"
    );
    assert_eq!(
        last.map(|t| t["actor"].clone()),
        events
            .last()
            .map(|(_, metadata)| metadata["user_id"].clone()),
        "the cancellation names who asked: {history}"
    );
}

#[tokio::test]
async fn without_release_control_a_pause_is_forbidden_and_writes_nothing() {
    // Arrange
    let app = TestApp::spawn_with_worker(&[]).await;
    let viewer = app.token_for("viewer@example.com", None, &[]).await;
    let release = rolling(&app, 3, 1000).await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM workflow_queue_projection")
        .fetch_one(&app.db)
        .await
        .unwrap_or(-1);

    // Act
    let refused = app
        .graphql_as(&viewer, PAUSE, json!({ "id": release }))
        .await;
    let missing = app
        .graphql_as(
            &app.token_for("operator@example.com", None, &[CONTROL])
                .await,
            PAUSE,
            json!({ "id": "release:no-such-release" }),
        )
        .await;
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM workflow_queue_projection")
        .fetch_one(&app.db)
        .await
        .unwrap_or(-1);

    // Assert
    assert_eq!(error_code(&refused), "FORBIDDEN", "{refused}");
    assert!(refused["data"].is_null(), "{refused}");
    assert_eq!(error_code(&missing), "NOT_FOUND", "{missing}");
    assert_eq!(before, after, "nothing queued");
    assert!(
        control_events(&app, &release).await.is_empty(),
        "nothing recorded"
    );
}

#[tokio::test]
async fn a_pause_while_temporal_is_stopped_is_queued_then_delivered_when_it_is_back() {
    // Arrange: a private Temporal server this test stops and restarts.
    let dir = scratch_dir("temporal-bff-ctl-");
    let port = free_port().unwrap_or(0);
    let mut temporal = LocalTemporal::start(&dir, port).expect("a free port");
    watchdog("", Some(temporal.pid()), &dir);
    let app = TestApp::spawn_with_worker(&[
        ("TEMPORAL_ADDRESS", temporal.address()),
        ("DISPATCH_MAX_BACKOFF_MS", "1000".into()),
    ])
    .await;
    let operator = app
        .token_for("operator@example.com", None, &[CONTROL])
        .await;
    let release = rolling(&app, 20, 500).await;

    // Act: Temporal goes away, the operator pauses, Temporal comes back.
    temporal.stop();
    let queued = app
        .graphql_as(&operator, PAUSE, json!({ "id": release }))
        .await;
    let outbox: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, status FROM workflow_queue_projection WHERE release_id = $1",
    )
    .bind(&release)
    .fetch_all(&app.db)
    .await
    .unwrap_or_default();
    let temporal = LocalTemporal::start(&dir, port).expect("restart");
    watchdog("", Some(temporal.pid()), &dir);
    let paused = until_status(&app, &release, "PAUSED").await;
    let delivered = eventually(Duration::from_secs(30), || async {
        let body = app
            .graphql_as(
                &operator,
                "query($id: ID!) { release(id: $id) { pendingControl } }",
                json!({ "id": release }),
            )
            .await;
        body["data"]["release"]["pendingControl"]
            .is_null()
            .then_some(())
    })
    .await;

    // Assert
    assert!(
        queued["errors"].is_null(),
        "accepted while Temporal is down: {queued}"
    );
    assert_eq!(
        queued["data"]["pauseRelease"]["pendingControl"], "PAUSE",
        "{queued}"
    );
    assert!(
        outbox.len() == 1
            && outbox[0].0 == "pause"
            && ["pending", "processing"].contains(&outbox[0].1.as_str()),
        "one pause waits in the outbox: {outbox:?}"
    );
    assert!(paused, "delivered once Temporal was back");
    assert!(delivered.is_some(), "nothing waits any more");
    drop(temporal);
}
