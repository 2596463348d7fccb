//! Flat views of one release's tree: `Release.nodes`, its nodes as a filtered connection in
//! tree order, each with the path from the release down to its parent, so one row can say
//! where it sits; and `Release.timeline`, the spans of its waves and clusters for a Gantt view.

use std::sync::Arc;

use async_graphql::{
    Enum, ErrorExtensions, ID, SimpleObject, Union,
    connection::{Connection, Edge},
};
use chrono::{DateTime, Utc};

use super::objects::{App, Bundle, Cluster, Entity, Wave};
use crate::{
    contracts::{ids::Kind, release::RolloutStatus},
    error::ApiError,
    graphql::connection::{
        ConnectionTotal, DEFAULT_PAGE, bad_cursor, check_page_size, decode_cursor, encode_cursor,
    },
    releases::tree::TreeNode,
};

/// Longest `search` accepted.
const MAX_SEARCH_CHARS: usize = 100;

/// The kind of a node below a release.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum NodeKind {
    /// A wave.
    Wave,
    /// A cluster.
    Cluster,
    /// A bundle.
    Bundle,
    /// An app.
    App,
}

impl NodeKind {
    /// The kind of a node below a release (`None` for the release itself).
    pub fn of(kind: Kind) -> Option<Self> {
        match kind {
            Kind::Release => None,
            Kind::Wave => Some(Self::Wave),
            Kind::Cluster => Some(Self::Cluster),
            Kind::Bundle => Some(Self::Bundle),
            Kind::App => Some(Self::App),
        }
    }
}

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

/// One step of a node's path: an ancestor, from the release down to the node's parent.
#[derive(SimpleObject, Clone)]
pub struct PathStep {
    /// Global ID.
    pub id: ID,
    /// Its kind; `null` for the release.
    pub kind: Option<NodeKind>,
    /// Key, unique among its siblings.
    pub key: String,
    /// Display name.
    pub name: String,
}

impl PathStep {
    fn of(node: &TreeNode) -> Self {
        Self {
            id: ID(node.node.id.clone()),
            kind: NodeKind::of(node.kind),
            key: node.node.key.clone(),
            name: node.node.name.clone(),
        }
    }
}

/// One bar of a Gantt view: a wave or a cluster, and when it ran.
#[derive(SimpleObject)]
pub struct TimelineSpan {
    /// Global ID.
    pub id: ID,
    /// `WAVE` or `CLUSTER`.
    pub kind: NodeKind,
    /// Display name.
    pub name: String,
    /// When it started (`null`: not yet).
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished (`null`: not yet, or never).
    pub completed_at: Option<DateTime<Utc>>,
    /// Rollout status.
    pub status: RolloutStatus,
}

/// The spans of `release`'s waves and clusters, each wave followed by its clusters.
pub fn timeline(release: &Entity) -> Vec<TimelineSpan> {
    let span = |node: &TreeNode, kind| TimelineSpan {
        id: ID(node.node.id.clone()),
        kind,
        name: node.node.name.clone(),
        started_at: node.node.started_at,
        completed_at: node.node.completed_at,
        status: node.node.status,
    };
    let mut spans = Vec::new();
    for wave in &release.node().children {
        spans.push(span(wave, NodeKind::Wave));
        for cluster in &wave.children {
            spans.push(span(cluster, NodeKind::Cluster));
        }
    }
    spans
}

/// What each edge carries besides its node.
#[derive(SimpleObject)]
pub struct NodePath {
    /// The ancestors, from the release down to the node's parent.
    pub path: Vec<PathStep>,
}

/// `Release.nodes`' arguments, checked.
pub struct NodeFilter {
    kinds: Vec<NodeKind>,
    statuses: Vec<RolloutStatus>,
    search: Option<String>,
    first: usize,
    after: Option<String>,
}

impl NodeFilter {
    /// Checks the arguments: `first` 0 to 100 (20 when absent), `search` at most 100
    /// characters, `after` a cursor of this connection.
    pub fn parse(
        kind: Option<Vec<NodeKind>>,
        status: Option<Vec<RolloutStatus>>,
        search: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Self> {
        check_page_size("first", first)?;
        if search
            .as_deref()
            .is_some_and(|s| s.chars().count() > MAX_SEARCH_CHARS)
        {
            return Err(ApiError::bad_input(
                "search",
                format!("search is at most {MAX_SEARCH_CHARS} characters"),
            )
            .extend());
        }
        let after = after
            .map(|cursor| {
                decode_cursor("after", &cursor)?
                    .strip_prefix("node|")
                    .map(str::to_owned)
                    .ok_or_else(|| bad_cursor("after").extend())
            })
            .transpose()?;
        Ok(Self {
            kinds: kind.unwrap_or_default(),
            statuses: status.unwrap_or_default(),
            search: search
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty()),
            first: usize::try_from(first.unwrap_or(DEFAULT_PAGE)).unwrap_or(0),
            after,
        })
    }

    fn matches(&self, node: &TreeNode) -> bool {
        let kind = NodeKind::of(node.kind)
            .is_some_and(|kind| self.kinds.is_empty() || self.kinds.contains(&kind));
        let status = self.statuses.is_empty() || self.statuses.contains(&node.node.status);
        let search = self.search.as_deref().is_none_or(|search| {
            node.node.key.to_lowercase().contains(search)
                || node.node.name.to_lowercase().contains(search)
        });
        kind && status && search
    }
}

/// The page of `release`'s nodes that `filter` selects, in tree order (a parent before its
/// children, siblings in order).
pub fn page(
    release: &Entity,
    filter: &NodeFilter,
) -> async_graphql::Result<Connection<String, ReleaseNode, ConnectionTotal, NodePath>> {
    let mut walk = Walk {
        filter,
        path: vec![PathStep::of(release.node())],
        seen: 0,
        after: None,
        matches: Vec::new(),
    };
    walk.below(release.node());
    // A page starts after the cursor's node in tree order, whether or not that node still
    // matches (a running release's statuses move between pages).
    let start = match (&filter.after, walk.after) {
        (None, _) => 0,
        (Some(_), Some(after)) => walk.matches.partition_point(|m| m.order <= after),
        (Some(_), None) => {
            return Err(
                ApiError::bad_input("after", "after names no node of this release").extend(),
            );
        }
    };
    let total = i64::try_from(walk.matches.len()).unwrap_or(i64::MAX);
    let has_next = walk.matches.len() > start.saturating_add(filter.first);
    let mut connection = Connection::with_additional_fields(
        start > 0,
        has_next,
        ConnectionTotal { total_count: total },
    );
    for found in walk.matches.into_iter().skip(start).take(filter.first) {
        let cursor = encode_cursor(&format!("node|{}", found.node.node.id));
        let entity = release.view(&found.node);
        let node = match found.node.kind {
            Kind::Wave => ReleaseNode::Wave(Wave(entity)),
            Kind::Cluster => ReleaseNode::Cluster(Cluster(entity)),
            Kind::Bundle => ReleaseNode::Bundle(Bundle(entity)),
            Kind::App => ReleaseNode::App(App(entity)),
            // The walk starts below the release.
            Kind::Release => continue,
        };
        connection.edges.push(Edge::with_additional_fields(
            cursor,
            node,
            NodePath { path: found.path },
        ));
    }
    Ok(connection)
}

/// A matching node, its place in tree order and its path.
struct Found {
    order: usize,
    node: Arc<TreeNode>,
    path: Vec<PathStep>,
}

/// One walk of a tree in order, collecting what the filter matches.
struct Walk<'a> {
    filter: &'a NodeFilter,
    /// The ancestors of the nodes being visited.
    path: Vec<PathStep>,
    /// Nodes visited so far.
    seen: usize,
    /// The place in tree order of the `after` cursor's node, once visited.
    after: Option<usize>,
    matches: Vec<Found>,
}

impl Walk<'_> {
    fn below(&mut self, parent: &Arc<TreeNode>) {
        for child in &parent.children {
            let order = self.seen;
            self.seen += 1;
            if self.filter.after.as_deref() == Some(child.node.id.as_str()) {
                self.after = Some(order);
            }
            if self.filter.matches(child) {
                self.matches.push(Found {
                    order,
                    node: Arc::clone(child),
                    path: self.path.clone(),
                });
            }
            if !child.children.is_empty() {
                self.path.push(PathStep::of(child));
                self.below(child);
                self.path.pop();
            }
        }
    }
}
