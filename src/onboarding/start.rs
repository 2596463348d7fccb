//! The one write: starting an organization bootstrap, never lost.
//!
//! In one transaction the `organization.bootstrap.initiated` event and a `workflow.queue.pending`
//! outbox event are appended (triggers create the organization and the outbox row); unique
//! indexes turn a repeat (same idempotency key, or the subdomain of an organization that still
//! exists) into `ALREADY_EXISTS`. Then the workflow is started at once (fast path); if Temporal
//! does not answer, the request is `QUEUED` and the [`super::dispatcher`] starts it later.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    model::{AdminUser, BootstrapInput},
    request::BootstrapRequest,
    workflow::workflow_id,
};
use crate::{
    Config,
    auth::Principal,
    db,
    error::ApiError,
    events::{self, EventMetadata, NewEvent},
    temporal::{TemporalError, TemporalHandle, start_workflow_json},
};

/// Why dispatching a queued start did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Temporal did not start the workflow.
    #[error(transparent)]
    Start(#[from] TemporalError),
    /// The workflow started, but recording that failed: retry the recording, not the start.
    #[error("started, but recording it failed: {0}")]
    Record(#[source] sqlx::Error),
}

/// How long the fast path waits for Temporal before answering `QUEUED`.
const FAST_PATH_TIMEOUT: Duration = Duration::from_millis(1_500);
/// The dispatcher leaves a new row to the fast path for this long.
const FAST_PATH_GRACE: chrono::Duration = chrono::Duration::seconds(10);

/// What became of a start request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum BootstrapRequestStatus {
    /// The workflow was started.
    Started,
    /// Accepted; Temporal is unreachable, so it will be started when it is back.
    Queued,
    /// A repeat: the existing organization and workflow are returned.
    AlreadyExists,
}

/// The answer to a start request.
#[derive(Debug, Clone)]
pub struct StartOutcome {
    /// The organization.
    pub organization_id: Uuid,
    /// Its bootstrap workflow ID.
    pub workflow_id: String,
    /// What happened.
    pub status: BootstrapRequestStatus,
}

/// A row of the outbox, as the dispatcher and the fast path start it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueuedStart {
    /// Outbox row ID.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Option<Uuid>,
    /// Workflow ID.
    pub workflow_id: String,
    /// Workflow type.
    pub workflow_type: String,
    /// Task queue.
    pub task_queue: String,
    /// Workflow input.
    pub workflow_input: Value,
    /// Dispatch attempts so far.
    pub attempts: i32,
}

/// Starts bootstraps; shared by GraphQL and the REST route.
#[derive(Clone)]
pub struct BootstrapStarter {
    db: PgPool,
    temporal: TemporalHandle,
    config: Arc<Config>,
    wake_dispatcher: Arc<Notify>,
}

impl BootstrapStarter {
    /// A starter that nudges the dispatcher through `wake_dispatcher` when it queues.
    pub fn new(
        db: PgPool,
        temporal: TemporalHandle,
        config: Arc<Config>,
        wake_dispatcher: Arc<Notify>,
    ) -> Self {
        Self {
            db,
            temporal,
            config,
            wake_dispatcher,
        }
    }

    /// Records the request and starts its workflow (or queues it).
    #[tracing::instrument(skip_all, fields(org.subdomain = %request.subdomain.as_str()))]
    pub async fn start(
        &self,
        principal: &Principal,
        request: BootstrapRequest,
        correlation_id: &str,
    ) -> Result<StartOutcome, ApiError> {
        let organization_id = Uuid::new_v4();
        let workflow_id = workflow_id(organization_id);
        let queued = QueuedStart {
            id: Uuid::new_v4(),
            organization_id: Some(organization_id),
            workflow_id: workflow_id.clone(),
            workflow_type: self.config.bootstrap_workflow_type.clone(),
            task_queue: self.config.bootstrap_task_queue.clone(),
            workflow_input: workflow_input(organization_id, &request),
            attempts: 0,
        };
        let caller = Uuid::parse_str(&principal.user_id).ok();
        let events = self.request_events(principal, &request, &queued, correlation_id);

        // One multi-row INSERT is one atomic statement: both events (and the rows their triggers
        // write) or neither, without a BEGIN/COMMIT round trip.
        match events::append(&self.db, &events).await {
            Ok(_) => {}
            Err(error) if db::is_unique_violation(&error) => {
                return self
                    .existing(caller, &request, &queued.workflow_input)
                    .await;
            }
            Err(error) => return Err(error.into()),
        }

        let started = tokio::time::timeout(FAST_PATH_TIMEOUT, self.start_workflow(&queued)).await;
        let status = match started {
            Ok(Ok(run_id)) => {
                // Recording the start does not hold up the answer; if it fails, the dispatcher
                // finds the row still pending after the grace period, and its start of the
                // same workflow ID returns this run, which it then records.
                let starter = self.clone();
                tokio::spawn(async move {
                    if let Err(error) = starter.record_started(&queued, run_id).await {
                        tracing::warn!(%error, "recording the start failed; the dispatcher will");
                    }
                });
                BootstrapRequestStatus::Started
            }
            outcome => {
                let error = match outcome {
                    Ok(Err(error)) => error,
                    _ => TemporalError::Timeout,
                };
                tracing::warn!(%error, temporal.workflow_id = %workflow_id, "bootstrap queued");
                self.schedule_retry(&queued, error.reason()).await?;
                self.wake_dispatcher.notify_one();
                BootstrapRequestStatus::Queued
            }
        };
        Ok(StartOutcome {
            organization_id,
            workflow_id,
            status,
        })
    }

    fn request_events(
        &self,
        principal: &Principal,
        request: &BootstrapRequest,
        queued: &QueuedStart,
        correlation_id: &str,
    ) -> Vec<NewEvent> {
        let now = Utc::now();
        let organization_id = queued.organization_id.unwrap_or_default();
        let metadata = EventMetadata {
            workflow_id: Some(queued.workflow_id.clone()),
            workflow_run_id: None,
            workflow_type: Some(queued.workflow_type.clone()),
            activity_id: None,
            timestamp: now,
            source: "temporal-bff".into(),
            user_id: Some(principal.user_id.clone()),
            correlation_id: Some(correlation_id.to_owned()),
        };
        let initiated_id = Uuid::new_v4();
        let created_by = Uuid::parse_str(&principal.user_id).ok();
        vec![
            NewEvent {
                id: initiated_id,
                event_type: "organization.bootstrap.initiated".into(),
                aggregate_type: "organization".into(),
                aggregate_id: organization_id,
                data: json!({
                    "organizationId": organization_id,
                    "name": request.name,
                    "type": request.org_type.as_str(),
                    "slug": request.subdomain.as_str(),
                    "fqdn": format!("{}.{}", request.subdomain.as_str(), self.config.base_domain),
                    "workflowId": queued.workflow_id,
                    "adminUsers": queued.workflow_input["adminUsers"],
                    "idempotencyKey": request.idempotency_key,
                    "at": now,
                }),
                metadata: metadata.clone(),
                created_at: now,
                created_by,
            },
            NewEvent {
                id: Uuid::new_v4(),
                event_type: "workflow.queue.pending".into(),
                aggregate_type: "organization".into(),
                aggregate_id: organization_id,
                data: json!({
                    "queueId": queued.id,
                    "eventId": initiated_id,
                    "organizationId": organization_id,
                    "workflowId": queued.workflow_id,
                    "workflowType": queued.workflow_type,
                    "taskQueue": queued.task_queue,
                    "input": queued.workflow_input,
                    "idempotencyKey": request.idempotency_key,
                    // Left to the fast path for a moment before the dispatcher may take it.
                    "notBefore": now + FAST_PATH_GRACE,
                    "at": now,
                }),
                metadata,
                // Strictly after the request it belongs to, so time order is causal order.
                created_at: now + chrono::Duration::microseconds(1),
                created_by,
            },
        ]
    }

    /// The organization a repeated request refers to: the caller's own request with the same
    /// idempotency key (the same body, or a conflict), or the live organization with that
    /// subdomain (the caller's, or a conflict: another caller's organization is never returned).
    async fn existing(
        &self,
        caller: Option<Uuid>,
        request: &BootstrapRequest,
        input: &Value,
    ) -> Result<StartOutcome, ApiError> {
        let found: Option<(Uuid, Option<String>, bool, bool)> = sqlx::query_as(
            "SELECT organization_id, workflow_id, true AS by_key,
                    (workflow_input - 'organizationId') = $3 AS same
               FROM workflow_queue_projection
              WHERE idempotency_key = $2 AND organization_id IS NOT NULL
                AND COALESCE(created_by, '00000000-0000-0000-0000-000000000000'::uuid)
                    = COALESCE($1, '00000000-0000-0000-0000-000000000000'::uuid)
             UNION ALL
             SELECT o.id, o.workflow_id, false,
                    q.created_by IS NOT DISTINCT FROM $1
               FROM organizations_projection o
               LEFT JOIN workflow_queue_projection q ON q.organization_id = o.id
              WHERE o.slug = $4 AND o.status NOT IN ('failed', 'deactivated')
             ORDER BY by_key DESC
             LIMIT 1",
        )
        .bind(caller)
        .bind(&request.idempotency_key)
        .bind(without_organization(input))
        .bind(request.subdomain.as_str())
        .fetch_optional(&self.db)
        .await?;
        match found {
            Some((organization_id, workflow, _, true)) => Ok(StartOutcome {
                organization_id,
                workflow_id: workflow.unwrap_or_else(|| workflow_id(organization_id)),
                status: BootstrapRequestStatus::AlreadyExists,
            }),
            Some((_, _, true, false)) => Err(ApiError::bad_input(
                "idempotencyKey",
                "this idempotency key was already used for a different request",
            )),
            Some((_, _, false, false)) => Err(ApiError::bad_input(
                "input.subdomain",
                format!(
                    "subdomain {:?} is already taken",
                    request.subdomain.as_str()
                ),
            )),
            None => Err(ApiError::internal(anyhow::anyhow!(
                "unique violation without an existing row"
            ))),
        }
    }

    /// Starts the workflow of `queued` and records that it started.
    pub async fn dispatch(&self, queued: &QueuedStart) -> Result<(), DispatchError> {
        let run_id = self.start_workflow(queued).await?;
        self.record_started(queued, run_id)
            .await
            .map_err(DispatchError::Record)
    }

    /// Starts the workflow (idempotent by workflow ID); returns the run ID.
    async fn start_workflow(&self, queued: &QueuedStart) -> Result<Option<String>, TemporalError> {
        let client = self.temporal.client().await?;
        start_workflow_json(
            &client,
            &queued.workflow_type,
            &queued.workflow_id,
            &queued.task_queue,
            &queued.workflow_input,
        )
        .await
    }

    /// Appends `organization.bootstrap.workflow_started`, which completes the outbox row.
    async fn record_started(
        &self,
        queued: &QueuedStart,
        run_id: Option<String>,
    ) -> Result<(), sqlx::Error> {
        let now = Utc::now();
        let event = NewEvent {
            // Random on purpose: a request started twice would show as two events.
            id: Uuid::new_v4(),
            event_type: "organization.bootstrap.workflow_started".into(),
            aggregate_type: "organization".into(),
            aggregate_id: queued.organization_id.unwrap_or_default(),
            data: json!({
                "queueId": queued.id,
                "workflowId": queued.workflow_id,
                "runId": run_id,
                "at": now,
            }),
            metadata: EventMetadata {
                workflow_id: Some(queued.workflow_id.clone()),
                workflow_run_id: run_id,
                workflow_type: Some(queued.workflow_type.clone()),
                timestamp: now,
                source: "temporal-bff".into(),
                ..EventMetadata::default()
            },
            created_at: now,
            created_by: None,
        };
        events::append(&self.db, &[event]).await.map(drop)
    }

    async fn schedule_retry(&self, queued: &QueuedStart, reason: &str) -> Result<(), ApiError> {
        sqlx::query(
            "UPDATE workflow_queue_projection
                SET attempts = attempts + 1, last_error = $2, next_attempt_at = now(),
                    updated_at = now()
              WHERE id = $1 AND status = 'pending'",
        )
        .bind(queued.id)
        .bind(reason)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// The database pool (for the dispatcher).
    pub fn db(&self) -> &PgPool {
        &self.db
    }
}

/// The workflow input: the `organizationBootstrapWorkflow` contract type, serialized.
fn workflow_input(organization_id: Uuid, request: &BootstrapRequest) -> Value {
    let input = BootstrapInput {
        organization_id,
        name: request.name.clone(),
        org_type: request.org_type.as_str().to_owned(),
        subdomain: request.subdomain.as_str().to_owned(),
        admin_users: request
            .admins
            .iter()
            .map(|admin| AdminUser {
                email: admin.email.as_str().to_owned(),
                first_name: admin.first_name.clone(),
                last_name: admin.last_name.clone(),
                role: admin.role.clone(),
            })
            .collect(),
    };
    serde_json::to_value(input).unwrap_or(Value::Null)
}

/// The request part of a workflow input (what two requests must share to be the same one).
fn without_organization(input: &Value) -> Value {
    let mut input = input.clone();
    if let Some(object) = input.as_object_mut() {
        object.remove("organizationId");
    }
    input
}
