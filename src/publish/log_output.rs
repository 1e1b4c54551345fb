//! The attestation as one marked JSON line on standard output: in pod mode
//! that is the pod log, where SREs read it (`kubectl logs ... | provenant
//! verify -`).
use std::path::PathBuf;

use super::output::{Output, OutputError, Stage};
use super::{emit_log_line, LogLine};
use crate::sign::Attestation;

pub struct LogLineOutput {
    /// The file the attestation was also written to, named in the line.
    pub file: Option<PathBuf>,
}

impl Output for LogLineOutput {
    fn describe(&self) -> String {
        "log line on standard output".into()
    }

    fn stage(&self) -> Stage {
        Stage::First
    }

    fn emit(&self, att: &Attestation) -> Result<(), OutputError> {
        let line = LogLine::new(
            &att.signed,
            att.subject_count,
            &att.first_subjects,
            self.file.as_deref(),
        );
        emit_log_line(&line).map_err(OutputError::Stdout)
    }
}
