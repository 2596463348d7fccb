//! The front door: no anonymous reads however a document is shaped (named, aliased, several
//! operations, past the gate), and bounded cost before any work.

use serde_json::{Value, json};
use temporal_bff::{auth::Authentication, schema::schema_builder};

use crate::fixtures::no_data;
use crate::harness::{TestApp, error_code};

/// The examples a new user tried anonymously against the first wave; all returned data.
const NAMED_ANONYMOUS_READS: [&str; 5] = [
    "query Q { releases(first:3){ totalCount edges{ node{ id name } } } }",
    "query Q { release(id:\"release:rel-2025-05\"){ id waves { id } } }",
    "query Q { entity(id:\"release:rel-2025-05\"){ __typename } }",
    "query Q { node(id:\"release:rel-2025-05\"){ id } }",
    "query Q { version }",
];

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
