//! The audit log: one JSON line on stdout per signature, per refused
//! request and per identity check, apart from the diagnostic log (stderr).
//! A line says who called (the verified identity, never a claim), from
//! where, what was asked (the statement's sha256, predicate type, builder
//! id and every subject's name and digest) and, for a refusal, why.
//!
//! Everything a caller wrote reaches the line only as a JSON string, so a
//! subject name with a newline cannot forge a second line.
use std::io::Write;
use std::net::SocketAddr;

use serde::Serialize;

use super::auth::{Caller, CertIdentity};
use super::statement::Seen;

/// What happened.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum Event {
    Signed,
    Refused,
    Identity,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Record<'a> {
    /// Marks the line as an audit record and its format.
    pub audit: &'static str,
    pub time: String,
    pub event: Event,
    pub peer: SocketAddr,
    pub path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<&'a Caller>,
    /// The client certificate, when one was presented (mTLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<&'a CertIdentity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(flatten)]
    pub seen: &'a Seen,
    pub key_id: &'a str,
}

pub(super) const FORMAT: &str = "provenant-signer/v1";

/// Writes one record as one line. A line is written with a single
/// `write_all` on the locked stdout, so lines of concurrent requests never
/// interleave.
pub(super) fn write(r: &Record<'_>) {
    let mut line = match serde_json::to_vec(r) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize an audit record");
            return;
        }
    };
    line.push(b'\n');
    let out = std::io::stdout();
    let mut out = out.lock();
    if let Err(e) = out.write_all(&line).and_then(|_| out.flush()) {
        tracing::error!(error = %e, "cannot write the audit log (stdout)");
    }
}

pub(super) fn now() -> String {
    crate::provenance::rfc3339(time::OffsetDateTime::now_utc())
}
