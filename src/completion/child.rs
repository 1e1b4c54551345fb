//! `provenant run -- CMD`: the build is a child of ours, so its end and its
//! exit status are observed through the kernel (waitpid).
use std::io::IsTerminal;

use tokio::signal::unix::{signal, SignalKind};

/// Exit status as a shell reports it: the code, or 128 + signal number.
pub fn exit_code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(crate::verify::exit::INTERNAL)
}

/// Why the command did not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("cannot start command '{command}': {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    #[error("waiting for the command: {0}")]
    Wait(std::io::Error),
}

impl ChildError {
    /// `env` and `timeout` exit 127 for a command that is not there, 126
    /// for one that cannot be executed; `run` does the same.
    pub fn exit_code(&self) -> i32 {
        match self {
            ChildError::Spawn { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => 127,
                std::io::ErrorKind::PermissionDenied => 126,
                _ => 126,
            },
            _ => crate::verify::exit::CANNOT_CHECK,
        }
    }
}

/// Runs the command with inherited stdio, forwarding the signals a
/// supervisor sends us. SIGINT/SIGQUIT are not forwarded when we are
/// attached to a terminal: the terminal already delivered them to the whole
/// foreground process group, child included, and a second copy makes some
/// programs abort instead of shutting down cleanly.
pub async fn run_child(argv: &[String]) -> Result<std::process::ExitStatus, ChildError> {
    // The handlers go in before the command starts: a SIGTERM that came
    // between the two once took the default action and killed us, leaving
    // the command running unrecorded (and tests/cli.rs's signal test
    // hanging on its pipes). One that comes before the command exists is
    // queued and forwarded as soon as it does.
    let interactive = std::io::stdin().is_terminal();
    let mut kinds = vec![
        (SignalKind::terminate(), nix::sys::signal::Signal::SIGTERM),
        (SignalKind::hangup(), nix::sys::signal::Signal::SIGHUP),
        (
            SignalKind::user_defined1(),
            nix::sys::signal::Signal::SIGUSR1,
        ),
        (
            SignalKind::user_defined2(),
            nix::sys::signal::Signal::SIGUSR2,
        ),
    ];
    if !interactive {
        kinds.push((SignalKind::interrupt(), nix::sys::signal::Signal::SIGINT));
        kinds.push((SignalKind::quit(), nix::sys::signal::Signal::SIGQUIT));
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (kind, sig) in kinds {
        let mut stream = signal(kind).map_err(ChildError::Signal)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(sig).is_err() {
                    break;
                }
            }
        });
    }
    if interactive {
        // Keep the default action from killing us before the child: we must
        // outlive it to record its exit.
        for kind in [SignalKind::interrupt(), SignalKind::quit()] {
            let mut s = signal(kind).map_err(ChildError::Signal)?;
            tokio::spawn(async move { while s.recv().await.is_some() {} });
        }
    }
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .spawn()
        .map_err(|source| ChildError::Spawn {
            command: argv[0].clone(),
            source,
        })?;
    let pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    loop {
        tokio::select! {
            status = child.wait() => return status.map_err(ChildError::Wait),
            Some(sig) = rx.recv() => {
                if let Some(pid) = pid {
                    tracing::debug!(signal = %sig, "forwarding signal to command");
                    let _ = nix::sys::signal::kill(pid, sig);
                }
            }
        }
    }
}

impl crate::error::ExitClass for ChildError {
    fn exit_code(&self) -> i32 {
        ChildError::exit_code(self)
    }
}
