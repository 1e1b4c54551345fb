//! `provenant signer`: run the remote signing service.
use std::net::SocketAddr;
use std::path::PathBuf;

use super::CliResult;
use super::{Context, Failure};
use clap::Args;

use crate::sign::LocalSigner;

#[derive(Args, Debug)]
pub struct SignerArgs {
    /// The private key (PKCS#8 PEM or cosign encrypted with COSIGN_PASSWORD).
    #[arg(long, env = "PROVENANT_KEY")]
    pub key: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8788")]
    pub listen: SocketAddr,
    /// File with the bearer token clients must present (strongly advised;
    /// without it anyone who reaches the port can get statements signed).
    #[arg(long, value_name = "FILE", env = "PROVENANT_SIGNER_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

pub fn serve(a: SignerArgs) -> CliResult {
    let signer = LocalSigner::load(&a.key)?;
    let token = match &a.token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read --token-file {}", p.display()))?;
            let t = t.trim().to_string();
            if t.len() < 16 {
                return Err(Failure::new(
                    crate::verify::exit::USAGE,
                    format!(
                        "--token-file {}: token shorter than 16 characters",
                        p.display()
                    ),
                ));
            }
            Some(t)
        }
        None => {
            tracing::warn!(
                "no --token-file: any client that reaches the port can get statements signed"
            );
            None
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("--listen {}: cannot listen", a.listen))?;
        tracing::info!(addr = %listener.local_addr()?, key_id = %crate::sign::Signer::key_id(&signer), "signer ready");
        crate::sign::service::serve(listener, signer, token).await?;
        Ok::<(), Failure>(())
    })?;
    Ok(crate::verify::exit::OK)
}
