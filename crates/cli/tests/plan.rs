//! End to end: `thingpress plan` and the plan `import` prints, against the running local stack,
//! whose edge answers Service Quotas for `iot` with the quotas it enforces (local/edge.py): every
//! row's source is `applied`, equal to the stack's own Quota* setting, so nothing is warned.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/support/mod.rs"]
mod support;

mod cli;

use std::path::PathBuf;

use serde_json::Value;
use thingpress_importer::Api;

use cli::*;
use support::*;

/// A scratch file of this test.
fn scratch(name: &str, body: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("plan"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_the_applied_quotas_the_calls_and_the_cost() {
    let _shared = EDGE.read().await;
    let stack = Stack::new().await;
    let tag = unique("plan");
    // One group and two policies: AttachPolicy is called twice per certificate.
    let profile = stack.resources(&tag, 1, 2).await;
    let profile_file = scratch("profile.json", profile.to_string().as_bytes());
    thingpress(&["profile", "put", profile_file.to_str().unwrap()])
        .await
        .ok();
    let mut manifest = fresh_certificates(&tag, 12).concat();
    manifest.push_str("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
    let file = scratch(&format!("{tag}.pem"), manifest.as_bytes());
    let file = file.to_str().unwrap();

    let ran = thingpress(&["plan", file, "--profile", &tag, "--output", "json"])
        .await
        .ok();
    let plan: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(plan["entries"], 13, "{plan:#}");
    assert_eq!(plan["accepted"], 12);
    assert_eq!(plan["rejected"], 1);
    let rows = plan["apis"].as_array().unwrap();
    assert_eq!(rows.len(), Api::ALL.len());
    for row in rows {
        assert_eq!(row["source"]["kind"], "applied", "{row}");
        assert_eq!(row["quota"], row["stackQuota"], "{row}");
    }
    let row = |api: Api| rows.iter().find(|r| r["api"] == api.as_str()).unwrap();
    assert_eq!(row(Api::CreateThing)["calls"], 12);
    assert_eq!(row(Api::AttachPolicy)["calls"], 24);
    assert_eq!(row(Api::DescribeCertificate)["calls"], 0);
    assert_eq!(plan["warnings"], serde_json::json!([]));
    // The bottleneck is whichever API allows the fewest certificates/s, and the rate is its.
    let slowest = rows
        .iter()
        .filter_map(|r| Some((r["api"].as_str()?, r["certificatesPerSecond"].as_f64()?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_eq!(plan["bottleneck"], slowest.0);
    assert!(plan["certificatesPerSecond"].as_f64().unwrap() <= slowest.1 + 1e-9);
    assert!(plan["etaSeconds"].as_f64().unwrap() > 0.0);
    assert_eq!(plan["cost"]["iotItems"][0]["quantity"], 36.0);
    assert!(plan["cost"]["totalUsd"].as_f64().unwrap() > 0.0);

    // The table says the same for people.
    let table = thingpress(&["plan", file, "--profile", &tag]).await.ok();
    let register = table
        .stdout
        .lines()
        .find(|l| l.starts_with("RegisterCertificateWithoutCA"))
        .unwrap_or_else(|| panic!("{}", table.stdout));
    assert!(register.ends_with("  applied"), "{register}");
    assert!(table.stdout.contains("billed apart"), "{}", table.stdout);

    // import prints the plan on stderr before it uploads; stdout keeps the lines scripts read.
    let imported = thingpress(&["import", file, "--profile", &tag, "--start"])
        .await
        .ok();
    assert!(
        imported.stderr.contains("RegisterCertificateWithoutCA"),
        "{}",
        imported.stderr
    );
    assert!(
        !imported.stdout.contains("quota source"),
        "{}",
        imported.stdout
    );
    let run = imported.run_id();
    let skipped = thingpress(&[
        "import",
        file,
        "--profile",
        &tag,
        "--start",
        "--force",
        "--name",
        &format!("{run}-again"),
        "--no-plan",
    ])
    .await
    .ok();
    assert!(
        !skipped.stderr.contains("RegisterCertificateWithoutCA"),
        "{}",
        skipped.stderr
    );
}
