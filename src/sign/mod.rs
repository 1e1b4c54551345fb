//! Signing: keys (PKCS#8 / SPKI PEM and cosign's encrypted format, through
//! the `sigstore` crate) and DSSE envelopes.
mod dsse;
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

/// Serialize and sign an in-toto statement (a [`crate::provenance::Statement`]
/// or a [`crate::provenance::StatementRef`]) as a DSSE envelope.
/// `size_hint`: the expected size of the statement's JSON.
pub fn sign_statement<T: serde::Serialize + ?Sized>(
    st: &T,
    size_hint: usize,
    signer: &dyn Signer,
) -> Result<Signed, KeyError> {
    Signed::sign(IN_TOTO_PAYLOAD_TYPE, st, size_hint, signer)
}

/// An in-toto statement serialized into `buf`, ready to sign.
pub fn frame_statement<T: serde::Serialize + ?Sized>(
    st: &T,
    buf: Vec<u8>,
) -> Result<Unsigned, KeyError> {
    Unsigned::new_in(buf, IN_TOTO_PAYLOAD_TYPE, st)
}
