//! The one write: starting an organization bootstrap, never lost.
//!
//! In one transaction the `organization.bootstrap.initiated` event and a `workflow.queue.pending`
//! outbox event are appended (triggers create the organization and the outbox row); unique
//! indexes turn a repeat (same idempotency key, or the subdomain of an organization that still
//! exists) into `ALREADY_EXISTS`. Then the workflow is started at once (fast path); if Temporal
//! does not answer, the request is `QUEUED` and the outbox's dispatcher starts it later
//! (`crate::outbox`, through this module's [`Deliver`] implementation).

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    request::BootstrapRequest,
    store::{self, Existing},
};
use crate::{
    Config,
    auth::Principal,
    contracts::bootstrap::{AdminUser, BootstrapInput, workflow_id},
    contracts::events::{BootstrapInitiated, EventMetadata, QueuePending, WorkflowStarted},
    db,
    error::ApiError,
    events::{self, NewEvent},
    outbox::{Deliver, Delivery, DeliveryError, Outbox, Queued},
    temporal::{TemporalError, TemporalHandle},
    types::TraceParent,
};

/// A workflow start, as the request queues it and the outbox delivers it.
#[derive(Debug, Clone)]
struct QueuedStart {
    /// Outbox row ID.
    id: Uuid,
    organization_id: Uuid,
    workflow_id: String,
    workflow_type: String,
    task_queue: String,
    workflow_input: Value,
    /// The W3C trace context of the request that queued it.
    traceparent: Option<String>,
}

/// How long the fast path waits for Temporal before answering `QUEUED`.
const FAST_PATH_TIMEOUT: Duration = Duration::from_millis(1_500);
/// After a start failed to reach Temporal (the fast path, or the dispatcher's retry), requests
/// skip the fast path for this long and are queued at once (the dispatcher, woken, tries
/// straight away): during an outage a start costs milliseconds, not [`FAST_PATH_TIMEOUT`].
const FAST_PATH_PAUSE: Duration = Duration::from_secs(5);
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

/// Starts bootstraps; shared by GraphQL and the REST route.
#[derive(Clone)]
pub struct BootstrapStarter {
    db: PgPool,
    temporal: TemporalHandle,
    config: Arc<Config>,
    outbox: Outbox,
    /// When the fast path last failed, until a start succeeds again.
    fast_path_failed: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl BootstrapStarter {
    /// A starter that hands what it cannot start at once to `outbox`.
    pub fn new(db: PgPool, temporal: TemporalHandle, config: Arc<Config>, outbox: Outbox) -> Self {
        Self {
            db,
            temporal,
            config,
            outbox,
            fast_path_failed: Arc::default(),
        }
    }

    /// Notes whether a start reached Temporal (`None`: it did), for [`FAST_PATH_PAUSE`].
    fn note_fast_path(&self, failed: Option<std::time::Instant>) {
        if let Ok(mut slot) = self.fast_path_failed.lock() {
            *slot = failed;
        }
    }

    /// Whether the fast path failed less than [`FAST_PATH_PAUSE`] ago.
    fn fast_path_paused(&self) -> bool {
        self.fast_path_failed
            .lock()
            .ok()
            .and_then(|slot| *slot)
            .is_some_and(|at| at.elapsed() < FAST_PATH_PAUSE)
    }

    /// Records the request and starts its workflow (or queues it).
    #[tracing::instrument(skip_all, fields(org.subdomain = %request.subdomain.as_str()))]
    pub async fn start(
        &self,
        principal: &Principal,
        request: BootstrapRequest,
        correlation_id: &str,
        trace: Option<TraceParent>,
    ) -> Result<StartOutcome, ApiError> {
        let organization_id = Uuid::new_v4();
        let workflow_id = workflow_id(organization_id);
        let input = bootstrap_input(organization_id, &request);
        let queued = QueuedStart {
            id: Uuid::new_v4(),
            organization_id,
            workflow_id: workflow_id.clone(),
            workflow_type: self.config.temporal.bootstrap_workflow_type.clone(),
            task_queue: self.config.temporal.bootstrap_task_queue.clone(),
            // Plain data: serializing it cannot fail.
            workflow_input: serde_json::to_value(&input).unwrap_or(Value::Null),
            traceparent: trace.map(|t| t.to_string()),
        };
        let caller = Some(principal.actor_id());
        let events = self.request_events(principal, &request, &queued, &input, correlation_id);

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

        let started = if self.fast_path_paused() {
            Ok(Err(TemporalError::Unreachable(
                "the fast path failed moments ago; queued for the dispatcher".into(),
            )))
        } else {
            let started =
                tokio::time::timeout(FAST_PATH_TIMEOUT, self.start_workflow(&queued)).await;
            let failed = !matches!(started, Ok(Ok(_)));
            self.note_fast_path(failed.then(std::time::Instant::now));
            started
        };
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
                self.outbox.retry_soon(queued.id, error.reason()).await?;
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
        input: &BootstrapInput,
        correlation_id: &str,
    ) -> Vec<NewEvent> {
        let now = Utc::now();
        let organization = ("organization", input.organization_id);
        let metadata = EventMetadata {
            user_id: Some(principal.user_id.clone()),
            correlation_id: Some(correlation_id.to_owned()),
            traceparent: queued.traceparent.clone(),
            ..EventMetadata::bff(&queued.workflow_id, &queued.workflow_type, now)
        };
        let initiated_id = Uuid::new_v4();
        let created_by = Some(principal.actor_id());
        let initiated = BootstrapInitiated {
            organization_id: input.organization_id,
            name: request.name.clone(),
            org_type: request.org_type,
            slug: request.subdomain.as_str().to_owned(),
            fqdn: format!("{}.{}", request.subdomain.as_str(), self.config.base_domain),
            workflow_id: queued.workflow_id.clone(),
            admin_users: input.admin_users.clone(),
            idempotency_key: request.idempotency_key.clone(),
            at: now,
        };
        let pending = QueuePending {
            queue_id: queued.id,
            event_id: initiated_id,
            organization_id: input.organization_id,
            workflow_id: queued.workflow_id.clone(),
            workflow_type: queued.workflow_type.clone(),
            task_queue: queued.task_queue.clone(),
            input: input.clone(),
            idempotency_key: request.idempotency_key.clone(),
            // Left to the fast path for a moment before the dispatcher may take it.
            not_before: now + FAST_PATH_GRACE,
            at: now,
        };
        // Strictly after the request it belongs to, so time order is causal order.
        let mut pending_metadata = metadata.clone();
        pending_metadata.timestamp = now + chrono::Duration::microseconds(1);
        vec![
            NewEvent::new(initiated_id, &initiated, organization, metadata).by(created_by),
            NewEvent::new(Uuid::new_v4(), &pending, organization, pending_metadata).by(created_by),
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
        let found = store::existing(
            &self.db,
            caller,
            request.idempotency_key.as_deref(),
            &without_organization(input),
            request.subdomain.as_str(),
        )
        .await?;
        match found {
            Some(Existing {
                organization_id,
                workflow_id: workflow,
                same: true,
                ..
            }) => Ok(StartOutcome {
                organization_id,
                workflow_id: workflow.unwrap_or_else(|| workflow_id(organization_id)),
                status: BootstrapRequestStatus::AlreadyExists,
            }),
            Some(Existing { by_key: true, .. }) => Err(ApiError::bad_input(
                "idempotencyKey",
                "this idempotency key was already used for a different request",
            )),
            Some(Existing { by_key: false, .. }) => Err(ApiError::bad_input(
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

    /// Starts the workflow (idempotent by workflow ID); returns the run ID.
    async fn start_workflow(&self, queued: &QueuedStart) -> Result<Option<String>, TemporalError> {
        self.temporal
            .start_workflow_json(
                &queued.workflow_type,
                &queued.workflow_id,
                &queued.task_queue,
                &queued.workflow_input,
                queued.traceparent.as_deref(),
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
        let payload = WorkflowStarted {
            queue_id: queued.id,
            workflow_id: queued.workflow_id.clone(),
            run_id: run_id.clone(),
            at: now,
        };
        let metadata = EventMetadata {
            workflow_run_id: run_id,
            ..EventMetadata::bff(&queued.workflow_id, &queued.workflow_type, now)
        };
        let organization = ("organization", queued.organization_id);
        // A random ID on purpose: a request started twice would show as two events.
        let event = NewEvent::new(Uuid::new_v4(), &payload, organization, metadata);
        events::append(&self.db, &[event]).await.map(drop)
    }
}

#[async_trait::async_trait]
impl Deliver for BootstrapStarter {
    /// Only the configured bootstrap workflow type, on the configured task queue, under the ID
    /// the contract gives its organization: this service starts nothing else.
    async fn may_deliver(&self, row: &Queued, delivery: &Delivery) -> Result<bool, sqlx::Error> {
        Ok(match delivery {
            Delivery::StartWorkflow {
                organization_id,
                workflow_type,
                task_queue,
                ..
            } => {
                *workflow_type == self.config.temporal.bootstrap_workflow_type
                    && *task_queue == self.config.temporal.bootstrap_task_queue
                    && row.workflow_id == workflow_id(*organization_id)
            }
            Delivery::Signal { .. } | Delivery::Cancel { .. } => false,
        })
    }

    /// Starts the workflow and records that it started.
    async fn deliver(&self, row: &Queued, delivery: &Delivery) -> Result<(), DeliveryError> {
        let Delivery::StartWorkflow {
            organization_id,
            workflow_type,
            task_queue,
            input,
        } = delivery
        else {
            return Err(TemporalError::Client("not a workflow start".into()).into());
        };
        let queued = QueuedStart {
            id: row.id,
            organization_id: *organization_id,
            workflow_id: row.workflow_id.clone(),
            workflow_type: workflow_type.clone(),
            task_queue: task_queue.clone(),
            workflow_input: input.clone(),
            traceparent: row.traceparent.clone(),
        };
        let run_id = match self.start_workflow(&queued).await {
            Ok(run_id) => {
                // Temporal answers again: new requests may take the fast path.
                self.note_fast_path(None);
                run_id
            }
            Err(error) => {
                // Still down: new requests keep skipping the fast path.
                if error.is_retryable() {
                    self.note_fast_path(Some(std::time::Instant::now()));
                }
                return Err(error.into());
            }
        };
        self.record_started(&queued, run_id)
            .await
            .map_err(DeliveryError::Record)
    }

    fn failure_reason(&self, error: &TemporalError) -> &'static str {
        error.reason()
    }
}

/// The workflow input of a request (the `organizationBootstrapWorkflow` contract).
fn bootstrap_input(organization_id: Uuid, request: &BootstrapRequest) -> BootstrapInput {
    BootstrapInput {
        organization_id,
        name: request.name.clone(),
        org_type: request.org_type,
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
    }
}

/// The request part of a workflow input (what two requests must share to be the same one).
fn without_organization(input: &Value) -> Value {
    let mut input = input.clone();
    if let Some(object) = input.as_object_mut() {
        object.remove("organizationId");
    }
    input
}
