//! The headers every response carries, whatever produced it (a route, a 304, a refusal by the
//! middleware such as 413 or 429, a 404): what helmet gave the API this service replaces.
//!
//! - `X-Content-Type-Options: nosniff`: a JSON answer is never run as a script or page.
//! - `Referrer-Policy: no-referrer`: URLs with IDs never leave in a `Referer`.
//! - `Cross-Origin-Resource-Policy: same-origin`: no other site embeds an answer with a plain
//!   `<script>` or `<img>`; cross-origin dashboards read through CORS, which this does not touch.
//! - `Content-Security-Policy`, where the route set none: nothing may load, run, or frame it.
//!   The HTML pages (GraphiQL, the API docs) set their own, each with `frame-ancestors 'none'`.
//! - `Strict-Transport-Security` with `HSTS=true`, for deployments reached over TLS only.
//! - No `Server` header (none is added, and one set by a handler is removed).

use axum::{
    extract::{Request, State},
    http::{HeaderName, HeaderValue, header},
    middleware::Next,
    response::Response,
};

/// The policy of every response that sets none of its own.
pub(super) const DEFAULT_CSP: &str =
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/// Two years, with subdomains: what the HSTS preload list asks for.
const HSTS: &str = "max-age=63072000; includeSubDomains";

/// Whether `Strict-Transport-Security` is sent (`HSTS`).
#[derive(Debug, Clone, Copy)]
pub struct Hsts(pub bool);

/// Middleware: sets the headers above on the way out.
pub async fn headers(State(Hsts(hsts)): State<Hsts>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.remove(header::SERVER);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(DEFAULT_CSP));
    if hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    response
}
