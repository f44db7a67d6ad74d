//! Summarize: check that every chunk has results, count every entry's outcome, write the run
//! report, and fail the run with `Thingpress.IncompleteImport` when anything is missing.
//!
//! Memory stays flat as runs grow: every results and rejections file is streamed line by line
//! into counts, chunk by chunk, and only the counts are kept (measured with
//! `examples/summarize_memory.rs`).

use aws_config::SdkConfig;
use futures::StreamExt;
use lambda_runtime::LambdaEvent;
use serde::Deserialize;
use serde_json::{Value, json};
use thingpress_manifest::ErrorName;
use thingpress_run::records::{ChunkDescriptor, ChunkStats, OutcomeCounts, RunInfo, now_ms};
use thingpress_run::report::{ChunkOutcome, ChunkTally, ReportBuilder, RunStatus};
use thingpress_run::store::{for_each_jsonl, get_json, put_json};
use thingpress_run::{RunLayout, Settings, Store, TaskError};

/// Chunk objects read at once: each holds one line and the counts in memory.
const READS_IN_FLIGHT: usize = 16;

/// The field of a Split rejection that the report counts.
#[derive(Deserialize)]
struct RejectionLine {
    error: ErrorName,
}

/// The summarize task.
pub struct Task<S> {
    store: S,
    settings: Settings,
}

impl<S: Store> Task<S> {
    /// Builds the task once per container.
    pub fn new(store: S, _config: &SdkConfig, settings: Settings) -> Self {
        Task::with_store(store, settings)
    }

    /// Builds the task without AWS configuration (it needs only the store).
    pub fn with_store(store: S, settings: Settings) -> Self {
        Task { store, settings }
    }

    /// Handles the end of a run; the input is Split's output.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, TaskError> {
        self.summarize(&event.payload).await
    }

    /// Summarizes the run the payload (Split's output) names.
    pub async fn summarize(&self, payload: &Value) -> Result<Value, TaskError> {
        let run_id = payload
            .get("runId")
            .and_then(Value::as_str)
            .ok_or_else(|| TaskError::invalid_input("payload has no runId"))?;
        let run = RunLayout::new(run_id)?;
        let bucket = &self.settings.import_bucket;
        let info: RunInfo = get_json(
            &self.store,
            bucket,
            &run.run_info(),
            TaskError::invalid_input,
        )
        .await?;
        let index: Vec<ChunkDescriptor> = get_json(
            &self.store,
            bucket,
            &run.chunk_index(),
            TaskError::invalid_input,
        )
        .await?;

        let mut split_rejections = OutcomeCounts::default();
        for part in 0..info.rejected_parts {
            let key = run.rejected(part);
            let found = for_each_jsonl(&self.store, bucket, &key, |r: RejectionLine| {
                split_rejections.reject(r.error);
            })
            .await?;
            if !found {
                return Err(TaskError::new(
                    ErrorName::IncompleteImport,
                    format!("{key} is missing"),
                ));
            }
        }

        // Chunks are read a few at a time and added up in index order as they arrive.
        let mut builder = ReportBuilder::new(&split_rejections);
        let run_ref = &run;
        let mut chunks = futures::stream::iter(&index)
            .map(|descriptor| async move {
                let outcome = self.chunk_outcome(run_ref, descriptor.chunk).await;
                (descriptor, outcome)
            })
            .buffered(READS_IN_FLIGHT);
        while let Some((descriptor, outcome)) = chunks.next().await {
            builder.add(descriptor, outcome?);
        }
        drop(chunks);
        let report = builder.finish(&info, &index, now_ms());
        put_json(&self.store, bucket, &run.report(), &report).await?;
        tracing::info!(
            run_id,
            status = ?report.status,
            entries = report.entries,
            registered = report.outcomes.registered,
            already_registered = report.outcomes.already_registered,
            rejected = report.outcomes.rejected,
            "run summarized"
        );
        if report.status == RunStatus::Incomplete {
            return Err(TaskError::new(
                ErrorName::IncompleteImport,
                format!("run {run_id}: {}", report.problems.join("; ")),
            ));
        }
        Ok(json!({
            "runId": run_id,
            "status": "complete",
            "entries": report.entries,
            "registered": report.outcomes.registered,
            "alreadyRegistered": report.outcomes.already_registered,
            "rejected": report.outcomes.rejected,
            "reportKey": run.report(),
        }))
    }

    async fn chunk_outcome(&self, run: &RunLayout, chunk: u32) -> Result<ChunkOutcome, TaskError> {
        let bucket = &self.settings.import_bucket;
        let mut tally = ChunkTally::default();
        let found = for_each_jsonl(&self.store, bucket, &run.results(chunk), |line| {
            tally.add(line);
        })
        .await?;
        let stats: Option<ChunkStats> = match self.store.get(bucket, &run.stats(chunk)).await? {
            Some(body) => serde_json::from_slice(&body).ok(),
            None => None,
        };
        Ok(ChunkOutcome {
            results: found.then_some(tally),
            stats,
        })
    }
}
