//! Login, token verification on every operation, throttling, and user creation.

use std::{io::Write, process::Stdio, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use temporal_bff::auth::token::Claims;

use crate::harness::{PASSWORD, TestApp, error_code, eventually};

const ME: &str = "{ me { id email role orgId permissions } }";

fn claims(app: &TestApp) -> Claims {
    let now = Utc::now().timestamp();
    Claims {
        sub: "5b0e8c1e-5f4e-4a36-9d7e-0c2f1d8a9b10".into(),
        email: "platform@example.com".into(),
        org_id: Some(uuid::Uuid::nil()),
        user_role: Some("provider_admin".into()),
        permissions: ["organization.create_root".to_owned()].into(),
        iat: now,
        exp: now + 600,
        nbf: None,
        iss: app.config.auth.jwt_issuer.clone(),
        aud: app.config.auth.jwt_audience.clone(),
        local_user: false,
    }
}

fn sign(claims: &Claims, algorithm: Algorithm, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("the token is signed")
}

fn secret(app: &TestApp) -> Vec<u8> {
    app.config
        .auth
        .jwt_secret
        .expose_secret()
        .as_bytes()
        .to_vec()
}

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
async fn every_kind_of_bad_token_is_unauthenticated_and_gets_no_data() {
    // Arrange
    let app = TestApp::spawn().await;
    let good = claims(&app);
    let key = secret(&app);
    let now = Utc::now().timestamp();
    let expired = Claims {
        iat: now - 7200,
        exp: now - 3600,
        ..good.clone()
    };
    let wrong_issuer = Claims {
        iss: "someone-else".into(),
        ..good.clone()
    };
    let wrong_audience = Claims {
        aud: "another-app".into(),
        ..good.clone()
    };
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&good).unwrap_or_default()),
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("an empty bearer token", Some("Bearer ".into())),
        ("garbage", Some("Bearer not.a.jwt".into())),
        (
            "not bearer",
            Some(format!("Basic {}", sign(&good, Algorithm::HS256, &key))),
        ),
        (
            "wrong key",
            Some(format!(
                "Bearer {}",
                sign(&good, Algorithm::HS256, b"another-secret-another-secret-!!")
            )),
        ),
        ("alg none", Some(format!("Bearer {unsigned}"))),
        (
            "HS512",
            Some(format!("Bearer {}", sign(&good, Algorithm::HS512, &key))),
        ),
        (
            "expired",
            Some(format!("Bearer {}", sign(&expired, Algorithm::HS256, &key))),
        ),
        (
            "wrong issuer",
            Some(format!(
                "Bearer {}",
                sign(&wrong_issuer, Algorithm::HS256, &key)
            )),
        ),
        (
            "wrong audience",
            Some(format!(
                "Bearer {}",
                sign(&wrong_audience, Algorithm::HS256, &key)
            )),
        ),
    ];

    for (case, authorization) in cases {
        // Act
        let body = match &authorization {
            Some(header) => app.graphql_with_auth(header, ME, json!({})).await,
            None => app.graphql(ME, json!({})).await,
        };

        // Assert
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{case}: {body}");
        assert!(
            body.get("data").is_none_or(Value::is_null),
            "{case}: no data may be returned: {body}"
        );
    }
}

#[tokio::test]
async fn an_empty_bearer_token_counts_as_no_token_so_graphiqls_prefilled_header_can_log_in() {
    // Arrange: GraphiQL's headers pane starts as {"Authorization": "Bearer "}.
    let app = TestApp::spawn().await;
    app.create_user("grace@example.com", None, &[]).await;
    let login = "mutation($email: String!, $password: String!) { login(email: $email, password: $password) { token } }";

    // Act
    let body = app
        .graphql_with_auth(
            "Bearer ",
            login,
            json!({ "email": "grace@example.com", "password": PASSWORD }),
        )
        .await;

    // Assert
    let token = body["data"]["login"]["token"].as_str().unwrap_or_default();
    assert!(!token.is_empty(), "{body}");
}

#[tokio::test]
async fn a_token_the_platform_signs_with_the_shared_secret_is_accepted() {
    let app = TestApp::spawn().await;
    let token = sign(&claims(&app), Algorithm::HS256, &secret(&app));

    let me = app.graphql_as(&token, ME, json!({})).await;

    assert_eq!(me["data"]["me"]["email"], "platform@example.com", "{me}");
    assert_eq!(me["data"]["me"]["role"], "provider_admin");
    assert_eq!(
        me["data"]["me"]["permissions"],
        json!(["organization.create_root"])
    );
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
