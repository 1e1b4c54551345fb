//! Signers as providers, in the manner of go-witness's `SignerProvider`:
//! each way of signing is a file of its own that says when the
//! configuration asks for it and how to open it; [`open_signer`] looks the
//! one up. A new way of signing (keyless, a KMS) is one file and one line
//! in [`PROVIDERS`].
use std::path::PathBuf;

use super::{KeyError, Signer};

/// Everything a command was told about signing. No clap here: `cli/`
/// fills it from flags and environment.
#[derive(Debug, Clone, Default)]
pub struct SignerConfig {
    /// A private key file (PKCS#8 PEM, or cosign's encrypted format with
    /// the password in `COSIGN_PASSWORD`).
    pub key: Option<PathBuf>,
    /// A `provenant signer` service.
    pub remote: Option<RemoteConfig>,
    /// Keyless: an ephemeral key and a Fulcio certificate per attestation.
    pub keyless: Option<super::KeylessConfig>,
    /// With nothing else given, a development key kept in this directory
    /// (`provenant run` only).
    pub dev_key_dir: Option<PathBuf>,
}

/// A `provenant signer` service and how to talk to it.
#[derive(Debug, Clone, Default)]
pub struct RemoteConfig {
    pub url: String,
    /// A bearer token, read again for every request: the pod's projected
    /// service-account token (rotated by kubelet), or the shared token.
    pub token_file: Option<PathBuf>,
    /// CA certificates (PEM) the signer's certificate must chain to,
    /// instead of the system roots.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM chain) and its key, for a signer that
    /// requires mTLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Plain `http://` to a host other than loopback (inside a mesh that
    /// encrypts); refused otherwise.
    pub allow_plain_http: bool,
    /// The `builder.id` this command will write: checked at start against
    /// the one the signer signs for this caller.
    pub builder_id: Option<String>,
}

impl SignerConfig {
    /// Tells a remote signer's start-up check which `builder.id` the
    /// statements will carry, so that a mismatch fails before the build.
    pub fn expecting_builder_id(mut self, id: &str) -> Self {
        if let Some(r) = &mut self.remote {
            r.builder_id = Some(id.to_string());
        }
        self
    }
}

/// One way of signing.
pub trait SignerProvider: Sync {
    fn name(&self) -> &'static str;
    /// Whether the configuration asks for this way of signing.
    fn wanted(&self, c: &SignerConfig) -> bool;
    fn open(&self, c: &SignerConfig) -> Result<Box<dyn Signer>, KeyError>;
    /// Only used when no other provider is wanted (the development key).
    fn fallback(&self) -> bool {
        false
    }
}

/// Every way of signing this provenant knows.
const PROVIDERS: &[&dyn SignerProvider] = &[
    &super::local::KeyFile,
    &super::remote::Remote,
    &super::keyless::Keyless,
    &super::dev::DevKey,
];

/// The signer the configuration asks for: exactly one provider, the
/// fallback only when nothing else is given.
pub fn open_signer(c: &SignerConfig) -> Result<Box<dyn Signer>, KeyError> {
    let wanted: Vec<&dyn SignerProvider> =
        PROVIDERS.iter().copied().filter(|p| p.wanted(c)).collect();
    let explicit: Vec<&dyn SignerProvider> =
        wanted.iter().copied().filter(|p| !p.fallback()).collect();
    let chosen = match (explicit.as_slice(), wanted.as_slice()) {
        ([one], _) => *one,
        ([], [fallback]) => *fallback,
        ([], _) => return Err(KeyError::NoSigner),
        (many, _) => {
            return Err(KeyError::TwoSigners(
                many.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
            ))
        }
    };
    tracing::debug!(signer = chosen.name(), "signer chosen");
    chosen.open(c)
}
