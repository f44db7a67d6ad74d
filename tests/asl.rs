//! The state machine (statemachine/import.asl.json), the SAM template (infra/template.yaml) and
//! the code agree: every `${…}` has a substitution, every Lambda task retries with backoff and
//! full jitter (a STANDARD child's Register loops on `done:false` instead of retrying
//! `Thingpress.*`, and its loop fits the child's history quota), the `Thingpress.*` names the ASL matches are the code's names used as their kind
//! says, and the template deploys exactly the packages under functions/ (IAM and the other
//! security rules of the template: tests/template.rs).
//!
//! Each check returns the problems it finds, so the tests below also run it on broken copies
//! and see it complain.

#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a test binary: loading helpers fail the test loudly; the checks themselves never panic"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value as Json, json};
use serde_norway::Value as Yaml;
use thingpress_manifest::{ErrorKind, ErrorName};
use thingpress_tests::checks::{
    asl, assert_caught, assert_clean, get, intrinsic, template, yaml_at,
};

/// Errors that AWS Lambda's own service raises, retried on every Lambda task
/// (`ClientExecutionTimeoutException`: the invoke call itself timed out).
const LAMBDA_SERVICE_ERRORS: [&str; 5] = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
];
/// A function that crashed, ran out of memory or timed out (AWS reports `Lambda.Unknown`; the
/// runtime's own names also reach the state machine). Retried because every task is idempotent.
const FUNCTION_CRASH_ERRORS: [&str; 3] =
    ["Lambda.Unknown", "Runtime.ExitError", "Sandbox.Timedout"];
/// A retrier's IntervalSeconds, MaxAttempts, BackoffRate and MaxDelaySeconds.
type RetryTiming = (f64, f64, f64, f64);
/// The contract's timing of the Lambda service retrier.
const LAMBDA_RETRY: RetryTiming = (1.0, 6.0, 2.0, 20.0);
/// The contract's timing of the function crash retrier: few attempts, a crash that repeats is a bug.
const CRASH_RETRY: RetryTiming = (2.0, 3.0, 2.0, 30.0);
/// The contract's timing of the Thingpress retrier.
const THINGPRESS_RETRY: RetryTiming = (2.0, 8.0, 2.0, 60.0);
/// The one retrier of a task in an EXPRESS child (state name `…Express`): every retryable error,
/// once, so the child fits its 5 minutes (tests/express.rs proves the sum).
const EXPRESS_RETRY: RetryTiming = (2.0, 1.0, 2.0, 4.0);
/// Errors a Distributed Map itself can fail with while reading its items or writing results.
const MAP_IO_ERRORS: [&str; 2] = ["States.ItemReaderFailed", "States.ResultWriterFailed"];
/// The only Lambda integration the ASL uses.
const LAMBDA_INVOKE: &str = "arn:aws:states:::lambda:invoke";
/// The task that continues a chunk in a STANDARD child: it returns `done:false` instead of
/// raising its retryable errors, so it has no Thingpress retrier.
const CONTINUING_TASK: &str = "ImportChunks/Register";
/// A Standard execution (each Distributed Map child has its own history) fails at its
/// 25,000th event unless that is ExecutionSucceeded.
const HISTORY_QUOTA: u64 = 25_000;

// ------------------------------------------------------------------------------------ loading

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn asl_text() -> String {
    read("statemachine/import.asl.json")
}

/// `(package name, binary names)` of every package under functions/, from `cargo metadata`.
fn function_packages() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Json = serde_json::from_slice(&output.stdout).expect("cargo metadata is JSON");
    let functions_dir = repo_root()
        .join("functions")
        .canonicalize()
        .expect("functions/ exists");
    let mut packages = BTreeMap::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let manifest = Path::new(package["manifest_path"].as_str().unwrap_or_default());
        let Some(dir) = manifest.parent() else {
            continue;
        };
        if dir.parent() != Some(functions_dir.as_path()) {
            continue;
        }
        let dir_name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let bins = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.contains(&json!("bin")))
            })
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect();
        let name = package["name"].as_str().unwrap_or_default().to_owned();
        packages.insert(dir_name.to_owned(), (name, bins));
    }
    packages
}

// ------------------------------------------------------------------------------------ helpers

/// `SplitFunction` for `split`.
fn logical_function_id(binary: &str) -> String {
    let mut chars = binary.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase().to_string());
    format!("{}{}Function", first.unwrap_or_default(), chars.as_str())
}

/// Every `${Name}` in a text.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                found.insert(after[..end].to_owned());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    found
}

/// Every state of a state machine, nested ones (Map item processors, Parallel branches) too,
/// as (path for messages, state).
fn all_states(machine: &Json) -> Vec<(String, &Json)> {
    fn walk<'a>(prefix: &str, machine: &'a Json, out: &mut Vec<(String, &'a Json)>) {
        let Some(states) = machine["States"].as_object() else {
            return;
        };
        for (name, state) in states {
            let path = format!("{prefix}{name}");
            out.push((path.clone(), state));
            for nested in ["ItemProcessor", "Iterator"] {
                if state.get(nested).is_some() {
                    walk(&format!("{path}/"), &state[nested], out);
                }
            }
            for branch in state["Branches"].as_array().into_iter().flatten() {
                walk(&format!("{path}/"), branch, out);
            }
        }
    }
    let mut out = Vec::new();
    walk("", machine, &mut out);
    out
}

fn lambda_tasks(machine: &Json) -> Vec<(String, &Json)> {
    all_states(machine)
        .into_iter()
        .filter(|(_, s)| s["Type"] == "Task" && s["Resource"] == LAMBDA_INVOKE)
        .collect()
}

fn error_equals(rule: &Json) -> BTreeSet<String> {
    rule["ErrorEquals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect()
}

fn retryable_names() -> BTreeSet<String> {
    ErrorName::ALL
        .iter()
        .filter(|n| n.kind() == ErrorKind::Retryable)
        .map(|n| n.as_str().to_owned())
        .collect()
}

/// `X` for `!GetAtt X.Arn`, `{Fn::GetAtt: [X, Arn]}`.
fn get_att_arn_of(value: &Yaml) -> Option<String> {
    let arg = intrinsic(value, "GetAtt")?;
    match arg {
        Yaml::String(s) => s.strip_suffix(".Arn").map(str::to_owned),
        Yaml::Sequence(parts) if parts.len() == 2 && parts.get(1)?.as_str() == Some("Arn") => {
            parts.first()?.as_str().map(str::to_owned)
        }
        _ => None,
    }
}

fn resources(template: &Yaml) -> Vec<(String, &Yaml)> {
    get(template, "Resources")
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| k.as_str().map(|k| (k.to_owned(), v)))
        .collect()
}

fn resource_type(resource: &Yaml) -> &str {
    get(resource, "Type")
        .and_then(Yaml::as_str)
        .unwrap_or_default()
}

fn state_machine(template: &Yaml) -> Option<&Yaml> {
    resources(template)
        .into_iter()
        .find(|(_, r)| resource_type(r) == "AWS::Serverless::StateMachine")
        .map(|(_, r)| r)
}

// ------------------------------------------------------------------------------------ checks

/// Every `${X}` in the ASL has a DefinitionSubstitutions key and vice versa; the template
/// deploys this very file; function ARNs are substituted from the matching functions.
fn check_substitutions(asl_text: &str, template: &Yaml) -> Vec<String> {
    let mut problems = Vec::new();
    let used = placeholders(asl_text);
    let Some(machine) = state_machine(template) else {
        return vec!["the template has no AWS::Serverless::StateMachine".to_owned()];
    };
    let props = get(machine, "Properties");
    let uri = props
        .and_then(|p| get(p, "DefinitionUri"))
        .and_then(Yaml::as_str);
    if uri != Some("../statemachine/import.asl.json") {
        problems.push(format!(
            "DefinitionUri is {uri:?}, not ../statemachine/import.asl.json"
        ));
    }
    let substitutions: BTreeMap<String, &Yaml> = props
        .and_then(|p| get(p, "DefinitionSubstitutions"))
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| k.as_str().map(|k| (k.to_owned(), v)))
        .collect();
    for name in &used {
        if !substitutions.contains_key(name) {
            problems.push(format!(
                "${{{name}}} in the ASL has no DefinitionSubstitutions key"
            ));
        }
    }
    for (name, value) in &substitutions {
        if !used.contains(name) {
            problems.push(format!(
                "DefinitionSubstitutions key {name} is not used in the ASL"
            ));
        }
        if let Some(function) = name.strip_suffix("Arn").filter(|f| f.ends_with("Function"))
            && get_att_arn_of(value).as_deref() != Some(function)
        {
            problems.push(format!("{name} is not !GetAtt {function}.Arn"));
        }
    }
    problems
}

/// Every Lambda task: a placeholder function, `OutputPath: $.Payload`, the Lambda service
/// retrier and the Thingpress retrier (all retryable names), each with backoff, a delay cap and
/// full jitter at the contract's timing; a task of the EXPRESS branch (`…Express`) instead has
/// one retrier of all of them at the EXPRESS timing.
fn check_retriers(asl: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    let tasks = lambda_tasks(asl);
    if tasks.is_empty() {
        problems.push("the ASL has no Lambda tasks".to_owned());
    }
    for (path, state) in all_states(asl) {
        if state["Type"] == "Task" && state["Resource"] != LAMBDA_INVOKE {
            problems.push(format!("{path}: Resource is not {LAMBDA_INVOKE}"));
        }
    }
    for (path, task) in tasks {
        let function = task["Parameters"]["FunctionName"]
            .as_str()
            .unwrap_or_default();
        if !(function.starts_with("${") && function.ends_with("FunctionArn}")) {
            problems.push(format!(
                "{path}: FunctionName {function:?} is not a ${{…FunctionArn}}"
            ));
        }
        if task["OutputPath"] != "$.Payload" {
            problems.push(format!("{path}: OutputPath is not $.Payload"));
        }
        let retriers: Vec<&Json> = task["Retry"].as_array().into_iter().flatten().collect();
        let express = path.ends_with("Express");
        if express && retriers.len() != 1 {
            problems.push(format!(
                "{path}: {} retriers, not the one EXPRESS retrier",
                retriers.len()
            ));
        }
        let continuing = path == CONTINUING_TASK;
        for (label, errors, timing) in expected_retriers(express) {
            if continuing && label == "Thingpress" {
                if retriers
                    .iter()
                    .any(|r| !error_equals(r).is_disjoint(&errors))
                {
                    problems.push(format!(
                        "{path}: a Thingpress retrier on the continuing task (stalls are counted in the payload)"
                    ));
                }
                continue;
            }
            check_retrier(&path, &retriers, label, &errors, timing, &mut problems);
        }
    }
    problems
}

/// The STANDARD child's loop: Register → a Choice ending the child on `$.done` true → else a
/// Wait on `$.continuation.waitSeconds` → Register.
fn check_continuation_loop(asl: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    let states = &asl["States"]["ImportChunks"]["ItemProcessor"]["States"];
    let register = &states["Register"];
    let choice_name = register["Next"].as_str().unwrap_or_default();
    let choice = &states[choice_name];
    if choice["Type"] != "Choice" {
        problems.push(format!(
            "{CONTINUING_TASK}: Next {choice_name:?} is not a Choice"
        ));
        return problems;
    }
    let done_rule = choice["Choices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["Variable"] == "$.done" && r["BooleanEquals"] == true);
    match done_rule.and_then(|r| r["Next"].as_str()) {
        Some(end) if states[end]["Type"] == "Succeed" => {}
        _ => problems.push(format!(
            "{choice_name}: no rule ending the child on $.done true"
        )),
    }
    let wait_name = choice["Default"].as_str().unwrap_or_default();
    let wait = &states[wait_name];
    if wait["Type"] != "Wait" || wait["SecondsPath"] != "$.continuation.waitSeconds" {
        problems.push(format!(
            "{choice_name}: Default {wait_name:?} is not a Wait on $.continuation.waitSeconds"
        ));
    }
    if wait["Next"] != "Register" {
        problems.push(format!("{wait_name}: does not loop back to Register"));
    }
    problems
}

/// History events one pass of the continuation loop adds at worst, derived from the ASL: a
/// Task state 5 (Entered, Scheduled, Started, Succeeded, Exited) plus 3 per retry (Scheduled,
/// Started, Failed) for every retry its retriers allow, as if Step Functions reset the retry
/// count on each entry (moto does; AWS does not say); a Choice or Wait 2 (Entered, Exited).
fn loop_events(asl: &Json) -> u64 {
    let states = &asl["States"]["ImportChunks"]["ItemProcessor"]["States"];
    let mut name = "Register".to_owned();
    let mut events = 0;
    for _ in 0..8 {
        let state = &states[&name];
        events += match state["Type"].as_str() {
            Some("Task") => {
                let retries: u64 = state["Retry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["MaxAttempts"].as_u64())
                    .sum();
                5 + 3 * retries
            }
            _ => 2,
        };
        name = match state["Type"].as_str() {
            Some("Choice") => state["Default"].as_str().unwrap_or_default().to_owned(),
            _ => state["Next"].as_str().unwrap_or_default().to_owned(),
        };
        if name == "Register" {
            return events;
        }
    }
    u64::MAX / 2
}

/// The retriers a Lambda task must have: the three standard ones, or in an EXPRESS child the
/// one that retries everything retryable once.
fn expected_retriers(express: bool) -> Vec<(&'static str, BTreeSet<String>, RetryTiming)> {
    let names =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|s| (*s).to_owned()).collect() };
    let retryable = retryable_names();
    if express {
        let mut every = names(&LAMBDA_SERVICE_ERRORS);
        every.extend(names(&FUNCTION_CRASH_ERRORS));
        every.extend(retryable);
        return vec![("EXPRESS", every, EXPRESS_RETRY)];
    }
    vec![
        (
            "Lambda service",
            names(&LAMBDA_SERVICE_ERRORS),
            LAMBDA_RETRY,
        ),
        ("function crash", names(&FUNCTION_CRASH_ERRORS), CRASH_RETRY),
        ("Thingpress", retryable, THINGPRESS_RETRY),
    ]
}

/// The task's retrier for `errors` retries all of them with `timing` and full jitter.
fn check_retrier(
    path: &str,
    retriers: &[&Json],
    label: &str,
    errors: &BTreeSet<String>,
    timing: RetryTiming,
    problems: &mut Vec<String>,
) {
    let Some(retrier) = retriers
        .iter()
        .find(|r| !error_equals(r).is_disjoint(errors))
    else {
        problems.push(format!("{path}: no {label} retrier"));
        return;
    };
    let retried = error_equals(retrier);
    let missing: Vec<_> = errors.difference(&retried).collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{path}: the {label} retrier does not retry {missing:?}"
        ));
    }
    let (interval, attempts, backoff, max_delay) = timing;
    for (key, want) in [
        ("IntervalSeconds", interval),
        ("MaxAttempts", attempts),
        ("BackoffRate", backoff),
        ("MaxDelaySeconds", max_delay),
    ] {
        if retrier[key].as_f64() != Some(want) {
            problems.push(format!(
                "{path}: the {label} retrier has {key} {:?}, not {want}",
                retrier.get(key)
            ));
        }
    }
    if retrier["JitterStrategy"] != "FULL" {
        problems.push(format!(
            "{path}: the {label} retrier has no JitterStrategy FULL"
        ));
    }
}

/// Every `Thingpress.*` name the ASL matches is one of the code's, Retryable where retried and
/// Terminal where caught.
fn check_error_names(asl: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, state) in all_states(asl) {
        for (field, want) in [
            ("Retry", ErrorKind::Retryable),
            ("Catch", ErrorKind::Terminal),
        ] {
            for rule in state[field].as_array().into_iter().flatten() {
                for name in error_equals(rule) {
                    if !name.starts_with("Thingpress.") {
                        continue;
                    }
                    match name.parse::<ErrorName>() {
                        Err(_) => problems.push(format!(
                            "{path}: {field} names {name}, which is not in ErrorName::ALL"
                        )),
                        Ok(known) if known.kind() != want => problems.push(format!(
                            "{path}: {field} names {name}, a {:?} error, not {want:?}",
                            known.kind()
                        )),
                        Ok(_) => {}
                    }
                }
            }
        }
    }
    problems
}

/// The run's shape per the contract: Split and Summarize catch into a Fail state that keeps the
/// error, the Map runs DISTRIBUTED with the substituted execution type, is not caught and
/// tolerates no failure.
fn check_shape(asl: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    let states = &asl["States"];
    for name in ["Split", "Summarize"] {
        let catches: Vec<&Json> = states[name]["Catch"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let Some(catch) = catches
            .iter()
            .find(|c| error_equals(c).contains("States.ALL"))
        else {
            problems.push(format!("{name}: no Catch of States.ALL"));
            continue;
        };
        if catch["ResultPath"] != "$.error" {
            problems.push(format!(
                "{name}: its Catch does not keep the input (ResultPath $.error)"
            ));
        }
        let target = &states[catch["Next"].as_str().unwrap_or_default()];
        if target["Type"] != "Fail"
            || target["ErrorPath"] != "$.error.Error"
            || target["CausePath"] != "$.error.Cause"
        {
            problems.push(format!(
                "{name}: its Catch does not go to a Fail state with ErrorPath/CausePath"
            ));
        }
    }
    let maps: Vec<(String, &Json)> = all_states(asl)
        .into_iter()
        .filter(|(_, s)| s["Type"] == "Map")
        .collect();
    if maps.len() != 1 {
        problems.push(format!("expected one Map state, found {}", maps.len()));
    }
    for (path, map) in maps {
        let config = &map["ItemProcessor"]["ProcessorConfig"];
        if config["Mode"] != "DISTRIBUTED" || config["ExecutionType"] != "${ChildExecutionType}" {
            problems.push(format!(
                "{path}: not DISTRIBUTED with ExecutionType ${{ChildExecutionType}}"
            ));
        }
        for forbidden in [
            "Catch",
            "ToleratedFailurePercentage",
            "ToleratedFailureCount",
        ] {
            if map.get(forbidden).is_some() {
                problems.push(format!(
                    "{path}: has {forbidden} (a failed chunk must fail the run)"
                ));
            }
        }
        // Split decides: 0 with one target, so that a failed chunk fails the run.
        if map["ToleratedFailurePercentagePath"] != "$.toleratedFailurePercentage" {
            problems.push(format!(
                "{path}: ToleratedFailurePercentagePath is not $.toleratedFailurePercentage"
            ));
        }
        if map["MaxConcurrencyPath"] != "$.maxConcurrency" {
            problems.push(format!(
                "{path}: MaxConcurrencyPath is not $.maxConcurrency"
            ));
        }
    }
    problems
}

/// The Map retries its own S3 reads and writes (ItemReader, ResultWriter) with backoff, a delay
/// cap and full jitter: a fault there is S3's, and another try fixes it.
fn check_map_retry(asl: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    for (path, map) in all_states(asl)
        .into_iter()
        .filter(|(_, s)| s["Type"] == "Map")
    {
        for error in MAP_IO_ERRORS {
            let Some(retrier) = map["Retry"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| error_equals(r).contains(error))
            else {
                problems.push(format!("{path}: no Map-level retry of {error}"));
                continue;
            };
            let attempts = retrier["MaxAttempts"].as_f64().unwrap_or(3.0);
            if attempts < 1.0 {
                problems.push(format!("{path}: {error} is retried {attempts} times"));
            }
            if retrier["BackoffRate"].as_f64().unwrap_or(2.0) < 1.5
                || retrier["MaxDelaySeconds"].as_f64().is_none()
                || retrier["JitterStrategy"] != "FULL"
            {
                problems.push(format!(
                    "{path}: the retry of {error} lacks backoff, a delay cap or full jitter"
                ));
            }
        }
    }
    problems
}

/// The template's functions are exactly the packages under functions/, each built by
/// cargo-lambda from the workspace root.
fn check_functions(
    template: &Yaml,
    packages: &BTreeMap<String, (String, BTreeSet<String>)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (dir, (package, bins)) in packages {
        if package != &format!("thingpress-{dir}") {
            problems.push(format!(
                "functions/{dir} is package {package}, not thingpress-{dir}"
            ));
        }
        if !bins.contains(dir) {
            problems.push(format!("functions/{dir} has no binary named {dir}"));
        }
    }
    let mut deployed = BTreeSet::new();
    for (id, resource) in resources(template) {
        if resource_type(resource) != "AWS::Serverless::Function" {
            continue;
        }
        let build = get(resource, "Metadata");
        let method = build
            .and_then(|m| get(m, "BuildMethod"))
            .and_then(Yaml::as_str);
        let binary = build
            .and_then(|m| get(m, "BuildProperties"))
            .and_then(|p| get(p, "Binary"))
            .and_then(Yaml::as_str)
            .unwrap_or_default();
        if method != Some("rust-cargolambda") {
            problems.push(format!(
                "{id}: BuildMethod is {method:?}, not rust-cargolambda"
            ));
        }
        if id != logical_function_id(binary) {
            problems.push(format!(
                "{id}: builds binary {binary:?}; expected id {}",
                logical_function_id(binary)
            ));
        }
        let code_uri = get(resource, "Properties")
            .and_then(|p| get(p, "CodeUri"))
            .and_then(Yaml::as_str);
        if code_uri != Some("../") {
            problems.push(format!(
                "{id}: CodeUri is {code_uri:?}, not the workspace root ../"
            ));
        }
        if !packages.contains_key(binary) {
            problems.push(format!("{id}: no package functions/{binary}"));
        }
        deployed.insert(binary.to_owned());
    }
    for dir in packages.keys() {
        if !deployed.contains(dir) {
            problems.push(format!("functions/{dir} is not deployed by the template"));
        }
    }
    problems
}

// --------------------------------------------------------------- payloads: ASL against types

/// The sample run id the contract check runs under (the execution name).
const SAMPLE_RUN: &str = "run-1";

/// A message for a problem found at `state`.
type Problems = Vec<String>;

/// What flows through one simulated execution: the context object and the problems so far.
struct Flow {
    /// `$$`: the execution name, and the Map item inside a child.
    context: Json,
    problems: Problems,
    /// States entered, to prove every state is reached by some sample.
    visited: BTreeSet<String>,
}

/// The execution inputs the state machine is started with: the S3 trigger's event, the console
/// input of `thingpress import` (by name and inline profile), and `thingpress retry-failed`'s.
fn sample_execution_inputs() -> Vec<(&'static str, Json)> {
    use thingpress_run::payload::{
        ConsoleInput, EventBucket, EventDetail, EventObject, ExecutionInput, ManifestObject,
        ObjectCreatedEvent, Operation, ProfileRef, RetryInput, RetryRequest,
    };
    let event = ExecutionInput::ObjectCreated(ObjectCreatedEvent {
        detail_type: "Object Created".into(),
        detail: EventDetail {
            bucket: EventBucket {
                name: "imports".into(),
            },
            object: EventObject {
                key: "incoming/widget/reel.json".into(),
            },
        },
    });
    let console = |profile, operation| {
        ExecutionInput::Console(ConsoleInput {
            manifest: ManifestObject {
                bucket: "imports".into(),
                key: "runs/run-1/manifest/reel.json".into(),
            },
            operation,
            profile: Some(profile),
            force: Some(true),
        })
    };
    let inline = serde_json::Map::from_iter([("name".to_owned(), json!("widget"))]);
    let retry = RetryInput {
        retry: RetryRequest {
            run_id: "run-0".into(),
            retry: 1,
            chunks_key: "runs/run-0/retries/00001/chunks.json".into(),
            max_concurrency: 2,
            tolerated_failure_percentage: 0,
        },
    };
    vec![
        ("S3 event", sample(&event)),
        (
            "console input",
            sample(&console(
                ProfileRef::Named("widget".into()),
                Operation::Import,
            )),
        ),
        (
            "console input, inline profile",
            sample(&console(ProfileRef::Inline(inline), Operation::Import)),
        ),
        (
            "console input of an activation",
            sample(&console(
                ProfileRef::Named("widget".into()),
                Operation::Activate,
            )),
        ),
        ("retry input", sample(&retry)),
    ]
}

/// A payload sample as JSON.
fn sample<T: serde::Serialize>(value: &T) -> Json {
    serde_json::to_value(value).expect("payload samples serialise")
}

/// A sample output of each Lambda for `input`, read as its input type: Ok(outputs) (Split has
/// two: a started run and a skipped duplicate), or why the input does not fit.
fn lambda_outputs(function: &str, input: &Json) -> Result<Vec<Json>, String> {
    use thingpress_run::payload::{
        ChildExecutionType, ChunkInput, ChunkSummary, Continuation, DecoratedChunk, Done,
        RegisterOutput, RunSummary, Skipped, SplitInput, SplitOutput, Started, SummarizeInput,
        SummaryStatus,
    };
    fn read<T: serde::de::DeserializeOwned>(input: &Json) -> Result<T, String> {
        thingpress_run::payload::from_value(input.clone()).map_err(|e| e.message)
    }
    match function {
        "${SplitFunctionArn}" => {
            let input: SplitInput = read(input)?;
            let run = thingpress_run::RunLayout::new(&input.run_id).map_err(|e| e.message)?;
            let started = SplitOutput::Started(Started {
                run_id: input.run_id.clone(),
                bucket: "imports".into(),
                chunks_key: run.chunk_index(),
                chunk_count: 1,
                max_concurrency: 2,
                tolerated_failure_percentage: 0,
                entries: 3,
                accepted: 2,
                rejected: 1,
            });
            let skipped = SplitOutput::Skipped(Skipped {
                run_id: input.run_id,
                owner_run_id: "run-0".into(),
                bucket: "imports".into(),
                key: "incoming/widget/reel.json".into(),
            });
            Ok(vec![sample(&started), sample(&skipped)])
        }
        "${DecorateFunctionArn}" => {
            let input: ChunkInput = read(input)?;
            let run = input.layout().map_err(|e| e.message)?;
            Ok(vec![sample(&DecoratedChunk {
                decorated_key: run.decorated(input.chunk.chunk),
                decorated: input.chunk.entries,
                rejected: 0,
                run_id: input.run_id,
                bucket: input.bucket,
                chunk: input.chunk,
                child_execution_type: input.child_execution_type,
                done: None,
                continuation: None,
            })])
        }
        "${RegisterFunctionArn}" => {
            let input: DecoratedChunk = read(input)?;
            input.chunk_input().layout().map_err(|e| e.message)?;
            let finished = RegisterOutput::Finished(ChunkSummary {
                run_id: input.run_id.clone(),
                chunk: input.chunk.chunk,
                registered: input.decorated,
                already_registered: 0,
                activated: 0,
                already_active: 0,
                removed: 0,
                would_remove: 0,
                already_removed: 0,
                rejected: input.rejected,
                done: Done,
            });
            // A STANDARD child's first invocation may hand the chunk back; the next finishes.
            let continues = input.child_execution_type != Some(ChildExecutionType::Express)
                && input.continuation.is_none();
            let mut outputs = vec![sample(&finished)];
            if continues {
                outputs.push(sample(&RegisterOutput::Continuing(input.continuing(
                    Continuation {
                        invocation: 1,
                        stalls: 0,
                        wait_seconds: 1,
                    },
                ))));
            }
            Ok(outputs)
        }
        "${SummarizeFunctionArn}" => {
            let input: SummarizeInput = read(input)?;
            let run = thingpress_run::RunLayout::new(input.run_id()).map_err(|e| e.message)?;
            Ok(vec![sample(&RunSummary {
                run_id: input.run_id().to_owned(),
                status: SummaryStatus::Complete,
                entries: 3,
                registered: 2,
                already_registered: 0,
                activated: 0,
                already_active: 0,
                removed: 0,
                would_remove: 0,
                already_removed: 0,
                rejected: 1,
                report_key: run.report(),
            })])
        }
        other => Err(format!("no payload types for function {other}")),
    }
}

/// The chunk index entry the Map's ItemReader reads for `run_id` (what Split writes).
fn sample_chunk(run_id: &str) -> Json {
    let run = thingpress_run::RunLayout::new(run_id).expect("sample run ids are valid");
    serde_json::to_value(thingpress_run::records::ChunkDescriptor {
        chunk: 0,
        key: run.chunk(0),
        entries: 2,
        first_index: 0,
        target: None,
    })
    .expect("a chunk descriptor serialises")
}

/// A reference path (`$`, `$.a.b`, `$$.a.b`) resolved against the input or the context.
fn resolve(path: &str, input: &Json, context: &Json) -> Option<Json> {
    let (root, rest) = if let Some(rest) = path.strip_prefix("$$") {
        (context, rest)
    } else {
        (input, path.strip_prefix('$')?)
    };
    if rest.is_empty() {
        return Some(root.clone());
    }
    rest.strip_prefix('.')?
        .split('.')
        .try_fold(root, |value, key| value.get(key))
        .cloned()
}

/// The reference paths in a `.$` value: the path itself, or an intrinsic's path arguments.
fn referenced_paths(value: &str) -> Vec<&str> {
    if value.starts_with('$') {
        return vec![value];
    }
    let args = value
        .find('(')
        .and_then(|open| value.rfind(')').map(|close| &value[open + 1..close]));
    args.into_iter()
        .flat_map(|args| args.split(','))
        .map(str::trim)
        .filter(|arg| arg.starts_with('$'))
        .collect()
}

/// A Parameters / ItemSelector / Payload template applied to the input; every path it reads
/// must exist. Intrinsics are checked for their paths and stand for a sample string.
fn apply_template(template: &Json, input: &Json, flow: &mut Flow, at: &str) -> Json {
    match template {
        Json::Object(fields) => {
            let mut out = serde_json::Map::new();
            for (key, value) in fields {
                match (key.strip_suffix(".$"), value.as_str()) {
                    (Some(name), Some(path)) => {
                        let mut found = None;
                        for reference in referenced_paths(path) {
                            found = resolve(reference, input, &flow.context);
                            if found.is_none() {
                                flow.problems.push(format!(
                                    "{at}: {key} reads {reference}, which the input {} lacks",
                                    short(input)
                                ));
                            }
                        }
                        let value = if path.starts_with('$') {
                            found.unwrap_or(Json::Null)
                        } else {
                            json!("intrinsic")
                        };
                        out.insert(name.to_owned(), value);
                    }
                    _ => {
                        out.insert(key.clone(), apply_template(value, input, flow, at));
                    }
                }
            }
            Json::Object(out)
        }
        other => other.clone(),
    }
}

/// A sample, cut short for messages.
fn short(value: &Json) -> String {
    let text = value.to_string();
    match text.char_indices().nth(160) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// `InputPath` / `OutputPath` (absent: `$`; null: `{}`).
fn select(path: Option<&Json>, value: &Json, flow: &mut Flow, at: &str, what: &str) -> Json {
    match path {
        None => value.clone(),
        Some(Json::Null) => json!({}),
        Some(path) => {
            let path = path.as_str().unwrap_or_default();
            resolve(path, value, &flow.context).unwrap_or_else(|| {
                flow.problems
                    .push(format!("{at}: {what} {path} is not in {}", short(value)));
                Json::Null
            })
        }
    }
}

/// `ResultPath`: where a result goes in the state's input (absent: replaces it; null: dropped).
fn place(
    result_path: Option<&Json>,
    input: &Json,
    result: Json,
    flow: &mut Flow,
    at: &str,
) -> Json {
    match result_path {
        None => result,
        Some(Json::Null) => input.clone(),
        Some(Json::String(path)) if path == "$" => result,
        Some(Json::String(path)) => {
            let Some(field) = path.strip_prefix("$.").filter(|f| !f.contains('.')) else {
                flow.problems
                    .push(format!("{at}: ResultPath {path} is not $ or $.field"));
                return input.clone();
            };
            let mut out = input.clone();
            match out.as_object_mut() {
                Some(object) => {
                    object.insert(field.to_owned(), result);
                }
                None => flow
                    .problems
                    .push(format!("{at}: ResultPath {path} on a non-object input")),
            }
            out
        }
        Some(other) => {
            flow.problems
                .push(format!("{at}: ResultPath {other} is not a path"));
            input.clone()
        }
    }
}

/// The Choice rule's outcome on the input; its Variable must exist unless the rule asks
/// whether it is present.
fn choose(rule: &Json, input: &Json, flow: &mut Flow, at: &str) -> bool {
    let variable = rule["Variable"].as_str().unwrap_or_default();
    let value = resolve(variable, input, &flow.context);
    if let Some(present) = rule["IsPresent"].as_bool() {
        return value.is_some() == present;
    }
    let Some(value) = value else {
        flow.problems.push(format!(
            "{at}: the choice reads {variable}, which the input {} lacks",
            short(input)
        ));
        return false;
    };
    if let Some(want) = rule.get("StringEquals") {
        return &value == want;
    }
    if let Some(want) = rule.get("BooleanEquals") {
        return &value == want;
    }
    flow.problems.push(format!(
        "{at}: a choice rule the contract check does not know: {rule}"
    ));
    false
}

/// Runs `machine` (the top level or a Map's ItemProcessor) from its StartAt on `input`,
/// following every output a Lambda may give and every Catch, checking each state's paths
/// against the payload types. `prefix` names nested states.
fn run_machine(machine: &Json, prefix: &str, input: Json, flow: &mut Flow) {
    let start = machine["StartAt"].as_str().unwrap_or_default().to_owned();
    run_from(machine, prefix, &start, input, flow, 0);
}

/// One state, then its successors. The only loop (Register's continuation) ends because the
/// sample Register continues a chunk once; a bound keeps a broken copy from recursing forever.
fn run_from(machine: &Json, prefix: &str, name: &str, input: Json, flow: &mut Flow, depth: u32) {
    let at = format!("{prefix}{name}");
    let Some(state) = machine["States"].get(name) else {
        flow.problems.push(format!("{at}: no such state"));
        return;
    };
    if depth > 32 {
        flow.problems.push(format!("{at}: the path never ends"));
        return;
    }
    flow.visited.insert(at.clone());
    let next = |flow: &mut Flow, output: Json| {
        if let Some(next) = state["Next"].as_str() {
            run_from(machine, prefix, next, output, flow, depth + 1);
        }
    };
    match state["Type"].as_str().unwrap_or_default() {
        "Choice" => {
            let rules = state["Choices"].as_array().cloned().unwrap_or_default();
            let target = rules
                .iter()
                .find(|rule| choose(rule, &input, flow, &at))
                .and_then(|rule| rule["Next"].as_str())
                .or_else(|| state["Default"].as_str())
                .unwrap_or_default()
                .to_owned();
            run_from(machine, prefix, &target, input, flow, depth + 1);
        }
        "Pass" => {
            let output = match state.get("Parameters") {
                Some(template) => apply_template(template, &input, flow, &at),
                None => input.clone(),
            };
            next(flow, output);
        }
        "Task" => {
            let outputs = invoke(state, &input, flow, &at);
            for output in outputs {
                let result = json!({"Payload": output, "StatusCode": 200});
                let placed = place(state.get("ResultPath"), &input, result, flow, &at);
                let output = select(state.get("OutputPath"), &placed, flow, &at, "OutputPath");
                next(flow, output);
            }
            for catch in state["Catch"].as_array().into_iter().flatten() {
                let error = json!({"Error": "Thingpress.InvalidInput", "Cause": "a sample"});
                let caught = place(catch.get("ResultPath"), &input, error, flow, &at);
                if let Some(target) = catch["Next"].as_str() {
                    run_from(machine, prefix, target, caught, flow, depth + 1);
                }
            }
        }
        "Map" => {
            run_map(state, &at, &input, flow);
            let output = place(state.get("ResultPath"), &input, json!([]), flow, &at);
            next(flow, output);
        }
        "Fail" => {
            for field in ["ErrorPath", "CausePath"] {
                if let Some(path) = state[field].as_str()
                    && resolve(path, &input, &flow.context).is_none()
                {
                    flow.problems
                        .push(format!("{at}: {field} {path} is not in {}", short(&input)));
                }
            }
        }
        "Wait" => {
            if let Some(path) = state["SecondsPath"].as_str()
                && resolve(path, &input, &flow.context).is_none_or(|v| !v.is_u64())
            {
                flow.problems.push(format!(
                    "{at}: SecondsPath {path} is not a non-negative integer in {}",
                    short(&input)
                ));
            }
            next(flow, input.clone());
        }
        "Succeed" => {}
        other => flow.problems.push(format!(
            "{at}: a {other} state the contract check does not know"
        )),
    }
}

/// A Lambda task's invocation: its payload built from the input and read as the function's
/// input type; the function's sample outputs (none when the payload does not fit).
fn invoke(state: &Json, input: &Json, flow: &mut Flow, at: &str) -> Vec<Json> {
    let payload = apply_template(&state["Parameters"], input, flow, at);
    let function = payload["FunctionName"].as_str().unwrap_or_default();
    lambda_outputs(function, &payload["Payload"]).unwrap_or_else(|why| {
        flow.problems.push(format!(
            "{at}: the payload {} does not fit the function's input type: {why}",
            short(&payload["Payload"])
        ));
        Vec::new()
    })
}

/// A Map: its reader's and writer's paths, then one child per execution type on the sample
/// chunk, as its ItemSelector builds the child's input.
fn run_map(state: &Json, at: &str, input: &Json, flow: &mut Flow) {
    apply_template(&state["ItemReader"]["Parameters"], input, flow, at);
    apply_template(&state["ResultWriter"]["Parameters"], input, flow, at);
    for field in ["MaxConcurrencyPath", "ToleratedFailurePercentagePath"] {
        if let Some(path) = state[field].as_str()
            && resolve(path, input, &flow.context).is_none_or(|v| !v.is_u64())
        {
            flow.problems.push(format!(
                "{at}: {field} {path} is not a number in {}",
                short(input)
            ));
        }
    }
    let run_id = input["runId"].as_str().unwrap_or(SAMPLE_RUN);
    let outer = flow.context.clone();
    flow.context["Map"] = json!({"Item": {"Index": 0, "Value": sample_chunk(run_id)}});
    for execution_type in ["STANDARD", "EXPRESS"] {
        let selector = substitute(
            &state["ItemSelector"],
            "${ChildExecutionType}",
            execution_type,
        );
        let item = apply_template(&selector, input, flow, at);
        run_machine(&state["ItemProcessor"], &format!("{at}/"), item, flow);
    }
    flow.context = outer;
}

/// `value` with a template placeholder replaced in every string.
fn substitute(value: &Json, placeholder: &str, with: &str) -> Json {
    match value {
        Json::String(s) => Json::String(s.replace(placeholder, with)),
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|v| substitute(v, placeholder, with))
                .collect(),
        ),
        Json::Object(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), substitute(v, placeholder, with)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The ASL's data flow against the payload types in `thingpress_run::payload`: every sample
/// execution input is run through the machine; each path a state reads (Parameters, Payload,
/// ItemReader, ItemSelector, ResultWriter, MaxConcurrencyPath, Choice variables, OutputPath,
/// ErrorPath/CausePath) must exist in the sample it reads, each payload must be accepted by
/// the function's input type (which refuses unknown fields), and every state must be reached.
fn check_payloads(asl: &Json) -> Problems {
    let mut flow = Flow {
        context: json!({"Execution": {"Name": SAMPLE_RUN}}),
        problems: Vec::new(),
        visited: BTreeSet::new(),
    };
    let asl = substitute(asl, "${ImportBucketName}", "imports");
    for (label, input) in sample_execution_inputs() {
        let before = flow.problems.len();
        run_machine(&asl, "", input, &mut flow);
        for problem in &mut flow.problems[before..] {
            *problem = format!("{label}: {problem}");
        }
    }
    let unreached: Vec<String> = all_states(&asl)
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| !flow.visited.contains(path))
        .collect();
    if !unreached.is_empty() {
        flow.problems
            .push(format!("no sample input reaches {unreached:?}"));
    }
    flow.problems
}

// ------------------------------------------------------------------------------------ tests

#[test]
fn the_asl_paths_and_the_payload_types_agree() {
    assert_clean(check_payloads(&asl()));
}

#[test]
fn payload_check_catches_a_renamed_field_on_either_side() {
    let renamed = |edit: &dyn Fn(&mut Json)| {
        let mut broken = asl();
        edit(&mut broken);
        check_payloads(&broken)
    };
    // The ASL reads a field the type does not have.
    assert_caught(
        renamed(&|asl| {
            asl["States"]["ImportChunks"]["ItemSelector"]["runId.$"] = json!("$.runID");
        }),
        "runId.$ reads $.runID, which the input",
    );
    assert_caught(
        renamed(&|asl| {
            asl["States"]["PrepareRetry"]["Parameters"]["chunksKey.$"] = json!("$.retry.chunkKey");
        }),
        "retry input: PrepareRetry: chunksKey.$ reads $.retry.chunkKey",
    );
    assert_caught(
        renamed(&|asl| {
            asl["States"]["IsDuplicate"]["Choices"][0]["Variable"] = json!("$.state");
        }),
        "IsDuplicate: the choice reads $.state",
    );
    assert_caught(
        renamed(&|asl| asl["States"]["ImportFailed"]["ErrorPath"] = json!("$.err.Error")),
        "ImportFailed: ErrorPath $.err.Error",
    );
    // The ASL passes a field the input type does not accept.
    assert_caught(
        renamed(&|asl| {
            let selector = asl["States"]["ImportChunks"]["ItemSelector"]
                .as_object_mut()
                .expect("ItemSelector");
            let value = selector.remove("runId.$").expect("runId.$");
            selector.insert("runID.$".into(), value);
        }),
        "ImportChunks/Decorate: the payload",
    );
    assert_caught(
        renamed(&|asl| {
            asl["States"]["Split"]["Parameters"]["Payload"]["execution.$"] = json!("$");
        }),
        "unknown field `execution`",
    );
    // A route no sample takes any more.
    assert_caught(
        renamed(&|asl| {
            asl["States"]["ImportChunks"]["ItemProcessor"]["States"]["ChooseChildType"]["Choices"]
                [0]["StringEquals"] = json!("Express");
        }),
        "no sample input reaches [\"ImportChunks/DecorateExpress\"",
    );
}

#[test]
fn asl_placeholders_match_definition_substitutions() {
    assert_clean(check_substitutions(&asl_text(), &template()));
}

#[test]
fn substitution_check_catches_a_missing_key_and_an_unused_one() {
    let mut broken = template();
    let subs = yaml_at(
        &mut broken,
        &[
            "Resources",
            "ImportStateMachine",
            "Properties",
            "DefinitionSubstitutions",
        ],
    )
    .as_mapping_mut()
    .expect("a mapping");
    subs.remove("ChildExecutionType");
    subs.insert("LeftOver".into(), "x".into());
    let problems = check_substitutions(&asl_text(), &broken);
    assert_caught(problems.clone(), "${ChildExecutionType} in the ASL has no");
    assert_caught(problems, "LeftOver is not used");

    let text = asl_text().replace("${RegisterFunctionArn}", "${RegisterFnArn}");
    assert_caught(check_substitutions(&text, &template()), "${RegisterFnArn}");

    let mut wrong_arn = template();
    *yaml_at(
        &mut wrong_arn,
        &[
            "Resources",
            "ImportStateMachine",
            "Properties",
            "DefinitionSubstitutions",
            "SplitFunctionArn",
        ],
    ) = serde_norway::from_str("!GetAtt RegisterFunction.Arn").expect("yaml");
    assert_caught(
        check_substitutions(&asl_text(), &wrong_arn),
        "SplitFunctionArn is not !GetAtt SplitFunction.Arn",
    );
}

#[test]
fn every_lambda_task_has_the_three_standard_retriers() {
    let asl = asl();
    assert_eq!(
        lambda_tasks(&asl).len(),
        6,
        "Split, Decorate, Register, DecorateExpress, RegisterExpress, Summarize"
    );
    assert_clean(check_retriers(&asl));
}

#[test]
fn retrier_check_catches_a_removed_or_weakened_retrier() {
    // Decorate's Thingpress retrier removed.
    let mut broken = asl();
    let retry = broken["States"]["ImportChunks"]["ItemProcessor"]["States"]["Decorate"]["Retry"]
        .as_array_mut()
        .expect("Retry");
    retry.remove(1);
    assert_caught(
        check_retriers(&broken),
        "ImportChunks/Decorate: no Thingpress retrier",
    );

    // A Thingpress retrier put back on the continuing Register: stalls would be counted twice.
    let mut broken = asl();
    let thingpress =
        broken["States"]["ImportChunks"]["ItemProcessor"]["States"]["Decorate"]["Retry"][1].clone();
    broken["States"]["ImportChunks"]["ItemProcessor"]["States"]["Register"]["Retry"]
        .as_array_mut()
        .expect("Retry")
        .push(thingpress);
    assert_caught(
        check_retriers(&broken),
        "ImportChunks/Register: a Thingpress retrier on the continuing task",
    );

    // Split's Lambda retrier removed.
    let mut broken = asl();
    broken["States"]["Split"]["Retry"]
        .as_array_mut()
        .expect("Retry")
        .remove(0);
    assert_caught(check_retriers(&broken), "Split: no Lambda service retrier");

    // Decorate's crash retrier removed: a crashed or timed-out function would fail the chunk.
    let mut broken = asl();
    broken["States"]["ImportChunks"]["ItemProcessor"]["States"]["Decorate"]["Retry"]
        .as_array_mut()
        .expect("Retry")
        .remove(2);
    assert_caught(
        check_retriers(&broken),
        "ImportChunks/Decorate: no function crash retrier",
    );

    // Jitter, delay cap and a retryable name dropped.
    let mut broken = asl();
    let retrier = &mut broken["States"]["Summarize"]["Retry"][1];
    retrier["JitterStrategy"] = json!("NONE");
    retrier
        .as_object_mut()
        .expect("retrier")
        .remove("MaxDelaySeconds");
    retrier["ErrorEquals"] = json!(["Thingpress.Throttled", "Thingpress.DeadlineReached"]);
    let problems = check_retriers(&broken);
    assert_caught(
        problems.clone(),
        "Summarize: the Thingpress retrier has no JitterStrategy FULL",
    );
    assert_caught(
        problems.clone(),
        "Summarize: the Thingpress retrier has MaxDelaySeconds None",
    );
    assert_caught(problems, "does not retry [\"Thingpress.Transient\"]");

    // A literal function ARN.
    let mut broken = asl();
    broken["States"]["Split"]["Parameters"]["FunctionName"] =
        json!("arn:aws:lambda:us-east-1:123456789012:function:split");
    assert_caught(check_retriers(&broken), "Split: FunctionName");

    // The invoke call's own timeout no longer retried.
    let mut broken = asl();
    broken["States"]["Summarize"]["Retry"][0]["ErrorEquals"] = json!(&LAMBDA_SERVICE_ERRORS[..4]);
    assert_caught(
        check_retriers(&broken),
        "Summarize: the Lambda service retrier does not retry [\"Lambda.ClientExecutionTimeoutException\"]",
    );

    // An EXPRESS task that retries more, or forgets the function crashes.
    let mut broken = asl();
    let retrier = &mut broken["States"]["ImportChunks"]["ItemProcessor"]["States"]["RegisterExpress"]
        ["Retry"][0];
    retrier["MaxAttempts"] = json!(3);
    retrier["ErrorEquals"] = json!(["Thingpress.Throttled", "Thingpress.Transient"]);
    let problems = check_retriers(&broken);
    assert_caught(
        problems.clone(),
        "ImportChunks/RegisterExpress: the EXPRESS retrier has MaxAttempts",
    );
    assert_caught(problems, "the EXPRESS retrier does not retry");
}

#[test]
fn a_standard_child_continues_register_through_a_choice_and_a_wait() {
    assert_clean(check_continuation_loop(&asl()));
}

#[test]
fn continuation_loop_check_catches_a_lost_loop_or_wait() {
    let mut broken = asl();
    broken["States"]["ImportChunks"]["ItemProcessor"]["States"]["RegisterPause"]["Next"] =
        json!("ChunkRegistered");
    assert_caught(
        check_continuation_loop(&broken),
        "RegisterPause: does not loop back to Register",
    );
    let mut broken = asl();
    broken["States"]["ImportChunks"]["ItemProcessor"]["States"]["RegisterPause"]["SecondsPath"] =
        json!("$.waitSeconds");
    assert_caught(
        check_continuation_loop(&broken),
        "is not a Wait on $.continuation.waitSeconds",
    );
    let mut broken = asl();
    broken["States"]["ImportChunks"]["ItemProcessor"]["States"]["RegisterDone"]["Choices"][0]["BooleanEquals"] =
        json!(false);
    assert_caught(
        check_continuation_loop(&broken),
        "RegisterDone: no rule ending the child on $.done true",
    );
    // The data-flow walk reads the Wait's path too.
    let mut broken = asl();
    broken["States"]["ImportChunks"]["ItemProcessor"]["States"]["RegisterPause"]["SecondsPath"] =
        json!("$.continuation.seconds");
    assert_caught(
        check_payloads(&broken),
        "RegisterPause: SecondsPath $.continuation.seconds is not a non-negative integer",
    );
}

/// Register's `MAX_INVOCATIONS` passes of the loop, each at its worst (every retrier of
/// Register exhausted but the last attempt succeeding), plus the rest of the child at its
/// worst (ChooseChildType, Decorate with all its retries, the end), stay under the quota.
#[test]
fn the_continuation_loop_fits_the_child_history_quota() {
    let asl = asl();
    let per_loop = loop_events(&asl);
    assert_eq!(
        per_loop,
        5 + 3 * (6 + 3) + 2 + 2,
        "Register, RegisterDone, RegisterPause"
    );
    let states = &asl["States"]["ImportChunks"]["ItemProcessor"]["States"];
    let decorate_retries: u64 = states["Decorate"]["Retry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["MaxAttempts"].as_u64())
        .sum();
    // ExecutionStarted, ChooseChildType, Decorate, RegisterDone and ChunkRegistered at the
    // end, ExecutionSucceeded.
    let rest = 1 + 2 + (5 + 3 * decorate_retries) + 2 + 2 + 1;
    let worst = u64::from(thingpress_register::MAX_INVOCATIONS) * per_loop + rest;
    assert!(
        worst < HISTORY_QUOTA,
        "{} invocations × {per_loop} events + {rest} = {worst} ≥ {HISTORY_QUOTA}",
        thingpress_register::MAX_INVOCATIONS
    );
}

#[test]
fn the_map_retries_its_item_reader_and_result_writer() {
    assert_clean(check_map_retry(&asl()));
}

#[test]
fn map_retry_check_catches_a_missing_or_jitterless_retry() {
    let mut broken = asl();
    broken["States"]["ImportChunks"]
        .as_object_mut()
        .expect("Map")
        .remove("Retry");
    let problems = check_map_retry(&broken);
    assert_caught(
        problems.clone(),
        "ImportChunks: no Map-level retry of States.ItemReaderFailed",
    );
    assert_caught(
        problems,
        "ImportChunks: no Map-level retry of States.ResultWriterFailed",
    );

    let mut broken = asl();
    broken["States"]["ImportChunks"]["Retry"][0]["JitterStrategy"] = json!("NONE");
    assert_caught(
        check_map_retry(&broken),
        "lacks backoff, a delay cap or full jitter",
    );
}

#[test]
fn every_retryable_name_in_the_code_is_retried() {
    let retryable = retryable_names();
    assert!(!retryable.is_empty());
    let asl = asl();
    for (path, task) in lambda_tasks(&asl) {
        let retried: BTreeSet<String> = task["Retry"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(error_equals)
            .collect();
        if path == CONTINUING_TASK {
            // It continues on these instead (tests below).
            assert!(
                retryable.is_disjoint(&retried),
                "{path} retries {retried:?}"
            );
            continue;
        }
        let missing: Vec<_> = retryable.difference(&retried).collect();
        assert!(missing.is_empty(), "{path} does not retry {missing:?}");
    }
}

#[test]
fn thingpress_names_in_the_asl_are_known_and_used_as_their_kind() {
    let asl = asl();
    assert_clean(check_error_names(&asl));
    // The names it matches are really there (the check is not vacuous).
    let matched: BTreeSet<String> = all_states(&asl)
        .iter()
        .flat_map(|(_, s)| {
            s["Retry"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(error_equals)
        })
        .filter(|n| n.starts_with("Thingpress."))
        .collect();
    assert_eq!(matched, retryable_names());
}

#[test]
fn error_name_check_catches_unknown_names_and_wrong_kinds() {
    let mut broken = asl();
    broken["States"]["Split"]["Retry"][1]["ErrorEquals"] = json!([
        "Thingpress.Throttled",
        "Thingpress.Transient",
        "Thingpress.Bogus",
        "Thingpress.InvalidInput"
    ]);
    broken["States"]["Summarize"]["Catch"] = json!([
        {"ErrorEquals": ["Thingpress.Throttled"], "Next": "ImportFailed"},
        {"ErrorEquals": ["Thingpress.InvalidSignature"], "Next": "ImportFailed"}
    ]);
    let problems = check_error_names(&broken);
    assert_caught(
        problems.clone(),
        "Thingpress.Bogus, which is not in ErrorName::ALL",
    );
    assert_caught(
        problems.clone(),
        "Retry names Thingpress.InvalidInput, a Terminal error",
    );
    assert_caught(
        problems.clone(),
        "Catch names Thingpress.Throttled, a Retryable error",
    );
    assert_caught(
        problems,
        "Catch names Thingpress.InvalidSignature, a Entry error",
    );
}

#[test]
fn the_run_has_the_contracted_shape() {
    assert_clean(check_shape(&asl()));
}

#[test]
fn shape_check_catches_a_caught_map_and_a_lost_catch() {
    let mut broken = asl();
    broken["States"]["ImportChunks"]["ToleratedFailurePercentage"] = json!(5);
    broken["States"]["ImportChunks"]["Catch"] =
        json!([{"ErrorEquals": ["States.ALL"], "Next": "ImportFailed"}]);
    broken["States"]["ImportChunks"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] =
        json!("EXPRESS");
    broken["States"]["Split"]
        .as_object_mut()
        .expect("Split")
        .remove("Catch");
    broken["States"]["Summarize"]["Catch"][0]["ResultPath"] = json!(null);
    let problems = check_shape(&broken);
    assert_caught(
        problems.clone(),
        "ImportChunks: has ToleratedFailurePercentage",
    );
    assert_caught(problems.clone(), "ImportChunks: has Catch");
    assert_caught(problems.clone(), "ImportChunks: not DISTRIBUTED");
    assert_caught(problems.clone(), "Split: no Catch of States.ALL");
    assert_caught(problems, "Summarize: its Catch does not keep the input");
}

#[test]
fn template_functions_match_the_packages_under_functions() {
    let packages = function_packages();
    assert_eq!(
        packages.keys().map(String::as_str).collect::<Vec<_>>(),
        ["decorate", "register", "split", "summarize"]
    );
    assert_clean(check_functions(&template(), &packages));
}

#[test]
fn function_check_catches_a_missing_or_extra_function() {
    let packages = function_packages();
    let mut broken = template();
    let resources = yaml_at(&mut broken, &["Resources"])
        .as_mapping_mut()
        .expect("Resources");
    resources.remove("DecorateFunction");
    assert_caught(
        check_functions(&broken, &packages),
        "functions/decorate is not deployed",
    );

    let mut extra = packages.clone();
    extra.insert(
        "verify".to_owned(),
        (
            "thingpress-verify".to_owned(),
            BTreeSet::from(["verify".to_owned()]),
        ),
    );
    assert_caught(
        check_functions(&template(), &extra),
        "functions/verify is not deployed",
    );

    let mut wrong = template();
    *yaml_at(
        &mut wrong,
        &[
            "Resources",
            "SplitFunction",
            "Metadata",
            "BuildProperties",
            "Binary",
        ],
    ) = "splitter".into();
    let problems = check_functions(&wrong, &packages);
    assert_caught(problems.clone(), "no package functions/splitter");
    assert_caught(problems, "functions/split is not deployed");
}

// ------------------------------------------------------------------------------------ retry

/// `$.name` paths under `value` (string values of `*.$` keys and `*Path` fields), as names.
fn input_fields(value: &Json, out: &mut BTreeSet<String>) {
    match value {
        Json::Object(map) => {
            for (key, v) in map {
                if let (true, Some(path)) =
                    (key.ends_with(".$") || key.ends_with("Path"), v.as_str())
                    && let Some(field) = path.strip_prefix("$.")
                {
                    out.insert(field.split(['.', '[']).next().unwrap_or(field).to_owned());
                }
                input_fields(v, out);
            }
        }
        Json::Array(items) => items.iter().for_each(|v| input_fields(v, out)),
        _ => {}
    }
}

/// Split's output for a started run, as the Map reads it.
fn started_sample() -> Json {
    let outputs = lambda_outputs(
        "${SplitFunctionArn}",
        &json!({"runId": SAMPLE_RUN, "input": {"manifest": {"bucket": "imports", "key": "k"}}}),
    )
    .expect("a console input fits Split's input type");
    outputs[0].clone()
}

/// `thingpress retry-failed` starts the machine with `{"retry": {…}}`: the first state sends it
/// to a Pass state that builds every field the Map reads from its input (as Split's output
/// does), straight into the Map, so Split neither runs nor claims the object again.
fn check_retry_path(asl: &Json, split_output: &Json) -> Vec<String> {
    let mut problems = Vec::new();
    let states = &asl["States"];
    let start = asl["StartAt"].as_str().unwrap_or_default();
    let choice = &states[start];
    let retry_rule = choice["Choices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["Variable"] == "$.retry" && c["IsPresent"] == true);
    if choice["Type"] != "Choice" || choice["Default"] != "Split" {
        problems.push(format!(
            "StartAt {start}: not a Choice whose Default is Split"
        ));
    }
    let Some(rule) = retry_rule else {
        problems.push(format!("StartAt {start}: no rule on $.retry IsPresent"));
        return problems;
    };
    let prepare_name = rule["Next"].as_str().unwrap_or_default();
    let prepare = &states[prepare_name];
    if prepare["Type"] != "Pass" {
        problems.push(format!(
            "{prepare_name}: the retry rule's target is not a Pass state"
        ));
    }
    let Some(map_name) = prepare["Next"].as_str() else {
        problems.push(format!("{prepare_name}: no Next"));
        return problems;
    };
    if states[map_name]["Type"] != "Map" {
        problems.push(format!("{prepare_name}: goes to {map_name}, not the Map"));
    }
    let mut read = BTreeSet::new();
    let map = &states[map_name];
    for part in ["ItemReader", "ItemSelector"] {
        input_fields(&map[part], &mut read);
    }
    for field in ["MaxConcurrencyPath", "ToleratedFailurePercentagePath"] {
        if let Some(path) = map[field].as_str() {
            input_fields(&json!({ field: path }), &mut read);
        }
    }
    let built: BTreeSet<String> = prepare["Parameters"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.trim_end_matches(".$").to_owned())
        .collect();
    for field in &read {
        if !built.contains(field) {
            problems.push(format!(
                "{prepare_name}: does not build {field}, which {map_name} reads"
            ));
        }
        if split_output.get(field).is_none() {
            problems.push(format!(
                "Split's output has no {field}, which {map_name} reads"
            ));
        }
    }
    if prepare["Parameters"]["runId.$"] != "$.retry.runId" {
        problems.push(format!(
            "{prepare_name}: runId is not the original run's ($.retry.runId)"
        ));
    }
    problems
}

#[test]
fn a_retry_skips_split_and_feeds_the_map_what_split_would() {
    assert_clean(check_retry_path(&asl(), &started_sample()));
}

#[test]
fn retry_check_catches_a_missing_field_and_a_lost_route() {
    let split = started_sample();
    let mut broken = asl();
    broken["States"]["PrepareRetry"]["Parameters"]
        .as_object_mut()
        .expect("Parameters")
        .remove("chunksKey.$");
    assert_caught(
        check_retry_path(&broken, &split),
        "PrepareRetry: does not build chunksKey",
    );
    assert_caught(
        check_retry_path(&asl(), &json!({})),
        "Split's output has no maxConcurrency",
    );
    let mut broken = asl();
    broken["StartAt"] = json!("Split");
    assert_caught(
        check_retry_path(&broken, &split),
        "StartAt Split: not a Choice",
    );
    let mut broken = asl();
    broken["States"]["IsRetry"]["Choices"] = json!([]);
    assert_caught(check_retry_path(&broken, &split), "no rule on $.retry");
}
