//! The reference `ReleaseWorkflow` on a real Temporal dev server, and its projections.

use std::time::Duration;

use serde_json::json;
use temporal_bff::{
    contracts::release::{Node, RolloutStatus},
    worker::release::ReleaseWorkflow,
};
use temporalio_client::{
    WorkflowDescribeOptions, WorkflowGetResultOptions, WorkflowQueryOptions, WorkflowSignalOptions,
};

use crate::fixtures::{spec, start, unique_key};
use crate::harness::{TestApp, eventually};

async fn statuses(app: &TestApp, release_id: &str) -> Vec<(String, String, Option<String>)> {
    sqlx::query_as(
        "SELECT id, status, message FROM release_entity_projection WHERE release_id = $1 ORDER BY id",
    )
    .bind(release_id)
    .fetch_all(&app.db)
    .await.expect("the query answers")
}

fn find<'a>(rows: &'a [(String, String, Option<String>)], id: &str) -> &'a str {
    rows.iter()
        .find(|(row_id, _, _)| row_id == id)
        .map_or("<missing>", |(_, status, _)| status.as_str())
}

#[tokio::test]
async fn a_release_runs_to_succeeded_and_the_projection_has_every_node_succeeded() {
    // Arrange: 2 waves × 2 clusters × 2 apps = 1 + 2 + 4 + 4 + 8 = 19 nodes.
    let app = TestApp::spawn_with_worker(&[]).await;
    let client = app.temporal().await;
    let key = unique_key("ok");
    let handle = start(
        &client,
        &app,
        spec(&key, 2, 2, 2, json!({ "stepMillis": 150 })),
    )
    .await;

    // Act: watch it live, then wait for the end.
    let live = eventually(Duration::from_secs(20), || async {
        let tree: Node = handle
            .query(
                ReleaseWorkflow::get_hierarchy,
                (),
                WorkflowQueryOptions::default(),
            )
            .await
            .ok()?;
        tree.walk()
            .iter()
            .any(|n| n.id.starts_with("app:") && n.status == RolloutStatus::InProgress)
            .then_some(tree)
    })
    .await;
    let result = handle.get_result(WorkflowGetResultOptions::default()).await;
    let rows = statuses(&app, &format!("release:{key}")).await;

    // Assert
    let live = live.unwrap_or_else(|| panic!("never saw an app IN_PROGRESS through getHierarchy"));
    assert_eq!(live.status, RolloutStatus::InProgress);
    assert!(matches!(result, Ok(RolloutStatus::Succeeded)), "{result:?}");
    assert_eq!(rows.len(), 19, "{rows:?}");
    assert!(
        rows.iter().all(|(_, status, _)| status == "SUCCEEDED"),
        "{rows:?}"
    );
    let (status, started, completed): (
        String,
        Option<chrono::DateTime<chrono::Utc>>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) = sqlx::query_as(
        "SELECT status, started_at, completed_at FROM release_projection WHERE key = $1",
    )
    .bind(&key)
    .fetch_one(&app.db)
    .await
    .expect("the query answers");
    assert_eq!(status, "SUCCEEDED");
    assert!(started < completed, "{started:?} {completed:?}");
}

#[tokio::test]
async fn a_failing_app_fails_its_ancestors_with_its_message_and_later_waves_stay_pending() {
    // Arrange: 3 waves × 2 clusters × 2 apps; app-2 fails (in every cluster of wave 1).
    let app = TestApp::spawn_with_worker(&[]).await;
    let client = app.temporal().await;
    let key = unique_key("fail");
    let handle = start(
        &client,
        &app,
        spec(
            &key,
            3,
            2,
            2,
            json!({ "stepMillis": 20, "failApps": ["app-2"] }),
        ),
    )
    .await;

    // Act
    let result = handle.get_result(WorkflowGetResultOptions::default()).await;
    let rows = statuses(&app, &format!("release:{key}")).await;

    // Assert
    assert!(result.is_err(), "the workflow fails: {result:?}");
    let r = &key;
    let bundle = format!("{r}/wave-1/cluster-1/web-services");
    assert_eq!(find(&rows, &format!("app:{bundle}/app-1")), "SUCCEEDED");
    assert_eq!(find(&rows, &format!("app:{bundle}/app-2")), "FAILED");
    assert_eq!(find(&rows, &format!("bundle:{bundle}")), "FAILED");
    assert_eq!(
        find(&rows, &format!("cluster:{r}/wave-1/cluster-1")),
        "FAILED"
    );
    assert_eq!(find(&rows, &format!("wave:{r}/wave-1")), "FAILED");
    assert_eq!(find(&rows, &format!("release:{r}")), "FAILED");
    for later in ["wave-2", "wave-3"] {
        let below: Vec<_> = rows
            .iter()
            .filter(|(id, _, _)| id.contains(&format!("{r}/{later}")))
            .collect();
        assert!(!below.is_empty());
        assert!(below.iter().all(|(_, s, _)| s == "PENDING"), "{below:?}");
    }
    let app_message = rows
        .iter()
        .find(|(id, _, _)| id == &format!("app:{bundle}/app-2"))
        .and_then(|(_, _, m)| m.clone())
        .unwrap_or_default();
    let release_message: Option<String> =
        sqlx::query_scalar("SELECT message FROM release_projection WHERE key = $1")
            .bind(&key)
            .fetch_one(&app.db)
            .await
            .unwrap_or_default();
    assert!(app_message.contains("failed"), "{app_message:?}");
    assert!(
        release_message
            .unwrap_or_default()
            .contains("app app-2 failed"),
        "the release says which app failed"
    );
}

#[tokio::test]
async fn pause_stops_new_deploys_and_resume_finishes_the_release() {
    // Arrange: 1 wave × 1 cluster × 6 apps of 200 ms each.
    let app = TestApp::spawn_with_worker(&[]).await;
    let client = app.temporal().await;
    let key = unique_key("pause");
    let handle = start(
        &client,
        &app,
        spec(&key, 1, 1, 6, json!({ "stepMillis": 200 })),
    )
    .await;
    let succeeded = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM release_entity_projection WHERE release_id = $1 AND kind = 'app' AND status = 'SUCCEEDED'",
        )
        .bind(format!("release:{key}"))
        .fetch_one(&app.db)
        .await
        .unwrap_or_default()
    };
    eventually(Duration::from_secs(10), || async {
        (succeeded().await >= 1).then_some(())
    })
    .await;

    // Act: pause, and watch it hold.
    handle
        .signal(ReleaseWorkflow::pause, (), WorkflowSignalOptions::default())
        .await
        .expect("the signal reaches the workflow");
    let paused = eventually(Duration::from_secs(10), || async {
        let status: String =
            sqlx::query_scalar("SELECT status FROM release_projection WHERE key = $1")
                .bind(&key)
                .fetch_one(&app.db)
                .await
                .ok()?;
        (status == "PAUSED").then_some(())
    })
    .await;
    // The deploy in flight may finish; then nothing runs: no activity is pending in Temporal
    // and no app is in progress in the projection.
    let idle = || async {
        let description = handle
            .describe(WorkflowDescribeOptions::default())
            .await
            .ok()?;
        let in_progress: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM release_entity_projection WHERE release_id = $1 AND kind = 'app' AND status = 'IN_PROGRESS'",
        )
        .bind(format!("release:{key}"))
        .fetch_one(&app.db)
        .await
        .ok()?;
        (description.raw_description.pending_activities.is_empty() && in_progress == 0)
            .then_some(())
    };
    let settled = eventually(Duration::from_secs(10), idle).await;
    let held = succeeded().await;
    let still_idle = idle().await;
    let still_held = succeeded().await;
    let live: Option<Node> = handle
        .query(
            ReleaseWorkflow::get_hierarchy,
            (),
            WorkflowQueryOptions::default(),
        )
        .await
        .ok();
    handle
        .signal(
            ReleaseWorkflow::resume,
            (),
            WorkflowSignalOptions::default(),
        )
        .await
        .expect("the signal reaches the workflow");
    let result = handle.get_result(WorkflowGetResultOptions::default()).await;

    // Assert
    assert!(paused.is_some(), "the projection shows PAUSED");
    assert!(
        settled.is_some(),
        "the deploy in flight finished and none followed"
    );
    assert!(still_idle.is_some(), "still nothing runs while paused");
    assert_eq!(live.map(|t| t.status), Some(RolloutStatus::Paused));
    assert_eq!(held, still_held, "no deploy completes while paused");
    assert!(held < 6);
    assert!(matches!(result, Ok(RolloutStatus::Succeeded)), "{result:?}");
    assert_eq!(succeeded().await, 6);
}
