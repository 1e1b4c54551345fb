//! The command line: argument parsing, logging set-up, and mapping every
//! failure to one line on stderr and an exit code (see `verify::exit`).
mod attest;
pub mod docs;
mod inspect;
mod keygen;
mod publish;
mod record;
mod report;
mod run;
mod signer;
mod snapshot;
mod verify;

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::digest::{DigestError, ErrorPolicy, WalkOptions};
use crate::provenance::{MaterialsAs, ProductsAs, RootsError, DEFAULT_BUILDER_ID};
use crate::publish::WriteError;
use crate::sign::{EnvelopeError, KeyError};
use crate::verify::{exit, VerifyError};

/// `provenant -V`: the version and the commit (build.rs).
const SHORT_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PROVENANT_GIT_COMMIT_SHORT"),
    ")"
);
/// `provenant --version`: what a bug report needs.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("PROVENANT_GIT_COMMIT"),
    "\nfeatures: ",
    env!("PROVENANT_FEATURES"),
    "\ntarget: ",
    env!("PROVENANT_TARGET"),
    "\nprofile: ",
    env!("PROVENANT_PROFILE"),
);

/// The heading the global options are listed under in every command's help,
/// after the command's own options.
const GLOBAL: &str = "Global options";

#[derive(Parser, Debug)]
#[command(
    name = "provenant",
    version = SHORT_VERSION,
    long_version = LONG_VERSION,
    about = "Signed SLSA provenance for builders you cannot modify",
    after_help = "\
Examples:
  provenant keygen
  provenant run --key cosign.key --material src --product out -o build.intoto.jsonl -- make
  provenant verify --key cosign.pub build.intoto.jsonl"
)]
pub struct Cli {
    /// Log format on stderr; in `json` fatal errors are JSON events too.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "PROVENANT_LOG_FORMAT",
        help_heading = GLOBAL
    )]
    pub log_format: LogFormat,
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "PROVENANT_LOG",
        help_heading = GLOBAL
    )]
    pub log_level: String,
    /// Colour in help and logs: `auto` colours a terminal unless NO_COLOR is
    /// set (non-empty) or TERM is `dumb`.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        value_name = "WHEN",
        help_heading = GLOBAL
    )]
    pub color: ColorWhen,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a signing key pair (cosign-compatible files).
    #[command(after_help = "\
Examples:
  provenant keygen                                  # cosign.key + cosign.pub; asks for the password on a terminal
  COSIGN_PASSWORD=\"$PW\" provenant keygen -o release  # release.key + release.pub, no prompt
  provenant keygen --unencrypted --algorithm ed25519 -o ci")]
    Keygen(keygen::KeygenArgs),
    /// Hash materials and products now and write a signed attestation.
    #[command(after_help = "\
Examples:
  provenant attest --material src --product dist --key cosign.key -o build.intoto.jsonl
  provenant attest --material src --materials-as tree --product dist --products-as dirhash --key cosign.key
  provenant attest --material src --product dist --key cosign.key --in-toto-link links --step-name build")]
    Attest(attest::AttestArgs),
    /// Hash materials, run a command, hash products, sign the result.
    #[command(after_help = "\
Examples:
  provenant run --key cosign.key --material src --product out -o build.intoto.jsonl -- make
  provenant run --material . --exclude 'target/**' --product target/release -- cargo build --release
  provenant run --key cosign.key --material src --product out --attest-failed -- ./build.sh")]
    Run(run::RunArgs),
    /// Verify an attestation's signature and print its subjects.
    #[command(after_help = "\
Examples:
  provenant verify --key cosign.pub build.intoto.jsonl
  kubectl logs build-pod -c provenant | provenant verify --key cosign.pub -
  provenant verify --image registry.example.com/app:1.0 --key cosign.pub")]
    Verify(verify::VerifyArgs),
    /// Print a human-readable summary of an attestation (no verification).
    #[command(after_help = "\
Examples:
  provenant inspect build.intoto.jsonl
  provenant inspect --all build.intoto.jsonl")]
    Inspect(inspect::InspectArgs),
    /// Init container: hash the inputs before the builder starts.
    #[command(after_help = "\
Examples:
  provenant snapshot --state /provenant/state --material /workspace/source --workspace /workspace
  provenant snapshot --material /workspace/source --workspace /workspace --reference builder=registry.example.com/builder@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  provenant snapshot --require /workspace/source --policy /etc/provenant/policy.yaml --material /workspace/source --workspace /workspace")]
    Snapshot(snapshot::SnapshotArgs),
    /// Sidecar: watch the workspace, detect the end of the build, attest.
    #[command(after_help = "\
Examples:
  provenant record --completion process:build.sh --key /keys/cosign.key
  provenant record --completion marker:/workspace/.build-done --products-as dirhash --key /keys/cosign.key
  provenant record --completion sigterm --signer https://signer.example:8788 --signer-token-file /var/run/provenant/token")]
    Record(record::RecordArgs),
    /// Remote signing service: holds the key, signs in-toto statements for
    /// `--signer` clients.
    #[command(after_help = "\
Examples:
  provenant signer --key cosign.key --token-file token
  provenant signer --key /keys/cosign.key --listen 0.0.0.0:8788 --token-file /var/run/provenant/token")]
    Signer(signer::SignerArgs),
    /// Push spooled attestations to their images' registries (idempotent).
    #[command(after_help = "\
Examples:
  provenant publish /provenant/state/spool
  provenant publish --reconcile --registry-auth registry.example.com=ci --registry-password-file /run/secrets/registry /provenant/state/spool")]
    Publish(publish::PublishArgs),
    /// Print sha256 digests of files (sha256sum format), or a tree's git id.
    #[command(after_help = "\
Examples:
  provenant digest out/app.tar out/app.sbom.json
  provenant digest --tree src        # equals `git rev-parse HEAD:src` in a clean checkout
  provenant digest --dirhash dist")]
    Digest(DigestArgs),
    /// Print a shell completion script to standard output.
    #[command(after_help = "\
Examples:
  provenant completions bash > /etc/bash_completion.d/provenant
  provenant completions zsh > \"${fpath[1]}/_provenant\"
  provenant completions fish > ~/.config/fish/completions/provenant.fish")]
    Completions(docs::CompletionsArgs),
    /// Write man pages: provenant.1 and one per subcommand.
    #[command(after_help = "\
Examples:
  provenant man /usr/local/share/man/man1
  provenant man | man -l -")]
    Man(docs::ManArgs),
}

/// A mistake in how the command was called that clap cannot see (a
/// combination of flags, a bad pattern): exit code 2, like clap's own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Something the user must provide or fix that is not a usage mistake (a
/// password with no way to ask for it): exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CannotError(pub String);

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
            ..Default::default()
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
        let env = crate::sign::Envelope::sign(
            crate::provenance::IN_TOTO_PAYLOAD_TYPE,
            &link.to_bytes(),
            signer,
        )?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(link.file_name(signer.key_id()));
        crate::publish::write_atomic(&path, env.to_json().as_bytes())?;
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

fn init_logging(format: LogFormat, level: &str, color: ColorWhen) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes would end up in pod logs and files: only a terminal
        // gets them, and not even that with NO_COLOR.
        .with_ansi(report::colour_stderr(color))
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Maps a failure to the documented exit code by its type.
pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.is::<UsageError>() {
            return exit::USAGE;
        }
        if cause.is::<CannotError>() {
            return exit::CANNOT_CHECK;
        }
        // A --completion value that does not parse is a usage mistake, as
        // clap's own value errors are.
        if let Some(crate::completion::CompletionError::BadTrigger { .. }) = cause.downcast_ref() {
            return exit::USAGE;
        }
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
    report::install_panic_hook();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // What an error must look like is needed before the arguments parse.
    let early = report::Early::scan(&args);
    // A panic is a bug: exit 1 with one line, like every other failure.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(args, &early))) {
        Ok(code) => code,
        Err(_) => {
            report::fatal(early.format, &report::panic_line(), exit::INTERNAL);
            exit::INTERNAL
        }
    }
}

fn run(args: Vec<std::ffi::OsString>, early: &report::Early) -> i32 {
    let parsed = Cli::command()
        .color(early.clap_color())
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => return report::usage_error(e, early),
    };
    init_logging(cli.log_format, &cli.log_level, cli.color);
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            let code = exit_code_for(&e);
            report::fatal(cli.log_format, &one_line(&e), code);
            code
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<i32> {
    report::injected_fault();
    match command {
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
        Command::Completions(a) => docs::completions(a),
        Command::Man(a) => docs::man(a),
    }
}

fn digest(a: DigestArgs) -> anyhow::Result<i32> {
    use std::io::Write;
    let mut opts = a.hash.walk_options();
    opts.git_blobs = a.tree;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    for p in &a.paths {
        let root = crate::provenance::hash_root(p, &opts)?;
        if a.tree {
            let id = root.tree.git_tree().unwrap_or_default();
            writeln!(out, "{id}  {}", p.display())?;
            continue;
        }
        if a.dirhash {
            writeln!(out, "{}  {}", root.tree.dir_hash()?, p.display())?;
            continue;
        }
        for (path, sha) in root.tree.files() {
            writeln!(
                out,
                "{}  {}",
                hex::encode(sha),
                root.prefix.join(path).encoded().0
            )?;
        }
    }
    out.flush()?;
    Ok(exit::OK)
}
