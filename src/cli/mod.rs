//! The command line: argument parsing, logging set-up, and mapping every
//! failure to one line on stderr and an exit code (see `verify::exit`).
mod attest;
pub mod docs;
mod failure;
mod inspect;
mod keygen;
mod opts;
mod publish;
mod record;
pub(crate) mod report;
mod run;
mod signer;
mod snapshot;
mod verify;
mod webhook;

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

pub use failure::{CannotError, CliResult, Context, Failure, UsageError};

use crate::verify::exit;

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
  provenant run --fulcio-url https://fulcio.sigstore.dev --identity-token token --rekor-url https://rekor.sigstore.dev --material src --product out --bundle build.sigstore.json -- make
  provenant run --key cosign.key --material src --product out --attest-failed -- ./build.sh")]
    Run(run::RunArgs),
    /// Verify an attestation's signature and print its subjects.
    #[command(after_help = "\
Examples:
  provenant verify --key cosign.pub build.intoto.jsonl
  kubectl logs build-pod -c provenant | provenant verify --key cosign.pub -
  provenant verify --trusted-root trusted_root.json --certificate-identity https://kubernetes.io/namespaces/ci/serviceaccounts/builder --certificate-oidc-issuer https://kubernetes.default.svc build.sigstore.json")]
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
    /// Mutating admission webhook: puts snapshot and record into kpack,
    /// Tekton and opted-in build pods.
    #[command(after_help = "\
Examples:
  provenant webhook --tls-cert /tls/tls.crt --tls-key /tls/tls.key --config /etc/provenant/webhook.yaml
  provenant webhook --check --tls-cert tls.crt --tls-key tls.key --config webhook.yaml")]
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
        Err(f) => {
            report::fatal(cli.log_format, &one_line(&f.error), f.code);
            f.code
        }
    }
}

fn dispatch(command: Command) -> CliResult {
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
        Command::Webhook(a) => webhook::webhook(a),
    }
}

fn digest(a: DigestArgs) -> CliResult {
    use crate::escape::checksum_line;
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    let mut opts = a.hash.walk_options();
    opts.git_blobs = a.tree;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    // Names are printed as sha256sum prints them (escaped: see
    // crate::escape), from the raw path bytes, so the output is checkable
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
