//! The onboarding GraphQL objects: an organization, its bootstrap status with steps,
//! invitations, workflow, failure and audit trail.

use async_graphql::{
    Context, ErrorExtensions, ID, Json, Object, ResultExt, SimpleObject,
    connection::{Connection, Edge},
    dataloader::DataLoader,
};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use uuid::Uuid;

use super::loader::{DetailsKey, OnboardingLoader, WorkflowKey, loader_error};
use crate::{
    auth::graphql::ContextExt,
    contracts::bootstrap::{OrganizationType, Step, workflow_id},
    error::ApiError,
    graphql::connection::{
        ConnectionTotal, DEFAULT_PAGE, bad_cursor, check_page_size, decode_cursor, encode_cursor,
        page_complexity,
    },
    onboarding::{
        closed::BootstrapCloses,
        steps::{self, BootstrapState, BootstrapStep},
        store::{
            BootstrapDetails, OrganizationRow, OrganizationStatus, QueueStatus, SubdomainStatus,
        },
    },
    temporal::WorkflowStatus,
};

/// An organization and its onboarding (boxed: it is much larger than the other `Node`s).
pub struct Organization(pub Box<OrganizationRow>);

#[Object]
impl Organization {
    /// Global ID, `organization:{uuid}`.
    pub async fn id(&self, _ctx: &Context<'_>) -> async_graphql::Result<ID> {
        Ok(ID(format!("organization:{}", self.0.id)))
    }

    /// Display name.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Subdomain.
    async fn slug(&self) -> &str {
        &self.0.slug
    }

    /// Kind.
    #[graphql(name = "type")]
    async fn org_type(&self) -> Option<OrganizationType> {
        Some(self.0.org_type)
    }

    /// Status.
    async fn status(&self) -> OrganizationStatus {
        self.0.status
    }

    /// `{slug}.{BASE_DOMAIN}`.
    async fn fqdn(&self) -> &str {
        &self.0.fqdn
    }

    /// Where its subdomain is.
    async fn subdomain_status(&self) -> SubdomainStatus {
        self.0.subdomain_status
    }

    /// When it was requested.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// Its onboarding.
    async fn bootstrap(&self, ctx: &Context<'_>) -> async_graphql::Result<BootstrapStatus> {
        let workflow_id = self
            .0
            .workflow_id
            .clone()
            .unwrap_or_else(|| workflow_id(self.0.id));
        let details = ctx
            .data::<DataLoader<OnboardingLoader>>()?
            .load_one(DetailsKey(self.0.id, workflow_id.clone()))
            .await
            .map_err(loader_error)
            .extend()?
            .unwrap_or_default();
        Ok(BootstrapStatus {
            org: (*self.0).clone(),
            workflow_id,
            details,
        })
    }
}

/// A bootstrap's progress.
pub struct BootstrapStatus {
    org: OrganizationRow,
    workflow_id: String,
    details: BootstrapDetails,
}

/// An invitation sent to an administrator.
#[derive(SimpleObject)]
pub struct Invitation {
    /// E-mail.
    pub email: String,
    /// Role.
    pub role: Option<String>,
    /// `sent`, `accepted`, …
    pub status: String,
}

/// The workflow as Temporal describes it.
#[derive(SimpleObject)]
pub struct WorkflowExecution {
    /// Workflow ID.
    pub workflow_id: String,
    /// Run ID.
    pub run_id: Option<String>,
    /// Temporal's status of the workflow.
    pub status: WorkflowStatus,
    /// Started.
    pub start_time: Option<DateTime<Utc>>,
    /// Closed.
    pub close_time: Option<DateTime<Utc>>,
    /// The activity being retried, if any.
    pub pending_activity: Option<String>,
    /// Its attempt.
    pub pending_activity_attempt: Option<i32>,
    /// Its last failure.
    pub pending_activity_last_failure: Option<String>,
}

/// A fixed reason for a pending activity's earlier failure (the real message is logged).
fn last_failure_reason(activity_type: &str) -> String {
    match activity_type {
        "verify_dns" => "the DNS record did not resolve; Temporal retries the check".to_owned(),
        _ => "the last attempt failed; Temporal retries it".to_owned(),
    }
}

/// Why a bootstrap failed.
#[derive(SimpleObject)]
pub struct BootstrapFailure {
    /// The failing step (or `START` when the workflow could not be started).
    pub step: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Option<DateTime<Utc>>,
}

/// A stored domain event.
#[derive(SimpleObject)]
pub struct DomainEvent {
    /// Event ID.
    pub id: ID,
    /// Type, e.g. `organization.created`.
    pub event_type: String,
    /// Payload.
    pub data: Json<serde_json::Value>,
    /// Provenance (workflow, activity, user, correlation ID).
    pub metadata: Json<serde_json::Value>,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

impl BootstrapStatus {
    fn current_state(&self) -> BootstrapState {
        steps::state(self.org.status, self.details.outbox.as_ref())
    }

    fn admins(&self) -> usize {
        let events = &self.details.events;
        let from_request = events
            .iter()
            .find(|e| e.event_type == "organization.bootstrap.initiated")
            .and_then(|e| e.event_data["adminUsers"].as_array().map(Vec::len));
        from_request.unwrap_or_else(|| {
            events
                .iter()
                .filter(|e| e.event_type == "user.role.assigned")
                .count()
                .max(1)
        })
    }
}

#[Object]
impl BootstrapStatus {
    /// Overall state, from the events and the outbox: it changes the moment the step that
    /// decides it is recorded.
    async fn state(&self) -> BootstrapState {
        self.current_state()
    }

    /// The steps, in order, derived from the events.
    async fn steps(&self) -> Vec<BootstrapStep> {
        steps::steps(&self.details.events, self.admins(), self.current_state())
    }

    /// Invitations sent.
    async fn invitations(&self) -> Vec<Invitation> {
        self.details
            .invitations
            .iter()
            .map(|i| Invitation {
                email: i.email.clone(),
                role: i.role.clone(),
                status: i.status.clone(),
            })
            .collect()
    }

    /// The workflow as Temporal describes it; absent when Temporal does not answer. This is
    /// Temporal's own view and may lag the events by a moment: `state` can already say
    /// `COMPLETED` or `FAILED` while `workflow.status` still says `RUNNING`, until the workflow
    /// has closed.
    async fn workflow(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<WorkflowExecution>> {
        if self.current_state() == BootstrapState::Queued {
            return Ok(None);
        }
        let summary = ctx
            .data::<DataLoader<OnboardingLoader>>()?
            .load_one(WorkflowKey(self.workflow_id.clone()))
            .await
            .map_err(loader_error)
            .extend()?;
        if summary.as_ref().is_some_and(|s| s.status.is_closed())
            && self.current_state() == BootstrapState::Running
        {
            // Closed, yet the events say it runs: it ended without writing its end.
            ctx.data::<Arc<BootstrapCloses>>()?
                .suspect(self.org.id, &self.workflow_id);
        }
        Ok(summary.map(|s| {
            let pending = s.pending_activity;
            WorkflowExecution {
                workflow_id: self.workflow_id.clone(),
                run_id: Some(s.run_id),
                status: s.status,
                start_time: s.start_time,
                close_time: s.close_time,
                pending_activity_attempt: pending.as_ref().map(|p| p.attempt),
                pending_activity_last_failure: pending
                    .as_ref()
                    .filter(|p| p.failed_before)
                    .map(|p| last_failure_reason(&p.activity_type)),
                pending_activity: pending.map(|p| p.activity_type),
            }
        }))
    }

    /// Why it failed, once it has.
    async fn failure(&self) -> Option<BootstrapFailure> {
        let failed = self
            .details
            .events
            .iter()
            .rev()
            .find(|e| e.event_type == "organization.bootstrap.failed");
        if let Some(event) = failed {
            // The reason is the step's fixed text: the event's own may hold raw internals.
            // Only a close the BFF recorded itself carries Temporal's status and reason.
            let step = steps::failed_step(&event.event_data);
            let recorded_close = event.event_metadata["source"] == "temporal-bff"
                && event.event_data["closeStatus"].is_string();
            let reason = match event.event_data["reason"].as_str() {
                Some(reason) if recorded_close => reason,
                _ => step.map_or("the bootstrap failed", Step::failure_reason),
            };
            return Some(BootstrapFailure {
                step: step.map_or("UNKNOWN", Step::as_str).to_owned(),
                reason: reason.to_owned(),
                at: Some(event.created_at),
            });
        }
        let outbox = self
            .details
            .outbox
            .as_ref()
            .filter(|o| o.status == QueueStatus::Failed)?;
        Some(BootstrapFailure {
            step: "START".into(),
            reason: outbox.last_error.clone().unwrap_or_default(),
            at: outbox.completed_at,
        })
    }

    /// The audit trail of this bootstrap, oldest first (at most 100 per page, 20 by default).
    #[graphql(complexity = "page_complexity(first, None, child_complexity)")]
    ///
    /// `data` and `metadata` hold the fields the audit trail shows for each event type (see
    /// `AUDIT_FIELDS`); a caller with `organization.view_all` gets them whole, as stored.
    async fn events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, DomainEvent, ConnectionTotal>> {
        check_page_size("first", first)?;
        let raw = ctx
            .principal()?
            .has(crate::auth::permissions::VIEW_ALL_ORGANIZATIONS);
        let first = usize::try_from(first.unwrap_or(DEFAULT_PAGE)).unwrap_or(0);
        let start = match after {
            Some(cursor) => decode_index(&cursor)?,
            None => 0,
        };
        let all = &self.details.events;
        let page: Vec<_> = all.iter().enumerate().skip(start).take(first).collect();
        let mut connection = Connection::with_additional_fields(
            start > 0,
            start + page.len() < all.len(),
            ConnectionTotal {
                total_count: i64::try_from(all.len()).unwrap_or(i64::MAX),
            },
        );
        for (index, event) in page {
            connection.edges.push(Edge::new(
                encode_cursor(&format!("event|{index}")),
                DomainEvent {
                    id: ID(event.id.to_string()),
                    event_type: event.event_type.clone(),
                    data: Json(audit_view(&event.event_type, &event.event_data, raw)),
                    metadata: Json(audit_view(METADATA, &event.event_metadata, raw)),
                    created_at: event.created_at,
                },
            ));
        }
        Ok(connection)
    }
}

/// The key [`AUDIT_FIELDS`] lists event metadata under.
const METADATA: &str = "(metadata)";

/// What the audit trail shows of each event type's `event_data` (and of every event's
/// metadata) to members of the organization: what happened, to what, when. Left out: e-mail
/// addresses, idempotency keys, workflow inputs, run IDs, task queues, raw provider or worker
/// errors, and in the metadata the initiator's user ID, trace context and correlation IDs.
/// An event type not listed shows nothing.
const AUDIT_FIELDS: &[(&str, &[&str])] = &[
    (
        "organization.bootstrap.initiated",
        &[
            "organizationId",
            "name",
            "type",
            "slug",
            "fqdn",
            "workflowId",
            "at",
        ],
    ),
    (
        "workflow.queue.pending",
        &["queueId", "organizationId", "workflowId", "at"],
    ),
    (
        "organization.bootstrap.workflow_started",
        &["queueId", "workflowId", "at"],
    ),
    (
        "workflow.queue.failed",
        &["queueId", "workflowId", "attempts", "at"],
    ),
    (
        "organization.created",
        &["organizationId", "name", "type", "slug", "fqdn", "at"],
    ),
    ("organization.subdomain.dns_record_created", &["fqdn", "at"]),
    (
        "organization.subdomain.verification_failed",
        &["fqdn", "attempt", "at"],
    ),
    (
        "organization.subdomain.verified",
        &["fqdn", "attempt", "at"],
    ),
    ("user.role.assigned", &["organizationId", "role", "at"]),
    (
        "user.invited",
        &["invitationId", "organizationId", "role", "at"],
    ),
    (
        "organization.bootstrap.completed",
        &["organizationId", "at"],
    ),
    ("organization.subdomain.dns_record_removed", &["fqdn", "at"]),
    ("organization.deactivated", &["organizationId", "at"]),
    (
        "organization.bootstrap.failed",
        &["organizationId", "step", "at", "closeStatus"],
    ),
    (METADATA, &["source"]),
];

/// `value` as the audit trail shows it for `kind` (an event type, or [`METADATA`]): whole
/// when `raw`, else only the fields [`AUDIT_FIELDS`] lists for it.
fn audit_view(kind: &str, value: &serde_json::Value, raw: bool) -> serde_json::Value {
    if raw {
        return value.clone();
    }
    let allowed = AUDIT_FIELDS
        .iter()
        .find(|(listed, _)| *listed == kind)
        .map_or(&[][..], |(_, fields)| *fields);
    let shown = value
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .filter(|(name, _)| allowed.contains(&name.as_str()))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect()
        })
        .unwrap_or_default();
    serde_json::Value::Object(shown)
}

/// The index of the event after the one `cursor` points at.
fn decode_index(cursor: &str) -> async_graphql::Result<usize> {
    decode_cursor("after", cursor)?
        .strip_prefix("event|")
        .and_then(|index| index.parse::<usize>().ok())
        // A crafted index at usize::MAX must not overflow.
        .and_then(|index| index.checked_add(1))
        .ok_or_else(|| bad_cursor("after").extend())
}

/// Parses `organization:{uuid}` or a bare UUID.
pub fn parse_organization_id(id: &ID) -> async_graphql::Result<Uuid> {
    let raw = id.as_str();
    Uuid::parse_str(raw.strip_prefix("organization:").unwrap_or(raw))
        .map_err(|_| ApiError::bad_input("id", format!("malformed organization id {raw:?}")))
        .extend()
}

/// Loads an organization the caller may see (`None` otherwise: another organization's data is
/// never shown, nor whether it exists).
pub async fn visible_organization(
    ctx: &Context<'_>,
    id: Uuid,
) -> async_graphql::Result<Option<Organization>> {
    if !ctx.principal()?.can_view_organization(id) {
        return Ok(None);
    }
    let row = ctx
        .data::<DataLoader<OnboardingLoader>>()?
        .load_one(id)
        .await
        .map_err(loader_error)
        .extend()?;
    Ok(row.map(|row| Organization(Box::new(row))))
}
