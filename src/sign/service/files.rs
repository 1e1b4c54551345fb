//! Files the service re-reads when they change (the TLS certificate and
//! key that cert-manager rotates, a JWKS file from a ConfigMap), and the
//! bounded reads of them.
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Largest certificate, key, CA bundle or JWKS file read: these are a few
/// kilobytes; anything bigger is a mistake (or a device).
pub(super) const MAX_FILE: u64 = 1 << 20;

/// What changes when a file is replaced or rewritten. Kubernetes updates a
/// Secret or ConfigMap volume by swapping a `..data` symbolic link to a new
/// directory, so the path keeps its name and the stamp (taken through the
/// link) gets a new inode; an in-place rewrite changes the time or size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
    size: u64,
}

impl Stamp {
    pub(super) fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
            size: m.size(),
        })
    }
}

/// Reads a regular file of at most [`MAX_FILE`] bytes.
pub(super) fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let m = f.metadata().map_err(|e| e.to_string())?;
    if !m.is_file() {
        return Err("not a regular file".into());
    }
    let mut buf = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > MAX_FILE {
        return Err(format!("larger than {MAX_FILE} bytes"));
    }
    Ok(buf)
}
