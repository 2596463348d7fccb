//! The `users` table: login accounts.

use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    Principal,
    password::{Hasher, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN},
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
    /// Organization.
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

/// What a new user gets.
#[derive(Debug)]
pub struct NewUser {
    /// E-mail address.
    pub email: Email,
    /// The password, checked for length before hashing.
    pub password: SecretString,
    /// Organization.
    pub org_id: Option<Uuid>,
    /// Role name.
    pub role: Option<String>,
    /// Permissions.
    pub permissions: Vec<String>,
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// Too short or too long.
    #[error("password must be between {MIN_PASSWORD_LEN} and {MAX_PASSWORD_LEN} characters")]
    PasswordLength,
    /// The e-mail is taken (case-insensitively).
    #[error("a user with email {0} already exists")]
    Duplicate(Email),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] super::password::HashError),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Finds a user by e-mail, case-insensitively.
#[tracing::instrument(skip_all)]
pub async fn find_by_email(
    pool: &PgPool,
    email: &Email,
) -> Result<Option<UserRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, email, password_hash, role, org_id, permissions, disabled
           FROM users WHERE lower(email) = $1",
    )
    .bind(email.as_str())
    .fetch_optional(pool)
    .await
}

/// Creates a user, hashing the password with argon2id.
#[tracing::instrument(skip_all, fields(user.email = %user.email))]
pub async fn create(
    pool: &PgPool,
    hasher: &Hasher,
    user: NewUser,
) -> Result<UserRecord, CreateUserError> {
    use secrecy::ExposeSecret;
    let length = user.password.expose_secret().chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&length) {
        return Err(CreateUserError::PasswordLength);
    }
    let password_hash = hasher.hash(user.password).await?;
    let inserted = sqlx::query_as(
        "INSERT INTO users (email, password_hash, role, org_id, permissions)
         VALUES ($1, $2, $3, $4, $5)
         RETURNING id, email, password_hash, role, org_id, permissions, disabled",
    )
    .bind(user.email.as_str())
    .bind(&password_hash)
    .bind(&user.role)
    .bind(user.org_id)
    .bind(&user.permissions)
    .fetch_one(pool)
    .await;
    match inserted {
        Ok(record) => Ok(record),
        Err(error) if db::is_unique_violation(&error) => {
            Err(CreateUserError::Duplicate(user.email))
        }
        Err(error) => Err(error.into()),
    }
}
