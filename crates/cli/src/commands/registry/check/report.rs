//! The check's counts and how its results are written: one line per entry with problems (text
//! or JSON), then the counts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use thingpress_product::Decorated;

use super::diff::Problem;

/// Counts of a check, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    /// Entries in the manifest (accepted and rejected).
    pub entries: u64,
    /// Entries looked up in IoT.
    pub checked: u64,
    /// Checked entries that match the profile.
    pub ok: u64,
    /// Checked entries with at least one problem.
    pub with_problems: u64,
    /// Problems per kind (an entry may have several).
    pub problems: BTreeMap<String, u64>,
    /// Entries the manifest reader rejected, per error name (not checked).
    pub rejected_by_manifest: BTreeMap<String, u64>,
    /// Entries the profile's templates rejected, per error name (not checked).
    pub rejected_by_profile: BTreeMap<String, u64>,
}

impl Tally {
    pub(super) fn count_checked(&mut self, problems: &[Problem]) {
        self.checked += 1;
        if problems.is_empty() {
            self.ok += 1;
        } else {
            self.with_problems += 1;
        }
        for problem in problems {
            *self.problems.entry(problem.kind().to_owned()).or_insert(0) += 1;
        }
    }
}

/// How the results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One line per entry with problems, then the counts.
    Table,
    /// One JSON object per entry with problems (`"type": "entry"`), then one summary object
    /// (`"type": "summary"`).
    Jsonl,
}

/// One JSONL line per entry with problems (a struct, so the fields keep this order).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u64,
    device_id: &'a str,
    certificate_id: &'a str,
    thing_name: &'a str,
    problems: &'a [Problem],
}

/// The last JSONL line: what was checked and the counts.
#[derive(Serialize)]
struct SummaryLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    file: String,
    profile: &'a str,
    #[serde(flatten)]
    tally: &'a Tally,
}

pub(super) fn write_problems(
    out: &mut impl Write,
    format: Format,
    entry: &Decorated,
    problems: &[Problem],
) -> anyhow::Result<()> {
    let line = match format {
        Format::Jsonl => serde_json::to_string(&EntryLine {
            kind: "entry",
            index: entry.index,
            device_id: &entry.device_id,
            certificate_id: &entry.certificate_id,
            thing_name: &entry.thing_name,
            problems,
        })
        .context("cannot serialise an entry's problems")?,
        Format::Table => format!(
            "entry {} deviceId {} thing {}: {}",
            entry.index,
            entry.device_id,
            entry.thing_name,
            problems
                .iter()
                .map(Problem::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    writeln!(out, "{line}").context("cannot write to stdout")
}

/// Writes the counts after the entries.
pub fn write_summary(
    out: &mut impl Write,
    format: Format,
    file: &Path,
    profile: &str,
    tally: &Tally,
) -> anyhow::Result<()> {
    let text = match format {
        Format::Jsonl => serde_json::to_string(&SummaryLine {
            kind: "summary",
            file: file.display().to_string(),
            profile,
            tally,
        })
        .context("cannot serialise the counts")?,
        Format::Table => table_summary(file, profile, tally),
    };
    writeln!(out, "{text}").context("cannot write to stdout")
}

fn table_summary(file: &Path, profile: &str, tally: &Tally) -> String {
    let mut lines = Vec::new();
    let mut row = |label: String, n: u64| lines.push((label, n));
    row("entries".into(), tally.entries);
    row("  checked".into(), tally.checked);
    row("    ok".into(), tally.ok);
    row("    with problems".into(), tally.with_problems);
    for kind in Problem::KINDS {
        if let Some(n) = tally.problems.get(kind) {
            row(format!("      {kind}"), *n);
        }
    }
    let rejected = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
    row(
        "  rejected by the manifest (not checked)".into(),
        rejected(&tally.rejected_by_manifest),
    );
    for (error, n) in &tally.rejected_by_manifest {
        row(format!("    {error}"), *n);
    }
    row(
        "  rejected by the profile (not checked)".into(),
        rejected(&tally.rejected_by_profile),
    );
    for (error, n) in &tally.rejected_by_profile {
        row(format!("    {error}"), *n);
    }
    let width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let title = format!("{} against profile {profile}", file.display());
    std::iter::once(title)
        .chain(
            lines
                .into_iter()
                .map(|(label, n)| format!("{label:<width$}  {n:>10}")),
        )
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::super::diff::fixtures::expected;
    use super::*;

    #[test]
    fn tally_and_summaries() {
        let mut tally = Tally {
            entries: 4,
            ..Tally::default()
        };
        tally.count_checked(&[]);
        tally.count_checked(&[
            Problem::PrincipalNotAttached,
            Problem::NotInGroup { group: "g".into() },
        ]);
        tally
            .rejected_by_manifest
            .insert("Thingpress.InvalidCertificate".into(), 1);
        tally
            .rejected_by_profile
            .insert("Thingpress.InvalidThingName".into(), 1);
        assert_eq!((tally.checked, tally.ok, tally.with_problems), (2, 1, 1));
        assert_eq!(tally.problems["notInGroup"], 1);

        let mut out = Vec::new();
        write_summary(&mut out, Format::Jsonl, Path::new("m.pem"), "w", &tally).unwrap();
        assert!(out.starts_with(br#"{"type":"summary","file":"m.pem","profile":"w","entries":4,"#));
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["type"], "summary");
        assert_eq!(json["withProblems"], 1);
        assert_eq!(json["problems"]["principalNotAttached"], 1);
        assert_eq!(
            json["rejectedByManifest"]["Thingpress.InvalidCertificate"],
            1
        );

        let mut out = Vec::new();
        write_summary(&mut out, Format::Table, Path::new("m.pem"), "w", &tally).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("m.pem against profile w\n"), "{text}");
        assert!(text.contains("principalNotAttached"), "{text}");
        assert!(text.contains("Thingpress.InvalidThingName"), "{text}");

        let mut out = Vec::new();
        write_problems(
            &mut out,
            Format::Jsonl,
            &expected(),
            &[Problem::ThingMissing],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"type\":\"entry\",\"index\":7,\"deviceId\":\"dev-7\",\"certificateId\":\"ab12\",\
             \"thingName\":\"w-dev-7\",\"problems\":[{\"kind\":\"thingMissing\"}]}\n"
        );

        let mut out = Vec::new();
        write_problems(
            &mut out,
            Format::Table,
            &expected(),
            &[Problem::ThingMissing, Problem::CertificateMissing],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "entry 7 deviceId dev-7 thing w-dev-7: thing does not exist; certificate not registered\n"
        );
    }
}
