//! What a statement says about how trustworthy its own content is: where
//! the exit status came from, which subjects the builder claimed, which
//! inputs the build changed, and whether a name or URI is in a form that
//! can be matched at all. Read the same way by the policy and by
//! `inspect` (docs/trust.md, "Claims").
use base64::Engine;

use crate::provenance::{Provenance, ResourceDescriptor, EXIT_CODE_BYPRODUCT};

pub const ANN_ORIGIN: &str = "provenant.origin";
pub const ANN_CLAIM_SOURCE: &str = "provenant.claimSource";
pub const ANN_CLAIM_FILE: &str = "provenant.claimFile";
pub const ANN_CLAIM_CHECK: &str = "provenant.claimCheck";
pub const ANN_EXIT_ORIGIN: &str = "provenant.exitCodeOrigin";
pub const ANN_EXIT_SOURCE: &str = "provenant.exitCodeSource";
pub const ANN_MATERIAL_CHANGE: &str = "provenant.materialChange";
pub const ANN_ROLE: &str = "provenant.role";
/// `uri` of an exit-code byproduct whose value is not known.
pub const EXIT_CODE_UNKNOWN_URI: &str = "provenant:exit-code:unknown";

/// Who vouches for an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitOrigin {
    /// Learnt from the kernel or the Kubernetes API.
    Observed,
    /// Told by the builder (marker file, HTTP), or a statement from before
    /// origins were recorded.
    Claimed,
}

impl ExitOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitOrigin::Observed => "observed",
            ExitOrigin::Claimed => "claimed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    Known {
        code: i32,
        origin: ExitOrigin,
        /// `provenant.exitCodeSource` as written (run, process, kube, ...).
        source: Option<String>,
        /// No origin annotation: a statement from an older provenant.
        legacy: bool,
    },
    /// No exit-code byproduct, or one that says it is unknown.
    Unknown { why: String },
    /// Two exit-code byproducts, a content that is not a decimal number,
    /// an origin that contradicts the content: never pick one.
    Malformed(String),
}

fn ann_str<'a>(d: &'a ResourceDescriptor, key: &str) -> Result<Option<&'a str>, String> {
    match d.annotations.get(key) {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("annotation {key} is not a string")),
    }
}

/// Strict decimal: `0`, or an optional `-` and digits without a leading
/// zero, within i32 (the parse refuses what overflows it, so no length
/// check is needed before it).
fn decimal(s: &str) -> Option<i32> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
        || s == "-0"
    {
        return None;
    }
    s.parse().ok()
}

/// The exit status a predicate records (docs/build-type.md, "Exit status").
pub fn exit_status(p: &Provenance) -> ExitStatus {
    let found: Vec<&ResourceDescriptor> = p
        .run_details
        .byproducts
        .iter()
        .filter(|b| b.name.as_deref() == Some(EXIT_CODE_BYPRODUCT))
        .collect();
    let d = match found.as_slice() {
        [] => {
            return ExitStatus::Unknown {
                why: "no exit-code byproduct".into(),
            }
        }
        [d] => *d,
        more => {
            return ExitStatus::Malformed(format!("{} exit-code byproducts", more.len()));
        }
    };
    let origin = match ann_str(d, ANN_EXIT_ORIGIN) {
        Ok(o) => o,
        Err(e) => return ExitStatus::Malformed(e),
    };
    let source = match ann_str(d, ANN_EXIT_SOURCE) {
        Ok(s) => s.map(str::to_string),
        Err(e) => return ExitStatus::Malformed(e),
    };
    let Some(content) = d.content.as_deref() else {
        return match (d.uri.as_deref(), origin) {
            (Some(EXIT_CODE_UNKNOWN_URI), None | Some("unknown")) => ExitStatus::Unknown {
                why: format!(
                    "recorded as unknown{}",
                    source
                        .map(|s| format!(" (source {s:?})"))
                        .unwrap_or_default()
                ),
            },
            _ => ExitStatus::Malformed("exit-code byproduct has no content".into()),
        };
    };
    if d.uri.as_deref() == Some(EXIT_CODE_UNKNOWN_URI) {
        return ExitStatus::Malformed("exit-code byproduct is both known and unknown".into());
    }
    let code = base64::engine::general_purpose::STANDARD
        .decode(content)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| decimal(&s));
    let Some(code) = code else {
        return ExitStatus::Malformed("exit-code content is not a decimal number".into());
    };
    let (origin, legacy) = match origin {
        Some("observed") => (ExitOrigin::Observed, false),
        Some("claimed") => (ExitOrigin::Claimed, false),
        None => (ExitOrigin::Claimed, true),
        Some(other) => {
            return ExitStatus::Malformed(format!(
                "exit code {code} with origin {other:?} (expected observed or claimed)"
            ))
        }
    };
    ExitStatus::Known {
        code,
        origin,
        source,
        legacy,
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Known {
                code,
                origin,
                source,
                legacy,
            } => {
                write!(f, "{code} ({}", origin.as_str())?;
                if let Some(s) = source {
                    write!(f, ", source {s:?}")?;
                }
                if *legacy {
                    write!(f, ", no origin recorded")?;
                }
                write!(f, ")")
            }
            ExitStatus::Unknown { why } => write!(f, "unknown ({why})"),
            ExitStatus::Malformed(why) => write!(f, "malformed ({why})"),
        }
    }
}

/// How a subject got into the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectOrigin {
    /// Hashed by provenant itself (no origin annotation).
    Observed,
    /// Read from the builder's own files.
    Claimed {
        /// `provenant.claimCheck`: `registry`, `allowed-repository`, or
        /// anything else (`oci-layout`, `none`, missing) meaning unchecked.
        check: Option<String>,
        source: Option<String>,
        file: Option<String>,
    },
}

impl SubjectOrigin {
    /// A claim the registry confirmed by its digest when it was signed.
    pub fn is_confirmed_claim(&self) -> bool {
        matches!(self, SubjectOrigin::Claimed { check: Some(c), .. } if c == "registry")
    }

    /// A claim provenant checked before signing: against the registry, or
    /// at least against the operator's allow-list of repositories when the
    /// registry could not be asked (`allowed-repository`: the claim cannot
    /// name someone else's image; its digest was unconfirmed). `oci-layout`
    /// is not a check: the layout's blobs and its name are the builder's
    /// own writing, so hashing them proves only that the builder was
    /// consistent with itself.
    pub fn is_checked_claim(&self) -> bool {
        matches!(self, SubjectOrigin::Claimed { check: Some(c), .. }
            if c == "registry" || c == "allowed-repository")
    }
}

/// Any `provenant.origin` annotation makes the subject a claim: only its
/// absence means provenant hashed it (an unexpected value is not taken as
/// a more trustworthy origin).
pub fn subject_origin(s: &ResourceDescriptor) -> SubjectOrigin {
    if !s.annotations.contains_key(ANN_ORIGIN) {
        return SubjectOrigin::Observed;
    }
    let get = |k: &str| ann_str(s, k).ok().flatten().map(str::to_string);
    SubjectOrigin::Claimed {
        check: get(ANN_CLAIM_CHECK),
        source: get(ANN_CLAIM_SOURCE),
        file: get(ANN_CLAIM_FILE),
    }
}

/// A material the build changed, from the byproducts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputChange<'a> {
    pub name: &'a str,
    /// `added`, `modified`, `removed` (or what else was written).
    pub change: String,
}

pub fn input_changes(p: &Provenance) -> Vec<InputChange<'_>> {
    p.run_details
        .byproducts
        .iter()
        .filter_map(|b| {
            let v = b.annotations.get(ANN_MATERIAL_CHANGE)?;
            Some(InputChange {
                name: b.name.as_deref().unwrap_or(""),
                change: v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            })
        })
        .collect()
}

/// Why a path-like name cannot be matched against a glob: a `..` segment
/// (or a `.` segment other than the whole name `.`) would let `out/*` or
/// `out/**` vouch for something outside `out/`. Names marked
/// percent-encoded are checked decoded.
pub fn name_problem(d_name: &str, percent_encoded: bool) -> Option<&'static str> {
    let decoded;
    let name: &[u8] = if percent_encoded {
        decoded = percent_decode(d_name.as_bytes());
        &decoded
    } else {
        d_name.as_bytes()
    };
    if name == b"." {
        return None;
    }
    for seg in name.split(|b| *b == b'/') {
        if seg == b".." {
            return Some("it has a '..' segment");
        }
        if seg == b"." {
            return Some("it has a '.' segment");
        }
    }
    None
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hexval(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|v| v as u8)
}

/// The form a URI is matched in (RFC 3986 section 6.2.2 syntax-based
/// normalization, plus refusals): scheme and host lowercased, percent
/// escapes of unreserved characters decoded and the others' hex digits
/// uppercased. Refused: control characters, spaces and `\`; in a
/// hierarchical URI (`scheme://`) a `.` or `..` path segment or an encoded
/// `/` or `\` (`%2F`, `%5C`) in the path. A value without a scheme is
/// checked as a path (see [`name_problem`]).
pub fn normalize_uri(s: &str) -> Result<String, &'static str> {
    if s.chars().any(|c| c.is_control() || c == ' ' || c == '\\') {
        return Err("it has a control character, space or '\\'");
    }
    // A scheme starts with a letter, so one that is empty (`:x`) is none.
    let scheme_end = s.find(':').filter(|&i| {
        s.as_bytes()[0].is_ascii_alphabetic()
            && s[..i]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
    });
    let Some(se) = scheme_end else {
        return match name_problem(s, false) {
            Some(p) => Err(p),
            None => Ok(s.to_string()),
        };
    };
    let mut out = s[..se].to_ascii_lowercase();
    out.push(':');
    let rest = &s[se + 1..];
    let Some(hier) = rest.strip_prefix("//") else {
        // Opaque (`pkg:`, `urn:`, `mailto:`): only escapes normalized.
        out.push_str(&norm_escapes(rest)?);
        return Ok(out);
    };
    let auth_end = hier.find(['/', '?', '#']).unwrap_or(hier.len());
    let (authority, tail) = hier.split_at(auth_end);
    out.push_str("//");
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            out.push_str(&norm_escapes(user)?);
            out.push('@');
            out.push_str(&norm_escapes(host)?.to_ascii_lowercase());
        }
        None => out.push_str(&norm_escapes(authority)?.to_ascii_lowercase()),
    }
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    let (path, query) = tail.split_at(path_end);
    let path = norm_escapes(path)?;
    if path.contains("%2F") || path.contains("%5C") {
        return Err("its path has an encoded '/' or '\\'");
    }
    for seg in path.split('/') {
        if seg == ".." {
            return Err("its path has a '..' segment");
        }
        if seg == "." {
            return Err("its path has a '.' segment");
        }
    }
    out.push_str(&path);
    out.push_str(&norm_escapes(query)?);
    Ok(out)
}

fn norm_escapes(s: &str) -> Result<String, &'static str> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hexval),
                b.get(i + 2).copied().and_then(hexval),
            ) else {
                return Err("it has a '%' that is not a percent escape");
            };
            let v = h * 16 + l;
            if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                out.push(v as char);
            } else {
                out.push_str(&format!("%{v:02X}"));
            }
            i += 3;
            continue;
        }
        // Multi-byte characters are copied whole.
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_normalized_and_dot_segments_refused() {
        assert_eq!(
            normalize_uri("HTTPS://CI.Example.com/builders/%70rod").unwrap(),
            "https://ci.example.com/builders/prod"
        );
        assert_eq!(
            normalize_uri("https://ci.example.com/a%2fb?x=%2f").unwrap_err(),
            "its path has an encoded '/' or '\\'"
        );
        for bad in [
            "https://ci.example.com/builders/prod/../../../evil.example.org",
            "https://ci.example.com/builders/%2e%2e/x",
            "https://ci.example.com/./x",
        ] {
            assert!(normalize_uri(bad).is_err(), "{bad}");
        }
        assert!(normalize_uri("https://ci.example.com/a\\..\\b").is_err());
        assert!(normalize_uri("https://x/%zz").is_err());
        assert_eq!(
            normalize_uri("pkg:docker/a%2Fb@1").unwrap(),
            "pkg:docker/a%2Fb@1"
        );
        assert!(normalize_uri("a/../b").is_err());
        assert_eq!(normalize_uri("plain-id").unwrap(), "plain-id");
    }

    /// Each character a URI may not have is refused on its own.
    #[test]
    fn spaces_and_control_characters_are_refused() {
        for bad in [
            "https://x/a b",
            "https://x/a\u{1}b",
            "https://x/a\u{7f}",
            "https://x/a\\b",
        ] {
            assert_eq!(
                normalize_uri(bad).unwrap_err(),
                "it has a control character, space or '\\'",
                "{bad:?}"
            );
        }
    }

    /// A scheme is a letter, then letters, digits, `+`, `-` and `.`
    /// (RFC 3986 section 3.1): only then is the value a URI (its scheme
    /// and host lowercased). Anything else before a `:` is a path, whose
    /// dot segments are refused.
    #[test]
    fn schemes_follow_rfc_3986() {
        for (uri, normal) in [
            ("git+SSH://Host/a", "git+ssh://host/a"),
            ("Coap-TCP://Host/a", "coap-tcp://host/a"),
            ("X.Y://Host/a", "x.y://host/a"),
            ("A1://Host/a", "a1://host/a"),
        ] {
            assert_eq!(normalize_uri(uri).unwrap(), normal, "{uri}");
        }
        for path in ["1a:b/../c", "a_b:c/../d", ":b/./c", "+a:b/../c"] {
            assert_eq!(
                normalize_uri(path),
                Err(if path.contains("..") {
                    "it has a '..' segment"
                } else {
                    "it has a '.' segment"
                }),
                "{path}"
            );
        }
    }

    #[test]
    fn names() {
        assert_eq!(name_problem("out/app", false), None);
        assert_eq!(name_problem(".", false), None);
        assert!(name_problem("out/../../etc/passwd", false).is_some());
        assert!(name_problem("./x", false).is_some());
        assert!(name_problem("out/%2E%2E/x", true).is_some());
        assert_eq!(name_problem("out/%2E%2E/x", false), None);
        // Only `%` starts an escape, and only with two hex digits after it.
        assert_eq!(name_problem("out/a2ea2e/x", true), None);
        assert_eq!(name_problem("out/%2", true), None);
        assert_eq!(percent_decode(b"a2e%2E%2e%2%"), b"a2e..%2%");
        assert_eq!(percent_decode(b"%zz%4"), b"%zz%4");
    }

    #[test]
    fn decimals_are_strict() {
        assert_eq!(decimal("0"), Some(0));
        assert_eq!(decimal("137"), Some(137));
        assert_eq!(decimal("-1"), Some(-1));
        assert_eq!(decimal("2147483647"), Some(i32::MAX));
        assert_eq!(decimal("-2147483648"), Some(i32::MIN));
        for bad in [
            "",
            " 0",
            "0 ",
            "+1",
            "01",
            "-0",
            "1e3",
            "99999999999",
            "2147483648",
            "-2147483649",
            "0x1",
        ] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
    }
}
