//! `thingpress report RUN --html FILE`: the page of `thingpress-html`, from what the run keeps:
//! its report, `run.json`'s rates, every chunk's stats (read a few at a time) and the first
//! rejected entries of the stream the other outputs print.

use std::path::Path;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use thingpress_html::{Chunk, EMBEDDED_REJECTIONS, RunPage};
use thingpress_run::records::{ChunkDescriptor, RunInfo, now_ms};
use thingpress_run::report::Report;
use thingpress_run::{RunStore, S3Store};

use super::{READS_IN_FLIGHT, Rejections};
use crate::runs::chunks_with_results;
use crate::target::TargetArgs;

/// Writes the page of `report` to `path`; returns how many rejected entries it embeds.
pub async fn write(
    path: &Path,
    stack: &TargetArgs,
    runs: &RunStore<S3Store>,
    report: &Report,
    info: &RunInfo,
    index: &[ChunkDescriptor],
    rejected: &mut Rejections<'_>,
) -> Result<usize> {
    let finished = &chunks_with_results(runs.store(), runs.bucket(), runs.layout()).await?;
    let chunks: Vec<Chunk> = futures::stream::iter(index)
        .map(|descriptor| async move {
            let stats = runs.stats(descriptor.chunk).await?;
            anyhow::Ok(Chunk {
                descriptor: descriptor.clone(),
                stats,
                finished: finished.contains(&descriptor.chunk),
            })
        })
        .buffered(READS_IN_FLIGHT)
        .try_collect()
        .await?;
    let mut embedded = Vec::new();
    while embedded.len() < EMBEDDED_REJECTIONS
        && let Some(entry) = rejected.next().await?
    {
        embedded.push(entry);
    }
    let page = thingpress_html::render(&RunPage {
        report,
        rates: info.rates,
        chunks: &chunks,
        rejected: &embedded,
        cli: &cli(stack),
        generated_at_ms: now_ms(),
    })?;
    std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    Ok(embedded.len())
}

/// The command as the user ran it, for the commands the page suggests.
fn cli(stack: &TargetArgs) -> String {
    match (&stack.stack, stack.local) {
        (Some(name), _) => format!("thingpress --stack {name}"),
        (None, true) => "thingpress --local".to_owned(),
        (None, false) => "thingpress".to_owned(),
    }
}
