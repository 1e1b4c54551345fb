//! Test-only hooks steered by the environment. In pod mode the environment
//! of a provenant container is written by whoever writes the pod spec (and
//! a webhook, a Task, a kustomization may add to it); none of that may be
//! able to pause the gate between its check and the snapshot, make the
//! sidecar panic, or move where it reads its service-account token and
//! the API server's CA from. So every such hook is read through [`var`],
//! and a release build (`debug_assertions` off) compiles none of them:
//! [`var`] is `None` whatever the environment says.
//!
//! Checked two ways: `hooks_are_read_only_through_this_module` (every
//! test build) scans `src/` for a direct read of a hook's variable, and
//! `release_builds_ignore_every_hook` runs only in a build without debug
//! assertions (`scripts/test.sh` runs it: `cargo test --lib
//! --config 'profile.dev.package.provenant.debug-assertions=false' hooks`).
use std::ffi::OsString;

/// Every variable a hook reads.
pub const HOOKS: &[&str] = &[
    // Pauses `snapshot` after the gate (tests/chain.rs: the swap race),
    // a write before its rename (tests/record.rs: the mid-finalize kill),
    // a hash job before it opens its file and the watcher before it opens
    // a directory (tests/watch.rs): crate::testhook.
    crate::testhook::AFTER_GATE,
    crate::testhook::BEFORE_COMMIT,
    crate::testhook::BEFORE_HASH,
    crate::testhook::BEFORE_SCAN,
    // Panics before the command starts (tests/cli_contract.rs).
    "PROVENANT_TEST_PANIC",
    // Moves the service-account mount (tests/completion.rs).
    "PROVENANT_SERVICEACCOUNT_DIR",
];

/// The hook's variable in a test build; `None` in a release build.
#[cfg(debug_assertions)]
pub(crate) fn var(name: &str) -> Option<OsString> {
    debug_assert!(HOOKS.contains(&name), "{name} is not a listed hook");
    std::env::var_os(name)
}

/// The hook's variable in a test build; `None` in a release build.
#[cfg(not(debug_assertions))]
pub(crate) fn var(_name: &str) -> Option<OsString> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No hook variable is read except through [`var`].
    #[test]
    fn hooks_are_read_only_through_this_module() {
        fn scan(dir: &std::path::Path, bad: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    scan(&p, bad);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("hooks.rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for (i, line) in text.lines().enumerate() {
                        let direct = line.contains("env::var");
                        let hook = HOOKS.iter().any(|h| line.contains(h))
                            || line.contains("\"PROVENANT_TEST_");
                        if direct && hook {
                            bad.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                        }
                    }
                }
            }
        }
        let mut bad = Vec::new();
        scan(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut bad,
        );
        assert!(
            bad.is_empty(),
            "hooks read around crate::hooks::var: {bad:#?}"
        );
    }

    /// A build without debug assertions: every hook variable set, none
    /// seen; the panic hook does not fire and the pause returns at once.
    #[cfg(not(debug_assertions))]
    #[test]
    fn release_builds_ignore_every_hook() {
        let d = tempfile::tempdir().unwrap();
        let flag = d.path().join("paused");
        for h in HOOKS {
            std::env::set_var(h, &flag);
        }
        for h in HOOKS {
            assert_eq!(var(h), None, "{h} steers a release build");
        }
        crate::cli::report::injected_fault();
        let start = std::time::Instant::now();
        for h in [
            crate::testhook::AFTER_GATE,
            crate::testhook::BEFORE_COMMIT,
            crate::testhook::BEFORE_HASH,
            crate::testhook::BEFORE_SCAN,
        ] {
            crate::testhook::pause(h, "a release build must not pause");
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        assert!(!flag.exists(), "the pause hook ran");
    }
}
