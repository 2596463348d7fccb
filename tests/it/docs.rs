//! The REST documentation as a person uses it: Swagger UI at `/docs` from the binary's
//! vendored files, driven in Debian's headless Chromium by Playwright (`tests/browser/docs.mjs`).

use std::{process::Stdio, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

use crate::harness::TestApp;

/// Longest wait for one step of the browser script.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

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
        "chromium": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/docs.mjs");

    // Act
    let mut browser = Command::new("node")
        .arg(script)
        .arg(plan.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot run node (scripts/test installs it)");
    let stdout = browser.stdout.take().unwrap_or_else(|| panic!("piped"));
    let mut lines = BufReader::new(stdout).lines();
    let mut steps = serde_json::Map::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(STEP_TIMEOUT, lines.next_line()).await {
        let step: Value = serde_json::from_str(&line).unwrap_or_else(|_| json!({ "step": line }));
        steps.insert(step["step"].as_str().unwrap_or_default().to_owned(), step);
    }
    let exit = browser.wait().await;

    // Assert
    let steps = Value::Object(steps);
    assert!(
        steps.get("failed").is_none() && steps.get("done").is_some(),
        "the browser script failed (scripts/test installs Chromium and playwright-core): {steps:#}"
    );
    assert!(exit.is_ok_and(|s| s.success()), "{steps:#}");
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
