//! Criterion benches: one group per supplier format, each parsing a generated 1,000-entry
//! manifest end to end (throughput in entries). `script/bench --criterion` runs them; the
//! 100,000-entry wall-clock and peak-RSS numbers come from `script/bench` itself.

#![allow(clippy::expect_used)]

#[path = "../examples/support/generate.rs"]
mod generate;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use generate::Kind;
use thingpress_manifest::{Entry, Options, Supplier, Verifiers, read_entries};

const ENTRIES: u64 = 1_000;

fn supplier(kind: Kind) -> Supplier {
    match kind {
        Kind::Microchip => Supplier::Microchip,
        Kind::Infineon7z | Kind::InfineonXml => Supplier::Infineon,
        Kind::Espressif => Supplier::Espressif,
        Kind::PemLines => Supplier::Pem,
    }
}

/// Parses every entry and returns how many were accepted.
fn parse(bytes: &[u8], options: &Options) -> u64 {
    let entries = read_entries(bytes, options).expect("manifest opens");
    let mut accepted = 0;
    for entry in entries {
        if let Entry::Accepted(a) = entry.expect("manifest reads") {
            black_box(&a);
            accepted += 1;
        }
    }
    accepted
}

fn manifests(c: &mut Criterion) {
    for kind in Kind::ALL {
        let mut bytes = Vec::new();
        let verifier = generate::generate(kind, ENTRIES, &mut bytes).expect("manifest generates");
        let options = Options {
            supplier: supplier(kind),
            verifiers: match verifier {
                Some(pem) => Verifiers::from_pem(&pem).expect("signer certificate parses"),
                None => Verifiers::empty(),
            },
            ..Options::default()
        };
        // A benchmark of rejections would measure the wrong thing.
        assert_eq!(
            parse(&bytes, &options),
            ENTRIES,
            "{} entries accepted",
            kind.name()
        );

        let mut group = c.benchmark_group(kind.name());
        group.throughput(Throughput::Elements(ENTRIES));
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        group.bench_function("parse_1000", |b| {
            b.iter(|| parse(black_box(&bytes), &options))
        });
        group.finish();
    }
}

criterion_group!(benches, manifests);
criterion_main!(benches);
