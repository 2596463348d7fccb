//! Release subscriptions: `releaseUpdated` (one release, its whole tree if asked) and
//! `releasesChanged` (which release changed, for list views). Both are served from the
//! replica's hub (`releases::hub`): a change is read once and shared by every subscriber.

use std::sync::Arc;

use async_graphql::{Context, ID, ResultExt, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures::Stream;

use super::{Entity, Release, ReleaseFilter, parse_release_id};
use crate::{
    error::ApiError,
    releases::hub::{ReleaseHub, State},
};

/// A release that changed, for a list view to update itself.
#[derive(SimpleObject)]
pub struct ReleaseChange {
    /// The release as it is now (its row: status, progress, times).
    pub release: Release,
    /// When the change happened (the time of the last event folded into it).
    pub at: DateTime<Utc>,
}

/// The release subscriptions.
#[derive(Default)]
pub struct ReleasesSubscription;

#[Subscription]
impl ReleasesSubscription {
    /// Release `id` now, then again after every change: at most once per
    /// `HIERARCHY_CACHE_MS` while it runs, and always its final state. A slow client gets
    /// the newest state, not every one in between. `NOT_FOUND` if there is no such release.
    async fn release_updated(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Release>> + use<>> {
        let id = parse_release_id(&id)?;
        let hub = Arc::clone(ctx.data::<Arc<ReleaseHub>>()?);
        let mut states = hub.watch(&id.to_string());
        Ok(async_stream::stream! {
            let mut last_seq = None;
            loop {
                let state = states.borrow_and_update().clone();
                match state {
                    State::Pending => {}
                    State::Missing => {
                        yield Err(ApiError::NotFound(format!("no release {id}"))).extend();
                        break;
                    }
                    State::Found(snapshot) => {
                        if let Some(last) = last_seq {
                            for _ in last + 1..snapshot.seq {
                                hub.metrics().dropped_push();
                            }
                        }
                        last_seq = Some(snapshot.seq);
                        yield Ok(Release::Tree(Entity::root(snapshot.tree)));
                    }
                }
                if states.changed().await.is_err() {
                    break;
                }
            }
        })
    }

    /// Every change to a release that passes `filter`: which release, its new status and
    /// progress. Changes of one release are coalesced like `releaseUpdated`'s.
    async fn releases_changed(
        &self,
        ctx: &Context<'_>,
        filter: Option<ReleaseFilter>,
    ) -> async_graphql::Result<impl Stream<Item = ReleaseChange> + use<>> {
        let filter = filter.unwrap_or_default().parse()?;
        let list = ctx.data::<Arc<ReleaseHub>>()?.list(filter);
        Ok(async_stream::stream! {
            loop {
                for row in list.next_batch().await {
                    yield ReleaseChange {
                        at: row.updated_at,
                        release: Release::Row(row),
                    };
                }
            }
        })
    }
}
