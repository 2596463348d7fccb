//! Tokens on every operation: every kind of bad token refused with no data, the platform's
//! own tokens accepted, revocation (a disabled user, a withdrawn permission) holding.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use temporal_bff::auth::token::Claims;

use crate::fixtures::{ME, no_data, platform_claims, secret, sign};
use crate::harness::{PASSWORD, TestApp, error_code, eventually};

fn claims(app: &TestApp) -> Claims {
    Claims {
        email: "platform@example.com".into(),
        org_id: Some(uuid::Uuid::nil()),
        user_role: Some("provider_admin".into()),
        ..platform_claims(
            app,
            "5b0e8c1e-5f4e-4a36-9d7e-0c2f1d8a9b10",
            &["organization.create_root"],
        )
    }
}

/// `claims` signed with `algorithm` and `key`.
fn signed(claims: &Claims, algorithm: Algorithm, key: &[u8]) -> String {
    sign(claims, Header::new(algorithm), key)
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
            Some(format!("Basic {}", signed(&good, Algorithm::HS256, &key))),
        ),
        (
            "wrong key",
            Some(format!(
                "Bearer {}",
                signed(&good, Algorithm::HS256, b"another-secret-another-secret-!!")
            )),
        ),
        ("alg none", Some(format!("Bearer {unsigned}"))),
        (
            "HS512",
            Some(format!("Bearer {}", signed(&good, Algorithm::HS512, &key))),
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                signed(&expired, Algorithm::HS256, &key)
            )),
        ),
        (
            "wrong issuer",
            Some(format!(
                "Bearer {}",
                signed(&wrong_issuer, Algorithm::HS256, &key)
            )),
        ),
        (
            "wrong audience",
            Some(format!(
                "Bearer {}",
                signed(&wrong_audience, Algorithm::HS256, &key)
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
    let token = signed(&claims(&app), Algorithm::HS256, &secret(&app));

    let me = app.graphql_as(&token, ME, json!({})).await;

    assert_eq!(me["data"]["me"]["email"], "platform@example.com", "{me}");
    assert_eq!(me["data"]["me"]["role"], "provider_admin");
    assert_eq!(
        me["data"]["me"]["permissions"],
        json!(["organization.create_root"])
    );
}

#[tokio::test]
async fn a_disabled_user_or_a_withdrawn_permission_stops_working_with_an_unexpired_token() {
    // Arrange: a short user cache, so the test need not wait a minute.
    let app = TestApp::spawn_with(&[("AUTH_USER_CACHE_MS", "200".into())]).await;
    let org = uuid::Uuid::new_v4();
    let token = app
        .token_for("member@example.com", Some(org), &["organization.view_all"])
        .await;
    let other = app.token_for("other@example.com", None, &[]).await;
    let me = "{ me { permissions } }";
    let before = app.graphql_as(&token, me, json!({})).await;

    // Act
    sqlx::query("UPDATE users SET permissions = '{}' WHERE email = 'member@example.com'")
        .execute(&app.db)
        .await
        .expect("the statement runs");
    let withdrawn = eventually(Duration::from_secs(5), || async {
        let body = app.graphql_as(&token, me, json!({})).await;
        (body["data"]["me"]["permissions"] == json!([])).then_some(body)
    })
    .await;
    sqlx::query("UPDATE users SET disabled = true WHERE email = 'other@example.com'")
        .execute(&app.db)
        .await
        .expect("the statement runs");
    let disabled = eventually(Duration::from_secs(5), || async {
        let body = app.graphql_as(&other, "{ version }", json!({})).await;
        (error_code(&body) == "UNAUTHENTICATED").then_some(body)
    })
    .await;

    // Assert
    assert_eq!(
        before["data"]["me"]["permissions"],
        json!(["organization.view_all"])
    );
    assert!(
        withdrawn.is_some(),
        "the permission is gone without a new token"
    );
    let disabled = disabled.unwrap_or_else(|| panic!("a disabled user's token still works"));
    assert!(no_data(&disabled), "{disabled}");
}
