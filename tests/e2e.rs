//! End to end against the running local stack (`script/local up && script/local deploy`): real
//! executions of the deployed state machine, with Lambdas served by cargo lambda watch and IoT by
//! moto behind the edge. Tests that change the edge's global faults, quotas or stats hold the
//! write half of `EDGE`; the others hold the read half and run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use aws_sdk_sfn::types::ExecutionStatus;
use base64::Engine;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use thingpress_manifest::{ErrorName, Options, Slot};
use thingpress_metrics::{Metric, Source};
use thingpress_run::report::{Report, RunStatus};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_real_sample_is_imported_and_registered() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let samples = [
        ("microchip", "ECC608C-TNGTLSU-B.json", 10, Slot::E0E0),
        ("infineon", "manifest-infineon.7z", 200, Slot::E0E0),
        ("espressif", "manifest-espressif.csv", 7, Slot::E0E0),
        ("generated", "certificates_test.txt", 100, Slot::E0E0),
    ];
    let before = stack.certificate_ids().await;
    let mut runs = Vec::new();
    for (supplier, file, count, slot) in samples {
        let tag = unique(supplier);
        let bytes = fixture(file);
        let ids = manifest_ids(
            &bytes,
            &Options {
                slot,
                ..Options::default()
            },
        );
        assert_eq!(ids.len(), count, "{file}");
        let key = format!("runs/{tag}/manifest/{file}");
        stack.put(&key, bytes).await;
        let mut profile = stack.resources(&tag, 1, 1).await;
        profile["chunkSize"] = json!(40);
        stack.start(&tag, &key, profile.clone(), false).await;
        runs.push((tag, profile, ids));
    }
    for (tag, profile, ids) in &runs {
        let run = stack.wait(tag).await;
        let report = stack.report(&run).await;
        assert_eq!(
            report.status,
            RunStatus::Complete,
            "{tag}: {:?}",
            report.problems
        );
        let old = ids.iter().filter(|(c, _)| before.contains(c)).count() as u64;
        assert_eq!(report.entries, ids.len() as u64, "{tag}");
        assert_eq!(report.outcomes.registered, ids.len() as u64 - old, "{tag}");
        assert_eq!(report.outcomes.already_registered, old, "{tag}");
        assert_eq!(report.outcomes.rejected, 0, "{tag}");
        stack.verify_registry(profile, ids, &before).await;
    }
    let after = stack.certificate_ids().await;
    for (_, _, ids) in &runs {
        assert!(ids.iter().all(|(c, _)| after.contains(c)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_with_type_two_groups_and_two_policies_attaches_everything() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let tag = unique("profile");
    let (key, ids) = fresh_manifest(&stack, &tag, 25).await;
    let mut profile = stack.resources(&tag, 2, 2).await;
    profile["chunkSize"] = json!(10);
    let run = stack.import(&tag, &key, profile.clone(), false).await;
    let report = stack.report(&run).await;
    assert_eq!(report.status, RunStatus::Complete);
    assert_eq!(report.chunks, 3);
    assert_eq!(report.outcomes.registered, 25);
    assert_eq!(report.api_calls.get("AttachPolicy").copied(), Some(50));
    assert_eq!(
        report.api_calls.get("AddThingToThingGroup").copied(),
        Some(50)
    );
    stack
        .verify_registry(&profile, &ids, &BTreeSet::new())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_profile_keeps_each_certificate_on_its_thing_alone() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let tag = unique("exclusive");
    let (key, ids) = fresh_manifest(&stack, &tag, 4).await;
    let mut profile = stack.resources(&tag, 1, 1).await;
    profile["thingPrincipalType"] = json!("EXCLUSIVE_THING");
    let run = stack.import(&tag, &key, profile.clone(), false).await;
    let report = stack.report(&run).await;
    assert_eq!(report.status, RunStatus::Complete, "{:?}", report.problems);
    assert_eq!(report.outcomes.registered, 4);
    stack
        .verify_registry(&profile, &ids, &BTreeSet::new())
        .await;

    // IoT (for moto, the edge) records each attachment as exclusive, and holds to it: the
    // certificate cannot be attached to a second thing.
    let other = format!("{tag}-other");
    stack
        .iot
        .create_thing()
        .thing_name(&other)
        .send()
        .await
        .unwrap();
    for (cert, device) in &ids {
        let thing = format!("{tag}-{device}");
        let listed = stack
            .iot
            .list_thing_principals_v2()
            .thing_name(&thing)
            .send()
            .await
            .unwrap();
        let types: Vec<_> = listed
            .thing_principal_objects()
            .iter()
            .map(|o| o.thing_principal_type().cloned())
            .collect();
        assert_eq!(
            types,
            [Some(aws_sdk_iot::types::ThingPrincipalType::ExclusiveThing)],
            "{thing}"
        );
        let arn = listed.thing_principal_objects()[0].principal().to_owned();
        assert!(arn.ends_with(cert.as_str()), "{arn} is not {cert}");
        let refused = stack
            .iot
            .attach_thing_principal()
            .thing_name(&other)
            .principal(&arn)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            refused.as_service_error().and_then(|e| {
                use aws_sdk_iot::error::ProvideErrorMetadata;
                e.code()
            }),
            Some("InvalidRequestException"),
            "{refused:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_manifest_twice_is_skipped_then_forced_to_already_registered() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let tag = unique("twice");
    let (key, ids) = fresh_manifest(&stack, &tag, 12).await;
    let profile = stack.resources(&tag, 1, 1).await;
    let first = stack
        .import(&format!("{tag}-1"), &key, profile.clone(), false)
        .await;
    assert_eq!(stack.report(&first).await.outcomes.registered, 12);

    let duplicate = stack
        .import(&format!("{tag}-2"), &key, profile.clone(), false)
        .await;
    assert_eq!(duplicate.status, ExecutionStatus::Succeeded);
    assert_eq!(
        duplicate.output["status"], "Skipped",
        "{}",
        duplicate.output
    );
    assert_eq!(duplicate.output["ownerRunId"], format!("{tag}-1"));
    assert!(
        stack
            .get(&format!("runs/{tag}-2/report.json"))
            .await
            .is_none()
    );

    let forced = stack
        .import(&format!("{tag}-3"), &key, profile.clone(), true)
        .await;
    let report = stack.report(&forced).await;
    assert_eq!(report.status, RunStatus::Complete);
    assert_eq!(report.outcomes.registered, 0);
    assert_eq!(report.outcomes.already_registered, 12);
    stack
        .verify_registry(&profile, &ids, &BTreeSet::new())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_entries_are_reported_with_their_names() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let tag = unique("rejects");
    let profile = stack.resources(&tag, 1, 1).await;

    let key = format!("runs/{tag}/manifest/tmngtlss.json");
    stack.put(&key, fixture("ECC608-TMNGTLSS-B.json")).await;
    let run = stack
        .import(&format!("{tag}-mchp"), &key, profile.clone(), false)
        .await;
    let report = stack.report(&run).await;
    assert!(report.entries > 0);
    assert_eq!(report.outcomes.rejected, report.entries);
    assert_eq!(
        report
            .outcomes
            .rejected_by_error
            .get(&ErrorName::MissingCertificate)
            .copied(),
        Some(report.entries)
    );

    // base64(PEM) per line: good lines around undecodable and non-certificate ones.
    let good = fresh_certificates(&tag, 6);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let lines = [
        b64(&good[0]),
        "!!!not base64!!!".to_owned(),
        b64(&good[1]),
        b64(&good[2]),
        b64("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        b64(&good[3]),
        b64(&good[4]),
        b64(&good[5]),
    ];
    let key = format!("runs/{tag}/manifest/mixed.txt");
    stack
        .put(&key, (lines.join("\n") + "\n").into_bytes())
        .await;
    let run_id = format!("{tag}-mixed");
    let run = stack.import(&run_id, &key, profile.clone(), false).await;
    let report = stack.report(&run).await;
    assert_eq!(report.status, RunStatus::Complete);
    assert_eq!(report.entries, 8);
    assert_eq!(report.outcomes.registered, 6);
    assert_eq!(report.outcomes.rejected, 2, "{:?}", report.outcomes);
    let rejected = stack
        .get(&format!("runs/{run_id}/rejected/00000.jsonl"))
        .await
        .expect("rejects object");
    let rejected: Vec<Value> = String::from_utf8(rejected)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let indexes: Vec<u64> = rejected
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [1, 4], "{rejected:?}");
    for r in &rejected {
        let name = r["error"].as_str().unwrap();
        assert!(
            ErrorName::ALL.iter().any(|n| n.as_str() == name),
            "{name} is not an error name"
        );
        assert!(!r["message"].as_str().unwrap_or_default().is_empty(), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_throttling_registers_everything_once() {
    let _exclusive = EDGE.write().await;
    let stack = Stack::new().await;
    let tag = unique("throttle");
    let (key, ids) = fresh_manifest(&stack, &tag, 20).await;
    let mut profile = stack.resources(&tag, 1, 1).await;
    profile["chunkSize"] = json!(10);
    let before = stack.certificate_ids().await;
    edge(
        &stack.state,
        "POST",
        "/_edge/reset",
        Some(json!({"faults": true, "stats": true, "quotas": false})),
    );
    edge(
        &stack.state,
        "POST",
        "/_edge/faults",
        Some(
            json!({"iot": {"RegisterCertificateWithoutCA": {"throttle": 0.3},
                            "AttachPolicy": {"throttle": 0.3}}}),
        ),
    );
    let run = stack.import(&tag, &key, profile.clone(), false).await;
    let stats = edge(&stack.state, "GET", "/_edge/stats", None);
    edge(&stack.state, "POST", "/_edge/faults", Some(json!({})));
    let report = stack.report(&run).await;
    let ops = &stats["operations"];
    let injected = ops["RegisterCertificateWithoutCA"]["throttledInjected"]
        .as_u64()
        .unwrap_or(0)
        + ops["AttachPolicy"]["throttledInjected"]
            .as_u64()
            .unwrap_or(0);
    eprintln!("{tag}: {injected} throttles injected");
    assert!(injected > 0, "no fault injected: {stats}");
    assert_eq!(report.status, RunStatus::Complete);
    // A chunk retried after a throttle finds the certificates its earlier attempt registered
    // before the throttle stopped it: those count as already registered.
    assert_eq!(
        report.outcomes.registered + report.outcomes.already_registered,
        20,
        "{:?}",
        report.outcomes
    );
    assert!(
        report.outcomes.already_registered <= report.chunk_retries * 10,
        "{report:?}"
    );
    let after = stack.certificate_ids().await;
    assert_eq!(after.len() - before.len(), 20, "one certificate per entry");
    stack
        .verify_registry(&profile, &ids, &BTreeSet::new())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_default_quotas_are_respected() {
    let _exclusive = EDGE.write().await;
    let stack = Stack::new().await;
    let tag = unique("quota");
    let (key, ids) = fresh_manifest(&stack, &tag, 30).await;
    let mut profile = stack.resources(&tag, 1, 1).await;
    profile["chunkSize"] = json!(10);
    edge(&stack.state, "POST", "/_edge/reset", Some(json!({})));
    edge(
        &stack.state,
        "POST",
        "/_edge/quotas",
        Some(json!({"enabled": true, "scale": 1, "defaults": true})),
    );
    let run = stack.import(&tag, &key, profile.clone(), false).await;
    let stats = edge(&stack.state, "GET", "/_edge/stats", None);
    let config = edge(&stack.state, "GET", "/_edge/config", None);
    edge(&stack.state, "POST", "/_edge/reset", Some(json!({})));
    let report = stack.report(&run).await;
    assert_eq!(report.status, RunStatus::Complete);
    assert_eq!(report.outcomes.registered, 30);
    let register = &stats["operations"]["RegisterCertificateWithoutCA"];
    let passed = register["passed"].as_f64().unwrap();
    let span = register["lastPassed"].as_f64().unwrap() - register["firstPassed"].as_f64().unwrap();
    let quota = config["quotas"]["effective"]["RegisterCertificateWithoutCA"]
        .as_f64()
        .unwrap();
    assert_eq!(quota, 10.0, "AWS's default quota: {config}");
    let rate = if span > 0.0 {
        (passed - 1.0) / span
    } else {
        passed
    };
    eprintln!(
        "{tag}: RegisterCertificateWithoutCA {passed} passed in {span:.1}s = {rate:.2}/s = {:.0}% of the quota {quota}/s; throttledQuota {}; report.throttled {}",
        100.0 * rate / quota,
        register["throttledQuota"],
        report.throttled
    );
    assert_eq!(passed as u64, 30, "{register}");
    // A throttle the pacing could not avoid must have been absorbed (the run completed above).
    assert!(report.throttled == 0 || report.outcomes.registered == 30);
    stack
        .verify_registry(&profile, &ids, &BTreeSet::new())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_and_profiles_fail_with_their_names_and_register_nothing() {
    let _exclusive = EDGE.write().await;
    let stack = Stack::new().await;
    let tag = unique("bad");
    let profile = stack.resources(&tag, 1, 1).await;
    let calls = |stats: &Value| {
        stats["operations"]["RegisterCertificateWithoutCA"]["calls"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = calls(&edge(&stack.state, "GET", "/_edge/stats", None));

    let key = format!("runs/{tag}/manifest/notes.txt");
    stack
        .put(&key, b"these are not certificates\n".to_vec())
        .await;
    let run = stack
        .import(&format!("{tag}-manifest"), &key, profile.clone(), false)
        .await;
    assert_eq!(run.status, ExecutionStatus::Failed);
    assert_eq!(
        run.error.as_deref(),
        Some("Thingpress.InvalidManifest"),
        "{:?}",
        run.cause
    );

    let (key, ids) = fresh_manifest(&stack, &tag, 3).await;
    let mut bad = profile.clone();
    bad["policies"] = json!([format!("{tag}-no-such-policy")]);
    let run = stack
        .import(&format!("{tag}-profile"), &key, bad, false)
        .await;
    assert_eq!(run.status, ExecutionStatus::Failed);
    assert_eq!(
        run.error.as_deref(),
        Some("Thingpress.InvalidProfile"),
        "{:?}",
        run.cause
    );
    assert!(
        run.cause
            .as_deref()
            .unwrap_or_default()
            .contains("no-such-policy"),
        "{:?}",
        run.cause
    );

    let after = calls(&edge(&stack.state, "GET", "/_edge/stats", None));
    assert_eq!(after, before, "nothing registered");
    let registered = stack.certificate_ids().await;
    assert!(ids.iter().all(|(c, _)| !registered.contains(c)));
    assert!(stack.things_of(&tag).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistently_failing_register_fails_the_execution() {
    let _exclusive = EDGE.write().await;
    let stack = Stack::new().await;
    let tag = unique("crash");
    let (key, _ids) = fresh_manifest(&stack, &tag, 4).await;
    let profile = stack.resources(&tag, 1, 1).await;
    edge(
        &stack.state,
        "POST",
        "/_edge/faults",
        Some(json!({"lambda": {"register": {"crash": 1.0}}})),
    );
    let run = stack.import(&tag, &key, profile, false).await;
    let stats = edge(&stack.state, "GET", "/_edge/stats", None);
    edge(&stack.state, "POST", "/_edge/faults", Some(json!({})));
    eprintln!(
        "{tag}: lambda stats {}",
        stats["operations"]["Lambda.Invoke:register"]
    );
    assert!(
        stats["operations"]["Lambda.Invoke:register"]["lambdaCrashes"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{stats}"
    );
    assert_eq!(run.status, ExecutionStatus::Failed, "{}", run.output);
    assert_eq!(
        run.error.as_deref(),
        Some("Thingpress.IncompleteImport"),
        "{:?}",
        run.cause
    );
    let report: Report = serde_json::from_slice(
        &stack
            .get(&format!("runs/{tag}/report.json"))
            .await
            .expect("report"),
    )
    .unwrap();
    assert_eq!(report.status, RunStatus::Incomplete);
    assert_eq!(report.outcomes.registered, 0);
}

/// The executions the upload trigger started for `key`, oldest first, once there are `count`.
async fn triggered_runs(stack: &Stack, key: &str, count: usize) -> Vec<String> {
    let started = std::time::Instant::now();
    loop {
        let mut runs = Vec::new();
        let mut token = None;
        loop {
            let page = stack
                .sfn
                .list_executions()
                .state_machine_arn(&stack.machine)
                .set_next_token(token)
                .send()
                .await
                .unwrap();
            for execution in page.executions() {
                let out = stack
                    .sfn
                    .describe_execution()
                    .execution_arn(execution.execution_arn())
                    .send()
                    .await
                    .unwrap();
                let input: Value =
                    serde_json::from_str(out.input().unwrap_or("null")).unwrap_or(Value::Null);
                if input.pointer("/detail/object/key").and_then(Value::as_str) == Some(key) {
                    runs.push((execution.start_date().secs(), execution.name().to_owned()));
                }
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        if runs.len() >= count {
            runs.sort();
            return runs.into_iter().map(|(_, name)| name).collect();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "{} of {count} executions for {key} after 2 minutes",
            runs.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Issue 10: the bucket is versioned, so every upload is a new version. Claims are keyed by
/// content (bucket, key, ETag, size), so identical bytes uploaded again under incoming/ start a
/// run that Split ends as Skipped, owned by the first run, instead of importing them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_bytes_uploaded_twice_under_incoming_are_skipped_the_second_time() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    // Names under the template's default allow-list (AllowedPolicies/AllowedThingGroups).
    let tag = format!("thingpress-{}", unique("reupload"));
    let profile = stack.resources(&tag, 1, 1).await;
    stack
        .put(
            &format!("profiles/{tag}.json"),
            profile.to_string().into_bytes(),
        )
        .await;
    let bundle = fresh_certificates(&tag, 6).concat().into_bytes();
    let key = format!("incoming/{tag}/certs.pem");
    let version = || async {
        stack
            .s3
            .head_object()
            .bucket(&stack.bucket)
            .key(&key)
            .send()
            .await
            .unwrap()
            .version_id()
            .map(str::to_owned)
    };

    stack.put(&key, bundle.clone()).await;
    let first_version = version().await;
    let first = triggered_runs(&stack, &key, 1).await.remove(0);
    let first = stack.wait(&first).await;
    assert_eq!(
        first.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        first.cause
    );
    assert_eq!(stack.report(&first).await.outcomes.registered, 6);

    stack.put(&key, bundle).await;
    let second_version = version().await;
    assert!(
        first_version.is_some(),
        "the local bucket is versioned, as on AWS"
    );
    assert_ne!(
        first_version, second_version,
        "a re-upload is a new version"
    );
    let runs = triggered_runs(&stack, &key, 2).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    let second = stack.wait(&runs[1]).await;
    assert_eq!(
        second.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        second.cause
    );
    assert_eq!(second.output["status"], "Skipped", "{}", second.output);
    assert_eq!(second.output["ownerRunId"], first.run_id);
    assert!(
        stack
            .get(&format!("runs/{}/report.json", second.run_id))
            .await
            .is_none(),
        "nothing imported twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_import_is_activated_by_its_shipping_list_and_only_those_devices() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let tag = unique("activate");
    let (key, ids) = fresh_manifest(&stack, &tag, 10).await;
    let mut profile = stack.resources(&tag, 1, 1).await;
    let shipped_group = format!("{tag}-shipped");
    stack
        .iot
        .create_thing_group()
        .thing_group_name(&shipped_group)
        .send()
        .await
        .unwrap();
    profile["certificateStatus"] = json!("INACTIVE");
    profile["activationGroups"] = json!([shipped_group]);
    profile["chunkSize"] = json!(4);
    let imported = stack.import(&tag, &key, profile.clone(), false).await;
    assert_eq!(stack.report(&imported).await.outcomes.registered, 10);
    assert!(
        stack
            .certificate_statuses(&ids)
            .await
            .iter()
            .all(|s| s == "INACTIVE")
    );

    // Devices 0-2 shipped, named by certificate; 3-5 by device id; 6 was revoked since; 7 is
    // ACTIVE already; 8 and 9 did not ship. Plus a device IoT never heard of and a bad line.
    let set_status = |cert: String, status| {
        let iot = stack.iot.clone();
        async move {
            iot.update_certificate()
                .certificate_id(cert)
                .new_status(status)
                .send()
                .await
                .unwrap();
        }
    };
    set_status(
        ids[6].0.clone(),
        aws_sdk_iot::types::CertificateStatus::Revoked,
    )
    .await;
    set_status(
        ids[7].0.clone(),
        aws_sdk_iot::types::CertificateStatus::Active,
    )
    .await;
    let mut devices: Vec<Value> = Vec::new();
    for (cert, _) in &ids[0..3] {
        devices.push(json!({"certFingerprint": cert, "attributes": {"batch": "b7"}}));
    }
    for (_, device) in &ids[3..6] {
        devices.push(json!({"deviceId": device, "attributes": {"batch": "b7"}}));
    }
    devices.push(json!({"certFingerprint": ids[6].0}));
    devices.push(json!({"deviceId": ids[7].1, "attributes": {"batch": "b7"}}));
    devices.push(json!({"deviceId": format!("{tag}-never-made")}));
    devices.push(json!({"certFingerprint": "not-a-fingerprint", "deviceId": "x"}));
    let list = json!({"batchId": "b7", "devices": devices});
    let list_key = format!("runs/{tag}-ship/manifest/shipped.json");
    stack.put(&list_key, list.to_string().into_bytes()).await;

    let activation = format!("{tag}-ship");
    stack
        .start_operation(&activation, &list_key, profile.clone(), false, "activate")
        .await;
    let run = stack.wait(&activation).await;
    let report = stack.report(&run).await;
    assert_eq!(report.status, RunStatus::Complete, "{:?}", report.problems);
    assert_eq!(report.entries, 10);
    let o = &report.outcomes;
    assert_eq!(
        (o.activated, o.already_active, o.rejected),
        (6, 1, 3),
        "{o:?}"
    );
    assert_eq!((o.registered, o.already_registered), (0, 0));
    for (name, n) in [
        (ErrorName::CertificateRevoked, 1),
        (ErrorName::UnknownDevice, 1),
        (ErrorName::InvalidFingerprint, 1),
    ] {
        assert_eq!(o.rejected_by_error.get(&name), Some(&n), "{name}: {o:?}");
    }
    assert_eq!(report.api_calls.get("UpdateCertificate"), Some(&6));

    // Exactly the shipped ones are ACTIVE, and their things carry the batch and the group.
    let statuses = stack.certificate_statuses(&ids).await;
    let expected = [
        "ACTIVE", "ACTIVE", "ACTIVE", "ACTIVE", "ACTIVE", "ACTIVE", "REVOKED", "ACTIVE",
        "INACTIVE", "INACTIVE",
    ];
    assert_eq!(statuses, expected);
    for (i, (_, device)) in ids.iter().enumerate() {
        let thing = format!("{tag}-{device}");
        let described = stack
            .iot
            .describe_thing()
            .thing_name(&thing)
            .send()
            .await
            .unwrap();
        let attributes = described.attributes().cloned().unwrap_or_default();
        assert_eq!(
            attributes.get("e2e"),
            Some(&tag),
            "{thing} kept its import attributes"
        );
        let shipped = i < 6 || i == 7;
        assert_eq!(
            attributes.get("batch").map(String::as_str),
            shipped.then_some("b7"),
            "{thing}"
        );
        let groups = stack
            .iot
            .list_thing_groups_for_thing()
            .thing_name(&thing)
            .send()
            .await
            .unwrap();
        let in_shipped = groups
            .thing_groups()
            .iter()
            .any(|g| g.group_name() == Some(shipped_group.as_str()));
        assert_eq!(in_shipped, shipped, "{thing}");
    }

    // Run again: nothing is activated twice.
    let again = format!("{tag}-ship-again");
    stack
        .start_operation(&again, &list_key, profile, true, "activate")
        .await;
    let report = stack.report(&stack.wait(&again).await).await;
    let o = &report.outcomes;
    assert_eq!(
        (o.activated, o.already_active, o.rejected),
        (0, 7, 3),
        "{o:?}"
    );
    assert_eq!(report.api_calls.get("UpdateCertificate"), None);
    assert_eq!(stack.certificate_statuses(&ids).await, expected);
}

/// The metrics lines one run's functions wrote to their logs (the local stack's stdout files,
/// which Lambda would ship to CloudWatch Logs), read back and checked against the EMF
/// specification.
fn metrics_lines(function: &str, run_id: &str) -> Vec<thingpress_metrics::Reading> {
    let path = local_dir()
        .join("logs")
        .join(format!("lambda-{function}.log"));
    let log = std::fs::read_to_string(&path).unwrap_or_default();
    log.lines()
        .filter(|line| line.starts_with(r#"{"_aws":"#))
        .map(|line| {
            thingpress_metrics::Reading::parse(line).unwrap_or_else(|p| panic!("{line}: {p:?}"))
        })
        .filter(|read| read.members.get("runId").and_then(Value::as_str) == Some(run_id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_writes_its_metrics_lines_to_the_function_logs() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let tag = unique("metrics");
    let (key, _ids) = fresh_manifest(&stack, &tag, 9).await;
    let mut profile = stack.resources(&tag, 1, 1).await;
    profile["chunkSize"] = json!(4);
    let run = stack.import(&tag, &key, profile, false).await;
    let report = stack.report(&run).await;
    assert_eq!(report.outcomes.registered, 9, "{:?}", report.problems);

    let stack_name = stack.state["functionEnv"]["STACK_NAME"].as_str().unwrap();
    let split = metrics_lines("split", &tag);
    assert_eq!(split.len(), 1, "one line per run split");
    assert_eq!(split[0].dimension("Stack"), Some(stack_name));
    assert_eq!(split[0].value("ManifestEntries"), Some(9.0));
    let register = metrics_lines("register", &tag);
    let sum = |name: &str| -> f64 { register.iter().filter_map(|r| r.value(name)).sum() };
    assert!(
        register
            .iter()
            .all(|r| r.dimension("Stack") == Some(stack_name))
    );
    assert_eq!(sum("Registered"), 9.0);
    assert_eq!(
        register
            .iter()
            .filter(|r| r.value("ChunkDuration").is_some())
            .count(),
        3,
        "one per chunk of 4, 4 and 1"
    );
    // Each function writes only the metrics the catalogue says it does.
    let lines = split.iter().map(|l| (l, Source::Split));
    for (line, source) in lines.chain(register.iter().map(|l| (l, Source::Register))) {
        for name in line.metrics.keys() {
            let metric = Metric::ALL.iter().find(|m| m.as_str() == name);
            assert_eq!(metric.map(|m| m.source()), Some(source), "{name}");
        }
    }
    let registrations: f64 = register
        .iter()
        .filter(|r| r.dimension("Api") == Some("RegisterCertificateWithoutCA"))
        .filter_map(|r| r.value("IotCalls"))
        .sum();
    assert!(registrations >= 9.0, "{registrations}");
}
