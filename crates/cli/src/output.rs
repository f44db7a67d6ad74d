//! `--output`: the formats the commands print, one value enum for every command. Each command
//! accepts only the formats it prints (`Output::only`), so `--help` and a wrong value's error
//! list exactly those.

use std::fmt;

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
