//! Encoding GraphQL answers, the one way every transport does it: every error given a code, the
//! answer refused (as a `BAD_USER_INPUT` answer) rather than sent when it would pass
//! `MAX_RESPONSE_BYTES`, encoding stopped as soon as it passes. `POST`/`GET /graphql`, the REST
//! routes and the subscription socket all answer through here.

use std::io::Write;

use async_graphql::{ErrorExtensions, Response, ServerError};
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::IntoResponse,
};

use crate::error::ApiError;

/// The `extensions.code` of each of `response`'s errors (unknown ones as `OTHER`).
pub fn error_codes(response: &Response) -> impl Iterator<Item = &'static str> + '_ {
    response.errors.iter().filter_map(|error| {
        match error.extensions.as_ref().and_then(|e| e.get("code")) {
            Some(async_graphql::Value::String(code)) => Some(crate::error::known_code(code)),
            _ => None,
        }
    })
}

/// `error` alone, as a GraphQL answer with HTTP `status`.
pub fn refusal_response(status: StatusCode, error: &ApiError) -> axum::response::Response {
    let mut response = encode_response(refused(error), usize::MAX);
    *response.status_mut() = status;
    response
}

/// An answer with only `error` and no `data`.
pub fn refused(error: &ApiError) -> Response {
    let mut error = error
        .extend()
        .into_server_error(async_graphql::Pos::default());
    // About the request as a whole: no place in the document to point at.
    error.locations.clear();
    Response::from_errors(vec![error])
}

pub fn with_code(mut error: ServerError, code: &str) -> ServerError {
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    error
}

/// Gives every error a code. Errors async-graphql raises itself during validation (unknown
/// fields, wrong variable types, depth and complexity limits) have no path: they are the
/// client's request (`BAD_USER_INPUT`). So is an argument value its type refuses (see
/// [`is_argument_error`]). Any other error *with* a path but no code came from a resolver that
/// did not classify it: that is ours, so it is logged and shown as `INTERNAL`.
pub fn with_codes(mut response: Response) -> Response {
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_some() {
            continue;
        }
        if error.path.is_empty() {
            tracing::info!(error.code = "BAD_USER_INPUT", error.message = %error.message, "request rejected by GraphQL validation");
            extensions.set("code", "BAD_USER_INPUT");
        } else if is_argument_error(&error.message) {
            tracing::info!(error.code = "BAD_USER_INPUT", error.message = %error.message, "argument refused by its type");
            extensions.set("code", "BAD_USER_INPUT");
        } else {
            tracing::error!(error.code = "INTERNAL", error.cause = %error.message, "resolver failed without a code");
            extensions.set("code", "INTERNAL");
            error.message = "internal error".to_owned();
        }
    }
    response
}

/// Whether an error is async-graphql refusing an argument's value for its type, such as an `Int`
/// literal past 32 bits (validation checks a literal's kind, not its range). It is raised while
/// the field's arguments are read, so it carries the field's path, yet it is the client's
/// input. async-graphql words these errors, and only these, as `Failed to parse "<type>": …`
/// (`InputValueError::custom`); the hostile corpus holds such arguments, so a change of
/// wording fails a test.
fn is_argument_error(message: &str) -> bool {
    message.starts_with("Failed to parse \"")
}

/// The answer in place of one larger than `max_bytes`.
pub fn too_large(max_bytes: usize) -> Response {
    refused(&ApiError::BadUserInput {
        message: format!(
            "the answer would be larger than {max_bytes} bytes; ask for fewer fields or smaller pages"
        ),
        field: None,
    })
}

/// Encodes `response` as JSON, refusing (with `BAD_USER_INPUT`) an answer larger than
/// `max_bytes` instead of sending it: encoding stops as soon as the limit is passed.
pub fn encode(response: Response, max_bytes: usize) -> Vec<u8> {
    let mut body = CappedBuffer::new(max_bytes);
    let encoded = serde_json::to_writer(&mut body, &response);
    match (encoded, body.overflowed) {
        (Ok(()), false) => body.bytes,
        (_, true) => serde_json::to_vec(&too_large(max_bytes)).unwrap_or_default(),
        (Err(error), false) => {
            let error = ApiError::internal(error);
            serde_json::to_vec(&refused(&error)).unwrap_or_default()
        }
    }
}

/// An encoded answer as an HTTP response.
pub fn json_response(body: impl IntoResponse) -> axum::response::Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// [`encode`], as an HTTP response.
pub fn encode_response(response: Response, max_bytes: usize) -> axum::response::Response {
    json_response(encode(response, max_bytes))
}

/// A byte buffer that refuses to grow past its cap.
struct CappedBuffer {
    bytes: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl CappedBuffer {
    fn new(cap: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(cap.min(64 * 1024)),
            cap,
            overflowed: false,
        }
    }
}

impl Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.cap {
            self.overflowed = true;
            return Err(std::io::Error::other("response too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
