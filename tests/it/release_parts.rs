//! Releases read in part (more than `RELEASE_PART_ABOVE_NODES` nodes): each list field reads
//! only the rows it shows, and answers exactly as the whole tree does.

use serde_json::{Value, json};
use temporalio_client::WorkflowGetResultOptions;

use crate::{
    fixtures::{insert_event, spec, start, unique_key},
    harness::{TestApp, error_code, eventually},
};

/// A release of 2 waves × 2 clusters × 2 apps as another team's worker might list it: parents
/// first, but level by level (every wave, then every cluster, …), not depth first, and its
/// waves numbered 10 and 20 (`Wave.position` counts them 1 and 2, as it always did). One app
/// succeeded, one failed with a message, and so did a cluster of the other wave and the
/// release (closed, so no read asks Temporal about it).
async fn listed_level_by_level(app: &TestApp) -> String {
    let key = unique_key("levels");
    let release = format!("release:{key}");
    let mut levels: Vec<Vec<Value>> = vec![
        vec![json!({ "id": release, "kind": "release", "key": key, "name": "Levels" })],
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    ];
    for w in 1..=2 {
        let wave = format!("{key}/w{w}");
        levels[1].push(
            json!({ "id": format!("wave:{wave}"), "kind": "wave", "key": format!("w{w}"),
            "name": format!("Wave {w}"), "parentId": release, "position": w * 10 }),
        );
        for c in 1..=2 {
            let cluster = format!("{wave}/c{c}");
            levels[2].push(
                json!({ "id": format!("cluster:{cluster}"), "kind": "cluster",
                "key": format!("c{c}"), "name": format!("Cluster {c}"), "region": "eu",
                "parentId": format!("wave:{wave}"), "position": c }),
            );
            levels[3].push(json!({ "id": format!("bundle:{cluster}/b"), "kind": "bundle", "key": "b",
                "name": "Bundle", "version": "2", "parentId": format!("cluster:{cluster}"), "position": 1 }));
            for a in 1..=2 {
                levels[4].push(
                    json!({ "id": format!("app:{cluster}/b/a{a}"), "kind": "app",
                    "key": format!("a{a}"), "name": format!("App {a}"), "version": "2",
                    "parentId": format!("bundle:{cluster}/b"), "position": a }),
                );
            }
        }
    }
    let nodes: Vec<Value> = levels.into_iter().flatten().collect();
    insert_event(
        app,
        "release.created",
        json!({ "id": release, "key": key, "name": "Levels", "nodes": nodes,
                "at": "2026-12-01T10:00:00Z" }),
    )
    .await;
    for (kind, id, status, message, at) in [
        (
            "wave",
            format!("wave:{key}/w1"),
            "IN_PROGRESS",
            None,
            "10:00:01",
        ),
        (
            "app",
            format!("app:{key}/w1/c1/b/a1"),
            "SUCCEEDED",
            None,
            "10:00:02",
        ),
        (
            "app",
            format!("app:{key}/w1/c2/b/a2"),
            "FAILED",
            Some("image pull failed"),
            "10:00:03",
        ),
        // A cluster that failed on its own, with no app failed below it: the pruned tree
        // finds its wave by walking up from it, not from the failed apps' roll-ups.
        (
            "cluster",
            format!("cluster:{key}/w2/c1"),
            "FAILED",
            Some("cluster unreachable"),
            "10:00:03",
        ),
        (
            "release",
            release.clone(),
            "FAILED",
            Some("a1 failed"),
            "10:00:04",
        ),
    ] {
        let event = match kind {
            "release" => "release.status_changed".to_owned(),
            kind => format!("release.{kind}.status_changed"),
        };
        insert_event(
            app,
            &event,
            json!({ "id": id, "releaseId": release, "kind": kind, "status": status,
                    "message": message, "at": format!("2026-12-01T{at}Z") }),
        )
        .await;
    }
    release
}

/// A wave or cluster (`$id`) opened down to its apps, compared as the documents are.
const OPENED_BY_ID: &str = "query($id: ID!) { node(id: $id) { id
  ... on Wave { key status progress { total failed } clusters { key status
    bundle { key apps { key status message } } apps(status: [FAILED]) { key } } }
  ... on Cluster { key region status bundle { key version apps { key status } } } } }";

/// Waves and clusters opened one level down: read with their children, no subtree.
const OPENED_ONE_LEVEL: &str = "query($id: ID!) { release(id: $id) {
  nodes(kind: [WAVE, CLUSTER], first: 4) { edges { node {
    ... on Wave { key clusters { key status region progress { total failed } } }
    ... on Cluster { key bundle { key version } } } } } } }";

/// The documents compared, each over one release (`$id`).
const DOCUMENTS: [&str; 16] = [
    "query($id: ID!) { release(id: $id) { id status source asOf progress { total failed percent }
       waves { id key name position status startedAt completedAt duration message
               progress { total succeeded failed inProgress pending percent } } } }",
    "query($id: ID!) { release(id: $id) { a: waves(first: 1, offset: 1) { key position }
       b: waves(status: [IN_PROGRESS, FAILED]) { key status } c: waves(first: 0) { key } } }",
    "query($id: ID!) { release(id: $id) { waves(first: 1) { key clusters { key region status
       progress { total failed } } } } }",
    "query($id: ID!) { release(id: $id) { one: waves(first: 1, offset: 1) { key
       clusters { key progress { failed } bundle { key apps { key status } } apps(status: [FAILED]) { key } } }
       all: waves { key clusters { key apps { key version status } } } } }",
    "query($id: ID!) { release(id: $id) { waves(status: [FAILED]) { key clusters(status: [FAILED]) {
       key bundle { apps(status: [FAILED]) { key message } } } } } }",
    "query($id: ID!) { release(id: $id) { tree(status: [FAILED]) { key position status
       clusters { key status bundle { key version status apps { key status message } }
                  apps { key } } } } }",
    "query($id: ID!) { release(id: $id) { all: tree(status: [PENDING, SUCCEEDED, FAILED]) { key
       clusters(first: 1) { key apps(status: [FAILED]) { key } } } none: tree(status: []) { key } } }",
    "query($id: ID!) { release(id: $id) { progress { failed } red: tree(status: SUCCEEDED) { key
       clusters { key progress { total } bundle { key apps { key } } apps { key status } } } } }",
    "query($id: ID!) { release(id: $id) { timeline { id kind name startedAt completedAt status }
       estimate { completesAt basis } } }",
    "query($id: ID!) { release(id: $id) { nodes(first: 4) { totalCount
       pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
       edges { cursor path { id kind key name } node { __typename
         ... on Wave { id position progress { total failed } }
         ... on Cluster { id region status }
         ... on Bundle { id version }
         ... on App { id key status message version startedAt duration } } } } } }",
    "query($id: ID!) { release(id: $id) { failed: nodes(kind: [APP], status: [FAILED]) { totalCount
       edges { path { key } node { ... on App { id message } } } }
       found: nodes(search: \"A1\") { totalCount edges { node { ... on App { id } } } }
       upper: nodes(kind: [CLUSTER, WAVE], first: 3) { totalCount pageInfo { hasNextPage }
         edges { node { ... on Cluster { id } ... on Wave { id } } } } } }",
    "query($id: ID!) { release(id: $id) { nodes(kind: [WAVE]) { edges { node {
       ... on Wave { key clusters { key apps { key status } } } } } } } }",
    "query($id: ID!) { release(id: $id) { nodes(first: 6) { edges { node { __typename
       ... on Wave { key clusters { key progress { failed } } }
       ... on Cluster { key bundle { key apps { key status } } }
       ... on Bundle { key apps { key } } ... on App { key } } } } } }",
    OPENED_ONE_LEVEL,
    "query($id: ID!) { release(id: $id) { nodes(kind: [CLUSTER], status: [FAILED], first: 1) {
       pageInfo { hasNextPage } edges { path { key } node {
       ... on Cluster { key apps(status: [FAILED]) { key message } bundle { apps { key } } } } } } } }",
    "query($id: ID!) { release(id: $id) { id key name status message startedAt completedAt
       pendingControl progress { total succeeded failed inProgress pending percent } } }",
];

/// Every page of `Release.nodes` with `filter`, following `endCursor`.
async fn every_page(app: &TestApp, token: &str, release: &str, filter: &str) -> Vec<Value> {
    let document = format!(
        "query($id: ID!, $after: String) {{ release(id: $id) {{ nodes({filter} first: 3, after: $after) {{
           totalCount pageInfo {{ hasNextPage hasPreviousPage endCursor }}
           edges {{ cursor path {{ key }} node {{ ... on App {{ id }} ... on Wave {{ id }}
             ... on Cluster {{ id }} ... on Bundle {{ id }} }} }} }} }} }}"
    );
    let mut pages = Vec::new();
    let mut after = Value::Null;
    for _ in 0..20 {
        let page = app
            .graphql_as(token, &document, json!({ "id": release, "after": after }))
            .await;
        let nodes = &page["data"]["release"]["nodes"];
        after = nodes["pageInfo"]["endCursor"].clone();
        let more = nodes["pageInfo"]["hasNextPage"] == true;
        pages.push(page);
        if !more {
            break;
        }
    }
    pages
}

#[tokio::test]
async fn a_release_read_in_part_answers_every_list_field_exactly_as_its_whole_tree_does() {
    // Arrange: a rollout by the reference worker that failed at one app, and a release another
    // team's worker listed level by level; one app reads every release whole, the other (same
    // database, through the pooler) every release in part.
    let whole = TestApp::spawn_with_worker(&[]).await;
    let client = whole.temporal().await;
    let key = unique_key("parts");
    let handle = start(
        &client,
        &whole,
        spec(
            &key,
            3,
            2,
            3,
            json!({ "stepMillis": 1, "failApps": ["app-2"] }),
        ),
    )
    .await;
    let _ = handle.get_result(WorkflowGetResultOptions::default()).await;
    let rolled_out = format!("release:{key}");
    let level_by_level = listed_level_by_level(&whole).await;
    // The app that reads in part goes through PgBouncer in transaction mode, as the platform
    // runs it: its unprepared statements must hold there too.
    let in_part = TestApp::spawn_configured(
        &TestApp::through_pooler(whole.config.database_url().to_owned(), true),
        |config| config.release_part_above_nodes = 0,
    )
    .await;
    let whole_token = whole.token_for("whole@example.com", None, &[]).await;
    let part_token = in_part.token_for("part@example.com", None, &[]).await;
    let closed = eventually(std::time::Duration::from_secs(20), || async {
        let body = whole
            .graphql_as(
                &whole_token,
                "query($id: ID!) { release(id: $id) { status } }",
                json!({ "id": rolled_out }),
            )
            .await;
        (body["data"]["release"]["status"] == "FAILED").then_some(())
    })
    .await;
    assert!(closed.is_some(), "the rollout ends FAILED");

    // Act and assert: `document` over `id` answers the same in part as whole, with no error.
    let same_answer = async |document: &str, id: &str| {
        let expected = whole
            .graphql_as(&whole_token, document, json!({ "id": id }))
            .await;
        let got = in_part
            .graphql_as(&part_token, document, json!({ "id": id }))
            .await;
        // The executor's answer too, where the compiled read answers the plain document.
        let executed = in_part
            .graphql_as(
                &part_token,
                &document.replacen("release(id: $id)", "release(id: $id) @include(if: true)", 1),
                json!({ "id": id }),
            )
            .await;
        assert!(
            expected.get("errors").is_none(),
            "{id}: {document}: {expected}"
        );
        assert_eq!(got, expected, "{id}: {document}");
        assert_eq!(executed, expected, "{id}: {document}, executed");
    };
    for release in [&rolled_out, &level_by_level] {
        for document in DOCUMENTS {
            same_answer(document, release).await;
        }
        // Each wave and cluster opened by ID down to its apps: its subtree, read as a range.
        let opened = whole
            .graphql_as(
                &whole_token,
                "query($id: ID!) { release(id: $id) { waves { id clusters { id } } } }",
                json!({ "id": release }),
            )
            .await;
        let id = |node: &Value| node["id"].as_str().expect("a node has an ID").to_owned();
        let mut ids = Vec::new();
        for wave in opened["data"]["release"]["waves"]
            .as_array()
            .into_iter()
            .flatten()
        {
            ids.push(id(wave));
            ids.extend(wave["clusters"].as_array().into_iter().flatten().map(id));
        }
        assert!(ids.len() > 2, "{opened}");
        for node in &ids {
            same_answer(OPENED_BY_ID, node).await;
        }
        for filter in [
            "",
            "status: [PENDING],",
            "kind: [APP, BUNDLE],",
            "search: \"c1\",",
        ] {
            let expected = every_page(&whole, &whole_token, release, filter).await;
            let got = every_page(&in_part, &part_token, release, filter).await;
            assert_eq!(got, expected, "{release}: nodes({filter})");
        }
    }
    // Nodes opened one level down are read with their children, in the ancestors' statement.
    let below_reads =
        || in_part.metric("bff_sql_duration_seconds_count{query=\"releases.part_below\"}");
    let before = below_reads().await;
    same_answer(OPENED_ONE_LEVEL, &level_by_level).await;
    assert_eq!(below_reads().await, before, "no subtree was read");
    // Across releases: failed clusters opened to their apps.
    same_answer(
        "{ nodes(kind: CLUSTER, status: [FAILED]) { edges { node {
           ... on Cluster { id key bundle { key apps { key status } } apps(status: [FAILED]) { key } } } } } }",
        &rolled_out,
    )
    .await;
    let metrics = in_part.get_text(&in_part.ops_url("/metrics")).await;
    assert!(
        !metrics.contains("query=\"releases.trees\""),
        "no read in part read a whole tree: {metrics}"
    );
    let compiled = in_part.metric("bff_answers_compiled_total").await;
    assert!(
        compiled > 0.0,
        "the pruned trees read in part were compiled"
    );
    let page_reads = in_part
        .metric("bff_sql_duration_seconds_count{query=\"releases.part_page\"}")
        .await;
    assert!(page_reads > 0.0, "the pages were read in part");
    let below_reads = in_part
        .metric("bff_sql_duration_seconds_count{query=\"releases.part_below\"}")
        .await;
    assert!(
        below_reads > 0.0,
        "the nodes opened by ID were read by their subtrees"
    );
    let subtree_reads = in_part
        .metric("bff_sql_duration_seconds_count{query=\"releases.part_subtrees\"}")
        .await;
    assert!(subtree_reads > 0.0, "the waves' subtrees were read in part");
}

#[tokio::test]
async fn a_release_read_in_part_refuses_a_cursor_of_another_release_and_a_nul_search_as_a_whole_one_does()
 {
    // Arrange
    let app = TestApp::spawn_configured(&[], |config| config.release_part_above_nodes = 0).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let one = listed_level_by_level(&app).await;
    let other = listed_level_by_level(&app).await;
    let document = "query($id: ID!, $after: String, $search: String) { release(id: $id) {
        nodes(first: 1, after: $after, search: $search) { edges { cursor } } } }";
    let first = app
        .graphql_as(&token, document, json!({ "id": other }))
        .await;
    let foreign_cursor = first["data"]["release"]["nodes"]["edges"][0]["cursor"].clone();

    // Act
    let foreign = app
        .graphql_as(
            &token,
            document,
            json!({ "id": one, "after": foreign_cursor }),
        )
        .await;
    let nul = app
        .graphql_as(&token, document, json!({ "id": one, "search": "a\u{0}1" }))
        .await;

    // Assert
    assert_eq!(error_code(&foreign), "BAD_USER_INPUT", "{foreign}");
    assert!(
        foreign["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no node of this release")),
        "{foreign}"
    );
    assert_eq!(error_code(&nul), "BAD_USER_INPUT", "{nul}");
}

/// Non-app nodes of release `$1` whose roll-up differs from a count of the apps below them
/// (the release's own row in `release_projection` included).
const WRONG_ROLLUPS: &str = "
    WITH RECURSIVE up (status, node) AS (
        SELECT status, parent_id FROM release_entity_projection
         WHERE release_id = $1 AND kind = 'app'
        UNION ALL
        SELECT up.status, e.parent_id FROM up JOIN release_entity_projection e ON e.id = up.node
         WHERE e.parent_id IS NOT NULL
    ), counted AS (
        SELECT node, count(*) AS total,
               count(*) FILTER (WHERE status = 'SUCCEEDED') AS succeeded,
               count(*) FILTER (WHERE status = 'FAILED') AS failed,
               count(*) FILTER (WHERE status = 'IN_PROGRESS') AS in_progress,
               count(*) FILTER (WHERE status = 'PENDING') AS pending
          FROM up GROUP BY node
    ), kept AS (
        SELECT id, apps_total, apps_succeeded, apps_failed, apps_in_progress, apps_pending
          FROM release_entity_projection WHERE release_id = $1 AND kind <> 'app'
        UNION ALL
        SELECT id, apps_total, apps_succeeded, apps_failed, apps_in_progress, apps_pending
          FROM release_projection WHERE id = $1
    )
    SELECT count(*) FROM kept LEFT JOIN counted c ON c.node = kept.id
     WHERE (kept.apps_total, kept.apps_succeeded, kept.apps_failed, kept.apps_in_progress,
            kept.apps_pending)
           IS DISTINCT FROM (coalesce(c.total, 0), coalesce(c.succeeded, 0),
            coalesce(c.failed, 0), coalesce(c.in_progress, 0), coalesce(c.pending, 0))";

#[tokio::test]
async fn the_huge_demo_release_of_100_000_nodes_keeps_exact_roll_ups_and_a_replay_rebuilds_it_row_for_row()
 {
    // Arrange: `demo --large`'s 100,101-node release, failed in its fourth wave, written into
    // the event store as another team's worker would.
    use temporal_bff::{contracts::ids::Key, worker::demo::huge};
    let app = TestApp::spawn().await;
    let key = Key::parse(&unique_key("huge")).expect("a valid key");
    let release = format!("release:{key}");
    let started = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    let written = huge::write(&app.db, &key, "Huge", huge::SHAPE, started)
        .await
        .expect("the events are written");
    let again = huge::write(&app.db, &key, "Huge", huge::SHAPE, started)
        .await
        .expect("writing again is harmless");
    let token = app.token_for("viewer@example.com", None, &[]).await;

    // Act
    let read = app
        .graphql_as(
            &token,
            "query($id: ID!) { release(id: $id) { status progress { total succeeded failed }
                nodes(status: [FAILED], first: 10) { totalCount edges { node { __typename } } } } }",
            json!({ "id": release }),
        )
        .await;
    // Its red part answers; the statuses of most of its nodes are refused after at most 5,001
    // of their rows (so a short document cannot read them all, once per alias).
    let red = app
        .graphql_as(
            &token,
            "query($id: ID!) { release(id: $id) { tree(status: [FAILED]) { key clusters { key
               apps { key status } } } } }",
            json!({ "id": release }),
        )
        .await;
    let most = app
        .graphql_as(
            &token,
            "query($id: ID!) { release(id: $id) { a: tree(status: [PENDING]) { key }
               b: tree(status: SUCCEEDED) { key } } }",
            json!({ "id": release }),
        )
        .await;
    // A plain one is compiled, refused there, and left to the executor: one read for both.
    const MATCHES: &str = "bff_sql_duration_seconds_count{query=\"releases.part_matches\"}";
    let reads_before = app.metric(MATCHES).await;
    let refused = app
        .graphql_as(
            &token,
            "query($id: ID!) { release(id: $id) { tree(status: [PENDING]) { key } } }",
            json!({ "id": release }),
        )
        .await;
    let refused_reads = app.metric(MATCHES).await - reads_before;
    let wrong: i64 = sqlx::query_scalar(WRONG_ROLLUPS)
        .bind(&release)
        .fetch_one(&app.db)
        .await
        .expect("the recount answers");
    let before = app.projections().await;
    app.replay_events().await;
    let after = app.projections().await;

    // Assert
    assert!(written > 7_000, "a rollout's worth of events: {written}");
    assert_eq!(again, 0, "the same events again add nothing");
    let release_read = &read["data"]["release"];
    assert_eq!(release_read["status"], "FAILED", "{read}");
    assert_eq!(
        release_read["progress"],
        json!({ "total": 99_000, "succeeded": 3 * 990 + 9 * 99 + 12, "failed": 1 }),
        "three waves, nine whole clusters and twelve apps of the fourth succeeded"
    );
    let failed: Vec<&str> = release_read["nodes"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|edge| edge["node"]["__typename"].as_str())
        .collect();
    assert_eq!(
        failed,
        ["Wave", "Cluster", "Bundle", "App"],
        "the failed deploy and the nodes above it, in tree order: {read}"
    );
    let red_waves = red["data"]["release"]["tree"]
        .as_array()
        .expect("the red part answers");
    assert_eq!(red_waves.len(), 1, "one wave has the failed deploy: {red}");
    let red_apps = &red_waves[0]["clusters"][0]["apps"];
    assert_eq!(red_apps.as_array().map(Vec::len), Some(1), "{red}");
    assert_eq!(red_apps[0]["status"], "FAILED", "{red}");
    assert_eq!(error_code(&most), "BAD_USER_INPUT", "{most}");
    assert!(
        most["data"]["release"]["a"].is_null(),
        "nothing of it: {most}"
    );
    let message = most["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("nodes(status:, first:)"), "{most}");
    assert_eq!(error_code(&refused), "BAD_USER_INPUT", "{refused}");
    assert!(refused["data"]["release"].is_null(), "{refused}");
    assert_eq!(refused_reads, 1.0, "the refused tree was read once");
    assert_eq!(
        wrong, 0,
        "every roll-up equals a count of the apps below it"
    );
    assert_eq!(before.len(), after.len(), "a replay rebuilds as many rows");
    let first_difference = before.iter().zip(&after).find(|(b, a)| b != a);
    assert!(
        first_difference.is_none(),
        "a replay rebuilds every row: {first_difference:?}"
    );
}

/// `release.created` of a release of its node alone, inserted on `conn` as another team's worker
/// would.
async fn create_release(conn: &mut sqlx::PgConnection, key: &str) -> Result<(), sqlx::Error> {
    let release = format!("release:{key}");
    sqlx::query(
        "INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data)
         VALUES ('release.created', 'release', gen_random_uuid(), $1)",
    )
    .bind(json!({ "id": release, "key": key, "name": key,
                  "nodes": [{ "id": release, "kind": "release", "key": key, "name": key }] }))
    .execute(conn)
    .await
    .map(drop)
}

/// What the planner's statistics say `release_entity_projection` holds.
async fn reltuples(conn: &mut sqlx::PgConnection) -> f32 {
    sqlx::query_scalar(
        "SELECT reltuples FROM pg_class WHERE oid = 'release_entity_projection'::regclass",
    )
    .fetch_one(conn)
    .await
    .expect("pg_class answers")
}

#[tokio::test]
async fn while_a_release_is_being_created_no_analyze_can_tell_the_planner_its_tables_are_empty() {
    // Arrange: a release created in a transaction still open, as a worker's batch is while its
    // fold runs (15 s for 100,000 nodes), in a database whose release tables hold no committed
    // row yet.
    let app = TestApp::spawn().await;
    let mut fold = app.db.begin().await.expect("a transaction opens");
    create_release(&mut fold, &unique_key("fold"))
        .await
        .expect("the release is folded");

    // Act: autovacuum's ANALYZE skips a table it cannot lock at once (`SKIP_LOCKED`); an
    // operator's waits, here for at most 200 ms.
    let mut other = app.db.acquire().await.expect("a second connection");
    let tuples_before = reltuples(&mut other).await;
    sqlx::query("ANALYZE (SKIP_LOCKED) release_entity_projection, release_projection")
        .execute(&mut *other)
        .await
        .expect("a skipped ANALYZE is no error");
    let tuples_during = reltuples(&mut other).await;
    sqlx::query("SET lock_timeout = '200ms'")
        .execute(&mut *other)
        .await
        .expect("the setting takes");
    let mut waited = Vec::new();
    for table in ["release_entity_projection", "release_projection"] {
        let analyze = sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}")))
            .execute(&mut *other)
            .await;
        waited.push(analyze.err().and_then(|e| {
            e.as_database_error()
                .and_then(|e| e.code())
                .map(|code| code.into_owned())
        }));
    }
    // A writer that will not wait for the lock (its own `lock_timeout`) still creates its release.
    let impatient = unique_key("impatient");
    let impatient_write = create_release(&mut other, &impatient).await;
    fold.commit().await.expect("the fold commits");
    sqlx::query("ANALYZE release_entity_projection")
        .execute(&mut *other)
        .await
        .expect("after the fold, ANALYZE runs");
    let tuples_after = reltuples(&mut other).await;
    let impatient_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM release_projection WHERE id = $1")
            .bind(format!("release:{impatient}"))
            .fetch_one(&mut *other)
            .await
            .expect("the count answers");

    // Assert
    assert_eq!(
        tuples_during, tuples_before,
        "autovacuum's ANALYZE left the statistics as they were, not 'no rows'"
    );
    assert_eq!(
        waited,
        [Some("55P03".to_owned()), Some("55P03".to_owned())],
        "an operator's ANALYZE of either table waits for the fold (lock_not_available)"
    );
    assert!(
        tuples_after >= 1.0,
        "once committed, the release's rows are counted: {tuples_after}"
    );
    assert!(
        impatient_write.is_ok(),
        "a writer's INSERT never fails on the lock: {impatient_write:?}"
    );
    assert_eq!(impatient_rows, 1, "and its release is folded all the same");
}
