//! Parser differential (issue 17 #1): provenant and securesystemslib (the
//! DSSE library of in-toto and TUF) read the same bytes, over a generated
//! corpus of more than 5,000 inputs: well-formed envelopes, envelopes with
//! extra, repeated and form-marking keys, log lines and bundles wrapping
//! another validly signed statement, base64 and JSON edge cases, and
//! random byte mutations of all of these.
//!
//! The property: whenever both accept an input, they accept the same
//! payload. For the structured cases the outcome of each tool is also
//! predicted exactly, so a change in either reader shows up here.
mod common;

use std::collections::BTreeMap;
use std::process::Command;

use base64::Engine;
use common::*;

/// What a reader did with an input.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Verified, with this payload (hex sha256).
    Accept(String),
    Reject,
}

/// The expected outcome of one tool, when predicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    A,
    B,
    /// Statement C, whose base64 has `+` and `/`.
    C,
    Reject,
    Any,
}

struct Case {
    bytes: Vec<u8>,
    provenant: Want,
    sslib: Want,
    what: &'static str,
}

/// xorshift64*: a fixed seed makes the corpus the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn provenant_outcome(bytes: &[u8], keys: &[provenant::sign::VerifyingKey]) -> Outcome {
    let Ok(read) = provenant::verify::input::read(bytes) else {
        return Outcome::Reject;
    };
    // The differential is about single documents: a log is never one JSON
    // value, so securesystemslib cannot read it at all.
    if read.found.len() != 1 {
        return Outcome::Reject;
    }
    let f = read.found.into_iter().next().unwrap();
    match provenant::verify::verify_envelope("x", f.envelope, keys, 1) {
        Ok(v) => Outcome::Accept(sha256_hex(&v.envelope.payload_bytes().unwrap())),
        Err(_) => Outcome::Reject,
    }
}

/// `{"k1":v1,...}` from raw key/value texts, in this order, repeats kept.
fn obj(fields: &[(&str, String)]) -> String {
    let inner: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[test]
fn provenant_and_securesystemslib_never_verify_different_payloads() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keygen(d, "k", "ecdsa-p256");
    keygen(d, "other", "ecdsa-p256");
    let st_a = slsa_statement(
        "https://ci.example.com/a",
        serde_json::json!([]),
        serde_json::json!({}),
        serde_json::json!({}),
    );
    let mut st_b = st_a.clone();
    st_b["subject"][0]["name"] = "out/evil".into();
    // A payload whose base64 has `+` and `/`, so its URL-safe form differs.
    let mut st_c = st_a.clone();
    st_c["subject"][0]["name"] = "out/???>>>~~~".into();
    let env_a: serde_json::Value = serde_json::from_str(&sign_statement(d, "k", &st_a)).unwrap();
    let env_b: serde_json::Value = serde_json::from_str(&sign_statement(d, "k", &st_b)).unwrap();
    let env_c: serde_json::Value = serde_json::from_str(&sign_statement(d, "k", &st_c)).unwrap();
    let env_x: serde_json::Value =
        serde_json::from_str(&sign_statement(d, "other", &st_b)).unwrap();
    let payload = |e: &serde_json::Value| b64().decode(e["payload"].as_str().unwrap()).unwrap();
    let hash_a = sha256_hex(&payload(&env_a));
    let hash_b = sha256_hex(&payload(&env_b));
    let hash_c = sha256_hex(&payload(&env_c));
    let s = |v: &serde_json::Value| v.to_string();
    let field = |e: &serde_json::Value, k: &str| s(&e[k]);
    let sig_a = s(&env_a["signatures"]);
    let (pa, pta) = (field(&env_a, "payload"), field(&env_a, "payloadType"));

    let mut cases: Vec<Case> = Vec::new();
    let mut add = |bytes: Vec<u8>, provenant: Want, sslib: Want, what: &'static str| {
        cases.push(Case {
            bytes,
            provenant,
            sslib,
            what,
        })
    };
    use Want::*;
    add(s(&env_a).into_bytes(), A, A, "the envelope");
    add(
        serde_json::to_vec_pretty(&env_a).unwrap(),
        A,
        A,
        "pretty-printed",
    );
    add(
        format!("\n\t {}\n\n", s(&env_a)).into_bytes(),
        A,
        A,
        "surrounding whitespace",
    );
    add(s(&env_x).into_bytes(), Reject, Reject, "another key");
    add(s(&env_c).into_bytes(), C, C, "payload C");

    let unknown_keys = [
        "Payload",
        "PAYLOAD",
        "payload_type",
        "envelope",
        "subjects",
        "file",
        "signed",
        "x",
        "payloadtype",
        "Signatures",
    ];
    let other_form_keys = [
        "provenantAttestation",
        "dsseEnvelope",
        "mediaType",
        "verificationMaterial",
        "log",
    ];
    let values = |r: &mut Rng| -> String {
        match r.below(8) {
            0 => s(&env_b),
            1 => field(&env_b, "payload"),
            2 => "null".into(),
            3 => "\"v1\"".into(),
            4 => "[1,2,{\"a\":[]}]".into(),
            5 => format!("{{\"envelope\":{}}}", s(&env_b)),
            6 => "12345678901234567890".into(),
            _ => "{\"payload\":\"e30=\"}".into(),
        }
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..400 {
        // Unknown keys are ignored by both.
        let k = unknown_keys[rng.below(unknown_keys.len())];
        let v = values(&mut rng);
        let mut f = vec![
            ("payload", pa.clone()),
            ("payloadType", pta.clone()),
            ("signatures", sig_a.clone()),
        ];
        f.insert(rng.below(4), (k, v));
        add(obj(&f).into_bytes(), A, A, "unknown key");
    }
    for _ in 0..400 {
        // A key of another form: provenant refuses, the library reads the
        // outer envelope.
        let k = other_form_keys[rng.below(other_form_keys.len())];
        let v = values(&mut rng);
        let mut f = vec![
            ("payload", pa.clone()),
            ("payloadType", pta.clone()),
            ("signatures", sig_a.clone()),
        ];
        f.insert(rng.below(4), (k, v));
        add(obj(&f).into_bytes(), Reject, A, "other-form key");
    }
    for i in 0..200 {
        // Repeated keys: Python keeps the last; provenant refuses.
        let (first, last, want) = if i % 2 == 0 {
            (field(&env_b, "payload"), pa.clone(), A)
        } else {
            (pa.clone(), field(&env_b, "payload"), Reject)
        };
        let f = vec![
            ("payload", first),
            ("payloadType", pta.clone()),
            ("signatures", sig_a.clone()),
            ("payload", last),
        ];
        add(obj(&f).into_bytes(), Reject, want, "repeated payload");
        let f = vec![
            ("signatures", "[]".into()),
            ("payload", pa.clone()),
            ("payloadType", pta.clone()),
            ("signatures", sig_a.clone()),
        ];
        add(obj(&f).into_bytes(), Reject, A, "repeated signatures");
    }
    for _ in 0..300 {
        // Log lines and bundles wrapping B: provenant reads B; the library
        // cannot read them at all...
        let line = obj(&[
            ("provenantAttestation", "\"v1\"".into()),
            ("envelope", s(&env_b)),
            ("subjects", "[]".into()),
        ]);
        add(line.into_bytes(), B, Reject, "log line");
        let bundle = obj(&[
            (
                "mediaType",
                "\"application/vnd.dev.sigstore.bundle.v0.3+json\"".into(),
            ),
            (
                "verificationMaterial",
                "{\"publicKey\":{\"hint\":\"k\"}}".into(),
            ),
            ("dsseEnvelope", s(&env_b)),
        ]);
        add(bundle.into_bytes(), B, Reject, "bundle");
        // ... and with A's envelope fields on the outside too, each reads
        // a different one: provenant refuses.
        let mut f = vec![
            ("provenantAttestation", "\"v1\"".to_string()),
            ("envelope", s(&env_b)),
        ];
        f.insert(rng.below(3), ("payload", pa.clone()));
        f.insert(rng.below(4), ("payloadType", pta.clone()));
        f.insert(rng.below(5), ("signatures", sig_a.clone()));
        add(
            obj(&f).into_bytes(),
            Reject,
            A,
            "log line with an outer envelope",
        );
        let mut f = vec![
            ("dsseEnvelope", s(&env_b)),
            (
                "mediaType",
                "\"application/vnd.dev.sigstore.bundle.v0.3+json\"".to_string(),
            ),
        ];
        f.insert(rng.below(3), ("payload", pa.clone()));
        f.insert(rng.below(4), ("payloadType", pta.clone()));
        f.insert(rng.below(5), ("signatures", sig_a.clone()));
        add(
            obj(&f).into_bytes(),
            Reject,
            A,
            "bundle with an outer envelope",
        );
    }
    // Signatures.
    let sa = &env_a["signatures"][0];
    let sb = &env_b["signatures"][0];
    let sig_cases: Vec<(String, Want, Want, &str)> = vec![
        (
            format!("[{},{}]", s(sa), s(sb)),
            A,
            Reject,
            "A's and B's signature, same keyid",
        ),
        (
            format!("[{{\"sig\":{}}}]", s(&sa["sig"])),
            A,
            Reject,
            "no keyid",
        ),
        (
            format!("[{{\"keyid\":\"0\",\"sig\":{}}}]", s(&sa["sig"])),
            A,
            Reject,
            "wrong keyid",
        ),
        (format!("[{}]", s(sb)), Reject, Reject, "B's signature"),
        (
            format!(
                "[{{\"keyid\":{},\"sig\":{},\"extra\":1}}]",
                s(&sa["keyid"]),
                s(&sa["sig"])
            ),
            A,
            A,
            "extra signature field",
        ),
        (
            format!("[{},{}]", s(sa), s(sa)),
            Reject,
            Reject,
            "signature twice",
        ),
        ("[]".into(), Reject, Reject, "no signatures"),
        ("{}".into(), Reject, Reject, "signatures not a list"),
    ];
    for (sigs, p, l, what) in sig_cases {
        for _ in 0..20 {
            add(
                obj(&[
                    ("payload", pa.clone()),
                    ("payloadType", pta.clone()),
                    ("signatures", sigs.clone()),
                ])
                .into_bytes(),
                p,
                l,
                what,
            );
        }
    }
    // Base64 forms of C's payload.
    let pc = env_c["payload"].as_str().unwrap().to_string();
    assert!(pc.contains('+') || pc.contains('/'), "{pc}");
    let sig_c = s(&env_c["signatures"]);
    let url = pc.replace('+', "-").replace('/', "_");
    let b64_cases: Vec<(String, Want, Want, &str)> = vec![
        (pc.clone(), C, C, "C"),
        // Both readers accept the URL-safe alphabet and decode the same
        // bytes from it.
        (url.clone(), C, C, "URL-safe"),
        (
            pc.trim_end_matches('=').to_string(),
            if pc.ends_with('=') { Reject } else { Want::Any },
            if pc.ends_with('=') { Reject } else { Want::Any },
            "unpadded",
        ),
        (
            format!("{}\n{}", &pc[..8], &pc[8..]),
            Reject,
            Reject,
            "newline inside",
        ),
        (format!(" {pc}"), Reject, Reject, "leading space"),
        (format!("{pc}=="), Reject, Want::Any, "extra padding"),
    ];
    for (p, want_p, want_l, what) in b64_cases {
        for _ in 0..10 {
            add(
                obj(&[
                    ("payload", serde_json::to_string(&p).unwrap()),
                    ("payloadType", pta.clone()),
                    ("signatures", sig_c.clone()),
                ])
                .into_bytes(),
                want_p,
                want_l,
                what,
            );
        }
    }
    // JSON edge cases: the library's parser accepts more, never less.
    let json_cases: Vec<(String, Want, Want, &str)> = vec![
        (format!("\u{feff}{}", s(&env_a)), Reject, A, "UTF-8 BOM"),
        (
            format!("{} {}", s(&env_a), s(&env_a)),
            Reject,
            Reject,
            "two documents",
        ),
        (
            format!("{}\n{}\n", s(&env_a), s(&env_b)),
            Reject,
            Reject,
            "two lines",
        ),
        (
            format!("{}x", s(&env_a)),
            Reject,
            Reject,
            "trailing garbage",
        ),
        (
            obj(&[
                ("payl\\u006fad", pa.clone()),
                ("payloadType", pta.clone()),
                ("signatures", sig_a.clone()),
            ])
            .replace("\"payl\\\\u006fad\"", "\"payl\\u006fad\""),
            A,
            A,
            "escaped key",
        ),
        (
            obj(&[
                ("payload", pa.clone()),
                ("payloadType", pta.clone()),
                ("signatures", sig_a.clone()),
                ("n", "NaN".into()),
            ]),
            Reject,
            A,
            "NaN",
        ),
        (
            obj(&[
                ("payload", pa.clone()),
                ("payloadType", pta.clone()),
                ("signatures", sig_a.clone()),
                ("n", "1e400".into()),
            ]),
            Reject,
            A,
            "huge number",
        ),
        (
            obj(&[
                ("payload", pa.clone()),
                ("payloadType", pta.clone()),
                ("signatures", sig_a.clone()),
                ("n", "\"\\ud800\"".into()),
            ]),
            Reject,
            A,
            "lone surrogate",
        ),
        (
            obj(&[
                ("payload", pa.clone()),
                ("payloadType", pta.clone()),
                ("signatures", sig_a.clone()),
                ("n", format!("{}{}", "[".repeat(200), "]".repeat(200))),
            ]),
            Reject,
            A,
            "deep nesting",
        ),
        (
            obj(&[
                ("payload", pa.clone()),
                ("payloadType", pta.clone()),
                ("signatures", sig_a.clone()),
                ("n", format!("{}{}", "[".repeat(100), "]".repeat(100))),
            ]),
            A,
            A,
            "nesting within limits",
        ),
        (format!("[{}]", s(&env_a)), Reject, Reject, "in an array"),
        (
            obj(&[
                ("payload", pa.clone()),
                ("payloadType", "\"text/plain\"".into()),
                ("signatures", sig_a.clone()),
            ]),
            Reject,
            Reject,
            "another payload type",
        ),
    ];
    for (text, p, l, what) in json_cases {
        for _ in 0..10 {
            add(text.clone().into_bytes(), p, l, what);
        }
    }
    // Random byte mutations of everything above: no prediction, only the
    // property.
    let seeds: Vec<Vec<u8>> = cases.iter().map(|c| c.bytes.clone()).collect();
    while cases.len() < 6000 {
        let mut b = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(3) {
            if b.is_empty() {
                break;
            }
            let i = rng.below(b.len());
            match rng.below(5) {
                0 => b[i] ^= 1 << rng.below(8),
                1 => {
                    b.remove(i);
                }
                2 => {
                    let alphabet = b"{}[],:\"\\ \n=+/-_aA0";
                    b.insert(i, alphabet[rng.below(alphabet.len())])
                }
                3 => {
                    let j = (i + rng.below(64)).min(b.len());
                    let piece = b[i..j].to_vec();
                    b.splice(i..i, piece);
                }
                _ => b.truncate(i),
            }
        }
        cases.push(Case {
            bytes: b,
            provenant: Want::Any,
            sslib: Want::Any,
            what: "mutation",
        });
    }
    assert!(cases.len() >= 5000);

    let dir = d.join("corpus");
    std::fs::create_dir(&dir).unwrap();
    for (i, c) in cases.iter().enumerate() {
        std::fs::write(dir.join(format!("{i:05}")), &c.bytes).unwrap();
    }
    let out = Command::new(interop_python())
        .arg(interop_script("sslib_differential.py"))
        .arg(&dir)
        .arg(d.join("k.pub"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sslib: BTreeMap<usize, Outcome> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let o = if f[1] == "OK" {
                Outcome::Accept(f[2].to_string())
            } else {
                Outcome::Reject
            };
            (f[0].parse().unwrap(), o)
        })
        .collect();
    assert_eq!(sslib.len(), cases.len());

    let keys = vec![provenant::sign::VerifyingKey::load(&d.join("k.pub")).unwrap()];
    let want = |w: Want| match w {
        Want::A => Some(Outcome::Accept(hash_a.clone())),
        Want::B => Some(Outcome::Accept(hash_b.clone())),
        Want::C => Some(Outcome::Accept(hash_c.clone())),
        Want::Reject => Some(Outcome::Reject),
        Want::Any => None,
    };
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (i, c) in cases.iter().enumerate() {
        let p = provenant_outcome(&c.bytes, &keys);
        let l = &sslib[&i];
        if let (Outcome::Accept(x), Outcome::Accept(y)) = (&p, l) {
            assert_eq!(
                x, y,
                "case {i} ({}): both verify, different payloads",
                c.what
            );
        }
        if let Some(w) = want(c.provenant) {
            assert_eq!(p, w, "case {i} ({}): provenant", c.what);
        }
        if let Some(w) = want(c.sslib) {
            assert_eq!(*l, w, "case {i} ({}): securesystemslib", c.what);
        }
        let tag = |o: &Outcome| match o {
            Outcome::Accept(_) => "accept",
            Outcome::Reject => "reject",
        };
        *counts.entry((tag(&p), tag(l))).or_default() += 1;
    }
    eprintln!(
        "{} inputs; (provenant, securesystemslib) outcomes: {counts:?}",
        cases.len()
    );
    assert!(
        counts.get(&("accept", "accept")).copied().unwrap_or(0) >= 400,
        "{counts:?}"
    );
}
