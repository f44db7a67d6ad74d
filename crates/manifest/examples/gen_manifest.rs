//! Writes a synthetic, valid supplier manifest for benchmarks.
//!
//! `gen_manifest <microchip|infineon-7z|infineon-xml|espressif|pem-lines> <entries> <out-file>`
//! For Microchip, the signer certificate is written next to it as `<out-file>.verifier.pem`.
//! The file is written to `<out-file>.tmp` and renamed, so an interrupted run leaves no
//! half-written manifest behind for the benchmark cache.

#[path = "support/generate.rs"]
mod generate;

use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::Instant;

use generate::Kind;

fn run() -> generate::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, count, out] = args.as_slice() else {
        return Err(
            "usage: gen_manifest <microchip|infineon-7z|infineon-xml|espressif|pem-lines> <entries> <out-file>"
                .into(),
        );
    };
    let kind = Kind::from_name(kind).ok_or_else(|| format!("unknown manifest kind {kind:?}"))?;
    let count: u64 = count
        .replace('_', "")
        .parse()
        .map_err(|e| format!("entries {count:?}: {e}"))?;
    let started = Instant::now();
    let tmp = format!("{out}.tmp");
    let mut writer = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    let verifier = generate::generate(kind, count, &mut writer)?;
    writer.flush()?;
    drop(writer);
    if let Some(pem) = verifier {
        std::fs::write(format!("{out}.verifier.pem"), pem)?;
    }
    std::fs::rename(&tmp, out)?;
    eprintln!(
        "generated {} entries of {} in {:.1}s -> {out}",
        count,
        kind.name(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_manifest: {e}");
            ExitCode::FAILURE
        }
    }
}
