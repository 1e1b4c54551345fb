//! Paths as raw bytes. Unix file names are byte strings, not UTF-8; we keep
//! the bytes and only encode at the JSON edge, losslessly (see
//! `docs/build-type.md`, "Names").
use std::fmt;

/// A `/`-separated path relative to a walk root, as raw bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RelPath(Vec<u8>);

/// Bytes kept as-is when a name must be percent-encoded: RFC 3986
/// "unreserved" plus `/`. Everything else, `%` included, becomes `%XX`, so
/// decoding is unambiguous.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/')
}

impl RelPath {
    pub fn from_bytes(b: impl Into<Vec<u8>>) -> Self {
        RelPath(b.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// `self/name` for a name from a directory listing, in one allocation.
    pub fn child(&self, name: &[u8]) -> RelPath {
        let mut v = Vec::with_capacity(self.0.len() + 1 + name.len());
        v.extend_from_slice(&self.0);
        if !self.0.is_empty() && !self.0.ends_with(b"/") {
            v.push(b'/');
        }
        v.extend_from_slice(name);
        RelPath(v)
    }

    /// `self/other`; an empty side disappears.
    pub fn join(&self, other: &RelPath) -> RelPath {
        if self.0.is_empty() {
            return other.clone();
        }
        if other.0.is_empty() {
            return self.clone();
        }
        let mut v = Vec::with_capacity(self.0.len() + 1 + other.0.len());
        v.extend_from_slice(&self.0);
        if !self.0.ends_with(b"/") {
            v.push(b'/');
        }
        v.extend_from_slice(&other.0);
        RelPath(v)
    }

    /// The name for JSON: the path itself when it is UTF-8 (`false`), else
    /// every byte outside the unreserved set percent-encoded (`true`); the
    /// caller marks encoded names with an annotation.
    pub fn encoded(&self) -> (String, bool) {
        let mut s = String::with_capacity(self.0.len());
        let encoded = encode_into(&self.0, &mut s);
        (s, encoded)
    }

    /// The name for a log event or an error message (`crate::escape`):
    /// the builder chose it, and `Display` (the JSON name) keeps newlines
    /// and escape sequences as they are.
    pub fn shown(&self) -> std::borrow::Cow<'_, str> {
        crate::escape::escape_bytes(&self.0).0
    }

    pub fn as_path(&self) -> &std::path::Path {
        use std::os::unix::ffi::OsStrExt;
        std::path::Path::new(std::ffi::OsStr::from_bytes(&self.0))
    }
}

/// Appends the JSON name of the path `bytes` to `out` (see
/// [`RelPath::encoded`]); true if it had to be percent-encoded.
pub fn encode_into(bytes: &[u8], out: &mut String) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            out.push_str(s);
            false
        }
        Err(_) => {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            for &b in bytes {
                if unreserved(b) {
                    out.push(b as char);
                } else {
                    out.push('%');
                    out.push(HEX[(b >> 4) as usize] as char);
                    out.push(HEX[(b & 15) as usize] as char);
                }
            }
            true
        }
    }
}

/// Inverse of the percent-encoding of [`RelPath::encoded`]; `None` on a
/// malformed escape.
pub fn decode_percent(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Maps keyed by `RelPath` can be searched with a borrowed byte slice
/// (no allocation per lookup); the order is the same byte order.
impl std::borrow::Borrow<[u8]> for RelPath {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encoded().0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_roundtrips() {
        let p = RelPath::from_bytes(b"dir/a\xff%b c".to_vec());
        let (s, enc) = p.encoded();
        assert!(enc);
        assert_eq!(s, "dir/a%FF%25b%20c");
        assert_eq!(decode_percent(&s).unwrap(), p.as_bytes());
    }

    #[test]
    fn utf8_is_kept() {
        let p = RelPath::from_bytes("dir/ä %.txt");
        assert_eq!(p.encoded(), ("dir/ä %.txt".to_string(), false));
    }

    #[test]
    fn join_skips_empty() {
        let a = RelPath::from_bytes("a");
        assert_eq!(RelPath::default().join(&a), a);
        assert_eq!(a.join(&RelPath::default()), a);
        assert_eq!(a.join(&RelPath::from_bytes("b")).as_bytes(), b"a/b");
        assert_eq!(decode_percent("%G1"), None);
        assert_eq!(decode_percent("%4"), None);
    }
}
