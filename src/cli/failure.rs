//! The edge where failures become one line and an exit code. A library
//! error says its own exit class ([`ExitClass`]); converting it into a
//! [`Failure`] keeps that class, whatever context is added on the way out.
use std::fmt::Display;

use crate::error::{exit, ExitClass};

/// Why a command failed, and the exit code that says so.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub error: anyhow::Error,
}

pub type CliResult<T = i32> = Result<T, Failure>;

impl<E> From<E> for Failure
where
    E: ExitClass + std::error::Error + Send + Sync + 'static,
{
    fn from(e: E) -> Self {
        Failure {
            code: e.exit_code(),
            error: anyhow::Error::new(e),
        }
    }
}

impl Failure {
    /// A failure of this command's own making, with its class.
    pub fn new(code: i32, msg: impl Display + Send + Sync + 'static) -> Failure {
        Failure {
            code,
            error: anyhow::Error::msg(msg.to_string()),
        }
    }

    /// A failure that is a bug.
    pub fn internal(msg: impl Display + Send + Sync + 'static) -> Failure {
        Self::new(exit::INTERNAL, msg)
    }

    pub fn context(self, c: impl Display + Send + Sync + 'static) -> Failure {
        Failure {
            code: self.code,
            error: self.error.context(c),
        }
    }
}

/// `.context(...)` and `.with_context(...)` that keep the exit class.
pub trait Context<T> {
    fn context(self, c: impl Display + Send + Sync + 'static) -> CliResult<T>;
    fn with_context<C: Display + Send + Sync + 'static>(
        self,
        f: impl FnOnce() -> C,
    ) -> CliResult<T>;
}

impl<T, E: Into<Failure>> Context<T> for Result<T, E> {
    fn context(self, c: impl Display + Send + Sync + 'static) -> CliResult<T> {
        self.map_err(|e| e.into().context(c))
    }

    fn with_context<C: Display + Send + Sync + 'static>(
        self,
        f: impl FnOnce() -> C,
    ) -> CliResult<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

/// A mistake in how the command was called that clap cannot see (a
/// combination of flags, a bad pattern): exit code 2, like clap's own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

crate::exit_class!(UsageError => exit::USAGE);

/// Something the user must provide or fix that is not a usage mistake (a
/// password with no way to ask for it): exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CannotError(pub String);

crate::exit_class!(CannotError => exit::CANNOT_CHECK);
