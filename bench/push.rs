//! Live push under load: how long a change takes from its event's INSERT to the subscriber, how
//! many bytes each push is, and what 1,000 subscribers cost the server; `releaseUpdated` (the
//! whole tree per change) against `releaseTreeChanged` (only what changed) on a 1,000-app
//! release, and `releaseTreeChanged` on a release of 100,000 nodes.
//!
//!     cargo bench --bench push
//!
//! Starts Postgres and a Temporal dev server, runs the release build of `temporal-bff serve` as
//! its own process (so its RSS and CPU are the server's alone), writes a running release into the
//! event store as another team's worker would (1 wave × 2 clusters × 10 or 500 apps, or 100 waves ×
//! 10 clusters × 99 apps, whose snapshot selects only the waves), and subscribes to
//! it with the real `graphql-ws` client (`tests/ws-client/client.mjs`, Node; `scripts/test`
//! installs it). Each change is one app's `SUCCEEDED` event, inserted 1.5 windows
//! (`HIERARCHY_CACHE_MS`) after the previous one; the latency of a change is the time from just
//! before its INSERT to the client's receipt of the push that shows it, for every subscriber.

#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::{
    collections::HashSet,
    process::Stdio,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};
use temporal_bff::{
    Config,
    auth::{Principal, password::Hasher, token::TokenService, users},
    devstack::{LocalPostgres, LocalTemporal, dev::create_database_if_missing, free_port},
    types::Email,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

const WINDOW_MS: u64 = 1000;
const CHANGES: usize = 20;

const TREE: &str = "subscription($id: ID!) { releaseUpdated(id: $id) {
  id status source asOf progress { total succeeded failed inProgress pending percent }
  waves { key status progress { percent } clusters { key region status progress { percent }
    bundle { key version status apps { key version status startedAt completedAt } } } } } }";

/// What `releaseTreeChanged` selects of each node that changed.
macro_rules! changed {
    () => {
        "changed {
    ... on Release { id status progress { total succeeded failed inProgress pending percent } }
    ... on Wave { id status progress { percent } }
    ... on Cluster { id status progress { percent } }
    ... on Bundle { id status }
    ... on App { id status startedAt completedAt } } } }"
    };
}

const DIFFS: &str = concat!(
    "subscription($id: ID!) { releaseTreeChanged(id: $id) { revision
  snapshot { id status source asOf progress { total succeeded failed inProgress pending percent }
    waves { id key status progress { percent } clusters { id key region status progress { percent }
      bundle { id key version status apps { id key version status startedAt completedAt } } } } }
  ",
    changed!()
);

/// A dashboard of a release too large for a whole snapshot: the waves, then what changed.
const WAVE_DIFFS: &str = concat!(
    "subscription($id: ID!) { releaseTreeChanged(id: $id) { revision
  snapshot { id status progress { total succeeded failed inProgress pending percent }
    waves { id key status progress { percent } } }
  ",
    changed!()
);

/// What the subscribers follow.
#[derive(Clone, Copy)]
enum Mode {
    /// `releaseUpdated`: the whole tree after each change.
    Whole,
    /// `releaseTreeChanged`: the nodes that changed.
    Diffs,
    /// `releaseTreeChanged` with a snapshot of the waves alone.
    WaveDiffs,
}

impl Mode {
    fn query(self) -> &'static str {
        match self {
            Mode::Whole => TREE,
            Mode::Diffs => DIFFS,
            Mode::WaveDiffs => WAVE_DIFFS,
        }
    }

    /// How many apps have succeeded according to one push (`None`: it does not say).
    fn succeeded(self, data: &Value, release: &str) -> Option<u64> {
        match self {
            Mode::Whole => data["releaseUpdated"]["progress"]["succeeded"].as_u64(),
            Mode::Diffs | Mode::WaveDiffs => data["releaseTreeChanged"]["changed"]
                .as_array()?
                .iter()
                .find(|node| node["id"] == release)?["progress"]["succeeded"]
                .as_u64(),
        }
    }
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1e3
}

/// (RSS in KiB, CPU seconds so far) of process `pid`.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    (rss, ticks / 100.0)
}

fn percentile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() as f64 * q).ceil() as usize).saturating_sub(1)]
}

async fn insert(db: &sqlx::PgPool, event_type: &str, data: Value) {
    sqlx::query(
        "INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data)
         VALUES ($1, 'release', gen_random_uuid(), $2)",
    )
    .bind(event_type)
    .bind(data)
    .execute(db)
    .await
    .unwrap();
}

/// A running release written by a foreign worker: `waves` × `clusters` × `per_cluster` apps.
async fn release(
    db: &sqlx::PgPool,
    key: &str,
    (waves, clusters, per_cluster): Shape,
) -> (String, Vec<String>) {
    let id = format!("release:{key}");
    let mut nodes = vec![json!({ "id": id, "kind": "release", "key": key, "name": key })];
    let mut apps = Vec::new();
    for w in 1..=waves {
        let wave = format!("wave:{key}/w{w}");
        nodes.push(json!({ "id": wave, "kind": "wave", "key": format!("w{w}"), "name": format!("w{w}"), "parentId": id, "position": w }));
        for c in 1..=clusters {
            let cluster = format!("cluster:{key}/w{w}/c{c}");
            let bundle = format!("bundle:{key}/w{w}/c{c}/b");
            nodes.push(json!({ "id": cluster, "kind": "cluster", "key": format!("c{c}"), "name": format!("c{c}"), "parentId": wave, "region": "eu" }));
            nodes.push(json!({ "id": bundle, "kind": "bundle", "key": "b", "name": "b", "parentId": cluster, "version": "1" }));
            for n in 1..=per_cluster {
                let app = format!("app:{key}/w{w}/c{c}/b/app-{n}");
                nodes.push(json!({ "id": app, "kind": "app", "key": format!("app-{n}"),
                    "name": format!("app-{n}"), "parentId": bundle, "position": n, "version": "1" }));
                apps.push(app);
            }
        }
    }
    // The projection of 100,000 nodes takes longer than the pool's statement timeout.
    let mut tx = db.begin().await.unwrap();
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data)
         VALUES ('release.created', 'release', gen_random_uuid(), $1)",
    )
    .bind(json!({ "id": id, "key": key, "name": key, "nodes": nodes }))
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (id, apps)
}

struct Run {
    latencies: Vec<f64>,
    /// The size of each push after the first, as JSON (the `next` message's payload).
    bytes: Vec<f64>,
    rss_kib: u64,
    cpu_seconds: f64,
    wall: Duration,
}

/// Waves × clusters × apps.
type Shape = (usize, usize, usize);

/// `connections` × `per_connection` subscribers follow a fresh release of `shape` through
/// `CHANGES` changes.
#[allow(clippy::too_many_arguments)]
async fn run(
    db: &sqlx::PgPool,
    url: &str,
    token: &str,
    pid: u32,
    connections: usize,
    per_connection: usize,
    shape: Shape,
    mode: Mode,
) -> Run {
    let key = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let (id, apps) = release(db, &key, shape).await;
    let plan = json!({
        "url": url,
        "authorization": format!("Bearer {token}"),
        "clients": connections,
        "subscriptions": (0..per_connection).map(|_| json!({ "query": mode.query(), "variables": { "id": id } })).collect::<Vec<_>>(),
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ws-client/client.mjs");
    let mut child = Command::new("node")
        .arg(script)
        .arg(plan.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let subscribers = connections * per_connection;
    // Every subscriber has its first state.
    let mut seen = HashSet::new();
    while seen.len() < subscribers {
        let Some(line) = lines.next_line().await.unwrap() else {
            panic!("the client ended: {:?}", child.wait().await);
        };
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["type"] == "next" {
            seen.insert((event["client"].as_u64(), event["sub"].as_u64()));
        }
    }
    let (_, cpu_before) = usage(pid);
    let started = std::time::Instant::now();
    let mut latencies = Vec::new();
    let mut bytes = Vec::new();
    for (k, app) in apps.iter().take(CHANGES).enumerate() {
        tokio::time::sleep(Duration::from_millis(WINDOW_MS * 3 / 2)).await;
        let sent = now_ms();
        insert(
            db,
            "release.app.status_changed",
            json!({ "id": app, "releaseId": id, "status": "SUCCEEDED", "at": chrono::Utc::now() }),
        )
        .await;
        let mut got = HashSet::new();
        while got.len() < subscribers {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("a push within 30 s")
                .unwrap()
                .unwrap();
            let event: Value = serde_json::from_str(&line).unwrap();
            if event["type"] != "next" {
                continue;
            }
            bytes.push(event["payload"].to_string().len() as f64);
            if mode.succeeded(&event["payload"]["data"], &id) == Some(k as u64 + 1)
                && got.insert((event["client"].as_u64(), event["sub"].as_u64()))
            {
                latencies.push(event["at"].as_f64().unwrap() - sent);
            }
        }
    }
    let wall = started.elapsed();
    let (rss_kib, cpu_after) = usage(pid);
    drop(child);
    Run {
        latencies,
        bytes,
        rss_kib,
        cpu_seconds: cpu_after - cpu_before,
        wall,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::Builder::new().prefix("bff-push-").tempdir().unwrap();
        let mut postgres =
            LocalPostgres::start(&dir.path().join("pg"), free_port().unwrap()).unwrap();
        let mut temporal =
            LocalTemporal::start(&dir.path().join("temporal"), free_port().unwrap()).unwrap();
        create_database_if_missing(&postgres.url("postgres"), "bench").await.unwrap();
        let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let port = free_port().unwrap();
        let env = [
            ("DATABASE_URL", postgres.url("bench")),
            ("TEMPORAL_ADDRESS", temporal.address()),
            ("JWT_SECRET", secret),
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", port.to_string()),
            ("LOG_LEVEL", "error".to_owned()),
            ("HIERARCHY_CACHE_MS", WINDOW_MS.to_string()),
            ("WS_MAX_CONNECTIONS_PER_USER", "1000".to_owned()),
        ];
        let config = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())).unwrap();
        let db = temporal_bff::db::connect(&config.db).await.unwrap();
        temporal_bff::db::migrate(&db, &Default::default()).await.unwrap();
        let mut server = Command::new(env!("CARGO_BIN_EXE_temporal-bff"))
            .arg("serve")
            .envs(env.iter().cloned())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = server.id().unwrap();
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http.get(format!("http://127.0.0.1:{port}/health")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A local user's token is honoured only while the user exists.
        let user = users::create(
            &db,
            &Hasher::new(),
            users::NewUser {
                email: Email::parse("bench@example.com").unwrap(),
                password: "benchmark-password".to_owned().into(),
                org_id: None,
                role: None,
                permissions: Vec::new(),
            },
        )
        .await
        .unwrap();
        let (token, _) = TokenService::new(&config)
            .issue(&Principal {
                user_id: user.id.to_string(),
                email: "bench@example.com".into(),
                org_id: None,
                role: None,
                permissions: Default::default(),
            })
            .unwrap();
        let url = format!("ws://127.0.0.1:{port}/graphql/ws");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (idle_kib, _) = usage(pid);

        let mut rows = vec![
            format!(
                "Run on {} ({} cores), release build of `serve` as its own process; {CHANGES} changes per run, one every {} ms (HIERARCHY_CACHE_MS={WINDOW_MS}); idle RSS {:.1} MiB.\n",
                chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
                std::thread::available_parallelism().map_or(0, usize::from),
                WINDOW_MS * 3 / 2,
                idle_kib as f64 / 1024.0
            ),
            "| subscription | apps | subscribers (connections × each) | pushes | bytes per push p50 | INSERT → client p50 ms | p99 ms | max ms | server RSS MiB (vs idle) | server CPU s (share of one core) |".to_owned(),
            "|---|---|---|---|---|---|---|---|---|---|".to_owned(),
        ];
        for (connections, each, shape, mode) in [
            (1, 1, (1, 2, 10), Mode::Whole),
            (50, 20, (1, 2, 10), Mode::Whole),
            (10, 10, (1, 2, 500), Mode::Whole),
            (10, 10, (1, 2, 500), Mode::Diffs),
            (10, 10, (100, 10, 99), Mode::WaveDiffs),
        ] {
            let mut run = run(&db, &url, &token, pid, connections, each, shape, mode).await;
            let max = run.latencies.iter().copied().fold(0.0, f64::max);
            rows.push(format!(
                "| {} | {} | {} ({connections} × {each}) | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} (+{:.1}) | {:.2} ({:.0} %) |",
                match mode { Mode::Whole => "releaseUpdated", Mode::Diffs => "releaseTreeChanged", Mode::WaveDiffs => "releaseTreeChanged (waves snapshot)" },
                shape.0 * shape.1 * shape.2,
                connections * each,
                run.latencies.len(),
                percentile(&mut run.bytes, 0.5),
                percentile(&mut run.latencies, 0.5),
                percentile(&mut run.latencies, 0.99),
                max,
                run.rss_kib as f64 / 1024.0,
                (run.rss_kib as f64 - idle_kib as f64) / 1024.0,
                run.cpu_seconds,
                100.0 * run.cpu_seconds / run.wall.as_secs_f64(),
            ));
        }
        println!("{}", rows.join("\n"));
        let _ = server.start_kill();
        let _ = server.wait().await;
        temporal.stop();
        postgres.stop();
    });
}
