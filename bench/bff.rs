//! End-to-end benchmarks of temporal-bff on this machine: real Postgres, real Temporal dev
//! server, the reference worker and the app built by `build_app`, driven over HTTP.
//!
//!     cargo bench --bench bff            # all scenarios, prints a Markdown report
//!     cargo bench --bench bff -- auth    # only scenarios whose name contains "auth"
//!
//! Every response is checked for GraphQL `errors`; a scenario with errors says so.

#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use temporal_bff::{
    Config,
    auth::{password::Hasher, token::TokenService, users},
    contracts::{ids::Key, release::ReleaseSpec},
    devstack::{LocalPostgres, LocalTemporal, dev::create_database_if_missing, free_port},
    types::Email,
    worker::{self, WorkerConfig, release::ReleaseWorkflow},
};
use temporalio_client::{WorkflowGetResultOptions, WorkflowSignalOptions, WorkflowStartOptions};
use tokio::sync::Mutex;

struct Stats {
    count: usize,
    errors: usize,
    p50: Duration,
    p99: Duration,
    rps: f64,
}

impl Stats {
    fn row(&self, name: &str) -> String {
        format!(
            "| {name} | {} | {:.0} | {:.1} | {:.1} | {} |",
            self.count,
            self.rps,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.errors
        )
    }
}

fn stats(mut samples: Vec<Duration>, errors: usize, elapsed: Duration) -> Stats {
    samples.sort();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    Stats {
        count: samples.len(),
        errors,
        p50: at(0.50),
        p99: at(0.99),
        rps: samples.len() as f64 / elapsed.as_secs_f64(),
    }
}

/// Runs `op` from `concurrency` tasks for `duration`, as fast as they go.
async fn load<F, Fut>(concurrency: usize, duration: Duration, op: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    load_timed(concurrency, duration, Duration::ZERO, op).await
}

/// Runs `op` from `concurrency` tasks for `duration`, each task starting one request every
/// `pace` (a steady rate, as real traffic is); latency is measured per request only.
async fn load_timed<F, Fut>(concurrency: usize, duration: Duration, pace: Duration, op: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let deadline = started + duration;
    let results = Arc::new(Mutex::new((Vec::new(), 0usize)));
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let op = Arc::clone(&op);
            let results = Arc::clone(&results);
            tokio::spawn(async move {
                let mut local = Vec::new();
                let mut errors = 0;
                let mut i = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match op(task * 1_000_000 + i).await {
                        Ok(()) => local.push(t.elapsed()),
                        Err(e) => {
                            if errors == 0 {
                                eprintln!("error: {e}");
                            }
                            errors += 1;
                        }
                    }
                    i += 1;
                    if let Some(rest) = pace.checked_sub(t.elapsed()) {
                        tokio::time::sleep(rest).await;
                    }
                }
                let mut r = results.lock().await;
                r.0.extend(local);
                r.1 += errors;
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let (samples, errors) = std::mem::take(&mut *results.lock().await);
    stats(samples, errors, elapsed)
}

struct Bench {
    base: String,
    http: reqwest::Client,
    config: Config,
    db: sqlx::PgPool,
    token: String,
}

impl Bench {
    async fn graphql(&self, token: &str, query: &str, variables: Value) -> Result<Value, String> {
        let response = self
            .http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if body.get("errors").is_some_and(|e| !e.is_null()) {
            return Err(body["errors"].to_string());
        }
        Ok(body)
    }

    /// Sends `query` once and returns the server's own time from `Server-Timing`.
    async fn server_time(&self, query: &str, variables: Value) -> Result<Duration, String> {
        let response = self
            .http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let ms: f64 = response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("app;dur="))
            .and_then(|v| v.parse().ok())
            .ok_or("no server-timing")?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if body.get("errors").is_some_and(|e| !e.is_null()) {
            return Err(body["errors"].to_string());
        }
        Ok(Duration::from_secs_f64(ms / 1e3))
    }

    async fn metric(&self, name: &str) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

async fn login(bench: &Bench, email: &str) -> Result<String, String> {
    let body = bench
        .graphql(
            "",
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }",
            json!({ "e": email, "p": "benchmark-password" }),
        )
        .await?;
    body["data"]["login"]["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| body.to_string())
}

async fn auth(bench: Arc<Bench>, out: &mut Vec<String>) {
    out.push("### Auth\n\n| scenario | requests | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|".into());
    let b = Arc::clone(&bench);
    let logins = load(1, Duration::from_secs(5), move |_| {
        let b = Arc::clone(&b);
        async move { login(&b, "bench@example.com").await.map(drop) }
    })
    .await;
    out.push(logins.row("login, 1 at a time"));

    let tokens = TokenService::new(&bench.config);
    let n = 200_000;
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(tokens.verify(&bench.token).is_ok());
    }
    let per_verify = started.elapsed() / n;

    // Other traffic at a steady ~400 req/s (4 clients, one request every 10 ms each).
    let me = "{ me { id email } }";
    let pace = Duration::from_millis(10);
    let b = Arc::clone(&bench);
    let baseline = load_timed(4, Duration::from_secs(8), pace, move |_| {
        let b = Arc::clone(&b);
        async move { b.graphql(&b.token, me, json!({})).await.map(drop) }
    })
    .await;
    out.push(baseline.row("`me` at ~400 req/s, alone"));
    let b = Arc::clone(&bench);
    let background = tokio::spawn(async move {
        load(4, Duration::from_secs(8), move |_| {
            let b = Arc::clone(&b);
            async move { login(&b, "bench@example.com").await.map(drop) }
        })
        .await
    });
    let b = Arc::clone(&bench);
    let contended = load_timed(4, Duration::from_secs(8), pace, move |_| {
        let b = Arc::clone(&b);
        async move { b.graphql(&b.token, me, json!({})).await.map(drop) }
    })
    .await;
    let background = background.await.unwrap();
    out.push(contended.row("`me` at ~400 req/s, during 4 concurrent logins"));
    out.push(background.row("login, 4 concurrent (the background load)"));
    out.push(format!(
        "\nToken verification (HS256 decode + claim checks): {:.2} µs per call ({n} calls).\n\
         p99 of `me` rose from {:.1} ms to {:.1} ms during 4 concurrent logins: {:+.0}% (goal ≤ +20%).\n",
        per_verify.as_secs_f64() * 1e6,
        baseline.p99.as_secs_f64() * 1e3,
        contended.p99.as_secs_f64() * 1e3,
        (contended.p99.as_secs_f64() / baseline.p99.as_secs_f64() - 1.0) * 100.0
    ));
}

/// Runs `wrk` against the tree of `id` with `connections` readers for `seconds`; `None` when
/// wrk is not installed. Latencies come from wrk's own `--latency` report.
async fn wrk_tree(bench: &Bench, id: &str, connections: usize, seconds: u64) -> Option<Stats> {
    let dir = tempfile::tempdir().ok()?;
    let body = json!({ "query": TREE, "variables": { "id": id } }).to_string();
    let script = format!(
        "wrk.method = \"POST\"\nwrk.body = {body:?}\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"Authorization\"] = \"Bearer {}\"\n",
        bench.token
    );
    let path = dir.path().join("tree.lua");
    std::fs::write(&path, script).ok()?;
    let output = tokio::process::Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(&path)
        .arg(format!("{}/graphql", bench.base))
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let millis = |label: &str| {
        let line = text.lines().find(|l| l.trim_start().starts_with(label))?;
        let value = line.split_whitespace().nth(1)?;
        let (number, unit) = value.split_at(value.find(|c: char| c.is_alphabetic())?);
        let number: f64 = number.parse().ok()?;
        Some(Duration::from_secs_f64(match unit {
            "us" => number / 1e6,
            "ms" => number / 1e3,
            "s" => number,
            _ => return None,
        }))
    };
    let requests: usize = text
        .lines()
        .find(|l| l.contains("requests in"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let errors = text
        .lines()
        .find(|l| l.contains("Non-2xx"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0);
    Some(Stats {
        count: requests,
        errors,
        p50: millis("50%")?,
        p99: millis("99%")?,
        rps: requests as f64 / seconds as f64,
    })
}

const TREE: &str = "query($id: ID!) { release(id: $id) { id status source asOf progress { total succeeded percent }
  waves { id status progress { percent } clusters { id region status bundle { id version apps { id name version status startedAt completedAt } } } } } }";

async fn releases(bench: Arc<Bench>, out: &mut Vec<String>) {
    out.push("### Releases\n\n| scenario | requests | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|".into());
    let client = temporal_bff::temporal::connect(&bench.config.temporal.address, "default")
        .await
        .unwrap();
    let key = Key::parse("bench-big").unwrap();
    let spec = ReleaseSpec::synthetic(&key, "Bench 10x10x10", (10, 10, 10), Default::default());
    let started = Instant::now();
    let handle = client
        .start_workflow(
            ReleaseWorkflow::run,
            spec,
            WorkflowStartOptions::new(
                bench.config.temporal.release_task_queue.clone(),
                "release:bench-big",
            )
            .build(),
        )
        .await
        .unwrap();
    handle
        .get_result(WorkflowGetResultOptions::default())
        .await
        .unwrap();
    let rollout = started.elapsed();
    let id = "release:bench-big".to_owned();

    // Raw SQL: the two statements a projection read runs.
    let ids = vec![id.clone()];
    let budget = temporal_bff::metrics::RequestStats::new(Default::default());
    let mut sql = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        temporal_bff::releases::store::rows(&bench.db, &budget, &ids)
            .await
            .unwrap();
        temporal_bff::releases::store::trees(&bench.db, &budget, &ids)
            .await
            .unwrap();
        sql.push(t.elapsed());
    }
    let sql = stats(sql, 0, Duration::from_secs(1));
    let mut server = Vec::new();
    for _ in 0..100 {
        server.push(bench.server_time(TREE, json!({ "id": id })).await.unwrap());
    }
    let server = stats(server, 0, Duration::from_secs(1));
    let tree_load = |concurrency: usize, seconds: u64| {
        let (b, i) = (Arc::clone(&bench), id.clone());
        load(concurrency, Duration::from_secs(seconds), move |_| {
            let (b, i) = (Arc::clone(&b), i.clone());
            async move {
                let body = b.graphql(&b.token, TREE, json!({ "id": i })).await?;
                (body["data"]["release"]["progress"]["total"] == 1000)
                    .then_some(())
                    .ok_or_else(|| "incomplete tree".into())
            }
        })
    };
    let single = tree_load(1, 5).await;
    out.push(single.row("1,211-node tree (projection), 1 at a time"));
    let c16 = tree_load(16, 10).await;
    out.push(c16.row("1,211-node tree (projection), 16 concurrent"));
    // The same load from another process (wrk), with and without someone logging in every
    // 250 ms: logins must not starve behind the reads, and the reads must not suffer much
    // from the hashing.
    if let Some(alone) = wrk_tree(&bench, &id, 16, 10).await {
        let b = Arc::clone(&bench);
        let logins = tokio::spawn(async move {
            load_timed(
                1,
                Duration::from_secs(10),
                Duration::from_millis(250),
                move |_| {
                    let b = Arc::clone(&b);
                    async move { login(&b, "bench@example.com").await.map(drop) }
                },
            )
            .await
        });
        let with_logins = wrk_tree(&bench, &id, 16, 10).await;
        let logins = logins.await.unwrap();
        out.push(alone.row("1,211-node tree, wrk -c16 (another process)"));
        if let Some(with_logins) = with_logins {
            out.push(with_logins.row("1,211-node tree, wrk -c16, while logging in every 250 ms"));
            out.push(logins.row("login every 250 ms, during the wrk -c16 tree reads"));
            out.push(format!(
                "\nUnder the wrk -c16 tree load: login p99 {:.1} ms (goal ≤ 200 ms); the readers' p99 went from {:.1} ms to \
                 {:.1} ms while logins ran, {:+.0}% (goal ≤ +20%).\n",
                logins.p99.as_secs_f64() * 1e3,
                alone.p99.as_secs_f64() * 1e3,
                with_logins.p99.as_secs_f64() * 1e3,
                (with_logins.p99.as_secs_f64() / alone.p99.as_secs_f64() - 1.0) * 100.0
            ));
        }
    } else {
        out.push(
            "\n(wrk is not installed: `apt-get install wrk` for the cross-process tree load.)\n"
                .into(),
        );
    }

    // Live: a release held running by a pause, 200 viewers.
    let key = Key::parse("bench-live").unwrap();
    let spec = ReleaseSpec::synthetic(
        &key,
        "Bench live",
        (4, 5, 5),
        temporal_bff::contracts::release::RolloutOptions {
            step_millis: 500,
            ..Default::default()
        },
    );
    let handle = client
        .start_workflow(
            ReleaseWorkflow::run,
            spec,
            WorkflowStartOptions::new(
                bench.config.temporal.release_task_queue.clone(),
                "release:bench-live",
            )
            .build(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    handle
        .signal(ReleaseWorkflow::pause, (), WorkflowSignalOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = bench.metric("bff_temporal_queries_total").await;
    let seconds = 10;
    let b = Arc::clone(&bench);
    let live = load(200, Duration::from_secs(seconds), move |_| {
        let b = Arc::clone(&b);
        async move {
            let body = b
                .graphql(&b.token, TREE, json!({ "id": "release:bench-live" }))
                .await?;
            (body["data"]["release"]["source"] == "TEMPORAL")
                .then_some(())
                .ok_or_else(|| format!("not live: {}", body["data"]["release"]["source"]))
        }
    })
    .await;
    let queries = bench.metric("bff_temporal_queries_total").await - before;
    out.push(live.row("101-node tree live (TEMPORAL), 200 concurrent viewers"));
    handle
        .signal(
            ReleaseWorkflow::resume,
            (),
            WorkflowSignalOptions::default(),
        )
        .await
        .ok();

    // A page of 20 out of 120 releases.
    for i in 0..120 {
        let rid = format!("release:page-{i:03}");
        sqlx::query("INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data, created_at) VALUES ('release.created','release',gen_random_uuid(), jsonb_build_object('id',$1::text,'key',$2::text,'name',$2::text,'nodes',jsonb_build_array(jsonb_build_object('id',$1::text,'kind','release','key',$2::text,'name',$2::text,'position',0))), now() - interval '1 hour')")
            .bind(&rid).bind(format!("page-{i:03}")).execute(&bench.db).await.unwrap();
        sqlx::query("INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data, created_at) VALUES ('release.status_changed','release',gen_random_uuid(), jsonb_build_object('id',$1::text,'kind','release','status','SUCCEEDED','at',now() - interval '1 hour'), now() - interval '1 hour')")
            .bind(&rid).execute(&bench.db).await.unwrap();
    }
    let b = Arc::clone(&bench);
    let page = load(16, Duration::from_secs(8), move |_| {
        let b = Arc::clone(&b);
        async move {
            let body = b.graphql(&b.token, "{ releases(first: 20) { totalCount edges { cursor node { id key name status progress { percent } } } pageInfo { hasNextPage endCursor } } }", json!({})).await?;
            (body["data"]["releases"]["edges"].as_array().map(Vec::len) == Some(20)).then_some(()).ok_or_else(|| "short page".into())
        }
    })
    .await;
    out.push(
        page.row(
            "`releases(first: 20)` of 122 (the 1,211- and 101-node ones on it), 16 concurrent",
        ),
    );
    selections(&bench, &id)
        .await
        .into_iter()
        .for_each(|l| out.push(l));
    out.push(format!(
        "\nThe 10×10×10 rollout (stepMillis 0) took {:.1} s end to end.\n\
         The 1,211-node tree, one at a time: reading it from the projection takes p50 {:.2} ms of raw SQL (the 2 statements); \
         the server answers it (closed, so from memory after the first read: `Server-Timing`, token check, resolving and \
         serializing ~1,200 objects) in p50 {:.2} ms, {:.1}× the raw SQL alone; seen by the client (plus HTTP and parsing \
         the JSON) p50 {:.2} ms.\n\
         Live reads: {} `getHierarchy` queries in {seconds} s for {} requests = {:.2} per second (the refresh window is 1 s).\n",
        rollout.as_secs_f64(),
        sql.p50.as_secs_f64() * 1e3,
        server.p50.as_secs_f64() * 1e3,
        server.p50.as_secs_f64() / sql.p50.as_secs_f64(),
        single.p50.as_secs_f64() * 1e3,
        queries,
        live.count,
        queries as f64 / seconds as f64,
    ));
}

/// Issue 12's goals: what a read costs for what it asks.
async fn selections(bench: &Bench, big: &str) -> Vec<String> {
    const OWN: &str = "query($id: ID!) { release(id: $id) { id status progress { percent } } }";
    const PAGE: &str =
        "{ releases(first: 20) { edges { node { id status progress { percent } } } } }";
    let mut lines = vec![
        "\n| selection (one at a time, 200 requests) | server p50 ms | server p99 ms | SQL statements per request |\n|---|---|---|---|".to_owned(),
    ];
    for (name, query, variables) in [
        (
            "1,211-node release: `id status progress { percent }`",
            OWN,
            json!({ "id": big }),
        ),
        ("`releases(first: 20)` with `progress`", PAGE, json!({})),
        (
            "1,211-node release, whole tree (closed: kept in memory)",
            TREE,
            json!({ "id": big }),
        ),
    ] {
        bench.server_time(query, variables.clone()).await.unwrap();
        let before = bench.metric("bff_sql_statements_total").await;
        let mut times = Vec::new();
        for _ in 0..200 {
            times.push(bench.server_time(query, variables.clone()).await.unwrap());
        }
        let statements = bench.metric("bff_sql_statements_total").await - before;
        let times = stats(times, 0, Duration::from_secs(1));
        lines.push(format!(
            "| {name} | {:.2} | {:.2} | {:.2} |",
            times.p50.as_secs_f64() * 1e3,
            times.p99.as_secs_f64() * 1e3,
            statements as f64 / 200.0
        ));
    }
    // A dashboard polling the unchanged release by GET with its ETag.
    let url = reqwest::Url::parse_with_params(
        &format!("{}/graphql", bench.base),
        &[
            ("query", OWN),
            ("variables", &json!({ "id": big }).to_string()),
        ],
    )
    .unwrap();
    let first = bench
        .http
        .get(url.clone())
        .bearer_auth(&bench.token)
        .send()
        .await
        .unwrap();
    let etag = first.headers()["etag"].clone();
    let again = bench
        .http
        .get(url)
        .bearer_auth(&bench.token)
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    let status = again.status().as_u16();
    let body = again.bytes().await.unwrap().len();
    lines.push(format!(
        "\nPolling the unchanged release by `GET` with `If-None-Match`: {status}, {body}-byte body.\n"
    ));
    lines
}

async fn bootstrap(bench: Arc<Bench>, out: &mut Vec<String>) {
    out.push("### Bootstrap start\n\n| scenario | requests | req/s | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|".into());
    let start = "mutation($input: StartOrganizationBootstrapInput!) { startOrganizationBootstrap(input: $input) { organizationId workflowId status } }";
    let run = |concurrency: usize, secs: u64| {
        let b = Arc::clone(&bench);
        load(concurrency, Duration::from_secs(secs), move |i| {
            let b = Arc::clone(&b);
            async move {
                let input = json!({ "name": "Bench Org", "subdomain": format!("bench-{}-{i}", uuid::Uuid::new_v4().simple().to_string().get(..8).unwrap_or("x")), "type": "PROVIDER",
                    "adminUsers": [{ "email": "a@bench.example", "firstName": "A", "lastName": "B" }] });
                let body = b
                    .graphql(&b.token, start, json!({ "input": input }))
                    .await?;
                (body["data"]["startOrganizationBootstrap"]["status"] == "STARTED")
                    .then_some(())
                    .ok_or_else(|| format!("not started: {body}"))
            }
        })
    };
    let sequential = run(1, 10).await;
    out.push(sequential.row("startOrganizationBootstrap, 1 at a time"));
    let concurrent = run(8, 10).await;
    out.push(concurrent.row("startOrganizationBootstrap, 8 concurrent"));

    // The floor: one INSERT into domain_events plus one bare StartWorkflowExecution.
    let client = temporal_bff::temporal::TemporalHandle::new(&bench.config);
    let b = Arc::clone(&bench);
    let floor = load(1, Duration::from_secs(10), move |_| {
        let (b, client) = (Arc::clone(&b), client.clone());
        async move {
            sqlx::query("INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data) VALUES ('bench.floor', 'bench', gen_random_uuid(), '{}')")
                .execute(&b.db).await.map_err(|e| e.to_string())?;
            let id = format!("bench-floor-{}", uuid::Uuid::new_v4());
            client.start_workflow_json("benchFloor", &id, "bench-floor-no-worker", &json!({}), None).await.map(drop).map_err(|e| e.to_string())
        }
    })
    .await;
    out.push(floor.row("floor: 1 INSERT + 1 bare StartWorkflowExecution, 1 at a time"));
    out.push(format!(
        "\nStart p50 is {:.2}× the floor (goal ≤ 1.3×) and {:.0}× faster than the old service's ~150 ms (goal ≥ 10×).\n",
        sequential.p50.as_secs_f64() / floor.p50.as_secs_f64(),
        0.150 / sequential.p50.as_secs_f64()
    ));
}

fn main() {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::Builder::new()
            .prefix("bff-bench-")
            .tempdir()
            .unwrap();
        let mut postgres =
            LocalPostgres::start(&dir.path().join("pg"), free_port().unwrap()).unwrap();
        let mut temporal =
            LocalTemporal::start(&dir.path().join("temporal"), free_port().unwrap()).unwrap();
        create_database_if_missing(&postgres.url("postgres"), "bench")
            .await
            .unwrap();
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let env = std::collections::HashMap::from([
            ("DATABASE_URL", postgres.url("bench")),
            ("TEMPORAL_ADDRESS", temporal.address()),
            ("JWT_SECRET", secret),
            ("LOG_LEVEL", "error".to_owned()),
            ("LOGIN_MAX_FAILURES", "1000".to_owned()),
        ]);
        let config = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        let db = temporal_bff::db::connect(&config.db).await.unwrap();
        temporal_bff::db::migrate(&db, &Default::default())
            .await
            .unwrap();
        let worker = worker::spawn(config.clone(), WorkerConfig::default());
        // The app starts bootstraps on a queue no worker serves, so the start path is measured
        // without this same machine also running the workflows it starts (as the floor is).
        let mut app_env = env.clone();
        app_env.insert("BOOTSTRAP_TASK_QUEUE", "bench-unserved".to_owned());
        let app_config = Config::from_lookup(|k| app_env.get(k).cloned()).unwrap();
        users::create(
            &db,
            &Hasher::new(),
            users::NewUser {
                email: Email::parse("bench@example.com").unwrap(),
                password: "benchmark-password".to_owned().into(),
                org_id: None,
                role: None,
                permissions: vec![
                    "organization.create_root".into(),
                    "organization.view_all".into(),
                ],
            },
        )
        .await
        .unwrap();
        let app = temporal_bff::build_app(app_config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(temporal_bff::run_server(
            listener,
            None,
            app,
            std::future::pending(),
        ));
        let mut bench = Bench {
            base,
            http: reqwest::Client::new(),
            config,
            db,
            token: String::new(),
        };
        bench.token = login(&bench, "bench@example.com").await.unwrap();
        let bench = Arc::new(bench);

        let mut out = vec![format!(
            "Run on {} ({} cores), release build.\n",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            std::thread::available_parallelism().map_or(0, usize::from)
        )];
        if "auth".contains(&filter) || filter.is_empty() {
            auth(Arc::clone(&bench), &mut out).await;
        }
        if "releases".contains(&filter) || filter.is_empty() {
            releases(Arc::clone(&bench), &mut out).await;
        }
        if "bootstrap".contains(&filter) || filter.is_empty() {
            bootstrap(Arc::clone(&bench), &mut out).await;
        }
        println!("{}", out.join("\n"));
        drop(worker);
        temporal.stop();
        postgres.stop();
    });
}
