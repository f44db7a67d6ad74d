//! End to end against the running local stack (`script/local up && script/local deploy`): real
//! executions of the deployed state machine, with Lambdas served by cargo lambda watch and IoT by
//! moto behind the edge. Tests that change the edge's global faults, quotas or stats hold the
//! write half of `EDGE`; the others hold the read half and run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_sdk_iot::config::{Credentials, Region};
use aws_sdk_sfn::types::ExecutionStatus;
use base64::Engine;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::{Value, json};
use thingpress_manifest::{Entry, ErrorName, Options, Slot, read_entries};
use thingpress_pipeline::report::{Report, RunStatus};
use tokio::sync::RwLock;

static EDGE: RwLock<()> = RwLock::const_new(());

/// `.local/stack.json` of the running stack.
fn stack_state() -> Value {
    let dir = std::env::var_os("THINGPRESS_LOCAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.local")));
    let path = dir.join("stack.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no local stack ({}: {e}); start it with script/local up && script/local deploy",
            path.display()
        )
    });
    let state: Value = serde_json::from_str(&text).unwrap();
    assert!(
        state["deployed"]["stateMachineArn"].is_string(),
        "the local stack is not deployed; start it with script/local up && script/local deploy"
    );
    state
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/fixtures/upstream/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A name unique to this process and call, usable in execution names, keys and IoT names.
fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!(
        "e2e-{tag}-{}-{}{n}",
        std::process::id(),
        t.as_millis() % 100_000_000
    )
}

/// `count` fresh self-signed P-256 certificates, CN `<prefix>-<i>`, as one PEM bundle.
fn fresh_certificates(prefix: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, format!("{prefix}-{i}"));
            params.distinguished_name = dn;
            params.self_signed(&key).unwrap().pem()
        })
        .collect()
}

/// Certificate ids (hex SHA-256 of DER) and device ids of a manifest, as Split will read it.
fn manifest_ids(bytes: &[u8], options: &Options) -> Vec<(String, String)> {
    read_entries(bytes, options)
        .unwrap()
        .filter_map(|e| match e.unwrap() {
            Entry::Accepted(a) => Some((a.certificate_id, a.device_id)),
            Entry::Rejected(_) => None,
        })
        .collect()
}

/// A tiny HTTP/1.1 client for the edge's admin API (stdlib only).
fn edge(state: &Value, method: &str, path: &str, body: Option<Value>) -> Value {
    let port = state["ports"]["edge"].as_u64().unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    let (head, payload) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{method} {path}: {head}\n{payload}"
    );
    serde_json::from_str(payload).unwrap_or(Value::Null)
}

struct Stack {
    state: Value,
    bucket: String,
    machine: String,
    sfn: aws_sdk_sfn::Client,
    s3: aws_sdk_s3::Client,
    iot: aws_sdk_iot::Client,
}

/// Outcome of one execution.
struct Run {
    run_id: String,
    status: ExecutionStatus,
    error: Option<String>,
    cause: Option<String>,
    output: Value,
    seconds: f64,
}

impl Stack {
    async fn new() -> Stack {
        let state = stack_state();
        let endpoint = state["endpoint"].as_str().unwrap().to_owned();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "e2e"))
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(10))
            .load()
            .await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        );
        Stack {
            bucket: state["bucket"].as_str().unwrap().to_owned(),
            machine: state["deployed"]["stateMachineArn"]
                .as_str()
                .unwrap()
                .to_owned(),
            sfn: aws_sdk_sfn::Client::new(&config),
            iot: aws_sdk_iot::Client::new(&config),
            s3,
            state,
        }
    }

    async fn put(&self, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }

    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Some(out.body.collect().await.unwrap().into_bytes().to_vec()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => None,
            Err(e) => panic!("get {key}: {e:?}"),
        }
    }

    /// Thing type, groups and policies of a profile, created for one test.
    async fn resources(&self, tag: &str, groups: usize, policies: usize) -> Value {
        let thing_type = format!("{tag}-type");
        self.iot
            .create_thing_type()
            .thing_type_name(&thing_type)
            .send()
            .await
            .unwrap();
        let mut group_names = Vec::new();
        for i in 0..groups {
            let name = format!("{tag}-group{i}");
            self.iot
                .create_thing_group()
                .thing_group_name(&name)
                .send()
                .await
                .unwrap();
            group_names.push(name);
        }
        let mut policy_names = Vec::new();
        for i in 0..policies {
            let name = format!("{tag}-policy{i}");
            let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": "iot:Connect", "Resource": "*"}]});
            self.iot
                .create_policy()
                .policy_name(&name)
                .policy_document(doc.to_string())
                .send()
                .await
                .unwrap();
            policy_names.push(name);
        }
        json!({
            "name": tag,
            "thingName": format!("{tag}-{{deviceId}}"),
            "thingType": thing_type,
            "thingGroups": group_names,
            "policies": policy_names,
            "attributes": {"e2e": tag},
        })
    }

    async fn start(&self, run_id: &str, key: &str, profile: Value, force: bool) {
        let mut input =
            json!({"manifest": {"bucket": self.bucket, "key": key}, "profile": profile});
        if force {
            input["force"] = json!(true);
        }
        self.sfn
            .start_execution()
            .state_machine_arn(&self.machine)
            .name(run_id)
            .input(input.to_string())
            .send()
            .await
            .unwrap();
    }

    async fn wait(&self, run_id: &str) -> Run {
        let arn = format!(
            "{}:{run_id}",
            self.machine.replace(":stateMachine:", ":execution:")
        );
        let started = Instant::now();
        loop {
            let out = self
                .sfn
                .describe_execution()
                .execution_arn(&arn)
                .send()
                .await
                .unwrap();
            if out.status != ExecutionStatus::Running {
                return Run {
                    run_id: run_id.to_owned(),
                    status: out.status,
                    error: out.error,
                    cause: out.cause,
                    output: out
                        .output
                        .as_deref()
                        .map(|o| serde_json::from_str(o).unwrap())
                        .unwrap_or(Value::Null),
                    seconds: started.elapsed().as_secs_f64(),
                };
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "execution {run_id} still running after 5 minutes"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Uploads, runs to completion, returns the run.
    async fn import(&self, run_id: &str, key: &str, profile: Value, force: bool) -> Run {
        self.start(run_id, key, profile, force).await;
        let run = self.wait(run_id).await;
        eprintln!(
            "{run_id}: {:?} in {:.1}s {:?} {:?}",
            run.status, run.seconds, run.error, run.cause
        );
        run
    }

    async fn report(&self, run: &Run) -> Report {
        assert_eq!(
            run.status,
            ExecutionStatus::Succeeded,
            "{}: {:?} {:?}",
            run.run_id,
            run.error,
            run.cause
        );
        let body = self
            .get(&format!("runs/{}/report.json", run.run_id))
            .await
            .unwrap_or_else(|| panic!("{} has no report", run.run_id));
        let report: Report = serde_json::from_slice(&body).unwrap();
        eprintln!(
            "{}: {} entries, {:?}, throttled {}, retries {}, {:.1} certs/s",
            run.run_id,
            report.entries,
            report.outcomes,
            report.throttled,
            report.chunk_retries,
            report.certificates_per_second
        );
        report
    }

    /// Every certificate id IoT holds.
    async fn certificate_ids(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let mut marker = None;
        loop {
            let out = self
                .iot
                .list_certificates()
                .page_size(250)
                .set_marker(marker)
                .send()
                .await
                .unwrap();
            ids.extend(
                out.certificates()
                    .iter()
                    .filter_map(|c| c.certificate_id().map(str::to_owned)),
            );
            match out.next_marker {
                Some(m) if !m.is_empty() => marker = Some(m),
                _ => return ids,
            }
        }
    }

    /// Names of the things whose attribute `e2e` is `tag`.
    async fn things_of(&self, tag: &str) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let mut token = None;
        loop {
            let out = self
                .iot
                .list_things()
                .attribute_name("e2e")
                .attribute_value(tag)
                .max_results(250)
                .set_next_token(token)
                .send()
                .await
                .unwrap();
            names.extend(
                out.things()
                    .iter()
                    .filter_map(|t| t.thing_name().map(str::to_owned)),
            );
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return names,
            }
        }
    }

    /// Checks that IoT holds exactly the things a profile makes for `expected` (certificate id,
    /// device id) pairs, each with its certificate, type, groups and policies.
    /// Certificates in `old` existed before the test, so earlier runs may have attached more
    /// policies to them.
    async fn verify_registry(
        &self,
        profile: &Value,
        expected: &[(String, String)],
        old: &BTreeSet<String>,
    ) {
        let tag = profile["name"].as_str().unwrap();
        let want: BTreeMap<String, &str> = expected
            .iter()
            .map(|(cert, device)| (format!("{tag}-{device}"), cert.as_str()))
            .collect();
        let things = self.things_of(tag).await;
        assert_eq!(
            things,
            want.keys().cloned().collect::<BTreeSet<_>>(),
            "things of {tag}"
        );
        let groups: BTreeSet<String> = profile["thingGroups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_owned())
            .collect();
        let policies: BTreeSet<String> = profile["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_owned())
            .collect();
        for (thing, cert) in &want {
            let described = self
                .iot
                .describe_thing()
                .thing_name(thing)
                .send()
                .await
                .unwrap();
            assert_eq!(
                described.thing_type_name(),
                profile["thingType"].as_str(),
                "{thing}"
            );
            let principals = self
                .iot
                .list_thing_principals()
                .thing_name(thing)
                .send()
                .await
                .unwrap();
            let principals: Vec<&str> =
                principals.principals().iter().map(String::as_str).collect();
            assert_eq!(principals.len(), 1, "{thing}: {principals:?}");
            assert!(
                principals[0].ends_with(&format!("cert/{cert}")),
                "{thing}: {principals:?}"
            );
            let attached = self
                .iot
                .list_attached_policies()
                .target(principals[0])
                .send()
                .await
                .unwrap();
            let attached: BTreeSet<String> = attached
                .policies()
                .iter()
                .filter_map(|p| p.policy_name().map(str::to_owned))
                .collect();
            if old.contains(*cert) {
                assert!(attached.is_superset(&policies), "{thing}: {attached:?}");
            } else {
                assert_eq!(attached, policies, "{thing}");
            }
            let in_groups = self
                .iot
                .list_thing_groups_for_thing()
                .thing_name(thing)
                .send()
                .await
                .unwrap();
            let in_groups: BTreeSet<String> = in_groups
                .thing_groups()
                .iter()
                .filter_map(|g| g.group_name().map(str::to_owned))
                .collect();
            assert_eq!(in_groups, groups, "{thing}");
        }
    }
}

fn pem_options() -> Options {
    Options {
        supplier: thingpress_manifest::Supplier::Pem,
        ..Options::default()
    }
}

/// A manifest of `n` fresh certificates uploaded under a unique key: (key, ids).
async fn fresh_manifest(stack: &Stack, tag: &str, n: usize) -> (String, Vec<(String, String)>) {
    let bundle = fresh_certificates(tag, n).concat().into_bytes();
    let ids = manifest_ids(&bundle, &pem_options());
    assert_eq!(ids.len(), n);
    let key = format!("e2e/{tag}/certs.pem");
    stack.put(&key, bundle).await;
    (key, ids)
}

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
        let key = format!("e2e/{tag}/{file}");
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

    let key = format!("e2e/{tag}/tmngtlss.json");
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
    let key = format!("e2e/{tag}/mixed.txt");
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

    let key = format!("e2e/{tag}/notes.txt");
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
