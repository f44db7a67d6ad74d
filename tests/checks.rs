//! What the template and ASL check suites share: loading the SAM template, walking YAML, and
//! asserting that a check is clean on the real files or complains about a broken copy.

#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a missing file or key fails the test loudly"
)]

use std::path::Path;

use serde_norway::Value as Yaml;

/// infra/template.yaml, with CloudFormation's short tags as tagged values.
pub fn template() -> Yaml {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
    let text = std::fs::read_to_string(&path).expect("infra/template.yaml is readable");
    serde_norway::from_str(&text).expect("infra/template.yaml is YAML with CloudFormation tags")
}

/// statemachine/import.asl.json, parsed.
pub fn asl() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../statemachine/import.asl.json");
    let text = std::fs::read_to_string(&path).expect("statemachine/import.asl.json is readable");
    serde_json::from_str(&text).expect("statemachine/import.asl.json is valid JSON")
}

/// The argument of an intrinsic, short (`!Sub x`) or long (`{"Fn::Sub": x}`, `{"Ref": x}`).
pub fn intrinsic<'a>(value: &'a Yaml, name: &str) -> Option<&'a Yaml> {
    match value {
        Yaml::Tagged(tagged) if tagged.tag == format!("!{name}").as_str() => Some(&tagged.value),
        Yaml::Mapping(map) if map.len() == 1 => map
            .get(name)
            .or_else(|| map.get(format!("Fn::{name}").as_str())),
        _ => None,
    }
}

/// A mapping's value by key.
pub fn get<'a>(value: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    value.as_mapping().and_then(|m| m.get(key))
}

/// A YAML value, mutably, by a path of mapping keys (to break a copy of the template).
pub fn yaml_at<'a>(value: &'a mut Yaml, path: &[&str]) -> &'a mut Yaml {
    path.iter().fold(value, |v, key| {
        v.as_mapping_mut()
            .and_then(|m| m.get_mut(*key))
            .unwrap_or_else(|| panic!("no {key} in the template"))
    })
}

/// The check found nothing.
pub fn assert_clean(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "problems:\n  {}",
        problems.join("\n  ")
    );
}

/// The check complained about `needle`.
pub fn assert_caught(problems: Vec<String>, needle: &str) {
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a problem mentioning {needle:?}, got {problems:?}"
    );
}
