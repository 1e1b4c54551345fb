//! Projected service-account tokens: JWTs (JWS compact form) that the
//! cluster's service-account issuer signs, checked against the issuer's
//! public keys (a JWKS file, or OIDC discovery from the issuer URL).
//!
//! The signature is checked with `jsonwebtoken`; what comes before it is
//! ours, so that every refusal has a reason a person can act on: the
//! header's `alg` must be an asymmetric signature algorithm (`none` and
//! HMAC, whose "secret" an attacker would choose as the public key, are
//! refused before any key is looked at), the key is chosen by `kid` among
//! the issuer's signature keys of that algorithm, and then issuer,
//! audience, expiry and not-before are checked, and the token must be
//! bound to a pod (`kubernetes.io.pod`).
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::auth::KubeIdentity;
use super::files::{read_small, Stamp};
use super::ServiceError;

/// `--oidc-issuer`, `--oidc-audience`, `--oidc-jwks`, `--oidc-ca`,
/// `--oidc-token-file`.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The `iss` every token must carry (the cluster's
    /// `--service-account-issuer`); also where discovery starts.
    pub issuer: String,
    /// The audience every token must be for (the projected volume's
    /// `audience`).
    pub audience: String,
    /// The issuer's public keys as a JWKS file (re-read when it changes);
    /// without it they come from OIDC discovery at the issuer URL.
    pub jwks_file: Option<PathBuf>,
    /// CA certificates (PEM) for discovery, instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// A bearer token for discovery: API servers serve their discovery
    /// document only to authenticated callers (any service account).
    pub token_file: Option<PathBuf>,
}

/// Algorithms service-account issuers sign with (Kubernetes: RS256 for RSA
/// keys, ES256/ES384 for ECDSA keys); anything else is refused.
const ACCEPTED: &[(&str, Algorithm)] = &[
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
];

/// A service-account token is about 1 KiB; a 16 KiB one is not one.
const MAX_TOKEN: usize = 16 << 10;
const MAX_DISCOVERY: usize = 64 << 10;
const MAX_JWKS: usize = 256 << 10;
const MAX_KEYS: usize = 64;
/// Tolerated clock difference for `exp` and `nbf`.
const LEEWAY: u64 = 30;
/// An unknown `kid` makes the signer look for new keys, at most this
/// often: a stream of made-up key ids must not become a stream of fetches
/// (one every 5 s is nothing to an API server), and a key the issuer
/// started using is known within 5 s of its first token.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(5);
/// Discovered keys are fetched again this often anyway.
pub(super) const REFRESH_EVERY: Duration = Duration::from_secs(300);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

struct Key {
    kid: Option<String>,
    /// The algorithms the key may be used with (its family, narrowed by
    /// its own `alg` and curve).
    algs: Vec<Algorithm>,
    key: DecodingKey,
}

pub(super) struct Oidc {
    cfg: OidcConfig,
    keys: RwLock<Arc<Vec<Key>>>,
    file_stamp: Mutex<Option<Stamp>>,
    last_fetch: Mutex<Option<Instant>>,
    ca: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    #[serde(rename = "kubernetes.io")]
    kube: Option<KubeClaims>,
}

#[derive(Deserialize)]
struct KubeClaims {
    namespace: String,
    serviceaccount: NameUid,
    #[serde(default)]
    pod: Option<NameUid>,
    #[serde(default)]
    node: Option<NameUid>,
}

#[derive(Deserialize)]
struct NameUid {
    name: String,
    uid: String,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// At most `n` characters of caller-supplied text in a reason.
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}

/// The algorithms a JWK may verify, or None if it is not a signature key
/// we accept (symmetric keys are never used, whatever they say).
fn key_algs(jwk: &Jwk) -> Option<Vec<Algorithm>> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        _ => return None,
    };
    let own = match &jwk.common.key_algorithm {
        None => return Some(family),
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::RS384) => Algorithm::RS384,
        Some(KeyAlgorithm::RS512) => Algorithm::RS512,
        Some(KeyAlgorithm::PS256) => Algorithm::PS256,
        Some(KeyAlgorithm::PS384) => Algorithm::PS384,
        Some(KeyAlgorithm::PS512) => Algorithm::PS512,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(KeyAlgorithm::ES384) => Algorithm::ES384,
        Some(_) => return None,
    };
    family.contains(&own).then(|| vec![own])
}

/// The usable keys of a JWKS document; keys of other kinds are skipped.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<Key>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    if set.keys.len() > MAX_KEYS {
        return Err(format!("more than {MAX_KEYS} keys"));
    }
    let mut keys = Vec::new();
    for (i, v) in set.keys.into_iter().enumerate() {
        let Ok(jwk) = serde_json::from_value::<Jwk>(v) else {
            tracing::debug!(
                index = i,
                "JWKS: skipping a key of a kind not used for tokens"
            );
            continue;
        };
        let Some(algs) = key_algs(&jwk) else {
            tracing::debug!(
                index = i,
                "JWKS: skipping a key that is not a signature key"
            );
            continue;
        };
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => keys.push(Key {
                kid: jwk.common.key_id.clone(),
                algs,
                key,
            }),
            Err(e) => tracing::debug!(index = i, error = %e, "JWKS: skipping a malformed key"),
        }
    }
    if keys.is_empty() {
        return Err("no RSA or ECDSA signature key".into());
    }
    Ok(keys)
}

/// Whether `url` may be fetched: HTTPS, or plain HTTP to a loopback
/// address (tests, a local proxy).
pub(super) fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    match u.scheme() {
        "https" => Ok(u),
        "http" if is_loopback(&u) => Ok(u),
        _ => Err("must be an https:// URL (http:// only to a loopback address)".into()),
    }
}

/// Whether a URL's host is this machine: `localhost` or a loopback address.
pub(crate) fn is_loopback(u: &reqwest::Url) -> bool {
    let Some(host) = u.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Why jsonwebtoken refused an authentic-looking token, for the audit log
/// and the caller.
fn reason(e: &jsonwebtoken::errors::Error, cfg: &OidcConfig) -> String {
    match e.kind() {
        ErrorKind::InvalidSignature => {
            "token signature does not verify with the issuer's keys".into()
        }
        ErrorKind::ExpiredSignature => "token expired".into(),
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => format!("token issuer is not {}", cfg.issuer),
        ErrorKind::InvalidAudience => format!("token audience does not include {}", cfg.audience),
        ErrorKind::MissingRequiredClaim(c) => format!("token has no {c} claim"),
        ErrorKind::InvalidClaimFormat(c) => format!("token claim {c} is malformed"),
        ErrorKind::InvalidAlgorithm => "token algorithm does not fit the issuer's key".into(),
        ErrorKind::Json(_) => "token claims are not a service-account token's".into(),
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
            "token is not a well-formed JWT".into()
        }
        _ => format!("token refused: {e}"),
    }
}

impl Oidc {
    /// Loads the issuer's keys now: a missing JWKS file or an unreachable
    /// issuer fails the start rather than every request.
    pub(super) async fn load(cfg: OidcConfig) -> Result<Arc<Oidc>, ServiceError> {
        let issuer = cfg.issuer.clone();
        let issuer_error = |reason: String| ServiceError::Issuer {
            issuer: issuer.clone(),
            reason,
        };
        if cfg.audience.is_empty() {
            return Err(ServiceError::Config("--oidc-audience is empty".into()));
        }
        if cfg.jwks_file.is_none() {
            check_url(&cfg.issuer).map_err(issuer_error)?;
        }
        let ca = match &cfg.ca_file {
            Some(p) => {
                let pem = read_small(p).map_err(|reason| ServiceError::File {
                    flag: "--oidc-ca",
                    path: p.clone(),
                    reason,
                })?;
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ServiceError::File {
                    flag: "--oidc-ca",
                    path: p.clone(),
                    reason: e.to_string(),
                })?;
                Some(pem)
            }
            None => None,
        };
        let oidc = Oidc {
            cfg,
            keys: RwLock::new(Arc::new(Vec::new())),
            file_stamp: Mutex::new(None),
            last_fetch: Mutex::new(None),
            ca,
        };
        let keys = match &oidc.cfg.jwks_file {
            Some(p) => {
                *oidc.file_stamp.lock().unwrap_or_else(|e| e.into_inner()) = Stamp::of(p);
                read_small(p)
                    .and_then(|b| parse_jwks(&b))
                    .map_err(|reason| ServiceError::File {
                        flag: "--oidc-jwks",
                        path: p.clone(),
                        reason,
                    })?
            }
            None => {
                *oidc.last_fetch.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                oidc.discover().await.map_err(issuer_error)?
            }
        };
        tracing::info!(issuer = %oidc.cfg.issuer, audience = %oidc.cfg.audience, keys = keys.len(), "service-account issuer keys loaded");
        *oidc.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(Arc::new(oidc))
    }

    pub(super) fn discovers(&self) -> bool {
        self.cfg.jwks_file.is_none()
    }

    fn current(&self) -> Arc<Vec<Key>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, keys: Vec<Key>) {
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }

    /// Re-reads the JWKS file if it changed. Bad content keeps the old keys.
    pub(super) fn reload_file_if_changed(&self) {
        let Some(p) = &self.cfg.jwks_file else { return };
        let now = Stamp::of(p);
        {
            let mut seen = self.file_stamp.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return;
            }
            *seen = now;
        }
        match read_small(p).and_then(|b| parse_jwks(&b)) {
            Ok(keys) => {
                tracing::info!(jwks = %p.display(), keys = keys.len(), "issuer keys re-read");
                self.replace(keys);
            }
            Err(e) => {
                tracing::warn!(jwks = %p.display(), error = %e, "issuer keys changed but do not load; keeping the previous keys")
            }
        }
    }

    /// Fetches the keys again by discovery (errors keep the old keys).
    pub(super) async fn refresh(&self) {
        *self.last_fetch.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        match self.discover().await {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "issuer keys fetched");
                self.replace(keys);
            }
            Err(e) => {
                tracing::warn!(issuer = %self.cfg.issuer, error = %e, "cannot fetch the issuer's keys; keeping the previous keys")
            }
        }
    }

    /// A key id we do not know may be a rotated issuer key: look again,
    /// unless we looked a moment ago.
    async fn look_for_new_keys(&self) {
        if self.cfg.jwks_file.is_some() {
            self.reload_file_if_changed();
            return;
        }
        let due = {
            let mut last = self.last_fetch.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= REFETCH_AT_MOST_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            self.refresh().await;
        }
    }

    fn client(&self) -> Result<reqwest::Client, String> {
        let mut b = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &self.ca {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("--oidc-ca: {e}"))?;
            b = b.tls_certs_only(certs);
        }
        b.build().map_err(|e| e.to_string())
    }

    async fn get(
        &self,
        client: &reqwest::Client,
        url: &str,
        cap: usize,
    ) -> Result<Vec<u8>, String> {
        let mut req = client.get(url).header("accept", "application/json");
        if let Some(p) = &self.cfg.token_file {
            let t = read_small(p).map_err(|e| format!("--oidc-token-file {}: {e}", p.display()))?;
            let t = String::from_utf8_lossy(&t).trim().to_string();
            req = req.bearer_auth(t);
        }
        let mut r = req
            .send()
            .await
            .map_err(|e| format!("{url}: {}", super::super::remote::error_chain(&e)))?;
        if !r.status().is_success() {
            return Err(format!("{url}: HTTP {}", r.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = r
            .chunk()
            .await
            .map_err(|e| format!("{url}: {}", super::super::remote::error_chain(&e)))?
        {
            if body.len() + chunk.len() > cap {
                return Err(format!("{url}: response larger than {cap} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// OIDC discovery: the issuer's configuration document, then its keys.
    async fn discover(&self) -> Result<Vec<Key>, String> {
        let client = self.client()?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let doc: Discovery = serde_json::from_slice(&self.get(&client, &url, MAX_DISCOVERY).await?)
            .map_err(|e| format!("{url}: not an OpenID configuration: {e}"))?;
        // OpenID Connect Discovery 1.0, 4.3: the document's issuer must be
        // exactly the one asked about.
        if doc.issuer != self.cfg.issuer {
            return Err(format!(
                "{url}: names issuer {:?}, not {:?}",
                short(&doc.issuer, 200),
                self.cfg.issuer
            ));
        }
        let jwks_uri = check_url(&doc.jwks_uri)
            .map_err(|e| format!("{url}: jwks_uri {}: {e}", short(&doc.jwks_uri, 200)))?;
        let jwks = self.get(&client, jwks_uri.as_str(), MAX_JWKS).await?;
        parse_jwks(&jwks).map_err(|e| format!("{jwks_uri}: {e}"))
    }

    /// The pod a token identifies, or why it is refused.
    pub(super) async fn verify(&self, token: &str) -> Result<KubeIdentity, String> {
        if token.len() > MAX_TOKEN {
            return Err(format!("token longer than {MAX_TOKEN} bytes"));
        }
        let header = token
            .split('.')
            .next()
            .and_then(|h| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .ok()
            })
            .and_then(|h| serde_json::from_slice::<Header>(&h).ok())
            .ok_or("token is not a well-formed JWT (header)")?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err("unsigned token (alg none) refused".into());
        }
        let Some(&(_, alg)) = ACCEPTED.iter().find(|(n, _)| *n == header.alg) else {
            return Err(format!(
                "token algorithm {} refused (accepted: RS*, PS*, ES256, ES384)",
                short(&header.alg, 16)
            ));
        };
        if header.crit.is_some() {
            return Err("token has critical header extensions (crit)".into());
        }
        let pick = |keys: &[Key]| -> Vec<usize> {
            keys.iter()
                .enumerate()
                .filter(|(_, k)| k.algs.contains(&alg))
                // A key without an id may be any token's (RFC 7517, 4.5).
                .filter(|(_, k)| header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
                .map(|(i, _)| i)
                .collect()
        };
        let mut keys = self.current();
        if pick(&keys).is_empty() {
            self.look_for_new_keys().await;
            keys = self.current();
        }
        let candidates = pick(&keys);
        if candidates.is_empty() {
            return Err(match &header.kid {
                Some(kid) => format!(
                    "no {} key with id {:?} among the issuer's keys",
                    header.alg,
                    short(kid, 64)
                ),
                None => format!("no {} key among the issuer's keys", header.alg),
            });
        }
        let mut v = Validation::new(alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = LEEWAY;
        let mut last = None;
        for i in candidates {
            match jsonwebtoken::decode::<Claims>(token, &keys[i].key, &v) {
                Ok(data) => return self.identity(data.claims),
                // Another key of the same id-less set may fit.
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => last = Some(e),
                Err(e) => return Err(reason(&e, &self.cfg)),
            }
        }
        Err(last.map_or_else(|| "token refused".into(), |e| reason(&e, &self.cfg)))
    }

    fn identity(&self, c: Claims) -> Result<KubeIdentity, String> {
        let Some(k) = c.kube else {
            return Err("token has no kubernetes.io claims (not a service-account token)".into());
        };
        // The subject repeats namespace and service account; a token
        // where they differ was not made by a Kubernetes issuer.
        let sub = format!(
            "system:serviceaccount:{}:{}",
            k.namespace, k.serviceaccount.name
        );
        if c.sub != sub {
            return Err("token subject does not match its kubernetes.io claims".into());
        }
        let Some(pod) = k.pod else {
            return Err(
                "token is not bound to a pod (use a projected service-account token volume)".into(),
            );
        };
        Ok(KubeIdentity {
            issuer: c.iss,
            namespace: k.namespace,
            service_account: k.serviceaccount.name,
            pod: pod.name,
            pod_uid: pod.uid,
            node: k.node.map(|n| n.name),
        })
    }
}
