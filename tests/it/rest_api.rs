//! The release BFF's REST routes on the real stack: each answers as its OpenAPI document says
//! (checked with a JSON Schema validator against `/api/openapi.json`, which a real OpenAPI
//! validator checks too), returns the same data as the equivalent GraphQL query, and fails
//! the way FastAPI does (`{ "detail": … }` with 401, 404 and 422).

use serde_json::{Value, json};

use crate::{
    fixtures::{foreign_release, set_status},
    harness::{PASSWORD, TestApp},
};

/// GraphQL data as the REST routes spell it: snake_case names, and times in one notation
/// (`Z`, where GraphQL writes `+00:00`).
fn snake(value: Value) -> Value {
    canon(temporal_bff::http::rest::snake_keys(value))
}

/// `value` with every RFC 3339 time written the same way.
fn canon(value: Value) -> Value {
    match value {
        Value::String(text) => match chrono::DateTime::parse_from_rfc3339(&text) {
            Ok(at) => Value::String(
                at.with_timezone(&chrono::Utc)
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ),
            Err(_) => Value::String(text),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(canon).collect()),
        Value::Object(fields) => {
            Value::Object(fields.into_iter().map(|(k, v)| (k, canon(v))).collect())
        }
        other => other,
    }
}

struct Rest<'a> {
    app: &'a TestApp,
    doc: Value,
}

impl<'a> Rest<'a> {
    async fn new(app: &'a TestApp) -> Self {
        let doc: Value = app
            .http
            .get(app.url("/api/openapi.json"))
            .send()
            .await
            .expect("the request is answered")
            .json()
            .await
            .expect("the answer is JSON");
        Self { app, doc }
    }

    /// `GET path` with `token`: (status, body), the body checked against the document's
    /// schema for `route` and that status.
    async fn get(&self, route: &str, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.app.http.get(self.app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the request is answered");
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        self.conforms(route, "get", status, &body);
        (status, body)
    }

    /// `POST /api/auth/login` with `body` as `content_type`.
    async fn login(&self, content_type: &str, body: String) -> (u16, Option<String>, Value) {
        let response = self
            .app
            .http
            .post(self.app.url("/api/auth/login"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("the request is answered");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Value = response.json().await.expect("the answer is JSON");
        self.conforms("/api/auth/login", "post", status, &body);
        (status, retry_after, body)
    }

    /// Panics unless `body` fits the schema `route` documents for `method` and `status`.
    fn conforms(&self, route: &str, method: &str, status: u16, body: &Value) {
        let schema = &self.doc["paths"][route][method]["responses"][status.to_string()]["content"]
            ["application/json"]["schema"];
        assert!(
            !schema.is_null(),
            "{method} {route} answered {status}, which its document does not list: {body}"
        );
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::validator_for(&root).expect("the schema compiles");
        if let Err(error) = validator.validate(body) {
            panic!("{method} {route} {status} does not answer as documented: {error}\n{body}");
        }
    }
}

/// A user and their token from the REST login (form-urlencoded, as OAuth2 clients send it).
async fn user_token(app: &TestApp, rest: &Rest<'_>) -> String {
    app.create_user("dash@example.com", None, &[]).await;
    let (status, _, body) = rest
        .login(
            "application/x-www-form-urlencoded",
            format!(
                "username=dash%40example.com&password={}",
                PASSWORD.replace(' ', "+")
            ),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert!(
        body["expires_in"].as_i64().is_some_and(|s| s > 3000),
        "{body}"
    );
    body["access_token"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn every_rest_route_answers_as_documented_with_the_same_data_as_graphql() {
    // Arrange: one finished release and one rolling out, written as another team's worker would.
    let app = TestApp::spawn().await;
    let rest = Rest::new(&app).await;
    let token = user_token(&app, &rest).await;
    let done = foreign_release(&app, 2).await;
    for node in ["app-1", "app-2", "release"] {
        set_status(&app, &done, node, "SUCCEEDED").await;
    }
    let running = foreign_release(&app, 2).await;
    set_status(&app, &running, "app-1", "IN_PROGRESS").await;
    let key = done.trim_start_matches("release:");
    const OWN: &str = "id key name status message startedAt completedAt source asOf progress { total succeeded failed inProgress pending percent }";

    // Act
    let (_, me) = rest.get("/api/auth/me", "/api/auth/me", Some(&token)).await;
    let (_, json_login, json_body) = rest
        .login(
            "application/json",
            json!({ "username": "dash@example.com", "password": PASSWORD }).to_string(),
        )
        .await;
    let (_, page1) = rest
        .get(
            "/api/releases",
            "/api/releases?page=1&page_size=1",
            Some(&token),
        )
        .await;
    let (_, page2) = rest
        .get(
            "/api/releases",
            "/api/releases?page=2&page_size=1",
            Some(&token),
        )
        .await;
    let (_, succeeded) = rest
        .get(
            "/api/releases",
            "/api/releases?status=SUCCEEDED&search=push",
            Some(&token),
        )
        .await;
    let (_, by_key) = rest
        .get(
            "/api/releases/{release_id}",
            &format!("/api/releases/{key}"),
            Some(&token),
        )
        .await;
    let (_, by_id) = rest
        .get(
            "/api/releases/{release_id}",
            &format!("/api/releases/{done}"),
            Some(&token),
        )
        .await;
    let (_, tree) = rest
        .get(
            "/api/releases/{release_id}/hierarchy",
            &format!("/api/releases/{key}/hierarchy"),
            Some(&token),
        )
        .await;
    let (_, wave) = rest
        .get(
            "/api/entities/{entity_id}",
            &format!("/api/entities/wave:{key}/w"),
            Some(&token),
        )
        .await;
    let (_, short_wave) = rest
        .get(
            "/api/entities/{entity_id}",
            &format!("/api/entities/wave:w?release_id={key}"),
            Some(&token),
        )
        .await;
    let (_, app_node) = rest
        .get(
            "/api/entities/{entity_id}",
            &format!("/api/entities/app:{key}/w/c/b/app-1"),
            Some(&token),
        )
        .await;
    let graphql = app
        .graphql_as(
            &token,
            &format!(
                "query($id: ID!, $wave: ID!) {{ me {{ id email role orgId permissions }}
                   releases(first: 2) {{ totalCount edges {{ node {{ {OWN} }} }} }}
                   release(id: $id) {{ {OWN} waves {{ key clusters {{ bundle {{ apps {{ key status }} }} }} }} }}
                   entity(id: $wave) {{ ... on Wave {{ id key name status position }} }} }}"
            ),
            json!({ "id": done, "wave": format!("wave:{key}/w") }),
        )
        .await;

    // Assert
    let data = snake(graphql["data"].clone());
    let (me, page1, page2, by_key) = (canon(me), canon(page1), canon(page2), canon(by_key));
    assert_eq!(me, data["me"], "me");
    assert_eq!(json_login, None);
    assert!(
        json_body["access_token"].is_string(),
        "JSON logins work too: {json_body}"
    );
    let newest = &data["releases"]["edges"];
    assert_eq!(
        (
            page1["total"].clone(),
            page1["page"].clone(),
            page1["page_size"].clone()
        ),
        (json!(2), json!(1), json!(1))
    );
    assert_eq!(
        page1["items"],
        json!([newest[0]["node"]]),
        "page 1 is GraphQL's newest"
    );
    assert_eq!(
        page2["items"],
        json!([newest[1]["node"]]),
        "page 2 the next"
    );
    assert_eq!(succeeded["total"], 1);
    assert_eq!(succeeded["items"][0]["id"], done.as_str());
    let own = |value: &Value| {
        let mut value = value.clone();
        if let Some(fields) = value.as_object_mut() {
            fields.remove("waves");
        }
        value
    };
    assert_eq!(
        by_key,
        own(&data["release"]),
        "one release is GraphQL's release"
    );
    assert_eq!(canon(by_id), by_key, "by key or by global ID");
    assert_eq!(tree["progress"]["percent"], 100.0);
    assert_eq!(
        tree["waves"][0]["clusters"][0]["bundle"]["apps"]
            .as_array()
            .map(|apps| apps
                .iter()
                .map(|a| (a["key"].clone(), a["status"].clone()))
                .collect::<Vec<_>>()),
        data["release"]["waves"][0]["clusters"][0]["bundle"]["apps"]
            .as_array()
            .map(|apps| apps
                .iter()
                .map(|a| (a["key"].clone(), a["status"].clone()))
                .collect::<Vec<_>>()),
        "the tree's apps are GraphQL's"
    );
    assert_eq!(wave["kind"], "wave");
    assert_eq!(
        (wave["id"].clone(), wave["position"].clone()),
        (
            data["entity"]["id"].clone(),
            data["entity"]["position"].clone()
        )
    );
    assert_eq!(
        short_wave, wave,
        "the short form with release_id is the same node"
    );
    assert_eq!(
        (app_node["kind"].clone(), app_node["status"].clone()),
        (json!("app"), json!("SUCCEEDED"))
    );
}

#[tokio::test]
async fn rest_errors_are_fastapi_details_with_401_404_422_and_429() {
    // Arrange
    let app = TestApp::spawn_with(&[("LOGIN_MAX_FAILURES", "2".into())]).await;
    let rest = Rest::new(&app).await;
    let token = user_token(&app, &rest).await;
    let release = foreign_release(&app, 1).await;

    // Act
    let anonymous = [
        rest.get("/api/auth/me", "/api/auth/me", None).await,
        rest.get("/api/releases", "/api/releases", None).await,
        rest.get(
            "/api/releases/{release_id}",
            &format!("/api/releases/{release}"),
            None,
        )
        .await,
        rest.get(
            "/api/releases/{release_id}/hierarchy",
            &format!("/api/releases/{release}/hierarchy"),
            None,
        )
        .await,
        rest.get(
            "/api/entities/{entity_id}",
            &format!("/api/entities/{release}"),
            None,
        )
        .await,
        rest.get("/api/releases", "/api/releases", Some("forged.token.here"))
            .await,
    ];
    let missing = [
        rest.get(
            "/api/releases/{release_id}",
            "/api/releases/no-such-release",
            Some(&token),
        )
        .await,
        rest.get(
            "/api/releases/{release_id}/hierarchy",
            "/api/releases/no-such-release/hierarchy",
            Some(&token),
        )
        .await,
        rest.get(
            "/api/entities/{entity_id}",
            "/api/entities/wave:no-such-release/w",
            Some(&token),
        )
        .await,
    ];
    let mut invalid = Vec::new();
    for query in [
        "page_size=0",
        "page_size=101",
        "page_size=lots",
        "page=0",
        "status=NOPE",
    ] {
        invalid.push(
            rest.get(
                "/api/releases",
                &format!("/api/releases?{query}"),
                Some(&token),
            )
            .await,
        );
    }
    let bad_id = rest
        .get(
            "/api/releases/{release_id}",
            "/api/releases/release:NOT%20A%20KEY",
            Some(&token),
        )
        .await;
    let no_password = rest
        .login(
            "application/x-www-form-urlencoded",
            "username=dash%40example.com".into(),
        )
        .await;
    let mut wrong = Vec::new();
    for _ in 0..3 {
        wrong.push(
            rest.login(
                "application/x-www-form-urlencoded",
                "username=dash%40example.com&password=wrong-password".into(),
            )
            .await,
        );
    }

    // Assert
    for (status, body) in &anonymous {
        assert_eq!(*status, 401, "{body}");
        assert!(body["detail"].is_string(), "{body}");
    }
    for (status, body) in &missing {
        assert_eq!(*status, 404, "{body}");
    }
    for (status, body) in &invalid {
        assert_eq!(*status, 422, "{body}");
        assert_eq!(body["detail"][0]["loc"][0], "query", "{body}");
    }
    assert_eq!(invalid[0].1["detail"][0]["loc"][1], "page_size");
    assert_eq!(bad_id.0, 422, "{}", bad_id.1);
    assert_eq!(
        (no_password.0, no_password.2["detail"][0]["loc"].clone()),
        (422, json!(["body", "password"]))
    );
    assert_eq!(wrong[0].0, 401, "{wrong:?}");
    let throttled = wrong.iter().find(|(status, _, _)| *status == 429);
    assert!(
        throttled.is_some_and(|(_, retry_after, _)| retry_after
            .as_deref()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some()),
        "throttled like the mutation, with Retry-After: {wrong:?}"
    );
}

#[tokio::test]
async fn the_openapi_document_is_valid_openapi_3_1_and_lists_every_route() {
    // Arrange
    let app = TestApp::spawn().await;
    let rest = Rest::new(&app).await;
    let file = tempfile::NamedTempFile::new().expect("a temp file");
    std::fs::write(file.path(), rest.doc.to_string()).expect("the document is written");

    // Act: the real validator, from PyPI (scripts/test installs it).
    let checked = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))",
        ])
        .arg(file.path())
        .output().expect("cannot run python3");

    // Assert
    assert!(
        checked.status.success(),
        "openapi-spec-validator refused it: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        rest.doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        rest.doc["openapi"]
    );
    for (route, method) in [
        ("/api/auth/login", "post"),
        ("/api/auth/me", "get"),
        ("/api/releases", "get"),
        ("/api/releases/{release_id}", "get"),
        ("/api/releases/{release_id}/hierarchy", "get"),
        ("/api/entities/{entity_id}", "get"),
    ] {
        assert!(
            rest.doc["paths"][route][method].is_object(),
            "{method} {route} is documented"
        );
    }
}

#[tokio::test]
async fn rest_nodes_list_a_releases_nodes_as_graphql_does_filtered_and_paged() {
    // Arrange: a release of 1 wave, 1 cluster, 1 bundle and 3 apps, app-2 failed.
    let app = TestApp::spawn().await;
    let rest = Rest::new(&app).await;
    let token = user_token(&app, &rest).await;
    let release = foreign_release(&app, 3).await;
    set_status(&app, &release, "app-2", "FAILED").await;
    let route = "/api/releases/{release_id}/nodes";
    let url = |query: &str| format!("/api/releases/{release}/nodes?{query}");
    let ids = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["id"].as_str().map(str::to_owned))
            .collect()
    };

    // Act
    let (all_status, all) = rest.get(route, &url("page_size=100"), Some(&token)).await;
    let (_, failed) = rest
        .get(route, &url("kind=app&status=failed"), Some(&token))
        .await;
    let (_, first) = rest.get(route, &url("page_size=4"), Some(&token)).await;
    let next = first["next"].as_str().unwrap_or_default().to_owned();
    let (_, second) = rest
        .get(
            route,
            &url(&format!("page_size=4&after={next}")),
            Some(&token),
        )
        .await;
    let graphql = app
        .graphql_as(
            &token,
            "query($id: ID!) { release(id: $id) { nodes(first: 100) { totalCount
               edges { node { ... on Wave { id } ... on Cluster { id } ... on Bundle { id }
                 ... on App { id } } } } } }",
            json!({ "id": release }),
        )
        .await;
    let (bad_kind, _) = rest.get(route, &url("kind=release"), Some(&token)).await;
    let (bad_size, _) = rest.get(route, &url("page_size=0"), Some(&token)).await;
    let (missing, _) = rest
        .get(route, "/api/releases/no-such-release/nodes", Some(&token))
        .await;
    let (anonymous, _) = rest.get(route, &url(""), None).await;

    // Assert
    let from_graphql: Vec<String> = graphql["data"]["release"]["nodes"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["node"]["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(all_status, 200, "{all}");
    assert_eq!(ids(&all), from_graphql, "the same nodes in the same order");
    assert_eq!(all["total"], 6, "{all}");
    assert_eq!(all["next"], Value::Null, "{all}");
    let failed_app = format!("app:{}/w/c/b/app-2", release.trim_start_matches("release:"));
    assert_eq!(ids(&failed), vec![failed_app], "{failed}");
    assert_eq!(failed["items"][0]["kind"], "app", "{failed}");
    assert_eq!(
        failed["items"][0]["path"]
            .as_array()
            .map(|path| path.iter().map(|s| s["kind"].clone()).collect::<Vec<_>>()),
        Some(vec![
            json!(null),
            json!("WAVE"),
            json!("CLUSTER"),
            json!("BUNDLE")
        ]),
        "{failed}"
    );
    assert_eq!(
        [ids(&first), ids(&second)].concat(),
        ids(&all),
        "two pages make the list"
    );
    assert_eq!(second["next"], Value::Null, "{second}");
    assert_eq!((bad_kind, bad_size), (422, 422));
    assert_eq!((missing, anonymous), (404, 401));
}
