//! `marker:PATH`: the builder (or a one-line wrapper around it) creates a
//! file when it is done, ideally containing its exit code:
//! `build; echo $? > /workspace/.done.tmp && mv /workspace/.done.tmp /workspace/.done`.
use std::path::PathBuf;
use std::time::Duration;

use super::{Completed, Report};

const POLL: Duration = Duration::from_millis(50);

/// Polls rather than using inotify: the marker may live on a volume inotify
/// does not see (NFS, a different mount), and 50 ms is far below any build.
pub(super) async fn wait(path: PathBuf) -> Report {
    loop {
        if tokio::fs::symlink_metadata(&path).await.is_ok() {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    // A marker written non-atomically may still be empty: wait until its
    // content stops changing.
    let mut content = read(&path).await;
    for _ in 0..20 {
        tokio::time::sleep(POLL).await;
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

async fn read(path: &std::path::Path) -> String {
    match tokio::fs::read(path).await {
        Ok(b) => String::from_utf8_lossy(&b[..b.len().min(4096)]).into_owned(),
        Err(_) => String::new(),
    }
}
