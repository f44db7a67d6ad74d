//! Split: claim the source object, resolve and check the profile, stream the manifest into
//! chunks of accepted entries and parts of rejected ones, and write the chunk index.

use aws_config::SdkConfig;
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::{Value, json};
use thingpress_manifest::{Entry, ErrorName, ManifestError, Supplier, read_entries};
use thingpress_run::layout::{claim_key, profile_key, profile_of_incoming_key};
use thingpress_run::records::{ChunkDescriptor, RunInfo, SourceObject, now_ms};
use thingpress_run::store::{get_json, put_json};
use thingpress_run::{RunLayout, Settings, Store, TaskError};
use thingpress_product::Profile;

/// Rejected entries per `rejected/NNNNN.jsonl` part.
const REJECTS_PER_PART: usize = 10_000;
/// Entries buffered between the parsing thread and the uploads.
const CHANNEL_DEPTH: usize = 4096;
/// Chunk uploads in flight at once.
const UPLOADS_IN_FLIGHT: usize = 8;

/// The split task with its clients, built once per container.
pub struct Task<S> {
    store: S,
    iot: aws_sdk_iot::Client,
    settings: Settings,
}

/// Where the profile comes from.
#[derive(Debug, Clone, PartialEq)]
enum ProfileRef {
    Named(String),
    Inline(Value),
}

/// What the state machine asked for.
#[derive(Debug, Clone, PartialEq)]
struct Request {
    run: RunLayout,
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

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Reads either an EventBridge "Object Created" event or the console input.
fn parse_request(payload: &Value) -> Result<Request, TaskError> {
    let run_id = str_at(payload, "/runId")
        .ok_or_else(|| TaskError::invalid_input("payload has no runId"))?;
    let run = RunLayout::new(run_id)?;
    let input = payload
        .get("input")
        .ok_or_else(|| TaskError::invalid_input("payload has no input"))?;
    if input.get("detail-type").is_some() {
        let detail_type = str_at(input, "/detail-type").unwrap_or_default();
        if detail_type != "Object Created" {
            return Err(TaskError::invalid_input(format!(
                "event detail-type {detail_type:?} is not \"Object Created\""
            )));
        }
        let bucket = str_at(input, "/detail/bucket/name")
            .ok_or_else(|| TaskError::invalid_input("event has no detail.bucket.name"))?;
        let key = str_at(input, "/detail/object/key")
            .ok_or_else(|| TaskError::invalid_input("event has no detail.object.key"))?;
        let profile = profile_of_incoming_key(key)?.to_owned();
        return Ok(Request {
            run,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            profile: ProfileRef::Named(profile),
            force: false,
        });
    }
    let bucket = str_at(input, "/manifest/bucket")
        .ok_or_else(|| TaskError::invalid_input("input has no manifest.bucket"))?;
    let key = str_at(input, "/manifest/key")
        .ok_or_else(|| TaskError::invalid_input("input has no manifest.key"))?;
    let profile = match input.get("profile") {
        Some(Value::String(name)) if !name.is_empty() => ProfileRef::Named(name.clone()),
        Some(inline @ Value::Object(_)) => ProfileRef::Inline(inline.clone()),
        None if key.starts_with(thingpress_run::layout::INCOMING_PREFIX) => {
            ProfileRef::Named(profile_of_incoming_key(key)?.to_owned())
        }
        _ => {
            return Err(TaskError::invalid_input(
                "input.profile must be a profile name or an inline profile object",
            ));
        }
    };
    let force = match input.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(force)) => *force,
        Some(other) => {
            return Err(TaskError::invalid_input(format!(
                "input.force must be true or false, not {other}"
            )));
        }
    };
    Ok(Request {
        run,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        profile,
        force,
    })
}

/// One message from the parsing thread.
enum Parsed {
    Supplier(Supplier),
    Entry(Entry),
    Failed(ManifestError),
}

impl<S: Store + Clone + 'static> Task<S> {
    /// The IoT client gets the importer's short SDK retry; the profile check adds its own few
    /// tries, and the state machine does the long backoff.
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

    /// Handles one invocation.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, TaskError> {
        self.split_manifest(event.payload).await
    }

    /// Claims, checks and splits the manifest the payload names.
    pub async fn split_manifest(&self, payload: Value) -> Result<Value, TaskError> {
        let request = parse_request(&payload)?;
        let profile = self.resolve_profile(&request.profile).await?;
        // The allow-list first: it needs no call, and a refused name is refused whatever IoT holds.
        let refused = self
            .settings
            .allow_list
            .problems(&profile.policies, &profile.thing_groups);
        if !refused.is_empty() {
            return Err(TaskError::invalid_profile(format!(
                "profile {:?}: {}",
                profile.name,
                refused.join("; ")
            )));
        }
        // Missing resources are InvalidProfile; a throttle or fault stays Throttled/Transient,
        // so the state machine retries Split instead of failing the run.
        thingpress_importer::check_profile_resources(&self.iot, &profile)
            .await
            .map_err(TaskError::from)?;
        let (source, size) = self.source(&request).await?;
        if let Some(owner) = self.claim(&request, &source, size).await? {
            tracing::info!(
                run_id = request.run.run_id(),
                owner,
                source = source.url(),
                "skipped: already claimed"
            );
            return Ok(json!({
                "status": "Skipped",
                "runId": request.run.run_id(),
                "ownerRunId": owner,
                "bucket": self.settings.import_bucket,
                "key": source.key,
            }));
        }
        let info = self.split(&request.run, source, profile).await?;
        Ok(json!({
            "status": "Started",
            "runId": info.run_id,
            "bucket": self.settings.import_bucket,
            "chunksKey": request.run.chunk_index(),
            "chunkCount": info.chunk_count,
            "maxConcurrency": info.max_concurrency,
            "entries": info.entries,
            "accepted": info.accepted,
            "rejected": info.rejected,
        }))
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
            ProfileRef::Inline(value) => {
                let body = serde_json::to_vec(value)
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

    async fn split(
        &self,
        run: &RunLayout,
        source: SourceObject,
        profile: Profile,
    ) -> Result<RunInfo, TaskError> {
        let started_at_ms = now_ms();
        let bucket = self.settings.import_bucket.clone();
        let max_concurrency = profile
            .max_concurrency
            .unwrap_or(self.settings.default_max_concurrency)
            .max(1);
        let chunk_size = self
            .settings
            .chunk_size(
                profile.chunk_size,
                max_concurrency,
                profile.policies.len(),
                profile.thing_groups.len(),
            )
            .max(1);
        let options = profile
            .manifest_options()
            .map_err(|e| TaskError::invalid_profile(format!("profile {:?}: {e}", profile.name)))?;
        let reader = self
            .store
            .reader(&source.bucket, &source.key, source.version_id.as_deref())
            .await?;

        let (tx, mut rx) = tokio::sync::mpsc::channel::<Parsed>(CHANNEL_DEPTH);
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        let parser = tokio::task::spawn_blocking(move || {
            let buffered = std::io::BufReader::with_capacity(256 * 1024, bridge);
            let entries = match read_entries(buffered, &options) {
                Ok(entries) => entries,
                Err(e) => {
                    let _ = tx.blocking_send(Parsed::Failed(e));
                    return;
                }
            };
            if tx
                .blocking_send(Parsed::Supplier(entries.supplier()))
                .is_err()
            {
                return;
            }
            for item in entries {
                let message = match item {
                    Ok(entry) => Parsed::Entry(entry),
                    Err(e) => Parsed::Failed(e),
                };
                if tx.blocking_send(message).is_err() {
                    return;
                }
            }
        });

        let store = &self.store;
        let mut uploads = Uploads::new(store, &bucket);
        let mut supplier = Supplier::Auto;
        let mut chunk = ChunkBuffer::default();
        let mut rejects = Vec::new();
        let mut rejects_in_part = 0usize;
        let mut index: Vec<ChunkDescriptor> = Vec::new();
        let mut counts = (0u64, 0u64); // (accepted, rejected)
        let mut rejected_parts = 0u32;
        while let Some(message) = rx.recv().await {
            match message {
                Parsed::Supplier(s) => supplier = s,
                Parsed::Failed(e) => {
                    return Err(TaskError::new(
                        ErrorName::InvalidManifest,
                        format!("{}: {e}", source.url()),
                    ));
                }
                Parsed::Entry(Entry::Accepted(accepted)) => {
                    counts.0 += 1;
                    chunk.push(&accepted)?;
                    if chunk.len == u64::from(chunk_size) {
                        let n = u32::try_from(index.len()).unwrap_or(u32::MAX);
                        let (descriptor, body) = chunk.take(n, run.chunk(n));
                        uploads.put(descriptor.key.clone(), body).await?;
                        index.push(descriptor);
                    }
                }
                Parsed::Entry(Entry::Rejected(rejected)) => {
                    counts.1 += 1;
                    tracing::debug!(index = rejected.index, error = %rejected.error, "entry rejected");
                    serde_json::to_writer(&mut rejects, &rejected).map_err(|e| {
                        TaskError::invalid_input(format!("cannot serialise a reject: {e}"))
                    })?;
                    rejects.push(b'\n');
                    rejects_in_part += 1;
                    if rejects_in_part == REJECTS_PER_PART {
                        uploads
                            .put(run.rejected(rejected_parts), std::mem::take(&mut rejects))
                            .await?;
                        rejected_parts += 1;
                        rejects_in_part = 0;
                    }
                }
            }
        }
        parser.await.map_err(|e| {
            TaskError::new(
                ErrorName::Transient,
                format!("manifest parser stopped: {e}"),
            )
        })?;
        if chunk.len > 0 {
            let n = u32::try_from(index.len()).unwrap_or(u32::MAX);
            let (descriptor, body) = chunk.take(n, run.chunk(n));
            uploads.put(descriptor.key.clone(), body).await?;
            index.push(descriptor);
        }
        if rejects_in_part > 0 {
            uploads.put(run.rejected(rejected_parts), rejects).await?;
            rejected_parts += 1;
        }
        uploads.finish().await?;

        let info = RunInfo {
            run_id: run.run_id().to_owned(),
            source,
            profile,
            supplier,
            chunk_size,
            max_concurrency,
            entries: counts.0 + counts.1,
            accepted: counts.0,
            rejected: counts.1,
            chunk_count: u32::try_from(index.len()).unwrap_or(u32::MAX),
            rejected_parts,
            started_at_ms,
        };
        // run.json before the index: every task that can see the index can read the run.
        put_json(store, &bucket, &run.run_info(), &info).await?;
        put_json(store, &bucket, &run.chunk_index(), &index).await?;
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

/// Accepted entries of the chunk being filled, as JSON lines.
#[derive(Default)]
struct ChunkBuffer {
    body: Vec<u8>,
    len: u64,
    first_index: u64,
}

impl ChunkBuffer {
    fn push(&mut self, entry: &thingpress_manifest::Accepted) -> Result<(), TaskError> {
        if self.len == 0 {
            self.first_index = entry.index;
        }
        serde_json::to_writer(&mut self.body, entry).map_err(|e| {
            TaskError::invalid_input(format!("cannot serialise entry {}: {e}", entry.index))
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
        };
        self.len = 0;
        (descriptor, std::mem::take(&mut self.body))
    }
}

/// Object writes kept in flight while parsing goes on, bounded by [`UPLOADS_IN_FLIGHT`]. Each
/// write is a task of its own, so it progresses while the parser is awaited.
struct Uploads<S> {
    store: S,
    bucket: String,
    in_flight: tokio::task::JoinSet<Result<(), TaskError>>,
}

impl<S: Store + Clone + 'static> Uploads<S> {
    fn new(store: &S, bucket: &str) -> Self {
        Uploads {
            store: store.clone(),
            bucket: bucket.to_owned(),
            in_flight: tokio::task::JoinSet::new(),
        }
    }

    async fn put(&mut self, key: String, body: Vec<u8>) -> Result<(), TaskError> {
        while self.in_flight.len() >= UPLOADS_IN_FLIGHT {
            if let Some(result) = self.in_flight.join_next().await {
                joined(result)?;
            }
        }
        let store = self.store.clone();
        let bucket = self.bucket.clone();
        self.in_flight
            .spawn(async move { store.put(&bucket, &key, body).await });
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
