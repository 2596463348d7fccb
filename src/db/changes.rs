//! The replica's one `LISTEN` connection: the projection triggers notify a channel per kind of
//! change (`bff_release_changed` with a release's global ID, `bff_organization_changed` with an
//! organization's UUID), and this feed hands each notification to every [`ChangeSink`] (the
//! closed-release cache, the subscription hubs).
//!
//! Notifications sent while the connection is down are lost, so the sinks are told: when the
//! connection drops (`connected(false)`: stop trusting what you hold) and when it is back
//! (`connected(true)`: anything may have changed meanwhile, read again what you serve). The
//! feed reconnects with backoff until the app stops (it runs under `crate::background`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use prometheus::IntGauge;
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

    /// The listener is deaf, so changes may be missed at any moment: read again what you
    /// serve. Called once per `HIERARCHY_CACHE_MS` while it stays so, after `connected(false)`.
    /// By default, a reconnection that is lost again at once.
    fn catch_up(&self) {
        self.connected(true);
        self.connected(false);
    }
}

/// The channel each replica's listener sends itself a heartbeat on (payload: the listener's
/// own token and a sequence number).
pub const HEARTBEAT_CHANNEL: &str = "bff_listener_heartbeat";

/// How often the listener sends itself a heartbeat.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A heartbeat not heard back within this long makes the listener deaf: connected, but not
/// hearing (a `LISTEN` through a transaction-mode pooler, a proxy that drops async messages).
const DEAF_AFTER: Duration = Duration::from_secs(5);

/// Where the listener connects and how it proves that it hears.
pub struct Feed {
    /// The listener's own connection: `DATABASE_LISTEN_URL`, else `DATABASE_URL`.
    pub listen: PgPool,
    /// The app's pool: heartbeats go out the way real changes do.
    pub notify: PgPool,
    /// While deaf, the sinks are told to read again this often (`HIERARCHY_CACHE_MS`).
    pub poll: Duration,
    /// 1 while the listener is deaf (`bff_db_listener_deaf`).
    pub deaf: IntGauge,
}

/// A listener's own heartbeats: which one it waits for, since when.
struct Heartbeat {
    token: String,
    sent: u64,
    /// The oldest heartbeat not heard back, and when it was sent.
    waiting: Option<(u64, Instant)>,
    deaf: bool,
}

impl Heartbeat {
    fn new() -> Self {
        Self {
            token: uuid::Uuid::new_v4().simple().to_string(),
            sent: 0,
            waiting: None,
            deaf: false,
        }
    }

    fn next(&mut self) -> String {
        self.sent += 1;
        self.waiting
            .get_or_insert_with(|| (self.sent, Instant::now()));
        format!("{} {}", self.token, self.sent)
    }

    /// A heartbeat `payload` arrived: whether it is one of ours (then nothing older is waiting).
    fn heard(&mut self, payload: &str) -> bool {
        let Some((token, seq)) = payload.split_once(' ') else {
            return false;
        };
        if token != self.token {
            return false;
        }
        if let (Ok(seq), Some((oldest, _))) = (seq.parse::<u64>(), self.waiting)
            && seq >= oldest
        {
            self.waiting = None;
        }
        true
    }

    fn overdue(&self) -> bool {
        self.waiting
            .is_some_and(|(_, sent)| sent.elapsed() >= DEAF_AFTER)
    }
}

/// Listens on every channel above until `stop` is cancelled and tells `sinks`; then stops
/// listening, so no `LISTEN` outlives the app.
///
/// It also proves it hears: every few seconds it notifies itself through the app's pool and
/// expects the heartbeat back. A listener that does not hear it is deaf: the sinks are told
/// the feed is lost (the cache turns off), then asked to read again every `poll` until it hears
/// again, and `bff_db_listener_deaf` is 1.
pub async fn run(feed: Feed, sinks: Vec<Arc<dyn ChangeSink>>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    while !stop.is_cancelled() {
        let listener = async {
            let mut listener = PgListener::connect_with(&feed.listen).await?;
            listener
                .listen_all([RELEASE_CHANNEL, ORGANIZATION_CHANNEL, HEARTBEAT_CHANNEL])
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
        let mut heartbeat = Heartbeat::new();
        let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
        let mut poll = tokio::time::interval(feed.poll.max(MIN_POLL));
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => None,
                received = listener.try_recv() => Some(Event::Received(received)),
                _ = beat.tick() => Some(Event::Beat),
                _ = poll.tick(), if heartbeat.deaf => Some(Event::Poll),
            };
            match event {
                Some(Event::Received(Ok(Some(notification)))) => {
                    if notification.channel() == HEARTBEAT_CHANNEL {
                        if heartbeat.heard(notification.payload()) && heartbeat.deaf {
                            tracing::info!(
                                "the change listener hears again; cache and pushes back on the feed"
                            );
                            set_deaf(false, &mut heartbeat, &feed, &sinks);
                        }
                        continue;
                    }
                    for sink in &sinks {
                        sink.changed(notification.channel(), notification.payload());
                    }
                }
                // The connection dropped, and notifications with it: start over.
                Some(Event::Received(Ok(None) | Err(_))) => {
                    for sink in &sinks {
                        sink.connected(false);
                    }
                    feed.deaf.set(0);
                    tracing::warn!("the change listener lost its connection; reconnecting");
                    break;
                }
                Some(Event::Beat) => {
                    if heartbeat.overdue() && !heartbeat.deaf {
                        tracing::error!(
                            deaf_after_ms = DEAF_AFTER.as_millis() as u64,
                            "the change listener is connected but does not hear its own \
                             heartbeat (LISTEN through a transaction-mode pooler? set \
                             DATABASE_LISTEN_URL to a direct or session-mode connection); \
                             cache off, subscriptions read on a timer"
                        );
                        set_deaf(true, &mut heartbeat, &feed, &sinks);
                    }
                    let payload = heartbeat.next();
                    if let Err(error) = sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(HEARTBEAT_CHANNEL)
                        .bind(payload)
                        .execute(&feed.notify)
                        .await
                    {
                        tracing::debug!(%error, "cannot send the listener's heartbeat");
                    }
                }
                Some(Event::Poll) => {
                    for sink in &sinks {
                        sink.catch_up();
                    }
                }
                None => {
                    feed.deaf.set(0);
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

/// The listener turns deaf or hears again: the gauge says so, and the sinks are told the feed
/// is lost (the cache turns off) or back (read again what you serve).
fn set_deaf(deaf: bool, heartbeat: &mut Heartbeat, feed: &Feed, sinks: &[Arc<dyn ChangeSink>]) {
    heartbeat.deaf = deaf;
    feed.deaf.set(i64::from(deaf));
    for sink in sinks {
        sink.connected(!deaf);
    }
}

/// The shortest interval a deaf listener asks the sinks to read again at.
const MIN_POLL: Duration = Duration::from_millis(250);

enum Event {
    Received(Result<Option<sqlx::postgres::PgNotification>, sqlx::Error>),
    Beat,
    Poll,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_heard_only_with_its_own_token_and_clears_every_older_one() {
        let mut heartbeat = Heartbeat::new();
        let first = heartbeat.next();
        let second = heartbeat.next();

        assert!(!heartbeat.heard("someone-else 1"), "another replica's");
        assert!(heartbeat.waiting.is_some());
        assert!(heartbeat.heard(&second), "ours");
        assert!(
            heartbeat.waiting.is_none(),
            "the newer one answers for the older"
        );
        assert!(heartbeat.heard(&first), "a late one is still ours");
        assert!(!heartbeat.overdue());
    }
}
