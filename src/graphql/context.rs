//! What every resolver may read about the request it serves, besides the caller.

/// The request's `x-request-id`, used as the correlation ID of what it writes.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);
