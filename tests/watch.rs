//! The workspace watcher against real builds on a real file system: after
//! `finish`, the index must be exactly what a post-hoc walk gives, whatever
//! the build did, including what inotify reports in unusual ways (writes
//! through mmap, truncate by path, hard links, renamed directories) and
//! when it loses events (a real queue overflow).
mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use provenant::digest::{self, ErrorPolicy, Tree, WalkOptions};
use provenant::watch::{Watch, WatchOptions};

/// Waits until the watcher has hashed at least `n` files in all (60 s at
/// most: a deadline for a watcher that never does, not a timing).
fn wait_hashed(watch: &Watch, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while watch.stats().hashed.load(Ordering::Relaxed) < n {
        assert!(
            Instant::now() < deadline,
            "the watcher hashed {} of {n} files",
            watch.stats().hashed.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Finishes the watch and returns each root's tree as the sidecar sees it.
fn observe(watch: Watch, roots: &[PathBuf], opts: &WalkOptions) -> (Vec<Tree>, usize) {
    let mut observed = watch.finish();
    observed.resolve(ErrorPolicy::Fail).unwrap();
    let degraded = observed.degraded().len();
    let trees = roots
        .iter()
        .map(|r| observed.tree(r, opts, false).unwrap().unwrap())
        .collect();
    (trees, degraded)
}

fn assert_exact(watch: Watch, roots: &[PathBuf], opts: &WalkOptions) -> usize {
    let (trees, degraded) = observe(watch, roots, opts);
    for (r, t) in roots.iter().zip(trees) {
        let post_hoc = digest::hash_tree(r, opts).unwrap();
        assert_eq!(
            t.entries.len(),
            post_hoc.entries.len(),
            "{}: entry count",
            r.display()
        );
        for (a, b) in t.entries.iter().zip(&post_hoc.entries) {
            assert_eq!(a, b, "{}", r.display());
        }
    }
    degraded
}

/// Thousands of files written, rewritten, renamed and deleted; directories
/// created (and filled at once, before their watch can exist), renamed and
/// removed; one file still being appended to when the "build" ends.
fn busy_build(root: &Path) -> std::fs::File {
    use std::io::Write;
    for round in 0..3 {
        for i in 0..1000 {
            let dir = root.join(format!("pkg{}/sub{}", i % 17, i % 5));
            std::fs::create_dir_all(&dir).unwrap();
            // Every round rewrites the previous round's files and adds its own.
            std::fs::write(
                dir.join(format!("f{i}.js")),
                format!("round {round} file {i}\n").repeat(i % 40 + 1),
            )
            .unwrap();
            std::fs::write(dir.join(format!("r{round}-{i}.js")), format!("{round}/{i}")).unwrap();
        }
        for i in (0..1000).step_by(7) {
            let p = root.join(format!("pkg{}/sub{}/f{i}.js", i % 17, i % 5));
            let _ = std::fs::rename(&p, p.with_extension("moved"));
        }
        for i in (0..1000).step_by(11) {
            let _ = std::fs::remove_file(root.join(format!("pkg{}/sub{}/f{i}.js", i % 17, i % 5)));
        }
        // A directory made and filled in one go, then renamed.
        let burst = root.join(format!("burst{round}"));
        std::fs::create_dir_all(burst.join("a/b")).unwrap();
        for i in 0..50 {
            std::fs::write(burst.join(format!("a/b/{i}")), [i as u8; 100]).unwrap();
        }
        std::fs::rename(&burst, root.join(format!("burst{round}-final"))).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    let _ = std::fs::remove_dir_all(root.join("pkg3"));
    // Rewritten with the same size right after being written.
    let same = root.join("same-size.txt");
    std::fs::write(&same, b"AAAA").unwrap();
    std::thread::sleep(Duration::from_millis(120));
    std::fs::write(&same, b"BBBB").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("still-writing.log"))
        .unwrap();
    for i in 0..200 {
        writeln!(f, "line {i}").unwrap();
    }
    // Not closed when the watch finishes.
    f
}

#[test]
fn busy_build_gives_exactly_the_post_hoc_digests() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("ws");
    std::fs::create_dir(&root).unwrap();
    common::write(&root.join("pre-existing/a.txt"), b"before the watch\n");
    let watch = Watch::start(std::slice::from_ref(&root), &WatchOptions::default()).unwrap();
    let _open = busy_build(&root);
    // Most files are hashed while the build runs, before it ends: the
    // watch is still running while this waits.
    wait_hashed(&watch, 2000);
    let degraded = assert_exact(watch, std::slice::from_ref(&root), &WalkOptions::default());
    assert_eq!(degraded, 0);
}

#[test]
fn nothing_the_build_did_last_is_missed() {
    // No pause at all between the build's last write and finish: whatever
    // is still queued in the kernel is read then.
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_path_buf();
    std::fs::write(root.join("f"), b"one").unwrap();
    let watch = Watch::start(std::slice::from_ref(&root), &WatchOptions::default()).unwrap();
    for i in 0..300 {
        std::fs::write(root.join(format!("g{i}")), format!("{i}")).unwrap();
    }
    // Same size, just before the end.
    std::fs::write(root.join("f"), b"two").unwrap();
    std::fs::create_dir(root.join("late")).unwrap();
    std::fs::write(root.join("late/x"), b"x").unwrap();
    assert_exact(watch, std::slice::from_ref(&root), &WalkOptions::default());
}

#[test]
fn writes_inotify_reports_unusually_are_seen() {
    use std::os::unix::fs::FileExt;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_path_buf();
    std::fs::write(root.join("mapped"), vec![b'a'; 8192]).unwrap();
    std::fs::write(root.join("truncated"), vec![b'b'; 8192]).unwrap();
    std::fs::write(root.join("linked"), b"original").unwrap();
    let watch = Watch::start(std::slice::from_ref(&root), &WatchOptions::default()).unwrap();
    // The first versions are hashed before they change.
    wait_hashed(&watch, 3);

    // Written through a shared mapping after the descriptor is closed: no
    // write(2), the close event only comes when the mapping goes.
    {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(root.join("mapped"))
            .unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: maps 8192 bytes of a file of that size; unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // No event: the mapping still holds the file open.
        drop(f);
        // SAFETY: p is a live mapping of 8192 bytes.
        unsafe {
            std::ptr::write_bytes(p.cast::<u8>(), b'Z', 100);
            libc::munmap(p, 8192);
        }
    }
    // truncate(2) by path: no open, no close, only IN_MODIFY.
    let c = std::ffi::CString::new(root.join("truncated").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: NUL-terminated path.
    assert_eq!(unsafe { libc::truncate(c.as_ptr(), 10) }, 0);
    // A hard link (created with link(2): no close event) and a symlink.
    std::fs::hard_link(root.join("linked"), root.join("hardlink")).unwrap();
    std::os::unix::fs::symlink("linked", root.join("symlink")).unwrap();
    // pwrite through a descriptor that stays open.
    let keep = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("linked"))
        .unwrap();
    keep.write_at(b"CHANGED!", 0).unwrap();
    // chmod +x after the content was hashed: the mode is recorded too.
    let before = watch.stats().hashed.load(Ordering::Relaxed);
    std::fs::write(root.join("script"), b"#!/bin/sh\n").unwrap();
    wait_hashed(&watch, before + 1);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("script"), std::fs::Permissions::from_mode(0o755)).unwrap();

    assert_exact(watch, std::slice::from_ref(&root), &WalkOptions::default());
    drop(keep);
}

#[test]
fn renamed_directories_keep_their_files_and_names() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("ws");
    let outside = t.path().join("outside");
    std::fs::create_dir_all(root.join("stage/deep/er")).unwrap();
    std::fs::create_dir_all(outside.join("in/sub")).unwrap();
    std::fs::write(outside.join("in/sub/came-in"), b"from outside").unwrap();
    let watch = Watch::start(std::slice::from_ref(&root), &WatchOptions::default()).unwrap();
    for i in 0..100 {
        std::fs::write(root.join(format!("stage/deep/er/{i}")), format!("{i}")).unwrap();
    }
    // Hashed under the staging name before the move.
    wait_hashed(&watch, 100);
    // Staged, then moved into place (npm and many builders do this).
    std::fs::rename(root.join("stage"), root.join("final")).unwrap();
    // Written under the new name through the moved directory.
    std::fs::write(root.join("final/deep/er/new"), b"after the move").unwrap();
    // A directory moved in from outside the root, one moved out.
    std::fs::rename(outside.join("in"), root.join("in")).unwrap();
    std::fs::create_dir(root.join("leaving")).unwrap();
    std::fs::write(root.join("leaving/x"), b"x").unwrap();
    // final/deep/er/new, in/sub/came-in and leaving/x known before x leaves.
    wait_hashed(&watch, 103);
    std::fs::rename(root.join("leaving"), outside.join("left")).unwrap();
    // Written after leaving: not ours.
    std::fs::write(outside.join("left/y"), b"y").unwrap();
    // A directory replaced by another of the same name.
    std::fs::create_dir(root.join("swap")).unwrap();
    std::fs::write(root.join("swap/old"), b"old").unwrap();
    std::fs::rename(root.join("swap"), root.join("swap.old")).unwrap();
    std::fs::create_dir(root.join("swap")).unwrap();
    std::fs::write(root.join("swap/new"), b"new").unwrap();
    assert_exact(watch, std::slice::from_ref(&root), &WalkOptions::default());
}

#[test]
fn a_queue_overflow_costs_time_not_accuracy() {
    // A watcher that, once events arrive, waits the longest batch (60 s)
    // before reading them unless the build ends first, and a build raising
    // far more than the kernel's queue holds meanwhile: a real
    // IN_Q_OVERFLOW, read when the watch finishes. The root is then hashed
    // from scratch, and exact.
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_path_buf();
    let queued = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(16384);
    let watch = Watch::start(
        std::slice::from_ref(&root),
        &WatchOptions {
            batch: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..queued / 2 + 100 {
        // Three events each: create, modify, close.
        std::fs::write(root.join(format!("f{i}")), format!("{i}")).unwrap();
    }
    // Nothing read yet: the overflow is in the queue, not guessed at.
    assert_eq!(watch.stats().events.load(Ordering::Relaxed), 0);
    let mut observed = watch.finish();
    observed.resolve(ErrorPolicy::Fail).unwrap();
    let degraded = observed.degraded();
    assert_eq!(degraded.len(), 1, "{degraded:?}");
    assert!(
        degraded[0].1.contains("the inotify queue overflowed"),
        "{degraded:?}"
    );
    let tree = observed
        .tree(&root, &WalkOptions::default(), false)
        .unwrap()
        .unwrap();
    let post_hoc = digest::hash_tree(&root, &WalkOptions::default()).unwrap();
    assert_eq!(tree.entries.len(), queued / 2 + 100);
    assert_eq!(tree.entries, post_hoc.entries);
}

#[test]
fn nested_roots_and_excludes_match_their_own_walks() {
    let t = tempfile::tempdir().unwrap();
    let ws = t.path().join("ws");
    let src = ws.join("source");
    common::write(&src.join("main.c"), b"int main;");
    common::write(&src.join("build/tmp.o"), b"obj");
    let opts = WalkOptions {
        excludes: vec!["*.o".into(), "cache/**".into(), "source/**".into()],
        ..Default::default()
    };
    let watch = Watch::start(
        &[ws.clone(), src.clone()],
        &WatchOptions {
            excludes: opts.excludes.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    common::write(&ws.join("out/app"), b"app");
    common::write(&ws.join("out/app.o"), b"o");
    common::write(&ws.join("cache/big"), b"cache");
    common::write(&src.join("gen.c"), b"generated");
    assert_exact(watch, &[ws.clone(), src.clone()], &opts);
}

/// A watch of `root` with one hashing thread that reads no event before
/// it finishes (a 60 s batch): what the race tests need to hold a moment.
fn held_watch(root: &Path) -> Watch {
    Watch::start(
        &[root.to_path_buf()],
        &WatchOptions {
            batch: Duration::from_secs(60),
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap()
}

/// The hooks of the race tests below (src/testhook.rs): where the hashing
/// threads pause, and where the watcher pauses before a directory.
const PAUSE_BEFORE_HASH: &str = "PROVENANT_TEST_PAUSE_BEFORE_HASH";
const PAUSE_BEFORE_SCAN: &str = "PROVENANT_TEST_PAUSE_BEFORE_SCAN";

/// A hook is read from the environment when a watch starts, so a test that
/// needs one runs itself again with it set, alone in its process. `None`:
/// this was the outer run, and the inner one passed. `Some(flag)`: this is
/// the inner run; the hook's flag file is `flag`, in a directory of its own.
fn with_hook(name: &str, hook: &str) -> Option<PathBuf> {
    if let Some(flag) = std::env::var_os(hook) {
        return Some(PathBuf::from(flag));
    }
    let t = tempfile::tempdir().unwrap();
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.env(hook, t.path().join("pause"));
    common::rerun_alone(c, name, "the run with the hook");
    None
}

/// Every open of `dir` or of a file in it, seen by an inotify watch of our
/// own: how a test knows the watcher never read the key's directory.
struct OpenSpy(std::os::fd::OwnedFd);

impl OpenSpy {
    fn new(dir: &Path) -> OpenSpy {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain system calls; the path is NUL-terminated.
        unsafe {
            let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
            assert!(fd >= 0);
            let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
            assert!(libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN | libc::IN_ACCESS) >= 0);
            OpenSpy(std::os::fd::OwnedFd::from_raw_fd(fd))
        }
    }

    /// The events so far: what was opened or read ("." for `dir` itself).
    fn seen(&self) -> Vec<String> {
        use std::os::fd::AsRawFd;
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let mut out = Vec::new();
        let mut at = 0;
        let head = std::mem::size_of::<libc::inotify_event>();
        while n > 0 && at + head <= n as usize {
            let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().unwrap()) as usize;
            let name = &buf[at + head..at + head + len];
            let name = String::from_utf8_lossy(name)
                .trim_end_matches('\0')
                .to_string();
            out.push(if name.is_empty() { ".".into() } else { name });
            at += head + len;
        }
        out
    }
}

/// The workspace `base/ws` holding `x/d/f`, and the key's directory
/// `base/secret` holding `d/f` with the key in it: what a builder swaps
/// `x` for, a link, once the watcher is about to look below `x`.
fn key_swap_setup(base: &Path) -> (PathBuf, PathBuf) {
    let root = base.join("ws");
    std::fs::create_dir_all(root.join("x/d")).unwrap();
    std::fs::write(root.join("x/d/f"), b"a build output").unwrap();
    let secret = base.join("secret");
    std::fs::create_dir_all(secret.join("d")).unwrap();
    std::fs::write(secret.join("d/f"), b"-----BEGIN PRIVATE KEY-----").unwrap();
    (std::fs::canonicalize(root).unwrap(), secret)
}

fn swap_for_link(root: &Path, secret: &Path) {
    std::fs::rename(root.join("x"), root.join("x2")).unwrap();
    std::os::unix::fs::symlink(secret, root.join("x")).unwrap();
}

/// Releases every pause of the hook at `flag` until `done` is set; the
/// first time the watcher pauses at `at`, swaps `x` for the link first.
/// Returns whether the swap happened there.
fn release_swapping_at(
    flag: PathBuf,
    at: String,
    root: PathBuf,
    secret: PathBuf,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        let mut swapped = false;
        while !done.load(Ordering::Relaxed) {
            if let Ok(held) = std::fs::read_to_string(&flag) {
                if !swapped && held == at {
                    swap_for_link(&root, &secret);
                    swapped = true;
                }
                std::fs::remove_file(&flag).unwrap();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        swapped
    })
}

/// The inodes of every inotify watch this process holds, except on the
/// descriptor `but` (the spy's own), from `/proc/self/fdinfo`.
fn watched_inodes(but: i32) -> Vec<u64> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fdinfo").unwrap().flatten() {
        if e.file_name().to_str() == Some(&but.to_string()) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        for l in text.lines().filter(|l| l.starts_with("inotify wd:")) {
            let ino = l.split_whitespace().find_map(|w| w.strip_prefix("ino:"));
            out.extend(ino.and_then(|h| u64::from_str_radix(h, 16).ok()));
        }
    }
    out
}

/// The watcher opens every directory beneath its root with no link
/// followed, then watches and lists that open directory: a directory above
/// the one it is about to scan, swapped for a link to the key's directory,
/// is never watched, listed or hashed through (before, the absolute path
/// it used followed the link). A hook (src/testhook.rs) holds the watcher
/// before it opens `x/d` (the flag says `open PATH`), after it opened it
/// and before it adds the watch (`watch PATH`), or a hash job before it
/// opens `x/d/f` (`PATH`); `at` says which, and the swap lands there every
/// time; the test checks that it did. Seen from outside: no open of the
/// key's directory (an inotify watch of the test's own), no inotify watch
/// on it (`/proc/self/fdinfo`), nothing degraded, and the final tree is
/// exactly the link and the renamed directory's file.
fn swap_while_watching(flag: &Path, at: impl Fn(&Path) -> String) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let (root, secret) = key_swap_setup(flag.parent().unwrap());
    let secret_ino = std::fs::metadata(secret.join("d")).unwrap().ino();
    let spy = OpenSpy::new(&secret.join("d"));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let held = at(&root);
    let releaser = release_swapping_at(
        flag.to_path_buf(),
        held.clone(),
        root.clone(),
        secret.clone(),
        done.clone(),
    );
    let watch = held_watch(&root);
    // A hash job held until the swap runs after it, before any event of
    // the swap is read (a 60 s batch); a scan is held inside start().
    let deadline = Instant::now() + Duration::from_secs(60);
    while !root.join("x2").exists() {
        assert!(Instant::now() < deadline, "never paused at {held}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let watched = watched_inodes(spy.0.as_raw_fd());
    let (trees, degraded) = observe(watch, std::slice::from_ref(&root), &WalkOptions::default());
    done.store(true, Ordering::Relaxed);
    assert!(releaser.join().unwrap(), "never paused at {held}");
    assert_eq!(
        spy.seen(),
        Vec::<String>::new(),
        "the key's directory was read"
    );
    assert!(
        !watched.contains(&secret_ino),
        "the key's directory was watched"
    );
    assert!(!watched.is_empty(), "no watch seen in /proc/self/fdinfo");
    assert_eq!(degraded, 0);
    let names: Vec<String> = trees[0]
        .entries
        .iter()
        .map(|e| e.path.as_path().display().to_string())
        .collect();
    assert_eq!(names, ["x", "x2/d/f"]);
}

#[test]
fn a_directory_swapped_for_a_link_before_its_scan_is_not_followed() {
    if let Some(flag) = with_hook(
        "a_directory_swapped_for_a_link_before_its_scan_is_not_followed",
        PAUSE_BEFORE_SCAN,
    ) {
        swap_while_watching(&flag, |root| format!("open {}", root.join("x/d").display()));
    }
}

#[test]
fn a_directory_swapped_for_a_link_before_its_watch_is_not_followed() {
    if let Some(flag) = with_hook(
        "a_directory_swapped_for_a_link_before_its_watch_is_not_followed",
        PAUSE_BEFORE_SCAN,
    ) {
        swap_while_watching(&flag, |root| {
            format!("watch {}", root.join("x/d").display())
        });
    }
}

/// The same swap while a hash job is about to open `x/d/f`: the job opens
/// `x/d` beneath the root, meets the link and hashes nothing; the file is
/// hashed under its new name, and the key is never opened.
#[test]
fn a_directory_swapped_for_a_link_before_a_hash_is_not_followed() {
    if let Some(flag) = with_hook(
        "a_directory_swapped_for_a_link_before_a_hash_is_not_followed",
        PAUSE_BEFORE_HASH,
    ) {
        swap_while_watching(&flag, |root| root.join("x/d/f").display().to_string());
    }
}

#[test]
fn a_digest_follows_a_rename_only_for_the_same_inode() {
    // The watcher applies events a moment after they happen, and a hash job
    // opens a path as it is when it runs. Here the job for `a` runs after
    // `a` was renamed to `b` and a new `a` written, but before the rename's
    // events are read: the digest it took is the new `a`'s, and must not
    // move to `b` with the rename. The hashing hook (src/testhook.rs) holds
    // the job while the test renames, and the watcher reads no event before
    // the watch finishes (a 60 s batch), so the scenario is reached every
    // time; the test checks that it was.
    //
    // The hook is read from the environment when a watch starts, so the
    // test runs itself again with it set, alone in its process.
    let Some(flag) = with_hook(
        "a_digest_follows_a_rename_only_for_the_same_inode",
        PAUSE_BEFORE_HASH,
    ) else {
        return;
    };
    let root = flag.parent().unwrap().join("ws");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a"), b"version one").unwrap();
    let watch = held_watch(&root);
    // The scan queued `a`; its job is about to open it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        if let Ok(what) = std::fs::read_to_string(&flag) {
            break what;
        }
        assert!(Instant::now() < deadline, "the hash job never started");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(
        Path::new(&held),
        std::fs::canonicalize(&root).unwrap().join("a")
    );
    std::fs::rename(root.join("a"), root.join("b")).unwrap();
    std::fs::write(root.join("a"), b"version two").unwrap();
    std::fs::remove_file(&flag).unwrap();
    // The job stored what it read (the new `a`) before any event of the
    // rename was read: the race, reached.
    wait_hashed(&watch, 1);
    assert_eq!(watch.stats().events.load(Ordering::Relaxed), 0);
    assert_eq!(watch.stats().stale.load(Ordering::Relaxed), 0);
    assert_exact(watch, std::slice::from_ref(&root), &WalkOptions::default());
}

/// The same swap after the build ended, before what the watcher had not
/// hashed yet is resolved (a file still open for writing when the build
/// ended): the entry's directory is opened beneath the root, meets the
/// link, and the entry is dropped, never hashed through it.
#[test]
fn a_directory_swapped_for_a_link_before_the_end_resolution_is_not_followed() {
    use std::io::Write;
    let t = tempfile::tempdir().unwrap();
    let (root, secret) = key_swap_setup(t.path());
    let watch = Watch::start(std::slice::from_ref(&root), &WatchOptions::default()).unwrap();
    // Written and never closed: left to the resolution.
    let mut writer = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("x/d/f"))
        .unwrap();
    writer.write_all(b" and more").unwrap();
    let mut observed = watch.finish();
    swap_for_link(&root, &secret);
    let spy = OpenSpy::new(&secret.join("d"));
    assert_eq!(observed.resolve(ErrorPolicy::Fail).unwrap(), 1);
    assert_eq!(spy.seen(), Vec::<String>::new(), "the key was read");
    let tree = observed
        .tree(&root, &WalkOptions::default(), false)
        .unwrap()
        .unwrap();
    assert!(tree.entries.is_empty(), "{:?}", tree.entries);
    drop(writer);
}
