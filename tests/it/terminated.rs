//! Truth after a workflow is terminated: terminating runs no workflow code, so no event says the
//! rollout stopped. The service records the close itself, when a read finds it and from its
//! reconciler, and a replay rebuilds the same state. Terminations go through the real
//! `temporal` CLI, as an operator's would.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    fixtures::start_bootstrap,
    fixtures::{spec, start, unique_key},
    harness::{TestApp, eventually},
};

/// `temporal workflow terminate` on the test server.
fn terminate(app: &TestApp, workflow_id: &str, reason: &str) {
    let cli = temporal_bff::devstack::temporal_cli().expect("the temporal CLI is installed");
    let address = app.config.temporal.address.as_str();
    let address = address.trim_start_matches("http://").trim_end_matches('/');
    let output = std::process::Command::new(cli)
        .args([
            "workflow",
            "terminate",
            "--workflow-id",
            workflow_id,
            "--reason",
            reason,
            "--address",
            address,
            "--namespace",
            &app.config.temporal.namespace,
        ])
        .output()
        .expect("cannot run the temporal CLI");
    assert!(
        output.status.success(),
        "terminate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts a slow 1×2×3 release and waits until an app deploys; returns its global ID.
async fn release_mid_rollout(app: &TestApp) -> String {
    let key = unique_key("term");
    let client = app.temporal().await;
    start(
        &client,
        app,
        spec(&key, 1, 2, 3, json!({ "stepMillis": 2000 })),
    )
    .await;
    let id = format!("release:{key}");
    let deploying = eventually(Duration::from_secs(20), || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM release_entity_projection
              WHERE release_id = $1 AND kind = 'app' AND status = 'IN_PROGRESS'",
        )
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .ok()?;
        (n > 0).then_some(())
    })
    .await;
    assert!(deploying.is_some(), "the rollout got going");
    id
}

/// (status, message) of every node of `release`, by ID.
async fn nodes(app: &TestApp, release: &str) -> Vec<(String, String, String, Option<String>)> {
    sqlx::query_as(
        "SELECT id, kind, status, message FROM release_entity_projection
          WHERE release_id = $1 ORDER BY id",
    )
    .bind(release)
    .fetch_all(&app.db)
    .await
    .expect("the query answers")
}

async fn closes_recorded(app: &TestApp, release: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM domain_events
          WHERE event_type = 'release.workflow_closed' AND event_data ->> 'id' = $1",
    )
    .bind(release)
    .fetch_one(&app.db)
    .await
    .expect("the query answers")
}

#[tokio::test]
async fn a_release_terminated_mid_rollout_reads_cancelled_with_the_reason_and_replays_the_same() {
    // Arrange: no reconciler pass during the test, so the read finds it.
    let app = TestApp::spawn_with_worker(&[("RECONCILE_INTERVAL_MS", "86400000".into())]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let release = release_mid_rollout(&app).await;

    // Act
    terminate(&app, &release, "stopped by ops");
    let query = "query($id: ID!) { release(id: $id) { status message source
        progress { percent } waves { clusters { bundle { apps { key status } } } } } }";
    let read = eventually(Duration::from_secs(20), || async {
        let body = app
            .graphql_as(&token, query, json!({ "id": release }))
            .await;
        (body["data"]["release"]["status"] == "CANCELLED").then_some(body)
    })
    .await;
    let before_replay = app.projections().await;
    app.replay_events().await;
    let after_replay = app.projections().await;

    // Assert
    let body = read.unwrap_or_else(|| panic!("the release never read CANCELLED"));
    let release_body = &body["data"]["release"];
    assert_eq!(
        release_body["message"], "TERMINATED: stopped by ops",
        "{body}"
    );
    assert_eq!(release_body["source"], "PROJECTION");
    let rows = nodes(&app, &release).await;
    let apps: Vec<&str> = rows
        .iter()
        .filter(|(_, kind, _, _)| kind == "app")
        .map(|(_, _, status, _)| status.as_str())
        .collect();
    assert!(
        apps.contains(&"CANCELLED"),
        "the deploys under way were cancelled: {rows:?}"
    );
    assert!(
        apps.contains(&"PENDING"),
        "the ones never started stay pending: {rows:?}"
    );
    assert!(
        !rows.iter().any(|(_, _, status, _)| status == "IN_PROGRESS"),
        "nothing is left in progress: {rows:?}"
    );
    assert_eq!(closes_recorded(&app, &release).await, 1);
    assert_eq!(
        before_replay, after_replay,
        "a replay rebuilds the same projections"
    );
}

#[tokio::test]
async fn the_reconciler_of_several_replicas_records_a_terminated_release_nobody_reads_once() {
    // Arrange: two replicas reconciling every 200 ms, nobody reading.
    let a = TestApp::spawn_with_worker(&[("RECONCILE_INTERVAL_MS", "200".into())]).await;
    let _b = TestApp::spawn_with(&[
        ("DATABASE_URL", a.config.database_url().to_owned()),
        ("RECONCILE_INTERVAL_MS", "200".into()),
    ])
    .await;
    let release = release_mid_rollout(&a).await;

    // Act
    terminate(&a, &release, "abandoned");
    let closed = eventually(Duration::from_secs(20), || async {
        let (status, message): (String, Option<String>) =
            sqlx::query_as("SELECT status, message FROM release_projection WHERE id = $1")
                .bind(&release)
                .fetch_one(&a.db)
                .await
                .ok()?;
        (status == "CANCELLED").then_some(message)
    })
    .await;

    // Assert
    assert_eq!(closed, Some(Some("TERMINATED: abandoned".to_owned())));
    // Both replicas may have seen it close: the event's ID comes from the closed run.
    assert_eq!(closes_recorded(&a, &release).await, 1, "recorded once");
}

#[tokio::test]
async fn a_terminated_bootstrap_shows_failed_with_the_reason_never_running() {
    // Arrange: DNS never verifies, so the bootstrap keeps retrying until terminated.
    let app = TestApp::spawn_with_worker(&[
        ("SIM_DNS_VERIFY_FAILURES", "always".into()),
        ("RECONCILE_INTERVAL_MS", "200".into()),
    ])
    .await;
    let (token, org) = start_bootstrap(&app, "stuck").await;
    let workflow = uuid::Uuid::parse_str(&org)
        .map(temporal_bff::contracts::bootstrap::workflow_id)
        .expect("the organization ID is a UUID");
    let query = "query($id: ID!) { organization(id: $id) { status bootstrap {
        state failure { step reason } steps { name status } } } }";
    let verifying = eventually(Duration::from_secs(20), || async {
        let body = app.graphql_as(&token, query, json!({ "id": org })).await;
        let steps = body["data"]["organization"]["bootstrap"]["steps"]
            .as_array()?
            .clone();
        steps
            .iter()
            .any(|s| s["name"] == "VERIFY_DNS" && s["status"] == "RUNNING")
            .then_some(())
    })
    .await;

    // Act
    terminate(&app, &workflow, "customer withdrew");
    let failed = eventually(Duration::from_secs(20), || async {
        let body = app.graphql_as(&token, query, json!({ "id": org })).await;
        (body["data"]["organization"]["bootstrap"]["state"] == "FAILED").then_some(body)
    })
    .await;

    // Assert
    assert!(verifying.is_some(), "it was stuck verifying DNS");
    let body = failed.unwrap_or_else(|| panic!("the bootstrap never showed FAILED"));
    let failure: &Value = &body["data"]["organization"]["bootstrap"]["failure"];
    assert_eq!(failure["step"], "VERIFY_DNS", "{body}");
    assert_eq!(failure["reason"], "TERMINATED: customer withdrew", "{body}");
}
