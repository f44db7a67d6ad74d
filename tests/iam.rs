//! IAM on the local stack, end to end: the edge authorizes every call a function makes against
//! that function's role in the deployed template (local/iam.py), so a grant missing from
//! infra/template.yaml fails an import here as it fails on AWS.
//!
//! The proof deploys a copy of the template without Split's `s3:GetObjectVersion` (the bucket is
//! versioned, so Split reads the manifest by version: issue 10's "every console import is denied")
//! with `script/local deploy --template COPY`, and shows that an import then fails with
//! AccessDenied — in the run's error and in the edge's stats — while the unmodified template,
//! deployed again, imports the same kind of manifest cleanly. It redeploys the shared stack's
//! roles, so it holds the write half of `EDGE`, and redeploys the template `script/local up`
//! used even when it fails.
//!
//! The budget's lease table is held the same way: Register's role and the operator's policy
//! may write, read and delete leases in the deployed table (through `thingpress_budget`, as they
//! do), and another function's role is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_config::BehaviorVersion;
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::Value;
use thingpress_budget::aws_sdk_dynamodb::config::{Credentials, Region};
use thingpress_budget::{DynamoLeases, HolderId, Lease, LeaseTable, Rates};
use thingpress_run::report::RunStatus;

use support::*;

/// The action whose grant the broken copy lacks, and the function whose role loses it.
const REMOVED_ACTION: &str = "s3:GetObjectVersion";
const FUNCTION: &str = "SplitFunction";

/// `template` without `action` in the policies of the resource `logical_id`: dropped from flow
/// lists (`Action: [a, b]`) and block lists (`- a`), and a statement whose only action it is
/// removed whole. Panics (naming the template) when the action is not granted there at all, so
/// the test cannot pass by removing nothing.
fn without_action(template: &str, logical_id: &str, action: &str) -> String {
    let lines: Vec<&str> = template.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == format!("  {logical_id}:"))
        .unwrap_or_else(|| panic!("infra/template.yaml has no resource {logical_id}"));
    let end = lines[start + 1..]
        .iter()
        .position(|l| !l.trim().is_empty() && indent(l) <= 2 && !l.trim_start().starts_with('#'))
        .map_or(lines.len(), |i| start + 1 + i);
    let mut out: Vec<String> = lines[..start].iter().map(|l| (*l).to_owned()).collect();
    let mut removed = 0;
    let mut i = start;
    while i < end {
        let line = lines[i];
        let trimmed = line.trim();
        let sole = [
            format!("Action: {action}"),
            format!("- Action: {action}"),
            format!("Action: [{action}]"),
            format!("- Action: [{action}]"),
        ];
        if sole.iter().any(|s| s == trimmed) {
            // The statement is the list item this line belongs to: drop it whole.
            let item = (start..=i)
                .rev()
                .find(|&j| {
                    lines[j].trim_start().starts_with("- ") && indent(lines[j]) < indent(line)
                })
                .filter(|_| !trimmed.starts_with("- "))
                .unwrap_or(i);
            let item_indent = indent(lines[item]);
            out.truncate(out.len() - (i - item));
            i += 1;
            while i < end && (lines[i].trim().is_empty() || indent(lines[i]) > item_indent) {
                i += 1;
            }
            removed += 1;
            continue;
        }
        if trimmed == format!("- {action}") {
            removed += 1;
            i += 1;
            continue;
        }
        if let Some((head, list)) = line.split_once("Action: [") {
            let items: Vec<&str> = list
                .trim_end_matches(']')
                .split(',')
                .map(str::trim)
                .collect();
            if items.contains(&action) {
                let kept: Vec<&str> = items.into_iter().filter(|a| *a != action).collect();
                out.push(format!("{head}Action: [{}]", kept.join(", ")));
                removed += 1;
                i += 1;
                continue;
            }
        }
        out.push(line.to_owned());
        i += 1;
    }
    out.extend(lines[end..].iter().map(|l| (*l).to_owned()));
    assert!(
        removed > 0,
        "{logical_id} is granted no {action} in the template"
    );
    out.join("\n") + "\n"
}

/// Runs `script/local deploy [--template FILE]` on the suite's stack.
fn deploy(template: Option<&Path>) {
    let root = workspace_root();
    let mut command = Command::new(root.join("script/local"));
    command
        .arg("deploy")
        .env("THINGPRESS_LOCAL_DIR", local_dir());
    if let Some(template) = template {
        command.arg("--template").arg(template);
    }
    let out = command.output().expect("run script/local deploy");
    assert!(
        out.status.success(),
        "script/local deploy {template:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes the broken copy and redeploys the stack's own template when dropped, also while a
/// failed assertion unwinds (so it only reports its own failures).
struct Restore(PathBuf);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let out = Command::new(workspace_root().join("script/local"))
            .arg("deploy")
            .env("THINGPRESS_LOCAL_DIR", local_dir())
            .output();
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "restoring the stack's template failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("restoring the stack's template failed: {e}"),
        }
    }
}

fn denials(stats: &Value) -> Vec<(String, String, String)> {
    stats["iam"]["recent"]
        .as_array()
        .map(|recent| {
            recent
                .iter()
                .map(|d| {
                    let field = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
                    (field("principal"), field("action"), field("message"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Imports a fresh manifest the way `thingpress import --start` does (uploaded under
/// runs/<run>/manifest/, then StartExecution) and waits for the run.
async fn import(stack: &Stack, tag: &str, profile: &Value) -> (Run, usize) {
    let bundle = fresh_certificates(tag, 3).concat().into_bytes();
    let n = manifest_ids(&bundle, &pem_options()).len();
    let key = format!("runs/{tag}/manifest/certs.pem");
    stack.put(&key, bundle).await;
    (stack.import(tag, &key, profile.clone(), false).await, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_removed_from_the_template_fails_the_import_with_access_denied() {
    let _exclusive = EDGE.write().await;
    let stack = Stack::new().await;
    let root = workspace_root();
    let original = std::fs::read_to_string(root.join("infra/template.yaml")).unwrap();
    let broken = without_action(&original, FUNCTION, REMOVED_ACTION);
    // Beside the original, so its relative CodeUri and DefinitionUri resolve the same.
    let copy = root.join(format!(
        "infra/.template-without-{}-{}.yaml",
        REMOVED_ACTION.replace(':', "-"),
        std::process::id()
    ));
    std::fs::write(&copy, &broken).unwrap();
    let restore = Restore(copy.clone());
    deploy(Some(&copy));

    // Names within the template's default AllowedPolicies / AllowedThingGroups (thingpress-*).
    let tag = format!("thingpress-{}", unique("iam-denied"));
    let profile = stack.resources(&tag, 1, 1).await;
    let before = edge(&stack.state, "GET", "/_edge/stats", None);
    let (run, _) = import(&stack, &tag, &profile).await;
    assert_eq!(
        run.status,
        ExecutionStatus::Failed,
        "{tag} without {REMOVED_ACTION}: {:?} {:?}",
        run.error,
        run.cause
    );
    let said = format!(
        "{} {}",
        run.error.as_deref().unwrap_or_default(),
        run.cause.as_deref().unwrap_or_default()
    );
    assert!(
        said.contains(&format!("not authorized to perform: {REMOVED_ACTION}"))
            || said.contains("AccessDenied"),
        "the run does not say why it failed: {said}"
    );
    let after = edge(&stack.state, "GET", "/_edge/stats", None);
    let by = |stats: &Value| stats["iam"]["byPrincipal"][FUNCTION].as_u64().unwrap_or(0);
    assert!(
        by(&after) > by(&before),
        "the edge counted no denial: {}",
        after["iam"]
    );
    assert!(
        denials(&after)
            .iter()
            .any(|(who, action, message)| who == FUNCTION
                && action == REMOVED_ACTION
                && message.contains(&format!("runs/{tag}/manifest/certs.pem"))),
        "{:?}",
        denials(&after)
    );

    // The template as it is: the same kind of import succeeds, and nothing is denied.
    drop(restore);
    let tag = format!("thingpress-{}", unique("iam-granted"));
    let profile = stack.resources(&tag, 1, 1).await;
    let before = edge(&stack.state, "GET", "/_edge/stats", None);
    let (run, n) = import(&stack, &tag, &profile).await;
    let report = stack.report(&run).await;
    assert_eq!(report.status, RunStatus::Complete, "{:?}", report.problems);
    assert_eq!(
        report.outcomes.registered, n as u64,
        "{:?}",
        report.outcomes
    );
    let after = edge(&stack.state, "GET", "/_edge/stats", None);
    assert_eq!(
        after["iam"]["denied"],
        before["iam"]["denied"],
        "denials during a clean import: {:?}",
        denials(&after)
    );
}

#[test]
fn the_broken_copy_lacks_exactly_the_removed_grant() {
    let template = "\
Resources:
  SplitFunction:
    Properties:
      Policies:
        - Statement:
            - Sid: A
              Effect: Allow
              Action: [s3:GetObject, s3:GetObjectVersion]
              Resource: x
            - Sid: B
              Effect: Allow
              Action: s3:GetObjectVersion
              Resource: y
            - Sid: C
              Effect: Allow
              Action:
                - s3:PutObject
                - s3:GetObjectVersion
              Resource: z
            - Sid: D
              Effect: Allow
              Action: [s3:GetObjectVersion]
              Resource: w
  Other:
    Properties:
      Action: s3:GetObjectVersion
";
    let got = without_action(template, "SplitFunction", "s3:GetObjectVersion");
    assert_eq!(
        got,
        "\
Resources:
  SplitFunction:
    Properties:
      Policies:
        - Statement:
            - Sid: A
              Effect: Allow
              Action: [s3:GetObject]
              Resource: x
            - Sid: C
              Effect: Allow
              Action:
                - s3:PutObject
              Resource: z
  Other:
    Properties:
      Action: s3:GetObjectVersion
"
    );
    let real = std::fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    let broken = without_action(&real, "SplitFunction", "s3:GetObjectVersion");
    let split = |t: &str| {
        t.split("\n  SplitFunction:")
            .nth(1)
            .and_then(|rest| rest.split("\n  DecorateFunction:").next())
            .unwrap()
            .to_owned()
    };
    let grants = |t: &str| {
        split(t)
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.contains("s3:GetObjectVersion"))
    };
    assert!(grants(&real));
    assert!(!grants(&broken));
    assert_eq!(
        real.replace(&split(&real), ""),
        broken.replace(&split(&broken), "")
    );
}

#[test]
#[should_panic(expected = "granted no s3:DeleteBucket")]
fn removing_a_grant_that_is_not_there_is_an_error() {
    let real = std::fs::read_to_string(workspace_root().join("infra/template.yaml")).unwrap();
    without_action(&real, "SplitFunction", "s3:DeleteBucket");
}

/// The stack's lease table, as a principal of the edge signs for it: a function's access key is
/// its logical id, the CLI's is `Operator`.
async fn leases_as(stack: &Stack, key: &str, table: &str) -> DynamoLeases {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(stack.state["endpoint"].as_str().unwrap())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(key, "test", None, None, "e2e"))
        .load()
        .await;
    DynamoLeases::from_config(&config, table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_the_operator_hold_budget_leases_and_other_functions_may_not() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let table = stack.state["functionEnv"]["BUDGET_TABLE"]
        .as_str()
        .expect("the deployed functions have a BUDGET_TABLE")
        .to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // An API nobody paces, so a concurrent import's holders give it no share.
    let rates: Rates = [("ThingpressIamProbe".to_owned(), 1.5)].into();
    let group = unique("iam-budget");
    for key in ["RegisterFunction", OPERATOR] {
        let leases = leases_as(&stack, key, &table).await;
        let lease = Lease {
            id: HolderId {
                group: group.clone(),
                holder: key.to_lowercase(),
            },
            demand: rates.clone(),
            granted: rates.clone(),
            expires_at: now + 60,
        };
        leases.put(&lease).await.unwrap();
        let live = leases.live(now).await.unwrap();
        assert!(live.contains(&lease), "{key}: {lease:?} not in {live:?}");
        leases.delete(&lease.id).await.unwrap();
        let live = leases.live(now).await.unwrap();
        assert!(live.iter().all(|l| l.id != lease.id), "{key}: not deleted");
    }

    let before = edge(&stack.state, "GET", "/_edge/stats", None);
    let summarize = leases_as(&stack, "SummarizeFunction", &table).await;
    let err = summarize.live(now).await.unwrap_err().to_string();
    assert!(
        err.contains(&table) && err.contains("Query") && err.contains("(Rejected)"),
        "{err}"
    );
    let after = edge(&stack.state, "GET", "/_edge/stats", None);
    let by = |stats: &Value| {
        stats["iam"]["byPrincipal"]["SummarizeFunction"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        by(&after) > by(&before),
        "no denial counted: {}",
        after["iam"]
    );
    assert!(
        denials(&after)
            .iter()
            .any(|(who, action, _)| who == "SummarizeFunction" && action == "dynamodb:Query"),
        "{:?}",
        denials(&after)
    );
}

/// The access key the CLI signs with on the local stack (local/iam.py's OPERATOR_KEY).
const OPERATOR: &str = "Operator";
