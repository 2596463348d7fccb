//! The release hierarchy over GraphQL: paging, filters, every kind through `node` / `entity`,
//! live versus projection reads, and the cost bounds.

use std::time::Duration;

use serde_json::{Value, json};
use temporal_bff::devstack::{LocalTemporal, free_port};
use temporalio_client::{WorkflowGetResultOptions, WorkflowSignalOptions};

use crate::fixtures::seed_closed_release;
use crate::{
    fixtures::{spec, start, unique_key},
    harness::{TestApp, error_code, eventually, scratch_dir, watchdog},
};

const TREE: &str = r#"
fragment Times on Release { startedAt completedAt }
query($id: ID!) {
  release(id: $id) {
    id key name status source asOf ...Times
    progress { total succeeded failed inProgress pending percent }
    waves { id position status progress { total succeeded }
      clusters { id region status progress { total succeeded }
        bundle { id version status progress { total succeeded }
          apps { id name version status message startedAt completedAt } } } }
  }
}"#;

fn ids(page: &Value) -> Vec<String> {
    page["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["node"]["key"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn releases_page_forwards_and_backwards_without_duplicates_and_count_them_all() {
    // Arrange: 25 releases, r-00 oldest … r-24 newest.
    let app = TestApp::spawn().await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    for i in 0..25 {
        seed_closed_release(
            &app,
            &format!("r-{i:02}"),
            &format!("Release {i}"),
            i,
            "SUCCEEDED",
        )
        .await;
    }
    let page = |args: Value| {
        let app = &app;
        let token = token.clone();
        async move {
            let body = app
                .graphql_as(
                    &token,
                    "query($first: Int, $after: String, $last: Int, $before: String) {
                       releases(first: $first, after: $after, last: $last, before: $before) {
                         totalCount edges { cursor node { key } }
                         pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }",
                    args,
                )
                .await;
            body["data"]["releases"].clone()
        }
    };

    // Act: forwards in pages of 10, then backwards from the end.
    let mut forward = Vec::new();
    let mut after = Value::Null;
    let mut last_cursor;
    let mut pages = 0;
    loop {
        let p = page(json!({ "first": 10, "after": after })).await;
        forward.extend(ids(&p));
        pages += 1;
        assert_eq!(p["totalCount"], 25);
        last_cursor = p["pageInfo"]["endCursor"].clone();
        if p["pageInfo"]["hasNextPage"] != json!(true) || pages > 5 {
            break;
        }
        after = p["pageInfo"]["endCursor"].clone();
    }
    let past_the_end = page(json!({ "first": 10, "after": last_cursor })).await;
    let last_page = page(json!({ "last": 10 })).await;
    let before_that =
        page(json!({ "last": 10, "before": last_page["pageInfo"]["startCursor"] })).await;

    // Assert
    let expected: Vec<String> = (0..25).rev().map(|i| format!("r-{i:02}")).collect();
    assert_eq!(forward, expected, "newest first, each once");
    assert_eq!(pages, 3);
    assert_eq!(
        ids(&past_the_end),
        Vec::<String>::new(),
        "nothing after the oldest"
    );
    assert_eq!(
        past_the_end["totalCount"], 25,
        "an empty page still counts them all"
    );
    assert_eq!(ids(&last_page), expected[15..]);
    assert_eq!(last_page["pageInfo"]["hasPreviousPage"], true);
    assert_eq!(last_page["pageInfo"]["hasNextPage"], false);
    assert_eq!(ids(&before_that), expected[5..15]);
}

#[tokio::test]
async fn releases_filter_by_status_and_search_and_refuse_bad_arguments() {
    let app = TestApp::spawn().await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    seed_closed_release(&app, "jan", "January", 1, "SUCCEEDED").await;
    seed_closed_release(&app, "feb", "February hotfix", 2, "FAILED").await;
    seed_closed_release(&app, "mar", "March hotfix", 3, "SUCCEEDED").await;
    let query = "query($f: ReleaseFilter, $first: Int, $after: String) {
        releases(filter: $f, first: $first, after: $after) { totalCount edges { node { key status } } } }";

    let failed = app
        .graphql_as(&token, query, json!({ "f": { "status": ["FAILED"] } }))
        .await;
    let hotfixes = app
        .graphql_as(&token, query, json!({ "f": { "search": "HOTFIX" } }))
        .await;
    let wildcard = app
        .graphql_as(&token, query, json!({ "f": { "search": "%" } }))
        .await;
    let too_many = app
        .graphql_as(&token, query, json!({ "first": 1000 }))
        .await;
    let bad_cursor = app
        .graphql_as(&token, query, json!({ "after": "garbage" }))
        .await;

    assert_eq!(ids(&failed["data"]["releases"]), ["feb"]);
    assert_eq!(ids(&hotfixes["data"]["releases"]), ["mar", "feb"]);
    assert_eq!(hotfixes["data"]["releases"]["totalCount"], 2);
    assert_eq!(
        wildcard["data"]["releases"]["totalCount"], 0,
        "search is literal"
    );
    assert_eq!(error_code(&too_many), "BAD_USER_INPUT");
    assert_eq!(error_code(&bad_cursor), "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_finished_10x10x10_release_is_returned_whole_from_the_projection_with_consistent_rollups()
{
    // Arrange: a real rollout of 1 + 10 + 100 + 100 + 1000 nodes.
    let app = TestApp::spawn_with_worker(&[]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let client = app.temporal().await;
    let key = unique_key("big");
    let handle = start(
        &client,
        &app,
        spec(&key, 10, 10, 10, json!({ "stepMillis": 0 })),
    )
    .await;
    let result = handle.get_result(WorkflowGetResultOptions::default()).await;
    let queries_before = app.metric("bff_temporal_queries_total").await;

    // Act
    let body = app
        .graphql_as(&token, TREE, json!({ "id": format!("release:{key}") }))
        .await;

    // Assert
    assert!(result.is_ok(), "{result:?}");
    let release = &body["data"]["release"];
    assert_eq!(release["source"], "PROJECTION", "{body}");
    assert_eq!(release["status"], "SUCCEEDED");
    assert_eq!(
        release["progress"],
        json!({ "total": 1000, "succeeded": 1000, "failed": 0, "inProgress": 0, "pending": 0, "percent": 100.0 })
    );
    let waves = release["waves"].as_array().cloned().unwrap_or_default();
    assert_eq!(waves.len(), 10);
    let mut nodes = 1;
    for (i, wave) in waves.iter().enumerate() {
        assert_eq!(wave["position"], i + 1);
        assert_eq!(wave["progress"]["total"], 100);
        let clusters = wave["clusters"].as_array().cloned().unwrap_or_default();
        nodes += 1 + clusters.len();
        for cluster in &clusters {
            let apps = cluster["bundle"]["apps"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            nodes += 1 + apps.len();
            assert_eq!(cluster["progress"]["succeeded"], 10);
            assert_eq!(cluster["bundle"]["progress"]["total"], 10);
            assert!(
                apps.iter()
                    .all(|a| a["status"] == "SUCCEEDED" && a["completedAt"].is_string())
            );
        }
    }
    assert_eq!(nodes, 1211);
    assert_eq!(
        app.metric("bff_temporal_queries_total").await,
        queries_before,
        "a closed release costs no Temporal query"
    );
}

#[tokio::test]
async fn node_and_entity_resolve_every_kind_and_tell_malformed_from_missing() {
    let app = TestApp::spawn_with_worker(&[]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let client = app.temporal().await;
    let key = unique_key("kinds");
    let handle = start(&client, &app, spec(&key, 1, 1, 1, json!({}))).await;
    let _ = handle.get_result(WorkflowGetResultOptions::default()).await;
    let path = format!("{key}/wave-1/cluster-1/web-services/app-1");
    let kinds = [
        ("Release", format!("release:{key}")),
        ("Wave", format!("wave:{key}/wave-1")),
        ("Cluster", format!("cluster:{key}/wave-1/cluster-1")),
        (
            "Bundle",
            format!("bundle:{key}/wave-1/cluster-1/web-services"),
        ),
        ("App", format!("app:{path}")),
    ];
    let query = "query($id: ID!) {
        node(id: $id) { __typename id }
        entity(id: $id) { __typename ... on App { version } ... on Cluster { region } } }";

    for (typename, id) in &kinds {
        let body = app.graphql_as(&token, query, json!({ "id": id })).await;
        assert_eq!(body["data"]["node"]["__typename"], *typename, "{body}");
        assert_eq!(body["data"]["node"]["id"], *id);
        assert_eq!(body["data"]["entity"]["__typename"], *typename);
    }
    let missing = app
        .graphql_as(
            &token,
            query,
            json!({ "id": format!("app:{key}/wave-1/cluster-1/web-services/nope") }),
        )
        .await;
    let malformed = app
        .graphql_as(&token, query, json!({ "id": "app:Not Valid" }))
        .await;
    let wrong_kind = app
        .graphql_as(
            &token,
            "query($id: ID!) { release(id: $id) { id } }",
            json!({ "id": format!("wave:{key}/wave-1") }),
        )
        .await;

    assert!(missing["errors"].is_null(), "{missing}");
    assert!(missing["data"]["node"].is_null() && missing["data"]["entity"].is_null());
    assert_eq!(error_code(&malformed), "BAD_USER_INPUT", "{malformed}");
    assert_eq!(error_code(&wrong_kind), "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_running_release_is_live_and_concurrent_readers_share_one_temporal_query() {
    // Arrange: a release held running by a pause.
    let app = TestApp::spawn_with_worker(&[("HIERARCHY_CACHE_MS", "5000".into())]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let client = app.temporal().await;
    let key = unique_key("live");
    let handle = start(
        &client,
        &app,
        spec(&key, 2, 2, 3, json!({ "stepMillis": 300 })),
    )
    .await;
    handle
        .signal(
            temporal_bff::worker::release::ReleaseWorkflow::pause,
            (),
            WorkflowSignalOptions::default(),
        )
        .await
        .expect("the signal reaches the workflow");
    let id = format!("release:{key}");
    eventually(Duration::from_secs(10), || async {
        let status: String =
            sqlx::query_scalar("SELECT status FROM release_projection WHERE id = $1")
                .bind(&id)
                .fetch_one(&app.db)
                .await
                .ok()?;
        (status == "PAUSED").then_some(())
    })
    .await;
    let before = app.metric("bff_temporal_queries_total").await;

    // Act: 50 viewers at once.
    let bodies = futures::future::join_all(
        (0..50).map(|_| app.graphql_as(&token, TREE, json!({ "id": id }))),
    )
    .await;
    let after = app.metric("bff_temporal_queries_total").await;

    // Assert
    for body in &bodies {
        assert_eq!(body["data"]["release"]["source"], "TEMPORAL", "{body}");
        assert_eq!(body["data"]["release"]["status"], "PAUSED");
        assert_eq!(body["data"]["release"]["progress"]["total"], 12);
    }
    assert!(
        after - before <= 2.0,
        "50 readers caused {} getHierarchy calls",
        after - before
    );
}

/// A release left running on a private Temporal server that a test can stop and restart,
/// read live once (`TEMPORAL_QUERY_TIMEOUT_MS=800`, no shared live cache).
struct PrivateRelease {
    temporal: LocalTemporal,
    dir: std::path::PathBuf,
    port: u16,
    app: TestApp,
    token: String,
    id: String,
    /// It was read from Temporal while the server ran.
    was_live: bool,
}

async fn running_on_private_temporal(key: &str, step_millis: u64) -> PrivateRelease {
    let dir = scratch_dir("temporal-bff-t-");
    let port = free_port().unwrap_or(0);
    let temporal = LocalTemporal::start(&dir, port).expect("private temporal");
    watchdog("", Some(temporal.pid()), &dir);
    let app = TestApp::spawn_with_worker(&[
        ("TEMPORAL_ADDRESS", temporal.address()),
        ("TEMPORAL_QUERY_TIMEOUT_MS", "800".into()),
        ("HIERARCHY_CACHE_MS", "0".into()),
    ])
    .await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let client = app.temporal().await;
    let key = unique_key(key);
    let handle = start(
        &client,
        &app,
        spec(&key, 2, 2, 2, json!({ "stepMillis": step_millis })),
    )
    .await;
    let id = format!("release:{key}");
    let was_live = eventually(Duration::from_secs(10), || async {
        let body = app.graphql_as(&token, TREE, json!({ "id": id })).await;
        (body["data"]["release"]["source"] == "TEMPORAL"
            && body["data"]["release"]["progress"]["succeeded"].as_i64() >= Some(1))
        .then_some(())
    })
    .await
    .is_some();
    drop((handle, client));
    PrivateRelease {
        temporal,
        dir,
        port,
        app,
        token,
        id,
        was_live,
    }
}

#[tokio::test]
async fn with_temporal_stopped_a_running_release_is_still_answered_whole_from_the_projection() {
    // Arrange
    let PrivateRelease {
        mut temporal,
        app,
        token,
        id,
        was_live,
        ..
    } = running_on_private_temporal("down", 200).await;

    // Act
    temporal.stop();
    let started = std::time::Instant::now();
    let body = app.graphql_as(&token, TREE, json!({ "id": id })).await;
    let took = started.elapsed();

    // Assert
    assert!(was_live, "it was live while Temporal ran");
    assert!(body["errors"].is_null(), "{body}");
    let release = &body["data"]["release"];
    assert_eq!(release["source"], "PROJECTION");
    assert_eq!(release["progress"]["total"], 8);
    assert_eq!(release["waves"].as_array().map(Vec::len), Some(2));
    assert!(took < Duration::from_millis(2_500), "answered in {took:?}");
}

#[tokio::test]
async fn reads_stop_asking_a_failing_temporal_at_once_and_ask_again_once_it_is_back() {
    // Arrange: slow steps, so the release still runs when Temporal comes back.
    let PrivateRelease {
        mut temporal,
        dir,
        port,
        app,
        token,
        id,
        was_live,
    } = running_on_private_temporal("circuit", 2000).await;

    // Act: Temporal stops; readers keep reading; then it comes back.
    temporal.stop();
    let mut sources = Vec::new();
    for _ in 0..3 {
        let body = app.graphql_as(&token, TREE, json!({ "id": id })).await;
        sources.push(body["data"]["release"]["source"].clone());
    }
    let open = app.metric("bff_temporal_circuit_open").await;
    let asked_before = app.metric("bff_temporal_queries_total").await;
    let mut took = Vec::new();
    for _ in 0..10 {
        let started = std::time::Instant::now();
        let body = app.graphql_as(&token, TREE, json!({ "id": id })).await;
        took.push(started.elapsed());
        sources.push(body["data"]["release"]["source"].clone());
    }
    let asked_after = app.metric("bff_temporal_queries_total").await;
    let temporal = LocalTemporal::start(&dir, port).expect("restart");
    watchdog("", Some(temporal.pid()), &dir);
    let live_again = eventually(Duration::from_secs(30), || async {
        let body = app.graphql_as(&token, TREE, json!({ "id": id })).await;
        (body["data"]["release"]["source"] == "TEMPORAL").then_some(())
    })
    .await;
    let closed = app.metric("bff_temporal_circuit_open").await;

    // Assert
    assert!(was_live, "it was live while Temporal ran");
    assert!(
        sources.iter().all(|s| s == "PROJECTION"),
        "every read during the outage was answered: {sources:?}"
    );
    assert_eq!(open, 1.0, "the failures opened the circuit");
    assert_eq!(
        asked_after, asked_before,
        "no read asked Temporal while the circuit was open"
    );
    assert!(
        took.iter().all(|t| *t < Duration::from_millis(400)),
        "none waited out the 800 ms timeout: {took:?}"
    );
    assert!(
        live_again.is_some(),
        "a probe closed the circuit: reads are live again"
    );
    assert_eq!(closed, 0.0);
}

/// Every node of a list field, as the test reads it (status and ID), in order.
fn listed(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["id"].as_str().unwrap_or_default().to_owned(),
                n["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn child_lists_filter_by_status_and_page_with_first_and_offset_at_every_level() {
    // Arrange: a finished 2×2×2 release whose app-2s failed (so its lists hold mixed statuses).
    let (app, token, release) = crate::fixtures::finished_release_for_a_viewer().await;
    let whole = app
        .graphql_as(
            &token,
            "query($id: ID!) { release(id: $id) { waves { id status
               clusters { id status bundle { apps { id status } } } } } }",
            json!({ "id": release }),
        )
        .await;
    let waves = &whole["data"]["release"]["waves"];
    let cluster = &waves[0]["clusters"][0];
    let statuses = |list: &Value| -> Vec<String> {
        let mut seen: Vec<String> = listed(list).into_iter().map(|(_, s)| s).collect();
        seen.sort();
        seen.dedup();
        seen
    };
    assert!(
        statuses(&cluster["bundle"]["apps"]).len() > 1 && statuses(waves).len() > 1,
        "the fixture gives mixed statuses: {whole}"
    );

    // Act: each status on each level, and pages.
    let filtered = |status: String| {
        let (app, token, release) = (&app, token.clone(), release.clone());
        async move {
            app.graphql_as(
                &token,
                "query($id: ID!, $s: [RolloutStatus!]) { release(id: $id) {
                   waves(status: $s) { id status }
                   first: waves(first: 1) { clusters(status: $s) { id status }
                     cluster: clusters(first: 1) { apps(status: $s) { id status }
                       bundle { apps(status: $s) { id status } } } } } }",
                json!({ "id": release, "s": [status] }),
            )
            .await
        }
    };
    let mut answers = Vec::new();
    for status in statuses(&cluster["bundle"]["apps"])
        .into_iter()
        .chain(statuses(waves))
    {
        answers.push((status.clone(), filtered(status).await));
    }
    let paged = app
        .graphql_as(
            &token,
            "query($id: ID!) { release(id: $id) {
               waves(first: 1, offset: 1) { id status clusters(first: 1) { id status }
                 } all: waves(first: 0) { id } past: waves(offset: 5) { id } } }",
            json!({ "id": release }),
        )
        .await;

    // Assert: a filter keeps exactly the matching children, in order, on every level.
    let only = |list: &Value, status: &str| -> Vec<(String, String)> {
        listed(list)
            .into_iter()
            .filter(|(_, s)| s == status)
            .collect()
    };
    for (status, body) in &answers {
        let got = &body["data"]["release"];
        assert_eq!(listed(&got["waves"]), only(waves, status), "{body}");
        assert_eq!(
            listed(&got["first"][0]["clusters"]),
            only(&waves[0]["clusters"], status),
            "{body}"
        );
        let apps = only(&cluster["bundle"]["apps"], status);
        let got_cluster = &got["first"][0]["cluster"][0];
        assert_eq!(
            listed(&got_cluster["bundle"]["apps"]),
            apps,
            "Bundle.apps: {body}"
        );
        assert_eq!(listed(&got_cluster["apps"]), apps, "Cluster.apps: {body}");
    }
    let paged = &paged["data"]["release"];
    assert_eq!(listed(&paged["waves"]).len(), 1, "{paged}");
    assert_eq!(paged["waves"][0]["id"], waves[1]["id"], "offset 1: {paged}");
    assert_eq!(
        paged["waves"][0]["clusters"][0]["id"], waves[1]["clusters"][0]["id"],
        "{paged}"
    );
    assert_eq!(paged["all"], json!([]), "first: 0 lists none");
    assert_eq!(
        paged["past"],
        json!([]),
        "an offset past the end lists none"
    );
}

#[tokio::test]
async fn child_list_arguments_out_of_range_are_refused_by_name_with_no_data() {
    let app = TestApp::spawn().await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    seed_closed_release(&app, "bounds", "Bounds", 1, "SUCCEEDED").await;

    for (arguments, field) in [
        ("first: -1", "first"),
        ("first: 101", "first"),
        ("offset: -1", "offset"),
        ("offset: 100001", "offset"),
    ] {
        let body = app
            .graphql_as(
                &token,
                &format!("{{ release(id: \"release:bounds\") {{ waves({arguments}) {{ id }} }} }}"),
                json!({}),
            )
            .await;

        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{arguments}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["field"], field,
            "{arguments}: {body}"
        );
        assert!(body["data"]["release"].is_null(), "{arguments}: {body}");
    }
}

#[tokio::test]
async fn a_nodes_times_are_the_projections_to_the_microsecond_and_its_duration_is_start_to_end() {
    let (app, token, release) = crate::fixtures::finished_release_for_a_viewer().await;

    let body = app
        .graphql_as(
            &token,
            "query($id: ID!) { release(id: $id) { waves { id startedAt completedAt duration
               clusters { id startedAt completedAt duration bundle { id startedAt completedAt duration
                 apps { id startedAt completedAt duration } } } } } }",
            json!({ "id": release }),
        )
        .await;

    // Every node of the answer, flattened.
    let mut nodes = Vec::new();
    for wave in body["data"]["release"]["waves"]
        .as_array()
        .into_iter()
        .flatten()
    {
        nodes.push(wave.clone());
        for cluster in wave["clusters"].as_array().into_iter().flatten() {
            nodes.push(cluster.clone());
            nodes.push(cluster["bundle"].clone());
            nodes.extend(
                cluster["bundle"]["apps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
    }
    type Time = chrono::DateTime<chrono::Utc>;
    let at = |v: &Value| {
        v.as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.to_utc())
    };
    // The times as the projection holds them, decoded by sqlx itself.
    let stored: std::collections::HashMap<String, (Option<Time>, Option<Time>)> = sqlx::query_as(
        "SELECT id, started_at, completed_at FROM release_entity_projection WHERE release_id = $1",
    )
    .bind(&release)
    .fetch_all(&app.db)
    .await
    .expect("the projection reads")
    .into_iter()
    .map(|(id, started, completed): (String, _, _)| (id, (started, completed)))
    .collect();
    let mut finished = 0;
    for node in &nodes {
        let id = node["id"].as_str().expect("every node has an ID");
        assert_eq!(
            (at(&node["startedAt"]), at(&node["completedAt"])),
            stored[id],
            "{node}"
        );
        match (at(&node["startedAt"]), at(&node["completedAt"])) {
            (Some(start), Some(end)) => {
                finished += 1;
                let expected = (end - start).num_milliseconds() as f64 / 1000.0;
                let got = node["duration"]
                    .as_f64()
                    .expect("a finished node has a duration");
                assert!((got - expected).abs() < 0.001, "{node}");
            }
            (None, _) => assert!(node["duration"].is_null(), "not started: {node}"),
            (Some(_), None) => assert!(node["duration"].is_number(), "{node}"),
        }
    }
    assert!(finished > 0, "{body}");
    assert!(
        nodes.iter().any(|n| n["startedAt"].is_null()),
        "the failed release left nodes that never started: {body}"
    );
}

/// A tree answer as (wave, [(cluster, [app])]) IDs, in order.
type Shape = Vec<(String, Vec<(String, Vec<String>)>)>;

fn shape(waves: &Value, keep: &dyn Fn(&Value) -> bool) -> Shape {
    let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_owned();
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    list(waves)
        .iter()
        .filter_map(|wave| {
            let clusters: Vec<_> = list(&wave["clusters"])
                .iter()
                .filter_map(|cluster| {
                    let apps: Vec<String> = list(&cluster["bundle"]["apps"])
                        .iter()
                        .filter(|app| keep(app))
                        .map(id)
                        .collect();
                    (keep(cluster) || !apps.is_empty()).then(|| (id(cluster), apps))
                })
                .collect();
            (keep(wave) || !clusters.is_empty()).then(|| (id(wave), clusters))
        })
        .collect()
}

#[tokio::test]
async fn a_pruned_tree_holds_exactly_the_paths_that_lead_to_matching_nodes() {
    // Arrange: a finished release whose app-2s failed, read whole.
    let (app, token, release) = crate::fixtures::finished_release_for_a_viewer().await;
    let selection = "id status clusters { id status bundle { apps { id status } } }";
    let whole = app
        .graphql_as(
            &token,
            &format!("query($id: ID!) {{ release(id: $id) {{ waves {{ {selection} }} }} }}"),
            json!({ "id": release }),
        )
        .await;
    let waves = &whole["data"]["release"]["waves"];

    // Act: the tree cut down for each status the release holds, for none, and for two at once.
    let mut cases: Vec<Vec<String>> = Vec::new();
    for wave in waves.as_array().into_iter().flatten() {
        for cluster in wave["clusters"].as_array().into_iter().flatten() {
            for app in cluster["bundle"]["apps"].as_array().into_iter().flatten() {
                let status = vec![app["status"].as_str().unwrap_or_default().to_owned()];
                if !cases.contains(&status) {
                    cases.push(status);
                }
            }
        }
    }
    assert!(cases.len() > 1, "the fixture gives mixed statuses: {whole}");
    cases.push(Vec::new());
    cases.push(cases[..2].concat());
    let mut answers = Vec::new();
    for statuses in &cases {
        let body = app
            .graphql_as(
                &token,
                &format!(
                    "query($id: ID!, $s: [RolloutStatus!]!) {{ release(id: $id) {{ tree(status: $s) {{ {selection} }} }} }}"
                ),
                json!({ "id": release, "s": statuses }),
            )
            .await;
        answers.push(body);
    }

    // Assert: each answer is the whole tree with every branch that leads to no match cut off.
    for (statuses, body) in cases.iter().zip(&answers) {
        let matches = |node: &Value| {
            statuses
                .iter()
                .any(|s| node["status"].as_str() == Some(s.as_str()))
        };
        let expected = shape(waves, &matches);
        let got = shape(&body["data"]["release"]["tree"], &|_| true);
        assert_eq!(got, expected, "{statuses:?}: {body}");
        assert_eq!(statuses.is_empty(), got.is_empty(), "{statuses:?}: {body}");
    }
}

/// A node as the test reads it: ID, key, status and its ancestors' IDs.
type NodeRow = (String, String, String, Vec<String>);

#[tokio::test]
async fn release_nodes_list_every_node_in_tree_order_with_its_path_filtered_and_paged() {
    // Arrange: a finished 2×2×2 release whose app-2s failed, read whole once.
    let (app, token, release) = crate::fixtures::finished_release_for_a_viewer().await;
    let whole = app
        .graphql_as(
            &token,
            "query($id: ID!) { release(id: $id) { id waves { id key status clusters { id key status
               bundle { id key status apps { id key status } } } } } }",
            json!({ "id": release }),
        )
        .await;
    // (id, key, status, [ancestor ids]) of every node below the release, parents first.
    let mut every: Vec<NodeRow> = Vec::new();
    let field = |v: &Value, name: &str| v[name].as_str().unwrap_or_default().to_owned();
    for wave in whole["data"]["release"]["waves"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let up = vec![release.clone()];
        every.push((
            field(wave, "id"),
            field(wave, "key"),
            field(wave, "status"),
            up.clone(),
        ));
        for cluster in wave["clusters"].as_array().into_iter().flatten() {
            let up = [up.clone(), vec![field(wave, "id")]].concat();
            every.push((
                field(cluster, "id"),
                field(cluster, "key"),
                field(cluster, "status"),
                up.clone(),
            ));
            let bundle = &cluster["bundle"];
            let up = [up, vec![field(cluster, "id")]].concat();
            every.push((
                field(bundle, "id"),
                field(bundle, "key"),
                field(bundle, "status"),
                up.clone(),
            ));
            for leaf in bundle["apps"].as_array().into_iter().flatten() {
                let up = [up.clone(), vec![field(bundle, "id")]].concat();
                every.push((
                    field(leaf, "id"),
                    field(leaf, "key"),
                    field(leaf, "status"),
                    up,
                ));
            }
        }
    }
    assert_eq!(every.len(), 2 + 4 + 4 + 8, "{whole}");
    let nodes = |args: Value| {
        let (app, token, release) = (&app, token.clone(), release.clone());
        async move {
            let mut variables = args;
            variables["id"] = json!(release);
            app.graphql_as(
                &token,
                "query($id: ID!, $kind: [NodeKind!], $status: [RolloutStatus!], $search: String,
                       $first: Int, $after: String) {
                   release(id: $id) { nodes(kind: $kind, status: $status, search: $search,
                                            first: $first, after: $after) {
                     totalCount pageInfo { hasNextPage hasPreviousPage endCursor }
                     edges { cursor path { id kind } node {
                       ... on Wave { id status } ... on Cluster { id status }
                       ... on Bundle { id status } ... on App { id key status } } } } } }",
                variables,
            )
            .await
        }
    };
    let listed = |body: &Value| -> Vec<(String, Vec<String>)> {
        body["data"]["release"]["nodes"]["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let path = e["path"].as_array().into_iter().flatten();
                (
                    field(&e["node"], "id"),
                    path.map(|p| field(p, "id")).collect(),
                )
            })
            .collect()
    };

    // Act
    let all = nodes(json!({ "first": 100 })).await;
    let failed_apps = nodes(json!({ "kind": ["APP"], "status": ["FAILED"] })).await;
    let searched = nodes(json!({ "kind": ["APP"], "search": " APP-2 " })).await;
    let mut paged = Vec::new();
    let mut after = Value::Null;
    let mut last_page = Value::Null;
    for _ in 0..10 {
        let page = nodes(json!({ "first": 5, "after": after })).await;
        paged.extend(listed(&page));
        after = page["data"]["release"]["nodes"]["pageInfo"]["endCursor"].clone();
        last_page = page.clone();
        if page["data"]["release"]["nodes"]["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
    }
    let forged = nodes(json!({ "after": "bm9kZXxub3QtYS1ub2Rl" })).await;
    let garbage = nodes(json!({ "after": "%%%" })).await;
    let too_many = nodes(json!({ "first": 101 })).await;

    // Assert
    let expected = |keep: &dyn Fn(&NodeRow) -> bool| {
        every
            .iter()
            .filter(|n| keep(n))
            .map(|(id, _, _, up)| (id.clone(), up.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed(&all),
        expected(&|_| true),
        "tree order, with paths: {all}"
    );
    assert_eq!(all["data"]["release"]["nodes"]["totalCount"], 18, "{all}");
    let app_kind = |n: &NodeRow| n.0.starts_with("app:");
    assert_eq!(
        listed(&failed_apps),
        expected(&|n| app_kind(n) && n.2 == "FAILED"),
        "{failed_apps}"
    );
    assert!(!listed(&failed_apps).is_empty(), "{whole}");
    assert_eq!(
        listed(&searched),
        expected(&|n| app_kind(n) && n.1.contains("app-2")),
        "{searched}"
    );
    assert_eq!(
        failed_apps["data"]["release"]["nodes"]["edges"][0]["path"]
            .as_array()
            .map(|p| p.iter().map(|s| s["kind"].clone()).collect::<Vec<_>>()),
        Some(vec![
            json!(null),
            json!("WAVE"),
            json!("CLUSTER"),
            json!("BUNDLE")
        ]),
        "{failed_apps}"
    );
    assert_eq!(
        paged,
        expected(&|_| true),
        "pages of 5 add up to the whole list, each once"
    );
    assert_eq!(
        last_page["data"]["release"]["nodes"]["pageInfo"]["hasPreviousPage"], true,
        "{last_page}"
    );
    for refused in [&forged, &garbage, &too_many] {
        assert_eq!(error_code(refused), "BAD_USER_INPUT", "{refused}");
        assert!(refused["data"]["release"].is_null(), "{refused}");
    }
}

#[tokio::test]
async fn the_timeline_holds_each_wave_then_its_clusters_with_when_they_ran() {
    let (app, token, release) = crate::fixtures::finished_release_for_a_viewer().await;

    let body = app
        .graphql_as(
            &token,
            "query($id: ID!) { release(id: $id) {
               waves { id name status startedAt completedAt
                 clusters { id name status startedAt completedAt } }
               timeline { id kind name status startedAt completedAt } } }",
            json!({ "id": release }),
        )
        .await;

    let span = |node: &Value, kind: &str| {
        json!({ "id": node["id"], "kind": kind, "name": node["name"], "status": node["status"],
                "startedAt": node["startedAt"], "completedAt": node["completedAt"] })
    };
    let mut expected = Vec::new();
    for wave in body["data"]["release"]["waves"]
        .as_array()
        .into_iter()
        .flatten()
    {
        expected.push(span(wave, "WAVE"));
        for cluster in wave["clusters"].as_array().into_iter().flatten() {
            expected.push(span(cluster, "CLUSTER"));
        }
    }
    assert_eq!(expected.len(), 2 + 4, "{body}");
    assert_eq!(
        body["data"]["release"]["timeline"],
        json!(expected),
        "{body}"
    );
    assert!(
        expected.iter().any(|s| s["completedAt"].is_string()),
        "some spans finished: {body}"
    );
}

#[tokio::test]
async fn a_running_release_is_estimated_once_a_wave_finished_and_a_closed_one_is_not() {
    // Arrange: 3 waves of one app, 400 ms each, run by the reference worker.
    let app = TestApp::spawn_with_worker(&[]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let client = app.temporal().await;
    let key = unique_key("estimate");
    let release = format!("release:{key}");
    let handle = start(
        &client,
        &app,
        spec(&key, 3, 1, 1, json!({ "stepMillis": 400 })),
    )
    .await;
    let query = "query($id: ID!) { release(id: $id) { status
        waves { completedAt } estimate { completesAt appsPerMinute basis } } }";
    let read = || async {
        app.graphql_as(&token, query, json!({ "id": release }))
            .await["data"]["release"]
            .clone()
    };

    // Act: read while it runs, once the first wave finished, then after it closed.
    let running = eventually(Duration::from_secs(30), || async {
        let release = read().await;
        (release["status"] == "IN_PROGRESS" && release["waves"][0]["completedAt"].is_string())
            .then_some(release)
    })
    .await
    .expect("the first wave finishes while the release runs");
    let _ = handle.get_result(WorkflowGetResultOptions::default()).await;
    let closed = eventually(Duration::from_secs(10), || async {
        let release = read().await;
        (release["status"] == "SUCCEEDED").then_some(release)
    })
    .await
    .expect("the release closes");

    // Assert
    let at = |v: &Value| {
        v.as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    let estimate = &running["estimate"];
    assert!(
        at(&estimate["completesAt"]) > at(&running["waves"][0]["completedAt"]),
        "{running}"
    );
    assert!(
        estimate["basis"]
            .as_str()
            .is_some_and(|b| b.contains("finished wave")),
        "{running}"
    );
    assert!(
        estimate["appsPerMinute"].as_f64().is_some_and(|r| r > 0.0),
        "{running}"
    );
    assert!(closed["estimate"].is_null(), "{closed}");
}

#[tokio::test]
async fn a_release_too_large_to_list_whole_is_refused_by_name_while_its_pages_and_filters_answer() {
    // Arrange: a release of 20,000 apps under one cluster (20,002 nodes to list whole), written
    // by another team's worker; one app failed.
    let app = TestApp::spawn().await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let release = crate::fixtures::foreign_release(&app, 20_000).await;
    crate::fixtures::set_status(&app, &release, "app-12345", "FAILED").await;
    let whole = "query($id: ID!) { release(id: $id) { id waves { key clusters { key bundle { apps { key status } } } } } }";
    let forced = "query($id: ID!) { release(id: $id) { id waves @include(if: true) { key clusters { key bundle { apps { key status } } } } } }";

    // Act
    let before = app.metric("bff_sql_statements_total").await;
    let refused = app
        .graphql_as(&token, whole, json!({ "id": release }))
        .await;
    let metrics = app.get_text(&app.ops_url("/metrics")).await;
    let between = app.metric("bff_sql_statements_total").await;
    let refused_by_the_executor = app
        .graphql_as(&token, forced, json!({ "id": release }))
        .await;
    let after = app.metric("bff_sql_statements_total").await;
    let paged = app
        .graphql_as(
            &token,
            "query($id: ID!) { release(id: $id) { waves { clusters { apps(first: 100, offset: 19950) { key } } } } }",
            json!({ "id": release }),
        )
        .await;
    let failed = app
        .graphql_as(
            &token,
            "query($id: ID!) { release(id: $id) {
               tree(status: [FAILED]) { key clusters { key apps { key status } } }
               nodes(kind: [APP], status: [FAILED], first: 10) { totalCount edges { node { ... on App { key } } } } } }",
            json!({ "id": release }),
        )
        .await;

    // Assert
    assert_eq!(error_code(&refused), "BAD_USER_INPUT", "{refused}");
    assert!(
        refused["data"]["release"]["waves"].is_null() && !refused.to_string().contains("app-"),
        "no part of the tree: {refused}"
    );
    let message = refused["errors"][0]["message"].as_str().unwrap_or_default();
    for named in [
        "20004 nodes",
        "first:",
        "status:",
        "nodes(kind:",
        "tree(status:)",
    ] {
        assert!(
            message.contains(named),
            "the refusal names {named}: {message}"
        );
    }
    assert_eq!(
        refused_by_the_executor, refused,
        "the compiled read refuses exactly as the executor does"
    );
    assert!(
        !metrics.contains("query=\"releases.trees\""),
        "refused from the waves' roll-ups, before every row is read: {metrics}"
    );
    assert_eq!(
        between - before,
        after - between,
        "the compiled read hands the tree it loaded to the executor: it is not read twice"
    );
    let page = paged["data"]["release"]["waves"][0]["clusters"][0]["apps"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(page.len(), 50, "the last 50 apps: {paged}");
    assert_eq!(page[0]["key"], "app-19951");
    assert_eq!(
        failed["data"]["release"]["tree"],
        json!([{ "key": "w", "clusters": [{ "key": "c", "apps": [{ "key": "app-12345", "status": "FAILED" }] }] }]),
        "{failed}"
    );
    assert_eq!(
        failed["data"]["release"]["nodes"]["totalCount"], 1,
        "{failed}"
    );
}
