//! `thingpress report` (being built: see issue 5).

use crate::target::TargetArgs;

/// Options of `thingpress report`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_target: &TargetArgs, _args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("thingpress report is not built yet")
}
