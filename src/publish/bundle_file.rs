//! The attestation as a Sigstore bundle v0.3 file (`.sigstore.json`), for
//! Sigstore tooling (sigstore-js, cosign `verify-blob-attestation`).
use std::path::{Path, PathBuf};

use super::output::{Output, OutputError, Stage};
use super::Bundle;
use crate::sign::Attestation;

pub struct BundleFile {
    pub path: PathBuf,
}

impl BundleFile {
    /// Beside an envelope file: `x.intoto.jsonl` -> `x.sigstore.json`.
    pub fn beside(envelope: &Path) -> PathBuf {
        let name = envelope
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = name
            .strip_suffix(".intoto.jsonl")
            .or_else(|| name.strip_suffix(".jsonl"))
            .or_else(|| name.strip_suffix(".json"))
            .unwrap_or(&name);
        envelope.with_file_name(format!("{stem}.sigstore.json"))
    }
}

impl Output for BundleFile {
    fn describe(&self) -> String {
        format!("Sigstore bundle {}", self.path.display())
    }

    fn stage(&self) -> Stage {
        Stage::Then
    }

    fn emit(&self, att: &Attestation) -> Result<(), OutputError> {
        Bundle::for_attestation(att).write_to(&self.path)?;
        Ok(())
    }
}
