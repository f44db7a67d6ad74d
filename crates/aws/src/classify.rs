//! The one classifier of failed SDK calls. Throttling ends a task as `Throttled` (the state
//! machine backs off), a fault on AWS's side or the network is `Transient` (another attempt may
//! not meet it), everything else (access denied, a resource quota, a missing resource) is
//! `Rejected`: retrying cannot fix it.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

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

/// What kind of failure a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Rate limited: slow down and try again.
    Throttled,
    /// A fault on AWS's side or the network: try again.
    Transient,
    /// Refused for a reason another attempt cannot fix.
    Rejected,
}

/// A classified failure and the service's words for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure it is.
    pub class: Class,
    /// `Code: message` for a service error, the SDK's error chain otherwise.
    pub detail: String,
}

/// The class of a service error, from its code and HTTP status.
pub fn class_of(code: Option<&str>, status: Option<u16>) -> Class {
    match (code, status) {
        (Some(c), _) if THROTTLING_CODES.contains(&c) => Class::Throttled,
        (_, Some(429)) => Class::Throttled,
        (Some(c), _) if TRANSIENT_CODES.contains(&c) => Class::Transient,
        (_, Some(s)) if s >= 500 => Class::Transient,
        _ => Class::Rejected,
    }
}

/// Whether an AWS error code means "slow down".
pub fn is_throttling_code(code: &str) -> bool {
    class_of(Some(code), None) == Class::Throttled
}

/// Classifies a failed SDK call of any AWS service.
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            Failure {
                class: class_of(e.code(), status),
                detail: service_message(e),
            }
        }
        // Built locally and never sent: retrying cannot help.
        SdkError::ConstructionFailure(_) => Failure {
            class: Class::Rejected,
            detail: DisplayErrorContext(err).to_string(),
        },
        // No usable answer (timeout, connection failure, unreadable response): try again later.
        _ => Failure {
            class: Class::Transient,
            detail: DisplayErrorContext(err).to_string(),
        },
    }
}

/// The service's message for a modeled error, or its code when it has none.
pub fn service_message<E: ProvideErrorMetadata>(e: &E) -> String {
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
        let cases = [
            (Some("ThrottlingException"), Some(400), Class::Throttled),
            (Some("SlowDown"), Some(503), Class::Throttled),
            (None, Some(429), Class::Throttled),
            (
                Some("ServiceUnavailableException"),
                Some(503),
                Class::Transient,
            ),
            (Some("InternalFailureException"), None, Class::Transient),
            (Some("RequestTimeout"), Some(400), Class::Transient),
            (Some("SomethingNewException"), Some(503), Class::Transient),
            (None, Some(502), Class::Transient),
            (Some("UnauthorizedException"), Some(401), Class::Rejected),
            (Some("AccessDeniedException"), Some(403), Class::Rejected),
            (Some("LimitExceededException"), Some(410), Class::Rejected),
            (
                Some("ResourceNotFoundException"),
                Some(404),
                Class::Rejected,
            ),
            (None, None, Class::Rejected),
        ];
        for (code, status, class) in cases {
            assert_eq!(class_of(code, status), class, "{code:?} {status:?}");
        }
        assert!(is_throttling_code("TooManyRequestsException"));
        assert!(!is_throttling_code("InternalError"));
    }
}
