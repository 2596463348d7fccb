//! `GET /metrics`: every metric in Prometheus text, with the gauges that describe the state of
//! the moment (pool, outbox backlog, release cache) read at the scrape.

use std::time::Duration;

use axum::extract::State;

use crate::{AppState, outbox::store};

/// Outbox actions, so each has a series (0 when nothing waits) for alerts to see.
const OUTBOX_ACTIONS: [&str; 4] = ["start", "pause", "resume", "cancel"];
/// The backlog query's limit: a scrape answers even while Postgres does not.
const BACKLOG_TIMEOUT: Duration = Duration::from_secs(1);

/// The scrape.
pub async fn metrics(State(state): State<AppState>) -> String {
    let scraped = &state.metrics.scraped;
    let (releases, bytes) = state.release_cache.usage();
    scraped.cache_releases.set(gauge_value(releases));
    scraped.cache_bytes.set(gauge_value(bytes));
    let hits = state.release_cache.hits();
    scraped
        .cache_hits
        .inc_by(hits.saturating_sub(scraped.cache_hits.get()));
    scraped.pool_size.set(i64::from(state.db.size()));
    scraped.pool_idle.set(gauge_value(state.db.num_idle()));
    scraped
        .pool_max
        .set(i64::from(state.db.options().get_max_connections()));
    match tokio::time::timeout(BACKLOG_TIMEOUT, store::backlog(&state.db)).await {
        Ok(Ok(rows)) => {
            for action in OUTBOX_ACTIONS {
                let (count, age) = rows
                    .iter()
                    .find(|(a, _, _)| a == action)
                    .map_or((0, 0), |(_, count, age)| (*count, *age));
                scraped
                    .outbox_pending
                    .with_label_values(&[action])
                    .set(count);
                scraped
                    .outbox_oldest_age
                    .with_label_values(&[action])
                    .set(age);
            }
        }
        // The last values stay: `/ready` is what says Postgres is down.
        Ok(Err(error)) => tracing::warn!(%error, "outbox backlog not read for /metrics"),
        Err(_) => tracing::warn!("outbox backlog not read for /metrics in time"),
    }
    state.metrics.render()
}

fn gauge_value(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}
