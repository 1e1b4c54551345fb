//! A thin, allocation-free wrapper over the inotify system calls.
//!
//! Why not the `notify` crate, which the first version used: its inotify
//! mask is fixed and includes `IN_OPEN`, so every file we open to hash
//! comes back to us as an event, and it turns every event into a heap
//! allocated `PathBuf` and a channel message. For a build writing 100k
//! files (`cp -r` of a node_modules tree) that was ~400k events and 2.4 s
//! of CPU in the sidecar before any hashing, measured on the bench
//! machine. Here the mask is only what the index needs, events are read
//! 64 KiB at a time after a short batching pause, and parsed in place.
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// What we subscribe to on every watched directory.
///
/// * `CLOSE_WRITE`: a writer is done; the moment to hash. It also follows
///   writes through `mmap`: the mapping holds the open file, so the close
///   event comes when the last mapping is gone.
/// * `MODIFY`: content changed by something that may never close (a
///   `truncate(2)` by path, a writer still running when the build ends);
///   marks the file dirty.
/// * `ATTRIB`: mode (the executable bit is recorded), link count, times.
/// * `CREATE`, `DELETE`, `MOVED_FROM`, `MOVED_TO`: the tree's shape.
/// * `DELETE_SELF`, `MOVE_SELF`: a watched root itself went away.
///
/// `ONLYDIR` and `DONT_FOLLOW` make a directory swapped for a link between
/// listing and watching fail instead of watching the link's target where a
/// watch is added by path (the unit tests; the watcher uses
/// [`Inotify::add_open`]);
/// `EXCL_UNLINK` drops events for files already unlinked.
pub(super) const MASK: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR
    | libc::IN_DONT_FOLLOW
    | libc::IN_EXCL_UNLINK;

pub(super) struct Inotify {
    fd: OwnedFd,
}

impl Inotify {
    pub fn new() -> std::io::Result<Inotify> {
        // SAFETY: plain system call with flag arguments.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(Inotify {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches the directory `path`; the same directory twice gives the
    /// same watch descriptor.
    #[cfg(test)]
    pub fn add(&self, path: &std::path::Path) -> std::io::Result<i32> {
        use std::os::unix::ffi::OsStrExt;
        let c = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: valid fd and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK) };
        if wd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(wd)
    }

    /// Watches the directory open as `dir` (opened beneath the root with no
    /// link followed, [`crate::digest::OpenDir::open_beneath`]), through
    /// its `/proc/self/fd` entry: `inotify_add_watch` takes only a path,
    /// and a path resolved again could meet a directory the builder has
    /// since swapped for a link (`DONT_FOLLOW` guards only the last
    /// component). The magic link names the very inode we opened, so the
    /// watch is on the directory that is then listed. Without procfs
    /// (never in a pod; a chroot, say) this fails, and the root is
    /// degraded (walked when the build ends) rather than watched by path.
    pub fn add_open(&self, dir: BorrowedFd<'_>) -> std::io::Result<i32> {
        let c = CString::new(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
        // DONT_FOLLOW would refuse the magic link itself.
        let mask = MASK & !libc::IN_DONT_FOLLOW;
        // SAFETY: valid fd and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        if wd >= 0 {
            return Ok(wd);
        }
        let e = std::io::Error::last_os_error();
        // Our descriptor is open, so ENOENT means no /proc; said apart,
        // because the caller reads a plain ENOENT as "directory gone".
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Err(std::io::Error::other(
                "/proc/self/fd is missing, needed to watch a directory without following links",
            ));
        }
        Err(e)
    }

    /// Stops watching `wd` (a directory that left the workspace).
    pub fn remove(&self, wd: i32) {
        // SAFETY: plain system call; an unknown wd just fails with EINVAL.
        unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
    }

    /// Reads whatever events are queued into `buf`; 0 when none are.
    pub fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            // SAFETY: buf is valid for writes of buf.len() bytes.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(e),
            }
        }
    }
}

impl AsRawFd for Inotify {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// One event, borrowed from the read buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Event<'a> {
    pub wd: i32,
    pub mask: u32,
    pub cookie: u32,
    /// Empty for events about the watched directory itself.
    pub name: &'a [u8],
}

impl Event<'_> {
    pub fn is(&self, bits: u32) -> bool {
        self.mask & bits != 0
    }
}

/// `struct inotify_event` is `int wd; uint32_t mask, cookie, len;` then
/// `len` bytes of NUL-padded name.
const HEADER: usize = 16;

/// The events in the first `len` bytes of a read buffer. The kernel
/// never splits an event across reads.
pub(super) fn events(buf: &[u8]) -> impl Iterator<Item = Event<'_>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let head = buf.get(at..at + HEADER)?;
        let word = |i: usize| [head[i], head[i + 1], head[i + 2], head[i + 3]];
        let wd = i32::from_ne_bytes(word(0));
        let mask = u32::from_ne_bytes(word(4));
        let cookie = u32::from_ne_bytes(word(8));
        let len = u32::from_ne_bytes(word(12)) as usize;
        let raw = buf.get(at + HEADER..at + HEADER + len)?;
        at += HEADER + len;
        let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        Some(Event {
            wd,
            mask,
            cookie,
            name: &raw[..end],
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_events_of_a_real_directory() {
        let t = tempfile::tempdir().unwrap();
        let ino = Inotify::new().unwrap();
        let wd = ino.add(t.path()).unwrap();
        assert_eq!(ino.add(t.path()).unwrap(), wd, "same directory, same wd");
        std::fs::write(t.path().join("a.txt"), b"x").unwrap();
        std::fs::rename(t.path().join("a.txt"), t.path().join("b.txt")).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = ino.read(&mut buf).unwrap();
        let seen: Vec<(u32, Vec<u8>, u32)> = events(&buf[..n])
            .map(|e| {
                assert_eq!(e.wd, wd);
                (e.mask & !libc::IN_ISDIR, e.name.to_vec(), e.cookie)
            })
            .collect();
        let kinds: Vec<u32> = seen.iter().map(|s| s.0).collect();
        assert_eq!(
            kinds,
            vec![
                libc::IN_CREATE,
                libc::IN_MODIFY,
                libc::IN_CLOSE_WRITE,
                libc::IN_MOVED_FROM,
                libc::IN_MOVED_TO
            ]
        );
        assert_eq!(seen[0].1, b"a.txt");
        assert_eq!(seen[4].1, b"b.txt");
        assert_eq!(seen[3].2, seen[4].2, "a rename's two halves share a cookie");
        assert_ne!(seen[3].2, 0);
        // Nothing else queued, and no event for our own reads.
        let _ = std::fs::read(t.path().join("b.txt")).unwrap();
        assert_eq!(ino.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn refuses_a_link_to_a_directory() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::os::unix::fs::symlink(t.path().join("d"), t.path().join("l")).unwrap();
        let ino = Inotify::new().unwrap();
        assert!(ino.add(&t.path().join("l")).is_err());
        assert!(ino.add(&t.path().join("d")).is_ok());
    }
}
