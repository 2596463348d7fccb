//! The reference `organizationBootstrapWorkflow` on a real Temporal dev server, its events and
//! projections, and the event store's replay and idempotency guarantees.

use serde_json::json;
use temporal_bff::{
    contracts::{
        bootstrap::{BootstrapInput, Progress, workflow_id},
        events::EventMetadata,
    },
    events::{self, NewEvent},
    worker::bootstrap::OrganizationBootstrapWorkflow,
};
use temporalio_client::{WorkflowGetResultOptions, WorkflowQueryOptions, WorkflowStartOptions};
use uuid::Uuid;

use crate::{
    fixtures::{spec, start, unique_key},
    harness::TestApp,
};

fn input(admins: usize) -> BootstrapInput {
    let id = Uuid::new_v4();
    serde_json::from_value(json!({
        "organizationId": id,
        "name": "Acme Health",
        "type": "provider",
        "subdomain": format!("acme-{}", &id.simple().to_string()[..8]),
        "adminUsers": (0..admins).map(|i| json!({
            "email": format!("Admin{i}@Acme.example"), "firstName": "Ada", "lastName": format!("L{i}")
        })).collect::<Vec<_>>(),
    }))
    .expect("the input deserializes")
}

/// Runs a bootstrap to its end; returns whether it succeeded and the final progress.
async fn run_bootstrap(app: &TestApp, input: BootstrapInput) -> (bool, Option<Progress>) {
    let client = app.temporal().await;
    let handle = client
        .start_workflow(
            OrganizationBootstrapWorkflow::run,
            input.clone(),
            WorkflowStartOptions::new(
                app.config.temporal.bootstrap_task_queue.clone(),
                workflow_id(input.organization_id),
            )
            .build(),
        )
        .await
        .expect("cannot start");
    let result = handle.get_result(WorkflowGetResultOptions::default()).await;
    let progress = handle
        .query(
            OrganizationBootstrapWorkflow::get_progress,
            (),
            WorkflowQueryOptions::default(),
        )
        .await
        .ok();
    (result.is_ok(), progress)
}

async fn event_types(app: &TestApp, org: Uuid) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT event_type FROM domain_events
          WHERE aggregate_id = $1 OR event_data ->> 'organizationId' = $1::text
          ORDER BY created_at, id",
    )
    .bind(org)
    .fetch_all(&app.db)
    .await
    .expect("the query answers")
}

#[tokio::test]
async fn a_bootstrap_completes_with_every_event_one_organization_and_an_invitation_per_admin() {
    // Arrange
    let app = TestApp::spawn_with_worker(&[]).await;
    let input = input(2);
    let org = input.organization_id;

    // Act
    let (ok, progress) = run_bootstrap(&app, input.clone()).await;

    // Assert
    assert!(ok);
    assert_eq!(progress.map(|p| p.state), Some("COMPLETED".to_owned()));
    let types = event_types(&app, org).await;
    assert_eq!(
        types,
        [
            "organization.created",
            "organization.subdomain.dns_record_created",
            "organization.subdomain.verified",
            "user.role.assigned",
            "user.role.assigned",
            "user.invited",
            "user.invited",
            "organization.bootstrap.completed",
        ]
    );
    let (status, subdomain, fqdn): (String, String, String) = sqlx::query_as(
        "SELECT status, subdomain_status, fqdn FROM organizations_projection WHERE id = $1",
    )
    .bind(org)
    .fetch_one(&app.db)
    .await
    .expect("the query answers");
    assert_eq!(
        (status.as_str(), subdomain.as_str()),
        ("active", "verified")
    );
    assert_eq!(fqdn, format!("{}.example.test", input.subdomain));
    let invited: Vec<String> = sqlx::query_scalar(
        "SELECT email FROM invitations_projection WHERE organization_id = $1 ORDER BY email",
    )
    .bind(org)
    .fetch_all(&app.db)
    .await
    .unwrap_or_default();
    assert_eq!(invited, ["admin0@acme.example", "admin1@acme.example"]);
    let metadata: serde_json::Value = sqlx::query_scalar(
        "SELECT event_metadata FROM domain_events WHERE event_type = 'organization.created' AND aggregate_id = $1",
    )
    .bind(org)
    .fetch_one(&app.db)
    .await
    .unwrap_or_default();
    assert_eq!(metadata["workflow_id"], workflow_id(org));
    assert_eq!(metadata["workflow_type"], "organizationBootstrapWorkflow");
    for key in ["workflow_run_id", "activity_id", "timestamp"] {
        assert!(metadata[key].is_string(), "{key} missing: {metadata}");
    }
}

#[tokio::test]
async fn dns_verification_failing_twice_is_retried_and_the_bootstrap_completes() {
    let app = TestApp::spawn_with_worker(&[("SIM_DNS_VERIFY_FAILURES", "2".into())]).await;
    let input = input(1);

    let (ok, _) = run_bootstrap(&app, input.clone()).await;

    assert!(ok);
    let attempts: Vec<i64> = sqlx::query_scalar(
        "SELECT (event_data ->> 'attempt')::bigint FROM domain_events
          WHERE aggregate_id = $1 AND event_type = 'organization.subdomain.verification_failed'
          ORDER BY created_at",
    )
    .bind(input.organization_id)
    .fetch_all(&app.db)
    .await
    .unwrap_or_default();
    assert_eq!(attempts, [1, 2], "each failed attempt is recorded");
    let types = event_types(&app, input.organization_id).await;
    assert_eq!(
        types.last().map(String::as_str),
        Some("organization.bootstrap.completed")
    );
}

#[tokio::test]
async fn dns_verification_failing_for_good_compensates_and_ends_failed() {
    let app = TestApp::spawn_with_worker(&[("SIM_DNS_VERIFY_FAILURES", "always".into())]).await;
    let input = input(1);
    let org = input.organization_id;

    let (ok, progress) = run_bootstrap(&app, input).await;

    assert!(!ok);
    assert_eq!(progress.as_ref().map(|p| p.state.as_str()), Some("FAILED"));
    let types = event_types(&app, org).await;
    let tail: Vec<&str> = types
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "organization.subdomain.dns_record_removed",
            "organization.deactivated",
            "organization.bootstrap.failed"
        ]
    );
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "organization.subdomain.verification_failed")
            .count(),
        5,
        "every attempt is recorded"
    );
    let (status, subdomain, error): (String, String, Option<String>) = sqlx::query_as(
        "SELECT status, subdomain_status, error FROM organizations_projection WHERE id = $1",
    )
    .bind(org)
    .fetch_one(&app.db)
    .await
    .expect("the query answers");
    assert_eq!((status.as_str(), subdomain.as_str()), ("failed", "failed"));
    let error = error.unwrap_or_default();
    assert_eq!(
        error, "VERIFY_DNS: DNS verification failed after 5 attempts",
        "a fixed, readable reason, never the provider's text"
    );
}

#[tokio::test]
async fn appending_the_same_events_twice_stores_them_once() {
    // What a retried or replayed activity does: the same deterministic IDs again.
    let app = TestApp::spawn().await;
    let at = chrono::Utc::now();
    let make = |i: usize| NewEvent {
        id: events::event_id(&["run-1", "activity-7", &i.to_string()]),
        event_type: "organization.subdomain.verified".into(),
        aggregate_type: "organization".into(),
        aggregate_id: Uuid::nil(),
        data: json!({ "i": i }),
        metadata: EventMetadata {
            timestamp: at,
            source: "test".into(),
            ..EventMetadata::default()
        },
        created_at: at,
        created_by: None,
    };
    let batch = [make(0), make(1)];

    let first = events::append(&app.db, &batch).await.unwrap_or_default();
    let second = events::append(&app.db, &batch).await.unwrap_or(99);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM domain_events")
        .fetch_one(&app.db)
        .await
        .unwrap_or_default();

    assert_eq!((first, second, stored), (2, 0, 2));
}

#[tokio::test]
async fn replaying_every_event_into_empty_projections_rebuilds_them_row_for_row() {
    // Arrange: a failed release, a completed bootstrap and a failed one, all in one database.
    let app = TestApp::spawn_with_worker(&[("SIM_DNS_VERIFY_FAILURES", "1".into())]).await;
    let client = app.temporal().await;
    let release = start(
        &client,
        &app,
        spec(
            &unique_key("replay"),
            2,
            2,
            2,
            json!({ "stepMillis": 5, "failApps": ["app-2"] }),
        ),
    )
    .await;
    let _ = release
        .get_result(WorkflowGetResultOptions::default())
        .await;
    run_bootstrap(&app, input(2)).await;
    let before = app.projections().await;

    // Act: empty the projections and the store, then insert every event again in order.
    app.replay_events().await;
    let after = app.projections().await;

    // Assert
    assert!(before.len() > 20, "something to compare: {}", before.len());
    assert_eq!(before, after);
}

#[tokio::test]
async fn demo_seeds_an_admin_releases_and_organizations_and_can_run_twice() {
    // Arrange
    let app = TestApp::spawn_with_worker(&[]).await;

    // Act
    let first = temporal_bff::worker::demo::seed(&app.config, &app.db).await;
    let second = temporal_bff::worker::demo::seed(&app.config, &app.db).await;
    let login = app
        .login(
            temporal_bff::worker::demo::DEMO_ADMIN_EMAIL,
            temporal_bff::worker::demo::DEMO_ADMIN_PASSWORD,
        )
        .await;
    let releases = crate::harness::eventually(std::time::Duration::from_secs(20), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM release_projection")
            .fetch_one(&app.db)
            .await
            .ok()?;
        (n == 6).then_some(n)
    })
    .await;
    let organizations = crate::harness::eventually(std::time::Duration::from_secs(20), || async {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT name, status FROM organizations_projection ORDER BY name")
                .fetch_all(&app.db)
                .await
                .ok()?;
        (rows.len() == 2 && rows[0].1 == "active").then_some(rows)
    })
    .await;

    // Assert
    assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.db)
        .await
        .unwrap_or_default();
    assert_eq!(users, 1);
    assert!(login["data"]["login"]["token"].is_string(), "{login}");
    assert_eq!(releases, Some(6));
    assert_eq!(
        organizations,
        Some(vec![
            ("Acme Health".to_owned(), "active".to_owned()),
            ("Globex Partners".to_owned(), "pending".to_owned()),
        ])
    );
}
