//! Publish: where signed attestations go. Each destination is an
//! [`Output`] in a file of its own (envelope file, Sigstore bundle, in-toto
//! link, log line, registry); `output.rs` runs them.
pub mod auth;
pub mod bundle;
mod bundle_file;
mod envelope_file;
mod link_file;
mod log_output;
pub mod output;
pub mod registry;
mod registry_output;
pub mod spool;
mod witness_spool;

pub use bundle_file::BundleFile;
pub use envelope_file::EnvelopeFile;
pub use link_file::{LinkFile, LinkFormat};
pub use log_output::LogLineOutput;
pub use output::{emit_all, Emitted, Output, OutputError, Stage};
pub use registry_output::RegistryOutput;
pub use witness_spool::WitnessSpool;

pub use auth::{AuthError, Credentials};
pub use bundle::{Bundle, BundleError, BUNDLE_MEDIA_TYPE};
pub use registry::{Attached, Deadline, Found, Registry, RegistryError, ResolvedImage};
pub use spool::{push_with_retry, Spool, SpoolEntry, SpoolError, WitnessEntry};

use std::io::Write;
use std::path::Path;

// Every file goes through one writer (see `crate::sink`); these names
// stay for the publishing code that has always used them.
pub use crate::sink::{write_atomic, write_atomic_with, write_file, Durability, WriteError};

/// Marker field of the log line: log pipelines select lines that have it.
pub const LOG_MARKER: &str = "provenantAttestation";
pub const LOG_MARKER_VERSION: &str = "v1";

/// A subject as shown in the log line, for humans scanning logs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoggedSubject {
    pub name: String,
    pub digest: String,
}

/// The one JSON line the sidecar prints on stdout:
/// `{"provenantAttestation":"v1","envelope":{DSSE},"subjects":[..],"file":".."}`.
/// The envelope is embedded unchanged, so `jq -c .envelope` gives exactly
/// the signed file; `provenant verify` also reads this line (or a whole log)
/// directly.
#[derive(Debug, serde::Serialize)]
pub struct LogLine<'a> {
    #[serde(rename = "provenantAttestation")]
    pub marker: &'static str,
    /// Borrowed: the envelope can be 25 MB.
    pub envelope: crate::sign::EnvelopeJson<'a>,
    pub subjects: Vec<LoggedSubject>,
    /// All subjects, when `subjects` shows only the first few.
    #[serde(rename = "subjectCount")]
    pub subject_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// The human summary in the log line lists at most this many subjects: the
/// envelope already holds them all, and a build with 100k products must not
/// double a 20 MB log line.
pub const LOGGED_SUBJECTS: usize = 20;

impl<'a> LogLine<'a> {
    /// `first`: the first subjects (at most [`LOGGED_SUBJECTS`] are shown)
    /// of `count`.
    pub fn new(
        signed: &'a crate::sign::Signed,
        count: usize,
        first: &[crate::provenance::ResourceDescriptor],
        file: Option<&Path>,
    ) -> LogLine<'a> {
        LogLine {
            marker: LOG_MARKER_VERSION,
            envelope: signed.json(),
            subject_count: count,
            subjects: first
                .iter()
                .take(LOGGED_SUBJECTS)
                .map(|s| LoggedSubject {
                    name: s.name.clone().unwrap_or_default(),
                    digest: s
                        .digest
                        .iter()
                        .next()
                        .map(|(k, v)| format!("{k}:{v}"))
                        .unwrap_or_default(),
                })
                .collect(),
            file: file.map(|f| f.display().to_string()),
        }
    }
}

/// The log line as three byte ranges, head + payload + tail, whose
/// concatenation is exactly `serde_json::to_vec(line)` plus a newline: the
/// 21 MB payload literal of a 100k-subject envelope is written from where
/// it already is instead of being copied into one buffer with the rest.
pub fn log_line_parts<'a>(
    line: &'a LogLine<'a>,
) -> std::io::Result<[std::borrow::Cow<'a, [u8]>; 3]> {
    use std::borrow::Cow;
    let json = |v: &dyn erased::Json| v.to_vec();
    let mut head = Vec::with_capacity(64);
    head.extend_from_slice(b"{\"provenantAttestation\":");
    head.extend_from_slice(&json(&line.marker)?);
    head.extend_from_slice(b",\"envelope\":{\"payload\":");
    let payload: Cow<'a, [u8]> = match &line.envelope.payload {
        crate::sign::B64::Literal(r) => Cow::Borrowed(r.get().as_bytes()),
        other => Cow::Owned(json(other)?),
    };
    let mut tail = Vec::with_capacity(1024);
    tail.extend_from_slice(b",\"payloadType\":");
    tail.extend_from_slice(&json(&line.envelope.payload_type)?);
    tail.extend_from_slice(b",\"signatures\":");
    tail.extend_from_slice(&json(&line.envelope.signatures)?);
    tail.extend_from_slice(b"},\"subjects\":");
    tail.extend_from_slice(&json(&line.subjects)?);
    tail.extend_from_slice(b",\"subjectCount\":");
    tail.extend_from_slice(&json(&line.subject_count)?);
    if let Some(f) = &line.file {
        tail.extend_from_slice(b",\"file\":");
        tail.extend_from_slice(&json(f)?);
    }
    tail.extend_from_slice(b"}\n");
    Ok([Cow::Owned(head), payload, Cow::Owned(tail)])
}

mod erased {
    /// `serde_json::to_vec` behind a trait object, for the parts above.
    pub trait Json {
        fn to_vec(&self) -> std::io::Result<Vec<u8>>;
    }
    impl<T: serde::Serialize + ?Sized> Json for T {
        fn to_vec(&self) -> std::io::Result<Vec<u8>> {
            serde_json::to_vec(self).map_err(std::io::Error::other)
        }
    }
}

/// Writes the log line to stdout in one `writev(2)` (a pipe or file gets
/// the whole line from one system call, so a reader never sees it
/// interleaved with another write of this process, and a sidecar killed
/// after the call returned never leaves half a line). Only a signal
/// interrupting a write to a full pipe, or a full disk, can split it; the
/// rest is then written by further calls, and a reader that still finds a
/// truncated line skips it with a warning (`verify`). The stdout lock is
/// held so nothing else this process prints can come between.
pub fn emit_log_line(line: &LogLine) -> std::io::Result<()> {
    let parts = log_line_parts(line)?;
    let mut out = std::io::stdout().lock();
    // Whatever Rust's stdout buffer holds goes first.
    out.flush()?;
    write_all_vectored(libc::STDOUT_FILENO, &parts)
}

/// `writev` until every byte of `parts` is written.
fn write_all_vectored(fd: i32, parts: &[std::borrow::Cow<'_, [u8]>]) -> std::io::Result<()> {
    let mut bufs: Vec<&[u8]> = parts
        .iter()
        .map(|p| &p[..])
        .filter(|p| !p.is_empty())
        .collect();
    while !bufs.is_empty() {
        let iov: Vec<libc::iovec> = bufs
            .iter()
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: every iovec points into a live slice of `parts` for the
        // duration of the call; the count fits (at most three entries).
        let n = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as libc::c_int) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut n = n as usize;
        while n > 0 && !bufs.is_empty() {
            if n >= bufs[0].len() {
                n -= bufs[0].len();
                bufs.remove(0);
            } else {
                bufs[0] = &bufs[0][n..];
                n = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl crate::sign::Signer for Echo {
        fn key_id(&self) -> &str {
            "k"
        }
        fn sign(&self, m: &[u8]) -> Result<Vec<u8>, crate::sign::KeyError> {
            Ok(m[..8].to_vec())
        }
        fn verifier_pem(&self) -> Option<String> {
            None
        }
    }

    /// The three parts are byte for byte the serde serialization of the
    /// line, which `jq` and `verify` read.
    #[test]
    fn log_line_parts_are_the_serialized_line() {
        let signed = crate::sign::Signed::sign(
            crate::provenance::IN_TOTO_PAYLOAD_TYPE,
            &serde_json::json!({"x": "y\n\"z"}),
            0,
            &Echo,
        )
        .unwrap();
        let subject = crate::provenance::ResourceDescriptor::sha256("a\nb", &[1; 32]);
        for file in [None, Some(Path::new("/state/p \"q\".jsonl"))] {
            let line = LogLine::new(&signed, 1, std::slice::from_ref(&subject), file);
            let want = [serde_json::to_vec(&line).unwrap(), b"\n".to_vec()].concat();
            let got: Vec<u8> = log_line_parts(&line).unwrap().concat();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }

    #[test]
    fn vectored_writes_complete() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let big = vec![b'x'; 300_000];
        let parts = [
            std::borrow::Cow::Borrowed(&b"head"[..]),
            std::borrow::Cow::Borrowed(&big[..]),
            std::borrow::Cow::Borrowed(&b"tail\n"[..]),
        ];
        let reader = std::thread::spawn(move || {
            let mut f = std::fs::File::from(r);
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut v).unwrap();
            v
        });
        use std::os::fd::AsRawFd;
        write_all_vectored(w.as_raw_fd(), &parts).unwrap();
        drop(w);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), 4 + 300_000 + 5);
        assert!(got.starts_with(b"headxx") && got.ends_with(b"xtail\n"));
    }
}
