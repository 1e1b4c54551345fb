//! Output paths that are not regular files (issue: `-o /dev/null` as root
//! replaced the machine's /dev/null with a regular file). For every command
//! and output flag that writes a file, four targets: a private character
//! device (made with mknod, as /dev/null is), a link to /proc/self/fd/1 (what
//! /dev/stdout is), a FIFO with a reader waiting, and `-`. Afterwards the node
//! is of the same kind, and the reader (or our stdout) received the bytes.
mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

#[derive(Debug, Clone, Copy)]
enum Target {
    CharDevice,
    LinkToStdout,
    Fifo,
    Dash,
}

const TARGETS: [Target; 4] = [
    Target::CharDevice,
    Target::LinkToStdout,
    Target::Fifo,
    Target::Dash,
];

/// (major, minor) of /dev/null.
const NULL_DEV: (u64, u64) = (1, 3);

fn makedev(major: u64, minor: u64) -> u64 {
    nix::sys::stat::makedev(major, minor)
}

/// Makes the target at `path`; false when this machine forbids mknod
/// (not root, or no CAP_MKNOD), which the caller reports.
fn plant(path: &Path, t: Target) -> bool {
    match t {
        Target::CharDevice => {
            let r = nix::sys::stat::mknod(
                path,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                makedev(NULL_DEV.0, NULL_DEV.1),
            );
            if let Err(e) = r {
                eprintln!(
                    "SKIPPED (loudly): cannot mknod a character device here ({e}); CI runs as root and does test it"
                );
                return false;
            }
        }
        Target::LinkToStdout => std::os::unix::fs::symlink("/proc/self/fd/1", path).unwrap(),
        Target::Fifo => {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap()
        }
        Target::Dash => {}
    }
    true
}

fn arg(path: &Path, t: Target) -> PathBuf {
    match t {
        Target::Dash => PathBuf::from("-"),
        _ => path.to_path_buf(),
    }
}

/// Reads the FIFO to its end on a thread, so the writer finds a reader.
fn reader(path: &Path, t: Target) -> Option<std::thread::JoinHandle<Vec<u8>>> {
    if !matches!(t, Target::Fifo) {
        return None;
    }
    let p = path.to_path_buf();
    Some(std::thread::spawn(move || std::fs::read(&p).unwrap()))
}

/// The node is what it was, and the bytes went where they should.
fn check(path: &Path, t: Target, r: &Run, fifo: Option<Vec<u8>>, expect: &dyn Fn(&[u8])) {
    assert_eq!(
        r.code, 0,
        "{t:?}: stdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    match t {
        Target::CharDevice => {
            let m = std::fs::symlink_metadata(path).unwrap();
            assert!(
                m.file_type().is_char_device(),
                "{t:?}: {path:?} is no longer a character device"
            );
            assert_eq!(m.rdev(), makedev(NULL_DEV.0, NULL_DEV.1));
        }
        Target::LinkToStdout => {
            let m = std::fs::symlink_metadata(path).unwrap();
            assert!(m.file_type().is_symlink(), "{t:?}: the link was replaced");
            assert_eq!(
                std::fs::read_link(path).unwrap(),
                Path::new("/proc/self/fd/1")
            );
            expect(r.stdout.as_bytes());
        }
        Target::Fifo => {
            let m = std::fs::symlink_metadata(path).unwrap();
            assert!(m.file_type().is_fifo(), "{t:?}: the FIFO was replaced");
            expect(&fifo.expect("reader"));
        }
        Target::Dash => {
            assert!(!Path::new("-").exists());
            expect(r.stdout.as_bytes());
        }
    }
}

/// Output that holds one DSSE envelope line (possibly among others).
fn has_envelope(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let found = text.lines().any(|l| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
            v["payloadType"] == "application/vnd.in-toto+json" && v["signatures"].is_array()
        })
    });
    assert!(found, "no DSSE envelope line in:\n{text}");
}

fn has_bundle(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    assert!(
        text.contains("application/vnd.dev.sigstore.bundle.v0.3+json")
            && text.contains("dsseEnvelope"),
        "no Sigstore bundle in:\n{text}"
    );
}

fn setup(d: &Path) {
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
}

/// One case: plant `t` at `dir/name`, run what `cmd` builds with the
/// target's argument, check.
fn case(
    d: &Path,
    name: &str,
    t: Target,
    cmd: impl FnOnce(&Path) -> Command,
    expect: &dyn Fn(&[u8]),
) {
    let path = d.join(name);
    let _ = std::fs::remove_file(&path);
    if !plant(&path, t) {
        return;
    }
    let fifo = reader(&path, t);
    let r = run(cmd(&arg(&path, t)));
    let got = fifo.map(|h| h.join().unwrap());
    check(&path, t, &r, got, expect);
}

#[test]
fn attest_outputs_to_devices_fifos_links_and_stdout() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    for target in TARGETS {
        case(
            d,
            "out.intoto.jsonl",
            target,
            |o| {
                let mut c = provenant(d);
                c.args([
                    "attest",
                    "--key",
                    "k.key",
                    "--material",
                    "src",
                    "--product",
                    "out",
                    "-o",
                ])
                .arg(o);
                c
            },
            &has_envelope,
        );
        case(
            d,
            "out.sigstore.json",
            target,
            |o| {
                let mut c = provenant(d);
                c.args([
                    "attest",
                    "--key",
                    "k.key",
                    "--product",
                    "out",
                    "-o",
                    "a.intoto.jsonl",
                    "--bundle",
                ])
                .arg(o);
                c
            },
            &has_bundle,
        );
    }
}

#[test]
fn in_toto_link_to_a_planted_node_is_written_in_place() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    let key_id = {
        let mut c = provenant(d);
        c.args([
            "attest",
            "--key",
            "k.key",
            "--product",
            "out",
            "-o",
            "probe.jsonl",
        ]);
        run(c).ok();
        read_json(&d.join("probe.jsonl"))["signatures"][0]["keyid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    std::fs::create_dir_all(d.join("links")).unwrap();
    let name = format!("links/build.{}.link", &key_id[..8]);
    for target in [Target::CharDevice, Target::LinkToStdout, Target::Fifo] {
        case(
            d,
            &name,
            target,
            |_| {
                let mut c = provenant(d);
                c.args([
                    "attest",
                    "--key",
                    "k.key",
                    "--product",
                    "out",
                    "-o",
                    "a.jsonl",
                    "--in-toto-link",
                    "links",
                    "--step-name",
                    "build",
                ]);
                c
            },
            &has_envelope,
        );
    }
}

#[test]
fn run_outputs_to_devices_fifos_links_and_stdout() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    for target in TARGETS {
        case(
            d,
            "run.intoto.jsonl",
            target,
            |o| {
                let mut c = provenant(d);
                c.args(["run", "--key", "k.key", "--product", "out", "-o"])
                    .arg(o)
                    .args(["--", "true"]);
                c
            },
            &has_envelope,
        );
        case(
            d,
            "run.sigstore.json",
            target,
            |o| {
                let mut c = provenant(d);
                c.args([
                    "run",
                    "--key",
                    "k.key",
                    "--product",
                    "out",
                    "-o",
                    "r.jsonl",
                    "--bundle",
                ])
                .arg(o)
                .args(["--", "true"]);
                c
            },
            &has_bundle,
        );
    }
}

#[test]
fn record_output_to_devices_fifos_links_and_stdout() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    write(&d.join("ws/source/a.c"), b"int a;\n");
    snapshot(d, &[]);
    // The build is over before the sidecar starts: the marker is there.
    write(&d.join("ws/product.bin"), b"built");
    write(&d.join("ws/.done"), b"0\n");
    for target in TARGETS {
        case(
            d,
            "rec.intoto.jsonl",
            target,
            |o| {
                let mut c = provenant(d);
                c.args([
                    "record",
                    "--state",
                    "state",
                    "--key",
                    "k.key",
                    "--completion",
                    "marker:ws/.done",
                    "-o",
                ])
                .arg(o);
                c
            },
            &has_envelope,
        );
        // With no file to sit beside, the bundle goes to the state directory.
        let bundle = d.join("state/provenance.sigstore.json");
        assert!(bundle.is_file(), "{target:?}");
        std::fs::remove_file(bundle).unwrap();
    }
}

#[test]
fn snapshot_state_file_on_a_planted_node_is_written_in_place() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    write(&d.join("ws/source/a.c"), b"int a;\n");
    std::fs::create_dir_all(d.join("state")).unwrap();
    for target in [Target::CharDevice, Target::Fifo] {
        case(
            d,
            "state/snapshot.json",
            target,
            |_| {
                let mut c = provenant(d);
                c.args([
                    "snapshot",
                    "--state",
                    "state",
                    "--material",
                    "ws/source",
                    "--workspace",
                    "ws",
                ]);
                c
            },
            &|b: &[u8]| {
                let v: serde_json::Value = serde_json::from_slice(b).unwrap();
                assert_eq!(v["version"], 1);
            },
        );
    }
}

#[test]
fn keygen_refuses_a_device_or_fifo_prefix_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    for (name, target) in [("dev", Target::CharDevice), ("fifo", Target::Fifo)] {
        let p = d.join(name);
        if !plant(&p, target) {
            continue;
        }
        let mut c = provenant(d);
        c.args(["keygen", "--unencrypted", "-o"]).arg(&p);
        run(c).fails(3, "--output-prefix names a directory, device, FIFO");
        assert!(!d.join(format!("{name}.key")).exists());
        assert!(!d.join(format!("{name}.pub")).exists());
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert!(m.file_type().is_char_device() || m.file_type().is_fifo());
    }
    // All or nothing: with the .pub already there, no .key appears either.
    write(&d.join("k2.pub"), b"someone else's");
    let mut c = provenant(d);
    c.args(["keygen", "--unencrypted", "-o", "k2"]);
    run(c).fails(3, "k2.pub already exists");
    assert!(
        !d.join("k2.key").exists(),
        "an orphan private key was written"
    );
    assert_eq!(std::fs::read(d.join("k2.pub")).unwrap(), b"someone else's");
    // The prefix is a prefix: release.v2 gives release.v2.key, LF endings.
    let mut c = provenant(d);
    c.args(["keygen", "--unencrypted", "-o", "release.v2"]);
    run(c).ok();
    for f in ["release.v2.key", "release.v2.pub"] {
        let b = std::fs::read(d.join(f)).unwrap();
        assert!(!b.contains(&b'\r'), "{f} has CR line endings");
    }
}

#[test]
fn a_link_to_a_regular_file_is_refused_not_replaced() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    write(&d.join("precious"), b"do not touch");
    std::os::unix::fs::symlink(d.join("precious"), d.join("out.jsonl")).unwrap();
    let mut c = provenant(d);
    c.args([
        "attest",
        "--key",
        "k.key",
        "--product",
        "out",
        "-o",
        "out.jsonl",
    ]);
    run(c).fails(3, "is a symbolic link to a regular file");
    assert_eq!(std::fs::read(d.join("precious")).unwrap(), b"do not touch");
    assert!(std::fs::symlink_metadata(d.join("out.jsonl"))
        .unwrap()
        .file_type()
        .is_symlink());
}

/// The machine's own /dev/null is still what it must be after the tests of
/// this file ran (scripts/test.sh checks it again after the whole suite).
#[test]
fn dev_null_is_still_a_character_device() {
    let m = std::fs::symlink_metadata("/dev/null").unwrap();
    assert!(
        m.file_type().is_char_device(),
        "/dev/null is not a character device"
    );
    assert_eq!(m.rdev(), makedev(NULL_DEV.0, NULL_DEV.1));
}
