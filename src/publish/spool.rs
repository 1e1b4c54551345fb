//! Nothing lost: every attestation meant for a registry is first written to
//! a spool directory (atomically), then pushed; only a completed push moves
//! it to `published/`. A sidecar whose registry is down keeps the file and
//! `provenant publish SPOOL_DIR` pushes it later. Pushing is idempotent, so
//! a crash between push and move costs nothing but a repeated no-op push.
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::registry::{sha256_digest, Attached, Deadline, Registry, RegistryError};
use super::{write_file, Durability};
use crate::sign::{Envelope, PendingWitness, VerificationMaterial};

/// Version 2 carries the whole verification material; version 1 entries
/// (a key id only) are still read.
pub const SPOOL_VERSION: u32 = 2;

/// One attestation to attach to one image.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    try_from = "StoredEntry"
)]
pub struct SpoolEntry {
    pub version: u32,
    /// `registry/repository@sha256:HEX`
    pub image: String,
    pub predicate_type: String,
    /// Key hint or certificate chain, log entries, timestamps: what the
    /// bundle and the cosign layer's annotations carry.
    pub material: VerificationMaterial,
    pub envelope: Envelope,
}

/// A spool file as written by this or an earlier provenant.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoredEntry {
    version: u32,
    image: String,
    predicate_type: String,
    /// Version 1: the key id.
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    material: Option<VerificationMaterial>,
    envelope: Envelope,
}

impl TryFrom<StoredEntry> for SpoolEntry {
    type Error = String;

    fn try_from(s: StoredEntry) -> Result<Self, String> {
        let material = match (s.version, s.material, s.key_id) {
            (1, None, Some(id)) => VerificationMaterial::public_key(&id),
            (2, Some(m), None) => m,
            (v @ (1 | 2), ..) => {
                return Err(format!(
                    "version {v} entries hold {}",
                    if v == 1 { "keyId" } else { "material" }
                ))
            }
            (v, ..) => return Err(format!("version {v} is not 1 or 2")),
        };
        Ok(SpoolEntry {
            version: SPOOL_VERSION,
            image: s.image,
            predicate_type: s.predicate_type,
            material,
            envelope: s.envelope,
        })
    }
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
pub type Spooled<T> = (PathBuf, Result<T, SpoolError>);
pub type Pending = Spooled<SpoolEntry>;

pub const WITNESS_VERSION: u32 = 1;

/// An attestation whose transparency-log entry or timestamp is still to be
/// made (`spool/witness/`): everything to make it, then to finish the
/// outputs that needed it (the bundle file, the images' registries).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WitnessEntry {
    pub version: u32,
    pub predicate_type: String,
    pub envelope: Envelope,
    /// What there is so far (certificate or key hint, any timestamps).
    pub material: VerificationMaterial,
    pub pending: PendingWitness,
    /// Images to attach it to once witnessed (`registry/repo@sha256:HEX`).
    #[serde(default)]
    pub images: Vec<String>,
    /// The bundle file to write again once witnessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PathBuf>,
}

/// A witness spool file and what it holds.
pub type PendingWitnessEntry = Spooled<WitnessEntry>;

pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Opens an existing spool directory (`provenant publish`): a missing
    /// one is an error, not an empty spool.
    pub fn open_existing(dir: &Path) -> Result<Spool, SpoolError> {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => Spool::open(dir),
            Ok(_) => Err(SpoolError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            }),
            Err(source) => Err(SpoolError::Io {
                path: dir.to_path_buf(),
                source,
            }),
        }
    }

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

    /// Writes an attestation still to be witnessed (named by its content,
    /// like [`Spool::add`]), or writes over the entry at `path`.
    pub fn add_witness(
        &self,
        e: &WitnessEntry,
        path: Option<&Path>,
    ) -> Result<PathBuf, SpoolError> {
        let bytes = serde_json::to_vec(e).expect("witness entry serializes");
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => {
                let dir = self.dir.join("witness");
                std::fs::create_dir_all(dir.join("done")).map_err(|source| SpoolError::Io {
                    path: dir.clone(),
                    source,
                })?;
                let id = sha256_digest(e.envelope.to_json().as_bytes());
                dir.join(format!("{}.json", &id["sha256:".len()..][..16]))
            }
        };
        write_file(&path, Durability::Synced, |w| w.write_all(&bytes))?;
        Ok(path)
    }

    /// Attestations still to be witnessed, oldest name first.
    pub fn witness_pending(&self) -> Result<Vec<PendingWitnessEntry>, SpoolError> {
        let dir = self.dir.join("witness");
        if !dir.is_dir() {
            return Ok(Vec::new());
        }
        Self::files_in(&dir)
    }

    /// A witnessed entry, to `witness/done/`.
    pub fn witness_done(&self, path: &Path) -> Result<PathBuf, SpoolError> {
        let to = self
            .dir
            .join("witness/done")
            .join(path.file_name().unwrap_or_default());
        std::fs::rename(path, &to).map_err(|source| SpoolError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(to)
    }

    /// Entries still to push, oldest name first.
    pub fn pending(&self) -> Result<Vec<Pending>, SpoolError> {
        Self::entries_in(&self.dir)
    }

    /// Entries already published (for `publish --reconcile`).
    pub fn published(&self) -> Result<Vec<Pending>, SpoolError> {
        Self::entries_in(&self.dir.join("published"))
    }

    fn entries_in(dir: &Path) -> Result<Vec<Pending>, SpoolError> {
        Self::files_in(dir)
    }

    fn files_in<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<Vec<Spooled<T>>, SpoolError> {
        let rd = std::fs::read_dir(dir).map_err(|source| SpoolError::Io {
            path: dir.to_path_buf(),
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
                let entry = read_capped(&p)
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

    /// Moves a published entry back to pending (reconcile found it gone
    /// and could not put it back).
    pub fn mark_pending(&self, path: &Path) -> Result<PathBuf, SpoolError> {
        let to = self.dir.join(path.file_name().unwrap_or_default());
        std::fs::rename(path, &to).map_err(|source| SpoolError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(to)
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

/// A spool file is one envelope; an attestation can be 25 MB, nothing
/// legitimate is near this.
const MAX_ENTRY: u64 = 256 << 20;

fn read_capped(p: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(p)?;
    let mut out = Vec::new();
    f.take(MAX_ENTRY + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_ENTRY {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_ENTRY} bytes"
        )));
    }
    Ok(out)
}

/// Pushes with exponential backoff (0.5 s doubling, at most 8 s apart)
/// until `deadline`, which bounds every request too: it returns by then
/// whatever the registry does. Mistakes that retrying cannot fix (bad
/// credentials, unknown image, foreign content on both tags) end it at once.
pub async fn push_with_retry(
    registry: &Registry,
    e: &SpoolEntry,
    deadline: Deadline,
) -> Result<Attached, RegistryError> {
    let d = deadline;
    let mut delay = Duration::from_millis(500);
    loop {
        match registry
            .attach_until(&e.image, &e.envelope, &e.material, &e.predicate_type, &d)
            .await
        {
            Ok(a) => return Ok(a),
            Err(err) if err.is_transient() && d.remaining() > delay => {
                tracing::warn!(image = %e.image, error = %err, retry_in_ms = delay.as_millis() as u64, "registry push failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(8));
            }
            Err(err) => return Err(err),
        }
    }
}

crate::exit_class!(SpoolError => crate::error::exit::CANNOT_CHECK);
