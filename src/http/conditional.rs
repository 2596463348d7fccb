//! Conditional `GET` for polling dashboards, and kept answers for `GET` and `POST`: every `GET`
//! answer carries an `ETag` (the caller's scope and the answer, hashed), and `If-None-Match`
//! with the current tag gets `304` with no body.
//!
//! An answer made only of closed releases kept in memory (no statement, no Temporal call, no
//! live tree) is kept, as its encoded bytes, under its request (caller scope, operation,
//! document, variables). While none of those releases changed (the release cache's tokens still
//! hold), the same request is answered from those bytes before anything runs: `304` when a
//! `GET` holds the tag, else the bytes. A closed release never changes, so repeated reads of
//! one cost a hash and a map lookup, not an execution. The gate and the caller check run
//! before, as for any request; the cost limits were passed by the same document for the same
//! scope when the answer was made.

use std::sync::Arc;

use axum::{
    body::Bytes,
    http::{HeaderValue, StatusCode, header},
    response::IntoResponse,
};
use sha2::{Digest, Sha256};

use crate::lru::Lru;
use crate::releases::cache::{Token, TreeCache};

/// Requests whose answers can be sent again without running them.
pub struct Answers {
    known: Lru<Arc<Known>>,
}

/// A kept answer: its tag, its bytes, and the cached releases it was made of.
struct Known {
    etag: String,
    body: Bytes,
    reads: Vec<(String, Token)>,
}

/// An answer that still holds: its tag and its encoded bytes.
pub struct Kept {
    pub etag: String,
    pub body: Bytes,
}

/// Rough bytes of one remembered answer besides its strings.
const KNOWN_OVERHEAD: usize = 96;

/// Hex SHA-256 over `parts`, each ended by a 0 byte so no two splits hash alike.
fn digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part);
        digest.update([0]);
    }
    super::persisted::hex(&digest.finalize())
}

/// What identifies a request for [`Answers`]: who asks (everything about them an answer can
/// show), the operation, the document and the variables.
pub fn request_key(scope: &str, operation: Option<&str>, query: &str, variables: &str) -> String {
    digest([
        scope.as_bytes(),
        operation.unwrap_or_default().as_bytes(),
        query.as_bytes(),
        variables.as_bytes(),
    ])
}

/// The `ETag` of `body` as `scope` sees it (quoted, 128 bits).
pub fn etag(scope: &str, body: &[u8]) -> String {
    let hex = digest([scope.as_bytes(), body]);
    format!("\"{}\"", &hex[..32])
}

/// Whether an `If-None-Match` header names `etag` (weak or strong) or is `*`.
fn matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

impl Answers {
    /// At most `capacity` bytes of remembered answers.
    pub fn new(capacity: usize) -> Self {
        Self {
            known: Lru::new(capacity),
        }
    }

    /// The kept answer to request `key`, when nothing it was made of changed since.
    pub fn kept(&self, key: &str, cache: &TreeCache) -> Option<Kept> {
        let known = self.known.get(key)?;
        cache.unchanged(&known.reads).then(|| Kept {
            etag: known.etag.clone(),
            body: known.body.clone(),
        })
    }

    /// Keeps `body`, request `key`'s answer with `etag`, made of `reads` only.
    pub fn remember(&self, key: String, etag: &str, body: Bytes, reads: Vec<(String, Token)>) {
        let bytes = KNOWN_OVERHEAD
            + etag.len()
            + body.len()
            + reads.iter().map(|(id, _)| id.len() + 32).sum::<usize>();
        let known = Known {
            etag: etag.to_owned(),
            body,
            reads,
        };
        self.known.insert(key, Arc::new(known), bytes);
    }
}

/// A `GET` answer: `304` with no body when the client holds `etag`, the body otherwise; with
/// the tag and `Cache-Control: private, no-cache` (kept for this user only, revalidated every
/// time).
pub fn answer(
    etag: &str,
    if_none_match: Option<&str>,
    body: axum::response::Response,
) -> axum::response::Response {
    let response = if if_none_match.is_some_and(|header| matches(header, etag)) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body
    };
    with_headers(response, etag)
}

fn with_headers(mut response: axum::response::Response, etag: &str) -> axum::response::Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_matches_strong_weak_listed_or_star_and_nothing_else() {
        let tag = etag("user-1", b"{}");

        assert!(matches(&tag, &tag));
        assert!(matches(&format!("\"x\", W/{tag}"), &tag));
        assert!(matches("*", &tag));
        assert!(!matches("\"x\"", &tag));
        assert_ne!(tag, etag("user-2", b"{}"), "another caller, another tag");
    }

    #[test]
    fn request_keys_differ_in_every_part() {
        let key = request_key("s", Some("Q"), "{ a }", "{}");

        assert_ne!(key, request_key("t", Some("Q"), "{ a }", "{}"));
        assert_ne!(key, request_key("s", None, "{ a }", "{}"));
        assert_ne!(key, request_key("s", Some("Q"), "{ b }", "{}"));
        assert_ne!(key, request_key("s", Some("Q"), "{ a }", "{\"id\":1}"));
    }
}
