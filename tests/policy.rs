//! `provenant verify --policy`: every rule accepts what it should and
//! rejects what it should, with the field path and expected vs actual on
//! one line per violation; garbage policies and attestations fail clearly.
mod common;

use std::path::Path;

use common::*;

/// An attestation of out/app built from src/, signed with k.key, builder id
/// https://ci.example.com/b/1; `fail` makes the build exit 3.
fn attestation(d: &Path, fail: bool) {
    write(&d.join("src/main.c"), b"int main(void) { return 0; }\n");
    let mut c = provenant(d);
    let cmd = if fail {
        "mkdir -p out && echo x > out/app; exit 3"
    } else {
        "mkdir -p out && echo x > out/app"
    };
    c.args([
        "run",
        "--material",
        "src",
        "--product",
        "out",
        "--key",
        "k.key",
        "-o",
        "att.jsonl",
        "--builder-id",
        "https://ci.example.com/b/1",
    ]);
    if fail {
        c.arg("--attest-failed");
    }
    c.args(["--", "sh", "-c", cmd]);
    let r = run(c);
    assert!(r.code == 0 || fail, "{}", r.stderr);
}

fn check(d: &Path, policy: &str) -> Run {
    write(
        &d.join("p.yaml"),
        format!("version: 1\nkeys:\n  - path: k.pub\n{policy}").as_bytes(),
    );
    let mut c = provenant(d);
    c.args(["verify", "--policy", "p.yaml", "att.jsonl"]);
    run(c)
}

fn setup(fail: bool) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    keygen(t.path(), "k", "ecdsa-p256");
    keygen(t.path(), "other", "ecdsa-p256");
    attestation(t.path(), fail);
    t
}

fn violation_lines(r: &Run) -> Vec<String> {
    r.stderr
        .lines()
        .filter(|l| l.starts_with("policy violation: "))
        .map(String::from)
        .collect()
}

#[test]
fn each_rule_accepts_and_rejects() {
    let t = setup(false);
    let d = t.path();
    let kid = {
        let mut c = provenant(d);
        c.args(["verify", "--key", "k.pub", "att.jsonl"]);
        let r = run(c).ok();
        r.stderr
            .rsplit("signed by ")
            .next()
            .unwrap()
            .trim()
            .to_string()
    };
    let cases: &[(&str, &str, &str)] = &[
        // (rule, passing, failing needle)
        (
            "predicateTypes",
            "predicateTypes: [https://slsa.dev/provenance/v1]\n",
            "predicateTypes: [https://example.com/other]\n",
        ),
        (
            "builderIds",
            "builderIds: [\"https://ci.example.com/*/*\"]\n",
            "builderIds: [https://ci.example.com/b/2]\n",
        ),
        (
            "subjects",
            "subjects: [\"out/*\"]\n",
            "subjects: [\"dist/*\"]\n",
        ),
        (
            "materials.name",
            "materials:\n  - name: src/main.c\n",
            "materials:\n  - name: vendor/**\n",
        ),
        (
            "materials.digest",
            &format!(
                "materials:\n  - name: src/main.c\n    digest: sha256:{}\n",
                sha256_hex(b"int main(void) { return 0; }\n")
            ),
            "materials:\n  - name: src/main.c\n    digest: sha256:0000\n",
        ),
        ("maxAge", "maxAge: 1h\n", "maxAge: 0s\n"),
    ];
    for (rule, pass, fail) in cases {
        let r = check(d, pass);
        assert_eq!(r.code, 0, "{rule} should pass:\n{}", r.stderr);
        if *rule == "maxAge" {
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        let r = check(d, fail).fails(5, "1 policy violation(s) of p.yaml");
        let v = violation_lines(&r);
        assert_eq!(v.len(), 1, "{rule}: {}", r.stderr);
        assert!(
            v[0].contains("expected") && v[0].contains(", got "),
            "{rule}: {}",
            v[0]
        );
    }
    // Field paths and values in the message.
    let r = check(d, "builderIds: [https://ci.example.com/b/2]\n");
    assert!(violation_lines(&r)[0].contains("att.jsonl: predicate.runDetails.builder.id: expected one of [\"https://ci.example.com/b/2\"], got \"https://ci.example.com/b/1\""), "{}", r.stderr);
    let r = check(d, "subjects: [\"dist/*\"]\n");
    assert!(
        violation_lines(&r)[0].contains(
            "subject[0].name: expected a name matching one of [\"dist/*\"], got \"out/app\""
        ),
        "{}",
        r.stderr
    );
    // Several violations: one line each.
    let r = check(
        d,
        "builderIds: [x]\nsubjects: [y]\nmaterials:\n  - uri: \"git+https://example.com/*\"\n",
    )
    .fails(5, "3 policy violation(s)");
    assert_eq!(violation_lines(&r).len(), 3, "{}", r.stderr);

    // keys: pinned id right and wrong; a key that did not sign; threshold.
    write(
        &d.join("p.yaml"),
        format!("version: 1\nkeys:\n  - path: k.pub\n    id: {kid}\n").as_bytes(),
    );
    let mut c = provenant(d);
    c.args(["verify", "--policy", "p.yaml", "att.jsonl"]);
    run(c).ok();
    write(
        &d.join("p.yaml"),
        b"version: 1\nkeys:\n  - path: k.pub\n    id: abcd\n",
    );
    let mut c = provenant(d);
    c.args(["verify", "--policy", "p.yaml", "att.jsonl"]);
    run(c).fails(3, "policy p.yaml: keys[0].id: k.pub has key id");
    write(
        &d.join("p.yaml"),
        b"version: 1\nkeys:\n  - path: other.pub\n",
    );
    let mut c = provenant(d);
    c.args(["verify", "--policy", "p.yaml", "att.jsonl"]);
    run(c).fails(4, "att.jsonl");
    write(
        &d.join("p.yaml"),
        b"version: 1\nkeys:\n  - path: k.pub\n  - path: other.pub\nthreshold: 2\n",
    );
    let mut c = provenant(d);
    c.args(["verify", "--policy", "p.yaml", "att.jsonl"]);
    run(c).fails(4, "att.jsonl");
}

#[test]
fn failed_builds_only_when_allowed() {
    let t = setup(true);
    let d = t.path();
    let r = check(d, "").fails(5, "1 policy violation(s)");
    assert!(violation_lines(&r)[0].contains("predicate.runDetails.byproducts[exit-code]: expected exit code 0, observed or claimed (policy exitCode: claimed-zero), got 3 (observed, source \"run\")"), "{}", r.stderr);
    check(d, "allowFailed: true\n").ok();
}

#[test]
fn garbage_policies_and_attestations_fail_clearly() {
    let t = setup(false);
    let d = t.path();
    let bad: &[(&str, &str)] = &[
        (
            "version: 1\nkeys:\n  - path: k.pub\nbuilderId: [x]\n",
            "unknown field `builderId`",
        ),
        (
            "version: 2\nkeys:\n  - path: k.pub\n",
            "version: 2 is not supported",
        ),
        (
            "version: 1\nkeys: []\n",
            "keys: at least one trusted key (keys) or certificate identity (identities) is required",
        ),
        ("version: 1\nkeys:\n  - path: missing.pub\n", "missing.pub"),
        ("version: 1\nkeys:\n  - path: k.key\n", "a public key"),
        (
            "version: 1\nkeys:\n  - path: k.pub\nthreshold: 3\n",
            "threshold: 3 is not between 1 and the number of keys (1)",
        ),
        (
            "version: 1\nkeys:\n  - path: k.pub\nmaxAge: soon\n",
            "maxAge: \"soon\" is not a duration",
        ),
        (
            "version: 1\nkeys:\n  - path: k.pub\nsubjects: [\"a[\"]\n",
            "subjects[0]: bad pattern",
        ),
        (
            "version: 1\nkeys:\n  - path: k.pub\nmaterials:\n  - {}\n",
            "materials[0]: give at least one of name, uri, digest",
        ),
        (
            "version: 1\nkeys:\n  - path: k.pub\nmaterials:\n  - digest: abc\n",
            "materials[0].digest: \"abc\" is not ALG:HEX",
        ),
        ("{{{{", "policy p.yaml:"),
        ("\u{0}\u{1}binary", "policy p.yaml:"),
    ];
    for (text, needle) in bad {
        write(&d.join("p.yaml"), text.as_bytes());
        let mut c = provenant(d);
        c.args(["verify", "--policy", "p.yaml", "att.jsonl"]);
        run(c).fails(3, needle);
    }
    let mut c = provenant(d);
    c.args(["verify", "--policy", "nope.yaml", "att.jsonl"]);
    run(c).fails(3, "cannot read policy nope.yaml");
    // Garbage attestations under a valid policy.
    write(&d.join("p.yaml"), b"version: 1\nkeys:\n  - path: k.pub\n");
    for (bytes, code) in [
        (&b"not json"[..], 4),
        (&b"{\"payload\":1}"[..], 4),
        (&b""[..], 4),
    ] {
        write(&d.join("g.jsonl"), bytes);
        let mut c = provenant(d);
        c.args(["verify", "--policy", "p.yaml", "g.jsonl"]);
        run(c).fails(code, "g.jsonl");
    }
}

/// Signs `statement` with k.key into `h.jsonl` and verifies it under a
/// policy trusting k.pub plus `rules`.
fn check_statement(d: &Path, statement: &serde_json::Value, rules: &str) -> Run {
    write(
        &d.join("h.jsonl"),
        sign_statement(d, "k", statement).as_bytes(),
    );
    write(
        &d.join("p.yaml"),
        format!("version: 1\nkeys:\n  - path: k.pub\n{rules}").as_bytes(),
    );
    let mut c = provenant(d);
    c.args(["verify", "--policy", "p.yaml", "h.jsonl"]);
    run(c)
}

fn keys_only() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    keygen(t.path(), "k", "ecdsa-p256");
    keygen(t.path(), "other", "ecdsa-p256");
    t
}

fn no_ann() -> serde_json::Value {
    serde_json::json!({})
}

/// Issue 17 #4: a missing, unknown, non-numeric or doubled exit status
/// never passes a rule that asks for 0; each rule accepts exactly what
/// docs/trust.md says.
#[test]
fn exit_status_rules() {
    let t = keys_only();
    let d = t.path();
    let b = exit_byproduct;
    let cases: Vec<(&str, serde_json::Value)> = vec![
        (
            "observed 0",
            serde_json::json!([b(Some("0"), Some("observed"))]),
        ),
        (
            "claimed 0",
            serde_json::json!([b(Some("0"), Some("claimed"))]),
        ),
        ("legacy 0", serde_json::json!([b(Some("0"), None)])),
        (
            "observed 1",
            serde_json::json!([b(Some("1"), Some("observed"))]),
        ),
        (
            "claimed 1",
            serde_json::json!([b(Some("1"), Some("claimed"))]),
        ),
        ("unknown", serde_json::json!([b(None, Some("unknown"))])),
        ("absent", serde_json::json!([])),
        (
            "not a number",
            serde_json::json!([b(Some("zero"), Some("observed"))]),
        ),
        (
            "padded",
            serde_json::json!([b(Some(" 0"), Some("observed"))]),
        ),
        (
            "twice",
            serde_json::json!([
                b(Some("0"), Some("observed")),
                b(Some("1"), Some("observed"))
            ]),
        ),
        (
            "bad origin",
            serde_json::json!([b(Some("0"), Some("kernel"))]),
        ),
    ];
    // (rule, cases that pass)
    let rules: &[(&str, &[&str])] = &[
        ("exitCode: observed-zero\n", &["observed 0"]),
        (
            "exitCode: claimed-zero\n",
            &["observed 0", "claimed 0", "legacy 0"],
        ),
        ("", &["observed 0", "claimed 0", "legacy 0"]),
        (
            "allowFailed: false\n",
            &["observed 0", "claimed 0", "legacy 0"],
        ),
        (
            "exitCode: any\n",
            &[
                "observed 0",
                "claimed 0",
                "legacy 0",
                "observed 1",
                "claimed 1",
                "unknown",
                "absent",
            ],
        ),
        (
            "allowFailed: true\n",
            &[
                "observed 0",
                "claimed 0",
                "legacy 0",
                "observed 1",
                "claimed 1",
                "unknown",
                "absent",
            ],
        ),
    ];
    for (rule, passing) in rules {
        for (name, by) in &cases {
            let st = slsa_statement("https://ci.example.com/b/1", by.clone(), no_ann(), no_ann());
            let r = check_statement(d, &st, rule);
            if passing.contains(name) {
                assert_eq!(r.code, 0, "{rule:?} should accept {name}: {}", r.stderr);
            } else {
                let r = r.fails(5, "1 policy violation(s)");
                assert!(
                    violation_lines(&r)[0].contains("predicate.runDetails.byproducts[exit-code]"),
                    "{rule:?} {name}: {}",
                    r.stderr
                );
            }
        }
    }
    let st = slsa_statement(
        "https://ci.example.com/b/1",
        serde_json::json!([]),
        no_ann(),
        no_ann(),
    );
    check_statement(d, &st, "exitCode: any\nallowFailed: true\n")
        .fails(3, "give exitCode or its old spelling allowFailed, not both");
    check_statement(d, &st, "exitCode: zero\n").fails(3, "policy p.yaml");
}

/// Issue 17 #5: an input modified during the build is rejected unless the
/// policy allows it.
#[test]
fn input_change_rule() {
    let t = keys_only();
    let d = t.path();
    let by = serde_json::json!([
        exit_byproduct(Some("0"), Some("observed")),
        {"name": "src/main.c", "digest": {"sha256": "c".repeat(64)}, "annotations": {"provenant.materialChange": "modified"}}
    ]);
    let st = slsa_statement("https://ci.example.com/b/1", by, no_ann(), no_ann());
    let r = check_statement(d, &st, "").fails(5, "1 policy violation(s)");
    assert!(
        violation_lines(&r)[0].contains("expected no input changed during the build (policy inputChanges: reject), got 1 changed: \"src/main.c\" \"modified\""),
        "{}",
        r.stderr
    );
    check_statement(d, &st, "inputChanges: reject\n").fails(5, "1 policy violation(s)");
    check_statement(d, &st, "inputChanges: allow\n").ok();
}

/// Issue 12: subjects read from the builder's own files are accepted,
/// accepted only when provenant checked them, or refused.
#[test]
fn claimed_subject_rule() {
    let t = keys_only();
    let d = t.path();
    let claim = |check: &str| {
        serde_json::json!({
            "provenant.origin": "claimed",
            "provenant.claimSource": "kpack-report",
            "provenant.claimFile": "/layers/report.toml",
            "provenant.claimCheck": check,
        })
    };
    let by = serde_json::json!([exit_byproduct(Some("0"), Some("observed"))]);
    let mk = |ann| slsa_statement("https://ci.example.com/b/1", by.clone(), ann, no_ann());
    // (annotations, accept, checked (default), refuse)
    let cases = [
        (no_ann(), true, true, true),
        (claim("registry"), true, true, false),
        // The layout's blobs are the builder's writing: not a check.
        (claim("oci-layout"), true, false, false),
        (claim("allowed-repository"), true, true, false),
        (claim("none"), true, false, false),
        (
            serde_json::json!({"provenant.origin": "claimed"}),
            true,
            false,
            false,
        ),
        (
            serde_json::json!({"provenant.origin": "observed"}),
            true,
            false,
            false,
        ),
    ];
    for (ann, accept, checked, refuse) in cases {
        let st = mk(ann.clone());
        for (rule, want) in [
            ("claimedSubjects: accept\n", accept),
            ("claimedSubjects: checked\n", checked),
            ("", checked),
            ("claimedSubjects: refuse\n", refuse),
        ] {
            let r = check_statement(d, &st, rule);
            if want {
                assert_eq!(r.code, 0, "{rule:?} {ann}: {}", r.stderr);
            } else {
                let r = r.fails(5, "1 policy violation(s)");
                assert!(
                    violation_lines(&r)[0].contains("subject[0].annotations[provenant.origin]"),
                    "{}",
                    r.stderr
                );
            }
        }
    }
    let st = mk(claim("none"));
    let r = check_statement(d, &st, "").fails(5, "1 policy violation(s)");
    assert!(
        violation_lines(&r)[0].contains(
            "got a claim read from \"/layers/report.toml\" (\"kpack-report\"), claimCheck \"none\""
        ),
        "{}",
        r.stderr
    );
}

/// Issue 17 #3: `*` never crosses `/`, and `..` segments never match.
#[test]
fn globs_do_not_cross_segments_and_dot_dot_is_refused() {
    let t = keys_only();
    let d = t.path();
    let by = serde_json::json!([exit_byproduct(Some("0"), Some("observed"))]);
    let evil = "https://ci.example.com/builders/prod/../../../evil.example.org";
    let st = slsa_statement(evil, by.clone(), no_ann(), no_ann());
    for rule in [
        "builderIds: [\"https://ci.example.com/builders/*\"]\n",
        "builderIds: [\"https://ci.example.com/builders/**\"]\n",
    ] {
        let r = check_statement(d, &st, rule).fails(5, "1 policy violation(s)");
        assert!(
            violation_lines(&r)[0].contains("predicate.runDetails.builder.id"),
            "{}",
            r.stderr
        );
    }
    let ok = slsa_statement(
        "HTTPS://CI.example.com/builders/%70rod",
        by.clone(),
        no_ann(),
        no_ann(),
    );
    check_statement(
        d,
        &ok,
        "builderIds: [\"https://ci.example.com/builders/*\"]\n",
    )
    .ok();
    check_statement(
        d,
        &ok,
        "builderIds: [\"https://CI.example.com/builders/*\"]\n",
    )
    .fails(
        3,
        "builderIds[0]: pattern \"https://CI.example.com/builders/*\" can never match",
    );

    let mut st = slsa_statement("https://ci.example.com/b/1", by.clone(), no_ann(), no_ann());
    st["subject"][0]["name"] = "out/../../etc/passwd".into();
    for rule in [
        "subjects: [\"out/*\"]\n",
        "subjects: [\"out/**\"]\n",
        "subjects: [\"**\"]\n",
    ] {
        let r = check_statement(d, &st, rule).fails(5, "1 policy violation(s)");
        assert!(
            violation_lines(&r)[0].contains("subject[0].name"),
            "{}",
            r.stderr
        );
    }
    st["subject"][0]["name"] = "out/sub/app".into();
    check_statement(d, &st, "subjects: [\"out/*\"]\n").fails(5, "1 policy violation(s)");
    check_statement(d, &st, "subjects: [\"out/**\"]\n").ok();
    // Material rules: names and URIs alike.
    st["predicate"]["buildDefinition"]["resolvedDependencies"] = serde_json::json!([
        {"name": "src/../../secret", "digest": {"sha256": "b".repeat(64)}},
        {"name": "base", "uri": "oci://registry.example.com/base/../../evil"}
    ]);
    check_statement(
        d,
        &st,
        "subjects: [\"out/**\"]\nmaterials:\n  - name: \"src/**\"\n",
    )
    .fails(5, "1 policy violation(s)");
    check_statement(
        d,
        &st,
        "subjects: [\"out/**\"]\nmaterials:\n  - uri: \"oci://registry.example.com/base/**\"\n",
    )
    .fails(5, "1 policy violation(s)");
}

/// Issue 17 #2: hostile policy files fail with one line and exit 3,
/// quickly, without a panic.
#[test]
fn hostile_policies_fail_fast_without_panics() {
    let t = keys_only();
    let d = t.path();
    let st = slsa_statement(
        "https://ci.example.com/b/1",
        serde_json::json!([exit_byproduct(Some("0"), Some("observed"))]),
        no_ann(),
        no_ann(),
    );
    let huge_glob = format!("subjects: [\"{}\"]\n", "a*".repeat(50_000));
    let deep = format!(
        "subjects: {}x{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let many: String = (0..2000).map(|i| format!("  - \"out/{i}/*\"\n")).collect();
    let block_deep: String = (0..100)
        .map(|i| format!("{}a{i}:\n", " ".repeat(i)))
        .collect();
    let big = format!("# {}\n", "x".repeat(3 << 20));
    let cases: Vec<(String, &str)> = vec![
        (
            "maxAge: 99999999999999999d\n".into(),
            "maxAge: \"99999999999999999d\" is not a duration",
        ),
        ("maxAge: 9223372036854775807s\n".into(), "maxAge"),
        (huge_glob, "subjects[0]: bad pattern"),
        (deep, "nested deeper than 16 levels"),
        (
            format!("subjects:\n{many}"),
            "subjects: more than 256 entries",
        ),
        (block_deep, "nested deeper than 16 levels"),
        (big, "larger than 262144 bytes"),
        (
            "threshold: 99999999999999999999999\n".into(),
            "policy p.yaml",
        ),
        (
            "subjects: [\"a**\"]\n".into(),
            "`**` must be a whole path segment",
        ),
        ("subjects: [\"{a,b}\"]\n".into(), "alternation"),
    ];
    for (rules, needle) in cases {
        let start = std::time::Instant::now();
        check_statement(d, &st, &rules).fails(3, needle);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{needle}: took {:?}",
            start.elapsed()
        );
    }
}

/// Issue 17 #6: the policy's key list is authoritative, and a policy that
/// accepts another predicate type can be passed by it.
#[test]
fn keys_are_authoritative_and_rules_apply_per_predicate_type() {
    let t = keys_only();
    let d = t.path();
    let st = slsa_statement(
        "https://ci.example.com/b/1",
        serde_json::json!([exit_byproduct(Some("0"), Some("observed"))]),
        no_ann(),
        no_ann(),
    );
    // Signed by `other`, which the policy does not trust.
    write(
        &d.join("o.jsonl"),
        sign_statement(d, "other", &st).as_bytes(),
    );
    write(&d.join("p.yaml"), b"version: 1\nkeys:\n  - path: k.pub\n");
    let mut c = provenant(d);
    c.args([
        "verify",
        "--policy",
        "p.yaml",
        "--key",
        "other.pub",
        "o.jsonl",
    ]);
    let r = run(c);
    assert_eq!(r.code, 2, "--key must not widen the policy: {}", r.stderr);
    let mut c = provenant(d);
    c.args(["verify", "--policy", "p.yaml", "o.jsonl"]);
    run(c).fails(4, "o.jsonl");
    let mut c = provenant(d);
    c.args([
        "verify",
        "--policy",
        "p.yaml",
        "--extra-key",
        "other.pub",
        "o.jsonl",
    ]);
    run(c).ok();
    // A key listed twice cannot count twice.
    write(
        &d.join("p2.yaml"),
        b"version: 1\nkeys:\n  - path: k.pub\n  - path: ./k.pub\nthreshold: 2\n",
    );
    let mut c = provenant(d);
    c.args(["verify", "--policy", "p2.yaml", "o.jsonl"]);
    run(c).fails(3, "is listed twice");

    // A non-SLSA predicate the policy accepts: the SLSA-only rules do not
    // apply to it, the subject rules do.
    let other = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "out/app", "digest": {"sha256": "a".repeat(64)}}],
        "predicateType": "https://example.com/test-result/v1",
        "predicate": {"passed": true}
    });
    let rules = "predicateTypes: [\"https://slsa.dev/provenance/v1\", \"https://example.com/test-result/v1\"]\nbuilderIds: [\"https://ci.example.com/*\"]\nmaxAge: 1h\nexitCode: observed-zero\n";
    check_statement(d, &other, rules).ok();
    check_statement(d, &other, &format!("{rules}subjects: [\"dist/*\"]\n"))
        .fails(5, "1 policy violation(s)");
    check_statement(
        d,
        &other,
        "predicateTypes: [\"https://slsa.dev/provenance/v1\"]\n",
    )
    .fails(5, "1 policy violation(s)");
}
