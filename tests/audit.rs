//! `verify` and `inspect` as an auditor and an SRE use them (issue 17):
//! one parse of every input form, every attestation of a pod log on its
//! own result line, `inspect` reading what `verify` reads and never
//! claiming a check it did not make, and names that cannot forge output
//! lines (issue 12), checked against GNU coreutils' `sha256sum -c`.
mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn stmt_for_pod(uid: &str, subject: &str) -> serde_json::Value {
    let mut st = slsa_statement(
        "https://ci.example.com/b/1",
        serde_json::json!([exit_byproduct(Some("0"), Some("observed"))]),
        serde_json::json!({}),
        serde_json::json!({
            "pod": {"name": "build-1", "namespace": "ci", "uid": uid,
                    "images": {"builder": "registry.example.com/builder@sha256:".to_string() + &"c".repeat(64), "sidecar": "provenant:dev"}},
            "completion": "kube-api"
        }),
    );
    st["subject"][0]["name"] = subject.into();
    st["predicate"]["runDetails"]["metadata"]["invocationId"] = uid.into();
    st
}

fn log_line(envelope: &str) -> String {
    format!("{{\"provenantAttestation\":\"v1\",\"envelope\":{envelope},\"subjects\":[],\"subjectCount\":1}}")
}

fn verify_stdin(d: &Path, args: &[&str], input: &[u8]) -> Run {
    let mut c = provenant(d);
    c.arg("verify").args(args).arg("-");
    with_stdin(c, input)
}

fn with_stdin(mut c: Command, input: &[u8]) -> Run {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn setup() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    keygen(t.path(), "k", "ecdsa-p256");
    t
}

/// Issue 17 #1: an envelope file that also carries `provenantAttestation`
/// and `envelope` (another validly signed statement) is refused, not read
/// as the inner one while securesystemslib reads the outer one.
#[test]
fn an_envelope_with_a_log_line_inside_is_refused() {
    let t = setup();
    let d = t.path();
    let outer = sign_statement(d, "k", &stmt_for_pod("uid-a", "out/outer"));
    let inner = sign_statement(d, "k", &stmt_for_pod("uid-b", "out/inner"));
    let mut v: serde_json::Value = serde_json::from_str(&outer).unwrap();
    v["provenantAttestation"] = "v1".into();
    v["envelope"] = serde_json::from_str(&inner).unwrap();
    write(&d.join("mixed.json"), v.to_string().as_bytes());
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "mixed.json"]);
    let r = run(c).fails(4, "ambiguous input");
    assert!(!r.stdout.contains("out/inner"), "{}", r.stdout);
    // The same for a bundle key in an envelope, and for inspect.
    let mut v: serde_json::Value = serde_json::from_str(&outer).unwrap();
    v["dsseEnvelope"] = serde_json::from_str(&inner).unwrap();
    write(&d.join("mixed2.json"), v.to_string().as_bytes());
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "mixed2.json"]);
    run(c).fails(4, "ambiguous input");
    let mut c = provenant(d);
    c.args(["inspect", "mixed.json"]);
    run(c).fails(4, "ambiguous input");
    // An unknown field that marks no other form is ignored, as DSSE
    // libraries do, and the outer envelope is what verifies.
    let mut v: serde_json::Value = serde_json::from_str(&outer).unwrap();
    v["envelope"] = serde_json::from_str(&inner).unwrap();
    write(&d.join("extra.json"), v.to_string().as_bytes());
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "extra.json"]);
    let r = run(c).ok();
    assert!(
        r.stdout.contains("out/outer") && !r.stdout.contains("out/inner"),
        "{}",
        r.stdout
    );
}

/// Issue 17 #8: every attestation of a log is reported, truncated lines
/// are skipped with their line number, CRI pieces are joined, timestamp
/// prefixes and docker json-file logs are read, and binding to a pod
/// keeps a builder from substituting another pod's attestation.
#[test]
fn pod_logs_report_every_attestation() {
    let t = setup();
    let d = t.path();
    let a = sign_statement(d, "k", &stmt_for_pod("uid-a", "out/a"));
    let b = sign_statement(d, "k", &stmt_for_pod("uid-b", "out/b"));
    let (la, lb) = (log_line(&a), log_line(&b));

    // Two attestations: both verified, each on its own line.
    let log = format!("INFO ready\n{la}\nbuilder output\n{lb}\n");
    let r = verify_stdin(d, &["--key", "k.pub"], log.as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("Verified OK: -:2 ("), "{}", r.stderr);
    assert!(r.stderr.contains("Verified OK: -:4 ("), "{}", r.stderr);
    assert!(
        r.stderr.contains("; pod ci/build-1 (uid uid-a)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("2 attestations verified; pass --pod-uid"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("out/a") && r.stdout.contains("out/b"),
        "{}",
        r.stdout
    );

    // Bound to a pod: the other pod's attestation is skipped, named.
    let r = verify_stdin(d, &["--key", "k.pub", "--pod-uid", "uid-a"], log.as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("skipped: -:4: pod uid \"uid-b\" is not --pod-uid uid-a"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("out/a") && !r.stdout.contains("out/b"),
        "{}",
        r.stdout
    );
    let r = verify_stdin(
        d,
        &["--key", "k.pub", "--invocation-id", "uid-b"],
        log.as_bytes(),
    );
    assert!(
        r.code == 0 && r.stdout.contains("out/b") && !r.stdout.contains("out/a"),
        "{}",
        r.stderr
    );
    let r = verify_stdin(d, &["--key", "k.pub", "--pod-uid", "uid-z"], log.as_bytes());
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("no attestation found for the pod"),
        "{}",
        r.stderr
    );

    // A truncated line (a sidecar killed mid-write) is skipped with a
    // warning; the complete one still verifies.
    let log = format!("{}\n{la}\n", &lb[..lb.len() / 2]);
    let r = verify_stdin(d, &["--key", "k.pub"], log.as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("warning: -:1: not a provenant log line: truncated JSON"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains(&b[10..40]),
        "content echoed: {}",
        r.stderr
    );

    // Only a truncated line, or no attestation at all: exit 4, said so.
    let log = format!("2026-11-25T10:00:00Z stdout F hello\n{}\n", &la[..100]);
    verify_stdin(d, &["--key", "k.pub"], log.as_bytes()).fails(
        4,
        "no attestation found in 2 line(s) (1 attestation line(s) skipped",
    );
    verify_stdin(d, &["--key", "k.pub"], b"2026 started\nbuilding\n")
        .fails(4, "no attestation found in 2 line(s)");

    // A forged line (bad signature) fails the whole log.
    let mut forged: serde_json::Value = serde_json::from_str(&b).unwrap();
    forged["signatures"][0]["sig"] = serde_json::Value::String(
        serde_json::from_str::<serde_json::Value>(&a).unwrap()["signatures"][0]["sig"]
            .as_str()
            .unwrap()
            .into(),
    );
    let log = format!("{la}\n{}\n", log_line(&forged.to_string()));
    let r = verify_stdin(d, &["--key", "k.pub"], log.as_bytes());
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("FAILED: -:2:"), "{}", r.stderr);
    assert!(
        r.stderr.contains("1 of 2 attestation(s) failed"),
        "{}",
        r.stderr
    );

    // A long line: 300 subjects.
    let mut big = stmt_for_pod("uid-a", "out/a");
    let many: Vec<serde_json::Value> = (0..300)
        .map(|i| serde_json::json!({"name": format!("out/f{i}"), "digest": {"sha256": "e".repeat(64)}}))
        .collect();
    big["subject"].as_array_mut().unwrap().extend(many);
    let la = log_line(&sign_statement(d, "k", &big));
    // A raw CRI log file: the runtime split the long line into 8 KiB `P`
    // pieces and a final `F`; stderr lines of the sidecar interleave.
    let mut cri = String::from("2026-11-25T10:00:00.000000001Z stderr F INFO ready\n");
    let chunks: Vec<&str> = la
        .as_bytes()
        .chunks(8192)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    for (i, c) in chunks.iter().enumerate() {
        let tag = if i + 1 == chunks.len() { "F" } else { "P" };
        cri.push_str(&format!("2026-11-25T10:00:05.{i:09}Z stdout {tag} {c}\n"));
        if i == 0 {
            cri.push_str("2026-11-25T10:00:05.5Z stderr F INFO signing\n");
        }
    }
    assert!(chunks.len() > 1, "the line must be split");
    write(&d.join("cri.log"), cri.as_bytes());
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "cri.log"]);
    let r = run(c).ok();
    assert!(
        r.stderr.contains("Verified OK: cri.log:2 ("),
        "{}",
        r.stderr
    );

    // `podman logs -t` / `kubectl logs --timestamps --prefix` prefixes.
    let log = format!("2026-11-25T10:00:05.123456789+00:00 {la}\n[pod/build-1/provenant] 2026-11-25T10:00:06Z {lb}\n");
    let r = verify_stdin(d, &["--key", "k.pub"], log.as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("out/a") && r.stdout.contains("out/b"),
        "{}",
        r.stdout
    );

    // docker json-file: 16 KiB pieces without the newline, then the rest.
    let mut docker = String::new();
    let pieces: Vec<&str> = la
        .as_bytes()
        .chunks(16384)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    docker.push_str(&serde_json::json!({"log": "starting\n", "stream": "stderr", "time": "2026-11-25T10:00:00Z"}).to_string());
    docker.push('\n');
    for (i, p) in pieces.iter().enumerate() {
        let text = if i + 1 == pieces.len() {
            format!("{p}\n")
        } else {
            p.to_string()
        };
        docker.push_str(
            &serde_json::json!({"log": text, "stream": "stdout", "time": "2026-11-25T10:00:05Z"})
                .to_string(),
        );
        docker.push('\n');
    }
    write(&d.join("docker.log"), docker.as_bytes());
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "docker.log"]);
    let r = run(c).ok();
    assert!(r.stdout.contains("out/a"), "{}", r.stdout);
}

/// The documented `jq` recipe (docs/pod-mode.md) selects the envelope from
/// a log in either log format of the sidecar (text lines or JSON lines on
/// stderr, merged with stdout by `kubectl logs`).
#[test]
fn the_jq_recipe_works_on_both_log_formats() {
    let t = setup();
    let d = t.path();
    let a = sign_statement(d, "k", &stmt_for_pod("uid-a", "out/a"));
    let la = log_line(&a);
    for log in [
        format!("2026-11-25T10:00:00.1Z  INFO watching /workspace\n{la}\n2026-11-25T10:00:09.1Z  INFO done\n"),
        format!("{{\"timestamp\":\"2026-11-25T10:00:00Z\",\"level\":\"INFO\",\"message\":\"watching\"}}\n{la}\n"),
    ] {
        let mut c = Command::new("jq");
        c.args(["-cR", "fromjson? | select(.provenantAttestation?) | .envelope"]);
        let r = with_stdin(c, log.as_bytes());
        assert_eq!(r.code, 0, "jq: {}", r.stderr);
        let got: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        assert_eq!(got, serde_json::from_str::<serde_json::Value>(&a).unwrap());
    }
}

/// Issue 17 #7: inspect reads `-`, log lines and bundles, says the
/// signatures were not checked, and shows the pod, its images, changed
/// inputs and where the exit status came from.
#[test]
fn inspect_reads_what_verify_reads_and_claims_no_check() {
    let t = setup();
    let d = t.path();
    let mut st = stmt_for_pod("uid-a", "out/a");
    st["predicate"]["runDetails"]["byproducts"] = serde_json::json!([
        exit_byproduct(Some("0"), Some("claimed")),
        {"name": "src/main.c", "digest": {"sha256": "d".repeat(64)}, "annotations": {"provenant.materialChange": "modified"}}
    ]);
    st["subject"][0]["annotations"] = serde_json::json!({
        "provenant.origin": "claimed", "provenant.claimSource": "tekton-results",
        "provenant.claimFile": "/tekton/results/IMAGE_DIGEST", "provenant.claimCheck": "none"});
    let env = sign_statement(d, "k", &st);
    let mut c = provenant(d);
    c.args(["inspect", "-"]);
    let r = with_stdin(c, format!("noise\n{}\n", log_line(&env)).as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let o = &r.stdout;
    for want in [
        "-:2  (provenant log line; NOT VERIFIED: signatures not checked",
        "(not checked)",
        "subjects:      1 (1 claimed by the builder)",
        "claimed: read from /tekton/results/IMAGE_DIGEST (tekton-results), check: none",
        "pod:           ci/build-1 (uid uid-a)",
        "image:         builder = registry.example.com/builder@sha256:",
        "image:         sidecar = provenant:dev  (not pinned by digest)",
        "changed inputs: 1\n  modified src/main.c",
        "exit code:     0 (claimed, source \"test\")",
        "completion:    kube-api",
    ] {
        assert!(o.contains(want), "missing {want:?} in:\n{o}");
    }
    assert!(!o.to_lowercase().contains("signature valid"), "{o}");
    // --all lists every material.
    let mut c = provenant(d);
    c.args(["inspect", "--all", "-"]);
    let r = with_stdin(c, env.as_bytes());
    assert!(
        r.stdout
            .contains(&format!("  sha256:{}  src/main.c", "b".repeat(64))),
        "{}",
        r.stdout
    );
    // A bundle.
    let e: serde_json::Value = serde_json::from_str(&env).unwrap();
    let bundle = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "k"}},
        "dsseEnvelope": e
    });
    write(&d.join("b.sigstore.json"), bundle.to_string().as_bytes());
    let mut c = provenant(d);
    c.args(["inspect", "b.sigstore.json"]);
    let r = run(c).ok();
    assert!(
        r.stdout.contains("(Sigstore bundle; NOT VERIFIED"),
        "{}",
        r.stdout
    );
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "b.sigstore.json"]);
    run(c).ok();
}

const FAKE: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000  out/installer.sh";

/// Issue 12 #6: a product whose name holds a newline and a fake subject
/// line prints as one escaped line in verify, inspect and digest; JSON
/// stays exact.
#[test]
fn names_cannot_forge_lines() {
    let t = setup();
    let d = t.path();
    let evil = format!("x\n{FAKE}");
    write(&d.join("out").join(&evil), b"payload");
    write(&d.join("out/esc\x1b[1A\x1b[2Kok"), b"esc");
    let mut c = provenant(d);
    c.args([
        "attest",
        "--product",
        "out",
        "--key",
        "k.key",
        "-o",
        "att.jsonl",
    ]);
    run(c).ok();
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "att.jsonl"]);
    let r = run(c).ok();
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
    assert!(
        !r.stdout.lines().any(|l| l.starts_with("sha256:0000")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\\nsha256:0000"), "{}", r.stdout);
    assert!(r.stdout.contains("esc\\x1b[1A\\x1b[2Kok"), "{}", r.stdout);
    assert!(!r.stdout.contains('\x1b'), "{}", r.stdout);
    for l in r.stdout.lines() {
        assert!(l.starts_with("\\sha256:"), "{l}");
    }
    let mut c = provenant(d);
    c.args(["inspect", "att.jsonl"]);
    let r = run(c).ok();
    assert!(
        !r.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("sha256:0000")),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains('\x1b'), "{}", r.stdout);
    // JSON keeps the exact name.
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "--json", "att.jsonl"]);
    let r = run(c).ok();
    let st: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let names: Vec<&str> = st["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&format!("out/{evil}").as_str()), "{names:?}");
    // digest.
    let mut c = provenant(d);
    c.args(["digest", "out"]);
    let r = run(c).ok();
    assert_eq!(r.stdout.lines().count(), 2, "{}", r.stdout);
    assert!(!r.stdout.contains('\x1b'));
}

/// `provenant digest` prints exactly what `sha256sum` prints for every
/// name coreutils can express, and `sha256sum -c` checks it; a name with
/// another control character fails `sha256sum -c` as improperly formatted
/// (never checks another file).
#[test]
fn digest_output_is_checkable_by_sha256sum() {
    use std::os::unix::ffi::OsStrExt;
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let names: Vec<&[u8]> = vec![
        b"plain",
        b"with space",
        b"back\\slash",
        b"new\nline",
        b"carriage\rreturn",
        b"\\leading",
        "ünïcödé".as_bytes(),
        b"trailing\n",
        b"two  spaces",
    ];
    for n in &names {
        std::fs::create_dir_all(d.join("t")).unwrap();
        std::fs::write(d.join("t").join(std::ffi::OsStr::from_bytes(n)), n).unwrap();
    }
    let mut c = provenant(d);
    c.args(["digest", "t"]);
    let ours = run(c).ok().stdout;
    let mut want = String::new();
    let mut sorted: Vec<Vec<u8>> = names.iter().map(|n| [b"t/", *n].concat()).collect();
    sorted.sort();
    for n in &sorted {
        let out = Command::new("sha256sum")
            .arg(std::ffi::OsStr::from_bytes(n))
            .current_dir(d)
            .output()
            .unwrap();
        want.push_str(&String::from_utf8(out.stdout).unwrap());
    }
    assert_eq!(ours, want, "provenant digest vs sha256sum");
    write(&d.join("sums"), ours.as_bytes());
    let out = Command::new("sha256sum")
        .args(["-c", "--strict", "sums"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches(": OK").count(),
        names.len()
    );

    // ESC: escaped by us; sha256sum -c refuses the line.
    std::fs::create_dir_all(d.join("e")).unwrap();
    std::fs::write(d.join("e/a\x1bb"), b"x").unwrap();
    let mut c = provenant(d);
    c.args(["digest", "e"]);
    let ours = run(c).ok().stdout;
    assert_eq!(ours, format!("\\{}  e/a\\x1bb\n", sha256_hex(b"x")));
    write(&d.join("sums2"), ours.as_bytes());
    let out = Command::new("sha256sum")
        .args(["-c", "--strict", "sums2"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains(": OK"));
}
