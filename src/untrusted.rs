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
//!   is refused without blocking, and a read that would block (`EAGAIN`)
//!   is an error naming the file, never retried;
//! * **no descriptor leaks**: every open is `O_CLOEXEC` (a child such as
//!   `provenant run`'s command inherits none); directories on the way to a
//!   file are `O_PATH|O_DIRECTORY|O_NOFOLLOW`, used only by `*at` calls;
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
/// A directory on the way to a builder-written path.
const WALK_FLAGS: i32 = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

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
    let start = CString::new(if absolute { "/" } else { "." })?;
    let Some((last, dirs)) = parts.split_last() else {
        // SAFETY: NUL-terminated path, flag constants.
        return cvt_checked(unsafe { libc::openat(dir, start.as_ptr(), flags | libc::O_CLOEXEC) });
    };
    // The directories on the way are only ever used by the *at calls
    // below: O_PATH (nothing readable, no side effects of opening).
    // SAFETY: NUL-terminated path, flag constants.
    let mut at = cvt_checked(unsafe { libc::openat(dir, start.as_ptr(), WALK_FLAGS) })?;
    for d in dirs {
        let c = CString::new(d.as_bytes())?;
        // SAFETY: valid directory descriptor, NUL-terminated name.
        at = cvt_checked(unsafe { libc::openat(at.as_raw_fd(), c.as_ptr(), WALK_FLAGS) }).map_err(
            |e| {
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
            },
        )?;
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
    read_capped(path, &mut f, m.len(), cap)
}

/// At most `cap` bytes of `f` (`cap + 1` read, to see an overrun). The
/// descriptor is non-blocking: a read that would block (a FIFO or device
/// swapped in, a file on a filesystem that says `EAGAIN`) is an error
/// naming the file, never retried: no busy loop, no hang.
fn read_capped(
    path: &Path,
    f: &mut std::fs::File,
    hint: u64,
    cap: u64,
) -> Result<Vec<u8>, UntrustedError> {
    let mut out = Vec::with_capacity(hint.min(cap) as usize);
    if let Err(e) = f.take(cap + 1).read_to_end(&mut out) {
        return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
            refused(
                path,
                "reading it would block (not a plain file's read); not read",
            )
        } else {
            UntrustedError::Io {
                path: shown(path),
                source: e,
            }
        });
    }
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
                "a symbolic link in the path; paths a build can write are never followed through links",
            )
        } else {
            e
        }
    })
}

/// The directory `rel` strictly beneath the open directory `dir`, without
/// following a link in any component (`""` is `dir` itself): the watcher's
/// directories, named relative to the root it opened at start, so that a
/// directory the builder swaps for a link anywhere on the way is refused
/// (`ELOOP`), not listed, watched or hashed through.
pub fn open_dir_beneath(dir: std::os::fd::BorrowedFd<'_>, rel: &Path) -> std::io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    open_nofollow_at(dir.as_raw_fd(), rel, DIR_FLAGS, true)
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

    /// A second descriptor of this directory to list it with (`readdir`
    /// moves the offset of the one it reads).
    fn listing(&self) -> Result<nix::dir::Dir, UntrustedError> {
        let io = |e: nix::errno::Errno| UntrustedError::Io {
            path: shown(&self.path),
            source: e.into(),
        };
        // F_DUPFD_CLOEXEC: close-on-exec from the start (a plain dup is
        // inheritable until fdopendir sets the flag, and a child spawned by
        // another thread in between would keep it).
        let dup = nix::fcntl::fcntl(
            self.fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(0),
        )
        .map_err(io)?;
        nix::dir::Dir::from_fd(dup).map_err(io)
    }

    /// The names in this directory that are valid UTF-8, sorted, at most
    /// `max` of them (more is an error: nobody writes thousands of results).
    pub fn names(&self, max: usize) -> Result<Vec<String>, UntrustedError> {
        let mut dir = self.listing()?;
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

    fn cloexec(fd: RawFd) -> bool {
        // SAFETY: F_GETFD on a descriptor we hold.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags >= 0);
        flags & libc::FD_CLOEXEC != 0
    }

    /// Whether a child spawned now (as `provenant run` spawns the build)
    /// has descriptor `fd` open.
    fn child_sees(fd: RawFd) -> bool {
        std::process::Command::new("sh")
            .args(["-c", &format!("test -e /proc/self/fd/{fd}")])
            .status()
            .unwrap()
            .success()
    }

    /// Descriptors of builder-written paths held while a child starts
    /// (a file, a directory reached through several components, the
    /// directory's listing): none reaches the child.
    #[test]
    fn descriptors_of_hostile_paths_do_not_leak_into_children() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::create_dir_all(p.join("a/b")).unwrap();
        std::fs::write(p.join("a/b/f"), b"x").unwrap();
        both_ways(|| {
            let f = open_nofollow(&p.join("a/b/f")).unwrap();
            let dir = open_dir(&p.join("a/b")).unwrap().unwrap();
            let listing = dir.listing().unwrap();
            let via = walk_nofollow(libc::AT_FDCWD, &p.join("a/b"), DIR_FLAGS, false).unwrap();
            for (what, fd) in [
                ("file", f.as_raw_fd()),
                ("directory", dir.fd.as_raw_fd()),
                ("listing", listing.as_raw_fd()),
                ("walked directory", via.as_raw_fd()),
            ] {
                assert!(cloexec(fd), "{what}: no FD_CLOEXEC");
                assert!(
                    !child_sees(fd),
                    "{what}: descriptor {fd} leaked into a child"
                );
            }
            assert_eq!(dir.names(10).unwrap(), ["f"]);
        });
        // The check itself: a descriptor without FD_CLOEXEC does reach it.
        let leaky = nix::unistd::dup(std::io::stdin().as_raw_fd()).unwrap();
        assert!(child_sees(leaky.as_raw_fd()), "the leak check sees nothing");
    }

    /// A FIFO the builder holds open (so a read sees no end of file, only
    /// "nothing yet") under a non-blocking descriptor: the read is an
    /// error naming the file at once, not a busy loop or a hang.
    #[test]
    fn a_read_that_would_block_is_an_error_naming_the_file() {
        use std::os::unix::fs::OpenOptionsExt;
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("re\u{1b}sult");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let start = std::time::Instant::now();
        let e = read_capped(&fifo, &mut f, 0, 100).unwrap_err().to_string();
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        assert!(
            e.contains("would block") && e.contains("re\\x1bsult"),
            "{e}"
        );
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
