//! Every SQL statement of the release read side: the release rows (list pages, counts, by ID)
//! and whole trees. Each function counts its statements and holds the request's SQL budget
//! while they run. Status and kind columns are parsed on the row, once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder, Row as _, postgres::PgRow};

use crate::{
    contracts::{
        ids::{Key, Kind},
        release::{Node, RolloutStatus},
    },
    db,
    metrics::RequestStats,
    releases::tree::FlatNode,
};

/// A row of `release_projection`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReleaseRow {
    /// Global ID.
    pub id: String,
    pub key: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub status: RolloutStatus,
    /// Workflow ID.
    pub workflow_id: String,
    /// Why it failed.
    pub message: Option<String>,
    /// When it was created (the list's order).
    pub created_at: DateTime<Utc>,
    /// When anything in its tree last changed (the events' time).
    pub updated_at: DateTime<Utc>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// Apps in the release (the roll-up the triggers keep).
    pub apps_total: i32,
    /// Apps deployed.
    pub apps_succeeded: i32,
    /// Apps whose deploy failed.
    pub apps_failed: i32,
    /// Apps deploying (or paused).
    pub apps_in_progress: i32,
    /// Apps not started (or cancelled).
    pub apps_pending: i32,
}

impl ReleaseRow {
    /// Whether the rollout may still change (so a live read is worth it).
    pub fn is_running(&self) -> bool {
        !self.status.is_terminal()
    }
}

/// The list filter.
#[derive(Debug, Clone, Default)]
pub struct ReleaseFilter {
    /// Only these statuses.
    pub statuses: Vec<RolloutStatus>,
    /// Name or key contains this (case-insensitive).
    pub search: Option<String>,
}

impl ReleaseFilter {
    /// Whether `row` passes the filter: what [`page`] selects in SQL, for rows already read.
    pub fn matches(&self, row: &ReleaseRow) -> bool {
        let status = self.statuses.is_empty() || self.statuses.contains(&row.status);
        let search = match self.search.as_deref().map(str::trim) {
            Some(search) if !search.is_empty() => {
                let search = search.to_lowercase();
                row.name.to_lowercase().contains(&search)
                    || row.key.to_lowercase().contains(&search)
            }
            _ => true,
        };
        status && search
    }
}

/// A keyset position in the newest-first order.
pub type Cursor = (DateTime<Utc>, String);

/// A release row's column list, as a literal so statements can `concat!` it.
macro_rules! columns {
    () => {
        "id, key, name, status, workflow_id, message, created_at, updated_at, started_at, \
         completed_at, apps_total, apps_succeeded, apps_failed, apps_in_progress, apps_pending"
    };
}

/// Every release row, as a literal so statements can `concat!` their conditions to it.
macro_rules! row_columns {
    () => {
        concat!("SELECT ", columns!(), " FROM bff.release_projection")
    };
}

/// `AND status = ANY(…)`, unless `statuses` is empty (every status).
fn push_statuses(query: &mut QueryBuilder<Postgres>, statuses: &[RolloutStatus]) {
    if !statuses.is_empty() {
        let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        query
            .push(" AND status = ANY(")
            .push_bind(statuses)
            .push(")");
    }
}

fn push_filter(query: &mut QueryBuilder<Postgres>, filter: &ReleaseFilter) {
    query.push(" WHERE true");
    push_statuses(query, &filter.statuses);
    if let Some(search) = filter.search.as_deref().filter(|s| !s.trim().is_empty()) {
        // Escape LIKE's wildcards so the search is literal.
        let pattern = format!(
            "%{}%",
            search
                .trim()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        query
            .push(" AND (name ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR key ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
}

/// The control action each of `ids` has waiting in the outbox (the oldest not yet delivered).
#[tracing::instrument(skip_all, fields(releases.count = ids.len()))]
pub async fn pending_controls(
    pool: &PgPool,
    stats: &RequestStats,
    ids: &[String],
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let _slot = stats.sql(1, "releases.pending_controls").await;
    sqlx::query_as(db::sql(
        "SELECT DISTINCT ON (release_id) release_id, action FROM bff.workflow_queue_projection
          WHERE release_id = ANY($1) AND status IN ('pending', 'processing')
          ORDER BY release_id, created_at",
    ))
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// Releases the projection shows open (running or paused), least recently changed first, at
/// most `limit`: (global ID, workflow ID).
#[tracing::instrument(skip_all)]
pub async fn open_releases(
    pool: &PgPool,
    stats: &RequestStats,
    limit: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let _slot = stats.sql(1, "releases.open_releases").await;
    sqlx::query_as(db::sql(
        "SELECT id, workflow_id FROM bff.release_projection
          WHERE status IN ('PENDING', 'IN_PROGRESS', 'PAUSED')
          ORDER BY updated_at LIMIT $1",
    ))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Rows of releases whose last change is at or after `since`, oldest change first (at most
/// `limit`): what a list may have missed while changes were not heard.
#[tracing::instrument(skip_all)]
pub async fn changed_since(
    pool: &PgPool,
    stats: &RequestStats,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ReleaseRow>, sqlx::Error> {
    let _slot = stats.sql(1, "releases.changed_since").await;
    sqlx::query_as(db::sql(concat!(
        row_columns!(),
        " WHERE updated_at >= $1 ORDER BY updated_at LIMIT $2"
    )))
    .bind(since)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Up to `limit` rows from `position` in newest-first order, returned newest first either way,
/// with how many rows match `filter` (one statement: see [`db::page`]).
#[tracing::instrument(skip_all)]
pub async fn page(
    pool: &PgPool,
    stats: &RequestStats,
    filter: &ReleaseFilter,
    position: Position<'_>,
    limit: i64,
) -> Result<(Vec<ReleaseRow>, i64), sqlx::Error> {
    let _slot = stats.sql(1, "releases.page").await;
    let (cursor, forward, skip) = match position {
        Position::Skip(n) => (None, true, n),
        Position::After(cursor) => (Some(cursor), true, 0),
        Position::Before(cursor) => (cursor, false, 0),
    };
    let order = if forward {
        " ORDER BY created_at DESC, id DESC"
    } else {
        " ORDER BY created_at ASC, id ASC"
    };
    let mut query = QueryBuilder::new(db::page::COUNT_SELECT);
    query.push(db::sql(" FROM bff.release_projection"));
    push_filter(&mut query, filter);
    query
        .push(db::page::PAGE_JOIN)
        .push(db::sql(concat!(columns!(), " FROM bff.release_projection")));
    push_filter(&mut query, filter);
    if let Some((at, id)) = cursor {
        query
            .push(if forward {
                " AND (created_at, id) < ("
            } else {
                " AND (created_at, id) > ("
            })
            .push_bind(*at)
            .push(", ")
            .push_bind(id.clone())
            .push(")");
    }
    query.push(order).push(" LIMIT ").push_bind(limit);
    if skip > 0 {
        query.push(" OFFSET ").push_bind(skip);
    }
    query.push(db::page::PAGE_END).push(order);
    let (mut rows, total) = db::page::split(query.build_query_as().fetch_all(pool).await?);
    if !forward {
        rows.reverse();
    }
    Ok((rows, total))
}

/// A node found across releases (`Query.nodes`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FoundNode {
    /// Its global ID.
    pub id: String,
    /// Its release's global ID.
    pub release_id: String,
    /// When it last changed (the order, newest first).
    pub updated_at: DateTime<Utc>,
}

/// `Query.nodes`' filter: every part optional.
#[derive(Debug, Clone, Default)]
pub struct NodeSearch {
    /// Only nodes of this kind (never the release itself).
    pub kind: Option<Kind>,
    /// Only nodes with this key, exactly.
    pub key: Option<Key>,
    /// Only nodes in one of these statuses (all when empty).
    pub statuses: Vec<RolloutStatus>,
    /// Only nodes that changed at or after this.
    pub since: Option<DateTime<Utc>>,
}

fn push_node_search(query: &mut QueryBuilder<Postgres>, search: &NodeSearch) {
    query.push(" WHERE kind <> 'release'");
    if let Some(kind) = search.kind {
        query.push(" AND kind = ").push_bind(kind.as_str());
    }
    if let Some(key) = &search.key {
        query.push(" AND key = ").push_bind(key.to_string());
    }
    push_statuses(query, &search.statuses);
    if let Some(since) = search.since {
        query.push(" AND updated_at >= ").push_bind(since);
    }
}

/// A page of the nodes of every release that `search` selects, most recently changed first,
/// after `cursor`, with how many match when `count` (one statement; the count costs every
/// match, so it is left out when no one asks). The `(key, kind, updated_at)` index serves a
/// search by key, the `(updated_at)` one a search without.
#[tracing::instrument(skip_all)]
pub async fn search_nodes(
    pool: &PgPool,
    stats: &RequestStats,
    search: &NodeSearch,
    cursor: Option<&Cursor>,
    limit: i64,
    count: bool,
) -> Result<(Vec<FoundNode>, Option<i64>), sqlx::Error> {
    const ORDER: &str = " ORDER BY updated_at DESC, id DESC";
    const COLUMNS: &str = "id, release_id, updated_at FROM bff.release_entity_projection";
    let _slot = stats.sql(1, "releases.search_nodes").await;
    let mut query = if count {
        let mut query = QueryBuilder::new(db::page::COUNT_SELECT);
        query.push(db::sql(" FROM bff.release_entity_projection"));
        push_node_search(&mut query, search);
        query.push(db::page::PAGE_JOIN);
        query
    } else {
        QueryBuilder::new("SELECT ")
    };
    query.push(db::sql(COLUMNS));
    push_node_search(&mut query, search);
    if let Some((at, id)) = cursor {
        query
            .push(" AND (updated_at, id) < (")
            .push_bind(*at)
            .push(", ")
            .push_bind(id.clone())
            .push(")");
    }
    query.push(ORDER).push(" LIMIT ").push_bind(limit);
    if !count {
        return Ok((query.build_query_as().fetch_all(pool).await?, None));
    }
    query.push(db::page::PAGE_END).push(ORDER);
    let (rows, total) = db::page::split(query.build_query_as().fetch_all(pool).await?);
    Ok((rows, Some(total)))
}

/// Where a page starts in the newest-first order.
#[derive(Debug, Clone, Copy)]
pub enum Position<'a> {
    /// After the first `n` (0: from the newest).
    Skip(i64),
    /// Right after this cursor, going older.
    After(&'a Cursor),
    /// Right before this cursor (or from the oldest), going newer; the page is still returned
    /// newest first.
    Before(Option<&'a Cursor>),
}

/// The rows of these releases (one statement).
#[tracing::instrument(skip_all, fields(releases.count = ids.len()))]
pub async fn rows(
    pool: &PgPool,
    stats: &RequestStats,
    ids: &[String],
) -> Result<Vec<ReleaseRow>, sqlx::Error> {
    let _slot = stats.sql(1, "releases.rows").await;
    sqlx::query_as(db::sql(concat!(row_columns!(), " WHERE id = ANY($1)")))
        .bind(ids)
        .fetch_all(pool)
        .await
}

/// The columns [`decode`] reads, by position, after `release_id` (column 0), as a literal so
/// the statement can `concat!` its condition.
macro_rules! entity_columns {
    () => {
        "SELECT release_id, id, parent_id, key, name, status, version, region, message, \
         started_at, completed_at, updated_at FROM bff.release_entity_projection"
    };
}

/// Decodes a row of `entity_columns!` by position (a tree is thousands of rows, and a lookup
/// of each column by name, as `FromRow` does, was a tenth of a tree read), with the time of
/// its last change.
fn decode(row: &PgRow) -> Result<(FlatNode, DateTime<Utc>), sqlx::Error> {
    let status: &str = row.try_get(5)?;
    let node = Node {
        id: row.try_get(1)?,
        key: row.try_get(3)?,
        name: row.try_get(4)?,
        status: RolloutStatus::parse(status).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "status".to_owned(),
            source: format!("unknown rollout status {status:?}").into(),
        })?,
        started_at: row.try_get(9)?,
        completed_at: row.try_get(10)?,
        message: row.try_get(8)?,
        version: row.try_get(6)?,
        region: row.try_get(7)?,
        waves: None,
        clusters: None,
        bundle: None,
        apps: None,
    };
    let parent_id = row.try_get(2)?;
    Ok((FlatNode { node, parent_id }, row.try_get(11)?))
}

/// A release's rows as read from the projection (in tree order), with the time of the last
/// event folded into them.
pub type StoredTree = (Vec<FlatNode>, DateTime<Utc>);

/// The rows of these releases' whole trees, in one statement.
#[tracing::instrument(skip_all, fields(releases.count = ids.len()))]
pub async fn trees(
    pool: &PgPool,
    stats: &RequestStats,
    ids: &[String],
) -> Result<HashMap<String, StoredTree>, sqlx::Error> {
    let _slot = stats.sql(1, "releases.trees").await;
    // Ordered by `ord` alone: an integer sort, where `release_id, ord` sorted text under the
    // database's collation (a third of the statement's time for one 1,211-node release).
    // Grouping below keeps each release's rows in `ord` order, which is all nesting needs.
    let rows = sqlx::query(db::sql(concat!(
        entity_columns!(),
        " WHERE release_id = ANY($1) ORDER BY ord"
    )))
    .bind(ids)
    .fetch_all(pool)
    .await?;

    let mut by_release: HashMap<String, StoredTree> = HashMap::new();
    for row in &rows {
        let release: &str = row.try_get(0)?;
        let (node, updated_at) = decode(row)?;
        match by_release.get_mut(release) {
            Some((nodes, as_of)) => {
                nodes.push(node);
                *as_of = (*as_of).max(updated_at);
            }
            None => {
                by_release.insert(release.to_owned(), (vec![node], updated_at));
            }
        }
    }
    Ok(by_release)
}
