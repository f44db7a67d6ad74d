//! An EMF line read back and checked against the specification on its own terms, without the
//! builder's types: the tests assert with this, so a builder bug cannot hide behind itself.
//!
//! The rules (CloudWatch User Guide, "Specification: Embedded metric format"): the root is a
//! JSON object whose `_aws` member holds `Timestamp` (milliseconds since the epoch) and
//! `CloudWatchMetrics`, an array of directives; a directive holds exactly `Namespace`,
//! `Dimensions` (an array of dimension sets, each at most 30 names of root members whose
//! values are strings) and `Metrics` (at most 100 definitions, each a `Name` of a root member
//! whose value is a number or an array of at most 100 numbers, an optional `Unit` of
//! CloudWatch's standard units and an optional `StorageResolution` of 1 or 60).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::emf::{
    MAX_DIMENSION_VALUE_CHARS, MAX_DIMENSIONS_PER_SET, MAX_METRICS_PER_DIRECTIVE, METADATA_MEMBER,
    is_custom_namespace, is_name, is_value,
};

/// CloudWatch's standard units (`StandardUnit`), the only ones a metric definition may name.
pub const STANDARD_UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Values one metric member may hold as an array.
const MAX_VALUES_PER_METRIC: usize = 100;

/// What is wrong with `line` as an EMF document; empty when CloudWatch would extract it.
pub fn check_line(line: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if line.contains('\n') {
        problems.push("the line holds a newline: CloudWatch Logs would split it".to_owned());
    }
    let root: Value = match serde_json::from_str(line) {
        Ok(root) => root,
        Err(e) => {
            problems.push(format!("not JSON: {e}"));
            return problems;
        }
    };
    let Some(root) = root.as_object() else {
        return vec!["the root is not a JSON object".to_owned()];
    };
    let Some(metadata) = root.get(METADATA_MEMBER).and_then(Value::as_object) else {
        return vec!["no _aws object".to_owned()];
    };
    only_members(
        metadata,
        "_aws",
        &["Timestamp", "CloudWatchMetrics"],
        &mut problems,
    );
    if !metadata.get("Timestamp").is_some_and(Value::is_u64) {
        problems.push("_aws.Timestamp is not milliseconds since the epoch".to_owned());
    }
    let directives = match metadata.get("CloudWatchMetrics").and_then(Value::as_array) {
        Some(directives) if !directives.is_empty() => directives,
        _ => {
            problems.push("_aws.CloudWatchMetrics is not a non-empty array".to_owned());
            return problems;
        }
    };
    for (i, directive) in directives.iter().enumerate() {
        let at = format!("_aws.CloudWatchMetrics[{i}]");
        let Some(directive) = directive.as_object() else {
            problems.push(format!("{at} is not an object"));
            continue;
        };
        only_members(
            directive,
            &at,
            &["Namespace", "Dimensions", "Metrics"],
            &mut problems,
        );
        match directive.get("Namespace").and_then(Value::as_str) {
            Some(ns) if is_custom_namespace(ns) => {}
            other => problems.push(format!(
                "{at}.Namespace {other:?} is not a custom namespace"
            )),
        }
        check_dimensions(root, directive.get("Dimensions"), &at, &mut problems);
        check_metrics(root, directive.get("Metrics"), &at, &mut problems);
    }
    problems
}

fn only_members(
    object: &Map<String, Value>,
    at: &str,
    allowed: &[&str],
    problems: &mut Vec<String>,
) {
    for key in object.keys() {
        if !allowed.contains(&key.as_str()) {
            problems.push(format!(
                "{at} has a member {key:?} the specification does not define"
            ));
        }
    }
}

fn check_dimensions(
    root: &Map<String, Value>,
    dimensions: Option<&Value>,
    at: &str,
    problems: &mut Vec<String>,
) {
    let Some(sets) = dimensions.and_then(Value::as_array) else {
        problems.push(format!("{at}.Dimensions is not an array"));
        return;
    };
    for (j, set) in sets.iter().enumerate() {
        let Some(set) = set.as_array() else {
            problems.push(format!("{at}.Dimensions[{j}] is not an array"));
            continue;
        };
        if set.len() > MAX_DIMENSIONS_PER_SET {
            problems.push(format!(
                "{at}.Dimensions[{j}] holds {} dimensions (at most {MAX_DIMENSIONS_PER_SET})",
                set.len()
            ));
        }
        for name in set {
            let Some(name) = name.as_str() else {
                problems.push(format!("{at}.Dimensions[{j}]: {name} is not a name"));
                continue;
            };
            match root.get(name).and_then(Value::as_str) {
                Some(value)
                    if !value.is_empty()
                        && value.chars().count() <= MAX_DIMENSION_VALUE_CHARS
                        && is_name(name) => {}
                Some(value) => problems.push(format!(
                    "dimension {name:?}: name or value {value:?} out of CloudWatch's limits"
                )),
                None => problems.push(format!(
                    "dimension {name:?} has no string member at the root"
                )),
            }
        }
    }
}

fn check_metrics(
    root: &Map<String, Value>,
    metrics: Option<&Value>,
    at: &str,
    problems: &mut Vec<String>,
) {
    let Some(metrics) = metrics.and_then(Value::as_array) else {
        problems.push(format!("{at}.Metrics is not an array"));
        return;
    };
    if metrics.len() > MAX_METRICS_PER_DIRECTIVE {
        problems.push(format!(
            "{at}.Metrics lists {} metrics (at most {MAX_METRICS_PER_DIRECTIVE})",
            metrics.len()
        ));
    }
    for (k, definition) in metrics.iter().enumerate() {
        let here = format!("{at}.Metrics[{k}]");
        let Some(definition) = definition.as_object() else {
            problems.push(format!("{here} is not an object"));
            continue;
        };
        only_members(
            definition,
            &here,
            &["Name", "Unit", "StorageResolution"],
            problems,
        );
        if let Some(unit) = definition.get("Unit")
            && !unit.as_str().is_some_and(|u| STANDARD_UNITS.contains(&u))
        {
            problems.push(format!("{here}.Unit {unit} is not a CloudWatch unit"));
        }
        if let Some(resolution) = definition.get("StorageResolution")
            && !matches!(resolution.as_u64(), Some(1 | 60))
        {
            problems.push(format!(
                "{here}.StorageResolution {resolution} is not 1 or 60"
            ));
        }
        let Some(name) = definition.get("Name").and_then(Value::as_str) else {
            problems.push(format!("{here}.Name is not a string"));
            continue;
        };
        if !is_name(name) {
            problems.push(format!("{here}.Name {name:?} is not 1 to 255 characters"));
        }
        match root.get(name) {
            Some(Value::Number(n)) if n.as_f64().is_some_and(is_value) => {}
            Some(Value::Array(values))
                if values.len() <= MAX_VALUES_PER_METRIC
                    && values.iter().all(|v| v.as_f64().is_some_and(is_value)) => {}
            Some(other) => problems.push(format!(
                "metric {name:?}: {other} is not a number within ±2^360"
            )),
            None => problems.push(format!("metric {name:?} has no member at the root")),
        }
    }
}

/// One metric as a line declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadMetric {
    /// Its value (the first, if the member is an array).
    pub value: f64,
    /// Its unit, if declared.
    pub unit: Option<String>,
    /// Its namespace.
    pub namespace: String,
    /// Every dimension set it is published under, over all directives naming it.
    pub dimension_sets: Vec<Vec<String>>,
}

/// A valid EMF line, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// `_aws.Timestamp`.
    pub timestamp_ms: u64,
    /// The metrics by name.
    pub metrics: BTreeMap<String, ReadMetric>,
    /// Every root member (dimension values, metric values, properties), `_aws` included.
    pub members: Map<String, Value>,
}

impl Reading {
    /// Reads `line`, refusing it with [`check_line`]'s problems.
    pub fn parse(line: &str) -> Result<Reading, Vec<String>> {
        let problems = check_line(line);
        if !problems.is_empty() {
            return Err(problems);
        }
        let members: Map<String, Value> =
            serde_json::from_str(line).map_err(|e| vec![e.to_string()])?;
        let metadata = &members[METADATA_MEMBER];
        let mut metrics: BTreeMap<String, ReadMetric> = BTreeMap::new();
        for directive in metadata["CloudWatchMetrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let namespace = directive["Namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let sets: Vec<Vec<String>> = directive["Dimensions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|set| {
                    set.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|d| d.as_str().map(str::to_owned))
                        .collect()
                })
                .collect();
            for definition in directive["Metrics"].as_array().into_iter().flatten() {
                let name = definition["Name"].as_str().unwrap_or_default().to_owned();
                let value = match &members[&name] {
                    Value::Array(values) => values.first().and_then(Value::as_f64),
                    other => other.as_f64(),
                }
                .unwrap_or_default();
                let entry = metrics.entry(name).or_insert_with(|| ReadMetric {
                    value,
                    unit: definition["Unit"].as_str().map(str::to_owned),
                    namespace: namespace.clone(),
                    dimension_sets: Vec::new(),
                });
                entry.dimension_sets.extend(sets.iter().cloned());
            }
        }
        Ok(Reading {
            timestamp_ms: metadata["Timestamp"].as_u64().unwrap_or_default(),
            metrics,
            members,
        })
    }

    /// A dimension's (or any string member's) value.
    pub fn dimension(&self, name: &str) -> Option<&str> {
        self.members.get(name).and_then(Value::as_str)
    }

    /// A metric's value.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).map(|m| m.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"_aws":{"Timestamp":1574109732004,"CloudWatchMetrics":[{"Namespace":"lambda-function-metrics","Dimensions":[["functionVersion"]],"Metrics":[{"Name":"time","Unit":"Milliseconds","StorageResolution":60}]}]},"functionVersion":"$LATEST","time":100,"requestId":"989ffbf8-9ace-4817-a57c-e4dd734019ee"}"#;

    #[test]
    fn the_specifications_example_passes() {
        assert_eq!(check_line(GOOD), Vec::<String>::new());
        let read = Reading::parse(GOOD).unwrap();
        assert_eq!(read.value("time"), Some(100.0));
        assert_eq!(read.dimension("functionVersion"), Some("$LATEST"));
        assert_eq!(
            read.metrics["time"].dimension_sets,
            vec![vec!["functionVersion"]]
        );
    }

    fn broken(from: &str, to: &str) -> Vec<String> {
        let line = GOOD.replacen(from, to, 1);
        assert_ne!(line, GOOD, "{from} is in the example");
        check_line(&line)
    }

    fn caught(problems: Vec<String>, needle: &str) {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "expected {needle:?} in {problems:?}"
        );
    }

    #[test]
    fn each_rule_is_checked() {
        caught(check_line("not json"), "not JSON");
        caught(check_line("[1]"), "not a JSON object");
        caught(check_line(r#"{"a":1}"#), "no _aws");
        caught(
            broken(r#""Timestamp":1574109732004"#, r#""Timestamp":"now""#),
            "Timestamp",
        );
        caught(
            broken(
                r#""Namespace":"lambda-function-metrics""#,
                r#""Namespace":"AWS/Lambda""#,
            ),
            "custom namespace",
        );
        caught(
            broken(r#""functionVersion":"$LATEST""#, r#""functionVersion":7"#),
            "no string member",
        );
        caught(
            broken(r#""time":100"#, r#""time":"100""#),
            "is not a number",
        );
        caught(
            broken(r#""Unit":"Milliseconds""#, r#""Unit":"ms""#),
            "not a CloudWatch unit",
        );
        caught(
            broken(r#""StorageResolution":60"#, r#""StorageResolution":5"#),
            "1 or 60",
        );
        caught(
            broken(r#""Namespace":"#, r#""Extra":1,"Namespace":"#),
            "does not define",
        );
        caught(broken(r#","requestId""#, ",\n\"requestId\""), "newline");
        let many: Vec<String> = (0..101)
            .map(|i| format!(r#"{{"Name":"time{i}"}}"#))
            .collect();
        let values: String = (0..101).map(|i| format!(r#","time{i}":1"#)).collect();
        let line = GOOD
            .replacen(
                r#"[{"Name":"time","Unit":"Milliseconds","StorageResolution":60}]"#,
                &format!("[{}]", many.join(",")),
                1,
            )
            .replacen(r#""time":100"#, &format!(r#""time":100{values}"#), 1);
        caught(check_line(&line), "at most 100");
        let dims: Vec<String> = (0..31).map(|i| format!("\"d{i}\"")).collect();
        let values: String = (0..31).map(|i| format!(r#","d{i}":"v""#)).collect();
        let line = GOOD
            .replacen(
                r#"[["functionVersion"]]"#,
                &format!("[[{}]]", dims.join(",")),
                1,
            )
            .replacen(r#""time":100"#, &format!(r#""time":100{values}"#), 1);
        caught(check_line(&line), "at most 30");
    }
}
