//! `provenant signer`: the remote signing service (see `remote.rs` for the
//! protocol). Holds the key; signs only in-toto statements; logs each one.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::remote::{parse_pae, PublicKeyResponse, SignRequest, SignResponse};
use super::{LocalSigner, Signer};
use crate::provenance::{Statement, IN_TOTO_PAYLOAD_TYPE};

const MAX_BODY: usize = 64 << 20;

struct State {
    signer: LocalSigner,
    token: Option<String>,
}

/// Serves until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    signer: LocalSigner,
    token: Option<String>,
) -> std::io::Result<()> {
    let state = Arc::new(State { signer, token });
    loop {
        let (stream, peer) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(req, peer, &state).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
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

/// Constant-time comparison: the token must not leak through timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle(req: Request<Incoming>, peer: SocketAddr, state: &State) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => json(StatusCode::OK, &serde_json::json!({"ok": true})),
        (&Method::GET, "/v1/publickey") => json(
            StatusCode::OK,
            &PublicKeyResponse {
                key_id: state.signer.key_id().to_string(),
                public_key: state.signer.public_key_pem().to_string(),
            },
        ),
        (&Method::POST, "/v1/sign") => {
            if let Some(token) = &state.token {
                let given = req
                    .headers()
                    .get(hyper::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or("");
                if !same(given.as_bytes(), token.as_bytes()) {
                    tracing::warn!(%peer, "refused: bad or missing bearer token");
                    return error(StatusCode::UNAUTHORIZED, "bad or missing bearer token");
                }
            }
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
            };
            let Ok(r) = serde_json::from_slice::<SignRequest>(&body) else {
                return error(StatusCode::BAD_REQUEST, "expected {\"pae\": BASE64}");
            };
            let Ok(pae) = base64::engine::general_purpose::STANDARD.decode(r.pae.as_bytes()) else {
                return error(StatusCode::BAD_REQUEST, "pae is not base64");
            };
            let Some((ptype, payload)) = parse_pae(&pae) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "pae is not a DSSE v1 pre-authentication encoding",
                );
            };
            if ptype != IN_TOTO_PAYLOAD_TYPE {
                return error(
                    StatusCode::FORBIDDEN,
                    &format!("refusing to sign payload type {ptype:?}"),
                );
            }
            let st = match Statement::parse(&payload) {
                Ok(st) => st,
                Err(e) => {
                    return error(
                        StatusCode::FORBIDDEN,
                        &format!("refusing to sign: not an in-toto statement: {e}"),
                    )
                }
            };
            let sig = match state.signer.sign(&pae) {
                Ok(s) => s,
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            };
            tracing::info!(
                %peer,
                predicate_type = %st.predicate_type,
                subjects = st.subject.len(),
                first_subject = %st.subject.first().and_then(|s| s.name.clone()).unwrap_or_default(),
                "signed"
            );
            json(
                StatusCode::OK,
                &SignResponse {
                    keyid: state.signer.key_id().to_string(),
                    sig: base64::engine::general_purpose::STANDARD.encode(sig),
                },
            )
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}
