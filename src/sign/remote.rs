//! Remote signing, so the key never has to be where the build runs (SLSA
//! Build L3 with the key in another pod, node or cluster).
//!
//! Protocol (JSON over HTTPS; plain HTTP only on loopback or when asked):
//! * `GET  /v1/publickey` -> `{"keyId": HEX, "publicKey": SPKI_PEM}`
//! * `GET  /v1/identity` (credentials) -> `{"keyId": HEX, "caller": TEXT,
//!   "builderId": URI}`: who the signer takes the caller for, and the
//!   builder id its statements must carry;
//! * `POST /v1/sign` (credentials) `{"pae": BASE64}` -> `{"keyid": HEX,
//!   "sig": BASE64}`.
//!
//! Credentials: a bearer token (the pod's projected service-account token,
//! or the shared token), a client certificate (mTLS), or both. The service
//! signs only DSSE pre-authentication encodings of SLSA provenance
//! statements with the caller's builder id and, for a pod, about that pod
//! (`service/statement.rs`).
//!
//! The client never trusts the service blindly: the server certificate is
//! verified against `--signer-ca` (only) or the system roots, the key id is
//! recomputed from the public key, and every returned signature is verified
//! locally before it goes into an envelope. Everything that can be wrong
//! (address, certificate, name, credentials, builder id) shows at start,
//! before the build: `open` fetches the public key, `check` the identity.
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::providers::{RemoteConfig, SignerConfig, SignerProvider};
use super::{key_id_of_spki, KeyError, Signer, VerifyingKey};

/// `--signer URL`.
pub struct Remote;

impl SignerProvider for Remote {
    fn name(&self) -> &'static str {
        "remote signer"
    }

    fn wanted(&self, c: &SignerConfig) -> bool {
        c.remote.is_some()
    }

    /// Connects and fetches the public key now: a wrong URL or a server
    /// certificate that does not verify fails before the build.
    fn open(&self, c: &SignerConfig) -> Result<Box<dyn Signer>, KeyError> {
        let r = c.remote.as_ref().ok_or(KeyError::NoSigner)?;
        Ok(Box::new(RemoteSigner::connect(r)?))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicKeyResponse {
    pub key_id: String,
    pub public_key: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityResponse {
    pub key_id: String,
    /// Who the signer takes the caller for, in words.
    pub caller: String,
    /// The `builder.id` the caller's statements must carry.
    pub builder_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    pub pae: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SignResponse {
    pub keyid: String,
    pub sig: String,
}

/// Largest response read from a signer: a public key or a signature.
const MAX_RESPONSE: usize = 64 << 10;
/// Largest token, certificate or key file read.
const MAX_CREDENTIAL: u64 = 1 << 20;

pub struct RemoteSigner {
    url: String,
    creds: Credentials,
    key: VerifyingKey,
    key_id: String,
    public_pem: String,
    expect_builder_id: Option<String>,
}

/// What the client presents and trusts. Token, certificate and key are
/// read again for every request: kubelet rotates a projected token and
/// cert-manager a certificate while a long build runs.
#[derive(Clone)]
struct Credentials {
    token_file: Option<PathBuf>,
    /// `--signer-ca` PEM: the only roots trusted when given.
    ca: Option<Vec<u8>>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// An error and its causes on one line, each cause once: a TLS failure is
/// three errors deep in reqwest (request, connect, certificate).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        cur = err.source();
    }
    out
}

pub(super) fn reqwest_chain(e: reqwest::Error) -> String {
    let text = error_chain(&e.without_url());
    // TLS alerts name the problem in the protocol's words; say whose it is.
    let client_cert_refused = [
        "alert: CertificateRequired",
        "alert: UnknownCA",
        "alert: BadCertificate",
        "alert: CertificateUnknown",
        "alert: CertificateExpired",
        "alert: CertificateRevoked",
    ]
    .iter()
    .any(|a| text.contains(a));
    if client_cert_refused {
        format!("{text} (the signer did not accept our client certificate: check --signer-client-cert against its --client-ca)")
    } else {
        text
    }
}

fn read_credential(flag: &str, p: &Path) -> Result<Vec<u8>, KeyError> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(p)
        .and_then(|f| f.take(MAX_CREDENTIAL + 1).read_to_end(&mut buf))
        .map_err(|source| KeyError::Read {
            path: p.to_path_buf(),
            source,
        })?;
    if buf.len() as u64 > MAX_CREDENTIAL {
        return Err(KeyError::Remote(format!(
            "{flag} {}: larger than {MAX_CREDENTIAL} bytes",
            p.display()
        )));
    }
    Ok(buf)
}

impl Credentials {
    fn token(&self) -> Result<Option<zeroize::Zeroizing<String>>, KeyError> {
        let Some(p) = &self.token_file else {
            return Ok(None);
        };
        let bytes = zeroize::Zeroizing::new(read_credential("--signer-token-file", p)?);
        let t = String::from_utf8_lossy(&bytes).trim().to_string();
        if t.is_empty() {
            return Err(KeyError::Remote(format!(
                "--signer-token-file {}: empty",
                p.display()
            )));
        }
        Ok(Some(zeroize::Zeroizing::new(t)))
    }

    /// The client certificate and key as one PEM buffer, checked to belong
    /// together (rustls would say only "key mismatch" deep in a request).
    fn identity(&self) -> Result<Option<reqwest::Identity>, KeyError> {
        let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) else {
            return Ok(None);
        };
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let cert_pem = read_credential("--signer-client-cert", cert)?;
        let key_pem = zeroize::Zeroizing::new(read_credential("--signer-client-key", key)?);
        let bad = |flag: &str, p: &Path, why: String| {
            KeyError::Remote(format!("{flag} {}: {why}", p.display()))
        };
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("--signer-client-cert", cert, format!("not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(bad(
                "--signer-client-cert",
                cert,
                "holds no CERTIFICATE block".into(),
            ));
        }
        let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            bad(
                "--signer-client-key",
                key,
                format!("no PEM private key: {e}"),
            )
        })?;
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        rustls::sign::CertifiedKey::from_der(certs, der, &provider)
            .and_then(|ck| ck.keys_match())
            .map_err(|e| {
                bad(
                    "--signer-client-key",
                    key,
                    format!("does not belong to --signer-client-cert: {e}"),
                )
            })?;
        let mut pem = cert_pem;
        pem.push(b'\n');
        pem.extend_from_slice(&key_pem);
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| bad("--signer-client-cert", cert, reqwest_chain(e)));
        // The copy held the key too.
        zeroize::Zeroize::zeroize(&mut pem);
        id.map(Some)
    }

    fn client(&self) -> Result<reqwest::Client, KeyError> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .tls_version_min(reqwest::tls::Version::TLS_1_2);
        if let Some(pem) = &self.ca {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| KeyError::Remote(format!("--signer-ca: {}", reqwest_chain(e))))?;
            b = b.tls_certs_only(certs);
        }
        if let Some(id) = self.identity()? {
            b = b.identity(id);
        }
        b.build()
            .map_err(|e| KeyError::Remote(format!("TLS client: {}", reqwest_chain(e))))
    }
}

/// Runs one request on its own thread and runtime: callers may or may not
/// be inside an async runtime, and signing is rare enough not to matter.
pub(super) fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>> + Send>>
        + Send
        + 'static,
) -> Result<T, String> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(f())
    })
    .join()
    .map_err(|_| "signer client thread panicked".to_string())?
}

/// One request; the answer's JSON, or the error line (with the signer's
/// own `{"error": ...}` reason when it gave one).
fn call<T: serde::de::DeserializeOwned + Send + 'static>(
    creds: &Credentials,
    method: reqwest::Method,
    url: String,
    body: Option<Vec<u8>>,
) -> Result<T, KeyError> {
    let client = creds.client()?;
    let token = creds.token()?;
    blocking(move || {
        Box::pin(async move {
            let mut req = client.request(method, &url);
            if let Some(t) = &token {
                req = req.bearer_auth(t.as_str());
            }
            if let Some(b) = body {
                req = req.header("content-type", "application/json").body(b);
            }
            let mut r = req
                .send()
                .await
                .map_err(|e| format!("{url}: {}", reqwest_chain(e)))?;
            let status = r.status();
            let mut text = Vec::new();
            while let Some(chunk) = r
                .chunk()
                .await
                .map_err(|e| format!("{url}: {}", reqwest_chain(e)))?
            {
                if text.len() + chunk.len() > MAX_RESPONSE {
                    return Err(format!("{url}: response larger than {MAX_RESPONSE} bytes"));
                }
                text.extend_from_slice(&chunk);
            }
            if !status.is_success() {
                #[derive(Deserialize)]
                struct Refusal {
                    error: String,
                }
                let why = serde_json::from_slice::<Refusal>(&text)
                    .map(|r| format!(": {}", r.error.replace('\n', " ")))
                    .unwrap_or_default();
                return Err(format!("{url}: HTTP {}{why}", status.as_u16()));
            }
            serde_json::from_slice(&text).map_err(|e| format!("{url}: unexpected answer: {e}"))
        })
    })
    .map_err(KeyError::Remote)
}

impl RemoteSigner {
    /// Connects and fetches the public key now, so that a wrong URL or a
    /// server certificate that does not verify (unknown CA, wrong name,
    /// expired) fails before the build rather than after it.
    pub fn connect(c: &RemoteConfig) -> Result<RemoteSigner, KeyError> {
        let url = c.url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| KeyError::Remote(format!("--signer {url}: not a URL: {e}")))?;
        match parsed.scheme() {
            "https" => {}
            "http" if super::service::is_loopback_url(&parsed) || c.allow_plain_http => {
                if c.client_cert.is_some() {
                    return Err(KeyError::Remote(format!(
                        "--signer {url}: a client certificate needs https://"
                    )));
                }
            }
            "http" => {
                return Err(KeyError::Remote(format!(
                    "--signer {url}: plain HTTP would carry the token and the statements in clear text; use https:// (or --signer-insecure-plain-http where a mesh encrypts the traffic)"
                )))
            }
            other => {
                return Err(KeyError::Remote(format!(
                    "--signer {url}: unsupported scheme {other}"
                )))
            }
        }
        let ca = match &c.ca {
            Some(p) => Some(read_credential("--signer-ca", p)?),
            None => None,
        };
        let creds = Credentials {
            token_file: c.token_file.clone(),
            ca,
            client_cert: c.client_cert.clone(),
            client_key: c.client_key.clone(),
        };
        let resp: PublicKeyResponse = call(
            &creds,
            reqwest::Method::GET,
            format!("{url}/v1/publickey"),
            None,
        )?;
        let key =
            VerifyingKey::from_pem(&format!("{url}/v1/publickey"), resp.public_key.as_bytes())?;
        let der = pem::parse(resp.public_key.as_bytes())
            .map_err(|e| KeyError::Remote(format!("{url}: public key is not PEM: {e}")))?;
        let key_id = key_id_of_spki(der.contents());
        if key_id != resp.key_id {
            return Err(KeyError::Remote(format!(
                "{url}: claims key id {} but its public key has id {key_id}",
                resp.key_id
            )));
        }
        Ok(RemoteSigner {
            url,
            creds,
            key,
            key_id,
            public_pem: resp.public_key.replace("\r\n", "\n"),
            expect_builder_id: c.builder_id.clone(),
        })
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Who the signer takes this client for (credentials accepted) and the
    /// builder id it would sign.
    pub fn identity(&self) -> Result<IdentityResponse, KeyError> {
        call(
            &self.creds,
            reqwest::Method::GET,
            format!("{}/v1/identity", self.url),
            None,
        )
    }
}

impl Signer for RemoteSigner {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn verifier_pem(&self) -> Option<String> {
        Some(self.public_pem.clone())
    }

    /// Credentials accepted, the same key as `open` saw, and the builder id
    /// this command will write the one the signer signs for this caller.
    fn check(&self) -> Result<(), KeyError> {
        let id = self.identity()?;
        if id.key_id != self.key_id {
            return Err(KeyError::Remote(format!(
                "{}: identity answered with key id {} but the public key has id {}",
                self.url, id.key_id, self.key_id
            )));
        }
        if let Some(want) = &self.expect_builder_id {
            if *want != id.builder_id {
                return Err(KeyError::Remote(format!(
                    "{}: signs only builder id {:?} for {}, but this command records {want:?}: set --builder-id {}",
                    self.url, id.builder_id, id.caller, id.builder_id
                )));
            }
        }
        tracing::info!(signer = %self.url, key_id = %self.key_id, caller = %id.caller, builder_id = %id.builder_id, "remote signer accepts this caller");
        Ok(())
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let body = serde_json::to_vec(&SignRequest {
            pae: b64().encode(message),
        })
        .map_err(|e| KeyError::Sign(e.to_string()))?;
        let resp: SignResponse = call(
            &self.creds,
            reqwest::Method::POST,
            format!("{}/v1/sign", self.url),
            Some(body),
        )?;
        let sig = b64().decode(resp.sig.as_bytes()).map_err(|e| {
            KeyError::Remote(format!(
                "{}/v1/sign: signature is not base64: {e}",
                self.url
            ))
        })?;
        if !self.key.verify(message, &sig) {
            return Err(KeyError::Remote(format!(
                "{}/v1/sign: returned a signature that does not verify with its public key",
                self.url
            )));
        }
        Ok(sig)
    }
}

/// Splits a DSSE v1 PAE into (payloadType, payload); None if it is not one.
pub fn parse_pae(pae: &[u8]) -> Option<(String, Vec<u8>)> {
    let rest = pae.strip_prefix(b"DSSEv1 ")?;
    let sp = rest.iter().position(|b| *b == b' ')?;
    let tlen: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
    let rest = &rest[sp + 1..];
    let ptype = rest.get(..tlen)?;
    let rest = rest.get(tlen..)?.strip_prefix(b" ")?;
    let sp = rest.iter().position(|b| *b == b' ')?;
    let plen: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
    let payload = rest.get(sp + 1..)?;
    (payload.len() == plen).then(|| {
        (
            String::from_utf8_lossy(ptype).into_owned(),
            payload.to_vec(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_round_trip() {
        let pae = crate::sign::pae("application/vnd.in-toto+json", b"{\"a\": 1}");
        let (t, p) = parse_pae(&pae).unwrap();
        assert_eq!(t, "application/vnd.in-toto+json");
        assert_eq!(p, b"{\"a\": 1}");
        assert!(parse_pae(b"DSSEv1 3 abc 5 1234").is_none());
        assert!(parse_pae(b"garbage").is_none());
    }
}
