//! The JSON the state machine passes into and out of each Lambda (`statemachine/import.asl.json`),
//! and the execution input `thingpress retry-failed` starts. The wire names are the ASL's; the
//! test in `tests/asl.rs` holds every path the ASL reads or passes against these types.
//!
//! The types a task receives from the state machine refuse unknown fields, so a field renamed on
//! one side only fails at once instead of being silently dropped. The S3 event is AWS's and
//! grows fields, so only its envelope is checked.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::records::ChunkDescriptor;
use crate::{RunLayout, TaskError};

/// Parses a task's input, naming what does not fit; every handler's input is read this way, so
/// a malformed payload is `Thingpress.InvalidInput` like any other bad input.
pub fn from_value<T: serde::de::DeserializeOwned>(payload: Value) -> Result<T, TaskError> {
    serde_json::from_value(payload).map_err(|e| TaskError::invalid_input(format!("payload: {e}")))
}

/// Split's input: the execution name and the execution input, as the `Split` state passes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SplitInput {
    /// The execution name, which is the run id.
    pub run_id: String,
    /// The execution input.
    pub input: ExecutionInput,
}

/// What an execution is started with: the S3 trigger's event, or `thingpress import`'s input.
/// (A retry's input never reaches Split: the `IsRetry` choice routes it around.)
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ExecutionInput {
    /// EventBridge's S3 "Object Created" event for an upload under `incoming/<profile>/`.
    ObjectCreated(ObjectCreatedEvent),
    /// A manifest named by bucket and key, with its profile.
    Console(ConsoleInput),
}

impl<'de> Deserialize<'de> for ExecutionInput {
    /// An input with a `detail-type` is an event, anything else the console input: each then
    /// names its own missing or wrong field (an untagged enum would only say "no variant").
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(deserializer)?;
        if value.get("detail-type").is_some() {
            serde_json::from_value(value)
                .map(ExecutionInput::ObjectCreated)
                .map_err(|e| D::Error::custom(format!("event: {e}")))
        } else {
            serde_json::from_value(value)
                .map(ExecutionInput::Console)
                .map_err(|e| D::Error::custom(format!("input: {e}")))
        }
    }
}

/// The fields of EventBridge's S3 event that Split reads; AWS's other fields are kept out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectCreatedEvent {
    /// `Object Created` (anything else is refused).
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// Which object.
    pub detail: EventDetail,
}

/// `detail` of the S3 event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDetail {
    /// `detail.bucket`.
    pub bucket: EventBucket,
    /// `detail.object`.
    pub object: EventObject,
}

/// `detail.bucket` of the S3 event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBucket {
    /// The bucket name.
    pub name: String,
}

/// `detail.object` of the S3 event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventObject {
    /// The object key.
    pub key: String,
}

/// What a run does with its file's entries. Every operation runs the same Split, chunk Map,
/// Register loop and Summarize; only what is read and what each entry gets differ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Operation {
    /// A supplier manifest: register every certificate and set up its thing.
    #[default]
    Import,
    /// A shipping list (`thingpress activate`): set each shipped device's certificate ACTIVE.
    Activate,
    /// A device list (`thingpress decommission --execute`): remove what the import made.
    Decommission,
    /// A device list (`thingpress decommission`): plan the removal, change nothing.
    DecommissionDryRun,
}

impl Operation {
    /// Whether this is an import (the default, which inputs and records leave out).
    pub fn is_import(&self) -> bool {
        *self == Operation::Import
    }
}

/// The input `thingpress import` (or a person in the console) starts an execution with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleInput {
    /// The file: a supplier manifest, or the shipping list of an activation.
    pub manifest: ManifestObject,
    /// What to do with it; an import when absent.
    #[serde(default, skip_serializing_if = "Operation::is_import")]
    pub operation: Operation,
    /// A stored profile's name or an inline profile; when absent, the `<profile>` of an
    /// `incoming/<profile>/<file>` key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileRef>,
    /// Import again even when another run claimed this content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
}

/// `manifest` of the console input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestObject {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
}

/// Where a run's profile comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProfileRef {
    /// A profile stored at `profiles/<name>.json`.
    Named(String),
    /// The profile itself (checked when Split resolves it).
    Inline(serde_json::Map<String, Value>),
}

/// What Split decided about one execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status")]
pub enum SplitOutput {
    /// The manifest is split; the Map imports its chunks.
    Started(Started),
    /// Another run owns this content; the execution ends as a no-op.
    Skipped(Skipped),
}

/// Split's output for a run it started (the input of the Map and of Summarize).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Started {
    /// The run id.
    pub run_id: String,
    /// The run bucket.
    pub bucket: String,
    /// The chunk index the Map reads.
    pub chunks_key: String,
    /// Chunks in the index.
    pub chunk_count: u32,
    /// The Map's concurrency.
    pub max_concurrency: u32,
    /// The Map's tolerated share of failed items, in percent: 0 (any failed chunk fails the
    /// Map, so the execution can be redriven) unless the run has several targets, whose chunks
    /// fail apart (100: the Map goes on, and Summarize names what did not finish).
    #[serde(default)]
    pub tolerated_failure_percentage: u32,
    /// Manifest entries read.
    pub entries: u64,
    /// Entries accepted.
    pub accepted: u64,
    /// Entries rejected.
    pub rejected: u64,
}

/// The Map's tolerated failure percentage for a run over `targets` targets: see [`Started`].
pub fn tolerated_failure_percentage(targets: usize) -> u32 {
    if targets > 1 { 100 } else { 0 }
}

/// Split's output when another run owns the object's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Skipped {
    /// This execution's run id.
    pub run_id: String,
    /// The run that owns the content.
    pub owner_run_id: String,
    /// The run bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
}

/// The execution input of a retry: `{"retry": {…}}` (the ASL's `IsRetry` choice tests `$.retry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryInput {
    /// What to import again.
    pub retry: RetryRequest,
}

/// The chunks a retry imports again, of which run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryRequest {
    /// The original run.
    pub run_id: String,
    /// The retry's number (`runs/<runId>/retries/NNNNN/`).
    pub retry: u32,
    /// The retry's chunk index.
    pub chunks_key: String,
    /// The Map's concurrency.
    pub max_concurrency: u32,
    /// The Map's tolerated share of failed items (see [`Started`]).
    #[serde(default)]
    pub tolerated_failure_percentage: u32,
}

/// A retry shaped like Split's output by the ASL's `PrepareRetry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryStarted {
    /// The original run.
    pub run_id: String,
    /// The run bucket.
    pub bucket: String,
    /// The retry's chunk index.
    pub chunks_key: String,
    /// The Map's concurrency.
    pub max_concurrency: u32,
    /// The Map's tolerated share of failed items (see [`Started`]).
    #[serde(default)]
    pub tolerated_failure_percentage: u32,
}

/// Summarize's input: the Map's input (its `ResultPath` is null), a started run or a retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status")]
pub enum SummarizeInput {
    /// Split's output.
    Started(Started),
    /// `PrepareRetry`'s output.
    Retry(RetryStarted),
}

impl SummarizeInput {
    /// The run to summarize.
    pub fn run_id(&self) -> &str {
        match self {
            SummarizeInput::Started(s) => &s.run_id,
            SummarizeInput::Retry(r) => &r.run_id,
        }
    }
}

/// Which kind of child execution the Map runs (the template's `ChildExecutionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChildExecutionType {
    /// Up to a year, exactly once.
    Standard,
    /// Up to 5 minutes, at least once.
    Express,
}

/// One Map item as the `ItemSelector` builds it: Decorate's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChunkInput {
    /// The run id.
    pub run_id: String,
    /// The run bucket.
    pub bucket: String,
    /// The chunk, as listed in the index.
    pub chunk: ChunkDescriptor,
    /// The child's execution type (absent when a chunk is invoked by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_execution_type: Option<ChildExecutionType>,
}

impl ChunkInput {
    /// The run's layout, once the chunk's key is checked to be a chunk of that run (the item's
    /// own number when it has no target; with targets, items share their chunk's key).
    pub fn layout(&self) -> Result<RunLayout, TaskError> {
        self.layout_and_source().map(|(run, _)| run)
    }

    /// The run's layout and the number of the chunk whose accepted entries the item registers.
    pub fn layout_and_source(&self) -> Result<(RunLayout, u32), TaskError> {
        let run = RunLayout::new(&self.run_id)?;
        let source = run.chunk_of_key(&self.chunk.key);
        match source {
            Some(n) if n == self.chunk.chunk || self.chunk.target.is_some() => Ok((run, n)),
            _ => Err(TaskError::invalid_input(format!(
                "chunk key {} is not chunk {} of run {}",
                self.chunk.key,
                self.chunk.chunk,
                run.run_id()
            ))),
        }
    }
}

/// Decorate's output and Register's input: the chunk and where its decorated entries are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecoratedChunk {
    /// The run id.
    pub run_id: String,
    /// The run bucket.
    pub bucket: String,
    /// The chunk, as listed in the index.
    pub chunk: ChunkDescriptor,
    /// The child's execution type, passed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_execution_type: Option<ChildExecutionType>,
    /// `decorated/NNNNN.jsonl`.
    pub decorated_key: String,
    /// Entries ready for IoT.
    pub decorated: u64,
    /// Entries the profile could not name.
    pub rejected: u64,
    /// `false` when Register hands the chunk back to be continued (absent from Decorate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<NotDone>,
    /// Where a continued chunk stands (absent from Decorate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<Continuation>,
}

/// How far a STANDARD child's Register loop has gone for one chunk: the ASL waits
/// `wait_seconds`, then passes the chunk back to Register.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Continuation {
    /// Register invocations so far for this chunk in this child.
    pub invocation: u32,
    /// Invocations in a row that stopped without progress.
    pub stalls: u32,
    /// The Wait state's `SecondsPath`: a non-negative integer, as Step Functions requires.
    pub wait_seconds: u32,
}

/// The literal `false` of `"done": false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotDone;

/// The literal `true` of `"done": true`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Done;

macro_rules! literal_bool {
    ($type:ident, $value:literal) => {
        impl Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bool($value)
            }
        }
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if bool::deserialize(d)? == $value {
                    Ok($type)
                } else {
                    Err(serde::de::Error::custom(concat!("done is not ", $value)))
                }
            }
        }
    };
}
literal_bool!(NotDone, false);
literal_bool!(Done, true);

/// Register's output: the chunk's summary when it is finished, or, in a STANDARD child, the
/// chunk handed back to be continued after a Wait (the ASL's `RegisterDone` Choice reads `done`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RegisterOutput {
    /// `"done": true`: every entry has its outcome.
    Finished(ChunkSummary),
    /// `"done": false`: progress kept, Register's own input with where the loop stands.
    Continuing(DecoratedChunk),
}

impl DecoratedChunk {
    /// This chunk handed back to be continued at `continuation`.
    pub fn continuing(&self, continuation: Continuation) -> DecoratedChunk {
        DecoratedChunk {
            done: Some(NotDone),
            continuation: Some(continuation),
            ..self.clone()
        }
    }

    /// The chunk input this came from.
    pub fn chunk_input(&self) -> ChunkInput {
        ChunkInput {
            run_id: self.run_id.clone(),
            bucket: self.bucket.clone(),
            chunk: self.chunk.clone(),
            child_execution_type: self.child_execution_type,
        }
    }
}

/// Register's output for a finished chunk: its outcomes (the Map's result for the chunk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChunkSummary {
    /// The run id.
    pub run_id: String,
    /// Chunk number.
    pub chunk: u32,
    /// Certificates registered.
    pub registered: u64,
    /// Certificates IoT already had.
    pub already_registered: u64,
    /// Certificates an activation set ACTIVE (absent from imports).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub activated: u64,
    /// Certificates an activation found ACTIVE already (absent from imports).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub already_active: u64,
    /// Devices a decommission removed (absent from other operations).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub removed: u64,
    /// Devices a decommission dry run would remove.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub would_remove: u64,
    /// Devices a decommission found nothing left of.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub already_removed: u64,
    /// Entries rejected.
    pub rejected: u64,
    /// Always `true`: the ASL's `RegisterDone` Choice ends the child on it.
    pub done: Done,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Summarize's status word for a complete run (an incomplete one fails the task instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SummaryStatus {
    /// Every entry accounted for.
    Complete,
}

/// Summarize's output, the execution's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunSummary {
    /// The run id.
    pub run_id: String,
    /// Always `complete`.
    pub status: SummaryStatus,
    /// Manifest entries.
    pub entries: u64,
    /// Certificates registered.
    pub registered: u64,
    /// Certificates IoT already had.
    pub already_registered: u64,
    /// Certificates an activation set ACTIVE (absent from imports).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub activated: u64,
    /// Certificates an activation found ACTIVE already (absent from imports).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub already_active: u64,
    /// Devices a decommission removed (absent from other operations).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub removed: u64,
    /// Devices a decommission dry run would remove.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub would_remove: u64,
    /// Devices a decommission found nothing left of.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub already_removed: u64,
    /// Entries rejected.
    pub rejected: u64,
    /// `runs/<runId>/report.json`.
    pub report_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn descriptor() -> ChunkDescriptor {
        ChunkDescriptor {
            chunk: 1,
            key: "runs/r/chunks/00001.jsonl".into(),
            entries: 30,
            first_index: 30,
            target: None,
        }
    }

    #[test]
    fn split_reads_the_s3_event_and_the_console_input() {
        let event: SplitInput = from_value(json!({"runId": "r", "input": {
            "version": "0", "source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": "b"}, "object": {"key": "incoming/w/x", "size": 3},
                       "reason": "PutObject"}}}))
        .unwrap();
        let ExecutionInput::ObjectCreated(event) = event.input else {
            panic!("an event");
        };
        assert_eq!(event.detail.object.key, "incoming/w/x");

        let console: SplitInput = from_value(json!({"runId": "r", "input": {
            "manifest": {"bucket": "b", "key": "k"}, "profile": "p", "force": true}}))
        .unwrap();
        assert_eq!(
            console.input,
            ExecutionInput::Console(ConsoleInput {
                manifest: ManifestObject {
                    bucket: "b".into(),
                    key: "k".into()
                },
                operation: Operation::Import,
                profile: Some(ProfileRef::Named("p".into())),
                force: Some(true),
            })
        );
        let activation: SplitInput = from_value(json!({"runId": "r", "input": {
            "manifest": {"bucket": "b", "key": "k"}, "operation": "activate", "profile": "p"}}))
        .unwrap();
        let ExecutionInput::Console(activation) = activation.input else {
            panic!("console input");
        };
        assert_eq!(activation.operation, Operation::Activate);
        assert!(
            from_value::<SplitInput>(json!({"runId": "r", "input": {
                "manifest": {"bucket": "b", "key": "k"}, "operation": "erase", "profile": "p"}}))
            .unwrap_err()
            .message
            .contains("unknown variant `erase`")
        );
        let inline: SplitInput = from_value(json!({"runId": "r", "input": {
            "manifest": {"bucket": "b", "key": "k"}, "profile": {"name": "p"}}}))
        .unwrap();
        let ExecutionInput::Console(inline) = inline.input else {
            panic!("console input");
        };
        assert!(matches!(inline.profile, Some(ProfileRef::Inline(_))));
    }

    #[test]
    fn bad_input_names_what_is_wrong() {
        for (payload, needle) in [
            (
                json!({"input": {"manifest": {"bucket": "b", "key": "k"}}}),
                "missing field `runId`",
            ),
            (
                json!({"runId": "r", "input": {"manifest": {"bucket": "b"}}}),
                "key",
            ),
            (
                json!({"runId": "r", "input": {"detail-type": "Object Created", "detail": {}}}),
                "event: missing field `bucket`",
            ),
            (
                json!({"runId": "r", "input": {"manifest": {"bucket": "b", "key": "k"}, "force": "yes"}}),
                "input:",
            ),
            (
                json!({"runId": "r", "input": {"manifest": {"bucket": "b", "key": "k"}, "profle": "p"}}),
                "unknown field `profle`",
            ),
        ] {
            let err = from_value::<SplitInput>(payload.clone()).unwrap_err();
            assert_eq!(
                err.name,
                thingpress_manifest::ErrorName::InvalidInput,
                "{payload}"
            );
            assert!(err.message.contains(needle), "{needle} not in {err}");
        }
    }

    #[test]
    fn split_output_is_tagged_by_status() {
        let started = SplitOutput::Started(Started {
            run_id: "r".into(),
            bucket: "b".into(),
            chunks_key: "runs/r/chunks.json".into(),
            chunk_count: 4,
            max_concurrency: 2,
            tolerated_failure_percentage: 0,
            entries: 100,
            accepted: 99,
            rejected: 1,
        });
        assert_eq!(
            serde_json::to_value(&started).unwrap(),
            json!({"status": "Started", "runId": "r", "bucket": "b",
                   "chunksKey": "runs/r/chunks.json", "chunkCount": 4, "maxConcurrency": 2,
                   "toleratedFailurePercentage": 0, "entries": 100, "accepted": 99,
                   "rejected": 1})
        );
        let skipped = json!({"status": "Skipped", "runId": "r2", "ownerRunId": "r",
                             "bucket": "b", "key": "incoming/w/x"});
        let parsed: SplitOutput = serde_json::from_value(skipped.clone()).unwrap();
        assert_eq!(serde_json::to_value(parsed).unwrap(), skipped);
    }

    #[test]
    fn summarize_takes_a_started_run_or_a_prepared_retry() {
        let retry: SummarizeInput = from_value(json!({"status": "Retry", "runId": "r",
            "bucket": "b", "chunksKey": "runs/r/retries/00001/chunks.json", "maxConcurrency": 2}))
        .unwrap();
        assert_eq!(retry.run_id(), "r");
        let err =
            from_value::<SummarizeInput>(json!({"status": "Skipped", "runId": "r"})).unwrap_err();
        assert!(err.message.contains("Skipped"), "{err}");
    }

    #[test]
    fn a_chunk_input_must_name_its_own_chunk() {
        let input: ChunkInput = from_value(json!({"runId": "r", "bucket": "b",
            "chunk": descriptor(), "childExecutionType": "EXPRESS"}))
        .unwrap();
        assert_eq!(
            input.child_execution_type,
            Some(ChildExecutionType::Express)
        );
        assert_eq!(input.layout().unwrap().run_id(), "r");
        let other = ChunkInput {
            run_id: "other".into(),
            ..input.clone()
        };
        assert!(
            other
                .layout()
                .unwrap_err()
                .message
                .contains("is not chunk 1")
        );
        // With a target, item 3 registers chunk 1's entries; without one it may not.
        let mut item = input.clone();
        item.chunk.chunk = 3;
        assert!(item.layout().is_err());
        item.chunk.target = Some(thingpress_product::Target::home("eu-west-1"));
        assert_eq!(item.layout_and_source().unwrap().1, 1);
        item.chunk.key = "runs/r/results/00001.jsonl".into();
        assert!(item.layout().is_err(), "a key that is no chunk of the run");

        let decorated = DecoratedChunk {
            run_id: "r".into(),
            bucket: "b".into(),
            chunk: descriptor(),
            child_execution_type: None,
            decorated_key: "runs/r/decorated/00001.jsonl".into(),
            decorated: 29,
            rejected: 1,
            done: None,
            continuation: None,
        };
        let wire = serde_json::to_value(&decorated).unwrap();
        assert!(wire.get("childExecutionType").is_none(), "{wire}");
        assert!(wire.get("done").is_none(), "{wire}");
        assert_eq!(decorated.chunk_input().chunk, descriptor());
    }

    #[test]
    fn register_output_says_done_and_a_continuation_reads_back_as_register_input() {
        let decorated = DecoratedChunk {
            run_id: "r".into(),
            bucket: "b".into(),
            chunk: descriptor(),
            child_execution_type: None,
            decorated_key: "runs/r/decorated/00001.jsonl".into(),
            decorated: 29,
            rejected: 1,
            done: None,
            continuation: None,
        };
        let continuing = RegisterOutput::Continuing(decorated.continuing(Continuation {
            invocation: 3,
            stalls: 1,
            wait_seconds: 4,
        }));
        let wire = serde_json::to_value(&continuing).unwrap();
        assert_eq!(wire["done"], json!(false));
        assert_eq!(
            wire["continuation"],
            json!({"invocation": 3, "stalls": 1, "waitSeconds": 4})
        );
        let again: DecoratedChunk = from_value(wire.clone()).unwrap();
        assert_eq!(again.continuation.map(|c| c.invocation), Some(3));
        assert_eq!(from_value::<RegisterOutput>(wire).unwrap(), continuing);

        let finished = RegisterOutput::Finished(ChunkSummary {
            run_id: "r".into(),
            chunk: 1,
            registered: 29,
            already_registered: 0,
            activated: 0,
            already_active: 0,
            removed: 0,
            would_remove: 0,
            already_removed: 0,
            rejected: 1,
            done: Done,
        });
        let wire = serde_json::to_value(&finished).unwrap();
        assert_eq!(wire["done"], json!(true));
        assert_eq!(from_value::<RegisterOutput>(wire).unwrap(), finished);
        let wrong = json!({"runId": "r", "chunk": 1, "registered": 0, "alreadyRegistered": 0,
                           "rejected": 0, "done": false});
        assert!(from_value::<ChunkSummary>(wrong).is_err());
    }

    #[test]
    fn retry_input_is_what_retry_failed_starts() {
        let input = RetryInput {
            retry: RetryRequest {
                run_id: "r".into(),
                retry: 2,
                chunks_key: "runs/r/retries/00002/chunks.json".into(),
                max_concurrency: 4,
                tolerated_failure_percentage: 0,
            },
        };
        assert_eq!(
            serde_json::to_value(&input).unwrap(),
            json!({"retry": {"runId": "r", "retry": 2,
                             "chunksKey": "runs/r/retries/00002/chunks.json", "maxConcurrency": 4,
                             "toleratedFailurePercentage": 0}})
        );
    }
}
