//! The command line: argument parsing, logging set-up, and mapping every
//! failure to one line on stderr and an exit code (see `verify::exit`).
mod attest;
mod failure;
mod inspect;
mod keygen;
mod opts;
mod publish;
mod record;
mod run;
mod signer;
mod snapshot;
mod verify;
mod webhook;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use failure::{CliResult, Context, Failure, UsageError};

use crate::verify::exit;

#[derive(Parser, Debug)]
#[command(
    name = "provenant",
    version,
    about = "Signed SLSA provenance for builders you cannot modify"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "PROVENANT_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, default_value = "info", env = "PROVENANT_LOG")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a signing key pair (cosign-compatible files).
    Keygen(keygen::KeygenArgs),
    /// Hash materials and products now and write a signed attestation.
    Attest(attest::AttestArgs),
    /// Hash materials, run a command, hash products, sign the result.
    Run(run::RunArgs),
    /// Verify an attestation's signature and print its subjects.
    Verify(verify::VerifyArgs),
    /// Print a human-readable summary of an attestation (no verification).
    Inspect(inspect::InspectArgs),
    /// Init container: hash the inputs before the builder starts.
    Snapshot(snapshot::SnapshotArgs),
    /// Sidecar: watch the workspace, detect the end of the build, attest.
    Record(record::RecordArgs),
    /// Remote signing service: holds the key, signs in-toto statements for
    /// `--signer` clients.
    Signer(signer::SignerArgs),
    /// Push spooled attestations to their images' registries (idempotent).
    Publish(publish::PublishArgs),
    /// Print sha256 digests of files (sha256sum format), or a tree's git id.
    Digest(DigestArgs),
    /// Mutating admission webhook: puts snapshot and record into kpack,
    /// Tekton and opted-in build pods.
    Webhook(webhook::WebhookArgs),
}

#[derive(Args, Debug)]
pub struct DigestArgs {
    /// Files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print each directory's git tree id instead of per-file digests.
    #[arg(long, conflicts_with = "dirhash")]
    pub tree: bool,
    /// Print each directory's in-toto dirHash (Go's dirhash Hash1, hex)
    /// instead of per-file digests.
    #[arg(long)]
    pub dirhash: bool,
    #[command(flatten)]
    pub hash: opts::HashOpts,
}

fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes would end up in pod logs and files; only a terminal gets them.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// One line, whatever the cause chain: scripts grep it, people read it.
/// Causes whose text an outer message already quotes are not repeated.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg.replace('\n', " ")
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    init_logging(cli.log_format, &cli.log_level);
    let result = match cli.command {
        Command::Keygen(a) => keygen::keygen(a),
        Command::Attest(a) => attest::attest(a),
        Command::Run(a) => run::run(a),
        Command::Verify(a) => verify::verify(a),
        Command::Publish(a) => publish::publish(a),
        Command::Signer(a) => signer::serve(a),
        Command::Inspect(a) => inspect::inspect(a),
        Command::Digest(a) => digest(a),
        Command::Snapshot(a) => snapshot::snapshot(a),
        Command::Record(a) => record::record(a),
        Command::Webhook(a) => webhook::webhook(a),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("provenant: error: {}", one_line(&f.error));
            f.code
        }
    }
}

fn digest(a: DigestArgs) -> CliResult {
    use crate::verify::escape::checksum_line;
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    let mut opts = a.hash.walk_options();
    opts.git_blobs = a.tree;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    // Names are printed as sha256sum prints them (escaped: see
    // verify::escape), from the raw path bytes, so the output is checkable
    // with `sha256sum -c` and no name can forge a line.
    for p in &a.paths {
        let root = crate::provenance::hash_root(p, &opts)?;
        let given = p.as_os_str().as_bytes();
        if a.tree {
            // Walked with git blob ids, so there is one: never print an empty id.
            let id = root
                .tree
                .git_tree()
                .ok_or_else(|| Failure::internal("the git tree id was not computed"))?;
            writeln!(out, "{}", checksum_line(&id, given))?;
            continue;
        }
        if a.dirhash {
            writeln!(out, "{}", checksum_line(&root.tree.dir_hash()?, given))?;
            continue;
        }
        for (path, sha) in root.tree.files() {
            writeln!(
                out,
                "{}",
                checksum_line(&hex::encode(sha), root.prefix.join(path).as_bytes())
            )?;
        }
    }
    out.flush()?;
    Ok(exit::OK)
}
