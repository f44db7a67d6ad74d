//! Summarize's peak memory on a large run, against the in-memory store.
//!
//! ```sh
//! cargo run -p thingpress-summarize --example summarize_memory -- --entries 1000000
//! cargo run -p thingpress-summarize --example summarize_memory -- --entries 1000000 --hold-all
//! ```
//!
//! The run's results files are generated on the fly as Summarize reads them (realistic lines:
//! certificate id, thing, device id, ARN), so the process holds only what Summarize itself
//! keeps. It prints the peak resident set (`VmHWM`) before and after summarizing. `--hold-all`
//! instead reads every results file into memory at once, as Summarize did before it added up
//! chunk by chunk, for comparison.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Instant;

use bytes::Bytes;
use thingpress_importer::{EntryResult, Outcome};
use thingpress_manifest::{ErrorName, Supplier};
use thingpress_product::Profile;
use thingpress_run::payload::{Started, SummarizeInput};
use thingpress_run::records::{ChunkDescriptor, ChunkStats, RunInfo, SourceObject};
use thingpress_run::store::{ObjectMeta, ObjectReader, parse_jsonl, put_json};
use thingpress_run::{MemStore, RunLayout, Settings, Store, TaskError};

const BUCKET: &str = "imports";
const RUN_ID: &str = "memory-run";

/// A store whose `runs/<id>/results/NNNNN.jsonl` objects are made when read; everything else
/// lives in memory.
struct GeneratedResults {
    objects: MemStore,
    layout: RunLayout,
    chunk_size: u64,
    entries: u64,
}

impl GeneratedResults {
    /// The chunk whose results `key` names, if it does.
    fn chunk_of(&self, key: &str) -> Option<u32> {
        let n: u32 = key
            .strip_prefix(&format!("runs/{RUN_ID}/results/"))?
            .strip_suffix(".jsonl")?
            .parse()
            .ok()?;
        (n < self.chunk_count() && self.layout.results(n) == key).then_some(n)
    }

    fn chunk_count(&self) -> u32 {
        u32::try_from(self.entries.div_ceil(self.chunk_size)).unwrap_or(u32::MAX)
    }

    /// Chunk `n`'s results: mostly registered, some already registered, a few rejected.
    fn results(&self, n: u32) -> Vec<u8> {
        let first = u64::from(n) * self.chunk_size;
        let last = (first + self.chunk_size).min(self.entries);
        let mut out = Vec::with_capacity(((last - first) * 300) as usize);
        for index in first..last {
            let certificate_id = format!("{:064x}", u128::from(index) * 0x9e37_79b9_7f4a_7c15);
            let device_id = format!("01{index:016x}ee");
            let outcome = match index % 100 {
                0 => Outcome::Rejected,
                1..=9 => Outcome::AlreadyRegistered,
                _ => Outcome::Registered,
            };
            let rejected = outcome == Outcome::Rejected;
            let line = EntryResult {
                index,
                certificate_arn: Some(format!(
                    "arn:aws:iot:us-east-1:123456789012:cert/{certificate_id}"
                )),
                certificate_id,
                thing_name: format!("widget-{device_id}"),
                device_id,
                outcome,
                actions: Vec::new(),
                error: rejected.then_some(ErrorName::ThingConflict),
                message: rejected.then(|| "certificate is attached to another thing".to_owned()),
            };
            if serde_json::to_writer(&mut out, &line).is_ok() {
                out.push(b'\n');
            }
        }
        out
    }
}

impl Store for GeneratedResults {
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, TaskError> {
        match self.chunk_of(key) {
            Some(n) => Ok(Some(Bytes::from(self.results(n)))),
            None => self.objects.get(bucket, key).await,
        }
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), TaskError> {
        self.objects.put(bucket, key, body).await
    }

    async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> Result<bool, TaskError> {
        self.objects.put_if_absent(bucket, key, body).await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, TaskError> {
        self.objects.head(bucket, key).await
    }

    async fn reader(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectReader, TaskError> {
        match self.chunk_of(key) {
            Some(n) => Ok(Box::pin(std::io::Cursor::new(self.results(n)))),
            None => self.objects.reader(bucket, key, version_id).await,
        }
    }

    async fn reader_if_exists(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectReader>, TaskError> {
        match self.chunk_of(key) {
            Some(n) => Ok(Some(Box::pin(std::io::Cursor::new(self.results(n))))),
            None => self.objects.reader_if_exists(bucket, key).await,
        }
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, TaskError> {
        self.objects.list(bucket, prefix).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), TaskError> {
        self.objects.delete(bucket, key).await
    }
}

/// Peak resident set size so far, in kB (Linux).
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mb(kb: Option<u64>) -> String {
    kb.map(|kb| format!("{:.1} MB", kb as f64 / 1024.0))
        .unwrap_or_else(|| "unknown".into())
}

struct Args {
    entries: u64,
    chunk_size: u64,
    hold_all: bool,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        entries: 1_000_000,
        chunk_size: 500,
        hold_all: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name} needs a positive whole number"))
        };
        match arg.as_str() {
            "--entries" => args.entries = number("--entries")?,
            "--chunk-size" => args.chunk_size = number("--chunk-size")?,
            "--hold-all" => args.hold_all = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

async fn setup(args: &Args) -> Result<GeneratedResults, TaskError> {
    let layout = RunLayout::new(RUN_ID)?;
    let store = GeneratedResults {
        objects: MemStore::new(),
        layout,
        chunk_size: args.chunk_size,
        entries: args.entries,
    };
    let chunks = store.chunk_count();
    let info = RunInfo {
        run_id: RUN_ID.into(),
        operation: Default::default(),
        source: SourceObject {
            bucket: BUCKET.into(),
            key: "incoming/widget/big.pem".into(),
            etag: String::new(),
            version_id: None,
        },
        profile: Profile::named("widget"),
        supplier: Supplier::Pem,
        chunk_size: u32::try_from(args.chunk_size).unwrap_or(u32::MAX),
        max_concurrency: 10,
        entries: args.entries,
        accepted: args.entries,
        rejected: 0,
        chunk_count: chunks,
        rejected_parts: 0,
        started_at_ms: 0,
        rates: None,
    };
    put_json(&store, BUCKET, &store.layout.run_info(), &info).await?;
    let index: Vec<ChunkDescriptor> = (0..chunks)
        .map(|n| {
            let first_index = u64::from(n) * args.chunk_size;
            ChunkDescriptor {
                chunk: n,
                key: store.layout.chunk(n),
                entries: (args.entries - first_index).min(args.chunk_size),
                first_index,
                target: None,
            }
        })
        .collect();
    put_json(&store, BUCKET, &store.layout.chunk_index(), &index).await?;
    for n in 0..chunks {
        let stats = ChunkStats {
            api_calls: [
                ("RegisterCertificateWithoutCA".to_owned(), args.chunk_size),
                ("CreateThing".to_owned(), args.chunk_size),
            ]
            .into(),
            attempts: 1,
            ..ChunkStats::default()
        };
        put_json(&store, BUCKET, &store.layout.stats(n), &stats).await?;
    }
    Ok(store)
}

/// What Summarize did before: every chunk's results parsed and held at once.
async fn hold_all(store: &GeneratedResults) -> Result<u64, TaskError> {
    let mut all: Vec<Vec<EntryResult>> = Vec::new();
    for n in 0..store.chunk_count() {
        let body = store
            .get(BUCKET, &store.layout.results(n))
            .await?
            .unwrap_or_default();
        all.push(parse_jsonl(&body).map_err(TaskError::invalid_input)?);
    }
    Ok(all
        .iter()
        .flatten()
        .filter(|r| r.outcome == Outcome::Registered)
        .count() as u64)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let args = args()?;
    let store = setup(&args).await.map_err(|e| e.to_string())?;
    let baseline = peak_rss_kb();
    let started = Instant::now();
    let registered = if args.hold_all {
        hold_all(&store).await.map_err(|e| e.to_string())?
    } else {
        let settings = Settings::from_lookup(|name| {
            HashMap::from([("IMPORT_BUCKET", BUCKET)])
                .get(name)
                .map(|v| (*v).to_owned())
        })?;
        let input = SummarizeInput::Started(Started {
            run_id: RUN_ID.into(),
            bucket: BUCKET.into(),
            chunks_key: store.layout.chunk_index(),
            chunk_count: store.chunk_count(),
            max_concurrency: 10,
            tolerated_failure_percentage: 0,
            entries: args.entries,
            accepted: args.entries,
            rejected: 0,
        });
        let task = thingpress_summarize::Task::with_store(std::sync::Arc::new(store), settings);
        let out = task.summarize(&input).await.map_err(|e| e.to_string())?;
        out.registered
    };
    let peak = peak_rss_kb();
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{} entries in chunks of {} ({}): registered {registered}; peak RSS {} before, {} after ({:.1} s)",
        args.entries,
        args.chunk_size,
        if args.hold_all {
            "every chunk's results held at once, as before"
        } else {
            "Summarize, chunk by chunk"
        },
        mb(baseline),
        mb(peak),
        started.elapsed().as_secs_f64()
    )
    .map_err(|e| e.to_string())
}
