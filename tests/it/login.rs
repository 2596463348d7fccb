//! Logging in: tokens issued, one answer for unknown e-mails and wrong passwords, argon2id
//! hashes, the throttle under parallel guesses and sprays, passwords never logged, and
//! `temporal-bff user create`.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::Duration,
};

use chrono::Utc;
use serde_json::json;

use crate::fixtures::{ME, login_from, no_data};
use crate::harness::{PASSWORD, TestApp, error_code, eventually, fresh_database, random_secret};

#[tokio::test]
async fn login_returns_a_token_that_identifies_the_caller() {
    // Arrange
    let app = TestApp::spawn().await;
    let org = uuid::Uuid::new_v4();
    app.create_user("Ada@Example.com", Some(org), &["organization.view_all"])
        .await;

    // Act: the e-mail is matched case-insensitively.
    let login = app.login("ada@example.COM", PASSWORD).await;
    let token = login["data"]["login"]["token"].as_str().unwrap_or_default();
    let me = app.graphql_as(token, ME, json!({})).await;

    // Assert
    assert!(!token.is_empty(), "{login}");
    let expires = login["data"]["login"]["expiresAt"]
        .as_str()
        .unwrap_or_default();
    let expires = chrono::DateTime::parse_from_rfc3339(expires).map(|t| t.timestamp());
    let ttl = expires.unwrap_or_default() - Utc::now().timestamp();
    assert!(
        (3500..=3600).contains(&ttl),
        "expiresAt about an hour ahead: {login}"
    );
    assert_eq!(me["data"]["me"]["email"], "ada@example.com", "{me}");
    assert_eq!(me["data"]["me"]["orgId"], org.to_string());
    assert_eq!(
        me["data"]["me"]["permissions"],
        json!(["organization.view_all"])
    );
    assert_eq!(me["data"]["me"]["id"], login["data"]["login"]["user"]["id"]);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.create_user("grace@example.com", None, &[]).await;

    let wrong_password = app.login("grace@example.com", "not the password").await;
    let unknown = app.login("nobody@example.com", "not the password").await;

    assert_eq!(error_code(&wrong_password), "UNAUTHENTICATED");
    assert_eq!(wrong_password["errors"], unknown["errors"]);
    assert!(wrong_password["data"].is_null(), "{wrong_password}");
}

#[tokio::test]
async fn a_disabled_user_cannot_log_in() {
    let app = TestApp::spawn().await;
    app.create_user("off@example.com", None, &[]).await;
    sqlx::query("UPDATE users SET disabled = true")
        .execute(&app.db)
        .await
        .expect("the statement runs");

    let body = app.login("off@example.com", PASSWORD).await;

    assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
}

#[tokio::test]
async fn passwords_are_stored_only_as_argon2id_hashes() {
    let app = TestApp::spawn().await;
    app.create_user("hash@example.com", None, &[]).await;

    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&app.db)
        .await
        .unwrap_or_default();

    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert!(!stored.contains(PASSWORD));
}

#[tokio::test]
async fn repeated_failures_are_throttled_and_the_user_gets_back_in_after_the_lockout() {
    // Arrange: 3 failures lock for 1 s.
    let app = TestApp::spawn_with(&[
        ("LOGIN_MAX_FAILURES", "3".into()),
        ("LOGIN_LOCKOUT_SECONDS", "1".into()),
    ])
    .await;
    app.create_user("eve@example.com", None, &[]).await;

    // Act
    let first = app.login("eve@example.com", "wrong-1").await;
    let second = app.login("eve@example.com", "wrong-2").await;
    let third = app.login("eve@example.com", "wrong-3").await;
    let right_while_locked = app.login("eve@example.com", PASSWORD).await;
    // A refused attempt is not counted, so asking until the lock ends is harmless.
    let right_after = eventually(Duration::from_secs(5), || async {
        let body = app.login("eve@example.com", PASSWORD).await;
        body["data"]["login"]["token"].is_string().then_some(body)
    })
    .await;

    // Assert
    assert_eq!(error_code(&first), "UNAUTHENTICATED");
    assert_eq!(error_code(&second), "UNAUTHENTICATED");
    assert_eq!(error_code(&third), "RATE_LIMITED", "{third}");
    assert_eq!(error_code(&right_while_locked), "RATE_LIMITED");
    assert!(
        right_while_locked["errors"][0]["extensions"]["retryAfter"].as_i64() >= Some(1),
        "{right_while_locked}"
    );
    assert!(
        right_after.is_some(),
        "the user gets back in after the lockout"
    );
}

#[tokio::test]
async fn fifty_parallel_guesses_check_at_most_the_limit_and_the_right_password_after_gets_no_token()
{
    // Arrange
    let app = TestApp::spawn_with(&[("LOGIN_MAX_FAILURES", "5".into())]).await;
    app.create_user("target@example.com", None, &[]).await;
    let checks_before = app.metric("bff_password_checks_total").await;

    // Act: five waves of ten at once (past the login waiting room, a wave's rest is refused
    // before it is even counted).
    let passwords: Vec<String> = (0..50).map(|i| format!("guess number {i}")).collect();
    let mut guesses = Vec::new();
    for wave in passwords.chunks(10) {
        guesses.extend(
            futures::future::join_all(
                wave.iter()
                    .map(|password| app.login("target@example.com", password)),
            )
            .await,
        );
    }
    let right = app.login("target@example.com", PASSWORD).await;

    // Assert
    let checked = app.metric("bff_password_checks_total").await - checks_before;
    assert!(checked <= 5.0, "{checked} passwords were checked");
    assert!(guesses.iter().all(no_data));
    assert!(
        guesses
            .iter()
            .filter(|g| error_code(g) == "RATE_LIMITED")
            .count()
            >= 45,
        "{guesses:?}"
    );
    assert_eq!(error_code(&right), "RATE_LIMITED", "{right}");
    assert!(right["data"].is_null());
}

#[tokio::test]
async fn a_stranger_locks_only_their_own_address_and_one_address_cannot_spray_many_emails() {
    // Arrange: the test client is the trusted proxy, so X-Forwarded-For names the client.
    let app = TestApp::spawn_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1/32,::1/128".into()),
        ("LOGIN_MAX_FAILURES", "3".into()),
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "6".into()),
    ])
    .await;
    app.create_user("victim@example.com", None, &[]).await;

    // Act: a stranger locks the victim's e-mail from their address, then sprays others.
    for i in 0..4 {
        login_from(
            &app,
            "203.0.113.66",
            "victim@example.com",
            &format!("wrong {i}"),
        )
        .await;
    }
    let stranger_again = login_from(&app, "203.0.113.66", "victim@example.com", PASSWORD).await;
    let victim = login_from(&app, "198.51.100.7", "victim@example.com", PASSWORD).await;
    let mut spray = Vec::new();
    for i in 0..6 {
        spray.push(
            login_from(
                &app,
                "203.0.113.99",
                &format!("person{i}@example.com"),
                "guess",
            )
            .await,
        );
    }

    // Assert
    assert_eq!(
        error_code(&stranger_again),
        "RATE_LIMITED",
        "{stranger_again}"
    );
    assert!(
        victim["data"]["login"]["token"].is_string(),
        "the owner still gets in: {victim}"
    );
    let spray_codes: Vec<&str> = spray.iter().map(error_code).collect();
    assert_eq!(spray_codes.last(), Some(&"RATE_LIMITED"), "{spray_codes:?}");
}

#[tokio::test]
async fn expired_throttle_rows_are_deleted() {
    let app = TestApp::spawn().await;
    sqlx::query(
        "INSERT INTO login_throttle (key, failures, window_started_at, expires_at) VALUES
           ('email:old@example.com', 3, now() - interval '2 hours', now() - interval '1 hour'),
           ('email:new@example.com', 1, now(), now() + interval '15 minutes')",
    )
    .execute(&app.db)
    .await
    .expect("the statement runs");

    let purged = temporal_bff::auth::store::purge_expired_throttle(&app.db).await;

    let left: Vec<String> = sqlx::query_scalar("SELECT key FROM login_throttle")
        .fetch_all(&app.db)
        .await
        .unwrap_or_default();
    // The server's own housekeeping may have deleted it first: what counts is that it is gone.
    assert!(purged.is_ok(), "{purged:?}");
    assert_eq!(left, ["email:new@example.com"]);
}

#[tokio::test]
async fn a_password_in_a_broken_login_document_never_reaches_the_log() {
    // Arrange: the real binary, logging everything, on its own database.
    let app = TestApp::spawn().await;
    let port = temporal_bff::devstack::free_port().expect("a free port");
    let server = Command::new(env!("CARGO_BIN_EXE_temporal-bff"))
        .arg("serve")
        .env("DATABASE_URL", fresh_database().await)
        .env("TEMPORAL_ADDRESS", app.config.temporal.address.as_str())
        .env("JWT_SECRET", random_secret())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("LOG_LEVEL", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the process starts");
    let base = format!("http://127.0.0.1:{port}");
    let up = eventually(Duration::from_secs(20), || async {
        let health = app.http.get(format!("{base}/health")).send().await.ok()?;
        health.status().is_success().then_some(())
    })
    .await;
    let canary = "CANARY-hunter2-7f3a";
    let documents = [
        format!(
            "mutation {{ login(email: \"a@example.com\", password: \"{canary}\" {{ token }} }}"
        ),
        format!("mutation {{ login(email: \"a@example.com\", password: \"{canary}\") {{ token }}"),
        format!(
            "mutation {{ login(email: \"a@example.com\", password: \"{canary}\") {{ token }} }}"
        ),
    ];

    // Act
    for document in &documents {
        let _ = app
            .http
            .post(format!("{base}/graphql"))
            .json(&json!({ "query": document }))
            .send()
            .await;
    }
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let output = server.wait_with_output().expect("the process ends");

    // Assert
    assert!(up.is_some(), "the server started");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        log.contains("syntax"),
        "the parse error is logged by kind: {log}"
    );
    let leaked: Vec<String> = BufReader::new(log.as_bytes())
        .lines()
        .map_while(Result::ok)
        .filter(|line| line.contains(canary))
        .collect();
    assert!(
        leaked.is_empty(),
        "the password reached the log: {leaked:?}"
    );
}

fn user_create(app: &TestApp, args: &[&str], stdin: &str) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_temporal-bff"))
        .args(["user", "create"])
        .args(args)
        .env("DATABASE_URL", app.config.database_url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the process starts");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    let output = child.wait_with_output().expect("the process ends");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[tokio::test]
async fn user_create_reads_the_password_from_stdin_and_refuses_short_ones_and_duplicates() {
    let app = TestApp::spawn().await;
    let org = uuid::Uuid::new_v4().to_string();
    let args = [
        "--email",
        "Root@Example.com",
        "--password-stdin",
        "--org-id",
        org.as_str(),
        "--role",
        "provider_admin",
        "--permission",
        "organization.create_root",
        "--permission",
        "organization.view_all",
    ];

    let short = user_create(&app, &args, "short\n");
    let created = user_create(&app, &args, "a long enough password\n");
    let duplicate = user_create(
        &app,
        &["--email", "root@example.COM", "--password-stdin"],
        "another long password\n",
    );
    let login = app
        .login("root@example.com", "a long enough password")
        .await;

    assert_ne!(short.0, Some(0), "{}", short.1);
    assert!(
        short.1.contains("password must be between 10"),
        "{}",
        short.1
    );
    assert_eq!(created.0, Some(0), "{}", created.1);
    assert_ne!(duplicate.0, Some(0));
    assert!(duplicate.1.contains("already exists"), "{}", duplicate.1);
    assert_eq!(
        login["data"]["login"]["user"]["permissions"],
        json!(["organization.create_root", "organization.view_all"]),
        "{login}"
    );
}

#[tokio::test]
async fn user_create_if_absent_succeeds_on_a_second_run_and_keeps_the_first_password() {
    // Arrange: the first-admin step of a deploy, run twice (a second `docker compose up`).
    let app = TestApp::spawn().await;
    let args = [
        "--email",
        "admin@example.com",
        "--password-stdin",
        "--permission",
        "organization.view_all",
        "--if-absent",
    ];

    // Act
    let first = user_create(&app, &args, "the first long password\n");
    let second = user_create(&app, &args, "a second long password\n");
    let with_first = app
        .login("admin@example.com", "the first long password")
        .await;
    let with_second = app
        .login("admin@example.com", "a second long password")
        .await;

    // Assert
    assert_eq!(first.0, Some(0), "{}", first.1);
    assert_eq!(second.0, Some(0), "{}", second.1);
    assert!(second.1.contains("exists already"), "{}", second.1);
    assert!(
        with_first["data"]["login"]["token"].is_string(),
        "{with_first}"
    );
    assert_eq!(
        with_second["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "the second run changed nothing: {with_second}"
    );
}
