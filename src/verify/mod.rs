//! Checking an attestation: envelope signature against trusted keys, then
//! the statement inside it.
use std::path::Path;

pub mod gate;
pub mod policy;
pub use policy::{Policy, PolicyError, Violation};

use crate::provenance::{Statement, StatementError, IN_TOTO_PAYLOAD_TYPE};
use crate::sign::{Envelope, EnvelopeError, KeyError, VerifyingKey};

pub use crate::error::exit;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Envelope { path: String, source: EnvelopeError },
    #[error("{path}: signature valid but {source}")]
    Statement {
        path: String,
        source: StatementError,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("no trusted key given: pass --key PUBLIC_KEY")]
    NoKeys,
    #[error("{label}: {count} policy violation(s) of {policy}")]
    Policy {
        label: String,
        policy: String,
        count: usize,
    },
    #[error("{image}: no attestation attached (no cosign .att tag, no referrers)")]
    NotAttached { image: String },
    #[error("{image}: none of the {count} attached attestation(s) verified (first: {first})")]
    NoneVerified {
        image: String,
        count: usize,
        first: String,
    },
    #[error("{path}: {source}")]
    Bundle {
        path: String,
        source: crate::publish::BundleError,
    },
}

impl VerifyError {
    /// Which exit code this failure maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            VerifyError::Read { .. } | VerifyError::Key(_) | VerifyError::NoKeys => {
                exit::CANNOT_CHECK
            }
            VerifyError::Envelope {
                source: EnvelopeError::Key(_),
                ..
            } => exit::CANNOT_CHECK,
            VerifyError::Policy { .. } => exit::POLICY,
            VerifyError::Envelope { .. }
            | VerifyError::Statement { .. }
            | VerifyError::Bundle { .. }
            | VerifyError::NotAttached { .. }
            | VerifyError::NoneVerified { .. } => exit::INVALID,
        }
    }
}

/// A verified attestation.
#[derive(Debug, Clone)]
pub struct Verified {
    pub envelope: Envelope,
    pub statement: Statement,
    /// Ids of the trusted keys whose signatures verified.
    pub signed_by: Vec<String>,
}

pub fn verify_bytes(
    label: &str,
    bytes: &[u8],
    keys: &[VerifyingKey],
    threshold: usize,
) -> Result<Verified, VerifyError> {
    // A log line (or a whole pod log) from `provenant record` holds the
    // envelope; the signature check below is what makes it trustworthy.
    let extracted = crate::publish::extract_envelope(bytes);
    let bytes = extracted.as_deref().unwrap_or(bytes);
    // A Sigstore bundle carries the same envelope.
    let envelope = match crate::publish::bundle::sniff(bytes) {
        Some(Ok(b)) => b.envelope(),
        Some(Err(source)) => {
            return Err(VerifyError::Bundle {
                path: label.to_string(),
                source,
            })
        }
        None => Envelope::parse(trim_jsonl(bytes)).map_err(|source| VerifyError::Envelope {
            path: label.to_string(),
            source,
        })?,
    };
    verify_envelope(label, envelope, keys, threshold)
}

/// The signature of `envelope` against `keys`, then the statement inside.
pub fn verify_envelope(
    label: &str,
    envelope: Envelope,
    keys: &[VerifyingKey],
    threshold: usize,
) -> Result<Verified, VerifyError> {
    if keys.is_empty() {
        return Err(VerifyError::NoKeys);
    }
    let (payload, signed_by) = envelope
        .verify(IN_TOTO_PAYLOAD_TYPE, keys, threshold.max(1))
        .map_err(|source| VerifyError::Envelope {
            path: label.to_string(),
            source,
        })?;
    let statement = Statement::parse(&payload).map_err(|source| VerifyError::Statement {
        path: label.to_string(),
        source,
    })?;
    Ok(Verified {
        envelope,
        statement,
        signed_by,
    })
}

/// Why an attestation attached to an image does not vouch for it.
#[derive(Debug)]
pub enum AttachedError {
    /// The registry held something that is not an envelope.
    Unreadable(String),
    Invalid(VerifyError),
    /// Valid, but about other artefacts: an attestation copied next to
    /// another image must not vouch for it.
    NotThisImage,
}

/// One attestation found attached to the image with manifest digest
/// `image_digest` (`sha256:HEX`): signature, statement, and a subject that
/// is that digest. `verify --image` and the `image:` gate both use it.
pub fn verify_attached(
    label: &str,
    envelope: &Result<Envelope, String>,
    image_digest: &str,
    keys: &[VerifyingKey],
    threshold: usize,
) -> Result<Verified, AttachedError> {
    let envelope = envelope.clone().map_err(AttachedError::Unreadable)?;
    let v = verify_envelope(label, envelope, keys, threshold).map_err(AttachedError::Invalid)?;
    let want = image_digest.trim_start_matches("sha256:");
    if v.statement
        .subject
        .iter()
        .any(|s| s.digest.get("sha256").map(String::as_str) == Some(want))
    {
        Ok(v)
    } else {
        Err(AttachedError::NotThisImage)
    }
}

/// `-` reads standard input (`kubectl logs ... | provenant verify -`).
pub fn verify_file(
    path: &Path,
    keys: &[VerifyingKey],
    threshold: usize,
) -> Result<Verified, VerifyError> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map_err(|source| {
            VerifyError::Read {
                path: "standard input".into(),
                source,
            }
        })?;
        return verify_bytes("standard input", &bytes, keys, threshold);
    }
    let bytes = std::fs::read(path).map_err(|source| VerifyError::Read {
        path: path.display().to_string(),
        source,
    })?;
    verify_bytes(&path.display().to_string(), &bytes, keys, threshold)
}

/// Our files are `.intoto.jsonl` (one envelope, one line); accept the
/// trailing newline and surrounding whitespace, nothing else.
fn trim_jsonl(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end]
}

impl crate::error::ExitClass for VerifyError {
    fn exit_code(&self) -> i32 {
        VerifyError::exit_code(self)
    }
}
