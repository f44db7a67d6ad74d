//! TODO(helper): format recognition.

use std::io::BufRead;

use crate::{ManifestError, Supplier};

/// Recognises the manifest format from its first bytes without consuming them.
pub(crate) fn detect<R: BufRead>(_reader: &mut R) -> Result<Supplier, ManifestError> {
    Err(ManifestError::UnknownFormat("not implemented yet".into()))
}
