//! One embedded metric format document: the root members (dimension values, metric values,
//! properties) and the `_aws` metadata telling CloudWatch Logs which members are metrics, under
//! which namespace and dimension sets. Built here, written as one JSON line, and refused (an
//! [`EmfError`]) rather than written when CloudWatch would drop or reject it: EMF fails silently,
//! so a line that breaks a rule is a metric nobody sees.
//!
//! The limits are the specification's (`CloudWatch_Embedded_Metric_Format_Specification`): at
//! most [`MAX_METRICS_PER_DIRECTIVE`] metrics per directive and [`MAX_DIMENSIONS_PER_SET`]
//! dimensions per set, dimension members strings and metric members numbers; and CloudWatch's
//! own (`PutMetricData`): names of 1 to 255 characters, dimension values of 1 to 1024.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::{Dimension, Metric, Unit};

/// Metrics one directive may list; a document with more gets more directives.
pub const MAX_METRICS_PER_DIRECTIVE: usize = 100;
/// Dimensions one dimension set may hold.
pub const MAX_DIMENSIONS_PER_SET: usize = 30;
/// The longest metric, dimension or namespace name CloudWatch accepts.
pub(crate) const MAX_NAME_CHARS: usize = 255;
/// The longest dimension value CloudWatch accepts.
pub(crate) const MAX_DIMENSION_VALUE_CHARS: usize = 1024;
/// The largest magnitude CloudWatch takes for a value, 2^360 (`PutMetricData`).
pub(crate) const MAX_ABS_VALUE: f64 = 2.348_542_582_773_833_2e108;
/// The root member holding the metadata.
pub(crate) const METADATA_MEMBER: &str = "_aws";

/// Why a document cannot be written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmfError {
    /// Nothing to publish.
    #[error("an EMF document needs at least one metric")]
    NoMetrics,
    /// Not a custom CloudWatch namespace.
    #[error(
        "namespace {0:?} is not a custom CloudWatch namespace (1 to 255 of A-Z a-z 0-9 . _ # : / -, not AWS/)"
    )]
    Namespace(String),
    /// A metric, dimension or property name CloudWatch would not take.
    #[error("{what} name {name:?} is not 1 to 255 characters")]
    Name {
        /// What the name is of.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// One root member meant twice (a metric set twice, a metric named like a dimension…).
    #[error("{0:?} is set twice in one document")]
    Duplicate(String),
    /// A value CloudWatch does not take (NaN, infinity, beyond ±2^360).
    #[error("metric {name}: {value} is not a finite number within ±2^360")]
    NotFinite {
        /// The metric.
        name: String,
        /// Its value.
        value: f64,
    },
    /// A dimension set names a dimension the document gives no value.
    #[error("metric {metric}: dimension {dimension} has no value in the document")]
    MissingDimension {
        /// The metric.
        metric: String,
        /// The dimension without a value.
        dimension: String,
    },
    /// A dimension set too large or empty of meaning.
    #[error("metric {metric}: a dimension set of {size} dimensions (at most 30, none repeated)")]
    DimensionSet {
        /// The metric.
        metric: String,
        /// How many the set holds.
        size: usize,
    },
    /// A dimension value CloudWatch would not take.
    #[error("dimension {dimension}: value {value:?} is not 1 to 1024 characters")]
    DimensionValue {
        /// The dimension.
        dimension: String,
        /// Its value.
        value: String,
    },
}

/// One metric of a document.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    name: String,
    unit: Unit,
    dimension_sets: Vec<Vec<String>>,
    value: f64,
}

/// An EMF document under construction: one log line, one point per metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    namespace: String,
    timestamp_ms: u64,
    dimensions: BTreeMap<String, String>,
    metrics: Vec<Entry>,
    properties: BTreeMap<String, Value>,
}

impl Document {
    /// An empty document in `namespace`, its points at `timestamp_ms` (Unix epoch).
    pub fn new(namespace: impl Into<String>, timestamp_ms: u64) -> Document {
        Document {
            namespace: namespace.into(),
            timestamp_ms,
            dimensions: BTreeMap::new(),
            metrics: Vec::new(),
            properties: BTreeMap::new(),
        }
    }

    /// Gives a catalogue dimension its value for every metric of the document.
    pub fn dimension(&mut self, dimension: Dimension, value: impl Into<String>) -> &mut Self {
        self.dimension_named(dimension.as_str(), value)
    }

    /// Gives a dimension its value by name.
    pub fn dimension_named(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        self.dimensions.insert(name.to_owned(), value.into());
        self
    }

    /// Adds a catalogue metric's point, under its unit and dimension sets.
    pub fn put(&mut self, metric: Metric, value: f64) -> &mut Self {
        let sets: Vec<Vec<&str>> = metric
            .dimension_sets()
            .iter()
            .map(|set| set.iter().map(|d| d.as_str()).collect())
            .collect();
        let sets: Vec<&[&str]> = sets.iter().map(Vec::as_slice).collect();
        self.put_named(metric.as_str(), metric.unit(), &sets, value)
    }

    /// Adds a metric's point by name, unit and dimension sets (dimension names).
    pub fn put_named(
        &mut self,
        name: &str,
        unit: Unit,
        dimension_sets: &[&[&str]],
        value: f64,
    ) -> &mut Self {
        self.metrics.push(Entry {
            name: name.to_owned(),
            unit,
            dimension_sets: dimension_sets
                .iter()
                .map(|set| set.iter().map(|d| (*d).to_owned()).collect())
                .collect(),
            value,
        });
        self
    }

    /// Adds a property: a root member that is neither metric nor dimension, searchable in
    /// CloudWatch Logs Insights (a run id, a chunk number) at no metric's cost.
    pub fn property(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.properties.insert(name.to_owned(), value.into());
        self
    }

    /// Whether the document holds no metric (there is nothing to write).
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    /// The document as one line of JSON (no newline), or why CloudWatch would not take it.
    pub fn to_line(&self) -> Result<String, EmfError> {
        self.check()?;
        // Metrics sharing their dimension sets share a directive, up to the limit per directive.
        let mut groups: Vec<(&[Vec<String>], Vec<&Entry>)> = Vec::new();
        for entry in &self.metrics {
            match groups
                .iter_mut()
                .find(|(sets, _)| *sets == entry.dimension_sets.as_slice())
            {
                Some((_, entries)) => entries.push(entry),
                None => groups.push((&entry.dimension_sets, vec![entry])),
            }
        }
        let directives = groups
            .iter()
            .flat_map(|(sets, entries)| {
                entries
                    .chunks(MAX_METRICS_PER_DIRECTIVE)
                    .map(|chunk| Directive {
                        namespace: &self.namespace,
                        dimensions: sets,
                        metrics: chunk
                            .iter()
                            .map(|e| Definition {
                                name: &e.name,
                                unit: e.unit.as_str(),
                            })
                            .collect(),
                    })
            })
            .collect();
        let mut members: BTreeMap<&str, Value> = BTreeMap::new();
        for (name, value) in &self.properties {
            members.insert(name, value.clone());
        }
        for (name, value) in &self.dimensions {
            members.insert(name, Value::String(value.clone()));
        }
        for entry in &self.metrics {
            members.insert(&entry.name, Value::from(entry.value));
        }
        let line = Line {
            metadata: Metadata {
                timestamp: self.timestamp_ms,
                directives,
            },
            members,
        };
        // Strings, finite numbers and maps only: serialising cannot fail.
        Ok(serde_json::to_string(&line).unwrap_or_default())
    }

    /// The specification's rules and CloudWatch's limits, before anything is written.
    fn check(&self) -> Result<(), EmfError> {
        if !is_custom_namespace(&self.namespace) {
            return Err(EmfError::Namespace(self.namespace.clone()));
        }
        if self.metrics.is_empty() {
            return Err(EmfError::NoMetrics);
        }
        // Every root member once: `_aws`, dimensions, metrics, properties.
        let mut members: BTreeSet<&str> = BTreeSet::from([METADATA_MEMBER]);
        let named = |name: &str, what: &'static str| -> Result<(), EmfError> {
            if !is_name(name) {
                return Err(EmfError::Name {
                    what,
                    name: name.to_owned(),
                });
            }
            Ok(())
        };
        for (name, value) in &self.dimensions {
            named(name, "dimension")?;
            if value.is_empty() || value.chars().count() > MAX_DIMENSION_VALUE_CHARS {
                return Err(EmfError::DimensionValue {
                    dimension: name.clone(),
                    value: value.clone(),
                });
            }
        }
        for entry in &self.metrics {
            named(&entry.name, "metric")?;
        }
        for name in self.properties.keys() {
            named(name, "property")?;
        }
        let names = self
            .dimensions
            .keys()
            .chain(self.metrics.iter().map(|e| &e.name))
            .chain(self.properties.keys());
        for name in names {
            if !members.insert(name) {
                return Err(EmfError::Duplicate(name.clone()));
            }
        }
        for entry in &self.metrics {
            if !is_value(entry.value) {
                return Err(EmfError::NotFinite {
                    name: entry.name.clone(),
                    value: entry.value,
                });
            }
            for set in &entry.dimension_sets {
                let distinct: BTreeSet<&String> = set.iter().collect();
                if set.len() > MAX_DIMENSIONS_PER_SET || distinct.len() != set.len() {
                    return Err(EmfError::DimensionSet {
                        metric: entry.name.clone(),
                        size: set.len(),
                    });
                }
                if let Some(missing) = set.iter().find(|d| !self.dimensions.contains_key(*d)) {
                    return Err(EmfError::MissingDimension {
                        metric: entry.name.clone(),
                        dimension: missing.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A finite number within ±2^360.
pub(crate) fn is_value(value: f64) -> bool {
    value.is_finite() && value.abs() <= MAX_ABS_VALUE
}

/// 1 to 255 characters.
pub(crate) fn is_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= MAX_NAME_CHARS
}

/// A namespace CloudWatch takes for custom metrics: 1 to 255 of `A-Z a-z 0-9 . _ # : / -`, not
/// starting with `:` nor in AWS's own `AWS/` namespaces.
pub(crate) fn is_custom_namespace(namespace: &str) -> bool {
    is_name(namespace)
        && namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._#:/-".contains(c))
        && !namespace.starts_with(':')
        && !namespace.starts_with("AWS/")
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(rename = "_aws")]
    metadata: Metadata<'a>,
    #[serde(flatten)]
    members: BTreeMap<&'a str, Value>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    #[serde(rename = "Timestamp")]
    timestamp: u64,
    #[serde(rename = "CloudWatchMetrics")]
    directives: Vec<Directive<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    namespace: &'a str,
    dimensions: &'a [Vec<String>],
    metrics: Vec<Definition<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Definition<'a> {
    name: &'a str,
    unit: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NAMESPACE, Reading, check_line};
    use proptest::prelude::*;

    fn register_like() -> Document {
        let mut doc = Document::new(NAMESPACE, 1_700_000_000_123);
        doc.dimension(Dimension::Stack, "tp-prod")
            .dimension(Dimension::Api, "CreateThing")
            .put(Metric::IotCalls, 12.0)
            .put(Metric::IotThrottles, 2.0)
            .property("runId", "run-1");
        doc
    }

    #[test]
    fn a_line_reads_back_with_its_namespace_dimensions_units_and_values() {
        let line = register_like().to_line().unwrap();
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(check_line(&line), Vec::<String>::new(), "{line}");
        let read = Reading::parse(&line).unwrap();
        assert_eq!(read.timestamp_ms, 1_700_000_000_123);
        assert_eq!(read.dimension("Stack"), Some("tp-prod"));
        assert_eq!(read.dimension("Api"), Some("CreateThing"));
        let calls = &read.metrics["IotCalls"];
        assert_eq!(calls.value, 12.0);
        assert_eq!(calls.unit.as_deref(), Some("Count"));
        assert_eq!(calls.namespace, NAMESPACE);
        assert_eq!(calls.dimension_sets, vec![vec!["Stack", "Api"]]);
        // Throttles also under the stack alone: their own directive, the same member.
        let throttles = &read.metrics["IotThrottles"];
        assert_eq!(throttles.value, 2.0);
        assert_eq!(
            throttles.dimension_sets,
            vec![vec!["Stack", "Api"], vec!["Stack"]]
        );
        // A property is a root member, not a metric.
        assert_eq!(read.members["runId"], "run-1");
        assert!(!read.metrics.contains_key("runId"));
        let raw: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            raw["_aws"]["CloudWatchMetrics"].as_array().unwrap().len(),
            2
        );
    }

    #[test]
    fn more_than_a_hundred_metrics_take_more_directives() {
        let mut doc = Document::new(NAMESPACE, 1);
        doc.dimension(Dimension::Stack, "s");
        for i in 0..250 {
            doc.put_named(&format!("m{i}"), Unit::Count, &[&["Stack"]], f64::from(i));
        }
        let line = doc.to_line().unwrap();
        assert_eq!(check_line(&line), Vec::<String>::new());
        let raw: Value = serde_json::from_str(&line).unwrap();
        let sizes: Vec<usize> = raw["_aws"]["CloudWatchMetrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["Metrics"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        assert_eq!(Reading::parse(&line).unwrap().metrics.len(), 250);
    }

    #[test]
    fn what_cloudwatch_would_drop_is_refused_before_it_is_written() {
        let err = |doc: &Document| doc.to_line().unwrap_err();
        assert_eq!(err(&Document::new(NAMESPACE, 1)), EmfError::NoMetrics);
        let mut aws = register_like();
        aws.namespace = "AWS/States".into();
        assert!(matches!(err(&aws), EmfError::Namespace(_)));
        let mut spaced = register_like();
        spaced.namespace = "Thing press".into();
        assert!(matches!(err(&spaced), EmfError::Namespace(_)));

        let mut twice = register_like();
        twice.put(Metric::IotCalls, 1.0);
        assert_eq!(err(&twice), EmfError::Duplicate("IotCalls".into()));
        let mut clash = register_like();
        clash.property("Stack", "x");
        assert_eq!(err(&clash), EmfError::Duplicate("Stack".into()));
        let mut metadata = register_like();
        metadata.property("_aws", 1);
        assert_eq!(err(&metadata), EmfError::Duplicate("_aws".into()));

        for wild in [f64::NAN, f64::INFINITY, -1e109] {
            let mut doc = register_like();
            doc.put(Metric::RunAge, wild);
            assert!(matches!(err(&doc), EmfError::NotFinite { .. }), "{wild}");
        }

        let mut no_api = Document::new(NAMESPACE, 1);
        no_api
            .dimension(Dimension::Stack, "s")
            .put(Metric::IotCalls, 1.0);
        assert_eq!(
            err(&no_api),
            EmfError::MissingDimension {
                metric: "IotCalls".into(),
                dimension: "Api".into()
            }
        );

        let mut empty_value = register_like();
        empty_value.dimension(Dimension::Stack, "");
        assert!(matches!(err(&empty_value), EmfError::DimensionValue { .. }));

        let names: Vec<String> = (0..=MAX_DIMENSIONS_PER_SET)
            .map(|i| format!("d{i}"))
            .collect();
        let set: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut wide = Document::new(NAMESPACE, 1);
        for name in &names {
            wide.dimension_named(name, "v");
        }
        wide.put_named("x", Unit::Count, &[&set], 1.0);
        assert!(matches!(
            err(&wide),
            EmfError::DimensionSet { size: 31, .. }
        ));
        // Thirty is allowed.
        let mut thirty = Document::new(NAMESPACE, 1);
        for name in &names {
            thirty.dimension_named(name, "v");
        }
        thirty.put_named("x", Unit::Count, &[&set[..MAX_DIMENSIONS_PER_SET]], 1.0);
        assert_eq!(check_line(&thirty.to_line().unwrap()), Vec::<String>::new());

        let long = "n".repeat(MAX_NAME_CHARS + 1);
        let mut long_name = register_like();
        long_name.put_named(&long, Unit::Count, &[&["Stack"]], 1.0);
        assert!(matches!(
            err(&long_name),
            EmfError::Name { what: "metric", .. }
        ));
    }

    #[test]
    fn every_catalogue_metric_can_be_written_with_its_dimensions() {
        let mut doc = Document::new(NAMESPACE, 5);
        doc.dimension(Dimension::Stack, "s")
            .dimension(Dimension::Api, "AttachPolicy");
        for (i, metric) in Metric::ALL.iter().enumerate() {
            doc.put(*metric, i as f64);
        }
        let line = doc.to_line().unwrap();
        let read = Reading::parse(&line).unwrap();
        for metric in Metric::ALL {
            let got = &read.metrics[metric.as_str()];
            assert_eq!(got.unit.as_deref(), Some(metric.unit().as_str()));
            let want: Vec<Vec<String>> = metric
                .dimension_sets()
                .iter()
                .map(|s| s.iter().map(|d| d.as_str().to_owned()).collect())
                .collect();
            assert_eq!(got.dimension_sets, want, "{metric}");
        }
    }

    proptest! {
        /// Whatever goes in, the builder either refuses it or writes a line the specification
        /// check accepts and that reads back to the same values.
        #[test]
        fn built_lines_are_valid_or_refused(
            stack in ".{0,40}",
            values in proptest::collection::vec(
                (0usize..Metric::ALL.len(), prop_oneof![any::<f64>(), 0.0..1e9f64]), 0..30),
            property in "[a-zA-Z_]{0,12}",
        ) {
            let mut doc = Document::new(NAMESPACE, 42);
            doc.dimension(Dimension::Stack, stack.clone()).dimension(Dimension::Api, "CreateThing");
            if !property.is_empty() {
                doc.property(&property, "p");
            }
            for (i, value) in &values {
                doc.put(Metric::ALL[*i], *value);
            }
            if let Ok(line) = doc.to_line() {
                prop_assert_eq!(check_line(&line), Vec::<String>::new());
                let read = Reading::parse(&line).unwrap();
                prop_assert_eq!(read.dimension("Stack"), Some(stack.as_str()));
                // A metric set twice is refused, so each one read back was set once.
                for (i, value) in &values {
                    let read = read.metrics[Metric::ALL[*i].as_str()].value;
                    prop_assert!((read - value).abs() <= value.abs() * 1e-15, "{} != {}", read, value);
                }
            }
        }
    }
}
