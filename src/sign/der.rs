//! A minimal DER reader for the few structures the Sigstore witnesses use
//! (RFC 3161 timestamp responses, a certificate's TBS for its embedded
//! SCT): walk elements, keep their raw bytes, re-encode one with a changed
//! tag or content. Definite lengths only (DER has no other), single-byte
//! tags, lengths up to 2^32: anything else is malformed. Every call reads
//! one level; the callers go down a fixed number of levels, so there is no
//! recursion an input could deepen.

/// One element: its tag byte, its content and the whole encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub raw: &'a [u8],
}

pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const OID: u8 = 0x06;
pub const UTF8_STRING: u8 = 0x0c;
pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
pub const GENERALIZED_TIME: u8 = 0x18;
pub const UTC_TIME: u8 = 0x17;
/// `[n]` constructed, context-specific.
pub const fn ctx(n: u8) -> u8 {
    0xa0 | n
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed DER: {0}")]
pub struct DerError(pub &'static str);

/// The first element of `input` and what follows it.
pub fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), DerError> {
    let (&tag, rest) = input.split_first().ok_or(DerError("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(DerError("multi-byte tag"));
    }
    let (&first, rest) = rest.split_first().ok_or(DerError("truncated"))?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err(DerError("unsupported length"));
        }
        let bytes = rest.get(..n).ok_or(DerError("truncated"))?;
        let len = bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, &rest[n..])
    };
    let content = rest.get(..len).ok_or(DerError("truncated"))?;
    let header = input.len() - rest.len();
    Ok((
        Tlv {
            tag,
            content,
            raw: &input[..header + len],
        },
        &rest[len..],
    ))
}

/// The one element `input` holds (nothing may follow).
pub fn one(input: &[u8]) -> Result<Tlv<'_>, DerError> {
    let (t, rest) = read(input)?;
    if !rest.is_empty() {
        return Err(DerError("trailing bytes"));
    }
    Ok(t)
}

/// The elements inside a constructed element's content, at most `max`.
pub fn children(content: &[u8], max: usize) -> Result<Vec<Tlv<'_>>, DerError> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        if out.len() == max {
            return Err(DerError("too many elements"));
        }
        let (t, r) = read(rest)?;
        out.push(t);
        rest = r;
    }
    Ok(out)
}

impl<'a> Tlv<'a> {
    pub fn expect(self, tag: u8, what: &'static str) -> Result<Tlv<'a>, DerError> {
        if self.tag == tag {
            Ok(self)
        } else {
            Err(DerError(what))
        }
    }

    /// The children of a constructed element (at most 64).
    pub fn children(&self) -> Result<Vec<Tlv<'a>>, DerError> {
        children(self.content, 64)
    }
}

/// `tag`, the DER length of `content`, `content`.
pub fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The dotted form of an OID's content bytes.
pub fn oid_string(content: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for (i, b) in content.iter().enumerate() {
        acc = (acc << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let first = (acc / 40).min(2);
                parts.push(first);
                parts.push(acc - first * 40);
            } else {
                parts.push(acc);
            }
            acc = 0;
        } else if i == content.len() - 1 || acc > (u64::MAX >> 7) {
            return String::from("?");
        }
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        for n in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; n];
            let enc = encode(SEQUENCE, &content);
            let t = one(&enc).unwrap();
            assert_eq!(t.tag, SEQUENCE);
            assert_eq!(t.content, &content[..]);
            assert_eq!(t.raw, &enc[..]);
        }
        assert!(read(&[]).is_err());
        assert!(read(&[0x30]).is_err());
        assert!(read(&[0x30, 0x05, 1]).is_err());
        assert!(read(&[0x1f, 0x01, 0]).is_err());
        assert!(read(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(one(&[0x05, 0x00, 0x05]).is_err());
        let many: Vec<u8> = std::iter::repeat_n([0x05u8, 0x00], 100).flatten().collect();
        assert!(children(&many, 64).is_err());
        assert_eq!(children(&many, 100).unwrap().len(), 100);
    }

    #[test]
    fn oids() {
        // 1.3.6.1.4.1.57264.1.8
        assert_eq!(
            oid_string(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xbf, 0x30, 0x01, 0x08]),
            "1.3.6.1.4.1.57264.1.8"
        );
        assert_eq!(oid_string(&[0x2b, 0x86]), "?");
    }
}
