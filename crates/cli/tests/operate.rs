//! End to end: the `thingpress` binary's profile, import and watch commands against the running
//! local stack (`script/local up && script/local deploy`), whose edge emulates the stack's S3 →
//! EventBridge trigger. Every test makes its own profile, resources and certificates, so the
//! tests run in parallel with each other and after the other suites on one stack.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/support/mod.rs"]
mod support;

mod cli;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use thingpress_run::report::RunStatus;

use cli::*;
use support::*;

/// A scratch file of this test.
fn scratch(name: &str, body: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("operate"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Resources and a stored profile (chunks of 10) for one test, via `profile put`.
async fn stored_profile(stack: &Stack, tag: &str) -> Value {
    let mut profile = stack.resources(tag, 1, 1).await;
    profile["chunkSize"] = json!(10);
    let file = scratch("profile.json", profile.to_string().as_bytes());
    thingpress(&["profile", "put", arg(&file)]).await.ok();
    profile
}

/// A fresh PEM manifest as a local file named after the tag: (file, expected ids).
fn manifest_file(tag: &str, n: usize) -> (PathBuf, Vec<(String, String)>) {
    let bundle = fresh_certificates(tag, n).concat().into_bytes();
    let ids = manifest_ids(&bundle, &pem_options());
    (scratch(&format!("{tag}.pem"), &bundle), ids)
}

/// The number on the summary line `  <label>   <n>`.
fn count_of(summary: &str, label: &str) -> Option<u64> {
    summary.lines().find_map(|line| {
        line.trim()
            .strip_prefix(label)
            .filter(|rest| rest.starts_with(' '))
            .and_then(|rest| rest.trim().parse().ok())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_stored_listed_and_validated_against_the_registry() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let tag = unique("profiles");
    let profile = stored_profile(&stack, &tag).await;

    let got = thingpress(&["profile", "get", &tag]).await.ok();
    assert_eq!(serde_json::from_str::<Value>(&got.stdout).unwrap(), profile);
    let listed = thingpress(&["profile", "list"]).await.ok();
    assert!(listed.stdout.lines().any(|l| l == tag), "{}", listed.stdout);
    let valid = thingpress(&["profile", "validate", &tag]).await.ok();
    assert!(valid.stdout.contains("valid"), "{}", valid.stdout);

    // A policy that IoT does not have: validation names it and exits 1, stored or as a file.
    let broken = format!("{tag}-broken");
    let missing = format!("{tag}-no-such-policy");
    let mut bad = profile.clone();
    bad["name"] = json!(broken);
    bad["policies"] = json!([profile["policies"][0], missing]);
    let file = scratch("broken.json", bad.to_string().as_bytes());
    thingpress(&["profile", "put", arg(&file)]).await.ok();
    for args in [
        vec!["profile", "validate", broken.as_str()],
        vec!["profile", "validate", "--file", arg(&file)],
    ] {
        let ran = thingpress(&args).await;
        assert_eq!(ran.code, Some(1), "{args:?}");
        let problems: Vec<&str> = ran.stdout.lines().collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(&format!("policies: \"{missing}\" does not exist")),
            "{problems:?}"
        );
        assert!(ran.error_line().starts_with("thingpress: error: "));
    }

    // A file that is not a valid profile is refused before anything is stored.
    let invalid = scratch("invalid.json", br#"{"name": "x y", "thingName": "fixed"}"#);
    let ran = thingpress(&["profile", "put", arg(&invalid)]).await;
    assert_eq!(ran.code, Some(1));
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("thingName"), "{}", ran.stderr);
    let ran = thingpress(&["profile", "get", &format!("{tag}-absent")]).await;
    assert_eq!(ran.code, Some(1));
    assert!(ran.stderr.contains("no profile"), "{}", ran.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_under_incoming_is_imported_by_the_trigger_and_waited_for() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let tag = unique("upload");
    let profile = stored_profile(&stack, &tag).await;
    let (file, ids) = manifest_file(&tag, 25);
    let before = stack.certificate_ids().await;

    let ran = thingpress(&["import", arg(&file), "--profile", &tag, "--wait"])
        .await
        .ok();
    assert!(
        ran.stdout.contains(&format!("incoming/{tag}/{tag}.pem")),
        "{}",
        ran.stdout
    );
    let run_id = ran.run_id();
    assert!(ran.stdout.contains("SUCCEEDED"), "{}", ran.stdout);
    // Not a terminal: plain progress lines on stderr, the last one with every chunk done.
    let progress: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.starts_with(&format!("{run_id}: ")))
        .collect();
    assert!(
        progress
            .last()
            .is_some_and(|l| l.contains("SUCCEEDED: certificates 25/25, chunks 3/3 done")),
        "{}",
        ran.stderr
    );
    assert_eq!(count_of(&ran.stdout, "registered"), Some(25));
    let report = report_of(&stack, &run_id).await;
    assert_eq!(report.status, RunStatus::Complete, "{:?}", report.problems);
    assert_eq!(report.source.key, format!("incoming/{tag}/{tag}.pem"));
    assert_eq!((report.entries, report.chunks), (25, 3));
    assert_eq!(report.outcomes.registered, 25);
    stack.verify_registry(&profile, &ids, &before).await;

    // The same bytes again: a new execution (not the first one) that the claim skips.
    let again = thingpress(&["import", arg(&file), "--profile", &tag, "--wait"])
        .await
        .ok();
    assert_ne!(again.run_id(), run_id);
    assert!(
        again
            .stdout
            .contains(&format!("already imported by run {run_id}")),
        "{}",
        again.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_start_runs_the_named_execution_and_watch_follows_it() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let tag = unique("start");
    let profile = stored_profile(&stack, &tag).await;
    let (file, ids) = manifest_file(&tag, 12);
    let before = stack.certificate_ids().await;
    let run_id = format!("{tag}-run");

    let ran = thingpress(&[
        "import",
        arg(&file),
        "--profile",
        &tag,
        "--start",
        "--name",
        &run_id,
        "--wait",
    ])
    .await
    .ok();
    assert_eq!(ran.run_id(), run_id);
    assert!(
        ran.stdout
            .contains(&format!("runs/{run_id}/manifest/{tag}.pem")),
        "{}",
        ran.stdout
    );
    let report = report_of(&stack, &run_id).await;
    assert_eq!(report.outcomes.registered, 12, "{:?}", report.outcomes);
    stack.verify_registry(&profile, &ids, &before).await;

    // watch on a finished run: the summary at once, by name or ARN.
    let arn = format!(
        "{}:{run_id}",
        stack.machine.replace(":stateMachine:", ":execution:")
    );
    for execution in [run_id.as_str(), arn.as_str()] {
        let watched = thingpress(&["watch", execution]).await.ok();
        assert_eq!(count_of(&watched.stdout, "registered"), Some(12));
        assert_eq!(count_of(&watched.stdout, "already registered"), Some(0));
    }

    // The same name again is refused with one line.
    let ran = thingpress(&[
        "import",
        arg(&file),
        "--profile",
        &tag,
        "--start",
        "--name",
        &run_id,
    ])
    .await;
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.error_line().contains("already exists"),
        "{}",
        ran.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_makes_import_wait_and_watch_exit_non_zero() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let tag = unique("failing");
    let mut profile = stack.resources(&tag, 0, 1).await;
    let missing = format!("{tag}-deleted-policy");
    profile["policies"] = json!([missing]);
    let file = scratch("profile.json", profile.to_string().as_bytes());
    thingpress(&["profile", "put", arg(&file)]).await.ok();
    let (manifest, _) = manifest_file(&tag, 3);

    // Split finds the missing policy before registering anything: the execution fails.
    let ran = thingpress(&[
        "import",
        arg(&manifest),
        "--profile",
        &tag,
        "--start",
        "--wait",
    ])
    .await;
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let line = ran.error_line();
    assert!(
        line.starts_with("thingpress: error: run ") && line.contains(" FAILED: "),
        "{line}"
    );
    assert!(line.contains("Thingpress.InvalidProfile"), "{line}");
    assert!(line.contains(&missing), "{line}");
    let watched = thingpress(&["watch", &ran.run_id()]).await;
    assert_eq!(watched.code, Some(1));
    assert_eq!(watched.error_line(), line);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_unknown_runs_are_one_line_errors() {
    let _shared = EDGE.read().await;
    let manifest = scratch(
        "m.pem",
        fresh_certificates("bad-args", 1).concat().as_bytes(),
    );
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["import", arg(&manifest)], 2, "--profile"),
        (
            vec!["import", arg(&manifest), "--profile", "default", "--force"],
            2,
            "--start",
        ),
        (vec!["watch"], 2, "<EXECUTION>"),
        (vec!["watch", "x", "--latest"], 2, "--latest"),
        (vec!["profile", "validate"], 2, "<NAME>"),
        (
            vec!["import", "/no/such/manifest.pem", "--profile", "default"],
            1,
            "/no/such/manifest.pem",
        ),
        (
            vec!["import", arg(&manifest), "--profile", "no-such-profile-x"],
            1,
            "no profile \"no-such-profile-x\"",
        ),
        (
            vec![
                "import",
                arg(&manifest),
                "--profile",
                "default",
                "--start",
                "--name",
                "not a name",
            ],
            1,
            "--name",
        ),
        (vec!["watch", "no-such-run-x"], 1, "ExecutionDoesNotExist"),
    ];
    for (args, code, needle) in cases {
        let ran = thingpress(&args).await;
        assert_eq!(ran.code, Some(code), "{args:?}: {}", ran.stderr);
        assert_eq!(ran.stderr.lines().count(), 1, "{args:?}: {}", ran.stderr);
        assert!(
            ran.stderr.starts_with("thingpress: error: ") && ran.stderr.contains(needle),
            "{args:?}: {}",
            ran.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_counts_failed_chunks_of_a_run_whose_register_crashes() {
    let _exclusive = EDGE.write().await;
    let stack = Stack::new().await;
    let tag = unique("crashing");
    stored_profile(&stack, &tag).await;
    let (manifest, _) = manifest_file(&tag, 4);
    edge(
        &stack.state,
        "POST",
        "/_edge/faults",
        Some(json!({"lambda": {"register": {"crash": 1.0}}})),
    );
    let ran = thingpress(&[
        "import",
        arg(&manifest),
        "--profile",
        &tag,
        "--start",
        "--wait",
    ])
    .await;
    // Reset before asserting, so a failed assertion leaves no fault behind.
    edge(&stack.state, "POST", "/_edge/faults", Some(json!({})));
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    let run_id = ran.run_id();
    let last_progress = ran
        .stderr
        .lines()
        .rfind(|l| l.starts_with(&format!("{run_id}: ")))
        .unwrap_or_default();
    // moto swallows the failed child (DESIGN.md §8); the map run counts it, Summarize fails.
    assert!(
        last_progress.contains("FAILED")
            && last_progress.contains("chunks 0/1 done, 0 running, 1 failed"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.error_line().starts_with(&format!(
            "thingpress: error: run {run_id} FAILED: Thingpress.IncompleteImport"
        )),
        "{}",
        ran.stderr
    );
}

/// `registry summary --output json`: what the registry holds, counted.
async fn registry_summary() -> Value {
    let ran = thingpress(&["registry", "summary", "--output", "json"])
        .await
        .ok();
    serde_json::from_str(&ran.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_passes_and_leaves_nothing_behind() {
    // Exclusive: no other test of this suite may move the registry's counts meanwhile.
    let _exclusive = EDGE.write().await;
    let before = registry_summary().await;

    let ran = thingpress(&["smoke", "--interval", "1"]).await.ok();
    let verdicts: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with("PASS ") || l.starts_with("FAIL "))
        .collect();
    let steps = [
        "certificates",
        "setup",
        "import",
        "registry check",
        "decommission",
        "nothing left",
        "cleanup",
    ];
    assert_eq!(verdicts.len(), steps.len(), "{}", ran.stdout);
    for (line, step) in verdicts.iter().zip(steps) {
        assert!(line.starts_with(&format!("PASS {step}: ")), "{line}");
    }
    assert_eq!(ran.stdout.lines().last(), Some("smoke: PASS (7 steps)"));
    let tag = ran
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("smoke test "))
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no smoke test line in:\n{}", ran.stdout))
        .to_owned();
    assert!(tag.starts_with("thingpress-smoke-"), "{tag}");

    // Nothing left: the registry counts what it counted before (no thing, certificate, policy
    // or group more), the profile is gone from the stack, the certificates from the disk.
    let after = registry_summary().await;
    for field in ["things", "certificates", "policies", "thingsPerGroup"] {
        assert_eq!(after[field], before[field], "{field}");
    }
    assert_eq!(after, before);
    let profiles = thingpress(&["profile", "list"]).await.ok();
    assert!(
        !profiles.stdout.lines().any(|l| l == tag),
        "{}",
        profiles.stdout
    );
    assert!(!std::env::temp_dir().join(&tag).exists());
}
