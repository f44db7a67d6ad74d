//! What the end-to-end suites share: the running local stack (`.local/stack.json`), SDK clients
//! pointed at its edge, the edge's admin API, fresh certificates, and registry checks.
//! Each suite includes it with `mod support;` and uses the part it needs.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_config::BehaviorVersion;
use aws_sdk_iot::config::{Credentials, Region};
use aws_sdk_sfn::types::ExecutionStatus;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::{Value, json};
use thingpress_manifest::{Entry, Options, read_entries};
use thingpress_run::report::Report;
use tokio::sync::RwLock;

pub static EDGE: RwLock<()> = RwLock::const_new(());

/// Sends every request as account `.0` (moto's `x-moto-account-id`, which the edge passes on for
/// the unrestricted `test` key).
#[derive(Debug)]
struct InAccount(String);

impl aws_sdk_iot::config::Intercept for InAccount {
    fn name(&self) -> &'static str {
        "InAccount"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_sdk_iot::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _: &aws_sdk_iot::config::RuntimeComponents,
        _: &mut aws_sdk_iot::config::ConfigBag,
    ) -> Result<(), aws_sdk_iot::error::BoxError> {
        context
            .request_mut()
            .headers_mut()
            .insert("x-moto-account-id", self.0.clone());
        Ok(())
    }
}

/// The workspace root (this file is included by suites of several packages).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .expect("a workspace root above CARGO_MANIFEST_DIR")
        .to_path_buf()
}

/// The running local stack's state directory: $THINGPRESS_LOCAL_DIR, or `.local` in the root.
pub fn local_dir() -> PathBuf {
    std::env::var_os("THINGPRESS_LOCAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".local"))
}

/// `.local/stack.json` of the running stack.
pub fn stack_state() -> Value {
    let path = local_dir().join("stack.json");
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

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(workspace_root().join("tests/fixtures/upstream").join(name)).unwrap()
}

/// A name unique to this process and call, usable in execution names, keys and IoT names.
pub fn unique(tag: &str) -> String {
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
pub fn fresh_certificates(prefix: &str, count: usize) -> Vec<String> {
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
pub fn manifest_ids(bytes: &[u8], options: &Options) -> Vec<(String, String)> {
    read_entries(bytes, options)
        .unwrap()
        .filter_map(|e| match e.unwrap() {
            Entry::Accepted(a) => Some((a.certificate_id, a.device_id)),
            Entry::Rejected(_) => None,
        })
        .collect()
}

/// A tiny HTTP/1.1 client for the edge's admin API (stdlib only).
pub fn edge(state: &Value, method: &str, path: &str, body: Option<Value>) -> Value {
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

pub struct Stack {
    pub state: Value,
    pub bucket: String,
    pub machine: String,
    pub sfn: aws_sdk_sfn::Client,
    pub s3: aws_sdk_s3::Client,
    pub iot: aws_sdk_iot::Client,
}

/// Outcome of one execution.
pub struct Run {
    pub run_id: String,
    pub status: ExecutionStatus,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub output: Value,
    pub seconds: f64,
}

impl Stack {
    pub async fn new() -> Stack {
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

    /// The same stack seeing IoT in one of a profile's targets (`{"region", "roleArn"?}`) as
    /// that account's administrator: the stack's own account in that Region, or the role's
    /// account (moto's `x-moto-account-id`; the target role itself may not list the registry).
    pub async fn in_target(&self, target: &Value) -> Stack {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.state["endpoint"].as_str().unwrap())
            .region(Region::new(target["region"].as_str().unwrap().to_owned()))
            .credentials_provider(Credentials::new("test", "test", None, None, "e2e"))
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(10))
            .load()
            .await;
        let mut iot = aws_sdk_iot::config::Builder::from(&config);
        if let Some(account) = target["roleArn"].as_str().and_then(|a| a.split(':').nth(4)) {
            iot = iot.interceptor(InAccount(account.to_owned()));
        }
        Stack {
            state: self.state.clone(),
            bucket: self.bucket.clone(),
            machine: self.machine.clone(),
            sfn: self.sfn.clone(),
            s3: self.s3.clone(),
            iot: aws_sdk_iot::Client::from_conf(iot.build()),
        }
    }

    pub async fn put(&self, key: &str, body: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }

    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
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
    pub async fn resources(&self, tag: &str, groups: usize, policies: usize) -> Value {
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

    pub async fn start(&self, run_id: &str, key: &str, profile: Value, force: bool) {
        self.start_operation(run_id, key, profile, force, "import")
            .await;
    }

    /// Starts a run of `operation` (`import`, `activate`) over the object at `key`.
    pub async fn start_operation(
        &self,
        run_id: &str,
        key: &str,
        profile: Value,
        force: bool,
        operation: &str,
    ) {
        let mut input = json!({"manifest": {"bucket": self.bucket, "key": key},
                               "profile": profile, "operation": operation});
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

    pub async fn wait(&self, run_id: &str) -> Run {
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
    pub async fn import(&self, run_id: &str, key: &str, profile: Value, force: bool) -> Run {
        self.start(run_id, key, profile, force).await;
        let run = self.wait(run_id).await;
        eprintln!(
            "{run_id}: {:?} in {:.1}s {:?} {:?}",
            run.status, run.seconds, run.error, run.cause
        );
        run
    }

    pub async fn report(&self, run: &Run) -> Report {
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
    /// The status IoT gives each certificate.
    pub async fn certificate_statuses(&self, ids: &[(String, String)]) -> Vec<String> {
        let mut statuses = Vec::new();
        for (cert, _) in ids {
            let out = self
                .iot
                .describe_certificate()
                .certificate_id(cert)
                .send()
                .await
                .unwrap();
            let status = out.certificate_description().and_then(|d| d.status());
            statuses.push(status.map(|s| s.as_str().to_owned()).unwrap_or_default());
        }
        statuses
    }

    pub async fn certificate_ids(&self) -> BTreeSet<String> {
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
    pub async fn things_of(&self, tag: &str) -> BTreeSet<String> {
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
    pub async fn verify_registry(
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
        for (thing, cert) in &want {
            self.verify_thing(profile, thing, cert, old.contains(*cert))
                .await;
        }
    }

    /// Checks one thing of [`Stack::verify_registry`]: its type, its one certificate, that
    /// certificate's policies (at least the profile's if it is `old`, else exactly), its groups.
    async fn verify_thing(&self, profile: &Value, thing: &str, cert: &str, old: bool) {
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
        let principal = self.only_principal(thing, cert).await;
        let attached = self.policies_attached_to(&principal).await;
        let policies = profile_names(profile, "policies");
        if old {
            assert!(attached.is_superset(&policies), "{thing}: {attached:?}");
        } else {
            assert_eq!(attached, policies, "{thing}");
        }
        assert_eq!(
            self.groups_of(thing).await,
            profile_names(profile, "thingGroups"),
            "{thing}"
        );
    }

    /// The one principal attached to `thing`, checked to be certificate `cert`.
    async fn only_principal(&self, thing: &str, cert: &str) -> String {
        let principals = self
            .iot
            .list_thing_principals()
            .thing_name(thing)
            .send()
            .await
            .unwrap();
        let principals: Vec<&str> = principals.principals().iter().map(String::as_str).collect();
        assert_eq!(principals.len(), 1, "{thing}: {principals:?}");
        assert!(
            principals[0].ends_with(&format!("cert/{cert}")),
            "{thing}: {principals:?}"
        );
        principals[0].to_owned()
    }

    /// Names of the policies attached to a principal.
    async fn policies_attached_to(&self, principal: &str) -> BTreeSet<String> {
        let attached = self
            .iot
            .list_attached_policies()
            .target(principal)
            .send()
            .await
            .unwrap();
        attached
            .policies()
            .iter()
            .filter_map(|p| p.policy_name().map(str::to_owned))
            .collect()
    }

    /// Names of the thing groups `thing` is in.
    async fn groups_of(&self, thing: &str) -> BTreeSet<String> {
        let in_groups = self
            .iot
            .list_thing_groups_for_thing()
            .thing_name(thing)
            .send()
            .await
            .unwrap();
        in_groups
            .thing_groups()
            .iter()
            .filter_map(|g| g.group_name().map(str::to_owned))
            .collect()
    }
}

/// The names a profile lists under `field` (`thingGroups`, `policies`).
fn profile_names(profile: &Value, field: &str) -> BTreeSet<String> {
    profile[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_owned())
        .collect()
}

pub fn pem_options() -> Options {
    Options {
        supplier: thingpress_manifest::Supplier::Pem,
        ..Options::default()
    }
}

/// A manifest of `n` fresh certificates uploaded under a unique key: (key, ids).
pub async fn fresh_manifest(stack: &Stack, tag: &str, n: usize) -> (String, Vec<(String, String)>) {
    let bundle = fresh_certificates(tag, n).concat().into_bytes();
    let ids = manifest_ids(&bundle, &pem_options());
    assert_eq!(ids.len(), n);
    let key = format!("runs/{tag}/manifest/certs.pem");
    stack.put(&key, bundle).await;
    (key, ids)
}

/// The load average (1, 5, 15 min) the benchmarks record next to their numbers.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
