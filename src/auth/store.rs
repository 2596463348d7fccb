//! Every SQL statement of auth: users, the authenticator's look at a user's current state,
//! and the login throttle.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    Principal,
    throttle::{AttemptKeys, Reservation, ThrottlePolicy, decide},
};
use crate::{db, types::Email};

/// A stored user (never with its password).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    /// Primary key.
    pub id: Uuid,
    /// E-mail address, as entered (compared case-insensitively).
    pub email: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Role name.
    pub role: Option<String>,
    pub org_id: Option<Uuid>,
    /// Granted permissions.
    pub permissions: Vec<String>,
    /// A disabled user cannot log in.
    pub disabled: bool,
}

impl UserRecord {
    /// The principal this user logs in as.
    pub fn principal(&self) -> Principal {
        Principal {
            user_id: self.id.to_string(),
            email: self.email.clone(),
            org_id: self.org_id,
            role: self.role.clone(),
            permissions: self.permissions.iter().cloned().collect(),
        }
    }
}

/// The parts of a user that decide what their token may still do.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserState {
    /// E-mail address.
    pub email: String,
    /// Role name.
    pub role: Option<String>,
    pub org_id: Option<Uuid>,
    /// Granted permissions.
    pub permissions: Vec<String>,
    /// A disabled user's tokens stop working.
    pub disabled: bool,
}

/// The current state of user `id` (`None`: not a user of this service).
#[tracing::instrument(skip_all)]
pub async fn user_state(pool: &PgPool, id: Uuid) -> Result<Option<UserState>, sqlx::Error> {
    sqlx::query_as(db::sql(
        "SELECT email, role, org_id, permissions, disabled FROM bff.users WHERE id = $1",
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Finds a user by e-mail, case-insensitively.
#[tracing::instrument(skip_all)]
pub async fn find_user_by_email(
    pool: &PgPool,
    email: &Email,
) -> Result<Option<UserRecord>, sqlx::Error> {
    sqlx::query_as(db::sql(
        "SELECT id, email, password_hash, role, org_id, permissions, disabled
           FROM bff.users WHERE lower(email) = $1",
    ))
    .bind(email.as_str())
    .fetch_optional(pool)
    .await
}

/// Inserts a user with an already computed hash.
#[tracing::instrument(skip_all)]
pub async fn insert_user(
    pool: &PgPool,
    email: &Email,
    password_hash: &str,
    role: Option<&str>,
    org_id: Option<Uuid>,
    permissions: &[String],
) -> Result<UserRecord, sqlx::Error> {
    sqlx::query_as(db::sql(
        "INSERT INTO bff.users (email, password_hash, role, org_id, permissions)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING id, email, password_hash, role, org_id, permissions, disabled",
    ))
    .bind(email.as_str())
    .bind(password_hash)
    .bind(role)
    .bind(org_id)
    .bind(permissions)
    .fetch_one(pool)
    .await
}

/// Counts one attempt under every key of `keys`, before the password is checked.
#[tracing::instrument(skip_all)]
pub async fn reserve(
    pool: &PgPool,
    policy: &ThrottlePolicy,
    keys: &AttemptKeys,
) -> Result<Reservation, sqlx::Error> {
    let limit = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    let rows: Vec<(String, bool, Option<DateTime<Utc>>)> = sqlx::query_as(db::sql(
        "SELECT key, allowed, locked_until
           FROM bff.login_throttle_reserve($1, $2, $3, $4, make_interval(secs => $5),
                                       make_interval(secs => $6), make_interval(secs => $7))",
    ))
    .bind([&keys.pair, &keys.email, &keys.address])
    .bind([
        limit(policy.max_failures),
        limit(policy.max_failures_per_email),
        limit(policy.max_failures_per_address),
    ])
    // The pair's and the e-mail's locks grow; only the e-mail's is waived for an address that
    // never failed for it (the owner's), see the migration `login_throttle_owner_waiver`.
    .bind([true, true, false])
    .bind([false, true, false])
    .bind(policy.window.as_secs_f64())
    .bind(policy.lockout.as_secs_f64())
    .bind(policy.max_lockout.as_secs_f64())
    .fetch_all(pool)
    .await?;
    Ok(decide(&rows))
}

/// After a successful login: the pair starts over, and the e-mail and address get the attempt
/// back.
#[tracing::instrument(skip_all)]
pub async fn succeeded(pool: &PgPool, keys: &AttemptKeys) -> Result<(), sqlx::Error> {
    sqlx::query(db::sql(
        "WITH pair AS (DELETE FROM bff.login_throttle WHERE key = $1)
         UPDATE bff.login_throttle SET failures = greatest(failures - 1, 0) WHERE key = ANY($2)",
    ))
    .bind(&keys.pair)
    .bind([&keys.email, &keys.address])
    .execute(pool)
    .await
    .map(drop)
}

/// Gives a reserved attempt back to every key (it was never checked, e.g. the server was too
/// busy to hash it).
#[tracing::instrument(skip_all)]
pub async fn refund(pool: &PgPool, keys: &AttemptKeys) -> Result<(), sqlx::Error> {
    sqlx::query(db::sql(
        "UPDATE bff.login_throttle SET failures = greatest(failures - 1, 0) WHERE key = ANY($1)",
    ))
    .bind([&keys.pair, &keys.email, &keys.address])
    .execute(pool)
    .await
    .map(drop)
}

/// Deletes rows whose window and lock have both passed; returns how many.
#[tracing::instrument(skip_all)]
pub async fn purge_expired_throttle(pool: &PgPool) -> Result<u64, sqlx::Error> {
    sqlx::query(db::sql(
        "DELETE FROM bff.login_throttle WHERE expires_at < now()",
    ))
    .execute(pool)
    .await
    .map(|done| done.rows_affected())
}
