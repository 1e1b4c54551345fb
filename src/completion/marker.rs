//! `marker:PATH`: the builder (or a one-line wrapper around it) creates a
//! file when it is done, ideally containing its exit code:
//! `build; echo $? > /workspace/.done.tmp && mv /workspace/.done.tmp /workspace/.done`.
use std::path::PathBuf;
use std::time::Duration;

use super::{Completed, Report};
use crate::provenance::ExitStatus;
use crate::untrusted::{self, MARKER_CAP};

/// How often the marker is looked for: the time from the build's end to
/// the attestation starts here, and a `stat` every 10 ms costs nothing.
const POLL: Duration = Duration::from_millis(10);
/// A marker whose content is not yet a finished line may still be being
/// written: it must stay unchanged this long.
const SETTLE: Duration = Duration::from_millis(50);

/// Polls rather than using inotify: the marker may live on a volume inotify
/// does not see (NFS, a different mount).
pub(super) async fn wait(path: PathBuf) -> Report {
    loop {
        if untrusted::exists(&path) {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    // A marker written non-atomically may still be empty or half
    // written: unless it already holds a whole line (`echo $? > done`
    // writes number and newline in one call), wait until its content stops
    // changing.
    let mut content = read(&path).await;
    for _ in 0..20 {
        if matches!(&content, Ok(t) if complete_line(t)) || content.is_err() {
            break;
        }
        tokio::time::sleep(SETTLE).await;
        let again = read(&path).await;
        let settled = matches!((&again, &content), (Ok(a), Ok(c)) if a == c && !a.is_empty());
        content = again;
        if settled {
            break;
        }
    }
    // Unknown, never success, when the marker says nothing usable: a
    // garbled marker must not turn a failed build into a passing one. The
    // content is the builder's and is not quoted.
    let exit_code = match &content {
        Ok(text) if text.trim().is_empty() => None,
        Ok(text) => match text.trim().parse::<i32>() {
            Ok(c) => Some(c),
            Err(_) => {
                tracing::warn!(path = %crate::escape::path(&path), bytes = text.len(), "marker content is not an exit code; recording the exit code as unknown");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "marker not read; recording the exit code as unknown");
            None
        }
    };
    Ok(Completed::now(
        "marker",
        ExitStatus::claimed_opt(exit_code, "marker"),
        format!("marker {} appeared", crate::escape::path(&path)),
    ))
}

/// An exit code and its newline, as `echo` writes them in one `write`.
fn complete_line(s: &str) -> bool {
    s.strip_suffix('\n')
        .is_some_and(|n| !n.is_empty() && n.trim().parse::<i32>().is_ok())
}

/// The marker is the builder's file: read through the one door (no links,
/// no FIFOs, at most [`MARKER_CAP`] bytes). A marker that vanished again
/// reads as empty.
async fn read(path: &std::path::Path) -> Result<String, String> {
    let p = path.to_path_buf();
    let r = tokio::task::spawn_blocking(move || untrusted::read_file(&p, MARKER_CAP))
        .await
        .map_err(|e| e.to_string())?;
    match r {
        Ok(Some(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Ok(None) => Ok(String::new()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_line_needs_no_settling() {
        assert!(complete_line("0\n"));
        assert!(complete_line("137\n"));
        assert!(!complete_line("13"), "may be the start of 137");
        assert!(!complete_line(""));
        assert!(!complete_line("\n"));
        assert!(!complete_line("done\n"));
    }
}
