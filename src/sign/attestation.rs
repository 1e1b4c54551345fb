//! The product of the sign stage: a signed envelope with what a verifier
//! needs beside it, and the few facts the outputs report.
use super::{PendingWitness, Signed, VerificationMaterial};
use crate::provenance::ResourceDescriptor;

/// A signed attestation, ready for the outputs (files, log line, bundle,
/// in-toto link, registry).
pub struct Attestation {
    pub signed: Signed,
    pub material: VerificationMaterial,
    /// The predicate type of the signed statement.
    pub predicate_type: String,
    pub subject_count: usize,
    /// The first few subjects, for people reading logs.
    pub first_subjects: Vec<ResourceDescriptor>,
    /// Images the statement is about that may receive it in their
    /// registry (`name@sha256:HEX`): claims the sidecar confirmed, or found
    /// in an allowed repository.
    pub images: Vec<String>,
    /// Witnesses (transparency log, timestamp authority) that could not be
    /// reached: the spool keeps the attestation until `provenant publish`
    /// has them done.
    pub pending: Option<PendingWitness>,
}
