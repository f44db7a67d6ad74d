//! `thingpress`: check supplier manifests offline, and run and operate imports into AWS IoT Core.

mod commands;
mod follow;
mod output;
mod progress;
mod runs;
mod target;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

use target::TargetArgs;

/// Imports secure-element suppliers' certificate manifests into AWS IoT Core.
///
/// Stack commands find the stack with --stack NAME (a deployed CloudFormation stack), --local
/// (the local stack), or THINGPRESS_BUCKET and THINGPRESS_STATE_MACHINE_ARN.
#[derive(Debug, Parser)]
#[command(name = "thingpress", version, about, long_about)]
struct Cli {
    #[command(flatten)]
    target: TargetArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read a manifest offline: recognise its format, verify every entry, and report what an
    /// import would accept and reject (nothing is sent anywhere).
    Inspect(commands::inspect::Args),
    /// Store, show, list and validate product profiles in the stack's bucket.
    Profile(commands::profile::Args),
    /// Before an import: entries, IoT calls per API, the account's quotas (Service Quotas), the
    /// bottleneck, the ETA and the cost.
    Plan(commands::plan::Args),
    /// Upload a manifest (the upload starts the import) or start the import directly.
    Import(commands::import::Args),
    /// After the import: set the certificates of the devices a shipping list names ACTIVE
    /// (through the state machine, paced and reported like an import).
    Activate(commands::activate::Args),
    /// Undo an import (a run, or a device list): detach, deactivate and delete what Thingpress
    /// made, only things carrying the profile's mark. A dry run unless --execute.
    Decommission(commands::decommission::Args),
    /// Follow a run: chunks and certificates done, rate, ETA; exits non-zero if it fails.
    Watch(commands::watch::Args),
    /// A run's report: counts per outcome and error name, and the rejected entries.
    Report(commands::report::Args),
    /// Resume a failed run where it stopped (Step Functions RedriveExecution).
    Redrive(commands::redrive::Args),
    /// Start a new run over only the chunks (and entries) of a run that did not finish.
    RetryFailed(commands::retry_failed::Args),
    /// What the IoT registry holds: a summary, or a check of a manifest against a profile.
    Registry(commands::registry::Args),
    /// Prove the stack works in this account, end to end, and leave nothing behind.
    ///
    /// Run it after script/deploy (`thingpress --stack NAME smoke`) or on the local stack
    /// (`thingpress --local smoke`). The steps, each reported on stdout as `PASS <step>: <what was
    /// seen>` or `FAIL <step>: <why>`; the first failure ends them:
    ///
    /// certificates: 3 fresh self-signed P-256 certificates in a PEM bundle in a temporary
    /// directory (their keys are never kept).
    ///
    /// setup: a thing group and an IoT policy (one that denies everything) named
    /// thingpress-smoke-<UTC time>-<pid>, and a profile of that name stored in the stack
    /// (supplier pem, certificates ACTIVE, things named after it, in the group, with the policy),
    /// validated like `profile validate`. The stack's AllowedPolicies and AllowedThingGroups must
    /// admit thingpress-smoke-* (their default, thingpress-*, does).
    ///
    /// import: `import --start --wait` of the bundle; passes when the report says 3 registered.
    ///
    /// registry check: `registry check` of the bundle against the profile; passes when every
    /// entry matches.
    ///
    /// decommission: `decommission <import run> --execute --wait`; passes when the report says 3
    /// removed.
    ///
    /// nothing left: IoT answers "not found" for each certificate and each thing.
    ///
    /// cleanup, always, even after a failure or Ctrl-C: when the import's devices were not seen
    /// gone, waits for the test's runs to end and decommissions what is left; then deletes the
    /// thing group, the policy, the profile and the temporary directory. It fails naming
    /// whatever it could not remove. A second Ctrl-C stops it and names what may be left.
    ///
    /// Then `smoke: PASS (7 steps)`, or `smoke: FAIL` and exit 1. The runs' records stay under
    /// runs/ like every run's (expired by the bucket's RunRetentionDays rule). The operator
    /// policy (infra/operator-policy.json) grants what it needs: creating and deleting IoT
    /// policies and thing groups named thingpress-smoke-*, deleting profiles/thingpress-smoke-*.
    Smoke(commands::smoke::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version, and a command group without its subcommand: clap's own output.
        Err(err)
            if !err.use_stderr()
                || err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            err.exit()
        }
        Err(err) => {
            // One line, like every other error: clap's paragraph before the usage, joined.
            let text = err.to_string();
            let message: Vec<&str> = text
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            eprintln!(
                "thingpress: error: {} (see thingpress --help)",
                message.join(" ").trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let target = &cli.target;
    let result = match &cli.command {
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Profile(args) => commands::profile::run(target, args).await,
        Command::Plan(args) => commands::plan::run(target, args).await,
        Command::Import(args) => commands::import::run(target, args).await,
        Command::Activate(args) => commands::activate::run(target, args).await,
        Command::Decommission(args) => commands::decommission::run(target, args).await,
        Command::Watch(args) => commands::watch::run(target, args).await,
        Command::Report(args) => commands::report::run(target, args).await,
        Command::Redrive(args) => commands::redrive::run(target, args).await,
        Command::RetryFailed(args) => commands::retry_failed::run(target, args).await,
        Command::Registry(args) => commands::registry::run(target, args).await,
        Command::Smoke(args) => commands::smoke::run(target, args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout stopped early (`| head`): it has what it wanted.
        Err(err) if output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the context chain joined, so scripts can grep it.
            eprintln!("thingpress: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
