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
mod index;
mod inotify;

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
use index::{join, subtree_keys, Due, Node, State, TopIndex, Touch};

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
    /// Roots below this one, relative to it.
    nested: Vec<Vec<u8>>,
}

struct Shared {
    index: Mutex<Vec<TopIndex>>,
    inflight: Mutex<usize>,
    settled: Condvar,
    finishing: AtomicBool,
    stats: WatchStats,
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
        let mut canon: Vec<PathBuf> = roots
            .iter()
            .filter(|r| r.is_dir())
            .filter_map(|r| std::fs::canonicalize(r).ok())
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
                None => tops.push(Top {
                    abs: r,
                    nested: Vec::new(),
                }),
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

/// The event loop's own state; only its thread touches it.
struct Loop {
    ino: inotify::Inotify,
    wake: Arc<OwnedFd>,
    tops: Arc<Vec<Top>>,
    excludes: Excludes,
    git_blobs: bool,
    /// Watch descriptor -> (root, directory relative to it).
    dirs: HashMap<i32, (usize, RelPath)>,
    /// Per root: directory -> watch descriptor, for renames and removals
    /// of whole directories.
    dir_wds: Vec<BTreeMap<RelPath, i32>>,
    /// `IN_MOVED_FROM` waiting for its `IN_MOVED_TO`, by cookie.
    moves: HashMap<u32, Move>,
    /// Files written but not closed: (quiet after, root, path, generation).
    idle: VecDeque<(Instant, usize, RelPath, u32)>,
    /// Nodes touched in this batch.
    touched: Vec<(usize, RelPath)>,
    jobs: Vec<Job>,
    shared: Arc<Shared>,
    pool: Arc<rayon::ThreadPool>,
    batch: Duration,
    buf: Vec<u8>,
    batch_no: u64,
}

fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) {
    let ms = timeout.map_or(-1, |t| t.as_millis().min(60_000) as libc::c_int);
    // SAFETY: fds is a valid array of pollfd.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
}

impl Loop {
    /// Returns itself once drained, so that the caller decides where the
    /// (slow) cleanup happens.
    fn run(mut self) -> Loop {
        loop {
            let timeout = self
                .idle
                .front()
                // Not sooner than a batch: files going quiet a moment apart
                // are taken together, not one wakeup each.
                .map(|(t, ..)| t.saturating_duration_since(Instant::now()).max(self.batch))
                .or((!self.moves.is_empty()).then_some(self.batch));
            let mut fds = [
                libc::pollfd {
                    fd: self.ino.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            poll(&mut fds, timeout);
            if fds[1].revents != 0 {
                self.drain();
                return self;
            }
            if fds[0].revents != 0 {
                // Let events pile up: one wakeup per batch, not per event.
                let mut w = [fds[1]];
                poll(&mut w, Some(self.batch));
                if w[0].revents != 0 {
                    self.drain();
                    return self;
                }
            }
            let shared = self.shared.clone();
            let mut ix = shared.lock();
            self.read_events(&mut ix, READS_PER_BATCH);
            self.end_batch(&mut ix);
            drop(ix);
            self.dispatch();
        }
    }

    /// Reads and applies up to `max` buffers of events, fewer when the
    /// queue runs empty.
    fn read_events(&mut self, ix: &mut [TopIndex], max: usize) {
        for _ in 0..max {
            match self.read_batch(ix) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    self.degrade_all(ix, &format!("reading its inotify events: {e}"));
                    return;
                }
            }
        }
    }

    /// Every root loses its index (events were lost for all of them).
    fn degrade_all(&self, ix: &mut [TopIndex], why: &str) {
        for (i, t) in self.tops.iter().enumerate() {
            degrade(&mut ix[i], format!("{}: {why}", t.abs.display()));
        }
    }

    /// Reads and applies one buffer of events; false when none were queued.
    fn read_batch(&mut self, ix: &mut [TopIndex]) -> std::io::Result<bool> {
        let mut buf = std::mem::take(&mut self.buf);
        let n = self.ino.read(&mut buf);
        let result = n.map(|n| {
            for ev in inotify::events(&buf[..n]) {
                self.on_event(ix, ev);
            }
            n > 0
        });
        self.buf = buf;
        result
    }

    /// The build is over: apply every queued event, then stop. Files still
    /// due are left dirty for [`Observed`] to resolve on all cores.
    fn drain(&mut self) {
        let shared = self.shared.clone();
        let mut ix = shared.lock();
        self.read_events(&mut ix, usize::MAX);
        // Renamed away and never renamed back in: gone.
        for (_, m) in std::mem::take(&mut self.moves) {
            self.gone(&mut ix, m);
        }
        for (top, k) in std::mem::take(&mut self.touched) {
            if let Some(n) = ix[top].nodes.get_mut(k.as_bytes()) {
                n.due = Due::Nothing;
            }
        }
    }

    /// Whether `rel` is left out for every root that contains it (a root
    /// nested in this one has its own view of the same exclude globs).
    fn excluded(&self, top: usize, rel: &[u8], is_dir: bool) -> bool {
        if self.excludes.is_empty() || !self.excludes.excluded_bytes(rel, is_dir) {
            return false;
        }
        for n in &self.tops[top].nested {
            let inside = rel.len() > n.len() && rel.starts_with(n) && rel[n.len()] == b'/';
            if inside && !self.excludes.excluded_bytes(&rel[n.len() + 1..], is_dir) {
                return false;
            }
            // On the way to a nested root, or the root itself.
            let above = n.len() > rel.len() && n.starts_with(rel) && n[rel.len()] == b'/';
            if above || n.as_slice() == rel {
                return false;
            }
        }
        true
    }

    fn on_event(&mut self, ix: &mut [TopIndex], ev: inotify::Event<'_>) {
        self.shared.stats.events.fetch_add(1, Ordering::Relaxed);
        if ev.is(libc::IN_Q_OVERFLOW) {
            self.shared.stats.overflows.fetch_add(1, Ordering::Relaxed);
            self.degrade_all(
                ix,
                "the inotify queue overflowed (fs.inotify.max_queued_events)",
            );
            return;
        }
        if ev.is(libc::IN_IGNORED) {
            if let Some((t, d)) = self.dirs.remove(&ev.wd) {
                if self.dir_wds[t].get(d.as_bytes()) == Some(&ev.wd) {
                    self.dir_wds[t].remove(d.as_bytes());
                }
            }
            return;
        }
        let Some((top, dir)) = self.dirs.get(&ev.wd) else {
            return;
        };
        let top = *top;
        let at_root = dir.is_empty();
        let rel = join(dir.as_bytes(), ev.name);
        if ix[top].degraded.is_some() {
            return;
        }
        if ev.name.is_empty() {
            if at_root && ev.is(libc::IN_DELETE_SELF | libc::IN_MOVE_SELF | libc::IN_UNMOUNT) {
                let reason = format!(
                    "{} was moved, removed or unmounted",
                    self.tops[top].abs.display()
                );
                degrade(&mut ix[top], reason);
            }
            return;
        }
        let is_dir = ev.is(libc::IN_ISDIR);
        if self.excluded(top, &rel, is_dir) {
            return;
        }
        if ev.is(libc::IN_MOVED_FROM) {
            let m = Move {
                top,
                rel: RelPath::from_bytes(rel),
                is_dir,
                batch: self.batch_no,
            };
            if let Some(old) = self.moves.insert(ev.cookie, m) {
                self.gone(ix, old);
            }
            return;
        }
        if ev.is(libc::IN_MOVED_TO) {
            match self.moves.remove(&ev.cookie) {
                Some(m) if m.top == top && m.is_dir == is_dir => {
                    if is_dir {
                        self.move_dir(ix, top, m.rel.as_bytes(), &rel);
                    } else {
                        self.move_file(ix, top, m.rel.as_bytes(), &rel);
                    }
                }
                other => {
                    if let Some(m) = other {
                        self.gone(ix, m);
                    }
                    self.appeared(ix, top, rel, is_dir);
                }
            }
            return;
        }
        if is_dir {
            if ev.is(libc::IN_CREATE) {
                self.appeared(ix, top, rel, true);
            } else if ev.is(libc::IN_DELETE) {
                ix[top].take_subtree(&rel);
                self.forget_dir(top, &rel);
            }
            return;
        }
        if ev.is(libc::IN_DELETE) {
            ix[top].remove(&rel);
            return;
        }
        let what = if ev.is(libc::IN_CLOSE_WRITE) {
            Touch::Closed
        } else if ev.is(libc::IN_CREATE | libc::IN_MODIFY) {
            Touch::Write
        } else if ev.is(libc::IN_ATTRIB) {
            Touch::Attrib
        } else {
            return;
        };
        if ev.is(libc::IN_CREATE) {
            // A directory of that name is gone (its own events said so).
            ix[top].take_subtree(&rel);
        }
        if ix[top].touch(&rel, what) {
            self.touched.push((top, RelPath::from_bytes(rel)));
        }
    }

    /// A file or directory that is complete as it is: renamed in from
    /// outside the root, or a new directory (listed after it is watched).
    fn appeared(&mut self, ix: &mut [TopIndex], top: usize, rel: Vec<u8>, is_dir: bool) {
        if is_dir {
            ix[top].remove(&rel);
            self.scan(ix, top, RelPath::from_bytes(rel), None);
        } else {
            ix[top].take_subtree(&rel);
            if ix[top].touch(&rel, Touch::Appeared) {
                self.touched.push((top, RelPath::from_bytes(rel)));
            }
        }
    }

    /// A file renamed inside the root keeps its digest when the file now at
    /// `to` is the inode that was hashed; anything else is hashed again.
    fn move_file(&mut self, ix: &mut [TopIndex], top: usize, from: &[u8], to: &[u8]) {
        use std::os::unix::fs::MetadataExt;
        let t = &mut ix[top];
        t.take_subtree(to);
        let node = t
            .remove(from)
            .filter(|n| matches!(n.state, State::Known(_)) && n.due == Due::Nothing && n.ino != 0);
        if let Some(mut n) = node {
            let abs = self.tops[top].abs.join(RelPath::from_bytes(to).as_path());
            if std::fs::symlink_metadata(&abs).is_ok_and(|m| m.ino() == n.ino) {
                n.gen = n.gen.wrapping_add(1);
                t.nodes.insert(RelPath::from_bytes(to), n);
                return;
            }
        }
        if t.touch(to, Touch::Appeared) {
            self.touched.push((top, RelPath::from_bytes(to)));
        }
    }

    /// A directory renamed inside the root: watched and listed again under
    /// its new name (the watch descriptors follow their inodes, so the same
    /// ones come back), each file keeping its digest when it is the inode
    /// that was hashed. Listing again also finds what a directory made,
    /// filled and renamed in one go held before it was ever listed.
    fn move_dir(&mut self, ix: &mut [TopIndex], top: usize, from: &[u8], to: &[u8]) {
        ix[top].take_subtree(to);
        ix[top].remove(to);
        let strip = from.len() + 1;
        let carried: HashMap<Vec<u8>, Node> = ix[top]
            .take_subtree(from)
            .into_iter()
            .filter(|(_, n)| {
                matches!(n.state, State::Known(_)) && n.due == Due::Nothing && n.ino != 0
            })
            .map(|(k, n)| (k.as_bytes()[strip..].to_vec(), n))
            .collect();
        // Their names are wrong now; the scan below maps them again.
        let mut old = subtree_keys(&self.dir_wds[top], from);
        old.push(RelPath::from_bytes(from));
        for k in old {
            if let Some(wd) = self.dir_wds[top].remove(k.as_bytes()) {
                self.dirs.remove(&wd);
            }
        }
        self.scan(ix, top, RelPath::from_bytes(to), Some(carried));
    }

    /// Renamed out of the root (no matching `IN_MOVED_TO`): forget it and
    /// stop watching what went with it.
    fn gone(&mut self, ix: &mut [TopIndex], m: Move) {
        if m.is_dir {
            ix[m.top].take_subtree(m.rel.as_bytes());
            ix[m.top].remove(m.rel.as_bytes());
            self.forget_dir(m.top, m.rel.as_bytes());
        } else {
            ix[m.top].remove(m.rel.as_bytes());
        }
    }

    /// Stops watching the directory `rel` and everything below it.
    fn forget_dir(&mut self, top: usize, rel: &[u8]) {
        let mut keys = subtree_keys(&self.dir_wds[top], rel);
        keys.push(RelPath::from_bytes(rel));
        for k in keys {
            if let Some(wd) = self.dir_wds[top].remove(k.as_bytes()) {
                self.dirs.remove(&wd);
                self.ino.remove(wd);
            }
        }
    }

    /// Watches the directory `start` and everything below it, then lists
    /// each (in that order, so nothing created in between is missed), and
    /// queues every file found. `carried`: nodes of a renamed directory, by
    /// path below it, kept for the files that are still those inodes.
    fn scan(
        &mut self,
        ix: &mut [TopIndex],
        top: usize,
        start: RelPath,
        mut carried: Option<HashMap<Vec<u8>, Node>>,
    ) {
        use std::os::unix::fs::MetadataExt;
        let strip = if start.is_empty() {
            0
        } else {
            start.as_bytes().len() + 1
        };
        let mut stack = vec![start];
        while let Some(d) = stack.pop() {
            let abs = self.tops[top].abs.join(d.as_path());
            match self.ino.add(&abs) {
                Ok(wd) => {
                    if let Some((t, old)) = self.dirs.insert(wd, (top, d.clone())) {
                        self.dir_wds[t].remove(old.as_bytes());
                    }
                    self.dir_wds[top].insert(d.clone(), wd);
                    self.shared.stats.dirs.fetch_add(1, Ordering::Relaxed);
                }
                // Gone or replaced by a file or link already: its events
                // in the parent tell the rest.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                    continue
                }
                Err(e) => {
                    let hint = if e.raw_os_error() == Some(libc::ENOSPC) {
                        " (raise fs.inotify.max_user_watches)"
                    } else {
                        ""
                    };
                    let reason = format!("cannot watch {}: {e}{hint}", abs.display());
                    degrade(&mut ix[top], reason);
                    return;
                }
            }
            let Ok(rd) = std::fs::read_dir(&abs) else {
                continue;
            };
            for de in rd.flatten() {
                let rel = join(d.as_bytes(), de.file_name().as_bytes());
                let is_dir = de.file_type().is_ok_and(|t| t.is_dir());
                if self.excluded(top, &rel, is_dir) {
                    continue;
                }
                if is_dir {
                    stack.push(RelPath::from_bytes(rel));
                    continue;
                }
                if let Some(c) = carried.as_mut() {
                    if let Some(mut n) = c.remove(&rel[strip..]) {
                        if de.metadata().is_ok_and(|m| m.ino() == n.ino) {
                            n.gen = n.gen.wrapping_add(1);
                            ix[top].nodes.insert(RelPath::from_bytes(rel), n);
                            continue;
                        }
                    }
                }
                if ix[top].touch(&rel, Touch::Appeared) {
                    self.touched.push((top, RelPath::from_bytes(rel)));
                }
            }
        }
    }

    /// Turns this batch's touched files into hash jobs or idle waits, and
    /// settles renames whose other half never came.
    fn end_batch(&mut self, ix: &mut [TopIndex]) {
        let now = Instant::now();
        for (top, k) in std::mem::take(&mut self.touched) {
            let Some(n) = ix[top].nodes.get_mut(k.as_bytes()) else {
                continue;
            };
            match n.due {
                Due::Hash => {
                    n.state = State::Queued;
                    self.jobs.push(Job {
                        top,
                        rel: k,
                        gen: n.gen,
                    });
                }
                Due::Idle => self.idle.push_back((now + IDLE, top, k, n.gen)),
                Due::Nothing => {}
            }
            n.due = Due::Nothing;
        }
        while self.idle.front().is_some_and(|(t, ..)| *t <= now) {
            let Some((_, top, k, gen)) = self.idle.pop_front() else {
                break;
            };
            if let Some(n) = ix[top].nodes.get_mut(k.as_bytes()) {
                if n.gen == gen && n.state == State::Dirty {
                    n.state = State::Queued;
                    self.jobs.push(Job { top, rel: k, gen });
                }
            }
        }
        // The two halves of a rename are queued within one system call,
        // so a half without its partner for a whole batch has none.
        let batch = self.batch_no;
        let old: Vec<u32> = self
            .moves
            .iter()
            .filter(|(_, m)| m.batch < batch)
            .map(|(c, _)| *c)
            .collect();
        for c in old {
            if let Some(m) = self.moves.remove(&c) {
                self.gone(ix, m);
            }
        }
        self.batch_no += 1;
    }

    fn dispatch(&mut self) {
        if self.jobs.is_empty() {
            return;
        }
        let jobs = std::mem::take(&mut self.jobs);
        {
            let mut n = self
                .shared
                .inflight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *n += jobs.len();
        }
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let chunk: Vec<Job> = jobs.by_ref().take(CHUNK).collect();
            let shared = self.shared.clone();
            let tops = self.tops.clone();
            let git_blobs = self.git_blobs;
            self.pool
                .spawn(move || hash_jobs(&shared, &tops, chunk, git_blobs));
        }
    }
}

/// Events for `ix` may have been lost: drop what it knows (nothing in it
/// can be trusted any more) and hash the root from scratch at the end.
fn degrade(ix: &mut TopIndex, reason: String) {
    if ix.degraded.is_none() {
        tracing::warn!(
            "{reason}: hashing this root from scratch at the end instead (slower, equally exact)"
        );
        ix.nodes = BTreeMap::new();
        ix.degraded = Some(reason);
    }
}

/// Runs on a hashing thread. Results go into the index only if no event
/// touched the file since the job was made.
fn hash_jobs(shared: &Shared, tops: &[Top], jobs: Vec<Job>, git_blobs: bool) {
    let count = jobs.len();
    let mut done = Vec::with_capacity(count);
    // Jobs come in directory order (a scan, a builder filling a
    // directory): the directory is opened once for all of its files. A
    // directory renamed meanwhile is harmless: every digest is kept with
    // the inode it was read from, and renames are checked against it.
    let mut dir: Option<(usize, Vec<u8>, digest::OpenDir)> = None;
    let mut name = Vec::new();
    for j in jobs {
        // Once the build is over, the rest is resolved on every core.
        if shared.finishing.load(Ordering::Relaxed) {
            done.push((j, None));
            continue;
        }
        let rel = j.rel.as_bytes();
        let (parent, base) = match rel.iter().rposition(|b| *b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&rel[..0], rel),
        };
        if !dir
            .as_ref()
            .is_some_and(|(t, p, _)| *t == j.top && p.as_slice() == parent)
        {
            let abs = tops[j.top].abs.join(RelPath::from_bytes(parent).as_path());
            dir = digest::OpenDir::open(&abs)
                .ok()
                .map(|d| (j.top, parent.to_vec(), d));
        }
        name.clear();
        name.extend_from_slice(base);
        name.push(0);
        let r = match (&dir, std::ffi::CStr::from_bytes_with_nul(&name)) {
            (Some((_, _, d)), Ok(c)) => d.hash_file(c, git_blobs).ok().flatten(),
            _ => None,
        };
        done.push((j, r));
    }
    {
        let mut ix = shared.lock();
        for (j, r) in done {
            let Some(n) = ix[j.top].nodes.get_mut(j.rel.as_bytes()) else {
                continue;
            };
            if n.gen != j.gen || n.state != State::Queued {
                shared.stats.stale.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match r {
                Some((kind, ino)) => {
                    shared.stats.hashed.fetch_add(1, Ordering::Relaxed);
                    n.state = State::Known(kind);
                    n.ino = ino;
                }
                None => n.state = State::Dirty,
            }
        }
    }
    let mut n = shared
        .inflight
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *n -= count;
    if *n == 0 {
        shared.settled.notify_all();
    }
}

/// The index once the build is over.
pub struct Observed {
    tops: Vec<(Top, TopIndex)>,
    leftover: Option<inotify::Inotify>,
    /// Tops whose entries a [`Observed::tree`] call took.
    consumed: Vec<bool>,
    excludes: Excludes,
    git_blobs: bool,
}

impl Observed {
    /// Resolves every file the watcher had not hashed yet (written in the
    /// last moments, still open, created by `link`...) on all cores.
    /// Failures follow `on_error`, as in a walk.
    pub fn resolve(&mut self, on_error: ErrorPolicy) -> Result<usize, DigestError> {
        let git_blobs = self.git_blobs;
        let mut resolved = 0;
        for (top, ix) in &mut self.tops {
            if ix.degraded.is_some() {
                continue;
            }
            let todo: Vec<(&RelPath, &mut Node)> = ix
                .nodes
                .iter_mut()
                .filter(|(_, n)| !matches!(n.state, State::Known(_)))
                .collect();
            if todo.is_empty() {
                continue;
            }
            resolved += todo.len();
            let abs_top = &top.abs;
            let results: Vec<Result<(), DigestError>> = todo
                .into_par_iter()
                .map(|(k, n)| {
                    let abs = abs_top.join(k.as_path());
                    n.state = match digest::entry_kind_at(&abs, git_blobs) {
                        Ok(Some((kind, ino))) => {
                            n.ino = ino;
                            State::Known(kind)
                        }
                        // Now a directory: its files are nodes of their own.
                        Ok(None) => State::Dirty,
                        Err(e) => {
                            let err = digest::io_error(&abs, e);
                            match on_error {
                                ErrorPolicy::Fail => return Err(err),
                                ErrorPolicy::Record => {
                                    tracing::warn!(path = %abs.display(), "{err}; recorded as an error entry");
                                    State::Known(EntryKind::Error {
                                        message: digest::error_message(err),
                                    })
                                }
                            }
                        }
                    };
                    Ok(())
                })
                .collect();
            results.into_iter().collect::<Result<Vec<()>, _>>()?;
            ix.nodes.retain(|_, n| matches!(n.state, State::Known(_)));
        }
        Ok(resolved)
    }

    /// Roots whose index was dropped, with the reason.
    pub fn degraded(&self) -> Vec<(PathBuf, String)> {
        self.tops
            .iter()
            .filter_map(|(t, ix)| Some((t.abs.clone(), ix.degraded.clone()?)))
            .collect()
    }

    /// The tree of `root` (one of the roots given to [`Watch::start`]), as
    /// [`digest::hash_tree`] would walk it now; a degraded root is walked
    /// indeed. `None` for a root that was not watched. Call
    /// [`Observed::resolve`] first. `consume`: the last caller for a root
    /// takes its entries instead of copying 100k paths.
    pub fn tree(
        &mut self,
        root: &Path,
        opts: &WalkOptions,
        consume: bool,
    ) -> Option<Result<Tree, DigestError>> {
        let canon = std::fs::canonicalize(root).ok()?;
        let i = self
            .tops
            .iter()
            .position(|(t, _)| canon.starts_with(&t.abs))?;
        let (top, ix) = &mut self.tops[i];
        if ix.degraded.is_some() || self.consumed[i] {
            return Some(digest::hash_tree(root, opts));
        }
        let prefix = canon
            .strip_prefix(&top.abs)
            .unwrap_or(Path::new(""))
            .as_os_str()
            .as_bytes()
            .to_vec();
        let keep = |rel: &[u8]| !self.excludes.excludes_file(rel);
        let entries: Vec<Entry> = if prefix.is_empty() && consume {
            self.consumed[i] = true;
            let nodes = std::mem::take(&mut ix.nodes);
            // Sized once: grown by doubling, 100k entries were copied
            // twice over and faulted in fresh pages each time.
            let mut v = Vec::with_capacity(nodes.len());
            v.extend(
                nodes
                    .into_iter()
                    .filter(|(k, _)| keep(k.as_bytes()))
                    .filter_map(|(path, n)| match n.state {
                        State::Known(kind) => Some(Entry { path, kind }),
                        _ => None,
                    }),
            );
            v
        } else {
            let keys = if prefix.is_empty() {
                ix.nodes.keys().cloned().collect()
            } else {
                subtree_keys(&ix.nodes, &prefix)
            };
            let strip = if prefix.is_empty() {
                0
            } else {
                prefix.len() + 1
            };
            keys.into_iter()
                .filter(|k| keep(&k.as_bytes()[strip..]))
                .filter_map(|k| {
                    let n = ix.nodes.get(k.as_bytes())?;
                    match &n.state {
                        State::Known(kind) => Some(Entry {
                            path: RelPath::from_bytes(&k.as_bytes()[strip..]),
                            kind: kind.clone(),
                        }),
                        _ => None,
                    }
                })
                .collect()
        };
        Some(Ok(Tree {
            root: root.to_path_buf(),
            entries,
        }))
    }

    /// About the size of the JSON describing every file in the index (a
    /// statement's subjects or materials): sizes the statement's buffer.
    pub fn json_size_hint(&self) -> usize {
        self.tops
            .iter()
            .flat_map(|(t, ix)| {
                let top = t.abs.as_os_str().len();
                ix.nodes.keys().map(move |k| k.as_bytes().len() + top + 100)
            })
            .sum::<usize>()
            + 64 * 1024
    }

    /// The inotify descriptor, to be dropped when the caller can afford
    /// it: closing it removes every watch, ~1 µs each in the kernel, 12 ms
    /// for a node_modules tree, which the sidecar spends after the
    /// attestation is out.
    pub fn unwatch(&mut self) -> impl Send {
        self.leftover.take()
    }
}
