//! Pod mode at process level: `provenant snapshot` then `provenant record`
//! beside a "builder" (this test), with the real binary.
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Sidecar {
    child: Child,
    stderr: std::sync::mpsc::Receiver<String>,
    seen: String,
}

fn spawn_record(d: &Path, args: &[&str]) -> Sidecar {
    let mut c = provenant(d);
    c.args(["record", "--state", "state", "--key", "k.key"])
        .args(args);
    spawn(c)
}

/// Starts `c` (a sidecar, however it is wrapped) with its stderr read line
/// by line.
fn spawn(mut c: std::process::Command) -> Sidecar {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Sidecar {
        child,
        stderr: rx,
        seen: String::new(),
    }
}

fn finish(mut s: Sidecar) -> Run {
    let out = s.child.wait_with_output().unwrap();
    while let Ok(line) = s.stderr.recv_timeout(Duration::from_secs(5)) {
        s.seen.push_str(&line);
        s.seen.push('\n');
    }
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: s.seen,
    }
}

fn setup(d: &Path) {
    write(
        &d.join("ws/source/main.c"),
        b"int main(void) { return 0; }\n",
    );
    write(&d.join("ws/source/lib/util.h"), b"#define UTIL 1\n");
    keygen(d, "k", "ecdsa-p256");
}

/// Waits until the sidecar logs that its watch and triggers are in place.
fn wait_ready(s: &mut Sidecar) {
    wait_for(s, "ready: watching the workspace");
}

/// Waits (60 s at most: a deadline for a hung sidecar, not a timing) until
/// the sidecar logs a line containing `needle`; returns that line.
fn wait_for(s: &mut Sidecar, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(line) = s.stderr.recv_timeout(Duration::from_millis(100)) {
            let found = line.contains(needle);
            s.seen.push_str(&line);
            s.seen.push('\n');
            if found {
                return line;
            }
        }
    }
    panic!("the sidecar never logged {needle:?}; stderr:\n{}", s.seen);
}

fn the_line(r: &Run) -> serde_json::Value {
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout must be exactly one line:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["provenantAttestation"], "v1");
    v
}

fn statement_of_line(v: &serde_json::Value) -> serde_json::Value {
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(v["envelope"]["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

fn names_and_digests(list: &serde_json::Value) -> Vec<(String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_string(),
                s["digest"]["sha256"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Security review: the marker inside the workspace is left out of the
/// products by the path the operator named, not by where a link there
/// points: a builder that makes the marker a link to its output must not
/// get that output dropped from the record.
#[test]
fn a_marker_linked_to_an_output_does_not_hide_it() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    snapshot(d, &[]);
    let mut child = spawn_record(d, &["--completion", "marker:ws/.done"]);
    wait_ready(&mut child);
    write(&d.join("ws/out/app.bin"), b"\x7fELF");
    std::os::unix::fs::symlink("out/app.bin", d.join("ws/.done")).unwrap();
    let r = finish(child);
    let st = statement_of_line(&the_line(&r));
    let names: Vec<String> = names_and_digests(&st["subject"])
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.contains(&"ws/out/app.bin".to_string()),
        "{names:?}\n{}",
        r.stderr
    );
    assert!(!names.contains(&"ws/.done".to_string()), "{names:?}");
}

#[test]
fn marker_mode_attests_what_the_builder_produced() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    snapshot(
        d,
        &[
            "--reference",
            &format!(
                "builder-image=registry.local/builder@sha256:{}",
                "b".repeat(64)
            ),
        ],
    );
    let mut child = spawn_record(d, &["--completion", "marker:done"]);
    wait_ready(&mut child);
    // The builder: writes, rewrites, renames, deletes.
    write(&d.join("ws/out/app.bin"), b"first");
    write(&d.join("ws/out/app.bin"), b"\x7fELF final");
    write(&d.join("ws/out/tmp.o"), b"obj");
    std::fs::rename(d.join("ws/out/tmp.o"), d.join("ws/out/lib.o")).unwrap();
    write(&d.join("ws/out/scratch"), b"gone");
    std::fs::remove_file(d.join("ws/out/scratch")).unwrap();
    std::fs::write(d.join("done"), b"0\n").unwrap();
    let r = finish(child);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let line = the_line(&r);
    let st = statement_of_line(&line);
    assert_eq!(
        names_and_digests(&st["subject"]),
        vec![
            ("ws/out/app.bin".to_string(), sha256_hex(b"\x7fELF final")),
            ("ws/out/lib.o".to_string(), sha256_hex(b"obj")),
        ]
    );
    let deps = names_and_digests(&st["predicate"]["buildDefinition"]["resolvedDependencies"]);
    assert_eq!(
        deps[0],
        (
            "ws/source/lib/util.h".into(),
            sha256_hex(b"#define UTIL 1\n")
        )
    );
    assert_eq!(
        deps[1],
        (
            "ws/source/main.c".into(),
            sha256_hex(b"int main(void) { return 0; }\n")
        )
    );
    assert_eq!(deps[2], ("builder-image".into(), "b".repeat(64)));
    let p = &st["predicate"];
    assert_eq!(
        p["buildDefinition"]["internalParameters"]["completion"],
        "marker"
    );
    // No downward API here, so no pod identity: none is recorded, not an
    // empty `pod` object.
    let internal: Vec<&str> = p["buildDefinition"]["internalParameters"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        internal,
        [
            "attestFailed",
            "completion",
            "materialsAs",
            "onError",
            "productsAs"
        ]
    );
    assert_eq!(p["runDetails"]["byproducts"][0]["name"], "exit-code");
    // The file in the state volume is the same envelope, and verifies.
    let file = read_json(&d.join("state/provenance.intoto.jsonl"));
    assert_eq!(file, line["envelope"]);
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "state/provenance.intoto.jsonl"]);
    run(c).ok();
    // `verify` also reads the log line (or a whole log) directly.
    std::fs::write(
        d.join("pod.log"),
        format!("some log\n{}other log\n", r.stdout),
    )
    .unwrap();
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "pod.log"]);
    let v = run(c).ok();
    assert!(v.stdout.contains("ws/out/app.bin"), "{}", v.stdout);
}

#[test]
fn inputs_changed_by_the_build_are_recorded() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    snapshot(d, &[]);
    let mut child = spawn_record(d, &["--completion", "marker:done"]);
    wait_ready(&mut child);
    write(&d.join("ws/source/main.c"), b"tampered\n");
    write(&d.join("ws/out/a"), b"a");
    std::fs::write(d.join("done"), b"").unwrap();
    let r = finish(child);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = statement_of_line(&the_line(&r));
    // Materials are the inputs as they were when the build started ...
    let deps = names_and_digests(&st["predicate"]["buildDefinition"]["resolvedDependencies"]);
    assert!(deps.contains(&(
        "ws/source/main.c".into(),
        sha256_hex(b"int main(void) { return 0; }\n")
    )));
    // ... and the change is on the record, not silently accepted. The
    // changed source is also a product (it differs from the snapshot).
    let by = &st["predicate"]["runDetails"]["byproducts"];
    let change = by
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "ws/source/main.c")
        .unwrap();
    assert_eq!(
        change["annotations"]["provenant.materialChange"],
        "modified"
    );
    assert_eq!(change["digest"]["sha256"], sha256_hex(b"tampered\n"));
    assert!(
        r.stderr.contains("the build changed its inputs"),
        "{}",
        r.stderr
    );
    // No exit code known from an empty marker: said so, never taken as 0.
    let exit: Vec<&serde_json::Value> = by
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["name"] == "exit-code")
        .collect();
    assert_eq!(exit.len(), 1, "{by}");
    assert_eq!(exit[0]["uri"], "provenant:exit-code:unknown");
    assert!(exit[0].get("content").is_none());
    assert_eq!(
        exit[0]["annotations"]["provenant.exitCodeOrigin"],
        "unknown"
    );
    assert_eq!(exit[0]["annotations"]["provenant.exitCodeSource"], "marker");
}

#[test]
fn failed_builds_are_attested_only_when_asked() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    snapshot(d, &[]);
    let mut child = spawn_record(d, &["--completion", "marker:done"]);
    wait_ready(&mut child);
    write(&d.join("ws/out/a"), b"a");
    std::fs::write(d.join("done"), b"2\n").unwrap();
    let r = finish(child);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr.contains("not attesting a failed build"),
        "{}",
        r.stderr
    );
    assert!(!d.join("state/provenance.intoto.jsonl").exists());

    std::fs::remove_file(d.join("done")).unwrap();
    let mut child = spawn_record(d, &["--completion", "marker:done", "--attest-failed"]);
    wait_ready(&mut child);
    std::fs::write(d.join("done"), b"2\n").unwrap();
    let r = finish(child);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = statement_of_line(&the_line(&r));
    assert_eq!(
        st["predicate"]["runDetails"]["byproducts"][0]["content"],
        "Mg=="
    );
    assert_eq!(
        st["predicate"]["buildDefinition"]["internalParameters"]["attestFailed"],
        true
    );
}

#[test]
fn sigterm_means_finalize_now() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    snapshot(d, &[]);
    let mut child = spawn_record(d, &["--completion", "sigterm"]);
    wait_ready(&mut child);
    write(&d.join("ws/out/image.tar"), b"layers");
    let started = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let r = finish(child);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Well within any grace period.
    assert!(started.elapsed() < Duration::from_secs(5));
    let st = statement_of_line(&the_line(&r));
    assert_eq!(
        names_and_digests(&st["subject"]),
        vec![("ws/out/image.tar".to_string(), sha256_hex(b"layers"))]
    );
    assert_eq!(
        st["predicate"]["buildDefinition"]["internalParameters"]["completion"],
        "sigterm"
    );
}

#[test]
fn reported_image_digest_is_the_subject() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    snapshot(d, &[]);
    let digest = "c".repeat(64);
    let mut child = spawn_record(
        d,
        &["--completion", "marker:done", "--tekton-results", "results"],
    );
    wait_ready(&mut child);
    write(&d.join("ws/out/layer.tar"), b"layer");
    write(
        &d.join("results/IMAGE_URL"),
        b"registry.local:5000/team/app:1.0\n",
    );
    write(
        &d.join("results/IMAGE_DIGEST"),
        format!("sha256:{digest}\n").as_bytes(),
    );
    std::fs::write(d.join("done"), b"0").unwrap();
    let r = finish(child);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = statement_of_line(&the_line(&r));
    assert_eq!(
        names_and_digests(&st["subject"]),
        vec![("registry.local:5000/team/app".to_string(), digest)]
    );
}

#[test]
fn kpack_report_and_oci_layout_are_read() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    snapshot(d, &[]);
    let a = "a".repeat(64);
    // The layout's manifest is a blob of the layout: the claim is checked
    // against it. A second manifest whose blob does not hash to its digest
    // is refused.
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;
    let b = sha256_hex(manifest);
    write(&d.join(format!("ws/layout/blobs/sha256/{b}")), manifest);
    let forged = "f".repeat(64);
    write(
        &d.join(format!("ws/layout/blobs/sha256/{forged}")),
        b"not it",
    );
    write(
        &d.join("report.toml"),
        format!("[image]\ntags = [\"reg.local/app:latest\", \"reg.local/app:v1\"]\ndigest = \"sha256:{a}\"\nmanifest-size = 1234\n\n[build]\n").as_bytes(),
    );
    write(
        &d.join("ws/layout/oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    write(
        &d.join("ws/layout/index.json"),
        format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{b}","size":7,"annotations":{{"org.opencontainers.image.ref.name":"reg.local/other:2"}}}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{forged}","size":6}}]}}"#).as_bytes(),
    );
    let mut child = spawn_record(
        d,
        &[
            "--completion",
            "marker:done",
            "--kpack-report",
            "report.toml",
            "--oci-layout",
            "ws/layout",
        ],
    );
    wait_ready(&mut child);
    std::fs::write(d.join("done"), b"0").unwrap();
    let r = finish(child);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = statement_of_line(&the_line(&r));
    assert_eq!(
        names_and_digests(&st["subject"]),
        vec![
            ("reg.local/app".to_string(), a),
            ("reg.local/other:2".to_string(), b)
        ]
    );
    // Both are marked as what they are: claims, one checked by the sidecar.
    let subject = |i: usize, k: &str| st["subject"][i]["annotations"][k].clone();
    assert_eq!(subject(0, "provenant.origin"), "claimed");
    assert_eq!(subject(0, "provenant.claimSource"), "kpack-report");
    assert_eq!(subject(0, "provenant.claimFile"), "report.toml");
    assert_eq!(subject(0, "provenant.claimCheck"), "none");
    assert_eq!(subject(1, "provenant.claimSource"), "oci-layout");
    assert_eq!(subject(1, "provenant.claimCheck"), "oci-layout");
    assert!(
        r.stderr
            .contains("manifests[1]: the blob does not hash to its digest"),
        "{}",
        r.stderr
    );
    // What the build wrote is on the record beside the claims.
    let by = st["predicate"]["runDetails"]["byproducts"]
        .as_array()
        .unwrap();
    assert!(
        by.iter().any(|b| b["name"] == "ws"
            && b["annotations"]["provenant.role"] == "observed-outputs"
            && b["digest"]["dirHash"].is_string()),
        "{by:?}"
    );
}

#[test]
fn bad_setups_fail_with_one_line() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    // `record --state STATE --key KEY --completion HOW`, then `extra`.
    let record = |state: &str, key: &str, how: &str, extra: &[&str]| {
        let mut c = provenant(d);
        c.args([
            "record",
            "--state",
            state,
            "--key",
            key,
            "--completion",
            how,
        ])
        .args(extra);
        run(c)
    };
    record("nostate", "k.key", "sigterm", &[]).fails(3, "no snapshot at nostate/snapshot.json");
    let mut c = provenant(d);
    c.args(["snapshot", "--state", "state", "--material", "ws/missing"]);
    run(c).fails(3, "ws/missing: no such file or directory");
    snapshot(d, &[]);
    // A mistake in the command line: a usage error, exit 2.
    record("state", "k.key", "bogus:x", &[]).fails(2, "bogus:x");
    // Images only, but no report to read them from: refused before the
    // build, not quietly attested as files (the build has already ended
    // here, so without the check the run ends too, rather than waits).
    std::fs::write(d.join("ended"), b"0\n").unwrap();
    record("state", "k.key", "marker:ended", &["--subjects", "reported"]).fails(
        2,
        "--subjects reported needs a report to read the images from: --kpack-report, --tekton-results or --oci-layout",
    );
    record("state", "nokey.key", "sigterm", &[]).fails(3, "nokey.key");
    std::fs::write(d.join("state/snapshot.json"), b"{garbage").unwrap();
    record("state", "k.key", "sigterm", &[])
        .fails(3, "state/snapshot.json is not a provenant snapshot");
}

/// Waits (60 s at most) until the hook flag `flag` exists; returns what it
/// says (the path being written).
fn wait_flag(flag: &Path, child: &mut Sidecar) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(what) = std::fs::read_to_string(flag) {
            return what;
        }
        if let Ok(Some(status)) = child.child.try_wait() {
            panic!("the sidecar ended ({status}) before the hook was reached");
        }
        assert!(Instant::now() < deadline, "the hook was never reached");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// SIGKILL while finalize writes its outputs, at the two moments that
/// matter, reached through the write hook (src/testhook.rs) rather than
/// guessed with sleeps: the envelope complete in its temporary file but not
/// yet renamed, and the envelope in place but the bundle not yet. The final
/// names only ever hold complete, valid attestations.
#[test]
fn killing_the_sidecar_mid_finalize_leaves_no_partial_attestation() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    snapshot(d, &[]);
    for i in 0..300 {
        write(
            &d.join(format!("ws/out/d{}/f{i}", i % 30)),
            format!("{i}").repeat(200).as_bytes(),
        );
    }
    std::fs::write(d.join("done"), b"0").unwrap();
    let state = d.join("state");
    let out = state.join("provenance.intoto.jsonl");
    let bundle = state.join("provenance.sigstore.json");
    let flag = d.join("pause");
    let temp_of = |name: &str| {
        names_in(&state)
            .into_iter()
            .filter(|n| n.starts_with(&format!(".{name}.")) && n.ends_with(".tmp"))
            .collect::<Vec<_>>()
    };
    let spawn_paused = || {
        let mut c = provenant(d);
        c.args([
            "record",
            "--state",
            "state",
            "--key",
            "k.key",
            "--completion",
            "marker:done",
        ])
        .env("PROVENANT_TEST_PAUSE_BEFORE_COMMIT", &flag);
        spawn(c)
    };
    let kill = |mut s: Sidecar| {
        s.child.kill().unwrap();
        let status = s.child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    };

    // 1. Killed with the envelope written in full beside its name.
    let mut s = spawn_paused();
    let writing = wait_flag(&flag, &mut s);
    assert_eq!(writing, "state/provenance.intoto.jsonl");
    assert!(!out.exists() && !bundle.exists(), "{:?}", names_in(&state));
    let temps = temp_of("provenance.intoto.jsonl");
    assert_eq!(temps.len(), 1, "{:?}", names_in(&state));
    let temp = state.join(&temps[0]);
    assert!(
        std::fs::metadata(&temp).unwrap().len() > 300 * 64,
        "{temp:?}"
    );
    kill(s);
    assert!(!out.exists() && !bundle.exists(), "{:?}", names_in(&state));
    // What was left is only the temporary file, by a name no reader takes
    // for the attestation.
    assert_eq!(
        names_in(&state),
        vec![temps[0].clone(), "snapshot.json".to_string()]
    );
    std::fs::remove_file(&temp).unwrap();
    std::fs::remove_file(&flag).unwrap();

    // 2. Killed between the envelope and the bundle: the envelope is whole
    //    and valid, the bundle not there at all.
    let mut s = spawn_paused();
    assert_eq!(wait_flag(&flag, &mut s), "state/provenance.intoto.jsonl");
    std::fs::remove_file(&flag).unwrap();
    assert_eq!(wait_flag(&flag, &mut s), "state/provenance.sigstore.json");
    assert!(out.exists() && !bundle.exists(), "{:?}", names_in(&state));
    assert_eq!(temp_of("provenance.sigstore.json").len(), 1);
    kill(s);
    assert!(!bundle.exists(), "{:?}", names_in(&state));
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "state/provenance.intoto.jsonl"]);
    let r = run(c).ok();
    assert_eq!(r.stdout.lines().count(), 300, "{}", r.stdout);
    let mut c = Command::new(interop_python());
    c.arg(interop_script("sslib_verify.py"))
        .arg(&out)
        .arg(d.join("k.pub"));
    let r = run(c);
    assert_eq!(r.code, 0, "securesystemslib: {}{}", r.stdout, r.stderr);
}

/// Finalize uses what the watcher hashed while the build ran, also when
/// the workspace was given as a relative path (the index is keyed by
/// canonical paths): nothing is left to hash at the end.
#[test]
fn finalize_reuses_the_watchers_digests() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    snapshot(d, &[]);
    let mut c = provenant(d);
    c.args([
        "record",
        "--state",
        "state",
        "--key",
        "k.key",
        "--completion",
        "marker:done",
    ])
    .env("PROVENANT_LOG", "info,provenant::watch=debug");
    let mut child = spawn(c);
    wait_ready(&mut child);
    for i in 0..200 {
        write(&d.join(format!("ws/out/f{i}")), format!("{i}").as_bytes());
    }
    // The build ends once the watcher has hashed all it wrote (and the two
    // sources), which its debug log says, however long that takes here.
    loop {
        let line = wait_for(&mut child, "hashing caught up");
        let hashed: u64 = line
            .split(" hashed=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no hashed= in {line:?}"));
        if hashed >= 202 {
            break;
        }
    }
    std::fs::write(d.join("done"), b"0").unwrap();
    let r = finish(child);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let resolved: u64 = r
        .stderr
        .split(" resolved=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resolved= in log: {}", r.stderr));
    assert_eq!(
        resolved, 0,
        "files left to hash at the end instead of while written: {}",
        r.stderr
    );
    let st = statement_of_line(&the_line(&r));
    assert_eq!(st["subject"].as_array().unwrap().len(), 200);
}

/// `--products-as dirhash`: one subject, the whole workspace as the build
/// left it (its inputs included, the completion marker left out), which a
/// consumer recomputes from the directory alone.
#[test]
fn products_as_dirhash_is_one_subject_for_the_workspace() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    snapshot(d, &[]);
    let mut child = spawn_record(
        d,
        &[
            "--completion",
            "marker:ws/.done",
            "--products-as",
            "dirhash",
        ],
    );
    wait_ready(&mut child);
    for i in 0..50 {
        write(&d.join(format!("ws/out/f{i}")), format!("{i}").as_bytes());
    }
    std::fs::write(d.join("ws/.done"), b"0\n").unwrap();
    let r = finish(child);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let st = statement_of_line(&the_line(&r));
    let subjects = st["subject"].as_array().unwrap();
    assert_eq!(subjects.len(), 1, "{st}");
    assert_eq!(subjects[0]["name"], "ws");
    std::fs::remove_file(d.join("ws/.done")).unwrap();
    let mut c = provenant(d);
    c.args(["digest", "--dirhash", "ws"]);
    let expected = run(c).ok().stdout;
    assert_eq!(
        format!(
            "{}  ws\n",
            subjects[0]["digest"]["dirHash"].as_str().unwrap()
        ),
        expected
    );
    assert_eq!(
        st["predicate"]["buildDefinition"]["internalParameters"]["productsAs"],
        "dirhash"
    );
}

/// `provenant record` in a user namespace of its own (as root maps to
/// root there), after `setup` runs there as root: how a test sets the
/// namespace's own inotify limits (/proc/sys/user/*) for the sidecar alone.
fn record_in_userns(d: &Path, setup: &str) -> std::process::Command {
    let mut c = std::process::Command::new("unshare");
    c.current_dir(d)
        .env_remove("COSIGN_PASSWORD")
        .env("PROVENANT_LOG", "info")
        .args(["--user", "--map-root-user", "sh", "-c"])
        .arg(format!(
            "{setup} && exec {} record --state state --key k.key --completion marker:done",
            bin().display()
        ));
    c
}

/// No inotify at all (here: a user namespace allowed zero inotify
/// instances): the sidecar says so and hashes the workspace when the build
/// ends, with the same result.
#[test]
fn without_inotify_the_workspace_is_hashed_at_the_end() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    snapshot(d, &[]);
    let mut child = spawn(record_in_userns(
        d,
        "echo 0 > /proc/sys/user/max_inotify_instances",
    ));
    wait_for(&mut child, "cannot start the watcher");
    wait_ready(&mut child);
    write(&d.join("ws/out/app"), b"built without a watcher");
    std::fs::write(d.join("done"), b"0\n").unwrap();
    let r = finish(child);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("hashed from scratch"), "{}", r.stderr);
    let st = statement_of_line(&the_line(&r));
    assert_eq!(
        names_and_digests(&st["subject"]),
        vec![(
            "ws/out/app".to_string(),
            sha256_hex(b"built without a watcher")
        )]
    );
}

/// The inotify watch limit (fs.inotify.max_user_watches; here the user
/// namespace's own limit of 3 watches: the workspace and the two
/// directories of its sources) reached while the build makes directories:
/// the sidecar says which directory it could not watch and how to raise
/// the limit, and hashes that root from scratch at the end instead of
/// missing what was written where it could not look.
#[test]
fn past_the_watch_limit_the_root_is_hashed_from_scratch() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    snapshot(d, &[]);
    let mut child = spawn(record_in_userns(
        d,
        "echo 3 > /proc/sys/user/max_inotify_watches",
    ));
    wait_ready(&mut child);
    let mut want = Vec::new();
    for i in 0..6 {
        let name = format!("ws/out/d{i}/sub/f{i}");
        let content = format!("file {i} in a directory the watcher cannot watch");
        write(&d.join(&name), content.as_bytes());
        want.push((name, sha256_hex(content.as_bytes())));
    }
    let warning = wait_for(&mut child, "cannot watch");
    assert!(
        warning.contains(&format!(
            "cannot watch {}/ws/",
            d.canonicalize().unwrap().display()
        )) && warning
            .contains("No space left on device (os error 28) (raise fs.inotify.max_user_watches)")
            && warning.contains("hashing this root from scratch at the end"),
        "{warning}"
    );
    // Written after the watcher gave up on the index: found all the same.
    write(&d.join("ws/out/late/x"), b"late");
    want.push(("ws/out/late/x".into(), sha256_hex(b"late")));
    std::fs::write(d.join("done"), b"0\n").unwrap();
    let r = finish(child);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains(" degraded=1 "), "{}", r.stderr);
    let st = statement_of_line(&the_line(&r));
    want.sort();
    assert_eq!(names_and_digests(&st["subject"]), want);
}
