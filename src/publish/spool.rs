//! Nothing lost: every attestation meant for a registry is first written to
//! a spool directory (atomically), then pushed; only a completed push moves
//! it to `published/`. A sidecar whose registry is down keeps the file and
//! `provenant publish SPOOL_DIR` pushes it later. Pushing is idempotent, so
//! a crash between push and move costs nothing but a repeated no-op push.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::registry::{sha256_digest, Attached, Registry, RegistryError};
use super::{write_file, Durability};
use crate::sign::Envelope;

pub const SPOOL_VERSION: u32 = 1;

/// One attestation to attach to one image.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpoolEntry {
    pub version: u32,
    /// `registry/repository@sha256:HEX`
    pub image: String,
    pub predicate_type: String,
    pub key_id: String,
    pub envelope: Envelope,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("spool file {path}: not a provenant spool entry: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Write(#[from] super::WriteError),
    #[error("{failed} spooled attestation(s) not published; they stay in {dir}")]
    NotPublished { failed: usize, dir: PathBuf },
}

/// A spooled file and what it holds (or why it cannot be read).
pub type Pending = (PathBuf, Result<SpoolEntry, SpoolError>);

pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir.join("published")).map_err(|source| SpoolError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Spool {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the entry; its name is derived from its content, so spooling
    /// the same attestation for the same image twice is one file.
    pub fn add(&self, e: &SpoolEntry) -> Result<PathBuf, SpoolError> {
        let bytes = serde_json::to_vec(e).expect("spool entry serializes");
        let id = sha256_digest(&bytes);
        let image_hex = e
            .image
            .rsplit_once("sha256:")
            .map_or("image", |(_, h)| &h[..h.len().min(12)]);
        let path = self.dir.join(format!(
            "{}-{}.json",
            image_hex,
            &id["sha256:".len()..][..16]
        ));
        write_file(&path, Durability::Synced, |w| w.write_all(&bytes))?;
        Ok(path)
    }

    /// Entries still to push, oldest name first.
    pub fn pending(&self) -> Result<Vec<Pending>, SpoolError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|source| SpoolError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        Ok(paths
            .into_iter()
            .map(|p| {
                let entry = std::fs::read(&p)
                    .map_err(|source| SpoolError::Io {
                        path: p.clone(),
                        source,
                    })
                    .and_then(|b| {
                        serde_json::from_slice(&b).map_err(|source| SpoolError::Corrupt {
                            path: p.clone(),
                            source,
                        })
                    });
                (p, entry)
            })
            .collect())
    }

    pub fn mark_published(&self, path: &Path) -> Result<PathBuf, SpoolError> {
        let to = self
            .dir
            .join("published")
            .join(path.file_name().unwrap_or_default());
        std::fs::rename(path, &to).map_err(|source| SpoolError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(to)
    }
}

/// Pushes with exponential backoff (0.5 s doubling, at most 8 s apart) until
/// `budget` is spent. Mistakes that retrying cannot fix (bad credentials,
/// unknown image, a foreign `.att` tag) end it at once.
pub async fn push_with_retry(
    registry: &Registry,
    e: &SpoolEntry,
    budget: Duration,
) -> Result<Attached, RegistryError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        match registry
            .attach(&e.image, &e.envelope, &e.key_id, &e.predicate_type)
            .await
        {
            Ok(a) => return Ok(a),
            Err(err) if err.is_transient() && start.elapsed() + delay < budget => {
                tracing::warn!(image = %e.image, error = %err, retry_in_ms = delay.as_millis() as u64, "registry push failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(8));
            }
            Err(err) => return Err(err),
        }
    }
}
