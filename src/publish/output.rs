//! Outputs as values: each place an attestation can go is a provider of
//! its own ([`Output`]), built by a command from its flags; the pipeline
//! hands the signed [`Attestation`] to each. Every output works from every
//! command, and a new backend (a bucket, Archivista) is one file.
use std::time::Instant;

use crate::sign::Attestation;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Write(#[from] crate::sink::WriteError),
    #[error("cannot write the attestation to standard output: {0}")]
    Stdout(std::io::Error),
    #[error("in-toto link: {0}")]
    Link(String),
    #[error(transparent)]
    Key(#[from] crate::sign::KeyError),
    #[error(transparent)]
    Spool(#[from] super::SpoolError),
}

/// When an output runs, relative to the others: each stage's outputs run
/// side by side, stages one after the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// What the attestation is first needed as: the file and the log line
    /// (22 MB each for 100k subjects, so written in parallel).
    First,
    /// The same attestation repackaged (Sigstore bundle, in-toto link).
    Then,
    /// Over the network, after everything local is safe.
    Remote,
}

/// One place an attestation goes.
pub trait Output: Send + Sync {
    /// For logs: what and where (`envelope file state/x.jsonl`).
    fn describe(&self) -> String;
    fn stage(&self) -> Stage;
    fn emit(&self, att: &Attestation) -> Result<(), OutputError>;
}

/// How long each stage took, in milliseconds (the log reports them).
#[derive(Debug, Default, Clone, Copy)]
pub struct Emitted {
    pub first_ms: u64,
    pub then_ms: u64,
    pub remote_ms: u64,
}

/// Hands `att` to every output, stage by stage; within a stage the outputs
/// run in parallel, and `done(stage, ms)` is called as each stage ends (the
/// sidecar logs "attestation written" once the first is). The first
/// failure is returned once its stage is over (later stages do not run);
/// every failure is logged.
pub fn emit_all(
    outputs: &[Box<dyn Output>],
    att: &Attestation,
    mut done: impl FnMut(Stage, u64),
) -> Result<Emitted, OutputError> {
    let mut times = Emitted::default();
    for stage in [Stage::First, Stage::Then, Stage::Remote] {
        let now: Vec<&dyn Output> = outputs
            .iter()
            .map(|o| o.as_ref())
            .filter(|o| o.stage() == stage)
            .collect();
        let started = Instant::now();
        let mut results: Vec<Result<(), OutputError>> = Vec::with_capacity(now.len());
        rayon::scope(|s| {
            let slots: Vec<_> = now
                .iter()
                .map(|o| {
                    let (tx, rx) = std::sync::mpsc::channel();
                    s.spawn(move |_| {
                        let _span = tracing::info_span!("output", to = %o.describe()).entered();
                        let _ = tx.send(o.emit(att));
                    });
                    rx
                })
                .collect();
            for rx in slots {
                results.push(rx.recv().unwrap_or(Ok(())));
            }
        });
        let ms = started.elapsed().as_millis() as u64;
        match stage {
            Stage::First => times.first_ms = ms,
            Stage::Then => times.then_ms = ms,
            Stage::Remote => times.remote_ms = ms,
        }
        let mut first_err = None;
        for (o, r) in now.iter().zip(results) {
            if let Err(e) = r {
                tracing::error!(to = %o.describe(), error = %e, "output failed");
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        done(stage, ms);
    }
    Ok(times)
}

impl crate::error::ExitClass for OutputError {
    fn exit_code(&self) -> i32 {
        match self {
            OutputError::Key(e) => e.exit_code(),
            _ => crate::error::exit::CANNOT_CHECK,
        }
    }
}
