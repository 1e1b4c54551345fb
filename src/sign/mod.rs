//! Signing: keys (PKCS#8 / SPKI PEM and cosign's encrypted format, through
//! the `sigstore` crate) and DSSE envelopes.
mod dsse;
mod keys;
pub mod remote;
pub mod service;

pub use dsse::*;
pub use keys::*;

use crate::provenance::{Statement, IN_TOTO_PAYLOAD_TYPE};

/// Anything that can sign bytes: a local key today, a remote signer service
/// tomorrow (the key never has to be on the machine that runs the build).
pub trait Signer: Send + Sync {
    /// Hex SHA-256 of the public key's SPKI DER; written as the DSSE keyid.
    fn key_id(&self) -> &str;
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError>;
}

/// Serialize and sign a statement as a DSSE envelope.
pub fn sign_statement(st: &Statement, signer: &dyn Signer) -> Result<Envelope, KeyError> {
    Envelope::sign_with(
        IN_TOTO_PAYLOAD_TYPE,
        // Writing into a Vec cannot fail, and our statements serialize.
        |buf| {
            let _ = serde_json::to_writer(buf, st);
        },
        signer,
    )
}
