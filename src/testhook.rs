//! Fault injection for the tests of races that no timing reaches reliably:
//! a change between the gate and the snapshot, a kill while an attestation
//! is being written, a hash that runs between a rename and the rename's
//! events. Where the environment variable of a hook holds a path, the code
//! creates that file at the point named, holding a line that says what it
//! is doing, and waits (30 s at most) until the test removes the file; the
//! test then knows the scenario was reached, instead of hoping a sleep
//! landed in it. Only whoever starts provenant sets its environment (the
//! pod's operator, never the builder). Unset, a hook costs one lookup of
//! the environment where it is reached: once per file written, once per
//! watch started. A release build has none of them (`crate::hooks`).
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `snapshot`: after the gate verified the required inputs, before the
/// materials are hashed (tests/chain.rs).
pub const AFTER_GATE: &str = "PROVENANT_TEST_PAUSE_AFTER_GATE";
/// Every file written by replacement (`crate::sink`): once its content is
/// complete in the temporary file beside it, before the rename that gives
/// it its name. The flag holds the path being written (tests/record.rs).
pub const BEFORE_COMMIT: &str = "PROVENANT_TEST_PAUSE_BEFORE_COMMIT";
/// Read when a watch starts (`crate::watch`): each hash job run while the
/// build runs pauses before it opens its file. The flag holds the file's
/// path (tests/watch.rs).
pub const BEFORE_HASH: &str = "PROVENANT_TEST_PAUSE_BEFORE_HASH";
/// Read when a watch starts (`crate::watch`): the watcher pauses before it
/// opens each directory it scans, and again before it watches the open
/// directory. The flag holds `open PATH` or `watch PATH` (tests/watch.rs:
/// a directory above it swapped for a link to the key's at each moment).
pub const BEFORE_SCAN: &str = "PROVENANT_TEST_PAUSE_BEFORE_SCAN";

/// The flag file the hook `var` is set to, if any (never in a release
/// build: `crate::hooks`).
pub fn flag(var: &str) -> Option<PathBuf> {
    crate::hooks::var(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The hook `var`, if set: see [`pause_at`].
pub fn pause(var: &str, what: &str) {
    if let Some(f) = flag(var) {
        pause_at(&f, what);
    }
}

/// Creates `flag` holding `what`, then waits until it is gone (30 s at
/// most). The flag appears whole (written beside it, then renamed), so a
/// test that sees it can read it. Written with std::fs, not through
/// `crate::sink`, whose own hook this would otherwise re-enter.
pub fn pause_at(flag: &Path, what: &str) {
    let mut tmp = flag.as_os_str().to_owned();
    tmp.push(".tmp");
    if std::fs::write(&tmp, what.as_bytes()).is_err() || std::fs::rename(&tmp, flag).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while flag.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}
