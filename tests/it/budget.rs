//! No request costs more than its caller is allowed: introspection priced by what it returns
//! and kept as bytes, a message budget per socket, a concurrency limit for every path in,
//! logins that cannot take the pool, and the revocation and probing holes closed.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    fixtures::login_from,
    fixtures::seed_closed_release,
    fixtures::{Heard, RawSocket, platform_token},
    harness::{PASSWORD, TestApp, error_code},
};

const STANDARD_INTROSPECTION: [(&str, &str); 3] = [
    (
        "graphiql",
        include_str!("../corpus/introspection/graphiql.graphql"),
    ),
    (
        "codegen",
        include_str!("../corpus/introspection/codegen.graphql"),
    ),
    (
        "apollo",
        include_str!("../corpus/introspection/apollo.graphql"),
    ),
];

/// The review's attack: `roots` aliased `__type(name: "Node")`, each nesting
/// `possibleTypes { interfaces { … } }` `pairs` times.
fn node_attack(roots: usize, pairs: usize) -> String {
    let mut inner = String::from("name");
    for _ in 0..pairs {
        inner = format!("name possibleTypes {{ name interfaces {{ {inner} }} }}");
    }
    let aliases: String = (0..roots)
        .map(|i| format!("t{i}: __type(name: \"Node\") {{ {inner} }} "))
        .collect();
    format!("{{ {aliases} }}")
}

fn type_count(body: &Value) -> usize {
    body["data"]["__schema"]["types"]
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test]
async fn graphiql_codegen_and_apollo_introspect_when_signed_in_and_anonymous_callers_only_under_dev()
 {
    // Arrange: production defaults, and the switch `temporal-bff dev` sets.
    let production = TestApp::spawn().await;
    let token = production.token_for("viewer@example.com", None, &[]).await;
    let dev = TestApp::spawn_with(&[("INTROSPECTION", "true".into())]).await;

    for (tool, query) in STANDARD_INTROSPECTION {
        // Act
        let signed_in = production.graphql_as(&token, query, json!({})).await;
        let anonymous = production.graphql(query, json!({})).await;
        let in_dev = dev.graphql(query, json!({})).await;

        // Assert
        assert!(signed_in["errors"].is_null(), "{tool}: {signed_in}");
        assert!(type_count(&signed_in) > 20, "{tool}: {signed_in}");
        assert_eq!(error_code(&anonymous), "UNAUTHENTICATED", "{tool}");
        assert!(anonymous["data"].is_null(), "{tool}");
        assert!(in_dev["errors"].is_null(), "{tool}: {in_dev}");
        assert_eq!(type_count(&in_dev), type_count(&signed_in), "{tool}");
    }
}

#[tokio::test]
async fn nested_introspection_is_refused_for_its_size_before_anything_runs_even_when_signed_in() {
    // Arrange
    let app = TestApp::spawn_with(&[("INTROSPECTION", "true".into())]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let attack = node_attack(20, 8);

    // Act
    let anonymous = app.graphql(&attack, json!({})).await;
    let signed_in = app.graphql_as(&token, &attack, json!({})).await;
    let small = app.graphql(&node_attack(1, 1), json!({})).await;

    // Assert: refused by the introspection budget (not by the answer-size cap, which would
    // only have refused it after building the whole answer in memory).
    for answer in [&anonymous, &signed_in] {
        assert_eq!(error_code(answer), "BAD_USER_INPUT", "{answer}");
        assert!(answer["data"].is_null(), "{answer}");
        let message = answer["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("introspection"), "{message}");
    }
    assert!(small["errors"].is_null(), "{small}");
}

#[tokio::test]
async fn a_repeated_introspection_is_answered_from_kept_bytes() {
    // Arrange
    let app = TestApp::spawn().await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let (_, graphiql) = STANDARD_INTROSPECTION[0];
    let send = || async {
        app.http
            .post(app.url("/graphql"))
            .bearer_auth(&token)
            .json(&json!({ "query": graphiql, "operationName": "IntrospectionQuery" }))
            .send()
            .await
            .expect("the server answers")
            .bytes()
            .await
            .expect("a body")
    };

    // Act
    let first = send().await;
    let kept_before = app.metric("bff_introspection_answers_kept_total").await;
    let second = send().await;
    let kept_after = app.metric("bff_introspection_answers_kept_total").await;

    // Assert
    assert_eq!(first, second);
    assert_eq!(kept_after - kept_before, 1.0);
}

#[tokio::test]
async fn a_socket_that_churns_subscribe_and_complete_is_closed_with_4429_and_its_releases_are_not_read()
 {
    // Arrange
    let app = TestApp::spawn().await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let mut socket = RawSocket::open(&app).await;
    socket.init(&token).await;

    // Act: up to 50,000 subscribe/complete pairs, each for a new release ID.
    let mut pairs = 0;
    for i in 0..50_000 {
        let subscribe = json!({ "id": format!("s{i}"), "type": "subscribe", "payload": {
            "query": format!("subscription {{ releaseUpdated(id: \"release:churn-{i}\") {{ id }} }}") } });
        let complete = json!({ "id": format!("s{i}"), "type": "complete" });
        if !socket.try_send_json(subscribe).await || !socket.try_send_json(complete).await {
            break;
        }
        pairs += 1;
    }
    let mut closed = None;
    for _ in 0..1000 {
        match socket.heard().await {
            Heard::Closed(code) => {
                closed = Some(code);
                break;
            }
            Heard::Nothing => break,
            Heard::Message(_) => {}
        }
    }
    let statements = app.metric("bff_sql_statements_total").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = app.metric("bff_sql_statements_total").await;

    // Assert
    assert_eq!(closed, Some(4429), "after {pairs} pairs");
    assert!(
        pairs < 50_000,
        "the socket was closed before the flood ended"
    );
    assert_eq!(
        later, statements,
        "nobody follows those releases: nothing reads them"
    );
}

#[tokio::test]
async fn past_max_in_flight_graphql_and_rest_are_answered_429_at_once() {
    // Arrange: one request at a time; whole trees keep it busy.
    let app = TestApp::spawn_with(&[("MAX_IN_FLIGHT", "1".into())]).await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    seed_closed_release(&app, "busy", "Busy", 1, "SUCCEEDED").await;

    // Act
    let requests = (0..40).map(|i| {
        let request = if i % 2 == 0 {
            app.http
                .post(app.url("/graphql"))
                .json(&json!({ "query": "{ releases(first: 50) { totalCount } }" }))
        } else {
            app.http.get(app.url("/api/releases"))
        };
        request.bearer_auth(&token).send()
    });
    let answers = futures::future::join_all(requests).await;

    // Assert
    let mut limited = 0;
    for answer in answers {
        let answer = answer.expect("the server answers");
        let status = answer.status().as_u16();
        let graphql = answer.url().path() == "/graphql";
        let retry_after = answer.headers().get("retry-after").cloned();
        let body: Value = answer.json().await.expect("a JSON body");
        assert!(status == 200 || status == 429, "{status}: {body}");
        if status == 429 {
            limited += 1;
            assert_eq!(retry_after.as_ref().map(|v| v.as_bytes()), Some(&b"1"[..]));
            if graphql {
                assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
            } else {
                assert!(body["detail"].is_string(), "{body}");
            }
        }
    }
    assert!(limited > 0, "forty at once past a limit of one");
}

#[tokio::test]
async fn a_flood_of_logins_is_answered_rate_limited_and_never_takes_the_pool() {
    // Arrange: the address limits out of the way, so only the waiting room bounds them.
    let app = TestApp::spawn_with(&[
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "100000".into()),
        ("LOGIN_MAX_FAILURES_PER_EMAIL", "100000".into()),
        ("LOGIN_MAX_FAILURES", "1000".into()),
    ])
    .await;
    app.create_user("owner@example.com", None, &[]).await;

    // Act: 200 logins for one e-mail at once, all queueing on its throttle rows.
    let logins = (0..200).map(|i| {
        app.login(
            "owner@example.com",
            if i == 0 { PASSWORD } else { "wrong guess" },
        )
    });
    let answers = futures::future::join_all(logins).await;
    let pool_max = app.metric("bff_db_pool_max").await;
    let pool_size = app.metric("bff_db_pool_connections").await;

    // Assert
    let codes: Vec<&str> = answers.iter().map(error_code).collect();
    assert!(
        codes
            .iter()
            .all(|c| ["UNAUTHENTICATED", "RATE_LIMITED", "<no error code>"].contains(c)),
        "{codes:?}"
    );
    assert!(
        codes.contains(&"RATE_LIMITED"),
        "past the waiting room: {codes:?}"
    );
    assert!(
        pool_size < pool_max,
        "logins never took the whole pool ({pool_size} of {pool_max})"
    );
}

#[tokio::test]
async fn a_deleted_users_own_token_stops_working_while_a_platform_token_keeps_its_claims() {
    // Arrange: the user's row is read at every request.
    let app = TestApp::spawn_with(&[("AUTH_USER_CACHE_MS", "0".into())]).await;
    let token = app
        .token_for("leaver@example.com", None, &["organization.view_all"])
        .await;
    let before = app.graphql_as(&token, "{ me { email } }", json!({})).await;

    // Act
    sqlx::query("DELETE FROM users WHERE email = 'leaver@example.com'")
        .execute(&app.db)
        .await
        .expect("the user is deleted");
    let after = app.graphql_as(&token, "{ me { email } }", json!({})).await;
    let mut socket = RawSocket::open(&app).await;
    socket
        .send_json(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
        .await;
    let socket_heard = socket.heard().await;

    // Assert
    assert_eq!(
        before["data"]["me"]["email"], "leaver@example.com",
        "{before}"
    );
    assert_eq!(error_code(&after), "UNAUTHENTICATED", "{after}");
    assert!(after["data"].is_null());
    assert_eq!(socket_heard, Heard::Closed(4401));
}

#[tokio::test]
async fn every_refused_socket_token_closes_with_the_same_reason() {
    // Arrange
    let app = TestApp::spawn_with(&[("AUTH_USER_CACHE_MS", "0".into())]).await;
    let tokens = crate::fixtures::tokens(&app).await;

    // Act
    let mut reasons = Vec::new();
    for kind in ["wrong_key", "disabled_user", "wrong_iss", "garbage"] {
        let mut socket = RawSocket::open(&app).await;
        socket
            .send_json(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", tokens[kind]) } }))
            .await;
        reasons.push((kind, socket.close_reason().await));
    }

    // Assert
    for (kind, reason) in &reasons {
        assert_eq!(
            reason.as_ref().map(|(code, text)| (*code, text.as_str())),
            Some((4401, "Unauthorized")),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn addresses_of_one_ipv6_slash_64_share_one_throttle() {
    // Arrange: the test client is the trusted proxy, so X-Forwarded-For names the client.
    let app = TestApp::spawn_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1/32,::1/128".into()),
        ("LOGIN_MAX_FAILURES", "3".into()),
        ("LOGIN_MAX_FAILURES_PER_ADDRESS", "6".into()),
    ])
    .await;
    app.create_user("victim@example.com", None, &[]).await;

    // Act: each guess from a fresh address of one /64.
    let mut pair = Vec::new();
    for i in 1..=5 {
        let address = format!("2001:db8:77:1::{i:x}");
        pair.push(login_from(&app, &address, "victim@example.com", "wrong guess").await);
    }
    let mut spray = Vec::new();
    for i in 1..=8 {
        let address = format!("2001:db8:88:1:{i:x}::1");
        spray.push(login_from(&app, &address, &format!("p{i}@example.com"), "guess").await);
    }
    let other_64 = login_from(&app, "2001:db8:77:2::1", "victim@example.com", PASSWORD).await;

    // Assert
    let codes: Vec<&str> = pair.iter().map(error_code).collect();
    assert_eq!(codes[3..], ["RATE_LIMITED", "RATE_LIMITED"], "{codes:?}");
    let spray_codes: Vec<&str> = spray.iter().map(error_code).collect();
    assert_eq!(spray_codes.last(), Some(&"RATE_LIMITED"), "{spray_codes:?}");
    assert!(other_64["data"]["login"]["token"].is_string(), "{other_64}");
}

#[tokio::test]
async fn the_email_lock_grows_and_the_owner_at_a_clean_address_still_gets_in() {
    // Arrange: the e-mail locks after 4 failures from anywhere, for 2 s, then 4 s.
    let app = TestApp::spawn_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1/32,::1/128".into()),
        ("LOGIN_MAX_FAILURES", "100".into()),
        ("LOGIN_MAX_FAILURES_PER_EMAIL", "4".into()),
        ("LOGIN_LOCKOUT_SECONDS", "2".into()),
    ])
    .await;
    app.create_user("owner@example.com", None, &[]).await;
    let guess = |i: u32| login_from_owned(&app, format!("203.0.113.{i}"));

    // Act: strangers at four addresses lock the e-mail, wait it out, and lock it again.
    for i in 1..=4 {
        guess(i).await;
    }
    let first_lock = retry_after(&guess(1).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 1..=4 {
        guess(i).await;
    }
    let second_lock = retry_after(&guess(2).await);
    let fresh_stranger = guess(50).await;
    let fresh_stranger_again = guess(50).await;
    let owner = login_from(&app, "198.51.100.7", "owner@example.com", PASSWORD).await;

    // Assert
    assert!(first_lock.is_some_and(|s| s <= 2), "{first_lock:?}");
    assert!(
        second_lock.is_some_and(|s| s > 2),
        "the second lock is longer: {second_lock:?}"
    );
    assert_eq!(
        error_code(&fresh_stranger),
        "UNAUTHENTICATED",
        "one try from a fresh address"
    );
    assert_eq!(
        error_code(&fresh_stranger_again),
        "RATE_LIMITED",
        "and then the lock holds it"
    );
    assert!(owner["data"]["login"]["token"].is_string(), "{owner}");
}

async fn login_from_owned(app: &TestApp, address: String) -> Value {
    login_from(app, &address, "owner@example.com", "wrong guess").await
}

fn retry_after(answer: &Value) -> Option<i64> {
    (error_code(answer) == "RATE_LIMITED")
        .then(|| answer["errors"][0]["extensions"]["retryAfter"].as_i64())
        .flatten()
}

#[tokio::test]
async fn an_anonymous_persisted_query_hash_learns_nothing_about_registered_documents() {
    // Arrange: a signed-in user registers a document.
    let app = TestApp::spawn().await;
    let token = app.token_for("viewer@example.com", None, &[]).await;
    let document = "{ releases(first: 1) { totalCount } }";
    let hash = temporal_bff::http::persisted::sha256_hex(document);
    let extensions = |hash: &str| json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let registered = app
        .http
        .post(app.url("/graphql"))
        .bearer_auth(&token)
        .json(&json!({ "query": document, "extensions": extensions(&hash) }))
        .send()
        .await
        .expect("the server answers")
        .json::<Value>()
        .await
        .expect("JSON");

    // Act
    let known = app
        .post_graphql(json!({ "extensions": extensions(&hash) }))
        .await;
    let unknown = app
        .post_graphql(json!({ "extensions": extensions(&"0".repeat(64)) }))
        .await;

    // Assert
    assert!(registered["errors"].is_null(), "{registered}");
    assert_eq!(known, unknown);
    assert_eq!(error_code(&known), "UNAUTHENTICATED");
}

#[tokio::test]
async fn members_see_an_allow_listed_audit_trail_and_view_all_sees_it_raw() {
    // Arrange: a bootstrap of the member's organization, recorded with a raw error.
    let app = TestApp::spawn().await;
    let org = Uuid::new_v4();
    let member = app.token_for("member@example.com", Some(org), &[]).await;
    let admin = app
        .token_for("admin@example.com", None, &["organization.view_all"])
        .await;
    sqlx::query(
        "INSERT INTO domain_events (event_type, aggregate_type, aggregate_id, event_data, event_metadata) VALUES
         ('organization.created', 'organization', $1, $2, $3),
         ('organization.subdomain.verification_failed', 'organization', $1, $4, $3)",
    )
    .bind(org)
    .bind(json!({ "organizationId": org, "name": "Acme", "type": "provider", "slug": "acme", "fqdn": "acme.example.test", "at": "2025-01-01T10:00:00Z" }))
    .bind(json!({ "workflow_id": format!("org-bootstrap-{org}"), "user_id": "00000000-0000-0000-0000-00000000beef", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "source": "worker" }))
    .bind(json!({ "fqdn": "acme.example.test", "attempt": 1, "reason": "dial tcp 10.0.0.7:53: connection refused", "at": "2025-01-01T10:00:01Z" }))
    .execute(&app.db)
    .await
    .expect("events inserted");
    let query = "query($id: ID!) { organization(id: $id) { bootstrap { events { edges { node { eventType data metadata } } } } } }";
    let variables = json!({ "id": format!("organization:{org}") });

    // Act
    let as_member = app.graphql_as(&member, query, variables.clone()).await;
    let as_admin = app.graphql_as(&admin, query, variables).await;

    // Assert
    let events =
        |body: &Value| body["data"]["organization"]["bootstrap"]["events"]["edges"].clone();
    let member_events = events(&as_member);
    let admin_events = events(&as_admin);
    assert_eq!(
        member_events.as_array().map(Vec::len),
        Some(2),
        "{as_member}"
    );
    let text = member_events.to_string();
    for secret in ["10.0.0.7", "beef", "traceparent"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let failed = member_events
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["node"]["eventType"] == "organization.subdomain.verification_failed")
        .expect("the failed verification is in the trail");
    assert_eq!(
        failed["node"]["data"],
        json!({ "fqdn": "acme.example.test", "attempt": 1, "at": "2025-01-01T10:00:01Z" })
    );
    assert_eq!(
        member_events[0]["node"]["metadata"],
        json!({ "source": "worker" })
    );
    assert!(admin_events.to_string().contains("10.0.0.7"), "{as_admin}");
}

#[tokio::test]
async fn two_service_tokens_without_uuid_subjects_keep_their_own_idempotency_keys() {
    // Arrange
    let app = TestApp::spawn().await;
    let start = "mutation($input: StartOrganizationBootstrapInput!) {
      startOrganizationBootstrap(input: $input) { organizationId status } }";
    let input = |subdomain: &str| {
        json!({ "input": { "name": "Acme", "subdomain": subdomain, "type": "PROVIDER",
            "idempotencyKey": "request-1",
            "adminUsers": [{ "email": "ada@acme.example", "firstName": "Ada", "lastName": "Lovelace" }] } })
    };
    let suffix = &Uuid::new_v4().simple().to_string()[..8];
    let a = platform_token(&app, "svc-a", &["organization.create_root"]);
    let b = platform_token(&app, "svc-b", &["organization.create_root"]);

    // Act: the same key from two callers, each for its own organization.
    let from_a = app
        .graphql_as(&a, start, input(&format!("a-{suffix}")))
        .await;
    let from_b = app
        .graphql_as(&b, start, input(&format!("b-{suffix}")))
        .await;
    let again_a = app
        .graphql_as(&a, start, input(&format!("a-{suffix}")))
        .await;

    // Assert
    let org = |body: &Value| body["data"]["startOrganizationBootstrap"]["organizationId"].clone();
    assert!(org(&from_a).is_string(), "{from_a}");
    assert!(org(&from_b).is_string(), "svc-b's key is its own: {from_b}");
    assert_ne!(org(&from_a), org(&from_b));
    assert_eq!(
        again_a["data"]["startOrganizationBootstrap"]["status"],
        "ALREADY_EXISTS"
    );
    assert_eq!(org(&again_a), org(&from_a));
}

/// The 99th percentile of `samples` (the largest but one in a hundred).
fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    let index = (samples.len() * 99).div_ceil(100).saturating_sub(1);
    samples.get(index).copied().unwrap_or_default()
}

/// `count` release reads by `token`, one after another: how long each took, and whether all
/// answered whole.
async fn timed_reads(app: &TestApp, token: &str, count: usize) -> (Vec<Duration>, bool) {
    let query = "{ release(id: \"release:mine\") { id status waves { id } } }";
    let mut times = Vec::with_capacity(count);
    let mut all_ok = true;
    for _ in 0..count {
        let started = std::time::Instant::now();
        let body = app.graphql_as(token, query, json!({})).await;
        times.push(started.elapsed());
        all_ok &= body["errors"].is_null() && body["data"]["release"]["id"] == "release:mine";
    }
    (times, all_ok)
}

// Two threads, so the server, the floods and the reader are not all one thread's turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_reader_keeps_answering_while_sockets_rest_and_logins_flood_and_the_pool_never_runs_out()
 {
    // Arrange
    let app = TestApp::spawn_with(&[("LOGIN_MAX_FAILURES_PER_ADDRESS", "100000".into())]).await;
    let reader = app.token_for("reader@example.com", None, &[]).await;
    let flooder = app.token_for("flooder@example.com", None, &[]).await;
    seed_closed_release(&app, "mine", "Mine", 1, "SUCCEEDED").await;
    let (mut quiet, quiet_ok) = timed_reads(&app, &reader, 50).await;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stopped = || stop.load(std::sync::atomic::Ordering::Relaxed);

    // Act: the floods and the reader at once; the pool is sampled throughout.
    let churn = async {
        let (mut pairs, mut closes) = (0_usize, Vec::new());
        while pairs < 50_000 && !stopped() {
            let mut socket = RawSocket::open(&app).await;
            socket.init(&flooder).await;
            loop {
                let id = format!("s{pairs}");
                let subscribe = json!({ "id": id, "type": "subscribe", "payload": {
                    "query": format!("subscription {{ releaseUpdated(id: \"release:churn-{pairs}\") {{ id }} }}") } });
                if !socket.try_send_json(subscribe).await
                    || !socket
                        .try_send_json(json!({ "id": id, "type": "complete" }))
                        .await
                {
                    break;
                }
                pairs += 1;
                if pairs % 20 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            closes.push(socket.close_reason().await.map(|(code, _)| code));
        }
        (pairs, closes)
    };
    let rest = async {
        let mut statuses = Vec::new();
        while !stopped() && statuses.len() < 2_000 {
            let batch = (0..8).map(|i| {
                let request = if i % 2 == 0 {
                    app.http.get(app.url("/api/releases")).bearer_auth(&flooder)
                } else {
                    app.http.post(app.url("/api/auth/login")).form(&[
                        ("username", "reader@example.com"),
                        ("password", "wrong guess"),
                    ])
                };
                request.send()
            });
            for answer in futures::future::join_all(batch).await {
                statuses.push(answer.map_or(0, |a| a.status().as_u16()));
            }
        }
        statuses
    };
    let sample_pool = async {
        let mut busiest = 0.0_f64;
        let mut max = 0.0_f64;
        while !stopped() {
            let size = app.metric("bff_db_pool_connections").await;
            let idle = app.metric("bff_db_pool_idle").await;
            max = app.metric("bff_db_pool_max").await;
            busiest = busiest.max(size - idle);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (busiest, max)
    };
    let read = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let measured = timed_reads(&app, &reader, 50).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        measured
    };
    let ((pairs, closes), statuses, (busiest, pool_max), (mut flooded, flooded_ok)) =
        tokio::join!(churn, rest, sample_pool, read);

    // Assert
    assert!(quiet_ok && flooded_ok, "every read answered whole");
    assert!(
        statuses.iter().all(|s| matches!(s, 200 | 401 | 429)),
        "no 5xx: {statuses:?}"
    );
    // A socket the client keeps writing to after the server's close may be reset before its
    // close frame is read (`None`); no socket ended any other way.
    assert!(
        closes.iter().all(|c| matches!(c, Some(4429) | None))
            && closes.iter().filter(|c| c.is_some()).count() * 2 >= closes.len(),
        "{closes:?}"
    );
    assert!(
        busiest < pool_max,
        "the pool never ran out ({busiest} of {pool_max} in use)"
    );
    eprintln!(
        "flood: reader p99 {:?} quiet, {:?} flooded; {pairs} subscribe/complete pairs over {} sockets; {} REST/login requests; at most {busiest} of {pool_max} connections in use",
        p99(&mut quiet),
        p99(&mut flooded),
        closes.len(),
        statuses.len()
    );
}

#[tokio::test]
async fn text_postgres_cannot_store_is_refused_as_bad_input_not_an_internal_error() {
    // Arrange: schemathesis found `search=…%00…` answered 500.
    let app = TestApp::spawn().await;
    let token = app
        .token_for("operator@example.com", None, &["release.control"])
        .await;

    // Act
    let rest = app
        .http
        .get(app.url("/api/releases?search=a%00b"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("the server answers");
    let rest_status = rest.status().as_u16();
    let search = app
        .graphql_as(
            &token,
            "query($s: String) { releases(filter: { search: $s }) { totalCount } }",
            json!({ "s": "a\u{0}b" }),
        )
        .await;
    let reason = app
        .graphql_as(
            &token,
            "mutation($r: String) { cancelRelease(id: \"release:any\", reason: $r) { id } }",
            json!({ "r": "stop\u{0}now" }),
        )
        .await;

    // Assert
    assert_eq!(rest_status, 422);
    assert_eq!(error_code(&search), "BAD_USER_INPUT", "{search}");
    assert_eq!(error_code(&reason), "BAD_USER_INPUT", "{reason}");
    assert_eq!(
        reason["errors"][0]["extensions"]["field"], "reason",
        "{reason}"
    );
}
