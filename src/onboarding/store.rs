//! Every SQL statement of onboarding: reading organizations, their audit trail, outbox row and
//! invitations (the status read, one statement per batch each), and finding the organization a
//! repeated start request refers to. The outbox's own statements are `crate::outbox::store`.
//! Status columns are parsed into enums on the row, once: a
//! value the code does not know is an error, never a silent default.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{contracts::bootstrap::OrganizationType, db, metrics::RequestStats};

/// A status column held a value this code does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown {column} {value:?}")]
pub struct UnknownValue {
    column: &'static str,
    value: String,
}

/// Declares an enum stored as text: its GraphQL enum and its parse from the column.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident ($column:literal) { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// The value as stored.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownValue;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                match value.as_str() {
                    $($text => Ok(Self::$variant),)*
                    _ => Err(UnknownValue { column: $column, value }),
                }
            }
        }
    };
}

stored_enum! {
    /// The status of an organization.
    OrganizationStatus ("organization status") {
        /// Being onboarded.
        Pending = "pending",
        /// Onboarded.
        Active = "active",
        /// Onboarding failed.
        Failed = "failed",
        /// Deactivated.
        Deactivated = "deactivated",
    }
}

stored_enum! {
    /// The state of an organization's subdomain.
    SubdomainStatus ("subdomain status") {
        /// Nothing done yet.
        Pending = "pending",
        /// The DNS record exists.
        DnsRecordCreated = "dns_record_created",
        /// Verification is being retried.
        Verifying = "verifying",
        /// It resolves.
        Verified = "verified",
        /// Verification failed (the record was removed).
        Failed = "failed",
    }
}

stored_enum! {
    /// Where a start request is in the outbox.
    QueueStatus ("outbox status") {
        /// Waiting to be started.
        Pending = "pending",
        /// Claimed by a dispatcher.
        Processing = "processing",
        /// The workflow started.
        Completed = "completed",
        /// Temporal refused it for good.
        Failed = "failed",
    }
}

/// A row of `organizations_projection`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrganizationRow {
    pub id: Uuid,
    pub name: String,
    #[sqlx(rename = "type", try_from = "String")]
    pub org_type: OrganizationType,
    /// Slug (subdomain).
    pub slug: String,
    /// `{slug}.{BASE_DOMAIN}`.
    pub fqdn: String,
    #[sqlx(try_from = "String")]
    pub status: OrganizationStatus,
    /// Where its subdomain is.
    #[sqlx(try_from = "String")]
    pub subdomain_status: SubdomainStatus,
    /// Workflow ID.
    pub workflow_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An organization row's column list, as a literal so statements can `concat!` it.
macro_rules! columns {
    () => {
        "id, name, type, slug, fqdn, status, subdomain_status, workflow_id, created_at"
    };
}

/// Every organization row, as a literal so statements can `concat!` their conditions to it.
macro_rules! org_columns {
    () => {
        concat!("SELECT ", columns!(), " FROM bff.organizations_projection")
    };
}

/// Organizations whose bootstrap the projection shows under way, least recently changed
/// first, at most `limit`: (ID, workflow ID).
#[tracing::instrument(skip_all)]
pub async fn open_bootstraps(
    pool: &PgPool,
    stats: &RequestStats,
    limit: i64,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    let _slot = stats.sql(1, "onboarding.open_bootstraps").await;
    sqlx::query_as(db::sql(
        "SELECT id, workflow_id FROM bff.organizations_projection
          WHERE status = 'pending' AND workflow_id IS NOT NULL
          ORDER BY updated_at LIMIT $1",
    ))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Organizations by ID (one statement).
#[tracing::instrument(skip_all, fields(organizations.count = ids.len()))]
pub async fn organizations(
    pool: &PgPool,
    stats: &RequestStats,
    ids: &[Uuid],
) -> Result<Vec<OrganizationRow>, sqlx::Error> {
    let _slot = stats.sql(1, "onboarding.organizations").await;
    sqlx::query_as(db::sql(concat!(org_columns!(), " WHERE id = ANY($1)")))
        .bind(ids)
        .fetch_all(pool)
        .await
}

/// A page of organizations, oldest first, optionally only `only` (the caller's own), with the
/// total count (one statement: see [`db::page`]).
#[tracing::instrument(skip_all)]
pub async fn organization_page(
    pool: &PgPool,
    stats: &RequestStats,
    only: Option<Uuid>,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<(Vec<OrganizationRow>, i64), sqlx::Error> {
    let _slot = stats.sql(1, "onboarding.organization_page").await;
    let counted = sqlx::query_as(db::sql(concat!(
        "SELECT counted.page_total, page.* FROM (SELECT count(*) AS page_total
           FROM bff.organizations_projection WHERE ($1::uuid IS NULL OR id = $1)) counted
         LEFT JOIN LATERAL (SELECT true AS page_row, ",
        columns!(),
        " FROM bff.organizations_projection
          WHERE ($1::uuid IS NULL OR id = $1)
            AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
          ORDER BY created_at, id LIMIT $4) page ON true
         ORDER BY created_at, id"
    )))
    .bind(only)
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(db::page::split(counted))
}

/// The outbox row of an organization's start request.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub organization_id: Uuid,
    /// Where it is.
    #[sqlx(try_from = "String")]
    pub status: QueueStatus,
    /// The last failure, as fixed text.
    pub last_error: Option<String>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
}

/// One stored event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    /// Event ID.
    pub id: Uuid,
    pub event_type: String,
    pub event_data: Value,
    pub event_metadata: Value,
    pub created_at: DateTime<Utc>,
}

/// An invitation.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvitationRow {
    pub organization_id: Uuid,
    pub email: String,
    pub role: Option<String>,
    pub status: String,
}

/// Everything a bootstrap status shows, for one organization.
#[derive(Debug, Clone, Default)]
pub struct BootstrapDetails {
    /// Its outbox row, if the BFF started it.
    pub outbox: Option<OutboxRow>,
    /// Its audit trail, oldest first.
    pub events: Vec<EventRow>,
    /// Its invitations.
    pub invitations: Vec<InvitationRow>,
}

/// Details of several organizations: three statements for the whole batch, run together.
/// Events are found through the indexed `workflow_id` metadata of each bootstrap workflow.
#[tracing::instrument(skip_all, fields(organizations.count = organizations.len()))]
pub async fn details(
    pool: &PgPool,
    stats: &RequestStats,
    organizations: &[(Uuid, String)],
) -> Result<HashMap<Uuid, BootstrapDetails>, sqlx::Error> {
    let ids: Vec<Uuid> = organizations.iter().map(|(id, _)| *id).collect();
    let workflow_ids: Vec<&str> = organizations.iter().map(|(_, w)| w.as_str()).collect();
    let outbox = sqlx::query_as::<_, OutboxRow>(db::sql(
        "SELECT DISTINCT ON (organization_id) organization_id, status, last_error, completed_at
           FROM bff.workflow_queue_projection WHERE organization_id = ANY($1)
          ORDER BY organization_id, created_at DESC",
    ))
    .bind(&ids)
    .fetch_all(pool);
    let events = sqlx::query_as::<_, (String, Uuid, String, Value, Value, DateTime<Utc>)>(
        db::sql("SELECT event_metadata ->> 'workflow_id', id, event_type, event_data, event_metadata, created_at
           FROM public.domain_events WHERE event_metadata ->> 'workflow_id' = ANY($1)
          ORDER BY created_at, id"),
    )
    .bind(&workflow_ids)
    .fetch_all(pool);
    let invitations = sqlx::query_as::<_, InvitationRow>(db::sql(
        "SELECT organization_id, email, role, status FROM bff.invitations_projection
          WHERE organization_id = ANY($1) ORDER BY created_at, email",
    ))
    .bind(&ids)
    .fetch_all(pool);
    let (outbox, events, invitations) = {
        let _slots = stats.sql(3, "onboarding.details").await;
        tokio::try_join!(outbox, events, invitations)?
    };

    let by_workflow: HashMap<&str, Uuid> = organizations
        .iter()
        .map(|(id, w)| (w.as_str(), *id))
        .collect();
    let mut out: HashMap<Uuid, BootstrapDetails> = ids
        .iter()
        .map(|id| (*id, BootstrapDetails::default()))
        .collect();
    for row in outbox {
        if let Some(details) = out.get_mut(&row.organization_id) {
            details.outbox = Some(row);
        }
    }
    for (workflow_id, id, event_type, event_data, event_metadata, created_at) in events {
        if let Some(details) = by_workflow
            .get(workflow_id.as_str())
            .and_then(|org| out.get_mut(org))
        {
            details.events.push(EventRow {
                id,
                event_type,
                event_data,
                event_metadata,
                created_at,
            });
        }
    }
    for row in invitations {
        if let Some(details) = out.get_mut(&row.organization_id) {
            details.invitations.push(row);
        }
    }
    Ok(out)
}

/// What a repeated start request matched.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Existing {
    /// The organization.
    pub organization_id: Uuid,
    /// Its workflow, when recorded.
    pub workflow_id: Option<String>,
    /// Matched by idempotency key (else by subdomain).
    pub by_key: bool,
    /// The same request (by key), or the same caller (by subdomain).
    pub same: bool,
}

/// The organization a repeated request refers to: the caller's own request with the same
/// idempotency key (comparing its body, `input` without `organizationId`), else the live
/// organization with that subdomain (comparing its caller).
#[tracing::instrument(skip_all)]
pub async fn existing(
    pool: &PgPool,
    caller: Option<Uuid>,
    idempotency_key: Option<&str>,
    input: &Value,
    subdomain: &str,
) -> Result<Option<Existing>, sqlx::Error> {
    sqlx::query_as(db::sql(
        "SELECT organization_id, workflow_id, true AS by_key,
                (workflow_input - 'organizationId') = $3 AS same
           FROM bff.workflow_queue_projection
          WHERE idempotency_key = $2 AND organization_id IS NOT NULL
            AND COALESCE(created_by, '00000000-0000-0000-0000-000000000000'::uuid)
                = COALESCE($1, '00000000-0000-0000-0000-000000000000'::uuid)
         UNION ALL
         SELECT o.id, o.workflow_id, false,
                q.created_by IS NOT DISTINCT FROM $1
           FROM bff.organizations_projection o
           LEFT JOIN bff.workflow_queue_projection q ON q.organization_id = o.id
          WHERE o.slug = $4 AND o.status NOT IN ('failed', 'deactivated')
         ORDER BY by_key DESC
         LIMIT 1",
    ))
    .bind(caller)
    .bind(idempotency_key)
    .bind(input)
    .bind(subdomain)
    .fetch_optional(pool)
    .await
}
