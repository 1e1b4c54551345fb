//! `provenant signer`: run the remote signing service.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::CliResult;
use super::{Context, Failure, UsageError};
use clap::Args;

use crate::sign::service::{
    check_builder_uri, BuilderIds, Limits, OidcConfig, Service, ServiceConfig, TlsFiles,
};
use crate::sign::{LocalSigner, Signer};

#[derive(Args, Debug)]
pub struct SignerArgs {
    /// The private key (PKCS#8 PEM or cosign encrypted with COSIGN_PASSWORD).
    #[arg(long, env = "PROVENANT_KEY")]
    pub key: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8788")]
    pub listen: SocketAddr,

    /// TLS certificate chain (PEM, leaf first); re-read when it changes.
    #[arg(
        long,
        value_name = "PEM",
        env = "PROVENANT_SIGNER_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM); re-read when it changes.
    #[arg(
        long,
        value_name = "PEM",
        env = "PROVENANT_SIGNER_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM): every client must present a certificate
    /// that chains to one (mTLS).
    #[arg(
        long,
        value_name = "PEM",
        env = "PROVENANT_SIGNER_CLIENT_CA",
        requires = "tls_cert"
    )]
    pub client_ca: Option<PathBuf>,
    /// Serve plain HTTP on an address other than loopback: only behind
    /// something that encrypts (a mesh). Tokens and statements would
    /// otherwise cross the network in clear text.
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_plain_http: bool,

    /// Service-account tokens: the issuer they must come from (the
    /// cluster's --service-account-issuer). Its keys come from discovery
    /// at this URL unless --oidc-jwks is given.
    #[arg(long, value_name = "URL", env = "PROVENANT_SIGNER_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The audience service-account tokens must be for (the projected
    /// volume's `audience`).
    #[arg(long, value_name = "AUD", default_value = "provenant-signer")]
    pub oidc_audience: String,
    /// The issuer's public keys as a JWKS file (`kubectl get --raw
    /// /openid/v1/jwks`), re-read when it changes, instead of discovery.
    #[arg(long, value_name = "FILE", requires = "oidc_issuer")]
    pub oidc_jwks: Option<PathBuf>,
    /// CA certificates (PEM) for discovery at the issuer, instead of the
    /// system roots (in a pod: the service account's ca.crt).
    #[arg(
        long,
        value_name = "PEM",
        requires = "oidc_issuer",
        conflicts_with = "oidc_jwks"
    )]
    pub oidc_ca: Option<PathBuf>,
    /// Bearer token for discovery (in a pod: the signer's own
    /// service-account token; API servers serve discovery to any
    /// authenticated service account).
    #[arg(
        long,
        value_name = "FILE",
        requires = "oidc_issuer",
        conflicts_with = "oidc_jwks"
    )]
    pub oidc_token_file: Option<PathBuf>,
    /// File with a bearer token shared by every client: weaker than
    /// service-account tokens (whoever holds it can sign for any pod,
    /// with --builder-id).
    #[arg(long, value_name = "FILE", env = "PROVENANT_SIGNER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// The builder id statements from a namespace (or one service account
    /// in it) must carry: `NAMESPACE=URI`, `NAMESPACE/SERVICEACCOUNT=URI`,
    /// `*=URI` for every other namespace. Repeatable; the most specific
    /// rule wins.
    #[arg(long = "builder", value_name = "NAMESPACE[/SERVICEACCOUNT]=URI")]
    pub builders: Vec<String>,
    /// The builder id statements from shared-token callers (and from
    /// client certificates, when no token is asked for) must carry.
    #[arg(long, value_name = "URI")]
    pub builder_id: Option<String>,

    /// Open connections at most; connections that have not sent a request
    /// yet are closed to make room. Default: 1024, or fewer if the open
    /// files limit is lower.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds from connect to the end of the request headers (TLS
    /// handshake included).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds from the request headers to the end of the body.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub body_timeout: u64,
}

fn usage(msg: impl Into<String>) -> Failure {
    UsageError(msg.into()).into()
}

/// The service configuration the flags describe.
fn config(a: &SignerArgs) -> CliResult<ServiceConfig> {
    let tls = a
        .tls_cert
        .as_ref()
        .zip(a.tls_key.as_ref())
        .map(|(c, k)| TlsFiles {
            cert: c.clone(),
            key: k.clone(),
            client_ca: a.client_ca.clone(),
        });
    if tls.is_none() {
        if a.listen.ip().is_loopback() {
            tracing::warn!(listen = %a.listen, "serving plain HTTP on loopback: give --tls-cert/--tls-key to serve other machines");
        } else if a.insecure_plain_http {
            tracing::warn!(listen = %a.listen, "serving PLAIN HTTP (--insecure-plain-http): tokens and statements cross the network in clear text unless a mesh encrypts them");
        } else {
            return Err(usage(format!(
                "--listen {}: give --tls-cert and --tls-key (or --insecure-plain-http behind a mesh that encrypts; plain HTTP is served on loopback only)",
                a.listen
            )));
        }
    }
    let shared_token = match &a.token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read --token-file {}", p.display()))?;
            let t = zeroize::Zeroizing::new(t.trim().to_string());
            if t.len() < 16 {
                return Err(usage(format!(
                    "--token-file {}: token shorter than 16 characters",
                    p.display()
                )));
            }
            tracing::info!("shared-token callers accepted: whoever holds the token can sign statements with --builder-id");
            Some(t)
        }
        None => None,
    };
    let mut builders = BuilderIds::default();
    for b in &a.builders {
        builders
            .add(b)
            .map_err(|e| usage(format!("--builder {e}")))?;
    }
    if let Some(id) = &a.builder_id {
        check_builder_uri(id).map_err(|e| usage(format!("--builder-id: {e}")))?;
        builders.other = Some(id.clone());
    }
    if a.max_connections == Some(0) || a.header_timeout == 0 || a.body_timeout == 0 {
        return Err(usage(
            "--max-connections, --header-timeout and --body-timeout must be positive",
        ));
    }
    Ok(ServiceConfig {
        tls,
        shared_token,
        oidc: a.oidc_issuer.as_ref().map(|issuer| OidcConfig {
            issuer: issuer.clone(),
            audience: a.oidc_audience.clone(),
            jwks_file: a.oidc_jwks.clone(),
            ca_file: a.oidc_ca.clone(),
            token_file: a.oidc_token_file.clone(),
        }),
        builders,
        limits: Limits {
            max_connections: max_connections(a.max_connections),
            header_timeout: Duration::from_secs(a.header_timeout),
            body_timeout: Duration::from_secs(a.body_timeout),
            ..Limits::default()
        },
    })
}

/// Descriptors kept for everything but connections: the listener, the
/// files re-read, the issuer fetches, the runtime.
const RESERVED_FILES: u64 = 64;

/// The connection cap: as given, or the default within the open files
/// limit (raised to its hard limit first).
fn max_connections(given: Option<usize>) -> usize {
    let files = crate::sign::service::raise_open_files_limit();
    let room = files.map(|f| f.saturating_sub(RESERVED_FILES).max(1) as usize);
    match (given, room) {
        (Some(n), Some(room)) if n > room => {
            tracing::warn!(
                open_files_limit = files,
                max_connections = n,
                "the open files limit is below --max-connections: when it runs out, idle connections are closed to make room"
            );
            n
        }
        (Some(n), _) => n,
        (None, Some(room)) if room < Limits::default().max_connections => {
            tracing::info!(
                open_files_limit = files,
                max_connections = room,
                "connection cap lowered to fit the open files limit"
            );
            room
        }
        (None, _) => Limits::default().max_connections,
    }
}

pub fn serve(a: SignerArgs) -> CliResult {
    let cfg = config(&a)?;
    let signer = LocalSigner::load(&a.key)?;
    let key_id = signer.key_id().to_string();
    let tls = cfg.tls.is_some();
    let modes: Vec<&str> = [
        (cfg.oidc.is_some(), "service-account token"),
        (
            cfg.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            "client certificate",
        ),
        (cfg.shared_token.is_some(), "shared token"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start async runtime")?;
    rt.block_on(async move {
        let service = Service::start(cfg, signer).await?;
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("--listen {}: cannot listen", a.listen))?;
        tracing::info!(
            addr = %listener.local_addr()?,
            key_id = %key_id,
            tls,
            authentication = %modes.join(", "),
            "signer ready"
        );
        match service.serve(listener).await {}
    })
}
