//! HTTPS for the API server: `POST /mutate`, `GET /healthz`, `GET /readyz`.
//!
//! The certificate and key are read from files (a cert-manager Secret
//! volume) and read again whenever either file changes: the kubelet
//! replaces Secret volume contents by swapping a symlink, which a poll of
//! both files' metadata sees on any file system. A pair that does not load
//! (half-written, key not matching the certificate) is logged and the
//! previous one kept, so a rotation never takes the webhook down.
//!
//! Bounded everywhere a caller could hold resources: connections in
//! flight, TLS handshake and header time, body size and body time.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{Webhook, WebhookError, MAX_BODY};

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;
/// The API server gives up after the webhook's timeoutSeconds (at most
/// 30 s, 10 s by default, 5 s in the shipped configuration): a request
/// that has not arrived within this is not worth answering.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this long, whatever it does: the API
/// server reconnects, and nobody holds a slot forever.
const MAX_CONNECTION_LIFE: Duration = Duration::from_secs(600);
/// Reviews up to this size are answered on the I/O thread that read them:
/// a real pod's review (10-30 KB) takes ~0.1 ms to decide, less than
/// handing it to the blocking pool, whose thread start-ups and futex
/// wake-ups were a fifth of the webhook's CPU at 200 admissions in flight
/// (perf, docs/bench.md). Bigger bodies (up to MAX_BODY) could hold a
/// worker for milliseconds and still go to the pool.
const INLINE_BODY: usize = 256 * 1024;

/// The certificate in use, replaced when the files change.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    seen: RwLock<Option<Stamp>>,
}

/// What identifies one version of the two files.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<(u64, u64, Option<SystemTime>)>);

fn stamp(paths: &[&Path]) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let mut v = Vec::new();
    for p in paths {
        let m = std::fs::metadata(p).ok()?;
        v.push((m.ino(), m.len(), m.modified().ok()));
    }
    Some(Stamp(v))
}

/// Bounded read: a certificate chain is a few KiB.
fn read_small(path: &Path) -> Result<Vec<u8>, WebhookError> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(1 << 20).read_to_end(&mut buf))
        .map_err(|e| WebhookError::Tls(format!("cannot read {}: {e}", path.display())))?;
    Ok(buf)
}

fn load_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, WebhookError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read_small(cert_path)?)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                WebhookError::Tls(format!(
                    "{}: not a PEM certificate chain: {e}",
                    cert_path.display()
                ))
            })?;
    if certs.is_empty() {
        return Err(WebhookError::Tls(format!(
            "{}: no certificate in it",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&read_small(key_path)?).map_err(|e| {
        WebhookError::Tls(format!(
            "{}: not a PEM private key: {e}",
            key_path.display()
        ))
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let ck = CertifiedKey::from_der(certs, key, &provider).map_err(|e| {
        WebhookError::Tls(format!(
            "{} and {}: {e}",
            cert_path.display(),
            key_path.display()
        ))
    })?;
    Ok(ck)
}

impl CertStore {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<CertStore>, WebhookError> {
        let seen = stamp(&[cert_path, key_path]);
        let ck = load_pair(cert_path, key_path)?;
        Ok(Arc::new(CertStore {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
            current: RwLock::new(Arc::new(ck)),
            seen: RwLock::new(seen),
        }))
    }

    /// Reloads if either file changed since the last look; true if a new
    /// pair is in use.
    pub fn refresh(&self) -> bool {
        let now = stamp(&[&self.cert_path, &self.key_path]);
        if now.is_none() {
            // Mid-swap, or gone: keep what works.
            return false;
        }
        {
            let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return false;
            }
        }
        *self.seen.write().unwrap_or_else(|e| e.into_inner()) = now;
        match load_pair(&self.cert_path, &self.key_path) {
            Ok(ck) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ck);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(
                    "{e}; keeping the previous certificate until the files change again"
                );
                false
            }
        }
    }

    /// Polls the files every `every` for as long as the store is in use.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { break };
                // Reading two small files: off the async threads.
                let _ = tokio::task::spawn_blocking(move || store.refresh()).await;
            }
        });
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

pub fn tls_config(store: Arc<CertStore>) -> Result<Arc<rustls::ServerConfig>, WebhookError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    r
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    hook: Arc<Webhook>,
) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        // Serving means a certificate and a valid configuration were loaded.
        (&Method::GET, "/readyz") => text(StatusCode::OK, "ready\n"),
        (&Method::POST, "/mutate") => {
            let t0 = std::time::Instant::now();
            let body = match tokio::time::timeout(
                READ_TIMEOUT,
                Limited::new(req.into_body(), MAX_BODY).collect(),
            )
            .await
            {
                Ok(Ok(b)) => b.to_bytes(),
                Ok(Err(_)) => {
                    tracing::warn!(%peer, "request body over {MAX_BODY} bytes or broken; refused");
                    let review = kube_core::admission::AdmissionResponse::invalid(format!(
                        "request body larger than {MAX_BODY} bytes"
                    ))
                    .into_review();
                    let mut r = Response::new(Full::new(Bytes::from(
                        serde_json::to_vec(&review).unwrap_or_default(),
                    )));
                    *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    return r;
                }
                Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "request body too slow\n"),
            };
            let answer = if body.len() <= INLINE_BODY {
                hook.review(&body)
            } else {
                let hook2 = hook.clone();
                match tokio::task::spawn_blocking(move || hook2.review(&body)).await {
                    Ok(a) => a,
                    Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
                }
            };
            let us = t0.elapsed().as_micros() as u64;
            if answer.status == 200 {
                tracing::debug!(%peer, decision = %answer.decision, us, "admission");
            } else {
                tracing::warn!(%peer, decision = %answer.decision, us, "admission request refused");
            }
            let mut r = Response::new(Full::new(Bytes::from(answer.body)));
            *r.status_mut() =
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST);
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        (_, "/mutate" | "/healthz" | "/readyz") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Serves until the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    hook: Arc<Webhook>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(std::io::Error::other)?;
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let hook = hook.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(READ_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let svc = hyper::service::service_fn(move |req| {
                let hook = hook.clone();
                async move { Ok::<_, Infallible>(handle(req, peer, hook).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(TokioIo::new(tls), svc);
            let _ = tokio::time::timeout(MAX_CONNECTION_LIFE, conn).await;
        });
    }
}
