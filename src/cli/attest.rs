//! `provenant attest`: record after the fact (no build observed).
use std::path::PathBuf;
use std::sync::Arc;

use super::CliResult;
use clap::Args;

use super::opts::{
    file_outputs, DescribeOpts, HashOpts, LinkOpts, PublishOpts, SignerOpts, SubjectOpts,
};
use crate::pipeline::oneshot::{observe_now, OneShotOptions};
use crate::pipeline::{describe, Phases};
use crate::provenance::MaterialsAs;
use crate::publish::{emit_all, Deadline};
use crate::sign::{open_signer, Signer};
use crate::verify::exit;

#[derive(Args, Debug)]
pub struct AttestArgs {
    /// Input file or directory (recorded as resolvedDependencies); repeatable.
    #[arg(long = "material", value_name = "PATH")]
    pub materials: Vec<PathBuf>,
    /// Output file or directory (recorded as subjects); repeatable.
    #[arg(long = "product", value_name = "PATH", required = true)]
    pub products: Vec<PathBuf>,
    #[command(flatten)]
    pub signer: SignerOpts,
    /// Where to write the DSSE envelope (one JSON line); `-` for stdout.
    #[arg(short = 'o', long, default_value = "provenance.intoto.jsonl")]
    pub output: PathBuf,
    /// Also write the envelope as a Sigstore bundle (v0.3).
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
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
}

/// Where `attest` and `run` spool attestations for a registry by default.
pub(super) const LOCAL_SPOOL: &str = ".provenant/spool";

pub fn attest(a: AttestArgs) -> CliResult {
    let subjects = a.subjects.subject_options()?;
    a.publish.check(&subjects)?;
    let registry = a.publish.registry(&subjects)?;
    let signer: Arc<dyn Signer> = Arc::from(open_signer(&a.signer.config(None))?);
    let opts = OneShotOptions {
        materials: a.materials.clone(),
        products: a.products.clone(),
        walk: a.hash.walk_options(),
        material_git_blobs: a.describe.materials_as == MaterialsAs::Tree,
        subjects,
    };
    let deadline = Deadline::after(a.publish.budget());
    let mut phases = Phases::new();
    let obs = observe_now(&opts, registry.as_deref(), &deadline)?;
    let att = phases.run("describe_sign", || -> CliResult<_> {
        let d = describe(&obs, &a.subjects.describe_options(&a.describe, false), None)?;
        Ok(d.sign(signer.as_ref())?)
    })?;
    let mut outputs = file_outputs(&a.output, a.bundle.as_deref());
    outputs.extend(a.link.output(&signer));
    outputs.extend(
        a.publish
            .output(registry.as_ref(), LOCAL_SPOOL.as_ref(), deadline),
    );
    let emitted = emit_all(&outputs, &att, |_, _| {})?;
    // The bench reads these: statement size and signing cost per material.
    tracing::info!(
        output = %a.output.display(),
        subjects = att.subject_count,
        key_id = signer.key_id(),
        statement_bytes = att.signed.payload_len(),
        materials = obs.materials.iter().map(|r| r.tree.entries.len()).sum::<usize>(),
        describe_sign_ms = phases.ms("describe_sign"),
        write_ms = emitted.first_ms,
        "attestation written"
    );
    // The process ends now and the kernel takes the memory back at once;
    // freeing 100k paths one by one first took 5-10 ms.
    std::mem::forget((obs, att));
    Ok(exit::OK)
}
