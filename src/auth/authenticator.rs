//! Who is calling: the bearer token, verified, and then checked against the user as they are
//! *now*, so revocation does not wait for the token to expire.
//!
//! For a token whose subject is a user of this service, the user's current row decides: a
//! disabled user is refused, and the role, organization and permissions come from the row, not
//! from the token. A token `login` issued (claim `local_user`) also needs the row to exist: a
//! deleted user's token stops working like a disabled one's. Rows are cached per process for at most `AUTH_USER_CACHE_MS`
//! (≤ 60 s), which bounds how long a change takes to apply. Tokens the platform issued for
//! users this service does not know carry their own claims.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    Authentication, Principal,
    external::ExternalIssuers,
    store::{self, UserState},
    token::{self, TokenService, Verified},
};

/// Cached rows kept at most; beyond this the cache starts over (it is only a cache).
const MAX_CACHED_USERS: usize = 10_000;

/// Verifies tokens and applies the user's current state.
pub struct Authenticator {
    tokens: TokenService,
    external: Arc<ExternalIssuers>,
    pool: PgPool,
    ttl: Duration,
    cache: Mutex<HashMap<Uuid, (Instant, Option<UserState>)>>,
}

impl Authenticator {
    /// An authenticator that re-reads a user at most every `ttl`.
    pub fn new(
        tokens: TokenService,
        external: Arc<ExternalIssuers>,
        pool: PgPool,
        ttl: Duration,
    ) -> Self {
        Self {
            tokens,
            external,
            pool,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The token service (for issuing tokens).
    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    /// Reads an `Authorization` header value into an [`Authentication`].
    pub async fn authenticate(&self, header: Option<&str>) -> Authentication {
        self.authenticate_until(header).await.0
    }

    /// [`Authenticator::authenticate`], and when the token expires (a socket closes then).
    #[tracing::instrument(skip_all, fields(auth.user = tracing::field::Empty))]
    pub async fn authenticate_until(
        &self,
        header: Option<&str>,
    ) -> (Authentication, Option<DateTime<Utc>>) {
        let token = match token::credentials(header) {
            Ok(token) => token,
            Err(other) => return (other, None),
        };
        let verified = match self.external.issuer_of(token) {
            Some(issuer) => issuer.verify(token).await,
            None => self.tokens.verify(token),
        };
        match verified {
            Ok(verified) => {
                let expires_at = verified.expires_at;
                (self.caller(verified).await, Some(expires_at))
            }
            Err(error) => (Authentication::Invalid(error.reason()), None),
        }
    }

    /// The caller a verified token stands for, as their row says now where one applies.
    async fn caller(&self, verified: Verified) -> Authentication {
        let Verified {
            principal,
            local_user,
            claims_only,
            ..
        } = verified;
        tracing::Span::current().record("auth.user", principal.user_id.as_str());
        if claims_only {
            return Authentication::Authenticated(principal);
        }
        let Ok(user_id) = Uuid::parse_str(&principal.user_id) else {
            if local_user {
                return Authentication::Invalid("unknown user");
            }
            return Authentication::Authenticated(principal);
        };
        match self.current(user_id).await {
            // A token `login` issued is only as good as its user's row.
            Ok(None) if local_user => Authentication::Invalid("user deleted"),
            Ok(None) => Authentication::Authenticated(principal),
            Ok(Some(user)) if user.disabled => Authentication::Invalid("user disabled"),
            Ok(Some(user)) => Authentication::Authenticated(Principal {
                user_id: principal.user_id,
                email: user.email,
                org_id: user.org_id,
                role: user.role,
                permissions: user.permissions.into_iter().collect(),
            }),
            Err(error) => {
                tracing::warn!(%error, "cannot check the caller's user");
                Authentication::Unverified
            }
        }
    }

    /// The user's current state (`None`: not a user of this service), cached for `ttl`.
    async fn current(&self, id: Uuid) -> Result<Option<UserState>, sqlx::Error> {
        if let Some(state) = self.cached(id) {
            return Ok(state);
        }
        let state = store::user_state(&self.pool, id).await?;
        let mut cache = match self.cache.lock() {
            Ok(cache) => cache,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cache.len() >= MAX_CACHED_USERS {
            cache.clear();
        }
        cache.insert(id, (Instant::now(), state.clone()));
        Ok(state)
    }

    fn cached(&self, id: Uuid) -> Option<Option<UserState>> {
        let cache = match self.cache.lock() {
            Ok(cache) => cache,
            Err(poisoned) => poisoned.into_inner(),
        };
        cache
            .get(&id)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, state)| state.clone())
    }
}
