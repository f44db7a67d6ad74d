//! `thingpress import`: upload a manifest under `incoming/<profile>/` (the stack's S3 trigger
//! starts the run) and find the execution the upload started, or, with `--start`, start the
//! execution directly with the console input; `--wait` then follows it like `watch`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use serde_json::{Value, json};
use thingpress_run::RunLayout;
use thingpress_run::layout::{incoming_key, profile_key};
use thingpress_run::payload::{ConsoleInput, ManifestObject, Operation, ProfileRef};
use thingpress_run::resolve::execution_name;
use thingpress_run::{S3Store, Store};

use crate::commands::plan;
use crate::follow::follow;
use crate::output::outln;
use crate::target::{Target, TargetArgs, sdk_message};

/// Executions that started this long before the upload cannot be its run (allows clock skew).
const CLOCK_SLACK_SECONDS: i64 = 300;

/// Options of `thingpress import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifest file.
    pub file: PathBuf,
    /// The stored product profile to import with (see `thingpress profile list`).
    #[arg(long)]
    pub profile: String,
    /// Start the execution directly (StartExecution with the console input) instead of letting
    /// the upload under incoming/<profile>/ trigger it; the manifest goes to
    /// runs/<run>/manifest/<file name>.
    #[arg(long)]
    pub start: bool,
    /// Import even if this manifest object was already claimed by another run (with --start).
    #[arg(long, requires = "start")]
    pub force: bool,
    /// The run id (execution name) for --start; default: the file name and the UTC time.
    #[arg(long = "name", value_name = "RUN", requires = "start")]
    pub name: Option<String>,
    /// Follow the run until it ends, like `thingpress watch`; exit non-zero if it fails.
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait for the upload's execution to appear (without --start).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
    /// Seconds between progress lines with --wait when stderr is not a terminal.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,
    /// Do not print the plan (`thingpress plan`) before uploading: it reads the whole manifest
    /// here first.
    #[arg(long)]
    pub no_plan: bool,
}

/// Runs the command.
pub async fn run(target: &TargetArgs, args: &Args) -> Result<()> {
    let file_name = file_name(&args.file)?;
    let profile_object = profile_key(&args.profile)?;
    let run_id = match &args.name {
        Some(name) => name.clone(),
        None => run_name(&file_name, SystemTime::now()),
    };
    let run = if args.start {
        Some(RunLayout::new(&run_id).context("--name")?)
    } else {
        None
    };
    let target = Target::resolve(target).await?;
    require_profile(&target, &args.profile, &profile_object).await?;
    if !args.no_plan {
        print_plan(&target, &args.file, &args.profile).await;
    }

    let arn = if let Some(run) = run {
        let started = Started {
            run: &run,
            file: &args.file,
            file_name: &file_name,
            profile: &args.profile,
            force: args.force,
            operation: Operation::Import,
        };
        started.upload_and_start(&target).await?
    } else {
        let key = incoming_key(&args.profile, &file_name);
        let since = SystemTime::now();
        let earlier = recent_executions(&target.sfn(), &target.state_machine_arn, since)
            .await?
            .into_iter()
            .collect();
        let uploaded = upload(&target.s3(), &target.bucket, &key, &args.file).await?;
        outln!(
            "uploaded {} to {}",
            args.file.display(),
            uploaded.describe()
        )?;
        find_started(
            &target.sfn(),
            &target.state_machine_arn,
            &uploaded,
            since,
            earlier,
            Duration::from_secs(args.timeout),
        )
        .await?
    };
    outln!("run {}", execution_name(&arn))?;
    outln!("execution {arn}")?;
    if args.wait {
        follow(&target, &arn, Duration::from_secs(args.interval)).await?;
    }
    Ok(())
}

/// The name of the file to upload, which must exist.
pub(crate) fn file_name(file: &Path) -> Result<String> {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: not a file name", file.display()))?
        .to_owned();
    if !file.is_file() {
        bail!("{}: no such file", file.display());
    }
    Ok(name)
}

/// A run started directly: its file uploaded to `runs/<run>/manifest/<file name>`, then
/// StartExecution with the console input (`import --start`, `activate`).
pub(crate) struct Started<'a> {
    pub run: &'a RunLayout,
    pub file: &'a Path,
    pub file_name: &'a str,
    pub profile: &'a str,
    pub force: bool,
    pub operation: Operation,
}

impl Started<'_> {
    /// Uploads the file, starts the execution; its ARN.
    pub(crate) async fn upload_and_start(&self, target: &Target) -> Result<String> {
        let key = self.run.manifest(self.file_name);
        let uploaded = upload(&target.s3(), &target.bucket, &key, self.file).await?;
        outln!(
            "uploaded {} to {}",
            self.file.display(),
            uploaded.describe()
        )?;
        let input = console_input(
            &target.bucket,
            &key,
            self.profile,
            self.force,
            self.operation,
        );
        start(
            &target.sfn(),
            &target.state_machine_arn,
            self.run.run_id(),
            &input,
        )
        .await
    }
}

/// Fails unless the stack holds the profile (at `object`, its key).
pub(crate) async fn require_profile(target: &Target, profile: &str, object: &str) -> Result<()> {
    let store = S3Store::new(target.s3());
    if store.head(&target.bucket, object).await?.is_none() {
        bail!(
            "no profile {profile:?} in the stack (s3://{}/{object}); store it with thingpress \
             profile put",
            target.bucket
        );
    }
    Ok(())
}

/// The plan on stderr (stdout keeps the lines scripts read: uploaded, run, execution). A plan
/// that cannot be made is a warning, not a failure: Split is the judge of the manifest.
async fn print_plan(target: &Target, file: &Path, profile: &str) {
    let mut text = Vec::new();
    let made = match plan::make(target, file, profile).await {
        Ok(plan) => plan::write_table(&mut text, &plan),
        Err(e) => Err(e),
    };
    match made {
        Ok(()) => eprint!("{}", String::from_utf8_lossy(&text)),
        Err(e) => eprintln!("thingpress: warning: no plan: {e:#}"),
    }
}

/// An uploaded manifest object.
#[derive(Debug, Clone, PartialEq)]
pub struct Uploaded {
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// The ETag, quotes removed.
    pub etag: String,
    /// The version id, on a versioned bucket.
    pub version_id: Option<String>,
}

impl Uploaded {
    fn describe(&self) -> String {
        format!("s3://{}/{} (ETag {})", self.bucket, self.key, self.etag)
    }
}

/// Uploads the file (streamed from disk).
pub(crate) async fn upload(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    file: &Path,
) -> Result<Uploaded> {
    let body = ByteStream::from_path(file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?;
    let out = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("uploading to s3://{bucket}/{key}: {}", sdk_message(&e)))?;
    Ok(Uploaded {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        etag: out.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
        version_id: out.version_id().map(str::to_owned),
    })
}

/// The input Split reads when an execution is started by hand (console or CLI).
pub fn console_input(
    bucket: &str,
    key: &str,
    profile: &str,
    force: bool,
    operation: Operation,
) -> Value {
    serde_json::to_value(ConsoleInput {
        manifest: ManifestObject {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        },
        operation,
        profile: Some(ProfileRef::Named(profile.to_owned())),
        force: Some(force),
    })
    .unwrap_or_else(|_| json!({}))
}

/// A run id from the file name and the time: `<stem>-<YYYYMMDDTHHMMSSZ>`, only characters an
/// execution name and an S3 key segment allow, at most 80.
pub fn run_name(file_name: &str, now: SystemTime) -> String {
    let stem = file_name.split('.').next().unwrap_or_default();
    let mut cleaned = String::new();
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '-'
        };
        if !(c == '-' && cleaned.ends_with('-')) {
            cleaned.push(c);
        }
    }
    let stamp: String = DateTime::from(now)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let stem: String = cleaned.trim_matches('-').chars().take(60).collect();
    if stem.is_empty() {
        format!("import-{stamp}")
    } else {
        format!("{stem}-{stamp}")
    }
}

/// Starts the run; its ARN.
async fn start(
    sfn: &aws_sdk_sfn::Client,
    state_machine: &str,
    run_id: &str,
    input: &Value,
) -> Result<String> {
    let out = sfn
        .start_execution()
        .state_machine_arn(state_machine)
        .name(run_id)
        .input(input.to_string())
        .send()
        .await
        .map_err(|e| {
            let already = e
                .as_service_error()
                .is_some_and(|s| s.is_execution_already_exists());
            if already {
                anyhow::anyhow!("an execution named {run_id} already exists; pass another --name")
            } else {
                anyhow::anyhow!("starting {run_id} on {state_machine}: {}", sdk_message(&e))
            }
        })?;
    Ok(out.execution_arn().to_owned())
}

/// Whether an execution's input is the EventBridge "Object Created" event of this upload.
pub fn started_by(input: &Value, uploaded: &Uploaded) -> bool {
    let at = |pointer: &str| input.pointer(pointer).and_then(Value::as_str);
    let same_version = match (&uploaded.version_id, at("/detail/object/version-id")) {
        (Some(ours), Some(theirs)) => ours == theirs,
        _ => true,
    };
    at("/detail-type") == Some("Object Created")
        && at("/detail/bucket/name") == Some(uploaded.bucket.as_str())
        && at("/detail/object/key") == Some(uploaded.key.as_str())
        && at("/detail/object/etag").map(|e| e.trim_matches('"')) == Some(uploaded.etag.as_str())
        && same_version
}

/// The executions started since shortly before `since` (newest first, across pages).
pub async fn recent_executions(
    sfn: &aws_sdk_sfn::Client,
    state_machine: &str,
    since: SystemTime,
) -> Result<Vec<String>> {
    let oldest = DateTime::from(since).secs() - CLOCK_SLACK_SECONDS;
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let page = sfn
            .list_executions()
            .state_machine_arn(state_machine)
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("listing executions of {state_machine}: {}", sdk_message(&e))
            })?;
        for execution in page.executions() {
            if execution.start_date().secs() < oldest {
                return Ok(found);
            }
            found.push(execution.execution_arn().to_owned());
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => return Ok(found),
        }
    }
}

/// The execution the upload's event started: of the executions started since `since` and not
/// in `earlier` (those listed before the upload: an earlier upload of the same bytes carries the
/// same event), each is described once, until one's input is this upload's event or the
/// timeout passes.
pub async fn find_started(
    sfn: &aws_sdk_sfn::Client,
    state_machine: &str,
    uploaded: &Uploaded,
    since: SystemTime,
    earlier: HashSet<String>,
    timeout: Duration,
) -> Result<String> {
    let started = Instant::now();
    let mut seen = earlier;
    loop {
        for arn in recent_executions(sfn, state_machine, since).await? {
            if !seen.insert(arn.clone()) {
                continue;
            }
            let described = sfn
                .describe_execution()
                .execution_arn(&arn)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("describing {arn}: {}", sdk_message(&e)))?;
            let input: Value = described
                .input()
                .and_then(|i| serde_json::from_str(i).ok())
                .unwrap_or(Value::Null);
            if started_by(&input, uploaded) {
                return Ok(arn);
            }
        }
        if started.elapsed() >= timeout {
            bail!(
                "no execution of {state_machine} started for s3://{}/{} (ETag {}) within {} s: is \
                 the stack's S3 trigger (EventBridge rule) enabled? The upload stays; start the \
                 import directly with --start",
                uploaded.bucket,
                uploaded.key,
                uploaded.etag,
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
    use aws_sdk_sfn::operation::list_executions::ListExecutionsOutput;
    use aws_sdk_sfn::types::{ExecutionListItem, ExecutionStatus};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    const MACHINE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:tp";

    fn uploaded() -> Uploaded {
        Uploaded {
            bucket: "b".into(),
            key: "incoming/p/reel.pem".into(),
            etag: "abc".into(),
            version_id: None,
        }
    }

    fn event(key: &str, etag: &str) -> Value {
        json!({"detail-type": "Object Created", "source": "aws.s3",
               "detail": {"bucket": {"name": "b"}, "object": {"key": key, "etag": etag, "size": 3}}})
    }

    #[test]
    fn an_execution_matches_only_the_event_of_this_upload() {
        let ours = uploaded();
        assert!(started_by(&event("incoming/p/reel.pem", "abc"), &ours));
        assert!(started_by(&event("incoming/p/reel.pem", "\"abc\""), &ours));
        assert!(!started_by(&event("incoming/p/reel.pem", "old"), &ours));
        assert!(!started_by(&event("incoming/p/other.pem", "abc"), &ours));
        let console = console_input("b", "incoming/p/reel.pem", "p", false, Operation::Import);
        assert!(!started_by(&console, &ours));
        let mut versioned = ours.clone();
        versioned.version_id = Some("v2".into());
        let mut with_version = event("incoming/p/reel.pem", "abc");
        with_version["detail"]["object"]["version-id"] = json!("v1");
        assert!(!started_by(&with_version, &versioned));
        with_version["detail"]["object"]["version-id"] = json!("v2");
        assert!(started_by(&with_version, &versioned));
    }

    #[test]
    fn run_names_are_valid_execution_names() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let name = run_name("ECC608C TNGTLSU (B).json", t);
        assert_eq!(name, "ECC608C-TNGTLSU-B-20261118T110640Z");
        assert!(RunLayout::new(&name).is_ok());
        assert_eq!(run_name(".json", t), "import-20261118T110640Z");
        let long = run_name(&"x".repeat(300), t);
        assert!(RunLayout::new(&long).is_ok(), "{long}");
        assert_eq!(
            console_input("b", "k", "p", true, Operation::Import),
            json!({"manifest": {"bucket": "b", "key": "k"}, "profile": "p", "force": true})
        );
    }

    fn item(name: &str, secs: i64) -> ExecutionListItem {
        ExecutionListItem::builder()
            .execution_arn(format!("{MACHINE}:{name}").replace(":stateMachine:", ":execution:"))
            .state_machine_arn(MACHINE)
            .name(name)
            .status(ExecutionStatus::Running)
            .start_date(aws_sdk_sfn::primitives::DateTime::from_secs(secs))
            .build()
            .unwrap()
    }

    fn described(name: &str, input: Value) -> DescribeExecutionOutput {
        DescribeExecutionOutput::builder()
            .execution_arn(format!(
                "arn:aws:states:us-east-1:123456789012:execution:tp:{name}"
            ))
            .state_machine_arn(MACHINE)
            .status(ExecutionStatus::Running)
            .start_date(aws_sdk_sfn::primitives::DateTime::from_secs(0))
            .input(input.to_string())
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn finds_the_execution_whose_event_is_the_upload() {
        let now = 1_795_000_000;
        let list = mock!(aws_sdk_sfn::Client::list_executions).then_output(move || {
            ListExecutionsOutput::builder()
                .set_executions(Some(vec![
                    item("newer-console-run", now + 5),
                    item("ours", now + 2),
                    item("ancient", now - 3600),
                ]))
                .build()
                .unwrap()
        });
        let console = mock!(aws_sdk_sfn::Client::describe_execution)
            .match_requests(|r| {
                r.execution_arn()
                    .is_some_and(|a| a.ends_with(":newer-console-run"))
            })
            .then_output(|| {
                described(
                    "newer-console-run",
                    console_input("b", "k", "p", false, Operation::Import),
                )
            });
        let ours = mock!(aws_sdk_sfn::Client::describe_execution)
            .match_requests(|r| r.execution_arn().is_some_and(|a| a.ends_with(":ours")))
            .then_output(|| described("ours", event("incoming/p/reel.pem", "abc")));
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&list, &console, &ours]);
        let since = SystemTime::UNIX_EPOCH + Duration::from_secs(now as u64);
        let arn = find_started(
            &sfn,
            MACHINE,
            &uploaded(),
            since,
            HashSet::new(),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        assert!(arn.ends_with(":ours"), "{arn}");
        // The ancient execution is never described (its start is before the upload).
        assert_eq!(console.num_calls() + ours.num_calls(), 2);

        let mut other = uploaded();
        other.etag = "different".into();
        let err = find_started(
            &sfn,
            MACHINE,
            &other,
            since,
            HashSet::new(),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("no execution") && err.contains("--start"),
            "{err}"
        );

        // An execution listed before the upload (an earlier upload of the same bytes) is not ours.
        let described_before = ours.num_calls();
        let ours_arn = format!("{MACHINE}:ours").replace(":stateMachine:", ":execution:");
        let err = find_started(
            &sfn,
            MACHINE,
            &uploaded(),
            since,
            [ours_arn].into(),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("no execution"), "{err}");
        assert_eq!(ours.num_calls(), described_before);
    }
}
