//! The one terminal progress display, on stderr so it never mixes with the output on stdout: a
//! spinner with a message for the registry commands, a byte bar for `inspect` of a large file.
//! Off a terminal the spinner becomes a plain line every 10 s (a long check in CI still says
//! where it is) and the byte bar shows nothing.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain progress line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);
/// Files smaller than this are read too fast for a byte bar to be worth drawing.
const BAR_MIN_BYTES: u64 = 4 * 1024 * 1024;

/// What a long command shows while it works.
#[derive(Debug)]
pub struct Progress {
    display: Display,
}

#[derive(Debug)]
enum Display {
    /// A spinner or a bar on the terminal.
    Bar(ProgressBar),
    /// `thingpress: <message>` lines, at most one per [`PLAIN_EVERY`] (the last one's time).
    Plain(Mutex<Instant>),
    /// Nothing.
    Hidden,
}

impl Progress {
    /// A spinner with the elapsed time and a message if stderr is a terminal, plain lines
    /// otherwise.
    pub fn spinner() -> Progress {
        let display = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            Display::Bar(bar)
        } else {
            Display::Plain(Mutex::new(Instant::now()))
        };
        Progress { display }
    }

    /// A bar of `total` bytes with a message and an ETA, for a file of at least 4 MiB read on a
    /// terminal; nothing otherwise.
    pub fn bytes(total: u64) -> Progress {
        let display = if total >= BAR_MIN_BYTES && std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            Display::Bar(bar)
        } else {
            Display::Hidden
        };
        Progress { display }
    }

    /// Shows `message` now (terminal) or if the last plain line is old enough.
    pub fn message(&self, message: String) {
        match &self.display {
            Display::Bar(bar) => bar.set_message(message),
            Display::Plain(last) => {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= PLAIN_EVERY {
                    *last = Instant::now();
                    eprintln!("thingpress: {message}");
                }
            }
            Display::Hidden => {}
        }
    }

    /// Moves a byte bar to `position` bytes done.
    pub fn position(&self, position: u64) {
        if let Display::Bar(bar) = &self.display {
            bar.set_position(position);
        }
    }

    /// Runs `write` with the display hidden, so output lines do not mix with it.
    pub fn suspend<T>(&self, write: impl FnOnce() -> T) -> T {
        match &self.display {
            Display::Bar(bar) => bar.suspend(write),
            Display::Plain(_) | Display::Hidden => write(),
        }
    }

    /// Removes the display before the results are printed.
    pub fn finish(&self) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn small_files_get_no_bar() {
        assert!(matches!(Progress::bytes(10).display, Display::Hidden));
        assert!(matches!(
            Progress::bytes(BAR_MIN_BYTES - 1).display,
            Display::Hidden
        ));
    }

    #[test]
    fn plain_lines_wait_their_turn() {
        let start = Instant::now();
        let progress = Progress {
            display: Display::Plain(Mutex::new(start)),
        };
        let Display::Plain(last) = &progress.display else {
            panic!("a plain display");
        };
        progress.message("too soon".into());
        assert_eq!(*last.lock().unwrap(), start);
        let Some(long_ago) = start.checked_sub(PLAIN_EVERY) else {
            return; // a clock younger than 10 s cannot go back that far
        };
        *last.lock().unwrap() = long_ago;
        progress.message("due".into());
        assert!(*last.lock().unwrap() >= start);
        assert_eq!(progress.suspend(|| 7), 7);
    }
}
