//! `provenant record`: the sidecar (see `pipeline::sidecar`).
use std::path::PathBuf;

use super::CliResult;
use clap::Args;

use super::opts::{choice, DescribeOpts, LinkOpts, PublishOpts, SignerOpts, SubjectOpts};
use crate::completion::Trigger;
use crate::digest::ErrorPolicy;
use crate::pipeline::sidecar::{harden_process, Recheck, Sidecar, SidecarOptions};
use crate::publish::{BundleFile, EnvelopeFile, LogLineOutput, Output};
use crate::verify::exit;

#[derive(Args, Debug)]
pub struct RecordArgs {
    /// State directory written by `provenant snapshot`.
    #[arg(long, env = "PROVENANT_STATE", default_value = "/provenant/state")]
    pub state: PathBuf,
    /// Workspace directories to watch for products (default: the ones the
    /// snapshot recorded). Repeatable.
    #[arg(long = "workspace", value_name = "DIR")]
    pub workspaces: Vec<PathBuf>,
    #[command(flatten)]
    pub signer: SignerOpts,
    /// Where to write the envelope (default: STATE/provenance.intoto.jsonl);
    /// `-` for stdout. The Sigstore bundle goes beside it.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// How to learn that the build finished: `sigterm`, `process:PATTERN`,
    /// `kube:CONTAINER`, `marker:PATH`, `http:ADDR`. Repeatable (or
    /// comma-separated); the first to fire wins.
    #[arg(
        long = "completion",
        value_name = "TRIGGER",
        required = true,
        env = "PROVENANT_COMPLETION",
        value_delimiter = ','
    )]
    pub completion: Vec<String>,
    /// Also attest builds that exited non-zero.
    #[arg(long)]
    pub attest_failed: bool,
    #[command(flatten)]
    pub subjects: SubjectOpts,
    /// What to do with a file that cannot be read or vanishes mid-walk
    /// (`fail` or `record`; images a report names are attested either way,
    /// with such files recorded as unreadable).
    #[arg(long, value_name = "fail|record", default_value = "fail", value_parser = choice::<ErrorPolicy>())]
    pub on_error: ErrorPolicy,
    #[command(flatten)]
    pub describe: DescribeOpts,
    /// `full`: hash every root again at the end and use that, reporting any
    /// file where the watcher's view differed (for file systems or
    /// hard-link layouts where inotify may miss writes). Costs a full hash.
    #[arg(long, value_name = "none|full", default_value = "none", value_parser = choice::<Recheck>())]
    pub recheck: Recheck,
    #[command(flatten)]
    pub link: LinkOpts,
    #[command(flatten)]
    pub publish: PublishOpts,
}

pub fn record(a: RecordArgs) -> CliResult {
    harden_process();
    // Our secrets are never read through the door for builder-written
    // files, whatever name (hard link, bind mount) the builder gives them.
    for p in a
        .signer
        .secrets()
        .into_iter()
        .chain(a.publish.registry.secrets())
    {
        crate::untrusted::protect(p);
    }
    let subjects = a.subjects.subject_options()?;
    a.publish.check(&subjects)?;
    let registry = a.publish.registry(&subjects)?;
    // Problems with the key or the witnesses must surface now, not after
    // a long build.
    let (signer, witnesses) =
        a.signer
            .open(None, &a.describe.builder_id, a.link.link_dir.is_some())?;
    let triggers = a
        .completion
        .iter()
        .map(|t| t.parse::<Trigger>())
        .collect::<Result<Vec<_>, _>>()?;
    let sidecar = Sidecar::start(SidecarOptions {
        state: a.state.clone(),
        workspaces: a.workspaces.clone(),
        triggers,
        describe: a.subjects.describe_options(&a.describe, a.attest_failed),
        subjects,
        on_error: a.on_error,
        recheck: a.recheck,
        registry_budget: a.publish.budget(),
        witnesses: witnesses.clone(),
    })?;
    let completed = sidecar.wait()?;
    let output = a
        .output
        .clone()
        .unwrap_or_else(|| a.state.join("provenance.intoto.jsonl"));
    // The bundle goes beside a file; beside `-`, a device or a FIFO (say
    // `-o /dev/stdout`) there is no such place, so it goes to the state
    // directory, which is ours.
    let bundle = match std::fs::symlink_metadata(&output) {
        Ok(m) if !m.is_file() => a.state.join("provenance.sigstore.json"),
        _ if output.as_os_str() == "-" => a.state.join("provenance.sigstore.json"),
        _ => BundleFile::beside(&output),
    };
    let spool = a.state.join("spool");
    let make_outputs = |deadline| {
        let mut v: Vec<Box<dyn Output>> = vec![
            Box::new(EnvelopeFile {
                path: output.clone(),
            }),
            Box::new(LogLineOutput {
                file: Some(output.clone()),
            }),
            Box::new(BundleFile {
                path: bundle.clone(),
            }),
        ];
        v.extend(
            a.publish
                .witness_output(&witnesses, &spool, Some(bundle.as_path())),
        );
        v.extend(a.link.output(&signer));
        v.extend(a.publish.output(registry.as_ref(), &spool, deadline));
        v
    };
    sidecar.attest(
        completed,
        signer.as_ref(),
        registry.as_deref(),
        make_outputs,
    )?;
    Ok(exit::OK)
}
