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

/// Keys for both steps and the source tree.
fn sources(d: &Path) {
    keygen(d, "source", "ecdsa-p256");
    keygen(d, "build", "ed25519");
    write(&d.join("src/main.c"), b"int main(void) { return 0; }\n");
    write(&d.join("src/util.h"), b"#define UTIL 1\n");
}

/// Step "source": attests `src` as its product, with a link.
fn source_step(d: &Path, format: &str) {
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
        "--in-toto-link-format",
        format,
    ]);
    run(c).ok();
}

/// Step "build": builds `out/app` from `src` under `provenant run`.
fn build_step(d: &Path, format: &str) {
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
        "--in-toto-link-format",
        format,
        "--",
        "sh",
        "-c",
        "mkdir -p out && cat src/* > out/app",
    ]);
    run(c).ok();
}

/// The signed layout for the two steps, by the Python reference code.
fn layout(d: &Path) {
    let mut c = Command::new(interop_python());
    c.arg(interop_script("intoto_layout.py"))
        .arg(d)
        .arg(d.join("source.pub"))
        .arg(d.join("build.pub"));
    let r = run(c);
    assert_eq!(r.code, 0, "layout: {}{}", r.stdout, r.stderr);
}

fn chain(d: &Path, format: &str) {
    sources(d);
    source_step(d, format);
    build_step(d, format);
    layout(d);
}

#[test]
fn in_toto_verify_accepts_a_provenant_chain() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    chain(d, "dsse");
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
    sources(d);
    source_step(d, "dsse");
    // The attacker changes the source after the source step signed it.
    write(&d.join("src/main.c"), b"int main(void) { return 1; }\n");
    build_step(d, "dsse");
    layout(d);
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

/// The build step recorded by the sidecar instead of `run`: `record
/// --in-toto-link` writes the step's link like the other commands, and the
/// chain verifies with in-toto-verify.
#[test]
fn in_toto_verify_accepts_a_build_step_the_sidecar_recorded() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    sources(d);
    source_step(d, "dsse");
    let mut c = provenant(d);
    c.args([
        "snapshot",
        "--state",
        "state",
        "--material",
        "src",
        "--workspace",
        "out",
    ]);
    std::fs::create_dir_all(d.join("out")).unwrap();
    run(c).ok();
    // The build ran; the sidecar learns it from the marker.
    std::fs::write(
        d.join("out/app"),
        b"int main(void) { return 0; }\n#define UTIL 1\n",
    )
    .unwrap();
    std::fs::write(d.join("done"), b"0\n").unwrap();
    let mut c = provenant(d);
    c.args([
        "record",
        "--state",
        "state",
        "--key",
        "build.key",
        "--completion",
        "marker:done",
        "--in-toto-link",
        "links",
        "--step-name",
        "build",
    ]);
    run(c).ok();
    layout(d);
    let r = in_toto_verify(d);
    assert_eq!(r.code, 0, "in-toto-verify: {}{}", r.stdout, r.stderr);
}

/// The classic signed-Metablock links (`--in-toto-link-format metablock`):
/// in-toto-verify accepts the chain, and in-toto-match-products (which
/// cannot read DSSE links in in-toto 3.1.0) reads the build's link and
/// finds the local products equal, then a changed one different.
#[test]
fn metablock_links_verify_and_match_products() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    chain(d, "metablock");
    let r = in_toto_verify(d);
    assert_eq!(r.code, 0, "in-toto-verify: {}{}", r.stdout, r.stderr);
    let link = link_of(d, "build");
    let block = read_json(&link);
    assert_eq!(block["signed"]["_type"], "link");
    assert!(block["signatures"][0]["sig"]
        .as_str()
        .unwrap()
        .chars()
        .all(|c| c.is_ascii_hexdigit()));
    let match_products = |d: &Path| {
        let py = interop_python();
        let mut c = Command::new(py.parent().unwrap().join("in-toto-match-products"));
        c.current_dir(d)
            .arg("--link")
            .arg(&link)
            .args(["--paths", "out"]);
        run(c)
    };
    let r = match_products(d);
    assert_eq!(
        r.code, 0,
        "in-toto-match-products: {}{}",
        r.stdout, r.stderr
    );
    assert!(
        !r.stdout.contains("out/app"),
        "no difference expected: {}",
        r.stdout
    );
    write(&d.join("out/app"), b"changed");
    let r = match_products(d);
    assert!(
        r.code != 0 || r.stdout.contains("out/app"),
        "a changed product must be reported: {}{}",
        r.stdout,
        r.stderr
    );
    // A tampered link no longer verifies.
    let mut block = read_json(&link);
    block["signed"]["products"]["out/app"]["sha256"] = "0".repeat(64).into();
    std::fs::write(&link, serde_json::to_vec(&block).unwrap()).unwrap();
    let r = in_toto_verify(d);
    assert_eq!(
        r.code, 1,
        "in-toto-verify must reject: {}{}",
        r.stdout, r.stderr
    );
}

/// The link file of `step` (`<step>.<keyid>.link`).
fn link_of(d: &Path, step: &str) -> std::path::PathBuf {
    std::fs::read_dir(d.join("links"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{step}."))
        })
        .unwrap_or_else(|| panic!("no link for step {step}"))
}

/// The byproducts of a link as in-toto's own loader reads them
/// (`Metablock.load`, which also checks the link's schema).
fn link_byproducts(d: &Path, step: &str) -> serde_json::Value {
    let link = link_of(d, step);
    let mut c = Command::new(interop_python());
    c.arg("-c")
        .arg(
            "import json, sys\n\
             from in_toto.models.metadata import Metablock\n\
             print(json.dumps(Metablock.load(sys.argv[1]).signed.byproducts))",
        )
        .arg(&link);
    let r = run(c);
    assert_eq!(
        r.code, 0,
        "in-toto could not load {step}'s link: {}",
        r.stderr
    );
    serde_json::from_str(r.stdout.trim()).unwrap()
}

/// A link's `return-value` is the exit code of the build it records, read
/// back from the provenance's exit-code byproduct: 0 for the build that
/// passed, the real code for a failed build attested with
/// `--attest-failed`, and none at all for `attest`, which ran nothing.
#[test]
fn links_carry_the_build_s_return_value() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    chain(d, "metablock");
    assert_eq!(
        link_byproducts(d, "build"),
        serde_json::json!({"return-value": 0})
    );
    assert_eq!(link_byproducts(d, "source"), serde_json::json!({}));
    let mut c = provenant(d);
    c.args([
        "run",
        "--attest-failed",
        "--product",
        "out",
        "--key",
        "build.key",
        "-o",
        "failed.intoto.jsonl",
        "--in-toto-link",
        "links",
        "--step-name",
        "failed",
        "--in-toto-link-format",
        "metablock",
        "--",
        "sh",
        "-c",
        "echo partial > out/app; exit 3",
    ]);
    let r = run(c);
    assert_eq!(r.code, 3, "run must pass the build's exit on: {}", r.stderr);
    assert_eq!(
        link_byproducts(d, "failed"),
        serde_json::json!({"return-value": 3})
    );
}
