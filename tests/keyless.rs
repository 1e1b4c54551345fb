//! Keyless signing (Fulcio), the Rekor transparency log and RFC 3161
//! timestamps, against @sigstore/mock (the sigstore-js project's own mock
//! Fulcio, Rekor and TSA) served over HTTP on loopback, with its trust
//! material as a `trusted_root.json`. Every bundle provenant makes is
//! checked by an independent verifier, sigstore-js (@sigstore/verify),
//! requiring a certificate identity and a transparency-log entry; every
//! tampered one is rejected by both sigstore-js and `provenant verify`.
mod common;

use std::path::Path;

use base64::Engine;
use common::sigstore_mock::{sigstore_js_verify, token, MockSigstore, ISSUER};
use common::*;
use serde_json::Value;

const SA: &str = "system:serviceaccount:ci:builder";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// `provenant run` keyless with Rekor (and `extra`), writing `name`.sigstore.json.
fn keyless_run(d: &Path, m: &MockSigstore, token_file: &str, name: &str, extra: &[&str]) -> Run {
    let mut c = provenant(d);
    c.args([
        "run",
        "--fulcio-url",
        &m.url,
        "--identity-token",
        token_file,
        "--rekor-url",
        &m.url,
        "--material",
        "src",
        "--product",
        "out",
        "-o",
        &format!("{name}.intoto.jsonl"),
        "--bundle",
        &format!("{name}.sigstore.json"),
    ])
    .args(extra)
    .args([
        "--",
        "sh",
        "-c",
        "mkdir -p out && cat src/main.c > out/app.bin",
    ]);
    run(c)
}

fn setup(d: &Path) {
    example_tree(d);
    write(&d.join("token"), token(SA, ISSUER, 3600).as_bytes());
    write(
        &d.join("other-token"),
        token("system:serviceaccount:ci:intruder", ISSUER, 3600).as_bytes(),
    );
}

/// sigstore-js, requiring identity SA from ISSUER and one log entry.
fn js(d: &Path, m: &MockSigstore, bundle: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "--certificate-identity",
        SA,
        "--certificate-oidc-issuer",
        ISSUER,
        "--tlog-threshold",
        "1",
    ];
    args.extend_from_slice(extra);
    sigstore_js_verify(&d.join(bundle), &m.trusted_root, &args)
}

fn verify_keyless(d: &Path, m: &MockSigstore, bundle: &str, identity: &str) -> Run {
    let mut c = provenant(d);
    c.args([
        "verify",
        "--trusted-root",
        m.trusted_root.to_str().unwrap(),
        "--certificate-identity",
        identity,
        "--certificate-oidc-issuer",
        ISSUER,
        "--require-tlog",
        bundle,
    ]);
    run(c)
}

/// Both verifiers refuse `bundle` (written into `d` from `v`).
fn both_reject(d: &Path, m: &MockSigstore, v: &Value, what: &str) {
    std::fs::write(d.join("t.sigstore.json"), serde_json::to_vec(v).unwrap()).unwrap();
    let r = js(d, m, "t.sigstore.json", &[]);
    assert_eq!(
        r.code, 1,
        "{what}: sigstore-js accepted it: {}{}",
        r.stdout, r.stderr
    );
    let p = verify_keyless(d, m, "t.sigstore.json", SA);
    assert_eq!(
        p.code,
        exit::INVALID,
        "{what}: provenant verify\nstdout: {}\nstderr: {}",
        p.stdout,
        p.stderr
    );
    assert!(!p.stderr.contains("panicked"), "{}", p.stderr);
    assert_eq!(
        p.stderr
            .lines()
            .filter(|l| l.starts_with("provenant: error:"))
            .count(),
        1,
        "{what}: {}",
        p.stderr
    );
}

/// Issue 15's "done means": a keyless attestation made by `provenant run
/// --fulcio-url --rekor-url` against the served mock verifies with
/// sigstore-js and with `provenant verify --certificate-identity
/// --trusted-root`; tampered bundles, a certificate for another identity
/// and an inclusion proof for another entry are rejected by both.
#[test]
fn keyless_run_verifies_with_sigstore_js_and_provenant_and_tampering_is_caught() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    let m = MockSigstore::start(d);
    keyless_run(d, &m, "token", "a", &[]).ok();
    keyless_run(d, &m, "token", "b", &[]).ok();
    keyless_run(d, &m, "other-token", "intruder", &[]).ok();

    let bundle = read_json(&d.join("a.sigstore.json"));
    let vm = &bundle["verificationMaterial"];
    assert!(vm["certificate"]["rawBytes"].is_string(), "{vm}");
    assert!(vm.get("publicKey").is_none());
    assert_eq!(vm["tlogEntries"].as_array().unwrap().len(), 1);
    let entry = &vm["tlogEntries"][0];
    assert_eq!(entry["kindVersion"]["kind"], "intoto");
    assert!(entry["inclusionPromise"]["signedEntryTimestamp"].is_string());
    assert!(entry["inclusionProof"]["checkpoint"]["envelope"].is_string());
    assert_eq!(bundle["dsseEnvelope"]["signatures"][0]["keyid"], "");

    // Independent verifier first, then ours.
    let r = js(d, &m, "a.sigstore.json", &[]);
    assert_eq!(r.code, 0, "sigstore-js: {}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout.trim(), format!("OK {SA}"));
    let v = verify_keyless(d, &m, "a.sigstore.json", SA).ok();
    assert!(v.stdout.contains("out/app.bin"), "{}", v.stdout);
    assert!(
        v.stderr.contains(&format!(
            "signed by {SA} (issuer {ISSUER}); 1 transparency-log entry verified"
        )),
        "{}",
        v.stderr
    );
    // By a regular expression, anchored.
    let mut c = provenant(d);
    c.args([
        "verify",
        "--trusted-root",
        m.trusted_root.to_str().unwrap(),
        "--certificate-identity-regexp",
        "system:serviceaccount:ci:[a-z]+",
        "--certificate-oidc-issuer",
        ISSUER,
        "a.sigstore.json",
    ]);
    run(c).ok();
    let mut c = provenant(d);
    c.args([
        "verify",
        "--trusted-root",
        m.trusted_root.to_str().unwrap(),
        "--certificate-identity-regexp",
        "serviceaccount:ci:builder",
        "--certificate-oidc-issuer",
        ISSUER,
        "a.sigstore.json",
    ]);
    run(c).fails(exit::INVALID, "not by an identity asked for");

    // A certificate for another identity: both refuse it for SA.
    let r = js(d, &m, "intruder.sigstore.json", &[]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("certificate identity error"),
        "{}",
        r.stderr
    );
    verify_keyless(d, &m, "intruder.sigstore.json", SA)
        .fails(exit::INVALID, "system:serviceaccount:ci:intruder");
    // ... nor does the issuer match another issuer.
    let mut c = provenant(d);
    c.args([
        "verify",
        "--trusted-root",
        m.trusted_root.to_str().unwrap(),
        "--certificate-identity",
        SA,
        "--certificate-oidc-issuer",
        "https://token.actions.githubusercontent.com",
        "a.sigstore.json",
    ]);
    run(c).fails(exit::INVALID, "not by an identity asked for");

    let a = bundle.clone();
    let b = read_json(&d.join("b.sigstore.json"));
    let intruder = read_json(&d.join("intruder.sigstore.json"));

    // The statement changed after signing.
    let mut x = a.clone();
    let payload = b64()
        .decode(x["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    let changed = String::from_utf8(payload)
        .unwrap()
        .replace("out/app.bin", "out/evil.bin");
    x["dsseEnvelope"]["payload"] = b64().encode(changed).into();
    both_reject(d, &m, &x, "payload changed");

    // Another signature (b's) over a's statement.
    let mut x = a.clone();
    x["dsseEnvelope"]["signatures"][0]["sig"] = b["dsseEnvelope"]["signatures"][0]["sig"].clone();
    both_reject(d, &m, &x, "signature swapped");

    // The intruder's certificate put in a's place (and its signature).
    let mut x = a.clone();
    x["verificationMaterial"]["certificate"] =
        intruder["verificationMaterial"]["certificate"].clone();
    both_reject(d, &m, &x, "certificate of another identity swapped in");
    let mut x = intruder.clone();
    x["verificationMaterial"]["certificate"] = a["verificationMaterial"]["certificate"].clone();
    both_reject(d, &m, &x, "our certificate on the intruder's signature");

    // An inclusion proof (and its checkpoint) for another entry.
    let mut x = a.clone();
    x["verificationMaterial"]["tlogEntries"][0]["inclusionProof"] =
        b["verificationMaterial"]["tlogEntries"][0]["inclusionProof"].clone();
    both_reject(d, &m, &x, "inclusion proof of another entry");

    // Another entry altogether (b's: valid SET, proof and checkpoint).
    let mut x = a.clone();
    x["verificationMaterial"]["tlogEntries"] = b["verificationMaterial"]["tlogEntries"].clone();
    both_reject(d, &m, &x, "log entry of another signature");

    // The SET changed, the integrated time moved, the checkpoint forged.
    let mut x = a.clone();
    let e = &mut x["verificationMaterial"]["tlogEntries"][0];
    e["inclusionPromise"]["signedEntryTimestamp"] = b["verificationMaterial"]["tlogEntries"][0]
        ["inclusionPromise"]["signedEntryTimestamp"]
        .clone();
    both_reject(d, &m, &x, "SET of another entry");
    let mut x = a.clone();
    let e = &mut x["verificationMaterial"]["tlogEntries"][0];
    let t: i64 = e["integratedTime"].as_str().unwrap().parse().unwrap();
    e["integratedTime"] = (t + 1).to_string().into();
    both_reject(d, &m, &x, "integrated time moved");
    let mut x = a.clone();
    let e = &mut x["verificationMaterial"]["tlogEntries"][0];
    let cp = e["inclusionProof"]["checkpoint"]["envelope"]
        .as_str()
        .unwrap()
        .to_string();
    let mut lines: Vec<String> = cp.split('\n').map(str::to_string).collect();
    lines[1] = "2".into();
    e["inclusionProof"]["checkpoint"]["envelope"] = lines.join("\n").into();
    e["inclusionProof"]["treeSize"] = "2".into();
    both_reject(d, &m, &x, "checkpoint edited");

    // No log entry at all: neither accepts it when one is required.
    let mut x = a.clone();
    x["verificationMaterial"]["tlogEntries"] = Value::Array(vec![]);
    both_reject(d, &m, &x, "no log entry");

    // A trusted root of another Sigstore (another mock): nothing chains.
    let other = tempfile::tempdir().unwrap();
    let m2 = MockSigstore::start(other.path());
    let p = {
        let mut c = provenant(d);
        c.args([
            "verify",
            "--trusted-root",
            m2.trusted_root.to_str().unwrap(),
            "--certificate-identity",
            SA,
            "--certificate-oidc-issuer",
            ISSUER,
            "a.sigstore.json",
        ]);
        run(c)
    };
    p.fails(exit::INVALID, "transparency-log entry 0");
    let r = sigstore_js_verify(
        &d.join("a.sigstore.json"),
        &m2.trusted_root,
        &[
            "--certificate-identity",
            SA,
            "--certificate-oidc-issuer",
            ISSUER,
        ],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);

    // Without the trust material, provenant says what it needs.
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "a.sigstore.json"]);
    keygen(d, "k", "ecdsa-p256");
    run(c).fails(exit::CANNOT_CHECK, "--trusted-root");
}

/// The ephemeral key never touches the disk, the keyid is empty and the
/// token is never written anywhere or echoed.
#[test]
fn keyless_leaves_no_key_and_never_echoes_the_token() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    let m = MockSigstore::start(d);
    let r = keyless_run(d, &m, "token", "a", &[]).ok();
    let tok = std::fs::read_to_string(d.join("token")).unwrap();
    let payload_part = tok.split('.').nth(1).unwrap();
    assert!(!r.stderr.contains(payload_part) && !r.stdout.contains(payload_part));
    for entry in walk(d) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("PRIVATE KEY"), "{}", entry.display());
        if entry.file_name().unwrap() != "token" {
            assert!(!text.contains(payload_part), "token in {}", entry.display());
        }
    }
}

fn walk(d: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// An RFC 3161 timestamp from the mock TSA: sigstore-js counts it as a
/// second verified time, provenant verifies it, and a timestamp of
/// something else is refused by both.
#[test]
fn timestamps_from_the_tsa_verify_and_tampered_ones_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    let m = MockSigstore::start(d);
    keyless_run(d, &m, "token", "a", &["--tsa-url", &m.url]).ok();
    keyless_run(d, &m, "token", "b", &["--tsa-url", &m.url]).ok();
    let a = read_json(&d.join("a.sigstore.json"));
    let b = read_json(&d.join("b.sigstore.json"));
    let ts = &a["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"];
    assert_eq!(ts.as_array().unwrap().len(), 1, "{a}");
    let r = js(d, &m, "a.sigstore.json", &["--timestamp-threshold", "2"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    verify_keyless(d, &m, "a.sigstore.json", SA).ok();

    // b's timestamp (of b's signature) on a.
    let mut x = a.clone();
    x["verificationMaterial"]["timestampVerificationData"] =
        b["verificationMaterial"]["timestampVerificationData"].clone();
    both_reject(d, &m, &x, "timestamp of another signature");
    // A byte of the token changed.
    let mut x = a.clone();
    let mut der = b64()
        .decode(ts[0]["signedTimestamp"].as_str().unwrap())
        .unwrap();
    let n = der.len();
    der[n - 5] ^= 1;
    x["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]
        ["signedTimestamp"] = b64().encode(&der).into();
    both_reject(d, &m, &x, "timestamp signature changed");
    // The timestamp alone (no log entry) is enough time for both when no
    // log entry is required.
    let mut x = a.clone();
    x["verificationMaterial"]["tlogEntries"] = Value::Array(vec![]);
    std::fs::write(
        d.join("tsa-only.sigstore.json"),
        serde_json::to_vec(&x).unwrap(),
    )
    .unwrap();
    let r = sigstore_js_verify(
        &d.join("tsa-only.sigstore.json"),
        &m.trusted_root,
        &[
            "--certificate-identity",
            SA,
            "--certificate-oidc-issuer",
            ISSUER,
            "--tlog-threshold",
            "0",
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let mut c = provenant(d);
    c.args([
        "verify",
        "--trusted-root",
        m.trusted_root.to_str().unwrap(),
        "--certificate-identity",
        SA,
        "--certificate-oidc-issuer",
        ISSUER,
        "tsa-only.sigstore.json",
    ]);
    run(c).ok();
}

/// Key-based signing with Rekor, as cosign does it: the bundle keeps its
/// public-key hint and gains a log entry that both verifiers check.
#[test]
fn key_signing_with_rekor() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    keygen(d, "k", "ecdsa-p256");
    keygen(d, "other", "ecdsa-p256");
    let m = MockSigstore::start(d);
    let mut c = attest_cmd(d, "k.key", &["out"], "k.intoto.jsonl");
    c.args(["--bundle", "k.sigstore.json", "--rekor-url", &m.url]);
    std::fs::create_dir_all(d.join("out")).unwrap();
    write(&d.join("out/app.bin"), b"app");
    run(c).ok();
    let bundle = read_json(&d.join("k.sigstore.json"));
    assert!(bundle["verificationMaterial"]["publicKey"]["hint"].is_string());
    assert_eq!(
        bundle["verificationMaterial"]["tlogEntries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = sigstore_js_verify(
        &d.join("k.sigstore.json"),
        &m.trusted_root,
        &[
            "--key",
            d.join("k.pub").to_str().unwrap(),
            "--tlog-threshold",
            "1",
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let verify = |extra: &[&str], file: &str| {
        let mut c = provenant(d);
        c.args(["verify", "--key", "k.pub"]).args(extra).arg(file);
        run(c)
    };
    let tr = m.trusted_root.to_str().unwrap().to_string();
    // The entry checked against the trusted root, also with certificate
    // identities given beside the key: the key vouches for a key-signed
    // bundle (the identities are for certificate-signed ones).
    let with_identities = [
        "--trusted-root",
        &tr,
        "--certificate-identity",
        "someone@example.com",
        "--certificate-oidc-issuer",
        "https://issuer.example.com",
    ];
    for args in [
        &["--trusted-root", &tr, "--require-tlog"][..],
        &with_identities,
    ] {
        let v = verify(args, "k.sigstore.json").ok();
        assert!(
            v.stderr.contains("1 transparency-log entry verified"),
            "{args:?}: {}",
            v.stderr
        );
    }
    // Without the trusted root the key still vouches; the entry is noted
    // as unchecked.
    let v = verify(&[], "k.sigstore.json").ok();
    assert!(v.stderr.contains("not checked"), "{}", v.stderr);
    // The bare envelope carries no entry: refused when one is required,
    // and without a trusted root nothing is said of entries it lacks.
    verify(&["--trusted-root", &tr, "--require-tlog"], "k.intoto.jsonl")
        .fails(exit::INVALID, "no transparency-log entry");
    let v = verify(&[], "k.intoto.jsonl").ok();
    assert!(!v.stderr.contains("transparency-log"), "{}", v.stderr);
    // An entry logging another key's signature: refused.
    let mut c = attest_cmd(d, "other.key", &["out"], "o.intoto.jsonl");
    c.args(["--bundle", "o.sigstore.json", "--rekor-url", &m.url]);
    run(c).ok();
    let mut x = bundle.clone();
    x["verificationMaterial"]["tlogEntries"] =
        read_json(&d.join("o.sigstore.json"))["verificationMaterial"]["tlogEntries"].clone();
    std::fs::write(d.join("x.sigstore.json"), serde_json::to_vec(&x).unwrap()).unwrap();
    verify(&["--trusted-root", &tr], "x.sigstore.json")
        .fails(exit::INVALID, "transparency-log entry 0");
    let r = sigstore_js_verify(
        &d.join("x.sigstore.json"),
        &m.trusted_root,
        &["--key", d.join("k.pub").to_str().unwrap()],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
}

/// Rekor down: the attestation is written, spooled, and `provenant
/// publish` logs it later and rewrites the bundle, which then verifies.
#[test]
fn rekor_down_spools_and_publish_finishes_the_upload() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    let m = MockSigstore::start(d);
    m.rekor_down(true);
    let r = keyless_run(
        d,
        &m,
        "token",
        "a",
        &["--publish-timeout", "3", "--spool", "spool"],
    )
    .ok();
    assert!(r.stderr.contains("not witnessed yet"), "{}", r.stderr);
    assert!(d.join("a.intoto.jsonl").is_file());
    let pending: Vec<_> = std::fs::read_dir(d.join("spool/witness"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .collect();
    assert_eq!(pending.len(), 1);
    // Not verifiable with a required log entry yet.
    let r = js(d, &m, "a.sigstore.json", &[]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    verify_keyless(d, &m, "a.sigstore.json", SA).fails(exit::INVALID, "no transparency-log entry");

    // Still down: publish keeps it and says so (exit 3).
    let mut c = provenant(d);
    c.args(["publish", "spool", "--timeout", "2"]);
    let r = run(c);
    assert_eq!(r.code, exit::CANNOT_CHECK, "{}", r.stderr);
    assert!(pending[0].path().is_file());

    m.rekor_down(false);
    let mut c = provenant(d);
    c.args(["publish", "spool"]);
    let r = run(c).ok();
    assert!(
        r.stdout.contains("now carries the log entry"),
        "{}",
        r.stdout
    );
    assert!(!pending[0].path().exists());
    let r = js(d, &m, "a.sigstore.json", &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    verify_keyless(d, &m, "a.sigstore.json", SA).ok();
    // Nothing left: a second publish does nothing.
    let mut c = provenant(d);
    c.args(["publish", "spool"]);
    run(c).ok();
}

/// A policy can require a certificate identity and a log entry.
#[test]
fn policy_identities_and_transparency_log() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    let m = MockSigstore::start(d);
    keyless_run(d, &m, "token", "a", &[]).ok();
    std::fs::copy(&m.trusted_root, d.join("root.json")).unwrap();
    let policy = |subject: &str| {
        format!(
            "version: 1\nidentities:\n  - issuer: {ISSUER}\n    subject: \"{subject}\"\ntrustedRoot: root.json\ntransparencyLog: required\nexitCode: any\n"
        )
    };
    let verify = |p: &str| {
        write(&d.join("policy.yaml"), p.as_bytes());
        let mut c = provenant(d);
        c.args(["verify", "--policy", "policy.yaml", "a.sigstore.json"]);
        run(c)
    };
    verify(&policy("system:serviceaccount:ci:*")).ok();
    verify(&policy("system:serviceaccount:prod:*"))
        .fails(exit::INVALID, "not by an identity asked for");
    // Keys only: a keyless attestation has no key to match.
    keygen(d, "k", "ecdsa-p256");
    verify("version: 1\nkeys:\n  - path: k.pub\nexitCode: any\n")
        .fails(exit::CANNOT_CHECK, "--trusted-root");
    // Identities need the trust material.
    verify(&format!(
        "version: 1\nidentities:\n  - issuer: {ISSUER}\n    subject: x\n"
    ))
    .fails(exit::CANNOT_CHECK, "trustedRoot");
    // A key-signed bundle without a log entry fails `transparencyLog: required`.
    let mut c = attest_cmd(d, "k.key", &["out"], "k.intoto.jsonl");
    c.args(["--bundle", "k.sigstore.json"]);
    run(c).ok();
    write(
        &d.join("policy.yaml"),
        b"version: 1\nkeys:\n  - path: k.pub\ntrustedRoot: root.json\ntransparencyLog: required\nexitCode: any\n",
    );
    let mut c = provenant(d);
    c.args(["verify", "--policy", "policy.yaml", "k.sigstore.json"]);
    run(c).fails(exit::INVALID, "no transparency-log entry");
}

/// Everything that can be wrong shows before the build runs: no log or
/// timestamp authority, Fulcio unreachable, an expired or garbled token,
/// in-toto links (which need a key).
#[test]
fn keyless_problems_show_before_the_build() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    let m = MockSigstore::start(d);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    write(&d.join("expired"), token(SA, ISSUER, -60).as_bytes());
    write(&d.join("garbled"), b"not a token");
    let attempt = |args: &[&str]| {
        let mut c = provenant(d);
        c.args(["run", "--material", "src", "--product", "out"])
            .args(args)
            .args(["--", "sh", "-c", "touch ran"]);
        let r = run(c);
        assert!(!d.join("ran").exists(), "the command ran: {}", r.stderr);
        r
    };
    attempt(&["--fulcio-url", &m.url, "--identity-token", "token"])
        .fails(exit::USAGE, "needs --rekor-url");
    attempt(&[
        "--fulcio-url",
        &m.url,
        "--identity-token",
        "token",
        "--rekor-url",
        &m.url,
        "--in-toto-link",
        "links",
        "--step-name",
        "build",
    ])
    .fails(exit::USAGE, "--in-toto-link needs a key");
    attempt(&[
        "--fulcio-url",
        &closed,
        "--identity-token",
        "token",
        "--rekor-url",
        &m.url,
    ])
    .fails(exit::CANNOT_CHECK, "not reachable");
    attempt(&[
        "--fulcio-url",
        &m.url,
        "--identity-token",
        "expired",
        "--rekor-url",
        &m.url,
    ])
    .fails(exit::CANNOT_CHECK, "expired");
    attempt(&[
        "--fulcio-url",
        &m.url,
        "--identity-token",
        "garbled",
        "--rekor-url",
        &m.url,
    ])
    .fails(exit::CANNOT_CHECK, "not a JWT");
    attempt(&[
        "--fulcio-url",
        &m.url,
        "--identity-token",
        "missing",
        "--rekor-url",
        &m.url,
    ])
    .fails(exit::CANNOT_CHECK, "missing");
    attempt(&[
        "--fulcio-url",
        "http://fulcio.example.com",
        "--identity-token",
        "token",
        "--rekor-url",
        &m.url,
    ])
    .fails(exit::USAGE, "loopback");
    attempt(&[
        "--fulcio-url",
        &m.url,
        "--identity-token",
        "token",
        "--rekor-url",
        "http://rekor.example.com",
    ])
    .fails(exit::USAGE, "loopback");
    attempt(&[
        "--fulcio-url",
        &m.url,
        "--identity-token",
        "token",
        "--rekor-url",
        &closed,
    ])
    .fails(exit::CANNOT_CHECK, "not reachable");
    attempt(&[
        "--fulcio-url",
        &m.url,
        "--identity-token",
        "token",
        "--key",
        "k.key",
        "--rekor-url",
        &m.url,
    ])
    .fails(exit::USAGE, "choose one way to sign");
}

/// Each part of the trusted root is used: a CT log, Fulcio CA, Rekor key
/// or timestamp authority that is not the one that signed makes both
/// verifiers refuse the bundle, each with provenant's reason.
#[test]
fn every_part_of_the_trusted_root_matters() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    let m = MockSigstore::start(d);
    keyless_run(d, &m, "token", "a", &["--tsa-url", &m.url]).ok();
    let root = read_json(&m.trusted_root);
    let tlog_key = root["tlogs"][0]["publicKey"]["rawBytes"].clone();
    let ct_key = root["ctlogs"][0]["publicKey"]["rawBytes"].clone();
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "CT log key",
            Box::new(move |r: &mut Value| {
                r["ctlogs"][0]["publicKey"]["rawBytes"] = tlog_key.clone()
            }),
            "SCT",
        ),
        (
            "Rekor key",
            Box::new(move |r: &mut Value| r["tlogs"][0]["publicKey"]["rawBytes"] = ct_key.clone()),
            "signed entry timestamp does not verify",
        ),
        (
            "Fulcio CA expired before the signature",
            Box::new(|r: &mut Value| {
                r["certificateAuthorities"][0]["validFor"]["end"] = "2001-01-01T00:00:00Z".into()
            }),
            "does not chain to a trusted Fulcio CA",
        ),
        (
            "no timestamp authority",
            Box::new(|r: &mut Value| r["timestampAuthorities"] = Value::Array(vec![])),
            "RFC 3161 timestamp 0",
        ),
    ];
    for (what, change, needle) in cases {
        let mut r = root.clone();
        change(&mut r);
        std::fs::write(d.join("root.json"), serde_json::to_vec(&r).unwrap()).unwrap();
        let js = sigstore_js_verify(
            &d.join("a.sigstore.json"),
            &d.join("root.json"),
            &[
                "--certificate-identity",
                SA,
                "--certificate-oidc-issuer",
                ISSUER,
            ],
        );
        assert_eq!(js.code, 1, "{what}: sigstore-js accepted it");
        let mut c = provenant(d);
        c.args([
            "verify",
            "--trusted-root",
            "root.json",
            "--certificate-identity",
            SA,
            "--certificate-oidc-issuer",
            ISSUER,
            "a.sigstore.json",
        ]);
        run(c).fails(exit::INVALID, needle);
    }
    // Garbage for a trusted root: one line, exit 3.
    write(&d.join("root.json"), b"{\"mediaType\": 1}");
    let mut c = provenant(d);
    c.args([
        "verify",
        "--trusted-root",
        "root.json",
        "--certificate-identity",
        SA,
        "--certificate-oidc-issuer",
        ISSUER,
        "a.sigstore.json",
    ]);
    run(c).fails(exit::CANNOT_CHECK, "trusted root root.json");
}

/// The sidecar (`record`) signs keyless with its pod's token, logs in
/// Rekor and timestamps; the bundle in the state directory verifies with
/// sigstore-js and provenant. The log line's bare envelope has no
/// certificate: `verify` points at the bundle.
#[test]
fn the_sidecar_signs_keyless() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    let m = MockSigstore::start(d);
    write(
        &d.join("ws/source/main.c"),
        b"int main(void) { return 0; }\n",
    );
    snapshot(d, &[]);
    write(&d.join("ws/out/app.bin"), b"\x7fELF keyless");
    write(&d.join("done"), b"0\n");
    let mut c = provenant(d);
    c.args([
        "record",
        "--state",
        "state",
        "--completion",
        "marker:done",
        "--fulcio-url",
        &m.url,
        "--identity-token",
        "token",
        "--rekor-url",
        &m.url,
        "--tsa-url",
        &m.url,
    ]);
    let r = run(c).ok();
    assert!(r.stderr.contains("witness_ms="), "{}", r.stderr);
    let r = js(
        d,
        &m,
        "state/provenance.sigstore.json",
        &["--timestamp-threshold", "2"],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v = verify_keyless(d, &m, "state/provenance.sigstore.json", SA).ok();
    assert!(v.stdout.contains("ws/out/app.bin"), "{}", v.stdout);
    verify_keyless(d, &m, "state/provenance.intoto.jsonl", SA)
        .fails(exit::CANNOT_CHECK, "verify the Sigstore bundle");
}
