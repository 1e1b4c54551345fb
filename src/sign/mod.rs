//! Signing: keys (PKCS#8 / SPKI PEM and cosign's encrypted format, through
//! the `sigstore` crate) and DSSE envelopes.
pub mod dsse;
mod keys;
pub mod remote;
pub mod service;

pub use dsse::*;
pub use keys::*;

use crate::provenance::IN_TOTO_PAYLOAD_TYPE;

/// Anything that can sign bytes: a local key today, a remote signer service
/// tomorrow (the key never has to be on the machine that runs the build).
pub trait Signer: Send + Sync {
    /// Hex SHA-256 of the public key's SPKI DER; written as the DSSE keyid.
    fn key_id(&self) -> &str;
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError>;
}

/// An in-toto statement serialized into `buf`, ready to sign.
pub fn frame_statement<T: serde::Serialize + ?Sized>(
    st: &T,
    buf: Vec<u8>,
) -> Result<Unsigned, KeyError> {
    Unsigned::new_in(buf, IN_TOTO_PAYLOAD_TYPE, st)
}
