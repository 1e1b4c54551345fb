//! Names and other attacker-chosen text wherever provenant shows them:
//! `verify`, `inspect` and `digest` output, log events and error messages.
//! A product name is chosen by the builder; printed raw,
//! `"x\nsha256:<hex>  out/installer.sh"` would show a second, fake subject
//! line (or log record), and an ESC sequence could move the cursor and
//! rewrite a line already on the terminal. Every builder-chosen path that
//! reaches a log event or an error goes through [`path`] (or [`field`]);
//! JSON documents (statements, the log line) keep names exact instead.
//!
//! The convention is GNU coreutils' (`sha256sum`): a checksum line whose
//! name needed escaping starts with `\`, and in the name `\` is written
//! `\\`, a line feed `\n`, a carriage return `\r`. For a name with only those
//! special bytes the line is exactly what `sha256sum` prints, so
//! `sha256sum -c` checks it. coreutils prints every other byte raw; we do
//! not, because these are the bytes that rewrite a terminal:
//!
//! * the other C0 controls (0x00-0x1F, e.g. ESC, BS, TAB) and DEL (0x7F);
//! * the C1 controls U+0080-U+009F (U+009B is a one-byte CSI on terminals
//!   that honour C1);
//! * the bidirectional and line-breaking format characters U+061C,
//!   U+200E, U+200F, U+2028, U+2029, U+202A-U+202E, U+2066-U+2069, which
//!   reorder or break what a reader sees;
//! * bytes that are not UTF-8 (a name on disk need not be).
//!
//! Each of those bytes is written `\xHH` (two lowercase hex digits; a
//! character of several UTF-8 bytes gives one `\xHH` per byte). `sha256sum
//! -c` rejects such a line as improperly formatted: it fails closed and can
//! never check a different file. Every escape starts with `\` and a literal
//! `\` is doubled, so the escaped text maps back to exactly one name.
use std::borrow::Cow;

/// Whether the character must be written as `\xHH` bytes.
fn dangerous(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    use std::fmt::Write;
    for b in bytes {
        let _ = write!(out, "\\x{b:02x}");
    }
}

/// The escaped form of `bytes` and whether anything was escaped.
pub fn escape_bytes(bytes: &[u8]) -> (Cow<'_, str>, bool) {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if !s.chars().any(|c| c == '\\' || dangerous(c)) {
            return (Cow::Borrowed(s), false);
        }
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if dangerous(c) => {
                    let mut buf = [0u8; 4];
                    push_hex(&mut out, c.encode_utf8(&mut buf).as_bytes());
                }
                c => out.push(c),
            }
        }
        push_hex(&mut out, chunk.invalid());
    }
    (Cow::Owned(out), true)
}

/// A text field (builder id, command, key id, ...) on a line of its own
/// kind: escaped, no leading marker.
pub fn field(s: &str) -> Cow<'_, str> {
    escape_bytes(s.as_bytes()).0
}

/// A path for a log event or an error message: its raw bytes escaped as
/// above (a name on disk need not be UTF-8).
pub fn path(p: &std::path::Path) -> Cow<'_, str> {
    use std::os::unix::ffi::OsStrExt;
    escape_bytes(p.as_os_str().as_bytes()).0
}

/// One checksum line in the coreutils format: `[\]DIGEST  NAME`.
pub fn checksum_line(digest: &str, name: &[u8]) -> String {
    let (name, escaped) = escape_bytes(name);
    let (digest, digest_escaped) = escape_bytes(digest.as_bytes());
    format!(
        "{}{digest}  {name}",
        if escaped || digest_escaped { "\\" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_unchanged() {
        assert_eq!(checksum_line("ab", b"out/app"), "ab  out/app");
        assert_eq!(checksum_line("ab", "ü/ñ x".as_bytes()), "ab  ü/ñ x");
    }

    #[test]
    fn coreutils_escapes() {
        assert_eq!(checksum_line("ab", b"a\\b"), "\\ab  a\\\\b");
        assert_eq!(checksum_line("ab", b"a\nb"), "\\ab  a\\nb");
        assert_eq!(checksum_line("ab", b"a\rb"), "\\ab  a\\rb");
    }

    #[test]
    fn terminal_controls_and_invalid_utf8_are_hex() {
        assert_eq!(checksum_line("ab", b"a\x1b[2Kb"), "\\ab  a\\x1b[2Kb");
        assert_eq!(checksum_line("ab", b"\tx\x7f"), "\\ab  \\x09x\\x7f");
        assert_eq!(checksum_line("ab", b"a\xffb"), "\\ab  a\\xffb");
        assert_eq!(
            checksum_line("ab", "a\u{202e}b\u{9b}".as_bytes()),
            "\\ab  a\\xe2\\x80\\xaeb\\xc2\\x9b"
        );
    }

    #[test]
    fn paths_escape_their_raw_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let p = std::path::Path::new(std::ffi::OsStr::from_bytes(b"out/a\nb\x1b[31m\xff"));
        assert_eq!(path(p), "out/a\\nb\\x1b[31m\\xff");
        assert!(matches!(
            path(std::path::Path::new("out/app")),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_fake_subject_line_stays_on_one_line() {
        let evil = format!("x\nsha256:{}  out/installer.sh", "0".repeat(64));
        let line = checksum_line("sha256:ab", evil.as_bytes());
        assert!(!line.contains('\n'));
        assert!(line.starts_with('\\'));
    }
}
