//! The workspace watcher on a busy build: whatever the build does while the
//! watch runs, the final walk must equal a post-hoc full hash.
mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use provenant::digest::{self, WalkOptions};
use provenant::watch::{Watch, WatchOptions};

/// Thousands of files written, rewritten, renamed and deleted; directories
/// created (and filled at once, before their watch can exist) and removed;
/// one file still being appended to when the "build" ends.
fn busy_build(root: &Path) {
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
    // Rewritten with the same size within the racy window: only the stat
    // rule catches this, not the size.
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
    // Not closed yet when the final walk starts.
    std::mem::forget(f);
}

#[test]
fn busy_build_gives_exactly_the_post_hoc_digests() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("ws");
    std::fs::create_dir(&root).unwrap();
    common::write(&root.join("pre-existing/a.txt"), b"before the watch\n");
    let mut watch = Watch::start(std::slice::from_ref(&root), &WatchOptions::default()).unwrap();
    busy_build(&root);
    // Give the watcher a moment, as the real sidecar has while it notices
    // the end of the build.
    std::thread::sleep(Duration::from_millis(300));
    let opts = WalkOptions::default();
    let incremental = digest::hash_tree_cached(&root, &opts, Some(watch.cache())).unwrap();
    let post_hoc = digest::hash_tree(&root, &opts).unwrap();
    assert_eq!(incremental, post_hoc);
    assert!(
        post_hoc.files().count() > 2000,
        "{}",
        post_hoc.files().count()
    );
    let hits = watch.cache().hits();
    let hashed = watch.stats().hashed.load(Ordering::Relaxed);
    assert!(
        hits > 1000,
        "the watcher should have pre-hashed most files: hits {hits}, hashed {hashed}"
    );
    watch.stop();
}

#[test]
fn rewrite_after_hashing_is_never_served_from_cache() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_path_buf();
    let f = root.join("f");
    std::fs::write(&f, b"one").unwrap();
    let watch = Watch::start(std::slice::from_ref(&root), &WatchOptions::default()).unwrap();
    // Wait until the watcher holds it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while watch.stats().hashed.load(Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "watcher never hashed the file"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Same size, immediately: the cached digest must not be used.
    std::fs::write(&f, b"two").unwrap();
    let tree =
        digest::hash_tree_cached(&root, &WalkOptions::default(), Some(watch.cache())).unwrap();
    assert_eq!(
        hex::encode(tree.files().next().unwrap().1),
        common::sha256_hex(b"two")
    );
}
