//! The init-container gate: before a build starts, every required input
//! must come with an attestation from the previous stage that verifies
//! (keys), passes the policy, and names the input's actual digest as a
//! subject. What passed is recorded among this stage's resolved
//! dependencies, so provenance chains from stage to stage.
//!
//! `--require` forms:
//! * `PATH=ATTESTATION`: a file or directory and its attestation (envelope,
//!   bundle, or a `provenant record` log);
//! * `PATH`: the attestation is looked for at `PATH.intoto.jsonl`, then
//!   `PATH.sigstore.json`;
//! * `image:REF`: attestations attached to the image in its registry.
//!
//! A directory is vouched for when a subject carries its in-toto `dirHash`
//! (`--products-as dirhash` upstream), or when every file in it is a
//! subject (name ending in the file's path relative to the directory, same
//! sha256).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use super::{exit, verify_bytes, Policy, VerifyError, Violation};
use crate::digest::{hash_tree, WalkOptions};
use crate::provenance::ResourceDescriptor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Path {
        input: PathBuf,
        attestation: Option<PathBuf>,
    },
    Image(String),
}

impl FromStr for Requirement {
    type Err = GateError;

    fn from_str(s: &str) -> Result<Self, GateError> {
        if let Some(r) = s.strip_prefix("image:") {
            if r.is_empty() {
                return Err(GateError::Usage(format!(
                    "--require {s}: expected image:REF"
                )));
            }
            return Ok(Requirement::Image(r.to_string()));
        }
        match s.split_once('=') {
            Some((i, a)) if !i.is_empty() && !a.is_empty() => Ok(Requirement::Path {
                input: i.into(),
                attestation: Some(a.into()),
            }),
            Some(_) => Err(GateError::Usage(format!(
                "--require {s}: expected PATH=ATTESTATION"
            ))),
            None if !s.is_empty() => Ok(Requirement::Path {
                input: s.into(),
                attestation: None,
            }),
            None => Err(GateError::Usage("--require: empty value".into())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("{0}")]
    Usage(String),
    #[error("{input}: no attestation found (looked for {tried})")]
    NoAttestation { input: String, tried: String },
    #[error("{input}: cannot read: {source}")]
    Read {
        input: String,
        source: std::io::Error,
    },
    #[error("{input}: {source}")]
    Verify { input: String, source: VerifyError },
    #[error("{input}: policy violated: {}", .violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; "))]
    Policy {
        input: String,
        violations: Vec<Violation>,
    },
    #[error("{input}: the attestation does not vouch for this input: {detail}")]
    Mismatch { input: String, detail: String },
    #[error("{input}: {message}")]
    Image { input: String, message: String },
}

impl GateError {
    pub fn exit_code(&self) -> i32 {
        match self {
            GateError::Usage(_) => exit::USAGE,
            GateError::NoAttestation { .. } | GateError::Read { .. } | GateError::Image { .. } => {
                exit::CANNOT_CHECK
            }
            GateError::Verify { source, .. } => source.exit_code(),
            GateError::Policy { .. } | GateError::Mismatch { .. } => exit::POLICY,
        }
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The resolved dependency that records a verified upstream attestation.
fn upstream_descriptor(
    input: &str,
    attestation_digest: &str,
    signed_by: &[String],
) -> ResourceDescriptor {
    let mut d = ResourceDescriptor {
        name: Some(format!("attestation:{input}")),
        media_type: Some("application/vnd.dsse.envelope.v1+json".into()),
        ..Default::default()
    };
    d.digest.insert("sha256", attestation_digest.to_string());
    d.annotations
        .insert("provenant.verifiedBy".into(), serde_json::json!(signed_by));
    d
}

/// Checks a file or directory requirement.
pub fn check_path(
    input: &Path,
    attestation: Option<&Path>,
    policy: &Policy,
) -> Result<ResourceDescriptor, GateError> {
    let label = input.display().to_string();
    let candidates: Vec<PathBuf> = match attestation {
        Some(a) => vec![a.to_path_buf()],
        None => vec![
            PathBuf::from(format!("{label}.intoto.jsonl")),
            PathBuf::from(format!("{label}.sigstore.json")),
        ],
    };
    let att = candidates
        .iter()
        .find(|p| p.is_file())
        .ok_or_else(|| GateError::NoAttestation {
            input: label.clone(),
            tried: candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let bytes = std::fs::read(att).map_err(|source| GateError::Read {
        input: att.display().to_string(),
        source,
    })?;
    let v = verify_bytes(
        &att.display().to_string(),
        &bytes,
        &policy.keys,
        policy.threshold,
    )
    .map_err(|source| GateError::Verify {
        input: label.clone(),
        source,
    })?;
    let violations = policy.check(&v, time::OffsetDateTime::now_utc());
    if !violations.is_empty() {
        return Err(GateError::Policy {
            input: label,
            violations,
        });
    }
    // sha256 -> subject names, from the attestation.
    let mut attested: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in &v.statement.subject {
        if let Some(d) = s.digest.get("sha256") {
            attested
                .entry(d.as_str())
                .or_default()
                .push(s.name.as_deref().unwrap_or(""));
        }
    }
    let meta = std::fs::metadata(input).map_err(|source| GateError::Read {
        input: label.clone(),
        source,
    })?;
    if meta.is_file() {
        let actual = crate::digest::hash_file(input).map_err(|e| GateError::Read {
            input: label.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let actual = hex::encode(actual);
        if !attested.contains_key(actual.as_str()) {
            return Err(GateError::Mismatch {
                input: label,
                detail: format!("its sha256 is {actual}, which no subject has"),
            });
        }
    } else {
        let tree = hash_tree(input, &WalkOptions::default()).map_err(|e| GateError::Read {
            input: label.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let dir_hashes: Vec<&str> = v
            .statement
            .subject
            .iter()
            .filter_map(|s| s.digest.get(crate::provenance::ALG_DIR_HASH))
            .map(String::as_str)
            .collect();
        if !dir_hashes.is_empty() {
            // A name with a newline has no dirHash; then only per-file
            // subjects can vouch for the directory.
            if let Ok(actual) = tree.dir_hash() {
                if dir_hashes.contains(&actual.as_str()) {
                    return Ok(upstream_descriptor(
                        &label,
                        &sha256_hex(&bytes),
                        &v.signed_by,
                    ));
                }
                if attested.is_empty() {
                    return Err(GateError::Mismatch {
                        input: label,
                        detail: format!("its dirHash is {actual}, which no subject has"),
                    });
                }
            }
        }
        let mut missing = Vec::new();
        let mut count = 0;
        for (rel, digest) in tree.files() {
            count += 1;
            let rel = rel.to_string();
            let ok = attested
                .get(hex::encode(digest).as_str())
                .is_some_and(|names| {
                    names
                        .iter()
                        .any(|n| *n == rel || n.ends_with(&format!("/{rel}")))
                });
            if !ok {
                missing.push(rel);
            }
        }
        if count == 0 {
            return Err(GateError::Mismatch {
                input: label,
                detail: "the directory is empty".into(),
            });
        }
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(3).map(String::as_str).collect();
            return Err(GateError::Mismatch {
                input: label,
                detail: format!(
                    "{} of {count} files are not attested subjects with that content (e.g. {})",
                    missing.len(),
                    shown.join(", ")
                ),
            });
        }
    }
    Ok(upstream_descriptor(
        &label,
        &sha256_hex(&bytes),
        &v.signed_by,
    ))
}

/// Checks an image requirement against the attestations attached to it.
pub async fn check_image(
    image: &str,
    registry: &crate::publish::Registry,
    policy: &Policy,
) -> Result<ResourceDescriptor, GateError> {
    let label = format!("image:{image}");
    let (img, found) = registry.fetch(image).await.map_err(|e| GateError::Image {
        input: label.clone(),
        message: e.to_string(),
    })?;
    let mut reasons = Vec::new();
    for f in &found {
        let v = match super::verify_attached(
            &f.digest,
            &f.envelope,
            &img.digest,
            &policy.keys,
            policy.threshold,
        ) {
            Ok(v) => v,
            Err(e) => {
                reasons.push(match e {
                    super::AttachedError::Unreadable(e) => format!("{}: {e}", f.digest),
                    super::AttachedError::Invalid(e) => e.to_string(),
                    super::AttachedError::NotThisImage => {
                        format!("{}: no subject has the image digest", f.digest)
                    }
                });
                continue;
            }
        };
        let violations = policy.check(&v, time::OffsetDateTime::now_utc());
        if !violations.is_empty() {
            return Err(GateError::Policy {
                input: label,
                violations,
            });
        }
        let mut d =
            upstream_descriptor(&label, f.digest.trim_start_matches("sha256:"), &v.signed_by);
        d.uri = Some(format!("{}@{}", img.repository(), img.digest));
        return Ok(d);
    }
    Err(GateError::Mismatch {
        input: label,
        detail: if reasons.is_empty() {
            "no attestation is attached".into()
        } else {
            reasons.join("; ")
        },
    })
}
