//! The CloudWatch metrics the Thingpress Lambdas emit, as embedded metric format (EMF) lines on
//! stdout: Lambda ships stdout to the function's log group, where CloudWatch Logs extracts the
//! metrics, so emitting needs no call, no client and no IAM grant beyond the logs Lambda already
//! writes. The template's dashboard and alarm read them; `tests/template.rs` holds both against
//! [`Metric`], so a metric renamed here fails a test until the template follows.
//!
//! - this file: the catalogue, [`Metric`] with its unit and dimension sets, [`Dimension`],
//!   [`Unit`], the [`NAMESPACE`] and the variable naming the stack ([`STACK_ENV_VAR`]).
//! - `emf`: [`Document`], one EMF line built and checked against the specification's limits.
//! - `spec`: [`check_line`] and [`Reading`], an EMF line read back and checked against the
//!   specification on its own, independent of the builder (what the tests assert with).
//! - `emitter`: [`Emitter`], the stack's dimension and where lines go (stdout, a capture for
//!   tests, or nowhere).

mod emf;
mod emitter;
mod spec;

pub use emf::{Document, EmfError, MAX_DIMENSIONS_PER_SET, MAX_METRICS_PER_DIRECTIVE};
pub use emitter::{Captured, Emitter};
pub use spec::{ReadMetric, Reading, STANDARD_UNITS, check_line};

/// The CloudWatch namespace of every Thingpress metric.
pub const NAMESPACE: &str = "Thingpress";

/// The environment variable holding the stack's name (the template sets it to
/// `AWS::StackName`): the value of the [`Dimension::Stack`] dimension. Unset, nothing is emitted.
pub const STACK_ENV_VAR: &str = "STACK_NAME";

/// A dimension of Thingpress metrics; its name is the variant's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dimension {
    /// The stack whose functions emitted the metric: one dashboard per stack.
    Stack,
    /// The AWS IoT operation (`RegisterCertificateWithoutCA`, …) of a per-API metric.
    Api,
}

impl Dimension {
    /// The dimension's name in CloudWatch.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Stack => "Stack",
            Dimension::Api => "Api",
        }
    }
}

/// A CloudWatch unit (the `StandardUnit` names the metrics use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// A count of things (entries, calls).
    Count,
    /// Things per second.
    CountPerSecond,
    /// A duration in milliseconds.
    Milliseconds,
    /// A duration in seconds.
    Seconds,
}

impl Unit {
    /// The unit's name in CloudWatch.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::CountPerSecond => "Count/Second",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
        }
    }
}

/// Which function emits a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Split, once per run it splits.
    Split,
    /// Register, once per invocation on a chunk.
    Register,
}

macro_rules! metrics {
    ($( $(#[$doc:meta])* $variant:ident {
        unit: $unit:ident,
        dimensions: [$( [$( $dim:ident ),*] ),+],
        by: $by:ident $(,)?
    } ),+ $(,)?) => {
        /// A Thingpress metric; its CloudWatch name is the variant's.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Metric {
            $( $(#[$doc])* $variant, )+
        }

        impl Metric {
            /// Every metric, in declaration order.
            pub const ALL: &'static [Metric] = &[$(Metric::$variant),+];

            /// The metric's name in CloudWatch.
            pub fn as_str(self) -> &'static str {
                match self { $(Metric::$variant => stringify!($variant),)+ }
            }

            /// The metric's unit.
            pub fn unit(self) -> Unit {
                match self { $(Metric::$variant => Unit::$unit,)+ }
            }

            /// The dimension sets the metric is published under, each a CloudWatch metric of
            /// its own (a per-API metric also under the stack alone, for a total to alarm on).
            pub fn dimension_sets(self) -> &'static [&'static [Dimension]] {
                match self { $(Metric::$variant => &[$(&[$(Dimension::$dim),*]),+],)+ }
            }

            /// The function that emits it.
            pub fn source(self) -> Source {
                match self { $(Metric::$variant => Source::$by,)+ }
            }
        }
    };
}

metrics! {
    /// Certificates an import registered, counted by the Register invocation that finished them.
    Registered { unit: Count, dimensions: [[Stack]], by: Register },
    /// Certificates an import found registered already (their things set up all the same).
    AlreadyRegistered { unit: Count, dimensions: [[Stack]], by: Register },
    /// Entries rejected in a chunk (by decoration or by IoT), per Register invocation.
    Rejected { unit: Count, dimensions: [[Stack]], by: Register },
    /// Certificates `thingpress activate` set ACTIVE.
    Activated { unit: Count, dimensions: [[Stack]], by: Register },
    /// Certificates `thingpress activate` found ACTIVE already.
    AlreadyActive { unit: Count, dimensions: [[Stack]], by: Register },
    /// Devices `thingpress decommission --execute` removed.
    Removed { unit: Count, dimensions: [[Stack]], by: Register },
    /// Devices a decommission dry run would remove.
    WouldRemove { unit: Count, dimensions: [[Stack]], by: Register },
    /// Devices a decommission found removed already.
    AlreadyRemoved { unit: Count, dimensions: [[Stack]], by: Register },
    /// Requests sent to one IoT API, retries included (each counts against its rate quota).
    IotCalls { unit: Count, dimensions: [[Stack, Api]], by: Register },
    /// Requests one IoT API answered with a throttle; also summed over the APIs (stack alone),
    /// which the throttling alarm watches.
    IotThrottles { unit: Count, dimensions: [[Stack, Api], [Stack]], by: Register },
    /// New certificates per second the stack's quotas less the reserve allow the import's
    /// profile (its slowest API over its calls per certificate): the pace Register aims at.
    PacedRate { unit: CountPerSecond, dimensions: [[Stack]], by: Register },
    /// A chunk's time from its first Register invocation to its last, continuations included.
    ChunkDuration { unit: Milliseconds, dimensions: [[Stack]], by: Register },
    /// The age of the run a Register invocation works for, since Split started it: the
    /// maximum over a period is the oldest import still registering.
    RunAge { unit: Seconds, dimensions: [[Stack]], by: Register },
    /// Manifest (or device list) entries Split read.
    ManifestEntries { unit: Count, dimensions: [[Stack]], by: Split },
    /// Entries Split rejected (signature, certificate, duplicates…), never sent to Register.
    ManifestRejected { unit: Count, dimensions: [[Stack]], by: Split },
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_are_unique_and_never_a_dimension_name() {
        let names: BTreeSet<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(names.len(), Metric::ALL.len());
        for dimension in [Dimension::Stack, Dimension::Api] {
            assert!(!names.contains(dimension.as_str()), "{dimension:?}");
        }
    }

    #[test]
    fn every_metric_is_per_stack_and_its_units_are_cloudwatch_units() {
        for metric in Metric::ALL {
            let sets = metric.dimension_sets();
            assert!(!sets.is_empty(), "{metric}");
            for set in sets {
                assert!(set.contains(&Dimension::Stack), "{metric}: {set:?}");
                assert!(set.len() <= MAX_DIMENSIONS_PER_SET, "{metric}");
            }
            assert!(STANDARD_UNITS.contains(&metric.unit().as_str()), "{metric}");
        }
        // The alarm's total: throttles summed over the APIs, under the stack alone.
        assert!(
            Metric::IotThrottles
                .dimension_sets()
                .contains(&&[Dimension::Stack][..])
        );
    }

    #[test]
    fn the_namespace_is_a_custom_one() {
        assert!(!NAMESPACE.starts_with("AWS/"));
        assert!(check_line(&format!(
            r#"{{"_aws":{{"Timestamp":1,"CloudWatchMetrics":[{{"Namespace":"{NAMESPACE}","Dimensions":[[]],"Metrics":[{{"Name":"x"}}]}}]}},"x":1}}"#
        ))
        .is_empty());
    }
}
