//! `provenant signer`: the remote signing service (the protocol is in
//! `remote.rs`). It holds the key and signs only SLSA provenance
//! statements, each for a caller it has authenticated, with the builder id
//! its configuration gives that caller; each request leaves one audit line.
//!
//! * `tls.rs`: its own TLS, files re-read on rotation, optional mTLS;
//! * `auth.rs`: who is calling (service-account token, client
//!   certificate, shared token) and the builder id each caller gets;
//! * `oidc.rs`: service-account tokens checked against the issuer's keys;
//! * `statement.rs`: what it agrees to sign;
//! * `audit.rs`: the audit line;
//! * `conn.rs`: a connection cap that idle connections cannot exhaust.
//!
//! Deadlines: the TLS handshake and the request head within
//! `header_timeout` of the connection, the body within `body_timeout` of
//! the head; one request per connection. Accept errors (out of file
//! descriptors included) are waited out, never the end of the service.
mod audit;
mod auth;
mod conn;
mod files;
mod oidc;
mod statement;
mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use zeroize::Zeroizing;

pub use auth::{check_builder_uri, BuilderIds, Caller, CertIdentity, KubeIdentity};
pub(crate) use oidc::is_loopback as is_loopback_url;
pub use oidc::OidcConfig;
pub use tls::TlsFiles;

use super::remote::{IdentityResponse, PublicKeyResponse, SignRequest, SignResponse};
use super::{LocalSigner, Signer};
use audit::{Event, Record};
use auth::Authenticator;
use conn::{Conns, Slot};
use statement::Seen;

/// Everything `provenant signer` was told. No clap here: `cli/signer.rs`
/// fills it from flags.
pub struct ServiceConfig {
    /// None: plain HTTP (the command line allows it only on loopback or
    /// when asked for explicitly).
    pub tls: Option<TlsFiles>,
    /// The shared bearer token (the weakest way to authenticate).
    pub shared_token: Option<Zeroizing<String>>,
    /// Service-account tokens.
    pub oidc: Option<OidcConfig>,
    pub builders: BuilderIds,
    pub limits: Limits,
}

/// Caps and deadlines.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at most; idle ones are evicted to make room.
    pub max_connections: usize,
    /// Idle (no request yet) connections per client address at most.
    pub max_idle_per_address: usize,
    /// From accept to the end of the request head, TLS handshake included.
    pub header_timeout: Duration,
    /// From the request head to the end of its body.
    pub body_timeout: Duration,
    /// Largest request body: a statement of 100k subjects, base64, is ~25 MiB.
    pub max_body: usize,
    /// Request bodies held at once, in bytes (each request counts its
    /// Content-Length, or `max_body` without one): what bounds the memory
    /// authenticated callers can make the signer use (a body costs about
    /// four times its size while it is decoded, parsed and audited). Small
    /// statements, the usual case, do not wait for each other.
    pub max_buffered: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_idle_per_address: 64,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_body: 64 << 20,
            max_buffered: 128 << 20,
        }
    }
}

/// The request head (and any header) must fit in this; a service-account
/// token is ~1 KiB.
const MAX_HEAD: usize = 64 << 10;
/// The unit `Limits::max_buffered` is counted in.
const BUFFER_UNIT: usize = 1 << 20;
/// Idle connections closed at once when accept runs out of descriptors.
const EVICT_WHEN_OUT_OF_FILES: usize = 16;
/// Time to sign and write the response once the body is in.
const RESPONSE_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{flag} {}: {reason}", path.display())]
    File {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("--oidc-issuer {issuer}: {reason}")]
    Issuer { issuer: String, reason: String },
    #[error("{0}")]
    Config(String),
}

impl crate::error::ExitClass for ServiceError {
    fn exit_code(&self) -> i32 {
        match self {
            ServiceError::Config(_) => crate::error::exit::USAGE,
            _ => crate::error::exit::CANNOT_CHECK,
        }
    }
}

struct State {
    signer: LocalSigner,
    auth: Authenticator,
    builders: BuilderIds,
    limits: Limits,
    tls: Option<tls::Reloader>,
    conns: Arc<Conns>,
    signing: Semaphore,
}

/// A signer ready to serve: files read, issuer keys fetched.
pub struct Service {
    state: Arc<State>,
}

/// Raises the soft limit on open files to the hard limit, as Go programs
/// do at start: the default soft limit (often 1024) is below what a
/// connection cap needs. Returns the soft limit now in force.
pub fn raise_open_files_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

impl Service {
    /// Checks the configuration and loads what it names (certificate, key,
    /// client CA, issuer keys): everything that can fail does so now.
    pub async fn start(
        config: ServiceConfig,
        signer: LocalSigner,
    ) -> Result<Service, ServiceError> {
        let client_ca = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        let tokens = config.shared_token.is_some() || config.oidc.is_some();
        if !tokens && !client_ca {
            return Err(ServiceError::Config(
                "no way to authenticate callers: give --oidc-issuer (service-account tokens), --client-ca (client certificates) or --token-file (a shared token)".into(),
            ));
        }
        if config.oidc.is_some() && !config.builders.has_namespace_rules() {
            return Err(ServiceError::Config(
                "--oidc-issuer needs --builder NAMESPACE[/SERVICEACCOUNT]=URI: the builder id each namespace's statements must carry".into(),
            ));
        }
        let other_callers = config.shared_token.is_some() || (client_ca && !tokens);
        if other_callers && config.builders.other.is_none() {
            return Err(ServiceError::Config(format!(
                "{} needs --builder-id URI: the builder id its callers' statements must carry",
                if config.shared_token.is_some() {
                    "--token-file"
                } else {
                    "--client-ca without a token mode"
                }
            )));
        }
        let tls = config.tls.map(tls::Reloader::load).transpose()?;
        let oidc = match config.oidc {
            Some(c) => Some(oidc::Oidc::load(c).await?),
            None => None,
        };
        let limits = config.limits;
        Ok(Service {
            state: Arc::new(State {
                signer,
                auth: Authenticator {
                    shared_token: config.shared_token,
                    oidc,
                    client_ca,
                },
                builders: config.builders,
                conns: Conns::new(limits.max_connections, limits.max_idle_per_address),
                signing: Semaphore::new(
                    (limits.max_buffered / BUFFER_UNIT).max(limits.max_body.div_ceil(BUFFER_UNIT)),
                ),
                limits,
                tls,
            }),
        })
    }

    /// Serves until the process ends.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> Infallible {
        let state = self.state;
        if state.tls.is_some() {
            let st = state.clone();
            tokio::spawn(async move {
                let mut t = tokio::time::interval(tls::RELOAD_EVERY);
                loop {
                    t.tick().await;
                    if let Some(r) = &st.tls {
                        r.reload_if_changed();
                    }
                }
            });
        }
        if let Some(oidc) = state.auth.oidc.clone() {
            tokio::spawn(async move {
                let every = if oidc.discovers() {
                    oidc::REFRESH_EVERY
                } else {
                    tls::RELOAD_EVERY
                };
                let mut t = tokio::time::interval(every);
                t.tick().await;
                loop {
                    t.tick().await;
                    if oidc.discovers() {
                        oidc.refresh().await;
                    } else {
                        oidc.reload_file_if_changed();
                    }
                }
            });
        }
        let mut warned: Option<Instant> = None;
        let mut warn = |what: &str, error: Option<&std::io::Error>| {
            // One warning per 10 s: a flood must not become a log flood.
            if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                warned = Some(Instant::now());
                tracing::warn!(
                    error = error.map(|e| e.to_string()),
                    connections = state.conns.active(),
                    "{what}"
                );
            }
        };
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let Some(slot) = state.conns.admit(peer.ip()) else {
                        warn(
                            "connection cap reached and every connection is being served: refusing new connections",
                            None,
                        );
                        drop(stream);
                        continue;
                    };
                    tokio::spawn(connection(state.clone(), stream, peer, slot));
                }
                Err(e) if out_of_descriptors(&e) => {
                    // The connection waits in the kernel's backlog. Close
                    // a batch of the oldest idle ones (closing happens on
                    // their tasks, hence the pause) and take it then: one
                    // at a time, a flood would outpace the accepts.
                    state.conns.evict_oldest(EVICT_WHEN_OUT_OF_FILES);
                    warn(
                        "out of file descriptors: closing idle connections (raise the open files limit or lower --max-connections)",
                        Some(&e),
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => {
                    // ECONNABORTED and the like: that connection is gone,
                    // the listener is not.
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
}

fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

async fn connection(
    state: Arc<State>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: Slot,
) {
    let _ = stream.set_nodelay(true);
    let head_deadline = Instant::now() + state.limits.header_timeout;
    let Some(tls) = &state.tls else {
        serve_http(state.clone(), stream, peer, None, slot, head_deadline).await;
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
    let handshake = tokio::select! {
        r = tokio::time::timeout_at(head_deadline, acceptor.accept(stream)) => r,
        _ = slot.evicted.notified() => return,
    };
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake not done in time");
            return;
        }
    };
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| CertIdentity::from_der(c.as_ref()));
    serve_http(state.clone(), stream, peer, cert, slot, head_deadline).await;
}

async fn serve_http<I>(
    state: Arc<State>,
    io: I,
    peer: SocketAddr,
    cert: Option<CertIdentity>,
    slot: Slot,
    head_deadline: Instant,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slot = Arc::new(slot);
    let head_in = Arc::new(Notify::new());
    let cert = Arc::new(cert);
    let svc = {
        let (state, slot, head_in) = (state.clone(), slot.clone(), head_in.clone());
        hyper::service::service_fn(move |req| {
            slot.busy();
            head_in.notify_one();
            let (state, cert) = (state.clone(), cert.clone());
            async move { Ok::<_, Infallible>(handle(req, peer, cert, state).await) }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            return;
        }
        _ = tokio::time::sleep_until(head_deadline) => {
            tracing::debug!(%peer, "no request head in time: closing");
            return;
        }
        _ = slot.evicted.notified() => return,
        _ = head_in.notified() => {}
    }
    let end = Instant::now() + state.limits.body_timeout + RESPONSE_GRACE;
    match tokio::time::timeout_at(end, conn).await {
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended"),
        Err(_) => tracing::debug!(%peer, "request not done in time: closing"),
        Ok(Ok(())) => {}
    }
}

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(v).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": msg }))
}

/// One request's facts for its audit line.
struct Audited<'a> {
    state: &'a State,
    peer: SocketAddr,
    path: &'a str,
    cert: Option<&'a CertIdentity>,
}

impl Audited<'_> {
    fn write(&self, event: Event, caller: Option<&Caller>, reason: Option<&str>, seen: &Seen) {
        audit::write(&Record {
            audit: audit::FORMAT,
            time: audit::now(),
            event,
            peer: self.peer,
            path: self.path,
            caller,
            client_certificate: self.cert,
            reason,
            seen,
            key_id: self.state.signer.key_id(),
        });
    }

    /// Audits and answers a refusal.
    fn refuse(
        &self,
        status: StatusCode,
        caller: Option<&Caller>,
        reason: &str,
        seen: &Seen,
    ) -> Response<Full<Bytes>> {
        self.write(Event::Refused, caller, Some(reason), seen);
        error(status, reason)
    }
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    cert: Arc<Option<CertIdentity>>,
    state: Arc<State>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let a = Audited {
        state: &state,
        peer,
        path: &path,
        cert: cert.as_ref().as_ref(),
    };
    match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => json(StatusCode::OK, &serde_json::json!({"ok": true})),
        (&Method::GET, "/v1/publickey") => json(
            StatusCode::OK,
            &PublicKeyResponse {
                key_id: state.signer.key_id().to_string(),
                public_key: state.signer.public_key_pem().to_string(),
            },
        ),
        (&Method::GET, "/v1/identity") => identity(req, &a).await,
        (&Method::POST, "/v1/sign") => sign(req, &a, &state).await,
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Who the signer takes the caller for and the builder id it would get:
/// what a sidecar checks at start, before the build.
async fn identity(req: Request<Incoming>, a: &Audited<'_>) -> Response<Full<Bytes>> {
    let none = Seen::default();
    let caller = match a
        .state
        .auth
        .authenticate(auth::bearer(req.headers()), a.cert)
        .await
    {
        Ok(c) => c,
        Err(reason) => return a.refuse(StatusCode::UNAUTHORIZED, None, &reason, &none),
    };
    match a.state.builders.for_caller(&caller) {
        Ok(builder_id) => {
            a.write(Event::Identity, Some(&caller), None, &none);
            json(
                StatusCode::OK,
                &IdentityResponse {
                    key_id: a.state.signer.key_id().to_string(),
                    caller: caller.to_string(),
                    builder_id: builder_id.to_string(),
                },
            )
        }
        Err(reason) => a.refuse(StatusCode::FORBIDDEN, Some(&caller), &reason, &none),
    }
}

async fn sign(
    req: Request<Incoming>,
    a: &Audited<'_>,
    state: &Arc<State>,
) -> Response<Full<Bytes>> {
    let mut seen = Seen::default();
    // Who, before anything is read: a caller without credentials never
    // gets the signer to buffer a body.
    let caller = match state
        .auth
        .authenticate(auth::bearer(req.headers()), a.cert)
        .await
    {
        Ok(c) => c,
        Err(reason) => return a.refuse(StatusCode::UNAUTHORIZED, None, &reason, &seen),
    };
    let limits = &state.limits;
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits.max_body) {
        let reason = format!("request body larger than {} bytes", limits.max_body);
        return a.refuse(StatusCode::PAYLOAD_TOO_LARGE, Some(&caller), &reason, &seen);
    }
    let units = declared
        .unwrap_or(limits.max_body)
        .div_ceil(BUFFER_UNIT)
        .max(1) as u32;
    let Ok(Ok(_permit)) =
        tokio::time::timeout(limits.body_timeout, state.signing.acquire_many(units)).await
    else {
        return a.refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(&caller),
            "signer busy",
            &seen,
        );
    };
    let body = match tokio::time::timeout(
        limits.body_timeout,
        Limited::new(req.into_body(), limits.max_body).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            let reason = format!("request body larger than {} bytes", limits.max_body);
            return a.refuse(StatusCode::PAYLOAD_TOO_LARGE, Some(&caller), &reason, &seen);
        }
        Ok(Err(_)) => {
            return a.refuse(
                StatusCode::BAD_REQUEST,
                Some(&caller),
                "request body broken off",
                &seen,
            )
        }
        Err(_) => {
            let reason = format!(
                "request body not received within {} s",
                limits.body_timeout.as_secs()
            );
            return a.refuse(StatusCode::REQUEST_TIMEOUT, Some(&caller), &reason, &seen);
        }
    };
    // Parsing a statement of 100k subjects and signing are CPU work: off
    // the threads that serve connections.
    let st = state.clone();
    let c = caller.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut seen = Seen::default();
        let r = decode_and_sign(&body, &c, &st, &mut seen);
        (r, seen)
    })
    .await;
    let (result, s) = match outcome {
        Ok(o) => o,
        Err(_) => {
            return a.refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some(&caller),
                "signing task failed",
                &seen,
            )
        }
    };
    seen = s;
    match result {
        Ok(sig) => {
            a.write(Event::Signed, Some(&caller), None, &seen);
            json(
                StatusCode::OK,
                &SignResponse {
                    keyid: state.signer.key_id().to_string(),
                    sig: base64::engine::general_purpose::STANDARD.encode(sig),
                },
            )
        }
        Err((status, reason)) => a.refuse(status, Some(&caller), &reason, &seen),
    }
}

fn decode_and_sign(
    body: &[u8],
    caller: &Caller,
    state: &State,
    seen: &mut Seen,
) -> Result<Vec<u8>, statement::Refusal> {
    let r: SignRequest = serde_json::from_slice(body).map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            "expected {\"pae\": BASE64}".to_string(),
        )
    })?;
    let pae = base64::engine::general_purpose::STANDARD
        .decode(r.pae.as_bytes())
        .map_err(|_| (StatusCode::BAD_REQUEST, "pae is not base64".to_string()))?;
    statement::check(&pae, caller, &state.builders, seen)?;
    state
        .signer
        .sign(&pae)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
