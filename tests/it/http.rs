//! Behaviour every route shares: request IDs, body limits, CORS.

use crate::harness::TestApp;

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
