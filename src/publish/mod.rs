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

pub use bundle_file::BundleFile;
pub use envelope_file::EnvelopeFile;
pub use link_file::LinkFile;
pub use log_output::LogLineOutput;
pub use output::{emit_all, Emitted, Output, OutputError, Stage};
pub use registry_output::RegistryOutput;

pub use auth::{AuthError, Credentials};
pub use bundle::{Bundle, BundleError, BUNDLE_MEDIA_TYPE};
pub use registry::{Attached, Deadline, Found, Registry, RegistryError};
pub use spool::{push_with_retry, Spool, SpoolEntry, SpoolError};

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

/// Writes the log line to stdout under the stdout lock, so nothing else
/// this process prints can interleave with it, and flushes. It is
/// serialized straight into the pipe: a pipe write larger than PIPE_BUF is
/// not atomic anyway, and a 25 MB string would only add to peak memory.
pub fn emit_log_line(line: &LogLine) -> std::io::Result<()> {
    let out = std::io::stdout().lock();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
    serde_json::to_writer(&mut w, line).map_err(std::io::Error::other)?;
    w.write_all(b"\n")?;
    w.flush()
}

/// The envelope in `bytes`: a bare envelope, a log line, or a whole log in
/// which the last marked line counts.
pub fn extract_envelope(bytes: &[u8]) -> Option<Vec<u8>> {
    let marker = format!("\"{LOG_MARKER}\"");
    let marked = bytes
        .split(|b| *b == b'\n')
        .rev()
        .find(|l| l.windows(marker.len()).any(|w| w == marker.as_bytes()))?;
    // Pod log lines may carry a runtime prefix (`2026-... stdout F {...}`).
    let start = marked.iter().position(|b| *b == b'{')?;
    // Only the envelope matters (the signature check is what makes it
    // trustworthy); the line's other fields are for people reading logs.
    let line: serde_json::Value = serde_json::from_slice(&marked[start..]).ok()?;
    serde_json::to_vec(line.get("envelope")?).ok()
}
