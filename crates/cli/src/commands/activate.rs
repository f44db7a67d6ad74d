//! `thingpress activate`: set the certificates of shipped devices ACTIVE, from the factory's
//! shipping list (MES device-info JSON or CSV). The run goes through the state machine like an
//! import (chunks, paced by the account-wide budget, a per-entry report, redrive and
//! retry-failed).

use std::path::PathBuf;

use anyhow::Result;
use thingpress_run::payload::Operation;

use crate::commands::device_list::DeviceList;
use crate::target::TargetArgs;

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

/// Runs the command.
pub async fn run(target: &TargetArgs, args: &Args) -> Result<()> {
    let list = DeviceList {
        file: &args.file,
        profile: &args.profile,
        name: args.name.as_deref(),
        operation: Operation::Activate,
        wait: args.wait,
        interval: args.interval,
    };
    list.start(target, "to activate").await
}
