//! The replica's one `LISTEN` connection: the projection triggers notify a channel per kind of
//! change (`bff_release_changed` with a release's global ID, `bff_organization_changed` with an
//! organization's UUID), and this feed hands each notification to every [`ChangeSink`] (the
//! closed-release cache, the subscription hubs).
//!
//! Notifications sent while the connection is down are lost, so the sinks are told: when the
//! connection drops (`connected(false)`: stop trusting what you hold) and when it is back
//! (`connected(true)`: anything may have changed meanwhile, read again what you serve). The
//! feed reconnects with backoff until the app stops (it runs under `crate::background`).

use std::{sync::Arc, time::Duration};

use sqlx::{PgPool, postgres::PgListener};
use tokio_util::sync::CancellationToken;

/// The channel release changes are notified on (payload: the release's global ID).
pub const RELEASE_CHANNEL: &str = "bff_release_changed";
/// The channel organization changes are notified on (payload: the organization's UUID).
pub const ORGANIZATION_CHANNEL: &str = "bff_organization_changed";

/// Longest wait between two attempts to connect the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Longest wait for `UNLISTEN *` at shutdown.
const UNLISTEN_TIMEOUT: Duration = Duration::from_secs(1);

/// Something that follows changes in the database.
pub trait ChangeSink: Send + Sync {
    /// A notification arrived on `channel` with `payload`. Must not block: it runs on the
    /// listener's task.
    fn changed(&self, channel: &str, payload: &str);

    /// The listener connected (`true`; changes may have been missed before) or lost its
    /// connection (`false`; changes may be missed from now on).
    fn connected(&self, connected: bool);
}

/// Listens on every channel above until `stop` is cancelled and tells `sinks`; then stops
/// listening, so no `LISTEN` outlives the app.
pub async fn run(pool: PgPool, sinks: Vec<Arc<dyn ChangeSink>>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    while !stop.is_cancelled() {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener
                .listen_all([RELEASE_CHANNEL, ORGANIZATION_CHANNEL])
                .await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match stop.run_until_cancelled(listener).await {
            None => return,
            Some(Ok(listener)) => listener,
            Some(Err(error)) => {
                tracing::warn!(%error, "cannot listen for changes; cache off, pushes paused");
                stop.run_until_cancelled(tokio::time::sleep(backoff)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        tracing::info!("listening for changes");
        for sink in &sinks {
            sink.connected(true);
        }
        loop {
            match stop.run_until_cancelled(listener.try_recv()).await {
                Some(Ok(Some(notification))) => {
                    for sink in &sinks {
                        sink.changed(notification.channel(), notification.payload());
                    }
                }
                // The connection dropped, and notifications with it: start over.
                Some(Ok(None) | Err(_)) => {
                    for sink in &sinks {
                        sink.connected(false);
                    }
                    tracing::warn!("the change listener lost its connection; reconnecting");
                    break;
                }
                None => {
                    // Stopping: the connection goes back to the pool listening to nothing.
                    let unlisten = listener.unlisten_all();
                    if !matches!(
                        tokio::time::timeout(UNLISTEN_TIMEOUT, unlisten).await,
                        Ok(Ok(()))
                    ) {
                        tracing::warn!(
                            "the change listener could not unlisten; its connection is dropped"
                        );
                    }
                    return;
                }
            }
        }
    }
}
