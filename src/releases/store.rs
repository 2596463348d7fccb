//! Every SQL statement of the release read side: the release rows (list pages, counts, by ID)
//! and whole trees. Each function counts its statements and holds the request's SQL budget
//! while they run. Status and kind columns are parsed on the row, once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use sqlx::{
    PgPool, Postgres, QueryBuilder, Row as _, ValueRef as _,
    postgres::{PgRow, PgValueFormat},
};

use crate::{
    contracts::{
        ids::{EntityId, Key, Kind},
        release::{Node, RolloutStatus},
    },
    db,
    metrics::RequestStats,
    releases::tree::{FlatNode, Progress, Stored},
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
    /// Nodes in its tree, the release included (as `release.created` listed them).
    pub node_count: i32,
}

impl ReleaseRow {
    /// Whether the rollout may still change (so a live read is worth it).
    pub fn is_running(&self) -> bool {
        !self.status.is_terminal()
    }

    /// Whether it has more nodes than `part_above` (`RELEASE_PART_ABOVE_NODES`): too large to
    /// read whole, so GraphQL reads it in part, and never live (its `getHierarchy` answer could
    /// pass Temporal's message limit, and each read would carry every node).
    pub fn too_large(&self, part_above: usize) -> bool {
        usize::try_from(self.node_count).unwrap_or(0) > part_above
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
         completed_at, apps_total, apps_succeeded, apps_failed, apps_in_progress, apps_pending, \
         node_count"
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
        let pattern = format!("%{}%", like_escaped(search.trim()));
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

/// The columns [`decode`] reads, by position, after `release_id` (column 0), then `ord`, as a
/// literal so the statement can `concat!` its condition.
macro_rules! entity_columns {
    () => {
        "SELECT release_id, id, parent_id, key, name, status, version, region, message, \
         started_at, completed_at, updated_at, ord FROM bff.release_entity_projection"
    };
}

/// Decodes a row of `entity_columns!` by position (a tree is thousands of rows, and a lookup
/// of each column by name, as `FromRow` does, was a tenth of a tree read), with the time of
/// its last change.
///
/// Cells are read unchecked (`try_get_unchecked`): the statements name these columns, whose
/// types the migrations fix, and sqlx's check of each cell's type against the Rust one was 3 %
/// of a tree read. A cell of another type still fails to decode, as a column-decode error.
fn decode(row: &PgRow) -> Result<(FlatNode, DateTime<Utc>), sqlx::Error> {
    let status: &str = row.try_get_unchecked(5)?;
    let node = Node {
        id: row.try_get_unchecked(1)?,
        key: row.try_get_unchecked(3)?,
        name: row.try_get_unchecked(4)?,
        status: RolloutStatus::parse(status).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "status".to_owned(),
            source: format!("unknown rollout status {status:?}").into(),
        })?,
        started_at: time(row, 9)?,
        completed_at: time(row, 10)?,
        message: row.try_get_unchecked(8)?,
        version: row.try_get_unchecked(6)?,
        region: row.try_get_unchecked(7)?,
        waves: None,
        clusters: None,
        bundle: None,
        apps: None,
    };
    let parent_id = row.try_get_unchecked(2)?;
    let updated_at = time(row, 11)?.ok_or_else(|| sqlx::Error::ColumnDecode {
        index: "updated_at".to_owned(),
        source: "a null time of change".into(),
    })?;
    Ok((
        FlatNode {
            node,
            parent_id,
            stored: None,
        },
        updated_at,
    ))
}

/// The `timestamptz` at column `i`. Its binary form, which sqlx asks for, is the microseconds
/// since 2000-01-01 UTC: read as that, where sqlx's decoding adds a `Duration` to a date (4 %
/// of a tree read, three cells a row).
fn time(row: &PgRow, i: usize) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    /// 2000-01-01T00:00:00Z in microseconds since the Unix epoch.
    const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
    let value = row.try_get_raw(i)?;
    if value.is_null() {
        return Ok(None);
    }
    let micros = match value.format() {
        PgValueFormat::Binary => value
            .as_bytes()
            .ok()
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(i64::from_be_bytes)
            .and_then(|micros| micros.checked_add(POSTGRES_EPOCH_MICROS)),
        // Never asked for, but decoded all the same.
        PgValueFormat::Text => return row.try_get(i),
    };
    micros
        .and_then(DateTime::from_timestamp_micros)
        .map(Some)
        .ok_or_else(|| sqlx::Error::ColumnDecode {
            index: i.to_string(),
            source: "not a timestamptz this service can show".into(),
        })
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
    // Each row is decoded as it arrives, while Postgres still sends the next ones, rather than
    // after the last (`fetch_all`).
    //
    // Unordered: Postgres sorting the wide rows of a 1,211-node release was a quarter of the
    // statement (pgbench: 2.1 ms with `ORDER BY ord`, 1.6 ms without). Each release's rows are
    // put in `ord` order here, which is all nesting needs; they mostly arrive in it (the
    // order they were written in), which the sort finds in one pass.
    /// A release's rows with their `ord`, and the time of its last change.
    type Unordered = (Vec<(i32, FlatNode)>, DateTime<Utc>);
    let mut by_release: HashMap<String, Unordered> = HashMap::new();
    let rows = sqlx::query(db::sql(concat!(
        entity_columns!(),
        " WHERE release_id = ANY($1)"
    )))
    .bind(ids)
    .fetch(pool);
    db::untraced(rows.try_for_each(|row| {
        let decoded = (|| {
            let release: &str = row.try_get_unchecked(0)?;
            let ord: i32 = row.try_get_unchecked(12)?;
            let (node, updated_at) = decode(&row)?;
            match by_release.get_mut(release) {
                Some((nodes, as_of)) => {
                    nodes.push((ord, node));
                    *as_of = (*as_of).max(updated_at);
                }
                None => {
                    by_release.insert(release.to_owned(), (vec![(ord, node)], updated_at));
                }
            }
            Ok(())
        })();
        std::future::ready(decoded)
    }))
    .await?;
    Ok(by_release
        .into_iter()
        .map(|(id, (mut nodes, as_of))| {
            nodes.sort_unstable_by_key(|(ord, _)| *ord);
            (
                id,
                (nodes.into_iter().map(|(_, node)| node).collect(), as_of),
            )
        })
        .collect())
}

// A release too large to read whole is read in part: the rows one answer shows, each with
// what the projection keeps of its place and roll-up (`tree::Stored`), so a tree built of only
// some rows shows what the whole tree would. `ord` is the release's tree order (parents
// first, siblings in order, a node's descendants right after it; see the migrations).
//
// These statements are planned for their parameters on each run (`persistent(false)`), never
// as a prepared statement's generic plan (but the lookup by key alone, whose every plan is
// good): releases differ in size by four orders of magnitude, and the generic plan, made for
// the average release, scanned all 101,101 rows of the largest through its `release_id` index
// (5 to 25 ms where the planned one takes under 1 ms to 7 ms).

/// The columns [`decode_part`] reads: [`decode`]'s, then the position among the siblings in
/// tree order (as a whole tree numbers them; the event's `position` may say otherwise), the
/// roll-up and `ord`; then `kind`, for statements that select among the rows they read.
macro_rules! part_columns {
    () => {
        "SELECT e.release_id, e.id, e.parent_id, e.key, e.name, e.status, e.version, e.region, \
         e.message, e.started_at, e.completed_at, e.updated_at, e.tree_position, \
         e.apps_total, e.apps_succeeded, e.apps_failed, e.apps_in_progress, e.apps_pending, e.ord, \
         e.kind FROM bff.release_entity_projection e"
    };
}

/// Row `e` is of release `$1`: a check on rows found by key (`id`, `parent_id`), written so that
/// it is never an index condition. With an index condition on `release_id` too, a planner
/// whose statistics predate a new release's rows (every release is small until the next
/// ANALYZE) scanned the release's every index entry to intersect with the few keys: 13 to 19 ms
/// where the lookup by key alone takes 0.6 ms.
macro_rules! in_release {
    () => {
        "(e.release_id = $1) IS TRUE"
    };
}

/// The rows of `rows`, a statement of [`part_columns!`], decoded as they arrive (untraced, see
/// [`db::untraced`]): while Postgres still sends the last rows, the first are decoded, where
/// collecting them all first left decoding to start only after the last one.
async fn part_decoded(
    rows: impl futures::Stream<Item = Result<PgRow, sqlx::Error>>,
) -> Result<Vec<PartRow>, sqlx::Error> {
    db::untraced(
        rows.and_then(|row| std::future::ready(decode_part(&row)))
            .try_collect(),
    )
    .await
}

/// A node of a release read in part, and its place in tree order (`ord`).
pub type PartRow = (FlatNode, i32);

/// A row of [`part_columns!`]: the node with what the projection keeps of it, and its `ord`.
fn decode_part(row: &PgRow) -> Result<PartRow, sqlx::Error> {
    let (mut node, _) = decode(row)?;
    node.stored = Some(Stored {
        position: row.try_get_unchecked(12)?,
        progress: Progress::from_counts(
            row.try_get_unchecked(13)?,
            row.try_get_unchecked(14)?,
            row.try_get_unchecked(15)?,
            row.try_get_unchecked(16)?,
            row.try_get_unchecked(17)?,
        ),
    });
    Ok((node, row.try_get_unchecked(18)?))
}

/// The rows of `release` named in `ids`, and those right below `children_of`, in tree order
/// (one statement, by primary key and by parent).
#[tracing::instrument(skip_all, fields(release.id = release, nodes.count = ids.len()))]
pub async fn part_rows(
    pool: &PgPool,
    stats: &RequestStats,
    release: &str,
    ids: &[String],
    children_of: &[String],
) -> Result<Vec<PartRow>, sqlx::Error> {
    let _slot = stats.sql(1, "releases.part_rows").await;
    if children_of.is_empty() {
        // By primary key alone, which every plan uses: this one may keep its generic plan,
        // which saves planning (about a millisecond) on each read of ancestors.
        part_decoded(
            sqlx::query(db::sql(concat!(
                part_columns!(),
                " WHERE e.id = ANY($2) AND ",
                in_release!(),
                " ORDER BY ord"
            )))
            .bind(release)
            .bind(ids)
            .fetch(pool),
        )
        .await
    } else {
        part_decoded(
            sqlx::query(db::sql(concat!(
                part_columns!(),
                " WHERE e.id = ANY($2) AND ",
                in_release!(),
                " UNION ALL ",
                part_columns!(),
                " WHERE e.parent_id = ANY($3) AND NOT e.id = ANY($2) AND ",
                in_release!(),
                " ORDER BY ord"
            )))
            .bind(release)
            .bind(ids)
            .bind(children_of)
            .persistent(false)
            .fetch(pool),
        )
        .await
    }
}

/// `ids`, the IDs of their ancestors and `release` (a tree has its root even when `ids` is
/// empty), each once.
pub fn lineage(release: &str, ids: &[String]) -> Vec<String> {
    let mut all: Vec<String> = ids
        .iter()
        .filter_map(|id| EntityId::parse(id).ok())
        .flat_map(|id| std::iter::successors(Some(id), EntityId::parent))
        .map(|id| id.to_string())
        .chain([release.to_owned()])
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Nodes that changed, each with the time of its latest change, newest first.
pub type ChangedNodes = Vec<(String, DateTime<Utc>)>;

/// The nodes of `release` whose own fields changed at or after `since` (their event's time),
/// newest first: what a kept tree needs read again (with their ancestors, whose
/// roll-ups moved with them) to become the tree as it is. `None` when more than `most` did
/// (a release just created, a mass change): reading the tree whole is cheaper then.
///
/// The `(updated_at DESC)` index finds them among every release's changes since then, newest
/// first; the release check is never an index condition, so no plan scans the release's whole
/// `release_id` index instead, whatever the statistics say.
#[tracing::instrument(skip_all, fields(release.id = release))]
pub async fn changed_nodes(
    pool: &PgPool,
    stats: &RequestStats,
    release: &str,
    since: DateTime<Utc>,
    most: usize,
) -> Result<Option<ChangedNodes>, sqlx::Error> {
    let _slot = stats.sql(1, "releases.changed_nodes").await;
    let rows: ChangedNodes = sqlx::query_as(db::sql(concat!(
        "SELECT e.id, e.updated_at FROM bff.release_entity_projection e
          WHERE e.updated_at >= $2 AND ",
        in_release!(),
        " ORDER BY e.updated_at DESC LIMIT $3"
    )))
    .bind(release)
    .bind(since)
    .bind(i64::try_from(most).unwrap_or(i64::MAX).saturating_add(1))
    .persistent(false)
    .fetch_all(pool)
    .await?;
    Ok((rows.len() <= most).then_some(rows))
}

/// The rows of `release` strictly inside each range of `ord` (`(after, before)`), unordered:
/// the subtrees of the nodes at `after`, when `before` is where the next subtree of their
/// level starts (one statement, a range scan of the `(release_id, ord)` index each).
#[tracing::instrument(skip_all, fields(release.id = release, ranges.count = ranges.len()))]
pub async fn part_subtrees(
    pool: &PgPool,
    stats: &RequestStats,
    release: &str,
    ranges: &[(i32, i32)],
) -> Result<Vec<PartRow>, sqlx::Error> {
    let _slot = stats.sql(1, "releases.part_subtrees").await;
    let (after, before): (Vec<i32>, Vec<i32>) = ranges.iter().copied().unzip();
    part_decoded(sqlx::query(db::sql(concat!(
        "SELECT s.* FROM unnest($2::int4[], $3::int4[]) AS r (after, before) CROSS JOIN LATERAL (",
        part_columns!(),
        " WHERE e.release_id = $1 AND e.ord > r.after AND e.ord < r.before) s"
    )))
    .bind(release)
    .bind(&after)
    .bind(&before)
    .persistent(false)
    .fetch(pool))
    .await
}

/// The rows of `release` below each of `nodes`, the node at `ord` whose ancestors are `above`:
/// its subtree, the rows after it up to the first whose parent is one of `above` (a later
/// sibling of the node or of one of its ancestors), one range scan of the `(release_id, ord)`
/// index each (one statement). Unordered, like [`part_subtrees`]' rows: the tree they go into
/// sorts them (`ReleaseTree::from_part`), and Postgres sorting the 101,000 wide rows of 100
/// waves took 480 of the statement's 530 ms (it spilled to disk).
#[tracing::instrument(skip_all, fields(release.id = release, nodes.count = nodes.len()))]
pub async fn part_below(
    pool: &PgPool,
    stats: &RequestStats,
    release: &str,
    nodes: &[(i32, Vec<String>)],
) -> Result<Vec<PartRow>, sqlx::Error> {
    let _slot = stats.sql(1, "releases.part_below").await;
    let ords: Vec<i32> = nodes.iter().map(|(ord, _)| *ord).collect();
    // Each ancestor with the (1-based) number of the node it is above.
    let (of, above): (Vec<i64>, Vec<&str>) = (1..)
        .zip(nodes)
        .flat_map(|(i, (_, above))| above.iter().map(move |id| (i, id.as_str())))
        .unzip();
    part_decoded(
        sqlx::query(db::sql(concat!(
            "SELECT s.* FROM unnest($2::int4[]) WITH ORDINALITY AS n (ord, i) CROSS JOIN LATERAL (",
            part_columns!(),
            " WHERE e.release_id = $1 AND e.ord > n.ord AND e.ord < COALESCE((",
            "SELECT min(x.ord) FROM bff.release_entity_projection x",
            " WHERE x.parent_id = ANY(ARRAY(",
            "SELECT a.id FROM unnest($3::int8[], $4::text[]) AS a (i, id) WHERE a.i = n.i))",
            " AND x.ord > n.ord AND (x.release_id = $1) IS TRUE",
            "), 2147483647)) s"
        )))
        .bind(release)
        .bind(&ords)
        .bind(&of)
        .bind(&above)
        .persistent(false)
        .fetch(pool),
    )
    .await
}

/// `Release.nodes`' filter, as the store applies it.
#[derive(Debug, Clone, Default)]
pub struct PartFilter {
    /// Only these kinds (every kind below the release when empty).
    pub kinds: Vec<Kind>,
    /// Only these statuses (all when empty).
    pub statuses: Vec<RolloutStatus>,
    /// Key or name contains this, lowercased (case-insensitive).
    pub search: Option<String>,
}

fn push_part_filter(query: &mut QueryBuilder<Postgres>, release: &str, filter: &PartFilter) {
    query
        .push(" WHERE e.release_id = ")
        .push_bind(release.to_owned())
        // `ord` 0: a node the tree does not reach (see the migrations).
        .push(" AND e.kind <> 'release' AND e.ord > 0");
    if !filter.kinds.is_empty() {
        let kinds: Vec<&str> = filter.kinds.iter().map(|k| k.as_str()).collect();
        query.push(" AND e.kind = ANY(").push_bind(kinds).push(")");
    }
    if !filter.statuses.is_empty() {
        let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        query
            .push(" AND e.status = ANY(")
            .push_bind(statuses)
            .push(")");
    }
    if let Some(search) = &filter.search {
        let pattern = format!("%{}%", like_escaped(search));
        query
            .push(" AND (e.key ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR e.name ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
}

/// `text` with LIKE's wildcards escaped, so a search is literal.
fn like_escaped(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Where the node `after` of `release` is in tree order, and whether a node `filter` selects
/// comes before it or is it (`None` when `release` has no such node).
#[tracing::instrument(skip_all, fields(release.id = release))]
pub async fn part_cursor(
    pool: &PgPool,
    stats: &RequestStats,
    release: &str,
    after: &str,
    filter: &PartFilter,
) -> Result<Option<(i32, bool)>, sqlx::Error> {
    let _slot = stats.sql(1, "releases.part_cursor").await;
    let mut query = QueryBuilder::new(db::sql(
        "SELECT a.ord, EXISTS (SELECT 1 FROM bff.release_entity_projection e",
    ));
    push_part_filter(&mut query, release, filter);
    query
        .push(" AND e.ord <= a.ord) FROM bff.release_entity_projection a WHERE a.id = ")
        .push_bind(after.to_owned())
        // Not an index condition (see `in_release!`).
        .push(" AND (a.release_id = ")
        .push_bind(release.to_owned())
        .push(") IS TRUE")
        .push(" AND a.kind <> 'release' AND a.ord > 0");
    let row = query.build().persistent(false).fetch_optional(pool).await?;
    row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .transpose()
}

/// Up to `limit` nodes of `release` that `filter` selects, in tree order after `ord`, with how
/// many match in all when `count` (one statement; the count costs every match).
#[tracing::instrument(skip_all, fields(release.id = release))]
pub async fn part_page(
    pool: &PgPool,
    stats: &RequestStats,
    release: &str,
    filter: &PartFilter,
    after: Option<i32>,
    limit: i64,
    count: bool,
) -> Result<(Vec<PartRow>, Option<i64>), sqlx::Error> {
    let _slot = stats.sql(1, "releases.part_page").await;
    // The page joined to its count, so an empty page is still one row (of nulls) with it.
    let mut query = QueryBuilder::new(db::sql(concat!(
        "SELECT p.*, c.total FROM (",
        part_columns!()
    )));
    push_part_filter(&mut query, release, filter);
    if let Some(ord) = after {
        query.push(" AND e.ord > ").push_bind(ord);
    }
    query
        .push(" ORDER BY e.ord LIMIT ")
        .push_bind(limit)
        .push(") p RIGHT JOIN (SELECT ");
    if count {
        query.push(db::sql(
            "count(*) AS total FROM bff.release_entity_projection e",
        ));
        push_part_filter(&mut query, release, filter);
    } else {
        query.push("NULL::bigint AS total");
    }
    query.push(") c ON true ORDER BY p.ord");
    let rows = db::untraced(query.build().persistent(false).fetch_all(pool)).await?;
    let mut total = None;
    let mut nodes = Vec::with_capacity(rows.len());
    for row in &rows {
        total = row.try_get("total")?;
        // An empty page is one row of nulls that still carries the count.
        if row.try_get::<Option<String>, _>(1)?.is_some() {
            nodes.push(decode_part(row)?);
        }
    }
    Ok((nodes, total))
}

/// The rows of `release` in one of `statuses` (below the release) and, when `FAILED` is one of
/// them, the rows above a failed app, at most `limit` of them, in no particular order and each
/// once: what `tree(status:)` shows but the ancestors of its other matches (which their IDs
/// name, see [`lineage`]) and the bundles of its clusters.
///
/// The red path a dashboard asks for most is above the failed apps, the rows with
/// `apps_failed > 0` (the roll-ups change in the same transaction as the status): one range of
/// a partial index, where looking each ancestor up by key cost 3.2 ms for 1,101 of them (500
/// failed apps in 500 clusters of a 100,000-node release), and 0.5 ms as a range. Two index
/// scans, so a statement that plans in a fraction of the ancestor walk it replaced (1.5 ms of
/// planning, level by level, for 3 ms of execution); planned for its parameters all the same,
/// as a generic plan scans the release's every row for the statuses (158 ms at 100,000 nodes).
#[tracing::instrument(skip_all, fields(release.id = release))]
pub async fn part_matches(
    pool: &PgPool,
    stats: &RequestStats,
    release: &str,
    statuses: &[RolloutStatus],
    limit: usize,
) -> Result<Vec<PartRow>, sqlx::Error> {
    let _slot = stats.sql(1, "releases.part_matches").await;
    let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    part_decoded(
        sqlx::query(db::sql(concat!(
            part_columns!(),
            " WHERE e.release_id = $1 AND e.status = ANY($2) AND e.kind <> 'release' AND e.ord > 0",
            " UNION ALL ",
            part_columns!(),
            // `$2` is a constant of each run, so nothing is read when failures are not asked
            // for; a row that is a match is read once, by the first branch.
            " WHERE e.release_id = $1 AND e.apps_failed > 0 AND e.kind <> 'app'",
            " AND 'FAILED' = ANY($2) AND NOT (e.status = ANY($2) AND e.kind <> 'release')",
            " LIMIT $3"
        )))
        .bind(release)
        .bind(&statuses)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .persistent(false)
        .fetch(pool),
    )
    .await
}
