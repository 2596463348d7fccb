//! In the platform's own database: its `organizations_projection` and
//! `workflow_queue_projection` (other columns, its rows) and its trigger
//! `enqueue_workflow_from_bootstrap_event` on the shared `domain_events` are already there.
//! The service migrates into a schema of its own (`DATABASE_SCHEMA`), never touches the
//! platform's tables, and works there; the platform's trigger still works in the service's
//! sessions, and the platform's own inserts still work with the service's triggers in place.

use serde_json::Value;
use sqlx::Connection;

use crate::{
    fixtures::{bootstrap_completes, start_bootstrap},
    harness::{TestApp, binary, random_secret, stack, test_pool},
};

/// The platform as the issue found it, written the way the platform writes SQL: unqualified
/// names, no pinned `search_path`. The event store has the design's columns.
const PLATFORM: &str = r#"
CREATE EXTENSION IF NOT EXISTS ltree;
CREATE TABLE domain_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event_type text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id uuid NOT NULL,
    event_data jsonb NOT NULL DEFAULT '{}',
    event_metadata jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    created_by uuid
);
CREATE TABLE organizations_projection (org_id uuid primary key, name text, type text, path ltree,
    domain text, subdomain_status text, subdomain_metadata jsonb, created_at timestamptz,
    updated_at timestamptz);
CREATE TABLE workflow_queue_projection (id uuid primary key, event_type text, stream_id uuid,
    status text, worker_id text, workflow_id text, created_at timestamptz, updated_at timestamptz);
INSERT INTO organizations_projection VALUES
    ('11111111-1111-1111-1111-111111111111', 'Platform Org', 'provider', 'root.platform',
     'platform.example', 'verified', '{"zone": "z1"}', '2026-01-01', '2026-01-02');
INSERT INTO workflow_queue_projection VALUES
    ('22222222-2222-2222-2222-222222222222', 'organization.bootstrap.initiated',
     '11111111-1111-1111-1111-111111111111', 'completed', 'worker-1', 'org-bootstrap-1',
     '2026-01-01', '2026-01-02');

CREATE FUNCTION enqueue_workflow_from_bootstrap_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_type = 'organization.bootstrap.initiated' THEN
        INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data)
        VALUES ('workflow.queue.pending', 'workflow_queue', NEW.aggregate_id,
                jsonb_build_object('event_type', NEW.event_type, 'event_id', NEW.id,
                                   'stream_id', NEW.aggregate_id));
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER enqueue_workflow_from_bootstrap_event AFTER INSERT ON domain_events
    FOR EACH ROW EXECUTE FUNCTION enqueue_workflow_from_bootstrap_event();

CREATE FUNCTION update_workflow_queue_projection_from_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workflow_queue_projection (id, event_type, stream_id, status, created_at, updated_at)
    VALUES (NEW.id, NEW.event_data ->> 'event_type', NEW.aggregate_id, 'pending',
            NEW.created_at, NEW.created_at);
    RETURN NEW;
END $$;
CREATE TRIGGER update_workflow_queue_projection_trigger AFTER INSERT ON domain_events
    FOR EACH ROW WHEN (NEW.event_type = 'workflow.queue.pending')
    EXECUTE FUNCTION update_workflow_queue_projection_from_event();
"#;

/// A new, empty database on the shared cluster (not the migrated template); its URL.
async fn empty_database() -> String {
    let name = format!("platform_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&stack().postgres.url("postgres"))
        .await
        .expect("the admin connection opens");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("the database is created");
    stack().postgres.url(&name)
}

/// Every row and every column of the platform's two tables, as JSON.
async fn platform_state(db: &sqlx::PgPool) -> (Vec<Value>, Vec<String>) {
    let rows = sqlx::query_scalar(
        "SELECT to_jsonb(t) FROM public.organizations_projection t
         UNION ALL SELECT to_jsonb(t) FROM public.workflow_queue_projection t ORDER BY 1",
    )
    .fetch_all(db)
    .await
    .expect("the platform's rows read");
    let columns = sqlx::query_scalar(
        "SELECT table_name || '.' || column_name || ' ' || data_type
           FROM information_schema.columns
          WHERE table_schema = 'public'
            AND table_name IN ('organizations_projection', 'workflow_queue_projection')
          ORDER BY table_name, ordinal_position",
    )
    .fetch_all(db)
    .await
    .expect("the platform's columns read");
    (rows, columns)
}

#[tokio::test]
async fn in_the_platforms_database_the_service_keeps_to_its_schema_and_starts_a_bootstrap_once() {
    // Arrange: the platform's database, then `temporal-bff migrate` as production runs it.
    let url = empty_database().await;
    let platform = sqlx::PgPool::connect(&url)
        .await
        .expect("the platform's pool connects");
    sqlx::raw_sql(PLATFORM)
        .execute(&platform)
        .await
        .expect("the platform's schema is created");
    let before = platform_state(&platform).await;
    let migrated = binary(&["migrate"], &[("DATABASE_URL", &url)], "");
    let migrated_again = binary(&["migrate"], &[("DATABASE_URL", &url)], "");
    let after_migrate = platform_state(&platform).await;

    // Act: the app and its worker on that database, one bootstrap through GraphQL.
    let app = TestApp::spawn_with_worker(&[("DATABASE_URL", url.clone())]).await;
    let (admin, org) = start_bootstrap(&app, "shared").await;
    let completed = bootstrap_completes(&app, &admin, &org).await;
    // The platform writes an event of its own shape, with the service's triggers in place.
    let platform_insert = sqlx::query(
        "INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data)
         VALUES ('organization.bootstrap.initiated', 'organization', gen_random_uuid(),
                 '{\"name\": \"Theirs\", \"path\": \"root.theirs\"}')",
    )
    .execute(&platform)
    .await;

    // Assert
    assert!(
        migrated.status.success() && migrated_again.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert_eq!(
        after_migrate, before,
        "migrating changed the platform's tables"
    );
    assert!(completed, "the bootstrap completed");
    let db = test_pool(&url).await;
    let ours: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT status, workflow_run_id FROM bff.workflow_queue_projection
          WHERE organization_id = $1::uuid",
    )
    .bind(&org)
    .fetch_all(&db)
    .await
    .expect("the outbox reads");
    assert_eq!(ours.len(), 1, "one outbox row for the bootstrap: {ours:?}");
    assert_eq!(ours[0].0, "completed");
    let started: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM public.domain_events
          WHERE event_type = 'organization.bootstrap.workflow_started'",
    )
    .fetch_one(&db)
    .await
    .expect("the count answers");
    assert_eq!(started, 1, "the workflow was started exactly once");
    let (rows, columns) = platform_state(&platform).await;
    assert_eq!(columns, before.1, "the platform's columns are as they were");
    assert!(
        before.0.iter().all(|row| rows.contains(row)),
        "the platform's rows are untouched"
    );
    let theirs: Vec<Value> = rows
        .iter()
        .filter(|row| {
            row["stream_id"].as_str() == Some(org.as_str())
                && row["event_type"] == "organization.bootstrap.initiated"
        })
        .cloned()
        .collect();
    assert_eq!(
        theirs.len(),
        1,
        "the platform's trigger ran in the service's session, on the platform's own table: {rows:?}"
    );
    assert!(
        platform_insert.is_ok(),
        "the platform's own insert still works: {platform_insert:?}"
    );
    let in_ours: i64 =
        sqlx::query_scalar("SELECT count(*) FROM bff.organizations_projection WHERE id = $1::uuid")
            .bind(&org)
            .fetch_one(&db)
            .await
            .expect("the count answers");
    assert_eq!(in_ours, 1, "the organization is in the service's own table");
}

#[tokio::test]
async fn with_another_schema_and_events_table_the_binary_migrates_folds_and_writes_there() {
    // Arrange
    let url = empty_database().await;
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_SCHEMA", "tenant_a"),
        ("EVENTS_TABLE", "platform.events"),
        ("JWT_SECRET", &random_secret()),
    ]
    .map(|(k, v)| (k, v.to_owned()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Act
    let migrated = binary(&["migrate"], &env, "");
    let created = binary(
        &[
            "user",
            "create",
            "--email",
            "tenant@example.com",
            "--password-stdin",
        ],
        &env,
        "a long enough password\n",
    );
    let db = sqlx::PgPool::connect(&url)
        .await
        .expect("the pool connects");
    sqlx::query(
        "INSERT INTO platform.events (event_type, aggregate_type, aggregate_id, event_data)
         VALUES ('release.created', 'release', gen_random_uuid(),
                 jsonb_build_object('id', 'release:t1', 'key', 't1', 'nodes',
                     jsonb_build_array(jsonb_build_object('id', 'release:t1', 'kind', 'release',
                                                          'key', 't1'))))",
    )
    .execute(&db)
    .await
    .expect("an event is appended to the configured store");

    // Assert
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM tenant_a.users")
        .fetch_one(&db)
        .await
        .expect("tenant_a.users exists");
    assert_eq!(users, 1, "the user went into the configured schema");
    let folded: i64 = sqlx::query_scalar("SELECT count(*) FROM tenant_a.release_projection")
        .fetch_one(&db)
        .await
        .expect("tenant_a.release_projection exists");
    assert_eq!(
        folded, 1,
        "the event in platform.events was folded into tenant_a"
    );
    let elsewhere: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables
          WHERE table_schema IN ('public', 'bff') ORDER BY 1",
    )
    .fetch_all(&db)
    .await
    .expect("the catalog reads");
    assert!(
        elsewhere.is_empty(),
        "nothing outside the configured names: {elsewhere:?}"
    );
}

/// `release.created` for a one-node release `key`, appended to `public.domain_events`.
async fn release_created(db: &sqlx::PgPool, key: &str) {
    sqlx::query(
        "INSERT INTO public.domain_events (event_type, aggregate_type, aggregate_id, event_data)
         VALUES ('release.created', 'release', gen_random_uuid(),
                 jsonb_build_object('id', 'release:' || $1, 'key', $1, 'nodes',
                     jsonb_build_array(jsonb_build_object('id', 'release:' || $1,
                                                          'kind', 'release', 'key', $1))))",
    )
    .bind(key)
    .execute(db)
    .await
    .expect("the event is appended");
}

#[tokio::test]
async fn an_install_from_before_the_schema_moves_into_it_with_its_rows_by_the_shipped_script() {
    // Arrange: the old layout, every table in `public`, with a user and a release in it.
    let url = empty_database().await;
    let db = sqlx::PgPool::connect(&url)
        .await
        .expect("the pool connects");
    let old = temporal_bff::config::DbNames {
        schema: temporal_bff::config::SqlIdent::parse("public").expect("a valid name"),
        ..Default::default()
    };
    temporal_bff::db::migrate(&db, &old)
        .await
        .expect("the old layout migrates");
    let created = binary(
        &[
            "user",
            "create",
            "--email",
            "old@example.com",
            "--password-stdin",
        ],
        &[("DATABASE_URL", &url), ("DATABASE_SCHEMA", "public")],
        "a long enough password\n",
    );
    release_created(&db, "before").await;

    // Act: the new migrate, then the script.
    let migrated = binary(&["migrate"], &[("DATABASE_URL", &url)], "");
    let moved = sqlx::raw_sql(include_str!("../../sql/move-from-public.sql"))
        .execute(&db)
        .await;
    release_created(&db, "after").await;
    let app = TestApp::spawn_with(&[("DATABASE_URL", url.clone())]).await;
    let login = app.login("old@example.com", "a long enough password").await;

    // Assert
    assert!(
        created.status.success() && migrated.status.success(),
        "{} {}",
        String::from_utf8_lossy(&created.stderr),
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert!(moved.is_ok(), "the script runs: {moved:?}");
    let releases: Vec<String> =
        sqlx::query_scalar("SELECT key FROM bff.release_projection ORDER BY key")
            .fetch_all(&db)
            .await
            .expect("bff.release_projection reads");
    assert_eq!(
        releases,
        ["after", "before"],
        "the old row moved, a new one folds into bff"
    );
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'
         UNION ALL
         SELECT proname::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace
         ORDER BY 1",
    )
    .fetch_all(&db)
    .await
    .expect("the catalog reads");
    assert_eq!(
        left,
        ["domain_events"],
        "only the event store stays in public"
    );
    assert!(
        login["data"]["login"]["token"].is_string(),
        "the moved user logs in: {login}"
    );
}
