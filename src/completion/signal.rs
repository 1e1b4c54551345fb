//! `sigterm`: Kubernetes (1.29+) terminates a native sidecar, an init
//! container with `restartPolicy: Always`, only after every main container
//! has exited, so SIGTERM means "the build is over, finalize within the
//! grace period". SIGINT is accepted too, for `provenant record` run by hand.
use std::future::Future;

use tokio::signal::unix::{signal, SignalKind};

use super::{Completed, CompletionError, Report};

/// Installs the handlers now, so a signal that arrives while the rest of the
/// sidecar starts is not lost (the default action would kill us).
pub(super) fn arm() -> Result<impl Future<Output = Report>, CompletionError> {
    let mut term = signal(SignalKind::terminate()).map_err(CompletionError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(CompletionError::Signal)?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        // Further signals during finalization must not kill us half-way:
        // keep the streams alive (and the handlers installed) and log them.
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => tracing::warn!("SIGTERM again while finalizing; finishing the attestation first"),
                    _ = int.recv() => tracing::warn!("SIGINT again while finalizing; finishing the attestation first"),
                }
            }
        });
        // The builder's exit code is not visible from here.
        Ok(Completed::now(
            "sigterm",
            crate::provenance::ExitStatus::unknown("sigterm"),
            format!("{name} received"),
        ))
    })
}
