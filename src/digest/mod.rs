//! Observe: walk files and directories and hash them on all cores.
//!
//! Rules that make the result trustworthy and deterministic:
//! - entries are sorted by raw path bytes, paths are relative to the root
//!   and `/`-separated;
//! - symlinks inside a root are recorded as links (their target bytes) and
//!   never followed, so a link cannot pull content from outside the root;
//!   a root given on the command line is followed, because the user named it;
//! - FIFOs, sockets and devices are never opened (opening a FIFO blocks
//!   forever); they are recorded by kind and warned about;
//! - every file is opened with `O_NOFOLLOW | O_NONBLOCK` and checked with
//!   `fstat` to be a regular file, so a file swapped for a FIFO or a link
//!   between listing and opening cannot hang or redirect us;
//! - a file that cannot be read or vanishes mid-walk is an error naming the
//!   path, or, with [`ErrorPolicy::Record`], an entry saying what happened.
mod dir;
mod dirhash;
mod git;
mod mapped;
mod path;
mod walk;

use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

pub use dirhash::dir_hash;
pub use path::{decode_percent, encode_into, RelPath};

/// How every file inside a root is opened for hashing (with O_RDONLY): a
/// link is never followed, and a FIFO swapped in after listing cannot
/// block the open.
const HASH_OPEN_FLAGS: libc::c_int = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

/// What to do with an entry that cannot be hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorPolicy {
    /// Stop with an error naming the path.
    #[default]
    Fail,
    /// Record an [`EntryKind::Error`] entry and continue.
    Record,
}
crate::choice!(ErrorPolicy {
    Fail = "fail",
    Record = "record",
});

#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Globs relative to the root (`/` not matched by `*`); a matching
    /// directory is not descended into.
    pub excludes: Vec<String>,
    pub on_error: ErrorPolicy,
    /// Show a progress bar when stderr is a terminal.
    pub progress: bool,
    /// Also compute git blob ids, needed for [`Tree::git_tree`]. Off by
    /// default because it doubles the hashing work.
    pub git_blobs: bool,
    /// Record empty directories (as [`SpecialKind::EmptyDir`] entries), so
    /// that a tree can be compared as a whole (the stage gate; products of
    /// `attest` and `run`). Off elsewhere: git trees, dirHash and the
    /// watcher's index have no empty directories.
    pub empty_dirs: bool,
    /// The root too is reached without following a link anywhere in its
    /// path (it may be in a directory someone else writes: the gate's
    /// inputs); see `crate::untrusted`.
    pub root_nofollow: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialKind {
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    /// A directory with nothing in it (only with [`WalkOptions::empty_dirs`]).
    EmptyDir,
}

impl std::fmt::Display for SpecialKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpecialKind::Fifo => "fifo",
            SpecialKind::Socket => "socket",
            SpecialKind::CharDevice => "char-device",
            SpecialKind::BlockDevice => "block-device",
            SpecialKind::EmptyDir => "empty-dir",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File {
        sha256: [u8; 32],
        size: u64,
        executable: bool,
        git_blob: Option<[u8; 20]>,
    },
    Symlink {
        target: Vec<u8>,
    },
    Special {
        kind: SpecialKind,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: RelPath,
    pub kind: EntryKind,
}

/// The result of hashing one root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    pub root: PathBuf,
    /// What the root was when it was hashed, from the stat that chose how
    /// to read it (with `root_nofollow`, the `fstat` of the descriptor that
    /// was read; otherwise a swap before the read makes the read fail): a
    /// later look at the path could see another kind swapped in.
    pub root_is_dir: bool,
    /// Sorted by path bytes.
    pub entries: Vec<Entry>,
}

impl Tree {
    /// Regular files and their sha256, in order.
    pub fn files(&self) -> impl Iterator<Item = (&RelPath, &[u8; 32])> {
        self.entries.iter().filter_map(|e| match &e.kind {
            EntryKind::File { sha256, .. } => Some((&e.path, sha256)),
            _ => None,
        })
    }

    /// The in-toto `dirHash` of the regular files (see [`dir_hash`]), hex.
    pub fn dir_hash(&self) -> Result<String, DigestError> {
        dir_hash(self.files()).map(hex::encode)
    }

    /// The git tree id (`git write-tree` of the same content), `None` if the
    /// walk ran without [`WalkOptions::git_blobs`].
    pub fn git_tree(&self) -> Option<String> {
        git::tree_id(&self.entries)
    }

    pub fn total_bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e.kind {
                EntryKind::File { size, .. } => size,
                _ => 0,
            })
            .sum()
    }
}

const HINT: &str = "(--on-error record records it and continues)";

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("{path}: no such file or directory")]
    Missing { path: String },
    #[error("cannot read {path}: {source} {HINT}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} vanished while being hashed {HINT}")]
    Vanished { path: String },
    #[error("{path}: a file name with a newline has no dirHash (Go's dirhash refuses it too); describe this root per file instead")]
    NewlineInName { path: String },
    #[error("invalid --exclude glob '{glob}': {source}")]
    BadExclude {
        glob: String,
        source: globset::Error,
    },
}

/// Hashes one file, following a link if `path` is one (the caller named
/// it). Refuses anything but a regular file.
pub fn hash_file(path: &Path) -> Result<[u8; 32], DigestError> {
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    Ok(hash_open(f, false).map_err(|e| io_error(path, e))?.sha256)
}

pub(crate) fn io_error(path: &Path, e: std::io::Error) -> DigestError {
    // Below a root, the builder chose the name.
    let path = crate::escape::path(path).into_owned();
    match e.kind() {
        std::io::ErrorKind::NotFound => DigestError::Vanished { path },
        _ => DigestError::Unreadable { path, source: e },
    }
}

/// What is at `abs` now, as the walk records a directory entry: a link
/// by its target (never followed), a FIFO, socket or device by its kind
/// (never opened: opening a FIFO would release a writer blocked on it), a
/// regular file hashed to its end; with the inode it was found at. `Ok(None)`
/// for a directory.
pub fn entry_kind_at(abs: &Path, git_blob: bool) -> std::io::Result<Option<(EntryKind, u64)>> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(abs)?;
    let ft = meta.file_type();
    if ft.is_file() {
        return hash_file_at(abs, git_blob);
    }
    if ft.is_symlink() {
        let target = std::fs::read_link(abs)?.into_os_string().into_vec();
        return Ok(Some((EntryKind::Symlink { target }, meta.ino())));
    }
    Ok(special_kind(&ft).map(|kind| (EntryKind::Special { kind }, meta.ino())))
}

/// [`entry_kind_at`] for a path that was a regular file a moment ago (the
/// watcher saw its writer close it): opened directly, one `lstat` fewer
/// per file, and still never following a link or hashing anything but a
/// regular file (`fstat` on the open descriptor decides).
pub fn hash_file_at(abs: &Path, git_blob: bool) -> std::io::Result<Option<(EntryKind, u64)>> {
    let opened = File::options()
        .read(true)
        .custom_flags(HASH_OPEN_FLAGS)
        .open(abs);
    let f = match opened {
        Ok(f) => f,
        // A link (O_NOFOLLOW) or a socket: not a regular file any more.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO)) => {
            return entry_kind_at(abs, git_blob)
        }
        Err(e) => return Err(e),
    };
    kind_of_open(f, git_blob)
}

/// What an opened path turned out to be: `fstat` on the descriptor
/// decides, so a file swapped between listing and opening is seen as what
/// it is now.
fn kind_of_open(mut f: File, git_blob: bool) -> std::io::Result<Option<(EntryKind, u64)>> {
    use std::os::unix::fs::MetadataExt;
    let meta = f.metadata()?;
    let ft = meta.file_type();
    if ft.is_file() {
        let d = hash_reader(&mut f, &meta, git_blob, None)?;
        return Ok(Some((file_kind(d), meta.ino())));
    }
    if ft.is_dir() {
        return Ok(None);
    }
    Ok(special_kind(&ft).map(|kind| (EntryKind::Special { kind }, meta.ino())))
}

/// A directory opened once to hash several of its files (the watcher's
/// hashing threads): each file then costs one path component to resolve
/// instead of a dozen, and none above it can be swapped for a link.
pub struct OpenDir(dir::Dir);

impl OpenDir {
    /// `rel` strictly beneath the directory `top`, no link followed in any
    /// component ([`crate::untrusted::open_dir_beneath`]). The watcher names
    /// every directory this way: by an absolute path, a directory above
    /// the last component that the builder swapped for a link (to the
    /// key's directory, say) would be followed.
    pub fn open_beneath(top: std::os::fd::BorrowedFd<'_>, rel: &Path) -> std::io::Result<OpenDir> {
        crate::untrusted::open_dir_beneath(top, rel).map(|fd| OpenDir(dir::Dir::from_fd(fd)))
    }

    /// The open directory, for `*at` calls and `/proc/self/fd` (the watch).
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }

    /// Each entry's name (without NUL) and whether it is a directory (a
    /// link to one is not), `.` and `..` left out. Listed with
    /// `getdents64` into a buffer the thread keeps: `std::fs::read_dir`
    /// allocates 32 KiB per directory (10k new directories in a `cp -r`
    /// of node_modules), and each such allocation makes glibc consolidate
    /// its fast bins.
    pub fn for_each_entry(&self, mut f: impl FnMut(&std::ffi::CStr, bool)) -> std::io::Result<()> {
        for (name, t) in self.0.list()?.iter() {
            f(
                name,
                self.0.kind(name, t).is_ok_and(|k| k == dir::Kind::Dir),
            );
        }
        Ok(())
    }

    /// The inode of `name` in this directory (a link's own).
    pub fn ino_of(&self, name: &std::ffi::CStr) -> std::io::Result<u64> {
        self.0.stat_of(name).map(|st| st.st_ino)
    }

    /// [`entry_kind_at`] for `name` in this directory: looked at with
    /// `fstatat` first, so a FIFO or device is recorded without being
    /// opened (an open would release a writer blocked on the FIFO).
    pub fn entry_kind(
        &self,
        name: &std::ffi::CStr,
        git_blob: bool,
    ) -> std::io::Result<Option<(EntryKind, u64)>> {
        let st = self.0.stat_of(name)?;
        let kind = match dir::Kind::of_mode(st.st_mode) {
            dir::Kind::File => return self.hash_file(name, git_blob),
            dir::Kind::Dir => return Ok(None),
            dir::Kind::Link => EntryKind::Symlink {
                target: self.0.read_link(name)?,
            },
            special => match special.special() {
                Some(kind) => EntryKind::Special { kind },
                None => return Ok(None),
            },
        };
        Ok(Some((kind, st.st_ino)))
    }

    /// [`hash_file_at`] for `name` in this directory.
    pub fn hash_file(
        &self,
        name: &std::ffi::CStr,
        git_blob: bool,
    ) -> std::io::Result<Option<(EntryKind, u64)>> {
        let f = match self.0.open_file(name) {
            Ok(f) => f,
            // A link (O_NOFOLLOW) or a socket: not a regular file any more.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO)) => {
                return match self.0.kind_of(name)? {
                    dir::Kind::Link => Ok(Some((
                        EntryKind::Symlink {
                            target: self.0.read_link(name)?,
                        },
                        0,
                    ))),
                    dir::Kind::Socket => Ok(Some((
                        EntryKind::Special {
                            kind: SpecialKind::Socket,
                        },
                        0,
                    ))),
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        kind_of_open(f, git_blob)
    }
}

fn file_kind(d: FileDigest) -> EntryKind {
    EntryKind::File {
        sha256: d.sha256,
        size: d.size,
        executable: d.executable,
        git_blob: d.git_blob,
    }
}

/// A regular file's digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDigest {
    pub sha256: [u8; 32],
    pub size: u64,
    pub executable: bool,
    pub git_blob: Option<[u8; 20]>,
}

thread_local! {
    static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 256 * 1024]);
}

/// Hashes an open file; errors if it is not a regular file.
fn hash_open(mut f: File, git_blob: bool) -> std::io::Result<FileDigest> {
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other("not a regular file any more"));
    }
    hash_reader(&mut f, &meta, git_blob, None)
}

/// Reads `f` to the end, or `limit` bytes if given.
fn hash_reader(
    f: &mut File,
    meta: &std::fs::Metadata,
    git_blob: bool,
    limit: Option<u64>,
) -> std::io::Result<FileDigest> {
    let mut sha = Sha256::new();
    let mut git = git_blob.then(|| git::blob_id_of(meta.len()));
    let mut size = 0u64;
    if meta.len() >= mapped::MIN_MAPPED && limit.is_none_or(|l| l >= meta.len()) {
        let mapped = mapped::feed_mapped(f, meta.len(), |b| {
            sha.update(b);
            if let Some(g) = git.as_mut() {
                sha1::Digest::update(g, b);
            }
        })?;
        if mapped {
            size = meta.len();
            // Whatever was appended since fstat is read below, so the
            // result is still "the file up to EOF".
            std::io::Seek::seek(f, std::io::SeekFrom::Start(size))?;
        }
    }
    BUF.with(|buf| -> std::io::Result<()> {
        let mut buf = buf.borrow_mut();
        loop {
            let want = match limit {
                Some(l) if size >= l => return Ok(()),
                Some(l) => buf.len().min((l - size) as usize),
                None => buf.len(),
            };
            let n = match f.read(&mut buf[..want]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            sha.update(&buf[..n]);
            if let Some(g) = git.as_mut() {
                sha1::Digest::update(g, &buf[..n]);
            }
            size += n as u64;
            // A short read that reaches the size fstat gave is the end of
            // a regular file: skip the read that would return 0, one
            // syscall in five for small files. (Short reads elsewhere, as
            // FUSE may give, just continue.)
            if n < want && size == meta.len() {
                return Ok(());
            }
        }
    })?;
    if git.is_some() && size != meta.len() {
        // The blob header carries the length; a file that changed size while
        // we read it would give a blob id for content that never existed.
        return Err(std::io::Error::other(
            "file changed size while being hashed",
        ));
    }
    Ok(FileDigest {
        sha256: sha.finalize().into(),
        size,
        executable: meta.permissions().mode() & 0o100 != 0,
        git_blob: git.map(|g| sha1::Digest::finalize(g).into()),
    })
}

/// Compiled `--exclude` globs.
#[derive(Debug, Clone)]
pub struct Excludes {
    globs: GlobSet,
    /// `dir/**` excludes everything below `dir`: skip the directory itself
    /// instead of walking it only to drop every file.
    prune: GlobSet,
}

impl Excludes {
    pub fn new(globs: &[String]) -> Result<Excludes, DigestError> {
        Ok(Excludes {
            globs: build_globs(globs.iter().map(|s| s.trim_end_matches('/')))?,
            prune: build_globs(
                globs
                    .iter()
                    .filter_map(|s| s.strip_suffix("/**"))
                    .filter(|s| !s.is_empty()),
            )?,
        })
    }

    /// `rel` is relative to the walk root.
    pub fn excluded(&self, rel: &RelPath, is_dir: bool) -> bool {
        self.excluded_bytes(rel.as_bytes(), is_dir)
    }

    pub fn excluded_bytes(&self, rel: &[u8], is_dir: bool) -> bool {
        if self.globs.is_empty() {
            return false;
        }
        let p = Path::new(std::ffi::OsStr::from_bytes(rel));
        self.globs.is_match(p) || (is_dir && self.prune.is_match(p))
    }

    pub fn is_empty(&self) -> bool {
        self.globs.is_empty()
    }

    /// Whether a walk from the root would leave out the file `rel`: the
    /// file itself or any directory above it excluded.
    pub fn excludes_file(&self, rel: &[u8]) -> bool {
        if self.globs.is_empty() {
            return false;
        }
        if self.excluded_bytes(rel, false) {
            return true;
        }
        rel.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .any(|(i, _)| self.excluded_bytes(&rel[..i], true))
    }
}

/// What an [`EntryKind::Error`] entry says about `err`.
pub(crate) fn error_message(err: DigestError) -> String {
    match err {
        DigestError::Vanished { .. } => "vanished while being hashed".into(),
        DigestError::Unreadable { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

fn file_entry(path: RelPath, d: FileDigest) -> Entry {
    Entry {
        path,
        kind: file_kind(d),
    }
}

fn special_kind(ft: &std::fs::FileType) -> Option<SpecialKind> {
    if ft.is_fifo() {
        Some(SpecialKind::Fifo)
    } else if ft.is_socket() {
        Some(SpecialKind::Socket)
    } else if ft.is_char_device() {
        Some(SpecialKind::CharDevice)
    } else if ft.is_block_device() {
        Some(SpecialKind::BlockDevice)
    } else {
        None
    }
}

fn build_globs<'a>(globs: impl Iterator<Item = &'a str>) -> Result<GlobSet, DigestError> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = GlobBuilder::new(g)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|source| DigestError::BadExclude {
                glob: g.to_string(),
                source,
            })?;
        b.add(glob);
    }
    b.build().map_err(|source| DigestError::BadExclude {
        glob: "(set)".into(),
        source,
    })
}

/// `p` absolute and without `.`/`..` or doubled slashes, lexically (no
/// link resolved): for comparing the paths of required inputs and
/// materials, and for telling whether a root's path runs through a link
/// (its canonical form then differs; `crate::watch`).
pub fn normalized(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Hashes everything under `root` (or `root` itself if it is not a
/// directory; the entry is then named by the file name).
pub fn hash_tree(root: &Path, opts: &WalkOptions) -> Result<Tree, DigestError> {
    let excludes = Excludes::new(&opts.excludes)?;
    let missing = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => DigestError::Missing {
            path: crate::escape::path(root).into_owned(),
        },
        _ => DigestError::Unreadable {
            path: crate::escape::path(root).into_owned(),
            source: e,
        },
    };
    // Without following links, the root is opened once and everything is
    // read through that descriptor: nothing can be swapped in between.
    let opened = if opts.root_nofollow {
        Some(File::from(
            crate::untrusted::open_nofollow(root).map_err(missing)?,
        ))
    } else {
        None
    };
    let meta = match &opened {
        Some(f) => f.metadata().map_err(missing)?,
        None => std::fs::metadata(root).map_err(missing)?,
    };
    let progress =
        (opts.progress && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
            let p = indicatif::ProgressBar::new_spinner();
            p.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} hashing {msg} {bytes} ({bytes_per_sec})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            p.set_message(root.display().to_string());
            p.enable_steady_tick(std::time::Duration::from_millis(120));
            p
        });
    let walker = walk::Walker {
        opts,
        excludes,
        progress,
        root,
    };
    let name = || {
        RelPath::from_bytes(
            root.file_name()
                .map(|n| n.as_bytes())
                .unwrap_or(b"")
                .to_vec(),
        )
    };
    let mut entries = match opened {
        Some(f) if meta.is_dir() => walker.walk_opened(dir::Dir::from_fd(f.into()))?,
        Some(f) => walker.single_opened(f, name(), meta.file_type())?,
        None if meta.is_dir() => walker.walk_root()?,
        None => {
            // The user named this path, so a link here is followed;
            // O_NOFOLLOW applies to what we find inside roots.
            let real = std::fs::canonicalize(root).map_err(|e| io_error(root, e))?;
            walker.single_file(&real, name(), meta.file_type())?
        }
    };
    if let Some(p) = &walker.progress {
        p.finish_and_clear();
    }
    // On all cores: 100k paths take ~12 ms to sort on one.
    rayon::slice::ParallelSliceMut::par_sort_unstable_by(&mut entries[..], |a, b| {
        a.path.cmp(&b.path)
    });
    Ok(Tree {
        root: root.to_path_buf(),
        root_is_dir: meta.is_dir(),
        entries,
    })
}

impl crate::error::ExitClass for DigestError {
    fn exit_code(&self) -> i32 {
        match self {
            DigestError::BadExclude { .. } => crate::error::exit::USAGE,
            _ => crate::error::exit::CANNOT_CHECK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_file_at_hashes_files_and_names_what_else_it_finds() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, vec![7u8; 300_000]).unwrap();
        match hash_file_at(&f, true).unwrap().map(|(k, _)| k) {
            Some(EntryKind::File {
                sha256,
                size,
                git_blob,
                ..
            }) => {
                assert_eq!(sha256, hash_file(&f).unwrap());
                assert_eq!(size, 300_000);
                assert!(git_blob.is_some());
            }
            other => panic!("expected a file, got {other:?}"),
        }
        let fifo = dir.path().join("p");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(
            entry_kind_at(&fifo, false).unwrap().map(|(k, _)| k),
            Some(EntryKind::Special {
                kind: SpecialKind::Fifo
            })
        );
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        for kind in [hash_file_at(&link, false), entry_kind_at(&link, false)] {
            assert_eq!(
                kind.unwrap().map(|(k, _)| k),
                Some(EntryKind::Symlink {
                    target: f.as_os_str().as_bytes().to_vec()
                }),
                "links are recorded, never followed"
            );
        }
        assert_eq!(entry_kind_at(dir.path(), false).unwrap(), None);
    }
}
