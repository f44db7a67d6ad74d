//! `thingpress registry check` and `registry summary` against the local stack: a small fresh
//! import checks clean; removed attachments are named entry by entry; the summary counts what
//! the test created (the stack is shared, so only the test's own type and groups are compared).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use support::{EDGE, Stack, edge, fresh_certificates, manifest_ids, pem_options, unique};

/// Runs the real binary against the local stack the suite uses.
fn thingpress(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_thingpress"))
        .arg("--local")
        .args(args)
        .env("THINGPRESS_LOCAL_DIR", support::local_dir())
        // Authorized against infra/operator-policy.json by the edge.
        .env("AWS_ACCESS_KEY_ID", "Operator")
        .output()
        .expect("run thingpress")
}

fn stdout_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn check(file: &Path, profile: &str, output: &str) -> Output {
    let out = thingpress(&[
        "registry",
        "check",
        file.to_str().unwrap(),
        "--profile",
        profile,
        "--output",
        output,
    ]);
    eprintln!(
        "registry check ({output}): {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The summary line and the entry lines (index → problems) of a JSONL check.
fn parse_check(out: &Output) -> (Value, BTreeMap<u64, Value>) {
    let lines = stdout_lines(out);
    let (summary, entries): (Vec<_>, Vec<_>) =
        lines.into_iter().partition(|l| l["type"] == "summary");
    assert_eq!(summary.len(), 1, "one summary line");
    let entries = entries
        .into_iter()
        .map(|l| {
            assert_eq!(l["type"], "entry", "{l}");
            (l["index"].as_u64().unwrap(), l["problems"].clone())
        })
        .collect();
    (summary.into_iter().next().unwrap(), entries)
}

fn summary_json(args: &[&str]) -> Value {
    let mut all = vec!["registry", "summary", "--output", "json"];
    all.extend_from_slice(args);
    let out = thingpress(&all);
    assert!(
        out.status.success(),
        "registry summary {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn certificate_arn(stack: &Stack, id: &str) -> String {
    stack
        .iot
        .describe_certificate()
        .certificate_id(id)
        .send()
        .await
        .unwrap()
        .certificate_description()
        .and_then(|d| d.certificate_arn())
        .unwrap()
        .to_owned()
}

/// Injected edge faults, cleared when dropped (also when an assertion fails).
struct Faults<'a>(&'a Stack);

impl<'a> Faults<'a> {
    fn inject(stack: &'a Stack, faults: Value) -> Faults<'a> {
        edge(&stack.state, "POST", "/_edge/faults", Some(faults));
        Faults(stack)
    }
}

impl Drop for Faults<'_> {
    fn drop(&mut self) {
        edge(&self.0.state, "POST", "/_edge/faults", Some(json!({})));
    }
}

#[tokio::test]
async fn registry_check_names_removed_attachments_and_summary_counts_them() {
    // Exclusive: part of the test injects throttles.
    let _edge = EDGE.write().await;
    let imported = Imported::new(Stack::new().await).await;
    imported.checks_clean();
    imported.waits_out_throttles();
    imported.summary_counts_the_import();
    imported.remove_attachments().await;
    imported.check_names_the_removed_attachments();
    imported.table_names_the_removed_attachments();
    imported.summary_sees_the_removed_member();
    std::fs::remove_file(&imported.file).ok();
}

/// Six fresh certificates and one block the manifest reader rejects, imported with a profile
/// of two groups and two policies, and kept in a local file for `registry check`.
struct Imported {
    stack: Stack,
    tag: String,
    profile: Value,
    ids: Vec<(String, String)>,
    file: PathBuf,
}

impl Imported {
    async fn new(stack: Stack) -> Imported {
        let tag = unique("registry");
        let profile = stack.resources(&tag, 2, 2).await;
        stack
            .put(
                &format!("profiles/{tag}.json"),
                profile.to_string().into_bytes(),
            )
            .await;
        let mut bundle = fresh_certificates(&tag, 6).concat();
        bundle.push_str("-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n");
        let ids = manifest_ids(bundle.as_bytes(), &pem_options());
        assert_eq!(ids.len(), 6);
        let key = format!("runs/{tag}/manifest/certs.pem");
        stack.put(&key, bundle.clone().into_bytes()).await;
        let file = std::env::temp_dir().join(format!("{tag}.pem"));
        std::fs::write(&file, &bundle).unwrap();
        let run = stack.import(&tag, &key, profile.clone(), false).await;
        let report = stack.report(&run).await;
        assert_eq!(report.entries, 7);
        Imported {
            stack,
            tag,
            profile,
            ids,
            file,
        }
    }

    fn type_name(&self) -> &str {
        self.profile["thingType"].as_str().unwrap()
    }

    fn group(&self, i: usize) -> String {
        self.profile["thingGroups"][i].as_str().unwrap().to_owned()
    }

    fn policy0(&self) -> &str {
        self.profile["policies"][0].as_str().unwrap()
    }

    fn thing(&self, i: usize) -> String {
        format!("{}-{}", self.tag, self.ids[i].1)
    }

    /// Everything as the profile says: only the summary, exit 0.
    fn checks_clean(&self) {
        let out = check(&self.file, &self.tag, "jsonl");
        assert!(out.status.success());
        let (summary, entries) = parse_check(&out);
        assert!(entries.is_empty(), "{entries:?}");
        assert_eq!(summary["entries"], 7);
        assert_eq!(summary["checked"], 6);
        assert_eq!(summary["ok"], 6);
        assert_eq!(summary["withProblems"], 0);
        assert_eq!(
            summary["rejectedByManifest"],
            json!({"Thingpress.InvalidCertificate": 1})
        );
        assert_eq!(summary["profile"], self.tag.as_str());
    }

    /// Throttles that outlast the SDK's retry are waited out, not reported as problems.
    fn waits_out_throttles(&self) {
        let faults = Faults::inject(
            &self.stack,
            json!({"iot": {"DescribeCertificate": {"throttle": 0.5},
                           "ListAttachedPolicies": {"throttle": 0.5}}}),
        );
        let stats_before = edge(&self.stack.state, "GET", "/_edge/stats", None);
        let out = check(&self.file, &self.tag, "jsonl");
        let stats = edge(&self.stack.state, "GET", "/_edge/stats", None);
        drop(faults);
        let injected = |stats: &Value| {
            ["DescribeCertificate", "ListAttachedPolicies"]
                .iter()
                .map(|op| {
                    stats["operations"][op]["throttledInjected"]
                        .as_u64()
                        .unwrap_or(0)
                })
                .sum::<u64>()
        };
        assert!(
            injected(&stats) > injected(&stats_before),
            "no throttle injected: {stats}"
        );
        assert!(out.status.success());
        let (summary, entries) = parse_check(&out);
        assert!(entries.is_empty(), "{entries:?}");
        assert_eq!(summary["ok"], 6);
    }

    /// The summary counts the import's things under its type and both groups (the stack is
    /// shared, so the totals are only bounded below).
    fn summary_counts_the_import(&self) {
        let before = summary_json(&[]);
        assert_eq!(before["thingsPerType"][self.type_name()], 6, "{before}");
        assert_eq!(before["thingsPerGroup"][self.group(0)], 6);
        assert_eq!(before["thingsPerGroup"][self.group(1)], 6);
        assert!(before["things"].as_u64().unwrap() >= 6);
        assert!(before["certificates"].as_u64().unwrap() >= 6);
        assert!(before["policies"].as_u64().unwrap() >= 2);
        assert!(before["certificatesByStatus"]["ACTIVE"].as_u64().unwrap() >= 6);
    }

    /// Entry 0 loses a policy, entry 1 a group, entry 2 its certificate.
    async fn remove_attachments(&self) {
        let iot = &self.stack.iot;
        let arn0 = certificate_arn(&self.stack, &self.ids[0].0).await;
        iot.detach_policy()
            .policy_name(self.policy0())
            .target(&arn0)
            .send()
            .await
            .unwrap();
        iot.remove_thing_from_thing_group()
            .thing_group_name(self.group(1))
            .thing_name(self.thing(1))
            .send()
            .await
            .unwrap();
        let arn2 = certificate_arn(&self.stack, &self.ids[2].0).await;
        iot.detach_thing_principal()
            .thing_name(self.thing(2))
            .principal(&arn2)
            .send()
            .await
            .unwrap();
    }

    /// JSONL: exit 1, one entry line per damaged entry naming what is missing, and the counts.
    fn check_names_the_removed_attachments(&self) {
        let out = check(&self.file, &self.tag, "jsonl");
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("thingpress: error: 3 of 6 checked entries"),
            "{stderr}"
        );
        let (summary, entries) = parse_check(&out);
        assert_eq!(
            entries,
            BTreeMap::from([
                (
                    0,
                    json!([{"kind": "policyNotAttached", "policy": self.policy0()}])
                ),
                (1, json!([{"kind": "notInGroup", "group": self.group(1)}])),
                (2, json!([{"kind": "principalNotAttached"}])),
            ])
        );
        assert_eq!(
            (summary["ok"].clone(), summary["withProblems"].clone()),
            (json!(3), json!(3))
        );
        assert_eq!(
            summary["problems"],
            json!({"policyNotAttached": 1, "notInGroup": 1, "principalNotAttached": 1})
        );
    }

    /// The table names the same entries, one line each, then the counts.
    fn table_names_the_removed_attachments(&self) {
        let out = check(&self.file, &self.tag, "table");
        assert_eq!(out.status.code(), Some(1));
        let text = String::from_utf8_lossy(&out.stdout);
        let entry_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("entry ")).collect();
        assert_eq!(
            entry_lines,
            [
                format!(
                    "entry 0 deviceId {} thing {}: policy {} not attached to the certificate",
                    self.ids[0].1,
                    self.thing(0),
                    self.policy0()
                ),
                format!(
                    "entry 1 deviceId {} thing {}: thing not in group {}",
                    self.ids[1].1,
                    self.thing(1),
                    self.group(1)
                ),
                format!(
                    "entry 2 deviceId {} thing {}: certificate not attached to the thing",
                    self.ids[2].1,
                    self.thing(2)
                ),
            ]
        );
    }

    /// The summary sees the removed member; filtered, it lists only the test's type and group.
    fn summary_sees_the_removed_member(&self) {
        let type_name = self.type_name();
        let group1 = self.group(1);
        let after = summary_json(&[]);
        assert_eq!(after["thingsPerType"][type_name], 6);
        assert_eq!(after["thingsPerGroup"][self.group(0)], 6);
        assert_eq!(after["thingsPerGroup"][&group1], 5);
        let filtered = summary_json(&["--thing-type", type_name, "--group", &group1]);
        assert_eq!(filtered["things"], 6, "{filtered}");
        assert_eq!(filtered["thingsWithoutType"], 0);
        assert_eq!(filtered["thingsPerType"], json!({type_name: 6}));
        assert_eq!(filtered["thingsPerGroup"], json!({group1: 5}));
    }
}

/// Runs `thingpress` and fails the test, showing its output, unless it exits 0.
fn thingpress_ok(args: &[&str]) -> Output {
    let out = thingpress(args);
    eprintln!(
        "thingpress {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "thingpress {args:?} failed");
    out
}

/// The report of a run, as `thingpress report --output json` gives it.
fn report_json(run: &str) -> Value {
    let out = thingpress_ok(&["report", run, "--output", "json"]);
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    printed["report"].clone()
}

#[tokio::test]
async fn decommission_dry_run_changes_nothing_and_execute_undoes_the_import_only() {
    // Exclusive: the registry summary before and after must see this test's changes alone.
    let _edge = EDGE.write().await;
    let stack = Stack::new().await;
    let tag = unique("decommission");
    let profile = stack.resources(&tag, 2, 2).await;
    stack
        .put(
            &format!("profiles/{tag}.json"),
            profile.to_string().into_bytes(),
        )
        .await;
    // A thing another tool made, named as the profile would name device "foreign", with a
    // certificate of its own: a list naming it must leave both alone.
    let foreign_pem = fresh_certificates(&format!("{tag}-foreign"), 1).remove(0);
    let foreign_cert = stack
        .iot
        .register_certificate_without_ca()
        .certificate_pem(&foreign_pem)
        .status(aws_sdk_iot::types::CertificateStatus::Active)
        .send()
        .await
        .unwrap();
    let foreign_thing = format!("{tag}-foreign");
    stack
        .iot
        .create_thing()
        .thing_name(&foreign_thing)
        .send()
        .await
        .unwrap();
    stack
        .iot
        .attach_thing_principal()
        .thing_name(&foreign_thing)
        .principal(foreign_cert.certificate_arn().unwrap())
        .send()
        .await
        .unwrap();
    let before = summary_json(&[]);

    let bundle = fresh_certificates(&tag, 5).concat();
    let ids = manifest_ids(bundle.as_bytes(), &pem_options());
    let key = format!("runs/{tag}/manifest/certs.pem");
    stack.put(&key, bundle.into_bytes()).await;
    let run = stack.import(&tag, &key, profile.clone(), false).await;
    assert_eq!(stack.report(&run).await.outcomes.registered, 5);
    let imported = summary_json(&[]);
    assert_ne!(imported, before);

    // The dry run plans every device of the run and changes nothing.
    let dry = format!("{tag}-dry");
    thingpress_ok(&[
        "decommission",
        &tag,
        "--profile",
        &tag,
        "--name",
        &dry,
        "--wait",
    ]);
    let report = report_json(&dry);
    assert_eq!(report["operation"], "decommissionDryRun", "{report}");
    assert_eq!(report["outcomes"]["wouldRemove"], 5, "{report}");
    assert_eq!(
        report["outcomes"]["actions"],
        json!({"detachPolicy": 10, "removeFromGroup": 10, "detachCertificate": 5,
               "deactivateCertificate": 5, "deleteCertificate": 5, "deleteThing": 5}),
        "{report}"
    );
    assert_eq!(summary_json(&[]), imported, "a dry run changes nothing");

    // Executed: the registry is as before the import.
    let executed = format!("{tag}-execute");
    let out = thingpress_ok(&[
        "decommission",
        &tag,
        "--profile",
        &tag,
        "--execute",
        "--name",
        &executed,
        "--wait",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("changes made"),
        "the summary lists the changes"
    );
    assert_eq!(report_json(&executed)["outcomes"]["removed"], 5);
    assert_eq!(
        summary_json(&[]),
        before,
        "the registry is back to its state before"
    );
    for (certificate, _) in &ids {
        let gone = stack
            .iot
            .describe_certificate()
            .certificate_id(certificate)
            .send()
            .await;
        assert!(gone.is_err(), "certificate {certificate} deleted");
    }

    // Run again on the same run: nothing is left to remove, nothing is done twice.
    let again = format!("{tag}-again");
    thingpress_ok(&[
        "decommission",
        &tag,
        "--profile",
        &tag,
        "--execute",
        "--name",
        &again,
        "--wait",
    ]);
    let report = report_json(&again);
    assert_eq!(report["outcomes"]["alreadyRemoved"], 5, "{report}");
    assert!(report["outcomes"].get("actions").is_none(), "{report}");

    // A list naming the foreign thing (by device id and certificate) leaves it alone, named.
    let list = std::env::temp_dir().join(format!("{tag}-rma.csv"));
    std::fs::write(
        &list,
        format!(
            "certificateId,deviceId\n{},foreign\n",
            foreign_cert.certificate_id().unwrap()
        ),
    )
    .unwrap();
    let rma = format!("{tag}-rma");
    thingpress_ok(&[
        "decommission",
        list.to_str().unwrap(),
        "--profile",
        &tag,
        "--execute",
        "--name",
        &rma,
        "--wait",
    ]);
    std::fs::remove_file(&list).ok();
    let report = report_json(&rma);
    assert_eq!(
        report["outcomes"]["rejectedByError"],
        json!({"Thingpress.NotThingpress": 1}),
        "{report}"
    );
    let principals = stack
        .iot
        .list_thing_principals()
        .thing_name(&foreign_thing)
        .send()
        .await
        .unwrap();
    assert_eq!(
        principals.principals(),
        [foreign_cert.certificate_arn().unwrap().to_owned()],
        "the foreign thing keeps its certificate"
    );
    assert_eq!(summary_json(&[]), before);
}
