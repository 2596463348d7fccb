//! The hierarchy objects (`Release → Wave → Cluster → Bundle → App`): each a view into one
//! shared [`ReleaseTree`].

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use async_graphql::{
    Context, ErrorExtensions as _, ID, InputObject, Object, ResultExt, SelectionField, Union,
    connection::{Connection, Edge},
    dataloader::DataLoader,
};
use chrono::{DateTime, Utc};

use super::{
    history,
    loader::{PendingControlKey, ReleaseLoader, load_pruned, load_tree},
    nodes::{self, NodeFilter, NodeKind, NodePath, ReleaseEstimate, TimelineSpan},
    part::{self, Below},
};
use crate::releases::store::ReleaseRow;
use crate::{
    contracts::{
        events::ControlAction,
        ids::{EntityId, Kind},
        release::RolloutStatus,
    },
    error::ApiError,
    graphql::connection::{ConnectionTotal, check_page_size, list_complexity, page_complexity},
    releases::tree::{DataSource, Progress, ReleaseTree, TreeNode},
};

/// A view of one node of a loaded tree.
#[derive(Clone)]
pub struct Entity {
    tree: Arc<ReleaseTree>,
    node: Arc<TreeNode>,
    /// Under `Release.tree(status:)`: the nodes on a path to a match (by address in `tree`);
    /// child lists below show only these.
    pruned: Option<Arc<HashSet<usize>>>,
    /// The nodes the child lists of this answer will list (shared by every view made from one
    /// root): at most [`MAX_LISTED`]. Each list that is not below another one counts, before
    /// it lists anything, every node it and the lists selected below it will list.
    listed: Arc<AtomicUsize>,
    /// This node came from a list, so the lists below it are already counted.
    counted: bool,
}

/// Most nodes the child lists (`waves`, `clusters`, `apps`) of one release list in one answer.
/// The whole tree of a release larger than this is refused, with a message that names the paged
/// and filtered reads to use instead: it would be megabytes of JSON no screen can show.
pub const MAX_LISTED: usize = 20_000;

/// What `tree(status:)` adds to a document's complexity beyond its list: of a release read in
/// part it is a statement of up to `part::MAX_PRUNED_MATCHES` rows (17 ms at 100,000 nodes),
/// so one document may hold at most 14 of them, where a hundred aliases took 1.7 s.
pub const TREE_COMPLEXITY: usize = 1_000;

impl Entity {
    /// The release node of `tree`.
    pub fn root(tree: Arc<ReleaseTree>) -> Self {
        let node = Arc::clone(&tree.root);
        Self::at(tree, node)
    }

    /// A view of `node` of `tree`, the root of an answer's views.
    fn at(tree: Arc<ReleaseTree>, node: Arc<TreeNode>) -> Self {
        Self {
            tree,
            node,
            pruned: None,
            listed: Arc::default(),
            counted: false,
        }
    }

    /// The node with global ID `id` of `tree`, if it is there.
    pub(super) fn of(tree: Arc<ReleaseTree>, id: &str) -> Option<Self> {
        let node = tree.find(id)?;
        Some(Self::at(tree, node))
    }

    /// The node's ancestors, from the release down to its parent (as `Release.nodes`' edges
    /// carry them).
    pub(super) fn path(&self) -> Vec<nodes::PathStep> {
        let mut path = Vec::new();
        let mut at = EntityId::parse(&self.node.node.id)
            .ok()
            .and_then(|id| id.parent());
        while let Some(id) = at {
            if let Some(node) = self.tree.find(&id.to_string()) {
                path.push(nodes::PathStep::of(&node));
            }
            at = id.parent();
        }
        path.reverse();
        path
    }

    /// The release node alone when its release is read in part (see `part`): its list fields
    /// read the rows they show.
    fn stub(&self) -> Option<&ReleaseTree> {
        self.tree.part_of.is_some().then_some(&*self.tree)
    }

    /// This release as `waves` (with `only`) reads it: itself when read whole; else the release
    /// and its waves, with the clusters of the waves listed when `clusters` is selected, or the
    /// whole tree when a list below the clusters is.
    async fn for_waves(
        &self,
        ctx: &Context<'_>,
        only: &ChildFilter,
    ) -> async_graphql::Result<Self> {
        let Some(stub) = self.stub() else {
            return Ok(self.clone());
        };
        let field = ctx.field();
        let clusters: Vec<SelectionField<'_>> = field
            .selection_set()
            .filter(|f| f.name() == "clusters")
            .collect();
        let listed = |tree: &Arc<ReleaseTree>| {
            Entity::root(Arc::clone(tree))
                .select(Kind::Wave, only)
                .map(|wave| wave.node.id.clone())
                .collect::<Vec<_>>()
        };
        let tree = if clusters.iter().any(part::lists_below) {
            let every_app = clusters.iter().any(lists_every_app);
            part::levels(ctx, stub, Below::Subtrees, |waves| {
                // The waves' roll-ups count the apps below them: an answer that would list
                // every app of more than `MAX_LISTED` is refused before their rows are read
                // (2 ms instead of 300 at 100,000 nodes).
                if every_app {
                    // At least: each wave, its apps, and a cluster above them.
                    let least: usize = Entity::root(Arc::clone(waves))
                        .select(Kind::Wave, only)
                        .map(
                            |wave| match usize::try_from(wave.progress.total).unwrap_or(0) {
                                0 => 1,
                                apps => apps + 2,
                            },
                        )
                        .sum();
                    if least > MAX_LISTED {
                        return Err(too_many_listed(stub, field.name()));
                    }
                }
                Ok(listed(waves))
            })
            .await?
        } else if clusters.is_empty() {
            part::levels(ctx, stub, Below::Children, |_| Ok(Vec::new())).await?
        } else {
            part::levels(ctx, stub, Below::Children, |tree| Ok(listed(tree))).await?
        };
        Ok(Self::root(tree))
    }

    /// The node this views.
    pub(super) fn node(&self) -> &Arc<TreeNode> {
        &self.node
    }

    /// When its tree was read.
    pub(super) fn as_of(&self) -> DateTime<Utc> {
        self.tree.as_of
    }

    /// A view of `node`, a node of the same tree, under the same pruning.
    pub(super) fn view(&self, node: &Arc<TreeNode>) -> Entity {
        Entity {
            tree: Arc::clone(&self.tree),
            node: Arc::clone(node),
            pruned: self.pruned.clone(),
            listed: Arc::clone(&self.listed),
            counted: false,
        }
    }

    /// This node, with the lists below it cut down to the paths that lead to nodes in one of
    /// `statuses` (this node itself is not judged).
    fn pruned_to(&self, statuses: &[RolloutStatus]) -> Entity {
        Entity {
            pruned: Some(Arc::new(paths_to(&self.node, statuses))),
            ..self.clone()
        }
    }

    fn children(&self) -> Vec<Entity> {
        self.node
            .children
            .iter()
            .map(|child| self.view(child))
            .collect()
    }

    /// The nodes of `kind` right below this one (looking through a cluster's bundle for its
    /// apps) that a child list's arguments select, in order: those in one of `status` (all when
    /// it is absent or empty), then `offset` of them skipped and at most `first` kept.
    fn select(&self, kind: Kind, only: &ChildFilter) -> impl Iterator<Item = &Arc<TreeNode>> {
        let wanted = move |child: &&Arc<TreeNode>| {
            child.kind == kind
                && (only.status.is_empty() || only.status.contains(&child.node.status))
                && self
                    .pruned
                    .as_ref()
                    .is_none_or(|on| on.contains(&Arc::as_ptr(child).addr()))
        };
        let through_bundle = self.node.kind == Kind::Cluster && kind == Kind::App;
        let parent = match self.node.children.first() {
            Some(bundle) if through_bundle => bundle,
            _ => &self.node,
        };
        parent
            .children
            .iter()
            .filter(wanted)
            .skip(only.offset)
            .take(only.first)
    }

    /// The list `ctx` resolves: the nodes [`Entity::select`] selects. `BAD_USER_INPUT`, before
    /// anything is listed, when this answer's lists would hold more than [`MAX_LISTED`] nodes.
    fn listed(
        &self,
        ctx: &Context<'_>,
        kind: Kind,
        only: &ChildFilter,
    ) -> async_graphql::Result<Vec<Entity>> {
        if !self.counted {
            let field = ctx.field();
            let room = MAX_LISTED.saturating_sub(self.listed.load(Ordering::Relaxed));
            let needed = self.listing(kind, only, &field, room);
            let before = self.listed.fetch_add(needed, Ordering::Relaxed);
            if before + needed > MAX_LISTED {
                return Err(too_many_listed(&self.tree, field.name()));
            }
        }
        Ok(self
            .select(kind, only)
            .map(|child| Entity {
                counted: true,
                ..self.view(child)
            })
            .collect())
    }

    /// How many nodes the list `field` of `kind` lists under this node, with the lists it
    /// selects below each of them; counted until past `limit`.
    fn listing(
        &self,
        kind: Kind,
        only: &ChildFilter,
        field: &SelectionField<'_>,
        limit: usize,
    ) -> usize {
        let mut listed = 0;
        for child in self.select(kind, only) {
            listed += 1;
            for below in field.selection_set() {
                if listed > limit {
                    return listed;
                }
                listed += self.view(child).lists_below(&below, limit - listed);
            }
        }
        listed
    }

    /// How many nodes `field`, selected on this node, lists (see [`Entity::listing`]).
    fn lists_below(&self, field: &SelectionField<'_>, limit: usize) -> usize {
        let kind = match (self.node.kind, field.name()) {
            (Kind::Release, "waves") => Kind::Wave,
            (Kind::Wave, "clusters") => Kind::Cluster,
            (Kind::Cluster | Kind::Bundle, "apps") => Kind::App,
            (Kind::Cluster, "bundle") => {
                let Some(bundle) = self.node.children.first() else {
                    return 0;
                };
                let bundle = self.view(bundle);
                return field
                    .selection_set()
                    .map(|below| bundle.lists_below(&below, limit))
                    .fold(0, usize::saturating_add);
            }
            _ => return 0,
        };
        self.listing(kind, &ChildFilter::of_field(field), field, limit)
    }

    /// Seconds from start to finish (see [`TreeNode::duration`]).
    fn duration(&self) -> Option<f64> {
        self.node.duration(self.tree.as_of)
    }

    /// The node as one of `Release.nodes`' items (`None` for the release itself).
    fn into_node(self) -> Option<ReleaseNode> {
        match self.node.kind {
            Kind::Release => None,
            Kind::Wave => Some(ReleaseNode::Wave(Wave(self))),
            Kind::Cluster => Some(ReleaseNode::Cluster(Cluster(self))),
            Kind::Bundle => Some(ReleaseNode::Bundle(Bundle(self))),
            Kind::App => Some(ReleaseNode::App(App(self))),
        }
    }

    /// The node as an edge of a `ReleaseNodeConnection` (`Release.nodes`, `Query.nodes`), with
    /// its `cursor` and its `path` (`None` for the release itself).
    pub(super) fn into_edge(
        self,
        cursor: String,
        path: Vec<nodes::PathStep>,
    ) -> Option<Edge<String, ReleaseNode, NodePath>> {
        let node = self.into_node()?;
        Some(Edge::with_additional_fields(
            cursor,
            node,
            NodePath { path },
        ))
    }

    /// The GraphQL object for this node, by its kind.
    pub fn into_object(self) -> HierarchyEntity {
        match self.node.kind {
            Kind::Release => HierarchyEntity::Release(Release::Tree(self)),
            Kind::Wave => HierarchyEntity::Wave(Wave(self)),
            Kind::Cluster => HierarchyEntity::Cluster(Cluster(self)),
            Kind::Bundle => HierarchyEntity::Bundle(Bundle(self)),
            Kind::App => HierarchyEntity::App(App(self)),
        }
    }
}

/// Whether `clusters`, selected on waves, lists every cluster and every app of each (no
/// `status:`, `first:` or `offset:` on either list): the answer lists at least every app of
/// the waves listed.
fn lists_every_app(clusters: &SelectionField<'_>) -> bool {
    let every = |field: &SelectionField<'_>| ChildFilter::of_field(field).is_everything();
    every(clusters)
        && clusters.selection_set().any(|below| match below.name() {
            "apps" => every(&below),
            "bundle" => below
                .selection_set()
                .any(|apps| apps.name() == "apps" && every(&apps)),
            _ => false,
        })
}

/// The refusal of an answer whose lists would hold more than [`MAX_LISTED`] nodes of `tree`,
/// naming what to ask for instead.
fn too_many_listed(tree: &ReleaseTree, field: &str) -> async_graphql::Error {
    ApiError::bad_input(
        field,
        format!(
            "{} has {} nodes, more than the {MAX_LISTED} one answer may list: ask for a page \
             (`waves(first:, offset:)`, `clusters(first:)`, `apps(first:)`) or a status \
             (`status:`) on each list, or read `nodes(kind:, status:, first:)` or \
             `tree(status:)` instead",
            tree.root.node.id,
            tree.size()
        ),
    )
    .extend()
}

/// Resolves a hierarchy ID to its node (`None` when the release or node does not exist). A
/// node of a release read in part is read with its ancestors (and, when the selection lists
/// nodes below it, its subtree).
pub async fn find_entity(
    ctx: &Context<'_>,
    id: &EntityId,
) -> async_graphql::Result<Option<Entity>> {
    let Some(tree) = load_tree(ctx, &id.release_id().to_string()).await? else {
        return Ok(None);
    };
    let id = id.to_string();
    let tree = match tree.part_of {
        Some(_) if tree.root.node.id != id => match part::opened(&ctx.field()) {
            Some(below) => part::with_below(ctx, &tree, std::slice::from_ref(&id), below).await?,
            None => part::with_ancestors(ctx, &tree, std::slice::from_ref(&id)).await?,
        },
        _ => tree,
    };
    Ok(tree.find(&id).map(|node| Entity::at(tree, node)))
}

/// Parses a GraphQL ID argument into a hierarchy ID (`BAD_USER_INPUT` if malformed).
pub fn parse_id(field: &str, id: &ID) -> async_graphql::Result<EntityId> {
    EntityId::parse(id.as_str())
        .map_err(|why| ApiError::bad_input(field, format!("malformed id {:?}: {why}", id.as_str())))
        .extend()
}

/// Emits `#[Object] impl $ty` with the fields every hierarchy node has, then `$extra`.
/// (A macro inside an `#[Object]` impl would expand too late to become fields.)
/// `$ty, list $field: $child "doc"` adds the list of the `$child` nodes below it, with the
/// child-list arguments (`status`, `first`, `offset`), priced as a list (the complexity
/// attribute must be written here, in the same expansion as `#[Object]`, to see
/// `child_complexity`).
macro_rules! hierarchy_object {
    ($ty:ident $(, list $field:ident: $child:ident $doc:literal)? { $($extra:tt)* }) => {
        #[Object]
        impl $ty {
            /// Global ID, `{kind}:{path}`.
            pub async fn id(&self, _ctx: &Context<'_>) -> async_graphql::Result<ID> {
                Ok(ID(self.0.node.node.id.clone()))
            }

            /// Key, unique among its siblings.
            async fn key(&self) -> &str {
                &self.0.node.node.key
            }

            /// Display name.
            async fn name(&self) -> &str {
                &self.0.node.node.name
            }

            /// Rollout status.
            async fn status(&self) -> RolloutStatus {
                self.0.node.node.status
            }

            /// When it started.
            async fn started_at(&self) -> Option<DateTime<Utc>> {
                self.0.node.node.started_at
            }

            /// When it finished.
            async fn completed_at(&self) -> Option<DateTime<Utc>> {
                self.0.node.node.completed_at
            }

            /// Why it failed (names the failing app).
            async fn message(&self) -> Option<&str> {
                self.0.node.node.message.as_deref()
            }

            $($extra)*

            /// Seconds from `startedAt` to `completedAt`; while it runs, to the tree's `asOf`;
            /// `null` before it starts.
            async fn duration(&self) -> Option<f64> {
                self.0.duration()
            }

            /// Each status transition of the node, in order, from the event store: `from`,
            /// `to`, when, the attempt, the message, and who asked when a user's control
            /// action caused it.
            #[graphql(complexity = "page_complexity(first, None, child_complexity)")]
            async fn history(
                &self,
                ctx: &Context<'_>,
                #[graphql(desc = "Page size, 0 to 100 (20 when absent).")] first: Option<i32>,
                #[graphql(desc = "The `cursor` of the edge to continue after.")] after: Option<String>,
            ) -> async_graphql::Result<history::HistoryConnection> {
                history::page(ctx, &self.0.node.node.id, first, after).await
            }

            $(
                #[doc = $doc]
                #[graphql(complexity = "list_complexity(child_complexity)")]
                async fn $field(
                    &self,
                    ctx: &Context<'_>,
                    #[graphql(desc = "Only those in one of these statuses (all when absent or empty).")]
                    status: Option<Vec<RolloutStatus>>,
                    #[graphql(desc = "At most this many (0 to 100; all when absent).")]
                    first: Option<i32>,
                    #[graphql(desc = "Skip this many of those that match (0 to 100000).")]
                    offset: Option<i32>,
                ) -> async_graphql::Result<Vec<$child>> {
                    let only = ChildFilter::parse(status, first, offset)?;
                    Ok(self.0.listed(ctx, Kind::$child, &only)?.into_iter().map($child).collect())
                }
            )?
        }
    };
}

/// A release: waves rolled out in order.
///
/// Read from its row alone when only its own fields are asked for (one indexed statement, or
/// none when a closed release is cached), from its whole tree when `waves` is.
pub enum Release {
    /// The row of the release projection, with the roll-up the triggers keep.
    Row(Arc<ReleaseRow>),
    /// The release node of a whole tree (live while it runs).
    Tree(Entity),
}

/// A release's own fields, whichever way it was read.
struct OwnFields<'a> {
    id: &'a str,
    key: &'a str,
    name: &'a str,
    status: RolloutStatus,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    message: Option<&'a str>,
}

impl Release {
    fn own(&self) -> OwnFields<'_> {
        match self {
            Self::Row(row) => OwnFields {
                id: &row.id,
                key: &row.key,
                name: &row.name,
                status: row.status,
                started_at: row.started_at,
                completed_at: row.completed_at,
                message: row.message.as_deref(),
            },
            Self::Tree(entity) => {
                let node = &entity.node.node;
                OwnFields {
                    id: &node.id,
                    key: &node.key,
                    name: &node.name,
                    status: node.status,
                    started_at: node.started_at,
                    completed_at: node.completed_at,
                    message: node.message.as_deref(),
                }
            }
        }
    }
}

#[Object]
impl Release {
    /// Global ID, `{kind}:{path}`.
    pub async fn id(&self, _ctx: &Context<'_>) -> async_graphql::Result<ID> {
        Ok(ID(self.own().id.to_owned()))
    }

    /// Key, unique among its siblings.
    async fn key(&self) -> &str {
        self.own().key
    }

    /// Display name.
    async fn name(&self) -> &str {
        self.own().name
    }

    /// Rollout status.
    async fn status(&self) -> RolloutStatus {
        self.own().status
    }

    /// When it started.
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.own().started_at
    }

    /// When it finished.
    async fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.own().completed_at
    }

    /// Why it failed (names the failing app).
    async fn message(&self) -> Option<&str> {
        self.own().message
    }

    /// Roll-up over every app of the release.
    async fn progress(&self) -> Progress {
        match self {
            Self::Row(row) => Progress::from_counts(
                row.apps_total,
                row.apps_succeeded,
                row.apps_failed,
                row.apps_in_progress,
                row.apps_pending,
            ),
            Self::Tree(entity) => entity.node.progress,
        }
    }

    /// Where this answer came from: `TEMPORAL` (live) while the workflow runs and its tree is
    /// asked for, `PROJECTION` once it closed, when Temporal did not answer in time, or when
    /// only the release's own fields are asked for (its row is kept current by the events).
    async fn source(&self) -> DataSource {
        match self {
            Self::Row(_) => DataSource::Projection,
            Self::Tree(entity) => entity.tree.source,
        }
    }

    /// How fresh the answer is: when it was read live, or the time of the last event folded
    /// into the projection.
    async fn as_of(&self) -> DateTime<Utc> {
        match self {
            Self::Row(row) => row.updated_at,
            Self::Tree(entity) => entity.tree.as_of,
        }
    }

    /// A pause, resume or cancellation asked for and not yet delivered to the workflow (it is
    /// queued while Temporal is unreachable); `null` when none waits.
    async fn pending_control(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<ControlAction>> {
        ctx.data::<DataLoader<ReleaseLoader>>()?
            .load_one(PendingControlKey(self.own().id.to_owned()))
            .await
            .map_err(|e| ApiError::database(&e))
            .extend()
    }

    /// The waves, in rollout order. One answer lists at most 20,000 nodes of a release
    /// (`waves`, `clusters` and `apps` together): a larger whole tree is refused before
    /// anything is listed, with the paged and filtered reads to use instead.
    #[graphql(complexity = "list_complexity(child_complexity)")]
    async fn waves(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only those in one of these statuses (all when absent or empty).")]
        status: Option<Vec<RolloutStatus>>,
        #[graphql(desc = "At most this many (0 to 100; all when absent).")] first: Option<i32>,
        #[graphql(desc = "Skip this many of those that match (0 to 100000).")] offset: Option<i32>,
    ) -> async_graphql::Result<Vec<Wave>> {
        let only = ChildFilter::parse(status, first, offset)?;
        let Some(entity) = self.entity(ctx).await? else {
            return Ok(Vec::new());
        };
        Ok(entity
            .for_waves(ctx, &only)
            .await?
            .listed(ctx, Kind::Wave, &only)?
            .into_iter()
            .map(Wave)
            .collect())
    }

    /// The release's nodes as one flat list in tree order (a parent before its children),
    /// filtered, each with its path from the release: "which apps failed", "where is
    /// `api-gateway`", a page at a time instead of the whole tree.
    #[graphql(complexity = "page_complexity(first, None, child_complexity)")]
    #[allow(clippy::too_many_arguments)]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only nodes of these kinds (all when absent or empty).")] kind: Option<
            Vec<NodeKind>,
        >,
        #[graphql(desc = "Only nodes in one of these statuses (all when absent or empty).")]
        status: Option<Vec<RolloutStatus>>,
        #[graphql(desc = "Only nodes whose key or name contains this (case-insensitive).")]
        search: Option<String>,
        #[graphql(desc = "Page size, 0 to 100 (20 when absent).")] first: Option<i32>,
        #[graphql(desc = "The `cursor` of the edge to continue after.")] after: Option<String>,
    ) -> async_graphql::Result<Connection<String, ReleaseNode, ConnectionTotal, NodePath>> {
        let filter = NodeFilter::parse(kind, status, search, first, after)?;
        let Some(release) = self.entity(ctx).await? else {
            return Ok(Connection::with_additional_fields(
                false,
                false,
                ConnectionTotal { total_count: 0 },
            ));
        };
        if let Some(stub) = release.stub() {
            let count = ctx.look_ahead().field("totalCount").exists();
            let page = part::page(
                ctx,
                stub,
                &filter.part(),
                filter.after(),
                filter.first(),
                count,
                // What is below the page's nodes too, when they list it.
                part::edges_opened(&ctx.field()),
            )
            .await?;
            let mut connection = Connection::with_additional_fields(
                page.has_previous,
                page.has_next,
                // Counted only when asked for.
                ConnectionTotal {
                    total_count: page.total.unwrap_or_default(),
                },
            );
            connection.edges.extend(page.ids.iter().filter_map(|id| {
                let node = Entity::of(Arc::clone(&page.tree), id)?;
                let path = node.path();
                node.into_edge(nodes::cursor(id), path)
            }));
            return Ok(connection);
        }
        nodes_of(&release, &filter)
    }

    /// The spans of the release's waves and clusters, each wave followed by its clusters, for a
    /// Gantt view.
    #[graphql(complexity = "list_complexity(child_complexity)")]
    async fn timeline(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TimelineSpan>> {
        let Some(entity) = self.entity(ctx).await? else {
            return Ok(Vec::new());
        };
        Ok(match entity.stub() {
            Some(stub) => {
                let waves = |tree: &Arc<ReleaseTree>| {
                    Ok(tree
                        .root
                        .children
                        .iter()
                        .map(|w| w.node.id.clone())
                        .collect())
                };
                nodes::timeline(&part::levels(ctx, stub, Below::Children, waves).await?.root)
            }
            None => nodes::timeline(entity.node()),
        })
    }

    /// For a running release: when it is expected to finish, from how long its finished waves
    /// took (`basis` says from what); `null` when that cannot be known (no wave finished yet,
    /// or the release is not running).
    async fn estimate(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ReleaseEstimate>> {
        let Some(entity) = self.entity(ctx).await? else {
            return Ok(None);
        };
        Ok(match entity.stub() {
            Some(stub) => {
                let waves = part::levels(ctx, stub, Below::Children, |_| Ok(Vec::new())).await?;
                nodes::estimate(&waves.root, waves.as_of)
            }
            None => nodes::estimate(entity.node(), entity.as_of()),
        })
    }

    /// The waves cut down to the paths that lead to nodes in one of `status`: every wave,
    /// cluster and app listed below is such a node or an ancestor of one (a cluster's `bundle`
    /// is always there, with its apps cut down the same way). The whole red part of a release
    /// in one answer: `tree(status: [FAILED])`.
    #[graphql(complexity = "list_complexity(child_complexity).saturating_add(TREE_COMPLEXITY)")]
    async fn tree(
        &self,
        ctx: &Context<'_>,
        status: Vec<RolloutStatus>,
    ) -> async_graphql::Result<Vec<Wave>> {
        let status = RolloutStatus::distinct(&status);
        let Some(entity) = self.entity(ctx).await? else {
            return Ok(Vec::new());
        };
        // Read in part, the rows read are the paths (nothing else to prune).
        let entity = match entity.stub() {
            Some(stub) => Entity::root(load_pruned(ctx, stub, &status).await?),
            None => entity.pruned_to(&status),
        };
        Ok(entity
            .listed(ctx, Kind::Wave, &ChildFilter::everything())?
            .into_iter()
            .map(Wave)
            .collect())
    }
}

impl Release {
    /// The release node of its whole tree, which is loaded now when only the row was read
    /// (asked for through a shape the look-ahead did not see); `None` if it has no tree.
    async fn entity(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Entity>> {
        Ok(match self {
            Self::Tree(entity) => Some(entity.clone()),
            Self::Row(row) => load_tree(ctx, &row.id).await?.map(Entity::root),
        })
    }
}

/// The nodes below `node` (by address) on a path to a node in one of `statuses`: each such
/// node and its ancestors up to `node`, which is not judged itself.
pub(super) fn paths_to(node: &TreeNode, statuses: &[RolloutStatus]) -> HashSet<usize> {
    fn mark(node: &Arc<TreeNode>, statuses: &[RolloutStatus], on: &mut HashSet<usize>) -> bool {
        // Every child is visited: each may be on a path of its own.
        let below = node
            .children
            .iter()
            .fold(false, |any, child| mark(child, statuses, on) | any);
        let hit = below || statuses.contains(&node.node.status);
        if hit {
            on.insert(Arc::as_ptr(node).addr());
        }
        hit
    }
    let mut on = HashSet::new();
    for child in &node.children {
        mark(child, statuses, &mut on);
    }
    on
}

/// `Release.nodes` of a release read whole: its page selected in the loaded tree.
fn nodes_of(
    release: &Entity,
    filter: &NodeFilter,
) -> async_graphql::Result<Connection<String, ReleaseNode, ConnectionTotal, NodePath>> {
    let selected = nodes::select(release.node(), filter)?;
    let mut connection = Connection::with_additional_fields(
        selected.has_previous,
        selected.has_next,
        ConnectionTotal {
            total_count: selected.total,
        },
    );
    connection
        .edges
        .extend(selected.page.into_iter().filter_map(|found| {
            let cursor = found.cursor();
            release.view(&found.node).into_edge(cursor, found.path)
        }));
    Ok(connection)
}

/// A child list's arguments, checked: `status`, `first` and `offset`.
struct ChildFilter {
    status: Vec<RolloutStatus>,
    first: usize,
    offset: usize,
}

impl ChildFilter {
    /// No filter: every child.
    fn everything() -> Self {
        Self {
            status: Vec::new(),
            first: usize::MAX,
            offset: 0,
        }
    }

    /// Whether it is [`ChildFilter::everything`].
    fn is_everything(&self) -> bool {
        self.status.is_empty() && self.first == usize::MAX && self.offset == 0
    }

    /// The arguments of `field`, a child list selected in the query, as its resolver will
    /// parse them (every child if they do not parse: the resolver refuses them anyway).
    fn of_field(field: &SelectionField<'_>) -> Self {
        use async_graphql::InputType;
        let Ok(arguments) = field.arguments() else {
            return Self::everything();
        };
        let argument = |name: &str| {
            arguments
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(_, value)| value.clone())
        };
        let status = <Option<Vec<RolloutStatus>>>::parse(argument("status"));
        let first = <Option<i32>>::parse(argument("first"));
        let offset = <Option<i32>>::parse(argument("offset"));
        match (status, first, offset) {
            (Ok(status), Ok(first), Ok(offset)) => {
                Self::parse(status, first, offset).unwrap_or_else(|_| Self::everything())
            }
            _ => Self::everything(),
        }
    }

    fn parse(
        status: Option<Vec<RolloutStatus>>,
        first: Option<i32>,
        offset: Option<i32>,
    ) -> async_graphql::Result<Self> {
        check_page_size("first", first)?;
        let offset = i64::from(offset.unwrap_or(0));
        super::check_offset(offset)?;
        Ok(Self {
            status: status.unwrap_or_default(),
            first: first.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(0)),
            offset: usize::try_from(offset).unwrap_or(0),
        })
    }
}

/// A wave: its clusters roll out in parallel.
pub struct Wave(pub(super) Entity);

hierarchy_object!(Wave, list clusters: Cluster "The clusters." {

/// Position in the release, from 1.
async fn position(&self) -> i32 {
    self.0.node.position
}

/// Roll-up over the wave's apps.
async fn progress(&self) -> Progress {
    self.0.node.progress
}
});

/// A cluster: one bundle deployed in one region.
pub struct Cluster(pub(super) Entity);

hierarchy_object!(Cluster, list apps: App "The apps of the cluster's bundle, in deploy order (what `bundle { apps }` lists)." {

/// Region.
async fn region(&self) -> Option<&str> {
    self.0.node.node.region.as_deref()
}

/// Roll-up over the cluster's apps.
async fn progress(&self) -> Progress {
    self.0.node.progress
}

/// The cluster's bundle.
async fn bundle(&self) -> async_graphql::Result<Bundle> {
    self.0
        .children()
        .into_iter()
        .next()
        .map(Bundle)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("cluster without a bundle")))
        .extend()
}});

/// A bundle: apps deployed in order.
pub struct Bundle(pub(super) Entity);

hierarchy_object!(Bundle, list apps: App "The apps, in deploy order." {

/// Bundle version.
async fn version(&self) -> Option<&str> {
    self.0.node.node.version.as_deref()
}

/// Roll-up over the bundle's apps.
async fn progress(&self) -> Progress {
    self.0.node.progress
}
});

/// An app: one deploy.
pub struct App(pub(super) Entity);

hierarchy_object!(App {

/// Version deployed.
async fn version(&self) -> Option<&str> {
    self.0.node.node.version.as_deref()
}});

/// Any node below a release.
#[derive(Union)]
pub enum ReleaseNode {
    /// A wave.
    Wave(Wave),
    /// A cluster.
    Cluster(Cluster),
    /// A bundle.
    Bundle(Bundle),
    /// An app.
    App(App),
}

/// Any node of a release hierarchy.
#[derive(Union)]
pub enum HierarchyEntity {
    /// A release.
    Release(Release),
    /// A wave.
    Wave(Wave),
    /// A cluster.
    Cluster(Cluster),
    /// A bundle.
    Bundle(Bundle),
    /// An app.
    App(App),
}

/// Filters for `releases`.
#[derive(InputObject, Default)]
pub struct ReleaseFilter {
    /// Only releases in one of these statuses.
    pub status: Option<Vec<RolloutStatus>>,
    /// Name or key contains this text (case-insensitive).
    pub search: Option<String>,
}
