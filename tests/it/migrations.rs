//! The migrated schema holds every table of the design.

use crate::harness::TestApp;

#[tokio::test]
async fn migrations_create_the_event_store_projections_and_users() {
    let app = TestApp::spawn().await;

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap_or_default();
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'domain_events' ORDER BY 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap_or_default();

    for table in [
        "domain_events",
        "invitations_projection",
        "organizations_projection",
        "release_entity_projection",
        "release_projection",
        "users",
        "workflow_queue_projection",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing: {tables:?}"
        );
    }
    for index in [
        "domain_events_aggregate_idx",
        "domain_events_type_idx",
        "domain_events_workflow_id_idx",
        "domain_events_workflow_run_id_idx",
        "domain_events_activity_id_idx",
    ] {
        assert!(
            indexes.iter().any(|i| i == index),
            "{index} missing: {indexes:?}"
        );
    }
}

#[tokio::test]
async fn users_reject_anything_but_an_argon2id_hash() {
    let app = TestApp::spawn().await;

    let plain = sqlx::query("INSERT INTO users (email, password_hash) VALUES ('a@b.c', 'hunter2')")
        .execute(&app.db)
        .await;

    assert!(plain.is_err(), "a plaintext password must not be storable");
}
