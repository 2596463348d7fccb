//! The onboarding part of the GraphQL schema: `startOrganizationBootstrap`, `organization`,
//! `organizations` and the bootstrap status.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_graphql::{
    Context, ErrorExtensions, ID, InputObject, Json, Object, ResultExt, SimpleObject,
    connection::{Connection, Edge},
    dataloader::{DataLoader, Loader},
};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    request::{RawAdmin, RawRequest},
    start::{BootstrapRequestStatus, BootstrapStarter},
    steps::{self, BootstrapState, BootstrapStep},
    store::{
        self, BootstrapDetails, OrganizationRow, OrganizationStatus, QueueStatus, SubdomainStatus,
    },
};
use crate::{
    auth::{RequirePermission, graphql::ContextExt, permissions},
    contracts::bootstrap::{OrganizationType, Step, workflow_id},
    error::ApiError,
    graphql::{
        connection::{
            ConnectionTotal, DEFAULT_PAGE, bad_cursor, check_page_size, decode_cursor,
            decode_keyset, encode_cursor, encode_keyset, page_complexity,
        },
        context::RequestId,
    },
    metrics::RequestStats,
    temporal::{TemporalHandle, WorkflowSummary, describe_workflow},
};

/// How long a status read waits for Temporal's describe before leaving `workflow` out.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Key of a bootstrap's details: the organization and its workflow ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DetailsKey(Uuid, String);

/// Key of a Temporal describe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkflowKey(String);

/// Loads organizations, bootstrap details and workflow descriptions in batches.
pub struct OnboardingLoader {
    db: PgPool,
    temporal: TemporalHandle,
    stats: Arc<RequestStats>,
}

impl OnboardingLoader {
    /// A per-request loader.
    pub fn new(db: PgPool, temporal: TemporalHandle, stats: Arc<RequestStats>) -> DataLoader<Self> {
        DataLoader::new(
            Self {
                db,
                temporal,
                stats,
            },
            tokio::spawn,
        )
        .delay(Duration::ZERO)
    }
}

impl Loader<Uuid> for OnboardingLoader {
    type Value = OrganizationRow;
    type Error = Arc<sqlx::Error>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, OrganizationRow>, Self::Error> {
        let rows = store::organizations(&self.db, &self.stats, keys)
            .await
            .map_err(Arc::new)?;
        Ok(rows.into_iter().map(|row| (row.id, row)).collect())
    }
}

impl Loader<DetailsKey> for OnboardingLoader {
    type Value = BootstrapDetails;
    type Error = Arc<sqlx::Error>;

    async fn load(
        &self,
        keys: &[DetailsKey],
    ) -> Result<HashMap<DetailsKey, BootstrapDetails>, Self::Error> {
        let pairs: Vec<(Uuid, String)> = keys.iter().map(|k| (k.0, k.1.clone())).collect();
        let mut details = store::details(&self.db, &self.stats, &pairs)
            .await
            .map_err(Arc::new)?;
        Ok(keys
            .iter()
            .filter_map(|key| details.remove(&key.0).map(|d| (key.clone(), d)))
            .collect())
    }
}

impl Loader<WorkflowKey> for OnboardingLoader {
    type Value = WorkflowSummary;
    type Error = Arc<sqlx::Error>;

    async fn load(
        &self,
        keys: &[WorkflowKey],
    ) -> Result<HashMap<WorkflowKey, WorkflowSummary>, Self::Error> {
        // Absent, not an error, when Temporal is down or slow.
        let Ok(Ok(client)) = tokio::time::timeout(DESCRIBE_TIMEOUT, self.temporal.client()).await
        else {
            return Ok(HashMap::new());
        };
        let described = futures::future::join_all(keys.iter().map(|key| {
            let client = client.clone();
            async move {
                let _slot = self.stats.temporal_query().await;
                let summary =
                    tokio::time::timeout(DESCRIBE_TIMEOUT, describe_workflow(&client, &key.0))
                        .await;
                (key.clone(), summary)
            }
        }))
        .await;
        Ok(described
            .into_iter()
            .filter_map(|(key, summary)| match summary {
                Ok(Ok(summary)) => Some((key, summary)),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "describe failed; workflow left out");
                    None
                }
                Err(_) => {
                    tracing::warn!("describe timed out; workflow left out");
                    None
                }
            })
            .collect())
    }
}

fn loader_error(error: Arc<sqlx::Error>) -> ApiError {
    ApiError::internal(anyhow::anyhow!(error.to_string()))
}

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
    /// `RUNNING`, `COMPLETED`, `FAILED`, …
    pub status: String,
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
            let step = steps::failed_step(&event.event_data);
            return Some(BootstrapFailure {
                step: step.map_or("UNKNOWN", Step::as_str).to_owned(),
                reason: step
                    .map_or("the bootstrap failed", Step::failure_reason)
                    .to_owned(),
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
    async fn events(
        &self,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, DomainEvent, ConnectionTotal>> {
        check_page_size("first", first)?;
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
                    data: Json(event.event_data.clone()),
                    metadata: Json(event.event_metadata.clone()),
                    created_at: event.created_at,
                },
            ));
        }
        Ok(connection)
    }
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

/// Onboarding queries.
#[derive(Default)]
pub struct OnboardingQuery;

#[Object]
impl OnboardingQuery {
    /// One organization by global ID or bare UUID; `null` if it does not exist or is not the
    /// caller's (without `organization.view_all`).
    async fn organization(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Organization>> {
        let id = parse_organization_id(&id)?;
        visible_organization(ctx, id).await
    }

    /// Organizations the caller may see (their own, or all with `organization.view_all`),
    /// oldest first (at most 100 per page, 20 by default).
    #[graphql(complexity = "page_complexity(first, None, child_complexity)")]
    async fn organizations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Organization, ConnectionTotal>> {
        let principal = ctx.principal()?;
        let only = if principal.has(permissions::VIEW_ALL_ORGANIZATIONS) {
            None
        } else {
            // Without an organization of their own, a caller sees none.
            Some(principal.org_id.unwrap_or(Uuid::nil()))
        };
        check_page_size("first", first)?;
        let first = first.unwrap_or(DEFAULT_PAGE);
        let after = match after {
            Some(cursor) => {
                let (at, id) = decode_keyset("after", &cursor)?;
                let id = Uuid::parse_str(&id).map_err(|_| bad_cursor("after").extend())?;
                Some((at, id))
            }
            None => None,
        };
        let stats = ctx.data::<Arc<RequestStats>>()?;
        let (rows, total) = store::organization_page(
            ctx.data::<PgPool>()?,
            stats,
            only,
            after,
            i64::from(first) + 1,
        )
        .await
        .map_err(ApiError::from)
        .extend()?;
        let limit = usize::try_from(first).unwrap_or(0);
        let has_next = rows.len() > limit;
        let mut connection = Connection::with_additional_fields(
            after.is_some(),
            has_next,
            ConnectionTotal { total_count: total },
        );
        for row in rows.into_iter().take(limit) {
            let cursor = encode_keyset(row.created_at, &row.id.to_string());
            connection
                .edges
                .push(Edge::new(cursor, Organization(Box::new(row))));
        }
        Ok(connection)
    }
}

/// An administrator to invite.
#[derive(InputObject)]
pub struct AdminUserInput {
    /// E-mail address (distinct within the request).
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Role (default `provider_admin`).
    pub role: Option<String>,
}

/// What to onboard.
#[derive(InputObject)]
pub struct StartOrganizationBootstrapInput {
    /// Display name, 1–200 characters.
    pub name: String,
    /// Subdomain: lowercase letters, digits and hyphens, 3–63, not reserved.
    pub subdomain: String,
    /// Kind.
    #[graphql(name = "type")]
    pub org_type: OrganizationType,
    /// 1–20 administrators with distinct e-mails.
    pub admin_users: Vec<AdminUserInput>,
    /// Repeating a request with the same key returns the first one's result.
    pub idempotency_key: Option<String>,
}

/// The answer to a start.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct StartOrganizationBootstrapPayload {
    /// The organization's UUID.
    pub organization_id: ID,
    /// Its bootstrap workflow ID, `org-bootstrap-{organizationId}`.
    pub workflow_id: String,
    /// `STARTED`, `QUEUED` (Temporal unreachable; it will start) or `ALREADY_EXISTS`.
    pub status: BootstrapRequestStatus,
    #[graphql(skip)]
    organization: Uuid,
}

#[async_graphql::ComplexObject]
impl StartOrganizationBootstrapPayload {
    /// The organization and its onboarding status.
    async fn organization(&self, ctx: &Context<'_>) -> async_graphql::Result<Organization> {
        visible_organization(ctx, self.organization)
            .await?
            .ok_or_else(|| ApiError::NotFound("organization not found".into()))
            .extend()
    }
}

/// Onboarding mutations.
#[derive(Default)]
pub struct OnboardingMutation;

#[Object]
impl OnboardingMutation {
    /// Starts onboarding an organization (needs `organization.create_root`). Validated before
    /// anything is written; never lost once answered; idempotent by `idempotencyKey` and by
    /// subdomain.
    #[graphql(guard = "RequirePermission(permissions::CREATE_ROOT_ORGANIZATION)")]
    async fn start_organization_bootstrap(
        &self,
        ctx: &Context<'_>,
        input: StartOrganizationBootstrapInput,
    ) -> async_graphql::Result<StartOrganizationBootstrapPayload> {
        let principal = ctx.principal()?;
        let request = RawRequest {
            name: input.name,
            subdomain: input.subdomain,
            org_type: input.org_type.as_str().to_owned(),
            admin_users: input
                .admin_users
                .into_iter()
                .map(|a| RawAdmin {
                    email: a.email,
                    first_name: a.first_name,
                    last_name: a.last_name,
                    role: a.role,
                })
                .collect(),
            idempotency_key: input.idempotency_key,
        }
        .parse()
        .extend()?;
        let correlation = ctx
            .data_opt::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let outcome = ctx
            .data::<BootstrapStarter>()?
            .start(principal, request, &correlation)
            .await
            .extend()?;
        Ok(StartOrganizationBootstrapPayload {
            organization_id: ID(outcome.organization_id.to_string()),
            workflow_id: outcome.workflow_id,
            status: outcome.status,
            organization: outcome.organization_id,
        })
    }
}
