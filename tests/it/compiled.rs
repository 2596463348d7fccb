//! The compiled tree read (`releases::graphql::compiled`) against the executor, on the real
//! stack: a plain tree read is answered without the executor, and its bytes are exactly the
//! executor's. The executor's answer to the same selection is asked for with
//! `@include(if: true)` on the root field, which the compiled path never takes and which
//! changes nothing in the answer.

use serde_json::{Value, json};

use crate::fixtures::{finished_release, run_to_the_end, spec, start, unique_key};
use crate::harness::{TestApp, error_code};

/// A small deterministic generator (xorshift), so a failing selection can be found again.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// Some of `fields`, in a shuffled order, some under an alias.
    fn pick(&mut self, fields: &[&str]) -> Vec<String> {
        let mut picked = Vec::new();
        for field in fields {
            if self.chance(45) {
                picked.push(if self.chance(15) {
                    format!("a_{field}: {field}")
                } else {
                    (*field).to_owned()
                });
            }
        }
        for i in (1..picked.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            picked.swap(i, j);
        }
        if picked.is_empty() {
            picked.push(fields[0].to_owned());
        }
        picked
    }
}

const COMMON: [&str; 8] = [
    "__typename",
    "id",
    "key",
    "name",
    "status",
    "startedAt",
    "completedAt",
    "message",
];
const PROGRESS: [&str; 7] = [
    "__typename",
    "total",
    "succeeded",
    "failed",
    "inProgress",
    "pending",
    "percent",
];

const STATUSES: [&str; 6] = [
    "FAILED",
    "SUCCEEDED",
    "IN_PROGRESS",
    "PENDING",
    "PAUSED",
    "CANCELLED",
];

/// A random selection of `kind`'s fields, with the lists below it.
fn selection(random: &mut Random, kind: &str) -> String {
    let mut fields = random.pick(&COMMON);
    let own: &[&str] = match kind {
        "Release" => &["source", "asOf"],
        "Wave" => &["duration", "position"],
        "Cluster" => &["duration", "region"],
        "Bundle" | "App" => &["duration", "version"],
        _ => &[],
    };
    fields.extend(random.pick(own).into_iter().filter(|f| f != "id"));
    if kind != "App" && random.chance(50) {
        fields.push(format!(
            "progress {{ {} }}",
            random.pick(&PROGRESS).join(" ")
        ));
    }
    let lists: &[(&str, &str)] = match kind {
        "Release" => &[("waves", "Wave")],
        "Wave" => &[("clusters", "Cluster")],
        "Cluster" => &[("bundle", "Bundle"), ("apps", "App")],
        "Bundle" => &[("apps", "App")],
        _ => &[],
    };
    for (field, child) in lists {
        // The release always lists its waves: without them it is not a tree read.
        if kind == "Release" || random.chance(70) {
            let at = (random.next() % (fields.len() as u64 + 1)) as usize;
            fields.insert(at, format!("{field} {{ {} }}", selection(random, child)));
        }
    }
    // The release's red part (or any other), some of the time: `tree(status:)` with literal
    // statuses, a list of them or one alone, or with the variable `$status` (see `statuses`).
    if kind == "Release" && random.chance(50) {
        let statuses: Vec<&str> = STATUSES.into_iter().filter(|_| random.chance(35)).collect();
        let status = if random.chance(40) {
            "$status".to_owned()
        } else if statuses.len() == 1 && random.chance(50) {
            statuses[0].to_owned()
        } else {
            format!("[{}]", statuses.join(", "))
        };
        let below = selection(random, "Wave");
        fields.push(format!("tree(status: {status}) {{ {below} }}"));
    }
    // Each field once per selection: drop repeats the aliases and lists may have made.
    let mut seen = std::collections::HashSet::new();
    fields.retain(|field| {
        let name = field.split([' ', '{']).next().unwrap_or_default();
        let name = name.trim_end_matches(':').trim_start_matches("a_");
        seen.insert(name.to_owned())
    });
    fields.join(" ")
}

/// The value of `$status` for a selection that uses it: some statuses, a list of them or one
/// alone (which the executor reads as a list of one).
fn statuses(random: &mut Random) -> Value {
    let statuses: Vec<&str> = STATUSES.into_iter().filter(|_| random.chance(35)).collect();
    if statuses.len() == 1 && random.chance(50) {
        json!(statuses[0])
    } else {
        json!(statuses)
    }
}

/// The exact bytes of an answer.
async fn bytes(app: &TestApp, token: &str, query: &str, variables: Value) -> Vec<u8> {
    app.http
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("the request is sent")
        .bytes()
        .await
        .expect("the answer has a body")
        .to_vec()
}

/// The same document, answered by the executor.
fn through_executor(query: &str) -> String {
    query.replacen("release(id: $id)", "release(id: $id) @include(if: true)", 1)
}

#[tokio::test]
async fn a_plain_tree_read_is_answered_without_the_executor_byte_for_byte_as_the_executor_answers_it()
 {
    // Arrange: a finished release with failures, a bigger one that succeeded, a running one.
    let app = TestApp::spawn_with_worker(&[]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let failed = finished_release(&app).await;
    let succeeded = run_to_the_end(
        &app,
        spec(&unique_key("compiled"), 3, 3, 4, json!({ "stepMillis": 1 })),
    )
    .await;
    let running = unique_key("compiled-running");
    start(
        &app.temporal().await,
        &app,
        spec(&running, 2, 2, 3, json!({ "stepMillis": 600_000 })),
    )
    .await;
    let releases = [failed, succeeded, format!("release:{running}")];
    let mut random = Random(0x5eed_cafe_f00d_1234);
    let compiled_before = app.metric("bff_answers_compiled_total").await;

    // Act and assert: 25 random selections of each release, plain and through the executor.
    let mut answered = 0;
    for release in &releases {
        for _ in 0..25 {
            let selected = selection(&mut random, "Release");
            let mut variables = json!({ "id": release });
            let declared = if selected.contains("$status") {
                variables["status"] = statuses(&mut random);
                ", $status: [RolloutStatus!]!"
            } else {
                ""
            };
            let query =
                format!("query Tree($id: ID!{declared}) {{ release(id: $id) {{ {selected} }} }}");
            let mut answers = (Vec::new(), Vec::new());
            // A running release may change between the two reads: ask again until it holds
            // still (a closed one must match the first time).
            for _ in 0..5 {
                answers = (
                    bytes(&app, &token, &query, variables.clone()).await,
                    bytes(&app, &token, &through_executor(&query), variables.clone()).await,
                );
                if answers.0 == answers.1 || !release.contains("running") {
                    break;
                }
            }
            let (compiled, executed) = answers;
            let shown = String::from_utf8_lossy(&compiled);
            if shown.starts_with("{\"data\":{\"release\":{") {
                answered += 1;
                assert_eq!(
                    shown,
                    String::from_utf8_lossy(&executed),
                    "{query} differs from the executor's answer"
                );
            } else {
                // Some selections pass the complexity limit: both refuse them, with the same
                // error (at another column: the directive moved it).
                let messages = |body: &[u8]| {
                    let body: Value = serde_json::from_slice(body).expect("the answer is JSON");
                    (body["data"].clone(), body["errors"][0]["message"].clone())
                };
                assert_eq!(messages(&compiled), messages(&executed), "{query}");
            }
        }
    }

    // Every plain read that was answered took the compiled path (some more than once).
    let compiled = app.metric("bff_answers_compiled_total").await - compiled_before;
    assert!(
        answered >= 40,
        "only {answered} of 75 selections were answered"
    );
    assert!(compiled >= f64::from(answered), "{compiled} of {answered}");
}

#[tokio::test]
async fn the_compiled_path_keeps_the_caller_check_the_size_cap_and_the_executors_errors() {
    // Arrange
    let app = TestApp::spawn_with_worker(&[("MAX_RESPONSE_BYTES", "1024".into())]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let release = finished_release(&app).await;
    let tree = "query($id: ID!) { release(id: $id) { id name waves { id name clusters { id bundle { apps { id name status } } } } } }";
    let compiled_before = app.metric("bff_answers_compiled_total").await;

    // Act
    let anonymous = app.graphql(tree, json!({ "id": release })).await;
    let too_large = bytes(&app, &token, tree, json!({ "id": release })).await;
    let too_large_executed = bytes(
        &app,
        &token,
        &through_executor(tree),
        json!({ "id": release }),
    )
    .await;
    let missing = app
        .graphql_as(&token, tree, json!({ "id": "release:no-such-release" }))
        .await;
    let other_kind = app
        .graphql_as(&token, tree, json!({ "id": "wave:x/wave-1" }))
        .await;

    // Assert
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED", "{anonymous}");
    assert!(anonymous["data"].is_null(), "{anonymous}");
    let too_large: Value = serde_json::from_slice(&too_large).expect("the answer is JSON");
    assert_eq!(error_code(&too_large), "BAD_USER_INPUT", "{too_large}");
    assert!(too_large["data"].is_null(), "{too_large}");
    assert_eq!(
        too_large,
        serde_json::from_slice::<Value>(&too_large_executed).expect("the answer is JSON"),
        "the compiled path refuses an answer over the cap as the executor does"
    );
    assert_eq!(missing, json!({ "data": { "release": null } }));
    assert_eq!(error_code(&other_kind), "BAD_USER_INPUT", "{other_kind}");
    // None of these is a compiled answer: each was refused, or left to the executor.
    assert_eq!(
        app.metric("bff_answers_compiled_total").await - compiled_before,
        0.0
    );
}

/// The answer to `tree` for release `id`, compiled and through the executor, with the SQL
/// statements each took.
async fn both_ways(
    app: &TestApp,
    token: &str,
    tree: &str,
    id: &str,
) -> (Vec<u8>, Vec<u8>, f64, f64) {
    let statements = || app.metric("bff_sql_statements_total");
    let variables = json!({ "id": id });
    let before = statements().await;
    let compiled = bytes(app, token, tree, variables.clone()).await;
    let between = statements().await;
    let executed = bytes(app, token, &through_executor(tree), variables).await;
    let after = statements().await;
    (compiled, executed, between - before, after - between)
}

#[tokio::test]
async fn a_missing_release_and_a_failed_read_get_the_executors_answer_from_one_read() {
    // Arrange: an app on a private, migrated cluster this test can stop.
    let mut postgres = crate::harness::private_postgres();
    let url = postgres.url("postgres");
    crate::harness::migrate(&url).await;
    let app = TestApp::spawn_with(&[("DATABASE_URL", url)]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let tree = "query($id: ID!) { r: release(id: $id) { id waves { id } } }";
    // Act
    let missing = both_ways(&app, &token, tree, "release:no-such-release").await;
    postgres.stop();
    let failed = both_ways(&app, &token, tree, "release:unreadable").await;

    // Assert
    let (compiled, executed, compiled_reads, executed_reads) = missing;
    assert_eq!(
        String::from_utf8_lossy(&compiled),
        String::from_utf8_lossy(&executed)
    );
    assert_eq!(compiled, br#"{"data":{"r":null}}"#.to_vec());
    assert_eq!(
        compiled_reads, executed_reads,
        "no second read for a missing release"
    );
    let (compiled, executed, compiled_reads, executed_reads) = failed;
    assert_eq!(
        String::from_utf8_lossy(&compiled),
        String::from_utf8_lossy(&executed)
    );
    let body: Value = serde_json::from_slice(&compiled).expect("the answer is JSON");
    assert_eq!(error_code(&body), "UNAVAILABLE", "{body}");
    assert!(body["data"].is_null(), "{body}");
    assert_eq!(body["errors"][0]["path"], json!(["r"]));
    assert_eq!(
        compiled_reads, executed_reads,
        "no second read for a failed one"
    );
}
