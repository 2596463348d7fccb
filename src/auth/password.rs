//! Password hashing with argon2id at OWASP's parameters, off the async workers.
//!
//! One hash costs tens of milliseconds of CPU. Hashes run on a few dedicated threads (half the
//! cores, at least one) at a slightly lower priority than request handling, behind a bounded
//! queue: when the queue is full a login is refused at once (the caller answers
//! `RATE_LIMITED`) instead of waiting behind a backlog, a job whose request has gone is
//! skipped, and no job starts after its deadline.

use std::{
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OnceCell, oneshot};

/// OWASP's argon2id recommendation: m = 19 MiB, t = 2, p = 1.
const MEMORY_KIB: u32 = 19 * 1024;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

/// Shortest password `user create` accepts.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longest password accepted anywhere (hashing cost grows with length; nobody needs more).
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Jobs waiting for a hashing thread, at most, per thread.
const QUEUE_PER_THREAD: usize = 16;
/// The longest a request waits for its hash, queueing included.
const JOB_DEADLINE: Duration = Duration::from_secs(2);
/// Niceness of the hashing threads: a little below request handling, so a burst of logins
/// cannot take whole cores from other requests, but not so low that logins starve under load.
const HASH_NICE: i32 = 0;

/// Hashing failed or could not be done now.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing thread is busy and the queue is full, or the job missed its deadline.
    #[error("password hashing is busy")]
    Busy,
    /// A malformed stored hash or an internal fault.
    #[error("password hashing failed: {0}")]
    Failed(String),
}

fn argon2() -> Result<Argon2<'static>, HashError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| HashError::Failed(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` to an argon2id PHC string (blocking; call from a blocking context).
pub fn hash_blocking(password: &str) -> Result<String, HashError> {
    argon2()?
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| HashError::Failed(e.to_string()))
}

/// Whether `password` matches the PHC string `phc` (blocking).
pub fn verify_blocking(password: &str, phc: &str) -> Result<bool, HashError> {
    let parsed = PasswordHash::new(phc).map_err(|e| HashError::Failed(e.to_string()))?;
    // The parameters come from the stored hash, so older hashes keep verifying.
    Ok(argon2()?
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs hashing on its own threads behind a bounded queue.
#[derive(Clone)]
pub struct Hasher {
    jobs: mpsc::SyncSender<Job>,
    dummy: Arc<OnceCell<String>>,
    /// Jobs waiting for a hashing thread (`/metrics`).
    queued: prometheus::IntGauge,
}

/// Lowers the calling thread's priority to [`HASH_NICE`].
#[allow(unsafe_code)]
fn lower_current_thread_priority() {
    // SAFETY: `gettid` and `setpriority` on the calling thread's own TID have no memory-safety
    // preconditions; failure is only reported through the return value.
    let lowered = unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            u32::try_from(libc::gettid()).unwrap_or(0),
            HASH_NICE,
        ) == 0
    };
    if !lowered {
        tracing::debug!("could not lower the hashing thread's priority");
    }
}

impl Hasher {
    /// A hasher with half the cores' worth of threads (at least one).
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let threads = (cores / 2).max(1);
        let (jobs, queue) = mpsc::sync_channel::<Job>(threads * QUEUE_PER_THREAD);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    lower_current_thread_priority();
                    loop {
                        // The lock is held only while taking a job, never while hashing.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            // Every Hasher was dropped.
                            Err(_) => return,
                        }
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a hashing thread");
            }
        }
        Self {
            jobs,
            dummy: Arc::new(OnceCell::new()),
            queued: crate::metrics::gauge(
                "bff_password_hash_queue_depth",
                "Password hashing jobs waiting for a hashing thread (logins past the queue's bound are refused as busy).",
            ),
        }
    }

    /// The gauge of jobs waiting for a hashing thread, to register with the app's metrics.
    pub fn queue_depth(&self) -> prometheus::IntGauge {
        self.queued.clone()
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, result) = oneshot::channel();
        let deadline = Instant::now() + JOB_DEADLINE;
        let queued = self.queued.clone();
        let job: Job = Box::new(move || {
            queued.dec();
            // Nobody waits any more, or too late to be of use: skip the work.
            if done.is_closed() || Instant::now() >= deadline {
                return;
            }
            let _ = done.send(job());
        });
        // Counted before it is sent, so a thread taking it at once never sees the gauge below 0.
        self.queued.inc();
        self.jobs.try_send(job).map_err(|error| {
            self.queued.dec();
            match error {
                mpsc::TrySendError::Full(_) => HashError::Busy,
                mpsc::TrySendError::Disconnected(_) => {
                    HashError::Failed("hashing threads are gone".into())
                }
            }
        })?;
        match tokio::time::timeout_at(deadline.into(), result).await {
            Ok(Ok(outcome)) => outcome,
            // Skipped at its deadline, or timed out waiting: the caller may retry later.
            Ok(Err(_)) | Err(_) => Err(HashError::Busy),
        }
    }

    /// Hashes a password.
    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        self.run(move || hash_blocking(password.expose_secret()))
            .await
    }

    /// Verifies `password` against `phc`; with `None` (no such user) it verifies against a
    /// dummy hash and returns `false`, so both cases take the same time.
    pub async fn verify(
        &self,
        password: SecretString,
        phc: Option<String>,
    ) -> Result<bool, HashError> {
        let (phc, real) = match phc {
            Some(phc) => (phc, true),
            None => (self.dummy_hash().await?, false),
        };
        let matched = self
            .run(move || verify_blocking(password.expose_secret(), &phc))
            .await?;
        Ok(matched && real)
    }

    async fn dummy_hash(&self) -> Result<String, HashError> {
        self.dummy
            .get_or_try_init(|| async {
                let random = SecretString::from(uuid::Uuid::new_v4().to_string());
                self.hash(random).await
            })
            .await
            .cloned()
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_strings_with_owasp_parameters() {
        let hash = hash_blocking("correct horse battery").unwrap_or_default();

        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert_eq!(
            verify_blocking("correct horse battery", &hash).ok(),
            Some(true)
        );
        assert_eq!(
            verify_blocking("wrong horse battery", &hash).ok(),
            Some(false)
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_instead_of_queueing_without_bound() {
        let hasher = Hasher::new();
        let phc = hash_blocking("the real password").unwrap_or_default();

        // Far more than the queue holds, all at the same moment.
        let results = futures::future::join_all(
            (0..200).map(|_| hasher.verify(SecretString::from("a guess"), Some(phc.clone()))),
        )
        .await;

        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(HashError::Busy)))
            .count();
        let checked = results.iter().filter(|r| matches!(r, Ok(false))).count();
        assert!(busy > 0, "a burst beyond the queue is refused");
        assert_eq!(busy + checked, 200, "every other guess was really checked");
    }

    #[tokio::test]
    async fn verifying_for_a_missing_user_is_always_false() {
        let hasher = Hasher::new();

        let result = hasher.verify(SecretString::from("anything"), None).await;

        assert_eq!(result.ok(), Some(false));
    }
}
