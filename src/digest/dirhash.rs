//! The in-toto `dirHash` of a tree (DigestSet spec v1.1): Go's dirhash
//! `Hash1` without the `h1:` prefix, in lowercase hex. SHA-256 over one
//! line `HEX  NAME\n` per regular file, sorted by name in byte order, which
//! is what this shell pipeline gives in the directory:
//!
//! ```sh
//! find . -type f | cut -c3- | LC_ALL=C sort | xargs -r sha256sum | sha256sum
//! ```
//!
//! Made from the per-file digests a walk or the watcher already has, so it
//! costs one SHA-256 over ~100 bytes per file instead of a second pass over
//! the content (which is what a `gitTree` id needs).
use sha2::{Digest, Sha256};

use super::{DigestError, RelPath};

/// The dirHash of `files` (regular files only, sorted by path). A name
/// with a newline cannot be written as a line; Go's dirhash refuses it
/// too.
pub fn dir_hash<'a>(
    files: impl Iterator<Item = (&'a RelPath, &'a [u8; 32])>,
) -> Result<[u8; 32], DigestError> {
    let mut h = Sha256::new();
    // Lines are gathered and hashed 64 KiB at a time: one SHA-256 call per
    // ~100-byte line cost more than the hashing.
    let mut buf = Vec::with_capacity(64 * 1024 + 4096);
    let mut hex = [0u8; 64];
    for (path, sha) in files {
        if path.as_bytes().contains(&b'\n') {
            return Err(DigestError::NewlineInName {
                path: path.shown().into_owned(),
            });
        }
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(sha, &mut hex);
        buf.extend_from_slice(&hex);
        buf.extend_from_slice(b"  ");
        buf.extend_from_slice(path.as_bytes());
        buf.push(b'\n');
        if buf.len() >= 64 * 1024 {
            h.update(&buf);
            buf.clear();
        }
    }
    h.update(&buf);
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example() {
        // digest_set.md: the module github.com/marklodato/go-hello-world
        // v0.0.1, h1:Khu2En+0gcYPZ2kuIihfswbzxv/mIHXgzPZ018Oty48=.
        let files = [
            (
                "github.com/marklodato/go-hello-world@v0.0.1/README.md",
                "3a137eef6458bfb76bb2c63fc29ffc7166604d2d2e09ed9d8250a534122a8364",
            ),
            (
                "github.com/marklodato/go-hello-world@v0.0.1/go.mod",
                "28e7c942a036902d981759d0bf5704d2bfc7cb500caf68b84711b234af01c6a5",
            ),
            (
                "github.com/marklodato/go-hello-world@v0.0.1/main.go",
                "ddc4da627d9a9f45fb29641a1b185d6f53287ecfd921aacbf4fe54b7a86fe8d1",
            ),
        ];
        let owned: Vec<(RelPath, [u8; 32])> = files
            .iter()
            .map(|(p, h)| {
                let mut d = [0u8; 32];
                hex::decode_to_slice(h, &mut d).unwrap();
                (RelPath::from_bytes(*p), d)
            })
            .collect();
        let got = dir_hash(owned.iter().map(|(p, d)| (p, d))).unwrap();
        assert_eq!(
            hex::encode(got),
            "2a1bb6127fb481c60f67692e22285fb306f3c6ffe62075e0ccf674d7c3adcb8f"
        );
        let newline = [(RelPath::from_bytes("a\nb"), [0u8; 32])];
        assert!(dir_hash(newline.iter().map(|(p, d)| (p, d))).is_err());
    }
}
