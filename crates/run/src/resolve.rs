//! Which run an execution works on, from its name (or ARN) and its input: a plain execution works
//! on its own run (`runs/<execution name>/`) over the run's chunk index; a retry execution
//! (`thingpress retry-failed`, input [`RetryInput`]) keeps no objects of its own and works on the
//! run it retries, over the retry's subset of the index. The caller
//! fetches the input (Step Functions' DescribeExecution); this part is pure.

use crate::payload::RetryInput;
use crate::{RunLayout, TaskError};

/// The execution name of an execution name or ARN (an ARN's last field).
pub fn execution_name(execution: &str) -> &str {
    if execution.starts_with("arn:") {
        execution.rsplit(':').next().unwrap_or_default()
    } else {
        execution
    }
}

/// The run an execution name or ARN names: its own, whatever it works on.
pub fn named_run(execution: &str) -> Result<RunLayout, TaskError> {
    RunLayout::new(execution_name(execution))
}

/// What an execution works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRun {
    /// The run whose objects the execution reads and writes.
    pub run: RunLayout,
    /// The chunk index it imports: the run's, or a retry's subset of it.
    pub index_key: String,
    /// Whether the execution is a retry of `run` (and not the run's own execution).
    pub retry: bool,
}

/// What the execution `execution` (name or ARN) works on, given its input (the execution's input
/// JSON, `None` when Step Functions no longer knows the execution). An input that is not a
/// retry's, or no input, means the execution's own run.
pub fn resolve(execution: &str, input: Option<&str>) -> Result<ExecutionRun, TaskError> {
    let own = named_run(execution)?;
    let retry = input.and_then(|input| serde_json::from_str::<RetryInput>(input).ok());
    let Some(RetryInput { retry }) = retry else {
        return Ok(ExecutionRun {
            index_key: own.chunk_index(),
            run: own,
            retry: false,
        });
    };
    let run = RunLayout::new(&retry.run_id).map_err(|e| {
        TaskError::invalid_input(format!(
            "execution {} is a retry of {:?}: {}",
            own.run_id(),
            retry.run_id,
            e.message
        ))
    })?;
    Ok(ExecutionRun {
        run,
        index_key: retry.chunks_key,
        retry: true,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ARN: &str = "arn:aws:states:us-east-1:123456789012:execution:thingpress-import";

    #[test]
    fn names_and_arns_name_the_same_run() {
        assert_eq!(execution_name("run-1"), "run-1");
        assert_eq!(execution_name(&format!("{ARN}:run-1")), "run-1");
        assert_eq!(
            named_run(&format!("{ARN}:run-1")).unwrap().run_id(),
            "run-1"
        );
        assert!(named_run("../etc").is_err());
        assert!(named_run("arn:aws:states:x:execution:m:").is_err());
    }

    #[test]
    fn a_plain_execution_works_on_its_own_run() {
        let console = json!({"manifest": {"bucket": "b", "key": "k"}}).to_string();
        for input in [None, Some(console.as_str()), Some("not json")] {
            let resolved = resolve(&format!("{ARN}:run-2"), input).unwrap();
            assert_eq!(resolved.run.run_id(), "run-2");
            assert_eq!(resolved.index_key, "runs/run-2/chunks.json");
            assert!(!resolved.retry);
        }
    }

    #[test]
    fn a_retry_works_on_the_run_it_retries_over_its_own_index() {
        let input = json!({"retry": {"runId": "run-1", "retry": 2,
            "chunksKey": "runs/run-1/retries/00002/chunks.json", "maxConcurrency": 4}});
        let resolved = resolve("run-1-retry2", Some(&input.to_string())).unwrap();
        assert_eq!(resolved.run.run_id(), "run-1");
        assert_eq!(resolved.index_key, "runs/run-1/retries/00002/chunks.json");
        assert!(resolved.retry);
        // Only what retry-failed starts is a retry.
        let input = json!({"retry": {"runId": "run-1"}}).to_string();
        let resolved = resolve("run-1-retry2", Some(&input)).unwrap();
        assert_eq!(resolved.run.run_id(), "run-1-retry2");
        assert!(!resolved.retry);
    }

    #[test]
    fn a_retry_of_an_impossible_run_is_an_error() {
        let input = json!({"retry": {"runId": "../x", "retry": 1, "chunksKey": "k",
                                     "maxConcurrency": 1}})
        .to_string();
        let err = resolve("r-retry1", Some(&input)).unwrap_err();
        assert!(err.message.contains("retry of \"../x\""), "{err}");
    }
}
