//! The release part of the GraphQL schema: the `releases` connection, `release(id)` and
//! `entity(id)`. The objects are in `objects`; every one is a view into one shared tree,
//! loaded once per request per release through `loader` (one SQL statement for the rows, one
//! for the trees, one live `getHierarchy` per running release at most, shared across requests).

pub mod compiled;
mod history;
mod loader;
mod nodes;
mod objects;
mod part;
mod subscription;

use std::{collections::HashMap, sync::Arc};

use async_graphql::{
    Context, ErrorExtensions as _, ID, Object, ResultExt,
    connection::{Connection, Edge},
    dataloader::DataLoader,
};
use sqlx::PgPool;

use chrono::{DateTime, Utc};

pub use self::{
    loader::ReleaseLoader,
    objects::{
        App, Bundle, Cluster, Entity, HierarchyEntity, Release, ReleaseFilter, Wave, find_entity,
        parse_id,
    },
    subscription::{ReleaseChange, ReleasesSubscription},
};
use self::{
    loader::load_row,
    nodes::{NodeKind, NodePath},
    objects::ReleaseNode,
};
use super::store::{self, Position, ReleaseFilter as StoreFilter};
use crate::{
    auth::{RequirePermission, graphql::ContextExt, permissions},
    contracts::{
        events::ControlAction,
        ids::{EntityId, Key, Kind},
        release::RolloutStatus,
    },
    error::ApiError,
    graphql::connection::{
        ConnectionTotal, DEFAULT_PAGE, bad_cursor, check_page_size, decode_keyset, encode_keyset,
        page_complexity,
    },
    graphql::context::RequestId,
    metrics::RequestStats,
    releases::control::{MAX_REASON_CHARS, ReleaseControl},
};

/// The fields of a release that need its whole tree (the rest are its row).
const TREE_FIELDS: [&str; 5] = ["waves", "tree", "nodes", "timeline", "estimate"];

/// Largest `offset` accepted (numbered pages further than this are not a use case).
pub const MAX_OFFSET: i64 = 100_000;

/// Checks an `offset` argument: 0 to [`MAX_OFFSET`].
fn check_offset(offset: i64) -> async_graphql::Result<()> {
    if (0..=MAX_OFFSET).contains(&offset) {
        Ok(())
    } else {
        Err(
            ApiError::bad_input("offset", format!("offset must be from 0 to {MAX_OFFSET}"))
                .extend(),
        )
    }
}

/// Longest `search` accepted (`filter.search` of `releases`, `search` of `Release.nodes`).
pub const MAX_SEARCH_CHARS: usize = 100;

impl ReleaseFilter {
    /// The filter as the store applies it (`BAD_USER_INPUT` for a search that is too long).
    pub fn parse(self) -> async_graphql::Result<StoreFilter> {
        if self
            .search
            .as_deref()
            .is_some_and(|s| s.chars().count() > MAX_SEARCH_CHARS)
        {
            return Err(ApiError::bad_input(
                "filter.search",
                format!("search must be at most {MAX_SEARCH_CHARS} characters"),
            ))
            .extend();
        }
        // Postgres text cannot hold NUL: refused here, not an internal error there.
        if self
            .search
            .as_deref()
            .is_some_and(|s| s.chars().any(crate::types::is_invisible))
        {
            return Err(ApiError::bad_input(
                "filter.search",
                "search must not contain control or invisible formatting characters",
            ))
            .extend();
        }
        Ok(StoreFilter {
            statuses: self.status.unwrap_or_default(),
            search: self.search,
        })
    }
}

/// Parses a release ID argument (`BAD_USER_INPUT` if malformed or another kind's).
pub fn parse_release_id(id: &ID) -> async_graphql::Result<EntityId> {
    let id = parse_id("id", id)?;
    if id.kind() != Kind::Release {
        return Err(ApiError::bad_input(
            "id",
            "not a release id (release:{key})",
        ))
        .extend();
    }
    Ok(id)
}

/// Release `id` read as the selection asks: its tree when one of [`TREE_FIELDS`] is selected,
/// else its row.
async fn release_as_asked(
    ctx: &Context<'_>,
    id: &EntityId,
) -> async_graphql::Result<Option<Release>> {
    let look_ahead = ctx.look_ahead();
    if TREE_FIELDS
        .into_iter()
        .any(|field| look_ahead.field(field).exists())
    {
        return Ok(find_entity(ctx, id).await?.map(Release::Tree));
    }
    // Only the release's own fields: its row, no tree.
    Ok(load_row(ctx, &id.to_string()).await?.map(Release::Row))
}

/// Release control (permission `release.control`).
#[derive(Default)]
pub struct ReleasesMutation;

#[Object]
impl ReleasesMutation {
    /// Pauses a running release: no new app deploy starts (the ones under way finish) until
    /// `resumeRelease`. Pausing a paused release changes nothing. Returns the release as it
    /// is now; `pendingControl` says `PAUSE` while the signal waits for Temporal.
    #[graphql(guard = "RequirePermission(permissions::CONTROL_RELEASES)")]
    async fn pause_release(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Release> {
        control(ctx, &id, ControlAction::Pause, None).await
    }

    /// Resumes a paused release. Returns the release as it is now.
    #[graphql(guard = "RequirePermission(permissions::CONTROL_RELEASES)")]
    async fn resume_release(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Release> {
        control(ctx, &id, ControlAction::Resume, None).await
    }

    /// Cancels a release with Temporal's cancellation: no new deploy starts, and the nodes
    /// that had not finished end `CANCELLED`. `reason` (at most 500 characters) is kept with
    /// the request. Returns the release as it is now.
    #[graphql(guard = "RequirePermission(permissions::CONTROL_RELEASES)")]
    async fn cancel_release(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: Option<String>,
    ) -> async_graphql::Result<Release> {
        control(ctx, &id, ControlAction::Cancel, reason).await
    }
}

/// Asks for `action` on release `id`, then reads it as the selection asks.
#[tracing::instrument(skip_all, fields(release.id = %id.as_str(), control.action = action.as_str()))]
async fn control(
    ctx: &Context<'_>,
    id: &ID,
    action: ControlAction,
    reason: Option<String>,
) -> async_graphql::Result<Release> {
    let id = parse_release_id(id)?;
    if reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
    {
        return Err(ApiError::bad_input(
            "reason",
            format!("reason must be at most {MAX_REASON_CHARS} characters"),
        ))
        .extend();
    }
    if reason
        .as_deref()
        .is_some_and(|r| r.contains(|c: char| c.is_control() && c != '\n' && c != '\t'))
    {
        return Err(ApiError::bad_input(
            "reason",
            "reason must not contain control characters other than line breaks and tabs",
        ))
        .extend();
    }
    let correlation = ctx
        .data_opt::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let status = ctx
        .data::<Arc<ReleaseControl>>()?
        .request(ctx.principal()?, &id, action, reason, &correlation)
        .await
        .extend()?;
    // The answer shows it too: `pendingControl` while queued, the new status once applied.
    tracing::info!(control.status = ?status, "release control requested");
    release_as_asked(ctx, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no release {id}")))
        .extend()
}

/// The release root fields.
#[derive(Default)]
pub struct ReleasesQuery;

#[Object]
impl ReleasesQuery {
    /// Releases, newest first, as a Relay connection (forwards with `first`/`after`,
    /// backwards with `last`/`before`; at most 100 per page, 20 by default). `offset` skips
    /// that many from the newest, for numbered pages (not with `after`, `last` or `before`).
    #[tracing::instrument(skip_all)]
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn releases(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        offset: Option<i32>,
        filter: Option<ReleaseFilter>,
    ) -> async_graphql::Result<Connection<String, Release, ConnectionTotal>> {
        if first.is_some() && last.is_some() {
            return Err(ApiError::bad_input("first", "give first or last, not both")).extend();
        }
        let offset = i64::from(offset.unwrap_or(0));
        if offset != 0 && (after.is_some() || last.is_some() || before.is_some()) {
            return Err(ApiError::bad_input(
                "offset",
                "offset pages forwards from the newest: not with after, last or before",
            ))
            .extend();
        }
        check_offset(offset)?;
        check_page_size("first", first)?;
        check_page_size("last", last)?;
        if first.is_some() && before.is_some() || last.is_some() && after.is_some() {
            return Err(ApiError::bad_input(
                "after",
                "page forwards with first/after or backwards with last/before, not both",
            ))
            .extend();
        }
        let forward = last.is_none();
        let size = i64::from(if forward {
            first.unwrap_or(DEFAULT_PAGE)
        } else {
            last.unwrap_or(DEFAULT_PAGE)
        });
        let cursor = match (forward, &after, &before) {
            (true, Some(after), _) => Some(decode_keyset("after", after)?),
            (false, _, Some(before)) => Some(decode_keyset("before", before)?),
            _ => None,
        };
        let filter = filter.unwrap_or_default().parse()?;
        let db = ctx.data::<PgPool>()?;
        let stats = ctx.data::<Arc<RequestStats>>()?;
        let position = match (&cursor, forward) {
            (Some(cursor), true) => Position::After(cursor),
            (None, true) => Position::Skip(offset),
            (cursor, false) => Position::Before(cursor.as_ref()),
        };
        let (rows, total) = store::page(db, stats, &filter, position, size + 1)
            .await
            .map_err(ApiError::from)
            .extend()?;
        let has_more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > size;
        let rows: Vec<_> = if forward {
            rows.into_iter()
                .take(usize::try_from(size).unwrap_or(0))
                .collect()
        } else {
            let skip = rows
                .len()
                .saturating_sub(usize::try_from(size).unwrap_or(0));
            rows.into_iter().skip(skip).collect()
        };
        let (has_previous, has_next) = if forward {
            (cursor.is_some() || offset > 0, has_more)
        } else {
            (has_more, cursor.is_some())
        };
        let mut connection = Connection::with_additional_fields(
            has_previous,
            has_next,
            ConnectionTotal { total_count: total },
        );
        // The page already has the rows: they answer a release's own fields; trees are read
        // (without reading the rows again) only when the selection asks for one of TREE_FIELDS.
        let look_ahead = ctx.look_ahead();
        let wants_trees = TREE_FIELDS.into_iter().any(|tree_field| {
            look_ahead
                .field("edges")
                .field("node")
                .field(tree_field)
                .exists()
                || look_ahead.field("nodes").field(tree_field).exists()
        });
        let trees = if wants_trees {
            ctx.data::<DataLoader<ReleaseLoader>>()?
                .loader()
                .trees(&rows)
                .await
                .map_err(|e| ApiError::database(&e))
                .extend()?
        } else {
            HashMap::new()
        };
        for row in rows {
            let cursor = encode_keyset(row.created_at, &row.id);
            let release = match trees.get(&row.id) {
                Some(tree) => Release::Tree(Entity::root(Arc::clone(tree))),
                None => Release::Row(Arc::new(row)),
            };
            connection.edges.push(Edge::new(cursor, release));
        }
        Ok(connection)
    }

    /// Waves, clusters, bundles and apps across every release, most recently changed first:
    /// "where did app `api-gateway` fail in the last 7 days" is
    /// `nodes(kind: APP, key: "api-gateway", status: [FAILED], since: …)`. Each edge carries
    /// the node's path from its release. A search follows an index (by `key`, or by recency
    /// without one) whatever the number of releases; `totalCount` costs every match, so ask for it only when shown.
    #[graphql(complexity = "page_complexity(first, None, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only nodes of this kind.")] kind: Option<NodeKind>,
        #[graphql(desc = "Only nodes with this key, exactly.")] key: Option<String>,
        #[graphql(desc = "Only nodes in one of these statuses (all when absent or empty).")]
        status: Option<Vec<RolloutStatus>>,
        #[graphql(desc = "Only nodes that changed at or after this time.")] since: Option<
            DateTime<Utc>,
        >,
        #[graphql(desc = "Page size, 0 to 100 (20 when absent).")] first: Option<i32>,
        #[graphql(desc = "The `cursor` of the edge to continue after.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, ReleaseNode, ConnectionTotal, NodePath>> {
        check_page_size("first", first)?;
        let key = key
            .map(|key| {
                Key::parse(&key)
                    .map_err(|why| ApiError::bad_input("key", format!("not a key: {why}")))
            })
            .transpose()
            .extend()?;
        let cursor = after
            .map(|after| {
                decode_keyset("after", &after).and_then(|(at, id)| {
                    // Only a node's cursor: a release list's has a release ID.
                    match EntityId::parse(&id) {
                        Ok(node) if node.kind() != Kind::Release => Ok((at, id)),
                        _ => Err(bad_cursor("after").extend()),
                    }
                })
            })
            .transpose()?;
        let search = store::NodeSearch {
            kind: kind.map(NodeKind::kind),
            key,
            statuses: status.unwrap_or_default(),
            since,
        };
        let size = i64::from(first.unwrap_or(DEFAULT_PAGE));
        let db = ctx.data::<PgPool>()?;
        let stats = ctx.data::<Arc<RequestStats>>()?;
        let count = ctx.look_ahead().field("totalCount").exists();
        let (found, total) =
            store::search_nodes(db, stats, &search, cursor.as_ref(), size + 1, count)
                .await
                .map_err(ApiError::from)
                .extend()?;
        let has_next = i64::try_from(found.len()).unwrap_or(i64::MAX) > size;
        let found: Vec<_> = found
            .into_iter()
            .take(usize::try_from(size).unwrap_or(0))
            .collect();
        // The nodes are views into their releases' trees, loaded in one batch (closed ones
        // from the cache), so every field answers as it does under `release`.
        let releases: Vec<String> = found.iter().map(|n| n.release_id.clone()).collect();
        let mut trees = ctx
            .data::<DataLoader<ReleaseLoader>>()?
            .load_many(releases)
            .await
            .map_err(|e| ApiError::database(&e))
            .extend()?;
        // A release read in part has only its node loaded: its nodes on the page are read
        // with their ancestors (one statement per such release), and what is below them when
        // the selection lists it (their children in the same statement, their subtrees in
        // one more).
        let below = part::edges_opened(&ctx.field());
        for tree in trees.values_mut().filter(|tree| tree.part_of.is_some()) {
            let release = &tree.root.node.id;
            let ids: Vec<String> = found
                .iter()
                .filter(|node| &node.release_id == release)
                .map(|node| node.id.clone())
                .collect();
            *tree = match below {
                Some(below) => part::with_below(ctx, tree, &ids, below).await?,
                None => part::with_ancestors(ctx, tree, &ids).await?,
            };
        }
        let mut connection = Connection::with_additional_fields(
            cursor.is_some(),
            has_next,
            // Counted only when asked for (see `store::search_nodes`).
            ConnectionTotal {
                total_count: total.unwrap_or_default(),
            },
        );
        connection
            .edges
            .extend(found.into_iter().filter_map(|node| {
                let entity = Entity::of(Arc::clone(trees.get(&node.release_id)?), &node.id)?;
                let path = entity.path();
                entity.into_edge(encode_keyset(node.updated_at, &node.id), path)
            }));
        Ok(connection)
    }

    /// One release by global ID (`release:{key}`); `null` if there is none.
    async fn release(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Release>> {
        let id = parse_release_id(&id)?;
        release_as_asked(ctx, &id).await
    }

    /// Any hierarchy node by global ID; `null` if there is none.
    async fn entity(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<HierarchyEntity>> {
        let id = parse_id("id", &id)?;
        Ok(find_entity(ctx, &id).await?.map(Entity::into_object))
    }
}
