//! `provenant publish SPOOL_DIR`, and the registry options every command
//! that talks to a registry shares.
use std::path::PathBuf;
use std::time::Duration;

use super::CliResult;
use super::Context;
use clap::Args;

use crate::publish::{push_with_retry, Credentials, Deadline, Registry, Spool};
use crate::verify::exit;

#[derive(Args, Debug, Clone)]
pub struct RegistryOpts {
    /// Docker `config.json` with registry credentials (the content of a
    /// `kubernetes.io/dockerconfigjson` Secret works as is). Default:
    /// $DOCKER_CONFIG/config.json or ~/.docker/config.json if present.
    #[arg(long, value_name = "FILE", env = "PROVENANT_REGISTRY_CONFIG")]
    pub registry_config: Option<PathBuf>,
    /// Log in to registry HOST[:PORT] as USER (repeatable, or
    /// comma-separated in the environment), with the password from
    /// PROVENANT_REGISTRY_PASSWORD or --registry-password-file. Sent to
    /// that registry only, never to others the builder may name.
    #[arg(
        long = "registry-auth",
        value_name = "HOST=USER",
        env = "PROVENANT_REGISTRY_AUTH",
        value_delimiter = ','
    )]
    pub registry_auth: Vec<String>,
    /// File holding the password for --registry-auth (a mounted Secret).
    #[arg(
        long,
        value_name = "FILE",
        env = "PROVENANT_REGISTRY_PASSWORD_FILE",
        conflicts_with = "registry_password"
    )]
    pub registry_password_file: Option<PathBuf>,
    /// Password for --registry-auth; set it in the environment, not on the
    /// command line.
    #[arg(
        long,
        env = "PROVENANT_REGISTRY_PASSWORD",
        hide_env_values = true,
        hide = true
    )]
    pub registry_password: Option<String>,
    /// Removed: it sent the password to every registry, including ones the
    /// builder names. Refused with a pointer to --registry-auth.
    #[arg(
        long,
        env = "PROVENANT_REGISTRY_USERNAME",
        hide = true,
        value_parser = removed_username
    )]
    pub registry_username: Option<String>,
    /// Registry (HOST[:PORT]) to reach over plain HTTP; repeatable.
    /// Loopback registries (127.0.0.0/8, [::1], localhost) always are.
    #[arg(long = "plain-http", value_name = "REGISTRY")]
    pub plain_http: Vec<String>,
    /// Extra CA certificate (PEM) to trust for registries; repeatable.
    #[arg(long = "registry-ca", value_name = "PEM")]
    pub registry_ca: Vec<PathBuf>,
}

fn removed_username(_: &str) -> Result<String, String> {
    Err(
        "--registry-username (PROVENANT_REGISTRY_USERNAME) is no longer accepted: it sent the \
         password to every registry, including ones the builder names; use \
         --registry-auth HOST=USER (PROVENANT_REGISTRY_AUTH)"
            .into(),
    )
}

impl RegistryOpts {
    /// Files holding registry credentials.
    pub fn secrets(&self) -> Vec<&std::path::Path> {
        [
            self.registry_config.as_deref(),
            self.registry_password_file.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    pub fn registry(&self) -> CliResult<Registry> {
        let password = match &self.registry_password_file {
            Some(p) => Some(
                crate::publish::auth::read_password(p)
                    .with_context(|| format!("--registry-password-file {}", p.display()))?,
            ),
            None => self.registry_password.clone(),
        };
        let creds = Credentials::load(
            self.registry_config.as_deref(),
            &self.registry_auth,
            password,
        )?;
        let mut cas = Vec::new();
        for p in &self.registry_ca {
            cas.push(
                std::fs::read(p)
                    .with_context(|| format!("cannot read --registry-ca {}", p.display()))?,
            );
        }
        Ok(Registry::new(creds, self.plain_http.clone(), cas)?)
    }
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Spool directory written by `provenant record --publish` (default
    /// STATE/spool).
    pub spool: PathBuf,
    #[command(flatten)]
    pub registry: RegistryOpts,
    /// Deadline per attestation, in seconds: its retries stop and every
    /// request for it is cut off by then.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
    /// Also re-check the entries already published (spool/published/):
    /// any attestation no longer in its tags (dropped by another writer) is
    /// pushed again.
    #[arg(long)]
    pub reconcile: bool,
}

/// Has the pending witnesses of one entry do their part; on success the
/// bundle file is written again, the images get registry spool entries and
/// the entry moves to `witness/done/`. `Ok(false)`: still pending (logged).
fn finish_witness(
    spool: &Spool,
    path: &std::path::Path,
    mut e: crate::publish::WitnessEntry,
    deadline: std::time::Instant,
) -> CliResult<bool> {
    let left = match crate::sign::witness::complete(
        &e.pending,
        &e.envelope,
        &mut e.material,
        deadline,
    ) {
        Ok(left) => left,
        Err(err) => {
            tracing::error!(file = %path.display(), error = %err, "not witnessed; the file stays in the spool");
            return Ok(false);
        }
    };
    if !left.is_done() {
        // Keep what was done (a timestamp, say) for the next attempt.
        e.pending = left;
        spool.add_witness(&e, Some(path))?;
        tracing::error!(file = %path.display(), reason = %e.pending.reason, "not witnessed; the file stays in the spool");
        return Ok(false);
    }
    if let Some(b) = &e.bundle {
        crate::publish::Bundle::for_envelope_with(&e.envelope, &e.material).write_to(b)?;
        println!("bundle {} now carries the log entry", b.display());
    }
    for image in &e.images {
        spool.add(&crate::publish::SpoolEntry {
            version: crate::publish::spool::SPOOL_VERSION,
            image: image.clone(),
            predicate_type: e.predicate_type.clone(),
            material: e.material.clone(),
            envelope: e.envelope.clone(),
        })?;
    }
    let to = spool.witness_done(path)?;
    println!("witnessed {} -> {}", path.display(), to.display());
    Ok(true)
}

pub fn publish(a: PublishArgs) -> CliResult {
    let spool = Spool::open_existing(&a.spool)?;
    let registry = a.registry.registry()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start async runtime")?;
    let deadline = || Deadline::after(Duration::from_secs(a.timeout));
    let mut failed = 0;
    let mut done = 0;
    // First what still waits for the transparency log: once logged, its
    // bundle is written again and its images get spool entries, pushed
    // below with the others.
    for (path, entry) in spool.witness_pending()? {
        match entry {
            Ok(e) => {
                if !finish_witness(&spool, &path, e, deadline().instant())? {
                    failed += 1;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "skipping");
                failed += 1;
            }
        }
    }
    let mut todo = Vec::new();
    if a.reconcile {
        for (path, entry) in spool.published()? {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "skipping");
                    failed += 1;
                    continue;
                }
            };
            match rt.block_on(registry.is_attached(
                &entry.image,
                &entry.envelope,
                &entry.material,
                &entry.predicate_type,
                &deadline(),
            )) {
                Ok(missing) if missing.is_empty() => {
                    println!("present {}", path.display());
                }
                Ok(missing) => {
                    println!(
                        "missing {} from {}; publishing it again",
                        path.display(),
                        missing.join(", ")
                    );
                    todo.push((spool.mark_pending(&path)?, Ok(entry)));
                }
                Err(e) => {
                    failed += 1;
                    tracing::error!(file = %path.display(), error = %e, "could not check");
                }
            }
        }
    }
    let pending = spool.pending()?;
    for (path, entry) in pending {
        if !todo.iter().any(|(p, _)| p == &path) {
            todo.push((path, entry));
        }
    }
    for (path, entry) in todo {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "skipping");
                failed += 1;
                continue;
            }
        };
        match rt.block_on(push_with_retry(&registry, &entry, deadline())) {
            Ok(att) => {
                spool.mark_published(&path)?;
                done += 1;
                for f in &att.foreign {
                    println!("left untouched: {f}");
                }
                println!(
                    "published {} -> {} ({}), {} ({}{})",
                    path.display(),
                    att.att_tag,
                    if att.att_appended {
                        "appended"
                    } else if att.foreign.iter().any(|f| f.contains(".att")) {
                        "foreign, skipped"
                    } else {
                        "already there"
                    },
                    att.referrer,
                    if att.referrer_pushed {
                        "pushed"
                    } else {
                        "already there"
                    },
                    if att.referrers_api {
                        ", indexed by the registry"
                    } else {
                        ""
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
        return Err(crate::publish::SpoolError::NotPublished {
            failed,
            dir: a.spool.clone(),
        }
        .into());
    }
    Ok(exit::OK)
}
