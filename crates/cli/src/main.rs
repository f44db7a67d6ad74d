//! `thingpress`: check supplier manifests offline, and run and operate imports into AWS IoT Core.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Imports secure-element suppliers' certificate manifests into AWS IoT Core.
#[derive(Debug, Parser)]
#[command(name = "thingpress", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read a manifest offline: recognise its format, verify every entry, and report what an
    /// import would accept and reject (nothing is sent anywhere).
    Inspect(commands::inspect::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => commands::inspect::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the context chain joined, so scripts can grep it.
            eprintln!("thingpress: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
