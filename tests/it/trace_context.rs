//! Trace context: a bootstrap started from the dashboard with a `traceparent` can be followed
//! into its workflow, whether it started at once or was queued while Temporal was down.

use futures::StreamExt;
use serde_json::{Value, json};
use temporal_bff::devstack::{LocalTemporal, free_port};
use temporalio_client::{UntypedWorkflow, WorkflowFetchHistoryOptions};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

use crate::harness::{TestApp, eventually, scratch_dir, watchdog};

const START: &str = "mutation($input: StartOrganizationBootstrapInput!) {
  startOrganizationBootstrap(input: $input) { workflowId status } }";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn input() -> Value {
    let subdomain = format!("trace-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    json!({ "input": {
        "name": "Traced Org", "subdomain": subdomain, "type": "PROVIDER",
        "adminUsers": [{ "email": "ada@trace.example", "firstName": "Ada", "lastName": "L" }],
    }})
}

/// Starts a bootstrap as the dashboard would, with a `traceparent` header.
async fn start(app: &TestApp, token: &str) -> (String, String) {
    let body: Value = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .json(&json!({ "query": START, "variables": input() }))
        .send()
        .await
        .expect("the request is answered")
        .json()
        .await
        .expect("the answer is JSON");
    let started = &body["data"]["startOrganizationBootstrap"];
    (
        started["workflowId"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        started["status"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The `traceparent` in workflow `workflow_id`'s start header, once the workflow exists.
async fn started_with(app: &TestApp, workflow_id: &str) -> Option<String> {
    let client = app.temporal().await;
    let mut history = client
        .get_workflow_handle::<UntypedWorkflow>(workflow_id)
        .fetch_history(WorkflowFetchHistoryOptions::builder().build());
    let first = history.next().await?.ok()?;
    let Some(Attributes::WorkflowExecutionStartedEventAttributes(started)) = first.attributes
    else {
        return None;
    };
    let payload = started
        .header?
        .fields
        .get(temporal_bff::temporal::TRACE_HEADER)?
        .clone();
    let trace: Value = serde_json::from_slice(&payload.data).ok()?;
    trace["traceparent"].as_str().map(str::to_owned)
}

/// Whether `traceparent` continues the dashboard's trace with a span of the BFF's own.
fn continues_the_trace(traceparent: &str) -> bool {
    let parts: Vec<&str> = traceparent.split('-').collect();
    parts.len() == 4 && parts[1] == TRACE_ID && parts[2] != "00f067aa0ba902b7" && parts[3] == "01"
}

#[tokio::test]
async fn a_started_bootstrap_carries_the_callers_trace_into_its_workflow_start_header() {
    // Arrange
    let app = TestApp::spawn().await;
    let token = app
        .token_for("tracer@example.com", None, &["organization.create_root"])
        .await;

    // Act
    let (workflow_id, status) = start(&app, &token).await;
    let traceparent = started_with(&app, &workflow_id).await;

    // Assert
    assert_eq!(status, "STARTED");
    assert!(
        traceparent.as_deref().is_some_and(continues_the_trace),
        "{traceparent:?}"
    );
}

#[tokio::test]
async fn a_start_queued_while_temporal_was_down_still_carries_the_trace_when_dispatched() {
    // Arrange: a private Temporal server, stopped before the request.
    let dir = scratch_dir("temporal-bff-trace-");
    let port = free_port().unwrap_or(0);
    let mut temporal = LocalTemporal::start(&dir, port).expect("a free port");
    watchdog("", Some(temporal.pid()), &dir);
    let app = TestApp::spawn_with(&[
        ("TEMPORAL_ADDRESS", temporal.address()),
        ("DISPATCH_MAX_BACKOFF_MS", "500".into()),
    ])
    .await;
    let token = app
        .token_for("tracer@example.com", None, &["organization.create_root"])
        .await;
    temporal.stop();

    // Act: queued now, dispatched once Temporal is back.
    let (workflow_id, status) = start(&app, &token).await;
    let temporal = LocalTemporal::start(&dir, port).expect("Temporal starts");
    watchdog("", Some(temporal.pid()), &dir);
    let traceparent = eventually(std::time::Duration::from_secs(60), || {
        started_with(&app, &workflow_id)
    })
    .await;

    // Assert
    assert_eq!(status, "QUEUED");
    assert!(
        traceparent.as_deref().is_some_and(continues_the_trace),
        "{traceparent:?}"
    );
}
