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
use aws_sdk_sfn::types::ExecutionStatus;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use thingpress_importer::{EntryResult, Outcome};
use thingpress_manifest::{ErrorName, sha256_hex};
use thingpress_run::records::{ChunkDescriptor, RunInfo, now_ms};
use thingpress_run::report::{Report, RunStatus};
use thingpress_run::store::{parse_jsonl, to_jsonl};
use thingpress_run::{RunLayout, S3Store, Store};

use crate::commands::report::{chunks_with_results, get_object, resolve_run};
use crate::commands::watch;
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

/// Runs the command.
pub async fn run(target: &TargetArgs, args: &Args) -> Result<()> {
    let target = Target::resolve(target).await?;
    let store = S3Store::new(target.s3());
    let run = resolve_run(&target, &store, &args.execution).await?;
    let run_id = run.run_id();
    let bucket = &target.bucket;
    let sfn = target.sfn();

    if let Some(status) = execution_status(&sfn, &target.execution_arn(run_id)).await?
        && is_active(&status)
    {
        bail!(
            "run {run_id} is {}: let it end (or stop it) before retrying it",
            status.as_str()
        );
    }
    let info: RunInfo = get_object(&store, bucket, &run.run_info())
        .await?
        .with_context(|| {
            format!(
                "run {run_id} has no chunks to retry (no run.json): Split never finished (or the \
                 run was skipped as a duplicate, or does not exist); import the manifest again \
                 (with force, to take its claim over)"
            )
        })?;
    let index: Vec<ChunkDescriptor> = get_object(&store, bucket, &run.chunk_index())
        .await?
        .with_context(|| format!("run {run_id} has run.json but no chunks.json"))?;

    let previous = previous_retries(&target, &store, &run).await?;
    for record in &previous {
        let arn = target.execution_arn(&record.execution_name);
        if let Some(status) = execution_status(&sfn, &arn).await?
            && is_active(&status)
        {
            bail!(
                "retry {} of run {run_id} ({}) is {}: let it end before starting another",
                record.retry,
                record.execution_name,
                status.as_str()
            );
        }
    }
    let n = previous.iter().map(|r| r.retry).max().unwrap_or(0) + 1;

    let done = chunks_with_results(&target.s3(), bucket, &run).await?;
    let missing: Vec<&ChunkDescriptor> =
        index.iter().filter(|c| !done.contains(&c.chunk)).collect();
    let reopened = if args.include_rejected_by_iot {
        let with_results: Vec<&ChunkDescriptor> =
            index.iter().filter(|c| done.contains(&c.chunk)).collect();
        rejected_by_iot(&store, bucket, &run, &with_results).await?
    } else {
        Vec::new()
    };
    if missing.is_empty() && reopened.is_empty() {
        let report: Option<Report> = get_object(&store, bucket, &run.report()).await?;
        if report.is_some_and(|r| r.status == RunStatus::Complete) {
            println!(
                "run {run_id} is complete: every chunk has results{}; nothing to retry",
                if args.include_rejected_by_iot {
                    " and none has entries IoT rejected"
                } else {
                    ""
                }
            );
            return Ok(());
        }
        // Every chunk is done but the report is missing or stale: a retry of no chunks only
        // runs Summarize.
        println!("run {run_id}: every chunk has results but the report is missing or incomplete");
    }

    let reopen: BTreeSet<u32> = reopened.iter().map(|r| r.chunk).collect();
    let chunks: Vec<ChunkDescriptor> = index
        .iter()
        .filter(|c| !done.contains(&c.chunk) || reopen.contains(&c.chunk))
        .cloned()
        .collect();
    let name = retry_execution_name(run_id, n);
    let record = RetryRecord {
        retry: n,
        run_id: run_id.to_owned(),
        execution_name: name.clone(),
        chunks_without_results: missing.iter().map(|c| c.chunk).collect(),
        reopened: reopened.clone(),
        started_at_ms: now_ms(),
    };
    put(
        &store,
        bucket,
        &run.retry_index(n),
        serde_json::to_vec(&chunks)?,
    )
    .await?;
    put(
        &store,
        bucket,
        &run.retry_record(n),
        serde_json::to_vec(&record)?,
    )
    .await?;
    for r in &reopened {
        reopen_chunk(&target, &store, &run, n, r.chunk).await?;
    }

    let input = json!({"retry": {
        "runId": run_id,
        "retry": n,
        "chunksKey": run.retry_index(n),
        "maxConcurrency": info.max_concurrency,
    }});
    let started = sfn
        .start_execution()
        .state_machine_arn(&target.state_machine_arn)
        .name(&name)
        .input(input.to_string())
        .send()
        .await
        .map_err(|e| anyhow!("starting retry execution {name}: {}", sdk_message(&e)))?;
    let arn = started.execution_arn().to_owned();

    let entries: u64 = missing.iter().map(|c| c.entries).sum();
    let mut line = format!(
        "run {run_id}: retry {n} imports {} of {} chunks without results ({entries} entries)",
        missing.len(),
        index.len()
    );
    if args.include_rejected_by_iot {
        let again: u64 = reopened.iter().map(|r| r.rejected_by_iot).sum();
        line.push_str(&format!(
            " and {again} entries IoT rejected, in {} chunks",
            reopened.len()
        ));
    }
    println!("{line}");
    println!("started {arn}");
    if args.wait {
        watch::follow(&target, &arn, Duration::from_secs(args.interval)).await
    } else {
        println!("follow it with: thingpress watch {name}; then: thingpress report {run_id}");
        Ok(())
    }
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

/// The run an execution works on and the chunk index it imports: its own, or for a retry the
/// retried run and the retry's index (from the execution's input).
pub async fn run_of_execution(
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
) -> Result<(RunLayout, String)> {
    let own = crate::commands::report::run_of(execution_arn)?;
    let input = match sfn
        .describe_execution()
        .execution_arn(execution_arn)
        .send()
        .await
    {
        Ok(out) => out
            .input()
            .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok()),
        // The caller's own DescribeExecution reports a missing execution.
        Err(_) => None,
    };
    let retry = input.as_ref().and_then(|i| i.get("retry"));
    let field = |name: &str| {
        retry
            .and_then(|r| r.get(name))
            .and_then(serde_json::Value::as_str)
    };
    match (field("runId"), field("chunksKey")) {
        (Some(run_id), Some(index_key)) => {
            let run = RunLayout::new(run_id).map_err(|e| anyhow!(e.message))?;
            Ok((run, index_key.to_owned()))
        }
        _ => {
            let index_key = own.chunk_index();
            Ok((own, index_key))
        }
    }
}

/// Whether a result line is an entry IoT rejected (a rejection without a name counts as IoT's,
/// as in the report).
pub fn is_rejected_by_iot(result: &EntryResult) -> bool {
    result.outcome == Outcome::Rejected
        && result.error.unwrap_or(ErrorName::RejectedByIot) == ErrorName::RejectedByIot
}

/// The status of an execution, `None` when Step Functions does not know it (history expired).
async fn execution_status(sfn: &aws_sdk_sfn::Client, arn: &str) -> Result<Option<ExecutionStatus>> {
    match sfn.describe_execution().execution_arn(arn).send().await {
        Ok(out) => Ok(Some(out.status().clone())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_execution_does_not_exist()) =>
        {
            Ok(None)
        }
        Err(e) => Err(anyhow!("describing execution {arn}: {}", sdk_message(&e))),
    }
}

fn is_active(status: &ExecutionStatus) -> bool {
    matches!(
        status,
        ExecutionStatus::Running | ExecutionStatus::PendingRedrive
    )
}

/// Every earlier retry's record.
async fn previous_retries(
    target: &Target,
    store: &S3Store,
    run: &RunLayout,
) -> Result<Vec<RetryRecord>> {
    let prefix = run.retries();
    let mut numbers = Vec::new();
    let mut token = None;
    loop {
        let out = target
            .s3()
            .list_objects_v2()
            .bucket(&target.bucket)
            .prefix(&prefix)
            .delimiter("/")
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "listing s3://{}/{prefix}: {}",
                    target.bucket,
                    sdk_message(&e)
                )
            })?;
        numbers.extend(out.common_prefixes().iter().filter_map(|p| {
            p.prefix()?
                .strip_prefix(&prefix)?
                .trim_end_matches('/')
                .parse::<u32>()
                .ok()
        }));
        match out.next_continuation_token() {
            Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => break,
        }
    }
    let mut records = Vec::new();
    for n in numbers {
        // A retry whose record was not written never started; its number is still taken.
        match get_object::<RetryRecord>(store, &target.bucket, &run.retry_record(n)).await? {
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
    store: &S3Store,
    bucket: &str,
    run: &RunLayout,
    chunks: &[&ChunkDescriptor],
) -> Result<Vec<Reopened>> {
    let counts: Vec<(u32, u64)> = futures::stream::iter(chunks)
        .map(|chunk| async move {
            let results = read_results(store, bucket, run, chunk.chunk).await?;
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

async fn read_results(
    store: &S3Store,
    bucket: &str,
    run: &RunLayout,
    chunk: u32,
) -> Result<Vec<EntryResult>> {
    let key = run.results(chunk);
    let body = store
        .get(bucket, &key)
        .await
        .map_err(|e| anyhow!(e.message))?
        .with_context(|| format!("s3://{bucket}/{key} is missing"))?;
    parse_jsonl(&body).map_err(|e| anyhow!("s3://{bucket}/{key}: {e}"))
}

/// Turns a chunk's results back into progress without its IoT rejections, so Register imports
/// only those entries again. The old results are kept under the retry first; the results object
/// goes last, so an interruption leaves the chunk either done as before or reopened.
async fn reopen_chunk(
    target: &Target,
    store: &S3Store,
    run: &RunLayout,
    n: u32,
    chunk: u32,
) -> Result<()> {
    let bucket = &target.bucket;
    let results = read_results(store, bucket, run, chunk).await?;
    let kept: Vec<&EntryResult> = results.iter().filter(|r| !is_rejected_by_iot(r)).collect();
    put(
        store,
        bucket,
        &run.superseded(n, chunk),
        to_jsonl(&results).map_err(|e| anyhow!(e.message))?,
    )
    .await?;
    put(
        store,
        bucket,
        &run.progress(chunk),
        to_jsonl(kept).map_err(|e| anyhow!(e.message))?,
    )
    .await?;
    let key = run.results(chunk);
    target
        .s3()
        .delete_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .map_err(|e| anyhow!("deleting s3://{bucket}/{key}: {}", sdk_message(&e)))?;
    Ok(())
}

async fn put(store: &S3Store, bucket: &str, key: &str, body: Vec<u8>) -> Result<()> {
    store
        .put(bucket, key, body)
        .await
        .map_err(|e| anyhow!(e.message))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use aws_sdk_sfn::Client;
    use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
    use aws_sdk_sfn::primitives::DateTime;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use serde_json::Value;

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

    fn described(name: &str, input: Value) -> DescribeExecutionOutput {
        DescribeExecutionOutput::builder()
            .execution_arn(format!("{MACHINE_EXECUTIONS}:{name}"))
            .state_machine_arn("arn:aws:states:us-east-1:123456789012:stateMachine:m")
            .status(ExecutionStatus::Running)
            .start_date(DateTime::from_secs(0))
            .input(input.to_string())
            .build()
            .unwrap()
    }

    const MACHINE_EXECUTIONS: &str = "arn:aws:states:us-east-1:123456789012:execution:m";

    #[tokio::test]
    async fn a_retry_execution_works_on_the_run_it_retries() {
        let retry = described(
            "run-1-retry2",
            json!({"retry": {"runId": "run-1", "chunksKey": "runs/run-1/retries/00002/chunks.json",
                             "maxConcurrency": 4}}),
        );
        let plain = described("run-2", json!({"manifest": {"bucket": "b", "key": "k"}}));
        let rules = [
            mock!(Client::describe_execution).then_output(move || retry.clone()),
            mock!(Client::describe_execution).then_output(move || plain.clone()),
        ];
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::Sequential, &rules);
        let (run, index) = run_of_execution(&sfn, &format!("{MACHINE_EXECUTIONS}:run-1-retry2"))
            .await
            .unwrap();
        assert_eq!(run.run_id(), "run-1");
        assert_eq!(index, "runs/run-1/retries/00002/chunks.json");
        let (run, index) = run_of_execution(&sfn, &format!("{MACHINE_EXECUTIONS}:run-2"))
            .await
            .unwrap();
        assert_eq!(run.run_id(), "run-2");
        assert_eq!(index, "runs/run-2/chunks.json");
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
