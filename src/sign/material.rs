//! What a verifier needs beside the signature: how to find the key (a
//! public-key hint, or a certificate chain binding an ephemeral key to an
//! identity) and, where there are any, transparency-log entries and
//! timestamps. The shape of a Sigstore bundle's `verificationMaterial`
//! (and of sigstore-rs's `SigningArtifact`), so that every output can carry
//! it: the bundle file, the cosign layer annotations, the spool.
use serde::{Deserialize, Serialize};

/// How the verifier finds the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyMaterial {
    /// A long-lived key the verifier already holds; the hint is its key id
    /// (hex SHA-256 of the SPKI DER).
    PublicKey { hint: String },
    /// A certificate (leaf first, DER) for an ephemeral key, from a CA such
    /// as Fulcio.
    Certificate { chain: Vec<Vec<u8>> },
}

/// Everything beside the envelope that a verifier needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    pub key: KeyMaterial,
    /// Transparency-log entries, each in the Sigstore bundle's
    /// `TransparencyLogEntry` JSON form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tlog_entries: Vec<serde_json::Value>,
    /// RFC 3161 timestamps (`{"signedTimestamp": BASE64}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rfc3161_timestamps: Vec<serde_json::Value>,
}

impl VerificationMaterial {
    pub fn public_key(key_id: &str) -> Self {
        VerificationMaterial {
            key: KeyMaterial::PublicKey {
                hint: key_id.to_string(),
            },
            tlog_entries: Vec::new(),
            rfc3161_timestamps: Vec::new(),
        }
    }
}
