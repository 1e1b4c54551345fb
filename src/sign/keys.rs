//! Key files. Private keys: PKCS#8 PEM (`PRIVATE KEY`) or cosign's encrypted
//! format (`ENCRYPTED SIGSTORE PRIVATE KEY` / `ENCRYPTED COSIGN PRIVATE KEY`,
//! scrypt + nacl/secretbox, password from `COSIGN_PASSWORD` as cosign reads
//! it). Public keys: SPKI PEM (`PUBLIC KEY`). ECDSA P-256 (cosign's default)
//! and Ed25519. All cryptography is the `sigstore` crate's.
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use sigstore::crypto::CosignVerificationKey;

pub const PASSWORD_ENV: &str = "COSIGN_PASSWORD";
pub(super) const LABEL_PRIVATE: &str = "PRIVATE KEY";
pub(super) const LABEL_PUBLIC: &str = "PUBLIC KEY";
pub(super) const LABEL_SIGSTORE_ENC: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
pub(super) const LABEL_COSIGN_ENC: &str = "ENCRYPTED COSIGN PRIVATE KEY";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} already exists; refusing to overwrite a key (remove it first)")]
    Exists { path: PathBuf },
    #[error("key file {path} is not PEM: {reason}")]
    NotPem { path: String, reason: String },
    #[error("key file {path} holds a '{label}' block; expected {expected}")]
    Label {
        path: String,
        label: String,
        expected: &'static str,
    },
    #[error("key file {path} is encrypted: set {PASSWORD_ENV} to its password")]
    NeedPassword { path: String },
    #[error("cannot decrypt key file {path}: wrong password in {PASSWORD_ENV} or corrupt key")]
    WrongPassword { path: String },
    #[error("key file {path}: unsupported or malformed key ({reason}); provenant signs with ECDSA P-256 or Ed25519")]
    Unsupported { path: String, reason: String },
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("signer unavailable: {0}")]
    Remote(String),
    #[error("identity token {path}: {reason}")]
    IdentityToken { path: PathBuf, reason: String },
    #[error("Fulcio {url}: {reason}")]
    Fulcio { url: String, reason: String },
    #[error("{0}")]
    BadUrl(String),
    #[error("no signing key: pass --key FILE, --signer URL or --fulcio-url URL")]
    NoSigner,
    #[error("choose one way to sign: {0} were all given")]
    TwoSigners(String),
}

/// The algorithms provenant signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256, ASN.1 DER signatures (cosign's default).
    EcdsaP256,
    Ed25519,
}
crate::choice!(Algorithm {
    EcdsaP256 = "ecdsa-p256",
    Ed25519 = "ed25519",
});

/// Hex SHA-256 of the SPKI DER public key: a key id any party can recompute
/// from the public key alone.
pub fn key_id_of_spki(spki_der: &[u8]) -> String {
    hex::encode(Sha256::digest(spki_der))
}

pub(super) fn parse_pem(path: &str, bytes: &[u8]) -> Result<pem::Pem, KeyError> {
    pem::parse(bytes).map_err(|e| KeyError::NotPem {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

/// aws-lc (the crypto under the `sigstore` crate) seeds its random
/// generator from CPU jitter the first time a process asks for random
/// bytes, ~30 ms of CPU; an ECDSA signature asks. Started on a thread of
/// its own when a key is loaded, that overlaps with hashing instead of
/// adding to the time between the build's end and the signature.
pub fn warm_up_rng() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("provenant-rng".into())
            .spawn(|| {
                let mut b = [0u8; 16];
                let _ = aws_lc_rs::rand::fill(&mut b);
            });
    });
}

/// A trusted public key.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    key: CosignVerificationKey,
    /// Hex SHA-256 of the SPKI DER.
    pub id: String,
    /// Where the key came from, for messages.
    pub source: String,
    /// The SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
}

impl VerifyingKey {
    pub fn from_pem(source: &str, bytes: &[u8]) -> Result<Self, KeyError> {
        let block = parse_pem(source, bytes)?;
        match block.tag() {
            LABEL_PUBLIC => {}
            LABEL_PRIVATE | LABEL_SIGSTORE_ENC | LABEL_COSIGN_ENC => {
                return Err(KeyError::Label {
                    path: source.to_string(),
                    label: block.tag().to_string(),
                    expected: "a public key (SPKI PEM, usually the .pub file)",
                })
            }
            other => {
                return Err(KeyError::Label {
                    path: source.to_string(),
                    label: other.to_string(),
                    expected: "a public key (SPKI PEM, usually the .pub file)",
                })
            }
        }
        let key = CosignVerificationKey::try_from_der(block.contents()).map_err(|e| {
            KeyError::Unsupported {
                path: source.to_string(),
                reason: e.to_string(),
            }
        })?;
        Ok(VerifyingKey {
            key,
            id: key_id_of_spki(block.contents()),
            source: source.to_string(),
            spki: block.contents().to_vec(),
        })
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_pem(&path.display().to_string(), &bytes)
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key
            .verify_signature(sigstore::crypto::Signature::Raw(signature), message)
            .is_ok()
    }

    /// The key as SPKI PEM (what a transparency log records).
    pub fn pem(&self) -> String {
        pem::encode_config(
            &pem::Pem::new(LABEL_PUBLIC, self.spki.clone()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    }

    pub fn describe(&self) -> String {
        format!("{} ({})", self.source, &self.id[..16.min(self.id.len())])
    }
}

/// Writes `contents` to a new file with mode 0600 (private) or 0644,
/// refusing to replace anything already there (see `crate::sink`).
pub fn write_key_file(path: &Path, contents: &str, private: bool) -> Result<(), KeyError> {
    let opts = crate::sink::WriteOptions {
        durability: crate::sink::Durability::Synced,
        mode: if private { 0o600 } else { 0o644 },
        create_only: true,
    };
    // The PEM encoder writes CRLF; key files on Unix (cosign's too) use LF.
    // Written piece by piece: a normalized copy of a private key would be
    // one more copy of it in memory.
    let write = |w: &mut dyn std::io::Write| {
        for (i, part) in contents.split("\r\n").enumerate() {
            if i > 0 {
                w.write_all(b"\n")?;
            }
            w.write_all(part.as_bytes())?;
        }
        Ok(())
    };
    crate::sink::write_with(path, opts, write).map_err(|e| {
        if e.source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            KeyError::Write {
                path: path.to_path_buf(),
                source: e.source,
            }
        }
    })
}

impl crate::error::ExitClass for KeyError {
    fn exit_code(&self) -> i32 {
        match self {
            KeyError::NoSigner | KeyError::TwoSigners(_) | KeyError::BadUrl(_) => {
                crate::error::exit::USAGE
            }
            _ => crate::error::exit::CANNOT_CHECK,
        }
    }
}
