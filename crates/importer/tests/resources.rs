//! The profile check against a mocked IoT client: only a real NotFound makes a profile invalid;
//! throttles and faults are tried again, then end as the retryable Throttled / Transient.

// Test helpers may panic on fixtures that are wrong by construction.
#![allow(clippy::unwrap_used)]

use aws_sdk_iot::Client;
use aws_sdk_iot::config::http::HttpResponse;
use aws_sdk_iot::config::retry::RetryConfig;
use aws_sdk_iot::operation::describe_thing_group::DescribeThingGroupOutput;
use aws_sdk_iot::operation::describe_thing_type::DescribeThingTypeOutput;
use aws_sdk_iot::operation::get_policy::GetPolicyOutput;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use thingpress_importer::{ImportError, check_profile_resources};
use thingpress_manifest::ErrorName;
use thingpress_product::Profile;

/// Tries per call before the check gives up (the library's own bound).
const ATTEMPTS: usize = 4;

fn aws_error(status: u16, code: &'static str) -> HttpResponse {
    let mut response = HttpResponse::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(format!(r#"{{"message":"{code} from the mock"}}"#)),
    );
    response.headers_mut().insert("x-amzn-ErrorType", code);
    response
}

fn throttle() -> HttpResponse {
    aws_error(400, "ThrottlingException")
}

fn profile() -> Profile {
    let mut p = Profile::named("widget");
    p.thing_type = Some("Sensor".into());
    p.thing_groups = vec!["fleet".into()];
    p.policies = vec!["DevicePolicy".into()];
    p
}

fn thing_type_ok() -> Rule {
    mock!(Client::describe_thing_type).then_output(|| {
        DescribeThingTypeOutput::builder()
            .thing_type_name("Sensor")
            .build()
    })
}

fn group_ok() -> Rule {
    mock!(Client::describe_thing_group).then_output(|| {
        DescribeThingGroupOutput::builder()
            .thing_group_name("fleet")
            .build()
    })
}

fn policy_ok() -> Rule {
    mock!(Client::get_policy).then_output(|| {
        GetPolicyOutput::builder()
            .policy_name("DevicePolicy")
            .build()
    })
}

/// The SDK's own retry is off, so every attempt counted here is the check's.
fn client(rules: &[&Rule]) -> Client {
    mock_client!(aws_sdk_iot, RuleMode::MatchAny, rules, |c| c
        .retry_config(RetryConfig::disabled()))
}

#[tokio::test(start_paused = true)]
async fn a_throttle_that_clears_is_retried_and_the_profile_passes() {
    let policy = mock!(Client::get_policy)
        .sequence()
        .http_response(throttle)
        .times(2)
        .output(|| {
            GetPolicyOutput::builder()
                .policy_name("DevicePolicy")
                .build()
        })
        .build();
    let (thing_type, group) = (thing_type_ok(), group_ok());
    let client = client(&[&thing_type, &group, &policy]);
    check_profile_resources(&client, &profile()).await.unwrap();
    assert_eq!(policy.num_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_throttle_that_persists_is_throttled_not_invalid_profile() {
    let thing_type = mock!(Client::describe_thing_type)
        .sequence()
        .http_response(throttle)
        .repeatedly()
        .build();
    let client = client(&[&thing_type]);
    let err = check_profile_resources(&client, &profile())
        .await
        .unwrap_err();
    assert!(matches!(err, ImportError::Throttled(_)), "{err:?}");
    assert_eq!(err.name(), ErrorName::Throttled);
    assert!(
        err.to_string()
            .contains("DescribeThingType thing type Sensor"),
        "{err}"
    );
    assert_eq!(thing_type.num_calls(), ATTEMPTS);
}

#[tokio::test(start_paused = true)]
async fn a_server_error_that_persists_is_transient() {
    let group = mock!(Client::describe_thing_group)
        .sequence()
        .http_response(|| aws_error(500, "InternalFailureException"))
        .repeatedly()
        .build();
    let thing_type = thing_type_ok();
    let client = client(&[&thing_type, &group]);
    let err = check_profile_resources(&client, &profile())
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::Transient, "{err}");
    assert!(err.to_string().contains("thing group fleet"), "{err}");
    assert_eq!(group.num_calls(), ATTEMPTS);
}

#[tokio::test(start_paused = true)]
async fn a_fault_then_not_found_is_an_invalid_profile() {
    let policy = mock!(Client::get_policy)
        .sequence()
        .http_response(|| aws_error(503, "ServiceUnavailableException"))
        .http_response(|| aws_error(404, "ResourceNotFoundException"))
        .build();
    let (thing_type, group) = (thing_type_ok(), group_ok());
    let client = client(&[&thing_type, &group, &policy]);
    let err = check_profile_resources(&client, &profile())
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidProfile);
    assert!(
        err.to_string()
            .contains("policies: \"DevicePolicy\" does not exist"),
        "{err}"
    );
    assert_eq!(policy.num_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn access_denied_is_not_retried_and_not_a_profile_problem() {
    let policy = mock!(Client::get_policy)
        .sequence()
        .http_response(|| aws_error(403, "AccessDeniedException"))
        .repeatedly()
        .build();
    let (thing_type, group) = (thing_type_ok(), group_ok());
    let client = client(&[&thing_type, &group, &policy]);
    let err = check_profile_resources(&client, &profile())
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::AwsRejected, "{err}");
    assert_eq!(policy.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn every_resource_is_checked_once_when_all_answer() {
    let (thing_type, group, policy) = (thing_type_ok(), group_ok(), policy_ok());
    let client = client(&[&thing_type, &group, &policy]);
    check_profile_resources(&client, &profile()).await.unwrap();
    assert_eq!(
        (
            thing_type.num_calls(),
            group.num_calls(),
            policy.num_calls()
        ),
        (1, 1, 1)
    );
}
