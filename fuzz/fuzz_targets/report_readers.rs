//! The readers of files the builder writes: kpack's report.toml, Tekton
//! results, an OCI layout's index.json. The input becomes those files
//! (the same bytes for each). Kept small: the readers are being moved
//! behind one module for builder-written files (issue 12).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("provenant-fuzz-reports-{}", std::process::id()));
        std::fs::create_dir_all(d.join("results")).unwrap();
        std::fs::create_dir_all(d.join("layout")).unwrap();
        d
    })
}

fuzz_target!(|data: &[u8]| {
    let d = dir();
    // Tekton: IMAGE_URL / IMAGE_DIGEST or IMAGES; split on the first NUL.
    let (a, b) = match data.iter().position(|c| *c == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    std::fs::write(d.join("report.toml"), data).unwrap();
    let _ = provenant::provenance::from_kpack_report(&d.join("report.toml"));
    std::fs::write(d.join("results/IMAGE_URL"), a).unwrap();
    std::fs::write(d.join("results/IMAGE_DIGEST"), b).unwrap();
    std::fs::write(d.join("results/IMAGES"), data).unwrap();
    let _ = provenant::provenance::from_tekton_results(&d.join("results"));
    std::fs::write(d.join("layout/index.json"), data).unwrap();
    let _ = provenant::provenance::from_oci_layout(&d.join("layout"), None);
});
