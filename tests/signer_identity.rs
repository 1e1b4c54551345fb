//! A signer that knows who is calling: each pod authenticates with its
//! projected service-account token (a JWT the cluster issuer signed; here
//! an issuer made by the test, its JWKS in a file or served for OIDC
//! discovery), and gets signed only statements about itself, with the
//! builder id the signer's configuration gives its namespace. Every
//! refusal leaves its reason in the audit log.
mod common;
#[path = "signer_support/mod.rs"]
mod support;

use std::time::Duration;

use common::*;
use support::*;

const ISS: &str = "https://kubernetes.default.svc.cluster.local";
const AUD: &str = "provenant-signer";
const TEAM_A: &str = "https://ci.example.com/clusters/prod/team-a";
const RELEASE: &str = "https://ci.example.com/clusters/prod/team-a-release";

struct Setup {
    _t: tempfile::TempDir,
    d: std::path::PathBuf,
    ca: String,
    issuer: Issuer,
    signer: SignerProc,
}

/// A TLS signer trusting `issuer`'s JWKS file, with builder ids for
/// namespace team-a and its service account `release`.
fn setup() -> Setup {
    let (t, d) = workdir();
    let ca = Ca::new("test signer CA");
    ca.server_files(&d, "server", false);
    write(&d.join("ca.pem"), ca.pem().as_bytes());
    let issuer = Issuer::new(ISS, "key-1");
    write(&d.join("jwks.json"), issuer.jwks().as_bytes());
    let signer = SignerProc::start(
        &d,
        &[
            "--tls-cert",
            "server.crt",
            "--tls-key",
            "server.key",
            "--oidc-issuer",
            ISS,
            "--oidc-jwks",
            "jwks.json",
            "--builder",
            &format!("team-a={TEAM_A}"),
            "--builder",
            &format!("team-a/release={RELEASE}"),
        ],
    );
    Setup {
        _t: t,
        d,
        ca: ca.pem(),
        issuer,
        signer,
    }
}

fn pod_a() -> Pod {
    Pod::new(
        "team-a",
        "build-7f9c2",
        "3f1e2d4c-0000-4a5b-8c7d-00000000000a",
        "builder",
    )
}

/// The sidecar of pod A, for real: `snapshot` with the pod's downward-API
/// facts, then `record` signing through the signer with the pod's token.
/// The start-up check and the signature each leave an audit line naming
/// the pod; the attestation verifies with the signer's public key.
#[test]
fn a_pod_gets_its_own_build_signed() {
    let s = setup();
    let d = &s.d;
    let pod = pod_a();
    write(
        &d.join("ws/source/main.c"),
        b"int main(void) { return 0; }\n",
    );
    write(
        &d.join("token.jwt"),
        s.issuer
            .token(&kube_claims(ISS, AUD, &pod, 3600))
            .as_bytes(),
    );
    snapshot(
        d,
        &[
            "--pod-name",
            &pod.name,
            "--pod-namespace",
            &pod.namespace,
            "--pod-uid",
            &pod.uid,
            "--service-account",
            &pod.service_account,
            "--node-name",
            "node-1",
        ],
    );
    let mut c = provenant(d);
    c.args([
        "record",
        "--state",
        "state",
        "--signer",
        &s.signer.https(),
        "--signer-ca",
        "ca.pem",
        "--signer-token-file",
        "token.jwt",
        "--builder-id",
        TEAM_A,
        "--completion",
        "marker:done",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if l.contains("ready: watching the workspace") {
                let _ = tx.send(());
            }
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        panic!("sidecar not ready:\n{}", log.join().unwrap());
    }
    // The check happened before the watch: one identity line.
    let line = s.signer.audit_line(1);
    assert_eq!(line["event"], "identity");
    assert_eq!(line["caller"]["kind"], "serviceAccount");
    // The builder.
    write(&d.join("ws/out/app.bin"), b"\x7fELF built in pod A");
    write(&d.join("done"), b"0\n");
    let status = child.wait().unwrap();
    let stderr = log.join().unwrap();
    assert!(status.success(), "{stderr}\nsigner:\n{}", s.signer.log());
    let mut v = provenant(d);
    v.args(["verify", "--key", "k.pub", "state/provenance.intoto.jsonl"]);
    run(v).ok();

    let line = s.signer.audit_line(2);
    assert_eq!(line["event"], "signed");
    assert_eq!(
        line["caller"],
        serde_json::json!({
            "kind": "serviceAccount",
            "issuer": ISS,
            "namespace": "team-a",
            "serviceAccount": "builder",
            "pod": pod.name,
            "podUid": pod.uid,
            "node": "node-1",
        })
    );
    assert_eq!(line["builderId"], TEAM_A);
    let st = statement_of(&d.join("state/provenance.intoto.jsonl"));
    let payload = serde_json::to_vec(&st).unwrap();
    let env = read_json(&d.join("state/provenance.intoto.jsonl"));
    use base64::Engine;
    let signed_payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    assert_eq!(line["statementSha256"], sha256_hex(&signed_payload));
    assert_eq!(
        st,
        serde_json::from_slice::<serde_json::Value>(&payload).unwrap()
    );
    let subjects: Vec<(String, String)> = line["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["digest"]["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        subjects,
        vec![(
            "ws/out/app.bin".to_string(),
            sha256_hex(b"\x7fELF built in pod A")
        )]
    );
}

/// The reasons tokens are refused, each in the answer and in the audit
/// line (which then names no caller: nobody was authenticated).
#[test]
fn bad_tokens_are_refused_with_the_reason_in_the_audit_log() {
    let s = setup();
    let url = s.signer.https();
    let pod = pod_a();
    let good = kube_claims(ISS, AUD, &pod, 3600);
    let body = statement(SLSA, TEAM_A, Some(pod.json()), &[("app", b"app")]);
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    let stranger = Issuer::new(ISS, "key-1");
    let other_kid = Issuer::new(ISS, "key-9");
    let signed_good = s.issuer.token(&good);
    // The same signature over other claims.
    let tampered = {
        let parts: Vec<&str> = signed_good.split('.').collect();
        let evil = with(&|c| c["kubernetes.io"]["namespace"] = "kube-system".into());
        format!(
            "{}.{}.{}",
            parts[0],
            b64url(evil.to_string().as_bytes()),
            parts[2]
        )
    };
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        (
            "expired",
            Some(s.issuer.token(&with(&|c| {
                c["exp"] = (now() - 3600).into();
            }))),
            "token expired",
        ),
        (
            "not yet valid",
            Some(s.issuer.token(&with(&|c| {
                c["nbf"] = (now() + 3600).into();
            }))),
            "token not valid yet",
        ),
        (
            "wrong audience",
            Some(s.issuer.token(&with(&|c| {
                c["aud"] = serde_json::json!(["sigstore"]);
            }))),
            "token audience does not include provenant-signer",
        ),
        (
            "wrong issuer",
            Some(s.issuer.token(&with(&|c| {
                c["iss"] = "https://evil.example.com".into();
            }))),
            "token issuer is not https://kubernetes.default.svc.cluster.local",
        ),
        (
            "unsigned",
            Some(unsigned_token(&good)),
            "unsigned token (alg none) refused",
        ),
        (
            "HMAC with the public key",
            Some(hs256_token(&s.issuer.public_der(), "key-1", &good)),
            "token algorithm HS256 refused",
        ),
        (
            "another issuer's key, same kid",
            Some(stranger.token(&good)),
            "token signature does not verify with the issuer's keys",
        ),
        (
            "unknown kid",
            Some(other_kid.token(&good)),
            "no RS256 key with id \"key-9\" among the issuer's keys",
        ),
        (
            "tampered claims",
            Some(tampered),
            "token signature does not verify",
        ),
        (
            "not bound to a pod",
            Some(s.issuer.token(&with(&|c| {
                c["kubernetes.io"].as_object_mut().unwrap().remove("pod");
            }))),
            "token is not bound to a pod",
        ),
        (
            "subject of another account",
            Some(s.issuer.token(&with(&|c| {
                c["sub"] = "system:serviceaccount:kube-system:admin".into();
            }))),
            "token subject does not match its kubernetes.io claims",
        ),
        (
            "no expiry",
            Some(s.issuer.token(&with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }))),
            "token has no exp claim",
        ),
        (
            "not a token",
            Some("0123456789abcdef-secret".into()),
            "bearer token is not a JWT",
        ),
        ("no token", None, "missing bearer token"),
    ];
    for (i, (what, token, reason)) in cases.iter().enumerate() {
        let (status, answer) = sign_request(&url, Some(&s.ca), token.as_deref(), IN_TOTO, &body);
        assert_eq!(status, 401, "{what}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(reason),
            "{what}: {answer}"
        );
        let line = s.signer.audit_line(i + 1);
        assert_eq!(line["event"], "refused", "{what}");
        assert_eq!(line["path"], "/v1/sign");
        assert!(
            line["reason"].as_str().unwrap().contains(reason),
            "{what}: {line}"
        );
        assert!(line.get("caller").is_none(), "{what}: {line}");
        // Refused before the body was read.
        assert!(line.get("statementSha256").is_none(), "{what}: {line}");
    }
    // And the good token works.
    let (status, answer) = sign_request(&url, Some(&s.ca), Some(&signed_good), IN_TOTO, &body);
    assert_eq!(status, 200, "{answer}");
}

/// A valid token gets signed only statements about its own pod, with its
/// namespace's builder id, and only SLSA provenance. The signature it
/// does get verifies with the signer's public key.
#[test]
fn a_pod_cannot_get_another_pods_statement_signed() {
    let s = setup();
    let url = s.signer.https();
    let pod = pod_a();
    let token = s.issuer.token(&kube_claims(ISS, AUD, &pod, 3600));
    let subjects: &[(&str, &[u8])] = &[("app.bin", b"one"), ("lib/x.so", b"two")];
    let other = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut p = pod.json();
        f(&mut p);
        p
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "another pod",
            statement(SLSA, TEAM_A, Some(other(&|p| p["name"] = "release-build-1".into())), subjects),
            "internalParameters.pod.name is \"release-build-1\" but the caller's token is for \"build-7f9c2\"",
        ),
        (
            "same name, another uid (a later pod)",
            statement(SLSA, TEAM_A, Some(other(&|p| p["uid"] = "11111111-2222-3333-4444-555555555555".into())), subjects),
            "pod.uid is",
        ),
        (
            "another namespace",
            statement(SLSA, TEAM_A, Some(other(&|p| p["namespace"] = "team-b".into())), subjects),
            "pod.namespace is \"team-b\"",
        ),
        (
            "another service account",
            statement(SLSA, TEAM_A, Some(other(&|p| p["serviceAccount"] = "release".into())), subjects),
            "pod.serviceAccount is \"release\"",
        ),
        (
            "another node",
            statement(SLSA, TEAM_A, Some(other(&|p| p["node"] = "node-9".into())), subjects),
            "pod.node is \"node-9\"",
        ),
        (
            "no pod",
            statement(SLSA, TEAM_A, None, subjects),
            "internalParameters.pod is missing",
        ),
        (
            "a pod without its uid",
            statement(SLSA, TEAM_A, Some(other(&|p| {
                p.as_object_mut().unwrap().remove("uid");
            })), subjects),
            "pod.uid is missing",
        ),
        (
            "the release account's builder id",
            statement(SLSA, RELEASE, Some(pod.json()), subjects),
            "builder.id is \"https://ci.example.com/clusters/prod/team-a-release\"; this signer signs only \"https://ci.example.com/clusters/prod/team-a\"",
        ),
        (
            "a verification summary",
            statement("https://slsa.dev/verification_summary/v1", TEAM_A, Some(pod.json()), subjects),
            "only SLSA provenance v1",
        ),
    ];
    for (i, (what, st, reason)) in cases.iter().enumerate() {
        let (status, answer) = sign_request(&url, Some(&s.ca), Some(&token), IN_TOTO, st);
        assert_eq!(status, 403, "{what}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(reason),
            "{what}: {answer}"
        );
        let line = s.signer.audit_line(i + 1);
        assert_eq!(line["event"], "refused", "{what}");
        assert!(
            line["reason"].as_str().unwrap().contains(reason),
            "{what}: {line}"
        );
        assert_eq!(line["caller"]["pod"], pod.name, "{what}");
        assert_eq!(line["statementSha256"], sha256_hex(st), "{what}");
        assert_eq!(
            line["subjects"],
            serde_json::json!([
                {"name": "app.bin", "digest": {"sha256": sha256_hex(b"one")}},
                {"name": "lib/x.so", "digest": {"sha256": sha256_hex(b"two")}},
            ]),
            "{what}"
        );
    }
    // Its own statement: signed, and the signature is the signer key's.
    let st = statement(SLSA, TEAM_A, Some(pod.json()), subjects);
    let (status, answer) = sign_request(&url, Some(&s.ca), Some(&token), IN_TOTO, &st);
    assert_eq!(status, 200, "{answer}");
    use base64::Engine;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(answer["sig"].as_str().unwrap())
        .unwrap();
    let key = provenant::sign::VerifyingKey::from_pem("k.pub", read(&s.d.join("k.pub")).as_bytes())
        .unwrap();
    assert!(key.verify(&pae(IN_TOTO, &st), &sig));
    assert_eq!(answer["keyid"], key.id);
    let line = s.signer.audit_line(cases.len() + 1);
    assert_eq!(line["event"], "signed");
    assert_eq!(line["statementSha256"], sha256_hex(&st));

    // The release account of the same namespace has its own builder id.
    let release = Pod::new("team-a", "release-1", "uid-r", "release");
    let t = s.issuer.token(&kube_claims(ISS, AUD, &release, 3600));
    let (status, answer) = request(&format!("{url}/v1/identity"), Some(&s.ca), Some(&t), None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["builderId"], RELEASE);
    assert_eq!(
        answer["caller"],
        "pod team-a/release-1 (service account release)"
    );
    // A namespace the signer has no builder id for signs nothing.
    let b = Pod::new("team-b", "b-1", "uid-b", "default");
    let t = s.issuer.token(&kube_claims(ISS, AUD, &b, 3600));
    let (status, answer) = request(&format!("{url}/v1/identity"), Some(&s.ca), Some(&t), None);
    assert_eq!(status, 403, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("no builder id configured for namespace team-b"));
}

/// What the sidecar's start-up check catches, before the build: an
/// expired token, a builder id the signer would not sign.
#[test]
fn the_sidecar_check_fails_before_the_build() {
    let s = setup();
    let d = &s.d;
    let pod = pod_a();
    write(
        &d.join("expired.jwt"),
        s.issuer
            .token(&kube_claims(ISS, AUD, &pod, -7200))
            .as_bytes(),
    );
    write(
        &d.join("good.jwt"),
        s.issuer
            .token(&kube_claims(ISS, AUD, &pod, 3600))
            .as_bytes(),
    );
    let attest = |token: &str, builder: &str| {
        let mut c = provenant(d);
        c.args([
            "attest",
            "--material",
            "src",
            "--product",
            "out",
            "--signer",
        ])
        .arg(s.signer.https())
        .args([
            "--signer-ca",
            "ca.pem",
            "--signer-token-file",
            token,
            "--builder-id",
            builder,
            "-o",
            "x.jsonl",
        ]);
        c
    };
    run(attest("expired.jwt", TEAM_A)).fails(3, "HTTP 401: token expired");
    run(attest("good.jwt", "https://ci.example.com/made-up")).fails(
        3,
        "signs only builder id \"https://ci.example.com/clusters/prod/team-a\" for pod team-a/build-7f9c2 (service account builder)",
    );
    assert!(!d.join("x.jsonl").exists());
}

/// The JWKS file is re-read when it changes: a rotated issuer key is
/// accepted without a restart.
#[test]
fn a_rotated_issuer_key_is_picked_up_from_the_file() {
    let s = setup();
    let url = s.signer.https();
    let pod = pod_a();
    let next = Issuer::new(ISS, "key-2");
    let token = next.token(&kube_claims(ISS, AUD, &pod, 3600));
    let (status, _) = request(
        &format!("{url}/v1/identity"),
        Some(&s.ca),
        Some(&token),
        None,
    );
    assert_eq!(status, 401);
    // Both keys while the issuer rotates, as a cluster publishes them.
    let both = serde_json::json!({"keys": [s.issuer.jwk(), next.jwk()]});
    let tmp = s.d.join("jwks.json.tmp");
    write(&tmp, both.to_string().as_bytes());
    std::fs::rename(&tmp, s.d.join("jwks.json")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, answer) = request(
            &format!("{url}/v1/identity"),
            Some(&s.ca),
            Some(&token),
            None,
        );
        if status == 200 {
            assert_eq!(answer["builderId"], TEAM_A);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{answer}\n{}",
            s.signer.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let old = s.issuer.token(&kube_claims(ISS, AUD, &pod, 3600));
    let (status, _) = request(&format!("{url}/v1/identity"), Some(&s.ca), Some(&old), None);
    assert_eq!(status, 200);
}

/// OIDC discovery as against an API server: the issuer's document and
/// keys over HTTPS with the signer's own bearer token; a token with a new
/// key id makes the signer fetch the keys again (once, however many
/// made-up key ids follow); a discovery document for another issuer stops
/// the start.
#[test]
fn issuer_keys_come_from_discovery_and_follow_rotation() {
    let (_t, d) = workdir();
    let ca = Ca::new("cluster CA");
    ca.server_files(&d, "server", false);
    write(&d.join("ca.pem"), ca.pem().as_bytes());
    write(&d.join("signer-sa.token"), b"signer-own-sa-token");
    let srv = issuer_server(&ca, "signer-own-sa-token", None);
    let issuer = Issuer::new(&srv.url, "key-1");
    *srv.jwks.lock().unwrap() = issuer.jwks();
    let signer_args = |iss: &str| -> Vec<String> {
        [
            "--tls-cert",
            "server.crt",
            "--tls-key",
            "server.key",
            "--oidc-issuer",
            iss,
            "--oidc-ca",
            "ca.pem",
            "--oidc-token-file",
            "signer-sa.token",
            "--builder",
            &format!("*={TEAM_A}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let a = signer_args(&srv.url);
    let s = SignerProc::start(&d, &a.iter().map(String::as_str).collect::<Vec<_>>());
    let url = s.https();
    let pod = pod_a();
    let ca_pem = ca.pem();
    let identity = |t: &str| request(&format!("{url}/v1/identity"), Some(&ca_pem), Some(t), None);
    let (status, answer) = identity(&issuer.token(&kube_claims(&srv.url, AUD, &pod, 3600)));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["builderId"], TEAM_A);
    assert_eq!(*srv.fetches.lock().unwrap(), 1);

    // The cluster rotates its key: an unknown kid makes the signer fetch
    // the keys again (at most every 5 s).
    let next = Issuer::new(&srv.url, "key-2");
    *srv.jwks.lock().unwrap() = next.jwks();
    let t2 = next.token(&kube_claims(&srv.url, AUD, &pod, 3600));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, answer) = identity(&t2);
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{answer}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let fetched = *srv.fetches.lock().unwrap();
    assert_eq!(fetched, 2);
    // Made-up key ids right after do not become a stream of fetches.
    for kid in ["x1", "x2", "x3", "x4", "x5"] {
        let t = Issuer::new(&srv.url, kid).token(&kube_claims(&srv.url, AUD, &pod, 3600));
        let (status, answer) = identity(&t);
        assert_eq!(status, 401, "{answer}");
        assert!(answer["error"]
            .as_str()
            .unwrap()
            .contains("no RS256 key with id"));
    }
    assert!(*srv.fetches.lock().unwrap() <= fetched + 1);
    drop(s);

    // Discovery says another issuer: no start.
    let liar = issuer_server(
        &ca,
        "signer-own-sa-token",
        Some("https://evil.example.com".into()),
    );
    *liar.jwks.lock().unwrap() = issuer.jwks();
    let mut c = provenant(&d);
    c.args(["signer", "--key", "k.key", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(signer_args(&liar.url));
    run(c).fails(3, "names issuer \"https://evil.example.com\"");
    // Without the signer's own token the issuer says 401.
    let mut c = provenant(&d);
    let mut a = signer_args(&srv.url);
    let i = a.iter().position(|x| x == "--oidc-token-file").unwrap();
    a.drain(i..i + 2);
    c.args(["signer", "--key", "k.key", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(a);
    run(c).fails(3, "openid-configuration: HTTP 401");
}

/// ES256, as a cluster whose service-account key is ECDSA P-256 signs;
/// the same key under another algorithm name is refused.
#[test]
fn an_ecdsa_issuer_key_works() {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let (_t, d) = workdir();
    let ca = Ca::new("test signer CA");
    ca.server_files(&d, "server", false);
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = key.public_key().as_ref().to_vec();
    assert_eq!((point.len(), point[0]), (65, 4));
    let jwks = serde_json::json!({"keys": [{
        "use": "sig", "kty": "EC", "crv": "P-256", "kid": "ec-1",
        "x": b64url(&point[1..33]), "y": b64url(&point[33..]),
    }]});
    write(&d.join("jwks.json"), jwks.to_string().as_bytes());
    let s = SignerProc::start(
        &d,
        &[
            "--tls-cert",
            "server.crt",
            "--tls-key",
            "server.key",
            "--oidc-issuer",
            ISS,
            "--oidc-jwks",
            "jwks.json",
            "--builder",
            &format!("team-a={TEAM_A}"),
        ],
    );
    let sign = |alg: &str| {
        let input = format!(
            "{}.{}",
            b64url(
                serde_json::json!({"alg": alg, "kid": "ec-1"})
                    .to_string()
                    .as_bytes()
            ),
            b64url(kube_claims(ISS, AUD, &pod_a(), 3600).to_string().as_bytes())
        );
        let sig = key
            .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64url(sig.as_ref()))
    };
    let url = format!("{}/v1/identity", s.https());
    let (status, answer) = request(&url, Some(&ca.pem()), Some(&sign("ES256")), None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["builderId"], TEAM_A);
    let (status, answer) = request(&url, Some(&ca.pem()), Some(&sign("ES384")), None);
    assert_eq!(status, 401, "{answer}");
    assert_eq!(
        answer["error"],
        "no ES384 key with id \"ec-1\" among the issuer's keys"
    );
    let (status, answer) = request(&url, Some(&ca.pem()), Some(&sign("RS256")), None);
    assert_eq!(status, 401, "{answer}");
}
