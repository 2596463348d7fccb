//! Every event type the BFF and the reference worker write to `domain_events`, with the shape
//! of its `event_data` and of `event_metadata`. The projection triggers (`project_domain_event`
//! and the others; as they run today in `sql/current.sql`) read exactly these fields.
//!
//! Each payload says its own event type ([`EventPayload::event_type`]); writers build a payload
//! and never spell an event's JSON by hand.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    bootstrap::{AdminUser, BootstrapInput, OrganizationType, Step},
    ids::{EntityId, Kind},
    release::{Node, RolloutStatus},
};

/// A domain event's `event_data`, which knows its `event_type`.
pub trait EventPayload: Serialize {
    /// The event type this payload is stored under.
    fn event_type(&self) -> &'static str;
}

macro_rules! event_type {
    ($($payload:ident => $name:literal),* $(,)?) => {
        $(
            impl EventPayload for $payload {
                fn event_type(&self) -> &'static str {
                    $name
                }
            }
        )*
    };
}

/// Where an event came from, stored as `event_metadata`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventMetadata {
    /// Temporal workflow ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// Temporal run ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_run_id: Option<String>,
    /// Workflow type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_type: Option<String>,
    /// Activity ID within the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_id: Option<String>,
    /// When the event happened (RFC 3339).
    pub timestamp: DateTime<Utc>,
    /// Which component wrote it: `temporal-bff`, `temporal-bff-worker`, or `temporal-bff-demo` (the
    /// huge release of `demo --large`).
    pub source: String,
    /// The user who caused it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Ties events of one request or workflow together (the request's `x-request-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The request's W3C trace context (`traceparent`), which a queued workflow start carries
    /// to Temporal when it is dispatched later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl EventMetadata {
    /// Metadata of an event the BFF writes about workflow `workflow_id` of `workflow_type`.
    pub fn bff(workflow_id: &str, workflow_type: &str, at: DateTime<Utc>) -> Self {
        Self {
            workflow_id: Some(workflow_id.to_owned()),
            workflow_type: Some(workflow_type.to_owned()),
            timestamp: at,
            source: "temporal-bff".into(),
            ..Self::default()
        }
    }

    /// [`EventMetadata::bff`] for what the BFF learned about run `run_id`.
    pub fn bff_run(
        workflow_id: &str,
        workflow_type: &str,
        run_id: &str,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            workflow_run_id: Some(run_id.to_owned()),
            ..Self::bff(workflow_id, workflow_type, at)
        }
    }
}

/// One node of a new release's tree, as `release.created` lists it (parents first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedNode {
    /// Global ID.
    pub id: String,
    /// The parent's global ID (`null` for the release).
    pub parent_id: Option<String>,
    /// Kind.
    pub kind: Kind,
    /// Key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Position among its siblings, from 0.
    pub position: u32,
    /// Version (bundles and apps).
    pub version: Option<String>,
    /// Region (clusters).
    pub region: Option<String>,
}

impl CreatedNode {
    /// One per node of `tree`, parents first, each with its position and parent.
    pub fn all(tree: &Node) -> Vec<Self> {
        fn visit(node: &Node, parent: Option<&str>, position: u32, out: &mut Vec<CreatedNode>) {
            let kind = EntityId::parse(&node.id).map_or(Kind::App, |id| id.kind());
            out.push(CreatedNode {
                id: node.id.clone(),
                parent_id: parent.map(str::to_owned),
                kind,
                key: node.key.clone(),
                name: node.name.clone(),
                position,
                version: node.version.clone(),
                region: node.region.clone(),
            });
            for (i, child) in node.children().enumerate() {
                visit(
                    child,
                    Some(&node.id),
                    u32::try_from(i).unwrap_or(u32::MAX),
                    out,
                );
            }
        }
        let mut out = Vec::new();
        visit(tree, None, 0, &mut out);
        out
    }
}

/// `release.created`: a release, its whole tree, and its start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseCreated {
    /// The release's global ID.
    pub id: String,
    /// Key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// The workflow rolling it out.
    pub workflow_id: Option<String>,
    /// When it started.
    pub at: DateTime<Utc>,
    /// Every node, parents first.
    pub nodes: Vec<CreatedNode>,
}

/// `release.status_changed` and `release.{wave,cluster,bundle,app}.status_changed`: a node's
/// new status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatusChanged {
    /// The node's global ID.
    pub id: String,
    /// Its release's global ID.
    pub release_id: String,
    /// Its kind (decides the event type).
    pub kind: Kind,
    /// The new status.
    pub status: RolloutStatus,
    /// When it changed.
    pub at: DateTime<Utc>,
    /// Why it failed.
    pub message: Option<String>,
}

impl EventPayload for NodeStatusChanged {
    fn event_type(&self) -> &'static str {
        match self.kind {
            Kind::Release => "release.status_changed",
            Kind::Wave => "release.wave.status_changed",
            Kind::Cluster => "release.cluster.status_changed",
            Kind::Bundle => "release.bundle.status_changed",
            Kind::App => "release.app.status_changed",
        }
    }
}

/// `organization.bootstrap.initiated`: a start request, as accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapInitiated {
    /// The new organization.
    pub organization_id: Uuid,
    /// Display name.
    pub name: String,
    /// Kind.
    #[serde(rename = "type")]
    pub org_type: OrganizationType,
    /// Subdomain.
    pub slug: String,
    /// `{slug}.{BASE_DOMAIN}`.
    pub fqdn: String,
    /// Its bootstrap workflow.
    pub workflow_id: String,
    /// Administrators to invite.
    pub admin_users: Vec<AdminUser>,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// When it was accepted.
    pub at: DateTime<Utc>,
}

/// `workflow.queue.pending`: the outbox row of a start request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuePending {
    /// The outbox row.
    pub queue_id: Uuid,
    /// The request event it belongs to.
    pub event_id: Uuid,
    /// The organization.
    pub organization_id: Uuid,
    /// The workflow to start.
    pub workflow_id: String,
    /// Its type.
    pub workflow_type: String,
    /// Its task queue.
    pub task_queue: String,
    /// Its input.
    pub input: BootstrapInput,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// The dispatcher leaves the row to the fast path until then.
    pub not_before: DateTime<Utc>,
    /// When it was queued.
    pub at: DateTime<Utc>,
}

/// `organization.bootstrap.workflow_started`: the outbox row's workflow started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowStarted {
    /// The outbox row.
    pub queue_id: Uuid,
    /// The workflow.
    pub workflow_id: String,
    /// Its run, when the server gave one.
    pub run_id: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// `workflow.queue.failed`: Temporal refused the start for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueFailed {
    /// The outbox row.
    pub queue_id: Uuid,
    /// The workflow.
    pub workflow_id: String,
    /// A fixed, readable reason.
    pub reason: String,
    /// Attempts made.
    pub attempts: i32,
    /// When.
    pub at: DateTime<Utc>,
}

/// `organization.created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationCreated {
    /// The organization.
    pub organization_id: Uuid,
    /// Display name.
    pub name: String,
    /// Kind.
    #[serde(rename = "type")]
    pub org_type: OrganizationType,
    /// Subdomain.
    pub slug: String,
    /// `{slug}.{BASE_DOMAIN}`.
    pub fqdn: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// `organization.subdomain.dns_record_created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsRecordCreated {
    /// The record's name.
    pub fqdn: String,
    /// The provider's record ID.
    pub record_id: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// `organization.subdomain.verification_failed`: one failed attempt (it is retried).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationFailed {
    /// The record's name.
    pub fqdn: String,
    /// The attempt, from 1.
    pub attempt: u32,
    /// A fixed, readable reason.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// `organization.subdomain.verified`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    /// The record's name.
    pub fqdn: String,
    /// The attempt that succeeded.
    pub attempt: u32,
    /// When.
    pub at: DateTime<Utc>,
}

/// `user.role.assigned` (aggregate: the user, see `bootstrap::invitation_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssigned {
    /// The organization.
    pub organization_id: Uuid,
    /// The user's e-mail, lower-cased.
    pub email: String,
    /// The role granted.
    pub role: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// `user.invited` (aggregate: the user).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserInvited {
    /// The invitation (one per organization and e-mail).
    pub invitation_id: Uuid,
    /// The organization.
    pub organization_id: Uuid,
    /// The e-mail, lower-cased.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// The role granted.
    pub role: String,
    /// The e-mail provider's message ID.
    pub message_id: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// `organization.bootstrap.completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapCompleted {
    /// The organization.
    pub organization_id: Uuid,
    /// When.
    pub at: DateTime<Utc>,
}

/// `organization.subdomain.dns_record_removed` (compensation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsRecordRemoved {
    /// The record's name.
    pub fqdn: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// `organization.deactivated` (compensation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationDeactivated {
    /// The organization.
    pub organization_id: Uuid,
    /// Why.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// `organization.bootstrap.failed`: the failing step and its fixed reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapFailed {
    /// The organization.
    pub organization_id: Uuid,
    /// The step that failed.
    pub step: Step,
    /// Its fixed, readable reason ([`Step::failure_reason`]); for a workflow that closed
    /// without writing its end, `STATUS: reason` as Temporal gave them.
    pub reason: String,
    /// When.
    pub at: DateTime<Utc>,
    /// Temporal's close status (`TERMINATED`, `TIMED_OUT`, …) when the BFF recorded the
    /// failure of a workflow that closed without writing its end; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_status: Option<String>,
}

/// `release.workflow_closed`: the release's workflow closed without writing its own end
/// (terminated, timed out, cancelled or failed before its last event). The BFF records it
/// when it sees the workflow closed while the projection still shows the release open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseWorkflowClosed {
    /// The release's global ID.
    pub id: String,
    /// The workflow.
    pub workflow_id: String,
    /// The run that closed.
    pub run_id: String,
    /// Temporal's close status: `TERMINATED`, `TIMED_OUT`, `CANCELED`, `FAILED` or `COMPLETED`.
    pub close_status: String,
    /// Why, when Temporal says (a termination's reason).
    pub reason: Option<String>,
    /// When Temporal closed it.
    pub at: DateTime<Utc>,
}

/// What `pauseRelease`, `resumeRelease` and `cancelRelease` ask of a release's workflow.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, async_graphql::Enum,
)]
#[serde(rename_all = "lowercase")]
pub enum ControlAction {
    /// The `pause` signal.
    Pause,
    /// The `resume` signal.
    Resume,
    /// Temporal's cancellation.
    Cancel,
}

impl ControlAction {
    /// The name stored in the outbox's `action` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Cancel => "cancel",
        }
    }

    /// Parses the outbox's `action` column.
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Pause, Self::Resume, Self::Cancel]
            .into_iter()
            .find(|a| a.as_str() == raw)
    }
}

/// `release.paused`, `release.resumed` and `release.cancel_requested`: a user asked, through
/// the BFF, to pause, resume or cancel a release (who and under which request ID is in the
/// metadata). The workflow's own status events follow once it acts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseControlled {
    /// The release's global ID.
    pub id: String,
    /// Its workflow.
    pub workflow_id: String,
    /// What was asked (also decides the event type).
    pub action: ControlAction,
    /// Why (a cancellation's reason), when given.
    pub reason: Option<String>,
    /// The outbox row that delivers it to Temporal.
    pub queue_id: Uuid,
    /// When it was asked.
    pub at: DateTime<Utc>,
}

impl EventPayload for ReleaseControlled {
    fn event_type(&self) -> &'static str {
        match self.action {
            ControlAction::Pause => "release.paused",
            ControlAction::Resume => "release.resumed",
            ControlAction::Cancel => "release.cancel_requested",
        }
    }
}

/// `workflow.queue.control_pending`: the outbox row that delivers a control action (a signal
/// or a cancellation) to a running workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlPending {
    /// The outbox row.
    pub queue_id: Uuid,
    /// The request event it belongs to.
    pub event_id: Uuid,
    /// The release.
    pub release_id: String,
    /// The workflow to deliver it to.
    pub workflow_id: String,
    /// What to deliver.
    pub action: ControlAction,
    /// A cancellation's reason.
    pub reason: Option<String>,
    /// The dispatcher leaves the row to the fast path until then.
    pub not_before: DateTime<Utc>,
    /// When it was queued.
    pub at: DateTime<Utc>,
}

/// `workflow.queue.delivered`: a control action reached its workflow; the outbox row is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlDelivered {
    /// The outbox row.
    pub queue_id: Uuid,
    /// The workflow.
    pub workflow_id: String,
    /// When.
    pub at: DateTime<Utc>,
}

event_type! {
    ControlPending => "workflow.queue.control_pending",
    ControlDelivered => "workflow.queue.delivered",
    ReleaseCreated => "release.created",
    ReleaseWorkflowClosed => "release.workflow_closed",
    BootstrapInitiated => "organization.bootstrap.initiated",
    QueuePending => "workflow.queue.pending",
    WorkflowStarted => "organization.bootstrap.workflow_started",
    QueueFailed => "workflow.queue.failed",
    OrganizationCreated => "organization.created",
    DnsRecordCreated => "organization.subdomain.dns_record_created",
    VerificationFailed => "organization.subdomain.verification_failed",
    Verified => "organization.subdomain.verified",
    RoleAssigned => "user.role.assigned",
    UserInvited => "user.invited",
    BootstrapCompleted => "organization.bootstrap.completed",
    DnsRecordRemoved => "organization.subdomain.dns_record_removed",
    OrganizationDeactivated => "organization.deactivated",
    BootstrapFailed => "organization.bootstrap.failed",
}

/// Every event type and the payload type (by name) that defines its `event_data`.
pub const EVENT_TYPES: &[(&str, &str)] = &[
    ("release.created", "ReleaseCreated"),
    ("release.status_changed", "NodeStatusChanged"),
    ("release.wave.status_changed", "NodeStatusChanged"),
    ("release.cluster.status_changed", "NodeStatusChanged"),
    ("release.bundle.status_changed", "NodeStatusChanged"),
    ("release.app.status_changed", "NodeStatusChanged"),
    ("release.workflow_closed", "ReleaseWorkflowClosed"),
    ("release.paused", "ReleaseControlled"),
    ("release.resumed", "ReleaseControlled"),
    ("release.cancel_requested", "ReleaseControlled"),
    ("workflow.queue.control_pending", "ControlPending"),
    ("workflow.queue.delivered", "ControlDelivered"),
    ("organization.bootstrap.initiated", "BootstrapInitiated"),
    ("workflow.queue.pending", "QueuePending"),
    ("organization.bootstrap.workflow_started", "WorkflowStarted"),
    ("workflow.queue.failed", "QueueFailed"),
    ("organization.created", "OrganizationCreated"),
    (
        "organization.subdomain.dns_record_created",
        "DnsRecordCreated",
    ),
    (
        "organization.subdomain.verification_failed",
        "VerificationFailed",
    ),
    ("organization.subdomain.verified", "Verified"),
    ("user.role.assigned", "RoleAssigned"),
    ("user.invited", "UserInvited"),
    ("organization.bootstrap.completed", "BootstrapCompleted"),
    (
        "organization.subdomain.dns_record_removed",
        "DnsRecordRemoved",
    ),
    ("organization.deactivated", "OrganizationDeactivated"),
    ("organization.bootstrap.failed", "BootstrapFailed"),
];
