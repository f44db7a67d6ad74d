//! The smoke test's manifest: fresh self-signed P-256 certificates in one PEM bundle (the `pem`
//! supplier's format), and what an import should make of each entry (its certificate id and
//! thing name), read and named here exactly as Split and Decorate will.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use thingpress_manifest::{Entry, read_entries};
use thingpress_product::{Decorator, Profile};

/// The bundle's file name (also its key under `runs/<run>/manifest/`).
const FILE_NAME: &str = "certificates.pem";

/// One device the import should register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The IoT certificate id (hex SHA-256 of the DER).
    pub certificate_id: String,
    /// The thing the profile names for it.
    pub thing_name: String,
}

/// The written bundle and its devices, in manifest order.
#[derive(Debug)]
pub struct Bundle {
    pub file: PathBuf,
    pub devices: Vec<Device>,
}

/// Writes `count` fresh certificates (CN `device-<i>`) to `dir` as one PEM bundle.
pub fn write(dir: &Path, profile: &Profile, count: usize) -> Result<Bundle> {
    let mut pem = String::new();
    for i in 0..count {
        pem.push_str(&self_signed(&format!("device-{i}"))?);
    }
    let file = dir.join(FILE_NAME);
    std::fs::write(&file, &pem).with_context(|| format!("cannot write {}", file.display()))?;
    let devices = expected_devices(pem.as_bytes(), profile)?;
    if devices.len() != count {
        bail!(
            "{}: {} of the {count} generated certificates read back",
            file.display(),
            devices.len()
        );
    }
    Ok(Bundle { file, devices })
}

/// A self-signed P-256 certificate, PEM. The key is dropped: nothing ever connects with it.
fn self_signed(common_name: &str) -> Result<String> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .with_context(|| format!("cannot generate a P-256 key for {common_name}"))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    let certificate = params
        .self_signed(&key)
        .with_context(|| format!("cannot self-sign the certificate of {common_name}"))?;
    Ok(certificate.pem())
}

/// Each entry of the bundle as the profile names it; any rejection is an error (the bundle was
/// made to be accepted).
fn expected_devices(bundle: &[u8], profile: &Profile) -> Result<Vec<Device>> {
    let options = profile
        .manifest_options()
        .map_err(|e| anyhow!("profile {}: {e}", profile.name))?;
    let decorator = Decorator::new(profile)
        .map_err(|(error, message)| anyhow!("profile {}: {error}: {message}", profile.name))?;
    let entries = read_entries(bundle, &options).context("cannot read the generated bundle")?;
    let mut devices = Vec::new();
    for entry in entries {
        let accepted = match entry.context("cannot read the generated bundle")? {
            Entry::Accepted(accepted) => accepted,
            Entry::Rejected(rejected) => bail!(
                "the generated bundle's entry {} is rejected: {}: {}",
                rejected.index,
                rejected.error,
                rejected.message
            ),
        };
        let decorated = decorator.decorate(&accepted).map_err(|rejected| {
            anyhow!(
                "profile {} cannot name entry {}: {}: {}",
                profile.name,
                rejected.index,
                rejected.error,
                rejected.message
            )
        })?;
        devices.push(Device {
            certificate_id: decorated.certificate_id,
            thing_name: decorated.thing_name,
        });
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_bundle_holds_distinct_certificates_named_by_the_profile() {
        let dir =
            std::env::temp_dir().join(format!("thingpress-smoke-bundle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let profile = Profile::from_json(
            br#"{"name": "p", "supplier": "pem", "thingName": "tag-{deviceId}"}"#,
        )
        .unwrap();
        let bundle = write(&dir, &profile, 3).unwrap();
        let names: Vec<&str> = bundle
            .devices
            .iter()
            .map(|d| d.thing_name.as_str())
            .collect();
        assert_eq!(names, ["tag-device-0", "tag-device-1", "tag-device-2"]);
        let ids: std::collections::BTreeSet<&str> = bundle
            .devices
            .iter()
            .map(|d| d.certificate_id.as_str())
            .collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.iter().all(|id| id.len() == 64), "{ids:?}");
        let text = std::fs::read_to_string(&bundle.file).unwrap();
        assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
