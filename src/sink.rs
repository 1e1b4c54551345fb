//! Every file provenant writes (attestations, bundles, in-toto links,
//! snapshots, spool entries, keys) goes through [`write_with`], which
//! decides by what is at the path now:
//!
//! | target                          | what happens                                         |
//! |---------------------------------|------------------------------------------------------|
//! | `-`                             | written to standard output                           |
//! | nothing, or a regular file      | temporary file beside it, then rename (atomic); a replaced file keeps its mode and, where allowed, its owner; as root, another user's file in a world-writable directory is refused |
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
//! The parent directory is opened once; in it the temporary file is
//! created with `O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC` under a random
//! name (cut to fit `NAME_MAX`), so a link planted at a predictable name in
//! a directory someone else can write cannot redirect the write (to a key
//! file, say). Just before the rename, the target is checked again with
//! `fstatat(AT_SYMLINK_NOFOLLOW)` on that descriptor: only a regular file
//! is ever replaced (a link, FIFO, device or directory swapped in since is
//! refused), and root does not replace another user's file in a directory
//! anyone can write (`/tmp`): that file's owner would keep the new one.
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
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

/// Longest file name (bytes) the kernel takes (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// A name nobody can guess, so nothing can be planted there first:
/// `.NAME.HEX16.tmp`, with NAME cut (at a character boundary) so that the
/// whole fits `NAME_MAX` however long the target's name is.
fn temp_name(name: &OsStr) -> CString {
    let mut r = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut r).is_err() {
        r = (std::process::id() as u64 ^ nanos()).to_le_bytes();
    }
    let suffix = format!(".{}.tmp", hex::encode(r));
    let name = name.to_string_lossy();
    let mut keep = name.len().min(NAME_MAX - 1 - suffix.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    let t = format!(".{}{suffix}", &name[..keep]).replace('\0', "_");
    CString::new(t).expect("no NUL")
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn cvt_fd(fd: libc::c_int) -> std::io::Result<OwnedFd> {
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

fn cvt_rc(rc: libc::c_int) -> std::io::Result<()> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`; `None` when nothing is there.
fn stat_at(dir: &OwnedFd, name: &CString) -> std::io::Result<Option<libc::stat>> {
    // SAFETY: a zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid directory descriptor, NUL-terminated name, out-pointer.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    match cvt_rc(rc) {
        Ok(()) => Ok(Some(st)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What may be replaced, decided on the directory descriptor the rename
/// will use (the path was classified before; something may have been
/// swapped in since): a regular file only, and, for root in a directory
/// anyone can write (`/tmp`), only a file of its own: a stranger's file
/// there is refused, not taken over (its owner would keep the new file).
fn check_replaceable(dir: &OwnedFd, st: &libc::stat) -> std::io::Result<()> {
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(refused(
            "was replaced by something that is not a regular file while being written; never replaced (a link, FIFO, device or directory stays as it is)".into(),
        ));
    }
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 && st.st_uid != euid {
        // SAFETY: a zeroed stat is a valid out-parameter.
        let mut d: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a directory descriptor we hold, out-pointer.
        cvt_rc(unsafe { libc::fstat(dir.as_raw_fd(), &mut d) })?;
        if d.st_mode & libc::S_IWOTH != 0 {
            return Err(refused(format!(
                "belongs to uid {} in a directory anyone can write; as root, provenant does not replace another user's file there (remove it, or write elsewhere)",
                st.st_uid
            )));
        }
    }
    Ok(())
}

/// Temporary file beside `path`, then rename over it (or, for
/// `create_only`, a rename that refuses to replace anything). The parent
/// is opened once; the temporary file is created, the target re-checked
/// and the rename done relative to that descriptor, so a directory or a
/// target swapped after `classify` cannot redirect or widen the write.
fn replace(
    path: &Path,
    // What `classify` saw: decided again on the directory descriptor.
    _classified: Option<std::fs::Metadata>,
    opts: WriteOptions,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| refused("names no file".into()))?;
    let dir_path = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let c_dir = cstr(dir_path)?;
    // SAFETY: NUL-terminated path, flag constants. O_RDONLY (not O_PATH)
    // so that fsync works on it.
    let dir = cvt_fd(unsafe {
        libc::open(
            c_dir.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    let c_name = CString::new(name.as_bytes()).map_err(std::io::Error::other)?;
    let old = stat_at(&dir, &c_name)?;
    if let Some(st) = &old {
        if opts.create_only {
            return Err(exists_message(std::io::Error::from(
                std::io::ErrorKind::AlreadyExists,
            )));
        }
        check_replaceable(&dir, st)?;
    }
    let mode = old.as_ref().map_or(opts.mode, |m| m.st_mode & 0o7777);
    let tmp = temp_name(name);
    let result = (|| {
        // SAFETY: valid directory descriptor, NUL-terminated name, flags
        // and a mode for O_CREAT.
        let fd = cvt_fd(unsafe {
            libc::openat(
                dir.as_raw_fd(),
                tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        })?;
        let f = File::from(fd);
        if let Some(m) = &old {
            // The umask narrowed the mode at creation; the replaced file's
            // mode is restored exactly, and its owner where we may.
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            let _ = std::os::unix::fs::fchown(&f, Some(m.st_uid), Some(m.st_gid));
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
            rename_noreplace(&dir, &tmp, &c_name)?;
        } else {
            // Checked again just before the rename: what is there now is
            // what gets replaced.
            if let Some(st) = stat_at(&dir, &c_name)? {
                check_replaceable(&dir, &st)?;
            }
            // SAFETY: valid directory descriptors, NUL-terminated names.
            cvt_rc(unsafe {
                libc::renameat(
                    dir.as_raw_fd(),
                    tmp.as_ptr(),
                    dir.as_raw_fd(),
                    c_name.as_ptr(),
                )
            })?;
        }
        // The rename is durable only once the directory entry is.
        if opts.durability == Durability::Synced {
            // SAFETY: a directory descriptor we hold.
            let _ = unsafe { libc::fsync(dir.as_raw_fd()) };
        }
        Ok(())
    })();
    if result.is_err() {
        // SAFETY: valid directory descriptor, NUL-terminated name.
        unsafe { libc::unlinkat(dir.as_raw_fd(), tmp.as_ptr(), 0) };
    }
    result
}

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

/// `renameat2(RENAME_NOREPLACE)` in `dir`, or a hard link and unlink
/// where the file system does not support it: either way an existing file
/// wins.
fn rename_noreplace(dir: &OwnedFd, from: &CString, to: &CString) -> std::io::Result<()> {
    let d = dir.as_raw_fd();
    // SAFETY: valid directory descriptor, NUL-terminated names, flag.
    let rc = unsafe { libc::renameat2(d, from.as_ptr(), d, to.as_ptr(), libc::RENAME_NOREPLACE) };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
        return Err(exists_message(e));
    }
    // SAFETY: as above; linkat without AT_SYMLINK_FOLLOW.
    cvt_rc(unsafe { libc::linkat(d, from.as_ptr(), d, to.as_ptr(), 0) }).map_err(exists_message)?;
    // SAFETY: as above.
    cvt_rc(unsafe { libc::unlinkat(d, from.as_ptr(), 0) })
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

    fn regular_opts() -> WriteOptions {
        WriteOptions::PUBLIC
    }

    /// A target name of 255 bytes (`NAME_MAX`): the temporary name must
    /// fit too.
    #[test]
    fn a_long_target_name_fits_name_max() {
        let d = tempfile::tempdir().unwrap();
        for name in ["a".repeat(255), "é".repeat(127)] {
            let f = d.path().join(&name);
            write_atomic(&f, b"one").unwrap();
            write_atomic(&f, b"two").unwrap();
            assert_eq!(std::fs::read(&f).unwrap(), b"two");
        }
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }

    /// The target is classified as a regular file, then swapped (as a
    /// hostile writer of the directory would, between the check and the
    /// rename) for a symbolic link, a FIFO or a directory: none is
    /// replaced, and no temporary file is left.
    #[test]
    fn a_target_swapped_after_the_check_is_not_replaced() {
        type Swap = fn(&Path, &Path);
        let swaps: [(&str, Swap); 3] = [
            ("link", |p, victim| {
                std::os::unix::fs::symlink(victim, p).unwrap()
            }),
            ("fifo", |p, _| {
                nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap()
            }),
            ("directory", |p, _| std::fs::create_dir(p).unwrap()),
        ];
        for (what, swap) in swaps {
            let d = tempfile::tempdir().unwrap();
            let victim = d.path().join("victim");
            std::fs::write(&victim, b"victim").unwrap();
            let out = d.path().join("out.json");
            std::fs::write(&out, b"old").unwrap();
            let meta = std::fs::symlink_metadata(&out).unwrap();
            std::fs::remove_file(&out).unwrap();
            swap(&out, &victim);
            let r = replace(&out, Some(meta), regular_opts(), |w| w.write_all(b"new"));
            assert!(r.is_err(), "{what}: replaced");
            let ft = std::fs::symlink_metadata(&out).unwrap().file_type();
            assert!(!ft.is_file(), "{what}: became a regular file");
            assert_eq!(std::fs::read(&victim).unwrap(), b"victim", "{what}");
            assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2, "{what}");
        }
    }

    /// `-o /dev/null` as root: written in place, never replaced.
    #[test]
    fn dev_null_stays_a_device() {
        write_atomic(Path::new("/dev/null"), b"x").unwrap();
        let ft = std::fs::symlink_metadata("/dev/null").unwrap().file_type();
        assert!(ft.is_char_device());
    }

    /// Root writing into a sticky, world-writable directory (`/tmp`) where
    /// another user already put a file of that name: refused, the file
    /// left as it is (replacing it would hand that user the new file);
    /// root's own file there, and another user's file in a directory only
    /// root writes, are replaced as usual.
    #[test]
    fn root_does_not_take_over_a_strangers_file_in_a_world_writable_directory() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED (loudly): needs root; CI runs as root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let sticky = d.path().join("tmp");
        std::fs::create_dir(&sticky).unwrap();
        std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let theirs = sticky.join("out.json");
        std::fs::write(&theirs, b"planted").unwrap();
        std::os::unix::fs::chown(&theirs, Some(65532), Some(65532)).unwrap();
        let e = write_atomic(&theirs, b"attestation")
            .unwrap_err()
            .to_string();
        assert!(e.contains("another user's file"), "{e}");
        assert_eq!(std::fs::read(&theirs).unwrap(), b"planted");
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&theirs).unwrap()),
            65532
        );
        assert_eq!(std::fs::read_dir(&sticky).unwrap().count(), 1);

        let mine = sticky.join("mine.json");
        std::fs::write(&mine, b"old").unwrap();
        write_atomic(&mine, b"new").unwrap();
        assert_eq!(std::fs::read(&mine).unwrap(), b"new");

        let private = d.path().join("theirs.json");
        std::fs::write(&private, b"old").unwrap();
        std::os::unix::fs::chown(&private, Some(65532), Some(65532)).unwrap();
        write_atomic(&private, b"new").unwrap();
        assert_eq!(std::fs::read(&private).unwrap(), b"new");
    }

    #[test]
    fn suffix_is_appended() {
        assert_eq!(
            with_suffix(Path::new("release.v2"), ".key"),
            PathBuf::from("release.v2.key")
        );
    }
}
