//! `/graphql/ws`: GraphQL subscriptions over the `graphql-transport-ws` protocol (the one the
//! `graphql-ws` client speaks).
//!
//! The connection is authenticated by `connection_init`'s payload
//! (`{"authorization": "Bearer …"}`) with the same token check and revocation rule as HTTP:
//! a missing or bad token closes the socket with `4401`, and so does the token's expiry or its
//! user being disabled later (re-checked every `AUTH_USER_CACHE_MS`); a change to the user's
//! permissions closes it with `4403`, so the client reconnects with what it may now see. Each
//! `subscribe` is judged like an HTTP document (one operation, root-field limit, depth and
//! complexity limits) and must be one subscription field; queries and mutations go to
//! `POST /graphql`.
//!
//! Bounded: at most `WS_MAX_SUBSCRIPTIONS_PER_CONNECTION` subscriptions per socket and
//! `WS_MAX_CONNECTIONS_PER_USER` sockets per user (`4429` past either). A subscription that
//! cannot send waits instead of queueing, and its source keeps only the newest state, so a slow
//! client skips intermediate states. The server pings every `WS_PING_INTERVAL_MS` and closes a
//! socket silent for two intervals (`3008`). Shutdown closes every socket with `1001`.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_graphql::{Response, parser::types::OperationType};
use axum::{
    Extension,
    extract::{
        State,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
    },
    response::IntoResponse,
};
use chrono::Utc;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::{
    sync::{mpsc, watch},
    task::{AbortHandle, JoinSet},
    time::Instant,
};

use super::{
    client::ClientIp,
    context::{self, RequestContext, Transport},
    encode::{encode, refused, with_codes},
};
use crate::{
    AppState,
    auth::{Authentication, Principal, gate},
    error::ApiError,
};

/// The subprotocol spoken.
pub const PROTOCOL: &str = "graphql-transport-ws";

/// How long a client has to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages waiting for the socket, per connection; past this, subscriptions wait.
const OUTGOING: usize = 64;

/// Messages a socket may send in a burst, and then per second: far more than a dashboard
/// sends (a subscribe per view, a pong per ping), far less than a churn of subscribe/complete.
const MESSAGE_BURST: f64 = 100.0;
const MESSAGES_PER_SECOND: f64 = 20.0;

/// A token bucket of the messages a socket may still send.
struct MessageBudget {
    tokens: f64,
    refilled: Instant,
}

impl MessageBudget {
    fn new() -> Self {
        Self {
            tokens: MESSAGE_BURST,
            refilled: Instant::now(),
        }
    }

    /// Takes one message from the budget; `false` when there is none left.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * MESSAGES_PER_SECOND;
        self.tokens = (self.tokens + earned).min(MESSAGE_BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Close codes (the protocol's, and the contract's for this service).
mod close {
    /// The server is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// Not a WebSocket frame the server can read.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A message over the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// The server cannot check the caller now; try again later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The client stopped answering pings.
    pub const TIMEOUT: u16 = 3008;
    /// A message that is not one of the protocol's.
    pub const BAD_MESSAGE: u16 = 4400;
    /// Missing, bad, expired or revoked token; or `subscribe` before `connection_ack`.
    pub const UNAUTHORIZED: u16 = 4401;
    /// The caller's permissions changed.
    pub const FORBIDDEN: u16 = 4403;
    /// No `connection_init` in time.
    pub const INIT_TIMEOUT: u16 = 4408;
    /// Two subscriptions with one ID.
    pub const DUPLICATE_ID: u16 = 4409;
    /// Too many subscriptions, connections, messages or `connection_init`s.
    pub const TOO_MANY: u16 = 4429;
}

/// Set when the server shuts down: every socket closes with `1001`. `run_server` provides it.
#[derive(Clone)]
pub struct Closing(pub watch::Receiver<bool>);

/// Sockets open per user, to bound them.
#[derive(Default)]
pub struct Sockets(Arc<Mutex<HashMap<String, usize>>>);

/// One user's socket, counted while it lives.
struct SocketSlot {
    sockets: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl Sockets {
    fn take(&self, user: &str, max: usize) -> Option<SocketSlot> {
        let mut open = match self.0.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        let count = open.entry(user.to_owned()).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(SocketSlot {
            sockets: Arc::clone(&self.0),
            user: user.to_owned(),
        })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = match self.sockets.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// `GET /graphql/ws`: upgrades to a WebSocket speaking `graphql-transport-ws`.
pub async fn graphql_ws(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    closing: Option<Extension<Closing>>,
    upgrade: WebSocketUpgrade,
) -> impl IntoResponse {
    let closing = closing.map(|Extension(closing)| closing);
    // A message is one small GraphQL document: the HTTP body limit applies here too.
    upgrade
        .protocols([PROTOCOL])
        .max_message_size(super::MAX_BODY_BYTES)
        .max_frame_size(super::MAX_BODY_BYTES)
        .on_upgrade(move |socket| Connection::new(state, client, closing).run(socket))
}

/// A message from the client.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<serde_json::Value>,
    },
    Ping {},
    Pong {},
    Subscribe {
        id: String,
        payload: Box<async_graphql::Request>,
    },
    Complete {
        id: String,
    },
}

/// What a subscription task hands the connection.
enum Outgoing {
    /// A protocol message to send, encoded.
    Send(String),
    /// Subscription `id` ended (its `complete` or `error` was sent before).
    Ended(String),
}

/// Why the connection ends.
struct Close(u16, String);

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self(code, reason.into())
    }
}

/// The authenticated caller of a socket.
struct Caller {
    header: String,
    principal: Principal,
    expires_at: Option<chrono::DateTime<Utc>>,
    _slot: SocketSlot,
}

struct Connection {
    state: AppState,
    client: IpAddr,
    closing: Option<Closing>,
    /// Connection ID for logs and the correlation of what subscriptions read.
    id: String,
    /// One of this socket's subscriptions at a time waits for (and holds) an execution slot,
    /// so a socket that subscribes in bursts queues once, not a hundred times, in front of
    /// everyone else.
    first_reads: Arc<tokio::sync::Semaphore>,
}

impl Connection {
    fn new(state: AppState, client: IpAddr, closing: Option<Closing>) -> Self {
        Self {
            state,
            client,
            closing,
            id: uuid::Uuid::new_v4().to_string(),
            first_reads: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    #[tracing::instrument(skip_all, fields(ws.connection = %self.id, auth.user = tracing::field::Empty))]
    async fn run(self, socket: WebSocket) {
        let _open = self.state.metrics.socket_opened();
        let (mut sink, mut incoming) = socket.split();
        let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(OUTGOING);
        let mut tasks = JoinSet::new();
        let mut subscriptions: HashMap<String, AbortHandle> = HashMap::new();
        let mut caller: Option<Caller> = None;
        let mut closing = self.closing.clone().map(|c| c.0);

        let ping_every = self.state.config.ws.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        let recheck_every = self
            .state
            .config
            .auth
            .user_cache_ttl
            .max(Duration::from_secs(1));
        let mut recheck = tokio::time::interval_at(Instant::now() + recheck_every, recheck_every);
        let init_deadline = Instant::now() + INIT_TIMEOUT;
        let mut last_heard = Instant::now();
        let mut budget = MessageBudget::new();

        let close = loop {
            let expiry = caller
                .as_ref()
                .and_then(|c| c.expires_at)
                .map(|at| (at - Utc::now()).to_std().unwrap_or_default());
            tokio::select! {
                message = incoming.next() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        None => break None,
                        // The socket layer refuses what breaks its limits (a message over
                        // MAX_BODY_BYTES) or the protocol; the client hears which.
                        Some(Err(error)) => break Some(receive_error(&error)),
                    };
                    last_heard = Instant::now();
                    if !budget.take() {
                        break Some(Close::new(close::TOO_MANY, "Too many messages"));
                    }
                    let text = match message {
                        Message::Text(text) => text,
                        Message::Close(_) => break None,
                        Message::Ping(_) | Message::Pong(_) => continue,
                        Message::Binary(_) => break Some(Close::new(close::BAD_MESSAGE, "Invalid message received")),
                    };
                    let outcome = match serde_json::from_str::<ClientMessage>(text.as_str()) {
                        Ok(message) => self.handle(message, &mut caller, &mut subscriptions, &mut tasks, &out_tx).await,
                        Err(_) => Err(Close::new(close::BAD_MESSAGE, "Invalid message received")),
                    };
                    match outcome {
                        Ok(Some(reply)) => {
                            if sink.send(text_message(&reply)).await.is_err() {
                                break None;
                            }
                        }
                        Ok(None) => {}
                        Err(close) => break Some(close),
                    }
                }
                Some(outgoing) = out_rx.recv() => {
                    match outgoing {
                        Outgoing::Send(message) => {
                            if sink.send(Message::Text(message.into())).await.is_err() {
                                break None;
                            }
                        }
                        Outgoing::Ended(id) => {
                            subscriptions.remove(&id);
                        }
                    }
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = ping.tick() => {
                    if last_heard.elapsed() > 2 * ping_every {
                        break Some(Close::new(close::TIMEOUT, "ping timeout"));
                    }
                    if sink.send(text_message(&json!({ "type": "ping" }))).await.is_err() {
                        break None;
                    }
                }
                () = tokio::time::sleep_until(init_deadline), if caller.is_none() => {
                    break Some(Close::new(close::INIT_TIMEOUT, "Connection initialisation timeout"));
                }
                () = tokio::time::sleep(expiry.unwrap_or_default()), if expiry.is_some() => {
                    break Some(Close::new(close::UNAUTHORIZED, "Unauthorized: token expired"));
                }
                _ = recheck.tick(), if caller.is_some() => {
                    if let Some(close) = self.recheck(caller.as_ref()).await {
                        break Some(close);
                    }
                }
                () = shut_down(closing.as_mut()) => {
                    break Some(Close::new(close::GOING_AWAY, "server shutting down"));
                }
            }
        };
        // Stop every subscription before saying goodbye.
        tasks.abort_all();
        if let Some(Close(code, reason)) = close {
            tracing::info!(ws.close_code = code, ws.close_reason = %reason, "closing the socket");
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = sink.send(Message::Close(Some(frame))).await;
        }
        let _ = sink.close().await;
    }

    /// Handles one client message: a reply to send, nothing, or a reason to close.
    async fn handle(
        &self,
        message: ClientMessage,
        caller: &mut Option<Caller>,
        subscriptions: &mut HashMap<String, AbortHandle>,
        tasks: &mut JoinSet<()>,
        out: &mpsc::Sender<Outgoing>,
    ) -> Result<Option<serde_json::Value>, Close> {
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if caller.is_some() {
                    return Err(Close::new(
                        close::TOO_MANY,
                        "Too many initialisation requests",
                    ));
                }
                *caller = Some(self.authenticate(payload).await?);
                Ok(Some(json!({ "type": "connection_ack" })))
            }
            ClientMessage::Ping {} => Ok(Some(json!({ "type": "pong" }))),
            ClientMessage::Pong {} => Ok(None),
            ClientMessage::Complete { id } => {
                if let Some(task) = subscriptions.remove(&id) {
                    task.abort();
                }
                Ok(None)
            }
            ClientMessage::Subscribe { id, mut payload } => {
                let Some(caller) = caller.as_ref() else {
                    return Err(Close::new(close::UNAUTHORIZED, "Unauthorized"));
                };
                if subscriptions.contains_key(&id) {
                    return Err(Close::new(
                        close::DUPLICATE_ID,
                        format!("Subscriber for {} already exists", printable(&id)),
                    ));
                }
                if subscriptions.len() >= self.state.config.ws.max_subscriptions {
                    return Err(Close::new(close::TOO_MANY, "Too many subscriptions"));
                }
                if let Some(refusal) = judge(&mut payload) {
                    return Ok(Some(error_message(&id, &refusal)));
                }
                let task =
                    tasks.spawn(self.subscription(id.clone(), *payload, caller, out.clone()));
                subscriptions.insert(id, task);
                Ok(None)
            }
        }
    }

    /// Checks `connection_init`'s token like an HTTP request's.
    async fn authenticate(&self, payload: Option<serde_json::Value>) -> Result<Caller, Close> {
        let header = payload
            .as_ref()
            .and_then(serde_json::Value::as_object)
            .and_then(|fields| {
                fields
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            })
            .and_then(|(_, value)| value.as_str())
            .map(str::to_owned);
        let Some(header) = header else {
            tracing::info!(auth.rejected = "no token", "socket refused");
            return Err(Close::new(
                close::UNAUTHORIZED,
                "Unauthorized: send {\"authorization\": \"Bearer <token>\"} in connection_init",
            ));
        };
        let (authentication, expires_at) = self
            .state
            .authenticator
            .authenticate_until(Some(&header))
            .await;
        let principal = match authentication {
            Authentication::Authenticated(principal) => principal,
            Authentication::Unverified => {
                return Err(Close::new(
                    close::TRY_AGAIN_LATER,
                    "cannot check the token now; try again later",
                ));
            }
            Authentication::Invalid(why) => {
                // Why goes to the log only: the client learns no more than HTTP tells it.
                tracing::info!(auth.rejected = why, "socket refused");
                return Err(Close::new(close::UNAUTHORIZED, "Unauthorized"));
            }
            Authentication::Anonymous => {
                return Err(Close::new(close::UNAUTHORIZED, "Unauthorized"));
            }
        };
        tracing::Span::current().record("auth.user", principal.user_id.as_str());
        let Some(slot) = self.state.sockets.take(
            &principal.user_id,
            self.state.config.ws.max_connections_per_user,
        ) else {
            return Err(Close::new(
                close::TOO_MANY,
                "Too many connections for this user",
            ));
        };
        Ok(Caller {
            expires_at,
            header,
            principal,
            _slot: slot,
        })
    }

    /// The revocation rule, again: a disabled user's socket closes (`4401`), one whose
    /// permissions or organization changed too (`4403`). A database that does not answer
    /// closes nothing.
    async fn recheck(&self, caller: Option<&Caller>) -> Option<Close> {
        let caller = caller?;
        match self
            .state
            .authenticator
            .authenticate(Some(&caller.header))
            .await
        {
            Authentication::Authenticated(now) if now == caller.principal => None,
            Authentication::Authenticated(_) => Some(Close::new(
                close::FORBIDDEN,
                "Forbidden: the user's permissions changed; reconnect",
            )),
            Authentication::Unverified => None,
            Authentication::Invalid(why) => {
                tracing::info!(
                    auth.rejected = why,
                    "socket closed: token no longer accepted"
                );
                Some(Close::new(close::UNAUTHORIZED, "Unauthorized"))
            }
            Authentication::Anonymous => Some(Close::new(close::UNAUTHORIZED, "Unauthorized")),
        }
    }

    /// Runs subscription `id`: every answer is a `next`; an answer refused before anything
    /// ran is an `error`; the end is a `complete`.
    fn subscription(
        &self,
        id: String,
        request: async_graphql::Request,
        caller: &Caller,
        out: mpsc::Sender<Outgoing>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let state = self.state.clone();
        let first_reads = Arc::clone(&self.first_reads);
        let caller = context::Requester {
            authentication: Authentication::Authenticated(caller.principal.clone()),
            client: self.client,
            request_id: format!("{}/{}", self.id, printable(&id)),
        };
        let context = RequestContext::new(&state, caller, Transport::Socket);
        let caller_key = context.caller_key();
        let span = tracing::info_span!(
            "graphql.subscription",
            graphql.operation = request.operation_name.as_deref().filter(|n| crate::types::is_plain_name(n)),
            request.transport = context.transport.as_str(),
            ws.subscription = %printable(&id),
        );
        let request = context.attach(&state, request);
        let max_bytes = state.config.max_response_bytes;
        tracing::Instrument::instrument(
            async move {
                let _open = state.metrics.subscription_started();
                // The first answer reads like a query does, so it waits for a slot like one;
                // later answers come from the replica's shared reads.
                let turn = first_reads.acquire_owned().await.ok();
                let mut slot = Some((turn, state.execution_slots.admit(&caller_key).await));
                let mut answers = state.schema.execute_stream(request);
                let mut first = true;
                while let Some(answer) = answers.next().await {
                    drop(slot.take());
                    let answer = with_codes(answer);
                    // Refused before anything ran: an `error`, which ends the subscription.
                    let ended = first
                        && answer.data == async_graphql::Value::Null
                        && !answer.errors.is_empty();
                    let message = if ended {
                        json!({ "id": id, "type": "error", "payload": answer.errors }).to_string()
                    } else {
                        next_message(&id, answer, max_bytes)
                    };
                    if out.send(Outgoing::Send(message)).await.is_err() {
                        return;
                    }
                    if ended {
                        let _ = out.send(Outgoing::Ended(id)).await;
                        return;
                    }
                    state.metrics.pushed();
                    first = false;
                }
                let _ = out
                    .send(Outgoing::Send(
                        json!({ "id": id, "type": "complete" }).to_string(),
                    ))
                    .await;
                let _ = out.send(Outgoing::Ended(id)).await;
            },
            span,
        )
    }
}

/// What refuses a subscription before it runs, as the gate would an HTTP document: it must
/// parse, keep the root-field limit, be a subscription, and select exactly one field.
fn judge(request: &mut async_graphql::Request) -> Option<ApiError> {
    let operation = request.operation_name.clone();
    let document = match request.parsed_query() {
        Ok(document) => document,
        Err(_) => {
            return Some(ApiError::bad_input("query", "the document does not parse"));
        }
    };
    if let gate::Verdict::TooMany(limit) = gate::judge(Some(document), operation.as_deref()) {
        return Some(ApiError::BadUserInput {
            message: limit.message(),
            field: None,
        });
    }
    if gate::operation_type(document, operation.as_deref()) != Some(OperationType::Subscription) {
        return Some(ApiError::bad_input(
            "query",
            "this socket runs subscriptions; send queries and mutations to POST /graphql",
        ));
    }
    if gate::root_field_count(document, operation.as_deref()) != Some(1) {
        return Some(ApiError::bad_input(
            "query",
            "a subscription selects exactly one root field",
        ));
    }
    None
}

/// The close for a frame the socket layer refused: too big (1009) or not WebSocket (1002).
fn receive_error(error: &axum::Error) -> Close {
    let too_big = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<tungstenite::Error>())
        .is_some_and(|error| matches!(error, tungstenite::Error::Capacity(_)));
    if too_big {
        Close::new(close::TOO_BIG, "message too big")
    } else {
        tracing::info!(%error, "socket read failed");
        Close::new(close::PROTOCOL_ERROR, "protocol error")
    }
}

/// Resolves when the server starts shutting down (never without a [`Closing`]).
async fn shut_down(closing: Option<&mut watch::Receiver<bool>>) {
    match closing {
        Some(closing) => {
            if closing.wait_for(|closing| *closing).await.is_err() {
                // The server is gone without saying so: treat it as shutdown too.
            }
        }
        None => std::future::pending().await,
    }
}

/// A `next` message for `answer`, encoded once, under the size cap (past it, the payload is the
/// refusal `/graphql` would answer).
fn next_message(id: &str, answer: Response, max_bytes: usize) -> String {
    let payload = encode(answer, max_bytes);
    let id = serde_json::Value::from(id);
    format!(
        r#"{{"id":{id},"type":"next","payload":{}}}"#,
        String::from_utf8_lossy(&payload)
    )
}

/// An `error` message for a subscription refused before it ran (the refusal logs itself once,
/// as it becomes a GraphQL error).
fn error_message(id: &str, refusal: &ApiError) -> serde_json::Value {
    json!({ "id": id, "type": "error", "payload": refused(refusal).errors })
}

fn text_message(message: &serde_json::Value) -> Message {
    Message::Text(message.to_string().into())
}

/// A client-chosen ID as it may appear in a log line or a close reason.
fn printable(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_next_message_carries_a_hostile_subscription_id_as_a_json_string_and_nothing_more() {
        let id = "a\",\"type\":\"complete\"}\\\u{0}</script>";
        let answer = Response::new(async_graphql::Value::Null);

        let message: serde_json::Value =
            serde_json::from_str(&next_message(id, answer, 1024)).expect("the message is JSON");

        assert_eq!(message["id"], id);
        assert_eq!(message["type"], "next");
        assert_eq!(message.as_object().map(|o| o.len()), Some(3), "{message}");
    }

    #[test]
    fn a_next_message_past_the_cap_carries_the_refusal_instead() {
        let big = async_graphql::Value::String("x".repeat(4096));
        let answer = Response::new(big);

        let message: serde_json::Value =
            serde_json::from_str(&next_message("1", answer, 1024)).expect("the message is JSON");

        assert_eq!(
            message["payload"]["errors"][0]["extensions"]["code"],
            "BAD_USER_INPUT"
        );
        assert!(message["payload"]["data"].is_null());
    }
}
