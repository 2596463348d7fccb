//! The JSON Schemas under `contracts/` are what other teams' workers are checked against: they
//! must equal what the code generates, and every event the reference worker and the BFF write
//! must validate against them.

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};
use temporal_bff::contracts::{events::EVENT_TYPES, schema_file, schemas};
use temporalio_client::WorkflowGetResultOptions;

use crate::{
    fixtures::{spec, start, unique_key},
    harness::{TestApp, eventually},
};

fn committed(name: &str) -> String {
    let path = format!("{}/contracts/{name}.json", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_committed_schemas_equal_what_the_code_generates() {
    let generated = schemas();
    let files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/contracts"))
        .expect("the directory is readable")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();

    for (name, schema) in &generated {
        assert_eq!(
            committed(name),
            schema_file(schema),
            "contracts/{name}.json is stale: run `cargo run -q -- contracts`"
        );
    }
    assert_eq!(
        files.len(),
        generated.len(),
        "contracts/ holds a file no contract type generates: {files:?}"
    );
}

/// Every schema file, compiled, by name.
fn validators() -> BTreeMap<&'static str, jsonschema::Validator> {
    schemas()
        .into_iter()
        .map(|(name, _)| {
            let schema: Value = serde_json::from_str(&committed(name))
                .unwrap_or_else(|e| panic!("contracts/{name}.json: {e}"));
            let validator = jsonschema::validator_for(&schema)
                .unwrap_or_else(|e| panic!("contracts/{name}.json is no valid schema: {e}"));
            (name, validator)
        })
        .collect()
}

/// Every stored event's data and metadata, checked against its type's schema; returns the
/// event types seen.
async fn check_every_event(app: &TestApp) -> Vec<String> {
    let validators = validators();
    let payload_of: BTreeMap<&str, &str> = EVENT_TYPES.iter().copied().collect();
    let events: Vec<(String, Value, Value)> = sqlx::query_as(
        "SELECT event_type, event_data, event_metadata FROM domain_events ORDER BY created_at",
    )
    .fetch_all(&app.db)
    .await
    .expect("the query answers");
    let mut problems = Vec::new();
    for (event_type, data, metadata) in &events {
        let Some(payload) = payload_of.get(event_type.as_str()) else {
            problems.push(format!("{event_type}: no contract"));
            continue;
        };
        for (what, schema, value) in [
            ("event_data", *payload, data),
            ("event_metadata", "EventMetadata", metadata),
        ] {
            for error in validators[schema].iter_errors(value) {
                problems.push(format!(
                    "{event_type} {what} against {schema}.json: {error} at {}",
                    error.instance_path()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    events.into_iter().map(|(t, _, _)| t).collect()
}

const START: &str = "mutation($input: StartOrganizationBootstrapInput!) {
  startOrganizationBootstrap(input: $input) { organizationId }
}";

async fn start_bootstrap(app: &TestApp, token: &str, subdomain: &str) -> String {
    let input = json!({
        "name": "Contract Org", "subdomain": subdomain, "type": "PROVIDER_PARTNER",
        "adminUsers": [
            { "email": "ada@contract.example", "firstName": "Ada", "lastName": "Lovelace" },
            { "email": "bo@contract.example", "firstName": "Bo", "lastName": "Li", "role": "billing_admin" }
        ],
        "idempotencyKey": subdomain,
    });
    let body = app
        .graphql_as(token, START, json!({ "input": input }))
        .await;
    body["data"]["startOrganizationBootstrap"]["organizationId"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

async fn wait_until_settled(app: &TestApp, organization: &str, status: &str) -> bool {
    eventually(Duration::from_secs(60), || async {
        let now: String =
            sqlx::query_scalar("SELECT status FROM organizations_projection WHERE id = $1::uuid")
                .bind(organization)
                .fetch_one(&app.db)
                .await
                .ok()?;
        (now == status).then_some(())
    })
    .await
    .is_some()
}

#[tokio::test]
async fn every_event_the_worker_and_the_bff_write_matches_its_schema() {
    // Arrange: a release with a failing app, and a bootstrap whose first DNS check fails.
    let app = TestApp::spawn_with_worker(&[("SIM_DNS_VERIFY_FAILURES", "1".into())]).await;
    let token = app
        .token_for("root@example.com", None, &["organization.create_root"])
        .await;
    let client = app.temporal().await;
    let release = start(
        &client,
        &app,
        spec(
            &unique_key("contract"),
            2,
            2,
            2,
            json!({ "stepMillis": 1, "failApps": ["app-2"] }),
        ),
    )
    .await;

    // Act
    let _ = release
        .get_result(WorkflowGetResultOptions::default())
        .await;
    let org = start_bootstrap(&app, &token, "contract-ok").await;
    let settled = wait_until_settled(&app, &org, "active").await;

    // Assert
    assert!(settled, "the bootstrap completed");
    let seen = check_every_event(&app).await;
    for expected in [
        "release.created",
        "release.status_changed",
        "release.wave.status_changed",
        "release.cluster.status_changed",
        "release.bundle.status_changed",
        "release.app.status_changed",
        "organization.bootstrap.initiated",
        "workflow.queue.pending",
        "organization.bootstrap.workflow_started",
        "organization.created",
        "organization.subdomain.dns_record_created",
        "organization.subdomain.verification_failed",
        "organization.subdomain.verified",
        "user.role.assigned",
        "user.invited",
        "organization.bootstrap.completed",
    ] {
        assert!(
            seen.iter().any(|s| s == expected),
            "{expected} was not written"
        );
    }
}

#[tokio::test]
async fn the_events_of_a_failed_and_compensated_bootstrap_match_their_schemas() {
    let app = TestApp::spawn_with_worker(&[("SIM_DNS_VERIFY_FAILURES", "always".into())]).await;
    let token = app
        .token_for("root@example.com", None, &["organization.create_root"])
        .await;

    let org = start_bootstrap(&app, &token, "contract-fails").await;
    let settled = wait_until_settled(&app, &org, "failed").await;

    assert!(settled, "the bootstrap failed");
    let seen = check_every_event(&app).await;
    for expected in [
        "organization.subdomain.dns_record_removed",
        "organization.deactivated",
        "organization.bootstrap.failed",
    ] {
        assert!(
            seen.iter().any(|s| s == expected),
            "{expected} was not written"
        );
    }
}
