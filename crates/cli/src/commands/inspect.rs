//! `thingpress inspect`: read a manifest offline and say what an import would do with each entry.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};
use thingpress_manifest::{Entry, ErrorName, Options, Slot, Supplier, Verifiers, read_entries};

use crate::output::Output;
use crate::progress::Progress;

/// Entries between two updates of the progress bar (a shared counter read, a redraw).
const PROGRESS_EVERY: u64 = 4096;

/// Arguments of `thingpress inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest file.
    pub file: PathBuf,
    /// The supplier format; `auto` recognises it from the bytes.
    #[arg(long, default_value = "auto", value_parser = parse_supplier)]
    pub supplier: Supplier,
    /// A PEM file of certificates allowed to sign Microchip manifests, in addition to
    /// Microchip's published manifest signers (repeatable).
    #[arg(long = "verifier", value_name = "CERT_PEM_FILE")]
    pub verifiers: Vec<PathBuf>,
    /// The Infineon OPTIGA Trust M bundle slot whose certificates to read.
    #[arg(long, default_value = "E0E0", value_parser = parse_slot)]
    pub slot: Slot,
    /// `summary`: counts per outcome and error name; `jsonl`: one JSON object per entry.
    #[arg(
        long,
        default_value_t = Output::Summary,
        value_parser = Output::only(&[Output::Summary, Output::Jsonl])
    )]
    pub output: Output,
}

fn parse_supplier(s: &str) -> Result<Supplier, String> {
    s.parse()
}

fn parse_slot(s: &str) -> Result<Slot, String> {
    s.parse()
}

/// Runs the command.
pub fn run(args: &Args) -> Result<()> {
    let options = options(args)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let jsonl = args.output == Output::Jsonl;
    let counted = read(&args.file, &options, |entry| {
        if jsonl {
            write_line(&mut out, &entry_json(entry))
        } else {
            Ok(true)
        }
    })?;
    // Stdout closed early (`| head`): nothing more is wanted.
    let Some(counted) = counted else {
        return Ok(());
    };
    if args.output == Output::Summary {
        let name = args.file.display().to_string();
        write_summary(
            &mut out,
            &name,
            counted.supplier,
            &counted.tally,
            counted.elapsed_s,
        )?;
    }
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

/// What reading a whole manifest found.
#[derive(Debug)]
pub struct Counted {
    /// The format.
    pub supplier: Supplier,
    /// Counts per outcome.
    pub tally: Tally,
    /// Seconds the read took.
    pub elapsed_s: f64,
}

/// Streams the manifest at `path` with a progress bar on stderr, handing each entry to `each`
/// (`false` stops the read: `None`). `inspect` and `plan` both count through it.
pub fn read(
    path: &std::path::Path,
    options: &Options,
    mut each: impl FnMut(&Entry) -> Result<bool>,
) -> Result<Option<Counted>> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("cannot open {name}"))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or_default();
    let read = Arc::new(AtomicU64::new(0));
    let reader = BufReader::with_capacity(
        256 * 1024,
        CountingReader {
            inner: file,
            read: Arc::clone(&read),
        },
    );
    let started = Instant::now();
    let entries = read_entries(reader, options).with_context(|| name.clone())?;
    let supplier = entries.supplier();
    let progress = Progress::bytes(size);
    let mut tally = Tally::default();
    for entry in entries {
        let entry = entry.with_context(|| name.clone())?;
        tally.count(&entry);
        if !each(&entry)? {
            return Ok(None);
        }
        if tally.entries.is_multiple_of(PROGRESS_EVERY) {
            progress.position(read.load(Ordering::Relaxed));
            progress.message(format!("{} entries", tally.entries));
        }
    }
    progress.finish();
    Ok(Some(Counted {
        supplier,
        tally,
        elapsed_s: started.elapsed().as_secs_f64(),
    }))
}

fn options(args: &Args) -> Result<Options> {
    let mut verifiers = Verifiers::default();
    for path in &args.verifiers {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read verifier {}", path.display()))?;
        verifiers
            .add_pem(&text)
            .with_context(|| format!("verifier {}", path.display()))?;
    }
    Ok(Options {
        supplier: args.supplier,
        verifiers,
        slot: args.slot,
        ..Options::default()
    })
}

/// Counts per outcome and per rejection name.
#[derive(Debug, Default)]
pub struct Tally {
    /// Entries read.
    pub entries: u64,
    /// Entries an import would register.
    pub accepted: u64,
    /// Rejected entries per error name.
    pub rejected: BTreeMap<ErrorName, u64>,
}

impl Tally {
    fn count(&mut self, entry: &Entry) {
        self.entries += 1;
        match entry {
            Entry::Accepted(_) => self.accepted += 1,
            Entry::Rejected(r) => *self.rejected.entry(r.error).or_default() += 1,
        }
    }
}

/// The JSON line of one entry: outcome first, supplier fields flattened, no certificate body.
fn entry_json(entry: &Entry) -> Value {
    let mut line = Map::new();
    match entry {
        Entry::Accepted(a) => {
            line.insert("index".into(), json!(a.index));
            line.insert("status".into(), json!("accepted"));
            line.insert("certificateId".into(), json!(a.certificate_id));
            line.insert("deviceId".into(), json!(a.device_id));
            if let Some(cn) = &a.cn {
                line.insert("cn".into(), json!(cn));
            }
            for (key, value) in &a.fields {
                line.entry(key.clone()).or_insert_with(|| json!(value));
            }
        }
        Entry::Rejected(r) => {
            line.insert("index".into(), json!(r.index));
            line.insert("status".into(), json!("rejected"));
            line.insert("error".into(), json!(r.error.as_str()));
            line.insert("message".into(), json!(r.message));
            if let Some(device_id) = &r.device_id {
                line.insert("deviceId".into(), json!(device_id));
            }
        }
    }
    Value::Object(line)
}

/// Writes one line; `false` when stdout was closed (e.g. piped into `head`).
fn write_line(out: &mut impl Write, value: &Value) -> Result<bool> {
    let written = serde_json::to_writer(&mut *out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"));
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}

fn write_summary(
    out: &mut impl Write,
    name: &str,
    supplier: Supplier,
    tally: &Tally,
    elapsed_s: f64,
) -> Result<()> {
    let rejected: u64 = tally.rejected.values().sum();
    let rate = if elapsed_s > 0.0 {
        tally.entries as f64 / elapsed_s
    } else {
        0.0
    };
    writeln!(out, "{name}: {supplier} manifest")?;
    writeln!(out, "  entries   {:>10}", tally.entries)?;
    writeln!(out, "  accepted  {:>10}", tally.accepted)?;
    writeln!(out, "  rejected  {rejected:>10}")?;
    for (error, n) in &tally.rejected {
        writeln!(out, "    {error:<32} {n:>10}")?;
    }
    writeln!(out, "  read in {elapsed_s:.2} s ({rate:.0} entries/s)")?;
    Ok(())
}

/// Counts the bytes read so the progress bar can follow the file.
struct CountingReader<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thingpress_manifest::{Accepted, Rejected};

    #[test]
    fn accepted_lines_flatten_fields_without_overriding_reserved_keys() {
        let entry = Entry::Accepted(Accepted {
            index: 3,
            certificate_id: "ab".into(),
            certificate_pem: "PEM".into(),
            chain: vec![],
            device_id: "dev".into(),
            cn: Some("cn".into()),
            fields: [
                ("MAC".to_owned(), "0A".to_owned()),
                ("deviceId".to_owned(), "x".to_owned()),
            ]
            .into_iter()
            .collect(),
        });
        let line = entry_json(&entry);
        assert_eq!(line["status"], "accepted");
        assert_eq!(line["deviceId"], "dev");
        assert_eq!(line["MAC"], "0A");
        assert!(line.get("certificatePem").is_none());
    }

    #[test]
    fn rejected_lines_carry_the_error_name() {
        let entry = Entry::Rejected(Rejected {
            index: 1,
            error: ErrorName::InvalidSignature,
            message: "bad".into(),
            device_id: None,
        });
        let line = entry_json(&entry);
        assert_eq!(line["error"], "Thingpress.InvalidSignature");
        assert_eq!(line["index"], 1);
    }
}
