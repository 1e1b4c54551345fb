//! Observe while the build runs: watch workspace roots with inotify (crate
//! `notify`) and hash files soon after the builder closes them, so that at
//! the end only what changed since needs reading.
//!
//! Correctness never depends on inotify. Events are only hints about what
//! to pre-hash; the final walk ([`crate::digest::hash_tree_cached`]) stats
//! every file and reuses a digest only when the file's stat key (device,
//! inode, size, mode, mtime, ctime) is exactly the one it had when hashed,
//! and the file was already older than [`RACY_MARGIN`] at that time, so a
//! rewrite in the same timestamp tick cannot go unnoticed (git's "racily
//! clean" rule). Lost events (queue overflow, watch limit, directories
//! created and filled before their watch existed) therefore cost time, never
//! accuracy: the final attestation is what a full post-hoc hash gives.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};

use crate::digest::{
    prehash, DigestCache, DigestError, Excludes, FileDigest, Prehash, RelPath, StatKey,
};

/// Larger than the coarse kernel clock tick that stamps mtime/ctime (at most
/// 10 ms at HZ=100), with room to spare.
pub const RACY_MARGIN: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy)]
struct Cached {
    key: StatKey,
    digest: FileDigest,
}

/// Digests the watcher computed, keyed by absolute path.
#[derive(Default)]
pub struct WatchCache {
    // Read-mostly at finalize, when every file of the tree is looked up
    // from all cores at once.
    map: RwLock<HashMap<PathBuf, Cached>>,
    hits: AtomicU64,
}

impl WatchCache {
    pub fn len(&self) -> usize {
        self.map.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    fn valid(&self, abs: &Path, key: &StatKey) -> bool {
        self.map
            .read()
            .map(|m| m.get(abs).is_some_and(|c| c.key == *key))
            .unwrap_or(false)
    }

    fn insert(&self, abs: PathBuf, key: StatKey, digest: FileDigest) {
        if let Ok(mut m) = self.map.write() {
            m.insert(abs, Cached { key, digest });
        }
    }

    /// Forgets `abs`. Entries below a directory that moved away stay until
    /// overwritten: a stale entry can never produce a wrong digest (a
    /// lookup needs the same device, inode, size, mtime and ctime, and a
    /// rename changes ctime), and pruning by prefix on every removal costs
    /// a scan of the whole map per event, quadratic for a build that
    /// deletes many temporary files.
    fn forget(&self, abs: &Path) {
        if let Ok(mut m) = self.map.write() {
            m.remove(abs);
        }
    }
}

impl DigestCache for WatchCache {
    fn lookup(&self, abs: &Path, key: &StatKey, need_git_blob: bool) -> Option<FileDigest> {
        let m = self.map.read().ok()?;
        let c = m.get(abs)?;
        if c.key != *key || (need_git_blob && c.digest.git_blob.is_none()) {
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(c.digest)
    }
}

/// Counters for the log line at the end.
#[derive(Default, Debug)]
pub struct WatchStats {
    pub events: AtomicU64,
    pub hashed: AtomicU64,
    pub overflows: AtomicU64,
    pub rescans: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Excludes(#[from] DigestError),
    #[error("cannot start the hashing threads: {0}")]
    Pool(String),
}

#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub excludes: Vec<String>,
    pub git_blobs: bool,
    /// Threads hashing while the build runs. Fewer than the cores, so the
    /// build keeps the machine.
    pub threads: usize,
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
        }
    }
}

/// A running watch. Dropping it stops the watch.
pub struct Watch {
    cache: Arc<WatchCache>,
    stats: Arc<WatchStats>,
    inotify: Option<notify::RecommendedWatcher>,
    stop: Option<Sender<Msg>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    worker: Option<std::thread::JoinHandle<()>>,
}

enum Msg {
    Event(notify::Result<Event>),
    Stop,
}

struct Root {
    abs: PathBuf,
}

struct Worker {
    roots: Vec<Root>,
    excludes: Excludes,
    git_blobs: bool,
    cache: Arc<WatchCache>,
    stats: Arc<WatchStats>,
    pool: rayon::ThreadPool,
    pending: Pending,
    /// Set by [`Watch::stop`]: quit without working through the backlog.
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

/// Files waiting to be hashed. Every file waits [`RACY_MARGIN`] after its
/// last event (hashing sooner would only find it too fresh to trust), so
/// due times grow in insertion order and a FIFO is enough: each wakeup
/// costs what is due, not what is pending. A build writing 100k files
/// keeps thousands pending, and scanning them all on each of its ~300k
/// events made the sidecar cost more CPU than the build.
#[derive(Default)]
struct Pending {
    queue: std::collections::VecDeque<(Instant, PathBuf)>,
    /// Paths queued and not cancelled since; a queue entry whose path is
    /// absent here was cancelled (lazy deletion).
    live: std::collections::HashSet<PathBuf>,
}

impl Pending {
    fn push(&mut self, p: PathBuf, due: Instant) {
        if self.live.insert(p.clone()) {
            self.queue.push_back((due, p));
        }
    }

    fn cancel(&mut self, p: &Path) {
        self.live.remove(p);
    }

    fn next_due(&mut self) -> Option<Instant> {
        while let Some((due, p)) = self.queue.front() {
            if self.live.contains(p) {
                return Some(*due);
            }
            self.queue.pop_front();
        }
        None
    }

    fn take_due(&mut self, now: Instant) -> Vec<PathBuf> {
        let mut out = Vec::new();
        while self.queue.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, p)) = self.queue.pop_front() {
                if self.live.remove(&p) {
                    out.push(p);
                }
            }
        }
        out
    }
}

impl Watch {
    /// Starts watching `roots` (directories) recursively and pre-hashes what
    /// is already there. Roots that cannot be watched are logged and left
    /// to the final walk.
    pub fn start(roots: &[PathBuf], opts: &WatchOptions) -> Result<Watch, WatchError> {
        let excludes = Excludes::new(&opts.excludes)?;
        let cache = Arc::new(WatchCache::default());
        let stats = Arc::new(WatchStats::default());
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let events = tx.clone();
        let inotify = notify::recommended_watcher(move |res| {
            let _ = events.send(Msg::Event(res));
        });
        let mut inotify = match inotify {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot use inotify; every file is hashed at finalize");
                None
            }
        };
        let abs_roots: Vec<Root> = roots
            .iter()
            .map(|r| Root {
                abs: std::fs::canonicalize(r)
                    .unwrap_or_else(|_| std::path::absolute(r).unwrap_or(r.clone())),
            })
            .collect();
        if let Some(w) = inotify.as_mut() {
            for r in &abs_roots {
                if let Err(e) = w.watch(&r.abs, RecursiveMode::Recursive) {
                    let hint = if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                        " (raise fs.inotify.max_user_watches)"
                    } else {
                        ""
                    };
                    tracing::warn!(root = %r.abs.display(), error = %e, "cannot watch{hint}; its files are hashed at finalize");
                } else {
                    tracing::info!(root = %r.abs.display(), "watching");
                }
            }
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads.max(1))
            .thread_name(|i| format!("provenant-watch-{i}"))
            .build()
            .map_err(|e| WatchError::Pool(e.to_string()))?;
        let mut worker = Worker {
            roots: abs_roots,
            excludes,
            git_blobs: opts.git_blobs,
            cache: cache.clone(),
            stats: stats.clone(),
            pool,
            pending: Pending::default(),
            stopping: stopping.clone(),
        };
        // Files that exist before the first event are pre-hashed too.
        worker.rescan();
        let handle = std::thread::Builder::new()
            .name("provenant-watch".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| WatchError::Pool(e.to_string()))?;
        Ok(Watch {
            cache,
            stats,
            inotify,
            stop: Some(tx),
            stopping,
            worker: Some(handle),
        })
    }

    pub fn cache(&self) -> &WatchCache {
        &self.cache
    }

    pub fn stats(&self) -> &WatchStats {
        &self.stats
    }

    /// Stops watching; digests already computed stay usable. Events still
    /// queued are dropped: once the build is over, the final walk hashes
    /// whatever the watcher had not, on all cores, and a watcher working
    /// through its backlog would only compete with it.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.inotify = None;
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(Msg::Stop);
        }
        if let Some(h) = self.worker.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            if self.stopping.load(Ordering::Relaxed) {
                return;
            }
            match self.pending.next_due() {
                // Nothing to hash: block until the build does something.
                None => match rx.recv() {
                    Ok(Msg::Event(ev)) => self.on_event(ev),
                    Ok(Msg::Stop) | Err(_) => return,
                },
                // Sleep until the oldest file is due, while events pile up
                // in the channel: one wakeup per batch instead of one per
                // event (a build writing 100k files sends ~300k events).
                // `Watch::stop` unparks us.
                Some(due) => {
                    let now = Instant::now();
                    if due > now {
                        std::thread::park_timeout(due - now);
                    }
                }
            }
            while let Ok(m) = rx.try_recv() {
                if self.stopping.load(Ordering::Relaxed) {
                    return;
                }
                match m {
                    Msg::Event(ev) => self.on_event(ev),
                    Msg::Stop => return,
                }
            }
            self.hash_due();
        }
    }

    fn under_root(&self, p: &Path) -> Option<RelPath> {
        use std::os::unix::ffi::OsStrExt;
        self.roots.iter().find_map(|r| {
            p.strip_prefix(&r.abs)
                .ok()
                .map(|rel| RelPath::from_bytes(rel.as_os_str().as_bytes()))
        })
    }

    fn schedule(&mut self, p: PathBuf) {
        let Some(rel) = self.under_root(&p) else {
            return;
        };
        if self.excludes.excluded(&rel, false) {
            return;
        }
        self.pending.push(p, Instant::now() + RACY_MARGIN);
    }

    fn on_event(&mut self, ev: notify::Result<Event>) {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "watch error; affected files are hashed at finalize");
                return;
            }
        };
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        if ev.need_rescan() {
            self.stats.overflows.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("inotify queue overflowed: rescanning the workspace; nothing is lost, the final walk checks every file");
            self.rescan();
            return;
        }
        match ev.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To))
            | EventKind::Create(CreateKind::File) => {
                for p in ev.paths {
                    self.schedule(p);
                }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                let mut paths = ev.paths.into_iter();
                if let Some(from) = paths.next() {
                    self.cache.forget(&from);
                    self.pending.cancel(&from);
                }
                for to in paths {
                    self.scan_or_schedule(to);
                }
            }
            EventKind::Create(CreateKind::Folder) => {
                // Files created before the new directory's watch existed
                // produced no events: list it now.
                for p in ev.paths {
                    self.scan_dir(&p);
                }
            }
            EventKind::Remove(RemoveKind::File | RemoveKind::Folder | RemoveKind::Any)
            | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                for p in ev.paths {
                    self.cache.forget(&p);
                    self.pending.cancel(&p);
                }
            }
            _ => {}
        }
    }

    fn scan_or_schedule(&mut self, p: PathBuf) {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => self.scan_dir(&p),
            Ok(m) if m.is_file() => self.schedule(p),
            _ => {}
        }
    }

    fn rescan(&mut self) {
        self.stats.rescans.fetch_add(1, Ordering::Relaxed);
        let roots: Vec<PathBuf> = self.roots.iter().map(|r| r.abs.clone()).collect();
        for r in roots {
            self.scan_dir(&r);
        }
    }

    /// Schedules every regular file below `dir` that the cache does not
    /// already hold at its current stat key.
    fn scan_dir(&mut self, dir: &Path) {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for de in rd.flatten() {
                let p = de.path();
                let Ok(ft) = de.file_type() else { continue };
                let Some(rel) = self.under_root(&p) else {
                    continue;
                };
                if self.excludes.excluded(&rel, ft.is_dir()) {
                    continue;
                }
                if ft.is_dir() {
                    stack.push(p);
                } else if ft.is_file() {
                    let fresh = de
                        .metadata()
                        .map(|m| self.cache.valid(&p, &StatKey::of(&m)))
                        .unwrap_or(false);
                    if !fresh {
                        self.schedule(p);
                    }
                }
            }
        }
    }

    fn hash_due(&mut self) {
        let now = Instant::now();
        let due = self.pending.take_due(now);
        if due.is_empty() {
            return;
        }
        let git_blobs = self.git_blobs;
        let cache = self.cache.clone();
        let stats = self.stats.clone();
        let stopping = self.stopping.clone();
        let retry: Vec<PathBuf> = self.pool.install(|| {
            use rayon::prelude::*;
            due.into_par_iter()
                .filter_map(|p| {
                    if stopping.load(Ordering::Relaxed) {
                        return None;
                    }
                    match prehash(&p, git_blobs, RACY_MARGIN.as_nanos() as i128) {
                        Ok(Prehash::Hashed(d, k)) => {
                            stats.hashed.fetch_add(1, Ordering::Relaxed);
                            cache.insert(p, k, d);
                            None
                        }
                        // Come back when it is old enough (a later write
                        // would reschedule it anyway).
                        Ok(Prehash::TooFresh) => Some(p),
                        Ok(Prehash::NotAFile) | Err(_) => {
                            // Gone, replaced or changed while read: the next
                            // event or the final walk takes care of it.
                            cache.forget(&p);
                            None
                        }
                    }
                })
                .collect()
        });
        let due = Instant::now() + RACY_MARGIN;
        for p in retry {
            self.pending.push(p, due);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_is_fifo_deduplicated_and_cancellable() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        p.push("/a".into(), t0);
        p.push("/b".into(), t0 + Duration::from_millis(10));
        p.push("/a".into(), t0 + Duration::from_millis(20)); // already queued
        p.push("/c".into(), t0 + Duration::from_millis(30));
        p.cancel(Path::new("/b"));
        assert_eq!(p.next_due(), Some(t0));
        assert_eq!(
            p.take_due(t0 + Duration::from_millis(15)),
            vec![PathBuf::from("/a")]
        );
        // /b was cancelled: the next one due is /c.
        assert_eq!(p.next_due(), Some(t0 + Duration::from_millis(30)));
        // A cancelled path queued again is live again.
        p.push("/b".into(), t0 + Duration::from_millis(40));
        assert_eq!(
            p.take_due(t0 + Duration::from_secs(1)),
            vec![PathBuf::from("/c"), PathBuf::from("/b")]
        );
        assert_eq!(p.next_due(), None);
    }
}
