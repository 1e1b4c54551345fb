//! Completion: learning, from outside an unmodified builder, that it has
//! finished and how it ended. Each [`Trigger`] is one way a pod can tell us;
//! several can be armed at once and the first to fire wins.
//!
//! | trigger            | how it learns                                   | exit code         |
//! |--------------------|-------------------------------------------------|-------------------|
//! | `sigterm`          | SIGTERM/SIGINT to this process (native sidecar) | unknown           |
//! | `process:PATTERN`  | a builder process appears, then all such exit   | when seen zombie  |
//! | `kube:CONTAINER`   | the pod's status from the API server            | yes               |
//! | `marker:PATH`      | a file appears (content = exit code)            | if written        |
//! | `http:ADDR`        | `POST /complete` (`{"exitCode": N}`)            | if sent           |
//!
//! Everything here only observes; nothing can make the builder's outcome
//! look better than what the trigger reported (an unknown exit code stays
//! unknown in the provenance).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use thiserror::Error;

use crate::provenance::ExitStatus;
use time::OffsetDateTime;
use tokio::sync::mpsc;

mod child;
mod http;
mod kube;
mod marker;
mod process;
mod signal;

pub use child::{exit_code_of, run_child, ChildError};
pub use kube::KubeConfig;
pub use process::ProcessPattern;

/// One way to learn that the build finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// SIGTERM (or SIGINT) to provenant: a native sidecar is terminated once
    /// the main containers have exited.
    Sigterm,
    /// A process of the builder, visible through a shared PID namespace.
    Process(ProcessPattern),
    /// The named container's state in the pod status (Kubernetes API).
    Kube(String),
    /// A file that the builder (or a wrapper) creates when done.
    Marker(PathBuf),
    /// An HTTP endpoint a cooperative builder calls.
    Http(SocketAddr),
}

impl Trigger {
    pub fn name(&self) -> &'static str {
        match self {
            Trigger::Sigterm => "sigterm",
            Trigger::Process(_) => "process",
            Trigger::Kube(_) => "kube",
            Trigger::Marker(_) => "marker",
            Trigger::Http(_) => "http",
        }
    }
}

impl FromStr for Trigger {
    type Err = CompletionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| CompletionError::BadTrigger {
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        match (kind, arg) {
            ("sigterm", None) => Ok(Trigger::Sigterm),
            ("sigterm", Some(_)) => Err(bad("`sigterm` takes no argument")),
            ("process", Some(p)) if !p.trim().is_empty() => {
                Ok(Trigger::Process(ProcessPattern::new(p)))
            }
            ("kube", Some(c)) if !c.trim().is_empty() => Ok(Trigger::Kube(c.trim().to_string())),
            ("marker", Some(p)) if !p.is_empty() => Ok(Trigger::Marker(PathBuf::from(p))),
            ("http", Some(a)) => a
                .parse::<SocketAddr>()
                .map(Trigger::Http)
                .map_err(|_| bad("expected http:IP:PORT, e.g. http:127.0.0.1:8787")),
            ("process" | "kube" | "marker", _) => {
                Err(bad(&format!("`{kind}` needs an argument: {kind}:VALUE")))
            }
            _ => Err(bad(
                "expected one of sigterm, process:PATTERN, kube:CONTAINER, marker:PATH, http:ADDR",
            )),
        }
    }
}

/// How and when the build ended.
#[derive(Debug, Clone)]
pub struct Completed {
    /// The trigger that fired (`sigterm`, `process`, ...).
    pub by: &'static str,
    /// The builder's exit code when the trigger could know it, and who
    /// vouches for it.
    pub exit: ExitStatus,
    pub at: OffsetDateTime,
    /// Human-readable detail for the log (pid, container, path...).
    pub detail: String,
}

impl Completed {
    fn now(by: &'static str, exit: ExitStatus, detail: String) -> Self {
        Completed {
            by,
            exit,
            at: OffsetDateTime::now_utc(),
            detail,
        }
    }
}

#[derive(Debug, Error)]
pub enum CompletionError {
    #[error("--completion {value}: {reason}")]
    BadTrigger { value: String, reason: String },
    #[error("--completion http:{addr}: cannot listen: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("--completion sigterm: cannot install the signal handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error("--completion kube:{container}: {reason}")]
    Kube { container: String, reason: String },
    #[error("--completion: every trigger failed; last: {0}")]
    AllFailed(String),
}

type Report = Result<Completed, CompletionError>;

/// Armed triggers: resolves when the first one fires.
pub struct Waiter {
    rx: mpsc::Receiver<Report>,
    armed: usize,
    http_addr: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Waiter {
    /// The address the HTTP trigger actually listens on (useful with port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The first trigger to fire. A trigger that fails for good (say, the API
    /// server refuses our token) is logged and the others keep waiting; only
    /// when all have failed is that an error.
    pub async fn wait(mut self) -> Result<Completed, CompletionError> {
        let mut failed = 0;
        let mut last = String::from("no trigger armed");
        while let Some(report) = self.rx.recv().await {
            match report {
                Ok(done) => {
                    for t in &self.tasks {
                        t.abort();
                    }
                    return Ok(done);
                }
                Err(e) => {
                    failed += 1;
                    tracing::error!(error = %e, "completion trigger failed");
                    last = e.to_string();
                    if failed >= self.armed {
                        break;
                    }
                }
            }
        }
        Err(CompletionError::AllFailed(last))
    }
}

/// Starts every trigger. Fails now for anything that can be checked now (a
/// port in use, no service account for `kube:`), so a misconfigured sidecar
/// exits at pod start instead of after the build.
///
/// `ready` is shared with the HTTP trigger's `/readyz`: the caller sets it once
/// the workspace watch is established.
pub async fn arm(
    triggers: Vec<Trigger>,
    ready: Arc<AtomicBool>,
) -> Result<Waiter, CompletionError> {
    let (tx, rx) = mpsc::channel(triggers.len().max(1));
    let armed = triggers.len();
    let mut http_addr = None;
    let mut tasks = Vec::new();
    for trigger in triggers {
        let tx = tx.clone();
        let task = match trigger {
            Trigger::Sigterm => {
                let fut = signal::arm()?;
                tokio::spawn(async move {
                    let _ = tx.send(fut.await).await;
                })
            }
            Trigger::Process(pattern) => tokio::spawn(async move {
                let _ = tx.send(process::wait(pattern).await).await;
            }),
            Trigger::Kube(container) => {
                let cfg = KubeConfig::in_cluster().map_err(|reason| CompletionError::Kube {
                    container: container.clone(),
                    reason,
                })?;
                let client = cfg.client().map_err(|reason| CompletionError::Kube {
                    container: container.clone(),
                    reason,
                })?;
                tokio::spawn(async move {
                    let _ = tx.send(kube::wait(client, container).await).await;
                })
            }
            Trigger::Marker(path) => tokio::spawn(async move {
                let _ = tx.send(marker::wait(path).await).await;
            }),
            Trigger::Http(addr) => {
                let (bound, fut) = http::arm(addr, ready.clone()).await?;
                http_addr = Some(bound);
                tracing::info!(addr = %bound, "completion endpoint listening (POST /complete, GET /healthz, GET /readyz)");
                tokio::spawn(async move {
                    let _ = tx.send(fut.await).await;
                })
            }
        };
        tasks.push(task);
    }
    Ok(Waiter {
        rx,
        armed,
        http_addr,
        tasks,
    })
}

impl crate::error::ExitClass for CompletionError {
    fn exit_code(&self) -> i32 {
        match self {
            CompletionError::BadTrigger { .. } => crate::error::exit::USAGE,
            _ => crate::error::exit::CANNOT_CHECK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_triggers() {
        assert_eq!("sigterm".parse::<Trigger>().unwrap(), Trigger::Sigterm);
        assert_eq!(
            "marker:/w/.done".parse::<Trigger>().unwrap(),
            Trigger::Marker("/w/.done".into())
        );
        assert_eq!(
            "http:127.0.0.1:8787".parse::<Trigger>().unwrap(),
            Trigger::Http("127.0.0.1:8787".parse().unwrap())
        );
        assert_eq!(
            "kube:build".parse::<Trigger>().unwrap(),
            Trigger::Kube("build".into())
        );
        for bad in ["bogus:x", "http:nope", "kube:", "marker", "sigterm:1", ""] {
            let e = bad.parse::<Trigger>().unwrap_err().to_string();
            assert!(e.contains(&format!("--completion {bad}:")), "{e}");
        }
    }
}
