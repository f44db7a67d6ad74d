//! Whether IoT still holds any of the smoke test's certificates and things: each is described,
//! and only "not found" counts as gone.

use anyhow::{Result, anyhow};

use super::bundle::Device;
use crate::target::sdk_message;

/// What IoT still holds of the devices, one `certificate <id>` or `thing <name>` each.
pub async fn still_there(iot: &aws_sdk_iot::Client, devices: &[Device]) -> Result<Vec<String>> {
    let mut left = Vec::new();
    for device in devices {
        if certificate_exists(iot, &device.certificate_id).await? {
            left.push(format!("certificate {}", device.certificate_id));
        }
        if thing_exists(iot, &device.thing_name).await? {
            left.push(format!("thing {}", device.thing_name));
        }
    }
    Ok(left)
}

async fn certificate_exists(iot: &aws_sdk_iot::Client, id: &str) -> Result<bool> {
    match iot.describe_certificate().certificate_id(id).send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(anyhow!("describing certificate {id}: {}", sdk_message(&e))),
    }
}

async fn thing_exists(iot: &aws_sdk_iot::Client, name: &str) -> Result<bool> {
    match iot.describe_thing().thing_name(name).send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(anyhow!("describing thing {name}: {}", sdk_message(&e))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use aws_sdk_iot::operation::describe_certificate::{
        DescribeCertificateError, DescribeCertificateOutput,
    };
    use aws_sdk_iot::operation::describe_thing::{DescribeThingError, DescribeThingOutput};
    use aws_sdk_iot::types::error::ResourceNotFoundException;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    #[tokio::test]
    async fn only_what_iot_does_not_find_is_gone() {
        let certificate_gone = mock!(aws_sdk_iot::Client::describe_certificate)
            .match_requests(|r| r.certificate_id() == Some("aa"))
            .then_error(|| {
                DescribeCertificateError::ResourceNotFoundException(
                    ResourceNotFoundException::builder().build(),
                )
            });
        let certificate_kept = mock!(aws_sdk_iot::Client::describe_certificate)
            .match_requests(|r| r.certificate_id() == Some("bb"))
            .then_output(|| DescribeCertificateOutput::builder().build());
        let thing_gone = mock!(aws_sdk_iot::Client::describe_thing)
            .match_requests(|r| r.thing_name() == Some("t-a"))
            .then_error(|| {
                DescribeThingError::ResourceNotFoundException(
                    ResourceNotFoundException::builder().build(),
                )
            });
        let thing_kept = mock!(aws_sdk_iot::Client::describe_thing)
            .match_requests(|r| r.thing_name() == Some("t-b"))
            .then_output(|| DescribeThingOutput::builder().build());
        let iot = mock_client!(
            aws_sdk_iot,
            RuleMode::MatchAny,
            [
                &certificate_gone,
                &certificate_kept,
                &thing_gone,
                &thing_kept
            ]
        );
        let device = |id: &str, thing: &str| Device {
            certificate_id: id.to_owned(),
            thing_name: thing.to_owned(),
        };
        let left = still_there(&iot, &[device("aa", "t-a")]).await.unwrap();
        assert!(left.is_empty(), "{left:?}");
        let left = still_there(&iot, &[device("aa", "t-b"), device("bb", "t-a")])
            .await
            .unwrap();
        assert_eq!(left, ["thing t-b", "certificate bb"]);

        // Anything but "not found" is no answer: the check fails rather than guess.
        let denied = mock!(aws_sdk_iot::Client::describe_certificate).then_error(|| {
            DescribeCertificateError::generic(
                aws_sdk_iot::error::ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("not authorized")
                    .build(),
            )
        });
        let iot = mock_client!(aws_sdk_iot, [&denied]);
        let error = still_there(&iot, &[device("cc", "t-c")]).await.unwrap_err();
        assert!(
            format!("{error:#}").contains("describing certificate cc"),
            "{error:#}"
        );
    }
}
