//! Sigstore bundle v0.3 (`application/vnd.dev.sigstore.bundle.v0.3+json`,
//! protobuf-specs `dev.sigstore.bundle.v1.Bundle` in its JSON form) holding
//! our DSSE envelope and its verification material: a public-key hint (the
//! verifier holds the key) or the signing certificate (keyless; v0.3
//! carries the leaf only, the chain is in the verifier's trusted root),
//! plus the transparency-log entries and RFC 3161 timestamps the witnesses
//! added (`sign::witness`).
use serde::{Deserialize, Serialize};

use crate::sign::{Envelope, Signature, Signed, B64};

pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle<'a> {
    pub media_type: String,
    pub verification_material: VerificationMaterial,
    pub dsse_envelope: BundleEnvelope<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    /// A key the verifier holds (exactly one of this and `certificate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyHint>,
    /// The signing certificate (v0.3: the leaf only; the chain is in the
    /// verifier's trusted root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<RawBytes>,
    /// v0.1/v0.2 bundles: the chain, leaf first (read, never written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_certificate_chain: Option<CertificateChain>,
    #[serde(default)]
    pub tlog_entries: Vec<serde_json::Value>,
    #[serde(default)]
    pub timestamp_verification_data: TimestampVerificationData,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateChain {
    pub certificates: Vec<RawBytes>,
}

/// protobuf `bytes` in JSON: standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawBytes {
    pub raw_bytes: String,
}

impl From<&crate::sign::VerificationMaterial> for VerificationMaterial {
    fn from(m: &crate::sign::VerificationMaterial) -> Self {
        use crate::sign::KeyMaterial;
        let (public_key, certificate) = match &m.key {
            KeyMaterial::PublicKey { hint } => (Some(PublicKeyHint { hint: hint.clone() }), None),
            KeyMaterial::Certificate { chain } => (
                None,
                chain.first().map(|leaf| RawBytes {
                    raw_bytes: crate::sign::encode_b64(leaf),
                }),
            ),
        };
        VerificationMaterial {
            public_key,
            certificate,
            x509_certificate_chain: None,
            tlog_entries: m.tlog_entries.clone(),
            timestamp_verification_data: TimestampVerificationData {
                rfc3161_timestamps: m.rfc3161_timestamps.clone(),
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyHint {
    pub hint: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimestampVerificationData {
    #[serde(default)]
    pub rfc3161_timestamps: Vec<serde_json::Value>,
}

/// The bundle's DSSE envelope: the same fields as ours, but `keyid` comes
/// after `sig` and is always present (protobuf JSON field order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleEnvelope<'a> {
    /// Borrowed from our envelope when we write a bundle: 22 MB for 100k
    /// subjects, and the sidecar writes both files.
    pub payload: B64<'a>,
    pub payload_type: String,
    pub signatures: Vec<BundleSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleSignature {
    pub sig: String,
    #[serde(default)]
    pub keyid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a Sigstore bundle: {}", crate::sign::dsse::json_error(.0))]
    Json(#[from] serde_json::Error),
    #[error("bundle mediaType is '{0}', expected {BUNDLE_MEDIA_TYPE} (or v0.1/v0.2)")]
    MediaType(String),
    #[error("bundle has no DSSE envelope signatures")]
    NoSignatures,
    #[error("not a Sigstore bundle: it also has the key {0:?} of a DSSE envelope or provenant log line; refusing to guess which was meant")]
    Ambiguous(&'static str),
    #[error("bundle dsseEnvelope: {0}")]
    Envelope(String),
    #[error("bundle verificationMaterial: {0}")]
    Material(String),
}

impl<'a> Bundle<'a> {
    /// The bundle for `envelope`, hinting at the key that signed it.
    pub fn for_envelope(envelope: &'a Envelope, key_id: &str) -> Bundle<'a> {
        Self::with(
            key_id,
            B64::Text(std::borrow::Cow::Borrowed(&envelope.payload)),
            &envelope.payload_type,
            &envelope.signatures,
        )
    }

    /// The bundle for `envelope` with its verification material.
    pub fn for_envelope_with(
        envelope: &'a Envelope,
        material: &crate::sign::VerificationMaterial,
    ) -> Bundle<'a> {
        let mut b = Self::for_envelope(envelope, "");
        b.verification_material = VerificationMaterial::from(material);
        b
    }

    /// The bundle for a signed attestation, with its verification material.
    pub fn for_attestation(att: &'a crate::sign::Attestation) -> Bundle<'a> {
        let mut b = Self::for_signed(&att.signed, "");
        b.verification_material = VerificationMaterial::from(&att.material);
        b
    }

    /// The bundle for a freshly signed envelope, its payload copied
    /// verbatim.
    pub fn for_signed(signed: &'a Signed, key_id: &str) -> Bundle<'a> {
        Self::with(
            key_id,
            signed.payload_b64(),
            signed.payload_type(),
            &signed.signatures,
        )
    }

    fn with(
        key_id: &str,
        payload: B64<'a>,
        payload_type: &str,
        signatures: &[Signature],
    ) -> Bundle<'a> {
        Bundle {
            media_type: BUNDLE_MEDIA_TYPE.into(),
            verification_material: VerificationMaterial::from(
                &crate::sign::VerificationMaterial::public_key(key_id),
            ),
            dsse_envelope: BundleEnvelope {
                payload,
                payload_type: payload_type.to_string(),
                signatures: signatures
                    .iter()
                    .map(|s| BundleSignature {
                        sig: s.sig.clone(),
                        keyid: s.keyid.clone(),
                    })
                    .collect(),
            },
        }
    }

    /// The one parse of a bundle. Unknown fields are ignored, except the
    /// keys of a bare DSSE envelope or a provenant log line at the top
    /// level: such an object is refused rather than read one way here and
    /// another way by a DSSE library. The envelope inside is parsed as
    /// strictly as [`Envelope::parse`] parses a bare one.
    pub fn parse(bytes: &[u8]) -> Result<Bundle<'static>, BundleError> {
        #[derive(Deserialize)]
        struct Keys {
            #[serde(default)]
            payload: crate::sign::dsse::Present,
            #[serde(default, rename = "payloadType")]
            payload_type: crate::sign::dsse::Present,
            #[serde(default)]
            signatures: crate::sign::dsse::Present,
            #[serde(default, rename = "provenantAttestation")]
            marker: crate::sign::dsse::Present,
            #[serde(default)]
            log: crate::sign::dsse::Present,
            #[serde(rename = "dsseEnvelope")]
            envelope: Box<serde_json::value::RawValue>,
        }
        let k: Keys = serde_json::from_slice(bytes)?;
        for (present, key) in [
            (k.payload, "payload"),
            (k.payload_type, "payloadType"),
            (k.signatures, "signatures"),
            (k.marker, "provenantAttestation"),
            (k.log, "log"),
        ] {
            if present.0 {
                return Err(BundleError::Ambiguous(key));
            }
        }
        // The same rules as a bare envelope (other-form keys inside are
        // refused too).
        crate::sign::Envelope::parse(k.envelope.get().as_bytes())
            .map_err(|e| BundleError::Envelope(e.to_string()))?;
        let b: Bundle<'static> = serde_json::from_slice(bytes)?;
        if !b
            .media_type
            .starts_with("application/vnd.dev.sigstore.bundle")
        {
            return Err(BundleError::MediaType(b.media_type));
        }
        if b.dsse_envelope.signatures.is_empty() {
            return Err(BundleError::NoSignatures);
        }
        Ok(b)
    }

    /// The verification material, as provenant verifies it: exactly one of
    /// a public-key hint, a certificate, a certificate chain.
    pub fn material(&self) -> Result<crate::sign::VerificationMaterial, BundleError> {
        use crate::sign::KeyMaterial;
        let m = &self.verification_material;
        let der = |r: &RawBytes| {
            crate::sign::decode_b64(&r.raw_bytes)
                .map_err(|_| BundleError::Material("a certificate is not base64".into()))
        };
        let key = match (&m.public_key, &m.certificate, &m.x509_certificate_chain) {
            (Some(k), None, None) => KeyMaterial::PublicKey {
                hint: k.hint.clone(),
            },
            (None, Some(c), None) => KeyMaterial::Certificate {
                chain: vec![der(c)?],
            },
            (None, None, Some(chain)) if !chain.certificates.is_empty() => {
                KeyMaterial::Certificate {
                    chain: chain
                        .certificates
                        .iter()
                        .take(10)
                        .map(der)
                        .collect::<Result<_, _>>()?,
                }
            }
            _ => {
                return Err(BundleError::Material(
                    "expected exactly one of publicKey, certificate, x509CertificateChain".into(),
                ))
            }
        };
        Ok(crate::sign::VerificationMaterial {
            key,
            tlog_entries: m.tlog_entries.clone(),
            rfc3161_timestamps: m.timestamp_verification_data.rfc3161_timestamps.clone(),
        })
    }

    /// The DSSE envelope inside, as provenant verifies it.
    pub fn envelope(&self) -> Envelope {
        Envelope {
            payload: self.dsse_envelope.payload.as_str().to_string(),
            payload_type: self.dsse_envelope.payload_type.clone(),
            signatures: self
                .dsse_envelope
                .signatures
                .iter()
                .map(|s| Signature {
                    keyid: s.keyid.clone(),
                    sig: s.sig.clone(),
                })
                .collect(),
        }
    }

    /// Writes the bundle JSON to `path` atomically, serialized straight into
    /// the file.
    pub fn write_to(&self, path: &std::path::Path) -> Result<(), super::WriteError> {
        super::write_atomic_with(path, |w| {
            serde_json::to_writer(w, self).map_err(std::io::Error::other)
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("bundle serializes")
    }
}

crate::exit_class!(BundleError => crate::error::exit::INVALID);
