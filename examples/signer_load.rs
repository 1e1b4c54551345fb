//! Load generator for `provenant signer`, used by scripts/bench.sh (the
//! remote signer section, issue 15 item 6): CLIENTS clients, each on its own
//! keep-alive TLS connection as sidecars keep theirs, POST `/v1/sign` PER
//! times (closed loop: the next request when the last one is answered, so
//! CLIENTS requests are always in flight); and, in the same run, the same
//! statement signed locally with the same key by CLIENTS tasks sharing the
//! machine's cores, which is what `--key` costs. Prints one JSON line each:
//! the latency percentiles of every signature after each client's first
//! (the first also pays the TLS handshake: reported apart), throughput and
//! errors. A request counts as an error unless the signer answers 200 with
//! a signature that verifies with the key's public half.
//!
//!   signer_load issuer KEY_OUT JWKS_OUT
//!       an ES256 service-account issuer: its PKCS#8 key and its JWKS
//!   signer_load local KEY.pem ENVELOPE.jsonl CLIENTS PER
//!   signer_load remote URL CA.pem PUBLIC.pem ENVELOPE.jsonl CLIENTS PER \
//!       (token FILE | identity ISSUER_KEY ISSUER AUDIENCE NAMESPACE SERVICEACCOUNT)
//!
//! ENVELOPE.jsonl is an attestation `provenant attest` wrote (its statement
//! is what gets signed). With `identity`, every client is a pod of its own
//! in NAMESPACE: the statement gets that pod in
//! `internalParameters.pod`, and the client a projected-token-like JWT for
//! it, signed by the issuer key (`--oidc-jwks` of the signer gets JWKS_OUT),
//! as the signer's service-account mode requires.
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::Engine;
use provenant::sign::{Signer, VerifyingKey};

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn die(msg: &str) -> ! {
    eprintln!("signer_load: {msg}");
    std::process::exit(2)
}

fn usage() -> ! {
    die("usage: signer_load issuer KEY_OUT JWKS_OUT | local KEY.pem ENVELOPE CLIENTS PER | remote URL CA.pem PUBLIC.pem ENVELOPE CLIENTS PER (token FILE | identity ISSUER_KEY ISSUER AUDIENCE NAMESPACE SERVICEACCOUNT)")
}

/// The statement (payload type, bytes) of the first envelope in a file.
fn statement(path: &str) -> (String, Vec<u8>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| die(&format!("{path}: empty")));
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    let payload = b64()
        .decode(v["payload"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| die(&format!("{path}: payload: {e}")));
    (
        v["payloadType"].as_str().unwrap_or_default().to_string(),
        payload,
    )
}

/// Latencies (µs) of one client: its first request apart, then the rest.
struct ClientResult {
    first: Option<u64>,
    rest: Vec<u64>,
    errors: usize,
}

fn report(mode: &str, results: Vec<ClientResult>, wall: f64) {
    let mut lat = Vec::new();
    let mut firsts = Vec::new();
    let mut errors = 0;
    for r in results {
        firsts.extend(r.first);
        lat.extend(r.rest);
        errors += r.errors;
    }
    lat.sort_unstable();
    firsts.sort_unstable();
    let n = lat.len() + firsts.len();
    println!(
        "{{\"mode\":\"{mode}\",\"requests\":{n},\"errors\":{errors},\"p50_us\":{},\"p99_us\":{},\"max_us\":{},\"first_p50_us\":{},\"first_p99_us\":{},\"rps\":{:.0}}}",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
        percentile(&firsts, 0.50),
        percentile(&firsts, 0.99),
        n as f64 / wall
    );
}

fn runtime() -> tokio::runtime::Runtime {
    // The machine's cores are shared with the signer (or, locally, are
    // what signing has): two workers, as the bench machine has two cores.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn issuer(key_out: &str, jwks_out: &str) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .unwrap_or_else(|_| die("cannot make an issuer key"));
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = key.public_key().as_ref();
    let jwks = serde_json::json!({"keys": [{
        "use": "sig", "kty": "EC", "crv": "P-256", "kid": "bench-1", "alg": "ES256",
        "x": b64url(&point[1..33]), "y": b64url(&point[33..65]),
    }]});
    std::fs::write(key_out, pkcs8.as_ref()).unwrap_or_else(|e| die(&format!("{key_out}: {e}")));
    std::fs::write(jwks_out, jwks.to_string()).unwrap_or_else(|e| die(&format!("{jwks_out}: {e}")));
}

fn local(a: &[String]) {
    let [key, envelope, clients, per] = a else {
        usage()
    };
    let signer = Arc::new(
        provenant::sign::LocalSigner::load(std::path::Path::new(key))
            .unwrap_or_else(|e| die(&format!("{key}: {e}"))),
    );
    let (ptype, payload) = statement(envelope);
    let pae = Arc::new(provenant::sign::pae(&ptype, &payload));
    let clients: usize = clients.parse().unwrap_or_else(|_| usage());
    let per: usize = per.parse().unwrap_or_else(|_| usage());
    let rt = runtime();
    let t0 = Instant::now();
    let results = rt.block_on(async move {
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (signer, pae) = (signer.clone(), pae.clone());
            tasks.push(tokio::spawn(async move {
                let mut r = ClientResult {
                    first: None,
                    rest: Vec::with_capacity(per),
                    errors: 0,
                };
                for i in 0..per {
                    let (s, p) = (signer.clone(), pae.clone());
                    let t = Instant::now();
                    let ok = tokio::task::spawn_blocking(move || s.sign(&p).is_ok())
                        .await
                        .unwrap_or(false);
                    let us = t.elapsed().as_micros() as u64;
                    match (ok, i) {
                        (false, _) => r.errors += 1,
                        (true, 0) => r.first = Some(us),
                        (true, _) => r.rest.push(us),
                    }
                }
                r
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    report("local", results, t0.elapsed().as_secs_f64());
}

/// A projected-service-account-token-like JWT for pod `name` (uid `uid`).
#[allow(clippy::too_many_arguments)]
fn pod_token(
    key: &EcdsaKeyPair,
    iss: &str,
    aud: &str,
    ns: &str,
    sa: &str,
    name: &str,
    uid: &str,
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({
        "aud": [aud], "exp": now + 3600, "iat": now - 10, "nbf": now - 10, "iss": iss,
        "kubernetes.io": {
            "namespace": ns,
            "pod": {"name": name, "uid": uid},
            "serviceaccount": {"name": sa, "uid": "0c1a5f2e-2222-4b7e-8f00-000000000002"},
        },
        "sub": format!("system:serviceaccount:{ns}:{sa}"),
    });
    let input = format!(
        "{}.{}",
        b64url(br#"{"alg":"ES256","kid":"bench-1","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    );
    let sig = key
        .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
        .unwrap();
    format!("{input}.{}", b64url(sig.as_ref()))
}

fn remote(a: &[String]) {
    if a.len() < 8 {
        usage()
    }
    let (url, ca, public, envelope) = (&a[0], &a[1], &a[2], &a[3]);
    let clients: usize = a[4].parse().unwrap_or_else(|_| usage());
    let per: usize = a[5].parse().unwrap_or_else(|_| usage());
    let ca = std::fs::read(ca).unwrap_or_else(|e| die(&format!("{ca}: {e}")));
    let public = std::fs::read(public).unwrap_or_else(|e| die(&format!("{public}: {e}")));
    let vk = Arc::new(
        VerifyingKey::from_pem("public key", &public).unwrap_or_else(|e| die(&e.to_string())),
    );
    let (ptype, payload) = statement(envelope);
    // Per client: the bearer token and the PAE it asks to have signed.
    let work: Vec<(String, Vec<u8>)> = match (a[6].as_str(), &a[7..]) {
        ("token", [file]) => {
            let token = std::fs::read_to_string(file)
                .unwrap_or_else(|e| die(&format!("{file}: {e}")))
                .trim()
                .to_string();
            let pae = provenant::sign::pae(&ptype, &payload);
            (0..clients).map(|_| (token.clone(), pae.clone())).collect()
        }
        ("identity", [key, iss, aud, ns, sa]) => {
            let der = std::fs::read(key).unwrap_or_else(|e| die(&format!("{key}: {e}")));
            let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                .unwrap_or_else(|_| die("issuer key: not PKCS#8 P-256"));
            let st: serde_json::Value =
                serde_json::from_slice(&payload).unwrap_or_else(|e| die(&e.to_string()));
            (0..clients)
                .map(|c| {
                    let name = format!("build-{c:04}");
                    let uid = format!("3f1e2d4c-0000-4a5b-8c7d-{c:012}");
                    let mut st = st.clone();
                    st["predicate"]["buildDefinition"]["internalParameters"]["pod"] = serde_json::json!({
                        "namespace": ns, "name": name, "uid": uid, "serviceAccount": sa,
                    });
                    let body = serde_json::to_vec(&st).unwrap();
                    (
                        pod_token(&key, iss, aud, ns, sa, &name, &uid),
                        provenant::sign::pae(&ptype, &body),
                    )
                })
                .collect()
        }
        _ => usage(),
    };
    let mode = a[6].clone();
    let sign_url = format!("{}/v1/sign", url.trim_end_matches('/'));
    let rt = runtime();
    let t0 = Instant::now();
    let results = rt.block_on(async move {
        let mut tasks = Vec::new();
        for (token, pae) in work {
            let (url, ca, vk) = (sign_url.clone(), ca.clone(), vk.clone());
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let body = serde_json::json!({"pae": b64().encode(&pae)}).to_string();
                let mut r = ClientResult {
                    first: None,
                    rest: Vec::with_capacity(per),
                    errors: 0,
                };
                for i in 0..per {
                    let t = Instant::now();
                    let answer = client
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    let sig = match answer {
                        Ok(a) if a.status().is_success() => a
                            .json::<serde_json::Value>()
                            .await
                            .ok()
                            .and_then(|v| b64().decode(v["sig"].as_str()?).ok()),
                        Ok(a) => {
                            if r.errors == 0 {
                                eprintln!(
                                    "signer_load: HTTP {}: {}",
                                    a.status(),
                                    a.text().await.unwrap_or_default()
                                );
                            }
                            None
                        }
                        Err(e) => {
                            if r.errors == 0 {
                                eprintln!("signer_load: {e}");
                            }
                            None
                        }
                    };
                    let us = t.elapsed().as_micros() as u64;
                    let ok = sig.is_some_and(|s| vk.verify(&pae, &s));
                    match (ok, i) {
                        (false, _) => r.errors += 1,
                        (true, 0) => r.first = Some(us),
                        (true, _) => r.rest.push(us),
                    }
                }
                r
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    report(
        &format!("remote-{mode}"),
        results,
        t0.elapsed().as_secs_f64(),
    );
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    match a.first().map(String::as_str) {
        Some("issuer") if a.len() == 3 => issuer(&a[1], &a[2]),
        Some("local") => local(&a[1..]),
        Some("remote") => remote(&a[1..]),
        _ => usage(),
    }
}
