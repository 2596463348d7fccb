//! W3C trace context (`traceparent`): taken from the caller when well formed, else started
//! here, and handed on to Temporal with every workflow start so a bootstrap started from the
//! dashboard can be followed into its workflow.

use std::fmt;

/// A valid `traceparent` value: `00-{32 hex trace ID}-{16 hex parent span ID}-{2 hex flags}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: String,
    span_id: String,
    flags: String,
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn random_hex(len: usize) -> String {
    let mut hex = String::new();
    while hex.len() < len {
        hex.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    hex.truncate(len);
    hex
}

impl TraceParent {
    /// Parses a `traceparent` header; `None` for anything the W3C format does not allow
    /// (another version, upper case, all-zero IDs, extra parts), which then starts a new trace.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let well_formed = parts.next().is_none()
            && version == "00"
            && is_hex(trace_id, 32)
            && is_hex(span_id, 16)
            && is_hex(flags, 2)
            && trace_id.bytes().any(|b| b != b'0')
            && span_id.bytes().any(|b| b != b'0');
        well_formed.then(|| Self {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            flags: flags.to_owned(),
        })
    }

    /// A new trace (sampled), for a request that came without one.
    pub fn start() -> Self {
        Self {
            trace_id: random_hex(32),
            span_id: random_hex(16),
            flags: "01".to_owned(),
        }
    }

    /// The same trace with a new parent span: this service's own step in it.
    #[must_use]
    pub fn child(&self) -> Self {
        Self {
            span_id: random_hex(16),
            ..self.clone()
        }
    }

    /// The trace ID (32 hex digits), for log lines.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_well_formed_header_is_kept_and_written_back_the_same() {
        let parsed = TraceParent::parse(GOOD);

        assert_eq!(parsed.map(|t| t.to_string()).as_deref(), Some(GOOD));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\n",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags_with_a_new_span() {
        let parent = TraceParent::parse(GOOD).unwrap_or_else(TraceParent::start);

        let child = parent.child();

        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.to_string(), parent.to_string());
        assert!(TraceParent::parse(&child.to_string()).is_some());
        assert!(TraceParent::parse(&TraceParent::start().to_string()).is_some());
    }
}
