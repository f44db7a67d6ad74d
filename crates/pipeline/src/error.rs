//! The one error type of every Lambda task, and its mapping to the Lambda error name that the
//! state machine's Retry and Catch match.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use thingpress_manifest::ErrorName;

/// A failed task: a `Thingpress.*` name and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct TaskError {
    /// The Lambda error type the ASL sees.
    pub name: ErrorName,
    /// What went wrong, naming the object, entry or field.
    pub message: String,
}

impl TaskError {
    /// An error with this name.
    pub fn new(name: ErrorName, message: impl Into<String>) -> Self {
        TaskError {
            name,
            message: message.into(),
        }
    }

    /// The task's input is not what the state machine sends.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        TaskError::new(ErrorName::InvalidInput, message)
    }

    /// The product profile is unusable.
    pub fn invalid_profile(message: impl Into<String>) -> Self {
        TaskError::new(ErrorName::InvalidProfile, message)
    }

    /// Classifies a failed AWS SDK call: throttling and 5xx/network faults are retryable, the
    /// rest is terminal.
    pub fn from_sdk<E, R>(operation: &str, target: &str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let name = match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => ErrorName::Transient,
            SdkError::ServiceError(service) => {
                let code = service.err().code().unwrap_or_default();
                if is_throttling_code(code) {
                    ErrorName::Throttled
                } else if code.starts_with("Internal") || code == "ServiceUnavailable" {
                    ErrorName::Transient
                } else {
                    ErrorName::AwsRejected
                }
            }
            _ => ErrorName::AwsRejected,
        };
        let detail = match err.as_service_error() {
            Some(service) => format!(
                "{}: {}",
                service.code().unwrap_or("error"),
                service.message().unwrap_or("no message")
            ),
            None => aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
        };
        TaskError::new(name, format!("{operation} {target} failed: {detail}"))
    }
}

/// AWS error codes that mean "slow down".
pub fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "SlowDown"
            | "RequestThrottled"
            | "RequestThrottledException"
    )
}

impl From<TaskError> for lambda_runtime::Diagnostic {
    fn from(err: TaskError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: err.name.as_str().to_owned(),
            error_message: err.message,
        }
    }
}

impl From<thingpress_importer::ImportError> for TaskError {
    fn from(err: thingpress_importer::ImportError) -> Self {
        TaskError::new(err.name(), err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_carries_the_thingpress_name() {
        let d: lambda_runtime::Diagnostic = TaskError::invalid_input("no runId").into();
        assert_eq!(d.error_type, "Thingpress.InvalidInput");
        assert_eq!(d.error_message, "no runId");
    }
}
