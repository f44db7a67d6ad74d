//! A failed IoT call as an [`ImportError`], classified by the one classifier in `thingpress-aws`.

use aws_sdk_iot::config::http::HttpResponse;
use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};
use thingpress_aws::Class;

pub(crate) use thingpress_aws::service_message;

use crate::ImportError;

/// Turns a failed call into a task error. The importer's paced retries have already run, so a
/// throttle that is still there ends the task (`Throttled`) and the chunk continues later; faults are
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
    let failure = thingpress_aws::classify(err);
    let message = format!("{operation} {resource}: {}", failure.detail);
    match failure.class {
        Class::Throttled => ImportError::Throttled(message),
        Class::Transient => ImportError::Transient(message),
        Class::Rejected => ImportError::AwsRejected(message),
    }
}
