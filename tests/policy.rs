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
    assert!(violation_lines(&r)[0].contains("predicate.runDetails.byproducts[exit-code]: expected exit code 0, observed or claimed (policy exitCode: claimed-zero), got 3 (claimed, no origin recorded)"), "{}", r.stderr);
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
            "keys: at least one trusted key is required",
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
