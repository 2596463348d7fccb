//! The login use case: throttle check, constant-shape password check, token.

use std::{net::IpAddr, sync::Arc};

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use sqlx::PgPool;

use super::{
    Principal,
    password::{HashError, Hasher, MAX_PASSWORD_LEN},
    store,
    throttle::{AttemptKeys, Reservation, ThrottlePolicy},
    token::TokenService,
};
use crate::{error::ApiError, metrics::Metrics, types::Email};

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
    /// Too many logins are being checked right now; try again in a moment.
    #[error("too many logins at once; try again in a moment")]
    Busy,
    /// The input cannot be a credential at all.
    #[error("{0}")]
    BadInput(&'static str),
    /// Something of ours failed.
    #[error("login failed: {0}")]
    Internal(String),
    /// `LOCAL_LOGIN=false`: callers sign in with the platform's identity provider.
    #[error("login is turned off here: sign in with the platform's identity provider")]
    Disabled,
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::InvalidCredentials => Self::Unauthenticated,
            LoginError::Throttled { retry_after_secs } => Self::RateLimited { retry_after_secs },
            LoginError::Busy => Self::RateLimited {
                retry_after_secs: 1,
            },
            LoginError::BadInput(message) => Self::BadUserInput {
                message: message.to_owned(),
                field: None,
            },
            LoginError::Internal(cause) => Self::internal(anyhow::anyhow!(cause)),
            LoginError::Disabled => Self::Forbidden(LoginError::Disabled.to_string()),
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

/// Logins between their first statement and their answer at once, per process. Each holds a
/// pool connection while it waits on the throttle's row locks (parallel guesses for one e-mail
/// queue there), so this bounds the share of the pool logins can take; past it a login is
/// answered `RATE_LIMITED` at once instead of waiting.
pub const LOGINS_AT_ONCE: usize = 4;

/// Logs users in.
#[derive(Clone)]
pub struct LoginService {
    pool: PgPool,
    at_once: Arc<tokio::sync::Semaphore>,
    hasher: Hasher,
    tokens: TokenService,
    policy: ThrottlePolicy,
    metrics: Arc<Metrics>,
    enabled: bool,
}

impl LoginService {
    /// Builds the service; it counts the passwords it checks in `metrics`.
    pub fn new(
        pool: PgPool,
        hasher: Hasher,
        tokens: TokenService,
        policy: ThrottlePolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            pool,
            at_once: Arc::new(tokio::sync::Semaphore::new(LOGINS_AT_ONCE)),
            hasher,
            tokens,
            policy,
            metrics,
            enabled: true,
        }
    }

    /// Turns logins on or off (`LOCAL_LOGIN`); off, every attempt is refused before anything
    /// else.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Checks `email` / `password` from client address `client` and issues a token.
    ///
    /// The attempt is counted before the password is hashed (see [`throttle`]), so parallel
    /// guesses cannot outrun the limit, and a correct password sent while locked gets no token.
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        email: &str,
        password: SecretString,
        client: IpAddr,
    ) -> Result<LoggedIn, LoginError> {
        let result = if self.enabled {
            self.attempt(email, password, client).await
        } else {
            Err(LoginError::Disabled)
        };
        self.metrics.login(match &result {
            Ok(_) => "success",
            Err(LoginError::InvalidCredentials | LoginError::BadInput(_)) => "failure",
            Err(LoginError::Throttled { .. }) => "throttled",
            Err(LoginError::Busy) => "busy",
            Err(LoginError::Internal(_)) => "error",
            Err(LoginError::Disabled) => "disabled",
        });
        result
    }

    async fn attempt(
        &self,
        email: &str,
        password: SecretString,
        client: IpAddr,
    ) -> Result<LoggedIn, LoginError> {
        use secrecy::ExposeSecret;
        let email = Email::parse(email).map_err(|_| LoginError::InvalidCredentials)?;
        if password.expose_secret().len() > MAX_PASSWORD_LEN {
            return Err(LoginError::BadInput("password is too long"));
        }
        let internal = |e: &dyn std::fmt::Display| LoginError::Internal(e.to_string());
        let keys = AttemptKeys::new(client, &email);
        let Ok(turn) = self.at_once.try_acquire() else {
            return Err(LoginError::Busy);
        };
        let locks_at = match store::reserve(&self.pool, &self.policy, &keys)
            .await
            .map_err(|e| internal(&e))?
        {
            Reservation::Refused { until } => return Err(throttled(until)),
            Reservation::Allowed { locked_until } => locked_until,
        };
        let user = store::find_user_by_email(&self.pool, &email)
            .await
            .map_err(|e| internal(&e))?;
        // Hashing has its own bounded queue and holds no connection.
        drop(turn);
        // Always verify, against a dummy hash when there is no user, so timing tells nothing.
        self.metrics.password_check();
        let matched = match self
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await
        {
            Ok(matched) => matched,
            Err(HashError::Busy) => {
                // Never checked: the attempt does not count against anyone.
                store::refund(&self.pool, &keys)
                    .await
                    .map_err(|e| internal(&e))?;
                return Err(LoginError::Busy);
            }
            Err(error) => return Err(internal(&error)),
        };
        match user {
            Some(user) if matched && !user.disabled => {
                store::succeeded(&self.pool, &keys)
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
            _ => Err(locks_at.map_or(LoginError::InvalidCredentials, throttled)),
        }
    }
}

fn throttled(until: DateTime<Utc>) -> LoginError {
    LoginError::Throttled {
        retry_after_secs: (until - Utc::now()).num_seconds().max(1),
    }
}
