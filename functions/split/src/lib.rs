//! Split: claim the source object, resolve and check the profile, stream the manifest into
//! chunks of accepted entries and parts of rejected ones, and write the chunk index.

use aws_config::SdkConfig;
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use thingpress_importer::{ImportError, TargetClients};
use thingpress_manifest::{Entry, ErrorName, Rejected, Supplier, read_entries};
use thingpress_metrics::{Emitter, Metric};
use thingpress_product::{Profile, Target};
use thingpress_run::layout::{INCOMING_PREFIX, claim_key, profile_key, profile_of_incoming_key};
use thingpress_run::payload::{
    ConsoleInput, ExecutionInput, ObjectCreatedEvent, Operation, ProfileRef, Skipped, SplitInput,
    SplitOutput, Started, tolerated_failure_percentage,
};
use thingpress_run::records::{ChunkDescriptor, RunInfo, SourceObject, now_ms};
use thingpress_run::store::get_json;
use thingpress_run::{RunLayout, RunStore, Settings, Store, TaskError};
use thingpress_shipping::ShippingEntry;

/// Rejected entries per `rejected/NNNNN.jsonl` part.
const REJECTS_PER_PART: usize = 10_000;
/// Entries buffered between the parsing thread and the uploads.
const CHANNEL_DEPTH: usize = 4096;
/// Chunk uploads in flight at once.
const UPLOADS_IN_FLIGHT: usize = 8;

/// The split task with its clients, built once per container.
pub struct Task<S> {
    store: S,
    /// IoT in each target, for the profile check.
    iot: TargetClients,
    /// The stack's own Region: the target of a profile without `targets`.
    region: String,
    settings: Settings,
    /// Where each split's metrics line goes.
    metrics: Emitter,
}

/// What the state machine asked for, checked.
#[derive(Debug, Clone, PartialEq)]
struct Request {
    run: RunLayout,
    operation: Operation,
    bucket: String,
    key: String,
    profile: ProfileRef,
    force: bool,
}

/// The claim object under `claims/`: which run owns this content of the object.
#[derive(Debug, serde::Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Claim {
    run_id: String,
    bucket: String,
    key: String,
    etag: String,
    size: u64,
    /// The version the owning run read (informational: the claim is keyed by content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version_id: Option<String>,
    claimed_at_ms: u64,
}

/// `what` must not be empty.
fn non_empty(value: String, what: &str) -> Result<String, TaskError> {
    if value.is_empty() {
        return Err(TaskError::invalid_input(format!("{what} is empty")));
    }
    Ok(value)
}

impl Request {
    /// Checks Split's input: an S3 "Object Created" event, or the console input.
    fn new(input: SplitInput) -> Result<Request, TaskError> {
        let run = RunLayout::new(&input.run_id)?;
        match input.input {
            ExecutionInput::ObjectCreated(event) => Request::from_event(run, event),
            ExecutionInput::Console(console) => Request::from_console(run, console),
        }
    }

    fn from_event(run: RunLayout, event: ObjectCreatedEvent) -> Result<Request, TaskError> {
        if event.detail_type != "Object Created" {
            return Err(TaskError::invalid_input(format!(
                "event detail-type {:?} is not \"Object Created\"",
                event.detail_type
            )));
        }
        let bucket = non_empty(event.detail.bucket.name, "event detail.bucket.name")?;
        let key = non_empty(event.detail.object.key, "event detail.object.key")?;
        let profile = ProfileRef::Named(profile_of_incoming_key(&key)?.to_owned());
        Ok(Request {
            run,
            operation: Operation::Import,
            bucket,
            key,
            profile,
            force: false,
        })
    }

    fn from_console(run: RunLayout, input: ConsoleInput) -> Result<Request, TaskError> {
        let bucket = non_empty(input.manifest.bucket, "input manifest.bucket")?;
        let key = non_empty(input.manifest.key, "input manifest.key")?;
        let profile = match input.profile {
            Some(ProfileRef::Named(name)) if name.is_empty() => {
                return Err(TaskError::invalid_input("input profile is empty"));
            }
            Some(profile) => profile,
            None if key.starts_with(INCOMING_PREFIX) => {
                ProfileRef::Named(profile_of_incoming_key(&key)?.to_owned())
            }
            None => {
                return Err(TaskError::invalid_input(
                    "input.profile must be a profile name or an inline profile object",
                ));
            }
        };
        Ok(Request {
            run,
            operation: input.operation,
            bucket,
            key,
            profile,
            force: input.force.unwrap_or(false),
        })
    }
}

/// One message from the parsing thread.
enum Parsed {
    Supplier(Supplier),
    Entry(Entry),
    Shipped(ShippingEntry),
    /// The file cannot be read on: why.
    Failed(String),
}

impl<S: Store + Clone + 'static> Task<S> {
    /// The IoT clients get the importer's short SDK retry; the profile check adds its own few
    /// tries, and the state machine does the long backoff.
    pub fn new(store: S, config: &SdkConfig, settings: Settings) -> Self {
        Task {
            store,
            iot: TargetClients::new(config, "thingpress-split"),
            region: config.region().map(ToString::to_string).unwrap_or_default(),
            settings,
            metrics: Emitter::from_env(|name| std::env::var(name).ok()),
        }
    }

    /// Builds the task with a given IoT client for every target (tests pass a mock).
    pub fn with_iot(store: S, iot: aws_sdk_iot::Client, settings: Settings) -> Self {
        Task {
            store,
            iot: TargetClients::fixed(iot),
            region: String::new(),
            settings,
            metrics: Emitter::off(),
        }
    }

    /// The same task writing its metrics line to `metrics` (tests capture it).
    pub fn with_metrics(self, metrics: Emitter) -> Self {
        Task { metrics, ..self }
    }

    /// Handles one invocation.
    pub async fn handle(&self, event: LambdaEvent<SplitInput>) -> Result<SplitOutput, TaskError> {
        self.split_manifest(event.payload).await
    }

    /// Claims, checks and splits the manifest the input names.
    pub async fn split_manifest(&self, input: SplitInput) -> Result<SplitOutput, TaskError> {
        let request = Request::new(input)?;
        let profile = self.resolve_profile(&request.profile).await?;
        self.check_profile(&profile).await?;
        let (source, size) = self.source(&request).await?;
        let bucket = self.settings.import_bucket.clone();
        if let Some(owner) = self.claim(&request, &source, size).await? {
            tracing::info!(
                run_id = request.run.run_id(),
                owner,
                source = source.url(),
                "skipped: already claimed"
            );
            return Ok(SplitOutput::Skipped(Skipped {
                run_id: request.run.run_id().to_owned(),
                owner_run_id: owner,
                bucket,
                key: source.key,
            }));
        }
        let chunks_key = request.run.chunk_index();
        let info = self
            .split(request.run, request.operation, source, profile)
            .await?;
        self.emit_metrics(&info);
        let max_concurrency = info.map_concurrency(info.profile.targets.len());
        Ok(SplitOutput::Started(Started {
            run_id: info.run_id,
            bucket,
            chunks_key,
            chunk_count: info.chunk_count,
            max_concurrency,
            tolerated_failure_percentage: tolerated_failure_percentage(info.profile.targets.len()),
            entries: info.entries,
            accepted: info.accepted,
            rejected: info.rejected,
        }))
    }

    /// One metrics line per run split: the entries read and those rejected.
    fn emit_metrics(&self, info: &RunInfo) {
        let mut doc = self.metrics.document(now_ms());
        doc.property("runId", info.run_id.as_str())
            .property(
                "operation",
                serde_json::to_value(info.operation).unwrap_or_default(),
            )
            .put(Metric::ManifestEntries, info.entries as f64)
            .put(Metric::ManifestRejected, info.rejected as f64);
        self.metrics.emit(&[doc]);
    }

    /// The stack's allow-list, then the profile's resources in IoT.
    async fn check_profile(&self, profile: &Profile) -> Result<(), TaskError> {
        // The allow-list first: it needs no call, and a refused name is refused whatever IoT holds.
        let refused = self
            .settings
            .allow_list
            .problems(&profile.policies, &profile.all_thing_groups());
        if !refused.is_empty() {
            return Err(TaskError::invalid_profile(format!(
                "profile {:?}: {}",
                profile.name,
                refused.join("; ")
            )));
        }
        // Missing resources are InvalidProfile, in any target: nothing is registered anywhere.
        // A throttle or fault stays Throttled/Transient, so the state machine retries Split
        // instead of failing the run. Of several targets, one that cannot be reached (or that
        // denies the check) is left to fail its own chunks, named, while the others go on.
        let targets = profile.targets_or_home(&self.region);
        let several = targets.len() > 1;
        let mut problems = Vec::new();
        for target in &targets {
            let checked = match self.iot.iot(target).await {
                Ok(iot) => thingpress_importer::check_profile_resources(&iot, profile).await,
                Err(e) => Err(e),
            };
            match checked {
                Ok(()) => {}
                // With one target there is nothing to go on with: the run fails here.
                Err(ImportError::TargetUnavailable(why) | ImportError::AwsRejected(why))
                    if several =>
                {
                    tracing::warn!(
                        target = target.id(),
                        why,
                        "target unavailable: its chunks will fail"
                    );
                }
                Err(ImportError::ProfileProblems { problems: p, .. }) if several => {
                    problems.extend(
                        p.into_iter()
                            .map(|p| format!("target {}: {p}", target.id())),
                    );
                }
                Err(e) => return Err(TaskError::from(e)),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TaskError::from(ImportError::ProfileProblems {
                profile: profile.name.clone(),
                problems,
            }))
        }
    }

    async fn resolve_profile(&self, profile: &ProfileRef) -> Result<Profile, TaskError> {
        let profile = match profile {
            ProfileRef::Named(name) => {
                let key = profile_key(name)?;
                let body = self
                    .store
                    .get(&self.settings.import_bucket, &key)
                    .await?
                    .ok_or_else(|| {
                        TaskError::invalid_profile(format!(
                            "profile {name:?} not found at s3://{}/{key}",
                            self.settings.import_bucket
                        ))
                    })?;
                Profile::from_json(&body)
                    .map_err(|e| TaskError::invalid_profile(format!("profile {name:?}: {e}")))?
            }
            ProfileRef::Inline(fields) => {
                let body = serde_json::to_vec(fields)
                    .map_err(|e| TaskError::invalid_profile(format!("inline profile: {e}")))?;
                Profile::from_json(&body)
                    .map_err(|e| TaskError::invalid_profile(format!("inline profile: {e}")))?
            }
        };
        Ok(profile)
    }

    /// The object to import and its size.
    async fn source(&self, request: &Request) -> Result<(SourceObject, u64), TaskError> {
        let meta = self
            .store
            .head(&request.bucket, &request.key)
            .await?
            .ok_or_else(|| {
                TaskError::invalid_input(format!(
                    "manifest s3://{}/{} does not exist",
                    request.bucket, request.key
                ))
            })?;
        let source = SourceObject {
            bucket: request.bucket.clone(),
            key: request.key.clone(),
            etag: meta.etag,
            version_id: meta.version_id,
        };
        Ok((source, meta.size))
    }

    /// Claims the object's content (bucket, key, ETag, size) for this run; `Some(owner)` when
    /// another run owns it. Not the version id: every upload to the versioned bucket is a new
    /// version, and identical bytes uploaded again must be skipped, not imported twice.
    async fn claim(
        &self,
        request: &Request,
        source: &SourceObject,
        size: u64,
    ) -> Result<Option<String>, TaskError> {
        let key = claim_key(&source.bucket, &source.key, &source.etag, size);
        let bucket = &self.settings.import_bucket;
        let claim = Claim {
            run_id: request.run.run_id().to_owned(),
            bucket: source.bucket.clone(),
            key: source.key.clone(),
            etag: source.etag.clone(),
            size,
            version_id: source.version_id.clone(),
            claimed_at_ms: now_ms(),
        };
        let body = serde_json::to_vec(&claim)
            .map_err(|e| TaskError::invalid_input(format!("cannot serialise claim: {e}")))?;
        if request.force {
            self.store.put(bucket, &key, body).await?;
            return Ok(None);
        }
        if self.store.put_if_absent(bucket, &key, body).await? {
            return Ok(None);
        }
        let existing: Claim = get_json(&self.store, bucket, &key, TaskError::invalid_input).await?;
        // A retried Split of the same execution finds its own claim: carry on.
        Ok((existing.run_id != claim.run_id).then_some(existing.run_id))
    }

    /// The Map's concurrency and the chunk size for this profile.
    fn sizes(&self, profile: &Profile) -> (u32, u32) {
        let max_concurrency = self.settings.max_concurrency(
            profile.max_concurrency,
            profile.policies.len(),
            profile.thing_groups.len(),
        );
        let chunk_size = self
            .settings
            .chunk_size(
                profile.chunk_size,
                max_concurrency,
                profile.policies.len(),
                profile.thing_groups.len(),
            )
            .max(1);
        (max_concurrency, chunk_size)
    }

    /// Streams the manifest into chunks and parts of rejections, then writes `run.json` and,
    /// last, the chunk index.
    async fn split(
        &self,
        run: RunLayout,
        operation: Operation,
        source: SourceObject,
        profile: Profile,
    ) -> Result<RunInfo, TaskError> {
        let started_at_ms = now_ms();
        let (max_concurrency, chunk_size) = self.sizes(&profile);
        let reader = self
            .store
            .reader(&source.bucket, &source.key, source.version_id.as_deref())
            .await?;
        let (mut parsed, parser) = match operation {
            Operation::Import => {
                let options = profile.manifest_options().map_err(|e| {
                    TaskError::invalid_profile(format!("profile {:?}: {e}", profile.name))
                })?;
                spawn_parser(reader, options)
            }
            // Decommission reads the same device lists (certificate and/or device ids).
            Operation::Activate | Operation::Decommission | Operation::DecommissionDryRun => {
                spawn_shipping_parser(reader)
            }
        };
        let store = RunStore::new(self.store.clone(), &self.settings.import_bucket, run);
        let mut writer = Writer::new(store.clone(), chunk_size);
        let mut supplier = Supplier::Auto;
        while let Some(message) = parsed.recv().await {
            match message {
                Parsed::Supplier(s) => supplier = s,
                Parsed::Failed(e) => {
                    return Err(TaskError::new(
                        ErrorName::InvalidManifest,
                        format!("{}: {e}", source.url()),
                    ));
                }
                Parsed::Entry(Entry::Accepted(accepted)) => {
                    writer.accept(accepted.index, &accepted).await?;
                }
                Parsed::Entry(Entry::Rejected(rejected)) => writer.reject(&rejected).await?,
                Parsed::Shipped(ShippingEntry::Shipped(device)) => {
                    writer.accept(device.index, &device).await?;
                }
                Parsed::Shipped(ShippingEntry::Rejected(rejected)) => {
                    writer.reject(&rejected).await?;
                }
            }
        }
        parser.await.map_err(|e| {
            TaskError::new(
                ErrorName::Transient,
                format!("manifest parser stopped: {e}"),
            )
        })?;
        let mut written = writer.finish().await?;
        written.index = items(written.index, &profile.targets);
        let rates = (operation == Operation::Import).then(|| {
            self.settings
                .rates(profile.policies.len(), profile.thing_groups.len())
        });
        let info = RunInfo {
            run_id: store.layout().run_id().to_owned(),
            operation,
            source,
            profile,
            supplier,
            chunk_size,
            max_concurrency,
            entries: written.accepted + written.rejected,
            accepted: written.accepted,
            rejected: written.rejected,
            chunk_count: u32::try_from(written.index.len()).unwrap_or(u32::MAX),
            rejected_parts: written.rejected_parts,
            started_at_ms,
            rates,
        };
        // run.json before the index: every task that can see the index can read the run.
        store.put_run_info(&info).await?;
        store.put_chunk_index(&written.index).await?;
        tracing::info!(
            run_id = info.run_id,
            supplier = %info.supplier,
            entries = info.entries,
            accepted = info.accepted,
            rejected = info.rejected,
            chunks = info.chunk_count,
            "manifest split"
        );
        Ok(info)
    }
}

/// The Map's items: each chunk once, or with targets, each chunk once per target, numbered
/// chunk-major (`chunk × targets + target`) so that the Map works on every target at once.
fn items(chunks: Vec<ChunkDescriptor>, targets: &[Target]) -> Vec<ChunkDescriptor> {
    if targets.is_empty() {
        return chunks;
    }
    let per_chunk = u32::try_from(targets.len()).unwrap_or(u32::MAX);
    chunks
        .into_iter()
        .flat_map(|chunk| {
            targets
                .iter()
                .zip(0..)
                .map(move |(target, t)| ChunkDescriptor {
                    chunk: chunk.chunk.saturating_mul(per_chunk).saturating_add(t),
                    target: Some(target.clone()),
                    ..chunk.clone()
                })
        })
        .collect()
}

/// Parses the manifest on a blocking thread, sending the supplier, then every entry.
fn spawn_parser(
    reader: thingpress_run::store::ObjectReader,
    options: thingpress_manifest::Options,
) -> (
    tokio::sync::mpsc::Receiver<Parsed>,
    tokio::task::JoinHandle<()>,
) {
    spawn_reading(reader, move |buffered, send| {
        let entries = match read_entries(buffered, &options) {
            Ok(entries) => entries,
            Err(e) => return send(Parsed::Failed(e.to_string())),
        };
        if !send(Parsed::Supplier(entries.supplier())) {
            return false;
        }
        entries.into_iter().all(|item| {
            send(match item {
                Ok(entry) => Parsed::Entry(entry),
                Err(e) => Parsed::Failed(e.to_string()),
            })
        })
    })
}

/// Parses an activation's shipping list on a blocking thread, sending every device.
fn spawn_shipping_parser(
    reader: thingpress_run::store::ObjectReader,
) -> (
    tokio::sync::mpsc::Receiver<Parsed>,
    tokio::task::JoinHandle<()>,
) {
    spawn_reading(reader, |buffered, send| {
        let devices = match thingpress_shipping::read(buffered) {
            Ok(devices) => devices,
            Err(e) => return send(Parsed::Failed(format!("shipping list: {e}"))),
        };
        devices.into_iter().all(|item| {
            send(match item {
                Ok(device) => Parsed::Shipped(device),
                Err(e) => Parsed::Failed(format!("shipping list: {e}")),
            })
        })
    })
}

/// Runs `parse` on a blocking thread over the buffered object; `send` hands a message to the
/// splitter and says whether it still listens (parsing stops when it does not).
fn spawn_reading(
    reader: thingpress_run::store::ObjectReader,
    parse: impl FnOnce(
        std::io::BufReader<tokio_util::io::SyncIoBridge<thingpress_run::store::ObjectReader>>,
        &dyn Fn(Parsed) -> bool,
    ) -> bool
    + Send
    + 'static,
) -> (
    tokio::sync::mpsc::Receiver<Parsed>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Parsed>(CHANNEL_DEPTH);
    let bridge = tokio_util::io::SyncIoBridge::new(reader);
    let parser = tokio::task::spawn_blocking(move || {
        let buffered = std::io::BufReader::with_capacity(256 * 1024, bridge);
        let send = |message: Parsed| tx.blocking_send(message).is_ok();
        parse(buffered, &send);
    });
    (rx, parser)
}

/// What Split wrote of a run's entries.
struct Written {
    index: Vec<ChunkDescriptor>,
    rejected_parts: u32,
    accepted: u64,
    rejected: u64,
}

/// Fills chunks of accepted entries and parts of rejected ones, uploading each once full.
struct Writer<S> {
    uploads: Uploads<S>,
    chunk_size: u64,
    chunk: ChunkBuffer,
    rejects: Vec<u8>,
    rejects_in_part: usize,
    written: Written,
}

impl<S: Store + Clone + 'static> Writer<S> {
    fn new(store: RunStore<S>, chunk_size: u32) -> Self {
        Writer {
            uploads: Uploads::new(store),
            chunk_size: u64::from(chunk_size),
            chunk: ChunkBuffer::default(),
            rejects: Vec::new(),
            rejects_in_part: 0,
            written: Written {
                index: Vec::new(),
                rejected_parts: 0,
                accepted: 0,
                rejected: 0,
            },
        }
    }

    /// Adds entry `index` (an import's manifest entry, an activation's device) to the chunk.
    async fn accept(&mut self, index: u64, entry: &impl Serialize) -> Result<(), TaskError> {
        self.written.accepted += 1;
        self.chunk.push(index, entry)?;
        if self.chunk.len == self.chunk_size {
            self.flush_chunk().await?;
        }
        Ok(())
    }

    async fn reject(&mut self, entry: &Rejected) -> Result<(), TaskError> {
        self.written.rejected += 1;
        tracing::debug!(index = entry.index, error = %entry.error, "entry rejected");
        serde_json::to_writer(&mut self.rejects, entry)
            .map_err(|e| TaskError::invalid_input(format!("cannot serialise a reject: {e}")))?;
        self.rejects.push(b'\n');
        self.rejects_in_part += 1;
        if self.rejects_in_part == REJECTS_PER_PART {
            self.flush_rejects().await?;
        }
        Ok(())
    }

    async fn flush_chunk(&mut self) -> Result<(), TaskError> {
        let n = u32::try_from(self.written.index.len()).unwrap_or(u32::MAX);
        let (descriptor, body) = self.chunk.take(n, self.uploads.store.layout().chunk(n));
        self.uploads.put(Object::Chunk(n), body).await?;
        self.written.index.push(descriptor);
        Ok(())
    }

    async fn flush_rejects(&mut self) -> Result<(), TaskError> {
        let part = self.written.rejected_parts;
        let body = std::mem::take(&mut self.rejects);
        self.uploads.put(Object::Rejected(part), body).await?;
        self.written.rejected_parts += 1;
        self.rejects_in_part = 0;
        Ok(())
    }

    /// Writes what is left and waits for every upload.
    async fn finish(mut self) -> Result<Written, TaskError> {
        if self.chunk.len > 0 {
            self.flush_chunk().await?;
        }
        if self.rejects_in_part > 0 {
            self.flush_rejects().await?;
        }
        self.uploads.finish().await?;
        Ok(self.written)
    }
}

/// Accepted entries of the chunk being filled, as JSON lines.
#[derive(Default)]
struct ChunkBuffer {
    body: Vec<u8>,
    len: u64,
    first_index: u64,
}

impl ChunkBuffer {
    fn push(&mut self, index: u64, entry: &impl Serialize) -> Result<(), TaskError> {
        if self.len == 0 {
            self.first_index = index;
        }
        serde_json::to_writer(&mut self.body, entry).map_err(|e| {
            TaskError::invalid_input(format!("cannot serialise entry {index}: {e}"))
        })?;
        self.body.push(b'\n');
        self.len += 1;
        Ok(())
    }

    fn take(&mut self, chunk: u32, key: String) -> (ChunkDescriptor, Vec<u8>) {
        let descriptor = ChunkDescriptor {
            chunk,
            key,
            entries: self.len,
            first_index: self.first_index,
            target: None,
        };
        self.len = 0;
        (descriptor, std::mem::take(&mut self.body))
    }
}

/// Which run object an upload writes.
#[derive(Debug, Clone, Copy)]
enum Object {
    Chunk(u32),
    Rejected(u32),
}

/// Object writes kept in flight while parsing goes on, bounded by [`UPLOADS_IN_FLIGHT`]. Each
/// write is a task of its own, so it progresses while the parser is awaited.
struct Uploads<S> {
    store: RunStore<S>,
    in_flight: tokio::task::JoinSet<Result<(), TaskError>>,
}

impl<S: Store + Clone + 'static> Uploads<S> {
    fn new(store: RunStore<S>) -> Self {
        Uploads {
            store,
            in_flight: tokio::task::JoinSet::new(),
        }
    }

    async fn put(&mut self, object: Object, body: Vec<u8>) -> Result<(), TaskError> {
        while self.in_flight.len() >= UPLOADS_IN_FLIGHT {
            if let Some(result) = self.in_flight.join_next().await {
                joined(result)?;
            }
        }
        let store = self.store.clone();
        self.in_flight.spawn(async move {
            match object {
                Object::Chunk(n) => store.put_chunk(n, body).await,
                Object::Rejected(part) => store.put_rejected(part, body).await,
            }
        });
        Ok(())
    }

    async fn finish(mut self) -> Result<(), TaskError> {
        while let Some(result) = self.in_flight.join_next().await {
            joined(result)?;
        }
        Ok(())
    }
}

/// An upload task's result; a panicked or cancelled upload is a transient failure.
fn joined(result: Result<Result<(), TaskError>, tokio::task::JoinError>) -> Result<(), TaskError> {
    result
        .map_err(|e| TaskError::new(ErrorName::Transient, format!("chunk upload stopped: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_chunk_is_listed_once_per_target_and_targets_interleave() {
        let chunk = |n: u32| ChunkDescriptor {
            chunk: n,
            key: format!("runs/r/chunks/{n:05}.jsonl"),
            entries: 10,
            first_index: u64::from(n) * 10,
            target: None,
        };
        let chunks = vec![chunk(0), chunk(1)];
        assert_eq!(items(chunks.clone(), &[]), chunks, "no targets: as split");
        let targets = [Target::home("eu-west-1"), Target::home("us-west-2")];
        let listed: Vec<(u32, String, Option<String>)> = items(chunks, &targets)
            .into_iter()
            .map(|c| (c.chunk, c.key.clone(), c.target_id()))
            .collect();
        let key = |n: u32| format!("runs/r/chunks/{n:05}.jsonl");
        assert_eq!(
            listed,
            [
                (0, key(0), Some("eu-west-1".to_owned())),
                (1, key(0), Some("us-west-2".to_owned())),
                (2, key(1), Some("eu-west-1".to_owned())),
                (3, key(1), Some("us-west-2".to_owned())),
            ]
        );
    }
}
