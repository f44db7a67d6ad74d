//! The run report: what happened to every manifest entry, checked to add up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thingpress_importer::{EntryResult, Outcome};
use thingpress_manifest::Supplier;

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
    /// IoT calls that were still throttled after the SDK's retry.
    pub throttled: u64,
    /// Chunk invocations beyond the first (retries after throttling, faults or deadlines).
    pub chunk_retries: u64,
    /// Split's start, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Summarize's time, milliseconds since the Unix epoch.
    pub finished_at_ms: u64,
    /// Wall-clock seconds from Split to Summarize.
    pub duration_seconds: f64,
    /// Registered plus already-registered certificates per second of that time.
    pub certificates_per_second: f64,
}

/// One chunk as Summarize found it.
#[derive(Debug, Clone, Default)]
pub struct ChunkOutcome {
    /// Its result lines, if the chunk completed.
    pub results: Option<Vec<EntryResult>>,
    /// Its stats, if written.
    pub stats: Option<ChunkStats>,
}

/// Builds the report from Split's run info and rejections and every chunk's outcome (in index
/// order), checking that the counts add up.
pub fn build_report(
    run: &RunInfo,
    index: &[ChunkDescriptor],
    split_rejections: &OutcomeCounts,
    chunks: &[ChunkOutcome],
    finished_at_ms: u64,
) -> Report {
    let mut outcomes = split_rejections.clone();
    let mut problems = Vec::new();
    let mut api_calls: BTreeMap<String, u64> = BTreeMap::new();
    let mut throttled = 0;
    let mut chunk_retries = 0;
    if index.len() != chunks.len() {
        problems.push(format!(
            "the index lists {} chunks but {} were read",
            index.len(),
            chunks.len()
        ));
    }
    for (descriptor, chunk) in index.iter().zip(chunks) {
        if let Some(stats) = &chunk.stats {
            for (api, n) in &stats.api_calls {
                *api_calls.entry(api.clone()).or_default() += n;
            }
            throttled += stats.throttled;
            chunk_retries += u64::from(stats.attempts.saturating_sub(1));
        }
        let Some(results) = &chunk.results else {
            problems.push(format!(
                "chunk {} ({}) has no results",
                descriptor.chunk, descriptor.key
            ));
            continue;
        };
        if results.len() as u64 != descriptor.entries {
            problems.push(format!(
                "chunk {} has {} results for {} entries",
                descriptor.chunk,
                results.len(),
                descriptor.entries
            ));
        }
        for result in results {
            match result.outcome {
                Outcome::Registered => outcomes.registered += 1,
                Outcome::AlreadyRegistered => outcomes.already_registered += 1,
                Outcome::Rejected => outcomes.reject(
                    result
                        .error
                        .unwrap_or(thingpress_manifest::ErrorName::RejectedByIot),
                ),
            }
        }
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
    let certificates = (outcomes.registered + outcomes.already_registered) as f64;
    Report {
        run_id: run.run_id.clone(),
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
        throttled,
        chunk_retries,
        started_at_ms: run.started_at_ms,
        finished_at_ms,
        duration_seconds,
        certificates_per_second: if duration_seconds > 0.0 {
            certificates / duration_seconds
        } else {
            0.0
        },
    }
}
