//! GraphiQL as a person uses it: the page and its vendored assets from the binary, driven in
//! Debian's headless Chromium by Playwright (`tests/browser/graphiql.mjs`).

use serde_json::{Value, json};

use crate::{
    fixtures::{foreign_release, set_status},
    harness::{PASSWORD, TestApp, browser_script},
};

#[tokio::test]
async fn a_person_runs_the_example_login_and_reads_and_follows_a_release_in_graphiql() {
    // Arrange: as `temporal-bff dev` runs it: GraphiQL reads the schema before a login, and its
    // example document logs in as the demo user.
    let app = TestApp::spawn_configured(&[("INTROSPECTION", "true".into())], |config| {
        config.graphiql_example_login = Some(("explorer@example.com".into(), PASSWORD.into()));
    })
    .await;
    app.create_user("explorer@example.com", None, &[]).await;
    let release = foreign_release(&app, 2).await;
    let screenshot = concat!(env!("CARGO_TARGET_TMPDIR"), "/graphiql.png");
    let plan = json!({
        "base": app.url("/"),
        "releaseId": release,
        "screenshot": screenshot,
    });

    // Act: the script reports each step; the release changes once the subscription is on.
    let (steps, exited_ok) = browser_script("graphiql.mjs", plan, async |step| {
        if step != "subscribed" {
            return None;
        }
        set_status(&app, &release, "release", "PAUSED").await;
        Some("PAUSED".to_owned())
    })
    .await;

    // Assert
    assert!(
        steps.as_object().is_some_and(|s| !s.is_empty()),
        "the browser script reported nothing (its stderr is above; scripts/test installs \
         Chromium and playwright-core)"
    );
    assert!(
        steps.get("failed").is_none(),
        "the browser script failed: {steps:#}"
    );
    assert!(exited_ok, "{steps:#}");
    assert_eq!(steps["opened"]["status"], 200, "{steps:#}");
    let csp = steps["opened"]["csp"].as_str().unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let headers: Value =
        serde_json::from_str(steps["headers"]["text"].as_str().unwrap_or_default())
            .unwrap_or_default();
    assert_eq!(headers, json!({ "Authorization": "Bearer " }));
    let example = steps["headers"]["query"].as_str().unwrap_or_default();
    assert!(
        example.contains(&format!(
            "login(email: \"explorer@example.com\", password: \"{PASSWORD}\")"
        )),
        "the example logs in with the demo credentials: {example}"
    );
    let token = steps["login"]["result"]["data"]["login"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("the example login answered a token: {steps:#}"));
    let filled: Value =
        serde_json::from_str(steps["login"]["headers"].as_str().unwrap_or_default())
            .unwrap_or_default();
    assert_eq!(
        filled,
        json!({ "Authorization": format!("Bearer {token}") }),
        "the login's token went into the headers pane by itself"
    );
    let read = &steps["release"]["result"]["data"]["release"];
    assert_eq!(read["id"], release.as_str(), "{steps:#}");
    assert_eq!(read["status"], "IN_PROGRESS", "{steps:#}");
    let live = &steps["subscribed"]["result"]["data"]["releaseUpdated"];
    assert_eq!(live["id"], release.as_str(), "{steps:#}");
    assert_eq!(
        steps["pushed"]["result"]["data"]["releaseUpdated"]["status"], "PAUSED",
        "{steps:#}"
    );
    assert!(
        steps["explorer"]["text"]
            .as_str()
            .is_some_and(|text| text.contains("releases")),
        "{steps:#}"
    );
    assert_eq!(
        steps["done"]["problems"],
        json!([]),
        "console errors or foreign requests"
    );
    assert!(std::path::Path::new(screenshot).exists());
    eprintln!("GraphiQL screenshot: {screenshot}");
}

#[tokio::test]
async fn every_asset_the_page_links_is_served_from_the_binary_with_a_year_of_caching() {
    // Arrange
    let app = TestApp::spawn().await;
    let page = app.get("/graphql").await;
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let html = page.text().await.expect("the answer has a body");
    let assets: Vec<&str> = html
        .split('"')
        .filter(|part| part.starts_with("graphql/assets/"))
        .collect();

    // Act
    let mut answers = Vec::new();
    for asset in &assets {
        let response = app.get(&format!("/{asset}")).await;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        answers.push((
            *asset,
            response.status().as_u16(),
            header("cache-control"),
            header("content-type"),
        ));
    }
    let script = app.url("/graphql/assets/graphiql-3.9.0.min.js");
    let plain = app
        .http
        .get(&script)
        .send()
        .await
        .expect("the request is answered");
    let plain_encoding = plain.headers().get("content-encoding").cloned();
    let plain_len = plain.bytes().await.expect("the asset has a body").len();
    let gzipped = app
        .http
        .get(&script)
        .header("accept-encoding", "br;q=1, gzip;q=0.8")
        .send()
        .await
        .expect("the request is answered");
    let gzip_encoding = gzipped.headers().get("content-encoding").cloned();
    let gzip_len = gzipped.bytes().await.expect("the asset has a body").len();
    let unknown = app
        .http
        .get(app.url("/graphql/assets/..%2FCargo.toml"))
        .send()
        .await
        .map(|r| r.status().as_u16());

    // Assert
    assert_eq!(assets.len(), 6, "{html}");
    for (asset, status, cache, content_type) in answers {
        assert_eq!(status, 200, "{asset}");
        assert!(cache.contains("max-age=31536000"), "{asset}: {cache}");
        let kind = if asset.ends_with(".css") {
            "text/css"
        } else {
            "text/javascript"
        };
        assert!(content_type.starts_with(kind), "{asset}: {content_type}");
    }
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self' 'sha256-"), "{csp}");
    assert_eq!(unknown.ok(), Some(404));
    assert_eq!(plain_encoding, None);
    assert_eq!(
        gzip_encoding.as_ref().map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    assert!(
        gzip_len * 2 < plain_len,
        "gzip {gzip_len} vs {plain_len} bytes"
    );
}
