//! Password hashing with argon2id at OWASP's parameters, off the async workers.
//!
//! One hash costs tens of milliseconds of CPU. Hashes run on a few dedicated threads (half the
//! cores, at least one) in the idle scheduling class, so a burst of logins queues up instead of
//! taking cores from other requests, and the scheduler always prefers those requests.

use std::sync::{Arc, Mutex, mpsc};

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

/// Hashing failed (only on a malformed stored hash or an internal fault).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

fn argon2() -> Result<Argon2<'static>, HashError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .map_err(|e| HashError(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` to an argon2id PHC string (blocking; call from a blocking context).
pub fn hash_blocking(password: &str) -> Result<String, HashError> {
    argon2()?
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the PHC string `phc` (blocking).
pub fn verify_blocking(password: &str, phc: &str) -> Result<bool, HashError> {
    let parsed = PasswordHash::new(phc).map_err(|e| HashError(e.to_string()))?;
    // The parameters come from the stored hash, so older hashes keep verifying.
    Ok(argon2()?
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs hashing on its own low-priority threads.
#[derive(Clone)]
pub struct Hasher {
    jobs: mpsc::Sender<Job>,
    dummy: Arc<OnceCell<String>>,
}

/// Puts the calling thread in the `SCHED_IDLE` class (it runs only when a core would otherwise
/// idle, and yields at once to request handling), or at least at nice 19.
#[allow(unsafe_code)]
fn lower_current_thread_priority() {
    // SAFETY: `sched_setscheduler`, `gettid` and `setpriority` on the calling thread (pid 0 /
    // its own TID) with a valid, fully initialised `sched_param` have no memory-safety
    // preconditions; failures are only reported through the return values.
    let lowered = unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0
            || libc::setpriority(
                libc::PRIO_PROCESS,
                u32::try_from(libc::gettid()).unwrap_or(0),
                19,
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
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..(cores / 2).max(1) {
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
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(job());
            }))
            .map_err(|_| HashError("hashing threads are gone".into()))?;
        result
            .await
            .map_err(|_| HashError("hashing thread stopped".into()))?
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
    async fn verifying_for_a_missing_user_is_always_false() {
        let hasher = Hasher::new();

        let result = hasher.verify(SecretString::from("anything"), None).await;

        assert_eq!(result.ok(), Some(false));
    }
}
