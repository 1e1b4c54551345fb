//! Nothing lost when the transparency log (or the timestamp authority) is
//! down: an attestation whose witnesses did not answer is written to
//! `SPOOL/witness/` with everything needed to finish it (envelope, the
//! material so far, what is pending, the images and the bundle file it
//! goes to). `provenant publish SPOOL` uploads it, writes the bundle again
//! and attaches it to the images (docs/publish.md).
use std::path::PathBuf;

use super::output::{Output, OutputError, Stage};
use super::spool::{Spool, WitnessEntry, WITNESS_VERSION};
use crate::sign::Attestation;

pub struct WitnessSpool {
    pub spool_dir: PathBuf,
    /// The bundle file this command writes, if any.
    pub bundle: Option<PathBuf>,
    /// Whether the images are to receive the attestation (`--publish`).
    pub publish: bool,
}

impl Output for WitnessSpool {
    fn describe(&self) -> String {
        format!("witness spool {}", self.spool_dir.join("witness").display())
    }

    /// Beside the envelope file: the first thing written.
    fn stage(&self) -> Stage {
        Stage::First
    }

    fn emit(&self, att: &Attestation) -> Result<(), OutputError> {
        let Some(pending) = &att.pending else {
            return Ok(());
        };
        let spool = Spool::open(&self.spool_dir)?;
        let entry = WitnessEntry {
            version: WITNESS_VERSION,
            predicate_type: att.predicate_type.clone(),
            envelope: att.signed.to_envelope(),
            material: att.material.clone(),
            pending: pending.clone(),
            images: if self.publish {
                att.images.clone()
            } else {
                Vec::new()
            },
            bundle: self.bundle.clone(),
        };
        let path = spool.add_witness(&entry, None)?;
        tracing::error!(
            "not witnessed yet ({}); the attestation is kept in {} (finish it with `provenant publish {}`)",
            pending.reason,
            path.display(),
            self.spool_dir.display()
        );
        Ok(())
    }
}
