//! A local Sigstore for the tests: @sigstore/mock's Fulcio, Rekor and TSA
//! served on loopback by tests/interop/sigstore_mock_server.mjs (installed
//! by scripts/sigstore-js.sh), its trust material in `trusted_root.json`;
//! and sigstore-js's verifier (tests/interop/sigstore_verify_identity.mjs).
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::{interop_script, run, Run};

/// Where scripts/sigstore-js.sh installed the pinned npm packages.
pub fn sigstore_js_dir() -> PathBuf {
    let dir = std::env::var_os("SIGSTORE_JS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sigstore-js"));
    assert!(
        dir.join("node_modules/@sigstore/mock").is_dir(),
        "@sigstore/mock missing in {}: run scripts/test.sh (scripts/sigstore-js.sh installs it)",
        dir.display()
    );
    dir
}

/// The served mock; stopped when dropped.
pub struct MockSigstore {
    child: Child,
    pub url: String,
    pub trusted_root: PathBuf,
}

impl MockSigstore {
    /// Starts the server; its trusted root is written into `dir`.
    pub fn start(dir: &Path) -> MockSigstore {
        let trusted_root = dir.join("trusted_root.json");
        let mut child = Command::new("node")
            .env("SIGSTORE_JS_DIR", sigstore_js_dir())
            .arg(interop_script("sigstore_mock_server.mjs"))
            .arg(&trusted_root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("mock server said {line:?}: {e}"));
        MockSigstore {
            child,
            url: v["url"].as_str().unwrap().to_string(),
            trusted_root,
        }
    }

    /// Rekor answers 503 while down.
    pub fn rekor_down(&self, down: bool) {
        http(
            &self.url,
            "POST",
            "/__control/rekor",
            if down { "down" } else { "up" },
        );
    }

    /// Requests served per path.
    pub fn stats(&self) -> serde_json::Value {
        let body = http(&self.url, "GET", "/__control/stats", "");
        serde_json::from_str(&body).unwrap_or_default()
    }
}

/// One HTTP/1.0 request to the mock (plain TCP: the control endpoints
/// need nothing more); the answer's body.
fn http(base: &str, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the mock");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 2") || out.starts_with("HTTP/1.0 2"),
        "{method} {path}: {out}"
    );
    out.split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default()
}

impl Drop for MockSigstore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// An unsigned (`alg: none`) OIDC token, as the mock Fulcio accepts: its
/// `sub` becomes the certificate's identity, `iss` its issuer.
pub fn token(sub: &str, iss: &str, exp_in_secs: i64) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({
        "iss": iss, "sub": sub, "aud": ["sigstore"], "iat": now, "exp": now + exp_in_secs,
    });
    format!(
        "{}.{}.",
        e.encode(br#"{"alg":"none","typ":"JWT"}"#),
        e.encode(serde_json::to_vec(&claims).unwrap())
    )
}

/// sigstore-js's verdict on a bundle: `--certificate-identity SAN
/// --certificate-oidc-issuer ISS` or `--key PEM`, plus more options.
pub fn sigstore_js_verify(bundle: &Path, trusted_root: &Path, args: &[&str]) -> Run {
    let mut c = Command::new("node");
    c.env("SIGSTORE_JS_DIR", sigstore_js_dir())
        .arg(interop_script("sigstore_verify_identity.mjs"))
        .arg(bundle)
        .arg(trusted_root)
        .args(args);
    let r = run(c);
    assert!(
        r.code == 0 || r.code == 1,
        "sigstore-js harness broke (exit {}): {}{}",
        r.code,
        r.stdout,
        r.stderr
    );
    r
}
