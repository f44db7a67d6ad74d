//! Register: register every decorated entry of one chunk in IoT, paced at this child's share of
//! the account quotas; keep progress when throttling or the deadline stops it early: the results
//! of finished entries and, for an entry stopped midway, the steps it had done, so the retry
//! resumes each entry where it stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use futures::StreamExt;
use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};
use thingpress_importer::{EntryResult, EntrySteps, ImportError, Importer, Outcome, Pacer};
use thingpress_run::records::{
    ChunkStats, DecoratedLine, ProgressLine, RunInfo, now_ms, parse_chunk_input,
};
use thingpress_run::store::{get_json, get_jsonl, put_json, to_jsonl};
use thingpress_run::{RunLayout, Settings, Store, TaskError};
use thingpress_product::Decorated;

/// Entries registered at once within one chunk: enough to keep every paced API busy while
/// others wait on network round trips.
const ENTRIES_IN_FLIGHT: usize = 8;
/// Time kept back before the Lambda deadline to save progress.
const DEADLINE_MARGIN: Duration = Duration::from_secs(20);

/// The register task.
pub struct Task<S> {
    store: S,
    iot: aws_sdk_iot::Client,
    settings: Settings,
}

/// Why a chunk stopped before its end.
enum Stop {
    Error(ImportError),
    Deadline,
}

impl<S: Store> Task<S> {
    /// Builds the task once per container; the IoT client gets the importer's short retry.
    pub fn new(store: S, config: &SdkConfig, settings: Settings) -> Self {
        let iot = aws_sdk_iot::config::Builder::from(config)
            .retry_config(thingpress_importer::sdk_retry_config())
            .build();
        Task::with_iot(store, aws_sdk_iot::Client::from_conf(iot), settings)
    }

    /// Builds the task with a given IoT client (tests pass a mock).
    pub fn with_iot(store: S, iot: aws_sdk_iot::Client, settings: Settings) -> Self {
        Task {
            store,
            iot,
            settings,
        }
    }

    /// Handles one chunk.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, TaskError> {
        let now = SystemTime::now();
        let deadline = UNIX_EPOCH + Duration::from_millis(event.context.deadline);
        // A deadline already past is not a real one (cargo lambda watch sends a constant
        // duration, not an epoch time): fall back to the configured timeout.
        let deadline = if deadline > now {
            deadline
        } else {
            now + Duration::from_secs(u64::from(self.settings.register_timeout_seconds))
        };
        self.register(&event.payload, deadline).await
    }

    /// Registers the chunk's entries, stopping to save progress before `deadline`.
    pub async fn register(
        &self,
        payload: &Value,
        deadline: SystemTime,
    ) -> Result<Value, TaskError> {
        let (run, chunk) = parse_chunk_input(payload)?;
        let bucket = &self.settings.import_bucket;
        if let Some(done) =
            get_jsonl::<EntryResult>(&self.store, bucket, &run.results(chunk.chunk)).await?
        {
            // A redelivered or retried chunk that already finished: report, do nothing twice.
            return Ok(summary(&run, chunk.chunk, &done));
        }
        let info: RunInfo = get_json(
            &self.store,
            bucket,
            &run.run_info(),
            TaskError::invalid_input,
        )
        .await?;
        let lines: Vec<DecoratedLine> = get_jsonl(&self.store, bucket, &run.decorated(chunk.chunk))
            .await?
            .ok_or_else(|| {
                TaskError::invalid_input(format!("{} does not exist", run.decorated(chunk.chunk)))
            })?;
        let progress: Vec<ProgressLine> =
            get_jsonl(&self.store, bucket, &run.progress(chunk.chunk))
                .await?
                .unwrap_or_default();
        let mut results: Vec<EntryResult> = Vec::new();
        let mut resumed: BTreeMap<u64, EntrySteps> = BTreeMap::new();
        for line in progress {
            match line {
                ProgressLine::Done(result) => results.push(result),
                ProgressLine::Partial { partial } => {
                    resumed.insert(partial.index, partial);
                }
            }
        }
        let mut stats: ChunkStats = match self.store.get(bucket, &run.stats(chunk.chunk)).await? {
            Some(body) => serde_json::from_slice(&body).unwrap_or_default(),
            None => ChunkStats::default(),
        };
        if stats.started_at_ms == 0 {
            stats.started_at_ms = now_ms();
        }
        stats.attempts += 1;

        let done: BTreeSet<u64> = results.iter().map(|r| r.index).collect();
        let mut todo: Vec<(&Decorated, EntrySteps)> = Vec::new();
        for line in &lines {
            match line {
                DecoratedLine::Rejected(r) if !done.contains(&r.index) => {
                    results.push(decoration_rejection(r));
                }
                DecoratedLine::Decorated(d) if !done.contains(&d.index) => {
                    // Steps saved for another entry (a chunk decorated anew) are not resumed.
                    let steps = resumed
                        .remove(&d.index)
                        .filter(|steps| steps.belong_to(d))
                        .unwrap_or_else(|| EntrySteps::new(d));
                    todo.push((d, steps));
                }
                _ => {}
            }
        }

        let pacer = Pacer::new(
            &self.settings.quotas,
            self.settings.safety_factor,
            info.max_concurrency,
        )
        .map_err(TaskError::from)?;
        let importer = Importer::new(self.iot.clone(), pacer);
        let mut partial: Vec<EntrySteps> = Vec::new();
        let stop = register_all(&importer, todo, deadline, &mut results, &mut partial).await;
        for (api, n) in &importer.api_calls().0 {
            *stats.api_calls.entry(api.as_str().to_owned()).or_default() += n;
        }
        results.sort_by_key(|r| r.index);

        match stop {
            None => {
                if results.len() != lines.len() {
                    return Err(TaskError::invalid_input(format!(
                        "chunk {}: {} results for {} entries",
                        chunk.chunk,
                        results.len(),
                        lines.len()
                    )));
                }
                stats.finished_at_ms = now_ms();
                put_json(&self.store, bucket, &run.stats(chunk.chunk), &stats).await?;
                self.store
                    .put(bucket, &run.results(chunk.chunk), to_jsonl(&results)?)
                    .await?;
                tracing::info!(
                    run_id = run.run_id(),
                    chunk = chunk.chunk,
                    entries = results.len(),
                    attempts = stats.attempts,
                    "chunk registered"
                );
                Ok(summary(&run, chunk.chunk, &results))
            }
            Some(stop) => {
                let error = match stop {
                    Stop::Error(e) => TaskError::from(e),
                    Stop::Deadline => TaskError::new(
                        thingpress_manifest::ErrorName::Throttled,
                        format!(
                            "chunk {}: Lambda deadline near after {} of {} entries; progress kept",
                            chunk.chunk,
                            results.len(),
                            lines.len()
                        ),
                    ),
                };
                if error.name == thingpress_manifest::ErrorName::Throttled {
                    stats.throttled += 1;
                }
                let finished = results.len();
                // Progress first: the retry skips finished entries and resumes the others at the step
                // they stopped on (every step is idempotent anyway).
                partial.sort_by_key(|steps| steps.index);
                let kept: Vec<ProgressLine> = results
                    .into_iter()
                    .map(ProgressLine::Done)
                    .chain(
                        partial
                            .into_iter()
                            .map(|partial| ProgressLine::Partial { partial }),
                    )
                    .collect();
                self.store
                    .put(bucket, &run.progress(chunk.chunk), to_jsonl(&kept)?)
                    .await?;
                put_json(&self.store, bucket, &run.stats(chunk.chunk), &stats).await?;
                tracing::warn!(run_id = run.run_id(), chunk = chunk.chunk, done = finished, of = lines.len(), error = %error, "chunk stopped early");
                Err(error)
            }
        }
    }
}

/// Registers entries with bounded concurrency until all are done, one fails the task, or the
/// deadline nears. In-flight entries always finish, so their results are kept; an entry that
/// failed, or never started, keeps the steps it has done in `partial`.
async fn register_all(
    importer: &Importer,
    todo: Vec<(&Decorated, EntrySteps)>,
    deadline: SystemTime,
    results: &mut Vec<EntryResult>,
    partial: &mut Vec<EntrySteps>,
) -> Option<Stop> {
    let mut stop = None;
    let mut pending = todo.into_iter();
    let mut in_flight = futures::stream::FuturesUnordered::new();
    loop {
        while stop.is_none() && in_flight.len() < ENTRIES_IN_FLIGHT {
            if SystemTime::now() + DEADLINE_MARGIN >= deadline {
                stop = Some(Stop::Deadline);
                break;
            }
            let Some((entry, mut steps)) = pending.next() else {
                break;
            };
            in_flight.push(async move {
                let result = importer.resume(entry, &mut steps).await;
                (steps, result)
            });
        }
        match in_flight.next().await {
            Some((_, Ok(result))) => results.push(result),
            Some((steps, Err(e))) => {
                if steps.started() {
                    partial.push(steps);
                }
                // Keep the first error; in-flight entries still finish and are kept.
                if !matches!(stop, Some(Stop::Error(_))) {
                    stop = Some(Stop::Error(e));
                }
            }
            None => break,
        }
    }
    // Entries the stop kept from starting keep the steps an earlier attempt did.
    partial.extend(pending.map(|(_, steps)| steps).filter(EntrySteps::started));
    stop
}

fn decoration_rejection(r: &thingpress_manifest::Rejected) -> EntryResult {
    EntryResult {
        index: r.index,
        certificate_id: String::new(),
        thing_name: String::new(),
        device_id: r.device_id.clone().unwrap_or_default(),
        outcome: Outcome::Rejected,
        certificate_arn: None,
        error: Some(r.error),
        message: Some(r.message.clone()),
    }
}

fn summary(run: &RunLayout, chunk: u32, results: &[EntryResult]) -> Value {
    let count = |outcome: Outcome| results.iter().filter(|r| r.outcome == outcome).count();
    json!({
        "runId": run.run_id(),
        "chunk": chunk,
        "registered": count(Outcome::Registered),
        "alreadyRegistered": count(Outcome::AlreadyRegistered),
        "rejected": count(Outcome::Rejected),
    })
}
