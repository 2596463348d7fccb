//! Behind PgBouncer 1.18 in transaction mode, as the platform deploys it
//! (`DATABASE_POOLER=transaction`): reads, logins, starts, release control, pushes and the
//! closed-release cache, with the listener direct (`DATABASE_LISTEN_URL`) and with it through
//! the pooler, where it is found deaf and pushes still arrive.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    fixtures::{
        Heard, RawSocket, bootstrap_completes, foreign_release, seed_closed_release, set_status,
        spec, start, start_bootstrap, unique_key,
    },
    harness::{PASSWORD, TestApp, eventually},
};

const RELEASE: &str = "query($id: ID!) { release(id: $id) { id status } }";

const OWN: &str = "subscription($id: ID!) { releaseUpdated(id: $id) {
  id status progress { succeeded } } }";

const DIFFS: &str = "subscription($id: ID!) { releaseTreeChanged(id: $id) {
  revision snapshot { id } changed { ... on App { id status } ... on Release { id progress { succeeded } } } } }";

/// Subscribes to `release` with `query` on a raw socket and returns it once the first
/// message arrived.
async fn follow(app: &TestApp, token: &str, query: &str, release: &str) -> RawSocket {
    let mut socket = RawSocket::open(app).await;
    socket.init(token).await;
    socket
        .send_json(json!({ "id": "1", "type": "subscribe",
            "payload": { "query": query, "variables": { "id": release } } }))
        .await;
    let first = socket.heard().await;
    assert!(
        matches!(&first, Heard::Message(m) if m["type"] == "next"),
        "the first state: {first:?}"
    );
    socket
}

/// Waits (bounded) for a push of subscription field `field` where `wanted` holds.
async fn pushed(
    socket: &mut RawSocket,
    field: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Option<Value> {
    for _ in 0..6 {
        match socket.heard().await {
            Heard::Message(m) if m["type"] == "next" => {
                let pushed = &m["payload"]["data"][field];
                if wanted(pushed) {
                    return Some(pushed.clone());
                }
            }
            Heard::Message(_) | Heard::Nothing => {}
            Heard::Closed(code) => panic!("the socket closed with {code}"),
        }
    }
    None
}

async fn release_status(app: &TestApp, token: &str, release: &str) -> Value {
    let body = app
        .graphql_as(token, RELEASE, json!({ "id": release }))
        .await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["release"]["status"].clone()
}

#[tokio::test]
async fn behind_pgbouncer_ready_login_parallel_reads_a_start_and_a_pause_all_work() {
    // Arrange: the app and its worker behind the pooler, the listener direct.
    let overrides = TestApp::behind_pooler(true).await;
    let app = TestApp::spawn_with_worker(&overrides).await;
    app.create_user("pooled@example.com", None, &[]).await;
    let operator = app
        .token_for("operator@example.com", None, &["release.control"])
        .await;

    // Act
    let (ready, report) = crate::fixtures::get_json(&app, "/ready").await;
    let login = app.login("pooled@example.com", PASSWORD).await;
    let token = login["data"]["login"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Enough at once that the pooler hands statements of one checkout to other servers if it can.
    let reads = futures::future::join_all((0..40).map(|n| {
        let (app, token) = (&app, &token);
        async move {
            let query = if n % 2 == 0 {
                "{ releases(first: 5) { totalCount } }"
            } else {
                "{ me { email } }"
            };
            app.graphql_as(token, query, json!({})).await
        }
    }))
    .await;
    let (admin, org) = start_bootstrap(&app, "pooled").await;
    let completed = bootstrap_completes(&app, &admin, &org).await;
    let key = unique_key("pooled");
    start(
        &app.temporal().await,
        &app,
        spec(&key, 1, 1, 8, json!({ "stepMillis": 400 })),
    )
    .await;
    let release = format!("release:{key}");
    let deploying = eventually(Duration::from_secs(20), || async {
        (release_status(&app, &operator, &release).await == "IN_PROGRESS").then_some(())
    })
    .await;
    let paused = app
        .graphql_as(
            &operator,
            "mutation($id: ID!) { pauseRelease(id: $id) { status } }",
            json!({ "id": release }),
        )
        .await;
    let shows_paused = eventually(Duration::from_secs(20), || async {
        (release_status(&app, &operator, &release).await == "PAUSED").then_some(())
    })
    .await;
    // The dashboard's reads through the pooler: the compiled tree read, the search across
    // releases and the histories from the event store.
    let tree = app
        .graphql_as(
            &operator,
            "query($id: ID!) { release(id: $id) { waves { clusters { bundle { apps { key status } } } } } }",
            json!({ "id": release }),
        )
        .await;
    let search = app
        .graphql_as(
            &operator,
            "{ nodes(kind: APP, key: \"app-1\") { totalCount edges { node { ... on App { history { nodes { to } } } } } } }",
            json!({}),
        )
        .await;

    // Assert
    assert_eq!(ready, 200, "{report}");
    assert_eq!(report["status"], "ready", "{report}");
    assert!(!token.is_empty(), "login works through the pooler: {login}");
    for read in &reads {
        assert!(
            read["errors"].is_null(),
            "every parallel read works: {read}"
        );
    }
    assert!(completed, "the bootstrap completed");
    let starts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM domain_events WHERE event_type = 'organization.bootstrap.initiated'",
    )
    .fetch_one(&app.db)
    .await
    .expect("the count answers");
    assert_eq!(starts, 1, "started exactly once");
    assert!(deploying.is_some(), "the release deploys");
    assert!(paused["errors"].is_null(), "{paused}");
    assert!(shows_paused.is_some(), "the pause reached the workflow");
    assert_eq!(app.metric("bff_db_listener_deaf").await, 0.0);
    let apps = &tree["data"]["release"]["waves"][0]["clusters"][0]["bundle"]["apps"];
    assert_eq!(apps.as_array().map(Vec::len), Some(8), "{tree}");
    assert!(search["errors"].is_null(), "{search}");
    assert_eq!(search["data"]["nodes"]["totalCount"], json!(1), "{search}");
    assert!(app.metric("bff_answers_compiled_total").await >= 1.0);
}

#[tokio::test]
async fn behind_pgbouncer_with_the_listener_direct_pushes_arrive_and_the_cache_forgets_a_change() {
    // Arrange
    let overrides = TestApp::behind_pooler(true).await;
    let app = TestApp::spawn_with(&overrides).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let running = foreign_release(&app, 2).await;
    let mut socket = follow(&app, &token, OWN, &running).await;
    let mut diffs = follow(&app, &token, DIFFS, &running).await;
    seed_closed_release(&app, "kept", "Kept", 1, "SUCCEEDED").await;
    let closed = "release:kept";
    let first = release_status(&app, &token, closed).await;
    // Kept once the listener is up (it connects in the background).
    let cached = eventually(Duration::from_secs(10), || async {
        let hits = app.metric("bff_release_cache_hits_total").await;
        let again = release_status(&app, &token, closed).await;
        (app.metric("bff_release_cache_hits_total").await > hits).then_some(again)
    })
    .await;

    // Act
    set_status(&app, &running, "app-1", "SUCCEEDED").await;
    let push = pushed(&mut socket, "releaseUpdated", |r| {
        r["progress"]["succeeded"] == 1
    })
    .await;
    let diff = pushed(&mut diffs, "releaseTreeChanged", |d| {
        d["changed"]
            .as_array()
            .is_some_and(|nodes| nodes.iter().any(|n| n["status"] == "SUCCEEDED"))
    })
    .await;
    crate::fixtures::insert_event(
        &app,
        "release.status_changed",
        json!({ "id": closed, "kind": "release", "status": "FAILED", "at": chrono::Utc::now() }),
    )
    .await;
    let forgotten = eventually(Duration::from_secs(5), || async {
        (release_status(&app, &token, closed).await == "FAILED").then_some(())
    })
    .await;

    // Assert
    assert_eq!(first, json!("SUCCEEDED"));
    assert_eq!(
        cached,
        Some(json!("SUCCEEDED")),
        "the closed release was served from memory"
    );
    assert!(push.is_some(), "the change was pushed");
    assert!(
        diff.is_some_and(|d| d["snapshot"].is_null()),
        "and sent as a diff to a tree-diff subscriber"
    );
    assert!(forgotten.is_some(), "the cache forgot the changed release");
    assert_eq!(app.metric("bff_db_listener_deaf").await, 0.0);
}

#[tokio::test]
async fn with_the_listener_through_pgbouncer_it_is_found_deaf_the_cache_is_off_and_pushes_still_arrive()
 {
    // Arrange: LISTEN through a transaction-mode pooler hears nothing.
    let mut overrides = TestApp::behind_pooler(false).await;
    overrides.push(("HIERARCHY_CACHE_MS", "300".into()));
    let app = TestApp::spawn_with(&overrides).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let running = foreign_release(&app, 2).await;
    seed_closed_release(&app, "deaf", "Deaf", 1, "SUCCEEDED").await;
    let closed = "release:deaf";

    // Act
    let deaf = eventually(Duration::from_secs(15), || async {
        (app.metric("bff_db_listener_deaf").await == 1.0).then_some(())
    })
    .await;
    let (_, report) = crate::fixtures::get_json(&app, "/ready").await;
    let mut socket = follow(&app, &token, OWN, &running).await;
    set_status(&app, &running, "app-1", "SUCCEEDED").await;
    let push = pushed(&mut socket, "releaseUpdated", |r| {
        r["progress"]["succeeded"] == 1
    })
    .await;
    let hits = app.metric("bff_release_cache_hits_total").await;
    let before = release_status(&app, &token, closed).await;
    crate::fixtures::insert_event(
        &app,
        "release.status_changed",
        json!({ "id": closed, "kind": "release", "status": "FAILED", "at": chrono::Utc::now() }),
    )
    .await;
    let after = release_status(&app, &token, closed).await;

    // Assert
    assert!(deaf.is_some(), "the deaf listener was noticed");
    assert_eq!(report["checks"]["listener"]["status"], "deaf", "{report}");
    assert_eq!(report["status"], "ready", "queries still work: {report}");
    assert!(push.is_some(), "pushes arrive by reading on a timer");
    assert_eq!(
        (before, after),
        (json!("SUCCEEDED"), json!("FAILED")),
        "never stale"
    );
    assert_eq!(
        app.metric("bff_release_cache_hits_total").await,
        hits,
        "the cache is off while deaf"
    );
}

#[tokio::test]
async fn migrate_through_a_transaction_pooler_without_a_session_url_is_refused_by_name() {
    let overrides = TestApp::behind_pooler(false).await;
    let url = overrides
        .iter()
        .find(|(name, _)| *name == "DATABASE_URL")
        .map(|(_, url)| url.clone())
        .expect("the pooler URL");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_temporal-bff"))
        .arg("migrate")
        .env("DATABASE_URL", url)
        .env("DATABASE_POOLER", "transaction")
        .env_remove("DATABASE_LISTEN_URL")
        .output()
        .expect("the binary runs");

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("DATABASE_LISTEN_URL"), "{stderr}");
}
