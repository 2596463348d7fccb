//! Authentication and authorization: users with argon2id passwords, HS256 JWT login, token
//! checks on every operation, and the permission guard.
//!
//! Resolvers never see raw claims: a verified token becomes a [`Principal`], and permission
//! checks go through [`Principal::require`] (or the [`RequirePermission`] GraphQL guard).

pub mod authenticator;
pub mod crypto;
pub mod external;
pub mod gate;
pub mod graphql;
mod login;
pub mod password;
pub mod store;
pub mod throttle;
pub mod token;
pub mod users;

use std::collections::BTreeSet;

pub use authenticator::Authenticator;
pub use graphql::RequirePermission;
pub use login::{LoginError, LoginService};
use uuid::Uuid;

use crate::error::ApiError;

/// Permission names, as the platform spells them in tokens.
pub mod permissions {
    /// May start an organization bootstrap.
    pub const CREATE_ROOT_ORGANIZATION: &str = "organization.create_root";
    /// May see every organization, not only their own.
    pub const VIEW_ALL_ORGANIZATIONS: &str = "organization.view_all";
    /// May pause, resume and cancel releases.
    pub const CONTROL_RELEASES: &str = "release.control";
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's ID (the token's `sub`).
    pub user_id: String,
    /// E-mail address.
    pub email: String,
    /// The organization the user belongs to.
    pub org_id: Option<Uuid>,
    /// Role name.
    pub role: Option<String>,
    /// Granted permissions.
    pub permissions: BTreeSet<String>,
}

/// Namespace of the actor IDs of callers whose subject is not a UUID (fixed forever).
const SUBJECT_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2d3e_4a5b_4c6d_9e7f_8a9b_0c1d_2e3f);

impl Principal {
    /// The UUID this caller acts under in `domain_events.created_by`, which also scopes its
    /// idempotency keys: the subject itself when it is a UUID, else the UUID v5 of the raw
    /// subject, so two service tokens `svc-a` and `svc-b` never share a scope.
    pub fn actor_id(&self) -> Uuid {
        Uuid::parse_str(&self.user_id)
            .unwrap_or_else(|_| Uuid::new_v5(&SUBJECT_NAMESPACE, self.user_id.as_bytes()))
    }

    /// Whether the caller holds `permission`.
    pub fn has(&self, permission: &str) -> bool {
        self.permissions.contains(permission)
    }

    /// `Ok` when the caller holds `permission`, `FORBIDDEN` otherwise.
    pub fn require(&self, permission: &str) -> Result<(), ApiError> {
        if self.has(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this requires the {permission} permission"
            )))
        }
    }

    /// Whether the caller may see organization `org_id`: their own, or any with
    /// `organization.view_all`.
    pub fn can_view_organization(&self, org_id: Uuid) -> bool {
        self.org_id == Some(org_id) || self.has(permissions::VIEW_ALL_ORGANIZATIONS)
    }
}

/// What the bearer token of a request amounted to.
#[derive(Debug, Clone)]
pub enum Authentication {
    /// No `Authorization` header.
    Anonymous,
    /// A valid token.
    Authenticated(Principal),
    /// A token was given but is not acceptable (the reason is for the log, not the client).
    Invalid(&'static str),
    /// The token is valid, but whether its user may still use it cannot be checked right now
    /// (the database does not answer).
    Unverified,
}

impl Authentication {
    /// The principal, or `UNAUTHENTICATED` (`UNAVAILABLE` when it cannot be checked now).
    pub fn principal(&self) -> Result<&Principal, ApiError> {
        match self {
            Self::Authenticated(principal) => Ok(principal),
            Self::Anonymous | Self::Invalid(_) => Err(ApiError::Unauthenticated),
            Self::Unverified => Err(ApiError::Unavailable(
                "cannot verify the caller right now; try again shortly".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(org: Option<Uuid>, permissions: &[&str]) -> Principal {
        Principal {
            user_id: "u1".into(),
            email: "a@example.com".into(),
            org_id: org,
            role: None,
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn callers_without_a_uuid_subject_act_under_one_id_each() {
        let named = |sub: &str| Principal {
            user_id: sub.to_owned(),
            ..principal(None, &[])
        };
        let user = Uuid::new_v4();

        assert_eq!(named(&user.to_string()).actor_id(), user);
        assert_ne!(named("svc-a").actor_id(), named("svc-b").actor_id());
        assert_eq!(named("svc-a").actor_id(), named("svc-a").actor_id());
    }

    #[test]
    fn a_user_sees_only_their_own_organization_without_view_all() {
        let (own, other) = (Uuid::new_v4(), Uuid::new_v4());

        let member = principal(Some(own), &[]);
        let auditor = principal(None, &[permissions::VIEW_ALL_ORGANIZATIONS]);

        assert!(member.can_view_organization(own));
        assert!(!member.can_view_organization(other));
        assert!(auditor.can_view_organization(other));
    }

    #[test]
    fn a_missing_permission_is_forbidden() {
        let viewer = principal(None, &["release.view"]);

        let result = viewer.require(permissions::CREATE_ROOT_ORGANIZATION);

        assert!(matches!(result, Err(ApiError::Forbidden(_))));
    }
}
