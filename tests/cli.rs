//! The CLI end to end: keygen, attest, run, verify, inspect, and every way a
//! user can feed it bad input.
mod common;

use std::path::Path;

use common::exit::*;
use common::*;

fn attest(dir: &Path, key: &str, out: &str) -> Run {
    let mut c = provenant(dir);
    c.args([
        "attest",
        "--material",
        "src",
        "--material",
        "config.toml",
        "--product",
        "out",
        "--key",
        key,
        "-o",
        out,
    ]);
    run(c)
}

fn verify(dir: &Path, key: &str, file: &str) -> Run {
    let mut c = provenant(dir);
    c.args(["verify", "--key", key, file]);
    run(c)
}

#[test]
fn attest_then_verify_both_algorithms() {
    for alg in ["ecdsa-p256", "ed25519"] {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        example_tree(d);
        keygen(d, "k", alg);
        attest(d, "k.key", "att.jsonl").ok();
        let v = verify(d, "k.pub", "att.jsonl").ok();
        // verify prints the subjects, sha256 of exactly what is on disk.
        let expect_bin = format!("sha256:{}  out/app.bin", sha256_hex(b"\x7fELF-not-really"));
        assert!(v.stdout.lines().any(|l| l == expect_bin), "{}", v.stdout);
        assert_eq!(v.stdout.lines().count(), 2);

        let st = statement_of(&d.join("att.jsonl"));
        assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
        assert_eq!(st["predicateType"], "https://slsa.dev/provenance/v1");
        let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        let names: Vec<&str> = deps.iter().map(|d| d["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["src/lib/util.h", "src/main.c", "config.toml"]);
        assert_eq!(
            deps[1]["digest"]["sha256"],
            sha256_hex(b"int main(void) { return 0; }\n")
        );
    }
}

#[test]
fn envelope_is_one_json_line_with_spec_fields() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
    attest(d, "k.key", "att.jsonl").ok();
    let raw = std::fs::read_to_string(d.join("att.jsonl")).unwrap();
    assert_eq!(raw.lines().count(), 1);
    assert!(raw.ends_with('\n'));
    let env = read_json(&d.join("att.jsonl"));
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    let sig = &env["signatures"][0];
    // keyid = sha256 of the SPKI DER of the public key.
    let pem = std::fs::read_to_string(d.join("k.pub")).unwrap();
    let der = pem::parse(pem).unwrap();
    assert_eq!(sig["keyid"], sha256_hex(der.contents()));
}

#[test]
fn encrypted_cosign_key_roundtrip_and_wrong_password() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    let mut c = provenant(d);
    c.env("COSIGN_PASSWORD", "hunter2")
        .args(["keygen", "--output-prefix", "cosign"]);
    run(c).ok();
    let key = std::fs::read_to_string(d.join("cosign.key")).unwrap();
    assert!(
        key.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"),
        "{key}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(d.join("cosign.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let mut c = provenant(d);
    c.env("COSIGN_PASSWORD", "hunter2").args([
        "attest",
        "--product",
        "out",
        "--key",
        "cosign.key",
        "-o",
        "a.jsonl",
    ]);
    run(c).ok();
    verify(d, "cosign.pub", "a.jsonl").ok();

    let mut c = provenant(d);
    c.env("COSIGN_PASSWORD", "wrong").args([
        "attest",
        "--product",
        "out",
        "--key",
        "cosign.key",
        "-o",
        "b.jsonl",
    ]);
    run(c).fails(
        CANNOT_CHECK,
        "cannot decrypt key file cosign.key: wrong password",
    );
    assert!(!d.join("b.jsonl").exists());

    let mut c = provenant(d);
    c.args([
        "attest",
        "--product",
        "out",
        "--key",
        "cosign.key",
        "-o",
        "b.jsonl",
    ]);
    run(c).fails(CANNOT_CHECK, "cosign.key is encrypted: set COSIGN_PASSWORD");

    // keygen never overwrites a key, and says so as docs/troubleshooting.md
    // quotes it.
    let mut c = provenant(d);
    c.env("COSIGN_PASSWORD", "x")
        .args(["keygen", "--output-prefix", "cosign"]);
    run(c).fails(
        CANNOT_CHECK,
        "provenant: error: cosign.key already exists; refusing to overwrite a key (remove it first)",
    );
}

#[test]
fn verify_rejects_wrong_key() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "a", "ecdsa-p256");
    keygen(d, "b", "ecdsa-p256");
    keygen(d, "e", "ed25519");
    attest(d, "a.key", "att.jsonl").ok();
    verify(d, "b.pub", "att.jsonl").fails(
        INVALID,
        "no signature verifies with the trusted key(s) b.pub",
    );
    verify(d, "e.pub", "att.jsonl").fails(INVALID, "no signature verifies");
    // Any one trusted key is enough by default; a threshold of two is not met.
    let mut c = provenant(d);
    c.args(["verify", "--key", "b.pub", "--key", "a.pub", "att.jsonl"]);
    run(c).ok();
    let mut c = provenant(d);
    c.args([
        "verify",
        "--key",
        "b.pub",
        "--key",
        "a.pub",
        "--threshold",
        "2",
        "att.jsonl",
    ]);
    run(c).fails(INVALID, "only 1 trusted key(s) signed, 2 required");
}

/// Each tampering gets rejected, with a message that says what is wrong.
#[test]
fn tampered_envelopes_are_rejected() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
    attest(d, "k.key", "att.jsonl").ok();
    attest(d, "k.key", "other.jsonl").ok();
    let env = read_json(&d.join("att.jsonl"));
    let other = read_json(&d.join("other.jsonl"));

    let case = |name: &str, v: serde_json::Value, needle: &str| {
        let f = format!("{name}.json");
        std::fs::write(d.join(&f), serde_json::to_vec(&v).unwrap()).unwrap();
        verify(d, "k.pub", &f).fails(INVALID, needle);
    };

    let mut payload = b64.decode(env["payload"].as_str().unwrap()).unwrap();
    let i = payload.len() / 2;
    payload[i] ^= 0x01;
    let mut v = env.clone();
    v["payload"] = b64.encode(&payload).into();
    case("flipped-payload", v, "no signature verifies");

    let mut v = env.clone();
    v["payloadType"] = "application/json".into();
    case(
        "payload-type",
        v,
        "payloadType is 'application/json', expected 'application/vnd.in-toto+json'",
    );

    // A valid signature by the right key, but over another statement.
    let mut v = env.clone();
    v["signatures"] = other["signatures"].clone();
    case("swapped-signature", v, "no signature verifies");

    let mut v = env.clone();
    let s = env["signatures"][0]["sig"].as_str().unwrap();
    v["signatures"][0]["sig"] = s[..s.len() - 3].into();
    case("truncated-sig", v, "signatures[0].sig is not valid base64");

    let mut v = env.clone();
    let p = env["payload"].as_str().unwrap();
    v["payload"] = p[..p.len() - 5].into();
    case("truncated-payload", v, "payload is not valid base64");

    let mut v = env.clone();
    let s0 = env["signatures"][0].clone();
    v["signatures"] = serde_json::json!([s0.clone(), s0]);
    case(
        "duplicate-signatures",
        v,
        "duplicate signatures: signatures[1] repeats signatures[0]",
    );

    let mut v = env.clone();
    v["signatures"] = serde_json::json!([]);
    case("no-signatures", v, "envelope has no signatures");

    std::fs::write(d.join("garbage.json"), b"{\"hello\": ").unwrap();
    verify(d, "k.pub", "garbage.json").fails(INVALID, "garbage.json: not a DSSE envelope");
    std::fs::write(d.join("binary.json"), [0xff, 0xfe, 0x00, 0x01]).unwrap();
    verify(d, "k.pub", "binary.json").fails(INVALID, "not a DSSE envelope");
}

#[test]
fn bad_inputs_give_one_line_errors() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");

    let mut c = provenant(d);
    c.args([
        "attest",
        "--material",
        "nope",
        "--product",
        "out",
        "--key",
        "k.key",
        "-o",
        "a.jsonl",
    ]);
    run(c).fails(CANNOT_CHECK, "nope");

    std::fs::write(d.join("garbage.key"), b"this is not a key").unwrap();
    let mut c = provenant(d);
    c.args([
        "attest",
        "--product",
        "out",
        "--key",
        "garbage.key",
        "-o",
        "a.jsonl",
    ]);
    run(c).fails(CANNOT_CHECK, "key file garbage.key is not PEM");

    let mut c = provenant(d);
    c.args([
        "attest",
        "--product",
        "out",
        "--key",
        "k.pub",
        "-o",
        "a.jsonl",
    ]);
    run(c).fails(CANNOT_CHECK, "k.pub holds a 'PUBLIC KEY' block");

    let mut c = provenant(d);
    c.args([
        "attest",
        "--product",
        "out",
        "--key",
        "missing.key",
        "-o",
        "a.jsonl",
    ]);
    run(c).fails(CANNOT_CHECK, "cannot read key file missing.key");

    verify(d, "k.key", "whatever").fails(CANNOT_CHECK, "k.key holds a 'PRIVATE KEY' block");
    verify(d, "k.pub", "missing.jsonl").fails(CANNOT_CHECK, "cannot read missing.jsonl");

    std::fs::create_dir(d.join("empty")).unwrap();
    let mut c = provenant(d);
    c.args([
        "attest",
        "--product",
        "empty",
        "--key",
        "k.key",
        "-o",
        "a.jsonl",
    ]);
    run(c).fails(CANNOT_CHECK, "no products to attest");
    assert!(!d.join("a.jsonl").exists());
}

#[test]
fn fifo_in_material_tree_is_recorded_not_opened() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
    let fifo = d.join("src/pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let start = std::time::Instant::now();
    let r = attest(d, "k.key", "att.jsonl").ok();
    assert!(start.elapsed().as_secs() < 20, "must not hang on a FIFO");
    assert!(
        r.stderr.contains("pipe"),
        "warning names the FIFO: {}",
        r.stderr
    );
    let st = statement_of(&d.join("att.jsonl"));
    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let pipe = deps
        .iter()
        .find(|x| x["name"] == "src/pipe")
        .expect("fifo recorded");
    assert_eq!(pipe["annotations"]["provenant.fileType"], "fifo");
    assert!(pipe.get("digest").is_none());
}

/// Root reads chmod-000 files, so the test drops to `nobody` with setpriv.
#[test]
fn unreadable_file_fails_or_is_recorded() {
    let t = tempfile::Builder::new()
        .prefix("prov-unreadable")
        .tempdir_in("/tmp")
        .unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
    std::fs::write(d.join("src/secret.txt"), b"nope").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        d.join("src/secret.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(d.join("k.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let is_root = unsafe { libc::geteuid() } == 0;
    let cmd = |extra: &[&str]| {
        let mut args: Vec<String> = Vec::new();
        let mut c = if is_root {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(bin());
            c
        } else {
            std::process::Command::new(bin())
        };
        args.extend(
            [
                "attest",
                "--material",
                "src",
                "--product",
                "out",
                "--key",
                "k.key",
                "-o",
            ]
            .map(String::from),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        c.current_dir(d).env_remove("COSIGN_PASSWORD").args(args);
        c
    };
    run(cmd(&["a.jsonl"])).fails(CANNOT_CHECK, "secret.txt");
    let r = run(cmd(&["b.jsonl", "--on-error", "record"])).ok();
    assert!(r.stderr.contains("secret.txt"), "{}", r.stderr);
    let st = statement_of(&d.join("b.jsonl"));
    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    let s = deps
        .iter()
        .find(|x| x["name"] == "src/secret.txt")
        .expect("recorded");
    assert!(s["annotations"]["provenant.error"].as_str().unwrap().len() > 3);
    assert_eq!(
        st["predicate"]["buildDefinition"]["internalParameters"]["onError"],
        "record"
    );
}

#[test]
fn run_records_command_and_propagates_exit_code() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
    let mut c = provenant(d);
    c.args([
        "run",
        "--material",
        "src",
        "--product",
        "build",
        "--key",
        "k.key",
        "-o",
        "run.jsonl",
        "--",
        "sh",
        "-c",
        "mkdir -p build && cat src/main.c > build/out.txt && echo built",
    ]);
    let r = run(c).ok();
    assert!(r.stdout.contains("built"), "stdio inherited: {}", r.stdout);
    let v = verify(d, "k.pub", "run.jsonl").ok();
    assert!(v
        .stdout
        .contains(&sha256_hex(b"int main(void) { return 0; }\n")));
    let st = statement_of(&d.join("run.jsonl"));
    let p = &st["predicate"];
    assert_eq!(
        p["buildDefinition"]["buildType"],
        "https://provenant.dev/build-types/observed/v1"
    );
    assert_eq!(
        p["buildDefinition"]["externalParameters"]["command"][0],
        "sh"
    );
    let deps = p["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert!(
        deps.iter()
            .any(|x| x["annotations"]["provenant.role"] == "command"),
        "the shell is a material"
    );
    let by = &p["runDetails"]["byproducts"][0];
    assert_eq!(by["name"], "exit-code");
    assert_eq!(by["content"], "MA=="); // base64("0")
    let started = p["runDetails"]["metadata"]["startedOn"].as_str().unwrap();
    let finished = p["runDetails"]["metadata"]["finishedOn"].as_str().unwrap();
    assert!(started.ends_with('Z') && started <= finished);

    let i = run({
        let mut c = provenant(d);
        c.args(["inspect", "run.jsonl"]);
        c
    })
    .ok();
    assert!(i.stdout.contains("exit code:     0"), "{}", i.stdout);
    assert!(i
        .stdout
        .contains("builder:       https://provenant.dev/builders/local/v1"));
    assert!(i.stdout.contains("NOT VERIFIED"));

    // A failing command: its exit code comes back, nothing attested by default.
    let mut c = provenant(d);
    c.args([
        "run",
        "--product",
        "build",
        "--key",
        "k.key",
        "-o",
        "fail.jsonl",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    let r = run(c);
    assert_eq!(r.code, 7);
    assert!(r.stderr.contains("not attesting a failed build"));
    assert!(!d.join("fail.jsonl").exists());

    // ... unless asked, and then the exit code is in the attestation.
    let mut c = provenant(d);
    c.args([
        "run",
        "--attest-failed",
        "--product",
        "build",
        "--key",
        "k.key",
        "-o",
        "fail.jsonl",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(run(c).code, 7);
    let i = run({
        let mut c = provenant(d);
        c.args(["inspect", "fail.jsonl"]);
        c
    })
    .ok();
    assert!(i.stdout.contains("exit code:     7"), "{}", i.stdout);
}

#[test]
fn run_without_key_uses_one_dev_key() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    let mk = || {
        let mut c = provenant(d);
        c.args(["run", "--product", "out", "--", "true"]);
        run(c).ok()
    };
    let first = mk();
    assert!(
        first.stderr.contains("DEVELOPMENT KEY"),
        "loud warning: {}",
        first.stderr
    );
    let key1 = std::fs::read(d.join(".provenant/dev.key")).unwrap();
    // "warns on every use" (README): the key that exists already is
    // announced as loudly as the one just made.
    let second = mk();
    assert!(
        second.stderr.contains("DEVELOPMENT KEY"),
        "loud warning on the second use too: {}",
        second.stderr
    );
    assert_eq!(
        key1,
        std::fs::read(d.join(".provenant/dev.key")).unwrap(),
        "created once"
    );
    verify(d, ".provenant/dev.pub", "provenance.intoto.jsonl").ok();
}

#[test]
fn run_forwards_signals_to_the_command() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
    let mut c = provenant(d);
    c.args([
        "run", "--attest-failed", "--product", "out", "--key", "k.key", "-o", "sig.jsonl", "--", "sh", "-c",
        "trap 'echo got-term > out/term.txt; exit 42' TERM; touch ready; i=0; while [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done",
    ])
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    // The command gives up after about a minute: if provenant died of the
    // signal instead of forwarding it, the command would otherwise keep
    // the pipes open and the test would hang rather than fail.
    let child = c.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !d.join("ready").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "command never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(42),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(d.join("out/term.txt")).unwrap(),
        "got-term\n"
    );
    let st = statement_of(&d.join("sig.jsonl"));
    assert_eq!(
        st["predicate"]["runDetails"]["byproducts"][0]["content"],
        "NDI="
    ); // "42"
}

#[test]
fn missing_command_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
    let mut c = provenant(d);
    c.args([
        "run",
        "--product",
        "out",
        "--key",
        "k.key",
        "--",
        "definitely-not-a-command-xyz",
    ]);
    // As `env` and `timeout` do: 127 for a command that is not there.
    run(c).fails(127, "cannot start command 'definitely-not-a-command-xyz'");
}

#[test]
fn tree_mode_matches_git() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .current_dir(d.join("src"))
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "x"]);
    let tree = git(&["rev-parse", "HEAD^{tree}"]);
    let mut c = provenant(d);
    c.args([
        "attest",
        "--materials-as",
        "tree",
        "--exclude",
        ".git",
        "--exclude",
        ".git/**",
        "--material",
        "src",
        "--product",
        "out",
        "--key",
        "k.key",
        "-o",
        "t.jsonl",
    ]);
    run(c).ok();
    let st = statement_of(&d.join("t.jsonl"));
    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert_eq!(deps.len(), 1);
    assert_eq!(deps[0]["name"], "src");
    assert_eq!(deps[0]["digest"]["gitTree"], tree);
    assert_eq!(
        st["predicate"]["buildDefinition"]["internalParameters"]["materialsAs"],
        "tree"
    );
}

/// `kubectl logs POD -c provenant | provenant verify --key cosign.pub -`
#[test]
fn verify_reads_a_pod_log_from_stdin() {
    use std::io::Write;
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
    let mut c = provenant(d);
    c.args([
        "attest",
        "--material",
        "src",
        "--product",
        "out",
        "--key",
        "k.key",
        "-o",
        "att.jsonl",
    ]);
    run(c).ok();
    let envelope = std::fs::read_to_string(d.join("att.jsonl")).unwrap();
    let log = format!(
        "2026-11-25T10:00:00Z stderr F INFO ready\n2026-11-25T10:00:05Z stdout F {{\"provenantAttestation\":\"v1\",\"envelope\":{}}}\n",
        envelope.trim()
    );
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(log.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("Verified OK: -:2 "), "{stderr}");
    // Exactly the subjects of the one attestation line, as on disk; the
    // runtime's and the builder's lines print nothing.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "sha256:{}  out/app.bin\nsha256:{}  out/app.sha\n",
            sha256_hex(b"\x7fELF-not-really"),
            sha256_hex(b"checksum\n")
        )
    );
}
