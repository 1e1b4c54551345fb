//! The hashing threads: hash files the event loop found quiet, and throw
//! a hash away when the file changed while it ran (generations).
use super::*;

/// Runs on a hashing thread. Results go into the index only if no event
/// touched the file since the job was made.
pub(super) fn hash_jobs(shared: &Shared, tops: &[Top], jobs: Vec<Job>, git_blobs: bool) {
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
        if let Some(flag) = &shared.pause_before_hash {
            let abs = tops[j.top].abs.join(j.rel.as_path());
            crate::testhook::pause_at(flag, &abs.display().to_string());
        }
        let rel = j.rel.as_bytes();
        let (parent, base) = split_name(rel);
        if !dir
            .as_ref()
            .is_some_and(|(t, p, _)| *t == j.top && p.as_slice() == parent)
        {
            dir = tops[j.top]
                .open_dir(parent)
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
        // What tests and a curious operator wait for: everything handed
        // to the hashing threads so far is in the index.
        tracing::debug!(
            hashed = shared.stats.hashed.load(Ordering::Relaxed),
            "hashing caught up"
        );
    }
}
