//! Remote signing, so the key never has to be where the build runs (SLSA
//! Build L3 with the key in another pod, node or cluster).
//!
//! Protocol (JSON over HTTP(S), bearer token):
//! * `GET  /v1/publickey` -> `{"keyId": HEX, "publicKey": SPKI_PEM}`
//! * `POST /v1/sign` `{"pae": BASE64}` -> `{"keyid": HEX, "sig": BASE64}`
//!
//! The service signs only DSSE pre-authentication encodings of in-toto
//! statements (`DSSEv1 … application/vnd.in-toto+json … {"_type":
//! "https://in-toto.io/Statement/v1", …}`), so a stolen token is not a
//! general-purpose signing oracle, and it logs what it signed (subjects).
//! The client never trusts the service blindly: the key id is recomputed
//! from the public key, and every returned signature is verified locally
//! before it goes into an envelope.
use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::providers::{SignerConfig, SignerProvider};
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

    /// Connects and fetches the public key now: a wrong URL or token fails
    /// before the build, not after it.
    fn open(&self, c: &SignerConfig) -> Result<Box<dyn Signer>, KeyError> {
        let r = c.remote.as_ref().ok_or(KeyError::NoSigner)?;
        Ok(Box::new(RemoteSigner::connect(
            &r.url,
            r.token_file.as_deref(),
            r.ca.as_deref(),
        )?))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicKeyResponse {
    pub key_id: String,
    pub public_key: String,
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

pub struct RemoteSigner {
    url: String,
    token: Option<String>,
    key: VerifyingKey,
    key_id: String,
    ca: Option<Vec<u8>>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Runs one request on its own thread and runtime: callers may or may not
/// be inside an async runtime, and signing is rare enough not to matter.
fn blocking<T: Send + 'static>(
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

fn client(ca: Option<&[u8]>) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30));
    if let Some(pem) = ca {
        let certs =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("--signer-ca: {e}"))?;
        b = b.tls_certs_merge(certs);
    }
    b.build().map_err(|e| e.to_string())
}

impl RemoteSigner {
    /// Connects and fetches the public key now, so a wrong URL or token
    /// fails before the build rather than after it.
    pub fn connect(
        url: &str,
        token_file: Option<&Path>,
        ca_file: Option<&Path>,
    ) -> Result<RemoteSigner, KeyError> {
        let url = url.trim_end_matches('/').to_string();
        let token = match token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|source| KeyError::Read {
                        path: p.to_path_buf(),
                        source,
                    })?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let ca = match ca_file {
            Some(p) => Some(std::fs::read(p).map_err(|source| KeyError::Read {
                path: p.to_path_buf(),
                source,
            })?),
            None => None,
        };
        let (u, t, c) = (url.clone(), token.clone(), ca.clone());
        let resp: PublicKeyResponse = blocking(move || {
            Box::pin(async move {
                let mut req = client(c.as_deref())?.get(format!("{u}/v1/publickey"));
                if let Some(t) = &t {
                    req = req.bearer_auth(t);
                }
                let r = req.send().await.map_err(|e| format!("{u}: {e}"))?;
                let status = r.status();
                if !status.is_success() {
                    return Err(format!("{u}/v1/publickey: HTTP {}", status.as_u16()));
                }
                r.json()
                    .await
                    .map_err(|e| format!("{u}/v1/publickey: not a public key response: {e}"))
            })
        })
        .map_err(KeyError::Remote)?;
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
            token,
            key,
            key_id,
            ca,
        })
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl Signer for RemoteSigner {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let (u, t, c) = (self.url.clone(), self.token.clone(), self.ca.clone());
        let body = SignRequest {
            pae: b64().encode(message),
        };
        let resp: SignResponse = blocking(move || {
            Box::pin(async move {
                let mut req = client(c.as_deref())?
                    .post(format!("{u}/v1/sign"))
                    .json(&body);
                if let Some(t) = &t {
                    req = req.bearer_auth(t);
                }
                let r = req.send().await.map_err(|e| format!("{u}: {e}"))?;
                let status = r.status();
                if !status.is_success() {
                    let text = r.text().await.unwrap_or_default();
                    return Err(format!(
                        "{u}/v1/sign: HTTP {}: {}",
                        status.as_u16(),
                        text.trim()
                    ));
                }
                r.json()
                    .await
                    .map_err(|e| format!("{u}/v1/sign: not a signature response: {e}"))
            })
        })
        .map_err(KeyError::Remote)?;
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
