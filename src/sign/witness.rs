//! Witnessing a signature, the step between signing and the outputs: an
//! RFC 3161 timestamp of the signature (`--tsa-url`, `tsa.rs`) and an entry
//! in the Rekor transparency log (`--rekor-url`, `rekor.rs`), each added to
//! the attestation's verification material, so the bundle file, the
//! registry layers and the spool all carry them. Works with every signer:
//! a key (as cosign signs with a key and uploads to Rekor) or keyless.
//!
//! A witness that cannot be reached within the deadline does not lose the
//! attestation: what is missing is noted in [`Attestation::pending`], the
//! outputs write what they can, the spool keeps the rest
//! (`publish::WitnessSpool`), and `provenant publish` finishes it
//! ([`complete`]). For a Fulcio certificate that works only while the
//! certificate is valid (10 minutes): a later log entry or timestamp could
//! not show that the signature was made while it was.
use std::time::{Duration, Instant};

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::rekor::{Logged, Rekor};
use super::tsa::Tsa;
use super::{Attestation, Envelope, KeyMaterial, Signer, VerificationMaterial};

/// Where signatures are witnessed. No clap here: `cli/` fills it.
#[derive(Debug, Clone, Default)]
pub struct WitnessConfig {
    pub rekor_url: Option<String>,
    pub tsa_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("{0}")]
    Url(String),
    #[error("Rekor {url}: {reason}")]
    Rekor { url: String, reason: String },
    #[error("timestamp authority {url}: {reason}")]
    Tsa { url: String, reason: String },
    #[error("the signer cannot name its public key or certificate, so there is nothing to log")]
    NoVerifier,
    #[error("the signing certificate expired at {0}: a log entry or timestamp made now cannot show the signature was made while it was valid; this attestation can only be verified with a key, or must be made again")]
    Expired(String),
    #[error("the envelope has no single signature to witness")]
    Envelope,
    #[error("the signing certificate cannot be read: {0}")]
    Certificate(String),
}

impl crate::error::ExitClass for WitnessError {
    fn exit_code(&self) -> i32 {
        match self {
            WitnessError::Url(_) => crate::error::exit::USAGE,
            _ => crate::error::exit::CANNOT_CHECK,
        }
    }
}

/// What is still to be done for an attestation, kept in the spool until
/// `provenant publish` does it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PendingWitness {
    /// The log still to upload to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rekor_url: Option<String>,
    /// The timestamp authority still to ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsa_url: Option<String>,
    /// What the log records as the verifier (public key or certificate PEM).
    pub verifier_pem: String,
    /// Why it is pending, for people.
    pub reason: String,
}

impl PendingWitness {
    pub fn is_done(&self) -> bool {
        self.rekor_url.is_none() && self.tsa_url.is_none()
    }
}

/// The witnesses a command was given.
#[derive(Debug, Default)]
pub struct Witnesses {
    rekor: Option<Rekor>,
    tsa: Option<Tsa>,
}

impl Witnesses {
    pub fn open(c: &WitnessConfig) -> Result<Witnesses, WitnessError> {
        Ok(Witnesses {
            rekor: c.rekor_url.as_deref().map(Rekor::new).transpose()?,
            tsa: c.tsa_url.as_deref().map(Tsa::new).transpose()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rekor.is_none() && self.tsa.is_none()
    }

    pub fn has_rekor(&self) -> bool {
        self.rekor.is_some()
    }

    pub fn has_tsa(&self) -> bool {
        self.tsa.is_some()
    }

    /// Each witness answers at all (any HTTP status: address, TLS and
    /// name are right), before a build runs. Nothing is logged or stamped.
    pub fn check(&self) -> Result<(), WitnessError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        if let Some(r) = &self.rekor {
            let a = super::sigstore_http::request(
                reqwest::Method::GET,
                r.url().join("api/v1/log"),
                None,
                Vec::new(),
                64 << 10,
                deadline,
            )
            .map_err(|e| WitnessError::Rekor {
                url: r.url().to_string(),
                reason: format!("not reachable: {e}"),
            })?;
            tracing::info!(rekor = %r.url(), status = a.status, "transparency log reachable");
        }
        if let Some(t) = &self.tsa {
            let a = super::sigstore_http::request(
                reqwest::Method::GET,
                t.url().join("api/v1/timestamp/certchain"),
                None,
                Vec::new(),
                64 << 10,
                deadline,
            )
            .map_err(|e| WitnessError::Tsa {
                url: t.url().to_string(),
                reason: format!("not reachable: {e}"),
            })?;
            tracing::info!(tsa = %t.url(), status = a.status, "timestamp authority reachable");
        }
        Ok(())
    }

    /// Timestamps, then logs, the signature of `att` (made by `signer`),
    /// until `deadline`. What fails is logged and left in `att.pending`.
    pub fn witness(&self, att: &mut Attestation, signer: &dyn Signer, deadline: Instant) {
        if self.is_empty() {
            return;
        }
        let Some(verifier_pem) = signer.verifier_pem() else {
            tracing::error!("{}", WitnessError::NoVerifier);
            return;
        };
        let pending = PendingWitness {
            rekor_url: self.rekor.as_ref().map(|r| r.url().to_string()),
            tsa_url: self.tsa.as_ref().map(|t| t.url().to_string()),
            verifier_pem,
            reason: String::new(),
        };
        let envelope = att.signed.to_envelope();
        let left = self.finish(pending, &envelope, &mut att.material, deadline);
        att.pending = (!left.is_done()).then_some(left);
    }

    /// Does what `p` says is pending; returns what still is.
    fn finish(
        &self,
        mut p: PendingWitness,
        envelope: &Envelope,
        material: &mut VerificationMaterial,
        deadline: Instant,
    ) -> PendingWitness {
        let mut reasons = Vec::new();
        let sig = match single_signature(envelope) {
            Ok(s) => s,
            Err(e) => {
                p.reason = e.to_string();
                return p;
            }
        };
        if let (Some(tsa), Some(_)) = (&self.tsa, &p.tsa_url) {
            match tsa.timestamp(&sig, deadline) {
                Ok(ts) => {
                    material.rfc3161_timestamps.push(ts);
                    p.tsa_url = None;
                    tracing::info!(tsa = %tsa.url(), "signature timestamped");
                }
                Err(e) => {
                    tracing::error!("{e}");
                    reasons.push(e.to_string());
                }
            }
        }
        if let (Some(rekor), Some(_)) = (&self.rekor, &p.rekor_url) {
            let logged = Logged {
                payload_type: &envelope.payload_type,
                payload_b64: &envelope.payload,
                sig: &sig,
                keyid: envelope.signatures.first().map_or("", |s| s.keyid.as_str()),
                verifier_pem: &p.verifier_pem,
            };
            match rekor.upload(&logged, deadline) {
                Ok(entry) => {
                    tracing::info!(
                        rekor = %rekor.url(),
                        log_index = %entry["logIndex"].as_str().unwrap_or_default(),
                        "signature logged in the transparency log"
                    );
                    material.tlog_entries.push(entry);
                    p.rekor_url = None;
                }
                Err(e) => {
                    tracing::error!("{e}");
                    reasons.push(e.to_string());
                }
            }
        }
        p.reason = reasons.join("; ");
        p
    }
}

fn single_signature(envelope: &Envelope) -> Result<Vec<u8>, WitnessError> {
    let [s] = envelope.signatures.as_slice() else {
        return Err(WitnessError::Envelope);
    };
    base64::engine::general_purpose::STANDARD
        .decode(&s.sig)
        .map_err(|_| WitnessError::Envelope)
}

/// `provenant publish`: does what `pending` says is left for `envelope`,
/// adding to `material`. Refuses once the signing certificate has expired.
/// Returns what is still pending (`is_done()` when nothing).
pub fn complete(
    pending: &PendingWitness,
    envelope: &Envelope,
    material: &mut VerificationMaterial,
    deadline: Instant,
) -> Result<PendingWitness, WitnessError> {
    if let KeyMaterial::Certificate { chain } = &material.key {
        if let Some(leaf) = chain.first() {
            let not_after = not_after(leaf)?;
            if not_after <= time::OffsetDateTime::now_utc() {
                return Err(WitnessError::Expired(
                    not_after
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                ));
            }
        }
    }
    let w = Witnesses::open(&WitnessConfig {
        rekor_url: pending.rekor_url.clone(),
        tsa_url: pending.tsa_url.clone(),
    })?;
    Ok(w.finish(pending.clone(), envelope, material, deadline))
}

fn not_after(der: &[u8]) -> Result<time::OffsetDateTime, WitnessError> {
    use x509_parser::prelude::FromDer;
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| WitnessError::Certificate(e.to_string()))?;
    time::OffsetDateTime::from_unix_timestamp(c.validity().not_after.timestamp())
        .map_err(|e| WitnessError::Certificate(e.to_string()))
}
