//! Where EMF lines go. In Lambda, stdout: one JSON object per line, which the function's log
//! group receives as one event and CloudWatch Logs turns into metrics. Lambda's JSON log format
//! leaves an application line that is already JSON as it is, and files one without a `level` as
//! INFO (the template's ApplicationLogLevel), so the lines sit beside the tracing logs unchanged.
//! A line is written under stdout's lock in one piece, so it never interleaves with a log line.
//!
//! Tests capture the lines instead ([`Emitter::capturing`]); without a stack name (a function run
//! outside the template) nothing is written.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::{Dimension, Document, NAMESPACE, STACK_ENV_VAR};

/// Writes a function's EMF lines under its stack's dimension.
#[derive(Debug, Clone)]
pub struct Emitter {
    stack: Option<String>,
    out: Out,
}

#[derive(Debug, Clone)]
enum Out {
    Off,
    Stdout,
    Capture(Captured),
}

/// The lines a capturing [`Emitter`] wrote, for tests to read.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<String>>>);

impl Captured {
    /// Every line written so far, in order.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The lines written so far, forgotten here.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }
}

impl Emitter {
    /// Lines on stdout under the stack `STACK_NAME` names (any variable lookup: tests pass a
    /// map); without one, none.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Emitter {
        match lookup(STACK_ENV_VAR)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
        {
            Some(stack) => Emitter {
                stack: Some(stack),
                out: Out::Stdout,
            },
            None => {
                tracing::info!("{STACK_ENV_VAR} is not set: no metrics are emitted");
                Emitter::off()
            }
        }
    }

    /// Writes nothing.
    pub fn off() -> Emitter {
        Emitter {
            stack: None,
            out: Out::Off,
        }
    }

    /// Keeps the lines in memory under the stack `stack`, for a test to read.
    pub fn capturing(stack: &str) -> (Emitter, Captured) {
        let captured = Captured::default();
        let emitter = Emitter {
            stack: Some(stack.to_owned()),
            out: Out::Capture(captured.clone()),
        };
        (emitter, captured)
    }

    /// Whether lines are written anywhere.
    pub fn is_on(&self) -> bool {
        !matches!(self.out, Out::Off)
    }

    /// An empty document in the Thingpress namespace at `timestamp_ms`, with the stack's
    /// dimension set.
    pub fn document(&self, timestamp_ms: u64) -> Document {
        let mut doc = Document::new(NAMESPACE, timestamp_ms);
        if let Some(stack) = &self.stack {
            doc.dimension(Dimension::Stack, stack.clone());
        }
        doc
    }

    /// Writes each non-empty document as one line. A document CloudWatch would not take is
    /// logged, not written: metrics never fail the task.
    pub fn emit(&self, documents: &[Document]) {
        if !self.is_on() {
            return;
        }
        for doc in documents.iter().filter(|d| !d.is_empty()) {
            match doc.to_line() {
                Ok(line) => self.write(line),
                Err(error) => tracing::warn!(%error, "metrics line not written"),
            }
        }
    }

    fn write(&self, line: String) {
        match &self.out {
            Out::Off => {}
            Out::Capture(captured) => captured.push(line),
            Out::Stdout => {
                let mut out = std::io::stdout().lock();
                let written = out
                    .write_all(line.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .and_then(|()| out.flush());
                if let Err(error) = written {
                    tracing::warn!(%error, "metrics line not written");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Metric, Reading};

    #[test]
    fn lines_carry_the_stack_dimension_and_empty_documents_are_skipped() {
        let (emitter, captured) = Emitter::capturing("tp-prod");
        let mut doc = emitter.document(7);
        doc.put(Metric::ManifestEntries, 3.0);
        emitter.emit(&[emitter.document(8), doc]);
        let lines = captured.take();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let read = Reading::parse(&lines[0]).unwrap();
        assert_eq!(read.dimension("Stack"), Some("tp-prod"));
        assert_eq!(read.value("ManifestEntries"), Some(3.0));
        assert_eq!(read.timestamp_ms, 7);
        assert!(captured.lines().is_empty());
    }

    #[test]
    fn a_document_cloudwatch_would_refuse_is_not_written() {
        let (emitter, captured) = Emitter::capturing("s");
        let mut doc = emitter.document(1);
        // IotCalls is per API: without the Api dimension it would be dropped by CloudWatch.
        doc.put(Metric::IotCalls, 1.0);
        emitter.emit(&[doc]);
        assert!(captured.lines().is_empty());
    }

    #[test]
    fn the_stack_comes_from_stack_name_and_without_it_nothing_is_written() {
        let on = Emitter::from_env(|name| (name == STACK_ENV_VAR).then(|| "tp ".to_owned()));
        assert!(on.is_on());
        assert_eq!(on.stack.as_deref(), Some("tp"));
        let off = Emitter::from_env(|_| None);
        assert!(!off.is_on());
        let blank = Emitter::from_env(|_| Some("  ".to_owned()));
        assert!(!blank.is_on());
    }
}
