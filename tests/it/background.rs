//! The tasks beside the requests have one owner: a shutdown gives the outbox's claimed rows
//! back and stops listening, and a task that dies comes back.

use std::time::Duration;

use serde_json::json;

use crate::harness::{TestApp, eventually};

/// Backends of the app's database that are listening for changes now.
async fn listening_since(app: &TestApp, since: chrono::DateTime<chrono::Utc>) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
          WHERE datname = current_database() AND query LIKE 'LISTEN%' AND query_start >= $1",
    )
    .bind(since)
    .fetch_one(&app.db)
    .await
    .expect("pg_stat_activity is readable")
}

#[tokio::test]
async fn a_shutdown_gives_back_the_rows_the_dispatcher_holds_and_stops_listening() {
    // Arrange: a Temporal that accepts connections and never answers, so the dispatcher holds
    // its claim on a queued start for as long as a delivery may take.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the silent Temporal");
    let silent_addr = silent.local_addr().expect("it has an address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let mut app =
        TestApp::spawn_with(&[("TEMPORAL_ADDRESS", format!("http://{silent_addr}"))]).await;
    let token = app
        .token_for("root@example.com", None, &["organization.create_root"])
        .await;
    let started = app
        .graphql_as(
            &token,
            "mutation($input: StartOrganizationBootstrapInput!) {
               startOrganizationBootstrap(input: $input) { organizationId status } }",
            json!({ "input": {
                "name": "Held Org", "subdomain": "held-org", "type": "PROVIDER",
                "adminUsers": [{ "email": "ada@held.example", "firstName": "Ada", "lastName": "L" }],
            }}),
        )
        .await;
    let db = app.db.clone();
    let row = || async {
        sqlx::query_as::<_, (String, Option<String>, i32)>(
            "SELECT status, claimed_by, attempts FROM workflow_queue_projection",
        )
        .fetch_one(&db)
        .await
        .ok()
    };
    let claimed = eventually(Duration::from_secs(20), || async {
        row().await.filter(|(status, _, _)| status == "processing")
    })
    .await;
    let listening_before = listening_since(&app, chrono::DateTime::UNIX_EPOCH).await;

    // Act
    let stopped = tokio::time::timeout(Duration::from_secs(15), app.stop()).await;

    // Assert
    assert_eq!(
        started["data"]["startOrganizationBootstrap"]["status"], "QUEUED",
        "{started}"
    );
    let (_, claimed_by, attempts) = claimed.expect("the dispatcher claimed the queued start");
    assert!(claimed_by.is_some(), "the claim names its replica");
    assert!(stopped.is_ok(), "the shutdown finished within its bounds");
    let (status, claimed_by, attempts_after) = row().await.expect("the row is still there");
    assert_eq!(status, "pending", "the claimed row was given back");
    assert_eq!(claimed_by, None, "no replica's name is left on it");
    assert_eq!(
        attempts_after,
        attempts - 1,
        "the interrupted attempt is not counted"
    );
    assert_eq!(listening_before, 1, "the app listened for changes");
    assert_eq!(
        listening_since(&app, chrono::DateTime::UNIX_EPOCH).await,
        0,
        "no connection listens after the shutdown"
    );
}

#[tokio::test]
async fn a_background_task_that_is_killed_is_counted_and_comes_back() {
    // Arrange
    let app = TestApp::spawn().await;
    let running = eventually(Duration::from_secs(10), || async {
        let names = app.tasks.names();
        names.contains(&"db.changes").then_some(names)
    })
    .await
    .expect("the change listener runs");
    eventually(Duration::from_secs(10), || async {
        (listening_since(&app, chrono::DateTime::UNIX_EPOCH).await == 1).then_some(())
    })
    .await
    .expect("the app listens for changes");
    let before: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&app.db)
        .await
        .expect("the database tells the time");

    // Act
    let killed = app.tasks.kill("db.changes");

    // Assert
    assert!(killed, "the task was running: {running:?}");
    for task in [
        "db.changes",
        "outbox.dispatcher",
        "reconciler",
        "release_hub.lists",
        "login_throttle.housekeeping",
    ] {
        assert!(running.contains(&task), "{task} runs: {running:?}");
    }
    let relistened = eventually(Duration::from_secs(10), || async {
        (listening_since(&app, before).await == 1).then_some(())
    })
    .await;
    assert!(
        relistened.is_some(),
        "a new listener connected after the kill"
    );
    let restarts = eventually(Duration::from_secs(5), || async {
        let value = app
            .metric("bff_background_task_restarts_total{task=\"db.changes\"}")
            .await;
        (value >= 1.0).then_some(value)
    })
    .await;
    assert_eq!(
        restarts,
        Some(1.0),
        "the restart is counted once on /metrics"
    );
}
