//! HS256 JWTs with the platform's own claim names, so tokens the platform already issues with
//! the shared secret are accepted too.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Principal;
use crate::Config;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 30;

/// The token's claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user's ID.
    pub sub: String,
    /// E-mail address.
    #[serde(default)]
    pub email: String,
    /// Organization (UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<Uuid>,
    /// Role name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_role: Option<String>,
    /// Granted permissions.
    #[serde(default)]
    pub permissions: BTreeSet<String>,
    /// Issued at (seconds since the epoch).
    pub iat: i64,
    /// Expires at (seconds since the epoch).
    pub exp: i64,
    /// Not before (seconds since the epoch), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub iss: String,
    pub aud: String,
    /// Set on the tokens `login` issues: such a token is only as good as its user's row, and
    /// is refused once the row is gone. Tokens the platform issued do not carry it and keep
    /// their own claims.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local_user: bool,
}

/// A verified token: who it names, until when, and which user rows it answers to.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The caller, as the token's claims say.
    pub principal: Principal,
    /// Issued by `login`: the user's row must still exist.
    pub local_user: bool,
    /// From an issuer of `AUTH_ISSUERS`: its claims are the caller, and no row is consulted.
    pub claims_only: bool,
    /// When it expires (a socket closes then).
    pub expires_at: DateTime<Utc>,
}

/// Why a token was refused (for the log; clients only see `UNAUTHENTICATED`).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Signing failed (a bug or a bad key).
    #[error("cannot sign token: {0}")]
    Sign(String),
    /// The token is not acceptable.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
}

/// Why `jsonwebtoken` refused a token, as a [`TokenError`].
pub fn refused(error: &jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind;
    TokenError::Invalid(match error.kind() {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not yet valid",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm => "algorithm not allowed",
        ErrorKind::MissingRequiredClaim(_) => "missing claim",
        _ => "malformed",
    })
}

impl TokenError {
    /// Why, for the log.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Sign(_) => "malformed",
            Self::Invalid(why) => why,
        }
    }
}

/// Issues and verifies tokens with the configured key, issuer and audience.
#[derive(Clone)]
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: chrono::Duration,
}

impl TokenService {
    /// Builds the service from the configuration.
    pub fn new(config: &Config) -> Self {
        let secret = config.auth.jwt_secret.expose_secret().as_bytes();
        // HS256 only: `alg: none`, RS256 and every other algorithm are refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.auth.jwt_issuer]);
        validation.set_audience(&[&config.auth.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: config.auth.jwt_issuer.clone(),
            audience: config.auth.jwt_audience.clone(),
            ttl: chrono::Duration::from_std(config.auth.jwt_ttl)
                .unwrap_or(chrono::Duration::hours(1)),
        }
    }

    /// Signs a token for `principal`; returns it with its expiry.
    pub fn issue(&self, principal: &Principal) -> Result<(String, DateTime<Utc>), TokenError> {
        let now = Utc::now();
        let expires_at = now + self.ttl;
        let claims = Claims {
            sub: principal.user_id.clone(),
            email: principal.email.clone(),
            org_id: principal.org_id,
            user_role: principal.role.clone(),
            permissions: principal.permissions.clone(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            nbf: None,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            local_user: true,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok((token, expires_at))
    }

    /// Verifies `token` and turns its claims into a principal.
    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let claims = self.verify_claims(token)?;
        Ok(Verified {
            local_user: claims.local_user,
            claims_only: false,
            expires_at: DateTime::from_timestamp(claims.exp, 0)
                .ok_or(TokenError::Invalid("malformed"))?,
            principal: Principal {
                user_id: claims.sub,
                email: claims.email,
                org_id: claims.org_id,
                role: claims.user_role,
                permissions: claims.permissions,
            },
        })
    }

    fn verify_claims(&self, token: &str) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| refused(&e))?;
        if data.claims.sub.trim().is_empty() {
            return Err(TokenError::Invalid("empty subject"));
        }
        Ok(data.claims)
    }
}

/// The bearer token of an `Authorization` header value, or what the request amounts to
/// without one: a bearer scheme with no token at all (GraphiQL's headers pane before one is
/// pasted in) carries no credentials, unlike a token that is malformed.
pub fn credentials(header: Option<&str>) -> Result<&str, super::Authentication> {
    let Some(header) = header.filter(|h| !h.trim().eq_ignore_ascii_case("bearer")) else {
        return Err(super::Authentication::Anonymous);
    };
    bearer(header).map_err(super::Authentication::Invalid)
}

/// The token of an `Authorization` value: `Bearer <token>`, the scheme in any case, then
/// spaces, then one token.
fn bearer(header: &str) -> Result<&str, &'static str> {
    header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim_matches(' '))
        .filter(|token| !token.is_empty() && !token.contains(char::is_whitespace))
        .ok_or("not a bearer token")
}
