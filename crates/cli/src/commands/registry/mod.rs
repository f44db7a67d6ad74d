//! `thingpress registry`: what the IoT registry holds — a summary of counts, or a check of a
//! manifest's entries against a profile.

mod check;
mod pace;
mod summary;

pub use check::Tally;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use thingpress_importer::TargetClients;
use thingpress_manifest::Supplier;
use thingpress_product::{Decorator, Profile, Target as RegistryTarget};
use thingpress_run::Store;
use thingpress_run::layout::profile_key;

use crate::output::Output;
use crate::progress::Progress;
use crate::target::{Target, TargetArgs};
use pace::{ReadApi, ReadPacer};
use thingpress_budget::{BudgetError, HolderId, Scope};

/// Options of `thingpress registry`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// The registry subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Count things (in all, per thing type, per thing group), certificates (per status) and
    /// policies.
    ///
    /// Lists page by page, paced below the list APIs' quotas (ListThings, ListThingTypes,
    /// ListThingGroups, ListCertificates and ListPolicies 10/s, ListThingsInThingGroup 25/s,
    /// each less the stack's QuotaReserve) and sharing them with running imports and other
    /// registry commands through the stack's budget table. Group counts are direct members.
    Summary(SummaryArgs),
    /// Check that IoT holds, for each entry of a manifest, what the profile says.
    ///
    /// Reads FILE locally as an import would (the profile's supplier, verifiers and slot),
    /// renders each accepted entry's thing name, type, attributes, policies and groups with the
    /// profile, then checks in IoT: the certificate exists and has the profile's status, the
    /// thing exists with the type and attributes, the certificate is attached to the thing,
    /// the policies to the certificate, and the thing is in the groups. Prints only the entries
    /// with problems, then counts; exits 1 if any entry has a problem. Entries the manifest or
    /// the profile rejects are counted, not checked. About five paced calls per entry
    /// (DescribeCertificate, ListThingPrincipals and ListAttachedPolicies 10/s less the stack's
    /// QuotaReserve, so about 9 entries a second at the default quotas), shared with running
    /// imports through the stack's budget table.
    Check(CheckArgs),
}

/// Options of `thingpress registry summary`.
#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// `table`: aligned text; `json`: one JSON object (things, thingsWithoutType,
    /// thingsPerType, thingsPerGroup, certificates, certificatesByStatus, policies).
    #[arg(
        long,
        default_value_t = Output::Table,
        value_parser = Output::only(&[Output::Table, Output::Json])
    )]
    pub output: Output,
    /// Count only the things of this thing type (other types are not listed).
    #[arg(long, value_name = "TYPE")]
    pub thing_type: Option<String>,
    /// Count only the members of this thing group (other groups are not listed).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Multiply the default quota of every API that only `registry` calls by this (quotas
    /// raised in Service Quotas, or the local stack); DescribeCertificate, which imports call
    /// too, takes the stack's quota. The pacing keeps the stack's QuotaReserve of the result.
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    pub quota_scale: f64,
    /// Count in this target instead of the stack's own account and Region: a Region of the
    /// stack's account, or the id of one of --profile's targets (<account>-<region>).
    #[arg(long, value_name = "ID")]
    pub target: Option<String>,
    /// The stored profile whose targets list --target (needed for another account's).
    #[arg(long, value_name = "NAME", requires = "target")]
    pub profile: Option<String>,
}

/// Options of `thingpress registry check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The manifest file (read locally; nothing is uploaded).
    pub file: PathBuf,
    /// The stored profile (profiles/NAME.json in the stack's bucket) the entries were imported
    /// with.
    #[arg(long, value_name = "NAME")]
    pub profile: String,
    /// Read the manifest as this supplier's format instead of the profile's.
    #[arg(long, value_parser = parse_supplier)]
    pub supplier: Option<Supplier>,
    /// `table`: one line per entry with problems, then counts; `jsonl`: one JSON object per
    /// entry with problems ("type":"entry", index, deviceId, certificateId, thingName,
    /// problems[{kind, …}]), then one summary object ("type":"summary").
    #[arg(
        long,
        default_value_t = Output::Table,
        value_parser = Output::only(&[Output::Table, Output::Jsonl])
    )]
    pub output: Output,
    /// Entries looked up at once (each waits for its paced calls).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Multiply the default quota of every API that only `registry` calls by this (quotas
    /// raised in Service Quotas, or the local stack); DescribeCertificate, which imports call
    /// too, takes the stack's quota. The pacing keeps the stack's QuotaReserve of the result.
    #[arg(long, default_value_t = 1.0, value_name = "FACTOR")]
    pub quota_scale: f64,
    /// Check in this one of the profile's targets (its id: the Region, or <account>-<region>)
    /// instead of the stack's own account and Region.
    #[arg(long, value_name = "ID")]
    pub target: Option<String>,
}

fn parse_supplier(s: &str) -> Result<Supplier, String> {
    s.parse()
}

/// Runs the command.
pub async fn run(target: &TargetArgs, args: &Args) -> anyhow::Result<()> {
    match &args.command {
        Command::Summary(args) => run_summary(target, args).await,
        Command::Check(args) => run_check(target, args).await,
    }
}

/// The APIs `registry summary` calls: its lease asks for these only.
const SUMMARY_APIS: [ReadApi; 6] = [
    ReadApi::ListThingTypes,
    ReadApi::ListThings,
    ReadApi::ListThingGroups,
    ReadApi::ListThingsInThingGroup,
    ReadApi::ListCertificates,
    ReadApi::ListPolicies,
];

/// The APIs `registry check` calls: its lease asks for these only.
const CHECK_APIS: [ReadApi; 5] = [
    ReadApi::DescribeCertificate,
    ReadApi::DescribeThing,
    ReadApi::ListThingPrincipals,
    ReadApi::ListAttachedPolicies,
    ReadApi::ListThingGroupsForThing,
];

async fn run_summary(target: &TargetArgs, args: &SummaryArgs) -> anyhow::Result<()> {
    pace::check_scale(args.quota_scale)?;
    let target = Target::resolve(target).await?;
    let filter = summary::Filter {
        thing_type: args.thing_type.clone(),
        group: args.group.clone(),
    };
    let profile = match &args.profile {
        Some(name) => Some(load_profile(&target, name).await?),
        None => None,
    };
    let (iot, scope) = iot_of(&target, args.target.as_deref(), profile.as_ref()).await?;
    let mut pacer = read_pacer(&target, args.quota_scale, &SUMMARY_APIS, scope).await?;
    let progress = Progress::spinner();
    let result = interruptible(summary::summarize(&iot, &pacer, &filter, &progress)).await;
    progress.finish();
    release(&mut pacer).await;
    let summary = result?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.output == Output::Json {
        let json =
            serde_json::to_string_pretty(&summary).context("cannot serialise the summary")?;
        writeln!(out, "{json}").context("cannot write to stdout")?;
    } else {
        summary::write_table(&mut out, &summary, &filter)?;
    }
    out.flush().context("cannot write to stdout")
}

async fn run_check(target: &TargetArgs, args: &CheckArgs) -> anyhow::Result<()> {
    pace::check_scale(args.quota_scale)?;
    let target = Target::resolve(target).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let tally = check_against_profile(&target, args, &mut out).await?;
    out.flush().context("cannot write to stdout")?;
    if tally.with_problems > 0 {
        bail!(
            "{} of {} checked entries of {} do not match profile {} in the registry",
            tally.with_problems,
            tally.checked,
            args.file.display(),
            args.profile
        );
    }
    Ok(())
}

/// `registry check` on a resolved stack (the smoke test calls it too): writes the entries with
/// problems and the counts to `out` and returns the counts; entries with problems are not an
/// error here.
pub(crate) async fn check_against_profile(
    target: &Target,
    args: &CheckArgs,
    out: &mut impl Write,
) -> anyhow::Result<Tally> {
    pace::check_scale(args.quota_scale)?;
    let format = match args.output {
        Output::Jsonl => check::Format::Jsonl,
        _ => check::Format::Table,
    };
    let profile = load_profile(target, &args.profile).await?;
    let mut options = profile
        .manifest_options()
        .with_context(|| format!("profile {}", args.profile))?;
    if let Some(supplier) = args.supplier {
        options.supplier = supplier;
    }
    let decorator = Decorator::new(&profile).map_err(|(error, message)| {
        anyhow::anyhow!("profile {}: {error}: {message}", args.profile)
    })?;

    let (iot, scope) = iot_of(target, args.target.as_deref(), Some(&profile)).await?;
    let mut pacer = read_pacer(target, args.quota_scale, &CHECK_APIS, scope).await?;
    let progress = Progress::spinner();
    let checker = check::Checker {
        iot: &iot,
        pacer: &pacer,
        decorator: &decorator,
    };
    let result = interruptible(check::check(
        &checker,
        &args.file,
        options,
        usize::from(args.concurrency),
        format,
        out,
        &progress,
    ))
    .await;
    progress.finish();
    release(&mut pacer).await;
    let tally = result?;
    check::write_summary(out, format, &args.file, &args.profile, &tally)?;
    Ok(tally)
}

/// A registry command's pacer: a lease on the account-wide budget for `uses` when the stack
/// has a lease table and it answers, so the command shares each quota with running imports;
/// otherwise each API at its cap, said once on stderr.
async fn read_pacer(
    target: &Target,
    scale: f64,
    uses: &[ReadApi],
    scope: Scope,
) -> anyhow::Result<ReadPacer> {
    let (quotas, reserve) = target.pacing()?;
    let mut pacer = ReadPacer::new(scale, &quotas, reserve)?;
    let Some(table) = target.lease_table() else {
        eprintln!(
            "thingpress: warning: the stack names no budget table (BudgetTableName): registry \
             reads are paced at quota × (1 − reserve), not shared with running imports"
        );
        return Ok(pacer);
    };
    let id = HolderId {
        group: format!("cli-{}", uuid::Uuid::new_v4()),
        holder: "cli".to_owned(),
    };
    let lost = |error: &BudgetError| {
        eprintln!(
            "thingpress: warning: {error}: registry reads are paced at quota × (1 − reserve) \
             from now on, not shared with running imports"
        );
    };
    if let Err(error) = pacer.share(table, id, uses, scope, lost).await {
        eprintln!(
            "thingpress: warning: {error}: registry reads are paced at quota × (1 − reserve), \
             not shared with running imports"
        );
    }
    Ok(pacer)
}

/// The IoT client and budget of `--target` (the stack's own account and Region without it): a
/// Region of the stack's account, or one of the profile's targets by id, whose role is assumed.
async fn iot_of(
    target: &Target,
    id: Option<&str>,
    profile: Option<&Profile>,
) -> anyhow::Result<(aws_sdk_iot::Client, Scope)> {
    let Some(id) = id else {
        return Ok((target.iot(), Scope::home()));
    };
    let listed = profile.and_then(|p| p.targets.iter().find(|t| t.id() == id));
    let wanted = match listed {
        Some(t) => t.clone(),
        None if RegistryTarget::home(id).problems(0).is_empty() => RegistryTarget::home(id),
        None => bail!(
            "no target {id:?}: give a Region of the stack's account, or the id of one of the \
             profile's targets{}",
            profile
                .map(|p| {
                    let ids: Vec<String> = p.targets.iter().map(RegistryTarget::id).collect();
                    format!(" ({})", ids.join(", "))
                })
                .unwrap_or_default()
        ),
    };
    let region = target
        .config
        .region()
        .map(ToString::to_string)
        .unwrap_or_default();
    let scope = if wanted.is_home(&region) {
        Scope::home()
    } else {
        Scope::target(&wanted.id())
    };
    let iot = TargetClients::new(&target.config, "thingpress-cli")
        .iot(&wanted)
        .await
        .with_context(|| format!("target {id}"))?;
    Ok((iot, scope))
}

/// `work`, or an error when Ctrl-C comes first (so the lease is given back before exiting).
async fn interruptible<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::select! {
        result = work => result,
        () = ctrl_c() => bail!("interrupted"),
    }
}

/// Resolves on Ctrl-C; never, if the handler cannot be installed.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Gives the budget lease back; if that fails it lapses by itself.
async fn release(pacer: &mut ReadPacer) {
    if let Err(error) = pacer.release().await {
        eprintln!(
            "thingpress: warning: {error}: the budget lease lapses within {} s",
            thingpress_budget::BudgetHolder::TTL.as_secs()
        );
    }
}

/// The stored profile `profiles/<name>.json`, read as Split reads it.
pub async fn load_profile(target: &Target, name: &str) -> anyhow::Result<Profile> {
    let key = profile_key(name)?;
    let store = thingpress_run::S3Store::new(target.s3());
    let body = store.get(&target.bucket, &key).await?.with_context(|| {
        format!(
            "profile {name:?} not found at s3://{}/{key} (store it with thingpress profile put)",
            target.bucket
        )
    })?;
    Profile::from_stored_json(&body, name).with_context(|| format!("s3://{}/{key}", target.bucket))
}
