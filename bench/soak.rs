//! Soak and fault run: 10 minutes of mixed load against the release build while Temporal is
//! stopped and restarted twice and Postgres restarted once.
//!
//!     cargo bench --bench soak            # about 11 minutes; SOAK_SECONDS=120 for a short run
//!
//! Starts Postgres and a Temporal dev server (state in a temp dir, kept across their restarts),
//! the reference worker and `serve` as processes of their own, seeds the demo data, then runs
//! tree readers, list pagers, live viewers (the real `graphql-ws` client), bootstrap starts,
//! logins and a burst of hostile requests every 30 s. Reports every answer's code, p50/p99 per
//! operation and phase, `serve`'s RSS at start, middle and end, and whether every accepted
//! bootstrap completed with exactly one workflow. Not part of `scripts/test`.

#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::{
    collections::{BTreeMap, HashMap},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use temporal_bff::{
    Config,
    devstack::{LocalPostgres, LocalTemporal, dev::create_database_if_missing, free_port},
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

const TREE: &str = "query Tree($id: ID!) { release(id: $id) { id status source progress { percent }
  waves { key status clusters { key status bundle { apps { key status } } } } } }";
const LIST: &str = "query List($after: String) { releases(first: 20, after: $after) {
  totalCount pageInfo { hasNextPage endCursor } edges { node { id status } } } }";
const START: &str = "mutation Start($input: StartOrganizationBootstrapInput!) {
  startOrganizationBootstrap(input: $input) { organizationId workflowId status } }";
const LOGIN: &str = "mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) { token } }";
const LIVE: &str =
    "subscription($id: ID!) { releaseUpdated(id: $id) { id status progress { percent } } }";

/// One answer: which operation, when (seconds into the run), how long, its code.
struct Sample {
    op: &'static str,
    at: f64,
    ms: f64,
    code: String,
    source: Option<String>,
}

#[derive(Clone)]
struct Load {
    http: reqwest::Client,
    url: String,
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
}

impl Load {
    /// Sends one GraphQL request and records its outcome: `OK`, the first error's code, or the
    /// HTTP status (`HTTP 5xx`) / transport failure.
    async fn send(&self, op: &'static str, token: Option<&str>, body: Value) -> Value {
        let at = self.started.elapsed().as_secs_f64();
        let begun = Instant::now();
        let mut request = self.http.post(&self.url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let (code, answer) = match request.send().await {
            Ok(response) if response.status().is_server_error() => {
                (format!("HTTP {}", response.status().as_u16()), Value::Null)
            }
            Ok(response) => {
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                let code = answer["errors"][0]["extensions"]["code"]
                    .as_str()
                    .map_or_else(
                        || {
                            if answer["errors"].is_array() {
                                "NO_CODE".to_owned()
                            } else {
                                "OK".to_owned()
                            }
                        },
                        str::to_owned,
                    );
                (code, answer)
            }
            Err(_) => ("TRANSPORT".to_owned(), Value::Null),
        };
        let source = answer["data"]["release"]["source"]
            .as_str()
            .map(str::to_owned);
        self.samples.lock().unwrap().push(Sample {
            op,
            at,
            ms: begun.elapsed().as_secs_f64() * 1e3,
            code,
            source,
        });
        answer
    }
}

/// RSS of `pid` in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn percentile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() as f64 * q).ceil() as usize).saturating_sub(1)]
}

/// The phases of the run, from the fault schedule (seconds).
fn phase(at: f64, total: f64) -> &'static str {
    let f = at / total;
    match f {
        f if f < 0.1 => "1 before",
        f if f < 0.2 => "2 Temporal down",
        f if f < 0.4 => "3 after Temporal back",
        f if f < 0.42 => "4 Postgres restart",
        f if f < 0.6 => "5 after Postgres back",
        f if f < 0.7 => "6 Temporal down again",
        _ => "7 after Temporal back again",
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(soak());
}

#[allow(clippy::too_many_lines)]
async fn soak() {
    let total: f64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600.0);
    let dir = tempfile::Builder::new()
        .prefix("bff-soak-")
        .tempdir()
        .unwrap();
    let pg_port = free_port().unwrap();
    let temporal_port = free_port().unwrap();
    let mut postgres = LocalPostgres::start(&dir.path().join("pg"), pg_port).unwrap();
    let mut temporal = LocalTemporal::start(&dir.path().join("temporal"), temporal_port).unwrap();
    create_database_if_missing(&postgres.url("postgres"), "soak")
        .await
        .unwrap();
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let port = free_port().unwrap();
    let env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", postgres.url("soak")),
        ("TEMPORAL_ADDRESS", temporal.address()),
        ("JWT_SECRET", secret),
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", port.to_string()),
        ("LOG_LEVEL", "error".to_owned()),
        ("DISPATCH_MAX_BACKOFF_MS", "2000".to_owned()),
        ("RECONCILE_INTERVAL_MS", "10000".to_owned()),
        ("SIM_DNS_DELAY_MS", "200".to_owned()),
        ("SIM_EMAIL_DELAY_MS", "100".to_owned()),
        ("LOGIN_MAX_FAILURES_PER_EMAIL", "100000".to_owned()),
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "100000".to_owned()),
        ("LOGIN_MAX_FAILURES", "1000".to_owned()),
    ];
    let lookup = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let config = Config::from_lookup(lookup).unwrap();
    {
        let db = temporal_bff::db::connect(&config.db).await.unwrap();
        temporal_bff::db::migrate(&db, &Default::default())
            .await
            .unwrap();
    }
    let bin = env!("CARGO_BIN_EXE_temporal-bff");
    let spawn = |what: &str| {
        Command::new(bin)
            .arg(what)
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let _worker = spawn("worker");
    let demo = Command::new(bin)
        .arg("demo")
        .envs(env.iter().cloned())
        .status()
        .await
        .unwrap();
    assert!(demo.success(), "demo seeding failed");
    // serve's error lines (LOG_LEVEL=error), shown after the report.
    let serve_log = dir.path().join("serve.log");
    let server = Command::new(bin)
        .arg("serve")
        .envs(env.iter().cloned())
        .stdout(std::fs::File::create(&serve_log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = server.id().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(35))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..400 {
        if http.get(format!("{base}/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let load = Load {
        http: http.clone(),
        url: format!("{base}/graphql"),
        started: Instant::now(),
        samples: Arc::default(),
    };
    let login = load
        .send("login", None, json!({ "query": LOGIN, "variables": { "email": "admin@example.com", "password": "admin123" } }))
        .await;
    let token = login["data"]["login"]["token"]
        .as_str()
        .expect("demo login")
        .to_owned();
    // The demo's workflows write their releases as they start: wait until some are there.
    let mut releases: Vec<String> = Vec::new();
    for _ in 0..600 {
        let listed = load
            .send("list", Some(&token), json!({ "query": LIST }))
            .await;
        releases = listed["data"]["releases"]["edges"]
            .as_array()
            .map(|edges| {
                edges
                    .iter()
                    .filter_map(|e| e["node"]["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if releases.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(releases.len() >= 3, "the demo releases never appeared");
    load.samples.lock().unwrap().clear();
    let load = Load {
        started: Instant::now(),
        ..load
    };
    let rss_start = rss_mib(pid);
    let deadline = Duration::from_secs_f64(total);
    let mut tasks = Vec::new();

    // Tree readers.
    for n in 0..4 {
        let (load, token, releases) = (load.clone(), token.clone(), releases.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = n;
            while load.started.elapsed() < deadline {
                let id = &releases[i % releases.len()];
                load.send(
                    "tree",
                    Some(&token),
                    json!({ "query": TREE, "variables": { "id": id } }),
                )
                .await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    // List pagers.
    for _ in 0..2 {
        let (load, token) = (load.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut after = Value::Null;
            while load.started.elapsed() < deadline {
                let page = load
                    .send(
                        "list",
                        Some(&token),
                        json!({ "query": LIST, "variables": { "after": after } }),
                    )
                    .await;
                let info = &page["data"]["releases"]["pageInfo"];
                after = if info["hasNextPage"] == true {
                    info["endCursor"].clone()
                } else {
                    Value::Null
                };
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }));
    }
    // Logins: the right password, and every fifth a wrong one.
    {
        let load = load.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while load.started.elapsed() < deadline {
                let password = if n % 5 == 4 { "wrong" } else { "admin123" };
                load.send("login", None, json!({ "query": LOGIN, "variables": { "email": "admin@example.com", "password": password } })).await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }));
    }
    // Bootstrap starts, one every 2 s.
    let accepted: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    {
        let (load, token, accepted) = (load.clone(), token.clone(), Arc::clone(&accepted));
        tasks.push(tokio::spawn(async move {
            while load.started.elapsed() < deadline {
                let sub = format!("soak-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
                let input = json!({ "name": "Soak Org", "subdomain": sub, "type": "PROVIDER",
                    "adminUsers": [{ "email": "ada@soak.example", "firstName": "Ada", "lastName": "L" }] });
                let answer = load.send("start", Some(&token), json!({ "query": START, "variables": { "input": input } })).await;
                let started = &answer["data"]["startOrganizationBootstrap"];
                if let (Some(org), Some(wf), Some(status)) = (started["organizationId"].as_str(), started["workflowId"].as_str(), started["status"].as_str()) {
                    accepted.lock().unwrap().push((org.to_owned(), wf.to_owned(), status.to_owned()));
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }));
    }
    // Hostile bursts every 30 s: 20 of each kind at once.
    {
        let (load, token) = (load.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let aliases: String = (0..500).map(|i| format!("a{i}: version ")).collect();
            let deep = format!("{{ __schema {}{{ name }}{} }}", "{ types { fields { type ".repeat(8), " } } }".repeat(8));
            let bodies = [
                ("hostile", None, json!({ "query": format!("{{ {aliases} }}") })),
                ("hostile", Some(token.clone()), json!({ "query": "{ releases(first: 1000000) { totalCount } }" })),
                ("hostile", None, json!({ "query": "query Named { releases(first: 5) { totalCount } }", "operationName": "Named" })),
                ("hostile", Some("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".to_owned()), json!({ "query": "{ releases { totalCount } }" })),
                ("hostile", Some(token.clone()), json!({ "query": deep })),
                ("hostile", None, json!({ "query": "query A { version } query B { version }" })),
            ];
            while load.started.elapsed() < deadline {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let mut burst = Vec::new();
                for _ in 0..20 {
                    for (op, token, body) in &bodies {
                        let (op, load, token, body) = (*op, load.clone(), token.clone(), body.clone());
                        burst.push(tokio::spawn(async move { load.send(op, token.as_deref(), body).await; }));
                    }
                }
                futures::future::join_all(burst).await;
            }
        }));
    }
    // Live viewers: 10 connections × 2 subscriptions through the real graphql-ws client.
    let mut viewers = Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ws-client/client.mjs"))
        .arg(json!({
            "url": format!("ws://127.0.0.1:{port}/graphql/ws"),
            "authorization": format!("Bearer {token}"),
            "clients": 10,
            "subscriptions": releases.iter().take(2).map(|id| json!({ "query": LIVE, "variables": { "id": id } })).collect::<Vec<_>>(),
        }).to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pushes: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    {
        let pushes = Arc::clone(&pushes);
        let mut lines = BufReader::new(viewers.stdout.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let event: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                let kind = event["type"].as_str().unwrap_or("?").to_owned();
                *pushes.lock().unwrap().entry(kind).or_default() += 1;
            }
        });
    }

    // Faults, on schedule.
    let at = |f: f64| Duration::from_secs_f64(total * f);
    let wait_until = |t: Duration| {
        let started = load.started;
        async move {
            if let Some(left) = t.checked_sub(started.elapsed()) {
                tokio::time::sleep(left).await;
            }
        }
    };
    let mut events = Vec::new();
    let mark = |what: &str, events: &mut Vec<String>| {
        events.push(format!(
            "{:>5.0} s  {what}",
            load.started.elapsed().as_secs_f64()
        ));
    };
    wait_until(at(0.1)).await;
    let rss_warm = rss_mib(pid);
    temporal.stop();
    mark("Temporal stopped", &mut events);
    wait_until(at(0.2)).await;
    temporal = LocalTemporal::start(&dir.path().join("temporal"), temporal_port).unwrap();
    mark("Temporal started", &mut events);
    wait_until(at(0.4)).await;
    postgres.stop();
    mark("Postgres stopped", &mut events);
    postgres = LocalPostgres::start(&dir.path().join("pg"), pg_port).unwrap();
    mark("Postgres started", &mut events);
    wait_until(at(0.5)).await;
    let rss_middle = rss_mib(pid);
    wait_until(at(0.6)).await;
    temporal.stop();
    mark("Temporal stopped", &mut events);
    wait_until(at(0.7)).await;
    temporal = LocalTemporal::start(&dir.path().join("temporal"), temporal_port).unwrap();
    mark("Temporal started", &mut events);
    for task in tasks {
        task.await.unwrap();
    }
    let rss_end = rss_mib(pid);
    drop(viewers);

    // Every accepted start completes, with exactly one workflow each.
    let accepted = accepted.lock().unwrap().clone();
    let settle = Instant::now();
    let mut states: HashMap<String, String> = HashMap::new();
    while settle.elapsed() < Duration::from_secs(180) {
        for (org, _, _) in &accepted {
            if states.get(org).is_some_and(|s| s == "COMPLETED") {
                continue;
            }
            let answer = load
                .send("status", Some(&token), json!({ "query": "query S($id: ID!) { organization(id: $id) { bootstrap { state } } }", "variables": { "id": org } }))
                .await;
            if let Some(state) = answer["data"]["organization"]["bootstrap"]["state"].as_str() {
                states.insert(org.clone(), state.to_owned());
            }
        }
        if states.values().filter(|s| *s == "COMPLETED").count() == accepted.len() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let settled_in = settle.elapsed().as_secs_f64();
    let client =
        temporal_bff::temporal::connect(&config.temporal.address, &config.temporal.namespace)
            .await
            .unwrap();
    let mut runs: HashMap<String, usize> = HashMap::new();
    {
        use futures::StreamExt;
        let options = temporalio_client::WorkflowListOptions::builder()
            .limit(100_000)
            .build();
        let query = format!(
            "WorkflowType = '{}'",
            config.temporal.bootstrap_workflow_type
        );
        let mut listed = client.list_workflows(query, options);
        while let Some(execution) = listed.next().await {
            *runs.entry(execution.unwrap().id().to_owned()).or_default() += 1;
        }
    }
    let one_each = accepted
        .iter()
        .filter(|(_, wf, _)| runs.get(wf) == Some(&1))
        .count();
    let completed = accepted
        .iter()
        .filter(|(org, _, _)| states.get(org).is_some_and(|s| s == "COMPLETED"))
        .count();
    let queued = accepted.iter().filter(|(_, _, s)| s == "QUEUED").count();

    // Report.
    let samples = load.samples.lock().unwrap();
    let mut codes: BTreeMap<&str, usize> = BTreeMap::new();
    for s in samples.iter() {
        *codes.entry(s.code.as_str()).or_default() += 1;
    }
    println!(
        "\n## Soak run, {} ({} cores), {total:.0} s\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!("Faults:\n```\n{}\n```\n", events.join("\n"));
    println!(
        "Requests: {} in all; by code: {}",
        samples.len(),
        codes
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let down = |s: &Sample| {
        let p = phase(s.at, total);
        p.contains("down")
    };
    let live_while_down = samples
        .iter()
        .filter(|s| s.op == "tree" && down(s) && s.source.as_deref() == Some("TEMPORAL"))
        .count();
    let tree_down = samples.iter().filter(|s| s.op == "tree" && down(s)).count();
    let tree_down_codes: BTreeMap<&str, usize> = samples
        .iter()
        .filter(|s| s.op == "tree" && down(s))
        .fold(BTreeMap::new(), |mut m, s| {
            *m.entry(s.code.as_str()).or_default() += 1;
            m
        });
    println!(
        "Tree reads while Temporal was down: {tree_down} ({tree_down_codes:?}); answered live (TEMPORAL) anyway: {live_while_down}"
    );
    println!(
        "Bootstrap starts accepted: {} ({} QUEUED); COMPLETED: {completed}; with exactly one workflow run in Temporal's list: {one_each} ({} bootstrap runs listed in all, the demo's included); settled {settled_in:.0} s after the load",
        accepted.len(),
        queued,
        runs.values().sum::<usize>()
    );
    let down_starts: Vec<String> = samples
        .iter()
        .filter(|s| s.op == "start" && down(s))
        .map(|s| format!("{:.0} s: {:.0} ms {}", s.at, s.ms, s.code))
        .collect();
    println!("Starts while Temporal was down: {}", down_starts.join("; "));
    println!("Live viewers' messages: {:?}", pushes.lock().unwrap());
    println!(
        "serve RSS: idle before the load {rss_start:.1} MiB; warm (before the first fault) {rss_warm:.1} MiB, middle {rss_middle:.1} MiB, end {rss_end:.1} MiB: end vs warm {:+.1} %\n",
        (rss_end - rss_warm) / rss_warm * 100.0
    );
    let mut table: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for s in samples.iter() {
        table
            .entry((phase(s.at, total), s.op))
            .or_default()
            .push(s.ms);
    }
    println!(
        "| phase | operation | requests | p50 ms | p99 ms |\n| --- | --- | ---: | ---: | ---: |"
    );
    for ((phase, op), mut ms) in table {
        let n = ms.len();
        println!(
            "| {phase} | {op} | {n} | {:.1} | {:.1} |",
            percentile(&mut ms, 0.5),
            percentile(&mut ms, 0.99)
        );
    }
    let internal = codes.get("INTERNAL").copied().unwrap_or(0)
        + codes
            .iter()
            .filter(|(c, _)| c.starts_with("HTTP 5") || **c == "NO_CODE")
            .map(|(_, n)| n)
            .sum::<usize>();
    println!("\nINTERNAL, 5xx or code-less errors: {internal}");
    let mut by_op: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.code != "OK") {
        *by_op
            .entry((phase(s.at, total), s.op, s.code.as_str()))
            .or_default() += 1;
    }
    println!("Answers other than OK, by phase, operation and code: {by_op:?}");
    let errors = std::fs::read_to_string(&serve_log).unwrap_or_default();
    println!("serve's error log lines: {}", errors.lines().count());
    for line in errors.lines().take(20) {
        println!("  {line}");
    }
    drop(server);
    // Neither stops on drop: without this every soak left its Temporal server running.
    temporal.stop();
    postgres.stop();
}
