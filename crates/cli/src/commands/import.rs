//! `thingpress import` (being built: see issue 5).

use crate::target::TargetArgs;

/// Options of `thingpress import`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_target: &TargetArgs, _args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("thingpress import is not built yet")
}
