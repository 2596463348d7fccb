//! The Temporal client as the server uses it: connected in the background, reconnected when the
//! server comes back, and never a reason for the BFF itself to be down.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};
use temporalio_common::protos::temporal::api::workflowservice::v1::GetSystemInfoRequest;
use tokio::sync::RwLock;
use url::Url;

pub use self::circuit::Check;
pub use self::error::TemporalError;
use crate::Config;

mod circuit;
mod error;

/// How long one connection attempt may take before it counts as "Temporal is down".
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between background reconnection attempts.
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(10);

/// A shareable, lazily connected Temporal client.
#[derive(Clone)]
pub struct TemporalHandle {
    inner: Arc<Inner>,
}

struct Inner {
    target: Url,
    namespace: String,
    client: RwLock<Option<Client>>,
    /// Every call's duration by gRPC method and outcome (`ok` or the gRPC code).
    calls: prometheus::HistogramVec,
    /// Whether reads ask Temporal (`circuit`).
    circuit: circuit::Circuit,
    /// How long a probe of an open circuit may take.
    probe_timeout: Duration,
}

impl TemporalHandle {
    /// A handle on the server `config` names, not connected yet: [`TemporalHandle::client`]
    /// connects on first use, and the app runs [`TemporalHandle::connect_until_up`] in the
    /// background so start-up never waits for Temporal.
    pub fn new(config: &Config) -> Self {
        Self {
            inner: Arc::new(Inner {
                target: config.temporal.address.clone(),
                namespace: config.temporal.namespace.clone(),
                client: RwLock::new(None),
                calls: crate::metrics::latency_histogram(
                    "bff_temporal_call_duration_seconds",
                    "Temporal calls by gRPC method and outcome (ok, or the gRPC code: Unavailable when the server is unreachable).",
                    &["method", "outcome"],
                ),
                circuit: circuit::Circuit::new(),
                probe_timeout: config.temporal.query_timeout,
            }),
        }
    }

    /// The read circuit's gauge, for the app's metrics registry (`/metrics`).
    pub fn circuit_gauge(&self) -> prometheus::IntGauge {
        self.inner.circuit.gauge()
    }

    /// Whether a read may ask Temporal now (the circuit is closed). When it is open, the read
    /// serves the projection at once; a probe is started in the background when one is due.
    pub fn may_read(&self) -> bool {
        match self.inner.circuit.check(Instant::now()) {
            Check::Ask => true,
            Check::Skip => false,
            Check::SkipAndProbe => {
                let handle = self.clone();
                // Detached, not owned by `Background`: one at a time (the circuit says when),
                // and bounded by the probe's timeout.
                tokio::spawn(async move {
                    let answer = handle.ping(handle.inner.probe_timeout).await;
                    handle.read_done(&answer);
                });
                false
            }
        }
    }

    /// A read that asks Temporal (after [`Self::may_read`] allowed it), within `timeout`: an
    /// elapsed timeout is [`TemporalError::Timeout`], and the read circuit records the outcome.
    pub async fn read<T>(
        &self,
        timeout: Duration,
        call: impl Future<Output = Result<T, TemporalError>>,
    ) -> Result<T, TemporalError> {
        let answer = tokio::time::timeout(timeout, call)
            .await
            .unwrap_or(Err(TemporalError::Timeout));
        self.read_done(&answer);
        answer
    }

    /// Records what a read (or a probe) got. A refusal (the workflow closed, no such query) is
    /// Temporal answering; an outage or a timeout is not.
    fn read_done<T>(&self, result: &Result<T, TemporalError>) {
        match result {
            Err(error) if error.is_retryable() => self
                .inner
                .circuit
                .failed(Instant::now(), matches!(error, TemporalError::Timeout)),
            _ => self.inner.circuit.succeeded(),
        }
    }

    /// The call timings, for the app's metrics registry (`/metrics`).
    pub fn calls(&self) -> prometheus::HistogramVec {
        self.inner.calls.clone()
    }

    /// Runs Temporal call `method`, recording its duration and outcome.
    async fn timed<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, TemporalError>>,
    ) -> Result<T, TemporalError> {
        let started = Instant::now();
        let result = call.await;
        let outcome = result.as_ref().map_or_else(TemporalError::code, |_| "ok");
        self.inner
            .calls
            .with_label_values(&[method, outcome])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// Connects, retrying with backoff, until the first connection succeeds.
    pub async fn connect_until_up(self) {
        let mut backoff = Duration::from_millis(200);
        while let Err(error) = self.client().await {
            tracing::warn!(%error, temporal.address = %self.inner.target, "Temporal not reachable yet; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_RECONNECT_BACKOFF);
        }
    }

    /// The namespace every call uses.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The connected client, connecting now if there is none yet.
    ///
    /// Once connected, the underlying gRPC channel reconnects by itself after a server restart,
    /// so the client is kept for the life of the process.
    pub async fn client(&self) -> Result<Client, TemporalError> {
        if let Some(client) = self.inner.client.read().await.as_ref() {
            return Ok(client.clone());
        }
        let mut slot = self.inner.client.write().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = self
            .timed(
                "Connect",
                connect(&self.inner.target, &self.inner.namespace),
            )
            .await?;
        tracing::info!(temporal.address = %self.inner.target, "connected to Temporal");
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Checks that the server answers, within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), TemporalError> {
        let call = async {
            let client = self.client().await?;
            client
                .connection()
                .workflow_service()
                .get_system_info(tonic::Request::new(GetSystemInfoRequest::default()))
                .await
                .map(drop)
                .map_err(|status| TemporalError::rpc(&status))
        };
        self.timed("GetSystemInfo", async {
            tokio::time::timeout(timeout, call)
                .await
                .map_err(|_| TemporalError::Timeout)?
        })
        .await
    }
}

/// Opens a connection and a namespaced client.
pub async fn connect(target: &Url, namespace: &str) -> Result<Client, TemporalError> {
    let options = ConnectionOptions::new(target.clone())
        .identity(format!("temporal-bff@{}", std::process::id()))
        .connect_timeout(CONNECT_TIMEOUT)
        .build();
    let connection = tokio::time::timeout(CONNECT_TIMEOUT * 2, Connection::connect(options))
        .await
        .map_err(|_| TemporalError::Timeout)?
        .map_err(|error| TemporalError::Unreachable(error.to_string()))?;
    Client::new(connection, ClientOptions::new(namespace).build())
        .map_err(|error| TemporalError::Unreachable(error.to_string()))
}

/// A JSON payload, the encoding every Temporal SDK reads by default.
pub fn json_payload(
    value: &serde_json::Value,
) -> temporalio_common::protos::temporal::api::common::v1::Payload {
    temporalio_common::protos::temporal::api::common::v1::Payload {
        metadata: std::collections::HashMap::from([(
            "encoding".to_owned(),
            b"json/plain".to_vec(),
        )]),
        data: serde_json::to_vec(value).unwrap_or_default(),
        ..Default::default()
    }
}

/// The start header that carries W3C trace context, under the name the Temporal SDKs' tracing
/// interceptors (OpenTelemetry) read and write: a JSON map `{"traceparent": …}`.
pub const TRACE_HEADER: &str = "_tracer-data";

/// Starts workflow type `workflow_type` (by name, so another team's worker can serve it) with
/// a JSON input, and the caller's trace context in the [`TRACE_HEADER`] header. Idempotent by
/// workflow ID: if that workflow already runs, or already ran, this counts as started. Returns
/// the run ID when the server gives one.
impl TemporalHandle {
    #[tracing::instrument(skip(self, input, traceparent), fields(temporal.workflow_id = %workflow_id))]
    pub async fn start_workflow_json(
        &self,
        workflow_type: &str,
        workflow_id: &str,
        task_queue: &str,
        input: &serde_json::Value,
        traceparent: Option<&str>,
    ) -> Result<Option<String>, TemporalError> {
        let client = &self.client().await?;
        use temporalio_client::{
            UntypedWorkflow, WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowStartOptions,
            errors::WorkflowStartError,
        };
        use temporalio_common::data_converters::RawValue;

        let header = traceparent.map(|traceparent| {
            temporalio_common::protos::temporal::api::common::v1::Header {
                fields: std::collections::HashMap::from([(
                    TRACE_HEADER.to_owned(),
                    json_payload(&serde_json::json!({ "traceparent": traceparent })),
                )]),
            }
        });
        let options = WorkflowStartOptions::new(task_queue, workflow_id)
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            // A closed run with this ID means the request was already served: never start it again.
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .maybe_header(header)
            .build();
        self.timed("StartWorkflowExecution", async {
            let started = client
                .start_workflow(
                    UntypedWorkflow::new(workflow_type),
                    RawValue::new(vec![json_payload(input)]),
                    options,
                )
                .await;
            match started {
                Ok(handle) => Ok(handle.run_id().map(str::to_owned)),
                Err(WorkflowStartError::AlreadyStarted { run_id, .. }) => Ok(run_id),
                Err(WorkflowStartError::Rpc(status)) => Err(TemporalError::rpc(&status)),
                Err(error) => Err(TemporalError::Client(error.to_string())),
            }
        })
        .await
    }
}

/// Asks open workflow `workflow_id` query `name` (no argument) by name, so any team's worker
/// can answer, and decodes its JSON answer as `T`. A closed workflow is refused rather than
/// replayed by a worker (`QueryRejectCondition::NotOpen`).
impl TemporalHandle {
    #[tracing::instrument(skip(self), fields(temporal.workflow_id = %workflow_id, temporal.query = name))]
    pub async fn query_open<T: serde::de::DeserializeOwned>(
        &self,
        workflow_id: &str,
        name: &str,
    ) -> Result<T, TemporalError> {
        let client = &self.client().await?;
        use temporalio_client::{
            QueryRejectCondition, UntypedQuery, UntypedWorkflow, WorkflowQueryOptions,
        };
        use temporalio_common::data_converters::RawValue;

        let options = WorkflowQueryOptions::builder()
            .reject_condition(QueryRejectCondition::NotOpen)
            .build();
        let answer = self
            .timed("QueryWorkflow", async {
                client
                    .get_workflow_handle::<UntypedWorkflow>(workflow_id)
                    .query(UntypedQuery::new(name), RawValue::new(Vec::new()), options)
                    .await
                    .map_err(|e| TemporalError::Client(e.to_string()))
            })
            .await?;
        let payload = answer
            .payloads
            .first()
            .ok_or_else(|| TemporalError::Client(format!("{name} answered nothing")))?;
        serde_json::from_slice(&payload.data)
            .map_err(|e| TemporalError::Client(format!("{name} answered an unexpected shape: {e}")))
    }
}

/// A workflow execution's status, with Temporal's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
pub enum WorkflowStatus {
    /// Running.
    Running,
    /// Completed successfully.
    Completed,
    /// Failed.
    Failed,
    /// Cancelled.
    Canceled,
    /// Terminated (no workflow code ran to end it).
    Terminated,
    /// Continued as a new run.
    ContinuedAsNew,
    /// Timed out.
    TimedOut,
    /// Paused.
    Paused,
    /// A status this service does not know (a newer server), or none.
    Unknown,
}

impl From<temporalio_client::WorkflowExecutionStatus> for WorkflowStatus {
    fn from(status: temporalio_client::WorkflowExecutionStatus) -> Self {
        use temporalio_client::WorkflowExecutionStatus as S;
        match status {
            S::Running => Self::Running,
            S::Completed => Self::Completed,
            S::Failed => Self::Failed,
            S::Canceled => Self::Canceled,
            S::Terminated => Self::Terminated,
            S::ContinuedAsNew => Self::ContinuedAsNew,
            S::TimedOut => Self::TimedOut,
            S::Paused => Self::Paused,
            _ => Self::Unknown,
        }
    }
}

/// What `DescribeWorkflowExecution` says about a workflow.
#[derive(Debug, Clone)]
pub struct WorkflowSummary {
    /// Run ID.
    pub run_id: String,
    pub status: WorkflowStatus,
    /// When it started.
    pub start_time: Option<chrono::DateTime<chrono::Utc>>,
    /// When it closed.
    pub close_time: Option<chrono::DateTime<chrono::Utc>>,
    /// The pending activity, if one is scheduled or retrying.
    pub pending_activity: Option<PendingActivity>,
}

/// An activity a workflow is waiting for.
#[derive(Debug, Clone)]
pub struct PendingActivity {
    /// Its type, e.g. `verify_dns`.
    pub activity_type: String,
    /// The attempt running or due.
    pub attempt: i32,
    /// Whether an earlier attempt failed (its message went to the log, never to clients).
    pub failed_before: bool,
}

/// Describes workflow `workflow_id` (its latest run).
impl TemporalHandle {
    #[tracing::instrument(skip(self))]
    pub async fn describe_workflow(
        &self,
        workflow_id: &str,
    ) -> Result<WorkflowSummary, TemporalError> {
        let client = &self.client().await?;
        use temporalio_client::{UntypedWorkflow, WorkflowDescribeOptions};
        let description = self
            .timed("DescribeWorkflowExecution", async {
                client
                    .get_workflow_handle::<UntypedWorkflow>(workflow_id)
                    .describe(WorkflowDescribeOptions::default())
                    .await
                    .map_err(|e| TemporalError::Client(e.to_string()))
            })
            .await?;
        let status = WorkflowStatus::from(description.status());
        let pending_activity =
            description
                .raw_description
                .pending_activities
                .first()
                .map(|activity| {
                    let activity_type = activity
                        .activity_type
                        .as_ref()
                        .map(|t| t.name.clone())
                        .unwrap_or_default();
                    if let Some(failure) = &activity.last_failure {
                        tracing::info!(
                            temporal.activity = %activity_type,
                            temporal.attempt = activity.attempt,
                            cause = %failure.message,
                            "pending activity failed before"
                        );
                    }
                    PendingActivity {
                        activity_type,
                        attempt: activity.attempt,
                        failed_before: activity.last_failure.is_some(),
                    }
                });
        Ok(WorkflowSummary {
            run_id: description.run_id().to_owned(),
            status,
            start_time: description.start_time().map(chrono::DateTime::from),
            close_time: description.close_time().map(chrono::DateTime::from),
            pending_activity,
        })
    }
}

impl WorkflowStatus {
    /// Temporal's name for the status (`TERMINATED`, `TIMED_OUT`, …).
    pub fn temporal_name(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Canceled => "CANCELED",
            Self::Terminated => "TERMINATED",
            Self::ContinuedAsNew => "CONTINUED_AS_NEW",
            Self::TimedOut => "TIMED_OUT",
            Self::Paused => "PAUSED",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// Whether the run has ended (a paused or running one has not; nor one continued as new,
    /// whose next run carries on).
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Canceled | Self::Terminated | Self::TimedOut
        )
    }
}

impl TemporalHandle {
    /// [`closed_run`] of `workflow_id`, within `timeout`.
    pub async fn closed_run(
        &self,
        workflow_id: &str,
        timeout: Duration,
    ) -> Result<Option<ClosedRun>, TemporalError> {
        tokio::time::timeout(timeout, async { self.latest_close(workflow_id).await })
            .await
            .map_err(|_| TemporalError::Timeout)?
    }

    /// Those of `open` (anything keyed by a workflow ID) whose workflow has a run that is not
    /// running, by one visibility query within `timeout`; the caller describes each to see
    /// whether its latest run closed.
    pub async fn not_running<K>(
        &self,
        open: Vec<(K, String)>,
        timeout: Duration,
    ) -> Result<Vec<(K, String)>, TemporalError> {
        if open.is_empty() {
            return Ok(open);
        }
        let workflow_ids: Vec<String> = open.iter().map(|(_, w)| w.clone()).collect();
        let not_running = tokio::time::timeout(timeout, async {
            self.not_running_among(&workflow_ids).await
        })
        .await
        .map_err(|_| TemporalError::Timeout)??;
        Ok(open
            .into_iter()
            .filter(|(_, workflow)| not_running.contains(workflow))
            .collect())
    }
}

/// How a workflow's latest run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedRun {
    /// The run.
    pub run_id: String,
    /// Its close status.
    pub status: WorkflowStatus,
    /// When it closed.
    pub closed_at: chrono::DateTime<chrono::Utc>,
    /// Why, when Temporal says: the reason given to a termination.
    pub reason: Option<String>,
}

/// How workflow `workflow_id`'s latest run ended; `None` while it runs.
impl TemporalHandle {
    #[tracing::instrument(skip(self))]
    async fn latest_close(&self, workflow_id: &str) -> Result<Option<ClosedRun>, TemporalError> {
        let client = &self.client().await?;
        use futures::StreamExt;
        use temporalio_client::{
            HistoryEventFilterType, UntypedWorkflow, WorkflowFetchHistoryOptions,
        };
        use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

        let summary = self.describe_workflow(workflow_id).await?;
        if !summary.status.is_closed() {
            return Ok(None);
        }
        let mut reason = None;
        if summary.status == WorkflowStatus::Terminated {
            let options = WorkflowFetchHistoryOptions::builder()
                .event_filter_type(HistoryEventFilterType::CloseEvent)
                .build();
            let mut history = client
                .get_workflow_handle::<UntypedWorkflow>(workflow_id)
                .fetch_history(options);
            while let Some(event) = history.next().await {
                let event = event.map_err(|e| TemporalError::Client(e.to_string()))?;
                if let Some(Attributes::WorkflowExecutionTerminatedEventAttributes(terminated)) =
                    event.attributes
                {
                    reason = Some(terminated.reason).filter(|r| !r.is_empty());
                }
            }
        }
        Ok(Some(ClosedRun {
            run_id: summary.run_id,
            status: summary.status,
            closed_at: summary.close_time.unwrap_or_else(chrono::Utc::now),
            reason,
        }))
    }
}

/// Which of `workflow_ids` have a run that is not running, by a visibility query (at most
/// `workflow_ids.len()` answers); the caller describes each to see whether its latest run
/// closed.
impl TemporalHandle {
    #[tracing::instrument(skip_all, fields(temporal.workflows = workflow_ids.len()))]
    async fn not_running_among(
        &self,
        workflow_ids: &[String],
    ) -> Result<std::collections::HashSet<String>, TemporalError> {
        let client = &self.client().await?;
        use futures::StreamExt;
        use temporalio_client::WorkflowListOptions;

        if workflow_ids.is_empty() {
            return Ok(Default::default());
        }
        let quoted: Vec<String> = workflow_ids
            .iter()
            .map(|id| format!("'{}'", id.replace('\\', "\\\\").replace('\'', "\\'")))
            .collect();
        let query = format!(
            "WorkflowId IN ({}) AND ExecutionStatus != 'Running'",
            quoted.join(", ")
        );
        let options = WorkflowListOptions::builder()
            .limit(workflow_ids.len() * 4)
            .build();
        self.timed("ListWorkflowExecutions", async {
            let mut found = std::collections::HashSet::new();
            let mut listed = client.list_workflows(query, options);
            while let Some(execution) = listed.next().await {
                let execution = execution.map_err(|e| TemporalError::Client(e.to_string()))?;
                found.insert(execution.id().to_owned());
            }
            Ok(found)
        })
        .await
    }
}

/// A workflow interaction's failure, classified: not found (or already closed) is the
/// server refusing the request itself, never worth retrying.
fn interaction_error(error: temporalio_client::errors::WorkflowInteractionError) -> TemporalError {
    use temporalio_client::errors::WorkflowInteractionError as E;
    match error {
        E::NotFound(status) | E::Rpc(status) => TemporalError::rpc(&status),
        other => TemporalError::Client(other.to_string()),
    }
}

/// Sends signal `name` (no argument) to workflow `workflow_id`'s running run.
impl TemporalHandle {
    #[tracing::instrument(skip(self))]
    pub async fn signal_workflow(
        &self,
        workflow_id: &str,
        name: &str,
    ) -> Result<(), TemporalError> {
        let client = &self.client().await?;
        use temporalio_client::{UntypedSignal, UntypedWorkflow, WorkflowSignalOptions};
        use temporalio_common::data_converters::RawValue;
        self.timed("SignalWorkflowExecution", async {
            client
                .get_workflow_handle::<UntypedWorkflow>(workflow_id)
                .signal(
                    UntypedSignal::new(name),
                    RawValue::new(Vec::new()),
                    WorkflowSignalOptions::default(),
                )
                .await
                .map_err(interaction_error)
        })
        .await
    }
}

/// Asks Temporal to cancel workflow `workflow_id`'s running run, with `reason`.
impl TemporalHandle {
    #[tracing::instrument(skip(self, reason))]
    pub async fn cancel_workflow(
        &self,
        workflow_id: &str,
        reason: &str,
    ) -> Result<(), TemporalError> {
        let client = &self.client().await?;
        use temporalio_client::{UntypedWorkflow, WorkflowCancelOptions};
        self.timed("RequestCancelWorkflowExecution", async {
            client
                .get_workflow_handle::<UntypedWorkflow>(workflow_id)
                .cancel(
                    WorkflowCancelOptions::builder()
                        .reason(reason.to_owned())
                        .build(),
                )
                .await
                .map_err(interaction_error)
        })
        .await
    }
}
