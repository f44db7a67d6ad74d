//! `thingpress inspect` on the real supplier samples, with expectations computed here from the
//! raw files (not from the library's own output).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/upstream")
        .join(name)
}

fn thingpress(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_thingpress"))
        .args(args)
        .output()
        .expect("run thingpress")
}

fn inspect_jsonl(file: &Path, extra: &[&str]) -> Vec<Value> {
    let path = file.to_str().expect("utf-8 path");
    let mut args = vec!["inspect", path, "--output", "jsonl"];
    args.extend_from_slice(extra);
    let out = thingpress(&args);
    assert!(
        out.status.success(),
        "inspect {path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes).as_ref())
}

fn pem_body_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    STANDARD.decode(body).expect("PEM body is base64")
}

fn accepted(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["status"] == "accepted").collect()
}

#[test]
fn microchip_trust_and_go_sample_gives_ten_devices_keyed_by_unique_id() {
    let raw: Vec<Value> =
        serde_json::from_slice(&std::fs::read(fixture("ECC608C-TNGTLSU-B.json")).unwrap()).unwrap();
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let expected: Vec<(String, String)> = raw
        .iter()
        .map(|jws| {
            let payload: Value =
                serde_json::from_slice(&url.decode(jws["payload"].as_str().unwrap()).unwrap())
                    .unwrap();
            let x5c0 = payload["publicKeySet"]["keys"][0]["x5c"][0]
                .as_str()
                .unwrap();
            (
                jws["header"]["uniqueId"].as_str().unwrap().to_owned(),
                sha256_hex(&STANDARD.decode(x5c0).unwrap()),
            )
        })
        .collect();

    let lines = inspect_jsonl(&fixture("ECC608C-TNGTLSU-B.json"), &[]);
    assert_eq!(lines.len(), 10);
    let got: Vec<(String, String)> = accepted(&lines)
        .iter()
        .map(|l| {
            (
                l["deviceId"].as_str().unwrap().to_owned(),
                l["certificateId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(lines[0]["partNumber"], "ATECC608C-TNGTLSU-B");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["index"], i);
    }
}

#[test]
fn microchip_manifest_without_public_keys_gives_no_certificates() {
    let lines = inspect_jsonl(
        &fixture("ECC608-TMNGTLSS-B.json"),
        &["--supplier", "microchip"],
    );
    assert!(!lines.is_empty());
    assert!(accepted(&lines).is_empty());
    for line in &lines {
        assert_eq!(line["error"], "Thingpress.MissingCertificate", "{line}");
    }
}

#[test]
fn infineon_bundle_gives_two_hundred_devices_per_slot() {
    for slot in ["E0E0", "E0E1", "E0E2"] {
        let lines = inspect_jsonl(&fixture("manifest-infineon.7z"), &["--slot", slot]);
        let ok = accepted(&lines);
        assert_eq!(ok.len(), 200, "slot {slot}");
        let mut ids: Vec<&str> = ok
            .iter()
            .map(|l| l["certificateId"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 200, "slot {slot}: certificate ids are unique");
        for line in ok {
            let device = line["deviceId"].as_str().unwrap();
            assert_eq!(device.len(), 64, "CN is 64 hex chars: {device}");
            assert_eq!(line["cn"], device);
        }
    }
}

#[test]
fn espressif_csv_gives_seven_devices_keyed_by_mac() {
    let text = std::fs::read_to_string(fixture("manifest-espressif.csv")).unwrap();
    // Records start with "MAC,cn,\"-----BEGIN"; the PEM runs until the closing quote.
    let expected: Vec<(String, String)> = text
        .split("\"-----BEGIN CERTIFICATE-----")
        .skip(1)
        .zip(text.lines().filter(|l| l.contains(",\"-----BEGIN")))
        .map(|(rest, head)| {
            let pem = rest.split('"').next().unwrap();
            let mac = head.split(',').next().unwrap().to_owned();
            (mac, sha256_hex(&pem_body_der(pem)))
        })
        .collect();
    assert_eq!(expected.len(), 7);

    let lines = inspect_jsonl(&fixture("manifest-espressif.csv"), &[]);
    let got: Vec<(String, String)> = accepted(&lines)
        .iter()
        .map(|l| {
            (
                l["deviceId"].as_str().unwrap().to_owned(),
                l["certificateId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn base64_pem_lines_give_one_hundred_devices_keyed_by_cn() {
    let text = std::fs::read_to_string(fixture("certificates_test.txt")).unwrap();
    let expected: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let pem = String::from_utf8(STANDARD.decode(l.trim()).unwrap()).unwrap();
            sha256_hex(&pem_body_der(&pem))
        })
        .collect();
    assert_eq!(expected.len(), 100);

    let lines = inspect_jsonl(&fixture("certificates_test.txt"), &[]);
    let ok = accepted(&lines);
    assert_eq!(ok.len(), 100);
    for (i, line) in ok.iter().enumerate() {
        assert_eq!(line["deviceId"], format!("Device-{i}"));
        assert_eq!(line["certificateId"], expected[i]);
    }
}

#[test]
fn summary_counts_outcomes_per_error_name() {
    let path = fixture("ECC608-TMNGTLSS-B.json");
    let out = thingpress(&["inspect", path.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("microchip manifest"), "{text}");
    assert!(text.contains("Thingpress.MissingCertificate"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("accepted") && l.trim_end().ends_with(" 0")),
        "{text}"
    );
}

#[test]
fn unreadable_input_is_one_clear_line_and_a_failure() {
    let dir = std::env::temp_dir().join(format!("thingpress-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: Vec<(PathBuf, Vec<&str>, &str)> = vec![
        (dir.join("missing.json"), vec![], "cannot open"),
        (
            {
                let p = dir.join("truncated.json");
                let sample = std::fs::read(fixture("ECC608C-TNGTLSU-B.json")).unwrap();
                std::fs::write(&p, &sample[..sample.len() / 2]).unwrap();
                p
            },
            vec![],
            "truncated.json",
        ),
        (
            {
                let p = dir.join("notes.txt");
                std::fs::write(&p, "hello, these are not certificates\n").unwrap();
                p
            },
            vec![],
            "notes.txt",
        ),
        (
            fixture("ECC608C-TNGTLSU-B.json"),
            vec!["--supplier", "espressif"],
            "ECC608C-TNGTLSU-B.json",
        ),
    ];
    for (path, extra, needle) in cases {
        let mut args = vec!["inspect", path.to_str().unwrap()];
        args.extend(extra);
        let out = thingpress(&args);
        assert!(!out.status.success(), "{path:?} should fail");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with("thingpress: error: "), "{stderr}");
        assert!(stderr.contains(needle), "{stderr} should name {needle}");
    }
}
