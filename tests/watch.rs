//! The workspace watcher against real builds on a real file system: after
//! `finish`, the index must be exactly what a post-hoc walk gives, whatever
//! the build did, including what inotify reports in unusual ways (writes
//! through mmap, truncate by path, hard links, renamed directories) and
//! when it loses events (a real queue overflow).
mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use provenant::digest::{self, ErrorPolicy, Tree, WalkOptions};
use provenant::watch::{Watch, WatchOptions};

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
    // The sidecar notices the end of a build a moment after it.
    std::thread::sleep(Duration::from_millis(300));
    let hashed = watch.stats().hashed.load(Ordering::Relaxed);
    assert!(
        hashed > 2000,
        "the watcher should have hashed most files while they were written: {hashed}"
    );
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
    // Let the watcher hash the first versions.
    std::thread::sleep(Duration::from_millis(200));

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
        drop(f);
        std::thread::sleep(Duration::from_millis(100));
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
    std::fs::write(root.join("script"), b"#!/bin/sh\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
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
    std::thread::sleep(Duration::from_millis(100));
    // Staged, then moved into place (npm and many builders do this).
    std::fs::rename(root.join("stage"), root.join("final")).unwrap();
    // Written under the new name through the moved directory.
    std::fs::write(root.join("final/deep/er/new"), b"after the move").unwrap();
    // A directory moved in from outside the root, one moved out.
    std::fs::rename(outside.join("in"), root.join("in")).unwrap();
    std::fs::create_dir(root.join("leaving")).unwrap();
    std::fs::write(root.join("leaving/x"), b"x").unwrap();
    std::thread::sleep(Duration::from_millis(50));
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
    // A watcher that reads its queue only every 3 s, and a build raising far
    // more than the kernel's 16384 queued events meanwhile: a real
    // IN_Q_OVERFLOW. The root is then hashed from scratch, and exact.
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_path_buf();
    let queued = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(16384);
    let watch = Watch::start(
        std::slice::from_ref(&root),
        &WatchOptions {
            batch: Duration::from_secs(3),
            ..Default::default()
        },
    )
    .unwrap();
    // Wake the watcher so that it starts its long pause.
    std::fs::write(root.join("first"), b"1").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    for i in 0..queued / 2 + 100 {
        // Three events each: create, modify, close.
        std::fs::write(root.join(format!("f{i}")), format!("{i}")).unwrap();
    }
    std::thread::sleep(Duration::from_millis(3500));
    assert!(watch.stats().overflows.load(Ordering::Relaxed) > 0);
    let degraded = assert_exact(watch, std::slice::from_ref(&root), &WalkOptions::default());
    assert_eq!(degraded, 1);
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

#[test]
fn a_digest_follows_a_rename_only_for_the_same_inode() {
    // The watcher applies events a moment after they happen, and a hash job
    // opens a path as it is when it runs. Here the job for `a` runs after
    // `a` was renamed to `b` and a new `a` written, but before the rename's
    // events are read: the digest it took is the new `a`'s, and must not
    // move to `b` with the rename.
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_path_buf();
    let watch = Watch::start(
        std::slice::from_ref(&root),
        &WatchOptions {
            batch: Duration::from_secs(2),
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap();
    // Keeps the one hashing thread busy when the batch is handed over.
    std::fs::write(root.join("big"), vec![7u8; 256 << 20]).unwrap();
    std::fs::write(root.join("a"), b"version one").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while watch.stats().events.load(Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "no batch read");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The batch is being read now; once it is, `big` is being hashed
    // (~150 ms) and the job for `a` waits behind it.
    std::thread::sleep(Duration::from_millis(40));
    std::fs::rename(root.join("a"), root.join("b")).unwrap();
    std::fs::write(root.join("a"), b"version two").unwrap();
    // The rename is read in the next batch, after the job for `a` ran.
    std::thread::sleep(Duration::from_millis(2500));
    assert_exact(watch, std::slice::from_ref(&root), &WalkOptions::default());
}
