//! `provenant run -- CMD`: the one-machine mode.
use std::path::Path;

use clap::Args;

use super::opts::OneShotArgs;
use super::CliResult;
use crate::pipeline::describe;
use crate::pipeline::oneshot::{observe_command, Ran};
use crate::publish::emit_all;

/// Where `run` keeps the development key it creates when no key is given.
pub const DEV_KEY_DIR: &str = ".provenant";

/// Without --key or --signer, `run` creates a development key under
/// .provenant/ once and uses it, with a warning: not for production.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: OneShotArgs,
    /// Also attest when the command exits non-zero (the exit code is
    /// recorded either way). Off by default: a failed build's outputs are
    /// rarely meant to be trusted.
    #[arg(long)]
    pub attest_failed: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// The command's exit code passes through (a shell sees what it would
/// have seen without provenant); 127/126 when it cannot be started, as
/// `env` and `timeout` do.
pub fn run(r: RunArgs) -> CliResult {
    let a = &r.common;
    // The signer first: a missing key fails before the build runs.
    let s = a.prepare(Some(Path::new(DEV_KEY_DIR)))?;
    let (obs, deadline) = match observe_command(
        &s.opts,
        &r.command,
        r.attest_failed,
        s.registry.as_deref(),
        a.publish.budget(),
    ) {
        Ok(Ran::Observed(obs, deadline)) => (obs, deadline),
        Ok(Ran::Failed(code)) => return Ok(code),
        Err(crate::pipeline::PipelineError::Child(e)) => {
            eprintln!("provenant: error: {e}");
            return Ok(e.exit_code());
        }
        Err(e) => return Err(e.into()),
    };
    let code = obs.exit.and_then(|e| e.code()).unwrap_or(0);
    let result = (|| -> CliResult<()> {
        let mut att =
            describe(&obs, &a.describe_options(r.attest_failed), None)?.sign(s.signer.as_ref())?;
        s.witnesses
            .witness(&mut att, s.signer.as_ref(), deadline.instant());
        emit_all(&a.outputs(&s, deadline), &att, |_, _| {})?;
        tracing::info!(
            output = %a.output.display(),
            subjects = att.subject_count,
            key_id = s.signer.key_id(),
            "attestation written"
        );
        // The process ends now: see the end of `attest`.
        std::mem::forget(att);
        Ok(())
    })();
    std::mem::forget(obs);
    match result {
        Ok(()) => Ok(code),
        // The command's own failure matters more to the caller than ours.
        Err(e) if code != 0 => {
            eprintln!("provenant: error: {}", super::one_line(&e.error));
            Ok(code)
        }
        Err(e) => Err(e.context("command succeeded but no attestation was written")),
    }
}
