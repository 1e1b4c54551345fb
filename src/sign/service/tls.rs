//! The service's own TLS (rustls, TLS 1.2 and 1.3 with the crate's safe
//! defaults): a certificate and key from files, re-read when they change
//! so that cert-manager can rotate them under a running signer, and an
//! optional client CA that makes every client present a certificate.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::files::{read_small, Stamp};
use super::ServiceError;

/// `--tls-cert`, `--tls-key`, `--client-ca`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// PEM CA certificates client certificates must chain to; with it,
    /// a certificate from elsewhere fails the handshake, and requests to
    /// sign (or check identity) without one are refused.
    pub client_ca: Option<PathBuf>,
}

/// How often the files are looked at. A stat of three files a second is
/// nothing; kubelet takes up to a minute to update a Secret volume anyway.
pub(super) const RELOAD_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Reloader {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    stamps: Mutex<Vec<Option<Stamp>>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn file_error(flag: &'static str, path: &Path, reason: impl Into<String>) -> ServiceError {
    ServiceError::File {
        flag,
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Certificates in a PEM file (at least one).
pub(super) fn read_certs(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ServiceError> {
    let pem = read_small(path).map_err(|r| file_error(flag, path, r))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(flag, path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(flag, path, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

fn stamps(f: &TlsFiles) -> Vec<Option<Stamp>> {
    [Some(&f.cert), Some(&f.key), f.client_ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| Stamp::of(p))
        .collect()
}

/// The validity end of a certificate, if it parses.
fn not_after(cert: &CertificateDer<'_>) -> Option<time::OffsetDateTime> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(c.validity().not_after.to_datetime())
}

/// Reads the files and builds a server configuration from them.
fn build(f: &TlsFiles) -> Result<ServerConfig, ServiceError> {
    let provider = provider();
    let certs = read_certs("--tls-cert", &f.cert)?;
    let key_pem = zeroize::Zeroizing::new(
        read_small(&f.key).map_err(|r| file_error("--tls-key", &f.key, r))?,
    );
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        file_error(
            "--tls-key",
            &f.key,
            format!("no PEM private key (PKCS#8, RSA or EC): {e}"),
        )
    })?;
    let mismatch = |e: rustls::Error| match e {
        rustls::Error::InconsistentKeys(_) => file_error(
            "--tls-key",
            &f.key,
            "does not belong to the --tls-cert certificate",
        ),
        e => file_error("--tls-key", &f.key, e.to_string()),
    };
    let certified =
        rustls::sign::CertifiedKey::from_der(certs.clone(), key, &provider).map_err(mismatch)?;
    // from_der lets a key whose public half it cannot compute pass; we
    // want to know.
    certified.keys_match().map_err(mismatch)?;
    if let Some(end) = not_after(&certs[0]) {
        if end < time::OffsetDateTime::now_utc() {
            tracing::warn!(cert = %f.cert.display(), not_after = %end, "the TLS certificate has expired: clients will refuse it");
        } else {
            tracing::info!(cert = %f.cert.display(), not_after = %end, "TLS certificate loaded");
        }
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ServiceError::Config(format!("TLS: {e}")))?;
    let builder = match &f.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs("--client-ca", ca)? {
                roots
                    .add(c)
                    .map_err(|e| file_error("--client-ca", ca, e.to_string()))?;
            }
            // A certificate that does not chain to the CA fails the
            // handshake; no certificate at all is let through to HTTP, where
            // the signing endpoints refuse it (auth.rs) and `/healthz` and
            // `/v1/publickey` answer, so that kubelet's HTTPS probes work.
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| file_error("--client-ca", ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
        Arc::new(certified),
    )));
    // Only HTTP/1.1 is served: a client that insists on h2 fails the
    // handshake instead of getting garbage.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

impl Reloader {
    /// Loads the files now: a wrong path, a key that does not match the
    /// certificate or an unreadable CA fails the start.
    pub(super) fn load(files: TlsFiles) -> Result<Reloader, ServiceError> {
        let st = stamps(&files);
        let cfg = build(&files)?;
        Ok(Reloader {
            files,
            current: RwLock::new(Arc::new(cfg)),
            stamps: Mutex::new(st),
        })
    }

    /// The configuration new connections get.
    pub(super) fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Rebuilds the configuration if a file changed. A half-written
    /// rotation (the certificate new, the key still old) does not build;
    /// the old configuration stays and the next look tries again.
    pub(super) fn reload_if_changed(&self) {
        let now = stamps(&self.files);
        {
            let mut seen = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return;
            }
            *seen = now;
        }
        match build(&self.files) {
            Ok(cfg) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
                tracing::info!(cert = %self.files.cert.display(), "TLS files changed: new connections get the new certificate");
            }
            Err(e) => {
                // The rest of a rotation (the key written a moment after
                // the certificate) changes a stamp again and is retried.
                tracing::warn!(error = %e, "TLS files changed but do not load; still serving the previous certificate");
            }
        }
    }
}
