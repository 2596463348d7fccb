//! `temporal-bff dev`, as a newcomer runs it: a terminal's Ctrl-C stops everything in order.

use std::{
    io::{BufRead, BufReader},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use temporal_bff::devstack::free_port;

use crate::harness::{scratch_dir, watchdog};

/// A log line without its colours.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Processes whose command line names `dir`: the dev stack's Postgres and Temporal (not this
/// test's cleanup watchdog).
fn processes_under(dir: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(dir) && !cmdline.contains("kill -0"))
        .collect()
}

#[test]
fn ctrl_c_stops_dev_in_order_server_and_worker_then_temporal_then_postgres_without_warnings() {
    // Arrange: `dev` in a process group of its own, as a shell runs a foreground job.
    let dir = scratch_dir("temporal-bff-dev-");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .expect("the Postgres user may enter the dev directory");
    let dir_text = dir.to_string_lossy().into_owned();
    let mut dev = Command::new(env!("CARGO_BIN_EXE_temporal-bff"))
        .arg("dev")
        .env("DEV_DIR", &dir)
        .env("PORT", free_port().expect("a free port").to_string())
        .env(
            "METRICS_ADDR",
            format!("127.0.0.1:{}", free_port().expect("a free port")),
        )
        .env_remove("DATABASE_URL")
        .env_remove("TEMPORAL_ADDRESS")
        .env_remove("JWT_SECRET")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dev starts");
    watchdog(&format!("pkill -9 -f '{dir_text}'"), Some(dev.id()), &dir);
    let (lines, heard) = mpsc::channel::<String>();
    for stream in [
        dev.stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        dev.stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = lines.send(plain(&line));
            }
        });
    }
    let started = Instant::now();
    let mut before = Vec::new();
    while !before
        .iter()
        .any(|l: &String| l.contains("temporal-bff dev is up"))
    {
        let line = heard
            .recv_timeout(Duration::from_secs(180).saturating_sub(started.elapsed()))
            .unwrap_or_else(|_| panic!("dev never came up: {}", before.join("\n")));
        before.push(line);
    }
    assert!(
        !processes_under(&dir_text).is_empty(),
        "dev's Postgres and Temporal run"
    );

    // Act: Ctrl-C, which a terminal sends to the whole foreground process group.
    let pgid = i32::try_from(dev.id()).expect("a process ID fits an i32");
    let interrupted = Instant::now();
    let signalled = Command::new("kill")
        .args(["-INT", "--", &format!("-{pgid}")])
        .status()
        .expect("kill runs");
    let status = loop {
        if let Some(status) = dev.try_wait().expect("dev can be waited for") {
            break status;
        }
        assert!(
            interrupted.elapsed() < Duration::from_secs(30),
            "dev did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stopped_in = interrupted.elapsed();
    let after: Vec<String> = heard.try_iter().collect();

    // Assert
    assert!(signalled.success());
    assert!(
        status.success(),
        "dev exited with {status}: {}",
        after.join("\n")
    );
    let noisy: Vec<&String> = after
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(noisy.is_empty(), "warnings while stopping: {noisy:#?}");
    let at = |what: &str| {
        after
            .iter()
            .position(|l| l.contains(what))
            .unwrap_or_else(|| panic!("{what:?} not said: {}", after.join("\n")))
    };
    let order = [
        at("server stopped"),
        at("worker stopped"),
        at("Temporal stopped"),
        at("Postgres stopped"),
        at("dev stopped"),
    ];
    assert!(
        order.is_sorted(),
        "stopped out of order: {}",
        after.join("\n")
    );
    assert_eq!(
        processes_under(&dir_text),
        Vec::<String>::new(),
        "nothing of the dev stack outlives it"
    );
    eprintln!("dev stopped {stopped_in:?} after Ctrl-C");
}

#[tokio::test]
async fn a_temporal_server_that_exits_while_starting_is_reported_as_exited_not_waited_for() {
    // Arrange: its database file cannot be opened (a directory stands in its place), so the
    // server exits before it ever listens.
    let dir = scratch_dir("temporal-bff-exits-");
    std::fs::create_dir_all(dir.join("temporal.sqlite")).expect("a directory in its place");
    let port = free_port().expect("a free port");

    // Act
    let started = tokio::task::spawn_blocking(move || {
        temporal_bff::devstack::LocalTemporal::start(&dir, port).map(drop)
    })
    .await
    .expect("the start returns");

    // Assert: the error says the server exited (see its log), rather than that it did not
    // answer within the minute a start may take.
    let error = started.expect_err("the server cannot start").to_string();
    assert!(error.contains("exited"), "{error}");
}
