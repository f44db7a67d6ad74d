//! `thingpress profile put|get|list|validate`: product profiles stored as
//! `profiles/<name>.json` in the stack's bucket.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use thingpress_importer::{ImportError, TargetClients, check_profile_resources};
use thingpress_product::{Profile, ProfileError};
use thingpress_run::layout::{PROFILES_PREFIX, profile_key, profile_of_key};
use thingpress_run::{AllowList, S3Store, Store};

use crate::output::outln;
use crate::target::{Target, TargetArgs};

/// Options of `thingpress profile`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// The profile subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check a profile file and store it as profiles/<name>.json in the stack's bucket
    /// (replacing a stored profile of that name).
    Put {
        /// The profile JSON file.
        file: PathBuf,
        /// The name to store it under; the file's `name` field must be absent or equal.
        /// Default: the file's `name` field.
        #[arg(long)]
        name: Option<String>,
    },
    /// Print a stored profile's JSON as stored.
    Get {
        /// The profile's name.
        name: String,
    },
    /// List the names of the stored profiles, one per line.
    List,
    /// Check a profile: its fields, that its verifier certificates load, and that the thing
    /// type, thing groups and policies it names exist in the IoT registry. Prints one line per
    /// problem and exits 1 if there is any.
    Validate {
        /// A stored profile's name.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        name: Option<String>,
        /// A profile JSON file instead of a stored profile.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

/// Runs the command.
pub async fn run(target: &TargetArgs, args: &Args) -> Result<()> {
    let target = Target::resolve(target).await?;
    let store = S3Store::new(target.s3());
    match &args.command {
        Command::Put { file, name } => put(&store, &target.bucket, file, name.as_deref()).await,
        Command::Get { name } => {
            let body = get(&store, &target.bucket, name).await?;
            let text = String::from_utf8_lossy(&body);
            outln!("{}", text.trim_end())?;
            Ok(())
        }
        Command::List => {
            for name in list(&store, &target.bucket).await? {
                outln!("{name}")?;
            }
            Ok(())
        }
        Command::Validate { name, file } => {
            let (label, loaded) = match (name, file) {
                (_, Some(file)) => (file.display().to_string(), parse_file(file)),
                (Some(name), None) => {
                    let body = get(&store, &target.bucket, name).await?;
                    (
                        format!("profile {name}"),
                        Profile::from_stored_json(&body, name),
                    )
                }
                (None, None) => bail!("name a stored profile or give --file FILE"),
            };
            let checked = loaded.as_ref().ok().map(what_was_checked);
            let allow = target.allow_list()?;
            let iot = TargetClients::new(&target.config, "thingpress-cli");
            let region = target
                .config
                .region()
                .map(ToString::to_string)
                .unwrap_or_default();
            let problems = validate(&iot, &region, allow.as_ref(), loaded).await?;
            report_validation(&label, checked.as_deref(), &problems)
        }
    }
}

/// Reads a profile file (its `name` field required).
fn read_file(file: &Path) -> Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

fn parse_file(file: &Path) -> Result<Profile, ProfileError> {
    match std::fs::read(file) {
        Ok(bytes) => Profile::from_json(&bytes),
        Err(e) => Err(ProfileError::invalid(
            "",
            vec![format!("cannot read {}: {e}", file.display())],
        )),
    }
}

/// Checks the file and stores it (as given) under its name.
async fn put(store: &S3Store, bucket: &str, file: &Path, name: Option<&str>) -> Result<()> {
    let bytes = read_file(file)?;
    store_checked(store, bucket, bytes, name, &file.display().to_string())
        .await
        .map(|_| ())
}

/// Checks a profile's JSON and stores it (as given) under its name, or `name` when given (the
/// JSON's `name` must then be absent or equal); `source` names the JSON in errors. The profile.
pub(crate) async fn store_checked(
    store: &S3Store,
    bucket: &str,
    bytes: Vec<u8>,
    name: Option<&str>,
    source: &str,
) -> Result<Profile> {
    let profile = match name {
        Some(name) => Profile::from_stored_json(&bytes, name),
        None => Profile::from_json(&bytes),
    }
    .map_err(|e| anyhow::anyhow!("{source}: {}", problem_text(&e)))?;
    let key = profile_key(&profile.name)?;
    store.put(bucket, &key, bytes).await?;
    outln!("stored profile {} at s3://{bucket}/{key}", profile.name)?;
    Ok(profile)
}

/// A stored profile's bytes, or a clear error when there is none.
async fn get(store: &S3Store, bucket: &str, name: &str) -> Result<Vec<u8>> {
    let key = profile_key(name)?;
    match store.get(bucket, &key).await? {
        Some(body) => Ok(body.to_vec()),
        None => bail!(
            "no profile {name:?} in the stack (s3://{bucket}/{key} does not exist; store one with \
             thingpress profile put)"
        ),
    }
}

/// The names of the stored profiles, sorted.
pub async fn list(store: &impl Store, bucket: &str) -> Result<Vec<String>> {
    let keys = store.list(bucket, PROFILES_PREFIX).await?;
    let mut names: Vec<String> = keys
        .iter()
        .filter_map(|key| profile_of_key(key))
        .map(str::to_owned)
        .collect();
    names.sort();
    Ok(names)
}

/// Every problem of a profile: its fields, its verifiers, the policies and groups the stack's
/// allow-list refuses (as Split would), and the IoT resources it names. An error only when the
/// registry cannot be asked (throttled, access denied, network).
pub async fn validate(
    iot: &TargetClients,
    region: &str,
    allow: Option<&AllowList>,
    loaded: Result<Profile, ProfileError>,
) -> Result<Vec<String>> {
    let profile = match loaded {
        Ok(profile) => profile,
        Err(e) => return Ok(problems_of(&e)),
    };
    let mut problems = Vec::new();
    if let Err(e) = profile.manifest_options() {
        problems.extend(problems_of(&e));
    }
    if let Some(allow) = allow {
        problems.extend(allow.problems(&profile.policies, &profile.all_thing_groups()));
    }
    // Every target's resources, as Split checks them; one that cannot be reached is a problem
    // here (Split lets it fail its own chunks).
    let targets = profile.targets_or_home(region);
    let named = |problem: String, target: &thingpress_product::Target| {
        if targets.len() > 1 {
            format!("target {}: {problem}", target.id())
        } else {
            problem
        }
    };
    for target in &targets {
        let checked = match iot.iot(target).await {
            Ok(client) => check_profile_resources(&client, &profile).await,
            Err(e) => Err(e),
        };
        match checked {
            Ok(()) => {}
            Err(ImportError::ProfileProblems {
                problems: found, ..
            }) => problems.extend(found.into_iter().map(|p| named(p, target))),
            Err(ImportError::TargetUnavailable(why)) => {
                problems.push(named(format!("cannot be reached: {why}"), target));
            }
            Err(other) => return Err(other).context("cannot check the profile against IoT"),
        }
    }
    Ok(problems)
}

/// Each problem of a profile error on its own.
fn problems_of(e: &ProfileError) -> Vec<String> {
    match e {
        ProfileError::Invalid { problems, .. } => problems.clone(),
        ProfileError::Json(json) => vec![format!("not a valid profile: {json}")],
    }
}

fn problem_text(e: &ProfileError) -> String {
    problems_of(e).join("; ")
}

/// What a valid profile was checked to have, for the success line.
fn what_was_checked(profile: &Profile) -> String {
    let list = |items: &[String]| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(", ")
        }
    };
    let verifiers = match profile.verifiers.len() {
        0 => "Microchip's published manifest signers".to_owned(),
        1 => "1 certificate".to_owned(),
        n => format!("{n} certificates"),
    };
    format!(
        "thing type {}; thing groups {}; policies {}; verifiers {verifiers}",
        profile.thing_type.as_deref().unwrap_or("none"),
        list(&profile.thing_groups),
        list(&profile.policies)
    )
}

/// Prints the outcome; an error (exit 1) when there are problems.
fn report_validation(label: &str, checked: Option<&str>, problems: &[String]) -> Result<()> {
    if problems.is_empty() {
        outln!("{label}: valid ({})", checked.unwrap_or("no IoT resources"))?;
        return Ok(());
    }
    for problem in problems {
        outln!("{label}: {problem}")?;
    }
    bail!(
        "{label} is not valid: {} problem{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use aws_sdk_iot::operation::describe_thing_type::DescribeThingTypeOutput;
    use aws_sdk_iot::operation::get_policy::{GetPolicyError, GetPolicyOutput};
    use aws_sdk_iot::types::error::ResourceNotFoundException;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    #[tokio::test]
    async fn stored_profiles_are_listed_by_name_and_other_keys_skipped() {
        let store = thingpress_run::MemStore::new();
        for key in [
            "profiles/widget.json",
            "profiles/a.b-c_d.json",
            "profiles/",
            "profiles/x.txt",
            "profiles/sub/x.json",
            "other/x.json",
        ] {
            store.put("b", key, b"{}".to_vec()).await.unwrap();
        }
        assert_eq!(list(&store, "b").await.unwrap(), ["a.b-c_d", "widget"]);
    }

    #[tokio::test]
    async fn validate_names_each_missing_resource_and_bad_field() {
        let thing_type = mock!(aws_sdk_iot::Client::describe_thing_type)
            .then_output(|| DescribeThingTypeOutput::builder().build());
        let policy_ok = mock!(aws_sdk_iot::Client::get_policy)
            .match_requests(|r| r.policy_name() == Some("present"))
            .then_output(|| GetPolicyOutput::builder().build());
        let policy_missing = mock!(aws_sdk_iot::Client::get_policy)
            .match_requests(|r| r.policy_name() == Some("absent"))
            .then_error(|| {
                GetPolicyError::ResourceNotFoundException(
                    ResourceNotFoundException::builder().build(),
                )
            });
        let iot = mock_client!(
            aws_sdk_iot,
            RuleMode::MatchAny,
            [&thing_type, &policy_ok, &policy_missing]
        );
        let iot = TargetClients::fixed(iot);
        let profile = Profile::from_json(
            br#"{"name": "w", "thingType": "t", "policies": ["present", "absent"]}"#,
        );
        let problems = validate(&iot, "us-east-1", None, profile).await.unwrap();
        assert_eq!(problems, vec!["policies: \"absent\" does not exist"]);

        // The stack's allow-list refuses what Split would refuse, before IoT is asked.
        let allow =
            AllowList::from_lookup(|name| (name == "ALLOWED_POLICIES").then(|| "pre*".to_owned()))
                .unwrap();
        let profile = Profile::from_json(
            br#"{"name": "w", "thingType": "t", "policies": ["present", "absent"]}"#,
        );
        let problems = validate(&iot, "us-east-1", Some(&allow), profile)
            .await
            .unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0]
                .contains("\"absent\" is not allowed by the stack parameter AllowedPolicies"),
            "{problems:?}"
        );
        assert_eq!(problems[1], "policies: \"absent\" does not exist");

        let bad = Profile::from_json(br#"{"name": "w", "thingName": "fixed", "chunkSize": 0}"#);
        let problems = validate(&iot, "us-east-1", None, bad).await.unwrap();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("thingName"), "{problems:?}");
        assert!(problems[1].starts_with("chunkSize"), "{problems:?}");

        let not_json = Profile::from_json(b"{");
        let problems = validate(&iot, "us-east-1", None, not_json).await.unwrap();
        assert!(
            problems[0].starts_with("not a valid profile"),
            "{problems:?}"
        );
        assert!(report_validation("p", None, &problems).is_err());
        assert!(report_validation("p", Some("x"), &[]).is_ok());
        let profile = Profile::from_json(
            br#"{"name": "w", "thingType": "t", "thingGroups": ["g1", "g2"], "policies": ["p"]}"#,
        )
        .unwrap();
        assert_eq!(
            what_was_checked(&profile),
            "thing type t; thing groups g1, g2; policies p; verifiers Microchip's published manifest signers"
        );
    }
}
