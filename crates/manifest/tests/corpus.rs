//! The fuzz corpora replayed on stable, through the same target bodies the cargo-fuzz targets
//! run (`thingpress_manifest::fuzz_check`): every file of `fuzz/seeds`, the upstream samples in
//! `tests/fixtures/upstream` and any checked-in corpus under `fuzz/corpus/<target>/`, each through
//! every target, whole and cut short at a few points (truncation is the mutation that finds most
//! stream-ending bugs). `script/fuzz` does the real fuzzing.

// Test code: a failed expectation should panic with its message.
#![allow(clippy::panic)]

use std::path::{Path, PathBuf};

use thingpress_manifest::fuzz_check::{Drained, Target};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every regular file under `dir`, sorted; none when `dir` does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(read) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in read.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn inputs() -> Vec<(PathBuf, Vec<u8>)> {
    let root = root();
    ["fuzz/seeds", "tests/fixtures/upstream", "fuzz/corpus"]
        .iter()
        .flat_map(|dir| files(&root.join(dir)))
        .map(|path| {
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, bytes)
        })
        .collect()
}

fn check(target: Target, path: &Path, cut: usize, data: &[u8]) -> Drained {
    target.check(data).unwrap_or_else(|broken| {
        panic!(
            "{} on {} (first {cut} bytes): {broken}",
            target.name(),
            path.display()
        )
    })
}

#[test]
fn every_input_through_every_target_keeps_the_invariants() {
    let inputs = inputs();
    assert!(
        inputs.len() >= 12,
        "expected the seeds and upstream samples, found {} files",
        inputs.len()
    );
    let mut runs = 0;
    for (path, data) in &inputs {
        // whole, then seven prefixes spread over the file
        let cuts = std::iter::once(data.len()).chain((1..8).map(|i| data.len() * i / 8));
        for cut in cuts {
            for target in Target::ALL {
                check(target, path, cut, &data[..cut]);
                runs += 1;
            }
        }
    }
    assert!(runs >= inputs.len() * Target::ALL.len());
}

/// The replay is only worth something if the seeds get past the readers: each sample, through
/// its own target and through `auto`, yields the entries it holds.
#[test]
fn samples_reach_the_entries_through_their_targets() {
    let root = root();
    let upstream = root.join("tests/fixtures/upstream");
    let seeds = root.join("fuzz/seeds");
    let cases = [
        (&upstream, "ECC608C-TNGTLSU-B.json", Target::Microchip, 10),
        (&upstream, "manifest-infineon.7z", Target::Infineon7z, 200),
        (&upstream, "manifest-espressif.csv", Target::Espressif, 7),
        (&upstream, "certificates_test.txt", Target::Pem, 100),
        (&upstream, "single.pem", Target::Pem, 1),
        (&seeds, "infineon.xml", Target::InfineonXml, 3),
        (&seeds, "infineon-small.7z", Target::Infineon7z, 3),
        (&seeds, "pem-lines.txt", Target::Pem, 3),
    ];
    for (dir, name, target, accepted) in cases {
        let path = dir.join(name);
        let data =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        for target in [target, Target::Auto] {
            let drained = check(target, &path, data.len(), &data);
            assert_eq!(
                drained,
                Drained {
                    accepted,
                    rejected: 0,
                    unreadable: false
                },
                "{} on {}",
                target.name(),
                path.display()
            );
        }
    }
}

#[test]
fn infineon_xml_leaves_7z_bundles_to_infineon_7z() {
    let path = root().join("fuzz/seeds/infineon-small.7z");
    let data =
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert_eq!(
        check(Target::InfineonXml, &path, data.len(), &data),
        Drained::default()
    );
    // the 7z target puts the magic in front of inputs without it: the rest still reads
    let rest = &data[6..];
    assert_eq!(
        check(Target::Infineon7z, &path, rest.len(), rest).accepted,
        3
    );
}
