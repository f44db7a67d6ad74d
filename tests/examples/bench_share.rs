//! How imports share the account's quota, on a running, deployed local stack (`script/bench
//! --share` starts one): starts K imports of N/K fresh certificates each at the same moment,
//! optionally with a competing caller the edge simulates, and measures from the edge's counters
//! what they held of RegisterCertificateWithoutCA together, the share of throttled IoT calls, how
//! far apart the runs finished, and that every entry of every run is accounted for once.
//!
//!   bench_share [--imports 2] [--certificates 10000] [--competitor OP=SHARE]
//!               [--chunk-size C] [--max-concurrency M] [--out target/bench-share.json]
//!
//! The target (issue 12): together ≥ 95 % of quota × (1 − reserve), or ≥ 90 % of what the
//! competitor leaves; throttled calls ≤ 1 % (≤ 2 % with a competitor); runs within 10 %.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{Value, json};
use thingpress_importer::Api;

use support::*;

/// The API every new certificate calls once: the one whose rate is the import's rate.
const BOTTLENECK: &str = "RegisterCertificateWithoutCA";

struct Args {
    imports: usize,
    certificates: usize,
    competitor: Option<(String, f64)>,
    chunk_size: Option<u32>,
    max_concurrency: Option<u32>,
    out: PathBuf,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        imports: 2,
        certificates: 10_000,
        competitor: None,
        chunk_size: None,
        max_concurrency: None,
        out: workspace_root().join("target/bench-share.json"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || -> Result<u64, String> {
            value
                .replace(['_', ','], "")
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{flag}: {value:?} is not a positive whole number"))
        };
        match flag.as_str() {
            "--imports" => a.imports = number()? as usize,
            "--certificates" => a.certificates = number()? as usize,
            "--chunk-size" => a.chunk_size = Some(number()? as u32),
            "--max-concurrency" => a.max_concurrency = Some(number()? as u32),
            "--out" => a.out = PathBuf::from(&value),
            "--competitor" => {
                let (op, share) = value
                    .split_once('=')
                    .ok_or(format!("--competitor: expected OP=SHARE, got {value:?}"))?;
                let share: f64 = share
                    .parse()
                    .ok()
                    .filter(|s| *s > 0.0 && *s < 1.0)
                    .ok_or(format!("--competitor: {share:?} is not a share in (0, 1)"))?;
                a.competitor = Some((op.to_owned(), share));
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if a.certificates < a.imports {
        return Err("--certificates must be at least --imports".into());
    }
    Ok(a)
}

/// One of the concurrent imports.
struct Import {
    tag: String,
    ids: Vec<(String, String)>,
    seconds: Option<f64>,
    status: Option<ExecutionStatus>,
}

#[tokio::main]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_share: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(a).await {
        eprintln!("bench_share: {e}");
        std::process::exit(1);
    }
}

async fn run(a: Args) -> Result<(), String> {
    let stack = Stack::new().await;
    let before = stack.certificate_ids().await;
    let mut imports = Vec::new();
    let mut profiles = Vec::new();
    for i in 0..a.imports {
        let tag = unique(&format!("share{i}"));
        let n = a.certificates / a.imports + usize::from(i < a.certificates % a.imports);
        let started = Instant::now();
        let (key, ids) = fresh_manifest(&stack, &tag, n).await;
        eprintln!(
            "{tag}: {n} fresh certificates in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let mut profile = stack.resources(&tag, 1, 1).await;
        if let Some(c) = a.chunk_size {
            profile["chunkSize"] = json!(c);
        }
        if let Some(m) = a.max_concurrency {
            profile["maxConcurrency"] = json!(m);
        }
        profiles.push((key, profile));
        imports.push(Import {
            tag,
            ids,
            seconds: None,
            status: None,
        });
    }

    edge(
        &stack.state,
        "POST",
        "/_edge/reset",
        Some(json!({"stats": true, "faults": true, "quotas": false, "competitors": true})),
    );
    if let Some((op, share)) = &a.competitor {
        edge(
            &stack.state,
            "POST",
            "/_edge/competitors",
            Some(json!({ op.as_str(): share })),
        );
    }
    let load_before = load_average();
    let started = Instant::now();
    for (import, (key, profile)) in imports.iter().zip(profiles) {
        stack.start(&import.tag, &key, profile, false).await;
    }
    wait_all(&stack, &mut imports, started).await;
    let stats = edge(&stack.state, "GET", "/_edge/stats", None);
    if a.competitor.is_some() {
        edge(&stack.state, "POST", "/_edge/competitors", Some(json!({})));
    }
    let after = stack.certificate_ids().await;

    let result = measure(&stack, &a, &imports, &stats, &before, &after).await;
    let result = json!({
        "loadBefore": load_before,
        "loadAfter": load_average(),
        "result": result,
    });
    std::fs::write(
        &a.out,
        serde_json::to_vec_pretty(&result).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("{}: {e}", a.out.display()))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?
    );
    eprintln!("written to {}", a.out.display());
    if result["result"]["accountedFor"] != json!(true) {
        return Err("not every entry is accounted for exactly once".into());
    }
    Ok(())
}

/// Polls every execution until all have ended, printing the edge's progress.
async fn wait_all(stack: &Stack, imports: &mut [Import], started: Instant) {
    let mut last_print = Instant::now();
    while imports.iter().any(|i| i.status.is_none()) {
        for import in imports.iter_mut().filter(|i| i.status.is_none()) {
            let arn = format!(
                "{}:{}",
                stack.machine.replace(":stateMachine:", ":execution:"),
                import.tag
            );
            let out = stack
                .sfn
                .describe_execution()
                .execution_arn(arn)
                .send()
                .await
                .unwrap();
            if out.status != ExecutionStatus::Running {
                import.seconds = Some(started.elapsed().as_secs_f64());
                eprintln!(
                    "{}: {:?} after {:.0}s {:?}",
                    import.tag,
                    out.status,
                    started.elapsed().as_secs_f64(),
                    out.error
                );
                import.status = Some(out.status);
            }
        }
        if last_print.elapsed() > Duration::from_secs(30) {
            let stats = edge(&stack.state, "GET", "/_edge/stats", None);
            let o = &stats["operations"][BOTTLENECK];
            eprintln!(
                "  {:>5.0}s: {} registered, {} throttled, load {}",
                started.elapsed().as_secs_f64(),
                o["passed"],
                o["throttledQuota"],
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

/// The numbers the targets are stated in, and the accounting check.
async fn measure(
    stack: &Stack,
    a: &Args,
    imports: &[Import],
    stats: &Value,
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
) -> Value {
    let ops = &stats["operations"];
    let number = |v: &Value| v.as_f64().unwrap_or(0.0);
    let o = &ops[BOTTLENECK];
    let passed = number(&o["passed"]);
    let window = number(&o["lastPassed"]) - number(&o["firstPassed"]);
    let achieved = if window > 0.0 && passed > 1.0 {
        (passed - 1.0) / window
    } else {
        0.0
    };
    let quota = number(&stack.state["quotas"][BOTTLENECK]);
    let reserve: f64 = stack.state["functionEnv"]["QUOTA_RESERVE"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(thingpress_importer::DEFAULT_RESERVE);
    let competitor_share = a
        .competitor
        .as_ref()
        .filter(|(op, _)| op == BOTTLENECK)
        .map_or(0.0, |(_, s)| *s);
    // What Thingpress may take: the quota less the reserve, or less what the competitor takes
    // when that is more (the reserve is for exactly such callers).
    let available = quota * (1.0 - reserve.max(competitor_share));
    let iot: Vec<String> = Api::ALL.iter().map(|api| api.to_string()).collect();
    let sum = |field: &str| -> f64 { iot.iter().map(|op| number(&ops[op][field])).sum() };
    let calls = sum("calls");
    let throttled = sum("throttledQuota");

    let mut runs = Vec::new();
    let mut accounted = true;
    for import in imports {
        let run = stack.wait(&import.tag).await;
        let entry = if run.status == ExecutionStatus::Succeeded {
            let r = stack.report(&run).await;
            let certificates = r.outcomes.registered + r.outcomes.already_registered;
            let each_once = r.outcomes.total() == r.entries
                && r.entries == import.ids.len() as u64
                && r.outcomes.registered == import.ids.len() as u64
                && certificates == import.ids.len() as u64
                && import
                    .ids
                    .iter()
                    .all(|(c, _)| after.contains(c) && !before.contains(c));
            accounted &= each_once;
            json!({
                "run": import.tag, "status": "SUCCEEDED", "seconds": import.seconds,
                "entries": r.entries, "registered": r.outcomes.registered,
                "alreadyRegistered": r.outcomes.already_registered,
                "rejected": r.outcomes.total() - certificates,
                "continuations": r.continuations, "stalls": r.stalls,
                "throttled": r.throttled, "accountedFor": each_once,
            })
        } else {
            accounted = false;
            json!({"run": import.tag, "status": format!("{:?}", run.status),
                   "error": run.error, "cause": run.cause, "seconds": import.seconds})
        };
        runs.push(entry);
    }
    let total: usize = imports.iter().map(|i| i.ids.len()).sum();
    accounted &= after.len() - before.len() == total;
    let seconds: Vec<f64> = imports.iter().filter_map(|i| i.seconds).collect();
    let (first, last) = seconds
        .iter()
        .fold((f64::MAX, 0.0_f64), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
    let competitor = a.competitor.as_ref().map(|(op, share)| {
        json!({"operation": op, "share": share,
               "calls": ops[op.as_str()]["competitorCalls"],
               "throttled": ops[op.as_str()]["competitorThrottled"]})
    });
    json!({
        "imports": imports.len(),
        "certificates": total,
        "quota": quota,
        "reserve": reserve,
        "available": available,
        "achievedPerSecond": achieved,
        "fractionOfAvailable": achieved / available,
        "iotCalls": calls,
        "iotThrottled": throttled,
        "throttledFraction": if calls > 0.0 { throttled / calls } else { 0.0 },
        "finishSpread": if last > 0.0 { (last - first) / last } else { 0.0 },
        "wallClockSeconds": last,
        "competitor": competitor,
        // The edge counts each function's runs under "Lambda.Invoke:<function name>".
        "lambda": ops.as_object().map(|m| m.iter()
            .filter(|(k, v)| k.starts_with("Lambda.Invoke:") && number(&v["invocations"]) > 0.0)
            .map(|(k, v)| (k.clone(), json!({"invocations": v["invocations"], "billedSeconds": number(&v["durationMs"]) / 1000.0})))
            .collect::<serde_json::Map<_, _>>()),
        "runs": runs,
        "accountedFor": accounted,
    })
}
