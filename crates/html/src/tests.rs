#![allow(clippy::unwrap_used)]

use serde_json::json;
use thingpress_manifest::ErrorName;
use thingpress_run::records::ChunkFailure;

use super::*;

const START: u64 = 1_796_000_000_000;

fn report(status: &str, entries: u64, registered: u64, rejected: &[(&str, u64)]) -> Report {
    let by_error: serde_json::Map<String, serde_json::Value> = rejected
        .iter()
        .map(|(e, n)| ((*e).to_owned(), json!(n)))
        .collect();
    serde_json::from_value(json!({
        "runId": "widgets-1",
        "status": status,
        "source": {"bucket": "imports", "key": "incoming/widget/batch-7.json"},
        "supplier": "microchip",
        "profile": "widget",
        "entries": entries,
        "outcomes": {
            "registered": registered,
            "alreadyRegistered": 2,
            "rejected": rejected.iter().map(|r| r.1).sum::<u64>(),
            "rejectedByError": by_error,
        },
        "chunks": 2,
        "apiCalls": {"CreateThing": 12, "RegisterCertificateWithoutCA": 12},
        "apiThrottles": {"CreateThing": 3},
        "throttled": 0,
        "chunkRetries": 1,
        "startedAtMs": START,
        "finishedAtMs": START + 150_000,
        "durationSeconds": 150.0,
        "certificatesPerSecond": 0.08,
    }))
    .unwrap()
}

fn chunk(n: u32, finished: bool, done_per_minute: &[(u64, u64)]) -> Chunk {
    Chunk {
        descriptor: ChunkDescriptor {
            chunk: n,
            key: format!("runs/widgets-1/chunks/{n:05}.jsonl"),
            entries: 6,
            first_index: u64::from(n) * 6,
            target: None,
        },
        stats: Some(ChunkStats {
            attempts: 1 + n,
            started_at_ms: START + 1_000,
            finished_at_ms: if finished { START + 100_000 } else { 0 },
            api_throttles: [("CreateThing".to_owned(), 3)].into(),
            done_per_minute: done_per_minute.iter().copied().collect(),
            failure: (!finished).then(|| ChunkFailure {
                error: ErrorName::Throttled,
                message: "CreateThing still throttled".into(),
            }),
            ..ChunkStats::default()
        }),
        finished,
    }
}

fn rejection(index: u64, error: ErrorName, message: &str) -> RejectedEntry {
    RejectedEntry {
        index,
        device_id: Some(format!("dev-{index}")),
        certificate_id: Some(format!("{index:064x}")),
        error,
        message: message.to_owned(),
        target: None,
    }
}

fn page<'a>(report: &'a Report, chunks: &'a [Chunk], rejected: &'a [RejectedEntry]) -> String {
    render(&RunPage {
        report,
        rates: Some(Rates {
            paced_per_second: 9.0,
            quota_per_second: 10.0,
        }),
        chunks,
        rejected,
        cli: "thingpress --stack imports",
        generated_at_ms: START + 200_000,
    })
    .unwrap()
}

#[test]
fn the_page_shows_the_run_its_outcomes_charts_rejections_and_next_steps() {
    let minute = START / 60_000;
    let report = report(
        "complete",
        12,
        8,
        &[
            ("Thingpress.InvalidCertificate", 1),
            ("Thingpress.RejectedByIot", 1),
        ],
    );
    let chunks = [
        chunk(0, true, &[(minute, 4), (minute + 1, 2)]),
        chunk(1, true, &[(minute + 1, 4)]),
    ];
    let rejected = [
        rejection(3, ErrorName::InvalidCertificate, "not a certificate"),
        rejection(9, ErrorName::RejectedByIot, "<script>alert(1)</script>"),
    ];
    let html = page(&report, &chunks, &rejected);

    assert!(html.contains("<title>Thingpress run widgets-1</title>"));
    assert!(html.contains(r#"<span id="entries">12</span>"#));
    // Values are HTML-escaped, '/' too.
    assert!(html.contains("s3:&#x2f;&#x2f;imports&#x2f;incoming&#x2f;widget&#x2f;batch-7.json"));
    assert!(html.contains("microchip manifest"));
    assert!(
        html.contains("2026-") && html.contains(" UTC"),
        "times are shown in UTC"
    );
    for (label, n) in [
        ("registered", 8),
        ("already registered", 2),
        ("Thingpress.InvalidCertificate", 1),
    ] {
        assert!(
            html.contains(&format!(r#"data-count="{label}">{n}<"#)),
            "{label}"
        );
    }
    // Three minutes with certificates, the paced rate and the quota drawn against them.
    assert_eq!(html.matches(r#"<rect class="rate""#).count(), 2);
    assert!(html.contains(r#"<line class="paced""#) && html.contains(r#"<line class="quota""#));
    assert_eq!(html.matches(r#"<rect class="chunk ok""#).count(), 1);
    assert_eq!(html.matches(r#"<rect class="chunk retried""#).count(), 1);
    assert_eq!(html.matches(r#"<tr data-error=""#).count(), 2);
    assert!(html.contains(r#"<option value="Thingpress.RejectedByIot">"#));
    // Values are escaped: a message cannot run script in the page.
    assert!(!html.contains("<script>alert(1)"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
    assert!(
        html.contains("thingpress --stack imports report widgets-1 --rejected-only --output csv")
    );
    assert!(
        html.contains("thingpress --stack imports registry check batch-7.json --profile widget")
    );
    assert!(
        !html.contains("retry-failed"),
        "a complete run needs no retry"
    );
}

#[test]
fn an_incomplete_run_says_how_to_finish_it_and_marks_the_chunk() {
    let report = report("incomplete", 12, 4, &[]);
    let chunks = [chunk(0, true, &[]), chunk(1, false, &[])];
    let html = page(&report, &chunks, &[]);
    assert!(html.contains(r#"class="status incomplete""#));
    // 12 entries, 6 with an outcome: the other 6 are shown as such.
    assert!(html.contains(r#"data-count="no outcome yet">6<"#), "{html}");
    assert!(html.contains("thingpress --stack imports redrive widgets-1 --wait"));
    assert!(html.contains("thingpress --stack imports retry-failed widgets-1 --wait"));
    assert!(html.contains(r#"<rect class="chunk failed""#));
    assert!(html.contains("Thingpress.Throttled: CreateThing still throttled"));
    assert!(
        html.contains("No certificate finished"),
        "no per-minute counts, no chart"
    );
    assert!(html.contains(r#"<p id="no-rejections">"#));
    assert!(
        !html.contains("registry check"),
        "nothing to check before it finishes"
    );
}

#[test]
fn a_million_entries_make_a_page_of_a_few_hundred_kb() {
    // 1,000,000 entries in 500 chunks of 2,000, over 3 hours, and 50,000 rejected entries of
    // which the page embeds the first EMBEDDED_REJECTIONS.
    let minute = START / 60_000;
    let mut report = report(
        "complete",
        1_000_000,
        948_000,
        &[("Thingpress.InvalidCertificate", 50_000)],
    );
    report.finished_at_ms = START + 3 * 3_600_000;
    let chunks: Vec<Chunk> = (0..500)
        .map(|n| {
            let mut c = chunk(n, true, &[]);
            c.descriptor.entries = 2000;
            let stats = c.stats.as_mut().unwrap();
            stats.done_per_minute = (0..3)
                .map(|m| (minute + u64::from(n) * 180 / 500 + m, 600))
                .collect();
            c
        })
        .collect();
    let long = "x".repeat(2_000);
    let rejected: Vec<RejectedEntry> = (0..EMBEDDED_REJECTIONS as u64)
        .map(|i| rejection(i * 20, ErrorName::InvalidCertificate, &long))
        .collect();
    let html = page(&report, &chunks, &rejected);
    assert!(html.len() < 400_000, "{} bytes", html.len());
    assert_eq!(
        html.matches(r#"<tr data-error=""#).count(),
        EMBEDDED_REJECTIONS
    );
    assert!(html.contains("the first 500 of 50000"));
    assert!(html.contains("This page lists the first 500 of 50000 rejected entries"));
}

#[test]
fn the_page_fetches_nothing() {
    let report = report("complete", 12, 10, &[]);
    let html = page(&report, &[chunk(0, true, &[])], &[]);
    for outside in ["src=", "href=", "http://", "https://", "@import", "url("] {
        assert!(!html.contains(outside), "{outside}");
    }
}

#[test]
fn durations_read_naturally() {
    assert_eq!(duration(12.34), "12.3 s");
    assert_eq!(duration(185.0), "3 min 05 s");
    assert_eq!(duration(3_720.0), "1 h 02 min");
    assert_eq!(timestamp(0), "1970-01-01 00:00:00 UTC");
}
