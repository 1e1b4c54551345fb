//! Observe while the build runs: keep an index of every file below the
//! watched roots current from inotify events, hashing each file soon after
//! its writer closes it, so that when the build ends the index already is
//! the tree, and finalizing costs what changed in the last moments, not a
//! walk of 100k files.
//!
//! Why the index can be trusted at the end (and when it is not):
//! * every change to a file's content raises an event on its directory:
//!   `write` raises `IN_MODIFY`, a writer's close `IN_CLOSE_WRITE` (also
//!   after writes through `mmap`: the mapping holds the file open, so the
//!   close comes when the last mapping goes), `truncate` by path
//!   `IN_MODIFY`; a file is hashed only after its latest event, and a hash
//!   that started before a later event is thrown away (generations);
//! * events are queued by the kernel inside the system call that caused
//!   them, so once the builder has exited every event it caused is in the
//!   queue; [`Watch::finish`] reads the queue until it is empty before it
//!   looks at the index;
//! * a directory is watched before it is listed, so files created before
//!   its watch existed are found by the listing, later ones by events;
//! * what inotify cannot promise makes the root *degraded*, and a degraded
//!   root is hashed from scratch at the end, exactly as `provenant digest`
//!   would: a queue overflow (`IN_Q_OVERFLOW`), a directory that cannot be
//!   watched (the `fs.inotify.max_user_watches` limit), the root itself
//!   moved or unmounted, and file systems where other machines write
//!   without local events (NFS, CIFS, FUSE, Ceph, 9p). The cost of a lost
//!   event is time, never accuracy.
//!
//! One caveat is inherent to watching directories: a file in the workspace
//! that also has a hard link outside it, written through that other name,
//! raises no event here. Such a file would be recorded with the digest of
//! its last write through the workspace; the consumer who checks the
//! artefact against the attestation then finds a mismatch and rejects it
//! (the error fails closed). `record --recheck full` re-hashes everything
//! at the end for those who want no caveat at all.
mod events;
mod hasher;
mod index;
mod inotify;
mod observed;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::digest::{
    self, DigestError, Entry, EntryKind, ErrorPolicy, Excludes, RelPath, Tree, WalkOptions,
};
use events::{degrade, Loop};
use hasher::hash_jobs;
use index::{join, subtree_keys, Due, Node, State, TopIndex, Touch};
pub use observed::Observed;

/// A file written but not closed is hashed once it has been this quiet
/// (a log the build keeps open, a file created by `link` or `mknod`).
pub const IDLE: Duration = Duration::from_millis(500);
/// How long the watcher lets events pile up before reading them: one
/// wakeup per batch instead of one per event. The kernel queues 16384
/// events per watcher by default; a build would have to raise more than a
/// million a second to overflow it in this time.
pub const BATCH: Duration = Duration::from_millis(10);
/// Hash jobs handed to a thread at once.
const CHUNK: usize = 128;
/// Event buffers read before the batch is processed, in a long burst.
const READS_PER_BATCH: usize = 16;

/// Counters for the log line at the end.
#[derive(Default, Debug)]
pub struct WatchStats {
    pub events: AtomicU64,
    pub hashed: AtomicU64,
    /// Hashes thrown away because the file changed while they ran.
    pub stale: AtomicU64,
    pub dirs: AtomicU64,
    pub overflows: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Excludes(#[from] DigestError),
    #[error("cannot start the watcher: {0}")]
    Start(String),
}

#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub excludes: Vec<String>,
    pub git_blobs: bool,
    /// Threads hashing while the build runs. Fewer than the cores, so the
    /// build keeps the machine.
    pub threads: usize,
    /// See [`BATCH`].
    pub batch: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        WatchOptions {
            excludes: Vec::new(),
            git_blobs: false,
            threads: (cores / 2).max(1),
            batch: BATCH,
        }
    }
}

/// A watched directory tree; roots inside another root are served from
/// the outer one's index.
#[derive(Debug, Clone)]
struct Top {
    abs: PathBuf,
    /// The root, opened when the watch starts: every directory below it is
    /// opened relative to it, never through a link (`OpenDir::open_beneath`).
    fd: Arc<OwnedFd>,
    /// Roots below this one, relative to it.
    nested: Vec<Vec<u8>>,
}

struct Shared {
    index: Mutex<Vec<TopIndex>>,
    inflight: Mutex<usize>,
    settled: Condvar,
    finishing: AtomicBool,
    stats: WatchStats,
    /// [`crate::testhook::BEFORE_HASH`], read once when the watch starts.
    pause_before_hash: Option<PathBuf>,
}

/// `path` made absolute, if no component of it is a link (then it is
/// its own canonical form, `.` and `..` aside).
pub(crate) fn unlinked(path: &Path) -> Option<PathBuf> {
    let canon = std::fs::canonicalize(path).ok()?;
    // `a/../b` resolves lexically to the same place when nothing is a link.
    if digest::normalized(path) == canon {
        return Some(canon);
    }
    tracing::warn!(root = %crate::escape::path(path), "a symbolic link in the root's path: not watched, and refused when the build ends");
    None
}

/// `rel`'s directory and last component.
fn split_name(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&rel[..0], rel),
    }
}

impl Top {
    /// The directory `rel` below this root, no link followed on the way.
    fn open_dir(&self, rel: &[u8]) -> std::io::Result<digest::OpenDir> {
        use std::os::fd::AsFd;
        digest::OpenDir::open_beneath(self.fd.as_fd(), RelPath::from_bytes(rel).as_path())
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TopIndex>> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running watch. [`Watch::finish`] ends it and hands over the index.
pub struct Watch {
    shared: Arc<Shared>,
    tops: Arc<Vec<Top>>,
    wake: Arc<OwnedFd>,
    thread: Option<std::thread::JoinHandle<Loop>>,
    excludes: Excludes,
    git_blobs: bool,
    /// The inotify descriptor once the loop stopped: see
    /// [`Observed::unwatch`].
    leftover: Option<inotify::Inotify>,
}

struct Job {
    top: usize,
    rel: RelPath,
    gen: u32,
}

struct Move {
    top: usize,
    rel: RelPath,
    is_dir: bool,
    batch: u64,
}

/// File systems on which other machines can change files without a local
/// inotify event (statfs magic numbers from linux/magic.h).
fn remote_fs(path: &Path) -> Option<&'static str> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs fills the zeroed struct; c is NUL-terminated.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    match s.f_type as i64 {
        0x6969 => Some("NFS"),
        0xFF534D42 => Some("CIFS"),
        0xFE534D42 => Some("SMB2"),
        0x65735546 => Some("FUSE"),
        0x00C36400 => Some("Ceph"),
        0x01021997 => Some("9p"),
        0x6B414653 => Some("AFS"),
        0x47504653 => Some("GPFS"),
        _ => None,
    }
}

impl Watch {
    /// Starts watching `roots` (directories) recursively and queues what is
    /// already there for hashing. Roots that are not directories now are
    /// skipped; [`Observed::tree`] gives `None` for them.
    pub fn start(roots: &[PathBuf], opts: &WatchOptions) -> Result<Watch, WatchError> {
        let excludes = Excludes::new(&opts.excludes)?;
        // A root whose path runs through a link is not watched: in a pod
        // the roots are volume mounts, so a link on the way was put there
        // by the builder (the key's directory as an input, say), and it is
        // refused when the build ends (`Observed::tree`, the sidecar's
        // walk with `root_nofollow`), not hashed through.
        let mut canon: Vec<PathBuf> = roots
            .iter()
            .filter(|r| r.is_dir())
            .filter_map(|r| unlinked(r))
            .collect();
        canon.sort();
        canon.dedup();
        let mut tops: Vec<Top> = Vec::new();
        for r in canon {
            match tops.iter_mut().find(|t| r.starts_with(&t.abs)) {
                Some(t) => {
                    let rel = r.strip_prefix(&t.abs).unwrap_or(Path::new(""));
                    t.nested.push(rel.as_os_str().as_bytes().to_vec());
                }
                None => {
                    use std::os::unix::fs::OpenOptionsExt;
                    // Canonical, so no link is left in it to refuse.
                    let opened = std::fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
                        .open(&r);
                    // Gone or swapped since: not watched, hashed at the end.
                    let Ok(fd) = opened else {
                        continue;
                    };
                    tops.push(Top {
                        abs: r,
                        fd: Arc::new(fd.into()),
                        nested: Vec::new(),
                    })
                }
            }
        }
        let tops = Arc::new(tops);
        let ino =
            inotify::Inotify::new().map_err(|e| WatchError::Start(format!("inotify: {e}")))?;
        // SAFETY: plain system call with flag arguments.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake < 0 {
            return Err(WatchError::Start(format!(
                "eventfd: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(wake) });
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads.max(1))
            .thread_name(|i| format!("provenant-hash-{i}"))
            .build()
            .map_err(|e| WatchError::Start(e.to_string()))?;
        let shared = Arc::new(Shared {
            index: Mutex::new(tops.iter().map(|_| TopIndex::default()).collect()),
            inflight: Mutex::new(0),
            settled: Condvar::new(),
            finishing: AtomicBool::new(false),
            stats: WatchStats::default(),
            pause_before_hash: crate::testhook::flag(crate::testhook::BEFORE_HASH),
        });
        let mut lp = Loop {
            ino,
            wake: wake.clone(),
            tops: tops.clone(),
            excludes: excludes.clone(),
            git_blobs: opts.git_blobs,
            dirs: HashMap::new(),
            dir_wds: tops.iter().map(|_| BTreeMap::new()).collect(),
            moves: HashMap::new(),
            idle: VecDeque::new(),
            touched: Vec::new(),
            jobs: Vec::new(),
            shared: shared.clone(),
            pool: Arc::new(pool),
            batch: opts.batch,
            buf: vec![0u8; 64 * 1024],
            batch_no: 0,
            pause_before_scan: crate::testhook::flag(crate::testhook::BEFORE_SCAN),
        };
        {
            let shared = shared.clone();
            let mut ix = shared.lock();
            for (i, t) in tops.iter().enumerate() {
                if let Some(fs) = remote_fs(&t.abs) {
                    degrade(
                        &mut ix[i],
                        format!(
                            "{} is on {fs}, where inotify does not see writes from other machines",
                            t.abs.display()
                        ),
                    );
                    continue;
                }
                lp.scan(&mut ix, i, RelPath::default(), None);
                tracing::info!(root = %t.abs.display(), "watching");
            }
            lp.end_batch(&mut ix);
        }
        lp.dispatch();
        let thread = std::thread::Builder::new()
            .name("provenant-watch".into())
            .spawn(move || lp.run())
            .map_err(|e| WatchError::Start(e.to_string()))?;
        Ok(Watch {
            shared,
            tops,
            wake,
            thread: Some(thread),
            excludes,
            git_blobs: opts.git_blobs,
            leftover: None,
        })
    }

    pub fn stats(&self) -> &WatchStats {
        &self.shared.stats
    }

    /// The build is over: reads every event still queued, waits for the
    /// hashing threads, and hands over the index. Everything the builder
    /// did before this call is in it (see the module comment).
    pub fn finish(mut self) -> Observed {
        self.stop();
        let index = std::mem::take(&mut *self.shared.lock());
        Observed {
            leftover: self.leftover.take(),
            consumed: vec![false; self.tops.len()],
            tops: self.tops.iter().cloned().zip(index).collect(),
            excludes: self.excludes.clone(),
            git_blobs: self.git_blobs,
        }
    }

    fn stop(&mut self) {
        self.shared.finishing.store(true, Ordering::SeqCst);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        unsafe {
            libc::write(
                self.wake.as_raw_fd(),
                (&one as *const u64).cast::<libc::c_void>(),
                8,
            )
        };
        let t0 = Instant::now();
        if let Some(t) = self.thread.take() {
            match t.join() {
                // Its tables go now (they would pin memory pages the index
                // shared with them); the descriptor later.
                Ok(lp) => self.leftover = Some(lp.ino),
                // A bug, not an input: what the index holds may be stale.
                Err(_) => {
                    let mut ix = self.shared.lock();
                    for (i, t) in self.tops.iter().enumerate() {
                        degrade(
                            &mut ix[i],
                            format!("{}: the watcher thread failed", t.abs.display()),
                        );
                    }
                }
            }
        }
        let joined = t0.elapsed();
        let mut n = self
            .shared
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *n > 0 {
            n = self
                .shared
                .settled
                .wait(n)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let st = &self.shared.stats;
        tracing::debug!(
            drain_us = joined.as_micros() as u64,
            settle_us = (t0.elapsed() - joined).as_micros() as u64,
            events = st.events.load(Ordering::Relaxed),
            hashed = st.hashed.load(Ordering::Relaxed),
            stale = st.stale.load(Ordering::Relaxed),
            dirs = st.dirs.load(Ordering::Relaxed),
            overflows = st.overflows.load(Ordering::Relaxed),
            "watch stopped"
        );
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

impl crate::error::ExitClass for WatchError {
    fn exit_code(&self) -> i32 {
        match self {
            WatchError::Excludes(e) => crate::error::ExitClass::exit_code(e),
            WatchError::Start(_) => crate::error::exit::CANNOT_CHECK,
        }
    }
}
