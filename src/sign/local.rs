//! The key-file signer: a private key held in this process (PKCS#8 PEM or
//! cosign's encrypted format; see `keys.rs`), mounted only into provenant's
//! container.
use std::path::Path;

use sigstore::crypto::signing_key::{
    ecdsa::{ECDSAKeys, EllipticCurve},
    ed25519::Ed25519Keys,
    kdf, SigStoreKeyPair, SigStoreSigner,
};
use sigstore::crypto::SigningScheme;
use zeroize::Zeroizing;

use super::keys::{
    key_id_of_spki, parse_pem, LABEL_COSIGN_ENC, LABEL_PRIVATE, LABEL_PUBLIC, LABEL_SIGSTORE_ENC,
};
use super::providers::{SignerConfig, SignerProvider};
use super::{warm_up_rng, Algorithm, KeyError, Signer, VerifyingKey, PASSWORD_ENV};

/// A private key held in this process.
pub struct LocalSigner {
    signer: SigStoreSigner,
    key_id: String,
    public_pem: String,
    algorithm: Algorithm,
}

impl std::fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSigner")
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl LocalSigner {
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        let pair = match alg {
            Algorithm::EcdsaP256 => ECDSAKeys::new(EllipticCurve::P256).map(SigStoreKeyPair::ECDSA),
            Algorithm::Ed25519 => Ed25519Keys::new().map(SigStoreKeyPair::ED25519),
        }
        .map_err(|e| KeyError::Sign(e.to_string()))?;
        Self::from_pair(pair, "generated key")
    }

    /// Loads a private key file, decrypting with `password` when it is in
    /// cosign's encrypted format.
    pub fn from_pem(path: &str, bytes: &[u8], password: Option<&[u8]>) -> Result<Self, KeyError> {
        let block = parse_pem(path, bytes)?;
        let der: Zeroizing<Vec<u8>> = match block.tag() {
            LABEL_PRIVATE => Zeroizing::new(block.contents().to_vec()),
            LABEL_SIGSTORE_ENC | LABEL_COSIGN_ENC => {
                let password = password.ok_or_else(|| KeyError::NeedPassword {
                    path: path.to_string(),
                })?;
                Zeroizing::new(kdf::decrypt(block.contents(), password).map_err(|_| {
                    KeyError::WrongPassword {
                        path: path.to_string(),
                    }
                })?)
            }
            LABEL_PUBLIC => {
                return Err(KeyError::Label {
                    path: path.to_string(),
                    label: LABEL_PUBLIC.into(),
                    expected: "a private key (PKCS#8 PEM or cosign encrypted key)",
                })
            }
            other => {
                return Err(KeyError::Label {
                    path: path.to_string(),
                    label: other.to_string(),
                    expected: "a private key (PKCS#8 PEM or cosign encrypted key); convert SEC1/PKCS#1 keys with `openssl pkcs8 -topk8 -nocrypt`",
                })
            }
        };
        let pair = SigStoreKeyPair::from_der(&der).map_err(|e| KeyError::Unsupported {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        Self::from_pair(pair, path)
    }

    /// Reads a key file, taking the password from `COSIGN_PASSWORD`.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        warm_up_rng();
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?);
        let password = std::env::var(PASSWORD_ENV).ok().map(Zeroizing::new);
        Self::from_pem(
            &path.display().to_string(),
            &bytes,
            password.as_ref().map(|p| p.as_bytes()),
        )
    }

    fn from_pair(pair: SigStoreKeyPair, path: &str) -> Result<Self, KeyError> {
        let unsupported = |reason: String| KeyError::Unsupported {
            path: path.to_string(),
            reason,
        };
        let (scheme, algorithm) = match &pair {
            SigStoreKeyPair::ECDSA(ECDSAKeys::P256(_)) => {
                (SigningScheme::ECDSA_P256_SHA256_ASN1, Algorithm::EcdsaP256)
            }
            SigStoreKeyPair::ED25519(_) => (SigningScheme::ED25519, Algorithm::Ed25519),
            other => return Err(unsupported(format!("{other} keys are not supported"))),
        };
        let signer = pair
            .to_sigstore_signer(&scheme)
            .map_err(|e| unsupported(e.to_string()))?;
        let spki = pair
            .public_key_to_der()
            .map_err(|e| unsupported(e.to_string()))?;
        let public_pem = pair
            .public_key_to_pem()
            .map_err(|e| unsupported(e.to_string()))?;
        Ok(LocalSigner {
            signer,
            key_id: key_id_of_spki(&spki),
            public_pem: public_pem.replace("\r\n", "\n"),
            algorithm,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        VerifyingKey::from_pem("generated key", self.public_pem.as_bytes())
    }

    fn pair(&self) -> Result<SigStoreKeyPair, KeyError> {
        self.signer
            .to_sigstore_keypair()
            .map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// PKCS#8 PEM, unencrypted.
    pub fn private_key_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        self.pair()?
            .private_key_to_pem()
            .map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// cosign's encrypted private key format.
    pub fn encrypted_private_key_pem(
        &self,
        password: &[u8],
    ) -> Result<Zeroizing<String>, KeyError> {
        self.pair()?
            .private_key_to_encrypted_pem(password)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }
}

impl Signer for LocalSigner {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.signer
            .sign(message)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }

    fn verifier_pem(&self) -> Option<String> {
        Some(self.public_pem.clone())
    }

    /// One signature: a key that cannot sign fails before the build (this
    /// also waits for the random generator's seeding, see `warm_up_rng`).
    fn check(&self) -> Result<(), KeyError> {
        self.sign(b"provenant: start-up check").map(|_| ())
    }
}

/// `--key FILE`.
pub struct KeyFile;

impl SignerProvider for KeyFile {
    fn name(&self) -> &'static str {
        "key"
    }

    fn wanted(&self, c: &SignerConfig) -> bool {
        c.key.is_some()
    }

    fn open(&self, c: &SignerConfig) -> Result<Box<dyn Signer>, KeyError> {
        let path = c.key.as_deref().ok_or(KeyError::NoSigner)?;
        Ok(Box::new(LocalSigner::load(path)?))
    }
}
