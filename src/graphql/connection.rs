//! What every Relay connection shares: the `totalCount` extension, one opaque cursor codec, the
//! page-size rules, and the complexity a connection or list adds to an operation.
//!
//! Complexity multiplies: a connection costs its page size times what each item asks for, and
//! a list of children (`waves`, `clusters`, `apps`) counts as [`LIST_COMPLEXITY_FACTOR`] items.
//! The schema's limit (`MAX_COMPLEXITY` in the schema module) is set so the whole 10×10×10
//! release tree with every field passes once and two of them do not.

use async_graphql::{ErrorExtensions, SimpleObject};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};

use crate::error::ApiError;

/// `totalCount` of a connection.
#[derive(SimpleObject)]
pub struct ConnectionTotal {
    /// How many items match, over all pages.
    pub total_count: i64,
}

/// Largest page of any connection.
pub const MAX_PAGE: i32 = 100;
/// Page size when neither `first` nor `last` is given.
pub const DEFAULT_PAGE: i32 = 20;
/// How many items a list of children is assumed to hold when pricing an operation.
pub const LIST_COMPLEXITY_FACTOR: usize = 10;

/// The complexity of a connection field: its page size times what each item asks for.
pub fn page_complexity(first: Option<i32>, last: Option<i32>, child_complexity: usize) -> usize {
    let size = first.or(last).unwrap_or(DEFAULT_PAGE).clamp(0, MAX_PAGE);
    let size = usize::try_from(size).unwrap_or(0).max(1);
    size.saturating_mul(child_complexity).saturating_add(1)
}

/// The complexity of a list of children.
pub fn list_complexity(child_complexity: usize) -> usize {
    LIST_COMPLEXITY_FACTOR
        .saturating_mul(child_complexity)
        .saturating_add(1)
}

/// Checks a page size argument (`first` / `last`): 0 to [`MAX_PAGE`].
pub fn check_page_size(field: &str, value: Option<i32>) -> async_graphql::Result<()> {
    match value {
        Some(n) if !(0..=MAX_PAGE).contains(&n) => Err(ApiError::bad_input(
            field,
            format!("{field} must be from 0 to {MAX_PAGE}"),
        )
        .extend()),
        _ => Ok(()),
    }
}

/// Encodes an opaque cursor holding `value`.
pub fn encode_cursor(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(value)
}

/// Decodes a cursor made by [`encode_cursor`]; `BAD_USER_INPUT` naming `field` otherwise.
pub fn decode_cursor(field: &str, raw: &str) -> async_graphql::Result<String> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| bad_cursor(field).extend())
}

/// The error for a cursor this API did not make.
pub fn bad_cursor(field: &str) -> ApiError {
    ApiError::bad_input(field, format!("{field} is not a cursor from this API"))
}

/// A keyset cursor: a time and an ID, the position in a list ordered by both.
pub fn encode_keyset(at: DateTime<Utc>, id: &str) -> String {
    encode_cursor(&format!("{}|{id}", at.to_rfc3339()))
}

/// Decodes a keyset cursor made by [`encode_keyset`].
pub fn decode_keyset(field: &str, raw: &str) -> async_graphql::Result<(DateTime<Utc>, String)> {
    let text = decode_cursor(field, raw)?;
    let (at, id) = text
        .split_once('|')
        .ok_or_else(|| bad_cursor(field).extend())?;
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|_| bad_cursor(field).extend())?
        .with_timezone(&Utc);
    Ok((at, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_cursors_round_trip_and_garbage_is_refused() {
        let now = Utc::now();

        let decoded = decode_keyset("after", &encode_keyset(now, "release:r-1")).ok();

        assert_eq!(decoded, Some((now, "release:r-1".to_owned())));
        assert!(decode_keyset("after", "not-a-cursor").is_err());
        assert!(decode_keyset("after", &encode_cursor("no separator")).is_err());
    }

    #[test]
    fn a_connection_costs_its_page_times_its_items() {
        assert_eq!(page_complexity(Some(100), None, 10), 1001);
        assert_eq!(page_complexity(None, Some(3), 10), 31);
        assert_eq!(page_complexity(None, None, 10), 201, "the default page");
        assert_eq!(page_complexity(Some(1_000_000), None, 10), 1001, "clamped");
        assert_eq!(page_complexity(Some(5), None, usize::MAX), usize::MAX);
    }
}
