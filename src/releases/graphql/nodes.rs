//! Flat views of one release's tree: `Release.nodes`, its nodes as a filtered connection in
//! tree order, each with the path from the release down to its parent, so one row can say
//! where it sits; and `Release.timeline`, the spans of its waves and clusters for a Gantt view.

use std::sync::Arc;

use async_graphql::{Enum, ErrorExtensions, ID, SimpleObject};
use chrono::{DateTime, Utc};

use crate::{
    contracts::{ids::Kind, release::RolloutStatus},
    error::ApiError,
    graphql::connection::{
        DEFAULT_PAGE, bad_cursor, check_page_size, decode_cursor, encode_cursor,
    },
    releases::{store::PartFilter, tree::TreeNode},
};

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

    /// The hierarchy kind this names.
    pub fn kind(self) -> Kind {
        match self {
            Self::Wave => Kind::Wave,
            Self::Cluster => Kind::Cluster,
            Self::Bundle => Kind::Bundle,
            Self::App => Kind::App,
        }
    }
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
    /// The step `node` is on a path.
    pub(super) fn of(node: &TreeNode) -> Self {
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

/// The spans of the waves and clusters below `release`, each wave followed by its clusters.
pub fn timeline(release: &TreeNode) -> Vec<TimelineSpan> {
    let span = |node: &TreeNode, kind| TimelineSpan {
        id: ID(node.node.id.clone()),
        kind,
        name: node.node.name.clone(),
        started_at: node.node.started_at,
        completed_at: node.node.completed_at,
        status: node.node.status,
    };
    let mut spans = Vec::new();
    for wave in &release.children {
        spans.push(span(wave, NodeKind::Wave));
        for cluster in &wave.children {
            spans.push(span(cluster, NodeKind::Cluster));
        }
    }
    spans
}

/// When a running release is expected to finish, and how fast it goes.
#[derive(SimpleObject, Debug, PartialEq)]
pub struct ReleaseEstimate {
    /// The expected completion time.
    pub completes_at: DateTime<Utc>,
    /// Apps finished (deployed or failed) per minute since the release started.
    pub apps_per_minute: f64,
    /// What the estimate stands on, in words.
    pub basis: String,
}

/// The estimate of a running release, from its finished waves (see `docs/architecture.md`):
/// waves run one after another, so what is left is the running wave's remainder at the
/// finished waves' mean duration, then each wave still to come at that mean plus the mean gap
/// between waves (less what has passed of the gap it is in). `None` while no wave has finished,
/// or when the release is not running.
pub fn estimate(root: &TreeNode, as_of: DateTime<Utc>) -> Option<ReleaseEstimate> {
    if root.node.status != RolloutStatus::InProgress {
        return None;
    }
    let seconds = |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).as_seconds_f64().max(0.0);
    let waves = &root.children;
    let finished: Vec<(DateTime<Utc>, DateTime<Utc>)> = waves
        .iter()
        .filter_map(|w| Some((w.node.started_at?, w.node.completed_at?)))
        .collect();
    let count = finished.len();
    if count == 0 {
        return None;
    }
    let mean = finished.iter().map(|(s, e)| seconds(*s, *e)).sum::<f64>() / count as f64;
    let gaps: Vec<f64> = finished
        .windows(2)
        .map(|pair| seconds(pair[0].1, pair[1].0))
        .collect();
    let gap = if gaps.is_empty() {
        0.0
    } else {
        gaps.iter().sum::<f64>() / gaps.len() as f64
    };
    let running = waves
        .iter()
        .find(|w| w.node.started_at.is_some() && w.node.completed_at.is_none());
    let left_in_running = running
        .and_then(|w| w.node.started_at)
        .map_or(0.0, |started| (mean - seconds(started, as_of)).max(0.0));
    let to_come = waves.iter().filter(|w| w.node.started_at.is_none()).count();
    // Between two waves, part of the gap before the next one has already passed.
    let gap_passed = match (running, finished.last()) {
        (None, Some((_, last_end))) if to_come > 0 => seconds(*last_end, as_of).min(gap),
        _ => 0.0,
    };
    // Every wave done but the release not yet closed: due now, never in the past.
    let left = (left_in_running + to_come as f64 * (gap + mean) - gap_passed).max(0.0);
    let completes_at = as_of + chrono::Duration::milliseconds((left * 1000.0).round() as i64);
    let done = root.progress.succeeded + root.progress.failed;
    let minutes = root
        .node
        .started_at
        .map_or(0.0, |started| seconds(started, as_of) / 60.0);
    let apps_per_minute = if minutes > 0.0 {
        f64::from(done) / minutes
    } else {
        0.0
    };
    Some(ReleaseEstimate {
        completes_at,
        apps_per_minute,
        basis: if gaps.is_empty() {
            format!(
                "{count} finished wave(s) of mean {mean:.0} s, no gap between waves measured yet; {to_come} wave(s) to come"
            )
        } else {
            format!(
                "{count} finished wave(s) of mean {mean:.0} s, {gap:.0} s between waves; {to_come} wave(s) to come"
            )
        },
    })
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
            .is_some_and(|s| s.chars().count() > super::MAX_SEARCH_CHARS)
        {
            return Err(ApiError::bad_input(
                "search",
                format!("search is at most {} characters", super::MAX_SEARCH_CHARS),
            )
            .extend());
        }
        // Postgres text cannot hold NUL: refused here, not an internal error in the store.
        if search
            .as_deref()
            .is_some_and(|s| s.chars().any(crate::types::is_invisible))
        {
            return Err(ApiError::bad_input(
                "search",
                "search must not contain control or invisible formatting characters",
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

    /// The filter as the store applies it to a release read in part.
    pub fn part(&self) -> PartFilter {
        PartFilter {
            kinds: self.kinds.iter().map(|kind| kind.kind()).collect(),
            statuses: self.statuses.clone(),
            search: self.search.clone(),
        }
    }

    /// The node the page starts after.
    pub fn after(&self) -> Option<&str> {
        self.after.as_deref()
    }

    /// The page size.
    pub fn first(&self) -> usize {
        self.first
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

/// The page of the nodes below `release` that `filter` selects, in tree order (a parent
/// before its children, siblings in order).
pub fn select(release: &Arc<TreeNode>, filter: &NodeFilter) -> async_graphql::Result<Selected> {
    let mut walk = Walk {
        filter,
        path: vec![PathStep::of(release)],
        seen: 0,
        after: None,
        matches: Vec::new(),
    };
    walk.below(release);
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
    let total = walk.matches.len();
    let has_next = total > start.saturating_add(filter.first);
    Ok(Selected {
        has_previous: start > 0,
        has_next,
        total: i64::try_from(total).unwrap_or(i64::MAX),
        page: walk
            .matches
            .into_iter()
            .skip(start)
            .take(filter.first)
            .collect(),
    })
}

/// A page of a release's nodes, as [`select`] found it.
pub struct Selected {
    pub has_previous: bool,
    pub has_next: bool,
    /// How many nodes match, over all pages.
    pub total: i64,
    pub page: Vec<Found>,
}

/// A matching node, its place in tree order and its path.
pub struct Found {
    order: usize,
    pub node: Arc<TreeNode>,
    pub path: Vec<PathStep>,
}

impl Found {
    /// The edge cursor that continues after this node.
    pub fn cursor(&self) -> String {
        cursor(&self.node.node.id)
    }
}

/// The edge cursor of `Release.nodes` that continues after node `id`.
pub fn cursor(id: &str) -> String {
    encode_cursor(&format!("node|{id}"))
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::{
        contracts::{ids::Key, release::ReleaseSpec},
        releases::tree::{DataSource, ReleaseTree},
    };

    /// The estimate of a 3-wave release (1 cluster, 1 app each) in `status`, started at 0 s,
    /// read at `as_of` seconds; `waves[i]` is (started, completed) in seconds, the apps of
    /// finished waves succeeded.
    fn release(
        status: RolloutStatus,
        waves: [(Option<i64>, Option<i64>); 3],
        as_of: i64,
    ) -> Option<ReleaseEstimate> {
        let at = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).single();
        let key = Key::parse("r").unwrap_or_else(|e| panic!("{e}"));
        let mut root =
            ReleaseSpec::synthetic(&key, "R", (3, 1, 1), Default::default()).pending_tree();
        root.status = status;
        root.started_at = at(0);
        for (wave, (started, completed)) in root.waves.iter_mut().flatten().zip(waves) {
            wave.started_at = started.and_then(at);
            wave.completed_at = completed.and_then(at);
            if completed.is_some() {
                for cluster in wave.clusters.iter_mut().flatten() {
                    for app in cluster
                        .bundle
                        .iter_mut()
                        .flat_map(|b| b.apps.iter_mut().flatten())
                    {
                        app.status = RolloutStatus::Succeeded;
                    }
                }
            }
        }
        let as_of = at(as_of).unwrap_or_default();
        let tree = ReleaseTree::new(root, DataSource::Projection, as_of);
        estimate(&tree.root, as_of)
    }

    fn seconds_after_start(estimate: &ReleaseEstimate) -> i64 {
        estimate.completes_at.timestamp() - 1_700_000_000
    }

    #[test]
    fn a_running_wave_gets_the_mean_of_the_finished_ones_and_each_wave_to_come_adds_mean_and_gap() {
        // Two waves of 60 s with 10 s between them; the third started 10 s ago.
        let running = release(
            RolloutStatus::InProgress,
            [
                (Some(0), Some(60)),
                (Some(70), Some(130)),
                (Some(140), None),
            ],
            150,
        );
        // Only the first finished; the second runs since 70 s, the third is to come.
        let two_left = release(
            RolloutStatus::InProgress,
            [(Some(0), Some(60)), (Some(70), None), (None, None)],
            100,
        );

        let running = running.unwrap_or_else(|| panic!("an estimate"));
        let two_left = two_left.unwrap_or_else(|| panic!("an estimate"));

        assert_eq!(seconds_after_start(&running), 150 + 50);
        assert!(
            (running.apps_per_minute - 2.0 / 2.5).abs() < 1e-9,
            "{running:?}"
        );
        // No gap measured yet (one finished wave): 30 s left of the second, then 60 s.
        assert_eq!(seconds_after_start(&two_left), 100 + 30 + 60);
        // 4 s into the 10 s gap after the second wave: 6 s of it, then 60 s.
        let in_a_gap = release(
            RolloutStatus::InProgress,
            [(Some(0), Some(60)), (Some(70), Some(130)), (None, None)],
            134,
        );
        let in_a_gap = in_a_gap.unwrap_or_else(|| panic!("an estimate"));
        assert_eq!(seconds_after_start(&in_a_gap), 134 + 6 + 60);
        // Every wave finished, the release not closed yet: due at once.
        let all_done = release(
            RolloutStatus::InProgress,
            [
                (Some(0), Some(60)),
                (Some(70), Some(130)),
                (Some(140), Some(200)),
            ],
            205,
        );
        let all_done = all_done.unwrap_or_else(|| panic!("an estimate"));
        assert_eq!(seconds_after_start(&all_done), 205);
    }

    #[test]
    fn there_is_no_estimate_before_a_wave_finishes_or_once_the_release_is_not_running() {
        let half_way = [(Some(0), Some(60)), (Some(70), None), (None, None)];
        let nothing_finished = release(
            RolloutStatus::InProgress,
            [(Some(0), None), (None, None), (None, None)],
            30,
        );
        let paused = release(RolloutStatus::Paused, half_way, 100);
        let failed = release(RolloutStatus::Failed, half_way, 100);

        assert_eq!(nothing_finished, None);
        assert_eq!(paused, None);
        assert_eq!(failed, None);
        assert!(
            release(RolloutStatus::InProgress, half_way, 100).is_some(),
            "the same release running has one"
        );
    }
}
