//! End-to-end benchmark on a running, deployed local stack (`script/bench --e2e` starts one):
//! imports N generated certificates through the state machine and measures, from the edge's
//! counters, the run report, the chunks' stats and the parent's history, the achieved rate of the
//! bottleneck API against its quota, API calls per certificate, Lambda invocations and state
//! transitions per 1,000 certificates, and the wall-clock; then projects the cost and the time
//! of 1,000,000 certificates (tests/cost.rs).
//!
//!   bench_e2e [--certificates 10000] [--out target/bench-e2e.json] [--chunk-size 500]
//!             [--max-concurrency C] [--data-dir target/bench-data]
//!
//! The stack is `$THINGPRESS_LOCAL_DIR` (default `.local`); it should be fresh, because the
//! certificates are cached between runs (target/bench-data/e2e/<N>.pem) and a stack that holds
//! them already would report them as already registered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use serde_json::{Value, json};
use thingpress_importer::Api;
use thingpress_run::records::{ChunkDescriptor, ChunkStats};
use thingpress_run::report::{Report, RunStatus};
use thingpress_tests::cost::{self, Deployment, Measured, PRICES};

use support::*;

struct Args {
    certificates: usize,
    out: PathBuf,
    chunk_size: u32,
    max_concurrency: Option<u32>,
    data_dir: PathBuf,
    reproject: Option<PathBuf>,
}

fn args() -> Result<Args, String> {
    let root = workspace_root();
    let mut a = Args {
        certificates: 10_000,
        out: root.join("target/bench-e2e.json"),
        chunk_size: 500,
        max_concurrency: None,
        data_dir: root.join("target/bench-data"),
        reproject: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| -> Result<u64, String> {
            v.replace(['_', ','], "")
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{flag}: {v:?} is not a positive whole number"))
        };
        match flag.as_str() {
            "--certificates" => a.certificates = number(value()?)? as usize,
            "--out" => a.out = PathBuf::from(value()?),
            "--chunk-size" => {
                a.chunk_size = u32::try_from(number(value()?)?).map_err(|e| e.to_string())?
            }
            "--max-concurrency" => {
                a.max_concurrency =
                    Some(u32::try_from(number(value()?)?).map_err(|e| e.to_string())?)
            }
            "--data-dir" => a.data_dir = PathBuf::from(value()?),
            "--reproject" => a.reproject = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(a)
}

/// The manifest: N self-signed certificates, generated once and cached.
fn manifest(a: &Args) -> Result<Vec<u8>, String> {
    let dir = a.data_dir.join("e2e");
    let path = dir.join(format!("{}.pem", a.certificates));
    if let Ok(bytes) = std::fs::read(&path)
        && !bytes.is_empty()
    {
        return Ok(bytes);
    }
    let started = Instant::now();
    let bundle = fresh_certificates("tp-bench", a.certificates)
        .concat()
        .into_bytes();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(&path, &bundle).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!(
        "generated {} certificates in {:.1}s: {}",
        a.certificates,
        started.elapsed().as_secs_f64(),
        path.display()
    );
    Ok(bundle)
}

fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn op<'a>(stats: &'a Value, name: &str) -> &'a Value {
    &stats["operations"][name]
}

fn count(stats: &Value, name: &str, field: &str) -> u64 {
    op(stats, name)[field].as_u64().unwrap_or(0)
}

/// (passed − 1) ÷ (last − first passed): the sustained rate of one operation.
fn passed_rate(stats: &Value, name: &str) -> f64 {
    let o = op(stats, name);
    let passed = o["passed"].as_f64().unwrap_or(0.0);
    match (o["firstPassed"].as_f64(), o["lastPassed"].as_f64()) {
        (Some(first), Some(last)) if last > first && passed > 1.0 => {
            (passed - 1.0) / (last - first)
        }
        _ => 0.0,
    }
}

/// Polls the execution until it ends, printing progress from the edge.
async fn wait(stack: &Stack, arn: &str) -> (ExecutionStatus, Option<String>, Option<String>) {
    let started = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let out = stack
            .sfn
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
            .unwrap();
        if out.status != ExecutionStatus::Running {
            return (out.status, out.error, out.cause);
        }
        if last_print.elapsed() > Duration::from_secs(30) {
            let stats = edge(&stack.state, "GET", "/_edge/stats", None);
            eprintln!(
                "  {:>5.0}s: {} certificates registered ({:.1}/s), load {}",
                started.elapsed().as_secs_f64(),
                count(&stats, "RegisterCertificateWithoutCA", "passed"),
                passed_rate(&stats, "RegisterCertificateWithoutCA"),
                load_average()
            );
            last_print = Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(6 * 3600),
            "still running after 6 hours"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The parent's history: state transitions (states entered + task retries) and each task's
/// seconds (TaskStarted → TaskSucceeded/Failed, by state name).
async fn history(stack: &Stack, arn: &str) -> (u64, BTreeMap<String, f64>, Vec<String>, Value) {
    let mut events = Vec::new();
    let mut token = None;
    loop {
        let out = stack
            .sfn
            .get_execution_history()
            .execution_arn(arn)
            .max_results(1000)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        events.extend(out.events().iter().cloned());
        match out.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    let mut entered: u64 = 0;
    let mut scheduled: u64 = 0;
    let mut task_states: u64 = 0;
    let mut state = String::new();
    let mut started_at = 0.0;
    let mut seconds: BTreeMap<String, f64> = BTreeMap::new();
    let mut kinds = Vec::new();
    let mut split_output = Value::Null;
    for e in &events {
        if let Some(d) = e.state_exited_event_details()
            && d.name() == "Split"
        {
            split_output = d
                .output()
                .and_then(|o| serde_json::from_str(o).ok())
                .unwrap_or(Value::Null);
        }
        let t = e.timestamp().as_secs_f64();
        kinds.push(e.r#type().as_str().to_owned());
        if let Some(d) = e.state_entered_event_details() {
            entered += 1;
            state = d.name().to_owned();
            if *e.r#type() == HistoryEventType::TaskStateEntered {
                task_states += 1;
            }
        }
        match e.r#type() {
            HistoryEventType::TaskScheduled => scheduled += 1,
            HistoryEventType::TaskStarted => started_at = t,
            HistoryEventType::TaskSucceeded
            | HistoryEventType::TaskFailed
            | HistoryEventType::TaskTimedOut => {
                *seconds.entry(state.clone()).or_default() += t - started_at;
            }
            _ => {}
        }
    }
    // Every state entered is a transition, and so is every retry of a task.
    let transitions = entered + scheduled.saturating_sub(task_states);
    (transitions, seconds, kinds, split_output)
}

/// A function's warm duration, invoked directly through the edge three times (median). Used
/// for Decorate (re-decorating a chunk rewrites the same object) and Summarize (rewrites the
/// same report) after the run: in the run, a function instance's first invocation includes
/// `cargo run` starting it, which waits for any build holding the workspace's cargo lock.
fn warm_seconds(stack: &Stack, binary: &str, payload: &Value, check: &str) -> f64 {
    // Invoked by its deployed name (the template names functions after the stack).
    let function = stack.state["functions"]
        .as_object()
        .and_then(|fs| fs.values().find(|f| f["binary"] == binary))
        .and_then(|f| f["name"].as_str())
        .unwrap_or_else(|| panic!("no deployed function runs {binary}"));
    let mut times: Vec<f64> = (0..3)
        .map(|_| {
            let started = Instant::now();
            let out = edge(
                &stack.state,
                "POST",
                &format!("/2015-03-31/functions/{function}/invocations"),
                Some(payload.clone()),
            );
            assert!(!out[check].is_null(), "{function}: {out}");
            started.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times.get(1).copied().unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_e2e: {e}");
            std::process::exit(2);
        }
    };
    let result = match a.reproject.clone() {
        Some(path) => reproject(&path),
        None => run(a).await,
    };
    if let Err(e) = result {
        eprintln!("bench_e2e: {e}");
        std::process::exit(1);
    }
}

async fn run(a: Args) -> Result<(), String> {
    let stack = Stack::new().await;
    let bundle = manifest(&a)?;
    let ids = manifest_ids(&bundle, &pem_options());
    if ids.len() != a.certificates {
        return Err(format!(
            "the cached manifest holds {} certificates, not {}",
            ids.len(),
            a.certificates
        ));
    }
    let before = stack.certificate_ids().await;
    let tag = unique("bench");
    let mut profile = stack.resources(&tag, 1, 1).await;
    profile["chunkSize"] = json!(a.chunk_size);
    if let Some(c) = a.max_concurrency {
        profile["maxConcurrency"] = json!(c);
    }
    // Where `thingpress import --start` puts a manifest: Split's role may read nothing else.
    let key = format!("runs/{tag}/manifest/{tag}.pem");
    stack.put(&key, bundle).await;

    let (Bottleneck { quota, usable }, max_concurrency) = pacing(&stack, &a);

    edge(
        &stack.state,
        "POST",
        "/_edge/reset",
        Some(json!({"stats": true, "faults": true, "quotas": false})),
    );
    let load_before = load_average();
    eprintln!(
        "importing {} certificates (RegisterCertificateWithoutCA quota {quota}/s × usable {usable}, {max_concurrency} children, chunks of {}), load {load_before}",
        a.certificates, a.chunk_size
    );
    let started = Instant::now();
    let started_epoch = epoch_seconds();
    stack.start(&tag, &key, profile.clone(), false).await;
    let arn = format!(
        "{}:{tag}",
        stack.machine.replace(":stateMachine:", ":execution:")
    );
    let (status, error, cause) = wait(&stack, &arn).await;
    let wall = started.elapsed().as_secs_f64();
    let stats = edge(&stack.state, "GET", "/_edge/stats", None);
    let load_after = load_average();
    if status != ExecutionStatus::Succeeded {
        // Keep what the edge saw: a failed run still shows the rates and where it broke.
        let bottleneck = Bottleneck { quota, usable };
        let partial = failed_run_json(
            &a,
            &stack,
            &tag,
            &stats,
            bottleneck,
            (status.as_str(), &error, &cause),
            wall,
            (&load_before, &load_after),
        );
        write_json(&a.out, &partial)?;
        return Err(format!(
            "{tag}: {status:?} {error:?} {cause:?} (edge counters in {})",
            a.out.display()
        ));
    }
    finish(Finished {
        a: &a,
        stack: &stack,
        tag: &tag,
        arn: &arn,
        ids: &ids,
        before: &before,
        stats: &stats,
        wall,
        started_epoch,
        loads: (&load_before, &load_after),
        bottleneck: Bottleneck { quota, usable },
        max_concurrency,
    })
    .await
}

/// The bottleneck API's quota at the edge and the share of it Register paces at (1 − QUOTA_RESERVE) (the
/// stack's function environment), and the children a run gets.
fn pacing(stack: &Stack, a: &Args) -> (Bottleneck, f64) {
    let env = &stack.state["functionEnv"];
    let number = |name: &str| -> f64 {
        env[name]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    // The share Register may use: what the reserve leaves.
    let usable = 1.0 - number("QUOTA_RESERVE");
    let quota = stack.state["quotas"]["RegisterCertificateWithoutCA"]
        .as_f64()
        .unwrap_or(0.0);
    let max_concurrency = a
        .max_concurrency
        .map(f64::from)
        .unwrap_or_else(|| number("DEFAULT_MAX_CONCURRENCY"));
    (Bottleneck { quota, usable }, max_concurrency)
}

/// A run that succeeded, with what was measured while it ran.
struct Finished<'a> {
    a: &'a Args,
    stack: &'a Stack,
    tag: &'a str,
    arn: &'a str,
    ids: &'a [(String, String)],
    before: &'a BTreeSet<String>,
    stats: &'a Value,
    wall: f64,
    started_epoch: f64,
    loads: (&'a str, &'a str),
    bottleneck: Bottleneck,
    max_concurrency: f64,
}

/// Reads the run's report, chunks and history, checks every entry is accounted for, measures
/// and projects the run, and writes and prints the results. Its length is the one result
/// document, written field by field next to what each field measures.
async fn finish(f: Finished<'_>) -> Result<(), String> {
    let Finished {
        a,
        stack,
        tag,
        arn,
        ids,
        before,
        stats,
        wall,
        started_epoch,
        loads: (load_before, load_after),
        bottleneck: Bottleneck { quota, usable },
        max_concurrency,
    } = f;
    let report: Report = serde_json::from_slice(
        &stack
            .get(&format!("runs/{tag}/report.json"))
            .await
            .ok_or(format!("{tag} has no report"))?,
    )
    .map_err(|e| format!("report: {e}"))?;
    if report.status != RunStatus::Complete {
        return Err(format!("{tag}: report {:?}", report.problems));
    }
    let (index, register_seconds, attempts) = chunk_stats(stack, tag).await?;
    let (parent_transitions, task_seconds, kinds, split_output) = history(stack, arn).await;

    // Every entry accounted for, none twice.
    let certificates = report.outcomes.registered + report.outcomes.already_registered;
    let after = stack.certificate_ids().await;
    let things = stack.things_of(tag).await.len();
    let new_certificates = after.len() - before.len();
    let accounted = accounted_for(&report, a.certificates, ids, before, &after, things);

    let decorate = index
        .first()
        .map(|c| {
            let payload = json!({"runId": tag, "bucket": stack.bucket, "chunk": c});
            warm_seconds(stack, "decorate", &payload, "decoratedKey")
        })
        .unwrap_or(0.0);
    let summarize = warm_seconds(stack, "summarize", &split_output, "reportKey");

    let n = a.certificates as f64;
    let per_1000 = |x: f64| x * 1000.0 / n;
    let achieved = passed_rate(stats, "RegisterCertificateWithoutCA");
    let paced = quota * usable;
    let api = api_json(stats, &report, n);
    let invocations = invocations(stats);
    let total_invocations: u64 = invocations.values().sum();
    let chunks = index.len() as u64;
    let retries = (invocations["decorate"] + invocations["register"]).saturating_sub(2 * chunks);
    let child_transitions = 3 * chunks + retries;
    let (s3, s3_get, s3_put) = s3_counts(stats);
    // The manifest upload before the reset is not counted; the report read after the snapshot
    // neither: these are the functions' requests.
    let measured = Measured {
        entries: report.entries,
        chunks,
        chunk_size: u64::from(a.chunk_size),
        invocations: invocations.clone(),
        split_seconds: task_seconds.get("Split").copied().unwrap_or(0.0),
        decorate_seconds_per_chunk: decorate,
        summarize_seconds: summarize,
        achieved_fraction_of_paced: if paced > 0.0 { achieved / paced } else { 0.0 },
        parent_transitions,
        s3_get,
        s3_put,
        policies: 1,
        groups: 1,
    };
    let projections = projections(&measured)?;

    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let result = json!({
        "date": chrono_date(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "loadBefore": load_before,
        "loadAfter": load_after,
        "runId": tag,
        "certificates": a.certificates,
        "chunkSize": a.chunk_size,
        "chunks": chunks,
        "maxConcurrency": max_concurrency,
        "quotaScale": stack.state["quotaScale"],
        "quotas": stack.state["quotas"],
        "usableShare": usable,
        "wallClockSeconds": wall,
        "reportSeconds": report.duration_seconds,
        "certificatesPerSecond": certificates as f64 / wall,
        "startedAt": started_epoch,
        "bottleneck": bottleneck_json(stats, Bottleneck { quota, usable }, achieved, measured.achieved_fraction_of_paced),
        "outcomes": report.outcomes,
        "accountedFor": accounted,
        "newCertificatesInIot": new_certificates,
        "thingsInIot": things,
        "throttledAfterSdkRetry": report.throttled,
        "chunkRetries": report.chunk_retries,
        "registerAttempts": attempts,
        "api": api,
        "lambda": {
            "invocations": invocations,
            "invocationsPer1000": per_1000(total_invocations as f64),
            "splitSeconds": measured.split_seconds,
            "summarizeSeconds": measured.summarize_seconds,
            "summarizeSecondsInRun": task_seconds.get("Summarize").copied().unwrap_or(0.0),
            "splitNote": "Split's seconds are its task time in the parent's history, including the function instance's start",
            "decorateSecondsPerChunk": decorate,
            "registerSecondsPerChunk": mean(&register_seconds),
            "registerSecondsTotal": register_seconds.iter().sum::<f64>(),
        },
        "stateTransitions": {
            "parentCounted": parent_transitions,
            "parentEvents": kinds.len(),
            "childrenFormula": child_transitions,
            "formula": "per STANDARD child: its start (billed to the Map) + Decorate + Register, plus one per retry (Lambda invocations beyond one per chunk and task); moto cannot list a map run's children (ListExecutions with mapRunArn: HTTP 500), so their histories are not read",
            "per1000": per_1000((parent_transitions + child_transitions) as f64),
        },
        "s3": {"byMethod": s3, "getClass": s3_get, "putClass": s3_put,
                "per1000": per_1000((s3_get + s3_put) as f64)},
        "prices": PRICES,
        "measured": measured,
        "projections": projections,
    });
    write_json(&a.out, &result)?;
    print_table(&result, &projections);
    println!("results: {}", a.out.display());
    if !accounted {
        return Err(format!(
            "entries not accounted for: report {:?}, {new_certificates} new certificates, {things} things",
            report.outcomes
        ));
    }
    Ok(())
}

/// The bottleneck API's quota, paced and achieved rates, and what limited the run.
fn bottleneck_json(stats: &Value, b: Bottleneck, achieved: f64, fraction_of_paced: f64) -> Value {
    let Bottleneck { quota, usable } = b;
    let paced = quota * usable;
    let iot_passed: u64 = Api::ALL
        .iter()
        .map(|o| count(stats, o.as_str(), "passed"))
        .sum();
    let register_span = {
        let o = op(stats, "RegisterCertificateWithoutCA");
        o["lastPassed"].as_f64().unwrap_or(0.0) - o["firstPassed"].as_f64().unwrap_or(0.0)
    };
    let iot_per_second = if register_span > 0.0 {
        iot_passed as f64 / register_span
    } else {
        0.0
    };
    // moto answers a few hundred IoT calls/s on this machine (324/s at ×20 on 2026-12-01): well
    // below the paced rate with that many calls, the local stack limited the run.
    let limited_by = if pacing_bound(fraction_of_paced) {
        "quota pacing (the edge's quotas less the reserve)"
    } else if iot_per_second >= 80.0 {
        "the local stack (moto's IoT throughput)"
    } else {
        "neither quota nor moto: chunk scheduling, Lambda start-up or machine load"
    };
    json!({
        "api": "RegisterCertificateWithoutCA",
        "quotaPerSecond": quota,
        "pacedPerSecond": paced,
        "achievedPerSecond": achieved,
        "fractionOfQuota": if quota > 0.0 { achieved / quota } else { 0.0 },
        "fractionOfPaced": fraction_of_paced,
        "iotCallsPerSecond": iot_per_second,
        "limitedBy": limited_by,
    })
}

/// Lambda invocations per function, as the edge counted them.
fn invocations(stats: &Value) -> BTreeMap<String, u64> {
    cost::FUNCTIONS
        .iter()
        .map(|f| {
            (
                (*f).to_owned(),
                count(stats, &format!("Lambda.Invoke:{f}"), "calls"),
            )
        })
        .collect()
}

/// Whether every manifest entry is in the report once, and IoT holds every certificate and
/// thing. Certificates IoT held before the run (a re-used stack) come back as already
/// registered, and so do those a retried chunk registered before its earlier attempt stopped.
fn accounted_for(
    report: &Report,
    expected: usize,
    ids: &[(String, String)],
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
    things: usize,
) -> bool {
    let certificates = report.outcomes.registered + report.outcomes.already_registered;
    let new_certificates = after.len() - before.len();
    let old = ids.iter().filter(|(c, _)| before.contains(c)).count() as u64;
    report.outcomes.total() == report.entries
        && report.entries == expected as u64
        && certificates == expected as u64
        && report.outcomes.already_registered >= old
        && new_certificates as u64 == expected as u64 - old
        && things == expected
        && ids.iter().all(|(c, _)| after.contains(c))
}

/// AWS's default quota of the bottleneck API and the share the stack's reserve leaves.
#[derive(Clone, Copy)]
struct Bottleneck {
    quota: f64,
    usable: f64,
}

/// What a run that did not succeed leaves: its status and the edge's counters.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site; each argument is one measurement"
)]
fn failed_run_json(
    a: &Args,
    stack: &Stack,
    tag: &str,
    stats: &Value,
    bottleneck: Bottleneck,
    (status, error, cause): (&str, &Option<String>, &Option<String>),
    wall: f64,
    (load_before, load_after): (&str, &str),
) -> Value {
    let Bottleneck { quota, usable } = bottleneck;
    let achieved = passed_rate(stats, "RegisterCertificateWithoutCA");
    json!({
        "date": chrono_date(),
        "runId": tag,
        "status": status,
        "error": error,
        "cause": cause,
        "certificates": a.certificates,
        "quotaScale": stack.state["quotaScale"],
        "wallClockSeconds": wall,
        "loadBefore": load_before,
        "loadAfter": load_after,
        "bottleneck": {
            "quotaPerSecond": quota,
            "pacedPerSecond": quota * usable,
            "achievedPerSecond": achieved,
            "fractionOfQuota": if quota > 0.0 { achieved / quota } else { 0.0 },
        },
        "edge": stats["operations"],
    })
}

/// The run's chunks, each chunk's Register seconds (first start to last finish) and the
/// Register attempts of all chunks.
async fn chunk_stats(
    stack: &Stack,
    tag: &str,
) -> Result<(Vec<ChunkDescriptor>, Vec<f64>, u64), String> {
    let index: Vec<ChunkDescriptor> = serde_json::from_slice(
        &stack
            .get(&format!("runs/{tag}/chunks.json"))
            .await
            .ok_or("no chunks.json")?,
    )
    .map_err(|e| format!("chunks.json: {e}"))?;
    let mut register_seconds = Vec::new();
    let mut attempts = 0u64;
    for c in &index {
        let body = stack
            .get(&format!("runs/{tag}/stats/{:05}.json", c.chunk))
            .await
            .ok_or(format!("chunk {} has no stats", c.chunk))?;
        let s: ChunkStats = serde_json::from_slice(&body).map_err(|e| format!("stats: {e}"))?;
        register_seconds.push(s.finished_at_ms.saturating_sub(s.started_at_ms) as f64 / 1000.0);
        attempts += u64::from(s.attempts);
    }
    Ok((index, register_seconds, attempts))
}

/// Per IoT API of the catalogue that the run called: the edge's and Thingpress's counts.
fn api_json(stats: &Value, report: &Report, n: f64) -> BTreeMap<String, Value> {
    let mut api: BTreeMap<String, Value> = BTreeMap::new();
    for o in Api::ALL.map(Api::as_str) {
        let calls = count(stats, o, "calls");
        if calls == 0 {
            continue;
        }
        api.insert(
            o.to_owned(),
            json!({
                "edgeCalls": calls,
                "passed": count(stats, o, "passed"),
                "throttledQuota": count(stats, o, "throttledQuota"),
                "thingpressCalls": report.api_calls.get(o).copied().unwrap_or(0),
                "callsPerCertificate": calls as f64 / n,
                "passedPerCertificate": count(stats, o, "passed") as f64 / n,
                "passedPerSecond": passed_rate(stats, o),
            }),
        );
    }
    api
}

/// S3 calls by method, and the GET-class and PUT-class totals.
fn s3_counts(stats: &Value) -> (BTreeMap<String, u64>, u64, u64) {
    let (mut s3_get, mut s3_put) = (0, 0);
    let mut s3: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(ops) = stats["operations"].as_object() {
        for (name, o) in ops {
            if let Some(method) = name.strip_prefix("s3:") {
                let calls = o["calls"].as_u64().unwrap_or(0);
                s3.insert(method.to_owned(), calls);
                if matches!(method, "GET" | "HEAD") {
                    s3_get += calls;
                } else {
                    s3_put += calls;
                }
            }
        }
    }
    (s3, s3_get, s3_put)
}

fn write_json(path: &std::path::Path, value: &Value) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether a run held the paced rate, so that pacing limited it. Only such a run says anything
/// about AWS: one the local stack held back would project moto's speed onto AWS.
fn pacing_bound(fraction_of_paced: f64) -> bool {
    fraction_of_paced >= 0.85
}

/// The 1,000,000-certificate projections of a pacing-bound run onto the template's defaults
/// (reserve 0.1, children sized from the quotas) at AWS's default quotas and at ×10, and onto the
/// deployment before issue 12 (MaxConcurrency 10, reserve 0.2) with STANDARD and EXPRESS children.
/// None for a run that was not pacing-bound.
fn projections(measured: &Measured) -> Result<Vec<cost::Projection>, String> {
    if !pacing_bound(measured.achieved_fraction_of_paced) {
        return Ok(Vec::new());
    }
    let template: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(workspace_root().join("infra/template.yaml"))
            .map_err(|e| format!("infra/template.yaml: {e}"))?,
    )
    .map_err(|e| format!("infra/template.yaml: {e}"))?;
    let memory = cost::memory_from_template(&template)?;
    let capacity = thingpress_run::settings::DEFAULT_CHILD_CAPACITY;
    [
        cost::budget_deployment("AWS default quotas, the template's defaults", 1.0, capacity),
        cost::budget_deployment("quotas raised ×10, the template's defaults", 10.0, capacity),
        cost::static_deployment("before issue 12, STANDARD children", 1.0, false),
        cost::static_deployment("before issue 12, EXPRESS children", 1.0, true),
    ]
    .into_iter()
    .map(|d| {
        let d = Deployment {
            memory_mb: memory.clone(),
            ..d
        };
        cost::project(measured, &d, &PRICES)
    })
    .collect()
}

/// Recomputes the projections of a saved run (after a change of the cost model or the prices)
/// and writes them back into its JSON.
fn reproject(path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut saved: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let measured: Measured = serde_json::from_value(saved["measured"].clone())
        .map_err(|e| format!("{}: measured: {e}", path.display()))?;
    let projections = projections(&measured)?;
    saved["projections"] = json!(projections);
    saved["prices"] = json!(PRICES);
    write_json(path, &saved)?;
    print_table(&saved, &projections);
    Ok(())
}

/// Today's date (UTC) without a date crate.
fn chrono_date() -> String {
    let days = (epoch_seconds() / 86_400.0).floor() as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The results for people: the bottleneck, the calls per API, the Lambda and Step Functions
/// counts, and each projection. One `println!` per line of the table, hence its length.
fn print_table(r: &Value, projections: &[cost::Projection]) {
    let b = &r["bottleneck"];
    println!(
        "e2e: {} certificates, {} chunks of {}, {} children, quota scale {}, load {} → {}",
        r["certificates"],
        r["chunks"],
        r["chunkSize"],
        r["maxConcurrency"],
        r["quotaScale"],
        r["loadBefore"].as_str().unwrap_or(""),
        r["loadAfter"].as_str().unwrap_or("")
    );
    println!(
        "wall-clock {:.1}s ({:.1} certificates/s); every entry accounted for: {}",
        r["wallClockSeconds"].as_f64().unwrap_or(0.0),
        r["certificatesPerSecond"].as_f64().unwrap_or(0.0),
        r["accountedFor"]
    );
    println!(
        "RegisterCertificateWithoutCA: {:.1}/s achieved of {:.0}/s quota ({:.0} %; paced target {:.0}/s, {:.0} % of it); IoT calls {:.1}/s; limited by {}",
        b["achievedPerSecond"].as_f64().unwrap_or(0.0),
        b["quotaPerSecond"].as_f64().unwrap_or(0.0),
        100.0 * b["fractionOfQuota"].as_f64().unwrap_or(0.0),
        b["pacedPerSecond"].as_f64().unwrap_or(0.0),
        100.0 * b["fractionOfPaced"].as_f64().unwrap_or(0.0),
        b["iotCallsPerSecond"].as_f64().unwrap_or(0.0),
        b["limitedBy"].as_str().unwrap_or("")
    );
    println!(
        "{:<30} {:>10} {:>10} {:>10} {:>12}",
        "IoT API", "calls", "throttled", "per cert", "passed/s"
    );
    if let Some(api) = r["api"].as_object() {
        for (name, a) in api {
            println!(
                "{:<30} {:>10} {:>10} {:>10.3} {:>12.1}",
                name,
                a["edgeCalls"].as_u64().unwrap_or(0),
                a["throttledQuota"].as_u64().unwrap_or(0),
                a["callsPerCertificate"].as_f64().unwrap_or(0.0),
                a["passedPerSecond"].as_f64().unwrap_or(0.0)
            );
        }
    }
    let l = &r["lambda"];
    println!(
        "Lambda invocations {} = {:.2} per 1,000 certificates; Split {:.1}s, Decorate {:.2}s/chunk, Register {:.1}s/chunk, Summarize {:.1}s",
        l["invocations"],
        l["invocationsPer1000"].as_f64().unwrap_or(0.0),
        l["splitSeconds"].as_f64().unwrap_or(0.0),
        l["decorateSecondsPerChunk"].as_f64().unwrap_or(0.0),
        l["registerSecondsPerChunk"].as_f64().unwrap_or(0.0),
        l["summarizeSeconds"].as_f64().unwrap_or(0.0)
    );
    let t = &r["stateTransitions"];
    println!(
        "state transitions: parent {} (history) + children {} (formula) = {:.2} per 1,000 certificates; S3 requests {:.2} per 1,000",
        t["parentCounted"],
        t["childrenFormula"],
        t["per1000"].as_f64().unwrap_or(0.0),
        r["s3"]["per1000"].as_f64().unwrap_or(0.0)
    );
    if projections.is_empty() {
        println!(
            "\n1,000,000 certificates: not projected; this run was limited by {}, not by pacing, so its speed says nothing about AWS (project from a pacing-bound run, e.g. --quota-scale 1.5)",
            b["limitedBy"].as_str().unwrap_or("something else")
        );
        return;
    }
    println!(
        "\n1,000,000 certificates (prices {} {}, at the measured fraction of the paced rate):",
        PRICES.region, PRICES.date
    );
    println!(
        "{:<42} {:>7} {:>8} {:>10} {:>10}",
        "deployment", "chunk", "certs/s", "hours", "USD"
    );
    for p in projections {
        println!(
            "{:<42} {:>7} {:>8.2} {:>10.1} {:>10.2}",
            p.deployment.label,
            p.chunk_size,
            p.expected_per_second,
            p.wall_clock_seconds / 3600.0,
            p.total_usd
        );
        for i in &p.items {
            println!(
                "    {:<60} {:>14.1} {:<11} {:>8.3}",
                i.what, i.quantity, i.unit, i.usd
            );
        }
    }
}
