//! Login throttling per e-mail, in Postgres so every replica shares it.
//!
//! After `max_failures` failed logins within the window the e-mail is locked for `lockout`;
//! when the lock ends the count starts over, and a successful login clears it. Nobody is locked
//! out for longer than one `lockout` at a time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::types::Email;

/// Throttling policy.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Failures allowed within `window` before locking.
    pub max_failures: u32,
    /// How far back failures count.
    pub window: Duration,
    /// How long a lock lasts.
    pub lockout: Duration,
}

/// A stored failure count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    /// Failures in the current window.
    pub failures: i32,
    /// When the current window began.
    pub window_started_at: DateTime<Utc>,
    /// When the current lock ends, if locked.
    pub locked_until: Option<DateTime<Utc>>,
}

impl FailureCount {
    /// The count after one more failure at `now`: a window that has passed, or a lock that has
    /// ended, starts the count over; reaching the limit locks.
    pub fn after_failure(self, now: DateTime<Utc>, policy: ThrottlePolicy) -> Self {
        let window = chrono::Duration::from_std(policy.window).unwrap_or(chrono::Duration::MAX);
        let lockout = chrono::Duration::from_std(policy.lockout).unwrap_or(chrono::Duration::MAX);
        let start_over = self.window_started_at + window < now
            || self.locked_until.is_some_and(|until| until <= now);
        let (failures, window_started_at) = if start_over {
            (1, now)
        } else {
            (self.failures.saturating_add(1), self.window_started_at)
        };
        let limit = i32::try_from(policy.max_failures).unwrap_or(i32::MAX);
        Self {
            failures,
            window_started_at,
            locked_until: (failures >= limit).then(|| now + lockout),
        }
    }
}

/// If `email` is locked, until when.
#[tracing::instrument(skip_all)]
pub async fn locked_until(
    pool: &PgPool,
    email: &Email,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT locked_until FROM login_throttle WHERE email = $1 AND locked_until > now()",
    )
    .bind(email.as_str())
    .fetch_optional(pool)
    .await
    .map(Option::flatten)
}

/// Records a failed login; returns the lock's end if the e-mail is now locked.
#[tracing::instrument(skip_all)]
pub async fn record_failure(
    pool: &PgPool,
    email: &Email,
    policy: ThrottlePolicy,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Make sure a row exists, then lock it: concurrent failures are counted one after another.
    sqlx::query(
        "INSERT INTO login_throttle (email, failures, window_started_at)
         VALUES ($1, 0, now()) ON CONFLICT (email) DO NOTHING",
    )
    .bind(email.as_str())
    .execute(&mut *tx)
    .await?;
    let (failures, window_started_at, locked_until, now): (
        i32,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        DateTime<Utc>,
    ) = sqlx::query_as(
        "SELECT failures, window_started_at, locked_until, now()
           FROM login_throttle WHERE email = $1 FOR UPDATE",
    )
    .bind(email.as_str())
    .fetch_one(&mut *tx)
    .await?;
    let next = FailureCount {
        failures,
        window_started_at,
        locked_until,
    }
    .after_failure(now, policy);
    sqlx::query(
        "UPDATE login_throttle SET failures = $2, window_started_at = $3, locked_until = $4
          WHERE email = $1",
    )
    .bind(email.as_str())
    .bind(next.failures)
    .bind(next.window_started_at)
    .bind(next.locked_until)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(next.locked_until)
}

/// Clears the count after a successful login.
#[tracing::instrument(skip_all)]
pub async fn clear(pool: &PgPool, email: &Email) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_throttle WHERE email = $1")
        .bind(email.as_str())
        .execute(pool)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: ThrottlePolicy = ThrottlePolicy {
        max_failures: 3,
        window: Duration::from_secs(900),
        lockout: Duration::from_secs(60),
    };

    fn fresh(now: DateTime<Utc>) -> FailureCount {
        FailureCount {
            failures: 0,
            window_started_at: now,
            locked_until: None,
        }
    }

    #[test]
    fn the_limit_th_failure_locks_for_the_lockout() {
        let now = Utc::now();

        let third = fresh(now)
            .after_failure(now, POLICY)
            .after_failure(now, POLICY)
            .after_failure(now, POLICY);

        assert_eq!(third.failures, 3);
        assert_eq!(
            third.locked_until,
            Some(now + chrono::Duration::seconds(60))
        );
    }

    #[test]
    fn a_failure_after_the_lock_ended_starts_the_count_over() {
        let now = Utc::now();
        let locked = FailureCount {
            failures: 3,
            window_started_at: now,
            locked_until: Some(now + chrono::Duration::seconds(60)),
        };

        let later = locked.after_failure(now + chrono::Duration::seconds(61), POLICY);

        assert_eq!(later.failures, 1);
        assert_eq!(later.locked_until, None);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let now = Utc::now();
        let old = FailureCount {
            failures: 2,
            window_started_at: now - chrono::Duration::seconds(901),
            locked_until: None,
        };

        let next = old.after_failure(now, POLICY);

        assert_eq!((next.failures, next.locked_until), (1, None));
    }
}
