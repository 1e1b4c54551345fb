//! How a failure ends the process: every error type of the library says
//! its own exit class through [`ExitClass`] (as the `ignore` crate's errors
//! answer `is_io()`), so the command line needs no list of types, and a
//! new error type cannot reach the user without saying what it means.

/// Exit codes scripts can rely on (also listed in the README).
pub mod exit {
    /// Everything checked out.
    pub const OK: i32 = 0;
    /// Unexpected internal error: a bug.
    pub const INTERNAL: i32 = 1;
    /// Command-line usage error (clap's own code).
    pub const USAGE: i32 = 2;
    /// Could not check: missing/unreadable file, bad key file, I/O, network.
    pub const CANNOT_CHECK: i32 = 3;
    /// The attestation is invalid: malformed, tampered, or not signed by a
    /// trusted key.
    pub const INVALID: i32 = 4;
    /// Valid signature, but the policy rejects it.
    pub const POLICY: i32 = 5;
}

/// The exit code a failure maps to.
pub trait ExitClass {
    fn exit_code(&self) -> i32;
}

/// Reading or writing a file or socket failed: the environment, not the
/// attestation.
impl ExitClass for std::io::Error {
    fn exit_code(&self) -> i32 {
        exit::CANNOT_CHECK
    }
}

/// Formatting into a string of our own cannot fail; if it did, a bug.
impl ExitClass for std::fmt::Error {
    fn exit_code(&self) -> i32 {
        exit::INTERNAL
    }
}

/// Serializing our own types cannot fail; if it did, a bug.
impl ExitClass for serde_json::Error {
    fn exit_code(&self) -> i32 {
        exit::INTERNAL
    }
}

/// One exit class for every variant of an error type.
#[macro_export]
macro_rules! exit_class {
    ($t:ty => $code:expr) => {
        impl $crate::error::ExitClass for $t {
            fn exit_code(&self) -> i32 {
                $code
            }
        }
    };
}
