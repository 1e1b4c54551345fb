//! manifests/ checked by kubernetes-validate (strict, the Kubernetes versions
//! we support) plus the isolation rules of tests/interop/check_manifests.py.
mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const VERSIONS: &str = "1.29.0,1.31.0,1.33.0";

fn check(files: &[&Path]) -> Run {
    let mut c = Command::new(interop_python());
    c.arg(interop_script("check_manifests.py"))
        .arg(VERSIONS)
        .args(files);
    run(c)
}

#[test]
fn example_manifests_are_valid_and_keep_the_key_from_the_builder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // One example per completion mode.
    for mode in ["process", "marker", "http", "native-sidecar", "kube-api"] {
        assert!(names.contains(&format!("pod-{mode}.yaml")), "{names:?}");
    }
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let r = check(&refs);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        8,
        "{}",
        r.stdout
    );
}

#[test]
fn the_checker_catches_a_builder_that_mounts_the_key() {
    let t = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples/pod-process.yaml"),
    )
    .unwrap();
    let bad = src.replacen(
        "      command: [\"build.sh\"]\n      volumeMounts:\n",
        "      command: [\"build.sh\"]\n      volumeMounts:\n        - name: signing-key\n          mountPath: /keys\n",
        1,
    );
    assert_ne!(bad, src);
    let f = t.path().join("bad.yaml");
    std::fs::write(&f, bad).unwrap();
    let r = check(&[&f]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("container builder mounts ['signing-key']"),
        "{}",
        r.stderr
    );

    let typo = src.replacen(
        "restartPolicy: Never",
        "restartPolicy: Never\n  shareProcesNamespace: true",
        1,
    );
    std::fs::write(&f, typo).unwrap();
    let r = check(&[&f]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("invalid for Kubernetes"), "{}", r.stderr);
}
