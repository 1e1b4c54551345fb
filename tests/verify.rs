//! README promises about `provenant verify` that no other test holds it
//! to (issue 20, item 6): the envelope's `keyid` is a hint that is never
//! trusted, `--json` prints exactly the verified statement and nothing of
//! an unverified one, and a validly signed envelope whose statement is not
//! an in-toto Statement v1 is rejected (the in-toto-attestation bindings,
//! run on the same files, agree that each such statement is invalid).
mod common;

use std::path::Path;
use std::process::Command;

use common::exit::*;
use common::*;

fn verify(d: &Path, args: &[&str]) -> Run {
    let mut c = provenant(d);
    c.arg("verify").args(args);
    run(c)
}

/// The key id the README defines: hex SHA-256 of the public key's DER.
fn key_id(d: &Path, pub_file: &str) -> String {
    let pem = pem::parse(std::fs::read(d.join(pub_file)).unwrap()).unwrap();
    sha256_hex(pem.contents())
}

/// `att.jsonl` (an envelope signed with `k.key` over the example tree),
/// with its signatures replaced by `sigs`, written as `name`.
fn with_signatures(d: &Path, name: &str, sigs: serde_json::Value) {
    let mut env = read_json(&d.join("att.jsonl"));
    env["signatures"] = sigs;
    write(
        &d.join(name),
        serde_json::to_string(&env).unwrap().as_bytes(),
    );
}

fn setup() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    example_tree(d);
    keygen(d, "k", "ecdsa-p256");
    keygen(d, "o", "ecdsa-p256");
    run(attest_cmd(d, "k.key", &["out"], "att.jsonl")).ok();
    t
}

#[test]
fn the_keyid_hint_is_never_trusted() {
    let t = setup();
    let d = t.path();
    let (k, o) = (key_id(d, "k.pub"), key_id(d, "o.pub"));
    let env = read_json(&d.join("att.jsonl"));
    let sig = env["signatures"][0]["sig"].clone();
    assert_eq!(env["signatures"][0]["keyid"], k.as_str(), "{env}");

    // The hint changed (to the other key's id, to nonsense) or left out:
    // the signature still verifies with the right key, and is reported as
    // that key's, whatever the hint said.
    for (name, sigs) in [
        (
            "other-hint.jsonl",
            serde_json::json!([{"keyid": o, "sig": sig}]),
        ),
        (
            "junk-hint.jsonl",
            serde_json::json!([{"keyid": "x", "sig": sig}]),
        ),
        ("no-hint.jsonl", serde_json::json!([{"sig": sig}])),
    ] {
        with_signatures(d, name, sigs);
        let r = verify(d, &["--key", "k.pub", name]).ok();
        assert!(
            r.stderr.contains(&format!("Verified OK: {name} ")),
            "{name}: {}",
            r.stderr
        );
        assert!(
            r.stderr.trim_end().ends_with(&format!("signed by {k}")),
            "{name}: {}",
            r.stderr
        );
    }

    // A hint naming the key that is trusted does not make that key's
    // signature: o.pub did not sign, whatever the envelope says.
    with_signatures(
        d,
        "claims-o.jsonl",
        serde_json::json!([{"keyid": o, "sig": sig}]),
    );
    verify(d, &["--key", "o.pub", "claims-o.jsonl"]).fails(
        INVALID,
        "claims-o.jsonl: no signature verifies with the trusted key(s) o.pub (",
    );
    // Nor does a second signature entry that only carries o's id count
    // towards a threshold of two.
    with_signatures(
        d,
        "two-hints.jsonl",
        serde_json::json!([
            {"keyid": k, "sig": sig},
            {"keyid": o, "sig": "MEUCIQDLrjCXPPLDsQZbhnPAY0o1ByPMvcUcqvJwL0v2I1mnvwIgdUAhmPVyL0cxP1pqxRZ8kLpkp5Xg3VXhIYBYNpsZOR8="}
        ]),
    );
    verify(d, &["--key", "k.pub", "two-hints.jsonl"]).ok();
    verify(
        d,
        &[
            "--key",
            "k.pub",
            "--key",
            "o.pub",
            "--threshold",
            "2",
            "two-hints.jsonl",
        ],
    )
    .fails(
        INVALID,
        "two-hints.jsonl: only 1 trusted key(s) signed, 2 required",
    );
}

#[test]
fn json_prints_exactly_the_verified_statement() {
    let t = setup();
    let d = t.path();
    let r = verify(d, &["--key", "k.pub", "--json", "att.jsonl"]).ok();
    // One JSON document, and it is the signed statement, field for field.
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&r.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", r.stdout));
    assert_eq!(docs.len(), 1, "{}", r.stdout);
    assert_eq!(docs[0], statement_of(&d.join("att.jsonl")));
    assert!(r.stderr.contains("Verified OK: att.jsonl "), "{}", r.stderr);

    // In a log, one compact line per verified attestation.
    let envelope = std::fs::read_to_string(d.join("att.jsonl")).unwrap();
    let line = format!(
        "{{\"provenantAttestation\":\"v1\",\"envelope\":{}}}\n",
        envelope.trim()
    );
    write(
        &d.join("pod.log"),
        format!("build output\n{line}more output\n{line}").as_bytes(),
    );
    let r = verify(d, &["--key", "k.pub", "--json", "pod.log"]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v, statement_of(&d.join("att.jsonl")));
    }

    // Nothing of a statement that did not verify reaches stdout.
    with_signatures(
        d,
        "bad-sig.jsonl",
        serde_json::json!([{"sig": "MEUCIQDLrjCXPPLDsQZbhnPAY0o1ByPMvcUcqvJwL0v2I1mnvwIgdUAhmPVyL0cxP1pqxRZ8kLpkp5Xg3VXhIYBYNpsZOR8="}]),
    );
    let r = verify(d, &["--key", "k.pub", "--json", "bad-sig.jsonl"])
        .fails(INVALID, "bad-sig.jsonl: no signature verifies");
    assert_eq!(r.stdout, "");
    let r = verify(d, &["--key", "o.pub", "--json", "att.jsonl"])
        .fails(INVALID, "att.jsonl: no signature verifies");
    assert_eq!(r.stdout, "");
}

/// The in-toto-attestation bindings (tests/interop/validate_statement.py)
/// on an envelope file: true when they accept its statement.
fn bindings_accept(path: &Path) -> bool {
    let mut c = Command::new(interop_python());
    c.arg(interop_script("validate_statement.py")).arg(path);
    let r = run(c);
    match r.code {
        0 => {
            assert_eq!(r.stdout.trim(), "valid", "{}{}", r.stdout, r.stderr);
            true
        }
        1 => {
            assert!(r.stdout.starts_with("invalid"), "{}{}", r.stdout, r.stderr);
            false
        }
        _ => panic!(
            "validate_statement.py failed to run: {}{}",
            r.stdout, r.stderr
        ),
    }
}

#[test]
fn a_valid_signature_over_an_invalid_statement_is_rejected() {
    let t = setup();
    let d = t.path();
    let good = statement_of(&d.join("att.jsonl"));
    let signer = provenant::sign::LocalSigner::load(&d.join("k.key")).unwrap();
    let sign = |name: &str, payload: &[u8]| {
        let env = provenant::sign::Envelope::sign("application/vnd.in-toto+json", payload, &signer)
            .unwrap();
        write(&d.join(name), env.to_json().as_bytes());
    };
    let changed = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut st = good.clone();
        f(&mut st);
        serde_json::to_vec(&st).unwrap()
    };

    // The control: the statement as made, re-signed, passes both.
    sign("control.jsonl", &serde_json::to_vec(&good).unwrap());
    verify(d, &["--key", "k.pub", "control.jsonl"]).ok();
    assert!(bindings_accept(&d.join("control.jsonl")));

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not-json.jsonl",
            b"this is not a statement".to_vec(),
            "signature valid but statement is not valid JSON",
        ),
        (
            "old-type.jsonl",
            changed(&|s| s["_type"] = "https://in-toto.io/Statement/v0.1".into()),
            "signature valid but statement _type is 'https://in-toto.io/Statement/v0.1', expected https://in-toto.io/Statement/v1",
        ),
        (
            "no-type.jsonl",
            changed(&|s| {
                s.as_object_mut().unwrap().remove("_type");
            }),
            "signature valid but statement is not valid JSON: missing field `_type`",
        ),
        (
            "empty-subject.jsonl",
            changed(&|s| s["subject"] = serde_json::json!([])),
            "signature valid but statement has no subject",
        ),
        (
            "no-subject.jsonl",
            changed(&|s| {
                s.as_object_mut().unwrap().remove("subject");
            }),
            "signature valid but statement is not valid JSON: missing field `subject`",
        ),
        (
            "digestless-subject.jsonl",
            changed(&|s| s["subject"][1]["digest"] = serde_json::json!({})),
            "signature valid but statement subject[1] has no digest",
        ),
        (
            "no-predicate-type.jsonl",
            changed(&|s| {
                s.as_object_mut().unwrap().remove("predicateType");
            }),
            "signature valid but statement is not valid JSON: missing field `predicateType`",
        ),
    ];
    for (name, payload, reason) in cases {
        sign(name, &payload);
        let r = verify(d, &["--key", "k.pub", "--json", name])
            .fails(INVALID, &format!("{name}: {reason}"));
        assert_eq!(r.stdout, "", "{name}: nothing printed of it");
        assert!(
            !bindings_accept(&d.join(name)),
            "{name}: the in-toto-attestation bindings accept what provenant rejects"
        );
    }
}
