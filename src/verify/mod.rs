//! Checking an attestation: envelope signature against trusted keys, then
//! the statement inside it.
use std::path::Path;

pub mod facts;
pub mod gate;
pub mod glob;
pub mod input;
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
    Input {
        path: String,
        source: input::InputError,
    },
    #[error("{path}: not the attestation asked for: {why}")]
    NotBound { path: String, why: String },
    #[error("{path}: {count} attestations found where exactly one is expected")]
    Several { path: String, count: usize },
    #[error("{path}: larger than {max} bytes", max = input::MAX_INPUT)]
    TooLarge { path: String },
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
            VerifyError::Policy { .. } | VerifyError::NotBound { .. } => exit::POLICY,
            VerifyError::Envelope { .. }
            | VerifyError::Statement { .. }
            | VerifyError::Input { .. }
            | VerifyError::Several { .. }
            | VerifyError::TooLarge { .. }
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

/// The one attestation in `bytes` (an envelope, a bundle, a log line or a
/// log holding exactly one attestation line), verified. The gate uses it:
/// an input is vouched for by one attestation, not by whichever of several
/// happens to come last.
pub fn verify_bytes(
    label: &str,
    bytes: &[u8],
    keys: &[VerifyingKey],
    threshold: usize,
) -> Result<Verified, VerifyError> {
    let mut read = input::read(bytes).map_err(|source| VerifyError::Input {
        path: label.to_string(),
        source,
    })?;
    for (line, why) in &read.skipped {
        tracing::warn!("{label}:{line}: {why}");
    }
    if read.found.len() != 1 {
        return Err(VerifyError::Several {
            path: label.to_string(),
            count: read.found.len(),
        });
    }
    let found = read.found.remove(0);
    verify_envelope(label, found.envelope, keys, threshold)
}

/// The bytes of `path` (`-`: standard input) and the label to name it by,
/// at most [`input::MAX_INPUT`] bytes.
pub fn read_input(path: &Path) -> Result<(String, Vec<u8>), VerifyError> {
    use std::io::Read;
    let (label, reader): (String, Box<dyn Read>) = if path.as_os_str() == "-" {
        ("-".into(), Box::new(std::io::stdin()))
    } else {
        let label = path.display().to_string();
        let f = std::fs::File::open(path).map_err(|source| VerifyError::Read {
            path: label.clone(),
            source,
        })?;
        (label, Box::new(f))
    };
    let mut bytes = Vec::new();
    reader
        .take(input::MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| VerifyError::Read {
            path: label.clone(),
            source,
        })?;
    if bytes.len() as u64 > input::MAX_INPUT {
        return Err(VerifyError::TooLarge { path: label });
    }
    Ok((label, bytes))
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

impl crate::error::ExitClass for VerifyError {
    fn exit_code(&self) -> i32 {
        VerifyError::exit_code(self)
    }
}
