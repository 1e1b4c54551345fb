//! The signer's CA certificates, handed to every instrumented pod.
//!
//! The webhook reads them from a file (the signer CA Secret's `ca.crt`,
//! mounted into the webhook) and puts them, re-encoded from the parsed
//! certificates, into an annotation of each pod it instruments; a
//! projected `downwardAPI` item turns that annotation into the sidecar's
//! `--signer-ca` file. So no build namespace needs a copy of the CA, and a
//! new CA reaches the next pod without anyone copying it around.
//!
//! The file is looked at again on each admission (one `stat`); a new
//! version that does not parse is logged and the previous one kept, as
//! for the webhook's own certificate.
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::WebhookError;

/// A CA bundle is a few KiB; pod annotations may hold 256 KiB in all.
const MAX_BYTES: u64 = 64 << 10;
/// Certificates at most in the bundle.
const MAX_CERTS: usize = 16;

type Stamp = (u64, u64, Option<SystemTime>);

#[derive(Debug)]
pub struct SignerCa {
    path: PathBuf,
    /// The version of the file last looked at, and the PEM in use.
    state: RwLock<(Option<Stamp>, Arc<str>)>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.modified().ok()))
}

/// The certificates of `path`, as PEM made from their DER: nothing else
/// in the file (comments, keys, garbage) reaches a pod.
fn read_pem(path: &Path) -> Result<String, WebhookError> {
    use base64::Engine;
    use std::io::Read;
    let bad = |why: String| {
        WebhookError::Config(format!("signing.signer.caFile {}: {why}", path.display()))
    };
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_BYTES + 1).read_to_end(&mut buf))
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    if buf.len() as u64 > MAX_BYTES {
        return Err(bad(format!("larger than {MAX_BYTES} bytes")));
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&buf)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    if certs.len() > MAX_CERTS {
        return Err(bad(format!("more than {MAX_CERTS} certificates")));
    }
    let mut pem = String::new();
    for c in &certs {
        if x509_parser::parse_x509_certificate(c.as_ref()).is_err() {
            return Err(bad("a PEM block that is not an X.509 certificate".into()));
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(c.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            // Base64 output is ASCII.
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    Ok(pem)
}

impl SignerCa {
    pub fn load(path: &Path) -> Result<SignerCa, WebhookError> {
        let seen = stamp(path);
        let pem = read_pem(path)?;
        Ok(SignerCa {
            path: path.into(),
            state: RwLock::new((seen, pem.into())),
        })
    }

    /// The certificates as PEM, read again first if the file changed.
    pub fn current(&self) -> Arc<str> {
        let now = stamp(&self.path);
        {
            let st = self.state.read().unwrap_or_else(|e| e.into_inner());
            // Gone or mid-swap (kubelet replaces a symlink): keep what works.
            if now.is_none() || st.0 == now {
                return st.1.clone();
            }
        }
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        if st.0 != now {
            st.0 = now;
            match read_pem(&self.path) {
                Ok(pem) => {
                    if *st.1 != *pem {
                        tracing::info!(file = %self.path.display(), "signer CA reloaded");
                    }
                    st.1 = pem.into();
                }
                Err(e) => tracing::warn!(
                    "{e}; keeping the previous signer CA until the file changes again"
                ),
            }
        }
        st.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem(name: &str) -> String {
        rcgen::generate_simple_self_signed(vec![name.into()])
            .unwrap()
            .cert
            .pem()
    }

    #[test]
    fn only_certificates_reach_pods_and_a_bad_update_keeps_the_last_good() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("ca.crt");
        let first = ca_pem("a");
        std::fs::write(&f, format!("# a comment\n{first}")).unwrap();
        let ca = SignerCa::load(&f).unwrap();
        let lf = |s: String| s.replace("\r\n", "\n");
        assert_eq!(&*ca.current(), lf(first.clone()));

        std::fs::write(
            &f,
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert_eq!(&*ca.current(), lf(first.clone()));
        let second = ca_pem("b");
        std::fs::write(&f, format!("{second}{first}")).unwrap();
        assert_eq!(&*ca.current(), lf(format!("{second}{first}")));
        std::fs::remove_file(&f).unwrap();
        assert_eq!(&*ca.current(), lf(format!("{second}{first}")));

        for (text, why) in [
            ("", "no certificate"),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "no certificate",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "not an X.509",
            ),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = SignerCa::load(&f).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("caFile"), "{e}");
        }
        std::fs::write(&f, vec![b'x'; (MAX_BYTES + 1) as usize]).unwrap();
        assert!(SignerCa::load(&f)
            .unwrap_err()
            .to_string()
            .contains("larger"));
    }
}
