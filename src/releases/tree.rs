//! A loaded release tree, shared by every GraphQL object that shows a part of it.
//!
//! Built once per load (from the projection or from `getHierarchy`), with each node's
//! progress roll-up computed bottom-up, and an index so `node(id:)` finds any node at once.

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};

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
    index: HashMap<String, Arc<TreeNode>>,
}

impl ReleaseTree {
    /// Builds the shared tree from a nested [`Node`].
    pub fn new(root: Node, source: DataSource, as_of: DateTime<Utc>) -> Self {
        let mut index = HashMap::new();
        let root = build(root, Kind::Release, 1, &mut index);
        Self {
            root,
            source,
            as_of,
            index,
        }
    }

    /// Every node of the tree.
    pub fn nodes(&self) -> impl Iterator<Item = &Arc<TreeNode>> {
        self.index.values()
    }

    /// The node with global ID `id`, if it is in this tree.
    pub fn find(&self, id: &str) -> Option<Arc<TreeNode>> {
        self.index.get(id).cloned()
    }
}

fn build(
    mut node: Node,
    kind: Kind,
    position: i32,
    index: &mut HashMap<String, Arc<TreeNode>>,
) -> Arc<TreeNode> {
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
            .map(|(child, i)| build(child, child_kind, i, index))
            .collect(),
        None => Vec::new(),
    };
    let progress = if kind == Kind::App {
        Progress::of_app(node.status)
    } else {
        children
            .iter()
            .fold(Progress::default(), |acc, c| acc.add(c.progress))
    }
    .with_percent();
    let tree_node = Arc::new(TreeNode {
        node,
        kind,
        position,
        children,
        progress,
    });
    index.insert(tree_node.node.id.clone(), Arc::clone(&tree_node));
    tree_node
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
}
