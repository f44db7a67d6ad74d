//! The metrics one Register invocation emits (`thingpress_metrics`, embedded metric format on
//! stdout): the entries it finished per outcome, the run's age, an import's paced rate and, when
//! the chunk ends, its duration, on one line; its IoT requests and throttles on one line per API
//! it called (EMF takes a dimension's value from the line's root, so one line holds one `Api`).
//! A handful of lines per invocation, never one per entry.
//!
//! "Finished in this invocation" is every result the chunk holds now less those saved by earlier
//! invocations, so an entry counts once however many continuations its chunk takes (and a
//! decoration rejection counts in the first invocation, which is when it is first saved).

use std::collections::BTreeMap;

use thingpress_importer::{Api, ApiCalls, CallStats, EntryResult, Outcome};
use thingpress_metrics::{Dimension, Document, Emitter, Metric};
use thingpress_run::payload::Operation;
use thingpress_run::records::{ProgressLine, RunInfo};

/// Entries per outcome metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Outcomes(BTreeMap<Metric, u64>);

impl Outcomes {
    /// The outcomes of the results earlier invocations saved.
    pub(crate) fn saved(progress: &[ProgressLine]) -> Outcomes {
        Outcomes::of(progress.iter().filter_map(|line| match line {
            ProgressLine::Done(result) => Some(result),
            ProgressLine::Partial { .. } => None,
        }))
    }

    fn of<'a>(results: impl IntoIterator<Item = &'a EntryResult>) -> Outcomes {
        let mut counts = BTreeMap::new();
        for result in results {
            *counts.entry(outcome_metric(result.outcome)).or_default() += 1;
        }
        Outcomes(counts)
    }

    /// What `self` holds beyond `before`.
    fn since(mut self, before: &Outcomes) -> Outcomes {
        for (metric, n) in &before.0 {
            if let Some(count) = self.0.get_mut(metric) {
                *count = count.saturating_sub(*n);
            }
        }
        Outcomes(self.0)
    }

    fn get(&self, metric: Metric) -> u64 {
        self.0.get(&metric).copied().unwrap_or_default()
    }
}

/// The metric counting entries of an outcome.
fn outcome_metric(outcome: Outcome) -> Metric {
    match outcome {
        Outcome::Registered => Metric::Registered,
        Outcome::AlreadyRegistered => Metric::AlreadyRegistered,
        Outcome::Rejected => Metric::Rejected,
        Outcome::Activated => Metric::Activated,
        Outcome::AlreadyActive => Metric::AlreadyActive,
        Outcome::Removed => Metric::Removed,
        Outcome::WouldRemove => Metric::WouldRemove,
        Outcome::AlreadyRemoved => Metric::AlreadyRemoved,
    }
}

/// The outcomes an operation's entries end in, emitted on every invocation, zeros included, so
/// a stalled import draws a rate of 0 rather than a gap.
fn operation_outcomes(operation: Operation) -> &'static [Metric] {
    match operation {
        Operation::Import => &[
            Metric::Registered,
            Metric::AlreadyRegistered,
            Metric::Rejected,
        ],
        Operation::Activate => &[Metric::Activated, Metric::AlreadyActive, Metric::Rejected],
        Operation::Decommission => &[Metric::Removed, Metric::AlreadyRemoved, Metric::Rejected],
        Operation::DecommissionDryRun => &[
            Metric::WouldRemove,
            Metric::AlreadyRemoved,
            Metric::Rejected,
        ],
    }
}

/// What one invocation did to a chunk, for its metrics lines.
#[derive(Debug, Clone)]
pub(crate) struct ChunkMetrics {
    run_id: String,
    chunk: u32,
    operation: Operation,
    run_started_ms: u64,
    chunk_started_ms: u64,
    paced_rate: Option<f64>,
    finished: Outcomes,
    attempts: ApiCalls,
    throttles: ApiCalls,
}

impl ChunkMetrics {
    /// The invocation on chunk `chunk` of `run`: `results` are all the chunk's finished entries
    /// now, `saved` what earlier invocations had saved, `calls` this invocation's IoT calls.
    pub(crate) fn new(
        run: &RunInfo,
        chunk: u32,
        saved: &Outcomes,
        results: &[EntryResult],
        calls: &CallStats,
        chunk_started_ms: u64,
    ) -> ChunkMetrics {
        // Split's pace for the run (imports only), not recomputed per invocation.
        let paced_rate = run
            .rates
            .map(|rates| rates.paced_per_second)
            .filter(|rate| rate.is_finite());
        ChunkMetrics {
            run_id: run.run_id.clone(),
            chunk,
            operation: run.operation,
            run_started_ms: run.started_at_ms,
            chunk_started_ms,
            paced_rate,
            finished: Outcomes::of(results).since(saved),
            attempts: calls.attempts.clone(),
            throttles: calls.throttles.clone(),
        }
    }

    /// The lines at `now_ms`: the invocation's, then one per IoT API it sent requests to;
    /// `chunk_done` when the invocation finished the chunk.
    pub(crate) fn documents(
        &self,
        emitter: &Emitter,
        chunk_done: bool,
        now_ms: u64,
    ) -> Vec<Document> {
        let mut invocation = emitter.document(now_ms);
        invocation
            .property("runId", self.run_id.as_str())
            .property("chunk", self.chunk)
            .property(
                "operation",
                serde_json::to_value(self.operation).unwrap_or_default(),
            );
        for metric in operation_outcomes(self.operation) {
            invocation.put(*metric, self.finished.get(*metric) as f64);
        }
        // An outcome the operation does not expect still counts, if it happened.
        for (metric, n) in &self.finished.0 {
            if !operation_outcomes(self.operation).contains(metric) && *n > 0 {
                invocation.put(*metric, *n as f64);
            }
        }
        let age_ms = now_ms.saturating_sub(self.run_started_ms);
        invocation.put(Metric::RunAge, age_ms as f64 / 1000.0);
        if let Some(rate) = self.paced_rate {
            invocation.put(Metric::PacedRate, rate);
        }
        if chunk_done {
            let duration_ms = now_ms.saturating_sub(self.chunk_started_ms);
            invocation.put(Metric::ChunkDuration, duration_ms as f64);
        }
        let mut documents = vec![invocation];
        for api in Api::ALL {
            let requests = self.attempts.get(api);
            if requests == 0 {
                continue;
            }
            let mut per_api = emitter.document(now_ms);
            per_api
                .dimension(Dimension::Api, api.as_str())
                .property("runId", self.run_id.as_str())
                .put(Metric::IotCalls, requests as f64)
                .put(Metric::IotThrottles, self.throttles.get(api) as f64);
            documents.push(per_api);
        }
        documents
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingpress_manifest::Supplier;
    use thingpress_metrics::Reading;
    use thingpress_product::Profile;
    use thingpress_run::records::SourceObject;

    fn run(operation: Operation) -> RunInfo {
        let mut profile = Profile::named("widget");
        profile.policies = vec!["DevicePolicy".into(), "Telemetry".into()];
        serde_json::from_value(serde_json::json!({
            "runId": "run-7",
            "operation": operation,
            "source": SourceObject { bucket: "b".into(), key: "k".into(), etag: String::new(), version_id: None },
            "profile": profile,
            "supplier": Supplier::Pem,
            "chunkSize": 10, "maxConcurrency": 1, "entries": 10, "accepted": 10, "rejected": 0,
            "chunkCount": 1, "rejectedParts": 0,
            "startedAtMs": 1_000_000,
            // As Split records them for an import (Settings::rates: default quotas less 10 %).
            "rates": (operation == Operation::Import)
                .then_some(serde_json::json!({"pacedPerSecond": 6.75, "quotaPerSecond": 7.5})),
        }))
        .unwrap()
    }

    fn result(index: u64, outcome: Outcome) -> EntryResult {
        EntryResult {
            index,
            certificate_id: format!("c{index}"),
            thing_name: format!("t{index}"),
            device_id: format!("d{index}"),
            outcome,
            certificate_arn: None,
            actions: Vec::new(),
            error: None,
            message: None,
        }
    }

    fn calls(pairs: &[(Api, u64, u64)]) -> CallStats {
        CallStats {
            calls: ApiCalls(pairs.iter().map(|(a, n, _)| (*a, *n)).collect()),
            attempts: ApiCalls(pairs.iter().map(|(a, n, t)| (*a, n + t)).collect()),
            throttles: ApiCalls(pairs.iter().map(|(a, _, t)| (*a, *t)).collect()),
            token_wait: std::time::Duration::ZERO,
        }
    }

    fn lines(metrics: &ChunkMetrics, chunk_done: bool, now_ms: u64) -> Vec<Reading> {
        let (emitter, captured) = Emitter::capturing("tp-test");
        emitter.emit(&metrics.documents(&emitter, chunk_done, now_ms));
        captured
            .lines()
            .iter()
            .map(|line| Reading::parse(line).unwrap_or_else(|p| panic!("{line}: {p:?}")))
            .collect()
    }

    #[test]
    fn an_invocation_counts_only_what_it_finished_and_its_calls_per_api() {
        let earlier = vec![
            ProgressLine::Done(result(0, Outcome::Registered)),
            ProgressLine::Done(result(1, Outcome::AlreadyRegistered)),
        ];
        let now = vec![
            result(0, Outcome::Registered),
            result(1, Outcome::AlreadyRegistered),
            result(2, Outcome::Registered),
            result(3, Outcome::Registered),
            result(4, Outcome::Rejected),
        ];
        let stats = calls(&[
            (Api::RegisterCertificateWithoutCA, 3, 2),
            (Api::CreateThing, 2, 0),
        ]);
        let metrics = ChunkMetrics::new(
            &run(Operation::Import),
            3,
            &Outcomes::saved(&earlier),
            &now,
            &stats,
            1_500_000,
        );
        let read = lines(&metrics, false, 1_600_000);
        assert_eq!(
            read.len(),
            3,
            "the invocation's line and one per API called"
        );

        let invocation = &read[0];
        assert_eq!(invocation.dimension("Stack"), Some("tp-test"));
        assert_eq!(invocation.value("Registered"), Some(2.0));
        assert_eq!(invocation.value("AlreadyRegistered"), Some(0.0));
        assert_eq!(invocation.value("Rejected"), Some(1.0));
        assert_eq!(invocation.value("RunAge"), Some(600.0));
        assert_eq!(
            invocation.metrics["RunAge"].unit.as_deref(),
            Some("Seconds")
        );
        // Default quotas less 10 %: AttachPolicy's 15/s over 2 policies bounds the profile.
        assert_eq!(invocation.value("PacedRate"), Some(6.75));
        assert_eq!(invocation.value("ChunkDuration"), None, "the chunk goes on");
        assert_eq!(invocation.members["runId"], "run-7");
        assert_eq!(invocation.members["chunk"], 3);
        assert_eq!(invocation.members["operation"], "import");

        let register = &read[1];
        assert_eq!(
            register.dimension("Api"),
            Some("RegisterCertificateWithoutCA")
        );
        assert_eq!(
            register.value("IotCalls"),
            Some(5.0),
            "requests: calls and retries"
        );
        assert_eq!(register.value("IotThrottles"), Some(2.0));
        assert_eq!(
            register.metrics["IotThrottles"].dimension_sets,
            vec![vec!["Stack", "Api"], vec!["Stack"]]
        );
        assert_eq!(read[2].dimension("Api"), Some("CreateThing"));
        assert_eq!(read[2].value("IotThrottles"), Some(0.0));
    }

    #[test]
    fn the_invocation_that_ends_the_chunk_gives_its_duration() {
        let metrics = ChunkMetrics::new(
            &run(Operation::Import),
            0,
            &Outcomes::default(),
            &[result(0, Outcome::Rejected)],
            &calls(&[]),
            1_200_000,
        );
        let read = lines(&metrics, true, 1_254_321);
        assert_eq!(read.len(), 1, "no IoT call, no per-API line");
        assert_eq!(read[0].value("ChunkDuration"), Some(54_321.0));
        assert_eq!(
            read[0].metrics["ChunkDuration"].unit.as_deref(),
            Some("Milliseconds")
        );
        assert_eq!(read[0].value("Rejected"), Some(1.0));
    }

    #[test]
    fn other_operations_count_their_own_outcomes_and_pace_nothing() {
        let metrics = ChunkMetrics::new(
            &run(Operation::DecommissionDryRun),
            0,
            &Outcomes::default(),
            &[
                result(0, Outcome::WouldRemove),
                result(1, Outcome::AlreadyRemoved),
            ],
            &calls(&[(Api::DescribeThing, 2, 0)]),
            1_000_000,
        );
        let read = lines(&metrics, true, 1_000_500);
        assert_eq!(read[0].value("WouldRemove"), Some(1.0));
        assert_eq!(read[0].value("AlreadyRemoved"), Some(1.0));
        assert_eq!(read[0].value("Rejected"), Some(0.0));
        assert_eq!(read[0].value("Registered"), None);
        assert_eq!(read[0].value("PacedRate"), None);
        assert_eq!(read[0].members["operation"], "decommissionDryRun");
        assert_eq!(read[1].dimension("Api"), Some("DescribeThing"));
    }
}
