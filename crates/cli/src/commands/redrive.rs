//! `thingpress redrive`: resume a failed run where it stopped (Step Functions RedriveExecution
//! re-runs only the chunks that did not succeed), after checking that Step Functions will accept
//! it, so the operator gets one clear line instead of a bare service error.

use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use aws_sdk_sfn::config::http::HttpResponse;
use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::primitives::DateTime;
use aws_sdk_sfn::primitives::DateTimeFormat;
use aws_sdk_sfn::types::{ExecutionRedriveStatus, ExecutionStatus};

use thingpress_run::S3Store;
use thingpress_run::records::RunInfo;
use thingpress_run::resolve::{execution_name, named_run};

use crate::follow::follow;
use crate::output::outln;
use crate::runs::{execution_arn, read_json};
use crate::target::{Target, TargetArgs};

/// Step Functions redrives an execution only within this time of its end.
pub const REDRIVE_WINDOW: Duration = Duration::from_secs(14 * 24 * 3600);

/// Options of `thingpress redrive`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The failed run: its execution name (the run id) or execution ARN.
    pub execution: String,
    /// Follow the redriven run until it ends, like `thingpress watch` (exit non-zero if it fails).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: seconds between progress lines when stderr is not a terminal.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,
}

/// Runs the command.
pub async fn run(target: &TargetArgs, args: &Args) -> Result<()> {
    let target = Target::resolve(target).await?;
    let arn = execution_arn(&target, &args.execution);
    refuse_several_targets(&target, &args.execution).await?;
    let redriven_at = redrive(&target.sfn(), &arn, SystemTime::now()).await?;
    outln!(
        "redriven {arn} at {}: only its unfinished chunks run again",
        redriven_at
            .fmt(DateTimeFormat::DateTime)
            .unwrap_or_else(|_| redriven_at.secs().to_string())
    )?;
    if args.wait {
        follow(&target, &arn, Duration::from_secs(args.interval)).await?;
    } else {
        outln!("follow it with: thingpress watch {}", execution_name(&arn))?;
    }
    Ok(())
}

/// A run over several targets lets each target's chunks fail apart (its Map tolerates failed
/// items), so its Map never fails and RedriveExecution would only run Summarize again: such a
/// run is resumed by `retry-failed`, which this says instead of redriving to no effect.
async fn refuse_several_targets(target: &Target, execution: &str) -> Result<()> {
    let store = S3Store::new(target.s3());
    let run = named_run(execution)?;
    let info: Option<RunInfo> = read_json(&store, &target.bucket, &run.run_info()).await?;
    if let Some(info) = info
        && info.profile.targets.len() > 1
    {
        bail!(
            "run {} registers in {} targets, whose chunks fail apart: its Map does not fail, so \
             a redrive would only run Summarize again. Import what did not finish with: \
             thingpress retry-failed {} [--target ID]",
            info.run_id,
            info.profile.targets.len(),
            info.run_id
        );
    }
    Ok(())
}

/// Redrives the execution if Step Functions can: checks it first (DescribeExecution) so that a
/// run that is not redrivable gets a reason, then calls RedriveExecution. Returns its redrive date.
pub async fn redrive(sfn: &aws_sdk_sfn::Client, arn: &str, now: SystemTime) -> Result<DateTime> {
    let described = sfn
        .describe_execution()
        .execution_arn(arn)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot redrive {arn}: {}", service_error(&e)))?;
    if let Err(reason) = check_redrivable(&described, now) {
        bail!("cannot redrive {arn}: {reason}");
    }
    let out = sfn
        .redrive_execution()
        .execution_arn(arn)
        .send()
        .await
        .map_err(|e| {
            // No AWS error code: not Step Functions answering (moto has no RedriveExecution).
            let hint = if e.code().is_none() {
                "; is RedriveExecution supported there? (the local stack has none: use \
                 thingpress retry-failed)"
            } else {
                ""
            };
            anyhow::anyhow!("cannot redrive {arn}: {}{hint}", service_error(&e))
        })?;
    Ok(*out.redrive_date())
}

/// Why Step Functions would refuse to redrive this execution, if it would.
pub fn check_redrivable(
    described: &DescribeExecutionOutput,
    now: SystemTime,
) -> std::result::Result<(), String> {
    let retry_hint = "use thingpress retry-failed to import its unfinished chunks in a new run";
    match described.status() {
        ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Aborted => {}
        ExecutionStatus::Running => {
            return Err(
                "it is still running; only a failed, timed-out or aborted run can be \
                        redriven"
                    .to_owned(),
            );
        }
        ExecutionStatus::PendingRedrive => {
            return Err("it is already being redriven (PENDING_REDRIVE)".to_owned());
        }
        ExecutionStatus::Succeeded => {
            return Err(
                "it succeeded; nothing to redrive (see thingpress report for its entries)"
                    .to_owned(),
            );
        }
        other => {
            return Err(format!(
                "its status is {}; only FAILED, TIMED_OUT or ABORTED runs can be redriven",
                other.as_str()
            ));
        }
    }
    if let Some(ExecutionRedriveStatus::NotRedrivable) = described.redrive_status() {
        let reason = described
            .redrive_status_reason()
            .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "no reason given".to_owned());
        return Err(format!(
            "Step Functions says it is not redrivable: {reason}; {retry_hint}"
        ));
    }
    if let Some(stopped) = described.stop_date() {
        let stopped_at = SystemTime::UNIX_EPOCH + Duration::from_secs(stopped.secs().max(0) as u64);
        if now.duration_since(stopped_at).unwrap_or_default() > REDRIVE_WINDOW {
            let when = stopped
                .fmt(DateTimeFormat::DateTime)
                .unwrap_or_else(|_| stopped.secs().to_string());
            return Err(format!(
                "it ended at {when}, more than 14 days ago (Step Functions redrives only within \
                 14 days); {retry_hint}"
            ));
        }
    }
    Ok(())
}

/// A service error in one line: its code and message, or the HTTP status when the answer is not
/// an AWS error (the local stack's moto answers RedriveExecution with HTTP 500).
pub fn service_error<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::ServiceError(service) = err {
        let e = service.err();
        let message = e
            .message()
            .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "));
        return match (e.code(), message) {
            (Some("ExecutionDoesNotExist"), _) => "no such execution".to_owned(),
            (Some(code), Some(message)) if !message.is_empty() => format!("{code}: {message}"),
            (Some(code), _) => code.to_owned(),
            (None, _) => format!(
                "the service answered HTTP {} without an AWS error",
                service.raw().status().as_u16()
            ),
        };
    }
    let text = aws_sdk_sfn::error::DisplayErrorContext(err).to_string();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use aws_sdk_sfn::Client;
    use aws_sdk_sfn::error::ErrorMetadata;
    use aws_sdk_sfn::operation::describe_execution::DescribeExecutionError;
    use aws_sdk_sfn::operation::redrive_execution::{
        RedriveExecutionError, RedriveExecutionOutput,
    };
    use aws_sdk_sfn::types::error::{ExecutionDoesNotExist, ExecutionNotRedrivable};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};

    const ARN: &str = "arn:aws:states:us-east-1:123456789012:execution:thingpress-import:run-1";
    const NOW: u64 = 1_800_000_000;

    /// An error's metadata as the SDK parses it from an AWS JSON error.
    fn meta(code: &str, message: &str) -> ErrorMetadata {
        ErrorMetadata::builder().code(code).message(message).build()
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn described(
        status: ExecutionStatus,
        stopped_secs_ago: u64,
        redrive: Option<(ExecutionRedriveStatus, &str)>,
    ) -> DescribeExecutionOutput {
        let mut b = DescribeExecutionOutput::builder()
            .execution_arn(ARN)
            .state_machine_arn(
                "arn:aws:states:us-east-1:123456789012:stateMachine:thingpress-import",
            )
            .status(status)
            .start_date(DateTime::from_secs((NOW - stopped_secs_ago - 60) as i64))
            .stop_date(DateTime::from_secs((NOW - stopped_secs_ago) as i64));
        if let Some((status, reason)) = redrive {
            b = b.redrive_status(status).redrive_status_reason(reason);
        }
        b.build().unwrap()
    }

    fn describe_rule(out: DescribeExecutionOutput) -> Rule {
        mock!(Client::describe_execution)
            .match_requests(|r| r.execution_arn() == Some(ARN))
            .then_output(move || out.clone())
    }

    fn redrive_ok() -> Rule {
        mock!(Client::redrive_execution)
            .match_requests(|r| r.execution_arn() == Some(ARN))
            .then_output(|| {
                RedriveExecutionOutput::builder()
                    .redrive_date(DateTime::from_secs(NOW as i64))
                    .build()
                    .unwrap()
            })
    }

    #[tokio::test]
    async fn a_failed_run_is_redriven() {
        let describe = describe_rule(described(
            ExecutionStatus::Failed,
            3600,
            Some((ExecutionRedriveStatus::Redrivable, "")),
        ));
        let redrive_rule = redrive_ok();
        let sfn = mock_client!(
            aws_sdk_sfn,
            RuleMode::Sequential,
            [&describe, &redrive_rule]
        );
        let at = redrive(&sfn, ARN, now()).await.unwrap();
        assert_eq!(at.secs(), NOW as i64);
        assert_eq!(describe.num_calls(), 1);
        assert_eq!(redrive_rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_run_that_is_not_redrivable_is_not_redriven_and_says_why() {
        let cases = [
            (
                described(ExecutionStatus::Succeeded, 60, None),
                "it succeeded; nothing to redrive",
            ),
            (
                described(ExecutionStatus::Running, 0, None),
                "it is still running",
            ),
            (
                described(
                    ExecutionStatus::Failed,
                    60,
                    Some((
                        ExecutionRedriveStatus::NotRedrivable,
                        "Execution history event limit\n exceeded",
                    )),
                ),
                "Step Functions says it is not redrivable: Execution history event limit exceeded; use thingpress retry-failed",
            ),
            (
                described(ExecutionStatus::TimedOut, 15 * 24 * 3600, None),
                "more than 14 days ago",
            ),
        ];
        for (out, expected) in cases {
            let describe = describe_rule(out);
            let redrive_rule = redrive_ok();
            let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&describe, &redrive_rule]);
            let err = redrive(&sfn, ARN, now()).await.unwrap_err().to_string();
            assert!(err.starts_with(&format!("cannot redrive {ARN}: ")), "{err}");
            assert!(err.contains(expected), "{err} should say {expected}");
            assert!(!err.contains('\n'), "{err}");
            assert_eq!(redrive_rule.num_calls(), 0, "{err}");
        }
    }

    #[tokio::test]
    async fn a_missing_execution_is_one_line() {
        let describe = mock!(Client::describe_execution).then_error(|| {
            DescribeExecutionError::ExecutionDoesNotExist(
                ExecutionDoesNotExist::builder()
                    .meta(meta(
                        "ExecutionDoesNotExist",
                        "Execution Does Not Exist: 'run-1'",
                    ))
                    .build(),
            )
        });
        let sfn = mock_client!(aws_sdk_sfn, [&describe]);
        let err = redrive(&sfn, ARN, now()).await.unwrap_err().to_string();
        assert_eq!(err, format!("cannot redrive {ARN}: no such execution"));
    }

    #[tokio::test]
    async fn the_service_refusing_the_redrive_is_one_line() {
        let describe = describe_rule(described(ExecutionStatus::Failed, 60, None));
        let refuse = mock!(Client::redrive_execution).then_error(|| {
            RedriveExecutionError::ExecutionNotRedrivable(
                ExecutionNotRedrivable::builder()
                    .meta(meta(
                        "ExecutionNotRedrivable",
                        "Execution can not be redriven\nafter a Map Run failure",
                    ))
                    .build(),
            )
        });
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::Sequential, [&describe, &refuse]);
        let err = redrive(&sfn, ARN, now()).await.unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "cannot redrive {ARN}: ExecutionNotRedrivable: Execution can not be redriven \
                 after a Map Run failure"
            )
        );
    }
}
