//! What the signer tests share: certificates made here (rcgen), a
//! `provenant signer` process with its audit log, service-account tokens
//! signed here (JWS built by hand over aws-lc-rs, not by the JWT library
//! the signer uses), statements, and a small HTTPS client.
#![allow(dead_code)]

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::common::*;

// ---------------------------------------------------------------- PKI

/// A certificate authority made for one test.
pub struct Ca {
    pub issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate and its key (PEM): a server certificate for
    /// `names`, or a client certificate.
    pub fn leaf(&self, cn: &str, names: &[&str], client: bool, expired: bool) -> (String, String) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let now = time::OffsetDateTime::now_utc();
        if expired {
            p.not_before = now - time::Duration::days(30);
            p.not_after = now - time::Duration::days(1);
        } else {
            p.not_before = now - time::Duration::hours(1);
            p.not_after = now + time::Duration::days(30);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `NAME.crt` and `NAME.key` of a server certificate for
    /// 127.0.0.1 into `dir`.
    pub fn server_files(&self, dir: &Path, name: &str, expired: bool) {
        let (c, k) = self.leaf("provenant signer", &["127.0.0.1"], false, expired);
        write(&dir.join(format!("{name}.crt")), c.as_bytes());
        write(&dir.join(format!("{name}.key")), k.as_bytes());
    }

    pub fn client_files(&self, dir: &Path, name: &str) {
        let (c, k) = self.leaf(name, &[&format!("{name}.clients.test")], true, false);
        write(&dir.join(format!("{name}.crt")), c.as_bytes());
        write(&dir.join(format!("{name}.key")), k.as_bytes());
    }
}

// ---------------------------------------------------------------- signer

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `provenant signer`; killed when dropped.
pub struct SignerProc {
    pub child: Child,
    pub port: u16,
    audit: Arc<Mutex<Vec<String>>>,
    log: Arc<Mutex<String>>,
}

impl SignerProc {
    /// `provenant signer --key k.key --listen 127.0.0.1:PORT ARGS` in `dir`.
    pub fn start(dir: &Path, args: &[&str]) -> SignerProc {
        Self::start_with(dir, args, |_| {})
    }

    pub fn start_with(
        dir: &Path,
        args: &[&str],
        tweak: impl FnOnce(&mut std::process::Command),
    ) -> SignerProc {
        let port = free_port();
        let mut c = provenant(dir);
        c.args(["signer", "--key", "k.key", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tweak(&mut c);
        let mut child = c.spawn().unwrap();
        let audit = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let a = audit.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                a.lock().unwrap().push(l);
            }
        });
        let log = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let lg = log.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if l.contains("signer ready") {
                    let _ = tx.send(());
                }
                let mut g = lg.lock().unwrap();
                g.push_str(&l);
                g.push('\n');
            }
        });
        let s = SignerProc {
            child,
            port,
            audit,
            log,
        };
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            panic!("signer did not become ready; its log:\n{}", s.log());
        }
        s
    }

    pub fn https(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Every audit line so far, parsed; each must be one JSON object.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        self.audit
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
            .collect()
    }

    /// The last audit line, waiting up to 5 s for there to be `n` lines.
    pub fn audit_line(&self, n: usize) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let a = self.audit();
            if a.len() >= n {
                assert_eq!(a.len(), n, "audit lines: {a:#?}");
                return a[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} audit lines, got {a:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SignerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- issuer

/// A stand-in for the API server's issuer endpoints over HTTPS: the
/// discovery document and the JWKS, only to a caller with the right
/// bearer token, and a count of the JWKS fetches.
pub struct IssuerServer {
    pub url: String,
    pub jwks: Arc<Mutex<String>>,
    pub fetches: Arc<Mutex<usize>>,
    _rt: tokio::runtime::Runtime,
}

pub fn issuer_server(ca: &Ca, bearer: &'static str, doc_issuer: Option<String>) -> IssuerServer {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let (cert, key) = ca.leaf("issuer", &["127.0.0.1"], false, false);
    let certs = rustls_pki_types::pem::PemObject::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<rustls_pki_types::CertificateDer>, _>>()
        .unwrap();
    let key: rustls_pki_types::PrivateKeyDer =
        rustls_pki_types::pem::PemObject::from_pem_slice(key.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let jwks = Arc::new(Mutex::new(String::new()));
    let fetches = Arc::new(Mutex::new(0usize));
    let (j, f, u) = (jwks.clone(), fetches.clone(), url.clone());
    let doc_issuer = doc_issuer.unwrap_or_else(|| url.clone());
    rt.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, j, f, u, di) = (
                acceptor.clone(),
                j.clone(),
                f.clone(),
                u.clone(),
                doc_issuer.clone(),
            );
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (j, f, u, di) = (j.clone(), f.clone(), u.clone(), di.clone());
                        async move {
                            let authorized = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                == Some(&format!("Bearer {bearer}"));
                            let (status, body) = match (authorized, req.uri().path()) {
                                (false, _) => (401, "{}".to_string()),
                                (true, "/.well-known/openid-configuration") => (
                                    200,
                                    serde_json::json!({
                                        "issuer": di,
                                        "jwks_uri": format!("{u}/openid/v1/jwks"),
                                        "response_types_supported": ["id_token"],
                                        "subject_types_supported": ["public"],
                                        "id_token_signing_alg_values_supported": ["RS256"],
                                    })
                                    .to_string(),
                                ),
                                (true, "/openid/v1/jwks") => {
                                    *f.lock().unwrap() += 1;
                                    (200, j.lock().unwrap().clone())
                                }
                                _ => (404, "{}".to_string()),
                            };
                            let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    IssuerServer {
        url,
        jwks,
        fetches,
        _rt: rt,
    }
}

// ---------------------------------------------------------------- tokens

pub fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A service-account issuer: an RSA key (Kubernetes' default kind) and
/// the JWKS a cluster would publish for it.
pub struct Issuer {
    pub iss: String,
    pub kid: String,
    key: aws_lc_rs::signature::RsaKeyPair,
}

impl Issuer {
    pub fn new(iss: &str, kid: &str) -> Issuer {
        Issuer {
            iss: iss.to_string(),
            kid: kid.to_string(),
            key: aws_lc_rs::signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .unwrap(),
        }
    }

    pub fn jwk(&self) -> serde_json::Value {
        use aws_lc_rs::signature::KeyPair as _;
        let public = self.key.public_key();
        serde_json::json!({
            "use": "sig",
            "kty": "RSA",
            "kid": self.kid,
            "alg": "RS256",
            "n": b64url(public.modulus().big_endian_without_leading_zero()),
            "e": b64url(public.exponent().big_endian_without_leading_zero()),
        })
    }

    pub fn jwks(&self) -> String {
        serde_json::json!({ "keys": [self.jwk()] }).to_string()
    }

    /// The DER of the RSA public key: what a key-confusion attack uses as
    /// an HMAC secret.
    pub fn public_der(&self) -> Vec<u8> {
        use aws_lc_rs::signature::KeyPair as _;
        self.key.public_key().as_ref().to_vec()
    }

    /// A JWS with `header` (alg RS256 and our kid unless given) over `claims`.
    pub fn sign(&self, header: serde_json::Value, claims: &serde_json::Value) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{input}.{}", b64url(&sig))
    }

    pub fn token(&self, claims: &serde_json::Value) -> String {
        self.sign(serde_json::json!({"alg": "RS256", "kid": self.kid}), claims)
    }
}

/// An unsigned token (`alg: none`, empty signature).
pub fn unsigned_token(claims: &serde_json::Value) -> String {
    format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    )
}

/// An HS256 token whose "secret" is `secret`.
pub fn hs256_token(secret: &[u8], kid: &str, claims: &serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(
            serde_json::json!({"alg": "HS256", "kid": kid})
                .to_string()
                .as_bytes()
        ),
        b64url(claims.to_string().as_bytes())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64url(tag.as_ref()))
}

/// A pod as the tests use it.
#[derive(Clone)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub service_account: String,
}

impl Pod {
    pub fn new(namespace: &str, name: &str, uid: &str, sa: &str) -> Pod {
        Pod {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
            service_account: sa.into(),
        }
    }

    /// `internalParameters.pod` as the sidecar writes it.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
            "serviceAccount": self.service_account,
        })
    }
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The claims of a projected service-account token (Kubernetes 1.30
/// layout, node included) for `pod`, valid from 10 minutes ago for
/// `valid_for` seconds from now (negative: expired).
pub fn kube_claims(iss: &str, aud: &str, pod: &Pod, valid_for: i64) -> serde_json::Value {
    let now = now();
    serde_json::json!({
        "aud": [aud],
        "exp": now + valid_for,
        "iat": now - 600,
        "nbf": now - 600,
        "iss": iss,
        "jti": "5d6a2b6e-0f3c-4bfa-9d59-4f0e8c2d0a11",
        "kubernetes.io": {
            "namespace": pod.namespace,
            "node": {"name": "node-1", "uid": "6b1d6c4e-1111-4a0c-9d3e-000000000001"},
            "pod": {"name": pod.name, "uid": pod.uid},
            "serviceaccount": {"name": pod.service_account, "uid": "0c1a5f2e-2222-4b7e-8f00-000000000002"},
            "warnafter": now + valid_for / 2,
        },
        "sub": format!("system:serviceaccount:{}:{}", pod.namespace, pod.service_account),
    })
}

// ---------------------------------------------------------------- statements

/// An in-toto Statement v1 with a SLSA Provenance v1 predicate.
pub fn statement(
    predicate_type: &str,
    builder_id: &str,
    pod: Option<serde_json::Value>,
    subjects: &[(&str, &[u8])],
) -> Vec<u8> {
    let mut internal = serde_json::json!({
        "materialsAs": "files", "productsAs": "files", "onError": "fail", "attestFailed": false
    });
    if let Some(p) = pod {
        internal["pod"] = p;
    }
    serde_json::to_vec(&serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subjects.iter().map(|(n, c)| serde_json::json!({
            "name": n, "digest": {"sha256": sha256_hex(c)}
        })).collect::<Vec<_>>(),
        "predicateType": predicate_type,
        "predicate": {
            "buildDefinition": {
                "buildType": "https://provenant.dev/build-types/observed/v1",
                "externalParameters": {},
                "internalParameters": internal,
            },
            "runDetails": {"builder": {"id": builder_id}},
        },
    }))
    .unwrap()
}

pub const SLSA: &str = "https://slsa.dev/provenance/v1";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    v.extend_from_slice(payload);
    v
}

// ---------------------------------------------------------------- HTTP

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One request to the signer, trusting `ca` (PEM); status and JSON body.
pub fn request(
    url: &str,
    ca: Option<&str>,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, serde_json::Value) {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(ca) = ca {
        b = b.tls_certs_only(reqwest::Certificate::from_pem_bundle(ca.as_bytes()).unwrap());
    }
    let client = b.build().unwrap();
    rt().block_on(async move {
        let mut req = match &body {
            Some(_) => client.post(url),
            None => client.get(url),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&text).unwrap_or(serde_json::Value::Null),
        )
    })
}

/// `POST /v1/sign` of the PAE of `payload`.
pub fn sign_request(
    base: &str,
    ca: Option<&str>,
    token: Option<&str>,
    payload_type: &str,
    payload: &[u8],
) -> (u16, serde_json::Value) {
    let body = serde_json::json!({
        "pae": base64::engine::general_purpose::STANDARD.encode(pae(payload_type, payload))
    });
    request(
        &format!("{base}/v1/sign"),
        ca,
        token,
        Some(body.to_string().into_bytes()),
    )
}

/// The directory a test works in: an example tree and a signing key.
pub fn workdir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().to_path_buf();
    example_tree(&d);
    keygen(&d, "k", "ecdsa-p256");
    (t, d)
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

pub const BUILDER: &str = "https://ci.example.com/builders/shared";
