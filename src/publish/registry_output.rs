//! The attestation next to the images it is about, in their registries
//! (cosign `.att` tag and OCI referrer). Spooled first: a registry that is
//! down, slow or refusing never loses the attestation and never fails the
//! command (the file and the log line have it already); one line says
//! where the spooled copy waits for `provenant publish`.
use std::path::PathBuf;

use super::output::{Output, OutputError, Stage};
use super::{push_with_retry, Deadline, Registry, Spool, SpoolEntry};
use crate::sign::Attestation;

pub struct RegistryOutput {
    pub registry: std::sync::Arc<Registry>,
    pub spool_dir: PathBuf,
    /// Over every image, retry and request.
    pub deadline: Deadline,
}

impl Output for RegistryOutput {
    fn describe(&self) -> String {
        format!("registry (spool {})", self.spool_dir.display())
    }

    fn stage(&self) -> Stage {
        Stage::Remote
    }

    fn emit(&self, att: &Attestation) -> Result<(), OutputError> {
        if att.images.is_empty() {
            tracing::warn!(
                "--publish: no image subject was found in an allowed repository; nothing to attach"
            );
            return Ok(());
        }
        let spool = Spool::open(&self.spool_dir)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(OutputError::Stdout)?;
        if att.pending.is_some() {
            // The layers must carry the log entry: the witness spool entry
            // keeps the images, and `provenant publish` attaches them once
            // the log has it.
            tracing::warn!(
                images = att.images.len(),
                "not attached yet: the transparency log or timestamp authority has not answered; `provenant publish {}` attaches it once it has",
                self.spool_dir.display()
            );
            return Ok(());
        }
        let envelope = att.signed.to_envelope();
        for image in &att.images {
            let entry = SpoolEntry {
                version: super::spool::SPOOL_VERSION,
                image: image.clone(),
                predicate_type: att.predicate_type.clone(),
                material: att.material.clone(),
                envelope: envelope.clone(),
            };
            let path = spool.add(&entry)?;
            match rt.block_on(push_with_retry(&self.registry, &entry, self.deadline)) {
                Ok(a) => {
                    spool.mark_published(&path)?;
                    tracing::info!(image = %a.image, att = %a.att_tag, referrer = %a.referrer, "attestation attached");
                }
                Err(e) => tracing::error!(
                    "not attached to {image}: {e}; the attestation is kept in {} (push it with `provenant publish {}`)",
                    path.display(),
                    self.spool_dir.display()
                ),
            }
        }
        Ok(())
    }
}
