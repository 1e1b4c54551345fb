//! The one door for files the builder wrote or named.
//!
//! In pod mode the builder is untrusted code sharing volumes with us: the
//! kpack `report.toml`, Tekton results, the completion marker, OCI layouts
//! and the attestations the gate reads are all written by it (or by the
//! stage before it). Every such file is read here, and only here:
//!
//! * **no symbolic link is followed anywhere in the path** (`openat2` with
//!   `RESOLVE_NO_SYMLINKS`, or a component-by-component `O_NOFOLLOW` walk
//!   where the kernel lacks it): a link to our key, to `/dev/zero` or to
//!   `/proc/self/environ` is refused, not read. The whole path is checked,
//!   not only what lies below a "root", because provenant cannot know which
//!   directories above the file a builder can write;
//! * **regular files only**, opened `O_NONBLOCK`: a FIFO, device or socket
//!   is refused without blocking;
//! * **our own secrets are refused by identity**: a file whose device and
//!   inode are those of the signing key, a token or credentials file
//!   ([`protect`]) is refused, so a hard link to the key cannot be read;
//! * **size-capped**: the cap is checked on the descriptor and again on the
//!   bytes actually read (a file can grow after `fstat`);
//! * **errors never echo content**, only the path (escaped) and a reason.
//!
//! Callers parse what they get in linear time with bounded counts.
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

/// A kpack `report.toml` or one Tekton result file. The lifecycle's report
/// is a few hundred bytes and Tekton caps all results of a step at 4 KiB;
/// 64 KiB of `{},` already costs the TOML parser a few MB.
pub const REPORT_CAP: u64 = 64 << 10;
/// An OCI `index.json` or manifest (the OCI distribution spec's 4 MiB).
pub const MANIFEST_CAP: u64 = 4 << 20;
/// A completion marker: an exit code and a newline.
pub const MARKER_CAP: u64 = 4096;
/// An attestation the gate reads (a 100k-file statement is ~25 MB).
pub const ATTESTATION_CAP: u64 = 256 << 20;
/// Entries read from a builder-written directory (Tekton results).
pub const DIR_ENTRIES_CAP: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum UntrustedError {
    #[error("{path}: {reason}")]
    Refused { path: String, reason: String },
    #[error("{path}: larger than the {cap}-byte limit for this file ({size} bytes)")]
    TooLarge { path: String, size: u64, cap: u64 },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A path as errors name it: escaped (`crate::escape`), so a name the
/// builder chose cannot start a new log line or rewrite the terminal.
fn shown(p: &Path) -> String {
    crate::escape::path(p).into_owned()
}

fn refused(path: &Path, reason: impl Into<String>) -> UntrustedError {
    UntrustedError::Refused {
        path: shown(path),
        reason: reason.into(),
    }
}

static PROTECTED: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

/// Never read `path` through this door: it is a secret of ours (signing
/// key, token, registry credentials). Its device and inode are remembered
/// now, following links as the mount presents them (a Kubernetes Secret
/// file is a link into `..data/`).
pub fn protect(path: &Path) {
    if let Ok(m) = std::fs::metadata(path) {
        let mut p = PROTECTED.lock().unwrap_or_else(|e| e.into_inner());
        if !p.contains(&(m.dev(), m.ino())) {
            p.push((m.dev(), m.ino()));
        }
    }
}

fn is_protected(m: &std::fs::Metadata) -> bool {
    PROTECTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&(m.dev(), m.ino()))
}

fn kind_name(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

const FILE_FLAGS: i32 = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
const DIR_FLAGS: i32 = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;

/// Whether `openat2` works here; once it did not, the walk is used.
static NO_OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn cvt(fd: RawFd) -> OwnedFd {
    // SAFETY: a fresh descriptor the kernel just gave us, owned by nobody.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `path` relative to `dir` (or absolute with `dir` = `AT_FDCWD`), without
/// following a link in any component.
fn open_nofollow_at(
    dir: RawFd,
    path: &Path,
    flags: i32,
    beneath: bool,
) -> std::io::Result<OwnedFd> {
    use std::sync::atomic::Ordering;
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
        let mut resolve = ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        if beneath {
            resolve |= ResolveFlag::RESOLVE_BENEATH;
        }
        let how = OpenHow::new()
            .flags(OFlag::from_bits_truncate(flags | libc::O_CLOEXEC))
            .resolve(resolve);
        match nix::fcntl::openat2(dir, path, how) {
            Ok(fd) => return Ok(cvt(fd)),
            // No openat2 (kernel < 5.6) or a seccomp filter that forbids it.
            Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::EPERM)
                if !NO_OPENAT2.swap(true, Ordering::Relaxed) =>
            {
                tracing::debug!(
                    "openat2 unavailable; resolving builder-written paths component by component"
                );
            }
            Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::EPERM) => {}
            Err(e) => return Err(e.into()),
        }
    }
    walk_nofollow(dir, path, flags, beneath)
}

/// The fallback: every directory component opened with `O_NOFOLLOW`, the
/// path normalized first (without links, `..` is lexical) and refused if
/// `beneath` and it climbs out.
fn walk_nofollow(dir: RawFd, path: &Path, flags: i32, beneath: bool) -> std::io::Result<OwnedFd> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    let mut absolute = false;
    for c in path.components() {
        match c {
            Component::RootDir => {
                if beneath {
                    return Err(std::io::Error::from_raw_os_error(libc::EXDEV));
                }
                absolute = true;
                parts.clear();
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() && beneath {
                    return Err(std::io::Error::from_raw_os_error(libc::EXDEV));
                }
            }
            Component::Normal(n) => parts.push(n),
            Component::Prefix(_) => return Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }
    let start = if absolute { "/" } else { "." };
    let c = CString::new(start)?;
    // SAFETY: NUL-terminated path, flag constants.
    let mut at =
        cvt_checked(unsafe { libc::openat(dir, c.as_ptr(), DIR_FLAGS | libc::O_CLOEXEC) })?;
    let Some((last, dirs)) = parts.split_last() else {
        return Ok(at);
    };
    for d in dirs {
        let c = CString::new(d.as_bytes())?;
        // SAFETY: valid directory descriptor, NUL-terminated name.
        at = cvt_checked(unsafe {
            libc::openat(at.as_raw_fd(), c.as_ptr(), DIR_FLAGS | libc::O_CLOEXEC)
        })
        .map_err(|e| {
            // O_DIRECTORY|O_NOFOLLOW on a link says ENOTDIR; say what it is.
            let link = nix::sys::stat::fstatat(
                Some(at.as_raw_fd()),
                c.as_c_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
            if link {
                std::io::Error::from_raw_os_error(libc::ELOOP)
            } else {
                e
            }
        })?;
    }
    let c = CString::new(last.as_bytes())?;
    // SAFETY: valid directory descriptor, NUL-terminated name.
    cvt_checked(unsafe { libc::openat(at.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC) })
}

fn cvt_checked(fd: RawFd) -> std::io::Result<OwnedFd> {
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(cvt(fd))
    }
}

/// What an open failed with, said without the content (there is none yet).
fn open_error(path: &Path, e: std::io::Error) -> UntrustedError {
    match e.raw_os_error() {
        Some(libc::ELOOP) => refused(
            path,
            "a symbolic link in the path; files the builder can write are never read through links",
        ),
        Some(libc::EXDEV) => refused(path, "the path leaves the directory it must stay in"),
        Some(libc::ENOTDIR) => refused(path, "a component of the path is not a directory"),
        _ => UntrustedError::Io {
            path: shown(path),
            source: e,
        },
    }
}

/// Reads an open descriptor: a regular file that is not one of our
/// secrets, at most `cap` bytes.
fn read_open(path: &Path, fd: OwnedFd, cap: u64) -> Result<Vec<u8>, UntrustedError> {
    let mut f = std::fs::File::from(fd);
    let io = |source| UntrustedError::Io {
        path: shown(path),
        source,
    };
    let m = f.metadata().map_err(io)?;
    if !m.file_type().is_file() {
        return Err(refused(
            path,
            format!("{}, not a regular file", kind_name(&m.file_type())),
        ));
    }
    if is_protected(&m) {
        return Err(refused(
            path,
            "is one of provenant's own secret files (key, token or credentials); refusing to read it",
        ));
    }
    if m.len() > cap {
        return Err(UntrustedError::TooLarge {
            path: shown(path),
            size: m.len(),
            cap,
        });
    }
    let mut out = Vec::with_capacity(m.len() as usize);
    (&mut f).take(cap + 1).read_to_end(&mut out).map_err(io)?;
    if out.len() as u64 > cap {
        return Err(UntrustedError::TooLarge {
            path: shown(path),
            size: out.len() as u64,
            cap,
        });
    }
    Ok(out)
}

/// Reads the builder-written file at `path` (see the module documentation);
/// `Ok(None)` when there is no such file.
pub fn read_file(path: &Path, cap: u64) -> Result<Option<Vec<u8>>, UntrustedError> {
    let abs = std::path::absolute(path).map_err(|source| UntrustedError::Io {
        path: shown(path),
        source,
    })?;
    match open_nofollow_at(libc::AT_FDCWD, &abs, FILE_FLAGS, false) {
        Ok(fd) => read_open(path, fd, cap).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(open_error(path, e)),
    }
}

/// Opens `path` for reading without following a link anywhere in it and
/// without blocking on a FIFO (a directory opens too): for callers that
/// hash what they open (the gate's inputs) and check its kind with `fstat`.
pub fn open_nofollow(path: &Path) -> std::io::Result<OwnedFd> {
    let abs = std::path::absolute(path)?;
    open_nofollow_at(libc::AT_FDCWD, &abs, FILE_FLAGS, false).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a symbolic link in the path; inputs the gate verifies are never reached through links",
            )
        } else {
            e
        }
    })
}

/// Whether something (of any kind) is at `path`, without following links.
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// A builder-written directory, opened without following links; files are
/// then looked up strictly beneath it.
pub struct UntrustedDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// `Ok(None)` when there is no such directory.
pub fn open_dir(path: &Path) -> Result<Option<UntrustedDir>, UntrustedError> {
    let abs = std::path::absolute(path).map_err(|source| UntrustedError::Io {
        path: shown(path),
        source,
    })?;
    match open_nofollow_at(libc::AT_FDCWD, &abs, DIR_FLAGS, false) {
        Ok(fd) => Ok(Some(UntrustedDir {
            fd,
            path: path.to_path_buf(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(open_error(path, e)),
    }
}

impl UntrustedDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` (which may have several components) beneath this directory.
    pub fn read_file(&self, rel: &str, cap: u64) -> Result<Option<Vec<u8>>, UntrustedError> {
        let shown_path = self.path.join(rel);
        match open_nofollow_at(self.fd.as_raw_fd(), Path::new(rel), FILE_FLAGS, true) {
            Ok(fd) => read_open(&shown_path, fd, cap).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(open_error(&shown_path, e)),
        }
    }

    /// Whether `rel` exists beneath this directory (any kind, links not
    /// followed).
    pub fn has(&self, rel: &str) -> bool {
        // O_PATH opens anything without side effects (no FIFO open).
        open_nofollow_at(
            self.fd.as_raw_fd(),
            Path::new(rel),
            libc::O_PATH | libc::O_NOFOLLOW,
            true,
        )
        .is_ok()
    }

    /// The names in this directory that are valid UTF-8, sorted, at most
    /// `max` of them (more is an error: nobody writes thousands of results).
    pub fn names(&self, max: usize) -> Result<Vec<String>, UntrustedError> {
        let dup = nix::unistd::dup(self.fd.as_raw_fd()).map_err(|e| UntrustedError::Io {
            path: shown(&self.path),
            source: e.into(),
        })?;
        let mut dir = nix::dir::Dir::from_fd(dup).map_err(|e| UntrustedError::Io {
            path: shown(&self.path),
            source: e.into(),
        })?;
        let mut out = Vec::new();
        let mut skipped = 0usize;
        for entry in dir.iter() {
            let entry = entry.map_err(|e| UntrustedError::Io {
                path: shown(&self.path),
                source: e.into(),
            })?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if out.len() + skipped >= max {
                return Err(refused(
                    &self.path,
                    format!("more than {max} entries; a results directory this large is not read"),
                ));
            }
            match std::str::from_utf8(name) {
                Ok(s) => out.push(s.to_string()),
                Err(_) => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::warn!(dir = %shown(&self.path), skipped, "names that are not UTF-8 were ignored");
        }
        out.sort();
        Ok(out)
    }
}

crate::exit_class!(UntrustedError => crate::error::exit::CANNOT_CHECK);

#[cfg(test)]
mod tests {
    use super::*;

    fn both_ways(f: impl Fn()) {
        use std::sync::atomic::Ordering;
        NO_OPENAT2.store(false, Ordering::Relaxed);
        f();
        NO_OPENAT2.store(true, Ordering::Relaxed);
        f();
        NO_OPENAT2.store(false, Ordering::Relaxed);
    }

    #[test]
    fn links_fifos_devices_and_big_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("secret"), b"KEY MATERIAL").unwrap();
        std::fs::write(p.join("ok"), b"fine").unwrap();
        std::os::unix::fs::symlink(p.join("secret"), p.join("link")).unwrap();
        std::fs::create_dir(p.join("real")).unwrap();
        std::fs::write(p.join("real/f"), b"inside").unwrap();
        std::os::unix::fs::symlink(p.join("real"), p.join("dirlink")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", p.join("zero")).unwrap();
        nix::unistd::mkfifo(&p.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::fs::write(p.join("big"), vec![b'x'; 5000]).unwrap();
        std::fs::hard_link(p.join("secret"), p.join("hard")).unwrap();
        protect(&p.join("secret"));
        both_ways(|| {
            assert_eq!(read_file(&p.join("ok"), 100).unwrap().unwrap(), b"fine");
            assert_eq!(read_file(&p.join("missing"), 100).unwrap(), None);
            for (name, want) in [
                ("link", "symbolic link"),
                ("dirlink/f", "symbolic link"),
                ("zero", "symbolic link"),
                ("fifo", "a FIFO, not a regular file"),
                ("hard", "own secret files"),
                ("secret", "own secret files"),
                ("big", "larger than the 4096-byte limit"),
            ] {
                let e = read_file(&p.join(name), 4096).unwrap_err().to_string();
                assert!(e.contains(want), "{name}: {e}");
                assert!(!e.contains("KEY MATERIAL"));
            }
            let dir = open_dir(p).unwrap().unwrap();
            assert_eq!(dir.read_file("real/f", 100).unwrap().unwrap(), b"inside");
            let e = dir.read_file("../x", 100).unwrap_err().to_string();
            assert!(e.contains("leaves the directory"), "{e}");
            let e = dir.read_file("dirlink/f", 100).unwrap_err().to_string();
            assert!(e.contains("symbolic link"), "{e}");
            assert!(open_dir(&p.join("dirlink")).is_err());
        });
    }

    #[test]
    fn directory_listing_is_capped() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..10 {
            std::fs::write(d.path().join(format!("f{i}")), b"").unwrap();
        }
        let dir = open_dir(d.path()).unwrap().unwrap();
        assert_eq!(dir.names(10).unwrap().len(), 10);
        let e = dir.names(9).unwrap_err().to_string();
        assert!(e.contains("more than 9 entries"), "{e}");
    }

    #[test]
    fn errors_escape_the_name() {
        let d = tempfile::tempdir().unwrap();
        let evil = d.path().join("a\nb\u{1b}[2K");
        std::fs::write(&evil, vec![b'x'; 100]).unwrap();
        let e = read_file(&evil, 10).unwrap_err().to_string();
        assert!(!e.contains('\n') && !e.contains('\u{1b}'), "{e:?}");
        assert!(e.contains("a\\nb\\x1b[2K"), "{e}");
    }
}
