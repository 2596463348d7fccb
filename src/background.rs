//! The owner of every task that runs beside the requests: the outbox dispatcher, the change
//! listener, the reconciler, the subscription hub's list feed, login-throttle housekeeping.
//!
//! Each task gets a [`CancellationToken`] and runs under a supervisor in one [`JoinSet`]. A task
//! that panics (or is killed) is logged, counted on `/metrics`
//! (`bff_background_task_restarts_total{task}`) and started again after a backoff that grows
//! from 100 ms to 30 s. A task that returns has finished its work (Temporal's first connection)
//! and is not started again. At shutdown
//! [`Background::shutdown`] cancels the token and waits, within a bound, for every task to
//! finish its own way out (the dispatcher gives its claimed rows back, the listener closes its
//! connection); what is still running then is aborted.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus::IntCounterVec;
use tokio::task::{AbortHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// First wait before a crashed task is started again; doubled each time, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait before a crashed task is started again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A task that ran this long before it crashed starts its backoff over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// The running tasks' current runs, by name, so one can be killed (see [`Tasks::kill`]).
type Running = Arc<Mutex<HashMap<&'static str, AbortHandle>>>;

/// Every background task of one app.
pub struct Background {
    stop: CancellationToken,
    supervisors: JoinSet<()>,
    running: Running,
    restarts: IntCounterVec,
}

impl Background {
    /// No tasks yet; restarts are counted in [`Background::restarts`], which the caller
    /// registers with the app's metrics.
    pub fn new() -> Self {
        Self {
            stop: CancellationToken::new(),
            supervisors: JoinSet::new(),
            running: Arc::default(),
            restarts: crate::metrics::counter_vec(
                "bff_background_task_restarts_total",
                "Background tasks started again after they panicked or were killed, by task.",
                &["task"],
            ),
        }
    }

    /// The restart counter, for the app's metrics registry.
    pub fn restarts(&self) -> IntCounterVec {
        self.restarts.clone()
    }

    /// Runs `task` as `name` until shutdown: `task` is called for each run with the token that
    /// says when to stop, and must return soon after it is cancelled.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: Fn(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        let running = Arc::clone(&self.running);
        let restarts = self.restarts.with_label_values(&[name]);
        self.supervisors.spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                let started = tokio::time::Instant::now();
                let run = tokio::spawn(task(stop.child_token()));
                lock(&running).insert(name, run.abort_handle());
                let ended = run.await;
                lock(&running).remove(name);
                if stop.is_cancelled() {
                    return;
                }
                match ended {
                    Ok(()) => {
                        tracing::debug!(task = name, "background task finished");
                        return;
                    }
                    Err(error) if error.is_panic() => {
                        tracing::error!(task = name, %error, "background task panicked")
                    }
                    Err(error) => tracing::error!(task = name, %error, "background task killed"),
                }
                restarts.inc();
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = FIRST_BACKOFF;
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                tracing::info!(task = name, "background task started again");
            }
        });
    }

    /// Runs `task` as `name` until shutdown, for a task that has nothing to tidy when it stops:
    /// each run is `task()`, dropped when the token is cancelled.
    pub fn spawn_until_stopped<F, Fut>(&mut self, name: &'static str, task: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn(name, move |stop| {
            let run = task();
            async move {
                stop.run_until_cancelled(run).await;
            }
        });
    }

    /// A handle on the running tasks, for operators' checks and tests.
    pub fn tasks(&self) -> Tasks {
        Tasks {
            running: Arc::clone(&self.running),
        }
    }

    /// Tells every task to stop and waits for them, at most `within`; then aborts what is left.
    /// Returns whether every task stopped by itself.
    pub async fn shutdown(mut self, within: Duration) -> bool {
        self.stop.cancel();
        let finished = tokio::time::timeout(within, async {
            while self.supervisors.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !finished {
            tracing::warn!(
                within_ms = within.as_millis() as u64,
                "background tasks did not stop in time; aborted"
            );
            for run in lock(&self.running).values() {
                run.abort();
            }
            self.supervisors.abort_all();
        }
        finished
    }
}

impl Drop for Background {
    /// A `Background` dropped without [`Background::shutdown`] (a test's app state) still tells
    /// its tasks to stop.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Default for Background {
    fn default() -> Self {
        Self::new()
    }
}

/// The running background tasks.
#[derive(Clone)]
pub struct Tasks {
    running: Running,
}

impl Tasks {
    /// The names of the tasks running now.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = lock(&self.running).keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// Aborts task `name`'s current run, as a crash would; its supervisor starts it again.
    /// Returns whether it was running.
    pub fn kill(&self, name: &str) -> bool {
        lock(&self.running)
            .get(name)
            .map(AbortHandle::abort)
            .is_some()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_is_counted_and_started_again() {
        let mut background = Background::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&runs);
        background.spawn("flaky", move |stop| {
            let run = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(run > 0, "the first run crashes");
                stop.cancelled().await;
            }
        });

        let restarted = tokio::time::timeout(Duration::from_secs(5), async {
            while runs.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        let restarts = background.restarts().with_label_values(&["flaky"]).get();
        let stopped = background.shutdown(Duration::from_secs(1)).await;

        assert!(restarted.is_ok(), "the task was started again");
        assert_eq!(restarts, 1, "the crash was counted once");
        assert!(stopped, "the second run stopped when told");
    }

    #[tokio::test]
    async fn shutdown_aborts_a_task_that_ignores_its_token_after_the_bound() {
        let mut background = Background::new();
        background.spawn("stubborn", |_stop| std::future::pending::<()>());
        tokio::time::sleep(Duration::from_millis(20)).await;

        let stopped = background.shutdown(Duration::from_millis(100)).await;

        assert!(
            !stopped,
            "the task did not stop by itself, so shutdown says so"
        );
    }
}
