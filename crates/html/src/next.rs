//! What to do after a run, as the exact commands: finish what did not finish, hand the full
//! list of rejections on, check what IoT now holds.

use serde::Serialize;
use thingpress_run::payload::Operation;
use thingpress_run::report::{Report, RunStatus};

/// One thing to do, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Why, for people.
    pub why: String,
    /// The command to run.
    pub command: String,
}

/// The steps that apply to `report`; `cli` is the command with the stack option used
/// (`thingpress --stack imports`), `embedded` how many rejected entries the page holds.
pub fn steps(report: &Report, cli: &str, embedded: usize) -> Vec<Step> {
    let run = &report.run_id;
    let mut steps = Vec::new();
    let unfinished: Vec<&str> = report
        .targets
        .iter()
        .filter(|t| t.status == RunStatus::Incomplete)
        .filter_map(|t| t.target.as_deref())
        .collect();
    if report.status == RunStatus::Incomplete {
        if unfinished.is_empty() {
            steps.push(Step {
                why: "Some chunks have no results. Resume the same execution where it stopped \
                      (within 14 days of its start, if it failed or timed out):"
                    .into(),
                command: format!("{cli} redrive {run} --wait"),
            });
            steps.push(Step {
                why: "Or start a new run of only the chunks without results:".into(),
                command: format!("{cli} retry-failed {run} --wait"),
            });
        }
        for target in unfinished {
            steps.push(Step {
                why: format!(
                    "Target {target} did not finish: import its chunks without results again \
                     (each target is retried on its own):"
                ),
                command: format!("{cli} retry-failed {run} --target {target} --wait"),
            });
        }
    }
    let rejected = report.outcomes.rejected;
    if rejected > 0 {
        let shown = if rejected > embedded as u64 {
            format!(
                "This page lists the first {embedded} of {rejected} rejected entries; every one of \
                 them, as CSV"
            )
        } else {
            "The rejected entries as CSV".to_owned()
        };
        steps.push(Step {
            why: format!("{shown} (for the supplier, or to fix and import again):"),
            command: format!(
                "{cli} report {run} --rejected-only --output csv > {run}-rejected.csv"
            ),
        });
    }
    if report.operation == Operation::Import && report.status == RunStatus::Complete {
        let manifest = report
            .source
            .key
            .rsplit('/')
            .next()
            .unwrap_or(&report.source.key);
        let targets: Vec<Option<&str>> = if report.targets.is_empty() {
            vec![report.target.as_deref()]
        } else {
            report.targets.iter().map(|t| t.target.as_deref()).collect()
        };
        for target in targets {
            let option = target.map(|t| format!(" --target {t}")).unwrap_or_default();
            steps.push(Step {
                why: format!(
                    "Check that IoT holds every entry of the manifest as the profile says{}:",
                    target.map(|t| format!(" in {t}")).unwrap_or_default()
                ),
                command: format!(
                    "{cli} registry check {manifest} --profile {}{option}",
                    report.profile
                ),
            });
        }
    }
    steps
}
