//! `thingpress watch`: follow a run until it ends — chunks done/failed/running, certificates
//! done, rate and ETA — then print its report summary; exit non-zero if it failed.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::follow::follow;
use crate::runs::execution_arn;
use crate::target::{Target, TargetArgs, sdk_message};

/// Options of `thingpress watch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run: its execution name (the run id) or execution ARN.
    #[arg(required_unless_present = "latest", conflicts_with = "latest")]
    pub execution: Option<String>,
    /// Follow the newest execution of the stack's state machine.
    #[arg(long)]
    pub latest: bool,
    /// Seconds between progress lines when stderr is not a terminal.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,
}

/// Runs the command.
pub async fn run(target: &TargetArgs, args: &Args) -> Result<()> {
    let target = Target::resolve(target).await?;
    let arn = match &args.execution {
        Some(execution) => execution_arn(&target, execution),
        None => latest_execution(&target.sfn(), &target.state_machine_arn).await?,
    };
    follow(&target, &arn, Duration::from_secs(args.interval)).await
}

/// The newest execution of the state machine.
pub async fn latest_execution(sfn: &aws_sdk_sfn::Client, state_machine: &str) -> Result<String> {
    let out = sfn
        .list_executions()
        .state_machine_arn(state_machine)
        .max_results(1)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!("listing executions of {state_machine}: {}", sdk_message(&e))
        })?;
    out.executions()
        .first()
        .map(|e| e.execution_arn().to_owned())
        .with_context(|| format!("{state_machine} has no executions yet"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use aws_sdk_sfn::types::ExecutionStatus;

    use super::*;

    #[tokio::test]
    async fn latest_is_the_first_execution_listed() {
        use aws_sdk_sfn::operation::list_executions::ListExecutionsOutput;
        use aws_sdk_sfn::types::ExecutionListItem;
        use aws_smithy_mocks::{RuleMode, mock, mock_client};

        const MACHINE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:tp";
        let one = mock!(aws_sdk_sfn::Client::list_executions)
            .match_requests(|r| {
                r.max_results() == Some(1) && r.state_machine_arn() == Some(MACHINE)
            })
            .then_output(|| {
                let item = ExecutionListItem::builder()
                    .execution_arn("arn:aws:states:us-east-1:123456789012:execution:tp:newest")
                    .state_machine_arn(MACHINE)
                    .name("newest")
                    .status(ExecutionStatus::Running)
                    .start_date(aws_sdk_sfn::primitives::DateTime::from_secs(0))
                    .build()
                    .unwrap();
                ListExecutionsOutput::builder()
                    .executions(item)
                    .build()
                    .unwrap()
            });
        let none = mock!(aws_sdk_sfn::Client::list_executions).then_output(|| {
            ListExecutionsOutput::builder()
                .set_executions(Some(vec![]))
                .build()
                .unwrap()
        });
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::Sequential, [&one, &none]);
        let arn = latest_execution(&sfn, MACHINE).await.unwrap();
        assert!(arn.ends_with(":newest"), "{arn}");
        let err = latest_execution(&sfn, MACHINE).await.unwrap_err();
        assert!(err.to_string().contains("has no executions yet"), "{err}");
    }
}
