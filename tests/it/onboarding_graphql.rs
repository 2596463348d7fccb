//! Organization bootstrap over GraphQL and REST: validation, permissions, the never-lost write
//! path, idempotency, status and isolation, on the real stack.

use std::time::Duration;

use serde_json::{Value, json};
use temporal_bff::devstack::{LocalTemporal, free_port};

use crate::harness::{TestApp, error_code, eventually, scratch_dir, watchdog};

const CREATE_ROOT: &str = "organization.create_root";
const VIEW_ALL: &str = "organization.view_all";

const START: &str = "mutation($input: StartOrganizationBootstrapInput!) {
  startOrganizationBootstrap(input: $input) {
    organizationId workflowId status
    organization { id name slug type status fqdn subdomainStatus bootstrap { state } }
  }
}";

const STATUS: &str = "query($id: ID!) {
  organization(id: $id) {
    id name status subdomainStatus
    bootstrap {
      state
      steps { name status startedAt completedAt attempt error }
      invitations { email role status }
      workflow { workflowId runId status }
      failure { step reason }
      events(first: 100) { totalCount edges { node { eventType metadata } } }
    }
  }
}";

fn input(subdomain: &str) -> Value {
    json!({
        "name": "Acme Health",
        "subdomain": subdomain,
        "type": "PROVIDER",
        "adminUsers": [
            { "email": "ada@acme.example", "firstName": "Ada", "lastName": "Lovelace" },
            { "email": "grace@acme.example", "firstName": "Grace", "lastName": "Hopper", "role": "billing_admin" }
        ]
    })
}

fn unique_subdomain(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

async fn event_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM domain_events")
        .fetch_one(&app.db)
        .await
        .unwrap_or(-1)
}

async fn status_of(app: &TestApp, token: &str, id: &str) -> Value {
    app.graphql_as(token, STATUS, json!({ "id": id })).await["data"]["organization"].clone()
}

async fn wait_for_state(app: &TestApp, token: &str, id: &str, state: &str) -> Option<Value> {
    eventually(Duration::from_secs(30), || async {
        let status = status_of(app, token, id).await;
        (status["bootstrap"]["state"] == state).then_some(status)
    })
    .await
}

/// Waits until the events say `state` *and* Temporal's describe says the workflow closed with
/// it: the workflow closes a moment after its last event.
async fn wait_until_closed(app: &TestApp, token: &str, id: &str, state: &str) -> Option<Value> {
    eventually(Duration::from_secs(30), || async {
        let status = status_of(app, token, id).await;
        (status["bootstrap"]["state"] == state
            && status["bootstrap"]["workflow"]["status"] == state)
            .then_some(status)
    })
    .await
}

#[tokio::test]
async fn every_validation_rule_is_a_bad_user_input_naming_its_field_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let token = app
        .token_for("root@example.com", None, &[CREATE_ROOT])
        .await;
    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut case = |field: &'static str, edit: &dyn Fn(&mut Value)| {
        let mut value = input("valid-sub");
        edit(&mut value);
        cases.push((field, value));
    };
    case("input.name", &|v| v["name"] = json!("   "));
    case("input.name", &|v| v["name"] = json!("x".repeat(201)));
    case("input.subdomain", &|v| v["subdomain"] = json!("ab"));
    case("input.subdomain", &|v| v["subdomain"] = json!("Upper"));
    case("input.subdomain", &|v| v["subdomain"] = json!("-lead"));
    case("input.subdomain", &|v| v["subdomain"] = json!("trail-"));
    case("input.subdomain", &|v| v["subdomain"] = json!("www"));
    case("input.subdomain", &|v| {
        v["subdomain"] = json!("a".repeat(64))
    });
    case("input.adminUsers", &|v| v["adminUsers"] = json!([]));
    case("input.adminUsers", &|v| {
        v["adminUsers"] = json!(vec![v["adminUsers"][0].clone(); 21])
    });
    case("input.adminUsers[0].email", &|v| {
        v["adminUsers"][0]["email"] = json!("not-an-email")
    });
    case("input.adminUsers[1].email", &|v| {
        v["adminUsers"][1]["email"] = json!("ADA@acme.example")
    });
    case("input.adminUsers[0].firstName", &|v| {
        v["adminUsers"][0]["firstName"] = json!("")
    });
    case("input.adminUsers[1].lastName", &|v| {
        v["adminUsers"][1]["lastName"] = json!(" ")
    });
    let before = event_count(&app).await;

    for (field, value) in cases {
        let body = app
            .graphql_as(&token, START, json!({ "input": value }))
            .await;

        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{field}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
        assert!(body["data"].is_null(), "{body}");
    }
    let bad_type = app
        .graphql_as(&token, START, json!({ "input": { "name": "x", "subdomain": "abc", "type": "VENDOR", "adminUsers": [] } }))
        .await;
    assert!(
        bad_type["errors"][0]["message"].is_string(),
        "type is checked by the schema"
    );
    assert_eq!(event_count(&app).await, before, "nothing was written");
}

#[tokio::test]
async fn starting_needs_the_create_root_permission() {
    let app = TestApp::spawn().await;
    let viewer = app.token_for("viewer@example.com", None, &[VIEW_ALL]).await;

    let forbidden = app
        .graphql_as(&viewer, START, json!({ "input": input("forbidden-sub") }))
        .await;
    let anonymous = app
        .graphql(START, json!({ "input": input("anonymous-sub") }))
        .await;

    assert_eq!(error_code(&forbidden), "FORBIDDEN", "{forbidden}");
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
    assert_eq!(event_count(&app).await, 0);
}

#[tokio::test]
async fn a_start_runs_to_completed_with_every_step_event_and_invitation() {
    // Arrange
    let app = TestApp::spawn_with_worker(&[("SIM_DNS_DELAY_MS", "300".into())]).await;
    let token = app
        .token_for("root@example.com", None, &[CREATE_ROOT, VIEW_ALL])
        .await;
    let subdomain = unique_subdomain("acme");

    // Act
    let started = app
        .graphql_as(&token, START, json!({ "input": input(&subdomain) }))
        .await;
    let payload = &started["data"]["startOrganizationBootstrap"];
    let org = payload["organizationId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let running = wait_for_state(&app, &token, &org, "RUNNING").await;
    let done = wait_until_closed(&app, &token, &format!("organization:{org}"), "COMPLETED").await;

    // Assert
    assert_eq!(payload["status"], "STARTED", "{started}");
    assert_eq!(payload["workflowId"], format!("org-bootstrap-{org}"));
    assert_eq!(payload["organization"]["slug"], subdomain.as_str());
    assert_eq!(
        payload["organization"]["fqdn"],
        format!("{subdomain}.example.test")
    );
    let running = running.unwrap_or_else(|| panic!("never RUNNING"));
    assert!(
        running["bootstrap"]["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["status"] == "RUNNING"),
        "a step runs: {running}"
    );
    let done = done.unwrap_or_else(|| panic!("never COMPLETED"));
    let bootstrap = &done["bootstrap"];
    assert_eq!(done["status"], "ACTIVE");
    assert_eq!(done["subdomainStatus"], "VERIFIED");
    let steps: Vec<(&str, &str)> = bootstrap["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or(""),
                s["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("CREATE_ORGANIZATION", "SUCCEEDED"),
            ("CONFIGURE_DNS", "SUCCEEDED"),
            ("VERIFY_DNS", "SUCCEEDED"),
            ("ASSIGN_ADMIN_ROLE", "SUCCEEDED"),
            ("SEND_INVITATIONS", "SUCCEEDED"),
            ("COMPLETE", "SUCCEEDED"),
        ]
    );
    assert!(
        bootstrap["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|s| s["startedAt"].is_string() && s["completedAt"].is_string())
    );
    assert_eq!(bootstrap["invitations"].as_array().map(Vec::len), Some(2));
    assert_eq!(bootstrap["workflow"]["status"], "COMPLETED");
    assert!(bootstrap["workflow"]["runId"].is_string());
    let types: Vec<&str> = bootstrap["events"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["node"]["eventType"].as_str())
        .collect();
    assert_eq!(types.first(), Some(&"organization.bootstrap.initiated"));
    for expected in [
        "workflow.queue.pending",
        "organization.bootstrap.workflow_started",
        "organization.created",
        "user.invited",
        "organization.bootstrap.completed",
    ] {
        assert!(
            types.contains(&expected),
            "{expected} missing from {types:?}"
        );
    }
    let initiated = &bootstrap["events"]["edges"][0]["node"]["metadata"];
    assert!(
        initiated["user_id"].is_string()
            && initiated["correlation_id"].is_string()
            && initiated["source"] == "temporal-bff",
        "{initiated}"
    );
}

#[tokio::test]
async fn failing_dns_shows_the_failing_step_attempts_and_reason_and_ends_failed() {
    let app = TestApp::spawn_with_worker(&[("SIM_DNS_VERIFY_FAILURES", "always".into())]).await;
    let token = app
        .token_for("root@example.com", None, &[CREATE_ROOT, VIEW_ALL])
        .await;

    let started = app
        .graphql_as(
            &token,
            START,
            json!({ "input": input(&unique_subdomain("dns")) }),
        )
        .await;
    let org = started["data"]["startOrganizationBootstrap"]["organizationId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let failed = wait_for_state(&app, &token, &org, "FAILED")
        .await
        .unwrap_or_else(|| panic!("never FAILED"));

    let bootstrap = &failed["bootstrap"];
    let verify = bootstrap["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == "VERIFY_DNS")
        .cloned()
        .unwrap_or_default();
    assert_eq!(verify["status"], "FAILED", "{bootstrap}");
    assert_eq!(verify["attempt"], 5);
    assert_eq!(verify["error"], "DNS verification failed after 5 attempts");
    assert_eq!(bootstrap["failure"]["step"], "VERIFY_DNS");
    assert_eq!(
        bootstrap["failure"]["reason"], "DNS verification failed after 5 attempts",
        "a fixed, readable reason"
    );
    let compensated: Vec<&str> = bootstrap["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["status"] == "COMPENSATED")
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(compensated, ["CREATE_ORGANIZATION", "CONFIGURE_DNS"]);
    assert_eq!(failed["status"], "FAILED");
    assert_eq!(failed["subdomainStatus"], "FAILED");
}

#[tokio::test]
async fn repeated_and_concurrent_duplicate_starts_give_one_organization_and_workflow() {
    let app = TestApp::spawn_with_worker(&[]).await;
    let token = app
        .token_for("root@example.com", None, &[CREATE_ROOT])
        .await;
    let subdomain = unique_subdomain("dup");
    let mut keyed = input(&subdomain);
    keyed["idempotencyKey"] = json!("request-42");

    // Act: 8 identical requests at the same moment, then the same again later, then the same
    // key with another body.
    let bodies = futures::future::join_all(
        (0..8).map(|_| app.graphql_as(&token, START, json!({ "input": keyed }))),
    )
    .await;
    let repeat = app
        .graphql_as(&token, START, json!({ "input": keyed }))
        .await;
    let mut other_body = input(&unique_subdomain("other"));
    other_body["idempotencyKey"] = json!("request-42");
    let conflict = app
        .graphql_as(&token, START, json!({ "input": other_body }))
        .await;

    // Assert
    let statuses: Vec<&str> = bodies
        .iter()
        .filter_map(|b| b["data"]["startOrganizationBootstrap"]["status"].as_str())
        .collect();
    assert_eq!(statuses.len(), 8, "{bodies:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == "STARTED").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "ALREADY_EXISTS").count(),
        7
    );
    let orgs: std::collections::HashSet<&str> = bodies
        .iter()
        .filter_map(|b| b["data"]["startOrganizationBootstrap"]["organizationId"].as_str())
        .collect();
    assert_eq!(orgs.len(), 1);
    assert_eq!(
        repeat["data"]["startOrganizationBootstrap"]["status"],
        "ALREADY_EXISTS"
    );
    assert_eq!(
        repeat["data"]["startOrganizationBootstrap"]["organizationId"].as_str(),
        orgs.iter().next().copied()
    );
    assert_eq!(error_code(&conflict), "BAD_USER_INPUT", "{conflict}");
    assert_eq!(
        conflict["errors"][0]["extensions"]["field"], "idempotencyKey",
        "{conflict}"
    );
    assert!(conflict["data"].is_null(), "{conflict}");
    let (organizations, initiated): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM organizations_projection),
                (SELECT count(*) FROM domain_events WHERE event_type = 'organization.bootstrap.initiated')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap_or_default();
    assert_eq!((organizations, initiated), (1, 1));
}

#[tokio::test]
async fn users_see_only_their_own_organization_unless_they_may_view_all() {
    let app = TestApp::spawn_with_worker(&[]).await;
    let root = app
        .token_for("root@example.com", None, &[CREATE_ROOT])
        .await;
    let start = |sub: String| {
        let app = &app;
        let root = root.clone();
        async move {
            let body = app
                .graphql_as(&root, START, json!({ "input": input(&sub) }))
                .await;
            body["data"]["startOrganizationBootstrap"]["organizationId"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    let org_a = start(unique_subdomain("org-a")).await;
    let org_b = start(unique_subdomain("org-b")).await;
    let member_a = app
        .token_for("member@a.example", uuid::Uuid::parse_str(&org_a).ok(), &[])
        .await;
    let auditor = app
        .token_for("auditor@example.com", None, &[VIEW_ALL])
        .await;
    let list = "{ organizations(first: 10) { totalCount edges { node { id name } } } }";

    let own = status_of(&app, &member_a, &org_a).await;
    let other = app
        .graphql_as(&member_a, STATUS, json!({ "id": org_b }))
        .await;
    let other_node = app
        .graphql_as(
            &member_a,
            "query($id: ID!) { node(id: $id) { id } }",
            json!({ "id": format!("organization:{org_b}") }),
        )
        .await;
    let member_list = app.graphql_as(&member_a, list, json!({})).await;
    let auditor_list = app.graphql_as(&auditor, list, json!({})).await;

    assert_eq!(own["id"], format!("organization:{org_a}"));
    assert!(
        other["data"]["organization"].is_null() && other["errors"].is_null(),
        "{other}"
    );
    assert!(other_node["data"]["node"].is_null(), "{other_node}");
    assert_eq!(
        member_list["data"]["organizations"]["totalCount"], 1,
        "{member_list}"
    );
    assert_eq!(
        member_list["data"]["organizations"]["edges"][0]["node"]["id"],
        format!("organization:{org_a}"),
        "{member_list}"
    );
    assert_eq!(auditor_list["data"]["organizations"]["totalCount"], 2);
    assert_eq!(
        auditor_list["data"]["organizations"]["edges"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "{auditor_list}"
    );
}

#[tokio::test]
async fn organizations_page_oldest_first_by_cursor_and_an_empty_page_still_counts_them() {
    let app = TestApp::spawn().await;
    let root = app
        .token_for("root@example.com", None, &[CREATE_ROOT, VIEW_ALL])
        .await;
    let mut started = Vec::new();
    for name in ["page-a", "page-b"] {
        let body = app
            .graphql_as(
                &root,
                START,
                json!({ "input": input(&unique_subdomain(name)) }),
            )
            .await;
        started.push(format!(
            "organization:{}",
            body["data"]["startOrganizationBootstrap"]["organizationId"]
                .as_str()
                .expect("the start answers the organization's ID")
        ));
    }
    let page = |after: Value| {
        let (app, root) = (&app, root.clone());
        async move {
            app.graphql_as(
                &root,
                "query($after: String) { organizations(first: 1, after: $after) {
                   totalCount edges { node { id } } pageInfo { hasNextPage endCursor } } }",
                json!({ "after": after }),
            )
            .await["data"]["organizations"]
                .clone()
        }
    };

    let first = page(Value::Null).await;
    let second = page(first["pageInfo"]["endCursor"].clone()).await;
    let past_the_end = page(second["pageInfo"]["endCursor"].clone()).await;

    assert_eq!(first["edges"][0]["node"]["id"], started[0], "{first}");
    assert_eq!(first["pageInfo"]["hasNextPage"], true, "{first}");
    assert_eq!(second["edges"][0]["node"]["id"], started[1], "{second}");
    assert_eq!(second["pageInfo"]["hasNextPage"], false, "{second}");
    assert_eq!(past_the_end["edges"], json!([]), "{past_the_end}");
    for page in [&first, &second, &past_the_end] {
        assert_eq!(page["totalCount"], 2, "{page}");
    }
}

#[tokio::test]
async fn the_rest_route_starts_repeats_and_refuses_like_the_old_service() {
    let app = TestApp::spawn_with_worker(&[]).await;
    let root = app
        .token_for("root@example.com", None, &[CREATE_ROOT])
        .await;
    let viewer = app.token_for("viewer@example.com", None, &[]).await;
    let url = app.url("/api/v1/workflows/organization-bootstrap");
    let mut body = input(&unique_subdomain("rest"));
    body["type"] = json!("provider");
    let post = |token: Option<String>, body: String| {
        let mut request = app
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.expect("the request is answered");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };

    let created = post(Some(root.clone()), body.to_string()).await;
    let repeated = post(Some(root.clone()), body.to_string()).await;
    let no_token = post(None, body.to_string()).await;
    let forbidden = post(Some(viewer), body.to_string()).await;
    let garbage = post(Some(root.clone()), "{not json".into()).await;
    let mut invalid = body.clone();
    invalid["subdomain"] = json!("www");
    let invalid = post(Some(root), invalid.to_string()).await;

    assert_eq!(created.0, 201, "{created:?}");
    assert_eq!(created.1["status"], "initiated");
    assert!(
        created.1["workflowId"]
            .as_str()
            .unwrap_or_default()
            .starts_with("org-bootstrap-")
    );
    assert_eq!(
        (repeated.0, repeated.1["status"].as_str()),
        (200, Some("exists"))
    );
    assert_eq!(repeated.1["organizationId"], created.1["organizationId"]);
    assert_eq!(no_token.0, 401);
    assert_eq!(forbidden.0, 403);
    assert_eq!(garbage.0, 400);
    assert!(garbage.1["error"].is_string(), "JSON errors: {garbage:?}");
    assert_eq!(invalid.0, 400);
    assert_eq!(invalid.1["details"]["field"], "input.subdomain");
}

#[tokio::test]
async fn starts_queued_while_temporal_is_down_all_complete_once_it_returns_and_none_starts_twice() {
    // Arrange: a private Temporal server this test stops and restarts, and two BFF instances
    // (two dispatchers) on one database.
    let dir = scratch_dir("temporal-bff-q-");
    let port = free_port().unwrap_or(0);
    let mut temporal = LocalTemporal::start(&dir, port).expect("a free port");
    watchdog("", Some(temporal.pid()), &dir);
    let overrides = [
        ("TEMPORAL_ADDRESS", temporal.address()),
        ("DISPATCH_MAX_BACKOFF_MS", "1000".into()),
    ];
    let first = TestApp::spawn_with_worker(&overrides).await;
    let token = first
        .token_for("root@example.com", None, &[CREATE_ROOT, VIEW_ALL])
        .await;
    let mut second_overrides = overrides.to_vec();
    second_overrides.push(("DATABASE_URL", first.config.database_url().to_owned()));
    second_overrides.push((
        "JWT_SECRET",
        secrecy::ExposeSecret::expose_secret(&first.config.auth.jwt_secret).to_owned(),
    ));
    second_overrides.push((
        "BOOTSTRAP_TASK_QUEUE",
        first.config.temporal.bootstrap_task_queue.clone(),
    ));
    let second = TestApp::spawn_with(&second_overrides).await;

    // Act: Temporal goes away; 10 starts come in (spread over both instances).
    temporal.stop();
    let mut answers = Vec::new();
    for i in 0..10 {
        let app = if i % 2 == 0 { &first } else { &second };
        let body = app
            .graphql_as(
                &token,
                START,
                json!({ "input": input(&unique_subdomain("q")) }),
            )
            .await;
        answers.push(
            body["data"]["startOrganizationBootstrap"]["status"]
                .as_str()
                .unwrap_or("<error>")
                .to_owned(),
        );
    }
    let queued_states = eventually(Duration::from_secs(5), || async {
        let body = first
            .graphql_as(
                &token,
                "{ organizations(first: 20) { edges { node { bootstrap { state } } } } }",
                json!({}),
            )
            .await;
        let states: Vec<String> = body["data"]["organizations"]["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["node"]["bootstrap"]["state"].as_str().map(str::to_owned))
            .collect();
        (states.len() == 10).then_some(states)
    })
    .await;
    let temporal = LocalTemporal::start(&dir, port).expect("restart");
    watchdog("", Some(temporal.pid()), &dir);
    let completed = eventually(Duration::from_secs(90), || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM organizations_projection WHERE status = 'active'",
        )
        .fetch_one(&first.db)
        .await
        .ok()?;
        (n == 10).then_some(n)
    })
    .await;

    // Assert
    assert_eq!(answers, vec!["QUEUED".to_owned(); 10]);
    assert!(
        queued_states.is_some_and(|s| s.iter().all(|s| s == "QUEUED")),
        "status says QUEUED while down"
    );
    assert_eq!(completed, Some(10), "every accepted request completed");
    let starts_per_workflow: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM domain_events WHERE event_type = 'organization.bootstrap.workflow_started'
          GROUP BY event_metadata ->> 'workflow_id'",
    )
    .fetch_all(&first.db)
    .await
    .unwrap_or_default();
    assert_eq!(
        starts_per_workflow,
        vec![1; 10],
        "each request started exactly once"
    );
    drop(temporal);
}
