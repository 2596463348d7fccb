//! Reads of a release too large to read whole (more than `RELEASE_PART_ABOVE_NODES` nodes,
//! 100,000 in a big rollout): each list field reads only the rows its answer shows, from the
//! projection, and builds a tree of them ([`ReleaseTree::from_part`]) that the objects view as
//! they view a whole one. Each node keeps the position and roll-up the projection holds for
//! it, so it answers exactly as in the whole tree.
//!
//! What each field reads (one or two indexed statements, whatever the release's size):
//! - `waves(status:, first:, offset:)`: the release and its waves; with `clusters` selected
//!   (and nothing listed below them), the clusters of the waves listed too;
//! - `nodes(...)`: one page in tree order, and the page's ancestors for the paths;
//! - `tree(status:)`: the nodes in those statuses and their ancestors (and each such cluster's
//!   bundle);
//! - `timeline`: the waves and clusters; `estimate`: the waves.
//!
//! - `waves` with lists below their clusters (`waves(first: 1) { clusters { apps } }`, a
//!   dashboard opening a wave): the release, its waves, and the whole subtree of each wave
//!   listed, one range of `ord` each;
//! - nodes that list below them (`nodes { ... on Wave { clusters { apps } } }`, `node(id:)`,
//!   `Query.nodes`): the nodes, their ancestors and, when the lists below them list nothing
//!   themselves, their children (`nodes { ... on Wave { clusters { key } } }`), in one
//!   statement; else, in one more, the subtree of each (one range of `ord`; a node inside
//!   another's subtree comes with it).
//!
//! So no read of a release read in part reads its whole tree; the limit on what one answer
//! lists refuses an answer too large to send, as for a release read whole.

use std::{collections::HashSet, sync::Arc};

use async_graphql::{Context, ResultExt, SelectionField};
use sqlx::PgPool;

use crate::{
    contracts::{
        ids::Kind,
        release::{Node, RolloutStatus},
    },
    error::ApiError,
    metrics::RequestStats,
    releases::{
        store::{self, PartFilter, PartRow, ReleaseRow},
        tree::{FlatNode, Progress, ReleaseTree, Stored},
    },
};

/// The tree of a release read in part before any of its nodes are: the release node alone,
/// from its row (no statement), which the list fields read below.
pub(super) fn stub(row: &ReleaseRow) -> Option<ReleaseTree> {
    let node = Node {
        id: row.id.clone(),
        key: row.key.clone(),
        name: row.name.clone(),
        status: row.status,
        started_at: row.started_at,
        completed_at: row.completed_at,
        message: row.message.clone(),
        version: None,
        region: None,
        waves: None,
        clusters: None,
        bundle: None,
        apps: None,
    };
    let stored = Stored {
        position: 1,
        progress: Progress::from_counts(
            row.apps_total,
            row.apps_succeeded,
            row.apps_failed,
            row.apps_in_progress,
            row.apps_pending,
        ),
    };
    let root = FlatNode {
        node,
        parent_id: None,
        stored: Some(stored),
    };
    let size = usize::try_from(row.node_count).unwrap_or(0);
    ReleaseTree::from_part(vec![(root, 0)], size, row.updated_at)
}

/// Whether `field` selects, on the nodes it lists, a field that lists nodes below them
/// (fragments included: `selection_set` flattens them).
pub(super) fn lists_below(field: &SelectionField<'_>) -> bool {
    field
        .selection_set()
        .any(|f| matches!(f.name(), "clusters" | "apps" | "bundle"))
}

/// How far below the nodes it lists `field` lists nodes (`None`: not at all): their children
/// when its lists list nothing themselves, else their subtrees. `apps` counts as two levels
/// down, as a cluster's are (its bundle's): fragments flattened, the selection does not say
/// whose `apps` they are.
pub(super) fn opened(field: &SelectionField<'_>) -> Option<Below> {
    let lists: Vec<SelectionField<'_>> = field
        .selection_set()
        .filter(|f| matches!(f.name(), "clusters" | "apps" | "bundle"))
        .collect();
    if lists.is_empty() {
        return None;
    }
    let deeper = lists
        .iter()
        .any(|list| list.name() == "apps" || lists_below(list));
    Some(if deeper {
        Below::Subtrees
    } else {
        Below::Children
    })
}

/// [`opened`] for connection `field` (`Release.nodes`, `Query.nodes`): how far below its
/// nodes it lists.
pub(super) fn edges_opened(field: &SelectionField<'_>) -> Option<Below> {
    field
        .selection_set()
        .filter_map(|f| match f.name() {
            "edges" => f
                .selection_set()
                .filter(|node| node.name() == "node")
                .filter_map(|node| opened(&node))
                .max(),
            "nodes" => opened(&f),
            _ => None,
        })
        .max()
}

/// A tree of `rows` of the release `stub` stands for.
fn tree_of(stub: &ReleaseTree, rows: Vec<PartRow>) -> async_graphql::Result<Arc<ReleaseTree>> {
    ReleaseTree::from_part(rows, stub.size(), stub.as_of)
        .map(Arc::new)
        .ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("{} has no release node", stub.root.node.id))
        })
        .extend()
}

/// The pool and the request's statistics.
fn db<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<(&'a PgPool, &'a RequestStats)> {
    Ok((
        ctx.data::<PgPool>()?,
        ctx.data::<Arc<RequestStats>>()?.as_ref(),
    ))
}

/// How far below the nodes it shows a read reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Below {
    /// The nodes right below them (a wave's clusters).
    Children,
    /// Everything below them: each wave's rows are one range of `ord`, up to the next wave's.
    Subtrees,
}

/// The release and its waves and, then, the nodes `depth` below the waves `pick` names in
/// that tree (a second statement, when it names any).
pub(super) async fn levels(
    ctx: &Context<'_>,
    stub: &ReleaseTree,
    depth: Below,
    pick: impl FnOnce(&Arc<ReleaseTree>) -> async_graphql::Result<Vec<String>>,
) -> async_graphql::Result<Arc<ReleaseTree>> {
    let (db, stats) = db(ctx)?;
    let release = &stub.root.node.id;
    let ids = [release.clone()];
    let mut rows = store::part_rows(db, stats, release, &ids, &ids)
        .await
        .map_err(ApiError::from)
        .extend()?;
    let waves = tree_of(stub, rows.clone())?;
    let picked = pick(&waves)?;
    if picked.is_empty() {
        return Ok(waves);
    }
    let below = match depth {
        Below::Children => store::part_rows(db, stats, release, &[], &picked).await,
        Below::Subtrees => {
            // The rows are in tree order: the waves' `ord`s ascend.
            let ords: Vec<(&str, i32)> = rows
                .iter()
                .filter(|(row, _)| row.parent_id.as_ref() == Some(release))
                .map(|(row, ord)| (row.node.id.as_str(), *ord))
                .collect();
            let ranges: Vec<(i32, i32)> = ords
                .iter()
                .enumerate()
                .filter(|(_, (id, _))| picked.iter().any(|p| p == id))
                .map(|(i, (_, ord))| (*ord, ords.get(i + 1).map_or(i32::MAX, |next| next.1)))
                .collect();
            store::part_subtrees(db, stats, release, &ranges).await
        }
    };
    rows.extend(below.map_err(ApiError::from).extend()?);
    tree_of(stub, rows)
}

/// Nodes `ids` of the release `stub` stands for, with their ancestors (one statement).
pub(super) async fn with_ancestors(
    ctx: &Context<'_>,
    stub: &ReleaseTree,
    ids: &[String],
) -> async_graphql::Result<Arc<ReleaseTree>> {
    let (db, stats) = db(ctx)?;
    let release = &stub.root.node.id;
    let rows = store::part_rows(db, stats, release, &store::lineage(release, ids), &[])
        .await
        .map_err(ApiError::from)
        .extend()?;
    tree_of(stub, rows)
}

/// Nodes `ids` of the release `stub` stands for, with their ancestors and what is `below`
/// them: for a selection that lists below the nodes it shows. Their children come with the
/// ancestors (one statement); their subtrees take one more (one range of `ord` each).
pub(super) async fn with_below(
    ctx: &Context<'_>,
    stub: &ReleaseTree,
    ids: &[String],
    below: Below,
) -> async_graphql::Result<Arc<ReleaseTree>> {
    let (db, stats) = db(ctx)?;
    let release = &stub.root.node.id;
    let children_of = match below {
        Below::Children => ids,
        Below::Subtrees => &[],
    };
    let mut rows = store::part_rows(
        db,
        stats,
        release,
        &store::lineage(release, ids),
        children_of,
    )
    .await
    .map_err(ApiError::from)
    .extend()?;
    if below == Below::Subtrees {
        // A node that is not there is not opened: the tree answers that it has no such node.
        let opened: Vec<&PartRow> = rows
            .iter()
            .filter(|(row, _)| ids.contains(&row.node.id))
            .collect();
        let subtrees = subtrees(db, stats, release, &opened).await?;
        rows.extend(subtrees);
    }
    tree_of(stub, rows)
}

/// The rows below `nodes` of `release` (one statement): the subtree of each that can have
/// one and is not inside another's.
async fn subtrees(
    db: &PgPool,
    stats: &RequestStats,
    release: &str,
    nodes: &[&PartRow],
) -> async_graphql::Result<Vec<PartRow>> {
    let opened: HashSet<&str> = nodes.iter().map(|(row, _)| row.node.id.as_str()).collect();
    let outermost: Vec<(i32, Vec<String>)> = nodes
        .iter()
        .filter(|(row, _)| !is_of(&row.node.id, Kind::App))
        .filter_map(|(row, ord)| {
            let id = &row.node.id;
            let above: Vec<String> = store::lineage(release, std::slice::from_ref(id))
                .into_iter()
                .filter(|up| up != id)
                .collect();
            (!above.iter().any(|up| opened.contains(up.as_str()))).then_some((*ord, above))
        })
        .collect();
    if outermost.is_empty() {
        return Ok(Vec::new());
    }
    store::part_below(db, stats, release, &outermost)
        .await
        .map_err(ApiError::from)
        .extend()
}

/// Most rows `tree(status:)` reads of a release read in part before it refuses (the rows in
/// those statuses and those above a failed app): a red part of this size is already more than a
/// dashboard shows, and without a bound one short document that asks for the statuses of most
/// nodes read every row of a 100,000-node release (380 ms), once for each alias of the field.
pub const MAX_PRUNED_MATCHES: usize = 5_000;

/// The tree cut down to the paths to the nodes in one of `statuses`: the matches and the rows
/// above the failed apps (`store::part_matches`), then, in a second statement only when some
/// are missing, the other matches' ancestors and the bundles of the clusters among them (a
/// cluster always shows its bundle). The red path needs no second statement: every ancestor of
/// a failed app is above a failed app, and so is the bundle of a cluster with one. Read through
/// `ReleaseLoader::pruned`, once per request.
pub(super) async fn pruned(
    db: &PgPool,
    stats: &RequestStats,
    stub: &ReleaseTree,
    statuses: &[RolloutStatus],
) -> async_graphql::Result<Arc<ReleaseTree>> {
    let release = &stub.root.node.id;
    let mut rows = store::part_matches(db, stats, release, statuses, MAX_PRUNED_MATCHES + 1)
        .await
        .map_err(ApiError::from)
        .extend()?;
    if rows.len() > MAX_PRUNED_MATCHES {
        return Err(ApiError::bad_input(
            "status",
            format!(
                "more than {MAX_PRUNED_MATCHES} nodes of {release} are in these statuses or above \
                 a failed app: list them a page at a time with `nodes(status:, first:)`, or ask \
                 `tree(status:)` for fewer statuses"
            ),
        ))
        .extend();
    }
    let read: HashSet<&str> = rows.iter().map(|(row, _)| row.node.id.as_str()).collect();
    // The lineage of the rows whose parent was not read (none on the red path, but for the
    // release): their IDs name their ancestors.
    let orphans: Vec<String> = rows
        .iter()
        .filter(|(row, _)| {
            row.parent_id
                .as_deref()
                .is_some_and(|up| !read.contains(up))
        })
        .map(|(row, _)| row.node.id.clone())
        .collect();
    let missing: Vec<String> = store::lineage(release, &orphans)
        .into_iter()
        .filter(|id| !read.contains(id.as_str()))
        .collect();
    let with_bundle: HashSet<&str> = rows
        .iter()
        .filter(|(row, _)| is_of(&row.node.id, Kind::Bundle))
        .filter_map(|(row, _)| row.parent_id.as_deref())
        .collect();
    let bundles_of: Vec<String> = read
        .iter()
        .filter(|id| is_of(id, Kind::Cluster) && !with_bundle.contains(*id))
        .map(|id| (*id).to_owned())
        .collect();
    if !missing.is_empty() || !bundles_of.is_empty() {
        let more = store::part_rows(db, stats, release, &missing, &bundles_of)
            .await
            .map_err(ApiError::from)
            .extend()?;
        rows.extend(more);
    }
    tree_of(stub, rows)
}

/// Whether the global ID of a stored row names a node of `kind`: its prefix, without parsing
/// its keys (the stored IDs are the service's own).
fn is_of(id: &str, kind: Kind) -> bool {
    id.split_once(':')
        .is_some_and(|(prefix, _)| prefix == kind.as_str())
}

/// One page of `Release.nodes`, read in part: the tree of the page's nodes and their
/// ancestors, the page's node IDs in order, whether nodes come before and after it, and how
/// many match when `count`.
pub(super) struct Page {
    pub tree: Arc<ReleaseTree>,
    pub ids: Vec<String>,
    pub has_previous: bool,
    pub has_next: bool,
    pub total: Option<i64>,
}

/// The page of `filter`'s nodes after the node `after` (`BAD_USER_INPUT` when the release has
/// no such node), `first` of them, with what is `below` them when the selection lists it.
pub(super) async fn page(
    ctx: &Context<'_>,
    stub: &ReleaseTree,
    filter: &PartFilter,
    after: Option<&str>,
    first: usize,
    count: bool,
    below: Option<Below>,
) -> async_graphql::Result<Page> {
    let (db, stats) = db(ctx)?;
    let release = &stub.root.node.id;
    let (after, has_previous) = match after {
        None => (None, false),
        Some(after) => {
            let found = store::part_cursor(db, stats, release, after, filter)
                .await
                .map_err(ApiError::from)
                .extend()?;
            let Some((ord, before)) = found else {
                return Err(ApiError::bad_input(
                    "after",
                    "after names no node of this release",
                ))
                .extend();
            };
            (Some(ord), before)
        }
    };
    let limit = i64::try_from(first).unwrap_or(i64::MAX).saturating_add(1);
    let (mut rows, total) = store::part_page(db, stats, release, filter, after, limit, count)
        .await
        .map_err(ApiError::from)
        .extend()?;
    let has_next = rows.len() > first;
    rows.truncate(first);
    let subtrees = if below == Some(Below::Subtrees) {
        subtrees(db, stats, release, &rows.iter().collect::<Vec<_>>()).await?
    } else {
        Vec::new()
    };
    let ids: Vec<String> = rows.iter().map(|(node, _)| node.node.id.clone()).collect();
    let ancestors: Vec<String> = store::lineage(release, &ids)
        .into_iter()
        .filter(|id| !ids.contains(id))
        .collect();
    // The page's children, when they are listed, come with its ancestors.
    let children_of: &[String] = match below {
        Some(Below::Children) => &ids,
        _ => &[],
    };
    rows.extend(
        store::part_rows(db, stats, release, &ancestors, children_of)
            .await
            .map_err(ApiError::from)
            .extend()?,
    );
    rows.extend(subtrees);
    Ok(Page {
        tree: tree_of(stub, rows)?,
        ids,
        has_previous,
        has_next,
        total,
    })
}
