//! Interop: independent implementations check what provenant writes, and
//! provenant checks what they write.
//!
//! - securesystemslib (the DSSE library of in-toto and TUF) verifies our
//!   envelopes, and signs envelopes that `provenant verify` must accept.
//! - The in-toto-attestation protobuf bindings parse our statements strictly
//!   (unknown fields fail) and validate them, SLSA provenance v1 included.
//!
//! The Python venv comes from scripts/interop-venv.sh (scripts/test.sh makes
//! it and exports PROVENANT_PYTHON).
mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine;
use common::exit::*;
use common::*;

/// `python tests/interop/SCRIPT ARGS` in `dir`.
fn py(dir: &Path, script: &str, args: &[&str]) -> Run {
    let mut c = Command::new(interop_python());
    c.current_dir(dir).arg(interop_script(script)).args(args);
    run(c)
}

fn attest(dir: &Path, key: &str, out: &str, extra: &[&str]) -> Run {
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
    ])
    .args(extra);
    run(c)
}

fn verify(dir: &Path, key: &str, file: &str) -> Run {
    let mut c = provenant(dir);
    c.args(["verify", "--key", key, file]);
    run(c)
}

fn key_id(dir: &Path, pub_pem: &str) -> String {
    let pem = pem::parse(std::fs::read(dir.join(pub_pem)).unwrap()).unwrap();
    sha256_hex(pem.contents())
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// The raw payload bytes of an envelope file.
fn payload_of(path: &Path) -> Vec<u8> {
    let env = read_json(path);
    b64().decode(env["payload"].as_str().unwrap()).unwrap()
}

/// Asserts the statement (or envelope) at `dir/file` is valid for the
/// in-toto-attestation bindings.
fn assert_valid_statement(dir: &Path, file: &str) {
    let r = py(dir, "validate_statement.py", &[file]);
    assert_eq!(
        (r.code, r.stdout.trim()),
        (0, "valid"),
        "in-toto-attestation rejects {file}\nstdout:\n{}\nstderr:\n{}\nstatement:\n{}",
        r.stdout,
        r.stderr,
        statement_of(&dir.join(file))
    );
}

#[test]
fn sslib_verifies_our_envelopes() {
    for alg in ["ecdsa-p256", "ed25519"] {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        example_tree(d);
        keygen(d, "k", alg);
        attest(d, "k.key", "att.jsonl", &[]).ok();

        let r = py(d, "sslib_verify.py", &["att.jsonl", "k.pub"]);
        assert_eq!(
            r.code, 0,
            "{alg}: sslib rejects our envelope\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        assert_eq!(
            r.stdout.trim(),
            key_id(d, "k.pub"),
            "{alg}: verified key id"
        );
    }
}

#[test]
fn sslib_rejects_our_envelope_with_another_key() {
    for alg in ["ecdsa-p256", "ed25519"] {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        example_tree(d);
        keygen(d, "k", alg);
        keygen(d, "other", alg);
        attest(d, "k.key", "att.jsonl", &[]).ok();

        let r = py(d, "sslib_verify.py", &["att.jsonl", "other.pub"]);
        assert_eq!(
            r.code, 1,
            "{alg}: sslib must reject the wrong key\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        assert!(r.stdout.is_empty(), "{alg}: {}", r.stdout);
        assert!(
            r.stderr.contains("VerificationError"),
            "{alg}: {}",
            r.stderr
        );
    }
}

#[test]
fn sslib_rejects_our_envelope_with_a_flipped_payload_byte() {
    for alg in ["ecdsa-p256", "ed25519"] {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        example_tree(d);
        keygen(d, "k", alg);
        attest(d, "k.key", "att.jsonl", &[]).ok();

        let mut env = read_json(&d.join("att.jsonl"));
        let mut payload = payload_of(&d.join("att.jsonl"));
        // A digit of the first subject's sha256, made another digit: still a
        // well-formed statement, so only the signature can tell.
        let key = b"\"sha256\":\"";
        let start = payload
            .windows(key.len())
            .position(|w| w == key)
            .expect("a sha256 digest in the payload")
            + key.len();
        let at = start
            + payload[start..]
                .iter()
                .position(u8::is_ascii_digit)
                .unwrap();
        payload[at] ^= 0x01;
        assert!(payload[at].is_ascii_digit());
        env["payload"] = b64().encode(&payload).into();
        write(&d.join("tampered.jsonl"), format!("{env}\n").as_bytes());

        let r = py(d, "sslib_verify.py", &["tampered.jsonl", "k.pub"]);
        assert_eq!(
            r.code, 1,
            "{alg}: sslib must reject a modified payload\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        assert!(
            r.stderr.contains("VerificationError"),
            "{alg}: {}",
            r.stderr
        );
        // And provenant agrees.
        verify(d, "k.pub", "tampered.jsonl").fails(INVALID, "tampered.jsonl");
    }
}

#[test]
fn in_toto_attestation_validates_files_mode() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
    attest(d, "k.key", "att.jsonl", &[]).ok();
    assert_valid_statement(d, "att.jsonl");
}

#[test]
fn in_toto_attestation_validates_tree_mode() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ed25519");
    attest(d, "k.key", "att.jsonl", &["--materials-as", "tree"]).ok();
    let st = statement_of(&d.join("att.jsonl"));
    let deps = &st["predicate"]["buildDefinition"]["resolvedDependencies"];
    assert!(deps[0]["digest"]["gitTree"].is_string(), "{deps}");
    assert_valid_statement(d, "att.jsonl");
}

#[test]
fn in_toto_attestation_validates_symlink_and_fifo_materials() {
    for mode in ["files", "tree"] {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        example_tree(d);
        keygen(d, "k", "ecdsa-p256");
        std::os::unix::fs::symlink("main.c", d.join("src/link.c")).unwrap();
        let fifo = std::ffi::CString::new(d.join("src/pipe").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        attest(d, "k.key", "att.jsonl", &["--materials-as", mode]).ok();

        if mode == "files" {
            let st = statement_of(&d.join("att.jsonl"));
            let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
                .as_array()
                .unwrap()
                .clone();
            for name in ["src/link.c", "src/pipe"] {
                assert!(
                    deps.iter().any(|x| x["name"] == name),
                    "{name} recorded: {deps:?}"
                );
            }
        }
        assert_valid_statement(d, "att.jsonl");
    }
}

#[test]
fn in_toto_attestation_validates_run_statement() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
    let mut c = provenant(d);
    c.args([
        "run",
        "--key",
        "k.key",
        "--material",
        "src",
        "--product",
        "out",
        "-o",
        "run.jsonl",
        "--",
        "sh",
        "-c",
        "echo hi > out/new.txt",
    ]);
    run(c).ok();
    let st = statement_of(&d.join("run.jsonl"));
    assert!(
        st["subject"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "out/new.txt"),
        "{st}"
    );
    assert_valid_statement(d, "run.jsonl");
}

#[test]
fn in_toto_attestation_rejects_unknown_fields() {
    // The validator must be strict for the tests above to mean anything.
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
    attest(d, "k.key", "att.jsonl", &[]).ok();
    let mut st = statement_of(&d.join("att.jsonl"));
    write(&d.join("ok.json"), st.to_string().as_bytes());
    assert_valid_statement(d, "ok.json");

    st["predicate"]["runDetails"]["builder"]["bogus"] = "x".into();
    write(&d.join("bad.json"), st.to_string().as_bytes());
    let r = py(d, "validate_statement.py", &["bad.json"]);
    assert_eq!(r.code, 1, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("bogus"), "{}", r.stdout);
}

#[test]
fn provenant_verifies_envelopes_signed_by_sslib() {
    for scheme in ["ecdsa", "ed25519"] {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        example_tree(d);
        keygen(d, "k", "ecdsa-p256");
        attest(d, "k.key", "ours.jsonl", &[]).ok();
        write(&d.join("payload.json"), &payload_of(&d.join("ours.jsonl")));

        let r = py(
            d,
            "sslib_sign.py",
            &[
                "payload.json",
                "theirs.jsonl",
                "theirs.pub",
                "--scheme",
                scheme,
            ],
        );
        assert_eq!(
            r.code, 0,
            "{scheme}: sslib_sign\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        assert_eq!(r.stdout.trim(), key_id(d, "theirs.pub"), "{scheme}: keyid");

        let v = verify(d, "theirs.pub", "theirs.jsonl").ok();
        let expect_bin = format!("sha256:{}  out/app.bin", sha256_hex(b"\x7fELF-not-really"));
        assert!(
            v.stdout.lines().any(|l| l == expect_bin),
            "{scheme}: {}",
            v.stdout
        );

        // Our key did not sign it.
        verify(d, "k.pub", "theirs.jsonl").fails(INVALID, "theirs.jsonl");
    }
}

#[test]
fn sigstore_js_verifies_our_bundles() {
    for alg in ["ecdsa-p256", "ed25519"] {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        example_tree(d);
        keygen(d, "k", alg);
        keygen(d, "other", alg);
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
            "--bundle",
            "att.sigstore.json",
        ]);
        run(c).ok();
        let bundle = read_json(&d.join("att.sigstore.json"));
        assert_eq!(
            bundle["mediaType"],
            "application/vnd.dev.sigstore.bundle.v0.3+json"
        );
        let kid = bundle["verificationMaterial"]["publicKey"]["hint"]
            .as_str()
            .unwrap()
            .to_string();
        // The bundle carries exactly the envelope we wrote.
        let env = read_json(&d.join("att.jsonl"));
        assert_eq!(bundle["dsseEnvelope"]["payload"], env["payload"]);
        assert_eq!(
            bundle["dsseEnvelope"]["signatures"][0]["sig"],
            env["signatures"][0]["sig"]
        );

        let r = sigstore_js(&d.join("att.sigstore.json"), &d.join("k.pub"), &kid);
        assert_eq!(r.code, 0, "{alg}: sigstore-js: {}{}", r.stdout, r.stderr);
        assert_eq!(r.stdout.trim(), format!("OK {kid}"));
        // Another key under the same id: rejected.
        let r = sigstore_js(&d.join("att.sigstore.json"), &d.join("other.pub"), &kid);
        assert_eq!(r.code, 1, "{alg}: {}{}", r.stdout, r.stderr);
        // A changed payload: rejected.
        let mut tampered = bundle.clone();
        let p = tampered["dsseEnvelope"]["payload"]
            .as_str()
            .unwrap()
            .to_string();
        // The payload starts with base64 of `{"_type"`: change its first character.
        let flipped = match p.strip_prefix('e') {
            Some(rest) => format!("f{rest}"),
            None => format!("e{}", &p[1..]),
        };
        tampered["dsseEnvelope"]["payload"] = serde_json::Value::String(flipped);
        std::fs::write(d.join("t.json"), serde_json::to_vec(&tampered).unwrap()).unwrap();
        let r = sigstore_js(&d.join("t.json"), &d.join("k.pub"), &kid);
        assert_eq!(r.code, 1, "{alg}: {}{}", r.stdout, r.stderr);
        // provenant verify reads the bundle too.
        let mut c = provenant(d);
        c.args(["verify", "--key", "k.pub", "att.sigstore.json"]);
        run(c).ok();
    }
}

/// One dirHash subject for a whole product directory and one dirHash per
/// material directory: the reference bindings accept both.
#[test]
fn in_toto_attestation_validates_dirhash_mode() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
    attest(
        d,
        "k.key",
        "att.jsonl",
        &["--materials-as", "dirhash", "--products-as", "dirhash"],
    )
    .ok();
    let st = statement_of(&d.join("att.jsonl"));
    let deps = &st["predicate"]["buildDefinition"]["resolvedDependencies"];
    assert!(deps[0]["digest"]["dirHash"].is_string(), "{deps}");
    assert_eq!(st["subject"].as_array().unwrap().len(), 1, "{st}");
    assert!(st["subject"][0]["digest"]["dirHash"].is_string(), "{st}");
    assert_valid_statement(d, "att.jsonl");
    // src as one dirHash, config.toml (a file) by its sha256.
    let mut c = provenant(d);
    c.args(["inspect", "att.jsonl"]);
    let r = run(c).ok();
    assert!(
        r.stdout
            .contains("materials:     2 (1 sha256, 0 gitTree, 1 dirHash, 0 other)"),
        "{}",
        r.stdout
    );
}
