//! `thingpress registry check`: does IoT hold, for each manifest entry, what the profile says?
//!
//! The manifest is read locally and decorated exactly as the pipeline does ([`check`], here);
//! each accepted entry is then looked up in IoT ([`lookup`]: certificate and status, thing and
//! type and attributes, the certificate on the thing, policies on the certificate, the thing in
//! its groups), compared with what the profile says ([`diff`]), and only the differences are
//! written, then the counts ([`report`]).

mod diff;
mod lookup;
mod report;

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, anyhow};
use futures::StreamExt;
use thingpress_manifest::{Entry, Options, read_entries};
use thingpress_product::{Decorated, Decorator};
use tokio::sync::mpsc::Receiver;
use tokio::task::JoinHandle;

pub use diff::Problem;
pub use report::{Format, Tally, write_summary};

use super::pace::{ReadApi, ReadPacer};
use crate::progress::Progress;
use diff::diff;
use lookup::look_up;
use report::write_problems;

/// What every entry's check uses: IoT, the pacing of its read APIs, and the profile.
pub struct Checker<'a> {
    /// The IoT client.
    pub iot: &'a aws_sdk_iot::Client,
    /// Paces the lookups.
    pub pacer: &'a ReadPacer,
    /// Renders each entry as the profile says it should be.
    pub decorator: &'a Decorator,
}

/// What one manifest item became.
enum Item {
    Checked(Box<Decorated>, Vec<Problem>),
    RejectedByManifest(String),
    RejectedByProfile(String),
}

/// Bounded, so a fast reader never holds much more of the manifest than the checks in flight.
const CHANNEL: usize = 256;

/// Reads `file`, decorates and checks every accepted entry with `concurrency` in flight,
/// writes the problems and the counts to `out`, and returns the counts.
pub async fn check(
    checker: &Checker<'_>,
    file: &Path,
    options: Options,
    concurrency: usize,
    format: Format,
    out: &mut impl Write,
    progress: &Progress,
) -> anyhow::Result<Tally> {
    let name = file.display().to_string();
    let (mut rx, reader) = read_in_background(file, options)?;
    // A `&str` is copied into each `async move` block below; the String stays here.
    let name = name.as_str();
    let mut items = futures::stream::poll_fn(|cx| rx.poll_recv(cx))
        .map(|entry| async move { checker.check_entry(name, entry?).await })
        .buffered(concurrency.max(1));

    let started = Instant::now();
    let mut tally = Tally::default();
    while let Some(item) = items.next().await {
        record(&mut tally, item?, format, out, progress)?;
        let rate = tally.checked as f64 / started.elapsed().as_secs_f64().max(0.001);
        // Every existing entry costs one call of each of these; the budget may move their rates.
        let limit = [
            ReadApi::DescribeCertificate,
            ReadApi::ListThingPrincipals,
            ReadApi::ListAttachedPolicies,
        ]
        .map(|api| checker.pacer.rate(api))
        .into_iter()
        .fold(f64::INFINITY, f64::min);
        progress.message(format!(
            "{} entries checked, {} with problems ({rate:.1}/s, paced at most {limit:.1}/s)",
            tally.checked, tally.with_problems
        ));
    }
    drop(items);
    reader
        .await
        .map_err(|e| anyhow!("{name}: the manifest reader stopped: {e}"))?;
    Ok(tally)
}

/// Opens `file` and reads its entries on a blocking thread (reading and verifying is CPU
/// work); the channel hands them over, and ends after the first error.
fn read_in_background(
    file: &Path,
    options: Options,
) -> anyhow::Result<(Receiver<anyhow::Result<Entry>>, JoinHandle<()>)> {
    let name = file.display().to_string();
    let handle = File::open(file).with_context(|| format!("cannot open {name}"))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<anyhow::Result<Entry>>(CHANNEL);
    let reader = tokio::task::spawn_blocking(move || {
        let entries = match read_entries(BufReader::with_capacity(256 * 1024, handle), &options) {
            Ok(entries) => entries,
            Err(e) => {
                let _ = tx.blocking_send(Err(anyhow!(e).context(name)));
                return;
            }
        };
        for entry in entries {
            let item = entry.with_context(|| name.clone());
            let last = item.is_err();
            if tx.blocking_send(item).is_err() || last {
                return;
            }
        }
    });
    Ok((rx, reader))
}

impl Checker<'_> {
    /// Decorates one manifest entry and, if the profile accepts it, compares it with IoT.
    async fn check_entry(&self, file: &str, entry: Entry) -> anyhow::Result<Item> {
        let accepted = match entry {
            Entry::Rejected(rejected) => {
                return Ok(Item::RejectedByManifest(rejected.error.as_str().to_owned()));
            }
            Entry::Accepted(accepted) => accepted,
        };
        let decorated = match self.decorator.decorate(&accepted) {
            Ok(decorated) => decorated,
            Err(rejected) => {
                return Ok(Item::RejectedByProfile(rejected.error.as_str().to_owned()));
            }
        };
        let found = look_up(self.iot, self.pacer, &decorated)
            .await
            .with_context(|| {
                format!(
                    "{file}: entry {} (deviceId {})",
                    decorated.index, decorated.device_id
                )
            })?;
        let problems = diff(&decorated, &found);
        Ok(Item::Checked(Box::new(decorated), problems))
    }
}

/// Counts one item and writes an entry's problems at once (flushed: a long check shows its
/// problems as it finds them).
fn record(
    tally: &mut Tally,
    item: Item,
    format: Format,
    out: &mut impl Write,
    progress: &Progress,
) -> anyhow::Result<()> {
    tally.entries += 1;
    match item {
        Item::RejectedByManifest(error) => {
            *tally.rejected_by_manifest.entry(error).or_insert(0) += 1;
        }
        Item::RejectedByProfile(error) => {
            *tally.rejected_by_profile.entry(error).or_insert(0) += 1;
        }
        Item::Checked(entry, problems) => {
            tally.count_checked(&problems);
            if !problems.is_empty() {
                progress.suspend(|| {
                    write_problems(out, format, &entry, &problems)?;
                    out.flush().context("cannot write to stdout")
                })?;
            }
        }
    }
    Ok(())
}
