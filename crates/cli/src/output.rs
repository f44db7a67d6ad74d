//! `--output`: the formats the commands print, one value enum for every command. Each command
//! accepts only the formats it prints (`Output::only`), so `--help` and a wrong value's error
//! list exactly those. And writing to stdout so that a reader that stops early
//! (`thingpress report … | head`) ends the command quietly: `outln!` returns the write's error
//! where `println!` panics, and `is_broken_pipe` tells `main` it is no failure.

use std::fmt;
use std::io::{self, Write};

use clap::ValueEnum;
use clap::builder::{PossibleValuesParser, TypedValueParser};

/// A format a command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned text for people.
    Table,
    /// Counts for people.
    Summary,
    /// One JSON document.
    Json,
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated rows with a header line.
    Csv,
}

impl Output {
    /// A clap parser that accepts only `formats` (e.g. `value_parser = Output::only(&[Table, Json])`).
    pub fn only(formats: &'static [Output]) -> impl TypedValueParser<Value = Output> {
        PossibleValuesParser::new(formats.iter().filter_map(ValueEnum::to_possible_value))
            // The parser has checked the name, so this finds it.
            .try_map(|name| Output::from_str(&name, false))
    }

    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Output::Table => "table",
            Output::Summary => "summary",
            Output::Json => "json",
            Output::Jsonl => "jsonl",
            Output::Csv => "csv",
        }
    }
}

/// The name on the command line (so `default_value_t` shows it in `--help`).
impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes to stdout, returning the error (e.g. a closed pipe) where `print!` would panic.
pub fn print(args: fmt::Arguments<'_>) -> io::Result<()> {
    io::stdout().lock().write_fmt(args)
}

/// `println!` that returns an `io::Result` (see [`print`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// Whether an error is stdout closed by its reader (`| head`): the output was not wanted any
/// more, which is no failure. Writers wrap the I/O error in their own (csv, serde_json).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        let kind = if let Some(e) = e.downcast_ref::<io::Error>() {
            Some(e.kind())
        } else if let Some(e) = e.downcast_ref::<serde_json::Error>() {
            e.io_error_kind()
        } else if let Some(e) = e.downcast_ref::<csv::Error>() {
            match e.kind() {
                csv::ErrorKind::Io(e) => Some(e.kind()),
                _ => None,
            }
        } else {
            None
        };
        kind == Some(io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[arg(long, default_value_t = Output::Table, value_parser = Output::only(&[Output::Table, Output::Csv]))]
        output: Output,
    }

    #[test]
    fn a_closed_pipe_is_found_under_context_and_writer_errors() {
        use anyhow::Context;

        let pipe = || io::Error::from(io::ErrorKind::BrokenPipe);
        let wrapped: anyhow::Result<()> = Err(pipe()).context("writing the report");
        assert!(is_broken_pipe(&wrapped.unwrap_err()));
        let json = serde_json::to_writer(Failing(io::ErrorKind::BrokenPipe), &[1]).unwrap_err();
        assert!(is_broken_pipe(&json.into()));
        assert!(is_broken_pipe(&csv::Error::from(pipe()).into()));
        // Any other failure is one.
        assert!(!is_broken_pipe(&anyhow::Error::from(io::Error::from(
            io::ErrorKind::PermissionDenied
        ))));
        let other = serde_json::to_writer(Failing(io::ErrorKind::Other), &[1]).unwrap_err();
        assert!(!is_broken_pipe(&other.into()));
        assert!(!is_broken_pipe(&anyhow::anyhow!("broken pipe")));
    }

    /// A writer whose every write fails with `kind`.
    struct Failing(io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(self.0.into())
        }
    }

    #[test]
    fn names_round_trip() {
        for output in Output::value_variants() {
            assert_eq!(Output::from_str(output.as_str(), false).unwrap(), *output);
            assert_eq!(
                output.to_possible_value().unwrap().get_name(),
                output.as_str()
            );
        }
    }

    #[test]
    fn a_command_accepts_only_its_formats() {
        let parse = |args: &[&str]| Cmd::try_parse_from([&["cmd"], args].concat());
        assert_eq!(parse(&[]).unwrap().output, Output::Table);
        assert_eq!(parse(&["--output", "csv"]).unwrap().output, Output::Csv);
        let err = parse(&["--output", "json"]).unwrap_err().to_string();
        assert!(err.contains("[possible values: table, csv]"), "{err}");
    }
}
