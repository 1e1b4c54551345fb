//! Keyless signing (Sigstore Fulcio): for every attestation a fresh ECDSA
//! P-256 key pair, held only in memory, and a short-lived certificate from
//! Fulcio binding its public key to the identity in an OIDC token (in a
//! pod: a projected service-account token with audience `sigstore`). The
//! key signs once and is dropped; what a verifier needs is the certificate
//! chain ([`VerificationMaterial`]), checked against Fulcio's root and the
//! expected identity, and a transparency-log entry proving the signature
//! was made while the certificate was valid (`--rekor-url`, `witness.rs`).
//!
//! Fulcio API v2, `POST /api/v2/signingCert`, JSON form
//! (<https://github.com/sigstore/fulcio/blob/main/fulcio.proto>):
//! `{"credentials": {"oidcIdentityToken": JWT}, "publicKeyRequest":
//! {"publicKey": {"algorithm": "ECDSA", "content": PEM},
//! "proofOfPossession": BASE64}}`, the proof being a signature over the
//! token's subject (its `email` for the e-mail issuers, else `sub`), as
//! sigstore-js and cosign make it. The answer's chain is PEM, leaf first.
//!
//! The token file is read again for every certificate: kubelet rotates a
//! projected token while a long build runs.
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;

use super::providers::{SignerConfig, SignerProvider};
use super::sigstore_http::{request, request_with_retry, ServiceUrl};
use super::{Algorithm, KeyError, KeyMaterial, LocalSigner, Signer, VerificationMaterial};

/// `--fulcio-url URL --identity-token FILE`.
#[derive(Debug, Clone, Default)]
pub struct KeylessConfig {
    pub fulcio_url: String,
    pub identity_token: PathBuf,
}

/// Largest identity token read (service-account tokens are ~1 KiB).
const MAX_TOKEN: u64 = 64 << 10;
/// Largest Fulcio answer read: a chain of a few certificates.
const MAX_ANSWER: usize = 256 << 10;
/// Most certificates in a chain.
const MAX_CHAIN: usize = 10;
/// One certificate, request and retries included.
const FULCIO_BUDGET: Duration = Duration::from_secs(15);
const SIGNING_CERT: &str = "api/v2/signingCert";
/// Issuers whose tokens are proven by their `email` claim, as sigstore-js
/// (`extractJWTSubject`) and Fulcio treat them.
const EMAIL_ISSUERS: [&str; 2] = [
    "https://accounts.google.com",
    "https://oauth2.sigstore.dev/auth",
];

pub struct Keyless;

impl SignerProvider for Keyless {
    fn name(&self) -> &'static str {
        "keyless (Fulcio)"
    }

    fn wanted(&self, c: &SignerConfig) -> bool {
        c.keyless.is_some()
    }

    fn open(&self, c: &SignerConfig) -> Result<Box<dyn Signer>, KeyError> {
        let k = c.keyless.as_ref().ok_or(KeyError::NoSigner)?;
        Ok(Box::new(KeylessSigner::new(k)?))
    }
}

pub struct KeylessSigner {
    url: ServiceUrl,
    token_file: PathBuf,
    /// The certificate chain (DER, leaf first) of the last signature.
    last: Mutex<Option<Vec<Vec<u8>>>>,
}

/// The claims of an identity token that matter here. The token is not
/// verified: Fulcio does that; these name the identity in messages and
/// give the subject the proof of possession signs.
#[derive(Debug, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub aud: Option<Audience>,
    #[serde(default)]
    pub exp: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, a: &str) -> bool {
        match self {
            Audience::One(x) => x == a,
            Audience::Many(v) => v.iter().any(|x| x == a),
        }
    }
}

impl Claims {
    /// What the proof of possession signs.
    pub fn challenge(&self) -> Option<&str> {
        let email_issuer = self
            .iss
            .as_deref()
            .is_some_and(|i| EMAIL_ISSUERS.contains(&i));
        if email_issuer {
            self.email.as_deref()
        } else {
            self.sub.as_deref()
        }
    }
}

/// The claims of a JWT (`HEADER.PAYLOAD.SIGNATURE`), unverified.
pub fn jwt_claims(token: &str) -> Result<Claims, String> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT (three dot-separated parts)".into());
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "JWT payload is not base64url".to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "JWT payload is not a claims object: {}",
            super::dsse::json_error(&e)
        )
    })
}

impl KeylessSigner {
    pub fn new(c: &KeylessConfig) -> Result<KeylessSigner, KeyError> {
        let url = ServiceUrl::parse("--fulcio-url", &c.fulcio_url).map_err(KeyError::BadUrl)?;
        // The key pair is made after the build; its random generator is
        // seeded now, beside the hashing (see `warm_up_rng`).
        super::warm_up_rng();
        Ok(KeylessSigner {
            url,
            token_file: c.identity_token.clone(),
            last: Mutex::new(None),
        })
    }

    fn token_error(&self, reason: impl Into<String>) -> KeyError {
        KeyError::IdentityToken {
            path: self.token_file.clone(),
            reason: reason.into(),
        }
    }

    /// The token as it is now (kubelet may have rotated it), and its claims.
    fn token(&self) -> Result<(zeroize::Zeroizing<String>, Claims), KeyError> {
        let bytes = read_token(&self.token_file)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| self.token_error("not UTF-8 text"))?
            .trim();
        if text.is_empty() {
            return Err(self.token_error("empty"));
        }
        let claims = jwt_claims(text).map_err(|r| self.token_error(r))?;
        if let Some(exp) = claims.exp {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            if exp <= now {
                return Err(self.token_error(format!(
                    "expired {} s ago (a projected service-account token is renewed by kubelet in its volume: mount the volume, not a copy)",
                    now - exp
                )));
            }
        }
        if claims.challenge().is_none() {
            return Err(self.token_error("has no subject (`sub` claim) to prove"));
        }
        Ok((zeroize::Zeroizing::new(text.to_string()), claims))
    }

    fn fulcio_error(&self, reason: impl Into<String>) -> KeyError {
        KeyError::Fulcio {
            url: self.url.to_string(),
            reason: reason.into(),
        }
    }

    /// A certificate for `key`, leaf first (DER).
    fn certificate(&self, key: &LocalSigner) -> Result<Vec<Vec<u8>>, KeyError> {
        let (token, claims) = self.token()?;
        let challenge = claims.challenge().unwrap_or_default();
        let pop = key.sign(challenge.as_bytes())?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = serde_json::json!({
            "credentials": { "oidcIdentityToken": token.as_str() },
            "publicKeyRequest": {
                "publicKey": { "algorithm": "ECDSA", "content": key.public_key_pem() },
                "proofOfPossession": b64.encode(pop),
            }
        });
        let body = zeroize::Zeroizing::new(
            serde_json::to_vec(&body).map_err(|e| KeyError::Sign(e.to_string()))?,
        );
        let url = self.url.join(SIGNING_CERT);
        let deadline = Instant::now() + FULCIO_BUDGET;
        let answer = request_with_retry(
            "Fulcio",
            || {
                request(
                    reqwest::Method::POST,
                    url.clone(),
                    Some((body.to_vec(), "application/json")),
                    vec![
                        ("authorization", format!("Bearer {}", token.as_str())),
                        ("accept", "application/json".into()),
                    ],
                    MAX_ANSWER,
                    deadline,
                )
            },
            deadline,
        )
        .map_err(|e| self.fulcio_error(e.to_string()))?;
        if !(200..300).contains(&answer.status) {
            return Err(self.fulcio_error(format!(
                "HTTP {} for the identity {} from {}: {}",
                answer.status,
                crate::escape::field(challenge),
                crate::escape::field(claims.iss.as_deref().unwrap_or("(no issuer)")),
                answer.reason()
            )));
        }
        let chain = parse_chain(&answer.body).map_err(|r| self.fulcio_error(r))?;
        // Fulcio must have certified our key, not some other one.
        let leaf_spki = spki_of(&chain[0]).map_err(|r| self.fulcio_error(r))?;
        let ours = pem::parse(key.public_key_pem().as_bytes())
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        if leaf_spki != ours.contents() {
            return Err(
                self.fulcio_error("the certificate it issued is for another public key than ours")
            );
        }
        Ok(chain)
    }
}

fn read_token(p: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
    use std::io::Read;
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    std::fs::File::open(p)
        .and_then(|f| f.take(MAX_TOKEN + 1).read_to_end(&mut buf))
        .map_err(|e| KeyError::IdentityToken {
            path: p.to_path_buf(),
            reason: format!("cannot be read: {e}"),
        })?;
    if buf.len() as u64 > MAX_TOKEN {
        return Err(KeyError::IdentityToken {
            path: p.to_path_buf(),
            reason: format!("larger than {MAX_TOKEN} bytes"),
        });
    }
    Ok(buf)
}

/// Fulcio's `SigningCertificate` answer: the chain, leaf first, as DER.
fn parse_chain(body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        signed_certificate_embedded_sct: Option<WithChain>,
        signed_certificate_detached_sct: Option<WithChain>,
    }
    #[derive(Deserialize)]
    struct WithChain {
        chain: Chain,
    }
    #[derive(Deserialize)]
    struct Chain {
        certificates: Vec<String>,
    }
    let a: Answer = serde_json::from_slice(body)
        .map_err(|e| format!("unexpected answer: {}", super::dsse::json_error(&e)))?;
    let chain = a
        .signed_certificate_embedded_sct
        .or(a.signed_certificate_detached_sct)
        .ok_or("answer holds no certificate chain")?
        .chain
        .certificates;
    if chain.is_empty() || chain.len() > MAX_CHAIN {
        return Err(format!(
            "answer holds {} certificates (1 to {MAX_CHAIN} expected)",
            chain.len()
        ));
    }
    let mut out = Vec::new();
    for (i, c) in chain.iter().enumerate() {
        let block =
            pem::parse(c.as_bytes()).map_err(|e| format!("certificate {i} is not PEM: {e}"))?;
        if block.tag() != "CERTIFICATE" {
            return Err(format!("certificate {i} is a {} PEM block", block.tag()));
        }
        out.push(block.into_contents());
    }
    Ok(out)
}

/// The SubjectPublicKeyInfo DER of a certificate.
pub fn spki_of(der: &[u8]) -> Result<Vec<u8>, String> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(cert.tbs_certificate.subject_pki.raw.to_vec())
}

/// A certificate as PEM (LF line ends), as cosign writes them.
pub fn cert_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

impl Signer for KeylessSigner {
    /// Keyless signatures carry no key id (as cosign and sigstore-js
    /// write them): the certificate identifies the key.
    fn key_id(&self) -> &str {
        ""
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let key = LocalSigner::generate(Algorithm::EcdsaP256)?;
        let chain = self.certificate(&key)?;
        let sig = key.sign(message)?;
        drop(key);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(chain);
        }
        Ok(sig)
    }

    fn verification_material(&self) -> VerificationMaterial {
        let chain = self
            .last
            .lock()
            .ok()
            .and_then(|l| l.clone())
            .unwrap_or_default();
        VerificationMaterial {
            key: KeyMaterial::Certificate { chain },
            tlog_entries: Vec::new(),
            rfc3161_timestamps: Vec::new(),
        }
    }

    fn verifier_pem(&self) -> Option<String> {
        let last = self.last.lock().ok()?;
        last.as_ref()?.first().map(|leaf| cert_pem(leaf))
    }

    /// The token is there, unexpired and has a subject; Fulcio answers
    /// (any HTTP status: address, TLS and name are right). No certificate
    /// is asked for: that would put one more entry in the CT log.
    fn check(&self) -> Result<(), KeyError> {
        let (_, claims) = self.token()?;
        if let Some(aud) = &claims.aud {
            if !aud.contains("sigstore") {
                tracing::warn!(token = %self.token_file.display(), "the identity token's audience is not `sigstore`: Fulcio usually refuses it (project the token with `audience: sigstore`)");
            }
        }
        let url = self.url.join("api/v2/configuration");
        let deadline = Instant::now() + Duration::from_secs(10);
        let a = request(
            reqwest::Method::GET,
            url,
            None,
            Vec::new(),
            MAX_ANSWER,
            deadline,
        )
        .map_err(|e| self.fulcio_error(format!("not reachable: {e}")))?;
        tracing::info!(
            fulcio = %self.url,
            status = a.status,
            identity = %crate::escape::field(claims.challenge().unwrap_or_default()),
            issuer = %crate::escape::field(claims.iss.as_deref().unwrap_or("")),
            "keyless signing: Fulcio reachable, identity token readable"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.", e.encode(r#"{"alg":"none"}"#), e.encode(claims))
    }

    #[test]
    fn claims_and_challenge() {
        let c = jwt_claims(&jwt(r#"{"iss":"https://kubernetes.default.svc","sub":"system:serviceaccount:ci:builder","aud":["sigstore"],"exp":1}"#)).unwrap();
        assert_eq!(c.challenge(), Some("system:serviceaccount:ci:builder"));
        assert!(c.aud.unwrap().contains("sigstore"));
        let c = jwt_claims(&jwt(
            r#"{"iss":"https://accounts.google.com","sub":"123","email":"a@b.c"}"#,
        ))
        .unwrap();
        assert_eq!(c.challenge(), Some("a@b.c"));
        assert!(jwt_claims("a.b").is_err());
        assert!(jwt_claims("a.!!.c").is_err());
        assert!(jwt_claims(&jwt("[1]")).is_err());
    }

    #[test]
    fn chains() {
        assert!(parse_chain(b"{}").is_err());
        assert!(
            parse_chain(br#"{"signedCertificateEmbeddedSct":{"chain":{"certificates":[]}}}"#)
                .is_err()
        );
        let e = parse_chain(br#"{"signedCertificateEmbeddedSct":{"chain":{"certificates":["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]}}}"#).unwrap_err();
        assert!(e.contains("PUBLIC KEY"), "{e}");
    }
}
