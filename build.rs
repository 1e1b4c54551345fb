//! Build information for `provenant --version`: the commit (build/commit.rs
//! says from where) and the crate features this build has enabled.
#[path = "build/commit.rs"]
mod commit;

fn main() {
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/commit.rs");
    println!("cargo:rerun-if-env-changed=PROVENANT_GIT_COMMIT");
    let found = commit::find(&dir, std::env::var("PROVENANT_GIT_COMMIT").ok());
    // Only files that exist: cargo reruns a build script on every build when
    // a watched path is missing.
    for p in found.watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let commit = found.commit.unwrap_or_else(|| "unknown".to_string());
    let short: String = commit.chars().take(12).collect();
    println!("cargo:rustc-env=PROVENANT_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=PROVENANT_GIT_COMMIT_SHORT={short}");

    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(str::to_string))
        .map(|f| f.to_ascii_lowercase().replace('_', "-"))
        .collect();
    features.sort();
    let features = if features.is_empty() {
        "none".to_string()
    } else {
        features.join(",")
    };
    println!("cargo:rustc-env=PROVENANT_FEATURES={features}");
    println!(
        "cargo:rustc-env=PROVENANT_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=PROVENANT_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
}
