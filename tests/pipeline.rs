//! The four handlers chained in memory, as the state machine chains them: Split → (Decorate →
//! Register per chunk) → Summarize, against an in-memory store and a mocked IoT client. What the
//! local stack cannot show cheaply (partial progress, exact call counts) is checked here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_iot::Client;
use aws_sdk_iot::config::http::HttpResponse;
use aws_sdk_iot::operation::add_thing_to_thing_group::AddThingToThingGroupOutput;
use aws_sdk_iot::operation::attach_policy::AttachPolicyOutput;
use aws_sdk_iot::operation::attach_thing_principal::AttachThingPrincipalOutput;
use aws_sdk_iot::operation::create_thing::CreateThingOutput;
use aws_sdk_iot::operation::describe_certificate::DescribeCertificateOutput;
use aws_sdk_iot::operation::describe_thing_group::DescribeThingGroupOutput;
use aws_sdk_iot::operation::describe_thing_type::DescribeThingTypeOutput;
use aws_sdk_iot::operation::get_policy::GetPolicyOutput;
use aws_sdk_iot::operation::list_principal_things::ListPrincipalThingsOutput;
use aws_sdk_iot::operation::register_certificate_without_ca::RegisterCertificateWithoutCaOutput;
use aws_sdk_iot::types::{CertificateDescription, CertificateStatus as IotCertificateStatus};
use aws_smithy_mocks::{MockResponse, Rule, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use serde_json::{Value, json};
use thingpress_importer::{Api, EntryResult, EntrySteps, Outcome};
use thingpress_manifest::{Certificate, ErrorName};
use thingpress_run::payload::from_value;
use thingpress_run::records::{ChunkDescriptor, ProgressLine};
use thingpress_run::report::{Report, RunStatus};
use thingpress_run::store::parse_jsonl;
use thingpress_run::{MemStore, RunLayout, Settings, Store, TaskError};

const BUCKET: &str = "imports";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/fixtures/upstream/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn settings() -> Settings {
    let mut vars: HashMap<&str, &str> = HashMap::from([("IMPORT_BUCKET", BUCKET)]);
    // Every quota far above what the tests call, so pacing does not slow them down.
    vars.extend(Api::ALL.map(|api| (api.quota_env_var(), "100000")));
    Settings::from_lookup(|name| vars.get(name).map(|v| (*v).to_owned())).unwrap()
}

fn throttled() -> HttpResponse {
    let mut response = HttpResponse::new(
        StatusCode::try_from(400).unwrap(),
        SdkBody::from(r#"{"message":"Rate exceeded"}"#),
    );
    response
        .headers_mut()
        .insert("x-amzn-ErrorType", "ThrottlingException");
    response
}

/// An IoT client whose first `throttle_attach_policy` AttachPolicy calls are throttled.
fn iot(throttle_attach_policy: u32) -> (Client, Vec<Rule>) {
    let first = (throttle_attach_policy > 0).then(|| {
        mock!(Client::attach_policy)
            .sequence()
            .http_response(throttled)
            .times(throttle_attach_policy as usize)
            .output(|| AttachPolicyOutput::builder().build())
            .repeatedly()
            .build()
    });
    iot_answering(first.into_iter().collect())
}

/// An IoT client that tries the case's own `first` rules, then answers every call Register
/// makes with success (a certificate's id from its PEM).
fn iot_answering(first: Vec<Rule>) -> (Client, Vec<Rule>) {
    let mut rules = first;
    rules.extend([
        mock!(Client::describe_thing_type)
            .then_output(|| DescribeThingTypeOutput::builder().build()),
        mock!(Client::describe_thing_group)
            .then_output(|| DescribeThingGroupOutput::builder().build()),
        mock!(Client::get_policy).then_output(|| GetPolicyOutput::builder().build()),
        mock!(Client::register_certificate_without_ca)
            .match_requests(|_| true)
            .then_compute_output(|req| {
                let id = Certificate::from_pem(req.certificate_pem().unwrap())
                    .unwrap()
                    .id;
                RegisterCertificateWithoutCaOutput::builder()
                    .certificate_arn(format!("arn:aws:iot:us-east-1:123456789012:cert/{id}"))
                    .certificate_id(id)
                    .build()
            }),
        mock!(Client::create_thing).then_output(|| CreateThingOutput::builder().build()),
        mock!(Client::attach_thing_principal)
            .then_output(|| AttachThingPrincipalOutput::builder().build()),
        mock!(Client::attach_policy).then_output(|| AttachPolicyOutput::builder().build()),
        mock!(Client::add_thing_to_thing_group)
            .then_output(|| AddThingToThingGroupOutput::builder().build()),
    ]);
    let refs: Vec<&Rule> = rules.iter().collect();
    let client = mock_client!(aws_sdk_iot, RuleMode::MatchAny, &refs, |c| c
        .retry_config(thingpress_importer::sdk_retry_config()));
    (client, rules)
}

fn calls(rules: &[Rule]) -> Vec<usize> {
    rules.iter().map(Rule::num_calls).collect()
}

/// Split as the state machine drives it: JSON in, read through its input type as the Lambda
/// runtime does (a payload that does not fit is InvalidInput), and its output as JSON.
trait SplitJson {
    fn split_json(
        &self,
        payload: Value,
    ) -> impl std::future::Future<Output = Result<Value, TaskError>>;
}

impl<S: Store + Clone + 'static> SplitJson for thingpress_split::Task<S> {
    async fn split_json(&self, payload: Value) -> Result<Value, TaskError> {
        let output = self.split_manifest(from_value(payload)?).await?;
        Ok(serde_json::to_value(output).unwrap())
    }
}

/// The Lambdas of one stack, sharing a store and an IoT client.
struct Stack {
    store: Arc<MemStore>,
    split: thingpress_split::Task<Arc<MemStore>>,
    decorate: thingpress_decorate::Task<Arc<MemStore>>,
    register: thingpress_register::Task<Arc<MemStore>>,
    summarize: thingpress_summarize::Task<Arc<MemStore>>,
}

impl Stack {
    fn new(iot: Client) -> Stack {
        let store = Arc::new(MemStore::new());
        Stack {
            split: thingpress_split::Task::with_iot(Arc::clone(&store), iot.clone(), settings()),
            decorate: thingpress_decorate::Task::with_store(Arc::clone(&store), settings()),
            register: thingpress_register::Task::with_iot(Arc::clone(&store), iot, settings()),
            summarize: thingpress_summarize::Task::with_store(Arc::clone(&store), settings()),
            store,
        }
    }

    /// The same stack, Split and Register writing their metrics lines to `metrics`.
    fn with_metrics(self, metrics: thingpress_metrics::Emitter) -> Stack {
        Stack {
            split: self.split.with_metrics(metrics.clone()),
            register: self.register.with_metrics(metrics),
            ..self
        }
    }

    async fn put(&self, key: &str, body: Vec<u8>) {
        self.store.put(BUCKET, key, body).await.unwrap();
    }

    /// The setup most tests share: certificates_test.txt at incoming/widget/certs.txt and the
    /// widget profile.
    async fn put_widget_certificates(&self) {
        self.put(
            "incoming/widget/certs.txt",
            fixture("certificates_test.txt"),
        )
        .await;
        self.put_profile(widget_profile()).await;
    }

    async fn put_profile(&self, profile: Value) {
        let name = profile["name"].as_str().unwrap().to_owned();
        self.put(
            &format!("profiles/{name}.json"),
            profile.to_string().into_bytes(),
        )
        .await;
    }

    async fn split(&self, run_id: &str, key: &str, profile: Value) -> Result<Value, TaskError> {
        self.split
            .split_json(json!({
                "runId": run_id,
                "input": {"manifest": {"bucket": BUCKET, "key": key}, "profile": profile},
            }))
            .await
    }

    async fn chunks(&self, run_id: &str) -> Vec<ChunkDescriptor> {
        let body = self
            .store
            .get(BUCKET, &RunLayout::new(run_id).unwrap().chunk_index())
            .await
            .unwrap()
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    /// The start of one STANDARD Map child: Decorate, as the ItemSelector builds its input,
    /// then one Register invocation; its output is `done: true` or the chunk to continue.
    async fn child_once(&self, run_id: &str, chunk: &ChunkDescriptor) -> Result<Value, TaskError> {
        let item = json!({"runId": run_id, "bucket": BUCKET, "chunk": chunk,
                          "childExecutionType": "STANDARD"});
        let decorated = self.decorate.decorate(from_value(item)?).await?;
        self.register_json(serde_json::to_value(decorated).unwrap())
            .await
    }

    /// One Register invocation on the JSON the state machine passes.
    async fn register_json(&self, payload: Value) -> Result<Value, TaskError> {
        let far = SystemTime::now() + Duration::from_secs(900);
        let output = self.register.register(&from_value(payload)?, far).await?;
        Ok(serde_json::to_value(output).unwrap())
    }

    /// One STANDARD Map child to its end: Decorate, then Register looped through the
    /// `RegisterDone` Choice as the ASL does (the Wait is skipped, its seconds checked).
    /// Ok(the child's output and how many Register invocations it took).
    async fn child_looped(
        &self,
        run_id: &str,
        chunk: &ChunkDescriptor,
    ) -> Result<(Value, u32), TaskError> {
        let mut output = self.child_once(run_id, chunk).await?;
        let mut invocations = 1;
        while output["done"] == false {
            let wait = output["continuation"]["waitSeconds"].as_u64().unwrap();
            assert!(wait <= 60, "{output}");
            output = self.register_json(output).await?;
            invocations += 1;
        }
        assert_eq!(output["done"], true, "{output}");
        Ok((output, invocations))
    }

    /// One Map child to its end.
    async fn child(&self, run_id: &str, chunk: &ChunkDescriptor) -> Result<Value, TaskError> {
        Ok(self.child_looped(run_id, chunk).await?.0)
    }

    /// Summarize, given Split's output as the state machine passes it on.
    async fn summarize_json(&self, split: &Value) -> Result<Value, TaskError> {
        let summary = self
            .summarize
            .summarize(&from_value(split.clone())?)
            .await?;
        Ok(serde_json::to_value(summary).unwrap())
    }

    async fn import(&self, run_id: &str, key: &str, profile: Value) -> Result<Report, TaskError> {
        let split = self.split(run_id, key, profile).await?;
        assert_eq!(split["status"], "Started", "{split}");
        for chunk in self.chunks(run_id).await {
            self.child(run_id, &chunk).await?;
        }
        self.summarize_json(&split).await?;
        Ok(self.report(run_id).await)
    }

    async fn report(&self, run_id: &str) -> Report {
        let key = RunLayout::new(run_id).unwrap().report();
        serde_json::from_slice(&self.store.get(BUCKET, &key).await.unwrap().unwrap()).unwrap()
    }

    async fn results(&self, run_id: &str, chunk: u32) -> Vec<EntryResult> {
        let key = RunLayout::new(run_id).unwrap().results(chunk);
        parse_jsonl(&self.store.get(BUCKET, &key).await.unwrap().unwrap()).unwrap()
    }
}

fn widget_profile() -> Value {
    json!({
        "name": "widget",
        "thingName": "{deviceId}",
        "thingType": "Sensor",
        "thingGroups": ["fleet", "eu"],
        "policies": ["DevicePolicy", "Telemetry"],
        "attributes": {"cn": "{cn}"},
        "chunkSize": 30
    })
}

#[tokio::test]
async fn every_entry_is_registered_once_with_all_its_attachments() {
    let (client, rules) = iot(0);
    let stack = Stack::new(client);
    stack.put_widget_certificates().await;

    let report = stack
        .import("run-1", "incoming/widget/certs.txt", json!("widget"))
        .await
        .unwrap();

    assert_eq!(report.status, RunStatus::Complete);
    assert_eq!(report.entries, 100);
    assert_eq!(report.outcomes.registered, 100);
    assert_eq!(report.outcomes.total(), 100);
    assert_eq!(report.chunks, 4, "100 entries in chunks of 30");
    let per_api = |api: &str| report.api_calls.get(api).copied().unwrap_or_default();
    assert_eq!(per_api("RegisterCertificateWithoutCA"), 100);
    assert_eq!(per_api("CreateThing"), 100);
    assert_eq!(per_api("AttachThingPrincipal"), 100);
    assert_eq!(per_api("AttachPolicy"), 200);
    assert_eq!(per_api("AddThingToThingGroup"), 200);
    // Profile check (1 type, 2 groups, 2 policies) plus 7 calls per certificate.
    assert_eq!(calls(&rules).iter().sum::<usize>(), 5 + 700);
    let first = stack.results("run-1", 0).await;
    assert_eq!(first.len(), 30);
    assert_eq!(first[0].thing_name, "Device-0");
}

#[tokio::test]
async fn persistent_throttling_keeps_progress_and_the_retry_finishes_without_duplicates() {
    // Each entry calls AttachPolicy twice; CALL_ATTEMPTS (6) per call, at most 8 entries in
    // flight. 60 throttles in a row outlast what 8 calls can absorb without one giving up
    // (8 × 5), so chunk 0 gives up early.
    let (client, _rules) = iot(60);
    let stack = Stack::new(client);
    stack.put_widget_certificates().await;
    let split = stack
        .split("run-2", "incoming/widget/certs.txt", json!("widget"))
        .await
        .unwrap();
    let chunks = stack.chunks("run-2").await;

    let first = stack.child_once("run-2", &chunks[0]).await.unwrap();
    assert_eq!(first["done"], false, "handed back to continue: {first}");
    let layout = RunLayout::new("run-2").unwrap();
    assert!(
        stack
            .store
            .get(BUCKET, &layout.results(0))
            .await
            .unwrap()
            .is_none()
    );
    let progress: Vec<ProgressLine> = parse_jsonl(
        &stack
            .store
            .get(BUCKET, &layout.progress(0))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let done = progress
        .iter()
        .filter(|line| matches!(line, ProgressLine::Done(_)))
        .count();
    assert!(done < 30, "stopped early: {done} done");

    // The ASL continues the chunk until it is done; then the rest of the run.
    stack.register_json(first).await.unwrap();
    for chunk in &chunks {
        let (_, invocations) = stack.child_looped("run-2", chunk).await.unwrap();
        assert!(invocations < 20, "throttling never cleared");
    }
    stack.summarize_json(&split).await.unwrap();
    let report = stack.report("run-2").await;
    assert_eq!(report.status, RunStatus::Complete);
    assert_eq!(report.outcomes.registered, 100);
    assert!(report.chunk_retries >= 1);
    assert!(report.throttled >= 1);
    let results = stack.results("run-2", 0).await;
    let mut indexes: Vec<u64> = results.iter().map(|r| r.index).collect();
    indexes.dedup();
    assert_eq!(
        indexes,
        (0..30).collect::<Vec<u64>>(),
        "each entry exactly once, in order"
    );
}

/// IoT as it behaves for one account: RegisterCertificateWithoutCA answers 409 for a
/// certificate it already holds (counted in the second value), and CreateThing throttles its
/// first `throttle_create_thing` calls, so chunks stop between an entry's certificate and its
/// thing.
fn iot_with_memory(throttle_create_thing: usize) -> (Client, Vec<Rule>, Arc<AtomicUsize>) {
    let held: Arc<Mutex<HashSet<String>>> = Arc::default();
    let conflicts = Arc::new(AtomicUsize::new(0));
    let arn = |id: &str| format!("arn:aws:iot:us-east-1:123456789012:cert/{id}");
    let (held_by_register, conflicts_seen) = (Arc::clone(&held), Arc::clone(&conflicts));
    let rules = vec![
        mock!(Client::describe_thing_type)
            .then_output(|| DescribeThingTypeOutput::builder().build()),
        mock!(Client::describe_thing_group)
            .then_output(|| DescribeThingGroupOutput::builder().build()),
        mock!(Client::get_policy).then_output(|| GetPolicyOutput::builder().build()),
        mock!(Client::register_certificate_without_ca).then_compute_response(move |req| {
            let id = Certificate::from_pem(req.certificate_pem().unwrap())
                .unwrap()
                .id;
            if !held_by_register.lock().unwrap().insert(id.clone()) {
                conflicts_seen.fetch_add(1, Ordering::SeqCst);
                let body = json!({"message": "exists", "resourceId": id, "resourceArn": arn(&id)});
                let mut response = HttpResponse::new(
                    StatusCode::try_from(409).unwrap(),
                    SdkBody::from(body.to_string()),
                );
                response
                    .headers_mut()
                    .insert("x-amzn-ErrorType", "ResourceAlreadyExistsException");
                return MockResponse::Http(response);
            }
            MockResponse::Output(
                RegisterCertificateWithoutCaOutput::builder()
                    .certificate_arn(arn(&id))
                    .certificate_id(id)
                    .build(),
            )
        }),
        // What the lost-progress path would call: it must stay unused.
        mock!(Client::describe_certificate).then_compute_output(move |req| {
            let id = req.certificate_id().unwrap_or_default();
            DescribeCertificateOutput::builder()
                .certificate_description(
                    CertificateDescription::builder()
                        .certificate_arn(arn(id))
                        .certificate_id(id)
                        .status(IotCertificateStatus::Active)
                        .build(),
                )
                .build()
        }),
        mock!(Client::list_principal_things)
            .then_output(|| ListPrincipalThingsOutput::builder().build()),
        mock!(Client::create_thing)
            .sequence()
            .http_response(throttled)
            .times(throttle_create_thing)
            .output(|| CreateThingOutput::builder().build())
            .repeatedly()
            .build(),
        mock!(Client::attach_thing_principal)
            .then_output(|| AttachThingPrincipalOutput::builder().build()),
        mock!(Client::attach_policy).then_output(|| AttachPolicyOutput::builder().build()),
        mock!(Client::add_thing_to_thing_group)
            .then_output(|| AddThingToThingGroupOutput::builder().build()),
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let client = mock_client!(aws_sdk_iot, RuleMode::MatchAny, &refs, |c| c
        .retry_config(thingpress_importer::sdk_retry_config()));
    (client, rules, conflicts)
}

#[tokio::test]
async fn a_chunk_stopped_mid_entry_resumes_there_and_reports_its_certificates_registered() {
    // Enough throttled CreateThing responses that chunk 0 stops with entries whose
    // certificates are registered but whose things are not: more in a row than 8 calls in
    // flight absorb without one giving up (8 × (CALL_ATTEMPTS − 1)).
    let (client, rules, conflicts) = iot_with_memory(60);
    let stack = Stack::new(client);
    stack.put_widget_certificates().await;
    let split = stack
        .split("run-7", "incoming/widget/certs.txt", json!("widget"))
        .await
        .unwrap();
    let chunks = stack.chunks("run-7").await;

    let first = stack.child_once("run-7", &chunks[0]).await.unwrap();
    assert_eq!(first["done"], false, "handed back to continue: {first}");
    let layout = RunLayout::new("run-7").unwrap();
    let progress: Vec<ProgressLine> = parse_jsonl(
        &stack
            .store
            .get(BUCKET, &layout.progress(0))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let midway: Vec<&EntrySteps> = progress
        .iter()
        .filter_map(|line| match line {
            ProgressLine::Partial { partial } => Some(partial),
            ProgressLine::Done(_) => None,
        })
        .collect();
    assert!(!midway.is_empty(), "no entry stopped midway: {progress:?}");
    for steps in &midway {
        let certificate = steps.certificate.as_ref().unwrap();
        assert_eq!(certificate.outcome, Outcome::Registered, "{steps:?}");
        assert!(!steps.thing, "{steps:?}");
    }

    for chunk in &chunks {
        let (_, invocations) = stack.child_looped("run-7", chunk).await.unwrap();
        assert!(invocations < 20, "throttling never cleared");
    }
    stack.summarize_json(&split).await.unwrap();
    let report = stack.report("run-7").await;
    assert_eq!(report.status, RunStatus::Complete);
    assert_eq!(report.outcomes.registered, 100, "{:?}", report.outcomes);
    assert_eq!(report.outcomes.already_registered, 0);
    assert!(report.chunk_retries >= 1);
    assert_eq!(
        conflicts.load(Ordering::SeqCst),
        0,
        "a retry registered a certificate again"
    );
    let per_api = |api: &str| report.api_calls.get(api).copied().unwrap_or_default();
    assert_eq!(per_api("RegisterCertificateWithoutCA"), 100);
    assert_eq!(per_api("DescribeCertificate"), 0);
    assert_eq!(per_api("AttachThingPrincipal"), 100, "no step repeated");
    assert_eq!(per_api("AttachPolicy"), 200);
    assert_eq!(per_api("AddThingToThingGroup"), 200);
    // Each stop leaves one CreateThing operation per entry it interrupted; the rest once each.
    assert!(per_api("CreateThing") >= 100);
    assert_eq!(rules[4].num_calls(), 0, "DescribeCertificate");
}

/// IoT whose CreateThing is throttled on every attempt of each thing's first call (Register's
/// CALL_ATTEMPTS, so every entry stops once, after its certificate), or of every call when
/// `always`; everything else succeeds. (A mock sequence, not a computed response: retries replay
/// the rule without input.)
fn iot_throttling_each_thing(always: bool) -> (Client, Vec<Rule>) {
    let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    iot_answering(vec![
        mock!(Client::create_thing)
            .match_requests(move |req| {
                let name = req.thing_name().unwrap_or_default().to_owned();
                let mut seen = seen.lock().unwrap();
                let attempts = seen.entry(name).or_default();
                *attempts += 1;
                *attempts <= thingpress_importer::CALL_ATTEMPTS || always
            })
            .sequence()
            .http_response(throttled)
            .repeatedly()
            .build(),
    ])
}

#[tokio::test]
async fn a_chunk_that_keeps_progressing_through_many_throttle_stops_ends_complete() {
    // One chunk of 100; every entry's CreateThing is throttled past Register's retries once, so
    // each invocation stops on throttling after some progress. The old ASL retrier gave a
    // chunk 1 + 8 attempts; the continuation loop needs more and counts none as a stall.
    let (client, _rules) = iot_throttling_each_thing(false);
    let stack = Stack::new(client);
    stack
        .put(
            "incoming/widget/certs.txt",
            fixture("certificates_test.txt"),
        )
        .await;
    let mut profile = widget_profile();
    profile["chunkSize"] = json!(100);
    stack.put_profile(profile).await;
    let split = stack
        .split("run-9", "incoming/widget/certs.txt", json!("widget"))
        .await
        .unwrap();
    let chunks = stack.chunks("run-9").await;
    assert_eq!(chunks.len(), 1);

    let (output, invocations) = stack.child_looped("run-9", &chunks[0]).await.unwrap();
    assert_eq!(output["registered"], 100, "{output}");
    assert!(
        invocations > 9,
        "{invocations} invocations: more than the old 1 + 8 attempts"
    );
    let stats = stack
        .store
        .get(BUCKET, &RunLayout::new("run-9").unwrap().stats(0))
        .await
        .unwrap()
        .unwrap();
    let stats: thingpress_run::records::ChunkStats = serde_json::from_slice(&stats).unwrap();
    assert_eq!(stats.stalls, 0, "every stop made progress: {stats:?}");
    assert_eq!(stats.continuations, u64::from(invocations - 1), "{stats:?}");
    assert_eq!(stats.throttled, u64::from(invocations - 1), "{stats:?}");
    // The throughput over time counts each entry once, in the invocation that finished it.
    assert_eq!(
        stats.done_per_minute.values().sum::<u64>(),
        100,
        "{:?}",
        stats.done_per_minute
    );

    stack.summarize_json(&split).await.unwrap();
    let report = stack.report("run-9").await;
    assert_eq!(report.status, RunStatus::Complete);
    assert_eq!(report.outcomes.registered, 100, "{:?}", report.outcomes);
    let results = stack.results("run-9", 0).await;
    let indexes: Vec<u64> = results.iter().map(|r| r.index).collect();
    assert_eq!(indexes, (0..100).collect::<Vec<u64>>(), "each entry once");
    let per_api = |api: &str| report.api_calls.get(api).copied().unwrap_or_default();
    assert_eq!(
        per_api("RegisterCertificateWithoutCA"),
        100,
        "no certificate twice"
    );
    assert_eq!(per_api("AttachThingPrincipal"), 100, "no step repeated");
}

#[tokio::test]
async fn a_chunk_that_stops_progressing_fails_throttled_after_the_stall_limit() {
    // CreateThing always throttles: the first invocation registers certificates (progress),
    // then every invocation stalls; after MAX_STALLS in a row the chunk fails Throttled.
    let (client, _rules) = iot_throttling_each_thing(true);
    let stack = Stack::new(client);
    stack.put_widget_certificates().await;
    stack
        .split("run-10", "incoming/widget/certs.txt", json!("widget"))
        .await
        .unwrap();
    let chunks = stack.chunks("run-10").await;
    let mut output = stack.child_once("run-10", &chunks[0]).await.unwrap();
    assert_eq!(output["continuation"]["stalls"], 0, "{output}");
    let mut stalls = 0;
    let err = loop {
        match stack.register_json(output.clone()).await {
            Ok(next) => {
                stalls += 1;
                assert_eq!(next["continuation"]["stalls"], stalls, "{next}");
                let wait = next["continuation"]["waitSeconds"].as_u64().unwrap();
                assert!(wait <= (2u64 << stalls).min(60), "{next}");
                output = next;
            }
            Err(err) => break err,
        }
    };
    assert_eq!(stalls, thingpress_register::MAX_STALLS);
    assert_eq!(err.name, ErrorName::Throttled, "{err}");
    assert!(err.message.contains("without progress"), "{err}");
}

#[tokio::test]
async fn a_redelivered_chunk_is_not_registered_twice() {
    let (client, rules) = iot(0);
    let stack = Stack::new(client);
    stack.put_widget_certificates().await;
    stack
        .import("run-3", "incoming/widget/certs.txt", json!("widget"))
        .await
        .unwrap();
    let before = calls(&rules);
    let chunk = &stack.chunks("run-3").await[1];
    let again = stack.child("run-3", chunk).await.unwrap();
    assert_eq!(again["registered"], 30);
    assert_eq!(calls(&rules), before, "no IoT call for a finished chunk");
}

#[tokio::test]
async fn missing_results_fail_the_run_as_incomplete() {
    let (client, _rules) = iot(0);
    let stack = Stack::new(client);
    stack.put_widget_certificates().await;
    let split = stack
        .split("run-4", "incoming/widget/certs.txt", json!("widget"))
        .await
        .unwrap();
    let chunks = stack.chunks("run-4").await;
    // Chunk 2's child "failed" (moto swallows failed children): it never ran.
    for chunk in chunks.iter().filter(|c| c.chunk != 2) {
        stack.child("run-4", chunk).await.unwrap();
    }
    let err = stack.summarize_json(&split).await.unwrap_err();
    assert_eq!(err.name, ErrorName::IncompleteImport);
    assert!(err.message.contains("chunk 2"), "{err}");
    let report = stack.report("run-4").await;
    assert_eq!(report.status, RunStatus::Incomplete);
}

#[tokio::test]
async fn rejected_entries_are_counted_by_name_and_the_rest_registered() {
    let (client, _rules) = iot(0);
    let stack = Stack::new(client);
    // Two manifests: Microchip entries without certificates (all rejected by Split), and PEM
    // entries whose thing-name template needs a field PEM entries do not have (all rejected by
    // Decorate).
    stack
        .put("m/tmngtlss.json", fixture("ECC608-TMNGTLSS-B.json"))
        .await;
    stack
        .put("m/certs.txt", fixture("certificates_test.txt"))
        .await;
    let report = stack
        .import("run-5", "m/tmngtlss.json", json!({"name": "inline"}))
        .await
        .unwrap();
    assert_eq!(report.outcomes.registered, 0);
    assert_eq!(report.outcomes.rejected, report.entries);
    assert_eq!(
        report.outcomes.rejected_by_error[&ErrorName::MissingCertificate],
        report.entries
    );

    let report = stack
        .import(
            "run-6",
            "m/certs.txt",
            json!({"name": "named-by-part", "thingName": "{partNumber}"}),
        )
        .await
        .unwrap();
    assert_eq!(
        report.outcomes.rejected_by_error[&ErrorName::InvalidThingName],
        100
    );
    assert_eq!(report.outcomes.total(), 100);
}

#[tokio::test]
async fn a_duplicate_event_is_skipped_and_force_takes_the_claim_over() {
    let (client, _rules) = iot(0);
    let stack = Stack::new(client);
    stack.put_widget_certificates().await;
    let event = |run: &str| {
        json!({"runId": run, "input": {
            "detail-type": "Object Created",
            "detail": {"bucket": {"name": BUCKET}, "object": {"key": "incoming/widget/certs.txt"}}
        }})
    };
    let first = stack.split.split_json(event("evt-1")).await.unwrap();
    assert_eq!(first["status"], "Started");
    let retried = stack.split.split_json(event("evt-1")).await.unwrap();
    assert_eq!(
        retried["status"], "Started",
        "a retried Split keeps its own claim"
    );
    let duplicate = stack.split.split_json(event("evt-2")).await.unwrap();
    assert_eq!(duplicate["status"], "Skipped");
    assert_eq!(duplicate["ownerRunId"], "evt-1");
    let forced = stack
        .split
        .split_json(json!({"runId": "evt-3", "input": {
            "manifest": {"bucket": BUCKET, "key": "incoming/widget/certs.txt"}, "force": true}}))
        .await
        .unwrap();
    assert_eq!(forced["status"], "Started");
}

#[tokio::test]
async fn bad_input_profile_and_manifest_fail_with_their_names() {
    let (client, rules) = iot(0);
    let stack = Stack::new(client);
    stack
        .put("m/notes.txt", b"these are not certificates\n".to_vec())
        .await;
    stack
        .put("m/certs.txt", fixture("certificates_test.txt"))
        .await;
    let cases = [
        (json!({"input": {}}), ErrorName::InvalidInput),
        (
            json!({"runId": "r", "input": {"manifest": {"bucket": BUCKET}}}),
            ErrorName::InvalidInput,
        ),
        (
            json!({"runId": "../x", "input": {}}),
            ErrorName::InvalidInput,
        ),
        (
            json!({"runId": "r", "input": {"manifest": {"bucket": BUCKET, "key": "m/none"}, "profile": {"name": "p"}}}),
            ErrorName::InvalidInput,
        ),
        (
            json!({"runId": "r", "input": {"manifest": {"bucket": BUCKET, "key": "m/certs.txt"}, "profile": "missing"}}),
            ErrorName::InvalidProfile,
        ),
        (
            json!({"runId": "r", "input": {"manifest": {"bucket": BUCKET, "key": "m/certs.txt"}, "profile": {"name": "p", "colour": "red"}}}),
            ErrorName::InvalidProfile,
        ),
        (
            json!({"runId": "r", "input": {"manifest": {"bucket": BUCKET, "key": "m/notes.txt"}, "profile": {"name": "p"}}}),
            ErrorName::InvalidManifest,
        ),
    ];
    for (payload, name) in cases {
        let err = stack.split.split_json(payload.clone()).await.unwrap_err();
        assert_eq!(err.name, name, "{payload}: {err}");
    }
    assert_eq!(
        calls(&rules)[3..].iter().sum::<usize>(),
        0,
        "nothing registered"
    );
}

/// The in-memory store as a versioned bucket: every write of a key is a new version, as on the
/// stack's S3 bucket (issue 10: claims keyed by version imported re-uploads again).
#[derive(Clone)]
struct Versioned {
    inner: Arc<MemStore>,
    versions: Arc<std::sync::Mutex<HashMap<String, u64>>>,
}

impl Versioned {
    fn bump(&self, key: &str) {
        *self
            .versions
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default() += 1;
    }
}

impl Store for Versioned {
    async fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<thingpress_run::Bytes>, TaskError> {
        self.inner.get(bucket, key).await
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), TaskError> {
        self.bump(key);
        self.inner.put(bucket, key, body).await
    }

    async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> Result<bool, TaskError> {
        let written = self.inner.put_if_absent(bucket, key, body).await?;
        if written {
            self.bump(key);
        }
        Ok(written)
    }

    async fn head(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<thingpress_run::store::ObjectMeta>, TaskError> {
        let version = self.versions.lock().unwrap().get(key).copied();
        Ok(self.inner.head(bucket, key).await?.map(|mut meta| {
            meta.version_id = version.map(|v| format!("v{v}"));
            meta
        }))
    }

    async fn reader(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<thingpress_run::store::ObjectReader, TaskError> {
        self.inner.reader(bucket, key, version_id).await
    }

    async fn reader_if_exists(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<thingpress_run::store::ObjectReader>, TaskError> {
        self.inner.reader_if_exists(bucket, key).await
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, TaskError> {
        self.inner.list(bucket, prefix).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), TaskError> {
        self.inner.delete(bucket, key).await
    }
}

#[tokio::test]
async fn identical_bytes_uploaded_again_to_a_versioned_bucket_are_skipped() {
    let (client, _rules) = iot(0);
    let store = Versioned {
        inner: Arc::new(MemStore::new()),
        versions: Arc::default(),
    };
    let split = thingpress_split::Task::with_iot(store.clone(), client, settings());
    let key = "incoming/widget/certs.txt";
    store
        .put(
            BUCKET,
            "profiles/widget.json",
            widget_profile().to_string().into_bytes(),
        )
        .await
        .unwrap();
    let event = |run: &str| {
        json!({"runId": run, "input": {
            "detail-type": "Object Created",
            "detail": {"bucket": {"name": BUCKET}, "object": {"key": key}}
        }})
    };
    let upload = |body: Vec<u8>| {
        let store = store.clone();
        async move { store.put(BUCKET, key, body).await.unwrap() }
    };
    let version = || async {
        store
            .head(BUCKET, key)
            .await
            .unwrap()
            .unwrap()
            .version_id
            .unwrap()
    };

    upload(fixture("certificates_test.txt")).await;
    let first_version = version().await;
    let first = split.split_json(event("up-1")).await.unwrap();
    assert_eq!(first["status"], "Started");

    // The same bytes again: a new version, the same content, so the first run owns it.
    upload(fixture("certificates_test.txt")).await;
    assert_ne!(version().await, first_version, "the store is versioned");
    let again = split.split_json(event("up-2")).await.unwrap();
    assert_eq!(again["status"], "Skipped", "{again}");
    assert_eq!(again["ownerRunId"], "up-1");

    // Other bytes under the same key are another import.
    let mut other = fixture("certificates_test.txt");
    other.truncate(other.len() / 2);
    upload(other).await;
    let changed = split.split_json(event("up-3")).await.unwrap();
    assert_eq!(changed["status"], "Started", "{changed}");

    // force takes the claim over on purpose.
    upload(fixture("certificates_test.txt")).await;
    let forced = split
        .split_json(json!({"runId": "up-4", "input": {
            "manifest": {"bucket": BUCKET, "key": key}, "force": true}}))
        .await
        .unwrap();
    assert_eq!(forced["status"], "Started");
    let after = split.split_json(event("up-5")).await.unwrap();
    assert_eq!(after["ownerRunId"], "up-4", "the forced run owns it now");
}

#[tokio::test]
async fn the_allow_list_refuses_a_policy_or_group_before_any_call() {
    let (client, rules) = iot(0);
    let vars: HashMap<&str, &str> = HashMap::from([
        ("IMPORT_BUCKET", BUCKET),
        ("ALLOWED_POLICIES", "Device*"),
        ("ALLOWED_THING_GROUPS", "fleet"),
    ]);
    let settings = Settings::from_lookup(|name| vars.get(name).map(|v| (*v).to_owned())).unwrap();
    let store = Arc::new(MemStore::new());
    let split = thingpress_split::Task::with_iot(Arc::clone(&store), client, settings);
    store
        .put(BUCKET, "m/certs.txt", fixture("certificates_test.txt"))
        .await
        .unwrap();
    let err = split
        .split_json(json!({"runId": "allow-1", "input": {
            "manifest": {"bucket": BUCKET, "key": "m/certs.txt"}, "profile": widget_profile()}}))
        .await
        .unwrap_err();
    assert_eq!(err.name, ErrorName::InvalidProfile, "{err}");
    for needle in [
        "policies: \"Telemetry\" is not allowed by the stack parameter AllowedPolicies (Device*)",
        "thingGroups: \"eu\" is not allowed by the stack parameter AllowedThingGroups (fleet)",
    ] {
        assert!(err.message.contains(needle), "{needle} not in {err}");
    }
    assert!(!err.message.contains("DevicePolicy"), "{err}");
    assert!(calls(&rules).iter().all(|n| *n == 0), "no IoT call");
    assert!(
        store
            .get(BUCKET, &RunLayout::new("allow-1").unwrap().chunk_index())
            .await
            .unwrap()
            .is_none(),
        "nothing split"
    );
}

#[tokio::test]
async fn a_throttled_profile_check_is_retried_by_the_state_machine_not_fatal() {
    // GetPolicy throttles on every try: Split ends Throttled (retried by the ASL), never
    // InvalidProfile (terminal), and claims nothing.
    let rules = [
        mock!(Client::describe_thing_type)
            .then_output(|| DescribeThingTypeOutput::builder().build()),
        mock!(Client::describe_thing_group)
            .then_output(|| DescribeThingGroupOutput::builder().build()),
        mock!(Client::get_policy)
            .sequence()
            .http_response(throttled)
            .repeatedly()
            .build(),
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let client = mock_client!(aws_sdk_iot, RuleMode::MatchAny, &refs, |c| c
        .retry_config(thingpress_importer::sdk_retry_config()));
    let stack = Stack::new(client);
    stack
        .put("m/certs.txt", fixture("certificates_test.txt"))
        .await;
    let err = stack
        .split("throttled-1", "m/certs.txt", widget_profile())
        .await
        .unwrap_err();
    assert_eq!(err.name, ErrorName::Throttled, "{err}");
    assert!(
        err.message.contains("GetPolicy policy DevicePolicy"),
        "{err}"
    );
    assert!(rules[2].num_calls() > 1, "retried before giving up");
}

#[tokio::test]
async fn the_metrics_lines_add_up_to_the_report_across_continuations() {
    // AttachPolicy throttled 60 times in a row: chunk 0 stops and is continued, so its entries
    // finish over several Register invocations, each counting only what it finished.
    let (client, _rules) = iot(60);
    let (emitter, captured) = thingpress_metrics::Emitter::capturing("tp-test");
    let stack = Stack::new(client).with_metrics(emitter);
    stack.put_widget_certificates().await;
    let report = stack
        .import("run-m", "incoming/widget/certs.txt", json!("widget"))
        .await
        .unwrap();
    assert_eq!(report.outcomes.registered, 100);

    let lines: Vec<thingpress_metrics::Reading> = captured
        .lines()
        .iter()
        .map(|line| {
            thingpress_metrics::Reading::parse(line).unwrap_or_else(|p| panic!("{line}: {p:?}"))
        })
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l.dimension("Stack") == Some("tp-test")),
        "every line is the stack's"
    );
    let sum = |name: &str, api: Option<&str>| -> f64 {
        lines
            .iter()
            .filter(|l| api.is_none_or(|api| l.dimension("Api") == Some(api)))
            .filter_map(|l| l.value(name))
            .sum()
    };
    assert_eq!(sum("ManifestEntries", None), 100.0);
    assert_eq!(sum("ManifestRejected", None), 0.0);
    assert_eq!(sum("Registered", None), 100.0, "each entry once");
    assert_eq!(sum("AlreadyRegistered", None), 0.0);
    assert_eq!(sum("Rejected", None), 0.0);
    let invocations = lines.iter().filter(|l| l.value("RunAge").is_some()).count();
    assert!(
        invocations > 4,
        "chunk 0 was continued: {invocations} invocations"
    );
    let durations = lines.iter().filter(|l| l.value("ChunkDuration").is_some());
    assert_eq!(durations.count(), 4, "one per chunk, when it ends");

    // Per API: requests are the chunks' attempts (calls and retries), throttles the report's.
    let mut attempts: HashMap<String, u64> = HashMap::new();
    for chunk in 0..report.chunks {
        let body = stack
            .store
            .get(BUCKET, &RunLayout::new("run-m").unwrap().stats(chunk))
            .await
            .unwrap()
            .unwrap();
        let stats: thingpress_run::records::ChunkStats = serde_json::from_slice(&body).unwrap();
        for (api, n) in stats.api_attempts {
            *attempts.entry(api).or_default() += n;
        }
    }
    for api in Api::ALL {
        let api = api.as_str();
        let want = attempts.get(api).copied().unwrap_or_default();
        assert_eq!(sum("IotCalls", Some(api)), want as f64, "{api}");
        let throttles = report.api_throttles.get(api).copied().unwrap_or_default();
        assert_eq!(sum("IotThrottles", Some(api)), throttles as f64, "{api}");
    }
    assert_eq!(sum("IotThrottles", Some("AttachPolicy")), 60.0);
}
