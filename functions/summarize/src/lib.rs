//! Summarize: check that every chunk has results, count every entry's outcome, write the run
//! report, and fail the run with `Thingpress.IncompleteImport` when anything is missing.
//!
//! Memory stays flat as runs grow: every results and rejections file is streamed line by line
//! into counts, chunk by chunk, and only the counts are kept (measured with
//! `examples/summarize_memory.rs`).

use futures::StreamExt;
use lambda_runtime::LambdaEvent;
use serde::Deserialize;
use thingpress_manifest::ErrorName;
use thingpress_run::payload::{RunSummary, SummarizeInput, SummaryStatus};
use thingpress_run::records::{OutcomeCounts, now_ms};
use thingpress_run::report::{ChunkOutcome, ChunkTally, RunReportBuilder, RunStatus};
use thingpress_run::{RunLayout, RunStore, Settings, Store, TaskError};

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

impl<S: Store + Clone> Task<S> {
    /// Builds the task once per container (it needs only the store).
    pub fn with_store(store: S, settings: Settings) -> Self {
        Task { store, settings }
    }

    /// Handles the end of a run.
    pub async fn handle(
        &self,
        event: LambdaEvent<SummarizeInput>,
    ) -> Result<RunSummary, TaskError> {
        self.summarize(&event.payload).await
    }

    /// Summarizes the run the input (Split's output, or a prepared retry) names.
    pub async fn summarize(&self, input: &SummarizeInput) -> Result<RunSummary, TaskError> {
        let run_id = input.run_id();
        let run = RunStore::new(
            self.store.clone(),
            &self.settings.import_bucket,
            RunLayout::new(run_id)?,
        );
        let info = run.run_info().await?;
        let index = run.chunk_index().await?;

        let mut split_rejections = OutcomeCounts::default();
        for part in 0..info.rejected_parts {
            let found = run
                .for_each_rejected(part, |r: RejectionLine| split_rejections.reject(r.error))
                .await?;
            if !found {
                return Err(TaskError::new(
                    ErrorName::IncompleteImport,
                    format!("{} is missing", run.layout().rejected(part)),
                ));
            }
        }

        // Chunks are read a few at a time and added up in index order as they arrive.
        let mut builder = RunReportBuilder::new(&split_rejections, &index);
        let run_ref = &run;
        let mut chunks = futures::stream::iter(&index)
            .map(|descriptor| async move {
                let outcome = chunk_outcome(run_ref, descriptor.chunk).await;
                (descriptor, outcome)
            })
            .buffered(READS_IN_FLIGHT);
        while let Some((descriptor, outcome)) = chunks.next().await {
            builder.add(descriptor, outcome?);
        }
        drop(chunks);
        let report = builder.finish(&info, &index, now_ms());
        let report_key = run.put_report(&report).await?;
        tracing::info!(
            run_id,
            status = ?report.status,
            entries = report.entries,
            registered = report.outcomes.registered,
            already_registered = report.outcomes.already_registered,
            activated = report.outcomes.activated,
            already_active = report.outcomes.already_active,
            removed = report.outcomes.removed,
            would_remove = report.outcomes.would_remove,
            already_removed = report.outcomes.already_removed,
            rejected = report.outcomes.rejected,
            "run summarized"
        );
        if report.status == RunStatus::Incomplete {
            return Err(TaskError::new(
                ErrorName::IncompleteImport,
                format!("run {run_id}: {}", report.problems.join("; ")),
            ));
        }
        Ok(RunSummary {
            run_id: run_id.to_owned(),
            status: SummaryStatus::Complete,
            entries: report.entries,
            registered: report.outcomes.registered,
            already_registered: report.outcomes.already_registered,
            activated: report.outcomes.activated,
            already_active: report.outcomes.already_active,
            removed: report.outcomes.removed,
            would_remove: report.outcomes.would_remove,
            already_removed: report.outcomes.already_removed,
            rejected: report.outcomes.rejected,
            report_key,
        })
    }
}

/// One chunk's results added up, and its stats.
async fn chunk_outcome<S: Store>(run: &RunStore<S>, chunk: u32) -> Result<ChunkOutcome, TaskError> {
    let mut tally = ChunkTally::default();
    let found = run.for_each_result(chunk, |line| tally.add(line)).await?;
    Ok(ChunkOutcome {
        results: found.then_some(tally),
        stats: run.stats(chunk).await?,
    })
}
