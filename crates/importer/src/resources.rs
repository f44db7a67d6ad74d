//! Checking, before anything is registered, that the IoT resources a profile names exist.
//!
//! Only a real `ResourceNotFoundException` (or a deprecated type, a dynamic group) makes a
//! profile invalid. A throttle or a 5xx says nothing about the profile: each call is tried again
//! after a short backoff, and if it still fails the check ends as `Throttled` / `Transient`,
//! which the state machine retries with its long, jittered backoff — never the terminal
//! `InvalidProfile` (issue 10: 3 of 36 throttled imports once ended that way).

use std::future::Future;
use std::time::Duration;

use aws_sdk_iot::config::http::HttpResponse;
use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iot::operation::describe_thing_group::DescribeThingGroupError;
use aws_sdk_iot::operation::describe_thing_type::DescribeThingTypeError;
use aws_sdk_iot::operation::get_policy::GetPolicyError;
use thingpress_product::Profile;

use crate::ImportError;
use crate::classify::classify;

/// Attempts per check call (the SDK makes one each): a few, because the state machine
/// does the long backoff and Split must not sit on its Lambda time.
const PROFILE_CHECK_ATTEMPTS: u32 = 4;
/// The first wait between attempts; it doubles each time (0.2 s, 0.4 s, 0.8 s).
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// One check call: `Ok(Some(output))`, `Ok(None)` when the resource does not exist, or the
/// classified error once throttles and faults outlast [`PROFILE_CHECK_ATTEMPTS`].
async fn checked<T, E, F, Fut>(
    operation: &str,
    resource: &str,
    mut send: F,
    is_not_found: impl Fn(&E) -> bool,
) -> Result<Option<T>, ImportError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let err = match send().await {
            Ok(output) => return Ok(Some(output)),
            Err(err) => err,
        };
        if err.as_service_error().is_some_and(&is_not_found) {
            return Ok(None);
        }
        let error = classify(operation, resource, &err);
        let retryable = matches!(error, ImportError::Throttled(_) | ImportError::Transient(_));
        if !retryable || attempt >= PROFILE_CHECK_ATTEMPTS {
            return Err(error);
        }
        tracing::warn!(operation, resource, attempt, %error, "profile check retried");
        tokio::time::sleep(backoff).await;
        backoff *= 2;
        attempt += 1;
    }
}

/// Checks that the profile's thing type exists and is not deprecated, and that each thing group
/// and policy exists. Missing resources come back together as [`ImportError::ProfileProblems`]
/// (`Thingpress.InvalidProfile`); a check that cannot be made is Throttled/Transient (after a
/// short retry) or AwsRejected.
pub async fn check_profile_resources(
    client: &aws_sdk_iot::Client,
    profile: &Profile,
) -> Result<(), ImportError> {
    let mut problems = Vec::new();

    if let Some(thing_type) = &profile.thing_type {
        let found = checked(
            "DescribeThingType",
            &format!("thing type {thing_type}"),
            || {
                client
                    .describe_thing_type()
                    .thing_type_name(thing_type)
                    .send()
            },
            |e| matches!(e, DescribeThingTypeError::ResourceNotFoundException(_)),
        )
        .await?;
        match found {
            Some(out) if out.thing_type_metadata().is_some_and(|m| m.deprecated()) => {
                problems.push(format!(
                    "thingType {thing_type:?} is deprecated (IoT refuses new things of it)"
                ));
            }
            Some(_) => {}
            None => problems.push(format!("thingType {thing_type:?} does not exist")),
        }
    }

    let groups = (profile.thing_groups.iter().map(|g| ("thingGroups", g))).chain(
        profile
            .activation_groups
            .iter()
            .map(|g| ("activationGroups", g)),
    );
    for (field, group) in groups {
        let found = checked(
            "DescribeThingGroup",
            &format!("thing group {group}"),
            || client.describe_thing_group().thing_group_name(group).send(),
            |e| matches!(e, DescribeThingGroupError::ResourceNotFoundException(_)),
        )
        .await?;
        match found {
            // A dynamic group's membership comes from a query; AddThingToThingGroup refuses it.
            Some(out) if out.query_string().is_some() => problems.push(format!(
                "{field}: {group:?} is a dynamic thing group; things cannot be added to it"
            )),
            Some(_) => {}
            None => problems.push(format!("{field}: {group:?} does not exist")),
        }
    }

    for policy in &profile.policies {
        let found = checked(
            "GetPolicy",
            &format!("policy {policy}"),
            || client.get_policy().policy_name(policy).send(),
            |e| matches!(e, GetPolicyError::ResourceNotFoundException(_)),
        )
        .await?;
        if found.is_none() {
            problems.push(format!("policies: {policy:?} does not exist"));
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(ImportError::ProfileProblems {
            profile: profile.name.clone(),
            problems,
        })
    }
}
