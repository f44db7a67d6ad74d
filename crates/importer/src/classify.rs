//! Sorting SDK failures into the three task-level classes the state machine understands.

use aws_sdk_iot::config::http::HttpResponse;
use aws_sdk_iot::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::ImportError;

/// Error codes AWS uses for rate limiting.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
];

/// Error codes for faults on AWS's side that another attempt may not meet.
const TRANSIENT_CODES: &[&str] = &[
    "ServiceUnavailableException",
    "ServiceUnavailable",
    "InternalFailureException",
    "InternalFailure",
    "InternalException",
    "InternalServerException",
    "InternalServerError",
    "InternalError",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// What kind of failure a service error is, from its code and HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Throttled,
    Transient,
    Rejected,
}

pub(crate) fn class_of(code: Option<&str>, status: Option<u16>) -> Class {
    match (code, status) {
        (Some(c), _) if THROTTLING_CODES.contains(&c) => Class::Throttled,
        (_, Some(429)) => Class::Throttled,
        (Some(c), _) if TRANSIENT_CODES.contains(&c) => Class::Transient,
        (_, Some(s)) if s >= 500 => Class::Transient,
        _ => Class::Rejected,
    }
}

/// Turns a failed call into a task error. The SDK's own short retry has already run, so a
/// throttle that is still there ends the task (`Throttled`) and the ASL backs off; faults are
/// `Transient`; everything else (access denied, resource quota, missing type/group/policy) is
/// `AwsRejected`, with the API and the resource named.
pub(crate) fn classify<E>(
    operation: &str,
    resource: &str,
    err: &SdkError<E, HttpResponse>,
) -> ImportError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let (class, detail) = match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code();
            let detail = format!(
                "{}: {}",
                code.unwrap_or("unknown error"),
                e.message().unwrap_or("no message")
            );
            (class_of(code, status), detail)
        }
        // Built locally and never sent: retrying cannot help.
        SdkError::ConstructionFailure(_) => (Class::Rejected, DisplayErrorContext(err).to_string()),
        // No usable answer (timeout, connection failure, unreadable response): try again later.
        _ => (Class::Transient, DisplayErrorContext(err).to_string()),
    };
    let message = format!("{operation} {resource}: {detail}");
    match class {
        Class::Throttled => ImportError::Throttled(message),
        Class::Transient => ImportError::Transient(message),
        Class::Rejected => ImportError::AwsRejected(message),
    }
}

/// The service's message for a modeled error, or its code when it has none.
pub(crate) fn service_message<E: ProvideErrorMetadata>(e: &E) -> String {
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (None, Some(message)) => message.to_owned(),
        (Some(code), None) => code.to_owned(),
        (None, None) => "no message".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        assert_eq!(
            class_of(Some("ThrottlingException"), Some(400)),
            Class::Throttled
        );
        assert_eq!(class_of(None, Some(429)), Class::Throttled);
        assert_eq!(
            class_of(Some("ServiceUnavailableException"), Some(503)),
            Class::Transient
        );
        assert_eq!(
            class_of(Some("InternalFailureException"), None),
            Class::Transient
        );
        assert_eq!(class_of(None, Some(502)), Class::Transient);
        assert_eq!(
            class_of(Some("UnauthorizedException"), Some(401)),
            Class::Rejected
        );
        assert_eq!(
            class_of(Some("AccessDeniedException"), Some(403)),
            Class::Rejected
        );
        assert_eq!(
            class_of(Some("LimitExceededException"), Some(410)),
            Class::Rejected
        );
        assert_eq!(
            class_of(Some("ResourceNotFoundException"), Some(404)),
            Class::Rejected
        );
    }
}
