//! Why a Temporal call failed, classified by gRPC code: whether it is worth retrying, and a
//! fixed reason that is safe to store and show.

/// Why a Temporal call could not be made. The `Display` text is for logs only: clients and
/// stored rows get [`TemporalError::reason`].
#[derive(Debug, thiserror::Error)]
pub enum TemporalError {
    /// No connection could be established.
    #[error("temporal unreachable: {0}")]
    Unreachable(String),
    /// The call did not answer in time.
    #[error("temporal call timed out")]
    Timeout,
    /// The server answered with a gRPC error.
    #[error("temporal call failed ({code:?}): {message}")]
    Rpc {
        /// The gRPC status code, which decides whether to retry.
        code: tonic::Code,
        /// The server's message (logs only).
        message: String,
    },
    /// The SDK failed before or after the call (logs only).
    #[error("temporal client error: {0}")]
    Client(String),
}

impl TemporalError {
    /// A gRPC status as an error.
    pub fn rpc(status: &tonic::Status) -> Self {
        Self::Rpc {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }

    /// Whether the call may succeed later: everything but the server refusing the request
    /// itself (`InvalidArgument`, `FailedPrecondition`, `PermissionDenied`, `NotFound`: no such
    /// workflow, or it already closed). An outage, however long, is always worth retrying.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Self::Rpc {
                code: tonic::Code::InvalidArgument
                    | tonic::Code::FailedPrecondition
                    | tonic::Code::PermissionDenied
                    | tonic::Code::NotFound,
                ..
            }
        )
    }

    /// The gRPC code's name, for metrics: an unreachable server counts as `Unavailable`, a
    /// timeout as `DeadlineExceeded`, and an SDK failure as `Client`.
    pub fn code(&self) -> &'static str {
        use tonic::Code;
        match self {
            Self::Unreachable(_) => "Unavailable",
            Self::Timeout => "DeadlineExceeded",
            Self::Client(_) => "Client",
            Self::Rpc { code, .. } => match code {
                Code::Ok => "Ok",
                Code::Cancelled => "Cancelled",
                Code::Unknown => "Unknown",
                Code::InvalidArgument => "InvalidArgument",
                Code::DeadlineExceeded => "DeadlineExceeded",
                Code::NotFound => "NotFound",
                Code::AlreadyExists => "AlreadyExists",
                Code::PermissionDenied => "PermissionDenied",
                Code::ResourceExhausted => "ResourceExhausted",
                Code::FailedPrecondition => "FailedPrecondition",
                Code::Aborted => "Aborted",
                Code::OutOfRange => "OutOfRange",
                Code::Unimplemented => "Unimplemented",
                Code::Internal => "Internal",
                Code::Unavailable => "Unavailable",
                Code::DataLoss => "DataLoss",
                Code::Unauthenticated => "Unauthenticated",
            },
        }
    }

    /// A fixed, readable reason, safe to store and show (never the server's text).
    pub fn reason(&self) -> &'static str {
        use tonic::Code;
        match self {
            Self::Unreachable(_)
            | Self::Timeout
            | Self::Rpc {
                code: Code::Unavailable | Code::DeadlineExceeded,
                ..
            } => "Temporal is unreachable; the start will be retried",
            Self::Rpc {
                code: Code::ResourceExhausted,
                ..
            } => "Temporal is overloaded; the start will be retried",
            Self::Rpc {
                code: Code::InvalidArgument,
                ..
            } => "Temporal refused the workflow start as invalid",
            Self::Rpc {
                code: Code::FailedPrecondition,
                ..
            } => "Temporal refused the workflow start (failed precondition)",
            Self::Rpc {
                code: Code::PermissionDenied,
                ..
            } => "Temporal refused the workflow start (permission denied)",
            Self::Rpc { .. } | Self::Client(_) => {
                "Temporal could not start the workflow; the start will be retried"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn rpc(code: Code) -> TemporalError {
        TemporalError::rpc(&tonic::Status::new(
            code,
            "grpc internals: connection reset by peer",
        ))
    }

    #[test]
    fn only_a_refusal_of_the_request_itself_is_not_worth_retrying() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::Internal,
            Code::Unknown,
        ] {
            assert!(rpc(code).is_retryable(), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::PermissionDenied,
        ] {
            assert!(!rpc(code).is_retryable(), "{code:?}");
        }
        assert!(TemporalError::Timeout.is_retryable());
        assert!(TemporalError::Unreachable("refused".into()).is_retryable());
    }

    #[test]
    fn the_stored_reason_is_fixed_text_never_the_servers() {
        for code in [Code::Unavailable, Code::Internal, Code::InvalidArgument] {
            let reason = rpc(code).reason();

            assert!(!reason.contains("grpc"), "{reason}");
            assert!(reason.starts_with("Temporal"), "{reason}");
        }
    }
}
