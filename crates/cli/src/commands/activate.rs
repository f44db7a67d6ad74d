//! `thingpress activate`: set the certificates of shipped devices ACTIVE, from the factory's
//! shipping list (MES device-info JSON or CSV). The run goes through the state machine like an
//! import (chunks, paced by the account-wide budget, a per-entry report, redrive and
//! retry-failed).

use std::path::PathBuf;

use anyhow::Result;
use thingpress_run::payload::Operation;

use crate::commands::device_list::{DeviceList, RunArgs};
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
    /// The run's name and following.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Runs the command.
pub async fn run(target: &TargetArgs, args: &Args) -> Result<()> {
    let list = DeviceList {
        file: &args.file,
        profile: &args.profile,
        operation: Operation::Activate,
        run: &args.run,
    };
    list.start(target, "to activate").await
}
