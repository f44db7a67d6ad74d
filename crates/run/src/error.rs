//! The one error type of every Lambda task: a `Thingpress.*` name, which the state machine's
//! Retry and Catch match, and a message.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use thingpress_aws::Class;
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

    /// Classifies a failed AWS SDK call with the one classifier in `thingpress-aws`.
    pub fn from_sdk<E>(operation: &str, target: &str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let failure = thingpress_aws::classify(&err);
        let name = match failure.class {
            Class::Throttled => ErrorName::Throttled,
            Class::Transient => ErrorName::Transient,
            Class::Rejected => ErrorName::AwsRejected,
        };
        TaskError::new(
            name,
            format!("{operation} {target} failed: {}", failure.detail),
        )
    }
}

impl From<thingpress_importer::ImportError> for TaskError {
    fn from(err: thingpress_importer::ImportError) -> Self {
        TaskError::new(err.name(), err.to_string())
    }
}
