//! provenant: signed SLSA provenance recorded from outside the builder.
//!
//! Data flows one way, and the modules follow it (docs/architecture.md):
//!
//! * observe: `digest` (hash trees), `watch` (inotify index while a build
//!   runs), `completion` (learn that it ended, and how), `pod` (the init
//!   container's snapshot), `untrusted` (the one door for files the builder
//!   wrote);
//! * describe: `provenance` (in-toto Statement, SLSA predicate, claims);
//! * sign: `sign` (DSSE, keys, signer providers);
//! * publish: `publish` (output providers: files, log line, bundle, link,
//!   registry), `sink` (the one writer for every file);
//! * `pipeline` ties them together for each way of observing; `verify`
//!   reads attestations back (and gates the next stage); `cli` is the edge
//!   where flags become options and failures one line and an exit code
//!   (`error`); `escape` is how every name a stranger chose is shown.
pub mod choice;
pub mod cli;
pub mod completion;
pub mod digest;
pub mod error;
pub mod escape;
pub mod hooks;
pub mod memory;
pub mod pipeline;
pub mod pod;
pub mod provenance;
pub mod publish;
pub mod sign;
pub mod sink;
pub mod testhook;
pub mod untrusted;
pub mod verify;
pub mod watch;
pub mod webhook;
