//! The outbox: work this service accepted and must deliver to Temporal even if Temporal is down
//! when it is accepted, or the process restarts before it is done.
//!
//! A request is stored with its outbox row in one statement (the `workflow.queue.pending` and
//! `workflow.queue.control_pending` events; triggers write `workflow_queue_projection`). The
//! request path tries to deliver at once; what it cannot deliver it hands back with
//! [`Outbox::retry_soon`], and the [`dispatcher`] delivers it later, also after a restart.
//!
//! What a row delivers is a typed [`Delivery`]: start a workflow (an organization bootstrap),
//! signal one (`pause`, `resume` a release) or cancel one. The features that enqueue know how to
//! deliver their own rows ([`Deliver`]): `onboarding` starts, `releases` signals and cancels.
//! This module knows neither of them.

pub mod dispatcher;
pub mod store;

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::temporal::TemporalError;

/// What one outbox row delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Start a workflow: an organization's bootstrap.
    StartWorkflow {
        /// The organization it bootstraps.
        organization_id: Uuid,
        /// The workflow type to start.
        workflow_type: String,
        /// The task queue to start it on.
        task_queue: String,
        /// Its input, as JSON.
        input: Value,
    },
    /// Send a signal to a release's workflow.
    Signal {
        /// The release (its global ID).
        release_id: String,
        /// The signal: `pause` or `resume`.
        signal: Signal,
    },
    /// Ask Temporal to cancel a release's workflow.
    Cancel {
        /// The release (its global ID).
        release_id: String,
        /// Why, as the operator wrote it.
        reason: Option<String>,
    },
}

/// The signals the outbox sends (the release workflow's contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `pause`.
    Pause,
    /// `resume`.
    Resume,
}

impl Signal {
    /// The signal's name, as the workflow defines it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }
}

impl Delivery {
    /// The row's `action` column: `start`, `pause`, `resume` or `cancel` (also the metric label).
    pub fn action(&self) -> &'static str {
        match self {
            Self::StartWorkflow { .. } => "start",
            Self::Signal { signal, .. } => signal.name(),
            Self::Cancel { .. } => "cancel",
        }
    }

    /// The aggregate the row's events belong to: its organization, or its release.
    pub fn aggregate(&self) -> (&'static str, Uuid) {
        match self {
            Self::StartWorkflow {
                organization_id, ..
            } => ("organization", *organization_id),
            Self::Signal { release_id, .. } | Self::Cancel { release_id, .. } => (
                "release",
                crate::contracts::ids::EntityId::parse(release_id)
                    .map_or(Uuid::nil(), |id| id.aggregate_id()),
            ),
        }
    }

    /// What a log line says was done when it is delivered.
    fn done(&self) -> &'static str {
        match self {
            Self::StartWorkflow { .. } => "queued workflow started",
            Self::Signal { .. } => "queued signal delivered",
            Self::Cancel { .. } => "queued cancellation delivered",
        }
    }
}

/// A row the dispatcher claimed.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The outbox row's ID.
    pub id: Uuid,
    /// The workflow it delivers to.
    pub workflow_id: String,
    /// That workflow's type, as recorded.
    pub workflow_type: String,
    /// Dispatch attempts so far (this one included).
    pub attempts: i32,
    /// The W3C trace context of the request that queued it.
    pub traceparent: Option<String>,
    /// The `action` column as stored (a label even when it is not understood).
    pub action: String,
    /// What it delivers; `None` when the row is not one this service writes.
    pub delivery: Option<Delivery>,
}

/// Why a delivery did not finish.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Temporal did not take it.
    #[error(transparent)]
    Temporal(#[from] TemporalError),
    /// Temporal took it, but recording that failed: retry the recording, not the delivery.
    #[error("delivered, but recording it failed: {0}")]
    Record(#[source] sqlx::Error),
}

/// How a feature delivers the rows it enqueues.
#[async_trait::async_trait]
pub trait Deliver: Send + Sync {
    /// Whether this service may deliver `row` at all: the outbox table is shared, and anyone who
    /// can write an event can write a row. Only what this service itself would have queued is
    /// delivered.
    async fn may_deliver(&self, row: &Queued, delivery: &Delivery) -> Result<bool, sqlx::Error>;

    /// Delivers `row` and records that it was delivered.
    async fn deliver(&self, row: &Queued, delivery: &Delivery) -> Result<(), DeliveryError>;

    /// The fixed text stored as the row's last error after `error` (never Temporal's own text).
    fn failure_reason(&self, error: &TemporalError) -> &'static str;
}

/// The deliverers, by kind of delivery.
#[derive(Clone)]
pub struct Deliverers {
    /// Delivers [`Delivery::StartWorkflow`].
    pub starts: Arc<dyn Deliver>,
    /// Delivers [`Delivery::Signal`] and [`Delivery::Cancel`].
    pub controls: Arc<dyn Deliver>,
}

impl Deliverers {
    fn of(&self, delivery: &Delivery) -> &dyn Deliver {
        match delivery {
            Delivery::StartWorkflow { .. } => self.starts.as_ref(),
            Delivery::Signal { .. } | Delivery::Cancel { .. } => self.controls.as_ref(),
        }
    }
}

/// The request path's handle on the outbox: hands a row it could not deliver to the dispatcher.
#[derive(Clone)]
pub struct Outbox {
    db: sqlx::PgPool,
    wake: Arc<Notify>,
}

impl Outbox {
    /// The outbox in `db`.
    pub fn new(db: sqlx::PgPool) -> Self {
        Self {
            db,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Row `id` could not be delivered on the request path (`reason` says why, as fixed text):
    /// counts the attempt and wakes the dispatcher, which tries again at once.
    pub async fn retry_soon(&self, id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
        store::schedule_retry(&self.db, id, reason).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// The pool the outbox lives in.
    pub fn db(&self) -> &sqlx::PgPool {
        &self.db
    }

    /// Resolves when a request handed a row over.
    async fn woken(&self) {
        self.wake.notified().await;
    }
}
