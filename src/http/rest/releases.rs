//! The release BFF's release routes, for the dashboard that already calls them:
//! `GET /api/releases`, `/api/releases/{release_id}`, `/api/releases/{release_id}/hierarchy`,
//! `/api/releases/{release_id}/nodes` and `/api/entities/{entity_id}`. Each runs a fixed GraphQL document through the schema
//! (`http::rest::run`), so the reads, loaders and caches are the GraphQL ones.

use axum::{
    Json,
    extract::{Path, RawQuery, State},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::{
    AppState,
    contracts::release::RolloutStatus,
    http::{
        context::Requester,
        rest::{Detail, reshape, run},
    },
};

/// Largest `page_size`.
const MAX_PAGE_SIZE: i64 = 100;

/// Roll-up over the apps below a node.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// Apps below the node.
    pub total: i64,
    /// Apps deployed.
    pub succeeded: i64,
    /// Apps whose deploy failed.
    pub failed: i64,
    /// Apps deploying now (or paused mid-rollout).
    pub in_progress: i64,
    /// Apps not started (or cancelled).
    pub pending: i64,
    /// Share deployed, 0–100.
    pub percent: f64,
}

/// A release with its roll-up.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Release {
    /// Global ID, `release:{key}`.
    pub id: String,
    /// Key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// `PENDING`, `IN_PROGRESS`, `PAUSED`, `SUCCEEDED`, `FAILED` or `CANCELLED`.
    pub status: String,
    /// Why it failed or stopped.
    pub message: Option<String>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// `TEMPORAL` (live) or `PROJECTION`.
    pub source: String,
    /// How fresh the answer is.
    pub as_of: DateTime<Utc>,
    /// Roll-up over every app.
    pub progress: Progress,
}

/// A page of releases, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReleasePage {
    /// The releases of this page.
    pub items: Vec<Release>,
    /// How many releases match, over all pages.
    pub total: i64,
    /// This page, from 1.
    pub page: i64,
    /// Releases per page.
    pub page_size: i64,
}

/// An app of a bundle.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppNode {
    /// Global ID.
    pub id: String,
    /// Key.
    pub key: String,
    /// Name.
    pub name: String,
    /// Version deployed.
    pub version: Option<String>,
    /// Status.
    pub status: String,
    /// Why it failed.
    pub message: Option<String>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub completed_at: Option<DateTime<Utc>>,
}

/// A cluster's bundle.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BundleNode {
    /// Global ID.
    pub id: String,
    /// Key.
    pub key: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: Option<String>,
    /// Status.
    pub status: String,
    /// Roll-up over its apps.
    pub progress: Progress,
    /// Its apps, in deploy order.
    pub apps: Vec<AppNode>,
}

/// A cluster of a wave.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClusterNode {
    /// Global ID.
    pub id: String,
    /// Key.
    pub key: String,
    /// Name.
    pub name: String,
    /// Region.
    pub region: Option<String>,
    /// Status.
    pub status: String,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// Roll-up over its apps.
    pub progress: Progress,
    /// Its bundle.
    pub bundle: BundleNode,
}

/// A wave of a release.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WaveNode {
    /// Global ID.
    pub id: String,
    /// Key.
    pub key: String,
    /// Name.
    pub name: String,
    /// Position, from 1.
    pub position: i64,
    /// Status.
    pub status: String,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// Roll-up over its apps.
    pub progress: Progress,
    /// Its clusters.
    pub clusters: Vec<ClusterNode>,
}

/// A release with its whole tree.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Hierarchy {
    /// The release's own fields.
    #[serde(flatten)]
    pub release: Release,
    /// Its waves, in rollout order.
    pub waves: Vec<WaveNode>,
}

/// One node of a hierarchy, whatever its kind.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Entity {
    /// Global ID, `{kind}:{path}`.
    pub id: String,
    /// `release`, `wave`, `cluster`, `bundle` or `app`.
    pub kind: String,
    /// Key.
    pub key: String,
    /// Name.
    pub name: String,
    /// Status.
    pub status: String,
    /// Why it failed.
    pub message: Option<String>,
    /// When it started (not for bundles).
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished (not for bundles).
    pub completed_at: Option<DateTime<Utc>>,
    /// Version (bundles and apps).
    pub version: Option<String>,
    /// Region (clusters).
    pub region: Option<String>,
    /// Position (waves).
    pub position: Option<i64>,
    /// Roll-up over the apps below (not for apps).
    pub progress: Option<Progress>,
}

const OWN: &str = "id key name status message startedAt completedAt source asOf \
    progress { total succeeded failed inProgress pending percent }";
const PROGRESS: &str = "progress { total succeeded failed inProgress pending percent }";

/// The last page: with `page_size` at most 100, `(page - 1) * page_size` stays within
/// `releases(offset:)`'s limit, so a page the document allows is never refused for its offset.
const MAX_PAGE: i64 = crate::releases::graphql::MAX_OFFSET / 100 + 1;

/// The query parameters of `GET /api/releases`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page, from 1 (default 1) to 1001 (pages reach 100,000 releases back at most).
    #[param(minimum = 1, maximum = 1001)]
    pub page: Option<i64>,
    /// Releases per page, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<i64>,
    /// Only these statuses: repeat the parameter or separate with commas (upper or lower
    /// case).
    #[param(
        pattern = r"^[ ,]*((PENDING|IN_PROGRESS|PAUSED|SUCCEEDED|FAILED|CANCELLED|pending|in_progress|paused|succeeded|failed|cancelled) *(,[ ,]*|$))*$"
    )]
    pub status: Option<String>,
    /// Name or key contains this (case-insensitive, at most 100 characters, no control or
    /// invisible formatting characters).
    #[param(
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb]*$"
    )]
    pub search: Option<String>,
}

/// Parses the list's query string (`status` may repeat).
fn list_params(
    raw: Option<&str>,
) -> Result<(i64, i64, Vec<RolloutStatus>, Option<String>), Detail> {
    let (mut page, mut page_size, mut statuses, mut search) = (1, 20, Vec::new(), None);
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "page" => {
                page = value
                    .parse()
                    .ok()
                    .filter(|p| (1..=MAX_PAGE).contains(p))
                    .ok_or_else(|| {
                        Detail::invalid(
                            "query",
                            "page",
                            format!("page must be a whole number from 1 to {MAX_PAGE}"),
                        )
                    })?;
            }
            "page_size" => page_size = parse_page_size(&value)?,
            "status" => statuses.extend(parse_statuses(&value)?),
            "search" => search = Some(value.into_owned()),
            _ => {}
        }
    }
    Ok((page, page_size, statuses, search))
}

/// A `page_size` parameter: 1 to [`MAX_PAGE_SIZE`].
fn parse_page_size(value: &str) -> Result<i64, Detail> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
        .ok_or_else(|| {
            Detail::invalid(
                "query",
                "page_size",
                format!("page_size must be a whole number from 1 to {MAX_PAGE_SIZE}"),
            )
        })
}

/// The statuses of a `status` parameter: separated by commas, upper or lower case.
fn parse_statuses(value: &str) -> Result<Vec<RolloutStatus>, Detail> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|raw| {
            RolloutStatus::parse(&raw.to_ascii_uppercase()).ok_or_else(|| {
                Detail::invalid(
                    "query",
                    "status",
                    "status must be PENDING, IN_PROGRESS, PAUSED, SUCCEEDED, FAILED or CANCELLED",
                )
            })
        })
        .collect()
}

/// Releases, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/releases",
    tag = "releases",
    params(ListParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of releases", body = ReleasePage),
        (status = 401, description = "No valid token", body = super::ErrorDetail),
        (status = 422, description = "A bad parameter", body = super::ValidationErrors),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<AppState>,
    caller: Requester,
    RawQuery(query): RawQuery,
) -> Result<Json<ReleasePage>, Detail> {
    let (page, page_size, statuses, search) = list_params(query.as_deref())?;
    let document = format!(
        "query($first: Int, $offset: Int, $filter: ReleaseFilter) {{
           releases(first: $first, offset: $offset, filter: $filter) {{
             totalCount edges {{ node {{ {OWN} }} }} }} }}"
    );
    let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    let offset = (page - 1).saturating_mul(page_size);
    let data = run(
        &state,
        caller,
        &document,
        json!({
            "first": page_size,
            "offset": i32::try_from(offset).unwrap_or(i32::MAX),
            "filter": { "status": statuses, "search": search },
        }),
    )
    .await?;
    let items: Vec<Value> = data["releases"]["edges"]
        .as_array()
        .map(|edges| edges.iter().map(|edge| edge["node"].clone()).collect())
        .unwrap_or_default();
    reshape(json!({
        "items": items,
        "total": data["releases"]["totalCount"],
        "page": page,
        "pageSize": page_size,
    }))
}

/// The release's global ID from a path segment: `rel-1` or `release:rel-1`.
fn release_id(raw: &str) -> String {
    if raw.contains(':') {
        raw.to_owned()
    } else {
        format!("release:{raw}")
    }
}

/// One release with its roll-up.
#[utoipa::path(
    get,
    path = "/api/releases/{release_id}",
    tag = "releases",
    params(("release_id" = String, Path, description = "The release's key (`rel-1`) or global ID (`release:rel-1`)", pattern = r"^(release:)?[a-z0-9][a-z0-9._-]*$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The release", body = Release),
        (status = 401, description = "No valid token", body = super::ErrorDetail),
        (status = 404, description = "No such release", body = super::ErrorDetail),
        (status = 422, description = "A malformed ID", body = super::ValidationErrors),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn one(
    State(state): State<AppState>,
    caller: Requester,
    Path(raw): Path<String>,
) -> Result<Json<Release>, Detail> {
    release_with(&state, caller, &raw, OWN).await
}

/// One release with its whole tree, as nested JSON.
#[utoipa::path(
    get,
    path = "/api/releases/{release_id}/hierarchy",
    tag = "releases",
    params(("release_id" = String, Path, description = "The release's key (`rel-1`) or global ID (`release:rel-1`)", pattern = r"^(release:)?[a-z0-9][a-z0-9._-]*$")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The release and its tree; `source` and `as_of` say where it came from", body = Hierarchy),
        (status = 401, description = "No valid token", body = super::ErrorDetail),
        (status = 404, description = "No such release", body = super::ErrorDetail),
        (status = 422, description = "A malformed ID", body = super::ValidationErrors),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn hierarchy(
    State(state): State<AppState>,
    caller: Requester,
    Path(raw): Path<String>,
) -> Result<Json<Hierarchy>, Detail> {
    let selection = format!(
        "{OWN} waves {{ id key name position status startedAt completedAt {PROGRESS}
           clusters {{ id key name region status startedAt completedAt {PROGRESS}
             bundle {{ id key name version status {PROGRESS}
               apps {{ id key name version status message startedAt completedAt }} }} }} }}"
    );
    release_with(&state, caller, &raw, &selection).await
}

/// Release `raw` (key or global ID) with `selection`, in the REST shape `T` (404 if none).
async fn release_with<T: serde::de::DeserializeOwned + Serialize>(
    state: &AppState,
    caller: Requester,
    raw: &str,
    selection: &str,
) -> Result<Json<T>, Detail> {
    let document = format!("query($id: ID!) {{ release(id: $id) {{ {selection} }} }}");
    let data = run(state, caller, &document, json!({ "id": release_id(raw) })).await?;
    found(&data["release"], "Release not found")?;
    reshape(data["release"].clone())
}

/// The query parameters of `GET /api/releases/{release_id}/nodes`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NodesParams {
    /// Only these kinds (`wave`, `cluster`, `bundle`, `app`): repeat the parameter or separate
    /// with commas (upper or lower case).
    #[param(pattern = r"^[ ,]*((WAVE|CLUSTER|BUNDLE|APP|wave|cluster|bundle|app) *(,[ ,]*|$))*$")]
    pub kind: Option<String>,
    /// Only these statuses, as for `GET /api/releases`.
    #[param(
        pattern = r"^[ ,]*((PENDING|IN_PROGRESS|PAUSED|SUCCEEDED|FAILED|CANCELLED|pending|in_progress|paused|succeeded|failed|cancelled) *(,[ ,]*|$))*$"
    )]
    pub status: Option<String>,
    /// Key or name contains this (case-insensitive, at most 100 characters).
    #[param(max_length = 100)]
    pub search: Option<String>,
    /// Nodes per page, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub page_size: Option<i64>,
    /// The previous page's `next`, to continue after it.
    pub after: Option<String>,
}

/// One ancestor of a listed node.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PathStep {
    /// Global ID.
    pub id: String,
    /// `WAVE`, `CLUSTER` or `BUNDLE`; `null` for the release.
    pub kind: Option<String>,
    /// Key.
    pub key: String,
    /// Name.
    pub name: String,
}

/// A node of a release's flat list, with where it sits.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ListedNode {
    /// The node itself.
    #[serde(flatten)]
    pub node: Entity,
    /// Its ancestors, from the release down to its parent.
    pub path: Vec<PathStep>,
}

/// A page of a release's nodes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodePage {
    /// The nodes, in tree order (a parent before its children).
    pub items: Vec<ListedNode>,
    /// How many nodes match, over all pages.
    pub total: i64,
    /// Pass as `after` for the next page; `null` on the last.
    pub next: Option<String>,
}

/// The query string of `GET /api/releases/{release_id}/nodes` as `Release.nodes`' variables.
fn nodes_params(raw: Option<&str>) -> Result<Value, Detail> {
    let (mut kinds, mut statuses, mut search, mut first, mut after) =
        (Vec::new(), Vec::new(), None, 20, None);
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "kind" => {
                for raw in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let kind = raw.to_ascii_uppercase();
                    if !["WAVE", "CLUSTER", "BUNDLE", "APP"].contains(&kind.as_str()) {
                        return Err(Detail::invalid(
                            "query",
                            "kind",
                            "kind must be wave, cluster, bundle or app",
                        ));
                    }
                    kinds.push(kind);
                }
            }
            "status" => statuses.extend(parse_statuses(&value)?),
            "search" => search = Some(value.into_owned()),
            "page_size" => first = parse_page_size(&value)?,
            "after" => after = Some(value.into_owned()),
            _ => {}
        }
    }
    let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    Ok(
        json!({ "kind": kinds, "status": statuses, "search": search, "first": first, "after": after }),
    )
}

/// A release's nodes as one flat list in tree order, filtered, each with its path.
#[utoipa::path(
    get,
    path = "/api/releases/{release_id}/nodes",
    tag = "releases",
    params(
        ("release_id" = String, Path, description = "The release's key (`rel-1`) or global ID (`release:rel-1`)", pattern = r"^(release:)?[a-z0-9][a-z0-9._-]*$"),
        NodesParams,
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the release's nodes", body = NodePage),
        (status = 401, description = "No valid token", body = super::ErrorDetail),
        (status = 404, description = "No such release", body = super::ErrorDetail),
        (status = 422, description = "A bad parameter or a malformed ID", body = super::ValidationErrors),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn nodes(
    State(state): State<AppState>,
    caller: Requester,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<NodePage>, Detail> {
    let mut variables = nodes_params(query.as_deref())?;
    variables["id"] = json!(release_id(&raw));
    let node = "id key name status message startedAt completedAt";
    let document = format!(
        "query($id: ID!, $kind: [NodeKind!], $status: [RolloutStatus!], $search: String,
               $first: Int, $after: String) {{
           release(id: $id) {{ nodes(kind: $kind, status: $status, search: $search,
                                     first: $first, after: $after) {{
             totalCount pageInfo {{ hasNextPage endCursor }}
             edges {{ path {{ id kind key name }} node {{ __typename
               ... on Wave {{ {node} }} ... on Cluster {{ {node} region }}
               ... on Bundle {{ {node} version }} ... on App {{ {node} version }} }} }} }} }} }}"
    );
    let data = run(&state, caller, &document, variables).await?;
    found(&data["release"], "Release not found")?;
    let nodes = &data["release"]["nodes"];
    let items: Vec<Value> = nodes["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|edge| {
            let mut item = edge["node"].clone();
            let kind = item["__typename"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase();
            item["kind"] = json!(kind);
            if let Some(fields) = item.as_object_mut() {
                fields.remove("__typename");
            }
            item["path"] = edge["path"].clone();
            item
        })
        .collect();
    let more = nodes["pageInfo"]["hasNextPage"] == json!(true);
    reshape(json!({
        "items": items,
        "total": nodes["totalCount"],
        "next": if more { nodes["pageInfo"]["endCursor"].clone() } else { Value::Null },
    }))
}

/// The query parameters of `GET /api/entities/{entity_id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EntityParams {
    /// The release a short ID (`wave:wave-1`) belongs to: its key or global ID.
    #[param(pattern = r"^(release:)?[a-z0-9][a-z0-9._-]*$")]
    pub release_id: Option<String>,
}

/// One node of a hierarchy.
#[utoipa::path(
    get,
    path = "/api/entities/{entity_id}",
    tag = "releases",
    params(
        ("entity_id" = String, Path, description = "A global ID (`wave:rel-1/wave-1`), or a short one (`wave:wave-1`) with `release_id`", pattern = r"^(release|wave|cluster|bundle|app):[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$"),
        EntityParams,
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The node", body = Entity),
        (status = 401, description = "No valid token", body = super::ErrorDetail),
        (status = 404, description = "No such node", body = super::ErrorDetail),
        (status = 422, description = "A malformed ID", body = super::ValidationErrors),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn entity(
    State(state): State<AppState>,
    caller: Requester,
    Path(raw): Path<String>,
    axum::extract::Query(params): axum::extract::Query<EntityParams>,
) -> Result<Json<Entity>, Detail> {
    let id = match (raw.split_once(':'), params.release_id.as_deref()) {
        (Some((kind, path)), Some(release)) if kind != "release" => {
            let release = release_id(release);
            let key = release.trim_start_matches("release:");
            if path.starts_with(&format!("{key}/")) {
                raw.clone()
            } else {
                format!("{kind}:{key}/{path}")
            }
        }
        _ => raw.clone(),
    };
    let document = format!(
        "query($id: ID!) {{ entity(id: $id) {{ __typename
           ... on Release {{ id key name status message startedAt completedAt {PROGRESS} }}
           ... on Wave {{ id key name status message startedAt completedAt position {PROGRESS} }}
           ... on Cluster {{ id key name status message startedAt completedAt region {PROGRESS} }}
           ... on Bundle {{ id key name status message version {PROGRESS} }}
           ... on App {{ id key name status message startedAt completedAt version }} }} }}"
    );
    let data = run(&state, caller, &document, json!({ "id": id })).await?;
    found(&data["entity"], "Entity not found")?;
    let mut node = data["entity"].clone();
    let kind = node["__typename"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if let Some(fields) = node.as_object_mut() {
        fields.remove("__typename");
        fields.insert("kind".into(), Value::String(kind));
    }
    reshape(node)
}

/// 404 when the GraphQL answer is `null`.
fn found(value: &Value, message: &str) -> Result<(), Detail> {
    if value.is_null() {
        Err(Detail::not_found(message))
    } else {
        Ok(())
    }
}
