//! Summarize: check that every chunk has results, count every entry's outcome, write the run
//! report, and fail the run with `Thingpress.IncompleteImport` when anything is missing.

use aws_config::SdkConfig;
use futures::StreamExt;
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};
use thingpress_manifest::{ErrorName, Rejected};
use thingpress_pipeline::records::{ChunkDescriptor, ChunkStats, OutcomeCounts, RunInfo, now_ms};
use thingpress_pipeline::report::{ChunkOutcome, RunStatus, build_report};
use thingpress_pipeline::store::{get_json, get_jsonl, put_json};
use thingpress_pipeline::{RunLayout, Settings, Store, TaskError};

/// Chunk objects read at once.
const READS_IN_FLIGHT: usize = 16;

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
            let rejects: Vec<Rejected> =
                get_jsonl(&self.store, bucket, &key).await?.ok_or_else(|| {
                    TaskError::new(ErrorName::IncompleteImport, format!("{key} is missing"))
                })?;
            for r in rejects {
                split_rejections.reject(r.error);
            }
        }

        let chunks: Vec<ChunkOutcome> = futures::stream::iter(&index)
            .map(|descriptor| self.chunk_outcome(&run, descriptor.chunk))
            .buffered(READS_IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;

        let report = build_report(&info, &index, &split_rejections, &chunks, now_ms());
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
        let results = get_jsonl(&self.store, bucket, &run.results(chunk)).await?;
        let stats: Option<ChunkStats> = match self.store.get(bucket, &run.stats(chunk)).await? {
            Some(body) => serde_json::from_slice(&body).ok(),
            None => None,
        };
        Ok(ChunkOutcome { results, stats })
    }
}
