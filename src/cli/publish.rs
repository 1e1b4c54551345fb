//! `provenant publish SPOOL_DIR`, and the registry options every command
//! that talks to a registry shares.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::publish::{push_with_retry, Credentials, Registry, Spool};
use crate::verify::exit;

#[derive(Args, Debug, Clone)]
pub struct RegistryOpts {
    /// Docker `config.json` with registry credentials (the content of a
    /// `kubernetes.io/dockerconfigjson` Secret works as is). Default:
    /// $DOCKER_CONFIG/config.json or ~/.docker/config.json if present.
    #[arg(long, value_name = "FILE", env = "PROVENANT_REGISTRY_CONFIG")]
    pub registry_config: Option<PathBuf>,
    /// Registry user name (overrides the config file).
    #[arg(long, env = "PROVENANT_REGISTRY_USERNAME")]
    pub registry_username: Option<String>,
    /// Registry password; prefer the environment variable.
    #[arg(long, env = "PROVENANT_REGISTRY_PASSWORD", hide_env_values = true)]
    pub registry_password: Option<String>,
    /// Registry (HOST[:PORT]) to reach over plain HTTP; repeatable.
    /// Loopback registries always are.
    #[arg(long = "plain-http", value_name = "REGISTRY")]
    pub plain_http: Vec<String>,
    /// Extra CA certificate (PEM) to trust for registries; repeatable.
    #[arg(long = "registry-ca", value_name = "PEM")]
    pub registry_ca: Vec<PathBuf>,
}

impl RegistryOpts {
    pub fn registry(&self) -> anyhow::Result<Registry> {
        let creds = Credentials::load(
            self.registry_config.as_deref(),
            self.registry_username.clone(),
            self.registry_password.clone(),
        )?;
        let mut cas = Vec::new();
        for p in &self.registry_ca {
            cas.push(
                std::fs::read(p)
                    .with_context(|| format!("cannot read --registry-ca {}", p.display()))?,
            );
        }
        Ok(Registry::new(creds, self.plain_http.clone(), cas))
    }
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Spool directory written by `provenant record --publish` (default
    /// STATE/spool).
    pub spool: PathBuf,
    #[command(flatten)]
    pub registry: RegistryOpts,
    /// How long to keep retrying one attestation while the registry fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
}

pub fn publish(a: PublishArgs) -> anyhow::Result<i32> {
    if !a.spool.is_dir() {
        anyhow::bail!("{}: no such spool directory", a.spool.display());
    }
    let spool = Spool::open(&a.spool)?;
    let registry = a.registry.registry()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start async runtime")?;
    let mut failed = 0;
    let mut done = 0;
    for (path, entry) in spool.pending()? {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "skipping");
                failed += 1;
                continue;
            }
        };
        match rt.block_on(push_with_retry(
            &registry,
            &entry,
            Duration::from_secs(a.timeout),
        )) {
            Ok(att) => {
                spool.mark_published(&path)?;
                done += 1;
                println!(
                    "published {} -> {} ({}), {} ({})",
                    path.display(),
                    att.att_tag,
                    if att.att_appended {
                        "appended"
                    } else {
                        "already there"
                    },
                    att.referrer,
                    if att.referrer_pushed {
                        "pushed"
                    } else {
                        "already there"
                    }
                );
            }
            Err(e) => {
                failed += 1;
                tracing::error!(file = %path.display(), error = %e, "not published; the file stays in the spool");
            }
        }
    }
    tracing::info!(published = done, failed, "spool {}", a.spool.display());
    if failed > 0 {
        anyhow::bail!(crate::publish::SpoolError::NotPublished {
            failed,
            dir: a.spool.clone()
        });
    }
    Ok(exit::OK)
}
