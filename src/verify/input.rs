//! The one reader of what `verify`, `inspect` and the gate accept: which
//! form the bytes are in is decided by explicit keys, never by searching
//! the text, so no two readers (provenant and a DSSE library) can take
//! different envelopes from the same bytes.
//!
//! * **One JSON document** (the whole input, surrounding whitespace
//!   aside): its top-level keys decide.
//!   - `payload` / `payloadType` / `signatures`: a bare DSSE envelope;
//!   - `dsseEnvelope` / `mediaType` / `verificationMaterial`: a Sigstore
//!     bundle;
//!   - `provenantAttestation`: a provenant log line;
//!   - `log`: one docker json-file log record (read as a log);
//!   - keys of two of these forms: refused as ambiguous;
//!   - none: not an attestation.
//! * **Anything else is a log**, read line by line. Runtime framing is
//!   removed first: CRI log files (`TIME STREAM P|F TEXT`, the `P` pieces
//!   of a long line joined up to its `F`), docker json-file records (joined
//!   up to the piece ending in a newline), timestamp prefixes (`kubectl
//!   logs --timestamps`, `podman logs -t`) and `kubectl logs --prefix`
//!   tags. A line that then carries the `"provenantAttestation"` key is an
//!   attestation line; every other line is the builder's or the runtime's
//!   and is ignored. An attestation line that is truncated (a sidecar
//!   killed mid-write) or not well-formed is skipped with a warning naming
//!   its line number; its content is never echoed.
use serde::Deserialize;

use crate::publish::{Bundle, BundleError, LOG_MARKER, LOG_MARKER_VERSION};
use crate::sign::dsse::{json_error, Present};
use crate::sign::{Envelope, EnvelopeError};

/// Largest input read (a sidecar log of 100k subjects is ~25 MB a line).
pub const MAX_INPUT: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Envelope,
    Bundle,
    LogLine,
}

impl Form {
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Envelope => "DSSE envelope",
            Form::Bundle => "Sigstore bundle",
            Form::LogLine => "provenant log line",
        }
    }
}

/// One attestation found in the input.
#[derive(Debug, Clone)]
pub struct Found {
    /// 1-based line it starts on, when the input was read as a log.
    pub line: Option<usize>,
    pub form: Form,
    pub envelope: Envelope,
    /// A bundle's verification material (key hint or certificate, log
    /// entries, timestamps); `None` for a bare envelope or a log line.
    pub material: Option<crate::sign::VerificationMaterial>,
}

#[derive(Debug, Default)]
pub struct Input {
    pub found: Vec<Found>,
    /// Attestation lines that were skipped: (line, reason).
    pub skipped: Vec<(usize, String)>,
    /// Read as a log (several lines, runtime framing) rather than as one
    /// document.
    pub log: bool,
    pub lines: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("not a provenant log line: {0}")]
    LogLine(String),
    #[error("ambiguous input: it has the keys {0:?} and {1:?} of two different forms (DSSE envelope, Sigstore bundle, provenant log line, docker log record); refusing to guess which was meant")]
    Ambiguous(&'static str, &'static str),
    #[error("not an attestation: a JSON object with none of the keys payload/payloadType/signatures (DSSE envelope), dsseEnvelope/mediaType (Sigstore bundle), provenantAttestation (provenant log line)")]
    NoForm,
    #[error(
        "not a DSSE envelope, Sigstore bundle or provenant log: {0} (and no attestation line)"
    )]
    NotJson(String),
    #[error("no attestation found in {lines} line(s){}", if *.skipped > 0 { format!(" ({} attestation line(s) skipped, see the warnings)", .skipped) } else { String::new() })]
    NotFound { lines: usize, skipped: usize },
}

/// The top-level keys that decide the form.
#[derive(Deserialize, Default)]
struct Keys {
    #[serde(default)]
    payload: Present,
    #[serde(default, rename = "payloadType")]
    payload_type: Present,
    #[serde(default)]
    signatures: Present,
    #[serde(default, rename = "dsseEnvelope")]
    dsse_envelope: Present,
    #[serde(default, rename = "mediaType")]
    media_type: Present,
    #[serde(default, rename = "verificationMaterial")]
    verification_material: Present,
    #[serde(default, rename = "provenantAttestation")]
    marker: Present,
    #[serde(default)]
    log: Present,
}

enum Kind {
    Envelope,
    Bundle,
    LogLine,
    Docker,
}

fn kind_of(k: &Keys) -> Result<Kind, InputError> {
    let mut kinds: Vec<(Kind, &'static str)> = Vec::new();
    let first = |pairs: &[(Present, &'static str)]| pairs.iter().find(|p| p.0 .0).map(|p| p.1);
    if let Some(key) = first(&[
        (k.payload, "payload"),
        (k.payload_type, "payloadType"),
        (k.signatures, "signatures"),
    ]) {
        kinds.push((Kind::Envelope, key));
    }
    if let Some(key) = first(&[
        (k.dsse_envelope, "dsseEnvelope"),
        (k.media_type, "mediaType"),
        (k.verification_material, "verificationMaterial"),
    ]) {
        kinds.push((Kind::Bundle, key));
    }
    if k.marker.0 {
        kinds.push((Kind::LogLine, LOG_MARKER));
    }
    if k.log.0 {
        kinds.push((Kind::Docker, "log"));
    }
    match kinds.len() {
        0 => Err(InputError::NoForm),
        1 => Ok(kinds.pop().map(|k| k.0).unwrap_or(Kind::Envelope)),
        _ => Err(InputError::Ambiguous(kinds[0].1, kinds[1].1)),
    }
}

/// A provenant log line (one JSON object): its envelope, parsed as
/// strictly as a bare one.
pub fn parse_log_line(bytes: &[u8]) -> Result<Envelope, InputError> {
    #[derive(Deserialize)]
    struct Line<'a> {
        #[serde(rename = "provenantAttestation")]
        marker: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        envelope: &'a serde_json::value::RawValue,
    }
    let keys: Keys =
        serde_json::from_slice(bytes).map_err(|e| InputError::LogLine(json_error(&e)))?;
    if !matches!(kind_of(&keys)?, Kind::LogLine) {
        return Err(InputError::LogLine("no provenantAttestation key".into()));
    }
    let line: Line =
        serde_json::from_slice(bytes).map_err(|e| InputError::LogLine(json_error(&e)))?;
    if line.marker != LOG_MARKER_VERSION {
        return Err(InputError::LogLine(format!(
            "marker version {:?} is not {LOG_MARKER_VERSION:?}",
            line.marker.chars().take(16).collect::<String>()
        )));
    }
    Ok(Envelope::parse(line.envelope.get().as_bytes())?)
}

/// Everything in `bytes` (see the module documentation).
pub fn read(bytes: &[u8]) -> Result<Input, InputError> {
    let t = bytes.trim_ascii();
    let mut single_doc_error = None;
    if t.starts_with(b"{") {
        match serde_json::from_slice::<Keys>(t) {
            Ok(keys) => {
                let one = |form, envelope, material| Input {
                    found: vec![Found {
                        line: None,
                        form,
                        envelope,
                        material,
                    }],
                    skipped: Vec::new(),
                    log: false,
                    lines: 1,
                };
                match kind_of(&keys)? {
                    Kind::Envelope => return Ok(one(Form::Envelope, Envelope::parse(t)?, None)),
                    Kind::Bundle => {
                        let b = Bundle::parse(t)?;
                        return Ok(one(Form::Bundle, b.envelope(), Some(b.material()?)));
                    }
                    Kind::LogLine => return Ok(one(Form::LogLine, parse_log_line(t)?, None)),
                    Kind::Docker => {}
                }
            }
            Err(e) => single_doc_error = Some(json_error(&e)),
        }
    }
    let input = read_log(bytes);
    if input.found.is_empty() {
        if input.skipped.is_empty() && input.lines <= 1 {
            return Err(InputError::NotJson(
                single_doc_error.unwrap_or_else(|| "not a JSON object".into()),
            ));
        }
        return Err(InputError::NotFound {
            lines: input.lines,
            skipped: input.skipped.len(),
        });
    }
    Ok(input)
}

/// A docker json-file record.
#[derive(Deserialize)]
struct DockerRecord {
    log: String,
    #[serde(default)]
    stream: String,
}

/// `2026-11-25T10:00:05.123456789Z`-like: a date, a `T`, no spaces.
fn is_timestamp(tok: &[u8]) -> bool {
    tok.len() >= 11
        && tok[..4].iter().all(u8::is_ascii_digit)
        && tok[4] == b'-'
        && tok[10] == b'T'
        && tok.iter().all(|b| !b.is_ascii_whitespace())
}

/// Splits `TOKEN SP REST`.
fn token(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = line.iter().position(|b| *b == b' ')?;
    Some((&line[..sp], &line[sp + 1..]))
}

/// A CRI log line: `TIME STREAM TAGS TEXT`, TAGS `P` (partial) or `F`
/// (full), possibly followed by `:`-separated further tags.
fn cri(line: &[u8]) -> Option<(&[u8], bool, &[u8])> {
    let (ts, rest) = token(line)?;
    if !is_timestamp(ts) {
        return None;
    }
    let (stream, rest) = token(rest)?;
    if stream != b"stdout" && stream != b"stderr" {
        return None;
    }
    // An empty line has no text after the tags (and maybe no space).
    let (tags, text) = token(rest).unwrap_or((rest, b""));
    let partial = match tags.split(|b| *b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return None,
    };
    Some((stream, partial, text))
}

/// The line with `kubectl logs --prefix` and timestamp prefixes removed.
fn strip_prefixes(mut line: &[u8]) -> &[u8] {
    if line.starts_with(b"[") {
        if let Some(end) = line.windows(2).position(|w| w == b"] ") {
            line = &line[end + 2..];
        }
    }
    if let Some((ts, rest)) = token(line) {
        if is_timestamp(ts) {
            line = rest;
        }
    }
    line
}

struct Pending {
    start: usize,
    text: Vec<u8>,
}

/// One runtime log record: which stream it continues, its text, and
/// whether the line ends with it.
struct Record<'a> {
    key: (u8, Vec<u8>),
    piece: std::borrow::Cow<'a, [u8]>,
    complete: bool,
}

fn read_log(bytes: &[u8]) -> Input {
    let marker = format!("\"{LOG_MARKER}\"");
    let mut input = Input {
        log: true,
        ..Default::default()
    };
    // Partial lines per (source, stream): CRI `P` pieces, docker pieces.
    let mut pending: Vec<((u8, Vec<u8>), Pending)> = Vec::new();
    let marker_bytes = marker.as_bytes();
    // Only lines that carry the marker are kept (copied): a pod log is
    // mostly the builder's output.
    let mut lines: Vec<(usize, Vec<u8>)> = Vec::new();
    let keep = |lines: &mut Vec<(usize, Vec<u8>)>, start: usize, text: std::borrow::Cow<[u8]>| {
        if contains(&text, marker_bytes) {
            lines.push((start, text.into_owned()));
        }
    };
    let mut n = 0;
    for raw in bytes.split(|b| *b == b'\n') {
        n += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            continue;
        }
        let mut record: Option<Record> = None;
        if raw.starts_with(b"{\"log\":") || raw.starts_with(b"{\"log\" :") {
            if let Ok(rec) = serde_json::from_slice::<DockerRecord>(raw) {
                let complete = rec.log.ends_with('\n');
                let text = rec.log.trim_end_matches('\n').as_bytes().to_vec();
                record = Some(Record {
                    key: (b'd', rec.stream.into_bytes()),
                    piece: text.into(),
                    complete,
                });
            }
        }
        if record.is_none() {
            if let Some((stream, partial, text)) = cri(raw) {
                record = Some(Record {
                    key: (b'c', stream.to_vec()),
                    piece: text.into(),
                    complete: !partial,
                });
            }
        }
        let Some(Record {
            key,
            piece,
            complete,
        }) = record
        else {
            keep(&mut lines, n, strip_prefixes(raw).into());
            continue;
        };
        let i = pending.iter().position(|(k, _)| *k == key);
        match (i, complete) {
            (Some(i), true) => {
                let (_, mut p) = pending.swap_remove(i);
                p.text.extend_from_slice(&piece);
                keep(&mut lines, p.start, p.text.into());
            }
            (None, true) => keep(&mut lines, n, piece),
            (Some(i), false) => pending[i].1.text.extend_from_slice(&piece),
            (None, false) => pending.push((
                key,
                Pending {
                    start: n,
                    text: piece.into_owned(),
                },
            )),
        }
    }
    // The last segment after a final newline is not a line.
    input.lines = if bytes.ends_with(b"\n") { n - 1 } else { n };
    for (_, p) in pending {
        if contains(&p.text, marker.as_bytes()) {
            input.skipped.push((
                p.start,
                "attestation line never completed (partial pieces without the final one)".into(),
            ));
        }
    }
    for (line, text) in lines {
        let t = text.trim_ascii();
        if !t.starts_with(b"{") {
            input.skipped.push((
                line,
                "the attestation marker is not at the start of a JSON object".into(),
            ));
            continue;
        }
        match parse_log_line(t) {
            Ok(envelope) => input.found.push(Found {
                line: Some(line),
                form: Form::LogLine,
                envelope,
                material: None,
            }),
            Err(e) => input.skipped.push((line, e.to_string())),
        }
    }
    input.found.sort_by_key(|f| f.line);
    input.skipped.sort_by_key(|s| s.0);
    input
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &str = r#"{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"keyid":"k","sig":"AA=="}]}"#;

    fn line() -> String {
        format!(r#"{{"provenantAttestation":"v1","envelope":{ENV}}}"#)
    }

    #[test]
    fn forms_by_keys() {
        assert_eq!(read(ENV.as_bytes()).unwrap().found[0].form, Form::Envelope);
        assert_eq!(
            read(line().as_bytes()).unwrap().found[0].form,
            Form::LogLine
        );
        assert!(matches!(
            read(br#"{"payload":"e30=","provenantAttestation":"v1"}"#),
            Err(InputError::Ambiguous("payload", "provenantAttestation"))
        ));
        assert!(matches!(read(br#"{"a":1}"#), Err(InputError::NoForm)));
        // A key spelled with an escape is the same key.
        assert!(matches!(
            read(br#"{"payload":"e30=","provenantAttestatio\u006e":"v1"}"#),
            Err(InputError::Ambiguous(..))
        ));
    }

    #[test]
    fn log_framing() {
        let l = line();
        let (a, b) = l.split_at(40);
        let log = format!(
            "2026-11-25T10:00:00Z stdout P {a}\n2026-11-25T10:00:00Z stderr F\n2026-11-25T10:00:00Z stdout F {b}\n"
        );
        let r = read(log.as_bytes()).unwrap();
        assert_eq!(r.found.len(), 1);
        assert_eq!(r.found[0].line, Some(1));
        // Pieces that never complete are reported, not read.
        let log = format!("2026-11-25T10:00:00Z stdout P {a}\nother\n");
        let e = read(log.as_bytes()).unwrap_err();
        assert!(
            matches!(
                e,
                InputError::NotFound {
                    lines: 2,
                    skipped: 1
                }
            ),
            "{e}"
        );
        // A marker in the middle of a builder's line is not an attestation.
        let log = format!("echo {l}\n{l}\n");
        let r = read(log.as_bytes()).unwrap();
        assert_eq!(r.found.len(), 1);
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(r.skipped[0].0, 1);
    }
}
