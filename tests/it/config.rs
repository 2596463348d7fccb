//! Start-up validation, through the real binary.

use std::process::Command;

use temporal_bff::devstack::free_port;

use crate::harness::random_secret;

fn serve(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_temporal-bff"))
        .arg("serve")
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("the process runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn serve_refuses_to_start_and_names_every_bad_variable() {
    let (code, stderr) = serve(&[
        ("JWT_SECRET", "too-short"),
        ("PORT", "http"),
        ("LOG_FORMAT", "yaml"),
    ]);

    assert_eq!(code, Some(2), "{stderr}");
    for name in [
        "DATABASE_URL is required",
        "JWT_SECRET must be at least 32 bytes",
        "PORT must be",
        "LOG_FORMAT must be",
    ] {
        assert!(stderr.contains(name), "{name:?} missing from: {stderr}");
    }
    assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
}

#[test]
fn serve_exits_with_a_clear_message_when_postgres_is_unreachable() {
    let port = free_port().unwrap_or(1).to_string();
    let url = format!("postgres://postgres@127.0.0.1:{port}/nothing");
    let secret = random_secret();

    let (code, stderr) = serve(&[
        ("DATABASE_URL", url.as_str()),
        ("JWT_SECRET", secret.as_str()),
        ("PORT", "0"),
    ]);

    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to Postgres"), "{stderr}");
    assert!(!stderr.contains(&secret));
}
