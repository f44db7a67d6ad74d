//! Following a run until it ends (`thingpress watch`, and `--wait` on import, redrive and
//! retry-failed): each poll takes a [`RunProgress`] snapshot — chunks done, failed and running,
//! certificates done — shown with rate and ETA; at the end the report summary, or an error naming
//! the execution's error and cause.

use std::collections::{BTreeSet, VecDeque};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::types::ExecutionStatus;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use thingpress_importer::{Quotas, new_certificates_per_second};
use thingpress_product::Profile;
use thingpress_run::RunLayout;
use thingpress_run::payload::SplitOutput;
use thingpress_run::records::{ChunkDescriptor, RunInfo};
use thingpress_run::report::Report;
use thingpress_run::resolve::ExecutionRun;
use thingpress_run::{RunStore, S3Store};

use crate::output::outln;
use crate::runs::{self, chunks_with_results, read_json};
use crate::target::{Target, sdk_message};

/// How often the run is polled.
const POLL: Duration = Duration::from_secs(1);
/// Consecutive failed map-run queries after which watching gives up.
const MAP_RUN_FAILURES_TOLERATED: u32 = 10;
/// The span of recent progress the rate (and so the ETA) is measured over, when the done count
/// changes more than twice in it.
const RATE_WINDOW_SECONDS: f64 = 60.0;

/// What one poll of a run found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunProgress {
    /// Chunks in the index (`None` until Split has written it).
    pub chunks_total: Option<u64>,
    /// Accepted entries in the index, i.e. certificates to register.
    pub certificates_total: Option<u64>,
    /// Chunks with results.
    pub chunks_done: u64,
    /// Certificates in chunks with results.
    pub certificates_done: u64,
    /// Chunk executions running now (map run).
    pub chunks_running: u64,
    /// Chunk executions that failed, timed out or were aborted (map run).
    pub chunks_failed: u64,
    /// Certificates per second the stack's pacing allows this run (once Split has run).
    pub paced_rate: Option<f64>,
    /// A run with several targets: certificates done and to do in each, by target id.
    pub targets: Vec<(String, u64, u64)>,
}

/// Certificates done and to do per target, for an index whose items have targets (empty for a
/// run with one).
pub fn count_done_per_target(
    index: &[ChunkDescriptor],
    with_results: &BTreeSet<u32>,
) -> Vec<(String, u64, u64)> {
    let mut targets: Vec<(String, u64, u64)> = Vec::new();
    for item in index {
        let Some(id) = item.target_id() else { continue };
        let done = if with_results.contains(&item.chunk) {
            item.entries
        } else {
            0
        };
        match targets.iter_mut().find(|(t, _, _)| *t == id) {
            Some((_, d, total)) => {
                *d += done;
                *total += item.entries;
            }
            None => targets.push((id, done, item.entries)),
        }
    }
    targets
}

/// Chunks and certificates done: those of the index's chunks that have results (written once per
/// chunk, when every entry of the chunk has an outcome).
pub fn count_done(index: &[ChunkDescriptor], with_results: &BTreeSet<u32>) -> (u64, u64) {
    let done = index.iter().filter(|c| with_results.contains(&c.chunk));
    let (chunks, certificates) = done.fold((0, 0), |(n, sum), c| (n + 1, sum + c.entries));
    (chunks, certificates)
}

/// Certificates per second between recent changes of the done count. Certificates count as
/// done a chunk at a time, and one child's chunk of 2,000 takes minutes: a fixed span of recent
/// polls would mostly hold no change and say 0/s while the run registers at its paced rate. So
/// only changes are kept (the first poll too), over the window or the last two, however far apart.
#[derive(Debug, Default)]
pub struct RateWindow {
    samples: VecDeque<(f64, u64)>,
}

impl RateWindow {
    /// Records `done` certificates at `t` seconds when the count changed; drops changes older
    /// than the window but the last two.
    pub fn push(&mut self, t: f64, done: u64) {
        if self.samples.back().is_some_and(|(_, last)| *last == done) {
            return;
        }
        self.samples.push_back((t, done));
        while self
            .samples
            .front()
            .is_some_and(|(t0, _)| t - t0 > RATE_WINDOW_SECONDS)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
    }

    /// The rate, once there are two samples at least a second apart.
    pub fn rate(&self) -> Option<f64> {
        let (t0, d0) = *self.samples.front()?;
        let (t1, d1) = *self.samples.back()?;
        (t1 - t0 >= 1.0).then(|| d1.saturating_sub(d0) as f64 / (t1 - t0))
    }
}

/// Seconds left at `rate`, `None` when no progress is being made.
pub fn eta_seconds(remaining: u64, rate: Option<f64>) -> Option<f64> {
    match rate {
        _ if remaining == 0 => Some(0.0),
        Some(rate) if rate > 0.0 => Some(remaining as f64 / rate),
        _ => None,
    }
}

/// `1h02m`, `3m05s`, `12s`.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

/// One status line (without the certificate counts the bar shows itself). The ETA uses the
/// observed rate once certificates are being done, and the paced rate until then; certificates
/// count as done per chunk, so the time since the count last changed is taken off.
pub fn describe(progress: &RunProgress, observed: Option<f64>, since_change: f64) -> String {
    let Some(chunks_total) = progress.chunks_total else {
        return "splitting the manifest".to_owned();
    };
    let mut line = format!(
        "chunks {}/{chunks_total} done, {} running, {} failed",
        progress.chunks_done, progress.chunks_running, progress.chunks_failed
    );
    if let Some(rate) = observed {
        line.push_str(&format!(", {rate:.1}/s"));
    }
    if let Some(paced) = progress.paced_rate {
        line.push_str(&format!(" (paced {paced:.1}/s)"));
    }
    let remaining = progress
        .certificates_total
        .unwrap_or_default()
        .saturating_sub(progress.certificates_done);
    let rate = observed.filter(|r| *r > 0.0).or(progress.paced_rate);
    if let Some(eta) = eta_seconds(remaining, rate)
        && remaining > 0
    {
        let eta = (eta - since_change).max(1.0);
        line.push_str(&format!(", ETA {}", human_duration(eta)));
    }
    if !progress.targets.is_empty() {
        let each: Vec<String> = progress
            .targets
            .iter()
            .map(|(id, done, total)| format!("{id} {done}/{total}"))
            .collect();
        line.push_str(&format!("; {}", each.join(", ")));
    }
    line
}

/// Certificates per second the pacing allows a run (new certificates), the plan's rate: every
/// API's quota less the reserve over its calls per certificate, the slowest API bounding it.
/// The run's children share that budget, however many run, so it is the run's rate until it
/// has an observed one. None once no chunk is left, or when the quotas allow nothing.
pub fn paced_rate(
    quotas: &Quotas,
    reserve: f64,
    profile: &Profile,
    chunks_left: u64,
) -> Option<f64> {
    if chunks_left == 0 || !(0.0..1.0).contains(&reserve) {
        return None;
    }
    let rate = new_certificates_per_second(
        |api| quotas.get(api) * (1.0 - reserve),
        profile.policies.len(),
        profile.thing_groups.len(),
    );
    (rate.is_finite() && rate > 0.0).then_some(rate)
}

/// The error and cause of a failed execution on one line; a JSON cause is reduced to its
/// `errorMessage` (a Lambda error) and whitespace is collapsed.
pub fn one_line(error: Option<&str>, cause: Option<&str>) -> String {
    let cause = cause.map(|cause| {
        let message = serde_json::from_str::<Value>(cause)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| cause.to_owned());
        let collapsed = message.split_whitespace().collect::<Vec<_>>().join(" ");
        if collapsed.chars().count() > 400 {
            format!("{}…", collapsed.chars().take(400).collect::<String>())
        } else {
            collapsed
        }
    });
    match (error, cause) {
        (Some(error), Some(cause)) if !cause.is_empty() => format!("{error}: {cause}"),
        (Some(error), _) => error.to_owned(),
        (None, Some(cause)) => cause,
        (None, None) => "no error or cause given".to_owned(),
    }
}

/// Polls the run's progress: the chunk index (cached once found), result objects, map run.
struct Poller {
    sfn: aws_sdk_sfn::Client,
    store: S3Store,
    bucket: String,
    run: RunLayout,
    /// The chunk index: the run's, or a retry's subset of it.
    index_key: String,
    index: Option<Vec<ChunkDescriptor>>,
    info: Option<RunInfo>,
    pacing: Option<(Quotas, f64)>,
    map_counts: Option<(u64, u64)>,
    map_failures: u32,
}

impl Poller {
    fn new(target: &Target, resolved: ExecutionRun) -> Self {
        Poller {
            sfn: target.sfn(),
            store: S3Store::new(target.s3()),
            bucket: target.bucket.clone(),
            run: resolved.run,
            index_key: resolved.index_key,
            index: None,
            info: None,
            // Without usable quota settings there is no paced rate, only the observed one.
            pacing: target.pacing().ok(),
            map_counts: None,
            map_failures: 0,
        }
    }

    async fn progress(&mut self, execution_arn: &str) -> Result<RunProgress> {
        if self.index.is_none() {
            self.index = read_json(&self.store, &self.bucket, &self.index_key).await?;
        }
        if self.index.is_some() && self.info.is_none() {
            self.info = read_json(&self.store, &self.bucket, &self.run.run_info()).await?;
        }
        let mut progress = RunProgress::default();
        if let Some(index) = &self.index {
            progress.chunks_total = Some(index.len() as u64);
            progress.certificates_total = Some(index.iter().map(|c| c.entries).sum());
            let with_results = chunks_with_results(&self.store, &self.bucket, &self.run).await?;
            (progress.chunks_done, progress.certificates_done) = count_done(index, &with_results);
            progress.targets = count_done_per_target(index, &with_results);
            if let (Some(info), Some((quotas, reserve))) = (&self.info, &self.pacing) {
                let chunks_left = (index.len() as u64).saturating_sub(progress.chunks_done);
                // Each target is paced by its own quotas: they add up.
                let targets = progress.targets.len().max(1) as f64;
                progress.paced_rate = paced_rate(quotas, *reserve, &info.profile, chunks_left)
                    .map(|rate| rate * targets);
            }
        }
        // The map run's counts are extra detail: a failing query keeps the last counts for a
        // while (moto answers ListMapRuns with HTTP 500 in an execution's first moments).
        match self.map_run_counts(execution_arn).await {
            Ok(counts) => {
                self.map_failures = 0;
                self.map_counts = counts;
            }
            Err(e) => {
                self.map_failures += 1;
                if self.map_failures >= MAP_RUN_FAILURES_TOLERATED {
                    return Err(e);
                }
            }
        }
        if let Some((running, failed)) = self.map_counts {
            progress.chunks_running = running;
            progress.chunks_failed = failed;
        }
        Ok(progress)
    }

    /// (running, failed) chunk executions of the run's Distributed Map, once it has started.
    async fn map_run_counts(&self, execution_arn: &str) -> Result<Option<(u64, u64)>> {
        let runs = self
            .sfn
            .list_map_runs()
            .execution_arn(execution_arn)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("listing map runs of {execution_arn}: {}", sdk_message(&e))
            })?;
        let Some(map_run) = runs.map_runs().first() else {
            return Ok(None);
        };
        let out = self
            .sfn
            .describe_map_run()
            .map_run_arn(map_run.map_run_arn())
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "describing map run {}: {}",
                    map_run.map_run_arn(),
                    sdk_message(&e)
                )
            })?;
        Ok(out.item_counts().map(|c| {
            let failed = c.failed() + c.timed_out() + c.aborted();
            (c.running().max(0) as u64, failed.max(0) as u64)
        }))
    }
}

/// Where the polls show: a bar on a terminal, else a line every `interval` (and the last one).
struct StatusDisplay {
    run_id: String,
    bar: Option<ProgressBar>,
    interval: Duration,
    last_line: Option<Instant>,
}

impl StatusDisplay {
    fn new(run_id: &str, interval: Duration) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix} [{bar:30}] {pos}/{len} certificates, {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(run_id.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        StatusDisplay {
            run_id: run_id.to_owned(),
            bar,
            interval,
            last_line: None,
        }
    }

    fn show(&mut self, status: &ExecutionStatus, progress: &RunProgress, line: String) {
        let finished = !runs::is_active(status);
        match &self.bar {
            Some(bar) => {
                if let Some(total) = progress.certificates_total {
                    bar.set_length(total);
                }
                bar.set_position(progress.certificates_done);
                bar.set_message(line);
            }
            // The final state always gets its line, so logs end with it.
            None if finished
                || self
                    .last_line
                    .is_none_or(|at| at.elapsed() >= self.interval) =>
            {
                let certificates = match progress.certificates_total {
                    Some(total) => format!("certificates {}/{total}, ", progress.certificates_done),
                    None => String::new(),
                };
                eprintln!("{}: {}: {certificates}{line}", self.run_id, status.as_str());
                self.last_line = Some(Instant::now());
            }
            None => {}
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Shows progress until the execution ends; then the report summary, or an error naming the
/// execution's error and cause.
pub async fn follow(target: &Target, execution_arn: &str, interval: Duration) -> Result<()> {
    // A retry (thingpress retry-failed) works on the run it retries, over its own chunk index.
    let resolved = runs::resolve_execution(&target.sfn(), execution_arn).await?;
    let run_id = resolved.run.run_id().to_owned();
    let mut poller = Poller::new(target, resolved);
    let mut display = StatusDisplay::new(&run_id, interval);
    let described = poll_until_ended(&mut poller, &mut display, execution_arn).await;
    display.finish();
    let described = described?;
    let status = described.status();
    if *status != ExecutionStatus::Succeeded {
        bail!(
            "run {run_id} {}: {}",
            status.as_str(),
            one_line(described.error(), described.cause())
        );
    }
    if let Some(owner) = skipped_for(&described) {
        outln!(
            "run {run_id} SUCCEEDED: skipped, the manifest is already imported by run {owner} \
             (`thingpress import --start` imports a file again)"
        )?;
        return Ok(());
    }
    let key = poller.run.report();
    let runs = RunStore::new(poller.store.clone(), &target.bucket, poller.run.clone());
    let report = runs.report().await?.with_context(|| {
        format!(
            "run {run_id} succeeded but s3://{}/{key} does not exist",
            target.bucket
        )
    })?;
    crate::output::print(format_args!("{}", summary(&report)))?;
    Ok(())
}

/// Polls once a second, showing each poll, until the execution is no longer running; returns how
/// Step Functions describes it then.
async fn poll_until_ended(
    poller: &mut Poller,
    display: &mut StatusDisplay,
    execution_arn: &str,
) -> Result<DescribeExecutionOutput> {
    let started = Instant::now();
    let mut rate = RateWindow::default();
    let mut last_change = (0, Instant::now());
    loop {
        let out = poller
            .sfn
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("describing execution {execution_arn}: {}", sdk_message(&e))
            })?;
        let progress = poller.progress(execution_arn).await?;
        rate.push(started.elapsed().as_secs_f64(), progress.certificates_done);
        if progress.certificates_done != last_change.0 {
            last_change = (progress.certificates_done, Instant::now());
        }
        let line = describe(
            &progress,
            rate.rate(),
            last_change.1.elapsed().as_secs_f64(),
        );
        display.show(out.status(), &progress, line);
        if !runs::is_active(out.status()) {
            return Ok(out);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The run that owns the manifest, when this execution was skipped as a duplicate (Split's
/// `Skipped` output is the execution's).
fn skipped_for(described: &DescribeExecutionOutput) -> Option<String> {
    match serde_json::from_str(described.output()?).ok()? {
        SplitOutput::Skipped(skipped) => Some(skipped.owner_run_id),
        SplitOutput::Started(_) => None,
    }
}

/// `1 chunk`, `2 chunks`, `0 chunk retries`.
fn counted(n: u64, what: &str) -> String {
    match (n, what.strip_suffix('y')) {
        (1, _) => format!("1 {what}"),
        (n, Some(stem)) => format!("{n} {stem}ies"),
        (n, None) => format!("{n} {what}s"),
    }
}

/// The report in a few lines.
pub fn summary(report: &Report) -> String {
    let o = &report.outcomes;
    let mut out = format!(
        "run {} SUCCEEDED: {} entries of {} ({}, profile {})\n",
        report.run_id,
        report.entries,
        report.source.url(),
        report.source_kind(),
        report.profile
    );
    for (what, n) in report.done_counts() {
        out.push_str(&format!("  {what:<18}  {n:>10}\n"));
    }
    out.push_str(&format!("  rejected            {:>10}\n", o.rejected));
    for (error, n) in &o.rejected_by_error {
        out.push_str(&format!("    {:<30}  {n:>8}\n", error.as_str()));
    }
    if let Some((heading, changes)) = report.changes() {
        out.push_str(&format!("  {heading}:\n"));
        for (what, n) in changes {
            out.push_str(&format!("    {what:<34}  {n:>8}\n"));
        }
    }
    let mut counts = vec![
        counted(u64::from(report.chunks), "chunk"),
        counted(report.throttled, "throttle stop"),
    ];
    // Deadline stops are rare (a chunk too big for the Register timeout): shown when they happen.
    if report.deadline_stops > 0 {
        counts.push(counted(report.deadline_stops, "deadline stop"));
    }
    // Continuations and stalls (Register handing a STANDARD chunk back): shown when they happen.
    if report.continuations > 0 {
        counts.push(counted(report.continuations, "continuation"));
    }
    if report.stalls > 0 {
        counts.push(counted(report.stalls, "stall"));
    }
    counts.push(counted(report.chunk_retries, "chunk retry"));
    out.push_str(&format!(
        "  {}, {} at {:.1} certificates/s\n",
        counts.join(", "),
        human_duration(report.duration_seconds),
        report.certificates_per_second
    ));
    out.push_str(&crate::commands::report::target_lines(report));
    for problem in &report.problems {
        out.push_str(&format!("  problem: {problem}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn chunk(n: u32, entries: u64) -> ChunkDescriptor {
        ChunkDescriptor {
            chunk: n,
            key: format!("runs/r/chunks/{n:05}.jsonl"),
            entries,
            first_index: 0,
            target: None,
        }
    }

    #[test]
    fn done_counts_only_chunks_of_the_index_with_results() {
        let index = [chunk(0, 10), chunk(1, 10), chunk(2, 5)];
        let with_results = BTreeSet::from([0, 2, 9]);
        assert_eq!(count_done(&index, &with_results), (2, 15));
        assert_eq!(count_done(&index, &BTreeSet::new()), (0, 0));
    }

    #[test]
    fn rate_needs_a_second_and_follows_the_window() {
        let mut w = RateWindow::default();
        assert_eq!(w.rate(), None);
        w.push(0.0, 0);
        w.push(0.5, 10);
        assert_eq!(w.rate(), None);
        w.push(2.0, 40);
        assert_eq!(w.rate(), Some(20.0));
        // Old samples leave the window: the rate is that of the last minute.
        for t in 3..=100 {
            w.push(t as f64, 40 + (t as u64 - 2) * 5);
        }
        let rate = w.rate().unwrap();
        assert!((rate - 5.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn a_chunk_at_a_time_is_still_a_rate() {
        // One child, chunks of 2,000 done every 148 s, polled every second: the rate is that
        // of the chunks, never 0 between them.
        let mut w = RateWindow::default();
        for t in 0..=400_u64 {
            w.push(t as f64, 2_000 * (t / 148));
            if t >= 148 {
                let rate = w.rate().unwrap();
                assert!(rate > 13.0, "{rate} at {t} s");
            }
        }
        let rate = w.rate().unwrap();
        assert!((rate - 2_000.0 / 148.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn eta_and_durations() {
        assert_eq!(eta_seconds(100, Some(20.0)), Some(5.0));
        assert_eq!(eta_seconds(100, Some(0.0)), None);
        assert_eq!(eta_seconds(100, None), None);
        assert_eq!(eta_seconds(0, None), Some(0.0));
        assert_eq!(human_duration(12.4), "12s");
        assert_eq!(human_duration(185.0), "3m05s");
        assert_eq!(human_duration(3720.0), "1h02m");
    }

    #[test]
    fn status_line_names_chunks_rate_and_eta() {
        let mut progress = RunProgress {
            chunks_total: Some(10),
            certificates_total: Some(500),
            chunks_done: 3,
            certificates_done: 150,
            chunks_running: 2,
            chunks_failed: 1,
            paced_rate: None,
            targets: Vec::new(),
        };
        assert_eq!(
            describe(&progress, Some(10.0), 0.0),
            "chunks 3/10 done, 2 running, 1 failed, 10.0/s, ETA 35s"
        );
        assert_eq!(
            describe(&progress, None, 0.0),
            "chunks 3/10 done, 2 running, 1 failed"
        );
        assert_eq!(
            describe(&RunProgress::default(), None, 0.0),
            "splitting the manifest"
        );
        // Until certificates are done, the ETA comes from the pacing.
        progress.paced_rate = Some(7.0);
        assert_eq!(
            describe(&progress, Some(0.0), 0.0),
            "chunks 3/10 done, 2 running, 1 failed, 0.0/s (paced 7.0/s), ETA 50s"
        );
        assert_eq!(
            describe(&progress, Some(10.0), 0.0),
            "chunks 3/10 done, 2 running, 1 failed, 10.0/s (paced 7.0/s), ETA 35s"
        );
        // 30 s since the count last moved: 20 s to go; never below a second while running.
        assert!(describe(&progress, Some(0.0), 30.0).ends_with("ETA 20s"));
        assert!(describe(&progress, Some(0.0), 300.0).ends_with("ETA 1s"));
    }

    #[test]
    fn the_paced_rate_is_the_whole_budget_of_the_slowest_api() {
        let mut profile = Profile::named("p");
        let quotas = Quotas::default();
        // RegisterCertificateWithoutCA 10/s × (1 − 0.1) is the bound with no policies or groups.
        let rate = paced_rate(&quotas, 0.1, &profile, 100).unwrap();
        assert!((rate - 9.0).abs() < 1e-9, "{rate}");
        // Three policies: AttachPolicy 15/s × 0.5 ÷ 3 = 2.5 certificates/s.
        profile.policies = vec!["a".into(), "b".into(), "c".into()];
        let rate = paced_rate(&quotas, 0.5, &profile, 100).unwrap();
        assert!((rate - 2.5).abs() < 1e-9, "{rate}");
        // One chunk left: its child holds the whole budget, not a 1/MaxConcurrency share.
        let rate = paced_rate(&quotas, 0.5, &profile, 1).unwrap();
        assert!((rate - 2.5).abs() < 1e-9, "{rate}");
        // No reserve is a valid setting (the whole quota); all of it reserved allows nothing.
        let rate = paced_rate(&quotas, 0.0, &profile, 1).unwrap();
        assert!((rate - 5.0).abs() < 1e-9, "{rate}");
        assert_eq!(paced_rate(&quotas, 1.0, &profile, 1), None);
        // A finished run has no paced rate.
        assert_eq!(paced_rate(&quotas, 0.5, &profile, 0), None);
    }

    #[test]
    fn the_eta_takes_the_observed_rate_once_there_is_one() {
        let progress = RunProgress {
            chunks_total: Some(10),
            certificates_total: Some(1_000),
            chunks_done: 1,
            certificates_done: 100,
            chunks_running: 1,
            chunks_failed: 0,
            paced_rate: paced_rate(&Quotas::default(), 0.1, &Profile::named("p"), 9),
            targets: Vec::new(),
        };
        // Nothing observed yet: 900 left at the budget's 9/s.
        assert!(describe(&progress, None, 0.0).ends_with("ETA 1m40s"));
        // Observed 4.5/s (one child below the budget): the observed rate wins.
        assert!(describe(&progress, Some(4.5), 0.0).ends_with("ETA 3m20s"));
    }

    #[test]
    fn the_summary_counts_every_outcome() {
        let report: Report = serde_json::from_value(serde_json::json!({
            "runId": "r1", "status": "complete",
            "source": {"bucket": "b", "key": "incoming/p/m.pem", "etag": "e"},
            "supplier": "pem", "profile": "p", "entries": 5,
            "outcomes": {"registered": 2, "alreadyRegistered": 1, "rejected": 2,
                         "rejectedByError": {"Thingpress.InvalidCertificate": 2}},
            "chunks": 1, "apiCalls": {}, "throttled": 3, "chunkRetries": 1,
            "startedAtMs": 0, "finishedAtMs": 65000, "durationSeconds": 65.0,
            "certificatesPerSecond": 0.05
        }))
        .unwrap();
        let text = summary(&report);
        assert!(
            text.starts_with("run r1 SUCCEEDED: 5 entries of s3://b/incoming/p/m.pem"),
            "{text}"
        );
        for line in [
            "  registered                   2",
            "  already registered           1",
            "  rejected                     2",
            "    Thingpress.InvalidCertificate          2",
            "  1 chunk, 3 throttle stops, 1 chunk retry, 1m05s at 0.1 certificates/s",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        let stopped = Report {
            deadline_stops: 2,
            ..report
        };
        let line = "  1 chunk, 3 throttle stops, 2 deadline stops, 1 chunk retry, 1m05s at 0.1 certificates/s";
        let text = summary(&stopped);
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        let continued = Report {
            continuations: 5,
            stalls: 1,
            ..stopped
        };
        let line = "  1 chunk, 3 throttle stops, 2 deadline stops, 5 continuations, 1 stall, 1 chunk retry, 1m05s at 0.1 certificates/s";
        let text = summary(&continued);
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }

    #[test]
    fn causes_become_one_line() {
        let lambda = r#"{"errorType":"Thingpress.InvalidProfile","errorMessage":"profile \"x\":\n policies: \"p\" does not exist"}"#;
        assert_eq!(
            one_line(Some("Thingpress.InvalidProfile"), Some(lambda)),
            "Thingpress.InvalidProfile: profile \"x\": policies: \"p\" does not exist"
        );
        assert_eq!(one_line(Some("States.Timeout"), None), "States.Timeout");
        assert_eq!(one_line(None, Some("a\n  b")), "a b");
        let long = "x".repeat(1000);
        assert_eq!(one_line(None, Some(&long)).chars().count(), 401);
    }
}
