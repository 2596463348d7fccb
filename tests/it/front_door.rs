//! The front door: no anonymous reads however a document is shaped, bounded cost, a login that
//! holds under attack, revocation, and nothing internal in answers or logs.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};
use temporal_bff::{auth::Authentication, graphql::schema_builder};

use crate::fixtures::login_from;
use crate::harness::{PASSWORD, TestApp, error_code, eventually, fresh_database, random_secret};

/// The examples a new user tried anonymously against the first wave; all returned data.
const NAMED_ANONYMOUS_READS: [&str; 5] = [
    "query Q { releases(first:3){ totalCount edges{ node{ id name } } } }",
    "query Q { release(id:\"release:rel-2025-05\"){ id waves { id } } }",
    "query Q { entity(id:\"release:rel-2025-05\"){ __typename } }",
    "query Q { node(id:\"release:rel-2025-05\"){ id } }",
    "query Q { version }",
];

fn no_data(body: &Value) -> bool {
    body.get("data").is_none_or(Value::is_null)
}

#[tokio::test]
async fn named_anonymous_reads_are_refused_with_no_data() {
    // Arrange
    let app = TestApp::spawn().await;

    for query in NAMED_ANONYMOUS_READS {
        // Act: as a GraphQL client sends it, with its operation name.
        let body = app
            .post_graphql(json!({ "query": query, "operationName": "Q" }))
            .await;
        let unnamed = app.graphql(query, json!({})).await;

        // Assert
        for answer in [&body, &unnamed] {
            assert_eq!(error_code(answer), "UNAUTHENTICATED", "{query}: {answer}");
            assert!(no_data(answer), "{query}: {answer}");
        }
    }
}

#[tokio::test]
async fn a_login_hidden_beside_a_read_or_in_a_second_operation_does_not_open_the_door() {
    let app = TestApp::spawn().await;
    let login = r#"login(email: "a@example.com", password: "whatever-it-is") { token }"#;
    let documents = [
        (
            format!("mutation {{ {login} }} query R {{ version }}"),
            Some("R"),
        ),
        (
            format!("mutation L {{ {login} }} query R {{ version }}"),
            Some("L"),
        ),
        (format!("mutation L {{ {login} }}"), Some("Elsewhere")),
        (
            "query { version ... on Query { __typename } }".to_owned(),
            None,
        ),
    ];

    for (document, operation) in documents {
        let body = app
            .post_graphql(json!({ "query": document, "operationName": operation }))
            .await;

        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{document}: {body}");
        assert!(no_data(&body), "{document}: {body}");
    }
}

/// A value for a required argument of `type_ref` (introspection's `type { kind name ofType }`).
fn value_for(type_ref: &Value, inputs: &Value) -> String {
    match type_ref["kind"].as_str() {
        Some("NON_NULL") => value_for(&type_ref["ofType"], inputs),
        Some("LIST") => format!("[{}]", value_for(&type_ref["ofType"], inputs)),
        Some("INPUT_OBJECT") => {
            let name = type_ref["name"].as_str().unwrap_or_default();
            let fields = inputs[name]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| f["type"]["kind"] == "NON_NULL")
                .map(|f| {
                    format!(
                        "{}: {}",
                        f["name"].as_str().unwrap_or_default(),
                        value_for(&f["type"], inputs)
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("{{ {fields} }}")
        }
        Some("ENUM") => match type_ref["name"].as_str() {
            Some("OrganizationType") => "PROVIDER".into(),
            _ => "PENDING".into(),
        },
        _ => match type_ref["name"].as_str() {
            Some("Int") => "1".into(),
            Some("ID") => "\"release:r-1\"".into(),
            _ => "\"somebody@example.com\"".into(),
        },
    }
}

/// Whether a field of `type_ref` needs a selection set (it is not a scalar or an enum).
fn returns_object(type_ref: &Value) -> bool {
    match type_ref["kind"].as_str() {
        Some("NON_NULL" | "LIST") => returns_object(&type_ref["ofType"]),
        Some("SCALAR" | "ENUM") => false,
        _ => true,
    }
}

#[tokio::test]
async fn every_root_field_that_touches_data_refuses_an_anonymous_caller_even_past_the_gate() {
    // Arrange: the schema the server runs, with its real services, executed directly so the
    // HTTP gate is not in the way: only the schema's own check stands between caller and data.
    let app = TestApp::spawn().await;
    let (state, _background) = temporal_bff::build_state(app.config.clone())
        .await
        .expect("the state builds");
    let introspection = schema_builder()
        .finish()
        .execute(
            "{ __schema {
                 queryType { fields { name type { kind ofType { kind ofType { kind } } } args { name type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
                 mutationType { fields { name type { kind ofType { kind ofType { kind } } } args { name type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
                 types { name kind inputFields { name type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } }
             } }",
        )
        .await;
    let schema = introspection
        .data
        .into_json()
        .expect("the introspection answer is JSON");
    let inputs: serde_json::Map<String, Value> = schema["__schema"]["types"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["kind"] == "INPUT_OBJECT")
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_owned(),
                t["inputFields"].clone(),
            )
        })
        .collect();
    let inputs = Value::Object(inputs);
    let mut checked = Vec::new();

    for (operation, root) in [("query", "queryType"), ("mutation", "mutationType")] {
        for field in schema["__schema"][root]["fields"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = field["name"].as_str().unwrap_or_default();
            if name == "login" {
                continue; // the one public field
            }
            let args = field["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["type"]["kind"] == "NON_NULL")
                .map(|a| {
                    format!(
                        "{}: {}",
                        a["name"].as_str().unwrap_or_default(),
                        value_for(&a["type"], &inputs)
                    )
                })
                .collect::<Vec<_>>();
            let args = if args.is_empty() {
                String::new()
            } else {
                format!("({})", args.join(", "))
            };
            let selection = if returns_object(&field["type"]) {
                " { __typename }"
            } else {
                ""
            };
            let document = format!("{operation} {{ {name}{args}{selection} }}");

            // Act
            let response = state
                .schema
                .execute(async_graphql::Request::new(&document).data(Authentication::Anonymous))
                .await;

            // Assert
            let json = serde_json::to_value(&response).expect("the answer is JSON");
            let refused = json["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["extensions"]["code"] == "UNAUTHENTICATED");
            let data = json["data"][name].clone();
            assert!(refused, "{name} must refuse an anonymous caller: {json}");
            assert!(data.is_null(), "{name} returned data anonymously: {json}");
            checked.push(name.to_owned());
        }
    }
    for expected in [
        "me",
        "version",
        "node",
        "releases",
        "release",
        "entity",
        "organization",
        "organizations",
        "startOrganizationBootstrap",
    ] {
        assert!(
            checked.iter().any(|c| c == expected),
            "{expected} was not walked"
        );
    }
}

#[tokio::test]
async fn thirty_aliased_release_trees_and_forty_aliased_logins_are_refused_before_any_work() {
    // Arrange
    let app = TestApp::spawn().await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let trees: String = (0..30)
        .map(|i| format!("a{i}: releases(first:100){{edges{{node{{waves{{clusters{{bundle{{apps{{id}}}}}}}}}}}}}} "))
        .collect();
    let logins: String = (0..40)
        .map(|i| {
            format!(
                "a{i}: login(email: \"user{i}@example.com\", password: \"guess-{i}\") {{ token }} "
            )
        })
        .collect();
    let checks_before = app.metric("bff_password_checks_total").await;

    // Act
    let anonymous_trees = app.graphql(&format!("{{ {trees} }}"), json!({})).await;
    let trees_with_token = app
        .graphql_as(&token, &format!("{{ {trees} }}"), json!({}))
        .await;
    let one_page_of_trees = app
        .graphql_as(
            &token,
            "{ releases(first:100){edges{node{waves{clusters{bundle{apps{id}}}}}}} }",
            json!({}),
        )
        .await;
    let spray = app
        .graphql(&format!("mutation {{ {logins} }}"), json!({}))
        .await;
    let spray_with_token = app
        .graphql_as(&token, &format!("mutation {{ {logins} }}"), json!({}))
        .await;

    // Assert
    assert_eq!(
        error_code(&anonymous_trees),
        "BAD_USER_INPUT",
        "shape limits come first"
    );
    assert_eq!(
        error_code(&trees_with_token),
        "BAD_USER_INPUT",
        "{trees_with_token}"
    );
    assert_eq!(
        error_code(&one_page_of_trees),
        "BAD_USER_INPUT",
        "too complex: {one_page_of_trees}"
    );
    assert_eq!(error_code(&spray), "BAD_USER_INPUT", "{spray}");
    assert_eq!(error_code(&spray_with_token), "BAD_USER_INPUT");
    for body in [
        &anonymous_trees,
        &trees_with_token,
        &one_page_of_trees,
        &spray,
        &spray_with_token,
    ] {
        assert!(no_data(body), "{body}");
    }
    assert_eq!(
        app.metric("bff_password_checks_total").await,
        checks_before,
        "not one password was checked"
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

#[tokio::test]
async fn an_answer_over_the_size_limit_is_refused_with_a_clear_error() {
    let app = TestApp::spawn_with(&[
        ("MAX_RESPONSE_BYTES", "2048".into()),
        ("INTROSPECTION", "true".into()),
    ])
    .await;

    let body = app
        .graphql(
            "{ __schema { types { name description fields { name description } } } }",
            json!({}),
        )
        .await;

    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("2048 bytes"),
        "{body}"
    );
    assert!(no_data(&body));
}

#[tokio::test]
async fn every_statement_runs_under_the_configured_timeout() {
    let app = TestApp::spawn_with(&[("DB_STATEMENT_TIMEOUT_MS", "150".into())]).await;
    let pool = temporal_bff::db::connect(&app.config)
        .await
        .expect("the pool connects");

    let setting: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&pool)
        .await
        .unwrap_or_default();
    let slow = sqlx::query("SELECT pg_sleep(1)").execute(&pool).await;

    assert_eq!(setting, "150ms");
    assert!(slow.is_err(), "a statement over the timeout is cancelled");
}

#[tokio::test]
async fn a_client_request_id_is_kept_only_when_it_is_short_and_plain() {
    let app = TestApp::spawn().await;
    let id_for = |sent: String| {
        let app = &app;
        async move {
            let response = app
                .http
                .get(app.url("/health"))
                .header("x-request-id", sent)
                .send()
                .await
                .expect("the request is answered");
            response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        }
    };

    let plain = id_for("trace-01.ab_C".into()).await;
    let long = id_for("a".repeat(129)).await;
    let odd = id_for("id with spaces; and=more".into()).await;

    assert_eq!(plain, "trace-01.ab_C");
    assert_eq!(long.len(), 36, "replaced by a UUID: {long}");
    assert_eq!(odd.len(), 36, "replaced by a UUID: {odd}");
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
