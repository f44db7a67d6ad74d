//! A device list run (`activate`, `decommission`): the list is read here first, so a list with
//! nothing usable fails before anything is uploaded; then it is uploaded and the execution
//! started with the operation, as `import --start` does.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
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

/// How a device-list run is named and followed (`activate`, `decommission`).
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The run id (execution name); default: the list's file name and the UTC time.
    #[arg(long = "name", value_name = "RUN")]
    pub name: Option<String>,
    /// Follow the run until it ends, like `thingpress watch`; exit non-zero if it fails.
    #[arg(long)]
    pub wait: bool,
    /// Seconds between progress lines with --wait when stderr is not a terminal.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,
}

/// One device list to run through the state machine.
pub(crate) struct DeviceList<'a> {
    pub file: &'a Path,
    pub profile: &'a str,
    pub operation: Operation,
    pub run: &'a RunArgs,
}

impl DeviceList<'_> {
    /// Counts the list, uploads it and starts the run (`what`: "to activate", …).
    pub(crate) async fn start(&self, target: &TargetArgs, what: &str) -> Result<()> {
        let target = Target::resolve(target).await?;
        self.start_on(&target, what).await.map(|_| ())
    }

    /// [`DeviceList::start`] on a resolved target; the execution ARN.
    pub(crate) async fn start_on(&self, target: &Target, what: &str) -> Result<String> {
        let file_name = file_name(self.file)?;
        let listed = count(self.file)?;
        if listed.devices == 0 {
            bail!(
                "{}: no device {what} ({} entries rejected; the stack reads the list the same way)",
                self.file.display(),
                listed.rejected
            );
        }
        eprintln!(
            "{}: {} devices {what}, {} entries rejected here (the run reports each one)",
            self.file.display(),
            listed.devices,
            listed.rejected
        );
        let profile_object = profile_key(self.profile)?;
        let run_id = match &self.run.name {
            Some(name) => name.clone(),
            None => run_name(&file_name, SystemTime::now()),
        };
        let run = RunLayout::new(&run_id).context("--name")?;
        require_profile(target, self.profile, &profile_object).await?;
        let started = Started {
            run: &run,
            file: self.file,
            file_name: &file_name,
            profile: self.profile,
            force: false,
            operation: self.operation,
        };
        let arn = started.upload_and_start(target).await?;
        outln!("run {}", execution_name(&arn))?;
        outln!("execution {arn}")?;
        if self.run.wait {
            follow(target, &arn, Duration::from_secs(self.run.interval)).await?;
        }
        Ok(arn)
    }
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
