//! The onboarding part of the GraphQL schema: `organization`, `organizations` and
//! `startOrganizationBootstrap`. The objects are in `objects`, batched loading in `loader`.

mod loader;
mod objects;
mod subscription;

use std::sync::Arc;

use async_graphql::{
    Context, ErrorExtensions, ID, InputObject, Object, ResultExt, SimpleObject,
    connection::{Connection, Edge},
};
use sqlx::PgPool;
use uuid::Uuid;

pub use self::{
    loader::OnboardingLoader,
    objects::{Organization, parse_organization_id, visible_organization},
    subscription::OnboardingSubscription,
};
use super::{
    request::{RawAdmin, RawRequest},
    start::{BootstrapRequestStatus, BootstrapStarter},
    store,
};
use crate::{
    auth::{RequirePermission, graphql::ContextExt, permissions},
    contracts::bootstrap::OrganizationType,
    error::ApiError,
    graphql::{
        connection::{
            ConnectionTotal, DEFAULT_PAGE, bad_cursor, check_page_size, decode_keyset,
            encode_keyset, page_complexity,
        },
        context::RequestId,
    },
    metrics::RequestStats,
    types::TraceParent,
};

/// Onboarding queries.
#[derive(Default)]
pub struct OnboardingQuery;

#[Object]
impl OnboardingQuery {
    /// One organization by global ID or bare UUID; `null` if it does not exist or is not the
    /// caller's (without `organization.view_all`).
    async fn organization(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Organization>> {
        let id = parse_organization_id(&id)?;
        visible_organization(ctx, id).await
    }

    /// Organizations the caller may see (their own, or all with `organization.view_all`),
    /// oldest first (at most 100 per page, 20 by default).
    #[graphql(complexity = "page_complexity(first, None, child_complexity)")]
    async fn organizations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Organization, ConnectionTotal>> {
        let principal = ctx.principal()?;
        let only = if principal.has(permissions::VIEW_ALL_ORGANIZATIONS) {
            None
        } else {
            // Without an organization of their own, a caller sees none.
            Some(principal.org_id.unwrap_or(Uuid::nil()))
        };
        check_page_size("first", first)?;
        let first = first.unwrap_or(DEFAULT_PAGE);
        let after = match after {
            Some(cursor) => {
                let (at, id) = decode_keyset("after", &cursor)?;
                let id = Uuid::parse_str(&id).map_err(|_| bad_cursor("after").extend())?;
                Some((at, id))
            }
            None => None,
        };
        let stats = ctx.data::<Arc<RequestStats>>()?;
        let (rows, total) = store::organization_page(
            ctx.data::<PgPool>()?,
            stats,
            only,
            after,
            i64::from(first) + 1,
        )
        .await
        .map_err(ApiError::from)
        .extend()?;
        let limit = usize::try_from(first).unwrap_or(0);
        let has_next = rows.len() > limit;
        let mut connection = Connection::with_additional_fields(
            after.is_some(),
            has_next,
            ConnectionTotal { total_count: total },
        );
        for row in rows.into_iter().take(limit) {
            let cursor = encode_keyset(row.created_at, &row.id.to_string());
            connection
                .edges
                .push(Edge::new(cursor, Organization(Box::new(row))));
        }
        Ok(connection)
    }
}

/// An administrator to invite.
#[derive(InputObject)]
pub struct AdminUserInput {
    /// E-mail address (distinct within the request).
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Role (default `provider_admin`).
    pub role: Option<String>,
}

/// What to onboard.
#[derive(InputObject)]
pub struct StartOrganizationBootstrapInput {
    /// Display name, 1–200 characters.
    pub name: String,
    /// Subdomain: lowercase letters, digits and hyphens, 3–63, not reserved.
    pub subdomain: String,
    /// Kind.
    #[graphql(name = "type")]
    pub org_type: OrganizationType,
    /// 1–20 administrators with distinct e-mails.
    pub admin_users: Vec<AdminUserInput>,
    /// Repeating a request with the same key returns the first one's result.
    pub idempotency_key: Option<String>,
}

/// The answer to a start.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct StartOrganizationBootstrapPayload {
    /// The organization's UUID.
    pub organization_id: ID,
    /// Its bootstrap workflow ID, `org-bootstrap-{organizationId}`.
    pub workflow_id: String,
    /// `STARTED`, `QUEUED` (Temporal unreachable; it will start) or `ALREADY_EXISTS`.
    pub status: BootstrapRequestStatus,
    #[graphql(skip)]
    organization: Uuid,
}

#[async_graphql::ComplexObject]
impl StartOrganizationBootstrapPayload {
    /// The organization and its onboarding status.
    async fn organization(&self, ctx: &Context<'_>) -> async_graphql::Result<Organization> {
        visible_organization(ctx, self.organization)
            .await?
            .ok_or_else(|| ApiError::NotFound("organization not found".into()))
            .extend()
    }
}

/// Onboarding mutations.
#[derive(Default)]
pub struct OnboardingMutation;

#[Object]
impl OnboardingMutation {
    /// Starts onboarding an organization (needs `organization.create_root`). Validated before
    /// anything is written; never lost once answered; idempotent by `idempotencyKey` and by
    /// subdomain.
    #[graphql(guard = "RequirePermission(permissions::CREATE_ROOT_ORGANIZATION)")]
    async fn start_organization_bootstrap(
        &self,
        ctx: &Context<'_>,
        input: StartOrganizationBootstrapInput,
    ) -> async_graphql::Result<StartOrganizationBootstrapPayload> {
        let principal = ctx.principal()?;
        let request = RawRequest {
            name: input.name,
            subdomain: input.subdomain,
            org_type: input.org_type.as_str().to_owned(),
            admin_users: input
                .admin_users
                .into_iter()
                .map(|a| RawAdmin {
                    email: a.email,
                    first_name: a.first_name,
                    last_name: a.last_name,
                    role: a.role,
                })
                .collect(),
            idempotency_key: input.idempotency_key,
        }
        .parse()
        .extend()?;
        let correlation = ctx
            .data_opt::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let outcome = ctx
            .data::<BootstrapStarter>()?
            .start(
                principal,
                request,
                &correlation,
                ctx.data_opt::<TraceParent>().cloned(),
            )
            .await
            .extend()?;
        Ok(StartOrganizationBootstrapPayload {
            organization_id: ID(outcome.organization_id.to_string()),
            workflow_id: outcome.workflow_id,
            status: outcome.status,
            organization: outcome.organization_id,
        })
    }
}
