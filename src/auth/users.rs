//! Login accounts: creating one (the password checked and hashed first).

use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;

pub use super::store::UserRecord;
use super::{
    password::{Hasher, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN},
    store,
};
use crate::{db, types::Email};

/// What a new user gets.
#[derive(Debug)]
pub struct NewUser {
    /// E-mail address.
    pub email: Email,
    /// The password, checked for length before hashing.
    pub password: SecretString,
    pub org_id: Option<Uuid>,
    /// Role name.
    pub role: Option<String>,
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
    let password_hash = hasher.hash(user.password.clone()).await?;
    let inserted = store::insert_user(
        pool,
        &user.email,
        &password_hash,
        user.role.as_deref(),
        user.org_id,
        &user.permissions,
    )
    .await;
    match inserted {
        Ok(record) => Ok(record),
        Err(error) if db::is_unique_violation(&error) => {
            Err(CreateUserError::Duplicate(user.email))
        }
        Err(error) => Err(error.into()),
    }
}
