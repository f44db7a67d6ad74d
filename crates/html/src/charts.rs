//! The charts' geometry: positions and sizes in SVG user units, computed here so the template
//! only draws what it is given. Each chart has a fixed number of marks at most, whatever the
//! run's size: minutes are pooled into wider buckets and chunks into groups past a limit, which
//! keeps the page a few hundred KB for a million entries.

use std::collections::BTreeMap;

use serde::Serialize;

/// Chart width in user units (the page scales it to its column).
pub const WIDTH: f64 = 760.0;
/// Most throughput bars: longer runs pool minutes into wider buckets.
pub const MAX_BUCKETS: u64 = 240;
/// Most timeline rows: more chunks are drawn as groups of consecutive ones.
pub const MAX_ROWS: usize = 300;

/// Left edge of every plot: room for the axis labels.
const LEFT: f64 = 64.0;
/// Right edge of every plot.
const RIGHT: f64 = WIDTH - 16.0;

/// One outcome's bar, with its count beside it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeBar {
    /// What it counts (`registered`, or an error name).
    pub label: String,
    /// `done` or `rejected`: the bar's colour.
    pub class: &'static str,
    /// The number shown beside the bar.
    pub count: u64,
    /// The rejection's error name, for the rejected table's filter.
    pub error: Option<String>,
    /// Top of the bar.
    pub y: f64,
    /// Its length.
    pub width: f64,
    /// Its share of every outcome, `12.5 %`.
    pub share: String,
}

/// The outcomes chart: one bar per done count and per error name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcomes {
    /// Its height.
    pub height: f64,
    /// Where the bars start (the labels sit left of it).
    pub x: f64,
    /// The bars.
    pub bars: Vec<OutcomeBar>,
}

/// Row height of the outcomes chart.
const OUTCOME_ROW: f64 = 26.0;
/// Where the outcome bars start.
const OUTCOME_X: f64 = 250.0;
/// Longest outcome bar (the count is written after it).
const OUTCOME_MAX: f64 = 400.0;

/// `(label, class, count, error name)` per outcome, in order, drawn against their sum.
pub fn outcomes(counts: &[(String, &'static str, u64, Option<String>)]) -> Outcomes {
    let total: u64 = counts.iter().map(|c| c.2).sum();
    let bars = counts
        .iter()
        .enumerate()
        .map(|(row, (label, class, count, error))| OutcomeBar {
            label: label.clone(),
            class,
            count: *count,
            error: error.clone(),
            y: row as f64 * OUTCOME_ROW,
            width: round(share(*count, total) * OUTCOME_MAX),
            share: format!("{:.1} %", share(*count, total) * 100.0),
        })
        .collect();
    Outcomes {
        height: counts.len() as f64 * OUTCOME_ROW,
        x: OUTCOME_X,
        bars,
    }
}

/// A label on an axis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tick {
    /// Its position along the axis.
    pub at: f64,
    /// What it says.
    pub label: String,
}

/// A bar of the throughput chart: one bucket of minutes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateBar {
    /// Left edge.
    pub x: f64,
    /// Top.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
    /// Certificates per second over the bucket.
    pub rate: f64,
    /// When the bucket starts, `HH:MM` UTC.
    pub at: String,
}

/// A horizontal reference line (the paced rate, the quota).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Level {
    /// Its height on the chart.
    pub y: f64,
    /// Certificates per second.
    pub rate: f64,
}

/// Certificates per second over time, against the paced rate and the quota.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    /// Chart height.
    pub height: f64,
    /// Plot edges.
    pub left: f64,
    /// Right edge.
    pub right: f64,
    /// Top edge.
    pub top: f64,
    /// The axis line (0 certificates/s).
    pub bottom: f64,
    /// One bar per bucket that finished certificates.
    pub bars: Vec<RateBar>,
    /// Minutes per bucket.
    pub bucket_minutes: u64,
    /// Register's pace over the run's targets.
    pub paced: Option<Level>,
    /// The quotas' rate over the run's targets.
    pub quota: Option<Level>,
    /// Rate labels.
    pub y_ticks: Vec<Tick>,
    /// Time labels.
    pub x_ticks: Vec<Tick>,
    /// The busiest bucket's rate.
    pub peak: f64,
}

/// Throughput chart height and plot edges.
const RATE_HEIGHT: f64 = 240.0;
const RATE_TOP: f64 = 12.0;
const RATE_BOTTOM: f64 = 212.0;

/// The chart of `done_per_minute` (entries finished per minute since the epoch) between
/// `start_ms` and `end_ms`, against `paced` and `quota` (certificates/s); `None` when nothing
/// finished.
pub fn throughput(
    done_per_minute: &BTreeMap<u64, u64>,
    start_ms: u64,
    end_ms: u64,
    paced: Option<f64>,
    quota: Option<f64>,
) -> Option<Throughput> {
    let (&first_seen, _) = done_per_minute.first_key_value()?;
    let (&last_seen, _) = done_per_minute.last_key_value()?;
    let first = (start_ms / 60_000).min(first_seen);
    let last = (end_ms / 60_000).max(last_seen);
    let minutes = last - first + 1;
    let bucket_minutes = minutes.div_ceil(MAX_BUCKETS);
    let buckets = minutes.div_ceil(bucket_minutes);
    let mut counts = vec![0u64; usize::try_from(buckets).unwrap_or(usize::MAX)];
    for (minute, n) in done_per_minute {
        let bucket = usize::try_from((minute - first) / bucket_minutes).unwrap_or(usize::MAX);
        if let Some(count) = counts.get_mut(bucket) {
            *count += n;
        }
    }
    // A bucket's rate is over the part of it the run was running: a run of 12 seconds that
    // registered 3 certificates ran at 0.25/s, not 3/60.
    let rates: Vec<f64> = counts
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let from = (first + i as u64 * bucket_minutes) * 60_000;
            let to = from + bucket_minutes * 60_000;
            let running = to.min(end_ms).saturating_sub(from.max(start_ms));
            let ms = if running >= 1_000 { running } else { to - from };
            *n as f64 * 1000.0 / ms as f64
        })
        .collect();
    let peak = rates.iter().copied().fold(0.0, f64::max);
    let top = nice_ceiling(peak.max(paced.unwrap_or(0.0)).max(quota.unwrap_or(0.0)) * 1.1);
    let y = |rate: f64| round(RATE_BOTTOM - rate / top * (RATE_BOTTOM - RATE_TOP));
    let w = (RIGHT - LEFT) / buckets as f64;
    let bars = rates
        .iter()
        .enumerate()
        .filter(|(_, rate)| **rate > 0.0)
        .map(|(i, rate)| RateBar {
            x: round(LEFT + i as f64 * w),
            y: y(*rate),
            w: round((w - 1.0).max(0.5)),
            h: round(RATE_BOTTOM - y(*rate)),
            rate: round(*rate),
            at: clock((first + i as u64 * bucket_minutes) * 60_000),
        })
        .collect();
    let level = |rate: Option<f64>| {
        rate.map(|rate| Level {
            y: y(rate),
            rate: round(rate),
        })
    };
    let y_ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
        .iter()
        .map(|f| Tick {
            at: y(top * f),
            label: format!("{}", round(top * f)),
        })
        .collect();
    let x_ticks = time_ticks(first * 60_000, (last + 1) * 60_000);
    Some(Throughput {
        height: RATE_HEIGHT,
        left: LEFT,
        right: RIGHT,
        top: RATE_TOP,
        bottom: RATE_BOTTOM,
        bars,
        bucket_minutes,
        paced: level(paced),
        quota: level(quota),
        y_ticks,
        x_ticks,
        peak: round(peak),
    })
}

/// What the timeline knows of one chunk (an item of the index: a chunk in one target).
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkSpan {
    /// Its item number.
    pub chunk: u32,
    /// Its target, in a run with several.
    pub target: Option<String>,
    /// Accepted entries.
    pub entries: u64,
    /// First attempt's start, if Register ever started it.
    pub started_ms: Option<u64>,
    /// When it finished, if it did.
    pub finished_ms: Option<u64>,
    /// Invocations.
    pub attempts: u32,
    /// Calls IoT throttled.
    pub throttles: u64,
    /// Invocations stopped by throttling that persisted.
    pub throttled_stops: u64,
    /// Why it failed, when it has no results.
    pub failure: Option<String>,
}

/// A row of the timeline: one chunk, or a group of consecutive ones.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineRow {
    /// `chunk 7`, or `chunks 0–9`.
    pub label: String,
    /// The target, when every chunk of the row has the same one.
    pub target: Option<String>,
    /// Entries.
    pub entries: u64,
    /// Start, `HH:MM:SS` UTC (`-` when never started).
    pub start: String,
    /// End (`-` when unfinished).
    pub end: String,
    /// Invocations, summed over the row's chunks.
    pub attempts: u64,
    /// IoT throttles.
    pub throttles: u64,
    /// Stops on persisting throttling.
    pub throttled_stops: u64,
    /// `ok`, `retried`, `throttled` or `failed` (the bar's colour: the worst of its chunks).
    pub class: &'static str,
    /// Why it failed.
    pub failure: Option<String>,
    /// Bar geometry.
    pub x: f64,
    /// Top.
    pub y: f64,
    /// Length.
    pub w: f64,
}

/// Chunks over time: a bar per chunk (or group) from its start to its end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    /// Chart height.
    pub height: f64,
    /// Bar thickness.
    pub bar: f64,
    /// Plot edges.
    pub left: f64,
    /// Right edge.
    pub right: f64,
    /// The time axis' line.
    pub bottom: f64,
    /// The rows.
    pub rows: Vec<TimelineRow>,
    /// Chunks per row (1 unless the run has more than [`MAX_ROWS`]).
    pub per_row: usize,
    /// Time labels.
    pub x_ticks: Vec<Tick>,
}

/// The timeline of `spans` (in index order) over the run's `start_ms..end_ms`.
pub fn timeline(spans: &[ChunkSpan], start_ms: u64, end_ms: u64) -> Timeline {
    let per_row = spans.len().div_ceil(MAX_ROWS).max(1);
    let groups: Vec<&[ChunkSpan]> = spans.chunks(per_row).collect();
    let bar = (360.0 / groups.len().max(1) as f64).clamp(1.0, 14.0);
    let step = bar + if bar >= 4.0 { 2.0 } else { 0.0 };
    let start_ms = spans
        .iter()
        .filter_map(|s| s.started_ms)
        .fold(start_ms, u64::min);
    let end_ms = spans
        .iter()
        .filter_map(|s| s.finished_ms)
        .fold(end_ms, u64::max);
    let span_ms = end_ms.saturating_sub(start_ms).max(1) as f64;
    let x = |ms: u64| round(LEFT + ms.saturating_sub(start_ms) as f64 / span_ms * (RIGHT - LEFT));
    let rows: Vec<TimelineRow> = groups
        .iter()
        .enumerate()
        .map(|(i, group)| {
            let started = group.iter().filter_map(|s| s.started_ms).min();
            let all_finished = group.iter().all(|s| s.finished_ms.is_some());
            let finished = group.iter().filter_map(|s| s.finished_ms).max();
            let failure = group.iter().find_map(|s| s.failure.clone());
            let attempts = group.iter().map(|s| u64::from(s.attempts)).sum::<u64>();
            let throttles = group.iter().map(|s| s.throttles).sum();
            let throttled_stops = group.iter().map(|s| s.throttled_stops).sum::<u64>();
            let class = if failure.is_some() || !all_finished {
                "failed"
            } else if throttled_stops > 0 {
                "throttled"
            } else if attempts > group.len() as u64 {
                "retried"
            } else {
                "ok"
            };
            let (first, last) = (group.first(), group.last());
            let label = match (first, last) {
                (Some(a), Some(b)) if a.chunk != b.chunk => {
                    format!("chunks {}–{}", a.chunk, b.chunk)
                }
                (Some(a), _) => format!("chunk {}", a.chunk),
                _ => String::new(),
            };
            let target = first
                .and_then(|a| a.target.clone())
                .filter(|t| group.iter().all(|s| s.target.as_ref() == Some(t)));
            let from = started.unwrap_or(start_ms);
            let to = if all_finished {
                finished.unwrap_or(end_ms)
            } else {
                end_ms
            };
            TimelineRow {
                label,
                target,
                entries: group.iter().map(|s| s.entries).sum(),
                start: started.map_or_else(|| "-".to_owned(), clock_seconds),
                end: if all_finished {
                    finished.map_or_else(|| "-".to_owned(), clock_seconds)
                } else {
                    "-".to_owned()
                },
                attempts,
                throttles,
                throttled_stops,
                class,
                failure,
                x: x(from),
                y: round(i as f64 * step),
                w: round((x(to) - x(from)).max(1.5)),
            }
        })
        .collect();
    let bottom = round(rows.len() as f64 * step + 4.0);
    Timeline {
        height: bottom + 24.0,
        bar: round(bar),
        left: LEFT,
        right: RIGHT,
        bottom,
        rows,
        per_row,
        x_ticks: time_ticks(start_ms, end_ms),
    }
}

/// Five time labels spread over `start_ms..end_ms`, `HH:MM` (`HH:MM:SS` under 10 minutes).
fn time_ticks(start_ms: u64, end_ms: u64) -> Vec<Tick> {
    let span = end_ms.saturating_sub(start_ms).max(1);
    let label = if span < 600_000 { clock_seconds } else { clock };
    (0..=4u64)
        .map(|i| Tick {
            at: round(LEFT + (RIGHT - LEFT) * i as f64 / 4.0),
            label: label(start_ms + span * i / 4),
        })
        .collect()
}

/// `HH:MM` UTC.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}", s / 3600 % 24, s / 60 % 60)
}

/// `HH:MM:SS` UTC.
fn clock_seconds(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}

fn share(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 / total as f64
    }
}

/// One decimal: enough for a chart, and a short page.
fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// 1, 2 or 5 times a power of ten, at least `v` (1 for nothing).
fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let power = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * power)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_bars_are_shares_of_every_outcome() {
        let chart = outcomes(&[
            ("registered".into(), "done", 75, None),
            ("already registered".into(), "done", 0, None),
            (
                "Thingpress.InvalidCertificate".into(),
                "rejected",
                25,
                Some("Thingpress.InvalidCertificate".into()),
            ),
        ]);
        let widths: Vec<f64> = chart.bars.iter().map(|b| b.width).collect();
        assert_eq!(widths, [300.0, 0.0, 100.0]);
        assert_eq!(chart.bars[2].share, "25.0 %");
        assert_eq!(chart.bars[2].y, 2.0 * OUTCOME_ROW);
        assert_eq!(
            outcomes(&[("registered".into(), "done", 0, None)]).bars[0].width,
            0.0
        );
    }

    #[test]
    fn throughput_is_certificates_per_second_per_minute_against_the_levels() {
        let minute = 29_000_000;
        let done = BTreeMap::from([(minute, 600), (minute + 2, 1200)]);
        let chart = throughput(
            &done,
            minute * 60_000,
            (minute + 3) * 60_000 - 1,
            Some(15.0),
            Some(20.0),
        )
        .unwrap();
        assert_eq!(chart.bucket_minutes, 1);
        let rates: Vec<f64> = chart.bars.iter().map(|b| b.rate).collect();
        assert_eq!(
            rates,
            [10.0, 20.0],
            "a minute without certificates draws no bar"
        );
        assert_eq!(chart.peak, 20.0);
        // The axis tops out above the highest of rate, pace and quota.
        let (paced, quota) = (chart.paced.unwrap(), chart.quota.unwrap());
        assert!(quota.y < paced.y && paced.y < chart.bottom && quota.y > chart.top);
        assert!(chart.bars[1].y < chart.bars[0].y);
        assert_eq!(chart.bars[1].h, round(chart.bottom - chart.bars[1].y));
        assert!(throughput(&BTreeMap::new(), 0, 1, None, None).is_none());
    }

    #[test]
    fn a_run_shorter_than_a_minute_is_rated_over_its_own_seconds() {
        let minute = 29_000_000;
        let start = minute * 60_000 + 30_000;
        let done = BTreeMap::from([(minute, 3)]);
        let chart = throughput(&done, start, start + 12_000, None, None).unwrap();
        assert_eq!(chart.bars[0].rate, 0.3, "3 certificates in 12 s");
    }

    #[test]
    fn long_runs_pool_minutes_so_the_bars_stay_few() {
        // A week of minutes, every one busy.
        let done: BTreeMap<u64, u64> = (0..7 * 24 * 60).map(|m| (1_000 + m, 60)).collect();
        let chart = throughput(
            &done,
            1_000 * 60_000,
            (1_000 + 7 * 24 * 60) * 60_000,
            None,
            None,
        )
        .unwrap();
        assert!(
            chart.bars.len() as u64 <= MAX_BUCKETS,
            "{}",
            chart.bars.len()
        );
        assert_eq!(chart.bucket_minutes, 43);
        // Pooled buckets still say certificates per second (the last is partly empty).
        assert!(
            chart.bars[..chart.bars.len() - 1]
                .iter()
                .all(|b| b.rate == 1.0)
        );
        assert!(chart.paced.is_none());
    }

    fn span(chunk: u32, started: u64, finished: Option<u64>, attempts: u32) -> ChunkSpan {
        ChunkSpan {
            chunk,
            target: None,
            entries: 10,
            started_ms: Some(started),
            finished_ms: finished,
            attempts,
            throttles: 0,
            throttled_stops: 0,
            failure: None,
        }
    }

    #[test]
    fn the_timeline_draws_each_chunk_from_its_start_to_its_end() {
        let spans = [
            span(0, 0, Some(50_000), 1),
            span(1, 50_000, Some(100_000), 3),
            span(2, 20_000, None, 2),
        ];
        let chart = timeline(&spans, 0, 100_000);
        assert_eq!(chart.per_row, 1);
        let classes: Vec<&str> = chart.rows.iter().map(|r| r.class).collect();
        assert_eq!(classes, ["ok", "retried", "failed"]);
        assert_eq!(chart.rows[0].x, LEFT);
        assert_eq!(chart.rows[1].x + chart.rows[1].w, RIGHT);
        assert_eq!(
            (chart.rows[1].start.as_str(), chart.rows[1].end.as_str()),
            ("00:00:50", "00:01:40")
        );
        assert_eq!(chart.rows[2].end, "-", "an unfinished chunk has no end");
        assert!(chart.rows[1].y > chart.rows[0].y);
    }

    #[test]
    fn many_chunks_are_grouped_into_at_most_the_row_limit() {
        let spans: Vec<ChunkSpan> = (0..1000)
            .map(|c| span(c, u64::from(c) * 1000, Some(u64::from(c) * 1000 + 900), 1))
            .collect();
        let chart = timeline(&spans, 0, 1_000_000);
        assert!(chart.rows.len() <= MAX_ROWS);
        assert_eq!(chart.per_row, 4);
        assert_eq!(chart.rows[0].label, "chunks 0–3");
        assert_eq!(chart.rows[0].entries, 40);
        assert_eq!(chart.rows.iter().map(|r| r.attempts).sum::<u64>(), 1000);
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(13.0), 20.0);
        assert_eq!(nice_ceiling(55.0), 100.0);
        assert_eq!(nice_ceiling(2.0), 2.0);
    }
}
