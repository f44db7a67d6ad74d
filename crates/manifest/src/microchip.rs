//! TODO(helper): microchip format.

use std::io::BufRead;

use crate::{Entries, ManifestError, Options};

/// Certificates whose keys may sign Microchip manifests; the default holds Microchip's published
/// manifest signers.
#[derive(Debug, Clone, Default)]
pub struct Verifiers {}

/// Streams the entries of a microchip manifest.
pub(crate) fn entries<'a, R: BufRead + Send + 'a>(
    _reader: R,
    _options: &Options,
) -> Result<Entries<'a>, ManifestError> {
    Err(ManifestError::UnknownFormat("microchip: not implemented yet".into()))
}
