//! The observe step on real file systems: determinism, git compatibility,
//! links, special files, excludes, non-UTF-8 names.
mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::{sha256_hex, write};
use provenant::digest::{self, decode_percent, EntryKind, ErrorPolicy, SpecialKind, WalkOptions};

fn opts() -> WalkOptions {
    WalkOptions {
        git_blobs: true,
        ..Default::default()
    }
}

fn names(t: &digest::Tree) -> Vec<String> {
    t.entries.iter().map(|e| e.path.encoded().0).collect()
}

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.email=t@t",
            "-c",
            "user.name=t",
            "-c",
            "core.fileMode=true",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// A tree with the cases git orders or stores specially.
fn tricky_tree(d: &Path) {
    write(&d.join("a.b"), b"dot\n");
    write(&d.join("a/b"), b"slash\n");
    write(&d.join("a-b"), b"dash\n");
    write(&d.join("a0"), b"zero\n");
    write(&d.join("deep/x/y/z/file.txt"), b"deep\n");
    write(&d.join("empty-file"), b"");
    write(&d.join("run.sh"), b"#!/bin/sh\n");
    std::fs::set_permissions(d.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(d.join("empty-dir/nested")).unwrap();
    symlink("a/b", d.join("link-in")).unwrap();
    symlink("../../etc/passwd", d.join("link-out")).unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    write(&d.join("big.bin"), &big);
}

#[test]
fn git_tree_equals_git_write_tree() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    tricky_tree(d);
    git(d, &["init", "-q"]);
    git(d, &["add", "-A"]);
    let expected = git(d, &["write-tree"]);
    let tree = digest::hash_tree(
        d,
        &WalkOptions {
            excludes: vec![".git/**".into()],
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(tree.git_tree().unwrap(), expected);
    // Without blob ids there is no tree id rather than a wrong one.
    let plain = digest::hash_tree(
        d,
        &WalkOptions {
            excludes: vec![".git/**".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(plain.git_tree(), None);
    assert_eq!(plain.files().count(), tree.files().count());
}

#[test]
fn entries_are_sorted_relative_and_deterministic() {
    let t = tempfile::tempdir().unwrap();
    tricky_tree(t.path());
    let a = digest::hash_tree(t.path(), &opts()).unwrap();
    let b = digest::hash_tree(t.path(), &opts()).unwrap();
    assert_eq!(a, b);
    assert_eq!(
        names(&a),
        [
            "a-b",
            "a.b",
            "a/b",
            "a0",
            "big.bin",
            "deep/x/y/z/file.txt",
            "empty-file",
            "link-in",
            "link-out",
            "run.sh"
        ]
    );
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let (_, sha) = a.files().find(|(p, _)| p.as_bytes() == b"big.bin").unwrap();
    assert_eq!(hex::encode(sha), sha256_hex(&big));
    let run = a
        .entries
        .iter()
        .find(|e| e.path.as_bytes() == b"run.sh")
        .unwrap();
    assert!(matches!(
        run.kind,
        EntryKind::File {
            executable: true,
            size: 10,
            ..
        }
    ));
}

#[test]
fn symlinks_are_recorded_not_followed() {
    let t = tempfile::tempdir().unwrap();
    tricky_tree(t.path());
    let tree = digest::hash_tree(t.path(), &opts()).unwrap();
    let out = tree
        .entries
        .iter()
        .find(|e| e.path.as_bytes() == b"link-out")
        .unwrap();
    assert_eq!(
        out.kind,
        EntryKind::Symlink {
            target: b"../../etc/passwd".to_vec()
        }
    );
    // A link to a directory is not descended into.
    symlink("/", t.path().join("root-link")).unwrap();
    let tree = digest::hash_tree(t.path(), &opts()).unwrap();
    assert!(names(&tree).iter().all(|n| !n.starts_with("root-link/")));
}

#[test]
fn root_link_named_by_user_is_followed() {
    let t = tempfile::tempdir().unwrap();
    write(&t.path().join("real/f"), b"f\n");
    symlink("real", t.path().join("alias")).unwrap();
    symlink("real/f", t.path().join("file-alias")).unwrap();
    let tree = digest::hash_tree(&t.path().join("alias"), &opts()).unwrap();
    assert_eq!(names(&tree), ["f"]);
    let tree = digest::hash_tree(&t.path().join("file-alias"), &opts()).unwrap();
    assert_eq!(names(&tree), ["file-alias"]);
    assert_eq!(
        hex::encode(tree.files().next().unwrap().1),
        sha256_hex(b"f\n")
    );
}

#[test]
fn special_files_are_never_opened() {
    let t = tempfile::tempdir().unwrap();
    write(&t.path().join("f"), b"x");
    let fifo = t.path().join("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let sock = std::os::unix::net::UnixListener::bind(t.path().join("sock")).unwrap();
    // A hang here would block the test forever; the walk must not open them.
    let tree = digest::hash_tree(t.path(), &opts()).unwrap();
    drop(sock);
    let kinds: Vec<_> = tree
        .entries
        .iter()
        .map(|e| (e.path.encoded().0, e.kind.clone()))
        .collect();
    assert!(kinds.contains(&(
        "pipe".into(),
        EntryKind::Special {
            kind: SpecialKind::Fifo
        }
    )));
    assert!(kinds.contains(&(
        "sock".into(),
        EntryKind::Special {
            kind: SpecialKind::Socket
        }
    )));
    // A FIFO named as the root is not opened either.
    let tree = digest::hash_tree(&fifo, &opts()).unwrap();
    assert_eq!(
        tree.entries[0].kind,
        EntryKind::Special {
            kind: SpecialKind::Fifo
        }
    );
    // /dev/null is a char device.
    let tree = digest::hash_tree(Path::new("/dev/null"), &opts()).unwrap();
    assert_eq!(
        tree.entries[0].kind,
        EntryKind::Special {
            kind: SpecialKind::CharDevice
        }
    );
}

#[test]
fn excludes_match_relative_paths_and_prune_directories() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write(&d.join(".git/HEAD"), b"ref\n");
    write(&d.join("src/a.o"), b"o");
    write(&d.join("src/a.c"), b"c");
    write(&d.join("src/sub/b.o"), b"o");
    write(&d.join("node_modules/x/index.js"), b"js");
    let tree = digest::hash_tree(
        d,
        &WalkOptions {
            excludes: vec![".git/**".into(), "src/*.o".into(), "node_modules/".into()],
            ..Default::default()
        },
    )
    .unwrap();
    // `*` does not cross `/`: src/sub/b.o stays.
    assert_eq!(names(&tree), ["src/a.c", "src/sub/b.o"]);
    let tree = digest::hash_tree(
        d,
        &WalkOptions {
            excludes: vec!["**/*.o".into(), ".git".into(), "node_modules".into()],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(names(&tree), ["src/a.c"]);
    let err = digest::hash_tree(
        d,
        &WalkOptions {
            excludes: vec!["src/[".into()],
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("invalid --exclude glob 'src/['"),
        "{err}"
    );
}

#[test]
fn non_utf8_names_roundtrip_losslessly() {
    let t = tempfile::tempdir().unwrap();
    let raw: &[u8] = b"caf\xe9 %41.txt";
    std::fs::create_dir(t.path().join(OsStr::from_bytes(b"d\xff"))).unwrap();
    std::fs::write(
        t.path()
            .join(OsStr::from_bytes(b"d\xff"))
            .join(OsStr::from_bytes(raw)),
        b"x",
    )
    .unwrap();
    let tree = digest::hash_tree(t.path(), &opts()).unwrap();
    let e = &tree.entries[0];
    let (name, encoded) = e.path.encoded();
    assert!(encoded);
    assert_eq!(name, "d%FF/caf%E9%20%2541.txt");
    let mut full = b"d\xff/".to_vec();
    full.extend_from_slice(raw);
    assert_eq!(decode_percent(&name).unwrap(), full);
    // git stores the raw bytes; so do we.
    git(t.path(), &["init", "-q"]);
    git(t.path(), &["add", "-A"]);
    let tree = digest::hash_tree(
        t.path(),
        &WalkOptions {
            excludes: vec![".git/**".into()],
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(tree.git_tree().unwrap(), git(t.path(), &["write-tree"]));
}

/// Root reads chmod-000 files, so as root (as CI runs) this test runs
/// itself again as `nobody` with setpriv, and passes only if that run ran
/// it and passed.
#[test]
fn missing_root_and_unreadable_entries_name_the_path() {
    const NAME: &str = "missing_root_and_unreadable_entries_name_the_path";
    if nix::unistd::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(std::env::current_exe().unwrap())
            // Its temporary directory must be one nobody may write.
            .env("TMPDIR", "/tmp");
        common::rerun_alone(c, NAME, "the unprivileged run (setpriv, util-linux)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let err = digest::hash_tree(&t.path().join("nope"), &opts()).unwrap_err();
    assert!(
        err.to_string().ends_with("nope: no such file or directory"),
        "{err}"
    );
    write(&t.path().join("secret"), b"s");
    std::fs::set_permissions(
        t.path().join("secret"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let err = digest::hash_tree(t.path(), &opts()).unwrap_err();
    assert!(err.to_string().contains("secret"), "{err}");
    let tree = digest::hash_tree(
        t.path(),
        &WalkOptions {
            on_error: ErrorPolicy::Record,
            ..opts()
        },
    )
    .unwrap();
    assert!(matches!(tree.entries[0].kind, EntryKind::Error { .. }));
}

#[test]
fn many_files_hash_in_parallel_like_sha256sum() {
    let t = tempfile::tempdir().unwrap();
    for i in 0..2000 {
        write(
            &t.path().join(format!("d{}/e{}/f{i}", i % 7, i % 13)),
            format!("content {i}\n").as_bytes(),
        );
    }
    let tree = digest::hash_tree(t.path(), &opts()).unwrap();
    assert_eq!(tree.files().count(), 2000);
    for (p, sha) in tree.files() {
        let i: usize = p
            .to_str()
            .unwrap()
            .rsplit("/f")
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            hex::encode(sha),
            sha256_hex(format!("content {i}\n").as_bytes())
        );
    }
}

/// Files of 1 MiB and more are hashed through mmap windows, smaller ones
/// through read: both must give what sha256sum and git give, at the window
/// edges too.
#[test]
fn large_files_hash_like_sha256sum_and_git() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let sizes = [(1 << 20) - 1, 1 << 20, (16 << 20) + 1, (33 << 20) + 4097];
    for (i, n) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..*n)
            .map(|k: usize| (k.wrapping_mul(31) ^ i) as u8)
            .collect();
        std::fs::write(d.join(format!("f{i}")), &data).unwrap();
    }
    git(d, &["init", "-q"]);
    git(d, &["add", "-A"]);
    let expected_tree = git(d, &["write-tree"]);
    let tree = digest::hash_tree(
        d,
        &WalkOptions {
            excludes: vec![".git/**".into()],
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(tree.git_tree().unwrap(), expected_tree);
    let out = Command::new("sha256sum")
        .current_dir(d)
        .args(["f0", "f1", "f2", "f3"])
        .output()
        .unwrap();
    let sums = String::from_utf8(out.stdout).unwrap();
    for (path, sha) in tree.files() {
        let want = format!("{}  {}", hex::encode(sha), path.encoded().0);
        assert!(sums.lines().any(|l| l == want), "{want} not in\n{sums}");
    }
    assert_eq!(tree.files().count(), 4);
}

/// The in-toto `dirHash` equals what the spec defines it as: coreutils'
/// sha256sum over the sorted file list, here on names with spaces, UTF-8,
/// dots and dashes that sort differently from path components, and with
/// links, empty directories and an executable that must not count.
#[test]
fn dir_hash_equals_the_specs_sha256sum_pipeline() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    tricky_tree(d);
    write(&d.join("with space/na\u{ef}ve.txt"), b"utf-8\n");
    let o = Command::new("sh")
        .current_dir(d)
        .arg("-c")
        // The spec's `find . -type f | cut -c3- | LC_ALL=C sort | xargs -r
        // sha256sum | sha256sum`, NUL-separated so that spaces survive.
        .arg("find . -type f -printf '%P\\0' | LC_ALL=C sort -z | xargs -0r sha256sum | sha256sum | cut -d' ' -f1")
        .output()
        .unwrap();
    assert!(o.status.success());
    let expected = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let tree = digest::hash_tree(d, &WalkOptions::default()).unwrap();
    assert_eq!(tree.dir_hash().unwrap(), expected);
    // The CLI prints the same.
    let mut c = common::provenant(d);
    c.args(["digest", "--dirhash", "."]);
    let r = common::run(c).ok();
    assert_eq!(r.stdout, format!("{expected}  .\n"));
}
