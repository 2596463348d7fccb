//! `domain_events` is shared with the platform: foreign and malformed events must never make
//! their INSERT fail, and the projections stay consistent (and replay exactly) around them.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::TestApp;

/// One event as another writer might insert it.
struct Foreign {
    what: &'static str,
    event_type: &'static str,
    aggregate_id: Uuid,
    data: Value,
    source: &'static str,
}

fn foreign(
    what: &'static str,
    event_type: &'static str,
    aggregate_id: Uuid,
    data: Value,
) -> Foreign {
    Foreign {
        what,
        event_type,
        aggregate_id,
        data,
        source: "platform",
    }
}

async fn insert(app: &TestApp, event: &Foreign, seconds: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data, event_metadata, created_at)
         VALUES ($1, 'foreign', $2, $3, jsonb_build_object('source', $4::text),
                 timestamptz '2025-01-01 10:00:00+00' + make_interval(secs => $5))",
    )
    .bind(event.event_type)
    .bind(event.aggregate_id)
    .bind(&event.data)
    .bind(event.source)
    .bind(seconds as f64)
    .execute(&app.db)
    .await
    .map(drop)
}

async fn scalar<T>(app: &TestApp, sql: &'static str, id: Uuid) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql)
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test]
async fn foreign_and_malformed_events_are_all_stored_and_the_projections_stay_consistent() {
    // Arrange
    let app = TestApp::spawn().await;
    let (numeric_at, no_fqdn, upper, alien, dup) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let (queue, completed_org) = (Uuid::new_v4(), Uuid::new_v4());
    let invitation_1 = Uuid::new_v4();
    let invitation_2 = Uuid::new_v4();
    let far_future = "2999-01-01T00:00:00Z";
    let corpus = vec![
        foreign(
            "an unknown type",
            "platform.billing.invoice_created",
            Uuid::new_v4(),
            json!({ "amount": 12 }),
        ),
        foreign(
            "a type in another case",
            "Organization.Created",
            Uuid::new_v4(),
            json!({ "name": "Case" }),
        ),
        foreign(
            "a LIKE look-alike of a status change",
            "release.xstatusXchanged",
            Uuid::new_v4(),
            json!({ "id": "release:r" }),
        ),
        foreign(
            "event_data that is not an object",
            "organization.created",
            Uuid::new_v4(),
            json!([1, 2, 3]),
        ),
        foreign(
            "a numeric at",
            "organization.created",
            numeric_at,
            json!({ "at": 1_716_200_000, "name": "Numeric", "type": "provider", "slug": "numeric-at", "fqdn": "numeric-at.example.test" }),
        ),
        foreign(
            "no fqdn",
            "organization.created",
            no_fqdn,
            json!({ "name": "No Fqdn", "type": "provider_partner", "slug": "no-fqdn" }),
        ),
        foreign(
            "type in upper case",
            "organization.created",
            upper,
            json!({ "name": "Upper", "type": "PROVIDER", "slug": "upper-type", "fqdn": "upper-type.example.test" }),
        ),
        foreign(
            "an unknown organization type",
            "organization.created",
            alien,
            json!({ "name": "Alien", "type": "martian", "slug": "alien" }),
        ),
        foreign(
            "no slug at all",
            "organization.bootstrap.initiated",
            Uuid::new_v4(),
            json!({ "name": "Nameless", "type": "provider" }),
        ),
        foreign(
            "a timestamp that is garbage",
            "organization.subdomain.verified",
            numeric_at,
            json!({ "at": "yesterday-ish" }),
        ),
        foreign(
            "a date that does not exist",
            "organization.subdomain.verified",
            numeric_at,
            json!({ "at": "2026-02-31T10:00:00Z" }),
        ),
        foreign(
            "a status change dated in month 13",
            "release.app.status_changed",
            Uuid::new_v4(),
            json!({ "id": "app:nowhere/w1/c1/b/a1", "status": "FAILED", "at": "2026-13-45" }),
        ),
        foreign(
            "a release node without kind",
            "release.created",
            Uuid::new_v4(),
            json!({
            "id": "release:foreign-1", "key": "foreign-1", "name": "Foreign",
            "nodes": [
                { "id": "release:foreign-1", "kind": "release", "key": "foreign-1", "name": "Foreign", "position": 1 },
                { "id": "wave:foreign-1/w1", "parentId": "release:foreign-1", "key": "w1", "name": "W1", "position": "first" },
                { "id": "wave:foreign-1/w2", "parentId": "release:foreign-1", "kind": "wave", "key": "w2", "name": "W2", "position": 2 }
            ] }),
        ),
        foreign(
            "another release with a key in use",
            "release.created",
            Uuid::new_v4(),
            json!({ "id": "release:foreign-3", "key": "foreign-1", "name": "Clash",
                    "nodes": [{ "id": "release:foreign-3", "kind": "release", "key": "foreign-1", "name": "Clash" }] }),
        ),
        foreign(
            "nodes that are not a list",
            "release.created",
            Uuid::new_v4(),
            json!({ "id": "release:foreign-2", "key": "foreign-2", "nodes": "oops" }),
        ),
        foreign(
            "an unknown status",
            "release.wave.status_changed",
            Uuid::new_v4(),
            json!({ "id": "wave:foreign-1/w2", "status": "EXPLODED" }),
        ),
        foreign(
            "a status without at",
            "release.wave.status_changed",
            Uuid::new_v4(),
            json!({ "id": "wave:foreign-1/w2", "status": "IN_PROGRESS" }),
        ),
        foreign(
            "an invitation id that is no UUID",
            "user.invited",
            Uuid::new_v4(),
            json!({
            "invitationId": "inv-7", "organizationId": no_fqdn, "email": "pat@example.com", "role": "admin" }),
        ),
        foreign(
            "an invitation without organization",
            "user.invited",
            Uuid::new_v4(),
            json!({ "email": "x@example.com" }),
        ),
        foreign(
            "an invitation",
            "user.invited",
            invitation_1,
            json!({
            "invitationId": invitation_1, "organizationId": upper, "email": "Sam@Example.com", "role": "admin" }),
        ),
        foreign(
            "a re-invitation with a new id",
            "user.invited",
            invitation_2,
            json!({
            "invitationId": invitation_2, "organizationId": upper, "email": "sam@example.com", "role": "owner" }),
        ),
        foreign(
            "a queue row with a bad id",
            "workflow.queue.pending",
            Uuid::new_v4(),
            json!({ "queueId": "q-1" }),
        ),
        foreign(
            "a queue row",
            "workflow.queue.pending",
            completed_org,
            json!({
            "queueId": queue, "organizationId": completed_org, "workflowId": "wf-foreign",
            "workflowType": "someWorkflow", "taskQueue": "elsewhere", "input": {}, "notBefore": far_future }),
        ),
        foreign(
            "its start",
            "organization.bootstrap.workflow_started",
            completed_org,
            json!({ "queueId": queue, "workflowId": "wf-foreign", "runId": "run-1" }),
        ),
        foreign(
            "a late failure of a started row",
            "workflow.queue.failed",
            completed_org,
            json!({ "queueId": queue, "reason": "too late" }),
        ),
        foreign(
            "the organization of that row",
            "organization.created",
            completed_org,
            json!({ "name": "Started", "type": "provider", "slug": "started-org", "fqdn": "started-org.example.test" }),
        ),
        foreign(
            "a second live organization with a taken slug",
            "organization.bootstrap.initiated",
            dup,
            json!({ "name": "Dup", "type": "provider", "slug": "upper-type", "fqdn": "upper-type.example.test" }),
        ),
    ];

    // Act
    let mut failures = Vec::new();
    for (i, event) in corpus.iter().enumerate() {
        if let Err(error) = insert(&app, event, i as i64).await {
            failures.push(format!("{}: {error}", event.what));
        }
    }

    // Assert: every INSERT succeeded …
    assert!(failures.is_empty(), "inserts failed: {failures:#?}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM domain_events")
        .fetch_one(&app.db)
        .await
        .unwrap_or_default();
    assert_eq!(stored, corpus.len() as i64);
    // … what could be folded was, with safe defaults …
    let created: chrono::DateTime<chrono::Utc> = scalar(
        &app,
        "SELECT created_at FROM organizations_projection WHERE id = $1",
        numeric_at,
    )
    .await;
    assert_eq!(
        created.to_rfc3339(),
        "2025-01-01T10:00:04+00:00",
        "a numeric at falls back to created_at"
    );
    let fqdn: String = scalar(
        &app,
        "SELECT fqdn FROM organizations_projection WHERE id = $1",
        no_fqdn,
    )
    .await;
    assert_eq!(fqdn, "no-fqdn");
    let org_type: String = scalar(
        &app,
        "SELECT type FROM organizations_projection WHERE id = $1",
        upper,
    )
    .await;
    assert_eq!(org_type, "provider");
    let aliens: i64 = scalar(
        &app,
        "SELECT count(*) FROM organizations_projection WHERE id = $1",
        alien,
    )
    .await;
    assert_eq!(
        aliens, 0,
        "an unknown type is skipped, not stored half-right"
    );
    let dups: i64 = scalar(
        &app,
        "SELECT count(*) FROM organizations_projection WHERE id = $1",
        dup,
    )
    .await;
    assert_eq!(dups, 0, "a taken slug is skipped for a foreign writer");
    let waves: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM release_entity_projection WHERE release_id = 'release:foreign-1' AND kind = 'wave'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap_or_default();
    assert_eq!(
        waves,
        ["wave:foreign-1/w2"],
        "the node without a kind is left out"
    );
    let wave_status: String = sqlx::query_scalar(
        "SELECT status FROM release_entity_projection WHERE id = 'wave:foreign-1/w2'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap_or_default();
    assert_eq!(
        wave_status, "IN_PROGRESS",
        "the unknown status changed nothing"
    );
    let invitations: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, role FROM invitations_projection WHERE organization_id = $1")
            .bind(upper)
            .fetch_all(&app.db)
            .await
            .unwrap_or_default();
    assert_eq!(
        invitations,
        [(invitation_2, "owner".to_owned())],
        "a re-invitation updates"
    );
    let (queue_status, org_status): (String, String) = sqlx::query_as(
        "SELECT q.status, o.status FROM workflow_queue_projection q
           JOIN organizations_projection o ON o.id = q.organization_id WHERE q.id = $1",
    )
    .bind(queue)
    .fetch_one(&app.db)
    .await
    .expect("the query answers");
    assert_eq!(
        (queue_status.as_str(), org_status.as_str()),
        ("completed", "pending"),
        "a failure for a row that did not move to failed fails nothing"
    );

    // … and replaying the whole store rebuilds the same projections.
    let before = app.projections().await;
    app.replay_events().await;
    assert_eq!(before, app.projections().await);
}
