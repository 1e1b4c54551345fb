//! The spec objects provenant emits, as typed structs.
//!
//! * in-toto Statement v1: <https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>
//! * ResourceDescriptor v1: <https://github.com/in-toto/attestation/blob/main/spec/v1/resource_descriptor.md>
//! * SLSA Provenance v1: <https://slsa.dev/spec/v1.0/provenance>
//!
//! Field names follow the specs' JSON (camelCase); optional fields are omitted
//! rather than written as `null` or empty, because the reference validators
//! (protobuf JSON parsing) treat explicit empties differently from absence.
mod builder;
mod descriptor;
mod list;
mod reported;
mod roots;
mod statement;

pub mod link;
pub use builder::*;
pub use descriptor::*;
pub use list::*;
pub use reported::*;
pub use roots::*;
pub use statement::*;
