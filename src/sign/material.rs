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
    /// as Fulcio. Stored (in the spool) as base64 strings.
    Certificate {
        #[serde(with = "der_list")]
        chain: Vec<Vec<u8>>,
    },
}

/// DER blobs as a list of base64 strings.
mod der_list {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let e = base64::engine::general_purpose::STANDARD;
        v.iter()
            .map(|d| e.encode(d))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let e = base64::engine::general_purpose::STANDARD;
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|x| e.decode(x).map_err(serde::de::Error::custom))
            .collect()
    }
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
    /// The signing certificate (DER), when the key is certified.
    pub fn leaf(&self) -> Option<&[u8]> {
        match &self.key {
            KeyMaterial::Certificate { chain } => chain.first().map(Vec::as_slice),
            KeyMaterial::PublicKey { .. } => None,
        }
    }

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
