//! Parses one manifest end to end (read, split, validate every entry) and prints one JSON line:
//! supplier, entries, accepted, rejected, seconds, entries_per_sec, cpu_seconds, peak_rss_mb.
//!
//! `parse_manifest <auto|microchip|infineon|espressif|pem> <file> [--verifier <pem>] [--expect <n>]`
//! Peak RSS is the process high-water mark (`VmHWM` in /proc/self/status, Linux). With
//! `--expect`, exits non-zero unless exactly n entries were accepted and none rejected.

use std::io::BufReader;
use std::process::ExitCode;
use std::time::Instant;

use thingpress_manifest::{Entry, Options, Supplier, Verifiers, read_entries};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// User + system CPU seconds of this process so far (Linux), from /proc/self/stat in clock
/// ticks (100 per second on Linux, whatever the kernel HZ).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may contain spaces.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Peak resident set size in MiB, if the platform reports it.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: parse_manifest <supplier> <file> [--verifier <pem>] [--expect <n>]";
    let supplier: Supplier = args.next().ok_or(usage)?.parse()?;
    let path = args.next().ok_or(usage)?;
    let mut options = Options {
        supplier,
        ..Options::default()
    };
    let mut expect: Option<u64> = None;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(usage)?;
        match flag.as_str() {
            "--verifier" => {
                options.verifiers = Verifiers::from_pem(&std::fs::read_to_string(&value)?)?;
            }
            "--expect" => expect = Some(value.parse()?),
            _ => return Err(usage.into()),
        }
    }

    let started = Instant::now();
    let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let entries = read_entries(BufReader::with_capacity(256 * 1024, file), &options)?;
    let resolved = entries.supplier();
    let (mut accepted, mut rejected) = (0u64, 0u64);
    let mut first_rejection = None;
    for entry in entries {
        match entry.map_err(|e| format!("{path}: {e}"))? {
            Entry::Accepted(_) => accepted += 1,
            Entry::Rejected(r) => {
                rejected += 1;
                first_rejection.get_or_insert(r);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let total = accepted + rejected;
    let report = serde_json::json!({
        "supplier": resolved.as_str(),
        "file": path,
        "entries": total,
        "accepted": accepted,
        "rejected": rejected,
        "seconds": seconds,
        "entries_per_sec": if seconds > 0.0 { total as f64 / seconds } else { 0.0 },
        "cpu_seconds": cpu_seconds(),
        "peak_rss_mb": peak_rss_mb(),
    });
    println!("{report}");
    if let Some(n) = expect
        && (accepted != n || rejected != 0)
    {
        return Err(format!(
            "{path}: expected {n} accepted and 0 rejected, got {accepted} accepted and {rejected} rejected (first: {first_rejection:?})"
        )
        .into());
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parse_manifest: {e}");
            ExitCode::FAILURE
        }
    }
}
