//! `provenant signer` speaks TLS itself: clients verify it against
//! `--signer-ca` (or the system roots) before the build, present client
//! certificates where it asks for them, and get a rotated certificate
//! without a restart. Certificates are made here with rcgen.
mod common;
#[path = "signer_support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use support::*;

/// provenant's default builder id, what `attest` writes unless told.
const LOCAL_BUILDER: &str = "https://provenant.dev/builders/local/v1";
const TOKEN: &str = "0123456789abcdef-secret";

/// `provenant attest` of the example tree through a signer.
fn attest_via(d: &Path, signer: &str, extra: &[&str], out: &str) -> Command {
    let mut c = provenant(d);
    c.args([
        "attest",
        "--material",
        "src",
        "--product",
        "out",
        "--signer",
        signer,
        "-o",
        out,
    ])
    .args(extra);
    c
}

fn tls_signer(d: &Path, extra: &[&str]) -> SignerProc {
    let mut args = vec!["--tls-cert", "server.crt", "--tls-key", "server.key"];
    args.extend_from_slice(extra);
    SignerProc::start(d, &args)
}

/// The payload (statement) of an envelope file, as bytes.
fn payload_of(p: &Path) -> Vec<u8> {
    use base64::Engine;
    let env = read_json(p);
    base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap()
}

/// A shared-token signer behind its own TLS: the build side trusts its CA
/// and signs; every way of getting the server wrong fails before anything
/// is hashed, with one line; the audit line names every subject.
#[test]
fn clients_verify_the_signer_before_the_build() {
    let (_t, d) = workdir();
    let ca = Ca::new("test signer CA");
    ca.server_files(&d, "server", false);
    write(&d.join("ca.pem"), ca.pem().as_bytes());
    write(&d.join("token"), TOKEN.as_bytes());
    write(&d.join("wrong"), b"0123456789abcdef-wrong!");
    let s = tls_signer(
        &d,
        &["--token-file", "token", "--builder-id", LOCAL_BUILDER],
    );
    let url = s.https();
    let trust = ["--signer-ca", "ca.pem", "--signer-token-file", "token"];

    // The build side: no key file at all.
    std::fs::rename(d.join("k.key"), d.join("elsewhere.key")).unwrap();
    run(attest_via(&d, &url, &trust, "att.jsonl")).ok();
    let mut c = provenant(&d);
    c.args(["verify", "--key", "k.pub", "att.jsonl"]);
    run(c).ok();
    // One identity line (the start-up check), one signature line.
    let line = s.audit_line(2);
    assert_eq!(s.audit()[0]["event"], "identity");
    assert_eq!(line["audit"], "provenant-signer/v1");
    assert_eq!(line["event"], "signed");
    assert_eq!(line["caller"]["kind"], "sharedToken");
    assert_eq!(line["path"], "/v1/sign");
    assert_eq!(
        line["statementSha256"],
        sha256_hex(&payload_of(&d.join("att.jsonl")))
    );
    assert_eq!(line["builderId"], LOCAL_BUILDER);
    assert_eq!(
        line["subjects"],
        serde_json::json!([
            {"name": "out/app.bin", "digest": {"sha256": sha256_hex(b"\x7fELF-not-really")}},
            {"name": "out/app.sha", "digest": {"sha256": sha256_hex(b"checksum\n")}},
        ])
    );
    assert_eq!(
        line["keyId"],
        read_json(&d.join("att.jsonl"))["signatures"][0]["keyid"]
    );

    // Not trusted: the system roots do not know the test CA.
    run(attest_via(
        &d,
        &url,
        &["--signer-token-file", "token"],
        "x.jsonl",
    ))
    .fails(3, "invalid peer certificate: UnknownIssuer");
    // Trusted CA, wrong name: the certificate is for 127.0.0.1.
    let by_name = format!("https://localhost:{}", s.port);
    run(attest_via(&d, &by_name, &trust, "x.jsonl")).fails(3, "not valid for name");
    // Plain HTTP to a TLS port.
    run(attest_via(
        &d,
        &s.http(),
        &["--signer-token-file", "token"],
        "x.jsonl",
    ))
    .fails(3, "signer unavailable");
    // A wrong token, a wrong builder id: the start-up check says so.
    run(attest_via(
        &d,
        &url,
        &["--signer-ca", "ca.pem", "--signer-token-file", "wrong"],
        "x.jsonl",
    ))
    .fails(3, "HTTP 401: bad bearer token");
    let refused = s.audit().last().unwrap().clone();
    assert_eq!(refused["event"], "refused");
    assert_eq!(refused["path"], "/v1/identity");
    assert_eq!(refused["reason"], "bad bearer token");
    assert!(refused.get("caller").is_none());
    let mut trust_other = trust.to_vec();
    trust_other.extend(["--builder-id", "https://ci.example.com/other"]);
    run(attest_via(&d, &url, &trust_other, "x.jsonl")).fails(
        3,
        "signs only builder id \"https://provenant.dev/builders/local/v1\" for shared-token caller",
    );
    assert!(!d.join("x.jsonl").exists());

    // Not a signing oracle: other payload types and predicate types are
    // refused, and audited with what they were.
    let ca_pem = ca.pem();
    let (st, body) = sign_request(&url, Some(&ca_pem), Some(TOKEN), "text/plain", b"hello");
    assert_eq!(st, 403, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("refusing to sign payload type"));
    let vsa = statement(
        "https://slsa.dev/verification_summary/v1",
        LOCAL_BUILDER,
        None,
        &[("app", b"app")],
    );
    let (st, body) = sign_request(&url, Some(&ca_pem), Some(TOKEN), IN_TOTO, &vsa);
    assert_eq!(st, 403, "{body}");
    let line = s.audit().last().unwrap().clone();
    assert_eq!(line["event"], "refused");
    assert!(line["reason"]
        .as_str()
        .unwrap()
        .contains("only SLSA provenance v1"));
    assert_eq!(line["statementSha256"], sha256_hex(&vsa));
    assert_eq!(line["subjects"][0]["digest"]["sha256"], sha256_hex(b"app"));
    // A made-up provenance with another builder id.
    let other = statement(
        SLSA,
        "https://evil.example/builder",
        None,
        &[("app", b"app")],
    );
    let (st, body) = sign_request(&url, Some(&ca_pem), Some(TOKEN), IN_TOTO, &other);
    assert_eq!(st, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("builder.id"),
        "{body}"
    );
}

/// An expired server certificate is refused by the client at start.
#[test]
fn an_expired_certificate_fails_at_start() {
    let (_t, d) = workdir();
    let ca = Ca::new("test signer CA");
    ca.server_files(&d, "server", true);
    write(&d.join("ca.pem"), ca.pem().as_bytes());
    write(&d.join("token"), TOKEN.as_bytes());
    let s = tls_signer(
        &d,
        &["--token-file", "token", "--builder-id", LOCAL_BUILDER],
    );
    assert!(
        s.log().contains("the TLS certificate has expired"),
        "{}",
        s.log()
    );
    run(attest_via(
        &d,
        &s.https(),
        &["--signer-ca", "ca.pem", "--signer-token-file", "token"],
        "x.jsonl",
    ))
    .fails(3, "certificate expired");
    assert!(!d.join("x.jsonl").exists());
}

/// mTLS: a client certificate from the client CA is the credential; one
/// from another CA, none at all, or a key that is not the certificate's
/// fail at start. With a token mode as well, both are needed.
#[test]
fn client_certificates_right_and_wrong() {
    let (_t, d) = workdir();
    let ca = Ca::new("test signer CA");
    ca.server_files(&d, "server", false);
    write(&d.join("ca.pem"), ca.pem().as_bytes());
    let clients = Ca::new("build clients CA");
    write(&d.join("clients.pem"), clients.pem().as_bytes());
    clients.client_files(&d, "builder-a");
    Ca::new("someone else's CA").client_files(&d, "intruder");
    let s = tls_signer(
        &d,
        &["--client-ca", "clients.pem", "--builder-id", LOCAL_BUILDER],
    );
    let url = s.https();
    let with = |name: &str, key: &str| -> Vec<String> {
        vec![
            "--signer-ca".into(),
            "ca.pem".into(),
            "--signer-client-cert".into(),
            format!("{name}.crt"),
            "--signer-client-key".into(),
            format!("{key}.key"),
        ]
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    let right = with("builder-a", "builder-a");
    run(attest_via(&d, &url, &args(&right), "att.jsonl")).ok();
    let mut c = provenant(&d);
    c.args(["verify", "--key", "k.pub", "att.jsonl"]);
    run(c).ok();
    let line = s.audit_line(2);
    assert_eq!(line["event"], "signed");
    assert_eq!(line["caller"]["kind"], "clientCertificate");
    assert_eq!(line["caller"]["subject"], "CN=builder-a");
    assert_eq!(
        line["caller"]["names"],
        serde_json::json!(["dns:builder-a.clients.test"])
    );
    assert_eq!(line["clientCertificate"]["subject"], "CN=builder-a");
    let cert_der = pem::parse(read(&d.join("builder-a.crt"))).unwrap();
    assert_eq!(line["caller"]["sha256"], sha256_hex(cert_der.contents()));

    // A certificate from another CA: the handshake fails.
    let wrong = with("intruder", "intruder");
    let r = run(attest_via(&d, &url, &args(&wrong), "x.jsonl")).fails(3, "signer unavailable");
    assert!(
        r.stderr.contains("UnknownCA") || r.stderr.contains("BadCertificate"),
        "{}",
        r.stderr
    );
    // No certificate at all: the public key and health answer (kubelet
    // probes over HTTPS), signing does not.
    run(attest_via(&d, &url, &["--signer-ca", "ca.pem"], "x.jsonl")).fails(
        3,
        "HTTP 401: no client certificate (this signer requires mTLS)",
    );
    let (status, _) = request(&format!("{url}/healthz"), Some(&ca.pem()), None, None);
    assert_eq!(status, 200);
    let r = sign_request(&url, Some(&ca.pem()), None, IN_TOTO, b"{}");
    assert_eq!(r.0, 401, "{}", r.1);
    let refused = s.audit().last().unwrap().clone();
    assert_eq!(refused["event"], "refused");
    assert_eq!(refused["path"], "/v1/sign");
    // The key of another certificate.
    let mixed = with("builder-a", "intruder");
    run(attest_via(&d, &url, &args(&mixed), "x.jsonl"))
        .fails(3, "does not belong to --signer-client-cert");
    // Only over https.
    let mut plain = args(&right);
    plain.retain(|a| *a != "--signer-ca" && *a != "ca.pem");
    run(attest_via(&d, &s.http(), &plain, "x.jsonl")).fails(3, "needs https://");
    assert!(!d.join("x.jsonl").exists());
    drop(s);

    // Certificate and token: the certificate opens the connection, the
    // token says who is calling.
    write(&d.join("token"), TOKEN.as_bytes());
    let s = tls_signer(
        &d,
        &[
            "--client-ca",
            "clients.pem",
            "--token-file",
            "token",
            "--builder-id",
            LOCAL_BUILDER,
        ],
    );
    run(attest_via(&d, &s.https(), &args(&right), "x.jsonl"))
        .fails(3, "HTTP 401: missing bearer token");
    let mut both = args(&right);
    both.extend(["--signer-token-file", "token"]);
    run(attest_via(&d, &s.https(), &both, "att2.jsonl")).ok();
    let line = s.audit().last().unwrap().clone();
    assert_eq!(line["caller"]["kind"], "sharedToken");
    assert_eq!(line["clientCertificate"]["subject"], "CN=builder-a");
}

/// Lays out `dir` as kubelet lays out a Secret volume: the files are links
/// through `..data`, which is swapped atomically to a new directory.
fn secret_volume(dir: &Path, generation: u32, crt: &str, key: &str) {
    let gen = dir.join(format!("..gen{generation}"));
    write(&gen.join("tls.crt"), crt.as_bytes());
    write(&gen.join("tls.key"), key.as_bytes());
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..gen{generation}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(f)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).unwrap();
        }
    }
}

/// Whether a TLS client trusting only `ca` can fetch the public key.
fn trusts(url: &str, ca: &str) -> bool {
    let client = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    rt().block_on(async { client.get(format!("{url}/v1/publickey")).send().await })
        .is_ok_and(|r| r.status().is_success())
}

/// cert-manager renews the certificate: new connections get it without a
/// restart; a half-written renewal keeps the previous certificate.
#[test]
fn a_rotated_certificate_is_served_without_restart() {
    let (_t, d) = workdir();
    let ca1 = Ca::new("CA before");
    let ca2 = Ca::new("CA after");
    write(&d.join("ca1.pem"), ca1.pem().as_bytes());
    write(&d.join("ca2.pem"), ca2.pem().as_bytes());
    write(&d.join("token"), TOKEN.as_bytes());
    let (c1, k1) = ca1.leaf("signer", &["127.0.0.1"], false, false);
    secret_volume(&d.join("tls"), 1, &c1, &k1);
    let mut s = SignerProc::start(
        &d,
        &[
            "--tls-cert",
            "tls/tls.crt",
            "--tls-key",
            "tls/tls.key",
            "--token-file",
            "token",
            "--builder-id",
            LOCAL_BUILDER,
        ],
    );
    let pid = s.child.id();
    let url = s.https();
    fn trust(ca: &str) -> Vec<&str> {
        vec!["--signer-ca", ca, "--signer-token-file", "token"]
    }
    run(attest_via(&d, &url, &trust("ca1.pem"), "a1.jsonl")).ok();
    assert!(!trusts(&url, &ca2.pem()));

    let (c2, k2) = ca2.leaf("signer", &["127.0.0.1"], false, false);
    secret_volume(&d.join("tls"), 2, &c2, &k2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !trusts(&url, &ca2.pem()) {
        assert!(
            Instant::now() < deadline,
            "new certificate never served:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    run(attest_via(&d, &url, &trust("ca2.pem"), "a2.jsonl")).ok();
    run(attest_via(&d, &url, &trust("ca1.pem"), "x.jsonl")).fails(3, "UnknownIssuer");
    assert!(s.alive());
    assert_eq!(s.child.id(), pid);
    assert!(s.log().contains("TLS files changed"), "{}", s.log());

    // A renewal whose key does not match its certificate is not taken.
    let (c3, _) = ca1.leaf("signer", &["127.0.0.1"], false, false);
    secret_volume(&d.join("tls"), 3, &c3, &k2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log().contains("do not load") {
        assert!(Instant::now() < deadline, "{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(trusts(&url, &ca2.pem()));
    assert!(!trusts(&url, &ca1.pem()));
    run(attest_via(&d, &url, &trust("ca2.pem"), "a3.jsonl")).ok();
}

/// Plain HTTP: on loopback with a warning (and the old shared-token flow
/// works there), elsewhere only when asked for; a client will not send a
/// token over plain HTTP to another machine unless told.
#[test]
fn plain_http_only_on_loopback_or_when_asked() {
    let (_t, d) = workdir();
    write(&d.join("token"), TOKEN.as_bytes());
    let s = SignerProc::start(
        &d,
        &["--token-file", "token", "--builder-id", LOCAL_BUILDER],
    );
    assert!(
        s.log().contains("serving plain HTTP on loopback"),
        "{}",
        s.log()
    );
    run(attest_via(
        &d,
        &s.http(),
        &["--signer-token-file", "token"],
        "att.jsonl",
    ))
    .ok();
    let mut c = provenant(&d);
    c.args(["verify", "--key", "k.pub", "att.jsonl"]);
    run(c).ok();
    drop(s);

    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let signer = |extra: &[&str]| {
        let mut c = provenant(&d);
        c.args(["signer", "--key", "k.key", "--listen", &listen])
            .args(extra);
        c
    };
    run(signer(&[
        "--token-file",
        "token",
        "--builder-id",
        LOCAL_BUILDER,
    ]))
    .fails(2, "give --tls-cert and --tls-key");
    // Asked for: it starts, and says what it is doing.
    let mut c = signer(&[
        "--token-file",
        "token",
        "--builder-id",
        LOCAL_BUILDER,
        "--insecure-plain-http",
    ]);
    c.stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let err = child.stderr.take().unwrap();
    let mut seen = String::new();
    use std::io::BufRead;
    for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
        seen.push_str(&l);
        seen.push('\n');
        if l.contains("signer ready") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("serving PLAIN HTTP"), "{seen}");
    assert!(seen.contains("signer ready"), "{seen}");

    // The client side: no token in clear text to another machine.
    run(attest_via(
        &d,
        "http://192.0.2.10:8788",
        &["--signer-token-file", "token"],
        "x.jsonl",
    ))
    .fails(3, "plain HTTP would carry the token");
    run(attest_via(&d, "http://127.0.0.1:1", &[], "x.jsonl"))
        .fails(3, "signer unavailable: http://127.0.0.1:1");
    assert!(!d.join("x.jsonl").exists());
}

/// A signer that would sign for anyone, or for callers without a builder
/// id, does not start.
#[test]
fn a_signer_without_authentication_does_not_start() {
    let (_t, d) = workdir();
    write(&d.join("token"), TOKEN.as_bytes());
    let ca = Ca::new("test signer CA");
    ca.server_files(&d, "server", false);
    let signer = |extra: &[&str]| {
        let mut c = provenant(&d);
        c.args(["signer", "--key", "k.key", "--listen"])
            .arg(format!("127.0.0.1:{}", free_port()))
            .args(extra);
        c
    };
    run(signer(&[
        "--tls-cert",
        "server.crt",
        "--tls-key",
        "server.key",
    ]))
    .fails(2, "no way to authenticate callers");
    run(signer(&["--token-file", "token"])).fails(2, "--token-file needs --builder-id");
    run(signer(&[
        "--oidc-issuer",
        "https://kubernetes.default.svc",
        "--oidc-jwks",
        "token",
    ]))
    .fails(2, "--oidc-issuer needs --builder");
    run(signer(&[
        "--token-file",
        "token",
        "--builder-id",
        "not a uri",
    ]))
    .fails(2, "--builder-id: builder id 'not a uri' is not a URI");
    run(signer(&[
        "--token-file",
        "token",
        "--builder",
        "Team_A=https://x",
    ]))
    .fails(2, "--builder 'Team_A=https://x'");
    // A key that is not the certificate's.
    let other = Ca::new("other");
    other.server_files(&d, "other", false);
    run(signer(&[
        "--tls-cert",
        "server.crt",
        "--tls-key",
        "other.key",
        "--token-file",
        "token",
        "--builder-id",
        LOCAL_BUILDER,
    ]))
    .fails(
        3,
        "--tls-key other.key: does not belong to the --tls-cert certificate",
    );
    run(signer(&[
        "--tls-cert",
        "missing.crt",
        "--tls-key",
        "server.key",
        "--token-file",
        "token",
        "--builder-id",
        LOCAL_BUILDER,
    ]))
    .fails(3, "--tls-cert missing.crt");
}

/// A signer that answers with more than the client's 64 KiB cap (a
/// compromised or misconfigured one, or something else listening on its
/// port) is cut off at the cap: the client does not buffer the answer, and
/// says why with one line before anything is hashed. The answer here is a
/// public key response padded to 1 MiB, sent in 4 KiB pieces.
#[test]
fn an_oversized_signer_answer_is_refused_at_the_cap() {
    use std::io::{Read, Write};
    let (_t, d) = workdir();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let body = format!(
                "{{\"publicKey\":\"{}\",\"keyId\":\"x\"}}",
                "A".repeat(1 << 20)
            );
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            if conn.write_all(head.as_bytes()).is_err() {
                continue;
            }
            for piece in body.as_bytes().chunks(4096) {
                if conn.write_all(piece).is_err() {
                    break;
                }
            }
        }
    });
    run(attest_via(&d, &url, &[], "x.jsonl")).fails(
        3,
        &format!("{url}/v1/publickey: response larger than 65536 bytes"),
    );
    assert!(!d.join("x.jsonl").exists());
}
