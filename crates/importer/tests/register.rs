//! Registration against a mocked IoT client: the exact calls, their order, and the error classes.

// Test helpers may panic on fixtures that are wrong by construction.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use aws_sdk_iot::Client;
use aws_sdk_iot::config::http::HttpResponse;
use aws_sdk_iot::operation::create_thing::CreateThingOutput;
use aws_sdk_iot::operation::describe_certificate::DescribeCertificateOutput;
use aws_sdk_iot::operation::describe_thing_group::DescribeThingGroupOutput;
use aws_sdk_iot::operation::describe_thing_type::DescribeThingTypeOutput;
use aws_sdk_iot::operation::get_policy::GetPolicyOutput;
use aws_sdk_iot::operation::list_principal_things::ListPrincipalThingsOutput;
use aws_sdk_iot::operation::register_certificate_without_ca::RegisterCertificateWithoutCaOutput;
use aws_sdk_iot::operation::update_thing::UpdateThingOutput;
use aws_sdk_iot::types::{
    CertificateDescription, CertificateStatus as IotStatus,
    ThingPrincipalType as IotThingPrincipalType, ThingTypeMetadata,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use thingpress_importer::{
    Api, CALL_ATTEMPTS, CertificateStep, EntrySteps, ImportError, Importer, Outcome, Pacer, Quotas,
    check_profile_resources, sdk_retry_config,
};
use thingpress_manifest::ErrorName;
use thingpress_product::{
    CertificateStatus, Decorated, OnThingConflict, Profile, ThingPrincipalType,
};

const CERT_ID: &str = "5f1ae5fb1ba18e5c3c4ea2e5b7bd30d8a1c9e43c5a7c1e40c1a3b1e1d0f0a0b0";
const CERT_ARN: &str = "arn:aws:iot:us-east-1:123456789012:cert/5f1ae5fb1ba18e5c3c4ea2e5b7bd30d8a1c9e43c5a7c1e40c1a3b1e1d0f0a0b0";
const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn entry() -> Decorated {
    Decorated {
        index: 42,
        certificate_id: CERT_ID.into(),
        certificate_pem: PEM.into(),
        device_id: "0123a1b2c3d4e5f6ee".into(),
        thing_name: "ATECC608C_0123a1b2c3d4e5f6ee".into(),
        thing_type: Some("Sensor".into()),
        attributes: BTreeMap::from([("part".to_owned(), "ATECC608C".to_owned())]),
        policies: vec!["DevicePolicy".into(), "Telemetry".into()],
        thing_groups: vec!["fleet".into()],
        certificate_status: CertificateStatus::Active,
        on_thing_conflict: OnThingConflict::Reject,
        thing_principal_type: ThingPrincipalType::NonExclusiveThing,
    }
}

/// An AWS JSON error response as IoT sends it.
fn aws_error(status: u16, code: &'static str, extra: serde_json::Value) -> HttpResponse {
    let mut body = serde_json::json!({ "message": format!("{code} from the mock") });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let mut response = HttpResponse::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(body.to_string()),
    );
    response.headers_mut().insert("x-amzn-ErrorType", code);
    response
}

fn importer(client: Client) -> Importer {
    // Far above any test's call count, so pacing never slows these tests.
    let pacer = Pacer::new(&Quotas::default().scaled(1000.0), 0.0, 1).unwrap();
    Importer::new(client, pacer)
}

fn client(rules: &[&Rule]) -> Client {
    mock_client!(aws_sdk_iot, RuleMode::Sequential, rules, |c| c
        .retry_config(sdk_retry_config()))
}

fn register_ok() -> Rule {
    mock!(Client::register_certificate_without_ca)
        .match_requests(|r| {
            r.certificate_pem() == Some(PEM) && r.status() == Some(&IotStatus::Active)
        })
        .then_output(|| {
            RegisterCertificateWithoutCaOutput::builder()
                .certificate_arn(CERT_ARN)
                .certificate_id(CERT_ID)
                .build()
        })
}

fn register_exists() -> Rule {
    mock!(Client::register_certificate_without_ca).then_http_response(|| {
        aws_error(
            409,
            "ResourceAlreadyExistsException",
            serde_json::json!({ "resourceId": CERT_ID, "resourceArn": CERT_ARN }),
        )
    })
}

fn describe(status: IotStatus) -> Rule {
    mock!(Client::describe_certificate)
        .match_requests(|r| r.certificate_id() == Some(CERT_ID))
        .then_output(move || {
            DescribeCertificateOutput::builder()
                .certificate_description(
                    CertificateDescription::builder()
                        .certificate_arn(CERT_ARN)
                        .certificate_id(CERT_ID)
                        .status(status.clone())
                        .build(),
                )
                .build()
        })
}

/// ListPrincipalThings of the certificate: the things it is attached to.
fn principal_things(things: &'static [&'static str]) -> Rule {
    mock!(Client::list_principal_things)
        .match_requests(|r| r.principal() == Some(CERT_ARN))
        .then_output(move || {
            ListPrincipalThingsOutput::builder()
                .set_things(Some(things.iter().map(|t| (*t).to_owned()).collect()))
                .build()
        })
}

fn create_thing_ok() -> Rule {
    mock!(Client::create_thing)
        .match_requests(|r| {
            r.thing_name() == Some("ATECC608C_0123a1b2c3d4e5f6ee")
                && r.thing_type_name() == Some("Sensor")
                && r.attribute_payload()
                    .and_then(|p| p.attributes())
                    .and_then(|a| a.get("part"))
                    .map(String::as_str)
                    == Some("ATECC608C")
        })
        .then_output(|| {
            CreateThingOutput::builder()
                .thing_name("ATECC608C_0123a1b2c3d4e5f6ee")
                .build()
        })
}

fn create_thing_conflict() -> Rule {
    mock!(Client::create_thing).then_http_response(|| {
        aws_error(
            409,
            "ResourceAlreadyExistsException",
            serde_json::json!({ "resourceId": "t" }),
        )
    })
}

fn attach_principal_ok() -> Rule {
    mock!(Client::attach_thing_principal)
        .match_requests(|r| {
            r.thing_name() == Some("ATECC608C_0123a1b2c3d4e5f6ee")
                && r.principal() == Some(CERT_ARN)
                // AWS's default (non-exclusive) is left for IoT to fill in.
                && r.thing_principal_type().is_none()
        })
        .then_output(|| {
            aws_sdk_iot::operation::attach_thing_principal::AttachThingPrincipalOutput::builder()
                .build()
        })
}

fn attach_policy_ok(policy: &'static str) -> Rule {
    mock!(Client::attach_policy)
        .match_requests(move |r| r.policy_name() == Some(policy) && r.target() == Some(CERT_ARN))
        .then_output(|| {
            aws_sdk_iot::operation::attach_policy::AttachPolicyOutput::builder().build()
        })
}

fn add_to_group_ok(group: &'static str) -> Rule {
    mock!(Client::add_thing_to_thing_group)
        .match_requests(move |r| {
            r.thing_group_name() == Some(group)
                && r.thing_name() == Some("ATECC608C_0123a1b2c3d4e5f6ee")
        })
        .then_output(|| {
            aws_sdk_iot::operation::add_thing_to_thing_group::AddThingToThingGroupOutput::builder()
                .build()
        })
}

fn all_used(rules: &[&Rule]) {
    for (i, rule) in rules.iter().enumerate() {
        assert!(rule.num_calls() >= 1, "rule {i} was never used");
    }
}

#[tokio::test]
async fn new_certificate_costs_three_plus_policies_plus_groups_calls() {
    let rules = [
        register_ok(),
        create_thing_ok(),
        attach_principal_ok(),
        attach_policy_ok("DevicePolicy"),
        attach_policy_ok("Telemetry"),
        add_to_group_ok("fleet"),
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let importer = importer(client(&refs));
    let result = importer.register(&entry()).await.unwrap();
    assert_eq!(result.outcome, Outcome::Registered);
    assert_eq!(result.certificate_arn.as_deref(), Some(CERT_ARN));
    assert_eq!(result.index, 42);
    assert_eq!(result.error, None);
    all_used(&refs);
    let calls = importer.api_calls();
    assert_eq!(calls.total(), 3 + 2 + 1);
    assert_eq!(calls.get(Api::AttachPolicy), 2);
    assert_eq!(calls.get(Api::DescribeCertificate), 0);
    assert_eq!(
        serde_json::to_value(&calls).unwrap(),
        serde_json::json!({
            "RegisterCertificateWithoutCA": 1, "CreateThing": 1, "AttachThingPrincipal": 1,
            "AttachPolicy": 2, "AddThingToThingGroup": 1
        })
    );
    let line = serde_json::to_value(&result).unwrap();
    assert_eq!(line["outcome"], "registered");
    assert_eq!(line["certificateArn"], CERT_ARN);
    assert!(line.get("error").is_none());
}

#[tokio::test]
async fn inactive_status_is_requested() {
    let rule = mock!(Client::register_certificate_without_ca)
        .match_requests(|r| r.status() == Some(&IotStatus::Inactive))
        .then_output(|| {
            RegisterCertificateWithoutCaOutput::builder()
                .certificate_arn(CERT_ARN)
                .build()
        });
    let mut e = entry();
    e.certificate_status = CertificateStatus::Inactive;
    e.policies.clear();
    e.thing_groups.clear();
    let rules = [rule, create_thing_ok(), attach_principal_ok()];
    let refs: Vec<&Rule> = rules.iter().collect();
    let importer = importer(client(&refs));
    assert_eq!(
        importer.register(&e).await.unwrap().outcome,
        Outcome::Registered
    );
    all_used(&refs);
}

#[tokio::test]
async fn an_exclusive_profile_attaches_exclusively_and_a_refusal_rejects_the_entry() {
    let exclusive = || {
        mock!(Client::attach_thing_principal).match_requests(|r| {
            r.thing_name() == Some("ATECC608C_0123a1b2c3d4e5f6ee")
                && r.thing_principal_type() == Some(&IotThingPrincipalType::ExclusiveThing)
        })
    };
    let mut e = entry();
    e.thing_principal_type = ThingPrincipalType::ExclusiveThing;
    e.policies.clear();
    e.thing_groups.clear();

    let accepted = exclusive().then_output(|| {
        aws_sdk_iot::operation::attach_thing_principal::AttachThingPrincipalOutput::builder()
            .build()
    });
    let rules = [register_ok(), create_thing_ok(), accepted];
    let refs: Vec<&Rule> = rules.iter().collect();
    let result = importer(client(&refs)).register(&e).await.unwrap();
    assert_eq!(result.outcome, Outcome::Registered);
    all_used(&refs);

    // IoT refuses a certificate that another thing holds (the API models only
    // InvalidRequestException for it): the entry is rejected, naming IoT's reason.
    let refused = exclusive().then_http_response(|| {
        aws_error(
            400,
            "InvalidRequestException",
            serde_json::json!({ "message": "principal is exclusively attached to thing other" }),
        )
    });
    let rules = [register_ok(), create_thing_ok(), refused];
    let refs: Vec<&Rule> = rules.iter().collect();
    let result = importer(client(&refs)).register(&e).await.unwrap();
    assert_eq!(result.outcome, Outcome::Rejected);
    assert_eq!(result.error, Some(ErrorName::RejectedByIot));
    let message = result.message.as_deref().unwrap_or("");
    assert!(
        message.contains("exclusively attached to thing other"),
        "{message}"
    );
    all_used(&refs);
}

#[tokio::test]
async fn already_registered_certificate_is_described_and_completed() {
    let rules = [
        register_exists(),
        describe(IotStatus::Inactive),
        // Attached to this entry's own thing already (a re-run): carry on.
        principal_things(&["ATECC608C_0123a1b2c3d4e5f6ee"]),
        create_thing_ok(),
        attach_principal_ok(),
        attach_policy_ok("DevicePolicy"),
        attach_policy_ok("Telemetry"),
        add_to_group_ok("fleet"),
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let importer = importer(client(&refs));
    let result = importer.register(&entry()).await.unwrap();
    assert_eq!(result.outcome, Outcome::AlreadyRegistered);
    assert_eq!(result.certificate_arn.as_deref(), Some(CERT_ARN));
    assert!(result.message.as_deref().unwrap_or("").contains("INACTIVE"));
    all_used(&refs);
    assert_eq!(importer.api_calls().total(), 8);
    // One register attempt: ResourceAlreadyExists is not retried by the SDK.
    assert_eq!(rules[0].num_calls(), 1);
}

#[tokio::test]
async fn a_certificate_attached_to_another_thing_is_a_thing_conflict() {
    // The same certificate under another device id (e.g. in an earlier manifest).
    let rules = [
        register_exists(),
        describe(IotStatus::Active),
        principal_things(&["ATECC608C_0123a1b2c3d4e5f6ee", "other-device"]),
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let importer = importer(client(&refs));
    let result = importer.register(&entry()).await.unwrap();
    assert_eq!(result.outcome, Outcome::Rejected);
    assert_eq!(result.error, Some(ErrorName::ThingConflict));
    let message = result.message.as_deref().unwrap_or("");
    assert!(message.contains("other-device"), "{message}");
    assert!(
        !message.contains("ATECC608C_0123a1b2c3d4e5f6ee,"),
        "{message}"
    );
    all_used(&refs);
    // No thing created, nothing attached.
    assert_eq!(importer.api_calls().total(), 3);
}

#[tokio::test]
async fn revoked_certificate_is_rejected_and_never_reactivated() {
    let rules = [register_exists(), describe(IotStatus::Revoked)];
    let refs: Vec<&Rule> = rules.iter().collect();
    let importer = importer(client(&refs));
    let result = importer.register(&entry()).await.unwrap();
    assert_eq!(result.outcome, Outcome::Rejected);
    assert_eq!(result.error, Some(ErrorName::RejectedByIot));
    assert!(result.message.as_deref().unwrap_or("").contains("REVOKED"));
    assert_eq!(result.certificate_arn.as_deref(), Some(CERT_ARN));
    // Nothing after DescribeCertificate: no UpdateCertificate, no thing.
    assert_eq!(importer.api_calls().total(), 2);
    let line = serde_json::to_value(&result).unwrap();
    assert_eq!(line["error"], "Thingpress.RejectedByIot");
    assert_eq!(line["outcome"], "rejected");
}

#[tokio::test]
async fn existing_certificate_under_another_id_is_rejected() {
    let rule = mock!(Client::register_certificate_without_ca).then_http_response(|| {
        aws_error(
            409,
            "ResourceAlreadyExistsException",
            serde_json::json!({ "resourceId": "other" }),
        )
    });
    let importer = importer(client(&[&rule]));
    let result = importer.register(&entry()).await.unwrap();
    assert_eq!(result.error, Some(ErrorName::RejectedByIot));
    assert!(result.message.as_deref().unwrap_or("").contains("other"));
    assert_eq!(importer.api_calls().total(), 1);
}

#[tokio::test]
async fn iot_refusing_the_certificate_rejects_the_entry() {
    for code in ["CertificateValidationException", "InvalidRequestException"] {
        let rule = mock!(Client::register_certificate_without_ca)
            .then_http_response(move || aws_error(400, code, serde_json::json!({})));
        let importer = importer(client(&[&rule]));
        let result = importer.register(&entry()).await.unwrap();
        assert_eq!(result.outcome, Outcome::Rejected);
        assert_eq!(result.error, Some(ErrorName::RejectedByIot));
        let message = result.message.unwrap_or_default();
        assert!(
            message.contains(code) && message.contains("from the mock"),
            "{message}"
        );
        assert_eq!(rule.num_calls(), 1);
    }
}

#[tokio::test]
async fn conflicting_thing_is_rejected_when_the_profile_says_reject() {
    let rules = [register_ok(), create_thing_conflict()];
    let refs: Vec<&Rule> = rules.iter().collect();
    let importer = importer(client(&refs));
    let result = importer.register(&entry()).await.unwrap();
    assert_eq!(result.error, Some(ErrorName::ThingConflict));
    assert_eq!(result.certificate_arn.as_deref(), Some(CERT_ARN));
    assert!(
        result
            .message
            .as_deref()
            .unwrap_or("")
            .contains("ATECC608C_0123a1b2c3d4e5f6ee")
    );
    assert_eq!(importer.api_calls().total(), 2);
}

#[tokio::test]
async fn conflicting_thing_is_updated_when_the_profile_says_update() {
    let update = mock!(Client::update_thing)
        .match_requests(|r| {
            r.thing_name() == Some("ATECC608C_0123a1b2c3d4e5f6ee")
                && r.thing_type_name() == Some("Sensor")
                && r.remove_thing_type().is_none()
                && r.attribute_payload().is_some_and(|p| {
                    !p.merge() && p.attributes().and_then(|a| a.get("part")).is_some()
                })
        })
        .then_output(|| UpdateThingOutput::builder().build());
    let rules = [
        register_ok(),
        create_thing_conflict(),
        update,
        attach_principal_ok(),
        attach_policy_ok("DevicePolicy"),
        attach_policy_ok("Telemetry"),
        add_to_group_ok("fleet"),
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let importer = importer(client(&refs));
    let mut e = entry();
    e.on_thing_conflict = OnThingConflict::Update;
    let result = importer.register(&e).await.unwrap();
    assert_eq!(result.outcome, Outcome::Registered);
    all_used(&refs);
    assert_eq!(importer.api_calls().get(Api::UpdateThing), 1);
}

#[tokio::test]
async fn update_without_thing_type_removes_it() {
    let update = mock!(Client::update_thing)
        .match_requests(|r| r.thing_type_name().is_none() && r.remove_thing_type() == Some(true))
        .then_output(|| UpdateThingOutput::builder().build());
    let rules = [
        register_ok(),
        create_thing_conflict(),
        update,
        attach_principal_ok(),
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let importer = importer(client(&refs));
    let mut e = entry();
    e.on_thing_conflict = OnThingConflict::Update;
    e.thing_type = None;
    e.policies.clear();
    e.thing_groups.clear();
    assert_eq!(
        importer.register(&e).await.unwrap().outcome,
        Outcome::Registered
    );
    all_used(&refs);
}

fn throttle() -> HttpResponse {
    aws_error(429, "ThrottlingException", serde_json::json!({}))
}

#[tokio::test]
async fn throttling_that_clears_is_absorbed_by_the_paced_retry() {
    let register = mock!(Client::register_certificate_without_ca)
        .sequence()
        .http_response(throttle)
        .times(2)
        .output(|| {
            RegisterCertificateWithoutCaOutput::builder()
                .certificate_arn(CERT_ARN)
                .certificate_id(CERT_ID)
                .build()
        })
        .build();
    let rules = [
        register,
        create_thing_ok(),
        attach_principal_ok(),
        attach_policy_ok("DevicePolicy"),
        attach_policy_ok("Telemetry"),
        add_to_group_ok("fleet"),
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let importer = importer(client(&refs));
    let result = importer.register(&entry()).await.unwrap();
    assert_eq!(result.outcome, Outcome::Registered);
    assert_eq!(rules[0].num_calls(), 3);
    // Calls are operations; the attempts and throttles are counted apart.
    let stats = importer.call_stats();
    assert_eq!(stats.calls, importer.api_calls());
    assert_eq!(stats.calls.get(Api::RegisterCertificateWithoutCA), 1);
    assert_eq!(stats.attempts.get(Api::RegisterCertificateWithoutCA), 3);
    assert_eq!(stats.throttles.get(Api::RegisterCertificateWithoutCA), 2);
    assert_eq!(stats.throttles.total(), 2);
    assert_eq!(stats.attempts.get(Api::CreateThing), 1);
    // The throttles reached the pacer: that API alone slowed (once: they came within a second).
    let pacer = importer.pacer();
    let slowed = pacer.rate(Api::RegisterCertificateWithoutCA);
    let grant = pacer.grant(Api::RegisterCertificateWithoutCA);
    assert!((slowed - grant * 0.9).abs() < 1e-6, "{slowed} of {grant}");
    assert_eq!(pacer.rate(Api::CreateThing), pacer.grant(Api::CreateThing));
}

#[tokio::test(start_paused = true)]
async fn waits_for_tokens_are_counted() {
    let rules = every_step();
    let refs: Vec<&Rule> = rules.iter().collect();
    // AttachPolicy at 1 call a second, the rest unpaced in effect: the second policy waits 1 s.
    let pacer = Pacer::with_rates(|api| match api {
        Api::AttachPolicy => 1.0,
        _ => 1000.0,
    })
    .unwrap();
    let importer = Importer::new(client(&refs), pacer);
    importer.register(&entry()).await.unwrap();
    let waited = importer.call_stats().token_wait;
    assert!(
        waited >= std::time::Duration::from_secs(1)
            && waited < std::time::Duration::from_millis(1100),
        "{waited:?}"
    );
}

#[tokio::test]
async fn throttling_that_persists_ends_the_task_as_throttled() {
    let rules = [register_ok(), create_thing_ok(), attach_principal_ok()];
    let policy = mock!(Client::attach_policy)
        .sequence()
        .http_response(throttle)
        .times(CALL_ATTEMPTS as usize)
        .build();
    let refs: Vec<&Rule> = rules.iter().chain([&policy]).collect();
    let importer = importer(client(&refs));
    let err = importer.register(&entry()).await.unwrap_err();
    assert!(matches!(err, ImportError::Throttled(_)), "{err:?}");
    assert_eq!(err.name(), ErrorName::Throttled);
    assert!(
        err.to_string().contains("AttachPolicy policy DevicePolicy"),
        "{err}"
    );
    assert_eq!(
        policy.num_calls(),
        CALL_ATTEMPTS as usize,
        "the importer tries CALL_ATTEMPTS times before giving up"
    );
    let stats = importer.call_stats();
    assert_eq!(
        stats.throttles.get(Api::AttachPolicy),
        u64::from(CALL_ATTEMPTS)
    );
    assert_eq!(stats.calls.get(Api::AttachPolicy), 1);
}

/// The calls of `entry()` for a new certificate, in order, each answered with success.
fn every_step() -> Vec<Rule> {
    vec![
        register_ok(),
        create_thing_ok(),
        attach_principal_ok(),
        attach_policy_ok("DevicePolicy"),
        attach_policy_ok("Telemetry"),
        add_to_group_ok("fleet"),
    ]
}

/// Step `n` of [`every_step`] throttled on every attempt, so the entry stops there.
fn throttled_step(n: usize) -> Rule {
    match n {
        0 => mock!(Client::register_certificate_without_ca)
            .sequence()
            .http_response(throttle)
            .times(CALL_ATTEMPTS as usize)
            .build(),
        1 => mock!(Client::create_thing)
            .sequence()
            .http_response(throttle)
            .times(CALL_ATTEMPTS as usize)
            .build(),
        2 => mock!(Client::attach_thing_principal)
            .sequence()
            .http_response(throttle)
            .times(CALL_ATTEMPTS as usize)
            .build(),
        3 | 4 => mock!(Client::attach_policy)
            .sequence()
            .http_response(throttle)
            .times(CALL_ATTEMPTS as usize)
            .build(),
        _ => mock!(Client::add_thing_to_thing_group)
            .sequence()
            .http_response(throttle)
            .times(CALL_ATTEMPTS as usize)
            .build(),
    }
}

#[tokio::test]
async fn a_stop_after_any_step_resumes_there_and_the_entry_stays_registered() {
    let e = entry();
    for stop in 0..6 {
        // First attempt: the steps before `stop` succeed, then IoT keeps throttling.
        let mut first: Vec<Rule> = every_step().into_iter().take(stop).collect();
        first.push(throttled_step(stop));
        let refs: Vec<&Rule> = first.iter().collect();
        let importer1 = importer(client(&refs));
        let mut steps = EntrySteps::new(&e);
        let err = importer1.resume(&e, &mut steps).await.unwrap_err();
        assert!(matches!(err, ImportError::Throttled(_)), "{stop}: {err:?}");
        all_used(&refs);
        let policies = ["DevicePolicy", "Telemetry"];
        let expected = EntrySteps {
            certificate: (stop > 0).then(|| CertificateStep {
                arn: CERT_ARN.into(),
                outcome: Outcome::Registered,
                status: None,
            }),
            thing: stop > 1,
            principal: stop > 2,
            policies: policies[..stop.saturating_sub(3).min(2)]
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            ..EntrySteps::new(&e)
        };
        assert_eq!(steps, expected, "stopped at step {stop}");
        assert_eq!(steps.started(), stop > 0);

        // The steps as the progress file keeps them, then the retry: only the calls from the
        // step that stopped on, and the certificate this run registered is still `registered`.
        let line = serde_json::to_string(&steps).unwrap();
        let mut saved: EntrySteps = serde_json::from_str(&line).unwrap();
        assert_eq!(saved, steps);
        let rest: Vec<Rule> = every_step().into_iter().skip(stop).collect();
        let refs: Vec<&Rule> = rest.iter().collect();
        let importer2 = importer(client(&refs));
        let result = importer2.resume(&e, &mut saved).await.unwrap();
        assert_eq!(
            result.outcome,
            Outcome::Registered,
            "stopped at step {stop}"
        );
        assert_eq!(result.certificate_arn.as_deref(), Some(CERT_ARN));
        assert_eq!(result.message, None);
        all_used(&refs);
        let calls = importer2.api_calls();
        assert_eq!(calls.total(), (6 - stop) as u64, "stopped at step {stop}");
        assert_eq!(
            calls.get(Api::RegisterCertificateWithoutCA),
            u64::from(stop == 0)
        );
        assert_eq!(calls.get(Api::DescribeCertificate), 0);
    }
}

#[tokio::test]
async fn a_stop_after_the_conflict_check_resumes_without_checking_again() {
    let e = entry();
    let throttled_thing = throttled_step(1);
    let first = [
        register_exists(),
        describe(IotStatus::Inactive),
        principal_things(&[]),
        throttled_thing,
    ];
    let refs: Vec<&Rule> = first.iter().collect();
    let importer1 = importer(client(&refs));
    let mut steps = EntrySteps::new(&e);
    importer1.resume(&e, &mut steps).await.unwrap_err();
    assert!(steps.conflict_checked && !steps.thing, "{steps:?}");

    let rest: Vec<Rule> = every_step().into_iter().skip(1).collect();
    let refs: Vec<&Rule> = rest.iter().collect();
    let importer2 = importer(client(&refs));
    let result = importer2.resume(&e, &mut steps).await.unwrap();
    assert_eq!(result.outcome, Outcome::AlreadyRegistered);
    assert!(
        result.message.as_deref().unwrap_or("").contains("INACTIVE"),
        "{result:?}"
    );
    all_used(&refs);
    assert_eq!(importer2.api_calls().total(), 5);
    assert_eq!(importer2.api_calls().get(Api::ListPrincipalThings), 0);
}

#[tokio::test]
async fn steps_of_another_entry_are_not_resumed() {
    let e = entry();
    let mut other = entry();
    other.certificate_id = "ab".repeat(32);
    let mut steps = EntrySteps::new(&other);
    steps.certificate = Some(CertificateStep {
        arn: "arn:aws:iot:us-east-1:123456789012:cert/other".into(),
        outcome: Outcome::Registered,
        status: None,
    });
    steps.thing = true;
    assert!(!steps.belong_to(&e));
    let rules = every_step();
    let refs: Vec<&Rule> = rules.iter().collect();
    let importer = importer(client(&refs));
    let result = importer.resume(&e, &mut steps).await.unwrap();
    assert_eq!(result.certificate_arn.as_deref(), Some(CERT_ARN));
    all_used(&refs);
    assert_eq!(importer.api_calls().total(), 6, "started over");
    assert!(steps.belong_to(&e));
}

#[tokio::test]
async fn server_errors_are_transient() {
    let rule = mock!(Client::register_certificate_without_ca)
        .sequence()
        .http_response(|| aws_error(503, "ServiceUnavailableException", serde_json::json!({})))
        .http_response(|| aws_error(500, "InternalFailureException", serde_json::json!({})))
        .times(2)
        .build();
    let importer = importer(client(&[&rule]));
    let err = importer.register(&entry()).await.unwrap_err();
    assert!(matches!(err, ImportError::Transient(_)), "{err:?}");
    assert_eq!(err.name(), ErrorName::Transient);
    assert_eq!(rule.num_calls(), 3);
}

#[tokio::test]
async fn access_denied_is_terminal_and_names_the_api_and_resource() {
    let denied = mock!(Client::attach_policy)
        .then_http_response(|| aws_error(401, "UnauthorizedException", serde_json::json!({})));
    let rules = [
        register_ok(),
        create_thing_ok(),
        attach_principal_ok(),
        denied,
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let importer = importer(client(&refs));
    let err = importer.register(&entry()).await.unwrap_err();
    assert!(matches!(err, ImportError::AwsRejected(_)), "{err:?}");
    assert_eq!(err.name(), ErrorName::AwsRejected);
    let text = err.to_string();
    assert!(
        text.contains("AttachPolicy policy DevicePolicy") && text.contains("UnauthorizedException"),
        "{text}"
    );
    assert_eq!(rules[3].num_calls(), 1, "no retry of a refusal");
}

#[tokio::test]
async fn missing_thing_group_during_registration_is_terminal() {
    let missing = mock!(Client::add_thing_to_thing_group)
        .then_http_response(|| aws_error(404, "ResourceNotFoundException", serde_json::json!({})));
    let rules = [
        register_ok(),
        create_thing_ok(),
        attach_principal_ok(),
        attach_policy_ok("DevicePolicy"),
        attach_policy_ok("Telemetry"),
        missing,
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let importer = importer(client(&refs));
    let err = importer.register(&entry()).await.unwrap_err();
    assert!(matches!(err, ImportError::AwsRejected(_)), "{err:?}");
    assert!(err.to_string().contains("thing group fleet"), "{err}");
}

fn profile() -> Profile {
    let mut p = Profile::named("widget");
    p.thing_type = Some("Sensor".into());
    p.thing_groups = vec!["fleet".into(), "gone".into(), "smart".into()];
    p.policies = vec!["DevicePolicy".into(), "Nope".into()];
    p
}

#[tokio::test]
async fn profile_resources_that_exist_pass() {
    let thing_type = mock!(Client::describe_thing_type).then_output(|| {
        DescribeThingTypeOutput::builder()
            .thing_type_name("Sensor")
            .build()
    });
    let group = mock!(Client::describe_thing_group).then_output(|| {
        DescribeThingGroupOutput::builder()
            .thing_group_name("g")
            .build()
    });
    let policy = mock!(Client::get_policy)
        .then_output(|| GetPolicyOutput::builder().policy_name("p").build());
    let client = mock_client!(
        aws_sdk_iot,
        RuleMode::MatchAny,
        [&thing_type, &group, &policy]
    );
    let mut p = profile();
    p.thing_groups = vec!["fleet".into()];
    p.policies = vec!["DevicePolicy".into()];
    check_profile_resources(&client, &p).await.unwrap();
    assert_eq!(
        thing_type.num_calls() + group.num_calls() + policy.num_calls(),
        3
    );
}

#[tokio::test]
async fn profile_resources_missing_are_all_listed() {
    let thing_type = mock!(Client::describe_thing_type).then_output(|| {
        DescribeThingTypeOutput::builder()
            .thing_type_name("Sensor")
            .thing_type_metadata(ThingTypeMetadata::builder().deprecated(true).build())
            .build()
    });
    let fleet = mock!(Client::describe_thing_group)
        .match_requests(|r| r.thing_group_name() == Some("fleet"))
        .then_output(|| {
            DescribeThingGroupOutput::builder()
                .thing_group_name("fleet")
                .build()
        });
    let smart = mock!(Client::describe_thing_group)
        .match_requests(|r| r.thing_group_name() == Some("smart"))
        .then_output(|| {
            DescribeThingGroupOutput::builder()
                .thing_group_name("smart")
                .query_string("attributes.part:ATECC608C")
                .build()
        });
    let gone = mock!(Client::describe_thing_group)
        .match_requests(|r| r.thing_group_name() == Some("gone"))
        .then_http_response(|| aws_error(404, "ResourceNotFoundException", serde_json::json!({})));
    let policy_ok = mock!(Client::get_policy)
        .match_requests(|r| r.policy_name() == Some("DevicePolicy"))
        .then_output(|| {
            GetPolicyOutput::builder()
                .policy_name("DevicePolicy")
                .build()
        });
    let policy_missing = mock!(Client::get_policy)
        .match_requests(|r| r.policy_name() == Some("Nope"))
        .then_http_response(|| aws_error(404, "ResourceNotFoundException", serde_json::json!({})));
    let client = mock_client!(
        aws_sdk_iot,
        RuleMode::MatchAny,
        [
            &thing_type,
            &fleet,
            &smart,
            &gone,
            &policy_ok,
            &policy_missing
        ]
    );
    let err = check_profile_resources(&client, &profile())
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidProfile);
    let ImportError::ProfileProblems { profile, problems } = err else {
        panic!("expected ProfileProblems");
    };
    assert_eq!(profile, "widget");
    assert_eq!(problems.len(), 4, "{problems:?}");
    let text = problems.join("\n");
    for needle in [
        "\"Sensor\" is deprecated",
        "\"gone\" does not exist",
        "\"smart\" is a dynamic",
        "\"Nope\" does not exist",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in {text}");
    }
}

#[tokio::test]
async fn profile_check_that_cannot_be_made_is_not_a_profile_problem() {
    let thing_type = mock!(Client::describe_thing_type)
        .then_http_response(|| aws_error(403, "AccessDeniedException", serde_json::json!({})));
    let client = mock_client!(aws_sdk_iot, RuleMode::MatchAny, [&thing_type]);
    let err = check_profile_resources(&client, &profile())
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::AwsRejected);
    assert!(
        err.to_string()
            .contains("DescribeThingType thing type Sensor"),
        "{err}"
    );
}
