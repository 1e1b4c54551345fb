//! `provenant run -- CMD`: the one-machine mode.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::CliResult;
use clap::Args;

use super::attest::LOCAL_SPOOL;
use super::opts::{
    file_outputs, DescribeOpts, HashOpts, LinkOpts, PublishOpts, SignerOpts, SubjectOpts,
};
use crate::pipeline::describe;
use crate::pipeline::oneshot::{observe_command, OneShotOptions, Ran};
use crate::provenance::MaterialsAs;
use crate::publish::emit_all;
use crate::sign::{open_signer, Signer};

/// Where `run` keeps the development key it creates when no key is given.
pub const DEV_KEY_DIR: &str = ".provenant";

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Input file or directory, hashed before the command runs; repeatable.
    #[arg(long = "material", value_name = "PATH")]
    pub materials: Vec<PathBuf>,
    /// Output file or directory, hashed after the command exits; repeatable.
    #[arg(long = "product", value_name = "PATH", required = true)]
    pub products: Vec<PathBuf>,
    /// Without --key or --signer, a development key under .provenant/ is
    /// created once and used (with a warning: not for production).
    #[command(flatten)]
    pub signer: SignerOpts,
    /// Where to write the DSSE envelope (one JSON line); `-` for stdout.
    #[arg(short = 'o', long, default_value = "provenance.intoto.jsonl")]
    pub output: PathBuf,
    /// Also write the envelope as a Sigstore bundle (v0.3).
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// Also attest when the command exits non-zero (the exit code is
    /// recorded either way). Off by default: a failed build's outputs are
    /// rarely meant to be trusted.
    #[arg(long)]
    pub attest_failed: bool,
    #[command(flatten)]
    pub hash: HashOpts,
    #[command(flatten)]
    pub describe: DescribeOpts,
    #[command(flatten)]
    pub subjects: SubjectOpts,
    #[command(flatten)]
    pub link: LinkOpts,
    #[command(flatten)]
    pub publish: PublishOpts,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// The command's exit code passes through (a shell sees what it would
/// have seen without provenant); 127/126 when it cannot be started, as
/// `env` and `timeout` do.
pub fn run(a: RunArgs) -> CliResult {
    let subjects = a.subjects.subject_options()?;
    a.publish.check(&subjects)?;
    let registry = a.publish.registry(&subjects)?;
    // The signer first: a missing key fails before the build runs.
    let signer: Arc<dyn Signer> =
        Arc::from(open_signer(&a.signer.config(Some(Path::new(DEV_KEY_DIR))))?);
    signer.check()?;
    let opts = OneShotOptions {
        materials: a.materials.clone(),
        products: a.products.clone(),
        walk: a.hash.walk_options(),
        material_git_blobs: a.describe.materials_as == MaterialsAs::Tree,
        subjects,
    };
    let (obs, deadline) = match observe_command(
        &opts,
        &a.command,
        a.attest_failed,
        registry.as_deref(),
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
        let att = describe(
            &obs,
            &a.subjects.describe_options(&a.describe, a.attest_failed),
            None,
        )?
        .sign(signer.as_ref())?;
        let mut outputs = file_outputs(&a.output, a.bundle.as_deref());
        outputs.extend(a.link.output(&signer));
        outputs.extend(
            a.publish
                .output(registry.as_ref(), LOCAL_SPOOL.as_ref(), deadline),
        );
        emit_all(&outputs, &att, |_, _| {})?;
        tracing::info!(
            output = %a.output.display(),
            subjects = att.subject_count,
            key_id = signer.key_id(),
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
