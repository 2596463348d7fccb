//! The login use case: throttle check, constant-shape password check, token.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::PgPool;

use super::{
    Principal,
    password::{Hasher, MAX_PASSWORD_LEN},
    throttle::{self, ThrottlePolicy},
    token::TokenService,
    users,
};
use crate::{error::ApiError, types::Email};

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown e-mail, wrong password or disabled user: deliberately indistinguishable.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Too many recent failures for this e-mail.
    #[error("too many failed logins; try again in {retry_after_secs} seconds")]
    Throttled {
        /// Seconds until the next attempt is allowed.
        retry_after_secs: i64,
    },
    /// The input cannot be a credential at all.
    #[error("{0}")]
    BadInput(&'static str),
    /// Something of ours failed.
    #[error("login failed: {0}")]
    Internal(String),
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::InvalidCredentials => Self::Unauthenticated,
            LoginError::Throttled { retry_after_secs } => Self::RateLimited { retry_after_secs },
            LoginError::BadInput(message) => Self::BadUserInput {
                message: message.to_owned(),
                field: None,
            },
            LoginError::Internal(cause) => Self::internal(anyhow::anyhow!(cause)),
        }
    }
}

/// A successful login.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// The signed JWT.
    pub token: String,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// Who logged in.
    pub principal: Principal,
}

/// Logs users in.
#[derive(Clone)]
pub struct LoginService {
    pool: PgPool,
    hasher: Hasher,
    tokens: TokenService,
    policy: ThrottlePolicy,
}

impl LoginService {
    /// Builds the service.
    pub fn new(pool: PgPool, hasher: Hasher, tokens: TokenService, policy: ThrottlePolicy) -> Self {
        Self {
            pool,
            hasher,
            tokens,
            policy,
        }
    }

    /// Checks `email` / `password` and issues a token.
    #[tracing::instrument(skip_all)]
    pub async fn login(&self, email: &str, password: SecretString) -> Result<LoggedIn, LoginError> {
        use secrecy::ExposeSecret;
        let email = Email::parse(email).map_err(|_| LoginError::InvalidCredentials)?;
        if password.expose_secret().len() > MAX_PASSWORD_LEN {
            return Err(LoginError::BadInput("password is too long"));
        }
        let internal = |e: &dyn std::fmt::Display| LoginError::Internal(e.to_string());

        if let Some(until) = throttle::locked_until(&self.pool, &email)
            .await
            .map_err(|e| internal(&e))?
        {
            return Err(throttled(until));
        }
        let user = users::find_by_email(&self.pool, &email)
            .await
            .map_err(|e| internal(&e))?;
        // Always verify, against a dummy hash when there is no user, so timing tells nothing.
        let matched = self
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await
            .map_err(|e| internal(&e))?;
        match user {
            Some(user) if matched && !user.disabled => {
                throttle::clear(&self.pool, &email)
                    .await
                    .map_err(|e| internal(&e))?;
                let principal = user.principal();
                let (token, expires_at) =
                    self.tokens.issue(&principal).map_err(|e| internal(&e))?;
                tracing::info!(user.id = %principal.user_id, "login succeeded");
                Ok(LoggedIn {
                    token,
                    expires_at,
                    principal,
                })
            }
            _ => {
                let locked = throttle::record_failure(&self.pool, &email, self.policy)
                    .await
                    .map_err(|e| internal(&e))?;
                Err(locked.map_or(LoginError::InvalidCredentials, throttled))
            }
        }
    }
}

fn throttled(until: DateTime<Utc>) -> LoginError {
    LoginError::Throttled {
        retry_after_secs: (until - Utc::now()).num_seconds().max(1),
    }
}
