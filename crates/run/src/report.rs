//! The run report: what happened to every manifest entry, checked to add up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thingpress_importer::{Action, EntryResult, Outcome};
use thingpress_manifest::{ErrorName, Rejected, Supplier};

use crate::payload::Operation;
#[cfg(test)]
use crate::records::ChunkFailure;
use crate::records::{ChunkDescriptor, ChunkStats, OutcomeCounts, RunInfo, SourceObject};

/// Whether every entry is accounted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Every entry ended registered, already registered, or rejected.
    Complete,
    /// Some chunks have no (or too few) results.
    Incomplete,
}

/// `runs/<runId>/report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The execution name.
    pub run_id: String,
    /// What the run did (an import when absent).
    #[serde(default, skip_serializing_if = "Operation::is_import")]
    pub operation: Operation,
    /// Complete or not.
    pub status: RunStatus,
    /// The manifest.
    pub source: SourceObject,
    /// Its format.
    pub supplier: Supplier,
    /// The product profile's name.
    pub profile: String,
    /// Manifest entries read by Split.
    pub entries: u64,
    /// Outcomes of every entry: Split's rejections plus every chunk's results.
    pub outcomes: OutcomeCounts,
    /// Chunks in the index.
    pub chunks: u32,
    /// Chunks without complete results, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// IoT calls made, per API.
    pub api_calls: BTreeMap<String, u64>,
    /// IoT calls IoT throttled, per API (each one Register retried after a new token and fed
    /// to its AIMD); absent from reports written before Register retried calls itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub api_throttles: BTreeMap<String, u64>,
    /// Milliseconds Register's calls waited for pacing tokens, over all chunks (absent from
    /// older reports).
    #[serde(default)]
    pub token_wait_ms: u64,
    /// Chunk attempts stopped by an IoT call still throttled after Register's own retries.
    pub throttled: u64,
    /// Chunk attempts stopped because the Lambda deadline drew near (progress kept, retried);
    /// absent from reports written before these were counted apart.
    #[serde(default)]
    pub deadline_stops: u64,
    /// Register invocations that stopped with progress and handed their chunk back to be
    /// continued (absent from reports written before continuation).
    #[serde(default)]
    pub continuations: u64,
    /// Register invocations that stopped without progress (absent from older reports).
    #[serde(default)]
    pub stalls: u64,
    /// Chunk invocations beyond the first (continuations and retries after throttling, faults
    /// or deadlines).
    pub chunk_retries: u64,
    /// Split's start, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Summarize's time, milliseconds since the Unix epoch.
    pub finished_at_ms: u64,
    /// Wall-clock seconds from Split to Summarize.
    pub duration_seconds: f64,
    /// Registered plus already-registered certificates per second of that time.
    pub certificates_per_second: f64,
    /// The target this report is of, in a run with several (`Target::id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A run with several targets: each target's report, whose counts add up to the manifest's
    /// entries on their own. The run's counts above are their sums.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Report>,
}

impl Report {
    /// The counts of entries done, worded for the run's operation (rejections apart).
    pub fn done_counts(&self) -> [(&'static str, u64); 2] {
        let o = &self.outcomes;
        match self.operation {
            Operation::Import => [
                ("registered", o.registered),
                ("already registered", o.already_registered),
            ],
            Operation::Activate => [
                ("activated", o.activated),
                ("already active", o.already_active),
            ],
            Operation::Decommission => [
                ("removed", o.removed),
                ("already removed", o.already_removed),
            ],
            Operation::DecommissionDryRun => [
                ("to remove", o.would_remove),
                ("already removed", o.already_removed),
            ],
        }
    }

    /// A decommission's changes per action, in the order they are made, under a heading that
    /// says whether they were made or only planned; `None` for other runs.
    pub fn changes(&self) -> Option<(&'static str, Vec<(&'static str, u64)>)> {
        let heading = match self.operation {
            Operation::Decommission => "changes made",
            Operation::DecommissionDryRun => "changes planned (dry run: nothing was changed)",
            Operation::Import | Operation::Activate => return None,
        };
        let counts = Action::ALL
            .iter()
            .map(|a| {
                (
                    a.describe(),
                    self.outcomes.actions.get(a).copied().unwrap_or(0),
                )
            })
            .collect();
        Some((heading, counts))
    }

    /// Targets the run registered in (1 for the stack's own account and Region).
    pub fn target_count(&self) -> u64 {
        self.targets.len().max(1) as u64
    }

    /// Entries with no outcome yet (an incomplete run's): a run with several targets counts every
    /// entry once in each.
    pub fn without_outcome(&self) -> u64 {
        (self.entries * self.target_count()).saturating_sub(self.outcomes.total())
    }

    /// The report of one target (its id, or the run's own report for a run without targets
    /// when `id` is its only target's).
    pub fn of_target(&self, id: &str) -> Option<&Report> {
        self.targets
            .iter()
            .find(|t| t.target.as_deref() == Some(id))
    }

    /// What the run read: `<supplier> manifest`, or `shipping list`.
    pub fn source_kind(&self) -> String {
        match self.operation {
            Operation::Import => format!("{} manifest", self.supplier),
            Operation::Activate => "shipping list".to_owned(),
            Operation::Decommission | Operation::DecommissionDryRun => "device list".to_owned(),
        }
    }
}

/// One rejected manifest entry: rejected by Split (format, signature, certificate), by Decorate
/// (thing name) or by Register (IoT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedEntry {
    /// Position in the manifest, from 0.
    pub index: u64,
    /// The supplier's device id, when the entry got that far.
    pub device_id: Option<String>,
    /// The certificate id, when the entry got that far.
    pub certificate_id: Option<String>,
    /// Why.
    pub error: ErrorName,
    /// Details for people.
    pub message: String,
    /// The target it was rejected in, in a run with several (Split's rejections are listed in
    /// each: no target gets them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl From<Rejected> for RejectedEntry {
    fn from(r: Rejected) -> Self {
        RejectedEntry {
            index: r.index,
            device_id: r.device_id.filter(|d| !d.is_empty()),
            certificate_id: None,
            error: r.error,
            message: r.message,
            target: None,
        }
    }
}

impl RejectedEntry {
    /// The rejection in a result line, if the line is one.
    pub fn from_result(r: EntryResult) -> Option<Self> {
        (r.outcome == Outcome::Rejected).then(|| RejectedEntry {
            index: r.index,
            device_id: Some(r.device_id).filter(|d| !d.is_empty()),
            certificate_id: Some(r.certificate_id).filter(|c| !c.is_empty()),
            // The report counts a rejection without a name as IoT's (build_report does too).
            error: r.error.unwrap_or(ErrorName::RejectedByIot),
            message: r.message.unwrap_or_default(),
            target: None,
        })
    }
}

/// One chunk as Summarize found it.
#[derive(Debug, Clone, Default)]
pub struct ChunkOutcome {
    /// Its results added up, if the chunk completed.
    pub results: Option<ChunkTally>,
    /// Its stats, if written.
    pub stats: Option<ChunkStats>,
}

/// A results file added up line by line: all the report needs of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkTally {
    /// Result lines read.
    pub entries: u64,
    /// Their outcomes.
    pub outcomes: OutcomeCounts,
}

/// The fields of a results line that the report counts; the rest of the line is skipped
/// unread into memory.
#[derive(Debug, Deserialize)]
pub struct ResultLine {
    /// What happened.
    pub outcome: Outcome,
    /// Why the entry was rejected.
    #[serde(default)]
    pub error: Option<ErrorName>,
    /// A decommission's actions.
    #[serde(default)]
    pub actions: Vec<Action>,
}

impl ChunkTally {
    /// Counts one result line.
    pub fn add(&mut self, line: ResultLine) {
        self.entries += 1;
        for action in line.actions {
            *self.outcomes.actions.entry(action).or_default() += 1;
        }
        match line.outcome {
            Outcome::Registered => self.outcomes.registered += 1,
            Outcome::AlreadyRegistered => self.outcomes.already_registered += 1,
            Outcome::Activated => self.outcomes.activated += 1,
            Outcome::AlreadyActive => self.outcomes.already_active += 1,
            Outcome::Removed => self.outcomes.removed += 1,
            Outcome::WouldRemove => self.outcomes.would_remove += 1,
            Outcome::AlreadyRemoved => self.outcomes.already_removed += 1,
            // A rejection without a name counts as IoT's, as `thingpress report` does.
            Outcome::Rejected => self
                .outcomes
                .reject(line.error.unwrap_or(ErrorName::RejectedByIot)),
        }
    }
}

/// The report added up one chunk at a time, in index order, so Summarize holds counts only,
/// never a chunk's results once they are counted.
#[derive(Debug, Clone, Default)]
pub struct ReportBuilder {
    outcomes: OutcomeCounts,
    problems: Vec<String>,
    api_calls: BTreeMap<String, u64>,
    api_throttles: BTreeMap<String, u64>,
    token_wait_ms: u64,
    throttled: u64,
    deadline_stops: u64,
    continuations: u64,
    stalls: u64,
    chunk_retries: u64,
    chunks_read: usize,
}

impl ReportBuilder {
    /// Starts from Split's rejections.
    pub fn new(split_rejections: &OutcomeCounts) -> ReportBuilder {
        ReportBuilder {
            outcomes: split_rejections.clone(),
            ..ReportBuilder::default()
        }
    }

    /// Adds the next chunk of the index.
    pub fn add(&mut self, descriptor: &ChunkDescriptor, chunk: ChunkOutcome) {
        self.chunks_read += 1;
        if let Some(stats) = &chunk.stats {
            add_per_api(&mut self.api_calls, &stats.api_calls, "");
            add_per_api(&mut self.api_throttles, &stats.api_throttles, "");
            self.token_wait_ms += stats.token_wait_ms;
            self.throttled += stats.throttled;
            self.deadline_stops += stats.deadline_stops;
            self.continuations += stats.continuations;
            self.stalls += stats.stalls;
            self.chunk_retries += u64::from(stats.attempts.saturating_sub(1));
        }
        let Some(tally) = chunk.results else {
            let why = match chunk.stats.as_ref().and_then(|s| s.failure.as_ref()) {
                Some(failure) => format!(": it failed with {failure}"),
                None => String::new(),
            };
            self.problems.push(format!(
                "chunk {} ({}) has no results{why}",
                descriptor.chunk, descriptor.key
            ));
            return;
        };
        if tally.entries != descriptor.entries {
            self.problems.push(format!(
                "chunk {} has {} results for {} entries",
                descriptor.chunk, tally.entries, descriptor.entries
            ));
        }
        self.outcomes.add(&tally.outcomes);
    }

    /// The report, once every chunk of `index` was added, checking that the counts add up.
    pub fn finish(self, run: &RunInfo, index: &[ChunkDescriptor], finished_at_ms: u64) -> Report {
        let ReportBuilder {
            outcomes,
            mut problems,
            api_calls,
            api_throttles,
            token_wait_ms,
            throttled,
            deadline_stops,
            continuations,
            stalls,
            chunk_retries,
            chunks_read,
        } = self;
        if index.len() != chunks_read {
            problems.insert(
                0,
                format!(
                    "the index lists {} chunks but {chunks_read} were read",
                    index.len()
                ),
            );
        }
        let accepted_in_chunks: u64 = index.iter().map(|c| c.entries).sum();
        if accepted_in_chunks != run.accepted {
            problems.push(format!(
                "Split accepted {} entries but the chunks hold {accepted_in_chunks}",
                run.accepted
            ));
        }
        if problems.is_empty() && outcomes.total() != run.entries {
            problems.push(format!(
                "{} entries read but {} outcomes counted",
                run.entries,
                outcomes.total()
            ));
        }
        let duration_seconds = finished_at_ms.saturating_sub(run.started_at_ms) as f64 / 1000.0;
        let certificates = (outcomes.registered
            + outcomes.already_registered
            + outcomes.activated
            + outcomes.already_active
            + outcomes.removed
            + outcomes.would_remove
            + outcomes.already_removed) as f64;
        Report {
            run_id: run.run_id.clone(),
            operation: run.operation,
            status: if problems.is_empty() {
                RunStatus::Complete
            } else {
                RunStatus::Incomplete
            },
            source: run.source.clone(),
            supplier: run.supplier,
            profile: run.profile.name.clone(),
            entries: run.entries,
            outcomes,
            chunks: u32::try_from(index.len()).unwrap_or(u32::MAX),
            problems,
            api_calls,
            api_throttles,
            token_wait_ms,
            throttled,
            deadline_stops,
            continuations,
            stalls,
            chunk_retries,
            started_at_ms: run.started_at_ms,
            finished_at_ms,
            duration_seconds,
            certificates_per_second: if duration_seconds > 0.0 {
                certificates / duration_seconds
            } else {
                0.0
            },
            target: None,
            targets: Vec::new(),
        }
    }
}

/// Builds a run's report chunk by chunk, one [`ReportBuilder`] per target for a run with
/// several, each over that target's items.
pub struct RunReportBuilder {
    /// One builder per target, in the order the index first names them (one with `None` for a
    /// run without targets).
    builders: Vec<(Option<String>, ReportBuilder)>,
}

impl RunReportBuilder {
    /// Starts every target's report from Split's rejections (every target gets every entry).
    pub fn new(split_rejections: &OutcomeCounts, index: &[ChunkDescriptor]) -> RunReportBuilder {
        let mut builders: Vec<(Option<String>, ReportBuilder)> = Vec::new();
        for id in index.iter().map(ChunkDescriptor::target_id) {
            if !builders.iter().any(|(t, _)| *t == id) {
                builders.push((id, ReportBuilder::new(split_rejections)));
            }
        }
        if builders.is_empty() {
            builders.push((None, ReportBuilder::new(split_rejections)));
        }
        RunReportBuilder { builders }
    }

    /// Adds the next item of the index to its target's report.
    pub fn add(&mut self, descriptor: &ChunkDescriptor, chunk: ChunkOutcome) {
        let id = descriptor.target_id();
        if let Some((_, builder)) = self.builders.iter_mut().find(|(t, _)| *t == id) {
            builder.add(descriptor, chunk);
        }
    }

    /// The run's report: its one target's, or the sum of its targets' with each kept in
    /// `targets`.
    pub fn finish(self, run: &RunInfo, index: &[ChunkDescriptor], finished_at_ms: u64) -> Report {
        let mut reports: Vec<Report> = self
            .builders
            .into_iter()
            .map(|(id, builder)| {
                let items: Vec<ChunkDescriptor> = index
                    .iter()
                    .filter(|c| c.target_id() == id)
                    .cloned()
                    .collect();
                Report {
                    target: id,
                    ..builder.finish(run, &items, finished_at_ms)
                }
            })
            .collect();
        if reports.len() == 1 && reports[0].target.is_none() {
            return reports.remove(0);
        }
        sum_of_targets(reports)
    }
}

/// Adds per-API counts into `into`, each API's name after `prefix`.
fn add_per_api(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>, prefix: &str) {
    for (api, n) in from {
        *into.entry(format!("{prefix}{api}")).or_default() += n;
    }
}

/// One report over several targets' reports: their counts added up, their problems named by
/// target, each kept in `targets`.
fn sum_of_targets(targets: Vec<Report>) -> Report {
    let mut run = Report {
        outcomes: OutcomeCounts::default(),
        chunks: 0,
        problems: Vec::new(),
        api_calls: BTreeMap::new(),
        api_throttles: BTreeMap::new(),
        token_wait_ms: 0,
        throttled: 0,
        deadline_stops: 0,
        continuations: 0,
        stalls: 0,
        chunk_retries: 0,
        certificates_per_second: 0.0,
        target: None,
        ..targets[0].clone()
    };
    for t in &targets {
        let id = t.target.as_deref().unwrap_or_default();
        run.outcomes.add(&t.outcomes);
        run.chunks += t.chunks;
        run.problems
            .extend(t.problems.iter().map(|p| format!("target {id}: {p}")));
        let prefix = format!("{id}/");
        add_per_api(&mut run.api_calls, &t.api_calls, &prefix);
        add_per_api(&mut run.api_throttles, &t.api_throttles, &prefix);
        run.token_wait_ms += t.token_wait_ms;
        run.throttled += t.throttled;
        run.deadline_stops += t.deadline_stops;
        run.continuations += t.continuations;
        run.stalls += t.stalls;
        run.chunk_retries += t.chunk_retries;
        run.certificates_per_second += t.certificates_per_second;
    }
    run.status = if run.problems.is_empty() {
        RunStatus::Complete
    } else {
        RunStatus::Incomplete
    };
    run.targets = targets;
    run
}

/// Builds the report from Split's run info and rejections and every chunk's outcome (in index
/// order), checking that the counts add up.
pub fn build_report(
    run: &RunInfo,
    index: &[ChunkDescriptor],
    split_rejections: &OutcomeCounts,
    chunks: impl IntoIterator<Item = ChunkOutcome>,
    finished_at_ms: u64,
) -> Report {
    let mut builder = RunReportBuilder::new(split_rejections, index);
    for (descriptor, chunk) in index.iter().zip(chunks) {
        builder.add(descriptor, chunk);
    }
    builder.finish(run, index, finished_at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingpress_product::Profile;

    fn run(entries: u64, accepted: u64) -> RunInfo {
        RunInfo {
            run_id: "r".into(),
            operation: Default::default(),
            source: SourceObject {
                bucket: "b".into(),
                key: "k".into(),
                etag: String::new(),
                version_id: None,
            },
            profile: Profile::named("p"),
            supplier: Supplier::Pem,
            chunk_size: 2,
            max_concurrency: 1,
            entries,
            accepted,
            rejected: entries - accepted,
            chunk_count: 2,
            rejected_parts: 0,
            started_at_ms: 0,
            rates: None,
        }
    }

    fn descriptor(chunk: u32, entries: u64) -> ChunkDescriptor {
        ChunkDescriptor {
            chunk,
            key: format!("runs/r/chunks/{chunk:05}.jsonl"),
            entries,
            first_index: u64::from(chunk) * 2,
            target: None,
        }
    }

    fn tally(lines: &[&str]) -> ChunkTally {
        let mut tally = ChunkTally::default();
        for line in lines {
            tally.add(serde_json::from_str(line).unwrap());
        }
        tally
    }

    #[test]
    fn a_run_over_two_targets_reports_each_and_names_the_one_that_failed() {
        use thingpress_product::Target;
        let eu = Target::home("eu-west-1");
        let other = Target {
            region: "us-east-1".into(),
            role_arn: Some("arn:aws:iam::222222222222:role/thingpress-target".into()),
            external_id: Some("ext-1".into()),
        };
        // One chunk of 2 entries (one Split rejection besides), registered in two targets.
        let item = |n: u32, target: &Target| ChunkDescriptor {
            chunk: n,
            target: Some(target.clone()),
            ..descriptor(0, 2)
        };
        let index = [item(0, &eu), item(1, &other)];
        let mut split = OutcomeCounts::default();
        split.reject(ErrorName::InvalidSignature);
        let registered = ChunkOutcome {
            results: Some(tally(&[
                r#"{"outcome":"registered"}"#,
                r#"{"outcome":"alreadyRegistered"}"#,
            ])),
            stats: None,
        };
        let failed = ChunkOutcome {
            results: None,
            stats: Some(ChunkStats {
                failure: Some(ChunkFailure {
                    error: ErrorName::TargetUnavailable,
                    message: "AssumeRole: AccessDenied".into(),
                }),
                ..ChunkStats::default()
            }),
        };
        let report = build_report(
            &run(3, 2),
            &index,
            &split,
            [registered.clone(), failed],
            1000,
        );
        assert_eq!(report.status, RunStatus::Incomplete);
        assert_eq!(report.targets.len(), 2);
        let eu_report = report.of_target("eu-west-1").unwrap();
        assert_eq!(
            eu_report.status,
            RunStatus::Complete,
            "{:?}",
            eu_report.problems
        );
        assert_eq!(
            eu_report.outcomes.total(),
            3,
            "every entry, Split's rejection too"
        );
        let failed = report.of_target("222222222222-us-east-1").unwrap();
        assert_eq!(failed.status, RunStatus::Incomplete);
        assert_eq!(
            report.problems,
            [
                "target 222222222222-us-east-1: chunk 1 (runs/r/chunks/00000.jsonl) has no results: \
              it failed with Thingpress.TargetUnavailable: AssumeRole: AccessDenied"
            ]
        );
        assert_eq!(report.outcomes.registered, 1);
        assert_eq!(
            report.outcomes.rejected, 2,
            "Split's rejection, in each target"
        );
        assert_eq!(report.entries, 3);

        // Both targets done: complete, and the counts of each add up on their own.
        let report = build_report(
            &run(3, 2),
            &index,
            &split,
            [registered.clone(), registered],
            1000,
        );
        assert_eq!(report.status, RunStatus::Complete, "{:?}", report.problems);
        assert_eq!(report.outcomes.total(), 6);
        let again: Report = serde_json::from_value(serde_json::to_value(&report).unwrap()).unwrap();
        assert_eq!(again, report);
    }

    #[test]
    fn chunks_add_up_line_by_line_into_the_report() {
        let index = [descriptor(0, 2), descriptor(1, 2)];
        let mut split = OutcomeCounts::default();
        split.reject(ErrorName::InvalidSignature);
        let mut builder = ReportBuilder::new(&split);
        builder.add(
            &index[0],
            ChunkOutcome {
                // Whole results lines: the fields the report does not count are skipped.
                results: Some(tally(&[
                    r#"{"index":0,"certificateId":"c","thingName":"t","deviceId":"d","outcome":"registered"}"#,
                    r#"{"index":1,"certificateId":"c","thingName":"t","deviceId":"d","outcome":"rejected","error":"Thingpress.ThingConflict"}"#,
                ])),
                stats: Some(ChunkStats {
                    api_calls: [("CreateThing".to_owned(), 2)].into(),
                    attempts: 4,
                    throttled: 2,
                    deadline_stops: 1,
                    continuations: 2,
                    stalls: 1,
                    api_throttles: [("CreateThing".to_owned(), 3)].into(),
                    token_wait_ms: 1500,
                    ..ChunkStats::default()
                }),
            },
        );
        builder.add(
            &index[1],
            ChunkOutcome {
                results: Some(tally(&[
                    r#"{"outcome":"alreadyRegistered"}"#,
                    r#"{"outcome":"rejected"}"#,
                ])),
                stats: None,
            },
        );
        let report = builder.finish(&run(5, 4), &index, 1000);
        assert_eq!(report.status, RunStatus::Complete, "{:?}", report.problems);
        assert_eq!(report.outcomes.registered, 1);
        assert_eq!(report.outcomes.already_registered, 1);
        assert_eq!(report.outcomes.rejected, 3);
        assert_eq!(
            report.outcomes.rejected_by_error[&ErrorName::RejectedByIot],
            1
        );
        assert_eq!(
            report.outcomes.rejected_by_error[&ErrorName::ThingConflict],
            1
        );
        assert_eq!(report.api_calls["CreateThing"], 2);
        assert_eq!(report.api_throttles["CreateThing"], 3);
        assert_eq!(report.token_wait_ms, 1500);
        assert_eq!(
            (
                report.throttled,
                report.deadline_stops,
                report.continuations,
                report.stalls,
                report.chunk_retries
            ),
            (2, 1, 2, 1, 3)
        );
        // Stats and reports written before deadline stops were counted apart still read.
        let old: ChunkStats = serde_json::from_str(
            r#"{"apiCalls":{},"attempts":2,"throttled":1,"startedAtMs":1,"finishedAtMs":2}"#,
        )
        .unwrap();
        assert_eq!((old.throttled, old.deadline_stops), (1, 0));
        let mut wire = serde_json::to_value(&report).unwrap();
        assert_eq!(wire["deadlineStops"], 1);
        wire.as_object_mut().unwrap().remove("deadlineStops");
        wire.as_object_mut().unwrap().remove("continuations");
        wire.as_object_mut().unwrap().remove("stalls");
        let old: Report = serde_json::from_value(wire).unwrap();
        assert_eq!(old.deadline_stops, 0);
    }

    #[test]
    fn a_missing_or_short_chunk_makes_the_report_incomplete() {
        let index = [descriptor(0, 2), descriptor(1, 2)];
        let mut builder = ReportBuilder::new(&OutcomeCounts::default());
        builder.add(
            &index[0],
            ChunkOutcome {
                results: Some(tally(&[r#"{"outcome":"registered"}"#])),
                stats: None,
            },
        );
        builder.add(&index[1], ChunkOutcome::default());
        let report = builder.finish(&run(4, 4), &index, 0);
        assert_eq!(report.status, RunStatus::Incomplete);
        assert_eq!(
            report.problems,
            vec![
                "chunk 0 has 1 results for 2 entries".to_owned(),
                "chunk 1 (runs/r/chunks/00001.jsonl) has no results".to_owned(),
            ]
        );

        let short = build_report(&run(4, 4), &index, &OutcomeCounts::default(), [], 0);
        assert_eq!(
            short.problems,
            vec!["the index lists 2 chunks but 0 were read".to_owned()]
        );
    }

    #[test]
    fn result_lines_other_than_rejections_are_not_rejected_entries() {
        let line = |outcome, error| EntryResult {
            index: 7,
            certificate_id: "ab".into(),
            thing_name: "t".into(),
            device_id: String::new(),
            outcome,
            certificate_arn: None,
            actions: Vec::new(),
            error,
            message: None,
        };
        assert_eq!(
            RejectedEntry::from_result(line(Outcome::Registered, None)),
            None
        );
        let r = RejectedEntry::from_result(line(Outcome::Rejected, None)).unwrap();
        assert_eq!(r.error, ErrorName::RejectedByIot);
        assert_eq!(r.device_id, None);
        assert_eq!(r.certificate_id.as_deref(), Some("ab"));
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"index": 7, "deviceId": null, "certificateId": "ab",
                   "error": "Thingpress.RejectedByIot", "message": ""})
        );
    }
}
