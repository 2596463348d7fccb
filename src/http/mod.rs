//! The HTTP surface: routes and the middleware every request passes through.

pub mod admission;
mod assets;
pub mod client;
pub mod conditional;
pub mod context;
mod docs;
pub mod encode;
pub mod graphiql;
pub mod graphql;
mod health;
mod metrics;
pub mod persisted;
pub mod pipeline;
pub mod rest;
mod security;
pub mod ws;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    http::{HeaderName, HeaderValue, Request, StatusCode},
    response::IntoResponse,
    routing::get,
};
use tower::ServiceBuilder;
use tower_http::{
    cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;

use crate::{AppState, types::TraceParent};

/// Largest request body accepted; GraphQL documents are small, so this only stops abuse.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// A request running longer than this is answered 408 and dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The application router with all middleware applied.
pub fn router(state: AppState) -> Router {
    let cors = cors_layer(&state.config.cors_allowed_origins);
    let hsts = security::Hsts(state.config.hsts);
    let middleware = ServiceBuilder::new()
        // Drop a client x-request-id that is not safe to log, then accept the caller's or make
        // one, before anything logs.
        .layer(axum::middleware::from_fn(drop_unsafe_request_id))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let request_id = request
                        .extensions()
                        .get::<RequestId>()
                        .and_then(|id| id.header_value().to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!(
                        "http.request",
                        http.method = %request.method(),
                        http.path = %request.uri().path(),
                        request_id = %request_id,
                        trace_id = tracing::field::Empty,
                    )
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(axum::middleware::from_fn(trace_context))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ));

    let router = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .merge(rest::routes())
        .route(
            "/graphql",
            get(graphql::graphql_get).post(graphql::graphql_post),
        )
        .route("/graphql/ws", get(ws::graphql_ws))
        .route("/graphql/assets/{file}", get(graphiql::asset))
        .route("/docs", get(docs::page))
        .route("/docs/assets/{file}", get(docs::asset))
        .route("/redoc", get(docs::redoc))
        .with_state(state.clone())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            in_flight,
        ))
        .layer(axum::middleware::from_fn_with_state(state, observe))
        .layer(middleware);
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    // Outermost, so the answers of every layer above (a CORS preflight, 413, 408) carry them.
    router.layer(axum::middleware::from_fn_with_state(
        hsts,
        security::headers,
    ))
}

/// The operations listener's routes (`METRICS_ADDR`): `/metrics`, the detailed readiness
/// report at `/ready`, and `/health`. Production exposes it only inside the cluster.
pub fn ops_router(state: AppState) -> Router {
    let hsts = security::Hsts(state.config.hsts);
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready_report))
        .route("/metrics", get(metrics::metrics))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            hsts,
            security::headers,
        ))
}

/// CORS for the configured origins; none configured means no CORS headers (same-origin only).
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods(AllowMethods::list([
                axum::http::Method::GET,
                axum::http::Method::POST,
            ]))
            .allow_headers(AllowHeaders::list([
                axum::http::header::AUTHORIZATION,
                axum::http::header::CONTENT_TYPE,
                REQUEST_ID.clone(),
            ]))
            .expose_headers([REQUEST_ID.clone()])
            .max_age(Duration::from_secs(600)),
    )
}

/// Removes an `x-request-id` the client sent that is not a plain short ID (see
/// [`client::is_acceptable_request_id`]), so a new one is made instead.
async fn drop_unsafe_request_id(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let unsafe_id = request
        .headers()
        .get_all(&REQUEST_ID)
        .iter()
        .enumerate()
        .any(|(i, value)| i > 0 || !client::is_acceptable_request_id(value));
    if unsafe_id {
        request.headers_mut().remove(&REQUEST_ID);
    }
    next.run(request).await
}

/// The request's W3C trace context: the caller's `traceparent` when well formed, else a new
/// trace; this service's span in it goes to handlers (and on to Temporal with workflow starts),
/// and its trace ID into every log line of the request.
async fn trace_context(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let trace = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(TraceParent::parse)
        .map_or_else(TraceParent::start, |parent| parent.child());
    tracing::Span::current().record("trace_id", trace.trace_id());
    request.extensions_mut().insert(trace);
    next.run(request).await
}

/// Holds one of `MAX_IN_FLIGHT` places while an API request (`/graphql`, `/graphql/ws`'s
/// upgrade, `/api/*`) runs; with none free it is answered `429` at once, in the route's own
/// error shape. Probes, metrics and GraphiQL's files never wait behind the API.
async fn in_flight(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    let rest = path.starts_with("/api/");
    if !(rest || path == "/graphql" || path == "/graphql/ws") {
        return next.run(request).await;
    }
    let Ok(_place) = Arc::clone(&state.in_flight).try_acquire_owned() else {
        tracing::info!(
            error.code = "RATE_LIMITED",
            "request refused: too many in flight"
        );
        let limited = crate::error::ApiError::RateLimited {
            retry_after_secs: 1,
        };
        let mut response = if rest {
            rest::Detail::new(StatusCode::TOO_MANY_REQUESTS, limited.to_string()).into_response()
        } else {
            encode::refusal_response(StatusCode::TOO_MANY_REQUESTS, &limited)
        };
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from_static("1"),
        );
        return response;
    };
    next.run(request).await
}

/// Records the request in `bff_http_request_duration_seconds` by route pattern and status, and
/// adds `Server-Timing: app;dur=<ms>`: the time the server spent on the request (execution and
/// serialization), visible in browser dev tools and used by the benchmarks.
async fn observe(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    // The pattern, never the path: IDs in paths would make a series per release.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let mut response = next.run(request).await;
    let elapsed = started.elapsed().as_secs_f64();
    state
        .metrics
        .http_request(&route, response.status().as_u16(), elapsed);
    let value = format!("app;dur={:.3}", elapsed * 1e3);
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}
