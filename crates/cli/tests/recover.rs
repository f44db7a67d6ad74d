//! End to end: the `thingpress` binary's report, retry-failed and redrive commands against the
//! running local stack (`script/local up && script/local deploy`). A run made to fail by fault
//! injection is completed by `retry-failed`; reports of runs with rejected entries are printed
//! as a table, JSON and CSV; the local stack's missing RedriveExecution is one clear error line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/support/mod.rs"]
mod support;

mod cli;

use std::collections::BTreeSet;

use aws_sdk_sfn::types::ExecutionStatus;
use base64::Engine;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::{Value, json};
use thingpress_run::report::{Report, RunStatus};

use cli::*;
use support::*;

fn assert_adds_up(report: &Report) {
    assert_eq!(report.status, RunStatus::Complete, "{report:?}");
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(report.outcomes.total(), report.entries, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_failed_by_crashing_register_is_completed_by_retry_failed() {
    let r = Retried::new().await;
    // Every Register invocation crashes for the run's whole duration: no chunk gets results.
    r.fail_by_crashing_register().await;
    let _shared = EDGE.read().await;
    r.retry_completes_the_run().await;

    // Nothing left to do.
    let ran = thingpress(&["retry-failed", &r.tag]).await.ok();
    assert!(ran.stdout.contains("nothing to retry"), "{}", ran.stdout);

    r.retry_imports_only_the_chunk_whose_results_are_lost()
        .await;
    r.retry_imports_an_entry_iot_rejected_only_when_asked()
        .await;
}

/// The run [`a_run_failed_by_crashing_register_is_completed_by_retry_failed`] fails and
/// retries: 20 fresh certificates in chunks of 5.
struct Retried {
    stack: Stack,
    tag: String,
    key: String,
    ids: Vec<(String, String)>,
    profile: Value,
}

impl Retried {
    async fn new() -> Retried {
        let stack = Stack::new().await;
        let tag = unique("retry");
        let (key, ids) = fresh_manifest(&stack, &tag, 20).await;
        let mut profile = stack.resources(&tag, 1, 1).await;
        profile["chunkSize"] = json!(5);
        let before = stack.certificate_ids().await;
        assert!(ids.iter().all(|(c, _)| !before.contains(c)));
        Retried {
            stack,
            tag,
            key,
            ids,
            profile,
        }
    }

    /// Imports with every Register invocation crashing (holding the edge alone meanwhile):
    /// the run fails IncompleteImport and its report has no outcomes.
    async fn fail_by_crashing_register(&self) {
        let run = {
            let _exclusive = EDGE.write().await;
            edge(
                &self.stack.state,
                "POST",
                "/_edge/faults",
                Some(json!({"lambda": {"register": {"crash": 1.0}}})),
            );
            let run = self
                .stack
                .import(&self.tag, &self.key, self.profile.clone(), false)
                .await;
            edge(&self.stack.state, "POST", "/_edge/faults", Some(json!({})));
            run
        };
        assert_eq!(run.status, ExecutionStatus::Failed, "{:?}", run.cause);
        assert_eq!(run.error.as_deref(), Some("Thingpress.IncompleteImport"));
        let failed = report_of(&self.stack, &self.tag).await;
        assert_eq!(failed.status, RunStatus::Incomplete);
        assert_eq!(failed.outcomes.total(), 0);
    }

    /// The first retry imports every chunk and registers all 20, without running Split again.
    async fn retry_completes_the_run(&self) {
        let tag = &self.tag;
        let ran = thingpress(&["retry-failed", tag, "--wait"]).await.ok();
        assert!(
            ran.stdout.contains(&format!(
                "run {tag}: retry 1 imports 4 of 4 chunks without results (20 entries)"
            )),
            "{}",
            ran.stdout
        );
        assert!(
            ran.stdout.contains(&format!("run {tag} SUCCEEDED")),
            "{}",
            ran.stdout
        );
        // Split did not run again: the source object's claim still names the first run only,
        // and the retry has no objects of its own.
        assert!(
            self.stack
                .get(&format!("runs/{tag}-retry1/run.json"))
                .await
                .is_none()
        );
        let report = report_of(&self.stack, tag).await;
        assert_adds_up(&report);
        assert_eq!(report.outcomes.registered, 20, "{:?}", report.outcomes);
        assert_eq!(self.registered_in_iot().await, 20);
        self.stack
            .verify_registry(&self.profile, &self.ids, &BTreeSet::new())
            .await;
    }

    /// A chunk whose results are lost is the only one imported again; its entries are already
    /// registered, never twice. The retry's own name leads to the run too.
    async fn retry_imports_only_the_chunk_whose_results_are_lost(&self) {
        let tag = &self.tag;
        let lost = format!("runs/{tag}/results/00002.jsonl");
        self.stack
            .s3
            .delete_object()
            .bucket(&self.stack.bucket)
            .key(&lost)
            .send()
            .await
            .unwrap();
        let ran = thingpress(&["retry-failed", &format!("{tag}-retry1"), "--wait"])
            .await
            .ok();
        assert!(
            ran.stdout
                .contains("retry 2 imports 1 of 4 chunks without results (5 entries)"),
            "{}",
            ran.stdout
        );
        let report = report_of(&self.stack, tag).await;
        assert_adds_up(&report);
        assert_eq!(report.outcomes.registered, 15, "{:?}", report.outcomes);
        assert_eq!(
            report.outcomes.already_registered, 5,
            "{:?}",
            report.outcomes
        );
        assert_eq!(self.registered_in_iot().await, 20);
    }

    /// An entry IoT rejected (recorded as such) is imported again with
    /// --include-rejected-by-iot; the chunk's other entries are not, and its old results are
    /// kept.
    async fn retry_imports_an_entry_iot_rejected_only_when_asked(&self) {
        let tag = &self.tag;
        let chunk = format!("runs/{tag}/results/00001.jsonl");
        let rewritten = self.mark_rejected_by_iot(&chunk, 2).await;
        let ran = thingpress(&["retry-failed", tag]).await.ok();
        assert!(ran.stdout.contains("nothing to retry"), "{}", ran.stdout);
        let ran = thingpress(&["retry-failed", tag, "--include-rejected-by-iot", "--wait"])
            .await
            .ok();
        assert!(
            ran.stdout.contains(
                "retry 3 imports 0 of 4 chunks without results (0 entries) and 1 entries IoT \
                 rejected, in 1 chunks"
            ),
            "{}",
            ran.stdout
        );
        let superseded = self
            .stack
            .get(&format!("runs/{tag}/retries/00003/superseded/00001.jsonl"))
            .await
            .expect("the reopened chunk's old results");
        assert_eq!(String::from_utf8(superseded).unwrap(), rewritten);
        let report = report_of(&self.stack, tag).await;
        assert_adds_up(&report);
        assert_eq!(report.outcomes.rejected, 0, "{:?}", report.outcomes);
        assert_eq!(report.outcomes.registered, 14, "{:?}", report.outcomes);
        assert_eq!(
            report.outcomes.already_registered, 6,
            "{:?}",
            report.outcomes
        );
        self.stack
            .verify_registry(&self.profile, &self.ids, &BTreeSet::new())
            .await;
        assert_eq!(self.registered_in_iot().await, 20);
    }

    /// Rewrites line `line` of a results object as an entry IoT rejected; returns the new body.
    async fn mark_rejected_by_iot(&self, key: &str, line: usize) -> String {
        let body = String::from_utf8(self.stack.get(key).await.unwrap()).unwrap();
        let mut lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        lines[line]["outcome"] = json!("rejected");
        lines[line]["error"] = json!("Thingpress.RejectedByIot");
        lines[line]["message"] = json!("CertificateValidationException: injected by the test");
        let rewritten: String = lines.iter().map(|l| format!("{l}\n")).collect();
        self.stack.put(key, rewritten.clone().into_bytes()).await;
        rewritten
    }

    /// How many of the manifest's certificates IoT holds. Other tests register alongside, so
    /// only this manifest's are counted (IoT has one per id; verify_registry checks one
    /// certificate per thing).
    async fn registered_in_iot(&self) -> usize {
        let all = self.stack.certificate_ids().await;
        self.ids.iter().filter(|(c, _)| all.contains(c)).count()
    }
}

/// A self-signed certificate whose CN is not a valid thing name.
fn certificate_named(cn: &str) -> String {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.self_signed(&key).unwrap().pem()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_shows_rejected_entries_as_a_table_json_and_csv() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let tag = unique("report");
    let report = import_with_two_rejected(&stack, &tag).await;

    table_lists_the_rejected_entries(&tag).await;
    let rejected = json_adds_the_rejected_entries(&stack, &tag, &report).await;

    // --rejected-only JSON: one entry per line, the same entries.
    let jsonl = thingpress(&["report", &tag, "--output", "json", "--rejected-only"])
        .await
        .ok()
        .stdout;
    let entries: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries, rejected);

    csv_has_a_row_per_rejected_entry(&tag, &rejected).await;

    // --rejected-only table: the header and the two rows, no counts.
    let only = thingpress(&["report", &tag, "--rejected-only"])
        .await
        .ok()
        .stdout;
    assert_eq!(only.lines().count(), 3, "{only}");

    // A reader that stops early (`| head -1`) is no failure: exit 0, nothing on stderr.
    for output in ["table", "json", "csv"] {
        let ran = thingpress_with_stdout_closed(&["report", &tag, "--output", output]).await;
        assert_eq!(
            (ran.code, ran.stderr.as_str()),
            (Some(0), ""),
            "--output {output}"
        );
    }

    html_report_is_checked_in_chromium(&tag, 2).await;
    without_report_json_prints_what_exists(&stack, &tag).await;

    // A run that does not exist.
    let ran = thingpress(&["report", &format!("{tag}-absent")]).await;
    assert!(ran.one_error_line().contains("the run does not exist"));
}

/// Imports five base64(PEM) lines in chunks of 2: Split rejects line 1; Decorate rejects
/// line 3 (its thing name would hold a space); the rest register.
async fn import_with_two_rejected(stack: &Stack, tag: &str) -> Report {
    let mut profile = stack.resources(tag, 1, 1).await;
    profile["chunkSize"] = json!(2);
    let good = fresh_certificates(tag, 3);
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let lines = [
        b64(&good[0]),
        "!!!not base64!!!".to_owned(),
        b64(&good[1]),
        b64(&certificate_named("bad name")),
        b64(&good[2]),
    ];
    let key = format!("runs/{tag}/manifest/mixed.txt");
    stack
        .put(&key, (lines.join("\n") + "\n").into_bytes())
        .await;
    let run = stack.import(tag, &key, profile, false).await;
    let report = stack.report(&run).await;
    assert_adds_up(&report);
    assert_eq!(report.entries, 5);
    assert_eq!(report.outcomes.registered, 3);
    assert_eq!(report.outcomes.rejected, 2);
    report
}

/// The default table: the run's status first, then a row per rejected entry (1 and 3).
async fn table_lists_the_rejected_entries(tag: &str) {
    let table = thingpress(&["report", tag]).await.ok().stdout;
    assert!(
        table.starts_with(&format!("run {tag}: complete\n")),
        "{table}"
    );
    let rows: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("INDEX"))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows[0].trim_start().starts_with("1 "), "{}", rows[0]);
    assert!(rows[1].trim_start().starts_with("3 "), "{}", rows[1]);
    assert!(
        rows[1].contains("Thingpress.InvalidThingName"),
        "{}",
        rows[1]
    );
    assert!(rows[1].contains("bad name"), "{}", rows[1]);
}

/// JSON, asked for by execution ARN: the report as stored plus the rejected entries, in
/// manifest order. Returns those entries.
async fn json_adds_the_rejected_entries(stack: &Stack, tag: &str, report: &Report) -> Vec<Value> {
    let arn = format!(
        "{}:{tag}",
        stack.machine.replace(":stateMachine:", ":execution:")
    );
    let json: Value = serde_json::from_str(
        &thingpress(&["report", &arn, "--output", "json"])
            .await
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(json["report"], serde_json::to_value(report).unwrap());
    let rejected = json["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{json}");
    assert_eq!(rejected[0]["index"], 1);
    assert!(rejected[0]["certificateId"].is_null());
    assert_eq!(rejected[1]["index"], 3);
    assert_eq!(rejected[1]["error"], "Thingpress.InvalidThingName");
    assert_eq!(rejected[1]["deviceId"], "bad name");
    // Register keeps no certificate id for an entry Decorate rejected.
    assert!(rejected[1]["certificateId"].is_null());
    for r in rejected {
        assert!(!r["message"].as_str().unwrap().is_empty(), "{r}");
    }
    rejected.clone()
}

/// CSV: a header and one row per rejected entry, agreeing with the JSON's `rejected`.
async fn csv_has_a_row_per_rejected_entry(tag: &str, rejected: &[Value]) {
    let csv_text = thingpress(&["report", tag, "--output", "csv"])
        .await
        .ok()
        .stdout;
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["index", "deviceId", "certificateId", "error", "message"]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 2, "{csv_text}");
    assert_eq!(&records[1][0], "3");
    assert_eq!(&records[1][1], "bad name");
    assert_eq!(&records[1][3], "Thingpress.InvalidThingName");
    assert_eq!(&records[0][3], rejected[0]["error"].as_str().unwrap());
}

/// `--html`: the page, opened in headless Chromium by tests/browser/check-report.mjs and held
/// to the JSON report (numbers, charts, filtering); its screenshot stays in target/browser/.
async fn html_report_is_checked_in_chromium(tag: &str, rejected: u64) -> String {
    let root = workspace_root();
    let dir = root.join("target/browser");
    std::fs::create_dir_all(&dir).unwrap();
    let [page, json, png] = ["html", "json", "png"].map(|ext| dir.join(format!("{tag}.{ext}")));
    let wrote = thingpress(&["report", tag, "--html", page.to_str().unwrap()])
        .await
        .ok();
    assert!(
        wrote
            .stderr
            .contains(&format!("{rejected} of {rejected} rejected entries listed")),
        "{}",
        wrote.stderr
    );
    let html = std::fs::read_to_string(&page).unwrap();
    let report = thingpress(&["report", tag, "--output", "json"]).await.ok();
    std::fs::write(&json, report.stdout).unwrap();
    let checked = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(root.join("tests/browser/check-report.mjs"))
            .args([&page, &json, &png])
            .output()
            .expect("node (script/test installs tests/browser's packages)")
    })
    .await
    .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(checked.status.success(), "{said}");
    assert_eq!(
        said.contains("PASS filter"),
        rejected > 0,
        "the filter was exercised when there are rejections: {said}"
    );
    html
}

/// Without report.json (as while the run is still going): what exists, and exit 1.
async fn without_report_json_prints_what_exists(stack: &Stack, tag: &str) {
    stack
        .s3
        .delete_object()
        .bucket(&stack.bucket)
        .key(format!("runs/{tag}/report.json"))
        .send()
        .await
        .unwrap();
    let ran = thingpress(&["report", tag]).await;
    let error = ran.one_error_line();
    assert!(error.contains("has no report"), "{error}");
    assert!(error.contains("2 of 2 chunks have results"), "{error}");
    assert!(
        ran.stdout.contains("no report yet (execution: SUCCEEDED)"),
        "{}",
        ran.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_errors_are_one_clear_line() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let tag = unique("redrive");
    let profile = stack.resources(&tag, 1, 1).await;
    // A manifest that is not there: Split fails the run at once.
    let run = stack
        .import(
            &tag,
            &format!("runs/{tag}/manifest/absent.pem"),
            profile,
            false,
        )
        .await;
    assert_eq!(run.status, ExecutionStatus::Failed);

    // moto has no RedriveExecution (HTTP 500): the check passes, the call fails, one line.
    let ran = thingpress(&["redrive", &tag]).await;
    let error = ran.one_error_line();
    assert!(error.contains("cannot redrive"), "{error}");
    assert!(error.contains(&format!(":{tag}: ")), "{error}");
    assert!(error.contains("HTTP 500"), "{error}");
    assert!(error.contains("retry-failed"), "{error}");

    let ran = thingpress(&["redrive", &format!("{tag}-absent")]).await;
    assert!(ran.one_error_line().ends_with("no such execution"));

    // retry-failed cannot help a run whose Split never finished: it says so.
    let ran = thingpress(&["retry-failed", &tag]).await;
    assert!(ran.one_error_line().contains("Split never finished"));
}

/// A run over several targets, one of whose roles is missing (issue 14): `report` shows each
/// target and `--target` one of them, with its rejected entries; `retry-failed --target` retries
/// only that target's chunks; `redrive` says why it would not help; `registry check --target`
/// checks another Region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_several_targets_is_reported_and_retried_per_target() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let tag = unique("targets-cli");
    let mut profile = stack.resources(&tag, 1, 1).await;
    let eu = json!({"account": "123456789012", "region": "eu-west-1",
        "thingTypes": [profile["thingType"]], "thingGroups": profile["thingGroups"],
        "policies": {profile["policies"][0].as_str().unwrap(): {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}}});
    edge(&stack.state, "POST", "/_edge/targets/resources", Some(eu));
    let missing = "333333333333-us-east-1";
    profile["targets"] = json!([
        {"region": "us-east-1"},
        {"region": "eu-west-1"},
        {"region": "us-east-1", "roleArn": "arn:aws:iam::333333333333:role/thingpress-target",
         "externalId": "thingpress-e2e"},
    ]);
    profile["chunkSize"] = json!(2);
    let (key, ids) = fresh_manifest(&stack, &tag, 3).await;
    let run = stack.import(&tag, &key, profile.clone(), false).await;
    assert_eq!(run.error.as_deref(), Some("Thingpress.IncompleteImport"));

    // The whole run: the sums, and a line per target.
    let table = thingpress(&["report", &tag]).await.ok().stdout;
    assert!(
        table.starts_with(&format!("run {tag}: INCOMPLETE\n")),
        "{table}"
    );
    assert!(
        table.contains("entries                                  3 in each of 3 targets"),
        "{table}"
    );
    assert!(
        table.contains(
            "    eu-west-1                     complete: 3 registered, 0 already registered"
        ),
        "{table}"
    );
    assert!(
        table.contains(&format!("    {missing}        INCOMPLETE")),
        "{table}"
    );
    assert!(table.contains("Thingpress.TargetUnavailable"), "{table}");
    // One target.
    let eu_table = thingpress(&["report", &tag, "--target", "eu-west-1"])
        .await
        .ok()
        .stdout;
    assert!(
        eu_table.starts_with(&format!("run {tag}, target eu-west-1: complete\n")),
        "{eu_table}"
    );
    let unknown = thingpress(&["report", &tag, "--target", "eu-central-1"]).await;
    assert!(
        unknown
            .one_error_line()
            .contains("its targets are us-east-1, eu-west-1, 333333333333-us-east-1"),
        "{}",
        unknown.stderr
    );

    // Redrive would only run Summarize again: it says what to do instead.
    let redrive = thingpress(&["redrive", &tag]).await;
    assert!(
        redrive
            .one_error_line()
            .contains(&format!("thingpress retry-failed {tag}")),
        "{}",
        redrive.stderr
    );

    // retry-failed --target: that target's two chunks only (its role is still missing, so the
    // retry fails again, named).
    let retried = thingpress(&[
        "retry-failed",
        &tag,
        "--target",
        missing,
        "--wait",
        "--interval",
        "1",
    ])
    .await;
    assert!(
        retried.stdout.contains(&format!(
            "run {tag}: retry 1 imports 2 of 2 chunks without results (3 entries)"
        )),
        "{}",
        retried.stdout
    );
    assert!(
        retried
            .error_line()
            .contains("Thingpress.TargetUnavailable"),
        "{}",
        retried.stderr
    );
    // The page of the run: a row per target, the missing one's chunks failed and its retry
    // the command to run next.
    let html = html_report_is_checked_in_chromium(&tag, 0).await;
    assert!(
        html.contains(r#"<tr data-target="eu-west-1">"#),
        "a row per target"
    );
    assert!(html.contains(r#"<rect class="chunk failed""#));
    assert!(html.contains(&format!("retry-failed {tag} --target {missing} --wait")));

    // A target that finished has nothing to retry, whatever the others' state.
    let done = thingpress(&["retry-failed", &tag, "--target", "eu-west-1"])
        .await
        .ok();
    assert!(
        done.stdout.contains(&format!(
            "target eu-west-1 of run {tag} is complete: every chunk has results; nothing to retry"
        )),
        "{}",
        done.stdout
    );

    // The registry in eu-west-1 holds what the profile says, and `--target` names what it can be.
    let file = std::env::temp_dir().join(format!("{tag}.pem"));
    std::fs::write(&file, stack.get(&key).await.unwrap()).unwrap();
    let file = file.to_str().unwrap();
    let profile_file = std::env::temp_dir().join(format!("{tag}.json"));
    std::fs::write(&profile_file, profile.to_string()).unwrap();
    thingpress(&["profile", "put", profile_file.to_str().unwrap()])
        .await
        .ok();
    let count = |out: &str, label: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().last()?.parse::<usize>().ok())
    };
    let check_in = |region: &'static str| {
        let tag = tag.clone();
        let file = file.to_owned();
        async move {
            thingpress(&[
                "registry",
                "check",
                &file,
                "--profile",
                &tag,
                "--target",
                region,
                "--quota-scale",
                "10",
            ])
            .await
        }
    };
    let eu_checked = check_in("eu-west-1").await.ok();
    assert_eq!(
        count(&eu_checked.stdout, "ok"),
        Some(ids.len()),
        "{}",
        eu_checked.stdout
    );
    // A Region the run did not register in holds none of them: the check looks where it is told.
    let elsewhere = check_in("us-west-2").await;
    assert_eq!(
        count(&elsewhere.stdout, "with problems"),
        Some(ids.len()),
        "{}",
        elsewhere.stdout
    );
    let wrong = thingpress(&[
        "registry",
        "check",
        file,
        "--profile",
        &tag,
        "--target",
        "nowhere",
    ])
    .await;
    assert!(
        wrong.one_error_line().contains("no target \"nowhere\""),
        "{}",
        wrong.stderr
    );
}
