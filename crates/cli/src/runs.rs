//! Locating and reading a run from the CLI: which run an execution name or ARN means (the pure
//! resolver in `thingpress_run::resolve`, fed by the one DescribeExecution here), and the run's
//! objects the commands read. Commands share this module instead of each other.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use aws_sdk_sfn::types::ExecutionStatus;
use thingpress_importer::EntryResult;
use thingpress_run::resolve::{self, ExecutionRun};
use thingpress_run::{RunLayout, RunStore, S3Store, Store};

use crate::target::{Target, sdk_message};

/// The ARN of an execution given by name or ARN.
pub fn execution_arn(target: &Target, execution: &str) -> String {
    if execution.starts_with("arn:") {
        execution.to_owned()
    } else {
        target.execution_arn(execution)
    }
}

/// What an execution works on: its own run, or for a retry the run it retries and the retry's
/// chunk index. An execution Step Functions does not know (its history expired, or none we may
/// see) counts as a plain one; the caller says what is missing.
pub async fn resolve_execution(
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
) -> Result<ExecutionRun> {
    let input = match sfn
        .describe_execution()
        .execution_arn(execution_arn)
        .send()
        .await
    {
        Ok(out) => out.input().map(str::to_owned),
        Err(_) => None,
    };
    Ok(resolve::resolve(execution_arn, input.as_deref())?)
}

/// The run whose objects a command reads, from an execution name or ARN: a run with a run.json
/// is itself (no Step Functions call, so runs whose history expired still resolve); otherwise the
/// execution may be a retry (`thingpress retry-failed`), which stands for the run it retried.
pub async fn locate_run(target: &Target, store: &S3Store, execution: &str) -> Result<RunLayout> {
    let run = resolve::named_run(execution)?;
    if store.head(&target.bucket, &run.run_info()).await?.is_some() {
        return Ok(run);
    }
    let resolved = resolve_execution(&target.sfn(), &execution_arn(target, execution)).await?;
    if resolved.retry {
        let original = resolved.run.run_id();
        eprintln!(
            "{} is a retry of run {original}: showing run {original}",
            run.run_id()
        );
    }
    Ok(resolved.run)
}

/// The status of an execution, `None` when Step Functions does not know it (history expired).
pub async fn execution_status(
    sfn: &aws_sdk_sfn::Client,
    arn: &str,
) -> Result<Option<ExecutionStatus>> {
    match sfn.describe_execution().execution_arn(arn).send().await {
        Ok(out) => Ok(Some(out.status().clone())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_execution_does_not_exist()) =>
        {
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!(
            "describing execution {arn}: {}",
            sdk_message(&e)
        )),
    }
}

/// Whether an execution with this status is still going (running, or about to be redriven).
pub fn is_active(status: &ExecutionStatus) -> bool {
    matches!(
        status,
        ExecutionStatus::Running | ExecutionStatus::PendingRedrive
    )
}

/// A JSON object of the bucket, `None` when it does not exist.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    store: &impl Store,
    bucket: &str,
    key: &str,
) -> Result<Option<T>> {
    let Some(body) = store.get(bucket, key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&body)
        .map(Some)
        .with_context(|| format!("s3://{bucket}/{key} is not what Thingpress writes there"))
}

/// The chunk numbers that have `results/NNNNN.jsonl` (each written once, when the chunk is done).
pub async fn chunks_with_results(
    store: &impl Store,
    bucket: &str,
    run: &RunLayout,
) -> Result<BTreeSet<u32>> {
    let keys = store.list(bucket, &run.results_prefix()).await?;
    Ok(keys
        .iter()
        .filter_map(|key| run.chunk_of_results(key))
        .collect())
}

/// The results of a chunk that has them (a missing object is an error).
pub async fn finished_results(runs: &RunStore<S3Store>, chunk: u32) -> Result<Vec<EntryResult>> {
    runs.results(chunk).await?.with_context(|| {
        format!(
            "s3://{}/{} is missing",
            runs.bucket(),
            runs.layout().results(chunk)
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use aws_sdk_sfn::Client;
    use aws_sdk_sfn::operation::describe_execution::{
        DescribeExecutionError, DescribeExecutionOutput,
    };
    use aws_sdk_sfn::primitives::DateTime;
    use aws_sdk_sfn::types::error::ExecutionDoesNotExist;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use serde_json::{Value, json};

    use super::*;

    const MACHINE_EXECUTIONS: &str = "arn:aws:states:us-east-1:123456789012:execution:m";

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

    #[tokio::test]
    async fn chunks_with_results_are_those_of_the_run_with_a_results_object() {
        let store = thingpress_run::MemStore::new();
        let (run, other) = (
            RunLayout::new("r1").unwrap(),
            RunLayout::new("r10").unwrap(),
        );
        for key in [
            run.results(0),
            run.results(7),
            run.progress(3),
            run.chunk(5),
            other.results(1),
            format!("{}junk", run.results_prefix()),
        ] {
            store.put("b", &key, b"{}\n".to_vec()).await.unwrap();
        }
        let done = chunks_with_results(&store, "b", &run).await.unwrap();
        assert_eq!(done, BTreeSet::from([0, 7]));
        assert!(
            read_json::<Value>(&store, "b", &run.report())
                .await
                .unwrap()
                .is_none()
        );
        let err = read_json::<Vec<u32>>(&store, "b", &run.chunk(5))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("is not what Thingpress writes"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_retry_execution_works_on_the_run_it_retries() {
        let retry = described(
            "run-1-retry2",
            json!({"retry": {"runId": "run-1", "retry": 2,
                             "chunksKey": "runs/run-1/retries/00002/chunks.json",
                             "maxConcurrency": 4}}),
        );
        let plain = described("run-2", json!({"manifest": {"bucket": "b", "key": "k"}}));
        let rules = [
            mock!(Client::describe_execution).then_output(move || retry.clone()),
            mock!(Client::describe_execution).then_output(move || plain.clone()),
            mock!(Client::describe_execution).then_error(|| {
                DescribeExecutionError::ExecutionDoesNotExist(
                    ExecutionDoesNotExist::builder().build(),
                )
            }),
        ];
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::Sequential, &rules);
        let resolved = resolve_execution(&sfn, &format!("{MACHINE_EXECUTIONS}:run-1-retry2"))
            .await
            .unwrap();
        assert_eq!(resolved.run.run_id(), "run-1");
        assert_eq!(resolved.index_key, "runs/run-1/retries/00002/chunks.json");
        assert!(resolved.retry);
        let resolved = resolve_execution(&sfn, &format!("{MACHINE_EXECUTIONS}:run-2"))
            .await
            .unwrap();
        assert_eq!(resolved.run.run_id(), "run-2");
        assert_eq!(resolved.index_key, "runs/run-2/chunks.json");
        // Unknown to Step Functions: its own run, for the caller to find missing.
        let resolved = resolve_execution(&sfn, &format!("{MACHINE_EXECUTIONS}:gone"))
            .await
            .unwrap();
        assert_eq!(resolved.run.run_id(), "gone");
        assert!(!resolved.retry);
    }
}
