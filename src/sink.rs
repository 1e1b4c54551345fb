//! Every file provenant writes (attestations, bundles, in-toto links,
//! snapshots, spool entries, keys) goes through [`write_with`], which
//! decides by what is at the path now:
//!
//! | target                          | what happens                                         |
//! |---------------------------------|------------------------------------------------------|
//! | `-`                             | written to standard output                           |
//! | nothing, or a regular file      | temporary file beside it, then rename (atomic); a replaced file keeps its mode and, where allowed, its owner |
//! | character device, FIFO, socket  | opened and written in place: never replaced          |
//! | link to `/proc/self/fd/N`, `/dev/fd/N` (what `/dev/stdout` is) | written to our descriptor N |
//! | other symbolic link             | written through when it ends at a character device, FIFO or socket; otherwise refused, never replaced |
//! | directory, block device         | refused                                              |
//!
//! Why: the rename that makes a write atomic replaces whatever the name
//! pointed to. Run as root with `-o /dev/null`, that turned the machine's
//! `/dev/null` into a regular file; `-o /dev/stdout` would have broken
//! `/dev/stdout` and sent nothing to standard output.
//!
//! The temporary file is created with `O_EXCL | O_NOFOLLOW` under a random
//! name, so a link planted at a predictable name in a directory someone
//! else can write cannot redirect the write (to a key file, say).
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// How much a write must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Readers and a killed writer never see a partial file (temporary
    /// file, then rename). After a power loss the file may be missing or
    /// empty: that is a build to run again, and a sync of a 22 MB envelope
    /// cost 50 ms on ext4, more than the rest of writing it. Attestations,
    /// bundles, links, snapshots.
    Atomic,
    /// Also on disk before the call returns (fsync of the file and the
    /// directory): for the spool, where a lost entry is an attestation
    /// that never reaches its registry, and for keys.
    Synced,
}

/// How one file is written.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    pub durability: Durability,
    /// Mode of a file created new (a replaced file keeps its own).
    pub mode: u32,
    /// Only ever create: an existing file of any kind is an error (keys).
    pub create_only: bool,
}

impl WriteOptions {
    /// Attestations and the like: atomic, readable by all (the content is
    /// meant to be published), replacing an earlier run's file.
    pub const PUBLIC: WriteOptions = WriteOptions {
        durability: Durability::Atomic,
        mode: 0o644,
        create_only: false,
    };
}

/// Writes `bytes` to `path` (see the module documentation for what each
/// kind of target gets).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_with(path, WriteOptions::PUBLIC, |w| w.write_all(bytes))
}

/// [`write_atomic`] with the content produced by `fill`, so a 25 MB
/// envelope is serialized straight into the file instead of into a string
/// first.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    write_with(path, WriteOptions::PUBLIC, fill)
}

/// [`write_atomic_with`] with the durability asked for.
pub fn write_file(
    path: &Path,
    durability: Durability,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    write_with(
        path,
        WriteOptions {
            durability,
            ..WriteOptions::PUBLIC
        },
        fill,
    )
}

/// What a path names, as far as writing is concerned.
#[derive(Debug)]
enum Target {
    Stdout,
    /// Nothing there yet.
    New,
    Regular(std::fs::Metadata),
    /// A device, FIFO or socket (possibly behind links): written in place.
    InPlace(Kind),
    /// One of our own descriptors, through `/proc/self/fd/N` or `/dev/fd/N`.
    OwnFd(i32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    CharDevice,
    Fifo,
    Socket,
}

fn refused(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

fn kind_in_place(ft: &std::fs::FileType) -> Option<Kind> {
    if ft.is_char_device() {
        Some(Kind::CharDevice)
    } else if ft.is_fifo() {
        Some(Kind::Fifo)
    } else if ft.is_socket() {
        Some(Kind::Socket)
    } else {
        None
    }
}

/// `/proc/self/fd/N`, `/proc/PID/fd/N` (this process), `/dev/fd/N`.
fn own_fd(target: &Path) -> Option<i32> {
    let s = target.to_str()?;
    let n = s
        .strip_prefix("/proc/self/fd/")
        .or_else(|| s.strip_prefix("/dev/fd/"))
        .or_else(|| {
            let rest = s.strip_prefix("/proc/")?;
            let (pid, n) = rest.split_once("/fd/")?;
            (pid.parse::<u32>().ok()? == std::process::id()).then_some(n)
        })?;
    n.parse().ok().filter(|n| *n >= 0)
}

/// Follows a chain of links by hand (at most 40, as the kernel does) to
/// find whether it ends at one of our own descriptors; the kernel cannot
/// tell, since `/proc/self/fd/N` resolves to whatever N is open on.
fn link_to_own_fd(path: &Path) -> std::io::Result<Option<i32>> {
    let mut at = path.to_path_buf();
    for _ in 0..40 {
        if let Some(fd) = own_fd(&at) {
            return Ok(Some(fd));
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {}
            _ => return Ok(None),
        }
        let next = std::fs::read_link(&at)?;
        at = if next.is_absolute() {
            next
        } else {
            at.parent().unwrap_or(Path::new("/")).join(next)
        };
    }
    Ok(None)
}

fn classify(path: &Path) -> std::io::Result<Target> {
    if path.as_os_str() == "-" {
        return Ok(Target::Stdout);
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Target::New),
        Err(e) => return Err(e),
    };
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(Target::Regular(meta));
    }
    if let Some(k) = kind_in_place(&ft) {
        return Ok(Target::InPlace(k));
    }
    if ft.is_dir() {
        return Err(refused("is a directory".into()));
    }
    if ft.is_symlink() {
        if let Some(fd) = link_to_own_fd(path)? {
            return Ok(Target::OwnFd(fd));
        }
        return match std::fs::metadata(path) {
            Ok(m) => match kind_in_place(&m.file_type()) {
                Some(k) => Ok(Target::InPlace(k)),
                None => Err(refused(format!(
                    "is a symbolic link to {}; a link is never replaced and is written through only to a device, FIFO or socket (name the target itself)",
                    if m.is_file() { "a regular file" } else if m.is_dir() { "a directory" } else { "a block device" }
                ))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(refused(
                "is a symbolic link to nothing; a link is never replaced (name the target itself)"
                    .into(),
            )),
            Err(e) => Err(e),
        };
    }
    Err(refused(
        "is a block device; provenant writes attestations only to files, character devices, FIFOs and sockets".into(),
    ))
}

/// Writes to `path` by the rules of the module documentation.
pub fn write_with(
    path: &Path,
    opts: WriteOptions,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    let err = |source| WriteError {
        path: path.to_path_buf(),
        source,
    };
    let target = classify(path).map_err(err)?;
    if opts.create_only && !matches!(target, Target::New) {
        let what = match target {
            Target::Regular(_) => "already exists",
            _ => "exists and is not a regular file",
        };
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{what}; refusing to replace it (remove it first)"),
        )));
    }
    match target {
        Target::Stdout => write_stream(std::io::stdout().lock(), fill),
        Target::OwnFd(fd) => {
            // A duplicate, so that closing it leaves our descriptor open.
            // SAFETY: dup of a descriptor number; the result is checked.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
            if dup < 0 {
                return Err(err(std::io::Error::last_os_error()));
            }
            // SAFETY: a fresh descriptor nobody else owns.
            write_stream(unsafe { File::from_raw_fd(dup) }, fill)
        }
        Target::InPlace(kind) => open_in_place(path, kind).and_then(|f| write_stream(f, fill)),
        Target::New => replace(path, None, opts, fill),
        Target::Regular(meta) => replace(path, Some(meta), opts, fill),
    }
    .map_err(err)
}

fn write_stream(
    w: impl Write,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, w);
    fill(&mut w)?;
    w.flush()
}

/// A device or FIFO is opened for writing where it is (no create, no
/// truncate); a FIFO without a reader is an error, not a hang. A socket is
/// connected to.
fn open_in_place(path: &Path, kind: Kind) -> std::io::Result<File> {
    if kind == Kind::Socket {
        let s = std::os::unix::net::UnixStream::connect(path)?;
        return Ok(File::from(OwnedFd::from(s)));
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) {
                refused("is a FIFO with no reader".into())
            } else {
                e
            }
        })?;
    // Non-blocking only for the open; a slow reader is waited for.
    // SAFETY: fcntl on a descriptor we own, plain integer arguments.
    unsafe {
        let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok(f)
}

/// A name nobody can guess, so nothing can be planted there first.
fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let mut r = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut r).is_err() {
        r = (std::process::id() as u64 ^ nanos()).to_le_bytes();
    }
    path.with_file_name(format!(".{name}.{}.tmp", hex::encode(r)))
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Temporary file beside `path`, then rename over it (or, for
/// `create_only`, a rename that refuses to replace anything).
fn replace(
    path: &Path,
    old: Option<std::fs::Metadata>,
    opts: WriteOptions,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = temp_name(path);
    let mode = old
        .as_ref()
        .map_or(opts.mode, |m| m.permissions().mode() & 0o7777);
    let result = (|| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        if let Some(m) = &old {
            // The umask narrowed the mode at creation; the replaced file's
            // mode is restored exactly, and its owner where we may.
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
        }
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        if opts.durability == Durability::Synced {
            f.sync_all()?;
        }
        drop(f);
        // Tests kill the process here: the name must hold nothing new yet.
        crate::testhook::pause(crate::testhook::BEFORE_COMMIT, &path.display().to_string());
        if opts.create_only {
            rename_noreplace(&tmp, path)?;
        } else {
            std::fs::rename(&tmp, path)?;
        }
        // The rename is durable only once the directory entry is.
        if opts.durability == Durability::Synced {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

/// `renameat2(RENAME_NOREPLACE)`, or a hard link and unlink where the file
/// system does not support it: either way an existing file wins.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: NUL-terminated paths, AT_FDCWD, flag constant.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
        return Err(exists_message(e));
    }
    std::fs::hard_link(from, to).map_err(exists_message)?;
    std::fs::remove_file(from)
}

fn exists_message(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "already exists; refusing to replace it (remove it first)",
        )
    } else {
        e
    }
}

/// `PREFIX` + `suffix`, as cosign names key files: `release.v2` gives
/// `release.v2.key`, not `release.key`.
pub fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(OsStr::new(suffix));
    PathBuf::from(s)
}

crate::exit_class!(WriteError => crate::error::exit::CANNOT_CHECK);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_descriptors_are_recognized() {
        assert_eq!(own_fd(Path::new("/proc/self/fd/1")), Some(1));
        assert_eq!(own_fd(Path::new("/dev/fd/2")), Some(2));
        assert_eq!(
            own_fd(Path::new(&format!("/proc/{}/fd/7", std::process::id()))),
            Some(7)
        );
        assert_eq!(own_fd(Path::new("/proc/1/fd/1")), None);
        assert_eq!(own_fd(Path::new("/proc/self/fd/x")), None);
        assert_eq!(own_fd(Path::new("/tmp/fd/1")), None);
    }

    #[test]
    fn replacing_keeps_mode_and_refuses_links_to_files() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("out.json");
        std::fs::write(&f, b"old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&f, b"new").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);

        let link = d.path().join("link.json");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let e = write_atomic(&link, b"x").unwrap_err().to_string();
        assert!(e.contains("symbolic link to a regular file"), "{e}");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&f).unwrap(), b"new");

        let e = write_atomic(d.path(), b"x").unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        // Nothing left behind by the failures.
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn create_only_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("k.key");
        let opts = WriteOptions {
            durability: Durability::Synced,
            mode: 0o600,
            create_only: true,
        };
        write_with(&f, opts, |w| w.write_all(b"one")).unwrap();
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let e = write_with(&f, opts, |w| w.write_all(b"two"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(std::fs::read(&f).unwrap(), b"one");
    }

    #[test]
    fn a_fifo_without_reader_is_an_error_not_a_hang() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fifo");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = write_atomic(&p, b"x").unwrap_err().to_string();
        assert!(e.contains("FIFO with no reader"), "{e}");
        assert!(std::fs::symlink_metadata(&p).unwrap().file_type().is_fifo());
    }

    #[test]
    fn suffix_is_appended() {
        assert_eq!(
            with_suffix(Path::new("release.v2"), ".key"),
            PathBuf::from("release.v2.key")
        );
    }
}
