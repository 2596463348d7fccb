//! A loaded release tree, shared by every GraphQL object that shows a part of it.
//!
//! Built once per load (from the projection's rows or from `getHierarchy`), with each node's
//! progress roll-up computed bottom-up, and an index, made at the first lookup, so
//! `entity(id:)` finds any node at once.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, Weak},
};

use chrono::{DateTime, SubsecRound as _, Utc};

use crate::contracts::{
    ids::Kind,
    release::{Node, RolloutStatus},
};

/// Where a tree came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum DataSource {
    /// Live, from the running workflow's `getHierarchy` query.
    Temporal,
    /// From the Postgres projection.
    Projection,
}

/// Roll-up over the apps below a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, async_graphql::SimpleObject)]
pub struct Progress {
    /// Apps below the node.
    pub total: i32,
    /// Apps deployed.
    pub succeeded: i32,
    /// Apps whose deploy failed.
    pub failed: i32,
    /// Apps deploying now (or paused mid-rollout).
    pub in_progress: i32,
    /// Apps not started (or cancelled).
    pub pending: i32,
    /// Share of apps deployed successfully, 0–100.
    pub percent: f64,
}

impl Progress {
    fn of_app(status: RolloutStatus) -> Self {
        let mut p = Self {
            total: 1,
            ..Self::default()
        };
        match status {
            RolloutStatus::Succeeded => p.succeeded = 1,
            RolloutStatus::Failed => p.failed = 1,
            RolloutStatus::InProgress | RolloutStatus::Paused => p.in_progress = 1,
            RolloutStatus::Pending | RolloutStatus::Cancelled => p.pending = 1,
        }
        p
    }

    fn add(mut self, other: Self) -> Self {
        self.total += other.total;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.in_progress += other.in_progress;
        self.pending += other.pending;
        self
    }

    /// A roll-up from its counts (as the projection keeps them).
    pub fn from_counts(
        total: i32,
        succeeded: i32,
        failed: i32,
        in_progress: i32,
        pending: i32,
    ) -> Self {
        Self {
            total,
            succeeded,
            failed,
            in_progress,
            pending,
            percent: 0.0,
        }
        .with_percent()
    }

    fn with_percent(mut self) -> Self {
        self.percent = if self.total == 0 {
            0.0
        } else {
            (f64::from(self.succeeded) * 1000.0 / f64::from(self.total)).round() / 10.0
        };
        self
    }
}

/// One node with its children and roll-up.
#[derive(Debug)]
pub struct TreeNode {
    /// The node's fields (children emptied; see `children`).
    pub node: Node,
    /// Its kind.
    pub kind: Kind,
    /// Position among its siblings, from 1.
    pub position: i32,
    /// Children, in order.
    pub children: Vec<Arc<TreeNode>>,
    /// Roll-up over the apps below (for an app: itself).
    pub progress: Progress,
}

impl TreeNode {
    /// Seconds from start to finish; while the node runs, to `as_of` (its tree's read time),
    /// so an answer never depends on when it is sent. `None` before it starts.
    pub fn duration(&self, as_of: DateTime<Utc>) -> Option<f64> {
        let end = self.node.completed_at.unwrap_or(as_of);
        let elapsed = end - self.node.started_at?;
        Some(elapsed.to_std().unwrap_or_default().as_secs_f64())
    }
}

/// A whole release tree plus where and when it was read.
#[derive(Debug)]
pub struct ReleaseTree {
    /// The release node.
    pub root: Arc<TreeNode>,
    /// Where it came from.
    pub source: DataSource,
    /// How fresh it is.
    pub as_of: DateTime<Utc>,
    /// `Some(n)` when it holds only some of its release's `n` nodes (read in part, see
    /// [`ReleaseTree::from_part`]); `None` for a whole tree.
    pub part_of: Option<usize>,
    /// Every node by global ID, built at the first lookup below the root: a tree read walks
    /// the tree and never needs it.
    index: OnceLock<NodeIndex>,
    /// For a patched tree ([`ReleaseTree::patched`]): the tree last read whole, whose index
    /// serves every node not patched since, and the nodes patched since, by global ID. So a
    /// lookup in a patched tree of 100,000 nodes does not index them all again.
    patched_from: Option<(Arc<ReleaseTree>, Arc<NodeIndex>)>,
    /// For a patched tree: the tree it was patched from and what changed since, found while
    /// patching, so [`ReleaseTree::changes_since`] that tree need not compare every node.
    patched_change: Option<(Weak<ReleaseTree>, Option<TreeChange>)>,
}

/// Nodes by global ID.
type NodeIndex = HashMap<String, Arc<TreeNode>>;

/// One node as a row of the projection: its fields (no children), and its parent's ID
/// (`None` for the release).
#[derive(Debug, Clone)]
pub struct FlatNode {
    /// The node's own fields; its child lists are not read.
    pub node: Node,
    /// The parent's global ID.
    pub parent_id: Option<String>,
    /// What the projection keeps of its place and roll-up, for a tree of only some of a
    /// release's rows (see [`ReleaseTree::from_flat`]); `None` in a whole tree.
    pub stored: Option<Stored>,
}

/// A node's position and roll-up as the projection keeps them, so a tree read in part (a
/// page of a release too large to read whole) shows what the whole tree would.
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    /// Position among all its siblings, from 1 (the rows read may be only some of them).
    pub position: i32,
    /// Roll-up over every app below it, read or not.
    pub progress: Progress,
}

impl ReleaseTree {
    /// Builds the shared tree from a nested [`Node`] (as `getHierarchy` answers). Its times
    /// are cut to microseconds, the projection's precision, so a node reads the same whichever
    /// source it came from (and a diff does not see every time move when the source does).
    pub fn new(root: Node, source: DataSource, as_of: DateTime<Utc>) -> Self {
        Self::with_root(build(root, Kind::Release, 1), source, as_of)
    }

    /// Builds the shared tree from flat rows in tree order (a parent before its children,
    /// siblings in order), in one pass with no nested [`Node`] in between; `None` without a
    /// release row. A row whose parent is not there is left out, with what hangs below it.
    ///
    /// The rows may be only some of a release's, each with its ancestors: a node whose row
    /// carries [`Stored`] keeps that position and roll-up instead of those of the rows read.
    pub fn from_flat(
        rows: Vec<FlatNode>,
        source: DataSource,
        as_of: DateTime<Utc>,
    ) -> Option<Self> {
        let (root, below) = {
            // In tree order a row's parent is on the path from the release to the row before
            // it, so each parent is found on that path (a stack) rather than by hashing every
            // ID (a third of building a 1,211-node tree). Rows out of that order are looked up.
            let mut at: Option<HashMap<&str, usize>> = None;
            let mut path: Vec<usize> = Vec::new();
            let mut below = vec![Vec::new(); rows.len()];
            let mut root = None;
            for (i, row) in rows.iter().enumerate() {
                if let Some(parent) = row.parent_id.as_deref() {
                    while path.last().is_some_and(|&up| rows[up].node.id != parent) {
                        path.pop();
                    }
                    let found = match path.last() {
                        Some(&up) => Some(up),
                        None => at
                            .get_or_insert_with(|| {
                                rows.iter()
                                    .enumerate()
                                    .map(|(i, row)| (row.node.id.as_str(), i))
                                    .collect()
                            })
                            .get(parent)
                            .copied(),
                    };
                    if let Some(up) = found {
                        below[up].push(i);
                    }
                } else {
                    root = Some(i);
                }
                path.push(i);
            }
            (root?, below)
        };
        let mut rows: Vec<Option<(Node, Option<Stored>)>> = rows
            .into_iter()
            .map(|row| Some((row.node, row.stored)))
            .collect();
        let root = build_flat(root, Kind::Release, 1, &mut rows, &below)?;
        Some(Self::with_root(root, source, as_of))
    }

    fn with_root(root: Arc<TreeNode>, source: DataSource, as_of: DateTime<Utc>) -> Self {
        Self {
            root,
            source,
            as_of,
            part_of: None,
            index: OnceLock::new(),
            patched_from: None,
            patched_change: None,
        }
    }

    /// Builds a tree of only some of a release's `size` nodes, read from the projection with
    /// their places in tree order (`ord`), each with its ancestors (see [`Self::from_flat`]).
    /// Rows read twice count once.
    pub fn from_part(
        mut rows: Vec<(FlatNode, i32)>,
        size: usize,
        as_of: DateTime<Utc>,
    ) -> Option<Self> {
        rows.sort_by_key(|(_, ord)| *ord);
        rows.dedup_by(|(a, _), (b, _)| a.node.id == b.node.id);
        let rows = rows.into_iter().map(|(row, _)| row).collect();
        let mut tree = Self::from_flat(rows, DataSource::Projection, as_of)?;
        tree.part_of = Some(size);
        Some(tree)
    }

    /// How many nodes its release has, read or not.
    pub fn size(&self) -> usize {
        self.part_of.unwrap_or_else(|| self.nodes().count())
    }

    /// Every node of the tree, in tree order.
    pub fn nodes(&self) -> impl Iterator<Item = &Arc<TreeNode>> {
        let mut stack = vec![&self.root];
        std::iter::from_fn(move || {
            let node = stack.pop()?;
            stack.extend(node.children.iter().rev());
            Some(node)
        })
    }

    /// The node with global ID `id`, if it is in this tree.
    pub fn find(&self, id: &str) -> Option<Arc<TreeNode>> {
        if self.root.node.id == id {
            return Some(Arc::clone(&self.root));
        }
        if let Some((whole, patched)) = &self.patched_from {
            return patched.get(id).cloned().or_else(|| whole.find(id));
        }
        self.index
            .get_or_init(|| {
                self.nodes()
                    .map(|node| (node.node.id.clone(), Arc::clone(node)))
                    .collect()
            })
            .get(id)
            .cloned()
    }
}

/// What one new read of a release's tree changed, for `releaseTreeChanged`'s diffs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeChange {
    /// These nodes' own fields or roll-ups changed (global IDs, in tree order; the release
    /// itself when its fields or roll-up moved).
    Nodes(Vec<String>),
    /// Nodes came, went or moved: only a whole new snapshot says what the tree is now.
    Reshaped,
}

impl TreeChange {
    /// How many node IDs it holds.
    pub fn nodes(&self) -> usize {
        match self {
            Self::Nodes(ids) => ids.len(),
            Self::Reshaped => 0,
        }
    }
}

impl ReleaseTree {
    /// What changed from `older` to this tree; `None` when nothing did. When the read time
    /// (`asOf`) or the source alone moved, nothing changed: a node's `duration` while it runs is
    /// derived from those, and a client derives it as well.
    pub fn changes_since(&self, older: &ReleaseTree) -> Option<TreeChange> {
        if let Some((from, change)) = &self.patched_change
            && from
                .upgrade()
                .is_some_and(|from| std::ptr::eq(&*from, older))
        {
            return change.clone();
        }
        let mut before = older.nodes();
        let mut changed = Vec::new();
        for node in self.nodes() {
            let Some(old) = before.next() else {
                return Some(TreeChange::Reshaped);
            };
            if old.node.id != node.node.id || old.kind != node.kind {
                return Some(TreeChange::Reshaped);
            }
            if old.node != node.node
                || old.progress != node.progress
                || old.position != node.position
            {
                changed.push(node.node.id.clone());
            }
        }
        if before.next().is_some() {
            return Some(TreeChange::Reshaped);
        }
        (!changed.is_empty()).then_some(TreeChange::Nodes(changed))
    }
}

impl ReleaseTree {
    /// This whole tree with `rows` in place of its nodes of the same IDs, and the roll-ups
    /// above them computed again: what a whole read would build, when `rows` are every node
    /// whose own fields changed since this tree was read, each with all its ancestors. `as_of`
    /// is the newest change among them (a whole read's `asOf` is its rows' newest change).
    /// What changed from this tree is found among the rows alone, and kept for
    /// [`ReleaseTree::changes_since`].
    ///
    /// `None` when it cannot be built that way: this tree holds only part of its release, a
    /// row is not a node of it, or comes without its ancestors. Read whole then.
    pub fn patched(self: &Arc<Self>, rows: Vec<FlatNode>, as_of: DateTime<Utc>) -> Option<Self> {
        if self.part_of.is_some() {
            return None;
        }
        let mut rows: HashMap<String, FlatNode> = rows
            .into_iter()
            .map(|row| (row.node.id.clone(), row))
            .collect();
        let (whole, mut patched) = match &self.patched_from {
            Some((whole, patched)) => (Arc::clone(whole), (**patched).clone()),
            None => (Arc::clone(self), HashMap::new()),
        };
        let mut changed = Vec::new();
        let root = match rows.remove(&self.root.node.id) {
            Some(row) => {
                let mut patch = Patch {
                    rows: &mut rows,
                    patched: &mut patched,
                    changed: &mut changed,
                };
                patch.node(&self.root, row, None)?
            }
            None if rows.is_empty() => Arc::clone(&self.root),
            None => return None,
        };
        // A row left over is not below a row read: not in this tree, or without its parent.
        if !rows.is_empty() {
            return None;
        }
        let mut tree = Self::with_root(root, self.source, self.as_of.max(as_of));
        tree.patched_from = Some((whole, Arc::new(patched)));
        let change = (!changed.is_empty()).then_some(TreeChange::Nodes(changed));
        tree.patched_change = Some((Arc::downgrade(self), change));
        Some(tree)
    }
}

/// One patch of a tree: the rows read again, by ID (each taken when placed), and what the
/// patch made of them.
struct Patch<'a> {
    rows: &'a mut HashMap<String, FlatNode>,
    /// Every node patched since the tree was read whole, by ID.
    patched: &'a mut NodeIndex,
    /// The IDs of the nodes that changed, in tree order.
    changed: &'a mut Vec<String>,
}

impl Patch<'_> {
    /// `old` with `row`'s fields, its children patched from the rows where read again (only
    /// a node read again may have a child read again: each comes with its ancestors); `None`
    /// if the row moved to another parent.
    fn node(
        &mut self,
        old: &Arc<TreeNode>,
        row: FlatNode,
        parent: Option<&str>,
    ) -> Option<Arc<TreeNode>> {
        if row.parent_id.as_deref() != parent {
            return None;
        }
        // Tree order: the node, then what changed below it.
        let at = self.changed.len();
        let children = old
            .children
            .iter()
            .map(|child| match self.rows.remove(&child.node.id) {
                Some(row) => self.node(child, row, Some(&old.node.id)),
                None => Some(Arc::clone(child)),
            })
            .collect::<Option<Vec<_>>>()?;
        let new = tree_node(row.node, old.kind, old.position, children);
        if new.node != old.node || new.progress != old.progress {
            self.changed.insert(at, new.node.id.clone());
        }
        self.patched.insert(new.node.id.clone(), Arc::clone(&new));
        Some(new)
    }
}

/// The node at `at` of `rows`, with the nodes below it, as a node of `kind` (a cluster keeps
/// its first child, its bundle; an app has none, as in a nested [`Node`]).
fn build_flat(
    at: usize,
    kind: Kind,
    position: i32,
    rows: &mut [Option<(Node, Option<Stored>)>],
    below: &[Vec<usize>],
) -> Option<Arc<TreeNode>> {
    let (node, stored) = rows.get_mut(at)?.take()?;
    let kept = match kind {
        Kind::Cluster => 1,
        Kind::App => 0,
        _ => usize::MAX,
    };
    let children = match kind.child() {
        Some(child_kind) => below
            .get(at)?
            .iter()
            .take(kept)
            .zip(1..)
            .filter_map(|(&child, i)| build_flat(child, child_kind, i, rows, below))
            .collect(),
        None => Vec::new(),
    };
    Some(match stored {
        Some(stored) => Arc::new(TreeNode {
            node,
            kind,
            position: stored.position,
            children,
            progress: stored.progress,
        }),
        None => tree_node(node, kind, position, children),
    })
}

fn build(mut node: Node, kind: Kind, position: i32) -> Arc<TreeNode> {
    node.started_at = node.started_at.map(|at| at.trunc_subsecs(6));
    node.completed_at = node.completed_at.map(|at| at.trunc_subsecs(6));
    let child_kind = kind.child();
    let children: Vec<Node> = node
        .waves
        .take()
        .into_iter()
        .flatten()
        .chain(node.clusters.take().into_iter().flatten())
        .chain(node.bundle.take().map(|b| *b))
        .chain(node.apps.take().into_iter().flatten())
        .collect();
    let children: Vec<Arc<TreeNode>> = match child_kind {
        Some(child_kind) => children
            .into_iter()
            .zip(1..)
            .map(|(child, i)| build(child, child_kind, i))
            .collect(),
        None => Vec::new(),
    };
    tree_node(node, kind, position, children)
}

/// A node with its children and its roll-up over them.
fn tree_node(node: Node, kind: Kind, position: i32, children: Vec<Arc<TreeNode>>) -> Arc<TreeNode> {
    let progress = if kind == Kind::App {
        Progress::of_app(node.status)
    } else {
        children
            .iter()
            .fold(Progress::default(), |acc, c| acc.add(c.progress))
    }
    .with_percent();
    Arc::new(TreeNode {
        node,
        kind,
        position,
        children,
        progress,
    })
}

/// A pending synthetic release `r` of (waves, clusters, apps), its app `n` (in tree order)
/// changed by `change`: trees for the tests of the modules that read them.
#[cfg(test)]
pub(crate) fn synthetic(
    shape: (usize, usize, usize),
    n: usize,
    change: impl FnOnce(&mut Node),
) -> Node {
    use crate::contracts::{ids::Key, release::ReleaseSpec};
    let key = Key::parse("r").unwrap_or_else(|e| panic!("{e}"));
    let mut root = ReleaseSpec::synthetic(&key, "R", shape, Default::default()).pending_tree();
    if let Some(app) = root
        .waves
        .iter_mut()
        .flatten()
        .flat_map(|w| w.clusters.iter_mut().flatten())
        .flat_map(|c| {
            c.bundle
                .iter_mut()
                .flat_map(|b| b.apps.iter_mut().flatten())
        })
        .nth(n)
    {
        change(app);
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::{ids::Key, release::ReleaseSpec};

    #[test]
    fn progress_rolls_up_over_the_apps_below_each_node() {
        let key = Key::parse("r").unwrap_or_else(|e| panic!("{e}"));
        let mut root =
            ReleaseSpec::synthetic(&key, "R", (2, 2, 3), Default::default()).pending_tree();
        // Succeed the 3 apps of the first cluster, fail one in the second.
        if let Some(waves) = root.waves.as_mut() {
            let clusters = waves[0].clusters.as_deref_mut().unwrap_or_default();
            for app in clusters[0]
                .bundle
                .as_mut()
                .and_then(|b| b.apps.as_mut())
                .into_iter()
                .flatten()
            {
                app.status = RolloutStatus::Succeeded;
            }
            if let Some(app) = clusters[1]
                .bundle
                .as_mut()
                .and_then(|b| b.apps.as_mut())
                .and_then(|a| a.first_mut())
            {
                app.status = RolloutStatus::Failed;
            }
        }

        let tree = ReleaseTree::new(root, DataSource::Projection, Utc::now());

        let release = tree.root.progress;
        assert_eq!(
            (
                release.total,
                release.succeeded,
                release.failed,
                release.pending
            ),
            (12, 3, 1, 8)
        );
        assert_eq!(release.percent, 25.0);
        let wave = tree
            .find("wave:r/wave-1")
            .map(|w| w.progress)
            .unwrap_or_default();
        assert_eq!((wave.total, wave.succeeded, wave.failed), (6, 3, 1));
        assert_eq!(
            tree.find("app:r/wave-2/cluster-2/web-services/app-3")
                .map(|a| a.kind),
            Some(Kind::App)
        );
    }

    /// `node` and everything below it as projection rows, parents first.
    fn flatten(node: &Node, parent: Option<&str>, rows: &mut Vec<FlatNode>) {
        let mut own = node.clone();
        (own.waves, own.clusters, own.bundle, own.apps) = (None, None, None, None);
        rows.push(FlatNode {
            node: own,
            parent_id: parent.map(str::to_owned),
            stored: None,
        });
        let children = node
            .waves
            .iter()
            .flatten()
            .chain(node.clusters.iter().flatten());
        let children = children
            .chain(node.bundle.as_deref())
            .chain(node.apps.iter().flatten());
        for child in children {
            flatten(child, Some(&node.id), rows);
        }
    }

    /// Each node's ID, kind, position and roll-up, in tree order.
    fn shape(tree: &ReleaseTree) -> Vec<(String, Kind, i32, Progress)> {
        tree.nodes()
            .map(|n| (n.node.id.clone(), n.kind, n.position, n.progress))
            .collect()
    }

    #[test]
    fn a_tree_from_projection_rows_is_the_tree_from_the_nested_hierarchy() {
        let root = synthetic((3, 2, 4), 5, |app| app.status = RolloutStatus::Failed);
        let mut rows = Vec::new();
        flatten(&root, None, &mut rows);
        let as_of = Utc::now();

        let nested = ReleaseTree::new(root, DataSource::Projection, as_of);
        let flat = ReleaseTree::from_flat(rows, DataSource::Projection, as_of)
            .unwrap_or_else(|| panic!("a release row is there"));

        assert_eq!(shape(&flat), shape(&nested));
        assert_eq!(flat.root.progress.failed, 1);
        let app = "app:r/wave-2/cluster-1/web-services/app-2";
        assert_eq!(flat.find(app).map(|n| n.kind), Some(Kind::App));
    }

    #[test]
    fn rows_level_by_level_instead_of_in_tree_order_build_the_same_tree() {
        let root = synthetic((3, 2, 4), 5, |app| app.status = RolloutStatus::Failed);
        let mut rows = Vec::new();
        flatten(&root, None, &mut rows);
        let as_of = Utc::now();
        let depth = |row: &FlatNode| row.node.id.matches('/').count();
        let mut by_level = rows.clone();
        by_level.sort_by_key(depth);

        let in_order = ReleaseTree::from_flat(rows, DataSource::Projection, as_of)
            .unwrap_or_else(|| panic!("a release row is there"));
        let level_by_level = ReleaseTree::from_flat(by_level, DataSource::Projection, as_of)
            .unwrap_or_else(|| panic!("a release row is there"));

        assert_eq!(shape(&level_by_level), shape(&in_order));
        assert_eq!(in_order.nodes().count(), 1 + 3 + 3 * 2 * 2 + 3 * 2 * 4);
    }

    #[test]
    fn rows_that_are_orphans_or_hang_below_an_app_are_left_out() {
        let key = Key::parse("r").unwrap_or_else(|e| panic!("{e}"));
        let root = ReleaseSpec::synthetic(&key, "R", (1, 1, 1), Default::default()).pending_tree();
        let mut rows = Vec::new();
        flatten(&root, None, &mut rows);
        let whole = rows.len();
        // A foreign row under a parent that is not there, and a wave under an app.
        let mut orphan = rows[1].node.clone();
        orphan.id = "wave:r/lost".to_owned();
        rows.push(FlatNode {
            node: orphan,
            parent_id: Some("wave:r/nowhere".to_owned()),
            stored: None,
        });
        let app = rows[whole - 1].node.id.clone();
        let mut looped = rows[1].node.clone();
        looped.id = "wave:r/looped".to_owned();
        rows.push(FlatNode {
            node: looped,
            parent_id: Some(app),
            stored: None,
        });

        let tree = ReleaseTree::from_flat(rows, DataSource::Projection, Utc::now())
            .unwrap_or_else(|| panic!("a release row is there"));

        assert_eq!(tree.nodes().count(), whole);
        assert!(tree.find("wave:r/lost").is_none());
        assert!(tree.find("wave:r/looped").is_none());
        assert!(ReleaseTree::from_flat(Vec::new(), DataSource::Projection, Utc::now()).is_none());
    }

    #[test]
    fn a_tree_patched_with_the_rows_that_changed_and_their_ancestors_is_the_tree_read_whole() {
        // Arrange: a 2×2×3 release read whole, then app 5 fails and wave 2 starts.
        let mut rows = Vec::new();
        flatten(
            &release_with_app(100, RolloutStatus::Pending),
            None,
            &mut rows,
        );
        let before = ReleaseTree::from_flat(rows.clone(), DataSource::Projection, Utc::now())
            .unwrap_or_else(|| panic!("a release row is there"));
        let app = rows
            .iter()
            .filter(|r| r.node.id.starts_with("app:"))
            .nth(5)
            .map(|r| r.node.id.clone())
            .unwrap_or_default();
        let later = Utc::now();
        for row in &mut rows {
            if row.node.id == app {
                row.node.status = RolloutStatus::Failed;
                row.node.message = Some("boom".into());
            }
            if row.node.id == "wave:r/wave-2" {
                row.node.status = RolloutStatus::InProgress;
            }
        }
        let whole = ReleaseTree::from_flat(rows.clone(), DataSource::Projection, later)
            .unwrap_or_else(|| panic!("a release row is there"));
        let lineage = |id: &str| {
            let parent = |id: &str| rows.iter().find(|r| r.node.id == id).cloned();
            std::iter::successors(parent(id), |row| parent(row.parent_id.as_deref()?))
                .collect::<Vec<_>>()
        };
        let mut read_again = lineage(&app);
        read_again.extend(lineage("wave:r/wave-2"));

        // Act
        let before = Arc::new(before);
        let patched = before
            .patched(read_again.clone(), later)
            .unwrap_or_else(|| panic!("the rows are nodes of the tree"));
        let change = patched.changes_since(&before);
        let without_ancestors = before.patched(read_again[..1].to_vec(), later);
        let unchanged = before.patched(Vec::new(), later);
        let patched = Arc::new(patched);
        let twice = patched
            .patched(read_again[..5].to_vec(), later)
            .unwrap_or_else(|| panic!("a patched tree patches again"));
        let nothing_more = twice.changes_since(&patched);

        // Assert
        assert_eq!(shape(&patched), shape(&whole));
        let fields = |t: &ReleaseTree| t.nodes().map(|n| n.node.clone()).collect::<Vec<_>>();
        assert_eq!(fields(&patched), fields(&whole));
        assert_eq!(patched.as_of, later);
        assert_eq!(change, whole.changes_since(&before), "the same diff");
        assert_eq!(
            patched.changes_since(&whole),
            None,
            "equal to the whole read"
        );
        assert!(without_ancestors.is_none(), "an app alone is not enough");
        assert!(
            unchanged
                .is_some_and(|t| shape(&t) == shape(&before) && t.changes_since(&before).is_none())
        );
        assert_eq!(nothing_more, None, "the same rows again change nothing");
        for node in whole.nodes() {
            let found =
                |t: &ReleaseTree| t.find(&node.node.id).map(|n| (n.node.clone(), n.progress));
            assert_eq!(found(&patched), Some((node.node.clone(), node.progress)));
            assert_eq!(found(&twice), found(&patched), "{}", node.node.id);
        }
    }

    /// A pending 2×2×3 release with app `n` (in tree order) set to `status`.
    fn release_with_app(n: usize, status: RolloutStatus) -> Node {
        synthetic((2, 2, 3), n, |app| app.status = status)
    }

    #[test]
    fn one_apps_change_is_that_app_and_the_ancestors_whose_roll_ups_moved() {
        let as_of = Utc::now();
        let before = ReleaseTree::new(
            release_with_app(4, RolloutStatus::Pending),
            DataSource::Temporal,
            as_of,
        );
        let after = ReleaseTree::new(
            release_with_app(4, RolloutStatus::Succeeded),
            DataSource::Temporal,
            as_of,
        );

        let change = after.changes_since(&before);

        assert_eq!(
            change,
            Some(TreeChange::Nodes(vec![
                "release:r".into(),
                "wave:r/wave-1".into(),
                "cluster:r/wave-1/cluster-2".into(),
                "bundle:r/wave-1/cluster-2/web-services".into(),
                "app:r/wave-1/cluster-2/web-services/app-2".into(),
            ]))
        );
    }

    #[test]
    fn the_same_tree_read_later_or_from_elsewhere_changed_nothing() {
        let before = ReleaseTree::new(
            release_with_app(0, RolloutStatus::InProgress),
            DataSource::Temporal,
            Utc::now(),
        );
        let after = ReleaseTree::new(
            release_with_app(0, RolloutStatus::InProgress),
            DataSource::Projection,
            Utc::now() + chrono::TimeDelta::seconds(5),
        );

        assert_eq!(after.changes_since(&before), None);
    }

    #[test]
    fn a_node_that_came_or_went_reshapes_the_tree() {
        let smaller = ReleaseTree::new(
            release_with_app(0, RolloutStatus::Pending),
            DataSource::Projection,
            Utc::now(),
        );
        let mut root = release_with_app(0, RolloutStatus::Pending);
        let extra = synthetic((3, 2, 3), 0, |_| {})
            .waves
            .and_then(|waves| waves.into_iter().nth(2));
        root.waves.get_or_insert_default().extend(extra);
        let bigger = ReleaseTree::new(root, DataSource::Projection, Utc::now());

        assert_eq!(bigger.changes_since(&smaller), Some(TreeChange::Reshaped));
        assert_eq!(smaller.changes_since(&bigger), Some(TreeChange::Reshaped));
    }

    #[test]
    fn a_live_trees_times_are_the_projections_microseconds() {
        let mut root = release_with_app(0, RolloutStatus::InProgress);
        let at = DateTime::parse_from_rfc3339("2026-12-07T05:00:59.173649776Z")
            .unwrap_or_else(|e| panic!("{e}"))
            .with_timezone(&Utc);
        root.started_at = Some(at);
        root.completed_at = Some(at);

        let tree = ReleaseTree::new(root, DataSource::Temporal, Utc::now());

        let micros = DateTime::parse_from_rfc3339("2026-12-07T05:00:59.173649Z")
            .unwrap_or_else(|e| panic!("{e}"))
            .with_timezone(&Utc);
        assert_eq!(tree.root.node.started_at, Some(micros));
        assert_eq!(tree.root.node.completed_at, Some(micros));
    }
}
