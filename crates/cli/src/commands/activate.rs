//! `thingpress activate`: set the certificates of shipped devices ACTIVE, from the factory's
//! shipping list (MES device-info JSON or CSV). The run goes through the state machine like an
//! import (chunks, paced by the account-wide budget, a per-entry report, redrive and
//! retry-failed): this command reads the list here first, so a list with nothing usable fails
//! before anything is uploaded, then uploads it and starts the execution.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use thingpress_run::RunLayout;
use thingpress_run::layout::profile_key;
use thingpress_run::payload::Operation;
use thingpress_run::resolve::execution_name;
use thingpress_shipping::ShippingEntry;

use crate::commands::import::{Started, file_name, require_profile, run_name};
use crate::follow::follow;
use crate::output::outln;
use crate::target::{Target, TargetArgs};

/// Options of `thingpress activate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shipping list: the MES device-info JSON (`{"batchId", "devices": [{"certFingerprint",
    /// "deviceId", "attributes"}]}`) or CSV with a header (`certificateId` or `certFingerprint`,
    /// `deviceId`, and any other column an attribute to merge into the thing).
    pub file: PathBuf,
    /// The stored profile the devices were imported with: its thingName template names a
    /// device's thing from its id, and its activationGroups are joined on activation.
    #[arg(long)]
    pub profile: String,
    /// The run id (execution name); default: the file name and the UTC time.
    #[arg(long = "name", value_name = "RUN")]
    pub name: Option<String>,
    /// Follow the run until it ends, like `thingpress watch`; exit non-zero if it fails.
    #[arg(long)]
    pub wait: bool,
    /// Seconds between progress lines with --wait when stderr is not a terminal.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,
}

/// What the list holds, read here before anything is uploaded.
#[derive(Debug, Default, PartialEq, Eq)]
struct ListCount {
    devices: u64,
    rejected: u64,
}

/// Reads the whole list (streamed): a list that cannot be read is an error naming the file.
fn count(file: &Path) -> Result<ListCount> {
    let opened = File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
    let list = thingpress_shipping::read(BufReader::new(opened))
        .with_context(|| format!("{}", file.display()))?;
    let mut count = ListCount::default();
    for entry in list {
        match entry.with_context(|| format!("{}", file.display()))? {
            ShippingEntry::Shipped(_) => count.devices += 1,
            ShippingEntry::Rejected(_) => count.rejected += 1,
        }
    }
    Ok(count)
}

/// Runs the command.
pub async fn run(target: &TargetArgs, args: &Args) -> Result<()> {
    let file_name = file_name(&args.file)?;
    let listed = count(&args.file)?;
    if listed.devices == 0 {
        bail!(
            "{}: no device to activate ({} entries rejected; thingpress activate reads it the \
             same way on the stack)",
            args.file.display(),
            listed.rejected
        );
    }
    eprintln!(
        "{}: {} devices to activate, {} entries rejected here (the run reports each one)",
        args.file.display(),
        listed.devices,
        listed.rejected
    );
    let profile_object = profile_key(&args.profile)?;
    let run_id = match &args.name {
        Some(name) => name.clone(),
        None => run_name(&file_name, SystemTime::now()),
    };
    let run = RunLayout::new(&run_id).context("--name")?;
    let target = Target::resolve(target).await?;
    require_profile(&target, &args.profile, &profile_object).await?;
    let started = Started {
        run: &run,
        file: &args.file,
        file_name: &file_name,
        profile: &args.profile,
        force: false,
        operation: Operation::Activate,
    };
    let arn = started.upload_and_start(&target).await?;
    outln!("run {}", execution_name(&arn))?;
    outln!("execution {arn}")?;
    if args.wait {
        follow(&target, &arn, Duration::from_secs(args.interval)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_list_is_counted_here_and_an_unreadable_one_names_the_file() {
        let dir = std::env::temp_dir().join(format!("thingpress-activate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("shipped.csv");
        let id = "ab".repeat(32);
        std::fs::File::create(&csv)
            .unwrap()
            .write_all(format!("certificateId,deviceId\n{id},d1\nnot-hex,d2\n,d3\n").as_bytes())
            .unwrap();
        assert_eq!(
            count(&csv).unwrap(),
            ListCount {
                devices: 2,
                rejected: 1
            }
        );

        let json = dir.join("broken.json");
        std::fs::write(&json, b"{\"devices\": [").unwrap();
        let error = format!("{:#}", count(&json).unwrap_err());
        assert!(error.contains("broken.json"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
