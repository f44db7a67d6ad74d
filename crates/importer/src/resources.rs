//! Checking, before anything is registered, that the IoT resources a profile names exist.

use aws_sdk_iot::operation::describe_thing_group::DescribeThingGroupError;
use aws_sdk_iot::operation::describe_thing_type::DescribeThingTypeError;
use aws_sdk_iot::operation::get_policy::GetPolicyError;
use thingpress_product::Profile;

use crate::ImportError;
use crate::classify::classify;

/// Checks that the profile's thing type exists and is not deprecated, and that each thing group
/// and policy exists. Missing resources come back together as [`ImportError::ProfileProblems`]
/// (`Thingpress.InvalidProfile`); a check that cannot be made is Throttled/Transient/AwsRejected.
pub async fn check_profile_resources(
    client: &aws_sdk_iot::Client,
    profile: &Profile,
) -> Result<(), ImportError> {
    let mut problems = Vec::new();

    if let Some(thing_type) = &profile.thing_type {
        match client
            .describe_thing_type()
            .thing_type_name(thing_type)
            .send()
            .await
        {
            Ok(out) => {
                if out.thing_type_metadata().is_some_and(|m| m.deprecated()) {
                    problems.push(format!(
                        "thingType {thing_type:?} is deprecated (IoT refuses new things of it)"
                    ));
                }
            }
            Err(err) => match err.as_service_error() {
                Some(DescribeThingTypeError::ResourceNotFoundException(_)) => {
                    problems.push(format!("thingType {thing_type:?} does not exist"));
                }
                _ => {
                    return Err(classify(
                        "DescribeThingType",
                        &format!("thing type {thing_type}"),
                        &err,
                    ));
                }
            },
        }
    }

    for group in &profile.thing_groups {
        match client
            .describe_thing_group()
            .thing_group_name(group)
            .send()
            .await
        {
            Ok(out) => {
                // A dynamic group's membership comes from a query; AddThingToThingGroup refuses it.
                if out.query_string().is_some() {
                    problems.push(format!(
                        "thingGroups: {group:?} is a dynamic thing group; things cannot be added to it"
                    ));
                }
            }
            Err(err) => match err.as_service_error() {
                Some(DescribeThingGroupError::ResourceNotFoundException(_)) => {
                    problems.push(format!("thingGroups: {group:?} does not exist"));
                }
                _ => {
                    return Err(classify(
                        "DescribeThingGroup",
                        &format!("thing group {group}"),
                        &err,
                    ));
                }
            },
        }
    }

    for policy in &profile.policies {
        match client.get_policy().policy_name(policy).send().await {
            Ok(_) => {}
            Err(err) => match err.as_service_error() {
                Some(GetPolicyError::ResourceNotFoundException(_)) => {
                    problems.push(format!("policies: {policy:?} does not exist"));
                }
                _ => return Err(classify("GetPolicy", &format!("policy {policy}"), &err)),
            },
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
