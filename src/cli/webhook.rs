//! `provenant webhook`: the mutating admission webhook that instruments
//! kpack, Tekton and opted-in build pods (library: `crate::webhook`).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{CliResult, Context, Failure};
use clap::Args;

use crate::verify::exit;
use crate::webhook::server::{serve, tls_config, CertStore};
use crate::webhook::{Config, Webhook, WebhookError};

#[derive(Args, Debug)]
pub struct WebhookArgs {
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:8443", env = "PROVENANT_WEBHOOK_LISTEN")]
    pub listen: SocketAddr,
    /// Serving certificate chain (PEM), e.g. a cert-manager Secret's tls.crt;
    /// read again when it changes.
    #[arg(long, value_name = "FILE", env = "PROVENANT_WEBHOOK_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// Its private key (PEM); read again when it changes.
    #[arg(long, value_name = "FILE", env = "PROVENANT_WEBHOOK_TLS_KEY")]
    pub tls_key: PathBuf,
    /// Configuration (YAML; unknown fields are errors).
    #[arg(long, value_name = "FILE", env = "PROVENANT_WEBHOOK_CONFIG")]
    pub config: PathBuf,
    /// provenant's image to inject, by digest (overrides the configuration's
    /// `image`).
    #[arg(long, value_name = "REPO@sha256:HEX", env = "PROVENANT_WEBHOOK_IMAGE")]
    pub image: Option<String>,
    /// How often the certificate files are checked for a change.
    #[arg(long, value_name = "MILLISECONDS", default_value_t = 1000, hide = true)]
    pub reload_interval_ms: u64,
    /// Check the configuration and the certificate, then exit.
    #[arg(long)]
    pub check: bool,
}

pub fn webhook(a: WebhookArgs) -> CliResult {
    let config = Config::load(&a.config, a.image.as_deref())?;
    let store = CertStore::load(&a.tls_cert, &a.tls_key)?;
    let hook = Arc::new(Webhook::new(config)?);
    if a.check {
        println!("configuration {} and certificate ok", a.config.display());
        return Ok(exit::OK);
    }
    let tls = tls_config(store.clone())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|source| WebhookError::Listen {
                addr: a.listen.to_string(),
                source,
            })?;
        store.watch(Duration::from_millis(a.reload_interval_ms.max(10)));
        tracing::info!(addr = %listener.local_addr()?, "webhook ready");
        serve(listener, tls, hook).await?;
        Ok::<(), Failure>(())
    })?;
    Ok(exit::OK)
}
