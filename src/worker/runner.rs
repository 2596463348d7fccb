//! Running the reference worker: both workflows with their activities, on their task queues.
//!
//! The SDK's worker future is not `Send`, so it runs on a `LocalSet`; [`spawn`] gives it a
//! thread of its own for callers that live on a multi-threaded runtime.

use std::{future::Future, time::Duration};

use sqlx::PgPool;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use tokio::sync::watch;

use super::{
    WorkerConfig,
    bootstrap::{BootstrapActivities, OrganizationBootstrapWorkflow},
    release::{ReleaseActivities, ReleaseWorkflow},
};
use crate::{Config, temporal};

/// Why the worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The SDK refused to build or run a worker.
    #[error("temporal worker: {0}")]
    Sdk(String),
}

fn sdk(error: impl std::fmt::Display) -> WorkerError {
    WorkerError::Sdk(error.to_string())
}

/// How long a stopping worker lets running activities finish before it cancels them (a
/// simulated deploy step is short; a cancelled one is retried by the next worker).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Runs both workers until `shutdown` resolves, then lets in-flight tasks finish.
///
/// Waits for Temporal to be reachable first (retrying), so a worker started before the server
/// simply begins once it is up. Must run inside a `LocalSet`.
pub async fn run(
    config: &Config,
    worker: WorkerConfig,
    db: PgPool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let client = loop {
        match temporal::connect(&config.temporal.address, &config.temporal.namespace).await {
            Ok(client) => break client,
            Err(error) => {
                tracing::warn!(%error, "worker waiting for Temporal");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let runtime = Runtime::from_current_tokio(Default::default()).map_err(sdk)?;

    let release_options = WorkerOptions::new(config.temporal.release_task_queue.clone())
        .register_workflow::<ReleaseWorkflow>()
        .map_err(sdk)?
        .register_activities(ReleaseActivities::new(db.clone()))
        .graceful_shutdown_period(SHUTDOWN_GRACE)
        .build();
    let bootstrap_options = WorkerOptions::new(config.temporal.bootstrap_task_queue.clone())
        .register_workflow::<OrganizationBootstrapWorkflow>()
        .map_err(sdk)?
        .register_activities(BootstrapActivities::new(
            db,
            worker.simulation,
            config.base_domain.clone(),
        ))
        .graceful_shutdown_period(SHUTDOWN_GRACE)
        .build();
    let mut releases = Worker::new(&runtime, client.clone(), release_options).map_err(sdk)?;
    let mut bootstrap = Worker::new(&runtime, client, bootstrap_options).map_err(sdk)?;
    let stop_releases = releases.shutdown_handle();
    let stop_bootstrap = bootstrap.shutdown_handle();
    tracing::info!(
        temporal.release_task_queue = %config.temporal.release_task_queue,
        temporal.bootstrap_task_queue = %config.temporal.bootstrap_task_queue,
        "worker polling"
    );

    let stopper = async {
        shutdown.await;
        tracing::info!("worker shutting down");
        stop_releases();
        stop_bootstrap();
    };
    let (releases, bootstrap, ()) = tokio::join!(releases.run(), bootstrap.run(), stopper);
    releases.map_err(sdk)?;
    bootstrap.map_err(sdk)
}

/// A worker running on a thread of its own; dropping the handle does not stop it, call
/// [`WorkerThread::stop`].
pub struct WorkerThread {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<Result<(), WorkerError>>>,
}

impl WorkerThread {
    /// Asks the worker to stop and waits for it.
    pub fn stop(mut self) -> Result<(), WorkerError> {
        let _ = self.stop.send(true);
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(WorkerError::Sdk("worker thread panicked".into())),
            None => Ok(()),
        }
    }
}

/// Starts the worker on its own thread (with its own single-threaded runtime, `LocalSet` and
/// Postgres pool: connections belong to the runtime that opened them).
pub fn spawn(config: Config, worker: WorkerConfig) -> WorkerThread {
    let (stop, mut stopped) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("temporal-worker".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(sdk)?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                let db = crate::db::connect(&config.db).await.map_err(sdk)?;
                run(&config, worker, db, shutdown).await
            })
        });
    match thread {
        Ok(thread) => WorkerThread {
            stop,
            thread: Some(thread),
        },
        Err(error) => {
            tracing::error!(%error, "cannot start the worker thread");
            WorkerThread { stop, thread: None }
        }
    }
}
