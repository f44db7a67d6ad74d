//! `thingpress retry-failed`: start a new execution over only the chunks of a run that have no
//! results (and, with `--include-rejected-by-iot`, the entries IoT rejected), skipping Split.
//! Unlike RedriveExecution it works after Step Functions' 14 days, after the execution history
//! is gone, and on the local stack.
//!
//! The retry works on the original run's layout: the state machine's `IsRetry` choice sends the
//! input `{"retry": {runId, chunksKey, maxConcurrency}}` straight to the Map with a chunk index
//! that lists only the chunks to import again (`runs/<run>/retries/NNNNN/chunks.json`). Their
//! results land in `runs/<run>/results/` and Summarize rewrites `runs/<run>/report.json` over the
//! whole run, so `thingpress report <run>` stays the whole truth. Registering is idempotent: an
//! entry registered before counts as already registered, never twice.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use thingpress_importer::{EntryResult, Outcome};
use thingpress_manifest::{ErrorName, sha256_hex};
use thingpress_run::payload::{RetryInput, RetryRequest, tolerated_failure_percentage};
use thingpress_run::records::{ChunkDescriptor, ProgressLine, RunInfo, now_ms};
use thingpress_run::report::RunStatus;
use thingpress_run::store::to_jsonl;
use thingpress_run::{RunLayout, RunStore, S3Store, Store};

use crate::follow::follow;
use crate::output::outln;
use crate::runs::{
    chunks_with_results, execution_status, finished_results, is_active, locate_run, read_json,
};
use crate::target::{Target, TargetArgs, sdk_message};

/// Result objects read at once when looking for IoT rejections.
const READS_IN_FLIGHT: usize = 8;
/// Step Functions' limit on execution names.
const MAX_EXECUTION_NAME: usize = 80;

/// Options of `thingpress retry-failed`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run: its execution name (the run id) or execution ARN (a retry's names the run it
    /// retried).
    pub execution: String,
    /// Also import again the entries IoT rejected (Thingpress.RejectedByIot), e.g. after fixing
    /// what IoT refused; their chunks' earlier results are kept under retries/NNNNN/superseded/.
    #[arg(long)]
    pub include_rejected_by_iot: bool,
    /// In a run with several targets (the profile's `targets`), retry only this one's chunks:
    /// its id, the Region (eu-west-1) or <account>-<region> for another account.
    #[arg(long)]
    pub target: Option<String>,
    /// Follow the retry until it ends, like `thingpress watch` (exit non-zero if it fails).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: seconds between progress lines when stderr is not a terminal.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,
}

/// `runs/<run>/retries/NNNNN/retry.json`: what one retry imports and which execution does it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryRecord {
    /// The retry's number within the run, from 1.
    pub retry: u32,
    /// The run retried.
    pub run_id: String,
    /// The retry's execution name.
    pub execution_name: String,
    /// Chunks that had no results.
    pub chunks_without_results: Vec<u32>,
    /// Chunks reopened for their IoT rejections, with how many entries each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reopened: Vec<Reopened>,
    /// When the retry was started, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
}

/// A chunk whose IoT rejections are imported again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reopened {
    /// Chunk number.
    pub chunk: u32,
    /// Entries of it that IoT had rejected.
    pub rejected_by_iot: u64,
}

/// What a retry imports: the chunks without results, and the chunks reopened for their IoT
/// rejections (with `--include-rejected-by-iot`).
#[derive(Debug)]
struct Plan {
    /// The run's chunk index.
    index: Vec<ChunkDescriptor>,
    /// Chunks of it without results.
    missing: Vec<ChunkDescriptor>,
    /// Chunks with results that hold IoT rejections.
    reopened: Vec<Reopened>,
}

impl Plan {
    /// The retry's chunk index: the chunks without results and the reopened ones, in run order.
    fn chunks(&self) -> Vec<ChunkDescriptor> {
        let missing: BTreeSet<u32> = self.missing.iter().map(|c| c.chunk).collect();
        let reopen: BTreeSet<u32> = self.reopened.iter().map(|r| r.chunk).collect();
        self.index
            .iter()
            .filter(|c| missing.contains(&c.chunk) || reopen.contains(&c.chunk))
            .cloned()
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.reopened.is_empty()
    }
}

/// Runs the command.
pub async fn run(target: &TargetArgs, args: &Args) -> Result<()> {
    let target = Target::resolve(target).await?;
    let store = S3Store::new(target.s3());
    let run = locate_run(&target, &store, &args.execution).await?;
    let run_id = run.run_id();
    let sfn = target.sfn();

    if let Some(status) = execution_status(&sfn, &target.execution_arn(run_id)).await?
        && is_active(&status)
    {
        bail!(
            "run {run_id} is {}: let it end (or stop it) before retrying it",
            status.as_str()
        );
    }
    let info: RunInfo = read_json(&store, &target.bucket, &run.run_info())
        .await?
        .with_context(|| {
            format!(
                "run {run_id} has no chunks to retry (no run.json): Split never finished (or the \
                 run was skipped as a duplicate, or does not exist); import the manifest again \
                 (with force, to take its claim over)"
            )
        })?;
    let n = next_retry(&target, &store, &run).await?;
    let plan = plan(&store, &target.bucket, &run, args).await?;
    if plan.is_empty() && !needs_summary(&store, &target.bucket, &run, args).await? {
        return Ok(());
    }
    let name = write_retry(&target, &store, &run, n, &plan).await?;
    let arn = start_retry(&target, &run, n, &name, &info, &plan.chunks()).await?;

    let entries: u64 = plan.missing.iter().map(|c| c.entries).sum();
    let mut line = format!(
        "run {run_id}: retry {n} imports {} of {} chunks without results ({entries} entries)",
        plan.missing.len(),
        plan.index.len()
    );
    if args.include_rejected_by_iot {
        let again: u64 = plan.reopened.iter().map(|r| r.rejected_by_iot).sum();
        line.push_str(&format!(
            " and {again} entries IoT rejected, in {} chunks",
            plan.reopened.len()
        ));
    }
    outln!("{line}")?;
    outln!("started {arn}")?;
    if args.wait {
        follow(&target, &arn, Duration::from_secs(args.interval)).await
    } else {
        outln!("follow it with: thingpress watch {name}; then: thingpress report {run_id}")?;
        Ok(())
    }
}

/// The next retry's number, once no earlier retry of the run is still going.
async fn next_retry(target: &Target, store: &S3Store, run: &RunLayout) -> Result<u32> {
    let previous = previous_retries(store, &target.bucket, run).await?;
    for record in &previous {
        let arn = target.execution_arn(&record.execution_name);
        if let Some(status) = execution_status(&target.sfn(), &arn).await?
            && is_active(&status)
        {
            bail!(
                "retry {} of run {} ({}) is {}: let it end before starting another",
                record.retry,
                run.run_id(),
                record.execution_name,
                status.as_str()
            );
        }
    }
    Ok(previous.iter().map(|r| r.retry).max().unwrap_or(0) + 1)
}

/// What the retry imports.
async fn plan(store: &S3Store, bucket: &str, run: &RunLayout, args: &Args) -> Result<Plan> {
    let runs = RunStore::new(store.clone(), bucket, run.clone());
    let mut index = runs
        .chunk_index()
        .await
        .with_context(|| format!("run {} has run.json but no chunks.json", run.run_id()))?;
    if let Some(id) = &args.target {
        let ids: BTreeSet<String> = index
            .iter()
            .filter_map(ChunkDescriptor::target_id)
            .collect();
        if !ids.contains(id) {
            bail!(
                "run {} has no target {id:?}; {}",
                run.run_id(),
                if ids.is_empty() {
                    "it has one, the stack's own account and Region: leave out --target".to_owned()
                } else {
                    format!(
                        "its targets are {}",
                        ids.into_iter().collect::<Vec<_>>().join(", ")
                    )
                }
            );
        }
        index.retain(|c| c.target_id().as_deref() == Some(id));
    }
    let include_rejected_by_iot = args.include_rejected_by_iot;
    let done = chunks_with_results(store, bucket, run).await?;
    let (with_results, missing): (Vec<ChunkDescriptor>, Vec<ChunkDescriptor>) =
        index.iter().cloned().partition(|c| done.contains(&c.chunk));
    let reopened = if include_rejected_by_iot {
        rejected_by_iot(&runs, &with_results).await?
    } else {
        Vec::new()
    };
    Ok(Plan {
        index,
        missing,
        reopened,
    })
}

/// With nothing to import: whether a retry of no chunks is still wanted, to write a report that
/// is missing or incomplete (it then only runs Summarize). Says which on stdout.
async fn needs_summary(
    store: &S3Store,
    bucket: &str,
    run: &RunLayout,
    args: &Args,
) -> Result<bool> {
    let run_id = run.run_id();
    let report = RunStore::new(store.clone(), bucket, run.clone())
        .report()
        .await?;
    // With --target, that target's own status: another target's missing chunks are not its.
    let (what, status) = match &args.target {
        Some(id) => (
            format!("target {id} of run {run_id}"),
            report
                .as_ref()
                .and_then(|r| r.of_target(id))
                .map(|t| t.status),
        ),
        None => (format!("run {run_id}"), report.as_ref().map(|r| r.status)),
    };
    if status == Some(RunStatus::Complete) {
        outln!(
            "{what} is complete: every chunk has results{}; nothing to retry",
            if args.include_rejected_by_iot {
                " and none has entries IoT rejected"
            } else {
                ""
            }
        )?;
        return Ok(false);
    }
    outln!("{what}: every chunk has results but the report is missing or incomplete")?;
    Ok(true)
}

/// Writes retry `n`'s chunk index and record, and reopens the chunks it imports again; returns
/// the retry's execution name.
async fn write_retry(
    target: &Target,
    store: &S3Store,
    run: &RunLayout,
    n: u32,
    plan: &Plan,
) -> Result<String> {
    let bucket = &target.bucket;
    let name = retry_execution_name(run.run_id(), n);
    let record = RetryRecord {
        retry: n,
        run_id: run.run_id().to_owned(),
        execution_name: name.clone(),
        chunks_without_results: plan.missing.iter().map(|c| c.chunk).collect(),
        reopened: plan.reopened.clone(),
        started_at_ms: now_ms(),
    };
    let index = serde_json::to_vec(&plan.chunks())?;
    store.put(bucket, &run.retry_index(n), index).await?;
    store
        .put(bucket, &run.retry_record(n), serde_json::to_vec(&record)?)
        .await?;
    let runs = RunStore::new(store.clone(), bucket, run.clone());
    for r in &plan.reopened {
        reopen_chunk(store, &runs, n, r.chunk).await?;
    }
    Ok(name)
}

/// Starts retry `n`'s execution (the state machine's `IsRetry` branch); returns its ARN.
async fn start_retry(
    target: &Target,
    run: &RunLayout,
    n: u32,
    name: &str,
    info: &RunInfo,
    chunks: &[ChunkDescriptor],
) -> Result<String> {
    // As Split decided for the run: its concurrency in each target the retry imports, and with
    // several targets, each failing apart.
    let targets: BTreeSet<Option<String>> = chunks.iter().map(ChunkDescriptor::target_id).collect();
    let input = RetryInput {
        retry: RetryRequest {
            run_id: run.run_id().to_owned(),
            retry: n,
            chunks_key: run.retry_index(n),
            max_concurrency: info.map_concurrency(targets.len()),
            tolerated_failure_percentage: tolerated_failure_percentage(targets.len()),
        },
    };
    let started = target
        .sfn()
        .start_execution()
        .state_machine_arn(&target.state_machine_arn)
        .name(name)
        .input(serde_json::to_string(&input)?)
        .send()
        .await
        .map_err(|e| anyhow!("starting retry execution {name}: {}", sdk_message(&e)))?;
    Ok(started.execution_arn().to_owned())
}

/// The retry execution's name: `<run>-retry<n>`, with the run id shortened (and a hash of it
/// added, so two long run ids never collide) when that would exceed 80 characters.
pub fn retry_execution_name(run_id: &str, n: u32) -> String {
    let suffix = format!("-retry{n}");
    if run_id.len() + suffix.len() <= MAX_EXECUTION_NAME {
        return format!("{run_id}{suffix}");
    }
    let hash = sha256_hex(run_id.as_bytes());
    let hash = hash.get(..8).unwrap_or(&hash);
    let keep = MAX_EXECUTION_NAME - suffix.len() - hash.len() - 1;
    // Run ids are ASCII (RunLayout checks), so any byte offset is a character boundary.
    let prefix = run_id.get(..keep).unwrap_or(run_id);
    format!("{prefix}-{hash}{suffix}")
}

/// Whether a result line is an entry IoT rejected (a rejection without a name counts as IoT's,
/// as in the report).
pub fn is_rejected_by_iot(result: &EntryResult) -> bool {
    result.outcome == Outcome::Rejected
        && result.error.unwrap_or(ErrorName::RejectedByIot) == ErrorName::RejectedByIot
}

/// Every earlier retry's record.
async fn previous_retries(
    store: &S3Store,
    bucket: &str,
    run: &RunLayout,
) -> Result<Vec<RetryRecord>> {
    let keys = store.list(bucket, &run.retries()).await?;
    let numbers: BTreeSet<u32> = keys.iter().filter_map(|k| run.retry_of_key(k)).collect();
    let mut records = Vec::new();
    for n in numbers {
        // A retry whose record was not written never started; its number is still taken.
        match read_json::<RetryRecord>(store, bucket, &run.retry_record(n)).await? {
            Some(record) => records.push(record),
            None => records.push(RetryRecord {
                retry: n,
                run_id: run.run_id().to_owned(),
                execution_name: retry_execution_name(run.run_id(), n),
                chunks_without_results: Vec::new(),
                reopened: Vec::new(),
                started_at_ms: 0,
            }),
        }
    }
    Ok(records)
}

/// Chunks with results that hold IoT rejections, with how many.
async fn rejected_by_iot(
    runs: &RunStore<S3Store>,
    chunks: &[ChunkDescriptor],
) -> Result<Vec<Reopened>> {
    let counts: Vec<(u32, u64)> = futures::stream::iter(chunks)
        .map(|chunk| async move {
            let results = finished_results(runs, chunk.chunk).await?;
            let n = results.iter().filter(|r| is_rejected_by_iot(r)).count() as u64;
            Ok::<_, anyhow::Error>((chunk.chunk, n))
        })
        .buffered(READS_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(counts
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(chunk, rejected_by_iot)| Reopened {
            chunk,
            rejected_by_iot,
        })
        .collect())
}

/// Turns a chunk's results back into progress without its IoT rejections, so Register imports
/// only those entries again. The old results are kept under the retry first; the results object
/// goes last, so an interruption leaves the chunk either done as before or reopened.
async fn reopen_chunk(store: &S3Store, runs: &RunStore<S3Store>, n: u32, chunk: u32) -> Result<()> {
    let (bucket, run) = (runs.bucket(), runs.layout());
    let results = finished_results(runs, chunk).await?;
    store
        .put(bucket, &run.superseded(n, chunk), to_jsonl(&results)?)
        .await?;
    let kept: Vec<ProgressLine> = results
        .into_iter()
        .filter(|r| !is_rejected_by_iot(r))
        .map(ProgressLine::Done)
        .collect();
    runs.put_progress(chunk, &kept).await?;
    store.delete(bucket, &run.results(chunk)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn retry_names_are_valid_execution_names_and_distinct() {
        assert_eq!(retry_execution_name("run-1", 2), "run-1-retry2");
        let long_a = format!("{}a", "x".repeat(79));
        let long_b = format!("{}b", "x".repeat(79));
        let (a, b) = (
            retry_execution_name(&long_a, 12),
            retry_execution_name(&long_b, 12),
        );
        assert_ne!(a, b);
        for name in [&a, &b] {
            assert_eq!(name.len(), MAX_EXECUTION_NAME, "{name}");
            assert!(name.ends_with("-retry12"), "{name}");
            assert!(RunLayout::new(name).is_ok(), "{name}");
        }
        let exact = "y".repeat(MAX_EXECUTION_NAME - "-retry1".len());
        assert_eq!(retry_execution_name(&exact, 1), format!("{exact}-retry1"));
    }

    #[test]
    fn only_iot_rejections_are_imported_again() {
        let line = |outcome, error| EntryResult {
            index: 0,
            certificate_id: "ab".into(),
            thing_name: "t".into(),
            device_id: "d".into(),
            outcome,
            certificate_arn: None,
            actions: Vec::new(),
            error,
            message: None,
        };
        assert!(is_rejected_by_iot(&line(
            Outcome::Rejected,
            Some(ErrorName::RejectedByIot)
        )));
        assert!(is_rejected_by_iot(&line(Outcome::Rejected, None)));
        assert!(!is_rejected_by_iot(&line(
            Outcome::Rejected,
            Some(ErrorName::InvalidThingName)
        )));
        assert!(!is_rejected_by_iot(&line(
            Outcome::Rejected,
            Some(ErrorName::ThingConflict)
        )));
        assert!(!is_rejected_by_iot(&line(Outcome::Registered, None)));
    }

    #[test]
    fn a_retry_record_round_trips() {
        let record = RetryRecord {
            retry: 1,
            run_id: "r".into(),
            execution_name: "r-retry1".into(),
            chunks_without_results: vec![0, 3],
            reopened: vec![Reopened {
                chunk: 1,
                rejected_by_iot: 2,
            }],
            started_at_ms: 5,
        };
        let text = serde_json::to_string(&record).unwrap();
        assert!(text.contains("\"chunksWithoutResults\":[0,3]"), "{text}");
        assert_eq!(serde_json::from_str::<RetryRecord>(&text).unwrap(), record);
    }
}
