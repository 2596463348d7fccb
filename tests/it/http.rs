//! Behaviour every route shares: request IDs (kept only when short and plain), body and answer
//! size limits, the statement timeout, CORS.

use serde_json::json;

use crate::fixtures::no_data;
use crate::harness::{TestApp, error_code};

#[tokio::test]
async fn a_request_id_is_generated_when_absent_and_echoed_when_given() {
    let app = TestApp::spawn().await;

    let generated = app.http.get(app.url("/health")).send().await;
    let echoed = app
        .http
        .get(app.url("/health"))
        .header("x-request-id", "req-abc-123")
        .send()
        .await;

    let generated = generated.expect("the request is answered");
    let echoed = echoed.expect("the request is answered");
    let generated_id = generated
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(
        generated_id.len(),
        36,
        "a UUID is generated: {generated_id:?}"
    );
    let timing = generated
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        timing.starts_with("app;dur="),
        "server time is reported: {timing:?}"
    );
    assert_eq!(
        echoed
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("req-abc-123")
    );
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let app = TestApp::spawn().await;
    let huge = format!(
        "{{\"query\":\"{{ version }}\",\"padding\":\"{}\"}}",
        "x".repeat(temporal_bff::http::MAX_BODY_BYTES + 1)
    );

    let response = app
        .http
        .post(app.url("/graphql"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("the request is answered");

    assert_eq!(response.status().as_u16(), 413);
}

#[tokio::test]
async fn cors_allows_configured_origins_and_no_others() {
    let app = TestApp::spawn_with(&[(
        "CORS_ALLOWED_ORIGINS",
        "https://dash.example.com".to_owned(),
    )])
    .await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };

    let allowed = preflight("https://dash.example.com").await;
    let denied = preflight("https://evil.example.com").await;

    let allowed = allowed.expect("the preflight is answered");
    let denied = denied.expect("the preflight is answered");
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://dash.example.com")
    );
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn an_answer_over_the_size_limit_is_refused_with_a_clear_error() {
    let app = TestApp::spawn_with(&[
        ("MAX_RESPONSE_BYTES", "2048".into()),
        ("INTROSPECTION", "true".into()),
    ])
    .await;

    let body = app
        .graphql(
            "{ __schema { types { name description fields { name description } } } }",
            json!({}),
        )
        .await;

    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("2048 bytes"),
        "{body}"
    );
    assert!(no_data(&body));
}

#[tokio::test]
async fn every_statement_runs_under_the_configured_timeout() {
    let app = TestApp::spawn_with(&[("DB_STATEMENT_TIMEOUT_MS", "150".into())]).await;
    let pool = temporal_bff::db::connect(&app.config.db)
        .await
        .expect("the pool connects");

    let setting: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&pool)
        .await
        .unwrap_or_default();
    let slow = sqlx::query("SELECT pg_sleep(1)").execute(&pool).await;

    assert_eq!(setting, "150ms");
    assert!(slow.is_err(), "a statement over the timeout is cancelled");
}

#[tokio::test]
async fn a_client_request_id_is_kept_only_when_it_is_short_and_plain() {
    let app = TestApp::spawn().await;
    let id_for = |sent: String| {
        let app = &app;
        async move {
            let response = app
                .http
                .get(app.url("/health"))
                .header("x-request-id", sent)
                .send()
                .await
                .expect("the request is answered");
            response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        }
    };

    let plain = id_for("trace-01.ab_C".into()).await;
    let long = id_for("a".repeat(129)).await;
    let odd = id_for("id with spaces; and=more".into()).await;

    assert_eq!(plain, "trace-01.ab_C");
    assert_eq!(long.len(), 36, "replaced by a UUID: {long}");
    assert_eq!(odd.len(), 36, "replaced by a UUID: {odd}");
}
