//! Subjects are what was built: `--subject GLOB` chooses them among the
//! products, and everything else the build wrote is still accounted for.
mod common;

use std::path::Path;
use std::process::Command;

use common::exit::*;
use common::*;

fn out_tree(d: &Path) {
    write(&d.join("out/app"), b"the binary");
    write(&d.join("out/app.d"), b"deps");
    write(&d.join("out/lib/libx.so"), b"a library");
    write(&d.join("out/sub/app"), b"another app, deeper");
    keygen(d, "k", "ecdsa-p256");
}

fn subjects_of(path: &Path) -> Vec<(String, String)> {
    statement_of(path)["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["digest"]["sha256"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn byproducts_of(path: &Path) -> Vec<serde_json::Value> {
    statement_of(path)["predicate"]["runDetails"]["byproducts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn globs_choose_subjects_as_exclude_globs_match() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    out_tree(d);
    for (glob, want) in [
        // Anchored: the whole path relative to the root.
        ("app", vec!["out/app"]),
        // `*` does not cross `/`.
        ("*", vec!["out/app", "out/app.d"]),
        ("**/app", vec!["out/app", "out/sub/app"]),
        ("lib/*", vec!["out/lib/libx.so"]),
        ("**/*.so", vec!["out/lib/libx.so"]),
    ] {
        let mut c = attest_cmd(d, "k.key", &["out"], "a.jsonl");
        c.args(["--subject", glob]);
        run(c).ok();
        let names: Vec<String> = subjects_of(&d.join("a.jsonl"))
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, want, "--subject {glob}");
    }
    // Several globs, comma-separated in the environment.
    let mut c = attest_cmd(d, "k.key", &["out"], "b.jsonl");
    c.env("PROVENANT_SUBJECT", "app,lib/*");
    run(c).ok();
    assert_eq!(subjects_of(&d.join("b.jsonl")).len(), 2);
}

#[test]
fn nothing_matching_is_a_missing_artefact_not_an_empty_attestation() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    out_tree(d);
    // `*.so` does not cross into lib/.
    let mut c = attest_cmd(d, "k.key", &["out"], "none.jsonl");
    c.args(["--subject", "*.so"]);
    run(c).fails(CANNOT_CHECK, "no product matched --subject");
    assert!(!d.join("none.jsonl").exists());
    // `run`: the command succeeded, but not at making the artefact.
    let mut c = provenant(d);
    c.args([
        "run",
        "--product",
        "out",
        "--key",
        "k.key",
        "-o",
        "r.jsonl",
        "--subject",
        "dist/*.whl",
        "--",
        "true",
    ]);
    run(c).fails(CANNOT_CHECK, "no product matched --subject");
    assert!(!d.join("r.jsonl").exists());
}

#[test]
fn the_rest_is_one_digest_or_a_list_or_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    out_tree(d);
    let mut c = attest_cmd(d, "k.key", &["out"], "dh.jsonl");
    c.args(["--subject", "app"]);
    run(c).ok();
    // One dirHash of the whole output tree, which anyone can recompute.
    let mut c = provenant(d);
    c.args(["digest", "--dirhash", "out"]);
    let want = run(c)
        .ok()
        .stdout
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let by = byproducts_of(&d.join("dh.jsonl"));
    let rest: Vec<&serde_json::Value> = by
        .iter()
        .filter(|b| b["annotations"]["provenant.role"] == "observed-outputs")
        .collect();
    assert_eq!(rest.len(), 1, "{by:?}");
    assert_eq!(rest[0]["name"], "out");
    assert_eq!(rest[0]["digest"]["dirHash"], want.as_str());
    let st = statement_of(&d.join("dh.jsonl"));
    assert_eq!(
        st["predicate"]["buildDefinition"]["externalParameters"]["subjects"],
        serde_json::json!(["app"])
    );
    assert_eq!(
        st["predicate"]["buildDefinition"]["internalParameters"]["otherOutputs"],
        "dirhash"
    );
    // A list: every other file, with its digest.
    let mut c = attest_cmd(d, "k.key", &["out"], "files.jsonl");
    c.args(["--subject", "app", "--other-outputs", "files"]);
    run(c).ok();
    let mut others: Vec<String> = byproducts_of(&d.join("files.jsonl"))
        .iter()
        .filter(|b| b["annotations"]["provenant.role"] == "output")
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    others.sort();
    assert_eq!(others, ["out/app.d", "out/lib/libx.so", "out/sub/app"]);
    // Nothing, said so.
    let mut c = attest_cmd(d, "k.key", &["out"], "n.jsonl");
    c.args(["--subject", "app", "--other-outputs", "none"]);
    run(c).ok();
    assert!(byproducts_of(&d.join("n.jsonl")).is_empty());
    // verify prints the chosen subject only.
    let mut c = provenant(d);
    c.args(["verify", "--key", "k.pub", "dh.jsonl"]);
    let r = run(c).ok();
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert!(r.stdout.contains("  out/app"), "{}", r.stdout);
}

/// The pod: a report names the image, `--subject` adds the SBOM the build
/// wrote beside it; the subjects are fixed by the init container.
#[test]
fn an_image_and_a_file_artefact_side_by_side() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keygen(d, "k", "ecdsa-p256");
    write(
        &d.join("ws/source/main.c"),
        b"int main(void) { return 0; }\n",
    );
    snapshot(d, &["--subject", "out/sbom.spdx.json"]);
    write(&d.join("ws/out/layer.tar"), b"layers");
    write(
        &d.join("ws/out/sbom.spdx.json"),
        b"{\"spdxVersion\":\"SPDX-2.3\"}",
    );
    let digest = "c".repeat(64);
    write(
        &d.join("results/IMAGE_URL"),
        b"registry.local:5000/team/app:1.0\n",
    );
    write(
        &d.join("results/IMAGE_DIGEST"),
        format!("sha256:{digest}\n").as_bytes(),
    );
    write(&d.join("done"), b"0\n");
    let mut c = record_cmd(d, "k.key", "marker:done");
    c.args(["--tekton-results", "results"]);
    run(c).ok();
    let p = d.join("state/provenance.intoto.jsonl");
    assert_eq!(
        subjects_of(&p),
        vec![
            ("registry.local:5000/team/app".to_string(), digest),
            (
                "ws/out/sbom.spdx.json".to_string(),
                sha256_hex(b"{\"spdxVersion\":\"SPDX-2.3\"}")
            ),
        ]
    );
    assert!(byproducts_of(&p)
        .iter()
        .any(|b| b["name"] == "ws" && b["digest"]["dirHash"].is_string()));
}

/// The issue's own example: a cargo build watched by the sidecar has a
/// subject per build intermediate; with `--subject` it has one, the
/// binary, and one digest of everything else.
#[test]
fn a_cargo_build_attests_its_binary() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keygen(d, "k", "ecdsa-p256");
    write(
        &d.join("ws/Cargo.toml"),
        b"[package]\nname = \"hello\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    );
    write(
        &d.join("ws/src/main.rs"),
        b"fn main() { println!(\"hello\"); }\n",
    );
    let mut c = provenant(d);
    c.args([
        "snapshot",
        "--state",
        "state",
        "--material",
        "ws/src",
        "--workspace",
        "ws",
    ]);
    run(c).ok();
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.args([
        "build",
        "--release",
        "--offline",
        "--quiet",
        "--manifest-path",
    ])
    .arg(d.join("ws/Cargo.toml"))
    .env("CARGO_TARGET_DIR", d.join("ws/target"))
    .env_remove("RUSTFLAGS")
    .env_remove("CARGO_BUILD_TARGET");
    let r = run(c);
    assert_eq!(r.code, 0, "cargo build: {}", r.stderr);
    write(&d.join("done"), b"0\n");
    let mut c = record_cmd(d, "k.key", "marker:done");
    c.args(["--subject", "target/release/hello"]);
    run(c).ok();
    let p = d.join("state/provenance.intoto.jsonl");
    let binary = std::fs::read(d.join("ws/target/release/hello")).unwrap();
    assert_eq!(
        subjects_of(&p),
        vec![("ws/target/release/hello".to_string(), sha256_hex(&binary))]
    );
    let by = byproducts_of(&p);
    assert!(
        by.iter().any(|b| b["name"] == "ws"
            && b["annotations"]["provenant.role"] == "observed-outputs"
            && b["digest"]["dirHash"].is_string()),
        "{by:?}"
    );
}
