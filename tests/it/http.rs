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

/// The security headers of `response`, or what is wrong with them.
fn security_headers_problems(what: &str, response: &reqwest::Response, hsts: bool) -> Vec<String> {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut problems = Vec::new();
    for (name, want) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        if header(name).as_deref() != Some(want) {
            problems.push(format!("{what}: {name} is {:?}", header(name)));
        }
    }
    let csp = header("content-security-policy").unwrap_or_default();
    if !csp.contains("frame-ancestors 'none'") || !csp.contains("default-src 'none'") {
        problems.push(format!("{what}: content-security-policy is {csp:?}"));
    }
    let sts = header("strict-transport-security");
    if sts.is_some() != hsts || sts.as_deref().is_some_and(|v| !v.starts_with("max-age=")) {
        problems.push(format!("{what}: strict-transport-security is {sts:?}"));
    }
    if let Some(server) = header("server") {
        problems.push(format!("{what}: server is {server:?}"));
    }
    problems
}

#[tokio::test]
async fn every_kind_of_response_carries_the_security_headers_and_hsts_only_when_asked() {
    // Arrange: one app with HSTS=true, one without.
    let app = TestApp::spawn_with(&[("HSTS", "true".into())]).await;
    let plain = TestApp::spawn().await;
    let token = app
        .token_for("headers@example.com", None, &["organization.view_all"])
        .await;
    let bearer = format!("Bearer {token}");
    let list = "{ releases(first: 1) { totalCount } }";

    // Act: every kind of answer the service gives.
    let get_query = app
        .http
        .get(app.url("/graphql"))
        .query(&[("query", list)])
        .header("authorization", &bearer)
        .send()
        .await
        .expect("GET /graphql is answered");
    let etag = get_query
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("a GET query has an ETag")
        .to_owned();
    let mut answers = vec![("GET /graphql?query", get_query)];
    let requests = [
        (
            "POST /graphql",
            app.http
                .post(app.url("/graphql"))
                .header("authorization", &bearer)
                .json(&json!({ "query": list })),
        ),
        (
            "304",
            app.http
                .get(app.url("/graphql"))
                .query(&[("query", list)])
                .header("authorization", &bearer)
                .header("if-none-match", &etag),
        ),
        (
            "REST",
            app.http
                .get(app.url("/api/releases"))
                .header("authorization", &bearer),
        ),
        ("REST 401", app.http.get(app.url("/api/auth/me"))),
        (
            "GraphQL 400",
            app.http
                .post(app.url("/graphql"))
                .header("content-type", "application/json")
                .body("{not json"),
        ),
        ("404", app.http.get(app.url("/no/such/route"))),
        (
            "413",
            app.http
                .post(app.url("/graphql"))
                .header("content-type", "application/json")
                .body("x".repeat(temporal_bff::http::MAX_BODY_BYTES + 1)),
        ),
        (
            "asset",
            app.http
                .get(app.url("/graphql/assets/graphiql-3.9.0.min.css")),
        ),
        ("GraphiQL page", app.http.get(app.url("/graphql"))),
        ("API docs page", app.http.get(app.url("/docs"))),
        ("/health", app.http.get(app.url("/health"))),
        ("/ready", app.http.get(app.url("/ready"))),
        ("/metrics", app.http.get(app.ops_url("/metrics"))),
    ];
    for (what, request) in requests {
        let response = request.send().await.expect("the request is answered");
        answers.push((what, response));
    }
    let without = plain.get("/health").await;

    // Assert
    let statuses: Vec<(&str, u16)> = answers
        .iter()
        .map(|(what, r)| (*what, r.status().as_u16()))
        .collect();
    for (what, status) in [
        ("GET /graphql?query", 200),
        ("POST /graphql", 200),
        ("304", 304),
        ("REST", 200),
        ("REST 401", 401),
        ("GraphQL 400", 400),
        ("404", 404),
        ("413", 413),
        ("asset", 200),
        ("GraphiQL page", 200),
        ("API docs page", 200),
    ] {
        assert!(
            statuses.contains(&(what, status)),
            "{what} answered {status}: {statuses:?}"
        );
    }
    let problems: Vec<String> = answers
        .iter()
        .flat_map(|(what, response)| security_headers_problems(what, response, true))
        .chain(security_headers_problems("without HSTS", &without, false))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}
