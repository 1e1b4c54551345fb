//! Sign: keys (PKCS#8 / SPKI PEM and cosign's encrypted format, through the
//! `sigstore` crate), DSSE envelopes, and the signers a command can use,
//! each a provider in its own file chosen by [`providers::open`]:
//!
//! * `local.rs`: a key file mounted only into provenant's container;
//! * `remote.rs`: a `provenant signer` service holding the key elsewhere;
//! * `keyless.rs`: an ephemeral key certified by Fulcio for one attestation;
//! * `dev.rs`: `provenant run`'s development key, for trying it out.
//!
//! After signing, `witness.rs` has the signature witnessed: a Rekor entry
//! (`rekor.rs`) and an RFC 3161 timestamp (`tsa.rs`), added to the
//! attestation's verification material.
mod attestation;
pub mod der;
mod dev;
pub mod dsse;
pub mod keyless;
mod keys;
mod local;
mod material;
pub mod providers;
pub mod rekor;
pub mod remote;
pub mod service;
pub(crate) mod sigstore_http;
pub mod tsa;
pub mod witness;

pub use attestation::Attestation;
pub use dsse::*;
pub use keyless::KeylessConfig;
pub use keys::*;
pub use local::LocalSigner;
pub use material::{KeyMaterial, VerificationMaterial};
pub use providers::{open_signer, RemoteConfig, SignerConfig};
pub use witness::{PendingWitness, WitnessConfig, WitnessError, Witnesses};

use crate::provenance::IN_TOTO_PAYLOAD_TYPE;

/// Anything that can sign bytes: a key in this process, a remote signer
/// service (the key never has to be on the machine that runs the build),
/// an ephemeral key certified for one attestation.
pub trait Signer: Send + Sync {
    /// Hex SHA-256 of the public key's SPKI DER; written as the DSSE keyid.
    fn key_id(&self) -> &str;
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError>;
    /// What a verifier needs beside the signature of the last `sign`.
    fn verification_material(&self) -> VerificationMaterial {
        VerificationMaterial::public_key(self.key_id())
    }
    /// What a transparency log records as the verifier of the last
    /// signature: the public key (SPKI PEM) or the signing certificate
    /// (PEM). `None` when the signer cannot say (no Rekor entry then).
    /// Required, not defaulted: every signer can say, and a default of
    /// `None` would silently drop the Rekor entry of a new one.
    fn verifier_pem(&self) -> Option<String>;
    /// Proves, before a build runs, that signing will work after it.
    fn check(&self) -> Result<(), KeyError> {
        Ok(())
    }
}

/// An in-toto statement serialized into `buf`, ready to sign.
pub fn frame_statement<T: serde::Serialize + ?Sized>(
    st: &T,
    buf: Vec<u8>,
) -> Result<Unsigned, KeyError> {
    Unsigned::new_in(buf, IN_TOTO_PAYLOAD_TYPE, st)
}
