//! `organizationBootstrapUpdated`: an organization's onboarding, pushed as its steps change.
//! Isolation is the queries': a caller who could not read the organization gets `NOT_FOUND`,
//! whether it exists or not.

use std::sync::Arc;

use async_graphql::{Context, ID, ResultExt, Subscription};
use futures::Stream;
use sqlx::PgPool;

use super::{Organization, parse_organization_id, visible_organization};
use crate::{
    error::ApiError,
    metrics::{Metrics, RequestStats},
    onboarding::{store, watch::OrganizationWatch},
};

/// The onboarding subscriptions.
#[derive(Default)]
pub struct OnboardingSubscription;

#[Subscription]
impl OnboardingSubscription {
    /// Organization `id` now (global ID or bare UUID), then again whenever its onboarding
    /// changes (at most once per `HIERARCHY_CACHE_MS`). `NOT_FOUND` when the caller may not
    /// see it, exactly where `organization` answers `null`.
    async fn organization_bootstrap_updated(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Organization>> + use<>>
    {
        let id = parse_organization_id(&id)?;
        // Followed before the first read, so a change during that read is not missed.
        let watch = ctx.data::<Arc<OrganizationWatch>>()?;
        let mut changes = watch.watch(id);
        let window = watch.window();
        let Some(first) = visible_organization(ctx, id).await? else {
            return Err(ApiError::NotFound("organization not found".into())).extend();
        };
        let db = ctx.data::<PgPool>()?.clone();
        let stats = Arc::clone(ctx.data::<Arc<RequestStats>>()?);
        let metrics = Arc::clone(ctx.data::<Arc<Metrics>>()?);
        Ok(async_stream::stream! {
            yield Ok(first);
            let mut seen = *changes.borrow_and_update();
            loop {
                // At most one read per window, however often it changes.
                tokio::time::sleep(window).await;
                if changes.changed().await.is_err() {
                    break;
                }
                let now = *changes.borrow_and_update();
                for _ in seen + 1..now {
                    metrics.dropped_push();
                }
                seen = now;
                match store::organizations(&db, &stats, &[id]).await {
                    Ok(rows) => match rows.into_iter().next() {
                        Some(row) => yield Ok(Organization(Box::new(row))),
                        None => break,
                    },
                    Err(error) => yield Err(ApiError::from(error)).extend(),
                }
            }
        })
    }
}
