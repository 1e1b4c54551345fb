//! The command line: argument parsing, logging set-up, and mapping every
//! failure to one line on stderr and an exit code (see `verify::exit`).
mod attest;
mod inspect;
mod keygen;
mod publish;
mod record;
mod run;
mod signer;
mod snapshot;
mod verify;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::digest::{DigestError, ErrorPolicy, WalkOptions};
use crate::provenance::{MaterialsAs, ProductsAs, RootsError, DEFAULT_BUILDER_ID};
use crate::publish::WriteError;
use crate::sign::{EnvelopeError, KeyError};
use crate::verify::{exit, VerifyError};

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
}

/// Options shared by every command that hashes trees.
#[derive(Args, Debug, Clone)]
pub struct HashOpts {
    /// Glob (relative to each root, `/`-separated) to leave out; repeatable.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// What to do with a file that cannot be read or vanishes mid-walk.
    #[arg(long, value_enum, default_value = "fail")]
    pub on_error: OnError,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnError {
    /// Stop with an error naming the file.
    Fail,
    /// Record the file with the error in the attestation and continue.
    Record,
}

impl OnError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Fail => "fail",
            OnError::Record => "record",
        }
    }
}

impl HashOpts {
    pub fn walk_options(&self) -> WalkOptions {
        WalkOptions {
            excludes: self.excludes.clone(),
            on_error: match self.on_error {
                OnError::Fail => ErrorPolicy::Fail,
                OnError::Record => ErrorPolicy::Record,
            },
            progress: true,
            git_blobs: false,
        }
    }
}

/// Options that shape the predicate.
#[derive(Args, Debug, Clone)]
pub struct DescribeOpts {
    /// `builder.id` to record: the identity of the platform running the build.
    #[arg(long, default_value = DEFAULT_BUILDER_ID)]
    pub builder_id: String,
    /// Describe each material directory per file, or as one aggregate:
    /// its git tree id, or its in-toto dirHash.
    #[arg(long, value_enum, default_value = "files")]
    pub materials_as: MaterialsAs,
}

/// How products become subjects (`attest`, `run`).
#[derive(Args, Debug, Clone)]
pub struct ProductOpts {
    /// Subjects per product file, or one in-toto dirHash per product
    /// directory (a 100k-file output in one line).
    #[arg(long, value_enum, default_value = "files")]
    pub products_as: ProductsAs,
}

impl DescribeOpts {
    pub fn wants_git_blobs(&self) -> bool {
        self.materials_as == MaterialsAs::Tree
    }
}

/// A remote signer instead of a local key (`provenant signer` elsewhere).
#[derive(Args, Debug, Clone)]
pub struct RemoteSignerOpts {
    /// URL of a `provenant signer` service holding the key.
    #[arg(
        long = "signer",
        value_name = "URL",
        env = "PROVENANT_SIGNER",
        conflicts_with = "key"
    )]
    pub url: Option<String>,
    /// File with the bearer token for the signer.
    #[arg(
        long = "signer-token-file",
        value_name = "FILE",
        env = "PROVENANT_SIGNER_TOKEN_FILE"
    )]
    pub token_file: Option<std::path::PathBuf>,
    /// Extra CA certificate (PEM) for an HTTPS signer.
    #[arg(long = "signer-ca", value_name = "PEM")]
    pub ca: Option<std::path::PathBuf>,
}

impl RemoteSignerOpts {
    /// The remote signer if one is configured, else the local key.
    pub fn signer(
        &self,
        key: Option<&std::path::Path>,
    ) -> anyhow::Result<Box<dyn crate::sign::Signer>> {
        if let Some(url) = &self.url {
            return Ok(Box::new(crate::sign::remote::RemoteSigner::connect(
                url,
                self.token_file.as_deref(),
                self.ca.as_deref(),
            )?));
        }
        match key {
            Some(k) => Ok(Box::new(crate::sign::LocalSigner::load(k)?)),
            None => anyhow::bail!("no signing key: pass --key FILE or --signer URL"),
        }
    }
}

/// in-toto link output, for chains verified with `in-toto-verify`.
#[derive(Args, Debug, Clone)]
pub struct LinkOpts {
    /// Also write signed in-toto link metadata for this step into DIR
    /// (`STEP.KEYID8.link`).
    #[arg(long = "in-toto-link", value_name = "DIR", requires = "step_name")]
    pub link_dir: Option<std::path::PathBuf>,
    /// The step's name in the in-toto layout.
    #[arg(long, value_name = "NAME")]
    pub step_name: Option<String>,
    /// Link file format: a DSSE envelope (in-toto 2.0+), or a classic
    /// signed Metablock, which every in-toto tool reads.
    #[arg(long = "in-toto-link-format", value_enum, default_value = "dsse")]
    pub link_format: LinkFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LinkFormat {
    Dsse,
    Metablock,
}

impl LinkOpts {
    pub fn write(
        &self,
        signed: &crate::sign::Signed,
        command: &[String],
        exit_code: Option<i32>,
        signer: &dyn crate::sign::Signer,
    ) -> anyhow::Result<()> {
        use anyhow::Context;
        let (Some(dir), Some(step)) = (&self.link_dir, &self.step_name) else {
            return Ok(());
        };
        // Read back from what was signed: links are rare, and the
        // statement is never held as values on the way to signing.
        let statement = crate::provenance::Statement::parse(&signed.to_envelope().payload_bytes()?)
            .context("reading back the signed statement")?;
        let link =
            crate::provenance::link::Link::from_statement(step, &statement, command, exit_code);
        let bytes = match self.link_format {
            LinkFormat::Dsse => crate::sign::Envelope::sign(
                crate::provenance::IN_TOTO_PAYLOAD_TYPE,
                &link.to_bytes(),
                signer,
            )?
            .to_json()
            .into_bytes(),
            LinkFormat::Metablock => link.metablock(signer)?,
        };
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(link.file_name(signer.key_id()));
        crate::publish::write_atomic(&path, &bytes)?;
        tracing::info!(link = %path.display(), "in-toto link written");
        Ok(())
    }
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
    pub hash: HashOpts,
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

/// Maps a failure to the documented exit code by its type.
pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(v) = cause.downcast_ref::<VerifyError>() {
            return v.exit_code();
        }
        if let Some(g) = cause.downcast_ref::<crate::verify::gate::GateError>() {
            return g.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<EnvelopeError>() {
            return match e {
                EnvelopeError::Key(_) => exit::CANNOT_CHECK,
                _ => exit::INVALID,
            };
        }
        if cause.is::<KeyError>()
            || cause.is::<DigestError>()
            || cause.is::<RootsError>()
            || cause.is::<WriteError>()
            || cause.is::<crate::pod::StateError>()
            || cause.is::<crate::watch::WatchError>()
            || cause.is::<crate::provenance::ReportedError>()
            || cause.is::<crate::completion::CompletionError>()
            || cause.is::<crate::publish::RegistryError>()
            || cause.is::<crate::verify::PolicyError>()
            || cause.is::<crate::publish::AuthError>()
            || cause.is::<crate::publish::SpoolError>()
            || cause.is::<std::io::Error>()
        {
            return exit::CANNOT_CHECK;
        }
    }
    exit::INTERNAL
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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("provenant: error: {}", one_line(&e));
            exit_code_for(&e)
        }
    }
}

fn digest(a: DigestArgs) -> anyhow::Result<i32> {
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
            let id = root.tree.git_tree().unwrap_or_default();
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
