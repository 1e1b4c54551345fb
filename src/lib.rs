//! provenant: signed SLSA provenance recorded from outside the builder.
//!
//! Data flows one way: `digest` (observe) -> `provenance` (describe) ->
//! `sign` (DSSE) -> `publish` (files, logs); `verify` reads envelopes back
//! and `cli` is the edge where errors become messages and exit codes.
pub mod cli;
pub mod completion;
pub mod digest;
pub mod memory;
pub mod pod;
pub mod provenance;
pub mod publish;
pub mod sign;
pub mod verify;
pub mod watch;
pub mod webhook;
