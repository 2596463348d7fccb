//! One request's context, built the same way for every transport (`POST`/`GET /graphql`, the
//! REST routes, a subscription): who asks (the caller, the client address, the request ID, the
//! W3C trace context) and what the request carries while it runs (its SQL and Temporal budget
//! and counts, `RequestStats`; the closed releases it read from memory, `CachedReads`; one
//! DataLoader per relation). [`RequestContext::attach`] hands all of it to the schema.

use std::{net::IpAddr, sync::Arc};

use crate::{
    AppState,
    auth::{Authentication, graphql::ClientAddr},
    graphql::context::RequestId,
    metrics::RequestStats,
    onboarding::graphql::OnboardingLoader,
    releases::{cache::CachedReads, graphql::ReleaseLoader},
    types::TraceParent,
};

/// How a request came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `POST` or `GET /graphql`.
    Http,
    /// A REST route under `/api`, which runs a fixed GraphQL document.
    Rest,
    /// A subscription on `/graphql/ws`.
    Socket,
}

/// Who asks, from where, under which request ID. Extracted as one piece by the HTTP routes
/// (`/graphql` and `/api/*`); a socket builds it per subscription.
pub struct Requester {
    /// The caller, as the token and the user row say now.
    pub authentication: Authentication,
    /// The client's address (behind trusted proxies, the one they name).
    pub client: IpAddr,
    /// The request's ID (`x-request-id`, or the socket's and the subscription's).
    pub request_id: String,
}

impl axum::extract::FromRequestParts<AppState> for Requester {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let super::client::Caller(authentication) =
            super::client::Caller::from_request_parts(parts, state).await?;
        let super::client::ClientIp(client) =
            super::client::ClientIp::from_request_parts(parts, state).await?;
        let request_id = parts
            .extensions
            .get::<tower_http::request_id::RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Self {
            authentication,
            client,
            request_id,
        })
    }
}

impl Transport {
    /// Its name in log lines (`request.transport`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Rest => "rest",
            Self::Socket => "socket",
        }
    }
}

/// One request's context.
pub struct RequestContext {
    /// Who asks.
    pub caller: Requester,
    /// The trace context to hand on to Temporal (workflow starts).
    pub trace: Option<TraceParent>,
    /// How it came.
    pub transport: Transport,
    /// Its SQL and Temporal budget and counts.
    pub stats: Arc<RequestStats>,
    /// The closed releases it read from memory (what a remembered answer was made of).
    pub reads: Arc<CachedReads>,
}

impl RequestContext {
    /// The context of a request from `caller` over `transport`.
    pub fn new(state: &AppState, caller: Requester, transport: Transport) -> Self {
        Self {
            caller,
            trace: None,
            transport,
            stats: Arc::new(RequestStats::new(Arc::clone(&state.metrics))),
            reads: Arc::new(CachedReads::default()),
        }
    }

    /// With the trace context the request came with.
    pub fn traced(mut self, trace: Option<TraceParent>) -> Self {
        self.trace = trace;
        self
    }

    /// Whose share of the execution slots the request counts against (`http::admission`).
    pub fn caller_key(&self) -> String {
        super::admission::caller_key(&self.caller.authentication, self.caller.client)
    }

    /// `request` with what its resolvers read besides the document: the caller, one loader per
    /// relation (counting into this context's stats and reads), the request ID, the client
    /// address and the trace context.
    pub fn attach(
        &self,
        state: &AppState,
        request: async_graphql::Request,
    ) -> async_graphql::Request {
        let releases = ReleaseLoader::new(
            state.db.clone(),
            Arc::clone(&state.live),
            Arc::clone(&state.closes),
            Arc::clone(&state.release_cache),
            Arc::clone(&self.stats),
            Arc::clone(&self.reads),
            state.config.release_part_above_nodes,
        );
        let onboarding = OnboardingLoader::new(
            state.db.clone(),
            state.temporal.clone(),
            Arc::clone(&self.stats),
        );
        let request = request
            .data(self.caller.authentication.clone())
            .data(releases)
            .data(onboarding)
            .data(RequestId(self.caller.request_id.clone()))
            .data(ClientAddr(self.caller.client))
            .data(Arc::clone(&self.stats));
        match self.trace.clone() {
            Some(trace) => request.data(trace),
            None => request,
        }
    }
}
