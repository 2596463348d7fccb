//! What a release read costs: its own fields are one row (roll-ups kept by the triggers), a page
//! is one statement whatever the trees, and a closed release read again costs nothing: it is
//! kept in memory until the database says it changed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    fixtures::finished_release,
    harness::{TestApp, eventually},
};

const OWN: &str = "query($id: ID!) { release(id: $id) {
  id status source asOf progress { total succeeded failed inProgress pending percent } } }";

const TREE: &str = "query($id: ID!) { release(id: $id) {
  id status progress { total succeeded failed inProgress pending percent }
  waves { id progress { total succeeded failed inProgress pending percent }
    clusters { id progress { total succeeded failed inProgress pending percent }
      bundle { id progress { total succeeded failed inProgress pending percent } apps { id status } } } } } }";

/// SQL statements a query cost (the process counter's change over it).
async fn statements(app: &TestApp, token: &str, query: &str, id: &str) -> (f64, Value) {
    let before = app.metric("bff_sql_statements_total").await;
    let body = app.graphql_as(token, query, json!({ "id": id })).await;
    let after = app.metric("bff_sql_statements_total").await;
    (after - before, body)
}

/// Every node's roll-up as the projection keeps it, by global ID.
async fn stored_rollups(app: &TestApp, release: &str) -> Vec<(String, Value)> {
    let rows: Vec<(String, i32, i32, i32, i32, i32)> = sqlx::query_as(
        "SELECT id, apps_total, apps_succeeded, apps_failed, apps_in_progress, apps_pending
           FROM release_entity_projection WHERE release_id = $1 AND kind <> 'app' ORDER BY id",
    )
    .bind(release)
    .fetch_all(&app.db)
    .await
    .expect("the query answers");
    rows.into_iter()
        .map(|(id, total, succeeded, failed, in_progress, pending)| {
            (id, json!([total, succeeded, failed, in_progress, pending]))
        })
        .collect()
}

/// Every non-app node's roll-up as the tree read computes it, by global ID.
fn tree_rollups(body: &Value) -> Vec<(String, Value)> {
    fn walk(node: &Value, out: &mut Vec<(String, Value)>) {
        if let Some(id) = node["id"]
            .as_str()
            .filter(|_| node.get("progress").is_some())
        {
            let p = &node["progress"];
            out.push((
                id.to_owned(),
                json!([
                    p["total"],
                    p["succeeded"],
                    p["failed"],
                    p["inProgress"],
                    p["pending"]
                ]),
            ));
        }
        for children in ["waves", "clusters", "apps"] {
            for child in node[children].as_array().into_iter().flatten() {
                walk(child, out);
            }
        }
        if node["bundle"].is_object() {
            walk(&node["bundle"], out);
        }
    }
    let mut out = Vec::new();
    walk(&body["data"]["release"], &mut out);
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test]
async fn the_roll_ups_the_triggers_keep_equal_those_counted_from_the_tree() {
    // Arrange
    let app = TestApp::spawn_with_worker(&[]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let release = finished_release(&app).await;

    // Act
    let tree = app.graphql_as(&token, TREE, json!({ "id": release })).await;
    let own = app.graphql_as(&token, OWN, json!({ "id": release })).await;

    // Assert
    assert_eq!(tree_rollups(&tree), stored_rollups(&app, &release).await);
    assert_eq!(
        own["data"]["release"]["progress"], tree["data"]["release"]["progress"],
        "{own} {tree}"
    );
    assert_eq!(
        own["data"]["release"]["progress"]["failed"], 2,
        "app-2 of both clusters of wave 1"
    );
    assert_eq!(own["data"]["release"]["status"], "FAILED");
}

#[tokio::test]
async fn a_releases_own_fields_cost_one_statement_and_nothing_once_it_is_kept() {
    // Arrange
    let app = TestApp::spawn_with_worker(&[]).await;
    let release = finished_release(&app).await;
    let other = finished_release(&app).await;
    let fresh =
        TestApp::spawn_with(&[("DATABASE_URL", app.config.database_url().to_owned())]).await;
    let fresh_token = fresh.token_for("fresh@example.com", None, &[]).await;
    // The listener that makes the cache safe connects in the background: wait for it on
    // another release, so the one measured is read for the first time below.
    let warm = eventually(Duration::from_secs(10), || async {
        let (cost, _) = statements(&fresh, &fresh_token, OWN, &other).await;
        (cost == 0.0).then_some(())
    })
    .await;

    // Act: the first read of a process, then the same again, then the whole tree twice.
    let (first, body) = statements(&fresh, &fresh_token, OWN, &release).await;
    let (again, _) = statements(&fresh, &fresh_token, OWN, &release).await;
    let (tree, _) = statements(&fresh, &fresh_token, TREE, &release).await;
    let (tree_again, tree_body) = statements(&fresh, &fresh_token, TREE, &release).await;

    // Assert
    assert!(warm.is_some(), "the cache went live");
    assert_eq!(first, 1.0, "one indexed row, no tree: {body}");
    assert_eq!(body["data"]["release"]["source"], "PROJECTION");
    assert_eq!(again, 0.0, "a closed release is kept");
    assert!(
        tree <= 2.0,
        "the tree: the row and the nodes at most ({tree})"
    );
    assert_eq!(tree_again, 0.0, "the closed tree is kept too");
    assert_eq!(
        tree_rollups(&tree_body),
        stored_rollups(&fresh, &release).await
    );
}

#[tokio::test]
async fn a_page_of_releases_with_progress_and_its_count_costs_one_statement_whatever_the_trees() {
    let app = TestApp::spawn_with_worker(&[]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    for _ in 0..3 {
        finished_release(&app).await;
    }
    let page = "{ releases(first: 20) { totalCount edges { node { id status progress { percent failed } } } } }";

    let before = app.metric("bff_sql_statements_total").await;
    let body = app.graphql_as(&token, page, json!({})).await;
    let cost = app.metric("bff_sql_statements_total").await - before;

    assert_eq!(cost, 1.0, "the page and its count, together: {body}");
    let edges = body["data"]["releases"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(edges.len(), 3, "{body}");
    assert!(
        edges.iter().all(|e| e["node"]["progress"]["failed"] == 2),
        "{body}"
    );
}

#[tokio::test]
async fn a_kept_release_that_changes_is_read_anew() {
    // Arrange: a closed release, read until it is kept.
    let app = TestApp::spawn_with_worker(&[]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let release = finished_release(&app).await;
    let kept = eventually(Duration::from_secs(10), || async {
        let (cost, _) = statements(&app, &token, OWN, &release).await;
        (cost == 0.0).then_some(())
    })
    .await;

    // Act: the platform starts the release over (a new run's `release.created`).
    let key = release.trim_start_matches("release:");
    sqlx::query(
        "INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data)
         VALUES ('release.created', 'release', gen_random_uuid(),
                 jsonb_build_object('id', $1::text, 'key', $2::text, 'name', 'Again',
                   'nodes', jsonb_build_array(jsonb_build_object('id', $1::text, 'kind', 'release',
                                                                 'key', $2::text, 'name', 'Again'))))",
    )
    .bind(&release)
    .bind(key)
    .execute(&app.db)
    .await.expect("the statement runs");
    let anew = eventually(Duration::from_secs(10), || async {
        let body = app.graphql_as(&token, OWN, json!({ "id": release })).await;
        (body["data"]["release"]["status"] == "IN_PROGRESS").then_some(body)
    })
    .await;

    // Assert
    assert!(kept.is_some(), "the closed release was kept first");
    assert!(anew.is_some(), "the change was seen, not the kept answer");
}

#[tokio::test]
async fn when_the_change_listener_is_cut_off_nothing_stale_is_served() {
    // Arrange
    let app = TestApp::spawn_with_worker(&[]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let release = finished_release(&app).await;
    eventually(Duration::from_secs(10), || async {
        let (cost, _) = statements(&app, &token, OWN, &release).await;
        (cost == 0.0).then_some(())
    })
    .await;

    // Act: cut the listener off, then change the release while it reconnects.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .execute(&app.db)
    .await
    .expect("the statement runs");
    sqlx::query("UPDATE release_projection SET name = 'Renamed' WHERE id = $1")
        .bind(&release)
        .execute(&app.db)
        .await
        .expect("the statement runs");
    let renamed = eventually(Duration::from_secs(15), || async {
        let body = app
            .graphql_as(
                &token,
                "query($id: ID!) { release(id: $id) { name } }",
                json!({ "id": release }),
            )
            .await;
        (body["data"]["release"]["name"] == "Renamed").then_some(())
    })
    .await;
    let kept_again = eventually(Duration::from_secs(15), || async {
        let (cost, _) = statements(&app, &token, OWN, &release).await;
        (cost == 0.0).then_some(())
    })
    .await;

    // Assert: the cache went off with its listener (a row changed without a notification is
    // read anew), and comes back once the listener has reconnected.
    assert!(
        renamed.is_some(),
        "the kept row was dropped when the listener was lost"
    );
    assert!(
        kept_again.is_some(),
        "the cache works again after the listener reconnected"
    );
}

#[tokio::test]
async fn a_tree_read_nests_its_rows_in_tree_order_whatever_order_postgres_returns_them_in() {
    use secrecy::ExposeSecret as _;
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use temporal_bff::{
        metrics::{Metrics, RequestStats},
        releases::store,
    };

    // Arrange: a release whose root and wave were rewritten after its apps, so they lie on
    // disk behind them, and a pool that may only read the table in its order on disk.
    let app = TestApp::spawn().await;
    let release = crate::fixtures::foreign_release(&app, 20).await;
    sqlx::query(
        "UPDATE release_entity_projection SET name = name
          WHERE release_id = $1 AND kind IN ('release', 'wave')",
    )
    .bind(&release)
    .execute(&app.db)
    .await
    .expect("the statement runs");
    let options: PgConnectOptions = app
        .config
        .db
        .url
        .expose_secret()
        .parse()
        .expect("the test's database URL parses");
    let on_disk_only = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.options([
            ("enable_indexscan", "off"),
            ("enable_bitmapscan", "off"),
            ("enable_indexonlyscan", "off"),
        ]))
        .await
        .expect("the test's database accepts a pool");
    let ids = |sql: &'static str, pool| {
        sqlx::query_scalar::<_, String>(temporal_bff::db::sql(sql))
            .bind(&release)
            .fetch_all(pool)
    };
    let tree_order = ids(
        "SELECT id FROM bff.release_entity_projection WHERE release_id = $1 ORDER BY ord",
        &app.db,
    )
    .await
    .expect("the rows read in tree order");
    let disk_order = ids(
        "SELECT id FROM bff.release_entity_projection WHERE release_id = $1",
        &on_disk_only,
    )
    .await
    .expect("the rows read in their order on disk");
    assert_ne!(disk_order, tree_order, "the rows lie out of tree order");

    // Act
    let stats = RequestStats::new(std::sync::Arc::new(Metrics::new()));
    let trees = store::trees(&on_disk_only, &stats, std::slice::from_ref(&release))
        .await
        .expect("the tree reads");

    // Assert
    let read: Vec<&str> = trees
        .get(&release)
        .expect("the release was read")
        .0
        .iter()
        .map(|row| row.node.id.as_str())
        .collect();
    assert_eq!(read, tree_order);
}
