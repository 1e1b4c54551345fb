//! Trust between stages: stage one signs a source tarball; stage two's
//! init-container gate (`provenant snapshot --require`) verifies it against
//! a policy before the build may start, and stage two's attestation records
//! the verified upstream attestation. Every way the chain can be broken
//! stops stage two with the right exit code and message.
mod common;

use std::path::Path;

use common::*;

/// Stage one: a source tree packed into source.tar, attested by the
/// source stage's key (`provenant run`).
fn stage_one(d: &Path, key: &str, builder_id: &str) {
    write(&d.join("src/main.c"), b"int main(void) { return 0; }\n");
    write(&d.join("src/lib/util.h"), b"#define UTIL 1\n");
    let mut c = provenant(d);
    c.args([
        "run",
        "--material",
        "src",
        "--product",
        "source.tar",
        "--key",
        &format!("{key}.key"),
        "-o",
        "source.tar.intoto.jsonl",
        "--builder-id",
        builder_id,
        "--",
        "tar",
        "--mtime=@0",
        "-cf",
        "source.tar",
        "src",
    ]);
    run(c).ok();
}

fn policy(d: &Path, key: &str, extra: &str) {
    write(
        &d.join("policy.yaml"),
        format!(
            "version: 1\nkeys:\n  - path: {key}.pub\nbuilderIds:\n  - https://ci.example.com/source/*\nsubjects:\n  - source.tar\nmaterials:\n  - name: src/main.c\nmaxAge: 1h\n{extra}"
        )
        .as_bytes(),
    );
}

/// Stage two's init container.
fn gate(d: &Path, require: &str) -> Run {
    let mut c = provenant(d);
    c.args([
        "snapshot",
        "--state",
        "state",
        "--require",
        require,
        "--policy",
        "policy.yaml",
        "--material",
        "source.tar",
        "--workspace",
        "ws",
    ]);
    std::fs::create_dir_all(d.join("ws")).unwrap();
    run(c)
}

/// Stage two's init container for the directory input `dir`, its snapshot
/// into `state`.
fn gate_dir(d: &Path, dir: &str, state: &str) -> Run {
    let mut c = provenant(d);
    c.args([
        "snapshot",
        "--state",
        state,
        "--require",
        dir,
        "--policy",
        "policy.yaml",
        "--material",
        dir,
    ]);
    run(c)
}

fn setup() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    keygen(t.path(), "source", "ecdsa-p256");
    keygen(t.path(), "build", "ed25519");
    keygen(t.path(), "mallory", "ecdsa-p256");
    t
}

#[test]
fn a_vouched_input_passes_and_is_chained() {
    let t = setup();
    let d = t.path();
    stage_one(d, "source", "https://ci.example.com/source/main");
    policy(d, "source", "");
    let r = gate(d, "source.tar").ok();
    assert!(r.stderr.contains("vouched for"), "{}", r.stderr);
    // Stage two builds and signs; its provenance lists the upstream attestation.
    write(&d.join("done"), b"0");
    write(&d.join("ws/app"), b"built");
    let mut c = provenant(d);
    c.args([
        "record",
        "--state",
        "state",
        "--key",
        "build.key",
        "--completion",
        "marker:done",
        "-o",
        "app.intoto.jsonl",
    ]);
    run(c).ok();
    let st = statement_of(&d.join("app.intoto.jsonl"));
    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let upstream = deps
        .iter()
        .find(|x| x["name"] == "attestation:source.tar")
        .unwrap_or_else(|| panic!("{deps:?}"));
    let att_bytes = std::fs::read(d.join("source.tar.intoto.jsonl")).unwrap();
    assert_eq!(upstream["digest"]["sha256"], sha256_hex(&att_bytes));
    // The next stage can verify stage two with its own policy.
    write(
        &d.join("policy2.yaml"),
        b"version: 1\nkeys:\n  - path: build.pub\nmaterials:\n  - name: attestation:source.tar\n",
    );
    let mut c = provenant(d);
    c.args(["verify", "--policy", "policy2.yaml", "app.intoto.jsonl"]);
    run(c).ok();
}

#[test]
fn a_tampered_source_is_refused() {
    let t = setup();
    let d = t.path();
    stage_one(d, "source", "https://ci.example.com/source/main");
    policy(d, "source", "");
    std::fs::OpenOptions::new()
        .append(true)
        .open(d.join("source.tar"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"evil"))
        .unwrap();
    gate(d, "source.tar").fails(
        5,
        "source.tar: the attestation does not vouch for this input: its sha256 is",
    );
    assert!(
        !d.join("state/snapshot.json").exists(),
        "the builder must not get a snapshot"
    );
}

#[test]
fn an_untrusted_signer_is_refused() {
    let t = setup();
    let d = t.path();
    stage_one(d, "mallory", "https://ci.example.com/source/main");
    policy(d, "source", "");
    gate(d, "source.tar").fails(4, "no signature");
}

#[test]
fn a_wrong_builder_is_refused() {
    let t = setup();
    let d = t.path();
    stage_one(d, "source", "https://laptop.example.com/alice");
    policy(d, "source", "");
    gate(d, "source.tar").fails(5, "predicate.runDetails.builder.id: expected one of [\"https://ci.example.com/source/*\"], got \"https://laptop.example.com/alice\"");
}

#[test]
fn a_stale_attestation_is_refused() {
    let t = setup();
    let d = t.path();
    stage_one(d, "source", "https://ci.example.com/source/main");
    write(
        &d.join("policy.yaml"),
        b"version: 1\nkeys:\n  - path: source.pub\nmaxAge: 1s\n",
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    gate(d, "source.tar").fails(
        5,
        "predicate.runDetails.metadata.finishedOn: expected within 1s of now",
    );
}

#[test]
fn an_attestation_for_something_else_is_refused() {
    let t = setup();
    let d = t.path();
    stage_one(d, "source", "https://ci.example.com/source/main");
    policy(d, "source", "");
    write(&d.join("other.tar"), b"not the attested tarball");
    gate(d, "other.tar=source.tar.intoto.jsonl").fails(
        5,
        "other.tar: the attestation does not vouch for this input",
    );
    // A FIFO in the attested file's place: named for what it is (and
    // never opened, so the gate does not wait for a writer).
    nix::unistd::mkfifo(&d.join("pipe.tar"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    gate(d, "pipe.tar=source.tar.intoto.jsonl").fails(
        5,
        "pipe.tar: the attestation does not vouch for this input: it is a fifo, not a regular file",
    );
    // No attestation at all.
    gate(d, "other.tar").fails(3, "other.tar: no attestation found (looked for other.tar.intoto.jsonl, other.tar.sigstore.json)");
}

#[test]
fn a_directory_input_is_checked_file_by_file() {
    let t = setup();
    let d = t.path();
    write(&d.join("src/a.c"), b"a");
    write(&d.join("src/sub/b.c"), b"b");
    let mut c = provenant(d);
    c.args([
        "attest",
        "--product",
        "src",
        "--key",
        "source.key",
        "-o",
        "src.intoto.jsonl",
    ]);
    run(c).ok();
    write(
        &d.join("policy.yaml"),
        // `attest` observed no build, so its statement has no exit status:
        // only `exitCode: any` accepts that.
        b"version: 1\nkeys:\n  - path: source.pub\nexitCode: any\n",
    );
    gate_dir(d, "src", "state").ok();
    write(&d.join("src/sub/injected.c"), b"evil");
    gate_dir(d, "src", "state2").fails(
        5,
        "1 difference(s) from the attestation (e.g. sub/injected.c is not a subject with that content)",
    );
    // The snapshot's --exclude and --on-error shape what it records, never
    // what the gate verifies: an excluded file in a required input is
    // still a difference, and an unreadable one still fails the gate
    // (mutation shard 1/40's recheck: deleting the gate's own `excludes`
    // or `on_error` went unnoticed).
    let mut c = provenant(d);
    c.args([
        "snapshot",
        "--state",
        "state3",
        "--require",
        "src",
        "--policy",
        "policy.yaml",
        "--material",
        "src",
        "--exclude",
        "**/injected.c",
        "--on-error",
        "record",
    ]);
    run(c).fails(
        5,
        "1 difference(s) from the attestation (e.g. sub/injected.c is not a subject with that content)",
    );
}

/// Stage one attests a whole output directory as one subject, its in-toto
/// dirHash; stage two's gate accepts the directory as it is, and refuses
/// it once one byte of one file changed.
#[test]
fn a_directory_vouched_for_by_its_dirhash() {
    let t = setup();
    let d = t.path();
    write(&d.join("src/main.c"), b"int main(void) { return 0; }\n");
    write(&d.join("src/lib/util.h"), b"#define UTIL 1\n");
    let mut c = provenant(d);
    c.args([
        "run",
        "--material",
        "src",
        "--product",
        "dist",
        "--products-as",
        "dirhash",
        "--key",
        "source.key",
        "-o",
        "dist.intoto.jsonl",
        "--builder-id",
        "https://ci.example.com/source/main",
        "--",
        "sh",
        "-c",
        "mkdir -p dist/lib && cp src/main.c dist/ && cp src/lib/util.h dist/lib/",
    ]);
    run(c).ok();
    let st = statement_of(&d.join("dist.intoto.jsonl"));
    assert_eq!(st["subject"].as_array().unwrap().len(), 1, "{st}");
    assert_eq!(st["subject"][0]["name"], "dist");
    write(
        &d.join("policy.yaml"),
        b"version: 1\nkeys:\n  - path: source.pub\nbuilderIds:\n  - https://ci.example.com/source/*\nsubjects:\n  - dist\n",
    );
    let r = gate_dir(d, "dist", "state").ok();
    assert!(r.stderr.contains("vouched for"), "{}", r.stderr);
    write(&d.join("dist/lib/util.h"), b"#define UTIL 2\n");
    gate_dir(d, "dist", "state2").fails(
        5,
        "dist: the attestation does not vouch for this input: its dirHash is",
    );
}

/// Stage one attests `src` per file; the stage between tampers with it in
/// every way a directory can differ, and the gate refuses each, without
/// hanging on a FIFO or following a link.
#[test]
fn the_gate_checks_a_directory_as_a_whole() {
    let t = setup();
    let d = t.path();
    let fresh = |d: &Path| {
        let _ = std::fs::remove_dir_all(d.join("src"));
        write(&d.join("src/a.c"), b"a");
        write(&d.join("src/sub/b.c"), b"b");
    };
    fresh(d);
    run(attest_cmd(d, "source.key", &["src"], "src.intoto.jsonl")).ok();
    write(
        &d.join("policy.yaml"),
        b"version: 1\nkeys:\n  - path: source.pub\nallowFailed: true\n",
    );
    gate_dir(d, "src", "ok").ok();
    type Tamper = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "attested file replaced by a link to outside content",
            Box::new(|d: &Path| {
                std::fs::remove_file(d.join("src/sub/b.c")).unwrap();
                write(&d.join("outside/b.c"), b"b");
                std::os::unix::fs::symlink(d.join("outside/b.c"), d.join("src/sub/b.c")).unwrap();
            }),
            "sub/b.c (symlink:",
        ),
        (
            "an extra link to /etc",
            Box::new(|d: &Path| std::os::unix::fs::symlink("/etc", d.join("src/etc")).unwrap()),
            "etc (symlink:/etc) is not in the attestation",
        ),
        (
            "an extra FIFO",
            Box::new(|d: &Path| {
                nix::unistd::mkfifo(&d.join("src/pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap()
            }),
            "pipe (special:fifo) is not in the attestation",
        ),
        (
            "an attested file deleted",
            Box::new(|d: &Path| std::fs::remove_file(d.join("src/a.c")).unwrap()),
            "a.c is attested but missing here",
        ),
        (
            "an extra empty directory",
            Box::new(|d: &Path| std::fs::create_dir(d.join("src/.skip-tests")).unwrap()),
            ".skip-tests (special:empty-dir) is not in the attestation",
        ),
    ];
    for (i, (what, tamper, needle)) in cases.iter().enumerate() {
        fresh(d);
        tamper(d);
        let r = gate_dir(d, "src", &format!("state{i}"));
        assert_eq!(r.code, 5, "{what}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{what}: {}", r.stderr);
        assert!(
            !d.join(format!("state{i}/snapshot.json")).exists(),
            "{what}"
        );
    }
    // The required directory itself reached through a link: refused.
    fresh(d);
    std::os::unix::fs::symlink(d.join("src"), d.join("src-link")).unwrap();
    std::fs::copy(d.join("src.intoto.jsonl"), d.join("src-link.intoto.jsonl")).unwrap();
    let r = gate_dir(d, "src-link", "state-link");
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    // The attestation file a link to somewhere else: refused, not followed.
    std::fs::rename(d.join("src.intoto.jsonl"), d.join("elsewhere.jsonl")).unwrap();
    std::os::unix::fs::symlink(d.join("elsewhere.jsonl"), d.join("src.intoto.jsonl")).unwrap();
    let r = gate_dir(d, "src", "state-attlink");
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
}

/// Security review: an attestation vouches for a whole product root, never
/// for a subdirectory of one. Otherwise the next stage could be handed a
/// slice of an attested output (its `bin/`) with the siblings that belong
/// to it (its `policy/`) dropped, and the gate would pass it.
#[test]
fn a_slice_of_an_attested_output_is_not_vouched_for() {
    let t = setup();
    let d = t.path();
    write(&d.join("out/bin/tool"), b"tool");
    write(&d.join("out/policy/allow.json"), b"{}");
    run(attest_cmd(d, "source.key", &["out"], "out.intoto.jsonl")).ok();
    write(
        &d.join("policy.yaml"),
        b"version: 1\nkeys:\n  - path: source.pub\nallowFailed: true\n",
    );
    gate_dir(d, "out", "whole").ok();
    write(&d.join("bin/tool"), b"tool");
    std::fs::copy(d.join("out.intoto.jsonl"), d.join("bin.intoto.jsonl")).unwrap();
    let r = gate_dir(d, "bin", "slice");
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("no subject names its files with that content"),
        "{}",
        r.stderr
    );
    assert!(!d.join("slice/snapshot.json").exists());
    // A statement whose subjects were chosen (`--subject 'bin/**'`)
    // attests nothing beside bin/: the directory drops nothing attested.
    let mut c = attest_cmd(d, "source.key", &["out"], "bin.intoto.jsonl");
    c.args(["--subject", "bin/**"]);
    run(c).ok();
    gate_dir(d, "bin", "chosen").ok();
    // Nested roots do not open a way in: `out/bin` lies inside the root
    // `out`, under which `policy/allow.json` is attested too.
    let mut c = attest_cmd(
        d,
        "source.key",
        &["out", "out/bin/tool"],
        "bin.intoto.jsonl",
    );
    c.args(["--subject", "**"]);
    run(c).ok();
    let r = gate_dir(d, "bin", "nested");
    assert_eq!(r.code, 5, "{}", r.stderr);
}

/// Links, FIFOs and empty directories the stage before recorded are
/// vouched for like files: same kind (and link target) passes, another
/// fails. Both per-file and dirHash attestations.
#[test]
fn recorded_links_and_empty_directories_pass_the_gate() {
    let t = setup();
    let d = t.path();
    write(
        &d.join("policy.yaml"),
        b"version: 1\nkeys:\n  - path: source.pub\nallowFailed: true\n",
    );
    for (n, mode) in ["files", "dirhash"].iter().enumerate() {
        let src = format!("src{n}");
        write(&d.join(format!("{src}/a.c")), b"a");
        std::fs::create_dir_all(d.join(format!("{src}/empty"))).unwrap();
        std::os::unix::fs::symlink("a.c", d.join(format!("{src}/latest"))).unwrap();
        let mut c = provenant(d);
        c.args([
            "attest",
            "--product",
            &src,
            "--products-as",
            mode,
            "--key",
            "source.key",
            "-o",
        ])
        .arg(format!("{src}.intoto.jsonl"));
        run(c).ok();
        gate_dir(d, &src, &format!("ok{n}")).ok();
        std::fs::remove_file(d.join(format!("{src}/latest"))).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join(format!("{src}/latest"))).unwrap();
        let r = gate_dir(d, &src, &format!("bad{n}"));
        assert_eq!(r.code, 5, "{mode}: {}", r.stderr);
        assert!(
            r.stderr.contains("latest (symlink:/etc/passwd)"),
            "{mode}: {}",
            r.stderr
        );
    }
}

/// Security review: a link target that is not UTF-8 is percent-encoded and
/// marked by its own annotation, so the byte 0xFF and a literal `%FF`
/// target never pass for each other, and a plain name beside an encoded
/// target is still found.
#[test]
fn an_encoded_link_target_is_not_a_literal_one() {
    use std::os::unix::ffi::OsStrExt;
    let t = setup();
    let d = t.path();
    write(
        &d.join("policy.yaml"),
        b"version: 1\nkeys:\n  - path: source.pub\nallowFailed: true\n",
    );
    let byte = std::ffi::OsStr::from_bytes(b"\xff");
    for (n, (attested, swapped)) in [
        (byte, std::ffi::OsStr::new("%FF")),
        (std::ffi::OsStr::new("%FF"), byte),
    ]
    .into_iter()
    .enumerate()
    {
        let src = format!("links{n}");
        write(&d.join(format!("{src}/a.c")), b"a");
        std::os::unix::fs::symlink(attested, d.join(format!("{src}/lnk"))).unwrap();
        run(attest_cmd(
            d,
            "source.key",
            &[&src],
            &format!("{src}.intoto.jsonl"),
        ))
        .ok();
        gate_dir(d, &src, &format!("lok{n}")).ok();
        std::fs::remove_file(d.join(format!("{src}/lnk"))).unwrap();
        std::os::unix::fs::symlink(swapped, d.join(format!("{src}/lnk"))).unwrap();
        let r = gate_dir(d, &src, &format!("lbad{n}"));
        assert_eq!(r.code, 5, "{n}: {}", r.stderr);
        assert!(r.stderr.contains("lnk (symlink:%FF"), "{n}: {}", r.stderr);
    }
}

/// The gate hashes a required input once and the snapshot records exactly
/// what was verified: a file swapped after the check is not recorded as
/// the verified material, and where a material overlaps a required input
/// the change is caught.
#[test]
fn an_input_swapped_after_the_gate_is_not_recorded() {
    let t = setup();
    let d = t.path();
    write(&d.join("src/a.c"), b"a");
    let mut c = provenant(d);
    c.args([
        "attest",
        "--product",
        "src",
        "--key",
        "source.key",
        "-o",
        "src.intoto.jsonl",
    ]);
    run(c).ok();
    write(
        &d.join("policy.yaml"),
        b"version: 1\nkeys:\n  - path: source.pub\nallowFailed: true\n",
    );
    let swap = |state: &str, material: &str| {
        write(&d.join("src/a.c"), b"a");
        let flag = d.join(format!("{state}.pause"));
        let mut c = provenant(d);
        c.args([
            "snapshot",
            "--state",
            state,
            "--require",
            "src",
            "--policy",
            "policy.yaml",
            "--material",
            material,
        ])
        .env("PROVENANT_TEST_PAUSE_AFTER_GATE", &flag)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        let child = c.spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !flag.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the gate never finished"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // The gate has verified src; swap the file before the snapshot.
        write(&d.join("src/a.c"), b"evil");
        std::fs::remove_file(&flag).unwrap();
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    // The material is the required input: the verified bytes are recorded.
    let r = swap("same", "src");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let snap = read_json(&d.join("same/snapshot.json"));
    assert_eq!(
        snap["materials"][0]["entries"][0]["sha256"],
        sha256_hex(b"a"),
        "{snap}"
    );
    // The material contains the required input: the second read differs.
    write(&d.join("other.txt"), b"x");
    let r = swap("outer", ".");
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("a.c changed between the gate's check and the snapshot"),
        "{}",
        r.stderr
    );
    assert!(!d.join("outer/snapshot.json").exists());
}

/// `name` (a small file) and its attestation `name.intoto.jsonl` from a
/// build that exited 0, signed with `key` by the source stage's builder.
fn attested_file(d: &Path, name: &str, key: &str) {
    write(&d.join(name), format!("contents of {name}\n").as_bytes());
    let mut c = provenant(d);
    c.args([
        "run",
        "--product",
        name,
        "--key",
        &format!("{key}.key"),
        "-o",
        &format!("{name}.intoto.jsonl"),
        "--builder-id",
        "https://ci.example.com/source/main",
        "--",
        "true",
    ]);
    run(c).ok();
}

/// Stage two's gate over several inputs, into the state directory `state`.
fn gate_many(d: &Path, state: &str, inputs: &[&str]) -> Run {
    let mut c = provenant(d);
    c.args(["snapshot", "--state", state, "--policy", "many.yaml"]);
    for i in inputs {
        c.args(["--require", i]);
    }
    c.args(["--workspace", "ws"]);
    std::fs::create_dir_all(d.join("ws")).unwrap();
    run(c)
}

/// Several `--require` inputs: every one is checked, wherever the one that
/// fails stands, and the build never starts then (no snapshot); when all
/// pass, each is recorded.
#[test]
fn every_required_input_is_checked() {
    let t = setup();
    let d = t.path();
    write(
        &d.join("many.yaml"),
        b"version: 1\nkeys:\n  - path: source.pub\nbuilderIds:\n  - https://ci.example.com/source/*\n",
    );
    for name in ["a.txt", "b.txt", "changed.txt"] {
        attested_file(d, name, "source");
    }
    attested_file(d, "forged.txt", "mallory");
    write(&d.join("bare.txt"), b"nobody attested this\n");
    write(&d.join("changed.txt"), b"changed after it was attested\n");

    let r = gate_many(d, "all-good", &["a.txt", "b.txt"]).ok();
    assert_eq!(
        r.stderr
            .matches("input vouched for by the previous stage")
            .count(),
        2,
        "{}",
        r.stderr
    );
    let snap = read_json(&d.join("all-good/snapshot.json"));
    let names: Vec<&str> = snap["references"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    assert_eq!(names, ["attestation:a.txt", "attestation:b.txt"], "{snap}");

    let cases: &[(&[&str], i32, &str)] = &[
        // Last, first, in the middle: a key the policy does not trust.
        (
            &["a.txt", "b.txt", "forged.txt"],
            exit::INVALID,
            "forged.txt: forged.txt.intoto.jsonl: no signature verifies with the trusted key(s) source.pub (",
        ),
        (
            &["forged.txt", "a.txt"],
            exit::INVALID,
            "forged.txt: forged.txt.intoto.jsonl: no signature verifies",
        ),
        (
            &["a.txt", "forged.txt", "b.txt"],
            exit::INVALID,
            "forged.txt: forged.txt.intoto.jsonl: no signature verifies",
        ),
        // No attestation at all.
        (
            &["a.txt", "bare.txt"],
            exit::CANNOT_CHECK,
            "bare.txt: no attestation found (looked for bare.txt.intoto.jsonl",
        ),
        // Attested, then changed.
        (
            &["changed.txt", "b.txt"],
            exit::POLICY,
            "changed.txt: the attestation does not vouch for this input",
        ),
    ];
    for (i, (inputs, code, needle)) in cases.iter().enumerate() {
        let state = format!("state-{i}");
        gate_many(d, &state, inputs).fails(*code, needle);
        assert!(
            !d.join(&state).join("snapshot.json").exists(),
            "{inputs:?}: the build must not start"
        );
    }
}
