//! Rekor (Sigstore's transparency log), API v1: each signed envelope is
//! uploaded as an `intoto` v0.0.2 entry, the kind cosign's `attest` writes
//! and every Sigstore verifier reads (cosign, sigstore-js, sigstore-go,
//! sigstore-python). Not `dsse` v0.0.1: Rekor rewrites a proposed `dsse`
//! entry into hashes before logging it, which a log that stores what it is
//! given (the tests' `@sigstore/mock`) does not do, so only `intoto` is
//! logged the same way by the mock and by Rekor as far as verifiers look.
//! Both kinds are read back ([`check_body`]).
//!
//! The proposed entry, as sigstore-js (`@sigstore/sign` `toProposedEntry`)
//! and cosign make it: payload and signature base64-encoded twice, the
//! verifier (public key or certificate, PEM) base64-encoded, `hash` the
//! SHA-256 of the canonical JSON of the envelope with the verifier PEM in
//! its signature (keyid only when not empty), `payloadHash` the SHA-256 of
//! the payload.
//!
//! Rekor's answer (`{UUID: LogEntry}`) becomes a Sigstore bundle
//! `TransparencyLogEntry` (protobuf JSON: 64-bit integers as strings, bytes
//! as base64): log index and id, kind and version, integrated time, the
//! signed entry timestamp (SET), the inclusion proof with its checkpoint,
//! and the canonicalized body.
use std::time::Instant;

use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::sigstore_http::{request, request_with_retry, ServiceUrl};
use super::WitnessError;

const ENTRIES: &str = "api/v1/log/entries";
/// Rekor's answer for an entry: the body, proofs and checkpoint; for an
/// `intoto` entry a store that keeps the payload answers with it (twice
/// base64-encoded), hence the cap relative to the request.
const MIN_ANSWER: usize = 1 << 20;
/// Most hashes in an inclusion proof: a tree of 2^64 leaves needs 64.
pub const MAX_PROOF_HASHES: usize = 64;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

#[derive(Debug)]
pub struct Rekor {
    url: ServiceUrl,
}

/// What Rekor logs of a signed envelope: enough to rebuild the proposed
/// entry and to check a logged body against it.
#[derive(Debug, Clone)]
pub struct Logged<'a> {
    pub payload_type: &'a str,
    /// The payload, base64 (as in the envelope).
    pub payload_b64: &'a str,
    /// The signature, raw.
    pub sig: &'a [u8],
    pub keyid: &'a str,
    /// Public key (SPKI PEM) or certificate (PEM).
    pub verifier_pem: &'a str,
}

impl Rekor {
    pub fn new(url: &str) -> Result<Rekor, WitnessError> {
        Ok(Rekor {
            url: ServiceUrl::parse("--rekor-url", url).map_err(WitnessError::Url)?,
        })
    }

    pub fn url(&self) -> &ServiceUrl {
        &self.url
    }

    /// Uploads the entry; returns the bundle's `TransparencyLogEntry`.
    pub fn upload(&self, e: &Logged<'_>, deadline: Instant) -> Result<Value, WitnessError> {
        let err = |reason: String| WitnessError::Rekor {
            url: self.url.to_string(),
            reason,
        };
        let payload = b64()
            .decode(e.payload_b64)
            .map_err(|_| err("the envelope's payload is not base64".into()))?;
        let body =
            serde_json::to_vec(&proposed_entry(e, &payload)).map_err(|x| err(x.to_string()))?;
        let url = self.url.join(ENTRIES);
        let max = MIN_ANSWER.max(body.len().saturating_mul(2));
        let answer = request_with_retry(
            "Rekor",
            || {
                request(
                    reqwest::Method::POST,
                    url.clone(),
                    Some((body.clone(), "application/json")),
                    vec![("accept", "application/json".into())],
                    max,
                    deadline,
                )
            },
            deadline,
        )
        .map_err(|x| err(x.to_string()))?;
        // 409: an identical entry is already in the log; its location
        // comes back, not the entry, so it is an error like any other.
        if answer.status != 201 && answer.status != 200 {
            return Err(err(format!("HTTP {}: {}", answer.status, answer.reason())));
        }
        let entry = bundle_entry(&answer.body).map_err(err)?;
        // The entry Rekor answered with must be ours.
        let body = entry["canonicalizedBody"].as_str().unwrap_or_default();
        let body = b64()
            .decode(body)
            .map_err(|_| err("canonicalizedBody is not base64".into()))?;
        check_body(&body, e, &payload)
            .map_err(|r| err(format!("answered with an entry that is not ours: {r}")))?;
        Ok(entry)
    }
}

/// The proposed `intoto` v0.0.2 entry.
pub fn proposed_entry(e: &Logged<'_>, payload: &[u8]) -> Value {
    let sig_b64 = b64().encode(e.sig);
    let mut signature = json!({
        "sig": b64().encode(&sig_b64),
        "publicKey": b64().encode(e.verifier_pem),
    });
    if !e.keyid.is_empty() {
        signature["keyid"] = json!(e.keyid);
    }
    json!({
        "apiVersion": "0.0.2",
        "kind": "intoto",
        "spec": {
            "content": {
                "envelope": {
                    "payloadType": e.payload_type,
                    "payload": b64().encode(e.payload_b64),
                    "signatures": [signature],
                },
                "hash": { "algorithm": "sha256", "value": envelope_hash(e) },
                "payloadHash": { "algorithm": "sha256", "value": hex::encode(Sha256::digest(payload)) },
            }
        }
    })
}

/// sigstore-js's `calculateDSSEHash`: the envelope with the verifier in its
/// signature, canonical JSON, SHA-256, hex.
fn envelope_hash(e: &Logged<'_>) -> String {
    let mut signature = json!({ "sig": b64().encode(e.sig), "publicKey": e.verifier_pem });
    if !e.keyid.is_empty() {
        signature["keyid"] = json!(e.keyid);
    }
    let v = json!({
        "payloadType": e.payload_type,
        "payload": e.payload_b64,
        "signatures": [signature],
    });
    hex::encode(Sha256::digest(canonical_json(&v)))
}

/// RFC 8785 (JSON Canonicalization Scheme) for values without floats:
/// object keys sorted by their UTF-16 code units, no whitespace, strings
/// escaped as ECMAScript's `JSON.stringify` does (which serde_json matches
/// for strings: `\"`, `\\`, the short escapes, other controls as `\u00XX`).
pub fn canonical_json(v: &Value) -> Vec<u8> {
    fn write(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
                out.push(b'{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend(serde_json::to_vec(k).unwrap_or_default());
                    out.push(b':');
                    write(&m[*k], out);
                }
                out.push(b'}');
            }
            Value::Array(a) => {
                out.push(b'[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write(x, out);
                }
                out.push(b']');
            }
            other => out.extend(serde_json::to_vec(other).unwrap_or_default()),
        }
    }
    let mut out = Vec::new();
    write(v, &mut out);
    out
}

/// Rekor's `{UUID: LogEntry}` answer as a bundle `TransparencyLogEntry`.
pub fn bundle_entry(answer: &[u8]) -> Result<Value, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct LogEntry {
        body: String,
        integrated_time: i64,
        #[serde(rename = "logID")]
        log_id: String,
        log_index: i64,
        verification: Verification,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Verification {
        #[serde(default)]
        inclusion_proof: Option<Proof>,
        #[serde(default)]
        signed_entry_timestamp: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Proof {
        checkpoint: String,
        hashes: Vec<String>,
        log_index: i64,
        root_hash: String,
        tree_size: i64,
    }
    let bad = |what: String| format!("unexpected answer: {what}");
    let map: std::collections::BTreeMap<String, LogEntry> =
        serde_json::from_slice(answer).map_err(|e| bad(super::dsse::json_error(&e)))?;
    if map.len() != 1 {
        return Err(bad(format!(
            "{} entries where one was asked for",
            map.len()
        )));
    }
    let (_, e) = map
        .into_iter()
        .next()
        .ok_or_else(|| bad("no entry".into()))?;
    let body = b64()
        .decode(&e.body)
        .map_err(|_| bad("body is not base64".into()))?;
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Kind {
        kind: String,
        api_version: String,
    }
    let kind: Kind = serde_json::from_slice(&body)
        .map_err(|x| bad(format!("body: {}", super::dsse::json_error(&x))))?;
    let log_id = hex::decode(&e.log_id).map_err(|_| bad("logID is not hex".into()))?;
    let hex_b64 = |h: &str| -> Result<String, String> {
        Ok(b64().encode(hex::decode(h).map_err(|_| bad("a proof hash is not hex".into()))?))
    };
    let mut entry = json!({
        "logIndex": e.log_index.to_string(),
        "logId": { "keyId": b64().encode(log_id) },
        "kindVersion": { "kind": kind.kind, "version": kind.api_version },
        "integratedTime": e.integrated_time.to_string(),
    });
    if let Some(set) = e.verification.signed_entry_timestamp {
        b64()
            .decode(&set)
            .map_err(|_| bad("signedEntryTimestamp is not base64".into()))?;
        entry["inclusionPromise"] = json!({ "signedEntryTimestamp": set });
    }
    if let Some(p) = e.verification.inclusion_proof {
        if p.hashes.len() > MAX_PROOF_HASHES {
            return Err(bad(format!("{} inclusion proof hashes", p.hashes.len())));
        }
        entry["inclusionProof"] = json!({
            "logIndex": p.log_index.to_string(),
            "rootHash": hex_b64(&p.root_hash)?,
            "treeSize": p.tree_size.to_string(),
            "hashes": p.hashes.iter().map(|h| hex_b64(h)).collect::<Result<Vec<_>, _>>()?,
            "checkpoint": { "envelope": p.checkpoint },
        });
    }
    entry["canonicalizedBody"] = json!(e.body);
    Ok(entry)
}

/// Whether a logged body records this signature: `intoto` v0.0.2 (as
/// proposed, or as Rekor stores it, payload left out) or `dsse` v0.0.1 (as
/// Rekor stores it). The signature, the payload's hash and the verifier
/// must all be the envelope's; the kind and version are returned.
pub fn check_body(body: &[u8], e: &Logged<'_>, payload: &[u8]) -> Result<(String, String), String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|x| format!("the body is not JSON: {}", super::dsse::json_error(&x)))?;
    let kind = v["kind"].as_str().unwrap_or_default().to_string();
    let version = v["apiVersion"].as_str().unwrap_or_default().to_string();
    let payload_hash = hex::encode(Sha256::digest(payload));
    let sig_b64 = b64().encode(e.sig);
    let same_verifier = |logged_b64: &str| -> bool {
        b64()
            .decode(logged_b64)
            .ok()
            .is_some_and(|pem| same_pem(&pem, e.verifier_pem.as_bytes()))
    };
    match (kind.as_str(), version.as_str()) {
        ("intoto", "0.0.2") => {
            let c = &v["spec"]["content"];
            let sigs = c["envelope"]["signatures"]
                .as_array()
                .ok_or("no signatures")?;
            let [s] = sigs.as_slice() else {
                return Err(format!("{} signatures logged, one expected", sigs.len()));
            };
            let logged = s["sig"]
                .as_str()
                .and_then(|x| b64().decode(x).ok())
                .ok_or("the logged signature is not base64")?;
            if logged != sig_b64.as_bytes() {
                return Err("the logged signature is another one".into());
            }
            if !same_verifier(s["publicKey"].as_str().unwrap_or_default()) {
                return Err("the logged public key or certificate is another one".into());
            }
            check_hash(&c["payloadHash"], &payload_hash, "payload")?;
        }
        ("dsse", "0.0.1") => {
            let sigs = v["spec"]["signatures"].as_array().ok_or("no signatures")?;
            let [s] = sigs.as_slice() else {
                return Err(format!("{} signatures logged, one expected", sigs.len()));
            };
            if s["signature"].as_str() != Some(sig_b64.as_str()) {
                return Err("the logged signature is another one".into());
            }
            if !same_verifier(s["verifier"].as_str().unwrap_or_default()) {
                return Err("the logged public key or certificate is another one".into());
            }
            check_hash(&v["spec"]["payloadHash"], &payload_hash, "payload")?;
        }
        _ => {
            return Err(format!(
                "entry kind {}/{} is not intoto/0.0.2 or dsse/0.0.1",
                crate::escape::field(&kind),
                crate::escape::field(&version)
            ))
        }
    }
    Ok((kind, version))
}

fn check_hash(h: &Value, want: &str, what: &str) -> Result<(), String> {
    if h["algorithm"].as_str() != Some("sha256") {
        return Err(format!("the logged {what} hash is not sha256"));
    }
    if h["value"].as_str().map(str::to_ascii_lowercase).as_deref() != Some(want) {
        return Err(format!("the logged {what} hash is another one"));
    }
    Ok(())
}

/// Two PEM texts holding the same DER (line breaks and labels' case of
/// whitespace aside).
fn same_pem(a: &[u8], b: &[u8]) -> bool {
    match (pem::parse(a), pem::parse(b)) {
        (Ok(x), Ok(y)) => x.contents() == y.contents(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_and_escapes() {
        let v = json!({"b": 1, "a": [true, null, "x\n\u{1}é"], "A": {"z": -2, "y": "\""}});
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            "{\"A\":{\"y\":\"\\\"\",\"z\":-2},\"a\":[true,null,\"x\\n\\u0001é\"],\"b\":1}"
        );
        // UTF-16 order (RFC 8785), not code-point order: U+1F600 is the
        // surrogate pair D83D DE00, so it sorts before U+FF5E.
        let v = json!({"\u{FF5E}": 2, "\u{1F600}": 1});
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            "{\"\u{1F600}\":1,\"\u{FF5E}\":2}"
        );
    }

    fn logged<'a>(sig: &'a [u8], pem: &'a str) -> Logged<'a> {
        Logged {
            payload_type: "application/vnd.in-toto+json",
            payload_b64: "eyJhIjoxfQ==",
            sig,
            keyid: "",
            verifier_pem: pem,
        }
    }

    const PEM: &str = "-----BEGIN PUBLIC KEY-----\nAAEC\n-----END PUBLIC KEY-----\n";

    #[test]
    fn proposed_entry_checks_against_itself_and_not_another() {
        let e = logged(b"sig", PEM);
        let p = proposed_entry(&e, b"{\"a\":1}");
        let body = canonical_json(&p);
        assert_eq!(check_body(&body, &e, b"{\"a\":1}").unwrap().0, "intoto");
        assert!(check_body(&body, &logged(b"other", PEM), b"{\"a\":1}").is_err());
        assert!(check_body(&body, &e, b"{\"a\":2}").is_err());
        let other = "-----BEGIN PUBLIC KEY-----\nAAED\n-----END PUBLIC KEY-----\n";
        assert!(check_body(&body, &logged(b"sig", other), b"{\"a\":1}").is_err());
        assert!(p["spec"]["content"]["envelope"]["signatures"][0]
            .get("keyid")
            .is_none());
    }

    #[test]
    fn rekor_answers() {
        let body = b64().encode(br#"{"apiVersion":"0.0.2","kind":"intoto","spec":{}}"#);
        let answer = json!({"abc": {
            "body": body, "integratedTime": 1700000000, "logID": "00ff", "logIndex": 42,
            "verification": {"signedEntryTimestamp": "c2V0", "inclusionProof": {
                "checkpoint": "cp", "hashes": ["01"], "logIndex": 3, "rootHash": "02", "treeSize": 9}}}});
        let e = bundle_entry(&serde_json::to_vec(&answer).unwrap()).unwrap();
        assert_eq!(e["logIndex"], "42");
        assert_eq!(e["logId"]["keyId"], "AP8=");
        assert_eq!(e["kindVersion"]["kind"], "intoto");
        assert_eq!(e["integratedTime"], "1700000000");
        assert_eq!(e["inclusionProof"]["hashes"][0], "AQ==");
        assert_eq!(e["inclusionProof"]["treeSize"], "9");
        assert_eq!(e["canonicalizedBody"], body);
        assert!(bundle_entry(b"{}").is_err());
        assert!(bundle_entry(b"[]").is_err());
    }
}
