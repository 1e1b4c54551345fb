//! The attestation as a file: the DSSE envelope as one JSON line
//! (`.intoto.jsonl`), written by the one writer (`crate::sink`).
use std::path::PathBuf;

use super::output::{Output, OutputError, Stage};
use crate::sign::Attestation;

pub struct EnvelopeFile {
    pub path: PathBuf,
}

impl Output for EnvelopeFile {
    fn describe(&self) -> String {
        format!("envelope file {}", self.path.display())
    }

    fn stage(&self) -> Stage {
        Stage::First
    }

    fn emit(&self, att: &Attestation) -> Result<(), OutputError> {
        crate::sink::write_atomic_with(&self.path, |w| {
            serde_json::to_writer(&mut *w, &att.signed.json()).map_err(std::io::Error::other)?;
            w.write_all(b"\n")
        })?;
        Ok(())
    }
}
