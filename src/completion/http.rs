//! `http:ADDR`: a small endpoint for cooperative builders and for probes.
//!
//! * `POST /complete` with an optional JSON body `{"exitCode": N}`: the build
//!   finished. 202 the first time, 409 afterwards (the outcome is already
//!   fixed; a second caller cannot change it), 400 for a body that is not
//!   that JSON.
//! * `GET /healthz`: 200 while the process runs (liveness).
//! * `GET /readyz`: 200 once the workspace watch is in place, 503 before
//!   (readiness; a builder can wait for it before writing anything).
//!
//! `POST /complete` is accepted only from loopback addresses: containers of
//! a pod share the network namespace, so the builder reaches it over
//! 127.0.0.1 while nothing outside the pod can end the build early, even
//! when the endpoint listens on the pod IP for the kubelet's probes.
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::sync::{mpsc, Mutex};

use super::{Completed, CompletionError, Report};

const MAX_BODY: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CompleteBody {
    exit_code: Option<i32>,
}

struct State {
    ready: Arc<AtomicBool>,
    done: Mutex<Option<mpsc::Sender<Completed>>>,
}

pub(super) async fn arm(
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
) -> Result<(SocketAddr, impl Future<Output = Report>), CompletionError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| CompletionError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| CompletionError::Listen { addr, source })?;
    let (tx, mut rx) = mpsc::channel::<Completed>(1);
    let state = Arc::new(State {
        ready,
        done: Mutex::new(Some(tx)),
    });
    // The server outlives the trigger: probes keep working while we finalize.
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "completion endpoint: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(req, peer, &state).await) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    tracing::debug!(error = %e, %peer, "completion endpoint: connection error");
                }
            });
        }
    });
    Ok((bound, async move {
        match rx.recv().await {
            Some(done) => Ok(done),
            None => Err(CompletionError::AllFailed(
                "completion endpoint stopped".into(),
            )),
        }
    }))
}

async fn handle(req: Request<Incoming>, peer: SocketAddr, state: &State) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") => {
            if state.ready.load(Ordering::SeqCst) {
                reply(StatusCode::OK, "ready")
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: workspace watch not established yet",
                )
            }
        }
        (&Method::POST, "/complete") => {
            if !peer.ip().is_loopback() && !peer.ip().to_canonical().is_loopback() {
                tracing::warn!(%peer, "refused POST /complete from outside the pod");
                return reply(
                    StatusCode::FORBIDDEN,
                    "only callers inside the pod (loopback) may complete the build",
                );
            }
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body too large or unreadable",
                    )
                }
            };
            let exit_code = if body.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                match serde_json::from_slice::<CompleteBody>(&body) {
                    Ok(b) => b.exit_code,
                    Err(e) => {
                        return reply(
                            StatusCode::BAD_REQUEST,
                            &format!("expected an empty body or {{\"exitCode\": N}}: {e}"),
                        )
                    }
                }
            };
            let Some(tx) = state.done.lock().await.take() else {
                return reply(StatusCode::CONFLICT, "already completed");
            };
            let _ = tx
                .send(Completed::now(
                    "http",
                    crate::provenance::ExitStatus::claimed_opt(exit_code, "http"),
                    format!("POST /complete from {peer}"),
                ))
                .await;
            reply(StatusCode::ACCEPTED, "accepted")
        }
        (_, "/healthz" | "/readyz" | "/complete") => {
            reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => reply(StatusCode::NOT_FOUND, "not found"),
    }
}

fn reply(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
