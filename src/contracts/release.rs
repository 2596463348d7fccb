//! `ReleaseWorkflow`'s contract: the release spec (its input) and the hierarchy tree (what
//! `getHierarchy` returns), both camelCase JSON (see `docs/contracts.md`).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ids::{EntityId, Key};

/// The workflow type other clients start.
pub const WORKFLOW_TYPE: &str = "ReleaseWorkflow";
/// The query that returns the whole tree.
pub const HIERARCHY_QUERY: &str = "getHierarchy";

/// Status of any node of the hierarchy.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, async_graphql::Enum,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutStatus {
    /// Not started.
    Pending,
    /// Running.
    InProgress,
    /// Paused by a signal.
    Paused,
    /// Finished successfully.
    Succeeded,
    /// Failed (an app deploy failed below it).
    Failed,
    /// Cancelled.
    Cancelled,
}

impl TryFrom<String> for RolloutStatus {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw).ok_or_else(|| format!("unknown rollout status {raw:?}"))
    }
}

impl RolloutStatus {
    /// The name stored in tables and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::InProgress => "IN_PROGRESS",
            Self::Paused => "PAUSED",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::InProgress,
            Self::Paused,
            Self::Succeeded,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == raw)
    }

    /// `statuses` with each status once, in the order first given: a filter of at most six,
    /// however long the list a request sent (a 256 KB body holds 28,000 of them, which every
    /// node would otherwise be compared with).
    pub fn distinct(statuses: &[Self]) -> Vec<Self> {
        let mut once = Vec::with_capacity(6);
        for status in statuses {
            if !once.contains(status) {
                once.push(*status);
            }
        }
        once
    }

    /// Whether the node has finished (for good).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// Knobs of the simulated rollout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RolloutOptions {
    /// How long one app deploy takes, in milliseconds.
    pub step_millis: u64,
    /// Keys of the apps whose deploy fails.
    pub fail_apps: Vec<String>,
    /// Pause between waves, in milliseconds.
    pub pause_between_waves_millis: u64,
}

/// An app of a bundle, in the spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppSpec {
    /// Key.
    pub key: Key,
    /// Display name.
    pub name: String,
    /// Version deployed.
    pub version: String,
}

/// The bundle of a cluster, in the spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleSpec {
    /// Key.
    pub key: Key,
    /// Display name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Apps, deployed in order.
    pub apps: Vec<AppSpec>,
}

/// A cluster of a wave, in the spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Key.
    pub key: Key,
    /// Display name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Its one bundle.
    pub bundle: BundleSpec,
}

/// A wave of the release, in the spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaveSpec {
    /// Key.
    pub key: Key,
    /// Display name.
    pub name: String,
    /// Clusters, rolled out in parallel.
    pub clusters: Vec<ClusterSpec>,
}

/// The input of `ReleaseWorkflow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseSpec {
    /// Key (the workflow ID is `release:{key}`).
    pub key: Key,
    /// Display name.
    pub name: String,
    /// Waves, in order.
    pub waves: Vec<WaveSpec>,
    /// Simulation knobs.
    #[serde(default)]
    pub options: RolloutOptions,
}

/// One node of the hierarchy tree, as `getHierarchy` returns it and the projection stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Global ID.
    pub id: String,
    /// Key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Status.
    pub status: RolloutStatus,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Version (bundles and apps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Region (clusters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Waves (a release's children).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<Vec<Node>>,
    /// Clusters (a wave's children).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Vec<Node>>,
    /// The bundle (a cluster's child).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<Box<Node>>,
    /// Apps (a bundle's children).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<Node>>,
}

impl Node {
    fn pending(id: &EntityId, name: &str) -> Self {
        Self {
            id: id.to_string(),
            key: id.key().to_string(),
            name: name.to_owned(),
            status: RolloutStatus::Pending,
            started_at: None,
            completed_at: None,
            message: None,
            version: None,
            region: None,
            waves: None,
            clusters: None,
            bundle: None,
            apps: None,
        }
    }

    /// The node's direct children, in order (whichever level they are).
    pub fn children(&self) -> impl Iterator<Item = &Node> {
        self.waves
            .iter()
            .flatten()
            .chain(self.clusters.iter().flatten())
            .chain(self.bundle.iter().map(|b| b.as_ref()))
            .chain(self.apps.iter().flatten())
    }

    /// Every node of this subtree, parents before children.
    pub fn walk(&self) -> Vec<&Node> {
        let mut out = vec![self];
        for child in self.children() {
            out.extend(child.walk());
        }
        out
    }
}

impl ReleaseSpec {
    /// The release's global ID.
    pub fn id(&self) -> EntityId {
        EntityId::release(&self.key)
    }

    /// The whole tree with every node `PENDING`.
    pub fn pending_tree(&self) -> Node {
        let release_id = self.id();
        let mut release = Node::pending(&release_id, &self.name);
        release.waves = Some(
            self.waves
                .iter()
                .filter_map(|wave| {
                    let wave_id = release_id.child(&wave.key)?;
                    let mut wave_node = Node::pending(&wave_id, &wave.name);
                    wave_node.clusters = Some(
                        wave.clusters
                            .iter()
                            .filter_map(|cluster| {
                                let cluster_id = wave_id.child(&cluster.key)?;
                                let bundle_id = cluster_id.child(&cluster.bundle.key)?;
                                let mut bundle = Node::pending(&bundle_id, &cluster.bundle.name);
                                bundle.version = Some(cluster.bundle.version.clone());
                                bundle.apps = Some(
                                    cluster
                                        .bundle
                                        .apps
                                        .iter()
                                        .filter_map(|app| {
                                            let mut node = Node::pending(
                                                &bundle_id.child(&app.key)?,
                                                &app.name,
                                            );
                                            node.version = Some(app.version.clone());
                                            Some(node)
                                        })
                                        .collect(),
                                );
                                let mut cluster_node = Node::pending(&cluster_id, &cluster.name);
                                cluster_node.region = Some(cluster.region.clone());
                                cluster_node.bundle = Some(Box::new(bundle));
                                Some(cluster_node)
                            })
                            .collect(),
                    );
                    Some(wave_node)
                })
                .collect(),
        );
        release
    }

    /// Checks what serde cannot: unique keys among siblings, at least one wave and app.
    pub fn validate(&self) -> Result<(), String> {
        fn unique<'a>(what: &str, keys: impl Iterator<Item = &'a Key>) -> Result<(), String> {
            let mut seen = std::collections::HashSet::new();
            for key in keys {
                if !seen.insert(key) {
                    return Err(format!("duplicate {what} key {key}"));
                }
            }
            Ok(())
        }
        if self.waves.is_empty() {
            return Err("a release needs at least one wave".into());
        }
        unique("wave", self.waves.iter().map(|w| &w.key))?;
        for wave in &self.waves {
            unique("cluster", wave.clusters.iter().map(|c| &c.key))?;
            for cluster in &wave.clusters {
                unique("app", cluster.bundle.apps.iter().map(|a| &a.key))?;
            }
        }
        Ok(())
    }
}

impl ReleaseSpec {
    /// A generated release of `waves` × `clusters` × `apps` (keys `wave-1`, `cluster-1`,
    /// `app-1`, …), for demo data, tests and benchmarks.
    pub fn synthetic(
        key: &Key,
        name: &str,
        (waves, clusters, apps): (usize, usize, usize),
        options: RolloutOptions,
    ) -> Self {
        const REGIONS: [&str; 4] = ["us-west", "us-east", "eu-central", "ap-south"];
        let key_of = |prefix: &str, i: usize| Key(format!("{prefix}-{}", i + 1));
        Self {
            key: key.clone(),
            name: name.to_owned(),
            waves: (0..waves)
                .map(|w| WaveSpec {
                    key: key_of("wave", w),
                    name: format!("Wave {}", w + 1),
                    clusters: (0..clusters)
                        .map(|c| ClusterSpec {
                            key: key_of("cluster", c),
                            name: format!("Cluster {}", c + 1),
                            region: REGIONS[c % REGIONS.len()].to_owned(),
                            bundle: BundleSpec {
                                key: Key("web-services".into()),
                                name: "Web services".into(),
                                version: "2025.1.0".into(),
                                apps: (0..apps)
                                    .map(|a| AppSpec {
                                        key: key_of("app", a),
                                        name: format!("App {}", a + 1),
                                        version: format!("1.{a}.0"),
                                    })
                                    .collect(),
                            },
                        })
                        .collect(),
                })
                .collect(),
            options,
        }
    }
}
