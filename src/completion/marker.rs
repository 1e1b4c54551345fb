//! `marker:PATH`: the builder (or a one-line wrapper around it) creates a
//! file when it is done, ideally containing its exit code:
//! `build; echo $? > /workspace/.done.tmp && mv /workspace/.done.tmp /workspace/.done`.
use std::path::PathBuf;
use std::time::Duration;

use super::{Completed, Report};

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
        if tokio::fs::symlink_metadata(&path).await.is_ok() {
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
        if complete_line(&content) {
            break;
        }
        tokio::time::sleep(SETTLE).await;
        let again = read(&path).await;
        if again == content && !again.is_empty() {
            break;
        }
        content = again;
    }
    let text = content.trim();
    let exit_code = if text.is_empty() {
        None
    } else {
        match text.parse::<i32>() {
            Ok(c) => Some(c),
            Err(_) => {
                // Unknown, not success: a garbled marker must not turn a
                // failed build into a passing one.
                tracing::warn!(path = %path.display(), content = %text.chars().take(80).collect::<String>(), "marker content is not an exit code; recording the exit code as unknown");
                None
            }
        }
    };
    Ok(Completed::now(
        "marker",
        exit_code,
        format!("marker {} appeared", path.display()),
    ))
}

/// An exit code and its newline, as `echo` writes them in one `write`.
fn complete_line(s: &str) -> bool {
    s.strip_suffix('\n')
        .is_some_and(|n| !n.is_empty() && n.trim().parse::<i32>().is_ok())
}

async fn read(path: &std::path::Path) -> String {
    match tokio::fs::read(path).await {
        Ok(b) => String::from_utf8_lossy(&b[..b.len().min(4096)]).into_owned(),
        Err(_) => String::new(),
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
