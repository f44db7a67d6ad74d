//! `thingpress decommission`: undo an import — a test import into the wrong account, a wrong
//! profile, a returned reel. It runs through the state machine like an import (chunks, paced by
//! the account-wide budget, a per-entry report, redrive and retry-failed). Without `--execute`
//! it is a dry run: every device is checked and its removal planned, nothing is changed, and the
//! report counts what would be removed per action.
//!
//! The devices come from a run (every entry it registered, with certificate and device id) or a
//! device list file (the shipping-list shapes `activate` reads).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use thingpress_importer::Outcome;
use thingpress_run::payload::Operation;
use thingpress_run::{RunStore, S3Store};

use crate::commands::device_list::{DeviceList, RunArgs};
use crate::runs::{chunks_with_results, finished_results, locate_run};
use crate::target::{Target, TargetArgs};

/// Options of `thingpress decommission`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A run id (every device it registered or found registered), or a device list file: the
    /// MES device-info JSON or CSV `thingpress activate` reads (`certificateId` and/or
    /// `deviceId`). Giving both ids lets a replay after a crash finish every device.
    #[arg(value_name = "RUN|FILE")]
    pub source: String,
    /// The stored profile the devices were imported with: only things carrying its mark are
    /// deleted, only its policies detached and its groups (and activation groups) left.
    #[arg(long)]
    pub profile: String,
    /// Remove for real. Without it, a dry run: nothing is changed, the report says what would be.
    #[arg(long)]
    pub execute: bool,
    /// The run's name and following.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Runs the command.
pub async fn run(target: &TargetArgs, args: &Args) -> Result<()> {
    let target = Target::resolve(target).await?;
    decommission(&target, args).await.map(|_| ())
}

/// Starts the decommission on a resolved target (the smoke test calls it too); the execution ARN.
pub(crate) async fn decommission(target: &Target, args: &Args) -> Result<String> {
    let given = Path::new(&args.source);
    let written;
    let file = if given.is_file() {
        given
    } else {
        written = devices_of_run(target, &args.source).await?;
        written.path()
    };
    let list = DeviceList {
        file,
        profile: &args.profile,
        operation: if args.execute {
            Operation::Decommission
        } else {
            Operation::DecommissionDryRun
        },
        run: &args.run,
    };
    let what = if args.execute {
        "to decommission"
    } else {
        "to check (dry run: nothing will be changed; --execute removes them)"
    };
    list.start_on(target, what).await
}

/// A device list written from a run's results, removed when dropped.
struct RunDevices {
    path: PathBuf,
}

impl RunDevices {
    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDevices {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Writes the devices a run registered (or found registered) as a CSV device list, both ids per
/// device, one chunk's results at a time.
async fn devices_of_run(target: &Target, run_id: &str) -> Result<RunDevices> {
    let store = S3Store::new(target.s3());
    let run = locate_run(target, &store, run_id)
        .await
        .with_context(|| format!("{run_id:?} is neither a file nor a run of this stack"))?;
    let runs = RunStore::new(store.clone(), &target.bucket, run.clone());
    let chunks = chunks_with_results(&store, &target.bucket, &run).await?;
    if chunks.is_empty() {
        bail!(
            "{run_id:?} is neither a file nor a run of this stack with results (s3://{}/{})",
            target.bucket,
            run.results_prefix()
        );
    }
    // A directory of this process's own, so the list keeps a plain name (the run's default id).
    let dir = std::env::temp_dir().join(format!("thingpress-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let devices = RunDevices {
        path: dir.join(format!("{}-devices.csv", run.run_id())),
    };
    let file = std::fs::File::create(devices.path())
        .with_context(|| format!("cannot write {}", devices.path().display()))?;
    let mut csv = csv::Writer::from_writer(std::io::BufWriter::new(file));
    csv.write_record(["certificateId", "deviceId"])?;
    let mut listed = 0u64;
    for chunk in &chunks {
        for result in finished_results(&runs, *chunk).await? {
            let imported = matches!(
                result.outcome,
                Outcome::Registered | Outcome::AlreadyRegistered
            );
            if imported && !result.certificate_id.is_empty() {
                csv.write_record([result.certificate_id.as_str(), result.device_id.as_str()])?;
                listed += 1;
            }
        }
    }
    csv.into_inner()
        .map_err(|e| anyhow::anyhow!("{}: {}", devices.path().display(), e.error()))?
        .flush()?;
    let index = runs.chunk_index().await?;
    if index.len() > chunks.len() {
        eprintln!(
            "thingpress: warning: run {} has results for {} of its {} chunks: the devices of the \
             others are not listed (finish the run first: thingpress redrive / retry-failed)",
            run.run_id(),
            chunks.len(),
            index.len()
        );
    }
    eprintln!(
        "run {}: {listed} devices registered (or found registered)",
        run.run_id()
    );
    Ok(devices)
}
