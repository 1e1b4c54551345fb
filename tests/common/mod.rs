//! Shared helpers for the integration tests: run the real binary, make
//! keys and example trees.
#![allow(dead_code)]

pub mod sigstore_mock;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The exit codes the README documents, as numbers: the tests check the
/// contract, not whatever the code happens to define.
pub mod exit {
    pub const OK: i32 = 0;
    pub const INTERNAL: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const CANNOT_CHECK: i32 = 3;
    pub const INVALID: i32 = 4;
    pub const POLICY: i32 = 5;
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_provenant"))
}

/// `provenant ARGS` in `dir`, with a clean environment for the bits that
/// matter (no password unless the test sets one, text logs).
pub fn provenant(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir)
        .env_remove("COSIGN_PASSWORD")
        .env_remove("PROVENANT_LOG_FORMAT")
        .env("PROVENANT_LOG", "info");
    c
}

/// `provenant attest --product P... --key KEY -o OUT` in `dir`; add more
/// with `.args(...)`.
pub fn attest_cmd(dir: &Path, key: &str, products: &[&str], out: &str) -> Command {
    let mut c = provenant(dir);
    c.arg("attest");
    for p in products {
        c.args(["--product", p]);
    }
    c.args(["--key", key, "-o", out]);
    c
}

/// `provenant record --state state --key KEY --completion COMPLETION` in
/// `dir` (the sidecar after `snapshot`); add more with `.args(...)`.
pub fn record_cmd(dir: &Path, key: &str, completion: &str) -> Command {
    let mut c = provenant(dir);
    c.args([
        "record",
        "--state",
        "state",
        "--key",
        key,
        "--completion",
        completion,
    ]);
    c
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(mut c: Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("spawn provenant");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts the exit code and that the error is one line containing `needle`.
    pub fn fails(self, code: i32, needle: &str) -> Run {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("provenant: error:"))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "exactly one error line expected, stderr:\n{}",
            self.stderr
        );
        assert!(
            errors[0].contains(needle),
            "error line {:?} should contain {:?}",
            errors[0],
            needle
        );
        assert!(!self.stderr.contains("panicked"), "panic: {}", self.stderr);
        // A cause chain must not repeat itself in the one line.
        let msg = errors[0].trim_start_matches("provenant: error: ");
        let parts: Vec<&str> = msg.split(": ").filter(|p| p.len() > 20).collect();
        for (i, p) in parts.iter().enumerate() {
            assert!(
                !parts[i + 1..].contains(p),
                "error line repeats {p:?}: {msg}"
            );
        }
        self
    }
}

pub fn write(path: &Path, contents: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, contents).unwrap();
}

/// A small source tree and a build output, in `dir/src` and `dir/out`.
pub fn example_tree(dir: &Path) {
    write(&dir.join("src/main.c"), b"int main(void) { return 0; }\n");
    write(&dir.join("src/lib/util.h"), b"#define UTIL 1\n");
    write(&dir.join("config.toml"), b"opt = 2\n");
    write(&dir.join("out/app.bin"), b"\x7fELF-not-really");
    write(&dir.join("out/app.sha"), b"checksum\n");
}

/// Generates an unencrypted key pair `dir/NAME.key`, `dir/NAME.pub`.
pub fn keygen(dir: &Path, name: &str, alg: &str) {
    let mut c = provenant(dir);
    c.args([
        "keygen",
        "--unencrypted",
        "--algorithm",
        alg,
        "--output-prefix",
        name,
    ]);
    run(c).ok();
}

/// The pod's init container: `provenant snapshot` of materials
/// `ws/source` and workspace `ws` into state directory `state`, plus
/// `extra` arguments; must succeed.
pub fn snapshot(dir: &Path, extra: &[&str]) {
    let mut c = provenant(dir);
    c.args([
        "snapshot",
        "--state",
        "state",
        "--material",
        "ws/source",
        "--workspace",
        "ws",
    ]);
    c.args(extra);
    run(c).ok();
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The statement inside an envelope file.
pub fn statement_of(path: &Path) -> serde_json::Value {
    use base64::Engine;
    let env = read_json(path);
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// The Python of the interop venv that scripts/test.sh creates.
pub fn interop_python() -> PathBuf {
    if let Some(p) = std::env::var_os("PROVENANT_PYTHON") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv/bin/python");
    assert!(
        p.exists(),
        "interop venv missing at {}: run scripts/test.sh, which creates it",
        p.display()
    );
    p
}

pub fn interop_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// sigstore-js (@sigstore/verify), installed by scripts/sigstore-js.sh.
pub fn sigstore_js(bundle: &Path, key: &Path, key_id: &str) -> Run {
    let dir = std::env::var_os("SIGSTORE_JS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sigstore-js"));
    assert!(
        dir.join("node_modules/@sigstore/verify").is_dir(),
        "sigstore-js missing in {}: run scripts/test.sh (scripts/sigstore-js.sh installs it)",
        dir.display()
    );
    let mut c = std::process::Command::new("node");
    c.env("SIGSTORE_JS_DIR", &dir)
        .arg(interop_script("sigstore_verify.mjs"))
        .arg(bundle)
        .arg(key)
        .arg(key_id);
    run(c)
}

/// A DSSE envelope (compact JSON) of `statement`, signed with the private
/// key `dir/KEY.key` through the library: how tests make hand-made
/// statements that a real key signed.
pub fn sign_statement(dir: &Path, key: &str, statement: &serde_json::Value) -> String {
    let signer = provenant::sign::LocalSigner::load(&dir.join(format!("{key}.key"))).unwrap();
    provenant::sign::Envelope::sign(
        "application/vnd.in-toto+json",
        &serde_json::to_vec(statement).unwrap(),
        &signer,
    )
    .unwrap()
    .to_json()
}

/// A SLSA v1 statement with one subject `out/app`, builder `builder_id`,
/// finished now; `byproducts`, `subject_annotations` and `internal` as
/// given.
pub fn slsa_statement(
    builder_id: &str,
    byproducts: serde_json::Value,
    subject_annotations: serde_json::Value,
    internal: serde_json::Value,
) -> serde_json::Value {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "out/app", "digest": {"sha256": "a".repeat(64)}, "annotations": subject_annotations}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://provenant.dev/build-types/observed/v1",
                "externalParameters": {},
                "internalParameters": internal,
                "resolvedDependencies": [{"name": "src/main.c", "digest": {"sha256": "b".repeat(64)}}]
            },
            "runDetails": {
                "builder": {"id": builder_id},
                "metadata": {"invocationId": "inv-1", "startedOn": now, "finishedOn": now},
                "byproducts": byproducts
            }
        }
    })
}

/// An exit-code byproduct with `content` (decimal text, base64-encoded
/// here) and the origin annotation, if any.
pub fn exit_byproduct(content: Option<&str>, origin: Option<&str>) -> serde_json::Value {
    use base64::Engine;
    let mut b = serde_json::json!({"name": "exit-code"});
    match content {
        Some(c) => {
            b["content"] = base64::engine::general_purpose::STANDARD.encode(c).into();
            b["mediaType"] = "text/plain".into();
        }
        None => b["uri"] = "provenant:exit-code:unknown".into(),
    }
    if let Some(o) = origin {
        b["annotations"] =
            serde_json::json!({"provenant.exitCodeOrigin": o, "provenant.exitCodeSource": "test"});
    }
    b
}

/// Runs the test `name` of the current test binary again, alone, through
/// `c` (the binary itself, or a wrapper such as `setpriv` with the binary
/// as its argument), and asserts that the run ran exactly that test and
/// that it passed: a re-run that filtered out everything must not count.
#[allow(dead_code)]
pub fn rerun_alone(mut c: Command, name: &str, what: &str) {
    c.args(["--exact", name, "--nocapture", "--test-threads=1"]);
    let o = c.output().expect(what);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success()
            && out.contains(&format!("test {name} ... ok"))
            && out.contains("test result: ok. 1 passed"),
        "{what} of {name} failed or did not run it:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
