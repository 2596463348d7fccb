//! The REST documentation as a person uses it: Swagger UI at `/docs` from the binary's
//! vendored files, driven in Debian's headless Chromium by Playwright (`tests/browser/docs.mjs`).

use serde_json::{Value, json};

use crate::harness::{TestApp, browser_script};

#[tokio::test]
async fn a_person_reads_every_rest_route_in_the_docs_and_tries_one_with_a_token() {
    // Arrange
    let app = TestApp::spawn().await;
    let token = app
        .token_for("reader@example.com", None, &["organization.view_all"])
        .await;
    let document: Value = app
        .get("/api/openapi.json")
        .await
        .json()
        .await
        .expect("the OpenAPI document is JSON");
    let documented: Vec<(String, String)> = document["paths"]
        .as_object()
        .expect("the document has paths")
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .as_object()
                .into_iter()
                .flatten()
                .map(move |(method, _)| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let screenshot = concat!(env!("CARGO_TARGET_TMPDIR"), "/docs.png");
    let plan = json!({
        "base": app.url("/"),
        "token": token,
        "screenshot": screenshot,
    });

    // Act
    let (steps, exited_ok) = browser_script("docs.mjs", plan, async |_| None).await;

    // Assert
    assert!(
        steps.get("failed").is_none() && steps.get("done").is_some(),
        "the browser script failed (scripts/test installs Chromium and playwright-core): {steps:#}"
    );
    assert!(exited_ok, "{steps:#}");
    assert_eq!(steps["opened"]["status"], 200, "{steps:#}");
    let csp = steps["opened"]["csp"].as_str().unwrap_or_default();
    assert!(
        csp.starts_with("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let shown: Vec<(String, String)> = steps["routes"]["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|route| {
            (
                route["method"].as_str().unwrap_or_default().to_uppercase(),
                route["path"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(documented.len() >= 6, "{documented:?}");
    for route in &documented {
        assert!(shown.contains(route), "{route:?} not shown: {shown:?}");
    }
    assert_eq!(steps["tried"]["status"], "200", "{steps:#}");
    assert!(
        steps["tried"]["body"]
            .as_str()
            .is_some_and(|body| body.contains("reader@example.com")),
        "the page called /api/auth/me with the token: {steps:#}"
    );
    assert_eq!(steps["redoc"]["status"], 200, "{steps:#}");
    assert!(
        steps["redoc"]["url"]
            .as_str()
            .is_some_and(|url| url.ends_with("/docs")),
        "{steps:#}"
    );
    assert_eq!(
        steps["done"]["problems"],
        json!([]),
        "console errors (CSP violations among them) or requests to another host"
    );
    eprintln!("REST docs screenshot: {screenshot}");
}
