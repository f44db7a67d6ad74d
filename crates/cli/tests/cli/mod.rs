//! What the binary's end-to-end suites share: running `thingpress --local` on the suite's stack
//! and reading what it printed. Each suite includes it with `mod cli;` next to `mod support;`.

#![allow(dead_code)]

use std::process::Output;

use thingpress_run::report::Report;

use crate::support::{Stack, local_dir};

/// What one run of the binary printed, and how it ended.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn ok(self) -> Ran {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The one error line (the last line of stderr; progress lines come before it).
    pub fn error_line(&self) -> &str {
        self.stderr.lines().last().unwrap_or_default()
    }

    /// Exit 1 with exactly one error line on stderr (progress lines never come before it here).
    pub fn one_error_line(&self) -> &str {
        assert_eq!(self.code, Some(1), "{}{}", self.stdout, self.stderr);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", self.stderr);
        assert!(lines[0].starts_with("thingpress: error: "), "{}", lines[0]);
        lines[0]
    }

    /// The run id from the `run <id>` line import prints.
    pub fn run_id(&self) -> String {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("run ").filter(|r| !r.contains(' ')))
            .unwrap_or_else(|| panic!("no run line in:\n{}", self.stdout))
            .to_owned()
    }
}

/// Runs `thingpress --local ARGS` on the suite's stack (off the async runtime's threads).
pub async fn thingpress(args: &[&str]) -> Ran {
    run_binary(args, false).await
}

/// As [`thingpress`], with a stdout whose reader is already gone (`| head` that has read its
/// lines): the first write fails with EPIPE.
pub async fn thingpress_with_stdout_closed(args: &[&str]) -> Ran {
    run_binary(args, true).await
}

async fn run_binary(args: &[&str], stdout_closed: bool) -> Ran {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output: Output = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_thingpress"));
        command
            .arg("--local")
            .args(&args)
            .env("THINGPRESS_LOCAL_DIR", local_dir())
            // The edge authorizes the binary against infra/operator-policy.json; the suites'
            // own inspection clients keep the unchecked `test` key.
            .env("AWS_ACCESS_KEY_ID", "Operator");
        if stdout_closed {
            let (reader, writer) = std::io::pipe().unwrap();
            drop(reader);
            command.stdout(writer);
        }
        command.output().unwrap()
    })
    .await
    .unwrap();
    let ran = Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    eprintln!(
        "$ thingpress ... -> {:?}\n{}{}",
        ran.code, ran.stdout, ran.stderr
    );
    ran
}

/// The run's report.json.
pub async fn report_of(stack: &Stack, run_id: &str) -> Report {
    let body = stack
        .get(&format!("runs/{run_id}/report.json"))
        .await
        .unwrap_or_else(|| panic!("{run_id} has no report"));
    serde_json::from_slice(&body).unwrap()
}
