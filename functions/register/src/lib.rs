//! Register: register every decorated entry of one chunk in IoT, paced at this child's grant of
//! the account-wide budget (`lease`: a lease heartbeated while it runs; the static share
//! quota × (1 − reserve) ÷ MaxConcurrency without a table) and slowed by throttles (AIMD in the
//! importer's pacer); keep progress when throttling, a transient fault or the deadline stops it
//! early: the results of finished entries and, for an entry stopped midway, the steps it had
//! done, so the next invocation resumes each entry where it stopped.
//!
//! In a STANDARD child such a stop is not an error: Register hands the chunk back
//! (`"done": false`) and the ASL waits and calls it again. Only invocations that made no
//! progress count toward failure, in the payload's `continuation.stalls`, so a chunk that keeps
//! progressing through many throttles still finishes; [`MAX_STALLS`] of them in a row is a
//! stall and fails the child with the stop's error (`Thingpress.Throttled` for throttling). An
//! EXPRESS child keeps the error and its one ASL retry (it must end within 5 minutes).

pub mod lease;
mod metrics;

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use futures::StreamExt;
use lambda_runtime::LambdaEvent;
use thingpress_budget::{DynamoLeases, LeaseTable};
use thingpress_importer::{
    ACTIVATION_APIS, Activation, ApiCalls, DECOMMISSION_APIS, EntryResult, EntrySteps, IMPORT_APIS,
    ImportError, Importer, Outcome, Removal, TargetClients,
};
use thingpress_manifest::ErrorName;
use thingpress_metrics::Emitter;
use thingpress_product::{Decorated, Target};
use thingpress_run::payload::{
    ChildExecutionType, ChunkSummary, Continuation, DecoratedChunk, Done, Operation, RegisterOutput,
};
use thingpress_run::records::{ChunkFailure, ChunkStats, DecoratedLine, ProgressLine, now_ms};
use thingpress_run::{RunStore, Settings, Store, TaskError};

/// Entries registered at once within one chunk: enough to keep every paced API busy while
/// others wait on network round trips.
const ENTRIES_IN_FLIGHT: usize = 8;
/// Time kept back before the Lambda deadline to save progress.
const DEADLINE_MARGIN: Duration = Duration::from_secs(20);
/// A STANDARD invocation hands the chunk back after this long at most, so progress is saved at
/// least this often (a killed invocation loses only what it did since its start).
pub const TIME_BOX: Duration = Duration::from_secs(300);
/// Invocations in a row without progress after which the chunk is stalled and fails.
pub const MAX_STALLS: u32 = 8;
/// Invocations per chunk and child: keeps a child's history under Step Functions' 25,000
/// events even if every pass exhausted Register's Lambda-service and crash retriers (36 events;
/// tests/asl.rs derives them from the ASL and checks the product). A clean pass is 9 events.
pub const MAX_INVOCATIONS: u32 = 640;
/// The longest wait between two invocations without progress, as the old retrier's cap.
const MAX_WAIT_SECONDS: u32 = 60;

/// The register task.
pub struct Task<S> {
    store: S,
    /// IoT in each target (the stack's own account and Region, or a role assumed elsewhere).
    iot: TargetClients,
    /// The stack's own Region.
    region: String,
    settings: Settings,
    /// The account-wide budget's lease table; none paces at the static share.
    budget: Option<Arc<dyn LeaseTable>>,
    /// Where each invocation's metrics lines go.
    metrics: Emitter,
}

/// Why a chunk stopped before its end.
enum Stop {
    Error(ImportError),
    Deadline,
}

/// A chunk's entries as this attempt found them: finished ones (from earlier attempts, and
/// decoration rejections) and the rest, each with the steps an earlier attempt did.
struct Pending<'a> {
    results: Vec<EntryResult>,
    todo: Vec<Work<'a>>,
}

/// One entry left to do: an import's, resumed from the steps kept for it, or an activation's
/// or a decommission's (whose steps are idempotent and planned from what IoT holds, so they
/// need none kept).
enum Work<'a> {
    Register(&'a Decorated, EntrySteps),
    Activate(&'a Activation),
    Remove(&'a Removal),
}

impl Work<'_> {
    /// The steps kept for an import's entry.
    fn steps(&self) -> Option<&EntrySteps> {
        match self {
            Work::Register(_, steps) => Some(steps),
            Work::Activate(_) | Work::Remove(_) => None,
        }
    }

    /// The steps kept for an import's entry, taken.
    fn into_steps(self) -> Option<EntrySteps> {
        match self {
            Work::Register(_, steps) => Some(steps),
            Work::Activate(_) | Work::Remove(_) => None,
        }
    }
}

impl<S: Store + Clone> Task<S> {
    /// Builds the task once per container: the IoT client leaves retries to the importer, and
    /// the lease table named by `BUDGET_TABLE` (if any) gets its DynamoDB client here, once.
    pub fn new(store: S, config: &SdkConfig, settings: Settings) -> Self {
        let budget =
            thingpress_budget::table_name_from_env(|name| std::env::var(name).ok()).map(|table| {
                tracing::info!(table, "pacing by the account-wide budget");
                Arc::new(DynamoLeases::from_config(config, table)) as Arc<dyn LeaseTable>
            });
        Task {
            store,
            iot: TargetClients::new(config, "thingpress-register"),
            region: config.region().map(ToString::to_string).unwrap_or_default(),
            settings,
            budget,
            metrics: Emitter::from_env(|name| std::env::var(name).ok()),
        }
    }

    /// Builds the task with a given IoT client for every target (tests pass a mock), without
    /// a budget table.
    pub fn with_iot(store: S, iot: aws_sdk_iot::Client, settings: Settings) -> Self {
        Task {
            store,
            iot: TargetClients::fixed(iot),
            region: String::new(),
            settings,
            budget: None,
            metrics: Emitter::off(),
        }
    }

    /// The same task holding leases in `budget` (tests pass `MemLeases`).
    pub fn with_budget(self, budget: Option<Arc<dyn LeaseTable>>) -> Self {
        Task { budget, ..self }
    }

    /// The same task writing its metrics lines to `metrics` (tests capture them).
    pub fn with_metrics(self, metrics: Emitter) -> Self {
        Task { metrics, ..self }
    }

    /// Handles one chunk.
    pub async fn handle(
        &self,
        event: LambdaEvent<DecoratedChunk>,
    ) -> Result<RegisterOutput, TaskError> {
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

    /// Registers the chunk's entries, stopping to save progress before `deadline` (or, in a
    /// STANDARD child, after [`TIME_BOX`]); a STANDARD child's stop is handed back to be
    /// continued, an EXPRESS child's is an error.
    pub async fn register(
        &self,
        input: &DecoratedChunk,
        deadline: SystemTime,
    ) -> Result<RegisterOutput, TaskError> {
        let continues = input.child_execution_type != Some(ChildExecutionType::Express);
        let deadline = if continues {
            deadline.min(SystemTime::now() + TIME_BOX + DEADLINE_MARGIN)
        } else {
            deadline
        };
        let run = RunStore::new(
            self.store.clone(),
            &self.settings.import_bucket,
            input.chunk_input().layout()?,
        );
        let n = input.chunk.chunk;
        if let Some(done) = run.results(n).await? {
            // A redelivered or retried chunk that already finished: report, do nothing twice.
            return Ok(RegisterOutput::Finished(summary(&input.run_id, n, &done)));
        }
        let info = run.run_info().await?;
        let lines = run.decorated(n).await?.ok_or_else(|| {
            TaskError::invalid_input(format!("{} does not exist", run.layout().decorated(n)))
        })?;
        let progress = run.progress(n).await?;
        let saved = metrics::Outcomes::saved(&progress);
        let Pending { mut results, todo } = pending(&lines, progress);
        let before = Progress::of(&results, todo.iter().filter_map(Work::steps));
        let mut stats = run.stats(n).await?.unwrap_or_default();
        if stats.started_at_ms == 0 {
            stats.started_at_ms = now_ms();
        }
        stats.attempts += 1;

        // Until the budget grants more (or less), each child runs at its static share.
        let calls = match info.operation {
            Operation::Import => IMPORT_APIS,
            Operation::Activate => ACTIVATION_APIS,
            Operation::Decommission | Operation::DecommissionDryRun => DECOMMISSION_APIS,
        };
        let target = input
            .chunk
            .target
            .clone()
            .unwrap_or_else(|| Target::home(&self.region));
        let scope = if target.is_home(&self.region) {
            lease::Scope::home()
        } else {
            lease::Scope::target(&target.id())
        };
        let iot = match self.iot.iot(&target).await {
            Ok(iot) => iot,
            // STS throttled or failed: a stop without progress, continued after a backoff.
            Err(e @ (ImportError::Throttled(_) | ImportError::Transient(_))) => {
                let partial = todo.into_iter().filter_map(Work::into_steps).collect();
                let invocation = Invocation {
                    stop: Some(Stop::Error(e)),
                    before,
                    results,
                    partial,
                    stats,
                };
                return self.finish(input, &lines, invocation, continues).await;
            }
            Err(e) => {
                let error = TaskError::from(e);
                tracing::warn!(run_id = input.run_id, chunk = n, target = target.id(), error = %error, "target unavailable");
                stats.failure = Some(chunk_failure(&error));
                run.put_stats(n, &stats).await?;
                return Err(error);
            }
        };
        let (shares, pacer) = lease::Shares::new(
            &self.settings.quotas,
            self.settings.quota_reserve,
            info.max_concurrency,
            calls,
            scope,
        )
        .map_err(TaskError::from)?;
        let holder = lease::holder(
            self.budget.as_ref(),
            lease::holder_id(&input.run_id, n),
            &shares,
        );
        let importer = Importer::new(iot, pacer);
        let mut partial: Vec<EntrySteps> = Vec::new();
        let stop = lease::holding(
            holder.as_ref(),
            &shares,
            importer.pacer(),
            register_all(
                &importer,
                todo,
                deadline,
                &mut results,
                &mut partial,
                &mut stats.done_per_minute,
            ),
        )
        .await;
        let calls = importer.call_stats();
        add_calls(&mut stats.api_calls, &calls.calls);
        add_calls(&mut stats.api_attempts, &calls.attempts);
        add_calls(&mut stats.api_throttles, &calls.throttles);
        stats.token_wait_ms = stats
            .token_wait_ms
            .saturating_add(u64::try_from(calls.token_wait.as_millis()).unwrap_or(u64::MAX));
        results.sort_by_key(|r| r.index);
        let chunk_metrics =
            metrics::ChunkMetrics::new(&info, n, &saved, &results, &calls, stats.started_at_ms);
        let invocation = Invocation {
            stop,
            before,
            results,
            partial,
            stats,
        };
        let output = self.finish(input, &lines, invocation, continues).await;
        let chunk_done = matches!(output, Ok(RegisterOutput::Finished(_)));
        self.metrics
            .emit(&chunk_metrics.documents(&self.metrics, chunk_done, now_ms()));
        // The lease goes on with a continuation of the chunk, and ends with the chunk.
        if !matches!(output, Ok(RegisterOutput::Continuing(_))) {
            lease::release(holder.as_ref()).await;
        }
        output
    }

    /// Saves what the invocation did and says what comes next: the chunk finished, handed back
    /// to be continued, or failed.
    async fn finish(
        &self,
        input: &DecoratedChunk,
        lines: &[DecoratedLine],
        invocation: Invocation,
        continues: bool,
    ) -> Result<RegisterOutput, TaskError> {
        let Invocation {
            stop,
            before,
            results,
            mut partial,
            mut stats,
        } = invocation;
        let n = input.chunk.chunk;
        let run = RunStore::new(
            self.store.clone(),
            &self.settings.import_bucket,
            input.chunk_input().layout()?,
        );

        let Some(stop) = stop else {
            if results.len() != lines.len() {
                return Err(TaskError::invalid_input(format!(
                    "chunk {n}: {} results for {} entries",
                    results.len(),
                    lines.len()
                )));
            }
            stats.finished_at_ms = now_ms();
            stats.failure = None;
            run.put_stats(n, &stats).await?;
            run.put_results(n, &results).await?;
            tracing::info!(
                run_id = input.run_id,
                chunk = n,
                entries = results.len(),
                attempts = stats.attempts,
                "chunk registered"
            );
            return Ok(RegisterOutput::Finished(summary(
                &input.run_id,
                n,
                &results,
            )));
        };
        let progressed = Progress::of(&results, partial.iter()).beyond(&before);
        let error = stop_error(stop, n, results.len(), lines.len(), &mut stats);
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
        run.put_progress(n, &kept).await?;
        let next = if continues {
            next_continuation(input.continuation, &error, progressed, jitter())
        } else {
            Err(String::new())
        };
        match &next {
            Ok(_) if progressed => stats.continuations += 1,
            _ if !progressed => stats.stalls += 1,
            _ => {}
        }
        let next = next.map_err(|why| {
            if why.is_empty() {
                error.clone()
            } else {
                TaskError::new(error.name, format!("{}; {why}", error.message))
            }
        });
        stats.failure = next.as_ref().err().map(chunk_failure);
        run.put_stats(n, &stats).await?;
        match next {
            Ok(continuation) => {
                tracing::info!(run_id = input.run_id, chunk = n, done = finished, of = lines.len(), stop = %error, progressed, invocation = continuation.invocation, stalls = continuation.stalls, wait_seconds = continuation.wait_seconds, "chunk handed back to continue");
                Ok(RegisterOutput::Continuing(input.continuing(continuation)))
            }
            Err(error) => {
                tracing::warn!(run_id = input.run_id, chunk = n, done = finished, of = lines.len(), error = %error, "chunk stopped early");
                Err(error)
            }
        }
    }
}

/// What one invocation did to its chunk, for [`Task::finish`] to save and act on.
struct Invocation {
    /// Why it stopped before every entry finished; `None` when all did.
    stop: Option<Stop>,
    /// The chunk's progress when it started.
    before: Progress,
    /// Every finished entry, this invocation's and earlier ones', in manifest order.
    results: Vec<EntryResult>,
    /// The steps done on entries that did not finish.
    partial: Vec<EntrySteps>,
    stats: ChunkStats,
}

/// What the report shows for a chunk that failed with `error`.
fn chunk_failure(error: &TaskError) -> ChunkFailure {
    ChunkFailure {
        error: error.name,
        message: error.message.clone(),
    }
}

/// Adds an invocation's per-API tally to the chunk's, by operation name.
fn add_calls(into: &mut BTreeMap<String, u64>, calls: &ApiCalls) {
    for (api, n) in &calls.0 {
        *into.entry(api.as_str().to_owned()).or_default() += n;
    }
}

/// What an invocation has done to a chunk: entries finished and steps done on the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    finished: usize,
    steps: usize,
}

impl Progress {
    fn of<'a>(results: &[EntryResult], partial: impl Iterator<Item = &'a EntrySteps>) -> Progress {
        Progress {
            finished: results.len(),
            steps: partial.map(steps_done).sum(),
        }
    }

    /// Whether this is further than `before`: an entry finished, or a step done on one that
    /// did not finish (a finished entry's steps leave `steps`, so it counts only as finished).
    fn beyond(&self, before: &Progress) -> bool {
        self.finished > before.finished || self.steps > before.steps
    }
}

fn steps_done(steps: &EntrySteps) -> usize {
    usize::from(steps.certificate.is_some())
        + usize::from(steps.conflict_checked)
        + usize::from(steps.thing)
        + usize::from(steps.principal)
        + steps.policies.len()
        + steps.groups.len()
}

/// Where the loop goes after a stop with `error`, from where it stood (`None` on the first
/// invocation): `Ok` to continue after the Wait, `Err(why)` to fail the chunk. Only a
/// retryable stop continues; progress resets the stall count and waits little (none after a
/// deadline or time-box stop), a stall backs off with full jitter (`random` picks in the
/// envelope), and [`MAX_STALLS`] stalls in a row, or [`MAX_INVOCATIONS`], fail the chunk.
pub fn next_continuation(
    previous: Option<Continuation>,
    error: &TaskError,
    progressed: bool,
    random: u64,
) -> Result<Continuation, String> {
    if error.name.kind() != thingpress_manifest::ErrorKind::Retryable {
        return Err(String::new());
    }
    let previous = previous.unwrap_or_default();
    let invocation = previous.invocation.saturating_add(1);
    if invocation >= MAX_INVOCATIONS {
        return Err(format!(
            "continuation limit: {invocation} invocations for one chunk"
        ));
    }
    if progressed {
        let wait_seconds = u32::from(error.name != ErrorName::DeadlineReached);
        return Ok(Continuation {
            invocation,
            stalls: 0,
            wait_seconds,
        });
    }
    let stalls = previous.stalls.saturating_add(1);
    if stalls > MAX_STALLS {
        return Err(format!("{MAX_STALLS} attempts in a row without progress"));
    }
    let envelope = 2u32
        .saturating_mul(2u32.saturating_pow(stalls))
        .min(MAX_WAIT_SECONDS);
    let wait_seconds = u32::try_from(random % (u64::from(envelope) + 1)).unwrap_or(envelope);
    Ok(Continuation {
        invocation,
        stalls,
        wait_seconds,
    })
}

/// A random number for the backoff's jitter (std's per-process random hash keys, no extra
/// dependency; jitter needs spread, not strength).
fn jitter() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// Sorts the chunk's lines into what is finished (kept progress, decoration rejections) and
/// what is left, resuming each entry from the steps kept for it.
fn pending(lines: &[DecoratedLine], progress: Vec<ProgressLine>) -> Pending<'_> {
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
    let done: BTreeSet<u64> = results.iter().map(|r| r.index).collect();
    let mut todo: Vec<Work<'_>> = Vec::new();
    for line in lines {
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
                todo.push(Work::Register(d, steps));
            }
            DecoratedLine::Activation(a) if !done.contains(&a.device.index) => {
                todo.push(Work::Activate(a));
            }
            DecoratedLine::Removal(r) if !done.contains(&r.device.index) => {
                todo.push(Work::Remove(r));
            }
            _ => {}
        }
    }
    Pending { results, todo }
}

/// The task error for a chunk that stopped early, counted in its stats.
fn stop_error(stop: Stop, chunk: u32, done: usize, of: usize, stats: &mut ChunkStats) -> TaskError {
    let error = match stop {
        Stop::Error(e) => TaskError::from(e),
        Stop::Deadline => TaskError::new(
            ErrorName::DeadlineReached,
            format!(
                "chunk {chunk}: Lambda deadline near after {done} of {of} entries; progress kept"
            ),
        ),
    };
    match error.name {
        ErrorName::Throttled => stats.throttled += 1,
        ErrorName::DeadlineReached => stats.deadline_stops += 1,
        _ => {}
    }
    error
}

/// Registers entries with bounded concurrency until all are done, one fails the task, or the
/// deadline nears. In-flight entries always finish, so their results are kept; an entry that
/// failed, or never started, keeps the steps it has done in `partial`.
async fn register_all(
    importer: &Importer,
    todo: Vec<Work<'_>>,
    deadline: SystemTime,
    results: &mut Vec<EntryResult>,
    partial: &mut Vec<EntrySteps>,
    done_per_minute: &mut BTreeMap<u64, u64>,
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
            let Some(work) = pending.next() else {
                break;
            };
            in_flight.push(async move {
                match work {
                    Work::Register(entry, mut steps) => {
                        let result = importer.resume(entry, &mut steps).await;
                        (Some(steps), result)
                    }
                    Work::Activate(entry) => (None, importer.activate(entry).await),
                    Work::Remove(entry) => (None, importer.decommission(entry).await),
                }
            });
        }
        match in_flight.next().await {
            Some((_, Ok(result))) => {
                if result.outcome != Outcome::Rejected {
                    *done_per_minute.entry(now_ms() / 60_000).or_default() += 1;
                }
                results.push(result);
            }
            Some((steps, Err(e))) => {
                partial.extend(steps.filter(EntrySteps::started));
                // Keep the first error; in-flight entries still finish and are kept.
                if !matches!(stop, Some(Stop::Error(_))) {
                    stop = Some(Stop::Error(e));
                }
            }
            None => break,
        }
    }
    // Entries the stop kept from starting keep the steps an earlier attempt did.
    partial.extend(
        pending
            .filter_map(Work::into_steps)
            .filter(EntrySteps::started),
    );
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
        actions: Vec::new(),
        error: Some(r.error),
        message: Some(r.message.clone()),
    }
}

fn summary(run_id: &str, chunk: u32, results: &[EntryResult]) -> ChunkSummary {
    let count = |outcome: Outcome| results.iter().filter(|r| r.outcome == outcome).count() as u64;
    ChunkSummary {
        run_id: run_id.to_owned(),
        chunk,
        registered: count(Outcome::Registered),
        already_registered: count(Outcome::AlreadyRegistered),
        activated: count(Outcome::Activated),
        already_active: count(Outcome::AlreadyActive),
        removed: count(Outcome::Removed),
        would_remove: count(Outcome::WouldRemove),
        already_removed: count(Outcome::AlreadyRemoved),
        rejected: count(Outcome::Rejected),
        done: Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use thingpress_manifest::{Rejected, Supplier};
    use thingpress_product::Profile;
    use thingpress_run::records::{ChunkDescriptor, RunInfo, SourceObject};
    use thingpress_run::{MemStore, RunLayout};

    #[tokio::test]
    async fn a_deadline_stop_is_its_own_name_and_count_with_progress_kept() {
        let store = Arc::new(MemStore::new());
        let settings =
            Settings::from_lookup(|name| (name == "IMPORT_BUCKET").then(|| "b".to_owned()))
                .unwrap();
        let layout = RunLayout::new("r").unwrap();
        let run = RunStore::new(Arc::clone(&store), "b", layout.clone());
        run.put_run_info(&RunInfo {
            run_id: "r".into(),
            operation: Default::default(),
            source: SourceObject {
                bucket: "b".into(),
                key: "m/x.pem".into(),
                etag: String::new(),
                version_id: None,
            },
            profile: Profile::named("widget"),
            supplier: Supplier::Pem,
            chunk_size: 1,
            max_concurrency: 1,
            entries: 1,
            accepted: 1,
            rejected: 0,
            chunk_count: 1,
            rejected_parts: 0,
            started_at_ms: 1,
            rates: None,
        })
        .await
        .unwrap();
        let rejected = Rejected {
            index: 0,
            error: ErrorName::InvalidThingName,
            message: "no name".into(),
            device_id: None,
        };
        let decorated_key = run
            .put_decorated(0, &[DecoratedLine::Rejected(rejected)])
            .await
            .unwrap();
        // No IoT call is made: the deadline is already within the margin.
        let iot = aws_sdk_iot::Client::from_conf(
            aws_sdk_iot::Config::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .build(),
        );
        let task = Task::with_iot(Arc::clone(&store), iot, settings);
        let input = DecoratedChunk {
            run_id: "r".into(),
            bucket: "b".into(),
            chunk: ChunkDescriptor {
                chunk: 0,
                key: layout.chunk(0),
                entries: 1,
                first_index: 0,
                target: None,
            },
            child_execution_type: None,
            decorated_key,
            decorated: 0,
            rejected: 1,
            done: None,
            continuation: None,
        };
        // STANDARD: handed back, a stall since nothing new was done.
        let output = task.register(&input, SystemTime::now()).await.unwrap();
        let RegisterOutput::Continuing(again) = output else {
            panic!("a continuation, not {output:?}");
        };
        let continuation = again.continuation.unwrap();
        assert_eq!((continuation.invocation, continuation.stalls), (1, 1));
        assert!(continuation.wait_seconds <= 4, "{continuation:?}");
        let stats = run.stats(0).await.unwrap().unwrap();
        assert_eq!(
            (
                stats.deadline_stops,
                stats.throttled,
                stats.attempts,
                stats.stalls
            ),
            (1, 0, 1, 1)
        );
        assert_eq!(
            run.progress(0).await.unwrap().len(),
            1,
            "the finished entry is kept"
        );
        assert_eq!(run.results(0).await.unwrap(), None);

        // EXPRESS: the stop is the error, for the ASL's one retry.
        let express = DecoratedChunk {
            child_execution_type: Some(ChildExecutionType::Express),
            ..input
        };
        let err = task
            .register(&express, SystemTime::now())
            .await
            .unwrap_err();
        assert_eq!(err.name, ErrorName::DeadlineReached, "{err}");
        assert!(err.message.contains("Lambda deadline near"), "{err}");
        let stats = run.stats(0).await.unwrap().unwrap();
        assert_eq!((stats.deadline_stops, stats.attempts), (2, 2));
    }

    fn stop(name: ErrorName) -> TaskError {
        TaskError::new(name, "stopped")
    }

    #[test]
    fn progress_continues_at_once_and_resets_the_stall_count() {
        let previous = Some(Continuation {
            invocation: 7,
            stalls: 5,
            wait_seconds: 30,
        });
        let after_throttle = next_continuation(previous, &stop(ErrorName::Throttled), true, 99);
        assert_eq!(
            after_throttle,
            Ok(Continuation {
                invocation: 8,
                stalls: 0,
                wait_seconds: 1
            })
        );
        let after_deadline =
            next_continuation(previous, &stop(ErrorName::DeadlineReached), true, 99).unwrap();
        assert_eq!(after_deadline.wait_seconds, 0);
        let after_fault = next_continuation(None, &stop(ErrorName::Transient), true, 0).unwrap();
        assert_eq!((after_fault.invocation, after_fault.stalls), (1, 0));
    }

    #[test]
    fn stalls_back_off_with_full_jitter_and_fail_after_the_limit() {
        let mut at = None;
        for stalls in 1..=MAX_STALLS {
            let envelope = (2 * 2u32.pow(stalls)).min(MAX_WAIT_SECONDS);
            let low = next_continuation(at, &stop(ErrorName::Throttled), false, 0).unwrap();
            let high =
                next_continuation(at, &stop(ErrorName::Throttled), false, u64::from(envelope))
                    .unwrap();
            let wrapped = next_continuation(
                at,
                &stop(ErrorName::Throttled),
                false,
                u64::from(envelope) + 1,
            )
            .unwrap();
            assert_eq!((low.stalls, low.wait_seconds), (stalls, 0));
            assert_eq!(high.wait_seconds, envelope, "the envelope is reachable");
            assert_eq!(wrapped.wait_seconds, 0, "and never exceeded");
            at = Some(high);
        }
        let stalled = next_continuation(at, &stop(ErrorName::Throttled), false, 0).unwrap_err();
        assert!(stalled.contains("without progress"), "{stalled}");
        // One invocation with progress in between starts the count again.
        let resumed = next_continuation(at, &stop(ErrorName::Throttled), true, 0).unwrap();
        assert!(next_continuation(Some(resumed), &stop(ErrorName::Throttled), false, 0).is_ok());
    }

    #[test]
    fn terminal_errors_and_the_invocation_limit_end_the_loop() {
        assert_eq!(
            next_continuation(None, &stop(ErrorName::InvalidInput), true, 0),
            Err(String::new())
        );
        let last = Some(Continuation {
            invocation: MAX_INVOCATIONS - 1,
            stalls: 0,
            wait_seconds: 0,
        });
        let limit = next_continuation(last, &stop(ErrorName::Throttled), true, 0).unwrap_err();
        assert!(limit.contains("continuation limit"), "{limit}");
    }
}
