//! The release BFF's auth routes, for the dashboard that already calls them:
//! `POST /api/auth/login` (OAuth2's password flow: form `username` and `password`, or the same
//! as JSON) and `GET /api/auth/me`. Both run through the GraphQL schema (`http::rest::run`), so
//! a REST login is throttled exactly like the `login` mutation.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, header},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::{
    AppState,
    http::{
        context::Requester,
        rest::{Detail, reshape, run},
    },
};

/// A login, as OAuth2's password flow sends it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginForm {
    /// The user's e-mail.
    pub username: String,
    /// The password.
    pub password: String,
}

/// A bearer token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Token {
    /// The token, for `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// The caller.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// User ID.
    pub id: String,
    /// E-mail.
    pub email: String,
    /// Role, if any.
    pub role: Option<String>,
    /// Organization (UUID), if any.
    pub org_id: Option<String>,
    /// Granted permissions.
    pub permissions: Vec<String>,
}

/// Reads the login from a form-urlencoded or JSON body.
fn login_form(headers: &HeaderMap, body: &[u8]) -> Result<LoginForm, Detail> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let (mut username, mut password) = (None, None);
    if is_json {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|_| Detail::invalid("body", "body", "the body must be a JSON object"))?;
        username = value["username"].as_str().map(str::to_owned);
        password = value["password"].as_str().map(str::to_owned);
    } else {
        for (name, value) in url::form_urlencoded::parse(body) {
            match name.as_ref() {
                "username" => username = Some(value.into_owned()),
                "password" => password = Some(value.into_owned()),
                _ => {}
            }
        }
    }
    let username = username.ok_or_else(|| Detail::invalid("body", "username", "field required"))?;
    let password = password.ok_or_else(|| Detail::invalid("body", "password", "field required"))?;
    Ok(LoginForm { username, password })
}

/// Exchanges an e-mail and password for a bearer token.
#[utoipa::path(
    post,
    path = "/api/auth/login",
    tag = "auth",
    request_body(
        content(
            (LoginForm = "application/x-www-form-urlencoded"),
            (LoginForm = "application/json"),
        ),
        description = "OAuth2's password flow: `username` is the e-mail"
    ),
    responses(
        (status = 200, description = "A token", body = Token),
        (status = 401, description = "Wrong e-mail or password", body = super::ErrorDetail),
        (status = 422, description = "A missing field", body = super::ValidationErrors),
        (status = 429, description = "Too many failed logins; see Retry-After", body = super::ErrorDetail),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn login(
    State(state): State<AppState>,
    caller: Requester,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Token>, Detail> {
    let form = login_form(&headers, &body)?;
    let data = run(
        &state,
        // A login needs no token: whatever the header says, it is not used.
        Requester {
            authentication: crate::auth::Authentication::Anonymous,
            ..caller
        },
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token expiresAt } }",
        json!({ "e": form.username, "p": form.password }),
    )
    .await?;
    let expires_at: Option<DateTime<Utc>> =
        serde_json::from_value(data["login"]["expiresAt"].clone()).ok();
    reshape(json!({
        "accessToken": data["login"]["token"],
        "tokenType": "bearer",
        "expiresIn": expires_at.map_or(0, |at| (at - Utc::now()).num_seconds().max(0)),
    }))
}

/// The caller, as their token and user row say now.
#[utoipa::path(
    get,
    path = "/api/auth/me",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "No valid token", body = super::ErrorDetail),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn me(State(state): State<AppState>, caller: Requester) -> Result<Json<Me>, Detail> {
    let data = run(
        &state,
        caller,
        "{ me { id email role orgId permissions } }",
        json!({}),
    )
    .await?;
    reshape(data["me"].clone())
}
