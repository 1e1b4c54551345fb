//! Sigstore verification, offline, against a trusted root given as
//! Sigstore's `trusted_root.json` (`dev.sigstore.trustedroot.v1.TrustedRoot`,
//! the file `cosign` and sigstore-js read from TUF): the Fulcio CAs, the
//! Rekor logs, the CT logs and the timestamp authorities to trust.
//!
//! A keyless bundle is accepted when, in this order:
//!
//! 1. every transparency-log entry verifies: its log is in the trusted root
//!    (by log id), its signed entry timestamp (SET) verifies with the log's
//!    key, its inclusion proof (when present) leads from the entry to the
//!    root hash of a checkpoint the log signed, and its body records this
//!    envelope's signature, payload and certificate (`sign::rekor`);
//! 2. every RFC 3161 timestamp verifies: it stamps this signature, is
//!    signed by a timestamp authority of the trusted root, whose
//!    certificate chains to that authority's root at the stamped time;
//! 3. there is at least one verified time (a SET-signed integrated time or
//!    a timestamp), and at every one of them the signing certificate
//!    chains to a Fulcio CA of the trusted root valid then, for code
//!    signing;
//! 4. the certificate carries an SCT from a CT log of the trusted root
//!    (when the trusted root lists CT logs, as sigstore-js requires);
//! 5. the signature verifies with the certificate's key;
//! 6. the certificate's identity (a subject alternative name: URI, e-mail
//!    or Fulcio's username) and issuer (Fulcio's issuer extension) match
//!    one of the identities asked for.
//!
//! A key-signed bundle is checked by its key as before; its log entries, if
//! any (or if a log entry is required), are checked as in 1 with the key
//! as the logged verifier.
//!
//! Why hand-written: the `sigstore` crate's bundle verifier skips the
//! inclusion proof and the SET ("TODO", sigstore-rs#285), requires an
//! artifact digest among at most 1,024 subjects, and has no RFC 3161
//! support; its Merkle, SCT and certificate-pool code is private. The
//! chain itself is checked by rustls-webpki, the signatures by aws-lc-rs
//! (through the `sigstore` crate's `CosignVerificationKey` where the key
//! type fixes the algorithm).
use std::path::Path;

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::glob::Glob;
use crate::sign::der::{self, Tlv};
use crate::sign::rekor::{canonical_json, check_body, Logged, MAX_PROOF_HASHES};
use crate::sign::{decode_b64, Envelope, KeyMaterial, VerificationMaterial, VerifyingKey};

/// Largest trusted root read (the public-good one is ~10 KiB).
pub const MAX_TRUSTED_ROOT: u64 = 4 << 20;
/// Most authorities of each kind, certificates per chain.
const MAX_AUTHORITIES: usize = 64;
const MAX_CHAIN: usize = 10;
/// Most log entries and timestamps in one bundle.
const MAX_ENTRIES: usize = 16;
/// Largest checkpoint.
const MAX_CHECKPOINT: usize = 64 << 10;

const OID_CODE_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x03];
const OID_TIME_STAMPING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];
const OID_FULCIO_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
const OID_FULCIO_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
const OID_FULCIO_USERNAME: &str = "1.3.6.1.4.1.57264.1.7";
const OID_SCT_LIST: &str = "1.3.6.1.4.1.11129.2.4.2";

#[derive(Debug, thiserror::Error)]
pub enum SigstoreError {
    #[error("trusted root {path}: {reason}")]
    Root { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("signed by {got}, not by an identity asked for ({want})")]
    Identity { got: String, want: String },
    #[error("{0}")]
    Pattern(String),
}

impl crate::error::ExitClass for SigstoreError {
    fn exit_code(&self) -> i32 {
        match self {
            SigstoreError::Root { .. } => crate::error::exit::CANNOT_CHECK,
            SigstoreError::Pattern(_) => crate::error::exit::USAGE,
            _ => crate::error::exit::INVALID,
        }
    }
}

fn invalid(s: impl Into<String>) -> SigstoreError {
    SigstoreError::Invalid(s.into())
}

/// A validity window (`validFor`); an open end is unbounded.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Option<OffsetDateTime>,
    end: Option<OffsetDateTime>,
}

impl Window {
    fn contains(&self, t: OffsetDateTime) -> bool {
        self.start.is_none_or(|s| s <= t) && self.end.is_none_or(|e| t <= e)
    }
}

/// A CA (Fulcio) or timestamp authority: its chain, leaf first, root last.
#[derive(Debug, Clone)]
struct CertAuthority {
    chain: Vec<Vec<u8>>,
    valid: Window,
}

/// A transparency log (Rekor) or CT log.
#[derive(Debug, Clone)]
struct LogAuthority {
    key_id: Vec<u8>,
    spki: Vec<u8>,
    valid: Window,
}

/// The trust material of a `trusted_root.json`.
#[derive(Debug, Clone)]
pub struct TrustedRoot {
    pub source: String,
    cas: Vec<CertAuthority>,
    tlogs: Vec<LogAuthority>,
    ctlogs: Vec<LogAuthority>,
    tsas: Vec<CertAuthority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RootFile {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<LogFile>,
    #[serde(default)]
    certificate_authorities: Vec<CaFile>,
    #[serde(default)]
    ctlogs: Vec<LogFile>,
    #[serde(default)]
    timestamp_authorities: Vec<CaFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogFile {
    public_key: PublicKeyFile,
    log_id: LogIdFile,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKeyFile {
    #[serde(default)]
    raw_bytes: Option<String>,
    #[serde(default)]
    valid_for: Option<WindowFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogIdFile {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CaFile {
    cert_chain: ChainFile,
    #[serde(default)]
    valid_for: Option<WindowFile>,
}

#[derive(Deserialize)]
struct ChainFile {
    certificates: Vec<RawBytesFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytesFile {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct WindowFile {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    decode_b64(s).map_err(|_| "not base64".to_string())
}

fn rfc3339(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(|_| {
        format!(
            "{:?} is not an RFC 3339 time",
            s.chars().take(40).collect::<String>()
        )
    })
}

impl TrustedRoot {
    pub fn load(path: &Path) -> Result<TrustedRoot, SigstoreError> {
        use std::io::Read;
        let label = path.display().to_string();
        let err = |reason: String| SigstoreError::Root {
            path: label.clone(),
            reason,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_TRUSTED_ROOT + 1).read_to_end(&mut bytes))
            .map_err(|e| err(e.to_string()))?;
        if bytes.len() as u64 > MAX_TRUSTED_ROOT {
            return Err(err(format!("larger than {MAX_TRUSTED_ROOT} bytes")));
        }
        Self::parse(&label, &bytes)
    }

    pub fn parse(label: &str, bytes: &[u8]) -> Result<TrustedRoot, SigstoreError> {
        let err = |reason: String| SigstoreError::Root {
            path: label.to_string(),
            reason,
        };
        let f: RootFile =
            serde_json::from_slice(bytes).map_err(|e| err(crate::sign::dsse::json_error(&e)))?;
        if !f
            .media_type
            .starts_with("application/vnd.dev.sigstore.trustedroot")
        {
            return Err(err(format!(
                "mediaType {} is not a Sigstore trusted root",
                crate::escape::field(&f.media_type)
            )));
        }
        for (what, n) in [
            ("tlogs", f.tlogs.len()),
            ("certificateAuthorities", f.certificate_authorities.len()),
            ("ctlogs", f.ctlogs.len()),
            ("timestampAuthorities", f.timestamp_authorities.len()),
        ] {
            if n > MAX_AUTHORITIES {
                return Err(err(format!("more than {MAX_AUTHORITIES} {what}")));
            }
        }
        let window = |w: &Option<WindowFile>| -> Result<Window, String> {
            Ok(match w {
                None => Window {
                    start: None,
                    end: None,
                },
                Some(w) => Window {
                    start: w.start.as_deref().map(rfc3339).transpose()?,
                    end: w.end.as_deref().map(rfc3339).transpose()?,
                },
            })
        };
        let logs = |list: &[LogFile], what: &str| -> Result<Vec<LogAuthority>, SigstoreError> {
            list.iter()
                .enumerate()
                .filter(|(_, l)| l.public_key.raw_bytes.is_some())
                .map(|(i, l)| {
                    let at = |r: String| err(format!("{what}[{i}]: {r}"));
                    Ok(LogAuthority {
                        key_id: b64(&l.log_id.key_id)
                            .map_err(|r| at(format!("logId.keyId {r}")))?,
                        spki: b64(l.public_key.raw_bytes.as_deref().unwrap_or_default())
                            .map_err(|r| at(format!("publicKey.rawBytes {r}")))?,
                        valid: window(&l.public_key.valid_for).map_err(at)?,
                    })
                })
                .collect()
        };
        let cas = |list: &[CaFile], what: &str| -> Result<Vec<CertAuthority>, SigstoreError> {
            list.iter()
                .enumerate()
                .map(|(i, c)| {
                    let at = |r: String| err(format!("{what}[{i}]: {r}"));
                    let certs = &c.cert_chain.certificates;
                    if certs.is_empty() || certs.len() > MAX_CHAIN {
                        return Err(at(format!(
                            "{} certificates in its chain (1 to {MAX_CHAIN})",
                            certs.len()
                        )));
                    }
                    Ok(CertAuthority {
                        chain: certs
                            .iter()
                            .map(|x| b64(&x.raw_bytes))
                            .collect::<Result<_, _>>()
                            .map_err(|r| at(format!("certificate {r}")))?,
                        valid: window(&c.valid_for).map_err(at)?,
                    })
                })
                .collect()
        };
        Ok(TrustedRoot {
            source: label.to_string(),
            tlogs: logs(&f.tlogs, "tlogs")?,
            cas: cas(&f.certificate_authorities, "certificateAuthorities")?,
            ctlogs: logs(&f.ctlogs, "ctlogs")?,
            tsas: cas(&f.timestamp_authorities, "timestampAuthorities")?,
        })
    }
}

/// How an identity or issuer is matched.
#[derive(Debug, Clone)]
pub enum Pattern {
    Exact(String),
    /// A regular expression that must match the whole value.
    Regex(regex::Regex),
    /// A policy glob (docs/trust.md).
    Glob(Box<Glob>),
}

/// Longest pattern accepted.
pub const MAX_PATTERN: usize = 1024;

impl Pattern {
    /// `--certificate-identity-regexp`: anchored (the whole identity must
    /// match), compiled with a size limit; linear-time matching.
    pub fn regex(flag: &str, re: &str) -> Result<Pattern, SigstoreError> {
        if re.len() > MAX_PATTERN {
            return Err(SigstoreError::Pattern(format!(
                "{flag}: longer than {MAX_PATTERN} bytes"
            )));
        }
        regex::RegexBuilder::new(&format!("^(?:{re})$"))
            .size_limit(1 << 20)
            .nest_limit(64)
            .build()
            .map(Pattern::Regex)
            .map_err(|e| {
                SigstoreError::Pattern(format!(
                    "{flag}: not a regular expression: {}",
                    e.to_string().replace('\n', " ")
                ))
            })
    }

    pub fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Exact(x) => x == s,
            Pattern::Regex(r) => r.is_match(s),
            Pattern::Glob(g) => g.is_match(s),
        }
    }

    fn describe(&self) -> String {
        match self {
            Pattern::Exact(x) => format!("{:?}", x),
            Pattern::Regex(r) => format!("/{}/", r.as_str()),
            Pattern::Glob(g) => format!("glob {:?}", g.as_str()),
        }
    }
}

/// A certificate identity to accept: subject and issuer.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: Pattern,
    pub issuer: Pattern,
}

impl Identity {
    fn describe(&self) -> String {
        format!(
            "{} from {}",
            self.subject.describe(),
            self.issuer.describe()
        )
    }
}

/// What a verification may trust and must find.
#[derive(Debug, Clone, Copy)]
pub struct Requirements<'a> {
    pub root: &'a TrustedRoot,
    pub identities: &'a [Identity],
    /// At least one verified transparency-log entry.
    pub require_tlog: bool,
}

/// Who signed, as a certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSigner {
    /// The subject alternative name that matched (else the first).
    pub subject: String,
    pub issuer: String,
}

impl std::fmt::Display for CertificateSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (issuer {})",
            crate::escape::field(&self.subject),
            crate::escape::field(&self.issuer)
        )
    }
}

/// What checked out.
#[derive(Debug, Clone)]
pub struct Checked {
    pub payload: Vec<u8>,
    pub signer: CertificateSigner,
    pub tlog_entries: usize,
}

/// The one signature of `envelope` (Sigstore bundles carry exactly one).
fn single_signature(envelope: &Envelope) -> Result<Vec<u8>, SigstoreError> {
    let [s] = envelope.signatures.as_slice() else {
        return Err(invalid(format!(
            "a Sigstore bundle's envelope has exactly one signature, this one {}",
            envelope.signatures.len()
        )));
    };
    decode_b64(&s.sig).map_err(|_| invalid("signature is not base64"))
}

/// A keyless bundle: steps 1 to 6 of the module documentation. Returns
/// the payload (checked to be signed) and the signer.
pub fn verify_certificate(
    envelope: &Envelope,
    material: &VerificationMaterial,
    req: Requirements<'_>,
) -> Result<Checked, SigstoreError> {
    let KeyMaterial::Certificate { chain } = &material.key else {
        return Err(invalid("not signed with a certificate"));
    };
    let leaf = chain
        .first()
        .ok_or_else(|| invalid("no signing certificate"))?;
    let sig = single_signature(envelope)?;
    let payload = envelope
        .payload_bytes()
        .map_err(|e| invalid(e.to_string()))?;
    let leaf_pem = crate::sign::keyless::cert_pem(leaf);
    let logged = Logged {
        payload_type: &envelope.payload_type,
        payload_b64: &envelope.payload,
        sig: &sig,
        keyid: envelope.signatures[0].keyid.as_str(),
        verifier_pem: &leaf_pem,
    };
    // 1, 2: every log entry and timestamp, and the times they prove.
    let (entries, mut times) = verify_tlog_entries(material, &logged, &payload, req.root)?;
    if req.require_tlog && entries == 0 {
        return Err(invalid("no transparency-log entry, and one is required"));
    }
    times.extend(verify_timestamps(material, &sig, req.root)?);
    if times.is_empty() {
        return Err(invalid(
            "no verified time (no transparency-log entry with a signed entry timestamp, no RFC 3161 timestamp): nothing shows the certificate was valid when it signed",
        ));
    }
    // 3, 4: the chain at every verified time, the SCT.
    let parsed = parse_cert(leaf)?;
    let mut issuer_spki = None;
    for t in &times {
        issuer_spki = Some(verify_chain(leaf, &chain[1..], *t, req.root)?);
    }
    if !req.root.ctlogs.is_empty() {
        verify_sct(leaf, issuer_spki.as_deref().unwrap_or_default(), req.root)?;
    }
    // 5: the signature.
    let key = sigstore::crypto::CosignVerificationKey::try_from_der(&parsed.spki)
        .map_err(|e| invalid(format!("the certificate's key: {e}")))?;
    let pae = crate::sign::pae(&envelope.payload_type, &payload);
    key.verify_signature(sigstore::crypto::Signature::Raw(&sig), &pae)
        .map_err(|_| invalid("the signature does not verify with the certificate's key: payload or signature modified"))?;
    // 6: who.
    let issuer = parsed.issuer.clone().unwrap_or_default();
    let want = req
        .identities
        .iter()
        .map(Identity::describe)
        .collect::<Vec<_>>()
        .join("; ");
    let matched = parsed.sans.iter().find(|san| {
        req.identities
            .iter()
            .any(|id| id.subject.matches(san) && id.issuer.matches(&issuer))
    });
    let signer = CertificateSigner {
        subject: matched.or(parsed.sans.first()).cloned().unwrap_or_default(),
        issuer,
    };
    if matched.is_none() {
        return Err(SigstoreError::Identity {
            got: signer.to_string(),
            want,
        });
    }
    Ok(Checked {
        payload,
        signer,
        tlog_entries: entries,
    })
}

/// A key-signed bundle's log entries, `key` being the key whose signature
/// verified. Returns how many verified.
pub fn verify_key_tlog(
    envelope: &Envelope,
    material: &VerificationMaterial,
    key: &VerifyingKey,
    root: &TrustedRoot,
    require: bool,
) -> Result<usize, SigstoreError> {
    let sig = single_signature(envelope)?;
    let payload = envelope
        .payload_bytes()
        .map_err(|e| invalid(e.to_string()))?;
    let pem = key.pem();
    let logged = Logged {
        payload_type: &envelope.payload_type,
        payload_b64: &envelope.payload,
        sig: &sig,
        keyid: envelope.signatures[0].keyid.as_str(),
        verifier_pem: &pem,
    };
    let (n, _) = verify_tlog_entries(material, &logged, &payload, root)?;
    if require && n == 0 {
        return Err(invalid("no transparency-log entry, and one is required"));
    }
    Ok(n)
}

/// Every log entry of `material`; returns how many, and the integrated
/// times their SETs vouch for.
fn verify_tlog_entries(
    material: &VerificationMaterial,
    logged: &Logged<'_>,
    payload: &[u8],
    root: &TrustedRoot,
) -> Result<(usize, Vec<OffsetDateTime>), SigstoreError> {
    if material.tlog_entries.len() > MAX_ENTRIES {
        return Err(invalid(format!(
            "more than {MAX_ENTRIES} transparency-log entries"
        )));
    }
    let mut times = Vec::new();
    for (i, e) in material.tlog_entries.iter().enumerate() {
        let t = verify_tlog_entry(e, logged, payload, root)
            .map_err(|r| invalid(format!("transparency-log entry {i}: {r}")))?;
        times.extend(t);
    }
    Ok((material.tlog_entries.len(), times))
}

fn int_field(v: &Value, what: &str) -> Result<i64, String> {
    match v {
        Value::String(s) => s.parse().map_err(|_| format!("{what} is not an integer")),
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{what} is not an integer")),
        _ => Err(format!("{what} is missing")),
    }
}

fn b64_field(v: &Value, what: &str) -> Result<Vec<u8>, String> {
    let s = v.as_str().ok_or_else(|| format!("{what} is missing"))?;
    b64(s).map_err(|r| format!("{what} is {r}"))
}

/// One entry (a bundle `TransparencyLogEntry`): its log, SET, inclusion
/// proof and checkpoint, body. Returns the integrated time when its SET
/// vouches for it.
fn verify_tlog_entry(
    e: &Value,
    logged: &Logged<'_>,
    payload: &[u8],
    root: &TrustedRoot,
) -> Result<Option<OffsetDateTime>, String> {
    let log_id = b64_field(&e["logId"]["keyId"], "logId.keyId")?;
    let log_index = int_field(&e["logIndex"], "logIndex")?;
    let integrated = int_field(&e["integratedTime"], "integratedTime")?;
    let body = b64_field(&e["canonicalizedBody"], "canonicalizedBody")?;
    let itime = OffsetDateTime::from_unix_timestamp(integrated)
        .map_err(|_| "integratedTime is out of range".to_string())?;
    let log = root
        .tlogs
        .iter()
        .find(|l| l.key_id == log_id && l.valid.contains(itime))
        .ok_or_else(|| {
            format!(
                "its log ({}) is not one the trusted root trusts at its time",
                hex::encode(&log_id)
            )
        })?;
    let key = sigstore::crypto::CosignVerificationKey::try_from_der(&log.spki)
        .map_err(|x| format!("the trusted log's key: {x}"))?;
    let verify = |sig: &[u8], msg: &[u8]| {
        key.verify_signature(sigstore::crypto::Signature::Raw(sig), msg)
            .is_ok()
    };
    let mut time = None;
    let promise = &e["inclusionPromise"];
    if !promise.is_null() {
        let set = b64_field(&promise["signedEntryTimestamp"], "signedEntryTimestamp")?;
        let signed = canonical_json(&json!({
            "body": base64::engine::general_purpose::STANDARD.encode(&body),
            "integratedTime": integrated,
            "logID": hex::encode(&log_id),
            "logIndex": log_index,
        }));
        if !verify(&set, &signed) {
            return Err("its signed entry timestamp does not verify with the log's key".into());
        }
        time = Some(itime);
    }
    let proof = &e["inclusionProof"];
    if !proof.is_null() {
        verify_inclusion(proof, &body, &log_id, &verify)?;
    }
    if promise.is_null() && proof.is_null() {
        return Err("it has neither a signed entry timestamp nor an inclusion proof".into());
    }
    let (kind, version) = check_body(&body, logged, payload)
        .map_err(|r| format!("its body is not this signature's: {r}"))?;
    if e["kindVersion"]["kind"].as_str() != Some(kind.as_str())
        || e["kindVersion"]["version"].as_str() != Some(version.as_str())
    {
        return Err("kindVersion differs from its body".into());
    }
    Ok(time)
}

/// The inclusion proof leads from the body to the root hash of a
/// checkpoint the log signed.
fn verify_inclusion(
    proof: &Value,
    body: &[u8],
    log_id: &[u8],
    verify: &dyn Fn(&[u8], &[u8]) -> bool,
) -> Result<(), String> {
    let index = int_field(&proof["logIndex"], "inclusionProof.logIndex")?;
    let size = int_field(&proof["treeSize"], "inclusionProof.treeSize")?;
    let root_hash = b64_field(&proof["rootHash"], "inclusionProof.rootHash")?;
    let hashes = proof["hashes"]
        .as_array()
        .ok_or("inclusionProof.hashes is missing")?;
    if hashes.len() > MAX_PROOF_HASHES {
        return Err(format!("more than {MAX_PROOF_HASHES} proof hashes"));
    }
    let hashes: Vec<Vec<u8>> = hashes
        .iter()
        .map(|h| b64_field(h, "a proof hash"))
        .collect::<Result<_, _>>()?;
    let checkpoint = proof["checkpoint"]["envelope"]
        .as_str()
        .ok_or("inclusionProof.checkpoint is missing")?;
    if checkpoint.len() > MAX_CHECKPOINT {
        return Err("the checkpoint is too large".into());
    }
    let (cp_size, cp_root) = verify_checkpoint(checkpoint, log_id, verify)?;
    if cp_size != size as u64 || cp_root != root_hash {
        return Err("the inclusion proof's tree is not the checkpoint's".into());
    }
    let leaf = leaf_hash(body);
    if !merkle_inclusion(index, size, &leaf, &hashes, &root_hash) {
        return Err(
            "the inclusion proof does not lead from this entry to the checkpoint's root hash"
                .into(),
        );
    }
    Ok(())
}

/// A signed note (C2SP signed-note): the note up to the blank line, then
/// `— NAME BASE64(KEYHINT[4] || SIG)` lines. One signature with the log's
/// key hint (the first 4 bytes of its id) must verify. Returns the
/// checkpoint's tree size and root hash.
fn verify_checkpoint(
    envelope: &str,
    log_id: &[u8],
    verify: &dyn Fn(&[u8], &[u8]) -> bool,
) -> Result<(u64, Vec<u8>), String> {
    let split = envelope
        .find("\n\n")
        .ok_or("the checkpoint has no signature block")?;
    let note = &envelope[..split + 1];
    let sigs = &envelope[split + 2..];
    let hint = log_id.get(..4).ok_or("log id too short")?;
    let signed = sigs.lines().any(|line| {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return false;
        };
        let Some((_, sig)) = rest.split_once(' ') else {
            return false;
        };
        match b64(sig) {
            Ok(bytes) if bytes.len() > 4 && &bytes[..4] == hint => {
                verify(&bytes[4..], note.as_bytes())
            }
            _ => false,
        }
    });
    if !signed {
        return Err("the checkpoint is not signed by the log".into());
    }
    let mut lines = note.lines();
    let (_origin, size, hash) = (lines.next(), lines.next(), lines.next());
    let size: u64 = size
        .and_then(|s| s.parse().ok())
        .ok_or("the checkpoint's tree size is not a number")?;
    let hash = hash
        .and_then(|h| b64(h).ok())
        .ok_or("the checkpoint's root hash is not base64")?;
    Ok((size, hash))
}

fn leaf_hash(body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(body);
    h.finalize().to_vec()
}

fn node_hash(l: &[u8], r: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().to_vec()
}

/// RFC 9162 section 2.1.3.2: the inclusion proof of leaf `index` in a tree
/// of `size` leaves.
pub fn merkle_inclusion(
    index: i64,
    size: i64,
    leaf: &[u8],
    proof: &[Vec<u8>],
    root: &[u8],
) -> bool {
    if index < 0 || size <= 0 || index >= size {
        return false;
    }
    let (index, size) = (index as u64, size as u64);
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    if proof.len() != inner + border || proof.iter().any(|h| h.len() != 32) {
        return false;
    }
    let mut h = leaf.to_vec();
    for (i, p) in proof[..inner].iter().enumerate() {
        h = if (index >> i) & 1 == 1 {
            node_hash(p, &h)
        } else {
            node_hash(&h, p)
        };
    }
    for p in &proof[inner..] {
        h = node_hash(p, &h);
    }
    h == root
}

/// What provenant reads from a certificate.
struct ParsedCert {
    spki: Vec<u8>,
    sans: Vec<String>,
    issuer: Option<String>,
}

fn parse_cert(der_bytes: &[u8]) -> Result<ParsedCert, SigstoreError> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(der_bytes)
        .map_err(|e| invalid(format!("the signing certificate is not X.509: {e}")))?;
    let mut sans = Vec::new();
    let mut issuer = None;
    let mut issuer_v1 = None;
    for ext in c.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for n in &san.general_names {
                    match n {
                        GeneralName::URI(u) => sans.push(u.to_string()),
                        GeneralName::RFC822Name(m) => sans.push(m.to_string()),
                        GeneralName::OtherName(oid, value)
                            if oid.to_id_string() == OID_FULCIO_USERNAME =>
                        {
                            // [0] EXPLICIT UTF8String
                            if let Some(s) = der::one(value)
                                .ok()
                                .and_then(|t| der::one(t.content).ok())
                                .filter(|t| t.tag == der::UTF8_STRING)
                                .and_then(|t| std::str::from_utf8(t.content).ok())
                            {
                                sans.push(s.to_string());
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => match ext.oid.to_id_string().as_str() {
                OID_FULCIO_ISSUER_V2 => {
                    issuer = der::one(ext.value)
                        .ok()
                        .filter(|t| t.tag == der::UTF8_STRING)
                        .and_then(|t| std::str::from_utf8(t.content).ok())
                        .map(str::to_string);
                }
                OID_FULCIO_ISSUER_V1 => {
                    issuer_v1 = std::str::from_utf8(ext.value).ok().map(str::to_string);
                }
                _ => {}
            },
        }
    }
    Ok(ParsedCert {
        spki: c.tbs_certificate.subject_pki.raw.to_vec(),
        sans,
        issuer: issuer.or(issuer_v1),
    })
}

/// The certificate chains, through `intermediates` or a CA's own chain, to
/// a root of `cas` that is valid at `t`, and is valid at `t` for `eku`.
/// Returns its issuer's SubjectPublicKeyInfo (DER).
fn chain_to(
    cert: &[u8],
    intermediates: &[Vec<u8>],
    t: OffsetDateTime,
    cas: &[CertAuthority],
    eku: &'static [u8],
) -> Result<Vec<u8>, String> {
    use rustls_pki_types::{CertificateDer, UnixTime};
    let ee_der = CertificateDer::from(cert);
    let ee = webpki::EndEntityCert::try_from(&ee_der)
        .map_err(|e| format!("the certificate cannot be read: {e:?}"))?;
    let when = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        t.unix_timestamp().max(0) as u64,
    ));
    let mut last = String::from("the trusted root has no authority valid at that time");
    for ca in cas.iter().filter(|ca| ca.valid.contains(t)) {
        let Some((root, inter)) = ca.chain.split_last() else {
            continue;
        };
        let root_der = CertificateDer::from(root.as_slice());
        let anchor = match webpki::anchor_from_trusted_cert(&root_der) {
            Ok(a) => a,
            Err(e) => {
                last = format!("a trusted root certificate cannot be read: {e:?}");
                continue;
            }
        };
        let inters: Vec<CertificateDer<'_>> = inter
            .iter()
            .chain(intermediates)
            .take(MAX_CHAIN)
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let anchors = [anchor];
        match ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &inters,
            when,
            webpki::KeyUsage::required(eku),
            None,
            None,
        ) {
            Ok(path) => return Ok(path.issuer_spki().as_ref().to_vec()),
            Err(e) => last = format!("{e:?}"),
        }
    }
    Err(last)
}

fn verify_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    t: OffsetDateTime,
    root: &TrustedRoot,
) -> Result<Vec<u8>, SigstoreError> {
    chain_to(leaf, intermediates, t, &root.cas, OID_CODE_SIGNING).map_err(|r| {
        invalid(format!(
            "the signing certificate does not chain to a trusted Fulcio CA for code signing at {}: {r}",
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        ))
    })
}

/// The certificate's TBS with the SCT-list extension left out: what the
/// CT log signed (the precertificate's TBS, RFC 6962 section 3.2).
fn tbs_without_sct(cert: &[u8]) -> Result<Vec<u8>, der::DerError> {
    let c = der::one(cert)?.expect(der::SEQUENCE, "Certificate")?;
    let tbs = c
        .children()?
        .first()
        .copied()
        .ok_or(der::DerError("empty Certificate"))?
        .expect(der::SEQUENCE, "TBSCertificate")?;
    let mut out = Vec::new();
    for field in tbs.children()? {
        if field.tag != der::ctx(3) {
            out.extend_from_slice(field.raw);
            continue;
        }
        let exts = der::one(field.content)?.expect(der::SEQUENCE, "Extensions")?;
        let kept: Vec<u8> = der::children(exts.content, 256)?
            .into_iter()
            .filter(|ext: &Tlv<'_>| {
                ext.children()
                    .ok()
                    .and_then(|f| f.first().copied())
                    .is_none_or(|oid| der::oid_string(oid.content) != OID_SCT_LIST)
            })
            .flat_map(|ext| ext.raw.to_vec())
            .collect();
        out.extend(der::encode(der::ctx(3), &der::encode(der::SEQUENCE, &kept)));
    }
    Ok(der::encode(der::SEQUENCE, &out))
}

/// One embedded SCT from a CT log of the trusted root must verify.
fn verify_sct(leaf: &[u8], issuer_spki: &[u8], root: &TrustedRoot) -> Result<(), SigstoreError> {
    use x509_parser::prelude::FromDer;
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(leaf)
        .map_err(|e| invalid(format!("the signing certificate is not X.509: {e}")))?;
    let ext = c
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == OID_SCT_LIST)
        .ok_or_else(|| {
            invalid("the signing certificate has no SCT, and the trusted root lists CT logs")
        })?;
    let list = der::one(ext.value)
        .ok()
        .filter(|t| t.tag == der::OCTET_STRING)
        .map(|t| t.content)
        .ok_or_else(|| invalid("the SCT list is malformed"))?;
    let tbs =
        tbs_without_sct(leaf).map_err(|e| invalid(format!("the signing certificate: {e}")))?;
    let issuer_hash = Sha256::digest(issuer_spki);
    let scts = tls_list(list).ok_or_else(|| invalid("the SCT list is malformed"))?;
    let mut tried = Vec::new();
    for sct in scts.into_iter().take(MAX_ENTRIES) {
        match check_sct(sct, &tbs, &issuer_hash, root) {
            Ok(()) => return Ok(()),
            Err(r) => tried.push(r),
        }
    }
    Err(invalid(format!(
        "no SCT of the signing certificate verifies with a CT log of the trusted root ({})",
        tried.join("; ")
    )))
}

/// A TLS `opaque<..2^16-1>` list of `opaque<..2^16-1>` items.
fn tls_list(b: &[u8]) -> Option<Vec<&[u8]>> {
    let total = u16::from_be_bytes([*b.first()?, *b.get(1)?]) as usize;
    let mut rest = b.get(2..2 + total)?;
    if b.len() != 2 + total {
        return None;
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let n = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize;
        out.push(rest.get(2..2 + n)?);
        rest = &rest[2 + n..];
    }
    Some(out)
}

fn check_sct(sct: &[u8], tbs: &[u8], issuer_hash: &[u8], root: &TrustedRoot) -> Result<(), String> {
    // version(1) logID(32) timestamp(8) extensions<2> hash(1) sig(1) signature<2>
    let bad = || "malformed SCT".to_string();
    if sct.first() != Some(&0) {
        return Err("SCT version is not v1".into());
    }
    let log_id = sct.get(1..33).ok_or_else(bad)?;
    let ts = sct.get(33..41).ok_or_else(bad)?;
    let ext_len =
        u16::from_be_bytes([*sct.get(41).ok_or_else(bad)?, *sct.get(42).ok_or_else(bad)?]) as usize;
    let ext = sct.get(43..43 + ext_len).ok_or_else(bad)?;
    let rest = &sct[43 + ext_len..];
    let sig_len =
        u16::from_be_bytes([*rest.get(2).ok_or_else(bad)?, *rest.get(3).ok_or_else(bad)?]) as usize;
    let sig = rest.get(4..4 + sig_len).ok_or_else(bad)?;
    if rest.len() != 4 + sig_len {
        return Err(bad());
    }
    let millis = u64::from_be_bytes(ts.try_into().map_err(|_| bad())?);
    let when = OffsetDateTime::from_unix_timestamp((millis / 1000) as i64).map_err(|_| bad())?;
    let log = root
        .ctlogs
        .iter()
        .find(|l| l.key_id == log_id && l.valid.contains(when))
        .ok_or_else(|| {
            format!(
                "CT log {} is not trusted at the SCT's time",
                hex::encode(log_id)
            )
        })?;
    let tbs_len = (tbs.len() as u32).to_be_bytes();
    let mut signed = vec![0u8, 0u8];
    signed.extend_from_slice(ts);
    signed.extend_from_slice(&[0, 1]);
    signed.extend_from_slice(issuer_hash);
    signed.extend_from_slice(&tbs_len[1..]);
    signed.extend_from_slice(tbs);
    signed.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    signed.extend_from_slice(ext);
    let key = sigstore::crypto::CosignVerificationKey::try_from_der(&log.spki)
        .map_err(|e| format!("CT log key: {e}"))?;
    key.verify_signature(sigstore::crypto::Signature::Raw(sig), &signed)
        .map_err(|_| "SCT signature does not verify".to_string())
}

/// Every RFC 3161 timestamp; returns the times they vouch for.
fn verify_timestamps(
    material: &VerificationMaterial,
    sig: &[u8],
    root: &TrustedRoot,
) -> Result<Vec<OffsetDateTime>, SigstoreError> {
    if material.rfc3161_timestamps.len() > MAX_ENTRIES {
        return Err(invalid(format!("more than {MAX_ENTRIES} timestamps")));
    }
    material
        .rfc3161_timestamps
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let der_bytes = b64_field(&t["signedTimestamp"], "signedTimestamp")
                .and_then(|d| verify_timestamp(&d, sig, root))
                .map_err(|r| invalid(format!("RFC 3161 timestamp {i}: {r}")))?;
            Ok(der_bytes)
        })
        .collect()
}

/// One timestamp response: it stamps SHA-256 of `sig`; its signer info's
/// message digest is the TSTInfo's; its signature verifies with a
/// certificate that chains to a timestamp authority of the trusted root
/// at the stamped time, for time stamping.
fn verify_timestamp(resp: &[u8], sig: &[u8], root: &TrustedRoot) -> Result<OffsetDateTime, String> {
    use crate::sign::tsa;
    let token = tsa::parse_response(resp).map_err(|e| e.to_string())?;
    let info = &token.tst_info;
    let want = match info.hash_algorithm.as_str() {
        tsa::OID_SHA256 => Sha256::digest(sig).to_vec(),
        other => return Err(format!("stamps with hash algorithm {other}, not sha256")),
    };
    if info.hashed_message != want {
        return Err("it stamps something else than this signature".into());
    }
    let [si] = token.signer_infos.as_slice() else {
        return Err("it has not exactly one signer".into());
    };
    let f = si.children().map_err(|e| e.to_string())?;
    // version, sid, digestAlgorithm, [0] signedAttrs, signatureAlgorithm, signature
    let attrs = f
        .iter()
        .find(|t| t.tag == der::ctx(0))
        .ok_or("its signer has no signed attributes")?;
    let digest_alg = f
        .get(2)
        .and_then(|t| t.children().ok())
        .and_then(|c| c.first().map(|o| der::oid_string(o.content)))
        .ok_or("its signer has no digest algorithm")?;
    let sig_alg = f
        .iter()
        .skip_while(|t| t.tag != der::ctx(0))
        .nth(1)
        .and_then(|t| t.children().ok())
        .and_then(|c| c.first().map(|o| der::oid_string(o.content)))
        .ok_or("its signer has no signature algorithm")?;
    let signature = f
        .iter()
        .rev()
        .find(|t| t.tag == der::OCTET_STRING)
        .ok_or("its signer has no signature")?
        .content;
    let content_digest = match digest_alg.as_str() {
        tsa::OID_SHA256 => Sha256::digest(token.tst_info_der).to_vec(),
        "2.16.840.1.101.3.4.2.2" => sha2::Sha384::digest(token.tst_info_der).to_vec(),
        "2.16.840.1.101.3.4.2.3" => sha2::Sha512::digest(token.tst_info_der).to_vec(),
        other => return Err(format!("digest algorithm {other} is not supported")),
    };
    let mut message_digest = None;
    for a in der::children(attrs.content, 32).map_err(|e| e.to_string())? {
        let parts = a.children().map_err(|e| e.to_string())?;
        if let [oid, values] = parts.as_slice() {
            if der::oid_string(oid.content) == "1.2.840.113549.1.9.4" {
                message_digest = der::children(values.content, 2)
                    .ok()
                    .and_then(|v| v.first().map(|x| x.content.to_vec()));
            }
        }
    }
    if message_digest.as_deref() != Some(content_digest.as_slice()) {
        return Err("its signed message digest is not its TSTInfo's".into());
    }
    // What was signed: the attributes as a SET (RFC 5652 section 5.4).
    let signed = der::encode(der::SET, attrs.content);
    let when = info.gen_time;
    let candidates: Vec<Vec<u8>> = root
        .tsas
        .iter()
        .filter_map(|a| a.chain.first().cloned())
        .chain(token.certificates.iter().map(|c| c.to_vec()))
        .collect();
    let mut last = String::from("no certificate of a trusted timestamp authority signed it");
    for cert in candidates.iter().take(MAX_CHAIN * 2) {
        let Ok(parsed) = parse_cert(cert) else {
            continue;
        };
        if !verify_with(&parsed.spki, &sig_alg, signature, &signed) {
            continue;
        }
        match chain_to(cert, &[], when, &root.tsas, OID_TIME_STAMPING) {
            Ok(_) => return Ok(when),
            Err(r) => {
                last = format!("its signer does not chain to a trusted timestamp authority: {r}")
            }
        }
    }
    Err(last)
}

/// A CMS signature by `spki` with `alg` (an ECDSA or RSA PKCS#1 OID).
fn verify_with(spki: &[u8], alg: &str, sig: &[u8], msg: &[u8]) -> bool {
    use aws_lc_rs::signature as s;
    use x509_parser::prelude::FromDer;
    let Ok((_, info)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki) else {
        return false;
    };
    let curve = info
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    let algorithm: &dyn s::VerificationAlgorithm = match (alg, curve.as_deref()) {
        ("1.2.840.10045.4.3.2", Some("1.2.840.10045.3.1.7")) => &s::ECDSA_P256_SHA256_ASN1,
        ("1.2.840.10045.4.3.3", Some("1.2.840.10045.3.1.7")) => &s::ECDSA_P256_SHA384_ASN1,
        ("1.2.840.10045.4.3.2", Some("1.3.132.0.34")) => &s::ECDSA_P384_SHA256_ASN1,
        ("1.2.840.10045.4.3.3", Some("1.3.132.0.34")) => &s::ECDSA_P384_SHA384_ASN1,
        ("1.2.840.113549.1.1.11", _) => &s::RSA_PKCS1_2048_8192_SHA256,
        ("1.2.840.113549.1.1.12", _) => &s::RSA_PKCS1_2048_8192_SHA384,
        ("1.2.840.113549.1.1.13", _) => &s::RSA_PKCS1_2048_8192_SHA512,
        _ => return false,
    };
    s::UnparsedPublicKey::new(algorithm, &info.subject_public_key.data[..])
        .verify(msg, sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every algorithm `verify_with` accepts verifies a signature made by
    /// OpenSSL with it (tests/fixtures/cms-signatures), and only with it:
    /// the same signature under any other accepted algorithm, or over a
    /// changed message, does not verify.
    #[test]
    fn verify_with_accepts_each_algorithm_for_its_own_signatures_only() {
        macro_rules! fx {
            ($f:literal) => {
                include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/cms-signatures/",
                    $f
                ))
                .as_slice()
            };
        }
        let msg = fx!("msg");
        let (ec256, ec384) = ("1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3");
        let (rsa256, rsa384, rsa512) = (
            "1.2.840.113549.1.1.11",
            "1.2.840.113549.1.1.12",
            "1.2.840.113549.1.1.13",
        );
        let cases: [(&str, &[u8], &str, &[u8]); 7] = [
            (
                "p256 sha256",
                fx!("p256.spki"),
                ec256,
                fx!("p256.sha256.sig"),
            ),
            (
                "p256 sha384",
                fx!("p256.spki"),
                ec384,
                fx!("p256.sha384.sig"),
            ),
            (
                "p384 sha256",
                fx!("p384.spki"),
                ec256,
                fx!("p384.sha256.sig"),
            ),
            (
                "p384 sha384",
                fx!("p384.spki"),
                ec384,
                fx!("p384.sha384.sig"),
            ),
            ("rsa sha256", fx!("rsa.spki"), rsa256, fx!("rsa.sha256.sig")),
            ("rsa sha384", fx!("rsa.spki"), rsa384, fx!("rsa.sha384.sig")),
            ("rsa sha512", fx!("rsa.spki"), rsa512, fx!("rsa.sha512.sig")),
        ];
        for (name, spki, alg, sig) in cases {
            assert!(verify_with(spki, alg, sig, msg), "{name}");
            assert!(!verify_with(spki, alg, sig, b"another message"), "{name}");
            for other in [ec256, ec384, rsa256, rsa384, rsa512] {
                if other != alg {
                    assert!(!verify_with(spki, other, sig, msg), "{name} as {other}");
                }
            }
        }
        assert!(!verify_with(
            fx!("p256.spki"),
            "1.2.3.4",
            fx!("p256.sha256.sig"),
            msg
        ));
        assert!(!verify_with(b"not DER", ec256, fx!("p256.sha256.sig"), msg));
    }

    /// A trusted root one byte over the cap is refused as too large, not
    /// parsed truncated; one at the cap is read (and fails as JSON).
    #[test]
    fn a_trusted_root_over_the_cap_is_refused_as_too_large() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("root.json");
        std::fs::write(&p, vec![b' '; MAX_TRUSTED_ROOT as usize + 1]).unwrap();
        let e = TrustedRoot::load(&p).err().unwrap().to_string();
        assert!(
            e.contains(&format!("larger than {MAX_TRUSTED_ROOT} bytes")),
            "{e}"
        );
        std::fs::write(&p, vec![b' '; MAX_TRUSTED_ROOT as usize]).unwrap();
        let e = TrustedRoot::load(&p).err().unwrap().to_string();
        assert!(!e.contains("larger than"), "{e}");
    }

    fn h(n: u8) -> Vec<u8> {
        leaf_hash(&[n])
    }

    /// RFC 6962 tree hash of `leaves`.
    fn tree(leaves: &[Vec<u8>]) -> Vec<u8> {
        if leaves.len() == 1 {
            return leaves[0].clone();
        }
        let k = leaves.len().next_power_of_two() / 2;
        node_hash(&tree(&leaves[..k]), &tree(&leaves[k..]))
    }

    /// The audit path of leaf `m` (RFC 6962 section 2.1.1).
    fn path(m: usize, leaves: &[Vec<u8>]) -> Vec<Vec<u8>> {
        if leaves.len() == 1 {
            return Vec::new();
        }
        let k = leaves.len().next_power_of_two() / 2;
        if m < k {
            let mut p = path(m, &leaves[..k]);
            p.push(tree(&leaves[k..]));
            p
        } else {
            let mut p = path(m - k, &leaves[k..]);
            p.push(tree(&leaves[..k]));
            p
        }
    }

    #[test]
    fn merkle_inclusion_for_every_leaf_of_trees_up_to_17() {
        for n in 1..=17usize {
            let leaves: Vec<Vec<u8>> = (0..n as u8).map(h).collect();
            let root = tree(&leaves);
            for m in 0..n {
                let p = path(m, &leaves);
                assert!(
                    merkle_inclusion(m as i64, n as i64, &leaves[m], &p, &root),
                    "{m} of {n}"
                );
                // Another leaf, index, size or root: refused.
                assert!(!merkle_inclusion(m as i64, n as i64, &h(200), &p, &root));
                if n > 1 {
                    assert!(!merkle_inclusion(
                        ((m + 1) % n) as i64,
                        n as i64,
                        &leaves[m],
                        &p,
                        &root
                    ));
                }
                // The same proof for the tree one leaf larger: refused
                // against that tree's root. (Against this tree's root it
                // may pass when the path has the same shape, as in every
                // RFC 9162 verifier: the signed checkpoint binds size and
                // root together, and that is checked apart.)
                let mut grown = leaves.clone();
                grown.push(h(n as u8));
                assert!(!merkle_inclusion(
                    m as i64,
                    n as i64 + 1,
                    &leaves[m],
                    &p,
                    &tree(&grown)
                ));
                assert!(!merkle_inclusion(
                    m as i64,
                    n as i64,
                    &leaves[m],
                    &p,
                    &h(201)
                ));
            }
        }
        assert!(!merkle_inclusion(0, 0, &h(0), &[], &h(0)));
        assert!(!merkle_inclusion(-1, 1, &h(0), &[], &h(0)));
    }

    #[test]
    fn regex_patterns_are_anchored_and_capped() {
        let p = Pattern::regex(
            "--certificate-identity-regexp",
            "system:serviceaccount:ci:.*",
        )
        .unwrap();
        assert!(p.matches("system:serviceaccount:ci:builder"));
        assert!(!p.matches("x-system:serviceaccount:ci:builder"));
        let p = Pattern::regex("-r", "a|b").unwrap();
        assert!(p.matches("a") && p.matches("b") && !p.matches("ab"));
        assert!(Pattern::regex("-r", "(").is_err());
        assert!(Pattern::regex("-r", &"a".repeat(2000)).is_err());
        assert!(Pattern::regex("-r", "(a{1000}){1000}").is_err());
    }

    #[test]
    fn trusted_roots_are_parsed_strictly() {
        assert!(TrustedRoot::parse("t", b"{}").is_err());
        assert!(TrustedRoot::parse("t", br#"{"mediaType":"x"}"#).is_err());
        let r = TrustedRoot::parse(
            "t",
            br#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}"#,
        )
        .unwrap();
        assert!(r.cas.is_empty());
        let bad = br#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","certificateAuthorities":[{"certChain":{"certificates":[]}}]}"#;
        assert!(TrustedRoot::parse("t", bad).is_err());
        let bad = br#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[{"publicKey":{"rawBytes":"AA==","validFor":{"start":"yesterday"}},"logId":{"keyId":"AA=="}}]}"#;
        assert!(TrustedRoot::parse("t", bad).is_err());
    }

    #[test]
    fn checkpoints() {
        let yes = |_: &[u8], _: &[u8]| true;
        let no = |_: &[u8], _: &[u8]| false;
        let sig = base64::engine::general_purpose::STANDARD.encode([1, 2, 3, 4, 9, 9]);
        let cp = format!("log - 1\n3\nAAAA\n\n\u{2014} log {sig}\n");
        assert_eq!(
            verify_checkpoint(&cp, &[1, 2, 3, 4, 5], &yes).unwrap(),
            (3, vec![0, 0, 0])
        );
        assert!(verify_checkpoint(&cp, &[1, 2, 3, 4, 5], &no).is_err());
        assert!(verify_checkpoint(&cp, &[9, 2, 3, 4, 5], &yes).is_err());
        assert!(verify_checkpoint("log - 1\n3\nAAAA\n", &[1, 2, 3, 4], &yes).is_err());
    }

    #[test]
    fn tls_lists() {
        assert_eq!(
            tls_list(&[0, 5, 0, 1, 7, 0, 0]).unwrap(),
            vec![&[7u8][..], &[][..]]
        );
        assert!(tls_list(&[0, 5, 0, 9, 7, 0, 0]).is_none());
        assert!(tls_list(&[0, 1]).is_none());
    }
}
