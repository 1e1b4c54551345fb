//! `provenant run -- CMD`: the one-machine mode.
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use time::OffsetDateTime;

use super::attest::{describe_and_sign, hash_all, report, write_envelope, BuildFacts};
use super::{DescribeOpts, HashOpts};
use crate::digest;
use crate::provenance::ResourceDescriptor;
use crate::sign::{write_key_file, Algorithm, LocalSigner};
use crate::verify::exit;

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
    /// Private signing key. Without it, a development key under .provenant/
    /// is created once and used (with a warning: not for production).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Where to write the DSSE envelope (one JSON line).
    #[arg(short = 'o', long, default_value = "provenance.intoto.jsonl")]
    pub output: PathBuf,
    /// Also write the envelope as a Sigstore bundle (v0.3, public-key hint).
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
    pub products_as: super::ProductOpts,
    #[command(flatten)]
    pub link: super::LinkOpts,
    #[command(flatten)]
    pub remote: super::RemoteSignerOpts,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn dev_signer() -> anyhow::Result<LocalSigner> {
    let dir = Path::new(DEV_KEY_DIR);
    let key = dir.join("dev.key");
    let signer = if key.exists() {
        LocalSigner::load(&key)?
    } else {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let s = LocalSigner::generate(Algorithm::EcdsaP256)?;
        write_key_file(&key, &s.private_key_pem()?, true)?;
        write_key_file(&dir.join("dev.pub"), s.public_key_pem(), false)?;
        s
    };
    tracing::warn!(
        key = %key.display(),
        public_key = %dir.join("dev.pub").display(),
        "SIGNING WITH A DEVELOPMENT KEY: anyone with access to this directory can forge attestations; pass --key for real use"
    );
    Ok(signer)
}

/// Finds the executable `argv0` names, as the shell would, so its digest can
/// be recorded as a material: the tool that ran is an input of the build.
fn resolve_executable(argv0: &str) -> Option<PathBuf> {
    if argv0.contains('/') {
        return Some(PathBuf::from(argv0));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(argv0))
        .find(|p| p.is_file())
}

fn command_material(argv0: &str) -> Option<ResourceDescriptor> {
    let exe = resolve_executable(argv0)?;
    let real = std::fs::canonicalize(&exe).ok()?;
    let sha = digest::hash_file(&real).ok()?;
    Some(
        ResourceDescriptor::sha256(real.display().to_string(), &sha)
            .annotate("provenant.role", "command"),
    )
}

/// Exit status as a shell reports it: the code, or 128 + signal number.
fn exit_code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(exit::INTERNAL)
}

/// Runs the command with inherited stdio, forwarding the signals a
/// supervisor sends us. SIGINT/SIGQUIT are not forwarded when we are
/// attached to a terminal: the terminal already delivered them to the whole
/// foreground process group, child included, and a second copy makes some
/// programs abort instead of shutting down cleanly.
async fn run_child(argv: &[String]) -> anyhow::Result<std::process::ExitStatus> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .spawn()
        .with_context(|| format!("cannot start command '{}'", argv[0]))?;
    let pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    let interactive = std::io::stdin().is_terminal();
    let mut kinds = vec![
        (SignalKind::terminate(), nix::sys::signal::Signal::SIGTERM),
        (SignalKind::hangup(), nix::sys::signal::Signal::SIGHUP),
        (
            SignalKind::user_defined1(),
            nix::sys::signal::Signal::SIGUSR1,
        ),
        (
            SignalKind::user_defined2(),
            nix::sys::signal::Signal::SIGUSR2,
        ),
    ];
    if !interactive {
        kinds.push((SignalKind::interrupt(), nix::sys::signal::Signal::SIGINT));
        kinds.push((SignalKind::quit(), nix::sys::signal::Signal::SIGQUIT));
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (kind, sig) in kinds {
        let mut stream = signal(kind).context("cannot install signal handler")?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(sig).is_err() {
                    break;
                }
            }
        });
    }
    if interactive {
        // Keep the default action from killing us before the child: we must
        // outlive it to record its exit.
        for kind in [SignalKind::interrupt(), SignalKind::quit()] {
            let mut s = signal(kind).context("cannot install signal handler")?;
            tokio::spawn(async move { while s.recv().await.is_some() {} });
        }
    }
    loop {
        tokio::select! {
            status = child.wait() => return Ok(status?),
            Some(sig) = rx.recv() => {
                if let Some(pid) = pid {
                    tracing::debug!(signal = %sig, "forwarding signal to command");
                    let _ = nix::sys::signal::kill(pid, sig);
                }
            }
        }
    }
}

pub fn run(a: RunArgs) -> anyhow::Result<i32> {
    let signer: Box<dyn crate::sign::Signer> = match (&a.key, &a.remote.url) {
        (None, None) => Box::new(dev_signer()?),
        (key, _) => a.remote.signer(key.as_deref())?,
    };
    let signer = &*signer;
    let materials = hash_all(
        &a.materials,
        &a.hash,
        "materials",
        a.describe.wants_git_blobs(),
    )?;
    let mut extra = Vec::new();
    if let Some(m) = command_material(&a.command[0]) {
        extra.push(m);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start async runtime")?;
    let started = OffsetDateTime::now_utc();
    let status = rt.block_on(run_child(&a.command))?;
    let finished = OffsetDateTime::now_utc();
    let code = exit_code_of(status);
    if code != 0 && !a.attest_failed {
        tracing::warn!(
            exit_code = code,
            "command failed; not attesting a failed build (pass --attest-failed to attest it anyway)"
        );
        return Ok(code);
    }
    let facts = BuildFacts {
        command: Some(a.command.clone()),
        exit: Some(crate::provenance::ExitStatus::observed(code, "run")),
        started,
        finished,
        attest_failed: a.attest_failed,
        extra_materials: extra,
    };
    let result = hash_all(&a.products, &a.hash, "products", false).and_then(|products| {
        let att = describe_and_sign(
            &materials,
            &products,
            &a.hash,
            &a.describe,
            &a.products_as,
            facts,
            signer,
        )?;
        write_envelope(&a.output, &att.signed)?;
        report(&a.output, &att, signer);
        super::attest::write_bundle(a.bundle.as_deref(), &att.signed, signer)?;
        a.link.write(&att.signed, &a.command, Some(code), signer)?;
        // The process ends now: see the end of `attest`.
        std::mem::forget((products, att));
        Ok(())
    });
    match result {
        Ok(()) => Ok(code),
        // The command's own failure matters more to the caller than ours.
        Err(e) if code != 0 => {
            eprintln!("provenant: error: {}", format!("{e:#}").replace('\n', " "));
            Ok(code)
        }
        Err(e) => Err(e.context("command succeeded but no attestation was written")),
    }
}
