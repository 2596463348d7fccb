//! The auth part of the GraphQL schema: `login`, `me`, the permission guard, and
//! [`RequireCaller`], the schema-wide check that every data field has a caller.

use std::net::IpAddr;

use async_graphql::{
    Context, ErrorExtensions, Guard, ID, Object, Pos, ResultExt, ServerError, SimpleObject,
    parser::types::ExecutableDocument,
};
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::{Authentication, LoginService, Principal, gate};
use crate::error::ApiError;

/// The client's address, as the login throttle counts it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// Root fields that need no caller.
const PUBLIC_ROOT_FIELDS: [&str; 4] = ["login", "__schema", "__type", "__typename"];

/// Defence in depth behind the gate: a document in which *any* operation selects a root field
/// that reads or writes data is refused without an authenticated caller, whatever a future gate
/// bug lets through. Checked once per document by [`crate::schema::AppSchema`] (a per-field
/// check costs about a tenth of a whole-tree read).
pub fn require_caller(
    document: &ExecutableDocument,
    authentication: &Authentication,
) -> Result<(), ServerError> {
    let Err(error) = authentication.principal() else {
        return Ok(());
    };
    let only_public = document.operations.iter().all(|(_, operation)| {
        gate::root_fields(document, &operation.node.selection_set.node)
            .is_some_and(|fields| fields.iter().all(|f| PUBLIC_ROOT_FIELDS.contains(f)))
    });
    if only_public {
        Ok(())
    } else {
        Err(error.extend().into_server_error(Pos::default()))
    }
}

/// The caller as resolvers see it.
pub trait ContextExt {
    /// The authenticated principal, or `UNAUTHENTICATED`.
    fn principal(&self) -> async_graphql::Result<&Principal>;
}

impl ContextExt for Context<'_> {
    fn principal(&self) -> async_graphql::Result<&Principal> {
        self.data_opt::<Authentication>()
            .ok_or(ApiError::Unauthenticated)
            .and_then(Authentication::principal)
            .extend()
    }
}

/// Guard: the caller must hold a permission (`FORBIDDEN` otherwise).
pub struct RequirePermission(pub &'static str);

impl Guard for RequirePermission {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        ctx.principal()?.require(self.0).extend()
    }
}

/// A login user.
#[derive(SimpleObject, Clone, Debug)]
pub struct User {
    /// The user's ID.
    pub id: ID,
    /// E-mail address.
    pub email: String,
    /// Role name, if any.
    pub role: Option<String>,
    /// The user's organization as a bare UUID (`organization(id:)` accepts it).
    pub org_id: Option<ID>,
    /// Granted permissions, e.g. `organization.create_root`.
    pub permissions: Vec<String>,
}

impl From<&Principal> for User {
    fn from(principal: &Principal) -> Self {
        Self {
            id: ID(principal.user_id.clone()),
            email: principal.email.clone(),
            role: principal.role.clone(),
            org_id: principal.org_id.map(|id| ID(id.to_string())),
            permissions: principal.permissions.iter().cloned().collect(),
        }
    }
}

/// A successful login.
#[derive(SimpleObject, Clone, Debug)]
pub struct AuthPayload {
    /// The bearer token: send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
    /// Who logged in.
    pub user: User,
}

/// Auth queries.
#[derive(Default)]
pub struct AuthQuery;

#[Object]
impl AuthQuery {
    /// The caller.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<User> {
        Ok(User::from(ctx.principal()?))
    }
}

/// Auth mutations.
#[derive(Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
    /// Exchanges an e-mail and password for a bearer token. The only operation that needs no
    /// token. Unknown e-mail and wrong password get the same `UNAUTHENTICATED` error; repeated
    /// failures for one e-mail are throttled (`RATE_LIMITED`, with `extensions.retryAfter`).
    async fn login(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> async_graphql::Result<AuthPayload> {
        let service = ctx.data::<LoginService>()?;
        let client = ctx
            .data_opt::<ClientAddr>()
            .map_or_else(|| IpAddr::from([0, 0, 0, 0]), |addr| addr.0);
        let logged_in = service
            .login(&email, SecretString::from(password), client)
            .await
            .map_err(ApiError::from)
            .extend()?;
        Ok(AuthPayload {
            token: logged_in.token,
            expires_at: logged_in.expires_at,
            user: User::from(&logged_in.principal),
        })
    }
}
