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
mod git;
mod mapped;
mod path;

use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

pub use path::{decode_percent, RelPath};

/// What to do with an entry that cannot be hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorPolicy {
    /// Stop with an error naming the path.
    #[default]
    Fail,
    /// Record an [`EntryKind::Error`] entry and continue.
    Record,
}

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialKind {
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl std::fmt::Display for SpecialKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpecialKind::Fifo => "fifo",
            SpecialKind::Socket => "socket",
            SpecialKind::CharDevice => "char-device",
            SpecialKind::BlockDevice => "block-device",
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

fn io_error(path: &Path, e: std::io::Error) -> DigestError {
    let path = path.display().to_string();
    match e.kind() {
        std::io::ErrorKind::NotFound => DigestError::Vanished { path },
        _ => DigestError::Unreadable { path, source: e },
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

/// What the kernel says about a file's identity and last change. Equal keys
/// mean the content was not changed, provided the file was not modified
/// within the timestamp granularity of when the key was taken (callers
/// handle that "racy" window; see `watch`). `ctime` cannot be set from user
/// space, so `touch -d` cannot fake it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl StatKey {
    pub fn of(m: &std::fs::Metadata) -> StatKey {
        use std::os::unix::fs::MetadataExt;
        StatKey {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mode: m.mode(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        }
    }
}

/// Digests computed earlier (by the workspace watcher) that a walk may reuse
/// instead of reading the file again.
pub trait DigestCache: Sync {
    /// The digest of the file at `abs` if it is known for exactly `key`.
    fn lookup(&self, abs: &Path, key: &StatKey, need_git_blob: bool) -> Option<FileDigest>;
}

/// Opens `name` in `dir` for hashing, never following a link.
fn open_at(dir: &File, name: &std::ffi::OsStr) -> std::io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let c = std::ffi::CString::new(name.as_bytes())?;
    // SAFETY: a valid directory fd and a NUL-terminated name; on success we
    // own the returned fd.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// What [`prehash`] found.
#[derive(Debug)]
pub enum Prehash {
    Hashed(FileDigest, StatKey),
    /// Not a regular file (any more).
    NotAFile,
    /// Changed less than the margin ago: a digest taken now could not be
    /// trusted later, as a rewrite within the same timestamp tick would
    /// leave the stat key unchanged.
    TooFresh,
}

/// Hashes the regular file at `abs` for the watcher's cache: never follows
/// a link, refuses files changed within `margin_ns` of now, and fails if
/// the file changed while being read (stat key before and after differ).
/// Six syscalls per file (open, fstat, read, fstat, close and a read only
/// for files over the buffer size): the sidecar does this for every file
/// the build writes, so each one counts against the build's CPU.
pub fn prehash(abs: &Path, git_blob: bool, margin_ns: i128) -> std::io::Result<Prehash> {
    let mut f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(abs)?;
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Ok(Prehash::NotAFile);
    }
    let before = StatKey::of(&meta);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    if now - before.ctime_ns.max(before.mtime_ns) < margin_ns {
        return Ok(Prehash::TooFresh);
    }
    // Reading exactly the stat size is enough: growth, or any write, while
    // we read changes the key checked below.
    let d = hash_reader(&mut f, &meta, git_blob, Some(meta.len()))?;
    let after = StatKey::of(&f.metadata()?);
    if before != after {
        return Err(std::io::Error::other("file changed while being hashed"));
    }
    Ok(Prehash::Hashed(d, after))
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
        self.globs.is_match(rel.as_path()) || (is_dir && self.prune.is_match(rel.as_path()))
    }
}

struct Walker<'a> {
    opts: &'a WalkOptions,
    excludes: Excludes,
    cache: Option<&'a dyn DigestCache>,
    progress: Option<indicatif::ProgressBar>,
}

fn file_entry(path: RelPath, d: FileDigest) -> Entry {
    Entry {
        path,
        kind: EntryKind::File {
            sha256: d.sha256,
            size: d.size,
            executable: d.executable,
            git_blob: d.git_blob,
        },
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

impl Walker<'_> {
    fn failed(
        &self,
        rel: &RelPath,
        abs: &Path,
        e: std::io::Error,
    ) -> Result<Vec<Entry>, DigestError> {
        let err = io_error(abs, e);
        match self.opts.on_error {
            ErrorPolicy::Fail => Err(err),
            ErrorPolicy::Record => {
                tracing::warn!(path = %abs.display(), "{err}; recorded as an error entry");
                Ok(vec![Entry {
                    path: rel.clone(),
                    kind: EntryKind::Error {
                        message: match err {
                            DigestError::Vanished { .. } => "vanished while being hashed".into(),
                            DigestError::Unreadable { source, .. } => source.to_string(),
                            other => other.to_string(),
                        },
                    },
                }])
            }
        }
    }

    /// One directory entry (already known not to be excluded). `de`, when
    /// the entry came from a directory listing, lets the cache check stat
    /// relative to the open directory (`fstatat`) instead of resolving the
    /// whole absolute path again: at finalize that lookup is most of the
    /// kernel time for 100k files.
    fn visit(
        &self,
        abs: &Path,
        rel: RelPath,
        ft: std::fs::FileType,
        de: Option<(&std::fs::DirEntry, Option<&File>)>,
        out: &mut Vec<Entry>,
    ) -> Result<(), DigestError> {
        if ft.is_symlink() {
            match std::fs::read_link(abs) {
                Ok(t) => out.push(Entry {
                    path: rel,
                    kind: EntryKind::Symlink {
                        target: t.into_os_string().into_vec(),
                    },
                }),
                Err(e) => out.extend(self.failed(&rel, abs, e)?),
            }
            return Ok(());
        }
        if let Some(kind) = special_kind(&ft) {
            tracing::warn!(path = %abs.display(), kind = %kind, "not a regular file: recorded by kind, not opened");
            out.push(Entry {
                path: rel,
                kind: EntryKind::Special { kind },
            });
            return Ok(());
        }
        if let Some(cache) = self.cache {
            let meta = match de {
                Some((de, _)) => de.metadata(),
                None => std::fs::symlink_metadata(abs),
            };
            if let Ok(m) = meta {
                if m.file_type().is_file() {
                    if let Some(d) = cache.lookup(abs, &StatKey::of(&m), self.opts.git_blobs) {
                        out.push(file_entry(rel, d));
                        return Ok(());
                    }
                }
            }
        }
        let opened = match de {
            Some((de, Some(dir))) => open_at(dir, &de.file_name()),
            _ => File::options()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(abs),
        };
        let result = opened.and_then(|f| hash_open(f, self.opts.git_blobs));
        match result {
            Ok(d) => {
                if let Some(p) = &self.progress {
                    p.inc(d.size);
                }
                out.push(file_entry(rel, d));
            }
            Err(e) => out.extend(self.failed(&rel, abs, e)?),
        }
        Ok(())
    }

    /// Walks `abs`, adding every entry below it to `sink`. Entries go to
    /// one shared vector in batches (sorted once at the end) instead of a
    /// vector per file, flattened again at every level of the tree: for
    /// 100k files that was 100k allocations and each entry copied once per
    /// directory level.
    fn walk_dir(
        &self,
        abs: &Path,
        rel: &RelPath,
        sink: &std::sync::Mutex<Vec<Entry>>,
    ) -> Result<(), DigestError> {
        let push = |batch: Vec<Entry>| {
            if !batch.is_empty() {
                sink.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend(batch);
            }
        };
        let rd = match std::fs::read_dir(abs) {
            Ok(rd) => rd,
            Err(e) => {
                push(self.failed(rel, abs, e)?);
                return Ok(());
            }
        };
        // Files are opened relative to this handle: resolving the absolute
        // path again for each of 100k files was a fifth of the walk. It is
        // also stricter: no component above the file can be swapped for a
        // link between listing and opening. O_NOFOLLOW: if the directory
        // itself was just replaced by a link, fall back to absolute paths
        // (whose opens still refuse a link in the last component).
        let dir = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(abs)
            .ok();
        let mut pending = Vec::new();
        for de in rd {
            let de = match de {
                Ok(de) => de,
                Err(e) => {
                    push(self.failed(rel, abs, e)?);
                    return Ok(());
                }
            };
            let child_rel = rel.join(&RelPath::from_bytes(de.file_name().as_bytes()));
            match de.file_type() {
                Ok(ft) if self.excludes.excluded(&child_rel, ft.is_dir()) => {}
                Ok(ft) => pending.push((de, child_rel, Ok(ft))),
                Err(e) => pending.push((de, child_rel, Err(e))),
            }
        }
        // Directories and files of one level in parallel; rayon's work
        // stealing spreads deep and wide trees alike over all cores.
        pending
            .into_par_iter()
            .try_fold(Vec::new, |mut acc, (de, r, ft)| {
                match ft {
                    Ok(ft) if ft.is_dir() => self.walk_dir(&de.path(), &r, sink)?,
                    Ok(ft) => self.visit(&de.path(), r, ft, Some((&de, dir.as_ref())), &mut acc)?,
                    Err(e) => acc.extend(self.failed(&r, &de.path(), e)?),
                }
                Ok::<_, DigestError>(acc)
            })
            .try_for_each(|acc| {
                push(acc?);
                Ok(())
            })
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

/// Hashes everything under `root` (or `root` itself if it is not a
/// directory; the entry is then named by the file name).
pub fn hash_tree(root: &Path, opts: &WalkOptions) -> Result<Tree, DigestError> {
    hash_tree_cached(root, opts, None)
}

/// [`hash_tree`], reusing digests from `cache` for files whose stat key
/// it vouches for.
pub fn hash_tree_cached(
    root: &Path,
    opts: &WalkOptions,
    cache: Option<&dyn DigestCache>,
) -> Result<Tree, DigestError> {
    let excludes = Excludes::new(&opts.excludes)?;
    let meta = std::fs::metadata(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DigestError::Missing {
            path: root.display().to_string(),
        },
        _ => DigestError::Unreadable {
            path: root.display().to_string(),
            source: e,
        },
    })?;
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
    let walker = Walker {
        opts,
        excludes,
        cache,
        progress,
    };
    let mut entries = if meta.is_dir() {
        // A cache is keyed by canonical absolute paths (the watcher's view);
        // walking from the canonical root makes a relative or symlinked
        // root hit it too.
        let canonical = cache.and_then(|_| std::fs::canonicalize(root).ok());
        let sink = std::sync::Mutex::new(Vec::new());
        walker.walk_dir(
            canonical.as_deref().unwrap_or(root),
            &RelPath::default(),
            &sink,
        )?;
        sink.into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    } else {
        let name = RelPath::from_bytes(
            root.file_name()
                .map(|n| n.as_bytes())
                .unwrap_or(b"")
                .to_vec(),
        );
        // The user named this path, so a link here is followed; O_NOFOLLOW
        // applies to what we find inside roots.
        let real = std::fs::canonicalize(root).map_err(|e| io_error(root, e))?;
        let mut out = Vec::new();
        walker.visit(&real, name, meta.file_type(), None, &mut out)?;
        out
    };
    if let Some(p) = walker.progress {
        p.finish_and_clear();
    }
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(Tree {
        root: root.to_path_buf(),
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prehash_refuses_fresh_files_and_non_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, vec![7u8; 300_000]).unwrap();
        // Just written: too fresh for a one-hour margin.
        assert!(matches!(
            prehash(&f, false, 3_600_000_000_000).unwrap(),
            Prehash::TooFresh
        ));
        match prehash(&f, true, 0).unwrap() {
            Prehash::Hashed(d, k) => {
                assert_eq!(d.sha256, hash_file(&f).unwrap());
                assert_eq!(d.size, 300_000);
                assert!(d.git_blob.is_some());
                assert_eq!(k, StatKey::of(&std::fs::metadata(&f).unwrap()));
            }
            other => panic!("expected a digest, got {other:?}"),
        }
        let fifo = dir.path().join("p");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(
            prehash(&fifo, false, 0).unwrap(),
            Prehash::NotAFile
        ));
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(
            prehash(&link, false, 0).is_err(),
            "links are never followed"
        );
    }
}
