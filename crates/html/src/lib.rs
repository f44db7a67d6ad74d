//! A run's report as one HTML page that opens offline and can be handed on: the run and its
//! manifest, the outcomes, throughput against the quota, the chunk timeline, the rejected
//! entries (filterable, searchable) and what to do next.
//!
//! [`RunPage`] is what the CLI reads of a run (the typed report, the chunks' stats, the first
//! rejected entries); [`render`] fills `templates/report.html` with it, escaping everything;
//! `charts` computes the SVG geometry the template draws, and `next` the commands it suggests.
//! Nothing is fetched when the page opens: its style, script and charts are inline.

mod charts;
mod next;

use std::collections::{BTreeMap, BTreeSet};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde::Serialize;
use thingpress_run::records::{ChunkDescriptor, ChunkStats, Rates};
use thingpress_run::report::{RejectedEntry, Report, RunStatus};

pub use charts::ChunkSpan;
pub use next::Step;

/// Most rejected entries the page embeds; the rest are a command away (`--output csv`).
pub const EMBEDDED_REJECTIONS: usize = 500;
/// Longest message kept per rejected entry.
const MESSAGE_CHARS: usize = 200;

/// A page could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the HTML report: {0}")]
pub struct HtmlError(#[from] minijinja::Error);

/// What the page shows of one run.
#[derive(Debug, Clone)]
pub struct RunPage<'a> {
    /// The run's report (or one target's).
    pub report: &'a Report,
    /// The rates the run's import was paced at (`run.json`), per target.
    pub rates: Option<Rates>,
    /// The chunks of the index the report covers, with their stats, in index order.
    pub chunks: &'a [Chunk],
    /// The first rejected entries, in manifest order (at most [`EMBEDDED_REJECTIONS`]).
    pub rejected: &'a [RejectedEntry],
    /// The CLI with the stack option used, for the commands the page suggests.
    pub cli: &'a str,
    /// When the page was made, milliseconds since the Unix epoch.
    pub generated_at_ms: u64,
}

/// A chunk of the index, as the page needs it.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Its descriptor.
    pub descriptor: ChunkDescriptor,
    /// Its stats, if Register wrote any.
    pub stats: Option<ChunkStats>,
    /// Whether it has results (it finished).
    pub finished: bool,
}

/// The template's context: everything already in the words and numbers it shows.
#[derive(Debug, Serialize)]
struct View<'a> {
    run_id: &'a str,
    complete: bool,
    target: Option<&'a str>,
    kind: String,
    manifest: String,
    profile: &'a str,
    entries: u64,
    targets: Vec<TargetRow>,
    started: String,
    finished: String,
    duration: String,
    rate: f64,
    outcomes: charts::Outcomes,
    total: u64,
    throughput: Option<charts::Throughput>,
    timeline: charts::Timeline,
    apis: Vec<ApiRow>,
    rejected: Vec<RejectedRow>,
    rejected_total: u64,
    errors: Vec<String>,
    next: Vec<Step>,
    problems: &'a [String],
    generated: String,
}

#[derive(Debug, Serialize)]
struct TargetRow {
    id: String,
    complete: bool,
    done: String,
    rejected: u64,
}

#[derive(Debug, Serialize)]
struct ApiRow {
    api: String,
    calls: u64,
    throttles: u64,
}

#[derive(Debug, Serialize)]
struct RejectedRow {
    index: u64,
    device_id: String,
    certificate_id: String,
    error: &'static str,
    message: String,
    target: Option<String>,
}

/// The page, as one self-contained HTML document.
pub fn render(page: &RunPage<'_>) -> Result<String, HtmlError> {
    let mut env = minijinja::Environment::new();
    // The name's .html turns on HTML escaping of every value.
    env.add_template("report.html", include_str!("../templates/report.html"))?;
    let html = env.get_template("report.html")?.render(view(page))?;
    Ok(html)
}

fn view<'a>(page: &RunPage<'a>) -> View<'a> {
    let report = page.report;
    let o = &report.outcomes;
    let mut counts: Vec<(String, &'static str, u64, Option<String>)> = report
        .done_counts()
        .iter()
        .map(|(what, n)| ((*what).to_owned(), "done", *n, None))
        .collect();
    counts.extend(o.rejected_by_error.iter().map(|(name, n)| {
        let name = name.as_str().to_owned();
        (name.clone(), "rejected", *n, Some(name))
    }));
    // An incomplete run's entries that have no outcome yet, so the bars add up to the entries.
    let missing = report.without_outcome();
    if missing > 0 {
        counts.push(("no outcome yet".to_owned(), "missing", missing, None));
    }
    let mut done_per_minute = BTreeMap::new();
    for stats in page.chunks.iter().filter_map(|c| c.stats.as_ref()) {
        for (minute, n) in &stats.done_per_minute {
            *done_per_minute.entry(*minute).or_insert(0) += n;
        }
    }
    let targets = report.target_count() as f64;
    let spans: Vec<ChunkSpan> = page.chunks.iter().map(span).collect();
    let count = |per_api: &BTreeMap<String, u64>, api: &str| per_api.get(api).copied().unwrap_or(0);
    let apis: BTreeSet<&String> = report
        .api_calls
        .keys()
        .chain(report.api_throttles.keys())
        .collect();
    let apis = apis
        .into_iter()
        .map(|api| ApiRow {
            api: api.clone(),
            calls: count(&report.api_calls, api),
            throttles: count(&report.api_throttles, api),
        })
        .collect();
    View {
        run_id: &report.run_id,
        complete: report.status == RunStatus::Complete,
        target: report.target.as_deref(),
        kind: report.source_kind(),
        manifest: report.source.url(),
        profile: &report.profile,
        entries: report.entries,
        targets: report.targets.iter().map(target_row).collect(),
        started: timestamp(report.started_at_ms),
        finished: timestamp(report.finished_at_ms),
        duration: duration(report.duration_seconds),
        rate: (report.certificates_per_second * 10.0).round() / 10.0,
        total: o.total() + missing,
        outcomes: charts::outcomes(&counts),
        throughput: charts::throughput(
            &done_per_minute,
            report.started_at_ms,
            report.finished_at_ms,
            page.rates.map(|r| r.paced_per_second * targets),
            page.rates.map(|r| r.quota_per_second * targets),
        ),
        timeline: charts::timeline(&spans, report.started_at_ms, report.finished_at_ms),
        apis,
        rejected: page
            .rejected
            .iter()
            .take(EMBEDDED_REJECTIONS)
            .map(rejected_row)
            .collect(),
        rejected_total: o.rejected,
        errors: o
            .rejected_by_error
            .keys()
            .map(|e| e.as_str().to_owned())
            .collect(),
        next: next::steps(
            report,
            page.cli,
            page.rejected.len().min(EMBEDDED_REJECTIONS),
        ),
        problems: &report.problems,
        generated: timestamp(page.generated_at_ms),
    }
}

fn span(chunk: &Chunk) -> ChunkSpan {
    let stats = chunk.stats.as_ref();
    ChunkSpan {
        chunk: chunk.descriptor.chunk,
        target: chunk.descriptor.target_id(),
        entries: chunk.descriptor.entries,
        started_ms: stats.map(|s| s.started_at_ms).filter(|ms| *ms > 0),
        finished_ms: stats
            .map(|s| s.finished_at_ms)
            .filter(|ms| chunk.finished && *ms > 0),
        attempts: stats.map_or(0, |s| s.attempts),
        throttles: stats.map_or(0, |s| s.api_throttles.values().sum()),
        throttled_stops: stats.map_or(0, |s| s.throttled),
        failure: stats
            .and_then(|s| s.failure.as_ref())
            .map(ToString::to_string)
            .or_else(|| (!chunk.finished).then(|| "no results".to_owned())),
    }
}

fn target_row(t: &Report) -> TargetRow {
    let done: Vec<String> = t
        .done_counts()
        .iter()
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    TargetRow {
        id: t.target.clone().unwrap_or_default(),
        complete: t.status == RunStatus::Complete,
        done: done.join(", "),
        rejected: t.outcomes.rejected,
    }
}

fn rejected_row(r: &RejectedEntry) -> RejectedRow {
    let mut message: String = r.message.split_whitespace().collect::<Vec<_>>().join(" ");
    if message.chars().count() > MESSAGE_CHARS {
        message = message.chars().take(MESSAGE_CHARS).chain(['…']).collect();
    }
    RejectedRow {
        index: r.index,
        device_id: r.device_id.clone().unwrap_or_default(),
        certificate_id: r.certificate_id.clone().unwrap_or_default(),
        error: r.error.as_str(),
        message,
        target: r.target.clone(),
    }
}

/// `2026-12-07 23:06:20 UTC`.
fn timestamp(ms: u64) -> String {
    let at = DateTime::from_millis(i64::try_from(ms).unwrap_or(i64::MAX));
    at.fmt(Format::DateTime)
        .map(|s| format!("{} UTC", s.trim_end_matches('Z').replacen('T', " ", 1)))
        .unwrap_or_else(|_| ms.to_string())
}

/// `1 h 02 min`, `3 min 05 s`, `12.3 s`.
fn duration(seconds: f64) -> String {
    let whole = seconds.round() as u64;
    match whole {
        0..60 => format!("{seconds:.1} s"),
        60..3600 => format!("{} min {:02} s", whole / 60, whole % 60),
        _ => format!("{} h {:02} min", whole / 3600, whole / 60 % 60),
    }
}

#[cfg(test)]
mod tests;
