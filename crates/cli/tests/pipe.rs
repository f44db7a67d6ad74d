//! A reader that stops early (`thingpress … | head`) is no failure: the command exits 0 and says
//! nothing on stderr. These need no stack; `operate` checks `report` the same way on one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary with a stdout whose reader is already gone, so its first write fails with
/// EPIPE (`| head` that has read its lines).
fn with_stdout_closed(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_thingpress"))
        .args(args)
        .stdout(writer)
        .output()
        .expect("run thingpress")
}

fn assert_quiet_success(args: &[&str]) {
    let out = with_stdout_closed(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "thingpress {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "thingpress {args:?}"
    );
}

#[test]
fn a_closed_stdout_ends_inspect_quietly() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/upstream/ECC608C-TNGTLSU-B.json");
    let fixture = fixture.to_str().expect("utf-8 path");
    for output in ["jsonl", "summary"] {
        assert_quiet_success(&["inspect", fixture, "--output", output]);
    }
}

#[test]
fn a_closed_stdout_ends_help_and_version_quietly() {
    assert_quiet_success(&["--help"]);
    assert_quiet_success(&["report", "--help"]);
    assert_quiet_success(&["--version"]);
}
