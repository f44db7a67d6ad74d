//! `thingpress report`: a run's report (counts per outcome and error name) and its rejected
//! entries, streamed from Split's rejects and the chunks' results one object at a time, so a run
//! of millions of entries never sits in memory.

mod html;

use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;

use anyhow::{Context, Result, bail};
use futures::{Stream, StreamExt};
use serde_json::json;
use thingpress_manifest::Rejected;
use thingpress_run::payload::Operation;
use thingpress_run::records::ChunkDescriptor;
use thingpress_run::report::{RejectedEntry, Report, RunStatus};
use thingpress_run::{RunLayout, RunStore, S3Store};

use crate::output::{Output, outln};
use crate::runs::{chunks_with_results, locate_run, read_json};
use crate::target::{Target, TargetArgs, sdk_message};

/// Objects read at once while streaming rejected entries.
const READS_IN_FLIGHT: usize = 8;

/// Options of `thingpress report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run: its execution name (the run id) or execution ARN. A retry started by
    /// `thingpress retry-failed` names the run it retried.
    pub execution: String,
    /// `table`: the counts, then one line per rejected entry; `json`: `{"report": {…},
    /// "rejected": [{…}, …]}` (with --rejected-only, one JSON object per line); `csv`: one row per
    /// rejected entry, with a header: index,deviceId,certificateId,error,message.
    #[arg(long, default_value_t = Output::Table,
          value_parser = Output::only(&[Output::Table, Output::Json, Output::Csv]))]
    pub output: Output,
    /// Only the rejected entries (index, deviceId, certificateId, error name, message).
    #[arg(long)]
    pub rejected_only: bool,
    /// In a run with several targets (the profile's `targets`), only this one's outcomes and
    /// rejected entries: its id, the Region (eu-west-1) or <account>-<region> for another account.
    #[arg(long)]
    pub target: Option<String>,
    /// Write the report as one HTML page to FILE instead of printing it: the run, its outcomes,
    /// throughput against the quota, the chunks over time, the first 500 rejected entries
    /// (filterable) and what to do next. It opens offline and can be mailed.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["rejected_only", "output"])]
    pub html: Option<PathBuf>,
}

/// Runs the command.
pub async fn run(target_args: &TargetArgs, args: &Args) -> Result<()> {
    let target = Target::resolve(target_args).await?;
    let store = S3Store::new(target.s3());
    let run = locate_run(&target, &store, &args.execution).await?;
    let runs = RunStore::new(store.clone(), &target.bucket, run.clone());
    let Some(report) = runs.report().await? else {
        return no_report(&target, &store, &run, args.output).await;
    };
    let report = of_target(report, args.target.as_deref())?;
    let info = runs
        .run_info()
        .await
        .with_context(|| format!("run {} has a report but no run.json", run.run_id()))?;
    let mut index = runs
        .chunk_index()
        .await
        .with_context(|| format!("run {} has a report but no chunks.json", run.run_id()))?;
    if let Some(id) = &args.target {
        index.retain(|c| c.target_id().as_deref() == Some(id));
    }
    // Each target's rejections, in manifest order within it; chunk results hold rejections
    // only when the target's report counts more than Split's.
    let targets: Vec<&Report> = if report.targets.is_empty() {
        vec![&report]
    } else {
        report.targets.iter().collect()
    };
    let groups: Vec<(Option<String>, bool, Vec<ChunkDescriptor>)> = targets
        .iter()
        .map(|t| {
            let items = index
                .iter()
                .filter(|c| c.target_id() == t.target)
                .cloned()
                .collect();
            (t.target.clone(), t.outcomes.rejected > info.rejected, items)
        })
        .collect();
    let mut rejected = Rejections {
        targets: groups
            .iter()
            .map(|(target, in_results, items)| {
                let merged = rejected_entries(&runs, info.rejected_parts, items, *in_results);
                (target.clone(), merged)
            })
            .collect(),
    };

    if let Some(path) = &args.html {
        let embedded = html::write(
            path,
            target_args,
            &runs,
            &report,
            &info,
            &index,
            &mut rejected,
        )
        .await?;
        eprintln!(
            "run {}: wrote {} ({} of {} rejected entries listed)",
            report.run_id,
            path.display(),
            embedded,
            report.outcomes.rejected
        );
        return Ok(());
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let counts = (!args.rejected_only).then_some(&report);
    let shown = match args.output {
        Output::Table => write_table(&mut out, counts, &mut rejected).await?,
        Output::Json if args.rejected_only => write_json_lines(&mut out, &mut rejected).await?,
        Output::Json => write_json(&mut out, &report, &mut rejected).await?,
        Output::Csv => write_csv(&mut out, &mut rejected).await?,
        // The parser accepts only the three above.
        other @ (Output::Summary | Output::Jsonl) => {
            bail!("report prints table, json or csv, not {other}")
        }
    };
    out.flush()?;
    if shown == 0 && args.rejected_only && args.output == Output::Table {
        eprintln!("run {}: no rejected entries", run.run_id());
    }
    Ok(())
}

/// The counts (unless `None`), then a table of the rejected entries (if any); returns how many.
async fn write_table(
    out: &mut impl Write,
    counts: Option<&Report>,
    rejected: &mut Rejections<'_>,
) -> Result<u64> {
    if let Some(report) = counts {
        write!(out, "{}", table(report))?;
    }
    let mut shown = 0;
    while let Some(entry) = rejected.next().await? {
        if shown == 0 {
            if counts.is_some() {
                writeln!(out)?;
            }
            writeln!(
                out,
                "{:>9}  {:<32}  {:<24}  MESSAGE",
                "INDEX", "ERROR", "DEVICE ID"
            )?;
        }
        let message = match &entry.target {
            Some(target) => format!("[{target}] {}", one_line(&entry.message)),
            None => one_line(&entry.message),
        };
        writeln!(
            out,
            "{:>9}  {:<32}  {:<24}  {message}",
            entry.index,
            entry.error.as_str(),
            entry.device_id.as_deref().unwrap_or("-"),
        )?;
        shown += 1;
    }
    Ok(shown)
}

/// `{"report": {…}, "rejected": [{…}, …]}`; returns how many rejected entries.
async fn write_json(
    out: &mut impl Write,
    report: &Report,
    rejected: &mut Rejections<'_>,
) -> Result<u64> {
    write!(out, "{{\"report\":")?;
    serde_json::to_writer(&mut *out, report)?;
    write!(out, ",\"rejected\":[")?;
    let mut shown = 0;
    while let Some(entry) = rejected.next().await? {
        if shown > 0 {
            write!(out, ",")?;
        }
        serde_json::to_writer(&mut *out, &entry)?;
        shown += 1;
    }
    writeln!(out, "]}}")?;
    Ok(shown)
}

/// One rejected entry per line, as JSON; returns how many.
async fn write_json_lines(out: &mut impl Write, rejected: &mut Rejections<'_>) -> Result<u64> {
    let mut shown = 0;
    while let Some(entry) = rejected.next().await? {
        serde_json::to_writer(&mut *out, &entry)?;
        writeln!(out)?;
        shown += 1;
    }
    Ok(shown)
}

/// A header and one row per rejected entry; returns how many.
async fn write_csv(out: &mut impl Write, rejected: &mut Rejections<'_>) -> Result<u64> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(["index", "deviceId", "certificateId", "error", "message"])?;
    let mut shown = 0;
    while let Some(entry) = rejected.next().await? {
        csv.write_record([
            entry.index.to_string().as_str(),
            entry.device_id.as_deref().unwrap_or_default(),
            entry.certificate_id.as_deref().unwrap_or_default(),
            entry.error.as_str(),
            entry.message.as_str(),
        ])?;
        shown += 1;
    }
    csv.flush()?;
    Ok(shown)
}

/// What exists of a run that has no report (still running, or stopped before Summarize).
async fn no_report(
    target: &Target,
    store: &S3Store,
    run: &RunLayout,
    output: Output,
) -> Result<()> {
    let run_id = run.run_id();
    let execution = match target
        .sfn()
        .describe_execution()
        .execution_arn(target.execution_arn(run_id))
        .send()
        .await
    {
        Ok(out) => {
            let mut status = out.status().as_str().to_owned();
            if let Some(error) = out.error() {
                status.push_str(&format!(" ({error})"));
            }
            status
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_execution_does_not_exist()) =>
        {
            "no such execution".to_owned()
        }
        Err(e) => format!("unknown: {}", sdk_message(&e)),
    };
    let index: Option<Vec<ChunkDescriptor>> =
        read_json(store, &target.bucket, &run.chunk_index()).await?;
    let Some(index) = index else {
        bail!(
            "run {run_id} has no report and no chunk index (execution: {execution}): Split has not \
             finished, or the run does not exist"
        );
    };
    let done = chunks_with_results(store, &target.bucket, run).await?;
    let missing: Vec<u32> = index
        .iter()
        .map(|c| c.chunk)
        .filter(|c| !done.contains(c))
        .collect();
    let with_results = index.len() - missing.len();
    match output {
        Output::Json => outln!(
            "{}",
            json!({
                "runId": run_id,
                "report": null,
                "execution": execution,
                "chunks": index.len(),
                "chunksWithResults": with_results,
                "chunksWithoutResults": missing,
            })
        )?,
        Output::Table => {
            outln!("run {run_id}: no report yet (execution: {execution})")?;
            outln!("  chunks                          {:>10}", index.len())?;
            outln!("  with results                    {with_results:>10}")?;
            outln!(
                "  without results                 {:>10}{}",
                missing.len(),
                list_some(&missing)
            )?;
        }
        Output::Csv | Output::Summary | Output::Jsonl => {}
    }
    bail!(
        "run {run_id} has no report (execution: {execution}): it is still running, stopped \
         before Summarize, or the report was removed; {} of {} chunks have results",
        with_results,
        index.len()
    )
}

/// ` (0, 3, 7, …)`: the first few numbers of a list.
fn list_some(numbers: &[u32]) -> String {
    const SHOWN: usize = 20;
    if numbers.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = numbers.iter().take(SHOWN).map(u32::to_string).collect();
    let more = if numbers.len() > SHOWN { ", …" } else { "" };
    format!("  (chunks {}{more})", shown.join(", "))
}

/// The report for people.
pub fn table(report: &Report) -> String {
    let o = &report.outcomes;
    let status = match report.status {
        RunStatus::Complete => "complete",
        RunStatus::Incomplete => "INCOMPLETE",
    };
    let mut out = match &report.target {
        Some(target) => format!("run {}, target {target}: {status}\n", report.run_id),
        None => format!("run {}: {status}\n", report.run_id),
    };
    out.push_str(&format!(
        "  {:<32}{} ({}, profile {})\n",
        match report.operation {
            Operation::Import => "manifest",
            Operation::Activate => "shipping list",
            Operation::Decommission | Operation::DecommissionDryRun => "device list",
        },
        report.source.url(),
        report.source_kind(),
        report.profile
    ));
    let per_entry = report.target_count();
    out.push_str(&format!(
        "  entries                         {:>10}{}\n",
        report.entries,
        if per_entry > 1 {
            format!(" in each of {per_entry} targets")
        } else {
            String::new()
        }
    ));
    for (what, n) in report.done_counts() {
        out.push_str(&format!("  {what:<32}{n:>10}\n"));
    }
    out.push_str(&format!(
        "  rejected                        {:>10}\n",
        o.rejected
    ));
    for (name, n) in &o.rejected_by_error {
        out.push_str(&format!("    {:<30}{n:>10}\n", name.as_str()));
    }
    if let Some((heading, changes)) = report.changes() {
        out.push_str(&format!("  {heading}:\n"));
        for (what, n) in changes {
            out.push_str(&format!("    {what:<34}{n:>8}\n"));
        }
    }
    let unaccounted = report.without_outcome();
    if unaccounted > 0 {
        out.push_str(&format!(
            "  no outcome yet                  {unaccounted:>10}\n"
        ));
    }
    out.push_str(&format!(
        "  chunks                          {:>10}\n",
        report.chunks
    ));
    out.push_str(&format!(
        "  chunk retries                   {:>10}\n",
        report.chunk_retries
    ));
    out.push_str(&format!(
        "  stopped by throttling           {:>10}\n",
        report.throttled
    ));
    out.push_str(&format!(
        "  stopped by the Lambda deadline  {:>10}\n",
        report.deadline_stops
    ));
    if !report.api_calls.is_empty() {
        let calls: Vec<String> = report
            .api_calls
            .iter()
            .map(|(api, n)| format!("{api} {n}"))
            .collect();
        out.push_str(&format!(
            "  IoT calls                       {}\n",
            calls.join(", ")
        ));
    }
    out.push_str(&format!(
        "  duration                        {:.1} s, {:.1} certificates/s\n",
        report.duration_seconds, report.certificates_per_second
    ));
    out.push_str(&target_lines(report));
    for problem in &report.problems {
        out.push_str(&format!("  problem: {problem}\n"));
    }
    out
}

/// A run with several targets: a line per target with its status and counts (nothing for a
/// run with one).
pub fn target_lines(report: &Report) -> String {
    if report.targets.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "  targets                         {:>10}  (each: thingpress report {} --target ID)\n",
        report.targets.len(),
        report.run_id
    );
    for t in &report.targets {
        let done: Vec<String> = t
            .done_counts()
            .iter()
            .map(|(what, n)| format!("{n} {what}"))
            .collect();
        out.push_str(&format!(
            "    {:<30}{}: {}, {} rejected\n",
            t.target.as_deref().unwrap_or_default(),
            match t.status {
                RunStatus::Complete => "complete",
                RunStatus::Incomplete => "INCOMPLETE",
            },
            done.join(", "),
            t.outcomes.rejected
        ));
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A stream of batches of rejected entries, one batch per object read.
type Batches<'a> = Pin<Box<dyn Stream<Item = Result<Vec<RejectedEntry>>> + Send + 'a>>;

/// Split's rejects (`rejected/NNNNN.jsonl`, every part must exist) and, when `in_results`, the
/// rejections in the chunks' results (a chunk without results is skipped: the report's problems
/// name it), merged in manifest order.
pub fn rejected_entries<'a>(
    runs: &'a RunStore<S3Store>,
    parts: u32,
    index: &'a [ChunkDescriptor],
    in_results: bool,
) -> Merged<'a> {
    let split: Batches<'a> = futures::stream::iter(0..parts)
        .map(move |part| async move {
            let mut entries = Vec::new();
            let exists = runs
                .for_each_rejected(part, |r: Rejected| entries.push(RejectedEntry::from(r)))
                .await?;
            if !exists {
                let key = runs.layout().rejected(part);
                bail!("s3://{}/{key} is missing", runs.bucket());
            }
            Ok(entries)
        })
        .buffered(READS_IN_FLIGHT)
        .boxed();
    let chunks = if in_results { index } else { &[] };
    let results: Batches<'a> = futures::stream::iter(chunks)
        .map(move |chunk| async move {
            let lines = runs.results(chunk.chunk).await?.unwrap_or_default();
            Ok(lines
                .into_iter()
                .filter_map(RejectedEntry::from_result)
                .collect())
        })
        .buffered(READS_IN_FLIGHT)
        .boxed();
    Merged {
        a: Cursor::new(split),
        b: Cursor::new(results),
    }
}

/// The report of the target `--target` names (the whole run's without it).
fn of_target(report: Report, target: Option<&str>) -> Result<Report> {
    let Some(id) = target else {
        return Ok(report);
    };
    if report.targets.is_empty() {
        bail!(
            "run {} has one target, the stack's own account and Region: leave out --target",
            report.run_id
        );
    }
    if let Some(one) = report.of_target(id) {
        return Ok(one.clone());
    }
    let ids: Vec<&str> = report
        .targets
        .iter()
        .filter_map(|t| t.target.as_deref())
        .collect();
    bail!(
        "run {} has no target {id:?}; its targets are {}",
        report.run_id,
        ids.join(", ")
    )
}

/// The rejected entries of each target in turn, each in manifest order and named with its
/// target when the run has several.
pub struct Rejections<'a> {
    targets: Vec<(Option<String>, Merged<'a>)>,
}

impl Rejections<'_> {
    /// The next rejected entry.
    pub async fn next(&mut self) -> Result<Option<RejectedEntry>> {
        while let Some((target, merged)) = self.targets.first_mut() {
            if let Some(entry) = merged.next().await? {
                return Ok(Some(RejectedEntry {
                    target: target.clone(),
                    ..entry
                }));
            }
            self.targets.remove(0);
        }
        Ok(None)
    }
}

/// Two index-ordered sources of rejected entries merged into one, in manifest order.
pub struct Merged<'a> {
    a: Cursor<'a>,
    b: Cursor<'a>,
}

impl Merged<'_> {
    /// The next rejected entry in manifest order.
    pub async fn next(&mut self) -> Result<Option<RejectedEntry>> {
        let a = self.a.peek().await?.map(|e| e.index);
        let b = self.b.peek().await?.map(|e| e.index);
        Ok(match (a, b) {
            (Some(a), Some(b)) if b < a => self.b.take(),
            (Some(_), _) => self.a.take(),
            (None, _) => self.b.take(),
        })
    }
}

struct Cursor<'a> {
    batches: Batches<'a>,
    pending: std::vec::IntoIter<RejectedEntry>,
    head: Option<RejectedEntry>,
}

impl<'a> Cursor<'a> {
    fn new(batches: Batches<'a>) -> Self {
        Cursor {
            batches,
            pending: Vec::new().into_iter(),
            head: None,
        }
    }

    async fn peek(&mut self) -> Result<Option<&RejectedEntry>> {
        while self.head.is_none() {
            if let Some(entry) = self.pending.next() {
                self.head = Some(entry);
                break;
            }
            match self.batches.next().await {
                Some(batch) => self.pending = batch?.into_iter(),
                None => break,
            }
        }
        Ok(self.head.as_ref())
    }

    fn take(&mut self) -> Option<RejectedEntry> {
        self.head.take()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use thingpress_manifest::ErrorName;

    use super::*;

    fn entry(index: u64) -> RejectedEntry {
        RejectedEntry {
            index,
            device_id: None,
            certificate_id: None,
            error: ErrorName::InvalidCertificate,
            message: format!("entry {index}"),
            target: None,
        }
    }

    fn batches(objects: Vec<Vec<u64>>) -> Batches<'static> {
        futures::stream::iter(
            objects
                .into_iter()
                .map(|o| Ok(o.into_iter().map(entry).collect())),
        )
        .boxed()
    }

    #[tokio::test]
    async fn two_sources_merge_in_manifest_order() {
        let mut merged = Merged {
            a: Cursor::new(batches(vec![vec![1, 4], vec![], vec![9]])),
            b: Cursor::new(batches(vec![vec![0], vec![2, 3], vec![10, 11]])),
        };
        let mut seen = Vec::new();
        while let Some(e) = merged.next().await.unwrap() {
            seen.push(e.index);
        }
        assert_eq!(seen, [0, 1, 2, 3, 4, 9, 10, 11]);
    }

    #[tokio::test]
    async fn a_failed_read_ends_the_merge_with_its_error() {
        let failing: Batches<'static> = futures::stream::iter(vec![
            Ok(vec![entry(0)]),
            Err(anyhow::anyhow!(
                "s3://b/runs/r/rejected/00001.jsonl is missing"
            )),
        ])
        .boxed();
        let mut merged = Merged {
            a: Cursor::new(failing),
            b: Cursor::new(batches(vec![vec![5]])),
        };
        assert_eq!(merged.next().await.unwrap().unwrap().index, 0);
        let err = merged.next().await.unwrap_err().to_string();
        assert!(err.contains("00001.jsonl is missing"), "{err}");
    }

    #[test]
    fn a_long_list_of_chunks_is_shortened() {
        assert_eq!(list_some(&[]), "");
        assert_eq!(list_some(&[0, 3]), "  (chunks 0, 3)");
        let many: Vec<u32> = (0..25).collect();
        assert!(list_some(&many).ends_with("19, …)"));
    }
}
