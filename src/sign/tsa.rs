//! RFC 3161 timestamps of a signature, from a timestamp authority speaking
//! the Sigstore timestamp-authority's JSON API (`POST /api/v1/timestamp`,
//! `{"artifactHash": BASE64, "hashAlgorithm": "sha256", "certificates":
//! true, "nonce": N}`, answered with a DER `TimeStampResp`), as sigstore-js
//! asks for them. The bundle carries the response as
//! `timestampVerificationData.rfc3161Timestamps[].signedTimestamp`.
//!
//! The answer is checked before it is kept: granted, a token whose TSTInfo
//! stamps the SHA-256 of our signature with our nonce. The signature over
//! it is the verifier's business (`verify::sigstore` checks it against the
//! trusted root's timestamp authorities).
use std::time::Instant;

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::der::{self, DerError, Tlv};
use super::sigstore_http::{request, request_with_retry, ServiceUrl};
use super::WitnessError;

const TIMESTAMP: &str = "api/v1/timestamp";
/// A timestamp response with its certificate chain.
const MAX_ANSWER: usize = 64 << 10;
pub const OID_SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
pub const OID_TST_INFO: &str = "1.2.840.113549.1.9.16.1.4";
pub const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";

#[derive(Debug)]
pub struct Tsa {
    url: ServiceUrl,
}

/// What a timestamp token says (nothing checked but its shape).
#[derive(Debug, Clone)]
pub struct TstInfo {
    pub hash_algorithm: String,
    pub hashed_message: Vec<u8>,
    pub gen_time: time::OffsetDateTime,
    /// The nonce, as its DER INTEGER content bytes.
    pub nonce: Option<Vec<u8>>,
}

/// The parts of a timestamp token a verifier needs.
#[derive(Debug, Clone)]
pub struct Token<'a> {
    pub tst_info: TstInfo,
    /// The DER of the TSTInfo (the signed content).
    pub tst_info_der: &'a [u8],
    /// Certificates in the token (DER).
    pub certificates: Vec<&'a [u8]>,
    pub signer_infos: Vec<Tlv<'a>>,
}

impl Tsa {
    pub fn new(url: &str) -> Result<Tsa, WitnessError> {
        Ok(Tsa {
            url: ServiceUrl::parse("--tsa-url", url).map_err(WitnessError::Url)?,
        })
    }

    pub fn url(&self) -> &ServiceUrl {
        &self.url
    }

    /// A timestamp of `signature`: the bundle's `{"signedTimestamp": B64}`.
    pub fn timestamp(&self, signature: &[u8], deadline: Instant) -> Result<Value, WitnessError> {
        let err = |reason: String| WitnessError::Tsa {
            url: self.url.to_string(),
            reason,
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let digest = Sha256::digest(signature);
        let mut n = [0u8; 4];
        aws_lc_rs::rand::fill(&mut n).map_err(|_| err("no random nonce".into()))?;
        // A positive 31-bit nonce: one JSON number every client parses the same.
        let nonce = (u32::from_be_bytes(n) >> 1).max(1);
        let body = serde_json::to_vec(&json!({
            "artifactHash": b64.encode(digest),
            "hashAlgorithm": "sha256",
            "certificates": true,
            "nonce": nonce,
        }))
        .map_err(|e| err(e.to_string()))?;
        let url = self.url.join(TIMESTAMP);
        let answer = request_with_retry(
            "timestamp authority",
            || {
                request(
                    reqwest::Method::POST,
                    url.clone(),
                    Some((body.clone(), "application/json")),
                    vec![("accept", "application/timestamp-reply".into())],
                    MAX_ANSWER,
                    deadline,
                )
            },
            deadline,
        )
        .map_err(|e| err(e.to_string()))?;
        if !(200..300).contains(&answer.status) {
            return Err(err(format!("HTTP {}: {}", answer.status, answer.reason())));
        }
        let token = parse_response(&answer.body).map_err(|e| err(e.to_string()))?;
        let info = &token.tst_info;
        if info.hash_algorithm != OID_SHA256 || info.hashed_message != digest.as_slice() {
            return Err(err(
                "the timestamp is of something else than our signature".into()
            ));
        }
        if info.nonce.as_deref().map(strip_sign) != Some(&nonce_bytes(nonce)[..]) {
            return Err(err("the timestamp does not carry our nonce".into()));
        }
        Ok(json!({ "signedTimestamp": b64.encode(&answer.body) }))
    }
}

fn nonce_bytes(n: u32) -> Vec<u8> {
    let b = n.to_be_bytes();
    let skip = b.iter().take_while(|x| **x == 0).count().min(3);
    b[skip..].to_vec()
}

/// An INTEGER's content without the leading zero that keeps it positive.
fn strip_sign(b: &[u8]) -> &[u8] {
    match b {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => b,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Der(#[from] DerError),
    #[error("timestamp not granted (PKI status {0})")]
    NotGranted(u8),
    #[error("timestamp response without a token")]
    NoToken,
    #[error("timestamp token is not {0}")]
    Shape(&'static str),
    #[error("timestamp time {0:?} is not a GeneralizedTime")]
    Time(String),
}

/// A `TimeStampResp` (RFC 3161 section 2.4.2): status granted (0) or
/// granted with modifications (1), and its token.
pub fn parse_response(der_bytes: &[u8]) -> Result<Token<'_>, TokenError> {
    let resp = der::one(der_bytes)?.expect(der::SEQUENCE, "TimeStampResp")?;
    let parts = resp.children()?;
    let status = parts
        .first()
        .ok_or(TokenError::Shape("a TimeStampResp"))?
        .expect(der::SEQUENCE, "PKIStatusInfo")?;
    let code = status
        .children()?
        .first()
        .copied()
        .ok_or(TokenError::Shape("a PKIStatusInfo"))?
        .expect(der::INTEGER, "PKIStatus")?;
    let code = match code.content {
        [c] => *c,
        _ => return Err(TokenError::Shape("a PKIStatus")),
    };
    if code > 1 {
        return Err(TokenError::NotGranted(code));
    }
    let token = parts.get(1).ok_or(TokenError::NoToken)?;
    parse_token(*token)
}

/// A timestamp token: ContentInfo with SignedData (RFC 5652) whose
/// encapsulated content is a TSTInfo.
fn parse_token(token: Tlv<'_>) -> Result<Token<'_>, TokenError> {
    let ci = token.expect(der::SEQUENCE, "ContentInfo")?.children()?;
    let [ct, content] = ci.as_slice() else {
        return Err(TokenError::Shape("a ContentInfo"));
    };
    if der::oid_string(ct.expect(der::OID, "contentType")?.content) != OID_SIGNED_DATA {
        return Err(TokenError::Shape("SignedData"));
    }
    let sd = der::one(content.expect(der::ctx(0), "[0] content")?.content)?
        .expect(der::SEQUENCE, "SignedData")?
        .children()?;
    // version, digestAlgorithms, encapContentInfo, [0] certificates?,
    // [1] crls?, signerInfos
    let encap = sd
        .get(2)
        .ok_or(TokenError::Shape("a SignedData"))?
        .expect(der::SEQUENCE, "EncapsulatedContentInfo")?
        .children()?;
    let [ect, econtent] = encap.as_slice() else {
        return Err(TokenError::Shape("an EncapsulatedContentInfo with content"));
    };
    if der::oid_string(ect.expect(der::OID, "eContentType")?.content) != OID_TST_INFO {
        return Err(TokenError::Shape("a TSTInfo token"));
    }
    let tst_der = der::one(econtent.expect(der::ctx(0), "[0] eContent")?.content)?
        .expect(der::OCTET_STRING, "eContent")?
        .content;
    let mut certificates = Vec::new();
    let mut signer_infos = Vec::new();
    for t in &sd[3..] {
        match t.tag {
            0xa0 => {
                certificates = der::children(t.content, 16)?
                    .iter()
                    .map(|c| c.raw)
                    .collect()
            }
            0xa1 => {}
            der::SET => signer_infos = der::children(t.content, 16)?,
            _ => return Err(TokenError::Shape("a SignedData")),
        }
    }
    Ok(Token {
        tst_info: parse_tst_info(tst_der)?,
        tst_info_der: tst_der,
        certificates,
        signer_infos,
    })
}

fn parse_tst_info(der_bytes: &[u8]) -> Result<TstInfo, TokenError> {
    let f = der::one(der_bytes)?
        .expect(der::SEQUENCE, "TSTInfo")?
        .children()?;
    // version, policy, messageImprint, serialNumber, genTime, accuracy?,
    // ordering?, nonce?, [0] tsa?, [1] extensions?
    let imprint = f
        .get(2)
        .ok_or(TokenError::Shape("a TSTInfo"))?
        .expect(der::SEQUENCE, "MessageImprint")?
        .children()?;
    let [alg, hashed] = imprint.as_slice() else {
        return Err(TokenError::Shape("a MessageImprint"));
    };
    let alg_oid = alg
        .expect(der::SEQUENCE, "AlgorithmIdentifier")?
        .children()?
        .first()
        .copied()
        .ok_or(TokenError::Shape("an AlgorithmIdentifier"))?
        .expect(der::OID, "algorithm")?;
    let gen = f
        .get(4)
        .ok_or(TokenError::Shape("a TSTInfo"))?
        .expect(der::GENERALIZED_TIME, "genTime")?;
    let nonce = f[5..]
        .iter()
        .find(|t| t.tag == der::INTEGER)
        .map(|t| t.content.to_vec());
    Ok(TstInfo {
        hash_algorithm: der::oid_string(alg_oid.content),
        hashed_message: hashed
            .expect(der::OCTET_STRING, "hashedMessage")?
            .content
            .to_vec(),
        gen_time: generalized_time(gen.content)?,
        nonce,
    })
}

/// `YYYYMMDDHHMMSS[.fff]Z`.
pub fn generalized_time(b: &[u8]) -> Result<time::OffsetDateTime, TokenError> {
    let s = std::str::from_utf8(b).map_err(|_| TokenError::Time(String::new()))?;
    let bad = || TokenError::Time(s.chars().take(32).collect());
    let main = s.strip_suffix('Z').ok_or_else(bad)?;
    let (whole, frac) = main.split_once('.').unwrap_or((main, ""));
    if whole.len() != 14 || !whole.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    if !frac.bytes().all(|c| c.is_ascii_digit()) || frac.len() > 9 {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| whole[r].parse::<u32>().map_err(|_| bad());
    let date = time::Date::from_calendar_date(
        n(0..4)? as i32,
        time::Month::try_from(n(4..6)? as u8).map_err(|_| bad())?,
        n(6..8)? as u8,
    )
    .map_err(|_| bad())?;
    let nanos = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse::<u32>().map_err(|_| bad())?
    };
    let t = time::Time::from_hms_nano(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8, nanos)
        .map_err(|_| bad())?;
    Ok(time::PrimitiveDateTime::new(date, t).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let t = generalized_time(b"20240102030405Z").unwrap();
        assert_eq!(t.unix_timestamp(), 1704164645);
        let t = generalized_time(b"20240102030405.5Z").unwrap();
        assert_eq!(t.nanosecond(), 500_000_000);
        // Nanoseconds are the finest it keeps: nine digits, not ten.
        let t = generalized_time(b"20240102030405.123456789Z").unwrap();
        assert_eq!(t.nanosecond(), 123_456_789);
        for bad in [
            &b"20240102030405.1234567891Z"[..],
            b"2024010203040Z",
            b"20240102030405",
            b"20241302030405Z",
            b"2024010203040aZ",
        ] {
            assert!(generalized_time(bad).is_err());
        }
    }

    #[test]
    fn nonces() {
        assert_eq!(nonce_bytes(0x7fff_ffff), vec![0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(nonce_bytes(0x80), vec![0x80]);
        assert_eq!(strip_sign(&[0, 0x80]), &[0x80]);
        assert_eq!(strip_sign(&[0]), &[0]);
    }

    #[test]
    fn refused_responses() {
        let not_granted = der::encode(
            der::SEQUENCE,
            &der::encode(der::SEQUENCE, &der::encode(der::INTEGER, &[2])),
        );
        assert!(matches!(
            parse_response(&not_granted),
            Err(TokenError::NotGranted(2))
        ));
        let no_token = der::encode(
            der::SEQUENCE,
            &der::encode(der::SEQUENCE, &der::encode(der::INTEGER, &[0])),
        );
        assert!(matches!(
            parse_response(&no_token),
            Err(TokenError::NoToken)
        ));
        assert!(parse_response(b"\x30\x00").is_err());
        assert!(parse_response(b"garbage").is_err());
    }
}
