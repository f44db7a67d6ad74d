//! `thingpress registry` (being built: see issue 5).

use crate::target::TargetArgs;

/// Options of `thingpress registry`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_target: &TargetArgs, _args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("thingpress registry is not built yet")
}
