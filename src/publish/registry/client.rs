//! The HTTP side of the OCI distribution API: `/v2/` ping, token or basic
//! authentication, manifests, blobs, the referrers API.
//!
//! Written over reqwest rather than taken from oci-client (0.18), which reads
//! every manifest, error and token body whole (`Response::bytes`), pings
//! `/v2/` again on every authentication, and has one fixed read timeout per
//! client. Publishing needs the opposite on each point: every read capped
//! on the bytes actually received (a registry the builder names may send a
//! gigabyte), one deadline over a whole publish from which every request's
//! timeout is derived, and the ping and tokens learnt once per registry.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest as _, Sha256};

use super::RegistryError;
use crate::publish::auth::Credentials;

/// Manifests and indexes larger than this are refused. The distribution
/// spec has registries accept at least 4 MiB and lets them refuse more, so
/// no manifest we could need is larger.
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Error, token and ping bodies: only a message or a token is wanted.
const MAX_SMALL: u64 = 256 << 10;
/// No single request waits longer than this even when the deadline is
/// further away, so one hung connection leaves time for a retry.
const MAX_REQUEST: Duration = Duration::from_secs(10);

/// One deadline over a whole operation (a publish, a verification): every
/// request's timeout is what remains of it.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    pub fn after(budget: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + budget,
            budget,
        }
    }

    pub fn at(at: Instant) -> Deadline {
        Deadline {
            at,
            budget: at.saturating_duration_since(Instant::now()),
        }
    }

    pub fn instant(&self) -> Instant {
        self.at
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    pub fn expired(&self) -> bool {
        self.remaining().is_zero()
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }
}

/// A repository in a registry, and how to name it in errors.
#[derive(Debug, Clone)]
pub struct Repo {
    /// `host[:port]` as written in the reference.
    pub registry: String,
    pub name: String,
    /// What the user asked for (`registry/repo:tag`), for error lines.
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Pull,
    Push,
}

#[derive(Debug, Clone)]
enum Challenge {
    /// `/v2/` answered 200: no authentication.
    None,
    Basic,
    Bearer {
        realm: Url,
        service: Option<String>,
    },
}

#[derive(Debug, Default)]
struct HostState {
    challenge: Option<Challenge>,
    /// scope -> bearer token
    tokens: HashMap<String, String>,
}

/// A response whose status was 2xx or one the caller asked to see.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    inner: reqwest::Response,
}

pub struct Client {
    http: reqwest::Client,
    creds: Credentials,
    plain_http: Vec<String>,
    hosts: Mutex<HashMap<String, HostState>>,
}

/// Loopback registries are spoken to over plain HTTP, as docker and cosign
/// do. Decided by parsing the address: an IP literal in 127.0.0.0/8, `::1`,
/// or exactly `localhost`. A name is never judged by its look
/// (`127.evil.example` is an ordinary DNS name).
pub fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    if host == "localhost" {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// `host` of `host[:port]` (IPv6 literals in brackets).
fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        return match registry.find(']') {
            Some(i) => &registry[..=i],
            None => registry,
        };
    }
    match registry.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

/// What a registry said, made safe to print: one line, printable, short.
pub fn sanitize(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if s.chars().count() > max {
        out.push_str("...");
    }
    out.trim().to_string()
}

/// An error and its causes on one line: reqwest's own text ("error sending
/// request for url") says nothing without them.
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        cur = c.source();
    }
    msg
}

impl Client {
    pub fn new(
        creds: Credentials,
        plain_http: Vec<String>,
        extra_ca: &[Vec<u8>],
    ) -> Result<Client, String> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Blob storage redirects are common; a downgrade to plain HTTP is
            // not followed. reqwest drops Authorization on a change of host.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let downgrade = attempt.url().scheme() == "http"
                    && attempt
                        .previous()
                        .last()
                        .is_some_and(|u| u.scheme() == "https");
                if attempt.previous().len() >= 5 {
                    attempt.error("more than 5 redirects")
                } else if downgrade {
                    attempt.error("refusing a redirect from https to plain http")
                } else {
                    attempt.follow()
                }
            }));
        for pem in extra_ca {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("--registry-ca: {e}"))?;
            b = b.tls_certs_merge(certs);
        }
        Ok(Client {
            http: b.build().map_err(|e| with_causes(&e))?,
            creds,
            plain_http,
            hosts: Mutex::new(HashMap::new()),
        })
    }

    fn plain_allowed(&self, host_port: &str) -> bool {
        is_loopback(host_port) || self.plain_http.iter().any(|p| p == host_port)
    }

    fn base(&self, registry: &str) -> String {
        let scheme = if self.plain_allowed(registry) {
            "http"
        } else {
            "https"
        };
        // docker.io names its registry differently from its API host.
        let host = match registry {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        };
        format!("{scheme}://{host}")
    }

    pub fn url(&self, repo: &Repo, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base(&repo.registry), repo.name)
    }

    /// Runs `fut` within what remains of `deadline` (and at most `cap`).
    async fn timed<T>(
        &self,
        repo: &Repo,
        what: &'static str,
        deadline: &Deadline,
        cap: Duration,
        fut: impl std::future::Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        let remaining = deadline.remaining();
        if remaining.is_zero() {
            return Err(deadline_error(repo, what, deadline));
        }
        let limit = remaining.min(cap);
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) if limit == remaining => Err(deadline_error(repo, what, deadline)),
            Err(_) => Err(RegistryError::Registry {
                image: repo.label.clone(),
                what,
                message: format!("no answer within {} s", limit.as_secs_f32()),
            }),
        }
    }

    fn transport(repo: &Repo, what: &'static str, e: reqwest::Error) -> RegistryError {
        RegistryError::Registry {
            image: repo.label.clone(),
            what,
            message: with_causes(&e),
        }
    }

    /// The `/v2/` ping, once per registry: tells whether and how to
    /// authenticate.
    async fn challenge(
        &self,
        repo: &Repo,
        deadline: &Deadline,
    ) -> Result<Challenge, RegistryError> {
        if let Some(c) = self.host(&repo.registry, |h| h.challenge.clone()) {
            return Ok(c);
        }
        let what = "contacting the registry";
        let url = format!("{}/v2/", self.base(&repo.registry));
        let c = self
            .timed(repo, what, deadline, MAX_REQUEST, async {
                let resp = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| Self::transport(repo, what, e))?;
                let status = resp.status();
                let header = resp
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = read_capped(resp, MAX_SMALL).await.unwrap_or_default();
                if status.is_success() {
                    return Ok(Challenge::None);
                }
                if status == StatusCode::UNAUTHORIZED {
                    return parse_challenge(header.as_deref().unwrap_or("")).ok_or_else(|| {
                        RegistryError::Auth {
                            image: repo.label.clone(),
                            message: format!(
                                "{url} asks for authentication in a form provenant does not speak: {}",
                                sanitize(header.as_deref().unwrap_or("(no WWW-Authenticate)"), 120)
                            ),
                        }
                    });
                }
                Err(status_error(repo, what, &url, status, &body))
            })
            .await?;
        self.host(&repo.registry, |h| h.challenge = Some(c.clone()));
        Ok(c)
    }

    fn host<T>(&self, registry: &str, f: impl FnOnce(&mut HostState) -> T) -> T {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        f(hosts.entry(registry.to_string()).or_default())
    }

    fn basic(&self, registry: &str) -> Option<HeaderValue> {
        let (u, p) = self.creds.for_registry(registry)?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        let mut v = HeaderValue::from_str(&format!("Basic {b64}")).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// The Authorization header for `op` on `repo`, fetching a token when
    /// the registry wants one (cached per scope; `fresh` drops the cached
    /// one, for a token that expired or lacked the scope).
    async fn authorization(
        &self,
        repo: &Repo,
        op: Op,
        fresh: bool,
        deadline: &Deadline,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let (realm, service) = match self.challenge(repo, deadline).await? {
            Challenge::None => return Ok(None),
            Challenge::Basic => return Ok(self.basic(&repo.registry)),
            Challenge::Bearer { realm, service } => (realm, service),
        };
        let push_scope = format!("repository:{}:pull,push", repo.name);
        let scope = match op {
            Op::Pull => format!("repository:{}:pull", repo.name),
            Op::Push => push_scope.clone(),
        };
        if fresh {
            self.host(&repo.registry, |h| h.tokens.remove(&scope));
        } else if let Some(t) = self.host(&repo.registry, |h| {
            h.tokens
                .get(&scope)
                .or_else(|| h.tokens.get(&push_scope))
                .cloned()
        }) {
            return Ok(bearer(&t));
        }
        // The realm is the registry's choice; credentials go there only
        // over TLS unless the operator allowed plain HTTP for that host.
        let realm_host = match realm.port() {
            Some(p) => format!("{}:{p}", realm.host_str().unwrap_or("")),
            None => realm.host_str().unwrap_or("").to_string(),
        };
        if realm.scheme() != "https" && !self.plain_allowed(&realm_host) {
            return Err(RegistryError::Auth {
                image: repo.label.clone(),
                message: format!(
                    "the token service {} is not https; refusing to send credentials there",
                    sanitize(realm.as_str(), 200)
                ),
            });
        }
        let what = "getting a registry token";
        let token = self
            .timed(repo, what, deadline, MAX_REQUEST, async {
                let mut url = realm.clone();
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("scope", &scope);
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                }
                let mut req = self.http.get(url.clone());
                if let Some(b) = self.basic(&repo.registry) {
                    req = req.header(AUTHORIZATION, b);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| Self::transport(repo, what, e))?;
                let status = resp.status();
                let body = read_capped(resp, MAX_SMALL).await.map_err(|e| match e {
                    Capped::TooLarge => RegistryError::Garbage {
                        image: repo.label.clone(),
                        what: "the token response".into(),
                        message: format!("larger than {MAX_SMALL} bytes"),
                    },
                    Capped::Http(e) => Self::transport(repo, what, e),
                })?;
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(RegistryError::Auth {
                        image: repo.label.clone(),
                        message: format!(
                            "the token service refused {} (HTTP {})",
                            if self.creds.for_registry(&repo.registry).is_some() {
                                "the credentials"
                            } else {
                                "anonymous access; no credentials are configured for this registry"
                            },
                            status.as_u16()
                        ),
                    });
                }
                if !status.is_success() {
                    return Err(status_error(repo, what, realm.as_str(), status, &body));
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let t: Token =
                    serde_json::from_slice(&body).map_err(|e| RegistryError::Garbage {
                        image: repo.label.clone(),
                        what: "the token response".into(),
                        message: e.to_string(),
                    })?;
                t.token
                    .or(t.access_token)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| RegistryError::Garbage {
                        image: repo.label.clone(),
                        what: "the token response".into(),
                        message: "no token in it".into(),
                    })
            })
            .await?;
        self.host(&repo.registry, |h| h.tokens.insert(scope, token.clone()));
        Ok(bearer(&token))
    }

    /// Sends one request. `url` is on the registry (or an upload location
    /// it handed out); Authorization is only attached when the URL's host
    /// is the registry's. 401 gets one fresh token, then is an error;
    /// other statuses are the caller's to judge. `cap` bounds this
    /// request below the deadline (e.g. the append window).
    #[allow(clippy::too_many_arguments)]
    pub async fn send(
        &self,
        repo: &Repo,
        what: &'static str,
        op: Op,
        method: Method,
        url: &str,
        accept: &[&str],
        body: Option<(&[u8], &str)>,
        deadline: &Deadline,
        cap: Option<Duration>,
    ) -> Result<Response, RegistryError> {
        let parsed = Url::parse(url).map_err(|e| RegistryError::Garbage {
            image: repo.label.clone(),
            what: what.to_string(),
            message: format!("bad URL {}: {e}", sanitize(url, 200)),
        })?;
        let same_host = {
            let hp = match parsed.port() {
                Some(p) => format!("{}:{p}", parsed.host_str().unwrap_or("")),
                None => parsed.host_str().unwrap_or("").to_string(),
            };
            hp == repo.registry || self.base(&repo.registry).ends_with(&format!("://{hp}"))
        };
        let cap = cap.unwrap_or(MAX_REQUEST).min(MAX_REQUEST);
        for attempt in 0..2 {
            let auth = if same_host {
                self.authorization(repo, op, attempt > 0, deadline).await?
            } else {
                None
            };
            let resp = self
                .timed(repo, what, deadline, cap, async {
                    let mut req = self.http.request(method.clone(), parsed.clone());
                    if !accept.is_empty() {
                        req = req.header(ACCEPT, accept.join(", "));
                    }
                    if let Some(a) = &auth {
                        req = req.header(AUTHORIZATION, a.clone());
                    }
                    if let Some((bytes, ct)) = body {
                        req = req.header(CONTENT_TYPE, ct).body(bytes.to_vec());
                    } else if method == Method::PUT || method == Method::POST {
                        req = req.header(reqwest::header::CONTENT_LENGTH, "0");
                    }
                    req.send().await.map_err(|e| Self::transport(repo, what, e))
                })
                .await?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 && same_host {
                // A token that expired or lacks the scope, or a registry
                // whose /v2/ was open but whose repository is not: learn
                // the challenge this answer carries and try once more.
                let fresh = resp
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                let was = self.host(&repo.registry, |h| h.challenge.clone());
                let retry = match (&fresh, &was) {
                    (Some(Challenge::Bearer { .. }), _) => true,
                    (Some(Challenge::Basic), Some(Challenge::None)) => {
                        self.creds.for_registry(&repo.registry).is_some()
                    }
                    _ => false,
                };
                if let Some(c) = fresh {
                    self.host(&repo.registry, |h| h.challenge = Some(c));
                }
                if retry {
                    continue;
                }
            }
            if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
                let status = resp.status().as_u16();
                let body = self
                    .timed(repo, what, deadline, cap, async {
                        Ok(read_capped(resp, MAX_SMALL).await.unwrap_or_default())
                    })
                    .await
                    .unwrap_or_default();
                return Err(RegistryError::Auth {
                    image: repo.label.clone(),
                    message: format!(
                        "HTTP {status} from {}{}{}",
                        sanitize(url, 200),
                        registry_message(&body)
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default(),
                        if self.creds.for_registry(&repo.registry).is_none() {
                            format!(" (no credentials are configured for {})", repo.registry)
                        } else {
                            " (check the credentials)".to_string()
                        }
                    ),
                });
            }
            return Ok(Response {
                status: resp.status(),
                headers: resp.headers().clone(),
                inner: resp,
            });
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Reads a body of at most `cap` bytes (counted as they arrive, whatever
    /// Content-Length says) within the deadline.
    pub async fn body(
        &self,
        repo: &Repo,
        what: &str,
        resp: Response,
        cap: u64,
        deadline: &Deadline,
    ) -> Result<Vec<u8>, RegistryError> {
        let label = what.to_string();
        self.timed(
            repo,
            "reading a response",
            deadline,
            MAX_REQUEST * 3,
            async {
                read_capped(resp.inner, cap).await.map_err(|e| match e {
                    Capped::TooLarge => RegistryError::Garbage {
                        image: repo.label.clone(),
                        what: label.clone(),
                        message: format!("larger than the {cap}-byte limit; not read further"),
                    },
                    Capped::Http(e) => RegistryError::Registry {
                        image: repo.label.clone(),
                        what: "reading a response",
                        message: with_causes(&e),
                    },
                })
            },
        )
        .await
    }

    /// The error for a status the caller did not expect, with the
    /// registry's own message.
    pub async fn unexpected(
        &self,
        repo: &Repo,
        what: &'static str,
        url: &str,
        resp: Response,
        deadline: &Deadline,
    ) -> RegistryError {
        let status = resp.status;
        let body = self
            .body(repo, what, resp, MAX_SMALL, deadline)
            .await
            .unwrap_or_default();
        status_error(repo, what, url, status, &body)
    }
}

fn bearer(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn deadline_error(repo: &Repo, what: &'static str, d: &Deadline) -> RegistryError {
    RegistryError::Deadline {
        image: repo.label.clone(),
        what,
        seconds: d.budget().as_secs_f32(),
    }
}

enum Capped {
    TooLarge,
    Http(reqwest::Error),
}

async fn read_capped(mut resp: reqwest::Response, cap: u64) -> Result<Vec<u8>, Capped> {
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(Capped::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Capped::Http)? {
        if out.len() as u64 + chunk.len() as u64 > cap {
            return Err(Capped::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Streams a blob, refusing a byte more than its descriptor declared and
/// checking the digest at the end.
pub async fn read_blob(
    client: &Client,
    repo: &Repo,
    resp: Response,
    digest: &str,
    size: u64,
    deadline: &Deadline,
) -> Result<Vec<u8>, RegistryError> {
    let what = format!("blob {digest}");
    let bytes = client.body(repo, &what, resp, size, deadline).await?;
    if bytes.len() as u64 != size {
        return Err(RegistryError::Garbage {
            image: repo.label.clone(),
            what,
            message: format!("{} bytes, its descriptor says {size}", bytes.len()),
        });
    }
    if format!("sha256:{}", hex::encode(Sha256::digest(&bytes))) != digest {
        return Err(RegistryError::Garbage {
            image: repo.label.clone(),
            what,
            message: "content does not match its digest".into(),
        });
    }
    Ok(bytes)
}

/// `{"errors":[{"code":..,"message":..}]}` -> "CODE: message; ..."
fn registry_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    let e: Envelope = serde_json::from_slice(body).ok()?;
    let parts: Vec<String> = e
        .errors
        .iter()
        .take(3)
        .map(|x| {
            format!(
                "{}{}",
                x.code.as_deref().unwrap_or("ERROR"),
                x.message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    (!parts.is_empty()).then(|| sanitize(&parts.join("; "), 300))
}

pub fn status_error(
    repo: &Repo,
    what: &'static str,
    url: &str,
    status: StatusCode,
    body: &[u8],
) -> RegistryError {
    let detail = registry_message(body)
        .unwrap_or_else(|| sanitize(&String::from_utf8_lossy(&body[..body.len().min(200)]), 200));
    let message = format!(
        "HTTP {} at {}{}",
        status.as_u16(),
        sanitize(url, 200),
        if detail.is_empty() {
            String::new()
        } else {
            format!(": {detail}")
        }
    );
    let image = repo.label.clone();
    // Writers racing on the same blobs and tag (publishers appending to
    // one image's `.att`): distribution answers an upload or manifest put
    // whose blob another writer was committing with these codes. Tried
    // again, the put succeeds; left as a refusal, the attestation waited
    // in the spool for the next `provenant publish`.
    let racing = status.as_u16() == 400
        && ["DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN"]
            .iter()
            .any(|c| detail.contains(c))
        || status.as_u16() == 404 && detail.contains("BLOB_UPLOAD_UNKNOWN");
    match status.as_u16() {
        _ if racing => RegistryError::Registry {
            image,
            what,
            message,
        },
        429 | 500..=599 => RegistryError::Registry {
            image,
            what,
            message,
        },
        _ => RegistryError::Rejected {
            image,
            what,
            message,
        },
    }
}

/// `Bearer realm="..",service=".."` or `Basic realm=".."`.
fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let realm = Url::parse(params.get("realm")?).ok()?;
    if realm.scheme() != "https" && realm.scheme() != "http" {
        return None;
    }
    Some(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
    })
}

/// `k="v", k2=v2` (RFC 7235 auth-params, quoted strings with escapes).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n)
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), val.trim().to_string());
    }
    out
}

/// Where to PUT an upload: the Location of the POST, relative or absolute,
/// with `digest=` added to whatever query it carries.
pub fn upload_url(base: &str, location: &str, digest: &str) -> Option<String> {
    let base = Url::parse(base).ok()?;
    let mut u = base.join(location).ok()?;
    u.query_pairs_mut().append_pair("digest", digest);
    Some(u.to_string())
}

pub fn location(headers: &HeaderMap) -> Option<String> {
    headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_parsed_not_guessed() {
        for yes in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:5000",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "127.evil.example",
            "127.evil.example:5000",
            "127.0.0.1.nip.io:5000",
            "localhost.example.com",
            "localhostx:80",
            "LOCALHOST.evil",
            "10.0.0.1:5000",
            "[::2]:5000",
            "[::ffff:10.0.0.1]",
            "registry.example.com",
            "",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn challenges() {
        match parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="x""#,
        ) {
            Some(Challenge::Bearer { realm, service }) => {
                assert_eq!(realm.as_str(), "https://auth.example.com/token");
                assert_eq!(service.as_deref(), Some("registry.example.com"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_challenge(r#"Basic realm="provenant-test""#),
            Some(Challenge::Basic)
        ));
        assert!(parse_challenge("Negotiate").is_none());
        assert!(parse_challenge(r#"Bearer realm="file:///etc/passwd""#).is_none());
    }

    #[test]
    fn upload_locations() {
        assert_eq!(
            upload_url(
                "http://r:5000/v2/app/blobs/uploads/",
                "/v2/app/blobs/uploads/u1?_state=abc",
                "sha256:00"
            )
            .unwrap(),
            "http://r:5000/v2/app/blobs/uploads/u1?_state=abc&digest=sha256%3A00"
        );
        assert_eq!(
            upload_url("http://r:5000/x", "http://r:5000/up/1", "sha256:00").unwrap(),
            "http://r:5000/up/1?digest=sha256%3A00"
        );
    }

    #[test]
    fn causes_are_kept() {
        let inner =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(
            with_causes(&Outer(inner)),
            "error sending request: Connection refused"
        );
    }
}
