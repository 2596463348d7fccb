//! `ReleaseWorkflow`, the reference rollout: waves in order, the clusters of a wave in
//! parallel, the apps of a bundle in order, one activity per app deploy.
//!
//! The workflow keeps the whole tree in its state (answered by the `getHierarchy` query) and
//! records every status change as a domain event through activities, which the projection
//! triggers fold into `release_projection` / `release_entity_projection`.

// The SDK's macros generate an undocumented constant per workflow and activity method.
#![allow(missing_docs)]

mod activities;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, SyncWorkflowContext, WorkflowCancellationToken,
    WorkflowContext, WorkflowContextView, WorkflowResult, WorkflowTermination,
    workflows::{join_all, select},
};

pub use self::activities::ReleaseActivities;
use crate::contracts::release::{Node, ReleaseSpec, RolloutStatus};

/// Where a node sits in the tree, by position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum NodePath {
    Release,
    Wave(usize),
    Cluster(usize, usize),
    Bundle(usize, usize),
    App(usize, usize, usize),
}

/// A status change to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    /// Global ID of the node.
    pub id: String,
    /// New status.
    pub status: RolloutStatus,
    /// When it changed.
    pub at: DateTime<Utc>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Input of the `deploy_app` activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployApp {
    /// Global ID of the app.
    pub id: String,
    /// Version being deployed.
    pub version: String,
    /// Simulated duration.
    pub step_millis: u64,
    /// Whether the simulated deploy fails.
    pub fail: bool,
}

/// What a deploy ended as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployOutcome {
    /// `SUCCEEDED` or `FAILED`.
    pub status: RolloutStatus,
    /// When the deploy started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub completed_at: DateTime<Utc>,
    /// Why it failed.
    pub message: Option<String>,
}

/// The reference release workflow.
#[workflow]
pub struct ReleaseWorkflow {
    spec: ReleaseSpec,
    tree: Node,
    paused: bool,
}

fn now(ctx: &WorkflowContext<ReleaseWorkflow>) -> DateTime<Utc> {
    ctx.workflow_time()
        .map(DateTime::<Utc>::from)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn record_options() -> ActivityOptions {
    ActivityOptions::start_to_close_timeout(Duration::from_secs(30))
}

impl ReleaseWorkflow {
    fn node_mut(&mut self, path: NodePath) -> Option<&mut Node> {
        fn wave(tree: &mut Node, w: usize) -> Option<&mut Node> {
            tree.waves.as_mut()?.get_mut(w)
        }
        let tree = &mut self.tree;
        match path {
            NodePath::Release => Some(tree),
            NodePath::Wave(w) => wave(tree, w),
            NodePath::Cluster(w, c) => wave(tree, w)?.clusters.as_mut()?.get_mut(c),
            NodePath::Bundle(w, c) => wave(tree, w)?
                .clusters
                .as_mut()?
                .get_mut(c)?
                .bundle
                .as_deref_mut(),
            NodePath::App(w, c, a) => wave(tree, w)?
                .clusters
                .as_mut()?
                .get_mut(c)?
                .bundle
                .as_deref_mut()?
                .apps
                .as_mut()?
                .get_mut(a),
        }
    }

    /// Sets a node's status in the live tree and returns the change to record.
    fn set_status(
        &mut self,
        path: NodePath,
        status: RolloutStatus,
        at: DateTime<Utc>,
        message: Option<String>,
    ) -> Option<StatusChange> {
        let node = self.node_mut(path)?;
        node.status = status;
        if status == RolloutStatus::InProgress && node.started_at.is_none() {
            node.started_at = Some(at);
        }
        if status.is_terminal() {
            node.completed_at = Some(at);
        }
        node.message.clone_from(&message);
        Some(StatusChange {
            id: node.id.clone(),
            status,
            at,
            message,
        })
    }
}

/// Applies status changes to the state and records them, in one activity.
async fn change(
    ctx: &WorkflowContext<ReleaseWorkflow>,
    changes: &[(NodePath, RolloutStatus, Option<String>)],
) -> WorkflowResult<()> {
    let at = now(ctx);
    let recorded: Vec<StatusChange> = ctx.state_mut(|s| {
        changes
            .iter()
            .filter_map(|(path, status, message)| s.set_status(*path, *status, at, message.clone()))
            .collect()
    });
    ctx.execute_activity(
        ReleaseActivities::record_statuses,
        recorded,
        record_options(),
    )
    .await?;
    Ok(())
}

/// Rolls out one cluster; returns the failure message if an app failed.
async fn run_cluster(
    ctx: WorkflowContext<ReleaseWorkflow>,
    w: usize,
    c: usize,
) -> WorkflowResult<Option<String>> {
    let in_progress = RolloutStatus::InProgress;
    change(
        &ctx,
        &[
            (NodePath::Cluster(w, c), in_progress, None),
            (NodePath::Bundle(w, c), in_progress, None),
        ],
    )
    .await?;
    let (bundle_id, apps, options) = ctx.state(|s| {
        let wave = s.spec.waves.get(w);
        let cluster = wave.and_then(|wave| wave.clusters.get(c));
        let bundle_id = wave.zip(cluster).and_then(|(wave, cluster)| {
            s.spec
                .id()
                .child(&wave.key)?
                .child(&cluster.key)?
                .child(&cluster.bundle.key)
        });
        let apps = cluster.map(|c| c.bundle.apps.clone()).unwrap_or_default();
        (bundle_id, apps, s.spec.options.clone())
    });

    for (a, app) in apps.iter().enumerate() {
        // A paused release starts no new deploys; the one in flight finishes.
        ctx.wait_condition(|s| !s.paused).await?;
        let app_id = bundle_id
            .as_ref()
            .and_then(|b| b.child(&app.key))
            .map(|id| id.to_string())
            .unwrap_or_default();
        let at = now(&ctx);
        ctx.state_mut(|s| {
            s.set_status(NodePath::App(w, c, a), RolloutStatus::InProgress, at, None)
        });
        let outcome = ctx
            .execute_activity(
                ReleaseActivities::deploy_app,
                DeployApp {
                    id: app_id,
                    version: app.version.clone(),
                    step_millis: options.step_millis,
                    fail: options.fail_apps.iter().any(|k| k == app.key.as_str()),
                },
                ActivityOptions::start_to_close_timeout(
                    Duration::from_millis(options.step_millis) + Duration::from_secs(30),
                ),
            )
            .await?;
        ctx.state_mut(|s| {
            if let Some(node) = s.node_mut(NodePath::App(w, c, a)) {
                node.status = outcome.status;
                node.started_at = Some(outcome.started_at);
                node.completed_at = Some(outcome.completed_at);
                node.message.clone_from(&outcome.message);
            }
        });
        if outcome.status == RolloutStatus::Failed {
            let message = format!(
                "app {} failed: {}",
                app.key,
                outcome.message.unwrap_or_default()
            );
            let failed = RolloutStatus::Failed;
            change(
                &ctx,
                &[
                    (NodePath::Bundle(w, c), failed, Some(message.clone())),
                    (NodePath::Cluster(w, c), failed, Some(message.clone())),
                ],
            )
            .await?;
            return Ok(Some(message));
        }
    }
    let done = RolloutStatus::Succeeded;
    change(
        &ctx,
        &[
            (NodePath::Bundle(w, c), done, None),
            (NodePath::Cluster(w, c), done, None),
        ],
    )
    .await?;
    Ok(None)
}

/// Rolls out every wave; returns the failure message if one failed.
async fn run_waves(ctx: &WorkflowContext<ReleaseWorkflow>) -> WorkflowResult<Option<String>> {
    let (waves, pause_between) = ctx.state(|s| {
        (
            s.spec
                .waves
                .iter()
                .map(|w| w.clusters.len())
                .collect::<Vec<_>>(),
            Duration::from_millis(s.spec.options.pause_between_waves_millis),
        )
    });
    for (w, cluster_count) in waves.iter().enumerate() {
        if w > 0 && !pause_between.is_zero() {
            ctx.timer(pause_between).await;
        }
        ctx.wait_condition(|s| !s.paused).await?;
        change(ctx, &[(NodePath::Wave(w), RolloutStatus::InProgress, None)]).await?;
        let branches = (0..*cluster_count).map(|c| run_cluster(ctx.clone(), w, c));
        let results = join_all(branches).await;
        let mut failure = None;
        for result in results {
            if let Some(message) = result? {
                failure.get_or_insert(message);
            }
        }
        if let Some(message) = failure {
            change(
                ctx,
                &[(
                    NodePath::Wave(w),
                    RolloutStatus::Failed,
                    Some(message.clone()),
                )],
            )
            .await?;
            return Ok(Some(message));
        }
        change(ctx, &[(NodePath::Wave(w), RolloutStatus::Succeeded, None)]).await?;
    }
    Ok(None)
}

/// How the rollout ended.
enum Outcome {
    /// It ran to its end: the failure message, if it failed.
    Ran(WorkflowResult<Option<String>>),
    /// Temporal's cancellation stopped it, with the reason given.
    Cancelled(Option<String>),
}

/// After Temporal's cancellation: no new deploy starts, every node that had not finished
/// (the deploys cut off and those never started) is `CANCELLED`, the release too, and those
/// changes are recorded by an activity the cancellation does not reach. The workflow then
/// ends cancelled.
async fn cancel(
    ctx: &WorkflowContext<ReleaseWorkflow>,
    reason: Option<String>,
) -> WorkflowResult<RolloutStatus> {
    let at = now(ctx);
    let message = match reason.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        Some(reason) => format!("cancelled: {reason}"),
        None => "cancelled".to_owned(),
    };
    let recorded: Vec<StatusChange> = ctx.state_mut(|s| {
        let mut open = Vec::new();
        collect_open(&s.tree, NodePath::Release, &mut open);
        open.into_iter()
            .filter_map(|path| {
                let message = (path == NodePath::Release).then(|| message.clone());
                s.set_status(path, RolloutStatus::Cancelled, at, message)
            })
            .collect()
    });
    ctx.execute_activity(
        ReleaseActivities::record_statuses,
        recorded,
        ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
            .cancellation_token(WorkflowCancellationToken::new())
            .build(),
    )
    .await?;
    Err(WorkflowTermination::cancelled())
}

/// The paths of every node below (and including) `node` at `path` that has not finished,
/// children before their parents.
fn collect_open(node: &Node, path: NodePath, out: &mut Vec<NodePath>) {
    let waves = node.waves.iter().flatten().enumerate();
    for (w, wave) in waves {
        for (c, cluster) in wave.clusters.iter().flatten().enumerate() {
            if let Some(bundle) = cluster.bundle.as_deref() {
                for (a, app) in bundle.apps.iter().flatten().enumerate() {
                    if !app.status.is_terminal() {
                        out.push(NodePath::App(w, c, a));
                    }
                }
                if !bundle.status.is_terminal() {
                    out.push(NodePath::Bundle(w, c));
                }
            }
            if !cluster.status.is_terminal() {
                out.push(NodePath::Cluster(w, c));
            }
        }
        if !wave.status.is_terminal() {
            out.push(NodePath::Wave(w));
        }
    }
    if path == NodePath::Release && !node.status.is_terminal() {
        out.push(NodePath::Release);
    }
}

/// Records `PAUSED` / `IN_PROGRESS` for the release as the `pause` and `resume` signals arrive.
async fn watch_pauses(ctx: &WorkflowContext<ReleaseWorkflow>) -> WorkflowResult<()> {
    loop {
        ctx.wait_condition(|s| s.paused).await?;
        change(ctx, &[(NodePath::Release, RolloutStatus::Paused, None)]).await?;
        ctx.wait_condition(|s| !s.paused).await?;
        change(ctx, &[(NodePath::Release, RolloutStatus::InProgress, None)]).await?;
    }
}

#[workflow_methods]
impl ReleaseWorkflow {
    /// Builds the all-`PENDING` tree from the spec, so `getHierarchy` answers from the start.
    #[init]
    pub fn new(_ctx: &WorkflowContextView, spec: ReleaseSpec) -> Self {
        let tree = spec.pending_tree();
        Self {
            spec,
            tree,
            paused: false,
        }
    }

    /// Runs the rollout; returns the release's final status.
    #[run(name = "ReleaseWorkflow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<RolloutStatus> {
        if let Err(why) = ctx.state(|s| s.spec.validate()) {
            return Err(
                ApplicationFailure::non_retryable(format!("invalid release spec: {why}")).into(),
            );
        }
        // `release.created` also marks the release IN_PROGRESS: one event, so no replay order
        // can put the start before the tree exists.
        let at = now(ctx);
        let tree = ctx.state_mut(|s| {
            s.set_status(NodePath::Release, RolloutStatus::InProgress, at, None);
            s.tree.clone()
        });
        ctx.execute_activity(
            ReleaseActivities::record_created,
            Created { tree, at },
            record_options(),
        )
        .await?;

        let outcome = select! {
            result = run_waves(ctx).fuse() => Outcome::Ran(result),
            result = watch_pauses(ctx).fuse() => Outcome::Ran(result.map(|()| None)),
            reason = ctx.cancelled() => Outcome::Cancelled(reason),
        };
        // A deploy cut off by the cancellation ends the rollout with an error: that is the
        // cancellation too, whichever branch saw it first.
        let cancellation = ctx.cancellation_token();
        let failure = match outcome {
            Outcome::Cancelled(reason) => return cancel(ctx, reason).await,
            Outcome::Ran(_) if cancellation.is_cancelled() => {
                return cancel(ctx, cancellation.reason()).await;
            }
            Outcome::Ran(result) => result?,
        };
        match failure {
            None => {
                change(ctx, &[(NodePath::Release, RolloutStatus::Succeeded, None)]).await?;
                Ok(RolloutStatus::Succeeded)
            }
            Some(message) => {
                change(
                    ctx,
                    &[(
                        NodePath::Release,
                        RolloutStatus::Failed,
                        Some(message.clone()),
                    )],
                )
                .await?;
                Err(ApplicationFailure::non_retryable(message).into())
            }
        }
    }

    /// Stops starting new app deploys until `resume`.
    #[signal(name = "pause")]
    pub fn pause(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        if !self.tree.status.is_terminal() {
            self.paused = true;
        }
    }

    /// Continues a paused rollout.
    #[signal(name = "resume")]
    pub fn resume(&mut self, _ctx: &mut SyncWorkflowContext<Self>) {
        self.paused = false;
    }

    /// The whole tree, live.
    #[query(name = "getHierarchy")]
    pub fn get_hierarchy(&self, _ctx: &WorkflowContextView) -> Node {
        self.tree.clone()
    }
}

/// Input of `record_created`: the initial tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    /// The tree, all `PENDING` but the release (`IN_PROGRESS`).
    pub tree: Node,
    /// When the rollout started.
    pub at: DateTime<Utc>,
}
