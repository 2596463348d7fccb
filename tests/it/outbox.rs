//! The outbox never gives up on what it accepted: a start that could not be recorded is
//! retried as a recording, and idempotency keys belong to their caller.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{TestApp, error_code, eventually};

const START: &str = "mutation($input: StartOrganizationBootstrapInput!) {
  startOrganizationBootstrap(input: $input) { organizationId workflowId status }
}";

fn input(subdomain: &str, key: &str) -> Value {
    json!({
        "name": "Outbox Org",
        "subdomain": subdomain,
        "type": "PROVIDER",
        "adminUsers": [{ "email": "ada@outbox.example", "firstName": "Ada", "lastName": "Lovelace" }],
        "idempotencyKey": key,
    })
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

async fn execute(app: &TestApp, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&app.db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn a_start_that_could_not_be_recorded_is_retried_as_a_recording_and_starts_once() {
    // Arrange: recording a start fails until the switch is turned off.
    let app = TestApp::spawn_with_worker(&[]).await;
    let token = app
        .token_for("root@example.com", None, &["organization.create_root"])
        .await;
    execute(&app, "CREATE TABLE fail_recording (on_ boolean)").await;
    execute(&app, "INSERT INTO fail_recording VALUES (true)").await;
    execute(
        &app,
        "CREATE FUNCTION fail_recording() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.event_type = 'organization.bootstrap.workflow_started'
              AND EXISTS (SELECT 1 FROM fail_recording) THEN
             RAISE EXCEPTION 'the disk is full (simulated)';
           END IF;
           RETURN NEW;
         END $$",
    )
    .await;
    execute(
        &app,
        "CREATE TRIGGER fail_recording BEFORE INSERT ON domain_events
         FOR EACH ROW EXECUTE FUNCTION fail_recording()",
    )
    .await;

    // Act
    let started = app
        .graphql_as(
            &token,
            START,
            json!({ "input": input(&unique("rec"), "k-1") }),
        )
        .await;
    let org = started["data"]["startOrganizationBootstrap"]["organizationId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let outbox = || async {
        sqlx::query_as::<_, (String, i32, Option<String>)>(
            "SELECT status, attempts, last_error FROM workflow_queue_projection
              WHERE organization_id = $1::uuid",
        )
        .bind(&org)
        .fetch_one(&app.db)
        .await
        .ok()
    };
    // The dispatcher takes the row once the fast path's grace has passed, starts (the same
    // workflow, already running) and fails to record again.
    let retrying = eventually(Duration::from_secs(40), || async {
        let row = outbox().await?;
        row.2
            .as_deref()
            .is_some_and(|e| e.contains("recording the start will be retried"))
            .then_some(row)
    })
    .await;
    execute(&app, "DELETE FROM fail_recording").await;
    let recorded = eventually(Duration::from_secs(40), || async {
        let row = outbox().await?;
        (row.0 == "completed").then_some(row)
    })
    .await;
    let done = eventually(Duration::from_secs(30), || async {
        let status: String =
            sqlx::query_scalar("SELECT status FROM organizations_projection WHERE id = $1::uuid")
                .bind(&org)
                .fetch_one(&app.db)
                .await
                .ok()?;
        (status == "active").then_some(())
    })
    .await;

    // Assert
    assert_eq!(
        started["data"]["startOrganizationBootstrap"]["status"], "STARTED",
        "{started}"
    );
    let retrying = retrying.unwrap_or_else(|| panic!("the recording was never retried"));
    assert_eq!(retrying.0, "pending", "waiting to record again, not failed");
    assert_eq!(
        retrying.1, 0,
        "a failed recording is not a failed start attempt"
    );
    let recorded = recorded.unwrap_or_else(|| panic!("the start was never recorded"));
    assert_eq!(recorded.1, 1, "one attempt: the one that recorded it");
    assert!(done.is_some(), "the bootstrap ran to the end");
    let starts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM domain_events
          WHERE event_type = 'organization.bootstrap.workflow_started' AND aggregate_id = $1::uuid",
    )
    .bind(&org)
    .fetch_one(&app.db)
    .await
    .unwrap_or_default();
    assert_eq!(starts, 1, "recorded once");
    let created: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM domain_events WHERE event_type = 'organization.created' AND aggregate_id = $1::uuid",
    )
    .bind(&org)
    .fetch_one(&app.db)
    .await
    .unwrap_or_default();
    assert_eq!(created, 1, "one workflow ran, once");
}

#[tokio::test]
async fn an_idempotency_key_belongs_to_its_caller() {
    // Arrange: two callers who happen to pick the same key.
    let app = TestApp::spawn_with_worker(&[]).await;
    let alice = app
        .token_for("alice@example.com", None, &["organization.create_root"])
        .await;
    let bob = app
        .token_for("bob@example.com", None, &["organization.create_root"])
        .await;

    // Act
    let first = app
        .graphql_as(
            &alice,
            START,
            json!({ "input": input(&unique("alice"), "shared-key") }),
        )
        .await;
    let second = app
        .graphql_as(
            &bob,
            START,
            json!({ "input": input(&unique("bob"), "shared-key") }),
        )
        .await;
    let bobs_repeat = app
        .graphql_as(
            &bob,
            START,
            json!({ "input": input(&unique("bob-again"), "shared-key") }),
        )
        .await;

    // Assert
    let org = |body: &Value| body["data"]["startOrganizationBootstrap"]["organizationId"].clone();
    assert_eq!(
        first["data"]["startOrganizationBootstrap"]["status"], "STARTED",
        "{first}"
    );
    assert_eq!(
        second["data"]["startOrganizationBootstrap"]["status"], "STARTED",
        "{second}"
    );
    assert_ne!(
        org(&first),
        org(&second),
        "never someone else's organization"
    );
    assert_eq!(error_code(&bobs_repeat), "BAD_USER_INPUT");
    assert_eq!(
        bobs_repeat["errors"][0]["extensions"]["field"],
        "idempotencyKey"
    );
}

#[tokio::test]
async fn a_foreign_queue_row_naming_another_workflow_type_or_queue_is_refused_and_never_started() {
    // Arrange: another writer of the shared event store queues workflows this service does
    // not start: another type, another task queue, and a workflow ID not its organization's.
    let app = TestApp::spawn_with(&[("DISPATCH_MAX_BACKOFF_MS", "200".into())]).await;
    let rows = [
        ("evilWorkflow", "bootstrap", true),
        ("organizationBootstrapWorkflow", "evil-queue", true),
        ("organizationBootstrapWorkflow", "bootstrap", false),
    ];
    let mut queue_ids = Vec::new();
    for (workflow_type, task_queue, own_id) in rows {
        let org = uuid::Uuid::new_v4();
        let queue_id = uuid::Uuid::new_v4();
        let workflow_id = if own_id {
            format!("org-bootstrap-{org}")
        } else {
            "someone-elses-workflow".to_owned()
        };
        sqlx::query(
            "INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data)
             VALUES ('workflow.queue.pending', 'organization', $1, $2)",
        )
        .bind(org)
        .bind(json!({
            "queueId": queue_id, "eventId": uuid::Uuid::new_v4(), "organizationId": org,
            "workflowId": workflow_id, "workflowType": workflow_type, "taskQueue": task_queue,
            "input": { "organizationId": org, "name": "Evil", "type": "provider", "subdomain": "evil", "adminUsers": [] },
            "idempotencyKey": null, "notBefore": "2020-01-01T00:00:00Z", "at": "2020-01-01T00:00:00Z"
        }))
        .execute(&app.db)
        .await
        .expect("the foreign row is written");
        queue_ids.push(queue_id);
    }

    // Act: the dispatcher takes them.
    let settled = eventually(Duration::from_secs(20), || async {
        let statuses: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT status, last_error FROM workflow_queue_projection WHERE id = ANY($1)",
        )
        .bind(&queue_ids)
        .fetch_all(&app.db)
        .await
        .ok()?;
        (statuses.len() == 3
            && statuses
                .iter()
                .all(|(s, _)| s != "pending" && s != "processing"))
        .then_some(statuses)
    })
    .await;
    let refused = app
        .get_text(&app.ops_url("/metrics"))
        .await
        .lines()
        .find(|l| l.starts_with("bff_outbox_dispatch_failures_total{") && l.contains("NOT_ALLOWED"))
        .map(str::to_owned);
    let started: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM domain_events WHERE event_type = 'organization.bootstrap.workflow_started'",
    )
    .fetch_one(&app.db)
    .await
    .expect("counted");

    // Assert
    let statuses = settled.expect("every foreign row was settled");
    assert!(
        statuses.iter().all(|(status, error)| status == "failed"
            && error.as_deref().is_some_and(|e| e.starts_with("refused"))),
        "{statuses:?}"
    );
    assert!(refused.is_some_and(|line| line.ends_with(" 3")), "counted");
    assert_eq!(started, 0, "nothing was started");
}

#[tokio::test]
async fn a_start_held_by_a_replica_killed_while_temporal_hangs_is_taken_over_after_the_lease_and_starts_once()
 {
    // Arrange: replica A, the real binary, reaches Temporal through a proxy that will hang.
    let temporal = crate::harness::stack().temporal.address();
    let proxy = crate::fixtures::FreezableProxy::start(temporal).await;
    let db = crate::harness::fresh_database().await;
    let secret = crate::harness::random_secret();
    let queue = unique("bootstrap");
    let created = crate::harness::binary(
        &[
            "user",
            "create",
            "--email",
            "root@example.com",
            "--password-stdin",
            "--permission",
            "organization.create_root",
        ],
        &[("DATABASE_URL", &db)],
        "a long enough password\n",
    );
    assert!(created.status.success(), "{created:?}");
    let port = temporal_bff::devstack::free_port().expect("a free port");
    let ops = temporal_bff::devstack::free_port().expect("a free port");
    let mut replica_a = tokio::process::Command::new(env!("CARGO_BIN_EXE_temporal-bff"))
        .arg("serve")
        .env("DATABASE_URL", &db)
        .env("TEMPORAL_ADDRESS", proxy.addr.to_string())
        .env("JWT_SECRET", &secret)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("METRICS_ADDR", format!("127.0.0.1:{ops}"))
        .env("BOOTSTRAP_TASK_QUEUE", &queue)
        .env("LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("replica A starts");
    let http = crate::harness::http_client();
    let a = format!("http://127.0.0.1:{port}");
    let graphql = |token: Option<String>, query: &'static str, variables: Value| {
        let (http, a) = (http.clone(), a.clone());
        async move {
            let mut request = http
                .post(format!("{a}/graphql"))
                .json(&json!({ "query": query, "variables": variables }));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.ok()?;
            response.json::<Value>().await.ok()
        }
    };
    let temporal_up = eventually(Duration::from_secs(30), || async {
        let report: Value = http
            .get(format!("http://127.0.0.1:{ops}/ready"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (report["status"] == "ready").then_some(())
    })
    .await;
    assert!(temporal_up.is_some(), "replica A reaches Temporal first");
    let login = graphql(
        None,
        "mutation { login(email: \"root@example.com\", password: \"a long enough password\") { token } }",
        json!({}),
    )
    .await
    .expect("A answers the login");
    let token = login["data"]["login"]["token"]
        .as_str()
        .expect("A logs in")
        .to_owned();

    // Act: Temporal hangs; A accepts a start, claims it, and dies holding the claim.
    proxy.freeze();
    let started = graphql(
        Some(token.clone()),
        START,
        json!({ "input": input(&unique("lease"), "k-lease") }),
    )
    .await
    .expect("A answers the start");
    let org = started["data"]["startOrganizationBootstrap"]["organizationId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pool = crate::harness::test_pool(&db).await;
    let claim = || async {
        sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT status, claimed_by FROM workflow_queue_projection WHERE organization_id = $1::uuid",
        )
        .bind(&org)
        .fetch_one(&pool)
        .await
        .ok()
    };
    let held = eventually(Duration::from_secs(40), || async {
        let (status, by) = claim().await?;
        (status == "processing").then_some(by)
    })
    .await;
    replica_a.start_kill().expect("SIGKILL reaches A");
    replica_a.wait().await.expect("A is gone");
    let killed_at = std::time::Instant::now();
    let replica_b = TestApp::spawn_with_worker(&[
        ("DATABASE_URL", db.clone()),
        ("JWT_SECRET", secret.clone()),
        ("BOOTSTRAP_TASK_QUEUE", queue.clone()),
    ])
    .await;
    let completed = eventually(Duration::from_secs(100), || async {
        let (status, _) = claim().await?;
        (status == "completed").then_some(killed_at.elapsed())
    })
    .await;

    // Assert
    assert_eq!(
        started["data"]["startOrganizationBootstrap"]["status"], "QUEUED",
        "{started}"
    );
    assert!(
        held.flatten().is_some_and(|by| !by.is_empty()),
        "A held the claim when it died"
    );
    let took = completed.expect("B took the start over and started it");
    assert!(
        took < Duration::from_secs(60 + 20),
        "taken over within the 60 s lease and a dispatcher round: {took:?}"
    );
    let starts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM domain_events
          WHERE event_type = 'organization.bootstrap.workflow_started'",
    )
    .fetch_one(&replica_b.db)
    .await
    .expect("the count answers");
    assert_eq!(starts, 1, "started exactly once");
}
