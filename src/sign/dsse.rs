//! DSSE envelopes: <https://github.com/secure-systems-lab/dsse/blob/master/envelope.md>
//! and the pre-authentication encoding from `protocol.md`.
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{KeyError, Signer, VerifyingKey};

/// One signature of an envelope. `keyid` is an unauthenticated hint: we
/// never select keys by it, we try every trusted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a DSSE envelope: {0}")]
    Json(#[from] serde_json::Error),
    #[error("payloadType is '{actual}', expected '{expected}'")]
    PayloadType { actual: String, expected: String },
    #[error("payload is not valid base64: {0}")]
    PayloadBase64(base64::DecodeError),
    #[error("signatures[{index}].sig is not valid base64: {source}")]
    SigBase64 {
        index: usize,
        source: base64::DecodeError,
    },
    #[error("envelope has no signatures")]
    NoSignatures,
    #[error("envelope has duplicate signatures: signatures[{dup}] repeats signatures[{first}]")]
    Duplicate { first: usize, dup: usize },
    #[error("no signature verifies with the trusted key(s) {keys}: payload or signature modified, or signed by another key (envelope keyids: {keyids})")]
    NoValidSignature { keys: String, keyids: String },
    #[error("only {valid} trusted key(s) signed, {threshold} required")]
    Threshold { valid: usize, threshold: usize },
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, LEN in ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// DSSE allows standard or URL-safe base64; both are accepted. Padding is
/// required (as the Go and Python implementations write it), so a truncated
/// value is reported as such instead of decoding to fewer bytes.
pub fn decode_b64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurposeConfig};
    let cfg =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::RequireCanonical);
    let std = general_purpose::GeneralPurpose::new(&base64::alphabet::STANDARD, cfg);
    match std.decode(s) {
        Ok(v) => Ok(v),
        Err(e) => {
            let url = general_purpose::GeneralPurpose::new(&base64::alphabet::URL_SAFE, cfg);
            url.decode(s).map_err(|_| e)
        }
    }
}

pub fn encode_b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

impl Envelope {
    pub fn sign(
        payload_type: &str,
        payload: &[u8],
        signer: &dyn Signer,
    ) -> Result<Envelope, KeyError> {
        let sig = signer.sign(&pae(payload_type, payload))?;
        Ok(Envelope {
            payload: encode_b64(payload),
            payload_type: payload_type.to_string(),
            signatures: vec![Signature {
                keyid: signer.key_id().to_string(),
                sig: encode_b64(&sig),
            }],
        })
    }

    /// [`Envelope::sign`] for a payload that `fill` appends to a buffer. The
    /// payload is written after room for the PAE header, which then goes
    /// right in front of it, so the signed message is a slice of the same
    /// buffer: no second copy of a 17 MB statement at the sidecar's peak.
    pub fn sign_with(
        payload_type: &str,
        fill: impl FnOnce(&mut Vec<u8>),
        signer: &dyn Signer,
    ) -> Result<Envelope, KeyError> {
        // "DSSEv1" SP LEN SP type SP LEN SP, each LEN at most 20 digits.
        let room = 7 + 21 + payload_type.len() + 1 + 21;
        let mut buf = vec![0u8; room];
        fill(&mut buf);
        let payload_len = buf.len() - room;
        let header = format!(
            "DSSEv1 {} {} {} ",
            payload_type.len(),
            payload_type,
            payload_len
        );
        let start = room - header.len();
        buf[start..room].copy_from_slice(header.as_bytes());
        let sig = signer.sign(&buf[start..])?;
        Ok(Envelope {
            payload: encode_b64(&buf[room..]),
            payload_type: payload_type.to_string(),
            signatures: vec![Signature {
                keyid: signer.key_id().to_string(),
                sig: encode_b64(&sig),
            }],
        })
    }

    pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn payload_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        decode_b64(&self.payload).map_err(EnvelopeError::PayloadBase64)
    }

    /// Checks the payload type, then the signatures: at least `threshold`
    /// distinct trusted keys must each have a valid signature. Returns the
    /// decoded payload and the ids of the keys that signed.
    pub fn verify(
        &self,
        expected_type: &str,
        keys: &[VerifyingKey],
        threshold: usize,
    ) -> Result<(Vec<u8>, Vec<String>), EnvelopeError> {
        if self.payload_type != expected_type {
            return Err(EnvelopeError::PayloadType {
                actual: self.payload_type.clone(),
                expected: expected_type.to_string(),
            });
        }
        let payload = self.payload_bytes()?;
        if self.signatures.is_empty() {
            return Err(EnvelopeError::NoSignatures);
        }
        let mut sigs = Vec::with_capacity(self.signatures.len());
        for (index, s) in self.signatures.iter().enumerate() {
            let raw =
                decode_b64(&s.sig).map_err(|source| EnvelopeError::SigBase64 { index, source })?;
            // A repeated signature can only inflate a threshold count; a
            // well-formed envelope never has one, so refuse it outright.
            if let Some(first) = sigs.iter().position(|r: &Vec<u8>| *r == raw) {
                return Err(EnvelopeError::Duplicate { first, dup: index });
            }
            sigs.push(raw);
        }
        let message = pae(&self.payload_type, &payload);
        let signed_by: Vec<String> = keys
            .iter()
            .filter(|k| sigs.iter().any(|s| k.verify(&message, s)))
            .map(|k| k.id.clone())
            .collect();
        let mut distinct = signed_by.clone();
        distinct.sort();
        distinct.dedup();
        if distinct.is_empty() {
            return Err(EnvelopeError::NoValidSignature {
                keys: keys
                    .iter()
                    .map(|k| k.describe())
                    .collect::<Vec<_>>()
                    .join(", "),
                keyids: self
                    .signatures
                    .iter()
                    .map(|s| {
                        if s.keyid.is_empty() {
                            "(none)"
                        } else {
                            s.keyid.as_str()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        if distinct.len() < threshold {
            return Err(EnvelopeError::Threshold {
                valid: distinct.len(),
                threshold,
            });
        }
        Ok((payload, distinct))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signs with the message itself, so the test sees exactly what was
    /// signed.
    struct Echo;
    impl Signer for Echo {
        fn key_id(&self) -> &str {
            "echo"
        }
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
            Ok(message.to_vec())
        }
    }

    #[test]
    fn sign_with_signs_the_same_pae_as_sign() {
        for payload in [&b""[..], b"{}", &vec![b'x'; 123_457][..]] {
            let a = Envelope::sign("application/vnd.in-toto+json", payload, &Echo).unwrap();
            let b = Envelope::sign_with(
                "application/vnd.in-toto+json",
                |buf| buf.extend_from_slice(payload),
                &Echo,
            )
            .unwrap();
            assert_eq!(a, b);
            let signed = decode_b64(&b.signatures[0].sig).unwrap();
            assert_eq!(signed, pae("application/vnd.in-toto+json", payload));
        }
    }
}
