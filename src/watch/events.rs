//! The event loop: reads inotify events in batches, keeps the index
//! current, and hands files that went quiet to the hashing threads.
use super::*;

/// The event loop's own state; only its thread touches it.
pub(super) struct Loop {
    pub(super) ino: inotify::Inotify,
    pub(super) wake: Arc<OwnedFd>,
    pub(super) tops: Arc<Vec<Top>>,
    pub(super) excludes: Excludes,
    pub(super) git_blobs: bool,
    /// Watch descriptor -> (root, directory relative to it).
    pub(super) dirs: HashMap<i32, (usize, RelPath)>,
    /// Per root: directory -> watch descriptor, for renames and removals
    /// of whole directories.
    pub(super) dir_wds: Vec<BTreeMap<RelPath, i32>>,
    /// `IN_MOVED_FROM` waiting for its `IN_MOVED_TO`, by cookie.
    pub(super) moves: HashMap<u32, Move>,
    /// Files written but not closed: (quiet after, root, path, generation).
    pub(super) idle: VecDeque<(Instant, usize, RelPath, u32)>,
    /// Nodes touched in this batch.
    pub(super) touched: Vec<(usize, RelPath)>,
    pub(super) jobs: Vec<Job>,
    pub(super) shared: Arc<Shared>,
    pub(super) pool: Arc<rayon::ThreadPool>,
    pub(super) batch: Duration,
    pub(super) buf: Vec<u8>,
    pub(super) batch_no: u64,
    /// [`crate::testhook::BEFORE_SCAN`], read once when the watch starts.
    pub(super) pause_before_scan: Option<std::path::PathBuf>,
}

fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) {
    let ms = timeout.map_or(-1, |t| t.as_millis().min(60_000) as libc::c_int);
    // SAFETY: fds is a valid array of pollfd.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
}

impl Loop {
    /// Returns itself once drained, so that the caller decides where the
    /// (slow) cleanup happens.
    pub(super) fn run(mut self) -> Loop {
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
        let t = &mut ix[top];
        t.take_subtree(to);
        let node = t
            .remove(from)
            .filter(|n| matches!(n.state, State::Known(_)) && n.due == Due::Nothing && n.ino != 0);
        if let Some(mut n) = node {
            let (parent, name) = split_name(to);
            let same = self.tops[top].open_dir(parent).is_ok_and(|d| {
                std::ffi::CString::new(name).is_ok_and(|c| d.ino_of(&c).is_ok_and(|i| i == n.ino))
            });
            if same {
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
    pub(super) fn scan(
        &mut self,
        ix: &mut [TopIndex],
        top: usize,
        start: RelPath,
        mut carried: Option<HashMap<Vec<u8>, Node>>,
    ) {
        let strip = if start.is_empty() {
            0
        } else {
            start.as_bytes().len() + 1
        };
        let mut stack = vec![start];
        while let Some(d) = stack.pop() {
            let pause = |at: &str| {
                if let Some(flag) = &self.pause_before_scan {
                    let abs = self.tops[top].abs.join(d.as_path());
                    crate::testhook::pause_at(flag, &format!("{at} {}", abs.display()));
                }
            };
            pause("open");
            // Opened first, beneath the root with no link followed, then
            // watched through the descriptor and listed: all three see the
            // same directory, whatever the builder swaps meanwhile. A link
            // on the way (ELOOP), or nothing there any more: the parent's
            // events tell the rest.
            let dir = match self.tops[top].open_dir(d.as_bytes()) {
                Ok(dir) => dir,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    let abs = self.tops[top].abs.join(d.as_path());
                    let reason = format!("cannot open {}: {e}", crate::escape::path(&abs));
                    degrade(&mut ix[top], reason);
                    return;
                }
            };
            pause("watch");
            match self.ino.add_open(dir.as_fd()) {
                Ok(wd) => {
                    if let Some((t, old)) = self.dirs.insert(wd, (top, d.clone())) {
                        self.dir_wds[t].remove(old.as_bytes());
                    }
                    self.dir_wds[top].insert(d.clone(), wd);
                    self.shared.stats.dirs.fetch_add(1, Ordering::Relaxed);
                }
                // Through the open descriptor, a watch cannot find the
                // directory gone or swapped: any failure is the watch's
                // own (the limit, no procfs).
                Err(e) => {
                    let hint = if e.raw_os_error() == Some(libc::ENOSPC) {
                        " (raise fs.inotify.max_user_watches)"
                    } else {
                        ""
                    };
                    let abs = self.tops[top].abs.join(d.as_path());
                    let reason = format!("cannot watch {}: {e}{hint}", crate::escape::path(&abs));
                    degrade(&mut ix[top], reason);
                    return;
                }
            }
            let _ = dir.for_each_entry(|name, is_dir| {
                let rel = join(d.as_bytes(), name.to_bytes());
                if self.excluded(top, &rel, is_dir) {
                    return;
                }
                if is_dir {
                    stack.push(RelPath::from_bytes(rel));
                    return;
                }
                if let Some(c) = carried.as_mut() {
                    if let Some(mut n) = c.remove(&rel[strip..]) {
                        if dir.ino_of(name).is_ok_and(|ino| ino == n.ino) {
                            n.gen = n.gen.wrapping_add(1);
                            ix[top].nodes.insert(RelPath::from_bytes(rel), n);
                            return;
                        }
                    }
                }
                if ix[top].touch(&rel, Touch::Appeared) {
                    self.touched.push((top, RelPath::from_bytes(rel)));
                }
            });
        }
    }

    /// Turns this batch's touched files into hash jobs or idle waits, and
    /// settles renames whose other half never came.
    pub(super) fn end_batch(&mut self, ix: &mut [TopIndex]) {
        let now = Instant::now();
        // Drained, not taken: the lists keep their capacity from batch to
        // batch. Freed each time (hundreds of KiB when a build writes fast),
        // a free above 64 KiB makes glibc consolidate its fast bins; the
        // sidecar's CPU did not move measurably (the index's B-tree leaves
        // still trigger it), but the work is not needed.
        let mut touched = std::mem::take(&mut self.touched);
        for (top, k) in touched.drain(..) {
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
        self.touched = touched;
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

    pub(super) fn dispatch(&mut self) {
        if self.jobs.is_empty() {
            return;
        }
        {
            let mut n = self
                .shared
                .inflight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *n += self.jobs.len();
        }
        // Drained for the capacity's sake, as in `end_batch`.
        let mut jobs = self.jobs.drain(..).peekable();
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
pub(super) fn degrade(ix: &mut TopIndex, reason: String) {
    if ix.degraded.is_none() {
        tracing::warn!(
            "{reason}: hashing this root from scratch at the end instead (slower, equally exact)"
        );
        ix.nodes = BTreeMap::new();
        ix.degraded = Some(reason);
    }
}
