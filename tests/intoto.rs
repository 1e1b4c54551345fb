//! in-toto interop: a two-step chain recorded by provenant (`--in-toto-link`)
//! verifies with `in-toto-verify` (in-toto 3.1.0 from PyPI) against a layout
//! written and signed by tests/interop/intoto_layout.py; a product tampered
//! between the steps is rejected by in-toto-verify.
mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn in_toto_verify(d: &Path) -> Run {
    let py = interop_python();
    let mut c = Command::new(py.parent().unwrap().join("in-toto-verify"));
    c.current_dir(d).args([
        "--layout",
        "root.layout",
        "--verification-keys",
        "layout.pub",
        "--link-dir",
        "links",
    ]);
    run(c)
}

fn chain(d: &Path) {
    keygen(d, "source", "ecdsa-p256");
    keygen(d, "build", "ed25519");
    write(&d.join("src/main.c"), b"int main(void) { return 0; }\n");
    write(&d.join("src/util.h"), b"#define UTIL 1\n");
    let mut c = provenant(d);
    c.args([
        "attest",
        "--product",
        "src",
        "--key",
        "source.key",
        "-o",
        "source.intoto.jsonl",
        "--in-toto-link",
        "links",
        "--step-name",
        "source",
    ]);
    run(c).ok();
    let mut c = provenant(d);
    c.args([
        "run",
        "--material",
        "src",
        "--product",
        "out",
        "--key",
        "build.key",
        "-o",
        "build.intoto.jsonl",
        "--in-toto-link",
        "links",
        "--step-name",
        "build",
        "--",
        "sh",
        "-c",
        "mkdir -p out && cat src/* > out/app",
    ]);
    run(c).ok();
    let mut c = Command::new(interop_python());
    c.arg(interop_script("intoto_layout.py"))
        .arg(d)
        .arg(d.join("source.pub"))
        .arg(d.join("build.pub"));
    let r = run(c);
    assert_eq!(r.code, 0, "layout: {}{}", r.stdout, r.stderr);
}

#[test]
fn in_toto_verify_accepts_a_provenant_chain() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    chain(d);
    let links: Vec<String> = std::fs::read_dir(d.join("links"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(links.len(), 2, "{links:?}");
    let r = in_toto_verify(d);
    assert_eq!(r.code, 0, "in-toto-verify: {}{}", r.stdout, r.stderr);
}

#[test]
fn in_toto_verify_rejects_a_source_tampered_between_steps() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keygen(d, "source", "ecdsa-p256");
    keygen(d, "build", "ed25519");
    write(&d.join("src/main.c"), b"int main(void) { return 0; }\n");
    let mut c = provenant(d);
    c.args([
        "attest",
        "--product",
        "src",
        "--key",
        "source.key",
        "-o",
        "s.jsonl",
        "--in-toto-link",
        "links",
        "--step-name",
        "source",
    ]);
    run(c).ok();
    // The attacker changes the source after the source step signed it.
    write(&d.join("src/main.c"), b"int main(void) { return 1; }\n");
    let mut c = provenant(d);
    c.args([
        "run",
        "--material",
        "src",
        "--product",
        "out",
        "--key",
        "build.key",
        "-o",
        "b.jsonl",
        "--in-toto-link",
        "links",
        "--step-name",
        "build",
        "--",
        "sh",
        "-c",
        "mkdir -p out && cat src/* > out/app",
    ]);
    run(c).ok();
    let mut c = Command::new(interop_python());
    c.arg(interop_script("intoto_layout.py"))
        .arg(d)
        .arg(d.join("source.pub"))
        .arg(d.join("build.pub"));
    assert_eq!(run(c).code, 0);
    let r = in_toto_verify(d);
    assert_eq!(
        r.code, 1,
        "in-toto-verify must reject: {}{}",
        r.stdout, r.stderr
    );
    let out = format!("{}{}", r.stdout, r.stderr);
    assert!(
        out.contains("'DISALLOW *' matched the following artifacts: ['src/main.c']"),
        "{out}"
    );
}
