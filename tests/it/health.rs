//! `/health` and `/ready`.

use temporal_bff::devstack::free_port;

use crate::{
    fixtures::{get_json, get_url},
    harness::{TestApp, private_postgres},
};

#[tokio::test]
async fn health_answers_ok() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act
    let (status, body) = get_json(&app, "/health").await;

    // Assert
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn ready_is_200_when_postgres_and_temporal_both_answer() {
    let app = TestApp::spawn().await;

    let (status, body) = get_json(&app, "/ready").await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["postgres"]["status"], "up");
    assert_eq!(body["checks"]["temporal"]["status"], "up");
}

#[tokio::test]
async fn ready_is_503_naming_postgres_when_postgres_is_stopped() {
    // Arrange: an app on a private cluster that this test can stop.
    let mut postgres = private_postgres();
    let app = TestApp::spawn_with(&[("DATABASE_URL", postgres.url("postgres"))]).await;
    let (before, _) = get_json(&app, "/ready").await;

    // Act
    postgres.stop();
    let (status, body) = get_json(&app, "/ready").await;

    // Assert
    assert_eq!(before, 200);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["postgres"]["status"], "down");
    assert_eq!(body["checks"]["temporal"]["status"], "up");
}

#[tokio::test]
async fn without_temporal_the_server_starts_and_stays_ready_as_degraded_naming_temporal_as_down() {
    // Arrange: nothing listens on this port.
    let unused = format!("127.0.0.1:{}", free_port().unwrap_or(1));

    // Act
    let app = TestApp::spawn_with(&[("TEMPORAL_ADDRESS", unused)]).await;
    let (health, _) = get_json(&app, "/health").await;
    let (status, body) = get_json(&app, "/ready").await;

    // Assert
    let (public, public_body) = get_url(&app, &app.url("/ready")).await;
    assert_eq!(health, 200);
    assert_eq!(status, 200, "reads and queued starts still work: {body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(
        public, 200,
        "a load balancer keeps the replica: {public_body}"
    );
    assert_eq!(public_body, serde_json::json!({ "status": "degraded" }));
    assert_eq!(body["checks"]["temporal"]["status"], "down");
    assert_eq!(body["checks"]["postgres"]["status"], "up");
    assert!(
        body["checks"]["temporal"]["latencyMs"]
            .as_u64()
            .unwrap_or(u64::MAX)
            < 3_000,
        "readiness must answer quickly: {body}"
    );
}

#[tokio::test]
async fn while_temporal_hangs_the_public_ready_still_answers_degraded_within_a_load_balancers_check_timeout()
 {
    // Arrange: Temporal reached through a proxy that then stops moving bytes, as a hung
    // frontend does (connections stay open, nothing answers).
    let proxy =
        crate::fixtures::FreezableProxy::start(crate::harness::stack().temporal.address()).await;
    let app = TestApp::spawn_with(&[("TEMPORAL_ADDRESS", proxy.addr.to_string())]).await;
    let (before, _) = get_url(&app, &app.url("/ready")).await;
    proxy.freeze();
    // The proxy's pumps notice within 100 ms; a check sent before that could still pass.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // Act: checks with HAProxy's timeout under `inter 1s`.
    let mut answers = Vec::new();
    for _ in 0..3 {
        let answer = app
            .http
            .get(app.url("/ready"))
            .timeout(std::time::Duration::from_secs(1))
            .send()
            .await;
        answers.push(match answer {
            Ok(response) => (
                response.status().as_u16(),
                response
                    .json::<serde_json::Value>()
                    .await
                    .unwrap_or_default(),
            ),
            Err(error) => (0, serde_json::json!({ "client": error.to_string() })),
        });
    }

    // Assert
    assert_eq!(before, 200);
    for (status, body) in answers {
        assert_eq!(
            (status, body),
            (200, serde_json::json!({ "status": "degraded" })),
            "a hung Temporal must neither fail nor stall the load balancer's check"
        );
    }
}

#[tokio::test]
async fn reads_while_postgres_is_stopped_are_unavailable_not_internal_and_work_once_it_is_back() {
    // Arrange: an app on a private, migrated cluster that this test stops and starts again.
    let dir = crate::harness::scratch_dir("temporal-bff-pg-");
    let port = free_port().unwrap_or(0);
    let mut postgres =
        temporal_bff::devstack::LocalPostgres::start(&dir, port).expect("a free port");
    crate::harness::watchdog(&postgres.stop_command(), None, &dir);
    let url = postgres.url("postgres");
    crate::harness::migrate(&url).await;
    let app = TestApp::spawn_with(&[("DATABASE_URL", url)]).await;
    let token = app.token_for("ops@example.com", None, &[]).await;
    let query = "{ releases(first: 5) { totalCount } }";
    let before = app.graphql_as(&token, query, serde_json::json!({})).await;

    // Act
    postgres.stop();
    let down = app.graphql_as(&token, query, serde_json::json!({})).await;
    let postgres =
        temporal_bff::devstack::LocalPostgres::start(&dir, port).expect("Postgres starts");
    let back = crate::harness::eventually(std::time::Duration::from_secs(30), || async {
        let body = app.graphql_as(&token, query, serde_json::json!({})).await;
        body["data"]["releases"]["totalCount"]
            .is_number()
            .then_some(body)
    })
    .await;

    // Assert
    assert_eq!(before["data"]["releases"]["totalCount"], 0, "{before}");
    assert_eq!(crate::harness::error_code(&down), "UNAVAILABLE", "{down}");
    assert!(down["data"].is_null(), "{down}");
    assert!(back.is_some(), "answers again once Postgres is back");
    drop(postgres);
}

#[tokio::test]
async fn connections_the_database_dropped_while_they_sat_idle_cost_no_request() {
    // Arrange: reads that leave connections idle in the app's pool.
    let app = TestApp::spawn().await;
    let token = app.token_for("ops@example.com", None, &[]).await;
    let query = "{ releases(first: 5) { totalCount } }";
    for _ in 0..3 {
        app.graphql_as(&token, query, serde_json::json!({})).await;
    }

    // Act: every other backend of the database goes, as in a failover or an operator's
    // `pg_terminate_backend`; the pool is used again once its connections count as idle.
    let dropped: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&app.db)
    .await
    .expect("the statement runs");
    tokio::time::sleep(temporal_bff::db::PING_IDLE_AFTER + std::time::Duration::from_millis(300))
        .await;
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(app.graphql_as(&token, query, serde_json::json!({})).await);
    }

    // Assert: each dead connection was found and replaced before a request got it.
    assert!(dropped >= 1, "the app's connections were dropped");
    for answer in &answers {
        assert_eq!(answer["data"]["releases"]["totalCount"], 0, "{answer}");
        assert!(answer.get("errors").is_none(), "{answer}");
    }
}

#[tokio::test]
async fn the_public_ready_says_only_ready_or_not_and_metrics_are_not_on_the_public_port() {
    let app = TestApp::spawn().await;

    let (status, body) = get_url(&app, &app.url("/ready")).await;
    let metrics = app.get("/metrics").await.status().as_u16();
    let (ops_status, report) = get_json(&app, "/ready").await;

    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({ "status": "ready" }));
    assert_eq!(metrics, 404, "/metrics belongs to METRICS_ADDR only");
    assert_eq!(ops_status, 200);
    assert_eq!(report["checks"]["postgres"]["status"], "up");
    assert_eq!(
        report["checks"]["listener"]["status"], "hearing",
        "{report}"
    );
    assert!(
        report["checks"]["listener"]["poolConnections"].as_u64() >= Some(1),
        "{report}"
    );
}
