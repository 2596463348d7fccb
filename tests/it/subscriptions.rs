//! Live push over `graphql-transport-ws` on the real stack, through the real `graphql-ws`
//! client from npm (`tests/ws-client/client.mjs`, run with Node): what a dashboard sees.
//! Protocol abuse that a well-behaved client never sends is driven with a raw WebSocket
//! (`RawSocket`) instead, since the real client refuses to send it: the hostile exchanges are
//! the corpus `tests/corpus/hostile-ws.jsonl`.

use std::{process::Stdio, time::Duration};

use futures::StreamExt;
use serde_json::{Value, json};
use temporalio_client::WorkflowGetResultOptions;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};
use tokio_tungstenite::tungstenite::{self};

use crate::fixtures::{Heard, RawSocket, foreign_release, set_status, start_bootstrap};
use crate::{
    fixtures::{spec, start, unique_key},
    harness::{TestApp, eventually},
};

/// Longest wait for one event from a client.
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

const TREE: &str = "subscription($id: ID!) { releaseUpdated(id: $id) {
  id status source asOf progress { total succeeded percent }
  waves { key status clusters { key status bundle { apps { key status } } } } } }";

const OWN: &str = "subscription($id: ID!) { releaseUpdated(id: $id) {
  id status asOf progress { succeeded percent } } }";

/// The real `graphql-ws` client, run by Node, printing one JSON event per line.
struct WsClient {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl WsClient {
    /// Opens `clients` connections to `app`, each with every one of `subscriptions`.
    fn start(
        app: &TestApp,
        authorization: Option<String>,
        clients: usize,
        subscriptions: &[(&str, Value)],
    ) -> Self {
        Self::with_plan(json!({
            "url": format!("ws://{}/graphql/ws", app.addr),
            "authorization": authorization,
            "clients": clients,
            "subscriptions": subscriptions
                .iter()
                .map(|(query, variables)| json!({ "query": query, "variables": variables }))
                .collect::<Vec<_>>(),
        }))
    }

    /// One connection that, when it closes, opens again after `retry` on the next of `apps`
    /// (another replica), as a dashboard's client does, and subscribes again.
    fn reconnecting(
        apps: &[&TestApp],
        authorization: Option<String>,
        retry: Duration,
        subscription: (&str, Value),
    ) -> Self {
        let urls: Vec<String> = apps
            .iter()
            .map(|app| format!("ws://{}/graphql/ws", app.addr))
            .collect();
        Self::with_plan(json!({
            "url": urls[0],
            "urls": urls,
            "retryMs": retry.as_millis() as u64,
            "authorization": authorization,
            "subscriptions": [{ "query": subscription.0, "variables": subscription.1 }],
        }))
    }

    fn with_plan(plan: Value) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ws-client/client.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .arg(plan.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot run node (scripts/test installs it)");
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("node's stdout is piped"));
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next event, or `None` when the client is done or nothing came in time.
    async fn next(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(EVENT_TIMEOUT, self.lines.next_line())
            .await
            .ok()?
            .ok()??;
        serde_json::from_str(&line).ok()
    }

    /// Every event up to and including the first that `done` accepts (panics if none comes).
    async fn until(&mut self, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            match self.next().await {
                Some(event) => {
                    let last = done(&event);
                    events.push(event);
                    if last {
                        return events;
                    }
                }
                None => panic!("the client stopped before the expected event; saw {events:?}"),
            }
        }
    }

    /// Every event that arrives until nothing came for `quiet`.
    async fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut events = Vec::new();
        while let Ok(Ok(Some(line))) = tokio::time::timeout(quiet, self.lines.next_line()).await {
            if let Ok(event) = serde_json::from_str(&line) {
                events.push(event);
            }
        }
        events
    }
}

impl Drop for WsClient {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Waits (up to 10 s) until release `id` has its row in the projection.
async fn until_projected(app: &TestApp, id: &str) {
    eventually(Duration::from_secs(10), || async {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT id FROM release_projection WHERE id = $1")
                .bind(id)
                .fetch_optional(&app.db)
                .await
                .ok()?;
        row.map(drop)
    })
    .await;
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

fn release_of(event: &Value) -> &Value {
    &event["payload"]["data"]["releaseUpdated"]
}

fn is_next(event: &Value) -> bool {
    event["type"] == "next"
}

#[tokio::test]
async fn a_subscriber_gets_the_tree_first_then_apps_deploying_and_last_succeeded_at_100_percent() {
    // Arrange: a 1×2×4 release rolling out slowly, visible in the projection.
    let app = TestApp::spawn_with_worker(&[("HIERARCHY_CACHE_MS", "200".into())]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let key = unique_key("live");
    let id = format!("release:{key}");
    let client = app.temporal().await;
    let handle = start(
        &client,
        &app,
        // Long enough that several windows pass between the first app and the last, even on a
        // loaded machine.
        spec(&key, 1, 2, 4, json!({ "stepMillis": 700 })),
    )
    .await;
    eventually(Duration::from_secs(10), || async {
        let body = app
            .graphql_as(
                &token,
                "query($id: ID!) { release(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await;
        body["data"]["release"]["id"].is_string().then_some(())
    })
    .await;

    // Act
    let mut ws = WsClient::start(&app, bearer(&token), 1, &[(TREE, json!({ "id": id }))]);
    // The live tree may say SUCCEEDED a moment before the projection does; the final state,
    // read from the projection once the release closed, always follows.
    let events = ws
        .until(|e| {
            is_next(e)
                && release_of(e)["status"] == "SUCCEEDED"
                && release_of(e)["source"] == "PROJECTION"
        })
        .await;
    let _ = handle.get_result(WorkflowGetResultOptions::default()).await;

    // Assert
    let pushes: Vec<&Value> = events
        .iter()
        .filter(|e| is_next(e))
        .map(release_of)
        .collect();
    let first = pushes[0];
    let last = pushes[pushes.len() - 1];
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["status"], "IN_PROGRESS", "{first}");
    assert_eq!(
        first["waves"][0]["clusters"].as_array().map(Vec::len),
        Some(2),
        "the whole tree first: {first}"
    );
    assert!(
        pushes.iter().any(|p| {
            let percent = p["progress"]["percent"].as_f64().unwrap_or(0.0);
            percent > 0.0 && percent < 100.0
        }),
        "apps deploying were pushed on the way: {pushes:?}"
    );
    assert_eq!(last["progress"]["percent"], 100.0, "{last}");
    let apps = last["waves"][0]["clusters"][0]["bundle"]["apps"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        apps.iter().all(|a| a["status"] == "SUCCEEDED") && apps.len() == 4,
        "{last}"
    );
}

#[tokio::test]
async fn a_running_release_too_large_to_read_whole_is_followed_from_the_projection_never_live() {
    // Arrange: a 1×2×3 release rolling out slowly, on a replica for which every release is too
    // large to read whole (more than 0 nodes).
    let app = TestApp::spawn_with_worker(&[
        ("HIERARCHY_CACHE_MS", "200".into()),
        ("RELEASE_PART_ABOVE_NODES", "0".into()),
    ])
    .await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let key = unique_key("large-live");
    let id = format!("release:{key}");
    let client = app.temporal().await;
    let handle = start(
        &client,
        &app,
        spec(&key, 1, 2, 3, json!({ "stepMillis": 500 })),
    )
    .await;
    until_projected(&app, &id).await;

    // Act
    let mut ws = WsClient::start(
        &app,
        bearer(&token),
        1,
        &[(
            "subscription($id: ID!) { releaseUpdated(id: $id) { source status progress { percent } } }",
            json!({ "id": id }),
        )],
    );
    let events = ws
        .until(|e| is_next(e) && release_of(e)["status"] == "SUCCEEDED")
        .await;
    let _ = handle.get_result(WorkflowGetResultOptions::default()).await;

    // Assert
    let pushes: Vec<&Value> = events
        .iter()
        .filter(|e| is_next(e))
        .map(release_of)
        .collect();
    assert!(
        pushes.iter().any(|p| p["status"] == "IN_PROGRESS"),
        "followed while it ran: {pushes:?}"
    );
    assert!(
        pushes.iter().all(|p| p["source"] == "PROJECTION"),
        "never read live: {pushes:?}"
    );
    assert_eq!(pushes[pushes.len() - 1]["progress"]["percent"], 100.0);
}

#[tokio::test]
async fn two_hundred_subscribers_of_one_release_cost_one_read_per_change_not_per_subscriber() {
    // Arrange: 10 connections × 20 subscriptions, one window of 500 ms.
    let app = TestApp::spawn_with_worker(&[("HIERARCHY_CACHE_MS", "500".into())]).await;
    let token = app.token_for("wall@example.com", None, &[]).await;
    let key = unique_key("many");
    let id = format!("release:{key}");
    let client = app.temporal().await;
    let handle = start(
        &client,
        &app,
        spec(&key, 2, 2, 3, json!({ "stepMillis": 300 })),
    )
    .await;
    until_projected(&app, &id).await;
    let subscriptions: Vec<(&str, Value)> = (0..20).map(|_| (TREE, json!({ "id": id }))).collect();
    let started = std::time::Instant::now();
    let sql_before = app.metric("bff_sql_statements_total").await;
    let temporal_before = app.metric("bff_temporal_queries_total").await;

    // Act: every subscriber follows the rollout to its end.
    let mut ws = WsClient::start(&app, bearer(&token), 10, &subscriptions);
    let mut finished = std::collections::HashSet::new();
    let mut pushes_to_first = Vec::new();
    while finished.len() < 200 {
        let event = ws
            .next()
            .await
            .unwrap_or_else(|| panic!("only {} of 200 subscribers saw the end", finished.len()));
        if !is_next(&event) {
            continue;
        }
        let subscriber = (event["client"].as_u64(), event["sub"].as_u64());
        if subscriber == (Some(0), Some(0)) && !finished.contains(&subscriber) {
            pushes_to_first.push(release_of(&event)["asOf"].clone());
        }
        if release_of(&event)["status"] == "SUCCEEDED" {
            finished.insert(subscriber);
        }
    }
    let elapsed = started.elapsed();
    let sql = app.metric("bff_sql_statements_total").await - sql_before;
    let temporal = app.metric("bff_temporal_queries_total").await - temporal_before;
    let subscriptions_open = app.metric("bff_ws_subscriptions").await;
    let _ = handle.get_result(WorkflowGetResultOptions::default()).await;

    // Assert: reads follow the changes (each at most a row and a tree), not the subscribers.
    let windows = (elapsed.as_millis() / 500) as f64 + 1.0;
    let reads = pushes_to_first.len() as f64;
    eprintln!(
        "200 subscribers over {elapsed:?}: {temporal} getHierarchy, {sql} SQL statements, {reads} pushes each"
    );
    assert!(
        temporal <= windows,
        "{temporal} getHierarchy queries in {windows} windows for 200 subscribers"
    );
    assert!(
        sql <= 2.0 * reads + 5.0,
        "{sql} statements for {reads} shared reads (a row and at most a tree each, plus the login check)"
    );
    assert_eq!(
        subscriptions_open, 200.0,
        "every subscription is counted while it runs"
    );
    assert!(
        pushes_to_first.windows(2).all(|pair| pair[0] != pair[1]),
        "every push is a new read, never the previous tree again: {pushes_to_first:?}"
    );
}

#[tokio::test]
async fn a_change_written_through_one_replica_is_pushed_by_both() {
    // Arrange: two replicas of the service on one database; A runs the worker.
    let a = TestApp::spawn_with_worker(&[("SIM_DNS_DELAY_MS", "1500".into())]).await;
    let b = TestApp::spawn_with(&[
        ("DATABASE_URL", a.config.database_url().to_owned()),
        (
            "JWT_SECRET",
            secrecy::ExposeSecret::expose_secret(&a.config.auth.jwt_secret).to_owned(),
        ),
        (
            "BOOTSTRAP_TASK_QUEUE",
            a.config.temporal.bootstrap_task_queue.clone(),
        ),
        (
            "RELEASE_TASK_QUEUE",
            a.config.temporal.release_task_queue.clone(),
        ),
    ])
    .await;
    let (token, org) = start_bootstrap(&a, "acme").await;
    let query = "subscription($id: ID!) { organizationBootstrapUpdated(id: $id) {
        id bootstrap { state steps { name status } } } }";

    // Act
    let mut on_a = WsClient::start(&a, bearer(&token), 1, &[(query, json!({ "id": org }))]);
    let mut on_b = WsClient::start(&b, bearer(&token), 1, &[(query, json!({ "id": org }))]);
    let completed = |e: &Value| {
        e["payload"]["data"]["organizationBootstrapUpdated"]["bootstrap"]["state"] == "COMPLETED"
    };
    let seen_on_a = on_a.until(completed).await;
    let seen_on_b = on_b.until(completed).await;

    // Assert: each saw it before it completed, then the completion pushed.
    for seen in [&seen_on_a, &seen_on_b] {
        let states: Vec<&Value> = seen
            .iter()
            .filter(|e| is_next(e))
            .map(|e| &e["payload"]["data"]["organizationBootstrapUpdated"]["bootstrap"]["state"])
            .collect();
        assert!(states.len() >= 2, "a first state, then pushes: {states:?}");
        assert_ne!(
            states[0], "COMPLETED",
            "subscribed while it ran: {states:?}"
        );
    }
}

#[tokio::test]
async fn a_client_whose_replica_goes_away_reconnects_to_another_and_misses_no_change() {
    // Arrange: two replicas on one database; the client starts on A.
    let mut a = TestApp::spawn().await;
    let b = TestApp::spawn_with(&[
        ("DATABASE_URL", a.config.database_url().to_owned()),
        (
            "JWT_SECRET",
            secrecy::ExposeSecret::expose_secret(&a.config.auth.jwt_secret).to_owned(),
        ),
    ])
    .await;
    let token = a.token_for("viewer@example.com", None, &[]).await;
    let release = foreign_release(&a, 3).await;
    let mut client = WsClient::reconnecting(
        &[&a, &b],
        bearer(&token),
        Duration::from_millis(1500),
        (OWN, json!({ "id": release })),
    );
    let first = client.until(is_next).await;

    // Act: A goes away; while the client waits to reconnect, an app succeeds.
    a.stop().await;
    set_status(&b, &release, "app-1", "SUCCEEDED").await;
    let after_reconnect = client
        .until(|e| is_next(e) && release_of(e)["progress"]["succeeded"] == 1)
        .await;
    set_status(&b, &release, "app-2", "SUCCEEDED").await;
    let pushed_by_b = client
        .until(|e| is_next(e) && release_of(e)["progress"]["succeeded"] == 2)
        .await;

    // Assert
    assert_eq!(
        release_of(first.last().expect("a first state"))["progress"]["succeeded"],
        0
    );
    let kinds: Vec<&str> = after_reconnect
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(
        kinds.starts_with(&["closed", "connected", "next"]),
        "closed by A, connected to B, and B's first state has the change made in between: {kinds:?}"
    );
    assert!(
        pushed_by_b.iter().all(|e| e["type"] != "closed"),
        "B pushes the next change on the same connection: {pushed_by_b:?}"
    );
}

#[tokio::test]
async fn a_missing_bad_forged_or_expired_token_closes_the_socket_with_4401() {
    // Arrange
    let app = TestApp::spawn().await;
    let soon = {
        let now = chrono::Utc::now().timestamp();
        let claims = json!({ "sub": "someone", "email": "s@example.com", "permissions": [],
            "iat": now, "exp": now + 2, "iss": "temporal-bff", "aud": "temporal-bff" });
        let key = jsonwebtoken::EncodingKey::from_secret(
            secrecy::ExposeSecret::expose_secret(&app.config.auth.jwt_secret).as_bytes(),
        );
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)
            .expect("the token is signed")
    };
    let forged = {
        let claims = json!({ "sub": "someone", "exp": chrono::Utc::now().timestamp() + 600,
            "iss": "temporal-bff", "aud": "temporal-bff" });
        let key =
            jsonwebtoken::EncodingKey::from_secret(b"not the server's secret, but long enough");
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)
            .expect("the token is signed")
    };
    let subscription = [(OWN, json!({ "id": "release:anything" }))];

    // Act
    let mut outcomes = Vec::new();
    for authorization in [
        None,
        Some("Bearer nonsense".to_owned()),
        bearer(&forged),
        bearer(&soon),
    ] {
        let mut ws = WsClient::start(&app, authorization, 1, &subscription);
        let events = ws.until(|e| e["type"] == "closed").await;
        outcomes.push(events);
    }

    // Assert
    for events in &outcomes[..3] {
        let closed = events.last().unwrap_or(&Value::Null);
        assert_eq!(closed["code"], 4401, "{events:?}");
        assert!(
            !events.iter().any(is_next),
            "no data without a token: {events:?}"
        );
        assert!(
            !events.iter().any(|e| e["type"] == "connected"),
            "{events:?}"
        );
    }
    let expired = &outcomes[3];
    assert!(
        expired.iter().any(|e| e["type"] == "connected"),
        "valid until it expires: {expired:?}"
    );
    let closed = expired.last().unwrap_or(&Value::Null);
    assert_eq!(closed["code"], 4401, "{expired:?}");
    assert_eq!(closed["reason"], "Unauthorized: token expired");
}

#[tokio::test]
async fn a_token_for_another_organization_gets_no_updates_of_it() {
    // Arrange: an organization, and a viewer of another one.
    let app = TestApp::spawn_with_worker(&[]).await;
    let (_, org) = start_bootstrap(&app, "mine").await;
    let outsider = app
        .token_for("outsider@example.com", Some(uuid::Uuid::new_v4()), &[])
        .await;

    // Act
    let mut ws = WsClient::start(
        &app,
        bearer(&outsider),
        1,
        &[(
            "subscription($id: ID!) { organizationBootstrapUpdated(id: $id) { id name } }",
            json!({ "id": org }),
        )],
    );
    let events = ws
        .until(|e| e["type"] == "error" || e["type"] == "complete" || is_next(e))
        .await;
    let later = ws.drain(Duration::from_secs(2)).await;

    // Assert: refused like `organization` answers null, and nothing about it ever arrives.
    let refusal = events.last().unwrap_or(&Value::Null);
    assert!(
        refusal.to_string().contains("NOT_FOUND") && refusal["payload"]["data"].is_null(),
        "{events:?}"
    );
    assert!(
        !later
            .iter()
            .chain(&events)
            .any(|e| e.to_string().contains("Mine")),
        "{later:?}"
    );
}

#[tokio::test]
async fn after_the_listen_connection_is_killed_pushes_resume_and_the_missed_change_arrives() {
    // Arrange: a release another worker writes, followed by a subscriber.
    let app = TestApp::spawn_with(&[("HIERARCHY_CACHE_MS", "100".into())]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let release = foreign_release(&app, 2).await;
    let mut ws = WsClient::start(&app, bearer(&token), 1, &[(OWN, json!({ "id": release }))]);
    let first = ws.until(is_next).await;

    // Act: kill the listener and change the release before it can reconnect, then once more.
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
          WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_one(&app.db)
    .await
    .expect("the query answers");
    set_status(&app, &release, "app-1", "SUCCEEDED").await;
    let missed = ws
        .until(|e| is_next(e) && release_of(e)["progress"]["succeeded"] == 1)
        .await;
    set_status(&app, &release, "app-2", "SUCCEEDED").await;
    set_status(&app, &release, "release", "SUCCEEDED").await;
    let resumed = ws
        .until(|e| is_next(e) && release_of(e)["status"] == "SUCCEEDED")
        .await;

    // Assert
    assert_eq!(killed, 1, "the replica's one listener was killed");
    assert_eq!(
        release_of(&first[first.len() - 1])["progress"]["succeeded"],
        0
    );
    assert!(
        missed.last().is_some_and(is_next),
        "the change made while deaf was delivered"
    );
    assert_eq!(
        release_of(&resumed[resumed.len() - 1])["progress"]["percent"],
        100.0,
        "pushes resumed after the reconnect"
    );
}

#[tokio::test]
async fn a_list_view_hears_which_release_changed_only_for_its_filter() {
    // Arrange: two foreign releases; the list follows those that failed.
    let app = TestApp::spawn_with(&[("HIERARCHY_CACHE_MS", "100".into())]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let ok = foreign_release(&app, 1).await;
    let bad = foreign_release(&app, 1).await;
    let mut ws = WsClient::start(
        &app,
        bearer(&token),
        1,
        &[(
            "subscription { releasesChanged(filter: { status: [FAILED] }) { at release { id status progress { failed } } } }",
            json!({}),
        )],
    );
    ws.until(|e| e["type"] == "connected").await;
    // The subscription is registered once the server acknowledged it; give it a change to hear.
    eventually(Duration::from_secs(10), || async {
        (app.metric("bff_ws_subscriptions").await == 1.0).then_some(())
    })
    .await;

    // Act
    set_status(&app, &ok, "release", "SUCCEEDED").await;
    set_status(&app, &bad, "app-1", "FAILED").await;
    set_status(&app, &bad, "release", "FAILED").await;
    let events = ws.until(is_next).await;
    let later = ws.drain(Duration::from_secs(1)).await;

    // Assert
    let change = &events[events.len() - 1]["payload"]["data"]["releasesChanged"];
    assert_eq!(change["release"]["id"], bad.as_str(), "{change}");
    assert_eq!(change["release"]["status"], "FAILED");
    assert!(change["at"].is_string());
    assert!(
        !later
            .iter()
            .chain(&events)
            .any(|e| e.to_string().contains(&ok)),
        "a release outside the filter is not pushed"
    );
}

/// The fields a tree-diff client keeps of each kind of node (every one it shows).
const NODE_FIELDS: &str = "
fragment R on Release { id status startedAt completedAt progress { total succeeded failed inProgress pending percent } }
fragment W on Wave { id status startedAt completedAt progress { succeeded failed percent } }
fragment C on Cluster { id status startedAt completedAt progress { succeeded failed percent } }
fragment B on Bundle { id status progress { succeeded percent } }
fragment A on App { id status startedAt completedAt message }";

/// `releaseTreeChanged` with the whole tree of [`NODE_FIELDS`] in its snapshots and diffs.
fn tree_diffs() -> String {
    format!(
        "subscription($id: ID!, $since: Int) {{ releaseTreeChanged(id: $id, since: $since) {{
           revision
           snapshot {{ ...R waves {{ ...W clusters {{ ...C bundle {{ ...B apps {{ ...A }} }} }} }} }}
           changed {{ ...R ...W ...C ...B ...A }} }} }} {NODE_FIELDS}"
    )
}

fn tree_change(event: &Value) -> &Value {
    &event["payload"]["data"]["releaseTreeChanged"]
}

/// Every node of a tree (as `snapshot` or `release` answers it) by ID, with its own fields
/// (its child lists left out): what a client that applies diffs keeps.
fn nodes_by_id(node: &Value, into: &mut std::collections::BTreeMap<String, Value>) {
    let mut own = node.as_object().cloned().unwrap_or_default();
    for children in ["waves", "clusters", "bundle", "apps"] {
        if let Some(below) = own.remove(children) {
            match below {
                Value::Array(list) => list.iter().for_each(|child| nodes_by_id(child, into)),
                child => nodes_by_id(&child, into),
            }
        }
    }
    let id = own["id"].as_str().unwrap_or_default().to_owned();
    into.insert(id, as_floats(Value::Object(own)));
}

/// `value` with every number as a float: Node prints `100.0` as `100`.
fn as_floats(value: Value) -> Value {
    match value {
        Value::Number(n) => n.as_f64().map_or(Value::Null, |f| json!(f)),
        Value::Object(map) => map.into_iter().map(|(k, v)| (k, as_floats(v))).collect(),
        Value::Array(list) => list.into_iter().map(as_floats).collect(),
        other => other,
    }
}

/// Applies one `releaseTreeChanged` message to what a client holds.
fn apply(message: &Value, held: &mut std::collections::BTreeMap<String, Value>) {
    if !message["snapshot"].is_null() {
        held.clear();
        nodes_by_id(&message["snapshot"], held);
    }
    for node in message["changed"].as_array().into_iter().flatten() {
        nodes_by_id(node, held);
    }
}

#[tokio::test]
async fn a_client_applying_every_tree_diff_through_a_rollout_ends_equal_to_a_fresh_read() {
    follow_a_rollout_by_diffs(&[]).await;
}

#[tokio::test]
async fn a_client_applying_the_diffs_of_a_release_too_large_to_read_whole_ends_equal_to_a_fresh_read()
 {
    // Every release is "too large" here: the hub reads it whole once, then only the rows that
    // changed since each read.
    let app = follow_a_rollout_by_diffs(&[("RELEASE_PART_ABOVE_NODES", "0".into())]).await;

    let patches = app
        .metric("bff_sql_duration_seconds_count{query=\"releases.changed_nodes\"}")
        .await;
    assert!(patches > 0.0, "the changes were read as patches");
}

#[tokio::test]
async fn behind_pgbouncer_the_diffs_of_a_release_too_large_to_read_whole_still_end_equal_to_a_fresh_read()
 {
    // The platform's deployment: every statement through a transaction-mode pooler, the
    // listener direct, and every release patched from the rows that changed.
    let mut overrides = TestApp::behind_pooler(true).await;
    overrides.push(("RELEASE_PART_ABOVE_NODES", "0".into()));
    let app = follow_a_rollout_by_diffs(&overrides).await;

    let patches = app
        .metric("bff_sql_duration_seconds_count{query=\"releases.changed_nodes\"}")
        .await;
    assert!(patches > 0.0, "the changes were read as patches");
    assert_eq!(app.metric("bff_db_listener_deaf").await, 0.0);
}

/// A client follows a 2×2×3 rollout from its start with `releaseTreeChanged`, applying each
/// message to what it holds, and ends equal to a fresh read. Returns the app, on `overrides`.
async fn follow_a_rollout_by_diffs(overrides: &[(&str, String)]) -> TestApp {
    // Arrange: a 2×2×3 release rolling out, followed from its start.
    let mut env = vec![("HIERARCHY_CACHE_MS", "200".to_owned())];
    env.extend(overrides.iter().cloned());
    let app = TestApp::spawn_with_worker(&env).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let key = unique_key("diffs");
    let id = format!("release:{key}");
    let client = app.temporal().await;
    let handle = start(
        &client,
        &app,
        spec(&key, 2, 2, 3, json!({ "stepMillis": 300 })),
    )
    .await;
    let query = tree_diffs();
    let mut ws = WsClient::start(&app, bearer(&token), 1, &[(&query, json!({ "id": id }))]);

    // Act: follow the rollout to its end, applying each message.
    let _ = handle.get_result(WorkflowGetResultOptions::default()).await;
    eventually(Duration::from_secs(10), || async {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT status FROM release_projection WHERE id = $1")
                .bind(&id)
                .fetch_optional(&app.db)
                .await
                .ok()?;
        (row?.0 == "SUCCEEDED").then_some(())
    })
    .await;
    let messages: Vec<Value> = ws
        .drain(Duration::from_secs(3))
        .await
        .iter()
        .filter(|e| is_next(e))
        .map(|e| tree_change(e).clone())
        .collect();
    let mut held = std::collections::BTreeMap::new();
    for message in &messages {
        apply(message, &mut held);
    }
    let fresh = app
        .graphql_as(
            &token,
            &format!(
                "query($id: ID!) {{ release(id: $id) {{ ...R waves {{ ...W clusters {{ ...C bundle {{ ...B apps {{ ...A }} }} }} }} }} }} {NODE_FIELDS}"
            ),
            json!({ "id": id }),
        )
        .await;

    // Assert
    let mut expected = std::collections::BTreeMap::new();
    nodes_by_id(&fresh["data"]["release"], &mut expected);
    assert_eq!(expected.len(), 1 + 2 + 2 * 2 * 2 + 2 * 2 * 3, "{fresh}");
    assert_eq!(
        held, expected,
        "the diffs applied to the snapshot are the tree as it is"
    );
    assert!(
        !messages[0]["snapshot"].is_null(),
        "a snapshot first: {}",
        messages[0]
    );
    let diffs: Vec<&Value> = messages
        .iter()
        .filter(|m| m["snapshot"].is_null())
        .collect();
    assert!(
        diffs.len() >= 2,
        "the rollout arrives as diffs: {messages:#?}"
    );
    assert!(
        diffs.iter().all(|d| d["changed"]
            .as_array()
            .is_some_and(|c| !c.is_empty() && c.len() < expected.len())),
        "each diff carries some nodes, never the whole tree: {diffs:#?}"
    );
    let revisions: Vec<i64> = messages
        .iter()
        .filter_map(|m| m["revision"].as_i64())
        .collect();
    assert!(
        revisions.len() == messages.len() && revisions.windows(2).all(|w| w[1] == w[0] + 1),
        "one more per message: {revisions:?}"
    );
    app
}

#[tokio::test]
async fn one_apps_change_is_a_diff_under_a_kilobyte_and_a_client_back_with_its_revision_gets_only_what_it_missed()
 {
    // Arrange: a release another worker writes, followed as tree diffs.
    let app = TestApp::spawn_with(&[("HIERARCHY_CACHE_MS", "100".into())]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let release = foreign_release(&app, 3).await;
    let key = release.trim_start_matches("release:");
    let query = tree_diffs();
    let mut first = WsClient::start(
        &app,
        bearer(&token),
        1,
        &[(&query, json!({ "id": release }))],
    );
    let snapshot = tree_change(first.until(is_next).await.last().expect("a first message")).clone();
    let start = snapshot["revision"].as_i64().expect("a revision");

    // Act: one app succeeds; the client goes away; another succeeds; it comes back, and a
    // client with a revision this replica never gave subscribes too.
    set_status(&app, &release, "app-1", "SUCCEEDED").await;
    let event = first.until(is_next).await.last().cloned().expect("a diff");
    drop(first);
    set_status(&app, &release, "app-2", "SUCCEEDED").await;
    let mut back = WsClient::start(
        &app,
        bearer(&token),
        1,
        &[(&query, json!({ "id": release, "since": start + 1 }))],
    );
    let missed = tree_change(back.until(is_next).await.last().expect("what it missed")).clone();
    let mut stranger = WsClient::start(
        &app,
        bearer(&token),
        1,
        &[(&query, json!({ "id": release, "since": 1 }))],
    );
    let fresh = tree_change(stranger.until(is_next).await.last().expect("a snapshot")).clone();

    // Assert
    assert!(
        snapshot["changed"].as_array().is_some_and(Vec::is_empty),
        "{snapshot}"
    );
    let diff = tree_change(&event);
    let changed: std::collections::BTreeSet<&str> = diff["changed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str())
        .collect();
    let expected: std::collections::BTreeSet<String> = [
        format!("release:{key}"),
        format!("wave:{key}/w"),
        format!("cluster:{key}/w/c"),
        format!("bundle:{key}/w/c/b"),
        format!("app:{key}/w/c/b/app-1"),
    ]
    .into();
    assert_eq!(
        changed,
        expected.iter().map(String::as_str).collect(),
        "the app and the ancestors whose roll-ups moved: {diff}"
    );
    assert_eq!(diff["revision"], start + 1);
    assert!(diff["snapshot"].is_null(), "{diff}");
    let on_the_wire = json!({ "id": "4a9e2a43-6f53-4f36-b3a5-0b1f0b8c2d77", "type": "next",
        "payload": event["payload"] })
    .to_string();
    assert!(
        on_the_wire.len() <= 1024,
        "{} bytes: {on_the_wire}",
        on_the_wire.len()
    );
    assert_eq!(missed["revision"], start + 2, "{missed}");
    assert!(
        missed["snapshot"].is_null(),
        "a diff, not a snapshot: {missed}"
    );
    let again: Vec<&str> = missed["changed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["id"].as_str())
        .collect();
    assert!(
        again.contains(&format!("app:{key}/w/c/b/app-2").as_str())
            && !again.contains(&format!("app:{key}/w/c/b/app-1").as_str()),
        "only what it missed: {missed}"
    );
    assert_eq!(fresh["revision"], start + 2);
    let mut held = std::collections::BTreeMap::new();
    apply(&fresh, &mut held);
    let succeeded = held
        .values()
        .filter(|n| {
            n["id"].as_str().is_some_and(|id| id.starts_with("app:")) && n["status"] == "SUCCEEDED"
        })
        .count();
    assert_eq!(
        succeeded, 2,
        "an unknown revision gets the whole tree: {fresh}"
    );
}

#[tokio::test]
async fn the_schema_offers_the_subscriptions() {
    // Act (GraphiQL running one in a browser: `graphiql.rs`)
    let sdl = temporal_bff::schema::sdl();

    // Assert
    for field in [
        "releaseUpdated(id: ID!): Release!",
        "releasesChanged(filter: ReleaseFilter): ReleaseChange!",
        "releaseTreeChanged(id: ID!, since: Int): ReleaseTreeChange!",
        "organizationBootstrapUpdated(id: ID!): Organization!",
    ] {
        assert!(sdl.contains(field), "{field} missing from the schema");
    }
}

/// One line of `tests/corpus/hostile-ws.jsonl`: on a fresh socket, `connection_init` with a
/// token of kind `auth` (see `hostile::tokens`) if given, then the frames (`send`, with
/// `{token:KIND}` placeholders; `raw` text; a `binary` frame), or one `subscribe` of a document
/// (`subscribe`, `operationName`). The socket must close with `close`, or answer the
/// subscription with an `error` message carrying the code `error`, and stay open.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WsEntry {
    name: String,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    send: Vec<Value>,
    #[serde(default)]
    raw: Option<String>,
    #[serde(default)]
    binary: bool,
    #[serde(default)]
    subscribe: Option<String>,
    #[serde(default)]
    operation_name: Option<String>,
    #[serde(default)]
    close: Option<u16>,
    #[serde(default)]
    error: Option<String>,
}

#[tokio::test]
async fn every_hostile_socket_exchange_gets_its_close_code_or_error_and_writes_nothing() {
    // Arrange
    let app = TestApp::spawn_with(&[("WS_MAX_SUBSCRIPTIONS_PER_CONNECTION", "2".into())]).await;
    let tokens = crate::fixtures::tokens(&app).await;
    let corpus = include_str!("../corpus/hostile-ws.jsonl");
    let entries: Vec<WsEntry> = corpus
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with("//"))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    let before = crate::fixtures::fingerprint(&app).await;

    // Act
    let mut failures = Vec::new();
    for entry in &entries {
        let mut socket = RawSocket::open(&app).await;
        if let Some(kind) = &entry.auth {
            let token = &tokens[kind.as_str()];
            socket
                .send_json(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
                .await;
            if entry.close != Some(4401) {
                assert_eq!(
                    socket.heard().await,
                    Heard::Message(json!({ "type": "connection_ack" })),
                    "{}",
                    entry.name
                );
            }
        }
        for message in &entry.send {
            let mut text = message.to_string();
            for (kind, token) in &tokens {
                text = text.replace(&format!("{{token:{kind}}}"), token);
            }
            socket.send(tungstenite::Message::text(text)).await;
        }
        if let Some(raw) = &entry.raw {
            socket.send(tungstenite::Message::text(raw.clone())).await;
        }
        if entry.binary {
            socket
                .send(tungstenite::Message::binary(vec![0u8, 1, 2]))
                .await;
        }
        if let Some(query) = &entry.subscribe {
            socket
                .send_json(json!({ "id": "s", "type": "subscribe",
                    "payload": { "query": query, "operationName": entry.operation_name } }))
                .await;
        }
        let heard = socket.heard().await;
        let ok = match (&entry.close, &entry.error, &heard) {
            (Some(code), None, Heard::Closed(got)) => code == got,
            (None, Some(code), Heard::Message(message)) => {
                socket.send_json(json!({ "type": "ping" })).await;
                message["type"] == "error"
                    && message["id"] == "s"
                    && message["payload"][0]["extensions"]["code"] == code.as_str()
                    && socket.heard().await == Heard::Message(json!({ "type": "pong" }))
            }
            _ => false,
        };
        if !ok {
            failures.push(format!("{}: {heard:?}", entry.name));
        }
    }
    let after = crate::fixtures::fingerprint(&app).await;

    // Assert
    assert!(entries.len() >= 30, "the corpus is read");
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(before == after, "the hostile exchanges wrote nothing");
}

#[tokio::test]
async fn a_user_may_hold_only_so_many_sockets() {
    // Arrange
    let app = TestApp::spawn_with(&[("WS_MAX_CONNECTIONS_PER_USER", "2".into())]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let mut first = RawSocket::open(&app).await;
    first.init(&token).await;
    let mut second = RawSocket::open(&app).await;
    second.init(&token).await;

    // Act
    let mut third = RawSocket::open(&app).await;
    third
        .send_json(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
        .await;
    let refused = third.heard().await;
    drop(first);
    let room_again = eventually(Duration::from_secs(5), || async {
        let mut again = RawSocket::open(&app).await;
        again
            .send_json(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
            .await;
        (again.heard().await == Heard::Message(json!({ "type": "connection_ack" }))).then_some(again)
    })
    .await;

    let counted = eventually(Duration::from_secs(5), || async {
        (app.metric("bff_ws_sockets").await == 2.0).then_some(())
    })
    .await;

    // Assert
    assert_eq!(refused, Heard::Closed(4429));
    assert!(room_again.is_some(), "a closed socket frees its place");
    assert!(counted.is_some(), "the two open sockets are counted");
}

#[tokio::test]
async fn an_idle_client_is_pinged_and_one_that_stays_silent_is_closed() {
    // Arrange: pings every 200 ms.
    let app = TestApp::spawn_with(&[("WS_PING_INTERVAL_MS", "200".into())]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let mut socket = RawSocket::open(&app).await;
    socket.init(&token).await;

    // Act: read without ever answering.
    let mut pinged = false;
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.0.next()).await {
            Ok(Some(Ok(tungstenite::Message::Text(text)))) => {
                pinged |= text.as_str().contains("\"ping\"");
            }
            Ok(Some(Ok(tungstenite::Message::Close(frame)))) => {
                break frame.map(|f| u16::from(f.code));
            }
            Ok(Some(Ok(_))) => {}
            _ => break None,
        }
    };

    // Assert
    assert!(pinged, "the server pinged");
    assert_eq!(closed, Some(3008), "a silent client is closed");
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001() {
    // Arrange: a subscriber on a replica that is about to stop.
    let app = TestApp::spawn().await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let mut socket = RawSocket::open(&app).await;
    socket.init(&token).await;
    socket
        .send_json(json!({ "id": "s", "type": "subscribe",
            "payload": { "query": "subscription { releasesChanged { at } }" } }))
        .await;

    // Act: the replica shuts down (dropping a test app is its SIGTERM).
    drop(app);
    let heard = socket.heard().await;

    // Assert
    assert_eq!(heard, Heard::Closed(1001));
}
