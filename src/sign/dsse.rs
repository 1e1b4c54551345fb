//! DSSE envelopes: <https://github.com/secure-systems-lab/dsse/blob/master/envelope.md>
//! and the pre-authentication encoding from `protocol.md`.
use std::borrow::Cow;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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
    #[error("not a DSSE envelope: {}", crate::sign::dsse::json_error(.0))]
    Json(#[from] serde_json::Error),
    #[error("not a DSSE envelope: it also has the key {0:?}, which belongs to another form (a provenant log line or a Sigstore bundle); refusing to guess which was meant")]
    Ambiguous(&'static str),
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

/// Top-level keys that mark a provenant log line, a Sigstore bundle or a
/// docker json-file log record: never part of a DSSE envelope.
pub const OTHER_FORM_KEYS: [&str; 5] = [
    "provenantAttestation",
    "dsseEnvelope",
    "mediaType",
    "verificationMaterial",
    "log",
];

/// A JSON error without quoting the input: serde's messages can carry a
/// value from the document ("invalid type: string \"...\""), and the
/// document may be a builder's.
pub fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "cannot be read",
        Category::Syntax => "not valid JSON",
        Category::Data => "JSON of the wrong shape",
        Category::Eof => "truncated JSON",
    };
    let shape = match e.classify() {
        Category::Data => {
            // The serde messages for missing and duplicate fields quote
            // only our own field names; keep those.
            let m = e.to_string();
            if m.starts_with("missing field") || m.starts_with("duplicate field") {
                format!(" ({})", m.split(" at line").next().unwrap_or(""))
            } else {
                String::new()
            }
        }
        _ => String::new(),
    };
    format!("{what}{shape} at line {} column {}", e.line(), e.column())
}

/// A key that was present, whatever its value (`null` included).
#[derive(Debug, Default, Clone, Copy)]
pub struct Present(pub bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Present(true))
    }
}

#[derive(Deserialize)]
struct StrictEnvelope {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<Signature>,
    #[serde(flatten, deserialize_with = "other_forms")]
    other: Vec<&'static str>,
}

/// Collects which [`OTHER_FORM_KEYS`] appear among the remaining keys.
fn other_forms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<&'static str>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<&'static str>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(k) = a.next_key::<std::borrow::Cow<'de, str>>()? {
                a.next_value::<serde::de::IgnoredAny>()?;
                if let Some(known) = OTHER_FORM_KEYS.iter().find(|x| **x == k) {
                    out.push(*known);
                }
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
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

/// A payload's base64 text inside JSON: as parsed, or borrowed from a
/// [`Signed`] envelope, where it is already a JSON string literal and is
/// copied verbatim instead of being scanned for characters to escape
/// (base64 has none) once per file it goes into.
#[derive(Debug, Clone)]
pub enum B64<'a> {
    Text(Cow<'a, str>),
    Literal(&'a RawValue),
}

impl B64<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            B64::Text(t) => t,
            // Built by `Signed` from the base64 alphabet and two quotes.
            B64::Literal(r) => r.get().trim_matches('"'),
        }
    }
}

impl PartialEq for B64<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for B64<'_> {}

impl Serialize for B64<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            B64::Text(t) => s.serialize_str(t),
            B64::Literal(r) => r.serialize(s),
        }
    }
}

impl<'de, 'a> Deserialize<'de> for B64<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(B64::Text(Cow::Owned(String::deserialize(d)?)))
    }
}

/// A freshly signed envelope in the form it is written: the payload's
/// base64 made once, as a JSON string literal, then copied into the
/// envelope file, the bundle and the log line. For 100k subjects that is
/// a 21 MB string; made and escape-checked once instead of three times.
#[derive(Debug)]
pub struct Signed {
    payload_type: String,
    payload: Box<RawValue>,
    payload_len: usize,
    pub signatures: Vec<Signature>,
}

/// A payload serialized and framed for signing: the PAE header right in
/// front of it in one buffer, so the signed message is a slice of the
/// buffer, not a second copy of a 17 MB statement. Made before signing so
/// that whatever the payload was serialized from can be freed first.
pub struct Unsigned {
    payload_type: String,
    buf: Vec<u8>,
    /// Where the PAE header starts and the payload starts.
    start: usize,
    room: usize,
}

impl Unsigned {
    /// `size_hint`: the expected payload size, so a 17 MB statement is
    /// not copied each time its buffer doubles.
    pub fn new<T: Serialize + ?Sized>(
        payload_type: &str,
        value: &T,
        size_hint: usize,
    ) -> Result<Unsigned, KeyError> {
        Self::new_in(Vec::with_capacity(size_hint + 128), payload_type, value)
    }

    /// [`Unsigned::new`] into `buf` (emptied first), e.g. one prepared
    /// while the build's end was being processed.
    pub fn new_in<T: Serialize + ?Sized>(
        mut buf: Vec<u8>,
        payload_type: &str,
        value: &T,
    ) -> Result<Unsigned, KeyError> {
        // "DSSEv1" SP LEN SP type SP LEN SP, each LEN at most 20 digits.
        let room = 7 + 21 + payload_type.len() + 1 + 21;
        buf.clear();
        buf.resize(room, 0);
        serde_json::to_writer(&mut buf, value).map_err(|e| KeyError::Sign(e.to_string()))?;
        let payload_len = buf.len() - room;
        let header = format!(
            "DSSEv1 {} {payload_type} {payload_len} ",
            payload_type.len()
        );
        let start = room - header.len();
        buf[start..room].copy_from_slice(header.as_bytes());
        Ok(Unsigned {
            payload_type: payload_type.to_string(),
            buf,
            start,
            room,
        })
    }

    pub fn payload(&self) -> &[u8] {
        &self.buf[self.room..]
    }

    pub fn sign(self, signer: &dyn Signer) -> Result<Signed, KeyError> {
        self.sign_while(signer, || ())
    }

    /// Signs while `meanwhile` runs on another core (the sidecar frees the
    /// trees the payload was made from) and the base64 is made after it.
    pub fn sign_while(
        self,
        signer: &dyn Signer,
        meanwhile: impl FnOnce() + Send,
    ) -> Result<Signed, KeyError> {
        // The base64 of the payload (22 MB for 100k subjects) does not
        // wait for the signature: on a second core it costs the finalize
        // nothing, where after signing it added ~10 ms. It does wait for
        // `meanwhile`: made while the trees were still being freed, it
        // raised the sidecar's peak RSS from 62 to 75-85 MB at 100k files
        // (the bench's finalize rows, 2026-12-02); the cost is ~10 ms of
        // latency, the trim's madvise now being on the path.
        let (sig, payload) = rayon::join(
            || signer.sign(&self.buf[self.start..]),
            || {
                meanwhile();
                base64_literal(self.payload())
            },
        );
        Ok(Signed {
            payload_len: self.buf.len() - self.room,
            payload_type: self.payload_type,
            payload: payload?,
            signatures: vec![Signature {
                keyid: signer.key_id().to_string(),
                sig: encode_b64(&sig?),
            }],
        })
    }
}

/// [`Envelope`]'s JSON, field for field, borrowing a [`Signed`].
#[derive(Debug, Serialize)]
pub struct EnvelopeJson<'a> {
    pub payload: B64<'a>,
    #[serde(rename = "payloadType")]
    pub payload_type: &'a str,
    pub signatures: &'a [Signature],
}

impl Signed {
    /// Serializes `value` as the payload and signs it.
    pub fn sign<T: Serialize + ?Sized>(
        payload_type: &str,
        value: &T,
        size_hint: usize,
        signer: &dyn Signer,
    ) -> Result<Signed, KeyError> {
        Unsigned::new(payload_type, value, size_hint)?.sign(signer)
    }

    pub fn payload_type(&self) -> &str {
        &self.payload_type
    }

    /// Length of the signed payload (the statement), in bytes.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    pub fn payload_b64(&self) -> B64<'_> {
        B64::Literal(&self.payload)
    }

    pub fn json(&self) -> EnvelopeJson<'_> {
        EnvelopeJson {
            payload: self.payload_b64(),
            payload_type: &self.payload_type,
            signatures: &self.signatures,
        }
    }

    /// An owned [`Envelope`] (for the registry and the spool).
    pub fn to_envelope(&self) -> Envelope {
        Envelope {
            payload: self.payload_b64().as_str().to_string(),
            payload_type: self.payload_type.clone(),
            signatures: self.signatures.clone(),
        }
    }
}

/// `"BASE64"` as a JSON value, encoded on two threads into one buffer of
/// exactly the right size.
fn base64_literal(payload: &[u8]) -> Result<Box<RawValue>, KeyError> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let encoded = payload.len().div_ceil(3) * 4;
    // Zeroed memory comes from the kernel untouched: the pages are faulted
    // in by the two threads that write them, not by a fill on this one.
    let mut out = vec![0u8; encoded + 2];
    out[0] = b'"';
    out[encoded + 1] = b'"';
    // Split on a multiple of 3 input bytes: the first half needs no padding.
    let half = (payload.len() / 2) / 3 * 3;
    let (a, b) = payload.split_at(half);
    let (oa, ob) = out[1..encoded + 1].split_at_mut(half / 3 * 4);
    let (ra, rb) = rayon::join(|| engine.encode_slice(a, oa), || engine.encode_slice(b, ob));
    let err = |e: base64::EncodeSliceError| KeyError::Sign(e.to_string());
    ra.map_err(err)?;
    rb.map_err(err)?;
    let text = String::from_utf8(out).map_err(|e| KeyError::Sign(e.to_string()))?;
    RawValue::from_string(text).map_err(|e| KeyError::Sign(e.to_string()))
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

    /// The one parse of a DSSE envelope (JSON object). As in the DSSE
    /// reference implementations and securesystemslib, unknown fields are
    /// ignored, except the keys that mark another input form
    /// ([`OTHER_FORM_KEYS`]): an object that is both an envelope and a log
    /// line or bundle is refused, so no two readers can take different
    /// envelopes from it. A repeated field is refused (Python's `json`
    /// would keep the last one).
    pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let s: StrictEnvelope = serde_json::from_slice(bytes)?;
        if let Some(k) = s.other.first() {
            return Err(EnvelopeError::Ambiguous(k));
        }
        Ok(Envelope {
            payload: s.payload,
            payload_type: s.payload_type,
            signatures: s.signatures,
        })
    }

    /// Compact JSON. Every field is a string, so serializing cannot fail;
    /// were it ever to, that is a bug (exit 1), never an empty envelope
    /// written or pushed in its place.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope of strings serializes")
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

impl crate::error::ExitClass for EnvelopeError {
    fn exit_code(&self) -> i32 {
        match self {
            EnvelopeError::Key(_) => crate::error::exit::CANNOT_CHECK,
            _ => crate::error::exit::INVALID,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind of JSON error is named, with where it is; serde's message
    /// is kept only for a missing field (it quotes our own field name),
    /// never where it would quote the document.
    #[test]
    fn json_errors_say_what_and_where_without_quoting_the_input() {
        #[derive(Debug, serde::Deserialize)]
        struct T {
            #[allow(dead_code)]
            n: u32,
        }
        let err = |doc: &str| json_error(&serde_json::from_str::<T>(doc).unwrap_err());
        let cases = [
            (
                r#"{"n": "SECRET"}"#,
                "JSON of the wrong shape at line 1 column 14",
            ),
            (
                "{}",
                "JSON of the wrong shape (missing field `n`) at line 1 column 2",
            ),
            (r#"{"n": SECRET}"#, "not valid JSON at line 1 column 7"),
            (r#"{"n": 1"#, "truncated JSON at line 1 column 7"),
        ];
        for (doc, want) in cases {
            assert_eq!(err(doc), want, "{doc}");
        }
    }

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
        fn verifier_pem(&self) -> Option<String> {
            None
        }
    }

    #[test]
    fn signed_signs_the_same_pae_as_sign_and_writes_the_same_json() {
        // Lengths around multiples of 3, and large enough to split.
        for n in [0, 1, 2, 3, 4, 123_455, 123_456, 123_457] {
            let text = serde_json::json!({ "x": "y".repeat(n) });
            let bytes = serde_json::to_vec(&text).unwrap();
            let a = Envelope::sign("application/vnd.in-toto+json", &bytes, &Echo).unwrap();
            let b = Signed::sign("application/vnd.in-toto+json", &text, 0, &Echo).unwrap();
            assert_eq!(b.to_envelope(), a);
            assert_eq!(
                serde_json::to_string(&b.json()).unwrap(),
                serde_json::to_string(&a).unwrap()
            );
            assert_eq!(b.payload_len(), bytes.len());
            let signed = decode_b64(&b.signatures[0].sig).unwrap();
            assert_eq!(signed, pae("application/vnd.in-toto+json", &bytes));
        }
    }
}
