//! Progress on stderr: a spinner on a terminal, a plain line every 10 s otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain progress line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// Shows what a long registry command is doing.
#[derive(Debug)]
pub struct Progress {
    spinner: Option<ProgressBar>,
    last_plain: Mutex<Instant>,
}

impl Progress {
    /// A spinner if stderr is a terminal, plain lines otherwise.
    pub fn new() -> Progress {
        let spinner = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            spinner,
            last_plain: Mutex::new(Instant::now()),
        }
    }

    /// Shows `message` now (spinner) or if the last plain line is old enough.
    pub fn message(&self, message: String) {
        match &self.spinner {
            Some(bar) => bar.set_message(message),
            None => {
                let mut last = self.last_plain.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= PLAIN_EVERY {
                    *last = Instant::now();
                    eprintln!("thingpress: {message}");
                }
            }
        }
    }

    /// Runs `write` with the spinner hidden, so output lines do not mix with it.
    pub fn suspend<T>(&self, write: impl FnOnce() -> T) -> T {
        match &self.spinner {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    /// Removes the spinner before the results are printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.spinner {
            bar.finish_and_clear();
        }
    }
}
