//! Checking an attestation: envelope signature against trusted keys, then
//! the statement inside it.
use std::path::Path;

pub mod facts;
pub mod gate;
pub mod glob;
pub mod input;
pub mod policy;
pub mod sigstore;
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
    #[error("{path}: {source}")]
    Sigstore {
        path: String,
        source: sigstore::SigstoreError,
    },
    #[error("{path}: signed with a certificate (keyless): pass --trusted-root FILE, --certificate-identity (or -regexp) and --certificate-oidc-issuer (or -regexp), or a policy with trustedRoot and identities")]
    NeedsIdentity { path: String },
    #[error("{path}: {what}")]
    NeedsTrustedRoot { path: String, what: &'static str },
    #[error("{path}: no certificate to check the identity of: a DSSE envelope or log line carries none (verify the Sigstore bundle written beside it, .sigstore.json), and no --key was given")]
    NoCertificate { path: String },
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
            VerifyError::Sigstore { source, .. } => crate::error::ExitClass::exit_code(source),
            VerifyError::NeedsIdentity { .. }
            | VerifyError::NeedsTrustedRoot { .. }
            | VerifyError::NoCertificate { .. } => exit::CANNOT_CHECK,
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
    /// Ids of the trusted keys whose signatures verified, or the
    /// certificate identity that signed.
    pub signed_by: Vec<String>,
    /// The certificate identity, for a keyless attestation.
    pub certificate: Option<sigstore::CertificateSigner>,
    /// Transparency-log entries verified.
    pub tlog_entries: usize,
}

/// What an attestation may be signed by: trusted keys (`threshold` of
/// them), or, with a trusted root, certificates for the identities given.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    pub keys: &'a [VerifyingKey],
    pub threshold: usize,
    pub sigstore: Option<sigstore::Requirements<'a>>,
}

/// One attestation, as read (`input::Found`): a keyless bundle against the
/// trusted root and identities, anything else against the keys; then its
/// log entries (all verified when there is a trusted root; at least one
/// when required), then the statement.
pub fn verify_attestation(
    label: &str,
    envelope: Envelope,
    material: Option<&crate::sign::VerificationMaterial>,
    trust: &Trust<'_>,
) -> Result<Verified, VerifyError> {
    let sig_err = |source| VerifyError::Sigstore {
        path: label.to_string(),
        source,
    };
    if let Some(
        m @ crate::sign::VerificationMaterial {
            key: crate::sign::KeyMaterial::Certificate { .. },
            ..
        },
    ) = material
    {
        let req = trust
            .sigstore
            .filter(|r| !r.identities.is_empty())
            .ok_or_else(|| VerifyError::NeedsIdentity {
                path: label.to_string(),
            })?;
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(VerifyError::Envelope {
                path: label.to_string(),
                source: EnvelopeError::PayloadType {
                    actual: envelope.payload_type.clone(),
                    expected: IN_TOTO_PAYLOAD_TYPE.into(),
                },
            });
        }
        let checked = sigstore::verify_certificate(&envelope, m, req).map_err(sig_err)?;
        let statement =
            Statement::parse(&checked.payload).map_err(|source| VerifyError::Statement {
                path: label.to_string(),
                source,
            })?;
        return Ok(Verified {
            envelope,
            statement,
            signed_by: vec![checked.signer.to_string()],
            certificate: Some(checked.signer),
            tlog_entries: checked.tlog_entries,
        });
    }
    if trust.keys.is_empty() && trust.sigstore.is_some_and(|r| !r.identities.is_empty()) {
        return Err(VerifyError::NoCertificate {
            path: label.to_string(),
        });
    }
    let mut v = verify_envelope(label, envelope, trust.keys, trust.threshold)?;
    let entries = material.map_or(0, |m| m.tlog_entries.len());
    let required = trust.sigstore.is_some_and(|r| r.require_tlog);
    if entries > 0 && trust.sigstore.is_none() {
        // The key vouches for it; its log entries are extra evidence that
        // only a trusted root can check.
        tracing::warn!(
            "{label}: {entries} transparency-log entr{} not checked (pass --trusted-root FILE to check)",
            if entries == 1 { "y" } else { "ies" }
        );
    } else if entries > 0 || required {
        let req = trust.sigstore.ok_or(VerifyError::NeedsTrustedRoot {
            path: label.to_string(),
            what: "a transparency-log entry is required: pass --trusted-root FILE",
        })?;
        let Some(m) = material else {
            return Err(VerifyError::Sigstore {
                path: label.to_string(),
                source: sigstore::SigstoreError::Invalid(
                    "no transparency-log entry (a bare envelope or log line carries none: verify the Sigstore bundle), and one is required".into(),
                ),
            });
        };
        // The entries must log the signature of a key that verified.
        let mut last = None;
        for k in trust.keys.iter().filter(|k| v.signed_by.contains(&k.id)) {
            match sigstore::verify_key_tlog(&v.envelope, m, k, req.root, required) {
                Ok(n) => {
                    v.tlog_entries = n;
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(sig_err(e));
        }
    }
    Ok(v)
}

/// The one attestation in `bytes` (an envelope, a bundle, a log line or a
/// log holding exactly one attestation line), verified. The gate uses it:
/// an input is vouched for by one attestation, not by whichever of several
/// happens to come last.
pub fn verify_bytes(label: &str, bytes: &[u8], trust: &Trust<'_>) -> Result<Verified, VerifyError> {
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
    verify_attestation(label, found.envelope, found.material.as_ref(), trust)
}

/// The bytes of `path` (`-`: standard input) and the label to name it by,
/// at most [`input::MAX_INPUT`] bytes.
pub fn read_input(path: &Path) -> Result<(String, Vec<u8>), VerifyError> {
    read_input_capped(path, input::MAX_INPUT)
}

/// [`read_input`] with another cap: the 1 GiB one is too large to test at
/// its edge, so the tests hold this to a cap of a few bytes.
fn read_input_capped(path: &Path, cap: u64) -> Result<(String, Vec<u8>), VerifyError> {
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
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| VerifyError::Read {
            path: label.clone(),
            source,
        })?;
    if bytes.len() as u64 > cap {
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
        certificate: None,
        tlog_entries: 0,
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
    found: &crate::publish::Found,
    image_digest: &str,
    trust: &Trust<'_>,
) -> Result<Verified, AttachedError> {
    let envelope = found.envelope.clone().map_err(AttachedError::Unreadable)?;
    let v = verify_attestation(label, envelope, found.material.as_ref(), trust)
        .map_err(AttachedError::Invalid)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// With nothing to trust, the answer names the missing key: not the
    /// missing certificate, which is the answer only when identities were
    /// given (the CLI asks for `--key` before this is reached; the library
    /// says it itself for every other caller).
    #[test]
    fn no_keys_and_no_identities_is_no_trusted_key() {
        let envelope = Envelope::parse(
            br#"{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"AAAA"}]}"#,
        )
        .unwrap();
        let trust = Trust {
            keys: &[],
            threshold: 1,
            sigstore: None,
        };
        let e = verify_attestation("x", envelope, None, &trust).unwrap_err();
        assert!(matches!(e, VerifyError::NoKeys), "{e}");
    }

    /// The cap is the most bytes read: a file of exactly the cap is read
    /// whole, one byte more is refused as too large (not cut to the cap
    /// and then refused as malformed JSON).
    #[test]
    fn an_input_is_read_up_to_the_cap_and_refused_past_it() {
        let t = tempfile::tempdir().unwrap();
        let at_cap = t.path().join("at-cap");
        std::fs::write(&at_cap, b"abcd").unwrap();
        let (label, bytes) = read_input_capped(&at_cap, 4).unwrap();
        assert_eq!(
            (label.as_str(), bytes.as_slice()),
            (at_cap.to_str().unwrap(), &b"abcd"[..])
        );
        let over = t.path().join("over");
        std::fs::write(&over, b"abcde").unwrap();
        match read_input_capped(&over, 4) {
            Err(VerifyError::TooLarge { path }) => assert_eq!(path, over.to_str().unwrap()),
            other => panic!("{other:?}"),
        }
    }
}
