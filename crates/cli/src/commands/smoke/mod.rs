//! `thingpress smoke`: after a deploy, one command that proves the stack works in this account
//! and leaves nothing behind. It runs what an operator would, in process — `profile put`,
//! `import --start --wait`, `registry check`, `decommission --execute --wait` — on three fresh
//! certificates and throwaway resources, prints a verdict per step, and always cleans up.

mod bundle;
mod gone;
mod steps;
mod throwaway;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use thingpress_product::Profile;
use thingpress_run::payload::Operation;
use thingpress_run::report::Report;
use thingpress_run::{RunLayout, RunStore, S3Store};

use crate::commands::device_list::RunArgs;
use crate::commands::import::{Started, file_name};
use crate::commands::registry::CheckArgs;
use crate::commands::{decommission, profile, registry};
use crate::follow::follow;
use crate::output::{Output, outln};
use crate::runs;
use crate::target::{Target, TargetArgs};
use bundle::Bundle;
use steps::Steps;
use throwaway::Names;

/// Certificates the smoke test imports: more than one, so a chunk holds several entries, and
/// few, so it takes seconds at any quota.
const CERTIFICATES: usize = 3;

/// How long cleanup waits for a run the smoke test started to end before undoing what it made.
const RUN_END_WAIT: Duration = Duration::from_secs(600);

/// The cleanup step's name (it follows the others whatever happened).
const CLEANUP: &str = "cleanup";

/// Options of `thingpress smoke`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds between the runs' progress lines (stderr) when stderr is not a terminal.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,
}

/// The steps, in order; the first that fails ends them, and cleanup follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Certificates,
    Setup,
    Import,
    RegistryCheck,
    Decommission,
    NothingLeft,
}

impl Step {
    const ALL: [Step; 6] = [
        Step::Certificates,
        Step::Setup,
        Step::Import,
        Step::RegistryCheck,
        Step::Decommission,
        Step::NothingLeft,
    ];

    fn name(self) -> &'static str {
        match self {
            Step::Certificates => "certificates",
            Step::Setup => "setup",
            Step::Import => "import",
            Step::RegistryCheck => "registry check",
            Step::Decommission => "decommission",
            Step::NothingLeft => "nothing left",
        }
    }
}

/// Runs the command.
pub async fn run(target: &TargetArgs, args: &Args) -> Result<()> {
    let target = Target::resolve(target).await?;
    let names = Names::new(SystemTime::now(), std::process::id());
    outln!(
        "smoke test {} on s3://{} and {}",
        names.tag(),
        target.bucket,
        target.state_machine_arn
    )?;
    let mut smoke = Smoke {
        target,
        profile_json: names.profile_json().to_string().into_bytes(),
        names,
        interval: Duration::from_secs(args.interval),
        current: None,
        made: Made::default(),
    };
    let mut steps = Steps::new(std::io::stdout());

    let finished = tokio::select! {
        () = smoke.run_steps(&mut steps) => true,
        () = ctrl_c() => false,
    };
    if !finished {
        // Between steps nothing runs, so a step is always current here; "smoke" just in case.
        let step = smoke.current.map_or("smoke", Step::name);
        steps.fail(step, "interrupted (Ctrl-C)");
        eprintln!("thingpress: cleaning up (Ctrl-C again stops that and names what may be left)");
    }
    let cleaned = tokio::select! {
        result = smoke.clean_up() => Some(result),
        () = ctrl_c() => None,
    };
    match cleaned {
        Some(result) => {
            steps.record(CLEANUP, result);
        }
        None => steps.fail(
            CLEANUP,
            &format!(
                "interrupted (Ctrl-C); may be left: {}",
                smoke.what_may_be_left()
            ),
        ),
    }
    steps.finish()
}

/// Resolves on Ctrl-C; never, if the handler cannot be installed.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One smoke test: the stack, its names, and what it has made so far.
struct Smoke {
    target: Target,
    names: Names,
    /// The throwaway profile, as stored.
    profile_json: Vec<u8>,
    interval: Duration,
    /// The step running now (named if Ctrl-C stops it).
    current: Option<Step>,
    made: Made,
}

/// What cleanup has to undo. Each flag is set as soon as the thing may exist.
#[derive(Debug, Default)]
struct Made {
    dir: Option<PathBuf>,
    bundle: Option<Bundle>,
    group: bool,
    policy: bool,
    profile: bool,
    /// Runs started (execution names): cleanup waits for each to end.
    runs: Vec<String>,
    /// The import's run, once started.
    import: Option<String>,
    /// A decommission of the import's devices ran to its end.
    decommissioned: bool,
    /// The nothing-left step saw every certificate and thing gone.
    verified_gone: bool,
}

impl Smoke {
    /// Runs the steps until one fails, printing each verdict.
    async fn run_steps(&mut self, steps: &mut Steps<impl Write>) {
        for step in Step::ALL {
            self.current = Some(step);
            let result = match step {
                Step::Certificates => self.generate_certificates(),
                Step::Setup => self.set_up().await,
                Step::Import => self.import().await,
                Step::RegistryCheck => self.check_registry().await,
                Step::Decommission => self.decommission().await,
                Step::NothingLeft => self.nothing_left().await,
            };
            self.current = None;
            if !steps.record(step.name(), result) {
                return;
            }
        }
    }

    /// The certificates, in a directory of their own.
    fn generate_certificates(&mut self) -> Result<String> {
        let dir = std::env::temp_dir().join(self.names.tag());
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        self.made.dir = Some(dir.clone());
        let bundle = bundle::write(&dir, &self.profile()?, CERTIFICATES)?;
        let seen = format!(
            "{CERTIFICATES} self-signed P-256 certificates in {}",
            bundle.file.display()
        );
        self.made.bundle = Some(bundle);
        Ok(seen)
    }

    /// The thing group, the policy and the profile; the profile validated as `profile validate`
    /// does (allow-list, and every resource it names exists).
    async fn set_up(&mut self) -> Result<String> {
        let tag = self.names.tag().to_owned();
        let allow = self.target.allow_list()?;
        // Checked first, so that a stack that would refuse the profile gets nothing created.
        if let Some(allow) = &allow {
            let refused = allow.problems(std::slice::from_ref(&tag), std::slice::from_ref(&tag));
            if !refused.is_empty() {
                bail!(
                    "{}: the stack's AllowedPolicies and AllowedThingGroups must admit {}*",
                    refused.join("; "),
                    throwaway::PREFIX
                );
            }
        }
        let iot = self.target.iot();
        throwaway::create_thing_group(&iot, &tag).await?;
        self.made.group = true;
        throwaway::create_policy(&iot, &tag).await?;
        self.made.policy = true;
        // Counted as made before the put: a put whose answer was lost may have stored it, and
        // deleting an absent key is no error.
        self.made.profile = true;
        let store = S3Store::new(self.target.s3());
        let stored = profile::store_checked(
            &store,
            &self.target.bucket,
            self.profile_json.clone(),
            None,
            "the smoke test's profile",
        )
        .await?;
        // The smoke test's profile has no targets: the stack's own account and Region.
        let own = thingpress_importer::TargetClients::fixed(iot);
        let problems = profile::validate(&own, "", allow.as_ref(), Ok(stored)).await?;
        if !problems.is_empty() {
            bail!("profile {tag}: {}", problems.join("; "));
        }
        Ok(format!(
            "thing group, IoT policy and profile {tag} (profile valid)"
        ))
    }

    /// `import --start --wait`: every certificate registered.
    async fn import(&mut self) -> Result<String> {
        let file = self.bundle()?.file.clone();
        let run = RunLayout::new(&self.names.run("import")).context("the import's run id")?;
        let file_name = file_name(&file)?;
        let started = Started {
            run: &run,
            file: &file,
            file_name: &file_name,
            profile: self.names.tag(),
            force: false,
            operation: Operation::Import,
        };
        // Recorded before starting: a run may exist even if the answer to StartExecution is lost.
        self.made.runs.push(run.run_id().to_owned());
        self.made.import = Some(run.run_id().to_owned());
        let arn = started.upload_and_start(&self.target).await?;
        follow(&self.target, &arn, self.interval).await?;
        let report = self.report(&run).await?;
        let o = &report.outcomes;
        if o.registered != CERTIFICATES as u64 {
            bail!(
                "run {}: {} of {CERTIFICATES} registered, {} already registered, {} rejected{}",
                run.run_id(),
                o.registered,
                o.already_registered,
                o.rejected,
                rejection_names(&report)
            );
        }
        Ok(format!(
            "run {}: {CERTIFICATES} of {CERTIFICATES} registered",
            run.run_id()
        ))
    }

    /// `registry check` of the bundle against the profile: every entry as the profile says.
    async fn check_registry(&mut self) -> Result<String> {
        let tag = self.names.tag();
        let args = CheckArgs {
            file: self.bundle()?.file.clone(),
            profile: tag.to_owned(),
            supplier: None,
            output: Output::Table,
            concurrency: 4,
            quota_scale: 1.0,
            target: None,
        };
        let tally =
            registry::check_against_profile(&self.target, &args, &mut std::io::stdout()).await?;
        let all = CERTIFICATES as u64;
        if tally.entries != all || tally.ok != all {
            bail!(
                "{} of {all} entries match profile {tag}: {} with problems (listed above), {} \
                 rejected by the manifest, {} by the profile",
                tally.ok,
                tally.with_problems,
                tally.rejected_by_manifest.values().sum::<u64>(),
                tally.rejected_by_profile.values().sum::<u64>()
            );
        }
        Ok(format!("{all} of {all} entries match profile {tag}"))
    }

    /// `decommission RUN --execute --wait` of the import: every device removed.
    async fn decommission(&mut self) -> Result<String> {
        let import = self.made.import.clone().context("no import ran")?;
        let name = self.names.run("decommission");
        self.remove_devices(&import, &name).await?;
        let report = self.report(&RunLayout::new(&name)?).await?;
        let o = &report.outcomes;
        if o.removed != CERTIFICATES as u64 {
            bail!(
                "run {name}: {} of {CERTIFICATES} removed, {} already removed, {} rejected{}",
                o.removed,
                o.already_removed,
                o.rejected,
                rejection_names(&report)
            );
        }
        Ok(format!(
            "run {name}: {CERTIFICATES} of {CERTIFICATES} removed"
        ))
    }

    /// IoT answers "not found" for every certificate and thing.
    async fn nothing_left(&mut self) -> Result<String> {
        let left = gone::still_there(&self.target.iot(), &self.bundle()?.devices).await?;
        if !left.is_empty() {
            bail!("IoT still holds {}", left.join(", "));
        }
        self.made.verified_gone = true;
        Ok(format!(
            "none of the {CERTIFICATES} certificates and {CERTIFICATES} things exists"
        ))
    }

    /// Undoes whatever was made, as far as it can; an error lists what it could not undo.
    async fn clean_up(&mut self) -> Result<String> {
        let mut done = Vec::new();
        let mut problems = Vec::new();
        self.undo_import(&mut done, &mut problems).await;
        let tag = self.names.tag().to_owned();
        let iot = self.target.iot();
        let mut deleted = Vec::new();
        if self.made.group {
            match throwaway::delete_thing_group(&iot, &tag).await {
                Ok(()) => {
                    self.made.group = false;
                    deleted.push("thing group");
                }
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
        if self.made.policy {
            match throwaway::delete_policy(&iot, &tag).await {
                Ok(()) => {
                    self.made.policy = false;
                    deleted.push("IoT policy");
                }
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
        if self.made.profile {
            let store = S3Store::new(self.target.s3());
            match throwaway::delete_profile(&store, &self.target.bucket, &tag).await {
                Ok(()) => {
                    self.made.profile = false;
                    deleted.push("profile");
                }
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
        if !deleted.is_empty() {
            done.push(format!("deleted {} {tag}", and_list(&deleted)));
        }
        if let Some(dir) = self.made.dir.take() {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => done.push(format!("removed {}", dir.display())),
                Err(e) => problems.push(format!("cannot remove {}: {e}", dir.display())),
            }
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        if done.is_empty() {
            return Ok("nothing to undo".to_owned());
        }
        Ok(done.join("; "))
    }

    /// When the steps stopped before seeing the import undone: waits for the test's runs to
    /// end, decommissions what the import left in IoT (unless a decommission already ran to its
    /// end), and names whatever is still there.
    async fn undo_import(&mut self, done: &mut Vec<String>, problems: &mut Vec<String>) {
        let Some(import) = self.made.import.clone() else {
            return;
        };
        if self.made.verified_gone {
            return;
        }
        for run in self.made.runs.clone() {
            if let Err(e) = wait_until_ended(&self.target, &run).await {
                problems.push(format!("{e:#}"));
            }
        }
        let mut left = match self.left_in_iot().await {
            Ok(left) => left,
            Err(e) => return problems.push(format!("{e:#}")),
        };
        if !left.is_empty() && !self.made.decommissioned {
            let name = self.names.run(CLEANUP);
            match self.remove_devices(&import, &name).await {
                Ok(()) => done.push(format!(
                    "decommissioned what run {import} left (run {name})"
                )),
                Err(e) => problems.push(format!("decommissioning what run {import} left: {e:#}")),
            }
            left = match self.left_in_iot().await {
                Ok(left) => left,
                Err(e) => return problems.push(format!("{e:#}")),
            };
        }
        if !left.is_empty() {
            problems.push(format!("left in IoT: {}", left.join(", ")));
        }
    }

    /// Decommissions, for real and waiting for its end, every device run `import` registered.
    async fn remove_devices(&mut self, import: &str, name: &str) -> Result<()> {
        let args = decommission::Args {
            source: import.to_owned(),
            profile: self.names.tag().to_owned(),
            execute: true,
            run: RunArgs {
                name: Some(name.to_owned()),
                wait: true,
                interval: self.interval.as_secs(),
            },
        };
        self.made.runs.push(name.to_owned());
        decommission::decommission(&self.target, &args).await?;
        self.made.decommissioned = true;
        Ok(())
    }

    /// The test's certificates and things IoT still holds.
    async fn left_in_iot(&self) -> Result<Vec<String>> {
        gone::still_there(&self.target.iot(), &self.bundle()?.devices).await
    }

    /// What an interrupted cleanup may have left, for the FAIL line.
    fn what_may_be_left(&self) -> String {
        let tag = self.names.tag();
        let mut left = Vec::new();
        if let Some(import) = &self.made.import
            && !self.made.verified_gone
        {
            left.push(format!(
                "the devices of run {import} (thingpress decommission {import} --profile {tag} \
                 --execute)"
            ));
        }
        if self.made.group {
            left.push(format!("thing group {tag}"));
        }
        if self.made.policy {
            left.push(format!("IoT policy {tag}"));
        }
        if self.made.profile {
            left.push(format!("profile {tag}"));
        }
        if let Some(dir) = &self.made.dir {
            left.push(dir.display().to_string());
        }
        if left.is_empty() {
            "nothing".to_owned()
        } else {
            left.join(", ")
        }
    }

    fn profile(&self) -> Result<Profile> {
        Profile::from_json(&self.profile_json).map_err(|e| anyhow!("the smoke test's profile: {e}"))
    }

    fn bundle(&self) -> Result<&Bundle> {
        self.made
            .bundle
            .as_ref()
            .context("no certificates were generated")
    }

    /// A finished run's report.
    async fn report(&self, run: &RunLayout) -> Result<Report> {
        let store = S3Store::new(self.target.s3());
        let runs = RunStore::new(store, &self.target.bucket, run.clone());
        runs.report().await?.with_context(|| {
            format!(
                "run {} has no report (s3://{}/{})",
                run.run_id(),
                self.target.bucket,
                run.report()
            )
        })
    }
}

/// Waits (at most [`RUN_END_WAIT`]) for a run the test started to end; a run Step Functions does
/// not know has ended (it never started).
async fn wait_until_ended(target: &Target, run: &str) -> Result<()> {
    let arn = target.execution_arn(run);
    let sfn = target.sfn();
    let started = Instant::now();
    while let Some(status) = runs::execution_status(&sfn, &arn).await? {
        if !runs::is_active(&status) {
            return Ok(());
        }
        if started.elapsed() >= RUN_END_WAIT {
            bail!(
                "run {run} is still {} after {} s",
                status.as_str(),
                RUN_END_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}

/// `: Thingpress.X 1, Thingpress.Y 2` for a report with rejections, else nothing.
fn rejection_names(report: &Report) -> String {
    let by_error = &report.outcomes.rejected_by_error;
    if by_error.is_empty() {
        return String::new();
    }
    let names: Vec<String> = by_error
        .iter()
        .map(|(error, n)| format!("{} {n}", error.as_str()))
        .collect();
    format!(": {}", names.join(", "))
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_names_are_distinct_and_cleanup_comes_last() {
        let names: std::collections::BTreeSet<&str> = Step::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), Step::ALL.len());
        assert!(!names.contains(CLEANUP));
        assert_eq!(and_list(&["thing group"]), "thing group");
        assert_eq!(
            and_list(&["thing group", "IoT policy", "profile"]),
            "thing group, IoT policy and profile"
        );
    }
}
