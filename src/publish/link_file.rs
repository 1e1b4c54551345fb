//! The attestation as in-toto link metadata for one step
//! (`STEP.KEYID8.link`), for chains verified with `in-toto-verify`. The
//! link is made from the signed statement itself (its materials, products,
//! command and exit code) and signed again by the same signer.
use std::path::PathBuf;
use std::sync::Arc;

use super::output::{Output, OutputError, Stage};
use crate::provenance::link::Link;
use crate::provenance::{exit_code_of, Statement, IN_TOTO_PAYLOAD_TYPE};
use crate::sign::{Attestation, Envelope, Signer};

/// How the link file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkFormat {
    /// A DSSE envelope around the link (in-toto 2.0+).
    #[default]
    Dsse,
    /// A classic signed Metablock (every in-toto tool reads it; in-toto
    /// 3.1.0's `in-toto-match-products` reads only this).
    Metablock,
}
crate::choice!(LinkFormat {
    Dsse = "dsse",
    Metablock = "metablock",
});

pub struct LinkFile {
    pub dir: PathBuf,
    pub step: String,
    pub signer: Arc<dyn Signer>,
    pub format: LinkFormat,
}

impl Output for LinkFile {
    fn describe(&self) -> String {
        format!(
            "in-toto link for step {} in {}",
            self.step,
            self.dir.display()
        )
    }

    fn stage(&self) -> Stage {
        Stage::Then
    }

    fn emit(&self, att: &Attestation) -> Result<(), OutputError> {
        let link_err = |e: String| OutputError::Link(e);
        let payload = att
            .signed
            .to_envelope()
            .payload_bytes()
            .map_err(|e| link_err(e.to_string()))?;
        let statement = Statement::parse(&payload).map_err(|e| link_err(e.to_string()))?;
        // Our own statement: a predicate or command that does not read back
        // is a bug to report, not a link to write without them.
        let p = statement
            .provenance()
            .map_err(|e| link_err(e.to_string()))?;
        let command = match p.build_definition.external_parameters.get("command") {
            Some(c) => serde_json::from_value::<Vec<String>>(c.clone())
                .map_err(|e| link_err(format!("externalParameters.command: {e}")))?,
            None => Vec::new(),
        };
        let exit_code = exit_code_of(&p);
        let link = Link::from_statement(&self.step, &statement, &command, exit_code)
            .map_err(|e| link_err(e.to_string()))?;
        let bytes = match self.format {
            LinkFormat::Dsse => {
                let payload = link.to_bytes().map_err(|e| link_err(e.to_string()))?;
                Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &payload, self.signer.as_ref())?
                    .to_json()
                    .into_bytes()
            }
            LinkFormat::Metablock => link.metablock(self.signer.as_ref())?,
        };
        std::fs::create_dir_all(&self.dir).map_err(|source| crate::sink::WriteError {
            path: self.dir.clone(),
            source,
        })?;
        let path = self.dir.join(link.file_name(self.signer.key_id()));
        crate::sink::write_atomic(&path, &bytes)?;
        tracing::info!(link = %path.display(), "in-toto link written");
        Ok(())
    }
}
