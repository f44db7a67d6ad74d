//! The JSON records the tasks pass to each other and keep in the run layout.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thingpress_importer::{Action, Activation, EntryResult, EntrySteps, Removal};
use thingpress_manifest::{ErrorName, Rejected, Supplier};
use thingpress_product::{Decorated, Profile, Target};

use crate::payload::Operation;

/// One item of the chunk index that the Distributed Map reads: a chunk of accepted entries to
/// register in one target. A run with several targets lists each chunk once per target; the
/// items share the chunk's `key`, and `chunk` numbers the item (its decorated entries, results,
/// progress and stats are the item's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkDescriptor {
    /// Item number, from 0 (the chunk number when the run has one target).
    pub chunk: u32,
    /// The key of the chunk's accepted entries in the bucket.
    pub key: String,
    /// How many accepted entries it holds.
    pub entries: u64,
    /// The manifest index of its first entry.
    pub first_index: u64,
    /// Where the item registers; absent for the stack's own account and Region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

impl ChunkDescriptor {
    /// The item's target id (`Target::id`), `None` for the stack's own account and Region.
    pub fn target_id(&self) -> Option<String> {
        self.target.as_ref().map(Target::id)
    }
}

/// The S3 object a run imports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceObject {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// ETag when the run started.
    #[serde(default)]
    pub etag: String,
    /// Version id, on a versioned bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

impl SourceObject {
    /// `s3://bucket/key`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// What Split decided for a run, kept at `runs/<runId>/run.json` for the other tasks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    /// The execution name.
    pub run_id: String,
    /// What the run does (an import when absent).
    #[serde(default, skip_serializing_if = "Operation::is_import")]
    pub operation: Operation,
    /// The manifest (or an activation's shipping list).
    pub source: SourceObject,
    /// The resolved product profile.
    pub profile: Profile,
    /// The format the manifest was read as.
    pub supplier: Supplier,
    /// Accepted entries per chunk.
    pub chunk_size: u32,
    /// Map concurrency per target: how many chunks register at once in each target (each gets
    /// this share of the target's quotas).
    pub max_concurrency: u32,
    /// Manifest entries read.
    pub entries: u64,
    /// Entries accepted by Split.
    pub accepted: u64,
    /// Entries rejected by Split.
    pub rejected: u64,
    /// Items in the chunk index: chunks written, times the targets.
    pub chunk_count: u32,
    /// Parts of the Split rejects, `rejected/NNNNN.jsonl`.
    pub rejected_parts: u32,
    /// When Split started, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// An import's certificates per second in each target, as the stack's quotas bound them
    /// (absent from other operations and from runs split before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rates: Option<Rates>,
}

/// New certificates per second the slowest IoT API allows one target (its quota over its calls
/// per certificate): what the report draws its throughput against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rates {
    /// At the quotas less the reserve kept for the account's other callers: Register's pace.
    pub paced_per_second: f64,
    /// At the full quotas: what IoT would throttle above.
    pub quota_per_second: f64,
}

impl RunInfo {
    /// The Map's concurrency over the items of `targets` targets: `max_concurrency` chunks at
    /// once in each (each target has its own quotas), within Step Functions' limit.
    pub fn map_concurrency(&self, targets: usize) -> u32 {
        let targets = u32::try_from(targets.max(1)).unwrap_or(u32::MAX);
        self.max_concurrency
            .saturating_mul(targets)
            .min(thingpress_product::MAX_CONCURRENCY)
    }
}

/// A line of `decorated/NNNNN.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum DecoratedLine {
    /// Ready for IoT.
    Decorated(Decorated),
    /// The profile cannot name this entry.
    Rejected(Rejected),
    /// A shipping-list entry to activate.
    Activation(Activation),
    /// A device-list entry to decommission.
    Removal(Removal),
}

/// A line of `progress/NNNNN.jsonl`, what a stopped chunk keeps for its retry: the result of an
/// entry that finished, or the steps done of one that stopped midway. A finished entry's line
/// is exactly its results line (retry-failed writes those back to reopen a chunk).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProgressLine {
    /// The entry's outcome.
    Done(EntryResult),
    /// The steps of an entry that stopped midway.
    Partial {
        /// What was done, and for which entry.
        partial: EntrySteps,
    },
}

/// API calls and timings of one chunk's registration, `stats/NNNNN.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunkStats {
    /// Calls per IoT API (one per step), over every attempt of the chunk.
    pub api_calls: BTreeMap<String, u64>,
    /// Requests sent per IoT API: the calls and their paced retries (absent in stats written
    /// before Register retried calls itself).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub api_attempts: BTreeMap<String, u64>,
    /// Requests IoT answered with a throttle, per API; each one slowed Register's pacing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub api_throttles: BTreeMap<String, u64>,
    /// Time Register's calls waited for their pacing tokens, in milliseconds, summed over the
    /// entries in flight: busy time less this is what the chunk would take unpaced.
    #[serde(default)]
    pub token_wait_ms: u64,
    /// How many attempts the chunk took (1 when it finished in one invocation).
    pub attempts: u32,
    /// Attempts that stopped on an IoT call still throttled after Register's paced retries.
    pub throttled: u64,
    /// Attempts that stopped because the Lambda deadline drew near (absent in stats written
    /// before deadline stops were counted apart from throttling).
    #[serde(default)]
    pub deadline_stops: u64,
    /// Invocations that stopped with progress and handed the chunk back to be continued.
    #[serde(default)]
    pub continuations: u64,
    /// Invocations that stopped without progress (a chunk fails after too many in a row).
    #[serde(default)]
    pub stalls: u64,
    /// First attempt's start, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Completion, milliseconds since the Unix epoch.
    pub finished_at_ms: u64,
    /// Entries Register finished other than rejected, per minute they finished in (minutes
    /// since the Unix epoch): the run's throughput over time (absent in older stats).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub done_per_minute: BTreeMap<u64, u64>,
    /// The error the chunk's last attempt failed with, when it failed (a retry that finishes
    /// the chunk clears it); the report names it beside the missing results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<ChunkFailure>,
}

/// Why a chunk's child failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkFailure {
    /// The `Thingpress.*` name the child failed with.
    pub error: ErrorName,
    /// What happened.
    pub message: String,
}

impl std::fmt::Display for ChunkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

/// Per-entry outcome counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeCounts {
    /// Certificates registered by this run.
    pub registered: u64,
    /// Certificates that IoT already had (their things and attachments were made sure of).
    pub already_registered: u64,
    /// Certificates an activation set ACTIVE.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub activated: u64,
    /// Certificates an activation found ACTIVE already.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub already_active: u64,
    /// Devices a decommission removed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub removed: u64,
    /// Devices a decommission dry run would remove.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub would_remove: u64,
    /// Devices a decommission found nothing left of.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub already_removed: u64,
    /// A decommission's changes, made or planned, per action.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub actions: BTreeMap<Action, u64>,
    /// Entries rejected, at any stage.
    pub rejected: u64,
    /// Rejections per error name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rejected_by_error: BTreeMap<ErrorName, u64>,
}

impl OutcomeCounts {
    /// Counts one rejection.
    pub fn reject(&mut self, error: ErrorName) {
        self.rejected += 1;
        *self.rejected_by_error.entry(error).or_default() += 1;
    }

    /// Adds another count into this one.
    pub fn add(&mut self, other: &OutcomeCounts) {
        self.registered += other.registered;
        self.already_registered += other.already_registered;
        self.activated += other.activated;
        self.already_active += other.already_active;
        self.removed += other.removed;
        self.would_remove += other.would_remove;
        self.already_removed += other.already_removed;
        for (action, n) in &other.actions {
            *self.actions.entry(*action).or_default() += n;
        }
        self.rejected += other.rejected;
        for (name, n) in &other.rejected_by_error {
            *self.rejected_by_error.entry(*name).or_default() += n;
        }
    }

    /// Every entry counted.
    pub fn total(&self) -> u64 {
        self.registered
            + self.already_registered
            + self.activated
            + self.already_active
            + self.removed
            + self.would_remove
            + self.already_removed
            + self.rejected
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingpress_importer::{CertificateStep, Outcome};

    #[test]
    fn chunk_stats_of_older_registers_still_read() {
        let old: ChunkStats = serde_json::from_str(
            r#"{"apiCalls":{"CreateThing":3},"attempts":1,"throttled":0,"startedAtMs":1,"finishedAtMs":2}"#,
        )
        .unwrap();
        assert_eq!(old.token_wait_ms, 0);
        assert!(old.api_attempts.is_empty() && old.api_throttles.is_empty());
        let new = ChunkStats {
            api_attempts: [("CreateThing".to_owned(), 4)].into(),
            api_throttles: [("CreateThing".to_owned(), 1)].into(),
            token_wait_ms: 1500,
            ..old
        };
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(json["tokenWaitMs"], 1500);
        assert_eq!(json["apiThrottles"]["CreateThing"], 1);
        assert_eq!(serde_json::from_value::<ChunkStats>(json).unwrap(), new);
    }

    #[test]
    fn progress_lines_are_results_or_the_steps_of_an_entry_stopped_midway() {
        // A results line as retry-failed writes it back is a finished entry.
        let done = r#"{"index":4,"certificateId":"c","thingName":"t","deviceId":"d","outcome":"registered","certificateArn":"arn"}"#;
        let ProgressLine::Done(result) = serde_json::from_str(done).unwrap() else {
            panic!("a results line is a finished entry");
        };
        assert_eq!(result.outcome, Outcome::Registered);
        assert_eq!(
            serde_json::to_value(ProgressLine::Done(result)).unwrap(),
            serde_json::from_str::<serde_json::Value>(done).unwrap()
        );

        let partial = ProgressLine::Partial {
            partial: EntrySteps {
                index: 5,
                certificate_id: "c".into(),
                thing_name: "t".into(),
                certificate: Some(CertificateStep {
                    arn: "arn".into(),
                    outcome: Outcome::Registered,
                    status: None,
                }),
                thing: true,
                policies: vec!["DevicePolicy".into()],
                ..EntrySteps::default()
            },
        };
        let line = serde_json::to_string(&partial).unwrap();
        assert!(line.starts_with(r#"{"partial":{"index":5,"#), "{line}");
        assert_eq!(
            serde_json::from_str::<ProgressLine>(&line).unwrap(),
            partial
        );
        assert!(serde_json::from_str::<ProgressLine>(r#"{"index":1}"#).is_err());
    }

    #[test]
    fn counts_add_up() {
        let mut a = OutcomeCounts {
            registered: 2,
            ..Default::default()
        };
        a.reject(ErrorName::InvalidThingName);
        let mut b = OutcomeCounts {
            already_registered: 3,
            ..Default::default()
        };
        b.reject(ErrorName::InvalidThingName);
        b.reject(ErrorName::RejectedByIot);
        a.add(&b);
        assert_eq!(a.total(), 8);
        assert_eq!(a.rejected_by_error[&ErrorName::InvalidThingName], 2);
        assert_eq!(
            serde_json::to_value(&a).unwrap()["rejectedByError"]["Thingpress.RejectedByIot"],
            1
        );
    }
}
