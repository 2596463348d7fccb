//! `/metrics` as Prometheus sees it: parsed by `promtool check metrics` and a Prometheus text
//! parser, and checked against the table in `docs/operations.md`.

use std::{process::Stdio, time::Duration};

use serde_json::json;
use temporal_bff::devstack::free_port;
use tokio::io::AsyncWriteExt;

use crate::{
    fixtures::foreign_release,
    harness::{TestApp, eventually},
};

const START: &str = "mutation($input: StartOrganizationBootstrapInput!) {
  startOrganizationBootstrap(input: $input) { status } }";

/// (name, type) of every metric `docs/operations.md` documents.
fn documented() -> Vec<(String, String)> {
    let doc = include_str!("../../docs/operations.md");
    doc.lines()
        .filter_map(|line| line.strip_prefix("| `bff_"))
        .filter_map(|rest| {
            let mut cells = rest.split('|').map(str::trim);
            let name = cells.next()?.trim_end_matches('`');
            Some((format!("bff_{name}"), cells.next()?.to_owned()))
        })
        .collect()
}

/// `promtool check metrics` on `text`: its complaints, if any.
async fn promtool(text: &str) -> String {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = tokio::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run promtool (scripts/test installs it)");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes()).await;
    }
    let out = child.wait_with_output().await.expect("the process ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        String::new()
    } else {
        said
    }
}

#[tokio::test]
async fn every_documented_metric_is_scraped_with_its_type_and_help() {
    // Arrange: Temporal is unreachable (nothing listens there), so a start is queued and its
    // deliveries fail; a running release's live read falls back to the projection. A token
    // issuer's keys are nowhere either, so its key fetch fails and is counted.
    let nowhere = format!("http://127.0.0.1:{}", free_port().unwrap_or(1));
    let issuers = json!([{ "issuer": "https://idp.example", "audience": "x",
        "jwks_url": format!("{nowhere}/jwks"), "allow_http_loopback": true,
        "algorithms": ["RS256"] }]);
    let app = TestApp::spawn_with(&[
        ("TEMPORAL_ADDRESS", nowhere),
        ("DISPATCH_MAX_BACKOFF_MS", "500".into()),
        ("AUTH_ISSUERS", issuers.to_string()),
    ])
    .await;
    let token = app
        .token_for("ops@example.com", None, &["organization.create_root"])
        .await;
    let release = foreign_release(&app, 2).await;

    // Act
    app.login("ops@example.com", "wrong password").await;
    app.graphql_as(&token, "{ nosuchfield }", json!({})).await;
    app.graphql_as(
        &token,
        "query Tree($id: ID!) { release(id: $id) { waves { clusters { key } } } }",
        json!({ "id": release }),
    )
    .await;
    app.graphql_as(&token, "{ releases(first: 5) { totalCount } }", json!({}))
        .await;
    let started = app
        .graphql_as(
            &token,
            START,
            json!({ "input": {
                "name": "Metrics Org", "subdomain": "metrics-org", "type": "PROVIDER",
                "adminUsers": [{ "email": "ada@metrics.example", "firstName": "Ada", "lastName": "L" }],
            }}),
        )
        .await;
    let failed_delivery =
        "bff_outbox_dispatch_failures_total{action=\"start\",code=\"Unavailable\"}";
    let text = eventually(Duration::from_secs(30), || async {
        let text = app.get_text(&app.ops_url("/metrics")).await;
        text.contains(failed_delivery).then_some(text)
    })
    .await
    .unwrap_or_else(|| panic!("no failed delivery counted"));

    // Assert
    assert_eq!(
        started["data"]["startOrganizationBootstrap"]["status"], "QUEUED",
        "{started}"
    );
    assert_eq!(
        promtool(&text).await,
        "",
        "promtool check metrics complains"
    );
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("not Prometheus text");
    let documented = documented();
    assert!(documented.len() >= 25, "{documented:?}");
    for (name, kind) in &documented {
        let help = scrape.docs.get(name);
        assert!(help.is_some_and(|h| !h.is_empty()), "{name}: no help text");
        let sample = scrape
            .samples
            .iter()
            .find(|s| &s.metric == name)
            .unwrap_or_else(|| panic!("{name} missing from the scrape"));
        let scraped = match sample.value {
            prometheus_parse::Value::Counter(_) => "counter",
            prometheus_parse::Value::Gauge(_) => "gauge",
            prometheus_parse::Value::Histogram(_) => "histogram",
            _ => "other",
        };
        assert_eq!(scraped, kind, "{name}");
    }
    let value = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => *v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.last().map_or(0.0, |b| b.count)
                }
                _ => f64::NAN,
            })
            .unwrap_or(0.0)
    };
    assert_eq!(value("bff_logins_total", &[("outcome", "success")]), 1.0);
    assert_eq!(value("bff_logins_total", &[("outcome", "failure")]), 1.0);
    assert_eq!(value("bff_outbox_pending", &[("action", "start")]), 1.0);
    assert!(value("bff_outbox_dispatch_attempts_total", &[("action", "start")]) >= 1.0);
    assert!(value("bff_live_reads_total", &[("outcome", "fallback")]) >= 1.0);
    assert!(value("bff_graphql_errors_total", &[("code", "BAD_USER_INPUT")]) >= 1.0);
    assert!(
        value(
            "bff_http_request_duration_seconds",
            &[("route", "/graphql"), ("status", "200")]
        ) >= 5.0
    );
    assert!(
        value(
            "bff_graphql_operation_duration_seconds",
            &[("operation", "Tree"), ("outcome", "ok")]
        ) >= 1.0,
        "{}",
        text.lines()
            .filter(|l| l.starts_with("bff_graphql_operation_duration_seconds_count"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        value(
            "bff_temporal_call_duration_seconds",
            &[("method", "Connect"), ("outcome", "Unavailable")]
        ) >= 1.0
    );
}

#[tokio::test]
async fn operation_names_cannot_grow_the_series_without_bound() {
    // Arrange
    let app = TestApp::spawn().await;
    let token = app.token_for("viewer@example.com", None, &[]).await;

    // Act: 150 distinct names from a signed-in caller, past the 100 that get their own label.
    for i in 0..150 {
        app.graphql_as(&token, &format!("query Name{i} {{ version }}"), json!({}))
            .await;
    }
    let text = app.get_text(&app.ops_url("/metrics")).await;

    // Assert
    let series = text
        .lines()
        .filter(|l| l.starts_with("bff_graphql_operation_duration_seconds_count{"))
        .count();
    assert!(series <= 102, "{series} series");
    assert!(
        text.contains(
            "bff_graphql_operation_duration_seconds_count{operation=\"(other)\",outcome=\"ok\"} 50"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn names_sent_without_a_token_never_become_labels() {
    // Arrange
    let app = TestApp::spawn().await;

    // Act: anonymous callers naming operations (each is refused).
    for i in 0..20 {
        app.post_graphql(
            json!({ "query": format!("query Probe{i} {{ version }}"), "operationName": format!("Probe{i}") }),
        )
        .await;
    }
    let text = app.get_text(&app.ops_url("/metrics")).await;

    // Assert
    assert!(!text.contains("Probe"), "{text}");
    assert!(
        text.contains("bff_graphql_operation_duration_seconds_count{operation=\"(without caller)\",outcome=\"error\"} 20"),
        "{text}"
    );
}
