//! The smoke test's verdicts: one `PASS <step>: <what was seen>` or `FAIL <step>: <why>` line per
//! step on stdout, then `smoke: PASS (N steps)` or `smoke: FAIL`. The commands the steps reuse
//! print their own lines in between; the verdicts are the lines that start with PASS or FAIL.

use std::io::Write;

use anyhow::{Result, bail};

/// The verdicts so far, written to `out` (stdout).
#[derive(Debug)]
pub struct Steps<W: Write> {
    out: W,
    passed: usize,
    /// The first failure: (step, why).
    first_failure: Option<(String, String)>,
    /// The first error writing to stdout: kept, so that cleanup still runs (a closed stdout
    /// must not leave resources behind), and returned at the end.
    write_error: Option<std::io::Error>,
}

impl<W: Write> Steps<W> {
    pub fn new(out: W) -> Self {
        Steps {
            out,
            passed: 0,
            first_failure: None,
            write_error: None,
        }
    }

    /// Prints the step's verdict; whether it passed.
    pub fn record(&mut self, step: &str, result: Result<String>) -> bool {
        match result {
            Ok(seen) => {
                self.passed += 1;
                self.print(&pass_line(step, &seen));
                true
            }
            Err(why) => {
                self.fail(step, &format!("{why:#}"));
                false
            }
        }
    }

    /// Prints a failed step.
    pub fn fail(&mut self, step: &str, why: &str) {
        let why = one_line(why);
        self.print(&fail_line(step, &why));
        self.first_failure
            .get_or_insert_with(|| (step.to_owned(), why));
    }

    /// Prints the final line; an error (exit 1) when a step failed.
    pub fn finish(mut self) -> Result<()> {
        let failure = self.first_failure.take();
        self.print(&final_line(self.passed, failure.is_some()));
        if let Some((step, why)) = failure {
            bail!("smoke test failed at {step}: {why}");
        }
        match self.write_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    fn print(&mut self, line: &str) {
        if let Err(e) = writeln!(self.out, "{line}").and_then(|()| self.out.flush()) {
            self.write_error.get_or_insert(e);
        }
    }
}

fn pass_line(step: &str, seen: &str) -> String {
    format!("PASS {step}: {seen}")
}

fn fail_line(step: &str, why: &str) -> String {
    format!("FAIL {step}: {why}")
}

fn final_line(passed: usize, failed: bool) -> String {
    if failed {
        "smoke: FAIL".to_owned()
    } else {
        format!("smoke: PASS ({passed} steps)")
    }
}

/// A reason on one line (service messages may hold line breaks).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn verdict_lines() {
        assert_eq!(
            pass_line("import", "3 of 3 registered"),
            "PASS import: 3 of 3 registered"
        );
        assert_eq!(
            fail_line(
                "cleanup",
                &one_line("deleting IoT policy p:\n  DeleteConflict")
            ),
            "FAIL cleanup: deleting IoT policy p: DeleteConflict"
        );
        assert_eq!(final_line(7, false), "smoke: PASS (7 steps)");
        assert_eq!(final_line(3, true), "smoke: FAIL");
    }

    #[test]
    fn the_first_failure_is_the_error() {
        let mut out = Vec::new();
        let mut steps = Steps::new(&mut out);
        assert!(steps.record("certificates", Ok("3 generated".to_owned())));
        assert!(!steps.record("import", Err(anyhow::anyhow!("run r FAILED"))));
        steps.fail("cleanup", "policy p left");
        let error = steps.finish().unwrap_err().to_string();
        assert_eq!(error, "smoke test failed at import: run r FAILED");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "PASS certificates: 3 generated\nFAIL import: run r FAILED\n\
             FAIL cleanup: policy p left\nsmoke: FAIL\n"
        );
        let mut out = Vec::new();
        let mut steps = Steps::new(&mut out);
        steps.record("certificates", Ok("3 generated".to_owned()));
        assert!(steps.finish().is_ok());
        assert!(
            String::from_utf8(out)
                .unwrap()
                .ends_with("smoke: PASS (1 steps)\n")
        );
    }
}
